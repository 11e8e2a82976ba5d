#include "seglog/log.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/tests/temp_dir.hpp"

namespace nimbus::seglog {
namespace {

namespace fs = std::filesystem;

// A directory of the test's own: "seglog-" + the name given.
struct temp_dir : core::testing::temp_dir {
  explicit temp_dir(const std::string& name) : core::testing::temp_dir("seglog-" + name) {}
};

committer::options with_policy(fsync_policy policy) {
  committer::options o;
  o.fsync = policy;
  return o;
}

log::options small_segments(const fs::path& dir, std::uint64_t segment_bytes) {
  log::options o;
  o.dir = dir;
  o.segment_bytes = segment_bytes;
  o.index_interval_bytes = 64;
  return o;
}

struct appended {
  std::error_code error;
  std::uint64_t first_offset = 0;
};

std::future<appended> append_async(log& l, std::vector<std::string> payloads,
                                   std::int64_t time_ms = 0) {
  // Shared with the callback, so the promise outlives its set_value() whoever wakes first.
  auto promise = std::make_shared<std::promise<appended>>();
  auto future = promise->get_future();
  l.append(std::move(payloads), time_ms, [promise](std::error_code error, std::uint64_t first) {
    promise->set_value(appended{error, first});
  });
  return future;
}

appended append_and_wait(log& l, std::vector<std::string> payloads, std::int64_t time_ms = 0) {
  return append_async(l, std::move(payloads), time_ms).get();
}

std::vector<record> read_all(const log& l, std::uint64_t from = 0) {
  std::vector<record> out;
  EXPECT_EQ(l.read(from, 1'000'000, std::size_t{1} << 30, out), std::error_code());
  return out;
}

std::vector<std::uint64_t> offsets_of(const std::vector<record>& records) {
  std::vector<std::uint64_t> offsets;
  for (const auto& r : records) offsets.push_back(r.offset);
  return offsets;
}

std::vector<fs::path> files_with(const fs::path& dir, const std::string& extension) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == extension) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

void flip_byte(const fs::path& file, std::uint64_t position) {
  std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(stream.is_open());
  stream.seekg(static_cast<std::streamoff>(position));
  char byte = 0;
  stream.get(byte);
  stream.seekp(static_cast<std::streamoff>(position));
  stream.put(static_cast<char>(byte ^ 0x5A));
  ASSERT_TRUE(stream.good());
}

constexpr std::uint64_t header_bytes = 24;  // a frame is this plus its payload

TEST(log, round_trip_across_segment_rolls) {
  temp_dir dir("round-trip");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 256), c);
  EXPECT_EQ(l->first_offset(), 0U);
  EXPECT_EQ(l->next_offset(), 0U);
  std::vector<std::string> expected;
  for (std::uint64_t i = 0; i < 50; ++i) {
    std::string payload = "record-" + std::to_string(i) + std::string(i % 7 * 10, 'x');
    expected.push_back(payload);
    const auto result = append_and_wait(*l, {payload}, static_cast<std::int64_t>(1000 + i));
    EXPECT_EQ(result.error, std::error_code());
    EXPECT_EQ(result.first_offset, i);
  }
  EXPECT_EQ(l->next_offset(), 50U);
  const auto segments = files_with(dir.path(), ".seg");
  EXPECT_GT(segments.size(), 5U);
  for (const auto& segment : segments) EXPECT_LE(fs::file_size(segment), 256U);

  const auto records = read_all(*l);
  ASSERT_EQ(records.size(), expected.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].offset, i);
    EXPECT_EQ(records[i].time_ms, static_cast<std::int64_t>(1000 + i));
    EXPECT_EQ(records[i].payload, expected[i]);
  }
  // From the middle of a segment, through the sparse index.
  std::vector<record> some;
  EXPECT_EQ(l->read(37, 5, 1 << 20, some), std::error_code());
  EXPECT_EQ(offsets_of(some), (std::vector<std::uint64_t>{37, 38, 39, 40, 41}));
  EXPECT_EQ(some[0].payload, expected[37]);
}

// A backlog's size: whole segments past the offset, and the part of its own segment from the
// index entry at or before it.
TEST(log, bytes_from_counts_what_follows_an_offset) {
  temp_dir dir("bytes-from");
  committer c(with_policy(fsync_policy::never));
  auto l = log::open(small_segments(dir.path(), 256), c);
  for (int i = 0; i < 40; ++i) append_and_wait(*l, {std::string(40, 'x')});  // 64 B frames
  const std::uint64_t all = 40 * (header_bytes + 40);
  EXPECT_EQ(l->bytes_from(0), all);
  EXPECT_EQ(l->bytes_from(40), 0U);
  EXPECT_EQ(l->bytes_from(1000), 0U);
  // Segments hold 4 frames (256 B): offset 8 starts the third one exactly.
  EXPECT_EQ(l->bytes_from(8), all - 8 * (header_bytes + 40));
  // Inside a segment the count starts at the index entry at or before the offset.
  EXPECT_LE(l->bytes_from(9), l->bytes_from(8));
  EXPECT_GE(l->bytes_from(9), all - 9 * (header_bytes + 40));
}

TEST(log, offsets_are_dense_and_continue_after_reopen) {
  temp_dir dir("reopen");
  committer c(with_policy(fsync_policy::always));
  {
    auto l = log::open(small_segments(dir.path(), 200), c);
    EXPECT_EQ(append_and_wait(*l, {"a", "b", "c"}).first_offset, 0U);
    EXPECT_EQ(append_and_wait(*l, {"d"}).first_offset, 3U);
  }
  recovery_report report;
  auto l = log::open(small_segments(dir.path(), 200), c, &report);
  EXPECT_EQ(report.truncated_bytes, 0U);
  EXPECT_TRUE(report.set_aside.empty());
  EXPECT_EQ(l->first_offset(), 0U);
  EXPECT_EQ(l->next_offset(), 4U);
  EXPECT_EQ(l->size_bytes(), 4 * (header_bytes + 1));
  EXPECT_EQ(append_and_wait(*l, {"e", "f"}).first_offset, 4U);
  const auto records = read_all(*l);
  EXPECT_EQ(offsets_of(records), (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5}));
  ASSERT_EQ(records.size(), 6U);
  EXPECT_EQ(records[3].payload, "d");
  EXPECT_EQ(records[5].payload, "f");
}

TEST(log, batches_get_consecutive_first_offsets) {
  temp_dir dir("consecutive");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 1 << 20), c);
  std::vector<std::future<appended>> answers;
  for (std::size_t size = 1; size <= 4; ++size)
    answers.push_back(append_async(*l, std::vector<std::string>(size, std::to_string(size))));
  std::vector<std::uint64_t> firsts;
  for (auto& answer : answers) firsts.push_back(answer.get().first_offset);
  EXPECT_EQ(firsts, (std::vector<std::uint64_t>{0, 1, 3, 6}));
  const auto records = read_all(*l);
  ASSERT_EQ(records.size(), 10U);
  EXPECT_EQ(records[0].payload, "1");
  EXPECT_EQ(records[2].payload, "2");
  EXPECT_EQ(records[5].payload, "3");
  EXPECT_EQ(records[9].payload, "4");
}

TEST(log, torn_tail_is_cut_at_reopen) {
  temp_dir dir("torn");
  committer c(with_policy(fsync_policy::always));
  const std::string payload(40, 'p');
  const std::uint64_t frame = header_bytes + payload.size();
  {
    auto l = log::open(small_segments(dir.path(), 1 << 20), c);
    for (int i = 0; i < 5; ++i) append_and_wait(*l, {payload});
  }
  const auto segment = files_with(dir.path(), ".seg").at(0);
  ASSERT_EQ(fs::file_size(segment), 5 * frame);

  // A crash in the middle of the last frame's payload.
  fs::resize_file(segment, 5 * frame - 10);
  {
    recovery_report report;
    auto l = log::open(small_segments(dir.path(), 1 << 20), c, &report);
    EXPECT_EQ(report.truncated_bytes, frame - 10);
    EXPECT_TRUE(report.set_aside.empty());
    EXPECT_EQ(fs::file_size(segment), 4 * frame);
    EXPECT_EQ(l->next_offset(), 4U);
    EXPECT_EQ(read_all(*l).size(), 4U);
    EXPECT_EQ(append_and_wait(*l, {payload}).first_offset, 4U);
  }
  // ... and in the middle of its header.
  fs::resize_file(segment, 4 * frame + 10);
  {
    recovery_report report;
    auto l = log::open(small_segments(dir.path(), 1 << 20), c, &report);
    EXPECT_EQ(report.truncated_bytes, 10U);
    EXPECT_EQ(l->next_offset(), 4U);
    EXPECT_EQ(append_and_wait(*l, {payload}).first_offset, 4U);
  }
  // A flipped byte in the last record's payload: its CRC fails, the record is cut.
  flip_byte(segment, 5 * frame - 1);
  {
    recovery_report report;
    auto l = log::open(small_segments(dir.path(), 1 << 20), c, &report);
    EXPECT_EQ(report.truncated_bytes, frame);
    EXPECT_EQ(l->next_offset(), 4U);
    EXPECT_EQ(offsets_of(read_all(*l)), (std::vector<std::uint64_t>{0, 1, 2, 3}));
  }
  // Nothing left to repair.
  recovery_report report;
  auto l = log::open(small_segments(dir.path(), 1 << 20), c, &report);
  EXPECT_EQ(report.truncated_bytes, 0U);
  EXPECT_EQ(l->next_offset(), 4U);
}

TEST(log, corrupt_middle_segment_is_set_aside) {
  temp_dir dir("corrupt");
  committer c(with_policy(fsync_policy::always));
  const std::string payload(30, 'm');  // frames of 54 bytes: three to a 200-byte segment
  {
    auto l = log::open(small_segments(dir.path(), 200), c);
    for (std::uint64_t i = 0; i < 9; ++i) EXPECT_EQ(append_and_wait(*l, {payload}).first_offset, i);
  }
  const auto segments = files_with(dir.path(), ".seg");
  ASSERT_EQ(segments.size(), 3U);
  EXPECT_EQ(segments[1].filename().string(), "00000000000000000003.seg");
  flip_byte(segments[1], header_bytes + payload.size() + 30);  // in its second record's payload

  recovery_report report;
  auto l = log::open(small_segments(dir.path(), 200), c, &report);
  EXPECT_EQ(report.truncated_bytes, 0U);
  ASSERT_EQ(report.set_aside.size(), 1U);
  EXPECT_EQ(fs::path(report.set_aside[0]).filename().string(), "00000000000000000003.corrupt");
  EXPECT_TRUE(fs::exists(dir.path() / "00000000000000000003.corrupt"));
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 2U);
  EXPECT_EQ(l->first_offset(), 0U);
  EXPECT_EQ(l->next_offset(), 9U);
  EXPECT_EQ(offsets_of(read_all(*l)), (std::vector<std::uint64_t>{0, 1, 2, 6, 7, 8}));
  // A read from inside the gap starts at the next record there is.
  std::vector<record> from_gap;
  EXPECT_EQ(l->read(4, 10, 1 << 20, from_gap), std::error_code());
  EXPECT_EQ(offsets_of(from_gap), (std::vector<std::uint64_t>{6, 7, 8}));
  EXPECT_EQ(append_and_wait(*l, {payload}).first_offset, 9U);
}

TEST(log, time_lookup) {
  temp_dir dir("time");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 200), c);
  EXPECT_EQ(l->offset_at_time(0), 0U);  // empty: next_offset()
  // Offsets 0..8 at times 100..900, three to a segment, two to an index entry.
  for (std::int64_t t = 100; t <= 900; t += 100) append_and_wait(*l, {std::string(30, 't')}, t);
  EXPECT_EQ(l->offset_at_time(0), 0U);
  EXPECT_EQ(l->offset_at_time(100), 0U);
  EXPECT_EQ(l->offset_at_time(101), 1U);
  EXPECT_EQ(l->offset_at_time(300), 2U);
  EXPECT_EQ(l->offset_at_time(450), 4U);
  EXPECT_EQ(l->offset_at_time(900), 8U);
  EXPECT_EQ(l->offset_at_time(901), 9U);
  // Times need not increase: the answer is the first offset at or after the time.
  append_and_wait(*l, {"late", "later"}, 50);
  EXPECT_EQ(l->offset_at_time(40), 0U);
  EXPECT_EQ(l->offset_at_time(901), 11U);
  // The index is rebuilt at open.
  l.reset();
  l = log::open(small_segments(dir.path(), 200), c);
  EXPECT_EQ(l->offset_at_time(101), 1U);
  EXPECT_EQ(l->offset_at_time(450), 4U);
  EXPECT_EQ(l->offset_at_time(901), 11U);
}

TEST(log, drops_delete_whole_segments_but_never_the_active_one) {
  temp_dir dir("drop");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 200), c);
  const std::string payload(30, 'd');
  const std::uint64_t frame = header_bytes + payload.size();
  // Offsets 0-2 at time 100, 3-5 at 200, 6-8 at 300: a segment each.
  for (std::int64_t i = 0; i < 9; ++i) append_and_wait(*l, {payload}, 100 * (i / 3 + 1));
  ASSERT_EQ(files_with(dir.path(), ".seg").size(), 3U);
  EXPECT_EQ(l->size_bytes(), 9 * frame);

  l->drop_before(2);  // the first segment still holds offset 2
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 3U);
  EXPECT_EQ(l->first_offset(), 0U);
  l->drop_before(3);
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 2U);
  EXPECT_EQ(l->first_offset(), 3U);
  EXPECT_EQ(l->size_bytes(), 6 * frame);

  l->drop_older_than(200);  // the segment at 3 holds time 200: not older
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 2U);
  l->drop_older_than(1000);  // all older, but the active segment stays
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 1U);
  EXPECT_EQ(l->first_offset(), 6U);
  l->drop_before(100);
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 1U);
  EXPECT_EQ(l->size_bytes(), 3 * frame);

  EXPECT_EQ(offsets_of(read_all(*l)), (std::vector<std::uint64_t>{6, 7, 8}));  // clamped
  EXPECT_EQ(append_and_wait(*l, {"next"}).first_offset, 9U);
  l.reset();
  l = log::open(small_segments(dir.path(), 200), c);
  EXPECT_EQ(l->first_offset(), 6U);
  EXPECT_EQ(l->next_offset(), 10U);
}

TEST(log, a_new_segment_lets_every_record_go) {
  temp_dir dir("start-segment");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 1 << 20), c);
  for (int i = 0; i < 5; ++i) append_and_wait(*l, {"record"});
  l->drop_before(5);  // the active segment holds them: it stays
  EXPECT_GT(l->size_bytes(), 0U);

  auto started = std::make_shared<std::promise<std::uint64_t>>();
  l->start_segment([started](std::error_code error, std::uint64_t offset) {
    EXPECT_FALSE(error);
    started->set_value(offset);
  });
  EXPECT_EQ(started->get_future().get(), 5U);
  ASSERT_EQ(files_with(dir.path(), ".seg").size(), 2U);
  l->drop_before(5);
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 1U);
  EXPECT_EQ(l->size_bytes(), 0U);
  EXPECT_EQ(l->first_offset(), 5U);
  EXPECT_TRUE(read_all(*l).empty());

  // On an empty active segment it starts none.
  auto again = std::make_shared<std::promise<std::uint64_t>>();
  l->start_segment([again](std::error_code, std::uint64_t offset) { again->set_value(offset); });
  EXPECT_EQ(again->get_future().get(), 5U);
  EXPECT_EQ(files_with(dir.path(), ".seg").size(), 1U);

  EXPECT_EQ(append_and_wait(*l, {"next"}).first_offset, 5U);
  l.reset();
  l = log::open(small_segments(dir.path(), 1 << 20), c);
  EXPECT_EQ(l->first_offset(), 5U);
  EXPECT_EQ(l->next_offset(), 6U);
  EXPECT_EQ(offsets_of(read_all(*l)), (std::vector<std::uint64_t>{5}));
}

TEST(log, concurrent_appenders_are_answered_in_call_order) {
  temp_dir dir("concurrent");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 4096), c);
  constexpr std::size_t threads = 4;
  constexpr std::size_t batches = 200;
  struct answer {
    std::size_t sequence;
    std::uint64_t first_offset;
    std::size_t count;
  };
  // answers[t] is appended to on the committer thread only, and read once t's last came.
  std::vector<std::vector<answer>> answers(threads);
  std::vector<std::thread> appenders;
  for (std::size_t t = 0; t < threads; ++t) {
    appenders.emplace_back([&answers, &l, t] {
      auto last = std::make_shared<std::promise<void>>();
      auto last_done = last->get_future();
      for (std::size_t b = 0; b < batches; ++b) {
        const std::size_t count = 1 + (b + t) % 3;
        std::vector<std::string> payloads;
        for (std::size_t k = 0; k < count; ++k)
          payloads.push_back(std::to_string(t) + "/" + std::to_string(b) + "/" + std::to_string(k));
        const bool is_last = b + 1 == batches;
        l->append(
            std::move(payloads), 0,
            [&answers, last, t, b, count, is_last](std::error_code error, std::uint64_t first) {
              EXPECT_EQ(error, std::error_code());
              answers[t].push_back(answer{b, first, count});
              if (is_last) last->set_value();
            });
      }
      last_done.wait();
    });
  }
  for (auto& appender : appenders) appender.join();

  std::vector<std::pair<std::uint64_t, std::size_t>> ranges;
  for (std::size_t t = 0; t < threads; ++t) {
    ASSERT_EQ(answers[t].size(), batches);
    for (std::size_t b = 0; b < batches; ++b) {
      EXPECT_EQ(answers[t][b].sequence, b);  // called back in the order of the calls
      if (b > 0) {
        EXPECT_GT(answers[t][b].first_offset, answers[t][b - 1].first_offset);
      }
      ranges.emplace_back(answers[t][b].first_offset, answers[t][b].count);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t expected = 0;
  for (const auto& [first, count] : ranges) {
    EXPECT_EQ(first, expected);  // no gap, no overlap
    expected += count;
  }
  EXPECT_EQ(l->next_offset(), expected);
  const auto records = read_all(*l);
  ASSERT_EQ(records.size(), expected);
  for (std::size_t t = 0; t < threads; ++t) {
    for (std::size_t b = 0; b < batches; ++b) {
      const auto& a = answers[t][b];
      EXPECT_EQ(records[a.first_offset].payload,
                std::to_string(t) + "/" + std::to_string(b) + "/0");
    }
  }
}

TEST(log, read_honours_max_bytes_and_max_records) {
  temp_dir dir("limits");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 1 << 20), c);
  for (int i = 0; i < 10; ++i) append_and_wait(*l, {std::string(100, 'r')});
  std::vector<record> out;
  EXPECT_EQ(l->read(0, 100, 250, out), std::error_code());
  EXPECT_EQ(out.size(), 2U);  // a third would pass 250 bytes
  out.clear();
  EXPECT_EQ(l->read(0, 100, 1, out), std::error_code());
  EXPECT_EQ(out.size(), 1U);  // at least one
  out.clear();
  EXPECT_EQ(l->read(0, 3, 1 << 20, out), std::error_code());
  EXPECT_EQ(out.size(), 3U);
  EXPECT_EQ(l->read(8, 100, 1 << 20, out), std::error_code());  // appends to `out`
  EXPECT_EQ(offsets_of(out), (std::vector<std::uint64_t>{0, 1, 2, 8, 9}));
  out.clear();
  EXPECT_EQ(l->read(10, 100, 1 << 20, out), std::error_code());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(l->read(0, 0, 1 << 20, out), std::error_code());
  EXPECT_TRUE(out.empty());
}

TEST(log, every_fsync_policy_produces_readable_data) {
  for (auto policy : {fsync_policy::always, fsync_policy::interval, fsync_policy::never}) {
    temp_dir dir("policy-" + std::to_string(static_cast<int>(policy)));
    committer::options o = with_policy(policy);
    o.sync_interval = std::chrono::milliseconds(1);
    committer c(o);
    {
      auto l = log::open(small_segments(dir.path(), 300), c);
      for (std::uint64_t i = 0; i < 20; ++i) {
        EXPECT_EQ(append_and_wait(*l, {"p" + std::to_string(i)}, static_cast<std::int64_t>(i))
                      .first_offset,
                  i);
      }
      EXPECT_EQ(l->next_offset(), 20U);
      EXPECT_EQ(read_all(*l).size(), 20U);
    }
    recovery_report report;
    auto l = log::open(small_segments(dir.path(), 300), c, &report);
    EXPECT_EQ(report.truncated_bytes, 0U);
    const auto records = read_all(*l);
    ASSERT_EQ(records.size(), 20U);
    EXPECT_EQ(records[19].payload, "p19");
  }
}

TEST(log, oversized_records_are_refused_alone) {
  temp_dir dir("oversized");
  committer c(with_policy(fsync_policy::always));
  auto o = small_segments(dir.path(), 1 << 20);
  o.max_record_bytes = 16;
  auto l = log::open(o, c);
  auto refused = append_async(*l, {"fits", std::string(17, 'x')});
  auto accepted = append_async(*l, {std::string(16, 'y')});
  EXPECT_EQ(refused.get().error, make_error_code(errc::record_too_large));
  const auto answer = accepted.get();
  EXPECT_EQ(answer.error, std::error_code());
  EXPECT_EQ(answer.first_offset, 0U);
  EXPECT_EQ(l->next_offset(), 1U);
}

TEST(log, destruction_waits_for_queued_appends) {
  temp_dir dir("destruction");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 1 << 20), c);
  std::vector<std::future<appended>> answers;
  for (int i = 0; i < 50; ++i) answers.push_back(append_async(*l, {"q"}));
  l.reset();
  for (auto& answer : answers)
    EXPECT_EQ(answer.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  l = log::open(small_segments(dir.path(), 1 << 20), c);
  EXPECT_EQ(l->next_offset(), 50U);
}

// A write that fails part-way (here EFBIG, from a file size limit; ENOSPC and EIO take the same
// path): the batch is answered with the error, the file is cut back, and the log goes on.
TEST(log, failed_write_is_answered_and_undone) {
  temp_dir dir("write-failure");
  committer c(with_policy(fsync_policy::always));
  auto l = log::open(small_segments(dir.path(), 1 << 20), c);
  for (int i = 0; i < 4; ++i) append_and_wait(*l, {std::string(100, 'a')});
  const auto segment = files_with(dir.path(), ".seg").at(0);
  const auto good_size = fs::file_size(segment);

  rlimit previous{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &previous), 0);
  if (previous.rlim_max != RLIM_INFINITY && previous.rlim_max < good_size + 50)
    GTEST_SKIP() << "file size limit too low";
  rlimit limited = previous;
  limited.rlim_cur = good_size + 50;
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  const auto failed = append_and_wait(*l, {std::string(100, 'b'), std::string(100, 'c')});
  ::setrlimit(RLIMIT_FSIZE, &previous);
  std::signal(SIGXFSZ, previous_handler);

  EXPECT_TRUE(failed.error == std::errc::file_too_large) << failed.error.message();
  EXPECT_EQ(fs::file_size(segment), good_size);
  EXPECT_EQ(l->next_offset(), 4U);
  EXPECT_EQ(read_all(*l).size(), 4U);
  EXPECT_EQ(append_and_wait(*l, {"after"}).first_offset, 4U);
  l.reset();
  recovery_report report;
  l = log::open(small_segments(dir.path(), 1 << 20), c, &report);
  EXPECT_EQ(report.truncated_bytes, 0U);
  EXPECT_EQ(offsets_of(read_all(*l)), (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace nimbus::seglog
