#pragma once
// An HTTP/1.1 client for outbound calls: the rules engine's `http` action now, Pub/Sub push
// subscriptions and alert webhooks later. It knows nothing of its callers: a URL, headers and a
// body go out, a status, headers and a body (or an error) come back.
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace nimbus::net {

// scheme://host[:port][/path][?query]; scheme http or https (case-insensitive); host a name,
// IPv4, or [IPv6]; default ports 80/443; target "/" when no path. No userinfo, no fragment
// (refused). Returns nullopt for anything else.
struct http_url {
  bool https = false;
  std::string host;  // without brackets for IPv6
  std::uint16_t port = 0;
  std::string target;  // path + "?" + query, as given ("/" when empty)
};
std::optional<http_url> parse_http_url(std::string_view url);
// 127.0.0.0/8, ::1, "localhost" (case-insensitive).
bool is_loopback_host(std::string_view host);
// RFC 9110 5.6.2 tokens: what a method or a header name may be made of.
bool is_http_token(std::string_view text);

struct http_client_request {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{3000};  // whole exchange: resolve, connect, TLS, write, read
  // Larger bodies: the response is kept, its body truncated to this (the rest is never read).
  std::size_t max_response_body = 64 * 1024;
};
struct http_client_response {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};
struct http_client_error {
  // e.g. "connection refused", "timed out after 3000 ms", "TLS: certificate verify failed",
  // "invalid URL"
  std::string message;
  bool timed_out = false;
};
using http_client_result = std::variant<http_client_response, http_client_error>;

// What the client and its requests in flight share (the TLS context, the in-flight count);
// defined in http_client.cpp.
struct http_client_state;

// Sends requests on `io`, one fresh connection each (Connection: close): outbound calls are
// rare enough that a pool would cost more code than it saves connections. Owned by whoever makes
// the calls; send() may be called from any thread, completions run on `io`. Each request keeps
// its own state alive, so the client may be destroyed with requests in flight once `io` is
// stopped (their callbacks are then never called).
// Whether an answer with this status is worth sending again: 5xx, 408 (timeout) and 429 (too
// many requests); any other 4xx is final. The rules engine's http action and alert webhooks.
inline bool is_retryable_status(unsigned status) {
  return status >= 500 || status == 408 || status == 429;
}

class http_client {
 public:
  // Requests run on `io` (their completion handler is called there). TLS context: TLS 1.2+,
  // verify_peer with the system CA store (set_default_verify_paths, which honours SSL_CERT_FILE /
  // SSL_CERT_DIR), hostname verification (asio::ssl::host_name_verification), SNI set for names.
  explicit http_client(boost::asio::io_context& io);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  // Sends one request on a fresh connection (Connection: close), calls `done` exactly once on
  // `io`'s thread. Never throws for network/protocol problems: they are http_client_error.
  // Adds Host (host[:port] when not default) and Content-Length; a caller's Host/Content-Length
  // headers are replaced (Connection and Transfer-Encoding too: the body goes out whole, with
  // its length). Header names/values containing CR, LF or NUL -> error "invalid header".
  void send(http_client_request request, std::function<void(http_client_result)> done);

  // Requests started and not yet completed (for shutdown and tests).
  std::size_t in_flight() const;

 private:
  boost::asio::io_context& io_;
  // Shared with the requests in flight, which outlive the client when `io` is stopped first.
  std::shared_ptr<http_client_state> state_;
};

}  // namespace nimbus::net
