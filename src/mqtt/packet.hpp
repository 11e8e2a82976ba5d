#pragma once
// MQTT 3.1.1 and 5.0 control packets as plain values. The codec (codec.hpp) turns bytes into
// these and back; nothing here does I/O.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mqtt/reason_code.hpp"

namespace nimbus::mqtt {

enum class protocol_version : std::uint8_t { v31 = 3, v311 = 4, v5 = 5 };

enum class packet_type : std::uint8_t {
  connect = 1,
  connack,
  publish,
  puback,
  pubrec,
  pubrel,
  pubcomp,
  subscribe,
  suback,
  unsubscribe,
  unsuback,
  pingreq,
  pingresp,
  disconnect,
  auth,
};

using user_properties = std::vector<std::pair<std::string, std::string>>;

// Every MQTT 5 property (section 2.2.2.2). Absent properties are empty optionals. Each field is
// one row of `property_table` (mqtt/property_table.hpp), which says which packets may carry it;
// a field without its row, or a row without its field, does not compile.
struct properties {
  std::optional<std::uint8_t> payload_format_indicator;           // 0x01
  std::optional<std::uint32_t> message_expiry_interval;           // 0x02
  std::optional<std::string> content_type;                        // 0x03
  std::optional<std::string> response_topic;                      // 0x08
  std::optional<std::string> correlation_data;                    // 0x09 (binary)
  std::vector<std::uint32_t> subscription_identifiers;            // 0x0B
  std::optional<std::uint32_t> session_expiry_interval;           // 0x11
  std::optional<std::string> assigned_client_identifier;          // 0x12
  std::optional<std::uint16_t> server_keep_alive;                 // 0x13
  std::optional<std::string> authentication_method;               // 0x15
  std::optional<std::string> authentication_data;                 // 0x16 (binary)
  std::optional<std::uint8_t> request_problem_information;        // 0x17
  std::optional<std::uint32_t> will_delay_interval;               // 0x18
  std::optional<std::uint8_t> request_response_information;       // 0x19
  std::optional<std::string> response_information;                // 0x1A
  std::optional<std::string> server_reference;                    // 0x1C
  std::optional<std::string> reason_string;                       // 0x1F
  std::optional<std::uint16_t> receive_maximum;                   // 0x21
  std::optional<std::uint16_t> topic_alias_maximum;               // 0x22
  std::optional<std::uint16_t> topic_alias;                       // 0x23
  std::optional<std::uint8_t> maximum_qos;                        // 0x24
  std::optional<std::uint8_t> retain_available;                   // 0x25
  user_properties user;                                           // 0x26
  std::optional<std::uint32_t> maximum_packet_size;               // 0x27
  std::optional<std::uint8_t> wildcard_subscription_available;    // 0x28
  std::optional<std::uint8_t> subscription_identifier_available;  // 0x29
  std::optional<std::uint8_t> shared_subscription_available;      // 0x2A

  bool operator==(const properties&) const = default;
};

struct will_message {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
  properties props;  // will properties (v5)
  bool operator==(const will_message&) const = default;
};

struct connect_packet {
  protocol_version version = protocol_version::v311;
  bool clean_start = true;
  std::uint16_t keep_alive = 0;
  std::string client_id;
  std::optional<will_message> will;
  std::optional<std::string> username;
  std::optional<std::string> password;
  properties props;
  // Protocol level | 0x80: a Mosquitto bridge announcing itself (`try_private`, its default).
  bool bridge = false;
  bool operator==(const connect_packet&) const = default;
};

struct connack_packet {
  bool session_present = false;
  reason_code reason = reason_code::success;  // encoded as a 3.1.1 return code for v3.x
  properties props;
  bool operator==(const connack_packet&) const = default;
};

struct publish_packet {
  bool dup = false;
  std::uint8_t qos = 0;
  bool retain = false;
  std::string topic;
  std::uint16_t packet_id = 0;
  properties props;
  std::string payload;
  bool operator==(const publish_packet&) const = default;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
struct ack_packet {
  packet_type type = packet_type::puback;
  std::uint16_t packet_id = 0;
  reason_code reason = reason_code::success;
  properties props;
  bool operator==(const ack_packet&) const = default;
};

struct subscription_options {
  std::uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0;
  bool operator==(const subscription_options&) const = default;
};

struct subscribe_entry {
  std::string filter;
  subscription_options options;
  bool operator==(const subscribe_entry&) const = default;
};

struct subscribe_packet {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<subscribe_entry> entries;
  bool operator==(const subscribe_packet&) const = default;
};

struct suback_packet {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<reason_code> reasons;  // v3.1.1: 0, 1, 2 or 0x80
  bool operator==(const suback_packet&) const = default;
};

struct unsubscribe_packet {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<std::string> filters;
  bool operator==(const unsubscribe_packet&) const = default;
};

struct unsuback_packet {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<reason_code> reasons;  // v5 only
  bool operator==(const unsuback_packet&) const = default;
};

struct pingreq_packet {
  bool operator==(const pingreq_packet&) const = default;
};
struct pingresp_packet {
  bool operator==(const pingresp_packet&) const = default;
};

struct disconnect_packet {
  reason_code reason = reason_code::success;
  properties props;
  bool operator==(const disconnect_packet&) const = default;
};

struct auth_packet {
  reason_code reason = reason_code::success;
  properties props;
  bool operator==(const auth_packet&) const = default;
};

using packet = std::variant<connect_packet, connack_packet, publish_packet, ack_packet,
                            subscribe_packet, suback_packet, unsubscribe_packet, unsuback_packet,
                            pingreq_packet, pingresp_packet, disconnect_packet, auth_packet>;

}  // namespace nimbus::mqtt
