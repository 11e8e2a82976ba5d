// A bridge's table ([bridges.<name>], [pubsub_bridges.<name>], POST /api/bridges) as the parser
// takes it: a name and JSON text (the config turns the TOML table into JSON). The input is
// "name\njson" (no newline: the name "edge" and the whole input as JSON), given to both
// parsers. Nothing may crash, and:
// - an error names its bridge ("bridges.<name>" / "pubsub_bridges.<name>"), has a message, and
//   names a field that is one of the table's keys or one the input holds (an unknown key); only
//   a bad name, text that is not a table, a Pub/Sub table with neither direction, or an unknown
//   key "" leave the field empty;
// - a bridge parsed keeps its promises (addresses with ports, valid mappings and filters, TLS
//   where ALPN or files are, ...), and written back by to_json it parses to the same bridge (an
//   MQTT bridge without notifications to its default notification topic);
// - check_files names the field of the first file the probe refuses.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "bridge/bridge_config.hpp"
#include "mqtt/topic.hpp"

namespace json = boost::json;
using namespace nimbus::bridge;
namespace mqtt = nimbus::mqtt;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

constexpr std::string_view mqtt_keys[] = {"addresses",     "protocol",      "tls",
                                          "cafile",        "certfile",      "keyfile",
                                          "alpn",          "client_id",     "username",
                                          "password_file", "clean_start",   "session_expiry",
                                          "keep_alive",    "topic",         "queue_max_bytes",
                                          "full_policy",   "notifications", "notification_topic"};
constexpr std::string_view pubsub_keys[] = {
    "target",       "cafile",         "certfile",        "keyfile",
    "token_file",   "project",        "filters",         "topic",
    "envelope",     "ordering_key",   "queue_max_bytes", "full_policy",
    "subscription", "allowed_topics", "max_outstanding", "command_qos"};

template <std::size_t N>
bool is_known(std::string_view key, const std::string_view (&keys)[N]) {
  for (const auto known : keys)
    if (known == key) return true;
  return false;
}

template <std::size_t N>
void check_error(const config_error& error, std::string_view section, std::string_view name,
                 std::string_view json_text, const std::string_view (&keys)[N]) {
  check(error.bridge == std::string(section) + "." + std::string(name));
  check(!error.message.empty());
  check(error.text() ==
        error.bridge + (error.field.empty() ? "" : "." + error.field) + ": " + error.message);
  json::error_code ec;
  const auto parsed = json::parse(json_text, ec);
  const bool is_table = !ec && parsed.is_object();
  if (!is_valid_bridge_name(name) || !is_table) {
    check(error.field.empty());
    return;
  }
  if (error.field.empty()) {
    // The one check across the whole table, or an unknown key that is itself empty.
    check((section == "pubsub_bridges" && error.message.starts_with("needs a topic")) ||
          parsed.get_object().contains(""));
    return;
  }
  const auto root = error.field.substr(0, error.field.find_first_of("[."));
  check(is_known(root, keys) || parsed.get_object().contains(error.field));
}

void check_mqtt(const mqtt_bridge& b, std::string_view name, const parse_context& context) {
  check(b.name == name && !b.addresses.empty() && !b.topics.empty() && !b.client_id.empty());
  for (const auto& address : b.addresses) check(!address.host.empty() && address.port != 0);
  for (const auto& mapping : b.topics) {
    check(mapping.qos <= 2);
    check(mqtt::is_valid_topic_filter(mapping.local_subscription_filter()));
    check(mqtt::is_valid_topic_filter(mapping.remote_subscription_filter()));
  }
  check(b.keep_alive >= 5);
  check(b.alpn.empty() || b.tls);
  check(b.files.cafile.empty() || b.tls);
  check(b.files.certfile.empty() == b.files.keyfile.empty());
  if (b.notifications) check(mqtt::is_valid_topic_name(b.notification_topic));
  if (b.protocol == mqtt_protocol::mqttv311) check(b.password_file.empty() || !b.username.empty());

  // Written back as the API shows it, the same bridge; without notifications the topic is left
  // out, and the default comes back.
  auto again = parse_mqtt_bridge(name, to_json(b), context);
  check(std::holds_alternative<mqtt_bridge>(again));
  auto expected = b;
  if (!b.notifications)
    expected.notification_topic = "$SYS/broker/connection/" + b.client_id + "/state";
  check(std::get<mqtt_bridge>(again) == expected);
}

void check_pubsub(const pubsub_bridge& b, std::string_view name) {
  check(b.name == name && !b.project.empty());
  check(!b.topic.empty() || !b.subscription.empty());
  check(b.topic.empty() == b.filters.empty());
  for (const auto& filter : b.filters) check(mqtt::is_valid_topic_filter(filter));
  check(!b.allowed_topics.empty());
  for (const auto& filter : b.allowed_topics) check(mqtt::is_valid_topic_filter(filter));
  check(b.max_outstanding >= 1 && b.command_qos <= 2);
  if (b.is_local) check(!b.tls && b.token_file.empty());
  if (!b.is_local) check(!b.remote.host.empty() && b.remote.port != 0);
  check(b.files.cafile.empty() || b.tls);
  check(b.files.certfile.empty() == b.files.keyfile.empty());

  auto again = parse_pubsub_bridge(name, to_json(b));
  check(std::holds_alternative<pubsub_bridge>(again));
  check(std::get<pubsub_bridge>(again) == b);
}

// A probe refusing paths with an 'x': the error names a file field whose path has one.
template <class Bridge>
void check_probe(const Bridge& bridge, std::string_view section) {
  const auto error = check_files(bridge, [](const std::string& path) -> std::optional<std::string> {
    if (path.find('x') != std::string::npos) return std::string("refused");
    return std::nullopt;
  });
  if (!error) return;
  check(error->bridge == std::string(section) + "." + bridge.name);
  check(error->field == "cafile" || error->field == "certfile" || error->field == "keyfile" ||
        error->field == "password_file" || error->field == "token_file");
  check(error->message.find("refused") != std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16384) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view name = "edge";
  std::string_view json_text = input;
  if (const auto newline = input.find('\n'); newline != std::string_view::npos) {
    name = input.substr(0, newline);
    json_text = input.substr(newline + 1);
  }
  const parse_context context{"gateway"};

  auto mqtt_result = parse_mqtt_bridge(name, json_text, context);
  if (const auto* error = std::get_if<config_error>(&mqtt_result)) {
    check_error(*error, "bridges", name, json_text, mqtt_keys);
  } else {
    check(is_valid_bridge_name(name));
    check_mqtt(std::get<mqtt_bridge>(mqtt_result), name, context);
    check_probe(std::get<mqtt_bridge>(mqtt_result), "bridges");
  }

  auto pubsub_result = parse_pubsub_bridge(name, json_text);
  if (const auto* error = std::get_if<config_error>(&pubsub_result)) {
    check_error(*error, "pubsub_bridges", name, json_text, pubsub_keys);
  } else {
    check(is_valid_bridge_name(name));
    check_pubsub(std::get<pubsub_bridge>(pubsub_result), name);
    check_probe(std::get<pubsub_bridge>(pubsub_result), "pubsub_bridges");
  }
  return 0;
}
