#pragma once
// JSON string literals written by hand (event payloads, error bodies, endpoints.json): quoted and
// escaped, with bytes that are not UTF-8 (a name from a hostile client) as U+FFFD, so what is
// written always parses.
#include <cstddef>
#include <string>
#include <string_view>

namespace nimbus::core {

// The length of the well-formed UTF-8 sequence at text[at] (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF), 0 when there is none. `at` must be inside `text`.
std::size_t utf8_sequence(std::string_view text, std::size_t at);

// Appends `text` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view text);
// `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);

}  // namespace nimbus::core
