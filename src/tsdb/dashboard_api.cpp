// The tutorial's dashboard API over the store (dashboard_api.hpp). The Flask original kept its
// readings in a list; here a device's readings are the rows of its series' fields merged by time,
// read newest window first so that `limit` bounds the work, not `hours`.
#include "tsdb/dashboard_api.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/json_string.hpp"
#include "tsdb/influxql.hpp"
#include "tsdb/query.hpp"

namespace nimbus::tsdb {

namespace {

constexpr std::int64_t ns_per_second = 1'000'000'000;
constexpr std::int64_t seconds_per_day = 86'400;
constexpr std::int64_t ns_per_hour = 3'600 * ns_per_second;
constexpr std::int64_t end_of_time = std::numeric_limits<std::int64_t>::max();

struct context {
  store& time_series;
  influx_auth auth;
  dashboard_settings settings;
  core::clock& clock;
};
using shared_context = std::shared_ptr<const context>;

// ------------------------------------------------------------------------------------ JSON

// A number as Python's json writes a float: shortest round trip, ".0" on whole numbers; NaN
// and infinities (which Flask would write as invalid JSON) as null.
void append_float(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buffer[32];
  const auto [end, failure] = std::to_chars(buffer, buffer + sizeof buffer, value);
  const std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

template <typename Integer>
void append_integer(std::string& out, Integer value) {
  char buffer[24];
  const auto [end, failure] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, end);
}

void append_value(std::string& out, const field_value& value) {
  std::visit(
      [&out](const auto& v) {
        using type = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<type, double>)
          append_float(out, v);
        else if constexpr (std::is_same_v<type, bool>)
          out += v ? "true" : "false";
        else if constexpr (std::is_same_v<type, std::string>)
          core::append_json_string(out, v);
        else
          append_integer(out, v);
      },
      value);
}

// `"key":` after a comma unless first.
void append_key(std::string& out, std::string_view key, bool& first) {
  if (!first) out.push_back(',');
  first = false;
  core::append_json_string(out, key);
  out.push_back(':');
}

std::optional<double> number_of(const field_value& value) {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&value)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&value)) return static_cast<double>(*u);
  return std::nullopt;
}

// ------------------------------------------------------------------------------ requests

net::http_response json_response(unsigned status, std::string body) {
  return net::http_response{status, "application/json", {}, std::move(body)};
}

net::http_response error_response(unsigned status, std::string_view message) {
  std::string body = "{\"error\":";
  core::append_json_string(body, message);
  body += "}\n";
  return json_response(status, std::move(body));
}

// Flask's `request.args.get(name, default, type=int)`: int() of the text (surrounding spaces and
// a sign allowed), else the default; then clamped to [low, high].
int int_param(const net::http_request& request, std::string_view name, int fallback, int low,
              int high) {
  const auto text = request.query_param(name);
  if (!text) return fallback;
  std::string_view digits = *text;
  while (!digits.empty() && (digits.front() == ' ' || digits.front() == '\t'))
    digits.remove_prefix(1);
  while (!digits.empty() && (digits.back() == ' ' || digits.back() == '\t'))
    digits.remove_suffix(1);
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  long long value = 0;
  const auto [end, failure] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || failure != std::errc{} || end != digits.data() + digits.size())
    return fallback;
  return static_cast<int>(std::clamp<long long>(value, low, high));
}

// flask_cors's defaults: any origin, echoed, so that the answer may be cached per origin.
void add_cors(const net::http_request& request, net::http_response& response) {
  if (auto origin = request.header("origin")) {
    response.headers.emplace_back("Access-Control-Allow-Origin", *origin);
    response.headers.emplace_back("Vary", "Origin");
  }
}

// ------------------------------------------------------------------------------- devices

// A device's readings: its fields at each time, merged across its series.
using readings = std::map<std::int64_t, std::map<std::string, field_value>>;

class devices {
 public:
  explicit devices(const context& c)
      : c_(c),
        fields_(c.time_series.fields(c.settings.database, c.settings.measurement)),
        series_(c.time_series.series(c.settings.database, c.settings.measurement)) {}

  // Device ids in order, each with its series.
  std::map<std::string, std::vector<const series_info*>> all() const {
    std::map<std::string, std::vector<const series_info*>> out;
    for (const auto& s : series_)
      if (auto id = device_of(s)) out[*id].push_back(&s);
    return out;
  }

  const std::map<std::string, field_type>& field_types() const { return fields_; }

  std::vector<const series_info*> of(const std::string& id) const {
    std::vector<const series_info*> out;
    for (const auto& s : series_)
      if (auto device = device_of(s); device && *device == id) out.push_back(&s);
    return out;
  }

  // Readings with min_ns <= time <= max_ns.
  void read(const std::vector<const series_info*>& series, std::int64_t min_ns, std::int64_t max_ns,
            readings& out) const {
    for (const auto* s : series)
      for (const auto& [field, type] : fields_) {
        auto column = c_.time_series.read(c_.settings.database, "", s->id, field, min_ns, max_ns);
        for (std::size_t i = 0; i < column.times.size(); ++i)
          out[column.times[i]].insert_or_assign(field, std::move(column.values[i]));
      }
  }

  // The newest reading: the fields written at the latest time of any.
  std::optional<std::pair<std::int64_t, std::map<std::string, field_value>>> last(
      const std::vector<const series_info*>& series) const {
    std::optional<std::pair<std::int64_t, std::map<std::string, field_value>>> newest;
    for (const auto* s : series)
      for (const auto& [field, type] : fields_) {
        auto value = c_.time_series.last(c_.settings.database, "", s->id, field);
        if (!value) continue;
        if (!newest || value->first > newest->first)
          newest.emplace(value->first, std::map<std::string, field_value>{});
        if (value->first == newest->first)
          newest->second.insert_or_assign(field, std::move(value->second));
      }
    return newest;
  }

 private:
  std::optional<std::string> device_of(const series_info& s) const {
    for (const auto& [key, value] : s.tags)
      if (key == c_.settings.device_tag) return value;
    return std::nullopt;
  }

  const context& c_;
  std::map<std::string, field_type> fields_;
  std::vector<series_info> series_;
};

// One reading as the tutorial's JSON: its fields, device_id and timestamp, keys sorted as
// Flask's jsonify sorts them.
void append_reading(std::string& out, const std::string& device_id, std::int64_t time_ns,
                    const std::map<std::string, field_value>& fields) {
  std::map<std::string_view, std::string> members;
  for (const auto& [name, value] : fields) append_value(members[name], value);
  core::append_json_string(members["device_id"], device_id);
  core::append_json_string(members["timestamp"], format_rfc3339(time_ns));
  out.push_back('{');
  bool first = true;
  for (const auto& [key, value] : members) {
    append_key(out, key, first);
    out += value;
  }
  out.push_back('}');
}

// min, max, sum and count of one numeric field.
struct summary {
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0;
  std::int64_t count = 0;

  void add(double value) {
    min = std::min(min, value);
    max = std::max(max, value);
    sum += value;
    ++count;
  }
  void add(const summary& other) {
    min = std::min(min, other.min);
    max = std::max(max, other.max);
    sum += other.sum;
    count += other.count;
  }
};

// One local day of /stats/daily.
struct day_summary {
  std::int64_t readings = 0;
  std::map<std::string, summary> fields;
};

// A device's numbers over [min_ns, max_ns] from the store's rollups: the coarsest clean buckets
// inside the range (days, hours, minutes; read_rollup) and the points of what is left (ranges
// a late or overwriting write dirtied, the write buffer). Readings: per series the most values
// any one field has, summed over the device's series.
void summarize(const context& c, const std::vector<const series_info*>& series,
               const std::map<std::string, field_type>& fields, std::int64_t min_ns,
               std::int64_t max_ns, day_summary& out) {
  const std::string& database = c.settings.database;
  for (const auto* s : series) {
    std::int64_t most = 0;
    for (const auto& [field, type] : fields) {
      summary numbers;
      std::int64_t values = 0;
      auto take_points = [&](std::int64_t from, std::int64_t to) {
        const auto column = c.time_series.read(database, "", s->id, field, from, to);
        values += static_cast<std::int64_t>(column.times.size());
        for (const auto& value : column.values)
          if (auto number = number_of(value)) numbers.add(*number);
      };
      if (rollup::has_rollups(type)) {
        const auto column =
            c.time_series.read_rollup(database, "", s->id, field, rollup::day_ns, min_ns, max_ns);
        for (const auto& b : column.buckets) {
          const auto low = number_of(b.min), high = number_of(b.max);
          if (b.count == 0 || !low || !high) continue;
          numbers.add(summary{*low, *high, b.sum, static_cast<std::int64_t>(b.count)});
          values += static_cast<std::int64_t>(b.count);
        }
        for (const auto& [from, to] : column.raw) take_points(from, to);
      } else {
        take_points(min_ns, max_ns);
      }
      most = std::max(most, values);
      if (numbers.count > 0) out.fields[field].add(numbers);
    }
    out.readings += most;
  }
}

// {"avg":..,"max":..,"min":..} (and "count" when asked), keys sorted.
void append_summary(std::string& out, const summary& s, bool with_count) {
  out += "{\"avg\":";
  append_float(out, s.sum / static_cast<double>(s.count));
  if (with_count) {
    out += ",\"count\":";
    append_integer(out, s.count);
  }
  out += ",\"max\":";
  append_float(out, s.max);
  out += ",\"min\":";
  append_float(out, s.min);
  out.push_back('}');
}

// ------------------------------------------------------------------------------- handlers

net::http_response list_devices(const context& c, const net::http_request& request) {
  const devices fleet(c);
  // The dashboard's device page asks for one (?device_id=); the tutorial's list has no filter.
  const auto only = request.query_param("device_id");
  const auto open_alerts = c.settings.open_alerts_by_device ? c.settings.open_alerts_by_device()
                                                            : std::map<std::string, std::size_t>{};
  std::string list;
  std::size_t count = 0;
  for (const auto& [id, series] : fleet.all()) {
    if (only && id != *only) continue;
    auto newest = fleet.last(series);
    if (!newest) continue;
    list += count++ == 0 ? "" : ",";
    list += "{\"device_id\":";
    core::append_json_string(list, id);
    list += ",\"last_reading\":";
    append_reading(list, id, newest->first, newest->second);
    list += ",\"last_seen\":";
    core::append_json_string(list, format_rfc3339(newest->first));
    if (c.settings.is_online)
      list += c.settings.is_online(id) ? ",\"online\":true" : ",\"online\":false";
    if (c.settings.open_alerts_by_device) {
      auto it = open_alerts.find(id);
      list += ",\"open_alerts\":";
      append_integer(list, it == open_alerts.end() ? std::size_t{0} : it->second);
    }
    list += "}";
  }
  std::string body = "{\"count\":";
  append_integer(body, count);
  body += ",\"devices\":[" + list + "]}\n";
  return json_response(200, std::move(body));
}

net::http_response device_readings(const context& c, const net::http_request& request) {
  const std::string& id = request.param("id");
  const int hours = int_param(request, "hours", 24, -c.settings.max_hours, c.settings.max_hours);
  const int limit = int_param(request, "limit", 100, 0, c.settings.max_limit);
  const std::int64_t now = c.clock.unix_millis() * 1'000'000;
  // As Flask: newer than the cutoff, with no upper bound (a device clock ahead of ours).
  const std::int64_t oldest = now - hours * ns_per_hour + 1;
  const devices fleet(c);
  const auto series = fleet.of(id);
  readings rows;
  if (!series.empty()) {
    // The future, then windows back from now doubling in length, until `limit` rows are in.
    fleet.read(series, std::max(oldest, now + 1), end_of_time, rows);
    std::int64_t window = ns_per_hour;
    for (std::int64_t newest = now;
         rows.size() < static_cast<std::size_t>(limit) && newest >= oldest;) {
      const std::int64_t from = newest - oldest < window ? oldest : newest - window + 1;
      fleet.read(series, from, newest, rows);
      newest = from - 1;
      window *= 2;  // hours are bounded (max_hours): no overflow
    }
  }
  std::string list;
  std::size_t count = 0;
  for (auto row = rows.rbegin(); row != rows.rend() && count < static_cast<std::size_t>(limit);
       ++row) {
    list += count++ == 0 ? "" : ",";
    append_reading(list, id, row->first, row->second);
  }
  std::string body = "{\"count\":";
  append_integer(body, count);
  body += ",\"device_id\":";
  core::append_json_string(body, id);
  body += ",\"readings\":[" + list + "]}\n";
  return json_response(200, std::move(body));
}

net::http_response device_stats(const context& c, const net::http_request& request) {
  const std::string& id = request.param("id");
  const int hours = int_param(request, "hours", 24, -c.settings.max_hours, c.settings.max_hours);
  const std::int64_t now = c.clock.unix_millis() * 1'000'000;
  const devices fleet(c);
  readings rows;
  fleet.read(fleet.of(id), now - hours * ns_per_hour + 1, end_of_time, rows);
  if (rows.empty()) return error_response(404, "No data");
  std::map<std::string, summary> fields;
  for (const auto& [time, values] : rows)
    for (const auto& [name, value] : values)
      if (auto number = number_of(value)) fields[name].add(*number);

  std::map<std::string_view, std::string> members;
  core::append_json_string(members["device_id"], id);
  append_integer(members["period_hours"], hours);
  append_integer(members["reading_count"], rows.size());
  for (const auto& [name, s] : fields) append_summary(members[name], s, false);
  std::string body = "{";
  bool first = true;
  for (const auto& [key, value] : members) {
    append_key(body, key, first);
    body += value;
  }
  body += "}\n";
  return json_response(200, std::move(body));
}

// Per local day of `tz`, today included, oldest first; days without readings have a count of 0
// and no fields, so a chart's axis has every day.
net::http_response device_daily_stats(const context& c, const net::http_request& request) {
  const std::string& id = request.param("id");
  const int days = int_param(request, "days", 7, 1, c.settings.max_days);
  const std::string zone_name = request.query_param("tz").value_or("UTC");
  const auto zone = influxql::time_zone::find(zone_name);
  if (!zone) return error_response(400, "Unknown time zone: " + zone_name);
  const std::int64_t now_seconds = c.clock.unix_millis() / 1000;
  const auto floor_div = [](std::int64_t a, std::int64_t b) {
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
  };
  const std::int64_t today = floor_div(now_seconds + zone->offset_at(now_seconds), seconds_per_day);
  const std::int64_t first_day = today - (days - 1);

  const devices fleet(c);
  const auto series = fleet.of(id);
  std::vector<day_summary> per_day(static_cast<std::size_t>(days));
  for (std::size_t i = 0; i < per_day.size(); ++i) {
    // [local midnight, next local midnight) in UTC: 23 or 25 hours across a DST change.
    const std::int64_t local = (first_day + static_cast<std::int64_t>(i)) * seconds_per_day;
    const std::int64_t next_local = local + seconds_per_day;
    const std::int64_t from = local - zone->offset_for_local(local);
    const std::int64_t to = next_local - zone->offset_for_local(next_local);
    summarize(c, series, fleet.field_types(), from * ns_per_second, to * ns_per_second - 1,
              per_day[i]);
  }

  std::string list;
  for (std::size_t i = 0; i < per_day.size(); ++i) {
    const auto& d = per_day[i];
    std::map<std::string_view, std::string> members;
    const std::string date =
        format_rfc3339((first_day + static_cast<std::int64_t>(i)) * seconds_per_day * ns_per_second)
            .substr(0, 10);
    core::append_json_string(members["date"], date);
    append_integer(members["reading_count"], d.readings);
    for (const auto& [name, s] : d.fields) append_summary(members[name], s, true);
    list += i == 0 ? "{" : ",{";
    bool first = true;
    for (const auto& [key, value] : members) {
      append_key(list, key, first);
      list += value;
    }
    list += "}";
  }
  std::string body = "{\"days\":[" + list + "],\"device_id\":";
  core::append_json_string(body, id);
  body += ",\"tz\":";
  core::append_json_string(body, zone->name());
  body += "}\n";
  return json_response(200, std::move(body));
}

using handler = net::http_response (*)(const context&, const net::http_request&);

void add_route(net::http_router& router, const shared_context& c, const std::string& pattern,
               handler answer) {
  router.add_async("GET", pattern,
                   [c, answer](net::http_request request, net::http_responder respond) {
                     if (auto refusal = c->auth ? c->auth(request, false) : std::nullopt) {
                       add_cors(request, *refusal);
                       return respond(std::move(*refusal));
                     }
                     auto shared = std::make_shared<const net::http_request>(std::move(request));
                     auto run = [c, answer, shared, respond] {
                       auto response = answer(*c, *shared);
                       add_cors(*shared, response);
                       respond(std::move(response));
                     };
                     if (c->settings.runner == nullptr) return run();
                     if (!c->settings.runner->post(run)) {
                       auto busy = error_response(503, "Too many requests in progress");
                       busy.headers.emplace_back("Retry-After", "1");
                       add_cors(*shared, busy);
                       respond(std::move(busy));
                     }
                   });
  // Preflights carry no credentials: answered for any origin, as flask_cors does.
  router.add("OPTIONS", pattern, [](const net::http_request& request) {
    net::http_response response{200, "text/html; charset=utf-8", {}, ""};
    response.headers.emplace_back("Allow", "GET, HEAD, OPTIONS");
    add_cors(request, response);
    if (request.header("origin")) {
      response.headers.emplace_back("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
      if (auto asked = request.header("access-control-request-headers"))
        response.headers.emplace_back("Access-Control-Allow-Headers", *asked);
    }
    return response;
  });
}

}  // namespace

std::string reading_json(const std::string& device_id, std::int64_t time_ns,
                         const std::map<std::string, field_value>& fields) {
  std::string out;
  append_reading(out, device_id, time_ns, fields);
  return out;
}

net::http_response dashboard_unauthorized() {
  auto response = error_response(401, "Unauthorized");
  response.headers.emplace_back("WWW-Authenticate", "Bearer");
  return response;
}

void add_dashboard_routes(net::http_router& router, store& s, influx_auth auth,
                          dashboard_settings settings, core::clock& clock) {
  const auto c =
      std::make_shared<const context>(context{s, std::move(auth), std::move(settings), clock});
  add_route(router, c, "/api/devices", list_devices);
  add_route(router, c, "/api/devices/{id}/readings", device_readings);
  add_route(router, c, "/api/devices/{id}/stats", device_stats);
  add_route(router, c, "/api/devices/{id}/stats/daily", device_daily_stats);
}

}  // namespace nimbus::tsdb
