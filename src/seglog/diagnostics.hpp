#pragma once
// What the segment log tells the operator: spdlog lines in logfmt (core/log.hpp) and counters.
// They live in one translation unit, diagnostics.cpp, so the log's other sources depend on the
// standard library alone: the recovery fuzzer compiles those and defines these itself.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <system_error>

namespace nimbus::seglog::diagnostics {

// open(): a damaged segment other than the last was renamed to `moved_to` (warn, counted).
void segment_set_aside(const std::filesystem::path& segment, const std::filesystem::path& moved_to,
                       std::uint64_t position, std::string_view problem);
// open(): the last segment's torn tail was cut at `position` (warn, counted).
void tail_truncated(const std::filesystem::path& segment, std::uint64_t position,
                    std::uint64_t bytes, std::string_view problem);
// A round's write or fdatasync failed: its `batches` were answered with `error` (error).
void write_failed(const std::filesystem::path& dir, std::error_code error, std::size_t batches);
// interval: a background fdatasync failed; what it covered was acknowledged already (error).
void sync_failed(const std::filesystem::path& dir, std::error_code error);
// Undoing a failed round or deleting a dropped segment failed (error).
void cleanup_failed(const std::filesystem::path& path, std::error_code error);

// Process-wide totals, for metrics.
std::uint64_t segments_set_aside_total();
std::uint64_t tails_truncated_total();
std::uint64_t write_failures_total();

}  // namespace nimbus::seglog::diagnostics
