#pragma once
// Durable broker state in SQLite: persistent sessions, their subscriptions, queued and in-flight
// QoS 1/2 messages, inbound QoS 2 packet ids, and retained messages. Every write goes through the
// write queue (group commit); the returned ticket tells when it is durable, so an acknowledgement
// can wait for it. Loading happens once, at start-up, before any listener opens.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "broker/message.hpp"
#include "broker/session.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::broker {

struct stored_session {
  std::string client_id;
  mqtt::protocol_version version;
  std::uint32_t expiry_interval;
  std::int64_t expires_at;  // 0: was connected when the server stopped
  std::vector<std::pair<std::string, subscription>> subscriptions;
  std::vector<delivery> queue;  // in seq order
  std::vector<std::pair<std::uint16_t, delivery>>
      sent;  // QoS 2 sent, awaiting PUBREC, by packet id
  std::vector<std::pair<std::uint16_t, delivery>> released;  // QoS 2 awaiting PUBCOMP, by packet id
  std::vector<std::uint16_t> inbound_qos2;
  std::optional<mqtt::will_message> will;  // a delayed will not yet published
  std::int64_t will_at = 0;                // unix seconds
};

class session_store {
 public:
  explicit session_store(storage::write_queue& writer) : writer_(writer) {}

  static void migrate(storage::database& db);
  // Reads everything back (start-up only, on the caller's thread).
  static std::vector<stored_session> load_sessions(storage::database& db);
  // Streams the retained messages to `take`, one row at a time, until it returns false (so a
  // large store is never held in memory twice). Returns how many rows it did not take: the
  // one refused and those never read.
  static std::size_t load_retained(storage::database& db,
                                   const std::function<bool(retained_message)>& take);

  storage::ticket save_session(const std::string& client_id, mqtt::protocol_version version,
                               std::uint32_t expiry_interval, std::int64_t expires_at);
  storage::ticket delete_session(const std::string& client_id);
  // A delayed will survives a restart: stored when scheduled, cleared when sent or cancelled.
  storage::ticket save_will(const std::string& client_id, const mqtt::will_message& will,
                            std::int64_t publish_at);
  storage::ticket clear_will(const std::string& client_id);
  storage::ticket save_subscription(const std::string& client_id, const std::string& filter,
                                    const subscription& s);
  storage::ticket delete_subscription(const std::string& client_id, const std::string& filter);
  // Stores one delivery. Call it under the session's mutex, before the session can send it, so
  // the row is always written before its removal.
  storage::ticket enqueue(const std::string& client_id, const delivery& d);
  // Records the packet id a QoS 2 message was first sent with: after a restart it is resent with
  // the same id (MQTT 4.4), so the receiver's exactly-once state still matches.
  storage::ticket mark_sent(const std::string& client_id, std::uint64_t seq,
                            std::uint16_t packet_id);
  storage::ticket remove_delivery(const std::string& client_id, std::uint64_t seq);
  storage::ticket mark_released(const std::string& client_id, std::uint64_t seq,
                                std::uint16_t packet_id);
  storage::ticket add_inbound_qos2(const std::string& client_id, std::uint16_t packet_id);
  storage::ticket remove_inbound_qos2(const std::string& client_id, std::uint16_t packet_id);
  storage::ticket save_retained(const retained_message& retained);
  storage::ticket delete_retained(const std::string& topic);

  storage::write_queue& writer() { return writer_; }

 private:
  storage::write_queue& writer_;
};

}  // namespace nimbus::broker
