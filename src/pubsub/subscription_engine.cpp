#include "pubsub/subscription_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/assert.hpp"

namespace nimbus::pubsub {
namespace {

using ranges_map = std::map<std::uint64_t, std::uint64_t>;  // disjoint [first, last]: first -> last

constexpr std::chrono::seconds min_ack_deadline{10};
constexpr std::chrono::seconds max_ack_deadline{600};
constexpr std::chrono::milliseconds max_backoff{600'000};
constexpr std::chrono::milliseconds default_retention{7LL * 24 * 3600 * 1000};
constexpr std::chrono::milliseconds max_retention{366LL * 24 * 3600 * 1000};
constexpr std::int32_t min_delivery_attempts = 5;
constexpr std::int32_t max_delivery_attempts = 100;
// New messages read from the store per call while a Pull fills up: enough to get past a run of
// filtered or held messages without holding many payloads at once.
constexpr std::size_t read_batch = 256;

// Adds [first, last] to `ranges`, merging it with the ranges it overlaps or touches.
void insert_range(ranges_map& ranges, std::uint64_t first, std::uint64_t last) {
  auto it = ranges.upper_bound(first);
  if (it != ranges.begin()) {
    auto before = std::prev(it);
    if (before->second >= first || before->second + 1 == first) {
      first = before->first;
      last = std::max(last, before->second);
      it = ranges.erase(before);
    }
  }
  while (it != ranges.end() && (it->first <= last || it->first == last + 1)) {
    last = std::max(last, it->second);
    it = ranges.erase(it);
  }
  ranges.emplace(first, last);
}

bool in_ranges(const ranges_map& ranges, std::uint64_t seq) {
  auto it = ranges.upper_bound(seq);
  return it != ranges.begin() && std::prev(it)->second >= seq;
}

// Moves `floor` over the ranges that reach it, dropping them (and any wholly below it).
void advance_over(std::uint64_t& floor, ranges_map& ranges) {
  while (!ranges.empty() && ranges.begin()->first <= floor) {
    floor = std::max(floor, ranges.begin()->second + 1);
    ranges.erase(ranges.begin());
  }
}

std::int32_t to_attempts(std::uint32_t deliveries) {
  return static_cast<std::int32_t>(
      std::min<std::uint32_t>(deliveries, std::numeric_limits<std::int32_t>::max()));
}

}  // namespace

void apply_event(cursor_state& state, const cursor_event& event) {
  ranges_map ranges;
  for (const auto& [first, last] : state.acked)
    if (first <= last) insert_range(ranges, first, last);
  switch (event.what) {
    case cursor_event::kind::ack:
      if (event.first <= event.last) insert_range(ranges, event.first, event.last);
      break;
    case cursor_event::kind::seek:
      state.floor = event.first;
      ranges.clear();
      break;
    case cursor_event::kind::attempts:
      if (event.attempts > 0 && event.first >= state.floor && !in_ranges(ranges, event.first))
        state.delivery_attempts[event.first] = event.attempts;
      break;
    case cursor_event::kind::lease:
      if (event.deadline_ms == 0)
        state.leases.erase(event.first);
      else
        state.leases[event.first] = cursor_state::lease{static_cast<std::uint32_t>(event.attempts),
                                                        event.epoch, event.deadline_ms};
      break;
  }
  if (event.what == cursor_event::kind::seek) state.leases.clear();
  advance_over(state.floor, ranges);
  const auto is_settled = [&](std::uint64_t seq) {
    return seq < state.floor || in_ranges(ranges, seq);
  };
  std::erase_if(state.delivery_attempts, [&](const auto& a) { return is_settled(a.first); });
  std::erase_if(state.leases, [&](const auto& l) { return is_settled(l.first); });
  state.acked.assign(ranges.begin(), ranges.end());
}

// ------------------------------------------------------------------------------ lifecycle

subscription_engine::subscription_engine(subscription_config settings, const message_store& topic,
                                         cursor_state restored, core::clock& clock,
                                         std::uint32_t owner, std::uint32_t epoch)
    : config_(normalised(std::move(settings))),
      topic_(topic),
      clock_(clock),
      owner_(owner),
      epoch_(epoch) {
  load(restored);
}

subscription_config subscription_engine::normalised(subscription_config settings) {
  if (settings.ack_deadline <= std::chrono::seconds::zero())
    settings.ack_deadline = min_ack_deadline;
  settings.ack_deadline = std::clamp(settings.ack_deadline, min_ack_deadline, max_ack_deadline);
  if (settings.retention <= std::chrono::milliseconds::zero())
    settings.retention = default_retention;
  settings.retention = std::min(settings.retention, max_retention);
  if (settings.dead_letter) {
    auto& attempts = settings.dead_letter->max_delivery_attempts;
    attempts = attempts == 0 ? min_delivery_attempts
                             : std::clamp(attempts, min_delivery_attempts, max_delivery_attempts);
  }
  if (settings.retry) {
    auto& retry = *settings.retry;
    retry.minimum_backoff =
        std::clamp(retry.minimum_backoff, std::chrono::milliseconds::zero(), max_backoff);
    retry.maximum_backoff =
        std::clamp(retry.maximum_backoff, std::chrono::milliseconds::zero(), max_backoff);
    retry.maximum_backoff = std::max(retry.maximum_backoff, retry.minimum_backoff);
  }
  return settings;
}

// Takes a cursor state in (a restart, or a seek to a snapshot). Deliveries counted so far are
// kept where the state has fewer: ack id versions and delivery attempts never go back.
void subscription_engine::load(const cursor_state& state) {
  floor_ = state.floor;
  acked_.clear();
  for (const auto& [first, last] : state.acked)
    if (first <= last && last >= floor_) insert_range(acked_, std::max(first, floor_), last);
  cursor_ = floor_;
  for (const auto& [seq, attempts] : state.delivery_attempts) {
    if (attempts <= 0) continue;
    auto& carried = carried_deliveries_[seq];
    carried = std::max(carried, static_cast<std::uint32_t>(attempts));
  }
  advance_floor();
  for (auto it = carried_deliveries_.begin(); it != carried_deliveries_.end();) {
    if (in_ranges(acked_, it->first))
      it = carried_deliveries_.erase(it);
    else
      ++it;
  }
  // Exactly-once leases of an earlier engine, until their deadline: outstanding at or above
  // the cursor, which pull() then passes over. Expired ones are delivered again, their
  // delivery count carried.
  const core::steady_time now = clock_.now();
  const std::int64_t now_ms = clock_.unix_millis();
  for (const auto& [seq, lease] : state.leases) {
    if (seq < floor_ || in_ranges(acked_, seq) || lease.delivery == 0) continue;
    auto& carried = carried_deliveries_[seq];
    carried = std::max(carried, lease.delivery);
    if (!config_.exactly_once || lease.deadline_ms <= now_ms) continue;
    entry& item = outstanding_[seq];
    item.deliveries = take_carried(seq);
    item.state = entry_state::leased;
    item.epoch = lease.epoch;
    item.when = now + std::chrono::milliseconds(lease.deadline_ms - now_ms);
    timers_.emplace(item.when, seq);
    ++leased_count_;
    if (config_.message_ordering) {
      if (auto message = read_one(seq); message && !message->message.ordering_key.empty()) {
        auto key = keys_.try_emplace(message->message.ordering_key).first;
        item.has_key = true;
        item.key = key;
        key->second.outstanding.insert(seq);
        ++key->second.leased;
      }
    }
  }
}

void subscription_engine::reconfigure(subscription_config settings) {
  auto next = normalised(std::move(settings));
  next.message_ordering = config_.message_ordering;
  next.message_filter = std::move(config_.message_filter);
  config_ = std::move(next);
}

// --------------------------------------------------------------------------------- pulling

std::vector<delivery> subscription_engine::pull(std::size_t max_messages, std::size_t max_bytes,
                                                std::optional<std::chrono::seconds> lease,
                                                std::uint64_t holder) {
  std::vector<delivery> out;
  if (is_detached_ || max_messages == 0) return out;
  const core::steady_time now = clock_.now();
  const std::int64_t now_ms = clock_.unix_millis();
  process_due(now);
  expire_old(now_ms);

  const core::steady_time deadline = now + lease_length(lease);
  const std::uint64_t pull_id = ++pull_count_;
  std::size_t bytes = 0;
  bool is_full = false;
  const auto fits = [&](const stored_message& message) {
    return out.empty() || bytes + message.bytes() <= max_bytes;
  };
  // After `seq` of a key went out (or was settled instead), the key's next seq in order.
  const auto move_expected = [](key_state& key, std::uint64_t seq) {
    auto after = key.outstanding.upper_bound(seq);
    if (after == key.outstanding.end())
      key.expected.reset();
    else
      key.expected = *after;
  };

  // Redeliveries (and messages held behind their ordering key), lowest seq first.
  for (auto it = ready_.begin(); it != ready_.end() && out.size() < max_messages;) {
    const std::uint64_t seq = *it;
    const auto next = std::next(it);
    auto found = outstanding_.find(seq);
    NIMBUS_ASSERT(found != outstanding_.end());
    if (found == outstanding_.end()) {
      ready_.erase(it);
      it = next;
      continue;
    }
    entry& item = found->second;
    if (item.has_key) {
      key_state& key = item.key->second;
      touch(key, pull_id);
      if (!key.is_open || key.expected != seq) {
        it = next;
        continue;
      }
    }
    auto message = read_one(seq);
    if (!message || is_past_retention(*message, now_ms)) {
      // Gone from the store, or too old: settled in place of a delivery.
      if (item.has_key) move_expected(item.key->second, seq);
      if (settle_one(seq)) ++counters_.expired;
      it = next;
      continue;
    }
    if (!fits(*message)) {
      is_full = true;
      break;
    }
    ready_.erase(it);
    if (item.has_key) move_expected(item.key->second, seq);
    lease_entry(seq, item, deadline, holder, message->bytes());
    bytes += message->bytes();
    out.push_back(make_delivery(std::move(*message), item));
    it = next;
  }

  // New messages from the cursor.
  std::size_t scanned = 0;
  while (!is_full && out.size() < max_messages && scanned < max_scanned_per_pull) {
    auto range = acked_.upper_bound(cursor_);
    if (range != acked_.begin() && std::prev(range)->second >= cursor_) {
      cursor_ = std::prev(range)->second + 1;
      continue;
    }
    if (cursor_ >= topic_.next_seq()) break;
    const std::uint64_t before = cursor_;
    const std::size_t want = std::min(max_messages - out.size(), read_batch);
    auto batch = topic_.read(cursor_, want, bytes < max_bytes ? max_bytes - bytes : 0);
    for (auto& message : batch) {
      const std::uint64_t seq = message.seq;
      if (seq < cursor_) continue;
      if (seq > cursor_) {
        // A hole in the store (purged, or a damaged segment set aside): nothing to deliver there.
        insert_range(acked_, cursor_, seq - 1);
        journal_ack(cursor_, seq - 1);
        advance_floor();
        if (seq < cursor_) continue;
        cursor_ = seq;
      }
      ++scanned;
      if (is_settled(seq)) {
        cursor_ = seq + 1;
        continue;
      }
      if (!outstanding_.empty() && outstanding_.rbegin()->first >= seq &&
          outstanding_.contains(seq)) {
        cursor_ = seq + 1;  // a lease restored at load(), not a new message
        continue;
      }
      if (is_past_retention(message, now_ms)) {
        cursor_ = seq + 1;
        if (settle_one(seq)) ++counters_.expired;
        continue;
      }
      if (config_.message_filter && !config_.message_filter->matches(message.message.attributes)) {
        cursor_ = seq + 1;
        if (settle_one(seq)) ++counters_.filtered;
        continue;
      }
      const bool is_ordered = config_.message_ordering && !message.message.ordering_key.empty();
      auto key = keys_.end();
      if (is_ordered) {
        key = keys_.find(message.message.ordering_key);
        if (key != keys_.end()) {
          touch(key->second, pull_id);
          if (!key->second.is_open || key->second.expected) {
            // Behind an earlier message of its key: held, as a seq, until the key moves on.
            if (ready_.size() + waiting_count_ >= max_held_messages) {
              is_full = true;
              break;
            }
            cursor_ = seq + 1;
            entry& held = outstanding_[seq];
            held.state = entry_state::ready;
            held.deliveries = take_carried(seq);
            held.has_key = true;
            held.key = key;
            key->second.outstanding.insert(seq);
            ready_.insert(seq);
            continue;
          }
        }
      }
      if (!fits(message)) {
        is_full = true;
        break;
      }
      cursor_ = seq + 1;
      if (is_ordered && key == keys_.end()) {
        key = keys_.try_emplace(message.message.ordering_key).first;
        key->second.pull = pull_id;
        key->second.is_open = true;
      }
      entry& item = outstanding_[seq];
      item.deliveries = take_carried(seq);
      if (is_ordered) {
        item.has_key = true;
        item.key = key;
        key->second.outstanding.insert(seq);
      }
      lease_entry(seq, item, deadline, holder, message.bytes());
      bytes += message.bytes();
      out.push_back(make_delivery(std::move(message), item));
      if (out.size() >= max_messages) break;
    }
    if (cursor_ == before) break;  // the store gave nothing usable at the cursor
  }
  return out;
}

subscription_engine::holding subscription_engine::leased_to(std::uint64_t holder) const {
  auto found = leased_by_holder_.find(holder);
  return found == leased_by_holder_.end() ? holding{} : found->second;
}

void subscription_engine::touch(key_state& key, std::uint64_t pull_id) {
  if (key.pull == pull_id) return;
  key.pull = pull_id;
  key.is_open = key.leased == 0;
  if (key.outstanding.empty())
    key.expected.reset();
  else
    key.expected = *key.outstanding.begin();
}

std::uint32_t subscription_engine::take_carried(std::uint64_t seq) {
  auto found = carried_deliveries_.find(seq);
  if (found == carried_deliveries_.end()) return 0;
  const std::uint32_t deliveries = found->second;
  carried_deliveries_.erase(found);
  return deliveries;
}

void subscription_engine::lease_entry(std::uint64_t seq, entry& item, core::steady_time deadline,
                                      std::uint64_t holder, std::size_t bytes) {
  item.state = entry_state::leased;
  item.holder = holder;
  item.epoch = epoch_;
  item.bytes = static_cast<std::uint32_t>(
      std::min<std::size_t>(bytes, std::numeric_limits<std::uint32_t>::max()));
  if (holder != 0) {
    auto& held = leased_by_holder_[holder];
    ++held.messages;
    held.bytes += item.bytes;
  }
  if (item.deliveries < std::numeric_limits<std::uint32_t>::max()) ++item.deliveries;
  item.when = deadline;
  timers_.emplace(deadline, seq);
  ++leased_count_;
  if (item.has_key) ++item.key->second.leased;
  ++counters_.delivered;
  if (config_.dead_letter)
    journal_.push_back(
        cursor_event{cursor_event::kind::attempts, seq, seq, to_attempts(item.deliveries)});
  journal_lease(seq, item);
}

void subscription_engine::journal_lease(std::uint64_t seq, const entry& item) {
  if (!config_.exactly_once) return;
  cursor_event e{cursor_event::kind::lease, seq, seq, static_cast<std::int32_t>(item.deliveries)};
  e.epoch = item.epoch;
  e.deadline_ms =
      item.state == entry_state::leased ? std::max<std::int64_t>(1, unix_ms_of(item.when)) : 0;
  journal_.push_back(e);
}

std::int64_t subscription_engine::unix_ms_of(core::steady_time when) const {
  return clock_.unix_millis() +
         std::chrono::duration_cast<std::chrono::milliseconds>(when - clock_.now()).count();
}

delivery subscription_engine::make_delivery(stored_message message, const entry& item) const {
  delivery out;
  out.ack_id = encode_ack_id(ack_token{owner_, epoch_, message.seq, item.deliveries});
  out.delivery_attempt = config_.dead_letter ? to_attempts(item.deliveries) : 0;
  out.message = std::move(message);
  return out;
}

std::optional<stored_message> subscription_engine::read_one(std::uint64_t seq) const {
  auto batch = topic_.read(seq, 1, 0);
  if (batch.empty() || batch.front().seq != seq) return std::nullopt;
  return std::move(batch.front());
}

std::chrono::seconds subscription_engine::lease_length(
    std::optional<std::chrono::seconds> lease) const {
  if (!lease || *lease <= std::chrono::seconds::zero()) return config_.ack_deadline;
  return std::min(*lease, max_ack_deadline);
}

std::chrono::milliseconds subscription_engine::backoff_after(std::uint32_t deliveries) const {
  if (!config_.retry) return std::chrono::milliseconds::zero();
  auto value = config_.retry->minimum_backoff;
  const auto cap = config_.retry->maximum_backoff;
  for (std::uint32_t i = 1;
       i < deliveries && value < cap && value > std::chrono::milliseconds::zero(); ++i)
    value *= 2;
  return std::min(value, cap);
}

// ------------------------------------------------------------------------ acks and modacks

bool subscription_engine::is_current_lease(const ack_token& token, core::steady_time now) const {
  auto found = outstanding_.find(token.seq);
  if (found == outstanding_.end()) return false;
  const entry& item = found->second;
  return item.state == entry_state::leased && item.epoch == token.epoch &&
         item.deliveries == token.delivery && item.when > now;
}

std::vector<ack_outcome> subscription_engine::acknowledge(const std::vector<std::string>& ack_ids) {
  std::vector<ack_outcome> outcomes;
  outcomes.reserve(ack_ids.size());
  const core::steady_time now = clock_.now();
  const std::uint64_t next_seq = topic_.next_seq();
  for (const auto& id : ack_ids) {
    const auto token = decode_ack_id(id);
    if (!token || token->owner != owner_ || token->delivery == 0 || token->seq >= next_seq) {
      outcomes.push_back(ack_outcome::invalid);
      continue;
    }
    if (config_.exactly_once && !is_current_lease(*token, now)) {
      outcomes.push_back(ack_outcome::stale);
      continue;
    }
    if (settle_one(token->seq)) ++counters_.acked;
    outcomes.push_back(ack_outcome::ok);
  }
  return outcomes;
}

std::vector<ack_outcome> subscription_engine::modify_ack_deadline(
    const std::vector<std::string>& ack_ids, std::chrono::seconds seconds) {
  std::vector<ack_outcome> outcomes;
  outcomes.reserve(ack_ids.size());
  const core::steady_time now = clock_.now();
  const std::uint64_t next_seq = topic_.next_seq();
  const auto extension = std::clamp(seconds, std::chrono::seconds::zero(), max_ack_deadline);
  for (const auto& id : ack_ids) {
    const auto token = decode_ack_id(id);
    if (!token || token->owner != owner_ || token->delivery == 0 || token->seq >= next_seq) {
      outcomes.push_back(ack_outcome::invalid);
      continue;
    }
    if (!is_current_lease(*token, now)) {
      outcomes.push_back(config_.exactly_once ? ack_outcome::stale : ack_outcome::ok);
      continue;
    }
    if (extension == std::chrono::seconds::zero()) {
      ++counters_.nacked;
      requeue(token->seq, now);
    } else {
      entry& item = outstanding_.find(token->seq)->second;
      timers_.erase(std::make_pair(item.when, token->seq));
      item.when = now + extension;
      timers_.emplace(item.when, token->seq);
      journal_lease(token->seq, item);
    }
    outcomes.push_back(ack_outcome::ok);
  }
  return outcomes;
}

// A leased message goes back (nack or expiry): to wait out its back-off, or to the dead letters.
// With ordering, the key's later leased messages go back with it and follow it in order.
void subscription_engine::requeue(std::uint64_t seq, core::steady_time now) {
  auto found = outstanding_.find(seq);
  if (found == outstanding_.end() || found->second.state != entry_state::leased) return;
  entry& item = found->second;
  const core::steady_time ready_at = now + backoff_after(item.deliveries);
  std::vector<std::uint64_t> followers;
  if (item.has_key) {
    const key_state& key = item.key->second;
    for (auto at = key.outstanding.upper_bound(seq); at != key.outstanding.end(); ++at) {
      auto other = outstanding_.find(*at);
      if (other != outstanding_.end() && other->second.state == entry_state::leased)
        followers.push_back(*at);
    }
  }
  release_lease(seq, item);
  queue_or_dead_letter(seq, item, ready_at, now);
  for (const std::uint64_t other_seq : followers) {
    entry& follower = outstanding_.find(other_seq)->second;
    release_lease(other_seq, follower);
    queue_or_dead_letter(other_seq, follower, ready_at, now);
  }
}

void subscription_engine::queue_or_dead_letter(std::uint64_t seq, entry& item,
                                               core::steady_time ready_at, core::steady_time now) {
  if (config_.dead_letter &&
      item.deliveries >= static_cast<std::uint32_t>(config_.dead_letter->max_delivery_attempts)) {
    // Stays linked to its key, holding the key back until settled (or revived).
    item.state = entry_state::dead_letter;
    dead_letters_.push_back(seq);
    ++counters_.dead_lettered;
    return;
  }
  if (ready_at <= now) {
    item.state = entry_state::ready;
    ready_.insert(seq);
    return;
  }
  item.state = entry_state::waiting;
  item.when = ready_at;
  timers_.emplace(ready_at, seq);
  ++waiting_count_;
}

void subscription_engine::release_lease(std::uint64_t seq, entry& item) {
  timers_.erase(std::make_pair(item.when, seq));
  --leased_count_;
  if (item.has_key) --item.key->second.leased;
  if (config_.exactly_once) {
    const auto was = item.state;
    item.state = entry_state::ready;  // journal_lease: no longer leased
    journal_lease(seq, item);
    item.state = was;
  }
  if (item.holder != 0) {
    auto held = leased_by_holder_.find(item.holder);
    if (held != leased_by_holder_.end()) {
      held->second.bytes -= std::min<std::size_t>(held->second.bytes, item.bytes);
      if (--held->second.messages == 0) leased_by_holder_.erase(held);
    }
    item.holder = 0;
  }
}

// ---------------------------------------------------------------------------------- timers

void subscription_engine::tick() {
  if (is_detached_) return;
  process_due(clock_.now());
  expire_old(clock_.unix_millis());
}

void subscription_engine::process_due(core::steady_time now) {
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const std::uint64_t seq = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto found = outstanding_.find(seq);
    NIMBUS_ASSERT(found != outstanding_.end());
    if (found == outstanding_.end()) continue;
    entry& item = found->second;
    switch (item.state) {
      case entry_state::leased:
        ++counters_.lease_expiries;
        requeue(seq, now);
        break;
      case entry_state::waiting:
        --waiting_count_;
        item.state = entry_state::ready;
        ready_.insert(seq);
        break;
      case entry_state::dead_letter:  // taken but not settled in time: the publish failed
        item.state = entry_state::ready;
        ready_.insert(seq);
        break;
      case entry_state::ready:
        break;
    }
  }
}

std::optional<core::steady_time> subscription_engine::next_deadline() const {
  if (is_detached_ || timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

bool subscription_engine::has_deliverable() const {
  if (is_detached_) return false;
  if (!timers_.empty() && timers_.begin()->first <= clock_.now()) return true;
  for (const std::uint64_t seq : ready_) {
    auto found = outstanding_.find(seq);
    if (found == outstanding_.end()) continue;
    if (!found->second.has_key) return true;
    const key_state& key = found->second.key->second;
    if (key.leased == 0 && !key.outstanding.empty() && *key.outstanding.begin() == seq) return true;
  }
  std::uint64_t next_new = cursor_;
  auto range = acked_.upper_bound(next_new);
  if (range != acked_.begin() && std::prev(range)->second >= next_new)
    next_new = std::prev(range)->second + 1;
  return next_new < topic_.next_seq();
}

// --------------------------------------------------------------------------------- settling

bool subscription_engine::is_settled(std::uint64_t seq) const {
  return seq < floor_ || in_ranges(acked_, seq);
}

bool subscription_engine::is_past_retention(const stored_message& message,
                                            std::int64_t now_ms) const {
  return message.message.publish_time_ms < now_ms - config_.retention.count();
}

std::uint64_t subscription_engine::retention_cutoff(std::int64_t now_ms) const {
  const std::uint64_t cutoff =
      std::max(topic_.first_seq(), topic_.seq_at_time(now_ms - config_.retention.count()));
  return std::min(cutoff, topic_.next_seq());
}

void subscription_engine::expire_old(std::int64_t now_ms) {
  settle_below(retention_cutoff(now_ms));
}

// Everything below `cutoff` is settled; what was not yet counts as expired.
void subscription_engine::settle_below(std::uint64_t cutoff) {
  if (cutoff <= floor_) return;
  std::uint64_t unsettled = cutoff - floor_;
  while (!acked_.empty() && acked_.begin()->first < cutoff) {
    const auto [first, last] = *acked_.begin();
    acked_.erase(acked_.begin());
    unsettled -= std::min(last, cutoff - 1) - first + 1;
    if (last >= cutoff) acked_.emplace(cutoff, last);
  }
  while (!outstanding_.empty() && outstanding_.begin()->first < cutoff)
    remove_entry(outstanding_.begin()->first);
  carried_deliveries_.erase(carried_deliveries_.begin(), carried_deliveries_.lower_bound(cutoff));
  journal_ack(floor_, cutoff - 1);
  floor_ = cutoff;
  counters_.expired += unsettled;
  advance_floor();
}

bool subscription_engine::settle_one(std::uint64_t seq) {
  if (is_settled(seq)) return false;
  remove_entry(seq);
  carried_deliveries_.erase(seq);
  insert_range(acked_, seq, seq);
  journal_ack(seq, seq);
  advance_floor();
  return true;
}

void subscription_engine::settle(std::uint64_t seq) {
  if (seq >= topic_.next_seq()) return;
  settle_one(seq);
}

void subscription_engine::advance_floor() {
  advance_over(floor_, acked_);
  cursor_ = std::max(cursor_, floor_);
  carried_deliveries_.erase(carried_deliveries_.begin(), carried_deliveries_.lower_bound(floor_));
}

void subscription_engine::remove_entry(std::uint64_t seq) {
  auto found = outstanding_.find(seq);
  if (found == outstanding_.end()) return;
  entry& item = found->second;
  switch (item.state) {
    case entry_state::leased:
      release_lease(seq, item);
      break;
    case entry_state::waiting:
      timers_.erase(std::make_pair(item.when, seq));
      --waiting_count_;
      break;
    case entry_state::ready:
      ready_.erase(seq);
      break;
    case entry_state::dead_letter:
      // Only a taken one has a timer; for the others no timer of this seq is left at `when`.
      timers_.erase(std::make_pair(item.when, seq));
      break;
  }
  unlink_key(seq, item);
  outstanding_.erase(found);
}

void subscription_engine::unlink_key(std::uint64_t seq, entry& item) {
  if (!item.has_key) return;
  key_state& key = item.key->second;
  key.outstanding.erase(seq);
  if (key.outstanding.empty()) keys_.erase(item.key);
  item.has_key = false;
}

std::vector<stored_message> subscription_engine::take_dead_letters() {
  std::vector<stored_message> out;
  const core::steady_time now = clock_.now();
  for (const std::uint64_t seq : std::exchange(dead_letters_, {})) {
    auto found = outstanding_.find(seq);
    if (found == outstanding_.end() || found->second.state != entry_state::dead_letter) continue;
    auto message = read_one(seq);
    if (!message) {
      if (settle_one(seq)) ++counters_.expired;
      continue;
    }
    found->second.when = now + dead_letter_grace;
    timers_.emplace(found->second.when, seq);
    out.push_back(std::move(*message));
  }
  return out;
}

// ----------------------------------------------------------------- seek, snapshot, detach

void subscription_engine::drop_outstanding() {
  for (const auto& [seq, item] : outstanding_) {
    if (item.deliveries == 0) continue;
    auto& carried = carried_deliveries_[seq];
    carried = std::max(carried, item.deliveries);
  }
  outstanding_.clear();
  timers_.clear();
  ready_.clear();
  dead_letters_.clear();
  keys_.clear();
  leased_count_ = 0;
  leased_by_holder_.clear();
  waiting_count_ = 0;
}

void subscription_engine::seek_to_time(std::int64_t time_ms) {
  if (is_detached_) return;
  const std::uint64_t target =
      std::max(topic_.seq_at_time(time_ms), retention_cutoff(clock_.unix_millis()));
  drop_outstanding();
  if (config_.retain_acked_messages) {
    floor_ = target;
    acked_.clear();
  } else if (target > floor_) {
    // Acked messages are not retained: those at or after the target stay acked.
    while (!acked_.empty() && acked_.begin()->first < target) {
      const auto [first, last] = *acked_.begin();
      acked_.erase(acked_.begin());
      if (last >= target) acked_.emplace(target, last);
    }
    floor_ = target;
  }
  cursor_ = floor_;
  advance_floor();
  for (auto it = carried_deliveries_.begin(); it != carried_deliveries_.end();) {
    if (in_ranges(acked_, it->first))
      it = carried_deliveries_.erase(it);
    else
      ++it;
  }
  journal_state();
}

void subscription_engine::seek_to_state(const cursor_state& snapshot) {
  if (is_detached_) return;
  drop_outstanding();
  load(snapshot);
  journal_state();
}

cursor_state subscription_engine::snapshot() const {
  cursor_state state;
  state.floor = floor_;
  state.acked.assign(acked_.begin(), acked_.end());
  if (config_.dead_letter) {
    for (const auto& [seq, deliveries] : carried_deliveries_)
      state.delivery_attempts[seq] = to_attempts(deliveries);
    for (const auto& [seq, item] : outstanding_)
      if (item.deliveries > 0) state.delivery_attempts[seq] = to_attempts(item.deliveries);
  }
  if (config_.exactly_once)
    for (const auto& [seq, item] : outstanding_)
      if (item.state == entry_state::leased)
        state.leases[seq] = cursor_state::lease{item.deliveries, item.epoch,
                                                std::max<std::int64_t>(1, unix_ms_of(item.when))};
  return state;
}

void subscription_engine::detach() {
  is_detached_ = true;
  drop_outstanding();
  carried_deliveries_.clear();
  acked_.clear();
  floor_ = std::max(floor_, topic_.next_seq());
  cursor_ = floor_;
  journal_state();
}

// --------------------------------------------------------------------------------- journal

std::vector<cursor_event> subscription_engine::take_journal() {
  return std::exchange(journal_, {});
}

void subscription_engine::journal_ack(std::uint64_t first, std::uint64_t last) {
  if (!journal_.empty() && journal_.back().what == cursor_event::kind::ack &&
      journal_.back().last + 1 == first) {
    journal_.back().last = last;
    return;
  }
  journal_.push_back(cursor_event{cursor_event::kind::ack, first, last, 0});
}

// The whole cursor, after a seek: a seek event and what stays acked and counted.
void subscription_engine::journal_state() {
  journal_.push_back(cursor_event{cursor_event::kind::seek, floor_, floor_, 0});
  for (const auto& [first, last] : acked_)
    journal_.push_back(cursor_event{cursor_event::kind::ack, first, last, 0});
  if (config_.dead_letter)
    for (const auto& [seq, deliveries] : carried_deliveries_)
      journal_.push_back(
          cursor_event{cursor_event::kind::attempts, seq, seq, to_attempts(deliveries)});
}

// ------------------------------------------------------------------------------ statistics

subscription_engine::stats subscription_engine::statistics() const {
  stats out = counters_;
  out.outstanding = leased_count_;
  out.undelivered = 0;
  out.oldest_unacked_publish_ms = 0;
  if (is_detached_) return out;
  const std::uint64_t next_seq = topic_.next_seq();
  std::uint64_t fresh = next_seq > cursor_ ? next_seq - cursor_ : 0;
  auto range = acked_.upper_bound(cursor_);
  if (range != acked_.begin()) --range;
  for (; fresh > 0 && range != acked_.end() && range->first < next_seq; ++range) {
    const std::uint64_t low = std::max(range->first, cursor_);
    const std::uint64_t high = std::min(range->second, next_seq - 1);
    if (low <= high) fresh -= std::min(fresh, high - low + 1);
  }
  out.undelivered = fresh + ready_.size() + waiting_count_;
  if (floor_ < next_seq) {
    auto oldest = topic_.read(floor_, 1, 0);
    if (!oldest.empty()) out.oldest_unacked_publish_ms = oldest.front().message.publish_time_ms;
  }
  return out;
}

}  // namespace nimbus::pubsub
