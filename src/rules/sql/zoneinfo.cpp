#include "rules/sql/zoneinfo.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rules/sql/value.hpp"

namespace nimbus::rules::sql {

struct zone_type {
  int offset_seconds = 0;
  bool is_dst = false;
  std::string abbreviation;
};

// A day of the year in a POSIX TZ rule: Jn (1..365, February 29 never counted), n (0..365),
// or Mm.w.d (weekday d of week w of month m, week 5 being the last).
struct posix_date {
  char kind = 'M';
  int month = 1;
  int week = 1;
  int weekday = 0;
  int day = 0;
  std::int64_t time_seconds = 7200;  // local time of the change, 02:00 unless given
};

// The TZif footer (RFC 8536 3.3): standard time and, optionally, daylight time between two
// yearly changes; it rules every instant after the file's last transition.
struct posix_zone {
  zone_type standard;
  std::optional<zone_type> daylight;
  posix_date start;
  posix_date end;
};

struct zone_rules {
  std::vector<std::int64_t> transitions;  // UTC seconds, ascending
  std::vector<std::uint8_t> transition_types;
  std::vector<zone_type> types;
  std::optional<posix_zone> footer;
};

namespace {

constexpr std::size_t max_tzif_bytes = 1 << 20;
constexpr std::size_t max_cached_zones = 1024;
constexpr std::int64_t seconds_per_day = 86400;
// No zone is 26 hours from UTC (RFC 8536 bounds utoff to -25 h..+26 h); a file that says so is
// broken, and an offset near INT_MIN would overflow wherever it is negated.
constexpr std::int64_t max_offset_seconds = 26 * 3600;

bool is_sane_offset(std::int64_t seconds) {
  return seconds >= -max_offset_seconds && seconds <= max_offset_seconds;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

std::chrono::year year_of(std::int64_t local_seconds) {
  const std::chrono::sys_days day{std::chrono::days{floor_div(local_seconds, seconds_per_day)}};
  return std::chrono::year_month_day{day}.year();
}

// Local seconds since the epoch at which `date`'s change happens in `year`.
std::int64_t local_change(std::chrono::year year, const posix_date& date) {
  const std::chrono::sys_days new_year{year / std::chrono::January / 1};
  std::chrono::sys_days day = new_year;
  if (date.kind == 'J') {
    day = new_year + std::chrono::days{date.day - 1};
    if (year.is_leap() && date.day >= 60) day += std::chrono::days{1};
  } else if (date.kind == 'D') {
    day = new_year + std::chrono::days{date.day};
  } else {
    const std::chrono::month month{static_cast<unsigned>(date.month)};
    const std::chrono::sys_days first{year / month / 1};
    const int first_weekday = static_cast<int>(std::chrono::weekday{first}.c_encoding());
    day = first + std::chrono::days{(date.weekday - first_weekday + 7) % 7 + 7 * (date.week - 1)};
    const std::chrono::year_month_day_last month_end{year / month / std::chrono::last};
    const std::chrono::sys_days last_day{month_end};
    while (day > last_day) day -= std::chrono::days{7};
  }
  return day.time_since_epoch().count() * seconds_per_day + date.time_seconds;
}

time_zone::local_offset offset_of(const zone_type& type) {
  return time_zone::local_offset{type.offset_seconds, type.abbreviation};
}

time_zone::local_offset posix_at(const posix_zone& zone, std::int64_t utc_seconds) {
  if (!zone.daylight) return offset_of(zone.standard);
  const std::chrono::year year = year_of(utc_seconds + zone.standard.offset_seconds);
  const std::int64_t start = local_change(year, zone.start) - zone.standard.offset_seconds;
  const std::int64_t end = local_change(year, zone.end) - zone.daylight->offset_seconds;
  const bool is_dst = start < end ? (utc_seconds >= start && utc_seconds < end)
                                  : !(utc_seconds >= end && utc_seconds < start);
  return offset_of(is_dst ? *zone.daylight : zone.standard);
}

// ---- POSIX TZ strings ("EST5EDT,M3.2.0,M11.1.0", "<+09>-9") --------------------------------

class posix_reader {
 public:
  explicit posix_reader(std::string_view text) : text_(text) {}

  bool at_end() const { return pos_ == text_.size(); }
  bool accept(char c) {
    if (pos_ >= text_.size() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  bool name(std::string& out) {
    if (accept('<')) {
      const std::size_t close = text_.find('>', pos_);
      if (close == std::string_view::npos) return false;
      out = std::string(text_.substr(pos_, close - pos_));
      pos_ = close + 1;
      return !out.empty();
    }
    const std::size_t start = pos_;
    while (pos_ < text_.size() && ((text_[pos_] >= 'A' && text_[pos_] <= 'Z') ||
                                   (text_[pos_] >= 'a' && text_[pos_] <= 'z')))
      ++pos_;
    out = std::string(text_.substr(start, pos_ - start));
    return out.size() >= 3;
  }

  // [+-]h[h[h]][:mm[:ss]] in seconds.
  std::optional<std::int64_t> duration() {
    const bool is_negative = accept('-');
    if (!is_negative) accept('+');
    const auto hours = digits(3);
    if (!hours || *hours > 167) return std::nullopt;
    std::int64_t seconds = *hours * 3600;
    if (accept(':')) {
      const auto minutes = digits(2);
      if (!minutes) return std::nullopt;
      seconds += *minutes * 60;
      if (accept(':')) {
        const auto rest = digits(2);
        if (!rest) return std::nullopt;
        seconds += *rest;
      }
    }
    return is_negative ? -seconds : seconds;
  }

  bool date(posix_date& out) {
    if (accept('J')) {
      out.kind = 'J';
      const auto day = digits(3);
      if (!day || *day < 1 || *day > 365) return false;
      out.day = static_cast<int>(*day);
    } else if (accept('M')) {
      out.kind = 'M';
      const auto month = digits(2);
      if (!month || *month < 1 || *month > 12 || !accept('.')) return false;
      const auto week = digits(1);
      if (!week || *week < 1 || *week > 5 || !accept('.')) return false;
      const auto weekday = digits(1);
      if (!weekday || *weekday > 6) return false;
      out.month = static_cast<int>(*month);
      out.week = static_cast<int>(*week);
      out.weekday = static_cast<int>(*weekday);
    } else {
      out.kind = 'D';
      const auto day = digits(3);
      if (!day || *day > 365) return false;
      out.day = static_cast<int>(*day);
    }
    if (accept('/')) {
      const auto change_time = duration();
      if (!change_time) return false;
      out.time_seconds = *change_time;
    }
    return true;
  }

 private:
  std::optional<std::int64_t> digits(std::size_t most) {
    std::size_t n = 0;
    std::int64_t v = 0;
    while (n < most && pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      v = v * 10 + (text_[pos_] - '0');
      ++pos_;
      ++n;
    }
    if (n == 0) return std::nullopt;
    return v;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

std::optional<posix_zone> parse_posix_zone(std::string_view text) {
  posix_reader in(text);
  posix_zone zone;
  if (!in.name(zone.standard.abbreviation)) return std::nullopt;
  const auto standard = in.duration();
  if (!standard || !is_sane_offset(*standard)) return std::nullopt;
  zone.standard.offset_seconds = static_cast<int>(-*standard);  // POSIX counts west of UTC
  if (in.at_end()) return zone;
  zone_type daylight;
  daylight.is_dst = true;
  if (!in.name(daylight.abbreviation)) return std::nullopt;
  daylight.offset_seconds = zone.standard.offset_seconds + 3600;
  if (!in.at_end() && in.peek() != ',') {
    const auto offset = in.duration();
    if (!offset || !is_sane_offset(*offset)) return std::nullopt;
    daylight.offset_seconds = static_cast<int>(-*offset);
  }
  // Without rules the changes are implementation-defined: leave the file's transitions be.
  if (!in.accept(',') || !in.date(zone.start) || !in.accept(',') || !in.date(zone.end) ||
      !in.at_end())
    return std::nullopt;
  zone.daylight = std::move(daylight);
  return zone;
}

// ---- TZif files (RFC 8536) ----------------------------------------------------------------

class byte_reader {
 public:
  explicit byte_reader(std::string_view bytes) : bytes_(bytes) {}

  std::size_t remaining() const { return bytes_.size() - pos_; }

  bool skip(std::uint64_t n) {
    if (n > remaining()) return false;
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

  std::optional<std::string_view> take(std::size_t n) {
    if (n > remaining()) return std::nullopt;
    const std::string_view out = bytes_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::optional<std::uint64_t> big_endian(std::size_t width) {
    if (width > remaining()) return std::nullopt;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i)
      v = (v << 8) | static_cast<unsigned char>(bytes_[pos_ + i]);
    pos_ += width;
    return v;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

struct tzif_header {
  char version = 0;
  std::uint64_t isut_count = 0;
  std::uint64_t isstd_count = 0;
  std::uint64_t leap_count = 0;
  std::uint64_t time_count = 0;
  std::uint64_t type_count = 0;
  std::uint64_t char_count = 0;
};

std::optional<tzif_header> read_header(byte_reader& in) {
  const auto magic = in.take(4);
  const auto version = in.take(1);
  if (!magic || *magic != "TZif" || !version || !in.skip(15)) return std::nullopt;
  tzif_header header;
  header.version = (*version)[0];
  std::uint64_t* counts[] = {&header.isut_count, &header.isstd_count, &header.leap_count,
                             &header.time_count, &header.type_count,  &header.char_count};
  for (std::uint64_t* count : counts) {
    const auto v = in.big_endian(4);
    if (!v) return std::nullopt;
    *count = *v;
  }
  if (header.type_count == 0 || header.type_count > 256 || header.time_count > 100000 ||
      header.char_count > 65536 || header.leap_count > 100000)
    return std::nullopt;
  return header;
}

std::optional<zone_rules> parse_tzif(std::string_view bytes) {
  byte_reader in(bytes);
  auto header = read_header(in);
  if (!header) return std::nullopt;
  std::size_t time_size = 4;
  if (header->version != '\0') {
    // Version 2 and later repeat the data with 64-bit times: skip the 32-bit block.
    const std::uint64_t v1_size = header->time_count * 5 + header->type_count * 6 +
                                  header->char_count + header->leap_count * 8 +
                                  header->isstd_count + header->isut_count;
    if (!in.skip(v1_size)) return std::nullopt;
    header = read_header(in);
    if (!header) return std::nullopt;
    time_size = 8;
  }
  zone_rules rules;
  for (std::uint64_t i = 0; i < header->time_count; ++i) {
    const auto t = in.big_endian(time_size);
    if (!t) return std::nullopt;
    rules.transitions.push_back(time_size == 4
                                    ? static_cast<std::int32_t>(static_cast<std::uint32_t>(*t))
                                    : static_cast<std::int64_t>(*t));
  }
  for (std::uint64_t i = 0; i < header->time_count; ++i) {
    const auto type = in.big_endian(1);
    if (!type || *type >= header->type_count) return std::nullopt;
    rules.transition_types.push_back(static_cast<std::uint8_t>(*type));
  }
  std::vector<std::uint64_t> designations;
  for (std::uint64_t i = 0; i < header->type_count; ++i) {
    const auto offset = in.big_endian(4);
    const auto is_dst = in.big_endian(1);
    const auto designation = in.big_endian(1);
    if (!offset || !is_dst || !designation) return std::nullopt;
    const auto offset_seconds = static_cast<std::int32_t>(static_cast<std::uint32_t>(*offset));
    if (!is_sane_offset(offset_seconds)) return std::nullopt;
    zone_type type;
    type.offset_seconds = offset_seconds;
    type.is_dst = *is_dst != 0;
    rules.types.push_back(std::move(type));
    designations.push_back(*designation);
  }
  const auto chars = in.take(static_cast<std::size_t>(header->char_count));
  if (!chars) return std::nullopt;
  for (std::size_t i = 0; i < rules.types.size(); ++i) {
    if (designations[i] >= chars->size()) return std::nullopt;
    const std::string_view rest = chars->substr(static_cast<std::size_t>(designations[i]));
    rules.types[i].abbreviation = std::string(rest.substr(0, rest.find('\0')));
  }
  if (!std::is_sorted(rules.transitions.begin(), rules.transitions.end())) return std::nullopt;
  if (time_size == 8) {
    const std::uint64_t trailer =
        header->leap_count * 12 + header->isstd_count + header->isut_count;
    const bool has_footer = in.skip(trailer) && in.take(1).value_or("") == "\n";
    if (has_footer) {
      const std::string_view rest = in.take(in.remaining()).value_or(std::string_view());
      const std::string_view text = rest.substr(0, rest.find('\n'));
      if (!text.empty()) rules.footer = parse_posix_zone(text);
    }
  }
  return rules;
}

// A name the database could hold: letters, digits, '_', '+', '-' in '/'-separated parts, so it
// never leaves the zoneinfo folder.
bool is_plausible_zone_name(std::string_view id) {
  if (id.empty() || id.size() > 64 || id.front() == '/' || id.back() == '/') return false;
  if (id.find("//") != std::string_view::npos) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '+' || c == '-' || c == '/';
  });
}

std::shared_ptr<const zone_rules> read_zone_file(std::string_view id) {
  if (!is_plausible_zone_name(id)) return nullptr;
  const char* folder = std::getenv("TZDIR");
  std::string path = folder != nullptr && *folder != '\0' ? folder : "/usr/share/zoneinfo";
  path += '/';
  path += id;
  std::ifstream file(path, std::ios::binary);
  if (!file) return nullptr;
  // In chunks, as far as the file goes: real TZif files are a few kilobytes.
  std::string bytes;
  char chunk[4096];
  for (;;) {
    file.read(chunk, static_cast<std::streamsize>(sizeof chunk));
    const std::streamsize got = file.gcount();
    if (got <= 0) break;
    bytes.append(chunk, static_cast<std::size_t>(got));
    if (bytes.size() > max_tzif_bytes) return nullptr;
  }
  if (bytes.empty()) return nullptr;
  auto rules = parse_tzif(bytes);
  if (!rules) return nullptr;
  return std::make_shared<zone_rules>(std::move(*rules));
}

// Each zone found is read once per process (up to max_cached_zones of them), so a rule naming a
// zone costs one file read, not one per message. A name not found is not kept: zone names come
// from payloads, and made-up ones must not fill the cache and push real zones out. The file is
// read with the lock released, so that one slow read holds up no other lookup; two threads
// loading the same zone at once both read it, and the first to finish is kept.
std::shared_ptr<const zone_rules> load_zone(std::string_view id) {
  if (!is_plausible_zone_name(id)) return nullptr;  // no lock, no file
  static std::mutex mutex;
  // Guarded by `mutex`.
  static std::unordered_map<std::string, std::shared_ptr<const zone_rules>> loaded;
  std::string key(id);
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (const auto found = loaded.find(key); found != loaded.end()) return found->second;
  }
  auto rules = read_zone_file(id);
  if (rules == nullptr) return nullptr;
  const std::lock_guard<std::mutex> lock(mutex);
  if (loaded.size() >= max_cached_zones) return rules;
  return loaded.emplace(std::move(key), std::move(rules)).first->second;
}

// UTC and GMT under their common names, and fixed offsets: no database needed.
std::optional<int> fixed_offset(std::string_view id, std::string& canonical) {
  static constexpr std::string_view utc_names[] = {
      "UTC",     "Z",       "Zulu",     "UCT",       "UT",
      "Etc/UTC", "Etc/UCT", "Etc/Zulu", "Universal", "Etc/Universal"};
  static constexpr std::string_view gmt_names[] = {"GMT",     "GMT0",     "Greenwich",
                                                   "Etc/GMT", "Etc/GMT0", "Etc/Greenwich"};
  for (std::string_view name : utc_names)
    if (equals_ignore_case(id, name)) {
      canonical = "UTC";
      return 0;
    }
  for (std::string_view name : gmt_names)
    if (equals_ignore_case(id, name)) {
      canonical = "GMT";
      return 0;
    }
  std::string_view offset = id;
  for (std::string_view prefix : {"UTC", "GMT", "UT"}) {
    if (id.size() > prefix.size() && equals_ignore_case(id.substr(0, prefix.size()), prefix) &&
        (id[prefix.size()] == '+' || id[prefix.size()] == '-')) {
      offset = id.substr(prefix.size());
      break;
    }
  }
  // +H, +HH, +HHMM or +HH:MM
  if (offset.size() < 2 || (offset[0] != '+' && offset[0] != '-')) return std::nullopt;
  const std::string_view digits = offset.substr(1);
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto digit = [digits](std::size_t i) { return digits[i] - '0'; };
  int hours = 0;
  int minutes = 0;
  if (digits.size() == 1 && is_digit(digits[0])) {
    hours = digit(0);
  } else if (digits.size() == 2 && is_digit(digits[0]) && is_digit(digits[1])) {
    hours = digit(0) * 10 + digit(1);
  } else if (digits.size() == 4 && std::all_of(digits.begin(), digits.end(), is_digit)) {
    hours = digit(0) * 10 + digit(1);
    minutes = digit(2) * 10 + digit(3);
  } else if (digits.size() == 5 && digits[2] == ':' && is_digit(digits[0]) && is_digit(digits[1]) &&
             is_digit(digits[3]) && is_digit(digits[4])) {
    hours = digit(0) * 10 + digit(1);
    minutes = digit(3) * 10 + digit(4);
  } else {
    return std::nullopt;
  }
  if (hours > 18 || minutes > 59) return std::nullopt;
  const int magnitude = hours * 3600 + minutes * 60;
  const int seconds = offset[0] == '-' ? -magnitude : magnitude;
  // The id Joda-Time prints for an offset zone: +01:00.
  canonical.clear();
  canonical += seconds < 0 ? '-' : '+';
  canonical += static_cast<char>('0' + hours / 10);
  canonical += static_cast<char>('0' + hours % 10);
  canonical += ':';
  canonical += static_cast<char>('0' + minutes / 10);
  canonical += static_cast<char>('0' + minutes % 10);
  return seconds;
}

}  // namespace

std::optional<time_zone> time_zone::find(std::string_view name) {
  time_zone zone;
  if (const auto offset = fixed_offset(name, zone.id_)) {
    zone.fixed_offset_ = *offset;
    return zone;
  }
  auto rules = load_zone(name);
  if (rules == nullptr) return std::nullopt;
  zone.id_ = std::string(name);
  zone.rules_ = std::move(rules);
  return zone;
}

time_zone::local_offset time_zone::at(std::int64_t utc_seconds) const {
  if (rules_ == nullptr) return local_offset{fixed_offset_, id_};
  const zone_rules& rules = *rules_;
  const auto after =
      std::upper_bound(rules.transitions.begin(), rules.transitions.end(), utc_seconds);
  if (after == rules.transitions.end() && rules.footer) return posix_at(*rules.footer, utc_seconds);
  // Before the first transition, RFC 8536 says type 0.
  if (after == rules.transitions.begin()) return offset_of(rules.types.front());
  const std::size_t index = static_cast<std::size_t>(after - rules.transitions.begin()) - 1;
  return offset_of(rules.types[rules.transition_types[index]]);
}

int time_zone::offset_for_local(std::int64_t local_seconds) const {
  if (rules_ == nullptr) return fixed_offset_;
  const int guess = at(local_seconds).offset_seconds;
  const int second = at(local_seconds - guess).offset_seconds;
  if (second == guess) return guess;
  const int third = at(local_seconds - second).offset_seconds;
  return third == second ? second : std::max(guess, second);
}

}  // namespace nimbus::rules::sql
