#pragma once
// One file of a day partition of the time-series store: blocks of compressed columns, an index
// of them, a footer. Written once (flush, compaction) by `writer`, read many times by `reader`;
// no store logic here (which day, which generation wins: store.cpp). A writer belongs to one
// thread; a reader is immutable once open and safe from any thread (pread).
//
// Layout, integers little-endian:
//   header  "NTSP" | u16 version
//   blocks  zstd(u32 n | times column | u32 m | values column) | u32 crc32c of the zstd bytes
//   rollups zstd(rollup.hpp's encoding of one tier's buckets) | u32 crc32c      (version 2)
//   index   u32 entries | per block: u64 series id | u32 n, series key | u32 n, field |
//           u8 field type | i64 min time | i64 max time | u32 count | u64 offset | u32 length
//   rollup index (version 2) u32 entries | per rollup: u64 series id | u32 n, series key |
//           u32 n, field | u8 field type | i64 tier | i64 first bucket start |
//           i64 last bucket start | u32 buckets | u64 offset | u32 length
//   (version 3: each of the two indexes stored as zstd(index) | u32 crc32c, as a block)
//   footer  u64 index offset | u64 index length | u32 crc32c of the index |
//           (version 2) u64 rollup index offset | u64 its length | u32 its crc32c | "NTSP"
// Columns are codecs.hpp's; a block holds one field of one series, times ascending and unique,
// at most max_block_points of them. `offset`/`length` span the zstd bytes and their CRC. The
// writer adds the rollups of each float or integer column it is given, per tier when its buckets
// average rollup::min_points_per_bucket points. Version 1 files (no rollups) and 2 (tables
// uncompressed) are still read.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "tsdb/line_protocol.hpp"
#include "tsdb/rollup.hpp"

namespace nimbus::tsdb::partition {

inline constexpr std::string_view file_magic = "NTSP";
inline constexpr std::uint16_t format_version = 3;
inline constexpr std::size_t header_bytes = 6;
inline constexpr std::size_t footer_bytes = 44;     // versions 2 and 3
inline constexpr std::size_t footer_bytes_v1 = 24;  // version 1: no rollup index
inline constexpr std::size_t max_block_points = 1000;

// One entry of a file's index.
struct block_info {
  std::uint64_t series_id = 0;
  std::string series_key;
  std::string field;
  field_type type = field_type::floating;
  std::int64_t min_time = 0;
  std::int64_t max_time = 0;
  std::uint32_t count = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};

// One entry of a file's rollup index: one tier of one field of one series.
struct rollup_info {
  std::uint64_t series_id = 0;
  std::string series_key;
  std::string field;
  field_type type = field_type::floating;
  std::int64_t tier = 0;
  std::int64_t first_start = 0;  // of its first and last buckets
  std::int64_t last_start = 0;
  std::uint32_t buckets = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};

// A block's points: ascending unique times, values all of the block's type.
struct block {
  std::vector<std::int64_t> times;
  std::vector<field_value> values;
};

// Appends a block's bytes as stored (zstd of the two columns, then the CRC) to `out`; false, with
// `error` saying why, for a value of another type than `type`, sizes that differ, or a zstd
// failure. Pure.
bool encode_block(field_type type, std::span<const std::int64_t> times,
                  std::span<const field_value> values, std::string& out, std::string& error);
// The block back from its stored bytes, checked against what the index says of it (count,
// type, min and max time), or a reason it is damaged. Never throws, never trusts the bytes.
std::variant<block, std::string> decode_block(std::string_view stored, const block_info& info);

// Writes <path>.tmp, and on finish() syncs it, renames it to <path> (replacing a file there,
// which is how compaction swaps its output in) and syncs the directory. Destroyed unfinished,
// it removes the temporary file.
class writer {
 public:
  // The directory must exist (create_directories_synced).
  static std::unique_ptr<writer> create(const std::filesystem::path& path, std::error_code& error);
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // One field of one series: `times` ascending and unique, `values` as many, all of `type`;
  // split into blocks of at most max_block_points, with the rollups of `tiers` (a subset of
  // rollup::tiers, in its order) dense enough. Any order of calls works (the reader sorts its
  // index); an empty column adds nothing.
  std::error_code add(std::uint64_t series_id, std::string_view series_key, std::string_view field,
                      field_type type, std::span<const std::int64_t> times,
                      std::span<const field_value> values,
                      std::span<const std::int64_t> tiers = rollup::tiers);
  // One tier of one field of one series as buckets (ascending by start, all in one day), for a
  // file that keeps summaries its points no longer give (rollup retention). Once per column and
  // tier; not with add() of the same column.
  std::error_code add_buckets(std::uint64_t series_id, std::string_view series_key,
                              std::string_view field, field_type type, std::int64_t tier,
                              std::span<const rollup::bucket> buckets);
  std::error_code finish();

  std::uint64_t bytes_written() const { return position_; }
  std::size_t blocks() const { return index_.size(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  writer(std::filesystem::path path, std::filesystem::path temp_path, int fd);
  std::error_code flush_buffer();
  std::error_code add_rollups(std::uint64_t series_id, std::string_view series_key,
                              std::string_view field, field_type type,
                              std::span<const std::int64_t> times,
                              std::span<const field_value> values,
                              std::span<const std::int64_t> tiers);
  std::error_code write_buckets(std::uint64_t series_id, std::string_view series_key,
                                std::string_view field, field_type type, std::int64_t tier,
                                std::span<const rollup::bucket> buckets);

  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  int fd_ = -1;
  std::string buffer_;          // bytes not yet written, from position_ - buffer_.size()
  std::uint64_t position_ = 0;  // bytes of the file so far, buffered ones included
  std::vector<block_info> index_;
  std::vector<rollup_info> rollups_;
  std::set<std::pair<std::uint64_t, std::string>> rolled_columns_;  // (series, field) given
  std::set<std::pair<std::uint64_t, std::string>> split_columns_;   // given more than once
  bool is_finished_ = false;
  std::error_code error_;  // sticky: a failed write fails finish()
};

class reader {
 public:
  struct open_result {
    std::unique_ptr<reader> file;  // null on failure
    // The bytes are not a partition file (bad header, footer, index, truncated): the caller
    // sets it aside. False with no file: an I/O error (EMFILE...), worth a retry, not a rename.
    bool is_corrupt = false;
    std::string error;
  };
  static open_result open(const std::filesystem::path& path);
  ~reader();
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  // Sorted by (series id, field, min time).
  const std::vector<block_info>& blocks() const { return blocks_; }
  // The blocks of one field of one series, by min time.
  std::span<const block_info> find(std::uint64_t series_id, std::string_view field) const;
  // Reads (pread), checks the CRC and decodes one of this file's blocks.
  std::variant<block, std::string> read(const block_info& info) const;
  // Sorted by (series id, field, tier, first bucket).
  const std::vector<rollup_info>& rollups() const { return rollups_; }
  // The rollups of one tier of one field of one series (none: the tier was not kept, or the
  // column is not numeric).
  std::span<const rollup_info> find_rollups(std::uint64_t series_id, std::string_view field,
                                            std::int64_t tier) const;
  std::variant<std::vector<rollup::bucket>, std::string> read_rollup(const rollup_info& info) const;
  // Whether any column has rollups of `tier`.
  bool has_tier(std::int64_t tier) const;
  // True the first time a block is reported bad, so that a damaged block is logged once, not at
  // every query that meets it.
  bool is_first_failure(std::uint64_t offset) const;

  std::uint64_t size_bytes() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  reader(std::filesystem::path path, int fd, std::uint64_t size);

  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::vector<block_info> blocks_;
  std::vector<rollup_info> rollups_;
  std::vector<std::int64_t> tiers_;  // those rollups_ has
  mutable std::mutex failures_mutex_;
  mutable std::set<std::uint64_t> failures_;  // guarded by failures_mutex_
};

// Creates `dir` and its missing parents, syncing each parent once its new entry exists, so a
// partition file renamed into it survives a power loss with its path.
std::error_code create_directories_synced(const std::filesystem::path& dir);
// fsync of a directory, after a rename or unlink in it.
std::error_code sync_directory(const std::filesystem::path& dir);

}  // namespace nimbus::tsdb::partition
