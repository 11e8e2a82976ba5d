// The generated wire types keep the field numbers clients send (reference §2): a message
// encoded by hand, byte for byte as a client would, decodes into the right fields, and the
// services have the methods and streaming kinds the clients call.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>

#include "google/pubsub/v1/pubsub.grpc.pb.h"
#include "google/pubsub/v1/pubsub.pb.h"
#include "google/rpc/status.pb.h"

namespace {

namespace v1 = google::pubsub::v1;

// A base-128 varint.
std::string encode_varint(unsigned value) {
  std::string out;
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  return out + static_cast<char>(value);
}

// A length-delimited field: tag (number << 3 | 2), length, bytes.
std::string field(unsigned number, const std::string& value) {
  return encode_varint(number << 3 | 2) + encode_varint(static_cast<unsigned>(value.size())) +
         value;
}

// A varint field.
std::string varint(unsigned number, unsigned value) {
  return encode_varint(number << 3) + encode_varint(value);
}

TEST(pubsub_proto, modify_ack_deadline_uses_fields_3_and_4) {
  v1::ModifyAckDeadlineRequest request;
  ASSERT_TRUE(request.ParseFromString(field(1, "projects/p/subscriptions/s") + varint(3, 60) +
                                      field(4, "ack-1")));
  EXPECT_EQ(request.subscription(), "projects/p/subscriptions/s");
  EXPECT_EQ(request.ack_deadline_seconds(), 60);
  ASSERT_EQ(request.ack_ids_size(), 1);
  EXPECT_EQ(request.ack_ids(0), "ack-1");
}

TEST(pubsub_proto, streaming_pull_request_fields) {
  v1::StreamingPullRequest request;
  ASSERT_TRUE(request.ParseFromString(field(1, "projects/p/subscriptions/s") + varint(5, 10) +
                                      field(6, "client") + varint(7, 100) + varint(10, 1)));
  EXPECT_EQ(request.stream_ack_deadline_seconds(), 10);
  EXPECT_EQ(request.client_id(), "client");
  EXPECT_EQ(request.max_outstanding_messages(), 100);
  EXPECT_EQ(request.protocol_version(), 1);
}

TEST(pubsub_proto, message_and_subscription_numbers) {
  v1::PubsubMessage message;
  ASSERT_TRUE(message.ParseFromString(field(1, "hello") + field(3, "42") + field(5, "key")));
  EXPECT_EQ(message.data(), "hello");
  EXPECT_EQ(message.message_id(), "42");
  EXPECT_EQ(message.ordering_key(), "key");

  v1::Subscription subscription;
  ASSERT_TRUE(subscription.ParseFromString(field(1, "s") + field(2, "t") + varint(5, 30) +
                                           field(12, "attributes:k") + varint(16, 1)));
  EXPECT_EQ(subscription.topic(), "t");
  EXPECT_EQ(subscription.ack_deadline_seconds(), 30);
  EXPECT_EQ(subscription.filter(), "attributes:k");
  EXPECT_TRUE(subscription.enable_exactly_once_delivery());
  // A BigQuery subscription (field 18) is seen, so it can be refused.
  ASSERT_TRUE(subscription.ParseFromString(field(18, field(1, "x"))));
  EXPECT_TRUE(subscription.has_bigquery_config());
}

TEST(pubsub_proto, error_info_packs_into_status_details) {
  google::rpc::ErrorInfo info;
  info.set_reason("EXACTLY_ONCE_ACKID_FAILURE");
  info.set_domain("pubsub.googleapis.com");
  (*info.mutable_metadata())["ack-1"] = "PERMANENT_FAILURE_INVALID_ACK_ID";
  google::rpc::Status status;
  status.set_code(3);
  status.add_details()->PackFrom(info);
  EXPECT_EQ(status.details(0).type_url(), "type.googleapis.com/google.rpc.ErrorInfo");
}

TEST(pubsub_proto, services_have_the_clients_methods) {
  // The callback API the server implements; StreamingPull is bidirectional.
  using subscriber = v1::Subscriber::CallbackService;
  using publisher = v1::Publisher::CallbackService;
  static_assert(std::is_polymorphic_v<subscriber> && std::is_polymorphic_v<publisher>);
  EXPECT_STREQ(v1::Subscriber::service_full_name(), "google.pubsub.v1.Subscriber");
  EXPECT_STREQ(v1::Publisher::service_full_name(), "google.pubsub.v1.Publisher");
}

}  // namespace
