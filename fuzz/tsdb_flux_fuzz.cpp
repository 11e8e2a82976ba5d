// Parses and compiles arbitrary bytes as a Flux query. Nothing may crash, hang or recurse without
// bound (trees are bounded by parse_limits::max_depth, regexes by the compiler's size checks),
// and the promises must hold: a parse error is "compilation failed: ..." with a position, every
// tree is within the depth bound, and what compiles can be evaluated: each row function runs on
// a row where every column is null, and on one where nothing is known yet (planning a read).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tsdb/flux.hpp"

namespace flux = nimbus::tsdb::flux;

namespace {

constexpr std::uint32_t max_depth = 64;

void check(const flux::node& n, std::uint32_t depth);

void check(const std::vector<flux::statement>& statements, std::uint32_t depth) {
  for (const auto& s : statements)
    if (s.value) check(*s.value, depth + 1);
}

// Walks the whole tree: heights are consistent and within the bound.
void check(const flux::node& n, std::uint32_t depth) {
  if (n.height > max_depth || depth > max_depth + 1) std::abort();
  for (const auto& child : n.children) {
    if (!child || child->height >= n.height) std::abort();
    check(*child, depth + 1);
  }
  for (const auto& p : n.properties)
    if (p.value) check(*p.value, depth + 1);
  check(n.block, depth);
}

class null_row final : public flux::row_view {
 public:
  const flux::scalar* column(const std::string&) const override { return &null_; }
  const flux::scalar* parameter() const override { return &name_; }

 private:
  flux::scalar null_;
  flux::scalar name_{std::string("_value")};
};

class unknown_row final : public flux::row_view {
 public:
  const flux::scalar* column(const std::string&) const override { return nullptr; }
};

void run(const flux::row_expression& e) {
  const auto known = flux::evaluate(e, null_row());
  if (known.outcome == flux::row_result::state::unknown) std::abort();  // nothing was unknown
  if (known.outcome == flux::row_result::state::failed && known.error.empty()) std::abort();
  static_cast<void>(flux::evaluate(e, unknown_row()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  flux::parse_limits limits;
  limits.max_depth = max_depth;
  limits.max_text_bytes = 64 << 10;
  auto parsed = flux::parse(text, limits);
  if (const auto* failure = std::get_if<flux::error>(&parsed)) {
    if (failure->message.rfind("compilation failed: ", 0) != 0) std::abort();
    return 0;
  }
  const auto& syntax = std::get<flux::file>(parsed);
  check(syntax.body, 0);

  flux::compile_options options;
  options.now_ns = 1'714'564'800'000'000'000;  // 2024-05-01T12:00:00Z
  options.externs.emplace_back("bucket", flux::value::of(flux::scalar{std::string("b")}));
  options.externs.emplace_back("start", flux::value::of(flux::duration{0, -3'600'000'000'000}));
  auto compiled = flux::compile(syntax, options);
  if (const auto* failure = std::get_if<flux::error>(&compiled)) {
    if (failure->message.empty()) std::abort();
    return 0;
  }
  for (const auto& result : std::get<flux::program>(compiled).results) {
    if (result.name.empty() && result.source.operations.empty()) std::abort();
    for (const auto& op : result.source.operations) {
      if (const auto* filter = std::get_if<flux::filter_operation>(&op.detail)) {
        run(filter->predicate);
      } else if (const auto* map = std::get_if<flux::map_operation>(&op.detail)) {
        for (const auto& assignment : map->assignments) run(assignment.second);
      } else if (const auto* columns = std::get_if<flux::columns_operation>(&op.detail)) {
        if (columns->predicate) run(*columns->predicate);
      }
    }
  }
  return 0;
}
