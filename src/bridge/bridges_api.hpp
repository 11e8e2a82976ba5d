#pragma once
// /api/bridges (issue 14): the bridges at run time, beside the ones of nimbus.toml.
//
//   GET    /api/bridges                      {"bridges":[bridge, ...]} by name
//   GET    /api/bridges/{name}               bridge; 404 when unknown
//   POST   /api/bridges                      {"name", "kind"?, <the [bridges.<name>] table's
//                                            fields>} -> 201 bridge (Location: its URL); 400 on a
//                                            bad one, 409 when the name is taken
//   DELETE /api/bridges/{name}[?discard_queue=true]   204; 409 while its queue holds messages
//                                            (unless discard_queue) and for the file's bridges
//
//   bridge = {"name", "kind":"mqtt", "source":"file"|"api", "created_ms" (api),
//             "config":{the table's fields, with the defaults filled in},
//             "status":{"state","remote","last_error","received","forwarded","errors",
//                       "reconnects","queued_messages","queued_bytes","in_flight",
//                       "dropped":{"oldest","full","expired","undeliverable","lost","discarded"}}}
//   errors = {"error":{"field","message"}}: `field` as the config's errors name it ("topic[1]",
//            "cafile"; "name", "kind", "discard_queue"; "" for the body as a whole).
//
// `config` is what POST takes back: {"name", "kind", ...config} creates the same bridge. Secrets
// are never in an answer: a password is only ever in its file, whose path is shown
// (`password_file`, like `keyfile`: a path says where the secret is, not what it is); nothing
// here reads a file past its first byte, except the TLS check, which hands the files to OpenSSL
// and reports only its reason. `kind` is "mqtt" (the default); "pubsub" is kept for
// [pubsub_bridges.<name>] once those run, with its own `config`.
//
// Creation checks everything the file's bridges are checked for (bridge_config.hpp), then that
// each file can be read, that cafile holds certificates and certfile matches keyfile: a bridge
// that cannot start is refused with 400 and nothing is created. The bridge is stored (SQLite,
// table `bridges`) and only once that is durable is its link started and 201 sent; deletion
// stops the link, discards (counting) what its queue held, deletes the row and then answers 204.
// Bridges of the file are read-only here (409 naming the file), and a stored bridge whose name
// the file uses is skipped at start with a warning: the file wins.
//
// Who may call: `auth`, the rule of the rest of /api/ (server.cpp gives the dashboard's);
// reads ask with write=false, changes with write=true, before a body is read.
// Threads: reads on the HTTP loop; changes on the API's control thread, one at a time (they
// open queues, wait for the database and for links to stop: never on a loop).
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>

#include "bridge/bridge_config.hpp"
#include "bridge/service.hpp"
#include "core/clock.hpp"
#include "net/http_server.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::bridge {

// Refuses a request (the response to send) or lets it through (nullopt). Called on the HTTP
// loop, with the head alone (body unread) for requests that have one.
using api_auth =
    std::function<std::optional<net::http_response>(const net::http_request&, bool write)>;

struct bridges_api_options {
  parse_context context;  // as for the file's bridges (the default client id)
  // The loop a new bridge's link runs on.
  std::function<boost::asio::io_context&()> pick_loop;
  std::size_t max_body = 64 * 1024;
  std::size_t max_pending = 64;  // changes waiting for the control thread; past it 503
};

class bridges_api {
 public:
  // `bridges` and `writer` outlive this; stop() before them.
  bridges_api(service& bridges, storage::write_queue& writer, core::clock& clock, api_auth auth,
              bridges_api_options options);
  ~bridges_api();  // stop()
  bridges_api(const bridges_api&) = delete;
  bridges_api& operator=(const bridges_api&) = delete;

  // The `bridges` table, with the other components' migrations.
  static void migrate(storage::database& db);
  // Every bridge as GET /api/bridges lists it (the dashboard's live view too).
  boost::json::array list_json() const;
  // Start-up, once the file's bridges are added and before service::start(): adds the stored
  // ones. A name the file uses is skipped with a warning; one that cannot be built any more (a
  // file gone) is logged and left out (its row stays: DELETE removes it).
  void restore(storage::database& db);
  // Adds the routes; this must outlive the router's use.
  void install(net::http_router& router);
  // Runs the changes already queued (answering them), then refuses new ones with 503. Before
  // the service stops, while the loops still run.
  void stop();

 private:
  struct create_request;

  // Queues `change` for the control thread; false when stopping or too many are waiting.
  bool post(std::function<void()> change);
  void run();

  void create(create_request request, net::http_responder respond);
  void remove(std::string name, bool discard, net::http_responder respond);
  bool store_row(const mqtt_bridge& config, const std::string& table_json,
                 const std::string& queue_dir, std::int64_t created_ms);
  bool delete_row(const std::string& name);

  service& bridges_;
  storage::write_queue& writer_;
  core::clock& clock_;
  const api_auth auth_;
  const bridges_api_options options_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> changes_;  // mutex_
  bool is_stopping_ = false;                   // mutex_
  // Stored bridges that restore() could not build: name -> why. Control thread (after start).
  std::map<std::string, std::string> unrestored_;
  std::thread thread_;
};

}  // namespace nimbus::bridge
