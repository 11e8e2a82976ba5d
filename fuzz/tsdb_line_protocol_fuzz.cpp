// Parses arbitrary bytes as a line protocol body at every precision, and once more with tiny
// limits so that every limit is reached. Nothing may crash, and the parser's promises must hold:
// a refused line has a reason, is a part of the body and starts on the line its number names; no
// more refusals are kept than max_errors, and no fewer counted; a point's timestamp is a multiple
// of the precision, its line starts with its series key and a space, and format_line of it
// parses back (at ns) to the same point. Parsed into the spent result of earlier inputs (as the
// store recycles its batches), a body gives what it gives into a fresh one.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tsdb/line_protocol.hpp"

using nimbus::tsdb::format_line;
using nimbus::tsdb::nanoseconds_per;
using nimbus::tsdb::parse_error;
using nimbus::tsdb::parse_limits;
using nimbus::tsdb::parse_lines;
using nimbus::tsdb::parse_result;
using nimbus::tsdb::point;
using nimbus::tsdb::precision;
using nimbus::tsdb::series_key;

namespace {

constexpr std::int64_t now_ns = 1'700'000'000'123'456'789;

// Whether `line` starts on line `number` (from 1) of the body, after the blanks skipped there.
bool starts_on_line(std::string_view body, std::size_t number, std::string_view line) {
  if (number == 0) return false;
  std::size_t start = 0;
  for (std::size_t n = 1; n < number; ++n) {
    const std::size_t newline = body.find('\n', start);
    if (newline == std::string_view::npos) return false;
    start = newline + 1;
  }
  while (start < body.size() && (body[start] == ' ' || body[start] == '\t' || body[start] == '\0'))
    ++start;
  return body.substr(start).starts_with(line.substr(0, line.find('\n')));
}

void check(std::string_view body, precision unit, const parse_limits& limits) {
  const parse_result result = parse_lines(body, unit, now_ns, limits);
  static parse_result spent;  // every earlier input's points and keys
  parse_lines(body, unit, now_ns, spent, limits);
  if (spent.points != result.points || spent.series_keys != result.series_keys ||
      spent.rejected_lines != result.rejected_lines || spent.errors.size() != result.errors.size())
    std::abort();
  for (std::size_t i = 0; i < result.errors.size(); ++i)
    if (spent.errors[i].reason != result.errors[i].reason ||
        spent.errors[i].line != result.errors[i].line ||
        spent.errors[i].line_number != result.errors[i].line_number)
      std::abort();
  if (result.errors.size() > limits.max_errors || result.rejected_lines < result.errors.size())
    std::abort();
  for (const parse_error& error : result.errors) {
    if (error.reason.empty() || error.line.empty()) std::abort();
    if (body.find(error.line) == std::string_view::npos) std::abort();
    if (!starts_on_line(body, error.line_number, error.line)) std::abort();
  }
  parse_limits unbounded;
  unbounded.max_line_bytes = std::string::npos;
  for (const point& p : result.points) {
    if (!p.timestamp_ns || *p.timestamp_ns % nanoseconds_per(unit) != 0) std::abort();
    const std::string line = format_line(p);
    const std::string key = series_key(p);
    if (line.size() <= key.size() || line.compare(0, key.size(), key) != 0 ||
        line[key.size()] != ' ')
      std::abort();
    const parse_result again = parse_lines(line, precision::ns, 0, unbounded);
    if (again.points.size() != 1 || !again.errors.empty() || !(again.points[0] == p)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const precision unit :
       {precision::ns, precision::us, precision::ms, precision::s, precision::m, precision::h})
    check(body, unit, parse_limits{});

  parse_limits tiny;
  tiny.max_line_bytes = 64;
  tiny.max_key_bytes = 24;
  tiny.max_tags = 2;
  tiny.max_fields = 3;
  tiny.max_string_bytes = 8;
  tiny.max_errors = 3;
  check(body, precision::s, tiny);
  return 0;
}
