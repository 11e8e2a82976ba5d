#include "tsdb/rollup.hpp"

#include <cmath>
#include <optional>
#include <utility>

#include "tsdb/codecs.hpp"

namespace nimbus::tsdb::rollup {
namespace {

// A bucket's worth of buckets at most (a minute tier over a day).
constexpr codec::decode_limits limits{static_cast<std::size_t>(day_ns / minute_ns), 1};

std::int64_t floor_to(std::int64_t t, std::int64_t tier) {
  const std::int64_t r = t % tier;
  return r < 0 ? t - r - tier : t - r;
}

double as_double(const field_value& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  return 0;
}

// a < b for two values of one numeric type.
bool is_less(const field_value& a, const field_value& b) {
  if (const auto* x = std::get_if<std::int64_t>(&a))
    if (const auto* y = std::get_if<std::int64_t>(&b)) return *x < *y;
  return as_double(a) < as_double(b);
}

void put_column(std::string& out, const std::string& column) {
  const auto size = static_cast<std::uint32_t>(column.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
  out += column;
}

std::optional<std::string_view> take_column(std::string_view& in) {
  if (in.size() < 4) return std::nullopt;
  std::uint32_t size = 0;
  for (int i = 0; i < 4; ++i)
    size |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[static_cast<std::size_t>(i)]))
            << (8 * i);
  in.remove_prefix(4);
  if (in.size() < size) return std::nullopt;
  const auto column = in.substr(0, size);
  in.remove_prefix(size);
  return column;
}

template <class T, class Get>
std::string column_of(std::span<const bucket> buckets, Get get,
                      void (*encode)(std::span<const T>, std::string&)) {
  std::vector<T> values;
  values.reserve(buckets.size());
  for (const auto& b : buckets) values.push_back(get(b));
  std::string out;
  encode(values, out);
  return out;
}

void encode_values(field_type type, std::span<const bucket> buckets, field_value bucket::*member,
                   std::string& out) {
  if (type == field_type::integer)
    put_column(out,
               column_of<std::int64_t>(
                   buckets, [member](const bucket& b) { return std::get<std::int64_t>(b.*member); },
                   codec::encode_integers));
  else
    put_column(out, column_of<double>(
                        buckets, [member](const bucket& b) { return std::get<double>(b.*member); },
                        codec::encode_floats));
}

template <class T>
std::optional<std::vector<T>> decoded_column(
    std::string_view& in,
    codec::decoded<T> (*decode)(std::string_view, const codec::decode_limits&),
    std::size_t expected) {
  const auto column = take_column(in);
  if (!column) return std::nullopt;
  auto values = decode(*column, limits);
  auto* typed = std::get_if<std::vector<T>>(&values);
  if (typed == nullptr || typed->size() != expected) return std::nullopt;
  return std::move(*typed);
}

bool decode_values(field_type type, std::string_view& in, std::vector<bucket>& buckets,
                   field_value bucket::*member) {
  if (type == field_type::integer) {
    auto values = decoded_column<std::int64_t>(in, codec::decode_integers, buckets.size());
    if (!values) return false;
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i].*member = (*values)[i];
  } else {
    auto values = decoded_column<double>(in, codec::decode_floats, buckets.size());
    if (!values) return false;
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i].*member = (*values)[i];
  }
  return true;
}

bool decode_times(std::string_view& in, std::vector<bucket>& buckets,
                  std::int64_t bucket::*member) {
  auto values = decoded_column<std::int64_t>(in, codec::decode_timestamps, buckets.size());
  if (!values) return false;
  for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i].*member = (*values)[i];
  return true;
}

}  // namespace

bool has_rollups(field_type type) {
  return type == field_type::floating || type == field_type::integer;
}

std::vector<bucket> compute(field_type type, std::span<const std::int64_t> times,
                            std::span<const field_value> values, std::int64_t tier_ns) {
  std::vector<bucket> out;
  if (!has_rollups(type)) return out;
  double mean = 0;
  for (std::size_t i = 0; i < times.size() && i < values.size(); ++i) {
    const std::int64_t t = times[i];
    const field_value& v = values[i];
    const std::int64_t start = floor_to(t, tier_ns);
    if (out.empty() || out.back().start != start) {
      bucket b;
      b.start = start;
      b.min = b.max = b.first = v;
      b.min_time = b.max_time = b.first_time = t;
      out.push_back(std::move(b));
      mean = 0;
    }
    bucket& b = out.back();
    const double x = as_double(v);
    ++b.count;
    b.sum += x;
    if (const auto* i64 = std::get_if<std::int64_t>(&v))
      b.integer_sum = static_cast<std::int64_t>(static_cast<std::uint64_t>(b.integer_sum) +
                                                static_cast<std::uint64_t>(*i64));
    // Welford: the running mean and squared deviations.
    const double delta = x - mean;
    mean += delta / static_cast<double>(b.count);
    b.m2 += delta * (x - mean);
    if (is_less(v, b.min)) {
      b.min = v;
      b.min_time = t;
    }
    if (is_less(b.max, v)) {
      b.max = v;
      b.max_time = t;
    }
    b.last = v;
    b.last_time = t;
  }
  return out;
}

void merge(bucket& a, const bucket& b) {
  if (b.count == 0) return;
  if (a.count == 0) {
    a = b;
    return;
  }
  const double n_a = static_cast<double>(a.count);
  const double n_b = static_cast<double>(b.count);
  const double delta = b.mean() - a.mean();
  a.m2 += b.m2 + delta * delta * n_a * n_b / (n_a + n_b);
  a.count += b.count;
  a.sum += b.sum;
  a.integer_sum = static_cast<std::int64_t>(static_cast<std::uint64_t>(a.integer_sum) +
                                            static_cast<std::uint64_t>(b.integer_sum));
  if (is_less(b.min, a.min) || (!is_less(a.min, b.min) && b.min_time < a.min_time)) {
    a.min = b.min;
    a.min_time = b.min_time;
  }
  if (is_less(a.max, b.max) || (!is_less(b.max, a.max) && b.max_time < a.max_time)) {
    a.max = b.max;
    a.max_time = b.max_time;
  }
  if (b.first_time < a.first_time) {
    a.first = b.first;
    a.first_time = b.first_time;
  }
  if (b.last_time > a.last_time) {
    a.last = b.last;
    a.last_time = b.last_time;
  }
}

void encode(field_type type, std::span<const bucket> buckets, std::string& out) {
  const auto times = [&buckets](std::int64_t bucket::*member) {
    return column_of<std::int64_t>(
        buckets, [member](const bucket& b) { return b.*member; }, codec::encode_timestamps);
  };
  put_column(out, times(&bucket::start));
  put_column(out, column_of<std::uint64_t>(
                      buckets, [](const bucket& b) { return b.count; }, codec::encode_unsigned));
  put_column(out, column_of<double>(
                      buckets, [](const bucket& b) { return b.sum; }, codec::encode_floats));
  if (type == field_type::integer)
    put_column(out,
               column_of<std::int64_t>(
                   buckets, [](const bucket& b) { return b.integer_sum; }, codec::encode_integers));
  put_column(out, column_of<double>(
                      buckets, [](const bucket& b) { return b.m2; }, codec::encode_floats));
  for (auto member : {&bucket::min, &bucket::max, &bucket::first, &bucket::last})
    encode_values(type, buckets, member, out);
  for (auto member :
       {&bucket::min_time, &bucket::max_time, &bucket::first_time, &bucket::last_time})
    put_column(out, times(member));
}

std::variant<std::vector<bucket>, std::string> decode(field_type type, std::string_view bytes,
                                                      std::int64_t tier_ns) {
  if (!has_rollups(type)) return std::string("rollups of a type that has none");
  std::string_view in = bytes;
  const auto starts_column = take_column(in);
  if (!starts_column) return std::string("rollup truncated");
  auto starts = codec::decode_timestamps(*starts_column, limits);
  auto* start_values = std::get_if<std::vector<std::int64_t>>(&starts);
  if (start_values == nullptr) return std::string("rollup starts malformed");
  std::vector<bucket> out(start_values->size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].start = (*start_values)[i];
    if (floor_to(out[i].start, tier_ns) != out[i].start ||
        (i > 0 && out[i].start <= out[i - 1].start))
      return std::string("rollup starts out of order or off the tier");
  }
  auto counts = decoded_column<std::uint64_t>(in, codec::decode_unsigned, out.size());
  auto sums = decoded_column<double>(in, codec::decode_floats, out.size());
  if (!counts || !sums) return std::string("rollup counts or sums malformed");
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].count = (*counts)[i];
    out[i].sum = (*sums)[i];
    if (out[i].count == 0) return std::string("rollup bucket without points");
  }
  if (type == field_type::integer) {
    auto integer_sums = decoded_column<std::int64_t>(in, codec::decode_integers, out.size());
    if (!integer_sums) return std::string("rollup integer sums malformed");
    for (std::size_t i = 0; i < out.size(); ++i) out[i].integer_sum = (*integer_sums)[i];
  }
  auto m2 = decoded_column<double>(in, codec::decode_floats, out.size());
  if (!m2) return std::string("rollup deviations malformed");
  for (std::size_t i = 0; i < out.size(); ++i) out[i].m2 = (*m2)[i];
  for (auto member : {&bucket::min, &bucket::max, &bucket::first, &bucket::last})
    if (!decode_values(type, in, out, member)) return std::string("rollup selectors malformed");
  for (auto member :
       {&bucket::min_time, &bucket::max_time, &bucket::first_time, &bucket::last_time})
    if (!decode_times(in, out, member)) return std::string("rollup selector times malformed");
  if (!in.empty()) return std::string("bytes after the rollup");
  for (const auto& b : out)
    for (const auto t : {b.min_time, b.max_time, b.first_time, b.last_time})
      if (t < b.start || static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(b.start) >=
                             static_cast<std::uint64_t>(tier_ns))
        return std::string("rollup time off its bucket");
  return out;
}

}  // namespace nimbus::tsdb::rollup
