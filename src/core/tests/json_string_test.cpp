// JSON string literals written by hand parse back to the text they were given, and bytes that
// are not UTF-8 become U+FFFD instead of breaking the document.
#include "core/json_string.hpp"

#include <gtest/gtest.h>

namespace nimbus::core {
namespace {

TEST(json_string, escapes_quotes_backslashes_and_controls) {
  EXPECT_EQ(json_string(""), R"("")");
  EXPECT_EQ(json_string(R"(a"b\c)"), R"("a\"b\\c")");
  EXPECT_EQ(json_string("line\nnext\ttab\r"), R"("line\nnext\ttab\r")");
  EXPECT_EQ(json_string(std::string("\x01\x1f", 2)), R"("\u0001\u001f")");
  EXPECT_EQ(json_string(std::string("a\0b", 3)), R"("a\u0000b")");
}

TEST(json_string, keeps_utf8_and_replaces_what_is_not) {
  EXPECT_EQ(json_string("température 36 °C ✓"), "\"température 36 °C ✓\"");
  EXPECT_EQ(json_string("\xF0\x9F\x8C\xA1"), "\"\xF0\x9F\x8C\xA1\"");  // 4-byte sequence kept
  EXPECT_EQ(json_string("a\xFFz"), R"("a\ufffdz")");                   // never valid
  EXPECT_EQ(json_string("\xC3"), R"("\ufffd")");                       // cut short
  EXPECT_EQ(json_string("\xED\xA0\x80"), R"("\ufffd\ufffd\ufffd")");   // a surrogate
  EXPECT_EQ(json_string("\xC0\xAF"), R"("\ufffd\ufffd")");             // overlong
}

TEST(json_string, appends) {
  std::string out = "{\"k\":";
  append_json_string(out, "v");
  EXPECT_EQ(out, R"({"k":"v")");
}

}  // namespace
}  // namespace nimbus::core
