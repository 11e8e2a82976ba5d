#include "alerts/rule.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "core/json_string.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

// The names of each enum, indexed by its value: the one table parsing, to_string and messages use.
constexpr std::string_view severity_names[] = {"indeterminate", "warning", "minor", "major",
                                               "critical"};
constexpr std::string_view comparison_names[] = {">", ">=", "<", "<="};
constexpr std::string_view event_names[] = {"raised", "updated", "escalated", "acknowledged",
                                            "cleared"};
constexpr std::string_view notification_names[] = {"mqtt", "webhook", "pubsub"};
constexpr std::string_view placeholder_names[] = {"device_id", "type",  "severity",
                                                  "rule",      "event", "status"};

// Each condition kind (by value): its name, and the keys its object and its "clear" object take
// (space separated). A key another kind takes is refused as "does not apply", any other as
// unknown.
constexpr std::string_view kind_names[] = {"threshold", "range",   "ewma",   "mad",
                                           "flatline",  "no_data", "offline"};
constexpr std::string_view kind_keys[] = {"type operator value for clear",
                                          "type lo hi for clear",
                                          "type half_life k warmup for clear",
                                          "type window k floor warmup for clear",
                                          "type count for clear",
                                          "type for",
                                          "type for"};
constexpr std::string_view kind_clear_keys[] = {
    "operator value for", "lo hi for", "for", "for", "for", "", ""};
constexpr std::string_view any_condition_key =
    "type operator value lo hi for clear half_life k warmup window floor count";
constexpr std::string_view any_clear_key = "operator value lo hi for";

constexpr std::string_view notification_keys[] = {
    "type topic qos events",
    "type url secret secret_set timeout max_attempts events",
    "type topic events",
};
constexpr std::string_view any_notification_key =
    "type topic qos url secret secret_set timeout max_attempts events";

constexpr std::string_view rule_keys =
    "name description severity enabled selection condition escalations notifications";
constexpr std::string_view selection_keys = "field measurement database devices groups tags";

constexpr std::string_view default_mqtt_topic = "nimbus/alerts/{device_id}/{type}";
constexpr std::size_t max_notifications = 16;
constexpr std::size_t max_escalations = 16;
constexpr std::size_t max_selection_entries = 10'000;

constexpr duration one_second{1000};
constexpr duration seven_days{7LL * 24 * 3600 * 1000};
constexpr duration thirty_days{30LL * 24 * 3600 * 1000};

// What templates expand to when only their shape is checked (a topic, a URL).
constexpr template_values dummy_values{"device", "alert", "major", "rule", "raised", "active"};

template <class Enum, std::size_t N>
std::optional<Enum> find_name(const std::string_view (&names)[N], std::string_view text) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == text) return static_cast<Enum>(i);
  return std::nullopt;
}

template <class Enum, std::size_t N>
std::string_view name_of(const std::string_view (&names)[N], Enum value) {
  const auto i = static_cast<std::size_t>(value);
  return i < N ? names[i] : std::string_view("?");
}

// "\"a\", \"b\"" or "{a}, {b}": each name between `open` and `close`.
template <std::size_t N>
std::string name_list(const std::string_view (&names)[N], std::string_view open = "\"",
                      std::string_view close = "\"") {
  std::string out;
  for (const auto name : names)
    out += (out.empty() ? "" : ", ") + std::string(open) + std::string(name) + std::string(close);
  return out;
}

// True when `word` is one of the space-separated words of `words`.
bool has_word(std::string_view words, std::string_view word) {
  while (!words.empty()) {
    const auto end = std::min(words.find(' '), words.size());
    if (words.substr(0, end) == word) return true;
    words.remove_prefix(std::min(end + 1, words.size()));
  }
  return false;
}

std::string comma_list(std::string_view words) {
  std::string out(words);
  for (std::size_t at = out.find(' '); at != std::string::npos; at = out.find(' ', at + 2))
    out.replace(at, 1, ", ");
  return out;
}

std::string number_text(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round trip
  return std::string(buffer, result.ptr);
}

std::size_t characters(std::string_view text) {  // UTF-8 code points (Boost.JSON checked it)
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string at(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string item(const std::string& path, std::size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

bool is_upward(comparison c) {
  return c == comparison::gt || c == comparison::ge;
}

comparison negated(comparison c) {
  constexpr comparison negations[] = {comparison::le, comparison::lt, comparison::ge,
                                      comparison::gt};
  return negations[static_cast<std::size_t>(c)];
}

// True when some value satisfies both `value raise r` and `value clear c`: such a clear would
// let one reading raise and clear the alert at once.
bool overlaps(comparison raise, double r, comparison clear, double c) {
  if (is_upward(raise) == is_upward(clear)) return true;
  const bool raise_below = is_upward(raise);  // raise bounds from below, clear from above
  const double lo = raise_below ? r : c, hi = raise_below ? c : r;
  const bool lo_closed = raise_below ? raise == comparison::ge : clear == comparison::ge;
  const bool hi_closed = raise_below ? clear == comparison::le : raise == comparison::le;
  return lo < hi || (lo == hi && lo_closed && hi_closed);
}

// ---- shapes that templates must expand to ----

std::optional<std::string> check_topic_name(std::string_view topic) {
  if (topic.empty()) return "the topic must not be empty";
  if (topic.size() > 65535) return "the topic is longer than 65535 bytes";
  if (topic.find_first_of("+#") != std::string_view::npos)
    return "a topic to publish to must not contain + or #";
  if (topic.find('\0') != std::string_view::npos) return "the topic must not contain NUL";
  return std::nullopt;
}

std::optional<std::string> check_url(std::string_view url) {
  std::string scheme(url.substr(0, 8));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::size_t start = scheme.starts_with("http://")    ? 7
                            : scheme.starts_with("https://") ? 8
                                                             : 0;
  if (start == 0) return "must be an http:// or https:// URL";
  if (url.size() > 4096) return "is longer than 4096 bytes";
  if (std::any_of(url.begin(), url.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) == 0x7f;
      }))
    return "must not contain spaces or control characters";
  std::string_view host = url.substr(start);
  host = host.substr(0, host.find_first_of("/?#"));
  if (const auto user = host.rfind('@'); user != std::string_view::npos)
    host.remove_prefix(user + 1);
  // A port follows the last ':' unless that ':' is inside an IPv6 literal's brackets.
  if (const auto colon = host.rfind(':');
      colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos) {
    const std::string_view port = host.substr(colon + 1);
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      return "has a bad port (1..65535)";
    host = host.substr(0, colon);
  }
  if (host.empty() || host == "[]") return "has no host";
  if (host.find(':') != std::string_view::npos && !host.starts_with('['))
    return "has an IPv6 address outside [ ]";
  if (host.starts_with('[') != host.ends_with(']')) return "has a bad IPv6 address";
  return std::nullopt;
}

// Pub/Sub's resource ids (as pubsub/names, whose target this library does not link).
bool is_resource_id(std::string_view id) {
  const auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  bool ok = id.size() >= 3 && id.size() <= 255 && is_letter(id[0]) && !id.starts_with("goog");
  for (const char c : id)
    ok = ok && (is_letter(c) || (c >= '0' && c <= '9') ||
                std::string_view("._~+%-").find(c) != std::string_view::npos);
  return ok;
}

bool is_pubsub_topic(std::string_view topic) {
  constexpr std::string_view prefix = "projects/";
  if (!topic.starts_with(prefix)) return is_resource_id(topic);
  const auto rest = topic.substr(prefix.size());
  const auto slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash > 255) return false;
  constexpr std::string_view middle = "/topics/";
  return rest.substr(slash).starts_with(middle) &&
         is_resource_id(rest.substr(slash + middle.size()));
}

// ---- reading the body: each step returns false once it has recorded the first error ----

// Where a value may be (nullptr: the key is absent) and its path for errors.
struct entry {
  const json::value* value;
  std::string field;
};

// An object of the body and its path ("condition.clear"; "" for the body).
struct node {
  const json::object* object = nullptr;
  std::string path;

  entry operator[](std::string_view key) const { return {object->if_contains(key), at(path, key)}; }
};

// The readers take an entry and leave `out` alone when it is absent (the default stands).
class reader {
 public:
  bool fail(std::string field, std::string message) {
    error_ = rule_error{std::move(field), std::move(message)};
    return false;
  }
  rule_error take_error() { return std::move(error_); }

  bool need(const entry& e, std::string_view why = {}) {
    return e.value != nullptr ||
           fail(e.field, why.empty() ? "is required" : "is required " + std::string(why));
  }

  // Absent: `out.object` stays nullptr.
  bool object(const entry& e, node& out) {
    if (e.value == nullptr) return true;
    if (!e.value->is_object()) return fail(e.field, "must be an object");
    out = node{&e.value->get_object(), e.field};
    return true;
  }
  bool array(const entry& e, std::size_t max_size, const json::array*& out) {
    if (e.value == nullptr) return true;
    if (!e.value->is_array()) return fail(e.field, "must be an array");
    if (e.value->get_array().size() > max_size)
      return fail(e.field, "must have at most " + std::to_string(max_size) + " entries");
    out = &e.value->get_array();
    return true;
  }

  // Refuses a key not in `allowed`; one that `elsewhere` holds belongs to another kind, which
  // `what` names ("a threshold condition"), so the message says it does not apply there.
  bool keys(const node& n, std::string_view allowed, std::string_view elsewhere = {},
            std::string_view what = {}) {
    for (const auto& member : *n.object) {
      const std::string_view key = member.key();
      if (has_word(allowed, key)) continue;
      if (has_word(elsewhere, key))
        return fail(at(n.path, key), "does not apply to " + std::string(what));
      return fail(at(n.path, key), "unknown key (" + comma_list(allowed) + ")");
    }
    return true;
  }

  bool text(const entry& e, std::string& out, std::size_t min_chars, std::size_t max_chars) {
    if (e.value == nullptr) return true;
    if (!e.value->is_string()) return fail(e.field, "must be a string");
    const std::string_view s = e.value->get_string();
    if (s.find('\0') != std::string_view::npos)
      return fail(e.field, "must not contain the NUL character");
    if (const std::size_t n = characters(s); n < min_chars || n > max_chars)
      return fail(e.field, (min_chars == 0 ? "must be at most "
                                           : "must be " + std::to_string(min_chars) + " to ") +
                               std::to_string(max_chars) + " characters");
    out = std::string(s);
    return true;
  }

  bool flag(const entry& e, bool& out) {
    if (e.value == nullptr) return true;
    if (!e.value->is_bool()) return fail(e.field, "must be true or false");
    out = e.value->get_bool();
    return true;
  }

  // A finite number; `bounds` ("within 1..100000") says what `in_bounds` checks.
  template <class Check = bool (*)(double)>
  bool number(
      const entry& e, double& out, Check in_bounds = [](double) { return true; },
      std::string_view bounds = {}) {
    if (e.value == nullptr) return true;
    if (!e.value->is_number()) return fail(e.field, "must be a number");
    json::error_code ec;
    const double d = e.value->to_number<double>(ec);
    if (ec || !std::isfinite(d)) return fail(e.field, "must be a finite number");
    if (!in_bounds(d)) return fail(e.field, "must be a number " + std::string(bounds));
    out = d;
    return true;
  }

  // A whole number (30 or 30.0) within [min, max].
  template <class Integer>
  bool whole(const entry& e, Integer& out, std::int64_t min, std::int64_t max) {
    if (e.value == nullptr) return true;
    if (!e.value->is_number()) return fail(e.field, "must be a number");
    json::error_code ec;
    const double d = e.value->to_number<double>(ec);
    if (ec || d != std::trunc(d) || d < static_cast<double>(min) || d > static_cast<double>(max))
      return fail(e.field, "must be a whole number within " + std::to_string(min) + ".." +
                               std::to_string(max));
    out = static_cast<Integer>(d);
    return true;
  }

  // A Go duration string, or whole seconds as a number, within [min, max].
  bool span(const entry& e, duration& out, duration min, duration max) {
    if (e.value == nullptr) return true;
    std::optional<duration> d;
    if (e.value->is_string()) {
      d = parse_duration(e.value->get_string());
    } else if (e.value->is_number()) {
      json::error_code ec;
      const double seconds = e.value->to_number<double>(ec);
      if (!ec && seconds == std::trunc(seconds))  // clamped: far past every bound, no overflow
        d = duration(static_cast<std::int64_t>(std::clamp(seconds, -1e12, 1e12)) * 1000);
    }
    if (!d)
      return fail(e.field,
                  R"(must be a duration ("90s", "1m30s", "500ms", "1.5h") or whole seconds)");
    if (*d < min || *d > max)
      return fail(e.field, "must be within " + format_duration(min) + ".." + format_duration(max));
    out = *d;
    return true;
  }

  template <class Enum, std::size_t N>
  bool choice(const entry& e, const std::string_view (&names)[N], Enum& out) {
    if (e.value == nullptr) return true;
    const auto found =
        e.value->is_string() ? find_name<Enum>(names, e.value->get_string()) : std::nullopt;
    if (found) {
      out = *found;
      return true;
    }
    return fail(e.field, (e.value->is_string()
                              ? "\"" + std::string(e.value->get_string()) + "\" is not one of "
                              : std::string("must be one of ")) +
                             name_list(names));
  }

  // A template: its placeholders known and its braces closed.
  bool template_text(const entry& e, std::string& out) {
    if (!text(e, out, 0, 65535)) return false;
    if (auto problem = check_template(out)) return fail(e.field, "bad template: " + *problem);
    return true;
  }

 private:
  rule_error error_;
};

// ---- the rule's parts ----

// A kind's "clear" object, its keys checked; absent: `out.object` stays nullptr.
bool clear_node(reader& in, const node& condition_node, condition_kind kind, node& out) {
  return in.object(condition_node["clear"], out) &&
         (out.object == nullptr ||
          in.keys(out, kind_clear_keys[static_cast<std::size_t>(kind)], any_clear_key,
                  "the clear of condition type " + std::string(to_string(kind))));
}

bool read_threshold(reader& in, const node& o, condition& c) {
  constexpr std::string_view why = "for a threshold condition";
  if (!in.need(o["operator"], why) || !in.choice(o["operator"], comparison_names, c.op) ||
      !in.need(o["value"], why) || !in.number(o["value"], c.threshold))
    return false;
  c.clear_op = negated(c.op);
  c.clear_threshold = c.threshold;
  node clear;
  if (!clear_node(in, o, c.kind, clear)) return false;
  if (clear.object == nullptr) return true;
  if (!in.choice(clear["operator"], comparison_names, c.clear_op) ||
      !in.number(clear["value"], c.clear_threshold) ||
      !in.span(clear["for"], c.clear_pending, duration(0), seven_days))
    return false;
  if (!overlaps(c.op, c.threshold, c.clear_op, c.clear_threshold)) return true;
  const bool same_way = is_upward(c.op) == is_upward(c.clear_op);
  return in.fail(same_way || clear["value"].value == nullptr ? "condition.clear.operator"
                                                             : "condition.clear.value",
                 "the clear condition (" + std::string(to_string(c.clear_op)) + " " +
                     number_text(c.clear_threshold) + ") overlaps the raise condition (" +
                     std::string(to_string(c.op)) + " " + number_text(c.threshold) +
                     "): a value could both raise and clear");
}

bool read_range(reader& in, const node& o, condition& c) {
  constexpr std::string_view why = "for a range condition";
  if (!in.need(o["lo"], why) || !in.number(o["lo"], c.lo) || !in.need(o["hi"], why) ||
      !in.number(o["hi"], c.hi))
    return false;
  if (c.lo >= c.hi)
    return in.fail("condition.hi", "lo must be below hi (lo " + number_text(c.lo) + ", hi " +
                                       number_text(c.hi) + ")");
  c.clear_lo = c.lo;
  c.clear_hi = c.hi;
  node clear;
  if (!clear_node(in, o, c.kind, clear)) return false;
  if (clear.object == nullptr) return true;
  if (!in.number(clear["lo"], c.clear_lo) || !in.number(clear["hi"], c.clear_hi)) return false;
  if (c.clear_lo < c.lo)
    return in.fail("condition.clear.lo",
                   "the clear band must lie inside [lo, hi]: " + number_text(c.clear_lo) +
                       " is below lo " + number_text(c.lo));
  if (c.clear_hi > c.hi)
    return in.fail("condition.clear.hi",
                   "the clear band must lie inside [lo, hi]: " + number_text(c.clear_hi) +
                       " is above hi " + number_text(c.hi));
  if (c.clear_lo >= c.clear_hi)
    return in.fail("condition.clear.hi", "clear lo must be below clear hi (lo " +
                                             number_text(c.clear_lo) + ", hi " +
                                             number_text(c.clear_hi) + ")");
  return in.span(clear["for"], c.clear_pending, duration(0), seven_days);
}

// ewma, mad, flatline: their parameters (each kind's keys were checked), a clear with "for".
bool read_detector(reader& in, const node& o, condition& c) {
  const auto within = [](double lo, double hi) {
    return [lo, hi](double d) { return d >= lo && d <= hi; };
  };
  if (!in.number(o["half_life"], c.half_life, within(1, 100'000), "within 1..100000") ||
      !in.whole(o["window"], c.window, 3, 10'000) ||
      !in.number(
          o["k"], c.k, [](double d) { return d > 0 && d <= 100; }, "above 0 and at most 100") ||
      !in.number(
          o["floor"], c.floor, [](double d) { return d >= 0; }, "of at least 0") ||
      !in.whole(o["count"], c.count, 2, 100'000))
    return false;
  if (c.kind == condition_kind::mad) c.warmup = c.window;  // a full window before judging
  node clear;
  return in.whole(o["warmup"], c.warmup, 0, 100'000) && clear_node(in, o, c.kind, clear) &&
         (clear.object == nullptr ||
          in.span(clear["for"], c.clear_pending, duration(0), seven_days));
}

bool read_condition(reader& in, const entry& e, condition& c) {
  node o;
  if (!in.need({e.value, "condition.type"}) || !in.object(e, o) || !in.need(o["type"]))
    return false;
  if (!in.choice(o["type"], kind_names, c.kind)) return false;
  const std::string kind(to_string(c.kind));
  if (!in.keys(o, kind_keys[static_cast<std::size_t>(c.kind)], any_condition_key,
               "condition type " + kind))
    return false;
  // no_data and offline: "for" is the silence that raises, so it is required and longer.
  const bool is_silence = c.kind == condition_kind::no_data || c.kind == condition_kind::offline;
  if (is_silence && !in.need(o["for"], "for a " + kind + " condition")) return false;
  if (!in.span(o["for"], c.pending, is_silence ? one_second : duration(0),
               is_silence ? thirty_days : seven_days))
    return false;
  switch (c.kind) {
    case condition_kind::threshold:
      return read_threshold(in, o, c);
    case condition_kind::range:
      return read_range(in, o, c);
    case condition_kind::ewma:
    case condition_kind::mad:
    case condition_kind::flatline:
      return read_detector(in, o, c);
    case condition_kind::no_data:
    case condition_kind::offline:
      break;
  }
  return true;
}

bool read_names(reader& in, const entry& e, std::vector<std::string>& out) {
  const json::array* list = nullptr;
  if (!in.array(e, max_selection_entries, list)) return false;
  for (std::size_t i = 0; list != nullptr && i < list->size(); ++i)
    if (!in.text({&(*list)[i], item(e.field, i)}, out.emplace_back(), 1, 65535)) return false;
  return true;
}

bool read_selection(reader& in, const entry& e, condition_kind kind, selection& s) {
  const bool is_offline = kind == condition_kind::offline;
  node o;
  if (!in.object(e, o)) return false;
  if (o.object == nullptr) return is_offline || in.fail("selection.field", "is required");
  if (!in.keys(o, selection_keys)) return false;
  if (is_offline) {
    // Offline alerts come from connection events: a reading's filters would never match.
    for (const std::string_view key : {"field", "measurement", "database", "tags"})
      if (o[key].value != nullptr)
        return in.fail(o[key].field,
                       "does not apply to an offline condition (it watches connections)");
  } else if (!in.need(o["field"]) || !in.text(o["field"], s.field, 1, 255)) {
    return false;
  }
  node tags;
  if (!in.text(o["measurement"], s.measurement, 0, 65535) ||
      !in.text(o["database"], s.database, 0, 65535) || !read_names(in, o["devices"], s.devices) ||
      !read_names(in, o["groups"], s.groups) || !in.object(o["tags"], tags))
    return false;
  if (tags.object == nullptr) return true;
  if (tags.object->size() > max_selection_entries)
    return in.fail(tags.path,
                   "must have at most " + std::to_string(max_selection_entries) + " entries");
  for (const auto& member : *tags.object) {
    // A tag with an empty key or value is never on a point (line protocol drops them).
    if (member.key().empty() || member.key().find('\0') != json::string_view::npos)
      return in.fail(tags.path, "a tag key must be non-empty, without NUL");
    auto& [key, value] = s.tags.emplace_back(std::string(member.key()), std::string());
    if (!in.need(tags[key]) || !in.text(tags[key], value, 1, 65535)) return false;
  }
  std::sort(s.tags.begin(), s.tags.end());
  return true;
}

// `previous`: the severity of the escalation before this one, if any.
bool read_escalation(reader& in, const node& o, const rule& r, std::optional<severity> previous,
                     escalation& e) {
  const condition& c = r.when;
  if (!in.keys(o, "severity value after") || !in.choice(o["severity"], severity_names, e.to))
    return false;
  if (e.to <= r.level)
    return in.fail(o["severity"].field,
                   "must be above the rule's severity (" + std::string(to_string(r.level)) + ")");
  if (previous && e.to < *previous)
    return in.fail(o["severity"].field, "must not be below the previous escalation's (" +
                                            std::string(to_string(*previous)) + ")");
  const entry value = o["value"], after = o["after"];
  if ((value.value == nullptr) == (after.value == nullptr))
    return in.fail(o.path, "needs exactly one of value or after");
  if (after.value != nullptr) return in.span(after, e.after.emplace(), one_second, thirty_days);
  const bool is_score = c.kind == condition_kind::ewma || c.kind == condition_kind::mad;
  if (c.kind != condition_kind::threshold && !is_score)
    return in.fail(value.field, "a value escalation needs a threshold, ewma or mad condition");
  if (!in.number(value, e.value.emplace())) return false;
  if (is_score && *e.value <= c.k)
    return in.fail(value.field, "must be above the condition's k (" + number_text(c.k) + ")");
  if (c.kind == condition_kind::threshold &&
      (is_upward(c.op) ? *e.value <= c.threshold : *e.value >= c.threshold))
    return in.fail(value.field, "must be stricter than the raise threshold (" +
                                    std::string(to_string(c.op)) + " " + number_text(c.threshold) +
                                    ")");
  return true;
}

bool read_events(reader& in, const entry& e, std::uint8_t& mask) {
  const json::array* list = nullptr;
  if (!in.array(e, std::size(event_names) * 4, list)) return false;
  if (list == nullptr) return true;
  if (list->empty()) return in.fail(e.field, "must name at least one event");
  mask = 0;
  for (std::size_t i = 0; i < list->size(); ++i) {
    alert_event event{};
    if (!in.choice({&(*list)[i], item(e.field, i)}, event_names, event)) return false;
    mask = static_cast<std::uint8_t>(mask | (1u << static_cast<unsigned>(event)));
  }
  return true;
}

bool read_notification(reader& in, const node& o, notification& n) {
  if (!in.need(o["type"], "(mqtt, webhook or pubsub)") ||
      !in.choice(o["type"], notification_names, n.kind) ||
      !in.keys(o, notification_keys[static_cast<std::size_t>(n.kind)], any_notification_key,
               "notification type " + std::string(name_of(notification_names, n.kind))) ||
      !read_events(in, o["events"], n.events))
    return false;
  switch (n.kind) {
    case notification_kind::mqtt: {
      n.target = std::string(default_mqtt_topic);
      if (!in.template_text(o["topic"], n.target)) return false;
      if (auto problem = check_topic_name(expand_template(n.target, dummy_values)))
        return in.fail(o["topic"].field, *problem);
      return in.whole(o["qos"], n.qos, 0, 1);
    }
    case notification_kind::webhook: {
      if (!in.need(o["url"], "for a webhook") || !in.template_text(o["url"], n.target))
        return false;
      if (auto problem = check_url(expand_template(n.target, dummy_values)))
        return in.fail(o["url"].field, *problem);
      // "secret_set" is what to_json shows instead of the secret: read-only, ignored here. The
      // service keeps the stored secret when a PUT omits "secret" (a GET sent back as it was).
      bool ignored = false;
      return in.flag(o["secret_set"], ignored) && in.text(o["secret"], n.secret, 0, 256) &&
             in.span(o["timeout"], n.timeout, duration(100), duration(60'000)) &&
             in.whole(o["max_attempts"], n.max_attempts, 1, 20);
    }
    case notification_kind::pubsub: {
      if (!in.need(o["topic"], "for pubsub") || !in.text(o["topic"], n.target, 1, 65535))
        return false;
      if (is_pubsub_topic(n.target)) return true;
      return in.fail(o["topic"].field,
                     "'" + n.target +
                         "' is not a Pub/Sub topic (an id of 3 to 255 letters, digits and ._~+%-, "
                         "starting with a letter, not with goog; or "
                         "projects/<project>/topics/<id>)");
    }
  }
  return true;
}

// Each element of the array at `e` as an object, read by `read(node, index)`.
template <class Read>
bool read_objects(reader& in, const entry& e, std::size_t max_size, Read read) {
  const json::array* list = nullptr;
  if (!in.array(e, max_size, list)) return false;
  for (std::size_t i = 0; list != nullptr && i < list->size(); ++i) {
    node o;
    if (!in.object({&(*list)[i], item(e.field, i)}, o) || !read(o, i)) return false;
  }
  return true;
}

bool read_rule(reader& in, const node& o, rule& r) {
  if (!in.keys(o, rule_keys) || !in.need(o["name"]) || !in.text(o["name"], r.name, 1, 128))
    return false;
  for (const char c : r.name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-'))
      return in.fail("name", "must be 1 to 128 of letters, digits, '_', '.' and '-'");
  return in.text(o["description"], r.description, 0, 1024) &&
         in.choice(o["severity"], severity_names, r.level) && in.flag(o["enabled"], r.enabled) &&
         read_condition(in, o["condition"], r.when) &&
         read_selection(in, o["selection"], r.when.kind, r.select) &&
         read_objects(in, o["escalations"], max_escalations,
                      [&](const node& e, std::size_t) {
                        std::optional<severity> previous;
                        if (!r.escalations.empty()) previous = r.escalations.back().to;
                        return read_escalation(in, e, r, previous, r.escalations.emplace_back());
                      }) &&
         read_objects(in, o["notifications"], max_notifications, [&](const node& n, std::size_t) {
           return read_notification(in, n, r.notifications.emplace_back());
         });
}

// ---- writing: JSON by hand, so numbers read as written ("35", not Boost's "3.5E1") ----

class object_writer {
 public:
  explicit object_writer(std::string& out) : out_(out) { out_ += '{'; }
  object_writer(const object_writer&) = delete;
  object_writer& operator=(const object_writer&) = delete;
  ~object_writer() { out_ += '}'; }

  std::string& key(std::string_view name) {
    if (!first_) out_ += ',';
    first_ = false;
    core::append_json_string(out_, name);
    out_ += ':';
    return out_;
  }
  void text(std::string_view name, std::string_view value) {
    core::append_json_string(key(name), value);
  }
  void number(std::string_view name, double value) { key(name) += number_text(value); }
  void whole(std::string_view name, std::int64_t value) { key(name) += std::to_string(value); }
  void flag(std::string_view name, bool value) { key(name) += value ? "true" : "false"; }
  void span(std::string_view name, duration value) { text(name, format_duration(value)); }

 private:
  std::string& out_;
  bool first_ = true;
};

// A JSON array of `values`, each written by `write(out, value)`.
template <class Values, class Write>
void write_list(std::string& out, const Values& values, Write write) {
  out += '[';
  for (std::size_t i = 0; i < std::size(values); ++i) {
    if (i > 0) out += ',';
    write(out, values[i]);
  }
  out += ']';
}

void write_string(std::string& out, std::string_view text) {
  core::append_json_string(out, text);
}

void write_condition(std::string& out, const condition& c) {
  object_writer w(out);
  w.text("type", to_string(c.kind));
  switch (c.kind) {
    case condition_kind::threshold:
      w.text("operator", to_string(c.op));
      w.number("value", c.threshold);
      break;
    case condition_kind::range:
      w.number("lo", c.lo);
      w.number("hi", c.hi);
      break;
    case condition_kind::ewma:
      w.number("half_life", c.half_life);
      w.number("k", c.k);
      w.whole("warmup", c.warmup);
      break;
    case condition_kind::mad:
      w.whole("window", c.window);
      w.number("k", c.k);
      w.number("floor", c.floor);
      w.whole("warmup", c.warmup);
      break;
    case condition_kind::flatline:
      w.whole("count", c.count);
      break;
    case condition_kind::no_data:
    case condition_kind::offline:
      break;
  }
  w.span("for", c.pending);
  if (c.kind == condition_kind::no_data || c.kind == condition_kind::offline) return;
  object_writer clear(w.key("clear"));
  if (c.kind == condition_kind::threshold) {
    clear.text("operator", to_string(c.clear_op));
    clear.number("value", c.clear_threshold);
  } else if (c.kind == condition_kind::range) {
    clear.number("lo", c.clear_lo);
    clear.number("hi", c.clear_hi);
  }
  clear.span("for", c.clear_pending);
}

void write_notification(std::string& out, const notification& n) {
  object_writer w(out);
  w.text("type", name_of(notification_names, n.kind));
  switch (n.kind) {
    case notification_kind::mqtt:
      w.text("topic", n.target);
      w.whole("qos", n.qos);
      break;
    case notification_kind::webhook:
      w.text("url", n.target);
      w.flag("secret_set", !n.secret.empty());
      w.span("timeout", n.timeout);
      w.whole("max_attempts", n.max_attempts);
      break;
    case notification_kind::pubsub:
      w.text("topic", n.target);
      break;
  }
  std::vector<std::string_view> events;
  for (std::size_t i = 0; i < std::size(event_names); ++i)
    if (n.sends(static_cast<alert_event>(i))) events.push_back(event_names[i]);
  write_list(w.key("events"), events, write_string);
}

void write_rule(std::string& out, const rule& r) {
  object_writer w(out);
  w.text("name", r.name);
  w.text("description", r.description);
  w.text("severity", to_string(r.level));
  w.flag("enabled", r.enabled);
  {
    object_writer s(w.key("selection"));
    const selection& sel = r.select;
    if (r.when.kind != condition_kind::offline) {  // offline refuses the reading filters
      s.text("field", sel.field);
      s.text("measurement", sel.measurement);
      s.text("database", sel.database);
    }
    write_list(s.key("devices"), sel.devices, write_string);
    write_list(s.key("groups"), sel.groups, write_string);
    if (r.when.kind != condition_kind::offline) {
      object_writer tags(s.key("tags"));
      for (const auto& [key, value] : sel.tags) tags.text(key, value);
    }
  }
  write_condition(w.key("condition"), r.when);
  write_list(w.key("escalations"), r.escalations, [](std::string& list, const escalation& e) {
    object_writer o(list);
    o.text("severity", to_string(e.to));
    if (e.value) o.number("value", *e.value);
    if (e.after) o.span("after", *e.after);
  });
  write_list(w.key("notifications"), r.notifications, write_notification);
}

}  // namespace

std::string_view to_string(severity s) {
  return name_of(severity_names, s);
}
std::optional<severity> parse_severity(std::string_view text) {
  return find_name<severity>(severity_names, text);
}

std::string_view to_string(comparison c) {
  return name_of(comparison_names, c);
}
std::optional<comparison> parse_comparison(std::string_view text) {
  return find_name<comparison>(comparison_names, text);
}

bool holds(comparison c, double value, double threshold) {
  return is_upward(c) ? value > threshold || (c == comparison::ge && value == threshold)
                      : value < threshold || (c == comparison::le && value == threshold);
}

std::string_view to_string(condition_kind k) {
  return name_of(kind_names, k);
}

std::string_view to_string(alert_event e) {
  return name_of(event_names, e);
}
std::optional<alert_event> parse_alert_event(std::string_view text) {
  return find_name<alert_event>(event_names, text);
}

std::variant<rule, rule_error> parse_rule(std::string_view text) {
  json::error_code ec;
  const json::value body = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) return rule_error{"", "the body is not JSON (" + ec.message() + ")"};
  if (!body.is_object()) return rule_error{"", "the body must be a JSON object"};
  reader in;
  rule out;
  if (!read_rule(in, node{&body.get_object(), ""}, out)) return in.take_error();
  return out;
}

std::string to_json(const rule& r) {
  std::string out;
  write_rule(out, r);
  return out;
}

// Go's time.ParseDuration over the units a rule needs (ms, s, m, h), in whole milliseconds: a
// part finer than that ("1.0005s") is refused rather than rounded away.
std::optional<duration> parse_duration(std::string_view text) {
  bool is_negative = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    is_negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text == "0") return duration(0);
  if (text.empty()) return std::nullopt;
  // Go's range (int64 nanoseconds), which also keeps every product below int64's.
  constexpr std::int64_t max_ms = std::numeric_limits<std::int64_t>::max() / 1'000'000;
  constexpr std::int64_t max_scale = 1'000'000'000'000;  // 12 fraction digits kept
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  std::int64_t total = 0;
  while (!text.empty()) {
    std::size_t i = 0;
    std::int64_t whole = 0, fraction = 0, scale = 1;
    bool has_digits = false;
    for (; i < text.size() && is_digit(text[i]); ++i, has_digits = true) {
      whole = whole * 10 + (text[i] - '0');
      if (whole > max_ms) return std::nullopt;
    }
    if (i < text.size() && text[i] == '.') {
      for (++i; i < text.size() && is_digit(text[i]); ++i, has_digits = true) {
        if (scale < max_scale) {
          fraction = fraction * 10 + (text[i] - '0');
          scale *= 10;
        } else if (text[i] != '0') {
          return std::nullopt;
        }
      }
    }
    if (!has_digits) return std::nullopt;
    std::size_t end = i;
    while (end < text.size() && !is_digit(text[end]) && text[end] != '.') ++end;
    const std::string_view unit = text.substr(i, end - i);
    const std::int64_t unit_ms = unit == "ms"  ? 1
                                 : unit == "s" ? 1000
                                 : unit == "m" ? 60'000
                                 : unit == "h" ? 3'600'000
                                               : 0;
    if (unit_ms == 0 || whole > max_ms / unit_ms) return std::nullopt;
    if (fraction * unit_ms % scale != 0) return std::nullopt;
    total += whole * unit_ms + fraction * unit_ms / scale;
    if (total > max_ms) return std::nullopt;
    text.remove_prefix(end);
  }
  return duration(is_negative ? -total : total);
}

// Go's time.Duration.String() at millisecond precision: "0s", "500ms", "1.5s", "1h0m0s".
std::string format_duration(duration d) {
  const std::int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out = ms < 0 ? "-" : "";
  const std::uint64_t u =
      ms < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
  if (u < 1000) return out + std::to_string(u) + "ms";
  const std::uint64_t hours = u / 3'600'000, minutes = u / 60'000 % 60;
  if (hours > 0) out += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  // Exact thousandths divided once: the shortest text of the result is "30.5", not "30.499...".
  return out + number_text(static_cast<double>(u % 60'000) / 1000) + "s";
}

std::optional<std::string> check_template(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '}') return "'}' at " + std::to_string(i) + " has no '{' before it";
    if (text[i] != '{') continue;
    const auto close = text.find_first_of("{}", i + 1);
    if (close == std::string_view::npos || text[close] == '{')
      return "'{' at " + std::to_string(i) + " is not closed";
    const std::string_view name = text.substr(i + 1, close - i - 1);
    if (!find_name<std::size_t>(placeholder_names, name))
      return "unknown placeholder {" + std::string(name) + "} (one of " +
             name_list(placeholder_names, "{", "}") + ")";
    i = close;
  }
  return std::nullopt;
}

std::string expand_template(std::string_view text, const template_values& values) {
  const std::string_view by_index[] = {values.device_id, values.type,  values.severity,
                                       values.rule,      values.event, values.status};
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto close = text[i] == '{' ? text.find_first_of("{}", i + 1) : std::string_view::npos;
    if (close != std::string_view::npos && text[close] == '}') {
      if (const auto index =
              find_name<std::size_t>(placeholder_names, text.substr(i + 1, close - i - 1))) {
        out += by_index[*index];
        i = close;
        continue;
      }
    }
    out += text[i];  // not a placeholder (check_template refuses these): kept as written
  }
  return out;
}

rule tutorial_rule() {
  // The parser fills the rest: clear at <= 35, the default MQTT topic. A test checks the result.
  return std::get<rule>(parse_rule(R"({"name": "high_temperature", "enabled": false,
      "description": "temperature above 35 on any device",
      "selection": {"field": "temperature"},
      "condition": {"type": "threshold", "operator": ">", "value": 35},
      "notifications": [{"type": "mqtt"}]})"));
}

}  // namespace nimbus::alerts
