#include "config/settings.hpp"

#include <gtest/gtest.h>

namespace nimbus::config {
namespace {

TEST(settings, defaults_match_the_contract) {
  settings s;
  EXPECT_EQ(s.listeners.mqtt, "127.0.0.1:1883");
  EXPECT_EQ(s.listeners.mqtts, "0.0.0.0:8883");
  EXPECT_EQ(s.listeners.http, "127.0.0.1:8080");
  EXPECT_EQ(s.listeners.https, "0.0.0.0:8443");
  EXPECT_EQ(s.listeners.grpc, "127.0.0.1:8085");
  EXPECT_EQ(s.data_dir, "./nimbus-data");
  EXPECT_EQ(s.region, "us-east-1");
}

TEST(settings, toml_applies_and_validates) {
  settings s;
  EXPECT_EQ(
      apply_toml_text(
          s,
          "[mqtt]\nmax_packet_size = 2048\nallow_anonymous = false\n[listeners]\nmqtt = \"off\"\n",
          "t"),
      "");
  EXPECT_EQ(s.mqtt.max_packet_size, 2048U);
  EXPECT_FALSE(s.mqtt.allow_anonymous);
  EXPECT_EQ(s.listeners.mqtt, "off");
  EXPECT_NE(apply_toml_text(s, "[mqtt]\nmax_packet_size = 1\n", "t"), "");
  EXPECT_NE(apply_toml_text(s, "[mqtt]\nno_such = 1\n", "t"), "");
  EXPECT_NE(apply_toml_text(s, "[server]\nlog_level = \"loud\"\n", "t"), "");
  EXPECT_NE(apply_toml_text(s, "[mqtt\n", "t"), "");
  EXPECT_NE(apply_toml_text(s, "[mqtt]\nmax_packet_size = \"big\"\n", "t"), "");
}

TEST(settings, flags_override_and_round_trip_through_print_config) {
  settings s;
  EXPECT_EQ(set_setting(s, "max-packet-size", "4096"), "");
  EXPECT_EQ(set_setting(s, "mqtt", "127.0.0.1:0"), "");
  EXPECT_NE(set_setting(s, "max-packet-size", "4096x"), "");
  EXPECT_NE(set_setting(s, "threads", "-1"), "");
  settings copy;
  EXPECT_EQ(apply_toml_text(copy, to_toml(s), "printed"), "");
  for (const auto& d : describe_settings()) {
    EXPECT_EQ(setting_value(copy, d.key), setting_value(s, d.key)) << d.key;
    EXPECT_FALSE(d.description.empty()) << d.key;
  }
}

}  // namespace
}  // namespace nimbus::config
