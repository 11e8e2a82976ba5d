// Alerts as JSON (alert_json.hpp).
#include "alerts/alert_json.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "core/json_string.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

// A stored number of any JSON kind; nullopt for anything else.
std::optional<double> number_of(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return std::nullopt;
}

std::optional<std::int64_t> integer_of(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v->get_uint64());
  return std::nullopt;
}

std::string text_of(const json::value* v) {
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

json::value time_or_null(const std::optional<std::int64_t>& ms) {
  if (!ms) return nullptr;
  return json::value(format_time_ms(*ms));
}

json::value text_or_null(const std::string& text) {
  if (text.empty()) return nullptr;
  return json::value(text);
}

json::value ms_or_null(const std::optional<std::int64_t>& ms) {
  if (!ms) return nullptr;
  return json::value(*ms);
}

}  // namespace

std::string format_time_ms(std::int64_t unix_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> at{milliseconds(unix_ms)};
  const auto day = floor<days>(at);
  const year_month_day date{day};
  const hh_mm_ss<milliseconds> time{at - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(date.year()),
                     static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                     time.hours().count(), time.minutes().count(), time.seconds().count(),
                     time.subseconds().count());
}

void append_text(std::string& out, const json::value& value) {
  switch (value.kind()) {
    case json::kind::null:
      out += "null";
      return;
    case json::kind::bool_:
      out += value.get_bool() ? "true" : "false";
      return;
    case json::kind::int64:
      out += std::to_string(value.get_int64());
      return;
    case json::kind::uint64:
      out += std::to_string(value.get_uint64());
      return;
    case json::kind::double_: {
      const double d = value.get_double();
      if (!std::isfinite(d)) {
        out += "null";
        return;
      }
      char buffer[32];
      const auto end = std::to_chars(buffer, buffer + sizeof buffer, d).ptr;
      out.append(buffer, end);
      return;
    }
    case json::kind::string:
      core::append_json_string(out, std::string_view(value.get_string()));
      return;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : value.get_array()) {
        if (!first) out += ',';
        first = false;
        append_text(out, item);
      }
      out += ']';
      return;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.get_object()) {
        if (!first) out += ',';
        first = false;
        core::append_json_string(out, std::string_view(key));
        out += ':';
        append_text(out, item);
      }
      out += '}';
      return;
    }
  }
}

std::string to_text(const json::value& value) {
  std::string out;
  append_text(out, value);
  return out;
}

std::optional<alert_status> parse_alert_status(std::string_view text) {
  if (text == "active") return alert_status::active;
  if (text == "acknowledged") return alert_status::acknowledged;
  if (text == "cleared") return alert_status::cleared;
  return std::nullopt;
}

json::object alert_json(const alert& a, bool with_history) {
  json::object out;
  // The tutorial's four keys first, in its order.
  out["device_id"] = a.device_id;
  out["type"] = a.type;
  out["value"] = a.value;
  out["threshold"] = a.threshold ? json::value(*a.threshold) : json::value(nullptr);
  out["id"] = a.id;
  out["severity"] = to_string(a.level);
  out["status"] = to_string(a.status);
  out["acknowledged"] = a.acknowledged;
  out["peak"] = a.peak;
  out["count"] = a.count;
  out["raised_at"] = format_time_ms(a.raised_ms);
  out["updated_at"] = format_time_ms(a.updated_ms);
  out["acknowledged_at"] = time_or_null(a.acknowledged_ms);
  out["acknowledged_by"] = text_or_null(a.acknowledged_by);
  out["cleared_at"] = time_or_null(a.cleared_ms);
  out["cleared_by"] = text_or_null(a.cleared_by);
  out["series"] = a.series;
  out["field"] = a.field;
  if (with_history) {
    json::array history;
    for (const auto& step : a.history) {
      json::object entry;
      entry["at"] = format_time_ms(step.at_ms);
      entry["event"] = to_string(step.what);
      entry["who"] = step.who;
      entry["note"] = step.note;
      entry["value"] = step.value;
      entry["severity"] = to_string(step.level);
      history.emplace_back(std::move(entry));
    }
    out["history"] = std::move(history);
  }
  return out;
}

std::string encode_alert(const alert& a) {
  json::object row;
  row["id"] = a.id;
  row["type"] = a.type;
  row["device_id"] = a.device_id;
  row["series"] = a.series;
  row["field"] = a.field;
  row["severity"] = to_string(a.level);
  row["status"] = to_string(a.status);
  row["acknowledged"] = a.acknowledged;
  row["value"] = a.value;
  row["peak"] = a.peak;
  row["threshold"] = a.threshold ? json::value(*a.threshold) : json::value(nullptr);
  row["count"] = a.count;
  row["raised_ms"] = a.raised_ms;
  row["updated_ms"] = a.updated_ms;
  row["acknowledged_ms"] = ms_or_null(a.acknowledged_ms);
  row["cleared_ms"] = ms_or_null(a.cleared_ms);
  row["acknowledged_by"] = a.acknowledged_by;
  row["cleared_by"] = a.cleared_by;
  json::array history;
  for (const auto& step : a.history) {
    json::object entry;
    entry["at_ms"] = step.at_ms;
    entry["what"] = to_string(step.what);
    entry["who"] = step.who;
    entry["note"] = step.note;
    entry["value"] = step.value;
    entry["severity"] = to_string(step.level);
    history.emplace_back(std::move(entry));
  }
  row["history"] = std::move(history);
  return to_text(row);
}

std::optional<alert> decode_alert(std::string_view text) {
  json::error_code ec;
  const json::value parsed = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !parsed.is_object()) return std::nullopt;
  const auto& row = parsed.get_object();
  alert a;
  const auto id = integer_of(row.if_contains("id"));
  const auto level = parse_severity(text_of(row.if_contains("severity")));
  const auto status = parse_alert_status(text_of(row.if_contains("status")));
  if (!id || *id <= 0 || !level || !status) return std::nullopt;
  a.id = static_cast<std::uint64_t>(*id);
  a.type = text_of(row.if_contains("type"));
  a.device_id = text_of(row.if_contains("device_id"));
  a.series = text_of(row.if_contains("series"));
  a.field = text_of(row.if_contains("field"));
  a.level = *level;
  a.status = *status;
  if (const auto* v = row.if_contains("acknowledged"); v != nullptr && v->is_bool())
    a.acknowledged = v->get_bool();
  a.value = number_of(row.if_contains("value")).value_or(0);
  a.peak = number_of(row.if_contains("peak")).value_or(0);
  a.threshold = number_of(row.if_contains("threshold"));
  a.count = static_cast<std::uint64_t>(integer_of(row.if_contains("count")).value_or(0));
  a.raised_ms = integer_of(row.if_contains("raised_ms")).value_or(0);
  a.updated_ms = integer_of(row.if_contains("updated_ms")).value_or(a.raised_ms);
  a.acknowledged_ms = integer_of(row.if_contains("acknowledged_ms"));
  a.cleared_ms = integer_of(row.if_contains("cleared_ms"));
  a.acknowledged_by = text_of(row.if_contains("acknowledged_by"));
  a.cleared_by = text_of(row.if_contains("cleared_by"));
  if (const auto* h = row.if_contains("history"); h != nullptr && h->is_array()) {
    for (const auto& item : h->get_array()) {
      if (!item.is_object()) continue;
      const auto& entry = item.get_object();
      const auto what = parse_alert_event(text_of(entry.if_contains("what")));
      if (!what) continue;
      history_entry step;
      step.at_ms = integer_of(entry.if_contains("at_ms")).value_or(0);
      step.what = *what;
      step.who = text_of(entry.if_contains("who"));
      step.note = text_of(entry.if_contains("note"));
      step.value = number_of(entry.if_contains("value")).value_or(0);
      step.level = parse_severity(text_of(entry.if_contains("severity"))).value_or(a.level);
      a.history.push_back(std::move(step));
    }
  }
  return a;
}

}  // namespace nimbus::alerts
