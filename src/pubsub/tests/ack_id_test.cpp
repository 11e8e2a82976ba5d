// Ack ids: round trips, URL/JSON safety, and that anything else decodes as nullopt.
#include "pubsub/ack_id.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace nimbus::pubsub {
namespace {

constexpr std::string_view base64url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::vector<ack_token> sample_tokens() {
  constexpr auto max32 = std::numeric_limits<std::uint32_t>::max();
  constexpr auto max64 = std::numeric_limits<std::uint64_t>::max();
  return {
      ack_token{0, 0, 0, 0},
      ack_token{0, 1, 0, 1},
      ack_token{0, 7, 123'456, 3},
      ack_token{3, 0x01020304, 0x0102030405060708ULL, 42},
      ack_token{max32, max32, max64, max32},
  };
}

TEST(pubsub_ack_id, round_trips) {
  for (const auto& token : sample_tokens()) {
    const std::string id = encode_ack_id(token);
    const auto decoded = decode_ack_id(id);
    ASSERT_TRUE(decoded.has_value()) << id;
    EXPECT_EQ(*decoded, token) << id;
  }
}

TEST(pubsub_ack_id, is_fixed_length_base64url_without_padding) {
  for (const auto& token : sample_tokens()) {
    const std::string id = encode_ack_id(token);
    EXPECT_EQ(id.size(), ack_id_length);
    for (char c : id) EXPECT_NE(base64url_alphabet.find(c), std::string_view::npos) << id;
  }
}

TEST(pubsub_ack_id, differs_per_token) {
  const auto tokens = sample_tokens();
  for (std::size_t i = 0; i < tokens.size(); ++i)
    for (std::size_t j = i + 1; j < tokens.size(); ++j)
      EXPECT_NE(encode_ack_id(tokens[i]), encode_ack_id(tokens[j]));
  // The version alone changes the id.
  EXPECT_NE(encode_ack_id(ack_token{0, 1, 5, 1}), encode_ack_id(ack_token{0, 1, 5, 2}));
}

TEST(pubsub_ack_id, any_changed_character_is_refused) {
  const std::string id = encode_ack_id(ack_token{1, 99, 1'000'000, 2});
  for (std::size_t at = 0; at < id.size(); ++at) {
    for (char c : base64url_alphabet) {
      if (c == id[at]) continue;
      std::string tampered = id;
      tampered[at] = c;
      EXPECT_FALSE(decode_ack_id(tampered).has_value()) << tampered;
    }
  }
}

TEST(pubsub_ack_id, wrong_length_or_alphabet_is_refused) {
  const std::string id = encode_ack_id(ack_token{0, 1, 2, 3});
  EXPECT_FALSE(decode_ack_id("").has_value());
  EXPECT_FALSE(decode_ack_id(id.substr(0, id.size() - 1)).has_value());
  EXPECT_FALSE(decode_ack_id(id + "A").has_value());
  EXPECT_FALSE(decode_ack_id(id + "=").has_value());
  std::string standard = id;
  standard[5] = '+';  // standard base64, not base64url
  EXPECT_FALSE(decode_ack_id(standard).has_value());
  std::string with_nul = id;
  with_nul[0] = '\0';
  EXPECT_FALSE(decode_ack_id(with_nul).has_value());
}

TEST(pubsub_ack_id, random_strings_decode_without_crashing) {
  std::mt19937_64 generator(12345);
  std::uniform_int_distribution<int> length(0, 40);
  std::uniform_int_distribution<int> any_byte(0, 255);
  std::uniform_int_distribution<std::size_t> letter(0, base64url_alphabet.size() - 1);
  std::size_t accepted = 0;
  for (int i = 0; i < 10'000; ++i) {
    std::string text;
    const int size = i % 2 == 0 ? static_cast<int>(ack_id_length) : length(generator);
    for (int j = 0; j < size; ++j) {
      // Half the strings are well-formed base64url of the right length: only the check refuses.
      text += i % 2 == 0 ? base64url_alphabet[letter(generator)]
                         : static_cast<char>(any_byte(generator));
    }
    if (decode_ack_id(text).has_value()) ++accepted;
  }
  EXPECT_EQ(accepted, 0u);
}

}  // namespace
}  // namespace nimbus::pubsub
