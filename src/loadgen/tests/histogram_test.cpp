#include "loadgen/histogram.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace nimbus::loadgen {
namespace {

TEST(histogram, quantiles_within_bucket_error) {
  histogram h;
  for (std::uint64_t v = 1; v <= 100'000; ++v) h.record(v * 1000);  // 1 us .. 100 ms
  EXPECT_EQ(h.count(), 100'000U);
  EXPECT_EQ(h.min(), 1000U);
  EXPECT_EQ(h.max(), 100'000'000U);
  auto near = [](std::uint64_t got, double want) {
    return std::abs(static_cast<double>(got) - want) / want < 0.02;
  };
  EXPECT_TRUE(near(h.quantile(0.5), 50'000'000.0)) << h.quantile(0.5);
  EXPECT_TRUE(near(h.quantile(0.99), 99'000'000.0)) << h.quantile(0.99);
  EXPECT_EQ(h.quantile(1.0), 100'000'000U);
  EXPECT_NEAR(h.mean(), 50'000'500.0, 1.0);
}

TEST(histogram, merge_adds_counts) {
  histogram a;
  histogram b;
  a.record(5);
  b.record(7);
  b.record(1'000'000);
  a.merge(b);
  EXPECT_EQ(a.count(), 3U);
  EXPECT_EQ(a.min(), 5U);
  EXPECT_EQ(a.max(), 1'000'000U);
  EXPECT_EQ(a.quantile(0.0), 5U);
}

// The exported buckets hold every value, in ascending order, and the same quantiles come out
// of them by the rank rule bench/run uses to pool runs.
TEST(histogram, buckets_export_every_value_in_order) {
  histogram h;
  for (std::uint64_t v = 1; v <= 100'000; v += 7) h.record(v * 1000);
  std::uint64_t total = 0;
  std::uint64_t previous = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> buckets;
  h.for_each_bucket([&](std::uint64_t upper, std::uint64_t count) {
    EXPECT_GT(upper, previous);
    previous = upper;
    total += count;
    buckets.emplace_back(upper, count);
  });
  EXPECT_EQ(total, h.count());
  EXPECT_EQ(previous, h.max());
  auto rank = static_cast<std::uint64_t>(0.99 * static_cast<double>(total - 1)) + 1;
  std::uint64_t seen = 0;
  for (auto [upper, count] : buckets) {
    seen += count;
    if (seen >= rank) {
      EXPECT_EQ(upper, h.quantile(0.99));
      break;
    }
  }
}

}  // namespace
}  // namespace nimbus::loadgen
