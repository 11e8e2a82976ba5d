#include "net/http_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "net/streams.hpp"

namespace nimbus::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
constexpr auto as_value = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_body_bytes = 16 * 1024 * 1024;
constexpr auto idle_timeout = std::chrono::seconds(60);

std::optional<std::string> http_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return v;
  }
  return std::nullopt;
}

void http_router::add(std::string method, std::string path, http_handler handler) {
  bool prefix = !path.empty() && path.back() == '*';
  if (prefix) path.pop_back();
  routes_.push_back({std::move(method), std::move(path), prefix, std::move(handler)});
}

void http_router::set_websocket(std::string path, std::string subprotocol,
                                stream_handler on_stream) {
  websocket_path_ = std::move(path);
  websocket_subprotocol_ = std::move(subprotocol);
  websocket_handler_ = std::move(on_stream);
}

http_response http_router::dispatch(const http_request& request) const {
  bool path_known = false;
  for (const auto& r : routes_) {
    bool match =
        r.prefix ? request.path.compare(0, r.path.size(), r.path) == 0 : request.path == r.path;
    if (!match) continue;
    path_known = true;
    if (r.method == request.method || (r.method == "GET" && request.method == "HEAD"))
      return r.handler(request);
  }
  if (path_known) return {405, "application/json", {}, R"({"message":"method not allowed"})"};
  return {404, "application/json", {}, R"({"message":"not found"})"};
}

namespace {

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

http_request to_request(const http::request<http::string_body>& req, const std::string& remote,
                        const std::optional<peer_certificate>& certificate) {
  http_request out;
  out.method = std::string(req.method_string());
  out.target = std::string(req.target());
  auto q = out.target.find('?');
  out.path = percent_decode(std::string_view(out.target).substr(0, q));
  if (q != std::string::npos) out.query = out.target.substr(q + 1);
  for (const auto& field : req)
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  out.body = req.body();
  out.remote_address = remote;
  out.certificate = certificate;
  return out;
}

http::response<http::string_body> to_response(http_response r,
                                              const http::request<http::string_body>& req) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
  res.set(http::field::server, "nimbus");
  res.set(http::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(req.keep_alive());
  if (req.method() != http::verb::head) res.body() = std::move(r.body);
  res.prepare_payload();
  return res;
}

template <class Stream>
asio::awaitable<void> http_session(Stream stream, const http_router& router, std::string remote,
                                   std::optional<peer_certificate> certificate, bool secure) {
  beast::flat_buffer buffer;
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(max_body_bytes);
    beast::get_lowest_layer(stream).expires_after(idle_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, as_value);
    if (ec) co_return;  // closed, timed out or malformed: nothing more to say on this socket
    auto req = parser.release();
    if (websocket::is_upgrade(req) && !router.websocket_path().empty() &&
        req.target().substr(0, req.target().find('?')) == router.websocket_path()) {
      beast::get_lowest_layer(stream).expires_never();
      websocket::stream<Stream> ws(std::move(stream));
      ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
      ws.read_message_max(max_body_bytes * 16);
      const std::string subprotocol = router.websocket_subprotocol();
      bool offered = false;
      for (auto token : beast::http::token_list(req[http::field::sec_websocket_protocol])) {
        if (beast::iequals(token, subprotocol)) offered = true;
      }
      ws.set_option(
          websocket::stream_base::decorator([offered, subprotocol](websocket::response_type& res) {
            res.set(http::field::server, "nimbus");
            if (offered) res.set(http::field::sec_websocket_protocol, subprotocol);
          }));
      auto [accept_ec] = co_await ws.async_accept(req, as_value);
      if (accept_ec) co_return;
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        router.websocket_handler()(make_websocket_stream(std::move(ws), remote));
      } else {
        router.websocket_handler()(
            make_secure_websocket_stream(std::move(ws), remote, certificate));
      }
      co_return;
    }
    http_response response;
    try {
      response = router.dispatch(to_request(req, remote, certificate));
    } catch (const std::exception& e) {
      spdlog::error("http_handler_failed path={} remote={} error=\"{}\"", std::string(req.target()),
                    remote, e.what());
      response = {500, "application/json", {}, R"({"message":"internal error"})"};
    }
    auto res = to_response(std::move(response), req);
    auto [write_ec, written] = co_await http::async_write(stream, res, as_value);
    if (write_ec || !res.keep_alive()) break;
  }
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    (void)secure;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(as_value);
  } else {
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }
}

asio::awaitable<void> https_session(asio::ip::tcp::socket socket, const http_router& router,
                                    asio::ssl::context& tls) {
  auto remote = remote_of(socket);
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), tls);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, as_value);
  if (ec) {
    spdlog::debug("tls_handshake_failed remote={} error=\"{}\"", remote, ec.message());
    co_return;
  }
  auto certificate = peer_certificate_of(stream.native_handle());
  co_await http_session(std::move(stream), router, remote, std::move(certificate), true);
}

}  // namespace

void serve_http(asio::ip::tcp::socket socket, const http_router& router, asio::ssl::context* tls) {
  auto executor = socket.get_executor();
  if (tls != nullptr) {
    asio::co_spawn(executor, https_session(std::move(socket), router, *tls), asio::detached);
  } else {
    auto remote = remote_of(socket);
    asio::co_spawn(executor,
                   http_session(beast::tcp_stream(std::move(socket)), router, std::move(remote),
                                std::nullopt, false),
                   asio::detached);
  }
}

}  // namespace nimbus::net
