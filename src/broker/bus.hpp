#pragma once
// The in-process bus: how the server's own services (device shadows, the rules engine, time
// series, bridges) take part in MQTT without being MQTT clients. A service subscribes a handler
// to a topic filter, reserved topics included; it publishes as the server through
// broker::publish; and each message it receives says who published it. The broker holds service
// subscriptions in the same index as client subscriptions, so a publish pays for them only when
// its topic matches one.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "broker/authorizer.hpp"
#include "broker/message.hpp"

namespace nimbus::broker {

class broker;

// Receives a message a service subscribed to. `publisher` is the identity of the connected client
// (or HTTPS device) that published it, valid only during the call, or null when the server did
// (a service, a will, $SYS, lifecycle events, a SigV4-signed HTTPS publish); msg->publisher
// always names the client id. Runs on the publisher's thread, after the message is queued for the
// MQTT subscribers and with no broker lock held. It must not block (post long work elsewhere); it
// may publish, and it may run on several threads at once.
using bus_handler = std::function<void(const message_ptr& msg, const client_identity* publisher)>;

// A service's subscription; removed when destroyed (the handler may still be running on another
// thread at that moment, so what it uses must outlive the broker's last call, e.g. the service).
class bus_subscription {
 public:
  bus_subscription() = default;
  bus_subscription(broker& owner, std::string filter, std::uint64_t id)
      : owner_(&owner), filter_(std::move(filter)), id_(id) {}
  bus_subscription(bus_subscription&& other) noexcept { *this = std::move(other); }
  bus_subscription& operator=(bus_subscription&& other) noexcept;
  ~bus_subscription() { reset(); }
  void reset();

 private:
  broker* owner_ = nullptr;
  std::string filter_;
  std::uint64_t id_ = 0;
};

// Holds back the publisher's acknowledgement (PUBACK, PUBREC) of the message whose handler is
// running until release(): how a service that takes a message over durably (a bridge's disk
// queue) makes the device's acknowledgement wait for it, as a congested subscriber does. Empty,
// holding nothing, where nobody waits (QoS 0, a server publish). fail(): the service could not
// keep the message, so the publisher is disconnected unacknowledged (as for a storage failure)
// and sends it again. Dropping a hold releases it.
struct congestion_gate;
class publisher_hold {
 public:
  publisher_hold() = default;
  explicit publisher_hold(std::shared_ptr<congestion_gate> gate);
  publisher_hold(publisher_hold&&) noexcept = default;
  publisher_hold& operator=(publisher_hold&& other) noexcept;
  publisher_hold(const publisher_hold&) = delete;
  publisher_hold& operator=(const publisher_hold&) = delete;
  ~publisher_hold() { release(); }

  explicit operator bool() const { return gate_ != nullptr; }
  void release();
  void fail();

 private:
  std::shared_ptr<congestion_gate> gate_;
};

}  // namespace nimbus::broker
