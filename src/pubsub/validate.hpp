#pragma once
// What a request must be before the service looks anything up: names, bounds and Google's
// limits (reference §3). Pure functions over the wire types, shared by every wire (the service
// calls them), and fuzzed with the REST JSON that carries them (fuzz/pubsub_rest_fuzz.cpp).
#include <cstddef>
#include <cstdint>

#include <google/protobuf/duration.pb.h>

#include "google/pubsub/v1/pubsub.pb.h"
#include "pubsub/status.hpp"

namespace nimbus::pubsub {

namespace v1 = google::pubsub::v1;

// Google's limits and defaults.
inline constexpr int max_messages_per_publish = 1000;
inline constexpr std::size_t max_publish_bytes = 10'000'000;
inline constexpr int max_attributes = 100;
inline constexpr std::size_t max_attribute_key = 256;
inline constexpr std::size_t max_attribute_value = 1024;
inline constexpr std::size_t max_ordering_key = 1024;
inline constexpr std::int64_t min_retention_s = 10 * 60;
inline constexpr std::int64_t max_retention_s = 31LL * 24 * 3600;
inline constexpr std::int64_t default_retention_s = 7LL * 24 * 3600;
inline constexpr std::int64_t min_expiration_ttl_s = 24 * 3600;
inline constexpr std::int64_t default_expiration_ttl_s = 31LL * 24 * 3600;

std::int64_t seconds_of(const google::protobuf::Duration& d);
google::protobuf::Duration duration_of(std::int64_t seconds);

status check_message(const v1::PubsubMessage& m);
// The topic's name, the message count and size, and each message.
status check_publish(const v1::PublishRequest& request);
// The name, the retention, and the features Nimbus does not have (schemas, ingestion, KMS).
status check_topic(const v1::Topic& topic);
// Every field's bounds (create and update), with Google's defaults filled in; whether the
// dead-letter topic exists is the service's to check. `creating`: the filter is parsed (it is
// immutable afterwards).
status normalise_subscription(v1::Subscription& s, bool creating);

}  // namespace nimbus::pubsub
