// The query runner: work runs off the caller's thread, a full queue refuses, stop() runs what
// was queued and refuses what comes after.
#include "tsdb/query_runner.hpp"

#include <atomic>
#include <future>
#include <thread>

#include <gtest/gtest.h>

namespace nimbus::tsdb {
namespace {

TEST(query_runner, runs_work_on_its_own_threads) {
  query_runner runner(2, 8);
  std::promise<std::thread::id> ran;
  ASSERT_TRUE(runner.post([&ran] { ran.set_value(std::this_thread::get_id()); }));
  EXPECT_NE(ran.get_future().get(), std::this_thread::get_id());
}

TEST(query_runner, a_full_queue_refuses_and_stop_runs_what_waits) {
  query_runner runner(1, 2);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  ASSERT_TRUE(runner.post([&started, released] {
    started.set_value();
    released.wait();
  }));
  started.get_future().wait();  // the one thread is busy: the next two wait in the queue
  std::atomic<int> done{0};
  EXPECT_TRUE(runner.post([&done] { ++done; }));
  EXPECT_TRUE(runner.post([&done] { ++done; }));
  EXPECT_FALSE(runner.post([&done] { ++done; }));  // past max_queued
  release.set_value();
  runner.stop();
  EXPECT_EQ(done.load(), 2);
  EXPECT_FALSE(runner.post([&done] { ++done; }));  // stopped
}

}  // namespace
}  // namespace nimbus::tsdb
