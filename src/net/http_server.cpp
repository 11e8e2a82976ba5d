#include "net/http_server.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <openssl/ssl.h>

#include <array>
#include <stdexcept>

#include "core/log.hpp"
#include "net/streams.hpp"
#include "net/tls_context.hpp"

namespace nimbus::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
constexpr auto as_value = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_header_bytes = 16 * 1024;
constexpr std::size_t max_websocket_message = 256 * 1024 * 1024;

std::optional<std::string> http_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return v;
  }
  return std::nullopt;
}

const std::string& http_request::param(std::string_view name) const {
  static const std::string none;
  for (const auto& [k, v] : params)
    if (k == name) return v;
  return none;
}

std::optional<std::string> http_request::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    auto eq = pair.find('=');
    std::string key(pair.substr(0, eq));
    for (auto& c : key)
      if (c == '+') c = ' ';
    key = percent_decode(key);
    if (key != name) continue;
    if (eq == std::string_view::npos) return std::string();
    std::string value(pair.substr(eq + 1));
    for (auto& c : value)
      if (c == '+') c = ' ';
    return percent_decode(value);
  }
  return std::nullopt;
}

namespace {

// "/a/b%2Fc/" -> {"a", "b%2Fc", ""}: split before decoding, so %2F stays in its segment.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = path.starts_with('/') ? 1 : 0;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool is_param(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool serves(std::string_view route_method, std::string_view method) {
  return route_method == method || (route_method == "GET" && method == "HEAD");
}

}  // namespace

// One path segment's worth of the route tree.
struct http_router::node {
  std::map<std::string, std::unique_ptr<node>, std::less<>> literal;  // decoded segment
  std::unique_ptr<node> param;                                        // a `{name}` segment
  std::vector<route> here;  // routes whose pattern ends at this node, one per method
  std::vector<route> rest;  // routes whose pattern ends here with `*`: any non-empty remainder
};

http_router::http_router() : root_(std::make_unique<node>()) {}
http_router::~http_router() = default;
http_router::http_router(http_router&&) noexcept = default;
http_router& http_router::operator=(http_router&&) noexcept = default;

void http_router::add(std::string method, std::string pattern, http_handler handler,
                      route_options options) {
  add_async(
      std::move(method), std::move(pattern),
      [handler = std::move(handler)](http_request request, http_responder respond) {
        respond(handler(request));
      },
      std::move(options));
}

void http_router::add_async(std::string method, std::string pattern, http_async_handler handler,
                            route_options options) {
  auto segments = split_path(pattern);
  const bool is_rest = !segments.empty() && segments.back() == "*";
  if (is_rest) segments.pop_back();
  node* at = root_.get();
  std::vector<std::string> param_names;
  for (auto segment : segments) {
    if (segment.find('*') != std::string_view::npos)
      throw std::invalid_argument("route " + pattern + ": '*' only as the last segment");
    if (is_param(segment)) {
      param_names.emplace_back(segment.substr(1, segment.size() - 2));
      if (!at->param) at->param = std::make_unique<node>();
      at = at->param.get();
    } else {
      auto& next = at->literal[percent_decode(segment)];
      if (!next) next = std::make_unique<node>();
      at = next.get();
    }
  }
  auto& routes = is_rest ? at->rest : at->here;
  for (const auto& r : routes)
    if (r.method == method)
      throw std::invalid_argument("route added twice: " + method + " " + pattern);
  routes.push_back(
      {std::move(method), std::move(param_names), std::move(handler), std::move(options)});
}

http_router::match http_router::find(std::string_view method, std::string_view raw_path) const {
  const auto raw = split_path(raw_path);
  std::vector<std::string> decoded;
  decoded.reserve(raw.size());
  for (auto segment : raw) decoded.push_back(percent_decode(segment));
  match m;
  auto pick = [&](const std::vector<route>& routes) -> const route* {
    if (routes.empty()) return nullptr;
    m.path_known = true;
    for (const auto& r : routes)
      if (serves(r.method, method)) return &r;
    return nullptr;
  };
  // Depth first, literal before `{name}`, then a `*` route of this node.
  auto walk = [&](auto& self, const node& n, std::size_t i) -> const route* {
    if (i == decoded.size()) return pick(n.here);
    if (auto it = n.literal.find(decoded[i]); it != n.literal.end())
      if (const auto* r = self(self, *it->second, i + 1)) return r;
    if (n.param && !decoded[i].empty()) {
      m.values.push_back(decoded[i]);
      if (const auto* r = self(self, *n.param, i + 1)) return r;
      m.values.pop_back();
    }
    return pick(n.rest);
  };
  m.found = walk(walk, *root_, 0);
  return m;
}

const route_options& http_router::options_for(std::string_view method,
                                              std::string_view raw_path) const {
  auto m = find(method, raw_path);
  if (m.found) return m.found->options;
  // A known path with another method is answered 405 without its body; the fallback takes
  // what it declared.
  return m.path_known || !fallback_ ? default_options_ : fallback_options_;
}

void http_router::add_websocket(std::string path, websocket_route handler) {
  if (!websockets_.emplace(path, std::move(handler)).second)
    throw std::invalid_argument("WebSocket route added twice: " + path);
}

const websocket_route* http_router::websocket(std::string_view raw_path) const {
  auto it = websockets_.find(raw_path);
  return it == websockets_.end() ? nullptr : &it->second;
}

http_response http_router::error(unsigned status, std::string_view message) const {
  if (error_responder_) return error_responder_(status, message);
  return {status, "application/json", {}, fmt::format(R"({{"message":"{}"}})", message)};
}

void http_router::dispatch(http_request request, http_responder respond) const {
  auto m = find(request.method, request.raw_path);
  if (m.found) {
    const route& r = *m.found;
    request.params.reserve(r.param_names.size());
    for (std::size_t i = 0; i < r.param_names.size(); ++i)
      request.params.emplace_back(r.param_names[i], std::move(m.values[i]));
    const std::string target = request.target;
    try {
      r.handler(std::move(request), respond);
    } catch (const std::exception& e) {
      core::report_bug("http_handler", fmt::format("path={} error={}", target, e.what()));
      respond(error(500, "internal error"));
    }
    return;
  }
  if (m.path_known) return respond(error(405, "method not allowed"));
  if (fallback_) return fallback_(std::move(request), std::move(respond));
  respond(error(404, "not found"));
}

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

namespace {

http_request to_request(const http::request<http::string_body>& req, const std::string& remote,
                        const std::optional<peer_certificate>& certificate,
                        const http_listener_options& options) {
  http_request out;
  out.method = std::string(req.method_string());
  out.target = std::string(req.target());
  auto q = out.target.find('?');
  out.raw_path = out.target.substr(0, q);
  out.path = percent_decode(out.raw_path);
  if (q != std::string::npos) out.query = out.target.substr(q + 1);
  for (const auto& field : req)
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  out.body = req.body();
  out.remote_address = remote;
  out.certificate = certificate;
  out.loopback_listener = options.loopback;
  out.secure = options.tls != nullptr;
  return out;
}

http::response<http::string_body> to_response(http_response r, unsigned version, bool keep_alive,
                                              bool head) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "nimbus");
  res.set(http::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  if (head) {
    // HEAD: the headers GET would have sent, its Content-Length included, and no body.
    res.set(http::field::content_length, std::to_string(r.body.size()));
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

// A response that ends the connection: the request (or what is left of it) is not read.
http::response<http::string_body> closing_response(unsigned status, std::string_view message,
                                                   unsigned version) {
  std::string body = R"({"message":")";
  for (char c : message) {
    if (c == '"' || c == '\\') body.push_back('\\');
    body.push_back(c);
  }
  body += "\"}";
  return to_response({status, "application/json", {}, std::move(body)}, version, false, false);
}

// The status a request that failed to parse gets (0: none, the peer went away or timed out).
unsigned status_for_parse_error(const boost::system::error_code& ec) {
  if (ec == http::error::header_limit) return 431;
  if (ec == http::error::body_limit) return 413;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return 0;
  if (ec.category() == http::make_error_code(http::error::bad_method).category()) return 400;
  return 0;
}

// RFC 6455 4.1: the key is 16 random bytes, base64-encoded (24 characters, two of padding).
bool is_valid_websocket_key(std::string_view key) {
  if (key.size() != 24 || !key.ends_with("==")) return false;
  for (char c : key.substr(0, 22))
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  return true;
}

// Runs the router and resumes the session on its own executor, whichever thread answers.
template <class Token>
auto async_dispatch(const http_router& router, http_request request, Token&& token) {
  return asio::async_initiate<Token, void(http_response)>(
      [&router](auto handler, http_request req) {
        using handler_type = decltype(handler);
        auto shared = std::make_shared<std::optional<handler_type>>(std::move(handler));
        auto executor = asio::get_associated_executor(**shared);
        router.dispatch(std::move(req), [shared, executor](http_response response) {
          asio::dispatch(executor, [shared, response = std::move(response)]() mutable {
            if (!*shared) return;  // answered twice: ignore the second
            auto h = std::move(**shared);
            shared->reset();
            std::move(h)(std::move(response));
          });
        });
      },
      token, std::move(request));
}

// Closing with unread request bytes makes the kernel send a reset, which can destroy the
// response before the client has read it; so a refusal that left a body unread reads (and
// drops) a little of it first: at most 64 KiB, for at most a second.
template <class Stream>
asio::awaitable<void> drain(Stream& stream) {
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
  std::array<char, 4096> sink;
  for (std::size_t drained = 0; drained < 64 * 1024;) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), as_value);
    if (ec) break;
    drained += n;
  }
}

template <class Stream>
asio::awaitable<void> http_session(Stream stream, const http_router& router, std::string remote,
                                   std::optional<peer_certificate> certificate,
                                   http_listener_options options, steady_time accepted_at) {
  beast::flat_buffer buffer;
  bool unread_body = false;  // a refusal left the request's body unread: drain before closing
  for (bool first = true;; first = false) {
    // Headers first, bounded in size and time: nothing of the body is read until the route,
    // its body limit and (for a body) the caller's credentials have been looked at.
    http::request_parser<http::string_body> parser;
    parser.header_limit(max_header_bytes);
    parser.body_limit(boost::none);  // the route's limit is applied once the route is known
    if (buffer.size() == 0) {
      // Idle between requests for at most idle_timeout (a new connection's first request gets
      // no more than request_timeout); from a request's first byte on, request_timeout is
      // absolute for its headers and body together.
      beast::get_lowest_layer(stream).expires_after(first ? options.request_timeout
                                                          : options.idle_timeout);
      auto [idle_ec, n] = co_await stream.async_read_some(buffer.prepare(4096), as_value);
      if (idle_ec) break;
      buffer.commit(n);
    }
    // A WebSocket's CONNECT deadline counts from accept for the connection's first request,
    // from the upgrade request's first byte after others.
    const steady_time request_started = first ? accepted_at : std::chrono::steady_clock::now();
    beast::get_lowest_layer(stream).expires_after(options.request_timeout);
    auto [header_ec, header_bytes] =
        co_await http::async_read_header(stream, buffer, parser, as_value);
    if (header_ec) {
      if (unsigned status = status_for_parse_error(header_ec)) {
        spdlog::debug("http_request_malformed remote={} error=\"{}\"", remote, header_ec.message());
        auto res = closing_response(status, "malformed request: " + header_ec.message(), 11);
        co_await http::async_write(stream, res, as_value);
      }
      break;
    }
    auto& head = parser.get();
    const unsigned version = head.version();
    const bool is_head = head.method() == http::verb::head;
    if (auto te = head[http::field::transfer_encoding]; !te.empty() && !parser.chunked()) {
      auto res =
          closing_response(501, "Transfer-Encoding other than chunked is not supported", version);
      co_await http::async_write(stream, res, as_value);
      break;
    }
    std::string_view target(head.target().data(), head.target().size());
    std::string_view raw_path = target.substr(0, target.find('?'));

    const websocket_route* ws_route =
        websocket::is_upgrade(head) ? router.websocket(raw_path) : nullptr;
    if (ws_route != nullptr) {
      if (!is_valid_websocket_key(head[http::field::sec_websocket_key])) {
        auto res = closing_response(400, "invalid Sec-WebSocket-Key", version);
        co_await http::async_write(stream, res, as_value);
        break;
      }
      auto req = parser.release();
      std::string signer;
      if (ws_route->admit) {
        auto admission = ws_route->admit(to_request(req, remote, certificate, options));
        if (admission.refusal) {
          auto res = to_response(std::move(*admission.refusal), version, false, false);
          co_await http::async_write(stream, res, as_value);
          break;
        }
        signer = std::move(admission.signer);
      }
      beast::get_lowest_layer(stream).expires_never();
      websocket::stream<Stream> ws(std::move(stream));
      ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
      ws.read_message_max(max_websocket_message);
      const std::string& subprotocol = ws_route->subprotocol;
      bool offered = false;
      for (auto token : beast::http::token_list(req[http::field::sec_websocket_protocol])) {
        if (!subprotocol.empty() && beast::iequals(token, subprotocol)) offered = true;
      }
      ws.set_option(
          websocket::stream_base::decorator([offered, subprotocol](websocket::response_type& res) {
            res.set(http::field::server, "nimbus");
            if (offered) res.set(http::field::sec_websocket_protocol, subprotocol);
          }));
      auto [accept_ec] = co_await ws.async_accept(req, as_value);
      if (accept_ec) co_return;
      const bool text = ws_route->frames == websocket_frames::text;
      std::unique_ptr<byte_stream> upgraded;
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        upgraded =
            make_websocket_stream(std::move(ws), remote, std::move(signer), request_started, text);
      } else {
        upgraded = make_secure_websocket_stream(std::move(ws), remote, certificate,
                                                std::move(signer), request_started, text);
      }
      ws_route->on_stream(std::move(upgraded));
      co_return;
    }

    const route_options& route = router.options_for(head.method_string(), raw_path);
    bool has_body = parser.chunked() || parser.content_length().value_or(0) > 0;
    if (has_body) {
      // Who asks first (an unauthenticated caller learns nothing about limits), then how much.
      if (route.precheck) {
        if (auto refusal = route.precheck(to_request(head, remote, certificate, options))) {
          auto res = to_response(std::move(*refusal), version, false, is_head);
          co_await http::async_write(stream, res, as_value);
          unread_body = true;
          break;
        }
      }
      if (parser.content_length() && *parser.content_length() > route.max_body) {
        auto res = closing_response(
            413, fmt::format("request body too large (at most {} bytes)", route.max_body), version);
        co_await http::async_write(stream, res, as_value);
        unread_body = true;
        break;
      }
      // HTTP/1.0 clients do not know 100 Continue (RFC 9110 10.1.1).
      if (version >= 11 && beast::iequals(head[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, version};
        co_await http::async_write(stream, go_on, as_value);
      }
      parser.body_limit(route.max_body);
      auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer, parser, as_value);
      if (body_ec) {
        if (body_ec == http::error::body_limit) {
          auto res = closing_response(
              413, fmt::format("request body too large (at most {} bytes)", route.max_body),
              version);
          co_await http::async_write(stream, res, as_value);
          unread_body = true;
        } else {
          spdlog::debug("http_body_not_received remote={} error=\"{}\"", remote, body_ec.message());
        }
        break;
      }
    }
    auto req = parser.release();
    const bool keep_alive = req.keep_alive();
    http_response response = co_await async_dispatch(
        router, to_request(req, remote, certificate, options), asio::use_awaitable);
    auto res = to_response(std::move(response), version, keep_alive, is_head);
    // The answer gets its own time: a durable write or a key generation may have used the
    // request's.
    beast::get_lowest_layer(stream).expires_after(options.request_timeout);
    auto [write_ec, written] = co_await http::async_write(stream, res, as_value);
    if (write_ec || !res.keep_alive()) break;
  }
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    if (unread_body) co_await drain(stream);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(as_value);
  } else {
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    if (unread_body) co_await drain(stream);
  }
}

asio::awaitable<void> https_session(asio::ip::tcp::socket socket, const http_router& router,
                                    http_listener_options options,
                                    [[maybe_unused]] std::shared_ptr<void> slot) {
  auto accepted_at = std::chrono::steady_clock::now();
  auto remote = remote_of(socket);
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *options.tls);
  beast::get_lowest_layer(stream).expires_after(options.request_timeout);
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, as_value);
  if (ec) {
    spdlog::debug("tls_handshake_failed remote={} error=\"{}\"", remote, ec.message());
    co_return;
  }
  const unsigned char* protocol = nullptr;
  unsigned int protocol_length = 0;
  SSL_get0_alpn_selected(stream.native_handle(), &protocol, &protocol_length);
  if (protocol != nullptr &&
      std::string_view(reinterpret_cast<const char*>(protocol), protocol_length) == mqtt_alpn) {
    if (!options.on_mqtt_stream) co_return;
    beast::get_lowest_layer(stream).expires_never();  // MQTT's keep-alive takes over
    options.on_mqtt_stream(make_tls_stream(std::move(stream), accepted_at));
    co_return;
  }
  auto certificate = peer_certificate_of(stream.native_handle());
  co_await http_session(std::move(stream), router, remote, std::move(certificate), options,
                        accepted_at);
}

asio::awaitable<void> plain_session(asio::ip::tcp::socket socket, const http_router& router,
                                    http_listener_options options,
                                    [[maybe_unused]] std::shared_ptr<void> slot) {
  auto accepted_at = std::chrono::steady_clock::now();
  auto remote = remote_of(socket);
  co_await http_session(beast::tcp_stream(std::move(socket)), router, std::move(remote),
                        std::nullopt, options, accepted_at);
}

}  // namespace

std::shared_ptr<void> connection_limit::try_acquire() {
  if (in_use_.fetch_add(1, std::memory_order_acq_rel) >= max_) {
    in_use_.fetch_sub(1, std::memory_order_acq_rel);
    return nullptr;
  }
  // Points at the limit itself (non-null, so the caller can test it); frees the slot when the
  // last copy goes.
  return std::shared_ptr<void>(this, [](void* limit) {
    static_cast<connection_limit*>(limit)->in_use_.fetch_sub(1, std::memory_order_acq_rel);
  });
}

void serve_http(asio::ip::tcp::socket socket, const http_router& router,
                const http_listener_options& options, std::shared_ptr<void> slot) {
  auto executor = socket.get_executor();
  if (options.tls != nullptr) {
    asio::co_spawn(executor, https_session(std::move(socket), router, options, std::move(slot)),
                   asio::detached);
  } else {
    asio::co_spawn(executor, plain_session(std::move(socket), router, options, std::move(slot)),
                   asio::detached);
  }
}

}  // namespace nimbus::net
