// Feeds arbitrary bytes to the rollup decoder (src/tsdb/rollup.cpp). The first byte picks the
// field type (floats or integers) and the tier; the rest is a rollup block's body. Nothing may
// crash, read out of bounds or allocate past the bounds; buckets that decode must lie on the
// tier, and re-encode to bytes that decode and encode to the same bytes again. The rollup and
// codecs sources only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tsdb/rollup.hpp"

namespace rollup = nimbus::tsdb::rollup;
using nimbus::tsdb::field_type;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const field_type type = data[0] % 2 == 0 ? field_type::floating : field_type::integer;
  const std::int64_t tier = rollup::tiers[(data[0] / 2) % 3];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto decoded = rollup::decode(type, rest, tier);
  const auto* buckets = std::get_if<std::vector<rollup::bucket>>(&decoded);
  if (buckets == nullptr) return 0;
  for (const auto& b : *buckets) {
    check(b.start % tier == 0);
    check(b.count > 0);
  }
  std::string once;
  rollup::encode(type, *buckets, once);
  auto again = rollup::decode(type, once, tier);
  const auto* round_trip = std::get_if<std::vector<rollup::bucket>>(&again);
  check(round_trip != nullptr && round_trip->size() == buckets->size());
  std::string twice;
  rollup::encode(type, *round_trip, twice);
  check(once == twice);
  return 0;
}
