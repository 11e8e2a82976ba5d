#pragma once
// One bridge's settings, from its table in nimbus.toml ([bridges.<name>], [pubsub_bridges.<name>])
// or from the body of POST /api/bridges: both arrive as JSON (the config turns a TOML table into
// JSON as for [[tsdb.mqtt]]), so one parser gives the file and the API the same checks and the
// same errors, which name the bridge, the field and the reason
// ("bridges.edge.topic[1]: QoS '3' must be 0, 1 or 2"). Defaults as Mosquitto's bridges where it
// has one. to_json() writes a bridge back in that form. Pure: files are only named here;
// check_files() tries them through a callback.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bridge/pubsub_envelope.hpp"
#include "bridge/topic_mapping.hpp"

namespace nimbus::bridge {

struct config_error {
  std::string bridge;  // "bridges.edge", "pubsub_bridges.cloud"
  std::string field;   // "topic[1]", "addresses[0]"; "" for the table itself
  std::string message;

  // "bridges.edge.topic[1]: message"
  std::string text() const;
};

struct host_port {
  std::string host;  // a name or an address; IPv6 without its brackets
  std::uint16_t port = 0;
  friend bool operator==(const host_port&, const host_port&) = default;
};

enum class full_policy { drop_oldest, drop_new, block };

// The store-and-forward queue of one bridge (<data>/bridges/<name>/).
struct queue_settings {
  std::uint64_t max_bytes = 64 * 1024 * 1024;        // queue_max_bytes
  full_policy when_full = full_policy::drop_oldest;  // full_policy
  friend bool operator==(const queue_settings&, const queue_settings&) = default;
};

// Paths as written (relative ones are the server's working directory's).
struct tls_files {
  std::string cafile;    // empty: the system's CA store
  std::string certfile;  // client certificate (mTLS), with keyfile
  std::string keyfile;
  friend bool operator==(const tls_files&, const tls_files&) = default;
};

enum class mqtt_protocol { mqttv311, mqttv5 };

// [bridges.<name>]:
//   addresses = ["host:port", ...]  required; the first, then the fallbacks in turn. The port may
//                                   be left out: 8883 with TLS, else 1883. IPv6 as "[::1]:1883".
//   protocol = "mqttv311"           or "mqttv5" (Mosquitto's "mqttv50" too)
//   tls = false                     true when cafile or certfile is set
//   cafile, certfile, keyfile       certfile and keyfile together
//   alpn = "x-amzn-mqtt-ca"         a string or a list (needs TLS)
//   client_id                       default "<hostname>.<name>", as Mosquitto's remote_clientid
//   username, password_file         the password is read from the file, never written here
//   clean_start = false             Mosquitto's cleansession default: the remote keeps our session
//   session_expiry                  seconds (MQTT 5): 0 with clean_start, else 3600 (AWS IoT's)
//   keep_alive = 60                 5..65535 seconds, as Mosquitto's keepalive_interval
//   topic = "pattern [in|out|both] [qos] [local-prefix] [remote-prefix]", a list of such lines,
//           or inline tables {pattern, direction, qos, local_prefix, remote_prefix}; required.
//           Repeated mappings are skipped, as Mosquitto does.
//   queue_max_bytes = 67108864      full_policy = "drop-oldest" | "drop-new" | "block"
//   notifications = true            notification_topic (default
//                                   "$SYS/broker/connection/<client_id>/state")
struct mqtt_bridge {
  std::string name;
  std::vector<host_port> addresses;
  mqtt_protocol protocol = mqtt_protocol::mqttv311;
  bool tls = false;
  tls_files files;
  std::vector<std::string> alpn;
  std::string client_id;
  std::string username;       // empty: none
  std::string password_file;  // empty: none
  bool clean_start = false;
  std::uint32_t session_expiry = 3600;
  std::uint16_t keep_alive = 60;
  std::vector<topic_mapping> topics;
  queue_settings queue;
  bool notifications = true;
  std::string notification_topic;
  friend bool operator==(const mqtt_bridge&, const mqtt_bridge&) = default;
};

// [pubsub_bridges.<name>]:
//   target = "local"               this server's Pub/Sub, or "grpc://host:port" (plaintext, as
//                                  PUBSUB_EMULATOR_HOST) or "grpcs://host:port" (TLS)
//   cafile, certfile, keyfile      grpcs only: the CA to trust, a client certificate
//   token_file                     remote only: a bearer token, read from the file
//   project                        required
//   upstream:   filters = ["sensor/#"] (required with topic; subscribed at QoS 1, persistent),
//               topic = "iot-sensor-data", envelope = "source_topic" | "topic_payload" | "raw",
//               ordering_key = "none" | "topic", queue_max_bytes, full_policy
//   downstream: subscription = "commands-sub", allowed_topics = ["#"], max_outstanding = 1000,
//               command_qos = 1 (the tutorial publishes at 0; 1 so every command reaches the
//               device)
// At least one of topic and subscription.
struct pubsub_bridge {
  std::string name;
  bool is_local = true;
  host_port remote;  // when not local
  bool tls = false;
  tls_files files;
  std::string token_file;
  std::string project;
  std::vector<std::string> filters;
  std::string topic;  // empty: no upstream
  envelope_kind envelope = envelope_kind::source_topic;
  bool order_by_topic = false;
  queue_settings queue;
  std::string subscription;  // empty: no downstream
  std::vector<std::string> allowed_topics = {"#"};
  std::uint32_t max_outstanding = 1000;
  std::uint8_t command_qos = 1;
  friend bool operator==(const pubsub_bridge&, const pubsub_bridge&) = default;
};

// What parsing needs from outside, given so parsing stays pure.
struct parse_context {
  std::string hostname;  // for the default client id; empty: "nimbus"
};

// A bridge name: 1 to 64 of [A-Za-z0-9_.-], not starting with '.' (it names a directory).
bool is_valid_bridge_name(std::string_view name);

std::variant<mqtt_bridge, config_error> parse_mqtt_bridge(std::string_view name,
                                                          std::string_view json_text,
                                                          const parse_context& context);
std::variant<pubsub_bridge, config_error> parse_pubsub_bridge(std::string_view name,
                                                              std::string_view json_text);

// The table back as JSON text, in the form the parsers (and POST /api/bridges) take, every field
// with its effective value: parsing it gives the same bridge, except that an MQTT bridge's
// notification_topic is left out while notifications are off (its default comes back; it may not
// even be a topic name then). Paths are written; what the files hold never is. GET /api/bridges
// shows an MQTT bridge's config as this.
std::string to_json(const mqtt_bridge& bridge);
std::string to_json(const pubsub_bridge& bridge);

// Creation's file check: each file the bridge names can be read. `probe` returns why a path
// cannot be read, or nullopt. Whether a certificate matches its key is the TLS context's check
// when the link is built (net/), not this one's.
using file_probe = std::function<std::optional<std::string>(const std::string& path)>;
std::optional<config_error> check_files(const mqtt_bridge& bridge, const file_probe& probe);
std::optional<config_error> check_files(const pubsub_bridge& bridge, const file_probe& probe);

}  // namespace nimbus::bridge
