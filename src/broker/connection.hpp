#pragma once
// One MQTT connection: reads and validates packets, speaks the protocol (CONNECT through
// DISCONNECT, QoS 1/2 handshakes, flow control, topic aliases, keep-alive) and writes batched
// output. Pinned to one event loop; other loops reach it only through wake() and kick().
#include <memory>

#include "broker/broker.hpp"
#include "net/byte_stream.hpp"

namespace nimbus::broker {

// Takes ownership of an accepted stream and serves MQTT on it until it closes.
// `counted_pending`: the socket was counted in b.pending() at accept; the connection removes it
// once CONNECT completes or the socket closes.
void serve_mqtt(broker& b, std::unique_ptr<net::byte_stream> stream, bool counted_pending = false);

}  // namespace nimbus::broker
