#pragma once
// One io_context per event loop, each run by its own thread. Connections are pinned to one loop
// for their whole life, so per-connection state needs no locks.
#include <boost/asio/io_context.hpp>

#include <memory>
#include <thread>
#include <vector>

namespace nimbus::net {

class io_pool {
 public:
  explicit io_pool(std::size_t loops);
  ~io_pool();

  std::size_t size() const { return contexts_.size(); }
  boost::asio::io_context& at(std::size_t i) { return *contexts_[i]; }
  // Round-robin choice for a new connection.
  boost::asio::io_context& next();

  void start();  // one thread per loop
  void stop();   // stops every loop and joins the threads

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace nimbus::net
