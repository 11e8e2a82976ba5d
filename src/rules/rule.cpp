#include "rules/rule.hpp"

#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include <limits>

#include "mqtt/topic.hpp"

namespace nimbus::rules {

namespace json = boost::json;

namespace {

constexpr std::size_t max_actions = 10;
constexpr std::size_t max_description = 2048;
constexpr std::size_t max_rule_name = 128;

using actions::invalid;
using actions::text_of;
using actions::validation_error;

json::string_view json_text(const std::string& s) {
  return json::string_view(s.data(), s.size());
}

// One action object: exactly one key, the action type, whose value is an object.
std::variant<compiled_action, rule_error> compile_action(const json::value& action,
                                                         const actions::template_scope& scope,
                                                         const std::string& where) {
  const auto* object = action.if_object();
  if (object == nullptr || object->size() != 1 || !object->begin()->value().is_object())
    return invalid(where +
                   " must be an object with exactly one key, the action type, whose value is an "
                   "object");
  compiled_action out;
  const auto key = object->begin()->key();
  out.type = std::string(key.data(), key.size());
  auto parsed =
      actions::parse_action(out.type, object->begin()->value().get_object(), scope, where);
  if (auto* refused = std::get_if<rule_error>(&parsed)) return std::move(*refused);
  out.run = std::move(std::get<std::unique_ptr<const actions::action>>(parsed));
  return out;
}

}  // namespace

bool is_valid_rule_name(std::string_view name) {
  if (name.empty() || name.size() > max_rule_name) return false;
  for (char c : name) {
    const bool allowed =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!allowed) return false;
  }
  return true;
}

std::optional<sql::sql_version> sql_version_of(std::string_view text) {
  if (text == "beta") return sql::sql_version::v2016_03_23;
  return sql::parse_version(text);
}

std::variant<topic_rule, rule_error> rule_from_payload(std::string name,
                                                       const json::object& payload) {
  if (name.empty() || name.size() > max_rule_name)
    return invalid(validation_error("'" + name + "'", "ruleName", "have length between 1 and 128"));
  if (!is_valid_rule_name(name))
    return invalid(validation_error("'" + name + "'", "ruleName",
                                    "satisfy regular expression pattern: ^[a-zA-Z0-9_]+$"));
  topic_rule r;
  r.name = std::move(name);

  const auto* sql_field = payload.if_contains("sql");
  if (sql_field == nullptr || sql_field->is_null())
    return invalid(validation_error("null", "topicRulePayload.sql", "not be null"));
  if (!sql_field->is_string()) return invalid("topicRulePayload.sql must be a string");
  r.sql = text_of(sql_field->get_string());

  if (const auto* description = payload.if_contains("description");
      description != nullptr && !description->is_null()) {
    if (!description->is_string()) return invalid("topicRulePayload.description must be a string");
    if (description->get_string().size() > max_description)
      return invalid(validation_error(
          "'" + text_of(description->get_string()).substr(0, 64) + "...'",
          "topicRulePayload.description", "have length less than or equal to 2048"));
    r.description = text_of(description->get_string());
  }

  if (const auto* disabled = payload.if_contains("ruleDisabled");
      disabled != nullptr && !disabled->is_null()) {
    if (!disabled->is_bool()) return invalid("topicRulePayload.ruleDisabled must be a boolean");
    r.disabled = disabled->get_bool();
  }

  if (const auto* version = payload.if_contains("awsIotSqlVersion");
      version != nullptr && !version->is_null()) {
    if (!version->is_string() || !sql_version_of(std::string_view(version->get_string().data(),
                                                                  version->get_string().size())))
      return invalid("Invalid awsIotSqlVersion: expected 2015-10-08, 2016-03-23 or beta");
    r.sql_version = text_of(version->get_string());
  }

  const auto* actions = payload.if_contains("actions");
  if (actions == nullptr || actions->is_null())
    return invalid(validation_error("null", "topicRulePayload.actions", "not be null"));
  if (!actions->is_array()) return invalid("topicRulePayload.actions must be an array");
  if (actions->get_array().size() > max_actions)
    return invalid(validation_error("of length " + std::to_string(actions->get_array().size()),
                                    "topicRulePayload.actions",
                                    "have length less than or equal to 10"));
  r.actions = actions->get_array();

  if (const auto* error_action = payload.if_contains("errorAction");
      error_action != nullptr && !error_action->is_null()) {
    if (!error_action->is_object())
      return invalid("topicRulePayload.errorAction must be an object with exactly one key");
    r.error_action = error_action->get_object();
  }

  // The SQL, the action shapes and their templates.
  auto compiled = compile(r);
  if (auto* refused = std::get_if<rule_error>(&compiled)) return std::move(*refused);
  return r;
}

json::object rule_to_json(const topic_rule& r) {
  json::object out;
  out.emplace("ruleName", json_text(r.name));
  out.emplace("sql", json_text(r.sql));
  out.emplace("description", json_text(r.description));
  out.emplace("createdAt", r.created_at);
  out.emplace("actions", r.actions);
  out.emplace("ruleDisabled", r.disabled);
  out.emplace("awsIotSqlVersion", json_text(r.sql_version));
  if (r.error_action) out.emplace("errorAction", *r.error_action);
  return out;
}

std::string topic_pattern(const topic_rule& r) {
  auto parsed =
      sql::parse(r.sql, sql_version_of(r.sql_version).value_or(sql::sql_version::v2016_03_23));
  if (const auto* statement = std::get_if<sql::statement>(&parsed))
    return statement->topic_filter();
  return {};
}

std::variant<compiled_rule, rule_error> compile(const topic_rule& r) {
  const auto version = sql_version_of(r.sql_version);
  if (!version) return invalid("Invalid awsIotSqlVersion: expected 2015-10-08, 2016-03-23 or beta");
  auto parsed = sql::parse(r.sql, *version);
  if (const auto* failed = std::get_if<sql::parse_error>(&parsed))
    return rule_error{rule_error::kind::sql_parse,
                      failed->message + " at position " + std::to_string(failed->position)};
  compiled_rule out{std::move(std::get<sql::statement>(parsed)), {}, std::nullopt};
  const std::string filter = out.statement.topic_filter();
  const actions::template_scope scope{filter, *version};
  out.actions.reserve(r.actions.size());
  for (std::size_t i = 0; i < r.actions.size(); ++i) {
    auto action =
        compile_action(r.actions[i], scope, "topicRulePayload.actions[" + std::to_string(i) + "]");
    if (auto* refused = std::get_if<rule_error>(&action)) return std::move(*refused);
    out.actions.push_back(std::move(std::get<compiled_action>(action)));
  }
  if (r.error_action) {
    auto action =
        compile_action(json::value(*r.error_action), scope, "topicRulePayload.errorAction");
    if (auto* refused = std::get_if<rule_error>(&action)) return std::move(*refused);
    out.error_action = std::move(std::get<compiled_action>(action));
  }
  return out;
}

}  // namespace nimbus::rules
