#pragma once
// The broker core: the session registry, the subscription index, retained messages, wills and
// session expiry, and routing a published message to every session that should get it. Called
// from every event loop; connections (connection.hpp) speak the protocol and call in here.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include <boost/unordered/unordered_flat_set.hpp>

#include "broker/authorizer.hpp"
#include "broker/bus.hpp"
#include "broker/message.hpp"
#include "broker/session.hpp"
#include "broker/session_store.hpp"
#include "broker/subscription_index.hpp"
#include "config/settings.hpp"
#include "core/clock.hpp"
#include "mqtt/topic.hpp"

namespace nimbus::broker {

// The limits a client can run into; each hit is counted (nimbus_mqtt_limit_hits_total).
enum class limit {
  connections,
  pending_sockets,
  pending_per_address,
  connect_size,
  client_id_length,
  sessions,
  subscriptions,
  subscription_bytes,
  retained_messages,
  retained_bytes,
  count
};
std::string_view name_of(limit l);

struct broker_metrics {
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::int64_t> connections_current{0};  // sockets served, CONNECT or not
  std::atomic<std::int64_t> connections_open{0};     // not yet finished (shutdown waits)
  std::atomic<std::uint64_t> messages_received{0};
  std::atomic<std::uint64_t> messages_sent{0};
  std::atomic<std::uint64_t> bytes_received{0};
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<std::uint64_t> messages_dropped{
      0};  // queue full, too large for the client, slow reader
  std::atomic<std::uint64_t> messages_expired{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  std::atomic<std::uint64_t> connections_refused{0};
  std::atomic<std::uint64_t> authorization_denials{0};
  std::atomic<std::int64_t> clients_connected{0};  // past CONNECT (max_connections)
  std::atomic<std::uint64_t> sockets_refused{0};   // closed at accept (pending limits)
  std::atomic<std::uint64_t> congestion_timeouts{0};
  std::atomic<std::uint64_t> retained_refused{0};
  std::atomic<std::uint64_t> limit_hits[static_cast<int>(limit::count)]{};
};

// Sockets accepted on the MQTT listeners that have not completed CONNECT (TLS handshakes
// included), in all and per source address: what a client can make the server hold before it
// is known is bounded. Thread-safe.
class pending_sockets {
 public:
  pending_sockets(std::uint32_t max_total, std::uint32_t max_per_address)
      : max_total_(max_total), max_per_address_(max_per_address) {}
  // What sockets from `remote` ("host:port") count under: the IP, or for IPv6 its /64 (one
  // host commonly holds a whole /64).
  static std::string key_of(std::string_view remote);
  // Counts a new socket under `key`; false (nothing counted, `refused` says which limit) when a
  // limit is reached.
  bool try_add(const std::string& key, limit& refused);
  // Uncounts a socket counted under `key`; a key never counted is a bug, logged and ignored.
  void remove(std::string_view key);
  std::size_t size() const;

 private:
  const std::uint32_t max_total_;
  const std::uint32_t max_per_address_;
  mutable std::mutex mutex_;
  std::uint32_t total_ = 0;
  std::map<std::string, std::uint32_t, std::less<>> by_address_;
};

// How a connection ended, for will handling.
enum class close_kind { normal, with_will, abnormal };

struct attach_result {
  session_ptr target;  // null when refused: a new session would pass max_sessions
  bool session_present = false;
};

struct publish_result {
  // Refused before routing: a retained message past max_retained_messages/bytes.
  bool quota_exceeded = false;
  // Sessions it was queued for and services it was handed to (none: MQTT 5 acknowledges 0x10).
  std::size_t matched = 0;
  // The latest of the writes it made (the retained row, a row per persistent subscriber): an
  // acknowledgement waits until it is durable and none of them failed. None: nothing stored.
  storage::ticket durable_ticket;
};

class broker {
 public:
  broker(const config::mqtt_settings& settings, core::clock& clock, authorizer& auth,
         session_store* store);
  ~broker();

  // Loads persistent sessions and retained messages (start-up, before listeners open).
  void restore(storage::database& db);

  // Attaches a connection to its session (creating, resuming or replacing it). A live connection
  // on the same client id is kicked with "session taken over".
  attach_result attach(const std::string& client_id, mqtt::protocol_version version,
                       bool clean_start, std::uint32_t expiry_interval,
                       std::shared_ptr<session_link> link);
  // Detaches a closed connection; publishes or schedules its will; ends non-persistent sessions.
  void detach(const session_ptr& s, const session_link* link, close_kind kind,
              std::optional<mqtt::will_message> will, std::optional<std::uint32_t> new_expiry,
              const std::string& publisher);

  // Routes a message from a client, a will, an HTTPS publish or a service (counted as received)
  // to the sessions and services subscribed to it. With a `gate`, connected subscribers whose
  // queues are full take QoS 1/2 messages anyway and hold the gate until they drain (publisher
  // backpressure); without one, such messages are dropped and counted. `from`: the publishing
  // client's identity, which services are shown (null: the server or a caller without one).
  publish_result publish(message_ptr msg, const gate_ptr& gate = nullptr,
                         const client_identity* from = nullptr);

  // The bus (bus.hpp): subscribes a service's handler to `filter` until the returned
  // subscription is destroyed. Any filter a client could subscribe to, `$` topics included;
  // shared subscriptions are for clients only.
  [[nodiscard]] bus_subscription subscribe_service(std::string filter, bus_handler handler);
  // Inside a bus handler: holds the acknowledgement of the message being handled (bus.hpp).
  publisher_hold hold_publisher() const;
  void unsubscribe_service(const std::string& filter, std::uint64_t id);
  // Makes the topics matching `filter` reserved (see is_reserved_topic): a service's reply
  // topics, which only it may publish to. Call at start-up, before any client connects.
  void reserve_topics(std::string filter);
  // Releases the publishers held by `s` (its queue drained, or it went away).
  static void release_congestion(session& s);

  // Adds a subscription and queues the retained messages it asks for. Returns the stored
  // subscription's ticket, which the SUBACK waits for (none when nothing was stored: no store,
  // a non-persistent session, or one that ended meanwhile). The rows of the retained
  // messages it queues are not covered.
  storage::ticket subscribe(const session_ptr& s, const std::string& filter,
                            const mqtt::subscription_options& options,
                            std::uint32_t subscription_id);
  // Returns whether the subscription existed; a stored subscription's deletion raises `ticket`
  // (UNSUBACK waits for it, so an acknowledged unsubscribe does not come back after a crash).
  bool unsubscribe(const session_ptr& s, const std::string& filter, storage::ticket& ticket);

  // Once a second: delayed wills, session expiry, $SYS.
  void tick();
  // Kicks every connection (server shutting down).
  void shutdown();
  // Kicks the connections whose identity matches (a certificate was revoked ...). Returns how
  // many were told.
  std::size_t disconnect_if(const std::function<bool(const client_identity&)>& match,
                            mqtt::reason_code reason);

  // AWS IoT lifecycle events on `$aws/events/presence/...` and `$aws/events/subscriptions/...`
  // (when `lifecycle_events` is on). `session_id` identifies one connection.
  void announce_connected(const client_identity& who, std::uint64_t session_id);
  void announce_disconnected(const client_identity& who, std::uint64_t session_id,
                             std::string_view reason, bool client_initiated);
  void announce_subscriptions(const client_identity& who, std::uint64_t session_id, bool subscribed,
                              const std::vector<std::string>& filters);

  session_store* store() { return store_; }
  const config::mqtt_settings& settings() const { return settings_; }
  core::clock& clock() { return clock_; }
  authorizer& auth() { return auth_; }
  broker_metrics& metrics() { return metrics_; }
  // Counts and logs (rate-limited) a limit a client ran into.
  void limit_hit(limit which, std::string_view client);
  pending_sockets& pending() { return pending_; }
  const mqtt::topic_limits& topic_limits() const { return topic_limits_; }
  std::size_t session_count() const;
  // Whether `client_id` has a connected session (a CONNECT with it takes that session over).
  bool is_connected(std::string_view client_id) const;
  std::size_t retained_count() const;
  // The clients' retained messages, for iot-data (the broker's own $SYS topics left out).
  // One, or none (never set, deleted or expired): GetRetainedMessage.
  std::optional<retained_message> retained(std::string_view topic) const;
  // Up to `max` in topic order, from the first after `after` (empty: from the start):
  // ListRetainedMessages pages on the last topic it returned.
  std::vector<retained_message> list_retained(std::string_view after, std::size_t max) const;
  std::size_t subscription_count() const { return index_.size(); }
  std::string prometheus_text() const;

  // Topics only the server publishes to: $SYS, lifecycle events and what services reserved
  // (reserve_topics). A client's PUBLISH to one is acknowledged but not routed (a Mosquitto
  // bridge's own state topic excepted), a will on one refuses the CONNECT, and an HTTPS publish
  // to one gets 403.
  bool is_reserved_topic(std::string_view topic) const;
  // AWS's Basic Ingest: `$aws/rules/<rule>/<topic>` reaches only that rule (a service on the
  // bus), never a client, and no client may subscribe to it.
  static bool is_basic_ingest(std::string_view topic_or_filter) {
    return topic_or_filter.starts_with("$aws/rules/");
  }

  // Message expiry: unix time at which a message published now with `props` expires (0: never).
  std::int64_t expiry_for(const mqtt::properties& props) const;

 private:
  // Stores, replaces or deletes a retained message; false when limits refuse it.
  bool retain(const message_ptr& msg, publish_result& result);
  // A subscriber congested for longer than congestion_timeout: its publishers are released and
  // its queue drops per queue_full_policy until it drains (caller holds s.mutex).
  void expire_congestion_locked(session& s, std::vector<gate_ptr>& released);
  // Removes a session and its subscriptions. Call without holding its mutex.
  void discard(const session_ptr& s);
  // Queues `d` into `s` (caller holds s->mutex); false when it is dropped (a discarded
  // session, an offline one that does not keep it, a full queue). A stored row's ticket raises
  // `ticket` (later()).
  bool enqueue_locked(session& s, delivery d, storage::ticket& ticket,
                      const gate_ptr& gate = nullptr);
  void queue_retained(const session_ptr& s, const std::string& filter,
                      const mqtt::subscription_options& options, std::uint32_t subscription_id);
  void publish_will(const mqtt::will_message& will, const std::string& publisher);
  void publish_sys();
  // Publishes a lifecycle event (QoS 1, not retained) from the broker itself.
  void publish_event(std::string topic, std::string payload);
  publish_result route(message_ptr msg, const gate_ptr& gate, const client_identity* from);
  // Queues `msg` for the sessions in `matches` (one copy each, however many filters matched).
  void deliver(const message_ptr& msg, const gate_ptr& gate,
               std::vector<subscription_match>& matches, publish_result& result);

  config::mqtt_settings settings_;
  mqtt::topic_limits topic_limits_;
  core::clock& clock_;
  authorizer& auth_;
  session_store* store_;
  broker_metrics metrics_;
  pending_sockets pending_;
  subscription_index index_;
  std::atomic<std::uint64_t> next_service_id_{1};
  std::vector<std::string> reserved_filters_;  // written before clients connect, then read-only

  // Sessions by client id; the key is the session's own, so an entry is just its pointer.
  struct by_client_id {
    using is_transparent = void;
    static std::string_view id(std::string_view s) { return s; }
    static std::string_view id(const session_ptr& s) { return s->client_id(); }
    std::size_t operator()(const auto& x) const { return std::hash<std::string_view>{}(id(x)); }
    bool operator()(const auto& a, const auto& b) const { return id(a) == id(b); }
  };
  mutable std::mutex registry_mutex_;
  boost::unordered_flat_set<session_ptr, by_client_id, by_client_id> sessions_;

  mutable std::shared_mutex retained_mutex_;
  std::map<std::string, retained_message, std::less<>> retained_;
  std::size_t retained_bytes_ = 0;     // topics and payloads (max_retained_bytes)
  bool retained_left_stored_ = false;  // restore() left some in the database (limits)

  std::atomic<std::int64_t> event_version_{0};  // lifecycle versionNumber, monotonic
  core::steady_time started_;
  std::int64_t last_sys_ = 0;
};

}  // namespace nimbus::broker
