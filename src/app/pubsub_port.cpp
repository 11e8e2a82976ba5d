#include "app/pubsub_port.hpp"

#include <spdlog/spdlog.h>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <string_view>
#include <utility>

#include "core/log.hpp"
#include "net/fd_bridge.hpp"
#include "net/listener.hpp"
#include "net/streams.hpp"

namespace nimbus::app {

namespace asio = boost::asio;

std::uint64_t peer_certificates::add(const std::string& peer, std::string certificate_id) {
  std::lock_guard lock(mutex_);
  peers_[peer] = entry{++connections_, std::move(certificate_id)};
  return connections_;
}

void peer_certificates::remove(const std::string& peer, std::uint64_t connection) {
  std::lock_guard lock(mutex_);
  if (auto found = peers_.find(peer);
      found != peers_.end() && found->second.connection == connection)
    peers_.erase(found);
}

void peer_certificates::forget(const std::string& peer) {
  std::lock_guard lock(mutex_);
  peers_.erase(peer);
}

std::string peer_certificates::certificate_of(const std::string& peer) const {
  std::lock_guard lock(mutex_);
  auto found = peers_.find(peer);
  return found == peers_.end() ? std::string() : found->second.certificate_id;
}

namespace {

enum class opening { grpc, tls, http };

// Sorts a connection by its first bytes without taking them (peeked, so they stay for whoever
// serves it); a peer that sends nothing for 10 s is closed.
class sorter : public std::enable_shared_from_this<sorter> {
 public:
  sorter(std::shared_ptr<asio::ip::tcp::socket> peer, std::function<void(opening)> sorted)
      : peer_(std::move(peer)),
        deadline_(peer_->get_executor()),
        retry_(peer_->get_executor()),
        sorted_(std::move(sorted)) {}

  void start() {
    deadline_.expires_after(std::chrono::seconds(10));
    deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->peer_->close(ignored);
    });
    look();
  }

 private:
  void look() {
    peer_->async_receive(asio::buffer(head_), asio::socket_base::message_peek,
                         [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                           self->seen(ec, n);
                         });
  }

  void seen(boost::system::error_code ec, std::size_t n) {
    if (ec || n == 0) {
      deadline_.cancel();
      return;
    }
    const std::string_view head(head_.data(), n);
    if (n < head_.size() && head == std::string_view("PRI").substr(0, n)) {
      // Too few bytes to tell yet: look again in a moment.
      retry_.expires_after(std::chrono::milliseconds(10));
      retry_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
        if (!wait_ec) self->look();
      });
      return;
    }
    deadline_.cancel();
    auto sorted = std::move(sorted_);
    if (head == "PRI") return sorted(opening::grpc);
    // A TLS handshake record: content type 22, then the record's version (3.x).
    if (head[0] == '\x16' && (n < 2 || head[1] == '\x03')) return sorted(opening::tls);
    sorted(opening::http);
  }

  std::shared_ptr<asio::ip::tcp::socket> peer_;
  std::array<char, 3> head_{};
  asio::steady_timer deadline_;
  asio::steady_timer retry_;
  std::function<void(opening)> sorted_;
};

}  // namespace

pubsub_port::pubsub_port(grpc::Server& server, const net::http_router& rest,
                         net::connection_limit& http_connections, asio::ssl::context& tls,
                         peer_certificates& peers, pubsub_port_options options)
    : server_(server),
      rest_(rest),
      http_connections_(http_connections),
      tls_(tls),
      peers_(peers),
      options_(std::move(options)) {}

void pubsub_port::accept(asio::ip::tcp::socket socket) {
  auto peer = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
  std::make_shared<sorter>(peer, [this, peer](opening kind) {
    switch (kind) {
      case opening::grpc:
        return serve_grpc(*peer);
      case opening::tls:
        return serve_tls(std::move(*peer));
      case opening::http:
        return serve_rest(std::move(*peer));
    }
  })->start();
}

void pubsub_port::serve_grpc(asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  if (!options_.allow_plain_grpc) {
    static core::log_limiter refusals(5);
    core::warn_limited(refusals,
                       "pubsub_plain_grpc_refused remote={} note=\"this port demands credentials "
                       "off loopback: use TLS (the CA is <data>/ca/root-CA.crt)\" "
                       "similar_lines_suppressed={}",
                       net::remote_of(socket));
    socket.close(ec);
    return;
  }
  const int fd = socket.release(ec);
  if (ec) return;
  peers_.forget("fd:" + std::to_string(fd));
  grpc::AddInsecureChannelFromFd(&server_, fd);
}

void pubsub_port::serve_tls(asio::ip::tcp::socket socket) {
  net::accept_tls(tls_, std::move(socket), options_.handshake_timeout,
                  [this](std::unique_ptr<net::byte_stream> stream) {
                    auto certificate = stream->certificate();
                    // Set below, before the bridge can end: both run on the stream's loop.
                    auto entry = std::make_shared<std::pair<std::string, std::uint64_t>>();
                    boost::system::error_code ec;
                    const int fd = net::bridge_to_fd(
                        std::move(stream),
                        [this, entry] {
                          if (entry->second != 0) peers_.remove(entry->first, entry->second);
                        },
                        ec);
                    if (fd < 0) {
                      spdlog::warn("pubsub_tls_bridge_failed error=\"{}\"", ec.message());
                      return;
                    }
                    // gRPC names a connection it got by fd "fd:N" (its peer string).
                    entry->first = "fd:" + std::to_string(fd);
                    peers_.forget(entry->first);
                    if (certificate != nullptr)
                      entry->second = peers_.add(entry->first, certificate->sha256_hex);
                    grpc::AddInsecureChannelFromFd(&server_, fd);
                  });
}

void pubsub_port::serve_rest(asio::ip::tcp::socket socket) {
  auto slot = http_connections_.try_acquire();
  if (!slot) {
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  net::serve_http(std::move(socket), rest_, options_.http, std::move(slot));
}

}  // namespace nimbus::app
