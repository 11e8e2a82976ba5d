#pragma once
// Sends alert notifications (issue 15): what the deliveries of an alert event are (one per
// notification of its rule that sends that event: topic or URL expanded, the JSON payload), and
// one attempt at sending a delivery:
//   - mqtt: published as the server (broker::publish) on the expanded topic, at the
//     notification's QoS; done once routed.
//   - webhook: POST of the payload over net::http_client with X-Nimbus-Event-Id and, with a
//     secret, X-Nimbus-Signature: sha256=<hex HMAC-SHA256(secret, body)>; 2xx is done, 408, 429,
//     5xx and network errors are retried, any other status is a final failure.
//   - pubsub: the in-process Pub/Sub service's publish_record on the topic id (default project)
//     with attributes type, severity, device_id, event and event_id; NOT_FOUND and the other
//     refusals a retry cannot mend are final.
// The payload: {"event_id","event","rule","alert":{alert_json without history}}.
// Owned by the alerts service and called on its thread; outcomes arrive on whatever thread
// finished the attempt (at once for mqtt, `io` for webhooks, the Pub/Sub service's thread).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "alerts/engine.hpp"
#include "alerts/outbox.hpp"
#include "alerts/rule.hpp"
#include "broker/broker.hpp"
#include "net/http_client.hpp"

namespace nimbus::pubsub {
class service;
}

namespace nimbus::alerts {

// "<alert id>-<12 random hex digits>".
std::string new_event_id(std::uint64_t alert_id);

// {"event_id","event","rule","alert":{...}}.
std::string notification_payload(const event& e, std::string_view event_id);

// The deliveries of event `e` of rule `r` (those of its notifications that send e.what), due at
// `now_ms`. `e.snapshot` is the alert as the payload shows it.
std::vector<delivery> deliveries_for(const event& e, const rule& r, std::int64_t now_ms);

// Lower-case hex of HMAC-SHA256(key, message).
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// What a webhook's answer means (see above).
send_outcome webhook_outcome(const net::http_client_result& result);

class notifier {
 public:
  // `pubsub` may be null (a pubsub delivery then fails for good). `io` runs the webhooks.
  notifier(broker::broker& broker, pubsub::service* pubsub, boost::asio::io_context& io);
  notifier(const notifier&) = delete;
  notifier& operator=(const notifier&) = delete;

  // One attempt; `done` is called exactly once (see above for where).
  void send(const delivery& d, std::function<void(send_outcome)> done);

 private:
  broker::broker& broker_;
  pubsub::service* pubsub_;
  net::http_client http_;
};

}  // namespace nimbus::alerts
