#pragma once
// JSON written as Python's json.dumps writes it with its defaults, because the tutorial's bridges
// (§4.1, §4.2) are json.loads + json.dumps in Python and their consumers see those exact bytes:
// ", " and ": " separators, everything outside printable ASCII as \uXXXX (lowercase hex,
// surrogate pairs), floats as repr() (shortest round trip, "1.0", "1e-05", "1e+16"), integers
// as written. A streaming re-serializer over Boost.JSON's basic_parser: no DOM, numbers re-read
// from their text with std::from_chars, which rounds correctly (Boost 1.81's own reading does
// not promise to).
// Deliberate differences from Python: NaN, Infinity and numbers that overflow a double are not
// JSON here (Python would write `Infinity`, which JSON.parse refuses); lone UTF-16 surrogates
// ("\ud800") are refused by Boost; a duplicate key is written twice where Python keeps the last
// value (the members list below does give the last one, as dict.get does). Data plane: never
// throws on input.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::bridge {

struct python_json {
  std::string text;  // the whole document as json.dumps(json.loads(input)) writes it
  bool is_object = false;
  // The top-level object's members in order (empty unless is_object): where each value's text
  // is in `text`, and a string value decoded.
  struct member {
    std::string key;
    std::size_t begin = 0;
    std::size_t end = 0;
    std::optional<std::string> string_value;
  };
  std::vector<member> members;

  // The last member named `key` (Python's dict keeps the last of duplicates), or null.
  const member* find(std::string_view key) const;
  std::string_view value_text(const member& m) const {
    return std::string_view(text).substr(m.begin, m.end - m.begin);
  }
};

// nullopt when `input` is not one JSON document (as Boost.JSON reads it, nesting up to 512).
std::optional<python_json> redump_python(std::string_view input);

// Appends `utf8` as json.dumps writes a str (quotes included). Bytes that are not UTF-8 (never
// the case for parsed JSON or MQTT topics) are written as \ufffd.
void append_python_string(std::string& out, std::string_view utf8);
// Appends repr(value) for a finite double.
void append_python_float(std::string& out, double value);

}  // namespace nimbus::bridge
