#include "bridge/pubsub_link.hpp"

#include <algorithm>
#include <chrono>
#include <future>
#include <set>
#include <utility>
#include <variant>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "bridge/queued_message.hpp"
#include "core/random.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"
#include "pubsub/validate.hpp"

namespace nimbus::bridge {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Pub/Sub's limits on one Publish: 1,000 messages and 10 MB. A batch stops at 9 MB, leaving
// room for the request's framing; a message alone may come close to 10 MB.
constexpr std::size_t max_batch_messages = pubsub::max_messages_per_publish;
constexpr std::size_t max_batch_bytes = 9'000'000;
constexpr std::size_t max_message_bytes = pubsub::max_publish_bytes - 2048;
constexpr std::size_t max_pull_messages = 1000;
constexpr std::size_t max_ack_ids = 1000;  // per Acknowledge / ModifyAckDeadline

// A queued record as the Pub/Sub message the envelope makes of it, or why there is none.
std::variant<v1::PubsubMessage, std::string> wrap(const pubsub_bridge& config,
                                                  const queued_message& record) {
  mqtt::user_properties user;
  if (!record.properties.empty())
    if (auto props = mqtt::decode_properties(record.properties)) user = std::move(props->user);
  const mqtt_message_view view{record.topic, record.payload, record.qos, record.retain, user};
  auto wrapped =
      wrap_upstream(config.envelope, view, record.enqueued_ms * 1'000'000, config.order_by_topic);
  if (auto* error = std::get_if<envelope_error>(&wrapped)) return std::move(error->reason);
  auto& out = std::get<pubsub_publish>(wrapped);
  v1::PubsubMessage message;
  message.set_data(std::move(out.data));
  for (auto& [key, value] : out.attributes) (*message.mutable_attributes())[key] = value;
  message.set_ordering_key(std::move(out.ordering_key));
  if (auto checked = pubsub::check_message(message); !checked.ok()) return checked.message;
  if (message.ByteSizeLong() > max_message_bytes) return "larger than Pub/Sub's 10 MB";
  return message;
}

}  // namespace

// Where other threads' work meets the link: `link` is set by start() and cleared by stop(),
// under the mutex, so what arrives after stop() (an answer, a timer) finds nobody.
struct pubsub_link::inbox {
  std::mutex mutex;
  pubsub_link* link = nullptr;  // mutex

  pubsub_link* current() {
    std::lock_guard lock(mutex);
    return link;
  }
};

// One side's retries: up (Publish) and down (Pull) back off separately.
struct pubsub_link::direction {
  direction(asio::io_context& loop, core::backoff_options options)
      : delays([] { return core::random_u64(); }, options), timer(loop) {}
  core::backoff delays;
  asio::steady_timer timer;
  bool is_waiting = false;  // for the timer, before the call goes again
  bool is_failing = false;  // the last call failed
};

pubsub_link::pubsub_link(pubsub_bridge config, std::unique_ptr<pubsub_target> target,
                         broker::broker& broker, asio::io_context& loop,
                         seglog::committer& committer, core::clock& clock,
                         std::filesystem::path dir, core::backoff_options retry)
    : config_(std::move(config)),
      target_(std::move(target)),
      broker_(broker),
      loop_(loop),
      clock_(clock),
      publisher_id_("$bridge/" + config_.name),
      topic_path_("projects/" + config_.project + "/topics/" + config_.topic),
      subscription_path_("projects/" + config_.project + "/subscriptions/" + config_.subscription),
      inbox_(std::make_shared<inbox>()),
      up_(std::make_unique<direction>(loop, retry)),
      down_(std::make_unique<direction>(loop, retry)),
      has_succeeded_(config_.is_local) {
  forward_queue_options options;
  options.dir = std::move(dir);
  options.bound = config_.queue;
  queue_ = forward_queue::open(std::move(options), committer, clock);
  intake_ = std::make_unique<queue_intake>(*queue_, [this](bool is_durable) {
    if (!is_durable) counters_.count_error();
    wake();
  });
}

pubsub_link::~pubsub_link() {
  stop();
  // The queue first: its last durability callbacks still read this link's members.
  queue_.reset();
}

void pubsub_link::deliver(const std::shared_ptr<inbox>& box,
                          std::function<void(pubsub_link&)> work) {
  std::lock_guard lock(box->mutex);
  if (box->link == nullptr) return;
  asio::post(box->link->loop_, [box, work = std::move(work)] {
    if (auto* link = box->current()) work(*link);
  });
}

template <class Response>
pubsub::reply<Response> pubsub_link::answer_to(handler<Response> on_answer) {
  return [box = inbox_, on_answer](pubsub::status outcome, Response response) {
    deliver(box, [on_answer, outcome = std::move(outcome), response = std::move(response)](
                     pubsub_link& link) mutable { (link.*on_answer)(outcome, response); });
  };
}

void pubsub_link::start() {
  state_ = has_succeeded_ ? link_state::connected : link_state::connecting;
  {
    std::lock_guard lock(inbox_->mutex);
    inbox_->link = this;
  }
  queue_->set_space_listener([this] {
    intake_->on_space();
    wake();
  });
  for (const auto& filter : std::set<std::string>(config_.filters.begin(), config_.filters.end()))
    subscriptions_.push_back(broker_.subscribe_service(
        filter, [this, filter](const broker::message_ptr& msg, const broker::client_identity*) {
          on_local_message(filter, msg);
        }));
  deliver(inbox_, [](pubsub_link& link) {
    link.pump_up();
    link.pull_down();
  });
}

void pubsub_link::stop() {
  subscriptions_.clear();
  {
    std::lock_guard lock(inbox_->mutex);
    if (inbox_->link == nullptr) return;
    inbox_->link = nullptr;
  }
  target_->cancel();
  // Nothing new reaches the link now; wait for what the loop may be running.
  auto fence = std::make_shared<std::promise<void>>();
  auto passed = fence->get_future();
  asio::post(loop_, [fence] { fence->set_value(); });
  if (passed.wait_for(5s) != std::future_status::ready)
    spdlog::warn("bridge_stop_timeout bridge={} note=\"its loop does not run\"", config_.name);
  state_ = link_state::stopped;
}

link_status pubsub_link::status() const {
  link_status s;
  s.name = config_.name;
  s.state = state_.load();
  s.remote = target_->describe();
  {
    std::lock_guard lock(text_mutex_);
    s.last_error = last_error_;
  }
  counters_.copy_to(s);
  s.queue = queue_->stats();
  return s;
}

// ---- up: the broker's threads

void pubsub_link::on_local_message(const std::string& filter, const broker::message_ptr& msg) {
  if (msg->publisher == publisher_id_) return;  // a command this bridge brought in
  // Overlapping filters: the first of the config's that matches takes the message, once.
  const auto first =
      std::find_if(config_.filters.begin(), config_.filters.end(),
                   [&](const std::string& f) { return mqtt::topic_matches(f, msg->topic); });
  if (first == config_.filters.end() || *first != filter) return;
  queued_message record;
  record.topic = msg->topic;
  record.payload = msg->payload;
  record.qos = std::min<std::uint8_t>(msg->qos, 1);  // subscribed at QoS 1
  record.retain = msg->retain;
  if (config_.envelope == envelope_kind::raw && !msg->props.user.empty()) {
    mqtt::properties user_only;
    user_only.user = msg->props.user;
    record.properties = mqtt::encode_properties(user_only);
  }
  record.expires_at_ms = msg->expires_at * 1000;
  record.enqueued_ms = clock_.unix_millis();  // the envelope's timestamp
  intake_->submit(encode_queued_message(record), broker_.hold_publisher());
}

void pubsub_link::wake() {
  if (is_wake_posted_.exchange(true)) return;
  deliver(inbox_, [](pubsub_link& link) {
    link.is_wake_posted_ = false;
    link.pump_up();
  });
}

// ---- up: the loop

void pubsub_link::pump_up() {
  if (config_.topic.empty() || batch_ || up_->is_waiting) return;
  if (pending_.size() < max_batch_messages) read_queue();
  if (pending_.empty()) return;
  batch next;
  next.request.set_topic(topic_path_);
  std::size_t bytes = 0;
  while (!pending_.empty() && next.offsets.size() < max_batch_messages &&
         (next.offsets.empty() || bytes + pending_.front().bytes <= max_batch_bytes)) {
    bytes += pending_.front().bytes;
    next.offsets.push_back(pending_.front().offset);
    *next.request.add_messages() = std::move(pending_.front().message);
    pending_.pop_front();
  }
  batch_ = std::move(next);
  send_batch();
}

void pubsub_link::read_queue() {
  std::vector<seglog::record> records;
  if (auto error = queue_->read(max_batch_messages - pending_.size(), max_batch_bytes, records)) {
    counters_.count_error();
    spdlog::error("bridge_queue_read_failed bridge={} error=\"{}\"", config_.name, error.message());
    return;
  }
  const std::int64_t now_ms = clock_.unix_millis();
  for (auto& record : records) {
    auto message = decode_queued_message(record.payload);
    if (!message) {
      counters_.count_error();
      queue_->settle(record.offset, settle_reason::undeliverable);
      continue;
    }
    if (message->expires_at_ms != 0 && message->expires_at_ms <= now_ms) {
      queue_->settle(record.offset, settle_reason::expired);
      continue;
    }
    auto wrapped = wrap(config_, *message);
    if (auto* why = std::get_if<std::string>(&wrapped)) {
      // As the tutorial's except: counted as an error, and the bridge goes on.
      counters_.count_error();
      core::warn_limited(refusals_log_,
                         "bridge_message_undeliverable bridge={} topic=\"{}\" reason=\"{}\" "
                         "similar_lines_suppressed={}",
                         config_.name, message->topic, *why);
      queue_->settle(record.offset, settle_reason::undeliverable);
      continue;
    }
    outgoing out{record.offset, std::get<v1::PubsubMessage>(std::move(wrapped)), 0};
    out.bytes = out.message.ByteSizeLong() + 6;  // its field tag and length in the request
    pending_.push_back(std::move(out));
  }
}

void pubsub_link::send_batch() {
  target_->publish(batch_->request, answer_to(&pubsub_link::on_published));
}

void pubsub_link::on_published(const pubsub::status& outcome, v1::PublishResponse& response) {
  const std::size_t count = batch_->offsets.size();
  if (!outcome.ok() || static_cast<std::size_t>(response.message_ids_size()) != count) {
    // The same batch goes again after the backoff: Publish either took all of it or none.
    failed(*up_, "Publish",
           outcome.ok() ? pubsub::status::error(pubsub::code::internal,
                                                fmt::format("{} message ids for {} messages",
                                                            response.message_ids_size(), count))
                        : outcome);
    return;
  }
  for (const auto offset : batch_->offsets) queue_->acknowledge(offset);
  counters_.forwarded.fetch_add(count, std::memory_order_relaxed);
  batch_.reset();
  succeeded(*up_);
  pump_up();
}

// ---- down: the loop

void pubsub_link::pull_down() {
  if (config_.subscription.empty() || is_pulling_ || down_->is_waiting ||
      leased_ >= config_.max_outstanding)
    return;
  v1::PullRequest request;
  request.set_subscription(subscription_path_);
  request.set_max_messages(static_cast<std::int32_t>(
      std::min<std::size_t>(config_.max_outstanding - leased_, max_pull_messages)));
  is_pulling_ = true;
  target_->pull(request, answer_to(&pubsub_link::on_pulled));
}

void pubsub_link::on_pulled(const pubsub::status& outcome, v1::PullResponse& response) {
  is_pulling_ = false;
  if (outcome.what == pubsub::code::deadline_exceeded) {  // a wait cut short: pull again
    pull_down();
    return;
  }
  if (!outcome.ok()) {
    failed(*down_, "Pull", outcome);
    return;
  }
  succeeded(*down_);
  for (const auto& received : response.received_messages()) {
    ++leased_;
    publish_command(received);
  }
  send_acks();
  pull_down();
}

void pubsub_link::publish_command(const v1::ReceivedMessage& received) {
  const auto& message = received.message();
  std::optional<std::string_view> topic_attribute;
  if (auto found = message.attributes().find("topic"); found != message.attributes().end())
    topic_attribute = found->second;
  auto decoded =
      unwrap_downstream(config_.envelope, message.data(), topic_attribute, config_.allowed_topics);
  if (auto* error = std::get_if<envelope_error>(&decoded)) {
    counters_.count_error();
    core::warn_limited(refusals_log_,
                       "bridge_command_refused bridge={} message_id={} reason=\"{}\" "
                       "similar_lines_suppressed={}",
                       config_.name, message.message_id(), error->reason);
    nacks_.push_back(received.ack_id());
    return;
  }
  auto& decoded_command = std::get<command>(decoded);
  auto msg = std::make_shared<broker::message>();
  msg->topic = std::move(decoded_command.topic);
  msg->payload = std::move(decoded_command.payload);
  msg->qos = config_.command_qos;
  msg->publisher = publisher_id_;
  counters_.received.fetch_add(1, std::memory_order_relaxed);
  if (msg->qos == 0) {
    broker_.publish(std::move(msg));
    acks_.push_back(received.ack_id());
    return;
  }
  // Acknowledged once the broker took it: its subscribers' queues, or their congestion cleared;
  // nacked when a service holding it could not keep it.
  auto gate = std::make_shared<broker::congestion_gate>();
  gate->on_clear = [box = inbox_, self = gate.get(), ack_id = received.ack_id()] {
    const bool is_taken = !self->failed.load(std::memory_order_acquire);
    deliver(box, [is_taken, ack_id](pubsub_link& link) {
      (is_taken ? link.acks_ : link.nacks_).push_back(ack_id);
      link.send_acks();
    });
  };
  broker_.publish(std::move(msg), gate);
  gate->release();
}

void pubsub_link::send_acks() {
  if (is_acking_ || (acks_.empty() && nacks_.empty())) return;
  const bool is_nack = acks_.empty();
  auto& ids = is_nack ? nacks_ : acks_;
  const std::size_t count = std::min(ids.size(), max_ack_ids);
  auto answer = [box = inbox_, count, is_nack](pubsub::status outcome, pubsub::empty) {
    deliver(box, [count, is_nack, outcome = std::move(outcome)](pubsub_link& link) {
      link.on_acked(count, is_nack, outcome);
    });
  };
  is_acking_ = true;
  if (is_nack) {
    v1::ModifyAckDeadlineRequest request;
    request.set_subscription(subscription_path_);
    request.set_ack_deadline_seconds(0);
    for (std::size_t i = 0; i < count; ++i) request.add_ack_ids(std::move(ids[i]));
    ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(count));
    target_->modify_ack_deadline(request, std::move(answer));
  } else {
    v1::AcknowledgeRequest request;
    request.set_subscription(subscription_path_);
    for (std::size_t i = 0; i < count; ++i) request.add_ack_ids(std::move(ids[i]));
    ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(count));
    target_->acknowledge(request, std::move(answer));
  }
}

void pubsub_link::on_acked(std::size_t count, bool is_nack, const pubsub::status& outcome) {
  is_acking_ = false;
  // Answered or not, these are no longer leased to us: a lost ack's messages come back after
  // their ack deadline, and are published again.
  leased_ -= static_cast<std::uint32_t>(count);
  if (!outcome.ok())
    core::warn_limited(failures_log_,
                       "bridge_ack_failed bridge={} call={} count={} error=\"{} {}\" "
                       "similar_lines_suppressed={}",
                       config_.name, is_nack ? "ModifyAckDeadline" : "Acknowledge", count,
                       pubsub::code_name(outcome.what), outcome.message);
  send_acks();
  pull_down();
}

// ---- both

void pubsub_link::succeeded(direction& side) {
  side.delays.reset();
  has_succeeded_ = true;
  if (side.is_failing) {
    side.is_failing = false;
    spdlog::info("bridge_target_reachable bridge={} target={}", config_.name, target_->describe());
  }
  if (!up_->is_failing && !down_->is_failing) {
    std::lock_guard lock(text_mutex_);
    last_error_.clear();
  }
  show_state();
}

void pubsub_link::failed(direction& side, std::string_view call, const pubsub::status& outcome) {
  std::string why =
      fmt::format("{}: {} {}", call, pubsub::code_name(outcome.what), outcome.message);
  core::warn_limited(failures_log_,
                     "bridge_call_failed bridge={} target={} error=\"{}\" "
                     "similar_lines_suppressed={}",
                     config_.name, target_->describe(), why);
  {
    std::lock_guard lock(text_mutex_);
    last_error_ = std::move(why);
  }
  counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  side.is_failing = true;
  side.is_waiting = true;
  show_state();
  const bool is_up = &side == up_.get();
  side.timer.expires_after(side.delays.next_delay());
  side.timer.async_wait([box = inbox_, is_up](boost::system::error_code error) {
    pubsub_link* link = error ? nullptr : box->current();
    if (link == nullptr) return;
    if (is_up) {
      link->up_->is_waiting = false;
      link->send_batch();  // the same batch again
    } else {
      link->down_->is_waiting = false;
      link->pull_down();
    }
  });
}

void pubsub_link::show_state() {
  state_ = up_->is_failing || down_->is_failing
               ? link_state::backing_off
               : (has_succeeded_ ? link_state::connected : link_state::connecting);
}

}  // namespace nimbus::bridge
