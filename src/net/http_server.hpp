#pragma once
// The HTTP(S) server: one listener serves every route by path. Handlers see plain structs, not
// Beast types, so services need not compile Beast. `/mqtt` upgrades to WebSocket and hands the
// stream to the MQTT side.
#include <boost/asio/ssl/context.hpp>

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
// A handler that answers later (e.g. once a write is durable): it must call `respond` exactly
// once, from any thread.
using http_responder = std::function<void(http_response)>;
using http_async_handler = std::function<void(http_request, http_responder respond)>;

std::string percent_decode(std::string_view in);

// Routes by method and path. A pattern is matched segment by segment on the raw path, so an
// encoded '/' (%2F) stays inside its segment; `{name}` matches one segment and is passed
// decoded in `params`. A pattern ending in '*' matches that (decoded) prefix.
class http_router {
 public:
  void add(std::string method, std::string pattern, http_handler handler);
  void add_async(std::string method, std::string pattern, http_async_handler handler);
  void set_websocket(std::string path, std::string subprotocol, stream_handler on_stream,
                     websocket_admitter admit = nullptr);
  // Answers through `respond` (404/405 when nothing matches, 500 if a handler throws).
  void dispatch(http_request request, http_responder respond) const;

  const std::string& websocket_path() const { return websocket_path_; }
  const std::string& websocket_subprotocol() const { return websocket_subprotocol_; }
  const stream_handler& websocket_handler() const { return websocket_handler_; }
  const websocket_admitter& websocket_admit() const { return websocket_admit_; }

 private:
  struct route {
    std::string method;
    std::string path;
    bool prefix;
    std::vector<std::string> segments;  // of a template pattern
    http_async_handler handler;
  };
  std::vector<route> routes_;
  std::string websocket_path_;
  std::string websocket_subprotocol_;
  stream_handler websocket_handler_;
  websocket_admitter websocket_admit_;
};

// Serves HTTP on an accepted socket (plain, or TLS when `tls` is set). Runs on the socket's loop.
void serve_http(boost::asio::ip::tcp::socket socket, const http_router& router,
                boost::asio::ssl::context* tls);

}  // namespace nimbus::net
