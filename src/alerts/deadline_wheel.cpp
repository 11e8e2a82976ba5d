#include "alerts/deadline_wheel.hpp"

#include <algorithm>

namespace nimbus::alerts {

void deadline_wheel::push(key k, std::int64_t at_ms, armed& slot) const {
  slot.queued_ms = at_ms;
  slot.sequence = next_sequence_++;
  heap_.push_back(entry{at_ms, slot.sequence, k});
  std::push_heap(heap_.begin(), heap_.end(), later);
}

void deadline_wheel::set(key k, std::int64_t at_ms) {
  auto [it, is_new] = armed_.try_emplace(k);
  armed& slot = it->second;
  // A deadline moved later keeps its heap entry (settle() re-queues it when it surfaces); one
  // moved earlier needs an entry there, and the old one turns into garbage.
  if (is_new || at_ms < slot.queued_ms) push(k, at_ms, slot);
  slot.at_ms = at_ms;
  if (heap_.size() > 2 * armed_.size() + 64) compact();
}

bool deadline_wheel::cancel(key k) {
  if (armed_.erase(k) == 0) return false;
  if (heap_.size() > 2 * armed_.size() + 64) compact();
  return true;
}

std::optional<std::int64_t> deadline_wheel::deadline_of(key k) const {
  auto it = armed_.find(k);
  if (it == armed_.end()) return std::nullopt;
  return it->second.at_ms;
}

void deadline_wheel::settle() const {
  while (!heap_.empty()) {
    const entry top = heap_.front();
    auto it = armed_.find(top.k);
    const bool is_live = it != armed_.end() && it->second.sequence == top.sequence;
    if (is_live && it->second.at_ms == top.at_ms) return;
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
    if (is_live) push(top.k, it->second.at_ms, it->second);  // moved later: queue it there
  }
}

std::optional<std::int64_t> deadline_wheel::next() const {
  settle();
  if (heap_.empty()) return std::nullopt;
  return heap_.front().at_ms;
}

std::optional<std::pair<deadline_wheel::key, std::int64_t>> deadline_wheel::pop_due(
    std::int64_t now_ms) {
  settle();
  if (heap_.empty() || heap_.front().at_ms > now_ms) return std::nullopt;
  const entry top = heap_.front();
  std::pop_heap(heap_.begin(), heap_.end(), later);
  heap_.pop_back();
  armed_.erase(top.k);
  return std::pair{top.k, top.at_ms};
}

void deadline_wheel::compact() {
  // Keeps each live entry (and its sequence, so ties keep their order) at its real deadline.
  std::vector<entry> live;
  live.reserve(armed_.size());
  for (entry e : heap_) {
    auto it = armed_.find(e.k);
    if (it == armed_.end() || it->second.sequence != e.sequence) continue;
    e.at_ms = it->second.at_ms;
    it->second.queued_ms = e.at_ms;
    live.push_back(e);
  }
  std::make_heap(live.begin(), live.end(), later);
  heap_ = std::move(live);
}

void deadline_wheel::clear() {
  armed_.clear();
  heap_.clear();
}

}  // namespace nimbus::alerts
