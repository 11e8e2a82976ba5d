#include "pubsub/filter.hpp"

#include <optional>
#include <utility>

namespace nimbus::pubsub {
namespace {

using attribute_map = std::map<std::string, std::string, std::less<>>;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
// Words: attributes, hasPrefix, NOT, AND, OR, and whatever else a user types in their place.
bool is_word_char(char c) {
  return is_letter(c) || is_digit(c) || c == '_';
}
// Google: a key needs a string literal when it holds anything but alphanumerics, '-' and '_'.
bool is_key_char(char c) {
  return is_word_char(c) || c == '-';
}
bool is_quote(char c) {
  return c == '"' || c == '\'';
}
int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// For messages: a printable character quoted, anything else by name or value.
std::string describe(char c) {
  if (is_space(c)) return "whitespace";
  const auto byte = static_cast<unsigned char>(c);
  if (byte > 0x20 && byte < 0x7f) return std::string("'") + c + "'";
  static constexpr char digits[] = "0123456789ABCDEF";
  return std::string("byte 0x") + digits[byte >> 4] + digits[byte & 0x0f];
}

// AND, OR and NOT are uppercase only; `and` or `Not` is a likely typo worth naming.
bool is_miscased_operator(std::string_view word) {
  std::string upper(word);
  for (char& c : upper)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return upper != word && (upper == "AND" || upper == "OR" || upper == "NOT");
}

void append_utf8(std::string& out, std::uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xc0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xe0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code_point & 0x3f));
  }
}

constexpr std::string_view expected_restriction = "expected attributes, hasPrefix or '('";

}  // namespace

// Recursive descent over the text, one byte at a time (the language is small enough that a
// separate lexer would only add a token type). The first error ends the parse. Recursion goes
// one level deeper per '(' and per negation only, both bounded by filter::max_depth.
//
//   filter      = [expression]
//   expression  = term {AND term} | term {OR term}
//   term        = [NOT | '-'] simple
//   simple      = '(' expression ')' | restriction
//   restriction = attributes '.' key ('=' | '!=') string | attributes ':' key
//               | hasPrefix '(' attributes '.' key ',' string ')'
//   key         = string | 1*(ALPHA | DIGIT | '_' | '-')
class filter_parser {
 public:
  explicit filter_parser(std::string_view text) : text_(text) {}

  std::variant<filter, filter_error> run() {
    if (text_.size() > filter::max_length)
      return filter_error{filter::max_length,
                          "filter is longer than " + std::to_string(filter::max_length) + " bytes"};
    result_.text_ = std::string(text_);
    skip_space();
    if (at_end()) return std::move(result_);  // blank: matches everything
    if (!parse_expression(false)) return std::move(error_);
    if (!at_end()) {  // an expression stops early only at a ')'
      fail(pos_, "unexpected ')' without a matching '('");
      return std::move(error_);
    }
    return std::move(result_);
  }

 private:
  using index = std::uint32_t;
  using kind = filter::node_kind;

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }
  void skip_space() {
    while (!at_end() && is_space(peek())) ++pos_;
  }
  std::string_view read_word() {
    const std::size_t start = pos_;
    while (!at_end() && is_word_char(peek())) ++pos_;
    return text_.substr(start, pos_ - start);
  }
  std::string_view peek_word() const {
    std::size_t end = pos_;
    while (end < text_.size() && is_word_char(text_[end])) ++end;
    return text_.substr(pos_, end - pos_);
  }

  std::nullopt_t fail(std::size_t position, std::string message) {
    error_.position = position;
    error_.message = std::move(message);
    return std::nullopt;
  }
  std::nullopt_t fail_end(std::string_view expected) {
    return fail(text_.size(), "unexpected end of filter: " + std::string(expected));
  }

  index add_node(kind k, std::vector<index> children, std::string key = {},
                 std::string value = {}) {
    filter::node n;
    n.kind = k;
    n.key = std::move(key);
    n.value = std::move(value);
    n.children = std::move(children);
    result_.nodes_.push_back(std::move(n));
    return static_cast<index>(result_.nodes_.size() - 1);
  }

  // Stops at the end of the text or before a ')', which the caller judges.
  std::optional<index> parse_expression(bool is_nested) {
    std::vector<index> terms;
    auto first = parse_term();
    if (!first) return std::nullopt;
    terms.push_back(*first);
    std::optional<kind> joiner;
    for (;;) {
      skip_space();
      if (at_end() || peek() == ')') break;
      const std::size_t at = pos_;
      const std::string_view expected =
          is_nested ? "expected AND, OR or ')'" : "expected AND, OR or the end of the filter";
      if (!is_word_char(peek()))
        return fail(at, std::string(expected) + ", found " + describe(peek()));
      const std::string_view word = read_word();
      kind k = kind::all_of;
      if (word == "AND") {
        k = kind::all_of;
      } else if (word == "OR") {
        k = kind::any_of;
      } else if (is_miscased_operator(word)) {
        return fail(
            at, "'" + std::string(word) + "' is not an operator: AND, OR and NOT are uppercase");
      } else {
        return fail(at, std::string(expected) + ", found '" + std::string(word) + "'");
      }
      if (joiner && *joiner != k) return fail(at, "AND and OR must be separated by parentheses");
      joiner = k;
      auto next = parse_term();
      if (!next) return std::nullopt;
      terms.push_back(*next);
    }
    if (terms.size() == 1) return terms.front();
    return add_node(*joiner, std::move(terms));
  }

  // One negation at most, as AIP-160's grammar: NOT (NOT x) negates twice, NOT NOT x is refused.
  std::optional<index> parse_term() {
    skip_space();
    if (at_end()) return fail_end(expected_restriction);
    const std::size_t at = pos_;
    bool is_negated = false;
    if (peek() == '-') {
      ++pos_;
      is_negated = true;
    } else if (peek_word() == "NOT") {
      pos_ += 3;
      is_negated = true;
    }
    if (!is_negated) return parse_simple();
    if (++depth_ > filter::max_depth) return too_deep(at);
    skip_space();
    if (!at_end() && (peek() == '-' || peek_word() == "NOT"))
      return fail(pos_, "a negation cannot be negated again without parentheses");
    auto child = parse_simple();
    if (!child) return std::nullopt;
    --depth_;
    return add_node(kind::negation, {*child});
  }

  std::optional<index> parse_simple() {
    skip_space();
    if (at_end()) return fail_end(expected_restriction);
    const std::size_t at = pos_;
    const char c = peek();
    if (c == '(') {
      if (++depth_ > filter::max_depth) return too_deep(at);
      ++pos_;
      skip_space();
      if (!at_end() && peek() == ')') return fail(pos_, "empty parentheses");
      auto inner = parse_expression(true);
      if (!inner) return std::nullopt;
      if (at_end()) return fail_end("expected ')'");
      ++pos_;  // the ')'
      --depth_;
      return inner;
    }
    if (is_word_char(c)) {
      const std::string_view word = read_word();
      if (word == "attributes") return parse_attribute_restriction();
      if (word == "hasPrefix") return parse_has_prefix();
      if (is_miscased_operator(word))
        return fail(
            at, "'" + std::string(word) + "' is not an operator: AND, OR and NOT are uppercase");
      skip_space();
      if (!at_end() && peek() == '(') return fail(at, "unknown function " + std::string(word));
      return fail(at, std::string(expected_restriction) + ", found '" + std::string(word) + "'");
    }
    if (is_quote(c))
      return fail(at, std::string(expected_restriction) +
                          ", found a string: a restriction starts with attributes");
    if (c == '!') return fail(at, "unexpected '!': negate with NOT or '-'");
    return fail(at, std::string(expected_restriction) + ", found " + describe(c));
  }

  std::nullopt_t too_deep(std::size_t at) {
    return fail(at, "filter nests deeper than " + std::to_string(filter::max_depth) + " levels");
  }

  // After the word `attributes`: `.KEY = "v"`, `.KEY != "v"` or `:KEY`.
  std::optional<index> parse_attribute_restriction() {
    if (!at_end() && peek() == '.') {
      ++pos_;
      std::string key;
      if (!parse_key(key, "'attributes.'")) return std::nullopt;
      const std::size_t key_end = pos_;
      skip_space();
      if (at_end()) return fail_end("expected '=' or '!=' after the key");
      const std::size_t operator_at = pos_;
      const char c = peek();
      const char following = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
      kind k = kind::equals;
      if (c == '=') {
        ++pos_;
      } else if (c == '!' && following == '=') {
        pos_ += 2;
        k = kind::not_equals;
      } else if (c == '<' || c == '>') {
        return fail(operator_at, "attributes compare with '=' or '!=' only");
      } else if (c == '.' && operator_at == key_end) {
        return fail(operator_at, "attribute values have no fields: quote a key that holds '.'");
      } else {
        return fail(operator_at, "expected '=' or '!=' after the key, found " + describe(c));
      }
      const std::string_view op = k == kind::equals ? "'='" : "'!='";
      skip_space();
      if (at_end()) return fail_end("expected a string after " + std::string(op));
      if (!is_quote(peek())) return fail(pos_, "expected a string after " + std::string(op));
      std::string value;
      if (!parse_string(value)) return std::nullopt;
      return add_node(k, {}, std::move(key), std::move(value));
    }
    skip_space();
    if (at_end()) return fail_end("expected '.' or ':' after attributes");
    if (peek() == '.')
      return fail(pos_, "no whitespace is allowed before the '.' of attributes.KEY");
    if (peek() != ':')
      return fail(pos_, "expected '.' or ':' after attributes, found " + describe(peek()));
    ++pos_;
    skip_space();
    std::string key;
    if (!parse_key(key, "'attributes:'")) return std::nullopt;
    return add_node(kind::has_key, {}, std::move(key));
  }

  // After the word `hasPrefix`: `(attributes.KEY, "prefix")`.
  std::optional<index> parse_has_prefix() {
    skip_space();
    if (at_end()) return fail_end("expected '(' after hasPrefix");
    if (peek() != '(') return fail(pos_, "expected '(' after hasPrefix, found " + describe(peek()));
    ++pos_;
    skip_space();
    if (at_end()) return fail_end("expected attributes.KEY in hasPrefix");
    const std::size_t argument_at = pos_;
    if (read_word() != "attributes" || at_end() || peek() != '.')
      return fail(argument_at, "hasPrefix takes attributes.KEY first");
    ++pos_;
    std::string key;
    if (!parse_key(key, "'attributes.'")) return std::nullopt;
    skip_space();
    if (at_end()) return fail_end("expected ',' in hasPrefix");
    if (peek() != ',')
      return fail(pos_, "expected ',' after the key in hasPrefix, found " + describe(peek()));
    ++pos_;
    skip_space();
    if (at_end()) return fail_end("expected a string after ','");
    if (!is_quote(peek())) return fail(pos_, "expected a string after ','");
    std::string prefix;
    if (!parse_string(prefix)) return std::nullopt;
    skip_space();
    if (at_end()) return fail_end("expected ')' to close hasPrefix");
    if (peek() == ',') return fail(pos_, "hasPrefix takes two arguments");
    if (peek() != ')')
      return fail(pos_, "expected ')' to close hasPrefix, found " + describe(peek()));
    ++pos_;
    return add_node(kind::has_prefix, {}, std::move(key), std::move(prefix));
  }

  // A bare key, or a string literal for any other key (Google's rule).
  bool parse_key(std::string& key, std::string_view after) {
    if (at_end()) {
      fail_end("expected a key after " + std::string(after));
      return false;
    }
    const char c = peek();
    if (is_quote(c)) return parse_string(key);
    if (is_key_char(c)) {
      const std::size_t start = pos_;
      while (!at_end() && is_key_char(peek())) ++pos_;
      key.assign(text_.substr(start, pos_ - start));
      return true;
    }
    if (c == '`') {
      fail(pos_, "backquotes do not quote a key: write \"...\"");
      return false;
    }
    if (c == '\\') {
      fail(pos_, "escapes are allowed only inside a quoted key");
      return false;
    }
    fail(pos_, "expected a key after " + std::string(after) + ", found " + describe(c));
    return false;
  }

  // "..." or '...': raw control characters refused, CEL's escapes decoded.
  bool parse_string(std::string& out) {
    const std::size_t start = pos_;
    const char quote = peek();
    ++pos_;
    for (;;) {
      if (at_end()) {
        fail(start, "unterminated string");
        return false;
      }
      const char c = peek();
      if (c == quote) {
        ++pos_;
        return true;
      }
      if (c == '\\') {
        if (!parse_escape(out)) return false;
        continue;
      }
      const auto byte = static_cast<unsigned char>(c);
      if (byte < 0x20 || byte == 0x7f) {
        fail(pos_, "control character in a string: write it as an escape");
        return false;
      }
      out += c;
      ++pos_;
    }
  }

  // At a backslash. CEL's string escapes: \a \b \f \n \r \t \v \\ \' \" \? \`, \xHH, \uHHHH,
  // \UHHHHHHHH and octal \ooo; \x and octal name a code point up to U+00FF, written as UTF-8.
  bool parse_escape(std::string& out) {
    const std::size_t at = pos_;
    ++pos_;
    if (at_end()) {
      fail_end("unterminated escape");
      return false;
    }
    const char c = peek();
    ++pos_;
    switch (c) {
      case 'a':
        out += '\a';
        return true;
      case 'b':
        out += '\b';
        return true;
      case 'f':
        out += '\f';
        return true;
      case 'n':
        out += '\n';
        return true;
      case 'r':
        out += '\r';
        return true;
      case 't':
        out += '\t';
        return true;
      case 'v':
        out += '\v';
        return true;
      case '\\':
      case '\'':
      case '"':
      case '?':
      case '`':
        out += c;
        return true;
      case 'x':
      case 'X':
        return parse_hex_escape(at, 2, out);
      case 'u':
        return parse_hex_escape(at, 4, out);
      case 'U':
        return parse_hex_escape(at, 8, out);
      case '0':
      case '1':
      case '2':
      case '3': {
        std::uint32_t code_point = static_cast<std::uint32_t>(c - '0');
        for (int i = 0; i < 2; ++i) {
          if (at_end() || peek() < '0' || peek() > '7') {
            fail(at, "an octal escape takes three digits, \\000 to \\377");
            return false;
          }
          code_point = code_point * 8 + static_cast<std::uint32_t>(peek() - '0');
          ++pos_;
        }
        append_utf8(out, code_point);
        return true;
      }
      default:
        fail(at, c > 0x20 && c < 0x7f ? "unknown escape \\" + std::string(1, c)
                                      : "unknown escape: a backslash before " + describe(c));
        return false;
    }
  }

  bool parse_hex_escape(std::size_t at, int digits, std::string& out) {
    std::uint32_t code_point = 0;
    for (int i = 0; i < digits; ++i) {
      const int digit = at_end() ? -1 : hex_value(peek());
      if (digit < 0) {
        fail(at, "escape \\" + std::string(1, text_[at + 1]) + " takes " + std::to_string(digits) +
                     " hex digits");
        return false;
      }
      code_point = code_point * 16 + static_cast<std::uint32_t>(digit);
      ++pos_;
    }
    if (code_point > 0x10ffff || (code_point >= 0xd800 && code_point <= 0xdfff)) {
      fail(at, "escape names no Unicode code point");
      return false;
    }
    append_utf8(out, code_point);
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::size_t depth_ = 0;
  filter result_;
  filter_error error_;
};

std::variant<filter, filter_error> filter::parse(std::string_view text) {
  return filter_parser(text).run();
}

bool filter::matches(const attribute_map& attributes) const {
  if (nodes_.empty()) return true;
  return evaluate(static_cast<std::uint32_t>(nodes_.size() - 1), attributes);
}

// Recursion is bounded by the parse: one level per parenthesis or negation.
bool filter::evaluate(std::uint32_t index, const attribute_map& attributes) const {
  const node& n = nodes_[index];
  switch (n.kind) {
    case node_kind::all_of:
      for (const std::uint32_t child : n.children)
        if (!evaluate(child, attributes)) return false;
      return true;
    case node_kind::any_of:
      for (const std::uint32_t child : n.children)
        if (evaluate(child, attributes)) return true;
      return false;
    case node_kind::negation:
      return !evaluate(n.children.front(), attributes);
    case node_kind::has_key:
      return attributes.find(n.key) != attributes.end();
    case node_kind::equals: {
      const auto found = attributes.find(n.key);
      return found != attributes.end() && found->second == n.value;
    }
    case node_kind::not_equals: {
      const auto found = attributes.find(n.key);
      return found == attributes.end() || found->second != n.value;
    }
    case node_kind::has_prefix: {
      const auto found = attributes.find(n.key);
      return found != attributes.end() && found->second.starts_with(n.value);
    }
  }
  return false;
}

}  // namespace nimbus::pubsub
