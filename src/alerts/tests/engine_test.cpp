// The alert engine's parts and the properties the case files cannot show: the deadline wheel
// and the MAD window against naive models, the checkpoint encoding, NaN and infinities, dirty
// states, restarts anywhere in a random script (the same events as without one), series'
// bindings against the index under random rule and group changes, listing, history bounds, the
// group cache, and the per-device index at 10,000 rules. Behaviour case by case is in
// tests/cases/.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "alerts/deadline_wheel.hpp"
#include "alerts/detectors.hpp"
#include "alerts/engine.hpp"
#include "alerts/rule.hpp"
#include "tsdb/line_protocol.hpp"

namespace nimbus::alerts {
namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

rule rule_of(std::string_view json) {
  auto parsed = parse_rule(json);
  if (auto* error = std::get_if<rule_error>(&parsed)) {
    ADD_FAILURE() << "refused: " << error->field << ": " << error->message << "\n  " << json;
    return rule{};
  }
  return std::get<rule>(std::move(parsed));
}

tsdb::point point_of(std::string device,
                     std::vector<std::pair<std::string, tsdb::field_value>> fields,
                     std::int64_t at_ms, std::string measurement = "sensor_data") {
  tsdb::point p;
  p.measurement = std::move(measurement);
  if (!device.empty()) p.tags.emplace_back("device_id", std::move(device));
  p.fields = std::move(fields);
  p.timestamp_ns = at_ms * 1'000'000;
  return p;
}

tsdb::point reading(const std::string& device, double value, std::int64_t at_ms,
                    const std::string& field = "temperature") {
  return point_of(device, {{field, value}}, at_ms);
}

// ---- deadline wheel ---------------------------------------------------------------------------

TEST(deadline_wheel, fires_in_deadline_order_with_moves_and_cancels) {
  deadline_wheel wheel;
  wheel.set(1, 100);
  wheel.set(2, 50);
  wheel.set(3, 200);
  wheel.set(1, 300);  // later
  wheel.set(3, 10);   // earlier
  EXPECT_TRUE(wheel.cancel(2));
  EXPECT_FALSE(wheel.cancel(2));
  EXPECT_EQ(wheel.size(), 2u);
  EXPECT_EQ(wheel.next(), 10);
  EXPECT_EQ(wheel.deadline_of(1), 300);
  EXPECT_FALSE(wheel.pop_due(9));
  auto first = wheel.pop_due(1000);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, (std::pair<deadline_wheel::key, std::int64_t>{3, 10}));
  EXPECT_EQ(wheel.next(), 300);
  auto second = wheel.pop_due(1000);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first, 1u);
  EXPECT_FALSE(wheel.pop_due(1000));
  EXPECT_EQ(wheel.next(), std::nullopt);
}

TEST(deadline_wheel, matches_a_naive_model_under_random_churn) {
  std::mt19937_64 random(7);
  deadline_wheel wheel;
  std::map<deadline_wheel::key, std::int64_t> model;
  std::int64_t now = 0;
  for (int round = 0; round < 200'000; ++round) {
    const auto k = random() % 500;
    switch (random() % 4) {
      case 0:
      case 1: {
        const std::int64_t at = now + static_cast<std::int64_t>(random() % 1000);
        wheel.set(k, at);
        model[k] = at;
        break;
      }
      case 2:
        EXPECT_EQ(wheel.cancel(k), model.erase(k) == 1);
        break;
      default: {
        now += static_cast<std::int64_t>(random() % 50);
        while (auto due = wheel.pop_due(now)) {
          auto it = model.find(due->first);
          ASSERT_NE(it, model.end());
          ASSERT_EQ(it->second, due->second);
          for (const auto& [other, at] : model) ASSERT_GE(at, due->second);
          model.erase(it);
        }
        for (const auto& [other, at] : model) ASSERT_GT(at, now);
      }
    }
    ASSERT_EQ(wheel.size(), model.size());
  }
  std::optional<std::int64_t> earliest;
  for (const auto& [k, at] : model) earliest = earliest ? std::min(*earliest, at) : at;
  EXPECT_EQ(wheel.next(), earliest);
}

// ---- detectors --------------------------------------------------------------------------------

double naive_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 == 1 ? v[n / 2] : v[n / 2 - 1] / 2 + v[n / 2] / 2;
}

TEST(series_index, matches_a_map_under_random_churn_with_colliding_homes) {
  series_index index;
  std::map<std::uint64_t, std::uint32_t> model;
  std::mt19937_64 random(15);
  // Few distinct ids, many of them sharing low bits: long runs, wrapped ones, backward shifts.
  std::uniform_int_distribution<std::uint64_t> pick(0, 400);
  for (int step = 0; step < 200'000; ++step) {
    const std::uint64_t id = pick(random) * 0x100000000ULL + (pick(random) % 3);
    const auto found = model.find(id);
    if (random() % 3 == 0) {
      index.erase(id);
      if (found != model.end()) model.erase(found);
    } else {
      const auto slot = static_cast<std::uint32_t>(step);
      EXPECT_EQ(index.insert(id, slot), found == model.end());
      model.try_emplace(id, slot);
    }
    if (step % 997 == 0)
      for (std::uint64_t probe = 0; probe < 401; ++probe)
        for (std::uint64_t low = 0; low < 3; ++low) {
          const std::uint64_t key = probe * 0x100000000ULL + low;
          const auto expected = model.find(key);
          EXPECT_EQ(index.find(key), expected == model.end()
                                         ? std::nullopt
                                         : std::optional<std::uint32_t>(expected->second));
        }
  }
}

TEST(mad_window, median_and_mad_match_a_naive_window) {
  std::mt19937_64 random(11);
  for (std::uint32_t capacity : {1u, 2u, 3u, 4u, 7u, 60u}) {
    mad_window window(capacity);
    std::vector<double> naive;
    for (int i = 0; i < 2000; ++i) {
      // Few distinct values: ties on both sides of the median.
      const double v = static_cast<double>(random() % 9) - 4 + (random() % 4 == 0 ? 0.5 : 0);
      window.add(v);
      naive.push_back(v);
      if (naive.size() > capacity) naive.erase(naive.begin());
      const double median = naive_median(naive);
      std::vector<double> deviations;
      for (double x : naive) deviations.push_back(std::abs(x - median));
      ASSERT_EQ(window.size(), naive.size());
      ASSERT_DOUBLE_EQ(window.median(), median) << "capacity " << capacity << " step " << i;
      ASSERT_DOUBLE_EQ(window.mad(), naive_median(deviations))
          << "capacity " << capacity << " step " << i;
      ASSERT_EQ(window.in_order(), naive);
    }
  }
}

TEST(detectors, readings_near_the_double_limits_give_finite_scores) {
  condition ewma;
  ewma.kind = condition_kind::ewma;
  ewma.warmup = 2;
  condition mad;
  mad.kind = condition_kind::mad;
  mad.window = 4;
  mad.warmup = 2;
  const double big = std::numeric_limits<double>::max();
  for (const condition& c : {ewma, mad}) {
    detector_state s;
    for (double v : {big, -big, big, -big, 0.0, big, 1.0}) {
      const auto r = evaluate(c, ewma_alpha(2), s, v);
      EXPECT_TRUE(std::isfinite(r.peak)) << to_string(c.kind) << " " << v;
      EXPECT_TRUE(std::isfinite(r.score)) << to_string(c.kind) << " " << v;
    }
    EXPECT_TRUE(std::isfinite(s.ewma.mean));
    EXPECT_TRUE(std::isfinite(s.ewma.variance));
  }
}

TEST(ewma_baseline, the_half_life_halves_a_readings_weight) {
  const double alpha = ewma_alpha(20);
  EXPECT_NEAR(std::pow(1 - alpha, 20), 0.5, 1e-12);
  ewma_baseline b;
  for (int i = 0; i < 1000; ++i) b.add(i % 2 == 0 ? 9 : 11, alpha);
  EXPECT_NEAR(b.mean, 10, 0.05);
  EXPECT_NEAR(std::sqrt(b.variance), 1, 0.05);
  ewma_baseline constant;
  for (int i = 0; i < 10; ++i) constant.add(5, alpha);
  EXPECT_EQ(constant.variance, 0);
  EXPECT_DOUBLE_EQ(constant.score(5), 0);
  EXPECT_TRUE(std::isfinite(constant.score(6)));
  EXPECT_GT(constant.score(6), 1e6);
}

TEST(detector_state, encodes_and_decodes_every_kind) {
  for (auto kind :
       {condition_kind::threshold, condition_kind::range, condition_kind::ewma, condition_kind::mad,
        condition_kind::flatline, condition_kind::no_data, condition_kind::offline}) {
    detector_state s;
    s.at = phase::clear_pending;
    s.has_last = true;
    s.last_ms = -5;
    s.since_ms = 1234;
    s.alert_id = 77;
    s.run_count = 3;
    s.run_value = 1.5;
    s.run_peak = -2.25;
    s.run_score = 9;
    s.ewma = {10.5, 0.25, 40};
    s.flat_value = 3.5;
    s.flat_run = 6;
    s.mad.reset(4);
    for (double v : {1.0, 2.0, 3.0, 4.0, 5.0}) s.mad.add(v);
    const std::string data = encode_state(kind, s, "dev 1");
    detector_state back;
    std::string device;
    ASSERT_TRUE(decode_state(data, kind, 4, back, device)) << to_string(kind);
    EXPECT_EQ(device, "dev 1");
    EXPECT_EQ(back.at, phase::clear_pending);
    EXPECT_TRUE(back.has_last);
    EXPECT_EQ(back.last_ms, -5);
    EXPECT_EQ(back.since_ms, 1234);
    EXPECT_EQ(back.alert_id, 77u);
    EXPECT_EQ(back.run_count, 3u);
    EXPECT_EQ(back.run_peak, -2.25);
    if (kind == condition_kind::ewma) {
      EXPECT_EQ(back.ewma.mean, 10.5);
      EXPECT_EQ(back.ewma.variance, 0.25);
      EXPECT_EQ(back.ewma.count, 40u);
    }
    if (kind == condition_kind::mad) {
      ASSERT_TRUE(back.mad.is_set());
      EXPECT_EQ(back.mad.in_order(), (std::vector<double>{2, 3, 4, 5}));
      EXPECT_EQ(back.mad.seen(), 5u);
      detector_state smaller;
      ASSERT_TRUE(decode_state(data, kind, 2, smaller, device));
      EXPECT_EQ(smaller.mad.in_order(), (std::vector<double>{4, 5}));
    }
    if (kind == condition_kind::flatline) {
      EXPECT_EQ(back.flat_value, 3.5);
      EXPECT_EQ(back.flat_run, 6u);
    }
    // Damaged data is refused: every truncation, another kind, trailing bytes.
    for (std::size_t size = 0; size < data.size(); ++size)
      EXPECT_FALSE(decode_state(std::string_view(data).substr(0, size), kind, 4, back, device));
    EXPECT_FALSE(decode_state(data + "x", kind, 4, back, device));
    const auto other =
        kind == condition_kind::threshold ? condition_kind::range : condition_kind::threshold;
    EXPECT_FALSE(decode_state(data, other, 4, back, device));
  }
}

// ---- engine: input ----------------------------------------------------------------------------

constexpr std::string_view hot_rule =
    R"({"name":"hot","condition":{"type":"threshold","operator":">","value":35},)"
    R"("selection":{"field":"temperature"}})";

TEST(engine, nan_infinities_booleans_and_strings_reach_no_detector) {
  engine e({});
  e.put_rule(rule_of(hot_rule), 0);
  e.put_rule(rule_of(R"({"name":"silent","condition":{"type":"no_data","for":"1m"},)"
                     R"("selection":{"field":"temperature"}})"),
             0);
  e.on_point("nimbus", point_of("dev1", {{"temperature", nan}, {"temperature2", 1.0}}, 0), 0);
  e.on_point("nimbus", point_of("dev1", {{"temperature", inf}}, 10), 0);
  e.on_point("nimbus", point_of("dev1", {{"temperature", -inf}}, 20), 0);
  e.on_point("nimbus", point_of("dev1", {{"temperature", true}}, 30), 0);
  e.on_point("nimbus", point_of("dev1", {{"temperature", std::string("40")}}, 40), 0);
  e.advance(3'600'000);
  EXPECT_TRUE(e.take_events().empty());
  const auto c = e.counters();
  EXPECT_EQ(c.points, 6u);
  EXPECT_EQ(c.non_finite, 5u);
  EXPECT_EQ(c.evaluated, 0u);
  EXPECT_EQ(c.states, 0u);
}

TEST(engine, a_point_without_a_timestamp_takes_now_and_times_floor_to_ms) {
  engine e({});
  e.put_rule(rule_of(hot_rule), 0);
  auto p = reading("dev1", 40, 0);
  p.timestamp_ns.reset();
  e.on_point("nimbus", p, 5000);
  p.timestamp_ns = -1;  // -1 ns is in ms -1, before the point at 5000: late
  e.on_point("nimbus", p, 0);
  auto events = e.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].snapshot.raised_ms, 5000);
  EXPECT_EQ(e.counters().late, 1u);
}

TEST(engine, ten_thousand_per_device_rules_cost_one_evaluation_per_point) {
  engine e({});
  for (int i = 0; i < 10'000; ++i)
    e.put_rule(rule_of(R"({"name":"hot)" + std::to_string(i) +
                       R"(","condition":{"type":"threshold","operator":">","value":35},)"
                       R"("selection":{"field":"temperature","devices":["dev)" +
                       std::to_string(i) + R"("]}})"),
               0);
  for (int i = 0; i < 10'000; ++i)
    e.on_point("nimbus", reading("dev" + std::to_string(i), 20, 0), 0);
  e.on_point("nimbus", reading("dev_unknown", 40, 0), 0);
  EXPECT_EQ(e.counters().evaluated, 10'000u);
  EXPECT_EQ(e.counters().states, 10'000u);
  e.on_point("nimbus", reading("dev42", 40, 1), 0);
  auto events = e.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rule, "hot42");
  EXPECT_EQ(events[0].snapshot.device_id, "dev42");
}

TEST(engine, the_group_lookup_is_asked_once_per_device_until_groups_change) {
  engine e({});
  int calls = 0;
  e.set_group_lookup([&](std::string_view device) {
    ++calls;
    return device == "dev1" ? std::vector<std::string>{"floor-1"} : std::vector<std::string>{};
  });
  e.put_rule(rule_of(R"({"name":"hot","condition":{"type":"threshold","operator":">","value":35},)"
                     R"("selection":{"field":"temperature","groups":["floor-1"]}})"),
             0);
  for (int i = 0; i < 5; ++i) {
    e.on_point("nimbus", reading("dev1", 20, i), 0);
    e.on_point("nimbus", reading("dev2", 20, i), 0);
  }
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(e.counters().evaluated, 5u);
  e.groups_changed(0);
  e.on_point("nimbus", reading("dev1", 20, 10), 0);
  EXPECT_EQ(calls, 3);
}

// ---- engine: operators, reads, bounds -----------------------------------------------------------

TEST(engine, lists_filter_and_page) {
  engine e({});
  e.put_rule(rule_of(hot_rule), 0);
  e.put_rule(rule_of(R"({"name":"cold","severity":"minor","condition":{"type":"threshold",)"
                     R"("operator":"<","value":0},"selection":{"field":"temperature"}})"),
             0);
  for (int i = 1; i <= 6; ++i) e.on_point("nimbus", reading("dev" + std::to_string(i), 40, 0), 0);
  e.on_point("nimbus", reading("dev7", -5, 0), 0);
  EXPECT_EQ(e.acknowledge(2, "alice", "", 1), action_result::done);
  EXPECT_EQ(e.clear(3, "bob", "", 2), action_result::done);
  EXPECT_EQ(e.open_count(), 6u);

  auto ids = [](const std::vector<alert>& alerts) {
    std::vector<std::uint64_t> out;
    for (const auto& a : alerts) out.push_back(a.id);
    return out;
  };
  alert_filter open;
  EXPECT_EQ(ids(e.list(open)), (std::vector<std::uint64_t>{1, 2, 4, 5, 6, 7}));
  alert_filter acknowledged;
  acknowledged.status = alert_status::acknowledged;
  EXPECT_EQ(ids(e.list(acknowledged)), (std::vector<std::uint64_t>{2}));
  alert_filter everything;
  everything.all = true;
  EXPECT_EQ(ids(e.list(everything)).size(), 7u);
  alert_filter by_type;
  by_type.type = "cold";
  EXPECT_EQ(ids(e.list(by_type)), (std::vector<std::uint64_t>{7}));
  alert_filter by_device;
  by_device.device_id = "dev4";
  EXPECT_EQ(ids(e.list(by_device)), (std::vector<std::uint64_t>{4}));
  alert_filter major;
  major.min_severity = severity::major;
  EXPECT_EQ(ids(e.list(major)), (std::vector<std::uint64_t>{1, 2, 4, 5, 6}));
  alert_filter page;
  page.all = true;
  page.limit = 3;
  EXPECT_EQ(ids(e.list(page)), (std::vector<std::uint64_t>{1, 2, 3}));
  page.after_id = 3;
  EXPECT_EQ(ids(e.list(page)), (std::vector<std::uint64_t>{4, 5, 6}));
  page.after_id = 6;
  EXPECT_EQ(ids(e.list(page)), (std::vector<std::uint64_t>{7}));
}

TEST(engine, history_keeps_the_newest_steps_and_who_did_them) {
  engine_settings settings;
  settings.max_history = 3;
  engine e(settings);
  e.put_rule(rule_of(R"({"name":"hot","severity":"warning","condition":{"type":"threshold",)"
                     R"("operator":">","value":35},"selection":{"field":"temperature"},)"
                     R"("escalations":[{"severity":"minor","value":40},)"
                     R"({"severity":"major","value":45},{"severity":"critical","value":50}]})"),
             0);
  e.on_point("nimbus", reading("dev1", 36, 0), 0);
  e.on_point("nimbus", reading("dev1", 41, 1), 0);
  e.on_point("nimbus", reading("dev1", 46, 2), 0);
  e.on_point("nimbus", reading("dev1", 37, 3), 0);  // an update: not in the history
  e.acknowledge(1, "alice", "on it", 4);
  e.clear(1, "bob", "done", 5);
  const alert* a = e.find(1);
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->history.size(), 3u);
  EXPECT_EQ(a->history[0].what, alert_event::escalated);
  EXPECT_EQ(a->history[0].level, severity::major);
  EXPECT_EQ(a->history[1].what, alert_event::acknowledged);
  EXPECT_EQ(a->history[1].who, "alice");
  EXPECT_EQ(a->history[1].note, "on it");
  EXPECT_EQ(a->history[2].what, alert_event::cleared);
  EXPECT_EQ(a->history[2].who, "bob");
  EXPECT_EQ(a->history[2].at_ms, 5);
  EXPECT_EQ(a->count, 4u);
  EXPECT_EQ(a->peak, 46);
  EXPECT_EQ(a->cleared_by, "bob");
  EXPECT_EQ(a->acknowledged_by, "alice");
  auto events = e.take_events();
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[3].what, alert_event::updated);
  EXPECT_EQ(events[3].snapshot.level, severity::major);
  EXPECT_TRUE(e.take_events().empty());
}

TEST(engine, rules_are_listed_by_name_and_removed_once) {
  engine e({});
  e.put_rule(rule_of(R"({"name":"b","condition":{"type":"offline","for":"1m"}})"), 0);
  e.put_rule(rule_of(hot_rule), 0);
  e.put_rule(rule_of(R"({"name":"a","condition":{"type":"no_data","for":"1m"},)"
                     R"("selection":{"field":"x"}})"),
             0);
  std::vector<std::string> names;
  for (const rule* r : e.rules()) names.push_back(r->name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "hot"}));
  ASSERT_NE(e.find_rule("hot"), nullptr);
  EXPECT_EQ(e.find_rule("hot")->when.threshold, 35);
  EXPECT_TRUE(e.remove_rule("b", 0));
  EXPECT_FALSE(e.remove_rule("b", 0));
  EXPECT_EQ(e.find_rule("b"), nullptr);
}

// ---- engine: checkpoints and restarts ---------------------------------------------------------

TEST(engine, dirty_states_are_handed_over_once_and_deletions_as_empty_data) {
  engine e({});
  e.put_rule(rule_of(hot_rule), 0);
  e.on_point("nimbus", reading("dev1", 20, 0), 0);
  e.on_point("nimbus", reading("dev2", 20, 0), 0);
  e.on_point("nimbus", reading("dev1", 21, 1), 0);
  auto first = e.take_dirty_states();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].rule, "hot");
  EXPECT_EQ(first[0].series, "sensor_data,device_id=dev1");
  EXPECT_FALSE(first[0].data.empty());
  EXPECT_TRUE(e.take_dirty_states().empty());
  e.on_point("nimbus", reading("dev2", 22, 2), 0);
  auto second = e.take_dirty_states();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].series, "sensor_data,device_id=dev2");
  e.remove_rule("hot", 3);
  auto third = e.take_dirty_states();
  ASSERT_EQ(third.size(), 2u);
  EXPECT_TRUE(third[0].data.empty());
  EXPECT_TRUE(third[1].data.empty());
}

TEST(engine, urgent_states_are_those_whose_pending_period_began_or_ended) {
  engine e({});
  e.put_rule(rule_of(R"({"name":"hot","condition":{"type":"threshold","operator":">","value":35,)"
                     R"("for":"1m"},"selection":{"field":"temperature"}})"),
             0);
  e.on_point("nimbus", reading("dev1", 20, 0), 0);
  e.on_point("nimbus", reading("dev2", 40, 0), 0);  // its raise pending begins
  EXPECT_TRUE(e.has_dirty_states());
  auto urgent = e.take_dirty_states(true);
  ASSERT_EQ(urgent.size(), 1u);
  EXPECT_EQ(urgent[0].series, "sensor_data,device_id=dev2");
  EXPECT_TRUE(e.take_dirty_states(true).empty());
  // dev1's reading only moved its state: it waits for the next full take, once.
  e.on_point("nimbus", reading("dev2", 20, 1), 0);  // the pending ends
  auto all = e.take_dirty_states();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].series, "sensor_data,device_id=dev1");
  EXPECT_EQ(all[1].series, "sensor_data,device_id=dev2");
  EXPECT_FALSE(e.has_dirty_states());
  EXPECT_TRUE(e.take_dirty_states(true).empty());
}

TEST(engine, restore_ignores_unknown_rules_and_damaged_states_and_never_reuses_ids) {
  engine e({});
  e.put_rule(rule_of(hot_rule), 0);
  e.restore_state({"gone", "sensor_data,device_id=dev1", "x"});
  e.restore_state({"hot", "sensor_data,device_id=dev1", "garbage"});
  e.restore_state({"hot", "sensor_data,device_id=dev1", ""});
  EXPECT_EQ(e.counters().states, 0u);
  alert old;
  old.id = 41;
  old.type = "hot";
  old.device_id = "dev1";
  old.series = "sensor_data,device_id=dev1";
  e.restore_alert(old);
  e.restore_next_id(5);  // older than the alerts: ignored
  EXPECT_EQ(e.next_id(), 42u);
  EXPECT_EQ(e.open_count(), 1u);
  // The restored open alert is the one a raise updates, and its own series may clear it.
  e.on_point("nimbus", reading("dev1", 40, 0), 0);
  e.on_point("nimbus", reading("dev1", 20, 1), 0);
  e.on_point("nimbus", reading("dev1", 40, 2), 0);
  auto events = e.take_events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].what, alert_event::updated);
  EXPECT_EQ(events[0].snapshot.id, 41u);
  EXPECT_EQ(events[1].what, alert_event::cleared);
  EXPECT_EQ(events[2].what, alert_event::raised);
  EXPECT_EQ(events[2].snapshot.id, 42u);
}

// A random script of readings, presence events and operator actions over every kind of rule.
struct script_step {
  enum { point, presence, ack, clear, advance } what;
  std::string device;
  double value = 0;
  bool is_connected = false;
  std::uint64_t id = 0;
  std::int64_t at = 0;
};

std::vector<rule> script_rules() {
  return {
      rule_of(
          R"({"name":"hot","condition":{"type":"threshold","operator":">","value":30,"for":"20s",)"
          R"("clear":{"operator":"<","value":25,"for":"15s"}},"selection":{"field":"t"},)"
          R"("escalations":[{"severity":"critical","value":38},)"
          R"({"severity":"critical","after":"2m"}]})"),
      rule_of(R"({"name":"band","condition":{"type":"range","lo":10,"hi":32,"for":"10s"},)"
              R"("selection":{"field":"t"}})"),
      rule_of(R"({"name":"ewma","condition":{"type":"ewma","half_life":5,"k":2.5,"warmup":4,)"
              R"("clear":{"for":"10s"}},"selection":{"field":"t"}})"),
      rule_of(R"({"name":"mad","condition":{"type":"mad","window":7,"k":2,"floor":0.5,)"
              R"("warmup":5},"selection":{"field":"t"}})"),
      rule_of(R"({"name":"flat","condition":{"type":"flatline","count":3},)"
              R"("selection":{"field":"t"}})"),
      rule_of(R"({"name":"silent","condition":{"type":"no_data","for":"40s"},)"
              R"("selection":{"field":"t"}})"),
      rule_of(R"({"name":"offline","condition":{"type":"offline","for":"30s"}})"),
  };
}

std::vector<script_step> random_script(std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<script_step> steps;
  std::int64_t now = 0;
  for (int i = 0; i < 600; ++i) {
    now += static_cast<std::int64_t>(random() % 8) * 1000;
    script_step s;
    s.at = now;
    s.device = "dev" + std::to_string(random() % 3);
    const auto pick = random() % 20;
    if (pick < 14) {
      s.what = script_step::point;
      const double levels[] = {20, 20, 20, 27, 33, 36, 40, 5};
      s.value =
          levels[random() % 8] + (random() % 3 == 0 ? 0 : static_cast<double>(random() % 5) / 4);
    } else if (pick < 16) {
      s.what = script_step::presence;
      s.is_connected = random() % 2 == 0;
    } else if (pick < 17) {
      s.what = script_step::ack;
      s.id = 1 + random() % 30;
    } else if (pick < 18) {
      s.what = script_step::clear;
      s.id = 1 + random() % 30;
    } else {
      s.what = script_step::advance;
    }
    steps.push_back(s);
  }
  return steps;
}

// What an event says, as comparable text.
std::string describe(const event& e) {
  const alert& a = e.snapshot;
  return std::string(to_string(e.what)) + " " + std::to_string(a.id) + " " + a.type + " " +
         a.device_id + " v=" + std::to_string(a.value) + " p=" + std::to_string(a.peak) +
         " n=" + std::to_string(a.count) + " " + std::string(to_string(a.level)) + " " +
         std::string(to_string(a.status)) + " raised=" + std::to_string(a.raised_ms) +
         " updated=" + std::to_string(a.updated_ms) + " h=" + std::to_string(a.history.size());
}

// with_keys: points come with their series keys and ids, as the store gives them (the engine
// then judges a known series by its bindings).
std::vector<std::string> replay(const std::vector<script_step>& steps,
                                const std::set<std::size_t>& restarts, bool with_keys = false) {
  auto make = [] {
    auto e = std::make_unique<engine>(engine_settings{});
    for (auto& r : script_rules()) e->put_rule(std::move(r), 0);
    return e;
  };
  auto e = make();
  std::map<std::pair<std::string, std::string>, std::string> checkpoint;
  std::vector<std::string> out;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    switch (s.what) {
      case script_step::point: {
        const auto p = point_of(s.device, {{"t", s.value}}, s.at);
        if (with_keys) {
          const std::string key = tsdb::series_key(p);
          e->on_point("nimbus", p, s.at, key, tsdb::series_id(key));
        } else {
          e->on_point("nimbus", p, s.at);
        }
        break;
      }
      case script_step::presence:
        e->on_presence(s.device, s.is_connected, s.at);
        break;
      case script_step::ack:
        out.push_back("ack " +
                      std::to_string(static_cast<int>(e->acknowledge(s.id, "op", "", s.at))));
        break;
      case script_step::clear:
        out.push_back("clear " + std::to_string(static_cast<int>(e->clear(s.id, "op", "", s.at))));
        break;
      case script_step::advance:
        break;
    }
    e->advance(s.at);
    for (const auto& ev : e->take_events()) out.push_back(describe(ev));
    if (restarts.count(i) != 0) {
      for (auto& saved : e->take_dirty_states()) {
        if (saved.data.empty())
          checkpoint.erase({saved.rule, saved.series});
        else
          checkpoint[{saved.rule, saved.series}] = std::move(saved.data);
      }
      alert_filter everything;
      everything.all = true;
      everything.limit = std::numeric_limits<std::size_t>::max();
      auto alerts = e->list(everything);
      const auto next = e->next_id();
      e = make();
      for (auto& a : alerts) e->restore_alert(std::move(a));
      e->restore_next_id(next);
      for (const auto& [key, data] : checkpoint) e->restore_state({key.first, key.second, data});
    }
  }
  return out;
}

TEST(engine, a_restart_anywhere_gives_the_same_events) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    const auto steps = random_script(seed);
    const auto straight = replay(steps, {});
    ASSERT_GT(straight.size(), 20u) << "the script should raise and clear alerts";
    std::mt19937_64 random(seed * 1000);
    std::set<std::size_t> restarts;
    for (int i = 0; i < 40; ++i) restarts.insert(random() % steps.size());
    const auto restarted = replay(steps, restarts);
    ASSERT_EQ(straight.size(), restarted.size()) << "seed " << seed;
    for (std::size_t i = 0; i < straight.size(); ++i)
      ASSERT_EQ(straight[i], restarted[i]) << "seed " << seed << " event " << i;
    // Restarting after every step too.
    std::set<std::size_t> every;
    for (std::size_t i = 0; i < steps.size(); ++i) every.insert(i);
    EXPECT_EQ(replay(steps, every), straight) << "seed " << seed;
    // And with the store's series keys, whose states restored are found by the bindings.
    EXPECT_EQ(replay(steps, {}, true), straight) << "seed " << seed;
    EXPECT_EQ(replay(steps, restarts, true), straight) << "seed " << seed;
  }
}

// A series known to the engine is judged by its bindings (the rules selecting it, with their
// states), bound once per index version: the same events as the index gives, point by point,
// through random rule puts, disables, deletions and group changes, with points across two
// databases, measurements, tags and devices (some rules naming them, some selecting by group).
TEST(engine, bindings_give_the_events_the_index_gives_through_rule_and_group_changes) {
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    std::mt19937_64 random(seed);
    const auto pick = [&random](std::size_t n) { return static_cast<std::size_t>(random() % n); };
    std::map<std::string, std::vector<std::string>> groups;  // device -> its groups
    engine_settings settings;
    settings.max_states = 40;  // some states refused, then made once others go
    engine by_index(settings), by_bindings(settings);
    for (engine* e : {&by_index, &by_bindings})
      e->set_group_lookup([&groups](std::string_view device) {
        auto it = groups.find(std::string(device));
        return it == groups.end() ? std::vector<std::string>{} : it->second;
      });
    const char* conditions[] = {
        R"({"type":"threshold","operator":">","value":60,"for":"2s","clear":{"operator":"<","value":50}})",
        R"({"type":"threshold","operator":"<","value":20})",
        R"({"type":"range","lo":10,"hi":80,"for":"1s"})",
        R"({"type":"ewma","half_life":4,"k":2,"warmup":3})",
        R"({"type":"mad","window":5,"k":2,"floor":1,"warmup":3})",
        R"({"type":"flatline","count":3})",
        R"({"type":"no_data","for":"5s"})",
    };
    const auto random_rule = [&](const std::string& name) {
      std::string selection = std::string(R"("field":")") + (pick(3) == 0 ? "h" : "t") + '"';
      if (pick(3) == 0) selection += R"(,"measurement":"m1")";
      if (pick(4) == 0) selection += R"(,"database":"lab")";
      if (pick(3) == 0) {
        selection += R"(,"devices":["dev)" + std::to_string(pick(4)) + '"';
        if (pick(2) == 0) selection += R"(,"dev)" + std::to_string(pick(4)) + '"';
        selection += ']';
      }
      if (pick(4) == 0) selection += R"(,"groups":["g1"])";
      if (pick(5) == 0) selection += R"(,"tags":{"site":"a"})";
      return rule_of(R"({"name":")" + name + R"(","condition":)" + conditions[pick(7)] +
                     R"(,"selection":{)" + selection + "}}");
    };
    std::int64_t now = 0;
    std::size_t events = 0;
    for (int step = 0; step < 3000; ++step) {
      now += static_cast<std::int64_t>(pick(3)) * 500;
      const std::size_t what = pick(100);
      if (what < 82) {
        std::string line = pick(2) == 0 ? "m1" : "m2";
        line += ",device_id=dev" + std::to_string(pick(5));
        if (pick(3) == 0) line += ",site=a";
        const double levels[] = {5, 15, 30, 45, 55, 65, 90};
        line += " t=" + std::to_string(levels[pick(7)] + static_cast<double>(pick(3)));
        if (pick(2) == 0) line += ",h=" + std::to_string(levels[pick(7)]);
        const std::string database = pick(4) == 0 ? "lab" : "nimbus";
        const auto parsed = tsdb::parse_lines(line, tsdb::precision::ns, now * 1'000'000);
        ASSERT_EQ(parsed.points.size(), 1u) << line;
        const tsdb::point& p = parsed.points.front();
        const std::string key = tsdb::series_key(p);
        by_index.on_point(database, p, now);
        by_bindings.on_point(database, p, now, key, tsdb::series_id(key));
      } else if (what < 90) {
        auto r = random_rule("r" + std::to_string(pick(8)));
        for (engine* e : {&by_index, &by_bindings}) e->put_rule(r, now);
      } else if (what < 94) {
        const std::string name = "r" + std::to_string(pick(8));
        if (const rule* found = by_index.find_rule(name)) {
          rule toggled = *found;
          toggled.enabled = !toggled.enabled;
          for (engine* e : {&by_index, &by_bindings}) e->put_rule(toggled, now);
        }
      } else if (what < 96) {
        const std::string name = "r" + std::to_string(pick(8));
        for (engine* e : {&by_index, &by_bindings}) e->remove_rule(name, now);
      } else if (what < 98) {
        auto& member_of = groups["dev" + std::to_string(pick(5))];
        member_of = member_of.empty() ? std::vector<std::string>{"g1"} : std::vector<std::string>{};
        for (engine* e : {&by_index, &by_bindings}) e->groups_changed(now);
      }
      by_index.advance(now);
      by_bindings.advance(now);
      const auto expected = by_index.take_events();
      const auto got = by_bindings.take_events();
      ASSERT_EQ(got.size(), expected.size()) << "seed " << seed << " step " << step;
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(describe(got[i]), describe(expected[i])) << "seed " << seed << " step " << step;
      events += got.size();
      const auto a = by_index.counters(), b = by_bindings.counters();
      ASSERT_EQ(b.points, a.points) << "seed " << seed << " step " << step;
      ASSERT_EQ(b.evaluated, a.evaluated) << "seed " << seed << " step " << step;
      ASSERT_EQ(b.late, a.late) << "seed " << seed << " step " << step;
      ASSERT_EQ(b.states, a.states) << "seed " << seed << " step " << step;
      ASSERT_EQ(b.states_refused, a.states_refused) << "seed " << seed << " step " << step;
    }
    EXPECT_GT(events, 100u) << "seed " << seed << ": the script should raise and clear alerts";
  }
}

// ---- throughput (printed, not asserted: sanitizer and debug builds are slower) ----------------

TEST(engine, throughput_through_ten_thousand_rules_over_ten_thousand_devices) {
  engine e({});
  const int devices = 10'000;
  // Per-device rules, a third each threshold, ewma and mad, on the field every point carries.
  for (int i = 0; i < devices; ++i) {
    const std::string name = "r" + std::to_string(i);
    const std::string device = "dev" + std::to_string(i);
    const std::string condition = i % 3 == 0 ? R"({"type":"threshold","operator":">","value":40})"
                                  : i % 3 == 1
                                      ? R"({"type":"ewma","half_life":20,"k":4,"warmup":30})"
                                      : R"({"type":"mad","window":30,"k":4,"floor":0.1})";
    e.put_rule(rule_of(R"({"name":")" + name + R"(","condition":)" + condition +
                       R"(,"selection":{"field":"temperature","devices":[")" + device + R"("]}})"),
               0);
  }
  std::mt19937_64 random(3);
  std::normal_distribution<double> noise(20, 1);
  std::vector<tsdb::point> points;
  for (int i = 0; i < devices; ++i)
    points.push_back(
        point_of("dev" + std::to_string(i), {{"temperature", 0.0}, {"humidity", 0.0}}, 0));
  const int rounds = 30;
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    for (auto& p : points) {
      p.timestamp_ns = std::int64_t{round} * 1'000'000'000;
      p.fields[0].second = noise(random);
      p.fields[1].second = noise(random);
      e.on_point("nimbus", p, round * 1000);
    }
    e.advance(round * 1000);
    e.take_events();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto values = e.counters().points;
  EXPECT_EQ(values, std::uint64_t{2} * devices * rounds);
  EXPECT_EQ(e.counters().evaluated, std::uint64_t{devices} * rounds);
  std::cout << "throughput " << static_cast<double>(values) / seconds / 1e6 << " M field values/s ("
            << static_cast<double>(e.counters().evaluated) / seconds / 1e6 << " M evaluations/s), "
            << e.counters().states << " states\n";
}

}  // namespace
}  // namespace nimbus::alerts
