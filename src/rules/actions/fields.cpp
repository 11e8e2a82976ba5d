#include "rules/actions/fields.hpp"

#include <limits>
#include <utility>

namespace nimbus::rules::actions {

namespace json = boost::json;

rule_error invalid(std::string message) {
  return rule_error{rule_error::kind::invalid_request, std::move(message)};
}

std::string validation_error(std::string_view value, std::string_view where,
                             std::string_view constraint) {
  return "1 validation error detected: Value " + std::string(value) + " at '" + std::string(where) +
         "' failed to satisfy constraint: Member must " + std::string(constraint);
}

std::string text_of(const json::string& s) {
  return std::string(s.data(), s.size());
}

std::optional<std::int64_t> int_of(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() &&
      v.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(v.get_uint64());
  return std::nullopt;
}

std::optional<rule_error> string_field(const json::object& fields, std::string_view key,
                                       const std::string& where, std::optional<std::string>& into) {
  const auto* field = fields.if_contains(json::string_view(key.data(), key.size()));
  if (field == nullptr || field->is_null()) return std::nullopt;
  if (!field->is_string()) return invalid(where + "." + std::string(key) + " must be a string");
  into = text_of(field->get_string());
  return std::nullopt;
}

std::optional<rule_error> required_string(const json::object& fields, std::string_view key,
                                          const std::string& where, std::string& into) {
  std::optional<std::string> text;
  if (auto refused = string_field(fields, key, where, text)) return refused;
  if (!text || text->empty())
    return invalid(validation_error("null", where + "." + std::string(key), "not be null"));
  into = std::move(*text);
  return std::nullopt;
}

std::optional<rule_error> template_field(const json::object& fields, std::string_view key,
                                         const template_scope& scope, const std::string& where,
                                         std::optional<substitution_template>& into) {
  std::optional<std::string> text;
  if (auto refused = string_field(fields, key, where, text)) return refused;
  if (!text) return std::nullopt;
  std::string error;
  auto parsed = substitution_template::parse(*text, scope.filter, scope.version, error);
  if (!parsed) return invalid(where + "." + std::string(key) + ": " + error);
  into = std::move(*parsed);
  return std::nullopt;
}

}  // namespace nimbus::rules::actions
