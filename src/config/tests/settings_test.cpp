#include "config/settings.hpp"

#include <gtest/gtest.h>

namespace nimbus::config {
namespace {

TEST(settings, defaults_match_the_contract) {
  settings s;
  EXPECT_EQ(s.listeners.mqtt, "localhost:1883");
  EXPECT_EQ(s.listeners.mqtts, "0.0.0.0:8883");
  EXPECT_EQ(s.listeners.http, "localhost:8080");
  EXPECT_EQ(s.listeners.https, "0.0.0.0:8443");
  EXPECT_EQ(s.listeners.grpc, "localhost:8085");
  EXPECT_EQ(s.data_dir, "./nimbus-data");
  EXPECT_EQ(s.region, "us-east-1");
}

TEST(settings, listener_addresses_are_checked_before_anything_starts) {
  settings s;
  for (const char* good : {"127.0.0.1:1883", "localhost:0", "[::1]:8080", "0.0.0.0:65535", "off"})
    EXPECT_EQ(set_setting(s, "listeners.mqtt", good), "") << good;
  for (const char* bad : {"foo", "1883", ":1883", "127.0.0.1:", "127.0.0.1:65536", "::1:1883",
                          "127.0.0.1:http", "myhost:1883", "256.1.1.1:1883", "[::g]:1883"}) {
    auto error = set_setting(s, "listeners.mqtt", bad);
    EXPECT_NE(error.find("expected HOST:PORT, e.g. 127.0.0.1:1883"), std::string::npos) << bad;
  }
  EXPECT_EQ(s.listeners.mqtt, "off");  // the last good value: a refused one changes nothing
}

TEST(settings, hardening_limits_have_safe_defaults) {
  settings s;
  EXPECT_EQ(s.mqtt.connect_timeout, 10U);
  EXPECT_EQ(s.mqtt.max_connect_size, 64U * 1024);
  EXPECT_EQ(s.mqtt.max_client_id_length, 128U);
  EXPECT_EQ(s.mqtt.persistent_session_expiry, 3600U);
  EXPECT_EQ(s.mqtt.congestion_timeout, 5U);
  EXPECT_EQ(s.http.metrics, "auto");
  EXPECT_NE(set_setting(s, "http.metrics", "sometimes"), "");
  EXPECT_EQ(set_setting(s, "max-client-id-length", "65535"), "");  // MQTT's own limit reachable
  EXPECT_EQ(s.mqtt.max_client_id_length, 65535U);
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

TEST(settings, bridges_are_named_tables_kept_for_their_owner_and_printed_back) {
  settings s;
  EXPECT_EQ(apply_toml_text(s,
                            "[bridges.edge]\naddresses = [\"127.0.0.1:1883\"]\n"
                            "topic = \"sensor/# out 1\"\n"
                            "[pubsub_bridges.cloud]\nproject = \"p\"\ntopic = \"t\"\n"
                            "filters = [\"sensor/#\"]\n",
                            "t"),
            "");
  ASSERT_EQ(s.bridges.size(), 1U);
  EXPECT_EQ(s.bridges[0].name, "edge");
  EXPECT_NE(s.bridges[0].json.find("\"addresses\""), std::string::npos);
  ASSERT_EQ(s.pubsub_bridges.size(), 1U);
  EXPECT_EQ(s.pubsub_bridges[0].name, "cloud");
  settings copy;
  EXPECT_EQ(apply_toml_text(copy, to_toml(s), "printed"), "");
  ASSERT_EQ(copy.bridges.size(), 1U);
  EXPECT_EQ(copy.bridges[0].json, s.bridges[0].json);
  EXPECT_EQ(copy.pubsub_bridges[0].json, s.pubsub_bridges[0].json);
  settings bad;
  EXPECT_NE(apply_toml_text(bad, "bridges = 5\n", "t"), "");
  EXPECT_NE(apply_toml_text(bad, "[bridges]\nedge = 5\n", "t"), "");
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
