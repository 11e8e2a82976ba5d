#pragma once
// The cursor journal's records: what one subscription's engine journaled (take_journal) at one
// save, as a record of the service's cursor log (seglog), which commits it with the topics'
// appends. A restart replays the records after the last checkpoint (SQLite) with apply_event.
//
// Layout, little-endian: u16 name length, the subscription's name, u32 event count, then per
// event u8 kind (0 ack, 1 seek, 2 attempts, 3 lease), u64 first, u64 last, i32 attempts, and
// for a lease u32 epoch and i64 deadline_ms.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/subscription_engine.hpp"

namespace nimbus::pubsub {

struct journal_record {
  std::string subscription;
  std::vector<cursor_event> events;

  friend bool operator==(const journal_record&, const journal_record&) = default;
};

std::string encode_journal_record(const journal_record& record);
// nullopt for anything that is not a whole, well-formed record (a damaged log is refused
// record by record, never trusted).
std::optional<journal_record> decode_journal_record(std::string_view bytes);

}  // namespace nimbus::pubsub
