#include "tsdb/line_protocol.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <numeric>
#include <system_error>

namespace nimbus::tsdb {
namespace {

constexpr std::string_view time_key = "time";

// InfluxDB's skipWhitespace: what is skipped before a line, its fields and its timestamp.
bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\0';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The three kinds of names, each with the bytes a backslash escapes in it (InfluxDB's
// measurementEscapeCodes, tagEscapeCodes, and pkg/escape's Codes for field keys).
enum class name_kind : std::uint8_t { measurement, tag, field_key };

bool is_special(char c, name_kind kind) {
  switch (kind) {
    case name_kind::measurement:
      return c == ',' || c == ' ';
    case name_kind::tag:
      return c == ',' || c == ' ' || c == '=';
    case name_kind::field_key:
      return c == ',' || c == ' ' || c == '=' || c == '"';
  }
  return false;
}

// The name a raw measurement, tag key, tag value or field key stands for: `\` before a special
// byte stands for that byte; any other backslash is kept, a backslash before a backslash
// included (InfluxDB's unescapeMeasurement, unescapeTag, escape.Unescape).
std::string unescape_name(std::string_view raw, name_kind kind) {
  if (raw.find('\\') == std::string_view::npos) return std::string(raw);  // the common case
  std::string name;
  name.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size() && is_special(raw[i + 1], kind)) ++i;
    name += raw[i];
  }
  return name;
}

// InfluxDB's escapes (EscapeMeasurement, escapeTag, escape.String): a backslash before each
// special byte, nothing else. Backslashes are written as they are, as InfluxDB and its clients
// write them.
std::size_t escaped_size(std::string_view name, name_kind kind) {
  std::size_t size = name.size();
  for (const char c : name)
    if (is_special(c, kind)) ++size;
  return size;
}

void append_escaped(std::string& out, std::string_view name, name_kind kind) {
  for (const char c : name) {
    if (is_special(c, kind)) out += '\\';
    out += c;
  }
}

// InfluxDB's strconv.EscapeStringField: every `"` and `\` escaped, everything else as is
// (newlines included: a line ends only outside quotes).
void append_string_value(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

// The shortest digits that read back exactly (to_chars), fixed for 1e-4 <= |value| < 1e21 and
// with a signed exponent of at least two digits otherwise, as Go's %v prints a float64.
void append_float(std::string& out, double value) {
  std::array<char, 64> buffer{};
  if (!std::isfinite(value)) {  // not line protocol: format_line's caller broke its promise
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    out.append(buffer.data(), result.ptr);
    return;
  }
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value,
                                    std::chars_format::scientific);
  std::string_view text(buffer.data(), static_cast<std::size_t>(result.ptr - buffer.data()));
  if (!text.empty() && text.front() == '-') {
    out += '-';
    text.remove_prefix(1);
  }
  // text is d[.ddd]e(+|-)xx
  const std::size_t e = text.find('e');
  if (e == std::string_view::npos || e == 0 || e + 1 >= text.size()) {
    out += text;
    return;
  }
  std::string digits(1, text[0]);
  if (e > 2) digits.append(text.substr(2, e - 2));
  std::string_view exponent_text = text.substr(e + 1);
  const bool is_negative_exponent = exponent_text.front() == '-';
  if (exponent_text.front() == '-' || exponent_text.front() == '+') exponent_text.remove_prefix(1);
  int exponent = 0;
  static_cast<void>(
      std::from_chars(exponent_text.data(), exponent_text.data() + exponent_text.size(), exponent));
  if (is_negative_exponent) exponent = -exponent;

  if (exponent < -4 || exponent >= 21) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    out += exponent < 0 ? "e-" : "e+";
    const int magnitude = exponent < 0 ? -exponent : exponent;
    if (magnitude < 10) out += '0';
    out += std::to_string(magnitude);
  } else if (exponent < 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-exponent - 1), '0');
    out += digits;
  } else {
    const std::size_t integer_digits = static_cast<std::size_t>(exponent) + 1;
    if (digits.size() <= integer_digits) {
      out += digits;
      out.append(integer_digits - digits.size(), '0');
    } else {
      out.append(digits, 0, integer_digits);
      out += '.';
      out.append(digits, integer_digits, std::string::npos);
    }
  }
}

template <typename Integer>
void append_decimal(std::string& out, Integer value) {
  std::array<char, 24> buffer{};
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  out.append(buffer.data(), result.ptr);
}

void append_field_value(std::string& out, const field_value& value) {
  if (const auto* number = std::get_if<double>(&value)) {
    append_float(out, *number);
  } else if (const auto* integer = std::get_if<std::int64_t>(&value)) {
    append_decimal(out, *integer);
    out += 'i';
  } else if (const auto* unsigned_integer = std::get_if<std::uint64_t>(&value)) {
    append_decimal(out, *unsigned_integer);
    out += 'u';
  } else if (const auto* boolean = std::get_if<bool>(&value)) {
    out += *boolean ? "true" : "false";
  } else if (const auto* text = std::get_if<std::string>(&value)) {
    append_string_value(out, *text);
  }
}

void append_tag(std::string& out, const std::pair<std::string, std::string>& tag) {
  out += ',';
  append_escaped(out, tag.first, name_kind::tag);
  out += '=';
  append_escaped(out, tag.second, name_kind::tag);
}

void append_series_key(std::string& out, const point& p) {
  append_escaped(out, p.measurement, name_kind::measurement);
  const auto by_key = [](const auto& a, const auto& b) { return a.first < b.first; };
  if (std::is_sorted(p.tags.begin(), p.tags.end(), by_key)) {
    for (const auto& tag : p.tags) append_tag(out, tag);
    return;
  }
  std::vector<const std::pair<std::string, std::string>*> sorted;
  sorted.reserve(p.tags.size());
  for (const auto& tag : p.tags) sorted.push_back(&tag);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto* a, const auto* b) { return a->first < b->first; });
  for (const auto* tag : sorted) append_tag(out, *tag);
}

// A line without a timestamp gets the server's time truncated to the request's precision
// (InfluxDB's point.SetPrecision): rounded down, as Go's Time.Truncate.
std::int64_t truncate_to(std::int64_t ns, precision unit) {
  const std::int64_t factor = nanoseconds_per(unit);
  std::int64_t remainder = ns % factor;
  if (remainder < 0) remainder += factor;
  std::int64_t truncated = 0;
  if (__builtin_sub_overflow(ns, remainder, &truncated)) return ns;
  return truncated;
}

// Go's *strconv.NumError text, which InfluxDB passes through for integers and timestamps.
std::string go_number_error(std::string_view function, std::string_view text,
                            std::string_view what) {
  std::string message = "strconv.";
  message += function;
  message += ": parsing \"";
  message += text;  // digits and '-' only: Go's strconv.Quote leaves them as they are
  message += "\": ";
  message += what;
  return message;
}

// Our limits, worded as InfluxDB's "max key length exceeded: 70000 > 65535".
std::string exceeded(std::string_view what, std::size_t size, std::size_t limit) {
  return std::string(what) + " exceeded: " + std::to_string(size) + " > " + std::to_string(limit);
}

// Whether a decimal number that from_chars found out of range is at least 1 in magnitude, an
// overflow (InfluxDB: "invalid float"), rather than an underflow, which Go's ParseFloat reads as
// zero without an error.
bool is_at_least_one(std::string_view text) {
  std::size_t i = 0;
  if (i < text.size() && text[i] == '-') ++i;
  long long magnitude = 0;  // the value is 0.d... times ten to this, d the first nonzero digit
  bool has_nonzero = false;
  bool is_fraction = false;
  for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
    const char c = text[i];
    if (c == '.') {
      is_fraction = true;
      continue;
    }
    if (!has_nonzero && c == '0') {
      if (is_fraction) --magnitude;
      continue;
    }
    has_nonzero = true;
    if (!is_fraction) ++magnitude;
  }
  if (!has_nonzero) return false;
  long long exponent = 0;
  bool is_negative = false;
  if (i < text.size()) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
      is_negative = text[i] == '-';
      ++i;
    }
    for (; i < text.size() && is_digit(text[i]); ++i)
      exponent = std::min(exponent * 10 + (text[i] - '0'), 1'000'000'000LL);
  }
  return magnitude + (is_negative ? -exponent : exponent) >= 1;
}

// A key written twice in one line: the last value wins, where the key first appeared. InfluxDB
// keeps both in the point; the later one overwrites the earlier when stored.
void collapse_repeated_fields(std::vector<std::pair<std::string, field_value>>& fields) {
  const std::size_t count = fields.size();
  if (count < 2) return;
  if (count <= 16) {  // the usual case: a few fields, no repeat, no allocation
    bool has_repeat = false;
    for (std::size_t i = 0; i < count && !has_repeat; ++i)
      for (std::size_t j = i + 1; j < count && !has_repeat; ++j)
        has_repeat = fields[i].first == fields[j].first;
    if (!has_repeat) return;
  }
  std::vector<std::size_t> order(count);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&fields](std::size_t a, std::size_t b) {
    return fields[a].first < fields[b].first;
  });
  std::vector<bool> is_removed(count, false);
  for (std::size_t run = 0; run < count;) {
    std::size_t next = run + 1;
    while (next < count && fields[order[next]].first == fields[order[run]].first) ++next;
    if (next - run > 1) {
      fields[order[run]].second = std::move(fields[order[next - 1]].second);
      for (std::size_t k = run + 1; k < next; ++k) is_removed[order[k]] = true;
    }
    run = next;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (is_removed[i]) continue;
    if (kept != i) fields[kept] = std::move(fields[i]);
    ++kept;
  }
  fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(kept), fields.end());
}

// Where the line starting at `start` ends: at the next newline outside a quoted field value.
// Up to the fields, that is the first space no backslash escapes, a newline after a backslash
// is escaped too, as parse_measurement and parse_tags read bytes. From there on it is InfluxDB's
// scanLine: `\` and the byte after it are one unit (unless they are the body's last two bytes),
// and a quote opens or closes a value where more `=` than commas have been seen outside quotes.
// (InfluxDB's scanLine also starts its count at the first space after a `\\` pair, which its own
// tag scan reads as escaped: a line where that matters is one we split as the parser reads it.)
// Says whether a quote was still open at the end of the body.
std::size_t scan_line(std::string_view body, std::size_t start, bool& is_quote_open) {
  const std::size_t size = body.size();
  is_quote_open = false;
  std::size_t i = start;
  for (; i < size; ++i) {
    if (i > start && body[i - 1] == '\\') continue;
    if (body[i] == '\n') return i;
    if (body[i] == ' ') break;
  }
  // Most lines have neither a quote nor a backslash past the key: they end at the next newline,
  // found without looking at each byte.
  const std::size_t newline = std::min(body.find('\n', i), size);
  const char* rest = body.data() + i;
  const std::size_t rest_size = newline - std::min(i, newline);
  if (std::memchr(rest, '"', rest_size) == nullptr && std::memchr(rest, '\\', rest_size) == nullptr)
    return newline;
  bool is_quoted = false;
  std::size_t equals = 0;
  std::size_t commas = 0;
  while (i < size) {
    const char c = body[i];
    if (c == '\\' && i + 2 < size) {
      i += 2;
      continue;
    }
    if (!is_quoted && c == '=') {
      ++equals;
    } else if (!is_quoted && c == ',') {
      ++commas;
    } else if (c == '"' && equals > commas) {
      is_quoted = !is_quoted;
    } else if (c == '\n' && !is_quoted) {
      break;
    }
    ++i;
  }
  is_quote_open = is_quoted;
  return i;
}

// One line (no leading blanks, no newline or \r at its end, not a comment) into a point, in
// InfluxDB's order: measurement, tags, the series key's checks, fields, timestamp, then what the
// shard refuses. The first error ends the line; its reason is InfluxDB's wording.
class line_parser {
 public:
  line_parser(std::string_view line, precision unit, std::int64_t default_time_ns,
              const parse_limits& limits)
      : line_(line), unit_(unit), default_time_ns_(default_time_ns), limits_(limits) {}

  // False when the line is refused; failure_reason() and failure_kind() say why.
  bool parse(point& out) {
    bool has_tags = false;
    if (!parse_measurement(out, has_tags)) return false;
    if (has_tags && !parse_tags(out)) return false;
    // The line's own bytes up to the space are the series key when the tags came sorted and no
    // byte there is escaped (nor needs to be: a tag value may start with `=`).
    const std::string_view raw_key = line_.substr(0, pos_ - 1);
    is_raw_key_canonical_ =
        raw_key.find('\\') == std::string_view::npos &&
        std::is_sorted(out.tags.begin(), out.tags.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; }) &&
        std::none_of(out.tags.begin(), out.tags.end(),
                     [](const auto& tag) { return tag.second.starts_with('='); });
    if (is_raw_key_canonical_) raw_key_ = raw_key;
    if (!check_tags(out)) return false;
    if (!parse_fields(out)) return false;
    if (!check_fields(out)) return false;
    if (!parse_timestamp(out)) return false;
    return check_time_keys(out);
  }

  std::string& failure_reason() { return reason_; }
  error_kind failure_kind() const { return kind_; }

  // The point's series key, once parse() took it.
  void series_key_into(const point& p, std::string& key) const {
    if (is_raw_key_canonical_)
      key.assign(raw_key_);
    else
      key = series_key(p);
  }

 private:
  bool fail(std::string why, error_kind what = error_kind::unable_to_parse) {
    reason_ = std::move(why);
    kind_ = what;
    return false;
  }

  void skip_blanks() {
    while (pos_ < line_.size() && is_blank(line_[pos_])) ++pos_;
  }

  // InfluxDB's scanMeasurement: up to the first comma (tags follow) or space (fields) that does
  // not follow a backslash. Anything but a comma may come first.
  bool parse_measurement(point& out, bool& has_tags) {
    const std::size_t size = line_.size();
    if (size == 0 || line_[0] == ',') return fail("missing measurement");
    std::size_t i = 0;
    while (true) {
      ++i;
      if (i >= size) return fail("missing fields");
      if (line_[i - 1] == '\\') continue;
      if (line_[i] == ',' || line_[i] == ' ') break;
    }
    out.measurement = unescape_name(line_.substr(0, i), name_kind::measurement);
    has_tags = line_[i] == ',';
    pos_ = i + 1;
    return true;
  }

  // InfluxDB's scanTagsKey and scanTagsValue, pair after pair up to the space: a byte after a
  // backslash is escaped, whatever that backslash is. A value may start with `=`, as in 1.6.7.
  bool parse_tags(point& out) {
    const std::size_t size = line_.size();
    while (true) {
      std::size_t start = pos_;
      if (start >= size || line_[start] == ' ' || line_[start] == ',' || line_[start] == '=')
        return fail("missing tag key");
      std::size_t i = start;
      while (true) {
        ++i;
        if (i >= size) return fail("missing tag value");
        const bool is_escaped = line_[i - 1] == '\\';
        if ((line_[i] == ' ' || line_[i] == ',') && !is_escaped) return fail("missing tag value");
        if (line_[i] == '=' && !is_escaped) break;
      }
      std::string key = unescape_name(line_.substr(start, i - start), name_kind::tag);

      start = i + 1;
      if (start >= size || line_[start] == ',' || line_[start] == ' ')
        return fail("missing tag value");
      i = start;
      while (true) {
        ++i;
        if (i >= size) return fail("missing fields");
        if (line_[i - 1] == '\\') continue;
        if (line_[i] == '=') return fail("invalid tag format");
        if (line_[i] == ',' || line_[i] == ' ') break;
      }
      out.tags.emplace_back(std::move(key),
                            unescape_name(line_.substr(start, i - start), name_kind::tag));
      pos_ = i + 1;
      if (line_[i] == ' ') return true;
    }
  }

  // InfluxDB's scanKey: tags sorted, a repeated key refused, then models.MaxKeyLength.
  bool check_tags(point& out) {
    if (out.tags.size() > limits_.max_tags)
      return fail(exceeded("max tags per point", out.tags.size(), limits_.max_tags));
    std::sort(out.tags.begin(), out.tags.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    const auto repeat =
        std::adjacent_find(out.tags.begin(), out.tags.end(),
                           [](const auto& a, const auto& b) { return a.first == b.first; });
    if (repeat != out.tags.end()) return fail("duplicate tags");
    series_size_ = escaped_size(out.measurement, name_kind::measurement);
    for (const auto& tag : out.tags)
      series_size_ +=
          2 + escaped_size(tag.first, name_kind::tag) + escaped_size(tag.second, name_kind::tag);
    if (series_size_ > limits_.max_key_bytes)
      return fail(exceeded("max key length", series_size_, limits_.max_key_bytes));
    return true;
  }

  // InfluxDB's scanFields: key=value pairs separated by commas, up to an unescaped space outside
  // quotes. A key without `=` (a=1,b) or an empty one before a comma (a=1,,b=2) is reported
  // only once the section is read, after any error in a value, as InfluxDB counts `=` and commas
  // at the end.
  bool parse_fields(point& out) {
    const std::size_t size = line_.size();
    skip_blanks();
    bool is_malformed = false;
    while (true) {
      const std::size_t start = pos_;
      std::size_t i = start;
      char stop = '\0';
      while (i < size) {
        const char c = line_[i];
        if (c == '\\') {
          i += 2;
          continue;
        }
        if (c == '=' || c == ',' || c == ' ') {
          stop = c;
          break;
        }
        ++i;
      }
      i = std::min(i, size);
      if (stop != '=') {
        is_malformed = true;
        if (stop != ',') {
          pos_ = i;
          break;
        }
        pos_ = i + 1;
        continue;
      }
      if (i == start) return fail("missing field key");
      std::string key = unescape_name(line_.substr(start, i - start), name_kind::field_key);
      pos_ = i + 1;
      if (pos_ >= size || line_[pos_] == ',' || line_[pos_] == ' ')
        return fail("missing field value");
      field_value value;
      if (!parse_value(value)) return false;
      out.fields.emplace_back(std::move(key), std::move(value));
      if (pos_ < size && line_[pos_] == ',') {
        ++pos_;
        continue;
      }
      break;  // at the space before the timestamp, or at the end of the line
    }
    if (is_malformed) return fail("invalid field format");
    return true;
  }

  bool parse_value(field_value& value) {
    const char first = line_[pos_];
    if (first == '"') return parse_string(value);
    // InfluxDB's scanFields hands these to scanNumber (where NaN and nan fail), the rest to
    // scanBoolean (where +1 fails: a leading + is not a number).
    if (is_digit(first) || first == '.' || first == '-' || first == 'N' || first == 'n')
      return parse_number(value);
    return parse_boolean(value);
  }

  // A quoted string: \" and \\ stand for the byte, any other backslash is kept. The closing
  // quote must end the value (1.6.7 took bytes after it into the value).
  bool parse_string(field_value& value) {
    const std::size_t size = line_.size();
    std::string text;
    std::size_t i = pos_ + 1;
    while (true) {
      const std::size_t next = line_.find_first_of("\"\\", i);
      if (next == std::string_view::npos) return fail("unbalanced quotes");
      text.append(line_.substr(i, next - i));
      i = next;
      if (line_[i] == '"') break;
      if (i + 1 < size && (line_[i + 1] == '"' || line_[i + 1] == '\\')) {
        text += line_[i + 1];
        i += 2;
      } else {
        text += '\\';
        ++i;
      }
    }
    pos_ = i + 1;
    if (pos_ < size && line_[pos_] != ',' && line_[pos_] != ' ')
      return fail("invalid field format");
    if (text.size() > limits_.max_string_bytes)
      return fail(exceeded("max string field length", text.size(), limits_.max_string_bytes));
    value.emplace<std::string>(std::move(text));
    return true;
  }

  // InfluxDB's scanNumber, check for check: an optional '-', digits with at most one '.', an
  // exponent (e or E, then an optional sign) anywhere after the first byte, and one `i` or `u`
  // suffix, which must end the number and excludes '.' and exponents.
  bool parse_number(field_value& value) {
    const std::size_t size = line_.size();
    const std::size_t start = pos_;
    std::size_t i = start;
    bool is_integer = false;
    bool is_unsigned = false;
    bool has_point = false;
    bool is_scientific = false;
    if (line_[i] == '-') {
      ++i;
      if (i == size) return fail("invalid number");
    }
    for (; i < size; ++i) {
      const char c = line_[i];
      if (c == ',' || c == ' ') break;
      if ((c == 'i' || c == 'u') && i > start && !is_integer && !is_unsigned) {
        (c == 'i' ? is_integer : is_unsigned) = true;
        continue;
      }
      if (c == '.') {
        if (has_point) return fail("invalid number");
        has_point = true;
        continue;
      }
      if ((c == 'e' || c == 'E') && i > start) {
        is_scientific = true;
        continue;
      }
      if ((c == '+' || c == '-') && (line_[i - 1] == 'e' || line_[i - 1] == 'E')) continue;
      if (!is_digit(c)) return fail("invalid number");
    }
    const bool has_suffix = is_integer || is_unsigned;
    if (has_suffix && (has_point || is_scientific)) return fail("invalid number");
    const auto digits = static_cast<std::ptrdiff_t>(i - start) - (has_suffix ? 1 : 0) -
                        (has_point ? 1 : 0) - (line_[start] == '-' ? 1 : 0);
    if (digits <= 0) return fail("invalid number");

    const std::string_view text = line_.substr(start, i - start);
    pos_ = i;
    if (!has_suffix) return parse_float(text, value);
    if (text.back() != (is_integer ? 'i' : 'u')) return fail("invalid number");  // 9i10
    const std::string_view number = text.substr(0, text.size() - 1);
    if (is_integer) return parse_integer(number, value);
    if (number.front() == '-') return fail("invalid number");
    return parse_unsigned(number, value);
  }

  bool parse_integer(std::string_view number, field_value& value) {
    std::int64_t parsed = 0;
    const char* last = number.data() + number.size();
    const auto result = std::from_chars(number.data(), last, parsed);
    if (result.ec == std::errc::result_out_of_range)
      return fail("unable to parse integer " + std::string(number) + ": " +
                  go_number_error("ParseInt", number, "value out of range"));
    if (result.ec != std::errc() || result.ptr != last) return fail("invalid number");
    value.emplace<std::int64_t>(parsed);
    return true;
  }

  bool parse_unsigned(std::string_view number, field_value& value) {
    std::uint64_t parsed = 0;
    const char* last = number.data() + number.size();
    const auto result = std::from_chars(number.data(), last, parsed);
    if (result.ec == std::errc::result_out_of_range)
      return fail("unable to parse unsigned " + std::string(number) + ": " +
                  go_number_error("ParseUint", number, "value out of range"));
    if (result.ec != std::errc() || result.ptr != last) return fail("invalid number");
    value.emplace<std::uint64_t>(parsed);
    return true;
  }

  // What Go's ParseFloat refuses (1e, 1e5.3, 1e400) InfluxDB calls "invalid float"; an underflow
  // (1e-400) is zero.
  bool parse_float(std::string_view text, field_value& value) {
    double parsed = 0;
    const char* last = text.data() + text.size();
    const auto result = std::from_chars(text.data(), last, parsed);
    if (result.ptr != last) return fail("invalid float");
    if (result.ec == std::errc::result_out_of_range) {
      if (is_at_least_one(text)) return fail("invalid float");
      parsed = text.front() == '-' ? -0.0 : 0.0;
    } else if (result.ec != std::errc() || !std::isfinite(parsed)) {
      return fail("invalid float");
    }
    value.emplace<double>(parsed);
    return true;
  }

  // InfluxDB's scanBoolean: t, T, true, True, TRUE, f, F, false, False, FALSE.
  bool parse_boolean(field_value& value) {
    const std::size_t size = line_.size();
    const std::size_t start = pos_;
    const char first = line_[start];
    if (first != 't' && first != 'T' && first != 'f' && first != 'F')
      return fail("invalid boolean");
    std::size_t i = start + 1;
    while (i < size && line_[i] != ',' && line_[i] != ' ') ++i;
    const std::string_view text = line_.substr(start, i - start);
    pos_ = i;
    if (text == "t" || text == "T" || text == "true" || text == "True" || text == "TRUE") {
      value.emplace<bool>(true);
      return true;
    }
    if (text == "f" || text == "F" || text == "false" || text == "False" || text == "FALSE") {
      value.emplace<bool>(false);
      return true;
    }
    return fail("invalid boolean");
  }

  // The field count, repeated keys, then models.MaxKeyLength for each "<series key>#!~#<field>".
  bool check_fields(point& out) {
    if (out.fields.size() > limits_.max_fields)
      return fail(exceeded("max fields per point", out.fields.size(), limits_.max_fields));
    collapse_repeated_fields(out.fields);
    for (const auto& field : out.fields) {
      const std::size_t key_size =
          series_size_ + 4 + escaped_size(field.first, name_kind::field_key);
      if (key_size > limits_.max_key_bytes)
        return fail(exceeded("max key length", key_size, limits_.max_key_bytes));
    }
    return true;
  }

  // InfluxDB's scanTime, parseIntBytes and SafeCalcTime: an optional '-' and digits in the
  // request's precision, then nothing but spaces.
  bool parse_timestamp(point& out) {
    const std::size_t size = line_.size();
    skip_blanks();
    if (pos_ >= size) {
      out.timestamp_ns = default_time_ns_;
      return true;
    }
    const std::size_t start = pos_;
    std::size_t i = start;
    for (; i < size; ++i) {
      const char c = line_[i];
      if (c == ' ' || c == '\n') break;
      if (i == start && c == '-') continue;
      if (!is_digit(c)) return fail("bad timestamp");
    }
    const std::string_view text = line_.substr(start, i - start);
    if (text.empty()) return fail("bad timestamp");  // a quoted newline right after the fields
    std::int64_t timestamp = 0;
    const char* last = text.data() + text.size();
    const auto result = std::from_chars(text.data(), last, timestamp);
    if (result.ec == std::errc::result_out_of_range)
      return fail(go_number_error("ParseInt", text, "value out of range"));
    if (result.ec != std::errc() || result.ptr != last)  // "-"
      return fail(go_number_error("ParseInt", text, "invalid syntax"));
    const auto ns = to_nanoseconds(timestamp, unit_);
    if (!ns)
      return fail("time outside range " + std::to_string(min_time_ns) + " - " +
                  std::to_string(max_time_ns));
    for (; i < size; ++i)
      if (line_[i] != ' ') return fail("point is invalid");
    out.timestamp_ns = *ns;
    return true;
  }

  // What InfluxDB's shard (validateSeriesAndFields) refuses in a point that parses: a field or a
  // tag named time. (Its shard skips a time field where other fields remain; we drop the point,
  // as the digest saw: a field silently lost is worse than a refusal.)
  bool check_time_keys(const point& out) {
    for (const auto& field : out.fields)
      if (field.first == time_key)
        return fail("invalid field name: input field \"time\" on measurement \"" + out.measurement +
                        "\" is invalid",
                    error_kind::dropped);
    for (const auto& tag : out.tags)
      if (tag.first == time_key)
        return fail("invalid tag key: input tag \"time\" on measurement \"" + out.measurement +
                        "\" is invalid",
                    error_kind::dropped);
    return true;
  }

  std::string_view line_;
  precision unit_;
  std::int64_t default_time_ns_;
  const parse_limits& limits_;
  std::size_t pos_ = 0;
  std::size_t series_size_ = 0;  // bytes of the escaped series key
  std::string_view raw_key_;
  bool is_raw_key_canonical_ = false;
  std::string reason_;
  error_kind kind_ = error_kind::unable_to_parse;
};

}  // namespace

field_type type_of(const field_value& value) {
  return static_cast<field_type>(value.index());
}

std::string_view name_of(field_type type) {
  switch (type) {
    case field_type::floating:
      return "float";
    case field_type::integer:
      return "integer";
    case field_type::unsigned_integer:
      return "unsigned";
    case field_type::boolean:
      return "boolean";
    case field_type::string:
      return "string";
  }
  return "unknown";
}

std::optional<precision> parse_precision(std::string_view text) {
  if (text.empty() || text == "n" || text == "ns") return precision::ns;
  if (text == "u" || text == "us") return precision::us;
  if (text == "ms") return precision::ms;
  if (text == "s") return precision::s;
  if (text == "m") return precision::m;
  if (text == "h") return precision::h;
  return std::nullopt;
}

std::int64_t nanoseconds_per(precision unit) {
  switch (unit) {
    case precision::ns:
      return 1;
    case precision::us:
      return 1'000;
    case precision::ms:
      return 1'000'000;
    case precision::s:
      return 1'000'000'000;
    case precision::m:
      return 60'000'000'000;
    case precision::h:
      return 3'600'000'000'000;
  }
  return 1;
}

std::optional<std::int64_t> to_nanoseconds(std::int64_t timestamp, precision unit) {
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(timestamp, nanoseconds_per(unit), &ns)) return std::nullopt;
  if (ns < min_time_ns || ns > max_time_ns) return std::nullopt;
  return ns;
}

std::string error_message(const parse_error& error) {
  if (error.kind == error_kind::dropped) return error.reason;
  std::string message = "unable to parse '";
  message += error.line;
  message += "': ";
  message += error.reason;
  return message;
}

parse_result parse_lines(std::string_view body, precision unit, std::int64_t now_ns,
                         const parse_limits& limits) {
  parse_result result;
  parse_lines(body, unit, now_ns, result, limits);
  return result;
}

void parse_lines(std::string_view body, precision unit, std::int64_t now_ns, parse_result& result,
                 const parse_limits& limits) {
  result.errors.clear();
  result.rejected_lines = 0;
  std::size_t taken = 0;  // points (and keys) parsed; the slots past it are spent ones
  const std::int64_t default_time_ns = truncate_to(now_ns, unit);
  const std::size_t size = body.size();
  std::size_t position = 0;
  std::size_t line_number = 1;  // of body[position]
  // Once a quote stays open to the end of the body, the rest is split at every newline: the
  // line with the stray quote fails alone, where InfluxDB fails everything after it, and the
  // body is scanned at most twice.
  bool is_quote_aware = true;
  while (position < size) {
    std::size_t start = position;
    while (start < size && is_blank(body[start])) ++start;
    std::size_t end = std::string_view::npos;
    if (start < size && body[start] != '#' && is_quote_aware) {
      bool is_quote_open = false;
      end = scan_line(body, start, is_quote_open);
      if (is_quote_open) {
        is_quote_aware = false;
        end = std::string_view::npos;
      }
    }
    if (end == std::string_view::npos) end = std::min(body.find('\n', start), size);

    std::string_view line = body.substr(start, end - start);
    const std::size_t number = line_number;
    line_number += static_cast<std::size_t>(std::count(line.begin(), line.end(), '\n')) + 1;
    position = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;

    std::string reason;
    error_kind kind = error_kind::unable_to_parse;
    if (line.size() > limits.max_line_bytes) {
      reason = exceeded("max line length", line.size(), limits.max_line_bytes);
    } else {
      line_parser parser(line, unit, default_time_ns, limits);
      if (taken == result.points.size()) result.points.emplace_back();
      if (taken == result.series_keys.size()) result.series_keys.emplace_back();
      point& parsed = result.points[taken];
      parsed.measurement.clear();
      parsed.tags.clear();
      parsed.fields.clear();
      parsed.timestamp_ns.reset();
      // Lines of a body tend to look alike: room for as many tags and fields as the last had.
      if (taken > 0) {
        parsed.tags.reserve(result.points[taken - 1].tags.size());
        parsed.fields.reserve(result.points[taken - 1].fields.size());
      }
      if (parser.parse(parsed)) {
        parser.series_key_into(parsed, result.series_keys[taken]);
        ++taken;
        continue;
      }
      reason = std::move(parser.failure_reason());
      kind = parser.failure_kind();
    }
    ++result.rejected_lines;
    if (result.errors.size() < limits.max_errors)
      result.errors.push_back(parse_error{number, std::string(line), std::move(reason), kind});
  }
  result.points.resize(taken);
  result.series_keys.resize(taken);
}

std::string series_key(const point& p) {
  std::string key;
  append_series_key(key, p);
  return key;
}

std::uint64_t series_id(std::string_view key) {
  // FNV-1a, 64 bits.
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : key) {
    hash ^= static_cast<std::uint64_t>(static_cast<unsigned char>(c));
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::string format_line(const point& p) {
  std::string line;
  append_series_key(line, p);
  char separator = ' ';
  for (const auto& field : p.fields) {
    line += separator;
    separator = ',';
    append_escaped(line, field.first, name_kind::field_key);
    line += '=';
    append_field_value(line, field.second);
  }
  if (p.timestamp_ns) {
    line += ' ';
    append_decimal(line, *p.timestamp_ns);
  }
  return line;
}

}  // namespace nimbus::tsdb
