#pragma once
// Running a compiled Flux program (flux.hpp) over the time-series store, and InfluxDB 2's
// annotated CSV (reference/flux.md §2-§4). A bucket is a database ("db") or a database and a
// retention policy ("db/rp"). from |> range |> filter... reads only the series and fields the
// filters can match (they are evaluated on each series' tags before a point is read); every
// other step works on whole tables in memory, bounded by execution_limits. Everything is
// computed before the first byte of the answer, so an error is always a clean HTTP error, never
// a half-written body. Runs on the caller's thread; reads take the store's shared lock per call.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tsdb/flux.hpp"
#include "tsdb/store.hpp"

namespace nimbus::tsdb::flux {

// A column's type, as #datatype names it: string, long, unsignedLong, double, boolean,
// dateTime:RFC3339.
enum class column_type : std::uint8_t {
  string,
  integer,
  unsigned_integer,
  floating,
  boolean,
  time
};
std::string_view datatype_of(column_type type);

// Group-key columns hold one value for the whole table; the others one value per row.
struct column {
  std::string label;
  column_type type = column_type::string;
  bool is_key = false;
  scalar key_value;            // is_key
  std::vector<scalar> values;  // !is_key: `rows` of them
};

struct table {
  std::vector<column> columns;
  std::size_t rows = 0;

  const scalar& at(std::size_t column_index, std::size_t row) const {
    const column& c = columns[column_index];
    return c.is_key ? c.key_value : c.values[row];
  }
  std::optional<std::size_t> find(std::string_view label) const;
};

struct result {
  std::string name;
  std::vector<table> tables;
};

// The request's dialect (flux.md §1): annotation rows in the order asked for.
enum class annotation : std::uint8_t { datatype, group, default_value };

struct csv_dialect {
  bool has_header = true;
  char delimiter = ',';
  std::vector<annotation> annotations;
};

// flux's csv.MultiResultEncoder: each result's tables in blocks (a new block, after a blank
// line, when the columns or the group key set change or a table is empty), CRLF line ends, an
// extra CRLF after each result. No results at all is "\r\n".
std::string encode_csv(const std::vector<result>& results, const csv_dialect& dialect);

struct execution_limits {
  // Points read from the store, across the query (InfluxQL's max-select-point); 0: no limit.
  std::size_t max_points = 0;
  // Rows any step makes beyond those read (windows, pivots, createEmpty); 0: no limit.
  std::size_t max_rows = 0;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

// The program's results in the order it yields them, or the first error (unknown bucket:
// not_found "failed to initialize execute state: could not find bucket \"b\"").
std::variant<std::vector<result>, error> execute(const store& s, const program& p,
                                                 const execution_limits& limits);

}  // namespace nimbus::tsdb::flux
