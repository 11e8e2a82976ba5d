#pragma once
// The notifications waiting to go out (issue 15). Each alert event a rule notifies about becomes
// one `delivery` per notification, stored as a row of `alert_outbox` in the same write as the
// alert, and handed to the outbox once that write is durable; the row goes when the delivery is
// done or given up, so a kill -9 sends again at most what was in flight (each delivery carries
// its event id for the receiver to deduplicate). The outbox only schedules: which deliveries are
// due, and after an attempt whether to retry (exponential backoff with full jitter,
// core::backoff), stop, or give up at max_attempts; the service's thread sends them (notifier)
// and stores what the outbox decides. Sans-I/O, time passed in; one thread (the service's).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "alerts/rule.hpp"
#include "core/backoff.hpp"

namespace nimbus::storage {
class database;
}

namespace nimbus::alerts {

// One notification of one alert event, whole: what the row holds, the rule's settings resolved
// at the event (so a rule changed or deleted since still sends what it promised).
struct delivery {
  std::string key;       // "<event id>/<notification index>": the row's key
  std::string event_id;  // "<alert id>-<12 hex digits>": the payload's and X-Nimbus-Event-Id
  std::string rule;
  std::uint32_t index = 0;  // of the rule's notification
  notification_kind kind = notification_kind::mqtt;
  std::string target;  // expanded: the MQTT topic, the webhook's URL, the Pub/Sub topic id
  int qos = 1;
  std::string secret;  // webhook: the HMAC key
  std::chrono::milliseconds timeout{5000};
  std::uint32_t max_attempts = 8;
  std::map<std::string, std::string> attributes;  // Pub/Sub: type, severity, device_id, event
  std::string payload;                            // the JSON body
  std::uint32_t attempts = 0;                     // made so far
  std::int64_t next_attempt_ms = 0;
};

// How one attempt went (the notifier's verdict).
enum class send_verdict : std::uint8_t { sent, retry, failed };
struct send_outcome {
  send_verdict verdict = send_verdict::sent;
  std::string error;  // for retry and failed: "HTTP 503", "connection refused", ...
};

// What the outbox decided after an attempt, for the owner to store and count.
struct settlement {
  enum class action : std::uint8_t { unknown, sent, retry, gave_up } what = action::unknown;
  std::string key;
  std::string rule;
  std::uint32_t attempts = 0;
  std::int64_t next_attempt_ms = 0;  // retry
  std::string error;                 // retry, gave_up
};

class outbox {
 public:
  explicit outbox(core::backoff_options retry) : retry_(retry) {}

  // A durable delivery, due at its next_attempt_ms (at once for a new one). A key already held
  // is ignored.
  void add(delivery d);
  // Up to `max` deliveries due at `now_ms`, earliest first, now in flight until settled.
  std::vector<const delivery*> take_due(std::int64_t now_ms, std::size_t max);
  // The attempt of `key` ended: removed (sent, or given up: `failed`, or retries left none),
  // or scheduled again after a backoff.
  settlement settle(const std::string& key, const send_outcome& outcome, std::int64_t now_ms);
  // The earliest next_attempt_ms of those not in flight.
  std::optional<std::int64_t> next_due() const;

  std::size_t size() const { return entries_.size(); }
  std::size_t in_flight() const { return in_flight_; }

  // ---- the rows (table alert_outbox, created by the service's migration)
  static std::vector<delivery> load(storage::database& db);
  static void insert_row(storage::database& db, const delivery& d);
  static void update_row(storage::database& db, const std::string& key, std::uint32_t attempts,
                         std::int64_t next_attempt_ms);
  static void delete_row(storage::database& db, const std::string& key);

 private:
  struct entry {
    delivery d;
    core::backoff delays;
    bool is_in_flight = false;
  };

  core::backoff_options retry_;
  std::map<std::string, entry> entries_;
  std::set<std::pair<std::int64_t, std::string>> schedule_;  // (due, key), not in flight
  std::size_t in_flight_ = 0;
};

}  // namespace nimbus::alerts
