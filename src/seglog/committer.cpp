#include "seglog/committer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/assert.hpp"
#include "seglog/diagnostics.hpp"
#include "seglog/log.hpp"

namespace nimbus::seglog {

std::error_code committer::sync_data(int fd) {
  while (::fdatasync(fd) != 0) {
    if (errno != EINTR) return {errno, std::system_category()};
  }
  return {};
}

committer::committer(options o) : options_(o) {
  if (options_.fsync != fsync_policy::never) {
    for (unsigned i = 0; i < options_.sync_threads; ++i)
      sync_threads_.emplace_back([this] { sync_worker(); });
  }
  if (options_.fsync == fsync_policy::interval)
    background_thread_ = std::thread([this] { background_worker(); });
  thread_ = std::thread([this] { run(); });
}

void committer::background_worker() {
  while (true) {
    background_sync job;
    {
      std::unique_lock lock(background_mutex_);
      background_wake_.wait(lock, [&] { return background_stopping_ || !background_.empty(); });
      if (background_.empty()) return;  // stopping, and every queued sync done
      job = std::move(background_.front());
      background_.pop_front();
    }
    if (auto error = sync_data(job.fd)) diagnostics::sync_failed(job.dir, error);
    ::close(job.fd);
  }
}

committer::~committer() {
  {
    std::lock_guard lock(mutex_);
    NIMBUS_ASSERT(attached_ == 0);  // logs are destroyed before their committer
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  {
    std::lock_guard lock(pool_mutex_);
    pool_stopping_ = true;
  }
  pool_wake_.notify_all();
  for (auto& helper : sync_threads_) helper.join();
  {
    std::lock_guard lock(background_mutex_);
    background_stopping_ = true;
  }
  background_wake_.notify_all();
  if (background_thread_.joinable()) background_thread_.join();
}

void committer::attach() {
  std::lock_guard lock(mutex_);
  ++attached_;
}

bool committer::detach(log* l) {
  std::unique_lock lock(mutex_);
  --attached_;
  bool was_dirty = false;
  for (auto it = dirty_.begin(); it != dirty_.end();) {
    if (it->first == l) {
      it = dirty_.erase(it);
      was_dirty = true;
    } else {
      ++it;
    }
  }
  // The log is idle, but the current round may still be syncing it or finishing its callbacks.
  round_done_.wait(lock, [&] {
    return std::find(round_logs_.begin(), round_logs_.end(), l) == round_logs_.end();
  });
  return was_dirty;
}

void committer::schedule(log* l) {
  {
    std::lock_guard lock(mutex_);
    ready_.push_back(l);
  }
  wake_.notify_one();
}

void committer::run() {
  std::vector<log*> work;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      while (ready_.empty()) {
        if (stopping_) return;
        if (options_.fsync == fsync_policy::interval && !dirty_.empty()) {
          const auto deadline = dirty_.front().second + options_.sync_interval;
          if (std::chrono::steady_clock::now() >= deadline) break;
          wake_.wait_until(lock, deadline);
        } else {
          wake_.wait(lock);
        }
      }
      work.swap(ready_);
      round_logs_ = work;
    }
    run_round(work);
    work.clear();
    {
      std::lock_guard lock(mutex_);
      round_logs_.clear();
    }
    round_done_.notify_all();
    rounds_.fetch_add(1, std::memory_order_relaxed);
  }
}

void committer::run_round(std::vector<log*>& work) {
  jobs_.clear();
  const auto now = std::chrono::steady_clock::now();
  for (log* l : work) {
    l->begin_round();
    if (!l->has_round_records()) continue;  // nothing written, or it failed and was undone
    if (options_.fsync == fsync_policy::always) {
      jobs_.push_back(sync_job{l->active_fd(), l, {}});
    } else if (options_.fsync == fsync_policy::interval && !l->is_dirty_) {
      l->is_dirty_ = true;
      std::lock_guard lock(mutex_);
      dirty_.emplace_back(l, now);
    }
  }
  // always: the files written are synced, all at once, before any callback.
  sync_all();
  for (const auto& job : jobs_) job.owner->round_sync_error_ = job.error;
  for (log* l : work) l->finish_round();

  // interval: files written longer ago than sync_interval, after this round's callbacks (their
  // promise was write(2), so the disk does not delay them).
  if (options_.fsync != fsync_policy::interval) return;
  std::vector<background_sync> due;
  {
    std::lock_guard lock(mutex_);
    while (!dirty_.empty() && dirty_.front().second + options_.sync_interval <= now) {
      log* l = dirty_.front().first;
      dirty_.pop_front();
      l->is_dirty_ = false;
      const int fd = ::dup(l->active_fd());
      if (fd < 0) {
        diagnostics::sync_failed(l->dir(), {errno, std::system_category()});
        continue;
      }
      due.push_back(background_sync{fd, l->dir()});
    }
  }
  if (due.empty()) return;
  {
    std::lock_guard lock(background_mutex_);
    for (auto& job : due) background_.push_back(std::move(job));
  }
  background_wake_.notify_one();
}

void committer::sync_all() {
  if (jobs_.empty()) return;
  if (jobs_.size() == 1 || sync_threads_.empty()) {
    for (auto& job : jobs_) job.error = sync_data(job.fd);
    return;
  }
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(pool_mutex_);
    generation = ++pool_generation_;
    pool_count_ = jobs_.size();
    pool_next_ = 0;
    pool_remaining_ = jobs_.size();
  }
  pool_wake_.notify_all();
  sync_some(generation);
  std::unique_lock lock(pool_mutex_);
  pool_done_.wait(lock, [&] { return pool_remaining_ == 0; });
}

// Claims and syncs jobs of `generation` until none is left. A helper that wakes late finds the
// generation moved on (or every job claimed) and never touches jobs_ of another round.
void committer::sync_some(std::uint64_t generation) {
  while (true) {
    std::size_t i = 0;
    {
      std::lock_guard claim(pool_mutex_);
      if (pool_generation_ != generation || pool_next_ >= pool_count_) return;
      i = pool_next_++;
    }
    const auto error = sync_data(jobs_[i].fd);
    std::lock_guard done(pool_mutex_);
    jobs_[i].error = error;
    if (--pool_remaining_ == 0) pool_done_.notify_all();
  }
}

void committer::sync_worker() {
  std::uint64_t seen = 0;
  while (true) {
    std::uint64_t generation = 0;
    {
      std::unique_lock lock(pool_mutex_);
      pool_wake_.wait(lock, [&] { return pool_stopping_ || pool_generation_ != seen; });
      if (pool_stopping_) return;
      generation = seen = pool_generation_;
    }
    sync_some(generation);
  }
}

}  // namespace nimbus::seglog
