// bridge_to_fd over real loopback sockets: the fd it returns is non-blocking (gRPC's poller
// takes it), bytes cross both ways, and closing either side ends the bridge once.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <string>

#include "net/fd_bridge.hpp"
#include "net/streams.hpp"

namespace nimbus::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

// A TCP stream on `ctx` whose far end, `peer`, the test drives with blocking calls.
struct bridged {
  explicit bridged(asio::io_context& ctx) : peer(peer_ctx) {
    tcp::acceptor acceptor(peer_ctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    peer.connect(acceptor.local_endpoint());
    tcp::socket accepted(ctx);
    acceptor.accept(accepted);
    error_code ec;
    fd = bridge_to_fd(
        make_tcp_stream(std::move(accepted)), [this] { ++closed; }, ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  asio::io_context peer_ctx;
  tcp::socket peer;
  int fd = -1;
  int closed = 0;
};

// Runs `ctx` until `done` holds (the bridge copies on it), asking `done` once a round.
template <class Done>
void run_until(asio::io_context& ctx, Done done) {
  bool is_done = done();
  for (int i = 0; i < 1000 && !is_done; ++i) {
    if (ctx.stopped()) ctx.restart();
    ctx.run_for(std::chrono::milliseconds(5));
    is_done = done();
  }
  ASSERT_TRUE(is_done);
}

TEST(fd_bridge, hands_out_a_non_blocking_fd_and_copies_both_ways) {
  asio::io_context ctx;
  bridged b(ctx);
  ASSERT_GE(b.fd, 0);
  EXPECT_TRUE(::fcntl(b.fd, F_GETFL) & O_NONBLOCK);

  // Nothing there yet: EAGAIN rather than a wait.
  std::array<char, 64> got{};
  EXPECT_EQ(::read(b.fd, got.data(), got.size()), -1);
  EXPECT_EQ(errno, EAGAIN);

  asio::write(b.peer, asio::buffer(std::string("to the fd")));
  ssize_t n = -1;
  run_until(ctx, [&] { return (n = ::read(b.fd, got.data(), got.size())) > 0; });
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(got.data(), static_cast<std::size_t>(n)), "to the fd");

  ASSERT_EQ(::write(b.fd, "to the peer", 11), 11);
  run_until(ctx, [&] { return b.peer.available() >= 11; });
  std::array<char, 11> back{};
  asio::read(b.peer, asio::buffer(back));
  EXPECT_EQ(std::string(back.data(), back.size()), "to the peer");

  ::close(b.fd);
  run_until(ctx, [&] { return b.closed == 1; });
  // The peer sees the end too.
  error_code ec;
  b.peer.read_some(asio::buffer(back), ec);
  EXPECT_EQ(ec, asio::error::eof);
  ctx.restart();
  ctx.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(b.closed, 1);
}

TEST(fd_bridge, a_peer_that_leaves_ends_the_bridge_and_the_fd_reads_end_of_file) {
  asio::io_context ctx;
  bridged b(ctx);
  ASSERT_GE(b.fd, 0);
  b.peer.close();
  run_until(ctx, [&] { return b.closed == 1; });
  std::array<char, 8> got{};
  EXPECT_EQ(::read(b.fd, got.data(), got.size()), 0);
  ::close(b.fd);
}

}  // namespace
}  // namespace nimbus::net
