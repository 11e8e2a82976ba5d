// Mosquitto's bridge topic lines: parsing (defaults, `""`, the validity table of mosquitto.conf(5))
// and remapping. Rows marked "mosquitto 2.0.11" were checked against that broker bridging to a
// second one (mosquitto_pub on one side, mosquitto_sub on the other).
#include "bridge/topic_mapping.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace nimbus::bridge {
namespace {

topic_mapping parsed(std::string_view line) {
  auto result = parse_topic_mapping(line);
  if (auto* problem = std::get_if<std::string>(&result)) ADD_FAILURE() << line << ": " << *problem;
  return std::get_if<topic_mapping>(&result) ? std::get<topic_mapping>(result) : topic_mapping{};
}

std::string error_of(std::string_view line) {
  auto result = parse_topic_mapping(line);
  return std::holds_alternative<std::string>(result) ? std::get<std::string>(result) : "";
}

TEST(TopicMapping, DefaultsAreOutQos0WithoutPrefixes) {
  const auto m = parsed("sensor/#");
  EXPECT_EQ(m.pattern, "sensor/#");
  EXPECT_EQ(m.direction, topic_direction::out);
  EXPECT_EQ(m.qos, 0);
  EXPECT_EQ(m.local_prefix, "");
  EXPECT_EQ(m.remote_prefix, "");
  EXPECT_FALSE(m.has_prefix());
  EXPECT_EQ(m.local_subscription_filter(), "sensor/#");
  EXPECT_EQ(m.remote_subscription_filter(), "sensor/#");
}

TEST(TopicMapping, ReadsEachPart) {
  const auto m = parsed("a/+/b both 2 local/ remote/");
  EXPECT_EQ(m.pattern, "a/+/b");
  EXPECT_EQ(m.direction, topic_direction::both);
  EXPECT_EQ(m.qos, 2);
  EXPECT_EQ(m.local_subscription_filter(), "local/a/+/b");
  EXPECT_EQ(m.remote_subscription_filter(), "remote/a/+/b");
  EXPECT_TRUE(m.is_in());
  EXPECT_TRUE(m.is_out());
  // Direction in any case (strcasecmp), runs of blanks, a local prefix alone.
  EXPECT_EQ(parsed("a/# IN 1").direction, topic_direction::in);
  EXPECT_EQ(parsed("  a/#   Both\t1  L/ ").remote_prefix, "");
  EXPECT_EQ(parsed("a/# in 1 L/").local_prefix, "L/");
  EXPECT_EQ(parsed("a/# in 1 \"\" R/").local_prefix, "");
  EXPECT_EQ(parsed("a/# in 1 \"\" \"\""), (topic_mapping{"a/#", topic_direction::in, 1, "", ""}));
}

// mosquitto.conf(5)'s table: pattern, local prefix, remote prefix -> validity and full topics.
struct validity_row {
  std::string_view line;
  bool is_valid;
  std::string_view full_local;
  std::string_view full_remote;
};

TEST(TopicMapping, ManPageValidityTable) {
  const validity_row rows[] = {
      {"pattern both 0 L/ R/", true, "L/pattern", "R/pattern"},
      {"pattern both 0 L/ \"\"", true, "L/pattern", "pattern"},
      {"pattern both 0 \"\" R/", true, "pattern", "R/pattern"},
      {"pattern both 0 \"\" \"\"", true, "pattern", "pattern"},
      {"\"\" both 0 local remote", true, "local", "remote"},
      {"\"\" both 0 local \"\"", false, "", ""},
      {"\"\" both 0 \"\" remote", false, "", ""},
      {"\"\" both 0 \"\" \"\"", false, "", ""},
  };
  for (const auto& row : rows) {
    auto result = parse_topic_mapping(row.line);
    ASSERT_EQ(std::holds_alternative<topic_mapping>(result), row.is_valid) << row.line;
    if (!row.is_valid) continue;
    const auto& m = std::get<topic_mapping>(result);
    EXPECT_EQ(m.local_subscription_filter(), row.full_local) << row.line;
    EXPECT_EQ(m.remote_subscription_filter(), row.full_remote) << row.line;
    // "if you publish to L/topic on the local broker, the remote receives R/topic", both ways.
    EXPECT_EQ(m.to_remote(row.full_local), std::string(row.full_remote)) << row.line;
    EXPECT_EQ(m.to_local(row.full_remote), std::string(row.full_local)) << row.line;
  }
}

struct invalid_row {
  std::string_view line;
  std::string_view error;  // a part of the message
};

TEST(TopicMapping, RefusesWhatMosquittoRefusesAndMore) {
  const invalid_row rows[] = {
      // Refused by mosquitto 2.0.11 at start.
      {"a/# sideways", "direction 'sideways' must be out, in or both"},
      {"a/# in 3", "QoS '3' must be 0, 1 or 2"},
      {"a/# in -1", "QoS '-1' must be 0, 1 or 2"},
      {"a/# in 1 L/# R/", "local prefix 'L/#' must be a topic name"},
      {"a/# in 1 L/ R/+", "remote prefix 'R/+' must be a topic name"},
      {"# in 1 L R/", "local prefix and pattern make 'L#', not a valid topic filter"},
      {"\"\" in 1 L", "an empty pattern needs both a local and a remote prefix"},
      {"\"\" in 1 \"\" R", "an empty pattern needs both a local and a remote prefix"},
      // Accepted by Mosquitto's atoi/strtok, failing later or silently ignored: refused here.
      {"a/# in 1x", "QoS '1x' must be 0, 1 or 2"},
      {"a/# in 1 L/ R/ extra", "unexpected 'extra' after the remote prefix"},
      {"a/# out # comment", "QoS '#' must be 0, 1 or 2"},
      {"a/# out 0 # comment", "local prefix '#' must be a topic name"},
      {"a#", "pattern 'a#' is not a valid topic filter"},
      {"a/#/b", "pattern 'a/#/b' is not a valid topic filter"},
      {"# out 0 \"\" R", "remote prefix and pattern make 'R#', not a valid topic filter"},
      {"$share/g/a out", "shared subscription"},
      {"", "empty topic line"},
      {"   ", "empty topic line"},
  };
  for (const auto& row : rows) {
    const auto error = error_of(row.line);
    EXPECT_NE(error.find(row.error), std::string::npos)
        << "'" << row.line << "' gave '" << error << "'";
  }
  // The NUL character has no place in an MQTT topic (4.7.3).
  EXPECT_FALSE(std::holds_alternative<topic_mapping>(
      make_topic_mapping("a/#", topic_direction::out, 0, std::string("L\0x/", 4), "")));
  EXPECT_FALSE(std::holds_alternative<topic_mapping>(
      make_topic_mapping("a/#", topic_direction::out, 3, "", "")));
}

// One mapping, one message: the topic on the other side, or "-" for none.
struct remap_row {
  std::string_view line;
  bool is_outgoing;  // a local message going out; else a remote one coming in
  std::string_view topic;
  std::string_view expected;
};

TEST(TopicMapping, RemapsAsMosquitto) {
  const remap_row rows[] = {
      // mosquitto 2.0.11
      {"a/# out 0 L/ R/", true, "L/a/b", "R/a/b"},
      {"# out 0 L/ R/", true, "L/x", "R/x"},
      {"# out 0 L/ R/", true, "L", "R/L"},  // "L" matches "L/#" but has no "L/" to strip
      {"# in 0 L/ R/", false, "R", "L/R"},
      {"a/# out 0 L R", true, "La/b", "Ra/b"},  // prefixes are glued as strings
      {"\"\" out 0 local/t remote/t", true, "local/t", "remote/t"},
      {"\"\" in 0 local/t remote/t", false, "remote/t", "local/t"},
      {"a/# out 0 \"\" R/", true, "a/x", "R/a/x"},
      {"a/# in 0 \"\" R/", false, "R/a/x", "a/x"},
      {"a/# in 0 L/", false, "a/x", "L/a/x"},
      {"# out 0", true, "$SYS/x", "-"},  // a leading wildcard never matches a $ topic
      {"# out 0 L/ R/", true, "L/$x", "R/$x"},
      {"clients/total in 0 test/mosquitto/org/ $SYS/broker/", false, "$SYS/broker/clients/total",
       "test/mosquitto/org/clients/total"},
      // Direction, matching, wildcards.
      {"a/# in", true, "a/x", "-"},
      {"a/# out", false, "a/x", "-"},
      {"a/# both", true, "a/x", "a/x"},
      {"a/# both", false, "a/x", "a/x"},
      {"a/# out 0 L/ R/", true, "a/x", "-"},
      {"a/# out 0 L/ R/", true, "L/b/x", "-"},
      {"a/# out 0 L/ R/", true, "L/a", "R/a"},  // "a/#" also matches "a"
      {"+/b both 1 x/ y/", false, "y/a/b", "x/a/b"},
      {"+/b both 1 x/ y/", true, "x/a/b", "y/a/b"},
      {"+/b both 1 x/ y/", true, "x/a/c", "-"},
      {"# out 0 L/ \"\"", true, "L/", ""},  // empty: the caller drops it as invalid
      {"# out 0 L/ R/", true, "L/", "R/"},
  };
  for (const auto& row : rows) {
    const auto m = parsed(row.line);
    const auto got = row.is_outgoing ? m.to_remote(row.topic) : m.to_local(row.topic);
    EXPECT_EQ(got.value_or("-"), row.expected)
        << row.line << (row.is_outgoing ? " out " : " in ") << row.topic;
  }
}

std::vector<topic_mapping> mappings(std::initializer_list<std::string_view> lines) {
  std::vector<topic_mapping> out;
  for (const auto line : lines) out.push_back(parsed(line));
  return out;
}

TEST(TopicMapping, PrefixedMappingsWinThenFirstInOrder) {
  // mosquitto 2.0.11: a prefixed mapping is used even when an unprefixed one comes first.
  auto in = mappings({"# in 0", "x/# in 0 \"\" r/"});
  auto mapped = map_in(in, "r/x/1");
  ASSERT_TRUE(mapped);
  EXPECT_EQ(mapped->topic, "x/1");
  EXPECT_EQ(mapped->mapping, &in[1]);
  in = mappings({"x/# in 0 \"\" r/", "# in 0"});
  EXPECT_EQ(map_in(in, "r/x/1")->topic, "x/1");
  EXPECT_EQ(map_in(in, "other")->topic, "other");  // unprefixed: unchanged

  const auto out = mappings({"a/# out 0 L1/ R1/", "a/# out 0 L1/ R2/", "a/# out 2",
                             "a/# out 0 \"\" R/", "b/# in 1 \"\" R/"});
  EXPECT_EQ(map_out(out, "L1/a/1")->topic, "R1/a/1");
  mapped = map_out(out, "a/1");
  ASSERT_TRUE(mapped);
  EXPECT_EQ(mapped->topic, "R/a/1");
  EXPECT_EQ(mapped->mapping, &out[3]);
  EXPECT_FALSE(map_out(out, "b/1"));  // only an in mapping matches
  EXPECT_FALSE(map_out(out, "c/1"));
  EXPECT_EQ(map_in(out, "R/b/1")->topic, "b/1");
  EXPECT_FALSE(map_in(out, "R/a/1"));  // out mappings are not used for incoming messages
}

TEST(TopicMapping, EffectiveQosIsTheSmaller) {
  const auto m = parsed("a/# out 1");
  EXPECT_EQ(effective_qos(0, m), 0);
  EXPECT_EQ(effective_qos(1, m), 1);
  EXPECT_EQ(effective_qos(2, m), 1);
  EXPECT_EQ(effective_qos(2, parsed("a/# out 2")), 2);
  EXPECT_EQ(effective_qos(2, parsed("a/#")), 0);
}

}  // namespace
}  // namespace nimbus::bridge
