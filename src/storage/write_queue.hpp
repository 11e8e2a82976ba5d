#pragma once
// The single writer of the database: a thread that runs submitted writes in batches, one
// transaction per batch (group commit), and reports each write once its batch is durable.
// Each write runs in its own savepoint, so a failing write is rolled back alone and reported as
// failed, never as durable. Event loops never block on SQLite: they submit and are called back
// from the writer thread.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/database.hpp"
#include "storage/ticket.hpp"

namespace nimbus::storage {

class write_queue {
 public:
  using write = std::function<void(database&)>;
  using on_durable = std::function<void()>;  // runs on the writer thread: post, don't work

  // Opens its own connection to `path`.
  write_queue(const std::string& path, const std::string& synchronous,
              std::chrono::milliseconds max_batch_wait);
  ~write_queue();  // commits what was submitted, then stops

  // Queues a write; returns its ticket. Writes run in submission order.
  ticket submit(write w);
  // Calls `done` once every write up to `t` is committed: at once if the callbacks for `t` have
  // already run, else on the writer thread after them. Callbacks run in the order they were
  // registered, so a store that registers its own (to apply the change to memory) before handing
  // the ticket out runs before anyone it handed it to. `done` runs for a failed write too: it
  // asks failed() before it acknowledges anything.
  void when_durable(ticket t, on_durable done);
  ticket committed() const { return ticket(committed_.load(std::memory_order_acquire)); }
  // True once every write up to `t` is settled, which includes failed ones (see failed()).
  bool is_durable(ticket t) const { return committed() >= t; }
  // True when a write with a ticket in (after, up_to] failed. Callers ask once `up_to` is
  // committed, with `after` = committed() read before they submitted.
  bool failed_between(ticket after, ticket up_to) const;
  // True when the write `t` itself failed (ask once it is committed).
  bool failed(ticket t) const { return !t.is_none() && failed_between(t.previous(), t); }
  std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  // Blocks until everything submitted so far is committed and its callbacks have run
  // (start-up, shutdown and tests).
  void drain();

  std::uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }

 private:
  void run();

  std::unique_ptr<database> db_;
  std::chrono::milliseconds max_batch_wait_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::vector<write> pending_;
  std::vector<std::pair<std::uint64_t, on_durable>> waiters_;
  std::uint64_t submitted_ = 0;
  std::uint64_t notified_ = 0;  // durability callbacks have run up to this ticket
  std::atomic<std::uint64_t> committed_{0};
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> failures_{0};
  mutable std::mutex failed_mutex_;
  std::vector<std::uint64_t> failed_;  // recent failed tickets, ascending
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nimbus::storage
