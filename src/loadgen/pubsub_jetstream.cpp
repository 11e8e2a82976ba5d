// The JetStream target of `nimbus bench pubsub`, the peer bench/run measures Nimbus against:
// a stream (file storage, one replica) on one subject and a durable pull consumer (explicit
// acks), through libnats (Debian's libnats-dev 3.4). Publishers use js_PublishAsync with an
// ack handler per message; consumers fetch in batches and ack each message (natsMsg_Ack, which
// does not wait), the JetStream counterparts of Publish and of StreamingPull with batched acks.
#include <fmt/format.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "loadgen/pubsub_target.hpp"

namespace nimbus::loadgen::pubsub_detail {

namespace {

constexpr std::int64_t ack_wait_ns = 60'000'000'000;  // as the gRPC subscription's 60 s deadline
constexpr std::int64_t request_wait_ms = 10'000;      // JetStream API calls
constexpr std::int64_t fetch_wait_ms = 100;           // bounds how late a consumer sees stop

// libnats' words for what failed: the status, the thread's last error text, the JetStream code.
std::string nats_error(std::string_view what, natsStatus status, jsErrCode code = jsErrCode{}) {
  std::string out = fmt::format("{}: {}", what, natsStatus_GetText(status));
  if (const char* detail = nats_GetLastError(nullptr); detail != nullptr && *detail != '\0')
    out += fmt::format(" ({})", detail);
  if (static_cast<int>(code) != 0)
    out += fmt::format(" [JetStream error {}]", static_cast<int>(code));
  return out;
}

// A connection and its JetStream context, destroyed in the order libnats asks for.
struct nats_client {
  nats_client() = default;
  nats_client(const nats_client&) = delete;
  nats_client& operator=(const nats_client&) = delete;
  ~nats_client() {
    if (js != nullptr) jsCtx_Destroy(js);
    if (connection != nullptr) natsConnection_Destroy(connection);
  }

  // Empty, or what failed. `send_asap`: every publish is written at once instead of by
  // libnats' flusher (which waits up to a millisecond to gather more): for latency runs.
  std::string connect(const std::string& url, bool send_asap, jsOptions* js_options) {
    natsOptions* options = nullptr;
    natsStatus s = natsOptions_Create(&options);
    if (s == NATS_OK) s = natsOptions_SetURL(options, url.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(options, 5000);
    if (s == NATS_OK && send_asap) s = natsOptions_SetSendAsap(options, true);
    if (s == NATS_OK) s = natsConnection_Connect(&connection, options);
    if (options != nullptr) natsOptions_Destroy(options);
    if (s != NATS_OK) return nats_error("connect to " + url, s);
    s = natsConnection_JetStream(&js, connection, js_options);
    if (s != NATS_OK) return nats_error("JetStream context", s);
    return {};
  }

  natsConnection* connection = nullptr;
  jsCtx* js = nullptr;
};

// Every asynchronous publish ends here, on the connection's thread for publish acks. The
// closure is the publisher's sink (it outlives libnats: see ~jetstream_target); the message is
// ours to destroy, and its first 8 bytes are the send time.
void on_publish_ack(jsCtx* /*js*/, natsMsg* msg, jsPubAck* ack, jsPubAckErr* failure,
                    void* closure) {
  auto* sink = static_cast<publish_sink*>(closure);
  std::uint64_t sent_at = 0;
  if (msg != nullptr && natsMsg_GetDataLength(msg) >= static_cast<int>(sizeof(sent_at)))
    std::memcpy(&sent_at, natsMsg_GetData(msg), sizeof(sent_at));
  if (ack != nullptr) {
    sink->completed(1, sent_at, {});
  } else if (failure != nullptr) {
    sink->completed(1, sent_at,
                    fmt::format("publish ack: {} [JetStream error {}]",
                                failure->ErrText != nullptr ? failure->ErrText
                                                            : natsStatus_GetText(failure->Err),
                                static_cast<int>(failure->ErrCode)));
  } else {
    sink->completed(1, sent_at, "publish ack: neither an ack nor an error");
  }
  natsMsg_Destroy(msg);
}

// A publisher's connection: one js_PublishAsync per message, the window enforced by the
// driver (libnats' own MaxPending sits above it, so a publish never stalls inside libnats).
class jetstream_publish_channel final : public publish_channel {
 public:
  jetstream_publish_channel(std::string subject, std::size_t size, publish_sink& sink)
      : subject_(std::move(subject)), payload_(size, 'x'), sink_(sink) {}

  std::string open(const std::string& url, bool send_asap, std::int64_t max_pending) {
    jsOptions options;
    jsOptions_Init(&options);
    options.Wait = request_wait_ms;
    options.PublishAsync.MaxPending = max_pending;
    options.PublishAsync.AckHandler = on_publish_ack;
    options.PublishAsync.AckHandlerClosure = &sink_;
    return client_.connect(url, send_asap, &options);
  }

  void send(std::size_t count, std::uint64_t sent_at) override {
    std::memcpy(payload_.data(), &sent_at, sizeof(sent_at));  // libnats copies the payload
    for (std::size_t i = 0; i < count; ++i) {
      const natsStatus s = js_PublishAsync(client_.js, subject_.c_str(), payload_.data(),
                                           static_cast<int>(payload_.size()), nullptr);
      if (s != NATS_OK) {
        sink_.completed(count - i, sent_at, nats_error("js_PublishAsync", s));
        return;
      }
    }
  }

  void abandon() override {
    natsMsgList pending{nullptr, 0};
    if (js_PublishAsyncGetPendingList(&pending, client_.js) != NATS_OK) return;  // none left
    const int count = pending.Count;
    natsMsgList_Destroy(&pending);
    if (count > 0) sink_.abandoned(static_cast<std::size_t>(count));
  }

 private:
  std::string subject_;
  std::string payload_;
  publish_sink& sink_;
  nats_client client_;
};

// One consumer thread bound to the durable consumer: fetches up to ack_batch messages (libnats
// returns what is there at once, or waits up to 100 ms for the first), acks each, repeats until
// stop_consuming.
class fetch_consumer {
 public:
  fetch_consumer(run_state& st, std::string url, std::string stream, std::string subject,
                 std::string durable)
      : st_(st),
        url_(std::move(url)),
        stream_(std::move(stream)),
        subject_(std::move(subject)),
        durable_(std::move(durable)) {}

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    nats_client client;
    if (auto error = client.connect(url_, false, nullptr); !error.empty()) {
      st_.error(error);
      return;
    }
    jsSubOptions options;
    jsSubOptions_Init(&options);
    options.Stream = stream_.c_str();
    options.Consumer = durable_.c_str();  // bind to the consumer setup() created
    natsSubscription* subscription = nullptr;
    jsErrCode code{};
    natsStatus s = js_PullSubscribe(&subscription, client.js, subject_.c_str(), durable_.c_str(),
                                    nullptr, &options, &code);
    if (s != NATS_OK) {
      st_.error(nats_error("js_PullSubscribe", s, code));
      return;
    }
    const int batch = static_cast<int>(st_.opts.ack_batch);
    while (!st_.stop_consuming.load(std::memory_order_relaxed)) {
      natsMsgList list{nullptr, 0};
      s = natsSubscription_Fetch(&list, subscription, batch, fetch_wait_ms, &code);
      if (list.Count > 0) {
        st_.received.fetch_add(static_cast<std::uint64_t>(list.Count), std::memory_order_relaxed);
        std::uint64_t acked = 0;
        for (int i = 0; i < list.Count; ++i) {
          if (const natsStatus a = natsMsg_Ack(list.Msgs[i], nullptr); a == NATS_OK)
            ++acked;
          else
            st_.error(nats_error("natsMsg_Ack", a));
        }
        st_.acked.fetch_add(acked, std::memory_order_relaxed);
      }
      if (list.Msgs != nullptr) natsMsgList_Destroy(&list);
      if (s != NATS_OK && s != NATS_TIMEOUT) {
        st_.error(nats_error("natsSubscription_Fetch", s, code));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    // Destroy only: the consumer is durable and belongs to setup() (Unsubscribe is not needed
    // to stop receiving, and the stream's deletion removes the consumer).
    natsSubscription_Destroy(subscription);
  }

  run_state& st_;
  std::string url_;
  std::string stream_;
  std::string subject_;
  std::string durable_;
  std::thread thread_;
};

class jetstream_target final : public pubsub_target {
 public:
  explicit jetstream_target(run_state& st)
      : st_(st), url_(fmt::format("nats://{}:{}", st.opts.host, st.opts.port)) {}

  // Every connection is gone by now (the driver destroys the publishers' channels first);
  // waiting for libnats' threads to end means no ack handler runs after the sinks are freed.
  ~jetstream_target() override {
    stop_consumers();
    admin_.reset();
    nats_CloseAndWait(2000);
  }

  std::string setup() override {
    const auto suffix = random_suffix();
    stream_ = "bench_" + suffix;
    subject_ = "bench." + suffix;
    durable_ = "bench_" + suffix + "_sub";
    admin_ = std::make_unique<nats_client>();
    jsOptions options;
    jsOptions_Init(&options);
    options.Wait = request_wait_ms;
    if (auto error = admin_->connect(url_, false, &options); !error.empty()) return error;

    jsStreamConfig stream_config;
    jsStreamConfig_Init(&stream_config);
    const char* subjects[] = {subject_.c_str()};
    stream_config.Name = stream_.c_str();
    stream_config.Subjects = subjects;
    stream_config.SubjectsLen = 1;
    stream_config.Storage = js_FileStorage;
    stream_config.Replicas = 1;
    jsStreamInfo* stream_info = nullptr;
    jsErrCode code{};
    natsStatus s = js_AddStream(&stream_info, admin_->js, &stream_config, nullptr, &code);
    if (stream_info != nullptr) jsStreamInfo_Destroy(stream_info);
    if (s != NATS_OK) return nats_error("js_AddStream " + stream_, s, code);
    is_stream_created_ = true;

    jsConsumerConfig consumer_config;
    jsConsumerConfig_Init(&consumer_config);
    consumer_config.Durable = durable_.c_str();
    consumer_config.FilterSubject = subject_.c_str();
    consumer_config.DeliverPolicy = js_DeliverAll;
    consumer_config.AckPolicy = js_AckExplicit;
    consumer_config.AckWait = ack_wait_ns;
    // Server-side flow control, as max_outstanding_messages is per StreamingPull stream.
    consumer_config.MaxAckPending = st_.opts.max_outstanding * st_.opts.streams;
    jsConsumerInfo* consumer_info = nullptr;
    s = js_AddConsumer(&consumer_info, admin_->js, stream_.c_str(), &consumer_config, nullptr,
                       &code);
    if (consumer_info != nullptr) jsConsumerInfo_Destroy(consumer_info);
    if (s != NATS_OK) return nats_error("js_AddConsumer " + durable_, s, code);
    return {};
  }

  std::unique_ptr<publish_channel> open_publisher(publish_sink& sink) override {
    auto channel =
        std::make_unique<jetstream_publish_channel>(subject_, st_.opts.payload_size, sink);
    const auto batch = st_.opts.rate > 0 ? std::size_t{1} : st_.opts.batch;
    const auto max_pending = static_cast<std::int64_t>(st_.opts.window + batch + 64);
    if (auto error = channel->open(url_, st_.opts.rate > 0, max_pending); !error.empty()) {
      st_.error(error);
      return nullptr;
    }
    return channel;
  }

  void start_consumers() override {
    for (int i = 0; i < st_.opts.streams; ++i) {
      consumers_.push_back(
          std::make_unique<fetch_consumer>(st_, url_, stream_, subject_, durable_));
      consumers_.back()->start();
    }
  }

  void stop_consumers() override {
    st_.stop_consuming.store(true);
    for (auto& consumer : consumers_) consumer->join();
    consumers_.clear();
  }

  void teardown(bool keep) override {
    if (keep || !is_stream_created_ || !admin_) return;
    jsErrCode code{};
    if (const natsStatus s = js_DeleteStream(admin_->js, stream_.c_str(), nullptr, &code);
        s != NATS_OK)
      st_.error(nats_error("js_DeleteStream " + stream_, s, code));
  }

  std::string topic() const override { return stream_; }
  std::string subscription() const override { return durable_; }

 private:
  run_state& st_;
  std::string url_;
  std::string stream_;
  std::string subject_;
  std::string durable_;
  bool is_stream_created_ = false;
  std::unique_ptr<nats_client> admin_;
  std::vector<std::unique_ptr<fetch_consumer>> consumers_;
};

}  // namespace

std::unique_ptr<pubsub_target> make_jetstream_target(run_state& st) {
  return std::make_unique<jetstream_target>(st);
}

}  // namespace nimbus::loadgen::pubsub_detail
