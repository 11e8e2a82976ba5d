#pragma once
// The tutorial's dashboard REST API (§5.2), answered from the time-series store instead of the
// Flask app's in-memory dict, its JSON kept so the tutorial's front end works unchanged:
//
//   GET /api/devices[?device_id=]             {"devices":[{device_id,last_seen,last_reading}],
//                                             "count"} (+ online, open_alerts: the web dashboard)
//   GET /api/devices/{id}/readings?hours&limit {"device_id","readings" (newest first),"count"}
//   GET /api/devices/{id}/stats?hours         {"device_id","period_hours","reading_count",
//                                             "<field>":{"min","max","avg"}}; none: 404
//   GET /api/devices/{id}/stats/daily?days&tz {"device_id","tz","days":[{"date","reading_count",
//                                             "<field>":{"min","max","avg","count"}}]}
//
// A device is a value of one tag (`device_id`) of one measurement (`sensor_reading`) of one
// database (`nimbus`), all three configurable; a reading is its fields at one time, flat, plus
// `device_id` and `timestamp` (RFC3339, UTC). Query numbers that are not integers fall back to
// the defaults, as Flask's `type=int` does. CORS as flask_cors's defaults: the request's Origin
// echoed with `Vary: Origin`, preflights answered. /stats/daily reads the store's rollups (the
// day, hour and minute buckets that fit each local day; points only for what they do not
// cover), so a week costs buckets, not every reading; its reading_count per day is, per series,
// the most values any one field has. A thin adapter: handlers run on the query
// runner (or the HTTP loop) and read through the store (a consistent view per read).
#include <functional>
#include <map>
#include <string>

#include "core/clock.hpp"
#include "net/http_server.hpp"
#include "tsdb/influx_http.hpp"
#include "tsdb/query_runner.hpp"
#include "tsdb/store.hpp"

namespace nimbus::tsdb {

struct dashboard_settings {
  std::string database = "nimbus";
  std::string measurement = "sensor_reading";
  std::string device_tag = "device_id";
  // Bounds that keep one request cheap: at most this many days of /stats/daily, hours of
  // /readings and /stats, and readings per answer.
  int max_days = 366;
  int max_hours = 24 * 366;
  int max_limit = 10'000;
  // Where the handlers run (null: on the HTTP loop); when it refuses, 503 with Retry-After.
  query_runner* runner = nullptr;
  // The web dashboard's additions to each /api/devices entry (the tutorial's keys kept):
  // "online" (an MQTT client of that id is connected) and "open_alerts". Null: left out.
  std::function<bool(const std::string& device_id)> is_online;
  std::function<std::map<std::string, std::size_t>()> open_alerts_by_device;
};

// One reading as these routes write it: its fields, `device_id` and `timestamp` (RFC3339), keys
// sorted as Flask's jsonify sorts them (the live stream sends the same shape).
std::string reading_json(const std::string& device_id, std::int64_t time_ns,
                         const std::map<std::string, field_value>& fields);

// Adds the routes. `auth` (may be null: open) is called with write=false; its refusal is sent
// as is. `s` and `clock` must outlive the router's use.
void add_dashboard_routes(net::http_router& router, store& s, influx_auth auth,
                          dashboard_settings settings, core::clock& clock);

// The 401 of these routes: {"error":"Unauthorized"} with WWW-Authenticate: Bearer.
net::http_response dashboard_unauthorized();

}  // namespace nimbus::tsdb
