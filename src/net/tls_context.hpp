#pragma once
// Server TLS contexts built from PEM files.
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace nimbus::net {

enum class client_certificates { required, optional };

// TLS 1.2+ server context with `cert_file`/`key_file`, asking for client certificates issued by
// `ca_file` but accepting any the client holds the key of: the registry authenticates them.
// Throws at start-up if a file is missing or invalid.
std::unique_ptr<boost::asio::ssl::context> make_server_tls_context(const std::string& cert_file,
                                                                   const std::string& key_file,
                                                                   const std::string& ca_file,
                                                                   client_certificates mode);

// Makes `context` choose ALPN "h2" when the client offers it (gRPC over TLS insists on it), else
// "http/1.1"; clients that offer neither get no ALPN.
void select_alpn_h2(boost::asio::ssl::context& context);

}  // namespace nimbus::net
