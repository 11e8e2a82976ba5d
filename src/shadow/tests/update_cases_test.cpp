// Runs the shadow update cases (tests/update_cases/*.txt; the format is in the README.md there):
// update, get and delete requests against one document on an injected clock, and the exact
// documents AWS would publish for them. One ctest per case file; the cases pin the Device Shadow
// semantics so that a change to document.cpp shows which AWS behaviour it moved.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "shadow/document.hpp"

#ifndef NIMBUS_CASES_DIR
#error "NIMBUS_CASES_DIR must name the folder of update cases"
#endif
#include "case_files.hpp"

namespace nimbus::shadow {
namespace {

namespace json = boost::json;

constexpr auto npos = std::string_view::npos;

struct line {
  int number = 0;
  std::string directive;
  std::string argument;  // macros not expanded yet
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The file as directive lines: comments and blank lines dropped, indented lines joined (with a
// newline) to the line they continue.
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
    auto content = trim(raw);
    if (content.empty() || content.front() == '#') continue;
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

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <class Integer>
bool parse_integer(std::string_view text, Integer& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Expands `{{N*text}}` (text repeated N times) and `{{hex c3 a9}}` (those bytes). Returns an
// error message, empty on success.
std::string expand(std::string_view text, std::string& out) {
  out.clear();
  std::size_t pos = 0;
  for (;;) {
    auto open = text.find("{{", pos);
    if (open == npos) {
      out.append(text.substr(pos));
      return {};
    }
    auto close = text.find("}}", open + 2);
    if (close == npos) return "a {{ without its }}";
    out.append(text.substr(pos, open - pos));
    auto body = text.substr(open + 2, close - open - 2);
    if (body.starts_with("hex ")) {
      std::string_view bytes = body.substr(4);
      while (!(bytes = trim(bytes)).empty()) {
        int high = hex_digit(bytes[0]);
        int low = bytes.size() > 1 ? hex_digit(bytes[1]) : -1;
        if (high < 0 || low < 0 || (bytes.size() > 2 && bytes[2] != ' '))
          return "expected hex bytes in {{" + std::string(body) + "}}";
        out.push_back(static_cast<char>(high * 16 + low));
        bytes.remove_prefix(2);
      }
    } else {
      auto star = body.find('*');
      std::size_t count = 0;
      if (star == npos || !parse_integer(body.substr(0, star), count))
        return "expected {{N*text}} or {{hex ..}}, not {{" + std::string(body) + "}}";
      for (std::size_t i = 0; i < count; ++i) out.append(body.substr(star + 1));
    }
    pos = close + 2;
  }
}

// One case file, run line by line. Every failure is reported at its line and the run goes on.
class case_runner {
 public:
  explicit case_runner(std::string path) : path_(std::move(path)) {}

  void run(const std::vector<line>& lines) {
    for (const auto& l : lines) {
      std::string argument;
      if (auto error = expand(l.argument, argument); !error.empty()) {
        fail(l.number, error);
        continue;
      }
      step(l, argument);
    }
    finish_case();
    if (cases_ == 0) ADD_FAILURE() << path_ << " holds no case";
  }

 private:
  enum class request { none, update, get, remove };

  void fail(int number, const std::string& why) { ADD_FAILURE_AT(path_.c_str(), number) << why; }

  void finish_case() {
    if (pending_ != 0) fail(pending_, "the request's outcome is never checked (accepted/rejected)");
    pending_ = 0;
  }

  const rejection* refused() const {
    if (last_ == request::update) return std::get_if<rejection>(&update_);
    if (last_ != request::none) return std::get_if<rejection>(&response_);
    return nullptr;
  }

  const update_result* updated() const {
    return last_ == request::update ? std::get_if<update_result>(&update_) : nullptr;
  }

  // The body of an accepted request: /update/accepted for an update.
  const json::object* accepted_body() const {
    if (const auto* result = updated()) return &result->accepted;
    if (last_ == request::get || last_ == request::remove)
      return std::get_if<json::object>(&response_);
    return nullptr;
  }

  void expect_json(int number, const json::value& actual, std::string_view expected,
                   std::string_view what) {
    json::error_code ec;
    json::value wanted = json::parse(expected, ec);
    if (ec) {
      fail(number, std::string(what) + ": the expected JSON does not parse: " + ec.message());
      return;
    }
    if (actual != wanted)
      fail(number, std::string(what) + " differs\n    expected " + json::serialize(wanted) +
                       "\n    actual   " + json::serialize(actual));
  }

  void step(const line& l, const std::string& argument) {
    const auto& d = l.directive;
    const int n = l.number;
    if (d == "case") {
      finish_case();
      ++cases_;
      in_case_ = true;
      doc_ = document();
      now_ = 0;
      limits_ = limits();
      name_ = "thing";
      last_ = request::none;
      return;
    }
    if (!in_case_) return fail(n, "a directive before the first case");

    if (d == "now") {
      if (!parse_integer(argument, now_)) fail(n, "now takes an integer");
    } else if (d == "limit") {
      auto space = argument.find(' ');
      auto key = std::string_view(argument).substr(0, space);
      auto value =
          space == npos ? std::string_view() : trim(std::string_view(argument).substr(space));
      bool ok = key == "max_state_bytes"    ? parse_integer(value, limits_.max_state_bytes)
                : key == "max_depth"        ? parse_integer(value, limits_.max_depth)
                : key == "max_client_token" ? parse_integer(value, limits_.max_client_token)
                                            : false;
      if (!ok) fail(n, "limit takes max_state_bytes, max_depth or max_client_token and a number");
    } else if (d == "name") {
      name_ = argument;
    } else if (d == "load") {
      if (auto loaded = document::from_json(argument))
        doc_ = std::move(*loaded);
      else
        fail(n, "load: from_json refused it");
    } else if (d == "load-fails") {
      if (document::from_json(argument)) fail(n, "load-fails: from_json accepted it");
    } else if (d == "update" || d == "get" || d == "delete") {
      if (pending_ != 0)
        fail(pending_, "the request's outcome is never checked (accepted/rejected)");
      pending_ = n;
      if (d == "update") {
        last_ = request::update;
        update_ = apply_update(doc_, argument, now_, limits_);
      } else if (d == "get") {
        last_ = request::get;
        response_ = get_response(doc_, name_, argument, now_, limits_);
      } else {
        last_ = request::remove;
        response_ = delete_response(doc_, name_, argument, now_, limits_);
      }
    } else if (d == "accepted") {
      pending_ = 0;
      if (last_ == request::none) return fail(n, "accepted with no request before it");
      if (const auto* r = refused())
        return fail(
            n, "expected accepted, was rejected: " + std::to_string(r->code) + " " + r->message);
      if (!argument.empty()) expect_json(n, *accepted_body(), argument, "accepted");
    } else if (d == "rejected") {
      pending_ = 0;
      if (last_ == request::none) return fail(n, "rejected with no request before it");
      const auto* r = refused();
      if (r == nullptr)
        return fail(n, "expected rejected, was accepted: " + json::serialize(*accepted_body()));
      if (argument.starts_with("{"))
        return expect_json(n, rejected_payload(*r), argument, "rejected");
      auto space = argument.find(' ');
      int code = 0;
      std::string_view message = space == npos ? "" : std::string_view(argument).substr(space + 1);
      if (!parse_integer(std::string_view(argument).substr(0, space), code))
        return fail(n, "rejected takes a code and a message, or the rejected document");
      if (code != r->code || message != r->message)
        fail(n, "rejected differs\n    expected " + argument + "\n    actual   " +
                    std::to_string(r->code) + " " + r->message);
    } else if (d == "delta" || d == "documents") {
      const auto* result = updated();
      if (result == nullptr) return fail(n, d + " needs an accepted update before it");
      if (d == "documents") return expect_json(n, result->documents, argument, "documents");
      if (argument == "none") {
        if (result->delta) fail(n, "expected no delta, got " + json::serialize(*result->delta));
      } else if (!result->delta) {
        fail(n, "expected a delta, none was published");
      } else {
        expect_json(n, *result->delta, argument, "delta");
      }
    } else if (d == "state") {
      expect_json(n, doc_.state(), argument, "state");
    } else if (d == "metadata") {
      expect_json(n, doc_.metadata(), argument, "metadata");
    } else if (d == "version") {
      std::int64_t version = 0;
      if (!parse_integer(argument, version)) return fail(n, "version takes an integer");
      if (doc_.version() != version)
        fail(n, "version is " + std::to_string(doc_.version()) + ", expected " + argument);
    } else if (d == "exists") {
      if (argument != "yes" && argument != "no") return fail(n, "exists takes yes or no");
      if (doc_.exists() != (argument == "yes"))
        fail(n, std::string("exists is ") + (doc_.exists() ? "yes" : "no"));
    } else if (d == "stored") {
      json::error_code ec;
      json::value stored = json::parse(doc_.to_json(), ec);
      if (ec) return fail(n, "to_json wrote something that does not parse: " + doc_.to_json());
      expect_json(n, stored, argument, "stored");
    } else {
      fail(n, "unknown directive " + d);
    }
  }

  std::string path_;
  int cases_ = 0;
  bool in_case_ = false;
  document doc_;
  std::int64_t now_ = 0;
  limits limits_;
  std::string name_ = "thing";
  request last_ = request::none;
  std::variant<update_result, rejection> update_;
  std::variant<json::object, rejection> response_;
  int pending_ = 0;  // the line of a request no accepted/rejected line has checked yet
};

// ---- one test per case file ------------------------------------------------------------------

class shadow_update_cases : public testing::TestWithParam<std::string> {};

TEST_P(shadow_update_cases, replays) {
  bool ok = true;
  auto lines = read_lines(GetParam(), ok);
  if (!ok) return;  // a broken case file runs nothing
  case_runner(GetParam()).run(lines);
}

INSTANTIATE_TEST_SUITE_P(cases, shadow_update_cases, testing::ValuesIn(test::case_files()),
                         test::case_name);

}  // namespace
}  // namespace nimbus::shadow
