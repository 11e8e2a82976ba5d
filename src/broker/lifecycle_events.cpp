// AWS IoT lifecycle events: who connected, disconnected (and why), subscribed and unsubscribed,
// published as JSON on `$aws/events/...` so dashboards and rules can follow the fleet.
#include <fmt/format.h>

#include <chrono>

#include "broker/broker.hpp"
#include "core/json_string.hpp"
#include "net/address.hpp"

namespace nimbus::broker {

namespace {

std::int64_t unix_millis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// AWS sends no events for client ids with MQTT wildcards: they cannot be topic levels.
bool has_event_topic(const client_identity& who) {
  return who.client_id.find_first_of("+#/") == std::string::npos;
}

// sessionIdentifier: the connection's random 64-bit id, as a JSON string.
std::string session_text(std::uint64_t session_id) {
  return fmt::format("\"{:016x}\"", session_id);
}

// AWS's principalIdentifier: the certificate id, or the access key for SigV4 clients.
std::string principal_of(const client_identity& who) {
  if (who.certificate) return who.certificate->sha256_hex;
  if (!who.signer.empty()) return who.signer;
  return "anonymous";
}

}  // namespace

void broker::publish_event(std::string topic, std::string payload) {
  auto msg = std::make_shared<message>();
  msg->topic = std::move(topic);
  msg->payload = std::move(payload);
  msg->qos = 1;
  msg->publisher = "$aws";
  route(std::move(msg), nullptr, nullptr);
}

void broker::announce_connected(const client_identity& who, std::uint64_t session_id) {
  if (!settings_.lifecycle_events || !has_event_topic(who)) return;
  publish_event(
      "$aws/events/presence/connected/" + who.client_id,
      fmt::format(
          R"({{"clientId":{},"timestamp":{},"eventType":"connected","sessionIdentifier":{},)"
          R"("principalIdentifier":{},"ipAddress":{},"versionNumber":{}}})",
          core::json_string(who.client_id), unix_millis(), session_text(session_id),
          core::json_string(principal_of(who)), core::json_string(net::host_of(who.remote_address)),
          event_version_.fetch_add(1) + 1));
}

void broker::announce_disconnected(const client_identity& who, std::uint64_t session_id,
                                   std::string_view reason, bool client_initiated) {
  if (!settings_.lifecycle_events || !has_event_topic(who)) return;
  publish_event(
      "$aws/events/presence/disconnected/" + who.client_id,
      fmt::format(
          R"({{"clientId":{},"timestamp":{},"eventType":"disconnected","clientInitiatedDisconnect":{},)"
          R"("sessionIdentifier":{},"principalIdentifier":{},"disconnectReason":{},"versionNumber":{}}})",
          core::json_string(who.client_id), unix_millis(), client_initiated ? "true" : "false",
          session_text(session_id), core::json_string(principal_of(who)), core::json_string(reason),
          event_version_.fetch_add(1) + 1));
}

void broker::announce_subscriptions(const client_identity& who, std::uint64_t session_id,
                                    bool subscribed, const std::vector<std::string>& filters) {
  if (!settings_.lifecycle_events || !has_event_topic(who) || filters.empty()) return;
  std::string topics;
  for (const auto& f : filters) topics += (topics.empty() ? "" : ",") + core::json_string(f);
  const char* type = subscribed ? "subscribed" : "unsubscribed";
  publish_event(
      fmt::format("$aws/events/subscriptions/{}/{}", type, who.client_id),
      fmt::format(R"({{"clientId":{},"timestamp":{},"eventType":"{}","sessionIdentifier":{},)"
                  R"("principalIdentifier":{},"topics":[{}],"versionNumber":{}}})",
                  core::json_string(who.client_id), unix_millis(), type, session_text(session_id),
                  core::json_string(principal_of(who)), topics, event_version_.fetch_add(1) + 1));
}

}  // namespace nimbus::broker
