#pragma once
// InfluxDB line protocol (reference/timeseries.md §1.2): a request body in, points and refused
// lines out, the way InfluxDB 1.6.7's models.ParsePointsWithPrecision reads it (its escapes, its
// error reasons, its quirks where clients may rely on them), with the departures the issue asks
// for (\r\n line ends, `5u` unsigned integers, unknown precisions refused through
// parse_precision) and a few of ours. Sans-I/O and standard library only (the fuzzer builds it
// alone); every function is pure and safe from any thread. The accepted language, each error
// reason and where it comes from, and every departure are listed in
// tests/line_protocol_cases/README.md.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace nimbus::tsdb {

// A field's type, fixed per measurement and shard once written. The order is field_value's.
enum class field_type : std::uint8_t { floating, integer, unsigned_integer, boolean, string };

// A field's value: float (no suffix), integer (`i`), unsigned (`u`), boolean, string.
using field_value = std::variant<double, std::int64_t, std::uint64_t, bool, std::string>;

field_type type_of(const field_value& value);
// InfluxDB's name for a type, as SHOW FIELD KEYS answers: float, integer, unsigned, boolean,
// string.
std::string_view name_of(field_type type);

struct point {
  std::string measurement;
  // Sorted by key (bytewise), keys unique: the order of InfluxDB's canonical series key.
  std::vector<std::pair<std::string, std::string>> tags;
  // In the order of the line, keys unique: for a key written twice the last value wins, kept
  // where the key first appeared.
  std::vector<std::pair<std::string, field_value>> fields;
  // Nanoseconds since the epoch. parse_lines always sets it (the server's clock, truncated to the
  // request's precision, when the line has none); format_line leaves it out when empty.
  std::optional<std::int64_t> timestamp_ns;

  friend bool operator==(const point&, const point&) = default;
};

// The unit of the timestamps in a request: `precision` on POST /write and POST /api/v2/write.
enum class precision : std::uint8_t { ns, us, ms, s, m, h };

// Both APIs' spellings: 1.x's n, u, ms, s, m, h, 2.x's ns, us, ms, s, and the empty string (the
// parameter given without a value, which both read as ns; an absent parameter is ns too, the
// caller's to apply). Anything else (µ, x, NS) is nullopt, which the HTTP layer refuses with 400:
// 1.6.7 silently read unknown precisions as ns.
std::optional<precision> parse_precision(std::string_view text);
std::int64_t nanoseconds_per(precision unit);

// InfluxDB's representable times (models.MinNanoTime, MaxNanoTime): the int64 range less the two
// lowest values, which it keeps as sentinels, and the highest, an exclusive shard bound.
inline constexpr std::int64_t min_time_ns = std::numeric_limits<std::int64_t>::min() + 2;
inline constexpr std::int64_t max_time_ns = std::numeric_limits<std::int64_t>::max() - 1;

// A timestamp in `unit` as nanoseconds, or nullopt when the product overflows or falls outside
// [min_time_ns, max_time_ns] (InfluxDB's SafeCalcTime).
std::optional<std::int64_t> to_nanoseconds(std::int64_t timestamp, precision unit);

// Bounds on one line. InfluxDB's own is max_key_bytes; the others are ours, so that one request
// cannot make a point (or the list of refusals) arbitrarily large beyond the body it came in.
struct parse_limits {
  // A longer line is refused whole, before it is parsed.
  std::size_t max_line_bytes = std::size_t{1} << 20;
  // InfluxDB's models.MaxKeyLength: the series key (escaped, as series_key()), and that key plus
  // 4 bytes plus each escaped field key (InfluxDB's "<series key>#!~#<field>" storage key).
  std::size_t max_key_bytes = 65535;
  std::size_t max_tags = 256;
  // Counted as written, before a repeated key collapses.
  std::size_t max_fields = 1024;
  // Bytes of one string field value, unescaped: InfluxDB 1.x documents 64 KB.
  std::size_t max_string_bytes = std::size_t{64} << 10;
  // Refused lines kept in parse_result::errors; all of them are counted in rejected_lines.
  std::size_t max_errors = 100;
};

// How InfluxDB reports a refused line.
enum class error_kind : std::uint8_t {
  // A syntax error or a limit: "unable to parse '<line>': <reason>".
  unable_to_parse,
  // A line that parses but that InfluxDB's shard drops (a field or tag key `time`): the reason
  // goes into "partial write: <reason> dropped=N".
  dropped,
};

struct parse_error {
  std::size_t line_number = 0;  // 1-based, of the line of the body where the refused line starts
  // The refused line as InfluxDB echoes it: without its leading spaces and tabs, its newline, and
  // (ours) a \r before that newline. A quoted field value may hold newlines, so may this.
  std::string line;
  std::string reason;  // InfluxDB 1.6.7's wording, e.g. "missing fields", "invalid number"
  error_kind kind = error_kind::unable_to_parse;
};

// InfluxDB's text for one refused line: "unable to parse '<line>': <reason>" or, for a dropped
// point, the reason alone.
std::string error_message(const parse_error& error);

struct parse_result {
  std::vector<point> points;             // in the order of the body
  std::vector<std::string> series_keys;  // series_key() of each point
  std::vector<parse_error> errors;  // in the order of the body, at most parse_limits::max_errors
  std::size_t rejected_lines = 0;   // every refused line, kept in errors or not
};

// Parses a whole body. Lines end at \n (a \r before it is dropped) except inside a quoted field
// value; blank lines and lines starting with `#` are skipped. A refused line never stops the
// others (partial writes keep the valid lines). `now_ns` stands for a line without a timestamp,
// truncated to `unit` as InfluxDB does.
parse_result parse_lines(std::string_view body, precision unit, std::int64_t now_ns,
                         const parse_limits& limits = {});
// The same into `into`, which may hold a spent result (store::spent_batch()): its points and
// keys are overwritten in place, so a warm result parses a body without allocating per line.
void parse_lines(std::string_view body, precision unit, std::int64_t now_ns, parse_result& into,
                 const parse_limits& limits = {});

// InfluxDB's series key: the escaped measurement, then ",key=value" per tag sorted by key, as
// format_line writes them (e.g. `weather,location=us\,midwest,season=summer`).
std::string series_key(const point& p);

// The series' 64-bit id: FNV-1a 64 over the series key's bytes. Ids are stored (in the index, the
// WAL and on disk), so this function must never change. Different keys may share an id: whatever
// maps ids to series keeps the key and compares it.
std::uint64_t series_id(std::string_view key);

// The point as one line of line protocol, without a newline, escaped as InfluxDB writes it (a
// backslash before each byte a name escapes; `\"` and `\\` in strings), so that
// parse_lines(format_line(p), precision::ns, ...) gives p back: for every point parse_lines
// returns, and for any point whose measurement is not empty and does not start with `#`, a tab
// or NUL, whose keys and tag values are not empty and hold no newline, no key is `time`, no name
// ends with a backslash or holds one right before a byte it escapes, with one field at least
// (the first one's key not starting with a tab or NUL), finite floats and tags sorted. Floats print
// with the fewest digits that read back exactly, fixed from 1e-4 to below 1e21 and with an exponent
// otherwise (1, 0.5, 1e+21, 1e-05).
std::string format_line(const point& p);

}  // namespace nimbus::tsdb
