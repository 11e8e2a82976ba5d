// What the alerts service stores and loads (service.hpp): the tables, restoring at start, and
// the writes of the service's thread.
//
//   alert_rules  (name, json, created_ms, updated_ms)  the rule as to_json writes it, plus its
//                                                       webhooks' secrets
//   alerts       (id, type, device_id, json, status, updated_ms)  the whole alert, history
//                (updated_ms: its last step of any kind, raise, update, ack or clear)
//                                                       included (alert_json.hpp's row)
//   alert_states (rule, series, data)                  detector states (engine::saved_state)
//   alert_outbox (key, event_id, rule, notification, kind, target, options, payload, attempts,
//                 next_attempt_ms)                     notifications not yet sent (outbox.hpp)
//   alert_meta   (key, value)                          next_id; tutorial_seeded
#include <algorithm>
#include <boost/json.hpp>
#include <charconv>

#include <future>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "alerts/alert_json.hpp"
#include "alerts/service.hpp"
#include "tsdb/line_protocol.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

constexpr std::string_view tutorial_name = "high_temperature";
constexpr std::int64_t cleanup_interval_ms = 3'600'000;

// The row's JSON: what to_json writes, with the webhooks' secrets (which to_json leaves out).
std::string stored_json(const rule& r) {
  const std::string shown = to_json(r);
  bool has_secret = false;
  for (const auto& n : r.notifications) has_secret = has_secret || !n.secret.empty();
  if (!has_secret) return shown;
  json::value parsed = json::parse(shown);
  auto* notifications = parsed.as_object().if_contains("notifications");
  if (notifications == nullptr || !notifications->is_array()) return shown;
  auto& list = notifications->as_array();
  for (std::size_t i = 0; i < r.notifications.size() && i < list.size(); ++i)
    if (!r.notifications[i].secret.empty() && list[i].is_object())
      list[i].as_object()["secret"] = r.notifications[i].secret;
  return to_text(parsed);
}

void upsert_alert(storage::database& db, const alert& a) {
  db.cached(
        "INSERT OR REPLACE INTO alerts (id, type, device_id, json, status, updated_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)")
      .bind(1, static_cast<std::int64_t>(a.id))
      .bind(2, a.type)
      .bind(3, a.device_id)
      .bind(4, encode_alert(a))
      .bind(5, to_string(a.status))
      // The last step of any kind: cleared alerts are kept `cleared_retention` after it.
      .bind(6, std::max({a.updated_ms, a.cleared_ms.value_or(0), a.acknowledged_ms.value_or(0)}))
      .run();
}

void put_meta(storage::database& db, std::string_view key, std::string_view value) {
  db.cached("INSERT OR REPLACE INTO alert_meta (key, value) VALUES (?, ?)")
      .bind(1, key)
      .bind(2, value)
      .run();
}

}  // namespace

void service::migrate(storage::database& db) {
  db.migrate("alerts", {R"sql(
    CREATE TABLE alert_rules (
      name TEXT PRIMARY KEY,
      json TEXT NOT NULL,
      created_ms INTEGER NOT NULL,
      updated_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE alerts (
      id INTEGER PRIMARY KEY,
      type TEXT NOT NULL,
      device_id TEXT NOT NULL,
      json TEXT NOT NULL,
      status TEXT NOT NULL,
      updated_ms INTEGER NOT NULL
    );
    CREATE INDEX alerts_by_status ON alerts (status, updated_ms);
    CREATE TABLE alert_states (
      rule TEXT NOT NULL,
      series TEXT NOT NULL,
      data BLOB NOT NULL,
      PRIMARY KEY (rule, series)
    ) WITHOUT ROWID;
    CREATE TABLE alert_outbox (
      key TEXT PRIMARY KEY,
      event_id TEXT NOT NULL,
      rule TEXT NOT NULL,
      notification INTEGER NOT NULL,
      kind TEXT NOT NULL,
      target TEXT NOT NULL,
      options TEXT NOT NULL,
      payload TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      next_attempt_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE alert_meta (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    ) WITHOUT ROWID;
  )sql"});
}

void service::write_and_wait(std::vector<std::function<void(storage::database&)>> rows) {
  const storage::ticket t = writer_.submit([rows = std::move(rows)](storage::database& db) {
    for (const auto& row : rows) row(db);
  });
  last_ticket_ = t;
  if (!wait_stored(t))
    throw storage::database_error("the alerts tables could not be written at start");
}

void service::restore(storage::database& db) {
  const std::int64_t now = clock_.unix_millis();
  std::map<std::string, std::string, std::less<>> meta;
  {
    auto rows = db.prepare("SELECT key, value FROM alert_meta");
    while (rows.step()) meta[rows.column_text(0)] = rows.column_text(1);
  }
  {
    auto rows = db.prepare("SELECT name, json, created_ms, updated_ms FROM alert_rules");
    while (rows.step()) {
      const std::string name = rows.column_text(0);
      auto parsed = parse_rule(rows.column_view(1));
      if (const auto* error = std::get_if<rule_error>(&parsed);
          error != nullptr || std::get<rule>(parsed).name != name) {
        // Kept as it is (a newer version may read it); PUT replaces it, DELETE removes it.
        spdlog::error("alert_rule_not_loaded name={} field=\"{}\" error=\"{}\"", name,
                      error != nullptr ? error->field : "name",
                      error != nullptr ? error->message : "does not match the row");
        unreadable_.insert(name);
        continue;
      }
      rules_.insert_or_assign(name, rule_entry{std::get<rule>(std::move(parsed)),
                                               rows.column_int(2), rows.column_int(3)});
    }
  }

  // The tutorial's rule, once per data directory: deleting it is final.
  std::vector<std::function<void(storage::database&)>> start_rows;
  const auto tutorial = rules_.find(tutorial_name);
  if (!meta.contains("tutorial_seeded")) {
    if (tutorial == rules_.end() && !unreadable_.contains(tutorial_name)) {
      rule r = tutorial_rule();
      r.enabled = settings_.tutorial_rule;
      const rule_entry entry{r, now, now};
      rules_.insert_or_assign(r.name, entry);
      start_rows.push_back([json = stored_json(r), name = r.name, now](storage::database& out) {
        out.cached(
               "INSERT OR REPLACE INTO alert_rules (name, json, created_ms, updated_ms) VALUES "
               "(?, ?, ?, ?)")
            .bind(1, name)
            .bind(2, json)
            .bind(3, now)
            .bind(4, now)
            .run();
      });
      spdlog::info("alert_rule_seeded name={} enabled={}", r.name, r.enabled);
    }
    start_rows.push_back([](storage::database& out) { put_meta(out, "tutorial_seeded", "1"); });
  } else if (settings_.tutorial_rule && tutorial != rules_.end() && !tutorial->second.r.enabled) {
    tutorial->second.r.enabled = true;
    tutorial->second.updated_ms = now;
    start_rows.push_back([json = stored_json(tutorial->second.r), name = tutorial->first,
                          now](storage::database& out) {
      out.cached("UPDATE alert_rules SET json = ?, updated_ms = ? WHERE name = ?")
          .bind(1, json)
          .bind(2, now)
          .bind(3, name)
          .run();
    });
    spdlog::info("alert_rule_enabled name={} setting=alerts.tutorial_rule", tutorial_name);
  }
  if (!start_rows.empty()) write_and_wait(std::move(start_rows));
  for (const auto& [name, entry] : rules_) engine_.put_rule(entry.r, now);

  // Open alerts, and the cleared ones still within cleared_retention.
  std::uint64_t next_id = 1;
  if (const auto found = meta.find("next_id"); found != meta.end()) {
    std::uint64_t stored = 0;
    const auto& text = found->second;
    if (std::from_chars(text.data(), text.data() + text.size(), stored).ec == std::errc{})
      next_id = std::max(next_id, stored);  // else MAX(id) below still bounds it
  }
  std::size_t open = 0, cleared = 0;
  {
    auto rows = db.prepare(
        "SELECT id, json FROM alerts WHERE status != 'cleared' OR updated_ms >= ? ORDER BY id");
    rows.bind(1, now - settings_.cleared_retention.count());
    while (rows.step()) {
      auto a = decode_alert(rows.column_view(1));
      if (!a) {
        spdlog::error("alert_not_loaded id={} reason=\"unreadable row\"", rows.column_int(0));
        continue;
      }
      next_id = std::max(next_id, a->id + 1);
      (a->open() ? open : cleared) += 1;
      engine_.restore_alert(std::move(*a));
    }
    auto highest = db.prepare("SELECT MAX(id) FROM alerts");
    if (highest.step() && !highest.column_is_null(0))
      next_id = std::max(next_id, static_cast<std::uint64_t>(highest.column_int(0)) + 1);
  }
  engine_.restore_next_id(next_id);
  count_open_by_device();

  std::size_t states = 0;
  {
    auto rows = db.prepare("SELECT rule, series, data FROM alert_states");
    while (rows.step()) {
      saved_state s{rows.column_text(0), rows.column_text(1), rows.column_text(2)};
      const auto found = rules_.find(s.rule);
      if (found == rules_.end() || !found->second.r.enabled || s.data.empty()) continue;
      engine_.restore_state(s);
      ++states;
    }
  }
  // Restoring is not a change: nothing of it is written again; what resume() changes is.
  engine_.take_dirty_states();
  engine_.resume(now);
  auto pending = outbox::load(db);
  const std::size_t waiting = pending.size();
  for (auto& d : pending) outbox_.add(std::move(d));

  update_filter();
  timers_at_save_ = engine_.counters().timer_changes;
  next_checkpoint_ms_ = now + settings_.checkpoint_interval.count();
  last_cleanup_ms_ = now - cleanup_interval_ms;  // the first iteration drops expired rows
  spdlog::info(
      "alerts_restored rules={} unreadable_rules={} open_alerts={} cleared_alerts={} states={} "
      "outbox={} next_id={}",
      rules_.size(), unreadable_.size(), open, cleared, states, waiting, next_id);
}

void service::stage_rule_row(const rule_entry& entry) {
  staged_.push_back([name = entry.r.name, json = stored_json(entry.r), created = entry.created_ms,
                     updated = entry.updated_ms](storage::database& db) {
    db.cached(
          "INSERT OR REPLACE INTO alert_rules (name, json, created_ms, updated_ms) VALUES (?, ?, "
          "?, ?)")
        .bind(1, name)
        .bind(2, json)
        .bind(3, created)
        .bind(4, updated)
        .run();
  });
}

void service::stage_cleanup(std::int64_t now) {
  if (now - last_cleanup_ms_ < cleanup_interval_ms) return;
  last_cleanup_ms_ = now;
  staged_.push_back([before = now - settings_.cleared_retention.count()](storage::database& db) {
    db.cached("DELETE FROM alerts WHERE status = 'cleared' AND updated_ms < ?")
        .bind(1, before)
        .run();
  });
}

void service::note_state(saved_state s) {
  unsaved_states_.insert_or_assign({std::move(s.rule), std::move(s.series)}, std::move(s.data));
}

void service::forget_states(const std::string& rule_name) {
  for (auto& s : engine_.take_dirty_states()) note_state(std::move(s));
  auto from = unsaved_states_.lower_bound({rule_name, std::string()});
  auto to = from;
  while (to != unsaved_states_.end() && to->first.first == rule_name) ++to;
  unsaved_states_.erase(from, to);
  staged_.push_back([rule_name](storage::database& db) {
    db.cached("DELETE FROM alert_states WHERE rule = ?").bind(1, rule_name).run();
  });
}

storage::ticket service::persist(std::int64_t now, bool force_states) {
  auto events = engine_.take_events();
  const std::uint64_t timers = engine_.counters().timer_changes;
  // Every changed state goes with any event and every checkpoint_interval; in between, at once,
  // those whose pending period began or ended (what a crash must not lose). Baselines that only
  // drifted wait in the engine, taken (encoded) once per checkpoint rather than per batch.
  const bool all_due = force_states || !events.empty() || now >= next_checkpoint_ms_;
  const bool urgent_due = timers != timers_at_save_;
  if (all_due || urgent_due) {
    for (auto& s : engine_.take_dirty_states(!all_due)) note_state(std::move(s));
    timers_at_save_ = timers;
  }
  if (all_due) next_checkpoint_ms_ = now + settings_.checkpoint_interval.count();
  const bool writes_states = (all_due || urgent_due) && !unsaved_states_.empty();
  if (events.empty() && staged_.empty() && !writes_states) return {};

  std::map<std::uint64_t, alert> alerts;  // the latest step of each
  std::vector<delivery> deliveries;
  std::vector<std::pair<std::string, std::string>> announced;  // for the listener, once durable
  for (auto& e : events) {
    e.snapshot = shown(std::move(e.snapshot));
    if (listener_)
      announced.emplace_back(to_string(e.what),
                             boost::json::serialize(alert_json(e.snapshot, false)));
    figures_.events[static_cast<int>(e.what)].fetch_add(1, std::memory_order_relaxed);
    const rule* r = nullptr;
    if (const auto live = rules_.find(e.rule); live != rules_.end())
      r = &live->second.r;
    else if (const auto retired = retired_.find(e.rule); retired != retired_.end())
      r = &retired->second;
    if (r != nullptr) {
      for (auto& d : deliveries_for(e, *r, now)) {
        if (outbox_.size() + storing_deliveries_ + deliveries.size() >= settings_.max_outbox) {
          auto& counts = notified_[e.rule];
          ++counts.failed;
          counts.last_error = "the outbox is full (alerts.max_outbox)";
          figures_.failed.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        deliveries.push_back(std::move(d));
      }
    }
    alerts.insert_or_assign(e.snapshot.id, std::move(e.snapshot));
  }
  retired_.clear();
  std::vector<saved_state> states;
  if (writes_states) {
    states.reserve(unsaved_states_.size());
    for (auto& [key, data] : unsaved_states_)
      states.push_back({key.first, key.second, std::move(data)});
    unsaved_states_.clear();
  }
  std::vector<alert> rows;
  rows.reserve(alerts.size());
  for (auto& [id, a] : alerts) rows.push_back(std::move(a));
  const std::string next_id = rows.empty() ? std::string() : std::to_string(engine_.next_id());

  const storage::ticket t =
      writer_.submit([staged = std::exchange(staged_, {}), rows = std::move(rows), deliveries,
                      states = std::move(states), next_id](storage::database& db) {
        for (const auto& op : staged) op(db);
        for (const auto& a : rows) upsert_alert(db, a);
        for (const auto& d : deliveries) outbox::insert_row(db, d);
        for (const auto& s : states) {
          if (s.data.empty()) {
            db.cached("DELETE FROM alert_states WHERE rule = ? AND series = ?")
                .bind(1, s.rule)
                .bind(2, s.series)
                .run();
          } else {
            db.cached("INSERT OR REPLACE INTO alert_states (rule, series, data) VALUES (?, ?, ?)")
                .bind(1, s.rule)
                .bind(2, s.series)
                .bind_blob(3, s.data)
                .run();
          }
        }
        if (!next_id.empty()) put_meta(db, "next_id", next_id);
      });
  last_ticket_ = t;
  storing_deliveries_ += deliveries.size();
  // Notifications leave only once their rows (and their alert's) are durable; a failed write
  // leaves memory ahead of the database, and changes are refused from then on.
  if (!events.empty()) count_open_by_device();
  writer_.when_durable(
      t, [this, box = inbox_, writer = &writer_, t, deliveries = std::move(deliveries),
          announced = std::move(announced)]() mutable {
        hand_back(box, [this, is_failed = writer->failed(t), deliveries = std::move(deliveries),
                        announced = std::move(announced)]() mutable {
          on_stored(is_failed, std::move(deliveries), std::move(announced));
        });
      });
  return t;
}

}  // namespace nimbus::alerts
