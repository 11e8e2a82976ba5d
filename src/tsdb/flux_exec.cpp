// Flux execution and the annotated CSV encoder (flux_exec.hpp), with InfluxDB 2's semantics as
// reference/flux.md §3 describes them. Where that leaves room:
//
// - Tables from storage follow measurement order, then series key, then field name; their
//   columns are _start, _stop, _time, _value, then _field, _measurement and the tags sorted
//   bytewise (a tag named like one of those columns is left out).
// - "Pushed down" column orders: an aggregate (mean, count, sum) right after
//   from |> range |> filter* gives _start, _stop, _value, <key>; aggregateWindow with mean,
//   count, sum, min, max, first or last there gives _start, _stop, _time, _value, <key>. Anywhere
//   else: <key>, _value (aggregates) and <key>, _value, _time (aggregateWindow), as Flux's own
//   transformations order them.
// - median() is exact: the middle value, or the mean of the middle two (InfluxDB 2's default is
//   a t-digest estimate, which agrees on small tables); exact_selector picks the lower middle
//   row. stddev() of fewer than two values is null; aggregates skip nulls, count() counts the
//   non-null values and is 0 on an empty window.
// - aggregateWindow's selectors keep the key, _time (the window's stop) and the value only.
// - window() and aggregateWindow() clip windows to the query's range (the first range());
//   calendar windows (mo, y) start on month boundaries since 1970-01.
// - map() may set _value or any column outside the group key; setting a key column is refused.
//   A new column's type is that of its first non-null value (string when all are null).
// - group() and merges keep the first table's column order and append new columns; a column with
//   two types is "schema collision detected: column \"x\" is both of type float and int".
// - Results come out in the order the program yields them (InfluxDB: unordered).
// - Limits: points read count against max_points ("max-select-point limit exceeded: (N/M)");
//   rows made by windows, pivots and createEmpty against max_rows; the deadline is checked while
//   reading and every few thousand rows.

#include "tsdb/flux_exec.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <unordered_map>
#include <utility>

namespace nimbus::tsdb::flux {
namespace {

using status = std::optional<error>;

const scalar null_cell{};

// 365.2425 days / 12: the first guess at which month a time falls in.
constexpr std::int64_t average_month_ns = 2'629'746'000'000'000;
constexpr std::size_t deadline_stride = 4096;

std::int64_t clamp_to_int64(__int128 v) {
  if (v > std::numeric_limits<std::int64_t>::max()) return std::numeric_limits<std::int64_t>::max();
  if (v < std::numeric_limits<std::int64_t>::min()) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(v);
}

__int128 floor_div(__int128 a, __int128 b) {
  const __int128 q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

column_type type_of(field_type type) {
  switch (type) {
    case field_type::floating:
      return column_type::floating;
    case field_type::integer:
      return column_type::integer;
    case field_type::unsigned_integer:
      return column_type::unsigned_integer;
    case field_type::boolean:
      return column_type::boolean;
    case field_type::string:
      return column_type::string;
  }
  return column_type::string;
}

std::optional<column_type> type_of(const scalar& s) {
  switch (s.index()) {
    case 1:
      return column_type::boolean;
    case 2:
      return column_type::integer;
    case 3:
      return column_type::unsigned_integer;
    case 4:
      return column_type::floating;
    case 5:
      return column_type::string;
    case 6:
      return column_type::time;
    default:
      return std::nullopt;
  }
}

// Flux's names for column types, as its errors print them.
std::string_view flux_name(column_type type) {
  switch (type) {
    case column_type::string:
      return "string";
    case column_type::integer:
      return "int";
    case column_type::unsigned_integer:
      return "uint";
    case column_type::floating:
      return "float";
    case column_type::boolean:
      return "bool";
    case column_type::time:
      return "time";
  }
  return "string";
}

scalar to_scalar(field_value&& v) {
  return std::visit([](auto&& x) { return scalar{std::move(x)}; }, std::move(v));
}

std::string in_quotes(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

error runtime_error(const operation& op, std::string_view what) {
  return error{error_code::invalid,
               "runtime error @" + to_string(op.where) + ": " + op.name + ": " + std::string(what)};
}

error collision(const std::string& label, column_type a, column_type b) {
  return error{error_code::invalid, "schema collision detected: column " + in_quotes(label) +
                                        " is both of type " + std::string(flux_name(a)) + " and " +
                                        std::string(flux_name(b))};
}

template <typename T>
int three_way(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Orders two cells of one column: nulls last, NaN after every number.
int compare_cells(const scalar& a, const scalar& b) {
  const bool a_null = std::holds_alternative<std::monostate>(a);
  const bool b_null = std::holds_alternative<std::monostate>(b);
  if (a_null || b_null) return a_null == b_null ? 0 : (a_null ? 1 : -1);
  if (a.index() != b.index()) return three_way(a.index(), b.index());
  switch (a.index()) {
    case 1:
      return three_way(std::get<bool>(a), std::get<bool>(b));
    case 2:
      return three_way(std::get<std::int64_t>(a), std::get<std::int64_t>(b));
    case 3:
      return three_way(std::get<std::uint64_t>(a), std::get<std::uint64_t>(b));
    case 4: {
      const double x = std::get<double>(a);
      const double y = std::get<double>(b);
      if (std::isnan(x) || std::isnan(y))
        return std::isnan(x) == std::isnan(y) ? 0 : (std::isnan(x) ? 1 : -1);
      return three_way(x, y);
    }
    case 5:
      return three_way(std::get<std::string>(a), std::get<std::string>(b));
    case 6:
      return three_way(std::get<timestamp>(a).ns, std::get<timestamp>(b).ns);
    default:
      return 0;
  }
}

double as_double(const scalar& s) {
  if (const auto* i = std::get_if<std::int64_t>(&s)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&s)) return static_cast<double>(*u);
  if (const auto* d = std::get_if<double>(&s)) return *d;
  return 0;
}

// A cell's bytes in a group signature: its kind, then its value, unambiguous.
void append_signature(std::string& out, const scalar& s) {
  out.push_back(static_cast<char>('0' + s.index()));
  char buffer[32];
  const auto number = [&](auto v) {
    const auto [end, failure] = std::to_chars(buffer, buffer + sizeof buffer, v);
    out.append(buffer, end);
  };
  switch (s.index()) {
    case 1:
      out.push_back(std::get<bool>(s) ? '1' : '0');
      break;
    case 2:
      number(std::get<std::int64_t>(s));
      break;
    case 3:
      number(std::get<std::uint64_t>(s));
      break;
    case 4: {
      std::uint64_t bits = 0;
      const double d = std::get<double>(s);
      std::memcpy(&bits, &d, sizeof bits);
      number(bits);
      break;
    }
    case 5: {
      const auto& text = std::get<std::string>(s);
      number(text.size());
      out.push_back(':');
      out += text;
      break;
    }
    case 6:
      number(std::get<timestamp>(s).ns);
      break;
    default:
      break;
  }
  out.push_back('\x1f');
}

void append_label(std::string& out, const std::string& label) {
  out += std::to_string(label.size());
  out.push_back(':');
  out += label;
}

column key_column(std::string label, column_type type, scalar v) {
  column c;
  c.label = std::move(label);
  c.type = type;
  c.is_key = true;
  c.key_value = std::move(v);
  return c;
}

// Keeps `rows` (ascending, unique) of `t`.
void keep_rows(table& t, const std::vector<std::size_t>& rows) {
  for (auto& c : t.columns) {
    if (c.is_key) continue;
    std::vector<scalar> kept;
    kept.reserve(rows.size());
    for (const std::size_t row : rows) kept.push_back(std::move(c.values[row]));
    c.values = std::move(kept);
  }
  t.rows = rows.size();
}

// A copy of `t` with `rows` (any order, repeats allowed).
table select_rows(const table& t, const std::vector<std::size_t>& rows) {
  table out;
  out.rows = rows.size();
  out.columns.reserve(t.columns.size());
  for (const auto& c : t.columns) {
    column copy;
    copy.label = c.label;
    copy.type = c.type;
    copy.is_key = c.is_key;
    copy.key_value = c.key_value;
    if (!c.is_key) {
      copy.values.reserve(rows.size());
      for (const std::size_t row : rows) copy.values.push_back(c.values[row]);
    }
    out.columns.push_back(std::move(copy));
  }
  return out;
}

// Makes `label` a key column holding `v` (added at the end when missing).
void set_key(table& t, const std::string& label, column_type type, scalar v) {
  if (const auto index = t.find(label)) {
    column& c = t.columns[*index];
    c.is_key = true;
    c.type = type;
    c.key_value = std::move(v);
    c.values.clear();
    return;
  }
  t.columns.push_back(key_column(label, type, std::move(v)));
}

// ---------------------------------------------------------------------------------------------
// What row functions see

// Planning a read: the columns known so far; the others unknown, or (is_closed) null unless
// listed as still unknown.
class known_view final : public row_view {
 public:
  std::vector<std::pair<std::string, scalar>> known;
  std::vector<std::string> unknown;
  bool is_closed = false;

  const scalar* column(const std::string& label) const override {
    for (const auto& [name, v] : known)
      if (name == label) return &v;
    if (!is_closed) return nullptr;
    for (const auto& name : unknown)
      if (name == label) return nullptr;
    return &null_cell;
  }
};

// One row of a table. Column lookups are cached per label (the expression's strings live as
// long as the program).
class table_row_view final : public row_view {
 public:
  explicit table_row_view(const table& t) : table_(t) {}
  void set_row(std::size_t row) { row_ = row; }

  const scalar* column(const std::string& label) const override {
    for (const auto& [name, index] : cache_) {
      if (name == &label)
        return index < 0 ? &null_cell : &table_.at(static_cast<std::size_t>(index), row_);
    }
    const auto found = table_.find(label);
    const std::ptrdiff_t index = found ? static_cast<std::ptrdiff_t>(*found) : -1;
    cache_.emplace_back(&label, index);
    return index < 0 ? &null_cell : &table_.at(static_cast<std::size_t>(index), row_);
  }

 private:
  const table& table_;
  std::size_t row_ = 0;
  mutable std::vector<std::pair<const std::string*, std::ptrdiff_t>> cache_;
};

// A table's group key only: other columns unknown, absent ones null.
class key_view final : public row_view {
 public:
  explicit key_view(const table& t) : table_(t) {}
  const scalar* column(const std::string& label) const override {
    const auto found = table_.find(label);
    if (!found) return &null_cell;
    const auto& c = table_.columns[*found];
    return c.is_key ? &c.key_value : nullptr;
  }

 private:
  const table& table_;
};

// keep/drop's fn: (column) => ...: the parameter is the column's label.
class label_view final : public row_view {
 public:
  explicit label_view(const std::string& label) : label_(scalar{label}) {}
  const scalar* column(const std::string&) const override { return &null_cell; }
  const scalar* parameter() const override { return &label_; }

 private:
  scalar label_;
};

enum class verdict : std::uint8_t { pass, fail, unknown };

// A predicate over a view: pass (true), fail (false or null), unknown, or the evaluation's error.
std::variant<verdict, error> judge(const row_expression& predicate, const row_view& view) {
  row_result r = evaluate(predicate, view);
  switch (r.outcome) {
    case row_result::state::failed:
      return error{error_code::invalid, std::move(r.error)};
    case row_result::state::unknown:
      return verdict::unknown;
    case row_result::state::known:
      break;
  }
  if (const auto* b = std::get_if<bool>(&r.value)) return *b ? verdict::pass : verdict::fail;
  if (std::holds_alternative<std::monostate>(r.value)) return verdict::fail;
  return compilation_error(predicate.where, "expected bool but found " +
                                                std::string(type_name(r.value)) +
                                                " (filter's fn must return a bool)");
}

// ---------------------------------------------------------------------------------------------
// Aggregates

std::optional<std::string> check_aggregate_type(aggregate_kind kind, column_type type) {
  const bool is_numeric = type == column_type::integer || type == column_type::unsigned_integer ||
                          type == column_type::floating;
  switch (kind) {
    case aggregate_kind::count:
    case aggregate_kind::first:
    case aggregate_kind::last:
      return std::nullopt;
    case aggregate_kind::min:
    case aggregate_kind::max:
      if (type != column_type::boolean) return std::nullopt;
      break;
    default:
      if (is_numeric) return std::nullopt;
      break;
  }
  return "unsupported input type for " + std::string(name_of(kind)) +
         " aggregate: " + std::string(flux_name(type));
}

column_type aggregate_type(aggregate_kind kind, column_type input) {
  switch (kind) {
    case aggregate_kind::mean:
    case aggregate_kind::median:
    case aggregate_kind::stddev:
      return column_type::floating;
    case aggregate_kind::count:
      return column_type::integer;
    default:
      return input;
  }
}

// mean, count, sum (aggregates) and the selectors InfluxDB pushes into storage reads.
bool pushes_down(aggregate_kind kind, bool is_window) {
  switch (kind) {
    case aggregate_kind::mean:
    case aggregate_kind::count:
    case aggregate_kind::sum:
      return true;
    case aggregate_kind::min:
    case aggregate_kind::max:
    case aggregate_kind::first:
    case aggregate_kind::last:
      return is_window;
    default:
      return false;
  }
}

// One aggregate over values added one at a time (nulls skipped).
class accumulator {
 public:
  accumulator(aggregate_kind kind, bool is_population)
      : kind_(kind), is_population_(is_population) {}

  void add(const scalar& v, std::size_t row) {
    if (std::holds_alternative<std::monostate>(v)) return;
    ++count_;
    switch (kind_) {
      case aggregate_kind::mean:
        sum_ += as_double(v);
        break;
      case aggregate_kind::sum:
        if (const auto* i = std::get_if<std::int64_t>(&v)) {
          bits_ += static_cast<std::uint64_t>(*i);  // wraps as Go's int64 addition does
        } else if (const auto* u = std::get_if<std::uint64_t>(&v)) {
          bits_ += *u;
        } else {
          sum_ += as_double(v);
        }
        break;
      case aggregate_kind::count:
        break;
      case aggregate_kind::median:
        values_.push_back(as_double(v));
        break;
      case aggregate_kind::stddev: {
        // Welford's online variance, as Flux computes it.
        const double x = as_double(v);
        const double delta = x - mean_;
        mean_ += delta / static_cast<double>(count_);
        m2_ += delta * (x - mean_);
        break;
      }
      case aggregate_kind::spread:
      case aggregate_kind::min:
      case aggregate_kind::max:
        if (count_ == 1 || compare_cells(v, min_) < 0) {
          min_ = v;
          min_row_ = row;
        }
        if (count_ == 1 || compare_cells(max_, v) < 0) {
          max_ = v;
          max_row_ = row;
        }
        break;
      case aggregate_kind::first:
        if (count_ == 1) selected_ = row;
        break;
      case aggregate_kind::last:
        selected_ = row;
        break;
      case aggregate_kind::median_selector:
        ranked_.emplace_back(as_double(v), row);
        break;
    }
  }

  // The selected row (selectors); nullopt when nothing was added.
  std::optional<std::size_t> selected() {
    if (count_ == 0) return std::nullopt;
    switch (kind_) {
      case aggregate_kind::min:
        return min_row_;
      case aggregate_kind::max:
        return max_row_;
      case aggregate_kind::median_selector: {
        std::stable_sort(ranked_.begin(), ranked_.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        return ranked_[(ranked_.size() - 1) / 2].second;
      }
      default:
        return selected_;
    }
  }

  // The aggregate (not selectors) for an input column of `type`.
  scalar result(column_type type) {
    switch (kind_) {
      case aggregate_kind::count:
        return scalar{static_cast<std::int64_t>(count_)};
      case aggregate_kind::mean:
        if (count_ == 0) return {};
        return scalar{sum_ / static_cast<double>(count_)};
      case aggregate_kind::sum:
        if (count_ == 0) return {};
        if (type == column_type::integer) return scalar{static_cast<std::int64_t>(bits_)};
        if (type == column_type::unsigned_integer) return scalar{bits_};
        return scalar{sum_};
      case aggregate_kind::median: {
        if (values_.empty()) return {};
        std::sort(values_.begin(), values_.end());
        const std::size_t middle = values_.size() / 2;
        if (values_.size() % 2 == 1) return scalar{values_[middle]};
        return scalar{(values_[middle - 1] + values_[middle]) / 2};
      }
      case aggregate_kind::stddev: {
        const std::size_t divisor = is_population_ ? count_ : count_ - 1;
        if (count_ == 0 || divisor == 0) return {};
        return scalar{std::sqrt(m2_ / static_cast<double>(divisor))};
      }
      case aggregate_kind::spread:
        if (count_ == 0) return {};
        if (type == column_type::integer)
          return scalar{
              static_cast<std::int64_t>(static_cast<std::uint64_t>(std::get<std::int64_t>(max_)) -
                                        static_cast<std::uint64_t>(std::get<std::int64_t>(min_)))};
        if (type == column_type::unsigned_integer)
          return scalar{std::get<std::uint64_t>(max_) - std::get<std::uint64_t>(min_)};
        return scalar{as_double(max_) - as_double(min_)};
      default:
        return {};
    }
  }

 private:
  aggregate_kind kind_;
  bool is_population_;
  std::size_t count_ = 0;
  double sum_ = 0;
  std::uint64_t bits_ = 0;
  double mean_ = 0;
  double m2_ = 0;
  std::vector<double> values_;
  std::vector<std::pair<double, std::size_t>> ranked_;
  scalar min_;
  scalar max_;
  std::size_t min_row_ = 0;
  std::size_t max_row_ = 0;
  std::size_t selected_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Windows

// Windows [base(k), end(k)) of a window_spec over the range [start, stop).
class window_grid {
 public:
  window_grid(const window_spec& spec, std::int64_t start, std::int64_t stop)
      : spec_(spec), start_(start), stop_(stop) {}

  std::int64_t base(std::int64_t k) const {
    if (spec_.is_infinite) return start_;
    if (is_calendar()) return calendar(k, 0);
    return clamp_to_int64(static_cast<__int128>(spec_.offset.nanoseconds) +
                          static_cast<__int128>(k) * spec_.every.nanoseconds);
  }

  std::int64_t end(std::int64_t k) const {
    if (spec_.is_infinite) return stop_;
    if (is_calendar()) return calendar(k, spec_.period.months);
    return clamp_to_int64(static_cast<__int128>(base(k)) + spec_.period.nanoseconds);
  }

  // The last window starting at or before t.
  std::int64_t containing(std::int64_t t) const {
    if (spec_.is_infinite) return 0;
    if (!is_calendar())
      return clamp_to_int64(
          floor_div(static_cast<__int128>(t) - spec_.offset.nanoseconds, spec_.every.nanoseconds));
    std::int64_t k =
        clamp_to_int64(floor_div(t, static_cast<__int128>(average_month_ns) * spec_.every.months));
    while (base(k) > t) --k;
    while (base(k + 1) <= t) ++k;
    return k;
  }

  // The first window ending after the range's start, the last starting before its stop.
  std::int64_t first() const {
    if (spec_.is_infinite) return 0;
    if (!is_calendar())
      return clamp_to_int64(floor_div(static_cast<__int128>(start_) - spec_.offset.nanoseconds -
                                          spec_.period.nanoseconds,
                                      spec_.every.nanoseconds) +
                            1);
    std::int64_t k = containing(start_);
    while (end(k - 1) > start_) --k;
    return k;
  }
  std::int64_t last() const {
    if (spec_.is_infinite) return 0;
    return containing(stop_ - 1);
  }

  // The windows a time falls in (more than one when period > every), latest first.
  template <typename OnWindow>
  void for_each_containing(std::int64_t t, std::int64_t first_window, OnWindow&& on_window) const {
    for (std::int64_t k = containing(t); k >= first_window && end(k) > t; --k) on_window(k);
  }

 private:
  bool is_calendar() const { return spec_.every.months != 0; }

  // The start of month k * every + extra (months since 1970-01), then the offset.
  std::int64_t calendar(std::int64_t k, std::int64_t extra_months) const {
    const __int128 months =
        static_cast<__int128>(k) * spec_.every.months + extra_months + spec_.offset.months;
    // Beyond ±1000 years nothing is representable: saturate.
    if (months > 12 * 1000) return std::numeric_limits<std::int64_t>::max();
    if (months < -12 * 1000) return std::numeric_limits<std::int64_t>::min();
    const auto at = add_duration(0, duration{static_cast<std::int64_t>(months), 0});
    if (!at)
      return months > 0 ? std::numeric_limits<std::int64_t>::max()
                        : std::numeric_limits<std::int64_t>::min();
    return clamp_to_int64(static_cast<__int128>(*at) + spec_.offset.nanoseconds);
  }

  window_spec spec_;
  std::int64_t start_;
  std::int64_t stop_;
};

// (window, row) pairs of a table, sorted by window.
using memberships = std::vector<std::pair<std::int64_t, std::size_t>>;

// ---------------------------------------------------------------------------------------------
// Regrouping

// Tables being assembled by group(), merges and pivot: every column holds per-row values until
// finish() turns the key columns into constants.
struct table_builder {
  table t;
  std::vector<std::string> key_labels;  // sorted
  std::vector<scalar> key_values;       // parallel to key_labels: for a table without rows
};

// Adds `source`'s columns missing from `b` (null for the rows already there) and maps each of
// b's columns to source's (-1: none).
status map_columns(table_builder& b, const table& source, std::vector<std::ptrdiff_t>& mapping) {
  for (std::size_t i = 0; i < source.columns.size(); ++i) {
    const column& c = source.columns[i];
    const auto found = b.t.find(c.label);
    if (!found) {
      column added;
      added.label = c.label;
      added.type = c.type;
      added.values.assign(b.t.rows, scalar{});
      b.t.columns.push_back(std::move(added));
    } else if (b.t.columns[*found].type != c.type) {
      return collision(c.label, b.t.columns[*found].type, c.type);
    }
  }
  mapping.assign(b.t.columns.size(), -1);
  for (std::size_t i = 0; i < source.columns.size(); ++i)
    mapping[*b.t.find(source.columns[i].label)] = static_cast<std::ptrdiff_t>(i);
  return std::nullopt;
}

void append_row(table_builder& b, const table& source, const std::vector<std::ptrdiff_t>& mapping,
                std::size_t row) {
  for (std::size_t c = 0; c < b.t.columns.size(); ++c) {
    const std::ptrdiff_t from = mapping[c];
    b.t.columns[c].values.push_back(from < 0 ? scalar{}
                                             : source.at(static_cast<std::size_t>(from), row));
  }
  ++b.t.rows;
}

table finish(table_builder&& b) {
  table out = std::move(b.t);
  for (auto& c : out.columns) {
    const auto at = std::lower_bound(b.key_labels.begin(), b.key_labels.end(), c.label);
    if (at == b.key_labels.end() || *at != c.label) continue;
    c.is_key = true;
    c.key_value = out.rows > 0 ? c.values[0]
                               : b.key_values[static_cast<std::size_t>(at - b.key_labels.begin())];
    c.values.clear();
    c.values.shrink_to_fit();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// CSV

bool needs_quotes(std::string_view field, char delimiter) {
  if (field.empty()) return false;
  if (field == "\\.") return true;
  for (const char c : field)
    if (c == delimiter || c == '"' || c == '\r' || c == '\n') return true;
  // Go's unicode.IsSpace of the first rune.
  const auto byte = [&](std::size_t at) -> unsigned {
    return at < field.size() ? static_cast<unsigned char>(field[at]) : 0U;
  };
  const unsigned first = byte(0);
  if (first == ' ' || (first >= '\t' && first <= '\r')) return true;
  if (first == 0xC2) return byte(1) == 0x85 || byte(1) == 0xA0;  // U+0085, U+00A0
  if (first == 0xE1) return byte(1) == 0x9A && byte(2) == 0x80;  // U+1680
  if (first == 0xE2) {
    if (byte(1) == 0x80)  // U+2000-U+200A, U+2028, U+2029, U+202F
      return byte(2) <= 0x8A || byte(2) == 0xA8 || byte(2) == 0xA9 || byte(2) == 0xAF;
    return byte(1) == 0x81 && byte(2) == 0x9F;  // U+205F
  }
  return first == 0xE3 && byte(1) == 0x80 && byte(2) == 0x80;  // U+3000
}

class csv_writer {
 public:
  csv_writer(std::string& out, char delimiter) : out_(out), delimiter_(delimiter) {}

  void field(std::string_view text) {
    if (!is_first_) out_.push_back(delimiter_);
    is_first_ = false;
    if (!needs_quotes(text, delimiter_)) {
      out_ += text;
      return;
    }
    out_.push_back('"');
    for (const char c : text) {
      if (c == '"') out_.push_back('"');
      out_.push_back(c);
    }
    out_.push_back('"');
  }

  void cell(const scalar& s) {
    scratch_.clear();
    char buffer[32];
    switch (s.index()) {
      case 1:
        scratch_ = std::get<bool>(s) ? "true" : "false";
        break;
      case 2: {
        const auto [end, failure] =
            std::to_chars(buffer, buffer + sizeof buffer, std::get<std::int64_t>(s));
        scratch_.assign(buffer, end);
        break;
      }
      case 3: {
        const auto [end, failure] =
            std::to_chars(buffer, buffer + sizeof buffer, std::get<std::uint64_t>(s));
        scratch_.assign(buffer, end);
        break;
      }
      case 4:
        append_float(scratch_, std::get<double>(s));
        break;
      case 5:
        field(std::get<std::string>(s));
        return;
      case 6:
        append_rfc3339(scratch_, std::get<timestamp>(s).ns);
        break;
      default:
        break;
    }
    field(scratch_);
  }

  void end_record() {
    out_ += "\r\n";
    is_first_ = true;
  }

 private:
  std::string& out_;
  char delimiter_;
  bool is_first_ = true;
  std::string scratch_;
};

bool same_schema(const table& a, const table& b) {
  if (a.columns.size() != b.columns.size()) return false;
  for (std::size_t i = 0; i < a.columns.size(); ++i) {
    const column& x = a.columns[i];
    const column& y = b.columns[i];
    if (x.label != y.label || x.type != y.type || x.is_key != y.is_key) return false;
  }
  return true;
}

void encode_result(std::string& out, const result& r, const csv_dialect& dialect) {
  csv_writer w(out, dialect.delimiter);
  const bool has_default = std::find(dialect.annotations.begin(), dialect.annotations.end(),
                                     annotation::default_value) != dialect.annotations.end();
  const table* previous = nullptr;
  for (std::size_t index = 0; index < r.tables.size(); ++index) {
    const table& t = r.tables[index];
    const std::string id = std::to_string(index);
    const bool is_new_block =
        previous == nullptr || t.rows == 0 || previous->rows == 0 || !same_schema(*previous, t);
    if (is_new_block) {
      if (previous != nullptr) out += "\r\n";
      for (const annotation a : dialect.annotations) {
        switch (a) {
          case annotation::datatype:
            w.field("#datatype");
            w.field("string");
            w.field("long");
            for (const auto& c : t.columns) w.field(datatype_of(c.type));
            break;
          case annotation::group:
            w.field("#group");
            w.field("false");
            w.field("false");
            for (const auto& c : t.columns) w.field(c.is_key ? "true" : "false");
            break;
          case annotation::default_value:
            w.field("#default");
            w.field(r.name);
            if (t.rows == 0) {
              w.field(id);
              for (const auto& c : t.columns) {
                if (c.is_key) {
                  w.cell(c.key_value);
                } else {
                  w.field("");
                }
              }
            } else {
              w.field("");
              for (std::size_t i = 0; i < t.columns.size(); ++i) w.field("");
            }
            break;
        }
        w.end_record();
      }
      if (dialect.has_header) {
        w.field("");
        w.field("result");
        w.field("table");
        for (const auto& c : t.columns) w.field(c.label);
        w.end_record();
      }
    }
    for (std::size_t row = 0; row < t.rows; ++row) {
      w.field("");
      w.field(has_default ? std::string_view() : std::string_view(r.name));
      w.field(id);
      for (std::size_t c = 0; c < t.columns.size(); ++c) w.cell(t.at(c, row));
      w.end_record();
    }
    previous = &t;
  }
}

// ---------------------------------------------------------------------------------------------
// The executor

class executor {
 public:
  executor(const store& s, const program& p, const execution_limits& limits)
      : store_(s), program_(p), limits_(limits) {}

  std::variant<std::vector<result>, error> run() {
    std::vector<result> results;
    for (const auto& plan : program_.results) {
      result r;
      r.name = plan.name;
      if (auto failure = run_pipeline(plan.source, r.tables)) return std::move(*failure);
      results.push_back(std::move(r));
    }
    return results;
  }

 private:
  status tick(std::size_t work = 1) {
    ticks_ += work;
    if (ticks_ < next_check_) return std::nullopt;
    next_check_ = ticks_ + deadline_stride;
    if (std::chrono::steady_clock::now() > limits_.deadline)
      return error{error_code::timed_out, "query timed out: it ran past its deadline"};
    return std::nullopt;
  }

  status count_points(std::size_t n) {
    points_ += n;
    if (limits_.max_points > 0 && points_ > limits_.max_points)
      return error{error_code::too_large, "max-select-point limit exceeded: (" +
                                              std::to_string(points_) + "/" +
                                              std::to_string(limits_.max_points) + ")"};
    return tick(n);
  }

  status add_rows(std::size_t n) {
    rows_ = n > std::numeric_limits<std::size_t>::max() - rows_
                ? std::numeric_limits<std::size_t>::max()
                : rows_ + n;
    if (limits_.max_rows > 0 && rows_ > limits_.max_rows)
      return error{error_code::too_large, "max-result-rows limit exceeded: (" +
                                              std::to_string(rows_) + "/" +
                                              std::to_string(limits_.max_rows) + ")"};
    return tick(n);
  }

  status run_pipeline(const pipeline& p, std::vector<table>& tables) {
    const auto slash = p.bucket.find('/');
    const std::string database = p.bucket.substr(0, slash);
    const std::string policy =
        slash == std::string::npos ? std::string() : p.bucket.substr(slash + 1);
    if (database.empty() || !store_.policy(database, policy))
      return error{
          error_code::not_found,
          "failed to initialize execute state: could not find bucket " + in_quotes(p.bucket)};
    std::int64_t start = std::numeric_limits<std::int64_t>::min();
    std::int64_t stop = std::numeric_limits<std::int64_t>::max();
    std::vector<const filter_operation*> filters;
    std::size_t next = 0;
    for (; next < p.operations.size(); ++next) {
      const auto& detail = p.operations[next].detail;
      if (const auto* range = std::get_if<range_operation>(&detail)) {
        start = std::max(start, range->start_ns);
        stop = std::min(stop, range->stop_ns);
      } else if (const auto* filter = std::get_if<filter_operation>(&detail)) {
        filters.push_back(filter);
      } else {
        break;
      }
    }
    start_ = start;
    stop_ = stop;
    if (auto failure = read(database, policy, filters, tables)) return failure;
    for (std::size_t i = next; i < p.operations.size(); ++i) {
      if (auto failure = apply(p.operations[i], tables, i == next)) return failure;
    }
    return std::nullopt;
  }

  // ---- reading

  // Whether tables can be skipped with what `view` knows: a filter that fails them empties them,
  // and they survive only if every filter from there on keeps empty tables.
  status decide(const std::vector<const filter_operation*>& filters, const row_view& view,
                std::vector<verdict>& verdicts, bool& is_skipped) {
    verdicts.assign(filters.size(), verdict::unknown);
    is_skipped = false;
    for (std::size_t i = 0; i < filters.size(); ++i) {
      auto judged = judge(filters[i]->predicate, view);
      if (auto* failure = std::get_if<error>(&judged)) return std::move(*failure);
      verdicts[i] = std::get<verdict>(judged);
    }
    for (std::size_t i = 0; i < filters.size(); ++i) {
      if (verdicts[i] != verdict::fail) continue;
      for (std::size_t j = i; j < filters.size(); ++j)
        if (!filters[j]->keeps_empty) is_skipped = true;
    }
    return std::nullopt;
  }

  // Runs filters in turn over a table's rows; `is_kept` false when a filter emptied it and
  // dropped it.
  status run_filters(table& t, const std::vector<const filter_operation*>& filters,
                     const std::vector<verdict>& verdicts, bool& is_kept) {
    std::vector<std::size_t> rows(t.rows);
    std::iota(rows.begin(), rows.end(), std::size_t{0});
    bool is_dropped = false;
    table_row_view view(t);
    for (std::size_t i = 0; i < filters.size(); ++i) {
      if (rows.empty()) {
        is_dropped = !filters[i]->keeps_empty;
        continue;
      }
      if (verdicts[i] == verdict::fail) {
        rows.clear();
      } else if (verdicts[i] == verdict::unknown) {
        std::vector<std::size_t> passed;
        for (const std::size_t row : rows) {
          view.set_row(row);
          auto judged = judge(filters[i]->predicate, view);
          if (auto* failure = std::get_if<error>(&judged)) return std::move(*failure);
          if (std::get<verdict>(judged) == verdict::pass) passed.push_back(row);
        }
        if (auto failure = tick(rows.size())) return failure;
        rows = std::move(passed);
      }
      if (rows.empty()) is_dropped = !filters[i]->keeps_empty;
    }
    if (rows.size() != t.rows) keep_rows(t, rows);
    is_kept = !rows.empty() || !is_dropped;
    return std::nullopt;
  }

  table source_table(const std::string& measurement, const series_info& series,
                     const std::string& field, field_column&& data) const {
    table t;
    t.rows = data.times.size();
    t.columns.push_back(key_column("_start", column_type::time, scalar{timestamp{start_}}));
    t.columns.push_back(key_column("_stop", column_type::time, scalar{timestamp{stop_}}));
    column times;
    times.label = "_time";
    times.type = column_type::time;
    times.values.reserve(t.rows);
    for (const std::int64_t ns : data.times) times.values.emplace_back(timestamp{ns});
    t.columns.push_back(std::move(times));
    column values;
    values.label = "_value";
    values.type = type_of(data.type);
    values.values.reserve(t.rows);
    for (auto& v : data.values) values.values.push_back(to_scalar(std::move(v)));
    t.columns.push_back(std::move(values));
    std::vector<std::pair<std::string, std::string>> labels{{"_field", field},
                                                            {"_measurement", measurement}};
    for (const auto& [key, tag] : series.tags) {
      if (key == "_field" || key == "_measurement" || key == "_start" || key == "_stop" ||
          key == "_time" || key == "_value")
        continue;
      labels.emplace_back(key, tag);
    }
    std::sort(labels.begin(), labels.end());
    for (auto& [label, text] : labels)
      t.columns.push_back(
          key_column(std::move(label), column_type::string, scalar{std::move(text)}));
    return t;
  }

  status read(const std::string& database, const std::string& policy,
              const std::vector<const filter_operation*>& filters, std::vector<table>& tables) {
    if (start_ >= stop_) return std::nullopt;
    const scalar start{timestamp{start_}};
    const scalar stop{timestamp{stop_}};
    known_view view;
    std::vector<verdict> verdicts;
    bool is_skipped = false;
    for (const auto& measurement : store_.measurements(database)) {
      view.known = {{"_measurement", scalar{measurement}}, {"_start", start}, {"_stop", stop}};
      view.unknown.clear();
      view.is_closed = false;
      if (auto failure = decide(filters, view, verdicts, is_skipped)) return failure;
      if (is_skipped) continue;
      const auto fields = store_.fields(database, measurement);
      for (const auto& series : store_.series(database, measurement)) {
        if (auto failure = tick()) return failure;
        view.known.resize(3);
        for (const auto& [key, tag] : series.tags) view.known.emplace_back(key, scalar{tag});
        view.unknown = {"_field", "_time", "_value"};
        view.is_closed = true;
        if (auto failure = decide(filters, view, verdicts, is_skipped)) return failure;
        if (is_skipped) continue;
        const std::size_t known_count = view.known.size();
        for (const auto& [field, type] : fields) {
          view.known.resize(known_count);
          view.known.emplace_back("_field", scalar{field});
          view.unknown = {"_time", "_value"};
          if (auto failure = decide(filters, view, verdicts, is_skipped)) return failure;
          if (is_skipped) continue;
          field_column data = store_.read(database, policy, series.id, field, start_, stop_ - 1);
          if (data.times.empty()) continue;
          if (auto failure = count_points(data.times.size())) return failure;
          table t = source_table(measurement, series, field, std::move(data));
          bool is_kept = true;
          if (auto failure = run_filters(t, filters, verdicts, is_kept)) return failure;
          if (is_kept) tables.push_back(std::move(t));
        }
      }
    }
    return std::nullopt;
  }

  // ---- transformations

  status apply(const operation& op, std::vector<table>& tables, bool is_after_read) {
    const auto& d = op.detail;
    if (const auto* x = std::get_if<range_operation>(&d)) return apply_range(op, *x, tables);
    if (const auto* x = std::get_if<filter_operation>(&d)) return apply_filter(*x, tables);
    if (const auto* x = std::get_if<aggregate_operation>(&d))
      return apply_aggregate(op, *x, tables, is_after_read);
    if (const auto* x = std::get_if<aggregate_window_operation>(&d))
      return apply_aggregate_window(op, *x, tables, is_after_read);
    if (const auto* x = std::get_if<window_operation>(&d)) return apply_window(op, *x, tables);
    if (const auto* x = std::get_if<group_operation>(&d)) return apply_group(*x, tables);
    if (const auto* x = std::get_if<columns_operation>(&d)) return apply_columns(*x, tables);
    if (const auto* x = std::get_if<sort_operation>(&d)) return apply_sort(*x, tables);
    if (const auto* x = std::get_if<limit_operation>(&d)) return apply_limit(*x, tables);
    if (const auto* x = std::get_if<pivot_operation>(&d)) return apply_pivot(op, *x, tables);
    if (const auto* x = std::get_if<map_operation>(&d)) return apply_map(op, *x, tables);
    return runtime_error(op, "unsupported operation");
  }

  // A later range(): rows outside it go, _start and _stop narrow.
  status apply_range(const operation& op, const range_operation& r, std::vector<table>& tables) {
    std::vector<table> out;
    for (auto& t : tables) {
      const auto time = t.find("_time");
      if (!time || t.columns[*time].is_key || t.columns[*time].type != column_type::time)
        return runtime_error(op, "missing time column \"_time\"");
      std::vector<std::size_t> rows;
      for (std::size_t row = 0; row < t.rows; ++row) {
        const auto* ts = std::get_if<timestamp>(&t.columns[*time].values[row]);
        if (ts != nullptr && ts->ns >= r.start_ns && ts->ns < r.stop_ns) rows.push_back(row);
      }
      if (auto failure = tick(t.rows)) return failure;
      if (rows.empty()) continue;
      keep_rows(t, rows);
      for (const std::string_view label : {std::string_view("_start"), std::string_view("_stop")}) {
        const auto index = t.find(label);
        if (!index || !t.columns[*index].is_key) continue;
        auto* bound = std::get_if<timestamp>(&t.columns[*index].key_value);
        if (bound == nullptr) continue;
        bound->ns =
            label == "_start" ? std::max(bound->ns, r.start_ns) : std::min(bound->ns, r.stop_ns);
      }
      out.push_back(std::move(t));
    }
    tables = std::move(out);
    return std::nullopt;
  }

  status apply_filter(const filter_operation& f, std::vector<table>& tables) {
    std::vector<table> out;
    for (auto& t : tables) {
      auto judged = judge(f.predicate, key_view(t));
      if (auto* failure = std::get_if<error>(&judged)) return std::move(*failure);
      const verdict v = std::get<verdict>(judged);
      if (v == verdict::fail) {
        if (!f.keeps_empty) continue;
        keep_rows(t, {});
      } else if (v == verdict::unknown) {
        std::vector<std::size_t> rows;
        table_row_view view(t);
        for (std::size_t row = 0; row < t.rows; ++row) {
          view.set_row(row);
          auto row_judged = judge(f.predicate, view);
          if (auto* failure = std::get_if<error>(&row_judged)) return std::move(*failure);
          if (std::get<verdict>(row_judged) == verdict::pass) rows.push_back(row);
        }
        if (auto failure = tick(t.rows)) return failure;
        if (rows.empty() && !f.keeps_empty) continue;
        if (rows.size() != t.rows) keep_rows(t, rows);
      }
      out.push_back(std::move(t));
    }
    tables = std::move(out);
    return std::nullopt;
  }

  // The value column an aggregate reads, checked.
  std::variant<std::size_t, error> value_column(const operation& op, const table& t,
                                                const std::string& label, aggregate_kind kind) {
    const auto index = t.find(label);
    if (!index) return runtime_error(op, "column " + in_quotes(label) + " does not exist");
    const column& c = t.columns[*index];
    if (c.is_key)
      return runtime_error(op, "column " + in_quotes(label) + " is part of the group key");
    if (auto why = check_aggregate_type(kind, c.type)) return runtime_error(op, *why);
    return *index;
  }

  static table aggregate_table(const table& t, const std::string& label, column_type type, scalar v,
                               bool is_pushed_down) {
    table out;
    out.rows = 1;
    column value;
    value.label = label;
    value.type = type;
    value.values.push_back(std::move(v));
    const auto is_bound = [](const column& c) { return c.label == "_start" || c.label == "_stop"; };
    if (is_pushed_down) {
      for (const auto& c : t.columns)
        if (c.is_key && is_bound(c)) out.columns.push_back(c);
      out.columns.push_back(std::move(value));
      for (const auto& c : t.columns)
        if (c.is_key && !is_bound(c)) out.columns.push_back(c);
    } else {
      for (const auto& c : t.columns)
        if (c.is_key) out.columns.push_back(c);
      out.columns.push_back(std::move(value));
    }
    return out;
  }

  status apply_aggregate(const operation& op, const aggregate_operation& a,
                         std::vector<table>& tables, bool is_after_read) {
    std::vector<table> out;
    for (auto& t : tables) {
      auto found = value_column(op, t, a.column, a.kind);
      if (auto* failure = std::get_if<error>(&found)) return std::move(*failure);
      const std::size_t index = std::get<std::size_t>(found);
      const column& c = t.columns[index];
      accumulator acc(a.kind, a.is_population);
      for (std::size_t row = 0; row < t.rows; ++row) acc.add(c.values[row], row);
      if (auto failure = tick(t.rows)) return failure;
      if (is_selector(a.kind)) {
        const auto chosen = acc.selected();
        if (!chosen) continue;
        keep_rows(t, {*chosen});
        out.push_back(std::move(t));
        continue;
      }
      out.push_back(aggregate_table(t, a.column, aggregate_type(a.kind, c.type), acc.result(c.type),
                                    is_after_read && pushes_down(a.kind, false)));
    }
    tables = std::move(out);
    return std::nullopt;
  }

  // The (window, row) pairs of a table's rows within the range, sorted by window.
  status window_rows(const window_grid& grid, std::int64_t first, const column& times,
                     memberships& out) {
    out.clear();
    for (std::size_t row = 0; row < times.values.size(); ++row) {
      const auto* ts = std::get_if<timestamp>(&times.values[row]);
      if (ts == nullptr || ts->ns < start_ || ts->ns >= stop_) continue;
      std::size_t before = out.size();
      grid.for_each_containing(ts->ns, first, [&](std::int64_t k) { out.emplace_back(k, row); });
      // Overlapping windows (period > every) multiply rows: count them.
      if (out.size() - before > 1) {
        if (auto failure = add_rows(out.size() - before - 1)) return failure;
      }
    }
    if (auto failure = tick(times.values.size())) return failure;
    if (!std::is_sorted(out.begin(), out.end()))
      std::stable_sort(out.begin(), out.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    return std::nullopt;
  }

  static std::size_t window_count(std::int64_t first, std::int64_t last) {
    if (last < first) return 0;
    const __int128 count = static_cast<__int128>(last) - first + 1;
    if (count > static_cast<__int128>(std::numeric_limits<std::size_t>::max()))
      return std::numeric_limits<std::size_t>::max();
    return static_cast<std::size_t>(count);
  }

  status apply_aggregate_window(const operation& op, const aggregate_window_operation& a,
                                std::vector<table>& tables, bool is_after_read) {
    if (start_ >= stop_) {
      tables.clear();
      return std::nullopt;
    }
    const bool is_pushed_down = is_after_read && pushes_down(a.fn.kind, true);
    const window_grid grid(a.windows, start_, stop_);
    const std::int64_t first = grid.first();
    const std::int64_t last = grid.last();
    std::vector<table> out;
    memberships members;
    for (auto& t : tables) {
      auto found = value_column(op, t, a.fn.column, a.fn.kind);
      if (auto* failure = std::get_if<error>(&found)) return std::move(*failure);
      const column& values = t.columns[std::get<std::size_t>(found)];
      const auto time_index = t.find("_time");
      if (!time_index || t.columns[*time_index].is_key ||
          t.columns[*time_index].type != column_type::time)
        return runtime_error(op, "missing time column \"_time\"");
      if (auto failure = window_rows(grid, first, t.columns[*time_index], members)) return failure;

      column time_out;
      time_out.label = a.time_destination;
      time_out.type = column_type::time;
      column value_out;
      value_out.label = a.fn.column;
      value_out.type = aggregate_type(a.fn.kind, values.type);
      const auto emit = [&](std::int64_t k, std::size_t from, std::size_t to) {
        const std::int64_t window_start = std::max(grid.base(k), start_);
        const std::int64_t window_stop = std::min(grid.end(k), stop_);
        if (window_start >= window_stop) return;
        accumulator acc(a.fn.kind, a.fn.is_population);
        for (std::size_t m = from; m < to; ++m)
          acc.add(values.values[members[m].second], members[m].second);
        scalar v;
        if (is_selector(a.fn.kind)) {
          const auto chosen = acc.selected();
          if (!chosen) return;
          v = values.values[*chosen];
        } else {
          v = acc.result(values.type);
        }
        time_out.values.emplace_back(
            timestamp{a.time_source == "_start" ? window_start : window_stop});
        value_out.values.push_back(std::move(v));
      };
      if (a.creates_empty) {
        if (auto failure = add_rows(window_count(first, last))) return failure;
        std::size_t m = 0;
        for (std::int64_t k = first; k <= last; ++k) {
          const std::size_t from = m;
          while (m < members.size() && members[m].first == k) ++m;
          emit(k, from, m);
          if (auto failure = tick()) return failure;
          if (k == std::numeric_limits<std::int64_t>::max()) break;
        }
      } else {
        for (std::size_t m = 0; m < members.size();) {
          const std::size_t from = m;
          const std::int64_t k = members[m].first;
          while (m < members.size() && members[m].first == k) ++m;
          if (auto failure = add_rows(1)) return failure;
          emit(k, from, m);
        }
      }
      if (value_out.values.empty()) continue;

      table windowed;
      windowed.rows = value_out.values.size();
      std::vector<column> keys;
      for (const auto& c : t.columns) {
        if (!c.is_key) continue;
        column key = c;
        if (c.label == "_start" && c.type == column_type::time) key.key_value = timestamp{start_};
        if (c.label == "_stop" && c.type == column_type::time) key.key_value = timestamp{stop_};
        keys.push_back(std::move(key));
      }
      const auto is_bound = [](const column& c) {
        return c.label == "_start" || c.label == "_stop";
      };
      if (is_pushed_down) {
        for (const auto& c : keys)
          if (is_bound(c)) windowed.columns.push_back(c);
        windowed.columns.push_back(std::move(time_out));
        windowed.columns.push_back(std::move(value_out));
        for (auto& c : keys)
          if (!is_bound(c)) windowed.columns.push_back(std::move(c));
      } else {
        for (auto& c : keys) windowed.columns.push_back(std::move(c));
        windowed.columns.push_back(std::move(value_out));
        windowed.columns.push_back(std::move(time_out));
      }
      out.push_back(std::move(windowed));
    }
    tables = std::move(out);
    return std::nullopt;
  }

  status apply_window(const operation& op, const window_operation& w, std::vector<table>& tables) {
    if (start_ >= stop_) {
      tables.clear();
      return std::nullopt;
    }
    const window_grid grid(w.windows, start_, stop_);
    const std::int64_t first = grid.first();
    const std::int64_t last = grid.last();
    std::vector<table> out;
    memberships members;
    for (const auto& t : tables) {
      const auto time_index = t.find(w.time_column);
      if (!time_index || t.columns[*time_index].is_key ||
          t.columns[*time_index].type != column_type::time)
        return runtime_error(op, "missing time column " + in_quotes(w.time_column));
      if (auto failure = window_rows(grid, first, t.columns[*time_index], members)) return failure;
      std::vector<std::size_t> rows;
      const auto emit = [&](std::int64_t k) {
        const std::int64_t window_start = std::max(grid.base(k), start_);
        const std::int64_t window_stop = std::min(grid.end(k), stop_);
        if (window_start >= window_stop) return;
        table windowed = select_rows(t, rows);
        set_key(windowed, w.start_column, column_type::time, timestamp{window_start});
        set_key(windowed, w.stop_column, column_type::time, timestamp{window_stop});
        out.push_back(std::move(windowed));
      };
      if (w.creates_empty) {
        if (auto failure = add_rows(window_count(first, last))) return failure;
        std::size_t m = 0;
        for (std::int64_t k = first; k <= last; ++k) {
          rows.clear();
          while (m < members.size() && members[m].first == k) rows.push_back(members[m++].second);
          emit(k);
          if (auto failure = tick()) return failure;
          if (k == std::numeric_limits<std::int64_t>::max()) break;
        }
      } else {
        for (std::size_t m = 0; m < members.size();) {
          const std::int64_t k = members[m].first;
          rows.clear();
          while (m < members.size() && members[m].first == k) rows.push_back(members[m++].second);
          if (auto failure = add_rows(1)) return failure;
          emit(k);
        }
      }
    }
    tables = std::move(out);
    return std::nullopt;
  }

  // Moves rows into tables keyed by key_of(table) (labels a table lacks are left out of its
  // key); tables and rows with equal keys merge, in the order first seen.
  template <typename KeyOf>
  status regroup(std::vector<table>& tables, KeyOf&& key_of) {
    std::vector<table_builder> builders;
    std::unordered_map<std::string, std::size_t> by_signature;
    std::unordered_map<std::size_t, std::vector<std::ptrdiff_t>> mappings;
    std::string signature;
    for (const auto& t : tables) {
      std::vector<std::string> labels;
      for (const auto& label : key_of(t))
        if (t.find(label) && std::find(labels.begin(), labels.end(), label) == labels.end())
          labels.push_back(label);
      std::sort(labels.begin(), labels.end());
      std::vector<std::size_t> indexes;
      bool is_constant = true;
      for (const auto& label : labels) {
        indexes.push_back(*t.find(label));
        if (!t.columns[indexes.back()].is_key) is_constant = false;
      }
      mappings.clear();
      const auto builder_for = [&](std::size_t row) -> std::variant<std::size_t, error> {
        signature.clear();
        for (std::size_t i = 0; i < labels.size(); ++i) {
          append_label(signature, labels[i]);
          append_signature(signature, t.at(indexes[i], row));
        }
        auto [it, is_new] = by_signature.emplace(signature, builders.size());
        if (is_new) {
          table_builder b;
          b.key_labels = labels;
          for (const std::size_t index : indexes) b.key_values.push_back(t.at(index, row));
          builders.push_back(std::move(b));
        }
        const std::size_t which = it->second;
        if (!mappings.count(which)) {
          if (auto failure = map_columns(builders[which], t, mappings[which]))
            return std::move(*failure);
        }
        return which;
      };
      if (is_constant) {
        // Row 0 of key columns is their constant: valid even for a table without rows.
        auto chosen = builder_for(0);
        if (auto* failure = std::get_if<error>(&chosen)) return std::move(*failure);
        const std::size_t which = std::get<std::size_t>(chosen);
        for (std::size_t row = 0; row < t.rows; ++row)
          append_row(builders[which], t, mappings[which], row);
      } else {
        for (std::size_t row = 0; row < t.rows; ++row) {
          auto chosen = builder_for(row);
          if (auto* failure = std::get_if<error>(&chosen)) return std::move(*failure);
          const std::size_t which = std::get<std::size_t>(chosen);
          append_row(builders[which], t, mappings[which], row);
        }
      }
      if (auto failure = tick(t.rows)) return failure;
    }
    std::vector<table> out;
    out.reserve(builders.size());
    for (auto& b : builders) out.push_back(finish(std::move(b)));
    tables = std::move(out);
    return std::nullopt;
  }

  status apply_group(const group_operation& g, std::vector<table>& tables) {
    return regroup(tables, [&g](const table& t) {
      std::vector<std::string> labels;
      if (!g.is_except) return g.columns;
      for (const auto& c : t.columns)
        if (std::find(g.columns.begin(), g.columns.end(), c.label) == g.columns.end())
          labels.push_back(c.label);
      return labels;
    });
  }

  status apply_columns(const columns_operation& k, std::vector<table>& tables) {
    bool is_key_changed = false;
    for (auto& t : tables) {
      std::vector<column> kept;
      for (auto& c : t.columns) {
        bool is_listed = false;
        if (k.predicate) {
          auto judged = judge(*k.predicate, label_view(c.label));
          if (auto* failure = std::get_if<error>(&judged)) return std::move(*failure);
          is_listed = std::get<verdict>(judged) == verdict::pass;
        } else {
          is_listed = std::find(k.columns.begin(), k.columns.end(), c.label) != k.columns.end();
        }
        if (is_listed == k.is_keep) {
          kept.push_back(std::move(c));
        } else if (c.is_key) {
          is_key_changed = true;
        }
      }
      t.columns = std::move(kept);
    }
    if (!is_key_changed) return std::nullopt;
    // Tables whose keys now match merge, as Flux regroups them.
    return regroup(tables, [](const table& t) {
      std::vector<std::string> labels;
      for (const auto& c : t.columns)
        if (c.is_key) labels.push_back(c.label);
      return labels;
    });
  }

  status apply_sort(const sort_operation& s, std::vector<table>& tables) {
    for (auto& t : tables) {
      std::vector<std::size_t> keys;
      for (const auto& label : s.columns) {
        const auto index = t.find(label);
        if (index && !t.columns[*index].is_key) keys.push_back(*index);
      }
      if (keys.empty() || t.rows < 2) continue;
      std::vector<std::size_t> order(t.rows);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        for (const std::size_t index : keys) {
          int c = compare_cells(t.columns[index].values[a], t.columns[index].values[b]);
          if (s.is_descending) c = -c;
          if (c != 0) return c < 0;
        }
        return false;
      });
      for (auto& c : t.columns) {
        if (c.is_key) continue;
        std::vector<scalar> sorted;
        sorted.reserve(t.rows);
        for (const std::size_t row : order) sorted.push_back(std::move(c.values[row]));
        c.values = std::move(sorted);
      }
      if (auto failure = tick(t.rows)) return failure;
    }
    return std::nullopt;
  }

  static status apply_limit(const limit_operation& l, std::vector<table>& tables) {
    for (auto& t : tables) {
      const auto n = static_cast<std::size_t>(l.n);
      const std::size_t offset = std::min(static_cast<std::size_t>(l.offset), t.rows);
      std::size_t begin = offset;
      std::size_t end = offset + std::min(n, t.rows - offset);
      if (l.is_tail) {
        end = t.rows - offset;
        begin = end - std::min(n, end);
      }
      if (begin == 0 && end == t.rows) continue;
      std::vector<std::size_t> rows(end - begin);
      std::iota(rows.begin(), rows.end(), begin);
      keep_rows(t, rows);
    }
    return std::nullopt;
  }

  status apply_pivot(const operation& op, const pivot_operation& p, std::vector<table>& tables) {
    struct pivot_cells {
      column_type type = column_type::string;
      std::vector<scalar> cells;  // by row index
    };
    struct pivot_group {
      std::vector<column> base;  // key columns (constant) and row-key columns (values ignored)
      std::map<std::vector<scalar>, std::size_t> rows;
      std::map<std::string, pivot_cells> values;
    };
    std::vector<pivot_group> groups;
    std::unordered_map<std::string, std::size_t> by_signature;
    std::string signature;
    const auto is_listed = [](const std::vector<std::string>& list, const std::string& label) {
      return std::find(list.begin(), list.end(), label) != list.end();
    };
    for (const auto& t : tables) {
      std::vector<std::size_t> row_key;
      std::vector<std::size_t> column_key;
      for (const auto& label : p.row_key) {
        const auto index = t.find(label);
        if (!index) return runtime_error(op, "specified column does not exist in table: " + label);
        row_key.push_back(*index);
      }
      for (const auto& label : p.column_key) {
        const auto index = t.find(label);
        if (!index) return runtime_error(op, "specified column does not exist in table: " + label);
        column_key.push_back(*index);
      }
      const auto value_index = t.find(p.value_column);
      if (!value_index)
        return runtime_error(op, "specified column does not exist in table: " + p.value_column);
      const column_type value_type = t.columns[*value_index].type;
      // The new key: the old one less the column key, row key and value columns.
      signature.clear();
      for (const auto& c : t.columns) {
        if (!c.is_key || is_listed(p.column_key, c.label) || is_listed(p.row_key, c.label) ||
            c.label == p.value_column)
          continue;
        append_label(signature, c.label);
        append_signature(signature, c.key_value);
      }
      auto [it, is_new] = by_signature.emplace(signature, groups.size());
      if (is_new) {
        pivot_group g;
        for (const auto& c : t.columns) {
          const bool is_row_key = is_listed(p.row_key, c.label);
          const bool is_new_key = c.is_key && !is_listed(p.column_key, c.label) && !is_row_key &&
                                  c.label != p.value_column;
          if (!is_new_key && !is_row_key) continue;
          column base;
          base.label = c.label;
          base.type = c.type;
          base.is_key = is_new_key;
          base.key_value = is_new_key ? c.key_value : scalar{};
          g.base.push_back(std::move(base));
        }
        groups.push_back(std::move(g));
      }
      pivot_group& g = groups[it->second];
      std::vector<scalar> key;
      std::string name;
      for (std::size_t row = 0; row < t.rows; ++row) {
        key.clear();
        for (const std::size_t index : row_key) key.push_back(t.at(index, row));
        name.clear();
        for (std::size_t i = 0; i < column_key.size(); ++i) {
          if (i > 0) name.push_back('_');
          auto text = convert(conversion::to_string, t.at(column_key[i], row));
          if (const auto* s = std::get_if<scalar>(&text)) {
            if (const auto* str = std::get_if<std::string>(s)) name += *str;
          }
        }
        auto [row_it, is_new_row] = g.rows.emplace(key, g.rows.size());
        if (is_new_row) {
          if (auto failure = add_rows(1)) return failure;
        }
        auto [column_it, is_new_column] = g.values.try_emplace(name);
        pivot_cells& target = column_it->second;
        if (is_new_column) {
          target.type = value_type;
        } else if (target.type != value_type) {
          return collision(name, target.type, value_type);
        }
        if (target.cells.size() <= row_it->second) target.cells.resize(row_it->second + 1);
        target.cells[row_it->second] = t.at(*value_index, row);
      }
      if (auto failure = tick(t.rows)) return failure;
    }
    std::vector<table> out;
    for (auto& g : groups) {
      table pivoted;
      pivoted.rows = g.rows.size();
      // Rows in row-key order: the map's own.
      std::vector<std::size_t> order;
      order.reserve(g.rows.size());
      for (const auto& [key, index] : g.rows) order.push_back(index);
      for (auto& base : g.base) {
        if (!base.is_key) {
          const std::size_t position = static_cast<std::size_t>(
              std::find(p.row_key.begin(), p.row_key.end(), base.label) - p.row_key.begin());
          base.values.reserve(pivoted.rows);
          for (const auto& [key, index] : g.rows) base.values.push_back(key[position]);
        }
        pivoted.columns.push_back(std::move(base));
      }
      for (auto& [name, cells] : g.values) {
        column c;
        c.label = name;
        c.type = cells.type;
        cells.cells.resize(pivoted.rows);
        c.values.reserve(pivoted.rows);
        for (const std::size_t index : order) c.values.push_back(std::move(cells.cells[index]));
        pivoted.columns.push_back(std::move(c));
      }
      out.push_back(std::move(pivoted));
    }
    tables = std::move(out);
    return std::nullopt;
  }

  status apply_map(const operation& op, const map_operation& m, std::vector<table>& tables) {
    for (auto& t : tables) {
      std::vector<std::vector<scalar>> computed(m.assignments.size());
      std::vector<std::optional<column_type>> types(m.assignments.size());
      for (std::size_t a = 0; a < m.assignments.size(); ++a) {
        const auto& [label, e] = m.assignments[a];
        if (const auto index = t.find(label); index && t.columns[*index].is_key)
          return runtime_error(
              op, "setting the group key column " + in_quotes(label) + " is not supported");
        computed[a].reserve(t.rows);
      }
      table_row_view view(t);
      for (std::size_t row = 0; row < t.rows; ++row) {
        view.set_row(row);
        for (std::size_t a = 0; a < m.assignments.size(); ++a) {
          row_result r = evaluate(m.assignments[a].second, view);
          if (r.outcome == row_result::state::failed)
            return error{error_code::invalid, std::move(r.error)};
          if (const auto type = type_of(r.value)) {
            if (!types[a]) {
              types[a] = type;
            } else if (*types[a] != *type) {
              return collision(m.assignments[a].first, *types[a], *type);
            }
          }
          computed[a].push_back(std::move(r.value));
        }
      }
      if (auto failure = tick(t.rows)) return failure;
      for (std::size_t a = 0; a < m.assignments.size(); ++a) {
        const std::string& label = m.assignments[a].first;
        if (const auto index = t.find(label)) {
          column& c = t.columns[*index];
          if (types[a]) c.type = *types[a];
          c.values = std::move(computed[a]);
        } else {
          column c;
          c.label = label;
          c.type = types[a].value_or(column_type::string);
          c.values = std::move(computed[a]);
          t.columns.push_back(std::move(c));
        }
      }
    }
    return std::nullopt;
  }

  const store& store_;
  const program& program_;
  execution_limits limits_;
  std::int64_t start_ = 0;  // the query's range, for window bounds
  std::int64_t stop_ = 0;
  std::size_t points_ = 0;
  std::size_t rows_ = 0;
  std::size_t ticks_ = 0;
  std::size_t next_check_ = 0;
};

}  // namespace

std::string_view datatype_of(column_type type) {
  switch (type) {
    case column_type::string:
      return "string";
    case column_type::integer:
      return "long";
    case column_type::unsigned_integer:
      return "unsignedLong";
    case column_type::floating:
      return "double";
    case column_type::boolean:
      return "boolean";
    case column_type::time:
      return "dateTime:RFC3339";
  }
  return "string";
}

std::optional<std::size_t> table::find(std::string_view label) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i].label == label) return i;
  return std::nullopt;
}

std::string encode_csv(const std::vector<result>& results, const csv_dialect& dialect) {
  std::string out;
  for (const auto& r : results) {
    encode_result(out, r, dialect);
    out += "\r\n";
  }
  if (results.empty()) out = "\r\n";
  return out;
}

std::variant<std::vector<result>, error> execute(const store& s, const program& p,
                                                 const execution_limits& limits) {
  executor e(s, p, limits);
  return e.run();
}

}  // namespace nimbus::tsdb::flux
