#include "iot/device_authorizer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/address.hpp"

namespace nimbus::iot {

namespace {

constexpr std::array<std::string_view, 6> action_names = {
    "iot:Connect", "iot:Publish", "iot:RetainPublish", "iot:Subscribe", "iot:Receive", "other"};

}  // namespace

bool device_authorizer::is_anonymous(const broker::client_identity& who) {
  return !who.certificate;
}

policy::decision device_authorizer::decide(const broker::client_identity& who,
                                           std::string_view action, std::string_view resource) {
  // Whoever holds the account's API credentials (a SigV4-signed WebSocket) may do anything.
  if (!who.signer.empty()) return policy::decision::allow;
  const bool anonymous = is_anonymous(who);
  // Fast path: anonymous clients without a policy (the local default) may do anything.
  if (anonymous && anonymous_policy_.empty()) return policy::decision::allow;
  const std::string source_ip = net::host_of(who.remote_address);
  registry::device_facts facts{who.client_id,
                               anonymous ? std::string_view() : who.certificate->sha256_hex,
                               source_ip, who.persistent_session, who.has_will};
  return anonymous ? registry_.evaluate_policy(anonymous_policy_, facts, action, resource)
                   : registry_.evaluate_device(facts, action, resource);
}

std::string device_authorizer::resource_arn(std::string_view kind, std::string_view name) const {
  std::string resource;
  resource.reserve(registry_.arn_prefix().size() + kind.size() + name.size() + 1);
  resource.append(registry_.arn_prefix()).append(kind).append("/").append(name);
  return resource;
}

bool device_authorizer::allowed(const broker::client_identity& who, std::string_view action,
                                std::string_view resource_kind, std::string_view resource_name) {
  const std::string resource = resource_arn(resource_kind, resource_name);
  const auto decision = decide(who, action, resource);
  if (policy::allowed(decision)) return true;
  const bool anonymous = is_anonymous(who);
  std::size_t index = other;
  for (std::size_t i = 0; i < action_names.size(); ++i)
    if (action_names[i] == action) index = i;
  denials_[index].fetch_add(1, std::memory_order_relaxed);
  // Receive is checked per delivery: a subscriber on `#` whose Receive is restricted would
  // flood the log at info, so those denials are logged at debug (and counted like the rest).
  spdlog::log(
      index == receive ? spdlog::level::debug : spdlog::level::info,
      "authorization_denied client_id=\"{}\" action={} resource=\"{}\" decision={} principal={}",
      who.client_id, action, resource,
      decision == policy::decision::deny ? "explicit_deny" : "no_allow",
      anonymous ? std::string("anonymous") : who.certificate->sha256_hex);
  return false;
}

mqtt::reason_code device_authorizer::authorize_connect(const broker::client_identity& who,
                                                       const std::optional<std::string>&) {
  if (!who.signer.empty()) return mqtt::reason_code::success;
  if (is_anonymous(who)) {
    // Only the plain listeners (bound to loopback by default) take anonymous clients; a TLS
    // client must present a registered certificate.
    bool plain = who.transport == "tcp" || who.transport == "ws";
    if (!plain || !allow_anonymous_) {
      denials_[connect].fetch_add(1, std::memory_order_relaxed);
      spdlog::info(
          "authorization_denied client_id=\"{}\" action=iot:Connect resource=\"{}client/{}\" "
          "reason=\"{}\"",
          who.client_id, registry_.arn_prefix(), who.client_id,
          plain ? "anonymous clients are not allowed" : "no client certificate");
      return mqtt::reason_code::not_authorized;
    }
  } else if (auto refusal = registry_.certificate_refusal(who.certificate->sha256_hex);
             !refusal.empty()) {
    denials_[connect].fetch_add(1, std::memory_order_relaxed);
    spdlog::info(
        "authorization_denied client_id=\"{}\" action=iot:Connect resource=\"{}client/{}\" "
        "principal={} reason=\"{}\"",
        who.client_id, registry_.arn_prefix(), who.client_id, who.certificate->sha256_hex, refusal);
    return mqtt::reason_code::not_authorized;
  }
  return allowed(who, "iot:Connect", "client", who.client_id) ? mqtt::reason_code::success
                                                              : mqtt::reason_code::not_authorized;
}

bool device_authorizer::may_publish(const broker::client_identity& who, std::string_view topic,
                                    bool retain) {
  if (!allowed(who, "iot:Publish", "topic", topic)) return false;
  return !retain || allowed(who, "iot:RetainPublish", "topic", topic);
}

bool device_authorizer::may_subscribe(const broker::client_identity& who, std::string_view filter) {
  return allowed(who, "iot:Subscribe", "topicfilter", filter);
}

bool device_authorizer::may_receive(const broker::client_identity& who, std::string_view topic) {
  return allowed(who, "iot:Receive", "topic", topic);
}

std::string device_authorizer::prometheus_text() const {
  std::string out =
      "# HELP nimbus_authorization_denials_total Requests refused by policy, by action\n"
      "# TYPE nimbus_authorization_denials_total counter\n";
  for (std::size_t i = 0; i < action_names.size(); ++i)
    out += fmt::format("nimbus_authorization_denials_total{{action=\"{}\"}} {}\n", action_names[i],
                       denials_[i].load(std::memory_order_relaxed));
  return out;
}

}  // namespace nimbus::iot
