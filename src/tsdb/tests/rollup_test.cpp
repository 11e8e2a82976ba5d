// Rollups: the pure core (buckets of a column, merging, the encoding) and the store's promise
// that read_rollup's buckets plus its raw ranges hold exactly the points read() returns, under
// late points, overwritten points, points still buffered, several files per day and compaction.
#include "tsdb/rollup.hpp"

#include <cmath>
#include <cstdint>
#include <future>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "tsdb/query.hpp"
#include "tsdb/store.hpp"
#include "tsdb/tests/temporary_store.hpp"

namespace nimbus::tsdb {
namespace {

using rollup::bucket;
constexpr std::int64_t s = 1'000'000'000;

// The reducers' view of a set of points, computed the plain way.
struct totals {
  std::uint64_t count = 0;
  double sum = 0;
  std::int64_t integer_sum = 0;
  double m2 = 0;
  double min = 0, max = 0, first = 0, last = 0;
  std::int64_t first_time = 0, last_time = 0;
};

double number(const field_value& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return static_cast<double>(std::get<std::int64_t>(v));
}

totals of_points(const std::vector<std::int64_t>& times, const std::vector<field_value>& values) {
  totals t;
  for (std::size_t i = 0; i < times.size(); ++i) {
    const double x = number(values[i]);
    if (t.count == 0 || x < t.min) t.min = x;
    if (t.count == 0 || x > t.max) t.max = x;
    if (t.count == 0 || times[i] < t.first_time) t.first = x, t.first_time = times[i];
    if (t.count == 0 || times[i] > t.last_time) t.last = x, t.last_time = times[i];
    ++t.count;
    t.sum += x;
    if (const auto* i64 = std::get_if<std::int64_t>(&values[i])) t.integer_sum += *i64;
  }
  const double mean = t.sum / static_cast<double>(t.count);
  for (const auto& v : values) t.m2 += (number(v) - mean) * (number(v) - mean);
  return t;
}

void expect_same(const totals& want, const bucket& got, const std::string& where) {
  EXPECT_EQ(got.count, want.count) << where;
  EXPECT_NEAR(got.sum, want.sum, 1e-9 * std::abs(want.sum) + 1e-9) << where;
  EXPECT_EQ(got.integer_sum, want.integer_sum) << where;
  EXPECT_NEAR(got.m2, want.m2, 1e-9 * std::abs(want.m2) + 1e-9) << where;
  EXPECT_EQ(number(got.min), want.min) << where;
  EXPECT_EQ(number(got.max), want.max) << where;
  EXPECT_EQ(number(got.first), want.first) << where;
  EXPECT_EQ(got.first_time, want.first_time) << where;
  EXPECT_EQ(number(got.last), want.last) << where;
  EXPECT_EQ(got.last_time, want.last_time) << where;
}

TEST(rollup, buckets_of_a_column_per_tier) {
  const std::vector<std::int64_t> times = {0, 30 * s, 59 * s, 60 * s, 3600 * s, 3659 * s};
  const std::vector<field_value> values = {1.0, 3.0, 2.0, 7.0, -1.0, -1.0};
  const auto minutes = rollup::compute(field_type::floating, times, values, rollup::minute_ns);
  ASSERT_EQ(minutes.size(), 3u);
  expect_same(of_points({0, 30 * s, 59 * s}, {1.0, 3.0, 2.0}), minutes[0], "minute 0");
  EXPECT_EQ(minutes[0].max_time, 30 * s);
  EXPECT_EQ(minutes[2].start, 3600 * s);
  EXPECT_EQ(minutes[2].min_time, 3600 * s);  // a tie goes to the earliest point
  const auto hours = rollup::compute(field_type::floating, times, values, rollup::hour_ns);
  ASSERT_EQ(hours.size(), 2u);
  expect_same(of_points({0, 30 * s, 59 * s, 60 * s}, {1.0, 3.0, 2.0, 7.0}), hours[0], "hour 0");
  EXPECT_TRUE(rollup::compute(field_type::string, times, {}, rollup::hour_ns).empty());
}

TEST(rollup, merging_disjoint_parts_equals_the_whole) {
  std::mt19937_64 random(7);
  std::uniform_real_distribution<double> value(-50, 50);
  std::vector<std::int64_t> times;
  std::vector<field_value> values;
  for (int i = 0; i < 300; ++i) {
    times.push_back(i * s);
    values.emplace_back(value(random));
  }
  const auto whole = rollup::compute(field_type::floating, times, values, rollup::day_ns);
  bucket merged;
  for (std::size_t begin = 0; begin < 300; begin += 70) {
    const std::size_t n = std::min<std::size_t>(70, 300 - begin);
    const auto part = rollup::compute(field_type::floating, std::span(times).subspan(begin, n),
                                      std::span(values).subspan(begin, n), rollup::day_ns);
    rollup::merge(merged, part.front());
  }
  expect_same(of_points(times, values), merged, "merged");
  EXPECT_NEAR(merged.m2, whole.front().m2, 1e-9 * whole.front().m2);
}

TEST(rollup, integers_keep_go_sums_and_encode_both_types) {
  const std::vector<std::int64_t> times = {0, 1, 2};
  const std::vector<field_value> ints = {std::int64_t{INT64_MAX}, std::int64_t{1},
                                         std::int64_t{-5}};
  const auto buckets = rollup::compute(field_type::integer, times, ints, rollup::minute_ns);
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_EQ(buckets[0].integer_sum, INT64_MAX - 4);  // wrapped, as Go's int64
  for (const auto type : {field_type::integer, field_type::floating}) {
    const std::vector<field_value> values =
        type == field_type::integer ? ints : std::vector<field_value>{21.53, 0.5, -3.25};
    const auto original = rollup::compute(type, times, values, rollup::minute_ns);
    std::string bytes;
    rollup::encode(type, original, bytes);
    auto decoded = rollup::decode(type, bytes, rollup::minute_ns);
    ASSERT_TRUE(std::holds_alternative<std::vector<bucket>>(decoded));
    EXPECT_EQ(std::get<std::vector<bucket>>(decoded), original);
    EXPECT_TRUE(std::holds_alternative<std::string>(
        rollup::decode(type, bytes.substr(0, bytes.size() - 1), rollup::minute_ns)));
    std::string off_tier;
    rollup::encode(type, rollup::compute(type, {{60 * s}}, {{values[0]}}, rollup::minute_ns),
                   off_tier);
    EXPECT_TRUE(std::holds_alternative<std::string>(
        rollup::decode(type, off_tier, rollup::hour_ns)));  // 1 min is no hour's start
  }
}

// ---- the store

class rollup_store_test : public ::testing::Test {
 protected:
  rollup_store_test() : store_(clock_) {}

  void write(const std::string& lines) { store_.write(lines, "nimbus", precision::s); }

  // read_rollup's buckets merged with the raw ranges' points, against read()'s points, over
  // [from, to] for every tier.
  void expect_rollups_equal_raw(std::int64_t from, std::int64_t to) {
    auto& st = store_.get();
    auto series = st.series("nimbus", "m");
    for (auto& other : st.series("nimbus", "n")) series.push_back(std::move(other));
    ASSERT_FALSE(series.empty());
    for (const auto& info : series)
      for (const std::int64_t tier : rollup::tiers) {
        const std::string where = "series " + info.measurement + " tier " + std::to_string(tier) +
                                  " [" + std::to_string(from) + ", " + std::to_string(to) + "]";
        const auto raw = st.read("nimbus", "", info.id, "v", from, to);
        const auto summary = st.read_rollup("nimbus", "", info.id, "v", tier, from, to);
        bucket total;
        for (const auto& b : summary.buckets) {
          EXPECT_GE(b.start, from) << where;
          rollup::merge(total, b);
        }
        std::size_t raw_points = 0;
        for (const auto& [low, high] : summary.raw) {
          const auto part = st.read("nimbus", "", info.id, "v", low, high);
          raw_points += part.times.size();
          if (part.times.empty()) continue;
          rollup::merge(total, rollup::compute(part.type, part.times, part.values,
                                               std::int64_t{1} << 62)  // one bucket
                                   .front());
        }
        if (raw.times.empty()) {
          EXPECT_EQ(total.count, 0u) << where;
          continue;
        }
        expect_same(of_points(raw.times, raw.values), total, where);
        if (tier == rollup::hour_ns)
          last_raw_share_ = static_cast<double>(raw_points) / static_cast<double>(raw.times.size());
      }
  }

  core::manual_clock clock_;
  testing::temporary_store store_;
  double last_raw_share_ = 1;
};

TEST_F(rollup_store_test, buckets_and_raw_ranges_hold_every_point_once) {
  // Two days of a point every 20 s, flushed every 10.5 hours: hours split between files.
  const std::int64_t day0 = 19'000 * 86'400;  // 2022-01-08, midnight UTC
  std::string lines;
  for (std::int64_t t = day0; t < day0 + 2 * 86'400; t += 20) {
    lines += "m,host=a v=" + std::to_string(static_cast<double>((t * 7919) % 1000) / 10.0) + " " +
             std::to_string(t) + "\n";
    lines += "n,host=b v=" + std::to_string((t * 31) % 977) + "i " + std::to_string(t) + "\n";
    if ((t - day0) % 37'800 == 37'780) {
      write(lines);
      lines.clear();
      store_.get().flush();
    }
  }
  write(lines);
  store_.get().flush();
  expect_rollups_equal_raw(day0 * s, (day0 + 2 * 86'400) * s - 1);
  EXPECT_LT(last_raw_share_, 0.01);  // whole hours come from rollups
  // Ranges cutting buckets.
  expect_rollups_equal_raw(day0 * s + 1, (day0 + 86'400 + 3601) * s);
  expect_rollups_equal_raw((day0 + 59) * s, (day0 + 61) * s);
}

TEST_F(rollup_store_test, overwritten_late_and_buffered_points_are_read_raw) {
  const std::int64_t day0 = 19'000 * 86'400;
  std::string lines;
  for (std::int64_t t = day0; t < day0 + 86'400; t += 30)
    lines += "m,host=a v=" + std::to_string(t % 100) + " " + std::to_string(t) + "\n";
  write(lines);
  store_.get().flush();
  // Overwrites (same times, new values) and late points into hour 3, in a second file.
  write("m,host=a v=1000 " + std::to_string(day0 + 3 * 3600) + "\n" + "m,host=a v=-1000 " +
        std::to_string(day0 + 3 * 3600 + 30) + "\n" + "m,host=a v=5 " +
        std::to_string(day0 + 3 * 3600 + 31) + "\n");
  store_.get().flush();
  // Still in the buffer: hour 5.
  write("m,host=a v=77 " + std::to_string(day0 + 5 * 3600 + 1) + "\n");
  expect_rollups_equal_raw(day0 * s, (day0 + 86'400) * s - 1);
  // Compaction folds the files into one: clean again.
  store_.get().flush();
  store_.get().compact();
  expect_rollups_equal_raw(day0 * s, (day0 + 86'400) * s - 1);
  EXPECT_LT(last_raw_share_, 0.01);
}

// ---- queries: the planner picks rollups and the answers do not change

query_result run_query(store& st, const std::string& text, bool use_rollups,
                       std::size_t max_select_point = 0) {
  query_options options;
  options.limits.max_select_point = max_select_point;
  options.database = "nimbus";
  options.now_ns = (19'003LL * 86'400) * s;
  options.use_rollups = use_rollups;
  std::promise<query_result> answered;
  auto result = answered.get_future();
  execute_query(st, text, options,
                [&answered](query_result r) { answered.set_value(std::move(r)); });
  return result.get();
}

void expect_same_cells(const cell& want, const cell& got, const std::string& where) {
  const auto* w = std::get_if<double>(&want);
  const auto* g = std::get_if<double>(&got);
  if (w != nullptr && g != nullptr) {
    EXPECT_NEAR(*g, *w, 1e-12 * std::abs(*w) + 1e-300) << where;
    return;
  }
  EXPECT_EQ(got, want) << where;
}

TEST_F(rollup_store_test, queries_answer_the_same_from_rollups_and_from_points) {
  const std::int64_t day0 = 19'000 * 86'400;
  std::string lines;
  for (std::int64_t t = day0; t < day0 + 2 * 86'400; t += 15) {
    for (int host = 0; host < 3; ++host)
      lines += "cpu,host=h" + std::to_string(host) +
               " v=" + std::to_string(static_cast<double>((t * (host + 3)) % 997) / 4.0) +
               ",n=" + std::to_string((t * 13 + host) % 1001 - 500) + "i " + std::to_string(t) +
               "\n";
    if ((t - day0) % 20'000 == 0) {
      write(lines);
      lines.clear();
      store_.get().flush();
    }
  }
  write(lines);
  store_.get().flush();
  write("cpu,host=h0 v=999,n=7i " + std::to_string(day0 + 86'400 + 7'200) + "\n");  // overwrite
  store_.get().flush();
  write("cpu,host=h1 v=-3,n=-9i " + std::to_string(day0 + 100'000) + "\n");  // buffered

  const std::string from = std::to_string(day0) + "s";
  const std::string to = std::to_string(day0 + 2 * 86'400) + "s";
  const std::string range = " WHERE time >= " + from + " AND time < " + to;
  const std::string cut = " WHERE time >= " + std::to_string(day0 + 1'234) +
                          "s AND time <= " + std::to_string(day0 + 150'000) + "s";
  const std::vector<std::string> queries = {
      "SELECT mean(v), count(v), sum(n), min(v), max(n), first(v), last(n), spread(v), "
      "stddev(v), sum(v), mean(n), stddev(n) FROM cpu" +
          range + " GROUP BY time(1h)",
      "SELECT mean(v) FROM cpu" + range + " GROUP BY time(1d), host",
      "SELECT mean(v), max(v) FROM cpu" + cut + " GROUP BY time(30m) fill(none)",
      "SELECT count(n), min(n) FROM cpu" + cut + " GROUP BY time(1h, 15m)",
      "SELECT mean(v) FROM cpu" + range + " GROUP BY time(1d) tz('Asia/Seoul')",
      "SELECT mean(v), stddev(v) FROM cpu" + range + " GROUP BY time(1d) tz('America/New_York')",
      "SELECT first(v), last(v), min(v), max(v) FROM cpu" + cut,
      "SELECT count(v), sum(n) FROM cpu" + cut + " GROUP BY host",
      "SELECT mean(v) FROM cpu WHERE host = 'h1' AND time >= " + from + " AND time < " + to +
          " GROUP BY time(2h)",
  };
  // Rollups are what answers: the points would not fit max-select-point, the buckets do.
  const std::string hourly = "SELECT mean(v) FROM cpu" + range + " GROUP BY time(1h)";
  const auto limited = run_query(store_.get(), hourly, false, 20'000);
  ASSERT_TRUE(limited.results[0].error);
  EXPECT_EQ(limited.results[0].error->rfind("max-select-point limit exceeded", 0), 0u);
  const auto from_rollups = run_query(store_.get(), hourly, true, 20'000);
  EXPECT_FALSE(from_rollups.results[0].error) << *from_rollups.results[0].error;

  for (const auto& q : queries) {
    const auto points = run_query(store_.get(), q, false);
    const auto summarised = run_query(store_.get(), q, true);
    ASSERT_FALSE(points.error) << q << ": " << *points.error;
    ASSERT_EQ(points.results.size(), summarised.results.size()) << q;
    const auto& want = points.results[0];
    const auto& got = summarised.results[0];
    ASSERT_FALSE(want.error) << q << ": " << *want.error;
    ASSERT_FALSE(got.error) << q << ": " << *got.error;
    ASSERT_EQ(want.series.size(), got.series.size()) << q;
    ASSERT_FALSE(want.series.empty()) << q;
    for (std::size_t i = 0; i < want.series.size(); ++i) {
      EXPECT_EQ(want.series[i].columns, got.series[i].columns) << q;
      EXPECT_EQ(want.series[i].tags, got.series[i].tags) << q;
      ASSERT_EQ(want.series[i].values.size(), got.series[i].values.size()) << q;
      for (std::size_t r = 0; r < want.series[i].values.size(); ++r)
        for (std::size_t c = 0; c < want.series[i].values[r].size(); ++c)
          expect_same_cells(want.series[i].values[r][c], got.series[i].values[r][c],
                            q + " row " + std::to_string(r) + " column " + std::to_string(c));
    }
  }
}

}  // namespace
}  // namespace nimbus::tsdb
