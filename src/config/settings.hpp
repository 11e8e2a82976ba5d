#pragma once
// Typed server settings. Every setting has a TOML key, a flag, a default, bounds and a one-line
// description, declared once in settings.cpp; the TOML file is applied first, flags override.
#include <cstdint>
#include <string>
#include <vector>

namespace nimbus::config {

struct listener_settings {
  // "localhost" binds both 127.0.0.1 and [::1] on the same port, as Mosquitto 2 does.
  std::string mqtt = "localhost:1883";
  std::string mqtts = "0.0.0.0:8883";
  std::string http = "localhost:8080";
  std::string https = "0.0.0.0:8443";
  std::string grpc = "localhost:8085";
};

struct mqtt_settings {
  std::uint32_t max_packet_size = 1024 * 1024;
  std::uint32_t receive_maximum = 100;  // inbound QoS 1/2 window per client
  std::uint32_t max_inflight = 100;  // outbound window per client (capped by its Receive Maximum)
  std::uint32_t max_queued_messages = 1000;
  std::string queue_full_policy = "drop-new";
  std::uint32_t max_connections = 100'000;  // clients past CONNECT
  // Sockets that have not completed CONNECT (TLS handshakes included), in all and per address.
  std::uint32_t max_pending_connections = 1000;
  std::uint32_t max_pending_per_address = 500;
  std::uint32_t connect_timeout = 10;                // seconds from accept to a complete CONNECT
  std::uint32_t max_connect_size = 64 * 1024;        // bytes; independent of max_packet_size
  std::uint32_t max_client_id_length = 128;          // AWS IoT's limit; MQTT allows 65535
  std::uint32_t max_sessions = 1'000'000;            // connected and stored
  std::uint32_t persistent_session_expiry = 3600;    // 3.1.1 clean session 0 (AWS: 1 h)
  std::uint32_t max_subscription_bytes = 64 * 1024;  // topic filters of one session
  std::uint32_t max_retained_messages = 100'000;
  std::uint32_t max_retained_bytes = 256 * 1024 * 1024;
  std::uint32_t congestion_timeout = 5;  // seconds a congested subscriber may hold a publisher
  std::uint32_t max_topic_length = 65535;
  std::uint32_t max_topic_levels = 128;
  std::uint32_t max_keep_alive = 65535;
  std::uint32_t max_session_expiry = 4'294'967'295U;
  std::uint32_t topic_alias_maximum = 64;
  std::uint32_t max_subscriptions_per_client = 10'000;
  std::uint32_t max_write_buffer = 16 * 1024 * 1024;  // bytes queued to one slow socket
  std::uint32_t sys_interval = 10;
  bool allow_anonymous = true;
  std::string anonymous_policy;  // registry policy for anonymous clients; empty: allow all
  bool lifecycle_events = true;
};

struct http_settings {
  std::uint32_t max_connections = 1000;  // HTTP(S) sockets until they upgrade to WebSocket
  std::uint32_t request_timeout = 30;    // seconds to receive one request, headers and body
  std::string metrics = "auto";          // /metrics: auto | token | off
};

struct storage_settings {
  std::string synchronous = "normal";  // SQLite PRAGMA synchronous with WAL
  std::uint32_t commit_interval_ms = 2;
};

// AWS IoT Device Shadow limits. AWS's are the defaults; the size is a common complaint there
// (raising it needs a support ticket), here a setting.
struct shadow_settings {
  std::uint32_t max_state_bytes = 8 * 1024;  // desired + reported of one shadow, after the merge
  std::uint32_t max_named_shadows = 1000;    // per thing (AWS: unlimited)
  std::uint32_t max_shadows = 1'000'000;     // on the server: what clients can make it hold
  std::uint32_t max_in_flight = 10;          // requests of one thing not yet durable (AWS: 10)
};

// Topic rules' actions.
struct rules_settings {
  std::uint32_t max_pending_actions = 1000;  // per rule: http, s3, ... runs not finished
  std::uint32_t http_timeout_ms = 3000;      // one attempt of an http action
};

// A resource declared in the config file as a list of tables: Pub/Sub topics and subscriptions
// ([[pubsub.topics]], [[pubsub.subscriptions]]: created at start when missing, which Google's
// emulator cannot do), time-series databases ([[tsdb.databases]]) and MQTT-to-points mappings
// ([[tsdb.mqtt]]). Their owners check them.
struct declared_resource {
  std::string json;  // its fields as the REST JSON of a Topic / Subscription
  std::string toml;  // as written, for --print-config
  std::string name;  // a named table's ([bridges.<name>]); empty for list items
};

// The Pub/Sub service.
struct pubsub_settings {
  std::string fsync = "always";  // always | interval | never: when a Publish may answer
  std::string auth = "auto";     // auto | required | none: who may use the service
  std::vector<declared_resource> topics;
  std::vector<declared_resource> subscriptions;
};

// The time-series store and its InfluxDB APIs.
struct tsdb_settings {
  std::string wal_fsync = "interval";           // interval | always: when a write may answer 204
  std::uint32_t cache_max_memory_mb = 1024;     // write buffer; past it writes get 503
  std::uint32_t cache_snapshot_memory_mb = 25;  // flush the buffer to partitions past this
  std::uint32_t cache_snapshot_age_s = 600;     // ... or once its oldest point is this old
  std::uint32_t compaction_interval_s = 60;     // retention and compaction of past days
  std::uint32_t max_series_per_database = 1'000'000;  // 0: no limit
  std::uint32_t max_body_size = 25 * 1024 * 1024;     // of one write request, in bytes
  std::uint32_t max_select_point = 50'000'000;        // points one SELECT may read (0: none)
  std::string org;                                    // /api/v2's org: ignored when empty
  std::string auth = "auto";  // auto | required | none: who may use the Influx APIs
  // Where the dashboard API finds devices: a tag of one measurement of one database.
  std::string devices_database = "nimbus";
  std::string devices_measurement = "sensor_reading";
  std::string devices_tag = "device_id";
  // [[tsdb.databases]]: {name, retention}, created at start when missing.
  std::vector<declared_resource> databases;
  // [[tsdb.mqtt]]: topic filters whose JSON payloads become points (tsdb/mqtt_mapping.hpp).
  // None: the default entry, sensor/# to nimbus/sensor_reading tagged by device_id.
  std::vector<declared_resource> mqtt;
};

// Alerts (alerts/): rules over the time-series store's accepted points.
struct alerts_settings {
  bool tutorial_rule = false;                 // enable the tutorial's high_temperature at start
  std::uint32_t max_queued_points = 100'000;  // waiting for the alerts thread; more are dropped
  std::uint32_t max_states = 1'000'000;       // (rule, series) detector states held
  std::uint32_t checkpoint_interval_s = 5;    // detector baselines saved this often
};

// The web dashboard (web/): sign-in sessions and the live stream.
struct dashboard_settings {
  // Loopback peers with a loopback Host on a loopback-only HTTP listener are signed in without a
  // token (as /api/ is open there); never on HTTPS.
  bool loopback_open = true;
  std::uint32_t session_hours = 12;        // a session cookie's life
  std::uint32_t max_stream_clients = 256;  // /api/stream WebSockets at once
  std::uint32_t stream_queue = 1'000;      // updates waiting per stream client; older ones go
  std::string web_dir;                     // serve the front end from here instead (development)
};

struct settings {
  // [bridges.<name>] and [pubsub_bridges.<name>]: MQTT and MQTT <-> Pub/Sub bridges
  // (bridge/bridge_config.hpp checks them).
  std::vector<declared_resource> bridges;
  std::vector<declared_resource> pubsub_bridges;
  std::string data_dir = "./nimbus-data";
  std::string log_level = "info";
  std::uint32_t threads = 0;  // 0: one event loop per core
  std::string region = "us-east-1";
  std::string account = "000000000000";
  std::string endpoint_host = "localhost";
  listener_settings listeners;
  mqtt_settings mqtt;
  http_settings http;
  storage_settings storage;
  shadow_settings shadow;
  rules_settings rules;
  pubsub_settings pubsub;
  tsdb_settings tsdb;
  alerts_settings alerts;
  dashboard_settings dashboard;
};

// Describes one setting for --help, --print-config and validation.
struct setting_description {
  std::string key;   // TOML key, e.g. "mqtt.max_packet_size"
  std::string flag;  // command-line flag without dashes, e.g. "max-packet-size"
  std::string description;
  std::string default_value;
  std::string bounds;  // human-readable range or choice list
};

std::vector<setting_description> describe_settings();

// The value of one setting as text.
std::string setting_value(const settings& s, const std::string& key);

// Sets one setting from text, validating type and bounds. Returns an error message or "".
std::string set_setting(settings& s, const std::string& key, const std::string& value);

// Applies a TOML document. Unknown keys and out-of-range values are errors. Returns "" on success.
std::string apply_toml_file(settings& s, const std::string& path);
std::string apply_toml_text(settings& s, std::string_view text, const std::string& source_name);

// The effective settings as TOML, each with its description, default and bounds as comments.
std::string to_toml(const settings& s);

}  // namespace nimbus::config
