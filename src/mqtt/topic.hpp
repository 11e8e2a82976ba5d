#pragma once
// Topic names and filters (MQTT 4.7): validation, matching and shared-subscription parsing.
#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace nimbus::mqtt {

struct topic_limits {
  std::size_t max_length = 65535;
  std::size_t max_levels = 65535;
};

// A PUBLISH topic: non-empty, no wildcards, within the limits.
bool is_valid_topic_name(std::string_view topic, const topic_limits& limits = {});
// A SUBSCRIBE filter: `#` only last and alone in its level, `+` alone in its level.
bool is_valid_topic_filter(std::string_view filter, const topic_limits& limits = {});
bool has_wildcard(std::string_view filter);

// True when `topic` matches `filter`; a leading wildcard never matches a `$` topic (4.7.2).
bool topic_matches(std::string_view filter, std::string_view topic);

// `$share/{group}/{filter}` split into its parts.
struct shared_filter {
  std::string_view group;
  std::string_view filter;
};
// nullopt when `filter` is not a shared subscription. A malformed one (empty or wildcard group,
// no filter) is reported through `is_valid_shared_filter`.
std::optional<shared_filter> parse_shared_filter(std::string_view filter);
bool is_valid_shared_filter(std::string_view filter, const topic_limits& limits = {});

// Splits on '/' (empty levels kept).
std::vector<std::string_view> split_levels(std::string_view topic);

}  // namespace nimbus::mqtt
