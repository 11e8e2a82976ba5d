#pragma once
// Alerts as JSON, one place for every shape they take: the REST answers and the notifications'
// "alert" object (the tutorial's keys first: device_id, type, value, threshold), and the row the
// service stores in table `alerts` (every field, times in unix ms, history included), which
// decode_alert reads back at start. Also the two helpers every writer here shares: RFC3339 with
// milliseconds, and JSON text whose numbers read as people write them (35, 36.6; Boost.JSON
// alone writes 3.5E1). Pure; safe from any thread.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "alerts/engine.hpp"

namespace nimbus::alerts {

// "2024-05-01T10:00:00.000Z" (UTC, always three fraction digits).
std::string format_time_ms(std::int64_t unix_ms);

// `value` as JSON text: doubles in their shortest round-trip form (35, 36.6, 1e+21), NaN and
// infinities as null, strings escaped as core::json_string does.
std::string to_text(const boost::json::value& value);
void append_text(std::string& out, const boost::json::value& value);

// The alert as the API and notifications show it:
//   {"device_id","type","value","threshold" (number or null),"id","severity","status",
//    "acknowledged","peak","count","raised_at","updated_at","acknowledged_at","acknowledged_by",
//    "cleared_at","cleared_by" (null until then),"series","field"[,"history":[{"at","event",
//    "who","note","value","severity"}]]}
boost::json::object alert_json(const alert& a, bool with_history);

// The stored row's JSON and back; nullopt for a row this version cannot read.
std::string encode_alert(const alert& a);
std::optional<alert> decode_alert(std::string_view text);

std::optional<alert_status> parse_alert_status(std::string_view text);

}  // namespace nimbus::alerts
