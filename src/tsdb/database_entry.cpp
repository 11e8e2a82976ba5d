#include "tsdb/database_entry.hpp"

#include <boost/json.hpp>

#include "tsdb/influxql.hpp"

namespace nimbus::tsdb {

std::optional<database_entry> parse_database_entry(std::string_view json_text, std::string& error) {
  namespace json = boost::json;
  boost::system::error_code ec;
  const json::value parsed = json::parse(json_text, ec);
  if (ec || !parsed.is_object()) {
    error = "must be a table";
    return std::nullopt;
  }
  database_entry entry;
  entry.policy.name = "autogen";
  entry.policy.is_default = true;
  for (const auto& [key, value] : parsed.get_object()) {
    if (key == "name") {
      if (!value.is_string() || value.get_string().empty()) {
        error = "name must be a non-empty string";
        return std::nullopt;
      }
      entry.name = std::string(value.get_string());
    } else if (key == "retention") {
      const auto text = value.is_string() ? std::string_view(value.get_string()) : "";
      if (text == "inf" || text == "INF") {
        entry.policy.duration_ns = 0;
        continue;
      }
      const auto duration = influxql::parse_duration(text);
      // InfluxDB's floor for a retention policy's duration.
      constexpr std::int64_t hour = 3'600'000'000'000;
      if (!duration || *duration < hour) {
        error = "retention must be \"inf\" or a duration of 1h or more (\"30d\", \"52w\")";
        return std::nullopt;
      }
      entry.policy.duration_ns = *duration;
    } else {
      error = "unknown key '" + std::string(key) + "' (name, retention)";
      return std::nullopt;
    }
  }
  if (entry.name.empty()) {
    error = "name is required";
    return std::nullopt;
  }
  return entry;
}

}  // namespace nimbus::tsdb
