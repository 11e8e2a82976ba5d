#include "rules/actions/republish.hpp"

#include <charconv>
#include <system_error>
#include <utility>

#include "core/base64.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"
#include "rules/actions/runtime.hpp"

namespace nimbus::rules::actions {

namespace json = boost::json;

namespace {

// A rule republishing to a topic another rule republishes from (A -> B -> A) would recurse on
// the publisher's thread without end: a chain this deep fails instead.
constexpr int max_republish_depth = 8;
thread_local int republish_depth = 0;

// republish {topic, qos?, headers?}; roleArn and anything else are kept in the rule, unused.
std::variant<republish_fields, rule_error> parse_fields(const json::object& fields,
                                                        const template_scope& scope,
                                                        const std::string& where) {
  republish_fields out;
  const auto* topic = fields.if_contains("topic");
  if (topic == nullptr || !topic->is_string() || topic->get_string().empty())
    return invalid(where + ".topic is required: the topic to republish to");
  std::string_view topic_text(topic->get_string().data(), topic->get_string().size());
  // `$$aws/...` is how AWS lets a rule name a reserved topic.
  if (topic_text.starts_with("$$aws/")) topic_text.remove_prefix(1);
  std::string error;
  auto parsed_topic = substitution_template::parse(topic_text, scope.filter, scope.version, error);
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
  if (auto refused = template_field(headers, "contentType", scope, at, out.content_type))
    return std::move(*refused);
  if (auto refused = template_field(headers, "responseTopic", scope, at, out.response_topic))
    return std::move(*refused);
  if (auto refused = template_field(headers, "correlationData", scope, at, out.correlation_data))
    return std::move(*refused);
  if (auto refused = template_field(headers, "messageExpiry", scope, at, out.message_expiry))
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
      if (auto refused = template_field(*pair, "key", scope, at + ".userProperties", key))
        return std::move(*refused);
      if (auto refused = template_field(*pair, "value", scope, at + ".userProperties", value))
        return std::move(*refused);
      if (!key || !value)
        return invalid(at + ".userProperties: each entry needs a key and a value");
      out.user_properties.emplace_back(std::move(*key), std::move(*value));
    }
  }
  return out;
}

// Expands `t` into `out`; false with `error` when an evaluation broke a limit.
bool expand(const substitution_template& t, const broker::message& original,
            const sql::message_context& ctx, std::string& out, std::string& error) {
  return t.expand(original.payload, ctx, out, error);
}

// Publishes `payload` to the expanded topic as the rule (`publisher`), inline on this thread.
// False, with `error`, when the topic or a header does not come out right; `topic` is the
// topic as far as it was expanded.
bool publish(broker::broker& bus, const std::string& publisher, const republish_fields& action,
             const broker::message& original, const sql::message_context& ctx, std::string payload,
             std::string& topic, std::string& error) {
  if (!expand(action.topic, original, ctx, topic, error)) return false;
  if (!mqtt::is_valid_topic_name(topic, bus.topic_limits()) || !mqtt::is_valid_mqtt_utf8(topic)) {
    error = "The topic is not a valid topic name: " + topic;
    return false;
  }
  if (bus.is_reserved_topic(topic)) {
    error = "The topic is reserved: only the server publishes to it: " + topic;
    return false;
  }
  auto msg = std::make_shared<broker::message>();
  msg->topic = topic;
  msg->payload = std::move(payload);
  msg->qos = action.qos;
  msg->publisher = publisher;
  auto& props = msg->props;
  props.payload_format_indicator = action.payload_format_indicator;
  if (action.content_type) {
    std::string text;
    if (!expand(*action.content_type, original, ctx, text, error)) return false;
    if (!mqtt::is_valid_mqtt_utf8(text)) {
      error = "headers.contentType is not valid UTF-8";
      return false;
    }
    props.content_type = std::move(text);
  }
  if (action.response_topic) {
    std::string text;
    if (!expand(*action.response_topic, original, ctx, text, error)) return false;
    if (!mqtt::is_valid_topic_name(text, bus.topic_limits()) || !mqtt::is_valid_mqtt_utf8(text)) {
      error = "headers.responseTopic is not a valid topic name: " + text;
      return false;
    }
    props.response_topic = std::move(text);
  }
  if (action.correlation_data) {
    std::string text;
    if (!expand(*action.correlation_data, original, ctx, text, error)) return false;
    auto bytes = core::base64_decode(text);
    if (!bytes) {
      error = "headers.correlationData is not base64";
      return false;
    }
    props.correlation_data = std::move(*bytes);
  }
  if (action.message_expiry) {
    std::string text;
    if (!expand(*action.message_expiry, original, ctx, text, error)) return false;
    std::uint32_t seconds = 0;
    const char* first = text.data();
    const char* last = first + text.size();
    const auto parsed = std::from_chars(first, last, seconds);
    if (text.empty() || parsed.ec != std::errc() || parsed.ptr != last) {
      error = "headers.messageExpiry is not a number of seconds: " + text;
      return false;
    }
    props.message_expiry_interval = seconds;
  }
  for (const auto& [key_template, value_template] : action.user_properties) {
    std::string key;
    std::string value;
    if (!expand(key_template, original, ctx, key, error) ||
        !expand(value_template, original, ctx, value, error))
      return false;
    if (!mqtt::is_valid_mqtt_utf8(key) || !mqtt::is_valid_mqtt_utf8(value)) {
      error = "headers.userProperties: a key or value is not valid UTF-8";
      return false;
    }
    props.user.emplace_back(std::move(key), std::move(value));
  }
  msg->expires_at = bus.expiry_for(props);

  if (republish_depth >= max_republish_depth) {
    error = "Republished through more than " + std::to_string(max_republish_depth) +
            " rules in a row: a loop between rules?";
    return false;
  }
  struct depth_guard {
    depth_guard() { ++republish_depth; }
    ~depth_guard() { --republish_depth; }
    depth_guard(const depth_guard&) = delete;
    depth_guard& operator=(const depth_guard&) = delete;
  } guard;
  bus.publish(std::move(msg));
  return true;
}

}  // namespace

std::variant<std::unique_ptr<const action>, rule_error> republish::parse(
    const json::object& fields, const template_scope& scope, const std::string& where) {
  auto parsed = parse_fields(fields, scope, where);
  if (auto* refused = std::get_if<rule_error>(&parsed)) return std::move(*refused);
  return std::unique_ptr<const action>(
      new republish(std::move(std::get<republish_fields>(parsed))));
}

const std::string& republish::type() const {
  static const std::string name = "republish";
  return name;
}

void republish::fire(const firing& f, runtime& rt, completion done) const {
  std::string topic;
  std::string error;
  if (publish(rt.bus(), f.publisher, fields_, f.original, f.context, std::string(f.output), topic,
              error))
    return done(std::nullopt);
  done(failure{"RepublishAction", std::move(topic), std::move(error)});
}

}  // namespace nimbus::rules::actions
