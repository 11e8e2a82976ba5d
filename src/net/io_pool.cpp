#include "net/io_pool.hpp"

#include <pthread.h>

#include <string>

#include "net/poller.hpp"

namespace nimbus::net {

io_pool::io_pool(std::size_t loops) {
  for (std::size_t i = 0; i < loops; ++i) {
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    guards_.emplace_back(contexts_.back()->get_executor());
    // The loop's epoll set is made now, not at its first connection: later the process may be
    // out of descriptors (EMFILE), and an accepted socket must never be what fails to get one.
    poller::of(*contexts_.back());
  }
}

io_pool::~io_pool() {
  stop();
}

boost::asio::io_context& io_pool::next() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

void io_pool::start() {
  for (std::size_t i = 0; i < contexts_.size(); ++i) {
    threads_.emplace_back([this, i] {
      std::string name = "loop-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      contexts_[i]->run();
    });
  }
}

void io_pool::stop() {
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

}  // namespace nimbus::net
