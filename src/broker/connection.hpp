#pragma once
// One MQTT connection: reads and validates packets, speaks the protocol (CONNECT through
// DISCONNECT, QoS 1/2 handshakes, flow control, topic aliases, keep-alive) and writes batched
// output. Pinned to one event loop; other loops reach it only through wake() and kick().
#include <memory>
#include <optional>
#include <string>

#include "broker/broker.hpp"
#include "net/byte_stream.hpp"

namespace nimbus::broker {

// Takes ownership of an accepted stream and serves MQTT on it until it closes.
// `counted_as`: the remote address ("host:port") the socket was counted under in b.pending()
// when it was accepted; the connection uncounts it, under that same address, once CONNECT
// completes or the socket closes. (Read again later, the peer's address may be gone.)
void serve_mqtt(broker& b, std::unique_ptr<net::byte_stream> stream,
                std::optional<std::string> counted_as = std::nullopt);

}  // namespace nimbus::broker
