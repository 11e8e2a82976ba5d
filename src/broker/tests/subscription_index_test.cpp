#include "broker/subscription_index.hpp"

#include <gtest/gtest.h>

namespace nimbus::broker {
namespace {

std::vector<std::string> matched_ids(const subscription_index& index, std::string_view topic) {
  std::vector<subscription_match> out;
  std::vector<service_handler> services;
  index.match(topic, out, services);
  std::vector<std::string> ids;
  for (const auto& m : out) ids.push_back(m.target->client_id());
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(subscription_index, matches_exact_and_wildcards) {
  subscription_index index;
  auto a = std::make_shared<session>("a");
  auto b = std::make_shared<session>("b");
  auto c = std::make_shared<session>("c");
  index.subscribe("sensors/+/temp", std::nullopt, a, {1}, 0);
  index.subscribe("sensors/#", std::nullopt, b, {0}, 7);
  index.subscribe("#", std::nullopt, c, {0}, 0);
  EXPECT_EQ(matched_ids(index, "sensors/1/temp"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(matched_ids(index, "sensors"), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(matched_ids(index, "other"), (std::vector<std::string>{"c"}));
  EXPECT_EQ(matched_ids(index, "$SYS/broker/uptime"), (std::vector<std::string>{}));
  EXPECT_EQ(index.size(), 3U);
  EXPECT_TRUE(index.unsubscribe("sensors/#", std::nullopt, b.get()));
  EXPECT_FALSE(index.unsubscribe("sensors/#", std::nullopt, b.get()));
  EXPECT_EQ(matched_ids(index, "sensors/1/temp"), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(index.size(), 2U);
}

TEST(subscription_index, resubscribing_replaces_options) {
  subscription_index index;
  auto a = std::make_shared<session>("a");
  index.subscribe("t", std::nullopt, a, {0}, 0);
  index.subscribe("t", std::nullopt, a, {2}, 5);
  std::vector<subscription_match> out;
  std::vector<service_handler> services;
  index.match("t", out, services);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0].options.qos, 2);
  EXPECT_EQ(out[0].subscription_id, 5U);
}

TEST(subscription_index, shared_groups_deliver_to_one_member_in_turn) {
  subscription_index index;
  auto a = std::make_shared<session>("a");
  auto b = std::make_shared<session>("b");
  index.subscribe("jobs/#", std::string_view("workers"), a, {1}, 0);
  index.subscribe("jobs/#", std::string_view("workers"), b, {1}, 0);
  std::map<std::string, int> counts;
  for (int i = 0; i < 10; ++i) {
    auto ids = matched_ids(index, "jobs/1");
    ASSERT_EQ(ids.size(), 1U);
    ++counts[ids[0]];
  }
  EXPECT_EQ(counts["a"], 5);
  EXPECT_EQ(counts["b"], 5);
}

TEST(subscription_index, many_filters_prune_cleanly) {
  subscription_index index;
  auto a = std::make_shared<session>("a");
  for (int i = 0; i < 1000; ++i)
    index.subscribe("dev/" + std::to_string(i) + "/+", std::nullopt, a, {0}, 0);
  EXPECT_EQ(matched_ids(index, "dev/500/x").size(), 1U);
  for (int i = 0; i < 1000; ++i)
    EXPECT_TRUE(index.unsubscribe("dev/" + std::to_string(i) + "/+", std::nullopt, a.get()));
  EXPECT_EQ(index.size(), 0U);
  EXPECT_TRUE(matched_ids(index, "dev/500/x").empty());
}

}  // namespace
}  // namespace nimbus::broker
