#include "bridge/queued_message.hpp"

#include <cstddef>
#include <limits>

#include "core/assert.hpp"

namespace nimbus::bridge {

namespace {

constexpr std::uint8_t format_version = 1;
constexpr std::size_t fixed_bytes = 1 + 1 + 8 + 8 + 2 + 4;

template <class Unsigned>
void put(std::string& out, Unsigned value) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i)
    out.push_back(static_cast<char>(static_cast<std::uint8_t>(value >> (8 * i))));
}

template <class Unsigned>
Unsigned get(std::string_view bytes, std::size_t at) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i)
    value |= std::uint64_t{static_cast<std::uint8_t>(bytes[at + i])} << (8 * i);
  return static_cast<Unsigned>(value);
}

}  // namespace

std::string encode_queued_message(const queued_message& message) {
  // A topic is at most 65,535 bytes (MQTT) and the properties at most a packet.
  NIMBUS_ASSERT(message.topic.size() <= std::numeric_limits<std::uint16_t>::max());
  NIMBUS_ASSERT(message.properties.size() <= std::numeric_limits<std::uint32_t>::max());
  std::string out;
  out.reserve(fixed_bytes + message.topic.size() + message.properties.size() +
              message.payload.size());
  out.push_back(static_cast<char>(format_version));
  out.push_back(static_cast<char>((message.qos & 0x3) | (message.retain ? 0x4 : 0)));
  put(out, static_cast<std::uint64_t>(message.enqueued_ms));
  put(out, static_cast<std::uint64_t>(message.expires_at_ms));
  put(out, static_cast<std::uint16_t>(message.topic.size()));
  out += message.topic;
  put(out, static_cast<std::uint32_t>(message.properties.size()));
  out += message.properties;
  out += message.payload;
  return out;
}

std::optional<queued_message> decode_queued_message(std::string_view record) {
  if (record.size() < fixed_bytes || static_cast<std::uint8_t>(record[0]) != format_version)
    return std::nullopt;
  const auto flags = static_cast<std::uint8_t>(record[1]);
  if ((flags & ~0x7) != 0 || (flags & 0x3) == 0x3) return std::nullopt;
  queued_message m;
  m.qos = static_cast<std::uint8_t>(flags & 0x3);
  m.retain = (flags & 0x4) != 0;
  m.enqueued_ms = static_cast<std::int64_t>(get<std::uint64_t>(record, 2));
  m.expires_at_ms = static_cast<std::int64_t>(get<std::uint64_t>(record, 10));
  std::size_t at = 18;
  const std::size_t topic_bytes = get<std::uint16_t>(record, at);
  at += 2;
  if (record.size() - at < topic_bytes + 4) return std::nullopt;
  m.topic = record.substr(at, topic_bytes);
  at += topic_bytes;
  const std::size_t properties_bytes = get<std::uint32_t>(record, at);
  at += 4;
  if (record.size() - at < properties_bytes) return std::nullopt;
  m.properties = record.substr(at, properties_bytes);
  at += properties_bytes;
  m.payload = record.substr(at);
  return m;
}

}  // namespace nimbus::bridge
