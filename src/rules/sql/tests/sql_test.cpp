// Direct tests of the IoT SQL API: what the case files cannot say (error positions, exact output
// bytes, limits, the version switch, the context callback). AWS's semantics case by case are in
// tests/cases/.
#include "rules/sql/sql.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <gtest/gtest.h>

#include "rules/sql/encoding.hpp"
#include "rules/sql/time_format.hpp"
#include "rules/sql/zoneinfo.hpp"

namespace nimbus::rules::sql {
namespace {

statement parsed(std::string_view sql, sql_version version = sql_version::v2016_03_23) {
  auto result = parse(sql, version);
  if (const auto* error = std::get_if<parse_error>(&result)) {
    ADD_FAILURE() << "parse error at " << error->position << ": " << error->message << "\n  "
                  << sql;
    return std::get<statement>(parse("SELECT * FROM '#'"));
  }
  return std::get<statement>(std::move(result));
}

parse_error refused(std::string_view sql, sql_version version = sql_version::v2016_03_23) {
  auto result = parse(sql, version);
  if (const auto* error = std::get_if<parse_error>(&result)) return *error;
  ADD_FAILURE() << "parsed: " << sql;
  return {};
}

message_context sensor_context() {
  message_context ctx;
  ctx.topic = "sensor/pi-001/data";
  ctx.client_id = "pi-001";
  ctx.principal = "abcd";
  ctx.account_id = "123456789012";
  ctx.timestamp_ms = 1700000000123;
  return ctx;
}

// The output of a rule that fires; "<nothing>" or "<error: ...>" otherwise, so that a mismatch
// reads well in the failure message.
std::string output(std::string_view sql, std::string_view payload,
                   sql_version version = sql_version::v2016_03_23, const limits& bounds = {}) {
  const auto result = evaluate(parsed(sql, version), payload, sensor_context(), bounds);
  if (const auto* error = std::get_if<eval_error>(&result))
    return "<error: " + error->message + ">";
  const auto& out = std::get<std::optional<std::string>>(result);
  return out ? *out : "<nothing>";
}

TEST(rules_sql, parses_the_two_versions_only) {
  EXPECT_EQ(parse_version("2015-10-08"), sql_version::v2015_10_08);
  EXPECT_EQ(parse_version("2016-03-23"), sql_version::v2016_03_23);
  EXPECT_FALSE(parse_version("beta"));
  EXPECT_FALSE(parse_version(""));
}

TEST(rules_sql, keeps_the_topic_filter_of_from) {
  const statement s = parsed("select a from 'sensor/+/data/#' where a > 1");
  EXPECT_EQ(s.topic_filter(), "sensor/+/data/#");
  EXPECT_EQ(s.version(), sql_version::v2016_03_23);
  EXPECT_TRUE(is_valid_topic_filter("#"));
  EXPECT_TRUE(is_valid_topic_filter("$aws/things/+/shadow/update/accepted"));
  EXPECT_FALSE(is_valid_topic_filter("a/#/b"));
  EXPECT_FALSE(is_valid_topic_filter("a/b+"));
  EXPECT_FALSE(is_valid_topic_filter(""));
}

TEST(rules_sql, reports_where_the_statement_goes_wrong) {
  const std::string_view missing_condition = "SELECT a FROM 'a/b' WHERE";
  EXPECT_EQ(refused(missing_condition).position, missing_condition.size());
  const parse_error bad_filter = refused("SELECT a FROM 'a/#/b'");
  EXPECT_EQ(bad_filter.position, 14u);
  EXPECT_NE(bad_filter.message.find("topic filter"), std::string::npos) << bad_filter.message;
  const parse_error unknown = refused("SELECT a, frobnicate(b) AS c FROM 'a'");
  EXPECT_EQ(unknown.position, 10u);
  EXPECT_NE(unknown.message.find("frobnicate"), std::string::npos) << unknown.message;
  const parse_error lambda = refused("SELECT aws_lambda('arn', *) AS r FROM 'a'");
  EXPECT_NE(lambda.message.find("not supported"), std::string::npos) << lambda.message;
  EXPECT_NE(refused("SELECT a FROM 'a/b").message.find("unterminated"), std::string::npos);
}

TEST(rules_sql, refuses_2016_constructs_in_2015) {
  const auto v1 = sql_version::v2015_10_08;
  EXPECT_NE(refused("SELECT [1, 2] AS a FROM 'a'", v1).message.find("2016-03-23"),
            std::string::npos);
  refused("SELECT {'k': 1} AS a FROM 'a'", v1);
  refused("SELECT (SELECT VALUE v FROM e) AS a FROM 'a'", v1);
  refused("SELECT encode(*, 'base64') AS a FROM 'a'", v1);
  refused("SELECT cast(x AS Boolean) AS a FROM 'a'", v1);
  parsed("SELECT cast(x AS Int) AS a, md5(x) AS h FROM 'a'", v1);
}

TEST(rules_sql, writes_compact_json_in_select_order) {
  EXPECT_EQ(output("SELECT temperature, humidity, topic(2) AS device FROM 'sensor/+/data' "
                   "WHERE temperature > 30",
                   R"({"humidity": 40.5, "temperature": 35})"),
            R"({"temperature":35,"humidity":40.5,"device":"pi-001"})");
  // A string literal takes \\ for a backslash; the output escapes it (and the quote) again.
  EXPECT_EQ(
      output(R"(SELECT a AS x.y, b AS x.z, 'q"\\' AS s FROM 'a')", R"({"a":1,"b":[true,null]})"),
      R"({"x":{"y":1,"z":[true,null]},"s":"q\"\\"})");
}

TEST(rules_sql, fires_only_on_a_true_where) {
  const std::string_view sql = "SELECT a FROM 'a' WHERE a > 1";
  EXPECT_EQ(output(sql, R"({"a":2})"), R"({"a":2})");
  EXPECT_EQ(output(sql, R"({"a":1})"), "<nothing>");
  EXPECT_EQ(output(sql, R"({"b":5})"), "<nothing>");                          // Undefined
  EXPECT_EQ(output("SELECT a FROM 'a' WHERE a", R"({"a":1})"), "<nothing>");  // not a Boolean
  EXPECT_EQ(output("SELECT a FROM 'a' WHERE a", R"({"a":"TRUE"})"), R"({"a":"TRUE"})");
}

TEST(rules_sql, passes_a_binary_payload_through_untouched) {
  const std::string bytes("\x00\x01\xff{\"a\":", 7);
  EXPECT_EQ(output("SELECT * FROM 'a'", bytes), bytes);
  EXPECT_EQ(output("SELECT VALUE * FROM 'a'", bytes), bytes);
  EXPECT_EQ(output("SELECT encode(*, 'base64') AS b FROM 'a'", bytes),
            R"({"b":")" + base64_encode(bytes) + R"("})");
  EXPECT_EQ(output("SELECT *, 1 AS one FROM 'a'", bytes),
            "<error: SELECT * with other items needs a JSON object payload>");
}

TEST(rules_sql, drops_undefined_and_serializes_it_alone_as_nothing) {
  EXPECT_EQ(output("SELECT a, missing, b.c FROM 'a'", R"({"a":null,"b":{"d":1}})"),
            R"({"a":null})");
  EXPECT_EQ(output("SELECT VALUE missing FROM 'a'", "{}"), "");
  EXPECT_EQ(output("SELECT abs(1, 2) AS wrong_count, x FROM 'a'", R"({"x":0})"), R"({"x":0})");
}

TEST(rules_sql, spells_decimals_as_each_version_reads_them) {
  const auto v1 = sql_version::v2015_10_08;
  EXPECT_EQ(output("SELECT v, 2.0 AS w, cast(3 AS Double) AS d FROM 'a'", R"({"v":10.0})", v1),
            R"({"v":10.0,"w":2.0,"d":3.0})");
  EXPECT_EQ(output("SELECT v, 2.0 AS w, cast(3 AS Double) AS d FROM 'a'", R"({"v":10.0})"),
            R"({"v":10,"w":2,"d":3})");
  EXPECT_EQ(output("SELECT 0.1 + 0.2 AS d, 7 / 2 AS i, 1e21 AS big FROM 'a'", "{}"),
            R"({"d":0.3,"i":3,"big":1e+21})");
  EXPECT_EQ(output("SELECT VALUE arr FROM 'a'", R"({"arr":[1]})", v1),
            "<error: SELECT VALUE of an Array needs SQL version 2016-03-23>");
}

TEST(rules_sql, stops_at_its_limits) {
  limits few_steps;
  few_steps.max_steps = 10;
  EXPECT_EQ(output("SELECT (SELECT VALUE v + 1 FROM e) AS x FROM 'a'",
                   R"({"e":[{"v":1},{"v":2},{"v":3},{"v":4},{"v":5},{"v":6}]})",
                   sql_version::v2016_03_23, few_steps),
            "<error: the evaluation exceeds max_steps>");
  limits small_output;
  small_output.max_output_bytes = 8;
  EXPECT_EQ(output("SELECT * FROM 'a'", R"({"long":"0123456789"})", sql_version::v2016_03_23,
                   small_output),
            "<error: the output exceeds max_output_bytes>");
  EXPECT_EQ(
      output("SELECT lpad('', 1000) AS pad FROM 'a'", "{}", sql_version::v2016_03_23, small_output),
      "<error: a string value exceeds max_output_bytes>");
  limits shallow;
  shallow.max_depth = 2;
  EXPECT_EQ(
      output("SELECT * FROM 'a'", R"({"a":{"b":{"c":1}}})", sql_version::v2016_03_23, shallow),
      R"({"a":{"b":{"c":1}}})");  // deeper than max_depth: not JSON, so passed as bytes
}

TEST(rules_sql, bounds_regular_expressions) {
  EXPECT_EQ(output("SELECT regexp_matches(s, '^a+$') AS m FROM 'a'", R"({"s":"aaa"})"),
            R"({"m":true})");
  limits short_patterns;
  short_patterns.max_regex_length = 3;
  EXPECT_EQ(output("SELECT regexp_matches(s, '^a+$') AS m, 1 AS k FROM 'a'", R"({"s":"aaa"})",
                   sql_version::v2016_03_23, short_patterns),
            R"({"k":1})");
  // Back-references would need backtracking: refused, so Undefined.
  EXPECT_EQ(output("SELECT regexp_matches(s, '(a)\\1') AS m, 1 AS k FROM 'a'", R"({"s":"aa"})"),
            R"({"k":1})");
  EXPECT_EQ(compile_pattern("(a{1000}){1000}"), nullptr);
  EXPECT_NE(compile_pattern("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
            nullptr);
  // A catastrophic pattern for a backtracking matcher finishes at once.
  EXPECT_EQ(output("SELECT regexp_matches(s, '^(a+)+$') AS m FROM 'a'",
                   R"({"s":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"})"),
            R"({"m":false})");
}

TEST(rules_sql, charges_regular_expressions_to_the_step_budget) {
  // A search restarts at every offset: over a run of a's, 'a*b' reads on to the end from each.
  limits few_steps;
  few_steps.max_steps = 2000;
  const std::string_view sql = "SELECT regexp_matches(s, 'a*b') AS m FROM 'a'";
  EXPECT_EQ(output(sql, R"({"s":"aab"})", sql_version::v2016_03_23, few_steps), R"({"m":true})");
  EXPECT_EQ(output(sql, R"({"s":")" + std::string(1000, 'a') + R"("})", sql_version::v2016_03_23,
                   few_steps),
            "<error: the evaluation exceeds max_steps>");
  // Past max_regex_input (1,024 bytes by default) the call is Undefined.
  EXPECT_EQ(output("SELECT regexp_matches(s, '^a') AS m, 1 AS k FROM 'a'",
                   R"({"s":")" + std::string(1025, 'a') + R"("})"),
            R"({"k":1})");
}

TEST(rules_sql, refuses_lookaheads) {
  // A lookahead runs a sub-search at every state and offset: refused, so the call is Undefined,
  // whether the pattern is a literal or comes from the payload.
  EXPECT_EQ(output("SELECT regexp_matches(s, 'a(?=b)') AS m, 1 AS k FROM 'a'", R"({"s":"ab"})"),
            R"({"k":1})");
  EXPECT_EQ(output("SELECT regexp_matches(s, p) AS m, 1 AS k FROM 'a'",
                   R"json({"s":"ab","p":"a(?!c)"})json"),
            R"({"k":1})");
  EXPECT_EQ(compile_pattern("a(?=b)"), nullptr);
  EXPECT_EQ(compile_pattern("a(?!b)"), nullptr);
  EXPECT_NE(compile_pattern("a(?:b)"), nullptr);  // a group that only groups
  EXPECT_NE(compile_pattern("[(?=]"), nullptr);   // a class
}

TEST(rules_sql, refuses_costly_regular_expression_literals) {
  // libstdc++ compiles a pattern recursively, one level per group: a literal, compiled once at
  // parse time, is refused there when it is longer than max_regex_length or nests too deeply.
  const std::string deep = std::string(2000, '(') + "a" + std::string(2000, ')');
  const parse_error too_long = refused("SELECT regexp_matches(s, '" + deep + "') AS m FROM 'a'");
  EXPECT_EQ(too_long.position, 25u);  // the pattern's opening quote
  EXPECT_NE(too_long.message.find("longer than 256"), std::string::npos) << too_long.message;
  const std::string nested = std::string(33, '(') + "a" + std::string(33, ')');
  const parse_error too_deep = refused("SELECT regexp_matches(s, '" + nested + "') AS m FROM 'a'");
  EXPECT_NE(too_deep.message.find("nests groups"), std::string::npos) << too_deep.message;
  parsed("SELECT regexp_matches(s, '" + std::string(32, '(') + "a" + std::string(32, ')') +
         "') AS m FROM 'a'");
  // From the payload, the same pattern makes the call Undefined.
  EXPECT_EQ(output("SELECT regexp_matches(s, p) AS m, 1 AS k FROM 'a'",
                   R"({"s":"a","p":")" + nested + R"("})"),
            R"({"k":1})");
  EXPECT_EQ(compile_pattern(deep), nullptr);
}

TEST(rules_sql, bounds_the_memory_of_an_evaluation) {
  const std::string_view needs_memory = "<error: the evaluation needs more than";
  // transform() copies the object into every element: 60 KB times 20,000 would be 1.2 GB.
  std::string payload = R"({"attributes":{"big":")" + std::string(60000, 'x') + R"("},"values":[)";
  for (int i = 0; i < 20000; ++i) payload += i == 0 ? "{}" : ",{}";
  payload += "]}";
  const std::string enriched =
      output("SELECT transform('enrichArray', attributes, values) AS t FROM 't'", payload);
  EXPECT_TRUE(enriched.starts_with(needs_memory)) << enriched.substr(0, 200);
  // Each nested SELECT copies every row four times: the memory grows fourfold per level, the
  // steps by a handful.
  std::string chain = "a";
  for (int level = 0; level < 10; ++level) chain = "(SELECT VALUE [*, *, *, *] FROM " + chain + ")";
  const std::string copies = output("SELECT VALUE " + chain + " FROM 't'",
                                    R"({"a":[")" + std::string(1000, 'r') + R"(","s"]})");
  EXPECT_TRUE(copies.starts_with(needs_memory)) << copies.substr(0, 200);
  // The payload itself does not count against the budget.
  limits little_memory;
  little_memory.max_memory_bytes = 1024;
  EXPECT_EQ(output("SELECT VALUE 1 FROM 't'", payload, sql_version::v2016_03_23, little_memory),
            "1");
}

TEST(rules_sql, encodes_the_row_as_star_in_a_nested_select) {
  EXPECT_EQ(output("SELECT VALUE (SELECT VALUE encode(*, 'base64') FROM rows) FROM 'a'",
                   R"({"rows":[{"a":1}]})"),
            R"([")" + base64_encode(R"({"a":1})") + R"("])");
  // At the statement's level, * is the payload as published, spaces and all.
  EXPECT_EQ(output("SELECT encode(*, 'base64') AS b FROM 'a'", R"({"a": 1})"),
            R"({"b":")" + base64_encode(R"({"a": 1})") + R"("})");
}

TEST(rules_sql, encodes_base64_both_ways) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_decode("Zm9vYg=="), "foob");
  EXPECT_EQ(base64_decode("Zm9vYg"), "foob");  // padding may be left out
  EXPECT_FALSE(base64_decode("Zm9v!"));
  EXPECT_FALSE(base64_decode("Z"));
}

TEST(rules_sql, formats_and_parses_times_in_zones) {
  EXPECT_EQ(format_time("yyyy-MM-dd'T'HH:mm:ss.SSSXXX EEE MMM", 1700000000123, time_zone()),
            "2023-11-14T22:13:20.123Z Tue Nov");
  const auto plus_two = time_zone::find("+02:00");
  ASSERT_TRUE(plus_two);
  EXPECT_EQ(format_time("HH:mm ZZ", 0, *plus_two), "02:00 +02:00");
  EXPECT_EQ(parse_time_text("2023-07-01T12:00:00+02:00", "yyyy-MM-dd'T'HH:mm:ssXXX"),
            1688205600000);
  EXPECT_EQ(parse_time_text("20231114", "yyyyMMdd"), 1699920000000);
  EXPECT_FALSE(parse_time_text("2023-02-30", "yyyy-MM-dd"));
  EXPECT_FALSE(time_zone::find("Nowhere/Land"));
  EXPECT_FALSE(time_zone::find("../../etc/passwd"));
  // Named zones come from the system's tz database when it is installed.
  if (const auto los_angeles = time_zone::find("America/Los_Angeles")) {
    EXPECT_EQ(format_time("yyyy-MM-dd HH:mm z", 1700000000000, *los_angeles),
              "2023-11-14 14:13 PST");
    EXPECT_EQ(
        parse_time_text("2007-12-03 10:15:30.592 America/Los_Angeles", "yyyy-MM-dd HH:mm:ss.SSS z"),
        1196705730592);
  }
}

TEST(rules_sql, asks_the_context_for_shadows) {
  message_context ctx = sensor_context();
  std::string asked;
  ctx.thing_shadow = [&asked](std::string_view thing,
                              std::string_view shadow) -> std::optional<std::string> {
    asked = std::string(thing) + "~" + std::string(shadow);
    return std::string(R"({"state":{"reported":{"mode":"auto"}},"version":2})");
  };
  const statement s = parsed(
      "SELECT get_thing_shadow(topic(2), 'config', 'arn:aws:iam::1:role/r').state.reported.mode "
      "AS mode FROM 'sensor/#'");
  const auto result = evaluate(s, "{}", ctx);
  ASSERT_TRUE(std::holds_alternative<std::optional<std::string>>(result));
  EXPECT_EQ(std::get<std::optional<std::string>>(result), R"({"mode":"auto"})");
  EXPECT_EQ(asked, "pi-001~config");
}

}  // namespace
}  // namespace nimbus::rules::sql
