// Replays the line protocol cases (tests/line_protocol_cases/*.txt; the format is in the
// README.md there): a body with its precision and clock, then the points and refused lines
// parse_lines must make of it, in order. One ctest per case file. Besides what each case states,
// every point must print (format_line) and parse back to itself, and every refused line must be
// a part of the body starting on the line its number names.
#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "tsdb/line_protocol.hpp"

#ifndef NIMBUS_CASES_DIR
#error "NIMBUS_CASES_DIR must name the folder of line protocol cases"
#endif
#include "case_files.hpp"

namespace nimbus::tsdb {
namespace {

namespace json = boost::json;

constexpr std::int64_t default_now_ns = 1'700'000'000'123'456'789;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The rest of a line after `key:` and one space, byte for byte.
std::string_view verbatim(std::string_view argument) {
  if (!argument.empty() && argument.front() == ' ') argument.remove_prefix(1);
  return argument;
}

std::optional<json::value> parse_json(std::string_view text, std::string& why) {
  json::error_code ec;
  json::value value = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) {
    why = "not JSON: " + ec.message();
    return std::nullopt;
  }
  return value;
}

std::string text_of(const json::string& s) {
  return std::string(s.data(), s.size());
}

template <typename Integer>
std::optional<Integer> parse_integer(std::string_view text) {
  Integer value{};
  const char* last = text.data() + text.size();
  const auto result = std::from_chars(text.data(), last, value);
  if (text.empty() || result.ec != std::errc() || result.ptr != last) return std::nullopt;
  return value;
}

std::string show(const point& p) {
  return "'" + format_line(p) + "'";
}

std::string show(const parse_error& error) {
  return std::to_string(error.line_number) + ": " + error_message(error);
}

// Whether a field's value is the JSON value a `decoded:` line gives for it.
bool is_same_value(const field_value& value, const json::value& expected) {
  switch (type_of(value)) {
    case field_type::floating: {
      double number = 0;
      if (expected.is_double())
        number = expected.get_double();
      else if (expected.is_int64())
        number = static_cast<double>(expected.get_int64());
      else if (expected.is_uint64())
        number = static_cast<double>(expected.get_uint64());
      else
        return false;
      return std::get<double>(value) == number;
    }
    case field_type::integer:
      return expected.is_int64() && expected.get_int64() == std::get<std::int64_t>(value);
    case field_type::unsigned_integer:
      if (expected.is_uint64()) return expected.get_uint64() == std::get<std::uint64_t>(value);
      return expected.is_int64() && expected.get_int64() >= 0 &&
             static_cast<std::uint64_t>(expected.get_int64()) == std::get<std::uint64_t>(value);
    case field_type::boolean:
      return expected.is_bool() && expected.get_bool() == std::get<bool>(value);
    case field_type::string:
      return expected.is_string() && text_of(expected.get_string()) == std::get<std::string>(value);
  }
  return false;
}

// Whether the refused line starts on line `number` (from 1) of the body, after the blanks the
// parser skips there.
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

struct expectation {
  enum class kind : std::uint8_t { point, error, nothing };
  kind what = kind::nothing;
  int file_line = 0;
  std::string text;                     // point: its line protocol; error: its message
  std::size_t line_number = 0;          // error
  std::optional<json::object> decoded;  // point
};

class case_file {
 public:
  explicit case_file(std::string path) : path_(std::move(path)) {}

  void run() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) {
      ADD_FAILURE() << "cannot open " << path_;
      return;
    }
    std::string raw;
    int number = 0;
    while (std::getline(in, raw)) {
      ++number;
      if (!raw.empty() && raw.back() == '\r') raw.pop_back();
      read_line(number, raw);
    }
    finish_block();
    if (checks_ == 0) ADD_FAILURE() << path_ << " holds no case";
  }

 private:
  void fail(int line, const std::string& why) {
    ADD_FAILURE_AT(path_.c_str(), line) << "block of line " << block_line_ << ": " << why;
  }

  void read_line(int number, std::string_view line) {
    if (trim(line).empty()) return finish_block();
    if (trim(line).front() == '#') return;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(number, "expected 'key: value'");
    const std::string_view key = trim(line.substr(0, colon));
    const std::string_view argument = line.substr(colon + 1);
    if (!in_block_) start_block(number);
    if (!is_block_valid_) return;  // already reported
    if (key == "precision" || key == "now" || key == "limits" || key == "input" ||
        key == "input-json") {
      if (!expectations_.empty())
        return invalidate(number, "settings and input come before the expectations");
      if (key == "precision") return read_precision(number, trim(argument));
      if (key == "now") return read_now(number, trim(argument));
      if (key == "limits") return read_limits(number, trim(argument));
      if (key == "input") {
        inputs_.emplace_back(verbatim(argument));
        return;
      }
      return read_json_input(number, trim(argument));
    }
    if (key == "point") return add_point(number, std::string(verbatim(argument)));
    if (key == "point-json") {
      std::string text;
      if (!decode_json_string(number, trim(argument), text)) return;
      return add_point(number, std::move(text));
    }
    if (key == "decoded") return read_decoded(number, trim(argument));
    if (key == "error" || key == "error-json") return read_error(number, trim(argument), key);
    if (key == "rejected") {
      rejected_ = parse_integer<std::size_t>(trim(argument));
      if (!rejected_) invalidate(number, "rejected takes a count");
      return;
    }
    if (key == "expect") {
      if (trim(argument) != "nothing") return invalidate(number, "expect takes 'nothing'");
      expectation entry;
      entry.what = expectation::kind::nothing;
      entry.file_line = number;
      expectations_.push_back(std::move(entry));
      return;
    }
    invalidate(number, "unknown key '" + std::string(key) + "'");
  }

  void start_block(int number) {
    in_block_ = true;
    is_block_valid_ = true;
    block_line_ = number;
    unit_ = precision::ns;
    now_ns_ = default_now_ns;
    limits_ = parse_limits{};
    inputs_.clear();
    expectations_.clear();
    rejected_.reset();
  }

  void invalidate(int number, const std::string& why) {
    fail(number, why);
    is_block_valid_ = false;
  }

  bool decode_json_string(int number, std::string_view argument, std::string& text) {
    std::string why;
    const auto value = parse_json(argument, why);
    if (!value || !value->is_string()) {
      invalidate(number, "expected a JSON string" + (why.empty() ? "" : "; " + why));
      return false;
    }
    text = text_of(value->get_string());
    return true;
  }

  void read_precision(int number, std::string_view argument) {
    const auto parsed = parse_precision(argument);
    if (!parsed) return invalidate(number, "not a precision: '" + std::string(argument) + "'");
    unit_ = *parsed;
  }

  void read_now(int number, std::string_view argument) {
    const auto parsed = parse_integer<std::int64_t>(argument);
    if (!parsed) return invalidate(number, "now takes nanoseconds");
    now_ns_ = *parsed;
  }

  // name=value pairs separated by spaces.
  void read_limits(int number, std::string_view argument) {
    while (!argument.empty()) {
      const std::size_t space = argument.find(' ');
      const std::string_view pair = argument.substr(0, space);
      argument =
          space == std::string_view::npos ? std::string_view() : trim(argument.substr(space));
      const std::size_t equals = pair.find('=');
      const auto value = equals == std::string_view::npos
                             ? std::nullopt
                             : parse_integer<std::size_t>(pair.substr(equals + 1));
      if (!value) return invalidate(number, "limits take name=count pairs");
      const std::string_view name = pair.substr(0, equals);
      if (name == "max_line_bytes")
        limits_.max_line_bytes = *value;
      else if (name == "max_key_bytes")
        limits_.max_key_bytes = *value;
      else if (name == "max_tags")
        limits_.max_tags = *value;
      else if (name == "max_fields")
        limits_.max_fields = *value;
      else if (name == "max_string_bytes")
        limits_.max_string_bytes = *value;
      else if (name == "max_errors")
        limits_.max_errors = *value;
      else
        return invalidate(number, "unknown limit '" + std::string(name) + "'");
    }
  }

  void read_json_input(int number, std::string_view argument) {
    std::string text;
    if (decode_json_string(number, argument, text)) inputs_.push_back(std::move(text));
  }

  void add_point(int number, std::string text) {
    expectation expected;
    expected.what = expectation::kind::point;
    expected.file_line = number;
    expected.text = std::move(text);
    expectations_.push_back(std::move(expected));
  }

  void read_decoded(int number, std::string_view argument) {
    if (expectations_.empty() || expectations_.back().what != expectation::kind::point)
      return invalidate(number, "decoded follows a point line");
    std::string why;
    const auto value = parse_json(argument, why);
    if (!value || !value->is_object())
      return invalidate(number, "decoded takes a JSON object" + (why.empty() ? "" : "; " + why));
    expectations_.back().decoded = value->get_object();
  }

  // "N: message", the message verbatim or as a JSON string.
  void read_error(int number, std::string_view argument, std::string_view key) {
    const std::size_t colon = argument.find(':');
    const auto line_number = colon == std::string_view::npos
                                 ? std::nullopt
                                 : parse_integer<std::size_t>(trim(argument.substr(0, colon)));
    if (!line_number) return invalidate(number, "error takes 'N: message'");
    expectation expected;
    expected.what = expectation::kind::error;
    expected.file_line = number;
    expected.line_number = *line_number;
    const std::string_view message = verbatim(argument.substr(colon + 1));
    if (key == "error") {
      expected.text = std::string(message);
    } else if (!decode_json_string(number, trim(message), expected.text)) {
      return;
    }
    expectations_.push_back(std::move(expected));
  }

  void finish_block() {
    if (!in_block_) return;
    in_block_ = false;
    if (!is_block_valid_) return;
    if (inputs_.empty()) return fail(block_line_, "a block without input");
    if (expectations_.empty()) return fail(block_line_, "a block without expectations");

    std::string body;
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      if (i > 0) body += '\n';
      body += inputs_[i];
    }
    const parse_result result = parse_lines(body, unit_, now_ns_, limits_);
    // The keys the parser takes from the line's bytes are the canonical ones.
    if (result.series_keys.size() != result.points.size())
      fail(0, "series_keys and points differ in number");
    for (std::size_t i = 0; i < result.points.size() && i < result.series_keys.size(); ++i)
      if (result.series_keys[i] != series_key(result.points[i]))
        fail(0, "series key '" + result.series_keys[i] + "', canonical '" +
                    series_key(result.points[i]) + "'");

    std::size_t next_point = 0;
    std::size_t next_error = 0;
    for (const auto& expected : expectations_) {
      ++checks_;
      switch (expected.what) {
        case expectation::kind::point:
          if (next_point >= result.points.size()) {
            fail(expected.file_line, "no point left for '" + expected.text + "'");
          } else {
            check_point(expected, result.points[next_point]);
          }
          ++next_point;
          break;
        case expectation::kind::error:
          if (next_error >= result.errors.size()) {
            fail(expected.file_line, "no refused line left for '" + expected.text + "'");
          } else {
            const parse_error& actual = result.errors[next_error];
            if (actual.line_number != expected.line_number ||
                error_message(actual) != expected.text)
              fail(expected.file_line, "refused " + show(actual) + ", expected " +
                                           std::to_string(expected.line_number) + ": " +
                                           expected.text);
          }
          ++next_error;
          break;
        case expectation::kind::nothing:
          if (!result.points.empty() || !result.errors.empty())
            fail(expected.file_line, "expected nothing");
          break;
      }
    }
    for (std::size_t i = next_point; i < result.points.size(); ++i)
      fail(block_line_, "an unexpected point " + show(result.points[i]));
    for (std::size_t i = next_error; i < result.errors.size(); ++i)
      fail(block_line_, "an unexpected refused line " + show(result.errors[i]));
    const std::size_t rejected = rejected_.value_or(result.errors.size());
    if (result.rejected_lines != rejected)
      fail(block_line_, "rejected_lines " + std::to_string(result.rejected_lines) + ", expected " +
                            std::to_string(rejected));
    check_invariants(body, result);
  }

  void check_point(const expectation& expected, const point& actual) {
    const std::string text = format_line(actual);
    if (text != expected.text)
      return fail(expected.file_line, "point '" + text + "', expected '" + expected.text + "'");
    if (!expected.decoded) return;
    const json::object& decoded = *expected.decoded;
    if (const json::value* measurement = decoded.if_contains("measurement")) {
      if (!measurement->is_string() || text_of(measurement->get_string()) != actual.measurement)
        fail(expected.file_line, "measurement is '" + actual.measurement + "'");
    }
    if (const json::value* tags = decoded.if_contains("tags")) {
      if (!tags->is_object()) return fail(expected.file_line, "decoded tags take an object");
      for (const auto& member : tags->get_object()) {
        const std::string key(member.key().data(), member.key().size());
        const auto tag = std::find_if(actual.tags.begin(), actual.tags.end(),
                                      [&key](const auto& t) { return t.first == key; });
        if (tag == actual.tags.end())
          fail(expected.file_line, "no tag '" + key + "'");
        else if (!member.value().is_string() || text_of(member.value().get_string()) != tag->second)
          fail(expected.file_line, "tag '" + key + "' is '" + tag->second + "'");
      }
    }
    if (const json::value* fields = decoded.if_contains("fields")) {
      if (!fields->is_object()) return fail(expected.file_line, "decoded fields take an object");
      for (const auto& member : fields->get_object()) {
        const std::string key(member.key().data(), member.key().size());
        const auto field = std::find_if(actual.fields.begin(), actual.fields.end(),
                                        [&key](const auto& f) { return f.first == key; });
        if (field == actual.fields.end())
          fail(expected.file_line, "no field '" + key + "'");
        else if (!is_same_value(field->second, member.value()))
          fail(expected.file_line, "field '" + key + "' differs");
      }
    }
  }

  // What must hold for any body, whatever the case expects.
  void check_invariants(std::string_view body, const parse_result& result) {
    parse_limits unbounded;
    unbounded.max_line_bytes = std::string::npos;
    for (const point& p : result.points) {
      const std::string text = format_line(p);
      if (!text.starts_with(series_key(p) + ' '))
        fail(block_line_, show(p) + " does not start with its series key");
      if (!p.timestamp_ns || *p.timestamp_ns % nanoseconds_per(unit_) != 0)
        fail(block_line_, show(p) + ": the timestamp is not a multiple of the precision");
      const parse_result again = parse_lines(text, precision::ns, 0, unbounded);
      if (again.points.size() != 1 || !again.errors.empty() || again.points[0] != p)
        fail(block_line_, show(p) + " does not parse back to itself");
    }
    for (const parse_error& error : result.errors) {
      if (error.reason.empty()) fail(block_line_, "a refused line without a reason");
      if (body.find(error.line) == std::string_view::npos)
        fail(block_line_, show(error) + ": the line is not in the body");
      if (!starts_on_line(body, error.line_number, error.line))
        fail(block_line_, show(error) + ": the line does not start on that line");
    }
    if (result.errors.size() > limits_.max_errors || result.rejected_lines < result.errors.size())
      fail(block_line_, "more refused lines kept than max_errors or counted");
  }

  std::string path_;
  int checks_ = 0;
  bool in_block_ = false;
  bool is_block_valid_ = false;
  int block_line_ = 0;
  precision unit_ = precision::ns;
  std::int64_t now_ns_ = default_now_ns;
  parse_limits limits_;
  std::vector<std::string> inputs_;
  std::vector<expectation> expectations_;
  std::optional<std::size_t> rejected_;
};

class tsdb_line_protocol_cases : public testing::TestWithParam<std::string> {};

TEST_P(tsdb_line_protocol_cases, replays) {
  case_file(GetParam()).run();
}

INSTANTIATE_TEST_SUITE_P(cases, tsdb_line_protocol_cases, testing::ValuesIn(test::case_files()),
                         test::case_name);

}  // namespace
}  // namespace nimbus::tsdb
