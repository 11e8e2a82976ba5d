#pragma once
// The MQTT connection, shared by the files that implement it, one idea each (as Mosquitto's
// handle_*.c): connection.cpp (its life: reading, framing input, the timer, closing),
// handle_connect.cpp, handle_publish.cpp, handle_ack.cpp, handle_subscribe.cpp and
// handle_disconnect.cpp (one per packet type), and connection_output.cpp (deliveries,
// acknowledgements in order, batched writes). Private to the broker: others call serve_mqtt()
// (connection.hpp).
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/container/devector.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/broker.hpp"
#include "broker/connection.hpp"
#include "core/assert.hpp"
#include "core/log.hpp"
#include "mqtt/codec.hpp"
#include "net/byte_stream.hpp"
#include "net/timer_wheel.hpp"

namespace nimbus::broker {

namespace asio = boost::asio;
using mqtt::reason_code;

constexpr auto close_grace = std::chrono::seconds(2);
// Payloads at least this large are written from the shared message instead of being copied
// into the socket's batch; smaller ones cost less to copy than to reference.
constexpr std::size_t shared_payload_threshold = 1024;
constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t initial_read_buffer = 512;

// Why a connection ended, as AWS IoT lifecycle events name it (disconnectReason).
enum class end_reason : std::uint8_t {
  connection_lost,
  duplicate_client_id,
  auth_error,
  server_initiated,
  keep_alive_timeout,
  client_error,
};

// Connects and disconnects are logged at info, at most this many lines a second each.
inline core::log_limiter connect_log(50);
inline core::log_limiter disconnect_log(50);

// A Mosquitto bridge reports its link state (`notifications`, on by default) with a will and
// retained messages on `$SYS/broker/connection/<its client id>/state`: the one $SYS topic a
// client may publish to, and only a bridge, only its own.
inline bool is_bridge_state_topic(bool bridge, std::string_view client_id, std::string_view topic) {
  constexpr std::string_view prefix = "$SYS/broker/connection/";
  constexpr std::string_view suffix = "/state";
  return bridge && topic.size() == prefix.size() + client_id.size() + suffix.size() &&
         topic.starts_with(prefix) && topic.ends_with(suffix) &&
         topic.substr(prefix.size(), client_id.size()) == client_id;
}

// How lifecycle events name an end reason (disconnectReason).
std::string_view name_of(end_reason r);

// Where a connection is in its life. It only moves forward (connection::enter): to connected
// when on_connect accepts a CONNECT, to closing in begin_closing() or close_now(), to closed in
// finish(). Each state has its one deadline on the connection's timer (timer_deadline()).
enum class connection_state : std::uint8_t {
  awaiting_connect,  // accepted; no CONNECT accepted yet. Deadline: mqtt.connect_timeout
  connected,         // CONNACK sent; packets flow both ways. Deadline: keep-alive (1.5 x)
  closing,           // a last packet (CONNACK refusal, DISCONNECT) is written, input is
                     // discarded, then the socket closes. Deadline: the close grace
  closed,            // the read side ended; the object lives until its last operation completes
};

class connection;

// Deliveries to connections woken from their own loop (publisher and subscriber on one loop).
// A posted wake would deliver only after the loop's whole batch of input (up to 64 clients'),
// so in a burst most messages would wait for it. Here each woken connection gets one early
// delivery per batch, right after the input that woke it; whatever else it is woken for in
// that batch goes out together at the batch's end. A client talking to one peer (p2p) is
// served at once, and a subscriber fed by many publishers (fan-in) still gets its messages
// in two writes per batch, not one per publisher.
class local_wakes final : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;
  explicit local_wakes(asio::execution_context& context) : service(context) {}

  // The queue of the loop running on this thread if `executor` is that loop's; else null.
  static local_wakes* of_current(const asio::any_io_executor& executor) {
    auto& context = static_cast<asio::io_context&>(asio::query(executor, asio::execution::context));
    if (!context.get_executor().running_in_this_thread()) return nullptr;
    thread_local asio::io_context* cached_context = nullptr;
    thread_local local_wakes* cached = nullptr;
    if (cached_context != &context) {
      cached = &asio::use_service<local_wakes>(context);
      cached_context = &context;
    }
    return cached;
  }

  void add(std::shared_ptr<connection> c, const asio::any_io_executor& executor) {
    pending_.push_back(std::move(c));
    if (!posted_) {
      posted_ = true;
      asio::post(executor, [this] { run_all(); });  // runs when the current batch is over
    }
  }
  // After a client's input: delivers to those not yet served early in this batch.
  void run_early();
  // At the end of a batch: delivers to everyone still waiting; the next batch begins.
  void run_all();

 private:
  void shutdown() override { pending_.clear(); }
  std::vector<std::shared_ptr<connection>> pending_;
  std::uint16_t batch_ = 0;
  bool posted_ = false;
};

class connection final : public session_link,
                         public net::stream_owner,
                         public net::timer_owner,
                         public std::enable_shared_from_this<connection> {
 public:
  connection(broker& b, std::unique_ptr<net::byte_stream> stream,
             std::optional<std::string> counted_as);
  void start();
  void wake() override;
  void woken();

  // Whether this connection had its early delivery in batch `b` (see local_wakes), noting it.
  bool served_early(std::uint16_t b) const { return early_batch_ == b; }
  void serve_early(std::uint16_t b) {
    early_batch_ = b;
    woken();
  }

  void kick(reason_code reason) override;
  const client_identity* identity() const override { return identified_ ? &identity_ : nullptr; }

 private:
  // ---- lifecycle ----------------------------------------------------------------------------

  // Moves to `next`. Closing may be entered again (a close that starts while a last packet is
  // already on its way); nothing moves back.
  void enter(connection_state next) {
    NIMBUS_ASSERT(next >= state_);
    state_ = next;
  }

  // Every pending operation holds a count; the last one to finish after close releases `self_`.
  void operation_done();

  // Reads until the stream ends; pauses while the client is not taking what we send. An idle
  // plain-TCP client holds no read buffer: we wait for readability, then read what is there.
  void start_read();
  void on_read(const boost::system::error_code& ec, std::size_t n) override;

  // Between these, input is being processed: no read starts (the buffer is being consumed) and
  // output is collected, then written once (replies to a batch of packets, and the deliveries
  // they release, share one write).
  void begin_input() { io_.processing_input = true; }
  void end_input();
  void on_readable(const boost::system::error_code& ec) override;

  // Processes `n` new bytes; false when the connection failed.
  bool consume(std::size_t n);

  // Where the next read goes: the free end of the input buffer, which is allocated (or grown,
  // up to one maximum-size packet) as needed.
  asio::mutable_buffer input_space();
  // Reallocates the input buffer, keeping what it holds (size 0: frees it; it must be empty).
  void resize_input(std::size_t size);

  // Decodes and handles every complete packet in the input buffer.
  void process_input(std::size_t received);

  // One timer serves the CONNECT deadline, keep-alive (1.5 x, MQTT 3.1.2.10) and the grace
  // period of a server-initiated close, on the loop's timer wheel. State changes reschedule it;
  // when it fires, the deadline is recomputed (traffic may have moved it).
  std::optional<std::chrono::steady_clock::time_point> timer_deadline() const;

  // (Re)schedules the timer for the current state; called after every state change.
  void arm_timer();
  void on_timer_expired() override;
  void on_timer();

  // The read side ended: the connection is over. Runs exactly once.
  void finish();

  // Sends DISCONNECT (MQTT 5, once connected) and closes after it is written.
  void close_with(reason_code reason, std::string_view why);

  // Closes once the output is written, or after a grace period: a reader that never drains must
  // not keep the socket open.
  void begin_closing();

  // Closes the socket. Its max_connections slot is given back when the connection finishes
  // (finish(), right after the read side ends).
  void close_stream();

  // Closes the socket at once; the read that fails then finishes the connection.
  void close_now();

  // This socket stops counting against the pending-socket limits (CONNECT completed, or closed).
  void leave_pending();

  // Someone sent HTTP to the MQTT port (a browser, curl, an SDK pointed at the wrong port).
  void http_on_mqtt_port();
  void protocol_violation(reason_code reason, std::string_view what);

  // ---- packets ------------------------------------------------------------------------------

  void handle(mqtt::packet&& p);
  void refuse_connect(reason_code reason);
  void on_connect(mqtt::connect_packet&& c);
  void on_publish(mqtt::publish_packet&& p);
  void on_ack(const mqtt::ack_packet& a);
  void on_subscribe(const mqtt::subscribe_packet& s);
  void on_unsubscribe(const mqtt::unsubscribe_packet& u);
  void on_disconnect(const mqtt::disconnect_packet& d);

  // ---- outbound messages ---------------------------------------------------------------------

  std::size_t inbound_in_flight();
  void resend_inflight();

  // Moves queued deliveries into the output, as far as the client's window and our write buffer
  // allow. Runs on this connection's loop.
  void deliver();
  bool may_receive(const delivery& d);

  // Appends the PUBLISH for `d`; false when it cannot be sent to this client (larger than its
  // Maximum Packet Size), in which case nothing was written and no alias was assigned.
  bool encode_delivery(const delivery& d, std::uint16_t packet_id, bool dup);

  // ---- output -------------------------------------------------------------------------------

  template <class Packet>
  void append(const Packet& p) {
    mqtt::encode(mqtt::packet{p}, version_, traffic().out);
  }

  template <class Packet>
  void send_now(const Packet& p) {
    append(p);
    flush_output();
  }

  // The write-queue position before this connection submits writes for a packet; with the
  // packet's ticket it brackets the writes its acknowledgement vouches for.
  storage::ticket durable_floor() const {
    auto* store = broker_.store();
    return store ? store->writer().committed() : storage::ticket();
  }

  // Acknowledgements leave in order; one that must wait for a durable write holds the rest.
  void queue_ack(mqtt::packet ack, storage::ticket ticket, storage::ticket floor = {},
                 gate_ptr gate = nullptr);
  void release_acks();

  // What an acknowledgement would vouch for was not stored: never acknowledge it. Closing
  // makes the client resend its unacknowledged messages after reconnecting.
  void storage_failed();
  void flush_output();

  // Drops the first `n` bytes of the write buffers (a partial speculative write).
  void consume_written(std::size_t n);
  void on_written(const boost::system::error_code& ec, std::size_t n) override;

  // `synchronous`: the write completed inside flush_output, whose caller carries on with its own
  // work (e.g. CONNACK before resending in-flight messages), so deliveries must not run inside
  // it; any waiting ones are picked up through a wake instead.
  void after_write(const boost::system::error_code& ec, std::size_t n, bool synchronous = false);

  // Before CONNECT the client is unknown: its first packet is held to a smaller bound.
  std::size_t max_frame_bytes() const {
    return state_ == connection_state::awaiting_connect ? broker_.settings().max_connect_size
                                                        : broker_.settings().max_packet_size;
  }
  // Bytes waiting to be written, shared payloads included.
  std::size_t output_bytes() const {
    return traffic_ ? traffic_->out.size() + traffic_->out_ref_bytes : 0;
  }
  const std::string& client_id() const {
    static const std::string none = "-";
    return identified_ ? identity_.client_id : none;
  }

  struct pending_ack {
    mqtt::packet ack;
    storage::ticket ticket;
    storage::ticket floor;
    bool is_qos1;
    gate_ptr gate;  // set while subscribers hold this acknowledgement back
  };

  // Topic aliases (MQTT 5), allocated on first use: most clients never use them.
  struct topic_aliases {
    std::vector<std::string> inbound;
    std::unordered_map<std::string, std::uint16_t> outbound;
  };
  topic_aliases& aliases() {
    if (!aliases_) aliases_ = std::make_unique<topic_aliases>();
    return *aliases_;
  }

  // What is being sent and what waits to be acknowledged: allocated while there is traffic and
  // given back once the connection is quiet (settle()), so an idle client holds none of it.
  struct traffic_state {
    std::string out;  // encoded, not yet written
    // Shared payloads (large ones are not copied) and the offsets in `out` they follow.
    std::vector<std::pair<std::size_t, message_ptr>> out_refs;
    std::size_t out_ref_bytes = 0;
    std::string writing;  // being written
    std::vector<std::pair<std::size_t, message_ptr>> writing_refs;
    std::vector<asio::const_buffer> write_buffers;
    boost::container::devector<pending_ack> pending_acks;  // in order
    std::size_t deferred_qos1 = 0;                         // PUBACKs among pending_acks
  };
  traffic_state& traffic() {
    if (!traffic_) traffic_ = std::make_unique<traffic_state>();
    return *traffic_;
  }
  std::size_t pending_ack_count() const { return traffic_ ? traffic_->pending_acks.size() : 0; }
  // Gives the traffic state back when nothing is written or waiting. Only at the end of a
  // callback from the loop, where no caller still holds a reference into it.
  void settle() {
    if (traffic_ && !io_.writing && traffic_->out.empty() && traffic_->out_refs.empty() &&
        traffic_->pending_acks.empty())
      traffic_.reset();
  }

  // Data members, largest first so that the small ones share words: there is one connection
  // object per client.
  broker& broker_;
  std::unique_ptr<net::byte_stream> stream_;
  net::timer_entry timer_;
  std::shared_ptr<connection> self_;  // set while open (see start())
  session_ptr session_;
  // Filled in at CONNECT; complete, and never changed again, once identified_ is set (other
  // loops read it through identity() from then on).
  client_identity identity_;
  std::unique_ptr<mqtt::will_message> will_;  // rare, and large: kept off the connection
  std::unique_ptr<topic_aliases> aliases_;
  std::unique_ptr<traffic_state> traffic_;
  std::unique_ptr<char[]> in_;  // input not yet consumed; freed while the client is quiet
  std::chrono::steady_clock::time_point last_received_;
  // The CONNECT deadline until connected; the end of the close grace while closing.
  std::chrono::steady_clock::time_point deadline_;
  std::uint64_t session_id_ = 0;  // lifecycle events' sessionIdentifier (random)
  std::uint32_t in_size_ = 0;
  std::uint32_t in_used_ = 0;
  std::uint32_t session_expiry_ = 0;
  std::uint32_t disconnect_expiry_ = 0;  // set by DISCONNECT when has_disconnect_expiry_
  std::uint32_t client_max_packet_ = 0;
  std::uint16_t pending_operations_ = 0;  // a read, a write, a posted completion: a handful
  std::uint16_t keep_alive_ = 0;
  std::uint16_t client_receive_maximum_ = 65535;
  std::uint16_t client_topic_alias_maximum_ = 0;
  std::uint16_t early_batch_ = 0xFFFF;  // local_wakes batch of the last early delivery
  mqtt::protocol_version version_ = mqtt::protocol_version::v311;
  close_kind close_kind_ = close_kind::normal;
  end_reason end_reason_ = end_reason::connection_lost;  // if the connection ends now
  connection_state state_;
  // What the I/O pump is doing right now. These guard against re-entry (a completion that runs
  // inside the call that started it); they are not the connection's state.
  struct io_flags {
    bool reading : 1 = false;
    bool writing : 1 = false;
    bool processing_input : 1 = false;          // output collects; written once the input is done
    bool flush_deferred : 1 = false;            // output collected meanwhile, to write after it
    bool completing_synchronously : 1 = false;  // inside a speculative write's completion
  } io_;
  // The slots this connection holds against the server's limits, each given back exactly once.
  struct held_slots {
    bool socket_slot : 1 = true;    // connections_current, until the socket closes
    bool pending_slot : 1 = false;  // the pending-socket limits, until CONNECT completes
    bool client_slot : 1 = false;   // max_connections, from CONNECT until the end
  } held_;
  // Set by CONNECT and DISCONNECT.
  bool identified_ = false;  // identity_ is complete (other loops may read it)
  bool request_problem_information_ = true;
  bool is_bridge_ = false;  // a Mosquitto bridge (protocol level | 0x80)
  bool clean_disconnect_ = false;
  bool has_disconnect_expiry_ = false;
  std::atomic<bool> wake_pending_{false};
};

}  // namespace nimbus::broker
