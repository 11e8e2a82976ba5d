#pragma once
// A connected, ordered byte stream whatever carries it (TCP, TLS, WebSocket), so protocol code
// is written once. Each stream lives on one event loop; call it only from that loop.
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
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
  std::string der;         // the leaf certificate, DER
  std::string sha256_hex;  // lowercase hex SHA-256 of the DER (the AWS certificate id)
  std::string subject_common_name;
  std::string subject;  // one-line RFC 2253 form
  std::string issuer;
};

using io_signature = void(boost::system::error_code, std::size_t);
using io_handler = boost::asio::any_completion_handler<io_signature>;

// Operations take any Asio completion token (a callback, use_awaitable, ...). Callbacks keep an
// idle connection down to one pending operation, with no coroutine frame.
class byte_stream {
 public:
  virtual ~byte_stream() = default;

  template <class Token>
  auto async_read_some(boost::asio::mutable_buffer buffer, Token&& token) {
    return boost::asio::async_initiate<Token, io_signature>(
        [this](auto handler, boost::asio::mutable_buffer b) {
          read_some(b, io_handler(std::move(handler)));
        },
        token, buffer);
  }
  // Writes all of `buffers`, which must outlive the operation (a WebSocket stream sends them as
  // one binary message).
  template <class Token>
  auto async_write(const std::vector<boost::asio::const_buffer>& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, io_signature>(
        [this, &buffers](auto handler) { write(buffers, io_handler(std::move(handler))); }, token);
  }
  // Closes at once; pending operations complete with an error.
  virtual void close() = 0;
  virtual boost::asio::any_io_executor executor() = 0;

  const std::string& remote_address() const { return remote_address_; }
  // Set for TLS streams whose client presented a verified certificate.
  const std::shared_ptr<const peer_certificate>& certificate() const { return certificate_; }
  // "tcp", "tls", "ws" or "wss": which listener the client came through.
  std::string_view transport() const { return transport_; }

 protected:
  virtual void read_some(boost::asio::mutable_buffer buffer, io_handler handler) = 0;
  virtual void write(const std::vector<boost::asio::const_buffer>& buffers, io_handler handler) = 0;

  std::string remote_address_;
  std::shared_ptr<const peer_certificate> certificate_;
  std::string_view transport_;
};

using stream_handler = std::function<void(std::unique_ptr<byte_stream>)>;

}  // namespace nimbus::net
