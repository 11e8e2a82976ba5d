#pragma once
// A connected, ordered byte stream whatever carries it (TCP, TLS, WebSocket), so protocol code
// is written once. Each stream lives on one event loop; call it only from that loop.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nimbus::net {

// What a TLS client proved about itself, taken from its verified certificate.
struct peer_certificate {
  std::string der;                 // the leaf certificate, DER
  std::string sha256_hex;          // lowercase hex SHA-256 of the DER (the AWS certificate id)
  std::string subject_common_name;
  std::string subject;             // one-line RFC 2253 form
  std::string issuer;
};

using io_result = std::pair<boost::system::error_code, std::size_t>;

class byte_stream {
 public:
  virtual ~byte_stream() = default;
  virtual boost::asio::awaitable<io_result> async_read_some(boost::asio::mutable_buffer buffer) = 0;
  // Writes all of `buffers` (a WebSocket stream sends them as one binary message).
  virtual boost::asio::awaitable<io_result> async_write(const std::vector<boost::asio::const_buffer>& buffers) = 0;
  // Closes at once; pending operations complete with an error.
  virtual void close() = 0;
  virtual boost::asio::any_io_executor executor() = 0;

  const std::string& remote_address() const { return remote_address_; }
  // Set for TLS streams whose client presented a verified certificate.
  const std::optional<peer_certificate>& certificate() const { return certificate_; }
  // "tcp", "tls", "ws" or "wss": which listener the client came through.
  const std::string& transport() const { return transport_; }

 protected:
  std::string remote_address_;
  std::optional<peer_certificate> certificate_;
  std::string transport_;
};

using stream_handler = std::function<void(std::unique_ptr<byte_stream>)>;

}  // namespace nimbus::net
