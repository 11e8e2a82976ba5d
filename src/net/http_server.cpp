#include "net/http_server.hpp"

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

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = path.starts_with('/') ? 1 : 0;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.emplace_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

}  // namespace

void http_router::add(std::string method, std::string pattern, http_handler handler) {
  add_async(std::move(method), std::move(pattern),
            [handler = std::move(handler)](http_request request, http_responder respond) {
              respond(handler(request));
            });
}

void http_router::add_async(std::string method, std::string pattern, http_async_handler handler) {
  bool prefix = !pattern.empty() && pattern.back() == '*';
  if (prefix) pattern.pop_back();
  std::vector<std::string> segments;
  if (!prefix && pattern.find('{') != std::string::npos) segments = split_path(pattern);
  routes_.push_back(
      {std::move(method), std::move(pattern), prefix, std::move(segments), std::move(handler)});
}

void http_router::set_websocket(std::string path, std::string subprotocol, stream_handler on_stream,
                                websocket_admitter admit) {
  websocket_admit_ = std::move(admit);
  websocket_path_ = std::move(path);
  websocket_subprotocol_ = std::move(subprotocol);
  websocket_handler_ = std::move(on_stream);
}

void http_router::dispatch(http_request request, http_responder respond) const {
  bool path_known = false;
  std::vector<std::string> raw_segments = split_path(request.raw_path);
  for (const auto& r : routes_) {
    std::vector<std::pair<std::string, std::string>> params;
    bool match;
    if (r.prefix) {
      match = request.path.compare(0, r.path.size(), r.path) == 0;
    } else if (!r.segments.empty()) {
      match = r.segments.size() == raw_segments.size();
      for (std::size_t i = 0; match && i < r.segments.size(); ++i) {
        const auto& want = r.segments[i];
        std::string got = percent_decode(raw_segments[i]);
        if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
          if (got.empty()) match = false;
          params.emplace_back(want.substr(1, want.size() - 2), std::move(got));
        } else if (want != got) {
          match = false;
        }
      }
    } else {
      match = request.path == r.path;
    }
    if (!match) continue;
    path_known = true;
    if (r.method != request.method && !(r.method == "GET" && request.method == "HEAD")) continue;
    request.params = std::move(params);
    const std::string target = request.target;
    try {
      r.handler(std::move(request), respond);
    } catch (const std::exception& e) {
      spdlog::error("http_handler_failed path={} error=\"{}\"", target, e.what());
      respond({500,
               "application/json",
               {{"x-amzn-ErrorType", "InternalFailureException"}},
               R"({"message":"internal error"})"});
    }
    return;
  }
  // AWS SDKs read the error code from x-amzn-ErrorType; other clients see plain JSON.
  if (path_known)
    return respond({405,
                    "application/json",
                    {{"x-amzn-ErrorType", "MethodNotAllowedException"}},
                    R"({"message":"method not allowed"})"});
  respond({404,
           "application/json",
           {{"x-amzn-ErrorType", "UnknownOperationException"}},
           R"({"message":"not found"})"});
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
                        const std::optional<peer_certificate>& certificate) {
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
      std::string signer;
      if (router.websocket_admit()) {
        auto admission = router.websocket_admit()(to_request(req, remote, certificate));
        if (admission.refusal) {
          auto res = to_response(std::move(*admission.refusal), req);
          res.keep_alive(false);
          co_await http::async_write(stream, res, as_value);
          break;
        }
        signer = std::move(admission.signer);
      }
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
      std::unique_ptr<byte_stream> upgraded;
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        upgraded = make_websocket_stream(std::move(ws), remote, std::move(signer));
      } else {
        upgraded =
            make_secure_websocket_stream(std::move(ws), remote, certificate, std::move(signer));
      }
      router.websocket_handler()(std::move(upgraded));
      co_return;
    }
    http_response response =
        co_await async_dispatch(router, to_request(req, remote, certificate), asio::use_awaitable);
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
