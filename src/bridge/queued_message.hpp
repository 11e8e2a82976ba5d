#pragma once
// A bridged message as the store-and-forward queue (forward_queue.hpp) keeps it: one record
// each, written by the bridge at enqueue and read back by its link. The queue sees bytes only.
//
// Version 1, little-endian: u8 version (1) | u8 flags (bits 0-1 QoS, bit 2 retain) |
// i64 enqueued_ms | i64 expires_at_ms | u16 topic length | topic | u32 properties length |
// properties | payload (the rest). Records are checksummed by the log, so a record that does not
// decode was written by a newer Nimbus (another version) or is a bug, never a torn write.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::bridge {

struct queued_message {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
  std::string properties;          // MQTT 5, as mqtt::encode_properties writes them; "" for none
  std::int64_t expires_at_ms = 0;  // unix ms when the Message Expiry Interval ends; 0: never
  std::int64_t enqueued_ms = 0;    // unix ms, for the remaining expiry and queue age

  friend bool operator==(const queued_message&, const queued_message&) = default;
};

std::string encode_queued_message(const queued_message& message);
// nullopt for another version, a QoS over 2, or lengths that do not add up.
std::optional<queued_message> decode_queued_message(std::string_view record);

}  // namespace nimbus::bridge
