#include "rules/sql/parser.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/string_view.hpp>
#include <boost/json/value.hpp>

#include "rules/sql/context.hpp"
#include "rules/sql/functions.hpp"
#include "rules/sql/lexer.hpp"
#include "rules/sql/value.hpp"

namespace nimbus::rules::sql {
namespace {

namespace json = boost::json;

// Recursive descent recurses per parenthesis, unary operator, CASE and nested SELECT; long
// operator chains recurse not at all but make deep trees, which evaluation then recurses through.
// Both are bounded so that no statement, however written, exhausts the stack.
constexpr int max_nesting = 64;
constexpr int max_expression_depth = 128;

bool is_keyword(const token& t, std::string_view word) {
  return t.kind == token_kind::identifier && equals_ignore_case(t.text, word);
}

// Words that cannot start an expression, so they are never read as a payload key there.
bool is_reserved(std::string_view word) {
  static constexpr std::string_view reserved[] = {"select", "from", "where", "as",   "and", "or",
                                                  "not",    "when", "then",  "else", "end"};
  return std::any_of(std::begin(reserved), std::end(reserved),
                     [word](std::string_view r) { return equals_ignore_case(word, r); });
}

std::string describe(const token& t) {
  if (t.kind == token_kind::end) return "end of SQL";
  return "'" + std::string(t.text) + "'";
}

std::optional<binary_op> comparison_op(token_kind kind) {
  switch (kind) {
    case token_kind::equal:
      return binary_op::equal;
    case token_kind::not_equal:
      return binary_op::not_equal;
    case token_kind::less:
      return binary_op::less;
    case token_kind::less_equal:
      return binary_op::less_equal;
    case token_kind::greater:
      return binary_op::greater;
    case token_kind::greater_equal:
      return binary_op::greater_equal;
    default:
      return std::nullopt;
  }
}

std::optional<binary_op> additive_op(token_kind kind) {
  if (kind == token_kind::plus) return binary_op::add;
  if (kind == token_kind::minus) return binary_op::subtract;
  return std::nullopt;
}

std::optional<binary_op> multiplicative_op(token_kind kind) {
  if (kind == token_kind::star) return binary_op::multiply;
  if (kind == token_kind::slash) return binary_op::divide;
  if (kind == token_kind::percent) return binary_op::remainder;
  return std::nullopt;
}

// One statement's parse. Every parse_* returns a node (or query) index, or no_index once an
// error is recorded; the first error wins and everything after it unwinds.
class statement_parser {
 public:
  statement_parser(std::string_view sql, sql_version version) : lexer_(sql), version_(version) {
    current_ = lexer_.next();
    lookahead_ = lexer_.next();
    check_token();
  }

  std::variant<statement, parse_error> run() {
    std::string topic_filter;
    program_.root = parse_select(false, topic_filter);
    if (!failed_ && current_.kind != token_kind::end)
      fail(current_.position, "unexpected " + describe(current_) + " after the statement");
    if (failed_) return error_;
    return statement(std::move(topic_filter), version_, std::move(program_));
  }

 private:
  bool is_v2() const { return version_ == sql_version::v2016_03_23; }

  void advance() {
    current_ = std::move(lookahead_);
    lookahead_ = lexer_.next();
    check_token();
  }

  // A lexing error is reported once its token is the one being read.
  void check_token() {
    if (current_.kind == token_kind::invalid) fail(current_.position, current_.string_value);
  }

  std::uint32_t fail(std::size_t position, std::string message) {
    if (!failed_) {
      failed_ = true;
      error_.position = position;
      error_.message = std::move(message);
    }
    return no_index;
  }

  std::uint32_t fail_expected(std::string_view what) {
    return fail(current_.position,
                "expected " + std::string(what) + ", found " + describe(current_));
  }

  std::uint32_t fail_needs_v2(std::size_t position, std::string_view what) {
    return fail(position, std::string(what) + " need SQL version 2016-03-23");
  }

  bool accept(token_kind kind) {
    if (failed_ || current_.kind != kind) return false;
    advance();
    return true;
  }

  bool expect(token_kind kind, std::string_view what) {
    if (accept(kind)) return true;
    fail_expected(what);
    return false;
  }

  bool accept_keyword(std::string_view word) {
    if (failed_ || !is_keyword(current_, word)) return false;
    advance();
    return true;
  }

  bool expect_keyword(std::string_view word, std::string_view what) {
    if (accept_keyword(word)) return true;
    fail_expected(what);
    return false;
  }

  // ---- nodes -----------------------------------------------------------------------------------

  std::uint32_t add(expr e, std::size_t position, int extra_depth = 0) {
    if (failed_) return no_index;
    int deepest = extra_depth;
    const auto consider = [this, &deepest](std::uint32_t child) {
      if (child != no_index)
        deepest = std::max(deepest, static_cast<int>(program_.exprs[child].depth));
    };
    consider(e.left);
    consider(e.right);
    for (std::uint32_t i = 0; i < e.list_size; ++i) consider(program_.lists[e.list_begin + i]);
    if (deepest + 1 > max_expression_depth) return fail(position, "expression nested too deeply");
    e.depth = static_cast<std::uint16_t>(deepest + 1);
    program_.exprs.push_back(e);
    return static_cast<std::uint32_t>(program_.exprs.size() - 1);
  }

  std::uint32_t add_operator(expr_kind kind, binary_op op, std::uint32_t left, std::uint32_t right,
                             std::size_t position) {
    expr e;
    e.kind = kind;
    e.op = op;
    e.left = left;
    e.right = right;
    return add(e, position);
  }

  std::uint32_t add_constant(json::value constant, std::size_t position) {
    program_.constants.push_back(std::move(constant));
    expr e;
    e.kind = expr_kind::constant;
    e.index = static_cast<std::uint32_t>(program_.constants.size() - 1);
    return add(e, position);
  }

  std::uint32_t add_name(std::string_view name) {
    program_.names.emplace_back(name);
    return static_cast<std::uint32_t>(program_.names.size() - 1);
  }

  void set_list(expr& e, const std::vector<std::uint32_t>& items) {
    e.list_begin = static_cast<std::uint32_t>(program_.lists.size());
    e.list_size = static_cast<std::uint32_t>(items.size());
    program_.lists.insert(program_.lists.end(), items.begin(), items.end());
  }

  int query_depth(std::uint32_t q) const {
    const query& parsed = program_.queries[q];
    int deepest = 0;
    const auto consider = [this, &deepest](std::uint32_t e) {
      if (e != no_index) deepest = std::max(deepest, static_cast<int>(program_.exprs[e].depth));
    };
    consider(parsed.from);
    consider(parsed.where);
    for (const select_item& item : parsed.items) consider(item.expression);
    return deepest;
  }

  // ---- statements --------------------------------------------------------------------------

  // SELECT [VALUE] items FROM ('topic/filter' | expression when nested) [WHERE expression]
  std::uint32_t parse_select(bool nested, std::string& topic_filter) {
    if (!expect_keyword("select", "SELECT")) return no_index;
    query q;
    if (is_keyword(current_, "value") && value_is_keyword()) {
      advance();
      q.is_value = true;
    }
    std::size_t number = 0;
    do {
      ++number;
      if (!parse_select_item(q, number)) return no_index;
    } while (accept(token_kind::comma));
    if (q.is_value && q.items.size() != 1)
      return fail(current_.position, "SELECT VALUE takes exactly one expression");
    if (!expect_keyword("from", "FROM")) return no_index;
    if (nested) {
      q.from = parse_expression();
      if (q.from == no_index) return no_index;
    } else {
      if (current_.kind != token_kind::string)
        return fail_expected("a quoted topic filter after FROM");
      if (!is_valid_topic_filter(current_.string_value))
        return fail(current_.position, "invalid topic filter " + describe(current_));
      topic_filter = current_.string_value;
      advance();
    }
    if (accept_keyword("where")) {
      q.where = parse_expression();
      if (q.where == no_index) return no_index;
    }
    if (failed_) return no_index;
    program_.queries.push_back(std::move(q));
    return static_cast<std::uint32_t>(program_.queries.size() - 1);
  }

  // `SELECT value FROM ...` selects a key named value; `SELECT VALUE x FROM ...` is the keyword.
  bool value_is_keyword() const {
    switch (lookahead_.kind) {
      case token_kind::identifier:
        return !is_keyword(lookahead_, "from") && !is_keyword(lookahead_, "as") &&
               !is_keyword(lookahead_, "and") && !is_keyword(lookahead_, "or");
      case token_kind::integer:
      case token_kind::decimal:
      case token_kind::string:
      case token_kind::left_paren:
      case token_kind::left_bracket:
      case token_kind::left_brace:
      case token_kind::star:
        return true;
      default:
        return false;
    }
  }

  bool parse_select_item(query& q, std::size_t number) {
    select_item item;
    const bool is_bare_star =
        current_.kind == token_kind::star &&
        (lookahead_.kind == token_kind::comma || lookahead_.kind == token_kind::end ||
         is_keyword(lookahead_, "from"));
    if (is_bare_star) {
      advance();
      q.items.push_back(std::move(item));
      return true;
    }
    const std::size_t start = current_.position;
    item.expression = parse_expression();
    if (item.expression == no_index) return false;
    if (accept_keyword("as")) {
      if (q.is_value) {
        fail(start, "SELECT VALUE takes no alias");
        return false;
      }
      do {
        if (current_.kind != token_kind::identifier) {
          fail_expected("a name after AS");
          return false;
        }
        item.key_path.emplace_back(current_.text);
        advance();
      } while (accept(token_kind::dot));
    } else {
      item.key_path.push_back(default_key(item.expression, number));
    }
    q.items.push_back(std::move(item));
    return !failed_;
  }

  // Without AS, a key or member keeps its name and a call the function's; anything else is
  // named by its position in the list, "_1", "_2", ...
  std::string default_key(std::uint32_t expression, std::size_t number) const {
    const expr& e = program_.exprs[expression];
    if (e.kind == expr_kind::field || e.kind == expr_kind::member) return program_.names[e.index];
    if (e.kind == expr_kind::call) return std::string(e.function->name);
    return "_" + std::to_string(number);
  }

  // ---- expressions, loosest first ----------------------------------------------------------

  std::uint32_t parse_expression() {
    if (failed_) return no_index;
    if (++nesting_ > max_nesting) return fail(current_.position, "expression nested too deeply");
    const std::uint32_t e = parse_or();
    --nesting_;
    return e;
  }

  std::uint32_t parse_or() {
    std::uint32_t left = parse_and();
    while (left != no_index && is_keyword(current_, "or")) {
      const std::size_t position = current_.position;
      advance();
      const std::uint32_t right = parse_and();
      if (right == no_index) return no_index;
      left = add_operator(expr_kind::logical_or, binary_op::add, left, right, position);
    }
    return left;
  }

  std::uint32_t parse_and() {
    std::uint32_t left = parse_not();
    while (left != no_index && is_keyword(current_, "and")) {
      const std::size_t position = current_.position;
      advance();
      const std::uint32_t right = parse_not();
      if (right == no_index) return no_index;
      left = add_operator(expr_kind::logical_and, binary_op::add, left, right, position);
    }
    return left;
  }

  std::uint32_t parse_not() {
    if (!is_keyword(current_, "not")) return parse_comparison();
    const std::size_t position = current_.position;
    advance();
    if (++nesting_ > max_nesting) return fail(position, "expression nested too deeply");
    const std::uint32_t operand = parse_not();
    --nesting_;
    if (operand == no_index) return no_index;
    expr e;
    e.kind = expr_kind::logical_not;
    e.left = operand;
    return add(e, position);
  }

  std::uint32_t parse_comparison() {
    std::uint32_t left = parse_additive();
    while (left != no_index) {
      const auto op = comparison_op(current_.kind);
      if (!op) break;
      const std::size_t position = current_.position;
      advance();
      const std::uint32_t right = parse_additive();
      if (right == no_index) return no_index;
      left = add_operator(expr_kind::binary, *op, left, right, position);
    }
    return left;
  }

  std::uint32_t parse_additive() {
    std::uint32_t left = parse_multiplicative();
    while (left != no_index) {
      const auto op = additive_op(current_.kind);
      if (!op) break;
      const std::size_t position = current_.position;
      advance();
      const std::uint32_t right = parse_multiplicative();
      if (right == no_index) return no_index;
      left = add_operator(expr_kind::binary, *op, left, right, position);
    }
    return left;
  }

  std::uint32_t parse_multiplicative() {
    std::uint32_t left = parse_unary();
    while (left != no_index) {
      const auto op = multiplicative_op(current_.kind);
      if (!op) break;
      const std::size_t position = current_.position;
      advance();
      const std::uint32_t right = parse_unary();
      if (right == no_index) return no_index;
      left = add_operator(expr_kind::binary, *op, left, right, position);
    }
    return left;
  }

  std::uint32_t parse_unary() {
    if (current_.kind != token_kind::minus && current_.kind != token_kind::plus)
      return parse_postfix();
    const bool is_negative = current_.kind == token_kind::minus;
    const std::size_t position = current_.position;
    advance();
    if (++nesting_ > max_nesting) return fail(position, "expression nested too deeply");
    const std::uint32_t operand = parse_unary();
    --nesting_;
    if (operand == no_index || !is_negative) return operand;
    // -5 is a literal, not an operation on every evaluation.
    const expr& o = program_.exprs[operand];
    if (o.kind == expr_kind::constant) {
      json::value& c = program_.constants[o.index];
      if (c.is_int64() && c.get_int64() != std::numeric_limits<std::int64_t>::min()) {
        c = json::value(-c.get_int64());
        return operand;
      }
      if (c.is_double()) {
        c = json::value(-c.get_double());
        return operand;
      }
    }
    expr e;
    e.kind = expr_kind::negate;
    e.left = operand;
    return add(e, position);
  }

  // primary ('.' name)*: a.b.c reaches into nested objects, and so does get(x, 0).v
  std::uint32_t parse_postfix() {
    std::uint32_t base = parse_primary();
    while (base != no_index && current_.kind == token_kind::dot) {
      const std::size_t position = current_.position;
      advance();
      if (current_.kind != token_kind::identifier) return fail_expected("a key name after '.'");
      expr e;
      e.kind = expr_kind::member;
      e.left = base;
      e.index = add_name(current_.text);
      e.is_path = program_.exprs[base].is_path;
      advance();
      base = add(e, position);
    }
    return base;
  }

  std::uint32_t parse_primary() {
    if (failed_) return no_index;
    const std::size_t position = current_.position;
    switch (current_.kind) {
      case token_kind::integer: {
        const std::int64_t i = current_.int_value;
        advance();
        return add_constant(json::value(i), position);
      }
      case token_kind::decimal: {
        const double d = current_.decimal_value;
        advance();
        if (is_v2() && is_whole_int(d))
          return add_constant(json::value(static_cast<std::int64_t>(d)), position);
        return add_constant(json::value(d), position);
      }
      case token_kind::string: {
        json::value s(
            json::string_view(current_.string_value.data(), current_.string_value.size()));
        advance();
        return add_constant(std::move(s), position);
      }
      case token_kind::star: {
        advance();
        expr e;
        e.kind = expr_kind::star;
        return add(e, position);
      }
      case token_kind::left_paren: {
        if (is_keyword(lookahead_, "select")) return parse_subquery();
        advance();
        const std::uint32_t inner = parse_expression();
        if (inner == no_index || !expect(token_kind::right_paren, "')'")) return no_index;
        return inner;
      }
      case token_kind::left_bracket:
        return parse_array();
      case token_kind::left_brace:
        return parse_object();
      case token_kind::identifier:
        return parse_identifier();
      default:
        return fail(position, "unexpected " + describe(current_));
    }
  }

  std::uint32_t parse_identifier() {
    const std::size_t position = current_.position;
    const std::string_view word = current_.text;  // a view of the SQL text: outlives the token
    if (equals_ignore_case(word, "true") || equals_ignore_case(word, "false")) {
      const bool b = equals_ignore_case(word, "true");
      advance();
      return add_constant(json::value(b), position);
    }
    if (equals_ignore_case(word, "null")) {
      advance();
      return add_constant(json::value(nullptr), position);
    }
    if (equals_ignore_case(word, "case")) return parse_case();
    if (lookahead_.kind == token_kind::left_paren) return parse_call();
    if (is_reserved(word)) return fail(position, "unexpected keyword " + describe(current_));
    expr e;
    e.kind = expr_kind::field;
    e.index = add_name(word);
    e.is_path = true;
    advance();
    return add(e, position);
  }

  std::uint32_t parse_call() {
    const std::size_t position = current_.position;
    const std::string name(current_.text);
    advance();  // the name
    advance();  // '('
    if (equals_ignore_case(name, "cast")) return parse_cast(position);
    const function_info* function = find_function(name);
    if (function == nullptr) return fail(position, "unknown function '" + name + "'");
    if (function->body == nullptr)
      return fail(position, "function '" + name + "' calls another AWS service: not supported");
    if (version_ < function->since)
      return fail(position, "function '" + name + "' needs SQL version 2016-03-23");
    std::vector<std::uint32_t> arguments;
    std::size_t pattern_position = position;  // where the second argument starts
    if (current_.kind != token_kind::right_paren) {
      do {
        if (arguments.size() == 1) pattern_position = current_.position;
        const std::uint32_t argument = parse_expression();
        if (argument == no_index) return no_index;
        arguments.push_back(argument);
      } while (accept(token_kind::comma));
    }
    if (!expect(token_kind::right_paren, "')' or ','")) return no_index;
    expr e;
    e.kind = expr_kind::call;
    e.function = function;
    set_list(e, arguments);
    if (function->second_is_pattern && arguments.size() >= 2) {
      const expr& pattern = program_.exprs[arguments[1]];
      if (pattern.kind == expr_kind::constant && program_.constants[pattern.index].is_string()) {
        const std::string_view text = view_of(program_.constants[pattern.index].get_string());
        // Compiled here, once for all messages, so refused here, with a reason, rather than
        // Undefined on every message: libstdc++'s compiler recurses per group and per term.
        if (text.size() > limits{}.max_regex_length)
          return fail(pattern_position, "regular expression longer than " +
                                            std::to_string(limits{}.max_regex_length) + " bytes");
        if (group_depth(text) > max_group_depth)
          return fail(pattern_position, "regular expression nests groups deeper than " +
                                            std::to_string(max_group_depth));
        program_.patterns.push_back(compiled_pattern{compile_pattern(text), text.size()});
        e.pattern = static_cast<std::uint32_t>(program_.patterns.size() - 1);
      }
    }
    return add(e, position);
  }

  // cast(expression AS type): AWS's type keywords; Decimal and Boolean came with 2016-03-23.
  std::uint32_t parse_cast(std::size_t position) {
    const std::uint32_t operand = parse_expression();
    if (operand == no_index || !expect_keyword("as", "AS")) return no_index;
    if (current_.kind != token_kind::identifier) return fail_expected("a type after AS");
    const std::string_view type = current_.text;
    const auto is = [type](std::string_view name) { return equals_ignore_case(type, name); };
    expr e;
    e.kind = expr_kind::cast;
    e.left = operand;
    if (is("string") || is("nvarchar") || is("text") || is("ntext") || is("varchar")) {
      e.cast_to = cast_type::to_string;
    } else if (is("int") || is("integer")) {
      e.cast_to = cast_type::to_int;
    } else if (is("double")) {
      e.cast_to = cast_type::to_double;
    } else if (is("decimal") || is("bool") || is("boolean")) {
      if (!is_v2()) return fail_needs_v2(current_.position, "cast to Decimal and Boolean");
      e.cast_to = is("decimal") ? cast_type::to_decimal : cast_type::to_boolean;
    } else {
      return fail(current_.position, "unknown type " + describe(current_) + " in cast");
    }
    advance();
    if (!expect(token_kind::right_paren, "')'")) return no_index;
    return add(e, position);
  }

  // CASE [subject] WHEN x THEN y ... [ELSE z] END; without a subject each WHEN is a condition.
  std::uint32_t parse_case() {
    const std::size_t position = current_.position;
    advance();  // CASE
    if (++nesting_ > max_nesting) return fail(position, "expression nested too deeply");
    expr e;
    e.kind = expr_kind::case_searched;
    if (!is_keyword(current_, "when")) {
      e.kind = expr_kind::case_simple;
      e.left = parse_expression();
      if (e.left == no_index) return no_index;
    }
    std::vector<std::uint32_t> arms;
    while (accept_keyword("when")) {
      const std::uint32_t when = parse_expression();
      if (when == no_index || !expect_keyword("then", "THEN")) return no_index;
      const std::uint32_t then = parse_expression();
      if (then == no_index) return no_index;
      arms.push_back(when);
      arms.push_back(then);
    }
    if (failed_) return no_index;
    if (arms.empty()) return fail_expected("WHEN");
    if (accept_keyword("else")) {
      e.right = parse_expression();
      if (e.right == no_index) return no_index;
    }
    if (!expect_keyword("end", "END")) return no_index;
    --nesting_;
    set_list(e, arms);
    return add(e, position);
  }

  std::uint32_t parse_array() {
    const std::size_t position = current_.position;
    if (!is_v2()) return fail_needs_v2(position, "array literals");
    advance();  // '['
    std::vector<std::uint32_t> elements;
    if (current_.kind != token_kind::right_bracket) {
      do {
        const std::uint32_t element = parse_expression();
        if (element == no_index) return no_index;
        elements.push_back(element);
      } while (accept(token_kind::comma));
    }
    if (!expect(token_kind::right_bracket, "']' or ','")) return no_index;
    expr e;
    e.kind = expr_kind::array_literal;
    set_list(e, elements);
    return add(e, position);
  }

  // {'key': expression, ...}: keys quoted (AWS's examples) or bare names.
  std::uint32_t parse_object() {
    const std::size_t position = current_.position;
    if (!is_v2()) return fail_needs_v2(position, "object literals");
    advance();  // '{'
    std::vector<std::string> keys;
    std::vector<std::uint32_t> values;
    if (current_.kind != token_kind::right_brace) {
      do {
        if (current_.kind == token_kind::string)
          keys.push_back(current_.string_value);
        else if (current_.kind == token_kind::identifier)
          keys.emplace_back(current_.text);
        else
          return fail_expected("a key");
        advance();
        if (!expect(token_kind::colon, "':'")) return no_index;
        const std::uint32_t v = parse_expression();
        if (v == no_index) return no_index;
        values.push_back(v);
      } while (accept(token_kind::comma));
    }
    if (!expect(token_kind::right_brace, "'}' or ','")) return no_index;
    expr e;
    e.kind = expr_kind::object_literal;
    e.index = static_cast<std::uint32_t>(program_.names.size());
    for (std::string& key : keys) program_.names.push_back(std::move(key));
    set_list(e, values);
    return add(e, position);
  }

  std::uint32_t parse_subquery() {
    const std::size_t position = current_.position;
    if (!is_v2()) return fail_needs_v2(position, "nested SELECTs");
    advance();  // '('
    if (++nesting_ > max_nesting) return fail(position, "expression nested too deeply");
    std::string unused_topic;
    const std::uint32_t q = parse_select(true, unused_topic);
    --nesting_;
    if (q == no_index || !expect(token_kind::right_paren, "')'")) return no_index;
    expr e;
    e.kind = expr_kind::subquery;
    e.index = q;
    return add(e, position, query_depth(q));
  }

  lexer lexer_;
  sql_version version_;
  token current_;
  token lookahead_;
  bool failed_ = false;
  parse_error error_;
  program program_;
  int nesting_ = 0;
};

}  // namespace

std::variant<statement, parse_error> parse(std::string_view sql, sql_version version) {
  return statement_parser(sql, version).run();
}

bool is_valid_topic_filter(std::string_view filter) {
  if (filter.empty() || filter.size() > 65535) return false;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = filter.find('/', start);
    const std::string_view level = filter.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (level.find('\0') != std::string_view::npos) return false;
    if (level.find('#') != std::string_view::npos &&
        (level != "#" || slash != std::string_view::npos))
      return false;
    if (level.find('+') != std::string_view::npos && level != "+") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace nimbus::rules::sql
