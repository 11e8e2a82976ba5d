// The rules engine on a real broker: rules are created, changed and deleted through the engine's
// API, messages arrive as client publishes, republished messages are seen by a service of the
// test's own, and a new engine restores what was stored. The SQL dialect itself is sql/tests/'s.
#include "rules/engine.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "broker/authorizer.hpp"
#include "broker/broker.hpp"

namespace nimbus::rules {
namespace {

namespace json = boost::json;

struct published {
  std::string topic;
  std::string payload;
  std::string publisher;
  mqtt::properties props;
};

json::object object_of(std::string_view text) {
  return json::parse(json::string_view(text.data(), text.size())).as_object();
}

topic_rule rule_of(const std::string& name, std::string_view payload) {
  auto parsed = rule_from_payload(name, object_of(payload));
  if (const auto* refusal = std::get_if<rule_error>(&parsed)) {
    ADD_FAILURE() << "refused: " << refusal->message << "\n  " << payload;
    return topic_rule{};
  }
  return std::get<topic_rule>(std::move(parsed));
}

rule_error payload_refusal(const std::string& name, std::string_view payload) {
  auto parsed = rule_from_payload(name, object_of(payload));
  if (const auto* refusal = std::get_if<rule_error>(&parsed)) return *refusal;
  ADD_FAILURE() << "accepted: " << payload;
  return {rule_error::kind::conflict, "accepted"};
}

storage::ticket expect_ok(const std::variant<storage::ticket, rule_error>& outcome) {
  if (const auto* refusal = std::get_if<rule_error>(&outcome)) {
    ADD_FAILURE() << "refused: " << refusal->message;
    return {};
  }
  return std::get<storage::ticket>(outcome);
}

rule_error expect_refused(const std::variant<storage::ticket, rule_error>& outcome) {
  if (const auto* refusal = std::get_if<rule_error>(&outcome)) return *refusal;
  ADD_FAILURE() << "accepted";
  return {rule_error::kind::conflict, "accepted"};
}

std::vector<std::string> names_of(const std::vector<topic_rule>& listed) {
  std::vector<std::string> out;
  for (const auto& r : listed) out.push_back(r.name);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

constexpr std::string_view hot_rule = R"({
  "sql": "SELECT temperature, topic(2) AS device FROM 'sensor/+/data' WHERE temperature > 30",
  "actions": [{"republish": {"topic": "alerts/${topic(2)}", "qos": 1}}]
})";

// A broker with the engine on it and a service of the test's own recording `alerts/#`.
class rules_engine_test : public ::testing::Test {
 protected:
  rules_engine_test() { make(nullptr); }

  // A new broker and engine, as after a restart; `stored`: the database to restore from.
  void make(storage::write_queue* writer, storage::database* stored = nullptr,
            engine_settings settings = {}) {
    recorders_.clear();
    engine_.reset();
    broker_.reset();
    broker_ = std::make_unique<broker::broker>(config::mqtt_settings{}, clock_, auth_, nullptr);
    engine_ =
        std::make_unique<engine>(*broker_, writer, clock_, "123456789012", std::move(settings));
    if (stored != nullptr) engine_->restore(*stored);
    engine_->start();
    record("alerts/#");
  }

  void record(const std::string& filter) {
    recorders_.push_back(broker_->subscribe_service(
        filter, [this](const broker::message_ptr& msg, const broker::client_identity*) {
          std::lock_guard lock(mutex_);
          seen_.push_back({msg->topic, msg->payload, msg->publisher, msg->props});
          arrived_.notify_all();
        }));
  }

  void send(const std::string& topic, const std::string& payload) {
    auto msg = std::make_shared<broker::message>();
    msg->topic = topic;
    msg->payload = payload;
    msg->qos = 1;
    msg->publisher = "device-1";
    broker_->publish(std::move(msg));
  }

  std::vector<published> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(seen_, {});
  }

  // Waits (bounded) until `count` messages were recorded: actions that run on the engine's own
  // threads publish after send() returns.
  std::vector<published> take(std::size_t count) {
    std::unique_lock lock(mutex_);
    arrived_.wait_for(lock, std::chrono::seconds(10), [&] { return seen_.size() >= count; });
    return std::exchange(seen_, {});
  }

  core::manual_clock clock_;
  broker::local_authorizer auth_{true};
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<published> seen_;
  std::unique_ptr<broker::broker> broker_;
  std::unique_ptr<engine> engine_;
  std::vector<broker::bus_subscription> recorders_;
};

TEST_F(rules_engine_test, creates_gets_lists_replaces_disables_enables_and_deletes) {
  constexpr std::string_view all_sensors =
      R"({"sql": "SELECT * FROM 'sensor/#'", "description": "all", "actions": []})";
  expect_ok(engine_->create(rule_of("b_rule", all_sensors)));
  clock_.advance(std::chrono::seconds(10));
  expect_ok(engine_->create(rule_of("a_rule", R"({
    "sql": "SELECT temperature FROM 'other/+'", "ruleDisabled": true, "actions": [],
    "awsIotSqlVersion": "2015-10-08"})")));
  EXPECT_EQ(expect_refused(engine_->create(rule_of("a_rule", all_sensors))).what,
            rule_error::kind::already_exists);

  auto got = engine_->get("b_rule");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->name, "b_rule");
  EXPECT_EQ(got->sql, "SELECT * FROM 'sensor/#'");
  EXPECT_EQ(got->description, "all");
  EXPECT_EQ(got->created_at, 1'700'000'000);
  EXPECT_FALSE(got->disabled);
  EXPECT_EQ(got->sql_version, "2016-03-23");  // the default for new rules
  EXPECT_EQ(topic_pattern(*got), "sensor/#");
  const json::object body = rule_to_json(*got);
  EXPECT_EQ(body.at("ruleName"), "b_rule");
  EXPECT_EQ(body.at("sql"), "SELECT * FROM 'sensor/#'");
  EXPECT_EQ(body.at("description"), "all");
  EXPECT_EQ(body.at("createdAt"), 1'700'000'000);
  EXPECT_FALSE(body.at("ruleDisabled").as_bool());
  EXPECT_EQ(body.at("awsIotSqlVersion"), "2016-03-23");
  EXPECT_TRUE(body.at("actions").is_array());
  EXPECT_FALSE(body.contains("errorAction"));
  auto other = engine_->get("a_rule");
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->disabled);
  EXPECT_EQ(other->created_at, 1'700'000'010);
  EXPECT_EQ(other->sql_version, "2015-10-08");
  EXPECT_FALSE(engine_->get("c_rule"));

  EXPECT_EQ(names_of(engine_->list("", 10, std::nullopt, std::nullopt)),
            (std::vector<std::string>{"a_rule", "b_rule"}));
  EXPECT_EQ(names_of(engine_->list("a_rule", 10, std::nullopt, std::nullopt)),
            (std::vector<std::string>{"b_rule"}));
  EXPECT_EQ(names_of(engine_->list("", 1, std::nullopt, std::nullopt)),
            (std::vector<std::string>{"a_rule"}));
  EXPECT_EQ(names_of(engine_->list("", 10, std::string("sensor/#"), std::nullopt)),
            (std::vector<std::string>{"b_rule"}));
  EXPECT_EQ(names_of(engine_->list("", 10, std::string("nothing/#"), std::nullopt)),
            (std::vector<std::string>{}));
  EXPECT_EQ(names_of(engine_->list("", 10, std::nullopt, true)),
            (std::vector<std::string>{"a_rule"}));
  EXPECT_EQ(names_of(engine_->list("", 10, std::nullopt, false)),
            (std::vector<std::string>{"b_rule"}));

  // Replace keeps createdAt and takes everything else from the new payload.
  clock_.advance(std::chrono::seconds(50));
  expect_ok(engine_->replace(
      rule_of("b_rule", R"({"sql": "SELECT a FROM 'sensor/+/x'", "actions": []})")));
  got = engine_->get("b_rule");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->sql, "SELECT a FROM 'sensor/+/x'");
  EXPECT_EQ(got->description, "");
  EXPECT_EQ(got->created_at, 1'700'000'000);
  EXPECT_EQ(names_of(engine_->list("", 10, std::string("sensor/+/x"), std::nullopt)),
            (std::vector<std::string>{"b_rule"}));
  EXPECT_EQ(expect_refused(engine_->replace(rule_of("c_rule", all_sensors))).what,
            rule_error::kind::not_found);

  expect_ok(engine_->set_disabled("b_rule", true));
  EXPECT_TRUE(engine_->get("b_rule")->disabled);
  expect_ok(engine_->set_disabled("a_rule", false));
  EXPECT_FALSE(engine_->get("a_rule")->disabled);
  EXPECT_EQ(names_of(engine_->list("", 10, std::nullopt, true)),
            (std::vector<std::string>{"b_rule"}));
  EXPECT_EQ(expect_refused(engine_->set_disabled("c_rule", true)).what,
            rule_error::kind::not_found);

  EXPECT_TRUE(expect_ok(engine_->remove("b_rule")).is_none());  // no store: nothing to wait for
  EXPECT_FALSE(engine_->get("b_rule"));
  EXPECT_EQ(expect_refused(engine_->remove("b_rule")).what, rule_error::kind::not_found);
  EXPECT_EQ(names_of(engine_->list("", 10, std::nullopt, std::nullopt)),
            (std::vector<std::string>{"a_rule"}));
  const std::string metrics = engine_->prometheus_text();
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_matched_total{rule=\"a_rule\"} 0"));
  EXPECT_EQ(metrics.find("b_rule"), std::string::npos);
}

TEST_F(rules_engine_test, republishes_what_the_sql_selects_when_where_holds) {
  expect_ok(engine_->create(rule_of("hot", hot_rule)));
  send("sensor/dev1/data", R"({"temperature": 35, "humidity": 10})");
  send("sensor/dev2/data", R"({"temperature": 20})");
  send("sensor/dev3/other", R"({"temperature": 99})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].topic, "alerts/dev1");
  EXPECT_EQ(seen[0].payload, R"({"temperature":35,"device":"dev1"})");
  EXPECT_EQ(seen[0].publisher, "$aws/rules/hot");

  const std::string metrics = engine_->prometheus_text();
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_matched_total{rule=\"hot\"} 2"));
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_fired_total{rule=\"hot\"} 1"));
  EXPECT_TRUE(has_line(
      metrics,
      "nimbus_rule_action_total{rule=\"hot\",action=\"republish\",outcome=\"success\"} 1"));
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_errors_total{rule=\"hot\"} 0"));
}

TEST_F(rules_engine_test, a_where_that_is_false_does_not_fire) {
  expect_ok(engine_->create(rule_of("never", R"({
    "sql": "SELECT * FROM 'sensor/#' WHERE false",
    "actions": [{"republish": {"topic": "alerts/never"}}]})")));
  send("sensor/dev1/data", R"({"temperature": 35})");
  EXPECT_TRUE(take().empty());
  const std::string metrics = engine_->prometheus_text();
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_matched_total{rule=\"never\"} 1"));
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_fired_total{rule=\"never\"} 0"));
}

TEST_F(rules_engine_test, a_disabled_rule_does_not_fire) {
  expect_ok(engine_->create(rule_of("off", R"({
    "sql": "SELECT * FROM 'sensor/#'", "ruleDisabled": true,
    "actions": [{"republish": {"topic": "alerts/off"}}]})")));
  send("sensor/dev1/data", R"({"temperature": 35})");
  EXPECT_TRUE(take().empty());

  expect_ok(engine_->set_disabled("off", false));
  send("sensor/dev1/data", R"({"temperature": 35})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].topic, "alerts/off");

  expect_ok(engine_->set_disabled("off", true));
  send("sensor/dev1/data", R"({"temperature": 35})");
  EXPECT_TRUE(take().empty());

  // A replace of a disabled rule that enables it puts it on the bus; a delete takes it off.
  expect_ok(engine_->replace(rule_of("off", R"({
    "sql": "SELECT * FROM 'sensor/#'", "actions": [{"republish": {"topic": "alerts/on"}}]})")));
  send("sensor/dev1/data", R"({"temperature": 35})");
  seen = take();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].topic, "alerts/on");
  expect_ok(engine_->remove("off"));
  send("sensor/dev1/data", R"({"temperature": 35})");
  EXPECT_TRUE(take().empty());
}

TEST_F(rules_engine_test, a_rule_does_not_see_its_own_republish) {
  // Its FROM covers the topic it republishes to: without loop protection it would recurse.
  expect_ok(engine_->create(rule_of("echo", R"({
    "sql": "SELECT * FROM 'alerts/#'", "actions": [{"republish": {"topic": "alerts/echo"}}]})")));
  // Another rule still sees echo's republishes.
  expect_ok(engine_->create(rule_of("relay", R"({
    "sql": "SELECT * FROM 'alerts/echo'",
    "actions": [{"republish": {"topic": "relayed/echo"}}]})")));
  record("relayed/#");
  send("alerts/in", R"({"a": 1})");
  auto seen = take();
  std::vector<std::string> topics;
  for (const auto& p : seen) topics.push_back(p.topic);
  std::sort(topics.begin(), topics.end());
  EXPECT_EQ(topics, (std::vector<std::string>{"alerts/echo", "alerts/in", "relayed/echo"}));
  const std::string metrics = engine_->prometheus_text();
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_matched_total{rule=\"echo\"} 1"));
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_messages_matched_total{rule=\"relay\"} 1"));
}

TEST_F(rules_engine_test, a_loop_between_two_rules_ends) {
  expect_ok(engine_->create(rule_of(
      "ping",
      R"({"sql": "SELECT * FROM 'ping/a'", "actions": [{"republish": {"topic": "ping/b"}}]})")));
  expect_ok(engine_->create(rule_of(
      "pong",
      R"({"sql": "SELECT * FROM 'ping/b'", "actions": [{"republish": {"topic": "ping/a"}}]})")));
  record("ping/#");
  send("ping/a", R"({"n": 1})");
  EXPECT_EQ(take().size(), 9U);  // the original and eight republishes; the ninth is refused
  EXPECT_TRUE(has_line(engine_->prometheus_text(), "nimbus_rule_errors_total{rule=\"ping\"} 1"));
}

TEST_F(rules_engine_test, templates_headers_and_reserved_topics) {
  expect_ok(engine_->create(rule_of("headers", R"({
    "sql": "SELECT temperature FROM 'sensor/+/data'",
    "actions": [
      {"republish": {"topic": "alerts/${topic(2)}/${temperature}/${missing}", "headers": {
        "contentType": "application/json",
        "userProperties": [{"key": "device", "value": "${topic(2)}"}]}}},
      {"republish": {"topic": "$$aws/things/${topic(2)}/shadow/update"}},
      {"republish": {"topic": "$$aws/events/presence/connected/x"}}
    ]})")));
  record("$aws/things/#");
  send("sensor/dev1/data", R"({"temperature": 35})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 2U);
  std::sort(seen.begin(), seen.end(),
            [](const published& a, const published& b) { return a.topic < b.topic; });
  EXPECT_EQ(seen[0].topic, "$aws/things/dev1/shadow/update");
  EXPECT_EQ(seen[1].topic, "alerts/dev1/35/");  // Undefined expands to nothing
  ASSERT_TRUE(seen[1].props.content_type);
  EXPECT_EQ(*seen[1].props.content_type, "application/json");
  EXPECT_EQ(seen[1].props.user, (mqtt::user_properties{{"device", "dev1"}}));
  const std::string metrics = engine_->prometheus_text();
  // $aws/events/ is the broker's own: publishing there fails.
  EXPECT_TRUE(has_line(
      metrics,
      "nimbus_rule_action_total{rule=\"headers\",action=\"republish\",outcome=\"success\"} 2"));
  EXPECT_TRUE(has_line(
      metrics,
      "nimbus_rule_action_total{rule=\"headers\",action=\"republish\",outcome=\"failure\"} 1"));
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_errors_total{rule=\"headers\"} 1"));
}

TEST_F(rules_engine_test, a_failed_republish_goes_to_the_error_action) {
  expect_ok(engine_->create(rule_of("bad_topic", R"({
    "sql": "SELECT * FROM 'sensor/+/data'",
    "actions": [{"republish": {"topic": "alerts/${'x/#'}"}}],
    "errorAction": {"republish": {"topic": "alerts/errors"}}})")));
  send("sensor/dev1/data", R"({"t":1})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].topic, "alerts/errors");
  const json::object doc = object_of(seen[0].payload);
  EXPECT_EQ(doc.at("ruleName"), "bad_topic");
  EXPECT_EQ(doc.at("topic"), "sensor/dev1/data");
  EXPECT_EQ(doc.at("clientId"), "device-1");
  EXPECT_EQ(doc.at("base64OriginalPayload"), "eyJ0IjoxfQ==");
  EXPECT_EQ(doc.at("cloudwatchTraceId").as_string().size(), 36U);
  const auto& failures = doc.at("failures").as_array();
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].at("failedAction"), "RepublishAction");
  EXPECT_EQ(failures[0].at("failedResource"), "alerts/x/#");
  EXPECT_FALSE(failures[0].at("errorMessage").as_string().empty());
  EXPECT_TRUE(has_line(engine_->prometheus_text(),
                       "nimbus_rule_action_total{rule=\"bad_topic\",action=\"errorAction."
                       "republish\",outcome=\"success\"} 1"));
}

TEST_F(rules_engine_test, unknown_action_types_are_kept_verbatim) {
  constexpr std::string_view actions = R"([
    {"lambda": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}},
    {"somethingNew": {"nested": {"list": [1, "two", null, true]}, "n": 1.5}},
    {"republish": {"topic": "alerts/x", "roleArn": "arn:aws:iam::123456789012:role/r"}}
  ])";
  constexpr std::string_view error_action =
      R"({"sqs": {"queueUrl": "https://sqs.example/q", "roleArn": "arn:r", "useBase64": false}})";
  expect_ok(engine_->create(rule_of(
      "verbatim", R"({"sql": "SELECT * FROM 'sensor/#'", "actions": )" + std::string(actions) +
                      R"(, "errorAction": )" + std::string(error_action) + "}")));
  auto got = engine_->get("verbatim");
  ASSERT_TRUE(got);
  EXPECT_TRUE(json::value(got->actions) ==
              json::parse(json::string_view(actions.data(), actions.size())));
  ASSERT_TRUE(got->error_action);
  EXPECT_TRUE(json::value(*got->error_action) == json::value(object_of(error_action)));
  const json::object body = rule_to_json(*got);
  EXPECT_TRUE(body.at("actions") == json::parse(json::string_view(actions.data(), actions.size())));
  EXPECT_TRUE(body.at("errorAction") == json::value(object_of(error_action)));

  send("sensor/dev1/data", R"({"t": 1})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 1U);  // the republish runs, the others are counted
  EXPECT_EQ(seen[0].topic, "alerts/x");
  const std::string metrics = engine_->prometheus_text();
  EXPECT_TRUE(has_line(metrics,
                       "nimbus_rule_action_total{rule=\"verbatim\",action=\"lambda\",outcome=\"not_"
                       "executable\"} 1"));
  EXPECT_TRUE(has_line(metrics,
                       "nimbus_rule_action_total{rule=\"verbatim\",action=\"somethingNew\","
                       "outcome=\"not_executable\"} 1"));
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_errors_total{rule=\"verbatim\"} 0"));
}

TEST_F(rules_engine_test, basic_ingest_reaches_only_the_named_rule_without_its_prefix) {
  expect_ok(engine_->create(rule_of("hot", hot_rule)));
  expect_ok(engine_->create(rule_of("other", R"({
    "sql": "SELECT topic() AS t FROM 'sensor/#'",
    "actions": [{"republish": {"topic": "alerts/other"}}]})")));
  send("$aws/rules/hot/sensor/dev7/data", R"({"temperature": 40})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].topic, "alerts/dev7");
  EXPECT_EQ(seen[0].payload, R"({"temperature":40,"device":"dev7"})");

  send("$aws/rules/hot/elsewhere/dev7", R"({"temperature": 40})");  // not its FROM filter
  send("$aws/rules/nosuchrule/sensor/dev7/data", R"({"temperature": 40})");
  send("$aws/rules/hot", R"({"temperature": 40})");
  expect_ok(engine_->set_disabled("hot", true));
  send("$aws/rules/hot/sensor/dev7/data", R"({"temperature": 40})");
  EXPECT_TRUE(take().empty());
}

TEST_F(rules_engine_test, s3_writes_the_output_as_an_object_and_keeps_keys_in_their_bucket) {
  const auto objects = std::filesystem::temp_directory_path() /
                       ("nimbus-rules-objects-" + std::to_string(::getpid()));
  std::filesystem::remove_all(objects);
  engine_settings settings;
  settings.actions.objects_dir = objects;
  make(nullptr, nullptr, settings);
  expect_ok(engine_->create(rule_of("store", R"({
    "sql": "SELECT temperature FROM 'sensor/+/data'",
    "actions": [{"s3": {"roleArn": "arn:r", "bucketName": "readings", "key": "${topic(2)}/latest.json"}}],
    "errorAction": {"republish": {"topic": "alerts/errors"}}})")));
  send("sensor/dev1/data", R"({"temperature": 21.5, "humidity": 40})");
  send("sensor/../data", R"({"temperature": 22})");  // topic(2) is "..": refused, not written
  auto seen = take(1);
  ASSERT_EQ(seen.size(), 1U);
  const json::object doc = object_of(seen[0].payload);
  const auto& failure = doc.at("failures").as_array().at(0);
  EXPECT_EQ(failure.at("failedAction"), "S3Action");
  EXPECT_EQ(failure.at("failedResource"), "readings");

  // The good object may land after the refusal was published: wait for its count.
  const std::string success =
      "nimbus_rule_action_total{rule=\"store\",action=\"s3\",outcome=\"success\"} 1";
  for (int i = 0; i < 1000 && !has_line(engine_->prometheus_text(), success); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(has_line(engine_->prometheus_text(), success));
  std::ifstream object(objects / "readings" / "dev1" / "latest.json");
  std::stringstream content;
  content << object.rdbuf();
  EXPECT_EQ(content.str(), R"({"temperature":21.5})");
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(objects))
    if (entry.is_regular_file()) ++files;
  EXPECT_EQ(files, 1U);  // no temporary left, nothing outside the bucket
  engine_.reset();
  std::filesystem::remove_all(objects);
}

TEST_F(rules_engine_test, a_full_queue_drops_and_tells_the_error_action) {
  // An endpoint that accepts connections and never answers holds every run in the queue.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
  const auto port = silent.local_endpoint().port();
  engine_settings settings;
  settings.max_pending_actions = 2;
  settings.actions.http_timeout = std::chrono::milliseconds(60'000);
  make(nullptr, nullptr, settings);
  expect_ok(engine_->create(rule_of("slow", R"({
    "sql": "SELECT * FROM 'sensor/+/data'",
    "actions": [{"http": {"url": "http://127.0.0.1:)" +
                                                std::to_string(port) + R"(/in"}}],
    "errorAction": {"republish": {"topic": "alerts/errors"}}})")));
  for (int i = 0; i < 5; ++i) send("sensor/dev1/data", R"({"n": 1})");
  auto seen = take(3);
  ASSERT_EQ(seen.size(), 3U);
  for (const auto& s : seen) {
    const json::object doc = object_of(s.payload);
    const auto& failure = doc.at("failures").as_array().at(0);
    EXPECT_EQ(failure.at("failedAction"), "HttpAction");
    EXPECT_EQ(failure.at("errorMessage"), "The rule's action queue is full");
  }
  EXPECT_TRUE(
      has_line(engine_->prometheus_text(),
               "nimbus_rule_action_total{rule=\"slow\",action=\"http\",outcome=\"dropped\"} 3"));
  engine_.reset();  // drops the two runs still waiting
}

TEST_F(rules_engine_test, actions_without_a_target_are_counted_not_executable) {
  expect_ok(engine_->create(rule_of("streams", R"({
    "sql": "SELECT * FROM 'sensor/+/data'",
    "actions": [
      {"kinesis": {"roleArn": "arn:r", "streamName": "sensor-data", "partitionKey": "${topic(2)}"}},
      {"timestream": {"roleArn": "arn:r", "databaseName": "iot", "tableName": "readings",
                      "dimensions": [{"name": "device", "value": "${topic(2)}"}]}},
      {"s3": {"roleArn": "arn:r", "bucketName": "readings", "key": "k"}},
      {"http": {"url": "https://example.com/x", "auth": {"sigv4": {"signingRegion": "us-east-1",
                "serviceName": "execute-api", "roleArn": "arn:r"}}}}]})")));
  send("sensor/dev1/data", R"({"n": 1})");
  const std::string metrics = engine_->prometheus_text();
  for (const char* type : {"kinesis", "timestream", "s3", "http"})
    EXPECT_TRUE(
        has_line(metrics, std::string("nimbus_rule_action_total{rule=\"streams\",action=\"") +
                              type + "\",outcome=\"not_executable\"} 1"))
        << type << "\n"
        << metrics;
  EXPECT_TRUE(has_line(metrics, "nimbus_rule_errors_total{rule=\"streams\"} 0"));
}

TEST_F(rules_engine_test, kinesis_and_timestream_reach_their_sinks_once_plugged_in) {
  std::mutex mutex;
  std::vector<actions::stream_record> streamed;
  std::vector<actions::timestream_record> points;
  recorders_.clear();
  engine_.reset();
  engine_ = std::make_unique<engine>(*broker_, nullptr, clock_, "123456789012");
  engine_->action_runtime().send_streams_to(
      [&](actions::stream_record r, actions::completion done) {
        std::lock_guard lock(mutex);
        streamed.push_back(std::move(r));
        done(std::nullopt);
      });
  engine_->action_runtime().send_timestream_to(
      [&](actions::timestream_record r, actions::completion done) {
        std::lock_guard lock(mutex);
        points.push_back(std::move(r));
        done(std::nullopt);
      });
  engine_->start();
  expect_ok(engine_->create(rule_of("streams", R"({
    "sql": "SELECT temperature FROM 'sensor/+/data'",
    "actions": [
      {"kinesis": {"roleArn": "arn:r", "streamName": "sensor-data", "partitionKey": "${topic(2)}"}},
      {"timestream": {"roleArn": "arn:r", "databaseName": "iot", "tableName": "readings",
                      "dimensions": [{"name": "device", "value": "${topic(2)}"}],
                      "timestamp": {"value": "${t}", "unit": "SECONDS"}}}]})")));
  send("sensor/dev1/data", R"({"temperature": 21.5, "t": 1700000000})");
  std::lock_guard lock(mutex);
  ASSERT_EQ(streamed.size(), 1U);
  EXPECT_EQ(streamed[0].stream, "sensor-data");
  EXPECT_EQ(streamed[0].partition_key, "dev1");
  EXPECT_EQ(streamed[0].data, R"({"temperature":21.5})");
  ASSERT_EQ(points.size(), 1U);
  EXPECT_EQ(points[0].database, "iot");
  EXPECT_EQ(points[0].table, "readings");
  ASSERT_EQ(points[0].dimensions.size(), 1U);
  EXPECT_EQ(points[0].dimensions[0].second, "dev1");
  EXPECT_EQ(points[0].time_ns, 1'700'000'000'000'000'000);
}

TEST(rule_payload, action_refusals) {
  using kind = rule_error::kind;
  auto with_action = [](std::string_view action) {
    return R"({"sql": "SELECT * FROM 'a/+'", "actions": [)" + std::string(action) + "]}";
  };
  for (std::string_view bad : {
           R"({"http": {}})",
           R"({"http": {"url": "http://example.com/x"}})",
           R"({"http": {"url": "ftp://127.0.0.1/x"}})",
           R"({"http": {"url": "http://${topic(2)}/x"}})",
           R"({"http": {"url": "https://h/x", "headers": [{"key": "bad key", "value": "v"}]}})",
           R"({"http": {"url": "https://h/x", "headers": [{"key": "k"}]}})",
           R"({"s3": {"bucketName": "Bad_Bucket", "key": "k"}})",
           R"({"s3": {"bucketName": "ok-bucket"}})",
           R"({"kinesis": {"partitionKey": "p"}})",
           R"({"timestream": {"databaseName": "d", "tableName": "t"}})",
           R"({"timestream": {"databaseName": "d", "tableName": "t", "dimensions": []}})",
           R"({"timestream": {"databaseName": "d", "tableName": "t",
               "dimensions": [{"name": "n", "value": "v"}],
               "timestamp": {"value": "1", "unit": "DAYS"}}})",
       })
    EXPECT_EQ(payload_refusal("r", with_action(bad)).what, kind::invalid_request) << bad;
  for (
      std::string_view good : {
          R"({"http": {"url": "http://127.0.0.1:8080/${topic(2)}"}})",
          R"({"http": {"url": "http://localhost/x", "headers": [{"key": "x-d", "value": "${topic(2)}"}]}})",
          R"({"http": {"url": "https://${topic(2)}.example.com/x"}})",
          R"({"s3": {"bucketName": "my.bucket-1", "key": "${topic(2)}/${timestamp()}"}})",
          R"({"kinesis": {"streamName": "s"}})",
      })
    EXPECT_EQ(rule_of("r", with_action(good)).actions.size(), 1U) << good;
}

TEST(rule_payload, refusals) {
  using kind = rule_error::kind;
  EXPECT_EQ(payload_refusal("r", R"({"actions": []})").what, kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"({"sql": 7, "actions": []})").what, kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'"})").what, kind::invalid_request);

  const rule_error bad_sql = payload_refusal("r", R"({"sql": "SELECT a FROM", "actions": []})");
  EXPECT_EQ(bad_sql.what, kind::sql_parse);
  EXPECT_NE(bad_sql.message.find("at position"), std::string::npos) << bad_sql.message;
  EXPECT_EQ(
      payload_refusal("r", R"({"sql": "SELECT nosuchfunction(a) FROM 'a'", "actions": []})").what,
      kind::sql_parse);

  auto with_actions = [](int count) {
    std::string payload = R"({"sql": "SELECT * FROM 'a'", "actions": [)";
    for (int i = 0; i < count; ++i) {
      if (i > 0) payload += ",";
      payload += R"({"republish": {"topic": "out/)" + std::to_string(i) + R"("}})";
    }
    return payload + "]}";
  };
  EXPECT_EQ(payload_refusal("r", with_actions(11)).what, kind::invalid_request);
  EXPECT_EQ(rule_of("r", with_actions(10)).actions.size(), 10U);
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'", "actions": [
    {"republish": {"topic": "x"}, "lambda": {"functionArn": "f"}}]})")
                .what,
            kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'", "actions": ["republish"]})").what,
            kind::invalid_request);

  constexpr std::string_view fine = R"({"sql": "SELECT * FROM 'a'", "actions": []})";
  EXPECT_EQ(payload_refusal("bad-name", fine).what, kind::invalid_request);
  EXPECT_EQ(payload_refusal("", fine).what, kind::invalid_request);
  EXPECT_EQ(payload_refusal(std::string(129, 'a'), fine).what, kind::invalid_request);
  EXPECT_EQ(rule_of(std::string(128, 'a'), fine).name, std::string(128, 'a'));

  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'", "actions": [],
    "awsIotSqlVersion": "2020-01-01"})")
                .what,
            kind::invalid_request);
  EXPECT_EQ(rule_of("r", R"({"sql": "SELECT * FROM 'a'", "actions": [],
    "awsIotSqlVersion": "beta"})")
                .sql_version,
            "beta");
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'", "actions": [],
    "description": ")" + std::string(2049, 'd') +
                                     R"("})")
                .what,
            kind::invalid_request);
  // Republish's fields, and its templates, are checked at creation.
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'",
    "actions": [{"republish": {"topic": "x/${nosuchfunction(}"}}]})")
                .what,
            kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"json({"sql": "SELECT * FROM 'a'",
    "actions": [{"republish": {"topic": "x/${topic(2)"}}]})json")
                .what,
            kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'",
    "actions": [{"republish": {"topic": "x", "qos": 2}}]})")
                .what,
            kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'",
    "actions": [{"republish": {"qos": 0}}]})")
                .what,
            kind::invalid_request);
  EXPECT_EQ(payload_refusal("r", R"({"sql": "SELECT * FROM 'a'",
    "actions": [{"republish": {"topic": "x/#"}}]})")
                .what,
            kind::invalid_request);
}

// With a store: a new engine restores what the old one stored.
class stored_rules_test : public rules_engine_test {
 protected:
  stored_rules_test() {
    path_ = std::filesystem::temp_directory_path() /
            ("nimbus-rules-" + std::to_string(::getpid()) + ".db");
    remove_files();
    {
      storage::database db(path_.string(), "normal");
      engine::migrate(db);
    }
    writer_ = std::make_unique<storage::write_queue>(path_.string(), "normal",
                                                     std::chrono::milliseconds(1));
    make(writer_.get());
  }
  ~stored_rules_test() override {
    writer_->drain();
    recorders_.clear();
    engine_.reset();
    writer_.reset();
    remove_files();
  }

  void remove_files() {
    std::filesystem::remove(path_);
    std::filesystem::remove(path_.string() + "-wal");
    std::filesystem::remove(path_.string() + "-shm");
  }

  void restart() {
    writer_->drain();
    storage::database db(path_.string(), "normal");
    make(writer_.get(), &db);
  }

  std::filesystem::path path_;
  std::unique_ptr<storage::write_queue> writer_;
};

TEST_F(stored_rules_test, rules_come_back_after_a_restart) {
  EXPECT_FALSE(expect_ok(engine_->create(rule_of("hot", hot_rule))).is_none());
  expect_ok(engine_->create(rule_of("kept", R"({
    "sql": "SELECT n FROM 'other/#'", "description": "d", "awsIotSqlVersion": "2015-10-08",
    "actions": [{"lambda": {"functionArn": "f"}}],
    "errorAction": {"republish": {"topic": "alerts/errors", "qos": 1}}})")));
  expect_ok(engine_->set_disabled("kept", true));
  expect_ok(engine_->create(rule_of("gone", R"({"sql": "SELECT * FROM 'x'", "actions": []})")));
  expect_ok(engine_->remove("gone"));
  clock_.advance(std::chrono::seconds(30));
  expect_ok(engine_->replace(rule_of("hot", hot_rule)));  // createdAt stays 1'700'000'000
  const auto hot_before = engine_->get("hot");
  const auto kept_before = engine_->get("kept");
  ASSERT_TRUE(hot_before && kept_before);

  restart();
  EXPECT_EQ(names_of(engine_->list("", 10, std::nullopt, std::nullopt)),
            (std::vector<std::string>{"hot", "kept"}));
  const auto hot_after = engine_->get("hot");
  const auto kept_after = engine_->get("kept");
  ASSERT_TRUE(hot_after && kept_after);
  EXPECT_EQ(json::serialize(rule_to_json(*hot_after)), json::serialize(rule_to_json(*hot_before)));
  EXPECT_EQ(json::serialize(rule_to_json(*kept_after)),
            json::serialize(rule_to_json(*kept_before)));
  EXPECT_EQ(hot_after->created_at, 1'700'000'000);
  EXPECT_TRUE(kept_after->disabled);

  // The restored rules are on the bus again.
  send("sensor/dev9/data", R"({"temperature": 40})");
  auto seen = take();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].topic, "alerts/dev9");
  EXPECT_EQ(seen[0].payload, R"({"temperature":40,"device":"dev9"})");
}

}  // namespace
}  // namespace nimbus::rules
