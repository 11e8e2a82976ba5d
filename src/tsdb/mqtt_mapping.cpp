#include "tsdb/mqtt_mapping.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "tsdb/json_fields.hpp"

namespace nimbus::tsdb {

namespace json = boost::json;

namespace {

// Days from 1970-01-01 to a civil date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool read_digits(std::string_view text, std::size_t at, std::size_t count, int& out) {
  if (at + count > text.size()) return false;
  out = 0;
  for (std::size_t i = at; i < at + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    out = out * 10 + (text[i] - '0');
  }
  return true;
}

// A number's unit by its magnitude: Unix seconds until about year 5138, then ms, us, ns.
// Integers exactly (a double cannot hold every ns of today), fractions through a double.
std::optional<std::int64_t> time_of_number(const json::value& number) {
  if (number.is_int64() || number.is_uint64()) {
    if (number.is_int64() && number.get_int64() < 0) return std::nullopt;
    const std::uint64_t value =
        number.is_int64() ? static_cast<std::uint64_t>(number.get_int64()) : number.get_uint64();
    const std::uint64_t scale = value < 100'000'000'000ULL           ? 1'000'000'000
                                : value < 100'000'000'000'000ULL     ? 1'000'000
                                : value < 100'000'000'000'000'000ULL ? 1'000
                                                                     : 1;
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / scale)
      return std::nullopt;
    return static_cast<std::int64_t>(value * scale);
  }
  const double value = number.to_number<double>();
  if (!std::isfinite(value) || value < 0) return std::nullopt;
  double ns = value;
  if (value < 1e11)
    ns = value * 1e9;
  else if (value < 1e14)
    ns = value * 1e6;
  else if (value < 1e17)
    ns = value * 1e3;
  if (ns >= 9.2e18) return std::nullopt;
  return static_cast<std::int64_t>(std::llround(ns));
}

std::optional<std::string> tag_text(const json::value& value) {
  switch (value.kind()) {
    case json::kind::string:
      return std::string(value.get_string());
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
    case json::kind::bool_:
      return json::serialize(value);
    default:
      return std::nullopt;
  }
}

}  // namespace

std::optional<std::int64_t> parse_rfc3339(std::string_view text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_digits(text, 0, 4, year) || text.size() < 10 || text[4] != '-' ||
      !read_digits(text, 5, 2, month) || text[7] != '-' || !read_digits(text, 8, 2, day))
    return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  std::int64_t ns =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) *
      86'400'000'000'000LL;
  std::size_t at = 10;
  if (at == text.size()) return ns;  // a date alone: its midnight, UTC
  if (text[at] != 'T' && text[at] != 't' && text[at] != ' ') return std::nullopt;
  if (!read_digits(text, at + 1, 2, hour) || text.size() < at + 9 || text[at + 3] != ':' ||
      !read_digits(text, at + 4, 2, minute) || text[at + 6] != ':' ||
      !read_digits(text, at + 7, 2, second) || hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  ns += (hour * 3600LL + minute * 60LL + second) * 1'000'000'000LL;
  at += 9;
  if (at < text.size() && text[at] == '.') {
    std::int64_t fraction = 0;
    std::size_t digits = 0;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++digits)
      if (digits < 9) fraction = fraction * 10 + (text[at] - '0');
    if (digits == 0) return std::nullopt;
    for (std::size_t d = std::min<std::size_t>(digits, 9); d < 9; ++d) fraction *= 10;
    ns += fraction;
  }
  if (at == text.size()) return ns;  // no zone: UTC
  if (text[at] == 'Z' || text[at] == 'z')
    return at + 1 == text.size() ? std::optional(ns) : std::nullopt;
  if (text[at] != '+' && text[at] != '-') return std::nullopt;
  int offset_hours = 0, offset_minutes = 0;
  if (text.size() != at + 6 || !read_digits(text, at + 1, 2, offset_hours) || text[at + 3] != ':' ||
      !read_digits(text, at + 4, 2, offset_minutes))
    return std::nullopt;
  const std::int64_t offset = (offset_hours * 3600LL + offset_minutes * 60LL) * 1'000'000'000LL;
  return text[at] == '+' ? ns - offset : ns + offset;
}

std::optional<mqtt_mapping> parse_mqtt_mapping(std::string_view json_text, std::string& error) {
  boost::system::error_code ec;
  const json::value parsed = json::parse(json_text, ec);
  if (ec || !parsed.is_object()) {
    error = "must be a table";
    return std::nullopt;
  }
  const auto strings = [&error](const json::value& value, std::string_view key,
                                std::vector<std::string>& out) {
    if (!value.is_array()) {
      error = std::string(key) + " must be a list of strings";
      return false;
    }
    out.clear();
    for (const auto& item : value.get_array()) {
      if (!item.is_string() || item.get_string().empty()) {
        error = std::string(key) + " must be a list of non-empty strings";
        return false;
      }
      out.emplace_back(item.get_string());
    }
    return true;
  };
  const auto text = [&error](const json::value& value, std::string_view key, std::string& out,
                             bool may_be_empty) {
    if (!value.is_string() || (!may_be_empty && value.get_string().empty())) {
      error =
          std::string(key) + (may_be_empty ? " must be a string" : " must be a non-empty string");
      return false;
    }
    out = std::string(value.get_string());
    return true;
  };
  mqtt_mapping mapping;
  mapping.tag_keys.clear();
  mapping.filter.clear();
  mapping.measurement.clear();
  for (const auto& [key, value] : parsed.get_object()) {
    bool ok = true;
    if (key == "filter")
      ok = text(value, key, mapping.filter, false);
    else if (key == "database")
      ok = text(value, key, mapping.database, false);
    else if (key == "measurement")
      ok = text(value, key, mapping.measurement, false);
    else if (key == "tags")
      ok = strings(value, key, mapping.tag_keys);
    else if (key == "fields")
      ok = strings(value, key, mapping.field_keys);
    else if (key == "time_key")
      ok = text(value, key, mapping.time_key, true);
    else if (key == "topic_tags") {
      if (!value.is_object()) {
        error = "topic_tags must be a table of tag = topic level";
        return std::nullopt;
      }
      for (const auto& [tag, level] : value.get_object()) {
        if (tag.empty() || !level.is_int64() || level.get_int64() < 0 ||
            level.get_int64() > 65535) {
          error = "topic_tags." + std::string(tag) + " must be a topic level, 0 or more";
          return std::nullopt;
        }
        mapping.topic_tags.emplace_back(std::string(tag),
                                        static_cast<std::size_t>(level.get_int64()));
      }
    } else {
      error = "unknown key '" + std::string(key) +
              "' (filter, database, measurement, tags, topic_tags, fields, time_key)";
      return std::nullopt;
    }
    if (!ok) return std::nullopt;
  }
  if (mapping.filter.empty()) {
    error = "filter is required";
    return std::nullopt;
  }
  if (mapping.measurement.empty()) {
    error = "measurement is required";
    return std::nullopt;
  }
  return mapping;
}

std::optional<point> map_message(const mqtt_mapping& mapping, std::string_view topic,
                                 std::string_view payload, std::int64_t received_ns,
                                 std::string& why) {
  boost::system::error_code ec;
  const json::value parsed = json::parse(payload, ec);
  if (ec || !parsed.is_object()) {
    why = "the payload is not a JSON object";
    return std::nullopt;
  }
  const json::object& object = parsed.get_object();
  point p;
  p.measurement = mapping.measurement;
  for (const auto& key : mapping.tag_keys) {
    const auto* value = object.if_contains(key);
    if (value == nullptr) continue;
    if (auto text = tag_text(*value); text && !text->empty()) p.tags.emplace_back(key, *text);
  }
  if (!mapping.topic_tags.empty()) {
    std::vector<std::string_view> levels;
    for (std::size_t start = 0;;) {
      const auto slash = topic.find('/', start);
      levels.push_back(topic.substr(start, slash - start));
      if (slash == std::string_view::npos) break;
      start = slash + 1;
    }
    for (const auto& [name, level] : mapping.topic_tags)
      if (level < levels.size() && !levels[level].empty())
        p.tags.emplace_back(name, std::string(levels[level]));
  }
  std::sort(p.tags.begin(), p.tags.end());
  p.tags.erase(std::unique(p.tags.begin(), p.tags.end(),
                           [](const auto& a, const auto& b) { return a.first == b.first; }),
               p.tags.end());

  json_field_options options;
  options.skip = mapping.tag_keys;
  if (!mapping.time_key.empty()) options.skip.push_back(mapping.time_key);
  json_fields(payload, p.fields, options);
  if (!mapping.field_keys.empty())
    std::erase_if(p.fields, [&](const auto& field) {
      return std::find(mapping.field_keys.begin(), mapping.field_keys.end(), field.first) ==
             mapping.field_keys.end();
    });
  if (p.fields.empty()) {
    why = "the payload has no field to store";
    return std::nullopt;
  }

  p.timestamp_ns = received_ns;
  if (const auto* time =
          mapping.time_key.empty() ? nullptr : object.if_contains(mapping.time_key)) {
    std::optional<std::int64_t> given;
    if (time->is_number())
      given = time_of_number(*time);
    else if (time->is_string())
      given = parse_rfc3339(time->get_string());
    if (!given) {
      why = "the payload's \"" + mapping.time_key + "\" is not a time";
      return std::nullopt;
    }
    p.timestamp_ns = *given;
  }
  return p;
}

}  // namespace nimbus::tsdb
