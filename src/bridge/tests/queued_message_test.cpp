#include "bridge/queued_message.hpp"

#include <gtest/gtest.h>

#include <string>

namespace nimbus::bridge {
namespace {

queued_message sample() {
  queued_message m;
  m.topic = "sensor/7/temperature";
  m.payload = std::string("{\"t\":21.5}\0binary", 17);
  m.qos = 2;
  m.retain = true;
  m.properties = std::string("\x05\x02\x00\x00\x00\x3c", 6);
  m.expires_at_ms = 1'700'000'060'000;
  m.enqueued_ms = 1'700'000'000'000;
  return m;
}

TEST(queued_message, round_trips) {
  const auto m = sample();
  EXPECT_EQ(decode_queued_message(encode_queued_message(m)), m);
  queued_message empty;
  EXPECT_EQ(decode_queued_message(encode_queued_message(empty)), empty);
}

TEST(queued_message, layout_is_version_1) {
  const auto bytes = encode_queued_message(sample());
  ASSERT_EQ(bytes.size(), 24 + 20 + 6 + 17U);
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes[1], 2 | 4);                                  // QoS 2, retain
  EXPECT_EQ(bytes.substr(18, 2), std::string("\x14\x00", 2));  // topic length 20
  EXPECT_EQ(bytes.substr(20, 20), "sensor/7/temperature");
}

TEST(queued_message, refuses_what_it_did_not_write) {
  const auto bytes = encode_queued_message(sample());
  for (std::size_t cut = 0; cut < 24 + 20 + 6; ++cut)
    EXPECT_FALSE(decode_queued_message(bytes.substr(0, cut))) << cut;
  auto other_version = bytes;
  other_version[0] = 2;
  EXPECT_FALSE(decode_queued_message(other_version));
  auto qos_3 = bytes;
  qos_3[1] = 3;
  EXPECT_FALSE(decode_queued_message(qos_3));
  auto unknown_flag = bytes;
  unknown_flag[1] = 0x8;
  EXPECT_FALSE(decode_queued_message(unknown_flag));
}

}  // namespace
}  // namespace nimbus::bridge
