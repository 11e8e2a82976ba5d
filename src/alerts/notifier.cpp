// Sends alert notifications (notifier.hpp).
#include "alerts/notifier.hpp"

#include <openssl/evp.h>
#include <boost/json.hpp>

#include <algorithm>
#include <memory>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "alerts/alert_json.hpp"
#include "core/digest.hpp"
#include "core/random.hpp"
#include "mqtt/topic.hpp"
#include "pubsub/service.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

// RFC 3986 unreserved characters stay; every other byte of a value put into a URL is escaped,
// so a device id cannot change the URL's path, query or host.
std::string url_escaped(std::string_view value) {
  std::string out;
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

// What a Pub/Sub refusal means: those a retry cannot mend are final.
send_outcome pubsub_outcome(const pubsub::status& s) {
  if (s.ok()) return {send_verdict::sent, {}};
  const std::string error = fmt::format("Pub/Sub {}: {}", pubsub::code_name(s.what), s.message);
  switch (s.what) {
    case pubsub::code::not_found:
    case pubsub::code::invalid_argument:
    case pubsub::code::failed_precondition:
    case pubsub::code::permission_denied:
    case pubsub::code::unauthenticated:
    case pubsub::code::out_of_range:
    case pubsub::code::unimplemented:
      return {send_verdict::failed, error};
    default:
      return {send_verdict::retry, error};
  }
}

}  // namespace

std::string new_event_id(std::uint64_t alert_id) {
  return fmt::format("{}-{}", alert_id, core::random_hex(6));
}

std::string notification_payload(const event& e, std::string_view event_id) {
  json::object body;
  body["event_id"] = event_id;
  body["event"] = to_string(e.what);
  body["rule"] = e.rule;
  body["alert"] = alert_json(e.snapshot, false);
  return to_text(body);
}

std::vector<delivery> deliveries_for(const event& e, const rule& r, std::int64_t now_ms) {
  std::vector<delivery> out;
  std::string event_id;
  std::string payload;
  const alert& a = e.snapshot;
  const template_values plain{
      a.device_id, a.type, to_string(a.level), r.name, to_string(e.what), to_string(a.status)};
  for (std::size_t i = 0; i < r.notifications.size(); ++i) {
    const notification& n = r.notifications[i];
    if (!n.sends(e.what)) continue;
    if (event_id.empty()) {
      event_id = new_event_id(a.id);
      payload = notification_payload(e, event_id);
    }
    delivery d;
    d.key = fmt::format("{}/{}", event_id, i);
    d.event_id = event_id;
    d.rule = r.name;
    d.index = static_cast<std::uint32_t>(i);
    d.kind = n.kind;
    switch (n.kind) {
      case notification_kind::mqtt:
        d.target = expand_template(n.target, plain);
        break;
      case notification_kind::webhook: {
        const std::string device = url_escaped(a.device_id), type = url_escaped(a.type),
                          rule_name = url_escaped(r.name);
        d.target = expand_template(n.target, {device, type, to_string(a.level), rule_name,
                                              to_string(e.what), to_string(a.status)});
        break;
      }
      case notification_kind::pubsub:
        d.target = n.target;
        d.attributes = {{"type", a.type},
                        {"severity", std::string(to_string(a.level))},
                        {"device_id", a.device_id},
                        {"event", std::string(to_string(e.what))},
                        {"event_id", event_id}};
        break;
    }
    d.qos = n.qos;
    d.secret = n.secret;
    d.timeout = n.timeout;
    d.max_attempts = std::max<std::uint32_t>(n.max_attempts, 1);
    d.payload = payload;
    d.next_attempt_ms = now_ms;
    out.push_back(std::move(d));
  }
  return out;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  return core::to_hex(core::hmac_sha256(key, message));
}

send_outcome webhook_outcome(const net::http_client_result& result) {
  if (const auto* error = std::get_if<net::http_client_error>(&result))
    return {send_verdict::retry, error->message};
  const unsigned status = std::get<net::http_client_response>(result).status;
  if (status >= 200 && status < 300) return {send_verdict::sent, {}};
  const std::string error = fmt::format("HTTP {}", status);
  if (net::is_retryable_status(status)) return {send_verdict::retry, error};
  return {send_verdict::failed, error};
}

notifier::notifier(broker::broker& broker, pubsub::service* pubsub, boost::asio::io_context& io)
    : broker_(broker), pubsub_(pubsub), http_(io) {}

void notifier::send(const delivery& d, std::function<void(send_outcome)> done) {
  switch (d.kind) {
    case notification_kind::mqtt: {
      // '$' topics are the server's own ($SYS, $aws): an alert publishes beside them, not there.
      if (!mqtt::is_valid_topic_name(d.target) || d.target.starts_with('$'))
        return done({send_verdict::failed, "not a topic an alert may publish to: " + d.target});
      auto msg = std::make_shared<broker::message>();
      msg->topic = d.target;
      msg->payload = d.payload;
      msg->qos = static_cast<std::uint8_t>(d.qos > 0 ? 1 : 0);
      msg->props.payload_format_indicator = 1;
      msg->props.content_type = "application/json";
      msg->publisher = "$alerts";
      broker_.publish(std::move(msg));
      return done({send_verdict::sent, {}});
    }
    case notification_kind::webhook: {
      // A URL no retry can mend (a device id made it unusable) fails at once.
      if (!net::parse_http_url(d.target))
        return done({send_verdict::failed, "not a usable URL: " + d.target});
      net::http_client_request request;
      request.method = "POST";
      request.url = d.target;
      request.body = d.payload;
      request.timeout = d.timeout;
      request.max_response_body = 4096;  // only the status matters
      request.headers = {{"Content-Type", "application/json"},
                         {"User-Agent", "nimbus-alerts"},
                         {"X-Nimbus-Event-Id", d.event_id}};
      if (!d.secret.empty())
        request.headers.emplace_back("X-Nimbus-Signature",
                                     "sha256=" + hmac_sha256_hex(d.secret, d.payload));
      http_.send(std::move(request), [done = std::move(done)](net::http_client_result result) {
        done(webhook_outcome(result));
      });
      return;
    }
    case notification_kind::pubsub: {
      if (pubsub_ == nullptr) return done({send_verdict::failed, "no Pub/Sub service here"});
      pubsub_->publish_record(
          d.target, d.payload, "",
          [done = std::move(done)](const pubsub::status& s) { done(pubsub_outcome(s)); },
          d.attributes);
      return;
    }
  }
  done({send_verdict::failed, "unknown notification kind"});
}

}  // namespace nimbus::alerts
