#pragma once
// One bridge's store-and-forward queue: what devices published for the remote, kept on disk
// until the remote acknowledged it, so a link down or a kill -9 loses nothing (issue 14). Owned
// by the bridge; enqueue() is called from the broker's threads, the consumer side (read, settle,
// rewind) from the bridge's link, one thread at a time; durability callbacks run on the seglog
// committer's thread. Records are opaque bytes here (queued_message.hpp encodes them).
//
// On disk, in <data>/bridges/<name>/:
//   messages/  a seglog log of the records, offsets dense from 0 for the queue's life;
//   position/  a seglog log of small state records, the last one (65 bytes) holding `start`:
//              every record below it is settled (acknowledged, expired, dropped...), and the
//              totals by reason of those records. It is appended on the same committer as the
//              messages, so a position costs one frame in a group commit, never an fsync of
//              its own (an atomically replaced file would cost two fsyncs and a rename per
//              save); torn tails are cut by seglog, and only the last two segments are kept.
// Records settled out of order sit above `start` in memory only: after a crash they are sent
// again (duplicates only within the in-flight window), and their totals, which only ever count
// what is below `start`, go back with them, so `dropped` still equals what is missing.
// Memory: 8 bytes per record not yet below `start`; open() reads that backlog once to size it.
#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "bridge/bridge_config.hpp"
#include "core/clock.hpp"
#include "seglog/committer.hpp"
#include "seglog/log.hpp"

namespace nimbus::bridge {

struct forward_queue_options {
  std::filesystem::path dir;  // <data>/bridges/<name>; created if missing
  queue_settings bound;       // queue_max_bytes (of records not yet settled), full_policy
  // A new messages/ segment past this; 0: max_bytes / 8 within [64 KiB, 64 MiB], so that
  // settling or dropping frees disk in steps small beside the bound.
  std::uint64_t segment_bytes = 0;
};

// Why a record left the queue (the totals are counted by these).
enum class settle_reason : std::uint8_t {
  acknowledged = 1,  // the remote's PUBACK (PUBCOMP for QoS 2), or Publish's id (Pub/Sub)
  expired,           // its Message Expiry Interval ended while queued (the bridge checks at read)
  undeliverable,   // the remote cannot take it (topic invalid there, over its Maximum Packet Size)
  dropped_oldest,  // full_policy drop-oldest made room for a newer one; never sent
  lost,            // in a segment set aside as corrupt at open
  discarded,       // discard(): the bridge was deleted with ?discard_queue=true
};

struct forward_queue_stats {
  std::uint64_t queued_messages = 0;  // durably queued, not yet settled
  std::uint64_t queued_bytes = 0;     // their record bytes
  std::uint64_t in_flight = 0;        // of those, read and not yet settled
  std::uint64_t enqueued = 0;         // every record the queue ever took (its next offset)
  std::uint64_t acknowledged = 0;
  std::uint64_t expired = 0;
  std::uint64_t undeliverable = 0;
  std::uint64_t dropped_oldest = 0;
  std::uint64_t dropped_full = 0;  // refused at enqueue: drop-new when full, or too large
  std::uint64_t lost = 0;
  std::uint64_t discarded = 0;
};

struct forward_queue_recovery {
  seglog::recovery_report messages;  // what seglog repaired in messages/
  seglog::recovery_report position;  // and in position/
  std::uint64_t lost_records = 0;    // unsettled records that were in set-aside segments
  bool has_position = false;         // a state record was found (else: from the oldest record)
};

class forward_queue {
 public:
  enum class admission {
    queued,   // appended: `done` runs once durable (or with the write's error)
    dropped,  // refused and counted (drop-new when full, or larger than the bound itself); the
              // count is saved with the next position, so a kill -9 just after may lose it
    full,     // block: nothing done; hold the publisher until the space listener runs
  };
  using durable_callback = std::function<void(std::error_code)>;

  // Opens (recovering) or creates. Throws std::system_error for I/O errors on the directory, as
  // seglog::log::open; damaged contents are set aside and counted, never refused. `committer`
  // and `clock` outlive the queue.
  static std::unique_ptr<forward_queue> open(forward_queue_options options,
                                             seglog::committer& committer, core::clock& clock,
                                             forward_queue_recovery* recovery = nullptr);
  // Writes the latest position and waits for the queue's writes; never from a committer
  // callback, never while another thread calls in.
  ~forward_queue();
  forward_queue(const forward_queue&) = delete;
  forward_queue& operator=(const forward_queue&) = delete;

  // ---- producers (thread-safe)

  // Appends `records` (one batch, all or nothing) within the bound per its policy; on `queued`,
  // `done(error)` runs on the committer thread once they are on disk: the devices' PUBACKs.
  admission enqueue(std::vector<std::string> records, durable_callback done);
  // Called, without the queue's lock, from the thread that freed the space (consumer or
  // committer), once after enqueue() said `full` when the queue is down to 3/4 of its bound.
  // Set before the queue is shared.
  void set_space_listener(std::function<void()> listener) { space_listener_ = std::move(listener); }

  // ---- the consumer (one thread at a time)

  // Appends to `out` the next unsent records from the send position, at most max_records and
  // about max_bytes (at least one if any), and moves the send position past them: they are in
  // flight until settled. Records settled meanwhile (dropped, acknowledged before a rewind)
  // are skipped. An I/O error or a record damaged since open is returned as seglog reports it.
  std::error_code read(std::size_t max_records, std::size_t max_bytes,
                       std::vector<seglog::record>& out);
  // The in-flight record at `offset` leaves the queue, in any order; false when it is not in
  // flight (settled already, dropped meanwhile, or not read since the last rewind). The settled
  // prefix is saved in the background; whole segments below it are deleted once it is on disk.
  bool settle(std::uint64_t offset, settle_reason reason);
  bool acknowledge(std::uint64_t offset) { return settle(offset, settle_reason::acknowledged); }
  // The link was lost or is reconnecting: every record in flight is unsent again, so read()
  // starts over from the oldest unsettled one (records acknowledged out of order are not sent
  // again), and drop-oldest, which never drops a record in flight, may drop them.
  void rewind();

  // ---- control

  // Settles every queued record as discarded (records still being appended stay); `done` runs
  // on the committer thread once that position is on disk and the old segments are deleted.
  void discard(durable_callback done);
  // `done` runs on the committer thread once the position as of now is on disk (a clean stop
  // of the link; tests).
  void save_position(durable_callback done);
  forward_queue_stats stats() const;
  const std::filesystem::path& dir() const { return options_.dir; }

 private:
  // A record not yet below `start`: its size and state (0: queued, else a settle_reason).
  struct slot {
    std::uint32_t bytes = 0;
    std::uint8_t state = 0;
  };
  static constexpr std::size_t reason_count = 7;  // index 0: dropped_full, else settle_reason
  using totals = std::array<std::uint64_t, reason_count>;

  forward_queue(forward_queue_options options, seglog::committer& committer, core::clock& clock);
  void recover(forward_queue_recovery& recovery);
  void write_position_now();

  std::uint64_t end_locked() const { return start_ + slots_.size(); }
  void settle_slot_locked(slot& s, settle_reason reason);
  void drop_oldest_locked(std::uint64_t needed);
  void advance_start_locked();
  bool take_space_signal_locked();
  void save_locked(durable_callback waiter = {});
  void write_locked();
  void on_position_written(std::error_code error, std::uint64_t record_offset, std::uint64_t start,
                           std::vector<durable_callback> waiters);
  void on_appended(std::error_code error, std::uint64_t first_offset,
                   const std::vector<std::uint32_t>& sizes, const durable_callback& done);

  const forward_queue_options options_;
  seglog::committer& committer_;
  core::clock& clock_;
  std::function<void()> space_listener_;

  mutable std::mutex mutex_;
  std::condition_variable position_idle_;
  // All guarded by mutex_. Offsets: start_ <= send_ <= end_locked(); slots_[i] is start_ + i.
  std::uint64_t start_ = 0;  // everything below is settled and counted in saved_
  std::uint64_t send_ = 0;   // read() goes on from here
  std::deque<slot> slots_;   // [start_, end): appended and durable, settled or not
  std::uint64_t queued_messages_ = 0;
  std::uint64_t queued_bytes_ = 0;
  std::uint64_t in_flight_messages_ = 0;  // queued ones below send_
  std::uint64_t in_flight_bytes_ = 0;
  std::uint64_t appending_bytes_ = 0;  // accepted, not yet durable: counted in the bound
  totals saved_{};                     // settled below start_ (and dropped_full): persisted
  totals above_{};                     // settled above start_: in memory only
  bool is_full_signalled_ = false;     // enqueue() said `full`; the listener is owed a call
  bool is_position_dirty_ = false;     // the persisted state is behind start_ / saved_
  bool is_position_writing_ = false;   // one state record in the committer at a time
  bool is_closing_ = false;            // the destructor runs: no new state writes but its own
  std::vector<durable_callback> position_waiters_;  // for the next state record

  // Closed by the destructor, in its order; their callbacks use the state above.
  std::unique_ptr<seglog::log> position_log_;
  std::unique_ptr<seglog::log> messages_log_;
};

}  // namespace nimbus::bridge
