#pragma once
// The Pub/Sub service: topics, subscriptions and their messages, behind every wire (gRPC in
// grpc_server.hpp, REST in rest.hpp) and the in-process publish the rules engine's kinesis
// action uses. Requests and answers are the generated google.pubsub.v1 types; every call
// answers through a callback, once what it changed is durable:
//   - metadata (topics, subscriptions, cursors) in SQLite through the write queue;
//   - messages in one seglog log per topic under <data>/pubsub/topics/<incarnation>/, so a
//     message whose Publish returned survives kill -9 (and power loss with fsync always);
//   - delivery state per subscription in a subscription_engine (leases, redelivery, ordering,
//     dead letters, filter), its cursor saved before an Acknowledge answers.
// Thread-safe; callbacks run on the service's own thread (its timer and answers), never under
// the service's lock.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/empty.pb.h>

#include "core/clock.hpp"
#include "google/pubsub/v1/pubsub.pb.h"
#include "pubsub/status.hpp"
#include "seglog/committer.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::pubsub {

namespace v1 = google::pubsub::v1;
using empty = google::protobuf::Empty;

// The answer to one call: the status and, when it is OK, the response.
template <class T>
using reply = std::function<void(status, T)>;

// How a StreamingPull stream pulls: the lease its messages get, and its flow control. What the
// stream holds counts until each message is acked, nacked or expires, whichever RPC does it.
struct stream_pull {
  std::chrono::seconds lease{10};             // stream_ack_deadline_seconds, 10..600
  std::uint64_t holder = 0;                   // the stream: service::new_holder()
  std::int64_t max_outstanding_messages = 0;  // <= 0: the server's cap
  std::int64_t max_outstanding_bytes = 0;     // <= 0: no limit
};

struct service_settings {
  std::filesystem::path dir;  // <data>/pubsub
  seglog::fsync_policy fsync = seglog::fsync_policy::always;
  std::uint64_t segment_bytes = 64ULL << 20;
  std::uint32_t max_pull_wait_ms = 30'000;  // a Pull without return_immediately waits this long
  std::string default_project = "nimbus";   // the kinesis action's topics live here
};

class service {
 public:
  // `writer` null: metadata is not stored (tests).
  service(storage::write_queue* writer, core::clock& clock, service_settings settings);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  static void migrate(storage::database& db);
  // Loads topics, subscriptions and cursors and opens the topics' logs (before start()).
  void restore(storage::database& db);
  void start();  // the service's thread: its timer (lease expiry, waiting pulls) and answers
  // Answers waiting pulls (UNAVAILABLE), stops the thread; calls after it are not answered.
  // The destructor calls it.
  void stop();
  // Shutdown's first step: answers every waiting pull now (UNAVAILABLE) and every later one at
  // once, while the thread still answers other calls, so gRPC's Shutdown (which waits for every
  // open call) is not held by a unary Pull parked for up to 30 s.
  void end_waits();

  // Publisher
  void create_topic(v1::Topic request, reply<v1::Topic> done);
  void update_topic(v1::UpdateTopicRequest request, reply<v1::Topic> done);
  void publish(v1::PublishRequest request, reply<v1::PublishResponse> done);
  void get_topic(const v1::GetTopicRequest& request, reply<v1::Topic> done);
  void list_topics(const v1::ListTopicsRequest& request, reply<v1::ListTopicsResponse> done);
  void list_topic_subscriptions(const v1::ListTopicSubscriptionsRequest& request,
                                reply<v1::ListTopicSubscriptionsResponse> done);
  void list_topic_snapshots(const v1::ListTopicSnapshotsRequest& request,
                            reply<v1::ListTopicSnapshotsResponse> done);
  void delete_topic(const v1::DeleteTopicRequest& request, reply<empty> done);
  void detach_subscription(const v1::DetachSubscriptionRequest& request,
                           reply<v1::DetachSubscriptionResponse> done);

  // Subscriber (StreamingPull lives in the gRPC server, over pull/acknowledge/modify below)
  void create_subscription(v1::Subscription request, reply<v1::Subscription> done);
  void get_subscription(const v1::GetSubscriptionRequest& request, reply<v1::Subscription> done);
  void update_subscription(v1::UpdateSubscriptionRequest request, reply<v1::Subscription> done);
  void list_subscriptions(const v1::ListSubscriptionsRequest& request,
                          reply<v1::ListSubscriptionsResponse> done);
  void delete_subscription(const v1::DeleteSubscriptionRequest& request, reply<empty> done);
  void modify_ack_deadline(const v1::ModifyAckDeadlineRequest& request, reply<empty> done);
  void acknowledge(const v1::AcknowledgeRequest& request, reply<empty> done);
  void pull(const v1::PullRequest& request, reply<v1::PullResponse> done);
  // The same for a StreamingPull stream: leasing for the stream's deadline instead of the
  // subscription's ack deadline, and answering only while the stream holds fewer than its
  // flow control allows (a waiting pull is served as acks release some).
  void pull(const v1::PullRequest& request, const stream_pull& stream,
            reply<v1::PullResponse> done);
  // A Pull that waits at most `max_wait` (the service's cap still applies): REST's
  // X-Server-Timeout, which gcloud sends and gives up after.
  void pull(const v1::PullRequest& request, std::chrono::milliseconds max_wait,
            reply<v1::PullResponse> done);
  std::uint64_t new_holder();  // a fresh stream_pull::holder
  // Per stream when the client sets no max_outstanding_messages: memory stays bounded.
  static constexpr std::int64_t max_stream_outstanding = 10'000;
  void modify_push_config(const v1::ModifyPushConfigRequest& request, reply<empty> done);
  void seek(const v1::SeekRequest& request, reply<v1::SeekResponse> done);
  void get_snapshot(const v1::GetSnapshotRequest& request, reply<v1::Snapshot> done);
  void list_snapshots(const v1::ListSnapshotsRequest& request,
                      reply<v1::ListSnapshotsResponse> done);
  void create_snapshot(const v1::CreateSnapshotRequest& request, reply<v1::Snapshot> done);
  void update_snapshot(const v1::UpdateSnapshotRequest& request, reply<v1::Snapshot> done);
  void delete_snapshot(const v1::DeleteSnapshotRequest& request, reply<empty> done);

  // Creates the topics, then the subscriptions, declared in nimbus.toml (each the REST JSON of a
  // Topic / Subscription, both field spellings) that do not exist yet; existing ones are left
  // as they are. Returns what went wrong with the first that could not be, or "". After start().
  std::string declare(const std::vector<std::string>& topics,
                      const std::vector<std::string>& subscriptions);

  // In-process publish of one message to topic `topic_id` of the default project (the rules
  // engine's kinesis action: streamName, partitionKey as the ordering key; alert notifications,
  // with attributes).
  void publish_record(const std::string& topic_id, std::string data, std::string ordering_key,
                      std::function<void(status)> done,
                      const std::map<std::string, std::string>& attributes = {});

  // Per topic and subscription: published, delivered, acked, nacked, expired, dead_lettered,
  // filtered, num_undelivered_messages, oldest_unacked_message_age_seconds.
  std::string prometheus_text() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;

  void pull(const v1::PullRequest& request, const std::optional<stream_pull>& stream,
            std::chrono::milliseconds max_wait, reply<v1::PullResponse> done);
};

}  // namespace nimbus::pubsub
