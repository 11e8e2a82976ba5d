#pragma once
// InfluxQL, InfluxDB 1.x's query language: a sans-I/O lexer and recursive-descent parser that
// reads a query (';'-separated statements) into an AST, the way InfluxDB 1.6.7's influxql
// package does: the same tokens, keywords, precedence, and the same error text
// ("error parsing query: found EOF, expected identifier, string, number, bool at line 1,
// char 8"), positions counted as its scanner counts them (code points, 1-based). Statements
// Nimbus does not run (DROP SERIES, GRANT, SELECT INTO...) still parse, so a typo in them is
// reported as InfluxDB reports it, and execution names them (query.cpp).
//
// Standard library only (the fuzzer builds influxql.cpp alone). Parsing never throws; it returns
// a parse_error. The one piece of state is the cache of time zones read for tz('...') (TZif
// files under $TZDIR or /usr/share/zoneinfo: libstdc++ 12 has no std::chrono::tzdb), guarded by a
// mutex; everything else is pure and safe from any thread. A parsed query is immutable.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tsdb/regex.hpp"

namespace nimbus::tsdb::influxql {

// ---- durations

// An InfluxQL duration literal ("10s", "1h30m", "1w", "-5m", "500ms", "3u", "3µ", "7ns") in
// nanoseconds; nullopt when malformed or out of range. Units: ns, u/µ, ms, s, m, h, d, w.
std::optional<std::int64_t> parse_duration(std::string_view text);
// As Go prints a time.Duration, which SHOW RETENTION POLICIES answers with: "0s", "1h0m0s",
// "168h0m0s", "1m30s", "1.5s", "500ms", "1µs", "-2h0m0s".
std::string format_duration(std::int64_t ns);
// As InfluxQL writes a duration literal (influxql.FormatDuration): "1w", "2d", "90m", "0s".
std::string format_duration_literal(std::int64_t ns);

// ---- time zones (tz('Europe/Paris'))

struct zone_data;  // influxql.cpp: transitions read from a TZif file

// A named zone of the system's tz database, or UTC. Offsets are seconds east of UTC.
class time_zone {
 public:
  time_zone() = default;  // UTC
  // "UTC", "" (Go's LoadLocation reads both as UTC) or a tz database name; nullopt when the
  // database has no such zone.
  static std::optional<time_zone> find(std::string_view name);

  int offset_at(std::int64_t utc_seconds) const;
  // The offset that maps local time `local_seconds` to UTC (the earlier of two readings of an
  // ambiguous local time).
  int offset_for_local(std::int64_t local_seconds) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_ = "UTC";
  std::shared_ptr<const zone_data> data_;  // null: UTC; shared by every query naming the zone
};

// ---- expressions

enum class binary_op : std::uint8_t {
  add,
  subtract,
  multiply,
  divide,
  modulo,
  bitwise_and,
  bitwise_or,
  bitwise_xor,
  logical_and,
  logical_or,
  in,  // parses (InfluxQL's token table has it) but nothing evaluates it
  equal,
  not_equal,
  regex_match,
  regex_not_match,
  less,
  less_equal,
  greater,
  greater_equal,
};
std::string_view name_of(binary_op op);  // "+", "AND", "=~"...

// A variable's cast (`"v"::float`, `"host"::tag`, `*::field`); unknown when none is written.
enum class data_type : std::uint8_t {
  unknown,
  floating,
  integer,
  unsigned_integer,
  string,
  boolean,
  any_field,
  tag
};

enum class expression_kind : std::uint8_t {
  var_ref,           // text: the name ("a.b" when segmented), type: the cast
  wildcard,          // `*`, type: unknown, any_field or tag
  call,              // text: the lowercased function name, children: the arguments
  binary,            // op, children: lhs, rhs
  paren,             // children: the inner expression
  string,            // text
  number,            // number (a float literal)
  integer,           // integer
  unsigned_integer,  // unsigned_integer: an integer literal past int64's range
  boolean,           // boolean
  duration,          // integer: nanoseconds
  regex,             // text: the pattern as written, regex: compiled
  distinct,          // `DISTINCT x` without parentheses; text: the name
};

// One node of an expression tree. Trees are at most max_expression_depth deep, so walking one
// recursively is safe.
struct expression {
  expression_kind kind = expression_kind::integer;
  binary_op op = binary_op::add;
  data_type type = data_type::unknown;
  std::string text;
  double number = 0;
  std::int64_t integer = 0;
  std::uint64_t unsigned_integer = 0;
  bool boolean = false;
  std::uint32_t depth = 1;  // this node's height: 1 for a leaf
  // Shared because compiled patterns are immutable and a statement is read by one query at a
  // time from any thread; null unless kind is regex.
  std::shared_ptr<const std::regex> regex;
  std::vector<std::unique_ptr<expression>> children;
};
using expression_ptr = std::unique_ptr<expression>;

inline constexpr std::uint32_t max_expression_depth = 256;

// InfluxQL text for an expression, as InfluxDB's String() writes it (identifiers quoted when
// needed, strings single-quoted, durations as literals): for error messages and the fuzzer.
std::string to_string(const expression& e);

// A regular expression as written between slashes, and compiled (regex.hpp).
using regex_value = tsdb::regex_value;

// ---- statements

// A FROM source: `m`, `"rp"."m"`, `"db"."rp"."m"`, `db..m`, `/re/`, `"db"."rp"./re/`.
struct measurement_source {
  std::string database;
  std::string retention_policy;
  std::string name;  // empty when `regex` is set
  std::optional<regex_value> regex;
  bool is_subquery = false;  // FROM (SELECT ...): parsed, not run
};

struct field {
  expression_ptr expr;
  std::string alias;  // AS alias; empty when none
};

enum class fill_option : std::uint8_t { null, none, previous, linear, number };

struct select_statement {
  std::vector<field> fields;
  std::optional<measurement_source> target;  // SELECT ... INTO target: parsed, not run
  std::vector<measurement_source> sources;
  expression_ptr condition;                // WHERE; null when absent
  std::vector<expression_ptr> dimensions;  // GROUP BY time(...), "tag", *, /re/
  fill_option fill = fill_option::null;
  double fill_value = 0;          // fill(<number>)
  std::int64_t fill_integer = 0;  // fill(<integer>), exactly
  bool is_fill_integer = false;   // fill(0) rather than fill(0.0)
  bool is_ascending = true;       // ORDER BY time [ASC|DESC]
  std::int64_t limit = 0;         // 0: none
  std::int64_t offset = 0;
  std::int64_t series_limit = 0;      // SLIMIT
  std::int64_t series_offset = 0;     // SOFFSET
  std::optional<time_zone> location;  // tz('...')
  bool is_raw = true;                 // no function call among the fields
};

// WITH KEY = "k" | != "k" | =~ /re/ | !~ /re/ | IN ("a", "b").
enum class tag_key_op : std::uint8_t { equal, not_equal, regex_match, regex_not_match, in };
struct tag_key_filter {
  tag_key_op op = tag_key_op::equal;
  std::vector<std::string> keys;  // equal, not_equal (one key), in
  std::optional<regex_value> regex;
  bool matches(std::string_view key) const;
};

struct show_databases_statement {};

struct show_measurements_statement {
  std::string database;                      // ON db; empty: the request's
  std::optional<measurement_source> source;  // WITH MEASUREMENT = m | =~ /re/
  expression_ptr condition;
  std::int64_t limit = 0;
  std::int64_t offset = 0;
};

struct show_tag_keys_statement {
  std::string database;
  std::vector<measurement_source> sources;
  std::optional<tag_key_filter> key_filter;
  expression_ptr condition;
  std::int64_t limit = 0;
  std::int64_t offset = 0;
  std::int64_t series_limit = 0;
  std::int64_t series_offset = 0;
};

struct show_tag_values_statement {
  std::string database;
  std::vector<measurement_source> sources;
  tag_key_filter key_filter;
  expression_ptr condition;
  std::int64_t limit = 0;
  std::int64_t offset = 0;
};

struct show_field_keys_statement {
  std::string database;
  std::vector<measurement_source> sources;
  std::int64_t limit = 0;
  std::int64_t offset = 0;
};

struct show_retention_policies_statement {
  std::string database;
};

struct show_series_statement {
  std::string database;
  std::vector<measurement_source> sources;
  expression_ptr condition;
  std::int64_t limit = 0;
  std::int64_t offset = 0;
};

struct create_database_statement {
  std::string name;
  bool has_policy = false;  // WITH ...
  std::optional<std::int64_t> duration_ns;
  std::optional<int> replication;
  std::int64_t shard_group_duration_ns = 0;
  std::string policy_name;
};

struct drop_database_statement {
  std::string name;
};

struct create_retention_policy_statement {
  std::string name;
  std::string database;
  std::int64_t duration_ns = 0;  // INF: 0
  int replication = 1;
  std::int64_t shard_group_duration_ns = 0;
  bool is_default = false;
};

struct alter_retention_policy_statement {
  std::string name;
  std::string database;
  std::optional<std::int64_t> duration_ns;
  std::optional<int> replication;
  std::optional<std::int64_t> shard_group_duration_ns;
  bool is_default = false;
};

struct drop_retention_policy_statement {
  std::string name;
  std::string database;
};

// A statement InfluxQL has and Nimbus parses but does not run: `name` is how errors call it
// ("DROP SERIES", "SHOW USERS", "SELECT INTO" is a select_statement with a target).
struct unsupported_statement {
  std::string name;
};

using statement =
    std::variant<select_statement, show_databases_statement, show_measurements_statement,
                 show_tag_keys_statement, show_tag_values_statement, show_field_keys_statement,
                 show_retention_policies_statement, show_series_statement,
                 create_database_statement, drop_database_statement,
                 create_retention_policy_statement, alter_retention_policy_statement,
                 drop_retention_policy_statement, unsupported_statement>;

struct query {
  std::vector<statement> statements;
};

// Why a query was refused, as InfluxDB's /query answers it with 400: the whole text, prefix
// included ("error parsing query: found FROM, expected identifier, string, number, bool at
// line 1, char 8").
struct parse_error {
  std::string message;
};

std::variant<query, parse_error> parse_query(std::string_view text);

// Time literals as InfluxDB reads a string compared with `time`: RFC 3339 with optional
// fraction and offset ("2023-01-01T00:00:00Z", "2023-01-01T02:00:00.5+02:00"), "2023-01-01
// 00:00:00[.frac]" and "2023-01-01", the last two (and RFC 3339 without an offset) in `zone`.
// nullopt when the text is not such a time or falls outside int64 nanoseconds.
std::optional<std::int64_t> parse_time(std::string_view text, const time_zone* zone = nullptr);
// Whether `text` looks like a time literal at all (InfluxDB's isDateString/isDateTimeString):
// when it does not, comparing it with time is a type error rather than a bad time.
bool is_time_string(std::string_view text);

}  // namespace nimbus::tsdb::influxql
