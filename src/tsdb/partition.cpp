#include "tsdb/partition.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <tuple>
#include <utility>

#include "seglog/crc32c.hpp"
#include "tsdb/codecs.hpp"

namespace nimbus::tsdb::partition {
namespace {

constexpr int compression_level = 3;
constexpr std::size_t write_chunk_bytes = std::size_t{1} << 20;
// A block holds at most 1000 values; strings of up to 64 KiB each (the line protocol's limit)
// stay far below this, which bounds what a damaged frame header can make us allocate.
constexpr std::uint64_t max_raw_block_bytes = std::uint64_t{1} << 28;
constexpr codec::decode_limits block_limits{max_block_points, std::size_t{1} << 28};
// An index entry without its two strings.
constexpr std::size_t entry_fixed_bytes = 8 + 4 + 4 + 1 + 8 + 8 + 4 + 8 + 4;
constexpr std::size_t rollup_entry_fixed_bytes = 8 + 4 + 4 + 1 + 8 + 8 + 8 + 4 + 8 + 4;

template <class T>
void put(std::string& out, T value) {
  const auto bits = static_cast<std::uint64_t>(value);
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

void put_bytes(std::string& out, std::string_view bytes) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(bytes.size()));
  out.append(bytes);
}

// Reads little-endian fields from bytes it never overruns: past the end it turns sticky-bad and
// yields zeros, so a parser checks `ok` once at the end of a record.
struct byte_reader {
  std::string_view in;
  bool ok = true;

  template <class T>
  T take() {
    if (!ok || in.size() < sizeof(T)) {
      ok = false;
      return T{};
    }
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(sizeof(T));
    return static_cast<T>(bits);
  }

  std::string_view take_bytes(std::size_t size) {
    if (!ok || in.size() < size) {
      ok = false;
      return {};
    }
    const auto bytes = in.substr(0, size);
    in.remove_prefix(size);
    return bytes;
  }

  std::string_view take_sized() { return take_bytes(take<std::uint32_t>()); }
};

std::error_code last_error() {
  return {errno, std::generic_category()};
}

std::error_code write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    data += written;
    size -= static_cast<std::size_t>(written);
  }
  return {};
}

// Fills `out` from `offset`; a file shorter than that is std::errc::result_out_of_range.
std::error_code read_at(int fd, std::uint64_t offset, std::size_t size, std::string& out) {
  out.resize(size);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t got =
        ::pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (got == 0) return std::make_error_code(std::errc::result_out_of_range);
    done += static_cast<std::size_t>(got);
  }
  return {};
}

std::error_code sync_fd(int fd) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return last_error();
  }
  return {};
}

template <class T>
bool gather(std::span<const field_value> values, std::vector<T>& out) {
  out.reserve(values.size());
  for (const auto& value : values) {
    const auto* typed = std::get_if<T>(&value);
    if (typed == nullptr) return false;
    out.push_back(*typed);
  }
  return true;
}

bool encode_values(field_type type, std::span<const field_value> values, std::string& out) {
  switch (type) {
    case field_type::floating: {
      std::vector<double> typed;
      if (!gather(values, typed)) return false;
      codec::encode_floats(typed, out);
      return true;
    }
    case field_type::integer: {
      std::vector<std::int64_t> typed;
      if (!gather(values, typed)) return false;
      codec::encode_integers(typed, out);
      return true;
    }
    case field_type::unsigned_integer: {
      std::vector<std::uint64_t> typed;
      if (!gather(values, typed)) return false;
      codec::encode_unsigned(typed, out);
      return true;
    }
    case field_type::boolean: {
      std::vector<bool> typed;
      typed.reserve(values.size());
      for (const auto& value : values) {
        const auto* flag = std::get_if<bool>(&value);
        if (flag == nullptr) return false;
        typed.push_back(*flag);
      }
      codec::encode_booleans(typed, out);
      return true;
    }
    case field_type::string: {
      std::vector<std::string_view> typed;
      typed.reserve(values.size());
      for (const auto& value : values) {
        const auto* text = std::get_if<std::string>(&value);
        if (text == nullptr) return false;
        typed.emplace_back(*text);
      }
      codec::encode_strings(std::span<const std::string_view>(typed), out);
      return true;
    }
  }
  return false;
}

template <class T>
bool take_values(codec::decoded<T>&& decoded, std::vector<field_value>& out, std::string& error) {
  if (auto* failure = std::get_if<codec::decode_error>(&decoded)) {
    error = "values column: ";
    error += failure->what;
    return false;
  }
  auto& values = std::get<std::vector<T>>(decoded);
  out.reserve(values.size());
  // auto&&: std::vector<bool> hands out proxies.
  for (auto&& value : values) out.emplace_back(std::in_place_type<T>, std::move(value));
  return true;
}

bool decode_values(field_type type, std::string_view column, std::vector<field_value>& out,
                   std::string& error) {
  switch (type) {
    case field_type::floating:
      return take_values(codec::decode_floats(column, block_limits), out, error);
    case field_type::integer:
      return take_values(codec::decode_integers(column, block_limits), out, error);
    case field_type::unsigned_integer:
      return take_values(codec::decode_unsigned(column, block_limits), out, error);
    case field_type::boolean:
      return take_values(codec::decode_booleans(column, block_limits), out, error);
    case field_type::string:
      return take_values(codec::decode_strings(column, block_limits), out, error);
  }
  error = "unknown field type";
  return false;
}

bool is_known_type(std::uint8_t type) {
  return type <= static_cast<std::uint8_t>(field_type::string);
}

auto order_key(const block_info& b) {
  return std::tie(b.series_id, b.field, b.min_time);
}

auto order_key(const rollup_info& r) {
  return std::tie(r.series_id, r.field, r.tier, r.first_start);
}

// zstd of `raw` then its CRC32C, appended to `out`.
bool compress_framed(std::string_view raw, std::string& out, std::string& error) {
  const std::size_t start = out.size();
  out.resize(start + ZSTD_compressBound(raw.size()));
  thread_local const std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> context(ZSTD_createCCtx(),
                                                                                  &ZSTD_freeCCtx);
  const std::size_t compressed =
      ZSTD_compressCCtx(context.get(), out.data() + start, out.size() - start, raw.data(),
                        raw.size(), compression_level);
  if (ZSTD_isError(compressed) != 0U) {
    out.resize(start);
    error = "zstd: ";
    error += ZSTD_getErrorName(compressed);
    return false;
  }
  out.resize(start + compressed);
  put<std::uint32_t>(out, seglog::crc32c(std::string_view(out).substr(start, compressed)));
  return true;
}

// The bytes compress_framed framed, checked; false with `error` saying why.
bool decompress_framed(std::string_view stored, std::string& raw, std::string& error) {
  if (stored.size() < 5) {
    error = "block too short";
    return false;
  }
  const std::string_view compressed = stored.substr(0, stored.size() - 4);
  byte_reader crc_field{stored.substr(stored.size() - 4)};
  if (crc_field.take<std::uint32_t>() != seglog::crc32c(compressed)) {
    error = "block checksum mismatch";
    return false;
  }
  const unsigned long long raw_size =
      ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (raw_size == ZSTD_CONTENTSIZE_ERROR || raw_size == ZSTD_CONTENTSIZE_UNKNOWN) {
    error = "block is not a zstd frame of known size";
    return false;
  }
  if (raw_size > max_raw_block_bytes) {
    error = "block too large";
    return false;
  }
  raw.assign(static_cast<std::size_t>(raw_size), '\0');
  // One decompression context per thread: ZSTD_decompress would make (and free) one per block,
  // which costs more than decoding a small block.
  thread_local const std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(),
                                                                                  &ZSTD_freeDCtx);
  const std::size_t got = ZSTD_decompressDCtx(context.get(), raw.data(), raw.size(),
                                              compressed.data(), compressed.size());
  if (ZSTD_isError(got) != 0U) {
    error = std::string("zstd: ") + ZSTD_getErrorName(got);
    return false;
  }
  if (got != raw.size()) {
    error = "block shorter than its frame says";
    return false;
  }
  return true;
}

}  // namespace

bool encode_block(field_type type, std::span<const std::int64_t> times,
                  std::span<const field_value> values, std::string& out, std::string& error) {
  if (times.size() != values.size() || times.empty()) {
    error = "a block needs as many values as times, one at least";
    return false;
  }
  std::string raw;
  std::string column;
  codec::encode_timestamps(times, column);
  put_bytes(raw, column);
  column.clear();
  if (!encode_values(type, values, column)) {
    error = "a value is not of the block's type";
    return false;
  }
  put_bytes(raw, column);

  return compress_framed(raw, out, error);
}

std::variant<block, std::string> decode_block(std::string_view stored, const block_info& info) {
  std::string raw;
  std::string frame_error;
  if (!decompress_framed(stored, raw, frame_error)) return frame_error;

  byte_reader in{raw};
  const std::string_view times_column = in.take_sized();
  const std::string_view values_column = in.take_sized();
  if (!in.ok || !in.in.empty()) return std::string("block columns malformed");

  block out;
  auto times = codec::decode_timestamps(times_column, block_limits);
  if (auto* failure = std::get_if<codec::decode_error>(&times))
    return std::string("times column: ") + std::string(failure->what);
  out.times = std::move(std::get<std::vector<std::int64_t>>(times));
  std::string error;
  if (!decode_values(info.type, values_column, out.values, error)) return error;

  if (out.times.size() != info.count || out.values.size() != info.count)
    return std::string("block count differs from its index entry");
  for (std::size_t i = 1; i < out.times.size(); ++i)
    if (out.times[i] <= out.times[i - 1]) return std::string("block times not ascending");
  if (out.times.front() != info.min_time || out.times.back() != info.max_time)
    return std::string("block times differ from its index entry");
  return out;
}

// ---- writer

writer::writer(std::filesystem::path path, std::filesystem::path temp_path, int fd)
    : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}

std::unique_ptr<writer> writer::create(const std::filesystem::path& path, std::error_code& error) {
  auto temp_path = path;
  temp_path += ".tmp";
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = last_error();
    return nullptr;
  }
  std::unique_ptr<writer> w(new writer(path, std::move(temp_path), fd));
  w->buffer_.append(file_magic);
  put<std::uint16_t>(w->buffer_, format_version);
  w->position_ = w->buffer_.size();
  error = {};
  return w;
}

writer::~writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!is_finished_) {
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
  }
}

std::error_code writer::flush_buffer() {
  if (buffer_.empty() || error_) return error_;
  error_ = write_all(fd_, buffer_.data(), buffer_.size());
  buffer_.clear();
  return error_;
}

std::error_code writer::add(std::uint64_t series_id, std::string_view series_key,
                            std::string_view field, field_type type,
                            std::span<const std::int64_t> times,
                            std::span<const field_value> values,
                            std::span<const std::int64_t> tiers) {
  if (error_) return error_;
  if (times.size() != values.size() || is_finished_)
    return std::make_error_code(std::errc::invalid_argument);
  for (std::size_t start = 0; start < times.size(); start += max_block_points) {
    const std::size_t count = std::min(max_block_points, times.size() - start);
    const auto block_times = times.subspan(start, count);
    const std::size_t before = buffer_.size();
    std::string why;
    if (!encode_block(type, block_times, values.subspan(start, count), buffer_, why)) {
      buffer_.resize(before);
      return std::make_error_code(std::errc::invalid_argument);
    }
    const std::size_t length = buffer_.size() - before;
    block_info info;
    info.series_id = series_id;
    info.series_key = std::string(series_key);
    info.field = std::string(field);
    info.type = type;
    info.min_time = block_times.front();
    info.max_time = block_times.back();
    info.count = static_cast<std::uint32_t>(count);
    info.offset = position_;
    info.length = static_cast<std::uint32_t>(length);
    index_.push_back(std::move(info));
    position_ += length;
    if (buffer_.size() >= write_chunk_bytes) {
      if (auto error = flush_buffer()) return error;
    }
  }
  return add_rollups(series_id, series_key, field, type, times, values, tiers);
}

std::error_code writer::add_buckets(std::uint64_t series_id, std::string_view series_key,
                                    std::string_view field, field_type type, std::int64_t tier,
                                    std::span<const rollup::bucket> buckets) {
  if (error_) return error_;
  if (is_finished_ || !rollup::has_rollups(type) ||
      std::find(std::begin(rollup::tiers), std::end(rollup::tiers), tier) ==
          std::end(rollup::tiers))
    return std::make_error_code(std::errc::invalid_argument);
  if (buckets.empty()) return {};
  return write_buckets(series_id, series_key, field, type, tier, buckets);
}

std::error_code writer::write_buckets(std::uint64_t series_id, std::string_view series_key,
                                      std::string_view field, field_type type, std::int64_t tier,
                                      std::span<const rollup::bucket> buckets) {
  std::string raw;
  rollup::encode(type, buckets, raw);
  const std::size_t before = buffer_.size();
  std::string why;
  if (!compress_framed(raw, buffer_, why)) {
    buffer_.resize(before);
    return std::make_error_code(std::errc::invalid_argument);
  }
  rollup_info info;
  info.series_id = series_id;
  info.series_key = std::string(series_key);
  info.field = std::string(field);
  info.type = type;
  info.tier = tier;
  info.first_start = buckets.front().start;
  info.last_start = buckets.back().start;
  info.buckets = static_cast<std::uint32_t>(buckets.size());
  info.offset = position_;
  info.length = static_cast<std::uint32_t>(buffer_.size() - before);
  position_ += info.length;
  rollups_.push_back(std::move(info));
  if (buffer_.size() >= write_chunk_bytes) return flush_buffer();
  return {};
}

std::error_code writer::add_rollups(std::uint64_t series_id, std::string_view series_key,
                                    std::string_view field, field_type type,
                                    std::span<const std::int64_t> times,
                                    std::span<const field_value> values,
                                    std::span<const std::int64_t> tiers) {
  if (!rollup::has_rollups(type) || times.empty()) return {};
  // A rollup stands for every point of its column in the file: a column given twice gets none
  // (readers then read its points).
  auto column = std::pair(series_id, std::string(field));
  if (split_columns_.count(column)) return {};
  if (!rolled_columns_.insert(column).second) {
    std::erase_if(rollups_, [&](const rollup_info& r) {
      return r.series_id == series_id && r.field == field;
    });
    split_columns_.insert(std::move(column));
    return {};
  }
  for (const std::int64_t tier : tiers) {
    const auto buckets = rollup::compute(type, times, values, tier);
    if (buckets.empty() || times.size() < buckets.size() * rollup::min_points_per_bucket) continue;
    if (auto error = write_buckets(series_id, series_key, field, type, tier, buckets)) return error;
  }
  return {};
}

std::error_code writer::finish() {
  if (is_finished_) return std::make_error_code(std::errc::invalid_argument);
  std::string index;
  put<std::uint32_t>(index, static_cast<std::uint32_t>(index_.size()));
  for (const auto& info : index_) {
    put<std::uint64_t>(index, info.series_id);
    put_bytes(index, info.series_key);
    put_bytes(index, info.field);
    put<std::uint8_t>(index, static_cast<std::uint8_t>(info.type));
    put<std::int64_t>(index, info.min_time);
    put<std::int64_t>(index, info.max_time);
    put<std::uint32_t>(index, info.count);
    put<std::uint64_t>(index, info.offset);
    put<std::uint32_t>(index, info.length);
  }
  std::string rollups;
  put<std::uint32_t>(rollups, static_cast<std::uint32_t>(rollups_.size()));
  for (const auto& info : rollups_) {
    put<std::uint64_t>(rollups, info.series_id);
    put_bytes(rollups, info.series_key);
    put_bytes(rollups, info.field);
    put<std::uint8_t>(rollups, static_cast<std::uint8_t>(info.type));
    put<std::int64_t>(rollups, info.tier);
    put<std::int64_t>(rollups, info.first_start);
    put<std::int64_t>(rollups, info.last_start);
    put<std::uint32_t>(rollups, info.buckets);
    put<std::uint64_t>(rollups, info.offset);
    put<std::uint32_t>(rollups, info.length);
  }
  // Version 3: both tables as zstd frames (and their CRC). Uncompressed they were 0.27 bytes a
  // value of a day of minute readings: a series key and field name per block and per rollup.
  std::string error_text;
  std::string packed_index;
  std::string packed_rollups;
  if (!compress_framed(index, packed_index, error_text) ||
      !compress_framed(rollups, packed_rollups, error_text))
    return std::make_error_code(std::errc::not_enough_memory);
  index = std::move(packed_index);
  rollups = std::move(packed_rollups);
  const std::uint64_t index_offset = position_;
  const std::uint64_t rollup_index_offset = index_offset + index.size();
  buffer_.append(index);
  buffer_.append(rollups);
  put<std::uint64_t>(buffer_, index_offset);
  put<std::uint64_t>(buffer_, index.size());
  put<std::uint32_t>(buffer_, seglog::crc32c(index));
  put<std::uint64_t>(buffer_, rollup_index_offset);
  put<std::uint64_t>(buffer_, rollups.size());
  put<std::uint32_t>(buffer_, seglog::crc32c(rollups));
  buffer_.append(file_magic);
  position_ += index.size() + rollups.size() + footer_bytes;
  if (auto error = flush_buffer()) return error;
  if (auto error = sync_fd(fd_)) return error;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return last_error();
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) return last_error();
  is_finished_ = true;
  return sync_directory(path_.parent_path());
}

// ---- reader

reader::reader(std::filesystem::path path, int fd, std::uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size) {}

reader::~reader() {
  if (fd_ >= 0) ::close(fd_);
}

reader::open_result reader::open(const std::filesystem::path& path) {
  open_result result;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    result.error = last_error().message();
    return result;
  }
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    result.error = last_error().message();
    ::close(fd);
    return result;
  }
  std::unique_ptr<reader> file(new reader(path, fd, static_cast<std::uint64_t>(status.st_size)));
  const auto corrupt = [&result](std::string why) {
    result.is_corrupt = true;
    result.error = std::move(why);
    return std::move(result);
  };
  const std::uint64_t size = file->size_;
  if (size < header_bytes + footer_bytes_v1) return corrupt("file too short");

  std::string bytes;
  if (auto error = read_at(fd, 0, header_bytes, bytes)) {
    if (error == std::errc::result_out_of_range) return corrupt("file too short");
    result.error = error.message();
    return result;
  }
  byte_reader header{bytes};
  if (header.take_bytes(file_magic.size()) != file_magic) return corrupt("bad magic");
  const auto version = header.take<std::uint16_t>();
  if (version < 1 || version > format_version) return corrupt("unknown format version");
  const bool is_packed = version >= 3;  // the tables are zstd frames
  const std::size_t footer_size = version == 1 ? footer_bytes_v1 : footer_bytes;
  if (size < header_bytes + footer_size) return corrupt("file too short");

  if (auto error = read_at(fd, size - footer_size, footer_size, bytes)) {
    if (error == std::errc::result_out_of_range) return corrupt("file too short");
    result.error = error.message();
    return result;
  }
  byte_reader footer{bytes};
  const auto index_offset = footer.take<std::uint64_t>();
  const auto index_length = footer.take<std::uint64_t>();
  const auto index_crc = footer.take<std::uint32_t>();
  const std::uint64_t rollup_offset = version == 1 ? 0 : footer.take<std::uint64_t>();
  const std::uint64_t rollup_length = version == 1 ? 0 : footer.take<std::uint64_t>();
  const std::uint32_t rollup_crc = version == 1 ? 0 : footer.take<std::uint32_t>();
  if (footer.take_bytes(file_magic.size()) != file_magic) return corrupt("bad footer magic");
  const std::uint64_t tables_end =
      version == 1 ? index_offset + index_length : rollup_offset + rollup_length;
  if (index_offset < header_bytes || index_offset > size || index_length > size - index_offset ||
      (version != 1 &&
       (rollup_offset != index_offset + index_length || rollup_length > size - rollup_offset)) ||
      size - tables_end != footer_size)
    return corrupt("footer out of bounds");

  if (auto error = read_at(fd, index_offset, static_cast<std::size_t>(index_length), bytes)) {
    if (error == std::errc::result_out_of_range) return corrupt("index truncated");
    result.error = error.message();
    return result;
  }
  if (seglog::crc32c(bytes) != index_crc) return corrupt("index checksum mismatch");
  std::string unpacked;
  std::string unpack_error;
  if (is_packed) {
    if (!decompress_framed(bytes, unpacked, unpack_error)) return corrupt("index: " + unpack_error);
    bytes.swap(unpacked);
  }

  byte_reader index{bytes};
  const auto entries = index.take<std::uint32_t>();
  if (!index.ok || entries > index.in.size() / entry_fixed_bytes)
    return corrupt("index entry count out of bounds");
  file->blocks_.reserve(entries);
  for (std::uint32_t i = 0; i < entries; ++i) {
    block_info info;
    info.series_id = index.take<std::uint64_t>();
    info.series_key = std::string(index.take_sized());
    info.field = std::string(index.take_sized());
    const auto type = index.take<std::uint8_t>();
    info.type = static_cast<field_type>(type);
    info.min_time = index.take<std::int64_t>();
    info.max_time = index.take<std::int64_t>();
    info.count = index.take<std::uint32_t>();
    info.offset = index.take<std::uint64_t>();
    info.length = index.take<std::uint32_t>();
    if (!index.ok) return corrupt("index truncated");
    if (!is_known_type(type) || info.count == 0 || info.count > max_block_points ||
        info.min_time > info.max_time || info.length < 5 || info.offset < header_bytes ||
        info.offset > index_offset || info.length > index_offset - info.offset)
      return corrupt("index entry out of bounds");
    file->blocks_.push_back(std::move(info));
  }
  if (!index.in.empty()) return corrupt("bytes after the index");
  std::sort(file->blocks_.begin(), file->blocks_.end(),
            [](const block_info& a, const block_info& b) { return order_key(a) < order_key(b); });

  if (version != 1) {
    if (auto error = read_at(fd, rollup_offset, static_cast<std::size_t>(rollup_length), bytes)) {
      if (error == std::errc::result_out_of_range) return corrupt("rollup index truncated");
      result.error = error.message();
      return result;
    }
    if (seglog::crc32c(bytes) != rollup_crc) return corrupt("rollup index checksum mismatch");
    if (is_packed) {
      if (!decompress_framed(bytes, unpacked, unpack_error))
        return corrupt("rollup index: " + unpack_error);
      bytes.swap(unpacked);
    }
    byte_reader rollups{bytes};
    const auto count = rollups.take<std::uint32_t>();
    if (!rollups.ok || count > rollups.in.size() / rollup_entry_fixed_bytes)
      return corrupt("rollup index entry count out of bounds");
    file->rollups_.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
      rollup_info info;
      info.series_id = rollups.take<std::uint64_t>();
      info.series_key = std::string(rollups.take_sized());
      info.field = std::string(rollups.take_sized());
      const auto type = rollups.take<std::uint8_t>();
      info.type = static_cast<field_type>(type);
      info.tier = rollups.take<std::int64_t>();
      info.first_start = rollups.take<std::int64_t>();
      info.last_start = rollups.take<std::int64_t>();
      info.buckets = rollups.take<std::uint32_t>();
      info.offset = rollups.take<std::uint64_t>();
      info.length = rollups.take<std::uint32_t>();
      if (!rollups.ok) return corrupt("rollup index truncated");
      const bool is_tier = std::find(std::begin(rollup::tiers), std::end(rollup::tiers),
                                     info.tier) != std::end(rollup::tiers);
      if (!is_known_type(type) || !rollup::has_rollups(info.type) || !is_tier ||
          info.buckets == 0 ||
          info.buckets > static_cast<std::uint64_t>(rollup::day_ns / info.tier) ||
          info.first_start > info.last_start || info.length < 5 || info.offset < header_bytes ||
          info.offset > index_offset || info.length > index_offset - info.offset)
        return corrupt("rollup index entry out of bounds");
      if (std::find(file->tiers_.begin(), file->tiers_.end(), info.tier) == file->tiers_.end())
        file->tiers_.push_back(info.tier);
      file->rollups_.push_back(std::move(info));
    }
    if (!rollups.in.empty()) return corrupt("bytes after the rollup index");
    std::sort(
        file->rollups_.begin(), file->rollups_.end(),
        [](const rollup_info& a, const rollup_info& b) { return order_key(a) < order_key(b); });
  }
  result.file = std::move(file);
  return result;
}

std::span<const block_info> reader::find(std::uint64_t series_id, std::string_view field) const {
  const auto first = std::lower_bound(
      blocks_.begin(), blocks_.end(), std::pair(series_id, field),
      [](const block_info& b, const std::pair<std::uint64_t, std::string_view>& key) {
        return std::pair<std::uint64_t, std::string_view>(b.series_id, b.field) < key;
      });
  auto last = first;
  while (last != blocks_.end() && last->series_id == series_id && last->field == field) ++last;
  return {first, last};
}

std::span<const rollup_info> reader::find_rollups(std::uint64_t series_id, std::string_view field,
                                                  std::int64_t tier) const {
  using key = std::tuple<std::uint64_t, std::string_view, std::int64_t>;
  const auto first = std::lower_bound(
      rollups_.begin(), rollups_.end(), key(series_id, field, tier),
      [](const rollup_info& r, const key& k) { return key(r.series_id, r.field, r.tier) < k; });
  auto last = first;
  while (last != rollups_.end() && last->series_id == series_id && last->field == field &&
         last->tier == tier)
    ++last;
  return {first, last};
}

std::variant<std::vector<rollup::bucket>, std::string> reader::read_rollup(
    const rollup_info& info) const {
  std::string bytes;
  if (auto error = read_at(fd_, info.offset, info.length, bytes))
    return std::string("read: ") + error.message();
  std::string raw;
  std::string failure;
  if (!decompress_framed(bytes, raw, failure)) return failure;
  auto decoded = rollup::decode(info.type, raw, info.tier);
  if (auto* buckets = std::get_if<std::vector<rollup::bucket>>(&decoded)) {
    if (buckets->size() != info.buckets || buckets->front().start != info.first_start ||
        buckets->back().start != info.last_start)
      return std::string("rollup differs from its index entry");
  }
  return decoded;
}

bool reader::has_tier(std::int64_t tier) const {
  return std::find(tiers_.begin(), tiers_.end(), tier) != tiers_.end();
}

std::variant<block, std::string> reader::read(const block_info& info) const {
  std::string bytes;
  if (auto error = read_at(fd_, info.offset, info.length, bytes))
    return std::string("read: ") + error.message();
  return decode_block(bytes, info);
}

bool reader::is_first_failure(std::uint64_t offset) const {
  std::lock_guard lock(failures_mutex_);
  return failures_.insert(offset).second;
}

// ---- directories

std::error_code sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return last_error();
  auto error = sync_fd(fd);
  ::close(fd);
  return error;
}

std::error_code create_directories_synced(const std::filesystem::path& dir) {
  std::error_code error;
  if (std::filesystem::is_directory(dir, error)) return {};
  const auto parent = dir.parent_path();
  if (!parent.empty() && parent != dir) {
    if (auto parent_error = create_directories_synced(parent)) return parent_error;
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return last_error();
  return parent.empty() ? std::error_code{} : sync_directory(parent);
}

}  // namespace nimbus::tsdb::partition
