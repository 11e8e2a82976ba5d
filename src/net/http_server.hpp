#pragma once
// The HTTP(S) server: one listener serves every route by path. Handlers see plain structs, not
// Beast types, so services need not compile Beast. `/mqtt` upgrades to WebSocket and hands the
// stream to the MQTT side.
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "net/byte_stream.hpp"
#include "net/listener.hpp"

namespace nimbus::net {

struct http_request {
  std::string method;    // "GET", "POST", ...
  std::string target;    // path and query as sent
  std::string path;      // decoded path without the query
  std::string raw_path;  // path as sent (percent-encoded), for signatures
  std::string query;     // raw query string without '?'
  // `{name}` segments of the matched route pattern, percent-decoded.
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote_address;
  std::optional<peer_certificate> certificate;  // HTTPS client certificate, when verified
  bool loopback_listener = false;  // came through a listener bound to a loopback address
  bool secure = false;             // came over TLS (HTTPS)

  // Case-insensitive header lookup.
  std::optional<std::string> header(std::string_view name) const;
  // A route parameter ("" when absent).
  const std::string& param(std::string_view name) const;
  // A query parameter, percent-decoded (nullopt when absent).
  std::optional<std::string> query_param(std::string_view name) const;
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

using http_handler = std::function<http_response(const http_request&)>;
// Decides whether a WebSocket upgrade may proceed: a refusal to send instead, or the identity
// of whoever signed it (empty: unsigned).
struct websocket_admission {
  std::optional<http_response> refusal;
  std::string signer;
};
using websocket_admitter = std::function<websocket_admission(const http_request&)>;
// What a WebSocket route carries: MQTT's binary frames (a text frame ends the connection), or
// text messages (each write one message; reads see the messages' bytes in order).
enum class websocket_frames : std::uint8_t { binary, text };
struct websocket_route {
  std::string subprotocol;  // echoed when the client offers it; empty: none
  stream_handler on_stream;
  websocket_admitter admit;  // null: everyone
  websocket_frames frames = websocket_frames::binary;
};
// A handler that answers later (e.g. once a write is durable): it must call `respond` exactly
// once, from any thread.
using http_responder = std::function<void(http_response)>;
using http_async_handler = std::function<void(http_request, http_responder respond)>;

// What a route accepts before its body is read: an unauthenticated client must not make the
// server buffer a body it will refuse anyway.
struct route_options {
  std::size_t max_body = 0;  // larger bodies get 413 before they are read (0: none at all)
  // Looks at the request line and headers (body still empty) when a body is announced; a
  // response refuses the request without reading its body, and the connection is closed.
  std::function<std::optional<http_response>(const http_request& head)> precheck;
};

std::string percent_decode(std::string_view in);

// Routes by method and path on a tree of path segments built as routes are added (start-up),
// so a request costs a map lookup per segment however many routes there are. The raw path is
// split at '/' before decoding, so an encoded '/' (%2F) stays inside its segment; `{name}`
// matches one non-empty segment, passed decoded in `params`; a final `*` segment matches the
// rest of the path. A literal segment is tried first; `{name}` only when the literal leads to
// no route for the request's method. GET routes also serve HEAD.
//
// The router knows HTTP, not the services behind it: its own answers (404, 405, 500 for a
// handler that threw, which core::report_bug counts as a bug) are plain JSON unless
// `set_error_responder` shapes them (the AWS surfaces add the error type header SDKs read).
class http_router {
 public:
  http_router();
  ~http_router();
  http_router(http_router&&) noexcept;
  http_router& operator=(http_router&&) noexcept;

  // Throws std::invalid_argument for a malformed pattern or a method+pattern added twice
  // (start-up only).
  void add(std::string method, std::string pattern, http_handler handler,
           route_options options = {});
  void add_async(std::string method, std::string pattern, http_async_handler handler,
                 route_options options = {});
  // Shapes the router's own error answers: `status` and a short English message.
  using error_responder = std::function<http_response(unsigned status, std::string_view message)>;
  void set_error_responder(error_responder responder) { error_responder_ = std::move(responder); }
  // Answers requests no route matches (404 by default), accepting bodies as `options` say.
  void set_fallback(http_async_handler handler, route_options options = {}) {
    fallback_ = std::move(handler);
    fallback_options_ = std::move(options);
  }
  // The options of the route `method` and `raw_path` would reach (defaults when none).
  const route_options& options_for(std::string_view method, std::string_view raw_path) const;
  // Upgrades requests for `path` to WebSocket (start-up; throws std::invalid_argument for a path
  // added twice).
  void add_websocket(std::string path, websocket_route handler);
  // Answers through `respond` (404/405 when nothing matches, 500 if a handler throws).
  void dispatch(http_request request, http_responder respond) const;
  http_response error(unsigned status, std::string_view message) const;

  // The WebSocket route of `raw_path`, null when it has none.
  const websocket_route* websocket(std::string_view raw_path) const;

 private:
  struct route {
    std::string method;
    std::vector<std::string> param_names;  // of its `{name}` segments, in path order
    http_async_handler handler;
    route_options options;
  };
  struct node;
  struct match {
    const route* found = nullptr;
    bool path_known = false;          // some route has this path (with another method: 405)
    std::vector<std::string> values;  // of the `{name}` segments on the way
  };
  match find(std::string_view method, std::string_view raw_path) const;

  std::unique_ptr<node> root_;
  error_responder error_responder_;
  route_options default_options_;  // a path known for another method: no body
  route_options fallback_options_;
  http_async_handler fallback_;
  std::map<std::string, websocket_route, std::less<>> websockets_;
};

// How one listener serves HTTP.
struct http_listener_options {
  boost::asio::ssl::context* tls = nullptr;  // HTTPS when set
  // HTTPS: a connection that negotiated ALPN "x-amzn-mqtt-ca" (select_alpn_mqtt_or_http) goes
  // here as a stream, not to HTTP (MQTT on 443, as AWS IoT). Unset: such a connection is closed.
  std::function<void(std::unique_ptr<byte_stream>)> on_mqtt_stream;
  bool loopback = false;                     // bound to a loopback address only
  std::chrono::seconds request_timeout{30};  // to receive one request's headers and body
  std::chrono::seconds idle_timeout{60};     // between requests on a kept-alive connection
};

// Serves HTTP on an accepted socket. Runs on the socket's loop. `slot` is held for the
// connection's life (see connection_limit).
void serve_http(boost::asio::ip::tcp::socket socket, const http_router& router,
                const http_listener_options& options, std::shared_ptr<void> slot = nullptr);

// Counts connections of one kind against a limit. Thread-safe.
class connection_limit {
 public:
  explicit connection_limit(std::size_t max) : max_(max) {}
  // A slot held while the returned token lives; null when the limit is reached.
  std::shared_ptr<void> try_acquire();
  std::size_t in_use() const { return in_use_.load(std::memory_order_relaxed); }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> in_use_{0};
};

}  // namespace nimbus::net
