#pragma once
// One [[tsdb.databases]] entry of the config file, created at start when missing:
//   name = "factory"       (required)
//   retention = "30d"      the default policy's duration: an InfluxQL duration of 1h or more,
//                          whole years ("1y" = 365d) or "inf" (the default)
//   rollups = ["1m:30d", "1h:1y", "1d:inf"]
//                          how long each rollup tier is kept (store.hpp's rollup_retention):
//                          tiers 1m, 1h, 1d, durations as retention's. A tier not named lives
//                          as long as the points; a coarser tier lives at least as long as a
//                          finer one named beside it.
// Pure: the server creates what it describes.
#include <optional>
#include <string>
#include <string_view>

#include "tsdb/store.hpp"

namespace nimbus::tsdb {

struct database_entry {
  std::string name;
  retention_policy policy;  // "autogen", default, with the entry's duration
  rollup_retention rollups;
};

// nullopt with the reason in `error` for a missing name, an unknown key, a bad duration or tier.
std::optional<database_entry> parse_database_entry(std::string_view json_text, std::string& error);

}  // namespace nimbus::tsdb
