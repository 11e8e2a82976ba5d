#include "tsdb/query.hpp"

// InfluxQL execution over the store, with InfluxDB 1.6.7's result semantics (query/compile.go,
// query/select.go, the reducers in query/functions.go): a statement is compiled once against the
// fields and tags of the measurements it reads (wildcards expanded, names resolved to fields or
// tags, output columns named as ColumnNames names them), then run group by group so that memory
// holds one group's buckets at a time. Aggregates stream over store::read()'s columns; rows are
// merged per series only when a raw query or a condition on field values needs them.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "tsdb/go_sort.hpp"
#include "tsdb/influxql.hpp"
#include "tsdb/rollup.hpp"

namespace nimbus::tsdb {
namespace {

namespace iql = influxql;

// Empty: no error; else the statement's error, in InfluxDB's words.
using error_text = std::string;

constexpr std::int64_t ns_per_second = 1'000'000'000;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

std::int64_t floor_mod(std::int64_t a, std::int64_t b) {
  const std::int64_t r = a % b;
  return r < 0 ? r + b : r;
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out))
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  return out;
}

std::int64_t saturating_sub(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (__builtin_sub_overflow(a, b, &out))
    return b < 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  return out;
}

// A double as int64, saturating (a plain cast past the range is undefined).
std::int64_t to_int64(double value) {
  if (std::isnan(value)) return 0;
  if (value >= 9.2233720368547758e18) return std::numeric_limits<std::int64_t>::max();
  if (value <= -9.2233720368547758e18) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(value);
}

std::string limit_error(std::string_view what, std::size_t count, std::size_t limit) {
  return std::string(what) + " limit exceeded: (" + std::to_string(count) + "/" +
         std::to_string(limit) + ")";
}

// ---------------------------------------------------------------------------------------------
// Cells: the values rows are made of, and what expressions compute with.

cell to_cell(const field_value& value) {
  return std::visit([](const auto& v) -> cell { return v; }, value);
}

bool is_null(const cell& c) {
  return std::holds_alternative<std::monostate>(c);
}

std::optional<double> as_double(const cell& c) {
  if (const auto* d = std::get_if<double>(&c)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&c)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&c)) return static_cast<double>(*u);
  if (const auto* t = std::get_if<time_cell>(&c)) return static_cast<double>(t->ns);
  return std::nullopt;
}

bool is_numeric(const cell& c) {
  return std::holds_alternative<double>(c) || std::holds_alternative<std::int64_t>(c) ||
         std::holds_alternative<std::uint64_t>(c);
}

template <typename T>
int three_way(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Orders two values of comparable kinds (numbers with numbers, strings, booleans); nullopt when
// they are not comparable (a null, a string with a number, NaN).
std::optional<int> compare(const cell& a, const cell& b) {
  if (const auto* x = std::get_if<std::int64_t>(&a)) {
    if (const auto* y = std::get_if<std::int64_t>(&b)) return three_way(*x, *y);
    if (const auto* y = std::get_if<std::uint64_t>(&b))
      return *x < 0 ? -1 : three_way(static_cast<std::uint64_t>(*x), *y);
  }
  if (const auto* x = std::get_if<std::uint64_t>(&a)) {
    if (const auto* y = std::get_if<std::uint64_t>(&b)) return three_way(*x, *y);
    if (const auto* y = std::get_if<std::int64_t>(&b))
      return *y < 0 ? 1 : three_way(*x, static_cast<std::uint64_t>(*y));
  }
  if (is_numeric(a) && is_numeric(b)) {
    const double x = *as_double(a);
    const double y = *as_double(b);
    if (std::isnan(x) || std::isnan(y)) return std::nullopt;
    return three_way(x, y);
  }
  if (const auto* x = std::get_if<std::string>(&a)) {
    if (const auto* y = std::get_if<std::string>(&b)) return three_way(*x, *y);
  }
  if (const auto* x = std::get_if<bool>(&a)) {
    if (const auto* y = std::get_if<bool>(&b)) return three_way(*x, *y);
  }
  return std::nullopt;
}

// Arithmetic as InfluxQL evaluates it: integers stay integers except under `/`, which gives a
// float; a division by zero gives 0; a null operand gives null.
cell arithmetic(iql::binary_op op, const cell& a, const cell& b) {
  using iql::binary_op;
  if (is_null(a) || is_null(b)) return std::monostate{};
  const auto* ia = std::get_if<std::int64_t>(&a);
  const auto* ib = std::get_if<std::int64_t>(&b);
  if (ia != nullptr && ib != nullptr && op != binary_op::divide) {
    const auto x = static_cast<std::uint64_t>(*ia);
    const auto y = static_cast<std::uint64_t>(*ib);
    switch (op) {
      case binary_op::add:
        return static_cast<std::int64_t>(x + y);
      case binary_op::subtract:
        return static_cast<std::int64_t>(x - y);
      case binary_op::multiply:
        return static_cast<std::int64_t>(x * y);
      case binary_op::modulo:
        if (*ib == 0 || (*ib == -1)) return std::int64_t{0};
        return *ia % *ib;
      case binary_op::bitwise_and:
        return *ia & *ib;
      case binary_op::bitwise_or:
        return *ia | *ib;
      case binary_op::bitwise_xor:
        return *ia ^ *ib;
      default:
        return std::monostate{};
    }
  }
  const auto* ua = std::get_if<std::uint64_t>(&a);
  const auto* ub = std::get_if<std::uint64_t>(&b);
  if (ua != nullptr && ub != nullptr && op != binary_op::divide) {
    switch (op) {
      case binary_op::add:
        return *ua + *ub;
      case binary_op::subtract:
        return *ua - *ub;
      case binary_op::multiply:
        return *ua * *ub;
      case binary_op::modulo:
        return *ub == 0 ? std::uint64_t{0} : *ua % *ub;
      case binary_op::bitwise_and:
        return *ua & *ub;
      case binary_op::bitwise_or:
        return *ua | *ub;
      case binary_op::bitwise_xor:
        return *ua ^ *ub;
      default:
        return std::monostate{};
    }
  }
  if (const auto* ba = std::get_if<bool>(&a)) {
    const auto* bb = std::get_if<bool>(&b);
    if (bb == nullptr) return std::monostate{};
    switch (op) {
      case binary_op::bitwise_and:
        return *ba && *bb;
      case binary_op::bitwise_or:
        return *ba || *bb;
      case binary_op::bitwise_xor:
        return *ba != *bb;
      default:
        return std::monostate{};
    }
  }
  const auto x = as_double(a);
  const auto y = as_double(b);
  if (!x || !y || std::holds_alternative<time_cell>(a) || std::holds_alternative<time_cell>(b))
    return std::monostate{};
  switch (op) {
    case binary_op::add:
      return *x + *y;
    case binary_op::subtract:
      return *x - *y;
    case binary_op::multiply:
      return *x * *y;
    case binary_op::divide:
      return *y == 0 ? 0.0 : *x / *y;
    case binary_op::modulo:
      return *y == 0 ? 0.0 : std::fmod(*x, *y);
    default:
      return std::monostate{};
  }
}

// ---------------------------------------------------------------------------------------------
// Compiled expressions: names resolved to a field slot, a tag or a function call's result.

enum class node_kind : std::uint8_t {
  literal,      // value
  field_ref,    // index: the field slot; name: the field
  tag_ref,      // name: the tag key
  call_ref,     // index: the call
  regex,        // regex
  binary,       // op, children: lhs, rhs
  always_true,  // a time comparison: applied as the read's bounds instead
};

struct compiled_expr {
  node_kind kind = node_kind::literal;
  cell value;
  std::string name;
  std::size_t index = 0;
  iql::binary_op op = iql::binary_op::add;
  std::shared_ptr<const std::regex> regex;
  bool has_field = false;  // a field or call somewhere below: unknown before rows are read
  std::vector<compiled_expr> children;
};

// What an expression is evaluated against: a series' tags and, for rows, its field values and
// call results by slot.
struct row_view {
  const std::vector<std::pair<std::string, std::string>>* tags = nullptr;
  const cell* fields = nullptr;
  const cell* calls = nullptr;
  bool is_condition = false;  // a missing tag reads as '' (a condition), or as null (a column)
};

const std::string* find_tag(const std::vector<std::pair<std::string, std::string>>& tags,
                            std::string_view key) {
  for (const auto& [k, v] : tags)
    if (k == key) return &v;
  return nullptr;
}

bool is_true(const cell& c) {
  const auto* b = std::get_if<bool>(&c);
  return b != nullptr && *b;
}

bool is_comparison(iql::binary_op op) {
  using iql::binary_op;
  switch (op) {
    case binary_op::equal:
    case binary_op::not_equal:
    case binary_op::less:
    case binary_op::less_equal:
    case binary_op::greater:
    case binary_op::greater_equal:
    case binary_op::regex_match:
    case binary_op::regex_not_match:
      return true;
    default:
      return false;
  }
}

bool is_ordered(iql::binary_op op) {
  using iql::binary_op;
  return op == binary_op::less || op == binary_op::less_equal || op == binary_op::greater ||
         op == binary_op::greater_equal;
}

// Whether a condition orders a tag (<, <=, >, >=), which SHOW statements refuse.
bool orders_a_tag(const compiled_expr& e) {
  if (e.kind != node_kind::binary) return false;
  if (is_ordered(e.op) &&
      (e.children[0].kind == node_kind::tag_ref || e.children[1].kind == node_kind::tag_ref))
    return true;
  return std::any_of(e.children.begin(), e.children.end(), orders_a_tag);
}

cell evaluate(const compiled_expr& e, const row_view& row) {
  using iql::binary_op;
  switch (e.kind) {
    case node_kind::literal:
      return e.value;
    case node_kind::field_ref:
      return row.fields != nullptr ? row.fields[e.index] : cell{};
    case node_kind::tag_ref: {
      const std::string* value = row.tags != nullptr ? find_tag(*row.tags, e.name) : nullptr;
      if (value != nullptr) return *value;
      return row.is_condition ? cell{std::string()} : cell{};
    }
    case node_kind::call_ref:
      return row.calls != nullptr ? row.calls[e.index] : cell{};
    case node_kind::regex:
      return std::monostate{};
    case node_kind::always_true:
      return true;
    case node_kind::binary:
      break;
  }
  const compiled_expr& lhs = e.children[0];
  const compiled_expr& rhs = e.children[1];
  switch (e.op) {
    case binary_op::logical_and:
      return is_true(evaluate(lhs, row)) && is_true(evaluate(rhs, row));
    case binary_op::logical_or:
      return is_true(evaluate(lhs, row)) || is_true(evaluate(rhs, row));
    case binary_op::regex_match:
    case binary_op::regex_not_match: {
      const cell subject = evaluate(lhs, row);
      const auto* text = std::get_if<std::string>(&subject);
      if (text == nullptr || !rhs.regex) return false;
      const bool is_match = std::regex_search(text->begin(), text->end(), *rhs.regex);
      return e.op == binary_op::regex_match ? is_match : !is_match;
    }
    case binary_op::equal:
    case binary_op::not_equal:
    case binary_op::less:
    case binary_op::less_equal:
    case binary_op::greater:
    case binary_op::greater_equal: {
      // 1.6.7 matches no series by an ordered comparison of a tag (SHOW refuses it).
      if (is_ordered(e.op) && (lhs.kind == node_kind::tag_ref || rhs.kind == node_kind::tag_ref))
        return false;
      const auto order = compare(evaluate(lhs, row), evaluate(rhs, row));
      if (!order) return false;
      switch (e.op) {
        case binary_op::equal:
          return *order == 0;
        case binary_op::not_equal:
          return *order != 0;
        case binary_op::less:
          return *order < 0;
        case binary_op::less_equal:
          return *order <= 0;
        case binary_op::greater:
          return *order > 0;
        default:
          return *order >= 0;
      }
    }
    case binary_op::in:
      return std::monostate{};
    default:
      return arithmetic(e.op, evaluate(lhs, row), evaluate(rhs, row));
  }
}

// A condition over a series' tags alone: a comparison on a field is unknown until rows are read.
enum class truth : std::uint8_t { no, yes, unknown };

truth evaluate_tags(const compiled_expr& e,
                    const std::vector<std::pair<std::string, std::string>>& tags) {
  if (e.kind == node_kind::always_true) return truth::yes;
  if (e.kind == node_kind::binary &&
      (e.op == iql::binary_op::logical_and || e.op == iql::binary_op::logical_or)) {
    const truth lhs = evaluate_tags(e.children[0], tags);
    const truth rhs = evaluate_tags(e.children[1], tags);
    if (e.op == iql::binary_op::logical_and) {
      if (lhs == truth::no || rhs == truth::no) return truth::no;
      if (lhs == truth::yes && rhs == truth::yes) return truth::yes;
      return truth::unknown;
    }
    if (lhs == truth::yes || rhs == truth::yes) return truth::yes;
    if (lhs == truth::no && rhs == truth::no) return truth::no;
    return truth::unknown;
  }
  if (e.has_field) return truth::unknown;
  row_view row;
  row.tags = &tags;
  row.is_condition = true;
  return is_true(evaluate(e, row)) ? truth::yes : truth::no;
}

// ---------------------------------------------------------------------------------------------
// Conditions: time bounds out, the rest compiled.

struct time_range {
  std::int64_t min = min_time_ns;
  std::int64_t max = max_time_ns;
  bool has_lower() const { return min != min_time_ns; }
  bool has_upper() const { return max != max_time_ns; }
};

// `time`, in any case (InfluxDB lowercases the name before comparing).
bool is_time_ref(const iql::expression& e) {
  if (e.kind != iql::expression_kind::var_ref || e.text.size() != 4) return false;
  std::string lower = e.text;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "time";
}

// The Go type InfluxDB names when a value cannot be compared with time.
std::string go_type_name(const iql::expression& e) {
  switch (e.kind) {
    case iql::expression_kind::var_ref:
      return "*influxql.VarRef";
    case iql::expression_kind::wildcard:
      return "*influxql.Wildcard";
    case iql::expression_kind::call:
      return "*influxql.Call";
    case iql::expression_kind::binary:
      return "*influxql.BinaryExpr";
    case iql::expression_kind::paren:
      return "*influxql.ParenExpr";
    case iql::expression_kind::string:
      return "*influxql.StringLiteral";
    case iql::expression_kind::number:
      return "*influxql.NumberLiteral";
    case iql::expression_kind::integer:
      return "*influxql.IntegerLiteral";
    case iql::expression_kind::unsigned_integer:
      return "*influxql.UnsignedLiteral";
    case iql::expression_kind::boolean:
      return "*influxql.BooleanLiteral";
    case iql::expression_kind::duration:
      return "*influxql.DurationLiteral";
    case iql::expression_kind::regex:
      return "*influxql.RegexLiteral";
    case iql::expression_kind::distinct:
      return "*influxql.Distinct";
  }
  return "*influxql.Expr";
}

// A value compared with time, in nanoseconds: a time string, an integer (ns), a number, a
// duration (since the epoch), now(), and sums and differences of those.
error_text time_value(const iql::expression& e, std::int64_t now_ns, const iql::time_zone* zone,
                      std::int64_t& out) {
  switch (e.kind) {
    case iql::expression_kind::string: {
      if (!iql::is_time_string(e.text))
        return "invalid operation: time and *influxql.StringLiteral are not compatible";
      const auto parsed = iql::parse_time(e.text, zone);
      if (!parsed) return "invalid timestamp string";
      out = *parsed;
      return {};
    }
    case iql::expression_kind::integer:
    case iql::expression_kind::duration:
      out = e.integer;
      return {};
    case iql::expression_kind::number:
      if (!std::isfinite(e.number) || std::fabs(e.number) >= 9.2e18)
        return "time " + iql::to_string(e) + " overflows time literal";
      out = static_cast<std::int64_t>(e.number);
      return {};
    case iql::expression_kind::call:
      if (e.text == "now" && e.children.empty()) {
        out = now_ns;
        return {};
      }
      break;
    case iql::expression_kind::paren:
      return time_value(*e.children[0], now_ns, zone, out);
    case iql::expression_kind::binary:
      if (e.op == iql::binary_op::add || e.op == iql::binary_op::subtract) {
        std::int64_t lhs = 0;
        std::int64_t rhs = 0;
        if (auto error = time_value(*e.children[0], now_ns, zone, lhs); !error.empty())
          return error;
        if (auto error = time_value(*e.children[1], now_ns, zone, rhs); !error.empty())
          return error;
        out = e.op == iql::binary_op::add ? saturating_add(lhs, rhs) : saturating_sub(lhs, rhs);
        return {};
      }
      break;
    default:
      break;
  }
  return "invalid operation: time and " + go_type_name(e) + " are not compatible";
}

bool mentions_time(const iql::expression& e) {
  if (is_time_ref(e)) return true;
  return std::any_of(e.children.begin(), e.children.end(),
                     [](const iql::expression_ptr& child) { return mentions_time(*child); });
}

iql::binary_op flipped(iql::binary_op op) {
  using iql::binary_op;
  switch (op) {
    case binary_op::less:
      return binary_op::greater;
    case binary_op::less_equal:
      return binary_op::greater_equal;
    case binary_op::greater:
      return binary_op::less;
    case binary_op::greater_equal:
      return binary_op::less_equal;
    default:
      return op;
  }
}

// Narrows `range` by the time comparisons AND-ed at the top of `e` (ConditionExpr).
error_text extract_time_range(const iql::expression& e, std::int64_t now_ns,
                              const iql::time_zone* zone, time_range& range) {
  using iql::binary_op;
  if (e.kind == iql::expression_kind::paren)
    return extract_time_range(*e.children[0], now_ns, zone, range);
  if (e.kind != iql::expression_kind::binary) return {};
  if (e.op == binary_op::logical_and) {
    if (auto error = extract_time_range(*e.children[0], now_ns, zone, range); !error.empty())
      return error;
    return extract_time_range(*e.children[1], now_ns, zone, range);
  }
  // 1.6.7 narrows the whole read by a time comparison under OR and then reads the comparison
  // as false row by row, returning wrong rows silently; later 1.x versions refuse the query,
  // and so do we.
  if (e.op == binary_op::logical_or) {
    if (mentions_time(e)) return "cannot use OR with time conditions";
    return {};
  }
  const bool is_left = is_time_ref(*e.children[0]);
  const bool is_right = !is_left && is_time_ref(*e.children[1]);
  if (!is_left && !is_right) return {};
  const iql::expression& other = is_left ? *e.children[1] : *e.children[0];
  const binary_op op = is_left ? e.op : flipped(e.op);
  if (op == binary_op::regex_match || op == binary_op::regex_not_match)
    return "invalid operation: time and *influxql.RegexLiteral are not compatible";
  std::int64_t value = 0;
  if (auto error = time_value(other, now_ns, zone, value); !error.empty()) return error;
  if (value < min_time_ns || value > max_time_ns)
    return "time " + std::to_string(value) + " overflows time literal";
  switch (op) {
    case binary_op::greater:
      range.min = std::max(range.min, saturating_add(value, 1));
      break;
    case binary_op::greater_equal:
      range.min = std::max(range.min, value);
      break;
    case binary_op::less:
      range.max = std::min(range.max, saturating_sub(value, 1));
      break;
    case binary_op::less_equal:
      range.max = std::min(range.max, value);
      break;
    case binary_op::equal:
      range.min = std::max(range.min, value);
      range.max = std::min(range.max, value);
      break;
    default:
      return "invalid time comparison operator: " + std::string(iql::name_of(op));
  }
  return {};
}

// Resolves names and lays out field slots for one statement.
struct compile_scope {
  const std::map<std::string, field_type>* fields = nullptr;  // every measurement's, merged
  std::vector<std::string> slots;                             // fields read per row

  std::size_t slot_of(const std::string& field) {
    const auto found = std::find(slots.begin(), slots.end(), field);
    if (found != slots.end()) return static_cast<std::size_t>(found - slots.begin());
    slots.push_back(field);
    return slots.size() - 1;
  }

  bool is_field(const iql::expression& ref) const {
    if (ref.type == iql::data_type::tag) return false;
    if (ref.type != iql::data_type::unknown) return true;
    return fields != nullptr && fields->count(ref.text) > 0;
  }
};

compiled_expr literal(cell value) {
  compiled_expr node;
  node.kind = node_kind::literal;
  node.value = std::move(value);
  return node;
}

compiled_expr binary_node(iql::binary_op op, compiled_expr lhs, compiled_expr rhs) {
  compiled_expr node;
  node.kind = node_kind::binary;
  node.op = op;
  node.has_field = lhs.has_field || rhs.has_field;
  node.children.push_back(std::move(lhs));
  node.children.push_back(std::move(rhs));
  return node;
}

// An operand of a condition: a name, a literal, a regex, arithmetic.
error_text compile_operand(const iql::expression& e, compile_scope& scope, compiled_expr& out) {
  switch (e.kind) {
    case iql::expression_kind::paren:
      return compile_operand(*e.children[0], scope, out);
    case iql::expression_kind::var_ref:
      if (scope.is_field(e)) {
        out.kind = node_kind::field_ref;
        out.name = e.text;
        out.index = scope.slot_of(e.text);
        out.has_field = true;
      } else {
        out.kind = node_kind::tag_ref;
        out.name = e.text;
      }
      return {};
    case iql::expression_kind::string:
      out = literal(e.text);
      return {};
    case iql::expression_kind::number:
      out = literal(e.number);
      return {};
    case iql::expression_kind::integer:
    case iql::expression_kind::duration:
      out = literal(e.integer);
      return {};
    case iql::expression_kind::unsigned_integer:
      out = literal(e.unsigned_integer);
      return {};
    case iql::expression_kind::boolean:
      out = literal(e.boolean);
      return {};
    case iql::expression_kind::regex:
      out.kind = node_kind::regex;
      out.regex = e.regex;
      return {};
    case iql::expression_kind::binary: {
      compiled_expr lhs;
      compiled_expr rhs;
      if (auto error = compile_operand(*e.children[0], scope, lhs); !error.empty()) return error;
      if (auto error = compile_operand(*e.children[1], scope, rhs); !error.empty()) return error;
      out = binary_node(e.op, std::move(lhs), std::move(rhs));
      return {};
    }
    case iql::expression_kind::call:
      return "invalid function call in condition: " + iql::to_string(e);
    default:
      return "invalid condition expression: " + iql::to_string(e);
  }
}

// A WHERE clause. Time comparisons become always_true: extract_time_range turned them into the
// reads' bounds (and refused them under OR).
error_text compile_condition(const iql::expression& e, compile_scope& scope, compiled_expr& out) {
  using iql::binary_op;
  if (e.kind == iql::expression_kind::paren) return compile_condition(*e.children[0], scope, out);
  if (e.kind != iql::expression_kind::binary)
    return "invalid condition expression: " + iql::to_string(e);
  if (e.op == binary_op::logical_and || e.op == binary_op::logical_or) {
    compiled_expr lhs;
    compiled_expr rhs;
    if (auto error = compile_condition(*e.children[0], scope, lhs); !error.empty()) return error;
    if (auto error = compile_condition(*e.children[1], scope, rhs); !error.empty()) return error;
    out = binary_node(e.op, std::move(lhs), std::move(rhs));
    return {};
  }
  if (!is_comparison(e.op)) return "invalid condition expression: " + iql::to_string(e);
  if (is_time_ref(*e.children[0]) || is_time_ref(*e.children[1])) {
    out = compiled_expr{};
    out.kind = node_kind::always_true;
    return {};
  }
  return compile_operand(e, scope, out);
}

// ---------------------------------------------------------------------------------------------
// SHOW statements

std::vector<std::string> chosen_measurements(const store& s, const std::string& database,
                                             const std::vector<iql::measurement_source>& sources) {
  std::vector<std::string> all = s.measurements(database);
  std::sort(all.begin(), all.end());
  if (sources.empty()) return all;
  std::set<std::string> chosen;
  for (const auto& source : sources) {
    if (source.regex) {
      for (const auto& name : all)
        if (source.regex->search(name)) chosen.insert(name);
    } else if (std::binary_search(all.begin(), all.end(), source.name)) {
      chosen.insert(source.name);
    }
  }
  return {chosen.begin(), chosen.end()};
}

// The database a statement reads: its own (ON db), else the request's.
error_text resolve_database(const store& s, const std::string& own, const query_options& options,
                            std::string& database) {
  database = own.empty() ? options.database : own;
  if (database.empty()) return "database name required";
  if (!s.database(database)) return "database not found: " + database;
  return {};
}

// A SHOW statement's WHERE: tags only.
error_text compile_tag_condition(const iql::expression_ptr& condition,
                                 std::optional<compiled_expr>& out) {
  if (!condition) return {};
  static const std::map<std::string, field_type> no_fields;
  compile_scope scope;
  scope.fields = &no_fields;
  compiled_expr compiled;
  if (auto error = compile_condition(*condition, scope, compiled); !error.empty()) return error;
  if (orders_a_tag(compiled)) return "invalid tag comparison operator";
  out = std::move(compiled);
  return {};
}

bool series_matches(const std::optional<compiled_expr>& condition, const series_info& series) {
  return !condition || evaluate_tags(*condition, series.tags) != truth::no;
}

template <typename T>
void apply_offset_limit(std::vector<T>& values, std::int64_t offset, std::int64_t limit) {
  if (offset > 0) {
    const auto skip = std::min(values.size(), static_cast<std::size_t>(offset));
    values.erase(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(skip));
  }
  if (limit > 0 && values.size() > static_cast<std::size_t>(limit))
    values.resize(static_cast<std::size_t>(limit));
}

error_text show_databases(const store& s, statement_result& result) {
  result_series series;
  series.name = "databases";
  series.columns = {"name"};
  for (const auto& info : s.databases()) series.values.push_back({cell{info.name}});
  result.series.push_back(std::move(series));
  return {};
}

error_text show_retention_policies(const store& s,
                                   const iql::show_retention_policies_statement& stmt,
                                   const query_options& options, statement_result& result) {
  const std::string database = stmt.database.empty() ? options.database : stmt.database;
  if (database.empty()) return "database name required";
  const auto info = s.database(database);
  if (!info) return "database not found: " + database;
  result_series series;
  series.columns = {"name", "duration", "shardGroupDuration", "replicaN", "default"};
  for (const auto& policy : info->retention_policies)
    series.values.push_back({cell{policy.name}, cell{iql::format_duration(policy.duration_ns)},
                             cell{iql::format_duration(policy.shard_group_duration_ns)},
                             cell{std::int64_t{policy.replication}}, cell{policy.is_default}});
  result.series.push_back(std::move(series));
  return {};
}

error_text show_measurements(const store& s, const iql::show_measurements_statement& stmt,
                             const query_options& options, statement_result& result) {
  // 1.6.7 answers SHOW MEASUREMENTS on a missing database with nothing, not an error.
  const std::string database = stmt.database.empty() ? options.database : stmt.database;
  if (database.empty()) return "database name required";
  if (!s.database(database)) return {};
  std::optional<compiled_expr> condition;
  if (auto error = compile_tag_condition(stmt.condition, condition); !error.empty()) return error;
  std::vector<std::string> names;
  std::vector<std::string> all = s.measurements(database);
  std::sort(all.begin(), all.end());
  for (const auto& name : all) {
    if (stmt.source) {
      if (stmt.source->regex ? !stmt.source->regex->search(name) : stmt.source->name != name)
        continue;
    }
    if (condition) {
      const auto series = s.series(database, name);
      if (std::none_of(series.begin(), series.end(),
                       [&](const series_info& one) { return series_matches(condition, one); }))
        continue;
    }
    names.push_back(name);
  }
  apply_offset_limit(names, stmt.offset, stmt.limit);
  if (names.empty()) return {};
  result_series series;
  series.name = "measurements";
  series.columns = {"name"};
  for (auto& name : names) series.values.push_back({cell{std::move(name)}});
  result.series.push_back(std::move(series));
  return {};
}

error_text show_tag_keys(const store& s, const iql::show_tag_keys_statement& stmt,
                         const query_options& options, statement_result& result) {
  std::string database;
  if (auto error = resolve_database(s, stmt.database, options, database); !error.empty())
    return error;
  std::optional<compiled_expr> condition;
  if (auto error = compile_tag_condition(stmt.condition, condition); !error.empty()) return error;
  std::vector<result_series> out;
  for (const auto& name : chosen_measurements(s, database, stmt.sources)) {
    std::set<std::string> keys;
    for (const auto& one : s.series(database, name)) {
      if (!series_matches(condition, one)) continue;
      for (const auto& [key, value] : one.tags)
        if (!stmt.key_filter || stmt.key_filter->matches(key)) keys.insert(key);
    }
    std::vector<std::string> list(keys.begin(), keys.end());
    apply_offset_limit(list, stmt.offset, stmt.limit);
    if (list.empty()) continue;
    result_series series;
    series.name = name;
    series.columns = {"tagKey"};
    for (auto& key : list) series.values.push_back({cell{std::move(key)}});
    out.push_back(std::move(series));
  }
  apply_offset_limit(out, stmt.series_offset, stmt.series_limit);
  for (auto& series : out) result.series.push_back(std::move(series));
  return {};
}

error_text show_tag_values(const store& s, const iql::show_tag_values_statement& stmt,
                           const query_options& options, statement_result& result) {
  std::string database;
  if (auto error = resolve_database(s, stmt.database, options, database); !error.empty())
    return error;
  std::optional<compiled_expr> condition;
  if (auto error = compile_tag_condition(stmt.condition, condition); !error.empty()) return error;
  for (const auto& name : chosen_measurements(s, database, stmt.sources)) {
    std::set<std::pair<std::string, std::string>> pairs;
    for (const auto& one : s.series(database, name)) {
      if (!series_matches(condition, one)) continue;
      for (const auto& [key, value] : one.tags)
        if (stmt.key_filter.matches(key)) pairs.emplace(key, value);
    }
    std::vector<std::pair<std::string, std::string>> list(pairs.begin(), pairs.end());
    apply_offset_limit(list, stmt.offset, stmt.limit);
    if (list.empty()) continue;
    result_series series;
    series.name = name;
    series.columns = {"key", "value"};
    for (auto& [key, value] : list)
      series.values.push_back({cell{std::move(key)}, cell{std::move(value)}});
    result.series.push_back(std::move(series));
  }
  return {};
}

error_text show_field_keys(const store& s, const iql::show_field_keys_statement& stmt,
                           const query_options& options, statement_result& result) {
  std::string database;
  if (auto error = resolve_database(s, stmt.database, options, database); !error.empty())
    return error;
  for (const auto& name : chosen_measurements(s, database, stmt.sources)) {
    std::vector<std::pair<std::string, field_type>> list;
    for (const auto& [field, type] : s.fields(database, name)) list.emplace_back(field, type);
    apply_offset_limit(list, stmt.offset, stmt.limit);
    if (list.empty()) continue;
    result_series series;
    series.name = name;
    series.columns = {"fieldKey", "fieldType"};
    for (auto& [field, type] : list)
      series.values.push_back({cell{std::move(field)}, cell{std::string(name_of(type))}});
    result.series.push_back(std::move(series));
  }
  return {};
}

error_text show_series(const store& s, const iql::show_series_statement& stmt,
                       const query_options& options, statement_result& result) {
  std::string database;
  if (auto error = resolve_database(s, stmt.database, options, database); !error.empty())
    return error;
  std::optional<compiled_expr> condition;
  if (auto error = compile_tag_condition(stmt.condition, condition); !error.empty()) return error;
  std::vector<std::string> keys;
  for (const auto& name : chosen_measurements(s, database, stmt.sources)) {
    for (const auto& one : s.series(database, name)) {
      if (!series_matches(condition, one)) continue;
      point p;
      p.measurement = one.measurement;
      p.tags = one.tags;
      keys.push_back(series_key(p));
    }
  }
  std::sort(keys.begin(), keys.end());
  apply_offset_limit(keys, stmt.offset, stmt.limit);
  if (keys.empty()) return {};
  result_series series;
  series.columns = {"key"};
  for (auto& key : keys) series.values.push_back({cell{std::move(key)}});
  result.series.push_back(std::move(series));
  return {};
}

// ---------------------------------------------------------------------------------------------
// SELECT: functions

enum class function : std::uint8_t {
  count,
  sum,
  mean,
  median,
  min,
  max,
  first,
  last,
  spread,
  stddev,
  percentile
};

struct function_entry {
  std::string_view name;
  function fn;
  bool is_selector;             // returns one of its points (and that point's time, alone)
  bool is_numeric_only;         // refuses strings and booleans; skips them in fn(*)
  bool takes_booleans = false;  // numeric_only, but booleans too (1.6.7's min and max)

  bool refuses(field_type type) const {
    if (!is_numeric_only) return false;
    return type == field_type::string || (type == field_type::boolean && !takes_booleans);
  }
};

// The aggregates Nimbus runs: one table drives parsing of calls, wildcard expansion and the
// selector rules.
constexpr function_entry function_table[] = {
    {"count", function::count, false, false},
    {"sum", function::sum, false, true},
    {"mean", function::mean, false, true},
    {"median", function::median, false, true},
    {"min", function::min, true, true, true},
    {"max", function::max, true, true, true},
    {"first", function::first, true, false},
    {"last", function::last, true, false},
    {"spread", function::spread, false, true},
    {"stddev", function::stddev, false, true},
    {"percentile", function::percentile, true, true},
};

const function_entry* find_function(std::string_view name) {
  for (const auto& entry : function_table)
    if (entry.name == name) return &entry;
  return nullptr;
}

// InfluxQL functions Nimbus parses but does not run: named in their own error rather than
// reported as undefined.
constexpr std::string_view unsupported_functions[] = {"distinct",
                                                      "integral",
                                                      "mode",
                                                      "derivative",
                                                      "non_negative_derivative",
                                                      "difference",
                                                      "non_negative_difference",
                                                      "moving_average",
                                                      "cumulative_sum",
                                                      "top",
                                                      "bottom",
                                                      "sample",
                                                      "elapsed",
                                                      "holt_winters",
                                                      "holt_winters_with_fit",
                                                      "count_hll",
                                                      "sum_hll",
                                                      "exponential_moving_average",
                                                      "double_exponential_moving_average",
                                                      "triple_exponential_moving_average",
                                                      "relative_strength_index",
                                                      "triple_exponential_derivative",
                                                      "kaufmans_efficiency_ratio",
                                                      "kaufmans_adaptive_moving_average",
                                                      "chande_momentum_oscillator",
                                                      "abs",
                                                      "sin",
                                                      "cos",
                                                      "tan",
                                                      "asin",
                                                      "acos",
                                                      "atan",
                                                      "atan2",
                                                      "exp",
                                                      "log",
                                                      "ln",
                                                      "log2",
                                                      "log10",
                                                      "sqrt",
                                                      "pow",
                                                      "floor",
                                                      "ceil",
                                                      "round"};

struct call_spec {
  const function_entry* function = nullptr;
  std::string field;
  double percentile = 0;

  bool operator==(const call_spec& other) const {
    return function == other.function && field == other.field && percentile == other.percentile;
  }
};

// ---------------------------------------------------------------------------------------------
// SELECT: compiling the fields

struct output_column {
  std::string alias;      // AS, or the name a wildcard expansion gives
  std::string generated;  // Field.Name(): the function, the variable, or both joined by _
  compiled_expr expr;
};

struct select_plan {
  std::vector<output_column> columns;
  std::vector<std::string> column_names;
  std::string time_column = "time";
  std::vector<call_spec> calls;
  compile_scope scope;
  std::vector<bool> is_output_slot;  // raw: a row exists where one of these has a value
  std::optional<compiled_expr> condition;
  bool is_raw = true;
  bool has_aux = false;           // fields or tags beside a selector
  std::size_t call_count = 0;     // calls as written, before fn(*) expands
  bool is_selector_time = false;  // one selector, no GROUP BY time: rows carry its point's time
  bool is_last_only = false;      // every call is last(): the store's newest points may answer
};

// BinaryExprName: the variables and functions of an expression, joined by _.
void collect_names(const iql::expression& e, std::vector<std::string>& names) {
  if (e.kind == iql::expression_kind::var_ref) {
    names.push_back(e.text);
    return;
  }
  if (e.kind == iql::expression_kind::call) {
    names.push_back(e.text);
    return;
  }
  for (const auto& child : e.children) collect_names(*child, names);
}

std::string field_name(const iql::expression& e) {
  switch (e.kind) {
    case iql::expression_kind::call:
    case iql::expression_kind::var_ref:
      return e.text;
    case iql::expression_kind::paren:
      return field_name(*e.children[0]);
    case iql::expression_kind::binary: {
      std::vector<std::string> names;
      collect_names(e, names);
      std::string joined;
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) joined.push_back('_');
        joined += names[i];
      }
      return joined;
    }
    default:
      return {};
  }
}

bool is_literal(const iql::expression& e) {
  switch (e.kind) {
    case iql::expression_kind::string:
    case iql::expression_kind::number:
    case iql::expression_kind::integer:
    case iql::expression_kind::unsigned_integer:
    case iql::expression_kind::boolean:
    case iql::expression_kind::duration:
    case iql::expression_kind::regex:
      return true;
    default:
      return false;
  }
}

class select_compiler {
 public:
  select_compiler(select_plan& plan, const std::map<std::string, field_type>& fields,
                  const std::set<std::string>& tags, const std::set<std::string>& grouped_tags)
      : plan_(plan), fields_(fields), tags_(tags), grouped_tags_(grouped_tags) {
    plan_.scope.fields = &fields_;
  }

  error_text compile(const iql::select_statement& stmt) {
    for (const auto& f : stmt.fields) {
      const iql::expression& e = *f.expr;
      if (e.kind == iql::expression_kind::var_ref && e.text == "time") {
        if (!f.alias.empty()) plan_.time_column = f.alias;
        continue;
      }
      if (auto error = compile_field(f); !error.empty()) return error;
    }
    name_columns();
    return {};
  }

 private:
  error_text compile_field(const iql::field& f) {
    const iql::expression& e = *f.expr;
    // SELECT *, *::field, *::tag, /re/: every matching field and tag, sorted by name.
    if (e.kind == iql::expression_kind::wildcard || e.kind == iql::expression_kind::regex) {
      std::set<std::string> names;
      const bool wants_fields = e.type != iql::data_type::tag;
      const bool wants_tags = e.type != iql::data_type::any_field;
      if (wants_fields)
        for (const auto& [name, type] : fields_)
          if (matches(e, name)) names.insert(name);
      if (wants_tags)
        for (const auto& name : tags_)
          if (!grouped_tags_.count(name) && !fields_.count(name) && matches(e, name))
            names.insert(name);
      plan_.has_aux = true;
      for (const auto& name : names) {
        output_column column;
        column.generated = name;
        if (fields_.count(name)) {
          column.expr.kind = node_kind::field_ref;
          column.expr.name = name;
          column.expr.index = slot(name, true);
          column.expr.has_field = true;
        } else {
          column.expr.kind = node_kind::tag_ref;
          column.expr.name = name;
        }
        plan_.columns.push_back(std::move(column));
      }
      return {};
    }
    // fn(*), fn(/re/): one call per matching field, aliased fn_field.
    if (e.kind == iql::expression_kind::call && !e.children.empty() &&
        (e.children[0]->kind == iql::expression_kind::wildcard ||
         e.children[0]->kind == iql::expression_kind::regex)) {
      const function_entry* entry = nullptr;
      double percentile = 0;
      if (auto error = check_call(e, entry, percentile); !error.empty()) return error;
      ++plan_.call_count;
      const iql::expression& pattern = *e.children[0];
      const std::string prefix = f.alias.empty() ? e.text : f.alias;
      for (const auto& [name, type] : fields_) {
        if (!matches(pattern, name)) continue;
        if (entry->refuses(type)) continue;
        output_column column;
        column.alias = prefix + "_" + name;
        column.expr = call_node(entry, name, percentile);
        plan_.columns.push_back(std::move(column));
      }
      return {};
    }
    if (is_literal(e)) return "field must contain at least one variable";
    output_column column;
    column.alias = f.alias;
    column.generated = field_name(e);
    if (auto error = compile_expr(e, column.expr); !error.empty()) return error;
    plan_.columns.push_back(std::move(column));
    return {};
  }

  static bool matches(const iql::expression& pattern, const std::string& name) {
    if (pattern.kind != iql::expression_kind::regex) return true;
    return pattern.regex && std::regex_search(name.begin(), name.end(), *pattern.regex);
  }

  std::size_t slot(const std::string& field, bool is_output) {
    const std::size_t index = plan_.scope.slot_of(field);
    if (plan_.is_output_slot.size() < plan_.scope.slots.size())
      plan_.is_output_slot.resize(plan_.scope.slots.size(), false);
    if (is_output) plan_.is_output_slot[index] = true;
    return index;
  }

  error_text check_call(const iql::expression& e, const function_entry*& entry,
                        double& percentile) {
    entry = find_function(e.text);
    if (entry == nullptr) {
      for (std::string_view name : unsupported_functions)
        if (name == e.text) return "function not supported by Nimbus: " + e.text + "()";
      return "undefined function " + e.text + "()";
    }
    const std::size_t expected = entry->fn == function::percentile ? 2 : 1;
    if (e.children.size() != expected)
      return "invalid number of arguments for " + e.text + ", expected " +
             std::to_string(expected) + ", got " + std::to_string(e.children.size());
    if (entry->fn == function::percentile) {
      const iql::expression& n = *e.children[1];
      if (n.kind == iql::expression_kind::integer) {
        percentile = static_cast<double>(n.integer);
      } else if (n.kind == iql::expression_kind::number) {
        percentile = n.number;
      } else {
        return "expected float argument in percentile()";
      }
    }
    const iql::expression& argument = *e.children[0];
    if ((argument.kind == iql::expression_kind::call && argument.text == "distinct") ||
        argument.kind == iql::expression_kind::distinct)
      return "function not supported by Nimbus: distinct()";
    if (argument.kind != iql::expression_kind::var_ref &&
        argument.kind != iql::expression_kind::wildcard &&
        argument.kind != iql::expression_kind::regex)
      return "expected field argument in " + e.text + "()";
    if (argument.kind == iql::expression_kind::var_ref) {
      const auto found = fields_.find(argument.text);
      if (found != fields_.end() && entry->refuses(found->second))
        return "unsupported " + e.text + " iterator type: *query." +
               (found->second == field_type::string ? "string" : "boolean") + "InterruptIterator";
    }
    return {};
  }

  compiled_expr call_node(const function_entry* entry, const std::string& field,
                          double percentile) {
    call_spec spec{entry, field, percentile};
    auto found = std::find(plan_.calls.begin(), plan_.calls.end(), spec);
    std::size_t index = static_cast<std::size_t>(found - plan_.calls.begin());
    if (found == plan_.calls.end()) {
      plan_.calls.push_back(std::move(spec));
      index = plan_.calls.size() - 1;
    }
    slot(field, false);
    compiled_expr node;
    node.kind = node_kind::call_ref;
    node.index = index;
    node.has_field = true;
    return node;
  }

  error_text compile_expr(const iql::expression& e, compiled_expr& out) {
    switch (e.kind) {
      case iql::expression_kind::paren:
        return compile_expr(*e.children[0], out);
      case iql::expression_kind::var_ref: {
        plan_.has_aux = true;
        if (plan_.scope.is_field(e)) {
          out.kind = node_kind::field_ref;
          out.name = e.text;
          out.index = slot(e.text, true);
          out.has_field = true;
        } else {
          out.kind = node_kind::tag_ref;
          out.name = e.text;
        }
        return {};
      }
      case iql::expression_kind::call: {
        const function_entry* entry = nullptr;
        double percentile = 0;
        if (auto error = check_call(e, entry, percentile); !error.empty()) return error;
        const iql::expression& argument = *e.children[0];
        if (argument.kind == iql::expression_kind::wildcard)
          return "unsupported expression with wildcard: " + e.text + "()";
        if (argument.kind == iql::expression_kind::regex)
          return "unsupported expression with regex field: " + e.text + "()";
        ++plan_.call_count;
        out = call_node(entry, argument.text, percentile);
        return {};
      }
      case iql::expression_kind::binary: {
        if (is_literal(*e.children[0]) && is_literal(*e.children[1]))
          return "cannot perform a binary expression on two literals";
        compiled_expr lhs;
        compiled_expr rhs;
        if (auto error = compile_expr(*e.children[0], lhs); !error.empty()) return error;
        if (auto error = compile_expr(*e.children[1], rhs); !error.empty()) return error;
        out = binary_node(e.op, std::move(lhs), std::move(rhs));
        return {};
      }
      case iql::expression_kind::string:
        out = literal(e.text);
        return {};
      case iql::expression_kind::number:
        out = literal(e.number);
        return {};
      case iql::expression_kind::integer:
      case iql::expression_kind::duration:
        out = literal(e.integer);
        return {};
      case iql::expression_kind::unsigned_integer:
        out = literal(e.unsigned_integer);
        return {};
      case iql::expression_kind::boolean:
        out = literal(e.boolean);
        return {};
      case iql::expression_kind::wildcard:
        return "unable to use wildcard in a binary expression";
      case iql::expression_kind::regex:
        return "unable to use regex in a binary expression";
      case iql::expression_kind::distinct:
        return "function not supported by Nimbus: distinct()";
    }
    return "unimplemented";
  }

  // ColumnNames: aliases first, then generated names, a repeat getting _1, _2...
  void name_columns() {
    std::map<std::string, int> used;
    plan_.column_names.assign(plan_.columns.size(), {});
    for (std::size_t i = 0; i < plan_.columns.size(); ++i) {
      if (plan_.columns[i].alias.empty()) continue;
      plan_.column_names[i] = plan_.columns[i].alias;
      used[plan_.columns[i].alias] = 1;
    }
    for (std::size_t i = 0; i < plan_.columns.size(); ++i) {
      if (!plan_.column_names[i].empty()) continue;
      std::string name = plan_.columns[i].generated;
      if (auto found = used.find(name); found != used.end()) {
        int count = found->second;
        for (;;) {
          std::string resolved = name + "_" + std::to_string(count);
          if (!used.count(resolved)) {
            used[name] = count + 1;
            name = std::move(resolved);
            break;
          }
          ++count;
        }
      }
      ++used[name];
      plan_.column_names[i] = name;
    }
  }

  select_plan& plan_;
  const std::map<std::string, field_type>& fields_;
  const std::set<std::string>& tags_;
  const std::set<std::string>& grouped_tags_;
};

// ---------------------------------------------------------------------------------------------
// SELECT: time windows (IteratorOptions.Window, zone offsets included)

struct windowing {
  std::int64_t interval = 0;  // 0: one window over the whole range
  std::int64_t offset = 0;
  const iql::time_zone* zone = nullptr;

  std::int64_t zone_offset(std::int64_t t) const {
    if (zone == nullptr) return 0;
    return static_cast<std::int64_t>(zone->offset_at(floor_div(t, ns_per_second))) * ns_per_second;
  }

  // [start, end) of the window holding t.
  std::pair<std::int64_t, std::int64_t> window(std::int64_t t) const {
    t = saturating_sub(t, offset);
    const std::int64_t zone_ns = zone_offset(t);
    const auto interval_u = static_cast<std::uint64_t>(interval);
    const std::int64_t dt =
        static_cast<std::int64_t>((static_cast<std::uint64_t>(floor_mod(t, interval)) +
                                   static_cast<std::uint64_t>(floor_mod(zone_ns, interval))) %
                                  interval_u);
    std::int64_t start = saturating_add(min_time_ns, dt) >= t ? min_time_ns : t - dt;
    if (zone != nullptr) {
      const std::int64_t shift = zone_ns - zone_offset(start);
      if (shift != 0 && std::abs(shift) < interval) start = saturating_add(start, shift);
    }
    start = saturating_add(start, offset);
    const std::int64_t rest = interval - dt;
    std::int64_t end = saturating_sub(max_time_ns, rest) <= t ? max_time_ns : t + rest;
    end = saturating_add(end, offset);
    if (zone != nullptr) {
      const std::int64_t shift = zone_ns - zone_offset(end);
      if (shift != 0 && std::abs(shift) < interval) end = saturating_add(end, shift);
    }
    return {start, end};
  }
};

// The buckets of one group: GROUP BY time windows from the first to the last, or one bucket.
struct bucket_plan {
  std::int64_t first = 0;
  std::size_t count = 1;
  std::int64_t interval = 0;         // 0: one bucket
  std::vector<std::int64_t> starts;  // with a time zone: windows are not all alike

  std::int64_t start_of(std::size_t index) const {
    if (!starts.empty()) return starts[index];
    return first + static_cast<std::int64_t>(index) * interval;
  }

  // The bucket of t, or count when t falls outside.
  std::size_t index_of(std::int64_t t) const {
    if (interval == 0) return 0;
    if (t < first) return count;
    if (starts.empty()) {
      const auto index =
          static_cast<std::uint64_t>(t - first) / static_cast<std::uint64_t>(interval);
      return index < count ? static_cast<std::size_t>(index) : count;
    }
    const auto after = std::upper_bound(starts.begin(), starts.end(), t);
    return static_cast<std::size_t>(after - starts.begin()) - 1;
  }
};

error_text make_buckets(const windowing& w, std::int64_t from, std::int64_t to,
                        std::size_t max_buckets, bucket_plan& out) {
  out = bucket_plan{};
  if (w.interval == 0) {
    out.first = from;
    return {};
  }
  out.interval = w.interval;
  out.first = w.window(from).first;
  const std::int64_t last = w.window(to).first;
  const std::uint64_t span =
      static_cast<std::uint64_t>(last) - static_cast<std::uint64_t>(out.first);
  const std::uint64_t count = span / static_cast<std::uint64_t>(w.interval) + 1;
  if (max_buckets > 0 && count > max_buckets)
    return limit_error("max-select-buckets", static_cast<std::size_t>(count), max_buckets);
  out.count = static_cast<std::size_t>(count);
  if (w.zone != nullptr) {
    // Windows across a change of offset are longer or shorter: list their starts.
    std::int64_t start = out.first;
    while (start <= to && out.starts.size() <= out.count + 2) {
      out.starts.push_back(start);
      const std::int64_t next = w.window(start).second;
      if (next <= start) break;
      start = next;
    }
    out.count = out.starts.size();
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// SELECT: reducers (query/functions.go's, point by point)

struct sample {
  cell value;
  std::int64_t time = 0;
  std::uint32_t series = 0;
};

// One function's state over one bucket of one group.
struct accumulator {
  std::uint64_t count = 0;
  double sum = 0;
  std::uint64_t integer_sum = 0;  // two's complement: wraps as Go's int64 does
  std::uint64_t unsigned_sum = 0;
  field_type type = field_type::floating;  // of the first value
  cell selected;                           // min, max, first, last; spread's minimum
  cell other;                              // spread's maximum
  std::int64_t selected_time = 0;
  std::uint32_t selected_series = 0;
  std::vector<sample> samples;  // median, stddev, percentile
  // stddev's rollup buckets, merged (Chan): their count, mean and squared deviations.
  std::uint64_t summarised_count = 0;
  double summarised_mean = 0;
  double summarised_m2 = 0;
};

field_type type_of_cell(const cell& c) {
  if (std::holds_alternative<std::int64_t>(c)) return field_type::integer;
  if (std::holds_alternative<std::uint64_t>(c)) return field_type::unsigned_integer;
  if (std::holds_alternative<bool>(c)) return field_type::boolean;
  if (std::holds_alternative<std::string>(c)) return field_type::string;
  return field_type::floating;
}

void feed(accumulator& a, function fn, std::int64_t t, const cell& v, std::uint32_t series) {
  const bool is_first_point = a.count == 0;
  if (is_first_point) a.type = type_of_cell(v);
  ++a.count;
  switch (fn) {
    case function::count:
      return;
    case function::sum:
    case function::mean:
      if (const auto* d = std::get_if<double>(&v)) {
        a.sum += *d;
      } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
        a.integer_sum += static_cast<std::uint64_t>(*i);
        a.sum += static_cast<double>(*i);
      } else if (const auto* u = std::get_if<std::uint64_t>(&v)) {
        a.unsigned_sum += *u;
        a.sum += static_cast<double>(*u);
      }
      return;
    case function::min:
    case function::max: {
      if (!is_first_point) {
        const auto order = compare(v, a.selected);
        if (!order) return;
        const bool is_better = fn == function::min ? *order < 0 : *order > 0;
        if (!is_better && !(*order == 0 && t < a.selected_time)) return;
      }
      a.selected = v;
      a.selected_time = t;
      a.selected_series = series;
      return;
    }
    case function::first:
    case function::last: {
      if (!is_first_point) {
        if (fn == function::first ? t > a.selected_time : t < a.selected_time) return;
        if (t == a.selected_time) {
          const auto order = compare(v, a.selected);
          if (!order || *order <= 0) return;
        }
      }
      a.selected = v;
      a.selected_time = t;
      a.selected_series = series;
      return;
    }
    case function::spread: {
      if (is_first_point) {
        a.selected = v;
        a.other = v;
        return;
      }
      if (const auto order = compare(v, a.selected); order && *order < 0) a.selected = v;
      if (const auto order = compare(v, a.other); order && *order > 0) a.other = v;
      return;
    }
    case function::median:
    case function::stddev:
    case function::percentile:
      a.samples.push_back({v, t, series});
      return;
  }
}

// A column of one series into the accumulators of its buckets. Floats take a path without
// per-point conversion for the functions dashboards use most.
void feed_column(accumulator* accumulators, const bucket_plan& buckets, function fn,
                 const field_column& column, std::uint32_t series) {
  const std::size_t n = column.times.size();
  if (column.type == field_type::floating &&
      (fn == function::count || fn == function::sum || fn == function::mean)) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t bucket = buckets.index_of(column.times[i]);
      if (bucket >= buckets.count) continue;
      const auto* value = std::get_if<double>(&column.values[i]);
      if (value == nullptr) continue;
      accumulator& a = accumulators[bucket];
      if (a.count == 0) a.type = field_type::floating;
      ++a.count;
      a.sum += *value;
    }
    return;
  }
  if (column.type == field_type::floating && (fn == function::min || fn == function::max)) {
    const bool is_min = fn == function::min;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t bucket = buckets.index_of(column.times[i]);
      if (bucket >= buckets.count) continue;
      const auto* value = std::get_if<double>(&column.values[i]);
      if (value == nullptr || std::isnan(*value)) continue;
      accumulator& a = accumulators[bucket];
      const std::int64_t t = column.times[i];
      if (a.count > 0) {
        const double* best = std::get_if<double>(&a.selected);
        if (best == nullptr) {  // another type came first: compare as cells
          feed(a, fn, t, *value, series);
          continue;
        }
        const bool is_better = is_min ? *value < *best : *value > *best;
        if (!is_better && !(*value == *best && t < a.selected_time)) {
          ++a.count;
          continue;
        }
      }
      a.type = field_type::floating;
      ++a.count;
      a.selected = *value;
      a.selected_time = t;
      a.selected_series = series;
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t bucket = buckets.index_of(column.times[i]);
    if (bucket >= buckets.count) continue;
    feed(accumulators[bucket], fn, column.times[i], to_cell(column.values[i]), series);
  }
}

// Which reducers a rollup bucket can feed: those that need only its count, sums, spread of
// values and selected points.
bool is_summarisable(function fn) {
  switch (fn) {
    case function::count:
    case function::sum:
    case function::mean:
    case function::min:
    case function::max:
    case function::first:
    case function::last:
    case function::spread:
    case function::stddev:
      return true;
    case function::median:
    case function::percentile:
      return false;
  }
  return false;
}

// A rollup bucket into an accumulator, as its points would have fed it one by one.
void feed_bucket(accumulator& a, function fn, field_type type, const rollup::bucket& b,
                 std::uint32_t series) {
  if (b.count == 0) return;
  const auto add_count = [&a, &b] { a.count += b.count - 1; };  // feed() counted one
  switch (fn) {
    case function::count:
    case function::sum:
    case function::mean:
      if (a.count == 0) a.type = type;
      a.count += b.count;
      a.sum += b.sum;
      a.integer_sum += static_cast<std::uint64_t>(b.integer_sum);
      return;
    case function::min:
      feed(a, fn, b.min_time, to_cell(b.min), series);
      return add_count();
    case function::max:
      feed(a, fn, b.max_time, to_cell(b.max), series);
      return add_count();
    case function::first:
      feed(a, fn, b.first_time, to_cell(b.first), series);
      return add_count();
    case function::last:
      feed(a, fn, b.last_time, to_cell(b.last), series);
      return add_count();
    case function::spread:
      feed(a, fn, b.min_time, to_cell(b.min), series);
      feed(a, fn, b.max_time, to_cell(b.max), series);
      a.count += b.count - 2;
      return;
    case function::stddev: {
      if (a.count == 0) a.type = type;
      a.count += b.count;
      const double n_a = static_cast<double>(a.summarised_count);
      const double n_b = static_cast<double>(b.count);
      const double delta = b.mean() - a.summarised_mean;
      a.summarised_m2 += b.m2 + delta * delta * n_a * n_b / (n_a + n_b);
      a.summarised_mean += delta * n_b / (n_a + n_b);
      a.summarised_count += b.count;
      return;
    }
    case function::median:
    case function::percentile:
      return;  // never summarised
  }
}

// A bucket's answer: nullopt when it had no point (fill's to decide), else the value (null for a
// stddev of one point, a percentile out of range), with the selected point's time and series.
struct bucket_result {
  std::optional<cell> value;
  std::int64_t time = 0;
  std::uint32_t series = 0;
};

std::vector<double> numbers_of(const std::vector<sample>& samples) {
  std::vector<double> numbers;
  numbers.reserve(samples.size());
  for (const auto& one : samples)
    if (const auto number = as_double(one.value); number && !std::isnan(*number))
      numbers.push_back(*number);
  return numbers;
}

bucket_result finalize(accumulator& a, const call_spec& call) {
  bucket_result out;
  if (a.count == 0) return out;
  out.time = a.selected_time;
  out.series = a.selected_series;
  switch (call.function->fn) {
    case function::count:
      out.value = static_cast<std::int64_t>(a.count);
      break;
    case function::sum:
      if (a.type == field_type::integer) {
        out.value = static_cast<std::int64_t>(a.integer_sum);
      } else if (a.type == field_type::unsigned_integer) {
        out.value = a.unsigned_sum;
      } else {
        out.value = a.sum;
      }
      break;
    case function::mean:
      out.value = a.sum / static_cast<double>(a.count);
      break;
    case function::min:
    case function::max:
    case function::first:
    case function::last:
      out.value = a.selected;
      break;
    case function::spread: {
      const cell& low = a.selected;
      const cell& high = a.other;
      if (const auto* l = std::get_if<std::int64_t>(&low);
          l && std::holds_alternative<std::int64_t>(high)) {
        out.value =
            static_cast<std::int64_t>(static_cast<std::uint64_t>(std::get<std::int64_t>(high)) -
                                      static_cast<std::uint64_t>(*l));
      } else if (const auto* ul = std::get_if<std::uint64_t>(&low);
                 ul && std::holds_alternative<std::uint64_t>(high)) {
        out.value = std::get<std::uint64_t>(high) - *ul;
      } else {
        const auto low_number = as_double(low);
        const auto high_number = as_double(high);
        out.value = low_number && high_number ? cell{*high_number - *low_number} : cell{};
      }
      break;
    }
    case function::stddev: {
      const std::vector<double> numbers = numbers_of(a.samples);
      if (numbers.size() + a.summarised_count < 2) {
        out.value = cell{};
        break;
      }
      // As InfluxDB: a running mean, then the sample variance around it; rollup buckets merged
      // in by Chan's formula.
      double mean = 0;
      std::size_t count = 0;
      for (double x : numbers) {
        ++count;
        mean += (x - mean) / static_cast<double>(count);
      }
      double variance = 0;
      for (double x : numbers) variance += (x - mean) * (x - mean);
      if (a.summarised_count > 0) {
        const double n_a = static_cast<double>(count);
        const double n_b = static_cast<double>(a.summarised_count);
        const double delta = a.summarised_mean - mean;
        variance += a.summarised_m2 + delta * delta * n_a * n_b / (n_a + n_b);
        count += a.summarised_count;
      }
      if (count < 2) {
        out.value = cell{};
        break;
      }
      out.value = std::sqrt(variance / static_cast<double>(count - 1));
      break;
    }
    case function::median: {
      if (a.type == field_type::integer) {
        // 1.6.7's integer median: float64(lo) + float64(hi-lo)/2, the difference wrapping.
        std::vector<std::int64_t> integers;
        for (const auto& one : a.samples)
          if (const auto* i = std::get_if<std::int64_t>(&one.value)) integers.push_back(*i);
        if (!integers.empty()) {
          std::sort(integers.begin(), integers.end());
          const std::size_t half = integers.size() / 2;
          if (integers.size() % 2 == 0) {
            const std::int64_t low = integers[half - 1];
            const auto difference = static_cast<std::int64_t>(
                static_cast<std::uint64_t>(integers[half]) - static_cast<std::uint64_t>(low));
            out.value = static_cast<double>(low) + static_cast<double>(difference) / 2;
          } else {
            out.value = static_cast<double>(integers[half]);
          }
          break;
        }
      }
      std::vector<double> numbers = numbers_of(a.samples);
      if (numbers.empty()) {
        out.value = cell{};
        break;
      }
      std::sort(numbers.begin(), numbers.end());
      const std::size_t half = numbers.size() / 2;
      if (numbers.size() % 2 == 0) {
        const double low = numbers[half - 1];
        const double high = numbers[half];
        out.value = low + (high - low) / 2;
      } else {
        out.value = numbers[half];
      }
      break;
    }
    case function::percentile: {
      auto& samples = a.samples;
      const auto length = static_cast<double>(samples.size());
      // InfluxDB's nearest rank: floor(n * p / 100 + 0.5) - 1, null outside the points.
      const double rank = std::floor(length * call.percentile / 100.0 + 0.5);
      if (!(rank >= 1 && rank <= length)) {
        out.value.reset();  // as 1.6.7: no point at all, so fill() decides
        break;
      }
      const auto index = static_cast<std::int64_t>(rank) - 1;
      // The points in time order (across series as 1.6.7 merges them), then sorted by value as
      // Go's sort.Sort sorts them: which of several equal values is chosen, and so the time
      // answered, is that algorithm's. NaN last: a strict weak order whatever the values.
      std::stable_sort(samples.begin(), samples.end(),
                       [](const sample& x, const sample& y) { return x.time < y.time; });
      go_sort::sort(samples, [](const sample& x, const sample& y) {
        const double left = as_double(x.value).value_or(0);
        const double right = as_double(y.value).value_or(0);
        if (std::isnan(left)) return false;
        return std::isnan(right) || left < right;
      });
      const sample& chosen = samples[static_cast<std::size_t>(index)];
      out.value = chosen.value;
      out.time = chosen.time;
      out.series = chosen.series;
      break;
    }
  }
  return out;
}

// fill(): empty buckets become null (count: 0), a number, the previous value, or a line between
// their neighbours; fill(none) is applied when rows are made.
void apply_fill(std::vector<bucket_result>& results, const bucket_plan& buckets,
                const iql::select_statement& stmt, const call_spec& call) {
  switch (stmt.fill) {
    case iql::fill_option::none:
      return;
    case iql::fill_option::null:
      if (call.function->fn != function::count) return;
      for (auto& r : results)
        if (!r.value) r.value = std::int64_t{0};
      return;
    case iql::fill_option::number:
      for (auto& r : results) {
        if (r.value) continue;
        if (stmt.is_fill_integer)
          r.value = stmt.fill_integer;
        else
          r.value = stmt.fill_value;
      }
      return;
    case iql::fill_option::previous: {
      std::optional<cell> previous;
      for (auto& r : results) {
        if (r.value)
          previous = r.value;
        else if (previous)
          r.value = previous;
      }
      return;
    }
    case iql::fill_option::linear: {
      std::optional<std::size_t> previous;
      for (std::size_t i = 0; i < results.size(); ++i) {
        if (!results[i].value || !is_numeric(*results[i].value)) continue;
        if (previous && i - *previous > 1) {
          const cell& y0 = *results[*previous].value;
          const cell& y1 = *results[i].value;
          const double x0 = static_cast<double>(buckets.start_of(*previous));
          const double x1 = static_cast<double>(buckets.start_of(i));
          const double v0 = *as_double(y0);
          const double v1 = *as_double(y1);
          for (std::size_t k = *previous + 1; k < i; ++k) {
            const double x = static_cast<double>(buckets.start_of(k));
            const double y = v0 + (v1 - v0) * (x - x0) / (x1 - x0);
            if (std::holds_alternative<std::int64_t>(y0))
              results[k].value = to_int64(y);
            else if (std::holds_alternative<std::uint64_t>(y0))
              results[k].value = static_cast<std::uint64_t>(std::clamp(y, 0.0, 1.8e19));
            else
              results[k].value = y;
          }
        }
        previous = i;
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SELECT: running a compiled statement

// A measurement a statement reads, in one database and retention policy.
struct target {
  std::string database;
  std::string policy;
  std::string measurement;
  std::map<std::string, field_type> fields;
  std::vector<series_info> series;
};

struct matched_series {
  const series_info* info = nullptr;
  truth condition = truth::yes;  // unknown: rows must be read to decide
};

struct series_group {
  std::vector<std::string> values;  // of the GROUP BY tag keys, "" where a series lacks one
  std::vector<matched_series> series;
};

struct select_context {
  const store& s;
  const query_options& options;
  const iql::select_statement& stmt;
  select_plan plan;
  time_range range;
  std::int64_t read_max = max_time_ns;
  windowing window;
  std::size_t points = 0;
  std::size_t rows = 0;

  // Reads one field of one series within the statement's range (or [from, to] of it),
  // counting its points.
  error_text read(const target& t, const series_info& series, const std::string& field,
                  field_column& out) {
    return read(t, series, field, range.min, read_max, out);
  }
  error_text read(const target& t, const series_info& series, const std::string& field,
                  std::int64_t from, std::int64_t to, field_column& out) {
    out = field_column{};
    if (!t.fields.count(field)) return {};
    out = s.read(t.database, t.policy, series.id, field, from, to);
    return count_points(out.times.size());
  }

  error_text count_points(std::size_t n) {
    points += n;
    const std::size_t limit = options.limits.max_select_point;
    if (limit > 0 && points > limit) return limit_error("max-select-point", points, limit);
    return {};
  }

  error_text count_rows(std::size_t n) {
    rows += n;
    const std::size_t limit = options.limits.max_result_rows;
    if (limit > 0 && rows > limit) return limit_error("max-result-rows", rows, limit);
    return {};
  }
};

// Calls on_row(time) for each time at which any of `columns` has a value, with `cells` holding
// every column's value at that time (null where it has none).
template <typename OnRow>
error_text for_each_row(const std::vector<field_column>& columns, std::vector<cell>& cells,
                        OnRow&& on_row) {
  std::vector<std::size_t> cursors(columns.size(), 0);
  for (;;) {
    std::int64_t t = std::numeric_limits<std::int64_t>::max();
    bool has_any = false;
    for (std::size_t i = 0; i < columns.size(); ++i) {
      if (cursors[i] >= columns[i].times.size()) continue;
      t = std::min(t, columns[i].times[cursors[i]]);
      has_any = true;
    }
    if (!has_any) return {};
    for (std::size_t i = 0; i < columns.size(); ++i) {
      if (cursors[i] < columns[i].times.size() && columns[i].times[cursors[i]] == t) {
        cells[i] = to_cell(columns[i].values[cursors[i]]);
        ++cursors[i];
      } else {
        cells[i] = std::monostate{};
      }
    }
    if (auto error = on_row(t); !error.empty()) return error;
  }
}

bool row_passes(const select_context& ctx, const matched_series& series, const cell* fields) {
  if (series.condition != truth::unknown || !ctx.plan.condition) return true;
  row_view view;
  view.tags = &series.info->tags;
  view.fields = fields;
  view.is_condition = true;
  return is_true(evaluate(*ctx.plan.condition, view));
}

void order_and_trim(const iql::select_statement& stmt, std::vector<std::vector<cell>>& rows) {
  if (!stmt.is_ascending) std::reverse(rows.begin(), rows.end());
  apply_offset_limit(rows, stmt.offset, stmt.limit);
}

error_text run_raw_group(select_context& ctx, const target& t, const series_group& group,
                         result_series& out) {
  const auto& slots = ctx.plan.scope.slots;
  std::vector<std::vector<cell>> rows;
  std::vector<field_column> columns(slots.size());
  std::vector<cell> cells(slots.size());
  for (const matched_series& series : group.series) {
    for (std::size_t i = 0; i < slots.size(); ++i)
      if (auto error = ctx.read(t, *series.info, slots[i], columns[i]); !error.empty())
        return error;
    auto error = for_each_row(columns, cells, [&](std::int64_t time) -> error_text {
      bool has_output = false;
      for (std::size_t i = 0; i < cells.size() && !has_output; ++i)
        has_output = ctx.plan.is_output_slot[i] && !is_null(cells[i]);
      if (!has_output || !row_passes(ctx, series, cells.data())) return {};
      row_view view;
      view.tags = &series.info->tags;
      view.fields = cells.data();
      std::vector<cell> row;
      row.reserve(ctx.plan.columns.size() + 1);
      row.emplace_back(time_cell{time});
      for (const auto& column : ctx.plan.columns) row.push_back(evaluate(column.expr, view));
      rows.push_back(std::move(row));
      return ctx.count_rows(1);
    });
    if (!error.empty()) return error;
  }
  // Series were read in series-key order: a stable sort keeps it among rows of one time.
  const auto time_of = [](const std::vector<cell>& row) {
    const auto* time = std::get_if<time_cell>(&row.front());
    return time != nullptr ? time->ns : 0;
  };
  if (ctx.stmt.is_ascending) {
    std::stable_sort(rows.begin(), rows.end(),
                     [&](const auto& a, const auto& b) { return time_of(a) < time_of(b); });
  } else {
    std::stable_sort(rows.begin(), rows.end(),
                     [&](const auto& a, const auto& b) { return time_of(a) > time_of(b); });
  }
  apply_offset_limit(rows, ctx.stmt.offset, ctx.stmt.limit);
  out.values = std::move(rows);
  return {};
}

error_text run_aggregate_group(select_context& ctx, const target& t, const series_group& group,
                               result_series& out) {
  const select_plan& plan = ctx.plan;
  const auto& calls = plan.calls;

  // The buckets: from the lower bound, or without one from the group's first point.
  std::int64_t from = ctx.range.min;
  if (!ctx.range.has_lower() && ctx.window.interval > 0) {
    std::int64_t earliest = std::numeric_limits<std::int64_t>::max();
    field_column column;
    for (const matched_series& series : group.series) {
      for (const auto& call : calls) {
        if (auto error = ctx.read(t, *series.info, call.field, column); !error.empty())
          return error;
        if (!column.times.empty()) earliest = std::min(earliest, column.times.front());
        // Days whose points expired may keep their rollups (rollup retention).
        if (ctx.options.use_rollups && t.fields.count(call.field)) {
          const auto summary = ctx.s.read_rollup(t.database, t.policy, series.info->id, call.field,
                                                 rollup::day_ns, ctx.range.min, ctx.read_max);
          if (!summary.buckets.empty())
            earliest = std::min(earliest, summary.buckets.front().first_time);
        }
      }
    }
    if (earliest == std::numeric_limits<std::int64_t>::max()) return {};
    from = earliest;
  }
  bucket_plan buckets;
  if (auto error = make_buckets(ctx.window, from, ctx.read_max,
                                ctx.options.limits.max_select_buckets, buckets);
      !error.empty())
    return error;

  // Rollups answer when every call can use them and each bucket of theirs lies in one of
  // ours: the coarsest tier dividing the interval and every window start (tz included).
  std::int64_t rollup_tier = 0;
  if (ctx.options.use_rollups && !plan.has_aux &&
      std::all_of(calls.begin(), calls.end(),
                  [](const call_spec& call) { return is_summarisable(call.function->fn); })) {
    for (const std::int64_t tier : rollup::tiers) {
      const auto is_start = [tier](std::int64_t start) { return floor_mod(start, tier) == 0; };
      const bool is_aligned =
          buckets.interval == 0 ||
          (buckets.interval % tier == 0 &&
           (buckets.starts.empty()
                ? is_start(buckets.first)
                : std::all_of(buckets.starts.begin(), buckets.starts.end(), is_start)));
      if (is_aligned) {
        rollup_tier = tier;
        break;
      }
    }
  }

  std::vector<accumulator> accumulators(calls.size() * buckets.count);
  const auto accumulators_of = [&](std::size_t call) {
    return accumulators.data() + call * buckets.count;
  };
  const auto& slots = plan.scope.slots;
  std::vector<std::size_t> call_slots;
  for (const auto& call : calls)
    call_slots.push_back(static_cast<std::size_t>(
        std::find(slots.begin(), slots.end(), call.field) - slots.begin()));

  std::vector<field_column> columns(slots.size());
  std::vector<cell> cells(slots.size());
  field_column column;
  for (std::size_t index = 0; index < group.series.size(); ++index) {
    const matched_series& series = group.series[index];
    const auto series_index = static_cast<std::uint32_t>(index);
    if (series.condition == truth::unknown) {
      // A condition on field values: merge the series' fields into rows and test each.
      for (std::size_t i = 0; i < slots.size(); ++i)
        if (auto error = ctx.read(t, *series.info, slots[i], columns[i]); !error.empty())
          return error;
      auto error = for_each_row(columns, cells, [&](std::int64_t time) -> error_text {
        if (!row_passes(ctx, series, cells.data())) return {};
        const std::size_t bucket = buckets.index_of(time);
        if (bucket >= buckets.count) return {};
        for (std::size_t c = 0; c < calls.size(); ++c) {
          const cell& value = cells[call_slots[c]];
          if (!is_null(value))
            feed(accumulators_of(c)[bucket], calls[c].function->fn, time, value, series_index);
        }
        return {};
      });
      if (!error.empty()) return error;
      continue;
    }
    // last() alone: the store keeps each series' newest point, so most series need no read.
    std::vector<bool> is_answered(calls.size(), false);
    if (plan.is_last_only && ctx.window.interval == 0) {
      for (std::size_t c = 0; c < calls.size(); ++c) {
        if (!t.fields.count(calls[c].field)) {
          is_answered[c] = true;
          continue;
        }
        const auto newest = ctx.s.last(t.database, t.policy, series.info->id, calls[c].field);
        if (!newest) {
          is_answered[c] = true;
        } else if (newest->first < ctx.range.min) {
          is_answered[c] = true;  // nothing newer: nothing in range
        } else if (newest->first <= ctx.range.max) {
          if (auto error = ctx.count_points(1); !error.empty()) return error;
          feed(accumulators_of(c)[0], function::last, newest->first, to_cell(newest->second),
               series_index);
          is_answered[c] = true;
        }
      }
    }
    // Each field once, fed to every call on it: from rollups where the plan allows, the rest
    // from points.
    std::vector<bool> is_done(calls.size(), false);
    for (std::size_t c = 0; c < calls.size(); ++c) {
      if (is_answered[c] || is_done[c]) continue;
      const auto feed_points = [&](const field_column& points) {
        for (std::size_t other = c; other < calls.size(); ++other) {
          if (is_answered[other] || is_done[other] || calls[other].field != calls[c].field)
            continue;
          feed_column(accumulators_of(other), buckets, calls[other].function->fn, points,
                      series_index);
        }
      };
      if (rollup_tier > 0 && t.fields.count(calls[c].field)) {
        const auto summary =
            ctx.s.read_rollup(t.database, t.policy, series.info->id, calls[c].field, rollup_tier,
                              ctx.range.min, ctx.read_max);
        if (auto error = ctx.count_points(summary.buckets.size()); !error.empty()) return error;
        for (const auto& b : summary.buckets) {
          const std::size_t bucket = buckets.index_of(b.start);
          if (bucket >= buckets.count) continue;
          for (std::size_t other = c; other < calls.size(); ++other)
            if (!is_answered[other] && !is_done[other] && calls[other].field == calls[c].field)
              feed_bucket(accumulators_of(other)[bucket], calls[other].function->fn, summary.type,
                          b, series_index);
        }
        for (const auto& [low, high] : summary.raw) {
          if (auto error = ctx.read(t, *series.info, calls[c].field, low, high, column);
              !error.empty())
            return error;
          feed_points(column);
        }
      } else {
        if (auto error = ctx.read(t, *series.info, calls[c].field, column); !error.empty())
          return error;
        feed_points(column);
      }
      for (std::size_t other = c; other < calls.size(); ++other)
        if (calls[other].field == calls[c].field) is_done[other] = true;
    }
  }

  // Results per call and bucket, then fill.
  std::vector<std::vector<bucket_result>> results(calls.size());
  std::vector<bool> has_data(buckets.count, false);
  bool has_any = false;
  for (std::size_t c = 0; c < calls.size(); ++c) {
    results[c].reserve(buckets.count);
    for (std::size_t b = 0; b < buckets.count; ++b) {
      results[c].push_back(finalize(accumulators_of(c)[b], calls[c]));
      if (results[c].back().value) {
        has_data[b] = true;
        has_any = true;
      }
    }
  }
  accumulators.clear();
  accumulators.shrink_to_fit();
  if (!has_any) return {};
  for (std::size_t c = 0; c < calls.size(); ++c)
    apply_fill(results[c], buckets, ctx.stmt, calls[c]);

  std::vector<cell> call_cells(calls.size());
  std::vector<cell> aux_cells(slots.size());
  std::vector<std::vector<cell>> rows;
  for (std::size_t b = 0; b < buckets.count; ++b) {
    if (!has_data[b] && (ctx.stmt.fill == iql::fill_option::none || buckets.interval == 0))
      continue;
    for (std::size_t c = 0; c < calls.size(); ++c)
      call_cells[c] = results[c][b].value ? *results[c][b].value : cell{};
    std::int64_t time = 0;
    if (buckets.interval > 0) {
      time = buckets.start_of(b);
    } else if (plan.is_selector_time && has_data[b] && !calls.empty()) {
      time = results[0][b].time;
    } else {
      time = ctx.range.has_lower() ? ctx.range.min : 0;
    }
    row_view view;
    view.calls = call_cells.data();
    // Fields and tags beside one selector come from the point it selected.
    if (plan.has_aux && !calls.empty() && has_data[b] && results[0][b].value) {
      const bucket_result& chosen = results[0][b];
      const series_info& source = *group.series[chosen.series].info;
      view.tags = &source.tags;
      for (std::size_t i = 0; i < slots.size(); ++i) {
        aux_cells[i] = cell{};
        if (!plan.is_output_slot[i] || !t.fields.count(slots[i])) continue;
        const field_column at =
            ctx.s.read(t.database, t.policy, source.id, slots[i], chosen.time, chosen.time);
        if (!at.values.empty()) aux_cells[i] = to_cell(at.values.front());
      }
      view.fields = aux_cells.data();
    } else {
      std::fill(aux_cells.begin(), aux_cells.end(), cell{});
      view.fields = aux_cells.data();
    }
    std::vector<cell> row;
    row.reserve(plan.columns.size() + 1);
    row.emplace_back(time_cell{time});
    for (const auto& column_plan : plan.columns) row.push_back(evaluate(column_plan.expr, view));
    rows.push_back(std::move(row));
  }
  order_and_trim(ctx.stmt, rows);
  if (auto error = ctx.count_rows(rows.size()); !error.empty()) return error;
  out.values = std::move(rows);
  return {};
}

// GROUP BY: time(interval[, offset]), tag keys, *, /re/.
struct dimensions {
  std::vector<std::string> tag_keys;
  bool is_all_tags = false;
  std::vector<std::shared_ptr<const std::regex>> patterns;

  bool has_tags() const { return is_all_tags || !tag_keys.empty() || !patterns.empty(); }

  // The keys to group `t` by: sorted, each once.
  std::vector<std::string> keys_for(const std::set<std::string>& tags) const {
    std::set<std::string> keys(tag_keys.begin(), tag_keys.end());
    for (const auto& tag : tags) {
      if (is_all_tags) keys.insert(tag);
      for (const auto& pattern : patterns)
        if (std::regex_search(tag.begin(), tag.end(), *pattern)) keys.insert(tag);
    }
    return {keys.begin(), keys.end()};
  }
};

error_text compile_dimensions(const iql::select_statement& stmt, std::int64_t now_ns,
                              windowing& window, dimensions& out) {
  for (const auto& d : stmt.dimensions) {
    const iql::expression& e = *d;
    switch (e.kind) {
      case iql::expression_kind::var_ref:
        if (is_time_ref(e)) return "time() is a function and expects at least one argument";
        out.tag_keys.push_back(e.text);
        break;
      case iql::expression_kind::wildcard:
        out.is_all_tags = true;
        break;
      case iql::expression_kind::regex:
        out.patterns.push_back(e.regex);
        break;
      case iql::expression_kind::call: {
        if (e.text != "time") return "only time() calls allowed in dimensions";
        if (e.children.empty() || e.children.size() > 2)
          return "time dimension expected 1 or 2 arguments";
        if (e.children[0]->kind != iql::expression_kind::duration)
          return "time dimension must have duration argument";
        if (window.interval != 0) return "multiple time dimensions not allowed";
        window.interval = e.children[0]->integer;
        // time(0s) groups nothing, as 1.6.7 reads it.
        if (window.interval < 0) return "time dimension must have a positive duration";
        if (window.interval > 0 && e.children.size() == 2) {
          const iql::expression& offset = *e.children[1];
          if (offset.kind == iql::expression_kind::duration) {
            window.offset = offset.integer % window.interval;
          } else if (offset.kind == iql::expression_kind::call && offset.text == "now") {
            if (!offset.children.empty())
              return "time dimension offset now() function requires no arguments";
            window.offset = floor_mod(now_ns, window.interval);
          } else if (offset.kind == iql::expression_kind::call) {
            return "time dimension offset function must be now()";
          } else if (offset.kind == iql::expression_kind::string &&
                     iql::is_time_string(offset.text)) {
            const auto time = iql::parse_time(offset.text, window.zone);
            if (!time) return "invalid timestamp string";
            window.offset = floor_mod(*time, window.interval);
          } else {
            return "time dimension offset must be duration or now()";
          }
        }
        break;
      }
      default:
        return "only time and tag dimensions allowed";
    }
  }
  return {};
}

// The measurements a SELECT reads, by name, each with its database and retention policy.
error_text resolve_targets(const store& s, const iql::select_statement& stmt,
                           const query_options& options, std::vector<target>& out) {
  std::set<std::tuple<std::string, std::string, std::string>> seen;
  for (const auto& source : stmt.sources) {
    if (source.is_subquery) return "statement not supported by Nimbus: subqueries";
    const std::string database = source.database.empty() ? options.database : source.database;
    if (database.empty()) return "database name required";
    if (!s.database(database)) return "database not found: " + database;
    const std::string policy_name =
        source.retention_policy.empty() ? options.retention_policy : source.retention_policy;
    const auto policy = s.policy(database, policy_name);
    if (!policy) return "retention policy not found: " + policy_name;
    std::vector<std::string> names = s.measurements(database);
    for (const auto& name : names) {
      if (source.regex ? !source.regex->search(name) : name != source.name) continue;
      if (!seen.emplace(database, policy->name, name).second) continue;
      target t;
      t.database = database;
      t.policy = policy->name;
      t.measurement = name;
      out.push_back(std::move(t));
    }
  }
  std::sort(out.begin(), out.end(), [](const target& a, const target& b) {
    return std::tie(a.measurement, a.database, a.policy) <
           std::tie(b.measurement, b.database, b.policy);
  });
  return {};
}

// Checks the combination of fields, functions and clauses as compile.go's validateFields.
// The calls and the other variables of an expression as written (before fn(*) expands).
void count_written(const iql::expression& e, bool in_call, std::size_t& calls,
                   std::size_t& variables, bool& has_non_selector) {
  switch (e.kind) {
    case iql::expression_kind::call: {
      ++calls;
      const auto* entry = find_function(e.text);
      if (entry == nullptr || !entry->is_selector) has_non_selector = true;
      for (const auto& child : e.children)
        count_written(*child, true, calls, variables, has_non_selector);
      return;
    }
    case iql::expression_kind::var_ref:
    case iql::expression_kind::wildcard:
    case iql::expression_kind::regex:
      if (!in_call && !(e.kind == iql::expression_kind::var_ref && e.text == "time")) ++variables;
      return;
    default:
      for (const auto& child : e.children)
        count_written(*child, in_call, calls, variables, has_non_selector);
  }
}

// 1.6.7 checks the statement as written, before wildcards expand: mixing calls and fields is
// an error even where no field exists, and `SELECT *` of nothing is an empty answer.
error_text validate_written(const iql::select_statement& stmt) {
  std::size_t calls = 0;
  std::size_t variables = 0;
  bool has_non_selector = false;
  for (const auto& f : stmt.fields)
    count_written(*f.expr, false, calls, variables, has_non_selector);
  if (calls > 0 && variables > 0) {
    if (has_non_selector) return "mixing aggregate and non-aggregate queries is not supported";
    if (calls > 1) return "mixing multiple selector functions with tags or fields is not supported";
  }
  const bool is_only_time = std::all_of(stmt.fields.begin(), stmt.fields.end(), [](const auto& f) {
    return f.expr->kind == iql::expression_kind::var_ref && f.expr->text == "time";
  });
  if (is_only_time) return "at least 1 non-time field must be queried";
  return {};
}

error_text validate_plan(const select_plan& plan, const iql::select_statement& stmt,
                         const windowing& window) {
  if (plan.call_count == 0) {
    if (stmt.fill == iql::fill_option::none) return "fill(none) must be used with a function";
    if (stmt.fill == iql::fill_option::linear) return "fill(linear) must be used with a function";
    if (window.interval != 0) return "GROUP BY requires at least one aggregate function";
  }
  if (plan.has_aux && plan.call_count > 0) {
    const bool is_only_selectors =
        std::all_of(plan.calls.begin(), plan.calls.end(),
                    [](const call_spec& c) { return c.function->is_selector; });
    if (!is_only_selectors) return "mixing aggregate and non-aggregate queries is not supported";
    if (plan.call_count > 1)
      return "mixing multiple selector functions with tags or fields is not supported";
  }
  return {};
}

error_text execute_select(const store& s, const iql::select_statement& stmt,
                          const query_options& options, statement_result& result) {
  if (stmt.target) return "statement not supported by Nimbus: SELECT INTO";
  select_context ctx{s, options, stmt, {}, {}, max_time_ns, {}, 0, 0};
  const iql::time_zone* zone = stmt.location ? &*stmt.location : nullptr;
  ctx.window.zone = zone;
  if (stmt.condition) {
    if (auto error = extract_time_range(*stmt.condition, options.now_ns, zone, ctx.range);
        !error.empty())
      return error;
  }
  dimensions dims;
  if (auto error = compile_dimensions(stmt, options.now_ns, ctx.window, dims); !error.empty())
    return error;

  std::vector<target> targets;
  if (auto error = resolve_targets(s, stmt, options, targets); !error.empty()) return error;
  std::map<std::string, field_type> all_fields;
  std::set<std::string> all_tags;
  for (auto& t : targets) {
    t.fields = s.fields(t.database, t.measurement);
    t.series = s.series(t.database, t.measurement);
    all_fields.insert(t.fields.begin(), t.fields.end());
    for (const auto& series : t.series)
      for (const auto& [key, value] : series.tags) all_tags.insert(key);
  }
  const std::vector<std::string> grouped = dims.keys_for(all_tags);
  const std::set<std::string> grouped_tags(grouped.begin(), grouped.end());

  if (auto error = validate_written(stmt); !error.empty()) return error;
  select_compiler compiler(ctx.plan, all_fields, all_tags, grouped_tags);
  if (auto error = compiler.compile(stmt); !error.empty()) return error;
  select_plan& plan = ctx.plan;
  plan.is_raw = plan.call_count == 0;
  if (plan.columns.empty()) return {};  // wildcards that matched no field: nothing to answer
  if (auto error = validate_plan(plan, stmt, ctx.window); !error.empty()) return error;
  if (stmt.condition) {
    compiled_expr condition;
    if (auto error = compile_condition(*stmt.condition, plan.scope, condition); !error.empty())
      return error;
    plan.condition = std::move(condition);
  }
  plan.is_output_slot.resize(plan.scope.slots.size(), false);
  plan.is_selector_time = ctx.window.interval == 0 && plan.calls.size() == 1 &&
                          plan.call_count == 1 && plan.calls[0].function->is_selector;
  plan.is_last_only = !plan.calls.empty() && !plan.has_aux &&
                      std::all_of(plan.calls.begin(), plan.calls.end(), [](const call_spec& c) {
                        return c.function->fn == function::last;
                      });

  ctx.read_max = ctx.window.interval > 0 && !ctx.range.has_upper() ? options.now_ns : ctx.range.max;
  if (ctx.range.min > ctx.read_max) return {};

  // The series each target reads, and the statement's series limit before any read.
  std::vector<std::vector<matched_series>> matched(targets.size());
  std::size_t series_count = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    for (const auto& series : targets[i].series) {
      const truth condition =
          plan.condition ? evaluate_tags(*plan.condition, series.tags) : truth::yes;
      if (condition == truth::no) continue;
      matched[i].push_back({&series, condition});
    }
    series_count += matched[i].size();
  }
  const std::size_t series_limit = options.limits.max_select_series;
  if (series_limit > 0 && series_count > series_limit)
    return limit_error("max-select-series", series_count, series_limit);

  std::vector<result_series> out;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const target& t = targets[i];
    std::set<std::string> tags;
    for (const auto& series : matched[i])
      for (const auto& [key, value] : series.info->tags) tags.insert(key);
    const std::vector<std::string> keys =
        dims.has_tags() ? dims.keys_for(tags) : std::vector<std::string>{};
    std::map<std::vector<std::string>, series_group> groups;
    for (const auto& series : matched[i]) {
      std::vector<std::string> values;
      values.reserve(keys.size());
      for (const auto& key : keys) {
        const std::string* value = find_tag(series.info->tags, key);
        values.push_back(value != nullptr ? *value : std::string());
      }
      series_group& group = groups[values];
      if (group.series.empty()) group.values = values;
      group.series.push_back(series);
    }
    for (const auto& [values, group] : groups) {
      result_series series;
      series.name = t.measurement;
      for (std::size_t k = 0; k < keys.size(); ++k) series.tags.emplace_back(keys[k], values[k]);
      series.columns.reserve(plan.column_names.size() + 1);
      series.columns.push_back(plan.time_column);
      series.columns.insert(series.columns.end(), plan.column_names.begin(),
                            plan.column_names.end());
      auto error = plan.is_raw ? run_raw_group(ctx, t, group, series)
                               : run_aggregate_group(ctx, t, group, series);
      if (!error.empty()) return error;
      if (!series.values.empty()) out.push_back(std::move(series));
    }
  }
  apply_offset_limit(out, stmt.series_offset, stmt.series_limit);
  // ORDER BY time DESC orders the series backwards too (after SLIMIT picked them), as 1.6.7.
  if (!stmt.is_ascending) std::reverse(out.begin(), out.end());
  // tz(): times print in the zone's local time.
  if (ctx.window.zone != nullptr)
    for (auto& series : out)
      for (auto& row : series.values)
        for (auto& value : row)
          if (auto* time = std::get_if<time_cell>(&value))
            time->offset_seconds = ctx.window.zone->offset_at(floor_div(time->ns, ns_per_second));
  for (auto& series : out) result.series.push_back(std::move(series));
  return {};
}

// ---------------------------------------------------------------------------------------------
// Statements in order; CREATE / DROP / ALTER wait for the store's durability before the next.

// Owned by the chain of store callbacks while a query waits on a metadata change: the caller
// has returned by then, and the callback may run on the store's writer thread.
struct query_run {
  query_run(store& store_ref, query_options query_options_value, iql::query parsed_query,
            std::function<void(query_result)> on_done)
      : s(store_ref),
        options(std::move(query_options_value)),
        parsed(std::move(parsed_query)),
        done(std::move(on_done)) {}

  store& s;
  query_options options;
  iql::query parsed;
  query_result result;
  std::size_t next = 0;
  std::function<void(query_result)> done;
  // A store callback can run inline (a refusal, an existing database) or later on another
  // thread: `is_dispatching` tells which, so an inline answer continues the loop instead of
  // recursing once per statement.
  std::mutex mutex;
  bool is_dispatching = false;
  bool has_inline_answer = false;
};

void run_statements(const std::shared_ptr<query_run>& run);

// Starts one metadata change; false when it is a read statement (run inline instead).
bool start_change(const std::shared_ptr<query_run>& run, const iql::statement& stmt,
                  store::on_done done) {
  store& s = run->s;
  if (const auto* create = std::get_if<iql::create_database_statement>(&stmt)) {
    std::optional<retention_policy> policy;
    if (create->has_policy) {
      retention_policy rp;
      rp.name = create->policy_name.empty() ? "autogen" : create->policy_name;
      rp.duration_ns = create->duration_ns.value_or(0);
      rp.shard_group_duration_ns = create->shard_group_duration_ns;
      rp.replication = create->replication.value_or(1);
      rp.is_default = true;
      policy = std::move(rp);
    }
    s.create_database(create->name, std::move(policy), std::move(done));
    return true;
  }
  if (const auto* drop = std::get_if<iql::drop_database_statement>(&stmt)) {
    s.drop_database(drop->name, std::move(done));
    return true;
  }
  if (const auto* create = std::get_if<iql::create_retention_policy_statement>(&stmt)) {
    retention_policy rp;
    rp.name = create->name;
    rp.duration_ns = create->duration_ns;
    rp.shard_group_duration_ns = create->shard_group_duration_ns;
    rp.replication = create->replication;
    rp.is_default = create->is_default;
    s.create_retention_policy(create->database, std::move(rp), std::move(done));
    return true;
  }
  if (const auto* alter = std::get_if<iql::alter_retention_policy_statement>(&stmt)) {
    s.alter_retention_policy(alter->database, alter->name, alter->duration_ns,
                             alter->shard_group_duration_ns, alter->replication, alter->is_default,
                             std::move(done));
    return true;
  }
  if (const auto* drop = std::get_if<iql::drop_retention_policy_statement>(&stmt)) {
    s.drop_retention_policy(drop->database, drop->name, std::move(done));
    return true;
  }
  return false;
}

error_text execute_read(const store& s, const iql::statement& stmt, const query_options& options,
                        statement_result& result) {
  return std::visit(
      [&](const auto& one) -> error_text {
        using type = std::decay_t<decltype(one)>;
        if constexpr (std::is_same_v<type, iql::select_statement>) {
          return execute_select(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::show_databases_statement>) {
          return show_databases(s, result);
        } else if constexpr (std::is_same_v<type, iql::show_measurements_statement>) {
          return show_measurements(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::show_tag_keys_statement>) {
          return show_tag_keys(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::show_tag_values_statement>) {
          return show_tag_values(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::show_field_keys_statement>) {
          return show_field_keys(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::show_retention_policies_statement>) {
          return show_retention_policies(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::show_series_statement>) {
          return show_series(s, one, options, result);
        } else if constexpr (std::is_same_v<type, iql::unsupported_statement>) {
          return "statement not supported by Nimbus: " + one.name;
        } else {
          return "statement not supported by Nimbus";  // a change: start_change's
        }
      },
      stmt);
}

void run_statements(const std::shared_ptr<query_run>& run) {
  for (;;) {
    if (run->next >= run->parsed.statements.size()) {
      auto done = std::move(run->done);
      done(std::move(run->result));
      return;
    }
    const std::size_t index = run->next++;
    statement_result& result = run->result.results.emplace_back();
    result.statement_id = static_cast<int>(index);
    const iql::statement& stmt = run->parsed.statements[index];
    {
      const std::lock_guard lock(run->mutex);
      run->is_dispatching = true;
      run->has_inline_answer = false;
    }
    const bool is_change = start_change(run, stmt, [run, index](std::optional<std::string> error) {
      {
        const std::lock_guard lock(run->mutex);
        if (error) run->result.results[index].error = std::move(*error);
        if (run->is_dispatching) {
          run->has_inline_answer = true;
          return;
        }
      }
      run_statements(run);
    });
    if (!is_change) {
      {
        const std::lock_guard lock(run->mutex);
        run->is_dispatching = false;
      }
      if (auto error = execute_read(run->s, stmt, run->options, result); !error.empty()) {
        result.series.clear();
        result.error = std::move(error);
      }
      continue;
    }
    const std::lock_guard lock(run->mutex);
    run->is_dispatching = false;
    if (!run->has_inline_answer) return;  // the store's callback carries on
  }
}

}  // namespace

void execute_query(store& s, std::string_view text, const query_options& options,
                   std::function<void(query_result)> done) {
  auto parsed = influxql::parse_query(text);
  if (auto* error = std::get_if<influxql::parse_error>(&parsed)) {
    query_result result;
    result.error = std::move(error->message);
    done(std::move(result));
    return;
  }
  auto run = std::make_shared<query_run>(s, options, std::move(std::get<influxql::query>(parsed)),
                                         std::move(done));
  run_statements(run);
}

std::optional<precision> parse_epoch(std::string_view text) {
  if (text == "ns" || text == "n") return precision::ns;
  if (text == "u" || text == "us" || text == "µ") return precision::us;
  if (text == "ms") return precision::ms;
  if (text == "s") return precision::s;
  if (text == "m") return precision::m;
  if (text == "h") return precision::h;
  return std::nullopt;
}

}  // namespace nimbus::tsdb
