#pragma once
// IoT SQL text as tokens, one at a time, for the parser. Keywords are plain identifiers here (the
// parser compares them ignoring case, so a payload key may be called `value` or `timestamp`).
// Strings take single or double quotes, a doubled quote or a backslash escape for the quote
// itself; any other backslash is kept, so regexes like '\d+' need no doubling.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nimbus::rules::sql {

enum class token_kind : std::uint8_t {
  end,
  identifier,
  integer,
  decimal,
  string,
  comma,
  dot,
  colon,
  left_paren,
  right_paren,
  left_bracket,
  right_bracket,
  left_brace,
  right_brace,
  plus,
  minus,
  star,
  slash,
  percent,
  equal,
  not_equal,
  less,
  less_equal,
  greater,
  greater_equal,
  invalid,  // string_value says why
};

struct token {
  token_kind kind = token_kind::end;
  std::size_t position = 0;  // 0-based offset in the SQL text
  std::string_view text;     // as written
  std::string string_value;  // a string literal without quotes and escapes
  std::int64_t int_value = 0;
  double decimal_value = 0;
};

class lexer {
 public:
  explicit lexer(std::string_view source) : source_(source) {}
  token next();

 private:
  token number(std::size_t start);
  token quoted(std::size_t start);

  std::string_view source_;
  std::size_t pos_ = 0;
};

}  // namespace nimbus::rules::sql
