// Column codecs: bit-exact round trips over edge sets, the documented byte layouts, sizes on
// typical series (against the measured anchors in the time-series reference: InfluxDB 1.6.7 kept
// 6.43 bytes/value for noisy 2-decimal readings, 0.27 for smooth ones), and damaged columns:
// every cut refused, every bit flip either refused or decoded to values the codec carries.
#include "tsdb/codecs.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nimbus::tsdb::codec {
namespace {

constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::uint64_t uint64_max = std::numeric_limits<std::uint64_t>::max();
constexpr std::int64_t second = 1'000'000'000;
constexpr std::int64_t base_time = 1'700'000'000 * second;  // 2023-11-14, in ns

// splitmix64: a fixed sequence on every platform, so the sizes asserted below are sizes of known
// data (they were worked out with a model of the encoders).
class sequence {
 public:
  explicit sequence(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::int64_t between(std::int64_t low, std::int64_t high) {
    return low + static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(high - low + 1));
  }

 private:
  std::uint64_t state_;
};

double from_bits(std::uint64_t bits) {
  return std::bit_cast<double>(bits);
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  for (const char c : bytes) {
    hex.push_back(digits[static_cast<std::uint8_t>(c) >> 4]);
    hex.push_back(digits[static_cast<std::uint8_t>(c) & 15]);
  }
  return hex;
}

// "41 03 39" -> the bytes; spaces are ignored.
std::string from_hex(std::string_view hex) {
  std::string bytes;
  int high = -1;
  for (const char c : hex) {
    if (c == ' ') continue;
    const int nibble = c <= '9' ? c - '0' : c - 'a' + 10;
    if (high < 0) {
      high = nibble;
    } else {
      bytes.push_back(static_cast<char>(high * 16 + nibble));
      high = -1;
    }
  }
  return bytes;
}

// Each column type's functions, and a form of its values that compares bit for bit.
struct timestamp_codec {
  using value_type = std::int64_t;
  static constexpr std::string_view name = "timestamps";
  static void encode(const std::vector<value_type>& values, std::string& out) {
    encode_timestamps(values, out);
  }
  static decoded<value_type> decode(std::string_view column, const decode_limits& limits = {}) {
    return decode_timestamps(column, limits);
  }
  static std::vector<value_type> comparable(const std::vector<value_type>& values) {
    return values;
  }
};

struct float_codec {
  using value_type = double;
  static constexpr std::string_view name = "floats";
  static void encode(const std::vector<value_type>& values, std::string& out) {
    encode_floats(values, out);
  }
  static decoded<value_type> decode(std::string_view column, const decode_limits& limits = {}) {
    return decode_floats(column, limits);
  }
  static std::vector<std::uint64_t> comparable(const std::vector<value_type>& values) {
    std::vector<std::uint64_t> bits;
    for (const double value : values) bits.push_back(std::bit_cast<std::uint64_t>(value));
    return bits;
  }
};

struct integer_codec {
  using value_type = std::int64_t;
  static constexpr std::string_view name = "integers";
  static void encode(const std::vector<value_type>& values, std::string& out) {
    encode_integers(values, out);
  }
  static decoded<value_type> decode(std::string_view column, const decode_limits& limits = {}) {
    return decode_integers(column, limits);
  }
  static std::vector<value_type> comparable(const std::vector<value_type>& values) {
    return values;
  }
};

struct unsigned_codec {
  using value_type = std::uint64_t;
  static constexpr std::string_view name = "unsigned";
  static void encode(const std::vector<value_type>& values, std::string& out) {
    encode_unsigned(values, out);
  }
  static decoded<value_type> decode(std::string_view column, const decode_limits& limits = {}) {
    return decode_unsigned(column, limits);
  }
  static std::vector<value_type> comparable(const std::vector<value_type>& values) {
    return values;
  }
};

struct boolean_codec {
  using value_type = bool;
  static constexpr std::string_view name = "booleans";
  static void encode(const std::vector<value_type>& values, std::string& out) {
    encode_booleans(values, out);
  }
  static decoded<value_type> decode(std::string_view column, const decode_limits& limits = {}) {
    return decode_booleans(column, limits);
  }
  static std::string comparable(const std::vector<value_type>& values) {
    std::string text;
    for (const bool value : values) text.push_back(value ? '1' : '0');
    return text;
  }
};

struct string_codec {
  using value_type = std::string;
  static constexpr std::string_view name = "strings";
  static void encode(const std::vector<value_type>& values, std::string& out) {
    encode_strings(std::span<const std::string>(values), out);
  }
  static decoded<value_type> decode(std::string_view column, const decode_limits& limits = {}) {
    return decode_strings(column, limits);
  }
  static std::vector<value_type> comparable(const std::vector<value_type>& values) {
    return values;
  }
};

template <class Codec>
std::string encoded(const std::vector<typename Codec::value_type>& values) {
  std::string column;
  Codec::encode(values, column);
  return column;
}

template <class Value>
std::optional<errc> reason_of(const decoded<Value>& result) {
  if (const auto* error = std::get_if<decode_error>(&result)) return error->reason;
  return std::nullopt;
}

template <class Codec>
void expect_round_trip(const std::vector<typename Codec::value_type>& values,
                       const std::string& label) {
  const std::string column = encoded<Codec>(values);
  const auto result = Codec::decode(column);
  const auto* values_back = std::get_if<0>(&result);
  ASSERT_NE(values_back, nullptr) << Codec::name << " " << label << ": "
                                  << std::get<decode_error>(result).what;
  EXPECT_EQ(Codec::comparable(*values_back), Codec::comparable(values))
      << Codec::name << " " << label;
}

// Without a checksum (the block layer's CRC32C) a flipped bit can still decode; what decodes must
// then be values the codec carries faithfully, and nothing may crash.
template <class Codec>
void expect_damage_handled(const std::string& column, const std::string& label) {
  for (std::size_t size = 0; size < column.size(); ++size) {
    const auto result = Codec::decode(std::string_view(column).substr(0, size));
    EXPECT_TRUE(std::holds_alternative<decode_error>(result))
        << Codec::name << " " << label << " cut to " << size << " bytes";
  }
  for (const std::string_view extra : {std::string_view("\0", 1), std::string_view("\x01\x02")}) {
    const auto result = Codec::decode(column + std::string(extra));
    EXPECT_TRUE(std::holds_alternative<decode_error>(result))
        << Codec::name << " " << label << " with " << extra.size() << " more bytes";
  }
  for (std::size_t bit = 0; bit < column.size() * 8; ++bit) {
    std::string damaged = column;
    damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
    const auto result = Codec::decode(damaged);
    if (const auto* error = std::get_if<decode_error>(&result)) {
      EXPECT_FALSE(error->what.empty());
      continue;
    }
    const auto& values = std::get<0>(result);
    const auto again = Codec::decode(encoded<Codec>(values));
    ASSERT_EQ(reason_of(again), std::nullopt) << Codec::name << " " << label << " bit " << bit;
    EXPECT_EQ(Codec::comparable(std::get<0>(again)), Codec::comparable(values))
        << Codec::name << " " << label << " bit " << bit;
  }
}

template <class Codec>
void check_damage(const std::vector<typename Codec::value_type>& values, scheme expected,
                  std::set<scheme>& covered, const std::string& label) {
  const std::string column = encoded<Codec>(values);
  EXPECT_EQ(scheme_of(column), expected) << Codec::name << " " << label;
  covered.insert(expected);
  expect_damage_handled<Codec>(column, label);
}

double bytes_per_value(const std::string& column, std::size_t count) {
  return static_cast<double>(column.size()) / static_cast<double>(count);
}

double bits_per_value(const std::string& column, std::size_t count) {
  return 8 * bytes_per_value(column, count);
}

// ---- typical series -----------------------------------------------------------------------

std::vector<std::int64_t> regular_times(std::size_t count, std::int64_t interval) {
  std::vector<std::int64_t> times;
  for (std::size_t i = 0; i < count; ++i)
    times.push_back(base_time + static_cast<std::int64_t>(i) * interval);
  return times;
}

// Every 10 s, each reading up to 50 ms early or late, millisecond precision.
std::vector<std::int64_t> jittered_times(std::size_t count) {
  sequence rng(1);
  std::vector<std::int64_t> times;
  for (std::size_t i = 0; i < count; ++i)
    times.push_back(base_time + static_cast<std::int64_t>(i) * 10 * second +
                    rng.between(-50, 50) * 1'000'000);
  return times;
}

// Every 15 s at second precision (the reference workload), one reading in 20 a second late.
std::vector<std::int64_t> slipping_times(std::size_t count) {
  sequence rng(2);
  std::vector<std::int64_t> times;
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t slip = rng.between(0, 19) == 0 ? 1 : 0;
    times.push_back((1'700'000'000 + 15 * static_cast<std::int64_t>(i) + slip) * second);
  }
  return times;
}

// Every second from a clock with nanosecond noise under 1 ms.
std::vector<std::int64_t> noisy_clock_times(std::size_t count) {
  sequence rng(3);
  std::vector<std::int64_t> times;
  for (std::size_t i = 0; i < count; ++i)
    times.push_back(base_time + static_cast<std::int64_t>(i) * second + rng.between(0, 999'999));
  return times;
}

// A 2-decimal temperature drifting by at most 0.02 per reading.
std::vector<double> smooth_temperatures(std::size_t count) {
  sequence rng(5);
  std::int64_t centi = 2150;
  std::vector<double> values;
  for (std::size_t i = 0; i < count; ++i) {
    centi += rng.between(-2, 2);
    values.push_back(static_cast<double>(centi) / 100.0);
  }
  return values;
}

// A 2-decimal temperature with +-0.5 of uniform noise around a slow drift.
std::vector<double> noisy_temperatures(std::size_t count) {
  sequence rng(6);
  std::int64_t drift = 2150;
  std::vector<double> values;
  for (std::size_t i = 0; i < count; ++i) {
    drift += rng.between(-1, 1);
    values.push_back(static_cast<double>(drift + rng.between(-50, 50)) / 100.0);
  }
  return values;
}

// A 1-decimal humidity with +-2.0 of noise.
std::vector<double> noisy_humidity(std::size_t count) {
  sequence rng(7);
  std::vector<double> values;
  for (std::size_t i = 0; i < count; ++i)
    values.push_back(static_cast<double>(452 + rng.between(-20, 20)) / 10.0);
  return values;
}

std::vector<double> uniform_doubles(std::size_t count) {
  sequence rng(8);
  std::vector<double> values;
  for (std::size_t i = 0; i < count; ++i)
    values.push_back(static_cast<double>(rng.next() >> 11) * 0x1p-53);
  return values;
}

// A reading that drifts by small full-precision steps (a filter's output): neighbours share
// their sign, exponent and high mantissa bits, which XOR drops.
std::vector<double> drifting_doubles(std::size_t count) {
  sequence rng(11);
  std::vector<double> values;
  // Too small for 15 decimals: not a decimal column.
  double value = 1e-5 / 3.0;
  for (std::size_t i = 0; i < count; ++i) {
    value += static_cast<double>(rng.between(-1000, 1000)) * 1e-18 / 7.0;
    values.push_back(value);
  }
  return values;
}

// Any bit pattern: NaNs with payloads, infinities, denormals included.
std::vector<double> random_bit_doubles(std::size_t count) {
  sequence rng(9);
  std::vector<double> values;
  for (std::size_t i = 0; i < count; ++i) values.push_back(from_bits(rng.next()));
  return values;
}

std::vector<std::int64_t> gauge_values(std::size_t count) {
  sequence rng(10);
  std::vector<std::int64_t> values;
  for (std::size_t i = 0; i < count; ++i) values.push_back(rng.between(-1000, 1000));
  return values;
}

std::vector<std::uint64_t> random_unsigned(std::size_t count) {
  sequence rng(11);
  std::vector<std::uint64_t> values;
  for (std::size_t i = 0; i < count; ++i) values.push_back(rng.next());
  return values;
}

std::vector<std::string> machine_states(std::size_t count) {
  sequence rng(12);
  const std::string states[] = {"idle", "running", "fault"};
  std::vector<std::string> values;
  for (std::size_t i = 0; i < count; ++i) values.push_back(states[rng.between(0, 2)]);
  return values;
}

std::vector<bool> coin_flips(std::size_t count) {
  sequence rng(13);
  std::vector<bool> values;
  for (std::size_t i = 0; i < count; ++i) values.push_back((rng.next() & 1) != 0);
  return values;
}

// ---- round trips --------------------------------------------------------------------------

TEST(tsdb_codecs, timestamps_round_trip) {
  std::vector<std::vector<std::int64_t>> sets = {
      {},
      {0},
      {int64_min},
      {int64_max},
      {int64_min, int64_max},
      {int64_max, int64_min},
      {int64_min, int64_max, int64_min, int64_max, 0, -1, 1},
      {5, 5, 5, 5},
      {-1, -1000, -1'000'000, -1'000'000'000'000'000'000},  // before 1970, descending
      {0, 1'000'000'000'000'000'000, 1'000'000'000'000'000'001, -1'000'000'000'000'000'000, 7},
      {base_time, base_time + second, base_time + 2 * second},
      {1000, 2000, 3000},
      regular_times(1000, second),
      regular_times(1000, 10 * second),
      regular_times(999, 1),
      jittered_times(1000),
      slipping_times(1000),
      noisy_clock_times(1000),
  };
  sequence rng(21);
  std::vector<std::int64_t> unsorted;
  std::vector<std::int64_t> one_day_shuffled;
  for (int i = 0; i < 500; ++i) {
    unsorted.push_back(static_cast<std::int64_t>(rng.next()));
    one_day_shuffled.push_back(base_time + rng.between(0, 86'400 * second));
  }
  sets.push_back(unsorted);
  sets.push_back(one_day_shuffled);
  for (std::size_t i = 0; i < sets.size(); ++i)
    expect_round_trip<timestamp_codec>(sets[i], "set " + std::to_string(i));
}

TEST(tsdb_codecs, floats_round_trip_bit_exact) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double denormal = std::numeric_limits<double>::denorm_min();
  std::vector<std::vector<double>> sets = {
      {},
      {0.0},
      {-0.0},
      {0.0, -0.0, 0.0},
      {nan},
      {from_bits(0x7ff0000000000001ULL)},  // signalling NaN
      {from_bits(0xfff8000000000123ULL)},  // negative NaN with a payload
      {inf, -inf},
      {denormal, -denormal, from_bits(0x000fffffffffffffULL), std::numeric_limits<double>::min()},
      {std::numeric_limits<double>::max(), std::numeric_limits<double>::lowest(), 1e308, -1e308},
      {21.53, 21.5, 22.01},
      {0.1, 0.2, 0.1 + 0.2},
      {21.5, -0.0, 22.0},
      {1.0, 2.0, 3.0, -4.0},
      {9007199254740993.0, 1e17, -4.6e18, 4.7e18},
      {1e-15, 1.5e-15, 0.123456789012345, 123456.000001},
      {nan, 21.5, inf, 21.53, -inf, 0.0},
      {1.0, -1.0, 1e300, -1e-300, 1.0},
      smooth_temperatures(1000),
      noisy_temperatures(1000),
      noisy_humidity(1000),
      uniform_doubles(1000),
      random_bit_doubles(1000),
  };
  for (std::size_t i = 0; i < sets.size(); ++i)
    expect_round_trip<float_codec>(sets[i], "set " + std::to_string(i));
}

TEST(tsdb_codecs, floats_use_decimals_only_when_bit_exact) {
  EXPECT_EQ(scheme_of(encoded<float_codec>({21.53, 21.5, 22.01})), scheme::floats_decimal);
  EXPECT_EQ(scheme_of(encoded<float_codec>(smooth_temperatures(100))), scheme::floats_decimal);
  // -0.0, NaN and infinities have no decimal form: the column falls back to XOR or raw.
  EXPECT_NE(scheme_of(encoded<float_codec>({21.5, -0.0, 22.0})), scheme::floats_decimal);
  EXPECT_NE(scheme_of(encoded<float_codec>({21.5, std::numeric_limits<double>::quiet_NaN()})),
            scheme::floats_decimal);
  EXPECT_NE(scheme_of(encoded<float_codec>({21.5, std::numeric_limits<double>::infinity()})),
            scheme::floats_decimal);
  EXPECT_NE(scheme_of(encoded<float_codec>(uniform_doubles(100))), scheme::floats_decimal);
}

// What a line protocol parser makes of "21.53" is the double nearest to 21.53, which is what
// 2153 / 100.0 rounds to: text with 2 decimals is stored as mantissas with exponent 2.
TEST(tsdb_codecs, parsed_decimal_text_is_stored_as_decimals) {
  sequence rng(14);
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) {
    const long long centi = rng.between(-4000, 6000);
    char text[64];
    std::snprintf(text, sizeof text, "%s%lld.%02lld", centi < 0 ? "-" : "", std::llabs(centi) / 100,
                  std::llabs(centi) % 100);
    values.push_back(std::strtod(text, nullptr));
  }
  const std::string column = encoded<float_codec>(values);
  ASSERT_EQ(scheme_of(column), scheme::floats_decimal);
  EXPECT_EQ(column[3], 2) << "exponent, after the scheme and a 2-byte count";
  expect_round_trip<float_codec>(values, "parsed");
}

TEST(tsdb_codecs, integers_round_trip) {
  std::vector<std::vector<std::int64_t>> sets = {
      {},
      {0},
      {int64_min},
      {int64_max},
      {int64_min, int64_max, int64_min, int64_max},
      {int64_max, int64_max - 1, int64_min + 1, int64_min},
      {1, -1, 2, -2, 3, -3, 1000000, -1000000},
      {int64_min, 0, int64_max, 0, int64_min},
      {(std::int64_t{1} << 59) - 1, std::int64_t{1} << 59, std::int64_t{1} << 60,
       -(std::int64_t{1} << 60), (std::int64_t{1} << 62)},
      gauge_values(1000),
  };
  std::vector<std::int64_t> counter;
  std::vector<std::int64_t> powers;
  for (std::int64_t i = 0; i < 1000; ++i) counter.push_back(i);
  for (int shift = 0; shift < 63; ++shift) {
    powers.push_back(std::int64_t{1} << shift);
    powers.push_back(-(std::int64_t{1} << shift));
  }
  sequence rng(22);
  std::vector<std::int64_t> arbitrary;
  for (int i = 0; i < 500; ++i) arbitrary.push_back(static_cast<std::int64_t>(rng.next()));
  sets.push_back(counter);
  sets.push_back(powers);
  sets.push_back(arbitrary);
  for (std::size_t i = 0; i < sets.size(); ++i)
    expect_round_trip<integer_codec>(sets[i], "set " + std::to_string(i));
}

TEST(tsdb_codecs, unsigned_round_trip) {
  std::vector<std::vector<std::uint64_t>> sets = {
      {},
      {0},
      {uint64_max},
      {0, uint64_max, 0, uint64_max},
      {uint64_max - 1, uint64_max, 0, 1},  // wraps
      {(std::uint64_t{1} << 60) - 1, std::uint64_t{1} << 60, std::uint64_t{1} << 63},
      random_unsigned(1000),
  };
  std::vector<std::uint64_t> counter;
  std::vector<std::uint64_t> zeros(1000, 0);
  for (std::uint64_t i = 0; i < 1000; ++i) counter.push_back((std::uint64_t{1} << 62) + i * 7);
  sets.push_back(counter);
  sets.push_back(zeros);
  for (std::size_t i = 0; i < sets.size(); ++i)
    expect_round_trip<unsigned_codec>(sets[i], "set " + std::to_string(i));
}

TEST(tsdb_codecs, booleans_round_trip) {
  const std::vector<std::vector<bool>> sets = {
      {},
      {true},
      {false},
      {true, false, true, false, true, false, true},
      {true, true, true, true, true, true, true, true},
      {false, false, false, false, false, false, false, false, true},
      coin_flips(1000),
  };
  for (std::size_t i = 0; i < sets.size(); ++i)
    expect_round_trip<boolean_codec>(sets[i], "set " + std::to_string(i));
  // The span overload writes the same bytes as the vector<bool> one.
  const bool flags[] = {true, false, true, true, false, false, false, false, true};
  std::string column;
  encode_booleans(std::span<const bool>(flags), column);
  EXPECT_EQ(column,
            encoded<boolean_codec>({true, false, true, true, false, false, false, false, true}));
}

TEST(tsdb_codecs, strings_round_trip) {
  std::vector<std::string> distinct;
  for (int i = 0; i < 300; ++i) distinct.push_back("msg-" + std::to_string(i));
  const std::string long_text(100'000, 'x');
  const std::vector<std::vector<std::string>> sets = {
      {},
      {""},
      {"", ""},
      {std::string("bc\0\xff", 4), std::string(1, '\0'), "dev-0042"},
      std::vector<std::string>(1000, "dev-0042"),
      machine_states(1000),
      distinct,
      {long_text, "short", long_text, long_text},
  };
  for (std::size_t i = 0; i < sets.size(); ++i)
    expect_round_trip<string_codec>(sets[i], "set " + std::to_string(i));
  // The string_view overload writes the same bytes as the std::string one.
  const std::string_view views[] = {"a", "b", "a", "a"};
  std::string column;
  encode_strings(std::span<const std::string_view>(views), column);
  EXPECT_EQ(column, encoded<string_codec>({"a", "b", "a", "a"}));
}

// ---- layouts ------------------------------------------------------------------------------

// The layouts of codecs.cpp's header comment, byte for byte.
TEST(tsdb_codecs, layouts_are_as_documented) {
  // A simple8b word of three 2-bit values (selector 3), little-endian.
  EXPECT_EQ(to_hex(encoded<unsigned_codec>({1, 2, 3})), "41033900000000000030");
  // 240 zeros: one word, selector 0.
  EXPECT_EQ(to_hex(encoded<unsigned_codec>(std::vector<std::uint64_t>(240, 0))),
            "41f0010000000000000000");
  // First value raw, deltas over 10^3, first delta 1 (zigzag 2), one delta-of-delta 0 in buckets.
  EXPECT_EQ(to_hex(encoded<timestamp_codec>({1000, 2000, 3000})), "1203e803000000000000030200");
  // Mantissas 2153, 2150, 2201 at exponent 2, zigzagged into one word of 15-bit values.
  EXPECT_EQ(to_hex(encoded<float_codec>({21.53, 21.5, 22.01})), "21030231d21066884c0400c0");
  EXPECT_EQ(
      to_hex(encoded<boolean_codec>({true, false, true, true, false, false, false, false, true})),
      "51090d01");
  EXPECT_EQ(to_hex(encoded<string_codec>({"ab"})), "6101026162");
  EXPECT_EQ(to_hex(encoded<timestamp_codec>({})), "1100");
  EXPECT_EQ(to_hex(encoded<float_codec>({})), "2200");
}

// ---- sizes --------------------------------------------------------------------------------

TEST(tsdb_codecs, timestamp_sizes) {
  constexpr std::size_t count = 1000;
  // Regular: 13 bytes of header (scheme, count, first, exponent, first delta), then 998 zero
  // delta-of-deltas in 5 simple8b words.
  for (const std::int64_t interval : {second, 10 * second, 15 * second}) {
    const std::string column = encoded<timestamp_codec>(regular_times(count, interval));
    EXPECT_EQ(scheme_of(column), scheme::timestamps_simple8b);
    EXPECT_EQ(column.size(), 53u) << interval;
    EXPECT_LE(bits_per_value(column, count), 0.5);
  }
  const std::string jittered = encoded<timestamp_codec>(jittered_times(count));
  EXPECT_EQ(scheme_of(jittered), scheme::timestamps_simple8b);
  EXPECT_LE(bits_per_value(jittered, count), 10.0);  // 9.7
  const std::string slipping = encoded<timestamp_codec>(slipping_times(count));
  EXPECT_EQ(scheme_of(slipping), scheme::timestamps_buckets);
  EXPECT_LE(bits_per_value(slipping, count), 2.0);  // 1.9
  const std::string noisy = encoded<timestamp_codec>(noisy_clock_times(count));
  EXPECT_LE(bits_per_value(noisy, count), 32.0);  // 30.1
}

TEST(tsdb_codecs, float_sizes) {
  constexpr std::size_t count = 1000;
  const std::string smooth = encoded<float_codec>(smooth_temperatures(count));
  EXPECT_EQ(scheme_of(smooth), scheme::floats_decimal);
  EXPECT_LE(bytes_per_value(smooth, count), 0.45);  // 0.41
  // InfluxDB 1.6.7 kept 6.43 bytes/value for such readings (timestamps included); Gorilla XOR
  // alone takes 6.4 here.
  const std::string noisy = encoded<float_codec>(noisy_temperatures(count));
  EXPECT_EQ(scheme_of(noisy), scheme::floats_decimal);
  EXPECT_LE(bytes_per_value(noisy, count), 1.2);  // 1.10
  const std::string humidity = encoded<float_codec>(noisy_humidity(count));
  EXPECT_LE(bytes_per_value(humidity, count), 1.0);  // 0.90
  const std::string drifting = encoded<float_codec>(drifting_doubles(count));
  EXPECT_EQ(scheme_of(drifting), scheme::floats_xor);
  EXPECT_LE(bytes_per_value(drifting, count), 6.0);
  // Noise XOR cannot shorten by a byte a value (7.26 here): byte planes, the two high ones (sign,
  // exponent) packed in a zstd frame of their own, the six low ones as they are.
  const std::string uniform = encoded<float_codec>(uniform_doubles(count));
  EXPECT_EQ(scheme_of(uniform), scheme::floats_planes);
  EXPECT_LE(bytes_per_value(uniform, count), 7.3);
  // Random bit patterns: the high planes do not pack, so the planes stay as they are.
  const std::string bit_patterns = encoded<float_codec>(random_bit_doubles(count));
  EXPECT_EQ(scheme_of(bit_patterns), scheme::floats_split);
  EXPECT_EQ(bit_patterns.size(), 8 * count + 3);
}

TEST(tsdb_codecs, integer_boolean_and_string_sizes) {
  constexpr std::size_t count = 1000;
  std::vector<std::int64_t> counter;
  for (std::int64_t i = 0; i < 1000; ++i) counter.push_back(i);
  const std::string counted = encoded<integer_codec>(counter);
  EXPECT_EQ(scheme_of(counted), scheme::integers_delta);
  EXPECT_LE(bytes_per_value(counted, count), 0.3);  // 0.28
  const std::string gauge = encoded<integer_codec>(gauge_values(count));
  EXPECT_LE(bytes_per_value(gauge, count), 1.7);  // 1.60
  const std::string wide = encoded<unsigned_codec>(random_unsigned(count));
  EXPECT_EQ(scheme_of(wide), scheme::unsigned_raw);
  EXPECT_EQ(wide.size(), 8 * count + 3);
  EXPECT_EQ(encoded<boolean_codec>(coin_flips(count)).size(), count / 8 + 3);

  const std::string tag = encoded<string_codec>(std::vector<std::string>(count, "dev-0042"));
  EXPECT_EQ(scheme_of(tag), scheme::strings_dictionary);
  EXPECT_LE(bytes_per_value(tag, count), 0.06);  // 0.053
  const std::string states = encoded<string_codec>(machine_states(count));
  EXPECT_EQ(scheme_of(states), scheme::strings_dictionary);
  EXPECT_LE(bytes_per_value(states, count), 0.3);  // 0.295
  std::vector<std::string> distinct;
  for (std::size_t i = 0; i < count; ++i) distinct.push_back("msg-" + std::to_string(i));
  EXPECT_EQ(scheme_of(encoded<string_codec>(distinct)), scheme::strings_raw);
}

// ---- damage -------------------------------------------------------------------------------

TEST(tsdb_codecs, damaged_columns_are_refused_or_decode_faithfully) {
  std::set<scheme> covered;
  check_damage<timestamp_codec>(regular_times(300, second), scheme::timestamps_simple8b, covered,
                                "regular");
  check_damage<timestamp_codec>(slipping_times(100), scheme::timestamps_buckets, covered,
                                "slipping");
  check_damage<float_codec>({21.53, 21.5, 22.01, 22.0, 21.99, -3.25, 0.0}, scheme::floats_decimal,
                            covered, "decimal");
  check_damage<float_codec>(drifting_doubles(20), scheme::floats_xor, covered, "drifting");
  check_damage<float_codec>(random_bit_doubles(10), scheme::floats_split, covered, "bit patterns");
  check_damage<float_codec>(uniform_doubles(100), scheme::floats_planes, covered, "noise");
  // floats_raw is read (columns written before floats_split), no longer written.
  {
    std::string raw = "\x23";
    raw.push_back(3);
    const std::vector<double> values = {21.5, -0.0, 1e300};
    for (const double value : values)
      for (int k = 0; k < 8; ++k)
        raw.push_back(static_cast<char>((std::bit_cast<std::uint64_t>(value) >> (8 * k)) & 0xff));
    const auto decoded = decode_floats(raw);
    ASSERT_TRUE(std::holds_alternative<std::vector<double>>(decoded));
    EXPECT_EQ(std::get<std::vector<double>>(decoded).size(), 3u);
    EXPECT_EQ(std::get<std::vector<double>>(decoded)[2], 1e300);
    covered.insert(scheme::floats_raw);
    expect_damage_handled<float_codec>(raw, "raw");
  }
  check_damage<integer_codec>(gauge_values(50), scheme::integers_direct, covered, "gauge");
  std::vector<std::int64_t> counter;
  for (std::int64_t i = -50; i < 50; ++i) counter.push_back(i);
  check_damage<integer_codec>(counter, scheme::integers_delta, covered, "counter");
  check_damage<integer_codec>({int64_min, int64_max, 0, -1, int64_max, int64_min},
                              scheme::integers_raw, covered, "extremes");
  check_damage<unsigned_codec>({1, 2, 3, 7, 1, 0, 5}, scheme::unsigned_direct, covered, "small");
  std::vector<std::uint64_t> high_counter;
  for (std::uint64_t i = 0; i < 100; ++i) high_counter.push_back((std::uint64_t{1} << 62) + i);
  check_damage<unsigned_codec>(high_counter, scheme::unsigned_delta, covered, "high counter");
  check_damage<unsigned_codec>(random_unsigned(10), scheme::unsigned_raw, covered, "random");
  check_damage<boolean_codec>(
      {true, false, true, true, false, false, false, false, true, true, true, false, true},
      scheme::booleans_bits, covered, "flags");
  check_damage<string_codec>({"", "a", std::string("bc\0\xff", 4), "dev-0042"}, scheme::strings_raw,
                             covered, "distinct");
  std::vector<std::string> cycling;
  const std::string states[] = {"idle", "running", "fault"};
  for (int i = 0; i < 40; ++i) cycling.push_back(states[i % 3]);
  check_damage<string_codec>(cycling, scheme::strings_dictionary, covered, "cycling");
  EXPECT_EQ(covered.size(), 16u) << "every scheme is exercised";
}

TEST(tsdb_codecs, refuses_counts_the_bytes_cannot_hold) {
  // 2^20 values announced (varint 80 80 40), a few bytes present: refused before anything is
  // allocated for them. (2^40 would be over the default decode_limits::max_values.)
  const std::string huge = "808040";
  const std::string first_value = "0000000000000000";
  EXPECT_EQ(reason_of(decode_integers(from_hex("31 808080808020" + first_value))), errc::too_large);
  EXPECT_EQ(reason_of(decode_timestamps(from_hex("11" + huge + first_value + "00 00"))),
            errc::bad_count);
  EXPECT_EQ(reason_of(decode_timestamps(from_hex("12" + huge + first_value + "00 00 ff"))),
            errc::bad_count);
  EXPECT_EQ(reason_of(decode_floats(from_hex("22" + huge + first_value + "00"))), errc::bad_count);
  EXPECT_EQ(reason_of(decode_floats(from_hex("23" + huge + first_value))), errc::bad_count);
  EXPECT_EQ(reason_of(decode_floats(from_hex("24" + huge + first_value))), errc::bad_count);
  EXPECT_EQ(reason_of(decode_floats(from_hex("21" + huge + "02 31" + first_value))),
            errc::bad_count);
  EXPECT_EQ(reason_of(decode_integers(from_hex("31" + huge + first_value))), errc::bad_count);
  EXPECT_EQ(reason_of(decode_integers(from_hex("33" + huge + first_value))), errc::bad_count);
  EXPECT_EQ(reason_of(decode_unsigned(from_hex("42" + huge + "00" + first_value))),
            errc::bad_count);
  EXPECT_EQ(reason_of(decode_booleans(from_hex("51" + huge + "ff"))), errc::truncated);
  EXPECT_EQ(reason_of(decode_strings(from_hex("61" + huge + "00 00"))), errc::bad_count);
  // 1000 indexes cannot fit in one word; a dictionary cannot be larger than the column.
  EXPECT_EQ(reason_of(decode_strings(from_hex("62 e807 01 01 61" + first_value))), errc::bad_count);
  EXPECT_EQ(reason_of(decode_strings(from_hex("62 01 02 01 61 01 62" + first_value))),
            errc::bad_count);

  // The caller's limits.
  decode_limits limits;
  limits.max_values = 10;
  std::vector<std::int64_t> eleven(11, 7);
  EXPECT_EQ(reason_of(decode_integers(encoded<integer_codec>(eleven), limits)), errc::too_large);
  EXPECT_EQ(reason_of(decode_integers(encoded<integer_codec>({1, 2, 3}), limits)), std::nullopt);
  // One 1000-byte entry repeated 240 times by a single word.
  const std::vector<std::string> repeated(240, std::string(1000, 'x'));
  const std::string bomb = encoded<string_codec>(repeated);
  EXPECT_EQ(scheme_of(bomb), scheme::strings_dictionary);
  limits = decode_limits{};
  limits.max_string_bytes = 100'000;
  EXPECT_EQ(reason_of(decode_strings(bomb, limits)), errc::too_large);
  EXPECT_EQ(reason_of(decode_strings(bomb)), std::nullopt);
}

TEST(tsdb_codecs, refuses_malformed_fields) {
  const std::string word_of_zeros = "0000000000000000";
  // Varints: overlong, over 64 bits.
  EXPECT_EQ(reason_of(decode_integers(from_hex("31 8000"))), errc::malformed);
  EXPECT_EQ(reason_of(decode_integers(from_hex("31 ffffffffffffffffff02"))), errc::malformed);
  EXPECT_EQ(reason_of(decode_integers(from_hex("31 ffffffffffffffffff8001"))), errc::malformed);
  // simple8b: a run of zeros with payload bits; bits set past the last value.
  EXPECT_EQ(reason_of(decode_unsigned(from_hex("41 01 0100000000000000"))), errc::malformed);
  EXPECT_EQ(reason_of(decode_unsigned(from_hex("41 01 0200000000000020"))), errc::malformed);
  // A word with no value left for it.
  EXPECT_EQ(reason_of(decode_unsigned(from_hex("41 01" + word_of_zeros + word_of_zeros))),
            errc::trailing_bytes);
  // Exponents out of range.
  EXPECT_EQ(reason_of(decode_timestamps(from_hex("11 02 0000000000000000 13 00"))),
            errc::malformed);
  EXPECT_EQ(reason_of(decode_floats(from_hex("21 01 10 31" + word_of_zeros))), errc::malformed);
  // A decimal column whose mantissas claim a layout that is not a signed integer one.
  EXPECT_EQ(reason_of(decode_floats(from_hex("21 01 02 41" + word_of_zeros))),
            errc::unknown_scheme);
  // XOR reusing a window before any was set ('10').
  EXPECT_EQ(reason_of(decode_floats(from_hex("22 02 0000000000000000 80"))), errc::malformed);
  // XOR window past 64 bits: leading 31, length 63 ('11' 11111 111111).
  EXPECT_EQ(reason_of(decode_floats(from_hex("22 02 0000000000000000 fffe"))), errc::malformed);
  // Bit streams: nonzero padding, a spare byte.
  EXPECT_EQ(reason_of(decode_timestamps(from_hex("12 03 0000000000000000 00 02 01"))),
            errc::malformed);
  EXPECT_EQ(reason_of(decode_timestamps(from_hex("12 03 0000000000000000 00 02 00 00"))),
            errc::trailing_bytes);
  EXPECT_EQ(reason_of(decode_booleans(from_hex("51 01 03"))), errc::malformed);
  // A dictionary index past the entries (indexes 0 and 1 with one entry).
  EXPECT_EQ(reason_of(decode_strings(from_hex("62 02 01 01 61 0400000000000030"))),
            errc::malformed);
  // Schemes: none at all, unknown, and another column type's.
  EXPECT_EQ(reason_of(decode_floats("")), errc::truncated);
  EXPECT_EQ(reason_of(decode_floats(from_hex("00 00"))), errc::unknown_scheme);
  EXPECT_EQ(reason_of(decode_floats(from_hex("ff 00"))), errc::unknown_scheme);
  EXPECT_EQ(reason_of(decode_integers(encoded<float_codec>({1.5, 2.5}))), errc::unknown_scheme);
  EXPECT_EQ(reason_of(decode_unsigned(encoded<integer_codec>({1, 2}))), errc::unknown_scheme);
  EXPECT_EQ(reason_of(decode_timestamps(encoded<unsigned_codec>({1, 2}))), errc::unknown_scheme);
  EXPECT_EQ(reason_of(decode_strings(encoded<boolean_codec>({true}))), errc::unknown_scheme);
  EXPECT_EQ(scheme_of(""), std::nullopt);
  EXPECT_EQ(scheme_of(from_hex("13")), std::nullopt);
  EXPECT_EQ(scheme_of(from_hex("62")), scheme::strings_dictionary);
}

}  // namespace
}  // namespace nimbus::tsdb::codec
