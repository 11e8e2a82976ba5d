#include "storage/database.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <string>

namespace nimbus::storage {

namespace {
[[noreturn]] void fail(sqlite3* db, std::string_view what) {
  throw database_error(std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}
}  // namespace

statement::statement(sqlite3* db, std::string_view sql) : db_(db), stmt_(nullptr) {
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) !=
      SQLITE_OK)
    fail(db, "prepare");
}

statement::~statement() {
  sqlite3_finalize(stmt_);
}

statement::statement(statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
  other.stmt_ = nullptr;
}

statement& statement::bind(int index, std::int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) fail(db_, "bind");
  return *this;
}

statement& statement::bind(int index, std::string_view text) {
  if (sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK)
    fail(db_, "bind");
  return *this;
}

statement& statement::bind_blob(int index, std::string_view bytes) {
  if (sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK)
    fail(db_, "bind");
  return *this;
}

statement& statement::bind_null(int index) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) fail(db_, "bind");
  return *this;
}

bool statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_, "step");
}

void statement::run() {
  // Reset on every path: a statement left mid-step refuses later binds.
  struct reset_guard {
    statement& s;
    ~reset_guard() { s.reset(); }
  } guard{*this};
  step();
}

void statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t statement::column_int(int index) const {
  return sqlite3_column_int64(stmt_, index);
}

std::string statement::column_text(int index) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  int size = sqlite3_column_bytes(stmt_, index);
  if (data == nullptr) return {};
  return std::string(static_cast<const char*>(data), static_cast<std::size_t>(size));
}

std::string_view statement::column_view(int index) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  int size = sqlite3_column_bytes(stmt_, index);
  if (data == nullptr) return {};
  return {static_cast<const char*>(data), static_cast<std::size_t>(size)};
}

bool statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

database::database(const std::string& path, const std::string& synchronous) {
  if (sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw database_error("open " + path + ": " + message);
  }
  sqlite3_busy_timeout(db_, 5000);
  exec("PRAGMA journal_mode=WAL");
  exec(synchronous == "full" ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  exec("PRAGMA foreign_keys=ON");
}

database::~database() {
  cache_.clear();
  sqlite3_close(db_);
}

void database::exec(std::string_view sql) {
  char* error = nullptr;
  std::string text(sql);
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error ? error : "unknown error";
    sqlite3_free(error);
    throw database_error("exec: " + message);
  }
}

statement& database::cached(std::string_view sql) {
  for (auto& [text, stmt] : cache_) {
    if (text == sql) return *stmt;
  }
  cache_.emplace_back(std::string(sql), std::make_unique<statement>(db_, sql));
  return *cache_.back().second;
}

void database::migrate(std::string_view component,
                       const std::vector<std::string_view>& migrations) {
  exec(
      "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT "
      "NULL)");
  auto version_stmt = prepare("SELECT version FROM schema_versions WHERE component = ?");
  version_stmt.bind(1, component);
  std::size_t version =
      version_stmt.step() ? static_cast<std::size_t>(version_stmt.column_int(0)) : 0;
  // Rolling a newer schema back is not something an older binary can do safely: refuse, so the
  // database is left for the version that wrote it.
  if (version > migrations.size())
    throw database_error(fmt::format(
        "the {} tables are at schema version {}, newer than this nimbus knows ({}): the data "
        "directory was written by a newer nimbus; run that version, or start with another data "
        "directory",
        component, version, migrations.size()));
  for (std::size_t i = version; i < migrations.size(); ++i) {
    exec("BEGIN IMMEDIATE");
    try {
      exec(migrations[i]);
      prepare(
          "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
          "ON CONFLICT (component) DO UPDATE SET version = excluded.version")
          .bind(1, component)
          .bind(2, static_cast<std::int64_t>(i + 1))
          .run();
      exec("COMMIT");
    } catch (...) {
      exec("ROLLBACK");
      throw;
    }
  }
}

std::int64_t database::changes() const {
  return sqlite3_changes64(db_);
}

}  // namespace nimbus::storage
