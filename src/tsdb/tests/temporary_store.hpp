#pragma once
// A real store in a temporary directory for tests: its own SQLite file and write queue, removed
// with it. write() waits until the batch is durable and fails the test on any refusal or drop.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include "core/clock.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"
#include "tsdb/line_protocol.hpp"
#include "tsdb/store.hpp"

namespace nimbus::tsdb::testing {

class temporary_store {
 public:
  explicit temporary_store(core::clock& clock, store_settings settings = {}) {
    static std::atomic<int> counter{0};
    dir_ = std::filesystem::temp_directory_path() /
           ("nimbus-tsdb-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    const std::string path = (dir_ / "meta.db").string();
    {
      storage::database db(path, "normal");
      store::migrate(db);
    }
    writer_ = std::make_unique<storage::write_queue>(path, "normal", std::chrono::milliseconds(1));
    db_ = std::make_unique<storage::database>(path, "normal");
    settings.dir = dir_ / "tsdb";
    store_ = std::make_unique<store>(*writer_, *db_, clock, std::move(settings));
  }
  ~temporary_store() {
    store_.reset();
    writer_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  temporary_store(const temporary_store&) = delete;
  temporary_store& operator=(const temporary_store&) = delete;

  store& get() { return *store_; }

  // Line protocol (times in `unit`) into `database`, durable on return.
  void write(std::string_view lines, const std::string& database = "nimbus",
             precision unit = precision::s) {
    auto parsed = parse_lines(lines, unit, 0);
    ASSERT_TRUE(parsed.errors.empty());
    std::promise<write_outcome> written;
    auto outcome = written.get_future();
    store_->write(database, "", std::move(parsed.points),
                  [&written](write_outcome o) { written.set_value(std::move(o)); });
    const write_outcome result = outcome.get();
    ASSERT_EQ(result.refusal, write_refusal::none) << result.message;
    ASSERT_EQ(result.dropped, 0U) << result.message;
  }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<storage::write_queue> writer_;
  std::unique_ptr<storage::database> db_;
  std::unique_ptr<store> store_;
};

}  // namespace nimbus::tsdb::testing
