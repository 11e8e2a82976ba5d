#pragma once
// An append-only log of records in segment files, for Pub/Sub topics, the broker's durable QoS 1
// queues and the bridges' store-and-forward. Appends are queued here and committed by a shared
// committer (committer.hpp), whose thread writes, syncs per policy, and then calls back; reads
// pread() committed bytes from any thread. One log per directory, owned by its service.
//
// On disk: <dir>/<first offset, 20 digits>.seg, each a run of frames, little-endian:
//   u32 length of the rest | u32 crc32c of what follows it | u64 offset | i64 time_ms | payload
// Offsets are dense within a segment; the sparse offset and time indexes live in memory and are
// rebuilt by scanning at open, which also cuts a torn tail and sets damaged segments aside.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "seglog/committer.hpp"

namespace nimbus::seglog {

enum class errc {
  record_too_large = 1,  // a payload over options::max_record_bytes: its batch is refused
  corrupt_record,        // a committed record no longer reads back (changed on disk since open)
};
const std::error_category& error_category();
std::error_code make_error_code(errc e);

}  // namespace nimbus::seglog

namespace std {
template <>
struct is_error_code_enum<nimbus::seglog::errc> : true_type {};
}  // namespace std

namespace nimbus::seglog {

struct record {          // as read back
  std::uint64_t offset;  // dense, from 0 (or from the log's first offset after purges)
  std::int64_t time_ms;  // given at append
  std::string payload;
};

struct recovery_report {               // what open() found
  std::uint64_t truncated_bytes = 0;   // torn tail cut from the last segment
  std::vector<std::string> set_aside;  // segments renamed to *.corrupt (unreadable middle segment)
};

class log {
 public:
  struct options {
    std::filesystem::path dir;                  // created if missing; one log per directory
    std::uint64_t segment_bytes = 64 << 20;     // roll to a new segment past this
    std::uint32_t index_interval_bytes = 4096;  // sparse index granularity
    std::uint32_t max_record_bytes = 16 << 20;  // at most 1 GiB
  };
  using on_appended = std::function<void(std::error_code, std::uint64_t first_offset)>;

  // Opens (recovering) or creates. Throws std::system_error for I/O errors on the directory or
  // its files; damaged contents are repaired or set aside (see recovery_report), never refused.
  static std::unique_ptr<log> open(options o, committer& c, recovery_report* report = nullptr);
  ~log();  // waits for this log's queued appends; never call it from a committer callback
  log(const log&) = delete;
  log& operator=(const log&) = delete;

  // Appends records (same time_ms for all); `done` runs on the committer thread once they are
  // written and synced per policy, with the first offset assigned (consecutive for the batch),
  // or an error (disk full: ENOSPC...) and then nothing of the batch is readable (first_offset
  // is then 0). Thread-safe. Appends from one thread are committed in call order.
  void append(std::vector<std::string> payloads, std::int64_t time_ms, on_appended done);

  // Appends to `out` committed records from `offset` (clamped up to first_offset(); a gap left
  // by a set-aside segment is skipped), at most max_records and about max_bytes of payload (at
  // least one record if any). Thread-safe with appends: pread on the segment files from the
  // sparse index entry at or before `offset`.
  std::error_code read(std::uint64_t offset, std::size_t max_records, std::size_t max_bytes,
                       std::vector<record>& out) const;
  // The first committed offset whose time_ms >= time_ms (next_offset() if none): the time index
  // narrows it to one index interval, which is then scanned.
  std::uint64_t offset_at_time(std::int64_t time_ms) const;
  std::uint64_t first_offset() const { return first_offset_.load(std::memory_order_acquire); }
  std::uint64_t next_offset() const { return next_offset_.load(std::memory_order_acquire); }
  std::uint64_t size_bytes() const { return size_bytes_.load(std::memory_order_relaxed); }
  // About how many bytes the records from `offset` on take (framing included), to within one
  // index interval: a backlog's size, for metrics.
  std::uint64_t bytes_from(std::uint64_t offset) const;
  // Deletes whole segments, oldest first, whose records all have offsets < `offset` (never the
  // active one).
  void drop_before(std::uint64_t offset);
  // Starts a new segment after the records appended before it (unless the active one is empty),
  // so that drop_before can then delete all of those: what an owner that has copied everything
  // elsewhere calls to leave no log behind. `done` runs on the committer thread, with the offset
  // the new segment starts at.
  void start_segment(on_appended done);
  // Deletes whole segments, oldest first, whose newest record is older than time_ms (never the
  // active one). Stops at the first segment to keep, so kept offsets stay one range.
  void drop_older_than(std::int64_t time_ms);

  const std::filesystem::path& dir() const { return options_.dir; }

 private:
  friend class committer;

  // A segment's descriptor, shared by the writer and readers: closed when the last lets go, so
  // a segment dropped during a read is unlinked but still readable to that reader.
  struct segment_file {
    segment_file(int descriptor, std::uint64_t base, std::filesystem::path file_path)
        : fd(descriptor), base_offset(base), path(std::move(file_path)) {}
    ~segment_file();
    segment_file(const segment_file&) = delete;
    segment_file& operator=(const segment_file&) = delete;
    int fd;
    std::uint64_t base_offset;
    std::filesystem::path path;
  };
  struct index_entry {
    std::uint64_t offset = 0;  // the first record at or past index_interval_bytes from the last
    std::uint64_t position = 0;
    std::int64_t max_time = 0;  // newest time_ms from this record to the next entry's
  };
  struct segment {
    std::uint64_t base_offset = 0;
    std::uint64_t end_offset = 0;  // one past its last committed record
    std::uint64_t size = 0;        // committed bytes
    std::int64_t max_time = std::numeric_limits<std::int64_t>::min();
    std::vector<index_entry> index;
    std::shared_ptr<segment_file> file;
  };
  struct pending_batch {
    std::vector<std::string> payloads;
    std::int64_t time_ms = 0;
    on_appended done;
    std::error_code error;  // refused before writing
    std::uint64_t first_offset = 0;
    bool is_segment_start = false;  // start_segment(): no records, a new segment
  };
  struct record_meta {     // a record written this round, published to readers after its sync
    std::size_t slot = 0;  // 0: the active segment at the round's start; k: the k-th created
    std::uint64_t position = 0;
    std::uint64_t offset = 0;
    std::int64_t time_ms = 0;
    std::uint64_t frame_bytes = 0;
  };
  struct writer_state {
    std::shared_ptr<segment_file> file;  // the active segment
    std::uint64_t size = 0;              // bytes written to it, buffered ones included
    std::uint64_t next_offset = 0;       // the next offset to assign
  };

  log(options o, committer& c);
  void recover(recovery_report& report);
  static void note_record(segment& s, std::uint64_t position, std::uint64_t offset,
                          std::int64_t time_ms, std::uint64_t frame_bytes,
                          std::uint32_t index_interval_bytes);
  void drop_segments(const std::function<bool(const segment&)>& is_droppable);

  // The committer's round, on its thread: begin_round() takes the queued batches and writes
  // them (undoing everything on an error); finish_round() publishes and calls back.
  void begin_round();
  bool has_round_records() const { return !round_records_.empty(); }
  int active_fd() const { return writer_.file->fd; }
  void finish_round();
  std::error_code write_round();
  std::error_code flush();
  std::error_code roll();
  void roll_back();
  void publish();

  options options_;
  committer& committer_;
  int dir_fd_ = -1;
  bool is_attached_ = false;

  std::mutex pending_mutex_;
  std::condition_variable idle_;
  std::vector<pending_batch> pending_;  // guarded by pending_mutex_
  bool is_scheduled_ = false;           // guarded by pending_mutex_: in the committer's list
  bool is_in_round_ = false;            // guarded by pending_mutex_

  // What readers see: committed segments, oldest first; the last is the active one.
  mutable std::shared_mutex state_mutex_;
  std::vector<segment> segments_;  // guarded by state_mutex_
  std::atomic<std::uint64_t> first_offset_{0};
  std::atomic<std::uint64_t> next_offset_{0};
  std::atomic<std::uint64_t> size_bytes_{0};

  // The committer thread's (and open()'s, before the log is attached).
  writer_state writer_;
  writer_state round_start_;
  std::vector<pending_batch> round_batches_;
  std::vector<record_meta> round_records_;
  std::vector<std::shared_ptr<segment_file>> round_files_;  // segments created this round
  std::string buffer_;                                      // frames not yet written
  std::error_code round_error_;
  std::error_code round_sync_error_;  // set by the committer
  bool is_dirty_ = false;             // interval: written since the last sync
};

}  // namespace nimbus::seglog
