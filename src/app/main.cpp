// The nimbus command line: `serve`, `version`, with --help everywhere.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>

#include "app/server.hpp"
#include "bridge/bridge_config.hpp"
#include "config/settings.hpp"
#include "core/log.hpp"
#include "loadgen/load_generator.hpp"
#include "loadgen/pubsub_load.hpp"

int main(int argc, char** argv) {
  using namespace nimbus;
  CLI::App app{"Nimbus: a self-hosted cloud IoT core (MQTT broker, AWS IoT and Pub/Sub APIs)",
               "nimbus"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", std::string("nimbus ") + NIMBUS_VERSION);

  auto* version = app.add_subcommand("version", "Print the version");
  auto* serve = app.add_subcommand("serve", "Run the server");
  std::string config_file;
  bool print_config = false;
  serve->add_option("--config", config_file, "TOML configuration file (flags override it)")
      ->check(CLI::ExistingFile);
  serve->add_flag("--print-config", print_config,
                  "Print the effective configuration as TOML and exit");
  std::map<std::string, std::string> flag_values;
  for (const auto& d : config::describe_settings()) {
    serve->add_option("--" + d.flag, flag_values[d.key],
                      fmt::format("{} (default {}{})", d.description, d.default_value,
                                  d.bounds.empty() ? "" : "; " + d.bounds));
  }

  auto* bench = app.add_subcommand(
      "bench",
      "Load-test an MQTT broker (Nimbus, Mosquitto, any) or a Pub/Sub service (Nimbus, an "
      "emulator, JetStream) and report");
  loadgen::options bench_options;
  bench
      ->add_option("scenario", bench_options.scenario,
                   "conn | fanin | fanout | p2p | shared | shadow | pubsub")
      ->required();
  bench->add_option("--host", bench_options.host, "Broker host")->capture_default_str();
  bench->add_option("--port,-p", bench_options.port, "Broker port")->capture_default_str();
  bench->add_option("--mqtt-version", bench_options.version, "4 (3.1.1) or 5")
      ->capture_default_str();
  bench->add_option("--qos,-q", bench_options.qos, "QoS of published messages and subscriptions")
      ->capture_default_str();
  bench
      ->add_option("--payload,--size,-s", bench_options.payload_size,
                   "Payload bytes (at least 16: timestamp + id; pubsub: at least 8, default 100)")
      ->capture_default_str();
  bench
      ->add_option("--rate,-r", bench_options.rate,
                   "Messages per second per publisher (0: flat out; pubsub: in total, one "
                   "message per Publish)")
      ->capture_default_str();
  bench->add_option("--duration,-d", bench_options.duration, "Measured seconds")
      ->capture_default_str();
  bench->add_option("--warmup", bench_options.warmup, "Seconds before measuring")
      ->capture_default_str();
  bench
      ->add_option("--publishers,-P", bench_options.publishers,
                   "Publishers (pairs for p2p; pubsub: threads, default 4)")
      ->capture_default_str();
  bench->add_option("--subscribers,-S", bench_options.subscribers, "Subscribers")
      ->capture_default_str();
  bench->add_option("--connections,-c", bench_options.connections, "Connections (conn scenario)")
      ->capture_default_str();
  bench
      ->add_option("--connect-rate", bench_options.connect_rate,
                   "Connections per second (0: flat out)")
      ->capture_default_str();
  bench
      ->add_option("--inflight", bench_options.inflight,
                   "QoS 1/2 window per publisher (pubsub: messages awaiting the server's "
                   "acknowledgement, default 1000)")
      ->capture_default_str();
  bench
      ->add_option("--things", bench_options.things,
                   "Things whose shadows are updated (shadow scenario)")
      ->capture_default_str();
  bench
      ->add_option("--shadow-clients", bench_options.shadow_clients,
                   "Clients updating shadows; thing i belongs to client i % clients (shadow)")
      ->capture_default_str();
  bench
      ->add_option("--shadow-inflight", bench_options.shadow_inflight,
                   "Updates awaiting /update/accepted per client, one per thing (shadow)")
      ->capture_default_str();
  bench->add_option("--threads,-t", bench_options.threads, "Generator threads (0: one per core)")
      ->capture_default_str();
  bench->add_flag("--tls", bench_options.tls, "Connect over TLS");
  bench->add_option("--cafile", bench_options.ca_file, "CA to verify the broker (TLS)");
  bench->add_option("--cert", bench_options.cert_file, "Client certificate (TLS)");
  bench->add_option("--key", bench_options.key_file, "Client key (TLS)");
  bench->add_option("--client-prefix", bench_options.client_prefix, "Client id prefix")
      ->capture_default_str();
  bench->add_option("--topic-prefix", bench_options.topic_prefix, "Topic prefix")
      ->capture_default_str();
  bench
      ->add_option("--subscribe-prefix", bench_options.subscribe_prefix,
                   "fanin: subscribers subscribe to PREFIX/# (default: the topic prefix)")
      ->type_name("PREFIX");
  bench
      ->add_option("--subscribe-port", bench_options.subscribe_port,
                   "Subscribers connect to this port (a bridge's remote), publishers to --port")
      ->type_name("PORT");
  bench->add_flag(
      "--json-payload", bench_options.json_payload,
      "Publish a JSON sensor reading, send time in \"t\" (--payload: its minimum size)");
  bench->add_flag("--persistent", bench_options.persistent,
                  "Subscribers keep their sessions, so QoS 1/2 deliveries are stored durably");
  bench->add_option("--broker-pid", bench_options.broker_pid,
                    "Broker process whose memory the conn scenario samples");
  // Pub/Sub (`nimbus bench pubsub`): its own options; the shared ones above are copied over
  // when given, its defaults otherwise.
  loadgen::pubsub_options pubsub_options;
  bench
      ->add_option("--target", pubsub_options.target,
                   "pubsub: grpc (Nimbus, an emulator: --port default 8085) or jetstream "
                   "(nats-server: default 4222)")
      ->capture_default_str();
  bench
      ->add_option("--batch", pubsub_options.batch,
                   "pubsub: messages per Publish RPC (jetstream: per burst of async publishes)")
      ->capture_default_str();
  bench
      ->add_option("--streams", pubsub_options.streams,
                   "pubsub: StreamingPull streams (jetstream: fetching consumers)")
      ->capture_default_str();
  bench
      ->add_option("--max-outstanding", pubsub_options.max_outstanding,
                   "pubsub: max_outstanding_messages per stream (jetstream: MaxAckPending is "
                   "this x --streams)")
      ->capture_default_str();
  bench
      ->add_option("--ack-batch", pubsub_options.ack_batch,
                   "pubsub: ack ids per write on the stream, or every 5 ms (jetstream: messages "
                   "per Fetch, each acked)")
      ->capture_default_str();
  bench
      ->add_option("--messages", pubsub_options.messages,
                   "pubsub fill mode: publish this many messages with nobody pulling, then stop "
                   "(--duration bounds it)")
      ->capture_default_str();
  bench->add_flag("--json", bench_options.json, "Print the report as one JSON object");
  bool quiet = false;
  bench->add_flag("--quiet", quiet, "No live progress line");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (bench->parsed()) {
    bench_options.progress = !quiet;
    if (bench_options.scenario == "pubsub") {
      auto given = [bench](const char* name) { return bench->get_option(name)->count() > 0; };
      pubsub_options.host = bench_options.host;
      if (given("--port")) pubsub_options.port = bench_options.port;
      if (given("--payload")) pubsub_options.payload_size = bench_options.payload_size;
      if (given("--rate")) pubsub_options.rate = bench_options.rate;
      if (given("--duration")) pubsub_options.duration = bench_options.duration;
      if (given("--warmup")) pubsub_options.warmup = bench_options.warmup;
      if (given("--publishers")) pubsub_options.publishers = bench_options.publishers;
      if (given("--inflight"))
        pubsub_options.window = static_cast<std::size_t>(std::max(bench_options.inflight, 0));
      pubsub_options.json = bench_options.json;
      pubsub_options.progress = !quiet;
      try {
        return loadgen::run_pubsub(pubsub_options);
      } catch (const std::exception& e) {
        std::cerr << "nimbus bench pubsub: " << e.what() << "\n";
        return 2;
      }
    }
    try {
      return loadgen::run(bench_options);
    } catch (const std::exception& e) {
      std::cerr << "nimbus bench: " << e.what() << "\n";
      return 2;
    }
  }

  if (app.get_subcommands().empty()) {  // `nimbus` alone: what can it do?
    std::cout << app.help();
    return 0;
  }

  if (version->parsed()) {
    std::cout << "nimbus " << NIMBUS_VERSION << "\n";
    return 0;
  }

  config::settings settings;
  if (!config_file.empty()) {
    if (auto err = config::apply_toml_file(settings, config_file); !err.empty()) {
      std::cerr << "nimbus: " << err << "\n";
      return 2;
    }
  }
  for (const auto& d : config::describe_settings()) {
    auto* option = serve->get_option("--" + d.flag);
    if (option->count() == 0) continue;
    if (auto err = config::set_setting(settings, d.key, flag_values[d.key]); !err.empty()) {
      std::cerr << "nimbus: --" << d.flag << ": " << err << "\n";
      return 2;
    }
  }
  // Bridges are checked here, where the file is known: "nimbus.toml: bridges.edge.topic[1]: ..."
  for (const auto& declared : settings.bridges) {
    auto parsed = bridge::parse_mqtt_bridge(declared.name, declared.json, bridge::parse_context{});
    if (auto* error = std::get_if<bridge::config_error>(&parsed)) {
      std::cerr << "nimbus: " << (config_file.empty() ? "config" : config_file) << ": "
                << error->text() << "\n";
      return 2;
    }
  }
  for (const auto& declared : settings.pubsub_bridges) {
    auto parsed = bridge::parse_pubsub_bridge(declared.name, declared.json);
    if (auto* error = std::get_if<bridge::config_error>(&parsed)) {
      std::cerr << "nimbus: " << (config_file.empty() ? "config" : config_file) << ": "
                << error->text() << "\n";
      return 2;
    }
  }
  if (print_config) {
    std::cout << config::to_toml(settings);
    return 0;
  }

  core::init_logging(settings.log_level);
  try {
    return app::serve(settings);
  } catch (const std::exception& e) {
    spdlog::critical("startup_failed error=\"{}\"", e.what());
    return 1;
  }
}
