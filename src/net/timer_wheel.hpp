#pragma once
// Coarse timers for many connections on one event loop: a hashed timing wheel with 250 ms
// slots driven by a single Asio timer. A connection's keep-alive, CONNECT deadline and close
// grace need no more precision than that, and a timer here costs 40 bytes inside its owner
// instead of an Asio timer plus an allocated wait operation per connection.
//
// One wheel per io_context (an Asio service, created on first use); entries and their owners
// must be used only from that context's thread.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/clock.hpp"

namespace nimbus::net {

class timer_wheel;

// Implemented by whoever owns a timer_entry.
class timer_owner {
 public:
  virtual void on_timer_expired() = 0;

 protected:
  ~timer_owner() = default;
};

// A node of a slot's circular list; each slot has a sentinel one.
struct timer_link {
  timer_link* prev = nullptr;  // non-null while linked
  timer_link* next = nullptr;
};

// One pending deadline, embedded in its owner. Unlinks itself when destroyed.
class timer_entry : private timer_link {
 public:
  timer_entry(boost::asio::io_context& context, timer_owner& owner);
  // `executor` must be an io_context's (every stream's is).
  timer_entry(const boost::asio::any_io_executor& executor, timer_owner& owner);
  ~timer_entry() { cancel(); }
  timer_entry(const timer_entry&) = delete;
  timer_entry& operator=(const timer_entry&) = delete;

  // (Re)schedules: the owner is called once, at or up to one slot after `deadline`.
  void schedule(std::chrono::steady_clock::time_point deadline);
  void cancel();
  bool scheduled() const { return prev != nullptr; }

 private:
  friend class timer_wheel;
  timer_wheel& wheel_;
  timer_owner& owner_;
  std::int64_t tick_ = 0;  // the slot tick at which it is due
};

class timer_wheel final : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;
  static constexpr std::chrono::milliseconds slot{250};

  explicit timer_wheel(boost::asio::io_context& context);
  ~timer_wheel() override;

  static timer_wheel& of(boost::asio::io_context& context);
  std::size_t size() const { return size_; }

  // The time deadlines are read against: the steady clock unless a test injects its own (then
  // it moves the clock and calls fire_due()). Owners compute deadlines on the same clock. Set
  // it before anything is scheduled.
  void use_clock(const core::clock& clock);
  // Fires every entry due by now, as the next tick would.
  void fire_due() { on_tick(); }

 private:
  friend class timer_entry;
  static constexpr std::size_t slot_count = 512;  // 128 s per turn; later deadlines go round

  void shutdown() override;
  void link(timer_entry& e);
  void unlink(timer_entry& e);
  void start_ticking();
  void arm_ticker();
  void on_tick();
  static std::int64_t tick_of(std::chrono::steady_clock::time_point t);
  std::chrono::steady_clock::time_point now() const;

  boost::asio::steady_timer ticker_;
  std::vector<timer_link> heads_;  // one sentinel per slot
  std::int64_t processed_ = 0;     // every slot up to this tick has fired
  std::size_t size_ = 0;
  bool ticking_ = false;
  bool stopped_ = false;
  const core::clock* clock_ = nullptr;  // null: std::chrono::steady_clock
};

}  // namespace nimbus::net
