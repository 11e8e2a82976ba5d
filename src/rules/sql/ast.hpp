#pragma once
// The parsed form of an IoT SQL statement: flat vectors of expression nodes that refer to each
// other by index, so a statement is one value that copies and moves as a whole, and evaluation
// walks arrays rather than a pointer tree. Function names are already resolved to their table
// rows and literal regexes compiled. Immutable once parsed; shared by any number of threads.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

#include "rules/sql/functions.hpp"
#include "rules/sql/version.hpp"

namespace nimbus::rules::sql {

inline constexpr std::uint32_t no_index = 0xFFFFFFFFu;

enum class expr_kind : std::uint8_t {
  constant,       // constants[index]
  field,          // names[index] of the current row (the payload, or an element in a nested SELECT)
  member,         // names[index] of `left`
  star,           // the current row itself
  negate,         // -left
  logical_not,    // NOT left
  logical_and,    // left AND right
  logical_or,     // left OR right
  binary,         // left op right
  call,           // function(list...)
  cast,           // cast(left AS cast_to)
  case_simple,    // CASE left WHEN list[2i] THEN list[2i+1] ... ELSE right END
  case_searched,  // CASE WHEN list[2i] THEN list[2i+1] ... ELSE right END
  array_literal,  // [list...]
  object_literal,  // {names[index + i]: list[i], ...}
  subquery,        // (SELECT ... FROM left ...): queries[index]
};

enum class binary_op : std::uint8_t {
  add,
  subtract,
  multiply,
  divide,
  remainder,
  equal,
  not_equal,
  less,
  less_equal,
  greater,
  greater_equal,
};

enum class cast_type : std::uint8_t { to_string, to_int, to_decimal, to_double, to_boolean };

struct expr {
  expr_kind kind = expr_kind::constant;
  binary_op op = binary_op::add;
  cast_type cast_to = cast_type::to_string;
  // A field or a member of one: resolved in place inside the payload and copied once at the end,
  // rather than copying every object on the way down.
  bool is_path = false;
  std::uint16_t depth = 1;  // of the subtree; the parser bounds it
  std::uint32_t left = no_index;
  std::uint32_t right = no_index;
  std::uint32_t list_begin = 0;  // into program::lists
  std::uint32_t list_size = 0;
  std::uint32_t index = no_index;           // constants, names or queries, by kind
  const function_info* function = nullptr;  // call
  std::uint32_t pattern = no_index;         // call: program::patterns, for a literal regex
};

struct select_item {
  std::uint32_t expression = no_index;  // no_index: a bare `*`
  std::vector<std::string> key_path;    // the output key: the alias split at dots, or the default
};

struct query {
  bool is_value = false;  // SELECT VALUE
  std::vector<select_item> items;
  std::uint32_t from = no_index;  // nested SELECTs: the Array (or Object) whose elements are rows
  std::uint32_t where = no_index;
};

struct program {
  std::vector<expr> exprs;
  std::vector<std::uint32_t> lists;
  std::vector<std::string> names;
  std::vector<boost::json::value> constants;
  std::vector<query> queries;
  std::vector<compiled_pattern> patterns;
  std::uint32_t root = no_index;  // the statement's own query
};

// A parsed rule statement: SELECT list (or SELECT VALUE expr), FROM topic filter, optional WHERE.
class statement {
 public:
  statement(std::string filter, sql_version sql, program parsed)
      : topic_filter_(std::move(filter)), version_(sql), code_(std::move(parsed)) {}

  // The FROM clause: a valid MQTT topic filter, '+' and '#' allowed.
  const std::string& topic_filter() const { return topic_filter_; }
  sql_version version() const { return version_; }
  const program& code() const { return code_; }

 private:
  std::string topic_filter_;
  sql_version version_;
  program code_;
};

}  // namespace nimbus::rules::sql
