#pragma once
// Listener addresses as written in config and flags: "host:port", "[v6]:port" or "off".
#include <boost/asio/ip/tcp.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::net {

// nullopt for anything malformed; "localhost" resolves to 127.0.0.1.
std::optional<boost::asio::ip::tcp::endpoint> parse_address(std::string_view text);
bool is_off(std::string_view text);
// What a listener binds for `text`: one endpoint, or for "localhost:PORT" both 127.0.0.1 and
// [::1] (IPv4 first), as Mosquitto 2 does, so clients that resolve localhost to either reach
// it. Empty for anything malformed.
std::vector<boost::asio::ip::tcp::endpoint> listen_endpoints(std::string_view text);
// "127.0.0.1:1883" or "[::1]:1883".
std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep);

// The host part of "host:port" / "[v6]:port" (the text itself when it has no port).
std::string host_of(std::string_view endpoint_text);

}  // namespace nimbus::net
