#pragma once
// Reading an action's JSON fields: the refusals in AWS's words and the templated strings, shared
// by every action's parser (and the rule's own).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "rules/rule_error.hpp"
#include "rules/sql/sql.hpp"
#include "rules/templates.hpp"

namespace nimbus::rules::actions {

// Where templates are parsed: the rule's FROM filter and SQL version.
struct template_scope {
  std::string_view filter;
  sql::sql_version version;
};

rule_error invalid(std::string message);
// AWS's wording of a constraint on a field: "1 validation error detected: Value ... at '...' ..."
std::string validation_error(std::string_view value, std::string_view where,
                             std::string_view constraint);
std::string text_of(const boost::json::string& s);
std::optional<std::int64_t> int_of(const boost::json::value& v);

// An optional string field of `fields` as text, into `into`; the refusal when it is not a string.
std::optional<rule_error> string_field(const boost::json::object& fields, std::string_view key,
                                       const std::string& where, std::optional<std::string>& into);
// A required, non-empty string field.
std::optional<rule_error> required_string(const boost::json::object& fields, std::string_view key,
                                          const std::string& where, std::string& into);
// An optional string field of `fields` parsed as a substitution template, into `into`.
std::optional<rule_error> template_field(const boost::json::object& fields, std::string_view key,
                                         const template_scope& scope, const std::string& where,
                                         std::optional<substitution_template>& into);

}  // namespace nimbus::rules::actions
