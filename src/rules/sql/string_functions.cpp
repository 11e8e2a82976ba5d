// The string and regex functions, and concat(). Arguments that are not Strings go through the
// standard conversion (numbers, Booleans, and arrays and objects as their JSON); Null and Undefined
// have none, so a call given one is Undefined. Indexes and lengths count code points.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
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

bool read_text(const value& v, eval_state& state, text_arg& out) {
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
    // The elements move rather than copy. What the array takes is charged to the evaluation's
    // memory budget (evaluator.cpp), and its JSON to max_output_bytes if it is written out: an
    // element count says nothing about either.
    json::value result(json::array_kind, state.storage);
    json::array& out = result.get_array();
    for (value& v : args) {
      if (v.is_undefined()) continue;
      if (v.json().is_array()) {
        for (json::value& element : v.json().get_array()) out.push_back(std::move(element));
      } else {
        out.push_back(std::move(v.json()));
      }
    }
    return value(std::move(result));
  }
  std::string text;
  const std::size_t limit = state.bounds.max_output_bytes;
  for (const value& v : args) {
    if (!append_string(v, state.whole_as_int(), text, limit)) return {};
    if (text.size() > limit) break;  // string_result fails it
  }
  return string_result(text, state);
}

// ---- regular expressions -----------------------------------------------------------------------

// A compiled pattern, and its length, from which the matcher's setup cost is reckoned.
struct pattern_ref {
  const std::regex* regex = nullptr;
  std::size_t length = 0;
};

// The literal pattern compiled at parse time, or the argument compiled now; no regex (the call is
// Undefined) when it does not compile or is longer than the bounds allow.
pattern_ref pattern_of(eval_state& state, const call_args& call,
                       std::shared_ptr<const std::regex>& compiled_now) {
  if (call.literal_pattern != nullptr) {
    if (call.literal_pattern->length > state.bounds.max_regex_length) return {};
    return {call.literal_pattern->regex.get(), call.literal_pattern->length};
  }
  text_arg pattern;
  if (!read_text(call.values[1], state, pattern)) return {};
  if (pattern.text.size() > state.bounds.max_regex_length) return {};
  compiled_now = compile_pattern(pattern.text);
  return {compiled_now.get(), pattern.text.size()};
}

bool read_subject(const value& v, eval_state& state, text_arg& subject) {
  return read_text(v, state, subject) && subject.text.size() <= state.bounds.max_regex_input;
}

// Matching is charged against the evaluation's step budget. libstdc++'s search restarts at every
// offset of the subject, so its work grows with the square of the subject's length, and faster
// for some patterns: no estimate made before the call bounds it. So the matcher reads the subject
// through metered_iterator, which counts what it reads and stops the match, by throwing (the one
// way out of std::regex), once the budget is spent. The setup at each offset reads nothing, so
// each call also pays the subject's length times the pattern's up front.
constexpr std::size_t regex_reads_per_step = 16;  // about the work of one expression evaluated

struct regex_budget_spent {};  // thrown by regex_meter, caught in run_metered

class regex_meter {
 public:
  regex_meter(std::size_t budget, std::size_t cost_per_read)
      : left_(budget), cost_per_read_(cost_per_read) {}

  void read() {
    if (left_ < cost_per_read_) throw regex_budget_spent();
    left_ -= cost_per_read_;
  }
  std::size_t left() const { return left_; }

 private:
  std::size_t left_;
  std::size_t cost_per_read_;
};

// The subject's bytes as std::regex walks them, every read counted by a regex_meter. Moving is
// not counted: libstdc++ moves iterators inside noexcept functions (sub_match::length), where a
// throw would terminate the process; it only reads them where an exception may pass.
class metered_iterator {
 public:
  using iterator_category = std::bidirectional_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  metered_iterator() = default;
  metered_iterator(const char* position, regex_meter& meter)
      : position_(position), meter_(&meter) {}

  reference operator*() const {
    if (meter_ != nullptr) meter_->read();
    return *position_;
  }
  pointer operator->() const { return position_; }
  metered_iterator& operator++() {
    ++position_;
    return *this;
  }
  metered_iterator operator++(int) {
    metered_iterator before = *this;
    ++position_;
    return before;
  }
  metered_iterator& operator--() {
    --position_;
    return *this;
  }
  metered_iterator operator--(int) {
    metered_iterator before = *this;
    --position_;
    return before;
  }
  friend bool operator==(const metered_iterator& a, const metered_iterator& b) {
    return a.position_ == b.position_;
  }

  const char* base() const { return position_; }

 private:
  const char* position_ = nullptr;
  regex_meter* meter_ = nullptr;
};

using metered_match = std::match_results<metered_iterator>;

std::string_view between(const metered_iterator& first, const metered_iterator& last) {
  return {first.base(), static_cast<std::size_t>(last.base() - first.base())};
}

// Runs `match(begin, end)` over `subject` within what is left of the step budget and charges the
// steps it took. False when it did not finish: the budget ran out (the evaluation has then
// failed) or libstdc++ gave up on the input (regex_error: AWS's Undefined).
template <class Match>
bool run_metered(eval_state& state, std::string_view subject, const pattern_ref& pattern,
                 const Match& match) {
  constexpr std::size_t most = std::numeric_limits<std::size_t>::max();
  const std::size_t steps_remaining = state.steps_left();
  const std::size_t budget =
      steps_remaining > most / regex_reads_per_step ? most : steps_remaining * regex_reads_per_step;
  const std::size_t setup = (subject.size() + 1) * (pattern.length + 1);
  if (setup > budget) {
    state.fail("the evaluation exceeds max_steps");
    return false;
  }
  // Each state the matcher carries from one character to the next copies the capture groups.
  const std::size_t cost_per_read = 1 + pattern.regex->mark_count() / 8;
  regex_meter meter(budget - setup, cost_per_read);
  const char* const data = subject.data();
  bool is_done = false;
  try {
    match(metered_iterator(data, meter), metered_iterator(data + subject.size(), meter));
    is_done = true;
  } catch (const regex_budget_spent&) {
    state.fail("the evaluation exceeds max_steps");
  } catch (const std::regex_error&) {  // libstdc++ gives up on some inputs: AWS's Undefined
  }
  const std::size_t used = budget - meter.left();
  state.steps += (used + regex_reads_per_step - 1) / regex_reads_per_step;
  return is_done;
}

value fn_regexp_matches(eval_state& state, const call_args& call) {
  text_arg subject;
  if (!read_subject(call.values[0], state, subject)) return {};
  std::shared_ptr<const std::regex> compiled_now;
  const pattern_ref pattern = pattern_of(state, call, compiled_now);
  if (pattern.regex == nullptr) return {};
  bool is_match = false;
  const auto search = [&is_match, &pattern](metered_iterator begin, metered_iterator end) {
    is_match = std::regex_search(begin, end, *pattern.regex);
  };
  if (!run_metered(state, subject.text, pattern, search)) return {};
  return make_bool(is_match);
}

value fn_regexp_substr(eval_state& state, const call_args& call) {
  text_arg subject;
  if (!read_subject(call.values[0], state, subject)) return {};
  std::shared_ptr<const std::regex> compiled_now;
  const pattern_ref pattern = pattern_of(state, call, compiled_now);
  if (pattern.regex == nullptr) return {};
  std::optional<std::string_view> found;  // a view of the subject
  const auto search = [&found, &pattern](metered_iterator begin, metered_iterator end) {
    metered_match match;
    if (std::regex_search(begin, end, match, *pattern.regex))
      found = between(match[0].first, match[0].second);
  };
  if (!run_metered(state, subject.text, pattern, search) || !found) return {};
  return string_result(*found, state);
}

// Every match replaced; $1, $& and $$ in the replacement as in ECMAScript.
value fn_regexp_replace(eval_state& state, const call_args& call) {
  text_arg subject;
  text_arg replacement;
  if (!read_subject(call.values[0], state, subject) ||
      !read_text(call.values[2], state, replacement))
    return {};
  std::shared_ptr<const std::regex> compiled_now;
  const pattern_ref pattern = pattern_of(state, call, compiled_now);
  if (pattern.regex == nullptr) return {};
  const std::size_t limit = state.bounds.max_output_bytes;
  const std::string_view format = replacement.text;
  std::string out;
  const char* tail = subject.text.data();  // what follows the last match
  const auto replace = [&out, &tail, &pattern, limit, format](metered_iterator begin,
                                                              metered_iterator end) {
    for (std::regex_iterator<metered_iterator> it(begin, end, *pattern.regex), last; it != last;
         ++it) {
      const metered_match& match = *it;
      out.append(between(match.prefix().first, match.prefix().second));
      match.format(std::back_inserter(out), format.data(), format.data() + format.size());
      tail = match[0].second.base();
      if (out.size() > limit) return;
    }
  };
  if (!run_metered(state, subject.text, pattern, replace)) return {};
  if (out.size() > limit) {
    state.fail("a string value exceeds max_output_bytes");
    return {};
  }
  out.append(subject.text.substr(static_cast<std::size_t>(tail - subject.text.data())));
  return string_result(out, state);
}

// The index of the ']' that closes the class opened at `open`, as ECMAScript reads it ("[]" is
// an empty class, "\]" does not close); pattern.size() when none does. libstdc++ never closes a
// class sooner, so no parenthesis it reads as a group is hidden from the scans below.
std::size_t class_end(std::string_view pattern, std::size_t open) {
  std::size_t j = open + 1;
  if (j < pattern.size() && pattern[j] == '^') ++j;
  while (j < pattern.size() && pattern[j] != ']') j += pattern[j] == '\\' ? 2 : 1;
  return std::min(j, pattern.size());
}

// What compile_pattern refuses besides an automaton's size.
struct pattern_outline {
  std::size_t group_depth = 0;  // libstdc++'s compiler recurses per level
  bool has_lookahead = false;   // (?= or (?!: a sub-search at every state and offset
};

pattern_outline outline_of(std::string_view pattern) {
  pattern_outline outline;
  std::size_t depth = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;  // an escaped character, "\(" among them
    } else if (c == '[') {
      i = class_end(pattern, i);
    } else if (c == '(') {
      outline.group_depth = std::max(outline.group_depth, ++depth);
      const std::string_view next = pattern.substr(i + 1, 2);
      if (next == "?=" || next == "?!") outline.has_lookahead = true;
    } else if (c == ')' && depth > 0) {
      --depth;
    }
  }
  return outline;
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
      i = class_end(pattern, i);
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

std::size_t group_depth(std::string_view pattern) {
  return outline_of(pattern).group_depth;
}

std::shared_ptr<const std::regex> compile_pattern(std::string_view pattern) {
  if (pattern.size() > max_pattern_bytes) return nullptr;
  const pattern_outline outline = outline_of(pattern);
  if (outline.has_lookahead || outline.group_depth > max_group_depth) return nullptr;
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
