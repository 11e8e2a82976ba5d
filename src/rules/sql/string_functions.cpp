// The string and regex functions, and concat(). Arguments that are not Strings go through the
// standard conversion (numbers, Booleans, and arrays and objects as their JSON); Null and Undefined
// have none, so a call given one is Undefined. Indexes and lengths count code points.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "rules/sql/functions.hpp"

namespace nimbus::rules::sql {
namespace {

namespace json = boost::json;

constexpr auto v1 = sql_version::v2015_10_08;
constexpr auto v2 = sql_version::v2016_03_23;

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// One argument's string form, with the scratch space it may need.
struct text_arg {
  std::string scratch;
  std::string_view text;
};

bool read_text(const value& v, const eval_state& state, text_arg& out) {
  return text_argument(v, state, out.scratch, out.text);
}

// ---- case and whitespace ----------------------------------------------------------------------

// ASCII only: the letters of other scripts keep their case.
value changed_case(eval_state& state, const call_args& call, bool to_upper) {
  text_arg arg;
  if (!read_text(call.values[0], state, arg)) return {};
  std::string out(arg.text);
  for (char& c : out) {
    if (to_upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!to_upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return string_result(out, state);
}

value fn_lower(eval_state& s, const call_args& c) {
  return changed_case(s, c, false);
}
value fn_upper(eval_state& s, const call_args& c) {
  return changed_case(s, c, true);
}

value trimmed(eval_state& state, const call_args& call, bool left, bool right) {
  text_arg arg;
  if (!read_text(call.values[0], state, arg)) return {};
  std::size_t begin = 0;
  std::size_t end = arg.text.size();
  if (left) {
    while (begin < end && is_blank(arg.text[begin])) ++begin;
  }
  if (right) {
    while (end > begin && is_blank(arg.text[end - 1])) --end;
  }
  return string_result(arg.text.substr(begin, end - begin), state);
}

value fn_trim(eval_state& s, const call_args& c) {
  return trimmed(s, c, true, true);
}
value fn_ltrim(eval_state& s, const call_args& c) {
  return trimmed(s, c, true, false);
}
value fn_rtrim(eval_state& s, const call_args& c) {
  return trimmed(s, c, false, true);
}

// lpad/rpad: the count is an Int (Decimals and numeric Strings truncated), clamped to 0..1000.
value padded(eval_state& state, const call_args& call, bool on_left) {
  text_arg arg;
  if (!read_text(call.values[0], state, arg)) return {};
  const sql_type count_type = call.values[1].type();
  if (count_type != sql_type::integer && count_type != sql_type::decimal &&
      count_type != sql_type::string)
    return {};
  const auto count = to_int(call.values[1]);
  if (!count) return {};
  const std::size_t spaces = static_cast<std::size_t>(std::clamp<std::int64_t>(*count, 0, 1000));
  std::string out;
  out.reserve(arg.text.size() + spaces);
  if (on_left) out.append(spaces, ' ');
  out.append(arg.text);
  if (!on_left) out.append(spaces, ' ');
  return string_result(out, state);
}

value fn_lpad(eval_state& s, const call_args& c) {
  return padded(s, c, true);
}
value fn_rpad(eval_state& s, const call_args& c) {
  return padded(s, c, false);
}

// ---- measuring and cutting ---------------------------------------------------------------------

value fn_length(eval_state& state, const call_args& call) {
  text_arg arg;
  if (!read_text(call.values[0], state, arg)) return {};
  return make_int(static_cast<std::int64_t>(code_point_count(arg.text)));
}

value fn_numbytes(eval_state& state, const call_args& call) {
  text_arg arg;
  if (!read_text(call.values[0], state, arg)) return {};
  return make_int(static_cast<std::int64_t>(arg.text.size()));
}

// substring(s, from[, to]): indexes clamped into the string; from >= to is "".
value fn_substring(eval_state& state, const call_args& call) {
  text_arg arg;
  if (!read_text(call.values[0], state, arg)) return {};
  const auto from = to_int(call.values[1]);
  if (!from) return {};
  const auto length = static_cast<std::int64_t>(code_point_count(arg.text));
  const std::int64_t first = std::clamp<std::int64_t>(*from, 0, length);
  std::int64_t last = length;
  if (call.values.size() == 3) {
    const auto to = to_int(call.values[2]);
    if (!to) return {};
    last = std::clamp<std::int64_t>(*to, 0, length);
  }
  if (first >= last) return string_result({}, state);
  const std::size_t begin = code_point_offset(arg.text, static_cast<std::size_t>(first));
  const std::size_t end = code_point_offset(arg.text, static_cast<std::size_t>(last));
  return string_result(arg.text.substr(begin, end - begin), state);
}

value fn_indexof(eval_state& state, const call_args& call) {
  text_arg haystack;
  text_arg needle;
  if (!read_text(call.values[0], state, haystack) || !read_text(call.values[1], state, needle))
    return {};
  const std::size_t found = haystack.text.find(needle.text);
  if (found == std::string_view::npos) return make_int(-1);
  return make_int(static_cast<std::int64_t>(code_point_count(haystack.text.substr(0, found))));
}

value affix_test(eval_state& state, const call_args& call, bool at_start) {
  text_arg whole;
  text_arg part;
  if (!read_text(call.values[0], state, whole) || !read_text(call.values[1], state, part))
    return {};
  return make_bool(at_start ? whole.text.starts_with(part.text) : whole.text.ends_with(part.text));
}

value fn_startswith(eval_state& s, const call_args& c) {
  return affix_test(s, c, true);
}
value fn_endswith(eval_state& s, const call_args& c) {
  return affix_test(s, c, false);
}

// replace(s, from, to): every occurrence. An empty `from` matches between code points, as
// Java's String.replace does.
value fn_replace(eval_state& state, const call_args& call) {
  text_arg source;
  text_arg from;
  text_arg to;
  if (!read_text(call.values[0], state, source) || !read_text(call.values[1], state, from) ||
      !read_text(call.values[2], state, to))
    return {};
  std::string out;
  const std::size_t limit = state.bounds.max_output_bytes;
  const auto too_long = [&out, limit, &state] {
    if (out.size() <= limit) return false;
    state.fail("a string value exceeds max_output_bytes");
    return true;
  };
  if (from.text.empty()) {
    out.append(to.text);
    for (std::size_t i = 0; i < source.text.size();) {
      const std::size_t next = i + code_point_offset(source.text.substr(i), 1);
      out.append(source.text.substr(i, next - i));
      out.append(to.text);
      if (too_long()) return {};
      i = next;
    }
    return string_result(out, state);
  }
  std::size_t start = 0;
  for (;;) {
    const std::size_t found = source.text.find(from.text, start);
    if (found == std::string_view::npos) break;
    out.append(source.text.substr(start, found - start));
    out.append(to.text);
    if (too_long()) return {};
    start = found + from.text.size();
  }
  out.append(source.text.substr(start));
  return string_result(out, state);
}

// concat(): arrays splice when any argument is one; otherwise the string forms join.
value fn_concat(eval_state& state, const call_args& call) {
  const std::span<value> args = call.values;
  if (args.empty()) return {};
  if (args.size() == 1) {
    value& only = args[0];
    const sql_type type = only.type();
    if (type != sql_type::integer && type != sql_type::decimal && type != sql_type::boolean)
      return std::move(only);
    std::string text;
    append_string(only, state.whole_as_int(), text);  // AWS: concat(1) = "1"
    return string_result(text, state);
  }
  const bool has_array = std::any_of(args.begin(), args.end(),
                                     [](const value& v) { return v.type() == sql_type::array; });
  if (has_array) {
    json::value result(json::array_kind, state.storage);
    json::array& out = result.get_array();
    for (value& v : args) {
      if (v.is_undefined()) continue;
      if (v.json().is_array()) {
        for (json::value& element : v.json().get_array()) out.push_back(std::move(element));
      } else {
        out.push_back(std::move(v.json()));
      }
      if (out.size() > state.bounds.max_output_bytes) {
        state.fail("an array value exceeds max_output_bytes");
        return {};
      }
    }
    return value(std::move(result));
  }
  std::string text;
  for (const value& v : args) {
    if (!append_string(v, state.whole_as_int(), text)) return {};
    if (text.size() > state.bounds.max_output_bytes) break;  // string_result fails it
  }
  return string_result(text, state);
}

// ---- regular expressions -----------------------------------------------------------------------

// The literal pattern compiled at parse time, or the argument compiled now; nullptr (the call is
// Undefined) when it does not compile or is longer than the bounds allow.
const std::regex* pattern_of(const eval_state& state, const call_args& call,
                             std::shared_ptr<const std::regex>& compiled_now) {
  if (call.literal_pattern != nullptr) {
    if (call.literal_pattern->length > state.bounds.max_regex_length) return nullptr;
    return call.literal_pattern->regex.get();
  }
  text_arg pattern;
  if (!read_text(call.values[1], state, pattern)) return nullptr;
  if (pattern.text.size() > state.bounds.max_regex_length) return nullptr;
  compiled_now = compile_pattern(pattern.text);
  return compiled_now.get();
}

bool read_subject(const value& v, const eval_state& state, text_arg& subject) {
  return read_text(v, state, subject) && subject.text.size() <= state.bounds.max_regex_input;
}

value fn_regexp_matches(eval_state& state, const call_args& call) {
  text_arg subject;
  if (!read_subject(call.values[0], state, subject)) return {};
  std::shared_ptr<const std::regex> compiled_now;
  const std::regex* pattern = pattern_of(state, call, compiled_now);
  if (pattern == nullptr) return {};
  try {
    return make_bool(std::regex_search(subject.text.begin(), subject.text.end(), *pattern));
  } catch (const std::regex_error&) {  // libstdc++ gives up on some inputs: AWS's Undefined
    return {};
  }
}

value fn_regexp_substr(eval_state& state, const call_args& call) {
  text_arg subject;
  if (!read_subject(call.values[0], state, subject)) return {};
  std::shared_ptr<const std::regex> compiled_now;
  const std::regex* pattern = pattern_of(state, call, compiled_now);
  if (pattern == nullptr) return {};
  std::cmatch match;
  try {
    const char* first = subject.text.data();
    if (!std::regex_search(first, first + subject.text.size(), match, *pattern)) return {};
  } catch (const std::regex_error&) {
    return {};
  }
  return string_result(
      std::string_view(match[0].first, static_cast<std::size_t>(match[0].length())), state);
}

// Every match replaced; $1, $& and $$ in the replacement as in ECMAScript.
value fn_regexp_replace(eval_state& state, const call_args& call) {
  text_arg subject;
  text_arg replacement;
  if (!read_subject(call.values[0], state, subject) ||
      !read_text(call.values[2], state, replacement))
    return {};
  std::shared_ptr<const std::regex> compiled_now;
  const std::regex* pattern = pattern_of(state, call, compiled_now);
  if (pattern == nullptr) return {};
  const char* first = subject.text.data();
  const char* last = first + subject.text.size();
  const char* tail = first;
  std::string out;
  try {
    for (std::cregex_iterator it(first, last, *pattern), end; it != end; ++it) {
      const std::cmatch& match = *it;
      out.append(match.prefix().first, match.prefix().second);
      match.format(std::back_inserter(out), replacement.text.data(),
                   replacement.text.data() + replacement.text.size());
      tail = match[0].second;
      if (out.size() > state.bounds.max_output_bytes) {
        state.fail("a string value exceeds max_output_bytes");
        return {};
      }
    }
  } catch (const std::regex_error&) {
    return {};
  }
  out.append(tail, last);
  return string_result(out, state);
}

// Automaton size as the pattern spells it: a sequence adds up, {n,m} multiplies what it repeats
// by the larger count. Refusing big ones keeps matching fast, whatever libstdc++'s own limit.
constexpr std::uint64_t max_pattern_states = 2000;

bool is_small_automaton(std::string_view pattern) {
  std::vector<std::uint64_t> groups{0};  // the size of each open group, outermost first
  std::uint64_t last_atom = 0;           // what a quantifier would repeat
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '(') {
      groups.push_back(0);
      last_atom = 0;
      continue;
    }
    if (c == ')') {
      if (groups.size() == 1) return true;  // unbalanced: std::regex refuses it anyway
      last_atom = groups.back() + 1;
      groups.pop_back();
      groups.back() += last_atom;
    } else if (c == '{') {
      std::size_t j = i + 1;
      std::uint64_t count = 0;
      std::uint64_t largest = 0;
      bool has_digit = false;
      for (; j < pattern.size() && ((pattern[j] >= '0' && pattern[j] <= '9') || pattern[j] == ',');
           ++j) {
        if (pattern[j] == ',') {
          count = 0;
          continue;
        }
        has_digit = true;
        count = count * 10 + static_cast<std::uint64_t>(pattern[j] - '0');
        if (count > max_pattern_states) return false;
        largest = std::max(largest, count);
      }
      if (!has_digit || j >= pattern.size() || pattern[j] != '}') {
        last_atom = 1;  // a literal brace
        groups.back() += 1;
        continue;
      }
      groups.back() += last_atom * (largest > 0 ? largest - 1 : 0);
      last_atom *= std::max<std::uint64_t>(largest, 1);
      i = j;
    } else if (c == '[') {
      std::size_t j = i + 1;
      if (j < pattern.size() && pattern[j] == ']') ++j;
      while (j < pattern.size() && pattern[j] != ']') j += pattern[j] == '\\' ? 2 : 1;
      i = std::min(j, pattern.size());
      last_atom = 1;
      groups.back() += 1;
    } else {
      if (c == '\\') ++i;
      last_atom = 1;
      groups.back() += 1;
    }
    if (groups.back() > max_pattern_states || last_atom > max_pattern_states) return false;
  }
  return true;
}

const function_info string_table[] = {
    {"concat", 0, any_count, v1, fn_concat, false},
    {"endswith", 2, 2, v1, fn_endswith, false},
    {"indexof", 2, 2, v2, fn_indexof, false},
    {"length", 1, 1, v2, fn_length, false},
    {"lower", 1, 1, v1, fn_lower, false},
    {"lpad", 2, 2, v1, fn_lpad, false},
    {"ltrim", 1, 1, v1, fn_ltrim, false},
    {"numbytes", 1, 1, v2, fn_numbytes, false},
    {"regexp_matches", 2, 2, v1, fn_regexp_matches, true},
    {"regexp_replace", 3, 3, v1, fn_regexp_replace, true},
    {"regexp_substr", 2, 2, v1, fn_regexp_substr, true},
    {"replace", 3, 3, v1, fn_replace, false},
    {"rpad", 2, 2, v1, fn_rpad, false},
    {"rtrim", 1, 1, v1, fn_rtrim, false},
    {"startswith", 2, 2, v1, fn_startswith, false},
    {"substring", 2, 3, v1, fn_substring, false},
    {"trim", 1, 1, v1, fn_trim, false},
    {"upper", 1, 1, v1, fn_upper, false},
};

}  // namespace

std::span<const function_info> string_functions() {
  return string_table;
}

std::size_t code_point_count(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return !is_continuation(c); }));
}

std::size_t code_point_offset(std::string_view text, std::size_t index) {
  std::size_t offset = 0;
  for (std::size_t seen = 0; offset < text.size(); ++seen) {
    if (seen == index) return offset;
    ++offset;
    while (offset < text.size() && is_continuation(text[offset])) ++offset;
  }
  return text.size();
}

std::shared_ptr<const std::regex> compile_pattern(std::string_view pattern) {
  if (!is_small_automaton(pattern)) return nullptr;
  auto flags = std::regex_constants::ECMAScript;
#ifdef __GLIBCXX__
  // Breadth-first matching: polynomial time, no recursion per input character, no
  // back-references (a pattern with one does not compile, and the call is Undefined).
  flags |= std::regex_constants::__polynomial;
#endif
  try {
    return std::make_shared<std::regex>(pattern.begin(), pattern.end(), flags);
  } catch (const std::regex_error&) {  // not a valid pattern: AWS says Undefined
    return nullptr;
  }
}

}  // namespace nimbus::rules::sql
