#include "alerts/engine.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <set>
#include <string_view>
#include <utility>
#include <variant>

#include "alerts/deadline_wheel.hpp"
#include "alerts/detectors.hpp"
#include "core/assert.hpp"

// Choices the contract leaves open, in one place:
// - Time: a point's time is its timestamp in ms (floored), or now_ms without one. Deadlines are
//   compared with advance()'s now. Before a state takes a reading, a deadline of its own that the
//   reading's time has passed fires first, at the deadline, so the result does not depend on how
//   often advance() runs. A reading (or presence event) at exactly the deadline is in time: it is
//   judged first (a raising one raises with the run, a normal one cancels the pending).
// - An alert raised after a pending period starts with the run of raising readings: count, value
//   (the last), peak and severity (value escalations met anywhere in the run: a raise is never
//   followed by an escalation for the same reading).
// - no_data and offline alerts have value 0, peak 0 and count 0 (JSON has no NaN).
// - A reading that is both raising and clearing (overlapping bands) counts as raising.
// - Series of one device under one rule share the open alert for (device, type); any of them
//   updates it, and any whose state raised or joined it may clear it.
// - `evaluated` counts presence events judged by offline rules too.
// - When an open alert goes away other than by its state's own clear (an operator, a deletion),
//   the state finds out at its next reading or deadline and starts again from normal: a new
//   alert needs its pending period again. A no_data or offline alert cleared by hand raises again
//   only after data (a connection) and a new silence (disconnection).
// - A new state adopts the open alert of its (device, type) if that alert is of its series (a
//   rule whose selection or condition changed, a state lost from a checkpoint): the new
//   condition can still clear it.
// - Escalations after a time run while the alert is open (acknowledged included) and the rule
//   exists and is enabled; updated_ms moves with raises, updates and escalations only.
// - Range escalations compare the distance outside [lo, hi]; flat-line ones the run length.
// - Rule groups: a device in any one of them is selected. Deadlines due at the same ms fire in
//   (rule name, series) order, then escalations by alert id, whatever the order they were set.

namespace nimbus::alerts {

std::string_view to_string(alert_status s) {
  constexpr std::string_view names[] = {"active", "acknowledged", "cleared"};
  return names[static_cast<std::size_t>(s)];
}

namespace {

constexpr std::uint32_t no_slot = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t alert_timer = std::uint64_t{1} << 63;
constexpr std::int64_t ns_per_ms = 1'000'000;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// The value of a numeric field; nullopt for booleans and strings.
std::optional<double> numeric(const tsdb::field_value& value) {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&value)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&value)) return static_cast<double>(*u);
  return std::nullopt;
}

std::string open_key(std::string_view device, std::string_view type) {
  std::string key;
  key.reserve(device.size() + type.size() + 1);
  key.append(device).push_back('\0');
  key.append(type);
  return key;
}

// The rules of one field (or of presence): those for any device, and those naming devices.
struct rule_list {
  std::vector<std::uint32_t> any_device;
  string_map<std::vector<std::uint32_t>> by_device;
};

// Aligned, with what a point reads first: `alpha` and the start of a copy of the condition share
// a cache line (the rule's own `when` lies five lines into it).
struct alignas(64) rule_slot {
  double alpha = 1;  // ewma
  condition when;    // == r.when
  rule r;
  std::string database;  // the selection's, or the default
  std::size_t states = 0;
};

}  // namespace

struct engine::impl {
  explicit impl(engine_settings s) : settings(std::move(s)) {}

  // A point being offered: what is derived from it once, on the first rule that needs it.
  struct point_context {
    point_context(std::string_view db, const tsdb::point& point, std::int64_t t, std::int64_t now,
                  std::string_view tag)
        : database(db), p(point), time_ms(t), now_ms(now), device_tag_name(tag) {}

    std::string_view database;
    const tsdb::point& p;
    std::int64_t time_ms;  // the point's own time: orders a series' readings
    std::int64_t now_ms;   // when it arrived: the detectors' clock
    // Looked up when asked: a point of a bound series never reads its tags.
    std::string_view device_tag_name;
    std::optional<std::string_view> device_tag;
    bool has_device_tag = false;
    std::string_view given_key;  // the caller's series key, or `key` once made
    std::string key;
    bool has_key = false;
    std::optional<std::uint64_t> given_id;  // the store's series id, or made from the key
    std::uint32_t series = no_slot;
    bool has_series = false;
    const std::vector<std::string>* groups = nullptr;

    std::string_view series_key() {
      if (!has_key) {
        if (given_key.empty()) {
          key = tsdb::series_key(p);
          given_key = key;
        }
        has_key = true;
      }
      return given_key;
    }
    std::uint64_t id() {
      if (!given_id) given_id = tsdb::series_id(series_key());
      return *given_id;
    }
    std::string_view device() {
      if (!has_device_tag) {
        for (const auto& [key, value] : p.tags)
          if (key == device_tag_name) device_tag = value;
        has_device_tag = true;
      }
      return device_tag ? *device_tag : series_key();
    }
  };

  engine_settings settings;

  std::vector<rule_slot> rules;
  std::vector<std::uint32_t> free_rules;
  std::map<std::string, std::uint32_t, std::less<>> rule_by_name;
  // Points find their rules by device first (one lookup per point), then by field; rules for
  // any device by field. Each list in rule name order.
  string_map<device_rules> by_device;
  string_map<std::vector<std::uint32_t>> any_device;
  // Changes with every change of the index or of group memberships: series bound before it
  // are bound again (series_entry::set_bindings).
  std::uint64_t index_version = 1;
  // Databases and field names, what series_entry::database and binding::field point to.
  std::set<std::string, std::less<>> names;
  // prefetch()'s series slots of the points ahead, by position in the batch modulo 8.
  mutable std::array<std::pair<std::uint64_t, std::optional<std::uint32_t>>, 8> slots_ahead{};
  rule_list presence_rules;  // offline

  group_lookup lookup;
  string_map<std::vector<std::string>> group_cache;

  state_table table;
  std::vector<saved_state> deleted;  // states gone since take_dirty_states()

  deadline_wheel timers;

  std::map<std::uint64_t, alert> alerts;
  string_map<std::uint64_t> open_by_key;  // open_key(device, type) -> id
  std::deque<std::uint64_t> cleared_order;
  std::uint64_t next_id = 1;
  std::vector<event> events;
  engine_counters counters;

  // ---- rules and the index ----------------------------------------------------------------------

  void insert_sorted(std::vector<std::uint32_t>& list, std::uint32_t index) {
    if (std::find(list.begin(), list.end(), index) != list.end()) return;
    auto it = std::lower_bound(
        list.begin(), list.end(), index,
        [&](std::uint32_t a, std::uint32_t) { return rules[a].r.name < rules[index].r.name; });
    list.insert(it, index);
  }

  // Into a device's rules, by field then name.
  void insert_sorted(device_rules& list, const std::string& field, std::uint32_t index) {
    const auto entry = std::pair(field, index);
    if (std::find(list.begin(), list.end(), entry) != list.end()) return;
    auto it = std::lower_bound(list.begin(), list.end(), entry, [&](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first
                                : rules[a.second].r.name < rules[b.second].r.name;
    });
    list.insert(it, entry);
  }

  void index_rule(std::uint32_t index) {
    ++index_version;
    const rule& r = rules[index].r;
    if (r.when.kind == condition_kind::offline) {
      if (r.select.devices.empty()) return insert_sorted(presence_rules.any_device, index);
      for (const auto& device : r.select.devices)
        insert_sorted(presence_rules.by_device[device], index);
      return;
    }
    if (r.select.devices.empty()) return insert_sorted(any_device[r.select.field], index);
    for (const auto& device : r.select.devices)
      insert_sorted(by_device[device], r.select.field, index);
  }

  void unindex_rule(std::uint32_t index) {
    ++index_version;
    const rule& r = rules[index].r;
    if (r.when.kind == condition_kind::offline) {
      std::erase(presence_rules.any_device, index);
      for (const auto& device : r.select.devices) {
        auto it = presence_rules.by_device.find(device);
        if (it == presence_rules.by_device.end()) continue;
        std::erase(it->second, index);
        if (it->second.empty()) presence_rules.by_device.erase(it);
      }
      return;
    }
    if (auto it = any_device.find(r.select.field); it != any_device.end()) {
      std::erase(it->second, index);
      if (it->second.empty()) any_device.erase(it);
    }
    for (const auto& device : r.select.devices) {
      auto it = by_device.find(device);
      if (it == by_device.end()) continue;
      std::erase_if(it->second, [index](const auto& entry) { return entry.second == index; });
      if (it->second.empty()) by_device.erase(it);
    }
  }

  static constexpr std::size_t max_cached_devices = 100'000;

  const std::vector<std::string>& groups_of(std::string_view device) {
    auto it = group_cache.find(device);
    if (it == group_cache.end()) {
      // Bounded: past it the cache starts afresh (answers are the registry's to give again).
      if (group_cache.size() >= max_cached_devices) group_cache.clear();
      std::vector<std::string> groups;
      if (lookup) groups = lookup(device);
      it = group_cache.emplace(std::string(device), std::move(groups)).first;
    }
    return it->second;
  }

  // Whether the device (of `groups`) is in any of the selection's groups.
  static bool in_any_group(const selection& sel, const std::vector<std::string>& groups) {
    for (const auto& wanted : sel.groups)
      if (std::find(groups.begin(), groups.end(), wanted) != groups.end()) return true;
    return false;
  }

  bool selects(const rule_slot& slot, point_context& ctx) {
    const selection& sel = slot.r.select;
    if (slot.database != ctx.database) return false;
    if (!sel.measurement.empty() && sel.measurement != ctx.p.measurement) return false;
    for (const auto& [key, value] : sel.tags) {
      auto it =
          std::lower_bound(ctx.p.tags.begin(), ctx.p.tags.end(), key,
                           [](const auto& tag, const std::string& k) { return tag.first < k; });
      if (it == ctx.p.tags.end() || it->first != key || it->second != value) return false;
    }
    if (sel.groups.empty()) return true;
    if (ctx.groups == nullptr) ctx.groups = &groups_of(ctx.device());  // map nodes stay put
    return in_any_group(sel, *ctx.groups);
  }

  // ---- series and states ----------------------------------------------------------------------

  // A new state, or null past max_states. It adopts the open alert of its series, if any.
  detector_state* create_state(std::uint32_t rule, std::uint32_t series_slot) {
    if (table.size() >= settings.max_states) {
      ++counters.states_refused;
      return nullptr;
    }
    detector_state& s = table.create(rule, series_slot);
    ++rules[rule].states;
    const condition& c = rules[rule].r.when;
    if (c.kind == condition_kind::mad) s.mad.reset(c.window);
    const series_entry& entry = table.series(series_slot);
    if (auto it = open_by_key.find(open_key(entry.device, rules[rule].r.name));
        it != open_by_key.end() && alerts.at(it->second).series == entry.key) {
      s.at = phase::open;
      s.alert_id = it->second;
    }
    return &s;
  }

  void delete_state(detector_state& s) {
    table.series(s.series).bindings_version = 0;
    timers.cancel(s.slot);
    deleted.push_back(saved_state{rules[s.rule].r.name, table.series(s.series).key, {}});
    --rules[s.rule].states;
    table.erase(s);
  }

  void purge_rule_states(std::uint32_t rule) {
    table.for_each([&](detector_state& s) {
      if (s.rule == rule) delete_state(s);
    });
  }

  // ---- timers ---------------------------------------------------------------------------------

  void arm(detector_state& s, std::int64_t at_ms) {
    if (s.deadline_ms != at_ms && rules[s.rule].when.kind != condition_kind::no_data) {
      ++counters.timer_changes;
      table.mark_urgent(s);
    }
    s.deadline_ms = at_ms;
    timers.set(s.slot, at_ms);
  }

  void disarm(detector_state& s) {
    if (s.deadline_ms == no_deadline) return;
    if (rules[s.rule].when.kind != condition_kind::no_data) {
      ++counters.timer_changes;
      table.mark_urgent(s);
    }
    s.deadline_ms = no_deadline;
    timers.cancel(s.slot);
  }

  // The deadline a state's machine fields imply (after a restore).
  static std::int64_t implied_deadline(const condition& c, const detector_state& s) {
    if (c.kind == condition_kind::no_data)
      return s.at == phase::normal && s.has_last ? s.last_ms + c.pending.count() : no_deadline;
    if (s.at == phase::raise_pending) return s.since_ms + c.pending.count();
    if (s.at == phase::clear_pending && c.kind != condition_kind::offline)
      return s.since_ms + c.clear_pending.count();
    return no_deadline;
  }

  // Fires the state's own deadline if `t` has passed it (see the notes at the top).
  void catch_up(detector_state& s, std::int64_t t) {
    if (s.deadline_ms == no_deadline) return;
    if (s.deadline_ms >= t) return;
    const std::int64_t at = s.deadline_ms;
    disarm(s);
    fire_state(s, at);
  }

  void fire_state(detector_state& s, std::int64_t at_ms) {
    s.deadline_ms = no_deadline;
    sync_with_alert(s);
    const condition& c = rules[s.rule].r.when;
    switch (c.kind) {
      case condition_kind::no_data:
        if (s.at == phase::normal && s.has_last) raise_silence(s, at_ms);
        break;
      case condition_kind::offline:
        if (s.at == phase::raise_pending) raise_silence(s, at_ms);
        break;
      default:
        if (s.at == phase::raise_pending)
          raise(s, at_ms);
        else if (s.at == phase::clear_pending)
          clear_by_rule(s, at_ms);
        break;
    }
    table.mark_dirty(s);
  }

  void fire_escalation(std::uint64_t id, std::int64_t at_ms) {
    auto it = alerts.find(id);
    if (it == alerts.end() || !it->second.open()) return;
    alert& a = it->second;
    const rule* r = enabled_rule(a.type);
    if (r == nullptr) return;
    severity level = a.level;
    for (const auto& step : r->escalations)
      if (step.after && a.raised_ms + step.after->count() <= at_ms)
        level = std::max(level, step.to);
    if (level > a.level) {
      a.level = level;
      add_history(a, {at_ms, alert_event::escalated, "rule", {}, a.value, level});
      emit(alert_event::escalated, a);
    }
    arm_escalation(a);
  }

  // ---- alerts ---------------------------------------------------------------------------------

  const rule* enabled_rule(std::string_view name) const {
    auto it = rule_by_name.find(name);
    if (it == rule_by_name.end() || !rules[it->second].r.enabled) return nullptr;
    return &rules[it->second].r;
  }

  bool is_open(std::uint64_t id) const {
    auto it = alerts.find(id);
    return it != alerts.end() && it->second.open();
  }

  // A state whose alert was cleared by someone else starts again from normal.
  void sync_with_alert(detector_state& s) {
    if (s.at != phase::open && s.at != phase::clear_pending) return;
    if (is_open(s.alert_id)) return;
    disarm(s);
    s.at = phase::normal;
    s.alert_id = 0;
  }

  void emit(alert_event what, const alert& a) { events.push_back(event{what, a, a.type}); }

  void add_history(alert& a, history_entry entry) {
    a.history.push_back(std::move(entry));
    trim_history(a);
  }

  void trim_history(alert& a) const {
    if (a.history.size() <= settings.max_history) return;
    a.history.erase(a.history.begin(),
                    a.history.end() - static_cast<std::ptrdiff_t>(settings.max_history));
  }

  void arm_escalation(const alert& a) {
    const std::uint64_t k = alert_timer | a.id;
    const rule* r = a.open() ? enabled_rule(a.type) : nullptr;
    std::int64_t next = no_deadline;
    if (r != nullptr)
      for (const auto& step : r->escalations)
        if (step.after && step.to > a.level)
          next = std::min(next, a.raised_ms + step.after->count());
    if (next == no_deadline)
      timers.cancel(k);
    else
      timers.set(k, next);
  }

  severity value_severity(const rule& r, severity level, double score) const {
    for (const auto& step : r.escalations)
      if (step.value && step.to > level && escalation_met(r.when, *step.value, score))
        level = step.to;
    return level;
  }

  // Raises (or joins) the alert of the state's (device, type) with its run of readings.
  void raise(detector_state& s, std::int64_t at_ms) {
    disarm(s);
    const rule& r = rules[s.rule].r;
    const series_entry& entry = table.series(s.series);
    const std::string key = open_key(entry.device, r.name);
    if (auto it = open_by_key.find(key); it != open_by_key.end()) {
      alert& a = alerts.at(it->second);
      s.alert_id = a.id;
      s.at = phase::open;
      a.count += s.run_count;
      if (r.when.kind == condition_kind::no_data || r.when.kind == condition_kind::offline) {
        a.updated_ms = at_ms;
        emit(alert_event::updated, a);
      } else {
        apply_reading(a, r, s.run_value, s.run_peak, s.run_score, at_ms);
      }
    } else {
      alert a;
      a.id = next_id++;
      a.type = r.name;
      a.device_id = entry.device;
      a.series = entry.key;
      a.field = r.select.field;  // empty for offline
      a.level = value_severity(r, r.level, s.run_score);
      a.value = s.run_value;
      a.peak = s.run_peak;
      if (r.when.kind == condition_kind::threshold) a.threshold = r.when.threshold;
      a.count = s.run_count;
      a.raised_ms = a.updated_ms = at_ms;
      add_history(a, {at_ms, alert_event::raised, "rule", {}, a.value, a.level});
      s.alert_id = a.id;
      s.at = phase::open;
      open_by_key.emplace(key, a.id);
      const alert& stored = alerts.emplace(a.id, std::move(a)).first->second;
      emit(alert_event::raised, stored);
      arm_escalation(stored);
    }
    s.run_count = 0;
    s.run_value = s.run_peak = s.run_score = 0;
  }

  void raise_silence(detector_state& s, std::int64_t at_ms) {
    s.run_count = 0;
    s.run_value = s.run_peak = s.run_score = 0;
    raise(s, at_ms);
  }

  // An open alert takes a raising reading (or a joining run): value, peak, severity.
  void apply_reading(alert& a, const rule& r, double value, double peak, double score,
                     std::int64_t at_ms) {
    a.value = value;
    if (more_extreme_peak(r.when, peak, a.peak)) a.peak = peak;
    a.updated_ms = at_ms;
    const severity level = value_severity(r, a.level, score);
    if (level > a.level) {
      a.level = level;
      add_history(a, {at_ms, alert_event::escalated, "rule", {}, value, level});
      emit(alert_event::escalated, a);
      arm_escalation(a);
    } else {
      emit(alert_event::updated, a);
    }
  }

  void clear_alert(alert& a, std::string_view who, std::string_view note, std::int64_t at_ms) {
    a.status = alert_status::cleared;
    a.cleared_ms = at_ms;
    a.cleared_by = std::string(who);
    add_history(
        a, {at_ms, alert_event::cleared, std::string(who), std::string(note), a.value, a.level});
    if (auto it = open_by_key.find(open_key(a.device_id, a.type));
        it != open_by_key.end() && it->second == a.id)
      open_by_key.erase(it);
    timers.cancel(alert_timer | a.id);
    emit(alert_event::cleared, a);
    remember_cleared(a.id);
  }

  void remember_cleared(std::uint64_t id) {
    cleared_order.push_back(id);
    while (cleared_order.size() > settings.max_cleared) {
      alerts.erase(cleared_order.front());
      cleared_order.pop_front();
    }
  }

  void clear_by_rule(detector_state& s, std::int64_t at_ms) {
    disarm(s);
    if (auto it = alerts.find(s.alert_id); it != alerts.end() && it->second.open())
      clear_alert(it->second, "rule", {}, at_ms);
    s.at = phase::normal;
    s.alert_id = 0;
  }

  // ---- the machines ---------------------------------------------------------------------------

  void start_run(detector_state& s, const reading& r) {
    s.run_count = 1;
    s.run_value = r.value;
    s.run_peak = r.peak;
    s.run_score = r.score;
  }

  void extend_run(detector_state& s, const condition& c, const reading& r) {
    ++s.run_count;
    s.run_value = r.value;
    if (more_extreme_peak(c, r.peak, s.run_peak)) s.run_peak = r.peak;
    if (stronger_score(c, r.score, s.run_score)) s.run_score = r.score;
  }

  // threshold, range, ewma, mad, flatline: one verdict through normal / pending / open / clearing.
  void step(detector_state& s, const reading& r, std::int64_t t) {
    const rule& rl = rules[s.rule].r;
    const condition& c = rules[s.rule].when;
    switch (s.at) {
      case phase::normal:
        if (!r.is_raising) return;
        start_run(s, r);
        if (c.pending.count() <= 0) return raise(s, t);
        s.at = phase::raise_pending;
        s.since_ms = t;
        return arm(s, t + c.pending.count());
      case phase::raise_pending:
        if (!r.is_raising) {
          disarm(s);
          s.at = phase::normal;
          s.run_count = 0;
          return;
        }
        extend_run(s, c, r);
        if (t >= s.since_ms + c.pending.count()) raise(s, t);
        return;
      case phase::open:
      case phase::clear_pending:
        if (r.is_raising || !r.is_clearing) {
          if (s.at == phase::clear_pending) {
            disarm(s);
            s.at = phase::open;
          }
          if (r.is_raising) {
            alert& a = alerts.at(s.alert_id);
            ++a.count;
            apply_reading(a, rl, r.value, r.peak, r.score, t);
          }
          return;
        }
        if (s.at == phase::open) {
          if (c.clear_pending.count() <= 0) return clear_by_rule(s, t);
          s.at = phase::clear_pending;
          s.since_ms = t;
          return arm(s, t + c.clear_pending.count());
        }
        if (t >= s.since_ms + c.clear_pending.count()) clear_by_rule(s, t);
        return;
    }
  }

  // A value for a rule, if it selects the point: its state found or made, then judged. The
  // state, or null.
  detector_state* offer(std::uint32_t index, point_context& ctx, double value) {
    rule_slot& slot = rules[index];
    if (!selects(slot, ctx)) return nullptr;
    if (!ctx.has_series) {
      ctx.series = table.find_series(ctx.id(), ctx.series_key()).value_or(no_slot);
      ctx.has_series = true;
    }
    detector_state* s = ctx.series == no_slot ? nullptr : table.find(index, ctx.series);
    if (s == nullptr) {
      if (table.size() >= settings.max_states) {
        ++counters.states_refused;
        return nullptr;
      }
      if (ctx.series == no_slot)
        ctx.series = table.intern_series(ctx.id(), ctx.series_key(), ctx.device());
      s = create_state(index, ctx.series);
      if (s == nullptr) return nullptr;
    }
    judge(slot, *s, ctx, value);
    return s;
  }

  // The series' bindings as of now: the rules of any device, then those naming its device,
  // that select the point's series in its database, with their states there.
  void bind(std::uint32_t series_slot, point_context& ctx) {
    std::vector<binding> bound;
    for (const auto& [field, list] : any_device)
      for (std::uint32_t index : list)
        if (selects(rules[index], ctx)) bound.push_back(binding{&intern(field), index, no_state});
    if (auto it = by_device.find(ctx.device()); it != by_device.end())
      for (const auto& [field, index] : it->second)
        if (selects(rules[index], ctx)) bound.push_back(binding{&intern(field), index, no_state});
    std::stable_sort(bound.begin(), bound.end(),
                     [](const binding& a, const binding& b) { return *a.field < *b.field; });
    for (binding& b : bound)
      if (const detector_state* s = table.find(b.rule, series_slot)) b.state = s->slot;
    series_entry& entry = table.series(series_slot);
    entry.set_bindings(bound);
    entry.database = &intern(ctx.database);
    entry.bindings_version = index_version;
  }

  const std::string& intern(std::string_view name) {
    auto it = names.find(name);
    if (it == names.end()) it = names.emplace(name).first;
    return *it;
  }

  void judge(const rule_slot& slot, detector_state& s, point_context& ctx, double value) {
    if (s.has_last && ctx.time_ms < s.last_point_ms) {
      ++counters.late;
      return;
    }
    ++counters.evaluated;
    // Pending periods, no-data silences and escalations run on arrival time, as the timers do:
    // a device whose clock is hours off (or a batch of old points) must not skip a `for`.
    const std::int64_t t = std::max(ctx.now_ms, s.has_last ? s.last_ms : ctx.now_ms);
    s.last_point_ms = ctx.time_ms;
    catch_up(s, t);
    sync_with_alert(s);
    if (slot.when.kind == condition_kind::no_data) {
      if (s.at == phase::open) clear_by_rule(s, t);
      s.at = phase::normal;
      s.has_last = true;
      s.last_ms = t;
      arm(s, t + slot.when.pending.count());
    } else {
      const reading r = evaluate(slot.when, slot.alpha, s, value);
      step(s, r, t);
      s.has_last = true;
      s.last_ms = t;
    }
    table.mark_dirty(s);
  }

  void presence(std::uint32_t index, std::string_view device, bool connected, std::int64_t at) {
    const rule& r = rules[index].r;
    if (!r.select.groups.empty() && !in_any_group(r.select, groups_of(device))) return;
    const std::uint32_t series_slot = table.intern_series(tsdb::series_id(device), device, device);
    detector_state* s = table.find(index, series_slot);
    if (s == nullptr) {
      s = create_state(index, series_slot);
      if (s == nullptr) return table.release_if_unused(series_slot);
    } else if (s->has_last && at < s->last_ms) {
      ++counters.late;
      return;
    }
    ++counters.evaluated;
    catch_up(*s, at);
    sync_with_alert(*s);
    if (!connected) {
      if (s->at == phase::normal) {
        s->since_ms = at;
        if (r.when.pending.count() <= 0) {
          raise_silence(*s, at);
        } else {
          s->at = phase::raise_pending;
          arm(*s, at + r.when.pending.count());
        }
      }
    } else if (s->at == phase::raise_pending) {
      disarm(*s);
      s->at = phase::normal;
    } else if (s->at == phase::open || s->at == phase::clear_pending) {
      clear_by_rule(*s, at);
    }
    s->has_last = true;
    s->last_ms = at;
    table.mark_dirty(*s);
  }

  // Deadlines due at the same ms, in an order that does not depend on when they were set.
  bool fires_before(const std::pair<deadline_wheel::key, std::int64_t>& a,
                    const std::pair<deadline_wheel::key, std::int64_t>& b) const {
    const bool is_alert_a = (a.first & alert_timer) != 0, is_alert_b = (b.first & alert_timer) != 0;
    if (is_alert_a != is_alert_b) return is_alert_b;
    if (is_alert_a) return a.first < b.first;
    const auto& sa = table.get(static_cast<std::uint32_t>(a.first));
    const auto& sb = table.get(static_cast<std::uint32_t>(b.first));
    const auto& na = rules[sa.rule].r.name;
    const auto& nb = rules[sb.rule].r.name;
    if (na != nb) return na < nb;
    return table.series(sa.series).key < table.series(sb.series).key;
  }
};

// ---- engine -----------------------------------------------------------------------------------

engine::engine(engine_settings settings) : impl_(std::make_unique<impl>(std::move(settings))) {}
engine::~engine() = default;

void engine::put_rule(rule r, std::int64_t /*now_ms*/) {
  auto& m = *impl_;
  auto named = m.rule_by_name.find(r.name);
  std::uint32_t index;
  if (named == m.rule_by_name.end()) {
    if (!m.free_rules.empty()) {
      index = m.free_rules.back();
      m.free_rules.pop_back();
    } else {
      index = static_cast<std::uint32_t>(m.rules.size());
      m.rules.emplace_back();
    }
    m.rule_by_name.emplace(r.name, index);
  } else {
    index = named->second;
    rule& old = m.rules[index].r;
    if (old.enabled) m.unindex_rule(index);
    // New states for a new selection or condition; none for a disabled rule.
    if (old.select != r.select || old.when != r.when || !r.enabled) m.purge_rule_states(index);
  }
  rule_slot& slot = m.rules[index];
  slot.database = r.select.database.empty() ? m.settings.default_database : r.select.database;
  slot.alpha = ewma_alpha(r.when.half_life);
  slot.when = r.when;
  slot.r = std::move(r);
  if (slot.r.enabled) m.index_rule(index);
  for (auto& [id, a] : m.alerts)
    if (a.open() && a.type == slot.r.name) m.arm_escalation(a);
}

bool engine::remove_rule(std::string_view name, std::int64_t now_ms) {
  auto& m = *impl_;
  auto named = m.rule_by_name.find(name);
  if (named == m.rule_by_name.end()) return false;
  const std::uint32_t index = named->second;
  rule_slot& slot = m.rules[index];
  if (slot.r.enabled) m.unindex_rule(index);
  m.purge_rule_states(index);
  // Ids first: clearing may drop the oldest cleared alerts from the map.
  std::vector<std::uint64_t> open;
  for (const auto& [id, a] : m.alerts)
    if (a.open() && a.type == slot.r.name) open.push_back(id);
  for (std::uint64_t id : open) m.clear_alert(m.alerts.at(id), "rule", "rule deleted", now_ms);
  m.rule_by_name.erase(named);
  slot = rule_slot{};
  m.free_rules.push_back(index);
  return true;
}

const rule* engine::find_rule(std::string_view name) const {
  auto it = impl_->rule_by_name.find(name);
  return it == impl_->rule_by_name.end() ? nullptr : &impl_->rules[it->second].r;
}

std::size_t engine::states_of(std::string_view name) const {
  auto it = impl_->rule_by_name.find(name);
  return it == impl_->rule_by_name.end() ? 0 : impl_->rules[it->second].states;
}

std::vector<const rule*> engine::rules() const {
  std::vector<const rule*> out;
  out.reserve(impl_->rule_by_name.size());
  for (const auto& [name, index] : impl_->rule_by_name) out.push_back(&impl_->rules[index].r);
  return out;
}

void engine::set_group_lookup(group_lookup lookup) {
  impl_->lookup = std::move(lookup);
  impl_->group_cache.clear();
  ++impl_->index_version;
}

void engine::groups_changed(std::int64_t now_ms) {
  auto& m = *impl_;
  m.group_cache.clear();
  ++m.index_version;
  std::vector<detector_state*> left;
  m.table.for_each([&](detector_state& s) {
    const selection& sel = m.rules[s.rule].r.select;
    if (!sel.groups.empty() &&
        !impl::in_any_group(sel, m.groups_of(m.table.series(s.series).device)))
      left.push_back(&s);
  });
  for (detector_state* s : left) {
    m.disarm(*s);
    if (auto it = m.alerts.find(s->alert_id); it != m.alerts.end() && it->second.open())
      m.clear_alert(it->second, "rule", "no longer selected", now_ms);
    m.delete_state(*s);
  }
}

void engine::on_point(std::string_view database, const tsdb::point& p, std::int64_t now_ms,
                      std::string_view series_key, std::optional<std::uint64_t> series_id) {
  auto& m = *impl_;
  impl::point_context ctx{database, p,
                          p.timestamp_ns ? floor_div(*p.timestamp_ns, ns_per_ms) : now_ms, now_ms,
                          m.settings.device_tag};
  ctx.given_key = series_key;
  if (!series_key.empty()) ctx.given_id = series_id;
  // A field's value as detectors take it, counted: false for NaN, infinities and non-numbers.
  const auto judged = [&m](const tsdb::field_value& value, double& number) {
    ++m.counters.points;
    if (const auto n = numeric(value); n && std::isfinite(*n)) {
      number = *n;
      return true;
    }
    ++m.counters.non_finite;
    return false;
  };
  // A point of a series with states (the store gave its key and id) is judged by its bindings.
  if (const auto known =
          series_key.empty() ? std::nullopt : m.table.find_series(ctx.id(), series_key)) {
    ctx.series = *known;
    ctx.has_series = true;
    series_entry& entry = m.table.series(*known);
    if (entry.bindings_version != m.index_version || *entry.database != database)
      m.bind(*known, ctx);
    for (const auto& [name, value] : p.fields) {
      double number = 0;
      if (!judged(value, number)) continue;
      // No state comes or goes here but the binding's own: entry and bindings stay put.
      for (std::size_t i = 0; i < entry.binding_count; ++i) {
        binding& b = entry.bound(i);
        if (*b.field != name) continue;
        if (b.state != no_state) {
          m.judge(m.rules[b.rule], m.table.get(b.state), ctx, number);
        } else if (const detector_state* s = m.offer(b.rule, ctx, number)) {
          b.state = s->slot;
        }
      }
    }
    return;
  }
  // Others find their rules in the index, by the device's name; offer() interns the series if
  // a rule wants it.
  if (!series_key.empty()) {
    ctx.series = no_slot;
    ctx.has_series = true;
  }
  const device_rules* of_device = nullptr;
  if (!m.by_device.empty())
    if (const auto it = m.by_device.find(ctx.device()); it != m.by_device.end())
      of_device = &it->second;
  for (const auto& [name, value] : p.fields) {
    double number = 0;
    if (!judged(value, number)) continue;
    if (!m.any_device.empty()) {
      if (auto it = m.any_device.find(std::string_view(name)); it != m.any_device.end())
        for (std::uint32_t index : it->second) m.offer(index, ctx, number);
    }
    if (of_device == nullptr) continue;
    for (const auto& [field, index] : *of_device)
      if (field == name) m.offer(index, ctx, number);
  }
}

void engine::prefetch(std::span<const tsdb::point> points, std::span<const std::uint64_t> ids,
                      std::size_t i) const {
  const auto& m = *impl_;
  const std::size_t count = std::min(points.size(), ids.size());
  // The slot of point j's series: found once, at i + 4, for the stages after (a hint: a slot
  // of another batch's point with the same id is as good).
  const auto slot_of = [&m, ids](std::size_t j) -> std::optional<std::uint32_t> {
    auto& [id, slot] = m.slots_ahead[j % m.slots_ahead.size()];
    if (id == ids[j]) return slot;
    return m.table.series_slot(ids[j]);
  };
  // The bindings of a series already fetched (null: none, or not bound as of now).
  const auto bound = [&](std::size_t j) -> const series_entry* {
    const auto slot = slot_of(j);
    if (!slot) return nullptr;
    const series_entry& entry = m.table.series(*slot);
    return entry.bindings_version == m.index_version ? &entry : nullptr;
  };
  const auto inline_count = [](const series_entry& e) {
    return std::min<std::size_t>(e.binding_count, e.first_bindings.size());
  };
  const auto fetch = [](const void* at, std::size_t bytes) {
    for (std::size_t offset = 0; offset < bytes; offset += 64)
      __builtin_prefetch(static_cast<const char*>(at) + offset);
  };
  if (i + 8 < count) m.table.prefetch_series(ids[i + 8]);
  if (i + 4 < count) {
    const auto slot = m.table.series_slot(ids[i + 4]);
    m.slots_ahead[(i + 4) % m.slots_ahead.size()] = {ids[i + 4], slot};
    if (slot) __builtin_prefetch(&m.table.series(*slot));
  }
  if (i + 2 < count) {
    // The point's fields (parsed on another core), then its rules and states.
    const auto& fields = points[i + 2].fields;
    fetch(fields.data(), fields.size() * sizeof(fields[0]));
    if (const series_entry* entry = bound(i + 2))
      for (std::size_t k = 0; k < inline_count(*entry); ++k) {
        const binding& b = entry->first_bindings[k];
        __builtin_prefetch(&m.rules[b.rule]);
        if (b.state != no_state) fetch(&m.table.get(b.state), 128);
      }
  }
  // A MAD window's readings, from the state fetched above.
  if (i + 1 < count)
    if (const series_entry* entry = bound(i + 1))
      for (std::size_t k = 0; k < inline_count(*entry); ++k) {
        const binding& b = entry->first_bindings[k];
        if (b.state != no_state && m.rules[b.rule].when.kind == condition_kind::mad)
          m.table.get(b.state).mad.prefetch();
      }
}

bool engine::has_presence_rules() const {
  return !impl_->presence_rules.any_device.empty() || !impl_->presence_rules.by_device.empty();
}

void engine::on_presence(std::string_view device_id, bool connected, std::int64_t at_ms) {
  auto& m = *impl_;
  const auto& list = m.presence_rules;
  for (std::uint32_t index : list.any_device) m.presence(index, device_id, connected, at_ms);
  if (auto it = list.by_device.find(device_id); it != list.by_device.end())
    for (std::uint32_t index : it->second) m.presence(index, device_id, connected, at_ms);
}

void engine::advance(std::int64_t now_ms) {
  auto& m = *impl_;
  std::vector<std::pair<deadline_wheel::key, std::int64_t>> batch;
  while (auto first = m.timers.pop_due(now_ms)) {
    batch.clear();
    batch.push_back(*first);
    while (m.timers.next() == first->second) batch.push_back(*m.timers.pop_due(now_ms));
    if (batch.size() > 1)
      std::sort(batch.begin(), batch.end(),
                [&](const auto& a, const auto& b) { return m.fires_before(a, b); });
    for (const auto& [k, at] : batch) {
      if ((k & alert_timer) != 0) {
        m.fire_escalation(k & ~alert_timer, at);
      } else if (detector_state* s = m.table.at(k); s != nullptr && s->deadline_ms == at) {
        m.fire_state(*s, at);
      }
    }
  }
}

std::optional<std::int64_t> engine::next_deadline() const {
  return impl_->timers.next();
}

action_result engine::acknowledge(std::uint64_t id, std::string_view who, std::string_view note,
                                  std::int64_t now_ms) {
  auto& m = *impl_;
  auto it = m.alerts.find(id);
  if (it == m.alerts.end()) return action_result::not_found;
  alert& a = it->second;
  if (a.acknowledged) return action_result::conflict;
  a.acknowledged = true;
  a.acknowledged_ms = now_ms;
  a.acknowledged_by = std::string(who);
  if (a.status == alert_status::active) a.status = alert_status::acknowledged;
  m.add_history(a, {now_ms, alert_event::acknowledged, std::string(who), std::string(note), a.value,
                    a.level});
  m.emit(alert_event::acknowledged, a);
  return action_result::done;
}

action_result engine::clear(std::uint64_t id, std::string_view who, std::string_view note,
                            std::int64_t now_ms) {
  auto& m = *impl_;
  auto it = m.alerts.find(id);
  if (it == m.alerts.end()) return action_result::not_found;
  if (!it->second.open()) return action_result::conflict;
  m.clear_alert(it->second, who, note, now_ms);
  return action_result::done;
}

const alert* engine::find(std::uint64_t id) const {
  auto it = impl_->alerts.find(id);
  return it == impl_->alerts.end() ? nullptr : &it->second;
}

std::vector<alert> engine::list(const alert_filter& filter) const {
  std::vector<alert> out;
  const auto& alerts = impl_->alerts;
  for (auto it = alerts.upper_bound(filter.after_id); it != alerts.end(); ++it) {
    if (out.size() >= filter.limit) break;
    const alert& a = it->second;
    if (!filter.all) {
      if (filter.status ? a.status != *filter.status : !a.open()) continue;
    }
    if (!filter.device_id.empty() && a.device_id != filter.device_id) continue;
    if (!filter.type.empty() && a.type != filter.type) continue;
    if (filter.min_severity && a.level < *filter.min_severity) continue;
    out.push_back(a);
  }
  return out;
}

std::size_t engine::open_count() const {
  return impl_->open_by_key.size();
}

std::map<std::string, std::size_t> engine::open_by_device() const {
  std::map<std::string, std::size_t> counts;
  for (const auto& [key, id] : impl_->open_by_key) ++counts[impl_->alerts.at(id).device_id];
  return counts;
}

engine_counters engine::counters() const {
  engine_counters c = impl_->counters;
  c.states = impl_->table.size();
  c.timers = impl_->timers.size();
  return c;
}

std::vector<event> engine::take_events() {
  return std::exchange(impl_->events, {});
}

bool engine::has_dirty_states() const {
  return !impl_->deleted.empty() || impl_->table.has_dirty();
}

std::vector<saved_state> engine::take_dirty_states(bool urgent_only) {
  auto& m = *impl_;
  std::vector<saved_state> out = std::exchange(m.deleted, {});
  for (detector_state* s : m.table.take_dirty(urgent_only)) {
    const rule_slot& r = m.rules[s->rule];
    const series_entry& entry = m.table.series(s->series);
    out.push_back(saved_state{r.r.name, entry.key, encode_state(r.r.when.kind, *s, entry.device)});
  }
  return out;
}

void engine::restore_alert(alert a) {
  auto& m = *impl_;
  m.next_id = std::max(m.next_id, a.id + 1);
  m.trim_history(a);
  const std::uint64_t id = a.id;
  const bool is_open = a.open();
  auto [it, is_new] = m.alerts.insert_or_assign(id, std::move(a));
  const alert& stored = it->second;
  if (is_open) {
    // One open alert per (device, type): of two, the newer one is the one that stays open.
    auto [key_it, is_new_key] =
        m.open_by_key.try_emplace(open_key(stored.device_id, stored.type), id);
    if (!is_new_key && key_it->second < id) key_it->second = id;
    m.arm_escalation(stored);
  } else if (is_new) {
    m.remember_cleared(id);
  }
}

void engine::restore_next_id(std::uint64_t next_id) {
  impl_->next_id = std::max(impl_->next_id, next_id);
}

std::uint64_t engine::next_id() const {
  return impl_->next_id;
}

void engine::restore_state(const saved_state& saved) {
  auto& m = *impl_;
  if (saved.data.empty()) return;
  auto named = m.rule_by_name.find(saved.rule);
  if (named == m.rule_by_name.end()) return;
  const std::uint32_t index = named->second;
  const rule& r = m.rules[index].r;
  if (!r.enabled) return;
  detector_state decoded;
  std::string device;
  if (!decode_state(saved.data, r.when.kind, r.when.window, decoded, device)) return;
  const std::uint32_t series_slot =
      m.table.intern_series(tsdb::series_id(saved.series), saved.series, device);
  detector_state* s = m.table.find(index, series_slot);
  if (s == nullptr) s = m.create_state(index, series_slot);
  if (s == nullptr) return m.table.release_if_unused(series_slot);
  m.disarm(*s);
  decoded.slot = s->slot;
  decoded.rule = s->rule;
  decoded.series = s->series;
  decoded.is_live = true;
  decoded.is_dirty = s->is_dirty;
  *s = std::move(decoded);
  if (const std::int64_t deadline = impl::implied_deadline(r.when, *s); deadline != no_deadline)
    m.arm(*s, deadline);
}

void engine::resume(std::int64_t now_ms) {
  auto& m = *impl_;
  m.table.for_each([&](detector_state& s) {
    const condition& c = m.rules[s.rule].r.when;
    if (s.at != phase::normal || !s.has_last) return;
    if (c.kind == condition_kind::no_data) {
      s.last_ms = std::max(s.last_ms, now_ms);
      m.disarm(s);
      m.arm(s, s.last_ms + c.pending.count());
    } else if (c.kind == condition_kind::offline) {
      s.at = phase::raise_pending;
      s.since_ms = now_ms;
      m.disarm(s);
      m.arm(s, now_ms + c.pending.count());
    } else {
      return;
    }
    m.table.mark_dirty(s);
  });
}

}  // namespace nimbus::alerts
