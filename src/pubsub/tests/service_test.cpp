// The service on a manual clock: what only time brings (idle subscriptions expiring).
#include "pubsub/service.hpp"

#include <unistd.h>
#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/clock.hpp"

namespace nimbus::pubsub {
namespace {

using namespace std::chrono_literals;

class pubsub_service : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nimbus-pubsub-service-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    service_settings settings;
    settings.dir = dir_;
    service_ = std::make_unique<service>(nullptr, clock_, settings);
    service_->start();
  }
  void TearDown() override {
    service_->stop();
    service_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Calls `method` and waits for its answer's status.
  template <class Request, class Response>
  status call(void (service::*method)(Request, reply<Response>), Request request) {
    std::promise<status> answered;
    (service_.get()->*method)(
        std::move(request), [&answered](status s, Response) { answered.set_value(std::move(s)); });
    return answered.get_future().get();
  }
  template <class Request, class Response>
  status call(void (service::*method)(const Request&, reply<Response>), const Request& request) {
    std::promise<status> answered;
    (service_.get()->*method)(
        request, [&answered](status s, Response) { answered.set_value(std::move(s)); });
    return answered.get_future().get();
  }

  status create_subscription(const std::string& name, std::int64_t ttl_seconds) {
    v1::Subscription s;
    s.set_name(name);
    s.set_topic("projects/p/topics/topic-1");
    if (ttl_seconds >= 0) {
      auto* policy = s.mutable_expiration_policy();
      if (ttl_seconds > 0) policy->mutable_ttl()->set_seconds(ttl_seconds);
    }
    return call(&service::create_subscription, std::move(s));
  }

  status get_subscription(const std::string& name) {
    v1::GetSubscriptionRequest request;
    request.set_subscription(name);
    return call(&service::get_subscription, request);
  }

  // Whether `name` exists, by a listing (which is no operation on the subscription).
  bool listed(const std::string& name) {
    v1::ListSubscriptionsRequest request;
    request.set_project("projects/p");
    std::promise<bool> present;
    service_->list_subscriptions(request, [&](status, v1::ListSubscriptionsResponse r) {
      bool found = false;
      for (const auto& s : r.subscriptions()) found = found || s.name() == name;
      present.set_value(found);
    });
    return present.get_future().get();
  }

  // Waits (boundedly) for the service's timer to delete `name`.
  bool deleted_soon(const std::string& name) {
    for (int i = 0; i < 100; ++i) {
      if (!listed(name)) return true;
      std::this_thread::sleep_for(50ms);  // the service ticks every 100 ms
    }
    return false;
  }

  core::manual_clock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<service> service_;
};

TEST_F(pubsub_service, idle_subscriptions_expire_after_their_ttl) {
  v1::Topic topic;
  topic.set_name("projects/p/topics/topic-1");
  ASSERT_TRUE(call(&service::create_topic, std::move(topic)).ok());
  ASSERT_TRUE(create_subscription("projects/p/subscriptions/one-day", 86'400).ok());
  ASSERT_TRUE(create_subscription("projects/p/subscriptions/used", 86'400).ok());
  ASSERT_TRUE(create_subscription("projects/p/subscriptions/never", 0).ok());     // policy, no ttl
  ASSERT_TRUE(create_subscription("projects/p/subscriptions/default", -1).ok());  // 31 days
  std::this_thread::sleep_for(150ms);  // a tick notes them as active now

  clock_.advance(std::chrono::hours(20));
  ASSERT_TRUE(get_subscription("projects/p/subscriptions/used").ok());  // an operation: active
  clock_.advance(std::chrono::hours(5));  // one-day: 25 h idle; used: 5 h
  EXPECT_TRUE(deleted_soon("projects/p/subscriptions/one-day"));
  EXPECT_EQ(get_subscription("projects/p/subscriptions/one-day").what, code::not_found);
  EXPECT_TRUE(get_subscription("projects/p/subscriptions/used").ok());

  clock_.advance(std::chrono::hours(24 * 29));  // 30 days 1 h from the start
  EXPECT_TRUE(deleted_soon("projects/p/subscriptions/used"));
  std::this_thread::sleep_for(150ms);
  EXPECT_TRUE(listed("projects/p/subscriptions/default"));  // 31 days by default
  clock_.advance(std::chrono::hours(24));
  EXPECT_TRUE(deleted_soon("projects/p/subscriptions/default"));
  EXPECT_TRUE(listed("projects/p/subscriptions/never"));
}

}  // namespace
}  // namespace nimbus::pubsub
