#include "rules/templates.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <utility>
#include <variant>

namespace nimbus::rules {

namespace json = boost::json;

namespace {

// Where the expression opened at `begin` (just past `${`) ends: the index of its closing `}`,
// braces of object literals and quoted strings ('...', "...", with '' and \ escapes) skipped.
// npos when it is not closed.
std::size_t expression_end(std::string_view text, std::size_t begin) {
  int depth = 1;
  std::size_t i = begin;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\'' || c == '"') {
      ++i;
      while (i < text.size()) {
        if (text[i] == '\\' && i + 1 < text.size()) {
          i += 2;
          continue;
        }
        if (text[i] == c) {
          if (i + 1 < text.size() && text[i + 1] == c) {
            i += 2;
            continue;
          }
          break;
        }
        ++i;
      }
      if (i >= text.size()) return std::string_view::npos;
      ++i;  // past the closing quote
      continue;
    }
    if (c == '{') {
      ++depth;
    } else if (c == '}') {
      if (--depth == 0) return i;
    }
    ++i;
  }
  return std::string_view::npos;
}

// `filter` as an IoT SQL string literal's content: quotes doubled, backslashes escaped.
std::string quoted_filter(std::string_view filter) {
  std::string out;
  out.reserve(filter.size() + 2);
  out += '\'';
  for (char c : filter) {
    if (c == '\'')
      out += "''";
    else if (c == '\\')
      out += "\\\\";
    else
      out += c;
  }
  out += '\'';
  return out;
}

}  // namespace

std::optional<substitution_template> substitution_template::parse(std::string_view text,
                                                                  std::string_view filter,
                                                                  sql::sql_version version,
                                                                  std::string& error) {
  substitution_template t;
  t.text_ = std::string(text);
  const std::string from = " FROM " + quoted_filter(filter);
  std::string literal;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '$' || i + 1 >= text.size() || text[i + 1] != '{') {
      literal += text[i];
      ++i;
      continue;
    }
    const std::size_t begin = i + 2;
    const std::size_t end = expression_end(text, begin);
    if (end == std::string_view::npos) {
      error = "Invalid substitution template '" + std::string(text) + "': '${' is not closed";
      return std::nullopt;
    }
    const std::string_view expression = text.substr(begin, end - begin);
    if (expression.find_first_not_of(" \t\r\n") == std::string_view::npos) {
      error = "Invalid substitution template '" + std::string(text) + "': empty expression";
      return std::nullopt;
    }
    const std::string query_text = "SELECT VALUE " + std::string(expression) + from;
    auto parsed = sql::parse(query_text, version);
    if (const auto* failed = std::get_if<sql::parse_error>(&parsed)) {
      error =
          "Invalid substitution template '${" + std::string(expression) + "}': " + failed->message;
      return std::nullopt;
    }
    auto& statement = std::get<sql::statement>(parsed);
    // `${a FROM 'x' WHERE false}` would parse as a whole statement: one expression only.
    const auto& code = statement.code();
    const bool is_single_value =
        code.root < code.queries.size() && code.queries[code.root].is_value &&
        code.queries[code.root].items.size() == 1 &&
        code.queries[code.root].where == sql::no_index && statement.topic_filter() == filter;
    if (!is_single_value) {
      error = "Invalid substitution template '${" + std::string(expression) +
              "}': not a single expression";
      return std::nullopt;
    }
    t.segments_.push_back(segment{std::move(literal), std::move(statement)});
    literal.clear();
    t.has_expressions_ = true;
    i = end + 1;
  }
  if (!literal.empty() || t.segments_.empty())
    t.segments_.push_back(segment{std::move(literal), std::nullopt});
  return t;
}

bool substitution_template::expand(std::string_view payload, const sql::message_context& ctx,
                                   std::string& out, std::string& error) const {
  for (const auto& s : segments_) {
    out += s.literal;
    if (!s.expression) continue;
    const auto result = sql::evaluate(*s.expression, payload, ctx);
    if (const auto* failed = std::get_if<sql::eval_error>(&result)) {
      error = failed->message;
      return false;
    }
    const auto& value = std::get<std::optional<std::string>>(result);
    if (!value || value->empty()) continue;  // Undefined
    if (value->front() == '"') {
      // A String: its characters, not its JSON.
      json::error_code ec;
      const json::value parsed = json::parse(json::string_view(value->data(), value->size()), ec);
      if (!ec && parsed.is_string()) {
        const auto& s_text = parsed.get_string();
        out.append(s_text.data(), s_text.size());
        continue;
      }
    }
    out += *value;
  }
  return true;
}

}  // namespace nimbus::rules
