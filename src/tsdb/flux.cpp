// Flux's lexer, parser and compiler (flux.hpp). The grammar and its precedence follow flux's
// parser (libflux/flux-core/src/parser): or < and < not/exists < comparison < + - < * / % < ^ <
// |> < unary + - < postfix (call, member, index); a '/' is a regex where an operand starts and a
// division elsewhere. Unlike Flux's parser, which recovers and collects errors, this one stops at
// the first, reported as Flux words it: "expected RPAREN, got EOF" on the node being built (from
// its first byte to the end of the token that did not fit), "expected COLON, got INT (5) at
// 1:12" for a missing token inside it.
//
// The compiler evaluates what does not depend on a row (literals, options, extern variables,
// now(), conversions, arithmetic on constants) and turns the rest into operations; a stream is
// only ever `from(bucket:) |> ...`. Functions are declared once in `builtins` below, which
// drives argument checks ("missing required argument fn", "found unexpected argument colunm").

#include "tsdb/flux.hpp"

#include "tsdb/go_format.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <system_error>
#include <type_traits>

namespace nimbus::tsdb::flux {
namespace {

constexpr std::int64_t ns_per_second = 1'000'000'000;
constexpr std::int64_t ns_per_day = 86'400 * ns_per_second;
// `inf` (window(every: inf)): a duration longer than any range.
constexpr std::int64_t infinite_ns = std::numeric_limits<std::int64_t>::max();

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;  // UTF-8 letters, as Flux's identifiers allow
}

// ---------------------------------------------------------------------------------------------
// Calendar (Howard Hinnant's days_from_civil / civil_from_days)

std::int64_t days_from_civil(std::int64_t year, std::int64_t month, std::int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const std::int64_t year_of_era = year - era * 400;
  const std::int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const std::int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146'097 + day_of_era - 719'468;
}

struct civil_date {
  std::int64_t year = 1970;
  std::int64_t month = 1;
  std::int64_t day = 1;
};

civil_date civil_from_days(std::int64_t days) {
  const std::int64_t shifted = days + 719'468;
  const std::int64_t era = (shifted >= 0 ? shifted : shifted - 146'096) / 146'097;
  const std::int64_t day_of_era = shifted - era * 146'097;
  const std::int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36'524 - day_of_era / 146'096) / 365;
  const std::int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const std::int64_t month_index = (5 * day_of_year + 2) / 153;
  civil_date out;
  out.day = day_of_year - (153 * month_index + 2) / 5 + 1;
  out.month = month_index < 10 ? month_index + 3 : month_index - 9;
  out.year = year_of_era + era * 400 + (out.month <= 2 ? 1 : 0);
  return out;
}

bool is_leap(std::int64_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

std::int64_t days_in_month(std::int64_t year, std::int64_t month) {
  static constexpr std::array<std::int64_t, 12> lengths{31, 28, 31, 30, 31, 30,
                                                        31, 31, 30, 31, 30, 31};
  if (month == 2 && is_leap(year)) return 29;
  return lengths[static_cast<std::size_t>(month - 1)];
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// ---------------------------------------------------------------------------------------------
// Scalars: comparison and arithmetic, shared by constants and rows.

bool is_number(const scalar& s) {
  return std::holds_alternative<std::int64_t>(s) || std::holds_alternative<std::uint64_t>(s) ||
         std::holds_alternative<double>(s);
}

bool is_null(const scalar& s) {
  return std::holds_alternative<std::monostate>(s);
}

template <typename T>
int three_way(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Orders two non-null scalars: numbers of any kind together, strings, times, booleans. nullopt
// when they are of kinds Flux does not compare (a string with a number) or one is NaN.
std::optional<int> compare_scalars(const scalar& a, const scalar& b) {
  if (is_number(a) && is_number(b)) {
    if (const auto* x = std::get_if<std::int64_t>(&a)) {
      if (const auto* y = std::get_if<std::int64_t>(&b)) return three_way(*x, *y);
      if (const auto* y = std::get_if<std::uint64_t>(&b))
        return *x < 0 ? -1 : three_way(static_cast<std::uint64_t>(*x), *y);
    }
    if (const auto* x = std::get_if<std::uint64_t>(&a)) {
      if (const auto* y = std::get_if<std::uint64_t>(&b)) return three_way(*x, *y);
      if (const auto* y = std::get_if<std::int64_t>(&b))
        return *y < 0 ? 1 : three_way(*x, static_cast<std::uint64_t>(*y));
    }
    const auto as_double = [](const scalar& s) {
      if (const auto* i = std::get_if<std::int64_t>(&s)) return static_cast<double>(*i);
      if (const auto* u = std::get_if<std::uint64_t>(&s)) return static_cast<double>(*u);
      return std::get<double>(s);
    };
    const double x = as_double(a);
    const double y = as_double(b);
    if (std::isnan(x) || std::isnan(y)) return std::nullopt;
    return three_way(x, y);
  }
  if (a.index() != b.index()) return std::nullopt;
  if (const auto* x = std::get_if<std::string>(&a)) return three_way(*x, std::get<std::string>(b));
  if (const auto* x = std::get_if<timestamp>(&a))
    return three_way(x->ns, std::get<timestamp>(b).ns);
  if (const auto* x = std::get_if<bool>(&a)) return three_way(*x, std::get<bool>(b));
  return std::nullopt;
}

std::string mismatch(const scalar& a, const scalar& b) {
  return std::string(type_name(a)) + " != " + std::string(type_name(b));
}

// a <op> b for + - * / %, with Flux's rules: both operands of one type (no implicit
// conversion), a null operand gives null, strings concatenate with +. The result or the error
// text (without position).
std::variant<scalar, std::string> arithmetic(operator_kind op, const scalar& a, const scalar& b) {
  if (is_null(a) || is_null(b)) return scalar{};
  if (a.index() != b.index()) return mismatch(a, b);
  const std::string_view symbol = name_of(op);
  if (const auto* x = std::get_if<std::int64_t>(&a)) {
    const std::int64_t y = std::get<std::int64_t>(b);
    std::int64_t out = 0;
    switch (op) {
      case operator_kind::add:
        if (__builtin_add_overflow(*x, y, &out)) return std::string("integer overflow");
        return scalar{out};
      case operator_kind::subtract:
        if (__builtin_sub_overflow(*x, y, &out)) return std::string("integer overflow");
        return scalar{out};
      case operator_kind::multiply:
        if (__builtin_mul_overflow(*x, y, &out)) return std::string("integer overflow");
        return scalar{out};
      case operator_kind::divide:
      case operator_kind::modulo:
        if (y == 0) return std::string("cannot divide by zero");
        if (*x == std::numeric_limits<std::int64_t>::min() && y == -1)
          return std::string("integer overflow");
        return scalar{op == operator_kind::divide ? *x / y : *x % y};
      default:
        break;
    }
  } else if (const auto* ux = std::get_if<std::uint64_t>(&a)) {
    const std::uint64_t y = std::get<std::uint64_t>(b);
    std::uint64_t out = 0;
    switch (op) {
      case operator_kind::add:
        if (__builtin_add_overflow(*ux, y, &out)) return std::string("integer overflow");
        return scalar{out};
      case operator_kind::subtract:
        if (__builtin_sub_overflow(*ux, y, &out)) return std::string("integer overflow");
        return scalar{out};
      case operator_kind::multiply:
        if (__builtin_mul_overflow(*ux, y, &out)) return std::string("integer overflow");
        return scalar{out};
      case operator_kind::divide:
      case operator_kind::modulo:
        if (y == 0) return std::string("cannot divide by zero");
        return scalar{op == operator_kind::divide ? *ux / y : *ux % y};
      default:
        break;
    }
  } else if (const auto* fx = std::get_if<double>(&a)) {
    const double y = std::get<double>(b);
    switch (op) {
      case operator_kind::add:
        return scalar{*fx + y};
      case operator_kind::subtract:
        return scalar{*fx - y};
      case operator_kind::multiply:
        return scalar{*fx * y};
      case operator_kind::divide:
        return scalar{*fx / y};
      case operator_kind::modulo:
        return scalar{std::fmod(*fx, y)};
      default:
        break;
    }
  } else if (const auto* sx = std::get_if<std::string>(&a)) {
    if (op == operator_kind::add) return scalar{*sx + std::get<std::string>(b)};
  }
  return "unsupported operation " + std::string(type_name(a)) + " " + std::string(symbol) + " " +
         std::string(type_name(b));
}

// a <op> b for the comparisons: a bool, null when an operand is null, or the error text.
std::variant<scalar, std::string> comparison(operator_kind op, const scalar& a, const scalar& b) {
  if (is_null(a) || is_null(b)) return scalar{};
  const auto order = compare_scalars(a, b);
  if (!order) {
    // NaN compares false (not equal: true), as IEEE and Go have it.
    const auto is_nan = [](const scalar& s) {
      const auto* d = std::get_if<double>(&s);
      return d != nullptr && std::isnan(*d);
    };
    if (is_number(a) && is_number(b) && (is_nan(a) || is_nan(b)))
      return scalar{op == operator_kind::not_equal};
    return mismatch(a, b);
  }
  const bool is_ordered_kind = !std::holds_alternative<bool>(a);
  switch (op) {
    case operator_kind::equal:
      return scalar{*order == 0};
    case operator_kind::not_equal:
      return scalar{*order != 0};
    case operator_kind::less:
      if (is_ordered_kind) return scalar{*order < 0};
      break;
    case operator_kind::less_equal:
      if (is_ordered_kind) return scalar{*order <= 0};
      break;
    case operator_kind::greater:
      if (is_ordered_kind) return scalar{*order > 0};
      break;
    case operator_kind::greater_equal:
      if (is_ordered_kind) return scalar{*order >= 0};
      break;
    default:
      break;
  }
  return "unsupported comparison " + std::string(type_name(a)) + " " + std::string(name_of(op)) +
         " " + std::string(type_name(b));
}

std::variant<scalar, std::string> negation(const scalar& a) {
  if (is_null(a)) return scalar{};
  if (const auto* i = std::get_if<std::int64_t>(&a)) {
    if (*i == std::numeric_limits<std::int64_t>::min()) return std::string("integer overflow");
    return scalar{-*i};
  }
  if (const auto* d = std::get_if<double>(&a)) return scalar{-*d};
  return "unsupported operation - " + std::string(type_name(a));
}

operator_kind operator_of(row_op op) {
  switch (op) {
    case row_op::equal:
      return operator_kind::equal;
    case row_op::not_equal:
      return operator_kind::not_equal;
    case row_op::less:
      return operator_kind::less;
    case row_op::less_equal:
      return operator_kind::less_equal;
    case row_op::greater:
      return operator_kind::greater;
    case row_op::greater_equal:
      return operator_kind::greater_equal;
    case row_op::add:
      return operator_kind::add;
    case row_op::subtract:
      return operator_kind::subtract;
    case row_op::multiply:
      return operator_kind::multiply;
    case row_op::divide:
      return operator_kind::divide;
    case row_op::modulo:
      return operator_kind::modulo;
    default:
      return operator_kind::none;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public helpers

std::string to_string(const location& where) {
  return std::to_string(where.start.line) + ":" + std::to_string(where.start.column) + "-" +
         std::to_string(where.end.line) + ":" + std::to_string(where.end.column);
}

error compilation_error(const location& where, std::string_view what) {
  return error{error_code::invalid,
               "compilation failed: error @" + to_string(where) + ": " + std::string(what)};
}

std::string_view type_name(const scalar& value) {
  switch (value.index()) {
    case 1:
      return "bool";
    case 2:
      return "int";
    case 3:
      return "uint";
    case 4:
      return "float";
    case 5:
      return "string";
    case 6:
      return "time";
    default:
      return "null";
  }
}

std::optional<duration> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  duration out;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == start || i == text.size()) return std::nullopt;
    std::int64_t magnitude = 0;
    const auto [end, failure] = std::from_chars(text.data() + start, text.data() + i, magnitude);
    if (failure != std::errc() || end != text.data() + i) return std::nullopt;
    const std::string_view rest = text.substr(i);
    std::int64_t months = 0;
    std::int64_t unit_ns = 0;
    std::size_t unit_size = 1;
    if (rest.starts_with("mo")) {
      months = 1;
      unit_size = 2;
    } else if (rest.starts_with("ms")) {
      unit_ns = 1'000'000;
      unit_size = 2;
    } else if (rest.starts_with("us")) {
      unit_ns = 1'000;
      unit_size = 2;
    } else if (rest.starts_with("\xC2\xB5s")) {  // µs
      unit_ns = 1'000;
      unit_size = 3;
    } else if (rest.starts_with("ns")) {
      unit_ns = 1;
      unit_size = 2;
    } else if (rest[0] == 'y') {
      months = 12;
    } else if (rest[0] == 'w') {
      unit_ns = 7 * ns_per_day;
    } else if (rest[0] == 'd') {
      unit_ns = ns_per_day;
    } else if (rest[0] == 'h') {
      unit_ns = 3600 * ns_per_second;
    } else if (rest[0] == 'm') {
      unit_ns = 60 * ns_per_second;
    } else if (rest[0] == 's') {
      unit_ns = ns_per_second;
    } else {
      return std::nullopt;
    }
    std::int64_t product = 0;
    if (months != 0) {
      if (__builtin_mul_overflow(magnitude, months, &product) ||
          __builtin_add_overflow(out.months, product, &out.months))
        return std::nullopt;
    } else if (__builtin_mul_overflow(magnitude, unit_ns, &product) ||
               __builtin_add_overflow(out.nanoseconds, product, &out.nanoseconds)) {
      return std::nullopt;
    }
    i += unit_size;
  }
  return out;
}

std::optional<std::int64_t> add_duration(std::int64_t ns, const duration& d, int sign) {
  std::int64_t months = 0;
  std::int64_t nanoseconds = 0;
  if (__builtin_mul_overflow(d.months, static_cast<std::int64_t>(sign), &months) ||
      __builtin_mul_overflow(d.nanoseconds, static_cast<std::int64_t>(sign), &nanoseconds))
    return std::nullopt;
  std::int64_t out = ns;
  if (months != 0) {
    // Far outside int64 nanoseconds (±292 years) either way: refuse before the calendar math.
    if (months > 12 * 1000 || months < -12 * 1000) return std::nullopt;
    const std::int64_t days = floor_div(ns, ns_per_day);
    const std::int64_t time_of_day = ns - days * ns_per_day;
    civil_date date = civil_from_days(days);
    const std::int64_t month_index = date.year * 12 + (date.month - 1) + months;
    date.year = floor_div(month_index, 12);
    date.month = month_index - date.year * 12 + 1;
    date.day = std::min(date.day, days_in_month(date.year, date.month));
    const std::int64_t new_days = days_from_civil(date.year, date.month, date.day);
    if (__builtin_mul_overflow(new_days, ns_per_day, &out) ||
        __builtin_add_overflow(out, time_of_day, &out))
      return std::nullopt;
  }
  if (__builtin_add_overflow(out, nanoseconds, &out)) return std::nullopt;
  return out;
}

std::optional<std::int64_t> parse_time(std::string_view text) {
  const auto number = [&](std::size_t at, std::size_t width) -> std::optional<std::int64_t> {
    if (at + width > text.size()) return std::nullopt;
    std::int64_t out = 0;
    for (std::size_t i = at; i < at + width; ++i) {
      if (!is_digit(text[i])) return std::nullopt;
      out = out * 10 + (text[i] - '0');
    }
    return out;
  };
  const auto year = number(0, 4);
  const auto month = number(5, 2);
  const auto day = number(8, 2);
  if (!year || !month || !day || text.size() < 10 || text[4] != '-' || text[7] != '-')
    return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > days_in_month(*year, *month))
    return std::nullopt;
  std::int64_t seconds = days_from_civil(*year, *month, *day) * 86'400;
  std::int64_t fraction = 0;
  if (text.size() > 10) {
    if (text[10] != 'T' && text[10] != 't') return std::nullopt;
    const auto hour = number(11, 2);
    const auto minute = number(14, 2);
    const auto second = number(17, 2);
    if (!hour || !minute || !second || text.size() < 20 || text[13] != ':' || text[16] != ':')
      return std::nullopt;
    if (*hour > 23 || *minute > 59 || *second > 59) return std::nullopt;
    seconds += *hour * 3600 + *minute * 60 + *second;
    std::size_t at = 19;
    if (text[at] == '.') {
      ++at;
      const std::size_t first = at;
      std::int64_t scale = 100'000'000;
      while (at < text.size() && is_digit(text[at])) {
        if (at - first >= 9) return std::nullopt;
        fraction += (text[at] - '0') * scale;
        scale /= 10;
        ++at;
      }
      if (at == first) return std::nullopt;
    }
    if (at >= text.size()) return std::nullopt;  // Flux wants the offset
    if (text[at] == 'Z' || text[at] == 'z') {
      if (at + 1 != text.size()) return std::nullopt;
    } else if (text[at] == '+' || text[at] == '-') {
      const auto offset_hours = number(at + 1, 2);
      const auto offset_minutes = number(at + 4, 2);
      if (!offset_hours || !offset_minutes || at + 6 != text.size() || text[at + 3] != ':' ||
          *offset_hours > 23 || *offset_minutes > 59)
        return std::nullopt;
      const std::int64_t offset = *offset_hours * 3600 + *offset_minutes * 60;
      seconds += text[at] == '+' ? -offset : offset;
    } else {
      return std::nullopt;
    }
  }
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(seconds, ns_per_second, &ns) ||
      __builtin_add_overflow(ns, fraction, &ns))
    return std::nullopt;
  return ns;
}

void append_rfc3339(std::string& out, std::int64_t ns) {
  go::append_rfc3339(out, ns);
}

void append_float(std::string& out, double value) {
  go::append_float(out, value);
}

std::variant<scalar, std::string> convert(conversion to, const scalar& from) {
  using outcome = std::variant<scalar, std::string>;
  if (is_null(from)) return scalar{};
  const auto ok = [](scalar s) -> outcome { return s; };
  const auto refuse = [&](std::string_view target) -> outcome {
    std::string text = "cannot convert " + std::string(type_name(from));
    if (const auto* s = std::get_if<std::string>(&from)) text += " \"" + *s + "\"";
    return text + " to " + std::string(target);
  };
  const auto* as_float = std::get_if<double>(&from);
  const auto* as_int = std::get_if<std::int64_t>(&from);
  const auto* as_uint = std::get_if<std::uint64_t>(&from);
  const auto* as_bool = std::get_if<bool>(&from);
  const auto* as_string = std::get_if<std::string>(&from);
  const auto* as_time = std::get_if<timestamp>(&from);
  switch (to) {
    case conversion::to_float:
      if (as_float != nullptr) return ok(*as_float);
      if (as_int != nullptr) return ok(static_cast<double>(*as_int));
      if (as_uint != nullptr) return ok(static_cast<double>(*as_uint));
      if (as_bool != nullptr) return ok(*as_bool ? 1.0 : 0.0);
      if (as_string != nullptr) {
        const std::string& s = *as_string;
        if (s == "NaN") return ok(std::numeric_limits<double>::quiet_NaN());
        if (s == "+Inf" || s == "Inf") return ok(std::numeric_limits<double>::infinity());
        if (s == "-Inf") return ok(-std::numeric_limits<double>::infinity());
        double parsed = 0;
        const char* first = s.data();
        if (!s.empty() && *first == '+') ++first;
        const auto [end, failure] = std::from_chars(first, s.data() + s.size(), parsed);
        if (failure == std::errc() && end == s.data() + s.size() && !s.empty()) return ok(parsed);
      }
      return refuse("float");
    case conversion::to_int:
      if (as_int != nullptr) return ok(*as_int);
      if (as_float != nullptr) {
        // Go's int64(f): truncation toward zero; what does not fit is refused.
        if (std::isnan(*as_float) || *as_float >= 9.2233720368547758e18 ||
            *as_float < -9.2233720368547758e18)
          return refuse("int");
        return ok(static_cast<std::int64_t>(*as_float));
      }
      if (as_uint != nullptr) {
        if (*as_uint > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          return refuse("int");
        return ok(static_cast<std::int64_t>(*as_uint));
      }
      if (as_bool != nullptr) return ok(std::int64_t{*as_bool ? 1 : 0});
      if (as_time != nullptr) return ok(as_time->ns);
      if (as_string != nullptr) {
        const std::string& s = *as_string;
        std::int64_t parsed = 0;
        const auto [end, failure] = std::from_chars(s.data(), s.data() + s.size(), parsed);
        if (failure == std::errc() && end == s.data() + s.size() && !s.empty()) return ok(parsed);
      }
      return refuse("int");
    case conversion::to_uint:
      if (as_uint != nullptr) return ok(*as_uint);
      if (as_int != nullptr) {
        if (*as_int < 0) return refuse("uint");
        return ok(static_cast<std::uint64_t>(*as_int));
      }
      if (as_float != nullptr) {
        if (std::isnan(*as_float) || *as_float < 0 || *as_float >= 1.8446744073709552e19)
          return refuse("uint");
        return ok(static_cast<std::uint64_t>(*as_float));
      }
      if (as_bool != nullptr) return ok(std::uint64_t{*as_bool ? 1U : 0U});
      if (as_time != nullptr) {
        if (as_time->ns < 0) return refuse("uint");
        return ok(static_cast<std::uint64_t>(as_time->ns));
      }
      if (as_string != nullptr) {
        const std::string& s = *as_string;
        std::uint64_t parsed = 0;
        const auto [end, failure] = std::from_chars(s.data(), s.data() + s.size(), parsed);
        if (failure == std::errc() && end == s.data() + s.size() && !s.empty()) return ok(parsed);
      }
      return refuse("uint");
    case conversion::to_string: {
      std::string text;
      if (as_string != nullptr) {
        text = *as_string;
      } else if (as_float != nullptr) {
        append_float(text, *as_float);
      } else if (as_int != nullptr) {
        text = std::to_string(*as_int);
      } else if (as_uint != nullptr) {
        text = std::to_string(*as_uint);
      } else if (as_bool != nullptr) {
        text = *as_bool ? "true" : "false";
      } else if (as_time != nullptr) {
        append_rfc3339(text, as_time->ns);
      }
      return ok(std::move(text));
    }
    case conversion::to_bool:
      if (as_bool != nullptr) return ok(*as_bool);
      if (as_string != nullptr && (*as_string == "true" || *as_string == "false"))
        return ok(*as_string == "true");
      if (as_int != nullptr && (*as_int == 0 || *as_int == 1)) return ok(*as_int == 1);
      if (as_uint != nullptr && *as_uint <= 1) return ok(*as_uint == 1);
      if (as_float != nullptr && (*as_float == 0.0 || *as_float == 1.0))
        return ok(*as_float == 1.0);
      return refuse("bool");
    case conversion::to_time:
      if (as_time != nullptr) return ok(*as_time);
      if (as_int != nullptr) return ok(timestamp{*as_int});
      if (as_uint != nullptr) {
        if (*as_uint > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          return refuse("time");
        return ok(timestamp{static_cast<std::int64_t>(*as_uint)});
      }
      if (as_string != nullptr) {
        if (const auto ns = parse_time(*as_string)) return ok(timestamp{*ns});
      }
      return refuse("time");
  }
  return refuse("a known type");
}

std::string_view name_of(operator_kind op) {
  switch (op) {
    case operator_kind::none:
      return "";
    case operator_kind::add:
    case operator_kind::plus:
      return "+";
    case operator_kind::subtract:
    case operator_kind::negate:
      return "-";
    case operator_kind::multiply:
      return "*";
    case operator_kind::divide:
      return "/";
    case operator_kind::modulo:
      return "%";
    case operator_kind::power:
      return "^";
    case operator_kind::equal:
      return "==";
    case operator_kind::not_equal:
      return "!=";
    case operator_kind::less:
      return "<";
    case operator_kind::less_equal:
      return "<=";
    case operator_kind::greater:
      return ">";
    case operator_kind::greater_equal:
      return ">=";
    case operator_kind::regex_match:
      return "=~";
    case operator_kind::regex_not_match:
      return "!~";
    case operator_kind::logical_and:
      return "and";
    case operator_kind::logical_or:
      return "or";
    case operator_kind::logical_not:
      return "not";
    case operator_kind::exists:
      return "exists";
  }
  return "";
}

bool is_selector(aggregate_kind kind) {
  return kind == aggregate_kind::min || kind == aggregate_kind::max ||
         kind == aggregate_kind::first || kind == aggregate_kind::last ||
         kind == aggregate_kind::median_selector;
}

std::string_view name_of(aggregate_kind kind) {
  switch (kind) {
    case aggregate_kind::mean:
      return "mean";
    case aggregate_kind::sum:
      return "sum";
    case aggregate_kind::count:
      return "count";
    case aggregate_kind::median:
    case aggregate_kind::median_selector:
      return "median";
    case aggregate_kind::stddev:
      return "stddev";
    case aggregate_kind::spread:
      return "spread";
    case aggregate_kind::min:
      return "min";
    case aggregate_kind::max:
      return "max";
    case aggregate_kind::first:
      return "first";
    case aggregate_kind::last:
      return "last";
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Row evaluation

namespace {

row_result known(scalar value) {
  row_result out;
  out.value = std::move(value);
  return out;
}

row_result unknown() {
  row_result out;
  out.outcome = row_result::state::unknown;
  return out;
}

row_result failed(const location& where, std::string_view what) {
  row_result out;
  out.outcome = row_result::state::failed;
  out.error = compilation_error(where, what).message;
  return out;
}

row_result from_outcome(std::variant<scalar, std::string> outcome, const location& where) {
  if (auto* text = std::get_if<std::string>(&outcome)) return failed(where, *text);
  return known(std::move(std::get<scalar>(outcome)));
}

// A logical operand: true, false, null, or unknown; anything else is a type error.
row_result logical_operand(row_result r, const location& where) {
  if (r.outcome != row_result::state::known) return r;
  if (is_null(r.value) || std::holds_alternative<bool>(r.value)) return r;
  return failed(where, "expected bool but found " + std::string(type_name(r.value)));
}

bool is_true(const row_result& r) {
  const auto* b = std::get_if<bool>(&r.value);
  return r.outcome == row_result::state::known && b != nullptr && *b;
}

bool is_false(const row_result& r) {
  const auto* b = std::get_if<bool>(&r.value);
  return r.outcome == row_result::state::known && b != nullptr && !*b;
}

row_result evaluate_node(const row_expression& e, const row_view& row) {
  using state = row_result::state;
  switch (e.op) {
    case row_op::literal:
      return known(e.literal);
    case row_op::column: {
      const scalar* value = row.column(e.column);
      if (value == nullptr) return unknown();
      return known(*value);
    }
    case row_op::parameter: {
      const scalar* value = row.parameter();
      if (value == nullptr) return unknown();
      return known(*value);
    }
    case row_op::logical_and:
    case row_op::logical_or: {
      const bool is_and = e.op == row_op::logical_and;
      row_result lhs = logical_operand(evaluate_node(e.operands[0], row), e.operands[0].where);
      if (lhs.outcome == state::failed) return lhs;
      // Short-circuit as Flux does: the right side is not evaluated (nor its errors raised).
      if (is_and ? is_false(lhs) : is_true(lhs)) return lhs;
      row_result rhs = logical_operand(evaluate_node(e.operands[1], row), e.operands[1].where);
      if (rhs.outcome == state::failed) return rhs;
      if (is_and ? is_false(rhs) : is_true(rhs)) return rhs;
      if (lhs.outcome == state::unknown || rhs.outcome == state::unknown) return unknown();
      if (is_null(lhs.value) || is_null(rhs.value)) return known(scalar{});
      // Neither decided it: both true for `and`, both false for `or`.
      return known(scalar{is_and});
    }
    case row_op::logical_not: {
      row_result operand = logical_operand(evaluate_node(e.operands[0], row), e.operands[0].where);
      if (operand.outcome != state::known || is_null(operand.value)) return operand;
      return known(scalar{!std::get<bool>(operand.value)});
    }
    case row_op::exists: {
      row_result operand = evaluate_node(e.operands[0], row);
      if (operand.outcome != state::known) return operand;
      return known(scalar{!is_null(operand.value)});
    }
    case row_op::equal:
    case row_op::not_equal:
    case row_op::less:
    case row_op::less_equal:
    case row_op::greater:
    case row_op::greater_equal:
    case row_op::add:
    case row_op::subtract:
    case row_op::multiply:
    case row_op::divide:
    case row_op::modulo: {
      row_result lhs = evaluate_node(e.operands[0], row);
      if (lhs.outcome == state::failed) return lhs;
      row_result rhs = evaluate_node(e.operands[1], row);
      if (rhs.outcome == state::failed) return rhs;
      if (lhs.outcome == state::unknown || rhs.outcome == state::unknown) return unknown();
      const operator_kind op = operator_of(e.op);
      const bool is_arithmetic = e.op == row_op::add || e.op == row_op::subtract ||
                                 e.op == row_op::multiply || e.op == row_op::divide ||
                                 e.op == row_op::modulo;
      if (is_arithmetic) return from_outcome(arithmetic(op, lhs.value, rhs.value), e.where);
      return from_outcome(comparison(op, lhs.value, rhs.value), e.where);
    }
    case row_op::regex_match:
    case row_op::regex_not_match: {
      row_result operand = evaluate_node(e.operands[0], row);
      if (operand.outcome != state::known || is_null(operand.value)) return operand;
      const auto* text = std::get_if<std::string>(&operand.value);
      if (text == nullptr)
        return failed(e.where,
                      "expected string but found " + std::string(type_name(operand.value)));
      const bool is_match = e.regex.search(*text);
      return known(scalar{e.op == row_op::regex_match ? is_match : !is_match});
    }
    case row_op::negate: {
      row_result operand = evaluate_node(e.operands[0], row);
      if (operand.outcome != state::known) return operand;
      return from_outcome(negation(operand.value), e.where);
    }
    case row_op::convert: {
      row_result operand = evaluate_node(e.operands[0], row);
      if (operand.outcome != state::known) return operand;
      return from_outcome(convert(e.to, operand.value), e.where);
    }
    case row_op::conditional: {
      row_result test = logical_operand(evaluate_node(e.operands[0], row), e.operands[0].where);
      if (test.outcome != state::known) return test;
      // Flux's `if null then a else b` is b.
      return evaluate_node(is_true(test) ? e.operands[1] : e.operands[2], row);
    }
  }
  return failed(e.where, "unsupported expression");
}

}  // namespace

row_result evaluate(const row_expression& e, const row_view& row) {
  return evaluate_node(e, row);
}

// ---------------------------------------------------------------------------------------------
// Lexer

namespace {

enum class tok : std::uint8_t {
  illegal,
  eof,
  ident,
  integer,
  floating,
  string,
  interpolated,
  regex,
  time,
  duration,
  kw_and,
  kw_or,
  kw_not,
  kw_exists,
  kw_import,
  kw_package,
  kw_option,
  kw_return,
  kw_if,
  kw_then,
  kw_else,
  kw_builtin,
  kw_test,
  kw_testcase,
  add,
  sub,
  mul,
  div,
  mod,
  pow,
  eq,
  neq,
  lt,
  lte,
  gt,
  gte,
  regex_eq,
  regex_neq,
  assign,
  arrow,
  lparen,
  rparen,
  lbrack,
  rbrack,
  lbrace,
  rbrace,
  comma,
  dot,
  colon,
  pipe_forward,
  pipe_receive,
  question,
};

// Flux's token names, as its errors print them.
std::string_view name_of(tok t) {
  switch (t) {
    case tok::illegal:
      return "ILLEGAL";
    case tok::eof:
      return "EOF";
    case tok::ident:
      return "IDENT";
    case tok::integer:
      return "INT";
    case tok::floating:
      return "FLOAT";
    case tok::string:
      return "STRING";
    case tok::interpolated:
      return "QUOTE";
    case tok::regex:
      return "REGEX";
    case tok::time:
      return "TIME";
    case tok::duration:
      return "DURATION";
    case tok::kw_and:
      return "AND";
    case tok::kw_or:
      return "OR";
    case tok::kw_not:
      return "NOT";
    case tok::kw_exists:
      return "EXISTS";
    case tok::kw_import:
      return "IMPORT";
    case tok::kw_package:
      return "PACKAGE";
    case tok::kw_option:
      return "OPTION";
    case tok::kw_return:
      return "RETURN";
    case tok::kw_if:
      return "IF";
    case tok::kw_then:
      return "THEN";
    case tok::kw_else:
      return "ELSE";
    case tok::kw_builtin:
      return "BUILTIN";
    case tok::kw_test:
      return "TEST";
    case tok::kw_testcase:
      return "TESTCASE";
    case tok::add:
      return "ADD";
    case tok::sub:
      return "SUB";
    case tok::mul:
      return "MUL";
    case tok::div:
      return "DIV";
    case tok::mod:
      return "MOD";
    case tok::pow:
      return "POW";
    case tok::eq:
      return "EQ";
    case tok::neq:
      return "NEQ";
    case tok::lt:
      return "LT";
    case tok::lte:
      return "LTE";
    case tok::gt:
      return "GT";
    case tok::gte:
      return "GTE";
    case tok::regex_eq:
      return "REGEXEQ";
    case tok::regex_neq:
      return "REGEXNEQ";
    case tok::assign:
      return "ASSIGN";
    case tok::arrow:
      return "ARROW";
    case tok::lparen:
      return "LPAREN";
    case tok::rparen:
      return "RPAREN";
    case tok::lbrack:
      return "LBRACK";
    case tok::rbrack:
      return "RBRACK";
    case tok::lbrace:
      return "LBRACE";
    case tok::rbrace:
      return "RBRACE";
    case tok::comma:
      return "COMMA";
    case tok::dot:
      return "DOT";
    case tok::colon:
      return "COLON";
    case tok::pipe_forward:
      return "PIPE_FORWARD";
    case tok::pipe_receive:
      return "PIPE_RECEIVE";
    case tok::question:
      return "QUESTION_MARK";
  }
  return "ILLEGAL";
}

struct token {
  tok kind = tok::eof;
  std::size_t start = 0;
  std::size_t end = 0;
  std::string value;  // string: unescaped; regex: the pattern; illegal: why
};

struct keyword {
  std::string_view text;
  tok kind;
};

constexpr keyword keywords[] = {
    {"and", tok::kw_and},           {"or", tok::kw_or},         {"not", tok::kw_not},
    {"exists", tok::kw_exists},     {"import", tok::kw_import}, {"package", tok::kw_package},
    {"option", tok::kw_option},     {"return", tok::kw_return}, {"if", tok::kw_if},
    {"then", tok::kw_then},         {"else", tok::kw_else},     {"builtin", tok::kw_builtin},
    {"testcase", tok::kw_testcase}, {"test", tok::kw_test},
};

// Scans one token at a byte offset: the parser asks again at a token's start in regex mode when
// an operand begins with '/', so there is no state beyond the text.
class lexer {
 public:
  explicit lexer(std::string_view text) : text_(text) {}

  // The offset of the next token at or after `at`: blanks and comments skipped.
  std::size_t skip(std::size_t at) const {
    while (at < text_.size()) {
      const char c = text_[at];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++at;
      } else if (c == '/' && at + 1 < text_.size() && text_[at + 1] == '/') {
        while (at < text_.size() && text_[at] != '\n') ++at;
      } else {
        break;
      }
    }
    return at;
  }

  token scan(std::size_t at, bool is_regex_allowed) const {
    at = skip(at);
    token t;
    t.start = at;
    t.end = at;
    if (at >= text_.size()) return t;
    const char c = text_[at];
    if (c == '/' && is_regex_allowed) return scan_regex(at);
    if (is_letter(c)) return scan_word(at);
    if (is_digit(c)) return scan_number(at);
    if (c == '"') return scan_string(at);
    const auto one = [&](tok kind, std::size_t size) {
      t.kind = kind;
      t.end = at + size;
      return t;
    };
    const char next = at + 1 < text_.size() ? text_[at + 1] : '\0';
    switch (c) {
      case '+':
        return one(tok::add, 1);
      case '-':
        return one(tok::sub, 1);
      case '*':
        return one(tok::mul, 1);
      case '/':
        return one(tok::div, 1);
      case '%':
        return one(tok::mod, 1);
      case '^':
        return one(tok::pow, 1);
      case '=':
        if (next == '=') return one(tok::eq, 2);
        if (next == '~') return one(tok::regex_eq, 2);
        if (next == '>') return one(tok::arrow, 2);
        return one(tok::assign, 1);
      case '!':
        if (next == '=') return one(tok::neq, 2);
        if (next == '~') return one(tok::regex_neq, 2);
        break;
      case '<':
        if (next == '=') return one(tok::lte, 2);
        if (next == '-') return one(tok::pipe_receive, 2);
        return one(tok::lt, 1);
      case '>':
        if (next == '=') return one(tok::gte, 2);
        return one(tok::gt, 1);
      case '(':
        return one(tok::lparen, 1);
      case ')':
        return one(tok::rparen, 1);
      case '[':
        return one(tok::lbrack, 1);
      case ']':
        return one(tok::rbrack, 1);
      case '{':
        return one(tok::lbrace, 1);
      case '}':
        return one(tok::rbrace, 1);
      case ',':
        return one(tok::comma, 1);
      case '.':
        return one(tok::dot, 1);
      case ':':
        return one(tok::colon, 1);
      case '?':
        return one(tok::question, 1);
      case '|':
        if (next == '>') return one(tok::pipe_forward, 2);
        break;
      default:
        break;
    }
    t.kind = tok::illegal;
    t.end = at + 1;
    t.value = std::string(1, c);
    return t;
  }

 private:
  token scan_word(std::size_t at) const {
    token t;
    t.start = at;
    std::size_t end = at;
    while (end < text_.size() && (is_letter(text_[end]) || is_digit(text_[end]))) ++end;
    t.end = end;
    t.value = std::string(text_.substr(at, end - at));
    t.kind = tok::ident;
    for (const auto& k : keywords) {
      if (k.text == t.value) t.kind = k.kind;
    }
    return t;
  }

  // The length of a duration unit at `at` (0: none). The longest spelling wins ("ms" over "m").
  std::size_t unit_at(std::size_t at) const {
    const std::string_view rest = text_.substr(at);
    if (rest.starts_with("mo") || rest.starts_with("ms") || rest.starts_with("us") ||
        rest.starts_with("ns"))
      return 2;
    if (rest.starts_with("\xC2\xB5s")) return 3;
    if (!rest.empty() && std::string_view("ywdhms").find(rest[0]) != std::string_view::npos)
      return 1;
    return 0;
  }

  // A time literal's length at `at` (dddd-dd-dd, then optionally Thh:mm:ss[.f](Z|±hh:mm)); 0
  // when the text there is not one.
  std::size_t time_length(std::size_t at) const {
    const auto digits = [&](std::size_t from, std::size_t n) {
      if (from + n > text_.size()) return false;
      for (std::size_t i = from; i < from + n; ++i)
        if (!is_digit(text_[i])) return false;
      return true;
    };
    const auto is = [&](std::size_t i, char c) { return i < text_.size() && text_[i] == c; };
    if (!digits(at, 4) || !is(at + 4, '-') || !digits(at + 5, 2) || !is(at + 7, '-') ||
        !digits(at + 8, 2))
      return 0;
    std::size_t end = at + 10;
    if (!is(end, 'T')) return end - at;
    if (!digits(end + 1, 2) || !is(end + 3, ':') || !digits(end + 4, 2) || !is(end + 6, ':') ||
        !digits(end + 7, 2))
      return end - at;
    std::size_t i = end + 9;
    if (is(i, '.')) {
      ++i;
      while (i < text_.size() && is_digit(text_[i])) ++i;
    }
    if (is(i, 'Z')) return i + 1 - at;
    if ((is(i, '+') || is(i, '-')) && digits(i + 1, 2) && is(i + 3, ':') && digits(i + 4, 2))
      return i + 6 - at;
    // Without an offset Flux does not read a time: let parse_time say so.
    return i - at;
  }

  token scan_number(std::size_t at) const {
    token t;
    t.start = at;
    if (const std::size_t length = time_length(at); length > 0) {
      t.kind = tok::time;
      t.end = at + length;
      t.value = std::string(text_.substr(at, length));
      return t;
    }
    std::size_t end = at;
    while (end < text_.size() && is_digit(text_[end])) ++end;
    if (end + 1 < text_.size() && text_[end] == '.' && is_digit(text_[end + 1])) {
      ++end;
      while (end < text_.size() && is_digit(text_[end])) ++end;
      t.kind = tok::floating;
    } else if (unit_at(end) > 0) {
      // A duration: (digits unit)+.
      end += unit_at(end);
      for (;;) {
        std::size_t next = end;
        while (next < text_.size() && is_digit(text_[next])) ++next;
        if (next == end || unit_at(next) == 0) break;
        end = next + unit_at(next);
      }
      t.kind = tok::duration;
    } else {
      t.kind = tok::integer;
    }
    t.end = end;
    t.value = std::string(text_.substr(at, end - at));
    return t;
  }

  token scan_string(std::size_t at) const {
    token t;
    t.start = at;
    t.kind = tok::string;
    std::size_t i = at + 1;
    std::string value;
    const auto illegal = [&](std::size_t end, std::string why) {
      t.kind = tok::illegal;
      t.end = end;
      t.value = std::move(why);
      return t;
    };
    while (i < text_.size()) {
      const char c = text_[i];
      if (c == '"') {
        t.end = i + 1;
        t.value = std::move(value);
        return t;
      }
      if (c == '$' && i + 1 < text_.size() && text_[i + 1] == '{') {
        // An interpolation: skipped to its closing brace (nested braces counted).
        t.kind = tok::interpolated;
        int depth = 0;
        for (i += 1; i < text_.size(); ++i) {
          if (text_[i] == '{') ++depth;
          if (text_[i] == '}' && --depth == 0) break;
        }
        if (i >= text_.size()) break;
        ++i;
        continue;
      }
      if (c != '\\') {
        value.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= text_.size()) break;
      const char escaped = text_[i + 1];
      switch (escaped) {
        case 'n':
          value.push_back('\n');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 't':
          value.push_back('\t');
          break;
        case '\\':
        case '"':
        case '$':
          value.push_back(escaped);
          break;
        case 'x': {
          const auto hex = [](char h) -> int {
            if (h >= '0' && h <= '9') return h - '0';
            if (h >= 'a' && h <= 'f') return h - 'a' + 10;
            if (h >= 'A' && h <= 'F') return h - 'A' + 10;
            return -1;
          };
          const int high = i + 2 < text_.size() ? hex(text_[i + 2]) : -1;
          const int low = i + 3 < text_.size() ? hex(text_[i + 3]) : -1;
          if (high < 0 || low < 0) return illegal(i + 2, "invalid byte value in string");
          value.push_back(static_cast<char>(high * 16 + low));
          i += 2;
          break;
        }
        default:
          return illegal(i + 2, "invalid escape sequence \\" + std::string(1, escaped));
      }
      i += 2;
    }
    return illegal(text_.size(), "unterminated string literal");
  }

  // /pattern/: `\/` stands for '/', other escapes stay for the regex engine. No newline inside.
  token scan_regex(std::size_t at) const {
    token t;
    t.start = at;
    std::string pattern;
    for (std::size_t i = at + 1; i < text_.size(); ++i) {
      const char c = text_[i];
      if (c == '\n') break;
      if (c == '/') {
        t.kind = tok::regex;
        t.end = i + 1;
        t.value = std::move(pattern);
        return t;
      }
      if (c == '\\' && i + 1 < text_.size() && text_[i + 1] == '/') {
        pattern.push_back('/');
        ++i;
        continue;
      }
      if (c == '\\' && i + 1 < text_.size() && text_[i + 1] != '\n') {
        pattern.push_back(c);
        pattern.push_back(text_[++i]);
        continue;
      }
      pattern.push_back(c);
    }
    t.kind = tok::illegal;
    t.end = text_.find('\n', at) == std::string_view::npos ? text_.size() : text_.find('\n', at);
    t.value = "unterminated regex literal";
    return t;
  }

  std::string_view text_;
};

// Byte offsets to 1-based lines and columns.
class line_index {
 public:
  explicit line_index(std::string_view text) {
    starts_.push_back(0);
    for (std::size_t i = 0; i < text.size(); ++i)
      if (text[i] == '\n') starts_.push_back(i + 1);
  }
  position at(std::size_t offset) const {
    const auto next = std::upper_bound(starts_.begin(), starts_.end(), offset);
    const auto line = static_cast<std::size_t>(next - starts_.begin());
    const std::size_t start = starts_[line - 1];
    return position{static_cast<std::uint32_t>(line),
                    static_cast<std::uint32_t>(offset - start + 1)};
  }

 private:
  std::vector<std::size_t> starts_;
};

// ---------------------------------------------------------------------------------------------
// Parser

class parser {
 public:
  parser(std::string_view text, const parse_limits& limits)
      : text_(text), lexer_(text), lines_(text), limits_(limits) {
    current_ = lexer_.scan(0, false);
  }

  std::variant<file, error> run() {
    file out;
    if (current_.kind == tok::kw_package) {
      next();
      expect(tok::ident, current_.start);
    }
    while (!failed() && current_.kind == tok::kw_import) {
      import_declaration declaration;
      const std::size_t start = current_.start;
      next();
      if (current_.kind == tok::ident) {
        declaration.alias = current_.value;
        next();
      }
      const token path = expect(tok::string, start);
      declaration.path = path.value;
      declaration.where = where(start, path.end);
      out.imports.push_back(std::move(declaration));
    }
    while (!failed() && current_.kind != tok::eof) {
      statement s = parse_statement(false);
      if (failed()) break;
      out.body.push_back(std::move(s));
    }
    if (failed()) return std::move(*error_);
    return out;
  }

 private:
  bool failed() const { return error_.has_value(); }

  location where(std::size_t start, std::size_t end) const {
    return location{lines_.at(start), lines_.at(end)};
  }

  void fail(std::size_t start, std::size_t end, std::string_view what) {
    if (!error_) error_ = compilation_error(where(start, end), what);
  }

  // Consumes the current token; end_ remembers where it ended, the end of whatever node takes it.
  void next() {
    end_ = current_.end;
    current_ = lexer_.scan(current_.end, false);
  }

  // In regex mode: rescans the current token where an operand starts.
  void allow_regex() {
    if (current_.kind == tok::div) current_ = lexer_.scan(current_.start, true);
  }

  token peek_after(const token& t) const { return lexer_.scan(t.end, false); }

  std::string describe(const token& t) const {
    std::string out(name_of(t.kind));
    if (t.kind == tok::eof) return out;
    const position at = lines_.at(t.start);
    return out + " (" + std::string(text_.substr(t.start, t.end - t.start)) + ") at " +
           std::to_string(at.line) + ":" + std::to_string(at.column);
  }

  // A token of `kind` is consumed and returned; else the construct begun at `start` fails:
  // "expected IDENT, got INT (5) at 1:12".
  token expect(tok kind, std::size_t start) {
    if (current_.kind == tok::illegal) {
      fail(current_.start, current_.end, current_.value);
      return current_;
    }
    if (current_.kind != kind) {
      fail(start, current_.end,
           "expected " + std::string(name_of(kind)) + ", got " + describe(current_));
      return current_;
    }
    token t = current_;
    next();
    return t;
  }

  // The closing token of a construct begun at `start`: "expected RPAREN, got EOF".
  token close(tok kind, std::size_t start) {
    if (current_.kind == tok::illegal) {
      fail(current_.start, current_.end, current_.value);
      return current_;
    }
    if (current_.kind != kind) {
      fail(start, current_.end,
           "expected " + std::string(name_of(kind)) + ", got " +
               std::string(name_of(current_.kind)));
      return current_;
    }
    token t = current_;
    next();
    return t;
  }

  // Guards the recursion of nested constructs (parentheses, calls, unary chains).
  class depth_guard {
   public:
    explicit depth_guard(parser& p) : p_(p) { ++p_.depth_; }
    ~depth_guard() { --p_.depth_; }
    depth_guard(const depth_guard&) = delete;
    depth_guard& operator=(const depth_guard&) = delete;

   private:
    parser& p_;
  };

  bool too_deep(std::size_t start) {
    if (depth_ <= limits_.max_depth) return false;
    fail(
        start, current_.end,
        "expression nests too deeply (more than " + std::to_string(limits_.max_depth) + " levels)");
    return true;
  }

  node_ptr make(node_kind kind, std::size_t start, std::size_t end) {
    auto n = std::make_unique<node>();
    n->kind = kind;
    n->where = where(start, end);
    return n;
  }

  // Sets the height from the children; a tree past max_depth fails.
  node_ptr finish(node_ptr n, std::size_t start) {
    std::uint32_t tallest = 0;
    for (const auto& child : n->children)
      if (child) tallest = std::max(tallest, child->height);
    for (const auto& p : n->properties)
      if (p.value) tallest = std::max(tallest, p.value->height);
    for (const auto& s : n->block)
      if (s.value) tallest = std::max(tallest, s.value->height);
    n->height = tallest + 1;
    if (n->height > limits_.max_depth) {
      fail(start, current_.start,
           "expression nests too deeply (more than " + std::to_string(limits_.max_depth) +
               " levels)");
      return nullptr;
    }
    return n;
  }

  static bool starts_expression(tok kind) {
    switch (kind) {
      case tok::ident:
      case tok::integer:
      case tok::floating:
      case tok::string:
      case tok::interpolated:
      case tok::div:
      case tok::regex:
      case tok::time:
      case tok::duration:
      case tok::pipe_receive:
      case tok::lparen:
      case tok::lbrack:
      case tok::lbrace:
      case tok::add:
      case tok::sub:
      case tok::kw_not:
      case tok::kw_if:
      case tok::kw_exists:
        return true;
      default:
        return false;
    }
  }

  statement parse_statement(bool is_in_block) {
    statement s;
    const std::size_t start = current_.start;
    if (current_.kind == tok::kw_option) {
      next();
      const token name = expect(tok::ident, start);
      if (failed()) return s;
      s.kind = statement_kind::option;
      s.name = name.value;
      s.name_where = where(name.start, name.end);
      if (current_.kind == tok::dot) {
        next();
        const token member = expect(tok::ident, start);
        if (failed()) return s;
        s.name += "." + member.value;
        s.name_where = where(name.start, member.end);
      }
      expect(tok::assign, start);
      if (failed()) return s;
      s.value = parse_expression();
      if (failed()) return s;
      s.where = where(start, end_);
      return s;
    }
    if (current_.kind == tok::kw_return) {
      if (!is_in_block) {
        fail(current_.start, current_.end, "return is only allowed inside a function body");
        return s;
      }
      next();
      s.kind = statement_kind::return_value;
      s.value = parse_expression();
      if (failed()) return s;
      s.where = where(start, end_);
      return s;
    }
    if (current_.kind == tok::ident && peek_after(current_).kind == tok::assign) {
      s.kind = statement_kind::variable;
      s.name = current_.value;
      s.name_where = where(current_.start, current_.end);
      next();
      next();
      s.value = parse_expression();
      if (failed()) return s;
      s.where = where(start, end_);
      return s;
    }
    if (current_.kind == tok::illegal) {
      fail(current_.start, current_.end, current_.value);
      return s;
    }
    if (!starts_expression(current_.kind)) {
      fail(current_.start, current_.end,
           "invalid statement: " +
               std::string(text_.substr(current_.start, current_.end - current_.start)));
      return s;
    }
    s.kind = statement_kind::expression;
    s.value = parse_expression();
    if (failed()) return s;
    s.where = where(start, end_);
    return s;
  }

  node_ptr parse_expression() {
    depth_guard guard(*this);
    if (too_deep(current_.start)) return nullptr;
    if (current_.kind == tok::kw_if) {
      const std::size_t start = current_.start;
      next();
      auto test = parse_expression();
      if (failed()) return nullptr;
      expect(tok::kw_then, start);
      if (failed()) return nullptr;
      auto consequent = parse_expression();
      if (failed()) return nullptr;
      expect(tok::kw_else, start);
      if (failed()) return nullptr;
      auto alternate = parse_expression();
      if (failed()) return nullptr;
      auto n = make(node_kind::conditional, start, end_);
      n->children.push_back(std::move(test));
      n->children.push_back(std::move(consequent));
      n->children.push_back(std::move(alternate));
      return finish(std::move(n), start);
    }
    return parse_logical(true);
  }

  node_ptr binary(node_kind kind, operator_kind op, node_ptr lhs, node_ptr rhs, std::size_t start) {
    auto n = make(kind, start, end_);
    n->op = op;
    n->children.push_back(std::move(lhs));
    n->children.push_back(std::move(rhs));
    return finish(std::move(n), start);
  }

  // or (is_or) over and, and over not/exists.
  node_ptr parse_logical(bool is_or) {
    const std::size_t start = current_.start;
    node_ptr lhs = is_or ? parse_logical(false) : parse_logical_unary();
    const tok wanted = is_or ? tok::kw_or : tok::kw_and;
    while (!failed() && current_.kind == wanted) {
      next();
      node_ptr rhs = is_or ? parse_logical(false) : parse_logical_unary();
      if (failed()) return nullptr;
      lhs =
          binary(node_kind::logical, is_or ? operator_kind::logical_or : operator_kind::logical_and,
                 std::move(lhs), std::move(rhs), start);
    }
    if (failed()) return nullptr;
    return lhs;
  }

  node_ptr parse_logical_unary() {
    if (current_.kind == tok::kw_not || current_.kind == tok::kw_exists) {
      depth_guard guard(*this);
      const std::size_t start = current_.start;
      if (too_deep(start)) return nullptr;
      const operator_kind op =
          current_.kind == tok::kw_not ? operator_kind::logical_not : operator_kind::exists;
      next();
      node_ptr operand = parse_logical_unary();
      if (failed()) return nullptr;
      auto n = make(node_kind::unary, start, end_);
      n->op = op;
      n->children.push_back(std::move(operand));
      return finish(std::move(n), start);
    }
    return parse_comparison();
  }

  static operator_kind comparison_of(tok kind) {
    switch (kind) {
      case tok::eq:
        return operator_kind::equal;
      case tok::neq:
        return operator_kind::not_equal;
      case tok::lt:
        return operator_kind::less;
      case tok::lte:
        return operator_kind::less_equal;
      case tok::gt:
        return operator_kind::greater;
      case tok::gte:
        return operator_kind::greater_equal;
      case tok::regex_eq:
        return operator_kind::regex_match;
      case tok::regex_neq:
        return operator_kind::regex_not_match;
      default:
        return operator_kind::none;
    }
  }

  node_ptr parse_comparison() {
    const std::size_t start = current_.start;
    node_ptr lhs = parse_additive();
    while (!failed() && comparison_of(current_.kind) != operator_kind::none) {
      const operator_kind op = comparison_of(current_.kind);
      next();
      node_ptr rhs = parse_additive();
      if (failed()) return nullptr;
      lhs = binary(node_kind::binary, op, std::move(lhs), std::move(rhs), start);
    }
    if (failed()) return nullptr;
    return lhs;
  }

  node_ptr parse_additive() {
    const std::size_t start = current_.start;
    node_ptr lhs = parse_multiplicative();
    while (!failed() && (current_.kind == tok::add || current_.kind == tok::sub)) {
      const operator_kind op =
          current_.kind == tok::add ? operator_kind::add : operator_kind::subtract;
      next();
      node_ptr rhs = parse_multiplicative();
      if (failed()) return nullptr;
      lhs = binary(node_kind::binary, op, std::move(lhs), std::move(rhs), start);
    }
    if (failed()) return nullptr;
    return lhs;
  }

  node_ptr parse_multiplicative() {
    const std::size_t start = current_.start;
    node_ptr lhs = parse_exponent();
    while (!failed() &&
           (current_.kind == tok::mul || current_.kind == tok::div || current_.kind == tok::mod)) {
      const operator_kind op = current_.kind == tok::mul   ? operator_kind::multiply
                               : current_.kind == tok::div ? operator_kind::divide
                                                           : operator_kind::modulo;
      next();
      node_ptr rhs = parse_exponent();
      if (failed()) return nullptr;
      lhs = binary(node_kind::binary, op, std::move(lhs), std::move(rhs), start);
    }
    if (failed()) return nullptr;
    return lhs;
  }

  node_ptr parse_exponent() {
    const std::size_t start = current_.start;
    node_ptr lhs = parse_pipe();
    while (!failed() && current_.kind == tok::pow) {
      next();
      node_ptr rhs = parse_pipe();
      if (failed()) return nullptr;
      lhs = binary(node_kind::binary, operator_kind::power, std::move(lhs), std::move(rhs), start);
    }
    if (failed()) return nullptr;
    return lhs;
  }

  node_ptr parse_pipe() {
    const std::size_t start = current_.start;
    node_ptr lhs = parse_unary();
    while (!failed() && current_.kind == tok::pipe_forward) {
      next();
      const std::size_t call_start = current_.start;
      node_ptr rhs = parse_unary();
      if (failed()) return nullptr;
      if (rhs->kind != node_kind::call) {
        fail(call_start, end_, "pipe destination must be a function call");
        return nullptr;
      }
      lhs = binary(node_kind::pipe, operator_kind::none, std::move(lhs), std::move(rhs), start);
    }
    if (failed()) return nullptr;
    return lhs;
  }

  node_ptr parse_unary() {
    if (current_.kind == tok::add || current_.kind == tok::sub) {
      depth_guard guard(*this);
      const std::size_t start = current_.start;
      if (too_deep(start)) return nullptr;
      const operator_kind op =
          current_.kind == tok::add ? operator_kind::plus : operator_kind::negate;
      next();
      node_ptr operand = parse_unary();
      if (failed()) return nullptr;
      auto n = make(node_kind::unary, start, end_);
      n->op = op;
      n->children.push_back(std::move(operand));
      return finish(std::move(n), start);
    }
    return parse_postfix();
  }

  node_ptr parse_postfix() {
    const std::size_t start = current_.start;
    node_ptr expr = parse_primary();
    while (!failed()) {
      if (current_.kind == tok::dot) {
        next();
        const token name = expect(tok::ident, start);
        if (failed()) return nullptr;
        end_ = name.end;
        auto n = make(node_kind::member, start, end_);
        n->text = name.value;
        n->children.push_back(std::move(expr));
        expr = finish(std::move(n), start);
      } else if (current_.kind == tok::lparen) {
        next();
        auto n = make(node_kind::call, start, start);
        parse_properties(*n, tok::rparen, start, false);
        if (failed()) return nullptr;
        const token closing = close(tok::rparen, start);
        if (failed()) return nullptr;
        end_ = closing.end;
        n->where = where(start, end_);
        n->children.insert(n->children.begin(), std::move(expr));
        expr = finish(std::move(n), start);
      } else if (current_.kind == tok::lbrack) {
        next();
        allow_regex();
        node_ptr index = parse_expression();
        if (failed()) return nullptr;
        const token closing = close(tok::rbrack, start);
        if (failed()) return nullptr;
        end_ = closing.end;
        if (index->kind == node_kind::string) {
          auto n = make(node_kind::member, start, end_);
          n->text = index->text;
          n->children.push_back(std::move(expr));
          expr = finish(std::move(n), start);
        } else {
          auto n = make(node_kind::index, start, end_);
          n->children.push_back(std::move(expr));
          n->children.push_back(std::move(index));
          expr = finish(std::move(n), start);
        }
      } else {
        break;
      }
      if (!expr) return nullptr;
    }
    if (failed()) return nullptr;
    return expr;
  }

  // key: value {, key: value} [,] up to `closing` (not consumed). Record and call keys may be
  // strings; a parameter list (is_parameters) has `name [= default]`.
  void parse_properties(node& n, tok closing, std::size_t start, bool is_parameters) {
    while (!failed() && current_.kind != closing && current_.kind != tok::eof) {
      property p;
      const token key = current_;
      if (key.kind == tok::ident || (!is_parameters && key.kind == tok::string)) {
        next();
      } else {
        expect(tok::ident, start);
        return;
      }
      p.key = key.value;
      p.key_where = where(key.start, key.end);
      if (is_parameters) {
        if (current_.kind == tok::assign) {
          next();
          if (current_.kind == tok::pipe_receive) {
            p.value = make(node_kind::pipe_receive, current_.start, current_.end);
            end_ = current_.end;
            next();
          } else {
            allow_regex();
            p.value = parse_expression();
          }
        }
      } else if (current_.kind == tok::colon) {
        next();
        allow_regex();
        p.value = parse_expression();
      } else if (current_.kind != tok::comma && current_.kind != closing) {
        expect(tok::colon, start);
        return;
      }
      if (failed()) return;
      n.properties.push_back(std::move(p));
      if (current_.kind == tok::comma) {
        next();
      } else {
        break;
      }
    }
  }

  node_ptr parse_primary() {
    allow_regex();
    const token t = current_;
    switch (t.kind) {
      case tok::ident: {
        next();
        end_ = t.end;
        auto n = make(node_kind::identifier, t.start, t.end);
        n->text = t.value;
        return n;
      }
      case tok::integer: {
        next();
        end_ = t.end;
        const std::string_view digits = text_.substr(t.start, t.end - t.start);
        if (digits.size() > 1 && digits[0] == '0') {
          fail(t.start, t.end,
               "invalid integer literal \"" + std::string(digits) +
                   "\": nonzero value cannot start with 0");
          return nullptr;
        }
        auto n = make(node_kind::integer, t.start, t.end);
        const auto [end, failure] =
            std::from_chars(digits.data(), digits.data() + digits.size(), n->integer);
        if (failure != std::errc() || end != digits.data() + digits.size()) {
          fail(t.start, t.end,
               "invalid integer literal \"" + std::string(digits) + "\": value out of range");
          return nullptr;
        }
        return n;
      }
      case tok::floating: {
        next();
        end_ = t.end;
        auto n = make(node_kind::floating, t.start, t.end);
        const std::string_view digits = text_.substr(t.start, t.end - t.start);
        const auto [end, failure] =
            std::from_chars(digits.data(), digits.data() + digits.size(), n->number);
        if (failure != std::errc() || end != digits.data() + digits.size()) {
          fail(t.start, t.end, "invalid float literal \"" + std::string(digits) + "\"");
          return nullptr;
        }
        return n;
      }
      case tok::string:
      case tok::interpolated: {
        next();
        end_ = t.end;
        auto n = make(t.kind == tok::string ? node_kind::string : node_kind::interpolation, t.start,
                      t.end);
        n->text = t.value;
        return n;
      }
      case tok::regex: {
        next();
        end_ = t.end;
        auto n = make(node_kind::regex, t.start, t.end);
        n->text = t.value;
        return n;
      }
      case tok::time: {
        next();
        end_ = t.end;
        const auto ns = parse_time(t.value);
        if (!ns) {
          fail(t.start, t.end, "invalid date time literal \"" + t.value + "\"");
          return nullptr;
        }
        auto n = make(node_kind::time, t.start, t.end);
        n->integer = *ns;
        return n;
      }
      case tok::duration: {
        next();
        end_ = t.end;
        const auto span = parse_duration(t.value);
        if (!span) {
          fail(t.start, t.end, "invalid duration literal \"" + t.value + "\": out of range");
          return nullptr;
        }
        auto n = make(node_kind::duration, t.start, t.end);
        n->span = *span;
        return n;
      }
      case tok::lbrack:
        return parse_array();
      case tok::lbrace:
        return parse_record();
      case tok::lparen:
        return parse_paren();
      case tok::illegal:
        fail(t.start, t.end, t.value);
        return nullptr;
      default:
        fail(t.start, t.end,
             "invalid token for primary expression: " + std::string(name_of(t.kind)));
        return nullptr;
    }
  }

  node_ptr parse_array() {
    depth_guard guard(*this);
    const std::size_t start = current_.start;
    if (too_deep(start)) return nullptr;
    next();
    auto n = make(node_kind::array, start, start);
    while (!failed() && current_.kind != tok::rbrack && current_.kind != tok::eof) {
      if (current_.kind == tok::colon) {
        fail(current_.start, current_.end, "dictionary literals are not supported");
        return nullptr;
      }
      node_ptr element = parse_expression();
      if (failed()) return nullptr;
      if (current_.kind == tok::colon) {
        fail(current_.start, current_.end, "dictionary literals are not supported");
        return nullptr;
      }
      n->children.push_back(std::move(element));
      if (current_.kind != tok::comma) break;
      next();
    }
    const token closing = close(tok::rbrack, start);
    if (failed()) return nullptr;
    end_ = closing.end;
    n->where = where(start, end_);
    return finish(std::move(n), start);
  }

  node_ptr parse_record() {
    depth_guard guard(*this);
    const std::size_t start = current_.start;
    if (too_deep(start)) return nullptr;
    next();
    auto n = make(node_kind::record, start, start);
    if (current_.kind == tok::ident) {
      const token after = peek_after(current_);
      if (after.kind == tok::ident && after.value == "with") {
        auto source = make(node_kind::identifier, current_.start, current_.end);
        source->text = current_.value;
        n->children.push_back(std::move(source));
        n->is_with = true;
        next();
        next();
      }
    }
    parse_properties(*n, tok::rbrace, start, false);
    if (failed()) return nullptr;
    const token closing = close(tok::rbrace, start);
    if (failed()) return nullptr;
    end_ = closing.end;
    n->where = where(start, end_);
    return finish(std::move(n), start);
  }

  // `(` starts a function literal when `)` or `ident ,` or `ident =` or `ident ) =>` follows;
  // otherwise a parenthesized expression.
  bool is_function_ahead() const {
    const token first = peek_after(current_);
    if (first.kind == tok::rparen) return peek_after(first).kind == tok::arrow;
    if (first.kind != tok::ident) return false;
    const token second = peek_after(first);
    if (second.kind == tok::comma || second.kind == tok::assign) return true;
    return second.kind == tok::rparen && peek_after(second).kind == tok::arrow;
  }

  node_ptr parse_paren() {
    depth_guard guard(*this);
    const std::size_t start = current_.start;
    if (too_deep(start)) return nullptr;
    if (!is_function_ahead()) {
      next();
      node_ptr inner = parse_expression();
      if (failed()) return nullptr;
      const token closing = close(tok::rparen, start);
      if (failed()) return nullptr;
      end_ = closing.end;
      return inner;
    }
    next();
    auto n = make(node_kind::function, start, start);
    parse_properties(*n, tok::rparen, start, true);
    if (failed()) return nullptr;
    close(tok::rparen, start);
    if (failed()) return nullptr;
    expect(tok::arrow, start);
    if (failed()) return nullptr;
    if (current_.kind == tok::lbrace) {
      const std::size_t block_start = current_.start;
      next();
      n->is_block = true;
      while (!failed() && current_.kind != tok::rbrace && current_.kind != tok::eof) {
        statement s = parse_statement(true);
        if (failed()) return nullptr;
        n->block.push_back(std::move(s));
      }
      const token closing = close(tok::rbrace, block_start);
      if (failed()) return nullptr;
      end_ = closing.end;
    } else {
      allow_regex();
      node_ptr body = parse_expression();
      if (failed()) return nullptr;
      n->children.push_back(std::move(body));
    }
    n->where = where(start, end_);
    return finish(std::move(n), start);
  }

  std::string_view text_;
  lexer lexer_;
  line_index lines_;
  parse_limits limits_;
  token current_;
  std::size_t end_ = 0;  // the end of the last token a node took
  std::uint32_t depth_ = 0;
  std::optional<error> error_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Compiler

namespace {

enum class builtin_id : std::uint8_t {
  from,
  range,
  filter,
  mean,
  sum,
  count,
  median,
  stddev,
  spread,
  min,
  max,
  first,
  last,
  aggregate_window,
  window,
  group,
  keep,
  drop,
  sort,
  limit,
  tail,
  yield,
  pivot,
  map,
  to_float,
  to_int,
  now,
  float_value,
  int_value,
  uint_value,
  string_value,
  bool_value,
  time_value,
};

// A function Nimbus runs: its parameters (space-separated; a transformation also takes
// `tables`, its piped input) and those without a default.
struct builtin_spec {
  std::string_view name;
  builtin_id id;
  bool is_transformation;
  std::string_view parameters;
  std::string_view required;
};

constexpr builtin_spec builtins[] = {
    {"from", builtin_id::from, false, "bucket", "bucket"},
    {"range", builtin_id::range, true, "start stop", "start"},
    {"filter", builtin_id::filter, true, "fn onEmpty", "fn"},
    {"mean", builtin_id::mean, true, "column", ""},
    {"sum", builtin_id::sum, true, "column", ""},
    {"count", builtin_id::count, true, "column", ""},
    {"median", builtin_id::median, true, "column method compression", ""},
    {"stddev", builtin_id::stddev, true, "column mode", ""},
    {"spread", builtin_id::spread, true, "column", ""},
    {"min", builtin_id::min, true, "column", ""},
    {"max", builtin_id::max, true, "column", ""},
    {"first", builtin_id::first, true, "column", ""},
    {"last", builtin_id::last, true, "column", ""},
    {"aggregateWindow", builtin_id::aggregate_window, true,
     "every period offset fn column timeSrc timeDst createEmpty", "every fn"},
    {"window", builtin_id::window, true,
     "every period offset timeColumn startColumn stopColumn createEmpty", ""},
    {"group", builtin_id::group, true, "columns mode", ""},
    {"keep", builtin_id::keep, true, "columns fn", ""},
    {"drop", builtin_id::drop, true, "columns fn", ""},
    {"sort", builtin_id::sort, true, "columns desc", ""},
    {"limit", builtin_id::limit, true, "n offset", "n"},
    {"tail", builtin_id::tail, true, "n offset", "n"},
    {"yield", builtin_id::yield, true, "name", ""},
    {"pivot", builtin_id::pivot, true, "rowKey columnKey valueColumn",
     "rowKey columnKey valueColumn"},
    {"map", builtin_id::map, true, "fn mergeKey", "fn"},
    {"toFloat", builtin_id::to_float, true, "", ""},
    {"toInt", builtin_id::to_int, true, "", ""},
    {"now", builtin_id::now, false, "", ""},
    {"float", builtin_id::float_value, false, "v", "v"},
    {"int", builtin_id::int_value, false, "v", "v"},
    {"uint", builtin_id::uint_value, false, "v", "v"},
    {"string", builtin_id::string_value, false, "v", "v"},
    {"bool", builtin_id::bool_value, false, "v", "v"},
    {"time", builtin_id::time_value, false, "v", "v"},
};

// Flux functions (universe) Nimbus does not run: named as such rather than "undefined".
constexpr std::string_view unsupported_functions[] = {
    "bottom",
    "chandeMomentumOscillator",
    "columns",
    "contains",
    "cov",
    "covariance",
    "cumulativeSum",
    "derivative",
    "die",
    "difference",
    "display",
    "distinct",
    "doubleEMA",
    "duplicate",
    "duration",
    "elapsed",
    "exponentialMovingAverage",
    "fill",
    "findColumn",
    "findRecord",
    "getColumn",
    "getRecord",
    "highestAverage",
    "highestCurrent",
    "highestMax",
    "histogram",
    "histogramQuantile",
    "holtWinters",
    "hourSelection",
    "increase",
    "integral",
    "join",
    "kaufmansAMA",
    "kaufmansER",
    "keyValues",
    "keys",
    "length",
    "linearBins",
    "logarithmicBins",
    "lowestAverage",
    "lowestCurrent",
    "lowestMin",
    "mode",
    "movingAverage",
    "pearsonr",
    "quantile",
    "reduce",
    "relativeStrengthIndex",
    "rename",
    "sample",
    "set",
    "skew",
    "sleep",
    "stateCount",
    "stateDuration",
    "tableFind",
    "timeShift",
    "timeWeightedAvg",
    "timedMovingAverage",
    "toBool",
    "toString",
    "toTime",
    "toUInt",
    "top",
    "tripleEMA",
    "tripleExponentialDerivative",
    "truncateTimeColumn",
    "union",
    "unique",
    "unpivot",
};

constexpr std::string_view supported_summary =
    "Nimbus runs from, range, filter, map, group, keep, drop, sort, limit, tail, pivot, window, "
    "aggregateWindow, mean, sum, count, median, stddev, spread, min, max, first, last, toFloat, "
    "toInt and yield";

bool has_word(std::string_view list, std::string_view word) {
  while (!list.empty()) {
    const auto space = list.find(' ');
    if (list.substr(0, space) == word) return true;
    if (space == std::string_view::npos) break;
    list.remove_prefix(space + 1);
  }
  return false;
}

std::optional<aggregate_kind> aggregate_of(builtin_id id) {
  switch (id) {
    case builtin_id::mean:
      return aggregate_kind::mean;
    case builtin_id::sum:
      return aggregate_kind::sum;
    case builtin_id::count:
      return aggregate_kind::count;
    case builtin_id::median:
      return aggregate_kind::median;
    case builtin_id::stddev:
      return aggregate_kind::stddev;
    case builtin_id::spread:
      return aggregate_kind::spread;
    case builtin_id::min:
      return aggregate_kind::min;
    case builtin_id::max:
      return aggregate_kind::max;
    case builtin_id::first:
      return aggregate_kind::first;
    case builtin_id::last:
      return aggregate_kind::last;
    default:
      return std::nullopt;
  }
}

std::optional<conversion> conversion_of(builtin_id id) {
  switch (id) {
    case builtin_id::float_value:
      return conversion::to_float;
    case builtin_id::int_value:
      return conversion::to_int;
    case builtin_id::uint_value:
      return conversion::to_uint;
    case builtin_id::string_value:
      return conversion::to_string;
    case builtin_id::bool_value:
      return conversion::to_bool;
    case builtin_id::time_value:
      return conversion::to_time;
    default:
      return std::nullopt;
  }
}

// A stream as the compiler builds it: from() and one step per transformation, shared by the
// variables that extend it (so `b = a |> f()` costs one step, not a copy of a's pipeline).
struct stream_step {
  std::shared_ptr<const stream_step> previous;  // null for from()
  std::string bucket;                           // from()
  location where;                               // from()
  operation op;                                 // not from()
  std::size_t length = 0;                       // operations up to here
};

// Bounds on what one program may build: operations in one pipeline (also the depth of a chain
// of steps) and results.
constexpr std::size_t max_operations = 1000;
constexpr std::size_t max_results = 100;

// What a name or an expression stands for while compiling.
struct binding {
  enum class kind : std::uint8_t { constant, stream, function, builtin };
  kind what = kind::constant;
  value constant;
  std::shared_ptr<const stream_step> stream;
  bool is_yielded = false;         // stream: its last step was yield()
  const node* function = nullptr;  // a function literal of the syntax tree
  const builtin_spec* builtin = nullptr;
};

// A stream's steps as the pipeline the executor runs.
pipeline materialize(const std::shared_ptr<const stream_step>& last) {
  pipeline out;
  std::vector<const stream_step*> steps;
  for (const stream_step* step = last.get(); step != nullptr; step = step->previous.get())
    steps.push_back(step);
  const stream_step& source = *steps.back();
  out.bucket = source.bucket;
  out.where = source.where;
  for (auto it = steps.rbegin() + 1; it != steps.rend(); ++it) out.operations.push_back((*it)->op);
  return out;
}

std::string kind_name(const binding& b) {
  switch (b.what) {
    case binding::kind::stream:
      return "stream";
    case binding::kind::function:
    case binding::kind::builtin:
      return "function";
    case binding::kind::constant:
      break;
  }
  switch (b.constant.kind) {
    case value_kind::single:
      return std::string(type_name(b.constant.data));
    case value_kind::duration:
      return "duration";
    case value_kind::regex:
      return "regexp";
    case value_kind::array:
      return "array";
    case value_kind::record:
      return "record";
  }
  return "value";
}

bool mentions(const node& n, std::string_view name) {
  if (n.kind == node_kind::identifier) return n.text == name;
  if (n.kind == node_kind::record && n.is_with && !n.children.empty() &&
      n.children[0]->text == name)
    return true;
  for (const auto& child : n.children)
    if (child && mentions(*child, name)) return true;
  for (const auto& p : n.properties) {
    if (p.value ? mentions(*p.value, name) : (n.kind == node_kind::record && p.key == name))
      return true;
  }
  for (const auto& s : n.block)
    if (s.value && mentions(*s.value, name)) return true;
  return false;
}

class compiler {
 public:
  explicit compiler(const compile_options& options) : now_ns_(options.now_ns) {
    for (const auto& [name, initial] : options.externs) {
      binding b;
      b.constant = initial;
      scope_.emplace_back(name, std::move(b));
    }
  }

  std::variant<program, error> run(const file& syntax) {
    if (!syntax.imports.empty()) {
      const auto& declaration = syntax.imports.front();
      return compilation_error(declaration.where,
                               "import \"" + declaration.path +
                                   "\" is not supported: " + std::string(supported_summary));
    }
    // `option now` first: now() means the same wherever it is called.
    for (const auto& s : syntax.body) {
      if (s.kind == statement_kind::option && s.name == "now") set_now(s);
      if (error_) return std::move(*error_);
    }
    for (const auto& s : syntax.body) {
      run_statement(s);
      if (error_) return std::move(*error_);
    }
    if (program_.results.empty())
      return error{error_code::invalid,
                   "this Flux program produces no results: end a pipeline with yield() or leave "
                   "it as an expression"};
    for (std::size_t i = 0; i < program_.results.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (program_.results[i].name == program_.results[j].name)
          return error{error_code::invalid,
                       "found duplicate yield name \"" + program_.results[i].name + "\""};
      }
    }
    for (const auto& result : program_.results) {
      bool is_bounded = false;
      for (const auto& op : result.source.operations) {
        if (std::holds_alternative<range_operation>(op.detail)) {
          is_bounded = true;
          break;
        }
        if (!std::holds_alternative<filter_operation>(op.detail)) break;
      }
      if (!is_bounded)
        return error{error_code::invalid, "cannot submit unbounded read to \"" +
                                              result.source.bucket +
                                              "\"; try bounding 'from' with a call to 'range'"};
    }
    program_.now_ns = now_ns_;
    return std::move(program_);
  }

 private:
  void fail(const location& where, std::string_view what) {
    if (!error_) error_ = compilation_error(where, what);
  }

  void set_now(const statement& s) {
    const node* body = s.value.get();
    if (body->kind == node_kind::function) {
      if (!body->properties.empty() || body->is_block || body->children.empty()) {
        fail(s.value->where, "option now must be a function without parameters: () => <time>");
        return;
      }
      body = body->children[0].get();
    }
    const auto b = evaluate(*body);
    if (!b) return;
    const auto* t = b->what == binding::kind::constant && b->constant.kind == value_kind::single
                        ? std::get_if<timestamp>(&b->constant.data)
                        : nullptr;
    if (t == nullptr) {
      fail(body->where, "expected time but found " + kind_name(*b) + " (option now)");
      return;
    }
    now_ns_ = t->ns;
  }

  void run_statement(const statement& s) {
    switch (s.kind) {
      case statement_kind::option:
        if (s.name == "now") return;
        if (s.name.find('.') != std::string::npos) {
          fail(s.name_where, "option " + s.name +
                                 ": assigning a member of an option is not "
                                 "supported");
          return;
        }
        [[fallthrough]];
      case statement_kind::variable: {
        auto b = evaluate(*s.value);
        if (!b) return;
        scope_.emplace_back(s.name, std::move(*b));
        return;
      }
      case statement_kind::expression: {
        auto b = evaluate(*s.value);
        if (!b) return;
        if (b->what == binding::kind::stream && !b->is_yielded)
          add_result("_result", b->stream, s.where);
        return;
      }
      case statement_kind::return_value:
        fail(s.where, "return is only allowed inside a function body");
        return;
    }
  }

  const binding* find(std::string_view name) const {
    for (auto it = scope_.rbegin(); it != scope_.rend(); ++it)
      if (it->first == name) return &it->second;
    return nullptr;
  }

  // A name: the query's variables and options, then extern's, then the universe.
  std::optional<binding> lookup(const std::string& name, const location& where) {
    if (const binding* b = find(name)) return *b;
    for (const auto& spec : builtins) {
      if (spec.name == name) {
        binding b;
        b.what = binding::kind::builtin;
        b.builtin = &spec;
        return b;
      }
    }
    if (name == "true" || name == "false") {
      binding b;
      b.constant = value::of(scalar{name == "true"});
      return b;
    }
    if (name == "inf") {
      binding b;
      b.constant = value::of(duration{0, infinite_ns});
      return b;
    }
    for (const auto unsupported : unsupported_functions) {
      if (unsupported == name) {
        fail(where, "unsupported function " + name + ": " + std::string(supported_summary));
        return std::nullopt;
      }
    }
    fail(where, "undefined identifier " + name);
    return std::nullopt;
  }

  static binding constant(value v) {
    binding b;
    b.constant = std::move(v);
    return b;
  }

  std::optional<binding> evaluate(const node& n) {
    if (error_) return std::nullopt;
    switch (n.kind) {
      case node_kind::identifier:
        return lookup(n.text, n.where);
      case node_kind::string:
        return constant(value::of(scalar{n.text}));
      case node_kind::interpolation:
        fail(n.where, "string interpolation is not supported");
        return std::nullopt;
      case node_kind::integer:
        return constant(value::of(scalar{n.integer}));
      case node_kind::floating:
        return constant(value::of(scalar{n.number}));
      case node_kind::duration:
        return constant(value::of(n.span));
      case node_kind::time:
        return constant(value::of(scalar{timestamp{n.integer}}));
      case node_kind::regex: {
        value v;
        v.kind = value_kind::regex;
        if (const std::string why = compile_regex(n.text, v.regex); !why.empty()) {
          fail(n.where, "regex parse error: " + why);
          return std::nullopt;
        }
        return constant(std::move(v));
      }
      case node_kind::array: {
        value v;
        v.kind = value_kind::array;
        for (const auto& element : n.children) {
          auto b = constant_of(*element);
          if (!b) return std::nullopt;
          v.elements.push_back(std::move(*b));
        }
        return constant(std::move(v));
      }
      case node_kind::record: {
        if (n.is_with) {
          fail(n.where, "a record `with` is only supported as map(fn: (r) => ({r with ...}))");
          return std::nullopt;
        }
        value v;
        v.kind = value_kind::record;
        for (const auto& p : n.properties) {
          std::optional<value> field;
          if (p.value) {
            field = constant_of(*p.value);
          } else {
            auto b = lookup(p.key, p.key_where);
            if (!b) return std::nullopt;
            field = require_constant(*b, p.key_where);
          }
          if (!field) return std::nullopt;
          v.labels.push_back(p.key);
          v.elements.push_back(std::move(*field));
        }
        return constant(std::move(v));
      }
      case node_kind::function: {
        binding b;
        b.what = binding::kind::function;
        b.function = &n;
        return b;
      }
      case node_kind::call:
        return evaluate_call(n, nullptr);
      case node_kind::pipe: {
        auto input = evaluate(*n.children[0]);
        if (!input) return std::nullopt;
        if (input->what != binding::kind::stream) {
          fail(n.children[0]->where,
               "expected a stream of tables on the left of |> but found " + kind_name(*input));
          return std::nullopt;
        }
        return evaluate_call(*n.children[1], &*input);
      }
      case node_kind::member: {
        auto object = evaluate(*n.children[0]);
        if (!object) return std::nullopt;
        if (object->what != binding::kind::constant ||
            object->constant.kind != value_kind::record) {
          fail(n.where,
               "expected record but found " + kind_name(*object) + " (member " + n.text + ")");
          return std::nullopt;
        }
        const value& record = object->constant;
        for (std::size_t i = 0; i < record.labels.size(); ++i)
          if (record.labels[i] == n.text) return constant(record.elements[i]);
        fail(n.where, "record is missing label " + n.text);
        return std::nullopt;
      }
      case node_kind::index: {
        auto array = constant_of(*n.children[0]);
        if (!array) return std::nullopt;
        auto index = constant_of(*n.children[1]);
        if (!index) return std::nullopt;
        const auto* i = std::get_if<std::int64_t>(&index->data);
        if (array->kind != value_kind::array || index->kind != value_kind::single || i == nullptr) {
          fail(n.where, "only arrays indexed by an int are supported");
          return std::nullopt;
        }
        if (*i < 0 || static_cast<std::uint64_t>(*i) >= array->elements.size()) {
          fail(n.where, "index out of bounds: " + std::to_string(*i));
          return std::nullopt;
        }
        return constant(array->elements[static_cast<std::size_t>(*i)]);
      }
      case node_kind::binary:
      case node_kind::logical:
        return evaluate_binary(n);
      case node_kind::unary:
        return evaluate_unary(n);
      case node_kind::conditional: {
        auto test = constant_of(*n.children[0]);
        if (!test) return std::nullopt;
        const auto* b = std::get_if<bool>(&test->data);
        if (test->kind != value_kind::single || (b == nullptr && !is_null(test->data))) {
          fail(n.children[0]->where, "expected bool but found " + kind_name(constant(*test)));
          return std::nullopt;
        }
        return evaluate(b != nullptr && *b ? *n.children[1] : *n.children[2]);
      }
      case node_kind::pipe_receive:
        fail(n.where, "<- is only allowed as a parameter default");
        return std::nullopt;
    }
    fail(n.where, "unsupported expression");
    return std::nullopt;
  }

  std::optional<value> require_constant(const binding& b, const location& where) {
    if (b.what == binding::kind::constant) return b.constant;
    fail(where, "expected a value but found " + kind_name(b));
    return std::nullopt;
  }

  std::optional<value> constant_of(const node& n) {
    auto b = evaluate(n);
    if (!b) return std::nullopt;
    return require_constant(*b, n.where);
  }

  std::optional<binding> evaluate_binary(const node& n) {
    auto lhs = constant_of(*n.children[0]);
    if (!lhs) return std::nullopt;
    if (n.op == operator_kind::logical_and || n.op == operator_kind::logical_or) {
      const auto* left = std::get_if<bool>(&lhs->data);
      if (lhs->kind != value_kind::single || left == nullptr) {
        fail(n.children[0]->where, "expected bool but found " + kind_name(constant(*lhs)));
        return std::nullopt;
      }
      if (n.op == operator_kind::logical_and ? !*left : *left) return constant(*lhs);
      auto rhs = constant_of(*n.children[1]);
      if (!rhs) return std::nullopt;
      if (rhs->kind != value_kind::single || !std::holds_alternative<bool>(rhs->data)) {
        fail(n.children[1]->where, "expected bool but found " + kind_name(constant(*rhs)));
        return std::nullopt;
      }
      return constant(*rhs);
    }
    auto rhs = constant_of(*n.children[1]);
    if (!rhs) return std::nullopt;
    if (n.op == operator_kind::regex_match || n.op == operator_kind::regex_not_match) {
      // Matching constants is never needed, and std::regex can backtrack exponentially on a
      // hostile text: only a row's values are matched (filter(fn: (r) => r.x =~ /re/)).
      fail(n.where, std::string(name_of(n.op)) + " needs a row's column on its left (r.x " +
                        std::string(name_of(n.op)) + " /re/)");
      return std::nullopt;
    }
    if (lhs->kind == value_kind::duration && rhs->kind == value_kind::duration &&
        (n.op == operator_kind::add || n.op == operator_kind::subtract)) {
      const std::int64_t sign = n.op == operator_kind::add ? 1 : -1;
      duration sum;
      if (__builtin_add_overflow(lhs->span.months, sign * rhs->span.months, &sum.months) ||
          __builtin_add_overflow(lhs->span.nanoseconds, sign * rhs->span.nanoseconds,
                                 &sum.nanoseconds)) {
        fail(n.where, "duration overflow");
        return std::nullopt;
      }
      return constant(value::of(sum));
    }
    if (lhs->kind != value_kind::single || rhs->kind != value_kind::single) {
      fail(n.where, "unsupported operands " + kind_name(constant(*lhs)) + " " +
                        std::string(name_of(n.op)) + " " + kind_name(constant(*rhs)));
      return std::nullopt;
    }
    std::variant<scalar, std::string> outcome;
    switch (n.op) {
      case operator_kind::add:
      case operator_kind::subtract:
      case operator_kind::multiply:
      case operator_kind::divide:
      case operator_kind::modulo:
        outcome = arithmetic(n.op, lhs->data, rhs->data);
        break;
      case operator_kind::equal:
      case operator_kind::not_equal:
      case operator_kind::less:
      case operator_kind::less_equal:
      case operator_kind::greater:
      case operator_kind::greater_equal:
        outcome = comparison(n.op, lhs->data, rhs->data);
        break;
      default:
        fail(n.where, "operator " + std::string(name_of(n.op)) + " is not supported");
        return std::nullopt;
    }
    if (const auto* why = std::get_if<std::string>(&outcome)) {
      fail(n.where, *why);
      return std::nullopt;
    }
    return constant(value::of(std::get<scalar>(std::move(outcome))));
  }

  std::optional<binding> evaluate_unary(const node& n) {
    if (n.op == operator_kind::exists) {
      fail(n.where, "exists is only supported on a row's column (exists r.x)");
      return std::nullopt;
    }
    auto operand = constant_of(*n.children[0]);
    if (!operand) return std::nullopt;
    if (n.op == operator_kind::plus) return constant(std::move(*operand));
    if (n.op == operator_kind::negate && operand->kind == value_kind::duration) {
      if (operand->span.nanoseconds == infinite_ns) {
        fail(n.where, "cannot negate inf");
        return std::nullopt;
      }
      return constant(value::of(duration{-operand->span.months, -operand->span.nanoseconds}));
    }
    if (operand->kind != value_kind::single) {
      fail(n.where, "unsupported operand " + std::string(name_of(n.op)) + " " +
                        kind_name(constant(*operand)));
      return std::nullopt;
    }
    if (n.op == operator_kind::logical_not) {
      if (is_null(operand->data)) return constant(std::move(*operand));
      const auto* b = std::get_if<bool>(&operand->data);
      if (b == nullptr) {
        fail(n.where, "expected bool but found " + std::string(type_name(operand->data)));
        return std::nullopt;
      }
      return constant(value::of(scalar{!*b}));
    }
    auto outcome = negation(operand->data);
    if (const auto* why = std::get_if<std::string>(&outcome)) {
      fail(n.where, *why);
      return std::nullopt;
    }
    return constant(value::of(std::get<scalar>(std::move(outcome))));
  }

  // ---- calls

  static const property* argument(const node& call, std::string_view name) {
    for (const auto& p : call.properties)
      if (p.key == name) return &p;
    return nullptr;
  }

  // The argument's value; a shorthand `f(x)` stands for `f(x: x)`.
  std::optional<binding> argument_binding(const property& p) {
    if (p.value) return evaluate(*p.value);
    return lookup(p.key, p.key_where);
  }

  const location& argument_where(const property& p) const {
    return p.value ? p.value->where : p.key_where;
  }

  void wrong_type(const property& p, std::string_view expected, const binding& found) {
    fail(argument_where(p), "expected " + std::string(expected) + " but found " + kind_name(found) +
                                " (argument " + p.key + ")");
  }

  // A scalar argument of type T; absent: `out` keeps its default. False on error.
  template <typename T>
  bool scalar_argument(const node& call, std::string_view name, std::string_view type, T& out) {
    const property* p = argument(call, name);
    if (p == nullptr) return true;
    auto b = argument_binding(*p);
    if (!b) return false;
    const T* found = b->what == binding::kind::constant && b->constant.kind == value_kind::single
                         ? std::get_if<T>(&b->constant.data)
                         : nullptr;
    if (found == nullptr) {
      wrong_type(*p, type, *b);
      return false;
    }
    out = *found;
    return true;
  }

  bool string_argument(const node& call, std::string_view name, std::string& out) {
    return scalar_argument(call, name, "string", out);
  }
  bool bool_argument(const node& call, std::string_view name, bool& out) {
    return scalar_argument(call, name, "bool", out);
  }
  bool int_argument(const node& call, std::string_view name, std::int64_t& out) {
    return scalar_argument(call, name, "int", out);
  }

  bool duration_argument(const node& call, std::string_view name, duration& out) {
    const property* p = argument(call, name);
    if (p == nullptr) return true;
    auto b = argument_binding(*p);
    if (!b) return false;
    if (b->what != binding::kind::constant || b->constant.kind != value_kind::duration) {
      wrong_type(*p, "duration", *b);
      return false;
    }
    out = b->constant.span;
    return true;
  }

  bool strings_argument(const node& call, std::string_view name, std::vector<std::string>& out) {
    const property* p = argument(call, name);
    if (p == nullptr) return true;
    auto b = argument_binding(*p);
    if (!b) return false;
    if (b->what != binding::kind::constant || b->constant.kind != value_kind::array) {
      wrong_type(*p, "[string]", *b);
      return false;
    }
    out.clear();
    for (const auto& element : b->constant.elements) {
      const auto* text =
          element.kind == value_kind::single ? std::get_if<std::string>(&element.data) : nullptr;
      if (text == nullptr) {
        wrong_type(*p, "[string]", *b);
        return false;
      }
      out.push_back(*text);
    }
    return true;
  }

  // range()'s start and stop: a duration from now, a time, or an int of Unix seconds.
  bool time_argument(const node& call, std::string_view name, std::int64_t& out) {
    const property* p = argument(call, name);
    if (p == nullptr) return true;
    auto b = argument_binding(*p);
    if (!b) return false;
    if (b->what == binding::kind::constant) {
      const value& v = b->constant;
      if (v.kind == value_kind::duration) {
        std::optional<std::int64_t> moved;
        if (v.span.nanoseconds != infinite_ns) moved = add_duration(now_ns_, v.span);
        if (!moved) {
          fail(argument_where(*p), "time out of range (argument " + p->key + ")");
          return false;
        }
        out = *moved;
        return true;
      }
      if (v.kind == value_kind::single) {
        if (const auto* t = std::get_if<timestamp>(&v.data)) {
          out = t->ns;
          return true;
        }
        if (const auto* seconds = std::get_if<std::int64_t>(&v.data)) {
          if (__builtin_mul_overflow(*seconds, ns_per_second, &out)) {
            fail(argument_where(*p), "time out of range (argument " + p->key + ")");
            return false;
          }
          return true;
        }
      }
    }
    wrong_type(*p, "time", *b);
    return false;
  }

  // fn: (r) => ...: the function literal an argument names, and its one parameter.
  const node* function_argument(const node& call, std::string_view name, std::string& parameter) {
    const property* p = argument(call, name);
    if (p == nullptr) return nullptr;
    auto b = argument_binding(*p);
    if (!b) return nullptr;
    if (b->what != binding::kind::function) {
      wrong_type(*p, "function", *b);
      return nullptr;
    }
    const node& fn = *b->function;
    if (fn.properties.size() != 1 || fn.properties[0].value) {
      fail(fn.where, std::string(name) +
                         " must be a function of one parameter without default, e.g. (r) => ...");
      return nullptr;
    }
    parameter = fn.properties[0].key;
    if (fn.is_block) {
      if (fn.block.size() != 1 || fn.block[0].kind != statement_kind::return_value) {
        fail(fn.where, "a function body with statements is not supported: use (r) => <expression>");
        return nullptr;
      }
      return fn.block[0].value.get();
    }
    return fn.children[0].get();
  }

  void add_result(std::string name, const std::shared_ptr<const stream_step>& last,
                  const location& where) {
    if (program_.results.size() >= max_results) {
      fail(where, "too many results (at most " + std::to_string(max_results) + ")");
      return;
    }
    program_.results.push_back(result_plan{std::move(name), materialize(last)});
  }

  std::optional<binding> evaluate_call(const node& call, const binding* piped) {
    const node& callee = *call.children[0];
    auto target = evaluate(callee);
    if (!target) return std::nullopt;
    if (target->what == binding::kind::function) {
      fail(call.where, "calling a function defined in the query is not supported: " +
                           std::string(supported_summary));
      return std::nullopt;
    }
    if (target->what != binding::kind::builtin) {
      fail(callee.where, "expected function but found " + kind_name(*target));
      return std::nullopt;
    }
    const builtin_spec& spec = *target->builtin;
    if (piped != nullptr && !spec.is_transformation) {
      fail(call.where, std::string(spec.name) + " does not take piped tables");
      return std::nullopt;
    }
    for (const auto& p : call.properties) {
      if (p.key == "tables" && spec.is_transformation) continue;
      if (!has_word(spec.parameters, p.key)) {
        fail(p.key_where, "found unexpected argument " + p.key);
        return std::nullopt;
      }
    }
    for (std::string_view required = spec.required; !required.empty();) {
      const auto space = required.find(' ');
      const std::string_view name = required.substr(0, space);
      if (argument(call, name) == nullptr) {
        fail(call.where, "missing required argument " + std::string(name));
        return std::nullopt;
      }
      required = space == std::string_view::npos ? std::string_view() : required.substr(space + 1);
    }
    if (!spec.is_transformation) return call_function(spec, call);

    binding out;
    if (const property* tables = argument(call, "tables")) {
      if (piped != nullptr) {
        fail(tables->key_where, "tables is given twice: piped and as an argument");
        return std::nullopt;
      }
      auto b = argument_binding(*tables);
      if (!b) return std::nullopt;
      if (b->what != binding::kind::stream) {
        wrong_type(*tables, "stream", *b);
        return std::nullopt;
      }
      out = std::move(*b);
    } else if (piped != nullptr) {
      out = *piped;
    } else {
      fail(call.where, "missing required argument tables");
      return std::nullopt;
    }
    if (!apply(spec, call, out)) return std::nullopt;
    return out;
  }

  std::optional<binding> call_function(const builtin_spec& spec, const node& call) {
    if (spec.id == builtin_id::from) {
      std::string bucket;
      if (!string_argument(call, "bucket", bucket)) return std::nullopt;
      auto source = std::make_shared<stream_step>();
      source->bucket = std::move(bucket);
      source->where = call.where;
      binding out;
      out.what = binding::kind::stream;
      out.stream = std::move(source);
      return out;
    }
    if (spec.id == builtin_id::now) return constant(value::of(scalar{timestamp{now_ns_}}));
    const auto to = conversion_of(spec.id);
    const property* v = argument(call, "v");
    if (!to || v == nullptr) {
      fail(call.where, "unsupported function " + std::string(spec.name));
      return std::nullopt;
    }
    auto b = argument_binding(*v);
    if (!b) return std::nullopt;
    if (b->what != binding::kind::constant || b->constant.kind != value_kind::single) {
      wrong_type(*v, "a basic type", *b);
      return std::nullopt;
    }
    auto outcome = convert(*to, b->constant.data);
    if (const auto* why = std::get_if<std::string>(&outcome)) {
      fail(call.where, *why);
      return std::nullopt;
    }
    return constant(value::of(std::get<scalar>(std::move(outcome))));
  }

  bool window_durations(const node& call, window_spec& windows, bool is_every_required) {
    const bool has_every = argument(call, "every") != nullptr;
    const bool has_period = argument(call, "period") != nullptr;
    if (is_every_required ? !has_every : (!has_every && !has_period)) {
      fail(call.where, "missing required argument every");
      return false;
    }
    if (!duration_argument(call, "every", windows.every) ||
        !duration_argument(call, "period", windows.period) ||
        !duration_argument(call, "offset", windows.offset))
      return false;
    if (!has_every) windows.every = windows.period;
    if (!has_period) windows.period = windows.every;
    windows.is_infinite =
        windows.every.nanoseconds == infinite_ns || windows.period.nanoseconds == infinite_ns;
    if (windows.is_infinite) return true;
    const auto check = [&](const duration& d, std::string_view name, bool is_offset) {
      const property* p = argument(call, name);
      const location& at = p != nullptr ? argument_where(*p) : call.where;
      if (d.months != 0 && d.nanoseconds != 0) {
        fail(at, "durations mixing months and shorter units are not supported (argument " +
                     std::string(name) + ")");
        return false;
      }
      if (!is_offset &&
          (d.months < 0 || d.nanoseconds < 0 || (d.months == 0 && d.nanoseconds == 0))) {
        fail(at, std::string(name) + " must be positive");
        return false;
      }
      return true;
    };
    if (!check(windows.every, has_every ? "every" : "period", false) ||
        !check(windows.period, has_period ? "period" : "every", false) ||
        (argument(call, "offset") != nullptr && !check(windows.offset, "offset", true)))
      return false;
    if ((windows.every.months != 0) != (windows.period.months != 0)) {
      fail(call.where, "every and period must both be calendar (mo, y) or both not");
      return false;
    }
    return true;
  }

  bool aggregate_arguments(const builtin_spec& spec, const node& call, aggregate_operation& out) {
    out.kind = *aggregate_of(spec.id);
    if (!string_argument(call, "column", out.column)) return false;
    if (spec.id == builtin_id::median) {
      std::string method = "estimate_tdigest";
      if (!string_argument(call, "method", method)) return false;
      if (method == "exact_selector") {
        out.kind = aggregate_kind::median_selector;
      } else if (method != "estimate_tdigest" && method != "exact_mean") {
        fail(argument_where(*argument(call, "method")),
             "median method must be estimate_tdigest, exact_mean or exact_selector");
        return false;
      }
      if (const property* compression = argument(call, "compression")) {
        auto b = argument_binding(*compression);
        if (!b) return false;
        if (b->what != binding::kind::constant || !is_number(b->constant.data)) {
          wrong_type(*compression, "float", *b);
          return false;
        }
      }
    }
    if (spec.id == builtin_id::stddev) {
      std::string mode = "sample";
      if (!string_argument(call, "mode", mode)) return false;
      if (mode != "sample" && mode != "population") {
        fail(argument_where(*argument(call, "mode")), "stddev mode must be sample or population");
        return false;
      }
      out.is_population = mode == "population";
    }
    return true;
  }

  // Applies a transformation to the stream `input`; false on error.
  bool apply(const builtin_spec& spec, const node& call, binding& input) {
    operation op;
    op.name = std::string(spec.name);
    op.where = call.where;
    switch (spec.id) {
      case builtin_id::range: {
        range_operation range;
        range.stop_ns = now_ns_;
        if (!time_argument(call, "start", range.start_ns) ||
            !time_argument(call, "stop", range.stop_ns))
          return false;
        op.detail = range;
        break;
      }
      case builtin_id::filter: {
        filter_operation filter;
        std::string on_empty = "drop";
        if (!string_argument(call, "onEmpty", on_empty)) return false;
        if (on_empty != "drop" && on_empty != "keep") {
          fail(argument_where(*argument(call, "onEmpty")), "onEmpty must be \"drop\" or \"keep\"");
          return false;
        }
        filter.keeps_empty = on_empty == "keep";
        std::string parameter;
        const node* body = function_argument(call, "fn", parameter);
        if (body == nullptr) return false;
        auto predicate = compile_row(*body, parameter, false);
        if (!predicate) return false;
        filter.predicate = std::move(*predicate);
        op.detail = std::move(filter);
        break;
      }
      case builtin_id::mean:
      case builtin_id::sum:
      case builtin_id::count:
      case builtin_id::median:
      case builtin_id::stddev:
      case builtin_id::spread:
      case builtin_id::min:
      case builtin_id::max:
      case builtin_id::first:
      case builtin_id::last: {
        aggregate_operation aggregate;
        if (!aggregate_arguments(spec, call, aggregate)) return false;
        op.detail = std::move(aggregate);
        break;
      }
      case builtin_id::aggregate_window: {
        aggregate_window_operation window;
        if (!window_durations(call, window.windows, true)) return false;
        const property* fn = argument(call, "fn");
        auto b = argument_binding(*fn);
        if (!b) return false;
        const auto kind =
            b->what == binding::kind::builtin ? aggregate_of(b->builtin->id) : std::nullopt;
        if (!kind) {
          fail(argument_where(*fn),
               "aggregateWindow(fn:) must be mean, sum, count, median, stddev, spread, min, max, "
               "first or last (functions written in the query are not supported)");
          return false;
        }
        window.fn.kind = *kind;
        if (!string_argument(call, "column", window.fn.column) ||
            !bool_argument(call, "createEmpty", window.creates_empty) ||
            !string_argument(call, "timeSrc", window.time_source) ||
            !string_argument(call, "timeDst", window.time_destination))
          return false;
        if (window.time_source != "_start" && window.time_source != "_stop") {
          fail(argument_where(*argument(call, "timeSrc")),
               "timeSrc must be \"_start\" or \"_stop\"");
          return false;
        }
        op.detail = std::move(window);
        break;
      }
      case builtin_id::window: {
        window_operation window;
        if (!window_durations(call, window.windows, false) ||
            !bool_argument(call, "createEmpty", window.creates_empty) ||
            !string_argument(call, "timeColumn", window.time_column) ||
            !string_argument(call, "startColumn", window.start_column) ||
            !string_argument(call, "stopColumn", window.stop_column))
          return false;
        op.detail = std::move(window);
        break;
      }
      case builtin_id::group: {
        group_operation group;
        std::string mode = "by";
        if (!strings_argument(call, "columns", group.columns) ||
            !string_argument(call, "mode", mode))
          return false;
        if (mode != "by" && mode != "except") {
          fail(argument_where(*argument(call, "mode")), "mode must be \"by\" or \"except\"");
          return false;
        }
        group.is_except = mode == "except";
        op.detail = std::move(group);
        break;
      }
      case builtin_id::keep:
      case builtin_id::drop: {
        columns_operation columns;
        columns.is_keep = spec.id == builtin_id::keep;
        const bool has_columns = argument(call, "columns") != nullptr;
        const bool has_fn = argument(call, "fn") != nullptr;
        if (has_columns == has_fn) {
          fail(call.where, std::string(spec.name) + " needs either columns or fn");
          return false;
        }
        if (has_columns) {
          if (!strings_argument(call, "columns", columns.columns)) return false;
        } else {
          std::string parameter;
          const node* body = function_argument(call, "fn", parameter);
          if (body == nullptr) return false;
          auto predicate = compile_row(*body, parameter, true);
          if (!predicate) return false;
          columns.predicate = std::move(*predicate);
        }
        op.detail = std::move(columns);
        break;
      }
      case builtin_id::sort: {
        sort_operation sort;
        if (!strings_argument(call, "columns", sort.columns) ||
            !bool_argument(call, "desc", sort.is_descending))
          return false;
        op.detail = std::move(sort);
        break;
      }
      case builtin_id::limit:
      case builtin_id::tail: {
        limit_operation limit;
        limit.is_tail = spec.id == builtin_id::tail;
        if (!int_argument(call, "n", limit.n) || !int_argument(call, "offset", limit.offset))
          return false;
        if (limit.n < 0 || limit.offset < 0) {
          fail(call.where, "n and offset must not be negative");
          return false;
        }
        op.detail = limit;
        break;
      }
      case builtin_id::yield: {
        std::string name = "_result";
        if (!string_argument(call, "name", name)) return false;
        add_result(std::move(name), input.stream, call.where);
        input.is_yielded = true;
        return !error_;
      }
      case builtin_id::pivot: {
        pivot_operation pivot;
        if (!strings_argument(call, "rowKey", pivot.row_key) ||
            !strings_argument(call, "columnKey", pivot.column_key) ||
            !string_argument(call, "valueColumn", pivot.value_column))
          return false;
        if (pivot.column_key.empty()) {
          fail(argument_where(*argument(call, "columnKey")), "columnKey must not be empty");
          return false;
        }
        op.detail = std::move(pivot);
        break;
      }
      case builtin_id::map: {
        bool merge_key = false;
        if (!bool_argument(call, "mergeKey", merge_key)) return false;
        std::string parameter;
        const node* body = function_argument(call, "fn", parameter);
        if (body == nullptr) return false;
        if (body->kind != node_kind::record || !body->is_with ||
            body->children[0]->text != parameter) {
          fail(body->where, "map(fn:) must return ({" + parameter + " with ...}): other " +
                                "records are not supported");
          return false;
        }
        map_operation map;
        for (const auto& p : body->properties) {
          if (!p.value) {
            fail(p.key_where, "a property needs a value here: " + p.key + ": ...");
            return false;
          }
          auto e = compile_row(*p.value, parameter, false);
          if (!e) return false;
          map.assignments.emplace_back(p.key, std::move(*e));
        }
        op.detail = std::move(map);
        break;
      }
      case builtin_id::to_float:
      case builtin_id::to_int: {
        map_operation map;
        row_expression column;
        column.op = row_op::column;
        column.column = "_value";
        column.where = call.where;
        row_expression converted;
        converted.op = row_op::convert;
        converted.to = spec.id == builtin_id::to_float ? conversion::to_float : conversion::to_int;
        converted.where = call.where;
        converted.operands.push_back(std::move(column));
        map.assignments.emplace_back("_value", std::move(converted));
        op.detail = std::move(map);
        break;
      }
      default:
        fail(call.where, "unsupported function " + std::string(spec.name));
        return false;
    }
    if (input.stream->length >= max_operations) {
      fail(call.where,
           "pipeline too long (at most " + std::to_string(max_operations) + " operations)");
      return false;
    }
    auto step = std::make_shared<stream_step>();
    step->previous = std::move(input.stream);
    step->op = std::move(op);
    step->length = step->previous->length + 1;
    input.stream = std::move(step);
    input.is_yielded = false;
    return true;
  }

  // ---- row functions

  // The body of (parameter) => ... as a row expression. In a column function (keep/drop's fn)
  // the parameter is the column's name; in a row function, r.x and r["x"] are columns.
  std::optional<row_expression> compile_row(const node& n, const std::string& parameter,
                                            bool is_column_function) {
    if (error_) return std::nullopt;
    row_expression out;
    out.where = n.where;
    if (!mentions(n, parameter)) {
      auto v = constant_of(n);
      if (!v) return std::nullopt;
      if (v->kind != value_kind::single) {
        fail(n.where, "a " + kind_name(constant(*v)) + " cannot be used here");
        return std::nullopt;
      }
      out.op = row_op::literal;
      out.literal = std::move(v->data);
      return out;
    }
    const auto operand = [&](const node& child) {
      return compile_row(child, parameter, is_column_function);
    };
    switch (n.kind) {
      case node_kind::identifier:
        if (is_column_function) {
          out.op = row_op::parameter;
          return out;
        }
        fail(n.where, "use " + parameter + ".<column> or " + parameter +
                          "[\"<column>\"]: the row itself is not supported here");
        return std::nullopt;
      case node_kind::member:
        if (!is_column_function && n.children[0]->kind == node_kind::identifier &&
            n.children[0]->text == parameter) {
          out.op = row_op::column;
          out.column = n.text;
          return out;
        }
        fail(n.where, "unsupported member expression");
        return std::nullopt;
      case node_kind::logical: {
        auto lhs = operand(*n.children[0]);
        if (!lhs) return std::nullopt;
        auto rhs = operand(*n.children[1]);
        if (!rhs) return std::nullopt;
        out.op = n.op == operator_kind::logical_and ? row_op::logical_and : row_op::logical_or;
        out.operands.push_back(std::move(*lhs));
        out.operands.push_back(std::move(*rhs));
        return out;
      }
      case node_kind::binary: {
        auto lhs = operand(*n.children[0]);
        if (!lhs) return std::nullopt;
        if (n.op == operator_kind::regex_match || n.op == operator_kind::regex_not_match) {
          const node& pattern = *n.children[1];
          if (mentions(pattern, parameter)) {
            fail(pattern.where, "the right side of " + std::string(name_of(n.op)) +
                                    " must be a regex, not a column");
            return std::nullopt;
          }
          auto v = constant_of(pattern);
          if (!v) return std::nullopt;
          if (v->kind != value_kind::regex) {
            fail(pattern.where, "expected regexp but found " + kind_name(constant(*v)));
            return std::nullopt;
          }
          out.op =
              n.op == operator_kind::regex_match ? row_op::regex_match : row_op::regex_not_match;
          out.regex = std::move(v->regex);
          out.operands.push_back(std::move(*lhs));
          return out;
        }
        auto rhs = operand(*n.children[1]);
        if (!rhs) return std::nullopt;
        switch (n.op) {
          case operator_kind::equal:
            out.op = row_op::equal;
            break;
          case operator_kind::not_equal:
            out.op = row_op::not_equal;
            break;
          case operator_kind::less:
            out.op = row_op::less;
            break;
          case operator_kind::less_equal:
            out.op = row_op::less_equal;
            break;
          case operator_kind::greater:
            out.op = row_op::greater;
            break;
          case operator_kind::greater_equal:
            out.op = row_op::greater_equal;
            break;
          case operator_kind::add:
            out.op = row_op::add;
            break;
          case operator_kind::subtract:
            out.op = row_op::subtract;
            break;
          case operator_kind::multiply:
            out.op = row_op::multiply;
            break;
          case operator_kind::divide:
            out.op = row_op::divide;
            break;
          case operator_kind::modulo:
            out.op = row_op::modulo;
            break;
          default:
            fail(n.where, "operator " + std::string(name_of(n.op)) + " is not supported");
            return std::nullopt;
        }
        out.operands.push_back(std::move(*lhs));
        out.operands.push_back(std::move(*rhs));
        return out;
      }
      case node_kind::unary: {
        const node& child = *n.children[0];
        if (n.op == operator_kind::exists) {
          if (is_column_function || child.kind != node_kind::member ||
              child.children[0]->kind != node_kind::identifier ||
              child.children[0]->text != parameter) {
            fail(n.where, "exists needs a column: exists " + parameter + ".<column>");
            return std::nullopt;
          }
        }
        auto inner = operand(child);
        if (!inner) return std::nullopt;
        if (n.op == operator_kind::plus) return inner;
        out.op = n.op == operator_kind::logical_not ? row_op::logical_not
                 : n.op == operator_kind::exists    ? row_op::exists
                                                    : row_op::negate;
        out.operands.push_back(std::move(*inner));
        return out;
      }
      case node_kind::conditional: {
        out.op = row_op::conditional;
        for (const auto& child : n.children) {
          auto e = operand(*child);
          if (!e) return std::nullopt;
          out.operands.push_back(std::move(*e));
        }
        return out;
      }
      case node_kind::call: {
        const node& callee = *n.children[0];
        if (callee.kind != node_kind::identifier || callee.text == parameter) {
          fail(n.where, "unsupported call in a row function");
          return std::nullopt;
        }
        auto target = lookup(callee.text, callee.where);
        if (!target) return std::nullopt;
        const auto to = target->what == binding::kind::builtin ? conversion_of(target->builtin->id)
                                                               : std::nullopt;
        if (!to) {
          fail(n.where,
               "only float(), int(), uint(), string(), bool() and time() can be called "
               "on a row's values");
          return std::nullopt;
        }
        const property* v = argument(n, "v");
        for (const auto& p : n.properties) {
          if (p.key != "v") {
            fail(p.key_where, "found unexpected argument " + p.key);
            return std::nullopt;
          }
        }
        if (v == nullptr || !v->value) {
          fail(n.where, "missing required argument v");
          return std::nullopt;
        }
        auto inner = operand(*v->value);
        if (!inner) return std::nullopt;
        out.op = row_op::convert;
        out.to = *to;
        out.operands.push_back(std::move(*inner));
        return out;
      }
      default:
        fail(n.where, "unsupported expression in a row function");
        return std::nullopt;
    }
  }

  std::int64_t now_ns_;
  std::vector<std::pair<std::string, binding>> scope_;
  program program_;
  std::optional<error> error_;
};

}  // namespace

std::variant<program, error> compile(const file& syntax, const compile_options& options) {
  compiler c(options);
  return c.run(syntax);
}

std::variant<program, error> parse_program(std::string_view text, const compile_options& options,
                                           const parse_limits& limits) {
  auto parsed = parse(text, limits);
  if (auto* failure = std::get_if<error>(&parsed)) return std::move(*failure);
  return compile(std::get<file>(parsed), options);
}

std::variant<file, error> parse(std::string_view text, const parse_limits& limits) {
  if (text.size() > limits.max_text_bytes)
    return error{error_code::invalid, "compilation failed: query too large (" +
                                          std::to_string(text.size()) + " bytes, at most " +
                                          std::to_string(limits.max_text_bytes) + ")"};
  parser p(text, limits);
  return p.run();
}

}  // namespace nimbus::tsdb::flux
