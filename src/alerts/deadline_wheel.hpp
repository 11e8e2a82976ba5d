#pragma once
// The alert engine's timers: pending periods, no-data silences, offline periods and escalations
// after a time, each a key (the engine's opaque 64-bit name for a state or an alert) with one
// deadline in ms. advance() pops what is due in deadline order. Owned by the engine, on its
// thread.
//
// A binary heap with lazy moves rather than a hashed wheel: the hot case is a no-data deadline
// pushed later by every point of its series, and here that is one hash lookup (the heap entry
// stays where it is and is re-queued at the real deadline only when it surfaces). A cancelled or
// moved entry stays in the heap as garbage until it surfaces; the heap is rebuilt from the live
// deadlines when garbage outnumbers them.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nimbus::alerts {

class deadline_wheel {
 public:
  using key = std::uint64_t;

  // Arms `k` at `at_ms`, or moves its deadline there (earlier or later).
  void set(key k, std::int64_t at_ms);
  // Disarms `k`; false if it was not armed.
  bool cancel(key k);
  std::optional<std::int64_t> deadline_of(key k) const;

  // The earliest live deadline.
  std::optional<std::int64_t> next() const;
  // Removes and returns the earliest armed key whose deadline is <= now_ms (ties: the order they
  // were armed in), with its deadline.
  std::optional<std::pair<key, std::int64_t>> pop_due(std::int64_t now_ms);

  std::size_t size() const { return armed_.size(); }
  void clear();

 private:
  struct entry {
    std::int64_t at_ms;
    std::uint64_t sequence;  // the arming order; also tells a live entry from garbage
    key k;
  };
  struct armed {
    std::int64_t at_ms;      // the real deadline
    std::int64_t queued_ms;  // where its live heap entry sits (<= at_ms)
    std::uint64_t sequence;  // that entry's sequence
  };
  static bool later(const entry& a, const entry& b) {
    return a.at_ms != b.at_ms ? a.at_ms > b.at_ms : a.sequence > b.sequence;
  }
  void push(key k, std::int64_t at_ms, armed& slot) const;
  // Pops garbage and re-queues moved entries until the top is a live deadline (or none).
  void settle() const;
  void compact();

  // Mutable: next() settles the heap's top (which moves entries, never deadlines) so that it
  // can answer exactly.
  mutable std::unordered_map<key, armed> armed_;
  mutable std::vector<entry> heap_;
  mutable std::uint64_t next_sequence_ = 0;
};

}  // namespace nimbus::alerts
