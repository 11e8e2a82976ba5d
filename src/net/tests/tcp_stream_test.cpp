// The poller and the plain TCP stream on it, over real loopback sockets.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <memory>
#include <string>

#include "net/poller.hpp"
#include "net/streams.hpp"

namespace nimbus::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

// A connected pair: `server` on `ctx` (to become a stream), `peer` a plain blocking socket.
struct socket_pair {
  explicit socket_pair(asio::io_context& ctx) : server(ctx), peer(peer_ctx) {
    tcp::acceptor acceptor(peer_ctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    peer.connect(acceptor.local_endpoint());
    tcp::socket accepted(ctx);
    acceptor.accept(accepted);
    server = std::move(accepted);
  }
  asio::io_context peer_ctx;
  tcp::socket server;
  tcp::socket peer;
};

struct recording_owner final : stream_owner {
  void on_read(const error_code& ec, std::size_t n) override {
    read_error = ec;
    read_bytes = n;
    ++reads;
    if (then) then();
  }
  void on_written(const error_code& ec, std::size_t n) override {
    write_error = ec;
    written = n;
    ++writes;
    if (then) then();
  }
  void on_readable(const error_code& ec) override {
    readable_error = ec;
    ++readables;
    if (then) then();
  }
  int reads = 0, writes = 0, readables = 0;
  error_code read_error, write_error, readable_error;
  std::size_t read_bytes = 0, written = 0;
  std::function<void()> then;
};

TEST(tcp_stream, waits_for_readability_then_reads_without_blocking) {
  asio::io_context ctx;
  socket_pair pair(ctx);
  auto stream = make_tcp_stream(std::move(pair.server));
  EXPECT_EQ(stream->transport(), "tcp");
  EXPECT_NE(stream->remote_address().find("127.0.0.1:"), std::string::npos);

  recording_owner owner;
  char buffer[16];
  error_code ec;
  EXPECT_EQ(stream->read_available(asio::buffer(buffer), ec), 0U);
  EXPECT_EQ(ec, asio::error::would_block);

  ASSERT_TRUE(stream->wait_readable(owner));
  ctx.run_for(50ms);
  EXPECT_EQ(owner.readables, 0);  // nothing sent yet
  asio::write(pair.peer, asio::buffer(std::string("hello")));
  ctx.restart();
  ctx.run_for(200ms);
  ASSERT_EQ(owner.readables, 1);
  EXPECT_FALSE(owner.readable_error);
  EXPECT_EQ(stream->read_available(asio::buffer(buffer), ec), 5U);
  EXPECT_FALSE(ec);
  EXPECT_EQ(std::string(buffer, 5), "hello");
}

TEST(tcp_stream, read_into_and_end_of_stream) {
  asio::io_context ctx;
  socket_pair pair(ctx);
  auto stream = make_tcp_stream(std::move(pair.server));
  recording_owner owner;
  char buffer[16];
  stream->read_into(asio::buffer(buffer), owner);
  asio::write(pair.peer, asio::buffer(std::string("abc")));
  ctx.run_for(200ms);
  ASSERT_EQ(owner.reads, 1);
  EXPECT_EQ(owner.read_bytes, 3U);

  pair.peer.close();
  stream->read_into(asio::buffer(buffer), owner);
  ctx.restart();
  ctx.run_for(200ms);
  ASSERT_EQ(owner.reads, 2);
  EXPECT_EQ(owner.read_error, asio::error::eof);
}

// A write larger than the socket buffers completes once the peer has read it all.
TEST(tcp_stream, a_write_the_socket_cannot_take_at_once_completes_later) {
  asio::io_context ctx;
  socket_pair pair(ctx);
  auto stream = make_tcp_stream(std::move(pair.server));
  std::string big(16 * 1024 * 1024, 'x');
  std::vector<asio::const_buffer> buffers{asio::buffer(big)};
  error_code ec;
  std::size_t taken = stream->write_available(buffers, ec);
  ASSERT_LT(taken, big.size());
  buffers[0] += taken;
  recording_owner owner;
  stream->write_from(buffers, owner);
  std::thread reader([&] {
    std::string sink(big.size() - taken, '\0');
    asio::read(pair.peer, asio::buffer(sink));
  });
  for (int i = 0; i < 100 && owner.writes == 0; ++i) {
    ctx.restart();
    ctx.run_for(50ms);
  }
  reader.join();
  ASSERT_EQ(owner.writes, 1);
  EXPECT_FALSE(owner.write_error);
  EXPECT_EQ(owner.written, big.size() - taken);
}

TEST(tcp_stream, close_completes_a_pending_wait_through_the_loop) {
  asio::io_context ctx;
  socket_pair pair(ctx);
  auto stream = make_tcp_stream(std::move(pair.server));
  recording_owner owner;
  stream->wait_readable(owner);
  stream->close();
  EXPECT_EQ(owner.readables, 0);  // never from inside close()
  ctx.run_for(100ms);
  ASSERT_EQ(owner.readables, 1);
  EXPECT_EQ(owner.readable_error, asio::error::operation_aborted);

  // Waiting on a closed stream fails too, as on a closed socket.
  stream->wait_readable(owner);
  ctx.restart();
  ctx.run_for(100ms);
  ASSERT_EQ(owner.readables, 2);
  EXPECT_EQ(owner.readable_error, asio::error::bad_descriptor);
}

// An owner that destroys another stream from its callback: that stream's event in the same
// batch must not be delivered.
TEST(tcp_stream, a_stream_destroyed_during_a_batch_gets_no_stale_event) {
  asio::io_context ctx;
  socket_pair a(ctx), b(ctx);
  auto first = make_tcp_stream(std::move(a.server));
  auto second = make_tcp_stream(std::move(b.server));
  recording_owner first_owner, second_owner;
  first_owner.then = [&] { first.reset(), second.reset(); };
  second_owner.then = [&] { first.reset(), second.reset(); };
  first->wait_readable(first_owner);
  second->wait_readable(second_owner);
  asio::write(a.peer, asio::buffer(std::string("1")));
  asio::write(b.peer, asio::buffer(std::string("2")));
  std::this_thread::sleep_for(50ms);  // both readable before the loop looks
  ctx.run_for(200ms);
  EXPECT_EQ(first_owner.readables + second_owner.readables, 1);
  EXPECT_EQ(poller::of(ctx).size(), 0U);
}

// The Asio-token path (clients such as the load generator).
TEST(tcp_stream, completion_tokens_work_too) {
  asio::io_context ctx;
  socket_pair pair(ctx);
  auto stream = make_tcp_stream(std::move(pair.server));
  std::string out = "ping";
  std::vector<asio::const_buffer> buffers{asio::buffer(out)};
  std::size_t written = 0;
  stream->async_write(buffers, [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec);
    written = n;
  });
  char in[8];
  std::size_t read = 0;
  stream->async_read_some(asio::buffer(in), [&](error_code ec, std::size_t n) {
    EXPECT_FALSE(ec);
    read = n;
  });
  asio::write(pair.peer, asio::buffer(std::string("pong")));
  ctx.run_for(200ms);
  EXPECT_EQ(written, 4U);
  EXPECT_EQ(read, 4U);
  char echoed[4];
  asio::read(pair.peer, asio::buffer(echoed));
  EXPECT_EQ(std::string(echoed, 4), "ping");
}

}  // namespace
}  // namespace nimbus::net
