#pragma once
// Substitution templates: the `${expression}` parts of an action's fields (a republish topic,
// its headers). Each expression is parsed once, when the rule is created or restored, as the
// statement `SELECT VALUE <expression> FROM '<the rule's filter>'`, and evaluated per message
// against the original message, as AWS does: functions and payload fields, no aliases.
// Immutable once parsed; shared by the threads that run the rule.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/sql/sql.hpp"

namespace nimbus::rules {

class substitution_template {
 public:
  substitution_template() = default;  // the empty text

  // nullopt, with `error` saying why, when a `${` is not closed, an expression is empty or does
  // not parse as IoT SQL in `version`.
  static std::optional<substitution_template> parse(std::string_view text, std::string_view filter,
                                                    sql::sql_version version, std::string& error);

  // Appends the text with every expression's value to `out`: a String raw, other values as
  // their JSON, Undefined as nothing. False, with `error`, when an evaluation broke a limit.
  bool expand(std::string_view payload, const sql::message_context& ctx, std::string& out,
              std::string& error) const;

  const std::string& text() const { return text_; }
  bool has_expressions() const { return has_expressions_; }

 private:
  struct segment {
    std::string literal;                       // text before the expression, or the tail
    std::optional<sql::statement> expression;  // none for the tail
  };

  std::string text_;
  std::vector<segment> segments_;
  bool has_expressions_ = false;
};

}  // namespace nimbus::rules
