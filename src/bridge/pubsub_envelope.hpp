#pragma once
// The MQTT <-> Pub/Sub bridge's message shapes: what an MQTT message becomes on the way up and
// what a Pub/Sub message must be to come down as a command, byte for byte as the tutorial's
// Python bridges (../shared/seed/ §4.1, §4.2) write them, JSON through python_json.hpp:
//   source_topic (§4.1)   {"source_topic": t, "data": <json.loads(payload), or {"raw": payload}>,
//                          "timestamp": time.time()}, attribute source_topic=t
//   topic_payload (§4.2)  {"topic": t, "payload": json.loads(payload)}, no attribute; a payload
//                          that is not JSON is an error there, as the tutorial's except: does
//   raw                   the payload bytes; attributes source_topic, qos, retain, and the MQTT 5
//                          user properties
// Down: {"topic": t, "payload": p} publishes json.dumps(p) on t; no topic: "command", no
// payload: {} (the tutorial's data.get defaults); raw takes the data as the payload and the
// attribute `topic`. Pure, data plane: errors are values.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace nimbus::bridge {

enum class envelope_kind { source_topic, topic_payload, raw };

// The MQTT message going up.
struct mqtt_message_view {
  std::string_view topic;
  std::string_view payload;
  std::uint8_t qos = 0;
  bool retain = false;
  std::span<const std::pair<std::string, std::string>> user_properties;  // MQTT 5, in order
};

// What is published to Pub/Sub (data, attributes, ordering key: PubsubMessage's fields).
struct pubsub_publish {
  std::string data;
  std::map<std::string, std::string, std::less<>> attributes;
  std::string ordering_key;  // empty: none
  // raw: user properties left out because Pub/Sub cannot carry them as attributes (a name that
  // is empty, starts with "goog", is longer than 256 bytes or repeats an earlier one or one of
  // ours; a value longer than 1024 bytes; past 100 attributes). Counted, not an error.
  std::size_t dropped_properties = 0;
};

struct envelope_error {
  std::string reason;  // for the bridge's log and last_error
};

// The tutorial's time.time(): `received_unix_ns` written as Python writes that float.
// With `order_by_topic`, the ordering key is the MQTT topic. Errors: a payload that is not UTF-8
// (source_topic: the tutorial's decode() raises), not JSON (topic_payload), or a topic longer
// than 1024 bytes where it becomes an attribute or ordering key (Pub/Sub's limit).
std::variant<pubsub_publish, envelope_error> wrap_upstream(envelope_kind kind,
                                                           const mqtt_message_view& message,
                                                           std::int64_t received_unix_ns,
                                                           bool order_by_topic);

// A command to publish locally.
struct command {
  std::string topic;
  std::string payload;
};

// A Pub/Sub message coming down: `data`, and the `topic` attribute when there is one (raw only).
// Errors (the message is nacked): not UTF-8 or not JSON, not a JSON object, a topic that is not a
// string or not a valid MQTT topic name (wildcards, empty, NUL, too long), or one no filter of
// `allowed_topics` matches (so "#" keeps `$` topics out, MQTT 4.7.2).
std::variant<command, envelope_error> unwrap_downstream(
    envelope_kind kind, std::string_view data, std::optional<std::string_view> topic_attribute,
    std::span<const std::string> allowed_topics);

}  // namespace nimbus::bridge
