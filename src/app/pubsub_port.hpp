#pragma once
// The Pub/Sub port (--grpc, 127.0.0.1:8085): one socket serving what Google's emulator serves
// on its one port, and TLS besides. Each connection is sorted by its first bytes:
//   - HTTP/2's preface ("PRI * HTTP/2.0"): plain gRPC, handed to the gRPC server's fd channel;
//   - a TLS record (0x16): a TLS handshake here (ALPN h2, client certificates optional), then
//     the decrypted bytes go to the gRPC server through a loopback pair (net/fd_bridge.hpp), the
//     connection remembered as trusted when its client certificate is ACTIVE in the registry;
//   - anything else: HTTP/1.1 for the REST API (gcloud) and `GET /` -> "Ok".
// Where the port demands credentials (pubsub.auth), plain gRPC is refused off loopback: the
// bearer token would cross the network in clear.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "net/byte_stream.hpp"
#include "net/http_server.hpp"

namespace grpc {
class Server;
}  // namespace grpc

namespace nimbus::app {

// The client certificates (SHA-256 ids) of TLS connections on the Pub/Sub port, by their gRPC
// peer name ("fd:N"), so that each call can be checked against the registry as it is then
// (a certificate deactivated mid-connection stops working at once). Thread-safe.
// gRPC closes its end of a connection when it likes, so a descriptor number can be reused by
// the next connection before the old bridge notices: each entry carries the connection it was
// made for, and a new connection on the same number drops whatever entry is left.
class peer_certificates {
 public:
  std::uint64_t add(const std::string& peer, std::string certificate_id);  // the connection
  void remove(const std::string& peer, std::uint64_t connection);          // if still that one's
  void forget(const std::string& peer);                       // a new connection on this number
  std::string certificate_of(const std::string& peer) const;  // "" when none

 private:
  struct entry {
    std::uint64_t connection;
    std::string certificate_id;
  };
  mutable std::mutex mutex_;
  std::map<std::string, entry> peers_;  // guarded by mutex_
  std::uint64_t connections_ = 0;       // guarded by mutex_
};

struct pubsub_port_options {
  net::http_listener_options http;  // for the REST side (loopback, timeouts)
  bool allow_plain_grpc = true;     // false: plain HTTP/2 is closed (TLS only)
  std::chrono::seconds handshake_timeout{10};
};

class pubsub_port {
 public:
  // `server`, `rest`, `http_connections`, `tls` and `peers` must outlive the port's connections.
  pubsub_port(grpc::Server& server, const net::http_router& rest,
              net::connection_limit& http_connections, boost::asio::ssl::context& tls,
              peer_certificates& peers, pubsub_port_options options);

  // The listener's handler.
  void accept(boost::asio::ip::tcp::socket socket);

 private:
  void serve_grpc(boost::asio::ip::tcp::socket& socket);
  void serve_tls(boost::asio::ip::tcp::socket socket);
  void serve_rest(boost::asio::ip::tcp::socket socket);

  grpc::Server& server_;
  const net::http_router& rest_;
  net::connection_limit& http_connections_;
  boost::asio::ssl::context& tls_;
  peer_certificates& peers_;
  pubsub_port_options options_;
};

}  // namespace nimbus::app
