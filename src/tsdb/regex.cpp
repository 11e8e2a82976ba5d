#include "tsdb/regex.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace nimbus::tsdb {
namespace {

constexpr std::size_t max_regex_bytes = 8192;
constexpr std::size_t max_regex_states = 20000;
constexpr int max_regex_nesting = 64;
constexpr long max_regex_repeat = 1000;  // RE2's own limit

// A rough count of the states std::regex builds for `pattern`: counted repetition copies its
// atom. Empty when the pattern is within bounds, else why not.
std::string check_regex_size(std::string_view pattern) {
  std::vector<std::size_t> groups{0};  // the size so far of each open group
  std::vector<std::size_t> last_atoms{0};
  // Where the repetition operator just read began (npos after anything else). Go refuses a
  // stacked one (a**, a{2}*), which std::regex would take, and match in exponential time.
  std::size_t last_repeat = std::string_view::npos;
  const auto repeat_ends = [&](std::size_t start, std::size_t& i) -> std::string {
    if (i + 1 < pattern.size() && pattern[i + 1] == '?') ++i;  // non-greedy
    if (last_repeat != std::string_view::npos)
      return "invalid nested repetition operator: `" +
             std::string(pattern.substr(last_repeat, i + 1 - last_repeat)) + "`";
    last_repeat = start;
    return {};
  };
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    std::size_t atom = 1;
    if (c != '*' && c != '+' && c != '?' && c != '{') last_repeat = std::string_view::npos;
    if (c == '\\') {
      // RE2 has no backreferences, which std::regex would read (and count past a long's range).
      if (i + 1 < pattern.size() && pattern[i + 1] >= '1' && pattern[i + 1] <= '9')
        return "invalid escape sequence: `" + std::string(pattern.substr(i, 2)) + "`";
      ++i;
    } else if (c == '[') {
      ++i;
      if (i < pattern.size() && pattern[i] == '^') ++i;
      if (i < pattern.size() && pattern[i] == ']') ++i;
      while (i < pattern.size() && pattern[i] != ']') {
        if (pattern[i] == '\\') ++i;
        ++i;
      }
    } else if (c == '(') {
      if (groups.size() > static_cast<std::size_t>(max_regex_nesting))
        return "expression nests too deeply";
      groups.push_back(0);
      last_atoms.push_back(0);
      continue;
    } else if (c == ')') {
      if (groups.size() > 1) {
        atom = groups.back() + 2;
        groups.pop_back();
        last_atoms.pop_back();
      }
    } else if (c == '{') {
      std::size_t j = i + 1;
      long low = 0;
      long high = -1;
      bool has_digits = false;
      while (j < pattern.size() && std::isdigit(static_cast<unsigned char>(pattern[j]))) {
        low = std::min(low * 10 + (pattern[j] - '0'), max_regex_repeat + 1);
        has_digits = true;
        ++j;
      }
      if (j < pattern.size() && pattern[j] == ',') {
        ++j;
        if (j < pattern.size() && std::isdigit(static_cast<unsigned char>(pattern[j]))) high = 0;
        while (j < pattern.size() && std::isdigit(static_cast<unsigned char>(pattern[j]))) {
          high = std::min(high * 10 + (pattern[j] - '0'), max_regex_repeat + 1);
          ++j;
        }
      } else {
        high = low;
      }
      if (has_digits && j < pattern.size() && pattern[j] == '}') {
        if (low > max_regex_repeat || high > max_regex_repeat)
          return "invalid repeat count: `" + std::string(pattern.substr(i, j + 1 - i)) + "`";
        const long copies = std::max<long>({low, high, 1});
        const std::size_t previous = last_atoms.back();
        groups.back() += previous * static_cast<std::size_t>(copies - 1) + 1;
        last_atoms.back() = previous * static_cast<std::size_t>(copies);
        if (groups.front() + groups.back() > max_regex_states) return "expression too large";
        const std::size_t start = i;
        i = j;
        if (auto nested = repeat_ends(start, i); !nested.empty()) return nested;
        continue;
      }
      last_repeat = std::string_view::npos;  // a literal brace
    } else if (c == '*' || c == '+' || c == '?') {
      groups.back() += 1;
      if (auto nested = repeat_ends(i, i); !nested.empty()) return nested;
      continue;
    }
    groups.back() += atom;
    last_atoms.back() = atom;
    std::size_t total = 0;
    for (std::size_t size : groups) total += size;
    if (total > max_regex_states) return "expression too large";
  }
  return {};
}

// RE2's words for what std::regex refused, where one maps onto the other.
std::string regex_error_reason(std::regex_constants::error_type code, std::string_view pattern) {
  namespace rc = std::regex_constants;
  if (code == rc::error_paren) {
    long depth = 0;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
      if (pattern[i] == '\\') {
        ++i;
      } else if (pattern[i] == '(') {
        ++depth;
      } else if (pattern[i] == ')') {
        --depth;
      }
    }
    return depth > 0 ? "missing closing )" : "unexpected )";
  }
  if (code == rc::error_brack) return "missing closing ]";
  if (code == rc::error_badrepeat) return "missing argument to repetition operator";
  if (code == rc::error_brace || code == rc::error_badbrace) return "invalid repeat count";
  if (code == rc::error_escape) return "invalid escape sequence";
  if (code == rc::error_range) return "invalid character class range";
  if (code == rc::error_ctype || code == rc::error_collate) return "invalid character class";
  return "invalid or unsupported regular expression";
}

}  // namespace

std::string compile_regex(std::string_view pattern, regex_value& out) {
  out.pattern = std::string(pattern);
  const auto quoted = [&](const char* reason) {
    return std::string(reason) + ": `" + std::string(pattern) + "`";
  };
  if (pattern.size() > max_regex_bytes) return quoted("expression too long");
  auto flags = std::regex::ECMAScript;
  std::string_view body = pattern;
  // RE2's leading flag group, which Grafana writes for case-insensitive search: (?i).
  if (body.size() >= 4 && body.substr(0, 2) == "(?") {
    const std::size_t close = body.find(')');
    if (close != std::string_view::npos && close > 2) {
      const std::string_view group = body.substr(2, close - 2);
      if (std::all_of(group.begin(), group.end(),
                      [](char c) { return c == 'i' || c == 'm' || c == 's' || c == 'U'; })) {
        if (group.find('i') != std::string_view::npos) flags |= std::regex::icase;
        body.remove_prefix(close + 1);
      }
    }
  }
  if (std::string reason = check_regex_size(body); !reason.empty()) {
    if (reason.find('`') != std::string::npos) return reason;
    return quoted(reason.c_str());
  }
  // libstdc++'s breadth-first matcher (its __polynomial flag): time linear in the text for a
  // pattern without backreferences, where the default backtracking one is exponential on
  // (e*)*x. A search is one whole match of `[\s\S]*(?:re)[\s\S]*`, a single pass where
  // regex_search would start one at every byte. The pattern alone is compiled first so that its
  // errors are its own.
  flags |= std::regex_constants::__polynomial;
  try {
    std::regex alone(std::string(body), flags);
    std::string wrapped = "[\\s\\S]*(?:";
    wrapped += body;
    wrapped += ")[\\s\\S]*";
    out.compiled = std::make_shared<const std::regex>(wrapped, flags);
  } catch (const std::regex_error& error) {
    return quoted(regex_error_reason(error.code(), body).c_str());
  }
  return {};
}

bool regex_value::search(std::string_view text) const {
  if (!compiled) return false;
  return std::regex_match(text.begin(), text.end(), *compiled);
}

}  // namespace nimbus::tsdb
