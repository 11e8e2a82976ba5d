#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <chrono>

namespace nimbus::core {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("nimbus");
  logger->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l thread=%t %v",
                      spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

bool log_limiter::allow(std::uint64_t& held_back) {
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
  auto second = second_.load(std::memory_order_relaxed);
  if (second != now && second_.compare_exchange_strong(second, now, std::memory_order_relaxed))
    in_second_.store(0, std::memory_order_relaxed);
  if (in_second_.fetch_add(1, std::memory_order_relaxed) >= per_second_) {
    held_back_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  held_back = held_back_.exchange(0, std::memory_order_relaxed);
  return true;
}

namespace {
std::atomic<std::uint64_t> bugs{0};
log_limiter bug_log(10);
}  // namespace

void report_bug(std::string_view where, std::string_view what) {
  bugs.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t held_back = 0;
  if (bug_log.allow(held_back))
    spdlog::error("bug where={} what=\"{}\" similar_lines_suppressed={}", where, what, held_back);
}

std::uint64_t bugs_reported() {
  return bugs.load(std::memory_order_relaxed);
}

}  // namespace nimbus::core
