// JSON as Python's json.dumps writes it (bridge/python_json.hpp), checked against Boost.JSON's
// own parser. For arbitrary bytes:
// - redump_python accepts what Boost.JSON parses (same depth limit), except numbers past a
//   double's range (Python's Infinity, which is not JSON); what it writes parses to the same
//   value (doubles within an ulp or two: Boost 1.81's reading is not correctly rounded), is a
//   fixed point (redumped again, the same text; where Boost reads a number as NaN or infinite,
//   "0e400" among them, only a finite value is asked of redump_python), and follows json.dumps's
//   rules: printable ASCII only, ", " and ": " and no other space, escapes \" \\ \n \r \t \b \f and
//   lowercase \uXXXX (surrogate pairs), floats as repr() writes them;
// - the top-level members point at their values' text, the last of duplicates found;
// - append_python_string of the bytes parses back to them (bytes that are not UTF-8: U+FFFD);
// - append_python_float of each finite double in the bytes reads back to the same double.
#include <boost/json.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "bridge/python_json.hpp"
#include "core/json_string.hpp"

namespace json = boost::json;
using nimbus::bridge::append_python_float;
using nimbus::bridge::append_python_string;
using nimbus::bridge::python_json;
using nimbus::bridge::redump_python;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

std::optional<json::value> parse(std::string_view text) {
  json::parse_options options;
  options.max_depth = 512;  // as redump_python
  json::error_code ec;
  auto value = json::parse(text, ec, {}, options);
  if (ec) return std::nullopt;
  return value;
}

// Doubles in the order of their bit patterns, so neighbours differ by one.
std::int64_t ordered(double d) {
  std::int64_t bits = 0;
  std::memcpy(&bits, &d, sizeof bits);
  return bits < 0 ? std::numeric_limits<std::int64_t>::min() - bits : bits;
}

// Boost.JSON 1.81 does not round every number correctly: it reads up to 2 ulps either side
// ("-0.0...010008446744073709551615" 2 below, its repr "-1.000844674407371e-28" 1 above), so two
// of its readings of one value (the input's digits, redump_python's correct repr of them) may be
// 4 apart.
bool close_doubles(double a, double b) {
  if (a == b) return true;  // 0.0 == -0.0 too
  if (std::isnan(a) || std::isnan(b)) return false;
  const std::int64_t x = ordered(a);
  const std::int64_t y = ordered(b);
  return (x > y ? static_cast<std::uint64_t>(x) - static_cast<std::uint64_t>(y)
                : static_cast<std::uint64_t>(y) - static_cast<std::uint64_t>(x)) <= 4;
}

// `a` is Boost's reading of the input, `b` of what redump_python wrote.
bool same(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_double() != b.is_double()) return false;
    // Boost 1.81 reads extreme exponents wrongly ("0e400" as NaN; Python and from_chars: 0.0):
    // its non-finite readings are no oracle, except that an integer past a double's range
    // (Python keeps its digits, and so does redump_python) reads as the same infinity.
    if (a.is_double() && !std::isfinite(a.get_double()))
      return a.get_double() == b.get_double() || std::isfinite(b.get_double());
    if (a.is_double()) return close_doubles(a.get_double(), b.get_double());
    if (a.is_int64() && b.is_int64()) return a.get_int64() == b.get_int64();
    if (a.is_uint64() && b.is_uint64()) return a.get_uint64() == b.get_uint64();
    return false;  // the same digits are read as the same kind
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case json::kind::null:
      return true;
    case json::kind::bool_:
      return a.get_bool() == b.get_bool();
    case json::kind::string:
      return a.get_string() == b.get_string();
    case json::kind::array: {
      const auto& x = a.get_array();
      const auto& y = b.get_array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!same(x[i], y[i])) return false;
      return true;
    }
    case json::kind::object: {
      const auto& x = a.get_object();
      const auto& y = b.get_object();
      if (x.size() != y.size()) return false;
      for (auto i = x.begin(), j = y.begin(); i != x.end(); ++i, ++j)
        if (i->key() != j->key() || !same(i->value(), j->value())) return false;
      return true;
    }
    default:
      return false;
  }
}

bool has_huge_double(const json::value& v) {
  if (v.is_double()) return !std::isfinite(v.get_double()) || std::fabs(v.get_double()) >= 1e308;
  if (v.is_array()) {
    for (const auto& item : v.get_array())
      if (has_huge_double(item)) return true;
  }
  if (v.is_object()) {
    for (const auto& member : v.get_object())
      if (has_huge_double(member.value())) return true;
  }
  return false;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool all_digits(std::string_view s) {
  for (const char c : s)
    if (!is_digit(c)) return false;
  return true;
}

// A number token as Python writes an int or repr() a float.
void check_number(std::string_view token) {
  if (token.starts_with('-')) token.remove_prefix(1);
  check(!token.empty() && is_digit(token[0]));
  const auto e = token.find('e');
  const auto dot = token.find('.');
  if (e == std::string_view::npos && dot == std::string_view::npos) {  // an int: as written
    check(all_digits(token) && (token == "0" || token[0] != '0'));
    return;
  }
  if (e != std::string_view::npos) {  // d[.ddd]e[+-]XX, for exponents < -4 or >= 16
    const auto mantissa = token.substr(0, e);
    const auto exponent = token.substr(e + 1);
    check(mantissa[0] != '0');
    if (mantissa.size() > 1) {
      check(mantissa[1] == '.' && mantissa.size() > 2 && all_digits(mantissa.substr(2)) &&
            mantissa.back() != '0');
    }
    check(exponent.size() >= 3 && (exponent[0] == '+' || exponent[0] == '-') &&
          all_digits(exponent.substr(1)));
    check(exponent.size() == 3 || exponent[1] != '0');
    int value = 0;
    std::from_chars(exponent.data() + 1, exponent.data() + exponent.size(), value);
    if (exponent[0] == '-') value = -value;
    check(value < -4 || value >= 16);
    return;
  }
  // Positional: at most 16 digits before the point, no needless zeros, 1e-4 <= |x| or x == 0.
  const auto whole = token.substr(0, dot);
  const auto fraction = token.substr(dot + 1);
  check(all_digits(whole) && all_digits(fraction) && !fraction.empty() && whole.size() <= 16);
  check(whole == "0" || whole[0] != '0');
  check(fraction == "0" || fraction.back() != '0');
  if (whole == "0" && fraction != "0") check(fraction.find_first_not_of('0') < 4);
}

bool is_hex_lower(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f');
}

// json.dumps's layout of a whole document.
void check_python_layout(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    check(c >= 0x20 && c < 0x7F);
    if (c == '"') {
      ++i;
      while (true) {
        check(i < text.size());
        const char s = text[i];
        check(s >= 0x20 && s < 0x7F);
        if (s == '"') break;
        if (s != '\\') {
          ++i;
          continue;
        }
        check(i + 1 < text.size());
        const char escaped = text[i + 1];
        if (escaped != 'u') {
          check(std::string_view("\"\\nrtbf").find(escaped) != std::string_view::npos);
          i += 2;
          continue;
        }
        check(i + 6 <= text.size());
        unsigned unit = 0;
        for (std::size_t k = i + 2; k < i + 6; ++k) {
          check(is_hex_lower(text[k]));
          unit = unit * 16 +
                 static_cast<unsigned>(is_digit(text[k]) ? text[k] - '0' : text[k] - 'a' + 10);
        }
        // Printable ASCII is written as itself; \n and the like by their short escape.
        check(unit >= 0x7F ||
              (unit < 0x20 && std::string_view("\n\r\t\b\f").find(static_cast<char>(unit)) ==
                                  std::string_view::npos));
        check(unit < 0xDC00 || unit > 0xDFFF);  // a low surrogate only after a high one
        i += 6;
        if (unit >= 0xD800 && unit <= 0xDBFF) {
          check(i + 6 <= text.size() && text.substr(i, 2) == "\\u");
          unsigned low = 0;
          for (std::size_t k = i + 2; k < i + 6; ++k) {
            check(is_hex_lower(text[k]));
            low = low * 16 +
                  static_cast<unsigned>(is_digit(text[k]) ? text[k] - '0' : text[k] - 'a' + 10);
          }
          check(low >= 0xDC00 && low <= 0xDFFF);
          i += 6;
        }
      }
      ++i;  // the closing quote
      continue;
    }
    if (c == ',' || c == ':') {
      check(i + 1 < text.size() && text[i + 1] == ' ');
      check(i + 2 < text.size() && text[i + 2] != ' ');
      i += 2;
      continue;
    }
    check(c != ' ');  // no space but after , and :
    if (c == '-' || is_digit(c)) {
      std::size_t end = i + 1;
      while (end < text.size() && (is_digit(text[end]) || text[end] == '.' || text[end] == 'e' ||
                                   text[end] == '+' || text[end] == '-'))
        ++end;
      check_number(text.substr(i, end - i));
      i = end;
      continue;
    }
    check(std::string_view("{}[]truefalsn").find(c) != std::string_view::npos);
    ++i;
  }
}

void check_redump(std::string_view input) {
  const auto original = parse(input);
  const auto redumped = redump_python(input);
  if (!redumped) {
    // Only numbers out of a double's range (Python's Infinity) separate the two readers.
    check(!original || has_huge_double(*original));
    return;
  }
  check(original.has_value());
  const auto& doc = *redumped;
  const auto reread = parse(doc.text);
  check(reread.has_value() && same(*original, *reread));
  check_python_layout(doc.text);
  const auto again = redump_python(doc.text);
  check(again.has_value() && again->text == doc.text);

  check(doc.is_object == original->is_object());
  if (!doc.is_object) {
    check(doc.members.empty());
    return;
  }
  const auto& object = original->get_object();
  check(doc.members.size() >= object.size());
  for (const auto& member : doc.members) {
    check(member.begin <= member.end && member.end <= doc.text.size());
    check(object.contains(member.key));
    const auto value = parse(doc.value_text(member));
    check(value.has_value());
    check(member.string_value.has_value() == value->is_string());
    if (member.string_value) check(*member.string_value == value->get_string());
  }
  for (const auto& [key, value] : object) {
    const auto* found = doc.find(key);
    check(found != nullptr);
    const auto member_value = parse(doc.value_text(*found));
    check(member_value.has_value() && same(value, *member_value));  // the last of duplicates
  }
}

void check_string(std::string_view bytes) {
  std::string written;
  append_python_string(written, bytes);
  check_python_layout(written);
  const auto value = parse(written);
  check(value.has_value() && value->is_string());
  std::string expected;
  for (std::size_t at = 0; at < bytes.size();) {
    const std::size_t length = nimbus::core::utf8_sequence(bytes, at);
    if (length == 0) {
      expected += "\xEF\xBF\xBD";
      ++at;
    } else {
      expected.append(bytes.substr(at, length));
      at += length;
    }
  }
  check(value->get_string() == expected);
}

void check_floats(std::string_view bytes) {
  for (std::size_t at = 0; at + sizeof(double) <= bytes.size() && at < 64; at += sizeof(double)) {
    double d = 0;
    std::memcpy(&d, bytes.data() + at, sizeof d);
    if (!std::isfinite(d)) continue;
    std::string written;
    append_python_float(written, d);
    check_number(written);
    double back = 0;
    const auto [end, error] =
        std::from_chars(written.data(), written.data() + written.size(), back);
    check(error == std::errc() && end == written.data() + written.size());
    check(std::memcmp(&back, &d, sizeof d) == 0);  // bit for bit, -0.0 included
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_redump(input);
  check_string(input);
  check_floats(input);
  return 0;
}
