#include "tsdb/query_runner.hpp"

#include <utility>

namespace nimbus::tsdb {

query_runner::query_runner(std::size_t threads, std::size_t max_queued) : max_queued_(max_queued) {
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

query_runner::~query_runner() {
  stop();
}

bool query_runner::post(std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    if (is_stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(work));
  }
  wake_.notify_one();
  return true;
}

void query_runner::stop() {
  {
    std::lock_guard lock(mutex_);
    is_stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

void query_runner::run() {
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return is_stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left: queued work still ran
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace nimbus::tsdb
