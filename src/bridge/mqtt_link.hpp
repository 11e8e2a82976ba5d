#pragma once
// One MQTT bridge at run time: the local side on the broker's bus, the remote side a client
// connection, the store-and-forward queue between them (issue 14, Mosquitto's bridges).
//
// Out: one bus subscription per distinct local filter of the out mappings. A message whose
// mapping (map_out) is this filter's is appended to the queue; a QoS 1/2 publisher's PUBACK is
// held (publisher_hold) until the append is on disk. The link reads the queue in order and
// publishes; a record leaves the queue at the remote's PUBACK/PUBCOMP (QoS 0: once written).
// In: the remote subscriptions of the in mappings; a remote message is published locally
// (map_in) and acknowledged to the remote once the broker took it (its congestion gate).
// No loops: what the bridge publishes locally carries its own publisher id, which its out
// handlers skip (the bus's No Local); remote subscriptions use No Local (MQTT 5) or the 3.1.1
// bridge flag, retried without it when the remote drops the connection over it (AWS IoT).
// State: retained "1"/"0" on the notification topic, locally and on the remote (its will).
//
// Threads: bus handlers on the broker's threads, durability callbacks on the committer's, the
// link (connection, client_session, timers) on one loop; counters are atomics.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "bridge/bridge_config.hpp"
#include "bridge/client_session.hpp"
#include "bridge/forward_queue.hpp"
#include "bridge/queue_intake.hpp"
#include "broker/broker.hpp"
#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "net/byte_stream.hpp"
#include "seglog/committer.hpp"

namespace nimbus::bridge {

enum class link_state : std::uint8_t { connecting, connected, backing_off, stopped };
std::string_view to_string(link_state state);

// What /api/bridges, /metrics and $SYS show of a bridge.
struct link_status {
  std::string name;
  link_state state = link_state::stopped;
  std::string remote;           // host:port of the current or last attempt
  std::string last_error;       // empty: none since the last connection
  std::uint64_t received = 0;   // messages from the remote published locally
  std::uint64_t forwarded = 0;  // messages the remote acknowledged (QoS 0: written)
  std::uint64_t errors = 0;     // refused publishes, unmappable or undeliverable messages
  std::uint64_t reconnects = 0;
  std::uint64_t qos_downgraded = 0;
  forward_queue_stats queue;
};

// The counts both kinds of link keep, from any thread.
struct link_counters {
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> forwarded{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> reconnects{0};
  void count_error() { errors.fetch_add(1, std::memory_order_relaxed); }
  void copy_to(link_status& s) const {
    s.received = received.load();
    s.forwarded = forwarded.load();
    s.errors = errors.load();
    s.reconnects = reconnects.load();
  }
};

class mqtt_link {
 public:
  // Opens the queue in `dir` (<data>/bridges/<name>) and builds the TLS context: throws
  // std::system_error (unreadable directory, certificate or key) or std::invalid_argument.
  mqtt_link(mqtt_bridge config, broker::broker& broker, boost::asio::io_context& loop,
            seglog::committer& committer, core::clock& clock, std::filesystem::path dir);
  ~mqtt_link();  // stop() first
  mqtt_link(const mqtt_link&) = delete;
  mqtt_link& operator=(const mqtt_link&) = delete;

  // Subscribes on the bus and starts connecting (the loop must run).
  void start();
  // Unsubscribes, disconnects cleanly and waits (bounded) for the link's coroutine to end; the
  // queue keeps what was not acknowledged. From any thread but the link's loop.
  void stop();

  link_status status() const;
  const mqtt_bridge& config() const { return config_; }
  forward_queue& queue() { return *queue_; }

 private:
  struct connection;

  void on_local_message(const std::string& filter, const broker::message_ptr& msg);
  void on_remote_message(mqtt::publish_packet packet);
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<std::unique_ptr<net::byte_stream>> open_stream(const host_port& address);
  boost::asio::awaitable<void> serve(std::shared_ptr<connection> link);
  void handle(std::vector<session_event> events, connection& link);
  void pump(connection& link);
  void flush(const std::shared_ptr<connection>& link);
  void wake();
  void set_local_state(bool is_up);
  void fail(connection& link, std::string why);

  const mqtt_bridge config_;
  broker::broker& broker_;
  boost::asio::io_context& loop_;
  core::clock& clock_;
  const std::string publisher_id_;  // what the bridge publishes locally as (No Local)
  std::unique_ptr<forward_queue> queue_;
  std::unique_ptr<queue_intake> intake_;  // the bus handlers' way into queue_
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::vector<broker::bus_subscription> subscriptions_;

  // On the loop only.
  client_session session_;
  core::backoff backoff_;
  std::deque<outbound_message> pending_;  // read from the queue, not yet taken by the session
  std::shared_ptr<connection> current_;
  std::size_t next_address_ = 0;
  bool try_bridge_flag_ = true;
  bool stopping_ = false;
  std::unique_ptr<boost::asio::steady_timer> retry_timer_;

  std::atomic<bool> is_wake_posted_{false};
  std::atomic<bool> is_stopped_{false};
  std::atomic<link_state> state_{link_state::stopped};
  link_counters counters_;
  // QoS 0 while the link is up with nothing queued: straight to the link, in memory (as
  // Mosquitto forwards them), not through the disk queue. Bounded; past the bound, or once the
  // link is down, QoS 0 messages are queued on disk as any other.
  static constexpr std::size_t max_direct = 8192;
  std::atomic<bool> is_direct_open_{false};  // set on the loop
  std::mutex direct_mutex_;
  std::vector<outbound_message> direct_;  // direct_mutex_
  mutable std::mutex text_mutex_;
  std::string remote_;      // text_mutex_
  std::string last_error_;  // text_mutex_
  // Messages dropped as unmappable, invalid or too large for the remote: a flood of them (a
  // device publishing to a topic the remote refuses) is counted in full, logged rate-limited.
  core::log_limiter drops_log_{10};
  std::atomic<bool> is_run_done_{false};
};

}  // namespace nimbus::bridge
