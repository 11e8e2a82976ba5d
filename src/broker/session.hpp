#pragma once
// The server side of an MQTT session: subscriptions, the queue of messages not yet sent, the
// outbound in-flight window and inbound QoS 2 state. It outlives connections (persistent
// sessions) and is shared between the loop of its current connection and the publishers' loops
// that enqueue into it, hence its mutex. Lock order: broker registry, then one session.
#include <atomic>
#include <boost/container/devector.hpp>
#include <boost/container/flat_map.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker/authorizer.hpp"
#include "broker/message.hpp"
#include "core/small_mutex.hpp"
#include "mqtt/packet.hpp"

namespace nimbus::broker {

// The connection a session is attached to, seen from the session. Thread-safe.
class session_link {
 public:
  virtual ~session_link() = default;
  // New deliveries were queued: flush them on the connection's loop.
  virtual void wake() = 0;
  // The server ends the connection with this reason (takeover, shutdown, certificate disabled).
  virtual void kick(mqtt::reason_code reason) = 0;
  // Who is connected (set before the link is attached, immutable after); null if unknown.
  virtual const client_identity* identity() const { return nullptr; }
};

struct subscription {
  mqtt::subscription_options options;
  std::uint32_t subscription_id = 0;  // 0: none
};

struct outbound_inflight {
  delivery d;
  bool released = false;  // QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP
};

// Holds a publisher's acknowledgement while subscribers it delivered to are congested: QoS 1/2
// messages are never dropped for a connected subscriber; instead the publisher's window closes
// until the subscriber catches up. The publisher holds one count while routing.
struct congestion_gate {
  std::atomic<int> remaining{1};
  std::atomic<bool> failed{false};  // a service holding it lost the message (publisher_hold)
  std::function<void()> on_clear;   // set before routing; runs on whichever thread clears it
  void release() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1 && on_clear) on_clear();
  }
};
using gate_ptr = std::shared_ptr<congestion_gate>;

struct pending_will {
  mqtt::will_message will;
  std::int64_t publish_at = 0;  // unix seconds
};

// What only some sessions need: QoS 1/2 exchanges in progress, congestion, a delayed will.
// Allocated when first needed, so the session of an idle client (or one that uses only QoS 0)
// has none of it: ten thousand idle clients would otherwise hold 1.2 MB of empty trees.
struct session_extras {
  std::map<std::uint16_t, outbound_inflight> inflight;  // sent, not yet acknowledged
  std::set<std::uint16_t> inbound_qos2;                 // PUBLISH received, PUBREL not yet
  std::vector<gate_ptr> congested_publishers;           // released when the queue drains
  // Since when publishers are held (none: not congested). Past congestion_timeout the
  // publishers are released and, until the queue drains to half, a full queue drops.
  std::optional<std::chrono::steady_clock::time_point> congested_since;
  bool congestion_expired = false;
  std::uint64_t next_seq = 1;          // of the next stored delivery
  std::unique_ptr<pending_will> will;  // while disconnected, until the will delay has passed
};

// Laid out small: a server holds one per client, connected or not.
class session {
 public:
  explicit session(std::string client_id) : client_id_(std::move(client_id)) {}
  const std::string& client_id() const { return client_id_; }

  core::small_mutex mutex;
  // --- everything below is guarded by `mutex` ---
  mqtt::protocol_version version = mqtt::protocol_version::v311;
  bool discarded = false;  // removed from the broker; late enqueues are ignored
  std::uint16_t next_packet_id = 1;
  std::uint32_t expiry_interval = 0;  // seconds; 0xFFFFFFFF never
  // Bytes of the topic filters in `subscriptions` (max_subscription_bytes), kept as they
  // change so a SUBSCRIBE is checked without walking them. Fills what was padding.
  std::uint32_t subscription_bytes = 0;
  // By filter as sent (incl. $share/...); few per client, so a sorted vector.
  boost::container::flat_map<std::string, subscription, std::less<>> subscriptions;
  boost::container::devector<delivery>
      queue;  // waiting for the window or a connection; no allocation while empty
  std::shared_ptr<session_link> link;  // null while disconnected
  std::int64_t expires_at = 0;         // unix seconds while disconnected (0 = attached or never)

  session_extras& extras() {
    if (!extras_) extras_ = std::make_unique<session_extras>();
    return *extras_;
  }
  // Null until the first exchange: for looking without allocating.
  session_extras* extras_if_any() { return extras_.get(); }

  bool is_persistent() const { return expiry_interval > 0; }
  // A free packet id for an outbound QoS 1/2 message (the window keeps some free).
  std::uint16_t allocate_packet_id() {
    auto& inflight = extras().inflight;
    while (true) {
      std::uint16_t id = next_packet_id++;
      if (next_packet_id == 0) next_packet_id = 1;
      if (id != 0 && !inflight.contains(id)) return id;
    }
  }

 private:
  std::unique_ptr<session_extras> extras_;
  const std::string client_id_;
};

using session_ptr = std::shared_ptr<session>;

}  // namespace nimbus::broker
