#include "pubsub/ack_id.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::pubsub {
namespace {

constexpr std::size_t body_bytes = 20;   // owner, epoch, seq, delivery
constexpr std::size_t total_bytes = 24;  // and the check value
static_assert(total_bytes % 3 == 0 && total_bytes / 3 * 4 == ack_id_length,
              "the layout encodes to base64url without padding");

constexpr std::string_view alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

using layout = std::array<std::uint8_t, total_bytes>;

void put_u32(layout& bytes, std::size_t at, std::uint32_t value) {
  for (std::size_t i = 0; i < 4; ++i)
    bytes[at + i] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
}
void put_u64(layout& bytes, std::size_t at, std::uint64_t value) {
  for (std::size_t i = 0; i < 8; ++i)
    bytes[at + i] = static_cast<std::uint8_t>(value >> (56 - 8 * i));
}
std::uint32_t get_u32(const layout& bytes, std::size_t at) {
  std::uint32_t value = 0;
  for (std::size_t i = 0; i < 4; ++i) value = (value << 8) | std::uint32_t{bytes[at + i]};
  return value;
}
std::uint64_t get_u64(const layout& bytes, std::size_t at) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 8; ++i) value = (value << 8) | std::uint64_t{bytes[at + i]};
  return value;
}

// FNV-1a over the body, then the splitmix64 finaliser so that every input bit reaches the 32 bits
// kept: a changed id passes with probability about 2^-32. The seed only keeps ids of other
// formats that happen to share the length from checking by accident.
std::uint32_t check_value(const layout& bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ULL ^ 0x6e696d6275732d31ULL;  // "nimbus-1"
  for (std::size_t i = 0; i < body_bytes; ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ULL;
  }
  hash ^= hash >> 30;
  hash *= 0xbf58476d1ce4e5b9ULL;
  hash ^= hash >> 27;
  hash *= 0x94d049bb133111ebULL;
  hash ^= hash >> 31;
  return static_cast<std::uint32_t>(hash >> 32);
}

int digit_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

}  // namespace

std::string encode_ack_id(const ack_token& token) {
  layout bytes{};
  put_u32(bytes, 0, token.owner);
  put_u32(bytes, 4, token.epoch);
  put_u64(bytes, 8, token.seq);
  put_u32(bytes, 16, token.delivery);
  put_u32(bytes, body_bytes, check_value(bytes));

  std::string text;
  text.reserve(ack_id_length);
  for (std::size_t at = 0; at < total_bytes; at += 3) {
    const std::uint32_t group = (std::uint32_t{bytes[at]} << 16) |
                                (std::uint32_t{bytes[at + 1]} << 8) | std::uint32_t{bytes[at + 2]};
    for (std::size_t i = 0; i < 4; ++i) text += alphabet[(group >> (18 - 6 * i)) & 0x3f];
  }
  return text;
}

std::optional<ack_token> decode_ack_id(std::string_view text) {
  if (text.size() != ack_id_length) return std::nullopt;
  layout bytes{};
  for (std::size_t group_index = 0; group_index < total_bytes / 3; ++group_index) {
    std::uint32_t group = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      const int digit = digit_value(text[group_index * 4 + i]);
      if (digit < 0) return std::nullopt;
      group = (group << 6) | static_cast<std::uint32_t>(digit);
    }
    bytes[group_index * 3] = static_cast<std::uint8_t>(group >> 16);
    bytes[group_index * 3 + 1] = static_cast<std::uint8_t>(group >> 8);
    bytes[group_index * 3 + 2] = static_cast<std::uint8_t>(group);
  }
  if (get_u32(bytes, body_bytes) != check_value(bytes)) return std::nullopt;
  ack_token token;
  token.owner = get_u32(bytes, 0);
  token.epoch = get_u32(bytes, 4);
  token.seq = get_u64(bytes, 8);
  token.delivery = get_u32(bytes, 16);
  return token;
}

}  // namespace nimbus::pubsub
