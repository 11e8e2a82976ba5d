// The column layouts, byte by byte. Common pieces:
//   varint    LEB128, at most 10 bytes; an overlong form (a final 0x00 byte) is refused.
//   fixed64   8 bytes, little-endian.
//   zigzag    (v << 1) ^ (v >> 63): small magnitudes of either sign become small numbers.
//   simple8b  64-bit little-endian words; the top 4 bits select how the low 60 bits hold values,
//             the first value in the lowest bits:
//               selector   0    1    2   3   4   5   6   7   8   9  10  11  12  13  14  15
//               values   240  120   60  30  20  15  12  10   8   7   6   5   4   3   2   1
//               bits       0    0    1   2   3   4   5   6   7   8  10  12  15  20  30  60
//             Selectors 0 and 1 are runs of zeros (the common delta-of-delta and delta: we zigzag
//             before packing, so "no change" is 0, where InfluxDB's variant runs 1s). The last word
//             may be partly used (its unused slots and bits zero), so a short tail does not need
//             a wide selector. Values of 2^60 and over do not fit: each column has a fallback.
//   bits      a bit stream, most significant bit first, zero-padded to a whole byte.
//
// Column = scheme byte, varint count, and when count > 0:
//   timestamps_simple8b  fixed64 first, byte k, varint zigzag(first delta / 10^k), simple8b of
//                        the count-2 zigzagged delta-of-deltas of (delta / 10^k)
//   timestamps_buckets   the same with the delta-of-deltas as bits: '0' = 0; '10' + 7 bits;
//                        '110' + 9; '1110' + 12; '11110' + 32; '11111' + 64 (zigzagged values)
//   floats_decimal       byte e, byte integers_* layout, that layout's body over the mantissas m;
//                        each value is (double)m / 10^e
//   floats_xor           bits: the first value's 64 bits, then per value Gorilla's '0' (same as
//                        the previous), '10' + the XOR's bits inside the previous window, or '11'
//                        + 5 bits leading zeros + 6 bits length (0 means 64) + the XOR's bits
//   floats_raw           count fixed64
//   floats_split         8 planes of count bytes: plane k holds byte k (little-endian) of each
//                        value in order
//   floats_planes        varint n, n bytes: one zstd frame of planes 6 and 7 (2 x count bytes),
//                        then planes 0 to 5
//   integers_direct      simple8b of zigzag(v);  unsigned_direct: simple8b of v
//   integers_delta       varint zigzag(first), simple8b of zigzag(v[i] - v[i-1]) (wrapping);
//                        unsigned_delta: varint first, then the same
//   integers_raw         count fixed64 (also unsigned_raw)
//   booleans_bits        ceil(count / 8) bytes, value i in bit i % 8 of byte i / 8, padding zero
//   strings_raw          per value: varint length, bytes
//   strings_dictionary   varint entries (1..count), per entry: varint length, bytes; simple8b of
//                        the count indexes into the entries, in order of first appearance
//
// Why timestamps try two packings: delta-of-deltas are zero for a regular series, and simple8b
// packs 240 zeros into one word (0.27 bits per value, against Gorilla's 1), and it packs jitter
// (a few to 30 bits per value) more tightly than Gorilla's buckets (prefix bits plus 7, 9, 12 or
// 32). Gorilla's buckets win for a mostly regular series with sparse jitter (a lone nonzero value
// breaks simple8b's runs of zeros, where the buckets pay 1 bit per zero), and they hold any 64-bit
// value. Encoding both at flush time costs little, so the smaller one is kept. Dividing the deltas
// by their common power of ten (as InfluxDB does) makes a second- or millisecond-precision series
// in nanoseconds cost what it would in seconds or milliseconds.
#include "tsdb/codecs.hpp"

#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <memory>
#include <unordered_map>
#include <utility>

namespace nimbus::tsdb::codec {
namespace {

constexpr std::uint64_t low_bits(unsigned count) {
  return count >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << count) - 1;
}

constexpr std::uint64_t zigzag(std::int64_t value) {
  return (static_cast<std::uint64_t>(value) << 1) ^ static_cast<std::uint64_t>(value >> 63);
}

constexpr std::int64_t unzigzag(std::uint64_t value) {
  return static_cast<std::int64_t>((value >> 1) ^ (std::uint64_t{0} - (value & 1)));
}

// Differences of int64 values are taken on their bit patterns, wrapping, so that any two values
// (INT64_MIN and INT64_MAX included) have a delta and adding it back restores the value exactly.
constexpr std::int64_t wrapping_difference(std::int64_t value, std::int64_t previous) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(value) -
                                   static_cast<std::uint64_t>(previous));
}

constexpr auto integer_powers_of_ten = [] {
  std::array<std::int64_t, max_time_exponent + 1> powers{};
  powers[0] = 1;
  for (std::size_t i = 1; i < powers.size(); ++i) powers[i] = powers[i - 1] * 10;
  return powers;
}();

// Exact doubles: every power of ten up to 10^22 is representable.
constexpr auto powers_of_ten = [] {
  std::array<double, max_decimal_exponent + 1> powers{};
  powers[0] = 1.0;
  for (std::size_t i = 1; i < powers.size(); ++i) powers[i] = powers[i - 1] * 10.0;
  return powers;
}();

// The decoder's expression for a decimal value, which the encoder also evaluates to check every
// value before choosing floats_decimal: only bit-identical results pass. When m and 10^e are exact
// doubles, IEEE division rounds the true quotient correctly, so this is the double nearest to
// m * 10^-e: the same double a correct parser makes of the text "21.53".
double decimal_value(std::int64_t mantissa, unsigned exponent) {
  return static_cast<double>(mantissa) / powers_of_ten[exponent];
}

// ---- writing --------------------------------------------------------------------------------

void put_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

std::size_t varint_size(std::uint64_t value) {
  std::size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

void put_fixed64(std::string& out, std::uint64_t value) {
  for (unsigned i = 0; i < 8; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

void put_header(std::string& out, scheme tag, std::size_t count) {
  out.push_back(static_cast<char>(tag));
  put_varint(out, count);
}

// Appends bits most significant first; finish() pads the last byte with zeros.
class bit_writer {
 public:
  explicit bit_writer(std::string& out) : out_(out) {}

  void write(std::uint64_t value, unsigned count) {  // count <= 64
    if (count > 32) {
      write(value >> 32, count - 32);
      count = 32;
    }
    pending_ = (pending_ << count) | (value & low_bits(count));
    pending_count_ += count;
    while (pending_count_ >= 8) {
      pending_count_ -= 8;
      out_.push_back(static_cast<char>(pending_ >> pending_count_));  // the low 8 bits
    }
    pending_ &= low_bits(pending_count_);
  }

  void finish() {
    if (pending_count_ > 0) out_.push_back(static_cast<char>(pending_ << (8 - pending_count_)));
    pending_ = 0;
    pending_count_ = 0;
  }

 private:
  std::string& out_;
  std::uint64_t pending_ = 0;
  unsigned pending_count_ = 0;  // below 8 between calls
};

// ---- zstd frames inside a column (floats_planes) ----------------------------------------------

// Contexts per thread: flushes and reads run on several.
bool compress_frame(std::string_view raw, std::string& out) {
  thread_local std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> context(ZSTD_createCCtx(),
                                                                            ZSTD_freeCCtx);
  if (!context) return false;
  out.resize(ZSTD_compressBound(raw.size()));
  const std::size_t size =
      ZSTD_compressCCtx(context.get(), out.data(), out.size(), raw.data(), raw.size(), 3);
  if (ZSTD_isError(size) != 0) return false;
  out.resize(size);
  return true;
}

// One whole frame that declares exactly `size` bytes and holds them.
bool decompress_frame(std::string_view frame, std::size_t size, std::string& out) {
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(),
                                                                            ZSTD_freeDCtx);
  if (!context || ZSTD_getFrameContentSize(frame.data(), frame.size()) != size) return false;
  if (ZSTD_findFrameCompressedSize(frame.data(), frame.size()) != frame.size()) return false;
  out.resize(size);
  const std::size_t got =
      ZSTD_decompressDCtx(context.get(), out.data(), out.size(), frame.data(), frame.size());
  return ZSTD_isError(got) == 0 && got == size;
}

// Byte planes into values: plane p of `planes` (bits.size() bytes each, in order) is byte
// first_plane + p of every value.
void or_planes(std::string_view planes, unsigned first_plane, std::vector<std::uint64_t>& bits) {
  const std::size_t count = bits.size();
  for (std::size_t p = 0; count != 0 && p < planes.size() / count; ++p) {
    const unsigned shift = 8 * (first_plane + static_cast<unsigned>(p));
    for (std::size_t i = 0; i < count; ++i)
      bits[i] |= std::uint64_t{static_cast<std::uint8_t>(planes[p * count + i])} << shift;
  }
}

// ---- reading --------------------------------------------------------------------------------

// Reads a column from the front; the first failure is kept as the column's error.
class reader {
 public:
  explicit reader(std::string_view column) : bytes_(column) {}

  std::size_t remaining() const { return bytes_.size() - position_; }
  std::string_view rest() const { return bytes_.substr(position_); }
  void skip_rest() { position_ = bytes_.size(); }
  const decode_error& error() const { return error_; }

  bool fail(errc reason, std::string_view what) {
    error_ = decode_error{reason, what};
    return false;
  }

  bool byte(std::uint8_t& value) {
    if (position_ >= bytes_.size()) return fail(errc::truncated, "column cut short");
    value = static_cast<std::uint8_t>(bytes_[position_++]);
    return true;
  }

  bool varint(std::uint64_t& value) {
    value = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      std::uint8_t next = 0;
      if (!byte(next)) return fail(errc::truncated, "varint cut short");
      const std::uint64_t payload = next & 0x7fu;
      if (shift == 63 && payload > 1) return fail(errc::malformed, "varint over 64 bits");
      value |= payload << shift;
      if ((next & 0x80u) == 0) {
        if (next == 0 && shift != 0) return fail(errc::malformed, "overlong varint");
        return true;
      }
    }
    return fail(errc::malformed, "varint over 64 bits");
  }

  bool fixed64(std::uint64_t& value) {
    if (remaining() < 8) return fail(errc::truncated, "column cut short");
    value = 0;
    for (std::size_t i = 8; i-- > 0;)
      value = (value << 8) | static_cast<std::uint8_t>(bytes_[position_ + i]);
    position_ += 8;
    return true;
  }

  bool take(std::uint64_t size, std::string_view& value) {
    if (size > remaining()) return fail(errc::truncated, "string cut short");
    value = bytes_.substr(position_, size);
    position_ += size;
    return true;
  }

  bool at_end() { return remaining() == 0 || fail(errc::trailing_bytes, "bytes after the column"); }

 private:
  std::string_view bytes_;
  std::size_t position_ = 0;
  decode_error error_;
};

class bit_reader {
 public:
  explicit bit_reader(std::string_view bytes) : bytes_(bytes) {}

  std::uint64_t bits_left() const { return std::uint64_t{bytes_.size()} * 8 - position_; }

  bool read(unsigned count, std::uint64_t& value) {  // count <= 64
    if (count > bits_left()) return false;
    value = 0;
    while (count > 0) {
      const auto byte = static_cast<std::uint8_t>(bytes_[position_ / 8]);
      const unsigned available = 8 - static_cast<unsigned>(position_ % 8);
      const unsigned take = std::min(available, count);
      const unsigned chunk = (byte >> (available - take)) & ((1u << take) - 1);
      value = (value << take) | chunk;
      position_ += take;
      count -= take;
    }
    return true;
  }

 private:
  std::string_view bytes_;
  std::uint64_t position_ = 0;
};

// A bit stream ends inside its last byte, and the padding after it is zero.
bool finish_bits(reader& in, bit_reader& bits) {
  const std::uint64_t left = bits.bits_left();
  if (left >= 8) return in.fail(errc::trailing_bytes, "bytes after the bit stream");
  std::uint64_t padding = 0;
  (void)bits.read(static_cast<unsigned>(left), padding);
  if (padding != 0) return in.fail(errc::malformed, "nonzero padding bits");
  return true;
}

struct header {
  std::uint8_t tag = 0;
  std::uint64_t count = 0;
};

bool read_header(reader& in, scheme first, scheme last, const decode_limits& limits, header& h) {
  if (!in.byte(h.tag)) return false;
  if (h.tag < static_cast<std::uint8_t>(first) || h.tag > static_cast<std::uint8_t>(last))
    return in.fail(errc::unknown_scheme, "unknown scheme for this column type");
  if (!in.varint(h.count)) return false;
  if (h.count > limits.max_values) return in.fail(errc::too_large, "more values than the limit");
  return true;
}

template <class Value>
decoded<Value> ok(std::vector<Value>&& values) {
  return decoded<Value>(std::in_place_index<0>, std::move(values));
}

template <class Value>
decoded<Value> finish(reader& in, std::vector<Value>&& values) {
  if (!in.at_end()) return in.error();
  return ok(std::move(values));
}

// ---- simple8b -------------------------------------------------------------------------------

struct packing {
  unsigned count;
  unsigned bits;
};
constexpr std::array<packing, 16> packings = {{{240, 0},
                                               {120, 0},
                                               {60, 1},
                                               {30, 2},
                                               {20, 3},
                                               {15, 4},
                                               {12, 5},
                                               {10, 6},
                                               {8, 7},
                                               {7, 8},
                                               {6, 10},
                                               {5, 12},
                                               {4, 15},
                                               {3, 20},
                                               {2, 30},
                                               {1, 60}}};
constexpr unsigned selector_shift = 60;

// Appends `values` as simple8b words; false, with nothing appended, when one needs over 60 bits.
// Greedy: each word takes the selector that packs the most of the values that come next.
bool put_simple8b(std::span<const std::uint64_t> values, std::string& out) {
  for (const std::uint64_t value : values)
    if ((value >> selector_shift) != 0) return false;
  std::size_t next = 0;
  while (next < values.size()) {
    const std::size_t left = values.size() - next;
    for (unsigned selector = 0; selector < packings.size(); ++selector) {
      const packing p = packings[selector];
      const std::size_t take = std::min<std::size_t>(p.count, left);
      const std::uint64_t limit = low_bits(p.bits);
      bool is_fit = true;
      for (std::size_t i = 0; i < take && is_fit; ++i) is_fit = values[next + i] <= limit;
      if (!is_fit) continue;  // selector 15 always fits
      std::uint64_t word = std::uint64_t{selector} << selector_shift;
      if (p.bits > 0)
        for (std::size_t i = 0; i < take; ++i) word |= values[next + i] << (i * p.bits);
      put_fixed64(out, word);
      next += take;
      break;
    }
  }
  return true;
}

// Appends `count` values read from the rest of `in`, which must be exactly the words holding them.
bool read_simple8b(reader& in, std::uint64_t count, std::vector<std::uint64_t>& values) {
  const std::uint64_t size = in.remaining();
  if (size % 8 != 0) return in.fail(errc::truncated, "simple8b word cut short");
  const std::uint64_t words = size / 8;
  if (count > words * packings[0].count)
    return in.fail(errc::bad_count, "more values than the simple8b words can hold");
  if (words > count) return in.fail(errc::trailing_bytes, "more simple8b words than values");
  values.reserve(values.size() + count);
  std::uint64_t done = 0;
  while (done < count) {
    std::uint64_t word = 0;
    if (!in.fixed64(word)) return false;
    const packing p = packings[word >> selector_shift];
    const std::uint64_t payload = word & low_bits(selector_shift);
    const std::uint64_t take = std::min<std::uint64_t>(p.count, count - done);
    if (p.bits == 0) {
      if (payload != 0) return in.fail(errc::malformed, "simple8b run of zeros with a payload");
      values.insert(values.end(), take, std::uint64_t{0});
    } else {
      for (std::uint64_t i = 0; i < take; ++i)
        values.push_back((payload >> (i * p.bits)) & low_bits(p.bits));
      const std::uint64_t used = take * p.bits;
      if (used < selector_shift && (payload >> used) != 0)
        return in.fail(errc::malformed, "simple8b bits past the last value");
    }
    done += take;
  }
  if (in.remaining() != 0)
    return in.fail(errc::trailing_bytes, "simple8b words past the last value");
  return true;
}

// ---- integers -------------------------------------------------------------------------------

constexpr std::uint8_t signed_family = 0x30;    // integers_direct - 1
constexpr std::uint8_t unsigned_family = 0x40;  // unsigned_direct - 1
constexpr std::uint8_t direct_layout = 1;
constexpr std::uint8_t delta_layout = 2;
constexpr std::uint8_t raw_layout = 3;

struct integer_layout {
  std::uint8_t tag = 0;  // an integers_* or unsigned_* scheme
  std::string body;
};

// The smallest layout of `values` (int64 bit patterns when is_signed); values is not empty.
integer_layout choose_integers(std::span<const std::uint64_t> values, bool is_signed) {
  const std::uint8_t family = is_signed ? signed_family : unsigned_family;
  std::vector<std::uint64_t> direct(values.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    direct[i] = is_signed ? zigzag(static_cast<std::int64_t>(values[i])) : values[i];
  std::vector<std::uint64_t> deltas(values.size() - 1);
  for (std::size_t i = 1; i < values.size(); ++i)
    deltas[i - 1] = zigzag(static_cast<std::int64_t>(values[i] - values[i - 1]));

  integer_layout best;
  std::size_t best_size = values.size() * 8;  // raw: always possible
  best.tag = static_cast<std::uint8_t>(family + raw_layout);
  std::string delta_body;
  put_varint(delta_body, direct[0]);
  if (put_simple8b(deltas, delta_body) && delta_body.size() <= best_size) {
    best_size = delta_body.size();
    best.tag = static_cast<std::uint8_t>(family + delta_layout);
    best.body = std::move(delta_body);
  }
  std::string direct_body;
  if (put_simple8b(direct, direct_body) && direct_body.size() < best_size) {
    best.tag = static_cast<std::uint8_t>(family + direct_layout);
    best.body = std::move(direct_body);
  }
  if (best.tag == family + raw_layout)
    for (const std::uint64_t value : values) put_fixed64(best.body, value);
  return best;
}

// Reads `count` (at least 1) values in layout `tag` from the rest of `in`, as bit patterns.
bool read_integers(reader& in, std::uint8_t tag, std::uint64_t count, bool is_signed,
                   std::vector<std::uint64_t>& values) {
  const std::uint8_t family = is_signed ? signed_family : unsigned_family;
  if (tag == family + direct_layout) {
    if (!read_simple8b(in, count, values)) return false;
    if (is_signed)
      for (std::uint64_t& value : values) value = static_cast<std::uint64_t>(unzigzag(value));
    return true;
  }
  if (tag == family + delta_layout) {
    std::uint64_t first = 0;
    if (!in.varint(first)) return false;
    std::uint64_t value = is_signed ? static_cast<std::uint64_t>(unzigzag(first)) : first;
    values.push_back(value);
    if (!read_simple8b(in, count - 1, values)) return false;
    for (std::size_t i = 1; i < values.size(); ++i) {
      value += static_cast<std::uint64_t>(unzigzag(values[i]));
      values[i] = value;
    }
    return true;
  }
  if (tag == family + raw_layout) {
    if (in.remaining() / 8 < count) return in.fail(errc::bad_count, "more values than bytes");
    values.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint64_t value = 0;
      if (!in.fixed64(value)) return false;
      values.push_back(value);
    }
    return true;
  }
  return in.fail(errc::unknown_scheme, "unknown integer layout");
}

// ---- timestamps -----------------------------------------------------------------------------

constexpr std::array<unsigned, 6> bucket_bits = {0, 7, 9, 12, 32, 64};

// The largest k such that 10^k divides every delta (0 when all deltas are 0).
unsigned common_exponent(std::span<const std::int64_t> deltas) {
  unsigned exponent = max_time_exponent;
  bool has_nonzero = false;
  for (const std::int64_t delta : deltas) {
    if (delta == 0) continue;
    has_nonzero = true;
    while (exponent > 0 && delta % integer_powers_of_ten[exponent] != 0) --exponent;
    if (exponent == 0) break;
  }
  return has_nonzero ? exponent : 0;
}

void put_buckets(std::span<const std::uint64_t> values, std::string& out) {
  bit_writer bits(out);
  for (const std::uint64_t value : values) {
    unsigned bucket = 0;
    while (bucket < 5 && (value >> bucket_bits[bucket]) != 0) ++bucket;
    if (bucket < 5)
      bits.write(low_bits(bucket) << 1, bucket + 1);  // `bucket` ones, then a zero
    else
      bits.write(low_bits(5), 5);
    bits.write(value, bucket_bits[bucket]);
  }
  bits.finish();
}

bool read_buckets(reader& in, std::uint64_t count, std::vector<std::uint64_t>& values) {
  bit_reader bits(in.rest());
  in.skip_rest();
  if (count > bits.bits_left()) return in.fail(errc::bad_count, "more values than bits");
  values.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    unsigned bucket = 0;
    while (bucket < 5) {
      std::uint64_t bit = 0;
      if (!bits.read(1, bit)) return in.fail(errc::truncated, "bit stream cut short");
      if (bit == 0) break;
      ++bucket;
    }
    std::uint64_t value = 0;
    if (!bits.read(bucket_bits[bucket], value))
      return in.fail(errc::truncated, "bit stream cut short");
    values.push_back(value);
  }
  return finish_bits(in, bits);
}

// ---- floats ---------------------------------------------------------------------------------

bool fits_decimal(double value, unsigned exponent, std::int64_t& mantissa) {
  const double scaled = value * powers_of_ten[exponent];
  if (!(scaled > -0x1p62 && scaled < 0x1p62)) return false;  // NaN and infinities too
  mantissa = static_cast<std::int64_t>(std::llround(scaled));
  return std::bit_cast<std::uint64_t>(decimal_value(mantissa, exponent)) ==
         std::bit_cast<std::uint64_t>(value);
}

// The smallest exponent every value fits at, and the mantissas (int64 bit patterns) there.
// Negative zero, NaN, infinities, denormals and most non-decimal values never fit.
bool find_decimal(std::span<const double> values, unsigned& exponent,
                  std::vector<std::uint64_t>& mantissas) {
  unsigned candidate = 0;
  for (const double value : values) {
    std::int64_t mantissa = 0;
    while (!fits_decimal(value, candidate, mantissa))
      if (++candidate > max_decimal_exponent) return false;
  }
  // A value that fits at a smaller exponent almost always fits at a larger one (m * 10^j / 10^(e+j)
  // is the same quotient), but rounding of the scaled value can differ: check them all again.
  for (; candidate <= max_decimal_exponent; ++candidate) {
    mantissas.clear();
    bool is_fit = true;
    for (const double value : values) {
      std::int64_t mantissa = 0;
      if (!fits_decimal(value, candidate, mantissa)) {
        is_fit = false;
        break;
      }
      mantissas.push_back(static_cast<std::uint64_t>(mantissa));
    }
    if (is_fit) {
      exponent = candidate;
      return true;
    }
  }
  return false;
}

// Gorilla (Pelkonen et al., VLDB 2015, section 4.1.2), with the leading-zero count capped at 31
// to fit its 5 bits and a meaningful length of 64 written as 0.
void put_xor(std::span<const double> values, std::string& out) {
  bit_writer bits(out);
  std::uint64_t previous = std::bit_cast<std::uint64_t>(values[0]);
  bits.write(previous, 64);
  bool has_window = false;
  unsigned window_leading = 0;
  unsigned window_trailing = 0;
  for (std::size_t i = 1; i < values.size(); ++i) {
    const std::uint64_t current = std::bit_cast<std::uint64_t>(values[i]);
    const std::uint64_t difference = current ^ previous;
    previous = current;
    if (difference == 0) {
      bits.write(0, 1);
      continue;
    }
    const unsigned leading = std::min(static_cast<unsigned>(std::countl_zero(difference)), 31u);
    const unsigned trailing = static_cast<unsigned>(std::countr_zero(difference));
    if (has_window && leading >= window_leading && trailing >= window_trailing) {
      bits.write(0b10, 2);
      bits.write(difference >> window_trailing, 64 - window_leading - window_trailing);
      continue;
    }
    const unsigned length = 64 - leading - trailing;
    bits.write(0b11, 2);
    bits.write(leading, 5);
    bits.write(length & 63u, 6);
    bits.write(difference >> trailing, length);
    has_window = true;
    window_leading = leading;
    window_trailing = trailing;
  }
  bits.finish();
}

bool read_xor(reader& in, std::uint64_t count, std::vector<double>& values) {
  bit_reader bits(in.rest());
  in.skip_rest();
  std::uint64_t previous = 0;
  if (!bits.read(64, previous)) return in.fail(errc::truncated, "bit stream cut short");
  if (count - 1 > bits.bits_left()) return in.fail(errc::bad_count, "more values than bits");
  values.reserve(count);
  values.push_back(std::bit_cast<double>(previous));
  bool has_window = false;
  unsigned window_leading = 0;
  unsigned window_trailing = 0;
  for (std::uint64_t i = 1; i < count; ++i) {
    std::uint64_t control = 0;
    if (!bits.read(1, control)) return in.fail(errc::truncated, "bit stream cut short");
    if (control != 0) {
      if (!bits.read(1, control)) return in.fail(errc::truncated, "bit stream cut short");
      if (control != 0) {
        std::uint64_t leading = 0;
        std::uint64_t length = 0;
        if (!bits.read(5, leading) || !bits.read(6, length))
          return in.fail(errc::truncated, "bit stream cut short");
        if (length == 0) length = 64;
        if (leading + length > 64) return in.fail(errc::malformed, "XOR window past 64 bits");
        has_window = true;
        window_leading = static_cast<unsigned>(leading);
        window_trailing = static_cast<unsigned>(64 - leading - length);
      } else if (!has_window) {
        return in.fail(errc::malformed, "XOR reuses a window before the first");
      }
      std::uint64_t meaningful = 0;
      if (!bits.read(64 - window_leading - window_trailing, meaningful))
        return in.fail(errc::truncated, "bit stream cut short");
      previous ^= meaningful << window_trailing;
    }
    values.push_back(std::bit_cast<double>(previous));
  }
  return finish_bits(in, bits);
}

// ---- booleans and strings -------------------------------------------------------------------

template <class BitAt>
void put_booleans(std::size_t count, BitAt bit_at, std::string& out) {
  put_header(out, scheme::booleans_bits, count);
  unsigned byte = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (bit_at(i)) byte |= 1u << (i % 8);
    if (i % 8 == 7) {
      out.push_back(static_cast<char>(byte));
      byte = 0;
    }
  }
  if (count % 8 != 0) out.push_back(static_cast<char>(byte));
}

template <class String>
void put_strings(std::span<const String> values, std::string& out) {
  std::size_t raw_size = 0;
  std::unordered_map<std::string_view, std::uint64_t> ids;
  std::vector<std::string_view> entries;
  std::vector<std::uint64_t> indexes;
  indexes.reserve(values.size());
  for (const String& value : values) {
    const std::string_view text(value);
    raw_size += varint_size(text.size()) + text.size();
    const auto [found, is_new] = ids.try_emplace(text, entries.size());
    if (is_new) entries.push_back(text);
    indexes.push_back(found->second);
  }
  if (entries.size() < values.size()) {
    std::string body;
    put_varint(body, entries.size());
    for (const std::string_view entry : entries) {
      put_varint(body, entry.size());
      body.append(entry);
    }
    (void)put_simple8b(indexes, body);  // indexes are far below 2^60
    if (body.size() < raw_size) {
      put_header(out, scheme::strings_dictionary, values.size());
      out += body;
      return;
    }
  }
  put_header(out, scheme::strings_raw, values.size());
  for (const String& value : values) {
    const std::string_view text(value);
    put_varint(out, text.size());
    out.append(text);
  }
}

constexpr std::array<scheme, 16> all_schemes = {
    scheme::timestamps_simple8b, scheme::timestamps_buckets, scheme::floats_decimal,
    scheme::floats_xor,          scheme::floats_raw,         scheme::floats_split,
    scheme::floats_planes,       scheme::integers_direct,    scheme::integers_delta,
    scheme::integers_raw,        scheme::unsigned_direct,    scheme::unsigned_delta,
    scheme::unsigned_raw,        scheme::booleans_bits,      scheme::strings_raw,
    scheme::strings_dictionary};

}  // namespace

// ---- timestamps -----------------------------------------------------------------------------

void encode_timestamps(std::span<const std::int64_t> values, std::string& out) {
  const std::size_t count = values.size();
  if (count < 2) {
    put_header(out, scheme::timestamps_simple8b, count);
    if (count == 1) put_fixed64(out, static_cast<std::uint64_t>(values[0]));
    return;
  }
  std::vector<std::int64_t> deltas(count - 1);
  for (std::size_t i = 1; i < count; ++i)
    deltas[i - 1] = wrapping_difference(values[i], values[i - 1]);
  const unsigned exponent = common_exponent(deltas);
  for (std::int64_t& delta : deltas) delta /= integer_powers_of_ten[exponent];  // exact
  std::vector<std::uint64_t> dods(count - 2);
  for (std::size_t i = 1; i < deltas.size(); ++i)
    dods[i - 1] = zigzag(wrapping_difference(deltas[i], deltas[i - 1]));

  std::string packed;
  std::string bucketed;
  const bool is_packed = put_simple8b(dods, packed);
  put_buckets(dods, bucketed);
  const bool use_packed = is_packed && packed.size() <= bucketed.size();
  put_header(out, use_packed ? scheme::timestamps_simple8b : scheme::timestamps_buckets, count);
  put_fixed64(out, static_cast<std::uint64_t>(values[0]));
  out.push_back(static_cast<char>(exponent));
  put_varint(out, zigzag(deltas[0]));
  out += use_packed ? packed : bucketed;
}

decoded<std::int64_t> decode_timestamps(std::string_view column, const decode_limits& limits) {
  reader in(column);
  header h;
  if (!read_header(in, scheme::timestamps_simple8b, scheme::timestamps_buckets, limits, h))
    return in.error();
  std::vector<std::int64_t> values;
  if (h.count == 0) return finish(in, std::move(values));
  std::uint64_t current = 0;
  if (!in.fixed64(current)) return in.error();
  if (h.count == 1) {
    values.push_back(static_cast<std::int64_t>(current));
    return finish(in, std::move(values));
  }
  std::uint8_t exponent = 0;
  std::uint64_t first_delta = 0;
  if (!in.byte(exponent) || !in.varint(first_delta)) return in.error();
  if (exponent > max_time_exponent) return decode_error{errc::malformed, "time exponent over 18"};
  std::vector<std::uint64_t> dods;
  const bool is_read = h.tag == static_cast<std::uint8_t>(scheme::timestamps_simple8b)
                           ? read_simple8b(in, h.count - 2, dods)
                           : read_buckets(in, h.count - 2, dods);
  if (!is_read) return in.error();

  // Wrapping arithmetic on bit patterns: whatever the input, no signed overflow.
  const auto scale = static_cast<std::uint64_t>(integer_powers_of_ten[exponent]);
  values.reserve(h.count);
  values.push_back(static_cast<std::int64_t>(current));
  auto delta = static_cast<std::uint64_t>(unzigzag(first_delta));
  current += delta * scale;
  values.push_back(static_cast<std::int64_t>(current));
  for (const std::uint64_t dod : dods) {
    delta += static_cast<std::uint64_t>(unzigzag(dod));
    current += delta * scale;
    values.push_back(static_cast<std::int64_t>(current));
  }
  return finish(in, std::move(values));
}

// ---- floats ---------------------------------------------------------------------------------

void encode_floats(std::span<const double> values, std::string& out) {
  if (values.empty()) {
    put_header(out, scheme::floats_xor, 0);
    return;
  }
  // Byte planes unless XOR saves a byte a value: zstd takes at least that from the planes of
  // noise (the sign and exponent byte, and runs in the high mantissa bytes).
  scheme chosen = scheme::floats_split;
  std::size_t best_size = values.size() * 8;
  std::string body;
  std::string xor_body;
  put_xor(values, xor_body);
  if (xor_body.size() < values.size() * 7) {
    chosen = scheme::floats_xor;
    best_size = xor_body.size();
    body = std::move(xor_body);
  }
  unsigned exponent = 0;
  std::vector<std::uint64_t> mantissas;
  if (find_decimal(values, exponent, mantissas)) {
    const integer_layout layout = choose_integers(mantissas, true);
    if (2 + layout.body.size() <= best_size) {
      chosen = scheme::floats_decimal;
      body.clear();
      body.push_back(static_cast<char>(exponent));
      body.push_back(static_cast<char>(layout.tag));
      body += layout.body;
    }
  }
  if (chosen != scheme::floats_split) {
    put_header(out, chosen, values.size());
    out += body;
    return;
  }
  const std::size_t count = values.size();
  std::string planes(count * 8, '\0');
  for (std::size_t i = 0; i < count; ++i) {
    const auto bits = std::bit_cast<std::uint64_t>(values[i]);
    for (std::size_t k = 0; k < 8; ++k)
      planes[k * count + i] = static_cast<char>((bits >> (8 * k)) & 0xff);
  }
  const std::string_view high = std::string_view(planes).substr(6 * count);
  std::string packed;
  if (compress_frame(high, packed) && packed.size() + 8 < high.size()) {
    put_header(out, scheme::floats_planes, count);
    put_varint(out, packed.size());
    out += packed;
    out.append(planes, 0, 6 * count);
    return;
  }
  put_header(out, scheme::floats_split, count);
  out += planes;
}

decoded<double> decode_floats(std::string_view column, const decode_limits& limits) {
  reader in(column);
  header h;
  if (!read_header(in, scheme::floats_decimal, scheme::floats_planes, limits, h)) return in.error();
  std::vector<double> values;
  if (h.count == 0) return finish(in, std::move(values));
  switch (static_cast<scheme>(h.tag)) {
    case scheme::floats_decimal: {
      std::uint8_t exponent = 0;
      std::uint8_t layout = 0;
      if (!in.byte(exponent) || !in.byte(layout)) return in.error();
      if (exponent > max_decimal_exponent)
        return decode_error{errc::malformed, "decimal exponent over 15"};
      std::vector<std::uint64_t> mantissas;
      if (!read_integers(in, layout, h.count, true, mantissas)) return in.error();
      values.reserve(mantissas.size());
      for (const std::uint64_t mantissa : mantissas)
        values.push_back(decimal_value(static_cast<std::int64_t>(mantissa), exponent));
      break;
    }
    case scheme::floats_xor:
      if (!read_xor(in, h.count, values)) return in.error();
      break;
    case scheme::floats_split: {
      if (in.remaining() / 8 < h.count)
        return decode_error{errc::bad_count, "more values than bytes"};
      const auto count = static_cast<std::size_t>(h.count);
      std::string_view planes;
      if (!in.take(8 * count, planes)) return in.error();
      std::vector<std::uint64_t> bits(count, 0);
      or_planes(planes, 0, bits);
      values.resize(count);
      for (std::size_t i = 0; i < count; ++i) values[i] = std::bit_cast<double>(bits[i]);
      break;
    }
    case scheme::floats_planes: {
      const auto count = static_cast<std::size_t>(h.count);
      std::uint64_t packed_size = 0;
      if (!in.varint(packed_size)) return in.error();
      if (in.remaining() < packed_size || (in.remaining() - packed_size) / 6 < count)
        return decode_error{errc::bad_count, "more values than bytes"};
      std::string high;
      std::string_view packed;
      if (!in.take(packed_size, packed)) return in.error();
      if (!decompress_frame(packed, 2 * count, high))
        return decode_error{errc::malformed, "high byte planes are not a zstd frame of their size"};
      std::string_view low;
      if (!in.take(6 * count, low)) return in.error();
      std::vector<std::uint64_t> bits(count, 0);
      or_planes(low, 0, bits);
      or_planes(high, 6, bits);
      values.resize(count);
      for (std::size_t i = 0; i < count; ++i) values[i] = std::bit_cast<double>(bits[i]);
      break;
    }
    default: {  // floats_raw: read_header admits nothing else
      if (in.remaining() / 8 < h.count)
        return decode_error{errc::bad_count, "more values than bytes"};
      values.reserve(h.count);
      for (std::uint64_t i = 0; i < h.count; ++i) {
        std::uint64_t bits = 0;
        if (!in.fixed64(bits)) return in.error();
        values.push_back(std::bit_cast<double>(bits));
      }
      break;
    }
  }
  return finish(in, std::move(values));
}

// ---- integers -------------------------------------------------------------------------------

void encode_integers(std::span<const std::int64_t> values, std::string& out) {
  if (values.empty()) {
    put_header(out, scheme::integers_delta, 0);
    return;
  }
  std::vector<std::uint64_t> patterns(values.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    patterns[i] = static_cast<std::uint64_t>(values[i]);
  const integer_layout layout = choose_integers(patterns, true);
  out.push_back(static_cast<char>(layout.tag));
  put_varint(out, values.size());
  out += layout.body;
}

decoded<std::int64_t> decode_integers(std::string_view column, const decode_limits& limits) {
  reader in(column);
  header h;
  if (!read_header(in, scheme::integers_direct, scheme::integers_raw, limits, h)) return in.error();
  std::vector<std::int64_t> values;
  if (h.count == 0) return finish(in, std::move(values));
  std::vector<std::uint64_t> patterns;
  if (!read_integers(in, h.tag, h.count, true, patterns)) return in.error();
  values.reserve(patterns.size());
  for (const std::uint64_t pattern : patterns) values.push_back(static_cast<std::int64_t>(pattern));
  return finish(in, std::move(values));
}

void encode_unsigned(std::span<const std::uint64_t> values, std::string& out) {
  if (values.empty()) {
    put_header(out, scheme::unsigned_delta, 0);
    return;
  }
  const integer_layout layout = choose_integers(values, false);
  out.push_back(static_cast<char>(layout.tag));
  put_varint(out, values.size());
  out += layout.body;
}

decoded<std::uint64_t> decode_unsigned(std::string_view column, const decode_limits& limits) {
  reader in(column);
  header h;
  if (!read_header(in, scheme::unsigned_direct, scheme::unsigned_raw, limits, h)) return in.error();
  std::vector<std::uint64_t> values;
  if (h.count == 0) return finish(in, std::move(values));
  if (!read_integers(in, h.tag, h.count, false, values)) return in.error();
  return finish(in, std::move(values));
}

// ---- booleans -------------------------------------------------------------------------------

void encode_booleans(std::span<const bool> values, std::string& out) {
  put_booleans(
      values.size(), [&](std::size_t i) { return values[i]; }, out);
}

void encode_booleans(const std::vector<bool>& values, std::string& out) {
  put_booleans(
      values.size(), [&](std::size_t i) { return static_cast<bool>(values[i]); }, out);
}

decoded<bool> decode_booleans(std::string_view column, const decode_limits& limits) {
  reader in(column);
  header h;
  if (!read_header(in, scheme::booleans_bits, scheme::booleans_bits, limits, h)) return in.error();
  const std::uint64_t size = h.count / 8 + (h.count % 8 != 0 ? 1 : 0);
  if (in.remaining() < size) return decode_error{errc::truncated, "booleans cut short"};
  if (in.remaining() > size) return decode_error{errc::trailing_bytes, "bytes after the column"};
  const std::string_view bytes = in.rest();
  std::vector<bool> values(h.count);
  for (std::uint64_t i = 0; i < h.count; ++i)
    values[i] = ((static_cast<std::uint8_t>(bytes[i / 8]) >> (i % 8)) & 1u) != 0;
  if (h.count % 8 != 0 && (static_cast<std::uint8_t>(bytes.back()) >> (h.count % 8)) != 0)
    return decode_error{errc::malformed, "nonzero padding bits"};
  return ok(std::move(values));
}

// ---- strings --------------------------------------------------------------------------------

void encode_strings(std::span<const std::string_view> values, std::string& out) {
  put_strings(values, out);
}

void encode_strings(std::span<const std::string> values, std::string& out) {
  put_strings(values, out);
}

decoded<std::string> decode_strings(std::string_view column, const decode_limits& limits) {
  reader in(column);
  header h;
  if (!read_header(in, scheme::strings_raw, scheme::strings_dictionary, limits, h))
    return in.error();
  std::vector<std::string> values;
  if (h.count == 0) return finish(in, std::move(values));
  std::uint64_t total = 0;  // string bytes, against limits.max_string_bytes

  if (h.tag == static_cast<std::uint8_t>(scheme::strings_raw)) {
    if (h.count > in.remaining()) return decode_error{errc::bad_count, "more strings than bytes"};
    values.reserve(h.count);
    for (std::uint64_t i = 0; i < h.count; ++i) {
      std::uint64_t size = 0;
      std::string_view text;
      if (!in.varint(size) || !in.take(size, text)) return in.error();
      total += text.size();
      if (total > limits.max_string_bytes)
        return decode_error{errc::too_large, "more string bytes than the limit"};
      values.emplace_back(text);
    }
    return finish(in, std::move(values));
  }

  std::uint64_t entry_count = 0;
  if (!in.varint(entry_count)) return in.error();
  if (entry_count == 0 || entry_count > h.count || entry_count > in.remaining())
    return decode_error{errc::bad_count, "dictionary size out of range"};
  std::vector<std::string_view> entries;
  entries.reserve(entry_count);
  for (std::uint64_t i = 0; i < entry_count; ++i) {
    std::uint64_t size = 0;
    std::string_view text;
    if (!in.varint(size) || !in.take(size, text)) return in.error();
    entries.push_back(text);
  }
  std::vector<std::uint64_t> indexes;
  if (!read_simple8b(in, h.count, indexes)) return in.error();
  for (const std::uint64_t index : indexes) {
    if (index >= entry_count) return decode_error{errc::malformed, "dictionary index out of range"};
    total += entries[index].size();
    if (total > limits.max_string_bytes)
      return decode_error{errc::too_large, "more string bytes than the limit"};
  }
  values.reserve(indexes.size());
  for (const std::uint64_t index : indexes) values.emplace_back(entries[index]);
  return finish(in, std::move(values));
}

std::optional<scheme> scheme_of(std::string_view column) {
  if (column.empty()) return std::nullopt;
  const auto tag = static_cast<std::uint8_t>(column[0]);
  for (const scheme candidate : all_schemes)
    if (static_cast<std::uint8_t>(candidate) == tag) return candidate;
  return std::nullopt;
}

}  // namespace nimbus::tsdb::codec
