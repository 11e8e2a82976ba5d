#include "net/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <functional>

namespace nimbus::net {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct recorder final : timer_owner {
  explicit recorder(boost::asio::io_context& ctx) : entry(ctx, *this) {}
  void on_timer_expired() override {
    fired_at = clock::now();
    ++fired;
    if (then) then();
  }
  timer_entry entry;
  int fired = 0;
  clock::time_point fired_at;
  std::function<void()> then;
};

// With an injected clock nothing waits for real time: the test moves the clock and fires.
TEST(timer_wheel, runs_on_an_injected_clock) {
  boost::asio::io_context ctx;
  core::manual_clock manual;
  auto& wheel = timer_wheel::of(ctx);
  wheel.use_clock(manual);
  recorder a(ctx), b(ctx);
  a.entry.schedule(manual.now() + 10s);
  b.entry.schedule(manual.now() + 90s);
  manual.advance(9s);
  wheel.fire_due();
  EXPECT_EQ(a.fired, 0);
  manual.advance(1s + timer_wheel::slot);
  wheel.fire_due();
  EXPECT_EQ(a.fired, 1);
  EXPECT_EQ(b.fired, 0);
  manual.advance(81s);
  wheel.fire_due();
  EXPECT_EQ(b.fired, 1);
  EXPECT_EQ(wheel.size(), 0U);
}

TEST(timer_wheel, fires_at_or_one_slot_after_the_deadline) {
  boost::asio::io_context ctx;
  recorder a(ctx), b(ctx);
  auto start = clock::now();
  a.entry.schedule(start + 300ms);
  b.entry.schedule(start + 600ms);
  ctx.run_for(1500ms);
  ASSERT_EQ(a.fired, 1);
  ASSERT_EQ(b.fired, 1);
  EXPECT_GE(a.fired_at, start + 300ms);
  EXPECT_LE(a.fired_at, start + 300ms + 2 * timer_wheel::slot);
  EXPECT_LT(a.fired_at, b.fired_at);
  EXPECT_EQ(boost::asio::use_service<timer_wheel>(ctx).size(), 0U);
}

TEST(timer_wheel, cancelled_and_rescheduled_entries) {
  boost::asio::io_context ctx;
  recorder cancelled(ctx), moved(ctx), past(ctx);
  auto start = clock::now();
  cancelled.entry.schedule(start + 200ms);
  cancelled.entry.cancel();
  moved.entry.schedule(start + 200ms);
  moved.entry.schedule(start + 700ms);  // replaces the first deadline
  past.entry.schedule(start - 10s);     // already due: fires on the next slot
  ctx.run_for(1200ms);
  EXPECT_EQ(cancelled.fired, 0);
  EXPECT_EQ(moved.fired, 1);
  EXPECT_GE(moved.fired_at, start + 700ms);
  EXPECT_EQ(past.fired, 1);
  EXPECT_LE(past.fired_at, start + 2 * timer_wheel::slot + 100ms);
}

TEST(timer_wheel, callbacks_may_reschedule_and_cancel_others) {
  boost::asio::io_context ctx;
  recorder repeating(ctx), victim(ctx);
  auto start = clock::now();
  repeating.then = [&] {
    if (repeating.fired < 3) repeating.entry.schedule(clock::now() + 100ms);
    victim.entry.cancel();
  };
  repeating.entry.schedule(start + 100ms);
  victim.entry.schedule(start + 100ms);  // same slot: cancelled by the first callback, or fired
  ctx.run_for(2000ms);
  EXPECT_EQ(repeating.fired, 3);
  EXPECT_LE(victim.fired, 1);
  EXPECT_FALSE(victim.entry.scheduled());
}

TEST(timer_wheel, an_entry_destroyed_while_scheduled_unlinks_itself) {
  boost::asio::io_context ctx;
  {
    recorder gone(ctx);
    gone.entry.schedule(clock::now() + 200ms);
    EXPECT_EQ(boost::asio::use_service<timer_wheel>(ctx).size(), 1U);
  }
  EXPECT_EQ(boost::asio::use_service<timer_wheel>(ctx).size(), 0U);
  recorder kept(ctx);
  kept.entry.schedule(clock::now() + 200ms);
  ctx.run_for(800ms);
  EXPECT_EQ(kept.fired, 1);
}

}  // namespace
}  // namespace nimbus::net
