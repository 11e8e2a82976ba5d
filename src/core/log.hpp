#pragma once
// Logging on spdlog. Messages are written as `event key=value ...` (logfmt) so they stay both
// readable and machine-parsable.
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

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

// A warning at most `limiter` lets through: `format` ends with "similar_lines_suppressed={}",
// which gets how many lines of this kind were held back before it.
template <class... Args>
void warn_limited(log_limiter& limiter, spdlog::format_string_t<Args..., std::uint64_t&> format,
                  Args&&... args) {
  std::uint64_t held_back = 0;
  if (limiter.allow(held_back)) spdlog::warn(format, std::forward<Args>(args)..., held_back);
}

// A broken internal invariant met in a release build (NIMBUS_ASSERT, core/assert.hpp, aborts in
// debug builds): logged at error, rate-limited, and counted in nimbus_bugs_total; the caller
// then takes its error path (closes the connection, answers 500). Never for bad input: that is
// an error the protocol answers.
void report_bug(std::string_view where, std::string_view what);
std::uint64_t bugs_reported();

}  // namespace nimbus::core
