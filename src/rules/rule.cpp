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

rule_error invalid(std::string message) {
  return rule_error{rule_error::kind::invalid_request, std::move(message)};
}

json::string_view json_text(const std::string& s) {
  return json::string_view(s.data(), s.size());
}

std::string text_of(const json::string& s) {
  return std::string(s.data(), s.size());
}

std::string validation_error(std::string_view value, std::string_view where,
                             std::string_view constraint) {
  return "1 validation error detected: Value " + std::string(value) + " at '" + std::string(where) +
         "' failed to satisfy constraint: Member must " + std::string(constraint);
}

std::optional<std::int64_t> int_of(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() &&
      v.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(v.get_uint64());
  return std::nullopt;
}

// An optional string field of `fields` as a template, into `into`; the refusal otherwise.
std::optional<rule_error> template_field(const json::object& fields, std::string_view key,
                                         std::string_view filter, sql::sql_version version,
                                         const std::string& where,
                                         std::optional<substitution_template>& into) {
  const auto* field = fields.if_contains(json::string_view(key.data(), key.size()));
  if (field == nullptr || field->is_null()) return std::nullopt;
  if (!field->is_string()) return invalid(where + "." + std::string(key) + " must be a string");
  std::string error;
  const auto& text = field->get_string();
  auto parsed = substitution_template::parse(std::string_view(text.data(), text.size()), filter,
                                             version, error);
  if (!parsed) return invalid(where + "." + std::string(key) + ": " + error);
  into = std::move(*parsed);
  return std::nullopt;
}

// republish {topic, qos?, headers?}; roleArn and anything else are kept in the rule, unused.
std::variant<republish_action, rule_error> parse_republish(const json::object& fields,
                                                           std::string_view filter,
                                                           sql::sql_version version,
                                                           const std::string& where) {
  republish_action out;
  const auto* topic = fields.if_contains("topic");
  if (topic == nullptr || !topic->is_string() || topic->get_string().empty())
    return invalid(where + ".topic is required: the topic to republish to");
  std::string_view topic_text(topic->get_string().data(), topic->get_string().size());
  // `$$aws/...` is how AWS lets a rule name a reserved topic.
  if (topic_text.starts_with("$$aws/")) topic_text.remove_prefix(1);
  std::string error;
  auto parsed_topic = substitution_template::parse(topic_text, filter, version, error);
  if (!parsed_topic) return invalid(where + ".topic: " + error);
  out.topic = std::move(*parsed_topic);
  if (!out.topic.has_expressions() && !mqtt::is_valid_topic_name(out.topic.text()))
    return invalid(where + ".topic is not a valid topic name: " + out.topic.text());

  if (const auto* qos = fields.if_contains("qos"); qos != nullptr && !qos->is_null()) {
    auto level = int_of(*qos);
    if (!level || (*level != 0 && *level != 1)) return invalid(where + ".qos must be 0 or 1");
    out.qos = static_cast<std::uint8_t>(*level);
  }

  const auto* headers_field = fields.if_contains("headers");
  if (headers_field == nullptr || headers_field->is_null()) return out;
  if (!headers_field->is_object()) return invalid(where + ".headers must be an object");
  const auto& headers = headers_field->get_object();
  const std::string at = where + ".headers";
  if (const auto* format = headers.if_contains("payloadFormatIndicator");
      format != nullptr && !format->is_null()) {
    const std::string format_name = format->is_string() ? text_of(format->get_string()) : "";
    if (format_name == "UNSPECIFIED_BYTES")
      out.payload_format_indicator = std::uint8_t{0};
    else if (format_name == "UTF8_DATA")
      out.payload_format_indicator = std::uint8_t{1};
    else
      return invalid(at + ".payloadFormatIndicator must be UNSPECIFIED_BYTES or UTF8_DATA");
  }
  if (auto refused = template_field(headers, "contentType", filter, version, at, out.content_type))
    return std::move(*refused);
  if (auto refused =
          template_field(headers, "responseTopic", filter, version, at, out.response_topic))
    return std::move(*refused);
  if (auto refused =
          template_field(headers, "correlationData", filter, version, at, out.correlation_data))
    return std::move(*refused);
  if (auto refused =
          template_field(headers, "messageExpiry", filter, version, at, out.message_expiry))
    return std::move(*refused);
  if (const auto* properties = headers.if_contains("userProperties");
      properties != nullptr && !properties->is_null()) {
    if (!properties->is_array())
      return invalid(at + ".userProperties must be an array of {key, value}");
    for (const auto& property : properties->get_array()) {
      const auto* pair = property.if_object();
      if (pair == nullptr) return invalid(at + ".userProperties must be an array of {key, value}");
      std::optional<substitution_template> key;
      std::optional<substitution_template> value;
      if (auto refused = template_field(*pair, "key", filter, version, at + ".userProperties", key))
        return std::move(*refused);
      if (auto refused =
              template_field(*pair, "value", filter, version, at + ".userProperties", value))
        return std::move(*refused);
      if (!key || !value)
        return invalid(at + ".userProperties: each entry needs a key and a value");
      out.user_properties.emplace_back(std::move(*key), std::move(*value));
    }
  }
  return out;
}

// One action object: exactly one key, the action type, whose value is an object.
std::variant<compiled_action, rule_error> compile_action(const json::value& action,
                                                         std::string_view filter,
                                                         sql::sql_version version,
                                                         const std::string& where) {
  const auto* object = action.if_object();
  if (object == nullptr || object->size() != 1 || !object->begin()->value().is_object())
    return invalid(where +
                   " must be an object with exactly one key, the action type, whose value is an "
                   "object");
  compiled_action out;
  const auto key = object->begin()->key();
  out.type = std::string(key.data(), key.size());
  if (out.type == "republish") {
    auto parsed = parse_republish(object->begin()->value().get_object(), filter, version,
                                  where + ".republish");
    if (auto* refused = std::get_if<rule_error>(&parsed)) return std::move(*refused);
    out.republish = std::move(std::get<republish_action>(parsed));
  }
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
  out.actions.reserve(r.actions.size());
  for (std::size_t i = 0; i < r.actions.size(); ++i) {
    auto action = compile_action(r.actions[i], filter, *version,
                                 "topicRulePayload.actions[" + std::to_string(i) + "]");
    if (auto* refused = std::get_if<rule_error>(&action)) return std::move(*refused);
    out.actions.push_back(std::move(std::get<compiled_action>(action)));
  }
  if (r.error_action) {
    auto action = compile_action(json::value(*r.error_action), filter, *version,
                                 "topicRulePayload.errorAction");
    if (auto* refused = std::get_if<rule_error>(&action)) return std::move(*refused);
    out.error_action = std::move(std::get<compiled_action>(action));
  }
  return out;
}

}  // namespace nimbus::rules
