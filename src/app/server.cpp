#include "app/server.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <algorithm>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "alerts/service.hpp"
#include "app/pubsub_port.hpp"
#include "bridge/bridge_config.hpp"
#include "bridge/bridges_api.hpp"
#include "bridge/service.hpp"
#include "broker/broker.hpp"
#include "broker/connection.hpp"
#include "broker/session_store.hpp"
#include "core/clock.hpp"
#include "core/json_string.hpp"
#include "core/log.hpp"
#include "iot/aws_http.hpp"
#include "iot/control_plane.hpp"
#include "iot/data_plane.hpp"
#include "iot/device_authorizer.hpp"
#include "mqtt/topic.hpp"
#include "net/address.hpp"
#include "net/http_server.hpp"
#include "net/io_pool.hpp"
#include "net/listener.hpp"
#include "net/streams.hpp"
#include "net/tls_context.hpp"
#include "pubsub/grpc_server.hpp"
#include "pubsub/rest.hpp"
#include "pubsub/service.hpp"
#include "registry/certificate_authority.hpp"
#include "registry/credentials.hpp"
#include "registry/registry.hpp"
#include "registry/tokens.hpp"
#include "registry/x509.hpp"
#include "rules/engine.hpp"
#include "shadow/service.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"
#include "tsdb/dashboard_api.hpp"
#include "tsdb/database_entry.hpp"
#include "tsdb/influx_http.hpp"
#include "tsdb/json_fields.hpp"
#include "tsdb/mqtt_mapping.hpp"
#include "tsdb/store.hpp"
#include "web/assets.hpp"
#include "web/session_routes.hpp"
#include "web/sessions.hpp"
#include "web/stream_hub.hpp"

namespace nimbus::app {

namespace asio = boost::asio;

namespace {

// One server per data directory: an exclusive flock on `<data>/lock`, held until the process
// ends (the kernel drops it after kill -9 too), taken before anything in the directory is
// touched. The file holds the owner's pid for the message a second server prints.
class data_directory_lock {
 public:
  explicit data_directory_lock(const std::filesystem::path& dir) {
    auto path = dir / "lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw std::runtime_error("cannot open " + path.string() +
                               " (--data-dir): " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char pid[32] = {};
      auto n = ::pread(fd_, pid, sizeof(pid) - 1, 0);
      std::string owner = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "?";
      while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
      ::close(fd_);
      throw std::runtime_error("data directory in use by nimbus pid " + owner + " (" +
                               dir.string() + "); stop it or choose another --data-dir");
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0)
      spdlog::warn("lock_file_not_written path={} error=\"{}\"", path.string(),
                   std::strerror(errno));
  }
  ~data_directory_lock() { ::close(fd_); }
  data_directory_lock(const data_directory_lock&) = delete;
  data_directory_lock& operator=(const data_directory_lock&) = delete;

 private:
  int fd_ = -1;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Creates the data directory, naming the flag when that fails.
void create_data_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("cannot create --data-dir " + dir.string() + ": " + ec.message());
}

// A listener that could not bind, with the way out a new user needs.
std::string bind_failure(const std::string& name, const std::string& address,
                         const boost::system::system_error& e) {
  std::string message = "cannot listen on " + address + " (--" + name + "): " + e.code().message();
  if (e.code() == asio::error::address_in_use) {
    auto colon = address.rfind(':');
    unsigned port = 0;
    std::from_chars(address.data() + colon + 1, address.data() + address.size(), port);
    message += fmt::format(
        "; another program (another nimbus, a mosquitto service?) holds the port: choose "
        "another, e.g. --{} {}:{}, or disable the listener with --{} off",
        name, address.substr(0, colon), port + 1, name);
  }
  return message;
}

// Whether a listener binds loopback addresses only (then /metrics needs no token).
bool is_loopback_only(const std::string& address) {
  auto endpoints = net::listen_endpoints(address);
  return !endpoints.empty() && std::all_of(endpoints.begin(), endpoints.end(),
                                           [](const auto& e) { return e.address().is_loopback(); });
}

// Repeats `work` every second on `ctx` until the timer is cancelled.
void every_second(asio::steady_timer& timer, std::function<void()> work) {
  timer.expires_after(std::chrono::seconds(1));
  timer.async_wait([&timer, work = std::move(work)](boost::system::error_code ec) mutable {
    if (ec) return;
    work();
    every_second(timer, std::move(work));
  });
}

// The MQTT-to-points mappings: [[tsdb.mqtt]] entries, else the default one. A bad entry stops
// the start, naming it.
std::vector<tsdb::mqtt_mapping> mqtt_mappings_of(const config::tsdb_settings& settings) {
  if (settings.mqtt.empty()) return {tsdb::mqtt_mapping{}};
  std::vector<tsdb::mqtt_mapping> out;
  for (std::size_t i = 0; i < settings.mqtt.size(); ++i) {
    std::string error;
    auto mapping = tsdb::parse_mqtt_mapping(settings.mqtt[i].json, error);
    if (mapping && !mqtt::is_valid_topic_filter(mapping->filter))
      error = "filter \"" + mapping->filter + "\" is not a valid MQTT topic filter";
    if (!error.empty())
      throw std::runtime_error(
          fmt::format("the config's [[tsdb.mqtt]] entry {}: {}", i + 1, error));
    out.push_back(std::move(*mapping));
  }
  return out;
}

// The [[tsdb.databases]] entries; a bad one stops the start, naming it.
std::vector<tsdb::database_entry> database_entries_of(const config::tsdb_settings& settings) {
  std::vector<tsdb::database_entry> out;
  for (std::size_t i = 0; i < settings.databases.size(); ++i) {
    std::string error;
    auto entry = tsdb::parse_database_entry(settings.databases[i].json, error);
    if (!entry)
      throw std::runtime_error(
          fmt::format("the config's [[tsdb.databases]] entry {}: {}", i + 1, error));
    out.push_back(std::move(*entry));
  }
  return out;
}

// Creates the [[tsdb.databases]] that are missing and sets the default policy's duration of
// those that exist to the one configured; waits until that is durable.
void declare_databases(tsdb::store& store, const std::vector<tsdb::database_entry>& entries) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& entry = entries[i];
    std::promise<std::optional<std::string>> done;
    auto outcome = done.get_future();
    const auto current = store.policy(entry.name, "");
    if (!current) {
      store.create_database(entry.name, entry.policy, [&done](std::optional<std::string> e) {
        done.set_value(std::move(e));
      });
    } else if (current->duration_ns != entry.policy.duration_ns) {
      store.alter_retention_policy(
          entry.name, current->name, entry.policy.duration_ns, std::nullopt, std::nullopt, false,
          [&done](std::optional<std::string> e) { done.set_value(std::move(e)); });
    } else {
      continue;
    }
    if (auto problem = outcome.get())
      throw std::runtime_error(fmt::format("the config's [[tsdb.databases]] entry {} ({}): {}",
                                           i + 1, entry.name, *problem));
  }
}

}  // namespace

int serve(const config::settings& settings) {
  namespace fs = std::filesystem;
  const fs::path data_dir = settings.data_dir;
  // Every listener address resolves before anything is created.
  for (const auto& [flag, address] :
       {std::pair{"mqtt", settings.listeners.mqtt}, std::pair{"mqtts", settings.listeners.mqtts},
        std::pair{"http", settings.listeners.http}, std::pair{"https", settings.listeners.https}}) {
    if (!net::is_off(address) && net::listen_endpoints(address).empty())
      throw std::runtime_error(std::string("--") + flag + " " + address +
                               ": expected HOST:PORT, e.g. 127.0.0.1:1883");
  }
  create_data_directory(data_dir);
  data_directory_lock directory_lock(data_dir);  // before anything in it is touched
  // A stale one (after kill -9) is replaced atomically once the listeners are up.

  // Identity: CA, server certificate, API credentials, API tokens.
  const bool ca_created = !fs::exists(data_dir / "ca" / "root-CA.crt");
  const bool credentials_created = !fs::exists(data_dir / "credentials");
  auto ca = registry::certificate_authority::open_or_create((data_dir / "ca").string());
  std::vector<std::string> hosts{"localhost", "127.0.0.1", "::1", settings.endpoint_host};
  auto server_cert = ca.issue_server(settings.endpoint_host, hosts, 825);
  const auto server_cert_path = (data_dir / "ca" / "server.crt").string();
  const auto server_key_path = (data_dir / "ca" / "server.key").string();
  registry::write_file_atomically(server_cert_path, server_cert.certificate_pem, 0644);
  registry::write_file_atomically(server_key_path, server_cert.private_key_pem, 0600);
  auto credentials = registry::open_or_create_credentials((data_dir / "credentials").string());
  bool tokens_created = false;
  auto tokens =
      registry::api_tokens::open_or_create((data_dir / "tokens").string(), tokens_created);
  if (ca_created)
    spdlog::info(
        "created what=\"certificate authority\" path={} note=\"devices trust it as "
        "their AmazonRootCA1.pem; also served at /ca.crt\"",
        ca.certificate_path());
  spdlog::info("created what=\"server certificate\" path={} hosts=\"localhost 127.0.0.1 ::1 {}\"",
               server_cert_path, settings.endpoint_host);
  if (credentials_created)
    spdlog::info(
        "created what=\"API credentials\" path={} note=\"aws CLI and boto3 sign with "
        "them: export AWS_SHARED_CREDENTIALS_FILE={}\"",
        (data_dir / "credentials").string(), (data_dir / "credentials").string());
  if (tokens_created)
    spdlog::info(
        "created what=\"API tokens\" path={} note=\"Authorization: Bearer TOKEN (Influx: Token "
        "TOKEN) for "
        "/metrics, Pub/Sub and the InfluxDB APIs off loopback\"",
        (data_dir / "tokens").string());

  // Storage; the registry and the broker restored from it.
  const auto db_path = (data_dir / "nimbus.db").string();
  core::system_clock clock;
  registry::registry devices("arn:aws:iot:" + settings.region + ":" + settings.account + ":",
                             settings.account, ca, clock);
  {
    storage::database db(db_path, settings.storage.synchronous);
    broker::session_store::migrate(db);
    registry::registry::migrate(db);
    shadow::service::migrate(db);
    rules::engine::migrate(db);
    pubsub::service::migrate(db);
    tsdb::store::migrate(db);
    bridge::bridges_api::migrate(db);
    alerts::service::migrate(db);
    devices.load(db);
  }
  storage::write_queue writer(db_path, settings.storage.synchronous,
                              std::chrono::milliseconds(settings.storage.commit_interval_ms));
  devices.attach_store(writer);
  broker::session_store store(writer);
  iot::device_authorizer auth(devices, settings.mqtt.allow_anonymous,
                              settings.mqtt.anonymous_policy);
  if (!settings.mqtt.anonymous_policy.empty() &&
      !devices.find_policy(settings.mqtt.anonymous_policy)) {
    spdlog::warn(
        "anonymous_policy_missing policy={} effect=\"anonymous clients are refused "
        "until it is created\"",
        settings.mqtt.anonymous_policy);
  }
  broker::broker mqtt_broker(settings.mqtt, clock, auth, &store);
  // Device shadows: on the broker's bus, before any client can publish to them.
  shadow::service shadows(mqtt_broker, &writer, clock, settings.shadow);
  // Pub/Sub: topics' logs under <data>/pubsub, metadata and cursors in the database. Before the
  // rules engine, whose kinesis action publishes to it.
  pubsub::service_settings pubsub_settings;
  pubsub_settings.dir = data_dir / "pubsub";
  pubsub_settings.fsync = settings.pubsub.fsync == "interval" ? seglog::fsync_policy::interval
                          : settings.pubsub.fsync == "never"  ? seglog::fsync_policy::never
                                                              : seglog::fsync_policy::always;
  pubsub::service pubsub_service(&writer, clock, pubsub_settings);
  // Alerts: rules over every point the time-series store accepts, on a thread of their own;
  // webhooks on a loop of their own (declared first: it outlives the service's requests).
  net::io_pool alerts_pool(1);
  alerts::service_settings alert_settings;
  alert_settings.engine.default_database = settings.tsdb.devices_database;
  alert_settings.engine.device_tag = settings.tsdb.devices_tag;
  alert_settings.engine.max_states = settings.alerts.max_states;
  alert_settings.tutorial_rule = settings.alerts.tutorial_rule;
  alert_settings.max_queued_points = settings.alerts.max_queued_points;
  alert_settings.checkpoint_interval = std::chrono::seconds(settings.alerts.checkpoint_interval_s);
  alerts::service alert_service(mqtt_broker, writer, clock, &devices, &pubsub_service,
                                alerts_pool.at(0), alert_settings);
  {
    storage::database db(db_path, settings.storage.synchronous);
    alert_service.restore(db);
  }
  // The time-series store: its WAL and day partitions under <data>/tsdb, metadata in the
  // database. Opening replays the WAL, so it may take a moment after a crash.
  tsdb::store_settings tsdb_settings;
  tsdb_settings.dir = data_dir / "tsdb";
  tsdb_settings.wal_fsync = settings.tsdb.wal_fsync == "always" ? seglog::fsync_policy::always
                                                                : seglog::fsync_policy::interval;
  tsdb_settings.cache_max_memory = std::size_t{settings.tsdb.cache_max_memory_mb} << 20;
  tsdb_settings.cache_snapshot_memory = std::size_t{settings.tsdb.cache_snapshot_memory_mb} << 20;
  tsdb_settings.max_series_per_database = settings.tsdb.max_series_per_database;
  tsdb_settings.cache_snapshot_age = std::chrono::seconds(settings.tsdb.cache_snapshot_age_s);
  tsdb_settings.housekeeping_interval = std::chrono::seconds(settings.tsdb.compaction_interval_s);
  auto time_series = [&] {
    storage::database db(db_path, settings.storage.synchronous);
    return std::make_unique<tsdb::store>(writer, db, clock, tsdb_settings);
  }();
  // The dashboard's live updates (/api/stream): sampled bridges and metrics on the alerts loop.
  web::stream_settings stream_settings;
  stream_settings.max_clients = settings.dashboard.max_stream_clients;
  stream_settings.queue = settings.dashboard.stream_queue;
  stream_settings.database = settings.tsdb.devices_database;
  stream_settings.measurement = settings.tsdb.devices_measurement;
  stream_settings.device_tag = settings.tsdb.devices_tag;
  web::stream_hub live_updates(stream_settings, NIMBUS_VERSION, alerts_pool.at(0));
  alert_service.set_event_listener([&live_updates](std::string_view event, std::string alert) {
    live_updates.on_alert(event, alert);
  });
  // Every durable batch goes past the alert rules (the service copies what they watch and
  // returns at once: ingest never waits for alerts) and to the dashboards watching.
  time_series->set_observer([&alert_service, &live_updates](const tsdb::written_batch& batch) {
    alert_service.observe(batch);
    live_updates.observe(batch);
  });
  const auto declared_databases = database_entries_of(settings.tsdb);
  // Before the first housekeeping pass, which would otherwise expire rollups with their points.
  for (const auto& entry : declared_databases)
    time_series->set_rollup_retention(entry.name, entry.rollups);
  time_series->start();
  alert_service.start();
  declare_databases(*time_series, declared_databases);
  // Queries (InfluxQL, Flux, the dashboard API) run here, off the HTTP loops: one thread per
  // core, and as many waiting per thread as a dashboard's panels send at once.
  const std::size_t query_threads = std::max(1U, std::thread::hardware_concurrency());
  tsdb::query_runner tsdb_queries(query_threads, 64 * query_threads);
  // Topic rules: on the bus too, each enabled rule subscribed before any client can publish.
  rules::engine_settings rule_settings;
  rule_settings.max_pending_actions = settings.rules.max_pending_actions;
  rule_settings.actions.objects_dir = data_dir / "objects";
  rule_settings.actions.http_timeout = std::chrono::milliseconds(settings.rules.http_timeout_ms);
  rules::engine rules_engine(mqtt_broker, &writer, clock, settings.account, rule_settings);
  // kinesis: streamName is a topic of the default project, partitionKey its ordering key.
  rules_engine.action_runtime().send_streams_to(
      [&pubsub_service](rules::actions::stream_record record, rules::actions::completion done) {
        auto stream = record.stream;
        pubsub_service.publish_record(
            record.stream, std::move(record.data), std::move(record.partition_key),
            [stream, done = std::move(done)](const pubsub::status& outcome) {
              if (outcome.ok()) return done(std::nullopt);
              done(rules::actions::failure{"KinesisAction", stream, outcome.message});
            });
      });
  // timestream: databaseName and tableName are the database and measurement, the dimensions
  // its tags, the SELECT output's numeric fields its fields.
  rules_engine.action_runtime().send_timestream_to(
      [&time_series](rules::actions::timestream_record record, rules::actions::completion done) {
        tsdb::point point;
        point.measurement = record.table;
        point.tags = std::move(record.dimensions);
        std::sort(point.tags.begin(), point.tags.end());
        tsdb::json_field_options numbers_only;
        numbers_only.include_booleans = false;
        numbers_only.include_strings = false;
        for (const auto& [name, value] : point.tags) numbers_only.skip.push_back(name);
        tsdb::json_fields(record.output, point.fields, numbers_only);
        point.timestamp_ns = record.time_ns;
        const auto table = record.table;
        if (point.fields.empty())
          return done(rules::actions::failure{"TimestreamAction", table,
                                              "The rule's output has no numeric value to store"});
        std::vector<tsdb::point> points;
        points.push_back(std::move(point));
        time_series->write(
            record.database, "", std::move(points),
            [table, done = std::move(done)](const tsdb::write_outcome& outcome) {
              if (outcome.refusal == tsdb::write_refusal::none && outcome.dropped == 0)
                return done(std::nullopt);
              done(rules::actions::failure{"TimestreamAction", table, outcome.message});
            });
      });
  // MQTT to time series: [[tsdb.mqtt]] entries, or by default the tutorial's sensor/# payloads
  // in nimbus/sensor_reading, tagged by device_id.
  std::vector<broker::bus_subscription> tsdb_ingest;
  for (const auto& mapping : mqtt_mappings_of(settings.tsdb)) {
    tsdb_ingest.push_back(mqtt_broker.subscribe_service(
        mapping.filter, [&time_series, &clock, mapping](const broker::message_ptr& msg,
                                                        const broker::client_identity*) {
          std::string why;
          auto point = tsdb::map_message(mapping, msg->topic, msg->payload,
                                         clock.unix_millis() * 1'000'000, why);
          if (!point) {
            static core::log_limiter skipped(5);
            core::warn_limited(skipped,
                               "tsdb_mqtt_message_skipped topic={} reason=\"{}\" "
                               "similar_lines_suppressed={}",
                               msg->topic, why);
            return;
          }
          std::vector<tsdb::point> points;
          points.push_back(std::move(*point));
          time_series->write(
              mapping.database, "", std::move(points),
              [topic = msg->topic](const tsdb::write_outcome& outcome) {
                if (outcome.refusal == tsdb::write_refusal::none && outcome.dropped == 0) return;
                static core::log_limiter refused(5);
                core::warn_limited(refused,
                                   "tsdb_mqtt_point_refused topic={} reason=\"{}\" "
                                   "similar_lines_suppressed={}",
                                   topic, outcome.message);
              });
        }));
  }
  {
    storage::database db(db_path, settings.storage.synchronous);
    mqtt_broker.restore(db);
    shadows.restore(db);
    rules_engine.restore(db);
    pubsub_service.restore(db);
  }
  pubsub_service.start();
  {
    const auto json_of = [](const std::vector<config::declared_resource>& declared) {
      std::vector<std::string> out;
      for (const auto& resource : declared) out.push_back(resource.json);
      return out;
    };
    if (auto problem = pubsub_service.declare(json_of(settings.pubsub.topics),
                                              json_of(settings.pubsub.subscriptions));
        !problem.empty())
      throw std::runtime_error("the config's Pub/Sub resources: " + problem);
  }
  shadows.start();
  rules_engine.read_shadows_from([&shadows](std::string_view thing, std::string_view shadow) {
    return shadows.current_document(thing, shadow);
  });
  rules_engine.start();
  writer.drain();
  // Deleting a thing deletes its shadows.
  devices.on_thing_deleted([&shadows](const std::string& name, storage::ticket deleted_by) {
    shadows.delete_thing(name, deleted_by);
  });
  // A certificate leaving ACTIVE (or deleted) ends its connections at once.
  devices.on_certificate_disabled([&mqtt_broker](const std::string& id) {
    auto cut = mqtt_broker.disconnect_if(
        [&id](const broker::client_identity& who) {
          return who.certificate && who.certificate->sha256_hex == id;
        },
        mqtt::reason_code::not_authorized);
    spdlog::info("certificate_disabled id={} connections_closed={}", id, cut);
  });

  // Declared before the loops: open HTTP sessions, destroyed with the loops, give their slots
  // back to it.
  net::connection_limit http_connections(settings.http.max_connections);
  std::size_t loops =
      settings.threads != 0 ? settings.threads : std::max(1U, std::thread::hardware_concurrency());
  net::io_pool pool(loops);

  // Bridges ([bridges.<name>]): their queues under <data>/bridges, links on the loops. main()
  // checked the tables against the file; here their files and queues are opened.
  // The links on a loop of their own: a link is one connection carrying what many devices
  // publish, which on a shared loop waited its turn behind all of them. Declared before the
  // service, so it outlives the links' timers.
  net::io_pool bridge_pool(1);
  bridge::service bridges(mqtt_broker, clock, data_dir / "bridges");
  bridge::parse_context bridge_context;
  {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) bridge_context.hostname = host;
  }
  for (std::size_t i = 0; i < settings.bridges.size(); ++i) {
    const auto& declared = settings.bridges[i];
    auto parsed = bridge::parse_mqtt_bridge(declared.name, declared.json, bridge_context);
    if (auto* error = std::get_if<bridge::config_error>(&parsed))
      throw std::runtime_error("the config's " + error->text());
    auto& config = std::get<bridge::mqtt_bridge>(parsed);
    bridges.add(std::move(config), bridge_pool.at(0));
  }
  // [pubsub_bridges.<name>]: the tutorial's MQTT <-> Pub/Sub bridges (section 4).
  for (const auto& declared : settings.pubsub_bridges) {
    auto parsed = bridge::parse_pubsub_bridge(declared.name, declared.json);
    if (auto* error = std::get_if<bridge::config_error>(&parsed))
      throw std::runtime_error("the config's " + error->text());
    bridges.add(std::get<bridge::pubsub_bridge>(std::move(parsed)), &pubsub_service,
                bridge_pool.at(0));
  }

  auto mqtt_tls = net::make_server_tls_context(
      server_cert_path, server_key_path, ca.certificate_path(), net::client_certificates::required);
  auto https_tls = net::make_server_tls_context(
      server_cert_path, server_key_path, ca.certificate_path(), net::client_certificates::optional);

  // Dashboard sign-in: its session cookie stands in for SigV4 and tokens on every API below.
  web::session_settings session_settings;
  session_settings.loopback_open = settings.dashboard.loopback_open;
  session_settings.lifetime = std::chrono::hours(settings.dashboard.session_hours);
  web::sessions dashboard_sessions(tokens, credentials, clock, session_settings);
  // `changes`: the route changes something even if its method does not say so (InfluxQL's
  // DROP over GET /query).
  auto signed_in = [&dashboard_sessions](const net::http_request& request, bool changes = false) {
    return dashboard_sessions.authorize(request, changes).has_value();
  };

  net::http_router router;
  router.add("GET", "/healthz", [](const net::http_request&) {
    return net::http_response{200, "application/json", {}, R"({"status":"ok"})"};
  });
  if (settings.http.metrics != "off") {
    const bool always_token = settings.http.metrics == "token";
    router.add(
        "GET", "/metrics",
        [&mqtt_broker, &auth, &shadows, &rules_engine, &pubsub_service, &time_series, &tokens,
         &bridges, &alert_service, &live_updates, always_token,
         signed_in](const net::http_request& request) {
          // Open to local scrapers; anyone else needs a token (<data>/tokens) or a dashboard
          // session.
          if ((always_token || !request.loopback_listener) &&
              !tokens.check_bearer(request.header("authorization")) && !signed_in(request)) {
            return net::http_response{
                401,
                "application/json",
                {{"WWW-Authenticate", R"(Bearer realm="nimbus")"}},
                R"json({"message":"/metrics needs Authorization: Bearer TOKEN (see <data>/tokens)"})json"};
          }
          return net::http_response{
              200,
              "text/plain; version=0.0.4",
              {},
              mqtt_broker.prometheus_text() + auth.prometheus_text() + shadows.prometheus_text() +
                  rules_engine.prometheus_text() + pubsub_service.prometheus_text() +
                  time_series->prometheus_text() + bridges.prometheus_text() +
                  alert_service.prometheus_text() + live_updates.prometheus_text()};
        });
  }
  // The CA devices trust (the tutorial's AmazonRootCA1.pem), for devices on the LAN.
  router.add("GET", "/ca.crt", [pem = read_file(ca.certificate_path())](const net::http_request&) {
    return net::http_response{200,
                              "application/x-pem-file",
                              {{"Content-Disposition", R"(attachment; filename="root-CA.crt")"}},
                              pem};
  });
  iot::aws_http aws(credentials, writer, settings.region, NIMBUS_VERSION);
  aws.accept_sessions([signed_in](const net::http_request& request) { return signed_in(request); });
  aws.answer_unknown_routes(router);
  // Stable for the account and not guessable without its secret key.
  iot::control_plane control(
      devices, rules_engine, aws, settings.endpoint_host,
      registry::sha256_hex("nimbus-registration-code:" + credentials.secret_access_key));
  control.install(router);
  iot::data_plane data(mqtt_broker, auth, aws, writer, shadows);
  data.install(router);
  // Pub/Sub's credentials (pubsub.auth): `auto` leaves loopback listeners open, as Google's
  // emulator is, and elsewhere demands a bearer token from <data>/tokens or an ACTIVE client
  // certificate (HTTPS, or TLS on the gRPC port); `required` demands them on every listener;
  // `none` opens everything. REST is served on the HTTP(S) listeners and on the Pub/Sub port,
  // whose router also answers `GET /` with "Ok".
  const std::string& pubsub_access = settings.pubsub.auth;
  if (pubsub_access == "none")
    spdlog::warn(
        "pubsub_auth_disabled setting=pubsub.auth value=none note=\"anyone who reaches a "
        "listener can use Pub/Sub\"");
  const auto pubsub_unauthenticated = pubsub::status::error(
      pubsub::code::unauthenticated,
      "Pub/Sub needs Authorization: Bearer TOKEN (see <data>/tokens) or an ACTIVE client "
      "certificate here.");
  auto pubsub_auth = [&tokens, &auth, &pubsub_access, &pubsub_unauthenticated, signed_in](
                         const net::http_request& request) -> std::optional<net::http_response> {
    // Open on loopback to local programs; a page of another site a local browser shows may
    // read (CORS decides what it sees) but not change anything.
    const bool is_change = request.method != "GET" && request.method != "HEAD";
    if (pubsub_access == "none" ||
        (pubsub_access == "auto" && request.loopback_listener &&
         !(is_change && web::is_from_another_site(request))) ||
        tokens.check_bearer(request.header("authorization")) || signed_in(request) ||
        (request.certificate && auth.certificate_refusal(request.certificate->sha256_hex).empty()))
      return std::nullopt;
    return pubsub::rest_error(pubsub_unauthenticated);
  };
  pubsub::add_rest_routes(router, pubsub_service, pubsub_auth);
  // The InfluxDB APIs and the dashboard API (tsdb.auth): `auto` leaves loopback listeners open,
  // like plain MQTT, and elsewhere wants a token from <data>/tokens (read-write to write) however
  // the client sends it.
  const std::string& tsdb_access = settings.tsdb.auth;
  if (tsdb_access == "none")
    spdlog::warn(
        "tsdb_auth_disabled setting=tsdb.auth value=none note=\"anyone who reaches a listener "
        "may read and write time series\"");
  auto tsdb_auth = [&tokens, &tsdb_access, signed_in](
                       const net::http_request& request,
                       bool write) -> std::optional<net::http_response> {
    // Open on loopback to local programs and, for reads, to pages elsewhere (the tutorial's
    // front end calls /api/devices across origins, hence the CORS); a change from a page of
    // another site that a local browser shows is refused (CSRF).
    if (tsdb_access == "none" ||
        (tsdb_access == "auto" && request.loopback_listener &&
         !(write && web::is_from_another_site(request))) ||
        signed_in(request, write))
      return std::nullopt;
    for (const auto& token : tsdb::influx_credentials(request)) {
      const auto scope = tokens.check_token(token);
      if (scope && (!write || *scope == registry::token_scope::read_write)) return std::nullopt;
    }
    if (request.path.starts_with("/api/v2/")) return tsdb::influx_v2_unauthorized();
    if (request.path.starts_with("/api/")) return tsdb::dashboard_unauthorized();
    return tsdb::influx_v1_unauthorized();
  };
  tsdb::influx_http_settings influx_settings;
  influx_settings.max_body_size = settings.tsdb.max_body_size;
  influx_settings.org = settings.tsdb.org;
  influx_settings.limits.max_select_point = settings.tsdb.max_select_point == 0
                                                ? std::numeric_limits<std::size_t>::max()
                                                : settings.tsdb.max_select_point;
  influx_settings.runner = &tsdb_queries;
  tsdb::add_influx_routes(router, *time_series, tsdb_auth, influx_settings, clock);
  // The tutorial's dashboard API (§5.2), under the same access rule.
  tsdb::dashboard_settings dashboard;
  dashboard.database = settings.tsdb.devices_database;
  dashboard.measurement = settings.tsdb.devices_measurement;
  dashboard.device_tag = settings.tsdb.devices_tag;
  dashboard.runner = &tsdb_queries;
  dashboard.is_online = [&mqtt_broker](const std::string& device) {
    return mqtt_broker.is_connected(device);
  };
  dashboard.open_alerts_by_device = [&alert_service] { return alert_service.open_by_device(); };
  tsdb::add_dashboard_routes(router, *time_series, tsdb_auth, dashboard, clock);
  // /api/bridges, under the rule of the rest of /api/ (tsdb.auth, as the dashboard's). The
  // stored bridges join the file's here, before the links start; a name the file uses is the
  // file's.
  bridge::bridges_api_options bridge_api_options;
  bridge_api_options.context = bridge_context;
  bridge_api_options.pick_loop = [&bridge_pool]() -> asio::io_context& {
    return bridge_pool.at(0);
  };
  bridge::bridges_api bridge_routes(bridges, writer, clock, tsdb_auth,
                                    std::move(bridge_api_options));
  {
    storage::database db(db_path, settings.storage.synchronous);
    bridge_routes.restore(db);
  }
  bridge_routes.install(router);
  // /api/alert-rules and /api/alerts, under the rule of the rest of /api/.
  // Who acknowledged or cleared: the dashboard's principal ("token", "access-key:<id>",
  // "loopback"), else "api".
  alert_service.install(router, tsdb_auth, [&dashboard_sessions](const net::http_request& r) {
    auto who = dashboard_sessions.identify(r);
    return who ? "dashboard:" + who->name : std::string();
  });
  // The web dashboard: its files at /, sign-in, the home page's overview and the live stream.
  web::add_asset_routes(router, settings.dashboard.web_dir);
  std::map<std::string, std::string> bound;  // listeners by name, once bound
  auto overview = [&] {
    boost::json::object listeners;
    for (const auto& [name, address] : bound) listeners[name] = address;
    const auto registered = devices.count();
    std::size_t open_alerts = 0;
    for (const auto& [device, n] : alert_service.open_by_device()) open_alerts += n;
    std::set<std::string> device_ids;
    for (const auto& series :
         time_series->series(settings.tsdb.devices_database, settings.tsdb.devices_measurement))
      for (const auto& [key, value] : series.tags)
        if (key == settings.tsdb.devices_tag) device_ids.insert(value);
    boost::json::object counts{
        {"things", registered.things},
        {"certificates", registered.certificates},
        {"policies", registered.policies},
        {"connected_clients", mqtt_broker.metrics().clients_connected.load()},
        {"devices", device_ids.size()},
        {"open_alerts", open_alerts},
        {"bridges", bridge_routes.list_json().size()},
    };
    boost::json::object body{
        {"version", NIMBUS_VERSION},
        {"region", settings.region},
        {"account", settings.account},
        {"listeners", std::move(listeners)},
        {"paths",
         {{"data_dir", fs::absolute(data_dir).string()},
          {"ca", fs::absolute(ca.certificate_path()).string()},
          {"credentials", fs::absolute(data_dir / "credentials").string()},
          {"tokens", fs::absolute(data_dir / "tokens").string()}}},
        {"counts", std::move(counts)},
        {"devices",
         {{"database", settings.tsdb.devices_database},
          {"measurement", settings.tsdb.devices_measurement},
          {"tag", settings.tsdb.devices_tag}}},
        {"pubsub_project", pubsub_settings.default_project},
    };
    return boost::json::serialize(body);
  };
  web::add_session_routes(router, dashboard_sessions, overview, live_updates);
  live_updates.set_sources(
      [&bridge_routes] { return boost::json::serialize(bridge_routes.list_json()); },
      [&mqtt_broker, &time_series] {
        const auto& m = mqtt_broker.metrics();
        boost::json::object figures{
            {"clients_connected", m.clients_connected.load()},
            {"connections_total", m.connections_total.load()},
            {"messages_received", m.messages_received.load()},
            {"messages_sent", m.messages_sent.load()},
            {"bytes_received", m.bytes_received.load()},
            {"bytes_sent", m.bytes_sent.load()},
            {"messages_dropped", m.messages_dropped.load()},
            {"sessions", mqtt_broker.session_count()},
            {"subscriptions", mqtt_broker.subscription_count()},
            {"retained", mqtt_broker.retained_count()},
        };
        return boost::json::serialize(figures);
      });
  // Lifecycle events, for the fleet's online column.
  auto presence_feed = mqtt_broker.subscribe_service(
      "$aws/events/presence/+/+",
      [&live_updates](const broker::message_ptr& m, const broker::client_identity*) {
        constexpr std::string_view connected = "$aws/events/presence/connected/";
        constexpr std::string_view disconnected = "$aws/events/presence/disconnected/";
        const std::string_view topic = m->topic;
        if (topic.starts_with(connected))
          live_updates.on_presence(std::string(topic.substr(connected.size())), true);
        else if (topic.starts_with(disconnected))
          live_updates.on_presence(std::string(topic.substr(disconnected.size())), false);
      });
  live_updates.start();
  net::http_router emulator_router;
  emulator_router.add("GET", "/", [](const net::http_request&) {
    return net::http_response{200, "text/plain", {}, "Ok"};
  });
  pubsub::add_rest_routes(emulator_router, pubsub_service, pubsub_auth);
  // gRPC calls: through the Pub/Sub port only, so its listener decides.
  const bool grpc_port_demands_credentials =
      pubsub_access == "required" ||
      (pubsub_access == "auto" && !is_loopback_only(settings.listeners.grpc));
  app::peer_certificates grpc_peer_certificates;
  pubsub::grpc_services pubsub_grpc(
      pubsub_service,
      [&tokens, &auth, &grpc_peer_certificates, &pubsub_unauthenticated,
       grpc_port_demands_credentials](const std::string& peer, std::string_view authorization)
          -> std::optional<pubsub::status> {
        if (!grpc_port_demands_credentials || tokens.check_bearer(authorization))
          return std::nullopt;
        const auto certificate = grpc_peer_certificates.certificate_of(peer);
        if (!certificate.empty() && auth.certificate_refusal(certificate).empty())
          return std::nullopt;
        return pubsub_unauthenticated;
      });
  std::unique_ptr<grpc::Server> grpc_server;
  if (!net::is_off(settings.listeners.grpc)) {
    grpc::ServerBuilder builder;
    builder.RegisterService(pubsub_grpc.publisher());
    builder.RegisterService(pubsub_grpc.subscriber());
    builder.SetMaxReceiveMessageSize(16 << 20);  // a 10 MB Publish, framing included
    // Dead peers (a subscriber whose machine vanished) are found by keepalive pings and their
    // streams ended (their leases then run out). Clients' own pings are welcome, however often.
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    grpc_server = builder.BuildAndStart();
  }
  // Sockets that have not sent CONNECT yet are counted from accept (TCP, TLS) or upgrade
  // (WebSocket), in all and per address: the remote address they were counted under, or
  // nullopt when a limit refuses them.
  auto admit = [&mqtt_broker](std::string remote) -> std::optional<std::string> {
    auto key = broker::pending_sockets::key_of(remote);
    broker::limit refused{};
    if (mqtt_broker.pending().try_add(key, refused)) return remote;
    mqtt_broker.metrics().sockets_refused.fetch_add(1, std::memory_order_relaxed);
    mqtt_broker.limit_hit(refused, key);
    return std::nullopt;
  };
  // MQTT over WebSocket: anonymous on the plain listener, a client certificate on HTTPS, or a
  // URL presigned with SigV4 (`iotdevicegateway`) as AWS IoT's SDKs build it.
  net::websocket_route mqtt_over_websocket;
  mqtt_over_websocket.subprotocol = "mqtt";
  mqtt_over_websocket.on_stream = [&mqtt_broker, admit](std::unique_ptr<net::byte_stream> stream) {
    auto remote = admit(stream->remote_address());
    if (!remote) return stream->close();
    broker::serve_mqtt(mqtt_broker, std::move(stream), std::move(remote));
  };
  mqtt_over_websocket.admit = [&aws, &credentials](const net::http_request& request) {
    net::websocket_admission admission;
    if (!iot::aws_http::has_signature(request)) return admission;
    admission.refusal = aws.authenticate(request, {"iotdevicegateway"});
    if (!admission.refusal) admission.signer = credentials.access_key_id;
    return admission;
  };
  router.add_websocket("/mqtt", std::move(mqtt_over_websocket));

  // Listeners, in contract order; each failure to bind stops start-up with a clear message.
  // "localhost" binds 127.0.0.1 and [::1] on one port; endpoints.json shows the first.
  std::vector<std::unique_ptr<net::listener>> listeners;
  auto open = [&](const std::string& name, const std::string& address,
                  const net::socket_handler& handler) {
    if (net::is_off(address)) return;
    auto endpoints = net::listen_endpoints(address);  // checked at the top of serve()
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      auto endpoint = endpoints[i];
      if (i > 0 && endpoint.port() == 0) endpoint.port(listeners.back()->local_endpoint().port());
      try {
        listeners.push_back(std::make_unique<net::listener>(pool, endpoint, name, handler));
      } catch (const boost::system::system_error& e) {
        if (i > 0) {  // localhost's IPv6 half, on a machine without IPv6 loopback
          spdlog::warn("listener_skipped name={} address={} error=\"{}\"", name,
                       net::format_endpoint(endpoint), e.code().message());
          continue;
        }
        throw std::runtime_error(bind_failure(name, address, e));
      }
      auto text = net::format_endpoint(listeners.back()->local_endpoint());
      if (i == 0) bound[name] = text;
      spdlog::info("listening name={} address={}", name, text);
    }
  };
  auto refuse = [](asio::ip::tcp::socket& socket) {
    boost::system::error_code ignored;
    socket.close(ignored);
  };
  open(
      "mqtt", settings.listeners.mqtt, [&mqtt_broker, admit, refuse](asio::ip::tcp::socket socket) {
        auto remote = admit(net::remote_of(socket));
        if (!remote) return refuse(socket);
        broker::serve_mqtt(mqtt_broker, net::make_tcp_stream(std::move(socket)), std::move(remote));
      });
  const auto connect_timeout = std::chrono::seconds(settings.mqtt.connect_timeout);
  open("mqtts", settings.listeners.mqtts,
       [&mqtt_broker, &mqtt_tls, admit, refuse, connect_timeout](asio::ip::tcp::socket socket) {
         auto remote = admit(net::remote_of(socket));
         if (!remote) return refuse(socket);
         net::accept_tls(
             *mqtt_tls, std::move(socket), connect_timeout,
             [&mqtt_broker, remote = *remote](std::unique_ptr<net::byte_stream> stream) {
               broker::serve_mqtt(mqtt_broker, std::move(stream), remote);
             },
             [&mqtt_broker, remote = *remote] {
               mqtt_broker.pending().remove(broker::pending_sockets::key_of(remote));
             });
       });
  auto serve = [&router, &http_connections](const net::http_listener_options& options) {
    return [&router, &http_connections, options](asio::ip::tcp::socket socket) {
      auto slot = http_connections.try_acquire();
      if (!slot) {
        static core::log_limiter refusals(5);
        core::warn_limited(refusals,
                           "http_connection_refused remote={} limit=http.max_connections "
                           "similar_lines_suppressed={}",
                           net::remote_of(socket));
        boost::system::error_code ignored;
        socket.close(ignored);
        return;
      }
      net::serve_http(std::move(socket), router, options, std::move(slot));
    };
  };
  net::http_listener_options http_options;
  http_options.request_timeout = std::chrono::seconds(settings.http.request_timeout);
  net::http_listener_options https_options = http_options;
  https_options.tls = https_tls.get();
  // MQTT on the HTTPS port for clients offering ALPN x-amzn-mqtt-ca, as AWS IoT's 443 serves it
  // (a client certificate, as on mqtts).
  net::select_alpn_mqtt_or_http(*https_tls);
  https_options.on_mqtt_stream = [&mqtt_broker, admit](std::unique_ptr<net::byte_stream> stream) {
    auto remote = admit(stream->remote_address());
    if (!remote) return stream->close();
    broker::serve_mqtt(mqtt_broker, std::move(stream), std::move(remote));
  };
  http_options.loopback = is_loopback_only(settings.listeners.http);
  https_options.loopback = is_loopback_only(settings.listeners.https);
  open("http", settings.listeners.http, serve(http_options));
  open("https", settings.listeners.https, serve(https_options));
  // The Pub/Sub port (app/pubsub_port.hpp): plain gRPC, TLS (to gRPC) and HTTP/1.1 (REST,
  // `GET /` -> "Ok") on one socket, as Google's emulator serves gRPC and REST on one port.
  std::unique_ptr<asio::ssl::context> grpc_tls;
  std::unique_ptr<app::pubsub_port> pubsub_port;
  if (grpc_server) {
    grpc_tls =
        net::make_server_tls_context(server_cert_path, server_key_path, ca.certificate_path(),
                                     net::client_certificates::optional);
    net::select_alpn_h2(*grpc_tls);
    app::pubsub_port_options port_options;
    port_options.http = http_options;
    port_options.http.loopback = is_loopback_only(settings.listeners.grpc);
    port_options.allow_plain_grpc = !grpc_port_demands_credentials || port_options.http.loopback;
    port_options.handshake_timeout = connect_timeout;
    pubsub_port =
        std::make_unique<app::pubsub_port>(*grpc_server, emulator_router, http_connections,
                                           *grpc_tls, grpc_peer_certificates, port_options);
    open("grpc", settings.listeners.grpc,
         [&pubsub_port](asio::ip::tcp::socket socket) { pubsub_port->accept(std::move(socket)); });
  }

  // Housekeeping on loop 0 and the signals that stop the server.
  std::mutex stop_mutex;
  std::condition_variable stop_signal;
  bool stop_requested = false;
  asio::steady_timer ticker(pool.at(0));
  every_second(ticker, [&mqtt_broker, &shadows, &bridges, &settings] {
    mqtt_broker.tick();
    shadows.purge_deleted();
    bridges.publish_sys(std::chrono::seconds(settings.mqtt.sys_interval));
  });
  asio::signal_set signals(pool.at(0), SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signal_number) {
    if (ec) return;
    spdlog::info("shutdown_requested signal={}", signal_number);
    std::lock_guard lock(stop_mutex);
    stop_requested = true;
    stop_signal.notify_all();
  });
  bridges.start();
  bridge_pool.start();
  alerts_pool.start();
  pool.start();

  std::string endpoints = "{";
  for (const char* name : {"mqtt", "mqtts", "http", "https", "grpc"}) {
    auto it = bound.find(name);
    if (it == bound.end()) continue;
    endpoints += (endpoints.size() > 1 ? "," : "") + std::string("\"") + name +
                 "\":" + core::json_string(it->second);
  }
  endpoints += "}\n";
  registry::write_file_atomically((data_dir / "endpoints.json").string(), endpoints, 0644);
  spdlog::info("nimbus_ready version={} data_dir={} endpoints={}", NIMBUS_VERSION,
               data_dir.string(), endpoints.substr(0, endpoints.size() - 1));
  if (auto it = bound.find("http"); it != bound.end())
    spdlog::info("dashboard url=http://localhost:{}/",
                 it->second.substr(it->second.rfind(':') + 1));
  if (auto it = bound.find("mqtt"); it != bound.end()) {
    auto port = it->second.substr(it->second.rfind(':') + 1);
    spdlog::info(
        "try: mosquitto_sub -h localhost -p {} -t 'sensors/#' -v & mosquitto_pub -h "
        "localhost -p {} -t sensors/pi-001 -m '{{\"temperature\": 21.5}}'",
        port, port);
  }

  {
    std::unique_lock lock(stop_mutex);
    stop_signal.wait(lock, [&] { return stop_requested; });
  }
  // Stop accepting, tell clients, give their sockets a moment to flush, then stop the loops.
  for (auto& l : listeners) l->stop();
  pubsub_grpc.close_streams();
  pubsub_service.end_waits();  // a parked unary Pull would hold Shutdown until its 30 s ran out
  if (grpc_server)
    grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  bridge_routes.stop();  // the bridge changes under way finish and are answered
  bridges.stop();        // a clean DISCONNECT to each remote while the loops still run
  // Before the broker: the disconnects of its shutdown are no device going offline (after the
  // restart, devices must connect again within their offline rules' `for`). Its last states and
  // alerts are stored; notifications not yet sent wait in the outbox for the next start.
  alert_service.stop();
  live_updates.stop();    // closes the dashboards' streams while the loops still run
  pubsub_service.stop();  // answers its waiting pulls while the HTTP loops still run
  mqtt_broker.shutdown();
  // Wait (bounded by the close grace period) until every client was told and its connection
  // released, so no connection outlives the loops.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (mqtt_broker.metrics().connections_open.load() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  asio::post(pool.at(0), [&] {
    ticker.cancel();
    signals.cancel();
  });
  pool.stop();
  bridge_pool.stop();
  alerts_pool.stop();
  listeners.clear();
  tsdb_queries.stop();  // before the store: queued queries still read it
  time_series->stop();
  writer.drain();
  fs::remove(data_dir / "endpoints.json");
  spdlog::info("nimbus_stopped");
  return 0;
}

}  // namespace nimbus::app
