#include "tsdb/database_entry.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

#include <boost/json.hpp>

#include "tsdb/influxql.hpp"

namespace nimbus::tsdb {
namespace {

constexpr std::int64_t hour_ns = 3'600'000'000'000;

// "inf" (0), whole years ("1y" = 365d), or an InfluxQL duration, of an hour or more (InfluxDB's
// floor for a policy).
std::optional<std::int64_t> parse_retention(std::string_view text) {
  if (text == "inf" || text == "INF") return 0;
  if (text.size() > 1 && text.size() < 5 && text.back() == 'y' &&
      std::all_of(text.begin(), text.end() - 1, [](char c) { return c >= '0' && c <= '9'; })) {
    const std::int64_t years = std::stoll(std::string(text.substr(0, text.size() - 1)));
    // 200 years of ns fit an int64 (292 do); more is "inf".
    if (years < 1 || years > 200) return std::nullopt;
    return years * 365 * 24 * hour_ns;
  }
  const auto duration = influxql::parse_duration(text);
  if (!duration || *duration < hour_ns) return std::nullopt;
  return duration;
}

// rollups = ["1m:30d", ...] into `out`; false with the reason in `error`.
bool parse_rollups(const boost::json::value& value, rollup_retention& out, std::string& error) {
  static constexpr std::pair<std::string_view, std::int64_t> tier_names[] = {
      {"1m", rollup::minute_ns}, {"1h", rollup::hour_ns}, {"1d", rollup::day_ns}};
  const std::string usage =
      "rollups must be a list of \"TIER:DURATION\" strings, TIER 1m, 1h or 1d, DURATION \"inf\" "
      "or 1h to 200y (\"1m:30d\", \"1h:1y\")";
  if (!value.is_array()) {
    error = usage;
    return false;
  }
  for (const auto& item : value.get_array()) {
    const auto text = item.is_string() ? std::string_view(item.get_string()) : "";
    const auto colon = text.find(':');
    const auto name = text.substr(0, colon);
    const auto tier = std::find_if(std::begin(tier_names), std::end(tier_names),
                                   [name](const auto& t) { return t.first == name; });
    const auto duration =
        colon == std::string_view::npos ? std::nullopt : parse_retention(text.substr(colon + 1));
    if (tier == std::end(tier_names) || !duration) {
      error = usage;
      return false;
    }
    if (!out.duration_ns.emplace(tier->second, *duration).second) {
      error = "rollups names " + std::string(name) + " twice";
      return false;
    }
  }
  // A query falls back from a tier to finer ones, never to coarser: a finer tier outliving a
  // coarser one would never be read.
  const auto forever = [](std::int64_t d) {
    return d == 0 ? std::numeric_limits<std::int64_t>::max() : d;
  };
  for (const auto& [finer, finer_duration] : out.duration_ns)
    for (const auto& [coarser, coarser_duration] : out.duration_ns)
      if (coarser > finer && forever(coarser_duration) < forever(finer_duration)) {
        const auto name_of = [](std::int64_t t) {
          return std::string(
              std::find_if(std::begin(tier_names), std::end(tier_names), [t](const auto& n) {
                return n.second == t;
              })->first);
        };
        error = "rollups keeps " + name_of(coarser) + " for less time than " + name_of(finer) +
                ": a coarser tier must be kept at least as long";
        return false;
      }
  return true;
}

}  // namespace

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
      const auto duration =
          parse_retention(value.is_string() ? std::string_view(value.get_string()) : "");
      if (!duration) {
        error = "retention must be \"inf\" or a duration of 1h or more (\"30d\", \"52w\")";
        return std::nullopt;
      }
      entry.policy.duration_ns = *duration;
    } else if (key == "rollups") {
      if (!parse_rollups(value, entry.rollups, error)) return std::nullopt;
    } else {
      error = "unknown key '" + std::string(key) + "' (name, retention, rollups)";
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
