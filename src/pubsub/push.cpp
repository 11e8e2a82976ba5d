#include "pubsub/push.hpp"

#include <google/protobuf/util/time_util.h>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <utility>

#include "core/base64.hpp"

namespace nimbus::pubsub {

namespace json = boost::json;
using google::protobuf::util::TimeUtil;

namespace {

std::string rfc3339(std::int64_t unix_ms) {
  return TimeUtil::ToString(TimeUtil::MillisecondsToTimestamp(unix_ms));
}

// What may go out as a header: a token name and a value without control characters.
bool is_header_safe(const std::string& name, const std::string& value) {
  if (!net::is_http_token(name)) return false;
  return std::none_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

}  // namespace

net::http_client_request push_request(const google::pubsub::v1::Subscription& subscription,
                                      const delivery& d) {
  const auto& config = subscription.push_config();
  const auto& m = d.message.message;
  net::http_client_request request;
  request.method = "POST";
  request.url = config.push_endpoint();
  const auto deadline =
      subscription.ack_deadline_seconds() == 0 ? 10 : subscription.ack_deadline_seconds();
  request.timeout = std::chrono::seconds(deadline);
  request.headers.emplace_back("User-Agent", "nimbus-pubsub-push");
  const std::string publish_time = rfc3339(m.publish_time_ms);

  if (config.has_no_wrapper()) {
    request.headers.emplace_back("Content-Type", "application/octet-stream");
    request.body = m.data;
    if (config.no_wrapper().write_metadata()) {
      request.headers.emplace_back("x-goog-pubsub-subscription-name", subscription.name());
      request.headers.emplace_back("x-goog-pubsub-message-id", m.message_id);
      request.headers.emplace_back("x-goog-pubsub-publish-time", publish_time);
      if (!m.ordering_key.empty() && is_header_safe("x", m.ordering_key))
        request.headers.emplace_back("x-goog-pubsub-ordering-key", m.ordering_key);
      if (d.delivery_attempt > 0)
        request.headers.emplace_back("x-goog-pubsub-delivery-attempt",
                                     std::to_string(d.delivery_attempt));
      // Attributes that cannot be headers are left out rather than failing every attempt.
      for (const auto& [key, value] : m.attributes)
        if (is_header_safe(key, value)) request.headers.emplace_back(key, value);
    }
    return request;
  }

  json::object message;
  if (!m.attributes.empty()) {
    json::object attributes;
    for (const auto& [key, value] : m.attributes) attributes[key] = value;
    message["attributes"] = std::move(attributes);
  }
  message["data"] = core::base64_encode(m.data);
  message["messageId"] = m.message_id;
  message["message_id"] = m.message_id;
  message["publishTime"] = publish_time;
  message["publish_time"] = publish_time;
  if (!m.ordering_key.empty()) message["orderingKey"] = m.ordering_key;
  json::object body;
  body["message"] = std::move(message);
  body["subscription"] = subscription.name();
  if (d.delivery_attempt > 0) body["deliveryAttempt"] = d.delivery_attempt;
  request.headers.emplace_back("Content-Type", "application/json");
  request.body = json::serialize(body);
  return request;
}

bool is_push_acknowledgement(unsigned status) {
  return status == 102 || status == 200 || status == 201 || status == 202 || status == 204;
}

std::chrono::milliseconds push_backoff(unsigned failures) {
  if (failures == 0) return std::chrono::milliseconds(0);
  const unsigned doublings = std::min(failures - 1, 10U);  // 100 ms << 10 is past the cap
  return std::min(std::chrono::milliseconds(100) * (1U << doublings),
                  std::chrono::milliseconds(60'000));
}

}  // namespace nimbus::pubsub
