#pragma once
// The durability contract every store gives its callers: a change returns a ticket, and whoever
// acknowledges the change (a PUBACK, an HTTP 200) waits until the ticket is durable
// (`write_queue::when_durable`) and its write did not fail (`write_queue::failed`). The registry
// also changes what its readers see only then; the broker changes its working copy at once and
// holds back only acknowledgements.
#include <compare>
#include <cstdint>

namespace nimbus::storage {

// Names one write submitted to the write queue. Tickets of a queue are ordered: a ticket is
// durable once every write up to it is committed, so the later of two covers both. A
// default-made ticket names no write and is durable at once.
class ticket {
 public:
  constexpr ticket() = default;
  constexpr explicit ticket(std::uint64_t sequence) : sequence_(sequence) {}

  constexpr std::uint64_t sequence() const { return sequence_; }
  // True when there is nothing to wait for.
  constexpr bool is_none() const { return sequence_ == 0; }
  // The ticket just before this one: with it, `failed_between` asks about this write alone.
  constexpr ticket previous() const { return ticket(sequence_ == 0 ? 0 : sequence_ - 1); }

  friend constexpr auto operator<=>(ticket, ticket) = default;

 private:
  std::uint64_t sequence_ = 0;
};

// The later of two tickets: waiting for it waits for both.
constexpr ticket later(ticket a, ticket b) {
  return a < b ? b : a;
}

}  // namespace nimbus::storage
