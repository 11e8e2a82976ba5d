#include "net/tls_context.hpp"

#include <openssl/ssl.h>

#include <span>
#include <string_view>
#include <system_error>

namespace nimbus::net {

namespace ssl = boost::asio::ssl;

std::unique_ptr<ssl::context> make_server_tls_context(const std::string& cert_file,
                                                      const std::string& key_file,
                                                      const std::string& ca_file,
                                                      client_certificates mode) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  ctx->use_certificate_chain_file(cert_file);
  ctx->use_private_key_file(key_file, ssl::context::pem);
  ctx->load_verify_file(ca_file);
  ssl::verify_mode verify = ssl::verify_peer;
  if (mode == client_certificates::required) verify |= ssl::verify_fail_if_no_peer_cert;
  ctx->set_verify_mode(verify);
  // Any certificate whose key the client proves it holds is accepted here: the device registry
  // decides who it is (registered, ACTIVE, by SHA-256), as AWS IoT accepts certificates
  // registered without their CA. The CA file still names the CA clients are asked for.
  ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
  // Session ids must be unique per context when client certificates are verified.
  static const unsigned char session_id[] = "nimbus";
  SSL_CTX_set_session_id_context(ctx->native_handle(), session_id, sizeof(session_id) - 1);
  return ctx;
}

std::unique_ptr<ssl::context> make_client_tls_context(const std::string& ca_file,
                                                      const std::string& cert_file,
                                                      const std::string& key_file,
                                                      const std::vector<std::string>& alpn) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (ca_file.empty())
    ctx->set_default_verify_paths();
  else
    ctx->load_verify_file(ca_file);
  if (!cert_file.empty()) {
    ctx->use_certificate_chain_file(cert_file);
    ctx->use_private_key_file(key_file, ssl::context::pem);
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "the key does not match the certificate");
  }
  ctx->set_verify_mode(ssl::verify_peer);
  if (!alpn.empty()) {
    std::string wire;  // each protocol as a length byte, then its name
    for (const auto& name : alpn) {
      wire.push_back(static_cast<char>(name.size()));
      wire += name;
    }
    SSL_CTX_set_alpn_protos(ctx->native_handle(),
                            reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  return ctx;
}

}  // namespace nimbus::net

namespace nimbus::net {

namespace {

constexpr std::string_view grpc_choices[] = {"h2", "http/1.1"};
constexpr std::string_view https_choices[] = {"x-amzn-mqtt-ca", "http/1.1"};

// `arg`: the span of protocols we take, ours first.
int choose_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
                const unsigned char* offered, unsigned int offered_length, void* arg) {
  const auto& choices = *static_cast<const std::span<const std::string_view>*>(arg);
  // `offered`: length-prefixed protocol names, in the client's order of preference.
  for (const std::string_view wanted : choices) {
    for (unsigned int at = 0; at < offered_length;) {
      const unsigned int length = offered[at];
      if (at + 1 + length > offered_length) break;
      if (std::string_view(reinterpret_cast<const char*>(offered + at + 1), length) == wanted) {
        *out = offered + at + 1;
        *out_length = static_cast<unsigned char>(length);
        return SSL_TLSEXT_ERR_OK;
      }
      at += 1 + length;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

void select_alpn_h2(boost::asio::ssl::context& context) {
  static const std::span<const std::string_view> choices(grpc_choices);
  SSL_CTX_set_alpn_select_cb(context.native_handle(), choose_alpn,
                             const_cast<std::span<const std::string_view>*>(&choices));
}

void select_alpn_mqtt_or_http(boost::asio::ssl::context& context) {
  static const std::span<const std::string_view> choices(https_choices);
  SSL_CTX_set_alpn_select_cb(context.native_handle(), choose_alpn,
                             const_cast<std::span<const std::string_view>*>(&choices));
}

}  // namespace nimbus::net
