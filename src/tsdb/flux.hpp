#pragma once
// Flux, InfluxDB 2's query language: the subset POST /api/v2/query runs (reference/flux.md §3).
// A sans-I/O lexer and recursive-descent parser (text in, syntax tree or Flux's kind of error out:
// "error @1:82-1:158: expected RPAREN, got EOF") and a compiler (syntax tree in, program out:
// pipelines of resolved operations whose constant arguments are evaluated with the request's
// now and extern variables, row functions compiled to row_expression trees). Names that resolve
// to nothing are "undefined identifier x" at their position, and Flux functions Nimbus does not
// run are refused by name, so that nothing unsupported reaches execution (flux_exec.hpp).
//
// Standard library only (the fuzzer builds flux.cpp alone). Nothing throws; trees are bounded in
// height (max_depth) and texts in size, so every recursive walk is safe on hostile input.
// Positions are 1-based lines and byte columns, the end exclusive, as Flux prints them. Pure and
// safe from any thread; a program is immutable and holds no pointer into the text.
#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tsdb/regex.hpp"

namespace nimbus::tsdb::flux {

// ---- positions and errors

struct position {
  std::uint32_t line = 1;
  std::uint32_t column = 1;
  friend bool operator==(const position&, const position&) = default;
};

struct location {
  position start;
  position end;  // exclusive
  friend bool operator==(const location&, const location&) = default;
};

// "1:5-1:9"
std::string to_string(const location& where);

// How an error maps onto InfluxDB 2's codes (query/control/controller.go): invalid and
// unimplemented are 400, not_found 404; the others are ours (limits, deadline).
enum class error_code : std::uint8_t { invalid, not_found, too_large, timed_out, internal };

struct error {
  error_code code = error_code::invalid;
  std::string message;  // the whole text, e.g. "compilation failed: error @1:1-1:4: undefined
                        // identifier foo"
};

// "compilation failed: error @<where>: <what>", Flux's words for a query that does not compile.
error compilation_error(const location& where, std::string_view what);

// ---- values

// A time: nanoseconds since the Unix epoch, UTC.
struct timestamp {
  std::int64_t ns = 0;
  friend auto operator<=>(const timestamp&, const timestamp&) = default;
};

// One cell of a table, or a constant: null (monostate), bool, int, uint, float, string, time.
using scalar =
    std::variant<std::monostate, bool, std::int64_t, std::uint64_t, double, std::string, timestamp>;

// Flux's type names (int, uint, float, string, bool, time; null for a null).
std::string_view type_name(const scalar& value);

// A Flux duration: calendar months and nanoseconds, which Flux keeps apart ("1mo2d": 1 month and
// 172800 s), both carrying the sign. y is 12 months; w and d are 7 and 1 days of 24 hours.
struct duration {
  std::int64_t months = 0;
  std::int64_t nanoseconds = 0;
  friend bool operator==(const duration&, const duration&) = default;
};

// A duration literal without sign ("1h30m", "5µs", "1mo2w"); nullopt when malformed or out of
// range.
std::optional<duration> parse_duration(std::string_view text);

// `ns` moved by `d` times `sign` (+1 or -1): months on the calendar (the day of month clamped to
// the month's last day, as Flux's date arithmetic does), then nanoseconds; nullopt past int64.
std::optional<std::int64_t> add_duration(std::int64_t ns, const duration& d, int sign = 1);

// A Flux date-time literal: RFC 3339 with optional fraction and offset
// ("2021-05-22T23:30:00Z", "2021-05-22T23:30:00.5+02:00") or a bare date ("2021-05-22",
// midnight UTC). nullopt when malformed or outside int64 nanoseconds.
std::optional<std::int64_t> parse_time(std::string_view text);

// Go's time.RFC3339Nano in UTC, trailing zeros of the fraction trimmed: "2024-05-01T10:00:00Z",
// "2024-05-01T10:00:00.5Z".
void append_rfc3339(std::string& out, std::int64_t ns);
// strconv.FormatFloat(v, 'f', -1, 64): the shortest digits that read back, never an exponent;
// NaN, +Inf, -Inf.
void append_float(std::string& out, double value);

// A compiled regular expression (regex.hpp).
using regex_value = tsdb::regex_value;

// A constant as the compiler evaluates it: a scalar, a duration, a regex, an array or a record.
enum class value_kind : std::uint8_t { single, duration, regex, array, record };

struct value {
  value_kind kind = value_kind::single;
  scalar data;  // scalar (null by default)
  duration span;
  regex_value regex;
  std::vector<value> elements;      // array; record: the values of its fields
  std::vector<std::string> labels;  // record: the names of its fields, in order

  static value of(scalar s) {
    value v;
    v.data = std::move(s);
    return v;
  }
  static value of(duration d) {
    value v;
    v.kind = value_kind::duration;
    v.span = d;
    return v;
  }
};

// The conversion functions float(v:), int(v:), uint(v:), string(v:), bool(v:), time(v:), as
// Flux's universe defines them for scalars (a null stays null).
enum class conversion : std::uint8_t { to_float, to_int, to_uint, to_string, to_bool, to_time };
// The converted value, or why not ("cannot convert string \"x\" to float").
std::variant<scalar, std::string> convert(conversion to, const scalar& from);

// ---- syntax tree

enum class node_kind : std::uint8_t {
  identifier,     // text
  string,         // text (the value, escapes resolved)
  interpolation,  // a string with ${...}: parsed, never run
  integer,        // integer
  floating,       // number
  duration,       // span
  time,           // integer: ns
  regex,          // text: the pattern
  array,          // children: elements
  record,         // properties; children[0]: the `with` source when is_with
  function,       // properties: parameters (value: default); children[0]: body, or block
  call,           // children[0]: callee; properties: arguments
  pipe,           // children[0]: argument, children[1]: the call
  member,         // children[0]: object; text: property (`.x` or `["x"]`)
  index,          // children[0]: array, children[1]: index
  binary,         // op; children: lhs, rhs
  logical,        // op (logical_and, logical_or); children: lhs, rhs
  unary,          // op (negate, plus, logical_not, exists); children[0]
  conditional,    // children: test, consequent, alternate
  pipe_receive,   // `<-` as a parameter default
};

enum class operator_kind : std::uint8_t {
  none,
  add,
  subtract,
  multiply,
  divide,
  modulo,
  power,
  equal,
  not_equal,
  less,
  less_equal,
  greater,
  greater_equal,
  regex_match,
  regex_not_match,
  logical_and,
  logical_or,
  logical_not,
  exists,
  negate,
  plus,
};
std::string_view name_of(operator_kind op);  // "+", "==", "and", "not"...

struct node;
using node_ptr = std::unique_ptr<node>;

struct property {
  std::string key;
  location key_where;
  node_ptr value;  // null: a parameter without default, or a shorthand `{a}` property
};

struct statement;

struct node {
  node_kind kind = node_kind::identifier;
  operator_kind op = operator_kind::none;
  location where;
  std::string text;
  std::int64_t integer = 0;
  double number = 0;
  duration span;
  bool is_with = false;      // record: `{r with ...}`
  bool is_block = false;     // function: a `{ ... }` body, in block
  std::uint32_t height = 1;  // 1 for a leaf; at most max_depth
  std::vector<node_ptr> children;
  std::vector<property> properties;
  std::vector<statement> block;
};

enum class statement_kind : std::uint8_t { expression, variable, option, return_value };

struct statement {
  statement_kind kind = statement_kind::expression;
  location where;
  std::string name;  // variable and option: the identifier ("v", or "v.x" for `option v.x =`)
  location name_where;
  node_ptr value;
};

struct import_declaration {
  std::string path;
  std::string alias;
  location where;
};

struct file {
  std::vector<import_declaration> imports;
  std::vector<statement> body;
};

struct parse_limits {
  std::size_t max_text_bytes = std::size_t{1} << 20;
  // Height of any tree (pipes, operators, nesting); deeper input is refused, not recursed into.
  std::uint32_t max_depth = 200;
};

std::variant<file, error> parse(std::string_view text, const parse_limits& limits = {});

// ---- programs

// A row function's body: (r) => <row_expression>, over the columns of one row.
enum class row_op : std::uint8_t {
  literal,    // literal
  column,     // column: r.x / r["x"]; null when the row lacks it
  parameter,  // the function's parameter itself (keep/drop's fn: (column) => ...)
  logical_and,
  logical_or,
  logical_not,
  exists,  // operands[0] is a column
  equal,
  not_equal,
  less,
  less_equal,
  greater,
  greater_equal,
  regex_match,  // operands[0] against regex
  regex_not_match,
  add,
  subtract,
  multiply,
  divide,
  modulo,
  negate,
  convert,      // to (operands[0])
  conditional,  // if operands[0] then operands[1] else operands[2]
};

struct row_expression {
  row_op op = row_op::literal;
  scalar literal;
  std::string column;
  regex_value regex;
  conversion to = conversion::to_float;
  location where;
  std::vector<row_expression> operands;
};

// What a row function sees of one row: a column's value (null when the row has no such
// column), or nullptr while it is not known yet (planning a read, before rows exist).
class row_view {
 public:
  virtual ~row_view() = default;
  virtual const scalar* column(const std::string& label) const = 0;
  virtual const scalar* parameter() const { return nullptr; }
};

struct row_result {
  enum class state : std::uint8_t { known, unknown, failed };
  state outcome = state::known;
  scalar value;       // known
  std::string error;  // failed: the whole message, Flux's kind ("compilation failed: error
                      // @1:40-1:55: float != int")
};

// Evaluates with Flux's rules: no implicit conversion in arithmetic (float * int is an error),
// numbers of any kind compare; a null operand makes a comparison or arithmetic null, `and`/`or`
// are three-valued and short-circuit. Columns not known make the answer unknown unless the
// rest decides it (false and unknown is false).
row_result evaluate(const row_expression& e, const row_view& row);

enum class aggregate_kind : std::uint8_t {
  mean,
  sum,
  count,
  median,  // exact: the mean of the middle two for an even count (see flux_exec.cpp)
  stddev,
  spread,
  min,
  max,
  first,
  last,
  median_selector,  // median(method: "exact_selector")
};
bool is_selector(aggregate_kind kind);
std::string_view name_of(aggregate_kind kind);

struct range_operation {
  std::int64_t start_ns = 0;
  std::int64_t stop_ns = 0;
};

struct filter_operation {
  row_expression predicate;
  bool keeps_empty = false;  // onEmpty: "keep"
};

struct aggregate_operation {
  aggregate_kind kind = aggregate_kind::mean;
  std::string column = "_value";
  bool is_population = false;  // stddev(mode: "population")
};

// Windows [offset + k*every, offset + k*every + period), every and period either whole months
// or nanoseconds; is_infinite: one window over the whole range (every: inf).
struct window_spec {
  duration every;
  duration period;
  duration offset;
  bool is_infinite = false;
};

struct window_operation {
  window_spec windows;
  bool creates_empty = false;
  std::string time_column = "_time";
  std::string start_column = "_start";
  std::string stop_column = "_stop";
};

struct aggregate_window_operation {
  window_spec windows;
  aggregate_operation fn;
  bool creates_empty = true;
  std::string time_source = "_stop";
  std::string time_destination = "_time";
};

struct group_operation {
  std::vector<std::string> columns;
  bool is_except = false;
};

// keep() / drop(): by names, or by a predicate on each name (fn: (column) => ...).
struct columns_operation {
  bool is_keep = true;
  std::vector<std::string> columns;
  std::optional<row_expression> predicate;
};

struct sort_operation {
  std::vector<std::string> columns{"_value"};
  bool is_descending = false;
};

struct limit_operation {
  std::int64_t n = 0;
  std::int64_t offset = 0;
  bool is_tail = false;
};

struct pivot_operation {
  std::vector<std::string> row_key;
  std::vector<std::string> column_key;
  std::string value_column;
};

// map(fn: (r) => ({r with a: ..., b: ...})): each assignment computed from the row as it came.
struct map_operation {
  std::vector<std::pair<std::string, row_expression>> assignments;
};

using operation_detail =
    std::variant<range_operation, filter_operation, aggregate_operation, window_operation,
                 aggregate_window_operation, group_operation, columns_operation, sort_operation,
                 limit_operation, pivot_operation, map_operation>;

struct operation {
  std::string name;  // the Flux function, for errors ("aggregateWindow")
  location where;    // of the call
  operation_detail detail;
};

// from(bucket:) and what is piped after it.
struct pipeline {
  std::string bucket;
  location where;  // of from()
  std::vector<operation> operations;
};

struct result_plan {
  std::string name;  // yield's name, "_result" by default
  pipeline source;
};

struct program {
  std::vector<result_plan> results;  // in the order the text yields them
  std::int64_t now_ns = 0;           // now(): the request's, or `option now = () => <time>`
};

struct compile_options {
  std::int64_t now_ns = 0;
  // extern.body's OptionStatements (the Python client's params=): names usable bare.
  std::vector<std::pair<std::string, value>> externs;
};

std::variant<program, error> compile(const file& syntax, const compile_options& options);

// parse() then compile().
std::variant<program, error> parse_program(std::string_view text, const compile_options& options,
                                           const parse_limits& limits = {});

}  // namespace nimbus::tsdb::flux
