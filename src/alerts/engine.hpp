#pragma once
// The alert engine (issue 15), sans-I/O: rules in, points and presence events in, alert events
// out. Every numeric field value the time-series store accepts is offered to on_point(); an
// index from field name (then device) to the rules selecting it finds the few rules that care,
// and each (rule, series) keeps a small state: the pending start of a threshold, an EWMA's mean
// and variance, a MAD window (sorted: O(log w) median and MAD per point), a flat-line run. Timers
// (pending periods, no-data, offline, escalation after a time) sit on a deadline wheel that
// advance(now) turns: nothing polls the store. Time is the caller's (`now_ms`: the server's clock,
// or the case files' script), and the detectors run on it, the time a reading arrived: a point's
// own time only orders a series' readings (an older one is late, not evaluated), so a device
// whose clock is off, or a batch of old points, cannot skip a pending period.
//
// Alerts: one open alert per (device, type); a raise while one is open updates its value,
// count and peak (and severity, only upward: that is an escalation). Lifecycle: active ->
// acknowledged -> cleared, or active -> cleared -> acknowledged; each step in the alert's
// history with who and when ("rule" when it cleared itself). Missing data never clears a
// threshold alert. NaN, infinities and non-numeric fields never reach a detector.
//
// Durability is the owner's: take_events() hands over what changed (the service stores alerts
// and sends notifications), take_dirty_states() the per-series states changed since the last
// call (checkpointed), and restore_*() puts them back after a restart. Not thread-safe: one
// thread (the alerts service's) calls everything.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alerts/rule.hpp"
#include "tsdb/line_protocol.hpp"

namespace nimbus::alerts {

struct engine_settings {
  std::string default_database = "nimbus";  // a selection without a database watches this one
  std::string device_tag = "device_id";     // the tag naming a point's device
  std::size_t max_states = 1'000'000;       // (rule, series) states kept; past it, counted
  std::size_t max_history = 64;             // lifecycle steps kept per alert (the oldest go)
  std::size_t max_cleared = 10'000;  // cleared alerts kept in memory (the oldest cleared go first)
};

enum class alert_status : std::uint8_t { active, acknowledged, cleared };
std::string_view to_string(alert_status s);  // "active", "acknowledged", "cleared"

// One lifecycle step of an alert.
struct history_entry {
  std::int64_t at_ms = 0;
  alert_event what = alert_event::raised;  // raised, escalated, acknowledged, cleared
  std::string who;                         // "rule" for the engine's own steps
  std::string note;
  double value = 0;
  severity level = severity::major;
};

struct alert {
  std::uint64_t id = 0;  // from 1, never reused
  std::string type;      // the rule's name
  std::string device_id;
  std::string series;  // the series key ("sensor_data,device_id=dev1"); the device for offline
  std::string field;
  severity level = severity::major;
  // cleared alerts keep `acknowledged` apart: cleared then acknowledged is still "cleared".
  alert_status status = alert_status::active;
  bool acknowledged = false;
  double value = 0;  // the latest reading that raised or repeated it
  double peak = 0;   // the most extreme one (by the rule's direction; |score| for anomalies)
  std::optional<double> threshold;  // threshold: its value; range: nullopt (see lo/hi in rule)
  std::uint64_t count = 0;          // readings that raised or repeated it
  std::int64_t raised_ms = 0, updated_ms = 0;
  std::optional<std::int64_t> acknowledged_ms, cleared_ms;
  std::string acknowledged_by, cleared_by;
  std::vector<history_entry> history;

  bool open() const { return status != alert_status::cleared; }
};

// What the engine did, in order: the alert as it is after the step.
struct event {
  alert_event what = alert_event::raised;
  alert snapshot;
  std::string rule;  // the rule's name (== snapshot.type)
};

// A (rule, series) state as bytes, for checkpoints. `data` empty: the state is gone.
struct saved_state {
  std::string rule;
  std::string series;
  std::string data;
};

enum class action_result : std::uint8_t { done, not_found, conflict };

struct alert_filter {
  std::optional<alert_status> status;  // nullopt: open ones (active, acknowledged)
  bool all = false;                    // every status, cleared included
  std::string device_id, type;         // empty: any
  std::optional<severity> min_severity;
  std::uint64_t after_id = 0;  // paging: ids greater than this, ascending
  std::size_t limit = 100;
};

struct engine_counters {
  std::uint64_t points = 0;      // field values offered
  std::uint64_t evaluated = 0;   // (rule, value) evaluations
  std::uint64_t late = 0;        // values older than their series' last, not evaluated
  std::uint64_t non_finite = 0;  // NaN/inf/non-numeric, skipped
  std::uint64_t states = 0;      // (rule, series) states held now
  std::uint64_t states_refused = 0;
  std::uint64_t timers = 0;  // deadlines waiting now
  // Timers armed or cancelled but no_data's (which every reading moves): a pending period began
  // or ended, what a checkpoint should not wait for. Only ever grows.
  std::uint64_t timer_changes = 0;
};

class engine {
 public:
  explicit engine(engine_settings settings);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // ---- rules. put_rule creates or replaces (a replaced rule's series states start afresh when
  // its selection or condition changed; its open alerts stay). Disabling drops its states and
  // pending starts, keeps open alerts; deleting clears its open alerts (who "rule", note "rule
  // deleted").
  void put_rule(rule r, std::int64_t now_ms);
  bool remove_rule(std::string_view name, std::int64_t now_ms);
  const rule* find_rule(std::string_view name) const;
  std::size_t states_of(std::string_view name) const;  // its (rule, series) states held now
  std::vector<const rule*> rules() const;              // by name

  // The registry's groups of a device, ancestors included. Set before points arrive; after a
  // membership change call groups_changed() and every cached answer is asked again.
  using group_lookup = std::function<std::vector<std::string>(std::string_view device_id)>;
  void set_group_lookup(group_lookup lookup);
  // A device that left every group of a rule stops being watched by it at once: its states go,
  // and an alert it holds open is cleared (who "rule", note "no longer selected").
  void groups_changed(std::int64_t now_ms);

  // ---- input. A point the store accepted in `database`: each numeric field value (float,
  // integer, unsigned; booleans and strings skipped) goes to the rules selecting it.
  // `series_key`: tsdb::series_key(p) when the caller has it (else it is made when needed);
  // `series_id`: the store's id of that key, with it (else tsdb::series_id of the key).
  void on_point(std::string_view database, const tsdb::point& p, std::int64_t now_ms,
                std::string_view series_key = {}, std::optional<std::uint64_t> series_id = {});
  // Whether any enabled rule is an offline rule (presence events matter).
  bool has_presence_rules() const;
  // A hint while point `i` of a batch is offered, given its points and the store's ids of their
  // series: the memory points i + 8, i + 4, i + 2 and i + 1 read in turn (the id's slot in the
  // index, the series' entry, the point's fields, its rules and states, a MAD window's
  // readings) is fetched, each from what the earlier hints brought in.
  void prefetch(std::span<const tsdb::point> points, std::span<const std::uint64_t> series_ids,
                std::size_t i) const;
  // A lifecycle event: the device (MQTT client id) connected or disconnected at `at_ms`.
  void on_presence(std::string_view device_id, bool connected, std::int64_t at_ms);
  // Fires every deadline <= now_ms (pending periods, no-data, offline, escalation after).
  void advance(std::int64_t now_ms);
  std::optional<std::int64_t> next_deadline() const;

  // ---- operators. not_found: no such alert; conflict: the lifecycle forbids it (acknowledging
  // an acknowledged alert, clearing a cleared one).
  action_result acknowledge(std::uint64_t id, std::string_view who, std::string_view note,
                            std::int64_t now_ms);
  action_result clear(std::uint64_t id, std::string_view who, std::string_view note,
                      std::int64_t now_ms);

  // ---- reads
  const alert* find(std::uint64_t id) const;
  std::vector<alert> list(const alert_filter& filter) const;
  std::size_t open_count() const;
  std::map<std::string, std::size_t> open_by_device() const;  // open alerts per device
  engine_counters counters() const;

  // ---- what changed, for the owner to store and send
  std::vector<event> take_events();
  // urgent_only: those whose timers changed (pending periods; engine_counters::timer_changes),
  // what a checkpoint must not wait for; the others stay dirty. States gone go either way.
  std::vector<saved_state> take_dirty_states(bool urgent_only = false);
  bool has_dirty_states() const;

  // ---- after a restart, before any input: the alerts (open ones and recently cleared), the
  // next id, and the checkpointed states (those of rules no longer present are ignored).
  void restore_alert(alert a);
  void restore_next_id(std::uint64_t next_id);
  std::uint64_t next_id() const;
  void restore_state(const saved_state& state);
  // After the restore_*() calls, at start-up: the server heard nothing while it was down, so
  // silences (no_data) are timed from now, and every device an offline rule knew as connected
  // must connect again within the rule's `for` (a disconnect while the server was down was never
  // announced; a device that never comes back is then reported).
  void resume(std::int64_t now_ms);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nimbus::alerts
