#pragma once
// The MQTT wire codec for 3.1, 3.1.1 and 5.0: frames the byte stream, decodes packets with full
// validation (malformed input becomes a reason code, never an exception), and encodes packets.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "mqtt/packet.hpp"

namespace nimbus::mqtt {

struct decode_error {
  reason_code reason = reason_code::malformed_packet;  // malformed_packet or protocol_error
  std::string_view what;                               // static description for logs
};

// The fixed header: first byte and remaining length.
struct frame_header {
  std::uint8_t first_byte = 0;
  std::uint32_t remaining_length = 0;
  std::size_t header_size = 0;  // bytes of the fixed header itself (2..5)
  std::size_t total_size() const { return header_size + remaining_length; }
  packet_type type() const { return static_cast<packet_type>(first_byte >> 4); }
};

struct need_more_bytes {};

// Reads the fixed header at the start of `bytes`.
std::variant<frame_header, need_more_bytes, decode_error> read_frame_header(std::string_view bytes);

// Decodes one packet's body (the `remaining_length` bytes after the fixed header). `version` is
// the connection's negotiated version; CONNECT carries its own and ignores it.
std::variant<packet, decode_error> decode_packet(const frame_header& header, std::string_view body,
                                                 protocol_version version);

// Appends the encoding of `p` to `out`.
void encode(const packet& p, protocol_version version, std::string& out);

// The protocol version a CONNECT body announces, read from its first bytes only, so that even a
// CONNECT that fails to decode (or is too large to read) can be refused in its own version.
std::optional<protocol_version> peek_connect_version(std::string_view body);

// Appends a PUBLISH's fixed header, topic, packet id and properties, but not its payload, so a
// payload shared by many subscribers can be written from where it lies.
void encode_publish_head(std::string& out, protocol_version version, std::uint8_t qos, bool retain,
                         bool dup, std::string_view topic, std::uint16_t packet_id,
                         const properties& props, std::size_t payload_size);

// The size `encode_publish_head` plus the payload would take, for maximum-packet-size checks.
std::size_t publish_size(protocol_version version, std::uint8_t qos, std::string_view topic,
                         const properties& props, std::size_t payload_size);

// Properties in their wire form (length prefix included), for storing them as one blob.
std::string encode_properties(const properties& props);
// Parses a blob written by `encode_properties`; nullopt if it is damaged.
std::optional<properties> decode_properties(std::string_view blob);

// True when `s` is well-formed UTF-8 without U+0000 (MQTT 1.5.4).
bool is_valid_mqtt_utf8(std::string_view s);

// Size of the variable-length encoding of `value` (1..4 bytes).
std::size_t varint_size(std::uint32_t value);

constexpr std::uint32_t max_remaining_length = 268'435'455;

}  // namespace nimbus::mqtt
