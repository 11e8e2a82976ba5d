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

}  // namespace
}  // namespace nimbus::tsdb
