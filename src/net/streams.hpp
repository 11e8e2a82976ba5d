#pragma once
// Concrete byte streams. Kept out of byte_stream.hpp so users of the interface do not compile
// Beast and Asio SSL.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>

#include "net/byte_stream.hpp"

namespace nimbus::net {

using tls_socket = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

std::unique_ptr<byte_stream> make_tcp_stream(boost::asio::ip::tcp::socket socket);
using steady_time = std::chrono::steady_clock::time_point;

// `accepted_at`: when the TCP socket under the stream was accepted (see byte_stream).
std::unique_ptr<byte_stream> make_tls_stream(std::unique_ptr<tls_socket> socket,
                                             steady_time accepted_at = {});
// The same over the HTTPS listener's stream, after its handshake (MQTT over ALPN).
std::unique_ptr<byte_stream> make_tls_stream(
    boost::beast::ssl_stream<boost::beast::tcp_stream> stream, steady_time accepted_at = {});
// `signer`: the access key id that signed the upgrade, empty if none.
std::unique_ptr<byte_stream> make_websocket_stream(
    boost::beast::websocket::stream<boost::beast::tcp_stream> ws, std::string remote,
    std::string signer, steady_time accepted_at = {}, bool text = false);
std::unique_ptr<byte_stream> make_secure_websocket_stream(
    boost::beast::websocket::stream<boost::beast::ssl_stream<boost::beast::tcp_stream>> ws,
    std::string remote, std::optional<peer_certificate> certificate, std::string signer,
    steady_time accepted_at = {}, bool text = false);

// The verified client certificate of an established TLS session, if any.
std::optional<peer_certificate> peer_certificate_of(SSL* ssl);

std::string remote_of(const boost::asio::ip::tcp::socket& socket);

}  // namespace nimbus::net
