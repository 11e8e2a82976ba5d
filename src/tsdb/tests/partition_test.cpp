// Partition files on their own: blocks of every type written and read back, long columns split
// into blocks, a damaged block refused without harm to the others, damaged files refused whole.
#include "tsdb/partition.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "core/tests/temp_dir.hpp"

namespace nimbus::tsdb::partition {
namespace {

namespace fs = std::filesystem;

using core::testing::temp_dir;

struct column_data {
  std::uint64_t id;
  std::string key;
  std::string field;
  field_type type;
  std::vector<std::int64_t> times;
  std::vector<field_value> values;
};

std::vector<column_data> every_type() {
  constexpr std::int64_t base = 1'700'000'000'000'000'000;
  std::vector<column_data> columns;
  columns.push_back({1,
                     "m,host=a",
                     "f",
                     field_type::floating,
                     {base, base + 10, base + 20},
                     {field_value(1.5), field_value(-0.0), field_value(1e300)}});
  columns.push_back(
      {1,
       "m,host=a",
       "i",
       field_type::integer,
       {base, base + 1},
       {field_value(std::numeric_limits<std::int64_t>::min()), field_value(std::int64_t{42})}});
  columns.push_back(
      {2,
       "m,host=b",
       "u",
       field_type::unsigned_integer,
       {base - 5, base},
       {field_value(std::numeric_limits<std::uint64_t>::max()), field_value(std::uint64_t{0})}});
  columns.push_back({2,
                     "m,host=b",
                     "b",
                     field_type::boolean,
                     {1, 2, 3},
                     {field_value(true), field_value(false), field_value(true)}});
  columns.push_back({3,
                     "other",
                     "s",
                     field_type::string,
                     {-100, 0, 100},
                     {field_value(std::string("")), field_value(std::string("a\nb\0c", 5)),
                      field_value(std::string(70'000, 'x'))}});
  return columns;
}

void write_file(const fs::path& path, const std::vector<column_data>& columns) {
  std::error_code error;
  auto out = writer::create(path, error);
  ASSERT_TRUE(out) << error.message();
  for (const auto& c : columns)
    ASSERT_FALSE(out->add(c.id, c.key, c.field, c.type, c.times, c.values));
  ASSERT_FALSE(out->finish());
}

// All the points of one field of one series, blocks concatenated.
block read_all(const reader& file, std::uint64_t id, const std::string& field) {
  block all;
  for (const auto& info : file.find(id, field)) {
    auto got = file.read(info);
    EXPECT_TRUE(std::holds_alternative<block>(got)) << std::get<std::string>(got);
    if (!std::holds_alternative<block>(got)) continue;
    auto& b = std::get<block>(got);
    all.times.insert(all.times.end(), b.times.begin(), b.times.end());
    all.values.insert(all.values.end(), b.values.begin(), b.values.end());
  }
  return all;
}

TEST(partition, round_trips_blocks_of_every_type) {
  temp_dir dir;
  const auto path = dir.path() / "00000000000000000001.tsp";
  const auto columns = every_type();
  write_file(path, columns);
  EXPECT_FALSE(fs::exists(dir.path() / "00000000000000000001.tsp.tmp"));

  auto opened = reader::open(path);
  ASSERT_TRUE(opened.file) << opened.error;
  const auto& file = *opened.file;
  EXPECT_EQ(file.size_bytes(), fs::file_size(path));
  EXPECT_EQ(file.blocks().size(), columns.size());
  for (const auto& c : columns) {
    const auto found = file.find(c.id, c.field);
    ASSERT_EQ(found.size(), 1U) << c.field;
    EXPECT_EQ(found.front().series_key, c.key);
    EXPECT_EQ(found.front().type, c.type);
    EXPECT_EQ(found.front().min_time, c.times.front());
    EXPECT_EQ(found.front().max_time, c.times.back());
    EXPECT_EQ(found.front().count, c.times.size());
    const auto got = read_all(file, c.id, c.field);
    EXPECT_EQ(got.times, c.times) << c.field;
    EXPECT_EQ(got.values, c.values) << c.field;
  }
  // -0.0 comes back as itself, not as 0.0.
  const auto floats = read_all(file, 1, "f");
  ASSERT_EQ(floats.values.size(), 3U);
  EXPECT_TRUE(std::signbit(std::get<double>(floats.values[1])));
  EXPECT_TRUE(file.find(1, "nope").empty());
  EXPECT_TRUE(file.find(9, "f").empty());
}

// tests/data/partition_v2.tsp: written by the version 2 writer (indexes uncompressed), one
// series `cpu,host=a` of 180 minutes from 2025-12-02T00:00:00Z: load = 20 + m/4, count =
// 3m - 100, up = (m % 3 == 0), state = "off"/"on". Files of every version stay readable.
TEST(partition, a_version_2_file_is_still_read) {
  auto opened = reader::open(fs::path(NIMBUS_TSDB_TEST_DATA) / "partition_v2.tsp");
  ASSERT_TRUE(opened.file) << opened.error;
  const auto& file = *opened.file;
  const std::uint64_t id = series_id("cpu,host=a");
  const std::int64_t start = 1764633600LL * 1'000'000'000;
  const auto load = read_all(file, id, "load");
  const auto count = read_all(file, id, "count");
  const auto up = read_all(file, id, "up");
  const auto state = read_all(file, id, "state");
  ASSERT_EQ(load.times.size(), 180U);
  ASSERT_EQ(count.values.size(), 180U);
  ASSERT_EQ(up.values.size(), 180U);
  ASSERT_EQ(state.values.size(), 180U);
  for (int m = 0; m < 180; ++m) {
    EXPECT_EQ(load.times[m], start + m * 60'000'000'000LL);
    EXPECT_EQ(std::get<double>(load.values[m]), 20.0 + m * 0.25);
    EXPECT_EQ(std::get<std::int64_t>(count.values[m]), m * 3 - 100);
    EXPECT_EQ(std::get<bool>(up.values[m]), m % 3 == 0);
    EXPECT_EQ(std::get<std::string>(state.values[m]), m % 2 ? "on" : "off");
  }
  // Its rollups too: 3 hours of 60 points, the day's one bucket.
  const auto hours = file.find_rollups(id, "load", rollup::hour_ns);
  ASSERT_EQ(hours.size(), 1U);
  const auto buckets = file.read_rollup(hours.front());
  ASSERT_TRUE(std::holds_alternative<std::vector<rollup::bucket>>(buckets));
  const auto& hourly = std::get<std::vector<rollup::bucket>>(buckets);
  ASSERT_EQ(hourly.size(), 3U);
  EXPECT_EQ(hourly[1].count, 60U);
  EXPECT_EQ(hourly[1].sum, 60 * 20.0 + 0.25 * (60 * 60 + 59 * 60 / 2));
}

TEST(partition, splits_columns_longer_than_a_block) {
  temp_dir dir;
  const auto path = dir.path() / "00000000000000000002.tsp";
  column_data c{7, "m", "v", field_type::integer, {}, {}};
  for (std::int64_t i = 0; i < 2500; ++i) {
    c.times.push_back(1000 + i * 10);
    c.values.emplace_back(i * i);
  }
  write_file(path, {c});
  auto opened = reader::open(path);
  ASSERT_TRUE(opened.file) << opened.error;
  const auto blocks = opened.file->find(7, "v");
  ASSERT_EQ(blocks.size(), 3U);
  EXPECT_EQ(blocks[0].count, max_block_points);
  EXPECT_EQ(blocks[1].count, max_block_points);
  EXPECT_EQ(blocks[2].count, 500U);
  EXPECT_EQ(blocks[0].min_time, 1000);
  EXPECT_EQ(blocks[0].max_time, 1000 + 999 * 10);
  EXPECT_EQ(blocks[1].min_time, 1000 + 1000 * 10);
  EXPECT_EQ(blocks[2].max_time, 1000 + 2499 * 10);
  const auto got = read_all(*opened.file, 7, "v");
  EXPECT_EQ(got.times, c.times);
  EXPECT_EQ(got.values, c.values);
}

TEST(partition, a_damaged_block_is_refused_and_the_others_still_read) {
  temp_dir dir;
  const auto path = dir.path() / "00000000000000000003.tsp";
  const auto columns = every_type();
  write_file(path, columns);
  std::uint64_t damaged_offset = 0;
  {
    auto opened = reader::open(path);
    ASSERT_TRUE(opened.file);
    damaged_offset = opened.file->find(1, "i").front().offset;
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(damaged_offset + 3));
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(damaged_offset + 3));
    f.write(&byte, 1);
  }
  auto opened = reader::open(path);  // the index is whole: the file opens
  ASSERT_TRUE(opened.file) << opened.error;
  const auto& file = *opened.file;
  const auto damaged = file.find(1, "i");
  ASSERT_EQ(damaged.size(), 1U);
  const auto got = file.read(damaged.front());
  ASSERT_TRUE(std::holds_alternative<std::string>(got));
  EXPECT_EQ(std::get<std::string>(got), "block checksum mismatch");
  EXPECT_TRUE(file.is_first_failure(damaged.front().offset));
  EXPECT_FALSE(file.is_first_failure(damaged.front().offset));  // logged once
  for (const auto& c : columns) {
    if (c.field == "i") continue;
    const auto other = read_all(file, c.id, c.field);
    EXPECT_EQ(other.values, c.values) << c.field;
  }
}

TEST(partition, a_truncated_or_foreign_file_is_refused_as_corrupt) {
  temp_dir dir;
  const auto path = dir.path() / "00000000000000000004.tsp";
  write_file(path, every_type());
  const auto size = fs::file_size(path);

  for (const std::uintmax_t cut :
       {size - 1, size - 10, size / 2, std::uintmax_t{8}, std::uintmax_t{0}}) {
    const auto copy = dir.path() / ("cut-" + std::to_string(cut));
    fs::copy_file(path, copy);
    fs::resize_file(copy, cut);
    const auto opened = reader::open(copy);
    EXPECT_FALSE(opened.file) << cut;
    EXPECT_TRUE(opened.is_corrupt) << cut;
    EXPECT_FALSE(opened.error.empty());
  }

  const auto foreign = dir.path() / "foreign";
  {
    std::ofstream out(foreign, std::ios::binary);
    out << std::string(100, 'z');
  }
  EXPECT_TRUE(reader::open(foreign).is_corrupt);

  // A flipped bit in the index is caught by its checksum.
  const auto flipped = dir.path() / "flipped";
  fs::copy_file(path, flipped);
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(size - footer_bytes - 5);
    f.seekg(at);
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 1);
    f.seekp(at);
    f.write(&byte, 1);
  }
  const auto opened = reader::open(flipped);
  EXPECT_FALSE(opened.file);
  EXPECT_TRUE(opened.is_corrupt);

  // A missing file is an I/O error, not corruption.
  const auto missing = reader::open(dir.path() / "missing.tsp");
  EXPECT_FALSE(missing.file);
  EXPECT_FALSE(missing.is_corrupt);
}

TEST(partition, decode_block_checks_what_the_index_says) {
  const std::vector<std::int64_t> times{10, 20, 30};
  const std::vector<field_value> values{field_value(1.0), field_value(2.0), field_value(3.0)};
  std::string stored;
  std::string error;
  ASSERT_TRUE(encode_block(field_type::floating, times, values, stored, error)) << error;

  block_info info;
  info.type = field_type::floating;
  info.count = 3;
  info.min_time = 10;
  info.max_time = 30;
  ASSERT_TRUE(std::holds_alternative<block>(decode_block(stored, info)));

  auto wrong = info;
  wrong.count = 2;
  EXPECT_TRUE(std::holds_alternative<std::string>(decode_block(stored, wrong)));
  wrong = info;
  wrong.max_time = 31;
  EXPECT_TRUE(std::holds_alternative<std::string>(decode_block(stored, wrong)));
  wrong = info;
  wrong.type = field_type::integer;  // the values column is floats: refused by its scheme
  EXPECT_TRUE(std::holds_alternative<std::string>(decode_block(stored, wrong)));
  EXPECT_TRUE(std::holds_alternative<std::string>(decode_block(stored.substr(0, 3), info)));

  // A value of another type, or unequal sizes, is no block.
  std::string ignored;
  EXPECT_FALSE(encode_block(field_type::integer, times, values, ignored, error));
  EXPECT_FALSE(
      encode_block(field_type::floating, std::vector<std::int64_t>{1}, values, ignored, error));
}

TEST(partition, an_unfinished_writer_leaves_nothing_behind) {
  temp_dir dir;
  const auto path = dir.path() / "00000000000000000005.tsp";
  {
    std::error_code error;
    auto out = writer::create(path, error);
    ASSERT_TRUE(out);
    const std::vector<std::int64_t> times{1};
    const std::vector<field_value> values{field_value(true)};
    ASSERT_FALSE(out->add(1, "m", "b", field_type::boolean, times, values));
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(partition, directories_are_created_with_their_parents) {
  temp_dir dir;
  const auto deep = dir.path() / "a" / "b" / "c";
  EXPECT_FALSE(create_directories_synced(deep));
  EXPECT_TRUE(fs::is_directory(deep));
  EXPECT_FALSE(create_directories_synced(deep));  // existing: fine
}

}  // namespace
}  // namespace nimbus::tsdb::partition
