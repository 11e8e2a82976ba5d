#include "bridge/topic_mapping.hpp"

#include <algorithm>
#include <vector>

#include "mqtt/topic.hpp"

namespace nimbus::bridge {

namespace {

// One side's remap: `from` is stripped when the topic starts with it, `to` is put in front.
std::optional<std::string> remap(std::string_view filter, std::string_view from,
                                 std::string_view to, std::string_view topic) {
  if (!mqtt::topic_matches(filter, topic)) return std::nullopt;
  if (!from.empty() && topic.starts_with(from)) topic.remove_prefix(from.size());
  std::string out;
  out.reserve(to.size() + topic.size());
  out.append(to).append(topic);
  return out;
}

std::string check_prefix(std::string_view prefix, std::string_view side) {
  if (prefix.empty() || mqtt::is_valid_topic_name(prefix)) return {};
  return std::string(side) + " prefix '" + std::string(prefix) +
         "' must be a topic name, without + or #";
}

std::string check_filter(std::string_view prefix, std::string_view pattern, std::string_view side) {
  const std::string filter = std::string(prefix) + std::string(pattern);
  if (!mqtt::is_valid_topic_filter(filter)) {
    if (prefix.empty()) return "pattern '" + filter + "' is not a valid topic filter";
    return std::string(side) + " prefix and pattern make '" + filter +
           "', not a valid topic filter";
  }
  if (mqtt::parse_shared_filter(filter))
    return "'" + filter + "' is a shared subscription, which a bridge cannot map";
  return {};
}

// The `""` place marker of mosquitto.conf(5).
std::string unmark(std::string_view token) {
  return token == "\"\"" ? std::string() : std::string(token);
}

template <class Map>
std::optional<mapped_topic> map_first(std::span<const topic_mapping> mappings,
                                      std::string_view topic, bool outgoing, Map map) {
  for (const bool prefixed : {true, false}) {
    for (const auto& mapping : mappings) {
      if ((outgoing ? !mapping.is_out() : !mapping.is_in()) || mapping.has_prefix() != prefixed)
        continue;
      if (auto mapped = map(mapping, topic)) return mapped_topic{std::move(*mapped), &mapping};
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view to_string(topic_direction direction) {
  switch (direction) {
    case topic_direction::out:
      return "out";
    case topic_direction::in:
      return "in";
    case topic_direction::both:
      return "both";
  }
  return "out";
}

std::optional<topic_direction> parse_direction(std::string_view word) {
  std::string lower(word);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (lower == "out") return topic_direction::out;
  if (lower == "in") return topic_direction::in;
  if (lower == "both") return topic_direction::both;
  return std::nullopt;
}

std::optional<std::string> topic_mapping::to_remote(std::string_view local_topic) const {
  if (!is_out()) return std::nullopt;
  return remap(local_subscription_filter(), local_prefix, remote_prefix, local_topic);
}

std::optional<std::string> topic_mapping::to_local(std::string_view remote_topic) const {
  if (!is_in()) return std::nullopt;
  return remap(remote_subscription_filter(), remote_prefix, local_prefix, remote_topic);
}

std::variant<topic_mapping, std::string> make_topic_mapping(std::string pattern,
                                                            topic_direction direction,
                                                            std::uint8_t qos,
                                                            std::string local_prefix,
                                                            std::string remote_prefix) {
  if (qos > 2) return std::string("QoS must be 0, 1 or 2");
  for (const auto* part : {&pattern, &local_prefix, &remote_prefix})
    if (part->find('\0') != std::string::npos)
      return std::string("a topic must not contain the NUL character");
  if (auto problem = check_prefix(local_prefix, "local"); !problem.empty()) return problem;
  if (auto problem = check_prefix(remote_prefix, "remote"); !problem.empty()) return problem;
  if (pattern.empty() && (local_prefix.empty() || remote_prefix.empty()))
    return std::string("an empty pattern needs both a local and a remote prefix");
  if (auto problem = check_filter(local_prefix, pattern, "local"); !problem.empty()) return problem;
  if (auto problem = check_filter(remote_prefix, pattern, "remote"); !problem.empty())
    return problem;
  return topic_mapping{std::move(pattern), direction, qos, std::move(local_prefix),
                       std::move(remote_prefix)};
}

std::variant<topic_mapping, std::string> parse_topic_mapping(std::string_view line) {
  std::vector<std::string_view> tokens;
  for (std::size_t at = 0; at < line.size();) {
    const auto start = line.find_first_not_of(" \t", at);
    if (start == std::string_view::npos) break;
    const auto end = std::min(line.find_first_of(" \t", start), line.size());
    tokens.push_back(line.substr(start, end - start));
    at = end;
  }
  if (tokens.empty()) return std::string("empty topic line (pattern [in|out|both] [qos] ...)");
  if (tokens.size() > 5)
    return "unexpected '" + std::string(tokens[5]) + "' after the remote prefix";
  topic_direction direction = topic_direction::out;
  if (tokens.size() > 1) {
    const auto parsed = parse_direction(tokens[1]);
    if (!parsed) return "direction '" + std::string(tokens[1]) + "' must be out, in or both";
    direction = *parsed;
  }
  std::uint8_t qos = 0;
  if (tokens.size() > 2) {
    if (tokens[2].size() != 1 || tokens[2][0] < '0' || tokens[2][0] > '2')
      return "QoS '" + std::string(tokens[2]) + "' must be 0, 1 or 2";
    qos = static_cast<std::uint8_t>(tokens[2][0] - '0');
  }
  return make_topic_mapping(unmark(tokens[0]), direction, qos,
                            tokens.size() > 3 ? unmark(tokens[3]) : std::string(),
                            tokens.size() > 4 ? unmark(tokens[4]) : std::string());
}

std::optional<mapped_topic> map_out(std::span<const topic_mapping> mappings,
                                    std::string_view local_topic) {
  return map_first(mappings, local_topic, true,
                   [](const topic_mapping& m, std::string_view t) { return m.to_remote(t); });
}

std::optional<mapped_topic> map_in(std::span<const topic_mapping> mappings,
                                   std::string_view remote_topic) {
  return map_first(mappings, remote_topic, false,
                   [](const topic_mapping& m, std::string_view t) { return m.to_local(t); });
}

}  // namespace nimbus::bridge
