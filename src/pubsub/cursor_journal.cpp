#include "pubsub/cursor_journal.hpp"

#include <cstdint>
#include <cstring>

namespace nimbus::pubsub {

namespace {

constexpr std::size_t event_bytes = 1 + 8 + 8 + 4;
constexpr std::size_t lease_bytes = 4 + 8;  // after a lease event: epoch, deadline_ms

template <class T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i)
    bytes[i] = static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
  out.append(bytes, sizeof(T));
}

template <class T>
T take(std::string_view& in) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  in.remove_prefix(sizeof(T));
  return static_cast<T>(value);
}

}  // namespace

std::string encode_journal_record(const journal_record& record) {
  std::string out;
  out.reserve(2 + record.subscription.size() + 4 + record.events.size() * event_bytes);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(record.subscription.size()));
  out += record.subscription;
  put<std::uint32_t>(out, static_cast<std::uint32_t>(record.events.size()));
  for (const auto& e : record.events) {
    put<std::uint8_t>(out, static_cast<std::uint8_t>(e.what));
    put<std::uint64_t>(out, e.first);
    put<std::uint64_t>(out, e.last);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(e.attempts));
    if (e.what == cursor_event::kind::lease) {
      put<std::uint32_t>(out, e.epoch);
      put<std::uint64_t>(out, static_cast<std::uint64_t>(e.deadline_ms));
    }
  }
  return out;
}

std::optional<journal_record> decode_journal_record(std::string_view bytes) {
  journal_record record;
  if (bytes.size() < 2) return std::nullopt;
  const auto name_length = take<std::uint16_t>(bytes);
  if (bytes.size() < name_length + 4U) return std::nullopt;
  record.subscription.assign(bytes.substr(0, name_length));
  bytes.remove_prefix(name_length);
  const auto count = take<std::uint32_t>(bytes);
  if (bytes.size() / event_bytes < count) return std::nullopt;  // before reserving
  record.events.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    if (bytes.size() < event_bytes) return std::nullopt;
    const auto kind = take<std::uint8_t>(bytes);
    if (kind > static_cast<std::uint8_t>(cursor_event::kind::lease)) return std::nullopt;
    cursor_event e{static_cast<cursor_event::kind>(kind)};
    e.first = take<std::uint64_t>(bytes);
    e.last = take<std::uint64_t>(bytes);
    e.attempts = static_cast<std::int32_t>(take<std::uint32_t>(bytes));
    if (e.what == cursor_event::kind::lease) {
      if (bytes.size() < lease_bytes) return std::nullopt;
      e.epoch = take<std::uint32_t>(bytes);
      e.deadline_ms = static_cast<std::int64_t>(take<std::uint64_t>(bytes));
    }
    record.events.push_back(e);
  }
  if (!bytes.empty()) return std::nullopt;
  return record;
}

}  // namespace nimbus::pubsub
