#pragma once
// The alerts service (issue 15): the run-time side of the alert engine. It owns the engine and
// runs it on a thread of its own, fed by
//   - the time-series store's durable batches (observe(), on the WAL committer's thread): only
//     points with a field some enabled rule watches are copied into a bounded queue, and past
//     max_queued_points the rest are counted as dropped, never waited for;
//   - lifecycle events from the bus ($aws/events/presence/+/+), for offline rules;
//   - the registry's group changes (on_groups_changed), after which group memberships are
//     asked again;
//   - the engine's own deadlines, on the injected clock;
//   - the API's calls (alerts_api.hpp), each answered through a callback.
// What changes is stored through the write queue (tables alert_rules, alerts, alert_states,
// alert_outbox, alert_meta): an event's alert row and its notifications' outbox rows in one
// write; detector states with any event, at once when a pending period starts or ends (the
// engine's timers changed), and every checkpoint_interval otherwise. An API change is answered
// once its write is durable, a read once every write before it is, so nobody is told of a
// state a kill -9 could take back. Notifications leave from the durable outbox (notifier.hpp,
// outbox.hpp). A write that fails leaves memory ahead of the database: changes are then refused
// (unavailable) until a restart reloads the truth, as the registry and shadows do.
// Owned by the server; every public member may be called from any thread.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "alerts/engine.hpp"
#include "alerts/notifier.hpp"
#include "alerts/outbox.hpp"
#include "alerts/rule.hpp"
#include "broker/broker.hpp"
#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "net/http_server.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"
#include "tsdb/store.hpp"

namespace nimbus::registry {
class registry;
}
namespace nimbus::pubsub {
class service;
}

namespace nimbus::alerts {

class alerts_api;

struct service_settings {
  engine_settings engine;
  bool tutorial_rule = false;  // alerts.tutorial_rule: high_temperature enabled at start
  std::size_t max_queued_points = 100'000;
  std::chrono::milliseconds checkpoint_interval{5000};
  // Cleared alerts are kept (loaded at start, listed with status=cleared) this long.
  std::chrono::milliseconds cleared_retention{std::chrono::hours(24 * 7)};
  // Retries of a notification: full-jitter backoff from `base`, at most `cap` apart.
  core::backoff_options retry{std::chrono::milliseconds(1000), std::chrono::milliseconds(300'000)};
  std::size_t max_outbox = 100'000;      // deliveries waiting; past it an event's are failed
  std::size_t max_sending = 64;          // attempts in flight at once
  std::size_t max_waiting_calls = 1024;  // API calls waiting for the thread; past it 503
};

// Why an operation was refused. Only alerts_api knows the HTTP status of each.
enum class refusal_kind : std::uint8_t {
  invalid,         // 400
  not_found,       // 404
  already_exists,  // 409
  conflict,        // 409: the lifecycle forbids it
  unavailable,     // 503: stopping, too busy, or an earlier write failed
  failed,          // 500: the change could not be stored
};
struct refusal {
  refusal_kind kind = refusal_kind::failed;
  std::string field;  // as rule_error names it; "" for the request as a whole
  std::string message;
};
template <class T>
using result = std::variant<T, refusal>;

struct notification_counts {
  std::uint64_t sent = 0;
  std::uint64_t failed = 0;
  std::string last_error;
};

// A rule as the API shows it: the rule and its status.
struct rule_view {
  rule r;
  bool created = false;  // put_rule: there was no rule of that name
  std::int64_t created_ms = 0, updated_ms = 0;
  std::vector<std::string> unknown_devices;  // selection.devices that are no registry thing
  std::vector<std::string> unknown_groups;   // selection.groups that are no registry group
  std::uint64_t states = 0;                  // (rule, series) states held
  notification_counts notifications;
};

// Who may call the API: a refusal to send, or nullopt (the server's rule for /api/, called on
// the HTTP loop with the head alone for requests with a body). And who is calling, for an
// alert's history ("" -> "api").
using api_auth =
    std::function<std::optional<net::http_response>(const net::http_request&, bool write)>;
using api_identity = std::function<std::string(const net::http_request&)>;

class service {
 public:
  // `devices` (group memberships, unknown devices) and `pubsub` (pubsub notifications) may be
  // null. `io` runs the webhooks' HTTP client. Everything passed outlives the service.
  service(broker::broker& broker, storage::write_queue& writer, core::clock& clock,
          registry::registry* devices, pubsub::service* pubsub, boost::asio::io_context& io,
          service_settings settings);
  ~service();  // stop()
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  static void migrate(storage::database& db);
  // Start-up, before start(): the rules (the tutorial's seeded on a fresh install), the open and
  // recently cleared alerts, the next id, the detector states and the outbox. Throws
  // storage::database_error as migrations do.
  void restore(storage::database& db);
  // The thread, the presence subscription and the registry hook (registry::on_groups_changed,
  // a single slot: the service takes it).
  void start();
  // Answers the calls already queued, saves every detector state, stops the thread and waits
  // for its last write; later calls are answered unavailable. Before the broker, the write
  // queue and `io` go.
  void stop();

  // The time-series store's observer (tsdb::store::set_observer; the store must not call it
  // once the service is gone). Never blocks.
  void observe(const tsdb::written_batch& batch);

  // /api/alert-rules and /api/alerts (alerts_api.hpp) on `router`, once; this must outlive the
  // router's use.
  void install(net::http_router& router, api_auth auth, api_identity identify = nullptr);

  // ---- operations, answered on the service's or the write queue's thread (alerts_api).
  enum class put_mode : std::uint8_t { create, replace };
  using rule_done = std::function<void(result<rule_view>)>;
  void list_rules(std::function<void(result<std::vector<rule_view>>)> done);
  void get_rule(std::string name, rule_done done);
  // create: already_exists when the name is taken. replace: creates or replaces; a webhook
  // whose `secret_omitted` entry is true (the body had no "secret") keeps the stored secret of
  // the webhook with the same URL (else of the same position).
  void put_rule(rule r, put_mode mode, std::vector<bool> secret_omitted, rule_done done);
  void delete_rule(std::string name, std::function<void(std::optional<refusal>)> done);
  void enable_rule(std::string name, bool enabled, rule_done done);
  // filter.limit alerts at most, ascending ids after filter.after_id.
  void list_alerts(alert_filter filter, std::function<void(result<std::vector<alert>>)> done);
  void get_alert(std::uint64_t id, std::function<void(result<alert>)> done);
  enum class alert_action : std::uint8_t { acknowledge, clear };
  void act(std::uint64_t id, alert_action action, std::string who, std::string note,
           std::function<void(result<alert>)> done);

  // nimbus_alerts_* for /metrics.
  std::string prometheus_text() const;

  // Each lifecycle event ("raised", "escalated", "acknowledged", "cleared") once durable, with
  // the alert as GET /api/alerts lists it (JSON): the dashboard's live view. Set before start();
  // called on the service's thread, so it must not block.
  using event_listener = std::function<void(std::string_view event, std::string alert_json)>;
  void set_event_listener(event_listener listener) { listener_ = std::move(listener); }
  // Open alerts per device, as of the last stored events. Any thread.
  std::map<std::string, std::size_t> open_by_device() const;

  // ---- for tests. Wakes the thread (a manual clock moved); the thread also wakes by itself at
  // least once a second.
  void wake();
  // Waits until everything queued before the call is processed and stored (false: timed out).
  bool sync(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  struct inbox;  // shared with callbacks that may outlive the service (bus, registry, I/O)
  struct rule_entry {
    rule r;
    std::int64_t created_ms = 0, updated_ms = 0;
  };
  struct inputs;

  // Hands `task` to the thread (until it is gone) from any thread.
  static void hand_back(const std::shared_ptr<inbox>& box, std::function<void()> task);
  void run();
  void iterate(inputs& work);
  // A lifecycle event (the session is its sessionIdentifier; at_ms 0: now).
  void on_presence(const std::string& device, const std::string& session, bool connected,
                   std::int64_t at_ms);
  std::int64_t next_wake_ms(std::int64_t now) const;

  // Queues `task` for the thread; answers `done` unavailable when it cannot. The task first
  // settles the rule changes staged before it (settle_rule_changes), unless it is a change of
  // rule `changed_rule` and none of those is.
  template <class Done, class Task>
  void call(Done done, Task task, std::optional<std::string> changed_rule = std::nullopt);

  // ---- the thread's work (service.cpp)
  // A rule change (put, enable, delete) is staged, and reaches memory, the engine and its
  // answer once its rows are durable: the changes queued in one pass share that wait (and the
  // write queue's batch), applied in their order by settle_rule_changes() at the end of the
  // pass, or before any other call, or before another change of the same rule.
  struct staged_change {
    std::string rule;
    storage::ticket ticket;
    std::function<void(bool stored)> apply;
  };
  void stage_change(std::string rule_name, storage::ticket t, std::function<void(bool)> apply);
  void settle_rule_changes();
  bool is_change_staged(std::string_view rule_name) const;
  void apply_rule(rule r, bool created, rule_done done);
  // Blocks until `t` is durable; false when its write failed (none: true at once).
  bool wait_stored(storage::ticket t);
  void do_put(rule r, put_mode mode, const std::vector<bool>& secret_omitted, rule_done& done);
  void do_delete(const std::string& name, std::function<void(std::optional<refusal>)>& done);
  void do_act(std::uint64_t id, alert_action action, const std::string& who,
              const std::string& note, std::function<void(result<alert>)>& done);
  rule_view view_of(const rule_entry& entry) const;
  alert shown(alert a) const;  // with its rule's threshold
  std::vector<std::string> groups_of(std::string_view device) const;
  // The fields points are queued for (what observe() filters by): counted per field over the
  // enabled rules, so a rule change costs a lookup, not a walk of every rule; a new filter is
  // published only when a field is first or no longer watched.
  void update_filter();  // counts every rule again (restore)
  void change_watched(const rule* before, const rule* after);
  void publish_filter();
  void send_due(std::int64_t now);
  void on_sent(const std::string& key, const send_outcome& outcome);
  void on_stored(bool failed, std::vector<delivery> deliveries,
                 std::vector<std::pair<std::string, std::string>> announced);
  void count_open_by_device();
  std::optional<refusal> refuse_changes() const;
  // Answers `value` once every write so far is durable (reads), or once `t` is and did not fail.
  template <class T>
  void answer_after_writes(std::function<void(result<T>)> done, T value);
  template <class T>
  void answer_when_stored(storage::ticket t, std::function<void(result<T>)> done, T value);

  // ---- storage (service_storage.cpp)
  // Stores what changed: the engine's events (alerts and outbox rows), the staged rows, and the
  // detector states when due (`force_states`: now). Returns the write's ticket (none: nothing).
  storage::ticket persist(std::int64_t now, bool force_states);
  void note_state(saved_state s);
  void forget_states(const std::string& rule_name);  // its states start afresh
  void stage_rule_row(const rule_entry& entry);
  void stage_cleanup(std::int64_t now);
  void write_and_wait(std::vector<std::function<void(storage::database&)>> rows);

  broker::broker& broker_;
  storage::write_queue& writer_;
  core::clock& clock_;
  registry::registry* devices_;
  const service_settings settings_;
  std::shared_ptr<inbox> inbox_;

  // The service thread's (restore() before it starts).
  engine engine_;
  outbox outbox_;
  notifier notifier_;
  std::map<std::string, rule_entry, std::less<>> rules_;
  std::vector<staged_change> staged_changes_;
  std::map<std::string, std::size_t, std::less<>> watched_fields_;  // enabled rules per field
  std::set<std::string, std::less<>> unreadable_;     // stored rules this version could not parse
  std::map<std::string, rule, std::less<>> retired_;  // deleted, their last events not stored
  std::map<std::string, notification_counts, std::less<>> notified_;
  // The session each connected device connected with last (its disconnects count, older ones'
  // do not), kept only while an offline rule is enabled; the thread's.
  std::unordered_map<std::string, std::string> connected_sessions_;
  std::map<std::pair<std::string, std::string>, std::string> unsaved_states_;
  std::vector<std::function<void(storage::database&)>> staged_;
  std::vector<std::function<void()>> barriers_;  // sync(): after this iteration's write
  storage::ticket last_ticket_;
  bool is_store_failed_ = false;
  std::int64_t next_checkpoint_ms_ = 0;
  std::int64_t last_cleanup_ms_ = 0;
  std::uint64_t timers_at_save_ = 0;
  std::size_t sending_ = 0;
  std::size_t storing_deliveries_ = 0;  // written, not yet durable

  event_listener listener_;
  mutable std::mutex open_by_device_mutex_;
  std::map<std::string, std::size_t> open_by_device_;

  broker::bus_subscription presence_;
  std::thread thread_;
  std::unique_ptr<alerts_api> api_;

  // Figures for /metrics, published by the thread.
  struct figures {
    std::atomic<std::uint64_t> evaluated{0}, late{0}, non_finite{0}, states{0}, states_refused{0},
        open{0}, sent{0}, failed{0}, retried{0}, outbox{0}, rules{0};
    std::atomic<std::uint64_t> events[5]{};  // per alert_event
  };
  figures figures_;
};

}  // namespace nimbus::alerts
