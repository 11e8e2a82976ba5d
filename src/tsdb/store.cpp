#include "tsdb/store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <numeric>
#include <set>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "core/log.hpp"
#include "seglog/crc32c.hpp"
#include "seglog/log.hpp"
#include "tsdb/partition.hpp"

// How the pieces fit (store.hpp has the promise):
//
// - write(): validates under the exclusive lock (field types, series limit; new field types are
//   taken at once, "pending", and their rows submitted to SQLite), formats the batch outside it,
//   then appends one WAL record under the shared lock after checking that neither the database
//   nor the policy was dropped meanwhile. The committer's callback applies it to memory.
// - Memory, per policy: the live buffer, the snapshots a flush is writing (still read), the
//   partitions (day -> files by generation) and the newest point per series and field.
// - WAL records: "<database>\n<policy>\n<lines>", the lines either format_line's or, when a
//   request's body was taken whole, that body after a "#nimbus-raw <precision> <now_ns>" line
//   (a comment to the line protocol). Two markers share the format: "<database>\n\n"
//   (the database was dropped) and "<database>\n<policy>\n" (the policy was dropped). A marker is
//   appended, under the exclusive lock, once the drop is durable in SQLite; replay skips the
//   records of a database or policy older than its last marker, so a dropped database re-created
//   before its WAL segments went does not get its old points back.
// - <dir>/data/.flushed_offset: every WAL record below it is in partition files (written after a
//   flush's files); replay starts there.
// - Partition files belong to a policy only from its `min_generation` on (the generation counter
//   when the policy was created, kept in SQLite): files of a dropped namesake that a crash left
//   behind are recognised as stale and deleted at start-up.
// - Locks, outermost first: housekeeping_mutex (flush, compaction, retention, deletions: one at a
//   time), meta_mutex (metadata changes in flight), state_mutex (memory), deletions_mutex. No
//   file I/O under state_mutex but the brief WAL appends (queued, not written) and reads' index
//   lookups; user callbacks never point_run under any of them.

namespace nimbus::tsdb {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t ns_per_ms = 1'000'000;
constexpr std::int64_t ns_per_hour = 3'600'000'000'000;
constexpr std::int64_t ns_per_day = 24 * ns_per_hour;
constexpr std::int64_t six_months_ns = 4380 * ns_per_hour;
constexpr std::string_view autogen_name = "autogen";
// Approximate memory of the write buffer: per value, and per new series or field column.
constexpr std::size_t value_bytes = 16;
constexpr std::size_t entry_bytes = 64;
constexpr std::uint32_t wal_max_record_bytes = std::uint32_t{64} << 20;
constexpr std::size_t replay_records = 256;
constexpr std::size_t replay_bytes = std::size_t{8} << 20;
constexpr std::size_t compaction_file_threshold = 4;
constexpr auto tick_interval = std::chrono::seconds(1);
constexpr auto flush_retry_interval = std::chrono::seconds(10);
constexpr const char* flushed_marker_name = ".flushed_offset";
constexpr const char* change_failed = "engine: the change could not be stored";

template <class T>
void put(std::string& out, T value) {
  const auto bits = static_cast<std::uint64_t>(value);
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

template <class T>
T take(std::string_view bytes) {
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return static_cast<T>(bits);
}

// ---- names on disk

bool is_plain(char c, bool is_first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || (c == '.' && !is_first);
}

// A database or policy name as one path component: bytes other than [A-Za-z0-9_-.] (and a
// leading '.') as %XX, so that any name is a safe directory name of its own ("nimbus" stays).
std::string path_name(std::string_view name) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (is_plain(c, i == 0)) {
      out += c;
      continue;
    }
    const auto byte = static_cast<unsigned char>(c);
    out += '%';
    out += hex[byte >> 4];
    out += hex[byte & 0xf];
  }
  return out;
}

std::optional<std::string> name_of_path(std::string_view component) {
  std::string name;
  for (std::size_t i = 0; i < component.size(); ++i) {
    if (component[i] != '%') {
      name += component[i];
      continue;
    }
    if (i + 2 >= component.size()) return std::nullopt;
    unsigned value = 0;
    for (std::size_t k = 1; k <= 2; ++k) {
      const char c = component[i + k];
      value <<= 4U;
      if (c >= '0' && c <= '9')
        value |= static_cast<unsigned>(c - '0');
      else if (c >= 'A' && c <= 'F')
        value |= static_cast<unsigned>(c - 'A' + 10);
      else
        return std::nullopt;
    }
    name += static_cast<char>(value);
    i += 2;
  }
  if (name.empty() || path_name(name) != component) return std::nullopt;
  return name;
}

// Days since the epoch, UTC (floor, for times before 1970 too).
std::int64_t day_of(std::int64_t ns) {
  std::int64_t day = ns / ns_per_day;
  if (ns % ns_per_day < 0) --day;
  return day;
}

// Howard Hinnant's civil_from_days / days_from_civil: the proleptic Gregorian calendar.
std::string day_name(std::int64_t day) {
  const std::int64_t z = day + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char text[64];
  std::snprintf(text, sizeof text, "%04lld-%02lld-%02lld", static_cast<long long>(y),
                static_cast<long long>(m), static_cast<long long>(d));
  return text;
}

std::int64_t days_from_civil(std::int64_t y, std::int64_t m, std::int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

std::optional<std::int64_t> day_of_name(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  const auto number = [text](std::size_t from, std::size_t count) -> std::optional<std::int64_t> {
    std::int64_t value = 0;
    for (std::size_t i = from; i < from + count; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      value = value * 10 + (text[i] - '0');
    }
    return value;
  };
  const auto y = number(0, 4);
  const auto m = number(5, 2);
  const auto d = number(8, 2);
  if (!y || !m || !d || *m < 1 || *m > 12 || *d < 1 || *d > 31) return std::nullopt;
  const std::int64_t day = days_from_civil(*y, *m, *d);
  if (day_name(day) != text) return std::nullopt;  // 2023-02-30 and the like
  return day;
}

std::string generation_name(std::uint64_t generation) {
  char text[40];
  std::snprintf(text, sizeof text, "%020llu.tsp", static_cast<unsigned long long>(generation));
  return text;
}

// The generation of "<20 digits>.tsp", or of any name starting with 20 digits when `is_prefix`
// (temporary and set-aside files count for the generation counter).
std::optional<std::uint64_t> generation_of_name(std::string_view name, bool is_prefix = false) {
  if (name.size() < 20 || (!is_prefix && (name.size() != 24 || name.substr(20) != ".tsp")))
    return std::nullopt;
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(name[i] - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// ---- retention policies, InfluxDB's rules

std::int64_t default_shard_duration(std::int64_t duration_ns) {
  if (duration_ns == 0 || duration_ns >= six_months_ns) return 7 * ns_per_day;
  if (duration_ns >= 2 * ns_per_day) return ns_per_day;
  return ns_per_hour;
}

// The oldest time a policy keeps at `now_ns` (InfluxDB drops older points on write).
std::int64_t retained_from(const retention_policy& p, std::int64_t now_ns) {
  std::int64_t cutoff = 0;
  if (p.duration_ns <= 0 || __builtin_sub_overflow(now_ns, p.duration_ns, &cutoff))
    return std::numeric_limits<std::int64_t>::min();
  return cutoff;
}

bool is_valid_name(std::string_view name) {
  return !name.empty() && name.find('\n') == std::string_view::npos;  // '\n' frames WAL records
}

// Checks `p` and fills in its shard duration as InfluxDB does; the error in InfluxDB's words.
std::optional<std::string> normalize_policy(retention_policy& p) {
  if (!is_valid_name(p.name)) return "retention policy name required";
  if (p.duration_ns < 0 || (p.duration_ns != 0 && p.duration_ns < ns_per_hour))
    return "retention policy duration must be at least 1h0m0s";
  if (p.replication < 1) return "replication factor must be greater than 0";
  if (p.shard_group_duration_ns <= 0)
    p.shard_group_duration_ns = default_shard_duration(p.duration_ns);
  else if (p.shard_group_duration_ns < ns_per_hour)
    p.shard_group_duration_ns = ns_per_hour;
  if (p.duration_ns != 0 && p.duration_ns < p.shard_group_duration_ns)
    return "retention policy duration must be greater than the shard duration";
  return std::nullopt;
}

// ---- columns in memory

// One field of one series over some times, ascending and unique.
struct point_run {
  std::vector<std::int64_t> times;
  std::vector<field_value> values;
};

bool is_strictly_ascending(const std::vector<std::int64_t>& times) {
  for (std::size_t i = 1; i < times.size(); ++i)
    if (times[i] <= times[i - 1]) return false;
  return true;
}

// Sorts by time; of equal times the last written stays (the sort is stable).
void sort_unique(point_run& r) {
  if (is_strictly_ascending(r.times)) return;
  std::vector<std::size_t> order(r.times.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&r](std::size_t a, std::size_t b) { return r.times[a] < r.times[b]; });
  point_run sorted;
  sorted.times.reserve(order.size());
  sorted.values.reserve(order.size());
  for (const std::size_t k : order) {
    if (!sorted.times.empty() && sorted.times.back() == r.times[k]) {
      sorted.values.back() = std::move(r.values[k]);
    } else {
      sorted.times.push_back(r.times[k]);
      sorted.values.push_back(std::move(r.values[k]));
    }
  }
  r = std::move(sorted);
}

// Both ascending and unique; on an equal time `later` wins.
point_run merge_runs(point_run earlier, point_run later) {
  if (earlier.times.empty()) return later;
  if (later.times.empty()) return earlier;
  point_run merged;
  merged.times.reserve(earlier.times.size() + later.times.size());
  merged.values.reserve(earlier.times.size() + later.times.size());
  std::size_t i = 0;
  std::size_t j = 0;
  const std::size_t earlier_size = earlier.times.size();
  const std::size_t later_size = later.times.size();
  while (i < earlier_size || j < later_size) {
    if (j == later_size || (i < earlier_size && earlier.times[i] < later.times[j])) {
      merged.times.push_back(earlier.times[i]);
      merged.values.push_back(std::move(earlier.values[i++]));
    } else {
      if (i < earlier_size && earlier.times[i] == later.times[j]) ++i;
      merged.times.push_back(later.times[j]);
      merged.values.push_back(std::move(later.values[j++]));
    }
  }
  return merged;
}

std::size_t size_of(const field_value& value) {
  const auto* text = std::get_if<std::string>(&value);
  return value_bytes + (text != nullptr ? text->size() : 0);
}

// A buffered column: appended in arrival order, sorted (and deduplicated) by whoever copies it.
struct column {
  field_type type = field_type::floating;
  std::vector<std::int64_t> times;
  std::vector<field_value> values;
  bool is_sorted = true;  // ascending and unique
  // times.back() when not empty, kept beside the vectors' heads: applying a batch compares every
  // value's time with it, and the tail of `times` is seldom still in the cache by then.
  std::int64_t back_time = 0;
};

// Copies of a value on the write path, the float taken without std::variant's visit (which
// was a tenth of applying a batch).
void push_value(std::vector<field_value>& values, const field_value& value) {
  if (const auto* number = std::get_if<double>(&value))
    values.emplace_back(std::in_place_index<0>, *number);
  else
    values.push_back(value);
}

void assign_value(field_value& to, const field_value& from) {
  const auto* number = std::get_if<double>(&from);
  auto* target = std::get_if<double>(&to);
  if (number != nullptr && target != nullptr)
    *target = *number;
  else
    to = from;
}

// False when the value replaced the one at the same time (the newest), not appended.
bool append_value(column& c, std::int64_t time, const field_value& value) {
  if (!c.times.empty() && time <= c.back_time) {
    if (time == c.back_time) {
      assign_value(c.values.back(), value);
      return false;
    }
    c.is_sorted = false;
  }
  c.times.push_back(time);
  push_value(c.values, value);
  c.back_time = time;
  return true;
}

point_run copy_range(const column& c, std::int64_t min_ns, std::int64_t max_ns) {
  point_run r;
  if (c.is_sorted) {
    const auto low = std::lower_bound(c.times.begin(), c.times.end(), min_ns);
    const auto high = std::upper_bound(low, c.times.end(), max_ns);
    r.times.assign(low, high);
    r.values.assign(c.values.begin() + (low - c.times.begin()),
                    c.values.begin() + (high - c.times.begin()));
    return r;
  }
  for (std::size_t i = 0; i < c.times.size(); ++i) {
    if (c.times[i] < min_ns || c.times[i] > max_ns) continue;
    r.times.push_back(c.times[i]);
    r.values.push_back(c.values[i]);
  }
  sort_unique(r);
  return r;
}

struct buffered_series {
  std::size_t key_bytes = 0;  // counted in the buffer's bytes with the series
  std::map<std::string, column, std::less<>> fields;
};

// One policy's points not yet in partitions. A snapshot is one of these, frozen.
struct write_buffer {
  std::unordered_map<std::uint64_t, buffered_series> series;
  std::size_t bytes = 0;
  std::size_t points = 0;  // field values
  // The WAL offset of its oldest record: a flush that leaves it behind keeps the WAL from here.
  std::uint64_t first_wal_offset = std::numeric_limits<std::uint64_t>::max();
};

struct partition_file {
  std::uint64_t generation = 0;
  std::shared_ptr<const partition::reader> file;
};

// The newest point of a field; the value unknown when only a partition index told the time.
struct last_point {
  std::int64_t time = 0;
  std::optional<field_value> value;
};

struct policy_state {
  retention_policy policy;  // is_default: database_state::default_policy says
  std::int64_t min_generation = 0;
  std::uint64_t incarnation = 0;  // this process's: tells a policy from a re-created namesake
  bool is_dropping = false;       // its drop is on its way to SQLite: no writes, no flush
  write_buffer live;
  std::vector<std::shared_ptr<const write_buffer>> snapshots;  // oldest first
  std::map<std::int64_t, std::vector<partition_file>> days;    // files by generation
  std::unordered_map<std::uint64_t, std::map<std::string, last_point, std::less<>>> last;
};

struct series_entry {
  std::string key;
  std::string measurement;
  std::vector<std::pair<std::string, std::string>> tags;
};

struct database_state {
  std::string name;
  std::uint64_t incarnation = 0;
  bool is_dropping = false;
  std::string default_policy;
  std::map<std::string, std::unique_ptr<policy_state>, std::less<>> policies;
  std::unordered_map<std::uint64_t, series_entry> series;
  std::unordered_map<std::string, std::uint64_t> ids;  // by series key
  std::map<std::string, std::set<std::uint64_t>, std::less<>> measurements;
  std::map<std::string, std::map<std::string, field_type>, std::less<>> fields;
};

// ---- metadata changes in flight

struct meta_database {
  std::map<std::string, retention_policy, std::less<>> policies;
  std::string default_policy;
};
using meta_view = std::map<std::string, meta_database, std::less<>>;

struct meta_change {
  std::function<void(meta_view&)> mutate;  // on the pending view (again after a failure)
  // Once durable, on memory; it may take `done` over (a drop answers once its WAL marker is in).
  std::function<void(store::on_done&)> apply;
  std::function<void()> undo;  // once failed
  store::on_done done;
  std::optional<bool> has_failed;  // set once settled
};

struct field_row {
  std::string database;
  std::string measurement;
  std::string field;
  field_type type = field_type::floating;
};

struct record_header {
  std::string_view database;
  std::string_view policy;
  std::string_view body;
};

std::optional<record_header> parse_header(std::string_view payload) {
  const auto first = payload.find('\n');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = payload.find('\n', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  return record_header{payload.substr(0, first), payload.substr(first + 1, second - first - 1),
                       payload.substr(second + 1)};
}

// A write record whose lines are a request's body as it came starts with this, then the
// request's precision (the enum's value) and the time its lines without one took, in ns.
constexpr std::string_view raw_lines_marker = "#nimbus-raw ";

// What parse_lines makes of a write record's lines, as the request's parse did.
parse_result parse_record_lines(std::string_view body, std::int64_t replay_now_ns) {
  if (!body.starts_with(raw_lines_marker))
    return parse_lines(body, precision::ns, replay_now_ns);  // format_line's: ns, times given
  body.remove_prefix(raw_lines_marker.size());
  const auto end = body.find('\n');
  const std::string_view header = body.substr(0, end);
  const auto space = header.find(' ');
  int unit = 0;
  std::int64_t now_ns = 0;
  const auto unit_text = header.substr(0, space);
  const auto now_text =
      space == std::string_view::npos ? std::string_view() : header.substr(space + 1);
  const auto unit_read =
      std::from_chars(unit_text.data(), unit_text.data() + unit_text.size(), unit);
  const auto now_read = std::from_chars(now_text.data(), now_text.data() + now_text.size(), now_ns);
  if (end == std::string_view::npos || unit_read.ec != std::errc() || now_read.ec != std::errc() ||
      unit < 0 || unit > static_cast<int>(precision::h)) {
    parse_result unreadable;
    unreadable.rejected_lines = 1;
    return unreadable;
  }
  return parse_lines(body.substr(end + 1), static_cast<precision>(unit), now_ns);
}

std::optional<point> parse_series_key(const std::string& key) {
  auto parsed = parse_lines(key + " v=0 0", precision::ns, 0);
  if (parsed.points.size() != 1) return std::nullopt;
  return std::move(parsed.points.front());
}

void insert_policy(storage::database& connection, const std::string& database_name,
                   const retention_policy& p, std::int64_t min_generation) {
  connection
      .cached(
          "INSERT OR REPLACE INTO tsdb_retention_policies (db_name, name, duration_ns, "
          "shard_group_duration_ns, replication, min_generation) VALUES (?, ?, ?, ?, ?, ?)")
      .bind(1, database_name)
      .bind(2, p.name)
      .bind(3, p.duration_ns)
      .bind(4, p.shard_group_duration_ns)
      .bind(5, static_cast<std::int64_t>(p.replication))
      .bind(6, min_generation)
      .run();
}

void set_default_policy(storage::database& connection, const std::string& database_name,
                        const std::string& policy_name) {
  connection.cached("UPDATE tsdb_databases SET default_policy = ? WHERE name = ?")
      .bind(1, policy_name)
      .bind(2, database_name)
      .run();
}

}  // namespace

// ---- the store's state

// Everything behind store's interface. Owned by the store; its members are used from the
// callers' threads, the committer's (WAL callbacks), the writer's (metadata callbacks) and the
// store's own thread (flush, retention, compaction), under the locks named beside each member.
struct store::impl {
  impl(storage::write_queue& w, core::clock& c, store_settings s)
      : writer(w),
        clock(c),
        settings(std::move(s)),
        data_dir(settings.dir / "data"),
        committer(
            seglog::committer::options{settings.wal_fsync, std::chrono::milliseconds(1000), 1}) {}

  storage::write_queue& writer;
  core::clock& clock;
  const store_settings settings;
  const fs::path data_dir;
  seglog::committer committer;       // outlives the WAL
  std::unique_ptr<seglog::log> wal;  // reset first at destruction
  write_observer observer;           // set before start, read on the committer's thread

  mutable std::shared_mutex state_mutex;
  std::map<std::string, std::unique_ptr<database_state>, std::less<>> databases;  // state_mutex
  std::uint64_t applied_end = 0;                     // state_mutex: WAL records below are in memory
  std::optional<core::steady_time> oldest_buffered;  // state_mutex: first live point since flush
  std::uint64_t next_incarnation = 1;                // state_mutex
  std::map<std::string, rollup_retention, std::less<>> rollup_retentions;  // state_mutex

  std::atomic<std::uint64_t> next_generation{1};
  std::atomic<std::size_t> buffered_bytes{0};  // live buffers and snapshots
  std::atomic<std::size_t> live_bytes{0};
  std::atomic<std::size_t> buffered_points{0};
  std::atomic<std::uint64_t> points_written{0};
  std::atomic<std::uint64_t> points_dropped{0};
  std::atomic<std::uint64_t> writes_refused{0};
  std::atomic<std::uint64_t> flushes{0};

  std::mutex meta_mutex;
  meta_view pending;                               // meta_mutex: metadata with changes in flight
  std::map<std::uint64_t, meta_change> in_flight;  // meta_mutex: by ticket

  std::mutex housekeeping_mutex;
  std::uint64_t flushed_offset = 0;  // housekeeping_mutex (and the constructor)
  // Files per past day directory at the last background compaction pass (housekeeping_mutex).
  std::map<std::string, std::size_t> files_at_last_pass;

  std::mutex deletions_mutex;
  std::vector<fs::path> deletions;  // deletions_mutex: files of dropped policies

  std::mutex thread_mutex;
  std::condition_variable wake;
  bool is_stopping = false;         // thread_mutex
  bool is_flush_requested = false;  // thread_mutex
  std::thread thread;

  // ---- lookups (state_mutex held)

  database_state* find_database(std::string_view name) const {
    const auto found = databases.find(name);
    return found == databases.end() ? nullptr : found->second.get();
  }
  // `name` empty: the database's default.
  static policy_state* find_policy(const database_state& db, std::string_view name) {
    const std::string_view wanted = name.empty() ? std::string_view(db.default_policy) : name;
    if (wanted.empty()) return nullptr;
    const auto found = db.policies.find(wanted);
    return found == db.policies.end() ? nullptr : found->second.get();
  }
  policy_state* find_exact(std::string_view database_name, std::uint64_t database_incarnation,
                           std::string_view policy_name, std::uint64_t policy_incarnation) const {
    const auto* db = find_database(database_name);
    if (db == nullptr || db->incarnation != database_incarnation) return nullptr;
    const auto found = db->policies.find(policy_name);
    if (found == db->policies.end() || found->second->incarnation != policy_incarnation)
      return nullptr;
    return found->second.get();
  }

  fs::path policy_dir(std::string_view database_name, std::string_view policy_name) const {
    return data_dir / path_name(database_name) / path_name(policy_name);
  }

  std::unique_ptr<policy_state> make_policy_state(retention_policy p, std::int64_t min_generation) {
    auto state = std::make_unique<policy_state>();
    p.is_default = false;
    state->policy = std::move(p);
    state->min_generation = min_generation;
    state->incarnation = next_incarnation++;
    return state;
  }

  std::unique_ptr<database_state> make_database_state(const std::string& name) {
    auto state = std::make_unique<database_state>();
    state->name = name;
    state->incarnation = next_incarnation++;
    return state;
  }

  // ---- series and field types (state_mutex held exclusively)

  std::uint64_t register_series(database_state& db, const std::string& key, const point* p) {
    if (const auto found = db.ids.find(key); found != db.ids.end()) return found->second;
    // Two keys with one FNV id (never seen, but possible): the later takes the next free id.
    // Deterministic: replay registers keys in their first order, and partitions carry the ids
    // they were given with their keys (register_stored_series).
    std::uint64_t id = series_id(key);
    while (db.series.contains(id)) ++id;
    series_entry entry;
    entry.key = key;
    if (p != nullptr) {
      entry.measurement = p->measurement;
      entry.tags = p->tags;
    } else if (auto parsed = parse_series_key(key)) {
      entry.measurement = std::move(parsed->measurement);
      entry.tags = std::move(parsed->tags);
    }
    std::stable_sort(entry.tags.begin(), entry.tags.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    db.measurements[entry.measurement].insert(id);
    db.ids.emplace(key, id);
    db.series.emplace(id, std::move(entry));
    return id;
  }

  void register_stored_series(database_state& db, std::uint64_t id, const std::string& key) {
    if (db.ids.contains(key)) return;
    if (db.series.contains(id)) {
      spdlog::warn("tsdb_series_id_conflict database={} id={} key=\"{}\"", db.name, id, key);
      return;
    }
    auto parsed = parse_series_key(key);
    if (!parsed) {
      spdlog::warn("tsdb_series_key_unreadable database={} id={} key=\"{}\"", db.name, id, key);
      return;
    }
    series_entry entry;
    entry.key = key;
    entry.measurement = std::move(parsed->measurement);
    entry.tags = std::move(parsed->tags);
    db.measurements[entry.measurement].insert(id);
    db.ids.emplace(key, id);
    db.series.emplace(id, std::move(entry));
  }

  // Why `p` cannot go into `db`, in InfluxDB's words; nullopt when it can, and then its new field
  // types are taken at once (so later batches conflict with them) and listed in `new_fields` for
  // SQLite. A type taken by a point whose batch then fails in the WAL stays: InfluxDB keeps a
  // type once a write created it, too. `new_keys` (null at replay, which checks no limit) holds
  // the series this batch creates. Points before `min_time` are past the policy's retention.
  // What check_point() keeps between the points of one write: the last measurement's known
  // fields (a write's points are mostly of one measurement), and whether the lock was shared.
  struct check_scope {
    std::unordered_set<std::string>* new_keys = nullptr;  // series the write adds (null: replay)
    std::vector<field_row>* new_fields = nullptr;
    bool is_shared = false;     // state_mutex held shared: nothing may be added
    bool needs_adding = false;  // shared, and a point has a field or measurement to add
    const std::string* measurement = nullptr;
    std::map<std::string, field_type>* known = nullptr;
  };

  // nullopt when the point may be taken (its new fields added to the database), else
  // InfluxDB's reason. `id` (if given): the point's series id when the series exists, else 0.
  // Shared: a point that would add a field stops the check (scope.needs_adding).
  std::optional<std::string> check_point(database_state& db, const point& p, const std::string& key,
                                         std::int64_t min_time, check_scope& scope,
                                         std::uint64_t* id = nullptr) {
    if (p.measurement.empty()) return std::string("missing measurement");
    if (p.fields.empty()) return std::string("missing fields");
    if (p.timestamp_ns && *p.timestamp_ns < min_time)
      return std::string("points beyond retention policy");
    bool is_new_series = false;
    if (scope.new_keys != nullptr) {
      const auto found = db.ids.find(key);
      if (found != db.ids.end()) {
        if (id != nullptr) *id = found->second;
      } else {
        is_new_series = !scope.new_keys->contains(key);
      }
    }
    const std::size_t max_series = settings.max_series_per_database;
    if (is_new_series && max_series != 0 && db.series.size() + scope.new_keys->size() >= max_series)
      return "max-series-per-database limit exceeded: (" + std::to_string(max_series) + ")";
    if (scope.measurement == nullptr || *scope.measurement != p.measurement) {
      auto known = db.fields.find(p.measurement);
      if (known == db.fields.end()) {
        if (scope.is_shared) {
          scope.needs_adding = true;
          return std::nullopt;
        }
        known = db.fields.emplace(p.measurement, std::map<std::string, field_type>{}).first;
      }
      scope.measurement = &known->first;
      scope.known = &known->second;
    }
    auto& known = *scope.known;
    bool has_new_field = false;
    for (const auto& [name, value] : p.fields) {
      const auto found = known.find(name);
      if (found == known.end()) {
        has_new_field = true;
        continue;
      }
      if (found->second == type_of(value)) continue;
      return "field type conflict: input field \"" + name + "\" on measurement \"" + p.measurement +
             "\" is type " + std::string(name_of(type_of(value))) + ", already exists as type " +
             std::string(name_of(found->second));
    }
    if (has_new_field && scope.is_shared) {
      scope.needs_adding = true;
      return std::nullopt;
    }
    if (is_new_series) scope.new_keys->insert(key);
    if (has_new_field) {
      for (const auto& [name, value] : p.fields) {
        if (known.emplace(name, type_of(value)).second)
          scope.new_fields->push_back(field_row{db.name, p.measurement, name, type_of(value)});
      }
    }
    return std::nullopt;
  }

  void persist_fields(std::vector<field_row> rows) {
    static_cast<void>(writer.submit([rows = std::move(rows)](storage::database& connection) {
      for (const auto& row : rows)
        connection
            .cached(
                "INSERT OR IGNORE INTO tsdb_fields (db_name, measurement, field, type) "
                "VALUES (?, ?, ?, ?)")
            .bind(1, row.database)
            .bind(2, row.measurement)
            .bind(3, row.field)
            .bind(4, static_cast<std::int64_t>(row.type))
            .run();
    }));
  }

  // ---- applying a durable batch (state_mutex held exclusively)

  void note_applied(std::uint64_t end) { applied_end = std::max(applied_end, end); }

  // `ids` (as many as the points, or none): each point's series id when the write found it
  // (else 0), then every point's, for the observer.
  void apply(database_state& db, policy_state& rp, const std::vector<point>& points,
             const std::vector<std::string>& keys, std::uint64_t offset,
             std::span<std::uint64_t> ids = {}) {
    write_buffer& live = rp.live;
    if (live.series.empty() && !oldest_buffered) oldest_buffered = clock.now();
    live.first_wal_offset = std::min(live.first_wal_offset, offset);
    std::size_t added_bytes = 0;
    std::size_t added_points = 0;
    for (std::size_t i = 0; i < points.size(); ++i) {
      const point& p = points[i];
      if (!p.timestamp_ns) continue;  // write() and the parser always set it
      const std::int64_t time = *p.timestamp_ns;
      // A series the write found existing still does: only a drop removes series, and a drop
      // changes the incarnation this batch was checked against.
      const std::uint64_t id =
          !ids.empty() && ids[i] != 0 ? ids[i] : register_series(db, keys[i], &p);
      if (!ids.empty()) ids[i] = id;
      auto [buffered, is_new] = live.series.try_emplace(id);
      if (is_new) {
        buffered->second.key_bytes = keys[i].size() + entry_bytes;
        added_bytes += buffered->second.key_bytes;
      }
      auto& newest = rp.last[id];
      for (const auto& [name, value] : p.fields) {
        const field_type type = type_of(value);
        auto found = buffered->second.fields.find(name);
        if (found == buffered->second.fields.end()) {
          found = buffered->second.fields.emplace(name, column{type, {}, {}, true, 0}).first;
          added_bytes += name.size() + entry_bytes;
        }
        if (found->second.type != type) continue;  // checked before: a column keeps its type
        if (append_value(found->second, time, value)) {
          added_bytes += size_of(value);
          ++added_points;
        }
        const auto last = newest.find(name);
        if (last == newest.end()) {
          newest.emplace(name, last_point{time, value});
        } else if (time >= last->second.time) {
          last->second.time = time;
          if (last->second.value)
            assign_value(*last->second.value, value);
          else
            last->second.value = value;
        }
      }
    }
    live.bytes += added_bytes;
    live.points += added_points;
    buffered_bytes += added_bytes;
    live_bytes += added_bytes;
    buffered_points += added_points;
  }

  // Forgets a policy's memory and lists its files (state_mutex held exclusively).
  void release_policy(policy_state& rp, std::vector<fs::path>& files) {
    std::size_t bytes = rp.live.bytes;
    std::size_t count = rp.live.points;
    for (const auto& snapshot : rp.snapshots) {
      bytes += snapshot->bytes;
      count += snapshot->points;
    }
    buffered_bytes -= bytes;
    live_bytes -= rp.live.bytes;
    buffered_points -= count;
    rp.live = write_buffer{};
    rp.snapshots.clear();
    for (const auto& [day, list] : rp.days)
      for (const auto& f : list) files.push_back(f.file->path());
    rp.days.clear();
  }

  void queue_deletions(std::vector<fs::path> files) {
    if (files.empty()) return;
    std::lock_guard lock(deletions_mutex);
    deletions.insert(deletions.end(), std::make_move_iterator(files.begin()),
                     std::make_move_iterator(files.end()));
  }

  // Deletes queued files and the directories they leave empty (housekeeping_mutex held).
  void process_deletions() {
    std::vector<fs::path> doomed;
    {
      std::lock_guard lock(deletions_mutex);
      doomed.swap(deletions);
    }
    std::set<fs::path> dirs;
    for (const auto& path : doomed) {
      std::error_code error;
      fs::remove(path, error);
      if (error)
        spdlog::warn("tsdb_partition_delete_failed file={} error=\"{}\"", path.string(),
                     error.message());
      dirs.insert(path.parent_path());
    }
    for (auto dir : dirs) remove_empty_dirs(std::move(dir));
  }

  // The day, policy and database directories above a deleted file, while empty.
  void remove_empty_dirs(fs::path dir) {
    for (int level = 0; level < 3 && dir != data_dir && dir.has_parent_path(); ++level) {
      std::error_code error;
      if (!fs::remove(dir, error)) break;  // not empty (or gone): stop
      dir = dir.parent_path();
    }
  }

  // ---- metadata changes (see meta_change)

  meta_view view_of_applied() const {
    std::shared_lock lock(state_mutex);
    meta_view view;
    for (const auto& [name, db] : databases) {
      auto& entry = view[name];
      entry.default_policy = db->default_policy;
      for (const auto& [policy_name, rp] : db->policies)
        entry.policies.emplace(policy_name, rp->policy);
    }
    return view;
  }

  // Applies `change` to the pending view, submits `sql` and settles the change once durable.
  // Called with `meta` locked; unlocks it (when_durable may call back at once).
  void submit_change(std::unique_lock<std::mutex>& meta, meta_change change,
                     storage::write_queue::write sql) {
    change.mutate(pending);
    const storage::ticket ticket = writer.submit(std::move(sql));
    in_flight.emplace(ticket.sequence(), std::move(change));
    meta.unlock();
    writer.when_durable(ticket, [this, ticket] { settle(ticket); });
  }

  // Changes reach memory in ticket order, whatever the order of their callbacks.
  void settle(storage::ticket ticket) {
    std::vector<std::pair<store::on_done, std::optional<std::string>>> answers;
    {
      std::lock_guard meta(meta_mutex);
      const auto found = in_flight.find(ticket.sequence());
      if (found == in_flight.end()) return;
      found->second.has_failed = writer.failed(ticket);
      bool needs_rebuild = false;
      while (!in_flight.empty() && in_flight.begin()->second.has_failed.has_value()) {
        meta_change change = std::move(in_flight.begin()->second);
        in_flight.erase(in_flight.begin());
        if (*change.has_failed) {
          spdlog::error("tsdb_metadata_change_failed ticket={}", ticket.sequence());
          if (change.undo) change.undo();
          answers.emplace_back(std::move(change.done), std::string(change_failed));
          needs_rebuild = true;
          continue;
        }
        change.apply(change.done);
        if (change.done) answers.emplace_back(std::move(change.done), std::nullopt);
      }
      if (needs_rebuild) {
        pending = view_of_applied();
        for (auto& [sequence, change] : in_flight) change.mutate(pending);
      }
    }
    for (auto& [done, error] : answers)
      if (done) done(std::move(error));
  }

  void set_dropping(const std::string& database_name, const std::optional<std::string>& policy_name,
                    bool is_dropping) {
    std::unique_lock lock(state_mutex);
    auto* db = find_database(database_name);
    if (db == nullptr) return;
    if (!policy_name) {
      db->is_dropping = is_dropping;
      return;
    }
    if (const auto found = db->policies.find(*policy_name); found != db->policies.end())
      found->second->is_dropping = is_dropping;
  }

  // A drop is durable in SQLite: memory goes, the files are queued for deletion, and the WAL
  // marker goes in under the lock, after every record of what was dropped. `done` answers once
  // the marker is written.
  void finish_drop(const std::string& database_name, const std::optional<std::string>& policy_name,
                   store::on_done done) {
    std::vector<fs::path> files;
    std::unique_lock lock(state_mutex);
    if (const auto found = databases.find(database_name); found != databases.end()) {
      auto& db = *found->second;
      if (!policy_name) {
        for (auto& [name, rp] : db.policies) release_policy(*rp, files);
        databases.erase(found);
      } else if (const auto rp = db.policies.find(*policy_name); rp != db.policies.end()) {
        release_policy(*rp->second, files);
        db.policies.erase(rp);
        if (db.default_policy == *policy_name) db.default_policy.clear();
      }
    }
    queue_deletions(std::move(files));
    std::vector<std::string> payloads;
    payloads.push_back(database_name + '\n' + policy_name.value_or(std::string()) + '\n');
    wal->append(
        std::move(payloads), clock.unix_millis(),
        [this, database_name, done = std::move(done)](std::error_code error, std::uint64_t offset) {
          if (error) {
            // The drop holds (SQLite); only a replay before the next flush could bring
            // back points of a namesake created since.
            spdlog::error("tsdb_drop_marker_failed database={} error=\"{}\"", database_name,
                          error.message());
          } else {
            std::unique_lock state(state_mutex);
            note_applied(offset + 1);
          }
          if (done) done(std::nullopt);
        });
    lock.unlock();
    request_flush();  // the store thread deletes the files
  }

  void create_database(const std::string& name, retention_policy rp, store::on_done done) {
    rp.is_default = true;
    std::unique_lock meta(meta_mutex);
    if (pending.contains(name)) {
      meta.unlock();
      return done(std::nullopt);  // InfluxDB: an existing database is no error
    }
    const auto min_generation = static_cast<std::int64_t>(next_generation.load());
    meta_change change;
    change.mutate = [name, rp](meta_view& view) {
      auto& entry = view[name];
      entry.policies[rp.name] = rp;
      entry.default_policy = rp.name;
    };
    change.apply = [this, name, rp, min_generation](store::on_done&) {
      std::unique_lock lock(state_mutex);
      if (databases.contains(name)) return;
      auto db = make_database_state(name);
      db->default_policy = rp.name;
      db->policies.emplace(rp.name, make_policy_state(rp, min_generation));
      databases.emplace(name, std::move(db));
    };
    change.done = std::move(done);
    submit_change(
        meta, std::move(change), [name, rp, min_generation](storage::database& connection) {
          // Rows a failed drop could have left are no part of the new database.
          connection.cached("DELETE FROM tsdb_retention_policies WHERE db_name = ?")
              .bind(1, name)
              .run();
          connection.cached("DELETE FROM tsdb_fields WHERE db_name = ?").bind(1, name).run();
          connection
              .cached(
                  "INSERT OR REPLACE INTO tsdb_databases (name, default_policy) VALUES "
                  "(?, ?)")
              .bind(1, name)
              .bind(2, rp.name)
              .run();
          insert_policy(connection, name, rp, min_generation);
        });
  }

  // ---- the WAL

  void request_flush() {
    {
      std::lock_guard lock(thread_mutex);
      is_flush_requested = true;
    }
    wake.notify_one();
  }

  // Spent batches' points and keys, whose storage parse_lines() overwrites in place: the next
  // request's points are parsed into memory that the thread which frees a batch (committer,
  // alerts) would otherwise hand back to the loop's allocator point by point. At most 8 batches
  // of at most 4 MiB each are kept.
  struct spent_pool {
    static constexpr std::size_t max_batches = 8;
    static constexpr std::size_t max_bytes = std::size_t{4} << 20;  // a batch bigger is not kept
    std::mutex mutex;
    std::vector<parse_result> batches;

    // What a batch holds on the heap, about (its points' vectors and strings, kept until the
    // next parse overwrites them).
    static std::size_t heap_bytes(const std::vector<point>& points,
                                  const std::vector<std::string>& keys) {
      std::size_t bytes = points.capacity() * sizeof(point) + keys.capacity() * sizeof(std::string);
      for (const auto& key : keys) bytes += key.capacity();
      for (const auto& p : points) {
        bytes += p.measurement.capacity() + p.tags.capacity() * sizeof(p.tags[0]) +
                 p.fields.capacity() * sizeof(p.fields[0]);
        for (const auto& [key, value] : p.tags) bytes += key.capacity() + value.capacity();
        for (const auto& [name, value] : p.fields) {
          bytes += name.capacity();
          if (const auto* text = std::get_if<std::string>(&value)) bytes += text->capacity();
        }
        if (bytes > max_bytes) break;
      }
      return bytes;
    }

    void give_back(std::vector<point> points, std::vector<std::string> keys) {
      if (points.capacity() == 0 || heap_bytes(points, keys) > max_bytes) return;
      parse_result spent;
      spent.points = std::move(points);
      spent.series_keys = std::move(keys);
      std::lock_guard lock(mutex);
      if (batches.size() < max_batches) batches.push_back(std::move(spent));
    }
    parse_result take() {
      std::lock_guard lock(mutex);
      if (batches.empty()) return {};
      parse_result spent = std::move(batches.back());
      batches.pop_back();
      return spent;
    }
  };
  const std::shared_ptr<spent_pool> spent = std::make_shared<spent_pool>();

  struct pending_write {
    std::string database;
    std::string policy;
    std::uint64_t database_incarnation = 0;
    std::uint64_t policy_incarnation = 0;
    std::vector<point> points;
    std::vector<std::string> keys;
    std::vector<std::uint64_t> ids;    // of the keys, once applied
    std::shared_ptr<spent_pool> pool;  // where its points go once nobody holds them

    pending_write() = default;
    pending_write(const pending_write&) = delete;
    pending_write& operator=(const pending_write&) = delete;
    ~pending_write() {
      if (pool) pool->give_back(std::move(points), std::move(keys));
    }
  };

  // On the committer's thread.
  void on_appended(std::error_code error, std::uint64_t offset,
                   const std::shared_ptr<pending_write>& shared, write_outcome outcome,
                   const store::on_written& done) {
    const pending_write& batch = *shared;
    if (error) {
      ++writes_refused;
      spdlog::error("tsdb_wal_append_failed database={} points={} error=\"{}\"", batch.database,
                    batch.points.size(), error.message());
      outcome.refusal = write_refusal::io_error;
      outcome.message = "engine: " + error.message();
      outcome.written = 0;
      done(std::move(outcome));
      return;
    }
    bool is_applied = false;
    {
      std::unique_lock lock(state_mutex);
      note_applied(offset + 1);
      auto* rp = find_exact(batch.database, batch.database_incarnation, batch.policy,
                            batch.policy_incarnation);
      if (rp != nullptr) {
        shared->ids.resize(batch.points.size(), 0);
        apply(*find_database(batch.database), *rp, batch.points, batch.keys, offset, shared->ids);
        is_applied = true;
      }
    }
    if (is_applied) {
      points_written += batch.points.size();
      if (observer)
        observer(
            written_batch{batch.database, batch.policy, &batch.points,
                          std::shared_ptr<const std::vector<point>>(shared, &batch.points),
                          batch.keys.size() == batch.points.size()
                              ? std::shared_ptr<const std::vector<std::string>>(shared, &batch.keys)
                              : nullptr,
                          std::shared_ptr<const std::vector<std::uint64_t>>(shared, &batch.ids)});
      if (live_bytes.load() >= settings.cache_snapshot_memory) request_flush();
    }
    done(std::move(outcome));
  }

  // ---- flush

  struct flush_job {
    std::string database;
    std::string policy;
    std::uint64_t database_incarnation = 0;
    std::uint64_t policy_incarnation = 0;
    fs::path dir;
    std::vector<std::shared_ptr<const write_buffer>> buffers;
    std::unordered_map<std::uint64_t, std::string> keys;
    struct written {
      std::int64_t day = 0;
      std::shared_ptr<const partition::reader> file;
    };
    std::vector<written> files;
  };

  // Writes one policy's snapshots as one file per day, generation `generation`.
  bool write_job(flush_job& job, std::uint64_t generation) {
    struct slice {
      std::uint64_t id = 0;
      const std::string* key = nullptr;
      std::string_view field;
      field_type type = field_type::floating;
      const point_run* points = nullptr;
      std::size_t begin = 0;
      std::size_t end = 0;
    };
    std::deque<point_run> merged;  // stable addresses for the slices
    std::map<std::int64_t, std::vector<slice>> days;
    std::set<std::uint64_t> ids;
    for (const auto& buffer : job.buffers)
      for (const auto& [id, unused] : buffer->series) ids.insert(id);
    for (const std::uint64_t id : ids) {
      const auto key = job.keys.find(id);
      if (key == job.keys.end()) {
        core::report_bug("tsdb_flush", "buffered series without a key");
        continue;
      }
      std::map<std::string_view, std::vector<const column*>> columns;
      for (const auto& buffer : job.buffers) {
        const auto found = buffer->series.find(id);
        if (found == buffer->series.end()) continue;
        for (const auto& [name, c] : found->second.fields) columns[name].push_back(&c);
      }
      for (const auto& [name, list] : columns) {
        const field_type type = list.front()->type;
        point_run all;
        for (const column* c : list) {
          if (c->type != type) continue;
          all = merge_runs(std::move(all), copy_range(*c, std::numeric_limits<std::int64_t>::min(),
                                                      std::numeric_limits<std::int64_t>::max()));
        }
        if (all.times.empty()) continue;
        const point_run& points = merged.emplace_back(std::move(all));
        for (std::size_t begin = 0; begin < points.times.size();) {
          const std::int64_t day = day_of(points.times[begin]);
          std::size_t end = begin + 1;
          while (end < points.times.size() && day_of(points.times[end]) == day) ++end;
          days[day].push_back(slice{id, &key->second, name, type, &points, begin, end});
          begin = end;
        }
      }
    }
    for (const auto& entry : days) {
      const std::int64_t day = entry.first;
      const auto& slices = entry.second;
      const fs::path dir = job.dir / day_name(day);
      const auto fail = [&job, day](std::string_view step, const std::error_code& error) {
        spdlog::error("tsdb_flush_failed database={} policy={} day={} step={} error=\"{}\"",
                      job.database, job.policy, day_name(day), step, error.message());
        return false;
      };
      if (auto error = partition::create_directories_synced(dir)) return fail("mkdir", error);
      std::error_code error;
      auto out = partition::writer::create(dir / generation_name(generation), error);
      if (!out) return fail("create", error);
      for (const auto& s : slices) {
        const std::size_t count = s.end - s.begin;
        if (auto add_error =
                out->add(s.id, *s.key, s.field, s.type,
                         std::span<const std::int64_t>(s.points->times).subspan(s.begin, count),
                         std::span<const field_value>(s.points->values).subspan(s.begin, count)))
          return fail("write", add_error);
      }
      if (auto finish_error = out->finish()) return fail("finish", finish_error);
      auto opened = partition::reader::open(out->path());
      if (!opened.file) {
        spdlog::error("tsdb_flush_failed database={} policy={} day={} step=open error=\"{}\"",
                      job.database, job.policy, day_name(day), opened.error);
        std::error_code ignored;
        fs::remove(out->path(), ignored);
        return false;
      }
      job.files.push_back(flush_job::written{day, std::move(opened.file)});
    }
    return true;
  }

  bool write_flushed_marker(std::uint64_t offset) {
    std::string bytes;
    put<std::uint64_t>(bytes, offset);
    put<std::uint32_t>(bytes, seglog::crc32c(bytes));
    const fs::path path = data_dir / flushed_marker_name;
    fs::path temp = path;
    temp += ".tmp";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool is_ok = fd >= 0;
    if (is_ok) {
      is_ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
              ::fsync(fd) == 0;
      is_ok = ::close(fd) == 0 && is_ok;
    }
    is_ok = is_ok && ::rename(temp.c_str(), path.c_str()) == 0;
    if (is_ok && !partition::sync_directory(data_dir)) return true;
    spdlog::error("tsdb_flush_marker_failed file={} error=\"{}\"", path.string(),
                  std::strerror(errno));
    return false;
  }

  std::uint64_t read_flushed_marker() const {
    const fs::path path = data_dir / flushed_marker_name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char bytes[12];
    const ssize_t got = ::read(fd, bytes, sizeof bytes);
    ::close(fd);
    const std::string_view view(bytes, sizeof bytes);
    if (got != static_cast<ssize_t>(sizeof bytes) ||
        take<std::uint32_t>(view.substr(8)) != seglog::crc32c(view.substr(0, 8))) {
      // Replaying everything is safe (memory wins over partitions, with the same values).
      spdlog::warn("tsdb_flush_marker_unreadable file={}", path.string());
      return 0;
    }
    return take<std::uint64_t>(view);
  }

  // Moves every live buffer to a snapshot, writes the snapshots to partitions, then drops the
  // WAL they cover. False when it could not (the snapshots stay, and are retried).
  bool flush_now() {
    std::lock_guard house(housekeeping_mutex);
    process_deletions();
    std::vector<flush_job> jobs;
    std::uint64_t covered = 0;
    std::uint64_t generation = 0;
    std::optional<core::steady_time> oldest;
    {
      std::unique_lock lock(state_mutex);
      covered = applied_end;
      generation = next_generation.fetch_add(1);
      bool has_kept_live = false;
      for (auto& [db_name, db] : databases) {
        for (auto& [policy_name, rp] : db->policies) {
          if (db->is_dropping || rp->is_dropping) {
            // Not written while its drop is on its way: the WAL keeps it until then.
            if (!rp->live.series.empty()) {
              covered = std::min(covered, rp->live.first_wal_offset);
              has_kept_live = true;
            }
            for (const auto& s : rp->snapshots) covered = std::min(covered, s->first_wal_offset);
            continue;
          }
          if (!rp->live.series.empty()) {
            live_bytes -= rp->live.bytes;
            rp->snapshots.push_back(std::make_shared<const write_buffer>(std::move(rp->live)));
            rp->live = write_buffer{};
          }
          if (rp->snapshots.empty()) continue;
          flush_job job;
          job.database = db_name;
          job.policy = policy_name;
          job.database_incarnation = db->incarnation;
          job.policy_incarnation = rp->incarnation;
          job.dir = policy_dir(db_name, policy_name);
          job.buffers = rp->snapshots;
          for (const auto& buffer : job.buffers) {
            for (const auto& [id, unused] : buffer->series) {
              const auto entry = db->series.find(id);
              if (entry != db->series.end()) job.keys.emplace(id, entry->second.key);
            }
          }
          jobs.push_back(std::move(job));
        }
      }
      oldest = oldest_buffered;
      if (!has_kept_live) oldest_buffered.reset();
    }

    bool is_ok = true;
    for (auto& job : jobs) {
      if (!write_job(job, generation)) {
        is_ok = false;
        break;
      }
    }
    if (is_ok && covered > flushed_offset) is_ok = write_flushed_marker(covered);
    if (!is_ok) {
      for (auto& job : jobs) {
        for (auto& f : job.files) {
          std::error_code ignored;
          fs::remove(f.file->path(), ignored);
        }
      }
      std::unique_lock lock(state_mutex);
      if (oldest && (!oldest_buffered || *oldest < *oldest_buffered)) oldest_buffered = oldest;
      return false;
    }

    std::vector<fs::path> orphans;
    {
      std::unique_lock lock(state_mutex);
      for (auto& job : jobs) {
        auto* rp =
            find_exact(job.database, job.database_incarnation, job.policy, job.policy_incarnation);
        if (rp == nullptr) {  // dropped meanwhile
          for (const auto& f : job.files) orphans.push_back(f.file->path());
          continue;
        }
        for (auto& f : job.files) rp->days[f.day].push_back(partition_file{generation, f.file});
        std::size_t bytes = 0;
        std::size_t count = 0;
        std::erase_if(rp->snapshots, [&](const std::shared_ptr<const write_buffer>& s) {
          const bool is_flushed =
              std::find(job.buffers.begin(), job.buffers.end(), s) != job.buffers.end();
          if (is_flushed) {
            bytes += s->bytes;
            count += s->points;
          }
          return is_flushed;
        });
        buffered_bytes -= bytes;
        buffered_points -= count;
      }
    }
    for (const auto& path : orphans) {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
    if (covered > flushed_offset) flushed_offset = covered;
    wal->drop_before(flushed_offset);
    // Everything written is in partitions: a new segment lets the active one go too, so an idle
    // store keeps no WAL (up to wal_segment_bytes otherwise).
    if (flushed_offset == wal->next_offset() && wal->size_bytes() > 0) {
      seglog::log* log = wal.get();  // alive until its queued batches ran (~log waits)
      log->start_segment([log, offset = flushed_offset](std::error_code error, std::uint64_t) {
        if (!error) log->drop_before(offset);
      });
    }
    if (!jobs.empty()) ++flushes;
    return true;
  }

  // ---- compaction

  // What a day's files keep at a time: its points or not, and which rollup tiers.
  struct day_shape {
    bool has_points = true;
    std::vector<std::int64_t> tiers;  // coarsest first
    bool keeps(std::int64_t tier) const {
      return std::find(tiers.begin(), tiers.end(), tier) != tiers.end();
    }
  };

  // The shape of `day` of a policy of `database` at `now_ns`: the policy's duration for the
  // points, the database's rollup retention for each tier (whole days, as points expire).
  day_shape shape_of(std::string_view database, const retention_policy& policy, std::int64_t day,
                     std::int64_t now_ns) const {
    const auto is_kept = [day, now_ns](std::int64_t duration_ns) {
      std::int64_t cutoff = 0;
      if (duration_ns <= 0 || __builtin_sub_overflow(now_ns, duration_ns, &cutoff)) return true;
      return day >= day_of(cutoff);
    };
    day_shape shape;
    shape.has_points = is_kept(policy.duration_ns);
    const auto retention = rollup_retentions.find(database);
    for (const std::int64_t tier : rollup::tiers) {
      bool kept = shape.has_points;
      if (retention != rollup_retentions.end()) {
        if (const auto given = retention->second.duration_ns.find(tier);
            given != retention->second.duration_ns.end())
          kept = is_kept(given->second);
      }
      if (kept) shape.tiers.push_back(tier);
    }
    return shape;
  }

  // Whether a day's files hold anything `shape` no longer keeps.
  static bool holds_more_than(const std::vector<partition_file>& files, const day_shape& shape) {
    return std::any_of(files.begin(), files.end(), [&shape](const partition_file& f) {
      if (!shape.has_points && !f.file->blocks().empty()) return true;
      return std::any_of(
          std::begin(rollup::tiers), std::end(rollup::tiers),
          [&](std::int64_t tier) { return !shape.keeps(tier) && f.file->has_tier(tier); });
    });
  }

  // Whether a day's files have anything rollups summarise (numeric points, or rollups).
  static bool is_summarisable(const std::vector<partition_file>& files) {
    return std::any_of(files.begin(), files.end(), [](const partition_file& f) {
      return !f.file->rollups().empty() ||
             std::any_of(
                 f.file->blocks().begin(), f.file->blocks().end(),
                 [](const partition::block_info& b) { return rollup::has_rollups(b.type); });
    });
  }

  struct compaction {
    std::string database;
    std::string policy;
    std::uint64_t database_incarnation = 0;
    std::uint64_t policy_incarnation = 0;
    std::int64_t day = 0;
    fs::path dir;
    std::vector<partition_file> files;  // by generation
    day_shape shape;
  };

  void compact_days(std::size_t min_files, bool is_today_skipped) {
    std::lock_guard house(housekeeping_mutex);
    process_deletions();
    const std::int64_t now_ns = clock.unix_millis() * ns_per_ms;
    const std::int64_t today = day_of(now_ns);
    std::vector<compaction> work;
    std::map<std::string, std::size_t> files_now;
    {
      std::shared_lock lock(state_mutex);
      for (const auto& [db_name, db] : databases) {
        if (db->is_dropping) continue;
        for (const auto& [policy_name, rp] : db->policies) {
          if (rp->is_dropping) continue;
          for (const auto& [day, files] : rp->days) {
            // The current day (and later ones) still receive flushes: compacted once they end.
            if (files.size() < 2 || (is_today_skipped && day >= today)) continue;
            auto dir = policy_dir(db_name, policy_name) / day_name(day);
            // A past day compacts once it has min_files, or once it went a whole pass without
            // a new file (cold, as InfluxDB's compact-full-write-cold-duration).
            const bool is_cold = files_at_last_pass.count(dir.string()) != 0 &&
                                 files_at_last_pass.at(dir.string()) == files.size();
            files_now[dir.string()] = files.size();
            if (files.size() < min_files && !(is_today_skipped && is_cold)) continue;
            work.push_back(compaction{db_name, policy_name, db->incarnation, rp->incarnation, day,
                                      std::move(dir), files,
                                      shape_of(db_name, rp->policy, day, now_ns)});
          }
        }
      }
    }
    for (auto& c : work) rewrite_day(c);
    if (is_today_skipped) files_at_last_pass = std::move(files_now);
  }

  // Merges a day's files into one (a later generation wins on the same time) of the day's shape
  // (compaction: its points and the rollups dense enough; expiry: the kept tiers alone, every
  // bucket), which replaces the newest of them under its name, then deletes the others. A crash
  // between the two leaves files whose data the newest already holds: still correct. A block or
  // rollup that does not read leaves the day as it is: what cannot be read is not thrown away.
  bool rewrite_day(const compaction& c) {
    // A summary file (no points: a day's rollups that outlived them) holds every older file of
    // its day, which a crash may have left beside it: their points are in its buckets already.
    // A day with one stays a summary; points written into it after a policy grew stay apart.
    std::uint64_t summary_generation = 0;
    for (const auto& f : c.files)
      if (f.file->blocks().empty()) summary_generation = f.generation;
    if (summary_generation != 0 && c.shape.has_points) return false;
    const auto is_summarised = [summary_generation](const partition_file& f) {
      return f.generation <= summary_generation;
    };
    const std::uint64_t generation = c.files.back().generation;
    const fs::path path = c.dir / generation_name(generation);
    std::error_code error;
    auto out = partition::writer::create(path, error);
    if (!out) {
      spdlog::error("tsdb_compaction_failed dir={} error=\"{}\"", c.dir.string(), error.message());
      return false;
    }
    // Every field of every series of the day, points or rollups, with the newest file's key
    // and type for it.
    struct column_source {
      std::string_view series_key;
      field_type type = field_type::floating;
    };
    std::map<std::pair<std::uint64_t, std::string_view>, column_source> columns;
    for (const auto& f : c.files) {
      for (const auto& r : f.file->rollups())
        columns[{r.series_id, r.field}] = column_source{r.series_key, r.type};
      for (const auto& b : f.file->blocks())
        columns[{b.series_id, b.field}] = column_source{b.series_key, b.type};
    }
    for (const auto& [key, source] : columns) {
      point_run all;
      bool is_unreadable = false;
      for (const auto& f : c.files) {
        if (is_summarised(f)) continue;
        point_run from_file;
        for (const auto& b : f.file->find(key.first, key.second)) {
          auto decoded = f.file->read(b);
          if (const auto* why = std::get_if<std::string>(&decoded)) {
            if (f.file->is_first_failure(b.offset))
              spdlog::error("tsdb_block_unreadable file={} offset={} error=\"{}\"",
                            f.file->path().string(), b.offset, *why);
            // Expired points that cannot be read are not summarised; kept ones stay as they are.
            if (!c.shape.has_points) {
              is_unreadable = true;
              break;
            }
            spdlog::warn("tsdb_compaction_skipped dir={} reason=unreadable_block", c.dir.string());
            return false;
          }
          auto& points = std::get<partition::block>(decoded);
          for (std::size_t i = 0; i < points.times.size(); ++i) {
            if (type_of(points.values[i]) != source.type) continue;
            from_file.times.push_back(points.times[i]);
            from_file.values.push_back(std::move(points.values[i]));
          }
        }
        if (is_unreadable) break;
        sort_unique(from_file);
        all = merge_runs(std::move(all), std::move(from_file));
      }
      if (is_unreadable) {
        spdlog::warn("tsdb_rollups_lost dir={} series={} field={} reason=unreadable_block",
                     c.dir.string(), key.first, key.second);
        all = point_run{};
      }
      // A day with points: them and the kept tiers dense enough, as a flush writes them.
      if (c.shape.has_points) {
        if (auto add_error = out->add(key.first, source.series_key, key.second, source.type,
                                      all.times, all.values, c.shape.tiers)) {
          spdlog::error("tsdb_compaction_failed dir={} error=\"{}\"", c.dir.string(),
                        add_error.message());
          return false;
        }
        continue;
      }
      // A summary: every bucket of each kept tier, of the points and of the newest summary
      // file (which holds the older ones).
      if (!rollup::has_rollups(source.type)) continue;
      for (const std::int64_t tier : c.shape.tiers) {
        std::map<std::int64_t, rollup::bucket> kept;
        const auto absorb = [&kept](const rollup::bucket& b) {
          const auto [slot, is_new] = kept.emplace(b.start, b);
          if (!is_new) rollup::merge(slot->second, b);
        };
        if (!all.times.empty())
          for (const auto& b : rollup::compute(source.type, all.times, all.values, tier)) absorb(b);
        for (const auto& f : c.files) {
          if (f.generation != summary_generation) continue;
          for (const auto& r : f.file->find_rollups(key.first, key.second, tier)) {
            if (r.type != source.type) continue;
            auto read = f.file->read_rollup(r);
            if (const auto* why = std::get_if<std::string>(&read)) {
              if (f.file->is_first_failure(r.offset))
                spdlog::error("tsdb_rollup_unreadable file={} offset={} error=\"{}\"",
                              f.file->path().string(), r.offset, *why);
              spdlog::warn("tsdb_compaction_skipped dir={} reason=unreadable_rollup",
                           c.dir.string());
              return false;
            }
            for (const auto& b : std::get<std::vector<rollup::bucket>>(read)) absorb(b);
          }
        }
        if (kept.empty()) continue;
        std::vector<rollup::bucket> buckets;
        buckets.reserve(kept.size());
        for (auto& [start, b] : kept) buckets.push_back(std::move(b));
        if (auto add_error = out->add_buckets(key.first, source.series_key, key.second, source.type,
                                              tier, buckets)) {
          spdlog::error("tsdb_compaction_failed dir={} error=\"{}\"", c.dir.string(),
                        add_error.message());
          return false;
        }
      }
    }
    if (auto finish_error = out->finish()) {
      spdlog::error("tsdb_compaction_failed dir={} error=\"{}\"", c.dir.string(),
                    finish_error.message());
      return false;
    }
    auto opened = partition::reader::open(path);
    if (!opened.file) {  // the merged file is in place; the next start reads it
      spdlog::error("tsdb_compaction_failed dir={} step=open error=\"{}\"", c.dir.string(),
                    opened.error);
      return false;
    }
    std::shared_ptr<const partition::reader> merged = std::move(opened.file);
    bool is_registered = false;
    {
      std::unique_lock lock(state_mutex);
      auto* rp = find_exact(c.database, c.database_incarnation, c.policy, c.policy_incarnation);
      if (rp != nullptr) {
        if (const auto day = rp->days.find(c.day); day != rp->days.end()) {
          std::erase_if(day->second, [&c](const partition_file& f) {
            return std::any_of(c.files.begin(), c.files.end(), [&f](const partition_file& input) {
              return input.generation == f.generation;
            });
          });
          day->second.push_back(partition_file{generation, merged});
          std::sort(day->second.begin(), day->second.end(),
                    [](const partition_file& a, const partition_file& b) {
                      return a.generation < b.generation;
                    });
          is_registered = true;
        }
      }
    }
    if (!is_registered) return false;  // dropped meanwhile: its deletion takes the files
    for (const auto& f : c.files) {
      if (f.generation == generation) continue;
      std::error_code ignored;
      fs::remove(f.file->path(), ignored);
    }
    static_cast<void>(partition::sync_directory(c.dir));
    return true;
  }

  // ---- retention

  void enforce_retention_now() {
    std::lock_guard house(housekeeping_mutex);
    process_deletions();
    const std::int64_t now_ns = clock.unix_millis() * ns_per_ms;
    std::vector<fs::path> expired;
    std::vector<compaction> rewrites;  // days that keep some rollups longer than the rest
    {
      std::unique_lock lock(state_mutex);
      for (auto& [db_name, db] : databases) {
        const bool has_rollup_retention = rollup_retentions.contains(db_name);
        for (auto& [policy_name, rp] : db->policies) {
          if (rp->policy.duration_ns <= 0 && !has_rollup_retention) continue;
          // Whole days that ended by a cutoff.
          for (auto day = rp->days.begin(); day != rp->days.end();) {
            const day_shape shape = shape_of(db_name, rp->policy, day->first, now_ns);
            const fs::path dir = policy_dir(db_name, policy_name) / day_name(day->first);
            if (!shape.has_points && (shape.tiers.empty() || !is_summarisable(day->second))) {
              expired.push_back(dir);
              day = rp->days.erase(day);
              continue;
            }
            if (!db->is_dropping && !rp->is_dropping && holds_more_than(day->second, shape))
              rewrites.push_back(compaction{db_name, policy_name, db->incarnation, rp->incarnation,
                                            day->first, dir, day->second, shape});
            ++day;
          }
          if (rp->policy.duration_ns <= 0) continue;
          const std::int64_t cutoff = retained_from(rp->policy, now_ns);
          trim(rp->live, cutoff, true);
          for (auto series = rp->last.begin(); series != rp->last.end();) {
            std::erase_if(series->second,
                          [cutoff](const auto& entry) { return entry.second.time < cutoff; });
            series = series->second.empty() ? rp->last.erase(series) : std::next(series);
          }
        }
      }
    }
    for (const auto& dir : expired) {
      std::error_code error;
      fs::remove_all(dir, error);
      if (error)
        spdlog::warn("tsdb_retention_delete_failed dir={} error=\"{}\"", dir.string(),
                     error.message());
      else
        spdlog::info("tsdb_partition_expired dir={}", dir.string());
    }
    for (const auto& c : rewrites) {
      if (rewrite_day(c))
        spdlog::info("tsdb_partition_summarised dir={} points={} tiers={}", c.dir.string(),
                     c.shape.has_points, c.shape.tiers.size());
    }
  }

  // Drops buffered points older than `cutoff` (state_mutex held exclusively).
  void trim(write_buffer& buffer, std::int64_t cutoff, bool is_live) {
    std::size_t bytes = 0;
    std::size_t count = 0;
    for (auto series = buffer.series.begin(); series != buffer.series.end();) {
      auto& fields = series->second.fields;
      for (auto field = fields.begin(); field != fields.end();) {
        column& c = field->second;
        std::size_t kept = 0;
        for (std::size_t i = 0; i < c.times.size(); ++i) {
          if (c.times[i] < cutoff) {
            bytes += size_of(c.values[i]);
            ++count;
            continue;
          }
          if (kept != i) {
            c.times[kept] = c.times[i];
            c.values[kept] = std::move(c.values[i]);
          }
          ++kept;
        }
        c.times.resize(kept);
        c.values.resize(kept);
        if (kept > 0) c.back_time = c.times.back();
        if (kept == 0) {
          bytes += field->first.size() + entry_bytes;
          field = fields.erase(field);
        } else {
          ++field;
        }
      }
      if (fields.empty()) {
        bytes += series->second.key_bytes;
        series = buffer.series.erase(series);
      } else {
        ++series;
      }
    }
    buffer.bytes -= std::min(bytes, buffer.bytes);
    buffer.points -= std::min(count, buffer.points);
    buffered_bytes -= bytes;
    if (is_live) live_bytes -= bytes;
    buffered_points -= count;
  }

  // ---- the store's thread

  bool should_flush(core::steady_time now) {
    if (live_bytes.load() >= settings.cache_snapshot_memory) return true;
    std::shared_lock lock(state_mutex);
    return oldest_buffered && now - *oldest_buffered >= settings.cache_snapshot_age;
  }

  void run() {
    core::steady_time last_retention = clock.now();
    std::optional<core::steady_time> failed_at;
    std::unique_lock lock(thread_mutex);
    while (!is_stopping) {
      wake.wait_for(lock, tick_interval, [this] { return is_stopping || is_flush_requested; });
      if (is_stopping) break;
      is_flush_requested = false;
      lock.unlock();
      const core::steady_time now = clock.now();
      const bool is_retry_due = !failed_at || now - *failed_at >= flush_retry_interval;
      if (is_retry_due && (failed_at || should_flush(now))) {
        if (flush_now())
          failed_at.reset();
        else
          failed_at = now;
      }
      bool has_deletions = false;
      {
        std::lock_guard deleting(deletions_mutex);
        has_deletions = !deletions.empty();
      }
      if (has_deletions) {
        std::lock_guard house(housekeeping_mutex);
        process_deletions();
      }
      if (now - last_retention >= settings.housekeeping_interval) {
        last_retention = now;
        enforce_retention_now();
        compact_days(compaction_file_threshold, true);
      }
      lock.lock();
    }
  }

  // ---- start-up

  // Databases, policies and field types from SQLite; returns the largest min_generation.
  std::int64_t restore(storage::database& db) {
    std::unique_lock lock(state_mutex);
    std::int64_t max_min_generation = 0;
    auto rows = db.prepare("SELECT name, default_policy FROM tsdb_databases");
    while (rows.step()) {
      auto state = make_database_state(rows.column_text(0));
      state->default_policy = rows.column_text(1);
      auto name = state->name;
      databases.emplace(std::move(name), std::move(state));
    }
    auto policies = db.prepare(
        "SELECT db_name, name, duration_ns, shard_group_duration_ns, replication, min_generation "
        "FROM tsdb_retention_policies");
    while (policies.step()) {
      auto* state = find_database(policies.column_text(0));
      if (state == nullptr) continue;
      retention_policy p;
      p.name = policies.column_text(1);
      p.duration_ns = policies.column_int(2);
      p.shard_group_duration_ns = policies.column_int(3);
      p.replication = static_cast<int>(policies.column_int(4));
      const std::int64_t min_generation = policies.column_int(5);
      max_min_generation = std::max(max_min_generation, min_generation);
      auto name = p.name;
      state->policies.emplace(std::move(name), make_policy_state(std::move(p), min_generation));
    }
    auto fields = db.prepare("SELECT db_name, measurement, field, type FROM tsdb_fields");
    while (fields.step()) {
      auto* state = find_database(fields.column_text(0));
      const std::int64_t type = fields.column_int(3);
      if (state == nullptr || type < 0 || type > static_cast<std::int64_t>(field_type::string))
        continue;
      state->fields[fields.column_text(1)][fields.column_text(2)] = static_cast<field_type>(type);
    }
    return max_min_generation;
  }

  // The largest generation of any file under data/ (stale, temporary and set-aside ones too).
  std::uint64_t max_generation_on_disk() const {
    std::uint64_t max_generation = 0;
    std::error_code error;
    fs::recursive_directory_iterator it(data_dir, error);
    if (error) return 0;
    for (; it != fs::recursive_directory_iterator(); it.increment(error)) {
      if (error) break;
      if (auto g = generation_of_name(it->path().filename().string(), true))
        max_generation = std::max(max_generation, *g);
    }
    return max_generation;
  }

  void ensure_default_database() {
    const std::string& name = settings.default_database;
    if (name.empty()) return;
    {
      std::lock_guard meta(meta_mutex);
      if (pending.contains(name)) return;
    }
    auto created = std::make_shared<std::promise<std::optional<std::string>>>();
    auto answer = created->get_future();
    retention_policy autogen{std::string(autogen_name), 0, 0, 1, true};
    static_cast<void>(normalize_policy(autogen));
    create_database(name, autogen,
                    [created](std::optional<std::string> error) { created->set_value(error); });
    if (auto error = answer.get())
      throw std::runtime_error("tsdb: could not create the database " + name + ": " + *error);
    spdlog::info("tsdb_database_created database={} policy=autogen", name);
  }

  // Indexes data/<database>/<policy>/<day>/<generation>.tsp: unknown databases and policies and
  // stale generations are deleted, corrupt files set aside (*.corrupt).
  void index_partitions() {
    std::unique_lock lock(state_mutex);
    std::error_code error;
    std::size_t opened = 0;
    // Field types the blocks name and SQLite lacks: a flush may move the WAL's start past the
    // records that introduced a field before its row committed, and a crash then would leave
    // the points unreachable. The blocks say the type; it is stored again.
    std::vector<field_row> new_fields;
    for (const auto& db_entry : fs::directory_iterator(data_dir, error)) {
      if (!db_entry.is_directory()) continue;
      const auto db_name = name_of_path(db_entry.path().filename().string());
      auto* db = db_name ? find_database(*db_name) : nullptr;
      if (db == nullptr) {
        spdlog::warn("tsdb_partitions_removed dir={} reason=no_such_database",
                     db_entry.path().string());
        fs::remove_all(db_entry.path(), error);
        continue;
      }
      for (const auto& rp_entry : fs::directory_iterator(db_entry.path())) {
        if (!rp_entry.is_directory()) continue;
        const auto policy_name = name_of_path(rp_entry.path().filename().string());
        const auto found = policy_name ? db->policies.find(*policy_name) : db->policies.end();
        if (found == db->policies.end()) {
          spdlog::warn("tsdb_partitions_removed dir={} reason=no_such_policy",
                       rp_entry.path().string());
          fs::remove_all(rp_entry.path(), error);
          continue;
        }
        policy_state& rp = *found->second;
        for (const auto& day_entry : fs::directory_iterator(rp_entry.path())) {
          if (!day_entry.is_directory()) continue;
          const auto day = day_of_name(day_entry.path().filename().string());
          if (!day) continue;
          std::vector<partition_file> files;
          for (const auto& file_entry : fs::directory_iterator(day_entry.path())) {
            const std::string file_name = file_entry.path().filename().string();
            if (file_name.ends_with(".tmp")) {
              fs::remove(file_entry.path(), error);
              continue;
            }
            const auto generation = generation_of_name(file_name);
            if (!generation) continue;
            if (static_cast<std::int64_t>(*generation) < rp.min_generation) {
              // A dropped namesake's, left by a crash before its deletion.
              fs::remove(file_entry.path(), error);
              continue;
            }
            auto result = partition::reader::open(file_entry.path());
            if (!result.file) {
              spdlog::error("tsdb_partition_unreadable file={} corrupt={} error=\"{}\"",
                            file_entry.path().string(), result.is_corrupt, result.error);
              if (result.is_corrupt) {
                auto aside = file_entry.path();
                aside += ".corrupt";
                fs::rename(file_entry.path(), aside, error);
              }
              continue;
            }
            std::shared_ptr<const partition::reader> file = std::move(result.file);
            const auto register_column = [&](const auto& c) {
              register_stored_series(*db, c.series_id, c.series_key);
              if (const auto entry = db->series.find(c.series_id); entry != db->series.end()) {
                const std::string& measurement = entry->second.measurement;
                if (db->fields[measurement].emplace(c.field, c.type).second)
                  new_fields.push_back(field_row{db->name, measurement, c.field, c.type});
              }
            };
            // A day whose points expired keeps its series in its rollups.
            for (const auto& r : file->rollups()) register_column(r);
            for (const auto& b : file->blocks()) {
              register_column(b);
              auto& newest = rp.last[b.series_id];
              const auto last = newest.find(b.field);
              if (last == newest.end())
                newest.emplace(b.field, last_point{b.max_time, std::nullopt});
              else if (b.max_time > last->second.time)
                last->second = last_point{b.max_time, std::nullopt};
            }
            files.push_back(partition_file{*generation, std::move(file)});
            ++opened;
          }
          if (files.empty()) continue;
          std::sort(files.begin(), files.end(),
                    [](const partition_file& a, const partition_file& b) {
                      return a.generation < b.generation;
                    });
          rp.days.emplace(*day, std::move(files));
        }
      }
    }
    lock.unlock();
    if (opened > 0) spdlog::info("tsdb_partitions_indexed files={}", opened);
    if (!new_fields.empty()) {
      spdlog::warn("tsdb_field_types_recovered fields={}", new_fields.size());
      persist_fields(std::move(new_fields));
    }
  }

  void open_wal() {
    seglog::log::options o;
    o.dir = settings.dir / "wal";
    o.segment_bytes = settings.wal_segment_bytes;
    o.max_record_bytes = wal_max_record_bytes;
    seglog::recovery_report report;
    wal = seglog::log::open(o, committer, &report);
    if (report.truncated_bytes > 0 || !report.set_aside.empty())
      spdlog::warn("tsdb_wal_repaired truncated_bytes={} set_aside={}", report.truncated_bytes,
                   report.set_aside.size());
  }

  template <class Visit>
  void for_each_record(std::uint64_t from, Visit&& visit) {
    std::vector<seglog::record> records;
    std::uint64_t offset = from;
    while (offset < wal->next_offset()) {
      records.clear();
      if (auto error = wal->read(offset, replay_records, replay_bytes, records)) {
        spdlog::error("tsdb_wal_unreadable offset={} error=\"{}\"", offset, error.message());
        return;
      }
      if (records.empty()) return;
      for (const auto& r : records) visit(r);
      offset = records.back().offset + 1;
    }
  }

  // Replays the WAL from the flushed offset into memory (never appending to it).
  void replay() {
    std::uint64_t from = read_flushed_marker();
    if (from > wal->next_offset()) {
      spdlog::warn("tsdb_flush_marker_ahead_of_wal marker={} wal_next={}", from,
                   wal->next_offset());
      from = 0;
    }
    flushed_offset = from;
    // The last drop marker of each database and policy: older records of it are skipped.
    std::map<std::string, std::uint64_t, std::less<>> database_drops;
    std::map<std::pair<std::string, std::string>, std::uint64_t> policy_drops;
    for_each_record(from, [&](const seglog::record& r) {
      const auto header = parse_header(r.payload);
      if (!header) return;
      if (header->policy.empty())
        database_drops[std::string(header->database)] = r.offset;
      else if (header->body.empty())
        policy_drops[{std::string(header->database), std::string(header->policy)}] = r.offset;
    });

    std::set<std::pair<std::string, std::string>> warned;
    std::size_t replayed = 0;
    std::size_t skipped = 0;
    std::size_t refused = 0;
    std::vector<field_row> new_fields;
    const std::int64_t now_ns = clock.unix_millis() * ns_per_ms;
    std::unique_lock lock(state_mutex);
    for_each_record(from, [&](const seglog::record& r) {
      const auto header = parse_header(r.payload);
      if (!header) {
        ++skipped;
        return;
      }
      if (header->policy.empty() || header->body.empty()) return;  // a marker
      const std::string db_name(header->database);
      const std::string policy_name(header->policy);
      if (const auto drop = database_drops.find(db_name);
          drop != database_drops.end() && r.offset < drop->second)
        return;
      if (const auto drop = policy_drops.find({db_name, policy_name});
          drop != policy_drops.end() && r.offset < drop->second)
        return;
      auto* db = find_database(db_name);
      auto* rp = db != nullptr ? find_policy(*db, policy_name) : nullptr;
      if (rp == nullptr) {
        if (warned.insert({db_name, policy_name}).second)
          spdlog::warn("tsdb_wal_record_skipped database={} policy={} reason=not_found", db_name,
                       policy_name);
        ++skipped;
        return;
      }
      const std::int64_t min_time = retained_from(rp->policy, now_ns);
      check_scope scope{nullptr, &new_fields};
      auto parsed = parse_record_lines(header->body, now_ns);
      refused += parsed.rejected_lines;
      std::vector<point> points;
      std::vector<std::string> keys;
      points.reserve(parsed.points.size());
      keys.reserve(parsed.points.size());
      for (std::size_t i = 0; i < parsed.points.size(); ++i) {
        if (check_point(*db, parsed.points[i], parsed.series_keys[i], min_time, scope)) {
          ++refused;
          continue;
        }
        points.push_back(std::move(parsed.points[i]));
        keys.push_back(std::move(parsed.series_keys[i]));
      }
      if (!points.empty()) apply(*db, *rp, points, keys, r.offset);
      ++replayed;
    });
    applied_end = wal->next_offset();
    lock.unlock();
    if (!new_fields.empty()) persist_fields(std::move(new_fields));
    if (refused > 0) spdlog::warn("tsdb_wal_points_refused points={}", refused);
    spdlog::info("tsdb_wal_replayed from={} records={} skipped={} buffered_bytes={}", from,
                 replayed, skipped, buffered_bytes.load());
  }
};

// ---- store

store::store(storage::write_queue& writer, storage::database& db, core::clock& clock,
             store_settings settings)
    : impl_(std::make_unique<impl>(writer, clock, std::move(settings))) {
  auto& d = *impl_;
  fs::create_directories(d.data_dir);
  fs::create_directories(d.settings.dir / "wal");
  const std::int64_t max_min_generation = d.restore(db);
  d.next_generation = std::max<std::uint64_t>(
      {d.max_generation_on_disk() + 1, static_cast<std::uint64_t>(max_min_generation), 1});
  d.pending = d.view_of_applied();
  d.ensure_default_database();
  d.index_partitions();
  d.open_wal();
  d.replay();
}

store::~store() {
  stop();
  auto& d = *impl_;
  d.writer.drain();  // metadata callbacks still to come use this store (and its WAL)
  d.wal.reset();     // waits for the appends in flight, whose callbacks use this store too
  std::lock_guard house(d.housekeeping_mutex);
  d.process_deletions();
}

void store::migrate(storage::database& db) {
  db.migrate("tsdb", {R"sql(
    CREATE TABLE tsdb_databases (
      name TEXT PRIMARY KEY,
      default_policy TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE tsdb_retention_policies (
      db_name TEXT NOT NULL,
      name TEXT NOT NULL,
      duration_ns INTEGER NOT NULL,
      shard_group_duration_ns INTEGER NOT NULL,
      replication INTEGER NOT NULL,
      min_generation INTEGER NOT NULL,
      PRIMARY KEY (db_name, name)
    ) WITHOUT ROWID;
    CREATE TABLE tsdb_fields (
      db_name TEXT NOT NULL,
      measurement TEXT NOT NULL,
      field TEXT NOT NULL,
      type INTEGER NOT NULL,
      PRIMARY KEY (db_name, measurement, field)
    ) WITHOUT ROWID;
  )sql"});
}

void store::start() {
  auto& d = *impl_;
  if (d.thread.joinable()) return;
  {
    std::lock_guard lock(d.thread_mutex);
    d.is_stopping = false;
  }
  d.thread = std::thread([&d] { d.run(); });
}

void store::stop() {
  auto& d = *impl_;
  {
    std::lock_guard lock(d.thread_mutex);
    d.is_stopping = true;
  }
  d.wake.notify_all();
  if (d.thread.joinable()) d.thread.join();
}

// ---- metadata

void store::create_database(const std::string& name, std::optional<retention_policy> policy,
                            on_done done) {
  if (!is_valid_name(name)) return done("database name required");
  retention_policy rp =
      policy ? std::move(*policy) : retention_policy{std::string(autogen_name), 0, 0, 1, true};
  if (auto error = normalize_policy(rp)) return done(std::move(error));
  impl_->create_database(name, std::move(rp), std::move(done));
}

void store::drop_database(const std::string& name, on_done done) {
  auto& d = *impl_;
  std::unique_lock meta(d.meta_mutex);
  if (!d.pending.contains(name)) {
    meta.unlock();
    return done(std::nullopt);  // InfluxDB: a missing database is no error
  }
  d.set_dropping(name, std::nullopt, true);
  meta_change change;
  change.mutate = [name](meta_view& view) { view.erase(name); };
  change.undo = [&d, name] { d.set_dropping(name, std::nullopt, false); };
  change.apply = [&d, name](on_done& answer) {
    on_done taken = std::move(answer);
    answer = nullptr;
    d.finish_drop(name, std::nullopt, std::move(taken));
  };
  change.done = std::move(done);
  d.submit_change(meta, std::move(change), [name](storage::database& connection) {
    connection.cached("DELETE FROM tsdb_databases WHERE name = ?").bind(1, name).run();
    connection.cached("DELETE FROM tsdb_retention_policies WHERE db_name = ?").bind(1, name).run();
    connection.cached("DELETE FROM tsdb_fields WHERE db_name = ?").bind(1, name).run();
  });
}

void store::create_retention_policy(const std::string& database_name, retention_policy policy,
                                    on_done done) {
  auto& d = *impl_;
  if (auto error = normalize_policy(policy)) return done(std::move(error));
  std::unique_lock meta(d.meta_mutex);
  const auto db = d.pending.find(database_name);
  if (db == d.pending.end()) {
    meta.unlock();
    return done("database not found: " + database_name);
  }
  if (const auto existing = db->second.policies.find(policy.name);
      existing != db->second.policies.end()) {
    const auto& old = existing->second;
    const bool is_same = old.duration_ns == policy.duration_ns &&
                         old.shard_group_duration_ns == policy.shard_group_duration_ns &&
                         old.replication == policy.replication &&
                         (!policy.is_default || db->second.default_policy == policy.name);
    meta.unlock();
    if (is_same) return done(std::nullopt);
    return done("retention policy already exists");
  }
  const auto min_generation = static_cast<std::int64_t>(d.next_generation.load());
  meta_change change;
  change.mutate = [database_name, policy](meta_view& view) {
    const auto entry = view.find(database_name);
    if (entry == view.end()) return;
    entry->second.policies[policy.name] = policy;
    if (policy.is_default) entry->second.default_policy = policy.name;
  };
  change.apply = [&d, database_name, policy, min_generation](on_done&) {
    std::unique_lock lock(d.state_mutex);
    auto* state = d.find_database(database_name);
    if (state == nullptr) return;
    if (!state->policies.contains(policy.name))
      state->policies.emplace(policy.name, d.make_policy_state(policy, min_generation));
    if (policy.is_default) state->default_policy = policy.name;
  };
  change.done = std::move(done);
  d.submit_change(meta, std::move(change),
                  [database_name, policy, min_generation](storage::database& connection) {
                    insert_policy(connection, database_name, policy, min_generation);
                    if (policy.is_default)
                      set_default_policy(connection, database_name, policy.name);
                  });
}

void store::alter_retention_policy(const std::string& database_name, const std::string& name,
                                   std::optional<std::int64_t> duration_ns,
                                   std::optional<std::int64_t> shard_group_duration_ns,
                                   std::optional<int> replication, bool make_default,
                                   on_done done) {
  auto& d = *impl_;
  std::unique_lock meta(d.meta_mutex);
  const auto db = d.pending.find(database_name);
  if (db == d.pending.end()) {
    meta.unlock();
    return done("database not found: " + database_name);
  }
  const auto existing = db->second.policies.find(name);
  if (existing == db->second.policies.end()) {
    meta.unlock();
    return done("retention policy not found: " + name);
  }
  retention_policy updated = existing->second;
  if (duration_ns) updated.duration_ns = *duration_ns;
  if (shard_group_duration_ns) updated.shard_group_duration_ns = *shard_group_duration_ns;
  if (replication) updated.replication = *replication;
  if (auto error = normalize_policy(updated)) {
    meta.unlock();
    return done(std::move(error));
  }
  updated.is_default = false;
  meta_change change;
  change.mutate = [database_name, updated, make_default](meta_view& view) {
    const auto entry = view.find(database_name);
    if (entry == view.end()) return;
    entry->second.policies[updated.name] = updated;
    if (make_default) entry->second.default_policy = updated.name;
  };
  change.apply = [&d, database_name, updated, make_default](on_done&) {
    std::unique_lock lock(d.state_mutex);
    auto* state = d.find_database(database_name);
    if (state == nullptr) return;
    if (const auto found = state->policies.find(updated.name); found != state->policies.end())
      found->second->policy = updated;
    if (make_default) state->default_policy = updated.name;
  };
  change.done = std::move(done);
  d.submit_change(meta, std::move(change),
                  [database_name, updated, make_default](storage::database& connection) {
                    connection
                        .cached(
                            "UPDATE tsdb_retention_policies SET duration_ns = ?, "
                            "shard_group_duration_ns = ?, replication = ? WHERE db_name = ? AND "
                            "name = ?")
                        .bind(1, updated.duration_ns)
                        .bind(2, updated.shard_group_duration_ns)
                        .bind(3, static_cast<std::int64_t>(updated.replication))
                        .bind(4, database_name)
                        .bind(5, updated.name)
                        .run();
                    if (make_default) set_default_policy(connection, database_name, updated.name);
                  });
}

void store::drop_retention_policy(const std::string& database_name, const std::string& name,
                                  on_done done) {
  auto& d = *impl_;
  std::unique_lock meta(d.meta_mutex);
  const auto db = d.pending.find(database_name);
  if (db == d.pending.end()) {
    meta.unlock();
    return done("database not found: " + database_name);
  }
  if (!db->second.policies.contains(name)) {
    meta.unlock();
    return done("retention policy not found: " + name);
  }
  const bool was_default = db->second.default_policy == name;
  d.set_dropping(database_name, name, true);
  meta_change change;
  change.mutate = [database_name, name](meta_view& view) {
    const auto entry = view.find(database_name);
    if (entry == view.end()) return;
    entry->second.policies.erase(name);
    if (entry->second.default_policy == name) entry->second.default_policy.clear();
  };
  change.undo = [&d, database_name, name] { d.set_dropping(database_name, name, false); };
  change.apply = [&d, database_name, name](on_done& answer) {
    on_done taken = std::move(answer);
    answer = nullptr;
    d.finish_drop(database_name, name, std::move(taken));
  };
  change.done = std::move(done);
  d.submit_change(
      meta, std::move(change), [database_name, name, was_default](storage::database& connection) {
        connection.cached("DELETE FROM tsdb_retention_policies WHERE db_name = ? AND name = ?")
            .bind(1, database_name)
            .bind(2, name)
            .run();
        if (was_default) set_default_policy(connection, database_name, std::string());
      });
}

namespace {

database_info info_of(const database_state& db) {
  database_info info;
  info.name = db.name;
  for (const auto& [name, rp] : db.policies) {
    retention_policy p = rp->policy;
    p.is_default = name == db.default_policy;
    info.retention_policies.push_back(std::move(p));
  }
  return info;
}

}  // namespace

std::vector<database_info> store::databases() const {
  const auto& d = *impl_;
  std::shared_lock lock(d.state_mutex);
  std::vector<database_info> all;
  all.reserve(d.databases.size());
  for (const auto& [name, db] : d.databases) all.push_back(info_of(*db));
  return all;
}

std::optional<database_info> store::database(const std::string& name) const {
  const auto& d = *impl_;
  std::shared_lock lock(d.state_mutex);
  const auto* db = d.find_database(name);
  if (db == nullptr) return std::nullopt;
  return info_of(*db);
}

std::optional<retention_policy> store::policy(const std::string& database_name,
                                              const std::string& name) const {
  const auto& d = *impl_;
  std::shared_lock lock(d.state_mutex);
  const auto* db = d.find_database(database_name);
  if (db == nullptr) return std::nullopt;
  const auto* rp = impl::find_policy(*db, name);
  if (rp == nullptr) return std::nullopt;
  retention_policy p = rp->policy;
  p.is_default = p.name == db->default_policy;
  return p;
}

// ---- writes

void store::write(const std::string& database_name, const std::string& policy_given,
                  std::vector<point> points, on_written done) {
  const std::int64_t now_ms = impl_->clock.unix_millis();
  std::vector<std::string> keys;
  keys.reserve(points.size());
  for (auto& p : points) {
    if (!p.timestamp_ns) p.timestamp_ns = now_ms * ns_per_ms;
    keys.push_back(series_key(p));
  }
  write_points(database_name, policy_given, std::move(points), std::move(keys), nullptr,
               std::move(done));
}

void store::write_lines(const std::string& database, const std::string& retention_policy,
                        const lines_source& source, parse_result parsed, on_written done) {
  const lines_source* raw = parsed.rejected_lines == 0 ? &source : nullptr;
  write_points(database, retention_policy, std::move(parsed.points), std::move(parsed.series_keys),
               raw, std::move(done));
}

void store::write_points(const std::string& database_name, const std::string& policy_given,
                         std::vector<point> points, std::vector<std::string> keys,
                         const lines_source* raw, on_written done) {
  auto& d = *impl_;
  const std::int64_t now_ms = d.clock.unix_millis();

  write_outcome outcome;
  std::string policy_name = policy_given;
  std::vector<bool> is_taken(points.size(), false);
  auto batch = std::make_shared<impl::pending_write>();
  batch->pool = d.spent;
  batch->ids.assign(points.size(), 0);  // those check_point finds; apply() registers the rest
  // Checked under the shared lock, as writes mostly bring known fields; again under the
  // exclusive one when a point adds a field or measurement.
  const auto check = [&](bool is_shared) {
    outcome = write_outcome{};
    policy_name = policy_given;
    std::fill(batch->ids.begin(), batch->ids.end(), 0);
    auto* db = d.find_database(database_name);
    policy_state* rp = nullptr;
    if (db != nullptr && !db->is_dropping) {
      if (policy_name.empty()) policy_name = db->default_policy;
      rp = impl::find_policy(*db, policy_name);
    }
    if (db == nullptr || db->is_dropping) {
      outcome.refusal = write_refusal::database_not_found;
      outcome.message = "database not found: \"" + database_name + "\"";
    } else if (rp == nullptr || rp->is_dropping) {
      outcome.refusal = write_refusal::retention_policy_not_found;
      outcome.message = "retention policy not found: \"" + policy_name + "\"";
    } else if (const std::size_t buffered = d.buffered_bytes.load();
               buffered >= d.settings.cache_max_memory) {
      outcome.refusal = write_refusal::cache_full;
      outcome.message = "cache-max-memory-size exceeded: (" + std::to_string(buffered) + "/" +
                        std::to_string(d.settings.cache_max_memory) + ")";
    } else {
      std::unordered_set<std::string> new_keys;
      std::vector<field_row> new_fields;
      impl::check_scope scope{&new_keys, &new_fields, is_shared};
      const std::int64_t min_time = retained_from(rp->policy, now_ms * ns_per_ms);
      for (std::size_t i = 0; i < points.size(); ++i) {
        auto why = d.check_point(*db, points[i], keys[i], min_time, scope, &batch->ids[i]);
        if (scope.needs_adding) return false;
        if (why) {
          ++outcome.dropped;
          if (outcome.message.empty()) outcome.message = std::move(*why);
          is_taken[i] = false;
          continue;
        }
        is_taken[i] = true;
        ++outcome.written;
      }
      // Under the lock: a drop marks the database before it submits, so these rows go to SQLite
      // before the drop's DELETE, never after it.
      if (!new_fields.empty()) d.persist_fields(std::move(new_fields));
      batch->database_incarnation = db->incarnation;
      batch->policy_incarnation = rp->incarnation;
    }
    return true;
  };
  bool is_checked = false;
  {
    std::shared_lock lock(d.state_mutex);
    is_checked = check(true);
  }
  if (!is_checked) {
    std::unique_lock lock(d.state_mutex);
    check(false);
  }
  if (outcome.refusal != write_refusal::none) {
    ++d.writes_refused;
    return done(std::move(outcome));
  }
  d.points_dropped += outcome.dropped;
  if (outcome.written == 0) return done(std::move(outcome));

  batch->database = database_name;
  batch->policy = policy_name;
  std::string payload = database_name + '\n' + policy_name + '\n';
  if (raw != nullptr && outcome.dropped == 0) {
    // Every line taken: the WAL keeps the body as it came, which replay parses the same way.
    payload += raw_lines_marker;
    payload += std::to_string(static_cast<int>(raw->unit));
    payload += ' ';
    payload += std::to_string(raw->now_ns);
    payload += '\n';
    payload += raw->body;
    batch->points = std::move(points);
    batch->keys = std::move(keys);
  } else {
    batch->points.reserve(outcome.written);
    batch->keys.reserve(outcome.written);
    std::size_t taken = 0;
    for (std::size_t i = 0; i < points.size(); ++i) {
      if (!is_taken[i]) continue;
      payload += format_line(points[i]);
      payload += '\n';
      batch->points.push_back(std::move(points[i]));
      batch->keys.push_back(std::move(keys[i]));
      batch->ids[taken++] = batch->ids[i];
    }
    batch->ids.resize(taken);
  }
  {
    // Under the lock, and only if nothing was dropped meanwhile: a drop's WAL marker, appended
    // under the exclusive lock, then follows every record of what it dropped.
    std::shared_lock lock(d.state_mutex);
    if (d.find_exact(batch->database, batch->database_incarnation, batch->policy,
                     batch->policy_incarnation) != nullptr &&
        !d.find_database(batch->database)->is_dropping) {
      std::vector<std::string> payloads;
      payloads.push_back(std::move(payload));
      d.wal->append(std::move(payloads), now_ms,
                    [&d, batch, outcome, done = std::move(done)](std::error_code error,
                                                                 std::uint64_t offset) {
                      d.on_appended(error, offset, batch, outcome, done);
                    });
      return;
    }
  }
  ++d.writes_refused;
  outcome.refusal = write_refusal::database_not_found;
  outcome.message = "database not found: \"" + database_name + "\"";
  outcome.written = 0;
  done(std::move(outcome));
}

parse_result store::spent_batch() {
  return impl_->spent->take();
}

void store::set_observer(write_observer observer) {
  impl_->observer = std::move(observer);
}

// ---- reads

std::vector<std::string> store::measurements(const std::string& database_name) const {
  const auto& d = *impl_;
  std::shared_lock lock(d.state_mutex);
  std::vector<std::string> names;
  const auto* db = d.find_database(database_name);
  if (db == nullptr) return names;
  for (const auto& [name, ids] : db->measurements)
    if (!ids.empty()) names.push_back(name);
  return names;
}

std::vector<series_info> store::series(const std::string& database_name,
                                       const std::string& measurement) const {
  const auto& d = *impl_;
  std::vector<std::pair<std::string, series_info>> found;
  {
    std::shared_lock lock(d.state_mutex);
    const auto* db = d.find_database(database_name);
    if (db == nullptr) return {};
    const auto add = [&found, db](std::uint64_t id) {
      const auto entry = db->series.find(id);
      if (entry == db->series.end()) return;
      found.emplace_back(entry->second.key,
                         series_info{id, entry->second.measurement, entry->second.tags});
    };
    if (measurement.empty()) {
      for (const auto& [id, entry] : db->series) add(id);
    } else if (const auto ids = db->measurements.find(measurement); ids != db->measurements.end()) {
      for (const std::uint64_t id : ids->second) add(id);
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<series_info> sorted;
  sorted.reserve(found.size());
  for (auto& [key, info] : found) sorted.push_back(std::move(info));
  return sorted;
}

std::map<std::string, field_type> store::fields(const std::string& database_name,
                                                const std::string& measurement) const {
  const auto& d = *impl_;
  std::shared_lock lock(d.state_mutex);
  const auto* db = d.find_database(database_name);
  if (db == nullptr) return {};
  const auto found = db->fields.find(measurement);
  if (found == db->fields.end()) return {};
  return found->second;
}

field_column store::read(const std::string& database_name, const std::string& policy_name,
                         std::uint64_t series_id, const std::string& field, std::int64_t min_ns,
                         std::int64_t max_ns) const {
  const auto& d = *impl_;
  field_column result;
  std::optional<field_type> type;
  struct file_blocks {
    std::shared_ptr<const partition::reader> file;
    std::vector<const partition::block_info*> blocks;
  };
  std::vector<file_blocks> files;  // by day, then generation: later ones win
  std::vector<point_run> memory;   // snapshots, oldest first, then the live buffer
  {
    std::shared_lock lock(d.state_mutex);
    const auto* db = d.find_database(database_name);
    const auto* rp = db != nullptr ? impl::find_policy(*db, policy_name) : nullptr;
    if (rp == nullptr) return result;
    if (const auto entry = db->series.find(series_id); entry != db->series.end()) {
      if (const auto known = db->fields.find(entry->second.measurement);
          known != db->fields.end()) {
        if (const auto f = known->second.find(field); f != known->second.end()) type = f->second;
      }
    }
    result.type = type.value_or(field_type::floating);
    if (min_ns > max_ns) return result;
    const std::int64_t last_day = day_of(max_ns);
    for (auto day = rp->days.lower_bound(day_of(min_ns));
         day != rp->days.end() && day->first <= last_day; ++day) {
      for (const auto& f : day->second) {
        file_blocks candidate{f.file, {}};
        for (const auto& b : f.file->find(series_id, field))
          if (b.max_time >= min_ns && b.min_time <= max_ns) candidate.blocks.push_back(&b);
        if (!candidate.blocks.empty()) files.push_back(std::move(candidate));
      }
    }
    const auto take_from = [&memory, series_id, &field, min_ns, max_ns](const write_buffer& b) {
      const auto buffered = b.series.find(series_id);
      if (buffered == b.series.end()) return;
      const auto c = buffered->second.fields.find(field);
      if (c == buffered->second.fields.end()) return;
      point_run r = copy_range(c->second, min_ns, max_ns);
      if (!r.times.empty()) memory.push_back(std::move(r));
    };
    for (const auto& snapshot : rp->snapshots) take_from(*snapshot);
    take_from(rp->live);
  }

  point_run merged;
  for (auto& candidate : files) {
    point_run from_file;
    for (const auto* b : candidate.blocks) {
      auto decoded = candidate.file->read(*b);
      if (const auto* why = std::get_if<std::string>(&decoded)) {
        if (candidate.file->is_first_failure(b->offset))
          spdlog::error("tsdb_block_unreadable file={} offset={} error=\"{}\"",
                        candidate.file->path().string(), b->offset, *why);
        continue;  // skipped: the rest of the series still answers
      }
      auto& points = std::get<partition::block>(decoded);
      for (std::size_t i = 0; i < points.times.size(); ++i) {
        if (points.times[i] < min_ns || points.times[i] > max_ns) continue;
        from_file.times.push_back(points.times[i]);
        from_file.values.push_back(std::move(points.values[i]));
      }
    }
    sort_unique(from_file);
    merged = merge_runs(std::move(merged), std::move(from_file));
  }
  for (auto& r : memory) merged = merge_runs(std::move(merged), std::move(r));

  if (!type && !merged.values.empty()) type = type_of(merged.values.front());
  result.type = type.value_or(field_type::floating);
  result.times.reserve(merged.times.size());
  result.values.reserve(merged.times.size());
  for (std::size_t i = 0; i < merged.times.size(); ++i) {
    if (type_of(merged.values[i]) != result.type) continue;
    result.times.push_back(merged.times[i]);
    result.values.push_back(std::move(merged.values[i]));
  }
  return result;
}

rollup_column store::read_rollup(const std::string& database_name, const std::string& policy_name,
                                 std::uint64_t series_id, const std::string& field,
                                 std::int64_t max_tier, std::int64_t min_ns,
                                 std::int64_t max_ns) const {
  const auto& d = *impl_;
  rollup_column result;
  std::map<std::int64_t, std::vector<std::shared_ptr<const partition::reader>>> days;
  std::vector<std::pair<std::int64_t, std::int64_t>> buffered;  // spans of points in memory
  {
    std::shared_lock lock(d.state_mutex);
    const auto* db = d.find_database(database_name);
    const auto* rp = db != nullptr ? impl::find_policy(*db, policy_name) : nullptr;
    if (rp == nullptr || min_ns > max_ns) return result;
    std::optional<field_type> type;
    if (const auto entry = db->series.find(series_id); entry != db->series.end()) {
      if (const auto known = db->fields.find(entry->second.measurement);
          known != db->fields.end()) {
        if (const auto f = known->second.find(field); f != known->second.end()) type = f->second;
      }
    }
    if (!type) return result;  // no such field: no points
    result.type = *type;
    if (!rollup::has_rollups(*type)) {
      result.raw.emplace_back(min_ns, max_ns);
      return result;
    }
    const std::int64_t last_day = day_of(max_ns);
    for (auto day = rp->days.lower_bound(day_of(min_ns));
         day != rp->days.end() && day->first <= last_day; ++day)
      for (const auto& f : day->second) days[day->first].push_back(f.file);
    const auto note_buffered = [&buffered, series_id, &field, min_ns,
                                max_ns](const write_buffer& b) {
      const auto found = b.series.find(series_id);
      if (found == b.series.end()) return;
      const auto c = found->second.fields.find(field);
      if (c == found->second.fields.end() || c->second.times.empty()) return;
      const auto [low, high] = std::minmax_element(c->second.times.begin(), c->second.times.end());
      if (*high >= min_ns && *low <= max_ns) buffered.emplace_back(*low, *high);
    };
    for (const auto& snapshot : rp->snapshots) note_buffered(*snapshot);
    note_buffered(rp->live);
  }

  // Each file's buckets of a tier, decoded once per call; nullopt: the file has points of the
  // column but not this tier (or an unreadable rollup), so they must be read.
  std::map<std::pair<const partition::reader*, std::int64_t>,
           std::optional<std::vector<rollup::bucket>>>
      decoded;
  const auto buckets_of =
      [&](const partition::reader& file,
          std::int64_t tier) -> const std::optional<std::vector<rollup::bucket>>& {
    const auto key = std::pair(&file, tier);
    if (const auto found = decoded.find(key); found != decoded.end()) return found->second;
    auto& slot = decoded[key];
    const auto entries = file.find_rollups(series_id, field, tier);
    if (entries.size() != 1) {
      // Nothing to summarise, unless the file's points expired and a finer tier outlived them.
      const bool has_finer =
          std::any_of(std::begin(rollup::tiers), std::end(rollup::tiers), [&](std::int64_t finer) {
            return finer < tier && !file.find_rollups(series_id, field, finer).empty();
          });
      if (file.find(series_id, field).empty() && !has_finer) slot.emplace();
      return slot;
    }
    auto read = file.read_rollup(entries.front());
    if (auto* why = std::get_if<std::string>(&read)) {
      if (file.is_first_failure(entries.front().offset))
        spdlog::error("tsdb_rollup_unreadable file={} offset={} error=\"{}\"", file.path().string(),
                      entries.front().offset, *why);
      return slot;
    }
    slot = std::move(std::get<std::vector<rollup::bucket>>(read));
    return slot;
  };
  // The bucket [start, start + tier) from every file of its day. A file with points but without
  // the tier has no finer one either (a tier is kept when its buckets average enough points,
  // which finer ones average fewer of): read its points. A file whose points expired may keep
  // finer tiers only (rollup retention): ask them. Overwritten or buffered points may be clean at a
  // finer tier.
  enum class verdict { summarised, empty, finer, raw };
  rollup::bucket merged;
  const auto answer = [&](std::int64_t start, std::int64_t tier) -> verdict {
    const std::int64_t end = start + (tier - 1);
    for (const auto& [low, high] : buffered)
      if (high >= start && low <= end) return verdict::finer;
    const auto day = days.find(day_of(start));
    if (day == days.end()) return verdict::empty;
    std::vector<const rollup::bucket*> parts;
    for (const auto& file : day->second) {
      const auto& buckets = buckets_of(*file, tier);
      if (!buckets) {
        const auto blocks = file->find(series_id, field);
        if (blocks.empty()) return verdict::finer;  // summaries of expired points, finer ones
        for (const auto& b : blocks)
          if (b.max_time >= start && b.min_time <= end) return verdict::raw;
        continue;
      }
      const auto found =
          std::lower_bound(buckets->begin(), buckets->end(), start,
                           [](const rollup::bucket& b, std::int64_t t) { return b.start < t; });
      if (found != buckets->end() && found->start == start) parts.push_back(&*found);
    }
    if (parts.empty()) return verdict::empty;
    std::sort(parts.begin(), parts.end(),
              [](const auto* a, const auto* b) { return a->first_time < b->first_time; });
    merged = *parts.front();
    for (std::size_t i = 1; i < parts.size(); ++i) {
      // Overlapping spans may share a time, which one file overwrote.
      if (parts[i]->first_time <= parts[i - 1]->last_time) return verdict::finer;
      rollup::merge(merged, *parts[i]);
    }
    return verdict::summarised;
  };

  const auto* const tiers_end = std::end(rollup::tiers);
  const auto add_raw = [&result](std::int64_t low, std::int64_t high) {
    if (!result.raw.empty() && result.raw.back().second + 1 == low)
      result.raw.back().second = high;
    else
      result.raw.emplace_back(low, high);
  };
  // [low, high] from the tier at `tier` down: whole clean buckets, the rest one tier finer.
  const auto decompose = [&](auto& self, std::int64_t low, std::int64_t high,
                             const std::int64_t* tier) -> void {
    if (tier == tiers_end) return add_raw(low, high);
    const std::int64_t width = *tier;
    const auto last_whole = static_cast<std::uint64_t>(width - 1);
    // high - a as unsigned (a <= high): no overflow whatever the range.
    const auto distance = [high](std::int64_t a) {
      return static_cast<std::uint64_t>(high) - static_cast<std::uint64_t>(a);
    };
    // The first bucket start at or after `low`; whole buckets end by `high`.
    const std::int64_t remainder = ((low % width) + width) % width;
    if (remainder != 0 && low > std::numeric_limits<std::int64_t>::max() - (width - remainder))
      return self(self, low, high, tier + 1);
    const std::int64_t first = remainder == 0 ? low : low + (width - remainder);
    if (first > high || distance(first) < last_whole) return self(self, low, high, tier + 1);
    if (low < first) self(self, low, first - 1, tier + 1);
    std::int64_t start = first;
    for (;; start += width) {
      switch (answer(start, width)) {
        case verdict::summarised:
          result.buckets.push_back(merged);
          break;
        case verdict::empty:
          break;
        case verdict::finer:
          self(self, start, start + (width - 1), tier + 1);
          break;
        case verdict::raw:
          add_raw(start, start + (width - 1));
          break;
      }
      if (distance(start) < last_whole + static_cast<std::uint64_t>(width)) break;
    }
    if (distance(start) > last_whole) self(self, start + width, high, tier + 1);
  };
  // Only where there are points: partitions' days and buffered spans.
  std::int64_t data_low = std::numeric_limits<std::int64_t>::max();
  std::int64_t data_high = std::numeric_limits<std::int64_t>::min();
  if (!days.empty()) {
    // Saturated: the first and last days of the time range are not whole.
    constexpr std::int64_t first_day = std::numeric_limits<std::int64_t>::min() / ns_per_day + 1;
    constexpr std::int64_t last_day = std::numeric_limits<std::int64_t>::max() / ns_per_day - 1;
    data_low = days.begin()->first < first_day ? std::numeric_limits<std::int64_t>::min()
                                               : days.begin()->first * ns_per_day;
    data_high = days.rbegin()->first > last_day
                    ? std::numeric_limits<std::int64_t>::max()
                    : days.rbegin()->first * ns_per_day + (ns_per_day - 1);
  }
  for (const auto& [low, high] : buffered) {
    data_low = std::min(data_low, low);
    data_high = std::max(data_high, high);
  }
  const std::int64_t low = std::max(min_ns, data_low);
  const std::int64_t high = std::min(max_ns, data_high);
  if (low <= high)
    decompose(decompose, low, high, std::find(std::begin(rollup::tiers), tiers_end, max_tier));
  std::sort(result.buckets.begin(), result.buckets.end(),
            [](const rollup::bucket& a, const rollup::bucket& b) { return a.start < b.start; });
  return result;
}

std::optional<std::pair<std::int64_t, field_value>> store::last(const std::string& database_name,
                                                                const std::string& policy_name,
                                                                std::uint64_t series_id,
                                                                const std::string& field) const {
  auto& d = *impl_;
  std::int64_t time = 0;
  {
    std::shared_lock lock(d.state_mutex);
    const auto* db = d.find_database(database_name);
    const auto* rp = db != nullptr ? impl::find_policy(*db, policy_name) : nullptr;
    if (rp == nullptr) return std::nullopt;
    const auto by_series = rp->last.find(series_id);
    if (by_series == rp->last.end()) return std::nullopt;
    const auto entry = by_series->second.find(field);
    if (entry == by_series->second.end()) return std::nullopt;
    if (entry->second.value) return std::pair(entry->second.time, *entry->second.value);
    time = entry->second.time;
  }
  // Known from a partition's index only (since the start): read that point once, then keep it.
  const auto found = read(database_name, policy_name, series_id, field, time, max_time_ns);
  if (found.times.empty()) return std::nullopt;
  std::pair<std::int64_t, field_value> newest(found.times.back(), found.values.back());
  std::unique_lock lock(d.state_mutex);
  const auto* db = d.find_database(database_name);
  auto* rp = db != nullptr ? impl::find_policy(*db, policy_name) : nullptr;
  if (rp != nullptr) {
    auto& entries = rp->last[series_id];
    const auto entry = entries.find(field);
    if (entry != entries.end() && !entry->second.value && entry->second.time <= newest.first)
      entry->second = last_point{newest.first, newest.second};
  }
  return newest;
}

// ---- housekeeping

void store::flush() {
  static_cast<void>(impl_->flush_now());
}

void store::set_rollup_retention(const std::string& database, rollup_retention retention) {
  std::unique_lock lock(impl_->state_mutex);
  if (retention.duration_ns.empty())
    impl_->rollup_retentions.erase(database);
  else
    impl_->rollup_retentions[database] = std::move(retention);
}

void store::compact() {
  impl_->compact_days(2, false);
}

void store::enforce_retention() {
  impl_->enforce_retention_now();
}

store::statistics store::stats() const {
  const auto& d = *impl_;
  statistics s;
  {
    std::shared_lock lock(d.state_mutex);
    for (const auto& [name, db] : d.databases) {
      s.series += db->series.size();
      for (const auto& [policy_name, rp] : db->policies) {
        s.partitions += rp->days.size();
        for (const auto& [day, files] : rp->days)
          for (const auto& f : files) s.partition_bytes += f.file->size_bytes();
      }
    }
  }
  s.buffered_bytes = d.buffered_bytes.load();
  s.buffered_points = d.buffered_points.load();
  s.points_written = d.points_written.load();
  s.points_dropped = d.points_dropped.load();
  s.writes_refused = d.writes_refused.load();
  s.flushes = d.flushes.load();
  s.wal_bytes = d.wal ? d.wal->size_bytes() : 0;
  return s;
}

std::string store::prometheus_text() const {
  const statistics now = stats();
  std::string out;
  const auto metric = [&out](std::string_view name, std::string_view type, std::string_view help,
                             std::uint64_t value) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += name;
    out += ' ';
    out += std::to_string(value);
    out += '\n';
  };
  metric("nimbus_tsdb_series", "gauge", "Series across the time-series databases", now.series);
  metric("nimbus_tsdb_buffered_bytes", "gauge", "Bytes of points in the write buffer",
         now.buffered_bytes);
  metric("nimbus_tsdb_buffered_points", "gauge", "Field values in the write buffer",
         now.buffered_points);
  metric("nimbus_tsdb_points_written_total", "counter", "Points taken by writes",
         now.points_written);
  metric("nimbus_tsdb_points_dropped_total", "counter",
         "Points of writes dropped (type conflicts, series limit, retention)", now.points_dropped);
  metric("nimbus_tsdb_writes_refused_total", "counter",
         "Whole writes refused (buffer full, database missing, I/O)", now.writes_refused);
  metric("nimbus_tsdb_flushes_total", "counter", "Write buffer flushes to partitions", now.flushes);
  metric("nimbus_tsdb_wal_bytes", "gauge", "Bytes of the write-ahead log", now.wal_bytes);
  metric("nimbus_tsdb_partition_bytes", "gauge", "Bytes of partition files", now.partition_bytes);
  metric("nimbus_tsdb_partition_files", "gauge", "Partition files", now.partitions);
  return out;
}

}  // namespace nimbus::tsdb
