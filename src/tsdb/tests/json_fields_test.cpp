// JSON payloads to fields, as Telegraf flattens them.
#include <gtest/gtest.h>

#include "tsdb/json_fields.hpp"

namespace nimbus::tsdb {
namespace {

using fields_t = std::vector<std::pair<std::string, field_value>>;

TEST(json_fields, numbers_become_floats_and_objects_flatten_with_underscores) {
  fields_t fields;
  ASSERT_TRUE(json_fields(
      R"({"temperature":21,"humidity":45.5,"ok":true,"site":"lab","gps":{"lat":37.5,"fix":{"q":2}},"list":[1],"none":null})",
      fields));
  const fields_t expected{{"temperature", 21.0},        {"humidity", 45.5}, {"ok", true},
                          {"site", std::string("lab")}, {"gps_lat", 37.5},  {"gps_fix_q", 2.0}};
  EXPECT_EQ(fields, expected);
}

TEST(json_fields, skips_given_keys_time_and_what_is_not_asked_for) {
  fields_t fields;
  json_field_options options;
  options.skip = {"device_id", "timestamp"};
  options.include_strings = false;
  options.include_booleans = false;
  ASSERT_TRUE(json_fields(
      R"({"device_id":"pi-1","timestamp":1700000000,"time":5,"v":1.5,"s":"x","b":false})", fields,
      options));
  EXPECT_EQ(fields, (fields_t{{"v", 1.5}}));
}

TEST(json_fields, a_key_made_twice_keeps_the_last_value_in_the_first_place) {
  fields_t fields;
  ASSERT_TRUE(json_fields(R"({"a_b":1,"a":{"b":2},"c":3})", fields));
  EXPECT_EQ(fields, (fields_t{{"a_b", 2.0}, {"c", 3.0}}));
}

TEST(json_fields, anything_but_an_object_is_refused_and_adds_nothing) {
  fields_t fields{{"kept", 1.0}};
  for (const char* document : {"[1,2]", "42", "\"s\"", "{", "", "null", "{\"a\":1} x"})
    EXPECT_FALSE(json_fields(document, fields)) << document;
  EXPECT_EQ(fields.size(), 1U);
}

}  // namespace
}  // namespace nimbus::tsdb
