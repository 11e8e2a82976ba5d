// A bridge's Mosquitto `topic` lines (bridge/topic_mapping.hpp). Each input line is parsed as a
// mapping and also used as a topic: every mapping parsed is mapped over every topic (plain, and
// with each mapping's prefixes in front), through the mapping itself and through map_out/map_in
// over the whole list. Nothing may crash, and:
// - a parsed mapping is what make_topic_mapping makes of its parts, its filters are valid and
//   not shared, and written back as a line (`""` for the empty parts) it parses to itself;
// - a mapped topic is the other side's prefix glued to the topic less its own prefix (when the
//   topic starts with it); from a topic name it has no wildcard, so it is a topic name unless it
//   is empty or too long (the link drops those);
// - a `both` mapping maps a topic that starts with its prefix back to itself, except where a
//   leading wildcard refuses a `$` topic (4.7.2);
// - map_out/map_in pick the first prefixed mapping that matches, else the first without
//   prefixes, as a naive loop does.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bridge/topic_mapping.hpp"
#include "mqtt/topic.hpp"

using namespace nimbus::bridge;
namespace mqtt = nimbus::mqtt;

namespace {

constexpr std::size_t max_mappings = 8;
constexpr std::size_t max_topics = 16;

void check(bool condition) {
  if (!condition) std::abort();
}

std::string marked(const std::string& part) {
  return part.empty() ? std::string("\"\"") : part;
}

void check_mapping(const topic_mapping& m) {
  check(m.qos <= 2);
  for (const auto* part : {&m.pattern, &m.local_prefix, &m.remote_prefix})
    check(part->find('\0') == std::string::npos);
  check(m.local_prefix.empty() || mqtt::is_valid_topic_name(m.local_prefix));
  check(m.remote_prefix.empty() || mqtt::is_valid_topic_name(m.remote_prefix));
  check(!m.pattern.empty() || (!m.local_prefix.empty() && !m.remote_prefix.empty()));
  for (const auto& filter : {m.local_subscription_filter(), m.remote_subscription_filter()}) {
    check(mqtt::is_valid_topic_filter(filter));
    check(!mqtt::parse_shared_filter(filter));
  }
  // The checks are a function of the parts: made again, the same mapping.
  auto again = make_topic_mapping(m.pattern, m.direction, m.qos, m.local_prefix, m.remote_prefix);
  check(std::holds_alternative<topic_mapping>(again) && std::get<topic_mapping>(again) == m);
  // Parts never hold a space or tab (the line is split on them), nor are `""` (the empty mark).
  std::string line = marked(m.pattern) + " " + std::string(to_string(m.direction)) + " " +
                     std::to_string(m.qos) + " " + marked(m.local_prefix) + " " +
                     marked(m.remote_prefix);
  auto reparsed = parse_topic_mapping(line);
  check(std::holds_alternative<topic_mapping>(reparsed) && std::get<topic_mapping>(reparsed) == m);
}

// One side of a mapping: `to` applied to `topic` gave `mapped` (or nothing).
void check_side(std::string_view filter, std::string_view from, std::string_view to,
                std::string_view topic, const std::optional<std::string>& mapped) {
  check(mapped.has_value() == mqtt::topic_matches(filter, topic));
  if (!mapped) return;
  std::string_view rest = topic;
  if (!from.empty() && rest.starts_with(from)) rest.remove_prefix(from.size());
  check(*mapped == std::string(to) + std::string(rest));
  if (mqtt::is_valid_topic_name(topic)) {
    check(!mqtt::has_wildcard(*mapped));
    check(mqtt::is_valid_topic_name(*mapped) || mapped->empty() || mapped->size() > 65535);
  }
}

// A `both` mapping, a topic on the side of `from` that starts with `from`: mapped over and
// back, it is itself again. The one exception: the other side's filter starts with a wildcard
// and the mapped topic with `$`, which such a filter never matches.
void check_round_trip(const topic_mapping& m, std::string_view topic, bool outgoing) {
  if (m.direction != topic_direction::both || !mqtt::is_valid_topic_name(topic)) return;
  const std::string& from = outgoing ? m.local_prefix : m.remote_prefix;
  if (!topic.starts_with(from)) return;
  const auto there = outgoing ? m.to_remote(topic) : m.to_local(topic);
  if (!there || !mqtt::is_valid_topic_name(*there)) return;
  const auto back = outgoing ? m.to_local(*there) : m.to_remote(*there);
  const std::string other_filter =
      outgoing ? m.remote_subscription_filter() : m.local_subscription_filter();
  if (!back) {
    check((*there)[0] == '$' && (other_filter[0] == '+' || other_filter[0] == '#'));
    return;
  }
  check(*back == topic);
}

// map_out / map_in against the rule written as a loop.
void check_map(std::span<const topic_mapping> mappings, std::string_view topic, bool outgoing) {
  const auto got = outgoing ? map_out(mappings, topic) : map_in(mappings, topic);
  const topic_mapping* expected = nullptr;
  std::optional<std::string> expected_topic;
  for (const bool prefixed : {true, false}) {
    for (const auto& m : mappings) {
      if (expected != nullptr) break;
      if ((outgoing ? !m.is_out() : !m.is_in()) || m.has_prefix() != prefixed) continue;
      auto mapped = outgoing ? m.to_remote(topic) : m.to_local(topic);
      if (mapped) {
        expected = &m;
        expected_topic = std::move(mapped);
      }
    }
  }
  if (expected == nullptr) {
    check(!got);
    return;
  }
  check(got.has_value() && got->mapping == expected && got->topic == *expected_topic);
  if (!expected->has_prefix()) check(got->topic == topic);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines;
  for (std::size_t at = 0; at <= input.size() && lines.size() < max_topics;) {
    auto end = input.find('\n', at);
    if (end == std::string_view::npos) end = input.size();
    lines.emplace_back(input.substr(at, end - at));
    at = end + 1;
  }

  std::vector<topic_mapping> mappings;
  for (const auto& line : lines) {
    auto parsed = parse_topic_mapping(line);
    if (const auto* problem = std::get_if<std::string>(&parsed)) {
      check(!problem->empty());
      continue;
    }
    const auto& mapping = std::get<topic_mapping>(parsed);
    check_mapping(mapping);
    if (mappings.size() < max_mappings) mappings.push_back(mapping);
  }

  // Each line as a topic, and with each mapping's prefixes in front so prefixed mappings match.
  std::vector<std::string> topics = lines;
  for (const auto& m : mappings) {
    for (const auto& line : lines) {
      if (!m.local_prefix.empty()) topics.push_back(m.local_prefix + line);
      if (!m.remote_prefix.empty()) topics.push_back(m.remote_prefix + line);
    }
  }

  for (const auto& topic : topics) {
    for (const auto& m : mappings) {
      const auto remote = m.to_remote(topic);
      if (m.is_out())
        check_side(m.local_subscription_filter(), m.local_prefix, m.remote_prefix, topic, remote);
      else
        check(!remote);
      const auto local = m.to_local(topic);
      if (m.is_in())
        check_side(m.remote_subscription_filter(), m.remote_prefix, m.local_prefix, topic, local);
      else
        check(!local);
      check_round_trip(m, topic, true);
      check_round_trip(m, topic, false);
    }
    check_map(mappings, topic, true);
    check_map(mappings, topic, false);
  }
  return 0;
}
