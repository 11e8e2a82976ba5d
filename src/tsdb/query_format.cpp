// Query results as InfluxDB 1.6.7 prints them (query.hpp). 1.6.7 encodes with Go's
// encoding/json, so what clients have learned to expect is Go's: HTML-safe string escapes,
// Go's float notation, `omitempty` members, map keys sorted, MarshalIndent's four-space layout.
// Every choice below was checked against a running 1.6.7 (reference/timeseries.md §2 setup).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/json_string.hpp"
#include "tsdb/go_format.hpp"
#include "tsdb/query.hpp"

namespace nimbus::tsdb {

namespace {

// ------------------------------------------------------------------------------ Go's scalars

// A JSON string as json.Marshal writes it: besides the usual escapes, `<`, `>` and `&` as
// \u003c \u003e \u0026 (HTML-safe, its default), U+2028 and U+2029 escaped (JavaScript line
// ends), other control bytes as \u00XX (\b and \f too: Go before 1.22), and each byte that is
// not UTF-8 as \ufffd, so the output always parses.
void append_go_string(std::string& out, std::string_view text) {
  constexpr std::string_view hex = "0123456789abcdef";
  out.push_back('"');
  std::size_t at = 0;
  while (at < text.size()) {
    const auto byte = static_cast<unsigned char>(text[at]);
    if (byte < 0x80) {
      switch (byte) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
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
          if (byte < 0x20 || byte == '<' || byte == '>' || byte == '&') {
            out += "\\u00";
            out.push_back(hex[byte >> 4]);
            out.push_back(hex[byte & 0x0F]);
          } else {
            out.push_back(static_cast<char>(byte));
          }
      }
      ++at;
      continue;
    }
    const std::size_t length = core::utf8_sequence(text, at);
    if (length == 0) {
      out += "\\ufffd";
      ++at;
      continue;
    }
    const auto third = length == 3 ? static_cast<unsigned char>(text[at + 2]) : 0;
    if (byte == 0xE2 && static_cast<unsigned char>(text[at + 1]) == 0x80 &&
        (third == 0xA8 || third == 0xA9)) {
      out += third == 0xA8 ? "\\u2028" : "\\u2029";
    } else {
      out.append(text.substr(at, length));
    }
    at += length;
  }
  out.push_back('"');
}

template <class Integer>
void append_integer(std::string& out, Integer value) {
  char buffer[24];
  const auto [end, failure] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, end);
}

// A time in an epoch unit: Go's integer division, truncating toward zero (1.6.7's
// convertToEpoch divides UnixNano()).
std::int64_t in_epoch(std::int64_t ns, precision unit) {
  return ns / nanoseconds_per(unit);
}

// ------------------------------------------------------------------------------------- JSON

// Writes JSON compact (json.Marshal) or indented as json.MarshalIndent(v, "", "    "): a
// member or element per line, "key": value, and empty containers kept as {} and [].
class json_writer {
 public:
  explicit json_writer(bool pretty) : is_pretty_(pretty) {}

  void open(char bracket) {
    out_.push_back(bracket);
    has_items_.push_back(false);
  }
  void close(char bracket) {
    const bool had_items = has_items_.back();
    has_items_.pop_back();
    if (is_pretty_ && had_items) new_line();
    out_.push_back(bracket);
  }
  // Starts an object member; its value follows.
  void key(std::string_view name) {
    next_item();
    append_go_string(out_, name);
    out_ += is_pretty_ ? ": " : ":";
  }
  // Starts an array element; its value follows.
  void element() { next_item(); }

  void string(std::string_view text) { append_go_string(out_, text); }
  void literal(std::string_view text) { out_ += text; }
  std::string& text() { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void next_item() {
    if (has_items_.back()) out_.push_back(',');
    has_items_.back() = true;
    if (is_pretty_) new_line();
  }
  void new_line() {
    out_.push_back('\n');
    out_.append(4 * has_items_.size(), ' ');
  }

  bool is_pretty_;
  std::string out_;
  std::vector<bool> has_items_;  // per open container, innermost last
};

void write_cell(json_writer& writer, const cell& value, std::optional<precision> epoch) {
  std::string& out = writer.text();
  std::visit(
      [&](const auto& v) {
        using type = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<type, std::monostate>) {
          out += "null";
        } else if constexpr (std::is_same_v<type, double>) {
          go::append_json_float(out, v);
        } else if constexpr (std::is_same_v<type, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<type, std::string>) {
          append_go_string(out, v);
        } else if constexpr (std::is_same_v<type, time_cell>) {
          if (epoch) {
            append_integer(out, in_epoch(v.ns, *epoch));
          } else {
            out.push_back('"');
            go::append_rfc3339(out, v.ns, v.offset_seconds);
            out.push_back('"');
          }
        } else {
          append_integer(out, v);
        }
      },
      value);
}

// A series' tags in key order: 1.6.7 holds them in a Go map, which encoding/json sorts.
std::vector<const std::pair<std::string, std::string>*> sorted_tags(const result_series& series) {
  std::vector<const std::pair<std::string, std::string>*> tags;
  tags.reserve(series.tags.size());
  for (const auto& tag : series.tags) tags.push_back(&tag);
  std::stable_sort(tags.begin(), tags.end(),
                   [](const auto* a, const auto* b) { return a->first < b->first; });
  return tags;
}

// The rows [first, last) of a series: a whole series, or one chunk of it.
struct series_piece {
  const result_series* series = nullptr;
  std::size_t first = 0;
  std::size_t last = 0;
  bool is_partial = false;  // more rows of this series follow in a later chunk
};

// models.Row: every member `omitempty` (a series without rows has no "values"), in the order
// name, tags, columns, values, partial.
void write_series(json_writer& writer, const series_piece& piece, std::optional<precision> epoch) {
  const result_series& series = *piece.series;
  writer.open('{');
  if (!series.name.empty()) {
    writer.key("name");
    writer.string(series.name);
  }
  if (!series.tags.empty()) {
    writer.key("tags");
    writer.open('{');
    for (const auto* tag : sorted_tags(series)) {
      writer.key(tag->first);
      writer.string(tag->second);
    }
    writer.close('}');
  }
  if (!series.columns.empty()) {
    writer.key("columns");
    writer.open('[');
    for (const auto& column : series.columns) {
      writer.element();
      writer.string(column);
    }
    writer.close(']');
  }
  if (piece.last > piece.first) {
    writer.key("values");
    writer.open('[');
    for (std::size_t row = piece.first; row < piece.last; ++row) {
      writer.element();
      writer.open('[');
      for (const auto& value : series.values[row]) {
        writer.element();
        write_cell(writer, value, epoch);
      }
      writer.close(']');
    }
    writer.close(']');
  }
  if (piece.is_partial) {
    writer.key("partial");
    writer.literal("true");
  }
  writer.close('}');
}

// query.Result: statement_id always, then series, partial and error when present.
void write_statement(json_writer& writer, int statement_id, const std::vector<series_piece>& pieces,
                     bool is_partial, const std::optional<std::string>& error,
                     std::optional<precision> epoch) {
  writer.open('{');
  writer.key("statement_id");
  append_integer(writer.text(), statement_id);
  if (!pieces.empty()) {
    writer.key("series");
    writer.open('[');
    for (const auto& piece : pieces) {
      writer.element();
      write_series(writer, piece, epoch);
    }
    writer.close(']');
  }
  if (is_partial) {
    writer.key("partial");
    writer.literal("true");
  }
  if (error) {
    writer.key("error");
    writer.string(*error);
  }
  writer.close('}');
}

std::vector<series_piece> whole_series(const statement_result& statement) {
  std::vector<series_piece> pieces;
  pieces.reserve(statement.series.size());
  for (const auto& series : statement.series)
    pieces.push_back(series_piece{&series, 0, series.values.size(), false});
  return pieces;
}

// -------------------------------------------------------------------------------------- CSV

// Whether Go's encoding/csv quotes a field: one holding the delimiter, a quote, \r or \n, one
// starting with a space (unicode.IsSpace of its first rune), and the odd `\.`.
bool csv_needs_quotes(std::string_view field) {
  if (field.empty()) return false;
  if (field == "\\." || field.find_first_of(",\"\r\n") != std::string_view::npos) return true;
  const auto byte = [&](std::size_t at) -> unsigned {
    if (at >= field.size()) return 0;
    return static_cast<unsigned char>(field[at]);
  };
  const unsigned first = byte(0);
  if (first == ' ' || (first >= '\t' && first <= '\r')) return true;
  if (first == 0xC2) return byte(1) == 0x85 || byte(1) == 0xA0;  // U+0085, U+00A0
  if (first == 0xE1) return byte(1) == 0x9A && byte(2) == 0x80;  // U+1680
  if (first == 0xE2) {
    if (byte(1) == 0x80)  // U+2000-U+200A, U+2028, U+2029, U+202F
      return byte(2) <= 0x8A || byte(2) == 0xA8 || byte(2) == 0xA9 || byte(2) == 0xAF;
    return byte(1) == 0x81 && byte(2) == 0x9F;  // U+205F
  }
  return first == 0xE3 && byte(1) == 0x80 && byte(2) == 0x80;  // U+3000
}

// One record as csv.Writer writes it (no CRLF): quoted fields double their quotes.
void append_csv_record(std::string& out, const std::vector<std::string>& fields) {
  for (std::size_t k = 0; k < fields.size(); ++k) {
    if (k > 0) out.push_back(',');
    const std::string& field = fields[k];
    if (!csv_needs_quotes(field)) {
      out += field;
      continue;
    }
    out.push_back('"');
    for (const char c : field) {
      if (c == '"') out.push_back('"');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('\n');
}

// The tags column: 1.6.7 prints models.Tags.HashKey() without its leading comma, i.e. sorted
// `k=v` pairs with `,`, ` ` and `=` backslash-escaped, and tags with an empty value left out.
std::string csv_tags(const result_series& series) {
  const auto escape = [](std::string& out, std::string_view text) {
    for (const char c : text) {
      if (c == ',' || c == ' ' || c == '=') out.push_back('\\');
      out.push_back(c);
    }
  };
  std::string out;
  for (const auto* tag : sorted_tags(series)) {
    if (tag->second.empty()) continue;
    if (!out.empty()) out.push_back(',');
    escape(out, tag->first);
    out.push_back('=');
    escape(out, tag->second);
  }
  return out;
}

// A cell as 1.6.7's csvFormatter prints it: null as nothing, floats without an exponent,
// strings as they are, times as integers (nanoseconds without `epoch`: the formatter prints
// time.Time as UnixNano).
std::string csv_cell(const cell& value, std::optional<precision> epoch) {
  std::string out;
  std::visit(
      [&](const auto& v) {
        using type = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<type, std::monostate>) {
        } else if constexpr (std::is_same_v<type, double>) {
          go::append_float(out, v);
        } else if constexpr (std::is_same_v<type, bool>) {
          out = v ? "true" : "false";
        } else if constexpr (std::is_same_v<type, std::string>) {
          out = v;
        } else if constexpr (std::is_same_v<type, time_cell>) {
          append_integer(out, epoch ? in_epoch(v.ns, *epoch) : v.ns);
        } else {
          append_integer(out, v);
        }
      },
      value);
  return out;
}

std::vector<std::string> csv_header(const result_series& series) {
  std::vector<std::string> header{"name", "tags"};
  header.insert(header.end(), series.columns.begin(), series.columns.end());
  return header;
}

}  // namespace

std::string format_json(const query_result& result, std::optional<precision> epoch, bool pretty) {
  json_writer writer(pretty);
  writer.open('{');
  // Response: "results" and "error" both `omitempty` ("{}" for a query of no statements).
  if (!result.results.empty()) {
    writer.key("results");
    writer.open('[');
    for (const auto& statement : result.results) {
      writer.element();
      write_statement(writer, statement.statement_id, whole_series(statement), false,
                      statement.error, epoch);
    }
    writer.close(']');
  }
  if (result.error) {
    writer.key("error");
    writer.string(*result.error);
  }
  writer.close('}');
  return writer.take();
}

// 1.6.7 emits a chunk per piece of a series (several series never share a chunk), marks a
// series continued in the next chunk "partial", and the statement "partial" on every chunk
// but its last; an empty statement or a failed one is a chunk of its own.
std::vector<std::string> format_json_chunks(const query_result& result,
                                            std::optional<precision> epoch,
                                            std::size_t chunk_size) {
  std::vector<std::string> chunks;
  const auto emit = [&](int statement_id, const std::vector<series_piece>& pieces, bool is_partial,
                        const std::optional<std::string>& error) {
    json_writer writer(false);
    writer.open('{');
    writer.key("results");
    writer.open('[');
    writer.element();
    write_statement(writer, statement_id, pieces, is_partial, error, epoch);
    writer.close(']');
    writer.close('}');
    writer.text().push_back('\n');
    chunks.push_back(writer.take());
  };
  if (result.error) {
    query_result refused;
    refused.error = result.error;
    chunks.push_back(format_json(refused, epoch) + "\n");
    return chunks;
  }
  const std::size_t rows_per_chunk =
      chunk_size == 0 ? std::numeric_limits<std::size_t>::max() : chunk_size;
  const std::optional<std::string> no_error;
  for (const auto& statement : result.results) {
    std::vector<series_piece> pieces;
    for (const auto& series : statement.series) {
      const std::size_t rows = series.values.size();
      if (rows == 0) {
        pieces.push_back(series_piece{&series, 0, 0, false});
        continue;
      }
      for (std::size_t first = 0; first < rows;) {
        const std::size_t last = rows - first > rows_per_chunk ? first + rows_per_chunk : rows;
        pieces.push_back(series_piece{&series, first, last, last < rows});
        first = last;
      }
    }
    if (pieces.empty()) {
      emit(statement.statement_id, {}, false, statement.error);
      continue;
    }
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      const bool is_last = k + 1 == pieces.size();
      emit(statement.statement_id, {pieces[k]}, !is_last, is_last ? statement.error : no_error);
    }
  }
  return chunks;
}

// 1.6.7's csvFormatter: a refused query is an `error` table; each statement with series gets a
// header from its first series' columns (reprinted, after a blank line, when a later series'
// columns differ) and a blank line before the next statement's table; statements without
// series, failed ones included, print nothing.
std::string format_csv(const query_result& result, std::optional<precision> epoch) {
  std::string out;
  if (result.error) {
    append_csv_record(out, {"error"});
    append_csv_record(out, {*result.error});
    return out;
  }
  bool has_table = false;
  for (const auto& statement : result.results) {
    if (statement.series.empty()) continue;
    if (has_table) out.push_back('\n');
    has_table = true;
    std::vector<std::string> header = csv_header(statement.series.front());
    append_csv_record(out, header);
    for (std::size_t k = 0; k < statement.series.size(); ++k) {
      const result_series& series = statement.series[k];
      if (k > 0 && series.columns != statement.series[k - 1].columns) {
        out.push_back('\n');
        header = csv_header(series);
        append_csv_record(out, header);
      }
      std::vector<std::string> record(header.size());
      record[0] = series.name;
      record[1] = csv_tags(series);
      for (const auto& row : series.values) {
        for (std::size_t column = 0; column + 2 < record.size(); ++column)
          record[column + 2] = column < row.size() ? csv_cell(row[column], epoch) : std::string();
        append_csv_record(out, record);
      }
    }
  }
  return out;
}

std::string format_rfc3339(std::int64_t ns, std::int32_t offset_seconds) {
  std::string out;
  go::append_rfc3339(out, ns, offset_seconds);
  return out;
}

}  // namespace nimbus::tsdb
