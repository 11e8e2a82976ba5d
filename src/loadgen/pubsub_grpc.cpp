// The gRPC target of `nimbus bench pubsub`: google.pubsub.v1 over an insecure channel, as the
// official clients speak to an emulator. Publishers send Publish RPCs on gRPC's callback API
// (several in flight per publisher, each on its own connection); consumers are StreamingPull
// streams on the synchronous API, one thread reading and one writing the batched acks.
#include <fmt/format.h>
#include <google/protobuf/empty.pb.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>
#include <grpcpp/support/sync_stream.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "google/pubsub/v1/pubsub.grpc.pb.h"
#include "loadgen/pubsub_target.hpp"

namespace nimbus::loadgen::pubsub_detail {

namespace {

namespace v1 = google::pubsub::v1;

constexpr int ack_deadline_seconds = 60;
constexpr auto admin_timeout = std::chrono::seconds(10);
constexpr auto publish_timeout = std::chrono::seconds(10);
constexpr auto ack_interval = std::chrono::milliseconds(5);  // the longest an ack waits

// A channel with a connection of its own (no subchannel shared with the other publishers and
// streams), so the server sees as many connections as a fleet of clients would open.
std::shared_ptr<grpc::Channel> open_channel(const std::string& endpoint) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  arguments.SetMaxReceiveMessageSize(64 << 20);  // a StreamingPull response may be large
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), arguments);
}

void expire_in(grpc::ClientContext& context, std::chrono::milliseconds limit) {
  context.set_deadline(std::chrono::system_clock::now() + limit);
}

std::string describe(const grpc::Status& status) {
  return fmt::format("{} (gRPC status {})", status.error_message(),
                     static_cast<int>(status.error_code()));
}

// `count` messages of `size` bytes each ('x'), in one request to `topic`.
v1::PublishRequest publish_request(const std::string& topic, std::size_t count, std::size_t size) {
  v1::PublishRequest request;
  request.set_topic(topic);
  const std::string data(size, 'x');
  for (std::size_t i = 0; i < count; ++i) request.add_messages()->set_data(data);
  return request;
}

// A publisher's channel: Publish RPCs in flight on the callback API. The request of a full
// batch is built once and shared, read-only, by the calls in flight. Calls are tracked so that
// abandon() can cancel them; each answers the sink once, from a gRPC thread.
class grpc_publish_channel final : public publish_channel {
 public:
  grpc_publish_channel(const std::string& endpoint, std::string topic, std::size_t batch,
                       std::size_t size, publish_sink& sink)
      : stub_(v1::Publisher::NewStub(open_channel(endpoint))),
        topic_(std::move(topic)),
        size_(size),
        batch_(batch),
        full_(publish_request(topic_, batch, size)),
        sink_(sink) {}

  void send(std::size_t count, std::uint64_t sent_at) override {
    auto* c = new call;
    c->count = count;
    c->sent_at = sent_at;
    if (count == batch_) {
      c->request = &full_;
    } else {
      c->own_request = publish_request(topic_, count, size_);
      c->request = &c->own_request;
    }
    expire_in(c->context, publish_timeout);
    {
      std::lock_guard lock(mutex_);
      in_flight_.insert(c);
    }
    stub_->async()->Publish(&c->context, c->request, &c->response,
                            [this, c](grpc::Status status) { finish(c, status); });
  }

  void abandon() override {
    std::lock_guard lock(mutex_);
    is_abandoning_ = true;
    for (auto* c : in_flight_) c->context.TryCancel();
  }

 private:
  struct call {
    grpc::ClientContext context;
    const v1::PublishRequest* request = nullptr;
    v1::PublishRequest own_request;  // a short (last) batch
    v1::PublishResponse response;
    std::size_t count = 0;
    std::uint64_t sent_at = 0;
  };

  void finish(call* c, const grpc::Status& status) {
    bool is_abandoned = false;
    {
      std::lock_guard lock(mutex_);
      in_flight_.erase(c);
      is_abandoned = is_abandoning_ && status.error_code() == grpc::StatusCode::CANCELLED;
    }
    // The sink is the last thing touched through `this`' members: once it has every answer the
    // publisher may end and this channel go.
    if (is_abandoned) {
      sink_.abandoned(c->count);
    } else if (!status.ok()) {
      sink_.completed(c->count, c->sent_at, "Publish: " + describe(status));
    } else if (static_cast<std::size_t>(c->response.message_ids_size()) != c->count) {
      sink_.completed(c->count, c->sent_at,
                      fmt::format("Publish: {} message ids for {} messages",
                                  c->response.message_ids_size(), c->count));
    } else {
      sink_.completed(c->count, c->sent_at, {});
    }
    delete c;
  }

  std::unique_ptr<v1::Publisher::Stub> stub_;
  std::string topic_;
  std::size_t size_;
  std::size_t batch_;
  const v1::PublishRequest full_;
  publish_sink& sink_;
  std::mutex mutex_;
  std::unordered_set<call*> in_flight_;  // guarded by mutex_
  bool is_abandoning_ = false;           // guarded by mutex_
};

// One StreamingPull stream. The reader thread counts what arrives and queues its ack ids; the
// acker thread writes them back on the stream, `ack_batch` at a time or every 5 ms, whichever
// comes first (the "acks batched" of the figure). Only the acker writes; Read and Write may run
// at once on gRPC's synchronous streams.
class stream_consumer {
 public:
  stream_consumer(run_state& st, const std::string& endpoint, std::string subscription)
      : st_(st),
        stub_(v1::Subscriber::NewStub(open_channel(endpoint))),
        subscription_(std::move(subscription)) {}

  void start() {
    stream_ = stub_->StreamingPull(&context_);
    acker_ = std::thread([this] { ack_loop(); });
    reader_ = std::thread([this] { read_loop(); });
  }

  // Flushes the acks queued so far (waiting up to a second for a blocked write), then cancels
  // the stream and joins both threads.
  void stop() {
    {
      std::unique_lock lock(mutex_);
      is_stopping_ = true;
      wake_.notify_all();
      wake_.wait_for(lock, std::chrono::seconds(1), [this] { return is_acker_done_; });
    }
    context_.TryCancel();
    if (acker_.joinable()) acker_.join();
    if (reader_.joinable()) reader_.join();
    if (!stream_) return;
    const grpc::Status status = stream_->Finish();
    if (has_ended_early_) st_.error("StreamingPull ended early: " + describe(status));
  }

 private:
  void read_loop() {
    v1::StreamingPullResponse response;
    while (stream_->Read(&response)) {
      const int n = response.received_messages_size();
      if (n == 0) continue;
      st_.received.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      std::lock_guard lock(mutex_);
      for (auto& received : *response.mutable_received_messages())
        pending_acks_.push_back(std::move(*received.mutable_ack_id()));
      if (pending_acks_.size() >= st_.opts.ack_batch) wake_.notify_all();
    }
    std::lock_guard lock(mutex_);
    has_ended_early_ = !is_stopping_;
    is_reader_done_ = true;
    wake_.notify_all();
  }

  void ack_loop() {
    v1::StreamingPullRequest first;
    first.set_subscription(subscription_);
    first.set_stream_ack_deadline_seconds(ack_deadline_seconds);
    first.set_max_outstanding_messages(st_.opts.max_outstanding);
    bool is_open = stream_->Write(first);  // a refusal shows in read_loop's end and Finish
    std::vector<std::string> batch;
    while (is_open) {
      bool is_last = false;
      {
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, ack_interval, [this] {
          return pending_acks_.size() >= st_.opts.ack_batch || is_stopping_ || is_reader_done_;
        });
        batch.swap(pending_acks_);
        is_last = is_stopping_ || is_reader_done_;
      }
      if (!batch.empty()) {
        v1::StreamingPullRequest acks;
        acks.mutable_ack_ids()->Reserve(static_cast<int>(batch.size()));
        for (auto& id : batch) acks.add_ack_ids(std::move(id));
        if (!stream_->Write(acks)) break;
        st_.acked.fetch_add(batch.size(), std::memory_order_relaxed);
        batch.clear();
      }
      if (is_last) break;
    }
    std::lock_guard lock(mutex_);
    is_acker_done_ = true;
    wake_.notify_all();
  }

  run_state& st_;
  std::unique_ptr<v1::Subscriber::Stub> stub_;
  std::string subscription_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamingPullRequest, v1::StreamingPullResponse>>
      stream_;
  std::thread acker_;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::string> pending_acks_;  // guarded by mutex_
  bool is_stopping_ = false;               // guarded by mutex_
  bool is_reader_done_ = false;            // guarded by mutex_
  bool is_acker_done_ = false;             // guarded by mutex_
  bool has_ended_early_ = false;           // guarded by mutex_ (read after the joins)
};

class grpc_target final : public pubsub_target {
 public:
  explicit grpc_target(run_state& st)
      : st_(st), endpoint_(fmt::format("{}:{}", st.opts.host, st.opts.port)) {}
  ~grpc_target() override { stop_consumers(); }

  std::string setup() override {
    const auto suffix = random_suffix();
    topic_ = "projects/bench/topics/bench-" + suffix;
    subscription_ = "projects/bench/subscriptions/bench-" + suffix;
    auto channel = open_channel(endpoint_);
    publisher_ = v1::Publisher::NewStub(channel);
    subscriber_ = v1::Subscriber::NewStub(channel);
    {
      grpc::ClientContext context;
      expire_in(context, admin_timeout);
      context.set_wait_for_ready(true);  // a server just started may still be connecting
      v1::Topic request;
      request.set_name(topic_);
      v1::Topic response;
      if (auto status = publisher_->CreateTopic(&context, request, &response); !status.ok())
        return fmt::format("CreateTopic {} at {}: {}", topic_, endpoint_, describe(status));
    }
    is_topic_created_ = true;
    {
      grpc::ClientContext context;
      expire_in(context, admin_timeout);
      context.set_wait_for_ready(true);
      v1::Subscription request;
      request.set_name(subscription_);
      request.set_topic(topic_);
      request.set_ack_deadline_seconds(ack_deadline_seconds);
      v1::Subscription response;
      if (auto status = subscriber_->CreateSubscription(&context, request, &response); !status.ok())
        return fmt::format("CreateSubscription {}: {}", subscription_, describe(status));
    }
    is_subscription_created_ = true;
    return {};
  }

  std::unique_ptr<publish_channel> open_publisher(publish_sink& sink) override {
    const std::size_t batch = st_.opts.rate > 0 ? 1 : st_.opts.batch;
    return std::make_unique<grpc_publish_channel>(endpoint_, topic_, batch, st_.opts.payload_size,
                                                  sink);
  }

  void start_consumers() override {
    for (int i = 0; i < st_.opts.streams; ++i) {
      consumers_.push_back(std::make_unique<stream_consumer>(st_, endpoint_, subscription_));
      consumers_.back()->start();
    }
  }

  void stop_consumers() override {
    for (auto& consumer : consumers_) consumer->stop();
    consumers_.clear();
  }

  void teardown(bool keep) override {
    if (keep) return;
    if (is_subscription_created_) {
      grpc::ClientContext context;
      expire_in(context, admin_timeout);
      v1::DeleteSubscriptionRequest request;
      request.set_subscription(subscription_);
      google::protobuf::Empty response;
      if (auto status = subscriber_->DeleteSubscription(&context, request, &response); !status.ok())
        st_.error("DeleteSubscription: " + describe(status));
    }
    if (is_topic_created_) {
      grpc::ClientContext context;
      expire_in(context, admin_timeout);
      v1::DeleteTopicRequest request;
      request.set_topic(topic_);
      google::protobuf::Empty response;
      if (auto status = publisher_->DeleteTopic(&context, request, &response); !status.ok())
        st_.error("DeleteTopic: " + describe(status));
    }
  }

  std::string topic() const override { return topic_; }
  std::string subscription() const override { return subscription_; }

 private:
  run_state& st_;
  std::string endpoint_;
  std::string topic_;
  std::string subscription_;
  bool is_topic_created_ = false;
  bool is_subscription_created_ = false;
  std::unique_ptr<v1::Publisher::Stub> publisher_;
  std::unique_ptr<v1::Subscriber::Stub> subscriber_;
  std::vector<std::unique_ptr<stream_consumer>> consumers_;
};

}  // namespace

std::unique_ptr<pubsub_target> make_grpc_target(run_state& st) {
  return std::make_unique<grpc_target>(st);
}

}  // namespace nimbus::loadgen::pubsub_detail
