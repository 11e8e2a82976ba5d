#include "tsdb/go_format.hpp"

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <system_error>

namespace nimbus::tsdb::go {
namespace {

// Enough for any double in fixed notation: 5e-324 is "0." and 323 zeros and a digit.
constexpr std::size_t float_buffer = 400;

// Go's shortest digits in plain decimal ('f' with precision -1): the digits that read back
// exactly, then zeros, never an exponent (4611686018427387904 -> 4611686018427388000, where
// std::to_chars's fixed form would print every digit of the binary value).
void append_shortest(std::string& out, double value) {
  char buffer[float_buffer];
  const auto [end, failure] =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
  const std::size_t e = text.find('e');
  std::string_view mantissa = text.substr(0, e);
  int exponent = 0;
  std::from_chars(text.data() + e + 1 + (text[e + 1] == '+' ? 1 : 0), text.data() + text.size(),
                  exponent);
  if (!mantissa.empty() && mantissa.front() == '-') {
    out.push_back('-');
    mantissa.remove_prefix(1);
  }
  std::string digits;
  for (const char c : mantissa)
    if (c != '.') digits.push_back(c);
  // value = 0.digits * 10^(exponent + 1)
  const int point = exponent + 1;
  if (point <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-point), '0');
    out += digits;
  } else if (static_cast<std::size_t>(point) >= digits.size()) {
    out += digits;
    out.append(static_cast<std::size_t>(point) - digits.size(), '0');
  } else {
    out.append(digits, 0, static_cast<std::size_t>(point));
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(point));
  }
}

void append_padded(std::string& out, std::int64_t value, int width) {
  char buffer[24];
  const auto [end, failure] = std::to_chars(buffer, buffer + sizeof buffer, value);
  for (auto digits = end - buffer; digits < width; ++digits) out.push_back('0');
  out.append(buffer, end);
}

}  // namespace

void append_float(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  append_shortest(out, value);
}

void append_json_float(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  const double magnitude = std::fabs(value);
  const bool is_exponent = magnitude != 0 && (magnitude < 1e-6 || magnitude >= 1e21);
  if (!is_exponent) return append_shortest(out, value);
  char buffer[float_buffer];
  const auto [end, failure] =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  std::size_t length = static_cast<std::size_t>(end - buffer);
  if (is_exponent && length >= 4 && buffer[length - 4] == 'e' && buffer[length - 3] == '-' &&
      buffer[length - 2] == '0') {
    buffer[length - 2] = buffer[length - 1];
    --length;
  }
  out.append(buffer, length);
}

// The representable range (1677-2262) always has four-digit years.
void append_rfc3339(std::string& out, std::int64_t ns, std::int32_t offset_seconds) {
  constexpr std::int64_t limit = std::numeric_limits<std::int64_t>::max();
  const std::int64_t shift = std::int64_t{offset_seconds} * 1'000'000'000;
  if ((shift > 0 && ns > limit - shift) || (shift < 0 && ns < -limit - shift))
    offset_seconds = 0;  // no local time past the range: UTC
  else
    ns += shift;
  constexpr std::int64_t per_second = 1'000'000'000;
  constexpr std::int64_t per_day = 86'400;
  std::int64_t seconds = ns / per_second;
  std::int64_t fraction = ns % per_second;
  if (fraction < 0) {
    fraction += per_second;
    --seconds;
  }
  std::int64_t days = seconds / per_day;
  std::int64_t second_of_day = seconds % per_day;
  if (second_of_day < 0) {
    second_of_day += per_day;
    --days;
  }
  // Howard Hinnant's civil_from_days: the proleptic Gregorian date of a day count.
  const std::int64_t shifted = days + 719'468;
  const std::int64_t era = (shifted >= 0 ? shifted : shifted - 146'096) / 146'097;
  const std::int64_t day_of_era = shifted - era * 146'097;
  const std::int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36'524 - day_of_era / 146'096) / 365;
  const std::int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const std::int64_t month_index = (5 * day_of_year + 2) / 153;
  const std::int64_t day = day_of_year - (153 * month_index + 2) / 5 + 1;
  const std::int64_t month = month_index < 10 ? month_index + 3 : month_index - 9;
  const std::int64_t year = year_of_era + era * 400 + (month <= 2 ? 1 : 0);

  append_padded(out, year, 4);
  out.push_back('-');
  append_padded(out, month, 2);
  out.push_back('-');
  append_padded(out, day, 2);
  out.push_back('T');
  append_padded(out, second_of_day / 3600, 2);
  out.push_back(':');
  append_padded(out, second_of_day / 60 % 60, 2);
  out.push_back(':');
  append_padded(out, second_of_day % 60, 2);
  if (fraction != 0) {
    std::string digits;
    append_padded(digits, fraction, 9);
    digits.erase(digits.find_last_not_of('0') + 1);
    out.push_back('.');
    out += digits;
  }
  if (offset_seconds == 0) {
    out.push_back('Z');
    return;
  }
  out.push_back(offset_seconds < 0 ? '-' : '+');
  const std::int64_t minutes = std::abs(std::int64_t{offset_seconds}) / 60;
  append_padded(out, minutes / 60, 2);
  out.push_back(':');
  append_padded(out, minutes % 60, 2);
}

}  // namespace nimbus::tsdb::go
