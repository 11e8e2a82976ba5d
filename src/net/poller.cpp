#include "net/poller.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/system/system_error.hpp>
#include <cerrno>

namespace nimbus::net {

namespace asio = boost::asio;

namespace {

int create_epoll() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0)
    throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
  return fd;
}

}  // namespace

poller::poller(asio::io_context& context)
    : asio::execution_context::service(context),
      context_(context),
      epoll_fd_(create_epoll()),
      watch_(context, epoll_fd_) {}

poller::~poller() = default;  // watch_ closes the epoll set

void poller::add(int fd, std::uint32_t events, poll_target& target) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &target;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    throw boost::system::system_error(errno, boost::system::system_category(), "epoll_ctl");
  ++size_;
  arm();
}

bool poller::modify(int fd, std::uint32_t events, poll_target& target) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &target;
  return ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) == 0;
}

void poller::remove(int fd, poll_target& target) {
  epoll_event ignored{};
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &ignored);
  if (dispatching_) removed_in_batch_.push_back(&target);
  --size_;
}

// One pending wait on the epoll set while anything is registered: Asio's reactor reports the
// set readable when any of its descriptors has an event.
void poller::arm() {
  if (armed_ || stopped_ || size_ == 0) return;
  armed_ = true;
  watch_.async_wait(asio::posix::stream_descriptor::wait_read,
                    [this](const boost::system::error_code& ec) {
                      armed_ = false;
                      if (ec || stopped_) return;
                      dispatch();
                      arm();
                    });
}

void poller::dispatch() {
  // Level-triggered: whatever a target leaves unread is reported again on the next round, so
  // a bounded batch per wake-up keeps the loop fair to Asio's own handlers (and bounds how
  // long work posted during a batch, such as the broker's batch-end deliveries, waits).
  std::array<epoll_event, 64> events;
  int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 0);
  dispatching_ = true;
  for (int i = 0; i < n; ++i) {
    auto* target = static_cast<poll_target*>(events[i].data.ptr);
    if (!removed_in_batch_.empty() && std::find(removed_in_batch_.begin(), removed_in_batch_.end(),
                                                target) != removed_in_batch_.end())
      continue;
    target->on_poll(events[i].events);
  }
  dispatching_ = false;
  removed_in_batch_.clear();
}

void poller::shutdown() {
  stopped_ = true;
  boost::system::error_code ignored;
  watch_.cancel(ignored);
}

}  // namespace nimbus::net
