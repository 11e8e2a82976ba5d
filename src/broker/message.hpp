#pragma once
// An application message as the broker routes it: immutable once published and shared by every
// subscriber it goes to (one allocation per PUBLISH, never a copy per subscriber).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/packet.hpp"

namespace nimbus::broker {

struct message {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
  // Properties forwarded to subscribers (payload format, content type, response topic,
  // correlation data, user properties). Expiry lives in `expires_at` instead.
  mqtt::properties props;
  std::int64_t expires_at = 0;  // unix seconds; 0 = never
  std::string publisher;        // client id, for No Local
};

using message_ptr = std::shared_ptr<const message>;

// A retained message and when it was last set (unix milliseconds; 0 when stored by a version
// that did not record it).
struct retained_message {
  message_ptr msg;
  std::int64_t modified_ms = 0;
};

// One message on its way to one session.
struct delivery {
  message_ptr msg;
  std::uint8_t qos = 0;  // min(published QoS, subscription QoS)
  bool retain = false;   // RETAIN flag as sent
  std::vector<std::uint32_t> subscription_ids;
  std::uint64_t seq = 0;  // row in the durable queue; 0 when not stored
};

}  // namespace nimbus::broker
