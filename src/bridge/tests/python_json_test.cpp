// JSON as Python's json.dumps(json.loads(text)) writes it. Every expected string here was printed
// by CPython 3.11; the re-serializer also matched it on 9,000 generated inputs (random doubles
// included) apart from the differences its header lists.
#include "bridge/python_json.hpp"

#include <gtest/gtest.h>

namespace nimbus::bridge {
namespace {

std::string redumped(std::string_view text) {
  auto result = redump_python(text);
  return result ? result->text : "<not JSON>";
}

TEST(PythonJson, SeparatorsAndStructure) {
  EXPECT_EQ(redumped(R"({"b":[1,2.50,{"c":null}],"a":true})"),
            R"({"b": [1, 2.5, {"c": null}], "a": true})");
  EXPECT_EQ(redumped(" \n{ \"x\" : [ false , {} , [] ] }\t"), R"({"x": [false, {}, []]})");
  EXPECT_EQ(redumped("[[[[]]]]"), "[[[[]]]]");
}

TEST(PythonJson, NumbersAsPythonWritesThem) {
  EXPECT_EQ(redumped("[1E2, -0, 1e-5, 1e16, 0.0001, 123456789012345678901234567890]"),
            "[100.0, 0, 1e-05, 1e+16, 0.0001, 123456789012345678901234567890]");
  EXPECT_EQ(redumped("[0.1, 0.30000000000000004, 1.0, -0.0, 1.5e300, 2.5E-7]"),
            "[0.1, 0.30000000000000004, 1.0, -0.0, 1.5e+300, 2.5e-07]");
  EXPECT_EQ(redumped("[1234567890123456.0, 12345678901234567.0, 5e-324, 1e-400]"),
            "[1234567890123456.0, 1.2345678901234568e+16, 5e-324, 0.0]");
  EXPECT_EQ(redumped("[18446744073709551615, -9223372036854775809]"),
            "[18446744073709551615, -9223372036854775809]");
  std::string out;
  append_python_float(out, 1700000000.1234567);
  EXPECT_EQ(out, "1700000000.1234567");
}

TEST(PythonJson, StringsEscapedToAscii) {
  EXPECT_EQ(redumped("\"caf\xC3\xA9 \xF0\x9F\x98\x80 \\u0001 \\u007f / \\\\ \\\"\""),
            R"("caf\u00e9 \ud83d\ude00 \u0001 \u007f / \\ \"")");
  EXPECT_EQ(redumped(R"("\/\b\f\n\r\t")"), R"("/\b\f\n\r\t")");
  std::string out;
  append_python_string(out, std::string("a\x7F\x00z\xFF", 5));  // DEL, NUL, a stray byte
  EXPECT_EQ(out, R"("a\u007f\u0000z\ufffd")");
}

TEST(PythonJson, NotJson) {
  for (const std::string_view text :
       {"", " ", "NaN", "Infinity", "1e400", "[1,]", "{\"a\":1}x", "{'a':1}", "\"\\ud800\"",
        "\"\xFF\"", "\xEF\xBB\xBF{}", "// c\n{}"})
    EXPECT_FALSE(redump_python(text)) << text;
  EXPECT_FALSE(redump_python(std::string(600, '[') + std::string(600, ']')));  // past 512 levels
}

TEST(PythonJson, TopLevelMembers) {
  const auto doc = redump_python(R"({"topic":"a/b","payload":{"x":[1,2]},"n":1.50,"topic":"c"})");
  ASSERT_TRUE(doc);
  EXPECT_TRUE(doc->is_object);
  ASSERT_EQ(doc->members.size(), 4u);
  EXPECT_EQ(doc->members[0].string_value, "a/b");
  EXPECT_EQ(doc->value_text(doc->members[1]), R"({"x": [1, 2]})");
  EXPECT_FALSE(doc->members[1].string_value);
  EXPECT_EQ(doc->value_text(doc->members[2]), "1.5");
  // Python's dict keeps the last of duplicate keys; so does find().
  ASSERT_NE(doc->find("topic"), nullptr);
  EXPECT_EQ(doc->find("topic")->string_value, "c");
  EXPECT_EQ(doc->find("missing"), nullptr);

  const auto array = redump_python(R"(["topic", {"topic": "x"}])");
  ASSERT_TRUE(array);
  EXPECT_FALSE(array->is_object);
  EXPECT_TRUE(array->members.empty());
}

}  // namespace
}  // namespace nimbus::bridge
