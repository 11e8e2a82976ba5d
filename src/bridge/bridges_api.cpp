// /api/bridges over bridge::service (bridges_api.hpp).
#include "bridge/bridges_api.hpp"

#include <openssl/ssl.h>
#include <boost/asio/ssl/context.hpp>
#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/log.hpp"
#include "net/field_error.hpp"

namespace nimbus::bridge {

namespace json = boost::json;

namespace {

constexpr std::string_view collection = "/api/bridges";

// ------------------------------------------------------------------------------- answers

net::http_response json_response(unsigned status, const json::value& body) {
  return net::http_response{status, "application/json", {}, json::serialize(body) + "\n"};
}

net::http_response error_response(unsigned status, std::string_view field,
                                  std::string_view message) {
  return net::field_error(status, field, message);
}

net::http_response no_bridge(const std::string& name) {
  return error_response(404, "name", fmt::format("there is no bridge '{}'", name));
}

net::http_response busy() {
  auto response = error_response(503, "", "the server is stopping or too busy; try again");
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

json::object status_json(const link_status& s) {
  json::object out;
  out["state"] = to_string(s.state);
  out["remote"] = s.remote;
  out["last_error"] = s.last_error;
  out["received"] = s.received;
  out["forwarded"] = s.forwarded;
  out["errors"] = s.errors;
  out["reconnects"] = s.reconnects;
  out["queued_messages"] = s.queue.queued_messages;
  out["queued_bytes"] = s.queue.queued_bytes;
  out["in_flight"] = s.queue.in_flight;
  json::object dropped;
  dropped["oldest"] = s.queue.dropped_oldest;
  dropped["full"] = s.queue.dropped_full;
  dropped["expired"] = s.queue.expired;
  dropped["undeliverable"] = s.queue.undeliverable;
  dropped["lost"] = s.queue.lost;
  dropped["discarded"] = s.queue.discarded;
  out["dropped"] = std::move(dropped);
  return out;
}

// The [bridges.<name>] table with its effective values, in the form POST takes: to_json's text
// (bridge_config.hpp: paths, never what the files hold), read back to sit in the answer. Invalid
// UTF-8 is let through, so every string comes back byte for byte and is written as before.
json::value config_json(const mqtt_bridge& b) {
  json::parse_options as_written;
  as_written.allow_invalid_utf8 = true;
  return json::parse(to_json(b), {}, as_written);
}

json::object bridge_json(const bridge_view& view) {
  json::object out;
  out["name"] = view.config.name;
  out["kind"] = "mqtt";
  out["source"] = to_string(view.source);
  if (view.source == bridge_source::api) out["created_ms"] = view.created_ms;
  out["config"] = config_json(view.config);
  out["status"] = status_json(view.status);
  return out;
}

// ------------------------------------------------------------------------------ checks

// Whether `path` can be read: a regular file whose first byte comes. Never reads further, so no
// secret can end up in a message.
std::optional<std::string> probe_file(const std::string& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (error) return error.message();
  if (std::filesystem::is_directory(status)) return std::string("it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string(std::strerror(errno));
  char first = 0;
  in.read(&first, 1);
  if (in.bad()) return std::string("read error");
  return std::nullopt;
}

// What the link's TLS context will do with the files (net::make_client_tls_context), so that a
// bridge whose context cannot be built is refused here, naming the field. OpenSSL's reason only:
// the files' contents are never quoted. An encrypted key is refused (no passphrase is asked).
std::optional<config_error> check_tls_files(const mqtt_bridge& b) {
  namespace ssl = boost::asio::ssl;
  if (!b.tls) return std::nullopt;
  const std::string bridge = "bridges." + b.name;
  const auto no_passphrase = [](std::size_t, ssl::context::password_purpose) {
    return std::string();
  };
  ssl::context context(ssl::context::tls_client);
  context.set_password_callback(no_passphrase);
  boost::system::error_code error;
  if (!b.files.cafile.empty()) {
    context.load_verify_file(b.files.cafile, error);
    if (error)
      return config_error{bridge, "cafile",
                          fmt::format("'{}' holds no usable CA certificate (PEM): {}",
                                      b.files.cafile, error.message())};
  }
  if (b.files.certfile.empty()) return std::nullopt;
  // The key alone first: OpenSSL refuses a key that does not match the certificate already
  // loaded, which would otherwise read as an unusable key.
  ssl::context key_alone(ssl::context::tls_client);
  key_alone.set_password_callback(no_passphrase);
  key_alone.use_private_key_file(b.files.keyfile, ssl::context::pem, error);
  if (error)
    return config_error{bridge, "keyfile",
                        fmt::format("'{}' holds no usable private key (PEM): {}", b.files.keyfile,
                                    error.message())};
  context.use_certificate_chain_file(b.files.certfile, error);
  if (error)
    return config_error{bridge, "certfile",
                        fmt::format("'{}' holds no usable certificate chain (PEM): {}",
                                    b.files.certfile, error.message())};
  context.use_private_key_file(b.files.keyfile, ssl::context::pem, error);
  if (error || SSL_CTX_check_private_key(context.native_handle()) != 1)
    return config_error{bridge, "keyfile",
                        fmt::format("'{}' does not match the certificate in '{}'", b.files.keyfile,
                                    b.files.certfile)};
  return std::nullopt;
}

// "true" (or nothing, or "1") / "false" ("0"); nullopt for anything else.
std::optional<bool> parse_flag(const std::optional<std::string>& text) {
  if (!text) return false;
  if (text->empty() || *text == "true" || *text == "1") return true;
  if (*text == "false" || *text == "0") return false;
  return std::nullopt;
}

// Waits (the control thread) until `t` is durable; false when its write failed.
bool wait_durable(storage::write_queue& writer, storage::ticket t) {
  auto outcome = std::make_shared<std::promise<bool>>();
  auto stored = outcome->get_future();
  writer.when_durable(t, [outcome, &writer, t] { outcome->set_value(!writer.failed(t)); });
  return stored.get();
}

}  // namespace

// ------------------------------------------------------------------------------ the API

// A POST's body, read: the bridge and its table as it will be stored.
struct bridges_api::create_request {
  mqtt_bridge config;
  std::string table_json;  // the body without name and kind
};

namespace {

// The body of a POST: {"name", "kind"?, ...the table}. Errors name the field as the config's do.
std::variant<mqtt_bridge, config_error> read_body(std::string_view body,
                                                  const parse_context& context,
                                                  std::string& table_json) {
  config_error error;
  json::error_code parse_error;
  json::value parsed = json::parse(body, parse_error);
  if (parse_error) {
    error.message = "the body is not JSON: " + parse_error.message();
    return error;
  }
  if (!parsed.is_object()) {
    error.message = "the body must be a JSON object: {\"name\": ..., \"addresses\": ..., ...}";
    return error;
  }
  auto& table = parsed.get_object();
  const auto* name_value = table.if_contains("name");
  if (name_value == nullptr || !name_value->is_string()) {
    error.field = "name";
    error.message = name_value == nullptr ? "is required" : "must be a string";
    return error;
  }
  const std::string name(name_value->get_string());
  if (!is_valid_bridge_name(name)) {
    error.field = "name";
    error.message =
        "a bridge name is 1 to 64 of letters, digits, '-', '_' and '.', not starting with '.'";
    return error;
  }
  if (const auto* kind = table.if_contains("kind")) {
    if (kind->is_string() && kind->get_string() == "pubsub") {
      error.field = "kind";
      error.message =
          "MQTT <-> Pub/Sub bridges are declared in nimbus.toml ([pubsub_bridges.<name>]) for now";
      return error;
    }
    if (!kind->is_string() || kind->get_string() != "mqtt") {
      error.field = "kind";
      error.message = "must be \"mqtt\"";
      return error;
    }
  }
  table.erase("name");
  table.erase("kind");
  table_json = json::serialize(table);
  return parse_mqtt_bridge(name, table_json, context);
}

}  // namespace

bridges_api::bridges_api(service& bridges, storage::write_queue& writer, core::clock& clock,
                         api_auth auth, bridges_api_options options)
    : bridges_(bridges),
      writer_(writer),
      clock_(clock),
      auth_(std::move(auth)),
      options_(std::move(options)),
      thread_([this] { run(); }) {}

bridges_api::~bridges_api() {
  stop();
}

void bridges_api::migrate(storage::database& db) {
  db.migrate("bridges", {R"sql(
    CREATE TABLE bridges (
      name TEXT PRIMARY KEY,
      kind TEXT NOT NULL,
      json TEXT NOT NULL,
      queue_dir TEXT NOT NULL,
      created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
  )sql"});
}

void bridges_api::restore(storage::database& db) {
  auto rows =
      db.prepare("SELECT name, kind, json, queue_dir, created_ms FROM bridges ORDER BY created_ms");
  while (rows.step()) {
    const std::string name = rows.column_text(0);
    const std::string kind = rows.column_text(1);
    const std::string table = rows.column_text(2);
    const std::string queue_dir = rows.column_text(3);
    const std::int64_t created_ms = rows.column_int(4);
    if (bridges_.has(name)) {
      spdlog::warn(
          "bridge_stored_skipped name={} reason=\"[bridges.{}] in the config file has the "
          "name; the file wins\"",
          name, name);
      continue;
    }
    std::string why;
    if (kind != "mqtt") {
      why = "kind '" + kind + "' is not known to this version";
    } else {
      auto parsed = parse_mqtt_bridge(name, table, options_.context);
      if (auto* error = std::get_if<config_error>(&parsed)) {
        why = error->text();
      } else {
        try {
          bridges_.add(std::get<mqtt_bridge>(std::move(parsed)), options_.pick_loop(),
                       bridge_source::api, created_ms, queue_dir);
          spdlog::info("bridge_restored name={}", name);
          continue;
        } catch (const std::exception& e) {
          why = e.what();
        }
      }
    }
    spdlog::error(
        "bridge_not_restored name={} error=\"{}\" note=\"DELETE /api/bridges/{} "
        "removes it\"",
        name, why, name);
    unrestored_[name] = why;
  }
}

json::array bridges_api::list_json() const {
  json::array list;
  for (const auto& view : bridges_.list()) list.emplace_back(bridge_json(view));
  return list;
}

void bridges_api::install(net::http_router& router) {
  const auto guard = [this](bool write) {
    return [this, write](const net::http_request& head) -> std::optional<net::http_response> {
      return auth_ ? auth_(head, write) : std::nullopt;
    };
  };
  net::route_options no_body;
  no_body.precheck = guard(true);
  net::route_options with_body;
  with_body.max_body = options_.max_body;
  with_body.precheck = guard(true);

  router.add("GET", std::string(collection), [this](const net::http_request& request) {
    if (auto refusal = auth_ ? auth_(request, false) : std::nullopt) return std::move(*refusal);
    json::object body;
    body["bridges"] = list_json();
    return json_response(200, body);
  });
  router.add("GET", std::string(collection) + "/{name}", [this](const net::http_request& request) {
    if (auto refusal = auth_ ? auth_(request, false) : std::nullopt) return std::move(*refusal);
    const auto& name = request.param("name");
    const auto view = bridges_.find(name);
    if (!view) return no_bridge(name);
    return json_response(200, bridge_json(*view));
  });
  router.add_async(
      "POST", std::string(collection),
      [this](net::http_request request, net::http_responder respond) {
        if (auto refusal = auth_ ? auth_(request, true) : std::nullopt)
          return respond(std::move(*refusal));
        create_request creation;
        auto read = read_body(request.body, options_.context, creation.table_json);
        if (auto* error = std::get_if<config_error>(&read))
          return respond(error_response(400, error->field, error->message));
        creation.config = std::get<mqtt_bridge>(std::move(read));
        auto shared = std::make_shared<create_request>(std::move(creation));
        if (!post([this, shared, respond] { create(std::move(*shared), respond); }))
          respond(busy());
      },
      with_body);
  router.add_async(
      "DELETE", std::string(collection) + "/{name}",
      [this](net::http_request request, net::http_responder respond) {
        if (auto refusal = auth_ ? auth_(request, true) : std::nullopt)
          return respond(std::move(*refusal));
        const auto discard = parse_flag(request.query_param("discard_queue"));
        if (!discard) return respond(error_response(400, "discard_queue", "must be true or false"));
        std::string name = request.param("name");
        if (!post([this, name, discard = *discard, respond] { remove(name, discard, respond); }))
          respond(busy());
      },
      no_body);
}

// ------------------------------------------------------------------------ control thread

bool bridges_api::post(std::function<void()> change) {
  {
    std::lock_guard lock(mutex_);
    if (is_stopping_ || changes_.size() >= options_.max_pending) return false;
    changes_.push_back(std::move(change));
  }
  wake_.notify_one();
  return true;
}

void bridges_api::stop() {
  {
    std::lock_guard lock(mutex_);
    is_stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void bridges_api::run() {
  while (true) {
    std::function<void()> change;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return is_stopping_ || !changes_.empty(); });
      if (changes_.empty()) return;  // stopping, and every queued change answered
      change = std::move(changes_.front());
      changes_.pop_front();
    }
    change();
  }
}

void bridges_api::create(create_request request, net::http_responder respond) {
  const auto& config = request.config;
  const std::string& name = config.name;
  try {
    if (auto existing = bridges_.find(name)) {
      return respond(error_response(
          409, "name",
          existing->source == bridge_source::file
              ? fmt::format("'{}' is defined in the config file ([bridges.{}])", name, name)
              : fmt::format("a bridge named '{}' exists; DELETE it first", name)));
    }
    // Every file can be read and the TLS context can be built: else the link could not start.
    if (auto error = check_files(config, probe_file))
      return respond(error_response(400, error->field, error->message));
    if (auto error = check_tls_files(config))
      return respond(error_response(400, error->field, error->message));
    const std::int64_t created_ms = clock_.unix_millis();
    const std::string queue_dir = bridges_.fresh_queue_dir(name, created_ms);
    // Stored first: the link runs only once its row is durable, so an answered 201 survives a
    // crash, and a crash before it leaves at most a row whose bridge starts at the next start.
    if (!store_row(config, request.table_json, queue_dir, created_ms))
      return respond(error_response(500, "", "the bridge could not be stored; nothing created"));
    unrestored_.erase(name);
    try {
      bridges_.add_runtime(config, options_.pick_loop(), created_ms, queue_dir);
    } catch (const std::exception& e) {
      // Its files were checked: what is left is the queue's directory (disk full, permissions).
      spdlog::error("bridge_create_failed name={} error=\"{}\"", name, e.what());
      delete_row(name);
      return respond(error_response(500, "", e.what()));
    }
    const auto view = bridges_.find(name);
    if (!view) return respond(error_response(500, "", "the bridge vanished"));
    auto response = json_response(201, bridge_json(*view));
    response.headers.emplace_back("Location", std::string(collection) + "/" + name);
    respond(std::move(response));
  } catch (const std::exception& e) {
    core::report_bug("bridges_api::create", e.what());
    respond(error_response(500, "", "internal error"));
  }
}

void bridges_api::remove(std::string name, bool discard, net::http_responder respond) {
  try {
    if (const auto unrestored = unrestored_.find(name); unrestored != unrestored_.end()) {
      // A stored bridge this start could not build: only its row is left.
      if (!delete_row(name))
        return respond(error_response(500, "", "the bridge could not be removed from storage"));
      unrestored_.erase(unrestored);
      spdlog::info("bridge_deleted name={} note=\"it was not running\"", name);
      return respond(net::http_response{204, "application/json", {}, ""});
    }
    const auto outcome = bridges_.remove(name, discard);
    switch (outcome.status) {
      case service::remove_status::not_found:
        return respond(no_bridge(name));
      case service::remove_status::read_only:
        return respond(error_response(
            409, "name",
            fmt::format("'{}' is defined in the config file ([bridges.{}]): remove it there and "
                        "restart",
                        name, name)));
      case service::remove_status::not_empty:
        return respond(
            error_response(409, "discard_queue",
                           fmt::format("the queue holds {} messages ({} bytes) not yet forwarded; "
                                       "DELETE with ?discard_queue=true to discard them",
                                       outcome.queue.queued_messages, outcome.queue.queued_bytes)));
      case service::remove_status::removed:
        break;
    }
    // The link is stopped and its queue discarded: a crash from here on brings the bridge back
    // at the next start with an empty queue, never with messages the client asked to discard.
    if (!delete_row(name))
      return respond(error_response(
          500, "",
          "the bridge was stopped but could not be removed from storage: it comes back "
          "at the next start"));
    respond(net::http_response{204, "application/json", {}, ""});
  } catch (const std::exception& e) {
    core::report_bug("bridges_api::remove", e.what());
    respond(error_response(500, "", "internal error"));
  }
}

bool bridges_api::store_row(const mqtt_bridge& config, const std::string& table_json,
                            const std::string& queue_dir, std::int64_t created_ms) {
  const auto t = writer_.submit(
      [name = config.name, table_json, queue_dir, created_ms](storage::database& db) {
        db.cached(
              "INSERT INTO bridges (name, kind, json, queue_dir, created_ms) "
              "VALUES (?, 'mqtt', ?, ?, ?) "
              "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, json = excluded.json, "
              "queue_dir = excluded.queue_dir, created_ms = excluded.created_ms")
            .bind(1, name)
            .bind(2, table_json)
            .bind(3, queue_dir)
            .bind(4, created_ms)
            .run();
      });
  return wait_durable(writer_, t);
}

bool bridges_api::delete_row(const std::string& name) {
  const auto t = writer_.submit([name](storage::database& db) {
    db.cached("DELETE FROM bridges WHERE name = ?").bind(1, name).run();
  });
  return wait_durable(writer_, t);
}

}  // namespace nimbus::bridge
