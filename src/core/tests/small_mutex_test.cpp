#include "core/small_mutex.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>
#include <vector>

namespace nimbus::core {
namespace {

TEST(SmallMutex, IsFourBytes) {
  EXPECT_EQ(sizeof(small_mutex), 4U);
}

TEST(SmallMutex, TryLockFailsWhileHeld) {
  small_mutex m;
  ASSERT_TRUE(m.try_lock());
  EXPECT_FALSE(m.try_lock());
  m.unlock();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

// Contended increments of a plain counter: any lost update means the lock failed to exclude.
TEST(SmallMutex, ExcludesUnderContention) {
  small_mutex m;
  long counter = 0;
  constexpr int threads = 4;
  constexpr int rounds = 200000;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        std::lock_guard lock(m);
        ++counter;
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(counter, long{threads} * rounds);
}

// A waiter that went to sleep is woken by the unlock.
TEST(SmallMutex, WakesASleepingWaiter) {
  small_mutex m;
  m.lock();
  bool entered = false;
  std::thread waiter([&] {
    std::lock_guard lock(m);
    entered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // long enough to stop spinning
  m.unlock();
  waiter.join();
  EXPECT_TRUE(entered);
}

}  // namespace
}  // namespace nimbus::core
