#include "seglog/diagnostics.hpp"

#include <atomic>

#include "core/log.hpp"

namespace nimbus::seglog::diagnostics {
namespace {
std::atomic<std::uint64_t> set_aside_count{0};
std::atomic<std::uint64_t> truncated_count{0};
std::atomic<std::uint64_t> write_failure_count{0};
}  // namespace

void segment_set_aside(const std::filesystem::path& segment, const std::filesystem::path& moved_to,
                       std::uint64_t position, std::string_view problem) {
  set_aside_count.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("seglog_segment_set_aside segment=\"{}\" moved_to=\"{}\" position={} problem=\"{}\"",
               segment.string(), moved_to.string(), position, problem);
}

void tail_truncated(const std::filesystem::path& segment, std::uint64_t position,
                    std::uint64_t bytes, std::string_view problem) {
  truncated_count.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("seglog_tail_truncated segment=\"{}\" position={} bytes={} problem=\"{}\"",
               segment.string(), position, bytes, problem);
}

void write_failed(const std::filesystem::path& dir, std::error_code error, std::size_t batches) {
  write_failure_count.fetch_add(1, std::memory_order_relaxed);
  spdlog::error("seglog_write_failed dir=\"{}\" error=\"{}\" batches={}", dir.string(),
                error.message(), batches);
}

void sync_failed(const std::filesystem::path& dir, std::error_code error) {
  spdlog::error("seglog_sync_failed dir=\"{}\" error=\"{}\"", dir.string(), error.message());
}

void cleanup_failed(const std::filesystem::path& path, std::error_code error) {
  spdlog::error("seglog_cleanup_failed path=\"{}\" error=\"{}\"", path.string(), error.message());
}

std::uint64_t segments_set_aside_total() {
  return set_aside_count.load(std::memory_order_relaxed);
}
std::uint64_t tails_truncated_total() {
  return truncated_count.load(std::memory_order_relaxed);
}
std::uint64_t write_failures_total() {
  return write_failure_count.load(std::memory_order_relaxed);
}

}  // namespace nimbus::seglog::diagnostics
