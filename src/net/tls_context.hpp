#pragma once
// TLS contexts built from PEM files: the listeners' (server) and the bridges' (client).
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::net {

enum class client_certificates { required, optional };

// TLS 1.2+ server context with `cert_file`/`key_file`, asking for client certificates issued by
// `ca_file` but accepting any the client holds the key of: the registry authenticates them.
// Throws at start-up if a file is missing or invalid.
std::unique_ptr<boost::asio::ssl::context> make_server_tls_context(const std::string& cert_file,
                                                                   const std::string& key_file,
                                                                   const std::string& ca_file,
                                                                   client_certificates mode);

// TLS 1.2+ client context that verifies the server against `ca_file` (the system's CAs when
// empty), presents `cert_file`/`key_file` when given (mutual TLS) and offers `alpn` (AWS IoT on
// 443 answers MQTT to "x-amzn-mqtt-ca"). Throws std::system_error for an unreadable or
// mismatched file. The caller sets SNI and the host name to verify per connection.
std::unique_ptr<boost::asio::ssl::context> make_client_tls_context(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file,
    const std::vector<std::string>& alpn);

// Makes `context` choose ALPN "h2" when the client offers it (gRPC over TLS insists on it), else
// "http/1.1"; clients that offer neither get no ALPN.
void select_alpn_h2(boost::asio::ssl::context& context);

// Makes `context` choose ALPN "x-amzn-mqtt-ca" when the client offers it (MQTT on the HTTPS
// port, as AWS IoT's 443 serves it), else "http/1.1"; clients that offer neither get no ALPN.
inline constexpr std::string_view mqtt_alpn = "x-amzn-mqtt-ca";
void select_alpn_mqtt_or_http(boost::asio::ssl::context& context);

}  // namespace nimbus::net
