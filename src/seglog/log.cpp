#include "seglog/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string_view>

#include "core/assert.hpp"
#include "seglog/crc32c.hpp"
#include "seglog/diagnostics.hpp"

namespace nimbus::seglog {

static_assert(std::endian::native == std::endian::little, "frames are stored in host order");

namespace {

constexpr std::size_t frame_header_bytes = 24;     // length, crc, offset, time_ms
constexpr std::size_t flush_bytes = 1 << 20;       // a round writes in pieces of about this
constexpr std::size_t scan_chunk_bytes = 1 << 20;  // open() reads segments in pieces of this
constexpr std::uint32_t record_bytes_limit = 1U << 30;
// Offsets past this in a file name or a frame are damage, not data (and can never overflow).
constexpr std::uint64_t offset_limit = std::uint64_t{1} << 62;

class category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "seglog"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::record_too_large:
        return "record larger than the log's max_record_bytes";
      case errc::corrupt_record:
        return "a committed record failed its checksum";
    }
    return "unknown seglog error";
  }
};

template <class Integer>
void store(char* at, Integer value) {
  std::memcpy(at, &value, sizeof value);
}

template <class Integer>
Integer load(const char* at) {
  Integer value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

std::error_code last_error() {
  return {errno, std::system_category()};
}

[[noreturn]] void throw_errno(int code, const std::string& what) {
  throw std::system_error(code, std::system_category(), what);
}

std::string segment_name(std::uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.seg", static_cast<unsigned long long>(base));
  return name;
}

bool parse_segment_name(const std::string& name, std::uint64_t& base) {
  if (name.size() != 24 || name.compare(20, 4, ".seg") != 0) return false;
  for (std::size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  const auto parsed = std::from_chars(name.data(), name.data() + 20, base);
  return parsed.ec == std::errc() && parsed.ptr == name.data() + 20;
}

std::error_code write_all(int fd, const char* data, std::size_t size, std::uint64_t position) {
  while (size > 0) {
    const ssize_t wrote = ::pwrite(fd, data, size, static_cast<off_t>(position));
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (wrote == 0) return std::make_error_code(std::errc::no_space_on_device);
    data += wrote;
    size -= static_cast<std::size_t>(wrote);
    position += static_cast<std::uint64_t>(wrote);
  }
  return {};
}

std::error_code sync_directory(int fd) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return last_error();
  }
  return {};
}

void encode_frame(std::string& out, std::uint64_t offset, std::int64_t time_ms,
                  std::string_view payload) {
  char header[frame_header_bytes];
  store(header, static_cast<std::uint32_t>(payload.size() + frame_header_bytes - 4));
  store(header + 8, offset);
  store(header + 16, time_ms);
  std::uint32_t crc = crc32c(header + 8, frame_header_bytes - 8);
  crc = crc32c(payload.data(), payload.size(), crc);
  store(header + 4, crc);
  out.append(header, frame_header_bytes);
  out.append(payload);
}

struct frame {
  std::uint64_t position = 0;  // where it starts in the file
  std::uint64_t size = 0;      // header included
  std::uint64_t offset = 0;
  std::int64_t time_ms = 0;
  std::string_view payload;  // valid until the reader's next call
};

enum class frame_status { ok, end, bad, io_error };

// Reads the frames of [position, end) of a segment file through a buffer of pread()s, checking
// each one's length and CRC. Offsets are the caller's to check.
class frame_reader {
 public:
  frame_reader(int fd, std::uint64_t position, std::uint64_t end, std::size_t chunk_bytes)
      : fd_(fd),
        position_(position),
        end_(end),
        chunk_bytes_(static_cast<std::size_t>(
            std::min<std::uint64_t>(chunk_bytes, end > position ? end - position : 0))) {}

  frame_status next(frame& f) {
    if (position_ >= end_) return frame_status::end;
    const std::uint64_t left = end_ - position_;
    if (left < frame_header_bytes) return bad("short frame");
    if (!fill(frame_header_bytes)) return failed();
    const auto length = load<std::uint32_t>(data());
    if (length < frame_header_bytes - 4 || length > left - 4) return bad("bad length");
    const std::size_t frame_bytes = std::size_t{length} + 4;
    if (!fill(frame_bytes)) return failed();
    const char* bytes = data();
    if (crc32c(bytes + 8, frame_bytes - 8) != load<std::uint32_t>(bytes + 4))
      return bad("crc mismatch");
    f.position = position_;
    f.size = frame_bytes;
    f.offset = load<std::uint64_t>(bytes + 8);
    f.time_ms = load<std::int64_t>(bytes + 16);
    f.payload = std::string_view(bytes + frame_header_bytes, frame_bytes - frame_header_bytes);
    begin_ += frame_bytes;
    valid_ -= frame_bytes;
    position_ += frame_bytes;
    return frame_status::ok;
  }

  // Where the next frame starts (after a bad one: where that one starts).
  std::uint64_t position() const { return position_; }
  const char* problem() const { return problem_; }
  std::error_code error() const { return error_; }

 private:
  const char* data() const { return buffer_.data() + begin_; }

  frame_status bad(const char* problem) {
    problem_ = problem;
    return frame_status::bad;
  }
  frame_status failed() { return error_ ? frame_status::io_error : bad("file shorter than read"); }

  // Makes `bytes` bytes from position_ available at data(); the caller knows they are in range.
  bool fill(std::size_t bytes) {
    if (valid_ >= bytes) return true;
    if (begin_ + bytes > buffer_.size()) {
      if (valid_ > 0 && begin_ > 0) std::memmove(buffer_.data(), buffer_.data() + begin_, valid_);
      begin_ = 0;
      if (buffer_.size() < bytes) buffer_.resize(std::max(bytes, chunk_bytes_));
    }
    while (valid_ < bytes) {
      const std::uint64_t at = position_ + valid_;
      const std::size_t room = buffer_.size() - begin_ - valid_;
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(room, end_ - at));
      const ssize_t got =
          ::pread(fd_, buffer_.data() + begin_ + valid_, want, static_cast<off_t>(at));
      if (got < 0) {
        if (errno == EINTR) continue;
        error_ = last_error();
        return false;
      }
      if (got == 0) return false;
      valid_ += static_cast<std::size_t>(got);
    }
    return true;
  }

  int fd_;
  std::uint64_t position_;
  std::uint64_t end_;
  std::size_t chunk_bytes_;
  std::vector<char> buffer_;
  std::size_t begin_ = 0;  // buffer_[begin_, begin_ + valid_) holds the file from position_
  std::size_t valid_ = 0;
  const char* problem_ = "";
  std::error_code error_;
};

}  // namespace

const std::error_category& error_category() {
  static const category_impl instance;
  return instance;
}

std::error_code make_error_code(errc e) {
  return {static_cast<int>(e), error_category()};
}

log::segment_file::~segment_file() {
  if (fd >= 0) ::close(fd);
}

log::log(options o, committer& c) : options_(std::move(o)), committer_(c) {
  options_.max_record_bytes = std::min(options_.max_record_bytes, record_bytes_limit);
}

std::unique_ptr<log> log::open(options o, committer& c, recovery_report* report) {
  std::unique_ptr<log> l(new log(std::move(o), c));
  recovery_report ignored;
  l->recover(report != nullptr ? *report : ignored);
  c.attach();
  l->is_attached_ = true;
  return l;
}

log::~log() {
  NIMBUS_ASSERT(!committer_.is_committer_thread());  // a callback must not destroy its log
  {
    std::unique_lock lock(pending_mutex_);
    idle_.wait(lock, [&] { return pending_.empty() && !is_scheduled_ && !is_in_round_; });
  }
  // interval: what was written but not yet synced is synced now, the log's last chance.
  if (is_attached_ && committer_.detach(this) && writer_.file) {
    if (auto error = committer::sync_data(writer_.file->fd))
      diagnostics::sync_failed(options_.dir, error);
  }
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void log::note_record(segment& s, std::uint64_t position, std::uint64_t offset,
                      std::int64_t time_ms, std::uint64_t frame_bytes,
                      std::uint32_t index_interval_bytes) {
  if (s.index.empty() || position - s.index.back().position >= index_interval_bytes)
    s.index.push_back(index_entry{offset, position, time_ms});
  else
    s.index.back().max_time = std::max(s.index.back().max_time, time_ms);
  s.max_time = std::max(s.max_time, time_ms);
  s.end_offset = offset + 1;
  s.size = position + frame_bytes;
}

// Scans every segment, oldest first. In the last one a bad frame (CRC, length, offset out of
// sequence, short) is the torn tail of a crash: the file is cut there. In an earlier one it is
// damage: the segment is renamed to *.corrupt and the offsets go on from the next one, a gap
// readers skip. Offsets never repeat: a new active segment starts past every offset seen.
void log::recover(recovery_report& report) {
  report = recovery_report{};
  const std::filesystem::path& directory = options_.dir;
  std::filesystem::create_directories(directory);
  dir_fd_ = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) throw_errno(errno, "seglog: cannot open " + directory.string());

  std::vector<std::pair<std::uint64_t, std::filesystem::path>> files;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    std::uint64_t base = 0;
    if (entry.is_regular_file() && parse_segment_name(entry.path().filename().string(), base))
      files.emplace_back(base, entry.path());
  }
  std::sort(files.begin(), files.end());

  std::uint64_t past_seen = 0;  // one past every offset seen, kept or set aside
  std::uint64_t kept_end = 0;   // one past the last kept segment's records
  bool is_last_kept = false;
  bool is_directory_changed = false;
  const bool is_synced = committer_.policy() != fsync_policy::never;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::uint64_t base = files[i].first;
    const std::filesystem::path& path = files[i].second;
    const bool is_last = i + 1 == files.size();
    // A record at the next segment's base or past it would make offsets repeat.
    const std::uint64_t limit = is_last ? offset_limit : files[i + 1].first;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) throw_errno(errno, "seglog: cannot open " + path.string());
    auto file = std::make_shared<segment_file>(fd, base, path);
    struct stat status {};
    if (::fstat(fd, &status) != 0) throw_errno(errno, "seglog: cannot stat " + path.string());
    const auto file_size = static_cast<std::uint64_t>(status.st_size);

    segment s;
    s.base_offset = base;
    s.end_offset = base;
    s.file = file;
    const char* problem = nullptr;
    std::uint64_t bad_at = 0;
    const bool is_misplaced = base < kept_end || base >= offset_limit;
    if (is_misplaced) {
      problem = base < kept_end ? "overlaps the previous segment" : "base offset out of range";
    } else {
      past_seen = std::max(past_seen, base);
      frame_reader reader(fd, 0, file_size, scan_chunk_bytes);
      frame f;
      while (true) {
        const auto result = reader.next(f);
        if (result == frame_status::end) break;
        if (result == frame_status::io_error)
          throw std::system_error(reader.error(), "seglog: cannot read " + path.string());
        if (result == frame_status::bad) {
          problem = reader.problem();
          bad_at = reader.position();
          break;
        }
        if (f.offset != s.end_offset || f.offset >= limit) {
          problem =
              f.offset != s.end_offset ? "offset out of sequence" : "offset past the next segment";
          bad_at = f.position;
          break;
        }
        note_record(s, f.position, f.offset, f.time_ms, f.size, options_.index_interval_bytes);
        past_seen = std::max(past_seen, s.end_offset);
      }
    }

    if (problem != nullptr && is_last && !is_misplaced) {
      if (::ftruncate(fd, static_cast<off_t>(bad_at)) != 0)
        throw_errno(errno, "seglog: cannot truncate " + path.string());
      if (is_synced) {
        if (auto error = committer::sync_data(fd))
          throw std::system_error(error, "seglog: cannot sync " + path.string());
      }
      report.truncated_bytes += file_size - bad_at;
      diagnostics::tail_truncated(path, bad_at, file_size - bad_at, problem);
    } else if (problem != nullptr) {
      s.file.reset();
      file.reset();  // closed before the rename
      auto moved_to = path;
      moved_to.replace_extension(".corrupt");
      if (::rename(path.c_str(), moved_to.c_str()) != 0)
        throw_errno(errno, "seglog: cannot set aside " + path.string());
      is_directory_changed = true;
      report.set_aside.push_back(moved_to.string());
      diagnostics::segment_set_aside(path, moved_to, bad_at, problem);
      is_last_kept = false;
      continue;
    }
    kept_end = s.end_offset;
    segments_.push_back(std::move(s));
    is_last_kept = true;
  }

  if (!is_last_kept) {
    const std::uint64_t base = std::max(past_seen, kept_end);
    auto path = directory / segment_name(base);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw_errno(errno, "seglog: cannot create " + path.string());
    segment s;
    s.base_offset = base;
    s.end_offset = base;
    s.file = std::make_shared<segment_file>(fd, base, std::move(path));
    segments_.push_back(std::move(s));
    is_directory_changed = true;
  }
  if (is_directory_changed && is_synced) {
    if (auto error = sync_directory(dir_fd_))
      throw std::system_error(error, "seglog: cannot sync " + directory.string());
  }

  std::uint64_t total = 0;
  for (const auto& s : segments_) total += s.size;
  const segment& active = segments_.back();
  writer_.file = active.file;
  writer_.size = active.size;
  writer_.next_offset = active.end_offset;
  first_offset_.store(segments_.front().base_offset, std::memory_order_release);
  next_offset_.store(active.end_offset, std::memory_order_release);
  size_bytes_.store(total, std::memory_order_relaxed);
}

void log::append(std::vector<std::string> payloads, std::int64_t time_ms, on_appended done) {
  pending_batch batch;
  batch.time_ms = time_ms;
  batch.done = std::move(done);
  for (const auto& payload : payloads) {
    if (payload.size() > options_.max_record_bytes) batch.error = errc::record_too_large;
  }
  if (!batch.error) batch.payloads = std::move(payloads);
  bool should_schedule = false;
  {
    std::lock_guard lock(pending_mutex_);
    pending_.push_back(std::move(batch));
    should_schedule = !is_scheduled_;
    is_scheduled_ = true;
  }
  if (should_schedule) committer_.schedule(this);
}

void log::start_segment(on_appended done) {
  pending_batch batch;
  batch.done = std::move(done);
  batch.is_segment_start = true;
  bool should_schedule = false;
  {
    std::lock_guard lock(pending_mutex_);
    pending_.push_back(std::move(batch));
    should_schedule = !is_scheduled_;
    is_scheduled_ = true;
  }
  if (should_schedule) committer_.schedule(this);
}

void log::begin_round() {
  {
    std::lock_guard lock(pending_mutex_);
    round_batches_.swap(pending_);
    is_scheduled_ = false;
    is_in_round_ = true;
  }
  round_sync_error_ = {};
  round_error_ = write_round();
}

std::error_code log::write_round() {
  round_start_ = writer_;
  round_records_.clear();
  round_files_.clear();
  buffer_.clear();
  for (auto& batch : round_batches_) {
    if (batch.error) continue;
    batch.first_offset = writer_.next_offset;
    if (batch.is_segment_start && writer_.size > 0) {
      if (auto error = roll()) {
        roll_back();
        return error;
      }
    }
    for (const auto& payload : batch.payloads) {
      const std::uint64_t frame_bytes = frame_header_bytes + payload.size();
      if (writer_.size > 0 && writer_.size + frame_bytes > options_.segment_bytes) {
        if (auto error = roll()) {
          roll_back();
          return error;
        }
      }
      round_records_.push_back(record_meta{round_files_.size(), writer_.size, writer_.next_offset,
                                           batch.time_ms, frame_bytes});
      encode_frame(buffer_, writer_.next_offset, batch.time_ms, payload);
      writer_.size += frame_bytes;
      ++writer_.next_offset;
      if (buffer_.size() >= flush_bytes) {
        if (auto error = flush()) {
          roll_back();
          return error;
        }
      }
    }
    // The frames hold the bytes now: memory stays bounded by what one round writes at a time.
    std::vector<std::string>().swap(batch.payloads);
  }
  if (auto error = flush()) {
    roll_back();
    return error;
  }
  return {};
}

std::error_code log::flush() {
  if (buffer_.empty()) return {};
  auto error =
      write_all(writer_.file->fd, buffer_.data(), buffer_.size(), writer_.size - buffer_.size());
  buffer_.clear();
  return error;
}

std::error_code log::roll() {
  if (auto error = flush()) return error;
  const bool is_synced = committer_.policy() != fsync_policy::never;
  // A finished segment is whole on disk before its successor exists: recovery sets aside a
  // damaged segment that is not the last, so one must never be left torn behind a newer one.
  if (is_synced) {
    if (auto error = committer::sync_data(writer_.file->fd)) return error;
  }
  const std::uint64_t base = writer_.next_offset;
  auto path = options_.dir / segment_name(base);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return last_error();
  auto file = std::make_shared<segment_file>(fd, base, std::move(path));
  round_files_.push_back(file);
  writer_.file = std::move(file);
  writer_.size = 0;
  if (is_synced) {
    if (auto error = sync_directory(dir_fd_)) return error;
  }
  return {};
}

// Undoes this round's writes: segments it created are deleted and the active one is cut back,
// so nothing of a failed batch can be read, now or after a restart, and the log goes on.
void log::roll_back() {
  buffer_.clear();
  for (const auto& file : round_files_) {
    if (::unlink(file->path.c_str()) != 0) diagnostics::cleanup_failed(file->path, last_error());
  }
  round_files_.clear();
  round_records_.clear();
  writer_ = round_start_;
  if (::ftruncate(writer_.file->fd, static_cast<off_t>(writer_.size)) != 0)
    diagnostics::cleanup_failed(writer_.file->path, last_error());
}

void log::finish_round() {
  if (!round_error_ && round_sync_error_) {
    round_error_ = round_sync_error_;
    roll_back();
  }
  if (round_error_)
    diagnostics::write_failed(options_.dir, round_error_, round_batches_.size());
  else if (!round_records_.empty() || !round_files_.empty())
    publish();
  for (auto& batch : round_batches_) {
    if (!batch.done) continue;
    if (batch.error)
      batch.done(batch.error, 0);
    else if (round_error_)
      batch.done(round_error_, 0);
    else
      batch.done({}, batch.first_offset);
  }
  round_batches_.clear();
  round_records_.clear();
  round_files_.clear();
  if (buffer_.capacity() > 4 * flush_bytes) std::string().swap(buffer_);
  std::lock_guard lock(pending_mutex_);
  is_in_round_ = false;
  idle_.notify_all();
}

// Makes this round's records visible to readers: after their sync (always), or their write.
void log::publish() {
  std::uint64_t added = 0;
  std::unique_lock lock(state_mutex_);
  segment* current = &segments_.back();
  std::size_t slot = 0;
  for (const auto& meta : round_records_) {
    while (slot < meta.slot) {
      const auto& file = round_files_[slot];
      ++slot;
      segment s;
      s.base_offset = file->base_offset;
      s.end_offset = file->base_offset;
      s.file = file;
      segments_.push_back(std::move(s));
      current = &segments_.back();
    }
    note_record(*current, meta.position, meta.offset, meta.time_ms, meta.frame_bytes,
                options_.index_interval_bytes);
    added += meta.frame_bytes;
  }
  // Segments started after the last record (start_segment), still empty.
  for (; slot < round_files_.size(); ++slot) {
    const auto& file = round_files_[slot];
    segment s;
    s.base_offset = file->base_offset;
    s.end_offset = file->base_offset;
    s.file = file;
    segments_.push_back(std::move(s));
  }
  size_bytes_.fetch_add(added, std::memory_order_relaxed);
  next_offset_.store(writer_.next_offset, std::memory_order_release);
}

std::error_code log::read(std::uint64_t offset, std::size_t max_records, std::size_t max_bytes,
                          std::vector<record>& out) const {
  std::size_t count = 0;
  std::size_t bytes = 0;
  const std::size_t chunk = std::clamp<std::size_t>(max_bytes, 4096, 1 << 20);
  while (count < max_records) {
    std::shared_ptr<segment_file> file;
    std::uint64_t position = 0;
    std::uint64_t committed = 0;
    std::uint64_t end_offset = 0;
    {
      std::shared_lock lock(state_mutex_);
      offset = std::max(offset, first_offset_.load(std::memory_order_relaxed));
      const auto it =
          std::partition_point(segments_.begin(), segments_.end(),
                               [&](const segment& s) { return s.end_offset <= offset; });
      if (it == segments_.end()) break;
      offset = std::max(offset, it->base_offset);  // past a gap left by a set-aside segment
      const auto entry =
          std::partition_point(it->index.begin(), it->index.end(),
                               [&](const index_entry& e) { return e.offset <= offset; });
      position = entry == it->index.begin() ? 0 : std::prev(entry)->position;
      file = it->file;
      committed = it->size;
      end_offset = it->end_offset;
    }
    frame_reader reader(file->fd, position, committed, chunk);
    frame f;
    while (count < max_records) {
      const auto result = reader.next(f);
      if (result == frame_status::end) break;
      if (result == frame_status::io_error) return reader.error();
      if (result == frame_status::bad) return errc::corrupt_record;
      if (f.offset < offset) continue;
      if (count > 0 && bytes + f.payload.size() > max_bytes) return {};
      out.push_back(record{f.offset, f.time_ms, std::string(f.payload)});
      ++count;
      bytes += f.payload.size();
      offset = f.offset + 1;
    }
    offset = std::max(offset, end_offset);
  }
  return {};
}

std::uint64_t log::bytes_from(std::uint64_t offset) const {
  std::shared_lock lock(state_mutex_);
  std::uint64_t total = 0;
  for (const auto& s : segments_) {
    if (s.end_offset <= offset) continue;
    if (s.base_offset >= offset) {
      total += s.size;
      continue;
    }
    // `offset` is inside: from the last index entry at or before it.
    std::uint64_t position = 0;
    for (const auto& e : s.index) {
      if (e.offset > offset) break;
      position = e.position;
    }
    total += s.size - std::min(position, s.size);
  }
  return total;
}

std::uint64_t log::offset_at_time(std::int64_t time_ms) const {
  std::shared_ptr<segment_file> file;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::uint64_t fallback = 0;
  {
    std::shared_lock lock(state_mutex_);
    for (const auto& s : segments_) {
      if (s.max_time < time_ms) continue;
      const auto entry = std::find_if(s.index.begin(), s.index.end(),
                                      [&](const index_entry& e) { return e.max_time >= time_ms; });
      if (entry == s.index.end()) continue;
      const auto after = std::next(entry);
      from = entry->position;
      to = after == s.index.end() ? s.size : after->position;
      fallback = entry->offset;
      file = s.file;
      break;
    }
    if (!file) return next_offset_.load(std::memory_order_acquire);
  }
  // The record is within this index interval.
  frame_reader reader(file->fd, from, to, 64 << 10);
  frame f;
  while (reader.next(f) == frame_status::ok) {
    if (f.time_ms >= time_ms) return f.offset;
  }
  return fallback;  // unreadable: the interval's first offset, never past the answer
}

void log::drop_before(std::uint64_t offset) {
  drop_segments([offset](const segment& s) { return s.end_offset <= offset; });
}

void log::drop_older_than(std::int64_t time_ms) {
  drop_segments([time_ms](const segment& s) { return s.max_time < time_ms; });
}

void log::drop_segments(const std::function<bool(const segment&)>& is_droppable) {
  std::vector<std::shared_ptr<segment_file>> dropped;
  {
    std::unique_lock lock(state_mutex_);
    std::size_t count = 0;
    std::uint64_t bytes = 0;
    // Oldest first, and never the last: the committer writes to it.
    while (count + 1 < segments_.size() && is_droppable(segments_[count])) {
      bytes += segments_[count].size;
      dropped.push_back(segments_[count].file);
      ++count;
    }
    if (count == 0) return;
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(count));
    first_offset_.store(segments_.front().base_offset, std::memory_order_release);
    size_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  }
  // A reader still holding one keeps its descriptor; the name goes now.
  for (const auto& file : dropped) {
    if (::unlink(file->path.c_str()) != 0) diagnostics::cleanup_failed(file->path, last_error());
  }
}

}  // namespace nimbus::seglog
