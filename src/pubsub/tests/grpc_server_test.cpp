// The Pub/Sub gRPC surface in process: a grpc::Server on a loopback port 0 with both services
// over a real service (temp dir, no metadata writer), called through the generated stubs as
// the clients call it: unary admin, publish, pull and ack; errors with their codes; and
// StreamingPull (delivery, acks on the stream, exactly-once confirmations, bad requests,
// shutdown). Every client call has a deadline, so a bug fails a test instead of hanging it.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/any.pb.h>

#include "core/clock.hpp"
#include "google/pubsub/v1/pubsub.grpc.pb.h"
#include "google/rpc/status.pb.h"
#include "pubsub/grpc_server.hpp"
#include "pubsub/service.hpp"

namespace nimbus::pubsub {
namespace {

using namespace std::chrono_literals;

constexpr const char* topic_name = "projects/test/topics/topic-1";
constexpr const char* subscription_name = "projects/test/subscriptions/sub-1";

void expire_in(grpc::ClientContext& context, std::chrono::seconds within = 10s) {
  context.set_deadline(std::chrono::system_clock::now() + within);
}

class pubsub_grpc : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nimbus-pubsub-grpc-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    service_settings settings;
    settings.dir = dir_;
    settings.max_pull_wait_ms = 5'000;  // bounds a waiting pull left behind by a failed test
    service_ = std::make_unique<service>(nullptr, clock_, settings);
    service_->start();
    services_ = std::make_unique<grpc_services>(*service_);

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(services_->publisher());
    builder.RegisterService(services_->subscriber());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    publisher_ = v1::Publisher::NewStub(channel);
    subscriber_ = v1::Subscriber::NewStub(channel);
  }

  void TearDown() override {
    // The app's order: streams end, then the server, then the service.
    if (services_) services_->close_streams();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 5s);
    server_.reset();
    services_.reset();
    if (service_) service_->stop();
    service_.reset();
    std::filesystem::remove_all(dir_);
  }

  grpc::Status create_topic(const std::string& name) {
    grpc::ClientContext context;
    expire_in(context);
    v1::Topic request;
    request.set_name(name);
    v1::Topic response;
    return publisher_->CreateTopic(&context, request, &response);
  }

  grpc::Status create_subscription(const std::string& name, bool is_exactly_once = false) {
    grpc::ClientContext context;
    expire_in(context);
    v1::Subscription request;
    request.set_name(name);
    request.set_topic(topic_name);
    request.set_enable_exactly_once_delivery(is_exactly_once);
    v1::Subscription response;
    return subscriber_->CreateSubscription(&context, request, &response);
  }

  // Publishes `count` messages ("m0", "m1", ...) to topic-1; their ids.
  std::vector<std::string> publish(int count) {
    grpc::ClientContext context;
    expire_in(context);
    v1::PublishRequest request;
    request.set_topic(topic_name);
    for (int i = 0; i < count; ++i) request.add_messages()->set_data("m" + std::to_string(i));
    v1::PublishResponse response;
    const auto published = publisher_->Publish(&context, request, &response);
    EXPECT_TRUE(published.ok()) << published.error_message();
    return {response.message_ids().begin(), response.message_ids().end()};
  }

  v1::PullResponse pull_now(grpc::Status& outcome) {
    grpc::ClientContext context;
    expire_in(context);
    v1::PullRequest request;
    request.set_subscription(subscription_name);
    request.set_max_messages(100);
    request.set_return_immediately(true);
    v1::PullResponse response;
    outcome = subscriber_->Pull(&context, request, &response);
    return response;
  }

  // A stream opened with {subscription, stream_ack_deadline_seconds 10}.
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamingPullRequest, v1::StreamingPullResponse>>
  open_stream(grpc::ClientContext& context) {
    expire_in(context, 20s);
    auto stream = subscriber_->StreamingPull(&context);
    v1::StreamingPullRequest first;
    first.set_subscription(subscription_name);
    first.set_stream_ack_deadline_seconds(10);
    EXPECT_TRUE(stream->Write(first));
    return stream;
  }

  // Writes `request` as a stream's only request and returns the status the stream ends with.
  grpc::StatusCode refused_first(const v1::StreamingPullRequest& request) {
    grpc::ClientContext context;
    expire_in(context);
    auto stream = subscriber_->StreamingPull(&context);
    stream->Write(request);  // may fail once the server has ended the stream
    v1::StreamingPullResponse response;
    EXPECT_FALSE(stream->Read(&response));
    return stream->Finish().error_code();
  }

  core::system_clock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<service> service_;
  std::unique_ptr<grpc_services> services_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Publisher::Stub> publisher_;
  std::unique_ptr<v1::Subscriber::Stub> subscriber_;
};

TEST(pubsub_to_grpc, plain_errors_carry_code_and_message) {
  EXPECT_TRUE(to_grpc(status{}).ok());
  const auto missing = to_grpc(status::error(code::not_found, "Resource not found"));
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "Resource not found");
  EXPECT_TRUE(missing.error_details().empty());
}

TEST(pubsub_to_grpc, error_info_goes_in_status_details) {
  auto failed = status::error(code::invalid_argument, "Some acknowledgement ids were invalid.");
  failed.reason = "EXACTLY_ONCE_ACKID_FAILURE";
  failed.metadata["ack-1"] = "PERMANENT_FAILURE_INVALID_ACK_ID";
  const auto rendered = to_grpc(failed);
  EXPECT_EQ(rendered.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(rendered.error_details()));
  EXPECT_EQ(details.code(), 3);
  EXPECT_EQ(details.message(), "Some acknowledgement ids were invalid.");
  ASSERT_EQ(details.details_size(), 1);
  EXPECT_EQ(details.details(0).type_url(), "type.googleapis.com/google.rpc.ErrorInfo");
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(details.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "EXACTLY_ONCE_ACKID_FAILURE");
  EXPECT_EQ(info.domain(), "pubsub.googleapis.com");
  ASSERT_EQ(info.metadata().count("ack-1"), 1U);
  EXPECT_EQ(info.metadata().at("ack-1"), "PERMANENT_FAILURE_INVALID_ACK_ID");
}

TEST_F(pubsub_grpc, unary_publish_pull_acknowledge) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());
  ASSERT_EQ(publish(3).size(), 3U);

  // A waiting pull answers as soon as something is there, maybe with part of the batch.
  std::vector<std::string> ack_ids;
  std::set<std::string> data;
  for (int attempt = 0; attempt < 5 && ack_ids.size() < 3; ++attempt) {
    grpc::ClientContext context;
    expire_in(context);
    v1::PullRequest request;
    request.set_subscription(subscription_name);
    request.set_max_messages(10);
    v1::PullResponse response;
    const auto pulled = subscriber_->Pull(&context, request, &response);
    ASSERT_TRUE(pulled.ok()) << pulled.error_message();
    for (const auto& received : response.received_messages()) {
      ack_ids.push_back(received.ack_id());
      data.insert(received.message().data());
    }
  }
  EXPECT_EQ(ack_ids.size(), 3U);
  EXPECT_EQ(data, (std::set<std::string>{"m0", "m1", "m2"}));

  grpc::ClientContext context;
  expire_in(context);
  v1::AcknowledgeRequest ack;
  ack.set_subscription(subscription_name);
  for (const auto& id : ack_ids) ack.add_ack_ids(id);
  google::protobuf::Empty acked;
  const auto acknowledged = subscriber_->Acknowledge(&context, ack, &acked);
  ASSERT_TRUE(acknowledged.ok()) << acknowledged.error_message();

  grpc::Status outcome;
  const auto after = pull_now(outcome);
  ASSERT_TRUE(outcome.ok()) << outcome.error_message();
  EXPECT_EQ(after.received_messages_size(), 0);
}

TEST_F(pubsub_grpc, errors_have_their_codes) {
  {
    grpc::ClientContext context;
    expire_in(context);
    v1::GetTopicRequest request;
    request.set_topic("projects/test/topics/missing");
    v1::Topic response;
    const auto got = publisher_->GetTopic(&context, request, &response);
    EXPECT_EQ(got.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(static_cast<int>(got.error_code()), 5);
  }
  {
    grpc::ClientContext context;
    expire_in(context);
    v1::PublishRequest request;
    request.set_topic("projects/test/topics/missing");
    request.add_messages()->set_data("x");
    v1::PublishResponse response;
    EXPECT_EQ(publisher_->Publish(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(create_topic("projects/test/topics/1bad").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(create_topic("no-project").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(create_topic(topic_name).ok());
  EXPECT_EQ(create_topic(topic_name).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(pubsub_grpc, streaming_pull_delivers_and_takes_acks) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());
  grpc::ClientContext context;
  auto stream = open_stream(context);
  ASSERT_EQ(publish(5).size(), 5U);

  std::vector<std::string> ack_ids;
  std::set<std::string> data;
  v1::StreamingPullResponse response;
  while (ack_ids.size() < 5 && stream->Read(&response)) {
    EXPECT_TRUE(response.has_subscription_properties());
    EXPECT_FALSE(response.subscription_properties().exactly_once_delivery_enabled());
    EXPECT_FALSE(response.subscription_properties().message_ordering_enabled());
    for (const auto& received : response.received_messages()) {
      ack_ids.push_back(received.ack_id());
      data.insert(received.message().data());
    }
  }
  ASSERT_EQ(ack_ids.size(), 5U);
  EXPECT_EQ(data, (std::set<std::string>{"m0", "m1", "m2", "m3", "m4"}));

  v1::StreamingPullRequest ack;
  for (const auto& id : ack_ids) ack.add_ack_ids(id);
  ASSERT_TRUE(stream->Write(ack));
  ASSERT_TRUE(stream->Write(v1::StreamingPullRequest{}));  // a keepalive is accepted
  // The server reads requests in order: once our half-close ends the stream, the acks before
  // it have reached the service.
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&response));
  const auto finished = stream->Finish();
  EXPECT_TRUE(finished.ok()) << finished.error_message();

  // Acked, not merely leased: a nack of the same ids brings nothing back (its own status is
  // not the point here).
  {
    grpc::ClientContext nack_context;
    expire_in(nack_context);
    v1::ModifyAckDeadlineRequest nack;
    nack.set_subscription(subscription_name);
    nack.set_ack_deadline_seconds(0);
    for (const auto& id : ack_ids) nack.add_ack_ids(id);
    google::protobuf::Empty nacked;
    (void)subscriber_->ModifyAckDeadline(&nack_context, nack, &nacked);
  }
  grpc::Status outcome;
  const auto after = pull_now(outcome);
  ASSERT_TRUE(outcome.ok()) << outcome.error_message();
  EXPECT_EQ(after.received_messages_size(), 0);
}

// Flow control is the server's too: a stream holding max_outstanding_messages gets nothing more
// until some are settled, by a unary Acknowledge (as Node acks) or a nack.
TEST_F(pubsub_grpc, streaming_pull_holds_at_most_max_outstanding_messages) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());
  grpc::ClientContext context;
  expire_in(context, 20s);
  auto stream = subscriber_->StreamingPull(&context);
  v1::StreamingPullRequest first;
  first.set_subscription(subscription_name);
  first.set_stream_ack_deadline_seconds(60);
  first.set_max_outstanding_messages(4);
  ASSERT_TRUE(stream->Write(first));
  ASSERT_EQ(publish(10).size(), 10U);

  std::vector<std::string> held;
  v1::StreamingPullResponse response;
  const auto read_until = [&](std::size_t count) {
    while (held.size() < count && stream->Read(&response))
      for (const auto& received : response.received_messages()) held.push_back(received.ack_id());
  };
  read_until(4);
  ASSERT_EQ(held.size(), 4U);
  // Nothing more while four are held: a plain Pull proves the rest are still there to take.
  grpc::Status outcome;
  auto rest = pull_now(outcome);
  ASSERT_TRUE(outcome.ok()) << outcome.error_message();
  EXPECT_EQ(rest.received_messages_size(), 6);
  {  // hand them back for the stream
    grpc::ClientContext nack_context;
    expire_in(nack_context);
    v1::ModifyAckDeadlineRequest nack;
    nack.set_subscription(subscription_name);
    nack.set_ack_deadline_seconds(0);
    for (const auto& received : rest.received_messages()) nack.add_ack_ids(received.ack_id());
    google::protobuf::Empty nacked;
    ASSERT_TRUE(subscriber_->ModifyAckDeadline(&nack_context, nack, &nacked).ok());
  }
  // Two unary acks free two places on the stream: exactly two more come.
  {
    grpc::ClientContext ack_context;
    expire_in(ack_context);
    v1::AcknowledgeRequest ack;
    ack.set_subscription(subscription_name);
    ack.add_ack_ids(held[0]);
    ack.add_ack_ids(held[1]);
    google::protobuf::Empty acked;
    ASSERT_TRUE(subscriber_->Acknowledge(&ack_context, ack, &acked).ok());
  }
  read_until(6);
  ASSERT_EQ(held.size(), 6U);
  EXPECT_EQ(response.received_messages_size(), 2);
  rest = pull_now(outcome);
  ASSERT_TRUE(outcome.ok()) << outcome.error_message();
  EXPECT_EQ(rest.received_messages_size(), 4);  // the stream took only its two
  context.TryCancel();
}

TEST_F(pubsub_grpc, streaming_pull_confirms_exactly_once_acks) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name, true).ok());
  grpc::ClientContext context;
  auto stream = open_stream(context);
  ASSERT_EQ(publish(1).size(), 1U);

  v1::StreamingPullResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.subscription_properties().exactly_once_delivery_enabled());
  ASSERT_EQ(response.received_messages_size(), 1);
  const std::string ack_id = response.received_messages(0).ack_id();

  v1::StreamingPullRequest ack;
  ack.add_ack_ids(ack_id);
  ack.add_ack_ids("not-an-ack-id");
  ASSERT_TRUE(stream->Write(ack));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.subscription_properties().exactly_once_delivery_enabled());
  ASSERT_TRUE(response.has_acknowledge_confirmation());
  const auto& confirmation = response.acknowledge_confirmation();
  ASSERT_EQ(confirmation.ack_ids_size(), 1);
  EXPECT_EQ(confirmation.ack_ids(0), ack_id);
  ASSERT_EQ(confirmation.invalid_ack_ids_size(), 1);
  EXPECT_EQ(confirmation.invalid_ack_ids(0), "not-an-ack-id");

  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(pubsub_grpc, streaming_pull_refuses_a_bad_first_request) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());

  v1::StreamingPullRequest no_subscription;
  no_subscription.set_stream_ack_deadline_seconds(10);
  EXPECT_EQ(refused_first(no_subscription), grpc::StatusCode::INVALID_ARGUMENT);

  v1::StreamingPullRequest short_deadline;
  short_deadline.set_subscription(subscription_name);
  short_deadline.set_stream_ack_deadline_seconds(5);
  EXPECT_EQ(refused_first(short_deadline), grpc::StatusCode::INVALID_ARGUMENT);

  v1::StreamingPullRequest missing;
  missing.set_subscription("projects/test/subscriptions/missing");
  missing.set_stream_ack_deadline_seconds(10);
  EXPECT_EQ(refused_first(missing), grpc::StatusCode::NOT_FOUND);
}

TEST_F(pubsub_grpc, streaming_pull_refuses_first_request_fields_later) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());
  grpc::ClientContext context;
  auto stream = open_stream(context);
  v1::StreamingPullRequest later;
  later.set_client_id("again");
  stream->Write(later);
  v1::StreamingPullResponse response;
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(pubsub_grpc, streaming_pull_refuses_unpaired_modacks) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());
  grpc::ClientContext context;
  auto stream = open_stream(context);
  v1::StreamingPullRequest later;
  later.add_modify_deadline_ack_ids("a");
  later.add_modify_deadline_ack_ids("b");
  later.add_modify_deadline_seconds(10);
  stream->Write(later);
  v1::StreamingPullResponse response;
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(pubsub_grpc, close_streams_ends_them_with_unavailable) {
  ASSERT_TRUE(create_topic(topic_name).ok());
  ASSERT_TRUE(create_subscription(subscription_name).ok());
  grpc::ClientContext context;
  auto stream = open_stream(context);
  ASSERT_EQ(publish(1).size(), 1U);
  v1::StreamingPullResponse response;
  ASSERT_TRUE(stream->Read(&response));  // the stream is delivering

  services_->close_streams();
  EXPECT_FALSE(stream->Read(&response));
  const auto finished = stream->Finish();
  EXPECT_EQ(finished.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(finished.error_message(), "The service is shutting down");

  // A stream opened afterwards ends at once.
  v1::StreamingPullRequest first;
  first.set_subscription(subscription_name);
  first.set_stream_ack_deadline_seconds(10);
  EXPECT_EQ(refused_first(first), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace nimbus::pubsub
