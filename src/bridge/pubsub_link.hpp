#pragma once
// One MQTT <-> Pub/Sub bridge at run time ([pubsub_bridges.<name>], issue 14; the tutorial's
// §4.1 and §4.2 Python bridges): the broker's bus on one side, a Pub/Sub target
// (pubsub_target.hpp: this server's service or a remote one over gRPC) on the other.
//
// Up: one bus subscription per filter. Each message is appended to the store-and-forward queue
// in <data>/bridges/<name>/ and its publisher's PUBACK held until that is on disk (as mqtt_link).
// The link reads the queue in order, wraps each record in the configured envelope
// (pubsub_envelope.hpp) and publishes batches of at most 1,000 messages and ~9 MB, one Publish
// at a time; records leave the queue once Publish returned their ids. A failed Publish is
// retried, the same batch, after a backoff; a record no envelope or Pub/Sub limit admits leaves
// as undeliverable, counted as an error.
// Down: Pull on the subscription, at most max_outstanding messages leased. Each is decoded as a
// command and published locally (QoS command_qos) as "$bridge/<name>", which the up side skips
// (No Local); it is acknowledged once the broker took it (its congestion gate), nacked
// (ModifyAckDeadline 0) when it is not a valid command.
//
// Threads: bus handlers on the broker's threads, durability callbacks on the committer's,
// target answers on the target's; all of them hand their work to the link's loop, where its
// state lives. Counters are atomics.
#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "bridge/bridge_config.hpp"
#include "bridge/forward_queue.hpp"
#include "bridge/mqtt_link.hpp"  // link_status, link_state
#include "bridge/pubsub_target.hpp"
#include "bridge/queue_intake.hpp"
#include "broker/broker.hpp"
#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "seglog/committer.hpp"

namespace nimbus::bridge {

class pubsub_link {
 public:
  // Opens the queue in `dir` (<data>/bridges/<name>): throws std::system_error. `retry` bounds
  // the delays after a failed call (tests shorten them).
  pubsub_link(pubsub_bridge config, std::unique_ptr<pubsub_target> target, broker::broker& broker,
              boost::asio::io_context& loop, seglog::committer& committer, core::clock& clock,
              std::filesystem::path dir, core::backoff_options retry = {});
  ~pubsub_link();  // stops first if stop() was not called
  pubsub_link(const pubsub_link&) = delete;
  pubsub_link& operator=(const pubsub_link&) = delete;

  // Subscribes on the bus, starts publishing and pulling (the loop must run).
  void start();
  // Unsubscribes, cancels the target's calls and waits (bounded) for the loop to let go of the
  // link; what was not published stays queued, what was leased and not acked comes back after
  // its ack deadline. From any thread but the link's loop.
  void stop();

  link_status status() const;
  const pubsub_bridge& config() const { return config_; }
  forward_queue& queue() { return *queue_; }

 private:
  struct inbox;
  struct direction;
  // A message read from the queue and wrapped, not yet published.
  struct outgoing {
    std::uint64_t offset = 0;
    v1::PubsubMessage message;
    std::size_t bytes = 0;  // its size in a PublishRequest
  };
  // The Publish in flight, or waiting to be sent again.
  struct batch {
    v1::PublishRequest request;
    std::vector<std::uint64_t> offsets;
  };

  // Runs `work` on the link's loop unless the link stopped meanwhile: how every thread reaches
  // the link's state (answers may come after the link is gone; they then go nowhere).
  static void deliver(const std::shared_ptr<inbox>& box, std::function<void(pubsub_link&)> work);
  // A target call's reply that delivers its answer to `handler`.
  template <class Response>
  using handler = void (pubsub_link::*)(const pubsub::status&, Response&);
  template <class Response>
  pubsub::reply<Response> answer_to(handler<Response> on_answer);

  // Up (the broker's threads, then the loop).
  void on_local_message(const std::string& filter, const broker::message_ptr& msg);
  void wake();
  void pump_up();
  void read_queue();
  void send_batch();
  void on_published(const pubsub::status& outcome, v1::PublishResponse& response);
  // Down (the loop).
  void pull_down();
  void on_pulled(const pubsub::status& outcome, v1::PullResponse& response);
  void publish_command(const v1::ReceivedMessage& received);
  void send_acks();
  void on_acked(std::size_t count, bool is_nack, const pubsub::status& outcome);
  // Both (the loop).
  void succeeded(direction& side);
  void failed(direction& side, std::string_view call, const pubsub::status& outcome);
  void show_state();

  const pubsub_bridge config_;
  const std::unique_ptr<pubsub_target> target_;
  broker::broker& broker_;
  boost::asio::io_context& loop_;
  core::clock& clock_;
  const std::string publisher_id_;  // what the bridge publishes locally as (No Local)
  const std::string topic_path_;    // projects/<project>/topics/<topic>
  const std::string subscription_path_;
  const std::shared_ptr<inbox> inbox_;
  std::unique_ptr<forward_queue> queue_;
  std::unique_ptr<queue_intake> intake_;  // the bus handlers' way into queue_
  std::vector<broker::bus_subscription> subscriptions_;

  // On the loop only.
  std::unique_ptr<direction> up_;
  std::unique_ptr<direction> down_;
  std::deque<outgoing> pending_;
  std::optional<batch> batch_;
  bool is_pulling_ = false;
  bool is_acking_ = false;  // an Acknowledge or ModifyAckDeadline in flight
  bool has_succeeded_ = false;
  std::uint32_t leased_ = 0;  // pulled, not yet acked or nacked
  std::vector<std::string> acks_;
  std::vector<std::string> nacks_;

  std::atomic<bool> is_wake_posted_{false};
  std::atomic<link_state> state_{link_state::stopped};
  link_counters counters_;
  mutable std::mutex text_mutex_;
  std::string last_error_;  // text_mutex_
  core::log_limiter refusals_log_{10};
  core::log_limiter failures_log_{10};
};

}  // namespace nimbus::bridge
