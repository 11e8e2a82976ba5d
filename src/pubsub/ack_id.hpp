#pragma once
// Ack ids: what a delivery hands the client to acknowledge or extend it with. Opaque to clients
// and safe in URLs and JSON: 32 characters of base64url (no padding) over a fixed 24-byte layout,
//   u32 owner | u32 epoch | u64 seq | u32 delivery | u32 check      (big-endian)
// where `check` is a hash of the first 20 bytes, so that a mistyped or altered id decodes as
// nullopt (an INVALID_ARGUMENT) rather than naming another message. Not a secret: an id is a
// handle, not a credential; the subscription's IAM check guards who may ack.
// Sans-I/O and standard library only; decoding never throws, whatever the input.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::pubsub {

struct ack_token {
  std::uint32_t owner = 0;     // the node owning the subscription (0 on one machine)
  std::uint32_t epoch = 0;     // changes each time the subscription's engine is created
  std::uint64_t seq = 0;       // the message's seq in its topic
  std::uint32_t delivery = 0;  // which delivery of that seq (1 for the first): the version

  friend bool operator==(const ack_token&, const ack_token&) = default;
};

inline constexpr std::size_t ack_id_length = 32;

std::string encode_ack_id(const ack_token& token);
// nullopt for anything encode_ack_id did not produce (wrong length, alphabet or check value).
std::optional<ack_token> decode_ack_id(std::string_view text);

}  // namespace nimbus::pubsub
