#include "net/timer_wheel.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

namespace nimbus::net {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

timer_entry::timer_entry(asio::io_context& context, timer_owner& owner)
    : wheel_(asio::use_service<timer_wheel>(context)), owner_(owner) {}

timer_entry::timer_entry(const asio::any_io_executor& executor, timer_owner& owner)
    : timer_entry(static_cast<asio::io_context&>(asio::query(executor, asio::execution::context)),
                  owner) {}

void timer_entry::schedule(steady::time_point deadline) {
  cancel();
  // While the wheel is idle its clock stands still: bring it to now first.
  if (!wheel_.ticking_)
    wheel_.processed_ = std::max(wheel_.processed_, wheel_.tick_of(wheel_.now()));
  // Due in the first slot that ends at or after the deadline, never in the past.
  tick_ = std::max(timer_wheel::tick_of(deadline) + 1, wheel_.processed_ + 1);
  wheel_.link(*this);
}

void timer_entry::cancel() {
  if (scheduled()) wheel_.unlink(*this);
}

timer_wheel::timer_wheel(asio::io_context& context)
    : asio::execution_context::service(context), ticker_(context), heads_(slot_count) {
  for (auto& head : heads_) head.prev = head.next = &head;
  processed_ = tick_of(now());
}

timer_wheel::~timer_wheel() = default;

timer_wheel& timer_wheel::of(asio::io_context& context) {
  return asio::use_service<timer_wheel>(context);
}

void timer_wheel::use_clock(const core::clock& clock) {
  clock_ = &clock;
  processed_ = tick_of(now());
}

steady::time_point timer_wheel::now() const {
  return clock_ != nullptr ? clock_->now() : steady::now();
}

std::int64_t timer_wheel::tick_of(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() /
         slot.count();
}

void timer_wheel::link(timer_entry& e) {
  timer_link& head = heads_[static_cast<std::size_t>(e.tick_) % slot_count];
  e.prev = head.prev;
  e.next = &head;
  head.prev->next = &e;
  head.prev = &e;
  if (++size_ == 1) start_ticking();
}

void timer_wheel::unlink(timer_entry& e) {
  e.prev->next = e.next;
  e.next->prev = e.prev;
  e.prev = e.next = nullptr;
  --size_;
}

void timer_wheel::start_ticking() {
  if (ticking_ || stopped_) return;
  ticking_ = true;
  arm_ticker();
}

void timer_wheel::arm_ticker() {
  ticker_.expires_after(slot);
  ticker_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      ticking_ = false;
      return;
    }
    on_tick();
    // Stop ticking while nothing is scheduled: an idle loop is not woken up.
    if (size_ > 0 && !stopped_)
      arm_ticker();
    else
      ticking_ = false;
  });
}

void timer_wheel::on_tick() {
  const std::int64_t now_tick = tick_of(now());
  // Every slot up to now, in order (a busy loop may tick late), at most one full turn.
  for (std::int64_t t = std::max(processed_ + 1, now_tick - std::int64_t{slot_count} + 1);
       t <= now_tick; ++t) {
    processed_ = t;
    timer_link& head = heads_[static_cast<std::size_t>(t) % slot_count];
    // Move the due entries to a list of their own first (those due a turn later stay), so the
    // owners' callbacks may schedule or cancel any entry while this slot is being fired.
    timer_link due;
    due.prev = due.next = &due;
    for (timer_link* node = head.next; node != &head;) {
      timer_link* next = node->next;
      if (static_cast<timer_entry*>(node)->tick_ <= t) {
        node->prev->next = node->next;
        node->next->prev = node->prev;
        node->prev = due.prev;
        node->next = &due;
        due.prev->next = node;
        due.prev = node;
      }
      node = next;
    }
    while (due.next != &due) {
      auto& entry = *static_cast<timer_entry*>(due.next);
      unlink(entry);
      entry.owner_.on_timer_expired();
    }
  }
  processed_ = std::max(processed_, now_tick);
}

void timer_wheel::shutdown() {
  stopped_ = true;
  ticker_.cancel();
}

}  // namespace nimbus::net
