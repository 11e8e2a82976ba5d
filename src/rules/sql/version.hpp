#pragma once
// The AWS IoT SQL versions a rule can name in awsIotSqlVersion. 2016-03-23 adds object and array
// literals, nested SELECTs over arrays, SELECT VALUE of an array and a few functions, and reads
// whole-number Decimals as Ints; the parser and the evaluator consult it, nothing else does.
#include <optional>
#include <string_view>

namespace nimbus::rules::sql {

enum class sql_version { v2015_10_08, v2016_03_23 };

// "2015-10-08" or "2016-03-23"; anything else (AWS's "beta" included) is nullopt.
inline std::optional<sql_version> parse_version(std::string_view text) {
  if (text == "2015-10-08") return sql_version::v2015_10_08;
  if (text == "2016-03-23") return sql_version::v2016_03_23;
  return std::nullopt;
}

inline std::string_view version_name(sql_version version) {
  return version == sql_version::v2015_10_08 ? "2015-10-08" : "2016-03-23";
}

}  // namespace nimbus::rules::sql
