#include "core/backoff.hpp"

#include <algorithm>
#include <utility>

namespace nimbus::core {

backoff::backoff(random_source random, backoff_options options)
    : random_(std::move(random)), options_(options) {
  options_.base = std::max(options_.base, std::chrono::milliseconds(1));
  options_.cap = std::max(options_.cap, options_.base);
}

std::chrono::milliseconds backoff::ceiling() const {
  // Doubling stops at the cap, so the shift never overflows however long the link stays down.
  auto bound = options_.base;
  for (std::uint32_t i = 0; i < failures_ && bound < options_.cap; ++i) bound *= 2;
  return std::min(bound, options_.cap);
}

std::chrono::milliseconds backoff::next_delay() {
  const auto bound = static_cast<std::uint64_t>(ceiling().count());
  if (failures_ < UINT32_MAX) ++failures_;
  // Modulo bias is below 2^-40 for any bound under a day: irrelevant to a reconnect timer.
  return std::chrono::milliseconds(static_cast<std::int64_t>(random_() % (bound + 1)));
}

}  // namespace nimbus::core
