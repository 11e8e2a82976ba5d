// [bridges.<name>] and [pubsub_bridges.<name>] as JSON (what the config and the API hand over):
// defaults, the tutorial's §4 bridges in a few lines, and every error naming bridge and field.
#include "bridge/bridge_config.hpp"

#include <gtest/gtest.h>

#include <map>

namespace nimbus::bridge {
namespace {

const parse_context context{"edge-host"};

mqtt_bridge mqtt(std::string_view json, std::string_view name = "edge") {
  auto result = parse_mqtt_bridge(name, json, context);
  if (auto* error = std::get_if<config_error>(&result)) ADD_FAILURE() << error->text();
  return std::get_if<mqtt_bridge>(&result) ? std::get<mqtt_bridge>(result) : mqtt_bridge{};
}

std::string mqtt_error(std::string_view json, std::string_view name = "edge") {
  auto result = parse_mqtt_bridge(name, json, context);
  return std::holds_alternative<config_error>(result) ? std::get<config_error>(result).text()
                                                      : "<no error>";
}

pubsub_bridge pubsub(std::string_view json) {
  auto result = parse_pubsub_bridge("cloud", json);
  if (auto* error = std::get_if<config_error>(&result)) ADD_FAILURE() << error->text();
  return std::get_if<pubsub_bridge>(&result) ? std::get<pubsub_bridge>(result) : pubsub_bridge{};
}

std::string pubsub_error(std::string_view json) {
  auto result = parse_pubsub_bridge("cloud", json);
  return std::holds_alternative<config_error>(result) ? std::get<config_error>(result).text()
                                                      : "<no error>";
}

TEST(BridgeConfig, MqttDefaultsAsMosquitto) {
  const auto b = mqtt(R"({"addresses": ["cloud.example"], "topic": "sensor/# out 1"})");
  EXPECT_EQ(b.name, "edge");
  EXPECT_EQ(b.addresses, (std::vector<host_port>{{"cloud.example", 1883}}));
  EXPECT_EQ(b.protocol, mqtt_protocol::mqttv311);
  EXPECT_FALSE(b.tls);
  EXPECT_EQ(b.client_id, "edge-host.edge");  // Mosquitto's "<hostname>.<connection name>"
  EXPECT_FALSE(b.clean_start);
  EXPECT_EQ(b.session_expiry, 3600u);
  EXPECT_EQ(b.keep_alive, 60);
  EXPECT_TRUE(b.notifications);
  EXPECT_EQ(b.notification_topic, "$SYS/broker/connection/edge-host.edge/state");
  EXPECT_EQ(b.queue.max_bytes, 64u * 1024 * 1024);
  EXPECT_EQ(b.queue.when_full, full_policy::drop_oldest);
  ASSERT_EQ(b.topics.size(), 1u);
  EXPECT_EQ(b.topics[0], (topic_mapping{"sensor/#", topic_direction::out, 1, "", ""}));
  // No hostname: "nimbus.<name>".
  auto anonymous = parse_mqtt_bridge("edge", R"({"addresses":["h"],"topic":"#"})", {});
  EXPECT_EQ(std::get<mqtt_bridge>(anonymous).client_id, "nimbus.edge");
}

TEST(BridgeConfig, MqttEveryField) {
  const auto b = mqtt(R"({
    "addresses": ["a.example:8884", "[::1]", "10.0.0.2:443"],
    "protocol": "mqttv5", "cafile": "ca.pem", "certfile": "c.pem", "keyfile": "k.pem",
    "alpn": "x-amzn-mqtt-ca", "client_id": "thing-1", "username": "u", "password_file": "pw",
    "clean_start": true, "session_expiry": 600, "keep_alive": 30,
    "topic": ["a/# both 2 L/ R/", {"pattern": "", "direction": "IN", "qos": 1,
              "local_prefix": "local/t", "remote_prefix": "remote/t"}, "a/# both 2 L/ R/"],
    "queue_max_bytes": 4096, "full_policy": "block", "notifications": false,
    "notification_topic": "bridges/edge/state"})");
  EXPECT_EQ(b.addresses,
            (std::vector<host_port>{
                {"a.example", 8884}, {"::1", 8883}, {"10.0.0.2", 443}}));  // TLS: 8883 by default
  EXPECT_EQ(b.protocol, mqtt_protocol::mqttv5);
  EXPECT_TRUE(b.tls);
  EXPECT_EQ(b.files.cafile, "ca.pem");
  EXPECT_EQ(b.alpn, (std::vector<std::string>{"x-amzn-mqtt-ca"}));
  EXPECT_EQ(b.client_id, "thing-1");
  EXPECT_EQ(b.password_file, "pw");
  EXPECT_TRUE(b.clean_start);
  EXPECT_EQ(b.session_expiry, 600u);
  EXPECT_EQ(b.keep_alive, 30);
  ASSERT_EQ(b.topics.size(), 2u);  // the repeated line is skipped, as Mosquitto does
  EXPECT_EQ(b.topics[1], (topic_mapping{"", topic_direction::in, 1, "local/t", "remote/t"}));
  EXPECT_EQ(b.queue.max_bytes, 4096u);
  EXPECT_EQ(b.queue.when_full, full_policy::block);
  EXPECT_FALSE(b.notifications);
  EXPECT_EQ(b.notification_topic, "bridges/edge/state");
  // Mosquitto's spelling of the protocol, TLS on the system store, clean start's expiry.
  const auto aws = mqtt(R"({"addresses":["iot.example:443"],"protocol":"mqttv50","tls":true,
                            "alpn":["x-amzn-mqtt-ca"],"clean_start":true,"topic":"#"})");
  EXPECT_TRUE(aws.tls);
  EXPECT_EQ(aws.protocol, mqtt_protocol::mqttv5);
  EXPECT_EQ(aws.session_expiry, 0u);
  EXPECT_EQ(
      mqtt(R"({"addresses":["h"],"topic":"#","protocol":"mqttv5","password_file":"p"})").username,
      "");  // MQTT 5 allows a password alone
}

struct error_row {
  std::string_view json;
  std::string_view expected;
};

TEST(BridgeConfig, MqttErrorsNameBridgeFieldAndReason) {
  const error_row rows[] = {
      {R"([1])", "bridges.edge: must be a table"},
      {R"({"topic":"#"})", "bridges.edge.addresses: is required"},
      {R"({"addresses":["h"]})",
       "bridges.edge.topic: is required (pattern [in|out|both] [qos] ...)"},
      {R"({"addresses":["h"],"topic":"#","port":1})",
       "bridges.edge.port: unknown key (addresses, protocol, tls, cafile, certfile, keyfile, alpn, "
       "client_id, username, password_file, clean_start, session_expiry, keep_alive, topic, "
       "queue_max_bytes, full_policy, notifications, notification_topic)"},
      {R"({"addresses":[],"topic":"#"})",
       "bridges.edge.addresses: must be a list of \"host:port\", at least one"},
      {R"({"addresses":"h:1","topic":"#"})",
       "bridges.edge.addresses: must be a list of \"host:port\", at least one"},
      {R"({"addresses":["h:1","h:70000"],"topic":"#"})",
       "bridges.edge.addresses[1]: 'h:70000': port '70000' must be within 1..65535"},
      {R"({"addresses":["::1:1883"],"topic":"#"})",
       "bridges.edge.addresses[0]: '::1:1883': an IPv6 address is written [address]:port"},
      {R"({"addresses":["h:"],"topic":"#"})", "bridges.edge.addresses[0]: 'h:': has an empty port"},
      {R"({"addresses":[":1883"],"topic":"#"})",
       "bridges.edge.addresses[0]: ':1883': must be host:port"},
      {R"({"addresses":["h"],"topic":["a/#","a/# in 3"]})",
       "bridges.edge.topic[1]: QoS '3' must be 0, 1 or 2"},
      {R"({"addresses":["h"],"topic":[]})", "bridges.edge.topic: must list at least one mapping"},
      {R"({"addresses":["h"],"topic":7})",
       "bridges.edge.topic: must be a topic line or a table {pattern, direction, qos, ...}"},
      {R"({"addresses":["h"],"topic":{"pattern":"a/#","qos":3}})",
       "bridges.edge.topic.qos: must be a whole number within 0..2"},
      {R"({"addresses":["h"],"topic":[{"direction":"in"}]})",
       "bridges.edge.topic[0].pattern: is required"},
      {R"({"addresses":["h"],"topic":[{"pattern":"a","to":"x"}]})",
       "bridges.edge.topic[0].to: unknown key (pattern, direction, qos, local_prefix, "
       "remote_prefix)"},
      {R"({"addresses":["h"],"topic":[{"pattern":"a","direction":"up"}]})",
       "bridges.edge.topic[0].direction: must be out, in or both"},
      {R"({"addresses":["h"],"topic":[{"pattern":"","local_prefix":"l"}]})",
       "bridges.edge.topic[0]: an empty pattern needs both a local and a remote prefix"},
      {R"({"addresses":["h"],"topic":"#","protocol":"mqttv31"})",
       "bridges.edge.protocol: must be one of \"mqttv311\", \"mqttv5\", \"mqttv50\""},
      {R"({"addresses":["h"],"topic":"#","certfile":"c"})",
       "bridges.edge.keyfile: is required with certfile"},
      {R"({"addresses":["h"],"topic":"#","keyfile":"k"})",
       "bridges.edge.certfile: is required with keyfile"},
      {R"({"addresses":["h"],"topic":"#","cafile":"ca","tls":false})",
       "bridges.edge.tls: is false but cafile or certfile is set"},
      {R"({"addresses":["h"],"topic":"#","alpn":"x-amzn-mqtt-ca"})",
       "bridges.edge.alpn: needs TLS (tls = true or a cafile)"},
      {R"({"addresses":["h"],"topic":"#","keep_alive":2})",
       "bridges.edge.keep_alive: must be a whole number within 5..65535"},
      {R"({"addresses":["h"],"topic":"#","keep_alive":60.5})",
       "bridges.edge.keep_alive: must be a whole number within 5..65535"},
      {R"({"addresses":["h"],"topic":"#","session_expiry":60})",
       "bridges.edge.session_expiry: needs protocol = \"mqttv5\" (3.1.1 has no expiry)"},
      {R"({"addresses":["h"],"topic":"#","password_file":"p"})",
       "bridges.edge.password_file: needs a username with MQTT 3.1.1"},
      {R"({"addresses":["h"],"topic":"#","clean_start":"yes"})",
       "bridges.edge.clean_start: must be true or false"},
      {R"({"addresses":["h"],"topic":"#","full_policy":"drop"})",
       "bridges.edge.full_policy: must be one of \"drop-oldest\", \"drop-new\", \"block\""},
      {R"({"addresses":["h"],"topic":"#","queue_max_bytes":0})",
       "bridges.edge.queue_max_bytes: must be a whole number within 1..9223372036854775807"},
      {R"({"addresses":["h"],"topic":"#","cafile":""})",
       "bridges.edge.cafile: must be a non-empty string"},
      {R"({"addresses":["h"],"topic":"#","notification_topic":"a/#"})",
       "bridges.edge.notification_topic: must be a topic name, without + or #"},
      {R"({"addresses":["h"],"topic":"#","client_id":"a+b"})",
       "bridges.edge.client_id: '$SYS/broker/connection/a+b/state' is not a topic name: set "
       "notification_topic"},
  };
  for (const auto& row : rows) EXPECT_EQ(mqtt_error(row.json), row.expected) << row.json;
  // Without notifications the client id needs no topic.
  EXPECT_EQ(
      mqtt(R"({"addresses":["h"],"topic":"#","client_id":"a+b","notifications":false})").client_id,
      "a+b");
}

TEST(BridgeConfig, BridgeNamesNameDirectories) {
  EXPECT_TRUE(is_valid_bridge_name("edge-1.cloud_2"));
  for (const std::string_view bad : {"", ".hidden", "a/b", "a b", "..", "\xC3\xA9"})
    EXPECT_FALSE(is_valid_bridge_name(bad)) << bad;
  EXPECT_FALSE(is_valid_bridge_name(std::string(65, 'a')));
  EXPECT_EQ(mqtt_error(R"({"addresses":["h"],"topic":"#"})", "../x"),
            "bridges.../x: a bridge name is 1 to 64 of letters, digits, '-', '_' and '.', not "
            "starting with '.'");
}

TEST(BridgeConfig, TheTutorialsPubsubBridgesInAFewLines) {
  // §4.1 and §4.2 together: sensor/# and device/+/status up, commands down, this server's Pub/Sub.
  const auto b = pubsub(R"({"project": "your-project-id",
                            "filters": ["sensor/#", "device/+/status"], "topic": "iot-sensor-data",
                            "subscription": "commands-sub"})");
  EXPECT_EQ(b.name, "cloud");
  EXPECT_TRUE(b.is_local);
  EXPECT_EQ(b.project, "your-project-id");
  EXPECT_EQ(b.filters, (std::vector<std::string>{"sensor/#", "device/+/status"}));
  EXPECT_EQ(b.topic, "iot-sensor-data");
  EXPECT_EQ(b.envelope, envelope_kind::source_topic);
  EXPECT_FALSE(b.order_by_topic);
  EXPECT_EQ(b.subscription, "commands-sub");
  EXPECT_EQ(b.allowed_topics, (std::vector<std::string>{"#"}));
  EXPECT_EQ(b.max_outstanding, 1000u);
  EXPECT_EQ(b.command_qos, 1);
  EXPECT_EQ(b.queue.when_full, full_policy::drop_oldest);

  const auto remote = pubsub(R"({"target": "grpcs://cloud.example:8443", "project": "p",
                                 "cafile": "ca.pem", "certfile": "c.pem", "keyfile": "k.pem",
                                 "token_file": "token", "topic": "uplink", "filters": ["#"],
                                 "envelope": "raw", "ordering_key": "topic",
                                 "allowed_topics": ["device/+/cmd", "$aws/things/+/shadow/update"],
                                 "max_outstanding": 10, "command_qos": 0,
                                 "queue_max_bytes": 1000000, "full_policy": "drop-new"})");
  EXPECT_FALSE(remote.is_local);
  EXPECT_TRUE(remote.tls);
  EXPECT_EQ(remote.remote, (host_port{"cloud.example", 8443}));
  EXPECT_EQ(remote.envelope, envelope_kind::raw);
  EXPECT_TRUE(remote.order_by_topic);
  EXPECT_EQ(remote.subscription, "");
  EXPECT_EQ(remote.queue.when_full, full_policy::drop_new);
  const auto plain = pubsub(R"({"target":"grpc://localhost:8085","project":"p",
                                "subscription":"down","envelope":"topic_payload"})");
  EXPECT_FALSE(plain.tls);
  EXPECT_EQ(plain.remote, (host_port{"localhost", 8085}));
}

TEST(BridgeConfig, PubsubErrorsNameBridgeFieldAndReason) {
  const error_row rows[] = {
      {R"({"topic":"uplink","filters":["#"]})", "pubsub_bridges.cloud.project: is required"},
      {R"({"project":"p"})",
       "pubsub_bridges.cloud: needs a topic (upstream), a subscription (downstream) or both"},
      {R"({"project":"p","topic":"uplink"})",
       "pubsub_bridges.cloud.filters: must list the MQTT topic filters to forward to topic"},
      {R"({"project":"p","subscription":"down","filters":["#"]})",
       "pubsub_bridges.cloud.filters: needs a topic to forward to"},
      {R"({"project":"p","topic":"uplink","filters":["a","b/#/c"]})",
       "pubsub_bridges.cloud.filters[1]: 'b/#/c' is not a valid topic filter"},
      {R"({"project":"p","topic":"uplink","filters":"a"})",
       "pubsub_bridges.cloud.filters: must be a list of strings"},
      {R"({"project":"p","topic":"uplink","filters":["$share/g/a"]})",
       "pubsub_bridges.cloud.filters[0]: '$share/g/a' is a shared subscription, which a bridge "
       "cannot use"},
      {R"({"project":"p","topic":"ab","filters":["#"]})",
       "pubsub_bridges.cloud.topic: 'ab' is not a Pub/Sub id (3 to 255 of letters, digits, "
       "._~+%-, starting with a letter, not with goog)"},
      {R"({"project":"p","subscription":"goog-sub"})",
       "pubsub_bridges.cloud.subscription: 'goog-sub' is not a Pub/Sub id (3 to 255 of letters, "
       "digits, ._~+%-, starting with a letter, not with goog)"},
      {R"({"project":"a/b","subscription":"down"})",
       "pubsub_bridges.cloud.project: must be at most 255 bytes, without '/'"},
      {R"({"project":"p","subscription":"down","target":"http://h:1"})",
       "pubsub_bridges.cloud.target: must be \"local\", \"grpc://host:port\" or "
       "\"grpcs://host:port\""},
      {R"({"project":"p","subscription":"down","target":"grpc://h"})",
       "pubsub_bridges.cloud.target: 'grpc://h': needs a port (host:port)"},
      {R"({"project":"p","subscription":"down","target":"grpc://h:1","cafile":"ca"})",
       "pubsub_bridges.cloud.cafile: needs target = \"grpcs://host:port\""},
      {R"({"project":"p","subscription":"down","certfile":"c","keyfile":"k"})",
       "pubsub_bridges.cloud.certfile: needs target = \"grpcs://host:port\""},
      {R"({"project":"p","subscription":"down","target":"grpcs://h:1","keyfile":"k"})",
       "pubsub_bridges.cloud.certfile: is required with keyfile"},
      {R"({"project":"p","subscription":"down","token_file":"t"})",
       "pubsub_bridges.cloud.token_file: needs a remote target (grpc:// or grpcs://)"},
      {R"({"project":"p","subscription":"down","envelope":"json"})",
       "pubsub_bridges.cloud.envelope: must be one of \"source_topic\", \"topic_payload\", "
       "\"raw\""},
      {R"({"project":"p","subscription":"down","ordering_key":"device"})",
       "pubsub_bridges.cloud.ordering_key: must be one of \"none\", \"topic\""},
      {R"({"project":"p","subscription":"down","allowed_topics":[]})",
       "pubsub_bridges.cloud.allowed_topics: must list at least one topic filter"},
      {R"({"project":"p","subscription":"down","max_outstanding":0})",
       "pubsub_bridges.cloud.max_outstanding: must be a whole number within 1..1000000"},
      {R"({"project":"p","subscription":"down","command_qos":3})",
       "pubsub_bridges.cloud.command_qos: must be a whole number within 0..2"},
      {R"({"project":"p","subscription":"down","addresses":["h"]})",
       "pubsub_bridges.cloud.addresses: unknown key (target, cafile, certfile, keyfile, "
       "token_file, project, filters, topic, envelope, ordering_key, queue_max_bytes, "
       "full_policy, subscription, allowed_topics, max_outstanding, command_qos)"},
  };
  for (const auto& row : rows) EXPECT_EQ(pubsub_error(row.json), row.expected) << row.json;
}

TEST(BridgeConfig, WrittenBackAsJsonEachBridgeParsesToItself) {
  // The form GET /api/bridges shows and POST takes: every field with its effective value.
  EXPECT_EQ(to_json(mqtt(R"({"addresses": ["cloud.example"], "topic": "sensor/# out 1"})")),
            R"({"addresses":["cloud.example:1883"],"protocol":"mqttv311","tls":false,)"
            R"("client_id":"edge-host.edge","clean_start":false,"keep_alive":60,)"
            R"("topic":[{"pattern":"sensor/#","direction":"out","qos":1,"local_prefix":"",)"
            R"("remote_prefix":""}],"queue_max_bytes":67108864,"full_policy":"drop-oldest",)"
            R"("notifications":true,)"
            R"("notification_topic":"$SYS/broker/connection/edge-host.edge/state"})");

  const std::string_view mqtt_tables[] = {
      R"({"addresses": ["cloud.example"], "topic": "sensor/# out 1"})",
      R"({"addresses": ["a.example:8884", "[::1]", "10.0.0.2:443"],
          "protocol": "mqttv50", "cafile": "ca.pem", "certfile": "c.pem", "keyfile": "k.pem",
          "alpn": ["x-amzn-mqtt-ca", "mqtt"], "client_id": "thing-1", "username": "u",
          "password_file": "pw", "clean_start": true, "session_expiry": 600, "keep_alive": 30,
          "topic": ["a/# both 2 L/ R/", {"pattern": "", "direction": "IN", "qos": 1,
                    "local_prefix": "local/t", "remote_prefix": "remote/t"}, "b/+ in"],
          "queue_max_bytes": 4096, "full_policy": "block",
          "notification_topic": "bridges/edge/state"})",
      R"({"addresses": ["iot.example:443"], "tls": true, "clean_start": true,
          "topic": {"pattern": "x y/#", "direction": "out"}, "full_policy": "drop-new"})",
      // A host the parser takes from brackets without being IPv6: bracketed again.
      R"({"addresses": ["[[odd]:1884", "h:1"], "topic": "#", "notifications": false})",
  };
  for (const auto table : mqtt_tables) {
    const auto b = mqtt(table);
    EXPECT_EQ(mqtt(to_json(b)), b) << table << "\n" << to_json(b);
  }

  // Without notifications the topic is left out (the client id may not even make one): the
  // default comes back.
  auto quiet = mqtt(R"({"addresses":["h"],"topic":"#","notifications":false,
                        "notification_topic":"bridges/edge/state"})");
  EXPECT_EQ(to_json(quiet).find("notification_topic"), std::string::npos);
  quiet.notification_topic = "$SYS/broker/connection/edge-host.edge/state";
  EXPECT_EQ(mqtt(to_json(quiet)), quiet);
  const auto plus =
      mqtt(R"({"addresses":["h"],"topic":"#","client_id":"a+b","notifications":false})");
  EXPECT_EQ(mqtt(to_json(plus)), plus);

  const std::string_view pubsub_tables[] = {
      R"({"project": "your-project-id", "filters": ["sensor/#", "device/+/status"],
          "topic": "iot-sensor-data", "subscription": "commands-sub"})",
      R"({"target": "grpcs://cloud.example:8443", "project": "p", "cafile": "ca.pem",
          "certfile": "c.pem", "keyfile": "k.pem", "token_file": "token", "topic": "uplink",
          "filters": ["#"], "envelope": "raw", "ordering_key": "topic",
          "allowed_topics": ["device/+/cmd", "$aws/things/+/shadow/update"],
          "max_outstanding": 10, "command_qos": 0, "queue_max_bytes": 1000000,
          "full_policy": "block"})",
      R"({"target": "grpc://[::1]:8085", "project": "p", "subscription": "down",
          "envelope": "topic_payload"})",
  };
  for (const auto table : pubsub_tables) {
    const auto b = pubsub(table);
    EXPECT_EQ(pubsub(to_json(b)), b) << table << "\n" << to_json(b);
  }
  EXPECT_EQ(to_json(pubsub(pubsub_tables[2])),
            R"({"target":"grpc://[::1]:8085","project":"p","envelope":"topic_payload",)"
            R"("ordering_key":"none","queue_max_bytes":67108864,"full_policy":"drop-oldest",)"
            R"("subscription":"down","allowed_topics":["#"],"max_outstanding":1000,)"
            R"("command_qos":1})");
}

TEST(BridgeConfig, FilesAreProbedAtCreation) {
  const std::map<std::string, std::string> unreadable = {{"k.pem", "permission denied"}};
  const file_probe probe = [&](const std::string& path) -> std::optional<std::string> {
    auto it = unreadable.find(path);
    if (it == unreadable.end()) return std::nullopt;
    return it->second;
  };
  const auto b = mqtt(R"({"addresses":["h"],"topic":"#","certfile":"c.pem","keyfile":"k.pem"})");
  const auto error = check_files(b, probe);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->text(), "bridges.edge.keyfile: cannot read 'k.pem': permission denied");
  EXPECT_FALSE(check_files(mqtt(R"({"addresses":["h"],"topic":"#","password_file":"pw",
                                    "username":"u"})"),
                           probe));
  const auto p = pubsub(R"({"target":"grpc://h:1","project":"p","subscription":"down",
                            "token_file":"k.pem"})");
  EXPECT_EQ(check_files(p, probe)->text(),
            "pubsub_bridges.cloud.token_file: cannot read 'k.pem': permission denied");
}

}  // namespace
}  // namespace nimbus::bridge
