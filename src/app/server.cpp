#include "app/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <thread>

#include "broker/broker.hpp"
#include "broker/connection.hpp"
#include "broker/session_store.hpp"
#include "core/clock.hpp"
#include "iot/aws_http.hpp"
#include "iot/control_plane.hpp"
#include "iot/data_plane.hpp"
#include "iot/device_authorizer.hpp"
#include "net/address.hpp"
#include "net/http_server.hpp"
#include "net/io_pool.hpp"
#include "net/listener.hpp"
#include "net/streams.hpp"
#include "net/tls_context.hpp"
#include "registry/certificate_authority.hpp"
#include "registry/credentials.hpp"
#include "registry/registry.hpp"
#include "registry/x509.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::app {

namespace asio = boost::asio;

namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
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

}  // namespace

int serve(const config::settings& settings) {
  namespace fs = std::filesystem;
  const fs::path data_dir = settings.data_dir;
  fs::create_directories(data_dir);
  fs::remove(data_dir / "endpoints.json");

  // Identity: CA, server certificate, API credentials.
  auto ca = registry::certificate_authority::open_or_create((data_dir / "ca").string());
  std::vector<std::string> hosts{"localhost", "127.0.0.1", "::1", settings.endpoint_host};
  auto server_cert = ca.issue_server(settings.endpoint_host, hosts, 825);
  const auto server_cert_path = (data_dir / "ca" / "server.crt").string();
  const auto server_key_path = (data_dir / "ca" / "server.key").string();
  registry::write_file_atomically(server_cert_path, server_cert.certificate_pem, 0644);
  registry::write_file_atomically(server_key_path, server_cert.private_key_pem, 0600);
  auto credentials = registry::open_or_create_credentials((data_dir / "credentials").string());

  // Storage; the registry and the broker restored from it.
  const auto db_path = (data_dir / "nimbus.db").string();
  core::system_clock clock;
  registry::registry devices("arn:aws:iot:" + settings.region + ":" + settings.account + ":",
                             settings.account, ca, clock);
  {
    storage::database db(db_path, settings.storage.synchronous);
    broker::session_store::migrate(db);
    registry::registry::migrate(db);
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
  {
    storage::database db(db_path, settings.storage.synchronous);
    mqtt_broker.restore(db);
  }
  writer.drain();
  // A certificate leaving ACTIVE (or deleted) ends its connections at once.
  devices.on_certificate_disabled([&mqtt_broker](const std::string& id) {
    auto cut = mqtt_broker.disconnect_if(
        [&id](const broker::client_identity& who) {
          return who.certificate && who.certificate->sha256_hex == id;
        },
        mqtt::reason_code::not_authorized);
    spdlog::info("certificate_disabled id={} connections_closed={}", id, cut);
  });

  std::size_t loops =
      settings.threads != 0 ? settings.threads : std::max(1U, std::thread::hardware_concurrency());
  net::io_pool pool(loops);

  auto mqtt_tls = net::make_server_tls_context(
      server_cert_path, server_key_path, ca.certificate_path(), net::client_certificates::required);
  auto https_tls = net::make_server_tls_context(
      server_cert_path, server_key_path, ca.certificate_path(), net::client_certificates::optional);

  net::http_router router;
  router.add("GET", "/healthz", [](const net::http_request&) {
    return net::http_response{200, "application/json", {}, R"({"status":"ok"})"};
  });
  router.add("GET", "/metrics", [&mqtt_broker, &auth](const net::http_request&) {
    return net::http_response{200,
                              "text/plain; version=0.0.4",
                              {},
                              mqtt_broker.prometheus_text() + auth.prometheus_text()};
  });
  iot::aws_http aws(credentials, writer);
  // Stable for the account and not guessable without its secret key.
  iot::control_plane control(
      devices, aws, settings.endpoint_host,
      registry::sha256_hex("nimbus-registration-code:" + credentials.secret_access_key));
  control.install(router);
  iot::data_plane data(mqtt_broker, auth, aws, writer);
  data.install(router);
  // MQTT over WebSocket: anonymous on the plain listener, a client certificate on HTTPS, or a
  // URL presigned with SigV4 (`iotdevicegateway`) as AWS IoT's SDKs build it.
  router.set_websocket(
      "/mqtt", "mqtt",
      [&mqtt_broker](std::unique_ptr<net::byte_stream> stream) {
        broker::serve_mqtt(mqtt_broker, std::move(stream));
      },
      [&aws, &credentials](const net::http_request& request) {
        net::websocket_admission admission;
        if (!iot::aws_http::has_signature(request)) return admission;
        admission.refusal = aws.authenticate(request, {"iotdevicegateway"});
        if (!admission.refusal) admission.signer = credentials.access_key_id;
        return admission;
      });

  // Listeners, in contract order; each failure to bind stops start-up with a clear message.
  std::vector<std::unique_ptr<net::listener>> listeners;
  std::map<std::string, std::string> bound;
  auto open = [&](const std::string& name, const std::string& address,
                  net::socket_handler handler) {
    if (net::is_off(address)) return;
    auto endpoint = net::parse_address(address);
    if (!endpoint)
      throw std::runtime_error("invalid address for --" + name + ": '" + address + "'");
    try {
      listeners.push_back(
          std::make_unique<net::listener>(pool, *endpoint, name, std::move(handler)));
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("cannot listen on " + address + " (--" + name +
                               "): " + e.code().message());
    }
    bound[name] = net::format_endpoint(listeners.back()->local_endpoint());
    spdlog::info("listening name={} address={}", name, bound[name]);
  };
  open("mqtt", settings.listeners.mqtt, [&mqtt_broker](asio::ip::tcp::socket socket) {
    broker::serve_mqtt(mqtt_broker, net::make_tcp_stream(std::move(socket)));
  });
  open("mqtts", settings.listeners.mqtts, [&mqtt_broker, &mqtt_tls](asio::ip::tcp::socket socket) {
    net::accept_tls(*mqtt_tls, std::move(socket), std::chrono::seconds(10),
                    [&mqtt_broker](std::unique_ptr<net::byte_stream> stream) {
                      broker::serve_mqtt(mqtt_broker, std::move(stream));
                    });
  });
  open("http", settings.listeners.http, [&router](asio::ip::tcp::socket socket) {
    net::serve_http(std::move(socket), router, nullptr);
  });
  open("https", settings.listeners.https, [&router, &https_tls](asio::ip::tcp::socket socket) {
    net::serve_http(std::move(socket), router, https_tls.get());
  });
  if (!net::is_off(settings.listeners.grpc)) {
    spdlog::info(
        "grpc_listener_not_started reason=\"the Pub/Sub service is not part of this build yet\"");
  }

  // Housekeeping on loop 0 and the signals that stop the server.
  std::mutex stop_mutex;
  std::condition_variable stop_signal;
  bool stop_requested = false;
  asio::steady_timer ticker(pool.at(0));
  every_second(ticker, [&mqtt_broker] { mqtt_broker.tick(); });
  asio::signal_set signals(pool.at(0), SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signal_number) {
    if (ec) return;
    spdlog::info("shutdown_requested signal={}", signal_number);
    std::lock_guard lock(stop_mutex);
    stop_requested = true;
    stop_signal.notify_all();
  });
  pool.start();

  std::string endpoints = "{";
  for (const char* name : {"mqtt", "mqtts", "http", "https", "grpc"}) {
    auto it = bound.find(name);
    if (it == bound.end()) continue;
    endpoints += (endpoints.size() > 1 ? "," : "") + std::string("\"") + name + "\":\"" +
                 json_escape(it->second) + "\"";
  }
  endpoints += "}\n";
  registry::write_file_atomically((data_dir / "endpoints.json").string(), endpoints, 0644);
  spdlog::info("nimbus_ready data_dir={} endpoints={}", data_dir.string(),
               endpoints.substr(0, endpoints.size() - 1));

  {
    std::unique_lock lock(stop_mutex);
    stop_signal.wait(lock, [&] { return stop_requested; });
  }
  // Stop accepting, tell clients, give their sockets a moment to flush, then stop the loops.
  for (auto& l : listeners) l->stop();
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
  listeners.clear();
  writer.drain();
  fs::remove(data_dir / "endpoints.json");
  spdlog::info("nimbus_stopped");
  return 0;
}

}  // namespace nimbus::app
