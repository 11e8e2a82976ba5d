#pragma once
// Readiness of plain sockets on one event loop through an epoll set of the loop's own, nested in
// Asio's reactor as a single descriptor. Asio keeps a 168-byte descriptor state per socket and
// allocates an operation per wait (and re-arms the descriptor with a system call each time);
// here a socket costs nothing in user space and stays registered, level-triggered, for as long
// as it is open, so an idle client costs almost nothing and a busy one no epoll_ctl per
// message.
//
// One poller per io_context (an Asio service, created on first use); targets must be used only
// from that context's thread. Linux only, as is the product.
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <vector>

namespace nimbus::net {

// Implemented by whoever registers a descriptor.
class poll_target {
 public:
  // `events`: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP bits as epoll reported them.
  virtual void on_poll(std::uint32_t events) = 0;

 protected:
  ~poll_target() = default;
};

class poller final : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;

  explicit poller(boost::asio::io_context& context);
  ~poller() override;
  static poller& of(boost::asio::io_context& context) {
    return boost::asio::use_service<poller>(context);
  }

  boost::asio::io_context& context() const { return context_; }

  // Watches `fd` for `events` (EPOLLIN, EPOLLOUT; errors and hang-ups are always reported).
  // Throws boost::system::system_error when the kernel refuses.
  void add(int fd, std::uint32_t events, poll_target& target);
  // Changes the events watched; returns false (with errno) when the kernel refuses.
  bool modify(int fd, std::uint32_t events, poll_target& target);
  // Stops watching (before the descriptor is closed). Events for `target` already fetched in
  // the current batch are dropped, so the target may be destroyed at once.
  void remove(int fd, poll_target& target);

  std::size_t size() const { return size_; }

 private:
  void shutdown() override;
  void arm();
  void dispatch();

  boost::asio::io_context& context_;
  int epoll_fd_ = -1;
  boost::asio::posix::stream_descriptor watch_;  // the epoll set, as Asio sees it
  // Targets removed while a batch is dispatched: their events in it are stale. (A new target
  // at the same address cannot have events in a batch fetched before it was added.)
  std::vector<poll_target*> removed_in_batch_;
  std::size_t size_ = 0;
  bool dispatching_ = false;
  bool armed_ = false;
  bool stopped_ = false;
};

}  // namespace nimbus::net
