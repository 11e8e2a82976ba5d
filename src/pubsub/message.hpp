#pragma once
// A Pub/Sub message as published (PubsubMessage: data, attributes, ordering_key, and the
// publish_time and message_id the server assigns) and as a topic's store hands it back: with its
// sequence number in that topic's log. Plain values, owned by whoever holds them.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace nimbus::pubsub {

struct pubsub_message {
  std::string data;
  std::map<std::string, std::string, std::less<>> attributes;
  std::string ordering_key;          // empty: unordered
  std::int64_t publish_time_ms = 0;  // Unix milliseconds, set by the server at publish
  std::string message_id;            // unique within the topic, set by the server
};

struct stored_message {
  std::uint64_t seq = 0;  // position in the topic's log, dense from the store's first_seq()
  pubsub_message message;

  // What the message weighs against a Pull's byte budget and flow control: payload, attributes,
  // ordering key and id, without framing. Close to what the client counts (data + attributes).
  std::size_t bytes() const {
    std::size_t total =
        message.data.size() + message.ordering_key.size() + message.message_id.size();
    for (const auto& [key, value] : message.attributes) total += key.size() + value.size();
    return total;
  }
};

}  // namespace nimbus::pubsub
