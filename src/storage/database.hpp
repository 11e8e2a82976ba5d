#pragma once
// A thin RAII layer over SQLite: one connection, prepared statements, schema migrations.
// A `database` is used by one thread at a time; the write queue owns the writing one.
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace nimbus::storage {

// SQLite failures are exceptional here: the database is local and ours, so a failure means a
// full disk or corruption, which the caller cannot repair on the data plane.
class database_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class statement {
 public:
  statement(sqlite3* db, std::string_view sql);
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  statement(statement&& other) noexcept;

  statement& bind(int index, std::int64_t value);
  statement& bind(int index, std::string_view text);  // TEXT
  statement& bind_blob(int index, std::string_view bytes);
  statement& bind_null(int index);

  // Steps once: true when a row is available.
  bool step();
  // Steps to completion and resets, for INSERT/UPDATE/DELETE.
  void run();
  void reset();

  std::int64_t column_int(int index) const;
  std::string column_text(int index) const;
  // The column's bytes without a copy; valid until the statement steps or is reset.
  std::string_view column_view(int index) const;
  bool column_is_null(int index) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class database {
 public:
  // Opens (creating if needed) the file at `path` in WAL mode. `synchronous` is "normal" or "full".
  database(const std::string& path, const std::string& synchronous = "normal");
  ~database();
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  void exec(std::string_view sql);
  statement prepare(std::string_view sql) { return statement(db_, sql); }
  // A statement prepared once and kept for this connection's lifetime.
  statement& cached(std::string_view sql);

  // Applies `component`'s migrations past its recorded version, each in its own transaction.
  // Components share one file; each keeps its own version in `schema_versions`. A recorded
  // version past `migrations` (written by a newer nimbus) throws database_error, changing
  // nothing: an older binary can neither use that schema nor roll it back safely.
  void migrate(std::string_view component, const std::vector<std::string_view>& migrations);

  std::int64_t changes() const;

 private:
  sqlite3* db_ = nullptr;
  std::vector<std::pair<std::string, std::unique_ptr<statement>>> cache_;
};

}  // namespace nimbus::storage
