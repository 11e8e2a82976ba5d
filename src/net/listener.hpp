#pragma once
// A TCP listener: binds at construction (so a busy port fails start-up loudly), accepts on its
// own loop and spreads accepted sockets across the pool's loops.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <functional>
#include <memory>
#include <string>

#include "net/byte_stream.hpp"
#include "net/io_pool.hpp"

namespace nimbus::net {

// Called on the accepted socket's own loop.
using socket_handler = std::function<void(boost::asio::ip::tcp::socket)>;

class listener {
 public:
  listener(io_pool& pool, const boost::asio::ip::tcp::endpoint& endpoint, std::string name,
           socket_handler on_socket);
  ~listener();
  boost::asio::ip::tcp::endpoint local_endpoint() const { return local_; }
  const std::string& name() const { return name_; }
  void stop();

 private:
  struct state;
  std::shared_ptr<state> state_;
  boost::asio::ip::tcp::endpoint local_;
  std::string name_;
};

// Runs the server side of a TLS handshake (bounded by `timeout`) and hands the resulting stream
// to `on_stream`; a failed handshake is logged at debug level, the socket dropped and
// `on_failure` (if any) called.
void accept_tls(boost::asio::ssl::context& context, boost::asio::ip::tcp::socket socket,
                std::chrono::seconds timeout, stream_handler on_stream,
                std::function<void()> on_failure = nullptr);

}  // namespace nimbus::net
