#pragma once
// One [[tsdb.databases]] entry of the config file, created at start when missing:
//   name = "factory"       (required)
//   retention = "30d"      the default policy's duration: an InfluxQL duration of 1h or more,
//                          or "inf" (the default)
// Pure: the server creates what it describes.
#include <optional>
#include <string>
#include <string_view>

#include "tsdb/store.hpp"

namespace nimbus::tsdb {

struct database_entry {
  std::string name;
  retention_policy policy;  // "autogen", default, with the entry's duration
};

// nullopt with the reason in `error` for a missing name, an unknown key or a bad duration.
std::optional<database_entry> parse_database_entry(std::string_view json_text, std::string& error);

}  // namespace nimbus::tsdb
