#pragma once
// A log-linear latency histogram (64 sub-buckets per power of two: under 1.6 % relative error)
// with exact count, min and max. Cheap to record into, mergeable across threads.
#include <algorithm>
#include <array>
#include <cstdint>

namespace nimbus::loadgen {

class histogram {
 public:
  void record(std::uint64_t value);
  void merge(const histogram& other);
  // The value at quantile q in [0, 1] (an upper bound of its bucket, capped by max()).
  std::uint64_t quantile(double q) const;
  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
  }
  // Calls f(upper bound, count) for each bucket that holds values, in ascending order, so that
  // histograms of several runs can be pooled elsewhere (bench/run).
  template <class F>
  void for_each_bucket(F&& f) const {
    for (std::size_t i = 0; i < counts_.size(); ++i)
      if (counts_[i] != 0) f(std::min(upper_bound_of(i), max_), counts_[i]);
  }

 private:
  static constexpr int sub_bits = 6;
  static constexpr int buckets = 64 << sub_bits;
  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t upper_bound_of(std::size_t bucket);

  std::array<std::uint64_t, buckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

}  // namespace nimbus::loadgen
