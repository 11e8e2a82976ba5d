#pragma once
// How a bridge's bus handlers put local messages into its store-and-forward queue (both kinds of
// link): the publisher's acknowledgement is held until the record is on disk, then released, or
// failed when the append failed (the device is not acknowledged and sends it again). Under
// full_policy = "block" the records that found no room wait here in order, their publishers
// held with them, until the queue calls on_space(); newer records queue up behind them.
// Thread-safe: submit() from the broker's threads, on_space() from the queue's space listener.
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "bridge/forward_queue.hpp"
#include "broker/bus.hpp"

namespace nimbus::bridge {

class queue_intake {
 public:
  // `on_appended(is_durable)` runs on the committer's thread after each record's append.
  queue_intake(forward_queue& queue, std::function<void(bool is_durable)> on_appended)
      : queue_(queue), on_appended_(std::move(on_appended)) {}

  void submit(std::string record, broker::publisher_hold hold);
  // The queue has room again: the waiting records go in, in order, while it lasts.
  void on_space();

 private:
  using held_record = std::pair<std::string, std::shared_ptr<broker::publisher_hold>>;
  bool admit(const held_record& held);  // false: the queue is full (block); mutex_ held

  forward_queue& queue_;
  std::function<void(bool)> on_appended_;
  std::mutex mutex_;
  std::deque<held_record> blocked_;  // mutex_
};

}  // namespace nimbus::bridge
