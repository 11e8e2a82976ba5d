#pragma once
// Regular expressions of both query languages: InfluxQL's /re/ and Flux's, which InfluxDB runs
// as Go RE2. Ours are std::regex ECMAScript, with RE2's leading flag group `(?i)` (`(?is)`...)
// read as icase, and bounded (length, states, nesting, repeat counts) so that std::regex, whose
// compiler and matcher recurse per term and per repetition copy, survives any pattern. Standard
// library only (both parsers' fuzzers build it); a compiled regex is immutable, any thread.
#include <memory>
#include <regex>
#include <string>
#include <string_view>

namespace nimbus::tsdb {

struct regex_value {
  std::string pattern;  // as written
  std::shared_ptr<const std::regex> compiled;
  bool search(std::string_view text) const;  // unanchored, as Go's MatchString
};

// Empty on success (and `out` set), else RE2's kind of message: "missing closing ): `a(`".
std::string compile_regex(std::string_view pattern, regex_value& out);

}  // namespace nimbus::tsdb
