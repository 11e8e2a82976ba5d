// Replays the subscription filter cases (tests/filter_cases/*.txt; the format is in the
// README.md there): a filter, then attribute sets with whether a message carrying them is
// delivered, or where parse() refuses the filter. One ctest per case file. Besides what each
// case states, every filter that parses is checked against its own negation, NOT (filter), so
// that each match case also pins the opposite answer.
#include <gtest/gtest.h>

#include <charconv>
#include <cstddef>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "pubsub/filter.hpp"

#ifndef NIMBUS_CASES_DIR
#error "NIMBUS_CASES_DIR must name the folder of filter cases"
#endif
#include "case_files.hpp"

namespace nimbus::pubsub {
namespace {

namespace json = boost::json;

using attribute_map = std::map<std::string, std::string, std::less<>>;
using parse_result = std::variant<filter, filter_error>;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_blank(std::string_view s) {
  for (const char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') return false;
  return true;
}

std::optional<json::value> parse_json(std::string_view text, std::string& why) {
  json::error_code ec;
  json::value value = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) {
    why = "not JSON: " + ec.message();
    return std::nullopt;
  }
  return value;
}

std::string text_of(const json::string& s) {
  return std::string(s.data(), s.size());
}

// {"key": "value", ...}: attribute values are strings, as in a PubsubMessage.
std::optional<attribute_map> parse_attributes(std::string_view text, std::string& why) {
  const auto value = parse_json(text, why);
  if (!value) return std::nullopt;
  const json::object* object = value->if_object();
  if (object == nullptr) {
    why = "attributes take a JSON object";
    return std::nullopt;
  }
  attribute_map attributes;
  for (const auto& member : *object) {
    const json::string* text_value = member.value().if_string();
    if (text_value == nullptr) {
      why = "attribute values are JSON strings";
      return std::nullopt;
    }
    attributes.emplace(std::string(member.key().data(), member.key().size()), text_of(*text_value));
  }
  return attributes;
}

std::string show(const parse_result& parsed) {
  if (const auto* error = std::get_if<filter_error>(&parsed))
    return "error at " + std::to_string(error->position) + ": " + error->message;
  return "parsed";
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
      read_line(number, raw);
    }
    finish_block();
    if (checks_ == 0) ADD_FAILURE() << path_ << " holds no case";
  }

 private:
  void fail(int line, const std::string& why) {
    ADD_FAILURE_AT(path_.c_str(), line) << "filter '" << text_ << "': " << why;
  }

  void read_line(int number, std::string_view line) {
    if (trim(line).empty()) return finish_block();
    if (trim(line).front() == '#') return;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(number, "expected 'key: value'");
    const std::string_view key = trim(line.substr(0, colon));
    std::string_view argument = line.substr(colon + 1);
    if (key == "filter" || key == "filter-json") {
      if (in_block_)
        return fail(number, "a second filter in one block: end a block with a blank line");
      if (!argument.empty() && argument.front() == ' ') argument.remove_prefix(1);
      start_block(number, key == "filter" ? std::optional<std::string>(std::string(argument))
                                          : decode_json_filter(number, trim(argument)));
      return;
    }
    if (!in_block_) return fail(number, "a block starts with a filter line");
    if (!block_is_valid_) return;  // the filter line was already reported
    if (key == "attributes") return read_attributes(number, trim(argument));
    if (key == "expect") return read_expect(number, trim(argument));
    fail(number, "unknown key '" + std::string(key) + "'");
  }

  std::optional<std::string> decode_json_filter(int number, std::string_view argument) {
    std::string why;
    const auto value = parse_json(argument, why);
    if (!value || !value->is_string()) {
      fail(number, "filter-json takes a JSON string" + (why.empty() ? "" : "; " + why));
      return std::nullopt;
    }
    return text_of(value->get_string());
  }

  void start_block(int number, std::optional<std::string> text) {
    in_block_ = true;
    block_line_ = number;
    block_is_valid_ = text.has_value();
    block_checks_ = 0;
    block_expects_error_ = false;
    pending_.reset();
    parsed_.reset();
    negated_.reset();
    text_ = text.value_or("");
    if (!block_is_valid_) return;
    parsed_.emplace(filter::parse(text_));
    check_invariants(number);
  }

  // What must hold for any filter, whatever the case expects.
  void check_invariants(int number) {
    if (const auto* error = std::get_if<filter_error>(&*parsed_)) {
      if (error->message.empty()) fail(number, "an error without a message");
      if (error->position > text_.size())
        fail(number, "error position " + std::to_string(error->position) + " past the end");
      return;
    }
    const filter& f = std::get<filter>(*parsed_);
    if (f.text() != text_) fail(number, "text() differs: '" + f.text() + "'");
    if (is_blank(text_)) return;
    auto negated = filter::parse("NOT (" + text_ + ")");
    if (auto* parsed = std::get_if<filter>(&negated))
      negated_.emplace(std::move(*parsed));  // may not parse when text_ is near a limit
  }

  void read_attributes(int number, std::string_view argument) {
    if (pending_) return fail(number, "two attributes lines in a row: each needs its expect line");
    if (block_expects_error_) return fail(number, "an error block has no attributes");
    std::string why;
    pending_ = parse_attributes(argument, why);
    pending_line_ = number;
    if (!pending_) fail(number, why);
  }

  void read_expect(int number, std::string_view argument) {
    ++checks_;
    ++block_checks_;
    if (argument == "match" || argument == "no match")
      return expect_match(number, argument == "match");
    if (argument.starts_with("error at ")) return expect_error(number, argument.substr(9));
    fail(number, "expect takes 'match', 'no match' or 'error at N[: text]'");
  }

  void expect_match(int number, bool wanted) {
    if (!pending_) return fail(number, "match and no match follow an attributes line");
    const attribute_map attributes = std::move(*pending_);
    pending_.reset();
    const auto* parsed = std::get_if<filter>(&*parsed_);
    if (parsed == nullptr) return fail(number, "does not parse: " + show(*parsed_));
    const filter copy = *parsed;  // a filter is a value: a copy answers the same
    const bool actual = parsed->matches(attributes);
    if (actual != wanted)
      return fail(number, std::string(actual ? "matches" : "does not match") +
                              " the attributes of line " + std::to_string(pending_line_));
    if (copy.matches(attributes) != actual) fail(number, "a copy of the filter answers otherwise");
    if (negated_ && negated_->matches(attributes) == actual)
      fail(number, "NOT (filter) gives the same answer as the filter");
  }

  // "N" or "N: text": the error's byte offset, and a part of its message.
  void expect_error(int number, std::string_view argument) {
    if (block_checks_ != 1 || pending_)
      return fail(number, "an error block holds one expect line only");
    block_expects_error_ = true;
    const std::size_t colon = argument.find(':');
    const std::string_view digits = trim(argument.substr(0, colon));
    const std::string_view part =
        colon == std::string_view::npos ? std::string_view() : trim(argument.substr(colon + 1));
    std::size_t position = 0;
    const char* last = digits.data() + digits.size();
    const auto result = std::from_chars(digits.data(), last, position);
    if (digits.empty() || result.ec != std::errc() || result.ptr != last)
      return fail(number, "error at takes a byte offset");
    const auto* error = std::get_if<filter_error>(&*parsed_);
    if (error == nullptr)
      return fail(number, "parsed, expected an error at " + std::string(digits));
    if (error->position != position)
      return fail(number, "error at " + std::to_string(error->position) + " (" + error->message +
                              "), expected at " + std::to_string(position));
    if (error->message.find(part) == std::string::npos)
      fail(number, "error '" + error->message + "' lacks '" + std::string(part) + "'");
  }

  void finish_block() {
    if (!in_block_) return;
    in_block_ = false;
    if (!block_is_valid_) return;
    if (pending_) fail(pending_line_, "attributes without an expect line");
    if (block_checks_ == 0) fail(block_line_, "a filter without an expect line");
    pending_.reset();
    parsed_.reset();
    negated_.reset();
  }

  std::string path_;
  int checks_ = 0;
  bool in_block_ = false;
  bool block_is_valid_ = false;
  bool block_expects_error_ = false;
  int block_line_ = 0;
  int block_checks_ = 0;
  std::string text_;
  std::optional<parse_result> parsed_;
  std::optional<filter> negated_;
  std::optional<attribute_map> pending_;
  int pending_line_ = 0;
};

class pubsub_filter_cases : public testing::TestWithParam<std::string> {};

TEST_P(pubsub_filter_cases, replays) {
  case_file(GetParam()).run();
}

INSTANTIATE_TEST_SUITE_P(cases, pubsub_filter_cases, testing::ValuesIn(test::case_files()),
                         test::case_name);

}  // namespace
}  // namespace nimbus::pubsub
