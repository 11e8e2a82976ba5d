// Rule evaluation throughput: the issue's figure is >= 1,000,000 evaluations per second per
// core of `SELECT temperature, humidity, topic(2) AS device FROM 'sensor/+/data' WHERE
// temperature > 30` on a typical sensor payload (one thread here: per core).
#include <benchmark/benchmark.h>

#include <string>
#include <variant>

#include "rules/sql/sql.hpp"

namespace {

using namespace nimbus::rules::sql;

// Parsed once, as a rule is at creation; only evaluation is timed.
void evaluate_rule(benchmark::State& state, const char* sql, const char* payload) {
  const auto parsed = parse(sql);
  const statement& s = std::get<statement>(parsed);
  message_context ctx;
  ctx.topic = "sensor/pi-001/data";
  ctx.client_id = "pi-001";
  ctx.timestamp_ms = 1'700'000'000'000;
  std::size_t fired = 0;
  for (auto _ : state) {
    auto out = evaluate(s, payload, ctx);
    if (auto* produced = std::get_if<std::optional<std::string>>(&out); produced && *produced)
      ++fired;
    benchmark::DoNotOptimize(out);
  }
  state.counters["fired"] = static_cast<double>(fired);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

constexpr const char* sensor_payload =
    R"({"device_id":"pi-001","temperature":35.2,"humidity":61.5,"pressure":1013.2,)"
    R"("timestamp":1700000000,"status":"ok"})";

void issue_rule_fires(benchmark::State& state) {
  evaluate_rule(state,
                "SELECT temperature, humidity, topic(2) AS device FROM 'sensor/+/data' WHERE "
                "temperature > 30",
                sensor_payload);
}
BENCHMARK(issue_rule_fires);

void issue_rule_filtered_out(benchmark::State& state) {
  evaluate_rule(state,
                "SELECT temperature, humidity, topic(2) AS device FROM 'sensor/+/data' WHERE "
                "temperature > 40",
                sensor_payload);
}
BENCHMARK(issue_rule_filtered_out);

void select_star(benchmark::State& state) {
  evaluate_rule(state, "SELECT * FROM 'sensor/+/data'", sensor_payload);
}
BENCHMARK(select_star);

}  // namespace

BENCHMARK_MAIN();
