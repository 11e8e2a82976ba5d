#include "tsdb/influxql.hpp"

// The scanner and parser follow InfluxDB 1.6.7's influxql package (scanner.go, parser.go,
// token.go) call for call, including its rune reader with a three-rune unread buffer and its
// three-token unscan buffer: error positions depend on exactly how far each function reads ahead
// (`SELECT` alone ends at char 8, `SELECT "v"` at char 11), so the structure is kept rather than
// rewritten. Where a Go function would recurse without bound, depth is capped
// (max_expression_depth) so a hostile query cannot exhaust the stack.

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

namespace nimbus::tsdb::influxql {
namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8, as Go's bufio.Reader.ReadRune decodes it: an invalid byte is U+FFFD of width 1.

constexpr char32_t replacement_rune = 0xFFFD;

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

// Decodes the rune at `text[offset]`; returns its width in bytes (at least 1).
std::size_t decode_rune(std::string_view text, std::size_t offset, char32_t& rune) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[offset + i]); };
  const std::size_t left = text.size() - offset;
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) {
    rune = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF && left >= 2 && is_continuation(byte(1))) {
    rune = (static_cast<char32_t>(b0 & 0x1F) << 6) | (byte(1) & 0x3F);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF && left >= 3) {
    const unsigned char b1 = byte(1);
    const bool is_valid_second = b0 == 0xE0   ? (b1 >= 0xA0 && b1 <= 0xBF)
                                 : b0 == 0xED ? (b1 >= 0x80 && b1 <= 0x9F)
                                              : is_continuation(b1);
    if (is_valid_second && is_continuation(byte(2))) {
      rune = (static_cast<char32_t>(b0 & 0x0F) << 12) | (static_cast<char32_t>(b1 & 0x3F) << 6) |
             (byte(2) & 0x3F);
      return 3;
    }
  }
  if (b0 >= 0xF0 && b0 <= 0xF4 && left >= 4) {
    const unsigned char b1 = byte(1);
    const bool is_valid_second = b0 == 0xF0   ? (b1 >= 0x90 && b1 <= 0xBF)
                                 : b0 == 0xF4 ? (b1 >= 0x80 && b1 <= 0x8F)
                                              : is_continuation(b1);
    if (is_valid_second && is_continuation(byte(2)) && is_continuation(byte(3))) {
      rune = (static_cast<char32_t>(b0 & 0x07) << 18) | (static_cast<char32_t>(b1 & 0x3F) << 12) |
             (static_cast<char32_t>(byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
      return 4;
    }
  }
  rune = replacement_rune;
  return 1;
}

void append_rune(std::string& out, char32_t rune) {
  if (rune < 0x80) {
    out.push_back(static_cast<char>(rune));
  } else if (rune < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (rune >> 6)));
    out.push_back(static_cast<char>(0x80 | (rune & 0x3F)));
  } else if (rune < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (rune >> 12)));
    out.push_back(static_cast<char>(0x80 | ((rune >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (rune & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (rune >> 18)));
    out.push_back(static_cast<char>(0x80 | ((rune >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((rune >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (rune & 0x3F)));
  }
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Tokens (token.go). The keyword set is 1.6.7's: no FUTURE/PAST (1.8), no VERBOSE.

enum class tok : std::uint8_t {
  illegal,
  eof,
  ws,
  comment,
  ident,
  boundparam,
  number,
  integer,
  durationval,
  string,
  badstring,
  badescape,
  true_literal,
  false_literal,
  regex,
  badregex,
  // operators
  add,
  sub,
  mul,
  div,
  mod,
  bitwise_and,
  bitwise_or,
  bitwise_xor,
  logical_and,
  logical_or,
  in,
  eq,
  neq,
  eqregex,
  neqregex,
  lt,
  lte,
  gt,
  gte,
  // punctuation
  lparen,
  rparen,
  comma,
  colon,
  doublecolon,
  semicolon,
  dot,
  // keywords
  kw_all,
  kw_alter,
  kw_analyze,
  kw_any,
  kw_as,
  kw_asc,
  kw_begin,
  kw_by,
  kw_cardinality,
  kw_create,
  kw_continuous,
  kw_database,
  kw_databases,
  kw_default,
  kw_delete,
  kw_desc,
  kw_destinations,
  kw_diagnostics,
  kw_distinct,
  kw_drop,
  kw_duration,
  kw_end,
  kw_every,
  kw_exact,
  kw_explain,
  kw_field,
  kw_for,
  kw_from,
  kw_grant,
  kw_grants,
  kw_group,
  kw_groups,
  kw_inf,
  kw_insert,
  kw_into,
  kw_key,
  kw_keys,
  kw_kill,
  kw_limit,
  kw_measurement,
  kw_measurements,
  kw_name,
  kw_offset,
  kw_on,
  kw_order,
  kw_password,
  kw_policy,
  kw_policies,
  kw_privileges,
  kw_queries,
  kw_query,
  kw_read,
  kw_replication,
  kw_resample,
  kw_retention,
  kw_revoke,
  kw_select,
  kw_series,
  kw_set,
  kw_show,
  kw_shard,
  kw_shards,
  kw_slimit,
  kw_soffset,
  kw_stats,
  kw_subscription,
  kw_subscriptions,
  kw_tag,
  kw_to,
  kw_user,
  kw_users,
  kw_values,
  kw_where,
  kw_with,
  kw_write,
};

struct keyword_entry {
  tok token;
  std::string_view name;
};

// Every word the scanner reads as something other than an identifier, with its printed name.
constexpr keyword_entry keyword_table[] = {
    {tok::kw_all, "ALL"},
    {tok::kw_alter, "ALTER"},
    {tok::kw_analyze, "ANALYZE"},
    {tok::kw_any, "ANY"},
    {tok::kw_as, "AS"},
    {tok::kw_asc, "ASC"},
    {tok::kw_begin, "BEGIN"},
    {tok::kw_by, "BY"},
    {tok::kw_cardinality, "CARDINALITY"},
    {tok::kw_create, "CREATE"},
    {tok::kw_continuous, "CONTINUOUS"},
    {tok::kw_database, "DATABASE"},
    {tok::kw_databases, "DATABASES"},
    {tok::kw_default, "DEFAULT"},
    {tok::kw_delete, "DELETE"},
    {tok::kw_desc, "DESC"},
    {tok::kw_destinations, "DESTINATIONS"},
    {tok::kw_diagnostics, "DIAGNOSTICS"},
    {tok::kw_distinct, "DISTINCT"},
    {tok::kw_drop, "DROP"},
    {tok::kw_duration, "DURATION"},
    {tok::kw_end, "END"},
    {tok::kw_every, "EVERY"},
    {tok::kw_exact, "EXACT"},
    {tok::kw_explain, "EXPLAIN"},
    {tok::kw_field, "FIELD"},
    {tok::kw_for, "FOR"},
    {tok::kw_from, "FROM"},
    {tok::kw_grant, "GRANT"},
    {tok::kw_grants, "GRANTS"},
    {tok::kw_group, "GROUP"},
    {tok::kw_groups, "GROUPS"},
    {tok::kw_inf, "INF"},
    {tok::kw_insert, "INSERT"},
    {tok::kw_into, "INTO"},
    {tok::kw_key, "KEY"},
    {tok::kw_keys, "KEYS"},
    {tok::kw_kill, "KILL"},
    {tok::kw_limit, "LIMIT"},
    {tok::kw_measurement, "MEASUREMENT"},
    {tok::kw_measurements, "MEASUREMENTS"},
    {tok::kw_name, "NAME"},
    {tok::kw_offset, "OFFSET"},
    {tok::kw_on, "ON"},
    {tok::kw_order, "ORDER"},
    {tok::kw_password, "PASSWORD"},
    {tok::kw_policy, "POLICY"},
    {tok::kw_policies, "POLICIES"},
    {tok::kw_privileges, "PRIVILEGES"},
    {tok::kw_queries, "QUERIES"},
    {tok::kw_query, "QUERY"},
    {tok::kw_read, "READ"},
    {tok::kw_replication, "REPLICATION"},
    {tok::kw_resample, "RESAMPLE"},
    {tok::kw_retention, "RETENTION"},
    {tok::kw_revoke, "REVOKE"},
    {tok::kw_select, "SELECT"},
    {tok::kw_series, "SERIES"},
    {tok::kw_set, "SET"},
    {tok::kw_show, "SHOW"},
    {tok::kw_shard, "SHARD"},
    {tok::kw_shards, "SHARDS"},
    {tok::kw_slimit, "SLIMIT"},
    {tok::kw_soffset, "SOFFSET"},
    {tok::kw_stats, "STATS"},
    {tok::kw_subscription, "SUBSCRIPTION"},
    {tok::kw_subscriptions, "SUBSCRIPTIONS"},
    {tok::kw_tag, "TAG"},
    {tok::kw_to, "TO"},
    {tok::kw_user, "USER"},
    {tok::kw_users, "USERS"},
    {tok::kw_values, "VALUES"},
    {tok::kw_where, "WHERE"},
    {tok::kw_with, "WITH"},
    {tok::kw_write, "WRITE"},
    // Operators spelled as words, and the boolean literals.
    {tok::logical_and, "AND"},
    {tok::logical_or, "OR"},
    {tok::in, "IN"},
    {tok::true_literal, "TRUE"},
    {tok::false_literal, "FALSE"},
};

tok lookup_keyword(std::string_view word) {
  for (const auto& entry : keyword_table)
    if (iequals(entry.name, word)) return entry.token;
  return tok::ident;
}

// Token.String(). INTEGER, BOUNDPARAM, BADREGEX and COMMENT have no entry in Go's table and print
// as "", which is what an error naming one of them (without a literal) says.
std::string_view token_name(tok t) {
  switch (t) {
    case tok::illegal:
      return "ILLEGAL";
    case tok::eof:
      return "EOF";
    case tok::ws:
      return "WS";
    case tok::ident:
      return "IDENT";
    case tok::number:
      return "NUMBER";
    case tok::durationval:
      return "DURATIONVAL";
    case tok::string:
      return "STRING";
    case tok::badstring:
      return "BADSTRING";
    case tok::badescape:
      return "BADESCAPE";
    case tok::regex:
      return "REGEX";
    case tok::add:
      return "+";
    case tok::sub:
      return "-";
    case tok::mul:
      return "*";
    case tok::div:
      return "/";
    case tok::mod:
      return "%";
    case tok::bitwise_and:
      return "&";
    case tok::bitwise_or:
      return "|";
    case tok::bitwise_xor:
      return "^";
    case tok::eq:
      return "=";
    case tok::neq:
      return "!=";
    case tok::eqregex:
      return "=~";
    case tok::neqregex:
      return "!~";
    case tok::lt:
      return "<";
    case tok::lte:
      return "<=";
    case tok::gt:
      return ">";
    case tok::gte:
      return ">=";
    case tok::lparen:
      return "(";
    case tok::rparen:
      return ")";
    case tok::comma:
      return ",";
    case tok::colon:
      return ":";
    case tok::doublecolon:
      return "::";
    case tok::semicolon:
      return ";";
    case tok::dot:
      return ".";
    case tok::comment:
    case tok::integer:
    case tok::boundparam:
    case tok::badregex:
      return "";
    default:
      break;
  }
  for (const auto& entry : keyword_table)
    if (entry.token == t) return entry.name;
  return "";
}

bool is_operator(tok t) {
  return t >= tok::add && t <= tok::gte;
}

int precedence(binary_op op) {
  switch (op) {
    case binary_op::logical_or:
      return 1;
    case binary_op::logical_and:
      return 2;
    case binary_op::equal:
    case binary_op::not_equal:
    case binary_op::regex_match:
    case binary_op::regex_not_match:
    case binary_op::less:
    case binary_op::less_equal:
    case binary_op::greater:
    case binary_op::greater_equal:
    case binary_op::in:
      return 3;
    case binary_op::add:
    case binary_op::subtract:
    case binary_op::bitwise_or:
    case binary_op::bitwise_xor:
      return 4;
    case binary_op::multiply:
    case binary_op::divide:
    case binary_op::modulo:
    case binary_op::bitwise_and:
      return 5;
  }
  return 0;
}

binary_op to_binary_op(tok t) {
  switch (t) {
    case tok::add:
      return binary_op::add;
    case tok::sub:
      return binary_op::subtract;
    case tok::mul:
      return binary_op::multiply;
    case tok::div:
      return binary_op::divide;
    case tok::mod:
      return binary_op::modulo;
    case tok::bitwise_and:
      return binary_op::bitwise_and;
    case tok::bitwise_or:
      return binary_op::bitwise_or;
    case tok::bitwise_xor:
      return binary_op::bitwise_xor;
    case tok::logical_and:
      return binary_op::logical_and;
    case tok::logical_or:
      return binary_op::logical_or;
    case tok::in:
      return binary_op::in;
    case tok::eq:
      return binary_op::equal;
    case tok::neq:
      return binary_op::not_equal;
    case tok::eqregex:
      return binary_op::regex_match;
    case tok::neqregex:
      return binary_op::regex_not_match;
    case tok::lt:
      return binary_op::less;
    case tok::lte:
      return binary_op::less_equal;
    case tok::gt:
      return binary_op::greater;
    default:
      return binary_op::greater_equal;
  }
}

// ---------------------------------------------------------------------------------------------
// The rune reader (scanner.go's reader): \r and \r\n read as \n, a NUL reads as EOF (Go's eof
// marker is rune 0), positions are 0-based line and code point, and EOF advances the column
// once only.

constexpr char32_t eof_rune = 0;

struct position {
  int line = 0;
  int column = 0;
};

struct rune_at {
  char32_t rune = eof_rune;
  position pos;
};

int ring_index(int index, int back) {
  return ((index - back) % 3 + 3) % 3;
}

class rune_reader {
 public:
  explicit rune_reader(std::string_view text) : text_(text) {}

  rune_at read() {
    if (unread_ > 0) {
      --unread_;
      return current();
    }
    char32_t rune = next_rune();
    index_ = (index_ + 1) % 3;
    buffer_[static_cast<std::size_t>(index_)] = {rune, pos_};
    if (rune == '\n') {
      ++pos_.line;
      pos_.column = 0;
    } else if (!has_seen_eof_) {
      ++pos_.column;
    }
    if (rune == eof_rune) has_seen_eof_ = true;
    return current();
  }

  void unread() { ++unread_; }

  rune_at current() const { return buffer_[static_cast<std::size_t>(ring_index(index_, unread_))]; }

 private:
  char32_t next_rune() {
    if (offset_ >= text_.size()) return eof_rune;
    char32_t rune = 0;
    offset_ += decode_rune(text_, offset_, rune);
    if (rune == '\r') {
      if (offset_ < text_.size() && text_[offset_] == '\n') ++offset_;
      rune = '\n';
    }
    return rune;
  }

  std::string_view text_;
  std::size_t offset_ = 0;
  std::array<rune_at, 3> buffer_{};
  int index_ = 0;
  int unread_ = 0;
  position pos_;
  bool has_seen_eof_ = false;
};

bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n';
}
bool is_letter(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char32_t c) {
  return c >= '0' && c <= '9';
}
bool is_ident_char(char32_t c) {
  return is_letter(c) || is_digit(c) || c == '_';
}
bool is_ident_first_char(char32_t c) {
  return is_letter(c) || c == '_';
}
constexpr char32_t micro_sign = 0xB5;  // µ

struct token {
  tok type = tok::eof;
  position pos;
  std::string lit;
};

// ---------------------------------------------------------------------------------------------
// The scanner (scanner.go's Scanner).

class scanner {
 public:
  explicit scanner(std::string_view text) : reader_(text) {}

  rune_reader& reader() { return reader_; }

  token scan() {
    const rune_at first = reader_.read();
    const char32_t ch0 = first.rune;
    const position pos = first.pos;
    if (is_whitespace(ch0)) return scan_whitespace();
    if (is_letter(ch0) || ch0 == '_') {
      reader_.unread();
      return scan_ident(true);
    }
    if (is_digit(ch0)) return scan_number();

    switch (ch0) {
      case eof_rune:
        return {tok::eof, pos, ""};
      case '"':
        reader_.unread();
        return scan_ident(true);
      case '\'':
        return scan_string();
      case '.': {
        const char32_t ch1 = reader_.read().rune;
        reader_.unread();
        if (is_digit(ch1)) return scan_number();
        return {tok::dot, pos, ""};
      }
      case '$': {
        token t = scan_ident(false);
        if (t.type != tok::ident) return {t.type, pos, "$" + t.lit};
        return {tok::boundparam, pos, "$" + t.lit};
      }
      case '+':
        return {tok::add, pos, ""};
      case '-': {
        if (reader_.read().rune == '-') {
          skip_until_newline();
          return {tok::comment, pos, ""};
        }
        reader_.unread();
        return {tok::sub, pos, ""};
      }
      case '*':
        return {tok::mul, pos, ""};
      case '/': {
        if (reader_.read().rune == '*') {
          if (!skip_until_end_comment()) return {tok::illegal, pos, ""};
          return {tok::comment, pos, ""};
        }
        reader_.unread();
        return {tok::div, pos, ""};
      }
      case '%':
        return {tok::mod, pos, ""};
      case '&':
        return {tok::bitwise_and, pos, ""};
      case '|':
        return {tok::bitwise_or, pos, ""};
      case '^':
        return {tok::bitwise_xor, pos, ""};
      case '=':
        if (reader_.read().rune == '~') return {tok::eqregex, pos, ""};
        reader_.unread();
        return {tok::eq, pos, ""};
      case '!': {
        const char32_t ch1 = reader_.read().rune;
        if (ch1 == '=') return {tok::neq, pos, ""};
        if (ch1 == '~') return {tok::neqregex, pos, ""};
        reader_.unread();
        break;
      }
      case '>':
        if (reader_.read().rune == '=') return {tok::gte, pos, ""};
        reader_.unread();
        return {tok::gt, pos, ""};
      case '<': {
        const char32_t ch1 = reader_.read().rune;
        if (ch1 == '=') return {tok::lte, pos, ""};
        if (ch1 == '>') return {tok::neq, pos, ""};
        reader_.unread();
        return {tok::lt, pos, ""};
      }
      case '(':
        return {tok::lparen, pos, ""};
      case ')':
        return {tok::rparen, pos, ""};
      case ',':
        return {tok::comma, pos, ""};
      case ';':
        return {tok::semicolon, pos, ""};
      case ':':
        if (reader_.read().rune == ':') return {tok::doublecolon, pos, ""};
        reader_.unread();
        return {tok::colon, pos, ""};
      default:
        break;
    }
    std::string lit;
    append_rune(lit, ch0);
    return {tok::illegal, pos, std::move(lit)};
  }

  // ScanRegex: the reader is just before the opening slash.
  token scan_regex() {
    position pos = reader_.current().pos;
    std::string pattern;
    const delimited_status status = scan_delimited(pattern);
    if (status == delimited_status::bad_escape) {
      pos = reader_.current().pos;
      return {tok::badescape, pos, ""};
    }
    if (status != delimited_status::ok) return {tok::badregex, pos, ""};
    return {tok::regex, pos, std::move(pattern)};
  }

 private:
  // io.RuneScanner over the reader, as ScanString and ScanDelimited use it.
  char32_t read_rune(bool& is_eof) {
    const char32_t rune = reader_.read().rune;
    is_eof = rune == eof_rune;
    return rune;
  }

  token scan_whitespace() {
    const rune_at first = reader_.current();
    std::string buffer;
    append_rune(buffer, first.rune);
    for (;;) {
      const char32_t ch = reader_.read().rune;
      if (ch == eof_rune) break;
      if (!is_whitespace(ch)) {
        reader_.unread();
        break;
      }
      append_rune(buffer, ch);
    }
    return {tok::ws, first.pos, std::move(buffer)};
  }

  void skip_until_newline() {
    for (;;) {
      const char32_t ch = reader_.read().rune;
      if (ch == '\n' || ch == eof_rune) return;
    }
  }

  bool skip_until_end_comment() {
    for (;;) {
      const char32_t ch1 = reader_.read().rune;
      if (ch1 == '*') {
        for (;;) {
          const char32_t ch2 = reader_.read().rune;
          if (ch2 == '/') return true;
          if (ch2 == '*') continue;
          if (ch2 == eof_rune) return false;
          break;
        }
      } else if (ch1 == eof_rune) {
        return false;
      }
    }
  }

  token scan_ident(bool lookup) {
    const position pos = reader_.read().pos;
    reader_.unread();
    std::string buffer;
    for (;;) {
      const char32_t ch = reader_.read().rune;
      if (ch == eof_rune) break;
      if (ch == '"') {
        token quoted = scan_string();
        if (quoted.type == tok::badstring || quoted.type == tok::badescape) return quoted;
        return {tok::ident, pos, std::move(quoted.lit)};
      }
      if (is_ident_char(ch)) {
        reader_.unread();
        scan_bare_ident(buffer);
      } else {
        reader_.unread();
        break;
      }
    }
    if (lookup) {
      const tok keyword = lookup_keyword(buffer);
      if (keyword != tok::ident) return {keyword, pos, ""};
    }
    return {tok::ident, pos, std::move(buffer)};
  }

  void scan_bare_ident(std::string& buffer) {
    for (;;) {
      bool is_eof = false;
      const char32_t ch = read_rune(is_eof);
      if (is_eof) break;
      if (!is_ident_char(ch)) {
        reader_.unread();
        break;
      }
      append_rune(buffer, ch);
    }
  }

  // The scanner's scanString: the opening quote has just been read.
  token scan_string() {
    reader_.unread();
    position pos = reader_.current().pos;
    std::string lit;
    const string_status status = read_quoted(lit);
    if (status == string_status::bad_string) return {tok::badstring, pos, std::move(lit)};
    if (status == string_status::bad_escape) {
      pos = reader_.current().pos;
      return {tok::badescape, pos, std::move(lit)};
    }
    return {tok::string, pos, std::move(lit)};
  }

  enum class string_status : std::uint8_t { ok, bad_string, bad_escape };

  // ScanString: a string quoted by its first rune, with \n \\ \" \' escapes.
  string_status read_quoted(std::string& out) {
    bool is_eof = false;
    const char32_t ending = read_rune(is_eof);
    if (is_eof) return string_status::bad_string;
    for (;;) {
      const char32_t ch0 = read_rune(is_eof);
      if (ch0 == ending) return string_status::ok;
      if (is_eof || ch0 == '\n') return string_status::bad_string;
      if (ch0 == '\\') {
        const char32_t ch1 = read_rune(is_eof);
        if (ch1 == 'n') {
          out.push_back('\n');
        } else if (ch1 == '\\') {
          out.push_back('\\');
        } else if (ch1 == '"') {
          out.push_back('"');
        } else if (ch1 == '\'') {
          out.push_back('\'');
        } else {
          out.assign("\\");
          append_rune(out, ch1);
          return string_status::bad_escape;
        }
      } else {
        append_rune(out, ch0);
      }
    }
  }

  enum class delimited_status : std::uint8_t { ok, bad_escape, error };

  // ScanDelimited(r, '/', '/', {'/': '/'}, true): `\/` is a slash, any other backslash stays.
  delimited_status scan_delimited(std::string& out) {
    bool is_eof = false;
    const char32_t start = read_rune(is_eof);
    if (is_eof || start != '/') return delimited_status::error;
    for (;;) {
      const char32_t ch0 = read_rune(is_eof);
      if (ch0 == '/') return delimited_status::ok;
      if (is_eof || ch0 == '\n') return delimited_status::error;
      if (ch0 == '\\') {
        const char32_t ch1 = read_rune(is_eof);
        if (is_eof) return delimited_status::error;
        if (ch1 != '/') {
          reader_.unread();
          out.push_back('\\');
          continue;
        }
        out.push_back('/');
      } else {
        append_rune(out, ch0);
      }
    }
  }

  token scan_number() {
    std::string buffer;
    const rune_at first = reader_.current();
    const position pos = first.pos;
    if (first.rune == '.') {
      const char32_t ch1 = reader_.read().rune;
      reader_.unread();
      if (!is_digit(ch1)) return {tok::illegal, pos, "."};
      reader_.unread();
    } else {
      reader_.unread();
    }
    scan_digits(buffer);

    bool is_decimal = false;
    if (reader_.read().rune == '.') {
      is_decimal = true;
      const char32_t ch1 = reader_.read().rune;
      if (is_digit(ch1)) {
        buffer.push_back('.');
        append_rune(buffer, ch1);
        scan_digits(buffer);
      } else {
        reader_.unread();
      }
    } else {
      reader_.unread();
    }

    if (!is_decimal) {
      const char32_t ch0 = reader_.read().rune;
      if (is_letter(ch0) || ch0 == micro_sign) {
        append_rune(buffer, ch0);
        for (;;) {
          const char32_t ch1 = reader_.read().rune;
          if (!is_letter(ch1) && ch1 != micro_sign) {
            reader_.unread();
            break;
          }
          append_rune(buffer, ch1);
        }
        for (;;) {
          const char32_t ch1 = reader_.read().rune;
          if (is_letter(ch1) || ch1 == micro_sign || is_digit(ch1)) {
            append_rune(buffer, ch1);
          } else {
            reader_.unread();
            break;
          }
        }
        return {tok::durationval, pos, std::move(buffer)};
      }
      reader_.unread();
      return {tok::integer, pos, std::move(buffer)};
    }
    return {tok::number, pos, std::move(buffer)};
  }

  void scan_digits(std::string& buffer) {
    for (;;) {
      const char32_t ch = reader_.read().rune;
      if (!is_digit(ch)) {
        reader_.unread();
        break;
      }
      append_rune(buffer, ch);
    }
  }

  rune_reader reader_;
};

// bufScanner: the last three tokens, so the parser can put back up to three.
class buffered_scanner {
 public:
  explicit buffered_scanner(std::string_view text) : scanner_(text) {}

  token scan() { return scan_with(false); }
  token scan_regex() { return scan_with(true); }
  void unscan() { ++unscanned_; }
  rune_reader& reader() { return scanner_.reader(); }

 private:
  token scan_with(bool is_regex) {
    if (unscanned_ > 0) {
      --unscanned_;
      return current();
    }
    index_ = (index_ + 1) % 3;
    buffer_[static_cast<std::size_t>(index_)] = is_regex ? scanner_.scan_regex() : scanner_.scan();
    return current();
  }
  const token& current() const {
    return buffer_[static_cast<std::size_t>(ring_index(index_, unscanned_))];
  }

  scanner scanner_;
  std::array<token, 3> buffer_{};
  int index_ = 0;
  int unscanned_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Durations (influxql.ParseDuration), with checked arithmetic where Go wraps.

constexpr std::int64_t nanosecond = 1;
constexpr std::int64_t microsecond = 1000 * nanosecond;
constexpr std::int64_t millisecond = 1000 * microsecond;
constexpr std::int64_t second = 1000 * millisecond;
constexpr std::int64_t minute = 60 * second;
constexpr std::int64_t hour = 60 * minute;
constexpr std::int64_t day = 24 * hour;
constexpr std::int64_t week = 7 * day;

// Empty on success, else InfluxDB's error text.
std::string parse_duration_detailed(std::string_view text, std::int64_t& out) {
  static const std::string invalid = "invalid duration";
  std::vector<char32_t> runes;
  for (std::size_t offset = 0; offset < text.size();) {
    char32_t rune = 0;
    offset += decode_rune(text, offset, rune);
    runes.push_back(rune);
  }
  if (text.size() < 2) return invalid;
  std::size_t i = 0;
  bool is_negative = false;
  if (runes[i] == '-') {
    is_negative = true;
    ++i;
  }
  std::int64_t total = 0;
  std::int64_t measure = 0;
  std::string unit;
  const auto add = [&](std::int64_t n, std::int64_t scale) {
    std::int64_t product = 0;
    if (__builtin_mul_overflow(n, scale, &product)) return false;
    return !__builtin_add_overflow(total, product, &total);
  };
  while (i < runes.size()) {
    const std::size_t start = i;
    while (i < runes.size() && is_digit(runes[i])) ++i;
    if (i >= runes.size() || i == start) return invalid;
    std::int64_t n = 0;
    for (std::size_t j = start; j < i; ++j) {
      if (__builtin_mul_overflow(n, std::int64_t{10}, &n) ||
          __builtin_add_overflow(n, static_cast<std::int64_t>(runes[j] - '0'), &n))
        return invalid;
    }
    measure = n;
    unit.clear();
    append_rune(unit, runes[i]);
    bool is_ok = true;
    switch (runes[i]) {
      case 'n':
        if (i + 1 < runes.size() && runes[i + 1] == 's') {
          unit = "ns";
          is_ok = add(n, nanosecond);
          i += 2;
          if (!is_ok) break;
          continue;
        }
        return invalid;
      case 'u':
      case micro_sign:
        is_ok = add(n, microsecond);
        break;
      case 'm':
        if (i + 1 < runes.size() && runes[i + 1] == 's') {
          unit = "ms";
          is_ok = add(n, millisecond);
          i += 2;
          if (!is_ok) break;
          continue;
        }
        is_ok = add(n, minute);
        break;
      case 's':
        is_ok = add(n, second);
        break;
      case 'h':
        is_ok = add(n, hour);
        break;
      case 'd':
        is_ok = add(n, day);
        break;
      case 'w':
        is_ok = add(n, week);
        break;
      default:
        return invalid;
    }
    if (!is_ok)
      return "overflowed duration " + std::to_string(measure) + unit +
             ": choose a smaller duration or INF";
    ++i;
  }
  out = is_negative ? -total : total;
  return {};
}

// ---------------------------------------------------------------------------------------------
// Quoting, as InfluxDB's QuoteString / QuoteIdent write names back.

bool ident_needs_quotes(std::string_view ident) {
  if (lookup_keyword(ident) != tok::ident) return true;
  bool is_first = true;
  for (std::size_t offset = 0; offset < ident.size();) {
    char32_t rune = 0;
    offset += decode_rune(ident, offset, rune);
    if (is_first ? !is_ident_first_char(rune) : !is_ident_char(rune)) return true;
    is_first = false;
  }
  return false;
}

std::string escape(std::string_view text, char quote) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\\' || c == quote) {
      out.push_back('\\');
      out.push_back(c);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string quote_string(std::string_view text) {
  return "'" + escape(text, '\'') + "'";
}

std::string quote_ident(const std::vector<std::string>& segments) {
  std::string out;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string& segment = segments[i];
    const bool is_last = i + 1 == segments.size();
    const bool needs_quote = ident_needs_quotes(segment) || (!is_last && !segment.empty()) ||
                             ((i == 0 || is_last) && segment.empty());
    if (needs_quote) out.push_back('"');
    out += escape(segment, '"');
    if (needs_quote) out.push_back('"');
    if (!is_last) out.push_back('.');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Expressions

expression_ptr make_node(expression_kind kind) {
  auto node = std::make_unique<expression>();
  node->kind = kind;
  return node;
}

void update_depth(expression& node) {
  std::uint32_t deepest = 0;
  for (const auto& child : node.children) deepest = std::max(deepest, child->depth);
  node.depth = deepest + 1;
}

expression_ptr make_binary(binary_op op, expression_ptr lhs, expression_ptr rhs) {
  auto node = make_node(expression_kind::binary);
  node->op = op;
  node->children.push_back(std::move(lhs));
  node->children.push_back(std::move(rhs));
  update_depth(*node);
  return node;
}

std::string_view name_of(data_type type) {
  switch (type) {
    case data_type::floating:
      return "float";
    case data_type::integer:
      return "integer";
    case data_type::unsigned_integer:
      return "unsigned";
    case data_type::string:
      return "string";
    case data_type::boolean:
      return "boolean";
    case data_type::any_field:
      return "field";
    case data_type::tag:
      return "tag";
    case data_type::unknown:
      break;
  }
  return "";
}

// Whether an expression holds a comparison or logical operator, which SELECT fields may not
// (validateField: the last one found in a pre-order walk is the one named).
void find_invalid_field_operator(const expression& e, std::optional<binary_op>& found) {
  if (e.kind == expression_kind::binary) {
    switch (e.op) {
      case binary_op::equal:
      case binary_op::not_equal:
      case binary_op::regex_match:
      case binary_op::regex_not_match:
      case binary_op::less:
      case binary_op::less_equal:
      case binary_op::greater:
      case binary_op::greater_equal:
      case binary_op::logical_and:
      case binary_op::logical_or:
        found = e.op;
        return;
      default:
        break;
    }
  }
  for (const auto& child : e.children) find_invalid_field_operator(*child, found);
}

bool has_call(const expression& e) {
  if (e.kind == expression_kind::call) return true;
  return std::any_of(e.children.begin(), e.children.end(),
                     [](const expression_ptr& child) { return has_call(*child); });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public helpers

std::optional<std::int64_t> parse_duration(std::string_view text) {
  std::int64_t ns = 0;
  if (!parse_duration_detailed(text, ns).empty()) return std::nullopt;
  return ns;
}

std::string format_duration_literal(std::int64_t ns) {
  if (ns == 0) return "0s";
  const auto whole = [&](std::int64_t unit, const char* suffix) {
    return std::to_string(ns / unit) + suffix;
  };
  if (ns % week == 0) return whole(week, "w");
  if (ns % day == 0) return whole(day, "d");
  if (ns % hour == 0) return whole(hour, "h");
  if (ns % minute == 0) return whole(minute, "m");
  if (ns % second == 0) return whole(second, "s");
  if (ns % millisecond == 0) return whole(millisecond, "ms");
  if (ns % microsecond == 0) return whole(microsecond, "u");
  return whole(nanosecond, "ns");
}

// A port of Go's time.Duration.String.
std::string format_duration(std::int64_t ns) {
  char buffer[32];
  std::size_t w = sizeof buffer;
  const bool is_negative = ns < 0;
  std::uint64_t u =
      is_negative ? 0 - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns);

  // Writes the fraction of v / 10^precision (dropping trailing zeros, and the dot when the
  // fraction is zero) before w, and returns v / 10^precision.
  const auto format_fraction = [&](std::uint64_t v, int precision) {
    bool is_printing = false;
    for (int i = 0; i < precision; ++i) {
      const std::uint64_t digit = v % 10;
      is_printing = is_printing || digit != 0;
      if (is_printing) buffer[--w] = static_cast<char>('0' + digit);
      v /= 10;
    }
    if (is_printing) buffer[--w] = '.';
    return v;
  };
  const auto format_integer = [&](std::uint64_t v) {
    if (v == 0) {
      buffer[--w] = '0';
      return;
    }
    while (v > 0) {
      buffer[--w] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
  };

  if (u < static_cast<std::uint64_t>(second)) {
    // Below a second: ns, µs or ms, with a fraction.
    int precision = 0;
    buffer[--w] = 's';
    if (u == 0) {
      return "0s";
    } else if (u < static_cast<std::uint64_t>(microsecond)) {
      buffer[--w] = 'n';
    } else if (u < static_cast<std::uint64_t>(millisecond)) {
      precision = 3;
      // µ in UTF-8, written backwards.
      buffer[--w] = static_cast<char>(0xB5);
      buffer[--w] = static_cast<char>(0xC2);
    } else {
      precision = 6;
      buffer[--w] = 'm';
    }
    u = format_fraction(u, precision);
    format_integer(u);
  } else {
    buffer[--w] = 's';
    u = format_fraction(u, 9);
    format_integer(u % 60);
    u /= 60;
    if (u > 0) {
      buffer[--w] = 'm';
      format_integer(u % 60);
      u /= 60;
      if (u > 0) {
        buffer[--w] = 'h';
        format_integer(u);
      }
    }
  }
  if (is_negative) buffer[--w] = '-';
  return std::string(buffer + w, sizeof buffer - w);
}

std::string_view name_of(binary_op op) {
  switch (op) {
    case binary_op::add:
      return "+";
    case binary_op::subtract:
      return "-";
    case binary_op::multiply:
      return "*";
    case binary_op::divide:
      return "/";
    case binary_op::modulo:
      return "%";
    case binary_op::bitwise_and:
      return "&";
    case binary_op::bitwise_or:
      return "|";
    case binary_op::bitwise_xor:
      return "^";
    case binary_op::logical_and:
      return "AND";
    case binary_op::logical_or:
      return "OR";
    case binary_op::in:
      return "IN";
    case binary_op::equal:
      return "=";
    case binary_op::not_equal:
      return "!=";
    case binary_op::regex_match:
      return "=~";
    case binary_op::regex_not_match:
      return "!~";
    case binary_op::less:
      return "<";
    case binary_op::less_equal:
      return "<=";
    case binary_op::greater:
      return ">";
    case binary_op::greater_equal:
      return ">=";
  }
  return "";
}

std::string to_string(const expression& e) {
  switch (e.kind) {
    case expression_kind::var_ref: {
      std::string out = quote_ident({e.text});
      if (e.type != data_type::unknown) out += "::" + std::string(name_of(e.type));
      return out;
    }
    case expression_kind::wildcard:
      if (e.type == data_type::any_field) return "*::field";
      if (e.type == data_type::tag) return "*::tag";
      return "*";
    case expression_kind::call: {
      std::string out = e.text + "(";
      for (std::size_t i = 0; i < e.children.size(); ++i) {
        if (i > 0) out += ", ";
        out += to_string(*e.children[i]);
      }
      return out + ")";
    }
    case expression_kind::binary:
      return to_string(*e.children[0]) + " " + std::string(name_of(e.op)) + " " +
             to_string(*e.children[1]);
    case expression_kind::paren:
      return "(" + to_string(*e.children[0]) + ")";
    case expression_kind::string:
      return quote_string(e.text);
    case expression_kind::number: {
      char buffer[64];
      std::snprintf(buffer, sizeof buffer, "%.3f", e.number);
      return buffer;
    }
    case expression_kind::integer:
      return std::to_string(e.integer);
    case expression_kind::unsigned_integer:
      return std::to_string(e.unsigned_integer);
    case expression_kind::boolean:
      return e.boolean ? "true" : "false";
    case expression_kind::duration:
      return format_duration_literal(e.integer);
    case expression_kind::regex: {
      std::string out = "/";
      for (char c : e.text) {
        if (c == '/') out.push_back('\\');
        out.push_back(c);
      }
      return out + "/";
    }
    case expression_kind::distinct:
      return "DISTINCT " + e.text;
  }
  return {};
}

bool tag_key_filter::matches(std::string_view key) const {
  switch (op) {
    case tag_key_op::equal:
      return !keys.empty() && keys.front() == key;
    case tag_key_op::not_equal:
      return keys.empty() || keys.front() != key;
    case tag_key_op::in:
      return std::find(keys.begin(), keys.end(), key) != keys.end();
    case tag_key_op::regex_match:
      return regex && regex->search(key);
    case tag_key_op::regex_not_match:
      return !regex || !regex->search(key);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Time zones: a TZif reader (RFC 8536). After the last transition the last offset holds: the
// "fat" files Debian installs list transitions up to 2037, so the POSIX rule in the footer is
// not read.

struct zone_data {
  std::vector<std::int64_t> transitions;  // UTC seconds, ascending
  std::vector<std::uint8_t> type_of_transition;
  std::vector<int> offsets;  // per local time type, seconds east of UTC
};

namespace {

constexpr std::size_t max_tzif_bytes = std::size_t{1} << 20;
constexpr std::size_t max_cached_zones = 1024;
constexpr std::int64_t max_zone_offset = 26 * 3600;

std::uint32_t read_u32(std::string_view data, std::size_t offset) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset + 1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset + 2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(data[offset + 3]));
}

std::uint64_t read_u64(std::string_view data, std::size_t offset) {
  return (static_cast<std::uint64_t>(read_u32(data, offset)) << 32) | read_u32(data, offset + 4);
}

std::shared_ptr<const zone_data> parse_tzif(std::string_view data) {
  struct header {
    std::uint64_t isut = 0, isstd = 0, leap = 0, time = 0, type = 0, chars = 0;
  };
  const auto read_header = [&](std::size_t offset, header& h) {
    if (data.size() < offset + 44 || data.substr(offset, 4) != "TZif") return false;
    h.isut = read_u32(data, offset + 20);
    h.isstd = read_u32(data, offset + 24);
    h.leap = read_u32(data, offset + 28);
    h.time = read_u32(data, offset + 32);
    h.type = read_u32(data, offset + 36);
    h.chars = read_u32(data, offset + 40);
    return h.type > 0;
  };
  header h;
  if (!read_header(0, h)) return nullptr;
  std::size_t time_size = 4;
  std::size_t offset = 44;
  if (data[4] >= '2') {
    const std::uint64_t v1 = h.time * 5 + h.type * 6 + h.chars + h.leap * 8 + h.isstd + h.isut;
    if (v1 > data.size()) return nullptr;
    const std::size_t second_header = 44 + static_cast<std::size_t>(v1);
    if (!read_header(second_header, h)) return nullptr;
    time_size = 8;
    offset = second_header + 44;
  }
  const std::uint64_t needed = h.time * (time_size + 1) + h.type * 6;
  if (needed > data.size() || offset + needed > data.size()) return nullptr;

  auto zone = std::make_shared<zone_data>();
  zone->transitions.reserve(static_cast<std::size_t>(h.time));
  for (std::uint64_t i = 0; i < h.time; ++i) {
    const std::size_t at = offset + static_cast<std::size_t>(i) * time_size;
    const std::int64_t when =
        time_size == 8 ? static_cast<std::int64_t>(read_u64(data, at))
                       : static_cast<std::int64_t>(static_cast<std::int32_t>(read_u32(data, at)));
    if (!zone->transitions.empty() && when <= zone->transitions.back()) return nullptr;
    zone->transitions.push_back(when);
  }
  offset += static_cast<std::size_t>(h.time) * time_size;
  for (std::uint64_t i = 0; i < h.time; ++i) {
    const auto type = static_cast<std::uint8_t>(data[offset + static_cast<std::size_t>(i)]);
    if (type >= h.type) return nullptr;
    zone->type_of_transition.push_back(type);
  }
  offset += static_cast<std::size_t>(h.time);
  for (std::uint64_t i = 0; i < h.type; ++i) {
    const auto utoff =
        static_cast<std::int32_t>(read_u32(data, offset + static_cast<std::size_t>(i) * 6));
    if (utoff < -max_zone_offset || utoff > max_zone_offset) return nullptr;
    zone->offsets.push_back(utoff);
  }
  return zone;
}

bool is_safe_zone_name(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '/') return false;
  std::size_t segment_start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '/') {
      const std::string_view segment = name.substr(segment_start, i - segment_start);
      if (segment.empty() || segment == "." || segment == "..") return false;
      segment_start = i + 1;
      continue;
    }
    const char c = name[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '+' &&
        c != '.')
      return false;
  }
  return true;
}

std::shared_ptr<const zone_data> load_zone(const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const zone_data>, std::less<>> cache;
  {
    const std::lock_guard lock(mutex);
    if (auto found = cache.find(name); found != cache.end()) return found->second;
  }
  const char* tzdir = std::getenv("TZDIR");
  const std::string path =
      std::string(tzdir != nullptr && *tzdir != '\0' ? tzdir : "/usr/share/zoneinfo") + "/" + name;
  std::ifstream file(path, std::ios::binary);
  if (!file) return nullptr;
  std::string data(max_tzif_bytes + 1, '\0');
  file.read(data.data(), static_cast<std::streamsize>(data.size()));
  const auto size = static_cast<std::size_t>(file.gcount());
  if (size > max_tzif_bytes) return nullptr;
  data.resize(size);
  auto zone = parse_tzif(data);
  if (!zone) return nullptr;
  const std::lock_guard lock(mutex);
  if (cache.size() < max_cached_zones) cache.emplace(name, zone);
  return zone;
}

}  // namespace

std::optional<time_zone> time_zone::find(std::string_view name) {
  time_zone zone;
  // Go's LoadLocation reads "" and "UTC" as UTC, "Local" as the server's zone: ours is UTC.
  if (name.empty() || name == "UTC" || name == "Local") return zone;
  if (!is_safe_zone_name(name)) return std::nullopt;
  zone.data_ = load_zone(std::string(name));
  if (!zone.data_) return std::nullopt;
  zone.name_ = std::string(name);
  return zone;
}

int time_zone::offset_at(std::int64_t utc_seconds) const {
  if (!data_ || data_->offsets.empty()) return 0;
  const auto& transitions = data_->transitions;
  const auto after = std::upper_bound(transitions.begin(), transitions.end(), utc_seconds);
  if (after == transitions.begin()) return data_->offsets.front();
  const auto index = static_cast<std::size_t>(after - transitions.begin()) - 1;
  return data_->offsets[data_->type_of_transition[index]];
}

int time_zone::offset_for_local(std::int64_t local_seconds) const {
  if (!data_) return 0;
  const int first = offset_at(local_seconds);
  const int second_guess = offset_at(local_seconds - first);
  if (second_guess == first) return first;
  return offset_at(local_seconds - second_guess) == second_guess ? second_guess : first;
}

// ---------------------------------------------------------------------------------------------
// Time literals

namespace {

bool digits_at(std::string_view text, std::size_t offset, std::size_t count, int& value) {
  if (offset + count > text.size()) return false;
  value = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const char c = text[offset + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int days_in_month(int year, int month) {
  static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool is_leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && is_leap ? 29 : days[month - 1];
}

}  // namespace

bool is_time_string(std::string_view text) {
  int value = 0;
  // InfluxDB's two patterns, ^\d{4}-\d{2}-\d{2}$ and ^\d{4}-\d{2}-\d{2}.+, share this prefix.
  return text.size() >= 10 && digits_at(text, 0, 4, value) && text[4] == '-' &&
         digits_at(text, 5, 2, value) && text[7] == '-' && digits_at(text, 8, 2, value);
}

std::optional<std::int64_t> parse_time(std::string_view text, const time_zone* zone) {
  if (!is_time_string(text)) return std::nullopt;
  int year = 0, month = 0, day_of_month = 0;
  digits_at(text, 0, 4, year);
  digits_at(text, 5, 2, month);
  digits_at(text, 8, 2, day_of_month);
  if (month < 1 || month > 12 || day_of_month < 1 || day_of_month > days_in_month(year, month))
    return std::nullopt;
  int hours = 0, minutes = 0, seconds = 0;
  std::int64_t fraction_ns = 0;
  bool has_offset = false;
  int offset_seconds = 0;
  if (text.size() > 10) {
    // "2006-01-02 15:04:05.999999" or RFC 3339 "2006-01-02T15:04:05.999999999Z07:00".
    const bool is_rfc3339 = text[10] == 'T';
    if (!is_rfc3339 && text[10] != ' ') return std::nullopt;
    if (!digits_at(text, 11, 2, hours) || text.size() < 19 || text[13] != ':' ||
        !digits_at(text, 14, 2, minutes) || text[16] != ':' || !digits_at(text, 17, 2, seconds))
      return std::nullopt;
    if (hours > 23 || minutes > 59 || seconds > 59) return std::nullopt;
    std::size_t at = 19;
    if (at < text.size() && text[at] == '.') {
      ++at;
      const std::size_t digits_start = at;
      std::int64_t scale = 100'000'000;
      while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
        fraction_ns += (text[at] - '0') * scale;
        scale /= 10;
        ++at;
      }
      if (at == digits_start) return std::nullopt;
    }
    if (is_rfc3339) {
      if (at >= text.size()) return std::nullopt;
      if (text[at] == 'Z') {
        has_offset = true;
        ++at;
      } else if (text[at] == '+' || text[at] == '-') {
        int offset_hours = 0, offset_minutes = 0;
        if (!digits_at(text, at + 1, 2, offset_hours) || at + 3 >= text.size() ||
            text[at + 3] != ':' || !digits_at(text, at + 4, 2, offset_minutes) ||
            offset_hours > 23 || offset_minutes > 59)
          return std::nullopt;
        offset_seconds = (offset_hours * 60 + offset_minutes) * 60;
        if (text[at] == '-') offset_seconds = -offset_seconds;
        has_offset = true;
        at += 6;
      } else {
        return std::nullopt;
      }
    }
    if (at != text.size()) return std::nullopt;
  }
  const std::int64_t local_seconds =
      days_from_civil(year, month, day_of_month) * 86400 + hours * 3600 + minutes * 60 + seconds;
  if (!has_offset && zone != nullptr) offset_seconds = zone->offset_for_local(local_seconds);
  const std::int64_t utc_seconds = local_seconds - offset_seconds;
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(utc_seconds, std::int64_t{1'000'000'000}, &ns) ||
      __builtin_add_overflow(ns, fraction_ns, &ns))
    return std::nullopt;
  return ns;
}

// ---------------------------------------------------------------------------------------------
// The parser (parser.go, parse_tree.go)

namespace {

bool parse_int64(std::string_view digits, std::int64_t& out) {
  out = 0;
  if (digits.empty()) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(out, std::int64_t{10}, &out) ||
        __builtin_add_overflow(out, static_cast<std::int64_t>(c - '0'), &out))
      return false;
  }
  return true;
}

bool parse_uint64(std::string_view digits, std::uint64_t& out) {
  out = 0;
  if (digits.empty()) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(out, std::uint64_t{10}, &out) ||
        __builtin_add_overflow(out, static_cast<std::uint64_t>(c - '0'), &out))
      return false;
  }
  return true;
}

enum class target_requirement : std::uint8_t { required, not_required, subquery };

class parser {
 public:
  explicit parser(std::string_view text) : s_(text) {}

  std::variant<query, parse_error> parse_all() {
    query result;
    bool is_after_separator = true;
    for (;;) {
      const token t = scan_ignore_whitespace();
      if (t.type == tok::eof) return std::variant<query, parse_error>(std::move(result));
      if (t.type == tok::semicolon) {
        is_after_separator = true;
        continue;
      }
      if (!is_after_separator) {
        fail_expected(t, {";"});
        return error();
      }
      unscan();
      statement parsed;
      if (!parse_statement(parsed)) return error();
      result.statements.push_back(std::move(parsed));
      is_after_separator = false;
    }
  }

 private:
  // ---- errors: every parse function returns false once error_ is set.

  parse_error error() const { return {"error parsing query: " + error_.value_or("")}; }

  static std::string at(position pos) {
    return " at line " + std::to_string(pos.line + 1) + ", char " + std::to_string(pos.column + 1);
  }

  // newParseError(tokstr(tok, lit), expected, pos)
  bool fail_expected(const token& t, std::initializer_list<std::string_view> expected) {
    std::string message = "found ";
    message += t.lit.empty() ? std::string(token_name(t.type)) : t.lit;
    message += ", expected ";
    bool is_first = true;
    for (std::string_view name : expected) {
      if (!is_first) message += ", ";
      message += name;
      is_first = false;
    }
    error_ = message + at(t.pos);
    return false;
  }
  // &ParseError{Message, Pos}
  bool fail_at(const std::string& message, position pos) {
    error_ = message + at(pos);
    return false;
  }
  // errors.New / fmt.Errorf: no position.
  bool fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  // ---- tokens

  token scan() { return s_.scan(); }
  token scan_ignore_whitespace() {
    for (;;) {
      token t = s_.scan();
      if (t.type != tok::ws && t.type != tok::comment) return t;
    }
  }
  void unscan() { s_.unscan(); }
  void consume_whitespace() {
    if (s_.scan().type != tok::ws) unscan();
  }
  // The next rune of the text itself, past any token waiting in the unscan buffer (as Go's).
  char32_t peek_rune() {
    rune_reader& reader = s_.reader();
    const char32_t rune = reader.read().rune;
    if (rune != eof_rune) reader.unread();
    return rune;
  }
  // Consumes the next token when it is `t`; puts it back otherwise.
  bool accept(tok t) {
    if (scan_ignore_whitespace().type == t) return true;
    unscan();
    return false;
  }
  // parseTokens: each of `expected` in turn, else "found X, expected <that one>".
  bool expect(std::initializer_list<tok> expected) {
    for (tok want : expected) {
      const token t = scan_ignore_whitespace();
      if (t.type != want) return fail_expected(t, {token_name(want)});
    }
    return true;
  }

  struct nesting_guard {
    explicit nesting_guard(int& depth) : depth_(depth) { ++depth_; }
    ~nesting_guard() { --depth_; }
    nesting_guard(const nesting_guard&) = delete;
    nesting_guard& operator=(const nesting_guard&) = delete;
    int& depth_;
  };
  bool is_too_deep() const { return nesting_ > static_cast<int>(max_expression_depth); }

  // ---- literals and names

  bool parse_ident(std::string& out) {
    const token t = scan_ignore_whitespace();
    if (t.type != tok::ident) return fail_expected(t, {"identifier"});
    out = t.lit;
    return true;
  }

  bool parse_ident_list(std::vector<std::string>& out) {
    std::string ident;
    if (!parse_ident(ident)) return false;
    out.push_back(ident);
    for (;;) {
      if (scan_ignore_whitespace().type != tok::comma) {
        unscan();
        return true;
      }
      if (!parse_ident(ident)) return false;
      out.push_back(ident);
    }
  }

  bool parse_string(std::string& out) {
    const token t = scan_ignore_whitespace();
    if (t.type != tok::string) return fail_expected(t, {"string"});
    out = t.lit;
    return true;
  }

  bool parse_string_list(std::vector<std::string>& out) {
    std::string text;
    if (!parse_string(text)) return false;
    out.push_back(text);
    for (;;) {
      if (scan_ignore_whitespace().type != tok::comma) {
        unscan();
        return true;
      }
      if (!parse_string(text)) return false;
      out.push_back(text);
    }
  }

  // ParseInt(min, max)
  bool parse_int(std::int64_t min, std::int64_t max, int& out) {
    const token t = scan_ignore_whitespace();
    if (t.type != tok::integer) return fail_expected(t, {"integer"});
    std::int64_t n = 0;
    if (!parse_int64(t.lit, n))
      return fail_at("strconv.Atoi: parsing \"" + t.lit + "\": value out of range", t.pos);
    if (n < min || n > max)
      return fail_at("invalid value " + std::to_string(n) + ": must be " + std::to_string(min) +
                         " <= n <= " + std::to_string(max),
                     t.pos);
    out = static_cast<int>(n);
    return true;
  }

  bool parse_uint64_token(std::uint64_t& out) {
    const token t = scan_ignore_whitespace();
    if (t.type != tok::integer) return fail_expected(t, {"integer"});
    if (!parse_uint64(t.lit, out))
      return fail_at("strconv.ParseUint: parsing \"" + t.lit + "\": value out of range", t.pos);
    return true;
  }

  // The parser's ParseDuration: a duration literal or INF (0).
  bool parse_duration_token(std::int64_t& out) {
    const token t = scan_ignore_whitespace();
    if (t.type != tok::durationval && t.type != tok::kw_inf) return fail_expected(t, {"duration"});
    if (t.type == tok::kw_inf) {
      out = 0;
      return true;
    }
    if (std::string reason = parse_duration_detailed(t.lit, out); !reason.empty())
      return fail_at(reason, t.pos);
    return true;
  }

  // SHARD DURATION's value, which may not be INF.
  bool parse_shard_duration(std::int64_t& out) {
    const token t = scan_ignore_whitespace();
    if (t.type == tok::kw_inf) return fail_at("invalid duration INF for shard duration", t.pos);
    unscan();
    return parse_duration_token(out);
  }

  // ParseOptionalTokenAndInt: `<keyword> <n>` or nothing (0).
  bool parse_optional_int(tok keyword, std::int64_t& out) {
    out = 0;
    if (scan_ignore_whitespace().type != keyword) {
      unscan();
      return true;
    }
    const token t = scan_ignore_whitespace();
    if (t.type != tok::integer) return fail_expected(t, {"integer"});
    // Go's ParseInt saturates (its range error is ignored); a literal is never negative.
    if (!parse_int64(t.lit, out)) out = std::numeric_limits<std::int64_t>::max();
    return true;
  }

  bool parse_segmented_idents(std::vector<std::string>& idents) {
    std::string ident;
    if (!parse_ident(ident)) return false;
    idents.push_back(ident);
    for (;;) {
      if (scan().type != tok::dot) {
        unscan();
        break;
      }
      const char32_t next = peek_rune();
      if (next == '/' || next == ':') break;  // a regex, or `:MEASUREMENT`: the caller's
      if (next == '.') {
        idents.emplace_back();
        continue;
      }
      if (!parse_ident(ident)) return false;
      idents.push_back(ident);
    }
    if (idents.size() > 3) return fail_at("too many segments in " + quote_ident(idents), {});
    return true;
  }

  bool parse_regex(std::optional<regex_value>& out) {
    out.reset();
    char32_t next = peek_rune();
    if (is_whitespace(next)) consume_whitespace();
    next = peek_rune();
    if (next == '$') {
      // A bound parameter could stand for a regex; Nimbus binds none.
      const token t = scan();
      unscan();
      if (t.type != tok::regex) return true;
    } else if (next != '/') {
      return true;
    }
    const token t = s_.scan_regex();
    if (t.type == tok::badescape) return fail_at("bad escape: " + t.lit, t.pos);
    if (t.type == tok::badregex) return fail_at("bad regex: " + t.lit, t.pos);
    if (t.type != tok::regex) return fail_expected(t, {"regex"});
    regex_value value;
    if (std::string reason = compile_regex(t.lit, value); !reason.empty())
      return fail_at("error parsing regexp: " + reason, t.pos);
    out = std::move(value);
    return true;
  }

  static expression_ptr regex_node(regex_value value) {
    auto node = make_node(expression_kind::regex);
    node->text = std::move(value.pattern);
    node->regex = std::move(value.compiled);
    return node;
  }

  // ---- expressions

  bool check_depth(const expression& e, position pos) {
    if (e.depth > max_expression_depth) return fail_at("expression nests too deeply", pos);
    return true;
  }

  bool parse_expr(expression_ptr& out) {
    expression_ptr root;
    if (!parse_unary_expr(root)) return false;
    for (;;) {
      const token op = scan_ignore_whitespace();
      if (!is_operator(op.type)) {
        unscan();
        out = std::move(root);
        return true;
      }
      expression_ptr rhs;
      if (op.type == tok::eqregex || op.type == tok::neqregex) {
        std::optional<regex_value> re;
        if (!parse_regex(re)) return false;
        if (!re) return fail_expected(scan_ignore_whitespace(), {"regex"});
        rhs = regex_node(std::move(*re));
      } else if (!parse_unary_expr(rhs)) {
        return false;
      }
      // Descend the right spine to the first node that binds at least as tightly, and put the
      // new operator there (parser.go's precedence climbing).
      const binary_op new_op = to_binary_op(op.type);
      std::vector<expression*> path;
      expression_ptr* slot = &root;
      for (;;) {
        expression* node = slot->get();
        if (node->kind != expression_kind::binary || precedence(node->op) >= precedence(new_op)) {
          *slot = make_binary(new_op, std::move(*slot), std::move(rhs));
          break;
        }
        path.push_back(node);
        slot = &node->children[1];
      }
      for (auto it = path.rbegin(); it != path.rend(); ++it) update_depth(**it);
      if (!check_depth(*root, op.pos)) return false;
    }
  }

  bool parse_unary_expr(expression_ptr& out) {
    const nesting_guard guard(nesting_);
    {
      const token t = scan_ignore_whitespace();
      if (is_too_deep()) return fail_at("expression nests too deeply", t.pos);
      if (t.type == tok::lparen) {
        expression_ptr inner;
        if (!parse_expr(inner)) return false;
        const token close = scan_ignore_whitespace();
        if (close.type != tok::rparen) return fail_expected(close, {")"});
        out = make_node(expression_kind::paren);
        out->children.push_back(std::move(inner));
        update_depth(*out);
        return check_depth(*out, t.pos);
      }
      unscan();
    }

    const token t = scan_ignore_whitespace();
    switch (t.type) {
      case tok::ident: {
        if (scan().type == tok::lparen) return parse_call(t.lit, out);
        unscan();
        unscan();
        return parse_var_ref(out);
      }
      case tok::kw_distinct: {
        const token next = scan();
        if (next.type == tok::lparen) return parse_call("distinct", out);
        if (next.type == tok::ws) {
          const token name = scan_ignore_whitespace();
          if (name.type != tok::ident) return fail_expected(name, {"identifier"});
          out = make_node(expression_kind::distinct);
          out->text = name.lit;
          return true;
        }
        return fail_expected(next, {"(", "identifier"});
      }
      case tok::string:
        out = make_node(expression_kind::string);
        out->text = t.lit;
        return true;
      case tok::number: {
        const double value = std::strtod(t.lit.c_str(), nullptr);
        if (!std::isfinite(value)) return fail_at("unable to parse number", t.pos);
        out = make_node(expression_kind::number);
        out->number = value;
        return true;
      }
      case tok::integer: {
        std::int64_t value = 0;
        if (parse_int64(t.lit, value)) {
          out = make_node(expression_kind::integer);
          out->integer = value;
          return true;
        }
        // Past int64: an unsigned literal, when it fits.
        std::uint64_t unsigned_value = 0;
        if (!parse_uint64(t.lit, unsigned_value)) return fail_at("unable to parse integer", t.pos);
        out = make_node(expression_kind::unsigned_integer);
        out->unsigned_integer = unsigned_value;
        return true;
      }
      case tok::true_literal:
      case tok::false_literal:
        out = make_node(expression_kind::boolean);
        out->boolean = t.type == tok::true_literal;
        return true;
      case tok::durationval: {
        std::int64_t ns = 0;
        if (std::string reason = parse_duration_detailed(t.lit, ns); !reason.empty())
          return fail(reason);
        out = make_node(expression_kind::duration);
        out->integer = ns;
        return true;
      }
      case tok::mul: {
        out = make_node(expression_kind::wildcard);
        if (scan().type == tok::doublecolon) {
          const token type = scan();
          if (type.type == tok::kw_field) {
            out->type = data_type::any_field;
          } else if (type.type == tok::kw_tag) {
            out->type = data_type::tag;
          } else {
            return fail_expected(type, {"field", "tag"});
          }
        } else {
          unscan();
        }
        return true;
      }
      case tok::boundparam: {
        const std::string key = t.lit.substr(1);
        if (key.empty()) return fail("empty bound parameter");
        return fail("missing parameter: " + key);
      }
      case tok::add:
      case tok::sub: {
        const token next = scan_ignore_whitespace();
        switch (next.type) {
          case tok::number:
          case tok::integer:
          case tok::durationval:
          case tok::lparen:
          case tok::ident:
            break;
          default:
            return fail_expected(next, {"identifier", "number", "duration", "("});
        }
        unscan();
        expression_ptr operand;
        if (!parse_unary_expr(operand)) return false;
        const bool is_negative = t.type == tok::sub;
        switch (operand->kind) {
          case expression_kind::number:
            if (is_negative) operand->number = -operand->number;
            break;
          case expression_kind::integer:
          case expression_kind::duration:
            if (is_negative)
              operand->integer =
                  static_cast<std::int64_t>(0 - static_cast<std::uint64_t>(operand->integer));
            break;
          case expression_kind::unsigned_integer:
            if (is_negative) {
              // -9223372036854775808 reads as an unsigned literal first, then fits.
              if (operand->unsigned_integer == std::uint64_t{1} << 63) {
                operand->kind = expression_kind::integer;
                operand->integer = std::numeric_limits<std::int64_t>::min();
              } else {
                return fail("constant -" + std::to_string(operand->unsigned_integer) +
                            " underflows int64");
              }
            }
            break;
          case expression_kind::var_ref:
          case expression_kind::call:
          case expression_kind::paren: {
            auto factor = make_node(expression_kind::integer);
            factor->integer = is_negative ? -1 : 1;
            out = make_binary(binary_op::multiply, std::move(factor), std::move(operand));
            return check_depth(*out, t.pos);
          }
          default:
            break;
        }
        out = std::move(operand);
        return true;
      }
      default:
        return fail_expected(t, {"identifier", "string", "number", "bool"});
    }
  }

  bool parse_var_ref(expression_ptr& out) {
    std::vector<std::string> segments;
    if (!parse_segmented_idents(segments)) return false;
    data_type type = data_type::unknown;
    if (scan().type == tok::doublecolon) {
      const token name = scan();
      if (name.type == tok::ident) {
        const std::string lower = lowercase(name.lit);
        if (lower == "float") {
          type = data_type::floating;
        } else if (lower == "integer") {
          type = data_type::integer;
        } else if (lower == "unsigned") {
          type = data_type::unsigned_integer;
        } else if (lower == "string") {
          type = data_type::string;
        } else if (lower == "boolean") {
          type = data_type::boolean;
        } else {
          return fail_expected(
              name, {"float", "integer", "unsigned", "string", "boolean", "field", "tag"});
        }
      } else if (name.type == tok::kw_field) {
        type = data_type::any_field;
      } else if (name.type == tok::kw_tag) {
        type = data_type::tag;
      } else {
        return fail_expected(name, {"float", "integer", "string", "boolean", "field", "tag"});
      }
    } else {
      unscan();
    }
    out = make_node(expression_kind::var_ref);
    for (std::size_t i = 0; i < segments.size(); ++i) {
      if (i > 0) out->text.push_back('.');
      out->text += segments[i];
    }
    out->type = type;
    return true;
  }

  // The function name and `(` have been read.
  bool parse_call(const std::string& name, expression_ptr& out) {
    auto call = make_node(expression_kind::call);
    call->text = lowercase(name);
    std::optional<regex_value> re;
    if (!parse_regex(re)) return false;
    if (re) {
      call->children.push_back(regex_node(std::move(*re)));
    } else {
      if (scan().type == tok::rparen) {
        out = std::move(call);
        return true;
      }
      unscan();
      expression_ptr argument;
      if (!parse_expr(argument)) return false;
      call->children.push_back(std::move(argument));
    }
    for (;;) {
      if (scan_ignore_whitespace().type != tok::comma) {
        unscan();
        break;
      }
      if (!parse_regex(re)) return false;
      if (re) {
        call->children.push_back(regex_node(std::move(*re)));
        continue;
      }
      expression_ptr argument;
      if (!parse_expr(argument)) return false;
      call->children.push_back(std::move(argument));
    }
    const token close = scan();
    if (close.type != tok::rparen) return fail_expected(close, {")"});
    update_depth(*call);
    out = std::move(call);
    return check_depth(*out, close.pos);
  }

  // ---- clauses

  bool parse_condition(expression_ptr& out) {
    if (scan_ignore_whitespace().type != tok::kw_where) {
      unscan();
      return true;
    }
    return parse_expr(out);
  }

  bool parse_source(bool allow_subqueries, measurement_source& out) {
    std::optional<regex_value> re;
    if (!parse_regex(re)) return false;
    if (re) {
      out.regex = std::move(re);
      return true;
    }
    if (allow_subqueries) {
      if (scan_ignore_whitespace().type == tok::lparen) {
        const nesting_guard guard(nesting_);
        if (is_too_deep()) return fail("subqueries nest too deeply");
        if (!expect({tok::kw_select})) return false;
        select_statement inner;
        if (!parse_select(inner, target_requirement::subquery)) return false;
        if (!expect({tok::rparen})) return false;
        out.is_subquery = true;
        return true;
      }
      unscan();
    }
    std::vector<std::string> idents;
    if (!parse_segmented_idents(idents)) return false;
    if (idents.size() == 3) {
      out.database = idents[0];
      out.retention_policy = idents[1];
      out.name = idents[2];
      return true;
    }
    if (!parse_regex(re)) return false;
    if (idents.size() == 1) {
      (re ? out.retention_policy : out.name) = idents[0];
    } else {
      if (re) {
        out.database = idents[0];
        out.retention_policy = idents[1];
      } else {
        out.retention_policy = idents[0];
        out.name = idents[1];
      }
    }
    out.regex = std::move(re);
    return true;
  }

  bool parse_sources(bool allow_subqueries, std::vector<measurement_source>& out) {
    for (;;) {
      measurement_source source;
      if (!parse_source(allow_subqueries, source)) return false;
      out.push_back(std::move(source));
      if (scan_ignore_whitespace().type != tok::comma) {
        unscan();
        return true;
      }
    }
  }

  // [ON db] [FROM sources]: the head of most SHOW statements.
  bool parse_on_and_from(std::string& database, std::vector<measurement_source>& sources) {
    if (accept(tok::kw_on)) {
      if (!parse_ident(database)) return false;
    }
    if (accept(tok::kw_from)) {
      if (!parse_sources(false, sources)) return false;
    }
    return true;
  }

  bool parse_dimensions(std::vector<expression_ptr>& out) {
    if (scan_ignore_whitespace().type != tok::kw_group) {
      unscan();
      return true;
    }
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_by)
      return fail_expected(t, {"BY"});
    for (;;) {
      std::optional<regex_value> re;
      if (!parse_regex(re)) return false;
      if (re) {
        out.push_back(regex_node(std::move(*re)));
      } else {
        expression_ptr dimension;
        if (!parse_expr(dimension)) return false;
        consume_whitespace();
        out.push_back(std::move(dimension));
      }
      if (scan().type != tok::comma) {
        unscan();
        return true;
      }
    }
  }

  bool parse_fill(select_statement& stmt) {
    const token t = scan_ignore_whitespace();
    unscan();
    if (t.type != tok::ident || lowercase(t.lit) != "fill") return true;
    expression_ptr e;
    if (!parse_expr(e)) return false;
    if (e->kind != expression_kind::call) return fail("fill must be a function call");
    if (e->children.size() != 1)
      return fail("fill requires an argument, e.g.: 0, null, none, previous, linear");
    const expression& argument = *e->children[0];
    if (argument.kind == expression_kind::var_ref && argument.type == data_type::unknown) {
      if (argument.text == "null") {
        stmt.fill = fill_option::null;
        return true;
      }
      if (argument.text == "none") {
        stmt.fill = fill_option::none;
        return true;
      }
      if (argument.text == "previous") {
        stmt.fill = fill_option::previous;
        return true;
      }
      if (argument.text == "linear") {
        stmt.fill = fill_option::linear;
        return true;
      }
    }
    if (argument.kind == expression_kind::integer) {
      stmt.fill = fill_option::number;
      stmt.fill_value = static_cast<double>(argument.integer);
      stmt.fill_integer = argument.integer;
      stmt.is_fill_integer = true;
      return true;
    }
    if (argument.kind == expression_kind::number) {
      stmt.fill = fill_option::number;
      stmt.fill_value = argument.number;
      return true;
    }
    return fail("expected number argument in fill()");
  }

  bool parse_sort_field(bool& is_ascending) {
    std::string name;
    if (!parse_ident(name)) return false;
    const tok order = scan_ignore_whitespace().type;
    if (order != tok::kw_asc && order != tok::kw_desc) {
      unscan();
      is_ascending = true;
    } else {
      is_ascending = order == tok::kw_asc;
    }
    return true;
  }

  // ORDER BY time [ASC|DESC] | ORDER BY ASC|DESC; `is_ascending` is the first field's order.
  bool parse_order_by(bool& is_ascending) {
    if (scan_ignore_whitespace().type != tok::kw_order) {
      unscan();
      return true;
    }
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_by)
      return fail_expected(t, {"BY"});
    const token t = scan_ignore_whitespace();
    switch (t.type) {
      case tok::kw_asc:
      case tok::kw_desc:
        is_ascending = t.type == tok::kw_asc;
        break;
      case tok::ident:
        unscan();
        if (!parse_sort_field(is_ascending)) return false;
        if (t.lit != "time") return fail("only ORDER BY time supported at this time");
        break;
      default:
        return fail_expected(t, {"identifier", "ASC", "DESC"});
    }
    std::size_t count = 1;
    for (;;) {
      if (scan_ignore_whitespace().type != tok::comma) {
        unscan();
        break;
      }
      bool ignored = true;
      if (!parse_sort_field(ignored)) return false;
      ++count;
    }
    if (count > 1) return fail("only ORDER BY time supported at this time");
    return true;
  }

  bool parse_location(select_statement& stmt) {
    const token t = scan_ignore_whitespace();
    unscan();
    if (t.type != tok::ident || lowercase(t.lit) != "tz") return true;
    expression_ptr e;
    if (!parse_expr(e)) return false;
    if (e->kind != expression_kind::call) return fail("tz must be a function call");
    if (e->children.size() != 1) return fail("tz requires exactly one argument");
    if (e->children[0]->kind != expression_kind::string)
      return fail("expected string argument in tz()");
    const std::string& name = e->children[0]->text;
    stmt.location = time_zone::find(name);
    if (!stmt.location) return fail("unable to find time zone " + name);
    return true;
  }

  // parseTagKeyExpr: WITH KEY = k | != k | =~ /re/ | !~ /re/ | IN (a, b)
  bool parse_tag_key_filter(tag_key_filter& out) {
    if (!expect({tok::kw_with, tok::kw_key})) return false;
    const token t = scan_ignore_whitespace();
    if (t.type == tok::in) {
      if (const token open = scan_ignore_whitespace(); open.type != tok::lparen)
        return fail_expected(open, {"("});
      out.op = tag_key_op::in;
      if (!parse_ident_list(out.keys)) return false;
      if (const token close = scan_ignore_whitespace(); close.type != tok::rparen)
        return fail_expected(close, {")"});
      return true;
    }
    if (t.type == tok::eq || t.type == tok::neq) {
      out.op = t.type == tok::eq ? tag_key_op::equal : tag_key_op::not_equal;
      std::string key;
      if (!parse_ident(key)) return false;
      out.keys.push_back(key);
      return true;
    }
    if (t.type == tok::eqregex || t.type == tok::neqregex) {
      out.op = t.type == tok::eqregex ? tag_key_op::regex_match : tag_key_op::regex_not_match;
      if (!parse_regex(out.regex)) return false;
      if (!out.regex) return fail_expected(scan_ignore_whitespace(), {"regex"});
      return true;
    }
    return fail_expected(t, {"IN", "=", "=~"});
  }

  // ---- SELECT

  bool parse_field(field& out) {
    std::optional<regex_value> re;
    if (!parse_regex(re)) return false;
    if (re) {
      out.expr = regex_node(std::move(*re));
    } else {
      const position pos = scan_ignore_whitespace().pos;
      unscan();
      if (!parse_expr(out.expr)) return false;
      std::optional<binary_op> invalid;
      find_invalid_field_operator(*out.expr, invalid);
      if (invalid)
        return fail("invalid operator " + std::string(name_of(*invalid)) +
                    " in SELECT clause at line " + std::to_string(pos.line + 1) + ", char " +
                    std::to_string(pos.column + 1) + "; operator is intended for WHERE clause");
    }
    if (accept(tok::kw_as)) {
      if (!parse_ident(out.alias)) return false;
    }
    consume_whitespace();
    return true;
  }

  bool parse_target(target_requirement requirement, std::optional<measurement_source>& out) {
    const token t = scan_ignore_whitespace();
    if (t.type != tok::kw_into) {
      if (requirement == target_requirement::required) return fail_expected(t, {"INTO"});
      unscan();
      return true;
    }
    std::vector<std::string> idents;
    if (!parse_segmented_idents(idents)) return false;
    if (idents.size() < 3 && peek_rune() == ':') {
      if (!expect({tok::colon, tok::kw_measurement})) return false;
      idents.emplace_back();
    }
    measurement_source target;
    if (idents.size() == 1) {
      target.name = idents[0];
    } else if (idents.size() == 2) {
      target.retention_policy = idents[0];
      target.name = idents[1];
    } else {
      target.database = idents[0];
      target.retention_policy = idents[1];
      target.name = idents[2];
    }
    out = std::move(target);
    return true;
  }

  bool parse_select(select_statement& stmt, target_requirement requirement) {
    for (;;) {
      field f;
      if (!parse_field(f)) return false;
      stmt.fields.push_back(std::move(f));
      if (scan().type != tok::comma) {
        unscan();
        break;
      }
    }
    if (!parse_target(requirement, stmt.target)) return false;
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_from)
      return fail_expected(t, {"FROM"});
    if (!parse_sources(true, stmt.sources)) return false;
    if (!parse_condition(stmt.condition)) return false;
    if (!parse_dimensions(stmt.dimensions)) return false;
    if (!parse_fill(stmt)) return false;
    if (!parse_order_by(stmt.is_ascending)) return false;
    if (!parse_optional_int(tok::kw_limit, stmt.limit)) return false;
    if (!parse_optional_int(tok::kw_offset, stmt.offset)) return false;
    if (!parse_optional_int(tok::kw_slimit, stmt.series_limit)) return false;
    if (!parse_optional_int(tok::kw_soffset, stmt.series_offset)) return false;
    if (!parse_location(stmt)) return false;
    stmt.is_raw = std::none_of(stmt.fields.begin(), stmt.fields.end(),
                               [](const field& f) { return has_call(*f.expr); });
    return true;
  }

  // ---- statements

  bool unsupported(std::string name, statement& out) {
    out = unsupported_statement{std::move(name)};
    return true;
  }

  bool parse_statement(statement& out) {
    const token t = scan_ignore_whitespace();
    switch (t.type) {
      case tok::kw_select: {
        select_statement stmt;
        if (!parse_select(stmt, target_requirement::not_required)) return false;
        out = std::move(stmt);
        return true;
      }
      case tok::kw_delete:
        return parse_delete(out);
      case tok::kw_show:
        return parse_show(out);
      case tok::kw_create:
        return parse_create(out);
      case tok::kw_drop:
        return parse_drop(out);
      case tok::kw_explain: {
        accept(tok::kw_analyze);
        if (const token select = scan_ignore_whitespace(); select.type != tok::kw_select)
          return fail_expected(select, {"SELECT"});
        select_statement stmt;
        if (!parse_select(stmt, target_requirement::not_required)) return false;
        return unsupported("EXPLAIN", out);
      }
      case tok::kw_grant:
        return parse_grant_or_revoke(true, out);
      case tok::kw_revoke:
        return parse_grant_or_revoke(false, out);
      case tok::kw_alter: {
        if (!expect_keyword_path({tok::kw_retention}, {tok::kw_policy})) return false;
        return parse_alter_retention_policy(out);
      }
      case tok::kw_set: {
        if (!expect_keyword_path({tok::kw_password}, {tok::kw_for})) return false;
        std::string user;
        if (!parse_ident(user)) return false;
        if (const token eq = scan_ignore_whitespace(); eq.type != tok::eq)
          return fail_expected(eq, {"="});
        std::string password;
        if (!parse_string(password)) return false;
        return unsupported("SET PASSWORD", out);
      }
      case tok::kw_kill: {
        if (!expect_keyword_path({}, {tok::kw_query})) return false;
        std::uint64_t id = 0;
        if (!parse_uint64_token(id)) return false;
        if (accept(tok::kw_on)) {
          std::string host;
          if (!parse_ident(host)) return false;
        }
        return unsupported("KILL QUERY", out);
      }
      default:
        return fail_expected(t, {"SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT",
                                 "REVOKE", "ALTER", "SET", "KILL"});
    }
  }

  // A chain of single-keyword groups in the parse tree (ALTER RETENTION POLICY): each level
  // offers one keyword, so a miss names just that one.
  bool expect_keyword_path(std::initializer_list<tok> groups, std::initializer_list<tok> last) {
    for (tok group : groups)
      if (!expect({group})) return false;
    for (tok keyword : last)
      if (!expect({keyword})) return false;
    return true;
  }

  bool parse_show(statement& out) {
    const token t = scan_ignore_whitespace();
    switch (t.type) {
      case tok::kw_continuous:
        if (!expect({tok::kw_queries})) return false;
        return unsupported("SHOW CONTINUOUS QUERIES", out);
      case tok::kw_databases:
        out = show_databases_statement{};
        return true;
      case tok::kw_diagnostics: {
        if (accept(tok::kw_for)) {
          std::string module;
          if (!parse_string(module)) return false;
        }
        return unsupported("SHOW DIAGNOSTICS", out);
      }
      case tok::kw_field: {
        const token next = scan_ignore_whitespace();
        if (next.type == tok::kw_key) {
          if (!parse_cardinality_tail(false, true)) return false;
          return unsupported("SHOW FIELD KEY CARDINALITY", out);
        }
        if (next.type == tok::kw_keys) return parse_show_field_keys(out);
        return fail_expected(next, {"KEY", "KEYS"});
      }
      case tok::kw_grants: {
        if (!expect({tok::kw_for})) return false;
        std::string user;
        if (!parse_ident(user)) return false;
        return unsupported("SHOW GRANTS", out);
      }
      case tok::kw_measurement: {
        const token next = scan_ignore_whitespace();
        if (next.type == tok::kw_exact) {
          if (!expect({tok::kw_cardinality})) return false;
        } else if (next.type != tok::kw_cardinality) {
          return fail_expected(next, {"EXACT", "CARDINALITY"});
        }
        if (!parse_cardinality_body(false)) return false;
        return unsupported("SHOW MEASUREMENT CARDINALITY", out);
      }
      case tok::kw_measurements:
        return parse_show_measurements(out);
      case tok::kw_queries:
        return unsupported("SHOW QUERIES", out);
      case tok::kw_retention: {
        if (!expect({tok::kw_policies})) return false;
        show_retention_policies_statement stmt;
        if (accept(tok::kw_on)) {
          if (!parse_ident(stmt.database)) return false;
        }
        out = std::move(stmt);
        return true;
      }
      case tok::kw_series:
        return parse_show_series(out);
      case tok::kw_shard:
        if (!expect({tok::kw_groups})) return false;
        return unsupported("SHOW SHARD GROUPS", out);
      case tok::kw_shards:
        return unsupported("SHOW SHARDS", out);
      case tok::kw_stats: {
        if (accept(tok::kw_for)) {
          std::string module;
          if (!parse_string(module)) return false;
        }
        return unsupported("SHOW STATS", out);
      }
      case tok::kw_subscriptions:
        return unsupported("SHOW SUBSCRIPTIONS", out);
      case tok::kw_tag: {
        const token next = scan_ignore_whitespace();
        if (next.type == tok::kw_key) {
          if (!parse_cardinality_tail(false, true)) return false;
          return unsupported("SHOW TAG KEY CARDINALITY", out);
        }
        if (next.type == tok::kw_keys) return parse_show_tag_keys(out);
        if (next.type == tok::kw_values) return parse_show_tag_values(out);
        return fail_expected(next, {"KEY", "KEYS", "VALUES"});
      }
      case tok::kw_users:
        return unsupported("SHOW USERS", out);
      default:
        return fail_expected(t, {"CONTINUOUS", "DATABASES", "DIAGNOSTICS", "FIELD", "GRANTS",
                                 "MEASUREMENT", "MEASUREMENTS", "QUERIES", "RETENTION", "SERIES",
                                 "SHARD", "SHARDS", "STATS", "SUBSCRIPTIONS", "TAG", "USERS"});
    }
  }

  // SHOW TAG KEY / FIELD KEY: [EXACT] CARDINALITY, then the cardinality body.
  bool parse_cardinality_tail(bool with_tag_key, bool is_optional_exact) {
    if (is_optional_exact) {
      const bool is_exact = accept(tok::kw_exact);
      const token t = scan_ignore_whitespace();
      if (t.type != tok::kw_cardinality) {
        if (is_exact) return fail_expected(t, {"CARDINALITY"});
        return fail_expected(t, {"EXACT", "CARDINALITY"});
      }
    }
    return parse_cardinality_body(with_tag_key);
  }

  // [ON db] [FROM ...] [WITH KEY ...] [WHERE ...] [GROUP BY ...] [LIMIT n] [OFFSET n]
  bool parse_cardinality_body(bool with_tag_key) {
    std::string database;
    std::vector<measurement_source> sources;
    if (!parse_on_and_from(database, sources)) return false;
    if (with_tag_key) {
      tag_key_filter filter;
      if (!parse_tag_key_filter(filter)) return false;
    }
    expression_ptr condition;
    if (!parse_condition(condition)) return false;
    std::vector<expression_ptr> dimensions;
    if (!parse_dimensions(dimensions)) return false;
    std::int64_t ignored = 0;
    return parse_optional_int(tok::kw_limit, ignored) &&
           parse_optional_int(tok::kw_offset, ignored);
  }

  bool parse_show_measurements(statement& out) {
    show_measurements_statement stmt;
    if (accept(tok::kw_on)) {
      if (!parse_ident(stmt.database)) return false;
    }
    if (accept(tok::kw_with)) {
      if (!expect({tok::kw_measurement})) return false;
      const token op = scan_ignore_whitespace();
      if (op.type != tok::eq && op.type != tok::eqregex) return fail_expected(op, {"=", "=~"});
      measurement_source source;
      if (!parse_source(false, source)) return false;
      stmt.source = std::move(source);
    }
    bool is_ascending = true;
    if (!parse_condition(stmt.condition) || !parse_order_by(is_ascending) ||
        !parse_optional_int(tok::kw_limit, stmt.limit) ||
        !parse_optional_int(tok::kw_offset, stmt.offset))
      return false;
    out = std::move(stmt);
    return true;
  }

  bool parse_show_tag_keys(statement& out) {
    show_tag_keys_statement stmt;
    if (!parse_on_and_from(stmt.database, stmt.sources)) return false;
    if (scan_ignore_whitespace().type == tok::kw_with) {
      unscan();
      tag_key_filter filter;
      if (!parse_tag_key_filter(filter)) return false;
      stmt.key_filter = std::move(filter);
    } else {
      unscan();
    }
    bool is_ascending = true;
    if (!parse_condition(stmt.condition) || !parse_order_by(is_ascending) ||
        !parse_optional_int(tok::kw_limit, stmt.limit) ||
        !parse_optional_int(tok::kw_offset, stmt.offset) ||
        !parse_optional_int(tok::kw_slimit, stmt.series_limit) ||
        !parse_optional_int(tok::kw_soffset, stmt.series_offset))
      return false;
    out = std::move(stmt);
    return true;
  }

  bool parse_show_tag_values(statement& out) {
    const tok next = scan_ignore_whitespace().type;
    if (next == tok::kw_exact || next == tok::kw_cardinality) {
      if (next == tok::kw_exact && !expect({tok::kw_cardinality})) return false;
      if (!parse_cardinality_body(true)) return false;
      return unsupported("SHOW TAG VALUES CARDINALITY", out);
    }
    unscan();
    show_tag_values_statement stmt;
    if (!parse_on_and_from(stmt.database, stmt.sources)) return false;
    bool is_ascending = true;
    if (!parse_tag_key_filter(stmt.key_filter) || !parse_condition(stmt.condition) ||
        !parse_order_by(is_ascending) || !parse_optional_int(tok::kw_limit, stmt.limit) ||
        !parse_optional_int(tok::kw_offset, stmt.offset))
      return false;
    out = std::move(stmt);
    return true;
  }

  bool parse_show_field_keys(statement& out) {
    show_field_keys_statement stmt;
    if (accept(tok::kw_on)) {
      if (!parse_ident(stmt.database)) return false;
    }
    if (accept(tok::kw_from)) {
      if (!parse_sources(false, stmt.sources)) return false;
    }
    bool is_ascending = true;
    if (!parse_order_by(is_ascending) || !parse_optional_int(tok::kw_limit, stmt.limit) ||
        !parse_optional_int(tok::kw_offset, stmt.offset))
      return false;
    out = std::move(stmt);
    return true;
  }

  bool parse_show_series(statement& out) {
    const bool is_exact = accept(tok::kw_exact);
    if (accept(tok::kw_cardinality)) {
      if (!parse_cardinality_body(false)) return false;
      return unsupported("SHOW SERIES CARDINALITY", out);
    }
    (void)is_exact;
    show_series_statement stmt;
    bool is_ascending = true;
    if (!parse_on_and_from(stmt.database, stmt.sources) || !parse_condition(stmt.condition) ||
        !parse_order_by(is_ascending) || !parse_optional_int(tok::kw_limit, stmt.limit) ||
        !parse_optional_int(tok::kw_offset, stmt.offset))
      return false;
    out = std::move(stmt);
    return true;
  }

  bool parse_create(statement& out) {
    const token t = scan_ignore_whitespace();
    switch (t.type) {
      case tok::kw_continuous: {
        if (!expect({tok::kw_query})) return false;
        return parse_create_continuous_query(out);
      }
      case tok::kw_database:
        return parse_create_database(out);
      case tok::kw_user: {
        std::string name, password;
        if (!parse_ident(name) || !expect({tok::kw_with, tok::kw_password}) ||
            !parse_string(password))
          return false;
        if (accept(tok::kw_with)) {
          if (!expect({tok::kw_all, tok::kw_privileges})) return false;
        }
        return unsupported("CREATE USER", out);
      }
      case tok::kw_retention:
        if (!expect({tok::kw_policy})) return false;
        return parse_create_retention_policy(out);
      case tok::kw_subscription: {
        std::string name, database, policy;
        if (!parse_ident(name) || !expect({tok::kw_on}) || !parse_ident(database)) return false;
        if (const token dot = scan(); dot.type != tok::dot) return fail_expected(dot, {"."});
        if (!parse_ident(policy) || !expect({tok::kw_destinations})) return false;
        if (const token mode = scan_ignore_whitespace();
            mode.type != tok::kw_all && mode.type != tok::kw_any)
          return fail_expected(mode, {"ALL", "ANY"});
        std::vector<std::string> destinations;
        if (!parse_string_list(destinations)) return false;
        return unsupported("CREATE SUBSCRIPTION", out);
      }
      default:
        return fail_expected(t, {"CONTINUOUS", "DATABASE", "USER", "RETENTION", "SUBSCRIPTION"});
    }
  }

  bool parse_create_continuous_query(statement& out) {
    std::string name, database;
    if (!parse_ident(name) || !expect({tok::kw_on}) || !parse_ident(database)) return false;
    if (accept(tok::kw_resample)) {
      bool has_any = false;
      for (tok keyword : {tok::kw_every, tok::kw_for}) {
        if (!accept(keyword)) continue;
        const token value = scan_ignore_whitespace();
        if (value.type != tok::durationval) return fail_expected(value, {"duration"});
        std::int64_t ns = 0;
        if (std::string reason = parse_duration_detailed(value.lit, ns); !reason.empty())
          return fail_at(reason, value.pos);
        has_any = has_any || ns != 0;
      }
      if (!has_any) return fail_expected(scan_ignore_whitespace(), {"EVERY", "FOR"});
    }
    if (!expect({tok::kw_begin, tok::kw_select})) return false;
    select_statement source;
    if (!parse_select(source, target_requirement::required)) return false;
    if (const token end = scan_ignore_whitespace(); end.type != tok::kw_end)
      return fail_expected(end, {"END"});
    return unsupported("CREATE CONTINUOUS QUERY", out);
  }

  bool parse_create_database(statement& out) {
    create_database_statement stmt;
    if (!parse_ident(stmt.name)) return false;
    if (accept(tok::kw_with)) {
      const token t = scan_ignore_whitespace();
      if (t.type != tok::kw_duration && t.type != tok::kw_name && t.type != tok::kw_replication &&
          t.type != tok::kw_shard)
        return fail_expected(t, {"DURATION", "NAME", "REPLICATION", "SHARD"});
      unscan();
      stmt.has_policy = true;
      if (accept(tok::kw_duration)) {
        std::int64_t ns = 0;
        if (!parse_duration_token(ns)) return false;
        stmt.duration_ns = ns;
      }
      if (accept(tok::kw_replication)) {
        int n = 0;
        if (!parse_int(1, std::numeric_limits<std::int32_t>::max(), n)) return false;
        stmt.replication = n;
      }
      if (accept(tok::kw_shard)) {
        if (const token d = scan_ignore_whitespace(); d.type != tok::kw_duration)
          return fail_expected(d, {"DURATION"});
        if (!parse_duration_token(stmt.shard_group_duration_ns)) return false;
      }
      if (accept(tok::kw_name)) {
        if (!parse_ident(stmt.policy_name)) return false;
      }
    }
    out = std::move(stmt);
    return true;
  }

  bool parse_create_retention_policy(statement& out) {
    create_retention_policy_statement stmt;
    if (!parse_ident(stmt.name)) return false;
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_on)
      return fail_expected(t, {"ON"});
    if (!parse_ident(stmt.database)) return false;
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_duration)
      return fail_expected(t, {"DURATION"});
    if (!parse_duration_token(stmt.duration_ns)) return false;
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_replication)
      return fail_expected(t, {"REPLICATION"});
    if (!parse_int(1, std::numeric_limits<std::int32_t>::max(), stmt.replication)) return false;
    if (accept(tok::kw_shard)) {
      if (const token t = scan_ignore_whitespace(); t.type != tok::kw_duration)
        return fail_expected(t, {"DURATION"});
      if (!parse_shard_duration(stmt.shard_group_duration_ns)) return false;
    }
    stmt.is_default = accept(tok::kw_default);
    out = std::move(stmt);
    return true;
  }

  bool parse_alter_retention_policy(statement& out) {
    alter_retention_policy_statement stmt;
    const token name = scan_ignore_whitespace();
    if (name.type == tok::kw_default) {
      stmt.name = "default";
    } else if (name.type == tok::ident) {
      stmt.name = name.lit;
    } else {
      return fail_expected(name, {"identifier"});
    }
    if (const token t = scan_ignore_whitespace(); t.type != tok::kw_on)
      return fail_expected(t, {"ON"});
    if (!parse_ident(stmt.database)) return false;
    std::vector<tok> found;
    for (;;) {
      const token t = scan_ignore_whitespace();
      if (std::find(found.begin(), found.end(), t.type) != found.end())
        return fail_at("found duplicate " + std::string(token_name(t.type)) + " option", t.pos);
      switch (t.type) {
        case tok::kw_duration: {
          std::int64_t ns = 0;
          if (!parse_duration_token(ns)) return false;
          stmt.duration_ns = ns;
          break;
        }
        case tok::kw_replication: {
          int n = 0;
          if (!parse_int(1, std::numeric_limits<std::int32_t>::max(), n)) return false;
          stmt.replication = n;
          break;
        }
        case tok::kw_shard: {
          if (const token d = scan_ignore_whitespace(); d.type != tok::kw_duration)
            return fail_expected(d, {"DURATION"});
          std::int64_t ns = 0;
          if (!parse_shard_duration(ns)) return false;
          stmt.shard_group_duration_ns = ns;
          break;
        }
        case tok::kw_default:
          stmt.is_default = true;
          break;
        default:
          if (found.empty())
            return fail_expected(t, {"DURATION", "REPLICATION", "SHARD", "DEFAULT"});
          unscan();
          out = std::move(stmt);
          return true;
      }
      found.push_back(t.type);
    }
  }

  bool parse_drop(statement& out) {
    const token t = scan_ignore_whitespace();
    switch (t.type) {
      case tok::kw_continuous: {
        std::string name, database;
        if (!expect({tok::kw_query}) || !parse_ident(name) || !expect({tok::kw_on}) ||
            !parse_ident(database))
          return false;
        return unsupported("DROP CONTINUOUS QUERY", out);
      }
      case tok::kw_database: {
        drop_database_statement stmt;
        if (!parse_ident(stmt.name)) return false;
        out = std::move(stmt);
        return true;
      }
      case tok::kw_measurement: {
        std::string name;
        if (!parse_ident(name)) return false;
        return unsupported("DROP MEASUREMENT", out);
      }
      case tok::kw_retention: {
        drop_retention_policy_statement stmt;
        if (!expect({tok::kw_policy}) || !parse_ident(stmt.name) || !expect({tok::kw_on}) ||
            !parse_ident(stmt.database))
          return false;
        out = std::move(stmt);
        return true;
      }
      case tok::kw_series: {
        if (!parse_delete_body()) return false;
        return unsupported("DROP SERIES", out);
      }
      case tok::kw_shard: {
        std::uint64_t id = 0;
        if (!parse_uint64_token(id)) return false;
        return unsupported("DROP SHARD", out);
      }
      case tok::kw_subscription: {
        std::string name, database, policy;
        if (!parse_ident(name) || !expect({tok::kw_on}) || !parse_ident(database)) return false;
        if (const token dot = scan(); dot.type != tok::dot) return fail_expected(dot, {"."});
        if (!parse_ident(policy)) return false;
        return unsupported("DROP SUBSCRIPTION", out);
      }
      case tok::kw_user: {
        std::string name;
        if (!parse_ident(name)) return false;
        return unsupported("DROP USER", out);
      }
      default:
        return fail_expected(t, {"CONTINUOUS", "DATABASE", "MEASUREMENT", "RETENTION", "SERIES",
                                 "SHARD", "SUBSCRIPTION", "USER"});
    }
  }

  bool parse_delete(statement& out) {
    if (!parse_delete_body()) return false;
    return unsupported("DELETE", out);
  }

  // DELETE / DROP SERIES: [FROM sources] [WHERE condition], at least one of them.
  bool parse_delete_body() {
    const token t = scan_ignore_whitespace();
    std::vector<measurement_source> sources;
    if (t.type == tok::kw_from) {
      if (!parse_sources(false, sources)) return false;
      // parser.go walks every source and keeps the last complaint.
      std::string complaint;
      for (const auto& source : sources) {
        if (!source.database.empty()) complaint = "database not supported";
        if (!source.retention_policy.empty()) complaint = "retention policy not supported";
      }
      if (!complaint.empty()) return fail_at(complaint, {});
    } else {
      unscan();
    }
    expression_ptr condition;
    if (!parse_condition(condition)) return false;
    if (!condition && sources.empty()) return fail_expected(t, {"FROM", "WHERE"});
    return true;
  }

  bool parse_grant_or_revoke(bool is_grant, statement& out) {
    // The privilege: READ, WRITE or ALL [PRIVILEGES].
    const token privilege = scan_ignore_whitespace();
    bool is_all = false;
    switch (privilege.type) {
      case tok::kw_read:
      case tok::kw_write:
        break;
      case tok::kw_all:
        is_all = true;
        accept(tok::kw_privileges);
        break;
      default:
        return fail_expected(privilege, {"READ", "WRITE", "ALL [PRIVILEGES]"});
    }
    const tok direction = is_grant ? tok::kw_to : tok::kw_from;
    const std::string_view direction_name = is_grant ? "TO" : "FROM";
    const token t = scan_ignore_whitespace();
    std::string database, user;
    if (t.type == tok::kw_on) {
      if (!parse_ident(database)) return false;
      if (const token d = scan_ignore_whitespace(); d.type != direction)
        return fail_expected(d, {direction_name});
      if (!parse_ident(user)) return false;
    } else if (t.type == direction) {
      if (!is_all) return fail_expected(t, {"ON"});
      if (!parse_ident(user)) return false;
    } else if (is_all) {
      return fail_expected(t, {"ON", direction_name});
    } else {
      return fail_expected(t, {"ON"});
    }
    return unsupported(is_grant ? "GRANT" : "REVOKE", out);
  }

  buffered_scanner s_;
  std::optional<std::string> error_;
  int nesting_ = 0;
};

}  // namespace

std::variant<query, parse_error> parse_query(std::string_view text) {
  return parser(text).parse_all();
}

}  // namespace nimbus::tsdb::influxql
