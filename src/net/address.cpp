#include "net/address.hpp"

#include <charconv>

namespace nimbus::net {

bool is_off(std::string_view text) {
  return text == "off" || text.empty();
}

std::optional<boost::asio::ip::tcp::endpoint> parse_address(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto host = text.substr(0, colon);
  auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || port > 65535)
    return std::nullopt;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code error;
  auto ip = boost::asio::ip::make_address(std::string(host), error);
  if (error) return std::nullopt;
  return boost::asio::ip::tcp::endpoint(ip, static_cast<unsigned short>(port));
}

std::vector<boost::asio::ip::tcp::endpoint> listen_endpoints(std::string_view text) {
  auto first = parse_address(text);
  if (!first) return {};
  std::vector<boost::asio::ip::tcp::endpoint> out{*first};
  if (text.substr(0, text.rfind(':')) == "localhost")
    out.emplace_back(boost::asio::ip::address_v6::loopback(), first->port());
  return out;
}

std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep) {
  auto ip = ep.address().to_string();
  if (ep.address().is_v6()) ip = "[" + ip + "]";
  return ip + ":" + std::to_string(ep.port());
}

}  // namespace nimbus::net

namespace nimbus::net {

std::string host_of(std::string_view endpoint_text) {
  if (endpoint_text.starts_with('[')) {
    auto close = endpoint_text.find(']');
    return std::string(
        endpoint_text.substr(1, close == std::string_view::npos ? close : close - 1));
  }
  auto colon = endpoint_text.rfind(':');
  if (colon == std::string_view::npos || endpoint_text.find(':') != colon)
    return std::string(endpoint_text);
  return std::string(endpoint_text.substr(0, colon));
}

}  // namespace nimbus::net
