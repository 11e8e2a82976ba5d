// parse_time() and time_to_epoch(), and the date pattern engine under them.
#include "rules/sql/time_format.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "rules/sql/functions.hpp"

namespace nimbus::rules::sql {
namespace {

constexpr auto v2 = sql_version::v2016_03_23;

constexpr std::int64_t ms_per_day = 86'400'000;
constexpr std::int64_t min_epoch_ms = -62'135'596'800'000;  // 0001-01-01T00:00:00.000Z
constexpr std::int64_t max_epoch_ms = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
constexpr std::size_t max_field_width = 32;                 // "yyyy...": Java refuses more too
constexpr std::size_t max_number_digits = 9;                // keeps every number in an int64

constexpr std::string_view month_names[] = {"January",   "February", "March",    "April",
                                            "May",       "June",     "July",     "August",
                                            "September", "October",  "November", "December"};
constexpr std::string_view day_names[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday"};  // c_encoding order

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool is_ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// ---- patterns ---------------------------------------------------------------------------------

// A run of one pattern letter ("yyyy"), or literal text (quoted 'text', '' for a quote, and any
// character that is not a letter).
struct pattern_field {
  char letter = 0;  // 0: literal
  std::size_t count = 0;
  std::string literal;
};

std::optional<std::vector<pattern_field>> split_pattern(std::string_view pattern) {
  std::vector<pattern_field> fields;
  const auto add_literal = [&fields](std::string_view text) {
    if (fields.empty() || fields.back().letter != 0) fields.emplace_back();
    fields.back().literal.append(text);
  };
  for (std::size_t i = 0; i < pattern.size();) {
    const char c = pattern[i];
    if (is_ascii_letter(c)) {
      std::size_t j = i;
      while (j < pattern.size() && pattern[j] == c) ++j;
      if (j - i > max_field_width) return std::nullopt;
      pattern_field field;
      field.letter = c;
      field.count = j - i;
      fields.push_back(std::move(field));
      i = j;
      continue;
    }
    if (c != '\'') {
      add_literal(pattern.substr(i, 1));
      ++i;
      continue;
    }
    if (i + 1 < pattern.size() && pattern[i + 1] == '\'') {
      add_literal("'");
      i += 2;
      continue;
    }
    std::string quoted;
    std::size_t j = i + 1;
    for (;;) {
      if (j >= pattern.size()) return std::nullopt;  // an unterminated quote
      if (pattern[j] == '\'') {
        if (j + 1 < pattern.size() && pattern[j + 1] == '\'') {
          quoted += '\'';
          j += 2;
          continue;
        }
        break;
      }
      quoted += pattern[j++];
    }
    add_literal(quoted);
    i = j + 1;
  }
  return fields;
}

// ---- calendar -----------------------------------------------------------------------------------

struct civil_time {
  std::int64_t year = 1970;
  unsigned month = 1;
  unsigned day = 1;
  unsigned day_of_year = 1;
  unsigned weekday = 4;  // 0 is Sunday
  unsigned hour = 0;
  unsigned minute = 0;
  unsigned second = 0;
  unsigned millisecond = 0;
};

civil_time civil_from_epoch(std::int64_t epoch_ms) {
  std::int64_t day_count = epoch_ms / ms_per_day;
  std::int64_t in_day = epoch_ms % ms_per_day;
  if (in_day < 0) {
    in_day += ms_per_day;
    --day_count;
  }
  const std::chrono::sys_days date{std::chrono::days{day_count}};
  const std::chrono::year_month_day ymd{date};
  const std::chrono::sys_days new_year{ymd.year() / std::chrono::January / 1};
  civil_time t;
  t.year = static_cast<int>(ymd.year());
  t.month = static_cast<unsigned>(ymd.month());
  t.day = static_cast<unsigned>(ymd.day());
  t.weekday = std::chrono::weekday{date}.c_encoding();
  t.day_of_year = static_cast<unsigned>((date - new_year).count() + 1);
  t.hour = static_cast<unsigned>(in_day / 3'600'000);
  t.minute = static_cast<unsigned>(in_day / 60'000 % 60);
  t.second = static_cast<unsigned>(in_day / 1000 % 60);
  t.millisecond = static_cast<unsigned>(in_day % 1000);
  return t;
}

std::optional<std::int64_t> days_from_civil(std::int64_t year, std::int64_t month,
                                            std::int64_t day) {
  if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 || day > 31)
    return std::nullopt;
  const std::chrono::year_month_day date{std::chrono::year{static_cast<int>(year)},
                                         std::chrono::month{static_cast<unsigned>(month)},
                                         std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days{date}.time_since_epoch().count();
}

// ---- formatting -------------------------------------------------------------------------------

void append_padded(std::string& out, std::int64_t number, std::size_t width) {
  if (number < 0) {
    out += '-';
    number = -number;
  }
  const std::string digits = std::to_string(number);
  if (digits.size() < width) out.append(width - digits.size(), '0');
  out += digits;
}

// +01:00, +0100, or +01 when the minutes are zero and may be left out.
void append_offset(std::string& out, int offset_seconds, bool with_colon, bool minutes_optional) {
  out += offset_seconds < 0 ? '-' : '+';
  // In 64 bits: zoneinfo refuses offsets past 26 hours, but -INT_MIN would overflow an int.
  const std::int64_t magnitude =
      offset_seconds < 0 ? -std::int64_t{offset_seconds} : std::int64_t{offset_seconds};
  append_padded(out, magnitude / 3600, 2);
  const std::int64_t minutes = magnitude / 60 % 60;
  if (minutes_optional && minutes == 0) return;
  if (with_colon) out += ':';
  append_padded(out, minutes, 2);
}

// ---- parsing ----------------------------------------------------------------------------------

bool is_numeric_field(const pattern_field& f) {
  switch (f.letter) {
    case 'y':
    case 'u':
    case 'Y':
    case 'd':
    case 'D':
    case 'H':
    case 'k':
    case 'h':
    case 'K':
    case 'm':
    case 's':
    case 'S':
      return true;
    case 'M':
    case 'L':
      return f.count <= 2;
    default:
      return false;
  }
}

bool is_zone_char(char c) {
  return is_ascii_letter(c) || is_digit(c) || c == '/' || c == '_' || c == '+' || c == '-' ||
         c == ':';
}

// The text being read against a pattern, left to right.
class text_reader {
 public:
  explicit text_reader(std::string_view text) : text_(text) {}

  bool at_end() const { return pos_ == text_.size(); }

  bool literal(std::string_view expected) {
    if (text_.substr(pos_, expected.size()) != expected) return false;
    pos_ += expected.size();
    return true;
  }

  bool word(std::string_view expected) {
    if (!equals_ignore_case(text_.substr(pos_, expected.size()), expected)) return false;
    pos_ += expected.size();
    return true;
  }

  // At least `fewest` and at most `most` digits (never more than fit an int64).
  std::optional<std::int64_t> number(std::size_t fewest, std::size_t most,
                                     std::size_t* digits_read = nullptr) {
    most = std::min(most, max_number_digits);
    std::size_t n = 0;
    std::int64_t v = 0;
    while (n < most && pos_ + n < text_.size() && is_digit(text_[pos_ + n])) {
      v = v * 10 + (text_[pos_ + n] - '0');
      ++n;
    }
    if (n < fewest || n == 0) return std::nullopt;
    pos_ += n;
    if (digits_read != nullptr) *digits_read = n;
    return v;
  }

  // Which of `names` comes next, full names before their three-letter forms, any case.
  std::optional<std::int64_t> name(std::span<const std::string_view> names) {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (word(names[i])) return static_cast<std::int64_t>(i);
    for (std::size_t i = 0; i < names.size(); ++i)
      if (word(names[i].substr(0, 3))) return static_cast<std::int64_t>(i);
    return std::nullopt;
  }

  // Z, +HH, +HHMM or +HH:MM, in seconds east of UTC.
  std::optional<std::int64_t> offset(bool allows_z) {
    if (allows_z && word("Z")) return 0;
    if (pos_ >= text_.size() || (text_[pos_] != '+' && text_[pos_] != '-')) return std::nullopt;
    const bool is_negative = text_[pos_] == '-';
    ++pos_;
    const auto hours = number(2, 2);
    if (!hours) return std::nullopt;
    std::int64_t minutes = 0;
    if (literal(":")) {
      const auto m = number(2, 2);
      if (!m) return std::nullopt;
      minutes = *m;
    } else if (pos_ + 1 < text_.size() && is_digit(text_[pos_]) && is_digit(text_[pos_ + 1])) {
      minutes = *number(2, 2);
    }
    if (*hours > 18 || minutes > 59) return std::nullopt;
    const std::int64_t seconds = *hours * 3600 + minutes * 60;
    return is_negative ? -seconds : seconds;
  }

  std::string_view zone_id() {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && is_zone_char(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

// A fraction of a second given with `digits` digits, as milliseconds.
std::int64_t to_milliseconds(std::int64_t fraction, std::size_t digits) {
  while (digits > 3) {
    fraction /= 10;
    --digits;
  }
  while (digits < 3) {
    fraction *= 10;
    ++digits;
  }
  return fraction;
}

// ---- the SQL functions -----------------------------------------------------------------------

// parse_time(pattern, epoch_ms[, zone]): the time as text; the zone defaults to UTC.
value fn_parse_time(eval_state& state, const call_args& call) {
  std::string pattern_scratch;
  std::string_view pattern;
  if (!text_argument(call.values[0], state, pattern_scratch, pattern)) return {};
  const auto epoch_ms = to_int(call.values[1]);
  if (!epoch_ms) return {};
  time_zone zone;  // UTC
  if (call.values.size() == 3) {
    std::string zone_scratch;
    std::string_view zone_text;
    if (!text_argument(call.values[2], state, zone_scratch, zone_text)) return {};
    auto found = time_zone::find(zone_text);
    if (!found) return {};
    zone = std::move(*found);
  }
  const auto text = format_time(pattern, *epoch_ms, zone);
  if (!text) return {};
  return string_result(*text, state);
}

// time_to_epoch(text, pattern): milliseconds since the epoch, an Int.
value fn_time_to_epoch(eval_state& state, const call_args& call) {
  std::string text_scratch;
  std::string_view text;
  std::string pattern_scratch;
  std::string_view pattern;
  if (!text_argument(call.values[0], state, text_scratch, text) ||
      !text_argument(call.values[1], state, pattern_scratch, pattern))
    return {};
  const auto epoch_ms = parse_time_text(text, pattern);
  if (!epoch_ms) return {};
  return make_int(*epoch_ms);
}

const function_info time_table[] = {
    {"parse_time", 2, 3, v2, fn_parse_time, false},
    {"time_to_epoch", 2, 2, v2, fn_time_to_epoch, false},
};

}  // namespace

std::span<const function_info> time_functions() {
  return time_table;
}

std::optional<std::string> format_time(std::string_view pattern, std::int64_t epoch_ms,
                                       const time_zone& zone) {
  const auto fields = split_pattern(pattern);
  if (!fields || epoch_ms < min_epoch_ms || epoch_ms > max_epoch_ms) return std::nullopt;
  const time_zone::local_offset offset = zone.at(floor_div(epoch_ms, 1000));
  const std::int64_t local_ms = epoch_ms + std::int64_t{offset.offset_seconds} * 1000;
  if (local_ms < min_epoch_ms || local_ms > max_epoch_ms) return std::nullopt;
  const civil_time t = civil_from_epoch(local_ms);
  std::string out;
  for (const pattern_field& f : *fields) {
    if (f.letter == 0) {
      out += f.literal;
      continue;
    }
    switch (f.letter) {
      case 'G':
        out += "AD";
        break;
      case 'y':
      case 'u':
      case 'Y':
        if (f.count == 2)
          append_padded(out, t.year % 100, 2);
        else
          append_padded(out, t.year, f.count);
        break;
      case 'M':
      case 'L':
        if (f.count >= 4)
          out += month_names[t.month - 1];
        else if (f.count == 3)
          out += month_names[t.month - 1].substr(0, 3);
        else
          append_padded(out, t.month, f.count);
        break;
      case 'd':
        append_padded(out, t.day, f.count);
        break;
      case 'D':
        append_padded(out, t.day_of_year, f.count);
        break;
      case 'E':
        out += f.count >= 4 ? day_names[t.weekday] : day_names[t.weekday].substr(0, 3);
        break;
      case 'a':
        out += t.hour < 12 ? "AM" : "PM";
        break;
      case 'H':
        append_padded(out, t.hour, f.count);
        break;
      case 'k':
        append_padded(out, t.hour == 0 ? 24 : t.hour, f.count);
        break;
      case 'h':
        append_padded(out, t.hour % 12 == 0 ? 12 : t.hour % 12, f.count);
        break;
      case 'K':
        append_padded(out, t.hour % 12, f.count);
        break;
      case 'm':
        append_padded(out, t.minute, f.count);
        break;
      case 's':
        append_padded(out, t.second, f.count);
        break;
      case 'S': {
        std::string millis;
        append_padded(millis, t.millisecond, 3);
        if (f.count <= 3) {
          out += millis.substr(0, f.count);
        } else {
          out += millis;
          out.append(f.count - 3, '0');
        }
        break;
      }
      case 'Z':  // Joda: Z is +0100, ZZ +01:00, ZZZ the zone's id
        if (f.count >= 3)
          out += zone.id();
        else
          append_offset(out, offset.offset_seconds, f.count == 2, false);
        break;
      case 'X':  // java.time: X is +01 (Z for UTC), XX +0100, XXX +01:00; x the same without Z
      case 'x':
        if (f.letter == 'X' && offset.offset_seconds == 0) {
          out += 'Z';
          break;
        }
        append_offset(out, offset.offset_seconds, f.count >= 3, f.count == 1);
        break;
      case 'z':
        out += offset.abbreviation;
        break;  // "CST", "UTC"
      case 'V':
        out += zone.id();
        break;  // "America/Belize"
      default:
        return std::nullopt;  // a letter we do not know: Undefined rather than a guess
    }
  }
  return out;
}

std::optional<std::int64_t> parse_time_text(std::string_view text, std::string_view pattern) {
  const auto fields = split_pattern(pattern);
  if (!fields) return std::nullopt;
  text_reader in(text);
  std::int64_t year = 1970;
  std::int64_t month = 1;
  std::int64_t day = 1;
  std::int64_t hour = 0;
  std::int64_t minute = 0;
  std::int64_t second = 0;
  std::int64_t millisecond = 0;
  std::int64_t offset_seconds = 0;
  std::optional<time_zone> zone;  // a named zone: its offset depends on the date
  std::optional<std::int64_t> day_of_year;
  bool is_pm = false;
  bool is_twelve_hour = false;
  for (std::size_t k = 0; k < fields->size(); ++k) {
    const pattern_field& f = (*fields)[k];
    if (f.letter == 0) {
      if (!in.literal(f.literal)) return std::nullopt;
      continue;
    }
    // A number runs as far as its digits go, unless another number follows with no separator
    // ("yyyyMMdd"): then it takes exactly its pattern's width.
    const bool is_adjacent = k + 1 < fields->size() && is_numeric_field((*fields)[k + 1]);
    const auto read = [&in, &f, is_adjacent](std::size_t widest) {
      return is_adjacent ? in.number(f.count, f.count) : in.number(1, std::max(widest, f.count));
    };
    std::optional<std::int64_t> n;
    switch (f.letter) {
      case 'y':
      case 'u':
      case 'Y':
        if (f.count == 2) {
          n = in.number(2, 2);
          if (n) year = 2000 + *n;  // java.time's base year for two digits
        } else {
          n = read(max_number_digits);
          if (n) year = *n;
        }
        break;
      case 'M':
      case 'L':
        n = f.count >= 3 ? in.name(month_names) : read(2);
        if (n) month = f.count >= 3 ? *n + 1 : *n;
        break;
      case 'd':
        n = read(2);
        if (n) day = *n;
        break;
      case 'D':
        n = read(3);
        if (n) day_of_year = *n;
        break;
      case 'E':
        n = in.name(day_names);
        break;  // checked for form only
      case 'a':
        if (in.word("AM")) {
          n = 0;
        } else if (in.word("PM")) {
          n = 1;
          is_pm = true;
        }
        break;
      case 'H':
        n = read(2);
        if (n) hour = *n;
        break;
      case 'k':
        n = read(2);
        if (n) hour = *n == 24 ? 0 : *n;
        break;
      case 'h':
      case 'K':
        n = read(2);
        if (n) hour = *n;
        is_twelve_hour = true;
        break;
      case 'm':
        n = read(2);
        if (n) minute = *n;
        break;
      case 's':
        n = read(2);
        if (n) second = *n;
        break;
      case 'S': {
        std::size_t digits = 0;
        n = is_adjacent ? in.number(f.count, f.count, &digits)
                        : in.number(1, max_number_digits, &digits);
        if (n) millisecond = to_milliseconds(*n, digits);
        break;
      }
      case 'G':
        if (in.word("AD")) n = 0;
        break;
      case 'Z':
      case 'X':
      case 'x':
        n = in.offset(f.letter != 'x');
        if (n) offset_seconds = *n;
        break;
      case 'z':
      case 'V':
        zone = time_zone::find(in.zone_id());
        if (zone) n = 0;
        break;
      default:
        return std::nullopt;
    }
    if (!n) return std::nullopt;
  }
  if (!in.at_end()) return std::nullopt;
  if (is_twelve_hour) {
    if (hour > 12) return std::nullopt;
    if (hour == 12) hour = 0;
    if (is_pm) hour += 12;
  }
  if (hour > 23 || minute > 59 || second > 59) return std::nullopt;
  std::optional<std::int64_t> days;
  if (day_of_year) {
    if (*day_of_year < 1 || *day_of_year > 366) return std::nullopt;
    days = days_from_civil(year, 1, 1);
    if (days) *days += *day_of_year - 1;
  } else {
    days = days_from_civil(year, month, day);
  }
  if (!days) return std::nullopt;
  const std::int64_t local_seconds = *days * 86'400 + hour * 3'600 + minute * 60 + second;
  if (zone) offset_seconds = zone->offset_for_local(local_seconds);
  return (local_seconds - offset_seconds) * 1000 + millisecond;
}

}  // namespace nimbus::rules::sql
