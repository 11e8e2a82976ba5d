#pragma once
// Time sources. Components take a `clock&` so tests can inject a manual one.
#include <atomic>
#include <chrono>
#include <cstdint>

namespace nimbus::core {

using steady_time = std::chrono::steady_clock::time_point;

class clock {
 public:
  virtual ~clock() = default;
  virtual steady_time now() const = 0;
  // Seconds since the Unix epoch, for durable timestamps that must survive a restart.
  virtual std::int64_t unix_seconds() const = 0;
  // Milliseconds since the Unix epoch (AWS's lastModifiedTime ...).
  virtual std::int64_t unix_millis() const { return unix_seconds() * 1000; }
};

class system_clock final : public clock {
 public:
  steady_time now() const override { return std::chrono::steady_clock::now(); }
  std::int64_t unix_seconds() const override {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::int64_t unix_millis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that only moves when a test advances it.
class manual_clock final : public clock {
 public:
  steady_time now() const override { return steady_time{} + offset_; }
  std::int64_t unix_seconds() const override {
    return 1'700'000'000 + std::chrono::duration_cast<std::chrono::seconds>(offset_).count();
  }
  void advance(std::chrono::steady_clock::duration d) { offset_ += d; }

 private:
  std::chrono::steady_clock::duration offset_{};
};

}  // namespace nimbus::core
