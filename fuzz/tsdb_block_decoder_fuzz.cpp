// Feeds arbitrary bytes to the time-series column codecs. The first byte picks the column type
// (its value % 6: timestamps, floats, integers, unsigned, booleans, strings) and what the rest
// is: a column to decode (byte / 6 even) or values to encode (odd; byte / 12 picks how bytes
// become values). Nothing may crash, read out of bounds or allocate past the limits; a column
// that decodes re-encodes to one that decodes to the same values, bit for bit (NaN payloads and
// -0.0 included), and any values encode and decode back. The codecs' source only.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tsdb/codecs.hpp"

namespace codec = nimbus::tsdb::codec;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

constexpr codec::decode_limits limits{std::size_t{1} << 16, std::size_t{1} << 20};
// Values built from one input stay under limits.max_values whatever -max_len is.
constexpr std::size_t max_built_values = 4096;
constexpr std::uint64_t second = 1'000'000'000;

std::vector<std::uint64_t> bits_of(const std::vector<double>& values) {
  std::vector<std::uint64_t> bits;
  bits.reserve(values.size());
  for (const double value : values) bits.push_back(std::bit_cast<std::uint64_t>(value));
  return bits;
}

template <class Value>
const std::vector<Value>& decoded_values(const codec::decoded<Value>& result) {
  const auto* values = std::get_if<0>(&result);
  check(values != nullptr);
  return *values;
}

void round_trip_times(const std::vector<std::int64_t>& values) {
  std::string column;
  codec::encode_timestamps(values, column);
  check(decoded_values(codec::decode_timestamps(column, limits)) == values);
}

void round_trip_floats(const std::vector<double>& values) {
  std::string column;
  codec::encode_floats(values, column);
  check(bits_of(decoded_values(codec::decode_floats(column, limits))) == bits_of(values));
}

void round_trip_integers(const std::vector<std::int64_t>& values) {
  std::string column;
  codec::encode_integers(values, column);
  check(decoded_values(codec::decode_integers(column, limits)) == values);
}

void round_trip_unsigned(const std::vector<std::uint64_t>& values) {
  std::string column;
  codec::encode_unsigned(values, column);
  check(decoded_values(codec::decode_unsigned(column, limits)) == values);
}

void round_trip_booleans(const std::vector<bool>& values) {
  std::string column;
  codec::encode_booleans(values, column);
  check(decoded_values(codec::decode_booleans(column, limits)) == values);
}

void round_trip_strings(const std::vector<std::string>& values) {
  std::string column;
  codec::encode_strings(values, column);
  check(decoded_values(codec::decode_strings(column, limits)) == values);
}

template <class Decode, class RoundTrip>
void decode_then_round_trip(std::string_view column, Decode decode, RoundTrip round_trip) {
  const auto result = decode(column, limits);
  if (const auto* error = std::get_if<codec::decode_error>(&result)) {
    check(!error->what.empty());
    return;
  }
  const auto& values = std::get<0>(result);
  check(values.size() <= limits.max_values);
  round_trip(values);
}

// ---- values from bytes ----------------------------------------------------------------------

std::vector<std::uint64_t> words_of(std::string_view bytes) {
  std::vector<std::uint64_t> words;
  for (std::size_t i = 0; i + 8 <= bytes.size() && words.size() < max_built_values; i += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, bytes.data() + i, sizeof word);
    words.push_back(word);
  }
  return words;
}

// A series from `start`, each byte a signed step of `unit` on top of `step` (wrapping).
std::vector<std::uint64_t> series_of(std::string_view bytes, std::uint64_t start,
                                     std::uint64_t step, std::uint64_t unit) {
  std::vector<std::uint64_t> values;
  std::uint64_t current = start;
  for (const char c : bytes) {
    if (values.size() >= max_built_values) break;
    const auto jitter = static_cast<std::int64_t>(static_cast<std::int8_t>(c));
    current += step + static_cast<std::uint64_t>(jitter) * unit;
    values.push_back(current);
  }
  return values;
}

std::vector<std::int64_t> as_signed(const std::vector<std::uint64_t>& values) {
  std::vector<std::int64_t> result;
  result.reserve(values.size());
  for (const std::uint64_t value : values) result.push_back(static_cast<std::int64_t>(value));
  return result;
}

std::uint64_t power_of_ten(unsigned exponent) {
  std::uint64_t power = 1;
  for (unsigned i = 0; i < exponent; ++i) power *= 10;
  return power;
}

std::vector<double> floats_of(std::string_view bytes, unsigned variant) {
  std::vector<double> values;
  if (variant % 2 == 0) {
    for (const std::uint64_t word : words_of(bytes)) values.push_back(std::bit_cast<double>(word));
    return values;
  }
  // Decimal readings: mantissa steps over a power of ten, with the values decimals cannot
  // hold mixed in by two byte values.
  const auto scale = static_cast<double>(power_of_ten(variant / 2 % 16));
  const std::vector<std::uint64_t> mantissas = series_of(bytes, 2150, 0, 1);
  for (std::size_t i = 0; i < mantissas.size(); ++i) {
    if (bytes[i] == '\x7f')
      values.push_back(std::numeric_limits<double>::quiet_NaN());
    else if (bytes[i] == '\x7e')
      values.push_back(-0.0);
    else
      values.push_back(static_cast<double>(static_cast<std::int64_t>(mantissas[i])) / scale);
  }
  return values;
}

std::vector<bool> booleans_of(std::string_view bytes) {
  std::vector<bool> values;
  for (const char c : bytes)
    for (unsigned bit = 0; bit < 8 && values.size() < max_built_values; ++bit)
      values.push_back(((static_cast<unsigned char>(c) >> bit) & 1u) != 0);
  return values;
}

std::vector<std::string> strings_of(std::string_view bytes) {
  std::vector<std::string> values;
  while (values.size() < max_built_values) {
    const std::size_t newline = bytes.find('\n');
    values.emplace_back(bytes.substr(0, newline));
    if (newline == std::string_view::npos) break;
    bytes.remove_prefix(newline + 1);
  }
  return values;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned kind = data[0] % 6u;
  const bool is_values = (data[0] / 6u) % 2u == 1u;
  const unsigned variant = data[0] / 12u;  // 0..21
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);

  if (!is_values) {
    switch (kind) {
      case 0:
        decode_then_round_trip(rest, codec::decode_timestamps, round_trip_times);
        break;
      case 1:
        decode_then_round_trip(rest, codec::decode_floats, round_trip_floats);
        break;
      case 2:
        decode_then_round_trip(rest, codec::decode_integers, round_trip_integers);
        break;
      case 3:
        decode_then_round_trip(rest, codec::decode_unsigned, round_trip_unsigned);
        break;
      case 4:
        decode_then_round_trip(rest, codec::decode_booleans, round_trip_booleans);
        break;
      default:
        decode_then_round_trip(rest, codec::decode_strings, round_trip_strings);
        break;
    }
    return 0;
  }

  const bool is_series = variant % 2 == 1;
  const std::uint64_t high_start = 0x7fffffffffffff00ULL;  // series that wrap past INT64_MAX
  switch (kind) {
    case 0:
      round_trip_times(as_signed(is_series ? series_of(rest, 1'700'000'000 * second, 10 * second,
                                                       power_of_ten(variant / 2 % 10))
                                           : words_of(rest)));
      break;
    case 1:
      round_trip_floats(floats_of(rest, variant));
      break;
    case 2:
      round_trip_integers(as_signed(is_series ? series_of(rest, variant & 2u ? high_start : 0, 0, 1)
                                              : words_of(rest)));
      break;
    case 3:
      round_trip_unsigned(is_series
                              ? series_of(rest, variant & 2u ? ~std::uint64_t{0} - 100 : 0, 0, 1)
                              : words_of(rest));
      break;
    case 4:
      round_trip_booleans(booleans_of(rest));
      break;
    default:
      round_trip_strings(strings_of(rest));
      break;
  }
  return 0;
}
