#pragma once
// Logging on spdlog. Messages are written as `event key=value ...` (logfmt) so they stay both
// readable and machine-parsable.
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace nimbus::core {

// Installs the process-wide logger on stderr. `level` is a spdlog level name.
void init_logging(const std::string& level);

// Lets through at most `per_second` lines a second of one kind (connects under load, refusals
// in a flood), so logging cannot become the bottleneck or fill the disk; what it held back is
// counted and reported with the next line let through. Thread-safe.
class log_limiter {
 public:
  explicit log_limiter(std::uint32_t per_second) : per_second_(per_second) {}
  // True when this line may be written; `held_back` is then how many were dropped before it.
  bool allow(std::uint64_t& held_back);

 private:
  const std::uint32_t per_second_;
  std::atomic<std::int64_t> second_{0};
  std::atomic<std::uint32_t> in_second_{0};
  std::atomic<std::uint64_t> held_back_{0};
};

}  // namespace nimbus::core
