#pragma once
// The built-in functions of AWS IoT SQL: one table of name, arity, first SQL version and body.
// The parser resolves a call's name against it once, at parse time, so an evaluation calls the
// body through a pointer. The rows live beside their bodies, one table per file by idea
// (functions.cpp: message, math, types and collections; string_functions.cpp: strings and regexes;
// encoding.cpp: base64 and hashes; time_format.cpp: dates), and find_function searches them all.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

#include "rules/sql/context.hpp"
#include "rules/sql/value.hpp"
#include "rules/sql/version.hpp"

namespace nimbus::rules::sql {

// One evaluation: the message, the bounds, the arena every value of the evaluation lives in,
// and the first limit it broke. Made and owned by evaluate(), used by one thread.
struct eval_state {
  eval_state(const message_context& message, const limits& limit_values, sql_version sql,
             boost::json::storage_ptr arena, std::string_view payload_bytes,
             const boost::json::value* payload_as_json)
      : context(message),
        bounds(limit_values),
        version(sql),
        storage(std::move(arena)),
        payload(payload_bytes),
        payload_json(payload_as_json) {}

  const message_context& context;
  const limits& bounds;
  sql_version version;
  boost::json::storage_ptr storage;
  std::string_view payload;                // the bytes, JSON or not
  const boost::json::value* payload_json;  // nullptr: the payload is not JSON
  std::size_t steps = 0;
  int select_depth = 0;  // nested SELECTs being evaluated
  std::string error;     // the first limit broken; empty if none

  bool has_failed() const { return !error.empty(); }
  std::size_t steps_left() const { return steps < bounds.max_steps ? bounds.max_steps - steps : 0; }
  void fail(std::string_view message) {
    if (error.empty()) error.assign(message);
  }
  // 2016-03-23 reads whole-number Decimals as Ints (AWS "Data types").
  bool whole_as_int() const { return version == sql_version::v2016_03_23; }
};

// A regexp_* pattern written as a literal, compiled once by the parser. `regex` is null when it
// does not compile (or is refused as too costly): every call with it is then Undefined.
struct compiled_pattern {
  std::shared_ptr<const std::regex> regex;
  std::size_t length = 0;
};

struct call_args {
  std::span<value> values;     // evaluated, in order; bodies may move from them
  bool first_is_star = false;  // encode(*, ...) where * is the payload: its raw bytes
  const compiled_pattern* literal_pattern = nullptr;  // the 2nd argument, when a literal
};

using function_body = value (*)(eval_state& state, const call_args& call);

inline constexpr std::uint8_t any_count = 255;

struct function_info {
  std::string_view name;  // AWS's spelling; looked up ignoring case
  std::uint8_t min_args;
  std::uint8_t max_args;   // any_count: no upper bound
  sql_version since;       // earlier versions refuse the call at parse time
  function_body body;      // nullptr: AWS calls another AWS service here; not offered
  bool second_is_pattern;  // regexp_*: a literal 2nd argument is compiled at parse time
};

// nullptr when IoT SQL has no function of that name.
const function_info* find_function(std::string_view name);

std::span<const function_info> core_functions();      // functions.cpp
std::span<const function_info> string_functions();    // string_functions.cpp
std::span<const function_info> encoding_functions();  // encoding.cpp
std::span<const function_info> time_functions();      // time_format.cpp

// ECMAScript, in libstdc++'s polynomial (breadth-first) mode where available: std::regex
// backtracks exponentially and recurses once per input character otherwise. nullptr when the
// pattern does not compile, uses back-references or lookaheads (a sub-search at every state and
// offset), nests groups deeper than max_group_depth or is longer than max_pattern_bytes (the
// compiler recurses per group and per term), or repeats so much that it would be slow.
std::shared_ptr<const std::regex> compile_pattern(std::string_view pattern);
inline constexpr std::size_t max_group_depth = 32;
inline constexpr std::size_t max_pattern_bytes = 1024;  // however high max_regex_length is set
// How deep the pattern nests parenthesized groups; the parser refuses a literal past the limit.
std::size_t group_depth(std::string_view pattern);

// ---- what the bodies share ------------------------------------------------------------------

// A String in the evaluation's arena; Undefined (and the evaluation failed) past max_output_bytes.
value string_result(std::string_view text, eval_state& state);
// The standard conversion to String of an argument, viewed in place when it is one already
// (`scratch` holds it otherwise). False for Null and Undefined, which have no string form, and
// for an Array or Object whose JSON passes max_output_bytes (the evaluation then fails).
bool text_argument(const value& v, eval_state& state, std::string& scratch, std::string_view& text);
// A JSON value taken from inside a payload or another value, read as SQL reads it.
value adopt(boost::json::value taken, const eval_state& state);
// JSON text (a shadow document, a decoded payload) as a value in the arena; Undefined if it is
// not JSON or nests deeper than max_depth.
value parse_json_value(std::string_view text, const eval_state& state);

// UTF-8: the number of code points, and the byte offset of code point `index` (text.size() past
// the end). Invalid bytes count as one code point each.
std::size_t code_point_count(std::string_view text);
std::size_t code_point_offset(std::string_view text, std::size_t index);

// The arithmetic operators, shared with mod() and remainder(): Int with Int stays an Int (a
// Decimal once it overflows), anything else numeric is a Decimal, numeric Strings convert, and
// + with a String concatenates. Division by zero is Undefined.
enum class arithmetic_op : std::uint8_t { add, subtract, multiply, divide, remainder };
value arithmetic(arithmetic_op op, const value& a, const value& b, eval_state& state);

}  // namespace nimbus::rules::sql
