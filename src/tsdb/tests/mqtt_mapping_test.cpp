// MQTT payloads to points: the tutorial's publisher, topic tags, times by magnitude and RFC3339.
#include <gtest/gtest.h>

#include "tsdb/mqtt_mapping.hpp"

namespace nimbus::tsdb {
namespace {

TEST(mqtt_mapping, the_tutorial_publisher_lands_in_sensor_reading_tagged_by_device) {
  std::string why;
  const auto p = map_message(
      mqtt_mapping{}, "sensor/data",
      R"({"device_id":"RaspberryPi-001","temperature":25.5,"humidity":60,"timestamp":1700000000})",
      1, why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->measurement, "sensor_reading");
  EXPECT_EQ(p->tags, (decltype(p->tags){{"device_id", "RaspberryPi-001"}}));
  EXPECT_EQ(p->fields, (decltype(p->fields){{"temperature", 25.5}, {"humidity", 60.0}}));
  EXPECT_EQ(p->timestamp_ns, 1'700'000'000'000'000'000LL);
}

TEST(mqtt_mapping, times_read_by_magnitude_or_as_rfc3339_else_the_receive_time) {
  std::string why;
  const mqtt_mapping m;
  const auto at = [&](const std::string& time) {
    auto p = map_message(m, "sensor/x", R"({"v":1,"timestamp":)" + time + "}", 42, why);
    return p ? p->timestamp_ns : std::nullopt;
  };
  EXPECT_EQ(at("1700000000.5"), 1'700'000'000'500'000'000LL);
  EXPECT_EQ(at("1700000000123"), 1'700'000'000'123'000'000LL);
  EXPECT_EQ(at("1700000000123456"), 1'700'000'000'123'456'000LL);
  EXPECT_EQ(at("1700000000123456789"), 1'700'000'000'123'456'789LL);
  EXPECT_EQ(at(R"("2023-11-14T22:13:20Z")"), 1'700'000'000'000'000'000LL);
  EXPECT_EQ(at(R"("2023-11-15T07:13:20.25+09:00")"), 1'700'000'000'250'000'000LL);
  EXPECT_EQ(at(R"("yesterday")"), std::nullopt);
  EXPECT_NE(why.find("timestamp"), std::string::npos);
  const auto p = map_message(m, "sensor/x", R"({"v":1})", 42, why);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->timestamp_ns, 42);
}

TEST(mqtt_mapping, topic_levels_become_tags_and_field_keys_select) {
  mqtt_mapping m;
  m.filter = "plant/+/line/+";
  m.measurement = "line";
  m.tag_keys = {};
  m.topic_tags = {{"plant", 1}, {"line", 3}, {"missing", 9}};
  m.field_keys = {"rpm"};
  m.time_key = "";
  std::string why;
  const auto p = map_message(m, "plant/7/line/b", R"({"rpm":1200,"temp":50,"ok":true})", 5, why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->tags, (decltype(p->tags){{"line", "b"}, {"plant", "7"}}));
  EXPECT_EQ(p->fields, (decltype(p->fields){{"rpm", 1200.0}}));
}

TEST(mqtt_mapping, refuses_what_is_not_an_object_or_has_no_field) {
  std::string why;
  EXPECT_FALSE(map_message(mqtt_mapping{}, "sensor/x", "21.5", 1, why));
  EXPECT_EQ(why, "the payload is not a JSON object");
  EXPECT_FALSE(
      map_message(mqtt_mapping{}, "sensor/x", R"({"device_id":"a","timestamp":1})", 1, why));
  EXPECT_EQ(why, "the payload has no field to store");
}

TEST(mqtt_mapping, rfc3339_forms) {
  EXPECT_EQ(parse_rfc3339("1970-01-02"), 86'400'000'000'000LL);
  EXPECT_EQ(parse_rfc3339("1970-01-01 00:00:01.5"), 1'500'000'000LL);
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00.123456789123Z"), 123'456'789LL);
  EXPECT_FALSE(parse_rfc3339("1970-13-01"));
  EXPECT_FALSE(parse_rfc3339("1970-01-01T00:00:00Zjunk"));
  EXPECT_FALSE(parse_rfc3339("1970-01-01T00:00:00+0900"));
}

TEST(mqtt_mapping, config_entries_parse_with_every_key) {
  std::string error;
  auto mapping = parse_mqtt_mapping(
      R"({"filter":"factory/+/telemetry","database":"plant","measurement":"telemetry",)"
      R"("tags":["line"],"topic_tags":{"site":1},"fields":["t","rh"],"time_key":""})",
      error);
  ASSERT_TRUE(mapping) << error;
  EXPECT_EQ(mapping->filter, "factory/+/telemetry");
  EXPECT_EQ(mapping->database, "plant");
  EXPECT_EQ(mapping->measurement, "telemetry");
  EXPECT_EQ(mapping->tag_keys, std::vector<std::string>{"line"});
  ASSERT_EQ(mapping->topic_tags.size(), 1u);
  EXPECT_EQ(mapping->topic_tags[0], (std::pair<std::string, std::size_t>{"site", 1}));
  EXPECT_EQ(mapping->field_keys, (std::vector<std::string>{"t", "rh"}));
  EXPECT_EQ(mapping->time_key, "");

  std::string why;
  auto p =
      map_message(*mapping, "factory/seoul/telemetry", R"({"line":"a","t":21.5,"x":1})", 7, why);
  ASSERT_TRUE(p) << why;
  EXPECT_EQ(p->timestamp_ns, 7);
  EXPECT_EQ(p->tags,
            (std::vector<std::pair<std::string, std::string>>{{"line", "a"}, {"site", "seoul"}}));
  ASSERT_EQ(p->fields.size(), 1u);
  EXPECT_EQ(p->fields[0].first, "t");
}

TEST(mqtt_mapping, config_defaults_database_nimbus_and_the_timestamp_key) {
  std::string error;
  auto mapping = parse_mqtt_mapping(R"({"filter":"a/#","measurement":"m"})", error);
  ASSERT_TRUE(mapping) << error;
  EXPECT_EQ(mapping->database, "nimbus");
  EXPECT_TRUE(mapping->tag_keys.empty());
  EXPECT_EQ(mapping->time_key, "timestamp");
}

TEST(mqtt_mapping, config_errors_name_the_key) {
  const std::pair<const char*, const char*> cases[] = {
      {R"([])", "must be a table"},
      {R"({"measurement":"m"})", "filter is required"},
      {R"({"filter":"a"})", "measurement is required"},
      {R"({"filter":"a","measurement":"m","tag":["x"]})", "unknown key 'tag'"},
      {R"({"filter":"a","measurement":"m","tags":"x"})", "tags must be a list of strings"},
      {R"({"filter":"a","measurement":"m","tags":[""]})", "tags must be a list of non-empty"},
      {R"({"filter":"a","measurement":"m","topic_tags":{"s":-1}})", "topic_tags.s must be"},
      {R"({"filter":"a","measurement":"","tags":[]})", "measurement must be a non-empty"},
      {R"({"filter":"a","measurement":"m","time_key":3})", "time_key must be a string"},
  };
  for (const auto& [json, expected] : cases) {
    std::string error;
    EXPECT_FALSE(parse_mqtt_mapping(json, error)) << json;
    EXPECT_NE(error.find(expected), std::string::npos) << json << " -> " << error;
  }
}

}  // namespace
}  // namespace nimbus::tsdb
