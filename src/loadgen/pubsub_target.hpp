#pragma once
// The Pub/Sub load generator's inside (pubsub_load.hpp is its face): the run's shared state,
// where a publisher's answers go (publish_sink), and the small interface each target implements
// (pubsub_target, publish_channel): gRPC in pubsub_grpc.cpp, JetStream in pubsub_jetstream.cpp.
// The driver (pubsub_load.cpp) owns the timing, the publisher threads and the report, so both
// targets are measured by the same code.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "loadgen/histogram.hpp"
#include "loadgen/pubsub_load.hpp"

namespace nimbus::loadgen::pubsub_detail {

using clock_type = std::chrono::steady_clock;

inline std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
          .count());
}

// What every thread of a run shares: the stop flags, the consumers' counters and the errors.
// Counters are atomics read by the progress line; errors keep the first message.
struct run_state {
  explicit run_state(const pubsub_options& o) : opts(o) {}

  const pubsub_options& opts;
  std::atomic<bool> stop_publishing{false};
  std::atomic<bool> stop_consuming{false};
  std::atomic<std::uint64_t> fill_claimed{0};  // fill mode: messages handed to publishers
  std::atomic<std::uint64_t> received{0};      // messages the consumers received
  std::atomic<std::uint64_t> acked{0};         // of those, acknowledgements sent to the server
  std::atomic<std::uint64_t> errors{0};
  // Publish latency is recorded for sends inside [measure_from, measure_until) (now_ns()).
  std::atomic<std::uint64_t> measure_from{~std::uint64_t{0}};
  std::atomic<std::uint64_t> measure_until{~std::uint64_t{0}};

  void error(std::string_view what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(error_mutex_);
    if (first_error_.empty()) first_error_ = what;
  }
  std::string first_error() {
    std::lock_guard lock(error_mutex_);
    return first_error_;
  }
  bool in_window(std::uint64_t t) const {
    return t >= measure_from.load(std::memory_order_relaxed) &&
           t < measure_until.load(std::memory_order_relaxed);
  }

 private:
  std::mutex error_mutex_;
  std::string first_error_;  // guarded by error_mutex_
};

// One publisher's bookkeeping: messages sent and not yet answered (its window), what the server
// acknowledged, failures, and the publish latency histogram. Written by the publisher thread
// (add_outstanding) and by whichever thread the target answers on (completed); thread-safe.
// It must outlive every answer: the driver keeps it until the targets are gone.
class publish_sink {
 public:
  explicit publish_sink(run_state& st) : st_(st) {}

  void add_outstanding(std::size_t messages);
  // The server answered `messages` sent at `sent_at` (now_ns()): acknowledged when `error` is
  // empty, else failed (counted as one error of the run).
  void completed(std::size_t messages, std::uint64_t sent_at, std::string_view error);
  // `messages` were given up at shutdown without an answer: counted apart, not as errors.
  void abandoned(std::size_t messages);
  // Rate mode: a scheduled send skipped because the window was full.
  void skipped() { skipped_.fetch_add(1, std::memory_order_relaxed); }

  std::int64_t outstanding();
  // Waits until fewer than `window` messages are outstanding, or `stop`; true when there is
  // room.
  bool wait_for_room(std::int64_t window, const std::atomic<bool>& stop);
  // Waits until nothing is outstanding; false when `limit` passed first.
  bool wait_idle(std::chrono::milliseconds limit);

  std::uint64_t published() const { return published_.load(std::memory_order_relaxed); }
  std::uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }
  std::uint64_t abandoned_count() const { return abandoned_.load(std::memory_order_relaxed); }
  std::uint64_t skipped_count() const { return skipped_.load(std::memory_order_relaxed); }
  histogram latency();

 private:
  run_state& st_;
  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> abandoned_{0};
  std::atomic<std::uint64_t> skipped_{0};
  std::mutex mutex_;
  std::condition_variable room_;
  std::int64_t outstanding_ = 0;  // guarded by mutex_
  histogram latency_;             // ns; guarded by mutex_
};

// One publisher's connection to a target. Called from that publisher's thread only.
class publish_channel {
 public:
  virtual ~publish_channel() = default;
  // Sends `count` messages (already counted outstanding in the sink) whose send time is
  // `sent_at`. Every one of them is answered exactly once through the sink, maybe inline (a
  // failure to send).
  virtual void send(std::size_t count, std::uint64_t sent_at) = 0;
  // Shutdown: gives up on what is still unanswered; each is reported abandoned (or answered)
  // through the sink soon after.
  virtual void abandon() = 0;
};

// A place to publish to and a subscription to receive from: Nimbus or an emulator over gRPC, or
// a JetStream stream with a durable pull consumer. Driven by one thread (the driver's); the
// consumers it starts run on threads of its own and count into run_state.
class pubsub_target {
 public:
  virtual ~pubsub_target() = default;
  // Creates the topic and subscription (stream and consumer): empty, or what failed.
  virtual std::string setup() = 0;
  // A publisher's connection answering through `sink`; null after counting an error.
  virtual std::unique_ptr<publish_channel> open_publisher(publish_sink& sink) = 0;
  // Starts opts.streams consumers that receive and acknowledge until stop_consumers().
  virtual void start_consumers() = 0;
  // Sends the acknowledgements still batched, ends the streams, joins their threads.
  virtual void stop_consumers() = 0;
  // Deletes what setup() created, unless `keep` (fill mode: the server holds the backlog).
  virtual void teardown(bool keep) = 0;
  // Where the messages went, for the report: the topic (stream) and subscription (consumer).
  virtual std::string topic() const = 0;
  virtual std::string subscription() const = 0;
};

std::unique_ptr<pubsub_target> make_grpc_target(run_state& st);
std::unique_ptr<pubsub_target> make_jetstream_target(run_state& st);

// A short random suffix for topic, stream and consumer names, so runs never share them.
std::string random_suffix();

}  // namespace nimbus::loadgen::pubsub_detail
