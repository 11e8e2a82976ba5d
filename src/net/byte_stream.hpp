#pragma once
// A connected, ordered byte stream whatever carries it (TCP, TLS, WebSocket), so protocol code
// is written once. Each stream lives on one event loop; call it only from that loop.
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
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

// Completion events of the lean server path: the stream calls its owner back, so a pending
// operation holds one pointer instead of a type-erased handler. Called on the stream's loop.
class stream_owner {
 public:
  virtual void on_read(const boost::system::error_code& ec, std::size_t bytes) = 0;
  virtual void on_written(const boost::system::error_code& ec, std::size_t bytes) = 0;
  virtual void on_readable(const boost::system::error_code& ec) = 0;

 protected:
  ~stream_owner() = default;
};

// Two ways to drive a stream: the lean owner callbacks (the broker's connections, where memory
// per idle client matters) and any Asio completion token (clients such as the load generator).
class byte_stream {
 public:
  virtual ~byte_stream() = default;

  // Lean path. `owner` must outlive the operation.
  virtual void read_into(boost::asio::mutable_buffer buffer, stream_owner& owner) = 0;
  virtual void write_from(const std::vector<boost::asio::const_buffer>& buffers,
                          stream_owner& owner) = 0;
  // Waits for data without holding a buffer (plain TCP); false when the stream cannot, because
  // a layer above the socket buffers data (TLS, WebSocket): read into a buffer instead.
  virtual bool wait_readable(stream_owner&) { return false; }
  // After on_readable: reads what is there without blocking (would_block when nothing is).
  virtual std::size_t read_available(boost::asio::mutable_buffer, boost::system::error_code& ec) {
    ec = boost::asio::error::operation_not_supported;
    return 0;
  }
  // Writes what the socket takes right now without blocking (a speculative write, so most
  // writes need no asynchronous operation at all); would_block when nothing fits or the stream
  // cannot write synchronously (TLS, WebSocket).
  virtual std::size_t write_available(const std::vector<boost::asio::const_buffer>&,
                                      boost::system::error_code& ec) {
    ec = boost::asio::error::would_block;
    return 0;
  }

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

  // Where the stream comes from, fixed when it was accepted. "host:port" of the peer:
  virtual std::string remote_address() const = 0;
  // "tcp", "tls", "ws" or "wss": which listener the client came through.
  virtual std::string_view transport() const = 0;
  // The client's certificate, for TLS streams whose client presented one.
  virtual std::shared_ptr<const peer_certificate> certificate() const { return nullptr; }
  // Who signed the WebSocket upgrade (SigV4 access key id); empty when nobody did.
  virtual std::string signer() const { return {}; }
  // When the socket was accepted: deadlines that cover a stream's set-up (TLS handshake,
  // WebSocket upgrade) count from it. A plain TCP stream is served the moment it is accepted,
  // so for it (the default) that is now.
  virtual std::chrono::steady_clock::time_point accepted_at() const {
    return std::chrono::steady_clock::now();
  }

 protected:
  virtual void read_some(boost::asio::mutable_buffer buffer, io_handler handler) = 0;
  virtual void write(const std::vector<boost::asio::const_buffer>& buffers, io_handler handler) = 0;
};

using stream_handler = std::function<void(std::unique_ptr<byte_stream>)>;

}  // namespace nimbus::net
