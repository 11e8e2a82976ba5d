#include "net/listener.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "net/address.hpp"
#include "net/streams.hpp"

namespace nimbus::net {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto as_value = asio::as_tuple(asio::use_awaitable);

struct listener::state {
  explicit state(asio::io_context& ctx) : acceptor(ctx) {}
  tcp::acceptor acceptor;
  bool stopped = false;
};

listener::listener(io_pool& pool, const tcp::endpoint& endpoint, std::string name,
                   socket_handler on_socket)
    : state_(std::make_shared<state>(pool.at(0))), name_(std::move(name)) {
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  if (endpoint.address().is_v6()) acceptor.set_option(asio::ip::v6_only(true));
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  local_ = acceptor.local_endpoint();
  asio::co_spawn(
      acceptor.get_executor(),
      [st = state_, &pool, on_socket = std::move(on_socket), n = name_]() -> asio::awaitable<void> {
        // Out of descriptors (EMFILE) or similar: back off, doubling up to a second, and log
        // once per interval with how often it happened, instead of spinning and flooding.
        auto backoff = std::chrono::milliseconds(0);
        std::uint64_t failures = 0;
        auto last_logged = std::chrono::steady_clock::time_point{};
        while (!st->stopped) {
          auto& target = pool.next();
          auto [ec, socket] = co_await st->acceptor.async_accept(target, as_value);
          if (ec) {
            if (st->stopped || ec == asio::error::operation_aborted) break;
            ++failures;
            auto now = std::chrono::steady_clock::now();
            if (now - last_logged >= std::chrono::seconds(10)) {
              spdlog::warn("accept_failed listener={} error=\"{}\" failures_since_last_line={}", n,
                           ec.message(), failures);
              failures = 0;
              last_logged = now;
            }
            backoff = std::clamp(backoff * 2, std::chrono::milliseconds(10),
                                 std::chrono::milliseconds(1000));
            asio::steady_timer pause(st->acceptor.get_executor(), backoff);
            co_await pause.async_wait(as_value);
            continue;
          }
          backoff = std::chrono::milliseconds(0);
          asio::post(target,
                     [on_socket, s = std::move(socket)]() mutable { on_socket(std::move(s)); });
        }
      },
      asio::detached);
}

listener::~listener() {
  stop();
}

void listener::stop() {
  asio::post(state_->acceptor.get_executor(), [st = state_] {
    st->stopped = true;
    boost::system::error_code ignored;
    st->acceptor.close(ignored);
  });
}

void accept_tls(asio::ssl::context& context, tcp::socket socket, std::chrono::seconds timeout,
                stream_handler on_stream, std::function<void()> on_failure) {
  auto executor = socket.get_executor();
  auto accepted_at = std::chrono::steady_clock::now();
  auto stream = std::make_unique<tls_socket>(std::move(socket), context);
  asio::co_spawn(
      executor,
      [stream = std::move(stream), timeout, accepted_at, on_stream = std::move(on_stream),
       on_failure = std::move(on_failure)]() mutable -> asio::awaitable<void> {
        asio::steady_timer deadline(stream->get_executor(), timeout);
        auto* raw = stream.get();
        deadline.async_wait([raw](boost::system::error_code ec) {
          if (!ec) {
            boost::system::error_code ignored;
            raw->next_layer().close(ignored);
          }
        });
        auto remote = remote_of(stream->next_layer());
        auto [ec] = co_await stream->async_handshake(asio::ssl::stream_base::server, as_value);
        deadline.cancel();
        if (ec) {
          spdlog::debug("tls_handshake_failed remote={} error=\"{}\"", remote, ec.message());
          if (on_failure) on_failure();
          co_return;
        }
        on_stream(make_tls_stream(std::move(stream), accepted_at));
      },
      asio::detached);
}

}  // namespace nimbus::net
