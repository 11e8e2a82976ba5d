#include "pubsub/validate.hpp"

#include <string>
#include <variant>

#include "pubsub/filter.hpp"
#include "pubsub/names.hpp"

namespace nimbus::pubsub {

namespace {

status invalid(std::string message) {
  return status::error(code::invalid_argument, std::move(message));
}

}  // namespace

std::int64_t seconds_of(const google::protobuf::Duration& d) {
  return d.seconds();
}

google::protobuf::Duration duration_of(std::int64_t s) {
  google::protobuf::Duration d;
  d.set_seconds(s);
  return d;
}

// Checks one message of a PublishRequest (reference §3 limits).
status check_message(const v1::PubsubMessage& m) {
  if (m.data().empty() && m.attributes().empty())
    return invalid("Some messages contain no data and no attribute.");
  if (m.attributes_size() > max_attributes)
    return invalid("Some messages have too many attributes (maximum 100).");
  for (const auto& [k, v] : m.attributes()) {
    if (k.empty() || k.size() > max_attribute_key)
      return invalid("An attribute key is empty or longer than 256 bytes: " + k.substr(0, 64));
    if (k.starts_with("goog")) return invalid("Attribute keys must not start with goog: " + k);
    if (v.size() > max_attribute_value)
      return invalid("An attribute value is longer than 1024 bytes (key " + k + ").");
  }
  if (m.ordering_key().size() > max_ordering_key)
    return invalid("An ordering key is longer than 1024 bytes.");
  return {};
}

status check_publish(const v1::PublishRequest& request) {
  if (auto parsed = parse_name(request.topic(), resource_kind::topic);
      std::holds_alternative<status>(parsed))
    return std::get<status>(parsed);
  if (request.messages_size() == 0) return invalid("The request contains no messages.");
  if (request.messages_size() > max_messages_per_publish)
    return invalid("The request contains too many messages (maximum 1000).");
  if (request.ByteSizeLong() > max_publish_bytes)
    return invalid("The request is larger than 10 MB.");
  for (const auto& m : request.messages())
    if (auto s = check_message(m); !s.ok()) return s;
  return {};
}

status check_topic(const v1::Topic& topic) {
  if (auto parsed = parse_name(topic.name(), resource_kind::topic);
      std::holds_alternative<status>(parsed))
    return std::get<status>(parsed);
  if (topic.has_message_retention_duration()) {
    const auto r = seconds_of(topic.message_retention_duration());
    if (r < min_retention_s || r > max_retention_s)
      return invalid("Invalid message retention duration: must be between 10 minutes and 31 days.");
  }
  if (topic.has_ingestion_data_source_settings() || topic.message_transforms_size() > 0 ||
      !topic.kms_key_name().empty() || topic.has_schema_settings())
    return invalid("Schemas, ingestion, transforms and KMS keys are not supported.");
  return {};
}

status normalise_subscription(v1::Subscription& s, bool creating) {
  if (s.has_bigquery_config() || s.has_cloud_storage_config() || s.has_bigtable_config())
    return invalid("BigQuery, Cloud Storage and Bigtable subscriptions are not supported.");
  if (s.ack_deadline_seconds() == 0) s.set_ack_deadline_seconds(10);
  if (s.ack_deadline_seconds() < 10 || s.ack_deadline_seconds() > 600)
    return invalid("Invalid ack deadline: must be between 10 and 600 seconds (got " +
                   std::to_string(s.ack_deadline_seconds()) + ").");
  if (!s.has_message_retention_duration()) {
    *s.mutable_message_retention_duration() = duration_of(default_retention_s);
  } else {
    const auto r = seconds_of(s.message_retention_duration());
    if (r < min_retention_s || r > max_retention_s)
      return invalid(
          "Invalid message retention duration: must be between 10 minutes and "
          "31 days.");
  }
  if (!s.has_expiration_policy()) {
    *s.mutable_expiration_policy()->mutable_ttl() = duration_of(default_expiration_ttl_s);
  } else if (s.expiration_policy().has_ttl() &&
             seconds_of(s.expiration_policy().ttl()) < min_expiration_ttl_s) {
    return invalid("Invalid expiration policy: the TTL must be at least 1 day.");
  }
  if (creating && !s.filter().empty()) {
    auto parsed = filter::parse(s.filter());
    if (const auto* e = std::get_if<filter_error>(&parsed))
      return invalid("Invalid filter at position " + std::to_string(e->position) + ": " +
                     e->message);
  }
  if (s.has_dead_letter_policy() && !s.dead_letter_policy().dead_letter_topic().empty()) {
    auto* policy = s.mutable_dead_letter_policy();
    if (policy->max_delivery_attempts() == 0) policy->set_max_delivery_attempts(5);
    if (policy->max_delivery_attempts() < 5 || policy->max_delivery_attempts() > 100)
      return invalid("Invalid max_delivery_attempts: must be between 5 and 100.");
    if (auto parsed = parse_name(policy->dead_letter_topic(), resource_kind::topic);
        std::holds_alternative<status>(parsed))
      return std::get<status>(parsed);
  }
  if (s.has_retry_policy()) {
    auto* retry = s.mutable_retry_policy();
    if (!retry->has_minimum_backoff()) *retry->mutable_minimum_backoff() = duration_of(10);
    if (!retry->has_maximum_backoff()) *retry->mutable_maximum_backoff() = duration_of(600);
    const auto lo = seconds_of(retry->minimum_backoff());
    const auto hi = seconds_of(retry->maximum_backoff());
    if (lo < 0 || hi > 600 || lo > hi)
      return invalid(
          "Invalid retry policy: backoffs must be within 0 to 600 seconds and the "
          "minimum not above the maximum.");
  }
  if (s.has_push_config() && !s.push_config().push_endpoint().empty()) {
    const auto& endpoint = s.push_config().push_endpoint();
    if (!endpoint.starts_with("http://") && !endpoint.starts_with("https://"))
      return invalid("Invalid push endpoint: " + endpoint);
  }
  s.set_state(v1::Subscription::ACTIVE);
  return {};
}

}  // namespace nimbus::pubsub
