#pragma once
// MQTT messages to points ([[tsdb.mqtt]]): a topic filter's JSON payloads become points of one
// database and measurement, tags taken from payload keys or topic levels, fields from the
// payload's other scalars (json_fields: numbers as floats, objects flattened with '_'), the time
// from a payload key or the receive time. The default entry makes the tutorial's §2.3 publisher
// (`sensor/data`, {"device_id", "temperature", "humidity", "timestamp"}) land where its §5.1
// queries look. Pure: the server subscribes and writes.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tsdb/line_protocol.hpp"

namespace nimbus::tsdb {

struct mqtt_mapping {
  std::string filter = "sensor/#";
  std::string database = "nimbus";
  std::string measurement = "sensor_reading";
  std::vector<std::string> tag_keys = {"device_id"};  // payload keys whose values become tags
  // Topic levels (0-based) that become tags: {"site", 1} tags `site` with the second level.
  std::vector<std::pair<std::string, std::size_t>> topic_tags;
  std::vector<std::string> field_keys;  // empty: every other scalar
  std::string time_key = "timestamp";   // empty or absent from a payload: the receive time
};

// The point of one message, or nullopt with the reason in `why` (not a JSON object, no field).
// A numeric time is read by its magnitude as s, ms, us or ns; a string as RFC3339.
std::optional<point> map_message(const mqtt_mapping& mapping, std::string_view topic,
                                 std::string_view payload, std::int64_t received_ns,
                                 std::string& why);

// One [[tsdb.mqtt]] entry from its JSON form (the config's TOML table as JSON):
//   filter = "factory/+/telemetry"   (required)
//   database = "nimbus"              measurement = "sensor_reading" (required)
//   tags = ["device_id"]             payload keys that become tags (default none)
//   topic_tags = { site = 1 }        topic levels (0-based) that become tags
//   fields = ["t", "rh"]             the fields kept (default: every other scalar)
//   time_key = "timestamp"           ("" or absent: the receive time)
// nullopt with the reason in `error` for an unknown key or a value of the wrong type. The topic
// filter's syntax is the caller's to check (the broker's rules).
std::optional<mqtt_mapping> parse_mqtt_mapping(std::string_view json_text, std::string& error);

// RFC3339 ("2024-01-02T03:04:05.123Z", "+09:00" offsets, a space for the T) to ns.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);

}  // namespace nimbus::tsdb
