#pragma once
// Go 1.19's sort.Sort (pattern-defeating quicksort), for the one place where which of several
// equal elements lands where is visible: InfluxDB 1.6.7 picks percentile()'s point from a
// slice sorted this way (it was built with Go 1.19), so its time among tied values is this
// algorithm's. Deterministic for a given input; not stable. Header-only, any thread.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace nimbus::tsdb::go_sort {

template <class T, class Less>
class sorter {
 public:
  sorter(std::vector<T>& data, Less less) : d_(data), less_(std::move(less)) {}

  void sort() {
    const std::size_t n = d_.size();
    if (n <= 1) return;
    pdq(0, n, static_cast<unsigned>(std::bit_width(n)));
  }

 private:
  bool less(std::size_t i, std::size_t j) { return less_(d_[i], d_[j]); }
  void swap(std::size_t i, std::size_t j) { std::swap(d_[i], d_[j]); }

  void insertion(std::size_t a, std::size_t b) {
    for (std::size_t i = a + 1; i < b; ++i)
      for (std::size_t j = i; j > a && less(j, j - 1); --j) swap(j, j - 1);
  }

  void sift_down(std::size_t lo, std::size_t hi, std::size_t first) {
    std::size_t root = lo;
    for (;;) {
      std::size_t child = 2 * root + 1;
      if (child >= hi) return;
      if (child + 1 < hi && less(first + child, first + child + 1)) ++child;
      if (!less(first + root, first + child)) return;
      swap(first + root, first + child);
      root = child;
    }
  }

  void heap_sort(std::size_t a, std::size_t b) {
    const std::size_t first = a;
    const std::size_t hi = b - a;
    for (std::size_t i = (hi - 1) / 2 + 1; i-- > 0;) sift_down(i, hi, first);
    for (std::size_t i = hi; i-- > 0;) {
      swap(first, first + i);
      sift_down(0, i, first);
    }
  }

  void pdq(std::size_t a, std::size_t b, unsigned limit) {
    bool was_balanced = true;
    bool was_partitioned = true;
    for (;;) {
      const std::size_t length = b - a;
      if (length <= 12) return insertion(a, b);
      if (limit == 0) return heap_sort(a, b);
      if (!was_balanced) {
        break_patterns(a, b);
        --limit;
      }
      auto [pivot, hint] = choose_pivot(a, b);
      if (hint == decreasing) {
        reverse(a, b);
        pivot = (b - 1) - (pivot - a);
        hint = increasing;
      }
      if (was_balanced && was_partitioned && hint == increasing && partial_insertion(a, b)) return;
      if (a > 0 && !less(a - 1, pivot)) {
        a = partition_equal(a, b, pivot);
        continue;
      }
      const auto [mid, already] = partition(a, b, pivot);
      was_partitioned = already;
      const std::size_t left = mid - a;
      const std::size_t right = b - mid;
      const std::size_t balance = length / 8;
      if (left < right) {
        was_balanced = left >= balance;
        pdq(a, mid, limit);
        a = mid + 1;
      } else {
        was_balanced = right >= balance;
        pdq(mid + 1, b, limit);
        b = mid;
      }
    }
  }

  std::pair<std::size_t, bool> partition(std::size_t a, std::size_t b, std::size_t pivot) {
    swap(a, pivot);
    std::size_t i = a + 1;
    std::size_t j = b - 1;
    while (i <= j && less(i, a)) ++i;
    while (i <= j && !less(j, a)) --j;
    if (i > j) {
      swap(j, a);
      return {j, true};
    }
    swap(i, j);
    ++i;
    --j;
    for (;;) {
      while (i <= j && less(i, a)) ++i;
      while (i <= j && !less(j, a)) --j;
      if (i > j) break;
      swap(i, j);
      ++i;
      --j;
    }
    swap(j, a);
    return {j, false};
  }

  std::size_t partition_equal(std::size_t a, std::size_t b, std::size_t pivot) {
    swap(a, pivot);
    std::size_t i = a + 1;
    std::size_t j = b - 1;
    for (;;) {
      while (i <= j && !less(a, i)) ++i;
      while (i <= j && less(a, j)) --j;
      if (i > j) break;
      swap(i, j);
      ++i;
      --j;
    }
    return i;
  }

  bool partial_insertion(std::size_t a, std::size_t b) {
    constexpr int max_steps = 5;
    constexpr std::size_t shortest_to_shift = 50;
    std::size_t i = a + 1;
    for (int step = 0; step < max_steps; ++step) {
      while (i < b && !less(i, i - 1)) ++i;
      if (i == b) return true;
      if (b - a < shortest_to_shift) return false;
      swap(i, i - 1);
      if (i - a >= 2)
        for (std::size_t j = i - 1; j >= 1 && less(j, j - 1); --j) swap(j, j - 1);
      if (b - i >= 2)
        for (std::size_t j = i + 1; j < b && less(j, j - 1); ++j) swap(j, j - 1);
    }
    return false;
  }

  void break_patterns(std::size_t a, std::size_t b) {
    const std::size_t length = b - a;
    if (length < 8) return;
    std::uint64_t random = length;  // Go's xorshift, seeded with the length
    const std::uint64_t modulus = std::uint64_t{1} << std::bit_width(length);
    const std::size_t index = a + (length / 4) * 2 - 1;
    for (std::size_t i = 0; i < 3; ++i) {
      random ^= random << 13;
      random ^= random >> 17;
      random ^= random << 5;
      auto other = static_cast<std::size_t>(random & (modulus - 1));
      if (other >= length) other -= length;
      swap(index - 1 + i, a + other);
    }
  }

  enum hint_kind { unknown, increasing, decreasing };

  std::pair<std::size_t, hint_kind> choose_pivot(std::size_t a, std::size_t b) {
    constexpr std::size_t shortest_ninther = 50;
    constexpr int max_swaps = 4 * 3;
    const std::size_t length = b - a;
    int swaps = 0;
    std::size_t i = a + length / 4 * 1;
    std::size_t j = a + length / 4 * 2;
    std::size_t k = a + length / 4 * 3;
    const auto order2 = [&](std::size_t x, std::size_t y) -> std::pair<std::size_t, std::size_t> {
      if (less(y, x)) {
        ++swaps;
        return {y, x};
      }
      return {x, y};
    };
    const auto median = [&](std::size_t x, std::size_t y, std::size_t z) {
      std::tie(x, y) = order2(x, y);
      std::tie(y, z) = order2(y, z);
      std::tie(x, y) = order2(x, y);
      return y;
    };
    if (length >= 8) {
      if (length >= shortest_ninther) {
        i = median(i - 1, i, i + 1);
        j = median(j - 1, j, j + 1);
        k = median(k - 1, k, k + 1);
      }
      j = median(i, j, k);
    }
    if (swaps == 0) return {j, increasing};
    if (swaps == max_swaps) return {j, decreasing};
    return {j, unknown};
  }

  void reverse(std::size_t a, std::size_t b) {
    for (std::size_t i = a, j = b - 1; i < j; ++i, --j) swap(i, j);
  }

  std::vector<T>& d_;
  Less less_;
};

// Sorts `data` exactly as Go 1.19's sort.Sort with this Less would.
template <class T, class Less>
void sort(std::vector<T>& data, Less less) {
  sorter<T, Less>(data, std::move(less)).sort();
}

}  // namespace nimbus::tsdb::go_sort
