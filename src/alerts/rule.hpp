#pragma once
// An alert rule (issue 15): which readings it watches, the condition that raises its alerts and
// the one that clears them, how alerts escalate, and where notifications go. Parsed from the
// JSON of /api/alert-rules and checked whole: a bad rule is one refusal naming the field ("
// condition.clear.value", "notifications[1].url") and the reason, and nothing is stored.
//
// The JSON (every field but name, selection.field and condition.type optional):
//   {"name": "high_temperature",            the alert type: [A-Za-z0-9_.-]{1,128}
//    "description": "...", "severity": "major", "enabled": true,
//    "selection": {"field": "temperature", "measurement": "sensor_data", "database": "nimbus",
//                  "devices": ["dev1"], "groups": ["floor-1"], "tags": {"site": "a"}},
//    "condition": {"type": "threshold", "operator": ">", "value": 35, "for": "1m",
//                  "clear": {"operator": "<", "value": 33, "for": "2m"}}
//               | {"type": "range", "lo": 10, "hi": 30, "for": "30s",
//                  "clear": {"lo": 11, "hi": 29, "for": "1m"}}          raise outside [lo, hi]
//               | {"type": "ewma", "half_life": 20, "k": 4, "warmup": 30, "clear": {"for": "1m"}}
//               | {"type": "mad", "window": 60, "k": 3, "floor": 0.01, "warmup": 30}
//               | {"type": "flatline", "count": 10}                   N equal readings in a row
//               | {"type": "no_data", "for": "10m"}                   per series
//               | {"type": "offline", "for": "5m"},                   from lifecycle events
//    "escalations": [{"severity": "critical", "value": 45}, {"severity": "critical", "after":
//    "1h"}], "notifications": [
//      {"type": "mqtt", "topic": "nimbus/alerts/{device_id}/{type}", "qos": 1},
//      {"type": "webhook", "url": "https://h/x", "secret": "s", "timeout": "5s", "max_attempts":
//      8},
//      {"type": "pubsub", "topic": "alerts"}],                 each may add "events": ["raised",
//      ...]
//   }
// Durations are Go's ("90s", "1m30s", "2h", "500ms") or whole seconds as a number.
// Templates (mqtt topic, webhook URL) take {device_id}, {type}, {severity}, {rule}, {event},
// {status}; any other {name}, or a brace left open, is a bad template.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace nimbus::alerts {

// ThingsBoard's severities, ordered upward: escalation only ever moves right.
enum class severity : std::uint8_t { indeterminate, warning, minor, major, critical };
std::string_view to_string(severity s);                         // "indeterminate" ... "critical"
std::optional<severity> parse_severity(std::string_view text);  // those names, lower case

enum class comparison : std::uint8_t { gt, ge, lt, le };
std::string_view to_string(comparison c);  // ">", ">=", "<", "<="
std::optional<comparison> parse_comparison(std::string_view text);
bool holds(comparison c, double value, double threshold);

using duration = std::chrono::milliseconds;

// Which points a rule sees: one numeric field, by measurement, database, device, registry
// group (membership through the engine's group lookup, ancestors included) and tags. A point
// belongs to the device named by its device tag (engine_settings::device_tag).
struct selection {
  std::string field;                                      // required (not for offline)
  std::string measurement;                                // empty: any
  std::string database;                                   // empty: engine_settings' default
  std::vector<std::string> devices;                       // empty: every device
  std::vector<std::string> groups;                        // empty: no group needed
  std::vector<std::pair<std::string, std::string>> tags;  // all must match; sorted by key

  friend bool operator==(const selection&, const selection&) = default;
};

enum class condition_kind : std::uint8_t {
  threshold,
  range,
  ewma,
  mad,
  flatline,
  no_data,
  offline
};
std::string_view to_string(condition_kind k);  // the JSON's "type"

// A rule's condition. Which members count depends on `kind`; the parser fills the defaults.
// Ordered so that what a reading of any kind but range reads lies in the first 48 bytes (the
// engine keeps a copy at the start of a cache line); the rest is read when a phase changes.
struct condition {
  condition_kind kind = condition_kind::threshold;
  // threshold: raise while `value op threshold`; range: while outside [lo, hi].
  comparison op = comparison::gt;
  // threshold/range: the clear condition. Default: the raise condition no longer holding
  // (threshold: the negated operator at the same value; range: inside [lo, hi]).
  comparison clear_op = comparison::le;
  // ewma: half-life in points, score threshold k (|z| > k is an anomaly), warm-up in points.
  // mad: window in points, k (|x - median| > k * 1.4826 * max(MAD, floor)), warm-up in points.
  std::uint32_t warmup = 30;
  double threshold = 0;
  double clear_threshold = 0;
  double k = 3;
  double floor = 0;
  std::uint32_t window = 60;
  // flatline: this many equal readings in a row raise it; a different one clears.
  std::uint32_t count = 10;
  double lo = 0, hi = 0;
  double clear_lo = 0, clear_hi = 0;
  // How long the raise condition must hold before the alert is raised ("for"; 0: at once). For
  // no_data and offline: the silence or the time offline that raises.
  duration pending{0};
  // How long the clear condition must hold (every kind but no_data/offline, which clear at the
  // first point or connection).
  duration clear_pending{0};
  double half_life = 20;

  friend bool operator==(const condition&, const condition&) = default;
};

// A step up in severity: when the reading is past `value` (threshold: by the rule's operator;
// ewma/mad: |score| >= value), or when the alert has been open `after` long.
struct escalation {
  severity to = severity::critical;
  std::optional<double> value;
  std::optional<duration> after;

  friend bool operator==(const escalation&, const escalation&) = default;
};

enum class alert_event : std::uint8_t { raised, updated, escalated, acknowledged, cleared };
std::string_view to_string(alert_event e);
std::optional<alert_event> parse_alert_event(std::string_view text);

enum class notification_kind : std::uint8_t { mqtt, webhook, pubsub };

struct notification {
  notification_kind kind = notification_kind::mqtt;
  std::string target;  // mqtt: topic template; webhook: URL template; pubsub: topic id
  int qos = 1;         // mqtt: 0 or 1
  std::string secret;  // webhook: HMAC-SHA256 key (never shown back; "secret_set": true)
  duration timeout{5000};
  std::uint32_t max_attempts = 8;
  // Which events are sent (a bit per alert_event); default raised, escalated, acknowledged,
  // cleared (updates are not sent).
  std::uint8_t events = 0b11101;

  bool sends(alert_event e) const { return (events >> static_cast<int>(e)) & 1; }
  friend bool operator==(const notification&, const notification&) = default;
};

struct rule {
  std::string name;  // the alert type
  std::string description;
  severity level = severity::major;
  bool enabled = true;
  selection select;
  condition when;
  std::vector<escalation> escalations;  // in order of severity
  std::vector<notification> notifications;

  friend bool operator==(const rule&, const rule&) = default;
};

// 400 {"error":{"field","message"}}.
struct rule_error {
  std::string field;  // JSON path of the culprit ("condition.operator", "notifications[0].url"),
                      // "" for the body as a whole
  std::string message;
};

std::variant<rule, rule_error> parse_rule(std::string_view json);
// The rule as JSON, as parse_rule takes it back (secrets left out, "secret_set" instead).
std::string to_json(const rule& r);

// Go-style durations ("1m30s", "500ms", "2h"), or whole seconds as a JSON number.
std::optional<duration> parse_duration(std::string_view text);
std::string format_duration(duration d);  // "1m30s"

// Fills a template's {placeholders}; nullopt names the first problem (unknown name, open brace).
struct template_values {
  std::string_view device_id, type, severity, rule, event, status;
};
std::optional<std::string> check_template(std::string_view text);  // the problem, if any
std::string expand_template(std::string_view text, const template_values& values);

// The tutorial's rule (§5.2): temperature > 35 on every device, cleared at <= 35; disabled
// until enabled (POST /api/alert-rules/high_temperature/enable or alerts.tutorial_rule).
rule tutorial_rule();

}  // namespace nimbus::alerts
