#include "seglog/crc32c.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::seglog {
namespace {

std::vector<unsigned char> ascending(std::size_t size) {
  std::vector<unsigned char> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<unsigned char>(i);
  return bytes;
}

// RFC 3720, appendix B.4, and the customary check value.
TEST(crc32c, matches_rfc3720_vectors) {
  const std::vector<unsigned char> zeros(32, 0x00);
  const std::vector<unsigned char> ones(32, 0xFF);
  const auto up = ascending(32);
  std::vector<unsigned char> down(up.rbegin(), up.rend());
  for (bool is_software : {false, true}) {
    auto crc = [&](const std::vector<unsigned char>& bytes) {
      return is_software ? crc32c_software(bytes.data(), bytes.size())
                         : crc32c(bytes.data(), bytes.size());
    };
    EXPECT_EQ(crc(zeros), 0x8A9136AAU) << is_software;
    EXPECT_EQ(crc(ones), 0x62A8AB43U) << is_software;
    EXPECT_EQ(crc(up), 0x46DD794EU) << is_software;
    EXPECT_EQ(crc(down), 0x113FDB5CU) << is_software;
  }
  EXPECT_EQ(crc32c(std::string("123456789")), 0xE3069283U);
  EXPECT_EQ(crc32c_software("123456789", 9), 0xE3069283U);
  EXPECT_EQ(crc32c(std::string()), 0U);
}

TEST(crc32c, continues_from_a_previous_result) {
  const std::string whole = "The quick brown fox jumps over the lazy dog, twice over.";
  for (std::size_t split = 0; split <= whole.size(); ++split) {
    const auto head = std::string_view(whole).substr(0, split);
    const auto tail = std::string_view(whole).substr(split);
    EXPECT_EQ(crc32c(tail, crc32c(head)), crc32c(whole)) << split;
    EXPECT_EQ(crc32c_software(tail.data(), tail.size(), crc32c_software(head.data(), head.size())),
              crc32c(whole))
        << split;
  }
}

// Every length and alignment around the 8-byte steps: the instruction path (when the CPU has
// it) and the tables agree.
TEST(crc32c, hardware_and_software_agree) {
  const auto bytes = ascending(300);
  for (std::size_t start = 0; start < 9; ++start) {
    for (std::size_t size = 0; start + size <= bytes.size(); size += 7) {
      EXPECT_EQ(crc32c(bytes.data() + start, size), crc32c_software(bytes.data() + start, size))
          << start << " " << size << " hardware=" << crc32c_is_hardware();
    }
  }
}

}  // namespace
}  // namespace nimbus::seglog
