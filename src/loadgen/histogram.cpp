#include "loadgen/histogram.hpp"

#include <algorithm>
#include <bit>

namespace nimbus::loadgen {

std::size_t histogram::bucket_of(std::uint64_t value) {
  if (value < (1U << sub_bits)) return static_cast<std::size_t>(value);
  int exponent = 63 - std::countl_zero(value);  // >= sub_bits
  auto mantissa =
      static_cast<std::size_t>((value >> (exponent - sub_bits)) & ((1U << sub_bits) - 1));
  return (static_cast<std::size_t>(exponent - sub_bits + 1) << sub_bits) + mantissa;
}

std::uint64_t histogram::upper_bound_of(std::size_t bucket) {
  if (bucket < (1U << sub_bits)) return bucket;
  std::size_t exponent = (bucket >> sub_bits) + sub_bits - 1;
  std::uint64_t mantissa = (bucket & ((1U << sub_bits) - 1)) | (1U << sub_bits);
  return ((mantissa + 1) << (exponent - sub_bits)) - 1;
}

void histogram::record(std::uint64_t value) {
  ++counts_[std::min<std::size_t>(bucket_of(value), buckets - 1)];
  ++count_;
  sum_ += value;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void histogram::merge(const histogram& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

std::uint64_t histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(upper_bound_of(i), max_);
  }
  return max_;
}

}  // namespace nimbus::loadgen
