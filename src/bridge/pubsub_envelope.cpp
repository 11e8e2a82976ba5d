#include "bridge/pubsub_envelope.hpp"

#include "bridge/python_json.hpp"
#include "core/json_string.hpp"
#include "mqtt/topic.hpp"

namespace nimbus::bridge {

namespace {

// Pub/Sub's limits (as pubsub/validate.hpp enforces them).
constexpr std::size_t max_attributes = 100;
constexpr std::size_t max_attribute_key = 256;
constexpr std::size_t max_attribute_value = 1024;

constexpr std::string_view default_command_topic = "command";

bool is_utf8(std::string_view text) {
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t length = core::utf8_sequence(text, at);
    if (length == 0) return false;
    at += length;
  }
  return true;
}

// time.time() as a float: whole seconds exactly, else ns / 1e9 (CPython's
// _PyTime_AsSecondsDouble), written as repr() writes it.
void append_python_time(std::string& out, std::int64_t unix_ns) {
  constexpr std::int64_t ns_per_second = 1'000'000'000;
  const double seconds = unix_ns % ns_per_second == 0 ? static_cast<double>(unix_ns / ns_per_second)
                                                      : static_cast<double>(unix_ns) / 1e9;
  append_python_float(out, seconds);
}

void add_user_properties(pubsub_publish& out, const mqtt_message_view& message) {
  for (const auto& [name, value] : message.user_properties) {
    const bool fits = !name.empty() && name.size() <= max_attribute_key &&
                      !name.starts_with("goog") && value.size() <= max_attribute_value &&
                      out.attributes.size() < max_attributes;
    if (!fits || !out.attributes.emplace(name, value).second) ++out.dropped_properties;
  }
}

std::optional<envelope_error> check_topic_limit(std::string_view topic, std::string_view what) {
  if (topic.size() <= max_attribute_value) return std::nullopt;
  return envelope_error{"topic longer than 1024 bytes cannot be a Pub/Sub " + std::string(what)};
}

std::optional<envelope_error> check_command_topic(std::string_view topic,
                                                  std::span<const std::string> allowed_topics) {
  // Quoted and cut short: the topic comes from whoever publishes to the subscription's topic.
  const auto shown = [&] { return core::json_string(topic.substr(0, 200)); };
  if (!mqtt::is_valid_topic_name(topic) || topic.find('\0') != std::string_view::npos)
    return envelope_error{"topic " + shown() + " is not a valid MQTT topic name"};
  for (const auto& filter : allowed_topics)
    if (mqtt::topic_matches(filter, topic)) return std::nullopt;
  return envelope_error{"topic " + shown() + " is not in allowed_topics"};
}

}  // namespace

std::variant<pubsub_publish, envelope_error> wrap_upstream(envelope_kind kind,
                                                           const mqtt_message_view& message,
                                                           std::int64_t received_unix_ns,
                                                           bool order_by_topic) {
  pubsub_publish out;
  if (order_by_topic) {
    if (auto error = check_topic_limit(message.topic, "ordering key")) return *error;
    out.ordering_key = message.topic;
  }
  switch (kind) {
    case envelope_kind::source_topic: {
      if (auto error = check_topic_limit(message.topic, "attribute")) return *error;
      if (!is_utf8(message.payload)) return envelope_error{"payload is not UTF-8"};
      out.data = "{\"source_topic\": ";
      append_python_string(out.data, message.topic);
      out.data += ", \"data\": ";
      if (auto parsed = redump_python(message.payload)) {
        out.data += parsed->text;
      } else {
        out.data += "{\"raw\": ";
        append_python_string(out.data, message.payload);
        out.data += "}";
      }
      out.data += ", \"timestamp\": ";
      append_python_time(out.data, received_unix_ns);
      out.data += "}";
      out.attributes.emplace("source_topic", message.topic);
      return out;
    }
    case envelope_kind::topic_payload: {
      auto parsed = redump_python(message.payload);
      if (!parsed) return envelope_error{"payload is not JSON"};
      out.data = "{\"topic\": ";
      append_python_string(out.data, message.topic);
      out.data += ", \"payload\": ";
      out.data += parsed->text;
      out.data += "}";
      return out;
    }
    case envelope_kind::raw: {
      if (auto error = check_topic_limit(message.topic, "attribute")) return *error;
      out.data = message.payload;
      out.attributes.emplace("source_topic", message.topic);
      out.attributes.emplace("qos", std::to_string(message.qos));
      out.attributes.emplace("retain", message.retain ? "true" : "false");
      add_user_properties(out, message);
      return out;
    }
  }
  return envelope_error{"unknown envelope"};
}

std::variant<command, envelope_error> unwrap_downstream(
    envelope_kind kind, std::string_view data, std::optional<std::string_view> topic_attribute,
    std::span<const std::string> allowed_topics) {
  if (kind == envelope_kind::raw) {
    const std::string_view topic = topic_attribute.value_or(default_command_topic);
    if (auto error = check_command_topic(topic, allowed_topics)) return *error;
    return command{std::string(topic), std::string(data)};
  }
  auto parsed = redump_python(data);  // Boost.JSON refuses bytes that are not UTF-8
  if (!parsed) return envelope_error{"data is not JSON"};
  if (!parsed->is_object) return envelope_error{"data is not a JSON object"};
  command out;
  out.topic = default_command_topic;
  if (const auto* topic = parsed->find("topic")) {
    if (!topic->string_value) return envelope_error{"\"topic\" is not a string"};
    out.topic = *topic->string_value;
  }
  if (auto error = check_command_topic(out.topic, allowed_topics)) return *error;
  const auto* payload = parsed->find("payload");
  out.payload = payload ? std::string(parsed->value_text(*payload)) : std::string("{}");
  return out;
}

}  // namespace nimbus::bridge
