#include "net/address.hpp"

#include <gtest/gtest.h>

namespace nimbus::net {
namespace {

TEST(address, parses_listener_addresses) {
  EXPECT_EQ(format_endpoint(*parse_address("127.0.0.1:1883")), "127.0.0.1:1883");
  EXPECT_EQ(format_endpoint(*parse_address("0.0.0.0:0")), "0.0.0.0:0");
  EXPECT_EQ(format_endpoint(*parse_address("[::1]:8883")), "[::1]:8883");
  EXPECT_EQ(format_endpoint(*parse_address("localhost:8080")), "127.0.0.1:8080");
  for (const char* bad : {"", "1883", "127.0.0.1:", "127.0.0.1:70000", "nohost:1", "1.2.3.4:12x"}) {
    EXPECT_FALSE(parse_address(bad)) << bad;
  }
  EXPECT_TRUE(is_off("off"));
  EXPECT_FALSE(is_off("127.0.0.1:1"));
}

}  // namespace
}  // namespace nimbus::net
