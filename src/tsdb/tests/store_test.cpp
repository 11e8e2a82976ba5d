// The store on temp files, a real write queue and a manual clock: writes and reads of every type,
// InfluxDB's refusals and drops, durability through the WAL and partitions (restarts, a torn WAL
// tail), flush, compaction, retention, and databases and policies with InfluxDB's errors.
#include "tsdb/store.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "core/clock.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"
#include "tsdb/line_protocol.hpp"
#include "tsdb/partition.hpp"
#include "tsdb/rollup.hpp"

namespace nimbus::tsdb {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::int64_t second_ns = 1'000'000'000;
constexpr std::int64_t hour_ns = 3600 * second_ns;
constexpr std::int64_t day_ns = 24 * hour_ns;

// A store on a temp directory, a SQLite file and a manual clock; reopen() restarts it on the same
// files, as a process restart would (without a flush: stop() flushes nothing).
class harness {
 public:
  explicit harness(const std::function<void(store_settings&)>& configure = {}) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("nimbus-tsdb-store-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    settings.dir = dir_ / "tsdb";
    settings.wal_fsync = seglog::fsync_policy::never;
    if (configure) configure(settings);
    db_path_ = (dir_ / "nimbus.db").string();
    {
      storage::database db(db_path_);
      store::migrate(db);
    }
    writer_ = std::make_unique<storage::write_queue>(db_path_, "normal", 1ms);
    open();
  }
  ~harness() {
    s.reset();
    writer_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  harness(const harness&) = delete;
  harness& operator=(const harness&) = delete;

  void open() {
    storage::database db(db_path_);
    s = std::make_unique<store>(*writer_, db, clock, settings);
  }
  void close() {
    s.reset();
    writer_->drain();
  }
  void reopen() {
    close();
    open();
  }

  std::int64_t now_ns() const { return clock.unix_millis() * 1'000'000; }

  write_outcome write(const std::string& database, const std::string& policy,
                      std::string_view lines) {
    auto parsed = parse_lines(lines, precision::ns, now_ns());
    EXPECT_TRUE(parsed.errors.empty()) << lines;
    return write_points(database, policy, std::move(parsed.points));
  }
  write_outcome write_points(const std::string& database, const std::string& policy,
                             std::vector<point> points) {
    std::promise<write_outcome> written;
    auto answer = written.get_future();
    s->write(database, policy, std::move(points),
             [&written](write_outcome outcome) { written.set_value(std::move(outcome)); });
    return answer.get();
  }
  // As the HTTP API writes a request's body: the WAL may keep the body itself.
  write_outcome write_lines(const std::string& database, std::string_view body, precision unit,
                            std::int64_t request_now_ns) {
    const store::lines_source source{body, unit, request_now_ns};
    auto parsed = parse_lines(body, unit, request_now_ns);
    std::promise<write_outcome> written;
    auto answer = written.get_future();
    s->write_lines(database, "", source, std::move(parsed),
                   [&written](write_outcome outcome) { written.set_value(std::move(outcome)); });
    return answer.get();
  }
  // Runs a metadata call with a `done` and waits for its answer.
  template <class Call>
  std::optional<std::string> change(Call call) {
    std::promise<std::optional<std::string>> done;
    auto answer = done.get_future();
    call([&done](std::optional<std::string> error) { done.set_value(std::move(error)); });
    return answer.get();
  }
  std::optional<std::string> create_database(const std::string& name,
                                             std::optional<retention_policy> policy = {}) {
    return change([&](store::on_done done) { s->create_database(name, policy, std::move(done)); });
  }
  std::optional<std::string> drop_database(const std::string& name) {
    return change([&](store::on_done done) { s->drop_database(name, std::move(done)); });
  }

  field_column read(const std::string& key, const std::string& field,
                    const std::string& database = "nimbus", const std::string& policy = "",
                    std::int64_t min_ns = min_time_ns, std::int64_t max_ns = max_time_ns) {
    return s->read(database, policy, series_id(key), field, min_ns, max_ns);
  }
  // The points of a float field as (time, value) pairs.
  std::vector<std::pair<std::int64_t, double>> floats(const std::string& key,
                                                      const std::string& field,
                                                      const std::string& database = "nimbus",
                                                      const std::string& policy = "") {
    const auto column = read(key, field, database, policy);
    EXPECT_EQ(column.type, field_type::floating);
    std::vector<std::pair<std::int64_t, double>> points;
    for (std::size_t i = 0; i < column.times.size(); ++i)
      points.emplace_back(column.times[i], std::get<double>(column.values[i]));
    return points;
  }

  std::vector<fs::path> files_under(const fs::path& dir, std::string_view extension) const {
    std::vector<fs::path> found;
    if (!fs::exists(dir)) return found;
    for (const auto& entry : fs::recursive_directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().extension() == extension)
        found.push_back(entry.path());
    std::sort(found.begin(), found.end());
    return found;
  }
  std::vector<fs::path> partition_files() const {
    return files_under(settings.dir / "data", ".tsp");
  }

  core::manual_clock clock;
  store_settings settings;
  std::unique_ptr<store> s;

 private:
  fs::path dir_;
  std::string db_path_;
  std::unique_ptr<storage::write_queue> writer_;
};

using pairs = std::vector<std::pair<std::int64_t, double>>;

TEST(store, writes_and_reads_back_every_field_type) {
  harness h;
  const auto outcome = h.write("nimbus", "",
                               "m,host=a f=1.5,i=-3i,u=7u,b=true,s=\"hi \\\"there\\\"\\\\\" 1000\n"
                               "m,host=a f=-2,i=9223372036854775807i,u=18446744073709551615u,"
                               "b=false,s=\"line\nbreak\" 2000\n");
  EXPECT_EQ(outcome.refusal, write_refusal::none);
  EXPECT_EQ(outcome.written, 2U);
  EXPECT_EQ(outcome.dropped, 0U);

  const std::string key = "m,host=a";
  const auto f = h.read(key, "f");
  EXPECT_EQ(f.type, field_type::floating);
  EXPECT_EQ(f.times, (std::vector<std::int64_t>{1000, 2000}));
  EXPECT_EQ(f.values, (std::vector<field_value>{1.5, -2.0}));
  const auto i = h.read(key, "i");
  EXPECT_EQ(i.type, field_type::integer);
  EXPECT_EQ(i.values,
            (std::vector<field_value>{std::int64_t{-3}, std::int64_t{9223372036854775807}}));
  const auto u = h.read(key, "u");
  EXPECT_EQ(u.type, field_type::unsigned_integer);
  EXPECT_EQ(u.values,
            (std::vector<field_value>{std::uint64_t{7}, std::uint64_t{18446744073709551615ULL}}));
  const auto b = h.read(key, "b");
  EXPECT_EQ(b.type, field_type::boolean);
  EXPECT_EQ(b.values, (std::vector<field_value>{true, false}));
  const auto text = h.read(key, "s");
  EXPECT_EQ(text.type, field_type::string);
  EXPECT_EQ(text.values,
            (std::vector<field_value>{std::string("hi \"there\"\\"), std::string("line\nbreak")}));

  // The same after a restart: the WAL's line protocol round-trips every type.
  h.reopen();
  EXPECT_EQ(h.read(key, "i").values, i.values);
  EXPECT_EQ(h.read(key, "u").values, u.values);
  EXPECT_EQ(h.read(key, "s").values, text.values);
  EXPECT_EQ(h.read(key, "b").values, b.values);
  // And from a partition.
  h.s->flush();
  h.reopen();
  EXPECT_EQ(h.read(key, "f").values, f.values);
  EXPECT_EQ(h.read(key, "s").values, text.values);

  const auto fields = h.s->fields("nimbus", "m");
  EXPECT_EQ(fields, (std::map<std::string, field_type>{{"b", field_type::boolean},
                                                       {"f", field_type::floating},
                                                       {"i", field_type::integer},
                                                       {"s", field_type::string},
                                                       {"u", field_type::unsigned_integer}}));
  EXPECT_EQ(h.s->measurements("nimbus"), std::vector<std::string>{"m"});
  const auto series = h.s->series("nimbus", "m");
  ASSERT_EQ(series.size(), 1U);
  EXPECT_EQ(series[0].id, series_id(key));
  EXPECT_EQ(series[0].measurement, "m");
  EXPECT_EQ(series[0].tags, (std::vector<std::pair<std::string, std::string>>{{"host", "a"}}));

  // A field that is not there: empty, with the metadata's type (floating when unknown).
  const auto missing = h.read(key, "nope");
  EXPECT_TRUE(missing.times.empty());
  EXPECT_EQ(missing.type, field_type::floating);
  EXPECT_TRUE(h.read("m,host=zzz", "i").times.empty());
  EXPECT_EQ(h.read("m,host=zzz", "i").type, field_type::floating);
}

TEST(store, series_and_measurements_are_listed_in_order) {
  harness h;
  h.write("nimbus", "", "cpu,host=b v=1 1\ncpu,host=a v=1 1\nmem,host=a v=1 1\ndisk v=1 1\n");
  EXPECT_EQ(h.s->measurements("nimbus"), (std::vector<std::string>{"cpu", "disk", "mem"}));
  const auto cpu = h.s->series("nimbus", "cpu");
  ASSERT_EQ(cpu.size(), 2U);
  EXPECT_EQ(cpu[0].id, series_id("cpu,host=a"));
  EXPECT_EQ(cpu[1].id, series_id("cpu,host=b"));
  const auto all = h.s->series("nimbus", "");
  ASSERT_EQ(all.size(), 4U);
  EXPECT_EQ(all[0].id, series_id("cpu,host=a"));
  EXPECT_EQ(all[2].id, series_id("disk"));
  EXPECT_EQ(all[3].id, series_id("mem,host=a"));
  EXPECT_TRUE(h.s->series("nope", "").empty());
  EXPECT_TRUE(h.s->measurements("nope").empty());
  EXPECT_EQ(h.s->stats().series, 4U);
}

TEST(store, refuses_writes_to_a_missing_database_or_policy) {
  harness h;
  auto outcome = h.write("nope", "", "m v=1 1");
  EXPECT_EQ(outcome.refusal, write_refusal::database_not_found);
  EXPECT_EQ(outcome.message, "database not found: \"nope\"");
  EXPECT_EQ(outcome.written, 0U);
  outcome = h.write("nimbus", "nope", "m v=1 1");
  EXPECT_EQ(outcome.refusal, write_refusal::retention_policy_not_found);
  EXPECT_EQ(outcome.message, "retention policy not found: \"nope\"");
  EXPECT_EQ(h.s->stats().writes_refused, 2U);
  EXPECT_TRUE(h.read("m", "v").times.empty());
  // The default policy by name works as well as by omission.
  EXPECT_EQ(h.write("nimbus", "autogen", "m v=1 1").written, 1U);
  EXPECT_EQ(h.floats("m", "v"), (pairs{{1, 1.0}}));
}

TEST(store, drops_points_whose_field_type_conflicts) {
  harness h;
  auto outcome = h.write("nimbus", "", "m v=1 1\nm v=2i 2\nm v=3 3\nm v=\"x\" 4\n");
  EXPECT_EQ(outcome.refusal, write_refusal::none);
  EXPECT_EQ(outcome.written, 2U);
  EXPECT_EQ(outcome.dropped, 2U);
  EXPECT_EQ(outcome.message,
            "field type conflict: input field \"v\" on measurement \"m\" is type integer, "
            "already exists as type float");

  // A conflicting point goes whole: its w does not take a type either.
  outcome = h.write("nimbus", "", "m v=true,w=1.5 5\nm w=2i 6\n");
  EXPECT_EQ(outcome.written, 1U);
  EXPECT_EQ(outcome.dropped, 1U);
  EXPECT_EQ(outcome.message,
            "field type conflict: input field \"v\" on measurement \"m\" is type boolean, "
            "already exists as type float");
  EXPECT_EQ(h.floats("m", "v"), (pairs{{1, 1.0}, {3, 3.0}}));
  EXPECT_EQ(h.read("m", "w").times, (std::vector<std::int64_t>{6}));
  // A type is per measurement: another one may use v as an integer.
  EXPECT_EQ(h.write("nimbus", "", "other v=1i 1").written, 1U);
  EXPECT_EQ(h.s->stats().points_dropped, 3U);

  // Types survive a restart (SQLite), so conflicts stay conflicts.
  h.reopen();
  outcome = h.write("nimbus", "", "m v=7i 7");
  EXPECT_EQ(outcome.dropped, 1U);
  EXPECT_EQ(h.s->fields("nimbus", "m").at("v"), field_type::floating);
  EXPECT_EQ(h.s->fields("nimbus", "m").at("w"), field_type::integer);
}

TEST(store, same_series_and_time_merge_fields_last_write_wins) {
  harness h;
  h.write("nimbus", "", "m a=1,b=1 10");
  h.write("nimbus", "", "m a=2 10");
  h.write("nimbus", "", "m c=3 10\nm a=5 20\nm a=6 20\n");
  EXPECT_EQ(h.floats("m", "a"), (pairs{{10, 2.0}, {20, 6.0}}));
  EXPECT_EQ(h.floats("m", "b"), (pairs{{10, 1.0}}));
  EXPECT_EQ(h.floats("m", "c"), (pairs{{10, 3.0}}));
  // Across a flush: the newer write, in memory, wins over the partition.
  h.s->flush();
  h.write("nimbus", "", "m a=7 10");
  EXPECT_EQ(h.floats("m", "a"), (pairs{{10, 7.0}, {20, 6.0}}));
  h.reopen();
  EXPECT_EQ(h.floats("m", "a"), (pairs{{10, 7.0}, {20, 6.0}}));
}

TEST(store, reads_out_of_order_points_sorted) {
  harness h;
  h.write("nimbus", "", "m v=30 30\nm v=10 10");
  h.write("nimbus", "", "m v=20 20\nm v=11 10\nm v=5 5");
  EXPECT_EQ(h.floats("m", "v"), (pairs{{5, 5.0}, {10, 11.0}, {20, 20.0}, {30, 30.0}}));
  const auto range = h.read("m", "v", "nimbus", "", 10, 20);
  EXPECT_EQ(range.times, (std::vector<std::int64_t>{10, 20}));
  EXPECT_TRUE(h.read("m", "v", "nimbus", "", 21, 29).times.empty());
  EXPECT_TRUE(h.read("m", "v", "nimbus", "", 30, 10).times.empty());
  h.s->flush();
  EXPECT_EQ(h.floats("m", "v"), (pairs{{5, 5.0}, {10, 11.0}, {20, 20.0}, {30, 30.0}}));
}

TEST(store, points_survive_a_restart_through_the_wal) {
  harness h;
  h.write("nimbus", "", "cpu,host=a load=1 100\ncpu,host=a load=2 200\n");
  h.write("nimbus", "", "cpu,host=b load=3 100\n");
  const auto before = h.s->stats();
  EXPECT_EQ(before.points_written, 3U);
  EXPECT_EQ(before.buffered_points, 3U);
  EXPECT_GT(before.buffered_bytes, 0U);
  EXPECT_GT(before.wal_bytes, 0U);
  EXPECT_EQ(before.partitions, 0U);

  h.reopen();  // no flush: only the WAL has them
  EXPECT_EQ(h.floats("cpu,host=a", "load"), (pairs{{100, 1.0}, {200, 2.0}}));
  EXPECT_EQ(h.floats("cpu,host=b", "load"), (pairs{{100, 3.0}}));
  EXPECT_EQ(h.s->stats().buffered_points, 3U);
  EXPECT_EQ(h.s->series("nimbus", "cpu").size(), 2U);
  // Replaying does not append again: a second restart finds the same.
  h.reopen();
  EXPECT_EQ(h.floats("cpu,host=a", "load"), (pairs{{100, 1.0}, {200, 2.0}}));
  EXPECT_EQ(h.s->stats().wal_bytes, before.wal_bytes);
}

TEST(store, a_request_body_kept_in_the_wal_replays_to_the_same_points) {
  harness h;
  const std::int64_t request_ns = 1'700'000'123'456'789'000;
  // Seconds; a line without a time takes the request's, truncated; tags out of order and
  // escapes take the canonical key; a bad line is refused and the rest kept (written anew).
  auto outcome = h.write_lines("nimbus",
                               "cpu,host=a load=1 100\n"
                               "cpu,zone=z,host=b load=2\n"
                               "cpu,host=c\\ d load=3 300\n",
                               precision::s, request_ns);
  EXPECT_EQ(outcome.written, 3U);
  outcome =
      h.write_lines("nimbus", "cpu,host=a load=4 400\nnot a line\n", precision::s, request_ns);
  EXPECT_EQ(outcome.written, 1U);
  // A type conflict drops a point: the taken ones are written anew, also replayed.
  outcome = h.write_lines("nimbus", "cpu,host=a load=\"x\" 500\ncpu,host=a load=6 600\n",
                          precision::s, request_ns);
  EXPECT_EQ(outcome.written, 1U);
  EXPECT_EQ(outcome.dropped, 1U);
  const pairs a{{100'000'000'000, 1.0}, {400'000'000'000, 4.0}, {600'000'000'000, 6.0}};
  const pairs b{{1'700'000'123'000'000'000, 2.0}};
  const pairs c{{300'000'000'000, 3.0}};
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(h.floats("cpu,host=a", "load"), a);
    EXPECT_EQ(h.floats("cpu,host=b,zone=z", "load"), b);
    EXPECT_EQ(h.floats("cpu,host=c\\ d", "load"), c);
    EXPECT_EQ(h.s->series("nimbus", "cpu").size(), 3U);
    h.reopen();  // only the WAL has them
  }
}

TEST(store, flush_writes_partitions_and_drops_the_wal) {
  harness h([](store_settings& s) { s.wal_segment_bytes = 512; });
  pairs expected;
  for (int i = 0; i < 60; ++i) {
    h.write("nimbus", "", "m,host=a v=" + std::to_string(i) + " " + std::to_string(i * 1000));
    expected.emplace_back(i * 1000, i);
  }
  const auto before = h.s->stats();
  EXPECT_GT(h.files_under(h.settings.dir / "wal", ".seg").size(), 2U);
  h.s->flush();
  const auto after = h.s->stats();
  EXPECT_EQ(after.flushes, 1U);
  EXPECT_EQ(after.partitions, 1U);
  EXPECT_GT(after.partition_bytes, 0U);
  EXPECT_EQ(after.buffered_bytes, 0U);
  EXPECT_EQ(after.buffered_points, 0U);
  EXPECT_LT(after.wal_bytes, before.wal_bytes);
  // Nothing newer than the flush: the WAL's active segment goes too, a moment later (the
  // committer starts a new one).
  for (int i = 0; i < 5000 && h.s->stats().wal_bytes > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(h.s->stats().wal_bytes, 0U);
  EXPECT_EQ(h.files_under(h.settings.dir / "wal", ".seg").size(), 1U);
  EXPECT_EQ(h.partition_files().size(), 1U);
  EXPECT_EQ(h.partition_files()[0].parent_path().filename().string(), "1970-01-01");
  EXPECT_EQ(h.floats("m,host=a", "v"), expected);

  // After a restart the points come from the partition, not from a replay.
  h.reopen();
  EXPECT_EQ(h.floats("m,host=a", "v"), expected);
  EXPECT_EQ(h.s->stats().buffered_points, 0U);
  EXPECT_EQ(h.s->series("nimbus", "m").size(), 1U);
  EXPECT_EQ(h.s->fields("nimbus", "m").at("v"), field_type::floating);
  const auto newest = h.s->last("nimbus", "", series_id("m,host=a"), "v");
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->first, 59'000);
  EXPECT_EQ(newest->second, field_value(59.0));
}

TEST(store, a_torn_wal_tail_is_cut_and_earlier_points_survive) {
  harness h;
  h.write("nimbus", "", "m v=1 1");
  h.write("nimbus", "", "m v=2 2");
  h.write("nimbus", "", "m v=3 3");
  h.close();
  const auto segments = h.files_under(h.settings.dir / "wal", ".seg");
  ASSERT_FALSE(segments.empty());
  {
    std::ofstream tail(segments.back(), std::ios::binary | std::ios::app);
    const char garbage[] = "\x40\x00\x00\x00\x12\x34\x56\x78garbage that is no frame";
    tail.write(garbage, sizeof garbage - 1);
  }
  h.open();
  EXPECT_EQ(h.floats("m", "v"), (pairs{{1, 1.0}, {2, 2.0}, {3, 3.0}}));
  EXPECT_EQ(h.write("nimbus", "", "m v=4 4").written, 1U);
  h.reopen();
  EXPECT_EQ(h.floats("m", "v"), (pairs{{1, 1.0}, {2, 2.0}, {3, 3.0}, {4, 4.0}}));
}

TEST(store, reads_merge_partitions_and_memory_and_compaction_keeps_the_last_write) {
  harness h;
  h.write("nimbus", "", "m v=1 1\nm v=1 2\nm v=1 3\n");
  h.s->flush();
  h.write("nimbus", "", "m v=20 2\nm v=4 4\n");
  EXPECT_EQ(h.floats("m", "v"), (pairs{{1, 1.0}, {2, 20.0}, {3, 1.0}, {4, 4.0}}));
  h.s->flush();
  h.write("nimbus", "", "m v=30 3\n");
  EXPECT_EQ(h.partition_files().size(), 2U);
  const pairs expected{{1, 1.0}, {2, 20.0}, {3, 30.0}, {4, 4.0}};
  EXPECT_EQ(h.floats("m", "v"), expected);

  h.s->compact();
  EXPECT_EQ(h.partition_files().size(), 1U);
  EXPECT_EQ(h.s->stats().partitions, 1U);
  EXPECT_EQ(h.floats("m", "v"), expected);
  // The merged file alone (memory flushed, then a restart) still has the later writes.
  h.s->flush();
  h.s->compact();
  h.reopen();
  EXPECT_EQ(h.partition_files().size(), 1U);
  EXPECT_EQ(h.floats("m", "v"), expected);
}

TEST(store, partitions_are_days_and_a_read_spans_them) {
  harness h;
  const std::int64_t day1 = 19'000 * day_ns;  // 2022-01-08
  h.write("nimbus", "",
          "m v=1 " + std::to_string(day1 + 5) + "\nm v=2 " + std::to_string(day1 + day_ns + 5) +
              "\nm v=3 " + std::to_string(day1 + 2 * day_ns + 5) + "\n");
  h.s->flush();
  const auto files = h.partition_files();
  ASSERT_EQ(files.size(), 3U);
  EXPECT_EQ(files[0].parent_path().filename().string(), "2022-01-08");
  EXPECT_EQ(files[2].parent_path().filename().string(), "2022-01-10");
  EXPECT_EQ(h.s->stats().partitions, 3U);
  const auto middle = h.read("m", "v", "nimbus", "", day1 + day_ns, day1 + 2 * day_ns - 1);
  EXPECT_EQ(middle.values, (std::vector<field_value>{2.0}));
  EXPECT_EQ(h.read("m", "v").times.size(), 3U);
}

TEST(store, retention_removes_expired_points) {
  harness h;
  // Old points go in while the policy keeps everything; then it is cut to one hour.
  ASSERT_EQ(h.create_database("short", retention_policy{"hour", 0, 0, 1, true}), std::nullopt);
  const std::int64_t old_ns = h.now_ns() - 3 * day_ns;
  const std::int64_t recent_ns = h.now_ns() - 60 * second_ns;
  h.write("short", "", "m v=1 " + std::to_string(old_ns));
  h.s->flush();                                                 // one old day in a partition
  h.write("short", "", "m v=2 " + std::to_string(old_ns + 1));  // and one in memory
  h.write("short", "", "m v=3 " + std::to_string(recent_ns));
  EXPECT_EQ(h.floats("m", "v", "short").size(), 3U);
  h.write("nimbus", "", "m v=1 " + std::to_string(old_ns));  // autogen keeps everything
  const auto shorten = h.change([&h](store::on_done done) {
    h.s->alter_retention_policy("short", "hour", hour_ns, hour_ns, std::nullopt, false,
                                std::move(done));
  });
  ASSERT_EQ(shorten, std::nullopt);

  h.s->enforce_retention();
  EXPECT_EQ(h.floats("m", "v", "short"), (pairs{{recent_ns, 3.0}}));
  EXPECT_EQ(h.floats("m", "v", "nimbus").size(), 1U);
  for (const auto& file : h.partition_files())
    EXPECT_EQ(file.string().find("short"), std::string::npos) << file.string();
  const auto newest = h.s->last("short", "", series_id("m"), "v");
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->first, recent_ns);

  // InfluxDB drops a point older than its policy keeps, on write and so at replay too.
  const auto outcome = h.write("short", "", "m v=4 " + std::to_string(old_ns));
  EXPECT_EQ(outcome.dropped, 1U);
  EXPECT_EQ(outcome.message, "points beyond retention policy");
  h.reopen();
  EXPECT_EQ(h.floats("m", "v", "short"), (pairs{{recent_ns, 3.0}}));
}

// Points every 10 s over three hours of one day: 180 per hour, 6 per minute.
std::string three_hours_of_points(std::int64_t day_start_ns) {
  std::string lines;
  for (std::int64_t t = 0; t < 3 * 360; ++t)
    lines += "m v=" + std::to_string(t % 7) + " " +
             std::to_string(day_start_ns + 2 * hour_ns + t * 10 * second_ns) + "\n";
  return lines;
}

// The tiers a partition file of `key`'s field v summarises, coarsest first.
std::vector<std::int64_t> tiers_in(const fs::path& file) {
  auto opened = partition::reader::open(file);
  EXPECT_TRUE(opened.file) << opened.error;
  std::vector<std::int64_t> tiers;
  if (!opened.file) return tiers;
  for (const std::int64_t tier : rollup::tiers)
    if (opened.file->has_tier(tier)) tiers.push_back(tier);
  return tiers;
}

bool has_points(const fs::path& file) {
  auto opened = partition::reader::open(file);
  return opened.file && !opened.file->blocks().empty();
}

TEST(store, rollups_outlive_their_points_as_long_as_their_retention_says) {
  harness h;
  ASSERT_EQ(h.create_database("plant", retention_policy{"autogen", 0, 0, 1, true}), std::nullopt);
  // Hourly and daily summaries for ever, the minute ones as long as the points.
  h.s->set_rollup_retention("plant", rollup_retention{{{rollup::hour_ns, 0}, {rollup::day_ns, 0}}});
  const std::int64_t today = (h.now_ns() / day_ns) * day_ns;
  const std::int64_t old_day = today - 5 * day_ns;
  h.write("plant", "", three_hours_of_points(old_day));
  h.write("plant", "", "m v=1 " + std::to_string(h.now_ns() - 60 * second_ns));
  h.s->flush();
  ASSERT_EQ(h.partition_files().size(), 2U);
  const fs::path old_file = h.partition_files().front();
  const std::vector<std::int64_t> every_tier(std::begin(rollup::tiers), std::end(rollup::tiers));
  EXPECT_EQ(tiers_in(old_file), every_tier);
  const auto id = series_id("m");
  const auto before =
      h.s->read_rollup("plant", "", id, "v", rollup::hour_ns, old_day, old_day + day_ns - 1);

  // The points now live two days: the old day keeps its hours and its day, not its minutes.
  ASSERT_EQ(h.change([&h](store::on_done done) {
    h.s->alter_retention_policy("plant", "autogen", 2 * day_ns, day_ns, std::nullopt, false,
                                std::move(done));
  }),
            std::nullopt);
  h.s->enforce_retention();
  ASSERT_EQ(h.partition_files().size(), 2U);
  EXPECT_FALSE(has_points(old_file));
  EXPECT_EQ(tiers_in(old_file), (std::vector<std::int64_t>{rollup::day_ns, rollup::hour_ns}));
  EXPECT_TRUE(h.read("m", "v", "plant", "", old_day, old_day + day_ns - 1).times.empty());
  const auto check_hours = [&] {
    const auto hours =
        h.s->read_rollup("plant", "", id, "v", rollup::hour_ns, old_day, old_day + day_ns - 1);
    EXPECT_EQ(hours.buckets, before.buckets);  // the same three hours, 360 points each
    ASSERT_EQ(hours.buckets.size(), 3U);
    EXPECT_EQ(hours.buckets[1].count, 360U);
    const auto whole_day =
        h.s->read_rollup("plant", "", id, "v", rollup::day_ns, old_day, old_day + day_ns - 1);
    ASSERT_EQ(whole_day.buckets.size(), 1U);
    EXPECT_EQ(whole_day.buckets[0].count, 3U * 360U);
    // Minutes are gone with the points: nothing finer answers.
    const auto minutes =
        h.s->read_rollup("plant", "", id, "v", rollup::minute_ns, old_day + 2 * hour_ns,
                         old_day + 2 * hour_ns + 599 * second_ns);
    EXPECT_TRUE(minutes.buckets.empty());
  };
  check_hours();
  // A restart finds the series and its field in the summaries alone.
  h.reopen();
  check_hours();
  EXPECT_EQ(h.s->series("plant", "m").size(), 1U);
  EXPECT_EQ(h.s->fields("plant", "m").at("v"), field_type::floating);
  EXPECT_EQ(h.s->stats().partitions, 2U);

  // Hours kept three days: the five-day-old day keeps its daily bucket alone.
  h.s->set_rollup_retention("plant",
                            rollup_retention{{{rollup::hour_ns, 3 * day_ns}, {rollup::day_ns, 0}}});
  h.s->enforce_retention();
  EXPECT_EQ(tiers_in(old_file), (std::vector<std::int64_t>{rollup::day_ns}));
  EXPECT_TRUE(h.s->read_rollup("plant", "", id, "v", rollup::hour_ns, old_day + 2 * hour_ns,
                               old_day + 3 * hour_ns - 1)
                  .buckets.empty());
  EXPECT_EQ(h.s->read_rollup("plant", "", id, "v", rollup::day_ns, old_day, old_day + day_ns - 1)
                .buckets.at(0)
                .count,
            3U * 360U);
  // And days four: the day goes, file and directory.
  h.s->set_rollup_retention(
      "plant", rollup_retention{{{rollup::hour_ns, 3 * day_ns}, {rollup::day_ns, 4 * day_ns}}});
  h.s->enforce_retention();
  EXPECT_FALSE(fs::exists(old_file.parent_path()));
  EXPECT_EQ(h.partition_files().size(), 1U);
  EXPECT_EQ(h.floats("m", "v", "plant").size(), 1U);  // today's point stays
}

TEST(store, a_summarised_day_answers_coarser_reads_from_finer_tiers_and_counts_each_point_once) {
  harness h;
  // Points two days; hours for ever; days (not named) as long as the points.
  ASSERT_EQ(h.create_database("plant", retention_policy{"autogen", 0, 0, 1, true}), std::nullopt);
  h.s->set_rollup_retention("plant", rollup_retention{{{rollup::hour_ns, 0}}});
  const std::int64_t old_day = (h.now_ns() / day_ns) * day_ns - 5 * day_ns;
  const std::string lines = three_hours_of_points(old_day);
  const std::size_t half = lines.find('\n', lines.size() / 2) + 1;
  h.write("plant", "", lines.substr(0, half));
  h.s->flush();
  h.write("plant", "", lines.substr(half));
  h.s->flush();  // two files in the day
  auto files = h.partition_files();
  ASSERT_EQ(files.size(), 2U);
  const fs::path older = files[0];
  const fs::path kept_aside = h.settings.dir / "older.tsp";
  fs::copy_file(older, kept_aside);
  ASSERT_EQ(h.change([&h](store::on_done done) {
    h.s->alter_retention_policy("plant", "autogen", 2 * day_ns, day_ns, std::nullopt, false,
                                std::move(done));
  }),
            std::nullopt);
  h.s->enforce_retention();
  files = h.partition_files();
  ASSERT_EQ(files.size(), 1U);
  EXPECT_EQ(tiers_in(files[0]), (std::vector<std::int64_t>{rollup::hour_ns}));
  const auto id = series_id("m");
  const auto counted = [&] {
    const auto day =
        h.s->read_rollup("plant", "", id, "v", rollup::day_ns, old_day, old_day + day_ns - 1);
    std::uint64_t count = 0;
    for (const auto& b : day.buckets) count += b.count;
    return std::pair(day.buckets.size(), count);
  };
  // The day tier is gone: a whole-day read is answered by the three hours.
  EXPECT_EQ(counted(), std::pair(std::size_t{3}, std::uint64_t{3 * 360}));
  // A crash between the rename and the deletions leaves the older file with its points beside
  // the summary: the next pass must not count them twice.
  h.close();
  fs::copy_file(kept_aside, older);
  h.open();
  h.s->set_rollup_retention("plant", rollup_retention{{{rollup::hour_ns, 0}}});  // as at a start
  EXPECT_EQ(h.partition_files().size(), 2U);
  // Until the next pass the overlap reads finer (some of it lost), never twice.
  EXPECT_LE(counted().second, 3U * 360U);
  h.s->enforce_retention();
  ASSERT_EQ(h.partition_files().size(), 1U);
  EXPECT_EQ(counted(), std::pair(std::size_t{3}, std::uint64_t{3 * 360}));
}

TEST(store, a_tier_kept_shorter_than_the_points_leaves_the_files_and_the_points_answer) {
  harness h;
  // Points for ever; minute summaries one day.
  h.s->set_rollup_retention("nimbus", rollup_retention{{{rollup::minute_ns, day_ns}}});
  const std::int64_t old_day = (h.now_ns() / day_ns) * day_ns - 5 * day_ns;
  h.write("nimbus", "", three_hours_of_points(old_day));
  h.s->flush();
  const fs::path file = h.partition_files().at(0);
  const std::vector<std::int64_t> every_tier(std::begin(rollup::tiers), std::end(rollup::tiers));
  EXPECT_EQ(tiers_in(file), every_tier);
  h.s->enforce_retention();
  EXPECT_TRUE(has_points(file));
  EXPECT_EQ(tiers_in(file), (std::vector<std::int64_t>{rollup::day_ns, rollup::hour_ns}));
  EXPECT_EQ(h.read("m", "v").times.size(), 3U * 360U);
  // A minute-grouped read gets the points where the minutes were.
  const std::int64_t from = old_day + 2 * hour_ns;
  const auto minutes = h.s->read_rollup("nimbus", "", series_id("m"), "v", rollup::minute_ns, from,
                                        from + 10 * rollup::minute_ns - 1);
  EXPECT_TRUE(minutes.buckets.empty());
  ASSERT_EQ(minutes.raw.size(), 1U);
  EXPECT_EQ(
      h.read("m", "v", "nimbus", "", minutes.raw[0].first, minutes.raw[0].second).times.size(),
      60U);
  // Compaction of that day with a late point keeps the tiers the retention keeps.
  h.write("nimbus", "", "m v=9 " + std::to_string(old_day + 2 * hour_ns + 5));
  h.s->flush();
  h.s->compact();
  ASSERT_EQ(h.partition_files().size(), 1U);
  EXPECT_EQ(tiers_in(h.partition_files()[0]),
            (std::vector<std::int64_t>{rollup::day_ns, rollup::hour_ns}));
  EXPECT_EQ(h.read("m", "v").times.size(), 3U * 360U + 1U);
}

TEST(store, creates_and_drops_databases_and_policies_with_influx_errors) {
  harness h;
  EXPECT_EQ(h.create_database(""), "database name required");
  EXPECT_EQ(h.create_database("db1"), std::nullopt);
  EXPECT_EQ(h.create_database("db1"), std::nullopt);  // existing: no error
  const auto autogen = h.s->policy("db1", "");
  ASSERT_TRUE(autogen);
  EXPECT_EQ(autogen->name, "autogen");
  EXPECT_EQ(autogen->duration_ns, 0);
  EXPECT_EQ(autogen->shard_group_duration_ns, 7 * day_ns);
  EXPECT_TRUE(autogen->is_default);
  ASSERT_EQ(h.s->databases().size(), 2U);
  EXPECT_EQ(h.s->databases()[0].name, "db1");
  EXPECT_EQ(h.s->databases()[1].name, "nimbus");

  const auto create_policy = [&h](const std::string& database, retention_policy p) {
    return h.change(
        [&](store::on_done done) { h.s->create_retention_policy(database, p, std::move(done)); });
  };
  EXPECT_EQ(create_policy("db1", {"week", 7 * day_ns, 0, 1, false}), std::nullopt);
  EXPECT_EQ(h.s->policy("db1", "week")->shard_group_duration_ns, day_ns);
  EXPECT_FALSE(h.s->policy("db1", "week")->is_default);
  EXPECT_EQ(create_policy("db1", {"week", 7 * day_ns, 0, 1, false}), std::nullopt);
  EXPECT_EQ(create_policy("db1", {"week", 8 * day_ns, 0, 1, false}),
            "retention policy already exists");
  EXPECT_EQ(create_policy("missing", {"week", 0, 0, 1, false}), "database not found: missing");
  EXPECT_EQ(create_policy("db1", {"short", hour_ns / 2, 0, 1, false}),
            "retention policy duration must be at least 1h0m0s");
  EXPECT_EQ(create_policy("db1", {"", 0, 0, 1, false}), "retention policy name required");
  EXPECT_EQ(create_policy("db1", {"hour", hour_ns, 0, 1, false}), std::nullopt);
  EXPECT_EQ(h.s->policy("db1", "hour")->shard_group_duration_ns, hour_ns);
  EXPECT_EQ(create_policy("db1", {"long", 5000 * hour_ns, 0, 1, false}), std::nullopt);
  EXPECT_EQ(h.s->policy("db1", "long")->shard_group_duration_ns, 7 * day_ns);

  const auto alter = [&h](const std::string& name, std::optional<std::int64_t> duration,
                          bool make_default) {
    return h.change([&](store::on_done done) {
      h.s->alter_retention_policy("db1", name, duration, std::nullopt, std::nullopt, make_default,
                                  std::move(done));
    });
  };
  EXPECT_EQ(alter("week", 14 * day_ns, true), std::nullopt);
  EXPECT_EQ(h.s->policy("db1", "")->name, "week");
  EXPECT_EQ(h.s->policy("db1", "week")->duration_ns, 14 * day_ns);
  EXPECT_FALSE(h.s->policy("db1", "autogen")->is_default);
  EXPECT_EQ(alter("nope", std::nullopt, false), "retention policy not found: nope");
  EXPECT_EQ(alter("week", 10 * 60 * second_ns, false),
            "retention policy duration must be at least 1h0m0s");

  const auto drop_policy = [&h](const std::string& database, const std::string& name) {
    return h.change(
        [&](store::on_done done) { h.s->drop_retention_policy(database, name, std::move(done)); });
  };
  EXPECT_EQ(drop_policy("db1", "nope"), "retention policy not found: nope");
  EXPECT_EQ(drop_policy("missing", "week"), "database not found: missing");
  EXPECT_EQ(drop_policy("db1", "hour"), std::nullopt);
  EXPECT_FALSE(h.s->policy("db1", "hour"));

  // Everything above was durable: it comes back after a restart.
  h.reopen();
  EXPECT_EQ(h.s->policy("db1", "")->name, "week");
  EXPECT_EQ(h.s->policy("db1", "week")->duration_ns, 14 * day_ns);
  EXPECT_FALSE(h.s->policy("db1", "hour"));
  EXPECT_EQ(h.s->database("db1")->retention_policies.size(), 3U);  // autogen, long, week

  EXPECT_EQ(h.drop_database("db1"), std::nullopt);
  EXPECT_FALSE(h.s->database("db1"));
  EXPECT_EQ(h.drop_database("db1"), std::nullopt);  // missing: no error
  h.reopen();
  EXPECT_FALSE(h.s->database("db1"));
  EXPECT_TRUE(h.s->database("nimbus"));

  // CREATE DATABASE x WITH DURATION 1d NAME day: that policy, the default.
  EXPECT_EQ(h.create_database("db2", retention_policy{"day", day_ns, 0, 1, false}), std::nullopt);
  EXPECT_EQ(h.s->policy("db2", "")->name, "day");
  EXPECT_EQ(h.s->policy("db2", "")->shard_group_duration_ns, hour_ns);
  EXPECT_FALSE(h.s->policy("db2", "autogen"));
}

TEST(store, dropped_database_points_do_not_come_back_after_recreate_and_restart) {
  harness h;
  ASSERT_EQ(h.create_database("x"), std::nullopt);
  EXPECT_EQ(h.write("x", "", "m v=1 1").written, 1U);
  h.s->flush();                                                   // in a partition
  EXPECT_EQ(h.write("x", "", "m v=2 2\nold v=1 1").written, 2U);  // in the WAL only
  ASSERT_EQ(h.drop_database("x"), std::nullopt);
  EXPECT_EQ(h.write("x", "", "m v=9 9").refusal, write_refusal::database_not_found);
  ASSERT_EQ(h.create_database("x"), std::nullopt);
  EXPECT_TRUE(h.read("m", "v", "x").times.empty());
  EXPECT_EQ(h.write("x", "", "m v=3 3").written, 1U);
  EXPECT_EQ(h.floats("m", "v", "x"), (pairs{{3, 3.0}}));

  h.reopen();
  EXPECT_EQ(h.floats("m", "v", "x"), (pairs{{3, 3.0}}));
  EXPECT_EQ(h.s->measurements("x"), std::vector<std::string>{"m"});
  h.s->flush();
  h.reopen();
  EXPECT_EQ(h.floats("m", "v", "x"), (pairs{{3, 3.0}}));
  EXPECT_EQ(h.partition_files().size(), 1U);
}

TEST(store, dropped_policy_points_do_not_come_back) {
  harness h;
  const auto create = [&h] {
    return h.change([&h](store::on_done done) {
      h.s->create_retention_policy("nimbus", retention_policy{"rp", 0, 0, 1, false},
                                   std::move(done));
    });
  };
  const auto drop = [&h] {
    return h.change(
        [&h](store::on_done done) { h.s->drop_retention_policy("nimbus", "rp", std::move(done)); });
  };
  ASSERT_EQ(create(), std::nullopt);
  EXPECT_EQ(h.write("nimbus", "rp", "m v=1 1").written, 1U);
  ASSERT_EQ(drop(), std::nullopt);
  EXPECT_EQ(h.write("nimbus", "rp", "m v=2 2").refusal, write_refusal::retention_policy_not_found);
  ASSERT_EQ(create(), std::nullopt);
  EXPECT_TRUE(h.read("m", "v", "nimbus", "rp").times.empty());
  h.reopen();
  EXPECT_TRUE(h.read("m", "v", "nimbus", "rp").times.empty());
  EXPECT_TRUE(h.s->policy("nimbus", "rp"));
}

TEST(store, refuses_writes_when_the_cache_is_full) {
  harness h([](store_settings& s) { s.cache_max_memory = 200; });
  EXPECT_EQ(h.write("nimbus", "", "m,host=a v=1 1\nm,host=b v=1 1").written, 2U);
  const auto outcome = h.write("nimbus", "", "m v=2 2");
  EXPECT_EQ(outcome.refusal, write_refusal::cache_full);
  EXPECT_EQ(outcome.message.rfind("cache-max-memory-size exceeded: (", 0), 0U) << outcome.message;
  EXPECT_NE(outcome.message.find("/200)"), std::string::npos) << outcome.message;
  EXPECT_EQ(h.s->stats().writes_refused, 1U);
  h.s->flush();  // frees the buffer
  EXPECT_EQ(h.write("nimbus", "", "m v=2 2").refusal, write_refusal::none);
}

TEST(store, new_series_past_the_limit_are_dropped) {
  harness h([](store_settings& s) { s.max_series_per_database = 2; });
  auto outcome = h.write("nimbus", "", "m,k=a v=1 1\nm,k=b v=1 1\nm,k=c v=1 1\nm,k=a v=2 2\n");
  EXPECT_EQ(outcome.written, 3U);
  EXPECT_EQ(outcome.dropped, 1U);
  EXPECT_EQ(outcome.message, "max-series-per-database limit exceeded: (2)");
  outcome = h.write("nimbus", "", "m,k=d v=1 1");
  EXPECT_EQ(outcome.dropped, 1U);
  EXPECT_EQ(h.s->series("nimbus", "m").size(), 2U);
}

TEST(store, last_returns_the_newest_point) {
  harness h;
  EXPECT_FALSE(h.s->last("nimbus", "", series_id("m"), "v"));
  h.write("nimbus", "", "m v=5 5\nm v=3 3\n");
  auto newest = h.s->last("nimbus", "", series_id("m"), "v");
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->first, 5);
  EXPECT_EQ(newest->second, field_value(5.0));
  h.write("nimbus", "", "m v=50 5");  // same time, later write
  EXPECT_EQ(h.s->last("nimbus", "", series_id("m"), "v")->second, field_value(50.0));
  h.s->flush();
  h.reopen();
  newest = h.s->last("nimbus", "", series_id("m"), "v");
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->first, 5);
  EXPECT_EQ(newest->second, field_value(50.0));
  h.write("nimbus", "", "m v=7 7");
  EXPECT_EQ(h.s->last("nimbus", "", series_id("m"), "v")->first, 7);
  EXPECT_FALSE(h.s->last("nimbus", "", series_id("m"), "nope"));
  EXPECT_FALSE(h.s->last("nope", "", series_id("m"), "v"));
}

TEST(store, the_observer_sees_durable_batches) {
  harness h;
  std::vector<std::pair<std::string, std::size_t>> seen;
  h.s->set_observer([&seen](const written_batch& batch) {
    seen.emplace_back(batch.database + "/" + batch.retention_policy, batch.points->size());
  });
  h.write("nimbus", "", "m v=1 1\nm v=2 2");
  h.write("nimbus", "", "m v=1i 3");  // all dropped: nothing durable to see
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0], (std::pair<std::string, std::size_t>{"nimbus/autogen", 2}));
}

TEST(store, a_partition_with_a_bad_footer_is_set_aside_at_open) {
  harness h;
  h.write("nimbus", "", "m v=1 1");
  h.s->flush();
  h.write("nimbus", "", "m v=2 2");
  h.s->flush();
  const auto files = h.partition_files();
  ASSERT_EQ(files.size(), 2U);
  h.close();
  fs::resize_file(files[0], fs::file_size(files[0]) - 3);
  h.open();
  EXPECT_EQ(h.floats("m", "v"), (pairs{{2, 2.0}}));
  EXPECT_TRUE(fs::exists(files[0].string() + ".corrupt"));
}

TEST(store, the_store_thread_flushes_a_full_buffer) {
  harness h([](store_settings& s) { s.cache_snapshot_memory = 1; });
  h.s->start();
  h.write("nimbus", "", "m v=1 1");
  for (int i = 0; i < 100 && h.s->stats().flushes == 0; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(h.s->stats().flushes, 1U);
  EXPECT_EQ(h.floats("m", "v"), (pairs{{1, 1.0}}));
  h.s->stop();
}

}  // namespace
}  // namespace nimbus::tsdb
