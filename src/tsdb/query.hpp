#pragma once
// InfluxQL execution: a query text (';'-separated statements) in, results shaped as InfluxDB
// 1.6.7's /query answers them out. Parses with influxql.hpp, reads through store.hpp; formats
// nothing (format_json / format_csv below do, for influx_http). Statements run in order; one
// that fails reports its error in its own result and the next still runs, as InfluxDB does.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tsdb/line_protocol.hpp"
#include "tsdb/store.hpp"

namespace nimbus::tsdb {

// A time in a result's `time` column: printed as RFC3339 (nanoseconds, trailing zeros trimmed,
// "Z") without `epoch`, else as an integer in the epoch's unit.
struct time_cell {
  std::int64_t ns = 0;
  // The statement's tz() offset at this time, east of UTC: RFC3339 prints local time and
  // "+09:00" (0: "Z"), as Go formats a time in a location.
  std::int32_t offset_seconds = 0;
  friend bool operator==(const time_cell&, const time_cell&) = default;
};

// One cell: null (a missing field, fill(null)), a field value, or a time.
using cell =
    std::variant<std::monostate, double, std::int64_t, std::uint64_t, bool, std::string, time_cell>;

struct result_series {
  std::string name;
  std::vector<std::pair<std::string, std::string>> tags;  // GROUP BY tags; omitted when empty
  std::vector<std::string> columns;
  std::vector<std::vector<cell>> values;
};

struct statement_result {
  int statement_id = 0;
  std::vector<result_series> series;
  std::optional<std::string> error;  // this statement's error ("database not found: x"...)
};

struct query_result {
  // The whole query was refused (a parse error, "error parsing query: ... at line 1, char N"):
  // 400 with {"error":...}, no results.
  std::optional<std::string> error;
  std::vector<statement_result> results;
};

// Bounds that keep one query from taking the server down; past them a statement fails with
// InfluxDB's message ("max-select-point limit exceeded: (N/M)", "max-select-series limit
// exceeded: (N/M)", "max-select-buckets limit exceeded: (N/M)").
struct query_limits {
  std::size_t max_select_point = 50'000'000;
  std::size_t max_select_series = 100'000;
  std::size_t max_select_buckets = 100'000;
  std::size_t max_result_rows = 10'000'000;  // ours: rows across a statement's series
};

struct query_options {
  std::string database;          // `db`: the default for FROM without a database
  std::string retention_policy;  // `rp`: the default policy for FROM without one
  std::int64_t now_ns = 0;       // now(), fixed for the whole query
  query_limits limits;
  // Aggregates may read rollup buckets where they give the same answer (store::read_rollup);
  // off: every point is read (tests compare the two).
  bool use_rollups = true;
};

// Runs `text`. `done` runs once: inline for read-only queries, after durability for CREATE /
// DROP / ALTER (on the store's writer thread: post, don't work).
void execute_query(store& s, std::string_view text, const query_options& options,
                   std::function<void(query_result)> done);

// Go's time.RFC3339Nano ("2009-11-10T23:00:00Z", "…00.5Z"): trailing zeros trimmed; with an
// offset east of UTC, local time and "+09:00".
std::string format_rfc3339(std::int64_t ns, std::int32_t offset_seconds = 0);

// The epoch parameter: ns/n, u/us, ms, s, m, h (nullopt: RFC3339 strings).
std::optional<precision> parse_epoch(std::string_view text);

// InfluxDB's JSON: {"results":[{"statement_id":0,"series":[{"name":..,"tags":..,"columns":..,
// "values":..}]}]}, an empty statement as {"statement_id":0}, an error as
// {"statement_id":0,"error":".."}, a refused query as {"error":".."}. Floats as Go's
// strconv 'g'-shortest (1, 0.5, 1e+21); pretty indents with four spaces as 1.6.7.
std::string format_json(const query_result& result, std::optional<precision> epoch,
                        bool pretty = false);
// chunked=true: one JSON object per chunk of at most chunk_size rows (per series), each
// {"results":[...]} with "partial":true on all but the statement's last chunk, newline after
// each, as 1.6.7 streams them.
std::vector<std::string> format_json_chunks(const query_result& result,
                                            std::optional<precision> epoch, std::size_t chunk_size);
// Accept: application/csv: `name,tags,time,<columns>` then a row per value, tags as
// k=v,k=v; a blank line between statements' tables, as 1.6.7.
std::string format_csv(const query_result& result, std::optional<precision> epoch);

}  // namespace nimbus::tsdb
