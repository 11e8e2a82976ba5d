// The HTTP client: URL parsing, then requests against real loopback peers (serve_http behind a
// router for well-behaved answers, scripted peers for the rest). HTTPS is left to the end-to-end
// suites, which bring a CA the client trusts through SSL_CERT_FILE.
#include "net/http_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "net/http_server.hpp"

namespace nimbus::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

tcp::endpoint any_loopback_port() {
  return {asio::ip::address_v4::loopback(), 0};
}

std::string url_to(std::uint16_t port, std::string_view target) {
  return "http://127.0.0.1:" + std::to_string(port) + std::string(target);
}

// A response header's value, case-insensitively ("(absent)" when there is none).
std::string header_of(const http_client_response& response, std::string_view name) {
  auto same = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(a[i])) !=
          std::tolower(static_cast<unsigned char>(b[i])))
        return false;
    }
    return true;
  };
  for (const auto& [key, value] : response.headers)
    if (same(key, name)) return value;
  return "(absent)";
}

// For failure messages: what went wrong, when something did.
std::string error_of(const http_client_result& result) {
  const auto* error = std::get_if<http_client_error>(&result);
  return error != nullptr ? "error: " + error->message : "a response";
}

// serve_http behind a router on a loopback port, accepting until destroyed.
class router_server {
 public:
  router_server(asio::io_context& io, http_router router)
      : router_(std::move(router)), acceptor_(io, any_loopback_port()) {
    accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept() {
    acceptor_.async_accept([this](const error_code& ec, tcp::socket socket) {
      if (ec) return;
      serve_http(std::move(socket), router_, options_);
      accept();
    });
  }
  http_router router_;
  http_listener_options options_;
  tcp::acceptor acceptor_;
};

// A scripted peer for answers serve_http never gives: accepts one connection, reads the
// request's headers (the client's requests here have no body), writes `reply` as it is and
// closes.
class scripted_server {
 public:
  scripted_server(asio::io_context& io, std::string reply)
      : acceptor_(io, any_loopback_port()), socket_(io), reply_(std::move(reply)) {
    acceptor_.async_accept(socket_, [this](const error_code& ec) {
      if (!ec) read_request();
    });
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void read_request() {
    asio::async_read_until(socket_, asio::dynamic_buffer(request_), "\r\n\r\n",
                           [this](const error_code& ec, std::size_t) {
                             if (!ec) answer();
                           });
  }
  void answer() {
    asio::async_write(socket_, asio::buffer(reply_), [this](const error_code&, std::size_t) {
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      socket_.close(ignored);
    });
  }
  tcp::acceptor acceptor_;
  tcp::socket socket_;
  std::string request_;
  std::string reply_;
};

// A loop on its own thread with a client on it, and the servers a test starts on the same loop.
// The loop stops before anything it runs is destroyed.
class http_client_fixture : public ::testing::Test {
 protected:
  http_client_fixture()
      : work_(asio::make_work_guard(io_)), client_(io_), loop_([this] { io_.run(); }) {}
  ~http_client_fixture() override {
    work_.reset();
    io_.stop();
    loop_.join();
  }

  std::uint16_t serve(http_router router) {
    routers_.push_back(std::make_unique<router_server>(io_, std::move(router)));
    return routers_.back()->port();
  }
  std::uint16_t script(std::string reply) {
    scripts_.push_back(std::make_unique<scripted_server>(io_, std::move(reply)));
    return scripts_.back()->port();
  }

  // Sends and waits for the one result (bounded: a lost callback fails the test, not hangs).
  http_client_result send(http_client_request request) {
    auto promise = std::make_shared<std::promise<http_client_result>>();
    auto result = promise->get_future();
    client_.send(std::move(request),
                 [promise](http_client_result answer) { promise->set_value(std::move(answer)); });
    if (result.wait_for(10s) != std::future_status::ready) {
      ADD_FAILURE() << "no result within 10 s";
      return http_client_error{"(no result)", false};
    }
    return result.get();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  http_client client_;
  std::vector<std::unique_ptr<router_server>> routers_;
  std::vector<std::unique_ptr<scripted_server>> scripts_;
  std::thread loop_;
};

TEST(parse_http_url, accepts_http_and_https_urls) {
  struct good_url {
    std::string_view url;
    bool https;
    std::string_view host;
    std::uint16_t port;
    std::string_view target;
  };
  const good_url cases[] = {
      {"http://example.com", false, "example.com", 80, "/"},
      {"https://example.com/hooks/a?x=1&y=2", true, "example.com", 443, "/hooks/a?x=1&y=2"},
      {"HTTPS://Example.COM:8443/p", true, "Example.COM", 8443, "/p"},
      {"Http://10.0.0.7:8080", false, "10.0.0.7", 8080, "/"},
      {"http://[::1]:8080/x", false, "::1", 8080, "/x"},
      {"http://[::1]", false, "::1", 80, "/"},
      {"https://[2001:db8::1]/", true, "2001:db8::1", 443, "/"},
      {"http://h?q=1", false, "h", 80, "/?q=1"},
      {"http://my_host.internal:65535/a%20b", false, "my_host.internal", 65535, "/a%20b"},
      {"http://example.com./", false, "example.com.", 80, "/"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    auto url = parse_http_url(c.url);
    ASSERT_TRUE(url.has_value());
    EXPECT_EQ(url->https, c.https);
    EXPECT_EQ(url->host, c.host);
    EXPECT_EQ(url->port, c.port);
    EXPECT_EQ(url->target, c.target);
  }
}

TEST(parse_http_url, refuses_anything_else) {
  const std::string_view cases[] = {
      "",
      "example.com",
      "ftp://example.com/",
      "http//example.com",
      "http://",
      "http:///path",
      "http://:8080/",
      "http://example.com:/",
      "http://example.com:0/",
      "http://example.com:65536/",
      "http://example.com:8x/",
      "http://example.com:-1/",
      "http://example.com:1:2/",
      "http://user:secret@example.com/",
      "http://user@example.com/",
      "http://example.com/#top",
      "http://example.com/p?q#",
      "http://[::1/",
      "http://[::1]x/",
      "http://[zz::1]/",
      "http://[fe80::1%25eth0]/",
      "http://exa mple.com/",
      "http://a..b/",
      "http://.a/",
      "http://example.com/a b",
      "http://example.com/\r\nX-Injected: 1",
      "http://127.1/",  // inet_aton would read these as 127.0.0.1
      "http://0x7f.0.0.1/",
      "http://1.2.3.4.5/",
  };
  for (auto url : cases) {
    SCOPED_TRACE(url);
    EXPECT_FALSE(parse_http_url(url).has_value());
  }
}

TEST(is_loopback_host, knows_loopback_names_and_addresses) {
  for (std::string_view host : {"localhost", "LocalHost", "localhost.", "127.0.0.1", "127.8.9.10",
                                "::1", "[::1]", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (std::string_view host : {"", "example.com", "localhost.example.com", "127.0.0.1.nip.io",
                                "10.0.0.1", "128.0.0.1", "::2", "::", "::ffff:10.0.0.1"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

TEST_F(http_client_fixture, posts_a_body_with_headers_and_reads_the_answer) {
  http_router router;
  router.add(
      "POST", "/echo",
      [](const http_request& seen) {
        http_response response{201, "text/plain", {}, "echo: " + seen.body};
        for (const char* name : {"X-Custom", "Host", "Content-Length", "Connection"}) {
          response.headers.emplace_back(std::string("X-Seen-") + name,
                                        seen.header(name).value_or("(none)"));
        }
        response.headers.emplace_back("X-Seen-Target", seen.target);
        response.headers.emplace_back("X-Seen-Method", seen.method);
        return response;
      },
      route_options{.max_body = 1024, .precheck = {}});
  const auto port = serve(std::move(router));

  http_client_request request;
  request.url = url_to(port, "/echo?x=1");
  // Host and Content-Length are the client's to set: these are replaced.
  request.headers = {{"X-Custom", "hello"}, {"Host", "evil.example"}, {"content-length", "999"}};
  request.body = R"({"a":1})";
  auto result = send(std::move(request));
  const auto* response = std::get_if<http_client_response>(&result);
  ASSERT_NE(response, nullptr) << error_of(result);
  EXPECT_EQ(response->status, 201U);
  EXPECT_EQ(response->body, R"(echo: {"a":1})");
  EXPECT_EQ(header_of(*response, "content-type"), "text/plain");
  EXPECT_EQ(header_of(*response, "X-Seen-X-Custom"), "hello");
  EXPECT_EQ(header_of(*response, "X-Seen-Host"), "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(header_of(*response, "X-Seen-Content-Length"), "7");
  EXPECT_EQ(header_of(*response, "X-Seen-Connection"), "close");
  EXPECT_EQ(header_of(*response, "X-Seen-Target"), "/echo?x=1");
  EXPECT_EQ(header_of(*response, "X-Seen-Method"), "POST");
  EXPECT_EQ(client_.in_flight(), 0U);
}

TEST_F(http_client_fixture, an_error_status_is_a_response_not_an_error) {
  http_router router;
  router.add("GET", "/here", [](const http_request&) { return http_response{}; });
  http_client_request request;
  request.method = "GET";
  request.url = url_to(serve(std::move(router)), "/nowhere");
  auto result = send(std::move(request));
  const auto* response = std::get_if<http_client_response>(&result);
  ASSERT_NE(response, nullptr) << error_of(result);
  EXPECT_EQ(response->status, 404U);
}

TEST_F(http_client_fixture, a_closed_port_is_a_connection_refused_error) {
  std::uint16_t closed_port = 0;
  {
    tcp::acceptor probe(io_, any_loopback_port());
    closed_port = probe.local_endpoint().port();
  }
  http_client_request request;
  request.url = url_to(closed_port, "/");
  auto result = send(std::move(request));
  const auto* error = std::get_if<http_client_error>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->message, "connection refused");
  EXPECT_FALSE(error->timed_out);
  EXPECT_EQ(client_.in_flight(), 0U);
}

TEST_F(http_client_fixture, a_server_that_never_answers_times_out) {
  // Listening but never accepting: the kernel completes the connection and takes the request,
  // and no answer ever comes.
  tcp::acceptor silent(io_, any_loopback_port());
  http_client_request request;
  request.url = url_to(silent.local_endpoint().port(), "/");
  request.timeout = 200ms;
  const auto started = std::chrono::steady_clock::now();
  auto result = send(std::move(request));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  const auto* error = std::get_if<http_client_error>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_TRUE(error->timed_out);
  EXPECT_EQ(error->message, "timed out after 200 ms");
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_EQ(client_.in_flight(), 0U);
}

TEST_F(http_client_fixture, a_body_past_the_limit_is_truncated_and_the_response_kept) {
  std::string big(100 * 1000, ' ');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  http_router router;
  router.add("GET", "/big", [big](const http_request&) {
    return http_response{200, "text/plain", {}, big};
  });
  const auto port = serve(std::move(router));

  for (std::size_t limit : {std::size_t{0}, std::size_t{1000}, big.size(), 2 * big.size()}) {
    SCOPED_TRACE(limit);
    http_client_request request;
    request.method = "GET";
    request.url = url_to(port, "/big");
    request.max_response_body = limit;
    auto result = send(std::move(request));
    const auto* response = std::get_if<http_client_response>(&result);
    ASSERT_NE(response, nullptr) << error_of(result);
    EXPECT_EQ(response->status, 200U);
    EXPECT_EQ(response->body, big.substr(0, limit));
    EXPECT_EQ(header_of(*response, "Content-Length"), std::to_string(big.size()));
  }
}

TEST_F(http_client_fixture, reads_chunked_and_close_delimited_bodies_after_interim_answers) {
  struct scripted_case {
    std::string reply;
    std::size_t max_response_body;
    unsigned status;
    std::string body;
  };
  const std::string chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  const scripted_case cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 1024, 200,
       "until the end"},
      {chunked, 1024, 200, "hello world"},
      {chunked, 7, 200, "hello w"},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 1024,
       201, "ok"},
      {"HTTP/1.1 204 No Content\r\n\r\n", 1024, 204, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.reply);
    http_client_request request;
    request.method = "GET";
    request.url = url_to(script(c.reply), "/");
    request.max_response_body = c.max_response_body;
    auto result = send(std::move(request));
    const auto* response = std::get_if<http_client_response>(&result);
    ASSERT_NE(response, nullptr) << error_of(result);
    EXPECT_EQ(response->status, c.status);
    EXPECT_EQ(response->body, c.body);
  }
}

TEST_F(http_client_fixture, a_server_that_closes_without_answering_is_an_error) {
  http_client_request request;
  request.method = "GET";
  request.url = url_to(script(""), "/");
  auto result = send(std::move(request));
  const auto* error = std::get_if<http_client_error>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->message, "reading the response: end of stream");
  EXPECT_FALSE(error->timed_out);
}

TEST_F(http_client_fixture, a_header_that_would_split_the_request_is_refused_before_connecting) {
  tcp::acceptor watcher(io_, any_loopback_port());
  watcher.non_blocking(true);
  const std::pair<std::string, std::string> bad_headers[] = {
      {"X-Bad", "a\r\nX-Injected: 1"}, {"X-Bad", "a\nb"}, {"X-Bad", std::string("a\0b", 3)},
      {"X-Bad\r\nX-Injected", "1"},    {"Bad Name", "v"}, {"", "v"},
  };
  for (const auto& header : bad_headers) {
    SCOPED_TRACE(header.first + ": " + header.second);
    http_client_request request;
    request.url = url_to(watcher.local_endpoint().port(), "/");
    request.headers = {header};
    auto result = send(std::move(request));
    const auto* error = std::get_if<http_client_error>(&result);
    ASSERT_NE(error, nullptr);
    EXPECT_EQ(error->message, "invalid header");
    EXPECT_FALSE(error->timed_out);
  }
  tcp::socket peer(io_);
  error_code ec;
  watcher.accept(peer, ec);
  EXPECT_EQ(ec, asio::error::would_block);  // nobody connected
  EXPECT_EQ(client_.in_flight(), 0U);
}

TEST_F(http_client_fixture, an_invalid_url_or_method_is_refused) {
  http_client_request request;
  request.url = "ftp://example.com/";
  auto result = send(request);
  const auto* error = std::get_if<http_client_error>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->message, "invalid URL");

  request.url = "http://127.0.0.1:1/";
  request.method = "GET /x HTTP/1.1\r\n";
  result = send(request);
  error = std::get_if<http_client_error>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->message, "invalid method");
  EXPECT_EQ(client_.in_flight(), 0U);
}

TEST_F(http_client_fixture, https_to_a_plain_http_server_is_a_tls_error) {
  http_client_request request;
  request.method = "GET";
  request.url = "https://127.0.0.1:" + std::to_string(serve(http_router())) + "/";
  auto result = send(std::move(request));
  const auto* error = std::get_if<http_client_error>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_TRUE(error->message.starts_with("TLS: ")) << error->message;
  EXPECT_FALSE(error->timed_out);
}

// The usual shutdown order: the loop stops and its thread is joined, then the client goes, then
// the loop. The request in flight keeps its own state, which goes with the loop.
TEST(http_client, can_be_destroyed_after_its_loop_stopped_with_a_request_in_flight) {
  auto answered = std::make_shared<std::atomic<bool>>(false);
  {
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    tcp::acceptor listener(io, any_loopback_port());
    auto client = std::make_unique<http_client>(io);
    std::thread loop([&io] { io.run(); });

    http_client_request request;
    request.url = url_to(listener.local_endpoint().port(), "/slow");
    request.timeout = 60s;
    client->send(request, [answered](const http_client_result&) { answered->store(true); });
    EXPECT_EQ(client->in_flight(), 1U);
    // Once the request's headers are here, the client is waiting for the answer.
    tcp::socket peer(io);
    listener.accept(peer);
    std::string received;
    asio::read_until(peer, asio::dynamic_buffer(received), "\r\n\r\n");
    EXPECT_TRUE(received.starts_with("POST /slow HTTP/1.1\r\n")) << received;

    io.stop();
    loop.join();
    client.reset();
  }
  EXPECT_FALSE(answered->load());
}

}  // namespace
}  // namespace nimbus::net
