#pragma once
// Rollups: per series and numeric field, what the decomposable aggregates need of each 1-minute,
// 1-hour and 1-day bucket (count, sum, min, max, first, last and the spread of values for
// stddev), so that a dashboard's hourly mean over a month reads 720 buckets per series instead
// of every point. Partition files carry them beside the points they summarise (partition.hpp);
// the store answers a read from the coarsest clean buckets and the raw points around them
// (store::read_rollup); query.cpp feeds them to its reducers as it feeds points.
//
// Exactness: a bucket is the points of one file's column. Buckets of several files merge only
// when their time spans are disjoint (no point can be in both, so nothing was overwritten);
// otherwise the store reads the raw points, where the newest write wins. Merging uses Chan's
// formula for the squared deviations, so stddev agrees with the two-pass raw answer to ~1e-15
// relative. Floats and integers only (booleans, strings and unsigned read raw).
//
// Sans-I/O, standard library plus codecs; pure functions, any thread.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tsdb/line_protocol.hpp"

namespace nimbus::tsdb::rollup {

inline constexpr std::int64_t minute_ns = 60'000'000'000;
inline constexpr std::int64_t hour_ns = 60 * minute_ns;
inline constexpr std::int64_t day_ns = 24 * hour_ns;
// Coarsest first; each divides the next and a UTC day, so a bucket never spans two partitions.
inline constexpr std::int64_t tiers[] = {day_ns, hour_ns, minute_ns};

// A tier is kept in a file when its buckets hold at least this many points on average: below
// that, reading the points costs about as much as reading the buckets.
inline constexpr std::size_t min_points_per_bucket = 2;

bool has_rollups(field_type type);

struct bucket {
  std::int64_t start = 0;  // a multiple of the tier
  std::uint64_t count = 0;
  double sum = 0;                // every value as a double (mean)
  std::int64_t integer_sum = 0;  // integers: Go's int64 sum, wrapping
  double m2 = 0;                 // sum of squared deviations from the bucket's mean
  // The selectors' points. Ties go to the earliest time, as the reducers decide them.
  field_value min, max, first, last;
  std::int64_t min_time = 0, max_time = 0, first_time = 0, last_time = 0;

  double mean() const { return sum / static_cast<double>(count); }
  friend bool operator==(const bucket&, const bucket&) = default;
};

// The buckets of one column (times ascending and unique, values all of `type`, which
// has_rollups) in `tier_ns`, ascending by start.
std::vector<bucket> compute(field_type type, std::span<const std::int64_t> times,
                            std::span<const field_value> values, std::int64_t tier_ns);

// Adds `b` to `a` (same bucket, disjoint time spans): sums, Chan's m2, selectors by value and
// time.
void merge(bucket& a, const bucket& b);

// A column of buckets as bytes and back (the partition layer compresses and checksums them).
// Decoding never trusts the bytes: a reason instead of buckets when they do not hold together.
void encode(field_type type, std::span<const bucket> buckets, std::string& out);
std::variant<std::vector<bucket>, std::string> decode(field_type type, std::string_view bytes,
                                                      std::int64_t tier_ns);

}  // namespace nimbus::tsdb::rollup
