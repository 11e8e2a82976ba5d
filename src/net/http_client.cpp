#include "net/http_client.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <exception>

namespace nimbus::net {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using boost::system::error_code;
constexpr auto as_value = asio::as_tuple(asio::use_awaitable);
// The same bound the server puts on request headers.
constexpr std::uint32_t max_response_header_bytes = 16 * 1024;
// Beast refuses fields past 64 KiB with an exception; servers refuse far less.
constexpr std::size_t max_request_field_bytes = 16 * 1024;

namespace {

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// A header value must not end its line early (request splitting).
bool is_safe_header_value(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// A DNS name (letters, digits, '-', '_', dots between labels) or a dotted-quad IPv4 address. A
// last label starting with a digit makes it an address: "127.1" or "0x7f.0.0.1" would reach
// hosts the caller cannot see in the text (inet_aton's forms), so they are refused.
bool is_valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '.') return false;
  std::string_view labels = host.ends_with('.') ? host.substr(0, host.size() - 1) : host;
  if (labels.empty() || labels.ends_with('.') || labels.find("..") != std::string_view::npos)
    return false;
  for (char c : labels) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  auto last_label = labels.substr(labels.rfind('.') + 1);  // npos + 1 == 0: the whole name
  if (!std::isdigit(static_cast<unsigned char>(last_label.front()))) return true;
  error_code ec;
  asio::ip::make_address_v4(std::string(labels), ec);
  return !ec && labels.size() == host.size();
}

// 1 to 65535, digits only.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

// Host as the Host header and the request line's authority carry it.
std::string host_header(const http_url& url) {
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != (url.https ? 443 : 80)) host += ":" + std::to_string(url.port);
  return host;
}

// An error as a sentence fragment: "connection refused", "certificate verify failed". OpenSSL
// errors without asio's " (SSL routines)" suffix.
std::string describe(const error_code& ec) {
  std::string text;
  if (ec.category() == asio::error::get_ssl_category()) {
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    text = reason != nullptr ? reason : ec.message();
  } else {
    text = ec.message();
  }
  if (!text.empty()) text.front() = lower(text.front());
  return text;
}

std::string to_std_string(boost::beast::string_view text) {
  return {text.data(), text.size()};
}

// 1xx answers other than 101 (100 Continue, 103 Early Hints) come before the real one.
bool is_interim(unsigned status) {
  return status >= 100 && status < 200 && status != 101;
}

// A TLS peer that closes without close_notify ends a body delimited by the connection's end as a
// plain close would (as Beast does for a plain eof); a body it cut short stays an error.
template <class Parser>
void accept_tls_truncation(error_code& ec, Parser& parser) {
  if (ec == asio::ssl::error::stream_truncated && parser.got_some()) {
    ec = {};
    parser.put_eof(ec);
  }
}

}  // namespace

struct http_client_state {
  http_client_state() : tls(asio::ssl::context::tls_client) {
    tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1);
    tls.set_verify_mode(asio::ssl::verify_peer);
    // The system store, or SSL_CERT_FILE / SSL_CERT_DIR when set (how tests bring their CA).
    tls.set_default_verify_paths();
  }
  asio::ssl::context tls;
  std::atomic<std::size_t> in_flight{0};
};

namespace {

using strand_type = asio::strand<asio::io_context::executor_type>;

// One request's life, from resolve to its callback. Owned by its coroutine and its timer's
// pending wait, not by the client, so it may outlive the client; touched on its strand only.
// Whichever ends first (the exchange or the timer) finishes it; the other then finds
// `is_finished` and stops.
struct http_exchange {
  explicit http_exchange(const strand_type& on)
      : executor(on), resolver(on), timer(on), plain(on) {}

  tcp::socket& socket() { return secure ? secure->next_layer() : plain; }

  // Calls `done` once, with the in-flight count already lowered, and drops the connection:
  // a response read whole or truncated, or an error, needs nothing more from the peer.
  void finish(http_client_result result) {
    if (is_finished) return;
    is_finished = true;
    timer.cancel();
    resolver.cancel();
    error_code ignored;
    socket().close(ignored);
    client->in_flight.fetch_sub(1, std::memory_order_acq_rel);
    auto callback = std::move(done);
    done = nullptr;
    if (callback) callback(std::move(result));
  }
  void fail(std::string message) { finish(http_client_error{std::move(message), false}); }

  strand_type executor;
  std::shared_ptr<http_client_state> client;
  http_url url;
  bool host_is_address = false;  // no SNI for IP literals (RFC 6066 3)
  http::request<http::string_body> request;
  std::chrono::milliseconds timeout{0};
  std::size_t max_response_body = 0;
  std::function<void(http_client_result)> done;
  bool is_finished = false;

  tcp::resolver resolver;
  asio::steady_timer timer;
  tcp::socket plain;                                     // http
  std::optional<asio::ssl::stream<tcp::socket>> secure;  // https: holds its own socket
};

// Writes the request and reads the answer: headers whole, the body up to max_response_body.
// The body is read through a fixed window (buffer_body), so a larger body costs no more memory
// than the limit, and what lies past the limit is never read.
template <class Stream>
asio::awaitable<void> exchange_messages(Stream& stream, std::shared_ptr<http_exchange> x) {
  auto [write_ec, written] = co_await http::async_write(stream, x->request, as_value);
  if (x->is_finished) co_return;
  if (write_ec) {
    x->fail("sending the request: " + describe(write_ec));
    co_return;
  }

  boost::beast::flat_buffer buffer;
  std::optional<http::response_parser<http::buffer_body>> parser;
  do {
    parser.emplace();
    parser->header_limit(max_response_header_bytes);
    parser->body_limit(boost::none);  // max_response_body truncates instead of failing
    if (x->request.method() == http::verb::head) parser->skip(true);
    auto [header_ec, header_bytes] =
        co_await http::async_read_header(stream, buffer, *parser, as_value);
    if (x->is_finished) co_return;
    if (header_ec) {
      x->fail("reading the response: " + describe(header_ec));
      co_return;
    }
  } while (is_interim(parser->get().result_int()));

  http_client_response response;
  std::array<char, 16 * 1024> window{};
  while (!parser->is_done() && response.body.size() < x->max_response_body) {
    auto& body = parser->get().body();
    body.data = window.data();
    body.size = window.size();
    auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer, *parser, as_value);
    if (x->is_finished) co_return;
    const std::size_t received = window.size() - parser->get().body().size;
    response.body.append(window.data(),
                         std::min(received, x->max_response_body - response.body.size()));
    error_code read_ec = body_ec;
    if (read_ec == http::error::need_buffer) read_ec = {};  // the window is full, not an error
    accept_tls_truncation(read_ec, *parser);
    if (read_ec) {
      x->fail("reading the response: " + describe(read_ec));
      co_return;
    }
  }

  const auto& message = parser->get();
  response.status = message.result_int();
  for (const auto& field : message)
    response.headers.emplace_back(to_std_string(field.name_string()), to_std_string(field.value()));
  x->finish(std::move(response));
}

asio::awaitable<void> run_exchange(std::shared_ptr<http_exchange> x) {
  // One deadline for every step: on expiry the callback gets the timeout at once, even while
  // getaddrinfo (which cannot be interrupted) is still running; closing the socket ends the
  // pending step.
  x->timer.expires_after(x->timeout);
  x->timer.async_wait([x](const error_code& ec) {
    if (ec) return;  // cancelled: finished first
    x->finish(http_client_error{fmt::format("timed out after {} ms", x->timeout.count()), true});
  });

  auto [resolve_ec, endpoints] =
      co_await x->resolver.async_resolve(x->url.host, std::to_string(x->url.port), as_value);
  if (x->is_finished) co_return;
  if (resolve_ec) {
    x->fail(fmt::format("cannot resolve {}: {}", x->url.host, describe(resolve_ec)));
    co_return;
  }
  auto [connect_ec, endpoint] = co_await asio::async_connect(x->socket(), endpoints, as_value);
  if (x->is_finished) co_return;
  if (connect_ec) {
    x->fail(describe(connect_ec));
    co_return;
  }
  if (!x->secure) {
    co_await exchange_messages(x->plain, x);
    co_return;
  }

  auto& tls = *x->secure;
  std::string server_name = x->url.host;
  if (server_name.ends_with('.')) server_name.pop_back();  // SNI and certificates carry no root dot
  if (!x->host_is_address &&
      SSL_set_tlsext_host_name(tls.native_handle(), server_name.c_str()) != 1) {
    x->fail("TLS: cannot set the server name");
    co_return;
  }
  // asio's check refuses a certificate for another name without saying why; recording the
  // reason makes the error read "certificate verify failed (hostname mismatch)".
  auto verify_name = [check = asio::ssl::host_name_verification(server_name),
                      is_address = x->host_is_address](bool preverified,
                                                       asio::ssl::verify_context& context) {
    if (check(preverified, context)) return true;
    if (preverified) {
      X509_STORE_CTX_set_error(context.native_handle(), is_address ? X509_V_ERR_IP_ADDRESS_MISMATCH
                                                                   : X509_V_ERR_HOSTNAME_MISMATCH);
    }
    return false;
  };
  error_code verify_ec;
  tls.set_verify_callback(verify_name, verify_ec);
  if (verify_ec) {
    x->fail("TLS: " + describe(verify_ec));
    co_return;
  }
  auto [handshake_ec] = co_await tls.async_handshake(asio::ssl::stream_base::client, as_value);
  if (x->is_finished) co_return;
  if (handshake_ec) {
    std::string message = "TLS: " + describe(handshake_ec);
    // Why the certificate was refused, when it was: the handshake error alone does not say.
    const long verify_result = SSL_get_verify_result(tls.native_handle());
    if (verify_result != X509_V_OK)
      message += fmt::format(" ({})", X509_verify_cert_error_string(verify_result));
    x->fail(std::move(message));
    co_return;
  }
  co_await exchange_messages(tls, x);
}

}  // namespace

std::optional<http_url> parse_http_url(std::string_view url) {
  http_url out;
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  const auto scheme = url.substr(0, scheme_end);
  if (equals_ignoring_case(scheme, "https")) {
    out.https = true;
  } else if (!equals_ignoring_case(scheme, "http")) {
    return std::nullopt;
  }
  const auto rest = url.substr(scheme_end + 3);
  // A fragment belongs to the client and is never sent; userinfo would be sent in the clear.
  if (rest.find('#') != std::string_view::npos) return std::nullopt;
  const auto authority_end = rest.find_first_of("/?");
  const auto authority = rest.substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) return std::nullopt;

  std::optional<std::string_view> port_text;
  if (authority.starts_with('[')) {
    const auto bracket_end = authority.find(']');
    if (bracket_end == std::string_view::npos) return std::nullopt;
    const auto host = authority.substr(1, bracket_end - 1);
    // Zone ids ("%25eth0") name an interface of this machine, not a host: refused.
    if (host.find('%') != std::string_view::npos) return std::nullopt;
    error_code ec;
    asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return std::nullopt;
    out.host = std::string(host);
    const auto after = authority.substr(bracket_end + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    const auto host = authority.substr(0, colon);
    if (!is_valid_host(host)) return std::nullopt;
    out.host = std::string(host);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (port_text) {
    auto port = parse_port(*port_text);
    if (!port) return std::nullopt;
    out.port = *port;
  } else {
    out.port = out.https ? 443 : 80;
  }

  const auto target =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  // The target goes on the request line as it is: no spaces, controls or raw non-ASCII bytes
  // (they must come percent-encoded).
  for (char c : target) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f) return std::nullopt;
  }
  out.target = target.starts_with('/') ? std::string(target) : "/" + std::string(target);
  return out;
}

bool is_http_token(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

bool is_loopback_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (equals_ignoring_case(host, "localhost") || equals_ignoring_case(host, "localhost."))
    return true;
  error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  if (ec) return false;
  if (address.is_loopback()) return true;
  // ::ffff:127.x.y.z reaches the IPv4 loopback through a dual-stack socket.
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return address.to_v6().to_bytes()[12] == 127;
  return false;
}

http_client::http_client(asio::io_context& io)
    : io_(io), state_(std::make_shared<http_client_state>()) {}

http_client::~http_client() = default;

std::size_t http_client::in_flight() const {
  return state_->in_flight.load(std::memory_order_acquire);
}

void http_client::send(http_client_request request, std::function<void(http_client_result)> done) {
  state_->in_flight.fetch_add(1, std::memory_order_acq_rel);
  // A request refused before any I/O still answers on `io`, never inside send().
  auto refuse = [this, &done](std::string reason) {
    asio::post(io_,
               [state = state_, callback = std::move(done), text = std::move(reason)]() mutable {
                 state->in_flight.fetch_sub(1, std::memory_order_acq_rel);
                 if (callback) callback(http_client_error{std::move(text), false});
               });
  };

  auto url = parse_http_url(request.url);
  if (!url) return refuse("invalid URL");
  if (!is_http_token(request.method)) return refuse("invalid method");

  http::request<http::string_body> message;
  message.version(11);
  message.method_string(request.method);
  message.target(url->target);
  for (const auto& [name, value] : request.headers) {
    if (!is_http_token(name) || !is_safe_header_value(value)) return refuse("invalid header");
    if (name.size() + value.size() > max_request_field_bytes) return refuse("header too large");
    // Ours to set: they describe the connection and the body as this client sends them.
    if (equals_ignoring_case(name, "Host") || equals_ignoring_case(name, "Content-Length") ||
        equals_ignoring_case(name, "Connection") || equals_ignoring_case(name, "Transfer-Encoding"))
      continue;
    message.insert(name, value);
  }
  message.set(http::field::host, host_header(*url));
  message.set(http::field::connection, "close");
  message.body() = std::move(request.body);
  message.content_length(message.body().size());

  auto x = std::make_shared<http_exchange>(asio::make_strand(io_));
  x->client = state_;
  error_code not_an_address;
  asio::ip::make_address(url->host, not_an_address);
  x->host_is_address = !not_an_address;
  x->url = std::move(*url);
  x->request = std::move(message);
  x->timeout = request.timeout;
  x->max_response_body = request.max_response_body;
  x->done = std::move(done);
  if (x->url.https) x->secure.emplace(tcp::socket(x->executor), state_->tls);
  // The exception of a throwing `done` (a caller's bug) reaches io.run() like any handler's.
  asio::co_spawn(x->executor, run_exchange(x), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

}  // namespace nimbus::net
