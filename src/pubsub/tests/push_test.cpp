// Push deliveries on the wire: the JSON wrapper, no_wrapper with and without metadata, the
// answers that acknowledge, and the back-off.
#include "pubsub/push.hpp"

#include <algorithm>
#include <chrono>
#include <string>

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

namespace nimbus::pubsub {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

delivery sample(std::int32_t attempt = 0) {
  delivery d;
  d.ack_id = "ack";
  d.delivery_attempt = attempt;
  d.message.seq = 4;
  d.message.message.data = std::string("hi\0there", 8);
  d.message.message.attributes = {{"device", "d-1"}, {"bad key", "x"}};
  d.message.message.ordering_key = "k1";
  d.message.message.publish_time_ms = 1'700'000'000'123;
  d.message.message.message_id = "42";
  return d;
}

google::pubsub::v1::Subscription push_subscription() {
  google::pubsub::v1::Subscription s;
  s.set_name("projects/p/subscriptions/s");
  s.set_ack_deadline_seconds(15);
  s.mutable_push_config()->set_push_endpoint("http://127.0.0.1:9/push");
  return s;
}

std::string header(const net::http_client_request& r, const std::string& name) {
  auto found = std::find_if(r.headers.begin(), r.headers.end(),
                            [&](const auto& h) { return h.first == name; });
  return found == r.headers.end() ? std::string("<none>") : found->second;
}

TEST(push, wraps_the_message_as_google_does) {
  const auto request = push_request(push_subscription(), sample(3));
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.url, "http://127.0.0.1:9/push");
  EXPECT_EQ(request.timeout, 15s);  // the ack deadline
  EXPECT_EQ(header(request, "Content-Type"), "application/json");
  const auto body = json::parse(request.body).as_object();
  const auto& message = body.at("message").as_object();
  EXPECT_EQ(message.at("data").as_string(), "aGkAdGhlcmU=");
  EXPECT_EQ(message.at("messageId").as_string(), "42");
  EXPECT_EQ(message.at("message_id").as_string(), "42");
  EXPECT_EQ(message.at("publishTime").as_string(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(message.at("publish_time").as_string(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(message.at("orderingKey").as_string(), "k1");
  EXPECT_EQ(message.at("attributes").at("device").as_string(), "d-1");
  EXPECT_EQ(message.at("attributes").at("bad key").as_string(), "x");
  EXPECT_EQ(body.at("subscription").as_string(), "projects/p/subscriptions/s");
  EXPECT_EQ(body.at("deliveryAttempt").as_int64(), 3);
}

TEST(push, leaves_out_what_the_message_does_not_have) {
  auto d = sample();
  d.message.message.attributes.clear();
  d.message.message.ordering_key.clear();
  const auto body = json::parse(push_request(push_subscription(), d).body).as_object();
  EXPECT_FALSE(body.at("message").as_object().contains("attributes"));
  EXPECT_FALSE(body.at("message").as_object().contains("orderingKey"));
  EXPECT_FALSE(body.contains("deliveryAttempt"));
}

TEST(push, no_wrapper_sends_the_data_as_it_is) {
  auto s = push_subscription();
  s.mutable_push_config()->mutable_no_wrapper();
  const auto request = push_request(s, sample());
  EXPECT_EQ(request.body, std::string("hi\0there", 8));
  EXPECT_EQ(header(request, "x-goog-pubsub-message-id"), "<none>");
  EXPECT_EQ(header(request, "device"), "<none>");
}

TEST(push, write_metadata_puts_attributes_and_ids_in_headers) {
  auto s = push_subscription();
  s.mutable_push_config()->mutable_no_wrapper()->set_write_metadata(true);
  const auto request = push_request(s, sample(2));
  EXPECT_EQ(header(request, "x-goog-pubsub-subscription-name"), "projects/p/subscriptions/s");
  EXPECT_EQ(header(request, "x-goog-pubsub-message-id"), "42");
  EXPECT_EQ(header(request, "x-goog-pubsub-publish-time"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(header(request, "x-goog-pubsub-ordering-key"), "k1");
  EXPECT_EQ(header(request, "x-goog-pubsub-delivery-attempt"), "2");
  EXPECT_EQ(header(request, "device"), "d-1");
  EXPECT_EQ(header(request, "bad key"), "<none>");  // not a header name: left out
}

TEST(push, acknowledging_answers) {
  for (unsigned status : {102U, 200U, 201U, 202U, 204U})
    EXPECT_TRUE(is_push_acknowledgement(status));
  for (unsigned status : {100U, 203U, 301U, 400U, 404U, 429U, 500U, 503U})
    EXPECT_FALSE(is_push_acknowledgement(status));
}

TEST(push, backoff_doubles_from_100ms_to_a_minute) {
  EXPECT_EQ(push_backoff(0), 0ms);
  EXPECT_EQ(push_backoff(1), 100ms);
  EXPECT_EQ(push_backoff(2), 200ms);
  EXPECT_EQ(push_backoff(5), 1600ms);
  EXPECT_EQ(push_backoff(10), 51200ms);
  EXPECT_EQ(push_backoff(11), 60000ms);
  EXPECT_EQ(push_backoff(1000), 60000ms);
}

}  // namespace
}  // namespace nimbus::pubsub
