// How well each detector finds what it is meant to find (reference/timeseries.md §6), on seeded
// synthetic sensor series: a daily cycle (a sinusoid over 1,440 one-minute samples) plus gaussian
// noise, with labelled anomalies injected: spikes (single points ±6σ off the cycle; +8σ limit
// violations for the threshold), a level shift that persists (+8σ, late in the series: neither
// ewma nor mad ever takes it into its baseline, so the alert stays open), stuck runs (the sensor
// repeats its last reading) and gaps (no data). Gaps are in every series, unlabelled for all but
// no_data: they must not raise anything else.
//
// A label is detected when an alert of its device is raised inside its window (the sample it
// was injected at, up to a few samples later); a raise outside every window is a false positive.
// Prints precision and recall per detector and expects precision >= 0.8 and recall >= 0.9.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "alerts/engine.hpp"
#include "alerts/rule.hpp"
#include "tsdb/line_protocol.hpp"

namespace nimbus::alerts {
namespace {

constexpr std::int64_t minute_ms = 60'000;
constexpr int samples = 14 * 1440;  // two weeks of one-minute readings per device
constexpr int devices = 8;
constexpr double base = 20, sigma = 1, period = 1440;

enum class anomaly { spike, stuck, gap };

struct scenario {
  double amplitude = 4;           // the daily cycle's, in units of sigma
  double spike_sigmas = 6;        // how far a spike lands off the cycle
  bool is_two_sided = true;       // spikes up and down, or up only
  std::vector<anomaly> injected;  // chosen at random among these (gaps: always some)
  std::vector<anomaly> labelled;  // the injections that are labels for this detector
  bool has_level_shift = false;   // +8 sigma from 40 samples before the end (a label)
  int stuck_length = 30, gap_length = 30;
  // The detection window after an injection, in samples.
  int spike_window = 1, stuck_window = 12, gap_window = 12, shift_window = 2;

  bool is_labelled(anomaly a) const {
    return std::find(labelled.begin(), labelled.end(), a) != labelled.end();
  }
};

struct label {
  int device;
  std::int64_t from_ms, to_ms;
};

struct series {
  std::vector<std::optional<double>> values;  // nullopt: no reading that minute
};

// One device's series and its labels.
series generate(const scenario& s, std::uint64_t seed, int device, std::vector<label>& labels) {
  std::mt19937_64 random(seed * 7919 + static_cast<std::uint64_t>(device));
  std::normal_distribution<double> noise(0, sigma);
  std::uniform_real_distribution<double> uniform(0, 1);
  const double phase = uniform(random) * 2 * std::numbers::pi;
  std::vector<double> expected(samples);
  series out;
  out.values.resize(samples);
  for (int i = 0; i < samples; ++i) {
    expected[i] = base + s.amplitude * sigma * std::sin(2 * std::numbers::pi * i / period + phase);
    out.values[i] = expected[i] + noise(random);
  }
  auto add_label = [&](int at, int window) {
    labels.push_back({device, at * minute_ms, (at + window) * minute_ms});
  };
  const int shift_at = samples - 40;
  const int end = s.has_level_shift ? shift_at - 100 : samples - 100;
  // Anomalies 250 to 750 samples apart, after a day of warm-up.
  for (int i = 1440 + static_cast<int>(random() % 500); i < end;
       i += 250 + static_cast<int>(random() % 500)) {
    auto kind = s.injected[random() % s.injected.size()];
    if (random() % 5 == 0) kind = anomaly::gap;
    switch (kind) {
      case anomaly::spike: {
        const double sign = s.is_two_sided && random() % 2 == 0 ? -1 : 1;
        out.values[i] = expected[i] + sign * s.spike_sigmas * sigma;
        if (s.is_labelled(anomaly::spike)) add_label(i, s.spike_window);
        break;
      }
      case anomaly::stuck:
        for (int j = i; j < i + s.stuck_length; ++j) out.values[j] = out.values[i - 1];
        if (s.is_labelled(anomaly::stuck)) add_label(i, s.stuck_window);
        break;
      case anomaly::gap:
        for (int j = i; j < i + s.gap_length; ++j) out.values[j].reset();
        if (s.is_labelled(anomaly::gap)) add_label(i, s.gap_window);
        break;
    }
  }
  if (s.has_level_shift) {
    for (int j = shift_at; j < samples; ++j)
      if (out.values[j]) *out.values[j] += 8 * sigma;
    add_label(shift_at, s.shift_window);
  }
  return out;
}

struct quality {
  double precision = 0, recall = 0;
  std::size_t labels = 0, raises = 0;
};

quality measure(const std::string& name, std::string_view rule_json, const scenario& s,
                std::uint64_t seed) {
  engine e({});
  auto parsed = parse_rule(rule_json);
  if (auto* error = std::get_if<rule_error>(&parsed)) {
    ADD_FAILURE() << name << ": " << error->field << ": " << error->message;
    return {};
  }
  e.put_rule(std::get<rule>(std::move(parsed)), 0);

  std::vector<label> labels;
  std::vector<series> all;
  for (int d = 0; d < devices; ++d) all.push_back(generate(s, seed, d, labels));

  std::vector<tsdb::point> points(devices);
  for (int d = 0; d < devices; ++d) {
    points[d].measurement = "sensor_data";
    points[d].tags = {{"device_id", "dev" + std::to_string(d)}};
    points[d].fields = {{"temperature", 0.0}};
  }
  std::vector<std::pair<int, std::int64_t>> raises;  // (device, raised_ms)
  for (int i = 0; i < samples; ++i) {
    const std::int64_t now = i * minute_ms;
    for (int d = 0; d < devices; ++d) {
      if (!all[d].values[i]) continue;
      points[d].fields[0].second = *all[d].values[i];
      points[d].timestamp_ns = now * 1'000'000;
      e.on_point("nimbus", points[d], now);
    }
    e.advance(now);
    for (const auto& ev : e.take_events())
      if (ev.what == alert_event::raised)
        raises.emplace_back(std::stoi(ev.snapshot.device_id.substr(3)), ev.snapshot.raised_ms);
  }

  auto inside = [](const label& l, const std::pair<int, std::int64_t>& r) {
    return l.device == r.first && l.from_ms <= r.second && r.second <= l.to_ms;
  };
  std::size_t detected = 0, true_raises = 0;
  for (const auto& l : labels)
    for (const auto& r : raises)
      if (inside(l, r)) {
        ++detected;
        break;
      }
  for (const auto& r : raises)
    for (const auto& l : labels)
      if (inside(l, r)) {
        ++true_raises;
        break;
      }
  quality q;
  q.labels = labels.size();
  q.raises = raises.size();
  q.recall =
      labels.empty() ? 0 : static_cast<double>(detected) / static_cast<double>(labels.size());
  q.precision =
      raises.empty() ? 0 : static_cast<double>(true_raises) / static_cast<double>(raises.size());
  std::printf("detector %s precision %.2f recall %.2f (%zu labels, %zu raises)\n", name.c_str(),
              q.precision, q.recall, q.labels, q.raises);
  return q;
}

void expect_quality(const quality& q, std::string_view name) {
  EXPECT_GT(q.labels, 50u) << name;
  EXPECT_GE(q.precision, 0.8) << name;
  EXPECT_GE(q.recall, 0.9) << name;
}

constexpr std::uint64_t seed = 20240601;

TEST(detector_quality, threshold_on_limit_violations) {
  // A threshold sees only limits: its series has no daily cycle, and spikes cross 5 sigma.
  scenario s;
  s.amplitude = 0;
  s.spike_sigmas = 8;
  s.is_two_sided = false;
  s.injected = s.labelled = {anomaly::spike};
  expect_quality(
      measure("threshold",
              R"({"name":"hot","condition":{"type":"threshold","operator":">","value":25},)"
              R"("selection":{"field":"temperature"}})",
              s, seed),
      "threshold");
}

TEST(detector_quality, ewma_on_spikes_and_a_level_shift) {
  scenario s;
  s.injected = s.labelled = {anomaly::spike};
  s.has_level_shift = true;
  expect_quality(measure("ewma",
                         R"({"name":"anomaly","condition":{"type":"ewma","half_life":15,"k":4.5,)"
                         R"("warmup":60},"selection":{"field":"temperature"}})",
                         s, seed),
                 "ewma");
}

// The MAD is a noisy estimate of sigma (37% efficient): a window of 60 readings misjudges it by
// 15% often enough to cost precision; 75 keeps the cycle's drift inside the window small.
TEST(detector_quality, mad_on_spikes_and_a_level_shift) {
  scenario s;
  s.injected = s.labelled = {anomaly::spike};
  s.has_level_shift = true;
  expect_quality(measure("mad",
                         R"({"name":"anomaly","condition":{"type":"mad","window":75,"k":4.5,)"
                         R"("floor":0.1},"selection":{"field":"temperature"}})",
                         s, seed),
                 "mad");
}

TEST(detector_quality, flatline_on_stuck_runs) {
  scenario s;
  s.injected = s.labelled = {anomaly::stuck};
  expect_quality(measure("flatline",
                         R"({"name":"stuck","condition":{"type":"flatline","count":10},)"
                         R"("selection":{"field":"temperature"}})",
                         s, seed),
                 "flatline");
}

TEST(detector_quality, no_data_on_gaps) {
  scenario s;
  s.injected = s.labelled = {anomaly::gap};
  expect_quality(measure("no_data",
                         R"({"name":"silent","condition":{"type":"no_data","for":"10m"},)"
                         R"("selection":{"field":"temperature"}})",
                         s, seed),
                 "no_data");
}

}  // namespace
}  // namespace nimbus::alerts
