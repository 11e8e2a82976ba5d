// Retry backoff: the bound doubles from the base to the cap, every delay lies within it, the
// same random sequence gives the same delays, and a success starts over.
#include "core/backoff.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace nimbus::core {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, BoundDoublesFromOneSecondToSixty) {
  backoff b([] { return std::uint64_t{0}; });
  const std::int64_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
  for (const auto bound : expected) {
    EXPECT_EQ(b.ceiling(), milliseconds(bound));
    EXPECT_EQ(b.next_delay(), milliseconds(0));
  }
  EXPECT_EQ(b.failures(), 9u);
}

TEST(Backoff, FullJitterSpansZeroToTheBound) {
  // The largest draw gives the bound itself, the smallest 0: [0, bound], both ends included.
  std::vector<std::uint64_t> draws = {1000, 2000, 0, 8001 * 3 + 500};
  std::size_t next = 0;
  backoff b([&] { return draws[next++]; });
  EXPECT_EQ(b.next_delay(), milliseconds(1000));
  EXPECT_EQ(b.next_delay(), milliseconds(2000));
  EXPECT_EQ(b.next_delay(), milliseconds(0));
  EXPECT_EQ(b.next_delay(), milliseconds(500));  // bound 8000: the draw modulo 8001
}

TEST(Backoff, DelaysStayWithinBoundsAndAreDeterministic) {
  std::mt19937_64 first(42), second(42);
  backoff a([&] { return first(); });
  backoff b([&] { return second(); });
  std::int64_t total_at_cap = 0;
  for (int i = 0; i < 2000; ++i) {
    const auto bound = a.ceiling();
    const auto delay = a.next_delay();
    EXPECT_GE(delay.count(), 0);
    EXPECT_LE(delay, bound);
    EXPECT_EQ(delay, b.next_delay());
    if (i >= 10) total_at_cap += delay.count();
  }
  // Uniform over [0, 60 s]: the mean of 1990 draws is near 30 s.
  const double mean = static_cast<double>(total_at_cap) / 1990;
  EXPECT_GT(mean, 27000);
  EXPECT_LT(mean, 33000);
}

TEST(Backoff, ResetStartsAgainFromTheBase) {
  backoff b([] { return ~std::uint64_t{0}; });
  for (int i = 0; i < 5; ++i) b.next_delay();
  EXPECT_EQ(b.ceiling(), milliseconds(32000));
  b.reset();
  EXPECT_EQ(b.failures(), 0u);
  EXPECT_EQ(b.ceiling(), milliseconds(1000));
  EXPECT_LE(b.next_delay(), milliseconds(1000));
}

TEST(Backoff, OptionsAreConfigurableAndSane) {
  backoff b([] { return ~std::uint64_t{0}; }, {milliseconds(100), milliseconds(250)});
  EXPECT_EQ(b.ceiling(), milliseconds(100));
  b.next_delay();
  EXPECT_EQ(b.ceiling(), milliseconds(200));
  b.next_delay();
  EXPECT_EQ(b.ceiling(), milliseconds(250));
  // A zero base counts as 1 ms, a cap under the base as the base.
  backoff odd([] { return std::uint64_t{5}; }, {milliseconds(0), milliseconds(0)});
  EXPECT_EQ(odd.ceiling(), milliseconds(1));
  EXPECT_EQ(odd.next_delay(), milliseconds(1));
  EXPECT_EQ(odd.ceiling(), milliseconds(1));
  // A link down for a very long time: no overflow, still the cap.
  backoff long_down([] { return ~std::uint64_t{0}; });
  for (int i = 0; i < 100'000; ++i) long_down.next_delay();
  EXPECT_EQ(long_down.ceiling(), milliseconds(60000));
}

}  // namespace
}  // namespace nimbus::core
