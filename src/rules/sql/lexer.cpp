#include "rules/sql/lexer.hpp"

#include <charconv>
#include <cmath>
#include <string>
#include <system_error>
#include <utility>

namespace nimbus::rules::sql {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_identifier_start(char c) {
  return is_letter(c) || c == '_';
}
bool is_identifier_char(char c) {
  return is_letter(c) || is_digit(c) || c == '_';
}

token invalid(std::size_t position, std::string why) {
  token t;
  t.kind = token_kind::invalid;
  t.position = position;
  t.string_value = std::move(why);
  return t;
}

}  // namespace

token lexer::next() {
  while (pos_ < source_.size() && is_space(source_[pos_])) ++pos_;
  const std::size_t start = pos_;
  if (pos_ >= source_.size()) {
    token t;
    t.kind = token_kind::end;
    t.position = start;
    return t;
  }
  const char c = source_[pos_];
  if (is_identifier_start(c)) {
    while (pos_ < source_.size() && is_identifier_char(source_[pos_])) ++pos_;
    token t;
    t.kind = token_kind::identifier;
    t.position = start;
    t.text = source_.substr(start, pos_ - start);
    return t;
  }
  if (is_digit(c)) return number(start);
  if (c == '\'' || c == '"') return quoted(start);

  ++pos_;
  const char following = pos_ < source_.size() ? source_[pos_] : '\0';
  token_kind kind = token_kind::invalid;
  switch (c) {
    case ',':
      kind = token_kind::comma;
      break;
    case '.':
      kind = token_kind::dot;
      break;
    case ':':
      kind = token_kind::colon;
      break;
    case '(':
      kind = token_kind::left_paren;
      break;
    case ')':
      kind = token_kind::right_paren;
      break;
    case '[':
      kind = token_kind::left_bracket;
      break;
    case ']':
      kind = token_kind::right_bracket;
      break;
    case '{':
      kind = token_kind::left_brace;
      break;
    case '}':
      kind = token_kind::right_brace;
      break;
    case '+':
      kind = token_kind::plus;
      break;
    case '-':
      kind = token_kind::minus;
      break;
    case '*':
      kind = token_kind::star;
      break;
    case '/':
      kind = token_kind::slash;
      break;
    case '%':
      kind = token_kind::percent;
      break;
    case '=':
      kind = token_kind::equal;
      break;
    case '<':
      if (following == '=') {
        ++pos_;
        kind = token_kind::less_equal;
      } else if (following == '>') {
        ++pos_;
        kind = token_kind::not_equal;
      } else {
        kind = token_kind::less;
      }
      break;
    case '>':
      if (following == '=') {
        ++pos_;
        kind = token_kind::greater_equal;
      } else {
        kind = token_kind::greater;
      }
      break;
    case '!':
      if (following == '=') {
        ++pos_;
        kind = token_kind::not_equal;
      }
      break;
    default:
      break;
  }
  if (kind == token_kind::invalid)
    return invalid(start, std::string("unexpected character '") + c + "'");
  token t;
  t.kind = kind;
  t.position = start;
  t.text = source_.substr(start, pos_ - start);
  return t;
}

// digits [. digits] [(e|E) [+|-] digits]: an Int when it has neither part and fits, a Decimal
// otherwise. A sign is an operator, folded into the literal by the parser.
token lexer::number(std::size_t start) {
  bool is_decimal = false;
  while (pos_ < source_.size() && is_digit(source_[pos_])) ++pos_;
  if (pos_ + 1 < source_.size() && source_[pos_] == '.' && is_digit(source_[pos_ + 1])) {
    is_decimal = true;
    ++pos_;
    while (pos_ < source_.size() && is_digit(source_[pos_])) ++pos_;
  }
  if (pos_ < source_.size() && (source_[pos_] == 'e' || source_[pos_] == 'E')) {
    std::size_t exponent = pos_ + 1;
    if (exponent < source_.size() && (source_[exponent] == '+' || source_[exponent] == '-'))
      ++exponent;
    if (exponent < source_.size() && is_digit(source_[exponent])) {
      is_decimal = true;
      pos_ = exponent;
      while (pos_ < source_.size() && is_digit(source_[pos_])) ++pos_;
    }
  }
  token t;
  t.position = start;
  t.text = source_.substr(start, pos_ - start);
  const char* first = t.text.data();
  const char* last = first + t.text.size();
  if (!is_decimal) {
    auto result = std::from_chars(first, last, t.int_value);
    if (result.ec == std::errc() && result.ptr == last) {
      t.kind = token_kind::integer;
      return t;
    }
  }
  // from_chars reads no '+' in an exponent: skip over it by hand.
  std::string digits(t.text);
  if (auto plus = digits.find('+'); plus != std::string::npos) digits.erase(plus, 1);
  auto result = std::from_chars(digits.data(), digits.data() + digits.size(), t.decimal_value);
  if (result.ec != std::errc() || result.ptr != digits.data() + digits.size() ||
      !std::isfinite(t.decimal_value))
    return invalid(start, "number out of range: " + std::string(t.text));
  t.kind = token_kind::decimal;
  return t;
}

token lexer::quoted(std::size_t start) {
  const char quote = source_[pos_];
  ++pos_;
  token t;
  t.position = start;
  while (pos_ < source_.size()) {
    const char c = source_[pos_];
    if (c == quote) {
      if (pos_ + 1 < source_.size() && source_[pos_ + 1] == quote) {
        t.string_value += quote;
        pos_ += 2;
        continue;
      }
      ++pos_;
      t.kind = token_kind::string;
      t.text = source_.substr(start, pos_ - start);
      return t;
    }
    if (c == '\\' && pos_ + 1 < source_.size()) {
      const char escaped = source_[pos_ + 1];
      switch (escaped) {
        case '\\':
          t.string_value += '\\';
          break;
        case '\'':
          t.string_value += '\'';
          break;
        case '"':
          t.string_value += '"';
          break;
        case '/':
          t.string_value += '/';
          break;
        case 'n':
          t.string_value += '\n';
          break;
        case 'r':
          t.string_value += '\r';
          break;
        case 't':
          t.string_value += '\t';
          break;
        default:  // a regex escape such as \d: kept as written
          t.string_value += '\\';
          t.string_value += escaped;
      }
      pos_ += 2;
      continue;
    }
    t.string_value += c;
    ++pos_;
  }
  return invalid(start, "unterminated string");
}

}  // namespace nimbus::rules::sql
