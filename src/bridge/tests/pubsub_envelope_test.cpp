// The tutorial's MQTT <-> Pub/Sub shapes, byte for byte. Expected bytes were printed by running the
// tutorial's own lines (§4.1 _on_local_message, §4.2 _on_local_message/_on_cloud_message) in
// CPython 3.11 with time.time() fixed at the same instant.
#include "bridge/pubsub_envelope.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace nimbus::bridge {
namespace {

constexpr std::int64_t received_ns = 1'700'000'000'123'456'789;

using properties = std::vector<std::pair<std::string, std::string>>;

mqtt_message_view view(std::string_view topic, std::string_view payload, std::uint8_t qos = 0,
                       bool retain = false, const properties& user_properties = {}) {
  return {topic, payload, qos, retain, user_properties};
}

pubsub_publish wrapped(envelope_kind kind, const mqtt_message_view& message,
                       bool order_by_topic = false) {
  auto result = wrap_upstream(kind, message, received_ns, order_by_topic);
  if (auto* error = std::get_if<envelope_error>(&result)) ADD_FAILURE() << error->reason;
  return std::get_if<pubsub_publish>(&result) ? std::get<pubsub_publish>(result) : pubsub_publish{};
}

std::string wrap_error(envelope_kind kind, const mqtt_message_view& message,
                       bool order_by_topic = false) {
  auto result = wrap_upstream(kind, message, received_ns, order_by_topic);
  return std::holds_alternative<envelope_error>(result) ? std::get<envelope_error>(result).reason
                                                        : "<no error>";
}

TEST(PubsubEnvelope, SourceTopicIsTheTutorialsSection41) {
  const auto out = wrapped(
      envelope_kind::source_topic,
      view("sensor/temp",
           R"({"device_id":"pi-01","temperature":21.5,"humidity":40,"timestamp":1700000000})"));
  EXPECT_EQ(
      out.data,
      R"({"source_topic": "sensor/temp", "data": {"device_id": "pi-01", "temperature": 21.5, )"
      R"("humidity": 40, "timestamp": 1700000000}, "timestamp": 1700000000.1234567})");
  EXPECT_EQ(out.attributes, (decltype(out.attributes){{"source_topic", "sensor/temp"}}));
  EXPECT_EQ(out.ordering_key, "");

  // Not JSON: {"raw": text}; JSON that is not an object is kept as it is.
  EXPECT_EQ(wrapped(envelope_kind::source_topic, view("sensor/temp", R"(hello "world")")).data,
            R"({"source_topic": "sensor/temp", "data": {"raw": "hello \"world\""}, )"
            R"("timestamp": 1700000000.1234567})");
  EXPECT_EQ(wrapped(envelope_kind::source_topic, view("device/7/status", "online")).data,
            R"({"source_topic": "device/7/status", "data": {"raw": "online"}, )"
            R"("timestamp": 1700000000.1234567})");
  EXPECT_EQ(wrapped(envelope_kind::source_topic, view("sensor/t", "42")).data,
            R"({"source_topic": "sensor/t", "data": 42, "timestamp": 1700000000.1234567})");
  EXPECT_EQ(
      wrapped(envelope_kind::source_topic, view("sensor/t", "")).data,
      R"({"source_topic": "sensor/t", "data": {"raw": ""}, "timestamp": 1700000000.1234567})");
  // Non-ASCII: \u escapes in the JSON, UTF-8 as it came in the attribute.
  const auto korean =
      wrapped(envelope_kind::source_topic,
              view("\xEC\x84\xBC\xEC\x84\x9C/\xEC\x98\xA8\xEB\x8F\x84", "{\"\xEA\xB0\x92\": 1.0}"));
  EXPECT_EQ(korean.data,
            R"({"source_topic": "\uc13c\uc11c/\uc628\ub3c4", "data": {"\uac12": 1.0}, )"
            R"("timestamp": 1700000000.1234567})");
  EXPECT_EQ(korean.attributes.at("source_topic"),
            "\xEC\x84\xBC\xEC\x84\x9C/\xEC\x98\xA8\xEB\x8F\x84");
  // A whole second is still a float.
  auto whole =
      wrap_upstream(envelope_kind::source_topic, view("t", "1"), 1'700'000'000'000'000'000, false);
  EXPECT_EQ(std::get<pubsub_publish>(whole).data,
            R"({"source_topic": "t", "data": 1, "timestamp": 1700000000.0})");
}

TEST(PubsubEnvelope, SourceTopicRefusals) {
  // The tutorial's payload.decode('utf-8') raises: counted as an error, not forwarded.
  EXPECT_EQ(wrap_error(envelope_kind::source_topic, view("sensor/t", "\xFF\xFE")),
            "payload is not UTF-8");
  const std::string long_topic(1025, 'a');
  EXPECT_NE(wrap_error(envelope_kind::source_topic, view(long_topic, "1")).find("1024 bytes"),
            std::string::npos);
  EXPECT_EQ(wrap_error(envelope_kind::source_topic, view(std::string(1024, 'a'), "1")),
            "<no error>");
}

TEST(PubsubEnvelope, TopicPayloadIsTheTutorialsSection42) {
  const auto out = wrapped(envelope_kind::topic_payload, view("sensor/a", R"({"t":[1,2.0]})"));
  EXPECT_EQ(out.data, R"({"topic": "sensor/a", "payload": {"t": [1, 2.0]}})");
  EXPECT_TRUE(out.attributes.empty());
  EXPECT_EQ(wrapped(envelope_kind::topic_payload, view("s", "\"on\"")).data,
            R"({"topic": "s", "payload": "on"})");
  // json.loads raises on anything else: the tutorial prints the error and forwards nothing.
  EXPECT_EQ(wrap_error(envelope_kind::topic_payload, view("sensor/a", "online")),
            "payload is not JSON");
  EXPECT_EQ(wrap_error(envelope_kind::topic_payload, view("sensor/a", "")), "payload is not JSON");
}

TEST(PubsubEnvelope, RawKeepsBytesAndCarriesTheMessageInAttributes) {
  const properties props = {
      {"site", "plant-1"},
      {"site", "again"},                // repeated: the first one stays
      {"qos", "9"},                     // one of ours
      {"googled", "x"},                 // reserved by Pub/Sub
      {"", "x"},                        // empty name
      {std::string(257, 'k'), "x"},     // name too long
      {"big", std::string(1025, 'v')},  // value too long
      {"unicode", "\xEC\x84\xBC"},
  };
  const auto out =
      wrapped(envelope_kind::raw,
              view("sensor/raw", std::string_view("\x00\x01\xFF", 3), 1, true, props), true);
  EXPECT_EQ(out.data, std::string("\x00\x01\xFF", 3));
  EXPECT_EQ(out.attributes, (decltype(out.attributes){{"source_topic", "sensor/raw"},
                                                      {"qos", "1"},
                                                      {"retain", "true"},
                                                      {"site", "plant-1"},
                                                      {"unicode", "\xEC\x84\xBC"}}));
  EXPECT_EQ(out.dropped_properties, 6u);
  EXPECT_EQ(out.ordering_key, "sensor/raw");

  const auto plain = wrapped(envelope_kind::raw, view("a", "", 0, false));
  EXPECT_EQ(plain.attributes.at("qos"), "0");
  EXPECT_EQ(plain.attributes.at("retain"), "false");

  // Pub/Sub takes 100 attributes: ours are 3, so 97 user properties fit.
  properties many;
  for (int i = 0; i < 120; ++i) many.emplace_back("p" + std::to_string(i), "v");
  const auto capped = wrapped(envelope_kind::raw, view("a", "x", 0, false, many));
  EXPECT_EQ(capped.attributes.size(), 100u);
  EXPECT_EQ(capped.dropped_properties, 23u);
}

TEST(PubsubEnvelope, OrderingKeyIsTheTopicWhenAsked) {
  EXPECT_EQ(wrapped(envelope_kind::topic_payload, view("device/1/status", "1"), true).ordering_key,
            "device/1/status");
  EXPECT_NE(wrap_error(envelope_kind::topic_payload, view(std::string(1025, 't'), "1"), true)
                .find("ordering key"),
            std::string::npos);
}

const std::vector<std::string> everything = {"#"};

command unwrapped(std::string_view data, const std::vector<std::string>& allowed = everything) {
  auto result = unwrap_downstream(envelope_kind::source_topic, data, std::nullopt, allowed);
  if (auto* error = std::get_if<envelope_error>(&result)) ADD_FAILURE() << error->reason;
  return std::get_if<command>(&result) ? std::get<command>(result) : command{};
}

std::string unwrap_error(envelope_kind kind, std::string_view data,
                         std::optional<std::string_view> topic = std::nullopt,
                         const std::vector<std::string>& allowed = everything) {
  auto result = unwrap_downstream(kind, data, topic, allowed);
  return std::holds_alternative<envelope_error>(result) ? std::get<envelope_error>(result).reason
                                                        : "<no error>";
}

TEST(PubsubEnvelope, CommandsComeDownAsTheTutorialPublishesThem) {
  auto c = unwrapped(R"({"topic":"device/1/cmd","payload":{"device":"1"}})");
  EXPECT_EQ(c.topic, "device/1/cmd");
  EXPECT_EQ(c.payload, R"({"device": "1"})");
  // data.get("topic", "command"), data.get("payload", {}), then json.dumps(payload).
  c = unwrapped("{}");
  EXPECT_EQ(c.topic, "command");
  EXPECT_EQ(c.payload, "{}");
  EXPECT_EQ(unwrapped(R"({"payload":"on"})").payload, R"("on")");
  EXPECT_EQ(unwrapped(R"({"topic":"a","payload":null})").payload, "null");
  EXPECT_EQ(unwrapped("{\"payload\":{\"msg\":\"\xEC\x95\x88\xEB\x85\x95\"}}").payload,
            R"({"msg": "\uc548\ub155"})");
  EXPECT_EQ(unwrapped(R"({"topic":"a","topic":"b"})").topic, "b");  // dict keeps the last
  // Fields other than topic and payload are ignored, as the tutorial ignores them.
  EXPECT_EQ(unwrapped(R"({"topic":"a","qos":2,"extra":[1]})").topic, "a");
}

TEST(PubsubEnvelope, CommandRefusals) {
  const auto json = envelope_kind::topic_payload;
  EXPECT_EQ(unwrap_error(json, "not json"), "data is not JSON");
  EXPECT_EQ(unwrap_error(json, "\xFF"), "data is not JSON");
  EXPECT_EQ(unwrap_error(json, R"(["topic"])"), "data is not a JSON object");
  EXPECT_EQ(unwrap_error(json, R"("a/b")"), "data is not a JSON object");
  EXPECT_EQ(unwrap_error(json, R"({"topic":5})"), "\"topic\" is not a string");
  EXPECT_EQ(unwrap_error(json, R"({"topic":null})"), "\"topic\" is not a string");
  EXPECT_EQ(unwrap_error(json, R"({"topic":""})"), R"(topic "" is not a valid MQTT topic name)");
  EXPECT_EQ(unwrap_error(json, R"({"topic":"a/+"})"),
            R"(topic "a/+" is not a valid MQTT topic name)");
  EXPECT_EQ(unwrap_error(json, R"({"topic":"a\u0000b"})"),
            R"(topic "a\u0000b" is not a valid MQTT topic name)");
  // "#" does not match $ topics: they come down only when listed.
  EXPECT_EQ(unwrap_error(json, R"({"topic":"$SYS/x"})"),
            R"(topic "$SYS/x" is not in allowed_topics)");
  EXPECT_EQ(unwrap_error(json, R"({"topic":"$SYS/x"})", std::nullopt, {"#", "$SYS/#"}),
            "<no error>");
  EXPECT_EQ(unwrap_error(json, R"({"topic":"other"})", std::nullopt, {"device/+/cmd"}),
            R"(topic "other" is not in allowed_topics)");
  EXPECT_EQ(unwrap_error(json, "{}", std::nullopt, {"device/+/cmd"}),
            R"(topic "command" is not in allowed_topics)");
}

TEST(PubsubEnvelope, RawCommandsTakeTheTopicAttribute) {
  auto result = unwrap_downstream(envelope_kind::raw, std::string_view("\x01\x02", 2),
                                  "device/1/cmd", everything);
  ASSERT_TRUE(std::holds_alternative<command>(result));
  EXPECT_EQ(std::get<command>(result).topic, "device/1/cmd");
  EXPECT_EQ(std::get<command>(result).payload, std::string("\x01\x02", 2));
  result = unwrap_downstream(envelope_kind::raw, "not json", std::nullopt, everything);
  EXPECT_EQ(std::get<command>(result).topic, "command");
  EXPECT_EQ(std::get<command>(result).payload, "not json");
  EXPECT_EQ(unwrap_error(envelope_kind::raw, "x", "a/#"),
            R"(topic "a/#" is not a valid MQTT topic name)");
  EXPECT_EQ(unwrap_error(envelope_kind::raw, "x", "$aws/things/t/shadow/update"),
            R"(topic "$aws/things/t/shadow/update" is not in allowed_topics)");
}

}  // namespace
}  // namespace nimbus::bridge
