// Parses arbitrary bytes as AWS IoT SQL (both versions) and evaluates what parses against a fixed
// JSON payload, a binary payload, and, for inputs with a newline ("sql\npayload"), the bytes after
// it. Nothing may crash or run away: the limits here are small, and the evaluator must honour
// them. The engine's promises must hold too: a parse error has a message and a position inside
// the text, a statement's FROM is a valid filter, and an output is never longer than the bound
// and is JSON unless the statement passes the raw payload through.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/error.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>

#include "rules/sql/sql.hpp"

using namespace nimbus::rules::sql;

namespace {

constexpr std::string_view json_payload =
    R"({"temperature":35,"humidity":60.5,"name":"pi-001","on":true,"none":null,)"
    R"("tags":["a","b",3],"e":[{"n":"t","v":22.5},{"n":"l","v":135}],)"
    R"("nested":{"a":{"b":[1,{"c":"d"}]},"my-key":"x"},"encoded":"eyJ0IjogMzN9"})";
constexpr std::string_view binary_payload("\x00\x01\xff\xfe{", 5);

bool passes_payload_through(const statement& s) {
  const query& root = s.code().queries[s.code().root];
  return root.items.size() == 1 && root.items.front().expression == no_index;
}

void run(const statement& s, std::string_view payload, const limits& bounds) {
  message_context context;
  context.topic = "sensor/pi-001/data";
  context.client_id = "pi-001";
  context.principal = "abcd";
  context.account_id = "123456789012";
  context.timestamp_ms = 1700000000123;
  context.trace_id = "8b1a9953-c461-4296-a827-abf8c47804d7";
  context.thing_shadow = [](std::string_view thing,
                            std::string_view) -> std::optional<std::string> {
    if (thing != "thing-1") return std::nullopt;
    return std::string(R"({"state":{"reported":{"t":1,"on":true}},"version":3})");
  };
  const auto result = evaluate(s, payload, context, bounds);
  if (const auto* error = std::get_if<eval_error>(&result)) {
    if (error->message.empty()) std::abort();
    return;
  }
  const auto& output = std::get<std::optional<std::string>>(result);
  if (!output) return;
  if (output->size() > bounds.max_output_bytes) std::abort();
  if (output->empty() || passes_payload_through(s)) return;  // "" is SELECT VALUE of Undefined
  boost::json::parse_options options;
  options.max_depth = 1000;
  options.allow_invalid_utf8 = true;  // strings decoded from base64 may hold any bytes
  boost::json::error_code ec;
  (void)boost::json::parse(*output, ec, {}, options);
  if (ec) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = bytes.find('\n');
  const std::string_view sql = bytes.substr(0, newline);

  limits bounds;
  bounds.max_depth = 16;
  bounds.max_output_bytes = 4096;
  bounds.max_memory_bytes = 256 * 1024;
  bounds.max_steps = 5000;
  bounds.max_regex_length = 64;
  bounds.max_regex_input = 256;

  for (const sql_version version : {sql_version::v2015_10_08, sql_version::v2016_03_23}) {
    auto parsed = parse(sql, version);
    if (const auto* error = std::get_if<parse_error>(&parsed)) {
      if (error->message.empty() || error->position > sql.size()) std::abort();
      continue;
    }
    const statement& s = std::get<statement>(parsed);
    if (!is_valid_topic_filter(s.topic_filter())) std::abort();
    const statement copy = s;  // a statement is a value: a copy evaluates the same way
    run(copy, json_payload, bounds);
    run(s, binary_payload, bounds);
    if (newline != std::string_view::npos) run(s, bytes.substr(newline + 1), bounds);
  }
  return 0;
}
