#include "net/fd_bridge.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <utility>
#include <vector>

namespace nimbus::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using local_socket = tcp::socket;

namespace {

class bridge : public std::enable_shared_from_this<bridge> {
 public:
  bridge(std::unique_ptr<byte_stream> stream, local_socket ours, std::function<void()> on_closed)
      : stream_(std::move(stream)), ours_(std::move(ours)), on_closed_(std::move(on_closed)) {}

  void start() {
    from_stream();
    from_fd();
  }

 private:
  // Stream -> fd.
  void from_stream() {
    stream_->async_read_some(
        asio::buffer(inbound_),
        [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
          if (ec) return self->end();
          asio::async_write(self->ours_, asio::buffer(self->inbound_.data(), n),
                            [self](boost::system::error_code write_ec, std::size_t) {
                              if (write_ec) return self->end();
                              self->from_stream();
                            });
        });
  }

  // Fd -> stream.
  void from_fd() {
    ours_.async_read_some(asio::buffer(outbound_),
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                            if (ec) return self->end();
                            self->pending_ = {asio::const_buffer(self->outbound_.data(), n)};
                            self->stream_->async_write(
                                self->pending_,
                                [self](boost::system::error_code write_ec, std::size_t) {
                                  if (write_ec) return self->end();
                                  self->from_fd();
                                });
                          });
  }

  // Either direction ended: both do (the other side's pending operation fails and lands here
  // too, which is why it runs once).
  void end() {
    if (ended_) return;
    ended_ = true;
    boost::system::error_code ignored;
    ours_.shutdown(asio::socket_base::shutdown_both, ignored);
    ours_.close(ignored);
    stream_->close();
    if (on_closed_) std::exchange(on_closed_, nullptr)();
  }

  std::unique_ptr<byte_stream> stream_;
  local_socket ours_;
  std::function<void()> on_closed_;
  std::array<char, 64 * 1024> inbound_{};
  std::array<char, 64 * 1024> outbound_{};
  std::vector<asio::const_buffer> pending_;
  bool ended_ = false;  // both directions run on the stream's executor (one strand: its loop)
};

// A connected pair of loopback TCP sockets. Not a socketpair(2): gRPC's reads on an AF_UNIX
// socket (no TCP_INQ) wait for more data than arrived, stalling every call.
void connect_pair(local_socket& ours, local_socket& theirs, boost::system::error_code& ec) {
  tcp::acceptor acceptor(ours.get_executor());
  acceptor.open(tcp::v4(), ec);
  if (!ec) acceptor.bind({asio::ip::address_v4::loopback(), 0}, ec);
  if (!ec) acceptor.listen(1, ec);
  if (ec) return;
  const auto at = acceptor.local_endpoint(ec);
  // Blocking, but on loopback both finish at once (the kernel completes the handshake).
  if (!ec) ours.connect(at, ec);
  for (int attempt = 0; !ec && attempt < 4; ++attempt) {
    acceptor.accept(theirs, ec);
    if (ec) return;
    // Anyone on this machine could have connected first: only our own socket is kept.
    if (theirs.remote_endpoint(ec) == ours.local_endpoint(ec) && !ec) {
      ours.set_option(tcp::no_delay(true), ec);
      theirs.set_option(tcp::no_delay(true), ec);
      return;
    }
    theirs.close(ec);
  }
  if (!ec) ec = asio::error::connection_refused;
}

}  // namespace

int bridge_to_fd(std::unique_ptr<byte_stream> stream, std::function<void()> on_closed,
                 boost::system::error_code& ec) {
  local_socket ours(stream->executor());
  local_socket theirs(stream->executor());
  connect_pair(ours, theirs, ec);
  if (ec) return -1;
  const int fd = theirs.release(ec);
  if (ec) return -1;
  // Accepted blocking; whoever takes the fd (gRPC's poller) expects EAGAIN, not a read or
  // write that waits on the bridge and holds one of its few threads meanwhile.
  if (const int flags = ::fcntl(fd, F_GETFL);
      flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    ec.assign(errno, boost::system::system_category());
    ::close(fd);
    return -1;
  }
  std::make_shared<bridge>(std::move(stream), std::move(ours), std::move(on_closed))->start();
  return fd;
}

}  // namespace nimbus::net
