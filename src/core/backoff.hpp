#pragma once
// Retry delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential
// Backoff And Jitter"): after the n-th failure in a row the caller waits a uniformly random time
// in [0, min(cap, base * 2^(n-1))], so peers cut off together do not all come back in the same
// second (a bridge's link reconnecting, an alert webhook retried). Randomness is the caller's
// (core::random_u64 in the server, a fixed sequence in tests) and so is the timer: this only
// computes delays. One per retried thing, used on its owner's thread; not thread-safe.
#include <chrono>
#include <cstdint>
#include <functional>

namespace nimbus::core {

struct backoff_options {
  std::chrono::milliseconds base{1000};  // bound of the first delay
  std::chrono::milliseconds cap{60000};  // no delay is longer
};

class backoff {
 public:
  using random_source = std::function<std::uint64_t()>;

  // A base under 1 ms counts as 1 ms, a cap under the base as the base.
  explicit backoff(random_source random, backoff_options options = {});

  // The delay before the next attempt, after one more failure.
  std::chrono::milliseconds next_delay();
  // An attempt succeeded: the next failure starts again from the base.
  void reset() { failures_ = 0; }

  std::uint32_t failures() const { return failures_; }
  // The bound of the delay next_delay() would draw now.
  std::chrono::milliseconds ceiling() const;

 private:
  random_source random_;
  backoff_options options_;
  std::uint32_t failures_ = 0;
};

}  // namespace nimbus::core
