// Parses arbitrary bytes as a Pub/Sub subscription filter and matches what parses against a few
// attribute sets: none, a fixed set, and for inputs with newlines ("filter\nkey=value\n...") the
// pairs after the first one. Nothing may crash or recurse without bound, and the parser's promises
// must hold: an error has a message and a position inside the text, a filter keeps its text, a
// copy answers as the original, and NOT (filter), wherever it parses, answers the opposite.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>

#include "pubsub/filter.hpp"

using nimbus::pubsub::filter;
using nimbus::pubsub::filter_error;

namespace {

using attribute_map = std::map<std::string, std::string, std::less<>>;

// One `key=value` per line; a line without '=' is a key with an empty value.
attribute_map attributes_from(std::string_view lines) {
  attribute_map attributes;
  while (!lines.empty()) {
    const std::size_t newline = lines.find('\n');
    const std::string_view line = lines.substr(0, newline);
    const std::size_t equals = line.find('=');
    if (equals == std::string_view::npos)
      attributes.emplace(std::string(line), std::string());
    else
      attributes.emplace(std::string(line.substr(0, equals)), std::string(line.substr(equals + 1)));
    if (newline == std::string_view::npos) break;
    lines.remove_prefix(newline + 1);
  }
  return attributes;
}

void check(const filter& f, const filter& copy, const filter* negated,
           const attribute_map& attributes) {
  const bool is_match = f.matches(attributes);
  if (copy.matches(attributes) != is_match) std::abort();
  if (negated != nullptr && negated->matches(attributes) == is_match) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = bytes.find('\n');
  const std::string_view text = bytes.substr(0, newline);

  auto parsed = filter::parse(text);
  if (const auto* error = std::get_if<filter_error>(&parsed)) {
    if (error->message.empty() || error->position > text.size()) std::abort();
    return 0;
  }
  const filter& f = std::get<filter>(parsed);
  if (f.text() != text) std::abort();
  const filter copy = f;

  auto wrapped = filter::parse("NOT (" + std::string(text) + ")");
  const filter* negated = std::get_if<filter>(&wrapped);

  static const attribute_map fixed = {{"a", "1"},
                                      {"b", ""},
                                      {"k", "v"},
                                      {"name", "com"},
                                      {"iana.org/language_tag", "en"},
                                      {"my key", "x"},
                                      {"ce-type", "dev.example.event"}};
  check(f, copy, negated, {});
  check(f, copy, negated, fixed);
  if (newline != std::string_view::npos)
    check(f, copy, negated, attributes_from(bytes.substr(newline + 1)));
  return 0;
}
