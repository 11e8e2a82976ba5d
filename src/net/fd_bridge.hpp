#pragma once
// Hands a stream to code that only takes a file descriptor: gRPC's AddInsecureChannelFromFd,
// for TLS that Nimbus terminates itself (the Pub/Sub port sorts plain HTTP/1.1, plain HTTP/2
// and TLS on one socket, which gRPC's own listeners cannot). One end of a connected loopback
// TCP pair goes to the caller; bytes are copied between the other end and the stream, both ways,
// through one fixed buffer each way, so a side that stops reading stops the copy and memory stays
// bounded.
#include <boost/system/error_code.hpp>

#include <functional>
#include <memory>

#include "net/byte_stream.hpp"

namespace nimbus::net {

// Returns the caller's end (a connected, non-blocking loopback TCP socket it now owns), or -1
// with `ec`.
// `on_closed` runs once, on the stream's executor, when the copying ends (either side closed
// or failed); by then the stream is closed and the bridge's end shut down.
int bridge_to_fd(std::unique_ptr<byte_stream> stream, std::function<void()> on_closed,
                 boost::system::error_code& ec);

}  // namespace nimbus::net
