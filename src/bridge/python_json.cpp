#include "bridge/python_json.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <system_error>

#include "core/json_string.hpp"

namespace nimbus::bridge {

namespace json = boost::json;

namespace {

constexpr std::string_view hex_digits = "0123456789abcdef";

void append_u_escape(std::string& out, std::uint32_t unit) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out.push_back(hex_digits[(unit >> shift) & 0xF]);
}

std::uint32_t code_point(std::string_view text, std::size_t at, std::size_t length) {
  const auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(text[at + k]));
  };
  if (length == 2) return (byte(0) & 0x1F) << 6 | (byte(1) & 0x3F);
  if (length == 3) return (byte(0) & 0x0F) << 12 | (byte(1) & 0x3F) << 6 | (byte(2) & 0x3F);
  return (byte(0) & 0x07) << 18 | (byte(1) & 0x3F) << 12 | (byte(2) & 0x3F) << 6 | (byte(3) & 0x3F);
}

// json.dumps's short escapes; other control characters become \u00XX.
std::string_view named_escape(char c) {
  switch (c) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    default:
      return {};
  }
}

bool is_negative_exponent(std::string_view number) {
  const auto e = number.find_first_of("eE");
  return e != std::string_view::npos && e + 1 < number.size() && number[e + 1] == '-';
}

// Receives basic_parser's events and writes them back as json.dumps would, noting the top-level
// object's members as they pass.
class redumper {
 public:
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);

  python_json result;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_array_begin(json::error_code&) { return open('['); }
  bool on_array_end(std::size_t, json::error_code&) { return close(']'); }
  bool on_object_begin(json::error_code&) {
    if (stack_.empty()) result.is_object = true;
    return open('{');
  }
  bool on_object_end(std::size_t, json::error_code&) { return close('}'); }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    pending_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    pending_.append(s.data(), s.size());
    before_value();
    append_python_string(result.text, pending_);
    if (stack_.size() == 1 && result.is_object) result.members.back().string_value = pending_;
    pending_.clear();
    return after_value();
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    pending_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    pending_.append(s.data(), s.size());
    if (stack_.back().count++ > 0) result.text += ", ";
    append_python_string(result.text, pending_);
    result.text += ": ";
    if (stack_.size() == 1)
      result.members.push_back({std::move(pending_), result.text.size(), 0, std::nullopt});
    pending_.clear();
    return true;
  }
  bool on_number_part(json::string_view s, json::error_code&) {
    pending_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t value, json::string_view, json::error_code&) {
    pending_.clear();
    return integer(value);
  }
  bool on_uint64(std::uint64_t value, json::string_view, json::error_code&) {
    pending_.clear();
    return integer(value);
  }
  bool on_double(double, json::string_view s, json::error_code& ec) {
    pending_.append(s.data(), s.size());
    before_value();
    const bool is_integer = pending_.find_first_of(".eE") == std::string::npos;
    if (is_integer) {
      result.text += pending_;  // past 64 bits: Python's int keeps every digit, so do we
    } else {
      double value = 0;
      const auto [end, error] =
          std::from_chars(pending_.data(), pending_.data() + pending_.size(), value);
      if (error == std::errc::result_out_of_range && is_negative_exponent(pending_)) {
        value = pending_[0] == '-' ? -0.0 : 0.0;  // underflow: Python reads 1e-400 as 0.0
      } else if (error != std::errc() || end != pending_.data() + pending_.size() ||
                 !std::isfinite(value)) {
        ec = json::error::exponent_overflow;  // Python: inf, written as Infinity
        return false;
      }
      append_python_float(result.text, value);
    }
    pending_.clear();
    return after_value();
  }
  bool on_bool(bool value, json::error_code&) {
    before_value();
    result.text += value ? "true" : "false";
    return after_value();
  }
  bool on_null(json::error_code&) {
    before_value();
    result.text += "null";
    return after_value();
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  struct frame {
    bool is_array;
    std::size_t count;
  };

  // In an array, values after the first are separated; in an object, on_key did it.
  void before_value() {
    if (!stack_.empty() && stack_.back().is_array && stack_.back().count++ > 0) result.text += ", ";
  }
  bool after_value() {
    if (stack_.size() == 1 && result.is_object) result.members.back().end = result.text.size();
    return true;
  }
  bool open(char bracket) {
    before_value();
    result.text.push_back(bracket);
    stack_.push_back({bracket == '[', 0});
    return true;
  }
  bool close(char bracket) {
    result.text.push_back(bracket);
    stack_.pop_back();
    return after_value();
  }
  template <class Integer>
  bool integer(Integer value) {
    before_value();
    char buffer[24];
    const auto written = std::to_chars(buffer, buffer + sizeof buffer, value);
    result.text.append(buffer, written.ptr);
    return after_value();
  }

  std::vector<frame> stack_;
  std::string pending_;  // a string, key or number arriving in parts
};

}  // namespace

const python_json::member* python_json::find(std::string_view key) const {
  for (auto it = members.rbegin(); it != members.rend(); ++it)
    if (it->key == key) return &*it;
  return nullptr;
}

std::optional<python_json> redump_python(std::string_view input) {
  json::parse_options options;
  options.max_depth = 512;
  json::basic_parser<redumper> parser(options);
  json::error_code ec;
  const std::size_t used = parser.write_some(false, input.data(), input.size(), ec);
  if (ec || used != input.size()) return std::nullopt;
  return std::move(parser.handler().result);
}

void append_python_string(std::string& out, std::string_view utf8) {
  out.push_back('"');
  for (std::size_t at = 0; at < utf8.size();) {
    const char c = utf8[at];
    if (c >= 0x20 && c < 0x7F) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
      ++at;
      continue;
    }
    if (const auto named = named_escape(c); !named.empty()) {
      out += named;
      ++at;
      continue;
    }
    const std::size_t length = core::utf8_sequence(utf8, at);
    if (length <= 1) {  // a control character, DEL, or a byte that is not UTF-8
      append_u_escape(out, length == 1 ? static_cast<std::uint32_t>(c) : 0xFFFD);
      ++at;
      continue;
    }
    const std::uint32_t point = code_point(utf8, at, length);
    if (point >= 0x10000) {
      append_u_escape(out, 0xD800 + ((point - 0x10000) >> 10));
      append_u_escape(out, 0xDC00 + ((point - 0x10000) & 0x3FF));
    } else {
      append_u_escape(out, point);
    }
    at += length;
  }
  out.push_back('"');
}

void append_python_float(std::string& out, double value) {
  // The shortest round-trip digits and exponent, as repr() takes them, then repr()'s layout:
  // positional for exponents -4 < decpt <= 16, scientific ("1e-05", "1.5e+16") otherwise.
  char buffer[40];
  const auto written =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  std::string_view text(buffer, static_cast<std::size_t>(written.ptr - buffer));
  if (!text.empty() && text[0] == '-') {
    out.push_back('-');
    text.remove_prefix(1);
  }
  const auto e = text.find('e');
  std::string digits;
  for (const char c : text.substr(0, e))
    if (c != '.') digits.push_back(c);
  int exponent = 0;
  const auto exponent_text = text.substr(e + 1);
  std::from_chars(exponent_text.data() + (exponent_text[0] == '+' ? 1 : 0),
                  exponent_text.data() + exponent_text.size(), exponent);
  const int decpt = exponent + 1;  // digits are 0.d1d2... * 10^decpt
  const auto count = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out.push_back(digits[0]);
    if (count > 1) out.append(".").append(digits, 1);
    out += exponent < 0 ? "e-" : "e+";
    const int magnitude = exponent < 0 ? -exponent : exponent;
    if (magnitude < 10) out.push_back('0');
    out += std::to_string(magnitude);
  } else if (decpt <= 0) {
    out.append("0.").append(static_cast<std::size_t>(-decpt), '0').append(digits);
  } else if (decpt < count) {
    out.append(digits, 0, static_cast<std::size_t>(decpt))
        .append(".")
        .append(digits, static_cast<std::size_t>(decpt));
  } else {
    out.append(digits).append(static_cast<std::size_t>(decpt - count), '0').append(".0");
  }
}

}  // namespace nimbus::bridge
