#include "bridge/queue_intake.hpp"

#include <vector>

namespace nimbus::bridge {

void queue_intake::submit(std::string record, broker::publisher_hold hold) {
  held_record held{std::move(record), std::make_shared<broker::publisher_hold>(std::move(hold))};
  std::lock_guard lock(mutex_);
  if (!blocked_.empty() || !admit(held)) blocked_.push_back(std::move(held));
}

void queue_intake::on_space() {
  std::lock_guard lock(mutex_);
  while (!blocked_.empty() && admit(blocked_.front())) blocked_.pop_front();
}

bool queue_intake::admit(const held_record& held) {
  std::vector<std::string> records{held.first};
  const auto admission =
      queue_.enqueue(std::move(records), [this, hold = held.second](std::error_code error) {
        if (error)
          hold->fail();
        else
          hold->release();
        on_appended_(!error);
      });
  return admission != forward_queue::admission::full;
}

}  // namespace nimbus::bridge
