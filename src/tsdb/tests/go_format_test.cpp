// Go's number and time formats, which InfluxDB's answers are written in.
#include "tsdb/go_format.hpp"

#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace nimbus::tsdb::go {
namespace {

std::string f(double v) {
  std::string out;
  append_float(out, v);
  return out;
}

std::string json(double v) {
  std::string out;
  append_json_float(out, v);
  return out;
}

std::string rfc(std::int64_t ns, std::int32_t offset = 0) {
  std::string out;
  append_rfc3339(out, ns, offset);
  return out;
}

TEST(go_format, floats_take_the_shortest_digits_then_zeros) {
  EXPECT_EQ(f(45.0), "45");
  EXPECT_EQ(f(0.5), "0.5");
  EXPECT_EQ(f(-21.53), "-21.53");
  EXPECT_EQ(f(4611686018427387904.0), "4611686018427388000");
  EXPECT_EQ(f(1e21), "1000000000000000000000");
  EXPECT_EQ(f(1.5e-7), "0.00000015");
  EXPECT_EQ(f(0.0), "0");
  EXPECT_EQ(f(std::nan("")), "NaN");
  EXPECT_EQ(f(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(f(-std::numeric_limits<double>::infinity()), "-Inf");
}

TEST(go_format, json_floats_switch_to_exponents_outside_1e_minus_6_to_1e21) {
  EXPECT_EQ(json(12345678901234567168.0), "12345678901234567000");
  EXPECT_EQ(json(1e21), "1e+21");
  EXPECT_EQ(json(1e-7), "1e-7");
  EXPECT_EQ(json(1.5e-10), "1.5e-10");
  EXPECT_EQ(json(0.000001), "0.000001");
  EXPECT_EQ(json(std::nan("")), "null");
}

TEST(go_format, rfc3339_nano_trimmed_in_utc_or_a_zone) {
  EXPECT_EQ(rfc(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc(1'714'557'600'500'000'000), "2024-05-01T10:00:00.5Z");
  EXPECT_EQ(rfc(1'714'557'600'000'000'001), "2024-05-01T10:00:00.000000001Z");
  EXPECT_EQ(rfc(1'714'557'600'000'000'000, 9 * 3600), "2024-05-01T19:00:00+09:00");
  EXPECT_EQ(rfc(1'714'557'600'000'000'000, -(4 * 3600 + 1800)), "2024-05-01T05:30:00-04:30");
  EXPECT_EQ(rfc(-1), "1969-12-31T23:59:59.999999999Z");
}

}  // namespace
}  // namespace nimbus::tsdb::go
