// Flux (reference/flux.md): the parser's language and its errors (texts and positions), the
// compiler's constants, options and extern variables, row expressions, the annotated CSV
// encoder (the worked example of §4 byte for byte, empty results, blocks, quoting), and
// execution over a real store: the tutorial's two queries (§5.1 of the seed), aggregateWindow
// with and without createEmpty, window, pivot, group, sort and limit, regex filters, absolute
// ranges, map, the limits and the errors clients see (unknown bucket, missing range, unknown
// function).
#include "tsdb/flux.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "core/clock.hpp"
#include "tsdb/flux_exec.hpp"
#include "tsdb/tests/temporary_store.hpp"

namespace nimbus::tsdb::flux {
namespace {

constexpr std::int64_t second_ns = 1'000'000'000;
constexpr std::int64_t hour_ns = 3600 * second_ns;
// The worked example's now (reference/flux.md §4): 2024-05-01T12:00:00.123456789Z.
constexpr std::int64_t example_now_ns = 1'714'564'800'123'456'789;

csv_dialect annotated() {
  csv_dialect dialect;
  dialect.annotations = {annotation::datatype, annotation::group, annotation::default_value};
  return dialect;
}

std::int64_t time_of(std::string_view text) {
  const auto ns = parse_time(text);
  EXPECT_TRUE(ns.has_value()) << text;
  return ns.value_or(0);
}

compile_options options_at(std::int64_t now_ns) {
  compile_options options;
  options.now_ns = now_ns;
  return options;
}

program compile_ok(std::string_view text, compile_options options = options_at(example_now_ns)) {
  auto compiled = parse_program(text, options);
  if (const auto* failure = std::get_if<error>(&compiled)) {
    ADD_FAILURE() << text << " => " << failure->message;
    return {};
  }
  return std::move(std::get<program>(compiled));
}

std::string error_of(std::string_view text, compile_options options = options_at(example_now_ns)) {
  auto compiled = parse_program(text, options);
  if (const auto* failure = std::get_if<error>(&compiled)) return failure->message;
  ADD_FAILURE() << text << " compiled";
  return {};
}

bool starts_with(const std::string& text, std::string_view prefix) {
  return text.rfind(prefix, 0) == 0;
}

// ---- values

TEST(flux_values, durations) {
  EXPECT_EQ(parse_duration("1h30m"), (duration{0, 90 * 60 * second_ns}));
  EXPECT_EQ(parse_duration("1mo2w"), (duration{1, 14 * 24 * hour_ns}));
  EXPECT_EQ(parse_duration("1y"), (duration{12, 0}));
  EXPECT_EQ(parse_duration("5\xC2\xB5s"), (duration{0, 5000}));
  EXPECT_EQ(parse_duration("5us"), (duration{0, 5000}));
  EXPECT_EQ(parse_duration("1d12h"), (duration{0, 36 * hour_ns}));
  EXPECT_EQ(parse_duration("250ms3ns"), (duration{0, 250'000'003}));
  EXPECT_FALSE(parse_duration("5"));
  EXPECT_FALSE(parse_duration("h"));
  EXPECT_FALSE(parse_duration("5x"));
  EXPECT_FALSE(parse_duration("99999999999999999999h"));
}

TEST(flux_values, calendar_arithmetic) {
  // A month from January 31 is the last day of February (2024 is a leap year).
  EXPECT_EQ(add_duration(time_of("2024-01-31T10:00:00Z"), duration{1, 0}),
            time_of("2024-02-29T10:00:00Z"));
  EXPECT_EQ(add_duration(time_of("2024-03-31T10:00:00Z"), duration{1, 0}, -1),
            time_of("2024-02-29T10:00:00Z"));
  EXPECT_EQ(add_duration(time_of("2024-05-01T00:00:00Z"), duration{12, hour_ns}),
            time_of("2025-05-01T01:00:00Z"));
  EXPECT_EQ(add_duration(0, duration{0, -hour_ns}), -hour_ns);
  EXPECT_FALSE(add_duration(std::numeric_limits<std::int64_t>::max(), duration{0, 1}));
}

TEST(flux_values, times) {
  EXPECT_EQ(parse_time("2021-05-22"), 1'621'641'600 * second_ns);
  EXPECT_EQ(parse_time("2021-05-22T23:30:00Z"), 1'621'726'200 * second_ns);
  EXPECT_EQ(parse_time("2021-05-22T23:30:00.5Z"), 1'621'726'200 * second_ns + 500'000'000);
  EXPECT_EQ(parse_time("2021-05-23T01:30:00+02:00"), 1'621'726'200 * second_ns);
  EXPECT_EQ(parse_time("2021-05-22T18:30:00-05:00"), 1'621'726'200 * second_ns);
  EXPECT_FALSE(parse_time("2021-05-22T23:30:00"));  // Flux wants the offset
  EXPECT_FALSE(parse_time("2021-13-01"));
  EXPECT_FALSE(parse_time("2021-02-29"));
  EXPECT_FALSE(parse_time("2021-05-22T24:00:00Z"));
  EXPECT_FALSE(parse_time("2021-05-22T23:30:00.1234567891Z"));

  std::string out;
  append_rfc3339(out, 0);
  EXPECT_EQ(out, "1970-01-01T00:00:00Z");
  out.clear();
  append_rfc3339(out, 500'000'000);
  EXPECT_EQ(out, "1970-01-01T00:00:00.5Z");
  out.clear();
  append_rfc3339(out, example_now_ns);
  EXPECT_EQ(out, "2024-05-01T12:00:00.123456789Z");
  out.clear();
  append_rfc3339(out, -1);
  EXPECT_EQ(out, "1969-12-31T23:59:59.999999999Z");
}

TEST(flux_values, floats_as_go_formats_them) {
  const auto text = [](double v) {
    std::string out;
    append_float(out, v);
    return out;
  };
  EXPECT_EQ(text(45.0), "45");
  EXPECT_EQ(text(46.5), "46.5");
  EXPECT_EQ(text(0.1), "0.1");
  EXPECT_EQ(text(1e21), "1000000000000000000000");
  EXPECT_EQ(text(1.5e-7), "0.00000015");
  EXPECT_EQ(text(-0.0), "-0");
  EXPECT_EQ(text(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(text(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(text(-std::numeric_limits<double>::infinity()), "-Inf");
}

TEST(flux_values, conversions) {
  EXPECT_EQ(std::get<scalar>(convert(conversion::to_float, scalar{std::int64_t{3}})), scalar{3.0});
  EXPECT_EQ(std::get<scalar>(convert(conversion::to_int, scalar{-2.7})), scalar{std::int64_t{-2}});
  EXPECT_EQ(std::get<scalar>(convert(conversion::to_string, scalar{1.5})),
            scalar{std::string("1.5")});
  EXPECT_EQ(std::get<scalar>(convert(conversion::to_time, scalar{std::string("2021-05-22")})),
            scalar{timestamp{1'621'641'600 * second_ns}});
  EXPECT_EQ(std::get<scalar>(convert(conversion::to_float, scalar{})), scalar{});
  EXPECT_EQ(std::get<std::string>(convert(conversion::to_float, scalar{std::string("x")})),
            "cannot convert string \"x\" to float");
}

// ---- parser

TEST(flux_parser, precedence) {
  auto parsed = parse("x = a or b and not c == 1 + 2 * 3");
  ASSERT_TRUE(std::holds_alternative<file>(parsed)) << std::get<error>(parsed).message;
  const auto& body = std::get<file>(parsed).body;
  ASSERT_EQ(body.size(), 1U);
  EXPECT_EQ(body[0].kind, statement_kind::variable);
  EXPECT_EQ(body[0].name, "x");
  const node& top = *body[0].value;
  ASSERT_EQ(top.kind, node_kind::logical);
  EXPECT_EQ(top.op, operator_kind::logical_or);
  EXPECT_EQ(top.children[0]->text, "a");
  const node& conjunction = *top.children[1];
  EXPECT_EQ(conjunction.op, operator_kind::logical_and);
  const node& negation = *conjunction.children[1];
  ASSERT_EQ(negation.kind, node_kind::unary);
  EXPECT_EQ(negation.op, operator_kind::logical_not);
  const node& equality = *negation.children[0];
  EXPECT_EQ(equality.op, operator_kind::equal);
  const node& sum = *equality.children[1];
  EXPECT_EQ(sum.op, operator_kind::add);
  EXPECT_EQ(sum.children[1]->op, operator_kind::multiply);
  EXPECT_EQ(top.where, (location{{1, 5}, {1, 34}}));
}

TEST(flux_parser, regex_where_an_operand_starts_division_elsewhere) {
  auto parsed = parse("a = 6 / 3 / 2\nf = (r) => r.x =~ /a\\/b[0-9]+/ and r.y !~ /c/");
  ASSERT_TRUE(std::holds_alternative<file>(parsed)) << std::get<error>(parsed).message;
  const auto& body = std::get<file>(parsed).body;
  ASSERT_EQ(body.size(), 2U);
  EXPECT_EQ(body[0].value->op, operator_kind::divide);
  EXPECT_EQ(body[0].value->children[0]->op, operator_kind::divide);
  const node& fn = *body[1].value;
  ASSERT_EQ(fn.kind, node_kind::function);
  ASSERT_EQ(fn.properties.size(), 1U);
  EXPECT_EQ(fn.properties[0].key, "r");
  const node& match = *fn.children[0]->children[0];
  EXPECT_EQ(match.op, operator_kind::regex_match);
  EXPECT_EQ(match.children[1]->kind, node_kind::regex);
  EXPECT_EQ(match.children[1]->text, "a/b[0-9]+");
}

TEST(flux_parser, literals) {
  auto parsed = parse(
      "s = \"a\\tb\\\"c\\\\ \\x41\"  // a comment\n"
      "d = -1h30m\n"
      "t = 2021-05-22T23:30:00Z\n"
      "day = 2021-05-22\n"
      "f = 2.5\n"
      "a = [\"x\", \"y\",]\n"
      "rec = {a: 1, \"b c\": 2}\n"
      "m = (r) => ({r with _value: r[\"v\"] * 2.0})\n"
      "g = (r) => { return r._value > 1 }\n");
  ASSERT_TRUE(std::holds_alternative<file>(parsed)) << std::get<error>(parsed).message;
  const auto& body = std::get<file>(parsed).body;
  ASSERT_EQ(body.size(), 9U);
  EXPECT_EQ(body[0].value->text, "a\tb\"c\\ A");
  EXPECT_EQ(body[1].value->kind, node_kind::unary);
  EXPECT_EQ(body[1].value->children[0]->span, (duration{0, 90 * 60 * second_ns}));
  EXPECT_EQ(body[2].value->integer, 1'621'726'200 * second_ns);
  EXPECT_EQ(body[3].value->integer, 1'621'641'600 * second_ns);
  EXPECT_EQ(body[4].value->number, 2.5);
  EXPECT_EQ(body[5].value->children.size(), 2U);
  ASSERT_EQ(body[6].value->properties.size(), 2U);
  EXPECT_EQ(body[6].value->properties[1].key, "b c");
  const node& with = *body[7].value->children[0];
  EXPECT_TRUE(with.is_with);
  EXPECT_EQ(with.children[0]->text, "r");
  EXPECT_EQ(with.properties[0].value->children[0]->kind, node_kind::member);
  EXPECT_EQ(with.properties[0].value->children[0]->text, "v");
  EXPECT_TRUE(body[8].value->is_block);
  EXPECT_EQ(body[8].value->block.at(0).kind, statement_kind::return_value);
}

TEST(flux_parser, errors_with_flux_positions) {
  EXPECT_EQ(error_of("from(bucket: \"b\") |> range(start: -1h"),
            "compilation failed: error @1:22-1:38: expected RPAREN, got EOF");
  EXPECT_EQ(error_of("from(bucket \"b\")"),
            "compilation failed: error @1:1-1:16: expected COLON, got STRING (\"b\") at 1:13");
  EXPECT_EQ(error_of(")"), "compilation failed: error @1:1-1:2: invalid statement: )");
  EXPECT_EQ(error_of("from(bucket: \"b"),
            "compilation failed: error @1:14-1:16: unterminated string literal");
  EXPECT_EQ(error_of("a = 01"),
            "compilation failed: error @1:5-1:7: invalid integer literal \"01\": nonzero value "
            "cannot start with 0");
  EXPECT_EQ(error_of("a = 5 |> b"),
            "compilation failed: error @1:10-1:11: pipe destination must be a function call");
  EXPECT_EQ(error_of("a = \"x\\q\""),
            "compilation failed: error @1:5-1:9: invalid escape sequence \\q");
  EXPECT_EQ(error_of("a = 2021-05-22T23:30:00"),
            "compilation failed: error @1:5-1:24: invalid date time literal "
            "\"2021-05-22T23:30:00\"");
  EXPECT_EQ(error_of("a = [\"k\": 1]"),
            "compilation failed: error @1:9-1:10: dictionary literals are not supported");
}

TEST(flux_parser, bounds_hostile_input) {
  // Nesting, left-deep operator chains and long pipelines are refused, never recursed into.
  const std::string parens = "x = " + std::string(5000, '(') + "1" + std::string(5000, ')');
  EXPECT_NE(error_of(parens).find("nests too deeply"), std::string::npos);
  std::string chain = "x = 1";
  for (int i = 0; i < 5000; ++i) chain += "+1";
  EXPECT_NE(error_of(chain).find("nests too deeply"), std::string::npos);
  const std::string negations = "x = " + std::string(5000, '-') + "1";
  EXPECT_NE(error_of(negations).find("nests too deeply"), std::string::npos);
  std::string long_pipeline = "a = from(bucket: \"b\") |> range(start: -1h)\n";
  for (int i = 0; i < 1100; ++i) long_pipeline += "a = a |> limit(n: 1)\n";
  long_pipeline += "a\n";
  EXPECT_NE(error_of(long_pipeline).find("pipeline too long"), std::string::npos);

  parse_limits limits;
  limits.max_text_bytes = 10;
  auto parsed = parse("x = 12345678", limits);
  ASSERT_TRUE(std::holds_alternative<error>(parsed));
  EXPECT_EQ(std::get<error>(parsed).message,
            "compilation failed: query too large (12 bytes, at most 10)");
}

// ---- compiler

TEST(flux_compiler, tutorial_queries) {
  // §5.1's query_recent and get_statistics, as the f-strings render them.
  const program recent = compile_ok(R"(
        from(bucket: "nimbus")
            |> range(start: -24h)
            |> filter(fn: (r) => r["device_id"] == "pi-001")
            |> filter(fn: (r) => r["_measurement"] == "sensor_reading")
        )");
  ASSERT_EQ(recent.results.size(), 1U);
  EXPECT_EQ(recent.results[0].name, "_result");
  const pipeline& source = recent.results[0].source;
  EXPECT_EQ(source.bucket, "nimbus");
  ASSERT_EQ(source.operations.size(), 3U);
  const auto& range = std::get<range_operation>(source.operations[0].detail);
  EXPECT_EQ(range.start_ns, example_now_ns - 24 * hour_ns);
  EXPECT_EQ(range.stop_ns, example_now_ns);
  const auto& filter = std::get<filter_operation>(source.operations[1].detail);
  EXPECT_EQ(filter.predicate.op, row_op::equal);
  EXPECT_EQ(filter.predicate.operands[0].op, row_op::column);
  EXPECT_EQ(filter.predicate.operands[0].column, "device_id");
  EXPECT_EQ(filter.predicate.operands[1].literal, scalar{std::string("pi-001")});

  const program statistics = compile_ok(R"(
        from(bucket: "nimbus")
            |> range(start: -24h)
            |> filter(fn: (r) => r["device_id"] == "pi-001")
            |> filter(fn: (r) => r["_field"] == "temperature")
            |> mean()
        )");
  ASSERT_EQ(statistics.results.size(), 1U);
  const auto& mean =
      std::get<aggregate_operation>(statistics.results[0].source.operations[3].detail);
  EXPECT_EQ(mean.kind, aggregate_kind::mean);
  EXPECT_EQ(mean.column, "_value");
}

TEST(flux_compiler, errors) {
  EXPECT_EQ(error_of("from(bucket: \"b\")\n  |> range(start: -1h)\n  |> foo()"),
            "compilation failed: error @3:6-3:9: undefined identifier foo");
  EXPECT_EQ(error_of("from(bucket: \"b\") |> range(start: -1h) |> filter(fn: (r) => r._value > y)"),
            "compilation failed: error @1:72-1:73: undefined identifier y");
  EXPECT_TRUE(starts_with(error_of("from(bucket: \"b\") |> range(start: -1h) |> derivative()"),
                          "compilation failed: error @1:43-1:53: unsupported function "
                          "derivative: Nimbus runs from, range"));
  EXPECT_EQ(error_of("from(bucket: \"b\") |> range(start: -1h) |> mean(colunm: \"x\")"),
            "compilation failed: error @1:48-1:54: found unexpected argument colunm");
  EXPECT_EQ(error_of("from(bucket: \"b\") |> range()"),
            "compilation failed: error @1:22-1:29: missing required argument start");
  EXPECT_EQ(error_of("from(bucket: \"b\") |> range(start: \"yesterday\")"),
            "compilation failed: error @1:35-1:46: expected time but found string (argument "
            "start)");
  EXPECT_TRUE(starts_with(
      error_of("from(bucket: \"b\") |> range(start: -1h) |> filter(fn: (r) => r.host =~ /a(/)"),
      "compilation failed: error @1:71-1:75: regex parse error: "));
  EXPECT_TRUE(starts_with(error_of("import \"strings\"\nfrom(bucket: \"b\") |> range(start: -1h)"),
                          "compilation failed: error @1:1-1:17: import \"strings\" is not "
                          "supported"));
  EXPECT_EQ(error_of("from(bucket: \"b\") |> filter(fn: (r) => true)"),
            "cannot submit unbounded read to \"b\"; try bounding 'from' with a call to 'range'");
  EXPECT_TRUE(starts_with(error_of("x = 1"), "this Flux program produces no results"));
  EXPECT_EQ(error_of("from(bucket: \"b\") |> range(start: -1h)\n"
                     "from(bucket: \"b\") |> range(start: -2h)"),
            "found duplicate yield name \"_result\"");
  EXPECT_NE(error_of("from(bucket: \"b\") |> range(start: -1h) |> map(fn: (r) => ({_value: 1}))")
                .find("map(fn:) must return ({r with ...})"),
            std::string::npos);
  EXPECT_NE(error_of("from(bucket: \"b\") |> range(start: -1h) |> aggregateWindow(every: 1m, fn: "
                     "(column, tables=<-) => tables |> mean(column: column))")
                .find("aggregateWindow(fn:) must be mean"),
            std::string::npos);
  EXPECT_NE(error_of("option v = {a: 1}\nfrom(bucket: \"b\") |> range(start: v.timeRangeStart)")
                .find("record is missing label timeRangeStart"),
            std::string::npos);
}

TEST(flux_compiler, options_now_and_dashboard_variables) {
  const program p = compile_ok(
      "option v = {timeRangeStart: -1h, timeRangeStop: now(), windowPeriod: 10s}\n"
      "option now = () => 2021-05-22T23:30:00Z\n"
      "from(bucket: \"b\")\n"
      "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
      "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)\n"
      "  |> yield(name: \"mean\")");
  const std::int64_t now = 1'621'726'200 * second_ns;
  EXPECT_EQ(p.now_ns, now);
  ASSERT_EQ(p.results.size(), 1U);
  EXPECT_EQ(p.results[0].name, "mean");
  const auto& ops = p.results[0].source.operations;
  ASSERT_EQ(ops.size(), 2U);
  const auto& range = std::get<range_operation>(ops[0].detail);
  EXPECT_EQ(range.start_ns, now - hour_ns);
  EXPECT_EQ(range.stop_ns, now);
  const auto& window = std::get<aggregate_window_operation>(ops[1].detail);
  EXPECT_EQ(window.windows.every, (duration{0, 10 * second_ns}));
  EXPECT_EQ(window.windows.period, (duration{0, 10 * second_ns}));
  EXPECT_EQ(window.fn.kind, aggregate_kind::mean);
  EXPECT_FALSE(window.creates_empty);
}

TEST(flux_compiler, extern_variables_and_several_yields) {
  compile_options options = options_at(example_now_ns);
  options.externs.emplace_back("bucket", value::of(scalar{std::string("db/rp")}));
  options.externs.emplace_back("start", value::of(duration{0, -2 * hour_ns}));
  options.externs.emplace_back("device", value::of(scalar{std::string("pi-001")}));
  const program p = compile_ok(
      "data = from(bucket: bucket) |> range(start: start)\n"
      "  |> filter(fn: (r) => r.device_id == device and r._value >= 1.5)\n"
      "data |> max() |> yield(name: \"max\")\n"
      "data |> min() |> yield(name: \"min\")\n",
      options);
  ASSERT_EQ(p.results.size(), 2U);
  EXPECT_EQ(p.results[0].name, "max");
  EXPECT_EQ(p.results[1].name, "min");
  const pipeline& source = p.results[1].source;
  EXPECT_EQ(source.bucket, "db/rp");
  ASSERT_EQ(source.operations.size(), 3U);
  EXPECT_EQ(std::get<range_operation>(source.operations[0].detail).start_ns,
            example_now_ns - 2 * hour_ns);
  const auto& predicate = std::get<filter_operation>(source.operations[1].detail).predicate;
  EXPECT_EQ(predicate.op, row_op::logical_and);
  EXPECT_EQ(predicate.operands[0].operands[1].literal, scalar{std::string("pi-001")});
  EXPECT_EQ(std::get<aggregate_operation>(source.operations[2].detail).kind, aggregate_kind::min);
}

// A row for evaluate(): columns by name, some of them not known yet.
class test_row final : public row_view {
 public:
  std::map<std::string, scalar> values;
  std::set<std::string> unknown;
  const scalar* column(const std::string& label) const override {
    if (unknown.count(label)) return nullptr;
    const auto found = values.find(label);
    return found == values.end() ? &null_ : &found->second;
  }

 private:
  scalar null_;
};

row_expression predicate_of(std::string_view fn) {
  const program p =
      compile_ok("from(bucket: \"b\") |> range(start: -1h) |> filter(fn: " + std::string(fn) + ")");
  if (p.results.empty()) return {};
  return std::get<filter_operation>(p.results[0].source.operations[1].detail).predicate;
}

TEST(flux_compiler, row_expressions) {
  const row_expression e =
      predicate_of(R"((r) => r.host == "a" and (r._value > 2 or not exists r.region))");
  test_row row;
  row.values = {{"host", std::string("a")}, {"_value", 3.0}};
  EXPECT_EQ(evaluate(e, row).value, scalar{true});
  row.values["_value"] = std::int64_t{1};           // numbers of any kind compare
  EXPECT_EQ(evaluate(e, row).value, scalar{true});  // no region: not exists is true
  row.values["region"] = std::string("eu");
  EXPECT_EQ(evaluate(e, row).value, scalar{false});
  row.values.erase("host");  // a missing tag is null: == is null, and the row is not kept
  EXPECT_EQ(evaluate(e, row).value, scalar{false});

  // Planning a read: the tags are known, _value is not.
  test_row planning;
  planning.values = {{"host", std::string("b")}};
  planning.unknown = {"_value"};
  EXPECT_EQ(evaluate(e, planning).value, scalar{false});  // decided by the tag alone
  planning.values["host"] = std::string("a");
  planning.values["region"] = std::string("eu");  // so only _value can decide
  EXPECT_EQ(evaluate(e, planning).outcome, row_result::state::unknown);
  planning.values.erase("region");  // not exists r.region decides it, _value unknown or not
  EXPECT_EQ(evaluate(e, planning).value, scalar{true});

  const row_expression regex = predicate_of(R"((r) => r._field =~ /(?i)^TEMP/)");
  test_row field;
  field.values = {{"_field", std::string("temperature")}};
  EXPECT_EQ(evaluate(regex, field).value, scalar{true});

  // No implicit conversion in arithmetic, as Flux's type checker has it.
  const program p = compile_ok(
      "from(bucket: \"b\") |> range(start: -1h) |> map(fn: (r) => ({r with _value: r._value * "
      "2}))");
  ASSERT_EQ(p.results.size(), 1U);
  const auto& map = std::get<map_operation>(p.results[0].source.operations[1].detail);
  test_row number;
  number.values = {{"_value", 1.5}};
  const row_result failed = evaluate(map.assignments[0].second, number);
  EXPECT_EQ(failed.outcome, row_result::state::failed);
  EXPECT_EQ(failed.error, "compilation failed: error @1:75-1:87: float != int");
}

// ---- the CSV encoder

column key(std::string label, column_type type, scalar v) {
  column c;
  c.label = std::move(label);
  c.type = type;
  c.is_key = true;
  c.key_value = std::move(v);
  return c;
}

column values(std::string label, column_type type, std::vector<scalar> cells) {
  column c;
  c.label = std::move(label);
  c.type = type;
  c.values = std::move(cells);
  return c;
}

TEST(flux_csv, empty_results) {
  EXPECT_EQ(encode_csv({result{"_result", {}}}, annotated()), "\r\n");
  EXPECT_EQ(encode_csv({}, annotated()), "\r\n");
}

TEST(flux_csv, a_new_block_when_the_schema_changes) {
  table floats;
  floats.columns = {key("_field", column_type::string, std::string("a")),
                    values("_value", column_type::floating, {1.5, 2.0})};
  floats.rows = 2;
  table same_schema = floats;
  same_schema.columns[0].key_value = std::string("b");
  table integers;
  integers.columns = {key("_field", column_type::string, std::string("c")),
                      values("_value", column_type::integer, {std::int64_t{45}})};
  integers.rows = 1;
  EXPECT_EQ(encode_csv({result{"_result", {floats, same_schema, integers}}}, annotated()),
            "#datatype,string,long,string,double\r\n"
            "#group,false,false,true,false\r\n"
            "#default,_result,,,\r\n"
            ",result,table,_field,_value\r\n"
            ",,0,a,1.5\r\n"
            ",,0,a,2\r\n"
            ",,1,b,1.5\r\n"
            ",,1,b,2\r\n"
            "\r\n"
            "#datatype,string,long,string,long\r\n"
            "#group,false,false,true,false\r\n"
            "#default,_result,,,\r\n"
            ",result,table,_field,_value\r\n"
            ",,2,c,45\r\n"
            "\r\n");
}

TEST(flux_csv, empty_tables_carry_their_key_in_the_default_row) {
  table empty;
  empty.columns = {key("_start", column_type::time, timestamp{0}),
                   key("host", column_type::string, std::string("a")),
                   values("_value", column_type::integer, {})};
  table full = empty;
  full.columns[2].values = {std::int64_t{7}};
  full.rows = 1;
  EXPECT_EQ(encode_csv({result{"counts", {empty, full}}}, annotated()),
            "#datatype,string,long,dateTime:RFC3339,string,long\r\n"
            "#group,false,false,true,true,false\r\n"
            "#default,counts,0,1970-01-01T00:00:00Z,a,\r\n"
            ",result,table,_start,host,_value\r\n"
            "\r\n"
            "#datatype,string,long,dateTime:RFC3339,string,long\r\n"
            "#group,false,false,true,true,false\r\n"
            "#default,counts,,,,\r\n"
            ",result,table,_start,host,_value\r\n"
            ",,1,1970-01-01T00:00:00Z,a,7\r\n"
            "\r\n");
}

TEST(flux_csv, quoting_and_values) {
  table t;
  t.columns = {values("s", column_type::string,
                      {std::string("a,b"), std::string("say \"hi\""), std::string(" lead"),
                       std::string("line\nbreak"), std::string("\\."), std::string(""),
                       std::string("plain")}),
               values("b", column_type::boolean, {true, false, scalar{}, true, true, true, true}),
               values("u", column_type::unsigned_integer,
                      {std::uint64_t{18446744073709551615U}, std::uint64_t{0}, scalar{},
                       std::uint64_t{1}, std::uint64_t{1}, std::uint64_t{1}, std::uint64_t{1}})};
  t.rows = 7;
  csv_dialect bare;  // no annotations: each row names its result
  EXPECT_EQ(encode_csv({result{"_result", {t}}}, bare),
            ",result,table,s,b,u\r\n"
            ",_result,0,\"a,b\",true,18446744073709551615\r\n"
            ",_result,0,\"say \"\"hi\"\"\",false,0\r\n"
            ",_result,0,\" lead\",,\r\n"
            ",_result,0,\"line\nbreak\",true,1\r\n"
            ",_result,0,\"\\.\",true,1\r\n"
            ",_result,0,,true,1\r\n"
            ",_result,0,plain,true,1\r\n"
            "\r\n");
  csv_dialect semicolons;
  semicolons.delimiter = ';';
  semicolons.has_header = false;
  EXPECT_TRUE(starts_with(encode_csv({result{"r", {t}}}, semicolons),
                          ";r;0;a,b;true;18446744073709551615\r\n"
                          ";r;0;\"say \"\"hi\"\"\";false;0\r\n"));
}

TEST(flux_csv, several_results_restart_table_ids) {
  table t;
  t.columns = {values("_value", column_type::floating, {1.0})};
  t.rows = 1;
  EXPECT_EQ(encode_csv({result{"a", {t}}, result{"b", {t, t}}}, annotated()),
            "#datatype,string,long,double\r\n"
            "#group,false,false,false\r\n"
            "#default,a,,\r\n"
            ",result,table,_value\r\n"
            ",,0,1\r\n"
            "\r\n"
            "#datatype,string,long,double\r\n"
            "#group,false,false,false\r\n"
            "#default,b,,\r\n"
            ",result,table,_value\r\n"
            ",,0,1\r\n"
            ",,1,1\r\n"
            "\r\n");
}

// ---- execution over a real store

std::vector<scalar> cells(const table& t, std::string_view label) {
  std::vector<scalar> out;
  const auto index = t.find(label);
  if (!index) {
    ADD_FAILURE() << "no column " << label;
    return out;
  }
  for (std::size_t row = 0; row < t.rows; ++row) out.push_back(t.at(*index, row));
  return out;
}

std::vector<std::string> labels(const table& t) {
  std::vector<std::string> out;
  for (const auto& c : t.columns) out.push_back(c.label);
  return out;
}

class flux_exec_test : public ::testing::Test {
 protected:
  flux_exec_test() : store_(clock_) {}

  // The worked example's data (reference/flux.md §4).
  void write_example() {
    store_.write(
        "sensor_reading,device_id=pi-001 temperature=21.5,humidity=45.0 1714557600\n"
        "sensor_reading,device_id=pi-001 temperature=22.25,humidity=46.5 1714557660\n"
        "sensor_reading,device_id=pi-001 temperature=23,humidity=47.25 1714557720\n");
  }

  std::variant<std::vector<result>, error> run(std::string_view text,
                                               std::int64_t now = example_now_ns,
                                               execution_limits limits = {}) {
    auto compiled = parse_program(text, options_at(now));
    if (auto* failure = std::get_if<error>(&compiled)) return std::move(*failure);
    return execute(store_.get(), std::get<program>(compiled), limits);
  }

  std::vector<result> results_of(std::string_view text, std::int64_t now = example_now_ns) {
    auto outcome = run(text, now);
    if (const auto* failure = std::get_if<error>(&outcome)) {
      ADD_FAILURE() << text << " => " << failure->message;
      return {};
    }
    return std::move(std::get<std::vector<result>>(outcome));
  }

  // The one result's tables.
  std::vector<table> tables_of(std::string_view text, std::int64_t now = example_now_ns) {
    auto results = results_of(text, now);
    if (results.size() != 1) {
      ADD_FAILURE() << text << ": " << results.size() << " results";
      return {};
    }
    return std::move(results[0].tables);
  }

  std::string csv_of(std::string_view text, std::int64_t now = example_now_ns) {
    return encode_csv(results_of(text, now), annotated());
  }

  error error_running(std::string_view text, execution_limits limits = {}) {
    auto outcome = run(text, example_now_ns, limits);
    if (auto* failure = std::get_if<error>(&outcome)) return std::move(*failure);
    ADD_FAILURE() << text << " ran";
    return {};
  }

  core::manual_clock clock_;
  testing::temporary_store store_;
};

constexpr std::string_view example_query_1 = R"(
        from(bucket: "nimbus")
            |> range(start: -24h)
            |> filter(fn: (r) => r["device_id"] == "pi-001")
            |> filter(fn: (r) => r["_measurement"] == "sensor_reading")
        )";

constexpr std::string_view example_query_2 = R"(
        from(bucket: "nimbus")
            |> range(start: -24h)
            |> filter(fn: (r) => r["device_id"] == "pi-001")
            |> filter(fn: (r) => r["_field"] == "temperature")
            |> mean()
        )";

TEST_F(flux_exec_test, worked_example_query_1_byte_for_byte) {
  write_example();
  EXPECT_EQ(
      csv_of(example_query_1),
      "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,"
      "string,string\r\n"
      "#group,false,false,true,true,false,false,true,true,true\r\n"
      "#default,_result,,,,,,,,\r\n"
      ",result,table,_start,_stop,_time,_value,_field,_measurement,device_id\r\n"
      ",,0,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,2024-05-01T10:00:00Z,"
      "45,humidity,sensor_reading,pi-001\r\n"
      ",,0,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,2024-05-01T10:01:00Z,"
      "46.5,humidity,sensor_reading,pi-001\r\n"
      ",,0,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,2024-05-01T10:02:00Z,"
      "47.25,humidity,sensor_reading,pi-001\r\n"
      ",,1,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,2024-05-01T10:00:00Z,"
      "21.5,temperature,sensor_reading,pi-001\r\n"
      ",,1,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,2024-05-01T10:01:00Z,"
      "22.25,temperature,sensor_reading,pi-001\r\n"
      ",,1,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,2024-05-01T10:02:00Z,"
      "23,temperature,sensor_reading,pi-001\r\n"
      "\r\n");
}

TEST_F(flux_exec_test, worked_example_query_2_byte_for_byte) {
  write_example();
  EXPECT_EQ(csv_of(example_query_2),
            "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string,string,"
            "string\r\n"
            "#group,false,false,true,true,false,true,true,true\r\n"
            "#default,_result,,,,,,,\r\n"
            ",result,table,_start,_stop,_value,_field,_measurement,device_id\r\n"
            ",,0,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,22.25,temperature,"
            "sensor_reading,pi-001\r\n"
            "\r\n");
  // No data in range: the empty body the tutorial turns into [] and {}.
  EXPECT_EQ(csv_of(example_query_2, example_now_ns + 48 * hour_ns), "\r\n");
}

TEST_F(flux_exec_test, an_integer_field_opens_its_own_block) {
  store_.write("sensor_reading,device_id=pi-001 humidity=45i,temperature=21.5 1714557600\n");
  const std::string csv = csv_of(example_query_1);
  EXPECT_NE(csv.find(",,0,2024-04-30T12:00:00.123456789Z,2024-05-01T12:00:00.123456789Z,"
                     "2024-05-01T10:00:00Z,45,humidity,sensor_reading,pi-001\r\n"
                     "\r\n"
                     "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,"
                     "double,string,string,string\r\n"),
            std::string::npos)
      << csv;
  EXPECT_NE(csv.find("#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,"
                     "long,string,string,string\r\n"),
            std::string::npos)
      << csv;
}

TEST_F(flux_exec_test, aggregate_window_with_and_without_empty_windows) {
  // cmd/influxd/launcher/query_test.go's "window mean": range 5-20 s, every 5 s.
  store_.write("w v=1 6\nw v=3 7\nw v=5 16\n");
  const std::string query =
      "from(bucket: \"nimbus\") |> range(start: 5, stop: 20) |> filter(fn: (r) => "
      "r._measurement == \"w\") |> aggregateWindow(every: 5s, fn: ";
  EXPECT_EQ(csv_of(query + "mean)"),
            "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,"
            "string,string\r\n"
            "#group,false,false,true,true,false,false,true,true\r\n"
            "#default,_result,,,,,,,\r\n"
            ",result,table,_start,_stop,_time,_value,_field,_measurement\r\n"
            ",,0,1970-01-01T00:00:05Z,1970-01-01T00:00:20Z,1970-01-01T00:00:10Z,2,v,w\r\n"
            ",,0,1970-01-01T00:00:05Z,1970-01-01T00:00:20Z,1970-01-01T00:00:15Z,,v,w\r\n"
            ",,0,1970-01-01T00:00:05Z,1970-01-01T00:00:20Z,1970-01-01T00:00:20Z,5,v,w\r\n"
            "\r\n");
  const auto without_empty = tables_of(query + "mean, createEmpty: false)");
  ASSERT_EQ(without_empty.size(), 1U);
  EXPECT_EQ(cells(without_empty[0], "_time"),
            (std::vector<scalar>{timestamp{10 * second_ns}, timestamp{20 * second_ns}}));
  EXPECT_EQ(cells(without_empty[0], "_value"), (std::vector<scalar>{2.0, 5.0}));

  const auto counts = tables_of(query + "count)");
  ASSERT_EQ(counts.size(), 1U);
  EXPECT_EQ(cells(counts[0], "_value"),
            (std::vector<scalar>{std::int64_t{2}, std::int64_t{0}, std::int64_t{1}}));
  EXPECT_EQ(counts[0].columns[3].type, column_type::integer);

  // A selector keeps its value and takes the window's stop as _time; empty windows give no row.
  const auto maxima = tables_of(query + "max)");
  ASSERT_EQ(maxima.size(), 1U);
  EXPECT_EQ(cells(maxima[0], "_value"), (std::vector<scalar>{3.0, 5.0}));
  EXPECT_EQ(cells(maxima[0], "_time"),
            (std::vector<scalar>{timestamp{10 * second_ns}, timestamp{20 * second_ns}}));

  // Not right after the read (median is not pushed down): <key>, _value, _time.
  const auto medians = tables_of(query + "median, createEmpty: false)");
  ASSERT_EQ(medians.size(), 1U);
  EXPECT_EQ(labels(medians[0]), (std::vector<std::string>{"_start", "_stop", "_field",
                                                          "_measurement", "_value", "_time"}));
  EXPECT_EQ(cells(medians[0], "_value"), (std::vector<scalar>{2.0, 5.0}));
}

TEST_F(flux_exec_test, window_then_aggregate) {
  write_example();
  const auto tables = tables_of(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._field == "
      "\"temperature\") |> window(every: 1m) |> count()");
  ASSERT_EQ(tables.size(), 3U);
  EXPECT_EQ(labels(tables[0]), (std::vector<std::string>{"_start", "_stop", "_field",
                                                         "_measurement", "device_id", "_value"}));
  EXPECT_EQ(tables[0].at(0, 0), scalar{timestamp{time_of("2024-05-01T10:00:00Z")}});
  EXPECT_EQ(tables[0].at(1, 0), scalar{timestamp{time_of("2024-05-01T10:01:00Z")}});
  EXPECT_EQ(cells(tables[2], "_value"), (std::vector<scalar>{std::int64_t{1}}));
}

TEST_F(flux_exec_test, pivot_fields_into_columns) {
  write_example();
  const auto tables = tables_of(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._measurement == "
      "\"sensor_reading\") |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: "
      "\"_value\")");
  ASSERT_EQ(tables.size(), 1U);
  const table& t = tables[0];
  EXPECT_EQ(labels(t), (std::vector<std::string>{"_start", "_stop", "_time", "_measurement",
                                                 "device_id", "humidity", "temperature"}));
  EXPECT_EQ(t.rows, 3U);
  EXPECT_EQ(cells(t, "humidity"), (std::vector<scalar>{45.0, 46.5, 47.25}));
  EXPECT_EQ(cells(t, "temperature"), (std::vector<scalar>{21.5, 22.25, 23.0}));
  EXPECT_TRUE(t.columns[3].is_key);
  EXPECT_FALSE(t.columns[2].is_key);
}

TEST_F(flux_exec_test, group_sort_limit) {
  write_example();
  const std::string from = "from(bucket: \"nimbus\") |> range(start: -24h) ";
  const auto all = tables_of(from + "|> group()");
  ASSERT_EQ(all.size(), 1U);
  EXPECT_EQ(all[0].rows, 6U);
  for (const auto& c : all[0].columns) EXPECT_FALSE(c.is_key) << c.label;

  const auto by_device = tables_of(from + "|> group(columns: [\"device_id\"])");
  ASSERT_EQ(by_device.size(), 1U);
  EXPECT_TRUE(by_device[0].columns[by_device[0].find("device_id").value()].is_key);
  EXPECT_FALSE(by_device[0].columns[by_device[0].find("_field").value()].is_key);

  const auto top = tables_of(from +
                             "|> filter(fn: (r) => r._field == \"temperature\") |> sort(columns: "
                             "[\"_value\"], desc: true) |> limit(n: 2)");
  ASSERT_EQ(top.size(), 1U);
  EXPECT_EQ(cells(top[0], "_value"), (std::vector<scalar>{23.0, 22.25}));
  const auto last =
      tables_of(from + "|> filter(fn: (r) => r._field == \"temperature\") |> tail(n: 1)");
  ASSERT_EQ(last.size(), 1U);
  EXPECT_EQ(cells(last[0], "_value"), (std::vector<scalar>{23.0}));

  const auto kept = tables_of(from + "|> keep(columns: [\"_time\", \"_value\", \"_field\"])");
  ASSERT_EQ(kept.size(), 2U);
  EXPECT_EQ(labels(kept[0]), (std::vector<std::string>{"_time", "_value", "_field"}));
  // Dropping _field leaves two tables with one key: they merge.
  const auto merged = tables_of(from + "|> drop(columns: [\"_field\"])");
  ASSERT_EQ(merged.size(), 1U);
  EXPECT_EQ(merged[0].rows, 6U);
}

TEST_F(flux_exec_test, aggregates_and_selectors) {
  write_example();
  const std::string temperature =
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._field == "
      "\"temperature\") |> ";
  const auto value_of = [&](const std::string& fn) {
    const auto tables = tables_of(temperature + fn);
    if (tables.size() != 1 || tables[0].rows != 1) {
      ADD_FAILURE() << fn;
      return scalar{};
    }
    return cells(tables[0], "_value")[0];
  };
  EXPECT_EQ(value_of("sum()"), scalar{66.75});
  EXPECT_EQ(value_of("count()"), scalar{std::int64_t{3}});
  EXPECT_EQ(value_of("median()"), scalar{22.25});
  EXPECT_EQ(value_of("spread()"), scalar{1.5});
  EXPECT_EQ(value_of("min()"), scalar{21.5});
  EXPECT_EQ(value_of("max()"), scalar{23.0});
  EXPECT_EQ(value_of("first()"), scalar{21.5});
  EXPECT_EQ(value_of("last()"), scalar{23.0});
  const scalar deviation = value_of("stddev()");
  ASSERT_TRUE(std::holds_alternative<double>(deviation));
  EXPECT_NEAR(std::get<double>(deviation), 0.75, 1e-12);
  // Selectors keep the row's _time.
  const auto minimum = tables_of(temperature + "min()");
  ASSERT_EQ(minimum.size(), 1U);
  EXPECT_EQ(cells(minimum[0], "_time"),
            (std::vector<scalar>{timestamp{time_of("2024-05-01T10:00:00Z")}}));
  // Not pushed down: the key, then _value.
  const auto median = tables_of(temperature + "median()");
  ASSERT_EQ(median.size(), 1U);
  EXPECT_EQ(labels(median[0]), (std::vector<std::string>{"_start", "_stop", "_field",
                                                         "_measurement", "device_id", "_value"}));
}

TEST_F(flux_exec_test, regex_filters_and_absolute_ranges) {
  write_example();
  const auto humidity = tables_of(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._field =~ "
      "/^hum/)");
  ASSERT_EQ(humidity.size(), 1U);
  EXPECT_EQ(cells(humidity[0], "_field")[0], scalar{std::string("humidity")});

  const auto window = tables_of(
      "from(bucket: \"nimbus\") |> range(start: 2024-05-01T10:00:30Z, stop: "
      "2024-05-01T10:02:00Z)");
  ASSERT_EQ(window.size(), 2U);
  for (const auto& t : window) {
    EXPECT_EQ(cells(t, "_time"), (std::vector<scalar>{timestamp{time_of("2024-05-01T10:01:00Z")}}));
    EXPECT_EQ(t.at(0, 0), scalar{timestamp{time_of("2024-05-01T10:00:30Z")}});
    EXPECT_EQ(t.at(1, 0), scalar{timestamp{time_of("2024-05-01T10:02:00Z")}});
  }
  // A bare date, and Unix seconds.
  EXPECT_EQ(
      tables_of("from(bucket: \"nimbus\") |> range(start: 2024-05-01, stop: 1714557601)").size(),
      2U);
}

TEST_F(flux_exec_test, filters_value_and_count_on_empty) {
  write_example();
  const auto warm = tables_of(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._value > 22.0 and "
      "r._value < 40)");
  ASSERT_EQ(warm.size(), 1U);
  EXPECT_EQ(cells(warm[0], "_value"), (std::vector<scalar>{22.25, 23.0}));
  // Nothing matches: no tables, so count() has nothing to count and the body is empty.
  EXPECT_EQ(csv_of("from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => "
                   "r.device_id == \"pi-404\") |> count()"),
            "\r\n");
  // onEmpty: "keep" keeps the emptied tables.
  const auto kept = tables_of(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._value > 100.0, "
      "onEmpty: \"keep\")");
  ASSERT_EQ(kept.size(), 2U);
  EXPECT_EQ(kept[0].rows, 0U);
}

TEST_F(flux_exec_test, map_with_conversions) {
  write_example();
  const std::string temperature =
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._field == "
      "\"temperature\") ";
  const auto doubled =
      tables_of(temperature + "|> map(fn: (r) => ({r with _value: r._value * 2.0, unit: \"C\"}))");
  ASSERT_EQ(doubled.size(), 1U);
  EXPECT_EQ(cells(doubled[0], "_value"), (std::vector<scalar>{43.0, 44.5, 46.0}));
  EXPECT_EQ(cells(doubled[0], "unit")[0], scalar{std::string("C")});
  const auto integers =
      tables_of(temperature + "|> map(fn: (r) => ({r with _value: int(v: r._value)}))");
  ASSERT_EQ(integers.size(), 1U);
  EXPECT_EQ(integers[0].columns[3].type, column_type::integer);
  EXPECT_EQ(cells(integers[0], "_value"),
            (std::vector<scalar>{std::int64_t{21}, std::int64_t{22}, std::int64_t{23}}));
  const auto summed = tables_of(temperature + "|> toInt() |> toFloat() |> sum()");
  ASSERT_EQ(summed.size(), 1U);
  EXPECT_EQ(summed[0].columns[summed[0].find("_value").value()].type, column_type::floating);
  EXPECT_EQ(cells(summed[0], "_value"), (std::vector<scalar>{66.0}));
  const error mismatch = error_running(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._field == "
      "\"temperature\") |> map(fn: (r) => ({r with _value: r._value * 2}))");
  EXPECT_EQ(mismatch.code, error_code::invalid);
  EXPECT_EQ(mismatch.message, "compilation failed: error @1:129-1:141: float != int");
}

TEST_F(flux_exec_test, errors_clients_see) {
  write_example();
  const error unknown_bucket = error_running("from(bucket: \"nope\") |> range(start: -1h)");
  EXPECT_EQ(unknown_bucket.code, error_code::not_found);
  EXPECT_EQ(unknown_bucket.message,
            "failed to initialize execute state: could not find bucket \"nope\"");
  EXPECT_EQ(error_running("from(bucket: \"nimbus/none\") |> range(start: -1h)").code,
            error_code::not_found);
  const error unbounded = error_running("from(bucket: \"nimbus\") |> mean()");
  EXPECT_EQ(unbounded.code, error_code::invalid);
  EXPECT_EQ(unbounded.message,
            "cannot submit unbounded read to \"nimbus\"; try bounding 'from' with a call to "
            "'range'");
  const error unknown_function =
      error_running("from(bucket: \"nimbus\") |> range(start: -1h) |> foo()");
  EXPECT_EQ(unknown_function.message,
            "compilation failed: error @1:48-1:51: undefined identifier foo");
  const error strings = error_running(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> filter(fn: (r) => r._field == "
      "\"temperature\") |> group() |> map(fn: (r) => ({r with x: 1})) |> mean(column: \"_field\")");
  EXPECT_NE(strings.message.find("unsupported input type for mean aggregate: string"),
            std::string::npos)
      << strings.message;
}

TEST_F(flux_exec_test, limits) {
  write_example();
  execution_limits few_points;
  few_points.max_points = 2;
  const error points = error_running(example_query_1, few_points);
  EXPECT_EQ(points.code, error_code::too_large);
  EXPECT_EQ(points.message, "max-select-point limit exceeded: (3/2)");

  execution_limits few_rows;
  few_rows.max_rows = 100;
  const error rows = error_running(
      "from(bucket: \"nimbus\") |> range(start: -24h) |> aggregateWindow(every: 1s, fn: count)",
      few_rows);
  EXPECT_EQ(rows.code, error_code::too_large);
  EXPECT_TRUE(starts_with(rows.message, "max-result-rows limit exceeded: "));

  execution_limits late;
  late.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  EXPECT_EQ(error_running(example_query_1, late).code, error_code::timed_out);
}

}  // namespace
}  // namespace nimbus::tsdb::flux
