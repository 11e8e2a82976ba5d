// Parses arbitrary bytes as an InfluxQL query. Nothing may crash, hang or recurse without bound
// (regexes are compiled by std::regex, whose recursion the parser bounds), and the parser's
// promises must hold: an error is InfluxDB's "error parsing query: ..." text, and every
// expression of what parses prints back (to_string walks the whole tree) within the depth bound.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "tsdb/influxql.hpp"

namespace iql = nimbus::tsdb::influxql;

namespace {

void check(const iql::expression& e) {
  if (e.depth > iql::max_expression_depth) std::abort();
  if (iql::to_string(e).empty()) std::abort();
}

void check(const iql::expression_ptr& e) {
  if (e) check(*e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = iql::parse_query(text);
  if (const auto* error = std::get_if<iql::parse_error>(&parsed)) {
    if (error->message.rfind("error parsing query: ", 0) != 0) std::abort();
    return 0;
  }
  for (const auto& stmt : std::get<iql::query>(parsed).statements) {
    if (const auto* select = std::get_if<iql::select_statement>(&stmt)) {
      for (const auto& f : select->fields) check(f.expr);
      check(select->condition);
      for (const auto& d : select->dimensions) check(d);
    } else if (const auto* show = std::get_if<iql::show_tag_values_statement>(&stmt)) {
      check(show->condition);
      if (show->key_filter.regex) static_cast<void>(show->key_filter.matches("host"));
    } else if (const auto* series = std::get_if<iql::show_series_statement>(&stmt)) {
      check(series->condition);
    }
  }
  return 0;
}
