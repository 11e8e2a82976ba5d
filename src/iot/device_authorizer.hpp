#pragma once
// Device authentication and authorization as AWS IoT does it. TLS clients are identified by
// their certificate, which must be registered and ACTIVE; every CONNECT, PUBLISH, SUBSCRIBE and
// delivery is then checked against the policies attached to that certificate (and to the thing
// groups of its thing), evaluated live, so a registry change applies to open connections as soon
// as it is durable (the registry's committed view).
// Clients of the plain local listeners are anonymous: allowed everything, or what a named
// registry policy allows.
#include <array>
#include <atomic>
#include <string>

#include "broker/authorizer.hpp"
#include "registry/registry.hpp"

namespace nimbus::iot {

class device_authorizer final : public broker::authorizer {
 public:
  // `anonymous_policy` empty: anonymous clients may do anything.
  device_authorizer(const registry::registry& registry, bool allow_anonymous,
                    std::string anonymous_policy)
      : registry_(registry),
        allow_anonymous_(allow_anonymous),
        anonymous_policy_(std::move(anonymous_policy)) {}

  mqtt::reason_code authorize_connect(const broker::client_identity& who,
                                      const std::optional<std::string>& password) override;
  bool may_publish(const broker::client_identity& who, std::string_view topic,
                   bool retain) override;
  bool may_subscribe(const broker::client_identity& who, std::string_view filter) override;
  bool may_receive(const broker::client_identity& who, std::string_view topic) override;

  // Checks one action for a device outside MQTT (HTTPS publish); logs and counts a denial.
  bool allowed(const broker::client_identity& who, std::string_view action,
               std::string_view resource_kind, std::string_view resource_name);
  // The decision alone (nothing logged or counted), for a check that weighs several resources.
  policy::decision decide(const broker::client_identity& who, std::string_view action,
                          std::string_view resource);
  // `arn:aws:iot:{region}:{account}:{kind}/{name}`.
  std::string resource_arn(std::string_view kind, std::string_view name) const;
  // Why a certificate may not be used ("" when it may).
  std::string certificate_refusal(const std::string& certificate_id) const {
    return registry_.certificate_refusal(certificate_id);
  }

  // `nimbus_authorization_denials_total{action=...}` lines for /metrics.
  std::string prometheus_text() const;

 private:
  enum action_index { connect, publish, retain_publish, subscribe, receive, other, action_count };
  static bool is_anonymous(const broker::client_identity& who);

  const registry::registry& registry_;
  bool allow_anonymous_;
  std::string anonymous_policy_;
  std::array<std::atomic<std::uint64_t>, action_count> denials_{};
};

}  // namespace nimbus::iot
