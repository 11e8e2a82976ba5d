// Matching cost with up to 10^6 filters of mixed shapes: exact, `+` in the middle, `#` at the end.
#include <benchmark/benchmark.h>

#include <random>

#include "broker/subscription_index.hpp"

namespace {

using namespace nimbus::broker;

struct populated_index {
  subscription_index index;
  std::vector<session_ptr> sessions;
  std::vector<std::string> topics;

  explicit populated_index(std::size_t filters) {
    std::mt19937 rng(42);
    const std::size_t devices = std::max<std::size_t>(filters / 4, 1);
    for (std::size_t i = 0; i < 1000; ++i)
      sessions.push_back(std::make_shared<session>("s" + std::to_string(i)));
    for (std::size_t i = 0; i < filters; ++i) {
      auto device = std::to_string(rng() % devices);
      std::string filter;
      switch (i % 4) {
        case 0:
          filter = "fleet/" + device + "/telemetry/temperature";
          break;
        case 1:
          filter = "fleet/" + device + "/+/humidity";
          break;
        case 2:
          filter = "fleet/" + device + "/commands/#";
          break;
        default:
          filter = "fleet/+/status/" + device;
          break;
      }
      index.subscribe(filter, std::nullopt, sessions[i % sessions.size()], {1}, 0);
    }
    for (std::size_t i = 0; i < 1024; ++i) {
      auto device = std::to_string(rng() % devices);
      topics.push_back(i % 2 ? "fleet/" + device + "/telemetry/temperature"
                             : "fleet/" + device + "/commands/reboot");
    }
  }
};

void BM_match(benchmark::State& state) {
  static std::map<std::int64_t, std::unique_ptr<populated_index>> cache;
  auto& slot = cache[state.range(0)];
  if (!slot) slot = std::make_unique<populated_index>(static_cast<std::size_t>(state.range(0)));
  std::vector<subscription_match> out;
  std::vector<service_handler> services;
  std::size_t i = 0;
  std::size_t matched = 0;
  for (auto _ : state) {
    out.clear();
    slot->index.match(slot->topics[i++ & 1023], out, services);
    matched += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["filters"] = static_cast<double>(slot->index.size());
  state.counters["matches_per_lookup"] =
      static_cast<double>(matched) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_match)->Arg(1'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kNanosecond);

void BM_subscribe_unsubscribe(benchmark::State& state) {
  subscription_index index;
  auto s = std::make_shared<session>("s");
  std::size_t i = 0;
  for (auto _ : state) {
    auto filter = "fleet/" + std::to_string(i++ % 10'000) + "/+/temperature";
    index.subscribe(filter, std::nullopt, s, {1}, 0);
    index.unsubscribe(filter, std::nullopt, s.get());
  }
}
BENCHMARK(BM_subscribe_unsubscribe);

}  // namespace

BENCHMARK_MAIN();
