#include "bridge/forward_queue.hpp"

#include <algorithm>
#include <future>
#include <string_view>
#include <utility>

#include "core/assert.hpp"
#include "core/log.hpp"

namespace nimbus::bridge {

namespace {

// The largest record: an MQTT packet's remaining length plus queued_message's header.
constexpr std::uint32_t record_limit = (256U << 20) + (64U << 10);
constexpr std::uint8_t queued = 0;  // a slot's state before it is settled
constexpr std::size_t dropped_full_index = 0;

// The state record, version 1, little-endian: u8 version | u64 start | u64 totals[7]
// (dropped_full, then by settle_reason).
constexpr std::uint8_t position_version = 1;
constexpr std::size_t position_bytes = 1 + 8 * 8;

void put_u64(std::string& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(std::string_view in, std::size_t at) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 8; ++i)
    value |= std::uint64_t{static_cast<std::uint8_t>(in[at + i])} << (8 * i);
  return value;
}

template <class Totals>
std::string encode_position(std::uint64_t start, const Totals& totals) {
  std::string out;
  out.reserve(position_bytes);
  out.push_back(static_cast<char>(position_version));
  put_u64(out, start);
  for (const std::uint64_t total : totals) put_u64(out, total);
  return out;
}

template <class Totals>
bool decode_position(std::string_view in, std::uint64_t& start, Totals& totals) {
  if (in.size() != position_bytes || static_cast<std::uint8_t>(in[0]) != position_version)
    return false;
  start = get_u64(in, 1);
  for (std::size_t i = 0; i < totals.size(); ++i) totals[i] = get_u64(in, 9 + 8 * i);
  return true;
}

std::size_t index_of(settle_reason reason) {
  return static_cast<std::size_t>(reason);
}

}  // namespace

std::unique_ptr<forward_queue> forward_queue::open(forward_queue_options options,
                                                   seglog::committer& committer, core::clock& clock,
                                                   forward_queue_recovery* recovery) {
  std::unique_ptr<forward_queue> q(new forward_queue(std::move(options), committer, clock));
  forward_queue_recovery ignored;
  q->recover(recovery != nullptr ? *recovery : ignored);
  return q;
}

forward_queue::forward_queue(forward_queue_options options, seglog::committer& committer,
                             core::clock& clock)
    : options_(std::move(options)), committer_(committer), clock_(clock) {}

// The position first (the last readable state record wins: one is written at a time, so the
// last is the newest), then the messages: every offset from `start` to the log's end becomes a
// slot, queued if its record reads back, `lost` if a set-aside segment held it.
void forward_queue::recover(forward_queue_recovery& recovery) {
  recovery = forward_queue_recovery{};
  seglog::log::options position;
  position.dir = options_.dir / "position";
  position.segment_bytes = 64 << 10;
  position.max_record_bytes = 4096;
  position_log_ = seglog::log::open(position, committer_, &recovery.position);
  std::vector<seglog::record> records;
  for (std::uint64_t at = position_log_->first_offset(); at < position_log_->next_offset();) {
    records.clear();
    if (position_log_->read(at, 4096, 1 << 20, records) || records.empty()) break;
    for (const auto& r : records) {
      if (decode_position(r.payload, start_, saved_)) recovery.has_position = true;
    }
    at = records.back().offset + 1;
  }

  seglog::log::options messages;
  messages.dir = options_.dir / "messages";
  messages.segment_bytes =
      options_.segment_bytes != 0
          ? options_.segment_bytes
          : std::clamp<std::uint64_t>(options_.bound.max_bytes / 8, 64 << 10, 64 << 20);
  messages.max_record_bytes = record_limit;
  messages_log_ = seglog::log::open(messages, committer_, &recovery.messages);

  const std::uint64_t next = messages_log_->next_offset();
  if (!recovery.has_position) start_ = messages_log_->first_offset();
  // The messages lost records the position had settled (written, not synced, then power
  // lost): their offsets will be given again, so the position must not cover them.
  bool is_changed = start_ > next;
  start_ = std::min(start_, next);
  std::uint64_t expected = start_;
  auto add_lost_until = [&](std::uint64_t offset) {
    for (; expected < offset; ++expected) {
      slots_.push_back(slot{0, static_cast<std::uint8_t>(settle_reason::lost)});
      ++above_[index_of(settle_reason::lost)];
      ++recovery.lost_records;
    }
  };
  for (std::uint64_t at = start_; at < next;) {
    records.clear();
    if (auto error = messages_log_->read(at, 4096, 16 << 20, records))
      throw std::system_error(error, "bridge queue: cannot read " + messages.dir.string());
    if (records.empty()) break;
    for (const auto& r : records) {
      add_lost_until(r.offset);
      slots_.push_back(slot{static_cast<std::uint32_t>(r.payload.size()), queued});
      ++queued_messages_;
      queued_bytes_ += r.payload.size();
      expected = r.offset + 1;
    }
    at = records.back().offset + 1;
  }
  add_lost_until(next);
  send_ = start_;

  if (recovery.lost_records > 0 || recovery.messages.truncated_bytes > 0 ||
      !recovery.messages.set_aside.empty() || recovery.position.truncated_bytes > 0 ||
      !recovery.position.set_aside.empty())
    spdlog::warn(
        "bridge_queue_repaired dir={} truncated_bytes={} set_aside={} lost={} "
        "position_truncated_bytes={}",
        options_.dir.string(), recovery.messages.truncated_bytes,
        recovery.messages.set_aside.size(), recovery.lost_records,
        recovery.position.truncated_bytes);

  {
    std::lock_guard lock(mutex_);
    const std::uint64_t before = start_;
    advance_start_locked();  // past leading lost slots
    is_changed = is_changed || start_ != before;
  }
  if (is_changed) write_position_now();
}

// At open, before the queue is shared: saves the position and waits for it to be on disk.
void forward_queue::write_position_now() {
  // Shared with the callback, so the promise outlives its set_value() whoever wakes first.
  auto written = std::make_shared<std::promise<std::error_code>>();
  auto result = written->get_future();
  {
    std::lock_guard lock(mutex_);
    save_locked([written](std::error_code error) { written->set_value(error); });
  }
  if (auto error = result.get())
    throw std::system_error(error,
                            "bridge queue: cannot save the position in " + options_.dir.string());
}

// The latest position is written after the in-flight one; only then no write can start, so
// the messages' log can go (a position callback deletes its segments), then a last position
// for what its callbacks changed, then the position's log.
forward_queue::~forward_queue() {
  auto write_and_wait = [this] {
    std::unique_lock lock(mutex_);
    is_closing_ = true;
    if ((is_position_dirty_ || !position_waiters_.empty()) && !is_position_writing_) write_locked();
    position_idle_.wait(lock, [this] { return !is_position_writing_; });
  };
  write_and_wait();
  messages_log_.reset();
  write_and_wait();
  position_log_.reset();
}

forward_queue::admission forward_queue::enqueue(std::vector<std::string> records,
                                                durable_callback done) {
  std::vector<std::uint32_t> sizes;
  sizes.reserve(records.size());
  std::uint64_t bytes = 0;
  bool is_too_large = false;
  for (const auto& r : records) {
    is_too_large = is_too_large || r.size() > record_limit;
    sizes.push_back(static_cast<std::uint32_t>(std::min<std::size_t>(r.size(), record_limit)));
    bytes += r.size();
  }
  {
    std::lock_guard lock(mutex_);
    const std::uint64_t bound = options_.bound.max_bytes;
    auto refuse = [&] {
      saved_[dropped_full_index] += records.size();
      save_locked();
      return admission::dropped;
    };
    if (is_too_large || bytes > bound) return refuse();
    const std::uint64_t used = queued_bytes_ + appending_bytes_;
    if (used + bytes > bound) {
      const std::uint64_t needed = used + bytes - bound;
      switch (options_.bound.when_full) {
        case full_policy::block:
          is_full_signalled_ = true;
          return admission::full;
        case full_policy::drop_new:
          return refuse();
        case full_policy::drop_oldest:
          // Only what was never sent: records in flight may be at the remote already.
          if (queued_bytes_ - in_flight_bytes_ < needed) return refuse();
          drop_oldest_locked(needed);
          break;
      }
    }
    appending_bytes_ += bytes;
  }
  messages_log_->append(std::move(records), clock_.unix_millis(),
                        [this, sizes = std::move(sizes), done = std::move(done)](
                            std::error_code error, std::uint64_t first_offset) {
                          on_appended(error, first_offset, sizes, done);
                        });
  return admission::queued;
}

void forward_queue::on_appended(std::error_code error, std::uint64_t first_offset,
                                const std::vector<std::uint32_t>& sizes,
                                const durable_callback& done) {
  bool is_space_freed = false;
  {
    std::lock_guard lock(mutex_);
    for (const std::uint32_t size : sizes) appending_bytes_ -= size;
    if (!error) {
      // Batches are committed and called back in offset order, so this one starts at the end.
      NIMBUS_ASSERT(first_offset == end_locked());
      while (end_locked() < first_offset) {  // (never; a gap would be read as lost)
        slots_.push_back(slot{0, static_cast<std::uint8_t>(settle_reason::lost)});
        ++above_[index_of(settle_reason::lost)];
      }
      for (const std::uint32_t size : sizes) {
        slots_.push_back(slot{size, queued});
        ++queued_messages_;
        queued_bytes_ += size;
      }
    }
    is_space_freed = take_space_signal_locked();
  }
  if (done) done(error);
  if (is_space_freed && space_listener_) space_listener_();
}

std::error_code forward_queue::read(std::size_t max_records, std::size_t max_bytes,
                                    std::vector<seglog::record>& out) {
  const std::size_t before = out.size();
  std::vector<seglog::record> records;
  // Again only when a concurrent drop-oldest or discard took every record read.
  while (out.size() == before) {
    std::uint64_t from = 0;
    {
      std::lock_guard lock(mutex_);
      while (send_ < end_locked() && slots_[send_ - start_].state != queued) ++send_;
      if (send_ == end_locked()) return {};
      from = send_;
    }
    records.clear();
    if (auto error = messages_log_->read(from, max_records, max_bytes, records)) return error;
    std::lock_guard lock(mutex_);
    for (auto& r : records) {
      if (r.offset >= end_locked()) break;  // readable, but its producer is not told yet
      if (r.offset < send_) continue;       // dropped meanwhile: drop-oldest moved past it
      const slot& s = slots_[r.offset - start_];
      send_ = r.offset + 1;
      if (s.state != queued) continue;
      ++in_flight_messages_;
      in_flight_bytes_ += s.bytes;
      out.push_back(std::move(r));
    }
  }
  return {};
}

bool forward_queue::settle(std::uint64_t offset, settle_reason reason) {
  bool is_space_freed = false;
  {
    std::lock_guard lock(mutex_);
    if (offset < start_ || offset >= send_) return false;
    slot& s = slots_[offset - start_];
    if (s.state != queued) return false;
    --in_flight_messages_;
    in_flight_bytes_ -= s.bytes;
    settle_slot_locked(s, reason);
    advance_start_locked();
    is_space_freed = take_space_signal_locked();
  }
  if (is_space_freed && space_listener_) space_listener_();
  return true;
}

void forward_queue::rewind() {
  std::lock_guard lock(mutex_);
  send_ = start_;
  in_flight_messages_ = 0;
  in_flight_bytes_ = 0;
}

void forward_queue::discard(durable_callback done) {
  bool is_space_freed = false;
  {
    std::lock_guard lock(mutex_);
    for (auto& s : slots_) {
      if (s.state == queued) settle_slot_locked(s, settle_reason::discarded);
    }
    send_ = end_locked();
    in_flight_messages_ = 0;
    in_flight_bytes_ = 0;
    advance_start_locked();
    is_space_freed = take_space_signal_locked();
  }
  if (is_space_freed && space_listener_) space_listener_();
  // A new active segment first, so that the position written after it lets every older
  // segment go.
  messages_log_->start_segment([this, done = std::move(done)](std::error_code, std::uint64_t) {
    std::lock_guard lock(mutex_);
    save_locked(done);
  });
}

void forward_queue::save_position(durable_callback done) {
  std::lock_guard lock(mutex_);
  save_locked(std::move(done));
}

forward_queue_stats forward_queue::stats() const {
  std::lock_guard lock(mutex_);
  forward_queue_stats s;
  s.queued_messages = queued_messages_;
  s.queued_bytes = queued_bytes_;
  s.in_flight = in_flight_messages_;
  s.enqueued = end_locked();
  auto total = [&](settle_reason r) { return saved_[index_of(r)] + above_[index_of(r)]; };
  s.acknowledged = total(settle_reason::acknowledged);
  s.expired = total(settle_reason::expired);
  s.undeliverable = total(settle_reason::undeliverable);
  s.dropped_oldest = total(settle_reason::dropped_oldest);
  s.dropped_full = saved_[dropped_full_index];
  s.lost = total(settle_reason::lost);
  s.discarded = total(settle_reason::discarded);
  return s;
}

void forward_queue::settle_slot_locked(slot& s, settle_reason reason) {
  --queued_messages_;
  queued_bytes_ -= s.bytes;
  s.state = static_cast<std::uint8_t>(reason);
  ++above_[index_of(reason)];
}

// Never-sent records from the send position on, oldest first, until `needed` bytes are free.
void forward_queue::drop_oldest_locked(std::uint64_t needed) {
  std::uint64_t freed = 0;
  while (freed < needed && send_ < end_locked()) {
    slot& s = slots_[send_ - start_];
    ++send_;
    if (s.state != queued) continue;
    freed += s.bytes;
    settle_slot_locked(s, settle_reason::dropped_oldest);
  }
  advance_start_locked();
}

// Moves `start` past the settled prefix, counting it in the saved totals, and saves.
void forward_queue::advance_start_locked() {
  bool is_moved = false;
  while (!slots_.empty() && slots_.front().state != queued) {
    const std::size_t reason = slots_.front().state;
    --above_[reason];
    ++saved_[reason];
    slots_.pop_front();
    ++start_;
    is_moved = true;
  }
  send_ = std::max(send_, start_);
  if (is_moved) save_locked();
}

bool forward_queue::take_space_signal_locked() {
  const std::uint64_t bound = options_.bound.max_bytes;
  if (!is_full_signalled_ || queued_bytes_ + appending_bytes_ > bound - bound / 4) return false;
  is_full_signalled_ = false;
  return true;
}

// Coalesced: one state record in the committer at a time; changes meanwhile go in the next.
void forward_queue::save_locked(durable_callback waiter) {
  if (waiter) position_waiters_.push_back(std::move(waiter));
  is_position_dirty_ = true;
  if (!is_position_writing_ && !is_closing_) write_locked();
}

void forward_queue::write_locked() {
  is_position_writing_ = true;
  is_position_dirty_ = false;
  std::vector<durable_callback> waiters;
  waiters.swap(position_waiters_);
  position_log_->append({encode_position(start_, saved_)}, clock_.unix_millis(),
                        [this, start = start_, waiters = std::move(waiters)](
                            std::error_code error, std::uint64_t record_offset) mutable {
                          on_position_written(error, record_offset, start, std::move(waiters));
                        });
}

// On the committer thread: the position is on disk, so what is below it can be deleted (the
// committer's thread does file I/O anyway; never a loop's).
void forward_queue::on_position_written(std::error_code error, std::uint64_t record_offset,
                                        std::uint64_t start,
                                        std::vector<durable_callback> waiters) {
  if (error) {
    spdlog::error("bridge_queue_position_failed dir={} error=\"{}\"", options_.dir.string(),
                  error.message());
  } else {
    if (messages_log_) messages_log_->drop_before(start);
    position_log_->drop_before(record_offset);
  }
  for (auto& waiter : waiters) waiter(error);
  std::vector<durable_callback> failed;
  {
    std::lock_guard lock(mutex_);
    is_position_writing_ = false;
    if (error) {
      // Not retried at once (a full disk would spin): the next change or the close retries.
      is_position_dirty_ = true;
      failed.swap(position_waiters_);
    } else if (is_position_dirty_ || !position_waiters_.empty()) {
      write_locked();
    }
    position_idle_.notify_all();
  }
  for (auto& waiter : failed) waiter(error);
}

}  // namespace nimbus::bridge
