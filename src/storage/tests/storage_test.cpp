#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <vector>

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
  ticket last;
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

TEST(ticket, orders_writes_and_names_none_by_default) {
  constexpr ticket none;
  static_assert(none.is_none());
  static_assert(ticket(3) < ticket(4));
  static_assert(later(ticket(3), ticket(7)) == ticket(7));
  static_assert(later(ticket(9), none) == ticket(9));
  static_assert(ticket(5).previous() == ticket(4));
  static_assert(none.previous() == none);
}

TEST(write_queue, nothing_to_wait_for_is_durable_at_once) {
  auto path = temp_db("none.db");
  write_queue q(path, "normal", std::chrono::milliseconds(1));
  EXPECT_TRUE(q.is_durable(ticket()));
  bool ran = false;
  q.when_durable(ticket(), [&] { ran = true; });
  EXPECT_TRUE(ran);
  EXPECT_FALSE(q.failed(ticket()));
}

// A store applies its change in a callback it registers before handing the ticket out; whoever
// it hands the ticket to (an HTTP answer) must not run first, even if it registers while the
// store's callback is running.
TEST(write_queue, callbacks_run_in_registration_order_even_across_a_commit) {
  auto path = temp_db("order.db");
  write_queue q(path, "normal", std::chrono::milliseconds(1));
  std::promise<void> first_started;
  std::promise<void> release_first;
  auto release = release_first.get_future().share();
  std::mutex order_mutex;
  std::vector<std::string> order;
  auto t = q.submit([](database&) {});
  q.when_durable(t, [&] {
    first_started.set_value();
    release.wait();
    std::lock_guard lock(order_mutex);
    order.push_back("store");
  });
  first_started.get_future().wait();  // committed, and the first callback is running
  EXPECT_TRUE(q.is_durable(t));
  bool answered = false;
  q.when_durable(t, [&] {
    std::lock_guard lock(order_mutex);
    order.push_back("answer");
    answered = true;
  });
  {
    std::lock_guard lock(order_mutex);
    EXPECT_FALSE(answered);  // queued behind the running callback, not run at once
  }
  release_first.set_value();
  q.drain();
  EXPECT_EQ(order, (std::vector<std::string>{"store", "answer"}));
}

TEST(database, refuses_a_schema_written_by_a_newer_version) {
  auto path = temp_db("newer.db");
  {
    database db(path);
    db.migrate("c", {"CREATE TABLE c1 (x INTEGER)", "CREATE TABLE c2 (x INTEGER)"});
  }
  database db(path);
  try {
    db.migrate("c", {"CREATE TABLE c1 (x INTEGER)"});
    ADD_FAILURE() << "expected a refusal";
  } catch (const database_error& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
  // Nothing was changed: the version stays and both tables are there.
  auto version = db.prepare("SELECT version FROM schema_versions WHERE component = 'c'");
  ASSERT_TRUE(version.step());
  EXPECT_EQ(version.column_int(0), 2);
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
  EXPECT_FALSE(q.failed(a));
  EXPECT_TRUE(q.failed(b));
  EXPECT_FALSE(q.failed(c));
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
