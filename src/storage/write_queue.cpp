#include "storage/write_queue.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace nimbus::storage {

write_queue::write_queue(const std::string& path, const std::string& synchronous,
                         std::chrono::milliseconds max_batch_wait)
    : db_(std::make_unique<database>(path, synchronous)), max_batch_wait_(max_batch_wait) {
  thread_ = std::thread([this] { run(); });
}

write_queue::~write_queue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

ticket write_queue::submit(write w) {
  std::uint64_t sequence;
  {
    std::lock_guard lock(mutex_);
    pending_.push_back(std::move(w));
    sequence = ++submitted_;
  }
  wake_.notify_one();
  return ticket(sequence);
}

void write_queue::when_durable(ticket t, on_durable done) {
  {
    std::lock_guard lock(mutex_);
    // Not `committed_`: a callback registered earlier for this ticket may still be about to
    // run, and callbacks keep their order (a store applies its change before anyone answers).
    if (notified_ < t.sequence()) {
      waiters_.emplace_back(t.sequence(), std::move(done));
      return;
    }
  }
  done();
}

bool write_queue::failed_between(ticket after, ticket up_to) const {
  if (failures_.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(failed_mutex_);
  auto it = std::upper_bound(failed_.begin(), failed_.end(), after.sequence());
  return it != failed_.end() && *it <= up_to.sequence();
}

void write_queue::drain() {
  std::unique_lock lock(mutex_);
  std::uint64_t target = submitted_;
  drained_.wait(lock, [&] { return notified_ >= target; });
}

void write_queue::run() {
  std::vector<write> batch;
  std::vector<on_durable> ready;
  while (true) {
    std::uint64_t batch_end;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty() && stopping_) return;
      // A lone write waits briefly for company: one commit then covers many writes.
      if (pending_.size() < 64 && max_batch_wait_.count() > 0 && !stopping_) {
        wake_.wait_for(lock, max_batch_wait_, [&] { return stopping_ || pending_.size() >= 64; });
      }
      batch.swap(pending_);
      batch_end = submitted_;
    }
    std::vector<std::uint64_t> failed_here;
    const std::uint64_t first_ticket = batch_end - batch.size() + 1;
    try {
      db_->exec("BEGIN");
      for (std::size_t i = 0; i < batch.size(); ++i) {
        db_->exec("SAVEPOINT w");
        try {
          batch[i](*db_);
          db_->exec("RELEASE w");
        } catch (const std::exception& e) {
          spdlog::error("storage_write_failed ticket={} error=\"{}\"", first_ticket + i, e.what());
          db_->exec("ROLLBACK TO w");
          db_->exec("RELEASE w");
          failed_here.push_back(first_ticket + i);
        }
      }
      db_->exec("COMMIT");
    } catch (const std::exception& e) {
      // The commit itself failed (disk full, I/O error): nothing in this batch is durable.
      spdlog::error("storage_commit_failed error=\"{}\" writes={}", e.what(), batch.size());
      try {
        db_->exec("ROLLBACK");
      } catch (const std::exception& rollback) {
        // SQLite may have rolled back already (it does after some I/O errors); either way the
        // batch is reported failed below.
        spdlog::warn("storage_rollback_failed error=\"{}\"", rollback.what());
      }
      failed_here.clear();
      for (std::size_t i = 0; i < batch.size(); ++i) failed_here.push_back(first_ticket + i);
    }
    if (!failed_here.empty()) {
      failures_.fetch_add(failed_here.size(), std::memory_order_relaxed);
      std::lock_guard lock(failed_mutex_);
      failed_.insert(failed_.end(), failed_here.begin(), failed_here.end());
      // Old failures stop mattering once nobody can still be waiting on them.
      if (failed_.size() > 100'000) failed_.erase(failed_.begin(), failed_.begin() + 50'000);
    }
    batch.clear();
    commits_.fetch_add(1, std::memory_order_relaxed);
    committed_.store(batch_end, std::memory_order_release);
    // Callbacks registered while these run (for tickets of this batch) are run here too, and
    // only when none is left does when_durable start running new ones at once: in order.
    while (true) {
      {
        std::lock_guard lock(mutex_);
        auto keep = waiters_.begin();
        for (auto& w : waiters_) {
          if (w.first <= batch_end)
            ready.push_back(std::move(w.second));
          else
            *keep++ = std::move(w);
        }
        waiters_.erase(keep, waiters_.end());
        // drain() returns only once the callbacks of what it waited for have run.
        if (ready.empty()) {
          notified_ = batch_end;
          break;
        }
      }
      for (auto& done : ready) done();
      ready.clear();
    }
    drained_.notify_all();
  }
}

}  // namespace nimbus::storage
