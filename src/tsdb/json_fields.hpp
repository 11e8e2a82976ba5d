#pragma once
// Fields of a point from a JSON object, as Telegraf's JSON parser makes them: nested objects
// flattened with '_' between keys, every number a float (so 60 then 60.5 never conflict as
// integer and float would), booleans and strings when asked for; arrays and nulls skipped. For
// the MQTT mapping ([[tsdb.mqtt]]) and the rules engine's timestream action. Pure; any thread.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tsdb/line_protocol.hpp"

namespace nimbus::tsdb {

struct json_field_options {
  bool include_booleans = true;
  bool include_strings = true;
  std::vector<std::string> skip;  // top-level keys left out (those that became tags or the time)
};

// Appends the fields of `document` to `fields`; false (and nothing appended) when it is not a
// JSON object. Field keys `time` are left out (InfluxDB refuses them).
bool json_fields(std::string_view document,
                 std::vector<std::pair<std::string, field_value>>& fields,
                 const json_field_options& options = {});

}  // namespace nimbus::tsdb
