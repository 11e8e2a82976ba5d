// Writes arbitrary bytes as a segment file, opens the segment log over it (recovery: torn tails
// cut, damaged segments set aside) and reads everything back: nothing may crash, and what open()
// keeps must read back cleanly, in offset order, find itself by time, take an append and reopen
// with nothing left to repair. Each input runs twice: as the only segment (its tail is cut) and
// as a segment followed by an empty one (it is kept whole or set aside).
// The log's sources only: its spdlog reporting (seglog/diagnostics.cpp) is replaced below.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "seglog/committer.hpp"
#include "seglog/diagnostics.hpp"
#include "seglog/log.hpp"

namespace seglog = nimbus::seglog;
namespace fs = std::filesystem;

namespace nimbus::seglog::diagnostics {
void segment_set_aside(const fs::path&, const fs::path&, std::uint64_t, std::string_view) {}
void tail_truncated(const fs::path&, std::uint64_t, std::uint64_t, std::string_view) {}
void write_failed(const fs::path&, std::error_code, std::size_t) {}
void sync_failed(const fs::path&, std::error_code) {}
void cleanup_failed(const fs::path&, std::error_code) {}
}  // namespace nimbus::seglog::diagnostics

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

struct scratch_dir {
  fs::path path = fs::temp_directory_path() / ("nimbus-seglog-fuzz-" + std::to_string(::getpid()));
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

void write_file(const fs::path& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (size > 0) out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  check(out.good());
}

std::vector<seglog::record> read_everything(const seglog::log& l) {
  std::vector<seglog::record> all;
  std::uint64_t from = 0;
  while (true) {
    std::vector<seglog::record> some;
    check(!l.read(from, 7, 100, some));
    if (some.empty()) break;
    for (auto& r : some) {
      check(r.offset >= from && r.offset >= l.first_offset() && r.offset < l.next_offset());
      from = r.offset + 1;
      all.push_back(std::move(r));
    }
  }
  return all;
}

seglog::log::options options_for(const fs::path& dir) {
  seglog::log::options o;
  o.dir = dir;
  o.segment_bytes = 4096;
  o.index_interval_bytes = 32;
  return o;
}

void run(const fs::path& dir, const std::uint8_t* data, std::size_t size, bool is_followed) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_file(dir / "00000000000000000000.seg", data, size);
  if (is_followed) write_file(dir / "00000000000000001000.seg", data, 0);

  seglog::committer c(seglog::committer::options{seglog::fsync_policy::never});
  seglog::recovery_report report;
  auto l = seglog::log::open(options_for(dir), c, &report);
  check(report.truncated_bytes <= size);
  const auto records = read_everything(*l);
  for (std::size_t i = 1; i < records.size(); ++i) check(records[i].offset > records[i - 1].offset);
  // The first record at or after a record's time is never later than that record.
  for (const auto& r : records) {
    const auto found = l->offset_at_time(r.time_ms);
    check(found <= r.offset);
    std::vector<seglog::record> at;
    check(!l->read(found, 1, 1, at) && at.size() == 1 && at[0].time_ms >= r.time_ms);
  }

  const auto next = l->next_offset();
  auto promise = std::make_shared<std::promise<std::pair<std::error_code, std::uint64_t>>>();
  auto appended = promise->get_future();
  l->append({"appended"}, 1, [promise](std::error_code error, std::uint64_t first) {
    promise->set_value({error, first});
  });
  const auto [error, first] = appended.get();
  check(!error && first == next && l->next_offset() == next + 1);
  std::vector<seglog::record> back;
  check(!l->read(first, 10, 1 << 20, back) && back.size() == 1 && back[0].payload == "appended");

  // Whatever the first open kept, and the append, reopen as they are.
  l.reset();
  seglog::recovery_report again;
  l = seglog::log::open(options_for(dir), c, &again);
  check(again.truncated_bytes == 0 && again.set_aside.empty());
  check(l->next_offset() == next + 1);
  check(read_everything(*l).size() == records.size() + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const scratch_dir scratch{};
  run(scratch.path / "alone", data, size, false);
  run(scratch.path / "followed", data, size, true);
  return 0;
}
