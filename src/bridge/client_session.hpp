#pragma once
// The MQTT 3.1.1 / 5 client a bridge runs toward its remote broker, sans I/O (async_mqtt's
// protocol layer): bytes in, events and bytes out, time passed in. It frames and decodes with
// mqtt/codec and answers what the protocol answers by itself (PUBREL, PUBCOMP, PINGREQ, resends).
//
// Durability is the owner's: its queue is the truth, a message leaves it at `publish_completed`
// (the remote's PUBACK, or PUBCOMP for QoS 2), and it acknowledges a remote message with
// `acknowledge()` only once the local broker accepted it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "mqtt/packet.hpp"
#include "mqtt/reason_code.hpp"

namespace nimbus::bridge {

using steady_time = std::chrono::steady_clock::time_point;

// Settings of the session itself, fixed for its life.
struct session_options {
  mqtt::protocol_version version = mqtt::protocol_version::v311;
  // Outbound QoS 1 and 2 messages awaiting their acknowledgement at once (Mosquitto's
  // max_inflight_messages); on MQTT 5 the server's Receive Maximum lowers it.
  std::uint16_t max_in_flight = 20;
  // Inbound QoS 1 and 2 messages not yet acknowledged at once: our Receive Maximum (MQTT 5).
  std::uint16_t receive_maximum = 65535;
  // The largest packet we read, announced on MQTT 5; a larger one from the server is a protocol
  // error, which also bounds the receive buffer. The broker's own default limit.
  std::uint32_t maximum_packet_size = 1024 * 1024;
};

// What each CONNECT says: a link may change them between attempts (the bridge flag retried
// without, AWS IoT refusing it).
struct connect_params {
  std::string client_id = {};
  bool clean_start = true;           // "clean session" on 3.1.1
  std::uint32_t session_expiry = 0;  // seconds, MQTT 5 only
  std::uint16_t keep_alive = 60;     // seconds; 0 turns pings and the dead-link check off
  std::optional<std::string> username = {};
  std::optional<std::string> password = {};
  std::optional<mqtt::will_message> will = {};  // a bridge's is notification_will()
  // 3.1.1: protocol level | 0x80, Mosquitto's try_private, so a Mosquitto remote does not send
  // back what the bridge published. Ignored on MQTT 5, where in-subscriptions use No Local.
  bool bridge_flag = false;
};

// Mosquitto's bridge state topic, and its will: "0", retained, QoS 1. Once connected, the owner
// publishes "1" there, retained, as Mosquitto does.
std::string notification_topic(std::string_view remote_client_id);
mqtt::will_message notification_will(std::string topic);

// What the server's CONNACK allows us (MQTT 5; 3.1.1 gets the defaults).
struct server_limits {
  std::uint16_t receive_maximum = 65535;
  std::uint32_t maximum_packet_size = 268'435'460;  // MQTT's own bound
  std::uint8_t maximum_qos = 2;
  bool is_retain_available = true;
  std::uint16_t keep_alive = 0;  // ours, or the server's Server Keep Alive
};

enum class session_state : std::uint8_t {
  disconnected,  // no link, or it failed: connect() starts the next one
  connecting,    // CONNECT written, awaiting CONNACK
  connected,
};

// A message for the remote. Its properties pass through as given (MQTT 5), Message Expiry
// already reduced by the owner; Subscription Identifiers and Topic Alias are dropped.
struct outbound_message {
  std::string topic = {};
  std::string payload = {};
  std::uint8_t qos = 0;
  bool retain = false;
  mqtt::properties props = {};
  std::uint64_t cookie = 0;  // the owner's (its queue position), returned with the completion
};

enum class publish_status : std::uint8_t {
  sent,           // in the output; QoS 1 and 2 now in flight
  would_block,    // the window (or the packet ids) is full: keep it queued, retry on a completion
  not_connected,  // no CONNACK yet
  too_large,      // over the server's Maximum Packet Size: drop it, counted
  invalid_topic,  // empty, wildcard, not UTF-8 or too long: drop it
};

struct publish_result {
  publish_status status = publish_status::sent;
  std::uint16_t packet_id = 0;  // QoS 1 and 2
  bool is_downgraded = false;   // sent at the server's Maximum QoS, counted
};

// --- events -----------------------------------------------------------------------------

struct connack_received {
  bool is_accepted = false;
  bool session_present = false;
  mqtt::reason_code reason = mqtt::reason_code::success;  // 3.1.1 return codes mapped by the codec
  std::optional<std::string> reason_string = {};
  std::optional<std::string> assigned_client_id = {};
  std::optional<std::string> server_reference = {};
  server_limits limits;
  std::string_view reason_text() const { return mqtt::to_string(reason); }
};

struct subscription_result {
  std::string filter = {};
  mqtt::reason_code reason = mqtt::reason_code::success;  // granted QoS (0..2) or a refusal
  bool is_granted() const { return !mqtt::is_error(reason); }
};

struct suback_received {
  std::uint16_t packet_id = 0;
  std::vector<subscription_result> results = {};  // in the order subscribed
};

// A remote message; QoS 1 and 2 wait for acknowledge(packet.packet_id). A resend of one already
// handed over is not handed over again.
struct publish_received {
  mqtt::publish_packet packet = {};
};

// One of our QoS 1 or 2 messages is done: the remote's PUBACK or PUBCOMP, or its PUBREC with a
// refusal. A refusal (reason >= 0x80, MQTT 5) is final too: counted, not retried.
struct publish_completed {
  std::uint16_t packet_id = 0;
  std::uint64_t cookie = 0;
  mqtt::reason_code reason = mqtt::reason_code::success;
  bool is_refused() const { return mqtt::is_error(reason); }
};

// The server had no session (session_present = 0): the messages that were in flight, in the
// order published, for the owner to publish again as new ones (possibly duplicates). QoS 2
// messages the server had already received (PUBREC) complete instead.
struct messages_returned {
  std::vector<outbound_message> messages = {};
};

struct server_disconnected {
  mqtt::reason_code reason = mqtt::reason_code::success;
  std::optional<std::string> reason_string = {};
  std::optional<std::string> server_reference = {};
};

// The link is unusable: malformed or forbidden packet, packet too large, keep-alive expired. The
// owner writes out what take_output() holds (an MQTT 5 DISCONNECT naming the reason), closes the
// link and reconnects after a backoff.
struct link_failed {
  mqtt::reason_code reason = mqtt::reason_code::protocol_error;
  std::string_view what = {};  // static text, for the log and `last_error`
};

using session_event =
    std::variant<connack_received, suback_received, publish_received, publish_completed,
                 messages_returned, server_disconnected, link_failed>;

struct session_counters {
  std::uint64_t qos_downgraded = 0;       // published at the server's Maximum QoS
  std::uint64_t too_large = 0;            // refused by publish(): over the Maximum Packet Size
  std::uint64_t refused = 0;              // completions with a reason >= 0x80
  std::uint64_t duplicates_received = 0;  // resends of a message already handed over
};

// The bridge's link owns one and keeps it across reconnects: it holds the MQTT session (messages
// in flight both ways). The link feeds what it reads, writes what take_output() holds after each
// call, and calls tick() at next_deadline(). Used on the link's loop only; not thread-safe.
class client_session {
 public:
  explicit client_session(session_options options = {});

  // Starts a connection: forgets the previous one's unread input and unwritten output, writes
  // CONNECT. The in-flight state stays for the CONNACK to resume or return.
  void connect(const connect_params& params, steady_time now);

  // Bytes read from the link, split anywhere. After a link_failed, a server_disconnected or a
  // refused CONNACK the state is `disconnected` and further bytes are ignored.
  std::vector<session_event> feed(std::string_view bytes, steady_time now);

  // SUBSCRIBE; its packet id, 0 when not connected, `entries` is empty or no id is free. Filters
  // are the owner's to validate (topic_mapping did). The owner subscribes after each CONNACK.
  std::uint16_t subscribe(std::span<const mqtt::subscribe_entry> entries, steady_time now);

  // PUBLISH, at min(qos, the server's Maximum QoS); retain dropped where unavailable. QoS 0
  // (packet_id 0 in the result) is done once written: no completion follows.
  publish_result publish(const outbound_message& message, steady_time now);

  // The local broker took remote message `packet_id` (MQTT 5: or refused it, `reason` >= 0x80):
  // PUBACK or PUBREC now, or at the server's resend if the link is down. Each delivered QoS 1 or
  // 2 message is acknowledged once; an acknowledgement of a message from a session the server no
  // longer has is ignored.
  void acknowledge(std::uint16_t packet_id, mqtt::reason_code reason = mqtt::reason_code::success);

  // A clean close: DISCONNECT (the will is not sent); the state is `disconnected`.
  void disconnect(steady_time now, mqtt::reason_code reason = mqtt::reason_code::success);
  // The link closed under us.
  void link_closed();

  // When tick() has something to do: a PINGREQ, or the dead-link check. nullopt without a
  // connection or keep-alive.
  std::optional<steady_time> next_deadline() const;
  // PINGREQ once keep-alive has passed since we last wrote, or since we last heard from the
  // server (a ping asks it to speak); link_failed (keep_alive_timeout) once it has been silent
  // for 1.5 x keep-alive.
  std::vector<session_event> tick(steady_time now);

  // The bytes to write, in order; the owner writes them all before the next call's output.
  std::string take_output() { return std::exchange(output_, {}); }
  bool has_output() const { return !output_.empty(); }

  session_state state() const { return state_; }
  const server_limits& limits() const { return limits_; }
  const session_counters& counters() const { return counters_; }
  // Outbound QoS 1 and 2 messages awaiting completion, and how many may be.
  std::size_t in_flight() const { return outbound_.size(); }
  std::size_t window() const;
  // Their cookies, in the order published: what a crash would leave unacknowledged.
  std::vector<std::uint64_t> in_flight_cookies() const;

 private:
  enum class outbound_stage : std::uint8_t { awaiting_puback, awaiting_pubrec, awaiting_pubcomp };
  struct outbound_entry {
    std::uint16_t packet_id = 0;
    outbound_stage stage = outbound_stage::awaiting_puback;
    std::uint8_t qos = 1;      // as sent: after the server's Maximum QoS
    bool retain = false;       // as sent: after Retain Available
    bool is_sent = false;      // on the current connection
    steady_time sent_at;       // first sent: a resend's Message Expiry counts from it
    outbound_message message;  // as given, properties cleaned: what messages_returned returns
  };
  // `delivered`: handed to the owner, not acknowledged. `acknowledged`: the owner has; QoS 1
  // waits only for a link to send its PUBACK on, QoS 2 for the server's PUBREL.
  enum class inbound_stage : std::uint8_t { delivered, acknowledged };
  struct inbound_entry {
    std::uint8_t qos = 1;
    inbound_stage stage = inbound_stage::delivered;
    mqtt::reason_code reason = mqtt::reason_code::success;
  };
  struct pending_subscribe {
    std::uint16_t packet_id = 0;
    std::vector<std::string> filters;
  };
  using inbound_map = std::unordered_map<std::uint16_t, inbound_entry>;
  using events = std::vector<session_event>;

  void on_packet(mqtt::packet& packet, steady_time now, events& out);
  void on_connack(mqtt::connack_packet& connack, steady_time now, events& out);
  void on_publish(mqtt::publish_packet& publish, events& out);
  void on_ack(const mqtt::ack_packet& ack, steady_time now, events& out);
  void on_suback(mqtt::suback_packet& suback, events& out);
  void fail(mqtt::reason_code reason, std::string_view what, events& out);

  void return_in_flight(events& out);
  void send_unsent(steady_time now);
  void complete(const std::deque<outbound_entry>::iterator& it, mqtt::reason_code reason,
                steady_time now, events& out);
  void answer_inbound(inbound_map::iterator it);
  std::deque<outbound_entry>::iterator find_outbound(std::uint16_t packet_id);
  steady_time ping_due() const;
  steady_time silence_limit() const;

  void write(const mqtt::packet& packet);
  void write_publish(const outbound_message& message, std::uint8_t qos, bool retain,
                     std::uint16_t packet_id, bool dup);
  void write_ack(mqtt::packet_type type, std::uint16_t packet_id, mqtt::reason_code reason);
  std::uint16_t allocate_packet_id();
  void release_packet_id(std::uint16_t packet_id) { ids_in_use_[packet_id] = false; }

  session_options options_;
  session_state state_ = session_state::disconnected;
  bool is_clean_start_ = true;
  server_limits limits_;
  session_counters counters_;

  std::string input_;
  std::string output_;

  std::deque<outbound_entry> outbound_;  // in publish order
  std::size_t unsent_count_ = 0;         // entries of outbound_ not yet on this connection
  inbound_map inbound_;
  // Deliveries from a session the server dropped, by packet id, whose acknowledgement must not
  // answer a new message that reuses the id.
  std::unordered_map<std::uint16_t, std::uint32_t> stale_deliveries_;
  std::vector<pending_subscribe> subscribes_;
  std::vector<bool> ids_in_use_;  // indexed by packet id, outbound publishes and subscribes
  std::uint16_t next_packet_id_ = 1;

  steady_time last_sent_;
  steady_time last_received_;
  bool is_ping_outstanding_ = false;
};

}  // namespace nimbus::bridge
