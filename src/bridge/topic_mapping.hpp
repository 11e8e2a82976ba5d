#pragma once
// A bridge's topic mappings, as Mosquitto's `topic` line (mosquitto.conf(5), src/conf.c,
// src/bridge_topic.c):
//   topic pattern [[[ out | in | both ] qos-level] local-prefix remote-prefix]
// Direction defaults to out, QoS to 0; `""` marks an empty prefix or pattern. The bridge
// subscribes locally to local-prefix + pattern (out) and remotely to remote-prefix + pattern (in);
// a message's topic loses the prefix of the side it came from and gains the other's. Prefixes are
// glued as strings, so "L/" and "L" differ. Pure: the bridge's link and its bus subscriptions use
// it, so Mosquitto's table and its quirks are tested here, without sockets.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace nimbus::bridge {

enum class topic_direction { out, in, both };

struct topic_mapping {
  std::string pattern;  // a topic filter; "" only with both prefixes (one topic to one topic)
  topic_direction direction = topic_direction::out;
  std::uint8_t qos = 0;
  std::string local_prefix;  // "" : none
  std::string remote_prefix;

  bool is_out() const { return direction != topic_direction::in; }
  bool is_in() const { return direction != topic_direction::out; }
  bool has_prefix() const { return !local_prefix.empty() || !remote_prefix.empty(); }
  // What the bridge subscribes to: local_prefix + pattern locally (out), remote_prefix + pattern
  // on the remote (in).
  std::string local_subscription_filter() const { return local_prefix + pattern; }
  std::string remote_subscription_filter() const { return remote_prefix + pattern; }

  // The remote topic of a local message, nullopt unless this mapping is out/both and its local
  // filter matches. As Mosquitto, the local prefix is removed only when the topic starts with it
  // ("L" matches "L/#" and becomes "R/L"), so the result may even be empty ("L/" under "L/#"):
  // check it with mqtt::is_valid_topic_name before sending.
  std::optional<std::string> to_remote(std::string_view local_topic) const;
  // The local topic of a remote message: the same in the other direction (in/both).
  std::optional<std::string> to_local(std::string_view remote_topic) const;

  friend bool operator==(const topic_mapping&, const topic_mapping&) = default;
};

// The QoS a message crosses the bridge with: the smaller of its own and the mapping's.
inline std::uint8_t effective_qos(std::uint8_t message_qos, const topic_mapping& mapping) {
  return message_qos < mapping.qos ? message_qos : mapping.qos;
}

// "out", "in" or "both", in any case.
std::optional<topic_direction> parse_direction(std::string_view word);
std::string_view to_string(topic_direction direction);  // "out", "in", "both"

// A mapping from its parts, or the reason it is invalid (Mosquitto's checks, stricter where
// Mosquitto fails later at run time): qos 0..2; a prefix has no wildcard (a topic name, "" for
// none); an empty pattern needs both prefixes; prefix + pattern is a valid topic filter on each
// side and not a shared subscription ($share/...); no NUL character.
std::variant<topic_mapping, std::string> make_topic_mapping(std::string pattern,
                                                            topic_direction direction,
                                                            std::uint8_t qos,
                                                            std::string local_prefix,
                                                            std::string remote_prefix);

// Mosquitto's line, without the `topic` keyword: tokens split on spaces (and tabs), direction
// case-insensitive, `""` an empty pattern or prefix, a missing remote prefix as "". Stricter than
// Mosquitto's strtok/atoi: the QoS is exactly 0, 1 or 2, nothing may follow the remote prefix and
// no `#` comment is taken (TOML has its own). A pattern with a space needs the table form.
std::variant<topic_mapping, std::string> parse_topic_mapping(std::string_view line);

// A message's new topic and the mapping that gave it.
struct mapped_topic {
  std::string topic;  // may be invalid (see to_remote): the caller drops and counts it
  const topic_mapping* mapping = nullptr;
};

// Over a bridge's mappings, as Mosquitto's send__publish (out) and bridge__remap_topic_in (in):
// the first mapping with a prefix whose filter matches wins, in the order given; else the first
// matching mapping without prefixes, topic unchanged. nullopt when none matches (Mosquitto would
// still pass such a message on unchanged, e.g. from a stale persistent subscription; we drop it).
std::optional<mapped_topic> map_out(std::span<const topic_mapping> mappings,
                                    std::string_view local_topic);
std::optional<mapped_topic> map_in(std::span<const topic_mapping> mappings,
                                   std::string_view remote_topic);

}  // namespace nimbus::bridge
