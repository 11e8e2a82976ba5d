#include "mqtt/topic.hpp"

#include <gtest/gtest.h>

namespace nimbus::mqtt {
namespace {

struct match_case {
  const char* filter;
  const char* topic;
  bool matches;
};

// The examples of MQTT 4.7 plus the edges around empty levels and `$` topics.
constexpr match_case match_table[] = {
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true},
    {"#", "sport/tennis", true},
    {"#", "/", true},
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+", "finance", true},
    {"a/b", "a/b", true},
    {"a/b", "a/b/", false},
    {"a/b/", "a/b/", true},
    {"a//b", "a//b", true},
    {"a/+/b", "a//b", true},
    {"+/+/+", "a/b", false},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a", false},
    {"#", "$SYS/broker", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$aws/things/+/shadow/update", "$aws/things/pi/shadow/update", true},
    {"A/b", "a/b", false},
};

TEST(topic, match_table) {
  for (const auto& c : match_table) {
    EXPECT_EQ(topic_matches(c.filter, c.topic), c.matches) << c.filter << " vs " << c.topic;
  }
}

TEST(topic, filter_validity) {
  for (const char* ok :
       {"#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "$SYS/#", "sport/+/player1"}) {
    EXPECT_TRUE(is_valid_topic_filter(ok)) << ok;
  }
  for (const char* bad : {"", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "++"}) {
    EXPECT_FALSE(is_valid_topic_filter(bad)) << bad;
  }
}

TEST(topic, name_validity_and_limits) {
  EXPECT_TRUE(is_valid_topic_name("a/b"));
  EXPECT_TRUE(is_valid_topic_name("/"));
  EXPECT_FALSE(is_valid_topic_name(""));
  EXPECT_FALSE(is_valid_topic_name("a/+"));
  EXPECT_FALSE(is_valid_topic_name("a/#"));
  topic_limits limits{8, 3};
  EXPECT_TRUE(is_valid_topic_name("a/b/c", limits));
  EXPECT_FALSE(is_valid_topic_name("a/b/c/d", limits));
  EXPECT_FALSE(is_valid_topic_name("abcdefghi", limits));
  EXPECT_FALSE(is_valid_topic_filter("a/b/c/#", limits));
}

TEST(topic, shared_filters) {
  auto s = parse_shared_filter("$share/group/a/+/c");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->group, "group");
  EXPECT_EQ(s->filter, "a/+/c");
  EXPECT_FALSE(parse_shared_filter("$SYS/x"));
  EXPECT_TRUE(is_valid_shared_filter("$share/g/#"));
  EXPECT_FALSE(is_valid_shared_filter("$share/g"));
  EXPECT_FALSE(is_valid_shared_filter("$share//a"));
  EXPECT_FALSE(is_valid_shared_filter("$share/g+/a"));
  EXPECT_FALSE(is_valid_shared_filter("$share/g/a#"));
}

}  // namespace
}  // namespace nimbus::mqtt
