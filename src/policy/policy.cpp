#include "policy/policy.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include <boost/json.hpp>

namespace nimbus::policy {

namespace {

namespace json = boost::json;

constexpr std::size_t max_policy_characters = 2048;
constexpr auto npos = std::string_view::npos;

char fold(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (fold(a[i]) != fold(b[i])) return false;
  return true;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = fold(c);
  return out;
}

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// `?` stands for one character, i.e. one UTF-8 sequence: a byte and the continuation bytes
// after it. Position 0 is always a boundary, so stray continuation bytes stay bounded.
std::size_t next_char(std::string_view s, std::size_t pos) {
  ++pos;
  while (pos < s.size() && is_continuation(s[pos])) ++pos;
  return pos;
}

std::size_t prev_char(std::string_view s, std::size_t pos) {
  --pos;
  while (pos > 0 && is_continuation(s[pos])) --pos;
  return pos;
}

// ---------------------------------------------------------------------------------------------
// Globs: IAM `*` (any run, `/` and `:` included) and `?` (one character), compiled into the
// literal pieces between the stars so matching is a few compares and finds, without allocation.

// The text between two `*`: literals[0] `?` literals[1] `?` ... — never empty.
struct glob_piece {
  std::vector<std::string> literals;
};

struct glob {
  std::vector<glob_piece> pieces;  // one piece: no `*` at all
  bool fold_case = false;          // actions: pattern lowercased, subject folded while matching
};

class glob_builder {
 public:
  glob_builder() { pieces_.push_back(glob_piece{std::vector<std::string>(1)}); }
  void literal(std::string_view text) { pieces_.back().literals.back().append(text); }
  void any_char() { pieces_.back().literals.emplace_back(); }
  void star() {
    const auto& last = pieces_.back().literals;
    // `**` is `*`: no empty piece between two stars.
    if (pieces_.size() > 1 && last.size() == 1 && last[0].empty()) return;
    pieces_.push_back(glob_piece{std::vector<std::string>(1)});
  }
  glob finish(bool fold_case) && { return glob{std::move(pieces_), fold_case}; }

 private:
  std::vector<glob_piece> pieces_;
};

bool literal_at(std::string_view s, std::size_t pos, std::string_view literal, bool fold_case) {
  if (!fold_case) return s.compare(pos, literal.size(), literal) == 0;
  for (std::size_t i = 0; i < literal.size(); ++i)
    if (fold(s[pos + i]) != literal[i]) return false;
  return true;
}

// Matches `piece` starting at `pos` without reading past `limit`: the end of the match or npos.
std::size_t match_forward(std::string_view s, std::size_t pos, std::size_t limit,
                          const glob_piece& piece, bool fold_case) {
  for (std::size_t i = 0; i < piece.literals.size(); ++i) {
    if (i > 0) {
      if (pos >= limit) return npos;
      pos = next_char(s, pos);
      if (pos > limit) return npos;
    }
    const auto& literal = piece.literals[i];
    if (literal.size() > limit - pos || !literal_at(s, pos, literal, fold_case)) return npos;
    pos += literal.size();
  }
  return pos;
}

// Matches `piece` ending at `end` without reading before `floor`: the start of the match or npos.
std::size_t match_backward(std::string_view s, std::size_t end, std::size_t floor,
                           const glob_piece& piece, bool fold_case) {
  for (std::size_t i = piece.literals.size(); i-- > 0;) {
    const auto& literal = piece.literals[i];
    if (literal.size() > end - floor) return npos;
    end -= literal.size();
    if (!literal_at(s, end, literal, fold_case)) return npos;
    if (i > 0) {
      if (end <= floor) return npos;
      end = prev_char(s, end);
      if (end < floor) return npos;
    }
  }
  return end;
}

// The end of the leftmost match of `piece` within [from, limit], or npos. Leftmost is enough
// for the pieces between stars: a match that starts earlier never ends later.
std::size_t find_forward(std::string_view s, std::size_t from, std::size_t limit,
                         const glob_piece& piece, bool fold_case) {
  const auto& head = piece.literals.front();
  const auto window = s.substr(0, limit);
  std::size_t pos = from;
  while (pos <= limit) {
    if (!head.empty() && !fold_case) {
      pos = window.find(head, pos);
      if (pos == npos) return npos;
    }
    auto end = match_forward(s, pos, limit, piece, fold_case);
    if (end != npos) return end;
    if (pos >= limit) return npos;
    pos = next_char(s, pos);
  }
  return npos;
}

bool glob_match(const glob& g, std::string_view s) {
  const auto& pieces = g.pieces;
  if (pieces.size() == 1) return match_forward(s, 0, s.size(), pieces[0], g.fold_case) == s.size();
  auto start = match_forward(s, 0, s.size(), pieces.front(), g.fold_case);
  if (start == npos) return false;
  auto end = match_backward(s, s.size(), start, pieces.back(), g.fold_case);
  if (end == npos) return false;
  for (std::size_t i = 1; i + 1 < pieces.size(); ++i) {
    start = find_forward(s, start, end, pieces[i], g.fold_case);
    if (start == npos) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Templates: a policy string split into literal text, wildcards and `${variables}`.

struct token {
  enum class kind : std::uint8_t { literal, star, any_char, variable };
  kind type = kind::literal;
  std::string text;                     // the literal text, or the variable's key
  std::optional<std::string> fallback;  // `${key, 'default'}`
};

// `${ key , 'default' }` with `''` for a quote inside the default. A malformed default leaves
// the key unusable so the variable never resolves, as IAM does.
token parse_variable(std::string_view inner) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
  };
  token t{token::kind::variable, {}, std::nullopt};
  auto comma = inner.find(',');
  auto key = trim(inner.substr(0, comma));
  if (key.find(' ') != npos) return t;
  if (comma == npos) {
    t.text = key;
    return t;
  }
  auto rest = trim(inner.substr(comma + 1));
  if (rest.size() < 2 || rest.front() != '\'' || rest.back() != '\'') return t;
  rest = rest.substr(1, rest.size() - 2);
  std::string value;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '\'') {
      if (i + 1 >= rest.size() || rest[i + 1] != '\'') return t;
      ++i;
    }
    value += rest[i];
  }
  t.text = key;
  t.fallback = std::move(value);
  return t;
}

// Splits `source`. With `variables` (Version 2012-10-17) `${key}` is a variable and `${*}`,
// `${?}`, `${$}` are the literal characters; with `wildcards` `*` and `?` are wildcards.
std::vector<token> tokenize(std::string_view source, bool variables, bool wildcards) {
  std::vector<token> tokens;
  auto add_literal = [&](std::string_view text) {
    if (text.empty()) return;
    if (!tokens.empty() && tokens.back().type == token::kind::literal)
      tokens.back().text.append(text);
    else
      tokens.push_back(token{token::kind::literal, std::string(text), std::nullopt});
  };
  std::size_t i = 0;
  while (i < source.size()) {
    char c = source[i];
    if (wildcards && (c == '*' || c == '?')) {
      tokens.push_back(
          token{c == '*' ? token::kind::star : token::kind::any_char, {}, std::nullopt});
      ++i;
      continue;
    }
    if (variables && c == '$' && i + 1 < source.size() && source[i + 1] == '{') {
      auto close = source.find('}', i + 2);
      if (close != npos) {
        auto inner = source.substr(i + 2, close - i - 2);
        if (inner == "*" || inner == "?" || inner == "$")
          add_literal(inner);
        else
          tokens.push_back(parse_variable(inner));
        i = close + 1;
        continue;
      }
    }
    add_literal(source.substr(i, 1));
    ++i;
  }
  return tokens;
}

bool has_variables(const std::vector<token>& tokens) {
  return std::any_of(tokens.begin(), tokens.end(),
                     [](const token& t) { return t.type == token::kind::variable; });
}

// The first value of a variable's key, or its default; nullopt when neither exists.
std::optional<std::string> resolve(const token& t, const request_context& context) {
  if (!t.text.empty()) {
    auto values = context.lookup(t.text);
    if (values && !values->empty()) return std::move(values->front());
  }
  return t.fallback;
}

// Builds a glob from tokens; substituted values are literal, so a client id `a*` is no wildcard.
// nullopt when a variable does not resolve (or there is no context to resolve it).
std::optional<glob> instantiate_glob(const std::vector<token>& tokens,
                                     const request_context* context, bool fold_case) {
  glob_builder builder;
  for (const auto& t : tokens) {
    switch (t.type) {
      case token::kind::literal:
        builder.literal(fold_case ? lowercase(t.text) : t.text);
        break;
      case token::kind::star:
        builder.star();
        break;
      case token::kind::any_char:
        builder.any_char();
        break;
      case token::kind::variable: {
        if (context == nullptr) return std::nullopt;
        auto value = resolve(t, *context);
        if (!value) return std::nullopt;
        builder.literal(fold_case ? lowercase(*value) : *value);
        break;
      }
    }
  }
  return std::move(builder).finish(fold_case);
}

std::optional<std::string> instantiate_text(const std::vector<token>& tokens,
                                            const request_context& context) {
  std::string out;
  for (const auto& t : tokens) {
    if (t.type != token::kind::variable) {
      out += t.text;
      continue;
    }
    auto value = resolve(t, context);
    if (!value) return std::nullopt;
    out += *value;
  }
  return out;
}

// ARNs compare component by component (partition, service, region, account, resource) so a
// wildcard never spans a `:` before the resource; a pattern that is not six components (`*`)
// compares as a whole. Only the pattern's own colons split, never a substituted value's.
std::optional<std::vector<glob>> instantiate_arn(const std::vector<token>& tokens,
                                                 const request_context* context) {
  std::size_t colons = 0;
  for (const auto& t : tokens)
    if (t.type == token::kind::literal)
      colons += static_cast<std::size_t>(std::count(t.text.begin(), t.text.end(), ':'));
  if (colons < 5) {
    auto whole = instantiate_glob(tokens, context, false);
    if (!whole) return std::nullopt;
    std::vector<glob> parts;
    parts.push_back(std::move(*whole));
    return parts;
  }
  std::vector<glob> parts;
  glob_builder builder;
  for (const auto& t : tokens) {
    switch (t.type) {
      case token::kind::literal: {
        std::string_view text = t.text;
        while (parts.size() < 5) {
          auto colon = text.find(':');
          if (colon == npos) break;
          builder.literal(text.substr(0, colon));
          parts.push_back(std::move(builder).finish(false));
          builder = glob_builder();
          text.remove_prefix(colon + 1);
        }
        builder.literal(text);
        break;
      }
      case token::kind::star:
        builder.star();
        break;
      case token::kind::any_char:
        builder.any_char();
        break;
      case token::kind::variable: {
        if (context == nullptr) return std::nullopt;
        auto value = resolve(t, *context);
        if (!value) return std::nullopt;
        builder.literal(*value);
        break;
      }
    }
  }
  parts.push_back(std::move(builder).finish(false));
  return parts;
}

bool arn_match(const std::vector<glob>& parts, std::string_view arn) {
  if (parts.size() == 1) return glob_match(parts[0], arn);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    auto colon = arn.find(':');
    if (colon == npos || !glob_match(parts[i], arn.substr(0, colon))) return false;
    arn.remove_prefix(colon + 1);
  }
  return glob_match(parts.back(), arn);
}

// A Resource entry: compiled once unless it names variables.
struct glob_template {
  glob compiled;
  std::vector<token> tokens;  // kept only when has_variables
  bool has_variables = false;
};

glob_template make_glob_template(std::string_view source, bool variables) {
  glob_template out;
  auto tokens = tokenize(source, variables, true);
  out.has_variables = has_variables(tokens);
  if (out.has_variables)
    out.tokens = std::move(tokens);
  else
    out.compiled = *instantiate_glob(tokens, nullptr, false);
  return out;
}

enum class match_result : std::uint8_t { no_match, match, unknown };

// `unknown` when a variable does not resolve.
match_result match_template(const glob_template& t, std::string_view subject,
                            const request_context& context) {
  if (!t.has_variables)
    return glob_match(t.compiled, subject) ? match_result::match : match_result::no_match;
  auto g = instantiate_glob(t.tokens, &context, false);
  if (!g) return match_result::unknown;
  return glob_match(*g, subject) ? match_result::match : match_result::no_match;
}

// ---------------------------------------------------------------------------------------------
// Condition values that are numbers, dates and addresses.

std::optional<double> parse_number(std::string_view s) {
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

// Days since 1970-01-01 of a proleptic Gregorian date.
std::int64_t days_from_civil(std::int64_t year, std::int64_t month, std::int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const std::int64_t year_of_era = year - era * 400;
  const std::int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const std::int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

// Milliseconds since the epoch of `2024-05-01`, `2024-05-01T12:00:00Z`, `...T12:00:00.250+02:00`
// or of epoch seconds (`1714564800`), the forms IAM date conditions take.
std::optional<std::int64_t> parse_date(std::string_view s) {
  if (s.empty() || s.size() > 40) return std::nullopt;
  if (std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::int64_t seconds = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
    if (ec != std::errc() || seconds > 253402300799) return std::nullopt;
    return seconds * 1000;
  }
  std::size_t pos = 0;
  auto digits = [&](std::size_t count, unsigned& out) {
    if (s.size() - pos < count) return false;
    out = 0;
    for (std::size_t i = 0; i < count; ++i) {
      char c = s[pos + i];
      if (c < '0' || c > '9') return false;
      out = out * 10 + static_cast<unsigned>(c - '0');
    }
    pos += count;
    return true;
  };
  auto expect = [&](char c) {
    if (pos >= s.size() || s[pos] != c) return false;
    ++pos;
    return true;
  };
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
  if (!digits(4, year) || !expect('-') || !digits(2, month) || !expect('-') || !digits(2, day))
    return std::nullopt;
  static constexpr std::array<unsigned, 12> month_days{31, 29, 31, 30, 31, 30,
                                                       31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1]) return std::nullopt;
  std::int64_t offset_minutes = 0;
  if (pos < s.size()) {
    if (!expect('T') || !digits(2, hour) || !expect(':') || !digits(2, minute)) return std::nullopt;
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!digits(2, second)) return std::nullopt;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        std::size_t fraction_digits = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          if (fraction_digits++ < 3) millis = millis * 10 + static_cast<unsigned>(s[pos] - '0');
          ++pos;
        }
        if (fraction_digits == 0) return std::nullopt;
        for (; fraction_digits < 3; ++fraction_digits) millis *= 10;
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    if (pos < s.size()) {
      char sign = s[pos];
      if (sign == 'Z') {
        ++pos;
      } else if (sign == '+' || sign == '-') {
        ++pos;
        unsigned offset_hours = 0, offset_mins = 0;
        if (!digits(2, offset_hours)) return std::nullopt;
        expect(':');
        if (!digits(2, offset_mins) || offset_hours > 23 || offset_mins > 59) return std::nullopt;
        offset_minutes =
            (sign == '+' ? 1 : -1) * static_cast<std::int64_t>(offset_hours * 60 + offset_mins);
      } else {
        return std::nullopt;
      }
    }
    if (pos != s.size()) return std::nullopt;
  }
  std::int64_t seconds_of_day = hour * 3600 + minute * 60 + second;
  std::int64_t seconds =
      days_from_civil(year, month, day) * 86400 + seconds_of_day - offset_minutes * 60;
  return seconds * 1000 + millis;
}

// An address range; IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d) so that both families,
// and the mapped addresses a dual-stack socket reports, compare in one form.
struct ip_range {
  std::array<std::uint8_t, 16> address{};
  unsigned prefix = 128;
};

std::optional<std::array<std::uint8_t, 16>> parse_address(std::string_view s, bool& is_v4) {
  char buffer[64];
  if (s.empty() || s.size() >= sizeof(buffer)) return std::nullopt;
  std::memcpy(buffer, s.data(), s.size());
  buffer[s.size()] = '\0';
  std::array<std::uint8_t, 16> out{};
  is_v4 = s.find(':') == npos;
  if (is_v4) {
    out[10] = 0xff;
    out[11] = 0xff;
    if (inet_pton(AF_INET, buffer, out.data() + 12) != 1) return std::nullopt;
  } else if (inet_pton(AF_INET6, buffer, out.data()) != 1) {
    return std::nullopt;
  }
  return out;
}

std::optional<ip_range> parse_cidr(std::string_view s) {
  auto slash = s.find('/');
  bool is_v4 = false;
  auto address = parse_address(s.substr(0, slash), is_v4);
  if (!address) return std::nullopt;
  ip_range range{*address, is_v4 ? 32u : 128u};
  if (slash != npos) {
    auto digits = s.substr(slash + 1);
    unsigned prefix = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
        prefix > range.prefix)
      return std::nullopt;
    range.prefix = prefix;
  }
  if (is_v4) range.prefix += 96;
  return range;
}

bool in_range(const ip_range& range, const std::array<std::uint8_t, 16>& address) {
  unsigned bits = range.prefix;
  for (std::size_t i = 0; i < 16 && bits > 0; ++i, bits = bits >= 8 ? bits - 8 : 0) {
    auto mask = static_cast<std::uint8_t>(bits >= 8 ? 0xff : 0xff << (8 - bits));
    if ((range.address[i] & mask) != (address[i] & mask)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Conditions.

enum class operator_kind : std::uint8_t {
  string_equals,
  string_equals_ignore_case,
  string_like,
  numeric,
  date,
  boolean,
  binary_equals,
  ip_address,
  arn_like,
  null_check,
};

enum class comparison : std::uint8_t { equal, less, less_equal, greater, greater_equal };

enum class set_operator : std::uint8_t { none, for_all_values, for_any_value };

struct operator_spec {
  std::string_view name;
  operator_kind kind;
  comparison compare;
  bool negated;
  bool variables;  // whether IAM substitutes policy variables in this operator's values
};

constexpr std::array<operator_spec, 26> operators{{
    {"StringEquals", operator_kind::string_equals, comparison::equal, false, true},
    {"StringNotEquals", operator_kind::string_equals, comparison::equal, true, true},
    {"StringEqualsIgnoreCase", operator_kind::string_equals_ignore_case, comparison::equal, false,
     true},
    {"StringNotEqualsIgnoreCase", operator_kind::string_equals_ignore_case, comparison::equal, true,
     true},
    {"StringLike", operator_kind::string_like, comparison::equal, false, true},
    {"StringNotLike", operator_kind::string_like, comparison::equal, true, true},
    {"NumericEquals", operator_kind::numeric, comparison::equal, false, false},
    {"NumericNotEquals", operator_kind::numeric, comparison::equal, true, false},
    {"NumericLessThan", operator_kind::numeric, comparison::less, false, false},
    {"NumericLessThanEquals", operator_kind::numeric, comparison::less_equal, false, false},
    {"NumericGreaterThan", operator_kind::numeric, comparison::greater, false, false},
    {"NumericGreaterThanEquals", operator_kind::numeric, comparison::greater_equal, false, false},
    {"DateEquals", operator_kind::date, comparison::equal, false, false},
    {"DateNotEquals", operator_kind::date, comparison::equal, true, false},
    {"DateLessThan", operator_kind::date, comparison::less, false, false},
    {"DateLessThanEquals", operator_kind::date, comparison::less_equal, false, false},
    {"DateGreaterThan", operator_kind::date, comparison::greater, false, false},
    {"DateGreaterThanEquals", operator_kind::date, comparison::greater_equal, false, false},
    {"Bool", operator_kind::boolean, comparison::equal, false, true},
    {"BinaryEquals", operator_kind::binary_equals, comparison::equal, false, false},
    {"IpAddress", operator_kind::ip_address, comparison::equal, false, false},
    {"NotIpAddress", operator_kind::ip_address, comparison::equal, true, false},
    // IAM documents ArnEquals and ArnLike as the same operator (both take wildcards).
    {"ArnEquals", operator_kind::arn_like, comparison::equal, false, true},
    {"ArnLike", operator_kind::arn_like, comparison::equal, false, true},
    {"ArnNotEquals", operator_kind::arn_like, comparison::equal, true, true},
    {"ArnNotLike", operator_kind::arn_like, comparison::equal, true, true},
}};

// One policy value of a condition, in the form its operator compares.
struct condition_value {
  std::string text;           // string, boolean, binary; also the source of the others
  std::vector<token> tokens;  // when has_variables
  bool has_variables = false;
  glob like;                    // StringLike without variables
  std::vector<glob> arn;        // ArnLike without variables
  double number = 0;            // Numeric
  std::int64_t time = 0;        // Date, milliseconds since the epoch
  ip_range range;               // IpAddress
  bool expects_absent = false;  // Null: "true" means the key must be missing
};

struct condition {
  operator_kind kind = operator_kind::string_equals;
  comparison compare = comparison::equal;
  bool negated = false;
  bool if_exists = false;
  set_operator set = set_operator::none;
  std::string key;
  std::vector<condition_value> values;
};

template <typename T>
bool compare_values(comparison c, T request, T policy) {
  switch (c) {
    case comparison::equal:
      return request == policy;
    case comparison::less:
      return request < policy;
    case comparison::less_equal:
      return request <= policy;
    case comparison::greater:
      return request > policy;
    case comparison::greater_equal:
      return request >= policy;
  }
  return false;
}

// Whether one request value equals / is like / is in ... any of the policy values, before the
// operator's negation. `unknown` when the request value is not of the operator's type, or when
// no value matched and some policy value named a variable the request does not have.
match_result match_any_value(const condition& c, std::string_view request,
                             const request_context& context) {
  std::optional<double> number;
  std::optional<std::int64_t> time;
  std::optional<std::array<std::uint8_t, 16>> address;
  switch (c.kind) {
    case operator_kind::numeric:
      if (!(number = parse_number(request))) return match_result::unknown;
      break;
    case operator_kind::date:
      if (!(time = parse_date(request))) return match_result::unknown;
      break;
    case operator_kind::ip_address: {
      bool is_v4 = false;
      if (!(address = parse_address(request, is_v4))) return match_result::unknown;
      break;
    }
    default:
      break;
  }
  bool unresolved = false;
  for (const auto& value : c.values) {
    bool hit = false;
    switch (c.kind) {
      case operator_kind::string_equals:
      case operator_kind::string_equals_ignore_case:
      case operator_kind::boolean:
      case operator_kind::binary_equals: {
        std::optional<std::string> resolved;
        if (value.has_variables && !(resolved = instantiate_text(value.tokens, context))) {
          unresolved = true;
          continue;
        }
        std::string_view text = resolved ? *resolved : value.text;
        hit = c.kind == operator_kind::string_equals || c.kind == operator_kind::binary_equals
                  ? request == text
                  : equals_ignore_case(request, text);
        break;
      }
      case operator_kind::string_like: {
        if (!value.has_variables) {
          hit = glob_match(value.like, request);
          break;
        }
        auto g = instantiate_glob(value.tokens, &context, false);
        if (!g) {
          unresolved = true;
          continue;
        }
        hit = glob_match(*g, request);
        break;
      }
      case operator_kind::arn_like: {
        if (!value.has_variables) {
          hit = arn_match(value.arn, request);
          break;
        }
        auto parts = instantiate_arn(value.tokens, &context);
        if (!parts) {
          unresolved = true;
          continue;
        }
        hit = arn_match(*parts, request);
        break;
      }
      case operator_kind::numeric:
        hit = compare_values(c.compare, *number, value.number);
        break;
      case operator_kind::date:
        hit = compare_values(c.compare, *time, value.time);
        break;
      case operator_kind::ip_address:
        hit = in_range(value.range, *address);
        break;
      case operator_kind::null_check:
        break;
    }
    if (hit) return match_result::match;
  }
  return unresolved ? match_result::unknown : match_result::no_match;
}

// IAM semantics, as its documentation states them:
// - a key missing from the request makes the condition false, except that negated operators
//   (StringNotEquals, NotIpAddress, ArnNotLike ...) are then true, `...IfExists` is true, and
//   `ForAllValues:` is true (an empty set satisfies "all"); `ForAnyValue:` is false;
// - `Null: true` holds when the key is missing, `Null: false` when it is present;
// - values of one key are ORed; a negated operator is the NOR (no value may match);
// - a multi-valued key without a set operator behaves as `ForAnyValue:` for positive operators
//   and as "no request value matches" for negated ones;
// - a policy variable that does not resolve: the value is skipped by positive operators, but a
//   negated operator cannot prove "no match" and is false, so the statement does not apply;
//   likewise a request value that is not a number / date / address never satisfies the operator.
bool condition_holds(const condition& c, const request_context& context) {
  auto request = context.lookup(c.key);
  bool present = request && !request->empty();
  if (c.kind == operator_kind::null_check) {
    return std::any_of(c.values.begin(), c.values.end(),
                       [&](const condition_value& v) { return v.expects_absent != present; });
  }
  if (!present) {
    if (c.if_exists) return true;
    switch (c.set) {
      case set_operator::for_all_values:
        return true;
      case set_operator::for_any_value:
        return false;
      case set_operator::none:
        return c.negated;
    }
  }
  auto satisfies = [&](const std::string& value) {
    auto r = match_any_value(c, value, context);
    if (r == match_result::unknown) return false;
    return c.negated ? r == match_result::no_match : r == match_result::match;
  };
  bool all = c.set == set_operator::for_all_values || (c.set == set_operator::none && c.negated);
  return all ? std::all_of(request->begin(), request->end(), satisfies)
             : std::any_of(request->begin(), request->end(), satisfies);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct document::statement {
  effect outcome = effect::deny;
  bool is_not_action = false;
  bool is_not_resource = false;
  std::vector<glob> actions;  // lowercased, matched ignoring case
  std::vector<glob_template> resources;
  std::vector<condition> conditions;
};

namespace {

bool statement_applies(const document::statement& s, std::string_view action,
                       std::string_view resource, const request_context& context) {
  bool action_listed = std::any_of(s.actions.begin(), s.actions.end(),
                                   [&](const glob& g) { return glob_match(g, action); });
  if (action_listed == s.is_not_action) return false;
  if (!s.is_not_resource) {
    bool listed = std::any_of(s.resources.begin(), s.resources.end(), [&](const glob_template& r) {
      return match_template(r, resource, context) == match_result::match;
    });
    if (!listed) return false;
  } else {
    // An entry that does not resolve cannot show the resource is outside the list, so the
    // statement does not apply (rather than widening to everything).
    for (const auto& r : s.resources)
      if (match_template(r, resource, context) != match_result::no_match) return false;
  }
  return std::all_of(s.conditions.begin(), s.conditions.end(),
                     [&](const condition& c) { return condition_holds(c, context); });
}

// Turns JSON into statements; the first problem becomes `error`, worded like AWS's
// MalformedPolicy messages.
class compiler {
 public:
  explicit compiler(bool variables) : variables_(variables) {}

  bool compile_statement(const json::value& v, const std::string& where, document::statement& out) {
    const auto* object = v.if_object();
    if (object == nullptr) return fail(where + " must be an object");
    const json::value* effect_value = nullptr;
    const json::value* action = nullptr;
    const json::value* not_action = nullptr;
    const json::value* resource = nullptr;
    const json::value* not_resource = nullptr;
    const json::value* condition_block = nullptr;
    for (const auto& [key, value] : *object) {
      if (key == "Sid") {
        if (!value.is_string()) return fail(where + ".Sid must be a string");
      } else if (key == "Effect") {
        effect_value = &value;
      } else if (key == "Action") {
        action = &value;
      } else if (key == "NotAction") {
        not_action = &value;
      } else if (key == "Resource") {
        resource = &value;
      } else if (key == "NotResource") {
        not_resource = &value;
      } else if (key == "Condition") {
        condition_block = &value;
      } else {
        return fail(where + " has an unknown element \"" + std::string(key) + "\"");
      }
    }
    if (effect_value == nullptr) return fail(where + " has no Effect");
    const auto* effect_text = effect_value->if_string();
    if (effect_text != nullptr && *effect_text == "Allow")
      out.outcome = effect::allow;
    else if (effect_text != nullptr && *effect_text == "Deny")
      out.outcome = effect::deny;
    else
      return fail(where + ".Effect must be \"Allow\" or \"Deny\"");

    if (action != nullptr && not_action != nullptr)
      return fail(where + " has both Action and NotAction");
    if (action == nullptr && not_action == nullptr)
      return fail(where + " has no Action or NotAction");
    out.is_not_action = not_action != nullptr;
    std::vector<std::string> actions;
    auto action_name = where + (out.is_not_action ? ".NotAction" : ".Action");
    if (!strings(out.is_not_action ? *not_action : *action, action_name, actions)) return false;
    for (const auto& a : actions) {
      if (a != "*" && a.find(':') == std::string::npos)
        return fail(action_name + " \"" + a + "\" is not \"*\" or \"service:action\"");
      out.actions.push_back(*instantiate_glob(tokenize(a, false, true), nullptr, true));
    }

    if (resource != nullptr && not_resource != nullptr)
      return fail(where + " has both Resource and NotResource");
    if (resource == nullptr && not_resource == nullptr)
      return fail(where + " has no Resource or NotResource");
    out.is_not_resource = not_resource != nullptr;
    std::vector<std::string> resources;
    auto resource_name = where + (out.is_not_resource ? ".NotResource" : ".Resource");
    if (!strings(out.is_not_resource ? *not_resource : *resource, resource_name, resources))
      return false;
    for (const auto& r : resources) {
      if (r.front() != '*' && r.compare(0, 4, "arn:") != 0)
        return fail(resource_name + " \"" + r + "\" is not \"*\" or an ARN");
      out.resources.push_back(make_glob_template(r, variables_));
    }

    if (condition_block != nullptr && !compile_conditions(*condition_block, where, out))
      return false;
    return true;
  }

  std::string error;

 private:
  bool fail(std::string message) {
    error = std::move(message);
    return false;
  }

  // A string or a non-empty array of non-empty strings.
  bool strings(const json::value& v, const std::string& name, std::vector<std::string>& out) {
    if (const auto* s = v.if_string()) {
      if (s->empty()) return fail(name + " must not be empty");
      out.emplace_back(*s);
      return true;
    }
    const auto* array = v.if_array();
    if (array == nullptr) return fail(name + " must be a string or an array of strings");
    if (array->empty()) return fail(name + " must not be an empty array");
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* s = (*array)[i].if_string();
      if (s == nullptr) return fail(name + "[" + std::to_string(i) + "] must be a string");
      if (s->empty()) return fail(name + "[" + std::to_string(i) + "] must not be empty");
      out.emplace_back(*s);
    }
    return true;
  }

  // Condition values may be strings, numbers or booleans (`"Bool": {"k": true}`).
  static std::optional<std::string> scalar_text(const json::value& v) {
    if (const auto* s = v.if_string()) return std::string(*s);
    if (const auto* b = v.if_bool()) return std::string(*b ? "true" : "false");
    if (v.is_number()) return json::serialize(v);
    return std::nullopt;
  }

  bool compile_conditions(const json::value& v, const std::string& where,
                          document::statement& out) {
    const auto* object = v.if_object();
    if (object == nullptr) return fail(where + ".Condition must be an object");
    for (const auto& [name, block] : *object) {
      auto op_name = where + ".Condition." + std::string(name);
      condition prototype;
      std::string_view rest = name;
      if (rest.substr(0, 13) == "ForAllValues:") {
        prototype.set = set_operator::for_all_values;
        rest.remove_prefix(13);
      } else if (rest.substr(0, 12) == "ForAnyValue:") {
        prototype.set = set_operator::for_any_value;
        rest.remove_prefix(12);
      }
      const operator_spec* spec = nullptr;
      if (rest == "Null") {
        prototype.kind = operator_kind::null_check;
      } else {
        constexpr std::string_view if_exists = "IfExists";
        if (rest.size() > if_exists.size() &&
            rest.substr(rest.size() - if_exists.size()) == if_exists) {
          prototype.if_exists = true;
          rest.remove_suffix(if_exists.size());
        }
        for (const auto& candidate : operators)
          if (candidate.name == rest) spec = &candidate;
        if (spec == nullptr)
          return fail(where + ".Condition has an unknown operator \"" + std::string(name) + "\"");
        prototype.kind = spec->kind;
        prototype.compare = spec->compare;
        prototype.negated = spec->negated;
      }
      const auto* keys = block.if_object();
      if (keys == nullptr) return fail(op_name + " must be an object of condition keys");
      for (const auto& [key, values] : *keys) {
        condition c = prototype;
        c.key = std::string(key);
        auto value_name = op_name + "." + c.key;
        if (c.key.empty()) return fail(op_name + " has an empty condition key");
        std::vector<const json::value*> items;
        if (const auto* array = values.if_array()) {
          if (array->empty()) return fail(value_name + " must not be an empty array");
          for (const auto& item : *array) items.push_back(&item);
        } else {
          items.push_back(&values);
        }
        for (const auto* item : items) {
          auto text = scalar_text(*item);
          if (!text)
            return fail(value_name + " must be a string, number or boolean, or an array of them");
          condition_value cv;
          if (!compile_value(c, spec != nullptr && spec->variables && variables_, *text, value_name,
                             cv))
            return false;
          c.values.push_back(std::move(cv));
        }
        out.conditions.push_back(std::move(c));
      }
    }
    return true;
  }

  bool compile_value(const condition& c, bool variables, std::string text, const std::string& name,
                     condition_value& out) {
    auto invalid = [&](std::string_view what) {
      return fail(name + " value \"" + text + "\" is not " + std::string(what));
    };
    switch (c.kind) {
      case operator_kind::string_equals:
      case operator_kind::string_equals_ignore_case:
      case operator_kind::boolean:
      case operator_kind::binary_equals: {
        auto tokens = tokenize(text, variables, false);
        out.has_variables = has_variables(tokens);
        if (out.has_variables)
          out.tokens = std::move(tokens);
        else
          for (const auto& t : tokens) out.text += t.text;
        return true;
      }
      case operator_kind::string_like:
      case operator_kind::arn_like: {
        auto tokens = tokenize(text, variables, true);
        out.has_variables = has_variables(tokens);
        if (out.has_variables)
          out.tokens = std::move(tokens);
        else if (c.kind == operator_kind::string_like)
          out.like = *instantiate_glob(tokens, nullptr, false);
        else
          out.arn = *instantiate_arn(tokens, nullptr);
        return true;
      }
      case operator_kind::numeric: {
        auto number = parse_number(text);
        if (!number) return invalid("a number");
        out.number = *number;
        return true;
      }
      case operator_kind::date: {
        auto time = parse_date(text);
        if (!time) return invalid("a date (ISO 8601 or epoch seconds)");
        out.time = *time;
        return true;
      }
      case operator_kind::ip_address: {
        auto range = parse_cidr(text);
        if (!range) return invalid("an IP address or CIDR block");
        out.range = *range;
        return true;
      }
      case operator_kind::null_check:
        if (equals_ignore_case(text, "true"))
          out.expects_absent = true;
        else if (!equals_ignore_case(text, "false"))
          return invalid("\"true\" or \"false\"");
        return true;
    }
    return true;
  }

  bool variables_;
};

// AWS IoT's size limit counts characters other than whitespace; a UTF-8 sequence is one.
std::size_t count_characters(std::string_view text) {
  std::size_t count = 0;
  for (char c : text)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && !is_continuation(c)) ++count;
  return count;
}

parse_error malformed(std::string_view detail) {
  return parse_error{"Policy document is malformed: " + std::string(detail)};
}

}  // namespace

document::~document() = default;

std::variant<document, parse_error> document::parse(std::string_view text) {
  if (count_characters(text) > max_policy_characters)
    return parse_error{"Policy document is too large: it exceeds " +
                       std::to_string(max_policy_characters) + " characters, excluding whitespace"};

  // Boost.JSON's depth limit (32 by default) keeps hostile nesting off the stack.
  json::parser parser;
  boost::system::error_code ec;
  auto consumed = parser.write(text.data(), text.size(), ec);
  if (ec)
    return malformed("invalid JSON at offset " + std::to_string(consumed) + ": " + ec.message());
  auto root = parser.release();

  const auto* object = root.if_object();
  if (object == nullptr) return malformed("the document must be a JSON object");
  // Without a Version IAM applies 2008-10-17, where `${...}` is plain text.
  bool variables = false;
  const json::value* statements = nullptr;
  for (const auto& [key, value] : *object) {
    if (key == "Version") {
      const auto* version = value.if_string();
      if (version != nullptr && *version == "2012-10-17")
        variables = true;
      else if (version == nullptr || *version != "2008-10-17")
        return malformed("Version must be \"2012-10-17\" or \"2008-10-17\"");
    } else if (key == "Id") {
      if (!value.is_string()) return malformed("Id must be a string");
    } else if (key == "Statement") {
      statements = &value;
    } else {
      return malformed("unknown element \"" + std::string(key) + "\"");
    }
  }
  if (statements == nullptr) return malformed("the document has no Statement");

  compiler c(variables);
  auto compiled = std::make_shared<std::vector<statement>>();
  if (statements->is_object()) {
    if (!c.compile_statement(*statements, "Statement", compiled->emplace_back()))
      return malformed(c.error);
  } else if (const auto* array = statements->if_array()) {
    if (array->empty()) return malformed("Statement must not be an empty array");
    for (std::size_t i = 0; i < array->size(); ++i) {
      auto where = "Statement[" + std::to_string(i) + "]";
      if (!c.compile_statement((*array)[i], where, compiled->emplace_back()))
        return malformed(c.error);
    }
  } else {
    return malformed("Statement must be an object or an array of objects");
  }
  document d;
  d.statements_ = std::move(compiled);
  return d;
}

decision document::evaluate(std::string_view action, std::string_view resource,
                            const request_context& context) const {
  if (!statements_) return decision::not_applicable;  // moved-from
  bool allowed = false;
  for (const auto& s : *statements_) {
    // Once allowed, only a Deny can change the answer.
    if (allowed && s.outcome == effect::allow) continue;
    if (!statement_applies(s, action, resource, context)) continue;
    if (s.outcome == effect::deny) return decision::deny;
    allowed = true;
  }
  return allowed ? decision::allow : decision::not_applicable;
}

decision evaluate_all(const std::vector<const document*>& documents, std::string_view action,
                      std::string_view resource, const request_context& context) {
  bool allowed = false;
  for (const auto* d : documents) {
    if (d == nullptr) continue;
    switch (d->evaluate(action, resource, context)) {
      case decision::deny:
        return decision::deny;
      case decision::allow:
        allowed = true;
        break;
      case decision::not_applicable:
        break;
    }
  }
  return allowed ? decision::allow : decision::not_applicable;
}

std::optional<std::vector<std::string>> simple_context::lookup(std::string_view key) const {
  std::optional<std::vector<std::string>> found;
  for (const auto& [k, v] : values_) {
    if (!equals_ignore_case(k, key)) continue;
    if (!found) found.emplace();
    found->push_back(v);
  }
  return found;
}

}  // namespace nimbus::policy
