// InfluxQL's parser: every statement form Nimbus runs (and Grafana sends), the ones it only
// parses, and the errors, whose text must be InfluxDB's own. Error messages marked "verified"
// were checked against InfluxDB 1.6.7 (Debian 12's influxd, queried over HTTP, which trims the
// query text first); the others follow influxql's parser.go and are best-effort.
#include "tsdb/influxql.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>

#include <gtest/gtest.h>

namespace nimbus::tsdb::influxql {
namespace {

query parse_ok(std::string_view text) {
  auto parsed = parse_query(text);
  if (const auto* error = std::get_if<parse_error>(&parsed)) {
    ADD_FAILURE() << text << " => " << error->message;
    return {};
  }
  return std::move(std::get<query>(parsed));
}

std::string error_of(std::string_view text) {
  auto parsed = parse_query(text);
  if (const auto* error = std::get_if<parse_error>(&parsed)) return error->message;
  ADD_FAILURE() << text << " parsed";
  return {};
}

template <typename T>
const T& only(const query& q) {
  EXPECT_EQ(q.statements.size(), 1U);
  return std::get<T>(q.statements.at(0));
}

constexpr std::int64_t second_ns = 1'000'000'000;

// ---- statements Grafana sends (reference/timeseries.md 1.4)

TEST(influxql, grafana_builder_query) {
  const auto q = parse_ok(
      R"(SELECT mean("value") FROM "m" WHERE ("host" = 'a') AND time >= 1700000000000ms and )"
      R"(time <= 1700003600000ms GROUP BY time(10s), "host" fill(null))");
  const auto& s = only<select_statement>(q);
  ASSERT_EQ(s.fields.size(), 1U);
  EXPECT_EQ(to_string(*s.fields[0].expr), "mean(value)");
  EXPECT_FALSE(s.is_raw);
  ASSERT_EQ(s.sources.size(), 1U);
  EXPECT_EQ(s.sources[0].name, "m");
  ASSERT_TRUE(s.condition);
  EXPECT_EQ(to_string(*s.condition),
            "(host = 'a') AND time >= 1700000000s AND time <= 1700003600s");
  // AND is left-associative: ((paren AND time >=) AND time <=).
  EXPECT_EQ(s.condition->op, binary_op::logical_and);
  EXPECT_EQ(s.condition->children[1]->op, binary_op::less_equal);
  EXPECT_EQ(s.condition->children[1]->children[1]->kind, expression_kind::duration);
  EXPECT_EQ(s.condition->children[1]->children[1]->integer, 1700003600 * second_ns);
  ASSERT_EQ(s.dimensions.size(), 2U);
  EXPECT_EQ(to_string(*s.dimensions[0]), "time(10s)");
  EXPECT_EQ(s.dimensions[1]->kind, expression_kind::var_ref);
  EXPECT_EQ(s.dimensions[1]->text, "host");
  EXPECT_EQ(s.fill, fill_option::null);
}

TEST(influxql, grafana_options_order_limits_and_time_zone) {
  const auto q = parse_ok(
      "SELECT last(*) FROM \"rp\".\"m\" WHERE time > now() - 6h GROUP BY * ORDER BY time DESC "
      "LIMIT 10 OFFSET 2 SLIMIT 3 SOFFSET 1");
  const auto& s = only<select_statement>(q);
  EXPECT_EQ(to_string(*s.fields[0].expr), "last(*)");
  EXPECT_EQ(s.sources[0].retention_policy, "rp");
  EXPECT_EQ(s.sources[0].name, "m");
  EXPECT_EQ(to_string(*s.condition), "time > now() - 6h");
  EXPECT_EQ(s.dimensions[0]->kind, expression_kind::wildcard);
  EXPECT_FALSE(s.is_ascending);
  EXPECT_EQ(s.limit, 10);
  EXPECT_EQ(s.offset, 2);
  EXPECT_EQ(s.series_limit, 3);
  EXPECT_EQ(s.series_offset, 1);
  EXPECT_FALSE(s.location);
}

TEST(influxql, time_zone_clause) {
  if (!time_zone::find("Asia/Seoul")) GTEST_SKIP() << "no tz database";
  const auto q = parse_ok("SELECT mean(v) FROM m GROUP BY time(1d) tz('Asia/Seoul')");
  const auto& s = only<select_statement>(q);
  ASSERT_TRUE(s.location);
  EXPECT_EQ(s.location->name(), "Asia/Seoul");
  EXPECT_EQ(s.location->offset_at(1700000000), 9 * 3600);
}

TEST(influxql, show_statements_grafana_sends) {
  EXPECT_TRUE(std::holds_alternative<show_measurements_statement>(
      parse_ok("SHOW measurements").statements.at(0)));

  const auto measurements = parse_ok("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)CP/ LIMIT 100");
  const auto& m = only<show_measurements_statement>(measurements);
  ASSERT_TRUE(m.source && m.source->regex);
  EXPECT_TRUE(m.source->regex->search("cpu"));  // (?i): RE2's flag group, read as icase
  EXPECT_EQ(m.limit, 100);

  const auto exact = parse_ok("SHOW MEASUREMENTS ON db WITH MEASUREMENT = cpu WHERE host = 'a'");
  const auto& e = only<show_measurements_statement>(exact);
  EXPECT_EQ(e.database, "db");
  EXPECT_EQ(e.source->name, "cpu");
  EXPECT_TRUE(e.condition);

  const auto keys = parse_ok(R"(SHOW TAG KEYS FROM "m" WHERE "host" = 'a')");
  const auto& k = only<show_tag_keys_statement>(keys);
  EXPECT_EQ(k.sources.at(0).name, "m");
  EXPECT_TRUE(k.condition);
  EXPECT_FALSE(k.key_filter);

  const auto values =
      parse_ok(R"(SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE "dc" =~ /east/)");
  const auto& v = only<show_tag_values_statement>(values);
  EXPECT_EQ(v.key_filter.op, tag_key_op::equal);
  EXPECT_TRUE(v.key_filter.matches("host"));
  EXPECT_FALSE(v.key_filter.matches("dc"));
  EXPECT_EQ(to_string(*v.condition), "dc =~ /east/");

  const auto in = parse_ok(R"(SHOW TAG VALUES ON db WITH KEY IN ("a", b) LIMIT 5 OFFSET 1)");
  const auto& i = only<show_tag_values_statement>(in);
  EXPECT_EQ(i.database, "db");
  EXPECT_EQ(i.key_filter.op, tag_key_op::in);
  EXPECT_TRUE(i.key_filter.matches("b"));
  EXPECT_FALSE(i.key_filter.matches("c"));
  EXPECT_EQ(i.limit, 5);
  EXPECT_EQ(i.offset, 1);

  const auto regex_keys = parse_ok("SHOW TAG VALUES WITH KEY =~ /^ho/");
  EXPECT_TRUE(only<show_tag_values_statement>(regex_keys).key_filter.matches("host"));

  const auto fields = parse_ok(R"(SHOW FIELD KEYS FROM "rp"."m")");
  const auto& f = only<show_field_keys_statement>(fields);
  EXPECT_EQ(f.sources.at(0).retention_policy, "rp");
  EXPECT_EQ(f.sources.at(0).name, "m");

  const auto policies = parse_ok(R"(SHOW RETENTION POLICIES on "db")");
  EXPECT_EQ(only<show_retention_policies_statement>(policies).database, "db");

  const auto series = parse_ok("SHOW SERIES ON db FROM cpu WHERE host = 'a' LIMIT 10 OFFSET 2");
  const auto& se = only<show_series_statement>(series);
  EXPECT_EQ(se.database, "db");
  EXPECT_EQ(se.limit, 10);
  EXPECT_EQ(se.offset, 2);

  EXPECT_TRUE(std::holds_alternative<show_databases_statement>(
      parse_ok("show databases").statements.at(0)));
}

TEST(influxql, database_and_retention_policy_statements) {
  const auto create =
      parse_ok("CREATE DATABASE x WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME r");
  const auto& c = only<create_database_statement>(create);
  EXPECT_EQ(c.name, "x");
  EXPECT_TRUE(c.has_policy);
  EXPECT_EQ(c.duration_ns, 86400 * second_ns);
  EXPECT_EQ(c.replication, 1);
  EXPECT_EQ(c.shard_group_duration_ns, 3600 * second_ns);
  EXPECT_EQ(c.policy_name, "r");

  const auto plain = parse_ok("CREATE DATABASE \"my db\"");
  EXPECT_EQ(only<create_database_statement>(plain).name, "my db");
  EXPECT_FALSE(only<create_database_statement>(plain).has_policy);

  EXPECT_EQ(only<drop_database_statement>(parse_ok("DROP DATABASE x")).name, "x");

  const auto rp = parse_ok(
      R"(CREATE RETENTION POLICY "one_week" ON "db" DURATION 1w REPLICATION 1 SHARD DURATION 1d DEFAULT)");
  const auto& r = only<create_retention_policy_statement>(rp);
  EXPECT_EQ(r.name, "one_week");
  EXPECT_EQ(r.database, "db");
  EXPECT_EQ(r.duration_ns, 7 * 86400 * second_ns);
  EXPECT_EQ(r.shard_group_duration_ns, 86400 * second_ns);
  EXPECT_TRUE(r.is_default);

  const auto alter = parse_ok("ALTER RETENTION POLICY default ON db DURATION INF DEFAULT");
  const auto& a = only<alter_retention_policy_statement>(alter);
  EXPECT_EQ(a.name, "default");
  EXPECT_EQ(a.duration_ns, 0);
  EXPECT_FALSE(a.replication);
  EXPECT_TRUE(a.is_default);

  const auto drop = parse_ok("DROP RETENTION POLICY r ON db");
  EXPECT_EQ(only<drop_retention_policy_statement>(drop).name, "r");
  EXPECT_EQ(only<drop_retention_policy_statement>(drop).database, "db");
}

TEST(influxql, statements_parsed_but_not_run_keep_their_name) {
  const std::pair<const char*, const char*> cases[] = {
      {"DROP SERIES FROM cpu WHERE host = 'a'", "DROP SERIES"},
      {"DELETE FROM cpu WHERE time < now()", "DELETE"},
      {"DROP MEASUREMENT cpu", "DROP MEASUREMENT"},
      {"SHOW USERS", "SHOW USERS"},
      {"CREATE USER u WITH PASSWORD 'p' WITH ALL PRIVILEGES", "CREATE USER"},
      {"DROP USER u", "DROP USER"},
      {"GRANT ALL ON db TO u", "GRANT"},
      {"GRANT ALL PRIVILEGES TO u", "GRANT"},
      {"REVOKE READ ON db FROM u", "REVOKE"},
      {"SET PASSWORD FOR u = 'x'", "SET PASSWORD"},
      {"SHOW CONTINUOUS QUERIES", "SHOW CONTINUOUS QUERIES"},
      {"CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO m2 FROM m GROUP BY time(1m) END",
       "CREATE CONTINUOUS QUERY"},
      {"DROP CONTINUOUS QUERY cq ON db", "DROP CONTINUOUS QUERY"},
      {"KILL QUERY 12 ON host1", "KILL QUERY"},
      {"SHOW QUERIES", "SHOW QUERIES"},
      {"SHOW STATS FOR 'httpd'", "SHOW STATS"},
      {"SHOW DIAGNOSTICS", "SHOW DIAGNOSTICS"},
      {"SHOW SHARDS", "SHOW SHARDS"},
      {"SHOW SHARD GROUPS", "SHOW SHARD GROUPS"},
      {"SHOW SUBSCRIPTIONS", "SHOW SUBSCRIPTIONS"},
      {"SHOW GRANTS FOR u", "SHOW GRANTS"},
      {"EXPLAIN ANALYZE SELECT v FROM m", "EXPLAIN"},
      {"SHOW SERIES CARDINALITY", "SHOW SERIES CARDINALITY"},
      {"SHOW MEASUREMENT EXACT CARDINALITY ON db", "SHOW MEASUREMENT CARDINALITY"},
      {"SHOW TAG VALUES EXACT CARDINALITY WITH KEY = host", "SHOW TAG VALUES CARDINALITY"},
      {"SHOW TAG KEY CARDINALITY FROM cpu", "SHOW TAG KEY CARDINALITY"},
      {"SHOW FIELD KEY EXACT CARDINALITY", "SHOW FIELD KEY CARDINALITY"},
      {"DROP SHARD 3", "DROP SHARD"},
      {"CREATE SUBSCRIPTION s ON db.rp DESTINATIONS ALL 'udp://h:1'", "CREATE SUBSCRIPTION"},
      {"DROP SUBSCRIPTION s ON db.rp", "DROP SUBSCRIPTION"},
  };
  for (const auto& [text, name] : cases) {
    const auto q = parse_ok(text);
    ASSERT_EQ(q.statements.size(), 1U) << text;
    const auto* stmt = std::get_if<unsupported_statement>(&q.statements[0]);
    ASSERT_NE(stmt, nullptr) << text;
    EXPECT_EQ(stmt->name, name) << text;
  }
  const auto into = parse_ok(R"(SELECT mean(v) INTO "db"."rp".m2 FROM m GROUP BY time(1m))");
  const auto& s = only<select_statement>(into);
  ASSERT_TRUE(s.target);
  EXPECT_EQ(s.target->database, "db");
  EXPECT_EQ(s.target->name, "m2");
}

// ---- SELECT's pieces

TEST(influxql, sources_in_every_form) {
  const auto q = parse_ok(
      R"(SELECT v FROM m, "rp"."m2", "db"."rp"."m3", db..m4, /re/, "db"."rp"./re2/, (SELECT v FROM x))");
  const auto& s = only<select_statement>(q);
  ASSERT_EQ(s.sources.size(), 7U);
  EXPECT_EQ(s.sources[0].name, "m");
  EXPECT_EQ(s.sources[1].retention_policy, "rp");
  EXPECT_EQ(s.sources[1].name, "m2");
  EXPECT_EQ(s.sources[2].database, "db");
  EXPECT_EQ(s.sources[2].retention_policy, "rp");
  EXPECT_EQ(s.sources[2].name, "m3");
  EXPECT_EQ(s.sources[3].database, "db");
  EXPECT_EQ(s.sources[3].retention_policy, "");
  EXPECT_EQ(s.sources[3].name, "m4");
  ASSERT_TRUE(s.sources[4].regex);
  EXPECT_EQ(s.sources[4].regex->pattern, "re");
  EXPECT_EQ(s.sources[5].database, "db");
  EXPECT_EQ(s.sources[5].retention_policy, "rp");
  EXPECT_EQ(s.sources[5].regex->pattern, "re2");
  EXPECT_TRUE(s.sources[6].is_subquery);
}

TEST(influxql, fields_casts_aliases_and_arithmetic) {
  const auto q =
      parse_ok(R"(SELECT "k"::tag, "v"::field, v::float, mean(v) AS m, percentile("t", 95), )"
               R"(max(v) - min(v), a + b * c, -x, *, /^re/ FROM m)");
  const auto& s = only<select_statement>(q);
  ASSERT_EQ(s.fields.size(), 10U);
  EXPECT_EQ(s.fields[0].expr->type, data_type::tag);
  EXPECT_EQ(s.fields[1].expr->type, data_type::any_field);
  EXPECT_EQ(s.fields[2].expr->type, data_type::floating);
  EXPECT_EQ(s.fields[3].alias, "m");
  EXPECT_EQ(to_string(*s.fields[4].expr), "percentile(t, 95)");
  EXPECT_EQ(to_string(*s.fields[5].expr), "max(v) - min(v)");
  // * binds tighter than +.
  const expression& sum = *s.fields[6].expr;
  EXPECT_EQ(sum.op, binary_op::add);
  EXPECT_EQ(sum.children[1]->op, binary_op::multiply);
  EXPECT_EQ(to_string(*s.fields[7].expr), "-1 * x");
  EXPECT_EQ(s.fields[8].expr->kind, expression_kind::wildcard);
  EXPECT_EQ(s.fields[9].expr->kind, expression_kind::regex);
  EXPECT_FALSE(s.is_raw);
  EXPECT_TRUE(only<select_statement>(parse_ok("SELECT v, host FROM m")).is_raw);
}

TEST(influxql, literals_strings_and_identifiers) {
  const auto q = parse_ok(
      R"(SELECT "we\"ird" FROM m WHERE a = 'it\'s' AND b = 1.5 AND c = -3 AND d = true AND )"
      R"(e =~ /a\/b/ AND f > -5m AND g = 18446744073709551615)");
  const auto& s = only<select_statement>(q);
  EXPECT_EQ(s.fields[0].expr->text, "we\"ird");
  EXPECT_EQ(to_string(*s.condition),
            "a = 'it\\'s' AND b = 1.500 AND c = -3 AND d = true AND e =~ /a\\/b/ AND f > -5m AND "
            "g = 18446744073709551615");
  // The regex's \/ is a slash.
  const expression* node = s.condition.get();
  const expression* regex = nullptr;
  while (node->kind == expression_kind::binary && node->op == binary_op::logical_and) {
    const expression& right = *node->children[1];
    if (right.op == binary_op::regex_match) regex = right.children[1].get();
    node = node->children[0].get();
  }
  ASSERT_NE(regex, nullptr);
  EXPECT_EQ(regex->text, "a/b");
}

TEST(influxql, keywords_are_case_insensitive_and_comments_are_skipped) {
  const auto q = parse_ok(
      "select V from M where HOST = 'a' -- a comment\n group BY time(1m) /* another */ FILL(none)");
  const auto& s = only<select_statement>(q);
  EXPECT_EQ(s.fields[0].expr->text, "V");
  EXPECT_EQ(s.sources[0].name, "M");
  EXPECT_EQ(s.fill, fill_option::none);
}

TEST(influxql, fill_options) {
  const auto fill_of = [](const char* option) {
    const auto q =
        parse_ok(std::string("SELECT mean(v) FROM m GROUP BY time(1m) fill(") + option + ")");
    const auto& s = only<select_statement>(q);
    return std::make_tuple(s.fill, s.fill_value, s.is_fill_integer);
  };
  EXPECT_EQ(fill_of("null"), std::make_tuple(fill_option::null, 0.0, false));
  EXPECT_EQ(fill_of("none"), std::make_tuple(fill_option::none, 0.0, false));
  EXPECT_EQ(fill_of("previous"), std::make_tuple(fill_option::previous, 0.0, false));
  EXPECT_EQ(fill_of("linear"), std::make_tuple(fill_option::linear, 0.0, false));
  EXPECT_EQ(fill_of("0"), std::make_tuple(fill_option::number, 0.0, true));
  EXPECT_EQ(fill_of("-1.5"), std::make_tuple(fill_option::number, -1.5, false));
}

TEST(influxql, several_statements) {
  const auto q = parse_ok("SHOW DATABASES;; SHOW MEASUREMENTS ; SELECT v FROM m;");
  ASSERT_EQ(q.statements.size(), 3U);
  EXPECT_TRUE(std::holds_alternative<select_statement>(q.statements[2]));
  EXPECT_TRUE(parse_ok("").statements.empty());
  EXPECT_TRUE(parse_ok(" ; ").statements.empty());
}

// ---- errors

struct error_case {
  const char* query;
  const char* message;  // after "error parsing query: "
};

// Verified against InfluxDB 1.6.7.
constexpr error_case verified_errors[] = {
    {"SELECT", "found EOF, expected identifier, string, number, bool at line 1, char 8"},
    {R"(SELECT "v")", "found EOF, expected FROM at line 1, char 11"},
    {"SELECT v", "found EOF, expected FROM at line 1, char 10"},
    {"SELECT 'a'", "found EOF, expected FROM at line 1, char 11"},
    {"SELECT 12", "found EOF, expected FROM at line 1, char 10"},
    {"SELECT 12.5", "found EOF, expected FROM at line 1, char 12"},
    {"SELECT 10s", "found EOF, expected FROM at line 1, char 11"},
    {"SELECT mean(value) FROM", "found EOF, expected identifier at line 1, char 25"},
    {R"(SELECT "v" FROM)", "found EOF, expected identifier at line 1, char 17"},
    {"FOO",
     "found FOO, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, "
     "KILL at line 1, char 1"},
    {"SHOW",
     "found EOF, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, "
     "MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS at "
     "line 1, char 6"},
    {"SHOW FOO",
     "found FOO, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, "
     "MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS at "
     "line 1, char 6"},
    {"CREATE",
     "found EOF, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION at line 1, char 8"},
    {"DROP",
     "found EOF, expected CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, "
     "SUBSCRIPTION, USER at line 1, char 6"},
    {"ALTER", "found EOF, expected RETENTION at line 1, char 7"},
    {"SELECT v FROM m foo", "found foo, expected ; at line 1, char 17"},
    {"SELECT v FROM m WHERE",
     "found EOF, expected identifier, string, number, bool at line 1, char 23"},
    {"SELECT * FROM m WHERE host =",
     "found EOF, expected identifier, string, number, bool at line 1, char 29"},
    {"SELECT * FROM m WHERE host = 'a",
     "found a, expected identifier, string, number, bool at line 1, char 29"},
    {"SELECT * FROM m GROUP time(1m)", "found time, expected BY at line 1, char 23"},
    {"SELECT v = 1 FROM m",
     "invalid operator = in SELECT clause at line 1, char 8; operator is intended for WHERE "
     "clause"},
    {"SELECT v FROM m ORDER BY v", "only ORDER BY time supported at this time"},
    {"SELECT mean(v) FROM m fill(foo)", "expected number argument in fill()"},
    {"SELECT v FROM m GROUP BY time(1m) fill(1, 2)",
     "fill requires an argument, e.g.: 0, null, none, previous, linear"},
    {"SELECT v FROM m tz(1)", "expected string argument in tz()"},
    {"SELECT v FROM m tz", "tz must be a function call"},
    {"SHOW TAG VALUES FROM m", "found EOF, expected WITH at line 1, char 24"},
    {"SHOW TAG VALUES FROM m WITH KEY", "found EOF, expected IN, =, =~ at line 1, char 33"},
    {"SHOW TAG VALUES WITH KEY =", "found EOF, expected identifier at line 1, char 27"},
    {"SHOW TAG VALUES WITH KEY IN (a", "found EOF, expected ) at line 1, char 32"},
    {"SHOW TAG VALUES WITH KEY =~ 5", "found 5, expected regex at line 1, char 29"},
    {"SELECT v FROM a.b.c.d", R"(too many segments in "a"."b"."c".d at line 1, char 1)"},
    {"SELECT 10x FROM m", "invalid duration"},
    {"CREATE RETENTION POLICY r ON d DURATION 1h REPLICATION 0",
     "invalid value 0: must be 1 <= n <= 2147483647 at line 1, char 56"},
    {"CREATE RETENTION POLICY r ON d DURATION", "found EOF, expected duration at line 1, char 41"},
    {"CREATE RETENTION POLICY r ON d DURATION 1h REPLICATION 1 SHARD DURATION INF",
     "invalid duration INF for shard duration at line 1, char 73"},
    {"SELECT v FROM m LIMIT x", "found x, expected integer at line 1, char 23"},
    {"SELECT v FROM m LIMIT", "found EOF, expected integer at line 1, char 23"},
    {"SELECT v FROM m SLIMIT 1 LIMIT 2", "found LIMIT, expected ; at line 1, char 26"},
    {"SELECT v FROM m WHERE t =~ 5", "found 5, expected regex at line 1, char 28"},
    {"SELECT v FROM m WHERE t =~ /x", "bad regex:  at line 1, char 27"},
    {"SELECT v FROM /a(/", "error parsing regexp: missing closing ): `a(` at line 1, char 14"},
    {"SELECT v FROM m WHERE (t = 1", "found EOF, expected ) at line 1, char 29"},
    {"SELECT mean(v", "found EOF, expected ) at line 1, char 15"},
    {"SELECT mean(v,", "found EOF, expected identifier, string, number, bool at line 1, char 16"},
    {"SELECT v FROM m GROUP BY",
     "found EOF, expected identifier, string, number, bool at line 1, char 26"},
    {"SELECT v FROM m GROUP BY time(",
     "found EOF, expected identifier, string, number, bool at line 1, char 32"},
    {"SELECT v FROM m tz(",
     "found EOF, expected identifier, string, number, bool at line 1, char 21"},
    {"SELECT v FROM m fill(",
     "found EOF, expected identifier, string, number, bool at line 1, char 23"},
    {"SELECT v AS", "found EOF, expected identifier at line 1, char 13"},
    {"SELECT v AS select FROM m", "found SELECT, expected identifier at line 1, char 13"},
    {"SELECT v FROM m; SELECT",
     "found EOF, expected identifier, string, number, bool at line 1, char 25"},
    {"SELECT v FROM m /* c */ WHERE", "found  , expected regex at line 1, char 16"},
    {"SELECT v FROM m\nWHERE",
     "found EOF, expected identifier, string, number, bool at line 2, char 7"},
    {"SHOW MEASUREMENTS ON *", "found *, expected identifier at line 1, char 22"},
    {"SHOW RETENTION POLICIES ON", "found EOF, expected identifier at line 1, char 28"},
    {"SHOW FIELD KEYS ON", "found EOF, expected identifier at line 1, char 20"},
    {"SHOW MEASUREMENT", "found EOF, expected EXACT, CARDINALITY at line 1, char 18"},
    {"SHOW TAG", "found EOF, expected KEY, KEYS, VALUES at line 1, char 10"},
    {"CREATE DATABASE", "found EOF, expected identifier at line 1, char 17"},
    {"DROP DATABASE", "found EOF, expected identifier at line 1, char 15"},
    {"CREATE DATABASE x WITH FOO",
     "found FOO, expected DURATION, NAME, REPLICATION, SHARD at line 1, char 24"},
    {"ALTER RETENTION POLICY r ON d",
     "found EOF, expected DURATION, REPLICATION, SHARD, DEFAULT at line 1, char 31"},
    {"ALTER RETENTION POLICY r ON d DURATION 1h DURATION 2h",
     "found duplicate DURATION option at line 1, char 43"},
    {"SELECT π FROM m", "found π, expected identifier, string, number, bool at line 1, char 8"},
    {"SELECT $x FROM m", "missing parameter: x"},
    {"KILL QUERY", "found EOF, expected integer at line 1, char 12"},
    {"DROP SERIES", "found EOF, expected FROM, WHERE at line 1, char 13"},
    {"SELECT v::foo FROM m",
     "found foo, expected float, integer, unsigned, string, boolean, field, tag at line 1, char "
     "11"},
    {R"(SELECT v FROM "m)", "found m, expected identifier at line 1, char 14"},
    {R"(SELECT "v FROM m)",
     "found v FROM m, expected identifier, string, number, bool at line 1, char 7"},
    {"SELECT v FROM m WHERE a = 1.5.5", "found .5, expected ; at line 1, char 30"},
    {"SELECT v FROM m WHERE a = .5x", "found x, expected ; at line 1, char 29"},
    {"SELECT 99999999999999999999 FROM m", "unable to parse integer at line 1, char 8"},
    {"SELECT v FROM m WHERE a = -18446744073709551615",
     "constant -18446744073709551615 underflows int64"},
    {R"(SELECT v FROM m WHERE a = 'x\q')",
     R"(found \q, expected identifier, string, number, bool at line 1, char 30)"},
    {R"(SELECT v FROM "m\q")", R"(found \q, expected identifier at line 1, char 18)"},
    {"SELECT v FROM m WHERE t =~ /a)/",
     "error parsing regexp: unexpected ): `a)` at line 1, char 27"},
    {"SELECT v FROM m WHERE t =~ /a{2000}/",
     "error parsing regexp: invalid repeat count: `{2000}` at line 1, char 27"},
    {"SELECT v FROM m WHERE a = 5 b", "found b, expected ; at line 1, char 29"},
    {"GRANT READ TO u", "found TO, expected ON at line 1, char 12"},
    {"DELETE", "found EOF, expected FROM, WHERE at line 1, char 8"},
    {"DELETE FROM db.rp.m", "retention policy not supported at line 1, char 1"},
    {"SELECT v FROM m tz('Nowhere/City')", "unable to find time zone Nowhere/City"},
    {"SELECT --v FROM m",
     "found EOF, expected identifier, string, number, bool at line 1, char 19"},
};

TEST(influxql, errors_read_as_influxdb_writes_them) {
  for (const auto& c : verified_errors)
    EXPECT_EQ(error_of(c.query), std::string("error parsing query: ") + c.message) << c.query;
}

// Best-effort: parser.go's wording, not checked against a server.
TEST(influxql, other_errors_follow_the_parser) {
  EXPECT_EQ(error_of("SELECT v FROM m ORDER BY time, v"),
            "error parsing query: only ORDER BY time supported at this time");
  EXPECT_EQ(error_of("DROP SERIES FROM db.autogen.m"),
            "error parsing query: retention policy not supported at line 1, char 1");
  EXPECT_EQ(
      error_of("SELECT v FROM m WHERE t =~ /[a/"),
      "error parsing query: error parsing regexp: missing closing ]: `[a` at line 1, char 27");
  // Go's refusals that keep std::regex out of exponential matching and overflowing counts.
  EXPECT_EQ(error_of("SELECT v FROM m WHERE t =~ /e**/"),
            "error parsing query: error parsing regexp: invalid nested repetition operator: `**` "
            "at line 1, char 27");
  EXPECT_EQ(error_of("SELECT v FROM m WHERE t =~ /a{2}*?b/"),
            "error parsing query: error parsing regexp: invalid nested repetition operator: "
            "`{2}*?` at line 1, char 27");
  EXPECT_EQ(error_of("SELECT v FROM m WHERE t =~ /(a)\\4404444444444444444/"),
            "error parsing query: error parsing regexp: invalid escape sequence: `\\4` at line 1, "
            "char 27");
  EXPECT_FALSE(std::holds_alternative<parse_error>(
      parse_query("SELECT v FROM m WHERE t =~ /a*?b+?c??d{1,2}?e{2}/")));
  // std::regex's own limits, which RE2 does not have in the same place.
  EXPECT_NE(error_of("SELECT v FROM m WHERE t =~ /((a{999}){999}){999}/").find("too large"),
            std::string::npos);
}

TEST(influxql, hostile_nesting_is_refused_not_recursed) {
  const std::string parens =
      "SELECT " + std::string(2000, '(') + "v" + std::string(2000, ')') + " FROM m";
  EXPECT_NE(error_of(parens).find("expression nests too deeply"), std::string::npos);
  std::string chain = "SELECT v FROM m WHERE a = 1";
  for (int i = 0; i < 2000; ++i) chain += " OR a = 1";
  EXPECT_NE(error_of(chain).find("expression nests too deeply"), std::string::npos);
  std::string negations = "SELECT ";
  for (int i = 0; i < 2000; ++i) negations += "-(";
  negations += "v" + std::string(2000, ')') + " FROM m";
  EXPECT_NE(error_of(negations).find("nests too deeply"), std::string::npos);
  std::string subqueries = "SELECT v FROM ";
  for (int i = 0; i < 1000; ++i) subqueries += "(SELECT v FROM ";
  EXPECT_NE(error_of(subqueries).find("too deeply"), std::string::npos);
  // Within the bound, a deep expression still parses.
  EXPECT_EQ(parse_ok("SELECT " + std::string(50, '(') + "v" + std::string(50, ')') + " FROM m")
                .statements.size(),
            1U);
}

// ---- durations and times

TEST(influxql, durations_read_as_influxql_reads_them) {
  EXPECT_EQ(parse_duration("1h30m"), 5400 * second_ns);
  EXPECT_EQ(parse_duration("10s"), 10 * second_ns);
  EXPECT_EQ(parse_duration("1w"), 7 * 86400 * second_ns);
  EXPECT_EQ(parse_duration("2d"), 2 * 86400 * second_ns);
  EXPECT_EQ(parse_duration("500ms"), 500'000'000);
  EXPECT_EQ(parse_duration("3u"), 3000);
  EXPECT_EQ(parse_duration("3µ"), 3000);
  EXPECT_EQ(parse_duration("7ns"), 7);
  EXPECT_EQ(parse_duration("-5m"), -300 * second_ns);
  for (const char* bad : {"", "1", "h", "1x", "1h30", "1.5h", "ms", "1n", "99999999999999999999s",
                          "10000000000000000h"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(influxql, durations_print_as_go_prints_them) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(3600 * second_ns), "1h0m0s");
  EXPECT_EQ(format_duration(168 * 3600 * second_ns), "168h0m0s");
  EXPECT_EQ(format_duration(90 * second_ns), "1m30s");
  EXPECT_EQ(format_duration(1'500'000'000), "1.5s");
  EXPECT_EQ(format_duration(500'000'000), "500ms");
  EXPECT_EQ(format_duration(1'500'000), "1.5ms");
  EXPECT_EQ(format_duration(1000), "1µs");
  EXPECT_EQ(format_duration(1), "1ns");
  EXPECT_EQ(format_duration(-2 * 3600 * second_ns), "-2h0m0s");
  EXPECT_EQ(format_duration_literal(0), "0s");
  EXPECT_EQ(format_duration_literal(7 * 86400 * second_ns), "1w");
  EXPECT_EQ(format_duration_literal(2 * 86400 * second_ns), "2d");
  EXPECT_EQ(format_duration_literal(90 * 60 * second_ns), "90m");
  EXPECT_EQ(format_duration_literal(1'500'000'000), "1500ms");
  EXPECT_EQ(format_duration_literal(3000), "3u");
  EXPECT_EQ(format_duration_literal(7), "7ns");
}

TEST(influxql, time_literals) {
  constexpr std::int64_t new_year = 1672531200 * second_ns;  // 2023-01-01T00:00:00Z
  EXPECT_EQ(parse_time("2023-01-01T00:00:00Z"), new_year);
  EXPECT_EQ(parse_time("2023-01-01T00:00:00.5Z"), new_year + 500'000'000);
  EXPECT_EQ(parse_time("2023-01-01T02:00:00+02:00"), new_year);
  EXPECT_EQ(parse_time("2022-12-31T19:00:00-05:00"), new_year);
  EXPECT_EQ(parse_time("2023-01-01"), new_year);
  EXPECT_EQ(parse_time("2023-01-01 00:00:00"), new_year);
  EXPECT_EQ(parse_time("2023-01-01 00:00:00.123456789"), new_year + 123'456'789);
  EXPECT_EQ(parse_time("1970-01-01T00:01:50Z"), 110 * second_ns);
  EXPECT_EQ(parse_time("2024-02-29"), 1709164800 * second_ns);
  // Verified: RFC 3339 needs its offset.
  EXPECT_FALSE(parse_time("2023-01-01T00:00:00"));
  for (const char* bad : {"2023-13-01", "2023-02-29", "2023-01-01T25:00:00Z", "today",
                          "2023-01-01 00:00", "2023-01-01Z"})
    EXPECT_FALSE(parse_time(bad)) << bad;
  EXPECT_TRUE(is_time_string("2023-01-01x"));
  EXPECT_FALSE(is_time_string("today"));
  if (const auto seoul = time_zone::find("Asia/Seoul")) {
    EXPECT_EQ(parse_time("2023-01-01", &*seoul), new_year - 9 * 3600 * second_ns);
    EXPECT_EQ(parse_time("2023-01-01T00:00:00Z", &*seoul), new_year);  // an offset wins
  }
}

TEST(influxql, time_zones) {
  ASSERT_TRUE(time_zone::find("UTC"));
  EXPECT_EQ(time_zone::find("UTC")->offset_at(1700000000), 0);
  EXPECT_FALSE(time_zone::find("Nowhere/City"));
  EXPECT_FALSE(time_zone::find("../../etc/passwd"));
  EXPECT_FALSE(time_zone::find("/etc/localtime"));
  const auto paris = time_zone::find("Europe/Paris");
  if (!paris) GTEST_SKIP() << "no tz database";
  EXPECT_EQ(paris->offset_at(1698539400), 7200);  // 2023-10-29T00:30Z, summer time
  EXPECT_EQ(paris->offset_at(1698548400), 3600);  // 03:00Z, after the change
  // 2023-10-29 00:00 local is still summer time.
  EXPECT_EQ(paris->offset_for_local(1698537600), 7200);
}

}  // namespace
}  // namespace nimbus::tsdb::influxql
