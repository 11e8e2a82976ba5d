#include "net/streams.hpp"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/write.hpp>

#include "net/address.hpp"

namespace nimbus::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;

std::string remote_of(const asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  return ec ? std::string("unknown") : format_endpoint(ep);
}

namespace {

std::string name_to_string(X509_NAME* name) {
  if (name == nullptr) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return out;
}

// An unset time (a client's stream) means "now".
steady_time or_now(steady_time t) {
  return t == steady_time{} ? std::chrono::steady_clock::now() : t;
}

// The TCP socket under a TLS stream: Asio's over a socket, or Beast's over a tcp_stream (the
// HTTPS listener's, handing MQTT-over-ALPN connections on).
asio::ip::tcp::socket& socket_of(tls_socket& stream) {
  return stream.next_layer();
}
asio::ip::tcp::socket& socket_of(beast::ssl_stream<beast::tcp_stream>& stream) {
  return stream.next_layer().socket();
}

template <class Tls>
class tls_byte_stream final : public byte_stream {
 public:
  tls_byte_stream(std::unique_ptr<Tls> stream, steady_time accepted_at)
      : stream_(std::move(stream)),
        remote_(remote_of(socket_of(*stream_))),
        accepted_at_(or_now(accepted_at)) {
    if (auto cert = peer_certificate_of(stream_->native_handle())) {
      certificate_ = std::make_shared<const peer_certificate>(std::move(*cert));
    }
    boost::system::error_code ignored;
    socket_of(*stream_).set_option(asio::ip::tcp::no_delay(true), ignored);
    socket_of(*stream_).set_option(asio::socket_base::keep_alive(true), ignored);
  }
  void read_into(asio::mutable_buffer buffer, stream_owner& owner) override {
    stream_->async_read_some(buffer, [o = &owner](const boost::system::error_code& ec,
                                                  std::size_t n) { o->on_read(ec, n); });
  }
  void write_from(const std::vector<asio::const_buffer>& buffers, stream_owner& owner) override {
    asio::async_write(
        *stream_, buffers,
        [o = &owner](const boost::system::error_code& ec, std::size_t n) { o->on_written(ec, n); });
  }
  // Bound to the stream's executor: Beast's stream needs a concrete one (see websocket's).
  void read_some(asio::mutable_buffer buffer, io_handler handler) override {
    stream_->async_read_some(buffer,
                             asio::bind_executor(stream_->get_executor(), std::move(handler)));
  }
  void write(const std::vector<asio::const_buffer>& buffers, io_handler handler) override {
    asio::async_write(*stream_, buffers,
                      asio::bind_executor(stream_->get_executor(), std::move(handler)));
  }
  void close() override {
    boost::system::error_code ignored;
    socket_of(*stream_).shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_of(*stream_).close(ignored);
  }
  asio::any_io_executor executor() override { return stream_->get_executor(); }
  std::string remote_address() const override { return remote_; }
  std::string_view transport() const override { return "tls"; }
  std::shared_ptr<const peer_certificate> certificate() const override { return certificate_; }
  steady_time accepted_at() const override { return accepted_at_; }

 private:
  std::unique_ptr<Tls> stream_;
  std::string remote_;
  std::shared_ptr<const peer_certificate> certificate_;
  steady_time accepted_at_;
};

template <class Next>
class websocket_byte_stream final : public byte_stream {
 public:
  websocket_byte_stream(websocket::stream<Next> ws, std::string remote, std::string_view transport,
                        std::optional<peer_certificate> certificate, std::string signer,
                        steady_time accepted_at, bool text)
      : ws_(std::move(ws)),
        remote_(std::move(remote)),
        transport_(transport),
        signer_(std::move(signer)),
        accepted_at_(or_now(accepted_at)) {
    if (certificate)
      certificate_ = std::make_shared<const peer_certificate>(std::move(*certificate));
    ws_.binary(!text);
  }
  // Beast needs a concrete executor on the handler (a type-erased one cannot be required to be
  // non-blocking in Boost 1.81), so the handler is bound to the stream's.
  // MQTT travels in binary frames only (MQTT 5 section 6): a text frame ends the connection.
  void read_into(asio::mutable_buffer buffer, stream_owner& owner) override {
    ws_.async_read_some(buffer,
                        [this, o = &owner](const boost::system::error_code& ec, std::size_t n) {
                          if (!ec && ws_.got_text())
                            return o->on_read(asio::error::operation_not_supported, 0);
                          o->on_read(ec, n);
                        });
  }
  void write_from(const std::vector<asio::const_buffer>& buffers, stream_owner& owner) override {
    ws_.async_write(buffers, [o = &owner](const boost::system::error_code& ec, std::size_t n) {
      o->on_written(ec, n);
    });
  }
  void read_some(asio::mutable_buffer buffer, io_handler handler) override {
    ws_.async_read_some(buffer, asio::bind_executor(ws_.get_executor(), std::move(handler)));
  }
  void write(const std::vector<asio::const_buffer>& buffers, io_handler handler) override {
    ws_.async_write(buffers, asio::bind_executor(ws_.get_executor(), std::move(handler)));
  }
  void close() override {
    boost::system::error_code ignored;
    auto& socket = beast::get_lowest_layer(ws_).socket();
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }
  asio::any_io_executor executor() override { return ws_.get_executor(); }
  std::string remote_address() const override { return remote_; }
  std::string_view transport() const override { return transport_; }
  std::shared_ptr<const peer_certificate> certificate() const override { return certificate_; }
  std::string signer() const override { return signer_; }
  steady_time accepted_at() const override { return accepted_at_; }

 private:
  websocket::stream<Next> ws_;
  std::string remote_;
  std::string_view transport_;
  std::shared_ptr<const peer_certificate> certificate_;
  std::string signer_;
  steady_time accepted_at_;
};

}  // namespace

std::optional<peer_certificate> peer_certificate_of(SSL* ssl) {
  // The chain is not required to verify (see tls_context.hpp); the handshake proved the key.
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return std::nullopt;
  peer_certificate out;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len > 0) {
    out.der.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_Digest(out.der.data(), out.der.size(), digest, &digest_len, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < digest_len; ++i) {
      out.sha256_hex.push_back(hex[digest[i] >> 4]);
      out.sha256_hex.push_back(hex[digest[i] & 0xF]);
    }
  }
  X509_NAME* subject = X509_get_subject_name(cert);
  out.subject = name_to_string(subject);
  out.issuer = name_to_string(X509_get_issuer_name(cert));
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn)) > 0)
    out.subject_common_name = cn;
  X509_free(cert);
  return out;
}

std::unique_ptr<byte_stream> make_tls_stream(std::unique_ptr<tls_socket> socket,
                                             steady_time accepted_at) {
  return std::make_unique<tls_byte_stream<tls_socket>>(std::move(socket), accepted_at);
}

std::unique_ptr<byte_stream> make_tls_stream(beast::ssl_stream<beast::tcp_stream> stream,
                                             steady_time accepted_at) {
  using beast_tls = beast::ssl_stream<beast::tcp_stream>;
  return std::make_unique<tls_byte_stream<beast_tls>>(
      std::make_unique<beast_tls>(std::move(stream)), accepted_at);
}

std::unique_ptr<byte_stream> make_websocket_stream(websocket::stream<beast::tcp_stream> ws,
                                                   std::string remote, std::string signer,
                                                   steady_time accepted_at, bool text) {
  return std::make_unique<websocket_byte_stream<beast::tcp_stream>>(
      std::move(ws), std::move(remote), "ws", std::nullopt, std::move(signer), accepted_at, text);
}

std::unique_ptr<byte_stream> make_secure_websocket_stream(
    websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws, std::string remote,
    std::optional<peer_certificate> certificate, std::string signer, steady_time accepted_at,
    bool text) {
  return std::make_unique<websocket_byte_stream<beast::ssl_stream<beast::tcp_stream>>>(
      std::move(ws), std::move(remote), "wss", std::move(certificate), std::move(signer),
      accepted_at, text);
}

}  // namespace nimbus::net
