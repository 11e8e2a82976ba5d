#pragma once
// The per-topic message store the subscription engines read from, shaped like a JetStream stream:
// messages numbered densely by seq at append, read by seq, found by publish time, purged from
// the front. The service appends (to the segment log, src/seglog/) and the engines only read, so
// payloads stay in the log and a subscription's backlog costs no memory.
//
// memory_message_store is the in-memory one, for tests and for an ephemeral topic. It is a value
// used by one thread at a time (the topic's owner), like the engines reading it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "pubsub/message.hpp"

namespace nimbus::pubsub {

class message_store {
 public:
  virtual ~message_store() = default;

  // Committed messages from `from_seq` (clamped up to first_seq()), at most `max` and about
  // `max_bytes` (at least one if any). Synchronous (seglog preads; memory in tests).
  virtual std::vector<stored_message> read(std::uint64_t from_seq, std::size_t max,
                                           std::size_t max_bytes) const = 0;
  virtual std::uint64_t first_seq() const = 0;  // oldest kept
  virtual std::uint64_t next_seq() const = 0;   // one past the newest committed
  // First seq published at or after `time_ms` (next_seq() when none is).
  virtual std::uint64_t seq_at_time(std::int64_t time_ms) const = 0;
};

class memory_message_store final : public message_store {
 public:
  // Appends and returns the message's seq (dense from 0). message_id defaults to seq + 1 in
  // decimal. Publish times are expected not to decrease (the service stamps them): seq_at_time
  // searches by bisection.
  std::uint64_t append(pubsub_message message) {
    const std::uint64_t seq = next_++;
    if (message.message_id.empty()) message.message_id = std::to_string(seq + 1);
    messages_.push_back(stored_message{seq, std::move(message)});
    return seq;
  }

  // Drops every message before `seq` (retention, or a purge).
  void purge_before(std::uint64_t seq) {
    while (!messages_.empty() && messages_.front().seq < seq) messages_.pop_front();
    first_ = std::max(first_, std::min(seq, next_));
  }

  std::vector<stored_message> read(std::uint64_t from_seq, std::size_t max,
                                   std::size_t max_bytes) const override {
    std::vector<stored_message> out;
    std::size_t bytes = 0;
    for (std::uint64_t seq = std::max(from_seq, first_); seq < next_ && out.size() < max; ++seq) {
      const stored_message& message = messages_[seq - first_];
      const std::size_t size = message.bytes();
      if (!out.empty() && bytes + size > max_bytes) break;
      bytes += size;
      out.push_back(message);
    }
    return out;
  }

  std::uint64_t first_seq() const override { return first_; }
  std::uint64_t next_seq() const override { return next_; }

  std::uint64_t seq_at_time(std::int64_t time_ms) const override {
    const auto at = std::partition_point(messages_.begin(), messages_.end(),
                                         [time_ms](const stored_message& message) {
                                           return message.message.publish_time_ms < time_ms;
                                         });
    return first_ + static_cast<std::uint64_t>(at - messages_.begin());
  }

 private:
  std::deque<stored_message> messages_;  // seqs first_ .. next_ - 1, in order
  std::uint64_t first_ = 0;
  std::uint64_t next_ = 0;
};

}  // namespace nimbus::pubsub
