// The shadow service on a real broker: requests arrive through the bus as client publishes,
// answers leave as publishes on the reply topics, changes are stored and restored. The
// document semantics themselves are update_cases/'s.
#include "shadow/service.hpp"

#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include "broker/authorizer.hpp"
#include "broker/broker.hpp"

namespace nimbus::shadow {
namespace {

namespace json = boost::json;

struct published {
  std::string topic;
  json::object payload;
};

// A broker with the shadow service on it and a service of its own that records every reply.
class shadow_service_test : public ::testing::Test {
 protected:
  explicit shadow_service_test(storage::write_queue* writer = nullptr) { make(writer); }

  void make(storage::write_queue* writer) {
    recorder_.reset();
    shadows_.reset();
    broker_.reset();
    broker_ = std::make_unique<broker::broker>(config::mqtt_settings{}, clock_, auth_, nullptr);
    shadows_ = std::make_unique<service>(*broker_, writer, clock_, config::shadow_settings{});
    shadows_->start();
    recorder_ = broker_->subscribe_service(
        "$aws/things/#", [this](const broker::message_ptr& msg, const broker::client_identity*) {
          if (parse_request_topic(msg->topic)) return;  // a request, not a reply
          std::lock_guard lock(mutex_);
          seen_.push_back({msg->topic, json::parse(msg->payload).as_object()});
        });
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

  core::manual_clock clock_;
  broker::local_authorizer auth_{true};
  std::unique_ptr<broker::broker> broker_;
  std::unique_ptr<service> shadows_;
  broker::bus_subscription recorder_;
  std::mutex mutex_;
  std::vector<published> seen_;
};

TEST(shadow_topics, parses_request_topics) {
  auto classic = parse_request_topic("$aws/things/pi-1/shadow/update");
  ASSERT_TRUE(classic);
  EXPECT_EQ(classic->thing_name, "pi-1");
  EXPECT_EQ(classic->shadow_name, "");
  EXPECT_EQ(classic->op, operation::update);
  auto named = parse_request_topic("$aws/things/pi-1/shadow/name/config/delete");
  ASSERT_TRUE(named);
  EXPECT_EQ(named->shadow_name, "config");
  EXPECT_EQ(named->op, operation::remove);
  EXPECT_FALSE(parse_request_topic("$aws/things/pi-1/shadow/update/accepted"));
  EXPECT_FALSE(parse_request_topic("$aws/things/pi-1/shadow/name/config/get/accepted"));
  EXPECT_FALSE(parse_request_topic("$aws/things/pi-1/shadow/other"));
  EXPECT_FALSE(parse_request_topic("$aws/things/pi-1/shadows/get"));
  EXPECT_FALSE(parse_request_topic("things/pi-1/shadow/get"));
  EXPECT_EQ(shadow_topic("pi-1", ""), "$aws/things/pi-1/shadow");
  EXPECT_EQ(shadow_topic("pi-1", "cfg"), "$aws/things/pi-1/shadow/name/cfg");
}

TEST_F(shadow_service_test, update_answers_accepted_then_delta_then_documents) {
  send("$aws/things/pi-1/shadow/update",
       R"({"state":{"desired":{"led":"on"}},"clientToken":"t-1"})");
  auto replies = take();
  ASSERT_EQ(replies.size(), 3U);
  EXPECT_EQ(replies[0].topic, "$aws/things/pi-1/shadow/update/accepted");
  EXPECT_EQ(replies[0].payload.at("version"), 1);
  EXPECT_EQ(replies[0].payload.at("clientToken"), "t-1");
  EXPECT_EQ(replies[1].topic, "$aws/things/pi-1/shadow/update/delta");
  EXPECT_EQ(replies[1].payload.at("state").at("led"), "on");
  EXPECT_EQ(replies[2].topic, "$aws/things/pi-1/shadow/update/documents");
  EXPECT_FALSE(replies[2].payload.contains("previous"));

  send("$aws/things/pi-1/shadow/update", R"({"state":{"reported":{"led":"on"}}})");
  replies = take();
  ASSERT_EQ(replies.size(), 2U);  // no delta: desired and reported agree
  EXPECT_EQ(replies[0].payload.at("version"), 2);
  EXPECT_EQ(replies[1].topic, "$aws/things/pi-1/shadow/update/documents");
  EXPECT_EQ(replies[1].payload.at("previous").at("version"), 1);

  send("$aws/things/pi-1/shadow/get", R"({"clientToken":"g"})");
  replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].topic, "$aws/things/pi-1/shadow/get/accepted");
  EXPECT_EQ(replies[0].payload.at("clientToken"), "g");
  EXPECT_EQ(replies[0].payload.at("version"), 2);
}

TEST_F(shadow_service_test, refusals_go_to_rejected_with_aws_codes) {
  send("$aws/things/pi-1/shadow/update", "{bad");
  auto replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].topic, "$aws/things/pi-1/shadow/update/rejected");
  EXPECT_EQ(replies[0].payload.at("code"), 400);

  send("$aws/things/pi-1/shadow/get", "");
  replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].topic, "$aws/things/pi-1/shadow/get/rejected");
  EXPECT_EQ(replies[0].payload.at("code"), 404);
  EXPECT_EQ(replies[0].payload.at("message"), "No shadow exists with name: 'pi-1'");

  send("$aws/things/pi-1/shadow/name/cfg/update", R"({"state":{"reported":{"a":1}}})");
  take();
  send("$aws/things/pi-1/shadow/name/cfg/update",
       R"({"state":{"reported":{"a":2}},"version":7,"clientToken":"v"})");
  replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].topic, "$aws/things/pi-1/shadow/name/cfg/update/rejected");
  EXPECT_EQ(replies[0].payload.at("code"), 409);
  EXPECT_EQ(replies[0].payload.at("clientToken"), "v");

  send("$aws/things/bad!name/shadow/update", R"({"state":{}})");
  replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].payload.at("code"), 400);
}

TEST_F(shadow_service_test, reply_topics_are_reserved_and_requests_are_not) {
  EXPECT_TRUE(broker_->is_reserved_topic("$aws/things/x/shadow/update/accepted"));
  EXPECT_TRUE(broker_->is_reserved_topic("$aws/things/x/shadow/get/rejected"));
  EXPECT_TRUE(broker_->is_reserved_topic("$aws/things/x/shadow/update/delta"));
  EXPECT_TRUE(broker_->is_reserved_topic("$aws/things/x/shadow/name/n/update/documents"));
  EXPECT_TRUE(broker_->is_reserved_topic("$aws/things/x/shadow/name/n/delete/accepted"));
  EXPECT_FALSE(broker_->is_reserved_topic("$aws/things/x/shadow/update"));
  EXPECT_FALSE(broker_->is_reserved_topic("$aws/things/x/shadow/name/n/get"));
  EXPECT_FALSE(broker_->is_reserved_topic("things/x/shadow/update/accepted"));
}

TEST_F(shadow_service_test, named_shadows_are_listed_and_deleted_with_their_thing) {
  for (const char* name : {"b", "a", "c"})
    send(std::string("$aws/things/pi-1/shadow/name/") + name + "/update",
         R"({"state":{"reported":{"x":1}}})");
  send("$aws/things/pi-1/shadow/update", R"({"state":{"reported":{"x":1}}})");
  send("$aws/things/pi-1/shadow/name/b/delete", "");
  std::vector<std::string> names;
  shadows_->list_named("pi-1", "", 10, [&](std::vector<std::string> n) { names = std::move(n); });
  EXPECT_EQ(names, (std::vector<std::string>{"a", "c"}));
  shadows_->list_named("pi-1", "a", 10, [&](std::vector<std::string> n) { names = std::move(n); });
  EXPECT_EQ(names, (std::vector<std::string>{"c"}));

  shadows_->delete_thing("pi-1", {});
  take();
  send("$aws/things/pi-1/shadow/get", "");
  auto replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].payload.at("code"), 404);
}

TEST_F(shadow_service_test, a_deleted_shadow_continues_its_version) {
  for (int i = 0; i < 3; ++i)
    send("$aws/things/pi-1/shadow/update", R"({"state":{"reported":{"x":1}}})");
  take();
  send("$aws/things/pi-1/shadow/delete", R"({"clientToken":"d"})");
  auto replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].topic, "$aws/things/pi-1/shadow/delete/accepted");
  EXPECT_EQ(replies[0].payload.at("version"), 3);
  send("$aws/things/pi-1/shadow/update", R"({"state":{"reported":{"x":1}}})");
  replies = take();
  ASSERT_FALSE(replies.empty());
  EXPECT_EQ(replies[0].payload.at("version"), 4);
  // After 48 hours AWS forgets the counter.
  send("$aws/things/pi-1/shadow/delete", "");
  clock_.advance(std::chrono::hours(49));
  take();
  send("$aws/things/pi-1/shadow/update", R"({"state":{"reported":{"x":1}}})");
  replies = take();
  ASSERT_FALSE(replies.empty());
  EXPECT_EQ(replies[0].payload.at("version"), 1);
}

TEST(shadow_service_limits, the_server_holds_at_most_max_shadows) {
  core::manual_clock clock;
  broker::local_authorizer auth(true);
  broker::broker b(config::mqtt_settings{}, clock, auth, nullptr);
  config::shadow_settings settings;
  settings.max_shadows = 2;
  service shadows(b, nullptr, clock, settings);
  shadows.start();
  std::vector<int> codes;
  auto update = [&](const std::string& thing) {
    shadows.handle({operation::update, thing, "", R"({"state":{"reported":{"x":1}}})"},
                   [&](answer a) {
                     auto* refused = std::get_if<rejection>(&a);
                     codes.push_back(refused ? refused->code : 200);
                   });
  };
  update("a");
  update("b");
  update("c");  // a third shadow: refused
  update("a");  // an existing one still changes
  EXPECT_EQ(codes, (std::vector<int>{200, 200, 400, 200}));
}

// With a store: answers wait for the commit, and a new service restores what was answered.
class stored_shadow_test : public shadow_service_test {
 protected:
  stored_shadow_test() : shadow_service_test(nullptr) {
    path_ = std::filesystem::temp_directory_path() /
            ("nimbus-shadow-" + std::to_string(::getpid()) + ".db");
    std::filesystem::remove(path_);
    {
      storage::database db(path_.string(), "normal");
      service::migrate(db);
    }
    writer_ = std::make_unique<storage::write_queue>(path_.string(), "normal",
                                                     std::chrono::milliseconds(1));
    make(writer_.get());
  }
  ~stored_shadow_test() override {
    writer_->drain();
    recorder_.reset();
    shadows_.reset();
    writer_.reset();
    std::filesystem::remove(path_);
    std::filesystem::remove(path_.string() + "-wal");
    std::filesystem::remove(path_.string() + "-shm");
  }

  std::filesystem::path path_;
  std::unique_ptr<storage::write_queue> writer_;
};

TEST_F(stored_shadow_test, accepted_updates_are_restored) {
  for (int i = 1; i <= 20; ++i)
    send("$aws/things/pi-" + std::to_string(i % 4) + "/shadow/name/s/update",
         R"({"state":{"reported":{"n":)" + std::to_string(i) + "}}}");
  writer_->drain();
  auto replies = take();
  std::size_t accepted = 0;
  for (const auto& r : replies) accepted += r.topic.ends_with("/update/accepted");
  EXPECT_EQ(accepted, 20U);

  make(writer_.get());  // a new broker and service, as after a restart
  {
    storage::database db(path_.string(), "normal");
    shadows_->restore(db);
  }
  send("$aws/things/pi-0/shadow/name/s/get", "");
  writer_->drain();
  replies = take();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].payload.at("version"), 5);
  EXPECT_EQ(replies[0].payload.at("state").at("reported").at("n"), 20);
}

TEST_F(stored_shadow_test, deletions_are_forgotten_after_48_hours) {
  auto rows = [this] {
    writer_->drain();
    storage::database db(path_.string(), "normal");
    auto count = db.prepare("SELECT COUNT(*) FROM shadows");
    count.step();
    return count.column_int(0);
  };
  send("$aws/things/pi-1/shadow/name/a/update", R"({"state":{"reported":{"x":1}}})");
  send("$aws/things/pi-1/shadow/name/b/update", R"({"state":{"reported":{"x":1}}})");
  send("$aws/things/pi-1/shadow/name/a/delete", "");
  EXPECT_EQ(rows(), 2);  // the deleted shadow's row keeps its version
  shadows_->purge_deleted();
  EXPECT_EQ(rows(), 2);
  clock_.advance(std::chrono::hours(49));
  shadows_->purge_deleted();
  EXPECT_EQ(rows(), 1);
}

TEST_F(stored_shadow_test, deleting_a_thing_keeps_shadows_written_after_it) {
  send("$aws/things/pi-1/shadow/update", R"({"state":{"reported":{"x":1}}})");
  writer_->drain();
  auto deleted_by = writer_->committed();
  send("$aws/things/pi-1/shadow/name/late/update", R"({"state":{"reported":{"x":2}}})");
  writer_->drain();
  shadows_->delete_thing("pi-1", deleted_by);
  writer_->drain();
  take();
  send("$aws/things/pi-1/shadow/get", "");
  send("$aws/things/pi-1/shadow/name/late/get", "");
  writer_->drain();
  auto replies = take();
  ASSERT_EQ(replies.size(), 2U);
  EXPECT_EQ(replies[0].payload.at("code"), 404);
  EXPECT_EQ(replies[1].topic, "$aws/things/pi-1/shadow/name/late/get/accepted");
}

}  // namespace
}  // namespace nimbus::shadow
