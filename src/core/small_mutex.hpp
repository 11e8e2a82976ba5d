#pragma once
// A mutex in four bytes, for objects that exist by the ten thousand (one per MQTT session):
// std::mutex takes forty. Critical sections guarded by it must be short. Uncontended lock and
// unlock are one atomic operation each; a contended lock spins briefly, then sleeps on the
// word itself (C++20 atomic wait, a futex on Linux). The classic three-state design: 0 free,
// 1 locked, 2 locked and someone may be sleeping.
#include <atomic>
#include <cstdint>

namespace nimbus::core {

class small_mutex {
 public:
  small_mutex() = default;
  small_mutex(const small_mutex&) = delete;
  small_mutex& operator=(const small_mutex&) = delete;

  void lock() {
    std::uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return;
    for (int spin = 0; spin < 64; ++spin) {
      expected = 0;
      if (state_.load(std::memory_order_relaxed) == 0 &&
          state_.compare_exchange_weak(expected, 1, std::memory_order_acquire))
        return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    // From here on the holder must wake someone when it unlocks.
    while (state_.exchange(2, std::memory_order_acquire) != 0)
      state_.wait(2, std::memory_order_relaxed);
  }

  bool try_lock() {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire);
  }

  void unlock() {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  std::atomic<std::uint32_t> state_{0};
};

}  // namespace nimbus::core
