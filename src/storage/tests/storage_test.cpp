#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::storage {
namespace {

std::string temp_db(const char* name) {
  auto dir =
      std::filesystem::temp_directory_path() / ("nimbus-storage-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / name;
  std::filesystem::remove(path);
  return path.string();
}

TEST(database, migrations_apply_once_per_component) {
  auto path = temp_db("migrate.db");
  {
    database db(path);
    db.migrate("a", {"CREATE TABLE a1 (x INTEGER)"});
    db.migrate("b", {"CREATE TABLE b1 (x INTEGER)", "CREATE TABLE b2 (x INTEGER)"});
  }
  database db(path);
  // Re-running must not recreate the tables (which would fail).
  db.migrate("a", {"CREATE TABLE a1 (x INTEGER)", "CREATE TABLE a2 (x INTEGER)"});
  auto count =
      db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE '_%'");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(count.column_int(0), 5);  // a1 a2 b1 b2 schema_versions
  EXPECT_THROW(db.exec("NOT SQL"), database_error);
}

TEST(write_queue, groups_writes_and_reports_durability_in_order) {
  auto path = temp_db("queue.db");
  {
    database db(path);
    db.exec("CREATE TABLE t (v INTEGER)");
  }
  std::atomic<int> durable{0};
  std::uint64_t last = 0;
  {
    write_queue q(path, "normal", std::chrono::milliseconds(1));
    for (int i = 0; i < 1000; ++i) {
      last = q.submit(
          [i](database& db) { db.cached("INSERT INTO t (v) VALUES (?)").bind(1, i).run(); });
      q.when_durable(last, [&] { durable.fetch_add(1); });
    }
    q.drain();
    EXPECT_GE(q.committed(), last);
    EXPECT_LT(q.commits(), 1000U);  // grouped
    EXPECT_EQ(durable.load(), 1000);
    bool immediate = false;
    q.when_durable(last, [&] { immediate = true; });
    EXPECT_TRUE(immediate);
  }
  database db(path);
  auto count = db.prepare("SELECT count(*), sum(v) FROM t");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(count.column_int(0), 1000);
  EXPECT_EQ(count.column_int(1), 999 * 1000 / 2);
}

TEST(write_queue, a_failing_write_is_rolled_back_alone_and_reported) {
  auto path = temp_db("failing.db");
  {
    database db(path);
    db.exec("CREATE TABLE t (v INTEGER UNIQUE)");
  }
  write_queue q(path, "normal", std::chrono::milliseconds(5));
  auto before = q.committed();
  auto a =
      q.submit([](database& db) { db.cached("INSERT INTO t (v) VALUES (?)").bind(1, 1).run(); });
  auto b = q.submit([](database& db) {
    db.cached("INSERT INTO t (v) VALUES (?)").bind(1, 1).run();
  });  // duplicate
  auto c =
      q.submit([](database& db) { db.cached("INSERT INTO t (v) VALUES (?)").bind(1, 2).run(); });
  q.drain();
  EXPECT_FALSE(q.failed_between(before, a));
  EXPECT_TRUE(q.failed_between(a, b));
  EXPECT_TRUE(q.failed_between(before, c));
  EXPECT_FALSE(q.failed_between(b, c));
  // The cached statement still works after its failure.
  auto d =
      q.submit([](database& db) { db.cached("INSERT INTO t (v) VALUES (?)").bind(1, 3).run(); });
  q.drain();
  EXPECT_FALSE(q.failed_between(c, d));
  database db(path);
  auto count = db.prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(count.column_int(0), 3);
}

}  // namespace
}  // namespace nimbus::storage
