// The MQTT <-> Pub/Sub bridge's link against a real broker and a real Pub/Sub service in a
// temp dir (no metadata writer), the broker's bus on one side and the service as the target on
// the other: "local", and gRPC through an in-process server on a loopback port. A manual clock
// makes the envelope's timestamp exact; the link's loop runs on a thread of its own. Every wait
// is bounded, so a bug fails a test instead of hanging it.
#include "bridge/pubsub_link.hpp"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>

#include "broker/broker.hpp"
#include "core/clock.hpp"
#include "pubsub/grpc_server.hpp"
#include "pubsub/service.hpp"

namespace nimbus::bridge {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto wait_limit = 10s;

// Polls `done` until it holds or the wait limit passes: for counters the link keeps.
bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + wait_limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// What a bus subscription received.
struct collector {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<broker::message_ptr> messages;

  std::vector<broker::message_ptr> wait_for(std::size_t count) {
    std::unique_lock lock(mutex);
    changed.wait_for(lock, wait_limit, [&] { return messages.size() >= count; });
    return messages;
  }
};

// The local target, whose Publish can be made to fail (UNAVAILABLE) as a remote link down does;
// it notes the largest batch it was given.
class switchable_target final : public pubsub_target {
 public:
  explicit switchable_target(std::unique_ptr<pubsub_target> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> is_down{false};
  std::atomic<int> largest_batch{0};

  void publish(const v1::PublishRequest& request,
               pubsub::reply<v1::PublishResponse> done) override {
    if (is_down) return done(pubsub::status::error(pubsub::code::unavailable, "down"), {});
    largest_batch = std::max(largest_batch.load(), request.messages_size());
    inner_->publish(request, std::move(done));
  }
  void pull(const v1::PullRequest& request, pubsub::reply<v1::PullResponse> done) override {
    inner_->pull(request, std::move(done));
  }
  void acknowledge(const v1::AcknowledgeRequest& request,
                   pubsub::reply<pubsub::empty> done) override {
    inner_->acknowledge(request, std::move(done));
  }
  void modify_ack_deadline(const v1::ModifyAckDeadlineRequest& request,
                           pubsub::reply<pubsub::empty> done) override {
    inner_->modify_ack_deadline(request, std::move(done));
  }
  void cancel() override { inner_->cancel(); }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<pubsub_target> inner_;
};

class pubsub_link_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("nimbus-pubsub-link-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    pubsub::service_settings settings;
    settings.dir = dir_ / "pubsub";
    settings.fsync = seglog::fsync_policy::never;
    service_ = std::make_unique<pubsub::service>(nullptr, clock_, settings);
    service_->start();
    broker_ = std::make_unique<broker::broker>(mqtt_settings_, clock_, auth_, nullptr);
    committer_ = std::make_unique<seglog::committer>(
        seglog::committer::options{seglog::fsync_policy::never, 1000ms, 1});
    loop_thread_ = std::thread([this] { loop_.run(); });

    create_topic("iot-sensor-data");
    create_subscription("sensor-sub", "iot-sensor-data");
    create_topic("commands");
    create_topic("dead-letters");
    create_subscription("commands-sub", "commands", "dead-letters");

    config_.name = "cloud";
    config_.is_local = true;
    config_.project = "p";
    config_.filters = {"sensor/#", "device/+/status", "sensor/+"};
    config_.topic = "iot-sensor-data";
    config_.subscription = "commands-sub";
  }

  void TearDown() override {
    link_.reset();
    // The service first: on the manual clock, only its stop() ends the pulls the link left
    // waiting, which the gRPC server's Shutdown would wait for.
    service_->stop();
    grpc_server_stop();
    work_.reset();
    loop_.stop();
    loop_thread_.join();
    service_.reset();
    broker_.reset();
    committer_.reset();
    fs::remove_all(dir_);
  }

  void start_link(std::unique_ptr<pubsub_target> target = nullptr) {
    if (!target) target = make_pubsub_target(config_, service_.get());
    link_ = std::make_unique<pubsub_link>(config_, std::move(target), *broker_, loop_, *committer_,
                                          clock_, dir_ / "bridges" / config_.name,
                                          core::backoff_options{1ms, 20ms});
    link_->start();
  }

  // Calls a service method and waits for its answer; the promise is shared with the callback,
  // which a failed test may leave to the service's stop().
  template <class Response, class Call>
  std::pair<pubsub::status, Response> call(Call start) {
    auto answered = std::make_shared<std::promise<std::pair<pubsub::status, Response>>>();
    auto future = answered->get_future();
    start([answered](pubsub::status s, Response r) {
      answered->set_value({std::move(s), std::move(r)});
    });
    if (future.wait_for(wait_limit) != std::future_status::ready)
      return {pubsub::status::error(pubsub::code::deadline_exceeded, "no answer"), {}};
    return future.get();
  }

  void create_topic(const std::string& id) {
    v1::Topic topic;
    topic.set_name("projects/p/topics/" + id);
    ASSERT_TRUE((call<v1::Topic>([&](auto done) {
                   service_->create_topic(topic, std::move(done));
                 }).first.ok()));
  }

  void create_subscription(const std::string& id, const std::string& topic,
                           const std::string& dead_letters = "") {
    v1::Subscription s;
    s.set_name("projects/p/subscriptions/" + id);
    s.set_topic("projects/p/topics/" + topic);
    if (!dead_letters.empty()) {
      s.mutable_dead_letter_policy()->set_dead_letter_topic("projects/p/topics/" + dead_letters);
      s.mutable_dead_letter_policy()->set_max_delivery_attempts(5);
    }
    ASSERT_TRUE((call<v1::Subscription>([&](auto done) {
                   service_->create_subscription(s, std::move(done));
                 }).first.ok()));
  }

  // Pulls (and acks) `count` messages from subscription `id`, waiting for them; with
  // `is_patient` false, what is there now.
  std::vector<v1::PubsubMessage> pull(const std::string& id, std::size_t count,
                                      bool is_patient = true) {
    std::vector<v1::PubsubMessage> out;
    const auto deadline = std::chrono::steady_clock::now() + (is_patient ? wait_limit : 0s);
    do {
      v1::PullRequest request;
      request.set_subscription("projects/p/subscriptions/" + id);
      request.set_max_messages(static_cast<std::int32_t>(count - out.size()));
      request.set_return_immediately(true);
      auto [outcome, response] =
          call<v1::PullResponse>([&](auto done) { service_->pull(request, std::move(done)); });
      if (!outcome.ok()) break;
      v1::AcknowledgeRequest acks;
      acks.set_subscription(request.subscription());
      for (const auto& received : response.received_messages()) {
        out.push_back(received.message());
        acks.add_ack_ids(received.ack_id());
      }
      if (acks.ack_ids_size() > 0)
        call<pubsub::empty>([&](auto done) { service_->acknowledge(acks, std::move(done)); });
      else
        std::this_thread::sleep_for(2ms);
    } while (out.size() < count && std::chrono::steady_clock::now() < deadline);
    return out;
  }

  void publish_command(const std::string& data,
                       const std::map<std::string, std::string>& attributes = {}) {
    v1::PublishRequest request;
    request.set_topic("projects/p/topics/commands");
    auto* message = request.add_messages();
    message->set_data(data);
    for (const auto& [key, value] : attributes) (*message->mutable_attributes())[key] = value;
    ASSERT_TRUE((call<v1::PublishResponse>([&](auto done) {
                   service_->publish(request, std::move(done));
                 }).first.ok()));
  }

  // Publishes as a device at QoS 1 would; true once its PUBACK would go (the link's hold
  // released, not failed), with the message durably queued by then.
  bool publish_as_device(const std::string& topic, const std::string& payload, bool retain = false,
                         mqtt::user_properties user = {}) {
    auto msg = std::make_shared<broker::message>();
    msg->topic = topic;
    msg->payload = payload;
    msg->qos = 1;
    msg->retain = retain;
    msg->props.user = std::move(user);
    msg->publisher = "device-1";
    auto acknowledged = std::make_shared<std::promise<bool>>();
    auto future = acknowledged->get_future();
    auto gate = std::make_shared<broker::congestion_gate>();
    gate->on_clear = [this, acknowledged, self = gate.get()] {
      acknowledged->set_value(!self->failed.load() && link_->queue().stats().enqueued > 0);
    };
    broker_->publish(std::move(msg), gate);
    gate->release();
    return future.wait_for(wait_limit) == std::future_status::ready && future.get();
  }

  // A Pub/Sub service counter, from its /metrics text.
  std::uint64_t metric(const std::string& family, const std::string& subscription) {
    const std::string key =
        family + "{subscription=\"projects/p/subscriptions/" + subscription + "\"} ";
    const std::string text = service_->prometheus_text();
    const auto at = text.find(key);
    return at == std::string::npos ? 0 : std::stoull(text.substr(at + key.size()));
  }

  // A gRPC server over the service on a loopback port; `token` non-empty: calls need it.
  int grpc_server_start(const std::string& token) {
    pubsub::call_gate gate;
    if (!token.empty())
      gate = [token](const std::string&,
                     std::string_view authorization) -> std::optional<pubsub::status> {
        if (authorization == "Bearer " + token) return std::nullopt;
        return pubsub::status::error(pubsub::code::unauthenticated, "a token is needed");
      };
    grpc_services_ = std::make_unique<pubsub::grpc_services>(*service_, gate);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(grpc_services_->publisher());
    builder.RegisterService(grpc_services_->subscriber());
    grpc_server_ = builder.BuildAndStart();
    return port;
  }
  void grpc_server_stop() {
    if (grpc_services_) grpc_services_->close_streams();
    if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now() + 2s);
    grpc_server_.reset();
    grpc_services_.reset();
  }

  core::manual_clock clock_;  // unix time 1,700,000,000 s
  fs::path dir_;
  config::mqtt_settings mqtt_settings_;
  broker::local_authorizer auth_{true};
  std::unique_ptr<pubsub::service> service_;
  std::unique_ptr<broker::broker> broker_;
  std::unique_ptr<seglog::committer> committer_;
  boost::asio::io_context loop_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      loop_.get_executor()};
  std::thread loop_thread_;
  std::unique_ptr<pubsub::grpc_services> grpc_services_;
  std::unique_ptr<grpc::Server> grpc_server_;
  pubsub_bridge config_;
  std::unique_ptr<pubsub_link> link_;
};

// ---- up

TEST_F(pubsub_link_test, forwards_in_the_tutorials_envelope_once_publish_returned_ids) {
  start_link();
  EXPECT_TRUE(publish_as_device("sensor/temp", R"({"t":21.5})"));
  EXPECT_TRUE(publish_as_device("device/d1/status", "online"));  // not JSON: {"raw": ...}
  EXPECT_TRUE(publish_as_device("other/x", "{}"));               // no filter matches
  EXPECT_TRUE(publish_as_device("sensor/hum", "[1,2]"));         // sensor/# and sensor/+: once
  EXPECT_EQ(link_->queue().stats().enqueued, 3u);  // each held its PUBACK until queued
  const auto got = pull("sensor-sub", 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].data(),
            R"({"source_topic": "sensor/temp", "data": {"t": 21.5}, "timestamp": 1700000000.0})");
  EXPECT_EQ(got[0].attributes().at("source_topic"), "sensor/temp");
  EXPECT_EQ(got[0].attributes_size(), 1);
  EXPECT_EQ(
      got[1].data(),
      R"({"source_topic": "device/d1/status", "data": {"raw": "online"}, "timestamp": 1700000000.0})");
  EXPECT_EQ(got[2].attributes().at("source_topic"), "sensor/hum");
  EXPECT_TRUE(pull("sensor-sub", 1, false).empty());

  ASSERT_TRUE(eventually([&] { return link_->queue().stats().acknowledged == 3; }));
  const auto s = link_->status();
  EXPECT_EQ(s.forwarded, 3u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.queue.queued_messages, 0u);
  EXPECT_EQ(s.state, link_state::connected);
  EXPECT_EQ(s.remote, "local");
}

TEST_F(pubsub_link_test, topic_payload_refuses_what_is_not_json_as_an_error) {
  config_.envelope = envelope_kind::topic_payload;
  config_.order_by_topic = true;
  start_link();
  EXPECT_TRUE(publish_as_device("sensor/a", "not json"));
  EXPECT_TRUE(publish_as_device("sensor/a", R"({"a":1})"));
  const auto got = pull("sensor-sub", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data(), R"({"topic": "sensor/a", "payload": {"a": 1}})");
  EXPECT_EQ(got[0].attributes_size(), 0);
  EXPECT_EQ(got[0].ordering_key(), "sensor/a");
  ASSERT_TRUE(eventually([&] { return link_->status().forwarded == 1; }));
  const auto s = link_->status();
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.queue.undeliverable, 1u);
  EXPECT_EQ(s.queue.queued_messages, 0u);
}

TEST_F(pubsub_link_test, raw_carries_bytes_qos_retain_and_user_properties) {
  config_.envelope = envelope_kind::raw;
  start_link();
  EXPECT_TRUE(
      publish_as_device("sensor/raw", std::string("\x00\x01\xFF", 3), true, {{"site", "plant-1"}}));
  const auto got = pull("sensor-sub", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data(), std::string("\x00\x01\xFF", 3));
  EXPECT_EQ(got[0].attributes().at("source_topic"), "sensor/raw");
  EXPECT_EQ(got[0].attributes().at("qos"), "1");
  EXPECT_EQ(got[0].attributes().at("retain"), "true");
  EXPECT_EQ(got[0].attributes().at("site"), "plant-1");
}

TEST_F(pubsub_link_test, keeps_messages_queued_until_the_topic_takes_them) {
  config_.topic = "not-yet";
  config_.subscription.clear();
  start_link();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(publish_as_device("sensor/n", std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return link_->status().reconnects >= 2; }));  // retried
  auto s = link_->status();
  EXPECT_EQ(s.state, link_state::backing_off);
  EXPECT_NE(s.last_error.find("NOT_FOUND"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.queue.queued_messages, 3u);
  EXPECT_EQ(s.forwarded, 0u);

  // Stopped and opened again (a restart): the queue still has them, and they go once they can.
  link_->stop();
  link_.reset();
  start_link();
  EXPECT_EQ(link_->queue().stats().queued_messages, 3u);
  create_topic("not-yet");
  ASSERT_TRUE(eventually([&] { return link_->status().forwarded == 3; }));
  s = link_->status();
  EXPECT_EQ(s.queue.queued_messages, 0u);
  EXPECT_EQ(s.state, link_state::connected);
  EXPECT_TRUE(s.last_error.empty());
}

TEST_F(pubsub_link_test, drains_a_backlog_in_order_in_batches_within_pubsubs_limits) {
  config_.subscription.clear();
  auto target = std::make_unique<switchable_target>(make_pubsub_target(config_, service_.get()));
  auto* switchable = target.get();
  switchable->is_down = true;
  start_link(std::move(target));
  for (int i = 0; i < 2500; ++i) ASSERT_TRUE(publish_as_device("sensor/n", std::to_string(i)));
  EXPECT_EQ(link_->status().forwarded, 0u);
  switchable->is_down = false;
  ASSERT_TRUE(eventually([&] { return link_->status().forwarded == 2500; }));
  EXPECT_LE(switchable->largest_batch.load(), 1000);
  EXPECT_GE(switchable->largest_batch.load(), 500);  // batched, not one by one
  const auto got = pull("sensor-sub", 2500);
  ASSERT_EQ(got.size(), 2500u);
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NE(got[i].data().find("\"data\": " + std::to_string(i) + ","), std::string::npos)
        << "in order: " << got[i].data();
  EXPECT_EQ(link_->queue().stats().queued_messages, 0u);
}

// ---- down

TEST_F(pubsub_link_test, commands_are_published_locally_and_acked_once_taken) {
  collector bus;
  auto subscription = broker_->subscribe_service(
      "#", [&](const broker::message_ptr& msg, const broker::client_identity*) {
        std::lock_guard lock(bus.mutex);
        bus.messages.push_back(msg);
        bus.changed.notify_all();
      });
  start_link();
  publish_command(R"({"topic": "device/d1/command", "payload": {"on": true}})");
  publish_command("{}");  // the tutorial's defaults: topic "command", payload {}
  const auto got = bus.wait_for(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->topic, "device/d1/command");
  EXPECT_EQ(got[0]->payload, R"({"on": true})");
  EXPECT_EQ(got[0]->qos, 1);
  EXPECT_EQ(got[0]->publisher, "$bridge/cloud");
  EXPECT_EQ(got[1]->topic, "command");
  EXPECT_EQ(got[1]->payload, "{}");
  ASSERT_TRUE(eventually([&] { return metric("nimbus_pubsub_acked_total", "commands-sub") == 2; }));
  EXPECT_EQ(link_->status().received, 2u);
  EXPECT_EQ(link_->status().errors, 0u);
}

TEST_F(pubsub_link_test, bad_commands_are_nacked_counted_and_end_dead_lettered) {
  collector bus;
  auto subscription = broker_->subscribe_service(
      "#", [&](const broker::message_ptr& msg, const broker::client_identity*) {
        std::lock_guard lock(bus.mutex);
        bus.messages.push_back(msg);
        bus.changed.notify_all();
      });
  start_link();
  publish_command("not json");
  publish_command(R"(["not", "an", "object"])");
  publish_command(R"({"topic": "$SYS/broker/x"})");  // not under allowed_topics' "#"
  publish_command(R"({"topic": "a/+"})");            // a filter, not a topic
  publish_command(R"({"topic": "ok/after"})");
  // Nacked (deadline 0), redelivered at once, nacked again: after 5 attempts, dead letters.
  ASSERT_TRUE(
      eventually([&] { return metric("nimbus_pubsub_dead_lettered_total", "commands-sub") == 4; }));
  EXPECT_EQ(link_->status().errors, 20u);
  EXPECT_GE(metric("nimbus_pubsub_nacked_total", "commands-sub"), 16u);
  const auto got = bus.wait_for(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->topic, "ok/after");
  EXPECT_EQ(link_->status().received, 1u);
}

TEST_F(pubsub_link_test, commands_do_not_come_back_up) {
  config_.filters = {"#"};
  start_link();
  publish_command(R"({"topic": "sensor/loop", "payload": 1})");
  ASSERT_TRUE(eventually([&] { return link_->status().received == 1; }));
  EXPECT_TRUE(publish_as_device("sensor/after", "2"));
  const auto got = pull("sensor-sub", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].attributes().at("source_topic"), "sensor/after");
  EXPECT_TRUE(pull("sensor-sub", 1, false).empty());
}

// ---- over gRPC

TEST_F(pubsub_link_test, grpc_target_publishes_and_pulls_with_its_token) {
  const int port = grpc_server_start("secret-token");
  ASSERT_GT(port, 0);
  const fs::path token_file = dir_ / "token";
  std::ofstream(token_file) << "secret-token\n";
  config_.is_local = false;
  config_.remote = {"127.0.0.1", static_cast<std::uint16_t>(port)};
  config_.token_file = token_file.string();
  collector bus;
  auto subscription = broker_->subscribe_service(
      "device/#", [&](const broker::message_ptr& msg, const broker::client_identity*) {
        std::lock_guard lock(bus.mutex);
        bus.messages.push_back(msg);
        bus.changed.notify_all();
      });
  start_link();
  EXPECT_EQ(link_->status().remote, "grpc://127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(publish_as_device("sensor/temp", "22"));
  const auto up = pull("sensor-sub", 1);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].attributes().at("source_topic"), "sensor/temp");
  publish_command(R"({"topic": "device/d1/command", "payload": "reboot"})");
  const auto down = bus.wait_for(1);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0]->payload, R"("reboot")");
  ASSERT_TRUE(eventually([&] { return metric("nimbus_pubsub_acked_total", "commands-sub") == 1; }));
  EXPECT_EQ(link_->status().state, link_state::connected);
}

TEST_F(pubsub_link_test, grpc_target_without_the_token_is_refused_and_retries) {
  const int port = grpc_server_start("secret-token");
  config_.is_local = false;
  config_.remote = {"127.0.0.1", static_cast<std::uint16_t>(port)};
  start_link();
  EXPECT_TRUE(publish_as_device("sensor/temp", "22"));  // queued all the same
  ASSERT_TRUE(eventually([&] { return link_->status().reconnects >= 2; }));
  const auto s = link_->status();
  EXPECT_EQ(s.state, link_state::backing_off);
  EXPECT_NE(s.last_error.find("UNAUTHENTICATED"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.queue.queued_messages, 1u);
  link_->stop();  // bounded, with calls in flight or waiting to be retried
}

}  // namespace
}  // namespace nimbus::bridge
