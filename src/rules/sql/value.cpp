#include "rules/sql/value.hpp"

#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <system_error>

#include <boost/json/array.hpp>
#include <boost/json/kind.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string_view.hpp>

namespace nimbus::rules::sql {
namespace {

namespace json = boost::json;

bool is_json_number(const json::value& j) {
  return j.is_int64() || j.is_uint64() || j.is_double();
}

double as_double(const json::value& j) {
  if (j.is_int64()) return static_cast<double>(j.get_int64());
  if (j.is_uint64()) return static_cast<double>(j.get_uint64());
  return j.get_double();
}

// Integers compare exactly, whatever mix of int64 and uint64 holds them; anything with a
// Decimal in it compares as doubles (AWS converts the Int to a Decimal first).
bool json_numbers_equal(const json::value& a, const json::value& b) {
  if (a.is_int64() && b.is_int64()) return a.get_int64() == b.get_int64();
  if (a.is_uint64() && b.is_uint64()) return a.get_uint64() == b.get_uint64();
  if (a.is_int64() && b.is_uint64())
    return a.get_int64() >= 0 && static_cast<std::uint64_t>(a.get_int64()) == b.get_uint64();
  if (a.is_uint64() && b.is_int64())
    return b.get_int64() >= 0 && static_cast<std::uint64_t>(b.get_int64()) == a.get_uint64();
  return as_double(a) == as_double(b);
}

template <class Integer>
void append_integer(Integer i, std::string& out) {
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, i);
  out.append(buffer, result.ptr);
}

void write_quoted(std::string_view text, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += hex[(static_cast<unsigned char>(c) >> 4) & 0xF];
          out += hex[static_cast<unsigned char>(c) & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::string_view type_name(sql_type type) {
  switch (type) {
    case sql_type::undefined:
      return "Undefined";
    case sql_type::null:
      return "Null";
    case sql_type::boolean:
      return "Boolean";
    case sql_type::integer:
      return "Int";
    case sql_type::decimal:
      return "Decimal";
    case sql_type::string:
      return "String";
    case sql_type::array:
      return "Array";
    case sql_type::object:
      return "Object";
  }
  return "Undefined";
}

sql_type value::type() const {
  if (!is_defined_) return sql_type::undefined;
  switch (json_.kind()) {
    case json::kind::null:
      return sql_type::null;
    case json::kind::bool_:
      return sql_type::boolean;
    case json::kind::int64:
      return sql_type::integer;
    case json::kind::uint64:
      return sql_type::decimal;  // past int64: beyond our Int
    case json::kind::double_:
      return sql_type::decimal;
    case json::kind::string:
      return sql_type::string;
    case json::kind::array:
      return sql_type::array;
    case json::kind::object:
      return sql_type::object;
  }
  return sql_type::undefined;
}

value make_int(std::int64_t i) {
  return value(json::value(i));
}

value make_bool(bool b) {
  return value(json::value(b));
}

value make_null() {
  return value(json::value(nullptr));
}

bool is_whole_int(double d) {
  return std::isfinite(d) && std::trunc(d) == d && d >= -9223372036854775808.0 &&
         d < 9223372036854775808.0;
}

value make_decimal(double d, bool whole_as_int) {
  if (!std::isfinite(d)) return {};
  if (whole_as_int && is_whole_int(d)) return make_int(static_cast<std::int64_t>(d));
  return value(json::value(d));
}

value make_string(std::string_view text, const json::storage_ptr& storage) {
  return value(json::value(json::string_view(text.data(), text.size()), storage));
}

void normalize_number(value& v, bool whole_as_int) {
  if (!whole_as_int || v.is_undefined() || !v.json().is_double()) return;
  const double d = v.json().get_double();
  if (is_whole_int(d)) v = make_int(static_cast<std::int64_t>(d));
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<double> parse_decimal(std::string_view text) {
  std::size_t i = 0;
  const auto skip_digits = [&text, &i] {
    const std::size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    return i > start;
  };
  if (i < text.size() && text[i] == '-') ++i;
  if (!skip_digits()) return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (!skip_digits()) return std::nullopt;
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && text[i] == '-') ++i;
    if (!skip_digits()) return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  double d = 0;
  const char* end = text.data() + text.size();
  auto result = std::from_chars(text.data(), end, d);
  if (result.ec != std::errc() || result.ptr != end || !std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<number> to_number(const value& v) {
  if (v.is_undefined()) return std::nullopt;
  const json::value& j = v.json();
  switch (j.kind()) {
    case json::kind::int64:
      return number{true, j.get_int64(), 0.0};
    case json::kind::uint64:
      return number{false, 0, static_cast<double>(j.get_uint64())};
    case json::kind::double_:
      return number{false, 0, j.get_double()};
    case json::kind::string:
      if (auto d = parse_decimal(view_of(j.get_string()))) return number{false, 0, *d};
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::int64_t truncate_to_int(double d) {
  if (std::isnan(d)) return 0;
  if (d >= 9223372036854775807.0) return std::numeric_limits<std::int64_t>::max();
  if (d <= -9223372036854775808.0) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(d);
}

std::optional<std::int64_t> to_int(const value& v) {
  auto n = to_number(v);
  if (!n) return std::nullopt;
  return n->is_int ? n->int_value : truncate_to_int(n->decimal_value);
}

std::optional<bool> to_boolean(const value& v) {
  if (v.is_undefined()) return std::nullopt;
  const json::value& j = v.json();
  if (j.is_bool()) return j.get_bool();
  if (j.is_string()) {
    const std::string_view s = view_of(j.get_string());
    if (equals_ignore_case(s, "true")) return true;
    if (equals_ignore_case(s, "false")) return false;
  }
  return std::nullopt;
}

bool append_string(const value& v, bool whole_as_int, std::string& out, std::size_t max_bytes) {
  if (v.is_undefined()) return false;
  const json::value& j = v.json();
  switch (j.kind()) {
    case json::kind::null:
      return false;
    case json::kind::bool_:
      out += j.get_bool() ? "true" : "false";
      return true;
    case json::kind::int64:
      append_integer(j.get_int64(), out);
      return true;
    case json::kind::uint64:
      append_integer(j.get_uint64(), out);
      return true;
    case json::kind::double_:
      write_decimal(j.get_double(), whole_as_int, out);
      return true;
    case json::kind::string:
      out.append(view_of(j.get_string()));
      return true;
    case json::kind::array:
    case json::kind::object:
      write_json(j, whole_as_int, out, max_bytes);  // cut short: the caller sees it as too long
      return true;
  }
  return false;
}

bool json_equals(const json::value& a, const json::value& b) {
  const bool a_is_number = is_json_number(a);
  const bool b_is_number = is_json_number(b);
  if (a_is_number || b_is_number) return a_is_number && b_is_number && json_numbers_equal(a, b);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case json::kind::null:
      return true;
    case json::kind::bool_:
      return a.get_bool() == b.get_bool();
    case json::kind::string:
      return view_of(a.get_string()) == view_of(b.get_string());
    case json::kind::array: {
      const json::array& x = a.get_array();
      const json::array& y = b.get_array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!json_equals(x[i], y[i])) return false;
      return true;
    }
    case json::kind::object: {
      const json::object& x = a.get_object();
      const json::object& y = b.get_object();
      if (x.size() != y.size()) return false;
      for (const auto& member : x) {
        const json::value* other = y.if_contains(member.key());
        if (other == nullptr || !json_equals(member.value(), *other)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

std::optional<bool> sql_equals(const value& a, const value& b) {
  if (a.is_undefined() || b.is_undefined()) return std::nullopt;
  return json_equals(a.json(), b.json());
}

std::optional<int> compare_numbers(const value& a, const value& b) {
  auto x = to_number(a);
  auto y = to_number(b);
  if (!x || !y) return std::nullopt;
  if (x->is_int && y->is_int)
    return x->int_value < y->int_value ? -1 : (x->int_value > y->int_value ? 1 : 0);
  const double p = x->as_double();
  const double q = y->as_double();
  return p < q ? -1 : (p > q ? 1 : 0);
}

void write_decimal(double d, bool whole_as_int, std::string& out) {
  if (!std::isfinite(d)) {
    out += "null";  // not reachable through make_decimal; JSON has no other spelling for it
    return;
  }
  if (whole_as_int && is_whole_int(d)) {
    append_integer(static_cast<std::int64_t>(d), out);
    return;
  }
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, d);  // shortest round trip
  const std::string_view text(buffer, static_cast<std::size_t>(result.ptr - buffer));
  out.append(text);
  // A Decimal stays recognisable as one: 10.0, not 10.
  if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

bool write_json(const json::value& j, bool whole_as_int, std::string& out, std::size_t max_bytes) {
  switch (j.kind()) {
    case json::kind::null:
      out += "null";
      break;
    case json::kind::bool_:
      out += j.get_bool() ? "true" : "false";
      break;
    case json::kind::int64:
      append_integer(j.get_int64(), out);
      break;
    case json::kind::uint64:
      append_integer(j.get_uint64(), out);
      break;
    case json::kind::double_:
      write_decimal(j.get_double(), whole_as_int, out);
      break;
    case json::kind::string:
      write_quoted(view_of(j.get_string()), out);
      break;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const json::value& element : j.get_array()) {
        if (!first) out += ',';
        first = false;
        if (!write_json(element, whole_as_int, out, max_bytes)) return false;
      }
      out += ']';
      break;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& member : j.get_object()) {
        if (!first) out += ',';
        first = false;
        write_quoted(std::string_view(member.key().data(), member.key().size()), out);
        out += ':';
        if (!write_json(member.value(), whole_as_int, out, max_bytes)) return false;
      }
      out += '}';
      break;
    }
  }
  return out.size() <= max_bytes;
}

}  // namespace nimbus::rules::sql
