// Plain TCP byte streams on the loop's poller (see poller.hpp) instead of Asio sockets: the
// descriptor stays registered, level-triggered, while the stream is open, and a waiting owner
// costs a pointer, not an allocated operation.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <cerrno>
#include <cstring>

#include "net/address.hpp"
#include "net/poller.hpp"
#include "net/streams.hpp"

namespace nimbus::net {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

error_code last_error() {
  return {errno, boost::system::system_category()};
}

bool would_block(int error) {
  return error == EAGAIN || error == EWOULDBLOCK;
}

// Adapts a type-erased Asio completion handler to the owner callbacks; deletes itself when the
// operation completes.
class handler_operation final : public stream_owner {
 public:
  handler_operation(io_handler handler, asio::io_context& context)
      : handler_(std::move(handler)), context_(context) {}
  void on_read(const error_code& ec, std::size_t n) override { complete(ec, n); }
  void on_written(const error_code& ec, std::size_t n) override { complete(ec, n); }
  void on_readable(const error_code& ec) override { complete(ec, 0); }

 private:
  void complete(const error_code& ec, std::size_t n) {
    auto handler = std::move(handler_);
    auto executor = asio::get_associated_executor(handler, context_.get_executor());
    delete this;
    asio::dispatch(executor, asio::append(std::move(handler), ec, n));
  }
  io_handler handler_;
  asio::io_context& context_;
};

class tcp_byte_stream final : public byte_stream, private poll_target {
 public:
  tcp_byte_stream(asio::io_context& context, int fd) : poller_(poller::of(context)), fd_(fd) {
    int on = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    // Half-open peers with keep-alive 0 are still found out by TCP keepalive.
    ::setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    // Nothing is watched until someone waits; errors and hang-ups always are.
    try {
      poller_.add(fd_, 0, *this);
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
  ~tcp_byte_stream() override {
    if (alive_ != nullptr) *alive_ = false;
    release_descriptor();
  }

  void read_into(asio::mutable_buffer buffer, stream_owner& owner) override {
    reader_ = &owner;
    read_buffer_ = buffer;
    start_waiting();
  }
  bool wait_readable(stream_owner& owner) override {
    reader_ = &owner;
    read_buffer_ = {};
    start_waiting();
    return true;
  }
  void write_from(const std::vector<asio::const_buffer>& buffers, stream_owner& owner) override {
    writer_ = &owner;
    write_buffers_ = &buffers;
    written_ = 0;
    start_waiting();
  }

  std::size_t read_available(asio::mutable_buffer buffer, error_code& ec) override {
    if (fd_ < 0) {
      ec = asio::error::bad_descriptor;
      return 0;
    }
    if (buffer.size() == 0) {
      ec = {};  // as Asio does: recv() would report 0, which means end of stream
      return 0;
    }
    while (true) {
      ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n > 0) {
        ec = {};
        return static_cast<std::size_t>(n);
      }
      if (n == 0) {
        ec = asio::error::eof;
        return 0;
      }
      if (errno == EINTR) continue;
      ec = would_block(errno) ? error_code(asio::error::would_block) : last_error();
      return 0;
    }
  }

  std::size_t write_available(const std::vector<asio::const_buffer>& buffers,
                              error_code& ec) override {
    return send_from(buffers, 0, ec);
  }

  void close() override {
    if (fd_ < 0) return;
    release_descriptor();
    // Whoever waits learns of the close through the loop, never from inside close().
    fail_waiters(asio::error::operation_aborted);
  }

  asio::any_io_executor executor() override { return poller_.context().get_executor(); }
  std::string remote_address() const override {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    if (fd_ < 0 || ::getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &length) != 0)
      return "unknown";
    asio::ip::tcp::endpoint endpoint;
    std::memcpy(endpoint.data(), &peer, std::min<std::size_t>(length, endpoint.capacity()));
    return format_endpoint(endpoint);
  }
  std::string_view transport() const override { return "tcp"; }

 protected:
  void read_some(asio::mutable_buffer buffer, io_handler handler) override {
    read_into(buffer, *new handler_operation(std::move(handler), poller_.context()));
  }
  void write(const std::vector<asio::const_buffer>& buffers, io_handler handler) override {
    write_from(buffers, *new handler_operation(std::move(handler), poller_.context()));
  }

 private:
  // Writes as much of `buffers` from byte `skip` on as the socket takes now.
  std::size_t send_from(const std::vector<asio::const_buffer>& buffers, std::size_t skip,
                        error_code& ec) {
    if (fd_ < 0) {
      ec = asio::error::bad_descriptor;
      return 0;
    }
    std::array<iovec, 64> iov;
    std::size_t count = 0;
    for (const auto& b : buffers) {
      if (count == iov.size()) break;
      if (skip >= b.size()) {
        skip -= b.size();
        continue;
      }
      iov[count].iov_base = const_cast<char*>(static_cast<const char*>(b.data()) + skip);
      iov[count].iov_len = b.size() - skip;
      skip = 0;
      ++count;
    }
    if (count == 0) {
      ec = {};
      return 0;
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = count;
    while (true) {
      ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n >= 0) {
        ec = {};
        return static_cast<std::size_t>(n);
      }
      if (errno == EINTR) continue;
      ec = would_block(errno) ? error_code(asio::error::would_block) : last_error();
      return 0;
    }
  }

  void on_poll(std::uint32_t events) override {
    // An owner's callback may destroy this stream (the connection ends): note it, and touch
    // nothing afterwards.
    bool alive = true;
    alive_ = &alive;
    constexpr std::uint32_t failed = EPOLLERR | EPOLLHUP;
    if (writer_ != nullptr && (events & (EPOLLOUT | failed))) continue_write();
    if (alive && reader_ != nullptr && (events & (EPOLLIN | failed))) continue_read();
    if (!alive) return;
    alive_ = nullptr;
    if (fd_ < 0) return;
    if ((events & failed) && reader_ == nullptr && writer_ == nullptr) {
      // Nobody to tell yet, and level-triggered errors would be reported on every round: stop
      // watching. The next wait learns of it from the socket itself.
      poller_.remove(fd_, *this);
      watched_ = false;
      return;
    }
    update_interest();
  }

  void continue_read() {
    auto* reader = reader_;
    if (read_buffer_.size() == 0) {
      reader_ = nullptr;
      return reader->on_readable({});
    }
    error_code ec;
    std::size_t n = read_available(read_buffer_, ec);
    if (ec == asio::error::would_block) return;  // not yet after all
    reader_ = nullptr;
    reader->on_read(ec, n);
  }

  void continue_write() {
    error_code ec;
    std::size_t total = asio::buffer_size(*write_buffers_);
    while (written_ < total) {
      std::size_t n = send_from(*write_buffers_, written_, ec);
      if (ec == asio::error::would_block) return;  // wait for the next round
      if (ec) break;
      written_ += n;
    }
    auto* writer = std::exchange(writer_, nullptr);
    writer->on_written(ec, written_);
  }

  // Watches for what the owners wait for. Called after a wait starts and after each round.
  void start_waiting() {
    if (fd_ < 0) return fail_waiters(asio::error::bad_descriptor);  // as on a closed socket
    if (!watched_) {
      // Unwatched since an error nobody waited for: watching again makes the loop report it.
      try {
        poller_.add(fd_, wanted(), *this);
        watched_ = true;
        interest_ = wanted();
      } catch (const boost::system::system_error& e) {
        fail_waiters(e.code());
      }
      return;
    }
    update_interest();
  }

  std::uint16_t wanted() const {
    return static_cast<std::uint16_t>((reader_ != nullptr ? EPOLLIN : 0U) |
                                      (writer_ != nullptr ? EPOLLOUT : 0U));
  }

  void update_interest() {
    if (wanted() == interest_) return;
    if (poller_.modify(fd_, wanted(), *this))
      interest_ = wanted();
    else
      fail_waiters(last_error());
  }

  // Completes whatever waits with `ec`, through the loop (never from inside a call).
  void fail_waiters(error_code ec) {
    if (auto* reader = std::exchange(reader_, nullptr)) {
      bool into = read_buffer_.size() > 0;
      asio::post(poller_.context(), [reader, into, ec] {
        if (into)
          reader->on_read(ec, 0);
        else
          reader->on_readable(ec);
      });
    }
    if (auto* writer = std::exchange(writer_, nullptr)) {
      asio::post(poller_.context(), [writer, ec, n = written_] { writer->on_written(ec, n); });
    }
  }

  void release_descriptor() {
    if (fd_ < 0) return;
    if (watched_) poller_.remove(fd_, *this);
    watched_ = false;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    fd_ = -1;
  }

  poller& poller_;
  int fd_;
  std::uint16_t interest_ = 0;  // EPOLLIN | EPOLLOUT as registered
  bool watched_ = true;
  bool* alive_ = nullptr;  // set while on_poll runs
  stream_owner* reader_ = nullptr;
  asio::mutable_buffer read_buffer_;  // empty: the reader waits for readability only
  stream_owner* writer_ = nullptr;
  const std::vector<asio::const_buffer>* write_buffers_ = nullptr;
  std::size_t written_ = 0;
};

}  // namespace

std::unique_ptr<byte_stream> make_tcp_stream(asio::ip::tcp::socket socket) {
  auto& context =
      static_cast<asio::io_context&>(asio::query(socket.get_executor(), asio::execution::context));
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  int fd = socket.release();
  return std::make_unique<tcp_byte_stream>(context, fd);
}

}  // namespace nimbus::net
