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

}  // namespace nimbus::net
