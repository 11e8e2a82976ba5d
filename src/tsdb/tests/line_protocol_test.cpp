// The line protocol beyond the case files: format_line and parse_lines round trips over generated
// points, series keys and their ids (stored, so pinned here), precisions and the timestamp range,
// float printing, and the bounds that keep a hostile body's cost linear.
#include "tsdb/line_protocol.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

namespace nimbus::tsdb {
namespace {

constexpr std::int64_t now_ns = 1'700'000'000'123'456'789;

// What names are made of: letters and digits, every byte some name escapes, quotes, `#`, tabs,
// \r, UTF-8. A backslash always comes with a letter after it, as format_line's precondition asks
// (no name ending with a backslash or holding one right before a byte it escapes).
const std::vector<std::string>& name_pieces() {
  static const std::vector<std::string> pieces = {
      "a",    "b", "z",  "A", "Z",  "0",  "9", "_",   "-",   ".",        ",",
      "=",    " ", "\"", "#", "\t", "\r", "'", "\\d", "\\n", "\xc3\xa9", "\xe2\x9c\x93",
      "time", "i", "u",  "e"};
  return pieces;
}

// What string values are made of: anything, newlines, quotes and backslashes included.
const std::vector<std::string>& string_pieces() {
  static const std::vector<std::string> pieces = {"a",    "Z",  "1",  " ",        ",",
                                                  "=",    "\"", "\\", "\\\\",     "\n",
                                                  "\r\n", "\t", "#",  "\xc3\xa9", "\\\""};
  return pieces;
}

class point_generator {
 public:
  explicit point_generator(std::uint64_t seed) : random_(seed) {}

  point next() {
    point p;
    do {
      p.measurement = name(1, 6);
    } while (p.measurement.front() == '#' || p.measurement.front() == '\t');
    const std::size_t tag_count = below(5);
    while (p.tags.size() < tag_count) {
      std::string key = name(1, 4);
      if (key == "time" || has_key(p.tags, key)) continue;
      p.tags.emplace_back(std::move(key), name(1, 4));
    }
    std::sort(p.tags.begin(), p.tags.end());
    const std::size_t field_count = 1 + below(5);
    while (p.fields.size() < field_count) {
      std::string key = name(1, 4);
      if (key == "time" || has_key(p.fields, key)) continue;
      // After the space before the fields a tab would be skipped as a blank (InfluxDB's
      // skipWhitespace), so the first key cannot start with one.
      if (p.fields.empty() && key.front() == '\t') continue;
      p.fields.emplace_back(std::move(key), value());
    }
    if (below(10) != 0) p.timestamp_ns = between(min_time_ns, max_time_ns);
    return p;
  }

 private:
  template <typename Pairs>
  static bool has_key(const Pairs& pairs, const std::string& key) {
    for (const auto& pair : pairs)
      if (pair.first == key) return true;
    return false;
  }

  std::size_t below(std::size_t bound) {
    return std::uniform_int_distribution<std::size_t>(0, bound - 1)(random_);
  }

  std::int64_t between(std::int64_t low, std::int64_t high) {
    return std::uniform_int_distribution<std::int64_t>(low, high)(random_);
  }

  std::string pieces(const std::vector<std::string>& from, std::size_t low, std::size_t high) {
    std::string text;
    const std::size_t count = low + below(high - low + 1);
    for (std::size_t i = 0; i < count; ++i) text += from[below(from.size())];
    return text;
  }

  std::string name(std::size_t low, std::size_t high) { return pieces(name_pieces(), low, high); }

  double number() {
    static const std::vector<double> special = {0.0,
                                                -0.0,
                                                1.0,
                                                0.1,
                                                1.0 / 3,
                                                1e21,
                                                1e-5,
                                                123456789.125,
                                                std::numeric_limits<double>::max(),
                                                -std::numeric_limits<double>::max(),
                                                std::numeric_limits<double>::min(),
                                                9007199254740991.0};
    if (below(4) == 0) return special[below(special.size())];
    const double mantissa = std::uniform_real_distribution<double>(1.0, 10.0)(random_);
    const auto exponent = static_cast<int>(between(-300, 300));
    const double magnitude = mantissa * std::pow(10.0, exponent);
    return below(2) == 0 ? magnitude : -magnitude;
  }

  field_value value() {
    switch (below(5)) {
      case 0:
        return field_value(std::in_place_type<double>, number());
      case 1:
        return field_value(std::in_place_type<std::int64_t>,
                           between(std::numeric_limits<std::int64_t>::min(),
                                   std::numeric_limits<std::int64_t>::max()));
      case 2:
        return field_value(std::in_place_type<std::uint64_t>,
                           std::uniform_int_distribution<std::uint64_t>()(random_));
      case 3:
        return field_value(std::in_place_type<bool>, below(2) == 0);
      default:
        return field_value(std::in_place_type<std::string>, pieces(string_pieces(), 0, 12));
    }
  }

  std::mt19937_64 random_;
};

// The point parse_lines gives for format_line(p): p, with the clock where it had no timestamp.
point as_parsed(point p) {
  if (!p.timestamp_ns) p.timestamp_ns = now_ns;
  return p;
}

point make_point(std::string measurement, std::vector<std::pair<std::string, std::string>> tags,
                 std::vector<std::pair<std::string, field_value>> fields,
                 std::optional<std::int64_t> timestamp_ns = std::nullopt) {
  point p;
  p.measurement = std::move(measurement);
  p.tags = std::move(tags);
  p.fields = std::move(fields);
  p.timestamp_ns = timestamp_ns;
  return p;
}

field_value float_value(double value) {
  return field_value(std::in_place_type<double>, value);
}

TEST(tsdb_line_protocol, generated_points_round_trip_one_by_one) {
  point_generator generator(20261203);
  for (int i = 0; i < 5000; ++i) {
    const point p = generator.next();
    const std::string line = format_line(p);
    const parse_result result = parse_lines(line, precision::ns, now_ns);
    ASSERT_EQ(result.points.size(), 1u) << line;
    ASSERT_TRUE(result.errors.empty()) << line << ": " << error_message(result.errors[0]);
    EXPECT_EQ(result.points[0], as_parsed(p)) << line;
    EXPECT_EQ(format_line(result.points[0]), format_line(as_parsed(p)));
    ASSERT_EQ(result.series_keys.size(), 1u);
    EXPECT_EQ(result.series_keys[0], series_key(p)) << line;
  }
}

TEST(tsdb_line_protocol, generated_points_round_trip_as_one_body) {
  point_generator generator(7);
  std::vector<point> points;
  for (int i = 0; i < 2000; ++i) points.push_back(generator.next());
  for (const std::string_view separator : {"\n", "\r\n", "\n\n# a comment\n"}) {
    std::string body;
    for (const point& p : points) {
      body += format_line(p);
      body += separator;
    }
    const parse_result result = parse_lines(body, precision::ns, now_ns);
    ASSERT_TRUE(result.errors.empty()) << error_message(result.errors[0]);
    ASSERT_EQ(result.points.size(), points.size());
    for (std::size_t i = 0; i < points.size(); ++i)
      EXPECT_EQ(result.points[i], as_parsed(points[i])) << format_line(points[i]);
  }
}

TEST(tsdb_line_protocol, a_spent_result_parses_a_body_as_a_fresh_one_does) {
  const std::string first =
      "cpu,host=a,region=eu usage=1.5,idle=2i 10\n"
      "cpu,host=b usage=2 20\n"
      "mem,zone=z\\ 1 used=3u,label=\"x\" 30\n"
      "disk free=4 40\n";
  const std::string second =
      "net,b=2,a=1 rx=5 50\n"  // unsorted tags: the key is made, not copied
      "bad line\n"
      "cpu usage=6 60\n";
  parse_result spent = parse_lines(first, precision::ns, 0);
  ASSERT_EQ(spent.points.size(), 4U);
  for (const auto& body : {second, first, std::string("# nothing\n"), second}) {
    const parse_result fresh = parse_lines(body, precision::ns, 7);
    parse_lines(body, precision::ns, 7, spent);
    EXPECT_EQ(spent.points, fresh.points) << body;
    EXPECT_EQ(spent.series_keys, fresh.series_keys) << body;
    EXPECT_EQ(spent.rejected_lines, fresh.rejected_lines) << body;
    ASSERT_EQ(spent.errors.size(), fresh.errors.size()) << body;
    for (std::size_t i = 0; i < fresh.errors.size(); ++i)
      EXPECT_EQ(spent.errors[i].reason, fresh.errors[i].reason) << body;
  }
}

TEST(tsdb_line_protocol, extreme_values_round_trip) {
  const point p = make_point(
      "m", {},
      {{"f_max", float_value(std::numeric_limits<double>::max())},
       {"f_lowest", float_value(std::numeric_limits<double>::lowest())},
       {"f_min", float_value(std::numeric_limits<double>::min())},
       {"f_zero", float_value(-0.0)},
       {"i_min",
        field_value(std::in_place_type<std::int64_t>, std::numeric_limits<std::int64_t>::min())},
       {"i_max",
        field_value(std::in_place_type<std::int64_t>, std::numeric_limits<std::int64_t>::max())},
       {"u_max",
        field_value(std::in_place_type<std::uint64_t>, std::numeric_limits<std::uint64_t>::max())},
       {"s", field_value(std::in_place_type<std::string>, "\"\\\n\r\n\\\\\"")},
       {"s_long", field_value(std::in_place_type<std::string>, std::string(64 << 10, '"'))}},
      min_time_ns);
  const parse_result low = parse_lines(format_line(p), precision::ns, now_ns);
  ASSERT_EQ(low.points.size(), 1u);
  EXPECT_EQ(low.points[0], p);
  EXPECT_TRUE(std::signbit(std::get<double>(low.points[0].fields[3].second)));

  point high = p;
  high.timestamp_ns = max_time_ns;
  const parse_result result = parse_lines(format_line(high), precision::ns, now_ns);
  ASSERT_EQ(result.points.size(), 1u);
  EXPECT_EQ(result.points[0], high);
}

TEST(tsdb_line_protocol, prints_floats_shortest_and_fixed_within_1e21) {
  const std::vector<std::pair<double, std::string_view>> cases = {
      {1.0, "1"},
      {0.5, "0.5"},
      {100000.0, "100000"},
      {1e20, "100000000000000000000"},
      {1e21, "1e+21"},
      {0.0001, "0.0001"},
      {0.00001, "1e-05"},
      {-0.0, "-0"},
      {1.0 / 3, "0.3333333333333333"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1e-300, "1e-300"},
      {-1.5e-7, "-1.5e-07"},
      {123456789.125, "123456789.125"},
      {9007199254740992.0, "9007199254740992"},
      {12345678901234567890.0, "12345678901234567000"},
      {std::numeric_limits<double>::max(), "1.7976931348623157e+308"},
      {std::numeric_limits<double>::denorm_min(), "5e-324"},
  };
  for (const auto& [value, text] : cases) {
    const point p = make_point("m", {}, {{"v", float_value(value)}}, 1);
    EXPECT_EQ(format_line(p), "m v=" + std::string(text) + " 1") << value;
  }
}

TEST(tsdb_line_protocol, escapes_each_element_as_influxdb) {
  const point p =
      make_point("a b,c=d\\e", {{"k=1", "v, w"}, {"\"q\"", "=x"}},
                 {{"f \"g\"=,", field_value(std::in_place_type<std::string>, "say \"hi\" \\ ok\n")},
                  {"n", field_value(std::in_place_type<bool>, true)}},
                 5);
  EXPECT_EQ(format_line(p),
            "a\\ b\\,c=d\\e,\"q\"=\\=x,k\\=1=v\\,\\ w "
            "f\\ \\\"g\\\"\\=\\,=\"say \\\"hi\\\" \\\\ ok\n\",n=true 5");
}

TEST(tsdb_line_protocol, series_key_is_measurement_and_sorted_tags) {
  const point p = make_point("weather", {{"season", "summer"}, {"location", "us,midwest"}},
                             {{"temperature", float_value(82)}}, 1465839830100400200);
  EXPECT_EQ(series_key(p), "weather,location=us\\,midwest,season=summer");
  EXPECT_EQ(format_line(p),
            "weather,location=us\\,midwest,season=summer temperature=82 1465839830100400200");
  EXPECT_EQ(series_key(make_point("cpu", {}, {{"v", float_value(1)}})), "cpu");
  EXPECT_EQ(format_line(make_point("cpu", {}, {{"v", float_value(1)}})), "cpu v=1");
}

// Ids are stored: these values must never change. FNV-1a 64 ("a" is its published test vector).
TEST(tsdb_line_protocol, series_ids_are_fixed) {
  EXPECT_EQ(series_id(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(series_id("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(series_id("cpu"), 0xf5a8fa190cb314c9ULL);
  EXPECT_EQ(series_id("cpu,host=a"), 0xff716a83b04e6ac7ULL);
  EXPECT_EQ(series_id("sensors,device_id=dev-0042"), 0x24569a530ec5c051ULL);
  EXPECT_EQ(series_id("weather,location=us\\,midwest,season=summer"), 0x96534c8bbc7c3a8fULL);
}

TEST(tsdb_line_protocol, same_series_same_id_whatever_the_line) {
  const parse_result result =
      parse_lines("cpu,b=2,a=1 v=1 1\ncpu,a=1,b=2 w=2i 2\ncpu,a=1 v=1 3\n", precision::ns, now_ns);
  ASSERT_EQ(result.points.size(), 3u);
  EXPECT_EQ(series_key(result.points[0]), "cpu,a=1,b=2");
  EXPECT_EQ(series_id(series_key(result.points[0])), series_id(series_key(result.points[1])));
  EXPECT_NE(series_id(series_key(result.points[0])), series_id(series_key(result.points[2])));
}

TEST(tsdb_line_protocol, parses_both_apis_precisions) {
  const std::vector<std::pair<std::string_view, precision>> accepted = {
      {"", precision::ns},  {"n", precision::ns},  {"ns", precision::ns},
      {"u", precision::us}, {"us", precision::us}, {"ms", precision::ms},
      {"s", precision::s},  {"m", precision::m},   {"h", precision::h}};
  for (const auto& [text, unit] : accepted) {
    const auto parsed = parse_precision(text);
    ASSERT_TRUE(parsed.has_value()) << text;
    EXPECT_EQ(*parsed, unit) << text;
  }
  for (const std::string_view text :
       {"x", "NS", "MS", "S", "\xc2\xb5", "\xc2\xb5s", "sec", "ns ", " s", "d", "rfc3339", "mu"})
    EXPECT_FALSE(parse_precision(text).has_value()) << text;
}

TEST(tsdb_line_protocol, converts_timestamps_within_influxdb_range) {
  EXPECT_EQ(nanoseconds_per(precision::ns), 1);
  EXPECT_EQ(nanoseconds_per(precision::us), 1'000);
  EXPECT_EQ(nanoseconds_per(precision::ms), 1'000'000);
  EXPECT_EQ(nanoseconds_per(precision::s), 1'000'000'000);
  EXPECT_EQ(nanoseconds_per(precision::m), 60'000'000'000);
  EXPECT_EQ(nanoseconds_per(precision::h), 3'600'000'000'000);

  EXPECT_EQ(to_nanoseconds(1, precision::s), 1'000'000'000);
  EXPECT_EQ(to_nanoseconds(-1, precision::ms), -1'000'000);
  EXPECT_EQ(to_nanoseconds(9223372036, precision::s), 9'223'372'036'000'000'000);
  EXPECT_EQ(to_nanoseconds(9223372037, precision::s), std::nullopt);
  EXPECT_EQ(to_nanoseconds(-9223372037, precision::s), std::nullopt);
  EXPECT_EQ(to_nanoseconds(153722867, precision::m), 9'223'372'020'000'000'000);
  EXPECT_EQ(to_nanoseconds(153722868, precision::m), std::nullopt);
  EXPECT_EQ(to_nanoseconds(2562047, precision::h), 9'223'369'200'000'000'000);
  EXPECT_EQ(to_nanoseconds(2562048, precision::h), std::nullopt);
  EXPECT_EQ(to_nanoseconds(-2562047, precision::h), -9'223'369'200'000'000'000);
  EXPECT_EQ(to_nanoseconds(max_time_ns, precision::ns), max_time_ns);
  EXPECT_EQ(to_nanoseconds(min_time_ns, precision::ns), min_time_ns);
  EXPECT_EQ(to_nanoseconds(max_time_ns + 1, precision::ns), std::nullopt);
  EXPECT_EQ(to_nanoseconds(min_time_ns - 1, precision::ns), std::nullopt);
  EXPECT_EQ(to_nanoseconds(std::numeric_limits<std::int64_t>::min(), precision::ns), std::nullopt);
  EXPECT_EQ(to_nanoseconds(std::numeric_limits<std::int64_t>::min(), precision::h), std::nullopt);
  EXPECT_EQ(to_nanoseconds(std::numeric_limits<std::int64_t>::max(), precision::us), std::nullopt);
}

TEST(tsdb_line_protocol, stamps_lines_without_timestamp_with_the_truncated_clock) {
  const std::vector<std::pair<precision, std::int64_t>> cases = {
      {precision::ns, 1'700'000'000'123'456'789}, {precision::us, 1'700'000'000'123'456'000},
      {precision::ms, 1'700'000'000'123'000'000}, {precision::s, 1'700'000'000'000'000'000},
      {precision::m, 1'699'999'980'000'000'000},  {precision::h, 1'699'999'200'000'000'000}};
  for (const auto& [unit, expected] : cases) {
    const parse_result result = parse_lines("m v=1", unit, now_ns);
    ASSERT_EQ(result.points.size(), 1u);
    EXPECT_EQ(result.points[0].timestamp_ns, expected);
  }
  // Rounded down before 1970 too (Go's Time.Truncate).
  const parse_result before = parse_lines("m v=1", precision::s, -1);
  ASSERT_EQ(before.points.size(), 1u);
  EXPECT_EQ(before.points[0].timestamp_ns, -1'000'000'000);
}

TEST(tsdb_line_protocol, names_field_types_as_influxdb) {
  EXPECT_EQ(name_of(type_of(float_value(1))), "float");
  EXPECT_EQ(name_of(type_of(field_value(std::in_place_type<std::int64_t>, 1))), "integer");
  EXPECT_EQ(name_of(type_of(field_value(std::in_place_type<std::uint64_t>, 1u))), "unsigned");
  EXPECT_EQ(name_of(type_of(field_value(std::in_place_type<bool>, true))), "boolean");
  EXPECT_EQ(name_of(type_of(field_value(std::in_place_type<std::string>, "x"))), "string");
}

TEST(tsdb_line_protocol, words_errors_as_influxdb) {
  parse_error syntax{3, "cpu v=x", "invalid boolean", error_kind::unable_to_parse};
  EXPECT_EQ(error_message(syntax), "unable to parse 'cpu v=x': invalid boolean");
  parse_error dropped{1, "m time=1",
                      "invalid field name: input field \"time\" on measurement \"m\" is invalid",
                      error_kind::dropped};
  EXPECT_EQ(error_message(dropped), dropped.reason);
}

TEST(tsdb_line_protocol, keeps_max_errors_refusals_and_counts_all) {
  std::string body;
  for (int i = 0; i < 500; ++i) body += "bad\nm v=1 1\n";
  const parse_result result = parse_lines(body, precision::ns, now_ns);
  EXPECT_EQ(result.points.size(), 500u);
  EXPECT_EQ(result.rejected_lines, 500u);
  ASSERT_EQ(result.errors.size(), parse_limits{}.max_errors);
  EXPECT_EQ(result.errors.back().line_number, 2 * parse_limits{}.max_errors - 1);
}

// A quote left open to the end of the body from every line on: rescanning the rest of the body
// for each line would take quadratic time. From InfluxDB's scanLine's view every line here flips
// the quote twice (the leading one, then the one after `s=`), so each line's scan would run to the
// end; the parser falls back to physical lines after the first and stays linear.
TEST(tsdb_line_protocol, stray_quotes_cost_linear_time) {
  std::string body;
  const std::size_t lines = 200'000;
  for (std::size_t i = 0; i < lines; ++i) body += "\"m s=\"x\n";
  const parse_result result = parse_lines(body, precision::ns, now_ns);
  EXPECT_TRUE(result.points.empty());
  EXPECT_EQ(result.rejected_lines, lines);
  ASSERT_FALSE(result.errors.empty());
  EXPECT_EQ(result.errors[0].reason, "unbalanced quotes");
  EXPECT_EQ(result.errors[0].line, "\"m s=\"x");
  EXPECT_EQ(result.errors.back().line_number, parse_limits{}.max_errors);
}

// A lone quote pairs with the next one, as in InfluxDB: two such lines are one point.
TEST(tsdb_line_protocol, a_stray_quote_pairs_with_the_next) {
  const parse_result result = parse_lines("m s=\"\nm s=\"\n", precision::ns, now_ns);
  ASSERT_EQ(result.points.size(), 1u);
  EXPECT_EQ(std::get<std::string>(result.points[0].fields[0].second), "\nm s=");
}

TEST(tsdb_line_protocol, bounds_lines_keys_and_strings_by_default) {
  const std::size_t line_limit = parse_limits{}.max_line_bytes;
  // A line of exactly max_line_bytes is parsed (and refused for its string, 64 KiB at most)...
  const std::string at_limit = "m s=\"" + std::string(line_limit - 6, 'x') + "\"";
  ASSERT_EQ(at_limit.size(), line_limit);
  parse_result result = parse_lines(at_limit, precision::ns, now_ns);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].reason,
            "max string field length exceeded: " + std::to_string(line_limit - 6) + " > 65536");
  // ...one byte more is refused unread.
  result = parse_lines(at_limit + "x", precision::ns, now_ns);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].reason, "max line length exceeded: " + std::to_string(line_limit + 1) +
                                         " > " + std::to_string(line_limit));

  // InfluxDB's MaxKeyLength, 65535: series key + 4 + field key.
  result = parse_lines(std::string(65530, 'm') + " v=1", precision::ns, now_ns);
  EXPECT_EQ(result.points.size(), 1u);
  result = parse_lines(std::string(65531, 'm') + " v=1", precision::ns, now_ns);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].reason, "max key length exceeded: 65536 > 65535");
  result = parse_lines(std::string(65536, 'm') + " v=1", precision::ns, now_ns);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].reason, "max key length exceeded: 65536 > 65535");

  // A string of exactly 64 KiB is kept.
  result = parse_lines("m s=\"" + std::string(65536, 'x') + "\"", precision::ns, now_ns);
  EXPECT_EQ(result.points.size(), 1u);
}

// More fields than the quick check for repeats looks at: the last value wins where the key first
// appeared.
TEST(tsdb_line_protocol, collapses_repeated_fields_in_long_lines) {
  std::string line = "m ";
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 20; ++i)
      line += "f" + std::to_string(i) + "=" + std::to_string(round * 100 + i) + "i,";
  line += "g=1";
  const parse_result result = parse_lines(line, precision::ns, now_ns);
  ASSERT_EQ(result.points.size(), 1u) << error_message(result.errors.at(0));
  const auto& fields = result.points[0].fields;
  ASSERT_EQ(fields.size(), 21u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(fields[static_cast<std::size_t>(i)].first, "f" + std::to_string(i));
    EXPECT_EQ(std::get<std::int64_t>(fields[static_cast<std::size_t>(i)].second), 100 + i);
  }
  EXPECT_EQ(fields[20].first, "g");
}

}  // namespace
}  // namespace nimbus::tsdb
