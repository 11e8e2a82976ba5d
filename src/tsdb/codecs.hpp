#pragma once
// Column codecs of the time-series store (issue 13): one column of a block (timestamps, floats,
// integers, unsigned, booleans, strings or tag values) to bytes and back. Sans-I/O, standard
// library only (the block decoder fuzzer compiles codecs.cpp on its own), pure functions callable
// from any thread. Nothing here checksums or compresses: the block layer frames each column with
// a CRC32C and zstd-compresses the block, so a flipped bit that still decodes is its job to catch.
//
// Every column is: one scheme byte (the layout the encoder chose, `scheme` below), the value
// count as a LEB128 varint, then the layout's body; a column of 0 values ends after the count.
// Encoders try the layouts that can hold the values and keep the smallest. Decoders consume
// exactly the column's bytes (a prefix or trailing bytes are errors), never read past them, never
// throw or assert on input, and refuse a count the bytes cannot hold before allocating for it.
// The layouts, byte by byte, are described in codecs.cpp.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nimbus::tsdb::codec {

// The first byte of a column. Each column type has its own range, so a column handed to the
// wrong decoder is refused rather than misread.
enum class scheme : std::uint8_t {
  // Timestamps: first value raw, the deltas divided by their largest common power of ten, then
  // the zigzagged delta-of-deltas either in simple8b words or in Gorilla-style bit buckets.
  timestamps_simple8b = 0x11,
  timestamps_buckets = 0x12,
  // Floats: decimal mantissas with one power-of-ten exponent (`21.53` -> 2153 and 2) when every
  // value comes back bit-exact, else Gorilla XOR, else 8 bytes each in byte planes (raw: the
  // same bytes value by value, still read).
  floats_decimal = 0x21,
  floats_xor = 0x22,
  floats_raw = 0x23,
  // Floats whose bits XOR cannot shorten (noise): the 8 bytes of each value split into 8 planes
  // (every value's byte 0, then every value's byte 1...), so that the block's zstd finds the
  // sign and exponent bytes, nearly constant, in runs.
  floats_split = 0x24,
  // The same planes, the two high ones (sign, exponent, top mantissa bits) in a zstd frame of
  // their own ahead of the six low ones: within the block's one zstd frame they shared a Huffman
  // table with the near-random low bytes, which cost noise about 0.3 bytes a value.
  floats_planes = 0x25,
  // Signed integers (and decimal mantissas): zigzagged values in simple8b, the first value and
  // zigzagged deltas in simple8b, or 8 raw bytes each (values simple8b cannot hold).
  integers_direct = 0x31,
  integers_delta = 0x32,
  integers_raw = 0x33,
  // Unsigned integers: as signed, without zigzag on the values themselves.
  unsigned_direct = 0x41,
  unsigned_delta = 0x42,
  unsigned_raw = 0x43,
  // Booleans: one bit each.
  booleans_bits = 0x51,
  // Strings and tag values: length-prefixed, or a table of distinct values plus simple8b indexes.
  strings_raw = 0x61,
  strings_dictionary = 0x62,
};

// Why a column was refused.
enum class errc : std::uint8_t {
  truncated,       // the bytes end before the column does
  trailing_bytes,  // bytes left over after the column
  unknown_scheme,  // the first byte is no layout of this column type
  bad_count,       // more values than the bytes could possibly hold
  too_large,       // over the caller's decode_limits
  malformed,       // a field out of range: overlong varint, exponent, index, nonzero padding
};

struct decode_error {
  errc reason = errc::malformed;
  std::string_view what;  // static description for logs
};

// Caps on what one decode may allocate, beyond what the input's length already bounds (a simple8b
// word holds up to 240 values, and a dictionary entry may be repeated by every index).
struct decode_limits {
  std::size_t max_values = std::size_t{1} << 24;        // values in one column
  std::size_t max_string_bytes = std::size_t{1} << 28;  // string bytes decoded from one column
};

template <class Value>
using decoded = std::variant<std::vector<Value>, decode_error>;

// Largest decimal exponent floats_decimal tries (values with up to 15 decimals).
inline constexpr unsigned max_decimal_exponent = 15;
// Largest power of ten timestamps' deltas are divided by (10^18 < 2^63).
inline constexpr unsigned max_time_exponent = 18;

// Timestamps (ns or any unit): any order works, sorted ones compress best.
void encode_timestamps(std::span<const std::int64_t> values, std::string& out);
decoded<std::int64_t> decode_timestamps(std::string_view column, const decode_limits& limits = {});

// Floats come back bit for bit: NaN payloads, infinities, -0.0 and denormals included.
void encode_floats(std::span<const double> values, std::string& out);
decoded<double> decode_floats(std::string_view column, const decode_limits& limits = {});

void encode_integers(std::span<const std::int64_t> values, std::string& out);
decoded<std::int64_t> decode_integers(std::string_view column, const decode_limits& limits = {});

void encode_unsigned(std::span<const std::uint64_t> values, std::string& out);
decoded<std::uint64_t> decode_unsigned(std::string_view column, const decode_limits& limits = {});

void encode_booleans(std::span<const bool> values, std::string& out);
void encode_booleans(const std::vector<bool>& values, std::string& out);
decoded<bool> decode_booleans(std::string_view column, const decode_limits& limits = {});

// Strings are bytes: any content, NULs included.
void encode_strings(std::span<const std::string_view> values, std::string& out);
void encode_strings(std::span<const std::string> values, std::string& out);
decoded<std::string> decode_strings(std::string_view column, const decode_limits& limits = {});

// The scheme byte of an encoded column, if it names one (for statistics and tests).
std::optional<scheme> scheme_of(std::string_view column);

}  // namespace nimbus::tsdb::codec
