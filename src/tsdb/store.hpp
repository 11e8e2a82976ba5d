#pragma once
// The time-series store: databases and retention policies (metadata in SQLite), points in a
// write-ahead log (a seglog of line-protocol batches under <dir>/wal), a write buffer in memory
// and day partitions of compressed columnar blocks under <dir>/data. Owned by the server; no
// HTTP inside (the Influx APIs are influx_http.hpp, queries query.hpp).
//
// Durability, as every Nimbus store: write() calls back once the batch is in the WAL per
// `wal_fsync` (interval: in the OS, so it survives kill -9; always: synced), and only then is it
// applied to memory, so a query never sees a point that a crash could lose. Thread-safety: every
// member may be called from any thread; reads take a shared lock, applying a batch an exclusive
// one, and flushing the buffer to partitions runs on the store's own thread.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "seglog/committer.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"
#include "tsdb/line_protocol.hpp"
#include "tsdb/rollup.hpp"

namespace nimbus::tsdb {

struct store_settings {
  std::filesystem::path dir;  // <data>/tsdb: wal/ and data/ below it
  seglog::fsync_policy wal_fsync = seglog::fsync_policy::interval;
  // The write buffer: past cache_max_memory bytes writes are refused (503 + Retry-After) until a
  // flush frees some; past cache_snapshot_memory, or when its oldest point is older than
  // cache_snapshot_age, it is flushed to partitions and the WAL before it dropped.
  std::size_t cache_max_memory = std::size_t{1} << 30;
  std::size_t cache_snapshot_memory = std::size_t{25} << 20;
  std::chrono::milliseconds cache_snapshot_age{std::chrono::minutes(10)};
  // How often retention drops expired days and past days with several files are compacted.
  std::chrono::milliseconds housekeeping_interval{std::chrono::minutes(1)};
  std::size_t max_series_per_database = 1'000'000;  // 0: no limit
  std::string default_database = "nimbus";          // exists from the start
  // The WAL's segment size. A flush deletes the segments it covers but never the one being
  // written, so this bounds the WAL left behind a flush (tests make it small to see it go).
  std::uint64_t wal_segment_bytes = std::uint64_t{16} << 20;
};

// InfluxDB's retention policy. duration 0 = infinite; shard_group_duration as InfluxDB derives
// it (1 h below 2 days, 1 d below 6 months, else 7 d) unless given; partitions are always days.
struct retention_policy {
  std::string name;
  std::int64_t duration_ns = 0;
  std::int64_t shard_group_duration_ns = 0;
  int replication = 1;
  bool is_default = false;
};

// How long a database keeps each rollup tier (the config's rollups = ["1m:30d", "1h:1y",
// "1d:inf"]): by tier (a rollup::tiers value), a duration, 0 for ever. A tier not given lives as
// long as the points it summarises (every tier's default). A tier that outlives the points keeps
// their day's summaries: once the points expire, the day's files are rewritten with its kept
// tiers alone, every bucket of them; a tier that expires first is taken out of the files.
struct rollup_retention {
  std::map<std::int64_t, std::int64_t> duration_ns;  // by tier
  friend bool operator==(const rollup_retention&, const rollup_retention&) = default;
};

struct database_info {
  std::string name;
  std::vector<retention_policy> retention_policies;  // by name
};

// Why a whole write was refused, before any of it was taken.
enum class write_refusal {
  none,
  database_not_found,          // 404 "database not found: \"x\""
  retention_policy_not_found,  // 404 "retention policy not found: \"x\""
  cache_full,                  // 503 + Retry-After: the buffer is at cache_max_memory
  io_error,                    // 500: the WAL could not be written (disk full...)
};

// What became of one write(): a refusal, or the points taken and those dropped with InfluxDB's
// reason for the first dropped ("field type conflict: input field \"v\" on measurement \"m\" is
// type integer, already exists as type float", "max-series-per-database limit exceeded: (N)").
struct write_outcome {
  write_refusal refusal = write_refusal::none;
  std::string message;  // the refusal's or the first drop's wording, InfluxDB's
  std::size_t written = 0;
  std::size_t dropped = 0;
};

// A series as queries see it. Tags sorted by key.
struct series_info {
  std::uint64_t id = 0;
  std::string measurement;
  std::vector<std::pair<std::string, std::string>> tags;
};

// One field of one series over a time range: ascending times, unique (same time: the last write
// won), values all of the field's type.
struct field_column {
  field_type type = field_type::floating;
  std::vector<std::int64_t> times;
  std::vector<field_value> values;
};

// One field of one series over a time range as rollup buckets and the ranges left to read as
// points (store::read_rollup). Together they hold each point of the range exactly once.
struct rollup_column {
  field_type type = field_type::floating;
  std::vector<rollup::bucket> buckets;                     // ascending, of mixed tiers
  std::vector<std::pair<std::int64_t, std::int64_t>> raw;  // [from, to], ascending
};

// A durable batch, for whoever watches writes (alerts, live charts): after it is applied.
struct written_batch {
  std::string database;
  std::string retention_policy;
  const std::vector<point>* points = nullptr;  // valid during the call only
  // The same points, for an observer that keeps them past the call (no copy; never changed),
  // and their series keys (series_key() of each) and ids in the database, when the store has
  // them (an id is series_id(key) unless another key of the database had it first).
  std::shared_ptr<const std::vector<point>> shared_points;
  std::shared_ptr<const std::vector<std::string>> shared_keys;
  std::shared_ptr<const std::vector<std::uint64_t>> shared_ids;
};
using write_observer = std::function<void(const written_batch&)>;

class store {
 public:
  // `writer` persists metadata (databases, retention policies, field types); `clock` stamps
  // housekeeping. Opening recovers: partitions are indexed, the WAL replayed (a torn tail cut).
  store(storage::write_queue& writer, storage::database& db, core::clock& clock,
        store_settings settings);
  ~store();  // stop()s
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  static void migrate(storage::database& db);
  void start();  // the flush/retention thread
  void stop();   // flushes nothing: the WAL holds what memory does

  // ---- metadata (InfluxQL's CREATE/DROP, the config's databases). Errors are InfluxDB's words;
  // `done` runs once the change is durable (on the writer thread: post, don't work).
  using on_done = std::function<void(std::optional<std::string> error)>;
  void create_database(const std::string& name, std::optional<retention_policy> policy,
                       on_done done);                         // existing: no error (as InfluxDB)
  void drop_database(const std::string& name, on_done done);  // missing: no error
  void create_retention_policy(const std::string& database, retention_policy policy, on_done done);
  // Changes the fields given (duration, replication, default, shard duration).
  void alter_retention_policy(const std::string& database, const std::string& name,
                              std::optional<std::int64_t> duration_ns,
                              std::optional<std::int64_t> shard_group_duration_ns,
                              std::optional<int> replication, bool make_default, on_done done);
  void drop_retention_policy(const std::string& database, const std::string& name, on_done done);

  // Rollup retention is the config's, not stored: set at every start (before start()), for a
  // database that exists or will.
  void set_rollup_retention(const std::string& database, rollup_retention retention);

  std::vector<database_info> databases() const;
  std::optional<database_info> database(const std::string& name) const;
  // The policy `name` of `database` (its default when empty), nullopt when either is missing.
  std::optional<retention_policy> policy(const std::string& database,
                                         const std::string& name) const;

  // ---- writes. Points of one batch go to one database and policy (empty: the default).
  // `done` runs once, on the WAL committer's thread (post, don't work) or inline for a refusal.
  using on_written = std::function<void(write_outcome)>;
  void write(const std::string& database, const std::string& retention_policy,
             std::vector<point> points, on_written done);
  // A request's body as parse_lines(body, unit, now_ns) read it: when every line is taken the
  // WAL keeps the body itself rather than the points written anew (`body` is copied before
  // this returns).
  struct lines_source {
    std::string_view body;
    precision unit = precision::ns;
    std::int64_t now_ns = 0;
  };
  void write_lines(const std::string& database, const std::string& retention_policy,
                   const lines_source& source, parse_result parsed, on_written done);
  // A spent batch's points and keys (or an empty result) to parse the next body into
  // (parse_lines' `into`): the store's batches are recycled rather than freed point by point.
  parse_result spent_batch();
  // Watches durable batches (set before start; called on the committer's thread).
  void set_observer(write_observer observer);

  // ---- reads (a consistent view per call). Measurements and series are per database,
  // across its retention policies; points per policy.
  std::vector<std::string> measurements(const std::string& database) const;
  // Series of `measurement` (every measurement when empty), ordered by series key.
  std::vector<series_info> series(const std::string& database,
                                  const std::string& measurement) const;
  // Field names and types of a measurement, by name.
  std::map<std::string, field_type> fields(const std::string& database,
                                           const std::string& measurement) const;
  // Points of one field of one series with min_ns <= time <= max_ns, memory and partitions
  // merged; empty when there are none.
  field_column read(const std::string& database, const std::string& retention_policy,
                    std::uint64_t series_id, const std::string& field, std::int64_t min_ns,
                    std::int64_t max_ns) const;
  // The same points as read() but summarised: for each tier from `max_tier` (a rollup::tiers
  // value) down, the buckets wholly inside [min_ns, max_ns] that partition files summarise
  // cleanly (no point in them overwritten by another file or still in the write buffer), and
  // what is left as ranges to read(). A field without rollups (not float or integer) is one
  // raw range.
  rollup_column read_rollup(const std::string& database, const std::string& retention_policy,
                            std::uint64_t series_id, const std::string& field,
                            std::int64_t max_tier, std::int64_t min_ns, std::int64_t max_ns) const;
  // The newest point of a field of a series (from memory: kept per series, O(1)).
  std::optional<std::pair<std::int64_t, field_value>> last(const std::string& database,
                                                           const std::string& retention_policy,
                                                           std::uint64_t series_id,
                                                           const std::string& field) const;

  // ---- housekeeping, for tests and shutdown: flush the write buffer to partitions now (and
  // drop the WAL it covers); compact partitions; drop what retention has expired.
  void flush();
  void compact();
  void enforce_retention();

  struct statistics {
    std::size_t series = 0;
    std::size_t buffered_bytes = 0;   // the write buffer
    std::size_t buffered_points = 0;  // field values in it
    std::uint64_t points_written = 0;
    std::uint64_t points_dropped = 0;
    std::uint64_t writes_refused = 0;  // whole writes (cache full, not found, I/O)
    std::uint64_t flushes = 0;
    std::uint64_t wal_bytes = 0;
    std::uint64_t partition_bytes = 0;
    std::size_t partitions = 0;
  };
  statistics stats() const;
  // The statistics as Prometheus text (nimbus_tsdb_*), for /metrics.
  std::string prometheus_text() const;

 private:
  // write() and write_lines(): `keys` are the points' series keys; `raw` (or null) their body.
  void write_points(const std::string& database, const std::string& retention_policy,
                    std::vector<point> points, std::vector<std::string> keys,
                    const lines_source* raw, on_written done);

  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nimbus::tsdb
