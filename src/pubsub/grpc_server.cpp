#include "pubsub/grpc_server.hpp"

#include <google/protobuf/any.pb.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "google/pubsub/v1/pubsub.grpc.pb.h"
#include "google/rpc/status.pb.h"

namespace nimbus::pubsub {

namespace {

using stream_reactor = grpc::ServerBidiReactor<v1::StreamingPullRequest, v1::StreamingPullResponse>;

constexpr std::int32_t min_stream_deadline = 10;  // stream_ack_deadline_seconds, reference §2
constexpr std::int32_t max_stream_deadline = 600;
constexpr std::int32_t max_pull_batch = 1000;  // the service's own cap on one pull

// ----------------------------------------------------------------------------- unary calls

// One unary RPC: the service's answer becomes the response and the status. The request is
// copied when the service takes it by value; the reply may come on the service's thread, which
// gRPC's callback API allows.
// The gate's verdict on a call: nullopt lets it through.
std::optional<grpc::Status> refusal(const call_gate& gate, grpc::CallbackServerContext* context) {
  if (!gate) return std::nullopt;
  std::string_view authorization;
  const auto& metadata = context->client_metadata();
  if (auto found = metadata.find("authorization"); found != metadata.end())
    authorization = std::string_view(found->second.data(), found->second.size());
  auto refused = gate(context->peer(), authorization);
  if (!refused) return std::nullopt;
  return to_grpc(*refused);
}

template <class Argument, class Response>
grpc::ServerUnaryReactor* answer_unary(service& svc, const call_gate& gate,
                                       void (service::*call)(Argument, reply<Response>),
                                       grpc::CallbackServerContext* context,
                                       const std::remove_cvref_t<Argument>* request,
                                       std::type_identity_t<Response>* response) {
  grpc::ServerUnaryReactor* const reactor = context->DefaultReactor();
  if (auto refused = refusal(gate, context)) {
    reactor->Finish(*refused);
    return reactor;
  }
  (svc.*call)(*request, [reactor, response](status outcome, Response answer) {
    if (outcome.ok()) *response = std::move(answer);
    reactor->Finish(to_grpc(outcome));
  });
  return reactor;
}

// google.pubsub.v1.Publisher, every method answered by the service.
class publisher_service final : public v1::Publisher::CallbackService {
 public:
  publisher_service(service& svc, const call_gate& gate) : svc_(svc), gate_(gate) {}

  grpc::ServerUnaryReactor* CreateTopic(grpc::CallbackServerContext* context,
                                        const v1::Topic* request, v1::Topic* response) override {
    return answer_unary(svc_, gate_, &service::create_topic, context, request, response);
  }
  grpc::ServerUnaryReactor* UpdateTopic(grpc::CallbackServerContext* context,
                                        const v1::UpdateTopicRequest* request,
                                        v1::Topic* response) override {
    return answer_unary(svc_, gate_, &service::update_topic, context, request, response);
  }
  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override {
    return answer_unary(svc_, gate_, &service::publish, context, request, response);
  }
  grpc::ServerUnaryReactor* GetTopic(grpc::CallbackServerContext* context,
                                     const v1::GetTopicRequest* request,
                                     v1::Topic* response) override {
    return answer_unary(svc_, gate_, &service::get_topic, context, request, response);
  }
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* context,
                                       const v1::ListTopicsRequest* request,
                                       v1::ListTopicsResponse* response) override {
    return answer_unary(svc_, gate_, &service::list_topics, context, request, response);
  }
  grpc::ServerUnaryReactor* ListTopicSubscriptions(
      grpc::CallbackServerContext* context, const v1::ListTopicSubscriptionsRequest* request,
      v1::ListTopicSubscriptionsResponse* response) override {
    return answer_unary(svc_, gate_, &service::list_topic_subscriptions, context, request,
                        response);
  }
  grpc::ServerUnaryReactor* ListTopicSnapshots(grpc::CallbackServerContext* context,
                                               const v1::ListTopicSnapshotsRequest* request,
                                               v1::ListTopicSnapshotsResponse* response) override {
    return answer_unary(svc_, gate_, &service::list_topic_snapshots, context, request, response);
  }
  grpc::ServerUnaryReactor* DeleteTopic(grpc::CallbackServerContext* context,
                                        const v1::DeleteTopicRequest* request,
                                        empty* response) override {
    return answer_unary(svc_, gate_, &service::delete_topic, context, request, response);
  }
  grpc::ServerUnaryReactor* DetachSubscription(grpc::CallbackServerContext* context,
                                               const v1::DetachSubscriptionRequest* request,
                                               v1::DetachSubscriptionResponse* response) override {
    return answer_unary(svc_, gate_, &service::detach_subscription, context, request, response);
  }

 private:
  service& svc_;
  const call_gate& gate_;
};

// ---------------------------------------------------------------------------- StreamingPull
//
// The service has no streaming call: a stream is a loop of waiting pulls (one in flight, each
// leasing for the stream's stream_ack_deadline_seconds), each non-empty answer written as one
// response (one write in flight), the next pull issued once it is written. Acks and modacks
// sent on the stream go to the service's acknowledge and modify_ack_deadline.
//
// Flow control: the service counts what each stream holds (its `holder`) until acked, nacked or
// expired, whichever RPC does it (Node acks a stream's messages through unary Acknowledge, on
// one of its 5 streams or none), and answers a stream's waiting pull only below its
// max_outstanding_messages / _bytes (a server cap when the client sets none).

// Where a stream is: reading its first request, checking the subscription, delivering; then
// ending: `finishing` waits for the write in flight before Finish, `finished` waits for gRPC's
// OnDone, `done` means the reactor is gone.
enum class stream_stage { first_request, opening, streaming, finishing, finished, done };

// One stream's state, shared by its reactor and the service calls it waits for (a pull may
// answer after the stream is gone). Every field but `svc` is guarded by `mutex`. The reactor's
// operations (StartRead, StartWrite, Finish) are called with `mutex` held, so OnDone (which
// takes it) cannot delete the reactor under them; that is safe because gRPC runs this
// reactor's reactions on its own threads, never inline in those calls. Service calls are made
// without `mutex`: the service may answer inline (a nack can serve a waiting pull).
struct stream_state {
  explicit stream_state(service& s) : svc(s) {}

  service& svc;
  std::mutex mutex;
  stream_reactor* reactor = nullptr;  // null once done
  stream_stage stage = stream_stage::first_request;
  v1::StreamingPullRequest incoming;  // where the read in flight lands
  std::string subscription;
  stream_pull flow;  // lease (stream_ack_deadline_seconds), holder, flow control
  std::int32_t max_messages = max_pull_batch;
  bool is_exactly_once = false;
  v1::StreamingPullResponse::SubscriptionProperties properties;
  bool is_pull_in_flight = false;
  bool is_delivery_queued = false;  // a batch of messages is in `outbox` (maybe being written)
  std::deque<v1::StreamingPullResponse> outbox;  // its front is being written when is_writing
  bool is_writing = false;
  grpc::Status final_status;  // the status Finish sends once the write in flight is done
};

// The open streams, for close_streams(). Shared with the reactors, which leave it in OnDone.
// Lock order: never a stream's mutex while holding this one's.
class stream_registry {
 public:
  // False once closing: the stream is to end at once.
  bool add(const std::shared_ptr<stream_state>& stream) {
    std::lock_guard lock(mutex_);
    if (is_closing_) return false;
    open_.insert(stream);
    return true;
  }
  void remove(const std::shared_ptr<stream_state>& stream) {
    std::lock_guard lock(mutex_);
    open_.erase(stream);
  }
  // Refuses new streams and hands back the open ones.
  std::vector<std::shared_ptr<stream_state>> close() {
    std::lock_guard lock(mutex_);
    is_closing_ = true;
    return {open_.begin(), open_.end()};
  }

 private:
  std::mutex mutex_;
  bool is_closing_ = false;                       // guarded by mutex_
  std::set<std::shared_ptr<stream_state>> open_;  // guarded by mutex_
};

grpc::Status invalid_argument(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

grpc::Status shutting_down() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "The service is shutting down");
}

bool is_stream_deadline(std::int32_t seconds) {
  return seconds >= min_stream_deadline && seconds <= max_stream_deadline;
}

// The modack pairs of a request: as many deadlines as ids, none negative (0 is a nack).
grpc::Status check_modacks(const v1::StreamingPullRequest& request) {
  if (request.modify_deadline_seconds_size() != request.modify_deadline_ack_ids_size())
    return invalid_argument(
        "modify_deadline_seconds and modify_deadline_ack_ids must have the same length.");
  for (const std::int32_t seconds : request.modify_deadline_seconds())
    if (seconds < 0) return invalid_argument("modify_deadline_seconds must not be negative.");
  return grpc::Status::OK;
}

grpc::Status check_first_request(const v1::StreamingPullRequest& request) {
  if (request.subscription().empty()) return invalid_argument("subscription is required");
  if (!is_stream_deadline(request.stream_ack_deadline_seconds()))
    return invalid_argument(
        "Invalid stream_ack_deadline_seconds: must be between 10 and 600 seconds.");
  return check_modacks(request);
}

grpc::Status check_later_request(const v1::StreamingPullRequest& request) {
  if (!request.subscription().empty())
    return invalid_argument("subscription may only be set in the first request of a stream.");
  if (!request.client_id().empty() || request.max_outstanding_messages() != 0 ||
      request.max_outstanding_bytes() != 0 || request.protocol_version() != 0)
    return invalid_argument(
        "client_id, max_outstanding_messages, max_outstanding_bytes and protocol_version may "
        "only be set in the first request of a stream.");
  if (request.stream_ack_deadline_seconds() != 0 &&
      !is_stream_deadline(request.stream_ack_deadline_seconds()))
    return invalid_argument(
        "Invalid stream_ack_deadline_seconds: must be between 10 and 600 seconds.");
  return check_modacks(request);
}

// The batch size of the stream's pulls: max_outstanding_messages capped at the service's
// limit; <= 0 means no limit.
std::int32_t pull_batch(std::int64_t max_outstanding_messages) {
  if (max_outstanding_messages <= 0) return max_pull_batch;
  return static_cast<std::int32_t>(
      std::min<std::int64_t>(max_outstanding_messages, max_pull_batch));
}

// Ends the stream with `why` (the first reason wins): at once, or once the write in flight is
// done (one write at a time, and Finish must not race it).
void finish_locked(stream_state& stream, grpc::Status why) {
  if (stream.stage >= stream_stage::finishing) return;
  if (stream.is_writing) {
    stream.stage = stream_stage::finishing;
    stream.final_status = std::move(why);
    stream.outbox.resize(1);  // only the response being written is kept
    return;
  }
  stream.outbox.clear();
  stream.stage = stream_stage::finished;
  stream.reactor->Finish(std::move(why));
}

// Starts writing the next queued response unless a write is in flight.
void write_next_locked(stream_state& stream) {
  if (stream.stage != stream_stage::streaming || stream.is_writing || stream.outbox.empty()) return;
  stream.is_writing = true;
  stream.reactor->StartWrite(&stream.outbox.front());
}

// Queues a response; every one carries subscription_properties (clients read them there).
void send_locked(stream_state& stream, v1::StreamingPullResponse response) {
  if (stream.stage != stream_stage::streaming) return;
  *response.mutable_subscription_properties() = stream.properties;
  stream.outbox.push_back(std::move(response));
  write_next_locked(stream);
}

struct pull_order {
  v1::PullRequest request;
  stream_pull flow;
};

// The next pull, when the stream may have one: open, none in flight, and the last batch
// written.
std::optional<pull_order> next_pull_locked(stream_state& stream) {
  if (stream.stage != stream_stage::streaming || stream.is_pull_in_flight ||
      stream.is_delivery_queued)
    return std::nullopt;
  stream.is_pull_in_flight = true;
  pull_order order;
  order.request.set_subscription(stream.subscription);
  order.request.set_max_messages(stream.max_messages);  // waits: return_immediately is false
  order.flow = stream.flow;
  return order;
}

// Messages pulled for a stream that ended meanwhile: handed back at once (a nack) rather
// than left leased until their deadline.
void release(service& svc, const std::string& subscription, const v1::PullResponse& answer) {
  v1::ModifyAckDeadlineRequest nack;
  nack.set_subscription(subscription);
  nack.set_ack_deadline_seconds(0);
  for (const auto& received : answer.received_messages()) nack.add_ack_ids(received.ack_id());
  svc.modify_ack_deadline(nack, [](const status&, const empty&) {});
}

void on_pulled(const std::shared_ptr<stream_state>& stream, const status& outcome,
               v1::PullResponse answer);

void issue_pull(const std::shared_ptr<stream_state>& stream, std::optional<pull_order> order) {
  if (!order) return;
  stream->svc.pull(order->request, order->flow, [stream](status outcome, v1::PullResponse answer) {
    on_pulled(stream, outcome, std::move(answer));
  });
}

// A pull's answer: a batch to write, nothing (the wait ran out: pull again), or an error
// that ends the stream (the subscription was deleted or detached, the service stops).
void on_pulled(const std::shared_ptr<stream_state>& stream, const status& outcome,
               v1::PullResponse answer) {
  std::optional<pull_order> next;
  std::string orphaned_from;  // the subscription, when the stream ended during the pull
  {
    std::lock_guard lock(stream->mutex);
    stream->is_pull_in_flight = false;
    if (stream->stage != stream_stage::streaming) {
      if (answer.received_messages_size() == 0) return;
      orphaned_from = stream->subscription;
    } else if (!outcome.ok()) {
      return finish_locked(*stream, to_grpc(outcome));
    } else if (answer.received_messages_size() == 0) {
      next = next_pull_locked(*stream);
    } else {
      v1::StreamingPullResponse response;
      response.mutable_received_messages()->Swap(answer.mutable_received_messages());
      stream->is_delivery_queued = true;
      return send_locked(*stream, std::move(response));
    }
  }
  if (!orphaned_from.empty()) return release(stream->svc, orphaned_from, answer);
  issue_pull(stream, std::move(next));
}

// ------------------------------------------------------------------- acks on the stream

enum class settle_kind { ack, modack };
enum class ack_result { ok, invalid, temporary };

// One id's fate in a service answer: with an ErrorInfo, the ids it names failed (for good or
// for now), the others succeeded; without one, the whole call failed.
ack_result result_for(const status& outcome, const std::string& ack_id) {
  if (outcome.ok()) return ack_result::ok;
  if (!outcome.reason.empty()) {
    const auto found = outcome.metadata.find(ack_id);
    if (found == outcome.metadata.end()) return ack_result::ok;
    return found->second.starts_with("TRANSIENT_FAILURE") ? ack_result::temporary
                                                          : ack_result::invalid;
  }
  switch (outcome.what) {
    case code::unavailable:
    case code::internal:
    case code::unknown:
    case code::aborted:
    case code::deadline_exceeded:
    case code::resource_exhausted:
      return ack_result::temporary;
    default:
      return ack_result::invalid;
  }
}

template <class Confirmation>
void classify(Confirmation& confirmation, const std::vector<std::string>& ids,
              const status& outcome) {
  for (const auto& id : ids) {
    switch (result_for(outcome, id)) {
      case ack_result::ok:
        confirmation.add_ack_ids(id);
        break;
      case ack_result::invalid:
        confirmation.add_invalid_ack_ids(id);
        break;
      case ack_result::temporary:
        confirmation.add_temporary_failed_ack_ids(id);
        break;
    }
  }
}

// Exactly-once subscriptions: the outcome of acks or modacks sent on the stream, per id.
void confirm(const std::shared_ptr<stream_state>& stream, settle_kind kind,
             const std::vector<std::string>& ids, const status& outcome) {
  v1::StreamingPullResponse response;
  if (kind == settle_kind::ack)
    classify(*response.mutable_acknowledge_confirmation(), ids, outcome);
  else
    classify(*response.mutable_modify_ack_deadline_confirmation(), ids, outcome);
  std::lock_guard lock(stream->mutex);
  send_locked(*stream, std::move(response));
}

// A failed ack or modack on a stream is not the stream's end (the lease runs out and the
// message comes back), unless an ack id was malformed: it is logged, at most a few lines a
// second.
void log_settle_failure(settle_kind kind, const std::string& subscription, const status& outcome) {
  static core::log_limiter limiter(5);
  core::warn_limited(limiter,
                     "pubsub_stream_{}_failed subscription={} code={} error=\"{}\" "
                     "similar_lines_suppressed={}",
                     kind == settle_kind::ack ? "ack" : "modack", subscription,
                     code_name(outcome.what), outcome.message);
}

// The service's answer to acks or modacks sent on the stream.
reply<empty> settled(const std::shared_ptr<stream_state>& stream, settle_kind kind,
                     const std::string& subscription, bool is_exactly_once,
                     std::vector<std::string> ids) {
  return
      [stream, kind, subscription, is_exactly_once, ids = std::move(ids)](status outcome, empty) {
        if (is_exactly_once) return confirm(stream, kind, ids, outcome);
        if (outcome.what == code::invalid_argument) {
          // "If the acknowledgement ID is malformed, the stream will be aborted with status
          // INVALID_ARGUMENT" (pubsub.proto).
          std::lock_guard lock(stream->mutex);
          return finish_locked(*stream, to_grpc(outcome));
        }
        if (!outcome.ok()) log_settle_failure(kind, subscription, outcome);
      };
}

// Sends one request's acks, and its modacks grouped by deadline, to the service.
void settle(const std::shared_ptr<stream_state>& stream, const std::string& subscription,
            bool is_exactly_once, const v1::StreamingPullRequest& request) {
  if (request.ack_ids_size() > 0) {
    v1::AcknowledgeRequest ack;
    ack.set_subscription(subscription);
    *ack.mutable_ack_ids() = request.ack_ids();
    std::vector<std::string> ids(request.ack_ids().begin(), request.ack_ids().end());
    stream->svc.acknowledge(
        ack, settled(stream, settle_kind::ack, subscription, is_exactly_once, std::move(ids)));
  }
  std::map<std::int32_t, std::vector<std::string>> by_deadline;
  for (int i = 0; i < request.modify_deadline_ack_ids_size(); ++i)
    by_deadline[request.modify_deadline_seconds(i)].push_back(request.modify_deadline_ack_ids(i));
  for (auto& group : by_deadline) {
    v1::ModifyAckDeadlineRequest modack;
    modack.set_subscription(subscription);
    modack.set_ack_deadline_seconds(group.first);
    for (const auto& id : group.second) modack.add_ack_ids(id);
    stream->svc.modify_ack_deadline(modack, settled(stream, settle_kind::modack, subscription,
                                                    is_exactly_once, std::move(group.second)));
  }
}

// ------------------------------------------------------------------------------ the reactor

// One StreamingPull call. gRPC creates it through Subscriber::StreamingPull and it deletes
// itself in OnDone (gRPC's reactor contract, hence the plain `new`). Its reactions run on
// gRPC's threads, concurrently with the service's answers: all state is in `state_`.
class streaming_pull final : public stream_reactor {
 public:
  // `refused`: the gate's status, ending the stream at once.
  streaming_pull(service& svc, std::shared_ptr<stream_registry> registry,
                 std::optional<grpc::Status> refused)
      : state_(std::make_shared<stream_state>(svc)), registry_(std::move(registry)) {
    // The reactor is set before the registry can hand the stream to close_streams(), which
    // finishes it through that pointer (the registry's lock is never held while a stream's is
    // taken, so this order cannot deadlock).
    std::lock_guard lock(state_->mutex);
    state_->reactor = this;
    const bool is_open = !refused && registry_->add(state_);
    if (is_open)
      StartRead(&state_->incoming);
    else
      finish_locked(*state_, refused ? std::move(*refused) : shutting_down());
  }

  void OnReadDone(bool ok) override {
    v1::StreamingPullRequest request;
    std::string subscription;
    bool is_exactly_once = false;
    bool is_first = false;
    {
      std::lock_guard lock(state_->mutex);
      auto& stream = *state_;
      // A half-close: the client is done, and OK is what it expects. (A cancel also ends the
      // read; OnCancel has then finished the stream already.)
      if (!ok) return finish_locked(stream, grpc::Status::OK);
      request = std::move(stream.incoming);
      if (stream.stage == stream_stage::first_request) {
        if (auto checked = check_first_request(request); !checked.ok())
          return finish_locked(stream, std::move(checked));
        stream.subscription = request.subscription();
        stream.flow.lease = std::chrono::seconds(request.stream_ack_deadline_seconds());
        stream.flow.holder = stream.svc.new_holder();
        stream.flow.max_outstanding_messages = request.max_outstanding_messages();
        stream.flow.max_outstanding_bytes = request.max_outstanding_bytes();
        stream.max_messages = pull_batch(request.max_outstanding_messages());
        stream.stage = stream_stage::opening;
        is_first = true;
      } else if (stream.stage == stream_stage::streaming) {
        if (auto checked = check_later_request(request); !checked.ok())
          return finish_locked(stream, std::move(checked));
        if (request.stream_ack_deadline_seconds() != 0)
          stream.flow.lease = std::chrono::seconds(request.stream_ack_deadline_seconds());
        subscription = stream.subscription;
        is_exactly_once = stream.is_exactly_once;
      } else {
        return;  // ending
      }
    }
    if (is_first) return open(std::move(request));
    // Empty requests are keepalives: nothing to settle. The next read starts once this one's
    // acks reached the service, so requests are applied in order.
    settle(state_, subscription, is_exactly_once, request);
    std::lock_guard lock(state_->mutex);
    if (state_->stage == stream_stage::streaming) StartRead(&state_->incoming);
  }

  void OnWriteDone(bool ok) override {
    std::optional<pull_order> next;
    {
      std::lock_guard lock(state_->mutex);
      auto& stream = *state_;
      stream.is_writing = false;
      if (!stream.outbox.empty()) {
        if (stream.outbox.front().received_messages_size() > 0) stream.is_delivery_queued = false;
        stream.outbox.pop_front();
      }
      if (stream.stage == stream_stage::finishing) {
        stream.outbox.clear();
        stream.stage = stream_stage::finished;
        return Finish(std::move(stream.final_status));
      }
      if (!ok)
        return finish_locked(stream,
                             grpc::Status(grpc::StatusCode::CANCELLED, "The write failed."));
      write_next_locked(stream);
      next = next_pull_locked(stream);
    }
    issue_pull(state_, std::move(next));
  }

  void OnCancel() override {
    std::lock_guard lock(state_->mutex);
    finish_locked(*state_, grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard lock(state_->mutex);
      state_->stage = stream_stage::done;
      state_->reactor = nullptr;
      state_->outbox.clear();
    }
    registry_->remove(state_);
    delete this;
  }

 private:
  // After a valid first request: the subscription must exist (else its error ends the
  // stream), and gives the properties every response carries. Then delivery starts, the first
  // request's acks and modacks are applied and the next request is read.
  void open(v1::StreamingPullRequest first) {
    v1::GetSubscriptionRequest request;
    request.set_subscription(first.subscription());
    auto stream = state_;
    stream->svc.get_subscription(request, [stream, first = std::move(first)](
                                              status outcome, v1::Subscription found) {
      std::optional<pull_order> next;
      bool is_exactly_once = false;
      {
        std::lock_guard lock(stream->mutex);
        if (stream->stage != stream_stage::opening) return;
        if (!outcome.ok()) return finish_locked(*stream, to_grpc(outcome));
        stream->is_exactly_once = found.enable_exactly_once_delivery();
        stream->properties.set_exactly_once_delivery_enabled(found.enable_exactly_once_delivery());
        stream->properties.set_message_ordering_enabled(found.enable_message_ordering());
        stream->stage = stream_stage::streaming;
        next = next_pull_locked(*stream);
        is_exactly_once = stream->is_exactly_once;
      }
      issue_pull(stream, std::move(next));
      settle(stream, first.subscription(), is_exactly_once, first);
      std::lock_guard lock(stream->mutex);
      if (stream->stage == stream_stage::streaming) stream->reactor->StartRead(&stream->incoming);
    });
  }

  std::shared_ptr<stream_state> state_;
  std::shared_ptr<stream_registry> registry_;
};

// google.pubsub.v1.Subscriber: the unary methods answered by the service, StreamingPull by a
// streaming_pull reactor.
class subscriber_service final : public v1::Subscriber::CallbackService {
 public:
  subscriber_service(service& svc, const call_gate& gate, std::shared_ptr<stream_registry> streams)
      : svc_(svc), gate_(gate), streams_(std::move(streams)) {}

  grpc::ServerUnaryReactor* CreateSubscription(grpc::CallbackServerContext* context,
                                               const v1::Subscription* request,
                                               v1::Subscription* response) override {
    return answer_unary(svc_, gate_, &service::create_subscription, context, request, response);
  }
  grpc::ServerUnaryReactor* GetSubscription(grpc::CallbackServerContext* context,
                                            const v1::GetSubscriptionRequest* request,
                                            v1::Subscription* response) override {
    return answer_unary(svc_, gate_, &service::get_subscription, context, request, response);
  }
  grpc::ServerUnaryReactor* UpdateSubscription(grpc::CallbackServerContext* context,
                                               const v1::UpdateSubscriptionRequest* request,
                                               v1::Subscription* response) override {
    return answer_unary(svc_, gate_, &service::update_subscription, context, request, response);
  }
  grpc::ServerUnaryReactor* ListSubscriptions(grpc::CallbackServerContext* context,
                                              const v1::ListSubscriptionsRequest* request,
                                              v1::ListSubscriptionsResponse* response) override {
    return answer_unary(svc_, gate_, &service::list_subscriptions, context, request, response);
  }
  grpc::ServerUnaryReactor* DeleteSubscription(grpc::CallbackServerContext* context,
                                               const v1::DeleteSubscriptionRequest* request,
                                               empty* response) override {
    return answer_unary(svc_, gate_, &service::delete_subscription, context, request, response);
  }
  grpc::ServerUnaryReactor* ModifyAckDeadline(grpc::CallbackServerContext* context,
                                              const v1::ModifyAckDeadlineRequest* request,
                                              empty* response) override {
    return answer_unary(svc_, gate_, &service::modify_ack_deadline, context, request, response);
  }
  grpc::ServerUnaryReactor* Acknowledge(grpc::CallbackServerContext* context,
                                        const v1::AcknowledgeRequest* request,
                                        empty* response) override {
    return answer_unary(svc_, gate_, &service::acknowledge, context, request, response);
  }
  grpc::ServerUnaryReactor* Pull(grpc::CallbackServerContext* context,
                                 const v1::PullRequest* request,
                                 v1::PullResponse* response) override {
    // The two-argument pull: the subscription's own ack deadline.
    using plain_pull = void (service::*)(const v1::PullRequest&, reply<v1::PullResponse>);
    return answer_unary(svc_, gate_, static_cast<plain_pull>(&service::pull), context, request,
                        response);
  }
  stream_reactor* StreamingPull(grpc::CallbackServerContext* context) override {
    return new streaming_pull(svc_, streams_, refusal(gate_, context));
  }
  grpc::ServerUnaryReactor* ModifyPushConfig(grpc::CallbackServerContext* context,
                                             const v1::ModifyPushConfigRequest* request,
                                             empty* response) override {
    return answer_unary(svc_, gate_, &service::modify_push_config, context, request, response);
  }
  grpc::ServerUnaryReactor* GetSnapshot(grpc::CallbackServerContext* context,
                                        const v1::GetSnapshotRequest* request,
                                        v1::Snapshot* response) override {
    return answer_unary(svc_, gate_, &service::get_snapshot, context, request, response);
  }
  grpc::ServerUnaryReactor* ListSnapshots(grpc::CallbackServerContext* context,
                                          const v1::ListSnapshotsRequest* request,
                                          v1::ListSnapshotsResponse* response) override {
    return answer_unary(svc_, gate_, &service::list_snapshots, context, request, response);
  }
  grpc::ServerUnaryReactor* CreateSnapshot(grpc::CallbackServerContext* context,
                                           const v1::CreateSnapshotRequest* request,
                                           v1::Snapshot* response) override {
    return answer_unary(svc_, gate_, &service::create_snapshot, context, request, response);
  }
  grpc::ServerUnaryReactor* UpdateSnapshot(grpc::CallbackServerContext* context,
                                           const v1::UpdateSnapshotRequest* request,
                                           v1::Snapshot* response) override {
    return answer_unary(svc_, gate_, &service::update_snapshot, context, request, response);
  }
  grpc::ServerUnaryReactor* DeleteSnapshot(grpc::CallbackServerContext* context,
                                           const v1::DeleteSnapshotRequest* request,
                                           empty* response) override {
    return answer_unary(svc_, gate_, &service::delete_snapshot, context, request, response);
  }
  grpc::ServerUnaryReactor* Seek(grpc::CallbackServerContext* context,
                                 const v1::SeekRequest* request,
                                 v1::SeekResponse* response) override {
    return answer_unary(svc_, gate_, &service::seek, context, request, response);
  }

 private:
  service& svc_;
  const call_gate& gate_;
  std::shared_ptr<stream_registry> streams_;
};

}  // namespace

grpc::Status to_grpc(const status& s) {
  if (s.ok()) return grpc::Status::OK;
  // google.rpc.Code and grpc::StatusCode share their numbers.
  const auto grpc_code = static_cast<grpc::StatusCode>(static_cast<int>(s.what));
  if (s.reason.empty()) return grpc::Status(grpc_code, s.message);
  google::rpc::ErrorInfo info;
  info.set_reason(s.reason);
  info.set_domain("pubsub.googleapis.com");
  for (const auto& [key, value] : s.metadata) (*info.mutable_metadata())[key] = value;
  google::rpc::Status details;
  details.set_code(static_cast<std::int32_t>(s.what));
  details.set_message(s.message);
  details.add_details()->PackFrom(info);  // type.googleapis.com/google.rpc.ErrorInfo
  return grpc::Status(grpc_code, s.message, details.SerializeAsString());
}

struct grpc_services::impl {
  impl(service& svc, call_gate g)
      : gate(std::move(g)),
        streams(std::make_shared<stream_registry>()),
        publisher(svc, gate),
        subscriber(svc, gate, streams) {}

  const call_gate gate;
  std::shared_ptr<stream_registry> streams;
  publisher_service publisher;
  subscriber_service subscriber;
};

grpc_services::grpc_services(service& svc, call_gate gate)
    : impl_(std::make_unique<impl>(svc, std::move(gate))) {}

grpc_services::~grpc_services() = default;

grpc::Service* grpc_services::publisher() {
  return &impl_->publisher;
}

grpc::Service* grpc_services::subscriber() {
  return &impl_->subscriber;
}

void grpc_services::close_streams() {
  for (const auto& stream : impl_->streams->close()) {
    std::lock_guard lock(stream->mutex);
    finish_locked(*stream, shutting_down());
  }
}

}  // namespace nimbus::pubsub
