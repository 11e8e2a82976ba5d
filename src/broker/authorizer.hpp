#pragma once
// The authentication/authorization hook. The broker asks it at CONNECT, PUBLISH, SUBSCRIBE and
// at every delivery (Receive); the registry supplies a policy-evaluating implementation. Calls
// come from any event loop and must not block.
#include <memory>
#include <optional>
#include <string>

#include "mqtt/reason_code.hpp"
#include "net/byte_stream.hpp"

namespace nimbus::broker {

// Who a connection is, as far as authorization cares. Immutable after CONNECT.
struct client_identity {
  std::string client_id;
  std::string_view transport;  // tcp, tls, ws, wss, https (a literal)
  std::string remote_address;
  std::shared_ptr<const net::peer_certificate> certificate;
  std::string signer;  // SigV4 access key that signed a WebSocket upgrade (account credentials)
  bool persistent_session = false;  // asked to keep its session (iot:ConnectAttributes)
  bool has_will = false;
};

class authorizer {
 public:
  virtual ~authorizer() = default;
  // success, or the reason to refuse (not_authorized, bad_username_or_password, banned, ...).
  virtual mqtt::reason_code authorize_connect(const client_identity& who,
                                              const std::optional<std::string>& password) = 0;
  virtual bool may_publish(const client_identity& who, std::string_view topic, bool retain) = 0;
  virtual bool may_subscribe(const client_identity& who, std::string_view filter) = 0;
  virtual bool may_receive(const client_identity& who, std::string_view topic) = 0;
};

// Allows everything to certificate clients and, when `allow_anonymous`, to everyone else. For
// tests and tools without a registry; the server uses iot::device_authorizer.
class local_authorizer final : public authorizer {
 public:
  explicit local_authorizer(bool allow_anonymous) : allow_anonymous_(allow_anonymous) {}
  mqtt::reason_code authorize_connect(const client_identity& who,
                                      const std::optional<std::string>&) override {
    if (who.certificate) return mqtt::reason_code::success;
    return allow_anonymous_ ? mqtt::reason_code::success : mqtt::reason_code::not_authorized;
  }
  bool may_publish(const client_identity&, std::string_view, bool) override { return true; }
  bool may_subscribe(const client_identity&, std::string_view) override { return true; }
  bool may_receive(const client_identity&, std::string_view) override { return true; }

 private:
  bool allow_anonymous_;
};

}  // namespace nimbus::broker
