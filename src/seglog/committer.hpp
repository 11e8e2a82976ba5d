#pragma once
// The thread that commits appends to segment logs (log.hpp), one shared by many logs (one per
// Pub/Sub topic): each round it writes every log's queued batches (write(2)), fdatasyncs the
// files written, several at once, when the policy is `always`, and only then runs the batches'
// callbacks. Created before and destroyed after the logs that use it. Callbacks run on its
// thread: they post and return, and never destroy a log.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace nimbus::seglog {

class log;

enum class fsync_policy {
  always,    // fdatasync before any callback: an acknowledged record survives power loss
  interval,  // write(2) before the callback (survives kill -9), fdatasync within sync_interval
  never,     // write(2) before the callback; the kernel writes back when it likes
};

class committer {
 public:
  struct options {
    fsync_policy fsync = fsync_policy::always;
    std::chrono::milliseconds sync_interval{1000};  // interval: the longest a file stays unsynced
    // Threads besides the committer's own that fdatasync a round's files in parallel (the
    // disk, not the CPU, is what they wait for).
    unsigned sync_threads = 3;
  };

  explicit committer(options o);
  ~committer();  // finishes queued work, then stops the thread
  committer(const committer&) = delete;
  committer& operator=(const committer&) = delete;

  fsync_policy policy() const { return options_.fsync; }
  std::uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }
  bool is_committer_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  friend class log;
  using steady_time = std::chrono::steady_clock::time_point;

  struct sync_job {
    int fd = -1;
    log* owner = nullptr;
    std::error_code error;
  };

  // fdatasync, retried when interrupted.
  static std::error_code sync_data(int fd);

  // For log: counts it in; detach() waits until no round touches it and returns whether it had
  // unsynced writes (interval), which the log then syncs itself.
  void attach();
  bool detach(log* l);
  // For log::append: `l` has queued batches (called once until a round takes them).
  void schedule(log* l);

  void run();
  void run_round(std::vector<log*>& work);
  void sync_all();
  void sync_some(std::uint64_t generation);
  void sync_worker();

  const options options_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable round_done_;
  std::vector<log*> ready_;       // guarded by mutex_: logs with queued batches
  std::vector<log*> round_logs_;  // guarded by mutex_: the logs the current round touches
  std::deque<std::pair<log*, steady_time>> dirty_;  // guarded by mutex_: interval, oldest first
  std::size_t attached_ = 0;                        // guarded by mutex_
  bool stopping_ = false;                           // guarded by mutex_
  std::atomic<std::uint64_t> rounds_{0};

  std::vector<sync_job> jobs_;  // the committer thread's: this round's fdatasyncs

  // The sync helpers claim jobs_ [0, pool_count_) one at a time, all guarded by pool_mutex_.
  std::mutex pool_mutex_;
  std::condition_variable pool_wake_;
  std::condition_variable pool_done_;
  std::uint64_t pool_generation_ = 0;
  std::size_t pool_count_ = 0;
  std::size_t pool_next_ = 0;
  std::size_t pool_remaining_ = 0;
  bool pool_stopping_ = false;
  std::vector<std::thread> sync_threads_;

  // interval: files due for their periodic fdatasync go to this thread (a dup of the
  // descriptor each, so a segment closed meanwhile stays syncable), never holding up a round:
  // appends arriving during a slow sync would otherwise wait for it.
  struct background_sync {
    int fd = -1;
    std::filesystem::path dir;
  };
  void background_worker();
  std::mutex background_mutex_;
  std::condition_variable background_wake_;
  std::deque<background_sync> background_;  // guarded by background_mutex_
  bool background_stopping_ = false;        // guarded by background_mutex_
  std::thread background_thread_;

  std::thread thread_;
};

}  // namespace nimbus::seglog
