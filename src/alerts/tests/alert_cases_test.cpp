// Replays the alert cases (tests/cases/*.txt): rules, points, presence events, operator actions
// and restarts on a scripted clock, against the alert events the engine must produce. One ctest
// per case file. The format:
//
//   case <title>                      starts a case: a fresh engine, time 0
//   setting <name> <value>            before anything else in the case: max_states, max_history,
//                                     max_cleared, device_tag, default_database
//   rule <json>                       put_rule at the current time (JSON may continue on lines
//                                     indented by two spaces)
//   group <name> <device>...          the registry group's members, as the group lookup answers
//   at <time> <step>                  runs the step, then advance(time); <step> is one of
//     point [@<database>] <line>        one line of line protocol; its time is <time> unless the
//                                       line has a timestamp (ns)
//     presence <device> connected|disconnected
//     advance                           nothing but advance(time)
//     ack <id> <who> ["note"]           acknowledge; clear <id> <who> ["note"]
//     rule <json> | remove-rule <name> | disable <name> | enable <name>
//     groups-changed
//     restart                           take_dirty_states, every alert and next_id into a new
//                                       engine with the same rules (a kill -9 after a checkpoint)
//   expect at <time> <event> <device> <type> [key=value]...
//                                     the next event not yet expected: its step's time, what,
//                                     device and type, and any of id, value, peak, count,
//                                     severity, status, who, note, acknowledged, threshold,
//                                     series, field, raised_at, updated_at, cleared_at,
//                                     acknowledged_at
//   expect none                       no event left unexpected so far
//   result [ack|clear|remove-rule <x>] done|not_found|conflict
//                                     the previous action's result (unchecked: must be done)
//   alert <id> [key=value]... | alert <id> missing      the stored alert, now
//   counters [key=value]...           points, evaluated, late, non_finite, states,
//                                     states_refused, timers, open
//   next-deadline <time>|none
//
// Times are 0s, 90s, 1m30s, 500ms, 2h, 1d (a bare number is ms). `#` starts a comment (at the
// start of a line, or after a space outside quotes).
//
// Each file runs twice: with points as a writer without series keys gives them, and with their
// keys and ids, as the time-series store hands them to the alerts service.
#include <gtest/gtest.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "alerts/engine.hpp"
#include "alerts/rule.hpp"
#include "tsdb/line_protocol.hpp"

#ifndef NIMBUS_CASES_DIR
#error "NIMBUS_CASES_DIR must name the folder of alert cases"
#endif
#include "case_files.hpp"

namespace nimbus::alerts {
namespace {

constexpr auto npos = std::string_view::npos;

struct line {
  int number = 0;
  std::string directive;
  std::string argument;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The text before a comment: `#` at the start, or after whitespace outside double quotes.
std::string_view strip_comment(std::string_view s) {
  bool is_quoted = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && is_quoted) {
      ++i;
    } else if (s[i] == '"') {
      is_quoted = !is_quoted;
    } else if (s[i] == '#' && !is_quoted &&
               (i == 0 || std::isspace(static_cast<unsigned char>(s[i - 1])))) {
      return s.substr(0, i);
    }
  }
  return s;
}

std::vector<line> read_lines(const std::string& path, bool& ok) {
  std::vector<line> lines;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    ok = false;
    return lines;
  }
  std::string raw;
  int number = 0;
  while (std::getline(in, raw)) {
    ++number;
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
    auto content = trim(strip_comment(raw));
    if (content.empty()) continue;
    if (raw.front() == ' ' || raw.front() == '\t') {
      if (lines.empty()) {
        ADD_FAILURE_AT(path.c_str(), number) << "an indented line with nothing to continue";
        ok = false;
        continue;
      }
      lines.back().argument += '\n';
      lines.back().argument += content;
      continue;
    }
    line l;
    l.number = number;
    auto space = content.find_first_of(" \t");
    l.directive = std::string(content.substr(0, space));
    if (space != npos) l.argument = std::string(trim(content.substr(space)));
    lines.push_back(std::move(l));
  }
  return lines;
}

// Whitespace-separated words; "double quoted" words may hold spaces (quotes dropped, also in
// key="value").
std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i == s.size()) break;
    std::string word;
    bool is_quoted = false;
    for (; i < s.size() && (is_quoted || !std::isspace(static_cast<unsigned char>(s[i]))); ++i) {
      if (s[i] == '"')
        is_quoted = !is_quoted;
      else
        word.push_back(s[i]);
    }
    out.push_back(std::move(word));
  }
  return out;
}

template <class Integer>
bool parse_integer(std::string_view text, Integer& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::optional<std::int64_t> parse_time(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t total = 0;
  while (!text.empty()) {
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
    std::int64_t n = 0;
    if (digits == 0 || !parse_integer(text.substr(0, digits), n)) return std::nullopt;
    text.remove_prefix(digits);
    std::int64_t unit = 1;
    if (text.starts_with("ms")) {
      text.remove_prefix(2);
    } else if (!text.empty() &&
               (text[0] == 's' || text[0] == 'm' || text[0] == 'h' || text[0] == 'd')) {
      unit = text[0] == 's'   ? 1000
             : text[0] == 'm' ? 60'000
             : text[0] == 'h' ? 3'600'000
                              : 86'400'000;
      text.remove_prefix(1);
    } else if (!text.empty()) {
      return std::nullopt;
    }
    total += n * unit;
  }
  return total;
}

std::string format_time(std::int64_t ms) {
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const std::pair<std::int64_t, const char*> units[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& [size, name] : units)
    if (ms >= size) {
      out += std::to_string(ms / size) + name;
      ms %= size;
    }
  return out;
}

std::string number_text(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.10g", v);
  return buffer;
}

bool same_number(double actual, std::string_view expected) {
  double wanted = 0;
  auto [end, ec] = std::from_chars(expected.data(), expected.data() + expected.size(), wanted);
  if (ec != std::errc() || end != expected.data() + expected.size()) return false;
  return std::abs(actual - wanted) <= 1e-9 * std::max(1.0, std::abs(wanted));
}

std::string_view result_name(action_result r) {
  switch (r) {
    case action_result::done:
      return "done";
    case action_result::not_found:
      return "not_found";
    case action_result::conflict:
      return "conflict";
  }
  return "?";
}

struct observed {
  std::int64_t at_ms = 0;
  event e;
};

// The value of a key of an alert (or of the event that carried it), as the case files write it;
// nullopt for an unknown key.
std::optional<std::string> field_of(const alert& a, std::optional<alert_event> what,
                                    std::string_view key) {
  auto note_of = [&](alert_event kind) -> std::string {
    for (auto it = a.history.rbegin(); it != a.history.rend(); ++it)
      if (it->what == kind) return it->note;
    return {};
  };
  if (key == "id") return std::to_string(a.id);
  if (key == "value") return number_text(a.value);
  if (key == "peak") return number_text(a.peak);
  if (key == "count") return std::to_string(a.count);
  if (key == "severity") return std::string(to_string(a.level));
  if (key == "status") return std::string(to_string(a.status));
  if (key == "acknowledged") return a.acknowledged ? "true" : "false";
  if (key == "threshold") return a.threshold ? number_text(*a.threshold) : "none";
  if (key == "raised_at") return format_time(a.raised_ms);
  if (key == "updated_at") return format_time(a.updated_ms);
  if (key == "cleared_at") return a.cleared_ms ? format_time(*a.cleared_ms) : "none";
  if (key == "acknowledged_at") return a.acknowledged_ms ? format_time(*a.acknowledged_ms) : "none";
  if (key == "series") return a.series;
  if (key == "field") return a.field;
  if (key == "who") {
    if (what == alert_event::acknowledged) return a.acknowledged_by;
    if (what == alert_event::cleared || (!what && !a.open())) return a.cleared_by;
    return std::string("rule");
  }
  if (key == "note") {
    if (what == alert_event::acknowledged) return note_of(alert_event::acknowledged);
    return note_of(alert_event::cleared);
  }
  return std::nullopt;
}

// Numbers compare with a relative tolerance of 1e-9, times by value (90s == 1m30s).
bool same_value(std::string_view key, const std::string& actual, const std::string& wanted) {
  if (actual == wanted) return true;
  if (key == "value" || key == "peak" || key == "threshold")
    return actual != "none" && wanted != "none" && same_number(std::stod(actual), wanted);
  if (key.ends_with("_at")) return parse_time(actual) && parse_time(actual) == parse_time(wanted);
  return false;
}

std::string describe(const observed& o) {
  const alert& a = o.e.snapshot;
  return "at " + format_time(o.at_ms) + " " + std::string(to_string(o.e.what)) + " " + a.device_id +
         " " + a.type + " id=" + std::to_string(a.id) + " value=" + number_text(a.value) +
         " peak=" + number_text(a.peak) + " count=" + std::to_string(a.count) +
         " severity=" + std::string(to_string(a.level)) +
         " status=" + std::string(to_string(a.status)) + " who=" + *field_of(a, o.e.what, "who");
}

// One case file, run line by line. Every failure is reported at its line and the run goes on.
class case_runner {
 public:
  // with_keys: points come with their series keys and ids, as the store hands them to the
  // alerts service (the engine then judges a known series by its bindings); without, as from a
  // writer that has none (the engine's index, by device and field, each time).
  case_runner(std::string path, bool with_keys) : path_(std::move(path)), with_keys_(with_keys) {}

  void run(const std::vector<line>& lines) {
    for (const auto& l : lines) step(l);
    finish_case();
    if (cases_ == 0) ADD_FAILURE() << path_ << " holds no case";
  }

 private:
  void fail(int number, const std::string& why) {
    ADD_FAILURE_AT(path_.c_str(), number) << "[" << title_ << "] " << why;
  }

  void finish_case() { check_result_taken(); }

  void check_result_taken() {
    if (result_line_ != 0 && result_ != action_result::done)
      fail(result_line_, "the action returned " + std::string(result_name(result_)) +
                             " and no result line expects it");
    result_line_ = 0;
  }

  engine& eng() {
    if (!engine_) start_engine();
    return *engine_;
  }

  void start_engine() {
    engine_ = std::make_unique<engine>(settings_);
    engine_->set_group_lookup([this](std::string_view device) {
      std::vector<std::string> out;
      for (const auto& [group, members] : groups_)
        for (const auto& member : members)
          if (member == device) out.push_back(group);
      return out;
    });
  }

  void take_events(std::int64_t at) {
    for (auto& e : eng().take_events()) events_.push_back(observed{at, std::move(e)});
  }

  std::optional<rule> parse(int n, std::string_view json) {
    auto parsed = parse_rule(json);
    if (auto* error = std::get_if<rule_error>(&parsed)) {
      fail(n, "parse_rule refused the rule: " + error->field + ": " + error->message);
      return std::nullopt;
    }
    return std::get<rule>(std::move(parsed));
  }

  void restart(int n) {
    for (auto& s : eng().take_dirty_states()) {
      auto key = std::pair{s.rule, s.series};
      if (s.data.empty())
        checkpoint_.erase(key);
      else
        checkpoint_[key] = std::move(s.data);
    }
    alert_filter everything;
    everything.all = true;
    everything.limit = std::numeric_limits<std::size_t>::max();
    auto alerts = eng().list(everything);
    const auto next = eng().next_id();
    std::vector<rule> rules;
    for (const rule* r : eng().rules()) rules.push_back(*r);
    if (!eng().take_events().empty()) fail(n, "events were left before the restart");
    engine_.reset();
    start_engine();
    for (auto& r : rules) engine_->put_rule(std::move(r), now_);
    for (auto& a : alerts) engine_->restore_alert(std::move(a));
    engine_->restore_next_id(next);
    for (const auto& [key, data] : checkpoint_)
      engine_->restore_state(saved_state{key.first, key.second, data});
  }

  void set_enabled(int n, const std::string& name, bool enabled) {
    const rule* r = eng().find_rule(name);
    if (r == nullptr) return fail(n, "no rule named " + name);
    rule copy = *r;
    copy.enabled = enabled;
    eng().put_rule(std::move(copy), now_);
  }

  void run_step(int n, std::string_view action, std::string_view rest) {
    auto args = words(rest);
    engine& e = eng();
    if (action == "point") {
      std::string database = settings_.default_database;
      if (rest.starts_with("@")) {
        auto space = rest.find(' ');
        database = std::string(rest.substr(1, space - 1));
        rest = space == npos ? std::string_view() : trim(rest.substr(space));
      }
      auto parsed = tsdb::parse_lines(rest, tsdb::precision::ns, now_ * 1'000'000);
      if (!parsed.errors.empty())
        return fail(n, "the line does not parse: " + tsdb::error_message(parsed.errors.front()));
      if (parsed.points.size() != 1) return fail(n, "point takes exactly one line");
      const tsdb::point& p = parsed.points.front();
      if (with_keys_) {
        const std::string key = tsdb::series_key(p);
        e.on_point(database, p, now_, key, tsdb::series_id(key));
      } else {
        e.on_point(database, p, now_);
      }
    } else if (action == "presence") {
      if (args.size() != 2 || (args[1] != "connected" && args[1] != "disconnected"))
        return fail(n, "presence takes a device and connected or disconnected");
      e.on_presence(args[0], args[1] == "connected", now_);
    } else if (action == "advance") {
      // advance() below
    } else if (action == "ack" || action == "clear") {
      std::uint64_t id = 0;
      if (args.size() < 2 || args.size() > 3 || !parse_integer(args[0], id))
        return fail(n, std::string(action) + " takes an id, who and an optional note");
      const std::string note = args.size() == 3 ? args[2] : "";
      result_ = action == "ack" ? e.acknowledge(id, args[1], note, now_)
                                : e.clear(id, args[1], note, now_);
      result_line_ = n;
    } else if (action == "rule") {
      if (auto r = parse(n, rest)) e.put_rule(std::move(*r), now_);
    } else if (action == "remove-rule") {
      result_ = e.remove_rule(rest, now_) ? action_result::done : action_result::not_found;
      result_line_ = n;
    } else if (action == "disable" || action == "enable") {
      set_enabled(n, std::string(rest), action == "enable");
    } else if (action == "groups-changed") {
      e.groups_changed(now_);
    } else if (action == "restart") {
      restart(n);
    } else {
      return fail(n, "unknown step " + std::string(action));
    }
    take_events(now_);
    eng().advance(now_);
    take_events(now_);
  }

  void expect(int n, std::string_view argument) {
    auto args = words(argument);
    if (args.size() == 1 && args[0] == "none") {
      if (consumed_ < events_.size()) {
        std::string extra;
        for (std::size_t i = consumed_; i < events_.size(); ++i)
          extra += "\n    " + describe(events_[i]);
        fail(n, "expected no more events, got:" + extra);
      }
      consumed_ = events_.size();
      return;
    }
    std::optional<std::int64_t> at;
    if (args.size() < 5 || args[0] != "at" || !(at = parse_time(args[1])))
      return fail(n, "expect takes `at <time> <event> <device> <type> [key=value]...` or none");
    if (!parse_alert_event(args[2])) return fail(n, "unknown event " + args[2]);
    if (consumed_ >= events_.size())
      return fail(n, "expected " + std::string(argument) + "\n    but no event is left");
    const observed& o = events_[consumed_++];
    std::string diff;
    if (o.at_ms != *at) diff += " at";
    if (to_string(o.e.what) != args[2]) diff += " event";
    if (o.e.snapshot.device_id != args[3]) diff += " device";
    if (o.e.snapshot.type != args[4] || o.e.rule != args[4]) diff += " type";
    for (std::size_t i = 5; i < args.size(); ++i) {
      auto eq = args[i].find('=');
      if (eq == std::string::npos) return fail(n, "expected key=value, not " + args[i]);
      const std::string key = args[i].substr(0, eq), wanted = args[i].substr(eq + 1);
      auto actual = field_of(o.e.snapshot, o.e.what, key);
      if (!actual) return fail(n, "unknown key " + key);
      if (!same_value(key, *actual, wanted)) diff += " " + key + "(" + *actual + ")";
    }
    if (diff.empty()) return;
    std::string rest;
    for (std::size_t i = consumed_; i < events_.size() && i < consumed_ + 5; ++i)
      rest += "\n    then     " + describe(events_[i]);
    fail(n, "event " + std::to_string(consumed_) + " differs in" + diff + "\n    expected " +
                std::string(argument) + "\n    actual   " + describe(o) + rest);
  }

  void check_alert(int n, std::string_view argument) {
    auto args = words(argument);
    std::uint64_t id = 0;
    if (args.empty() || !parse_integer(args[0], id)) return fail(n, "alert takes an id");
    const alert* a = eng().find(id);
    if (args.size() == 2 && args[1] == "missing") {
      if (a != nullptr) fail(n, "alert " + args[0] + " is still there");
      return;
    }
    if (a == nullptr) return fail(n, "no alert " + args[0]);
    for (std::size_t i = 1; i < args.size(); ++i) {
      auto eq = args[i].find('=');
      if (eq == std::string::npos) return fail(n, "expected key=value, not " + args[i]);
      const std::string key = args[i].substr(0, eq), wanted = args[i].substr(eq + 1);
      auto actual = field_of(*a, std::nullopt, key);
      if (!actual) return fail(n, "unknown key " + key);
      if (!same_value(key, *actual, wanted))
        fail(n, "alert " + args[0] + ": " + key + " is " + *actual + ", expected " + wanted);
    }
  }

  void check_counters(int n, std::string_view argument) {
    const engine_counters c = eng().counters();
    const std::map<std::string, std::uint64_t, std::less<>> values = {
        {"points", c.points}, {"evaluated", c.evaluated},
        {"late", c.late},     {"non_finite", c.non_finite},
        {"states", c.states}, {"states_refused", c.states_refused},
        {"timers", c.timers}, {"open", eng().open_count()}};
    for (const auto& word : words(argument)) {
      auto eq = word.find('=');
      std::uint64_t wanted = 0;
      if (eq == std::string::npos || !parse_integer(std::string_view(word).substr(eq + 1), wanted))
        return fail(n, "counters takes name=number");
      auto it = values.find(std::string_view(word).substr(0, eq));
      if (it == values.end()) return fail(n, "unknown counter " + word.substr(0, eq));
      if (it->second != wanted)
        fail(n, "counter " + it->first + " is " + std::to_string(it->second) + ", expected " +
                    std::to_string(wanted));
    }
  }

  void step(const line& l) {
    const auto& d = l.directive;
    const int n = l.number;
    const std::string_view argument = l.argument;
    if (d == "case") {
      finish_case();
      ++cases_;
      title_ = l.argument;
      settings_ = engine_settings{};
      engine_.reset();
      groups_.clear();
      checkpoint_.clear();
      events_.clear();
      consumed_ = 0;
      now_ = 0;
      return;
    }
    if (cases_ == 0) return fail(n, "a directive before the first case");
    if (d != "result") check_result_taken();
    if (d == "setting") {
      if (engine_) return fail(n, "settings come before anything else in a case");
      auto args = words(argument);
      if (args.size() != 2) return fail(n, "setting takes a name and a value");
      bool ok = true;
      if (args[0] == "max_states")
        ok = parse_integer(args[1], settings_.max_states);
      else if (args[0] == "max_history")
        ok = parse_integer(args[1], settings_.max_history);
      else if (args[0] == "max_cleared")
        ok = parse_integer(args[1], settings_.max_cleared);
      else if (args[0] == "device_tag")
        settings_.device_tag = args[1];
      else if (args[0] == "default_database")
        settings_.default_database = args[1];
      else
        ok = false;
      if (!ok) fail(n, "unknown setting or bad value: " + l.argument);
    } else if (d == "rule") {
      if (auto r = parse(n, argument)) eng().put_rule(std::move(*r), now_);
    } else if (d == "group") {
      auto args = words(argument);
      if (args.empty()) return fail(n, "group takes a name and its members");
      groups_[args[0]].assign(args.begin() + 1, args.end());
    } else if (d == "at") {
      auto space = argument.find(' ');
      auto at = parse_time(argument.substr(0, space));
      if (!at || space == npos) return fail(n, "at takes a time and a step");
      if (*at < now_) return fail(n, "time goes backwards (use a line timestamp for late points)");
      now_ = *at;
      auto rest = trim(argument.substr(space));
      auto action_end = rest.find(' ');
      run_step(n, rest.substr(0, action_end),
               action_end == npos ? std::string_view() : trim(rest.substr(action_end)));
    } else if (d == "expect") {
      expect(n, argument);
    } else if (d == "result") {
      auto args = words(argument);
      if (result_line_ == 0) return fail(n, "result with no action before it");
      if (args.empty() || result_name(result_) != args.back())
        fail(n, "the action returned " + std::string(result_name(result_)) + ", expected " +
                    (args.empty() ? std::string("?") : args.back()));
      result_line_ = 0;
    } else if (d == "alert") {
      check_alert(n, argument);
    } else if (d == "counters") {
      check_counters(n, argument);
    } else if (d == "next-deadline") {
      auto next = eng().next_deadline();
      if (argument == "none") {
        if (next) fail(n, "next deadline is " + format_time(*next) + ", expected none");
      } else if (auto wanted = parse_time(argument); !wanted) {
        fail(n, "next-deadline takes a time or none");
      } else if (next != wanted) {
        fail(n, "next deadline is " + (next ? format_time(*next) : std::string("none")) +
                    ", expected " + std::string(argument));
      }
    } else {
      fail(n, "unknown directive " + d);
    }
  }

  std::string path_;
  bool with_keys_ = false;
  int cases_ = 0;
  std::string title_;
  engine_settings settings_;
  std::unique_ptr<engine> engine_;
  std::map<std::string, std::vector<std::string>> groups_;
  std::map<std::pair<std::string, std::string>, std::string> checkpoint_;
  std::vector<observed> events_;
  std::size_t consumed_ = 0;
  std::int64_t now_ = 0;
  action_result result_ = action_result::done;
  int result_line_ = 0;  // the line of an action whose result no result line took yet
};

// ---- one test per case file ------------------------------------------------------------------

class alert_cases : public testing::TestWithParam<std::string> {};

TEST_P(alert_cases, replays) {
  bool ok = true;
  auto lines = read_lines(GetParam(), ok);
  if (!ok) return;  // a broken case file runs nothing
  for (const bool with_keys : {false, true}) {
    SCOPED_TRACE(with_keys ? "points with their series keys and ids" : "points without keys");
    case_runner(GetParam(), with_keys).run(lines);
  }
}

INSTANTIATE_TEST_SUITE_P(cases, alert_cases, testing::ValuesIn(test::case_files()),
                         test::case_name);

}  // namespace
}  // namespace nimbus::alerts
