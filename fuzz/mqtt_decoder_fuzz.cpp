// Feeds arbitrary bytes to the MQTT decoder the way a connection does (frame, then decode, for
// both protocol versions), and checks that whatever decodes re-encodes to something that decodes
// to the same packet.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"

using namespace nimbus::mqtt;

namespace {

void check_round_trip(const packet& p, protocol_version v) {
  std::string bytes;
  encode(p, v, bytes);
  auto header = read_frame_header(bytes);
  auto* h = std::get_if<frame_header>(&header);
  if (h == nullptr || h->total_size() != bytes.size()) std::abort();
  auto again = decode_packet(*h, std::string_view(bytes).substr(h->header_size), v);
  auto* decoded = std::get_if<packet>(&again);
  if (decoded == nullptr || !(*decoded == p)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (auto version : {protocol_version::v311, protocol_version::v5}) {
    std::string_view rest = bytes;
    while (!rest.empty()) {
      auto header = read_frame_header(rest);
      auto* h = std::get_if<frame_header>(&header);
      if (h == nullptr || h->total_size() > rest.size()) break;
      auto result = decode_packet(*h, rest.substr(h->header_size, h->remaining_length), version);
      if (auto* p = std::get_if<packet>(&result)) {
        // CONNECT carries its own version; everything else uses the connection's.
        auto v = std::holds_alternative<connect_packet>(*p) ? std::get<connect_packet>(*p).version
                                                            : version;
        check_round_trip(*p, v);
        if (auto* pub = std::get_if<publish_packet>(p)) {
          (void)is_valid_topic_name(pub->topic);
        }
        if (auto* sub = std::get_if<subscribe_packet>(p)) {
          for (const auto& e : sub->entries) {
            if (is_valid_topic_filter(e.filter)) (void)topic_matches(e.filter, "a/b/c");
            (void)is_valid_shared_filter(e.filter);
          }
        }
      }
      rest.remove_prefix(h->total_size());
    }
  }
  (void)decode_properties(bytes);
  return 0;
}
