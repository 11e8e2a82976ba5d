// Replays the IoT SQL cases (tests/cases/*.txt): a statement, a message, and what AWS IoT's rules
// engine makes of it, one ctest per file. The format:
//
//   # a comment; blank lines are ignored
//   == case name (unique in the file)
//   sql: SELECT temperature FROM 'sensor/+/data' WHERE temperature > 30
//   version: 2016-03-23             (optional; 2016-03-23 by default)
//   topic: sensor/pi-001/data       (optional; test/topic)
//   clientid: pi-001                (optional; test-client)
//   principal: abcd                 (optional; test-principal)
//   accountid: 123456789012         (optional; that is the default)
//   traceid: ...                    (optional; a fixed UUID by default, empty for none)
//   timestamp: 1700000000123        (optional, ms; 1700000000000)
//   payload: {"temperature": 35}    (one line; payload-base64: for raw bytes)
//   shadow: thing-1 {"state":{}}    (repeatable: what get_thing_shadow returns; thing~name for a
//                                    named shadow)
//   expect: {"temperature":35}      (JSON compared as values: key order ignored, Int and Decimal
//                                    told apart, Decimals within 1e-9 relative)
//
// Instead of `expect:` one of `expect: nothing` (the rule does not fire), `expect-raw-base64:`
// (the output's bytes), `expect-parse-error: <text>`, `expect-eval-error: <text>` (the message
// contains the text, ignoring case), or any number of `expect-type: <key> <Int|Decimal|String|
// Boolean|Array|Object|Null|Undefined>` and `expect-match: <key> <ECMAScript regex>` (searched
// in a String, or in the JSON of anything else). Such a key may be a dotted path, or `.` for the
// whole output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/error.hpp>
#include <boost/json/kind.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "rules/sql/encoding.hpp"
#include "rules/sql/sql.hpp"

#ifndef NIMBUS_CASES_DIR
#error "NIMBUS_CASES_DIR must name the folder of IoT SQL cases"
#endif
#include "case_files.hpp"

namespace nimbus::rules::sql {
namespace {

namespace json = boost::json;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains_ignoring_case(std::string_view text, std::string_view part) {
  return lower(text).find(lower(part)) != std::string::npos;
}

enum class outcome { unset, json_output, nothing, raw_output, parse_failure, eval_failure, checks };

struct key_check {
  int line = 0;
  std::string key;
  std::string expected;  // a type name, or a regex
};

struct sql_case {
  std::string name;
  int line = 0;
  std::string sql;
  sql_version version = sql_version::v2016_03_23;
  std::string topic = "test/topic";
  std::string client_id = "test-client";
  std::string principal = "test-principal";
  std::string account_id = "123456789012";
  std::string trace_id = "8b1a9953-c461-4296-a827-abf8c47804d7";
  std::int64_t timestamp_ms = 1700000000000;
  std::string payload;
  std::map<std::string, std::string> shadows;  // "thing" or "thing~shadow" -> document
  outcome expected = outcome::unset;
  int expect_line = 0;
  std::string expected_text;  // JSON, raw bytes, or an error's text
  std::vector<key_check> types;
  std::vector<key_check> matches;
};

// Numbers compare by kind (an Int is not a Decimal) and Decimals within a relative 1e-9, so a
// case need not spell a double's last digit.
bool same_json(const json::value& a, const json::value& b) {
  if (a.is_double() || b.is_double()) {
    if (!a.is_double() || !b.is_double()) return false;
    const double x = a.get_double();
    const double y = b.get_double();
    return x == y || std::fabs(x - y) <= 1e-9 * std::max(std::fabs(x), std::fabs(y));
  }
  if (a.is_array() && b.is_array()) {
    const json::array& x = a.get_array();
    const json::array& y = b.get_array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!same_json(x[i], y[i])) return false;
    return true;
  }
  if (a.is_object() && b.is_object()) {
    const json::object& x = a.get_object();
    const json::object& y = b.get_object();
    if (x.size() != y.size()) return false;
    for (const auto& member : x) {
      const json::value* other = y.if_contains(member.key());
      if (other == nullptr || !same_json(member.value(), *other)) return false;
    }
    return true;
  }
  return a == b;  // int64 and uint64 compare by value here
}

std::string type_of(const json::value* v) {
  if (v == nullptr) return "Undefined";
  switch (v->kind()) {
    case json::kind::null:
      return "Null";
    case json::kind::bool_:
      return "Boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "Int";
    case json::kind::double_:
      return "Decimal";
    case json::kind::string:
      return "String";
    case json::kind::array:
      return "Array";
    case json::kind::object:
      return "Object";
  }
  return "Undefined";
}

// `key` in the output object; a dotted path when no key has that name; `.` for the whole.
const json::value* find_key(const json::value& output, const std::string& key) {
  if (key == ".") return &output;
  const json::object* object = output.if_object();
  if (object == nullptr) return nullptr;
  if (const json::value* direct = object->if_contains(key)) return direct;
  const json::value* at = &output;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
    const json::object* level = at->if_object();
    if (level == nullptr) return nullptr;
    at = level->if_contains(part);
    if (at == nullptr || dot == std::string::npos) return at;
    start = dot + 1;
  }
}

class case_file {
 public:
  explicit case_file(std::string path) : path_(std::move(path)) {}

  void run() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) {
      ADD_FAILURE() << "cannot open " << path_;
      return;
    }
    std::string raw;
    int number = 0;
    while (std::getline(in, raw)) {
      ++number;
      if (!raw.empty() && raw.back() == '\r') raw.pop_back();
      const std::string_view content = trim(raw);
      if (content.empty() || content.front() == '#') continue;
      read_line(number, content);
    }
    finish_case();
    if (cases_ == 0) ADD_FAILURE() << path_ << " holds no case";
  }

 private:
  void fail(int line, const std::string& why) {
    ADD_FAILURE_AT(path_.c_str(), line) << "case '" << case_.name << "': " << why;
  }

  void read_line(int number, std::string_view content) {
    if (content.starts_with("==")) {
      finish_case();
      case_ = sql_case();
      case_.name = std::string(trim(content.substr(2)));
      case_.line = number;
      in_case_ = true;
      ++cases_;
      if (case_.name.empty()) fail(number, "a case needs a name");
      if (!names_.insert(case_.name).second) fail(number, "a second case of that name");
      return;
    }
    if (!in_case_) {
      ADD_FAILURE_AT(path_.c_str(), number) << "a line before the first '== case name'";
      return;
    }
    const std::size_t colon = content.find(':');
    if (colon == std::string_view::npos) return fail(number, "expected 'key: value'");
    const std::string key(trim(content.substr(0, colon)));
    const std::string argument(trim(content.substr(colon + 1)));
    set(number, key, argument);
  }

  void set_outcome(int number, outcome o, std::string text) {
    if (case_.expected != outcome::unset && case_.expected != outcome::checks)
      return fail(number, "a second expectation (one expect line per case)");
    case_.expected = o;
    case_.expect_line = number;
    case_.expected_text = std::move(text);
  }

  void set(int number, const std::string& key, const std::string& argument) {
    if (key == "sql") {
      case_.sql = argument;
    } else if (key == "version") {
      const auto version = parse_version(argument);
      if (!version) return fail(number, "version takes 2015-10-08 or 2016-03-23");
      case_.version = *version;
    } else if (key == "topic") {
      case_.topic = argument;
    } else if (key == "clientid") {
      case_.client_id = argument;
    } else if (key == "principal") {
      case_.principal = argument;
    } else if (key == "accountid") {
      case_.account_id = argument;
    } else if (key == "traceid") {
      case_.trace_id = argument;
    } else if (key == "timestamp") {
      const char* last = argument.data() + argument.size();
      const auto parsed = std::from_chars(argument.data(), last, case_.timestamp_ms);
      if (parsed.ec != std::errc() || parsed.ptr != last)
        fail(number, "timestamp takes an integer");
    } else if (key == "payload") {
      case_.payload = argument;
    } else if (key == "payload-base64") {
      const auto bytes = base64_decode(argument);
      if (!bytes) return fail(number, "payload-base64 is not base64");
      case_.payload = *bytes;
    } else if (key == "shadow") {
      const std::size_t space = argument.find(' ');
      if (space == std::string::npos) return fail(number, "shadow takes a thing name and JSON");
      case_.shadows[argument.substr(0, space)] = std::string(trim(argument.substr(space + 1)));
    } else if (key == "expect") {
      if (argument == "nothing")
        set_outcome(number, outcome::nothing, {});
      else
        set_outcome(number, outcome::json_output, argument);
    } else if (key == "expect-raw-base64") {
      const auto bytes = base64_decode(argument);
      if (!bytes) return fail(number, "expect-raw-base64 is not base64");
      set_outcome(number, outcome::raw_output, *bytes);
    } else if (key == "expect-parse-error") {
      set_outcome(number, outcome::parse_failure, argument);
    } else if (key == "expect-eval-error") {
      set_outcome(number, outcome::eval_failure, argument);
    } else if (key == "expect-type" || key == "expect-match") {
      if (case_.expected != outcome::unset && case_.expected != outcome::checks)
        return fail(number, "expect-type and expect-match go without another expect line");
      case_.expected = outcome::checks;
      case_.expect_line = number;
      const std::size_t space = argument.find(' ');
      if (space == std::string::npos) return fail(number, key + " takes a key and a value");
      key_check check{number, argument.substr(0, space), std::string(trim(argument.substr(space)))};
      (key == "expect-type" ? case_.types : case_.matches).push_back(std::move(check));
    } else {
      fail(number, "unknown key '" + key + "'");
    }
  }

  void finish_case() {
    if (!in_case_) return;
    in_case_ = false;
    if (case_.sql.empty()) return fail(case_.line, "no sql line");
    if (case_.expected == outcome::unset) return fail(case_.line, "no expect line");
    run_case();
  }

  void run_case() {
    const sql_case& c = case_;
    auto parsed = parse(c.sql, c.version);
    if (const auto* error = std::get_if<parse_error>(&parsed)) {
      if (c.expected != outcome::parse_failure)
        return fail(c.expect_line,
                    "parse error at " + std::to_string(error->position) + ": " + error->message);
      if (!contains_ignoring_case(error->message, c.expected_text))
        fail(c.expect_line, "parse error '" + error->message + "' lacks '" + c.expected_text + "'");
      return;
    }
    if (c.expected == outcome::parse_failure)
      return fail(c.expect_line, "parsed, expected a parse error with '" + c.expected_text + "'");

    message_context context;
    context.topic = c.topic;
    context.client_id = c.client_id;
    context.principal = c.principal;
    context.account_id = c.account_id;
    context.trace_id = c.trace_id;
    context.timestamp_ms = c.timestamp_ms;
    context.thing_shadow = [&c](std::string_view thing,
                                std::string_view shadow) -> std::optional<std::string> {
      std::string key(thing);
      if (!shadow.empty()) key += "~" + std::string(shadow);
      const auto found = c.shadows.find(key);
      if (found == c.shadows.end()) return std::nullopt;
      return found->second;
    };

    const auto result = evaluate(std::get<statement>(parsed), c.payload, context);
    if (const auto* error = std::get_if<eval_error>(&result)) {
      if (c.expected != outcome::eval_failure)
        return fail(c.expect_line, "evaluation error: " + error->message);
      if (!contains_ignoring_case(error->message, c.expected_text))
        fail(c.expect_line,
             "evaluation error '" + error->message + "' lacks '" + c.expected_text + "'");
      return;
    }
    const auto& output = std::get<std::optional<std::string>>(result);
    if (c.expected == outcome::eval_failure)
      return fail(c.expect_line, "evaluated, expected an error with '" + c.expected_text + "'");
    if (c.expected == outcome::nothing) {
      if (output) fail(c.expect_line, "the rule fired: " + *output);
      return;
    }
    if (!output) return fail(c.expect_line, "the rule did not fire");
    if (c.expected == outcome::raw_output) {
      if (*output != c.expected_text)
        fail(c.expect_line, "raw output differs\n    expected " + base64_encode(c.expected_text) +
                                "\n    actual   " + base64_encode(*output));
      return;
    }
    json::error_code ec;
    const json::value actual = json::parse(*output, ec);
    if (ec) return fail(c.expect_line, "the output is not JSON: " + *output);
    if (c.expected == outcome::json_output) {
      const json::value wanted = json::parse(c.expected_text, ec);
      if (ec) return fail(c.expect_line, "the expected JSON does not parse: " + ec.message());
      if (!same_json(actual, wanted))
        fail(c.expect_line, "output differs\n    expected " + json::serialize(wanted) +
                                "\n    actual   " + *output);
      return;
    }
    for (const key_check& check : c.types) {
      const std::string type = type_of(find_key(actual, check.key));
      if (type != check.expected)
        fail(check.line,
             check.key + " is " + type + ", expected " + check.expected + "; output " + *output);
    }
    for (const key_check& check : c.matches) {
      const json::value* v = find_key(actual, check.key);
      if (v == nullptr) {
        fail(check.line, check.key + " is missing; output " + *output);
        continue;
      }
      const std::string text = v->is_string()
                                   ? std::string(v->get_string().data(), v->get_string().size())
                                   : json::serialize(*v);
      try {
        if (!std::regex_search(text, std::regex(check.expected)))
          fail(check.line, check.key + " = " + text + " does not match " + check.expected);
      } catch (const std::regex_error& e) {
        fail(check.line, "bad regex " + check.expected + ": " + e.what());
      }
    }
  }

  std::string path_;
  sql_case case_;
  bool in_case_ = false;
  int cases_ = 0;
  std::set<std::string> names_;
};

class rules_sql_cases : public testing::TestWithParam<std::string> {};

TEST_P(rules_sql_cases, replays) {
  case_file(GetParam()).run();
}

INSTANTIATE_TEST_SUITE_P(cases, rules_sql_cases, testing::ValuesIn(test::case_files()),
                         test::case_name);

}  // namespace
}  // namespace nimbus::rules::sql
