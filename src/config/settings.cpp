#include "config/settings.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <toml++/toml.h>
#include <charconv>
#include <functional>
#include <set>
#include <sstream>
#include <variant>

namespace nimbus::config {

namespace {

struct text_setting {
  std::function<std::string&(settings&)> field;
  std::vector<std::string> choices;  // empty: any text
  // Checks a value beyond `choices`; returns what is wrong with it, or "".
  std::function<std::string(const std::string&)> check = nullptr;
};

// A listener address: "off", or HOST:PORT with an IPv4 address, a bracketed IPv6 address or
// "localhost", and a port 0..65535. Resolved by the server; here only its shape is checked, so
// a typo stops start-up before anything is created.
std::string check_listen_address(const std::string& value) {
  if (value == "off") return {};
  auto colon = value.rfind(':');
  bool ok = colon != std::string::npos && colon > 0 && colon + 1 < value.size() &&
            colon + 6 >= value.size();
  if (ok) {
    unsigned port = 0;
    auto port_text = std::string_view(value).substr(colon + 1);
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    ok = ec == std::errc{} && ptr == port_text.data() + port_text.size() && port <= 65535;
    // The host is an address literal (IPv6 in brackets) or localhost: names are not resolved.
    std::string host = value.substr(0, colon);
    unsigned char parsed[sizeof(in6_addr)];
    bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (bracketed)
      ok = ok && inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), parsed) == 1;
    else
      ok = ok && (host == "localhost" || inet_pton(AF_INET, host.c_str(), parsed) == 1);
  }
  if (ok) return {};
  return fmt::format(
      "expected HOST:PORT, e.g. 127.0.0.1:1883, [::1]:1883, 0.0.0.0:1883 or localhost:1883 "
      "(HOST an IP address or localhost), or off (got '{}')",
      value);
}

struct number_setting {
  std::function<std::uint32_t&(settings&)> field;
  std::uint32_t min;
  std::uint32_t max;
};
struct flag_setting {
  std::function<bool&(settings&)> field;
};

struct entry {
  std::string key;
  std::string flag;
  std::string description;
  std::variant<text_setting, number_setting, flag_setting> kind;
};

const std::vector<entry>& entries() {
  static const std::vector<entry> table = [] {
    std::vector<entry> t;
    auto text = [&](std::string key, std::string flag, std::string desc,
                    std::function<std::string&(settings&)> f,
                    std::vector<std::string> choices = {}) {
      t.push_back({std::move(key), std::move(flag), std::move(desc),
                   text_setting{std::move(f), std::move(choices)}});
    };
    auto address = [&](std::string key, std::string flag, std::string desc,
                       std::function<std::string&(settings&)> f) {
      t.push_back({std::move(key), std::move(flag), std::move(desc),
                   text_setting{std::move(f), {}, check_listen_address}});
    };
    auto number = [&](std::string key, std::string flag, std::string desc,
                      std::function<std::uint32_t&(settings&)> f, std::uint32_t min,
                      std::uint32_t max) {
      t.push_back({std::move(key), std::move(flag), std::move(desc),
                   number_setting{std::move(f), min, max}});
    };
    auto boolean = [&](std::string key, std::string flag, std::string desc,
                       std::function<bool&(settings&)> f) {
      t.push_back({std::move(key), std::move(flag), std::move(desc), flag_setting{std::move(f)}});
    };
    text("server.data_dir", "data-dir",
         "Directory for the database, CA, credentials and endpoints.json",
         [](settings& s) -> std::string& { return s.data_dir; });
    text("server.log_level", "log-level", "Least severe log level written to stderr",
         [](settings& s) -> std::string& { return s.log_level; },
         {"trace", "debug", "info", "warn", "error", "critical", "off"});
    number(
        "server.threads", "threads", "Event loops (0: one per core)",
        [](settings& s) -> std::uint32_t& { return s.threads; }, 0, 256);
    text("server.region", "region", "AWS region used in ARNs and endpoints",
         [](settings& s) -> std::string& { return s.region; });
    text("server.account", "account", "AWS account id used in ARNs",
         [](settings& s) -> std::string& { return s.account; });
    text("server.endpoint_host", "endpoint-host",
         "Host name devices use; in the server certificate and DescribeEndpoint",
         [](settings& s) -> std::string& { return s.endpoint_host; });
    address("listeners.mqtt", "mqtt",
            "Plain MQTT listener (HOST:PORT; localhost = 127.0.0.1 and [::1]; port 0 picks one; "
            "'off' disables)",
            [](settings& s) -> std::string& { return s.listeners.mqtt; });
    address("listeners.mqtts", "mqtts", "MQTT over TLS with client certificates",
            [](settings& s) -> std::string& { return s.listeners.mqtts; });
    address("listeners.http", "http",
            "HTTP listener: APIs, MQTT over WebSocket at /mqtt, /metrics, /healthz",
            [](settings& s) -> std::string& { return s.listeners.http; });
    address("listeners.https", "https",
            "HTTPS listener (same routes as HTTP, device certificates accepted)",
            [](settings& s) -> std::string& { return s.listeners.https; });
    address("listeners.grpc", "grpc",
            "Pub/Sub gRPC listener (served once the Pub/Sub service exists)",
            [](settings& s) -> std::string& { return s.listeners.grpc; });
    number(
        "mqtt.max_packet_size", "max-packet-size", "Largest MQTT packet accepted, in bytes",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_packet_size; }, 64, 268'435'460);
    number(
        "mqtt.receive_maximum", "receive-maximum",
        "Unacknowledged QoS 1/2 PUBLISH a client may send at once",
        [](settings& s) -> std::uint32_t& { return s.mqtt.receive_maximum; }, 1, 65535);
    number(
        "mqtt.max_inflight", "max-inflight",
        "Unacknowledged QoS 1/2 PUBLISH the server sends a client at once",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_inflight; }, 1, 65535);
    number(
        "mqtt.max_queued_messages", "max-queued-messages",
        "Messages queued per session beyond the in-flight window",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_queued_messages; }, 1, 10'000'000);
    text("mqtt.queue_full_policy", "queue-full-policy",
         "What a full session queue does with a new message",
         [](settings& s) -> std::string& { return s.mqtt.queue_full_policy; },
         {"drop-new", "drop-oldest"});
    number(
        "mqtt.max_connections", "max-connections",
        "Simultaneous MQTT clients past CONNECT (one more gets Server busy)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_connections; }, 1, 10'000'000);
    number(
        "mqtt.max_pending_connections", "max-pending-connections",
        "MQTT sockets that have not completed CONNECT; more are closed at accept",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_pending_connections; }, 1,
        10'000'000);
    number(
        "mqtt.max_pending_per_address", "max-pending-per-address",
        "MQTT sockets from one address that have not completed CONNECT",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_pending_per_address; }, 1,
        10'000'000);
    number(
        "mqtt.connect_timeout", "connect-timeout",
        "Seconds from accept (TLS and WebSocket set-up included) to a complete CONNECT",
        [](settings& s) -> std::uint32_t& { return s.mqtt.connect_timeout; }, 1, 3600);
    number(
        "mqtt.max_connect_size", "max-connect-size",
        "Largest CONNECT packet accepted, in bytes (before the client is known)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_connect_size; }, 64, 268'435'460);
    number(
        "mqtt.max_client_id_length", "max-client-id-length",
        "Longest client id, in bytes (AWS IoT: 128; MQTT allows 65535)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_client_id_length; }, 1, 65535);
    number(
        "mqtt.max_sessions", "max-sessions",
        "Sessions, connected and stored; a CONNECT needing one more gets Quota exceeded",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_sessions; }, 1, 100'000'000);
    number(
        "mqtt.persistent_session_expiry", "persistent-session-expiry",
        "Seconds an MQTT 3.1.1 persistent session (clean session 0) outlives its connection "
        "(AWS IoT: 3600; 4294967295 never expires)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.persistent_session_expiry; }, 1,
        4'294'967'295U);
    number(
        "mqtt.max_subscription_bytes", "max-subscription-bytes",
        "Total bytes of one session's topic filters",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_subscription_bytes; }, 64,
        1'073'741'824);
    number(
        "mqtt.max_retained_messages", "max-retained-messages", "Retained messages kept",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_retained_messages; }, 0, 100'000'000);
    number(
        "mqtt.max_retained_bytes", "max-retained-bytes",
        "Total bytes of retained messages (topics and payloads)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_retained_bytes; }, 0, 4'294'967'295U);
    number(
        "mqtt.congestion_timeout", "congestion-timeout",
        "Seconds a subscriber whose queue is full may hold a QoS 1/2 publisher back; then its "
        "queue drops per queue_full_policy",
        [](settings& s) -> std::uint32_t& { return s.mqtt.congestion_timeout; }, 1, 3600);
    number(
        "mqtt.max_topic_length", "max-topic-length", "Longest topic name or filter, in bytes",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_topic_length; }, 1, 65535);
    number(
        "mqtt.max_topic_levels", "max-topic-levels", "Most levels in a topic name or filter",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_topic_levels; }, 1, 65535);
    number(
        "mqtt.max_keep_alive", "max-keep-alive",
        "Longest keep-alive granted, in seconds (MQTT 5 Server Keep Alive)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_keep_alive; }, 1, 65535);
    number(
        "mqtt.max_session_expiry", "max-session-expiry",
        "Longest session expiry granted, in seconds",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_session_expiry; }, 0, 4'294'967'295U);
    number(
        "mqtt.topic_alias_maximum", "topic-alias-maximum",
        "Topic aliases a client may use (0 disables)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.topic_alias_maximum; }, 0, 65535);
    number(
        "mqtt.max_subscriptions_per_client", "max-subscriptions",
        "Subscriptions one session may hold",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_subscriptions_per_client; }, 1,
        10'000'000);
    number(
        "mqtt.max_write_buffer", "max-write-buffer",
        "Bytes queued to one socket before it is treated as a slow reader",
        [](settings& s) -> std::uint32_t& { return s.mqtt.max_write_buffer; }, 4096, 1'073'741'824);
    number(
        "mqtt.sys_interval", "sys-interval", "Seconds between $SYS/broker updates (0 disables)",
        [](settings& s) -> std::uint32_t& { return s.mqtt.sys_interval; }, 0, 86400);
    boolean("mqtt.allow_anonymous", "allow-anonymous",
            "Accept clients without credentials on the plain MQTT listener",
            [](settings& s) -> bool& { return s.mqtt.allow_anonymous; });
    text("mqtt.anonymous_policy", "anonymous-policy",
         "Registry policy evaluated for anonymous clients of the plain listeners (empty: allow "
         "all, local only)",
         [](settings& s) -> std::string& { return s.mqtt.anonymous_policy; });
    boolean("mqtt.lifecycle_events", "lifecycle-events",
            "Publish AWS IoT lifecycle events on $aws/events/presence and subscriptions",
            [](settings& s) -> bool& { return s.mqtt.lifecycle_events; });
    number(
        "http.max_connections", "http-max-connections",
        "Simultaneous HTTP(S) connections (a WebSocket upgraded to MQTT counts as an MQTT "
        "connection instead); more are closed at accept",
        [](settings& s) -> std::uint32_t& { return s.http.max_connections; }, 1, 10'000'000);
    number(
        "http.request_timeout", "http-request-timeout",
        "Seconds to receive one HTTP request, headers and body",
        [](settings& s) -> std::uint32_t& { return s.http.request_timeout; }, 1, 3600);
    text("http.metrics", "metrics",
         "/metrics: auto (open on loopback listeners, bearer token elsewhere), token, off",
         [](settings& s) -> std::string& { return s.http.metrics; }, {"auto", "token", "off"});
    text("storage.synchronous", "storage-synchronous",
         "SQLite synchronous mode (WAL): full survives power loss, normal a process crash",
         [](settings& s) -> std::string& { return s.storage.synchronous; }, {"normal", "full"});
    number(
        "storage.commit_interval_ms", "commit-interval-ms",
        "Longest wait to group durable writes into one commit",
        [](settings& s) -> std::uint32_t& { return s.storage.commit_interval_ms; }, 0, 1000);
    number(
        "shadow.max_state_bytes", "shadow-max-state-bytes",
        "Largest desired + reported of one device shadow, in bytes (AWS: 8192)",
        [](settings& s) -> std::uint32_t& { return s.shadow.max_state_bytes; }, 1024,
        16 * 1024 * 1024);
    number(
        "shadow.max_named_shadows", "shadow-max-named-shadows", "Named shadows one thing may have",
        [](settings& s) -> std::uint32_t& { return s.shadow.max_named_shadows; }, 1, 1'000'000);
    number(
        "shadow.max_shadows", "shadow-max-shadows",
        "Shadows the server holds, deleted ones within their 48 hours included; more are refused",
        [](settings& s) -> std::uint32_t& { return s.shadow.max_shadows; }, 1, 1'000'000'000);
    number(
        "shadow.max_in_flight", "shadow-max-in-flight",
        "Shadow requests of one thing awaiting durability; more are refused with 429 (AWS: 10)",
        [](settings& s) -> std::uint32_t& { return s.shadow.max_in_flight; }, 1, 100'000);
    number(
        "rules.max_pending_actions", "rules-max-pending-actions",
        "Action runs (http, s3, ...) of one rule not finished; more are dropped, counted and "
        "sent to its errorAction",
        [](settings& s) -> std::uint32_t& { return s.rules.max_pending_actions; }, 1, 10'000'000);
    number(
        "rules.http_timeout_ms", "rules-http-timeout-ms",
        "Milliseconds one attempt of a rule's http action may take, connection to response",
        [](settings& s) -> std::uint32_t& { return s.rules.http_timeout_ms; }, 100, 600'000);
    text("pubsub.fsync", "pubsub-fsync",
         "When a Pub/Sub Publish answers: always (after fdatasync: survives power loss), "
         "interval (after write: survives kill -9, synced within 1 s), never",
         [](settings& s) -> std::string& { return s.pubsub.fsync; },
         {"always", "interval", "never"});
    text("pubsub.auth", "pubsub-auth",
         "Who may use Pub/Sub: auto (open on loopback listeners like Google's emulator, elsewhere "
         "a bearer token from <data>/tokens or an ACTIVE client certificate; gRPC then over "
         "TLS), required (credentials on every listener), none (open: a warning at start)",
         [](settings& s) -> std::string& { return s.pubsub.auth; }, {"auto", "required", "none"});
    text("tsdb.wal_fsync", "tsdb-wal-fsync",
         "When a time-series write answers: interval (after write: survives kill -9, synced "
         "within 1 s), always (after fdatasync: survives power loss)",
         [](settings& s) -> std::string& { return s.tsdb.wal_fsync; }, {"interval", "always"});
    number(
        "tsdb.cache_max_memory_mb", "tsdb-cache-max-memory-mb",
        "MiB of time-series points buffered in memory; past it writes get 503 + Retry-After",
        [](settings& s) -> std::uint32_t& { return s.tsdb.cache_max_memory_mb; }, 1, 1'048'576);
    number(
        "tsdb.cache_snapshot_memory_mb", "tsdb-cache-snapshot-memory-mb",
        "MiB of buffered points that start a flush to the compressed day partitions",
        [](settings& s) -> std::uint32_t& { return s.tsdb.cache_snapshot_memory_mb; }, 1,
        1'048'576);
    number(
        "tsdb.cache_snapshot_age_s", "tsdb-cache-snapshot-age-s",
        "Seconds after which buffered points are flushed to partitions however few they are "
        "(InfluxDB's cache-snapshot-write-cold-duration)",
        [](settings& s) -> std::uint32_t& { return s.tsdb.cache_snapshot_age_s; }, 1, 86'400);
    number(
        "tsdb.compaction_interval_s", "tsdb-compaction-interval-s",
        "Seconds between retention passes and compactions of past days' partitions",
        [](settings& s) -> std::uint32_t& { return s.tsdb.compaction_interval_s; }, 1, 86'400);
    number(
        "tsdb.max_series_per_database", "tsdb-max-series-per-database",
        "Series one database may hold; points of more are dropped (0: no limit)",
        [](settings& s) -> std::uint32_t& { return s.tsdb.max_series_per_database; }, 0,
        4'294'967'295U);
    number(
        "tsdb.max_body_size", "tsdb-max-body-size",
        "Bytes of one /write request body, as sent; larger ones get 413",
        [](settings& s) -> std::uint32_t& { return s.tsdb.max_body_size; }, 1024, 1'073'741'824);
    number(
        "tsdb.max_select_point", "tsdb-max-select-point",
        "Points one SELECT may read before it fails (InfluxDB's max-select-point; 0: no limit)",
        [](settings& s) -> std::uint32_t& { return s.tsdb.max_select_point; }, 0, 4'294'967'295U);
    text("tsdb.org", "tsdb-org",
         "The organization /api/v2 requests must name (empty: any, ignored)",
         [](settings& s) -> std::string& { return s.tsdb.org; });
    text("tsdb.auth", "tsdb-auth",
         "Who may use the InfluxDB APIs and /api/: auto (open on loopback listeners, elsewhere a "
         "token from <data>/tokens as Token, Bearer, Basic or u/p), required, none",
         [](settings& s) -> std::string& { return s.tsdb.auth; }, {"auto", "required", "none"});
    text("tsdb.devices_database", "tsdb-devices-database",
         "Where the dashboard API (/api/devices...) reads devices: the database",
         [](settings& s) -> std::string& { return s.tsdb.devices_database; });
    text("tsdb.devices_measurement", "tsdb-devices-measurement",
         "Where the dashboard API reads devices: the measurement",
         [](settings& s) -> std::string& { return s.tsdb.devices_measurement; });
    text("tsdb.devices_tag", "tsdb-devices-tag",
         "The tag naming a device in the dashboard API's measurement",
         [](settings& s) -> std::string& { return s.tsdb.devices_tag; });
    boolean("alerts.tutorial_rule", "alerts-tutorial-rule",
            "Enable the tutorial's alert rule high_temperature (temperature > 35) at start",
            [](settings& s) -> bool& { return s.alerts.tutorial_rule; });
    number(
        "alerts.max_queued_points", "alerts-max-queued-points",
        "Accepted points waiting for the alert rules; past it points skip the rules (counted) "
        "rather than slow ingest",
        [](settings& s) -> std::uint32_t& { return s.alerts.max_queued_points; }, 1'000,
        100'000'000);
    number(
        "alerts.max_states", "alerts-max-states",
        "Detector states (one per rule and series) held; series past it are not watched (counted)",
        [](settings& s) -> std::uint32_t& { return s.alerts.max_states; }, 1, 100'000'000);
    number(
        "alerts.checkpoint_interval_s", "alerts-checkpoint-interval-s",
        "Seconds between saves of the detectors' baselines (pending periods are saved at once)",
        [](settings& s) -> std::uint32_t& { return s.alerts.checkpoint_interval_s; }, 1, 3'600);
    boolean("dashboard.loopback_open", "dashboard-loopback-open",
            "Sign in loopback browsers without a token while HTTP listens on loopback only (never "
            "on HTTPS)",
            [](settings& s) -> bool& { return s.dashboard.loopback_open; });
    number(
        "dashboard.session_hours", "dashboard-session-hours", "Hours a dashboard sign-in lasts",
        [](settings& s) -> std::uint32_t& { return s.dashboard.session_hours; }, 1, 24 * 30);
    number(
        "dashboard.max_stream_clients", "dashboard-max-stream-clients",
        "Live-update WebSockets (/api/stream) open at once",
        [](settings& s) -> std::uint32_t& { return s.dashboard.max_stream_clients; }, 1, 100'000);
    number(
        "dashboard.stream_queue", "dashboard-stream-queue",
        "Updates waiting per live-update client; a slow one loses the oldest (counted)",
        [](settings& s) -> std::uint32_t& { return s.dashboard.stream_queue; }, 10, 1'000'000);
    text("dashboard.web_dir", "web-dir",
         "Serve the dashboard's files from this folder (a vite build) instead of the embedded "
         "ones",
         [](settings& s) -> std::string& { return s.dashboard.web_dir; });
    return t;
  }();
  return table;
}

const entry* find_entry(const std::string& key) {
  for (const auto& e : entries()) {
    if (e.key == key || e.flag == key) return &e;
  }
  return nullptr;
}

std::string value_of(settings& s, const entry& e) {
  return std::visit(
      [&](const auto& k) -> std::string {
        using kind = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<kind, text_setting>)
          return k.field(s);
        else if constexpr (std::is_same_v<kind, number_setting>)
          return std::to_string(k.field(s));
        else
          return k.field(s) ? "true" : "false";
      },
      e.kind);
}

std::string bounds_of(const entry& e) {
  return std::visit(
      [](const auto& k) -> std::string {
        using kind = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<kind, text_setting>) {
          std::string out;
          for (const auto& c : k.choices) out += (out.empty() ? "" : " | ") + c;
          return out;
        } else if constexpr (std::is_same_v<kind, number_setting>) {
          return fmt::format("{}..{}", k.min, k.max);
        } else {
          return "true | false";
        }
      },
      e.kind);
}

std::string apply_table(settings& s, const toml::table& table, const std::string& prefix,
                        const std::string& source) {
  for (const auto& [name, node] : table) {
    std::string key =
        prefix.empty() ? std::string(name.str()) : prefix + "." + std::string(name.str());
    if (key == "bridges" || key == "pubsub_bridges") {
      auto& declared = key == "bridges" ? s.bridges : s.pubsub_bridges;
      const auto* bridges = node.as_table();
      if (bridges == nullptr)
        return fmt::format("{}: '{}' must be tables, each [{}.<name>]", source, key, key);
      for (const auto& [bridge_name, bridge] : *bridges) {
        const auto* item = bridge.as_table();
        if (item == nullptr)
          return fmt::format("{}: '{}.{}' must be a table, [{}.{}]", source, key, bridge_name.str(),
                             key, bridge_name.str());
        std::ostringstream json;
        std::ostringstream text;
        json << toml::json_formatter{*item};
        text << toml::toml_formatter{*item};
        declared.push_back({json.str(), text.str(), std::string(bridge_name.str())});
      }
      continue;
    }
    if (const auto* sub = node.as_table()) {
      if (auto err = apply_table(s, *sub, key, source); !err.empty()) return err;
      continue;
    }
    if (key == "pubsub.topics" || key == "pubsub.subscriptions" || key == "tsdb.mqtt" ||
        key == "tsdb.databases") {
      auto& declared = key == "pubsub.topics"          ? s.pubsub.topics
                       : key == "pubsub.subscriptions" ? s.pubsub.subscriptions
                       : key == "tsdb.mqtt"            ? s.tsdb.mqtt
                                                       : s.tsdb.databases;
      const auto* items = node.as_array();
      for (std::size_t i = 0; items != nullptr && i < items->size(); ++i) {
        const auto* item = (*items)[i].as_table();
        if (item == nullptr) break;
        std::ostringstream json;
        std::ostringstream text;
        json << toml::json_formatter{*item};
        text << toml::toml_formatter{*item};
        declared.push_back({json.str(), text.str(), {}});
      }
      if (items == nullptr || (!items->empty() && !items->is_array_of_tables()))
        return fmt::format("{}: '{}' must be a list of tables, each [[{}]]", source, key, key);
      continue;
    }
    const entry* e = nullptr;
    for (const auto& candidate : entries()) {
      if (candidate.key == key) e = &candidate;
    }
    if (e == nullptr) return fmt::format("{}: unknown setting '{}'", source, key);
    std::string text;
    if (auto v = node.value<std::string>(); v && node.is_string())
      text = *v;
    else if (auto i = node.value<std::int64_t>(); i && node.is_integer())
      text = std::to_string(*i);
    else if (auto b = node.value<bool>(); b && node.is_boolean())
      text = *b ? "true" : "false";
    else
      return fmt::format("{}: '{}' has an unsupported type", source, key);
    if (auto err = set_setting(s, key, text); !err.empty())
      return fmt::format("{}: {}", source, err);
  }
  return {};
}

}  // namespace

std::vector<setting_description> describe_settings() {
  std::vector<setting_description> out;
  settings defaults;
  for (const auto& e : entries()) {
    out.push_back({e.key, e.flag, e.description, value_of(defaults, e), bounds_of(e)});
  }
  return out;
}

std::string setting_value(const settings& s, const std::string& key) {
  const entry* e = find_entry(key);
  if (e == nullptr) return {};
  return value_of(const_cast<settings&>(s), *e);
}

std::string set_setting(settings& s, const std::string& key, const std::string& value) {
  const entry* e = find_entry(key);
  if (e == nullptr) return fmt::format("unknown setting '{}'", key);
  return std::visit(
      [&](const auto& k) -> std::string {
        using kind = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<kind, text_setting>) {
          if (!k.choices.empty() &&
              std::find(k.choices.begin(), k.choices.end(), value) == k.choices.end())
            return fmt::format("'{}' must be one of {} (got '{}')", e->key, bounds_of(*e), value);
          if (k.check) {
            if (auto problem = k.check(value); !problem.empty())
              return fmt::format("'{}': {}", e->key, problem);
          }
          k.field(s) = value;
          return {};
        } else if constexpr (std::is_same_v<kind, number_setting>) {
          std::uint64_t n = 0;
          auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
          if (ec != std::errc{} || ptr != value.data() + value.size())
            return fmt::format("'{}' must be a whole number (got '{}')", e->key, value);
          if (n < k.min || n > k.max)
            return fmt::format("'{}' must be within {}..{} (got {})", e->key, k.min, k.max, n);
          k.field(s) = static_cast<std::uint32_t>(n);
          return {};
        } else {
          if (value == "true" || value == "1")
            k.field(s) = true;
          else if (value == "false" || value == "0")
            k.field(s) = false;
          else
            return fmt::format("'{}' must be true or false (got '{}')", e->key, value);
          return {};
        }
      },
      e->kind);
}

// toml++ reports parse errors by exception; this is the third-party boundary where they stop.
template <class Parse>
std::string apply_parsed(settings& s, const std::string& source, Parse&& parse) {
  try {
    toml::table table = parse();
    return apply_table(s, table, "", source);
  } catch (const toml::parse_error& err) {
    return fmt::format("{}:{}:{}: {}", source, err.source().begin.line, err.source().begin.column,
                       err.description());
  }
}

std::string apply_toml_text(settings& s, std::string_view text, const std::string& source_name) {
  return apply_parsed(s, source_name, [&] { return toml::parse(text, source_name); });
}

std::string apply_toml_file(settings& s, const std::string& path) {
  return apply_parsed(s, path, [&] { return toml::parse_file(path); });
}

std::string to_toml(const settings& s) {
  std::ostringstream out;
  std::string section;
  settings defaults;
  for (const auto& e : entries()) {
    auto dot = e.key.find('.');
    std::string sec = e.key.substr(0, dot);
    std::string name = e.key.substr(dot + 1);
    if (sec != section) {
      out << (section.empty() ? "" : "\n") << "[" << sec << "]\n";
      section = sec;
    }
    std::string value = value_of(const_cast<settings&>(s), e);
    bool quoted = std::holds_alternative<text_setting>(e.kind);
    out << "# " << e.description << " (default " << value_of(defaults, e);
    if (auto b = bounds_of(e); !b.empty()) out << "; " << b;
    out << "; flag --" << e.flag << ")\n";
    out << name << " = " << (quoted ? fmt::format("\"{}\"", value) : value) << "\n";
  }
  for (const auto& [key, declared] :
       {std::pair{"pubsub.topics", &s.pubsub.topics},
        std::pair{"pubsub.subscriptions", &s.pubsub.subscriptions},
        std::pair{"tsdb.databases", &s.tsdb.databases}, std::pair{"tsdb.mqtt", &s.tsdb.mqtt}})
    for (const auto& resource : *declared) out << "\n[[" << key << "]]\n" << resource.toml << "\n";
  for (const auto& [key, declared] :
       {std::pair{"bridges", &s.bridges}, std::pair{"pubsub_bridges", &s.pubsub_bridges}})
    for (const auto& bridge : *declared)
      out << "\n[" << key << "." << bridge.name << "]\n" << bridge.toml << "\n";
  return out.str();
}

}  // namespace nimbus::config
