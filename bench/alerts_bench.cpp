// Alert evaluation throughput (issue 15): points per second through 10,000 rules over 10,000
// devices, a third each threshold (> 35 for 1 min, hysteresis at 33), EWMA z-score and rolling
// median/MAD, one rule per device, on one thread (per core). Each point has the tutorial's
// fields, temperature (watched) and humidity (not); readings are noisy around 22 with a rare
// spike, so alerts are raised, repeated and cleared as they would be. The target is
// >= 1,000,000 points/s per core. Points come with their series keys and ids, as the
// time-series store gives them to the alerts service, which prefetches along them.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "alerts/engine.hpp"

namespace {

using namespace nimbus;

constexpr int devices = 10'000;

alerts::rule rule_for(int i) {
  alerts::rule r;
  r.name = "r" + std::to_string(i);
  r.select.field = "temperature";
  r.select.devices = {"dev" + std::to_string(i)};
  switch (i % 3) {
    case 0:
      r.when.kind = alerts::condition_kind::threshold;
      r.when.op = alerts::comparison::gt;
      r.when.threshold = 35;
      r.when.pending = std::chrono::minutes(1);
      r.when.clear_op = alerts::comparison::lt;
      r.when.clear_threshold = 33;
      break;
    case 1:
      r.when.kind = alerts::condition_kind::ewma;
      r.when.half_life = 20;
      r.when.k = 4;
      r.when.warmup = 30;
      break;
    default:
      r.when.kind = alerts::condition_kind::mad;
      r.when.window = 60;
      r.when.k = 4;
      r.when.floor = 0.05;
      r.when.warmup = 30;
      break;
  }
  return r;
}

std::vector<tsdb::point> make_points(std::size_t count) {
  std::mt19937_64 random(20261203);
  std::normal_distribution<double> noise(22.0, 0.8);
  std::uniform_int_distribution<int> spike(0, 999);
  std::vector<tsdb::point> points(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto& p = points[i];
    p.measurement = "sensor_reading";
    p.tags = {{"device_id", "dev" + std::to_string(i % devices)}};
    const double t = spike(random) == 0 ? 40.0 : noise(random);
    p.fields = {{"temperature", t}, {"humidity", 55.0}};
  }
  return points;
}

void points_through_rules(benchmark::State& state) {
  alerts::engine_settings settings;
  alerts::engine engine(settings);
  const std::int64_t start_ms = 1'790'000'000'000;
  for (int i = 0; i < devices; ++i) engine.put_rule(rule_for(i), start_ms);
  const auto points_template = make_points(200'000);
  auto points = points_template;
  // As the store hands them to the alerts service with each batch.
  std::vector<std::string> keys;
  std::vector<std::uint64_t> ids;
  for (const auto& p : points) {
    keys.push_back(tsdb::series_key(p));
    ids.push_back(tsdb::series_id(keys.back()));
  }
  std::int64_t now_ms = start_ms;
  std::size_t next = 0;
  for (auto _ : state) {
    // One second of a fleet: each device's point 1 s after its last.
    auto& p = points[next];
    if (next % devices == 0) now_ms += 1000;
    p.timestamp_ns = now_ms * 1'000'000;
    engine.prefetch(points, ids, next);  // as the service does, along its batch
    engine.on_point("nimbus", p, now_ms, keys[next], ids[next]);
    if (++next == points.size()) {
      next = 0;
      state.PauseTiming();
      engine.advance(now_ms);
      benchmark::DoNotOptimize(engine.take_events());
      benchmark::DoNotOptimize(engine.take_dirty_states());
      state.ResumeTiming();
    }
  }
  const auto counters = engine.counters();
  state.counters["evaluated"] = static_cast<double>(counters.evaluated);
  state.counters["states"] = static_cast<double>(counters.states);
  state.counters["open_alerts"] = static_cast<double>(engine.open_count());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(points_through_rules)->Unit(benchmark::kNanosecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
