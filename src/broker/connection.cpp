#include "broker/connection.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/container/devector.hpp>
#include <unordered_map>

#include "core/log.hpp"
#include "core/random.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"
#include "net/timer_wheel.hpp"

namespace nimbus::broker {

namespace asio = boost::asio;
using mqtt::reason_code;

namespace {

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
core::log_limiter connect_log(50);
core::log_limiter disconnect_log(50);

// A Mosquitto bridge reports its link state (`notifications`, on by default) with a will and
// retained messages on `$SYS/broker/connection/<its client id>/state`: the one $SYS topic a
// client may publish to, and only a bridge, only its own.
bool is_bridge_state_topic(bool bridge, std::string_view client_id, std::string_view topic) {
  constexpr std::string_view prefix = "$SYS/broker/connection/";
  constexpr std::string_view suffix = "/state";
  return bridge && topic.size() == prefix.size() + client_id.size() + suffix.size() &&
         topic.starts_with(prefix) && topic.ends_with(suffix) &&
         topic.substr(prefix.size(), client_id.size()) == client_id;
}

// The first bytes of an HTTP request: someone pointed a browser or curl at the MQTT port.
bool looks_like_http(std::string_view bytes) {
  for (std::string_view method :
       {"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH "})
    if (bytes.starts_with(method)) return true;
  return false;
}

std::string_view name_of(end_reason r) {
  switch (r) {
    case end_reason::duplicate_client_id:
      return "DUPLICATE_CLIENTID";
    case end_reason::auth_error:
      return "AUTH_ERROR";
    case end_reason::server_initiated:
      return "SERVER_INITIATED_DISCONNECT";
    case end_reason::keep_alive_timeout:
      return "MQTT_KEEP_ALIVE_TIMEOUT";
    case end_reason::client_error:
      return "CLIENT_ERROR";
    case end_reason::connection_lost:
      break;
  }
  return "CONNECTION_LOST";
}

// Where a connection is in its life. It moves only forward, through named transitions:
// become_connected() (CONNECT accepted), begin_closing() / close_now(), and finish(). Each state
// has its one deadline on the connection's timer.
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
             std::optional<std::string> counted_as)
      : broker_(b),
        stream_(std::move(stream)),
        timer_(stream_->executor(), *this),
        state_(connection_state::awaiting_connect) {
    held_.pending_slot = counted_as.has_value();
    // Who is on the other end, as far as the transport knows; CONNECT adds the rest.
    identity_.transport = stream_->transport();
    identity_.remote_address = counted_as ? std::move(*counted_as) : stream_->remote_address();
    identity_.certificate = stream_->certificate();
    identity_.signer = stream_->signer();
  }

  void start() {
    broker_.metrics().connections_total.fetch_add(1, std::memory_order_relaxed);
    broker_.metrics().connections_current.fetch_add(1, std::memory_order_relaxed);
    broker_.metrics().connections_open.fetch_add(1, std::memory_order_relaxed);
    // The connection owns itself while open; its I/O callbacks then need only `this`, which
    // keeps them small enough to store without allocating.
    self_ = shared_from_this();
    // Absolute from accept, whatever arrives meanwhile: a client trickling bytes (or a TLS or
    // WebSocket set-up) cannot hold the socket past it.
    deadline_ = stream_->accepted_at() + std::chrono::seconds(broker_.settings().connect_timeout);
    arm_timer();
    start_read();
  }

  void wake() override {
    if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
    auto executor = stream_->executor();
    if (auto* local = local_wakes::of_current(executor))
      return local->add(shared_from_this(), executor);
    asio::post(executor, [self = shared_from_this()] { self->woken(); });
  }

  void woken() {
    wake_pending_.store(false, std::memory_order_release);
    deliver();
    settle();
  }

  // Whether this connection had its early delivery in batch `b` (see local_wakes), noting it.
  bool served_early(std::uint16_t b) const { return early_batch_ == b; }
  void serve_early(std::uint16_t b) {
    early_batch_ = b;
    woken();
  }

  void kick(reason_code reason) override {
    asio::post(stream_->executor(), [self = shared_from_this(), reason] {
      switch (reason) {
        case reason_code::session_taken_over:
          self->end_reason_ = end_reason::duplicate_client_id;
          break;
        case reason_code::not_authorized:
          self->end_reason_ = end_reason::auth_error;
          break;
        default:
          self->end_reason_ = end_reason::server_initiated;
          break;
      }
      self->close_with(reason, "server closed the connection");
      self->settle();
    });
  }

  const client_identity* identity() const override { return identified_ ? &identity_ : nullptr; }

 private:
  // ---- lifecycle ----------------------------------------------------------------------------

  // Every pending operation holds a count; the last one to finish after close releases `self_`.
  void operation_done() {
    --pending_operations_;
    if (state_ == connection_state::closed && pending_operations_ == 0) {
      auto last_reference = std::move(self_);  // destroys this connection when the call returns
    }
  }

  // Reads until the stream ends; pauses while the client is not taking what we send. An idle
  // plain-TCP client holds no read buffer: we wait for readability, then read what is there.
  void start_read() {
    // Not while input is being processed (a write that completed synchronously, or closing,
    // asks for more): the buffer is still being consumed; the caller reads once it is done.
    if (state_ == connection_state::closed || io_.reading || io_.processing_input) return;
    // Backpressure: a client that does not read what we send (acknowledgements included) is
    // not read from either, so its output cannot grow without bound.
    if (state_ != connection_state::closing &&
        (output_bytes() >= broker_.settings().max_write_buffer ||
         pending_ack_count() >= broker_.settings().receive_maximum)) {
      return;  // resumed by on_written() or release_acks()
    }
    io_.reading = true;
    ++pending_operations_;
    if (in_used_ == 0 && stream_->wait_readable(*this)) return;
    stream_->read_into(input_space(), *this);
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) override {
    io_.reading = false;
    // A WebSocket read may end on an empty frame: zero bytes without an error is not the end.
    if (ec || state_ == connection_state::closed) {
      finish();
    } else {
      begin_input();
      bool ok = consume(n);
      end_input();
      if (ok) start_read();
    }
    settle();
    operation_done();
  }

  // Between these, input is being processed: no read starts (the buffer is being consumed) and
  // output is collected, then written once (replies to a batch of packets, and the deliveries
  // they release, share one write).
  void begin_input() { io_.processing_input = true; }
  void end_input() {
    io_.processing_input = false;
    if (io_.flush_deferred) {
      io_.flush_deferred = false;
      flush_output();
    }
    // Then what this input published, to subscribers on this loop.
    if (auto* local = local_wakes::of_current(stream_->executor())) local->run_early();
  }

  void on_readable(const boost::system::error_code& ec) override {
    io_.reading = false;
    if (ec || state_ == connection_state::closed) {
      finish();
      return operation_done();
    }
    // A few reads per wake-up, then back to the loop so one busy client cannot starve others.
    std::size_t read_now = 0;
    begin_input();
    for (int round = 0; round < 4 && state_ != connection_state::closed; ++round) {
      boost::system::error_code read_error;
      std::size_t n = stream_->read_available(input_space(), read_error);
      if (read_error == asio::error::would_block || read_error == asio::error::try_again) break;
      if (read_error) {
        finish();
        break;
      }
      read_now += n;
      if (!consume(n) || output_bytes() >= broker_.settings().max_write_buffer) break;
    }
    end_input();
    // A quiet client gives its buffer back; a busy one keeps it for the next burst.
    if (in_used_ == 0 && read_now < initial_read_buffer) resize_input(0);
    start_read();
    settle();
    operation_done();
  }

  // Processes `n` new bytes; false when the connection failed.
  bool consume(std::size_t n) {
    try {
      process_input(n);
      return true;
    } catch (const std::exception& e) {
      // Handlers return errors for bad input; an exception here is our bug (or memory ran out).
      core::report_bug("mqtt_connection", fmt::format("client={} remote={} error={}", client_id(),
                                                      identity_.remote_address, e.what()));
      finish();
      return false;
    }
  }

  // Where the next read goes: the free end of the input buffer, which is allocated (or grown,
  // up to one maximum-size packet) as needed.
  asio::mutable_buffer input_space() {
    if (in_size_ == 0) resize_input(initial_read_buffer);
    if (in_used_ == in_size_) {
      std::size_t limit = std::max<std::size_t>(max_frame_bytes() + 8, in_size_);
      resize_input(std::min<std::size_t>(std::size_t{in_size_} * 2, limit));
    }
    return asio::buffer(in_.get() + in_used_, in_size_ - in_used_);
  }
  // Reallocates the input buffer, keeping what it holds (size 0: frees it; it must be empty).
  void resize_input(std::size_t size) {
    if (size == in_size_) return;
    std::unique_ptr<char[]> bigger;
    if (size > 0) {
      bigger.reset(new char[size]);
      if (in_used_ > 0) std::memcpy(bigger.get(), in_.get(), in_used_);
    }
    in_ = std::move(bigger);
    in_size_ = static_cast<std::uint32_t>(size);
  }

  // Decodes and handles every complete packet in the input buffer.
  void process_input(std::size_t received) {
    in_used_ += static_cast<std::uint32_t>(received);
    broker_.metrics().bytes_received.fetch_add(received, std::memory_order_relaxed);
    last_received_ = broker_.clock().now();
    if (state_ == connection_state::awaiting_connect && in_used_ >= 4 &&
        looks_like_http(std::string_view(in_.get(), in_used_)))
      return http_on_mqtt_port();
    std::size_t consumed = 0;
    while (state_ == connection_state::awaiting_connect || state_ == connection_state::connected) {
      std::string_view pending(in_.get() + consumed, in_used_ - consumed);
      auto header = mqtt::read_frame_header(pending);
      if (std::holds_alternative<mqtt::need_more_bytes>(header)) break;
      if (auto* error = std::get_if<mqtt::decode_error>(&header)) {
        protocol_violation(error->reason, error->what);
        break;
      }
      auto frame = std::get<mqtt::frame_header>(header);
      if (state_ == connection_state::awaiting_connect &&
          frame.type() == mqtt::packet_type::connect) {
        // Known before the CONNECT decodes, so that a refusal speaks the client's version.
        if (auto v = mqtt::peek_connect_version(pending.substr(frame.header_size))) version_ = *v;
      }
      if (frame.total_size() > max_frame_bytes()) {
        if (state_ == connection_state::awaiting_connect)
          broker_.limit_hit(limit::connect_size, identity_.remote_address);
        protocol_violation(reason_code::packet_too_large, "packet exceeds the maximum packet size");
        break;
      }
      if (pending.size() < frame.total_size()) break;
      auto decoded = mqtt::decode_packet(
          frame, pending.substr(frame.header_size, frame.remaining_length), version_);
      consumed += frame.total_size();
      if (auto* error = std::get_if<mqtt::decode_error>(&decoded)) {
        protocol_violation(error->reason, error->what);
        break;
      }
      spdlog::trace("mqtt_packet_received client={} type={} bytes={}", client_id(),
                    static_cast<int>(frame.type()), frame.total_size());
      handle(std::move(std::get<mqtt::packet>(decoded)));
    }
    if (state_ == connection_state::closing) {
      in_used_ = 0;  // keep reading (and discarding) until the peer or the grace timer closes
      return;
    }
    std::memmove(in_.get(), in_.get() + consumed, in_used_ - consumed);
    in_used_ -= static_cast<std::uint32_t>(consumed);
    // Give memory back after a burst or a large packet.
    if (in_used_ == 0 && in_size_ > 4 * read_chunk) resize_input(initial_read_buffer);
  }

  // One timer serves the CONNECT deadline, keep-alive (1.5 x, MQTT 3.1.2.10) and the grace
  // period of a server-initiated close, on the loop's timer wheel. State changes reschedule it;
  // when it fires, the deadline is recomputed (traffic may have moved it).
  std::optional<std::chrono::steady_clock::time_point> timer_deadline() const {
    if (state_ != connection_state::connected) return deadline_;  // CONNECT, or close grace
    if (keep_alive_ == 0) return std::nullopt;
    return last_received_ + std::chrono::milliseconds(std::uint64_t{keep_alive_} * 1500);
  }

  // (Re)schedules the timer for the current state; called after every state change.
  void arm_timer() {
    if (state_ == connection_state::closed) return;
    if (auto deadline = timer_deadline())
      timer_.schedule(*deadline);
    else
      timer_.cancel();
  }

  void on_timer_expired() override {
    if (state_ != connection_state::closed) on_timer();
    settle();
  }

  void on_timer() {
    auto deadline = timer_deadline();
    if (deadline && broker_.clock().now() >= *deadline) {
      if (state_ != connection_state::connected) return close_now();
      end_reason_ = end_reason::keep_alive_timeout;
      return close_with(reason_code::keep_alive_timeout, "keep alive timeout");
    }
    arm_timer();  // traffic moved the deadline, or the state changed
  }

  // The read side ended: the connection is over. Runs exactly once.
  void finish() {
    if (state_ == connection_state::closed) return;
    state_ = connection_state::closed;
    timer_.cancel();
    close_stream();
    leave_pending();
    broker_.metrics().connections_open.fetch_sub(1, std::memory_order_relaxed);
    if (held_.client_slot) {
      held_.client_slot = false;
      broker_.metrics().clients_connected.fetch_sub(1, std::memory_order_relaxed);
    }
    if (session_) {
      auto kind = close_kind_;
      if (!clean_disconnect_ && kind == close_kind::normal) kind = close_kind::abnormal;
      std::optional<mqtt::will_message> will;
      if (will_) will = std::move(*will_);
      broker_.detach(session_, this, kind, std::move(will),
                     has_disconnect_expiry_ ? std::optional{disconnect_expiry_} : std::nullopt,
                     client_id());
      broker_.announce_disconnected(
          identity_, session_id_,
          clean_disconnect_ ? "CLIENT_INITIATED_DISCONNECT" : name_of(end_reason_),
          clean_disconnect_);
      std::uint64_t held_back = 0;
      if (disconnect_log.allow(held_back))
        spdlog::info(
            "mqtt_disconnected client={} remote={} transport={} reason={} "
            "similar_lines_suppressed={}",
            client_id(), identity_.remote_address, identity_.transport,
            clean_disconnect_ ? "CLIENT_INITIATED_DISCONNECT" : name_of(end_reason_), held_back);
    }
  }

  // Sends DISCONNECT (MQTT 5, once connected) and closes after it is written.
  void close_with(reason_code reason, std::string_view why) {
    if (state_ == connection_state::closing || state_ == connection_state::closed) return;
    if (state_ == connection_state::connected && version_ == mqtt::protocol_version::v5) {
      mqtt::disconnect_packet d{reason, {}};
      if (request_problem_information_) d.props.reason_string = std::string(why);
      if (traffic_) traffic_->pending_acks.clear();
      append(d);
    }
    begin_closing();
  }

  // Closes once the output is written, or after a grace period: a reader that never drains must
  // not keep the socket open.
  void begin_closing() {
    state_ = connection_state::closing;
    deadline_ = broker_.clock().now() + close_grace;
    flush_output();
    arm_timer();
    start_read();  // keep draining input so the peer's close is seen
  }

  // Closes the socket. Its max_connections slot is given back when the connection finishes
  // (finish(), right after the read side ends).
  void close_stream() {
    if (held_.socket_slot) {
      held_.socket_slot = false;
      broker_.metrics().connections_current.fetch_sub(1, std::memory_order_relaxed);
    }
    stream_->close();
  }

  // Closes the socket at once; the read that fails then finishes the connection.
  void close_now() {
    state_ = connection_state::closing;
    close_stream();
  }

  // This socket stops counting against the pending-socket limits (CONNECT completed, or closed).
  void leave_pending() {
    if (!held_.pending_slot) return;
    held_.pending_slot = false;
    broker_.pending().remove(pending_sockets::key_of(identity_.remote_address));
  }

  // Someone sent HTTP to the MQTT port (a browser, curl, an SDK pointed at the wrong port).
  void http_on_mqtt_port() {
    static core::log_limiter http_hint(5);
    std::uint64_t held_back = 0;
    if (http_hint.allow(held_back))
      spdlog::warn(
          "http_on_mqtt_port remote={} transport={} hint=\"this port speaks MQTT; the HTTP APIs "
          "are on the --http and --https listeners (default localhost:8080 and 0.0.0.0:8443), "
          "with MQTT over WebSocket at /mqtt\"",
          identity_.remote_address, identity_.transport);
    broker_.metrics().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    end_reason_ = end_reason::client_error;
    in_used_ = 0;
    close_now();
  }

  void protocol_violation(reason_code reason, std::string_view what) {
    broker_.metrics().protocol_errors.fetch_add(1, std::memory_order_relaxed);
    end_reason_ = end_reason::client_error;
    spdlog::info("mqtt_protocol_error client={} remote={} reason=0x{:02x} detail=\"{}\"",
                 client_id(), identity_.remote_address, static_cast<unsigned>(reason), what);
    if (state_ == connection_state::awaiting_connect) {
      // Before CONNACK a v5 client learns why through CONNACK (3.1.4); 3.1.1 is just closed.
      if (version_ == mqtt::protocol_version::v5 ||
          reason == reason_code::unsupported_protocol_version) {
        refuse_connect(reason);
      } else {
        close_now();
      }
      return;
    }
    close_with(reason, what);
  }

  // ---- packets ------------------------------------------------------------------------------

  void handle(mqtt::packet&& p) {
    if (state_ == connection_state::awaiting_connect &&
        !std::holds_alternative<mqtt::connect_packet>(p)) {
      return protocol_violation(reason_code::protocol_error, "first packet must be CONNECT");
    }
    std::visit(
        [&](auto&& packet) {
          using type = std::decay_t<decltype(packet)>;
          if constexpr (std::is_same_v<type, mqtt::connect_packet>)
            on_connect(std::move(packet));
          else if constexpr (std::is_same_v<type, mqtt::publish_packet>)
            on_publish(std::move(packet));
          else if constexpr (std::is_same_v<type, mqtt::ack_packet>)
            on_ack(packet);
          else if constexpr (std::is_same_v<type, mqtt::subscribe_packet>)
            on_subscribe(packet);
          else if constexpr (std::is_same_v<type, mqtt::unsubscribe_packet>)
            on_unsubscribe(packet);
          else if constexpr (std::is_same_v<type, mqtt::pingreq_packet>)
            send_now(mqtt::pingresp_packet{});
          else if constexpr (std::is_same_v<type, mqtt::disconnect_packet>)
            on_disconnect(packet);
          else if constexpr (std::is_same_v<type, mqtt::auth_packet>)
            protocol_violation(reason_code::protocol_error,
                               "AUTH without an authentication method");
          else
            protocol_violation(reason_code::protocol_error, "packet type not sent by clients");
        },
        std::move(p));
  }

  void refuse_connect(reason_code reason) {
    broker_.metrics().connections_refused.fetch_add(1, std::memory_order_relaxed);
    mqtt::connack_packet ack{false, reason, {}};
    append(ack);
    begin_closing();
  }

  void on_connect(mqtt::connect_packet&& c) {
    if (state_ == connection_state::connected)
      return protocol_violation(reason_code::protocol_error, "second CONNECT");
    version_ = c.version;
    const auto& settings = broker_.settings();
    bool v5 = version_ == mqtt::protocol_version::v5;
    request_problem_information_ = c.props.request_problem_information.value_or(1) == 1;

    bool assigned = false;
    if (c.client_id.empty()) {
      if (!v5 && !c.clean_start) return refuse_connect(reason_code::client_identifier_not_valid);
      if (version_ == mqtt::protocol_version::v31)
        return refuse_connect(reason_code::client_identifier_not_valid);
      c.client_id = "nimbus-" + core::random_alnum(16);
      assigned = true;
    }
    if (c.will) {
      if (!mqtt::is_valid_topic_name(c.will->topic, broker_.topic_limits()))
        return refuse_connect(reason_code::topic_name_invalid);
      if (c.will->props.payload_format_indicator == 1 && !mqtt::is_valid_mqtt_utf8(c.will->payload))
        return refuse_connect(reason_code::payload_format_invalid);
    }
    if (c.client_id.size() > settings.max_client_id_length) {
      broker_.limit_hit(limit::client_id_length, identity_.remote_address);
      return refuse_connect(reason_code::client_identifier_not_valid);
    }
    if (v5 && c.will && c.will->props.response_topic &&
        !mqtt::is_valid_topic_name(*c.will->props.response_topic, broker_.topic_limits()))
      return refuse_connect(reason_code::protocol_error);  // MQTT-3.3.2-14: no wildcards
    if (c.props.authentication_method)
      return refuse_connect(reason_code::bad_authentication_method);

    identity_.client_id = c.client_id;
    identity_.persistent_session =
        v5 ? c.props.session_expiry_interval.value_or(0) > 0 : !c.clean_start;
    identity_.has_will = c.will.has_value();
    auto verdict = broker_.auth().authorize_connect(identity_, c.password);
    if (verdict != reason_code::success) {
      broker_.metrics().authorization_denials.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("mqtt_connect_denied client={} remote={} reason=0x{:02x}", c.client_id,
                   identity_.remote_address, static_cast<unsigned>(verdict));
      return refuse_connect(verdict);
    }
    if (c.will && ((broker::is_reserved_topic(c.will->topic) &&
                    !is_bridge_state_topic(c.bridge, c.client_id, c.will->topic)) ||
                   !broker_.auth().may_publish(identity_, c.will->topic, c.will->retain))) {
      broker_.metrics().authorization_denials.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("mqtt_will_denied client={} topic=\"{}\"", c.client_id, c.will->topic);
      return refuse_connect(reason_code::not_authorized);
    }
    identified_ = true;

    std::uint32_t expiry;
    if (v5)
      expiry = c.props.session_expiry_interval.value_or(0);
    else
      expiry = c.clean_start ? 0 : settings.persistent_session_expiry;  // AWS IoT: 1 hour
    std::uint32_t granted_expiry = std::min(expiry, settings.max_session_expiry);
    session_expiry_ = granted_expiry;

    keep_alive_ = c.keep_alive;
    std::optional<std::uint16_t> server_keep_alive;
    // Only MQTT 5 can tell a client its keep-alive was lowered (Server Keep Alive).
    if (v5 && (keep_alive_ > settings.max_keep_alive ||
               (keep_alive_ == 0 && settings.max_keep_alive < 65535))) {
      keep_alive_ = static_cast<std::uint16_t>(settings.max_keep_alive);
      if (v5) server_keep_alive = keep_alive_;
    }
    client_receive_maximum_ = c.props.receive_maximum.value_or(65535);
    client_max_packet_ = c.props.maximum_packet_size.value_or(mqtt::max_remaining_length + 5);
    client_topic_alias_maximum_ = c.props.topic_alias_maximum.value_or(0);
    // Counted before the session is taken, so that two loops cannot both take the last slot.
    // A client taking over its own live session (a device back after its old connection
    // half-closed) frees a slot as it takes one: it is never refused for the old one.
    if (broker_.metrics().clients_connected.fetch_add(1, std::memory_order_acq_rel) >=
            static_cast<std::int64_t>(settings.max_connections) &&
        !broker_.is_connected(c.client_id)) {
      broker_.metrics().clients_connected.fetch_sub(1, std::memory_order_acq_rel);
      broker_.limit_hit(limit::connections, c.client_id);
      return refuse_connect(reason_code::server_busy);
    }
    held_.client_slot = true;
    auto attached =
        broker_.attach(c.client_id, version_, c.clean_start, granted_expiry, shared_from_this());
    if (!attached.target) {
      broker_.limit_hit(limit::sessions, c.client_id);
      return refuse_connect(reason_code::quota_exceeded);
    }
    if (c.will) will_ = std::make_unique<mqtt::will_message>(std::move(*c.will));
    session_ = attached.target;
    state_ = connection_state::connected;
    is_bridge_ = c.bridge;
    leave_pending();

    mqtt::connack_packet ack{attached.session_present, reason_code::success, {}};
    if (v5) {
      if (granted_expiry != expiry) ack.props.session_expiry_interval = granted_expiry;
      ack.props.receive_maximum = static_cast<std::uint16_t>(settings.receive_maximum);
      ack.props.maximum_packet_size = settings.max_packet_size;
      ack.props.topic_alias_maximum = static_cast<std::uint16_t>(settings.topic_alias_maximum);
      if (assigned) ack.props.assigned_client_identifier = c.client_id;
      if (server_keep_alive) ack.props.server_keep_alive = server_keep_alive;
      ack.props.retain_available = 1;
      ack.props.wildcard_subscription_available = 1;
      ack.props.subscription_identifier_available = 1;
      ack.props.shared_subscription_available = 1;
      // Request/response (4.10): a client that asks gets a topic prefix of its own for replies.
      if (c.props.request_response_information == 1)
        ack.props.response_information = "responses/" + c.client_id;
    }
    send_now(ack);
    arm_timer();  // from the CONNECT deadline to keep-alive
    std::uint64_t held_back = 0;
    if (connect_log.allow(held_back))
      spdlog::info(
          "mqtt_connected client={} remote={} transport={} certificate={} version={}{} "
          "clean_start={} session_present={} similar_lines_suppressed={}",
          c.client_id, identity_.remote_address, identity_.transport,
          identity_.certificate ? identity_.certificate->sha256_hex : "-",
          static_cast<int>(version_), is_bridge_ ? " bridge=true" : "", c.clean_start,
          attached.session_present, held_back);
    session_id_ = core::random_u64();
    broker_.announce_connected(identity_, session_id_);
    if (attached.session_present) resend_inflight();
    deliver();
  }

  void on_publish(mqtt::publish_packet&& p) {
    bool v5 = version_ == mqtt::protocol_version::v5;
    if (v5 && p.props.topic_alias) {
      std::uint16_t alias = *p.props.topic_alias;
      if (alias == 0 || alias > broker_.settings().topic_alias_maximum)
        return protocol_violation(reason_code::topic_alias_invalid, "topic alias out of range");
      auto& inbound = aliases().inbound;
      if (inbound.size() <= alias) inbound.resize(std::size_t{alias} + 1);
      if (p.topic.empty()) {
        if (inbound[alias].empty())
          return protocol_violation(reason_code::protocol_error, "unknown topic alias");
        p.topic = inbound[alias];
      } else {
        inbound[alias] = p.topic;
      }
      p.props.topic_alias.reset();
    }
    if (!mqtt::is_valid_topic_name(p.topic, broker_.topic_limits()))
      return protocol_violation(reason_code::topic_name_invalid, "invalid topic name");
    if (v5 && !p.props.subscription_identifiers.empty())
      return protocol_violation(reason_code::protocol_error,
                                "subscription identifier in PUBLISH from a client");
    if (v5 && p.props.response_topic &&
        !mqtt::is_valid_topic_name(*p.props.response_topic, broker_.topic_limits()))
      return protocol_violation(reason_code::protocol_error,
                                "Response Topic must be a topic name, without wildcards");

    if (p.qos == 2) {
      bool duplicate;
      {
        std::lock_guard lock(session_->mutex);
        duplicate = session_->extras().inbound_qos2.contains(p.packet_id);
      }
      if (duplicate) {
        // A retransmission of a message already routed: acknowledge again, deliver once.
        queue_ack(
            mqtt::ack_packet{mqtt::packet_type::pubrec, p.packet_id, reason_code::success, {}}, {});
        return;
      }
    }
    if (p.qos > 0 && v5 && inbound_in_flight() >= broker_.settings().receive_maximum)
      return protocol_violation(reason_code::receive_maximum_exceeded, "receive maximum exceeded");
    if (!broker_.auth().may_publish(identity_, p.topic, p.retain)) {
      broker_.metrics().authorization_denials.fetch_add(1, std::memory_order_relaxed);
      if (!v5) {
        end_reason_ = end_reason::auth_error;
        return close_now();  // 3.1.1 has no way to refuse a PUBLISH (AWS closes too)
      }
      if (p.qos == 1)
        queue_ack(
            mqtt::ack_packet{
                mqtt::packet_type::puback, p.packet_id, reason_code::not_authorized, {}},
            storage::ticket());
      if (p.qos == 2)
        queue_ack(
            mqtt::ack_packet{
                mqtt::packet_type::pubrec, p.packet_id, reason_code::not_authorized, {}},
            storage::ticket());
      return;
    }

    publish_result routed;
    gate_ptr gate;
    const storage::ticket floor = durable_floor();
    bool reserved = broker::is_reserved_topic(p.topic) &&
                    !is_bridge_state_topic(is_bridge_, identity_.client_id, p.topic);
    if (!reserved) {
      auto msg = std::make_shared<message>();
      msg->topic = std::move(p.topic);
      msg->payload = std::move(p.payload);
      msg->qos = p.qos;
      msg->retain = p.retain;
      msg->expires_at = broker_.expiry_for(p.props);
      msg->props = std::move(p.props);
      msg->props.message_expiry_interval.reset();
      msg->publisher = client_id();
      if (p.qos > 0) {
        gate = std::make_shared<congestion_gate>();
        std::weak_ptr<connection> weak = shared_from_this();
        gate->on_clear = [weak, executor = stream_->executor()] {
          if (auto self = weak.lock())
            asio::post(executor, [self] {
              self->release_acks();
              self->settle();
            });
        };
      }
      routed = broker_.publish(std::move(msg), gate);
    }
    if (routed.quota_exceeded) {
      // Neither retained nor routed. MQTT 5 says why; QoS 0 cannot be told; 3.1.1 has no way
      // to refuse a PUBLISH, so its connection is closed rather than falsely acknowledged.
      if (v5 && p.qos > 0)
        queue_ack(
            mqtt::ack_packet{p.qos == 1 ? mqtt::packet_type::puback : mqtt::packet_type::pubrec,
                             p.packet_id,
                             reason_code::quota_exceeded,
                             {}},
            storage::ticket(), floor, std::move(gate));
      if (!v5 && p.qos > 0) {
        end_reason_ = end_reason::client_error;
        close_now();
      }
      return;
    }
    auto matched_code =
        v5 && routed.matched == 0 ? reason_code::no_matching_subscribers : reason_code::success;
    if (p.qos == 1) {
      queue_ack(mqtt::ack_packet{mqtt::packet_type::puback, p.packet_id, matched_code, {}},
                routed.durable_ticket, floor, std::move(gate));
    } else if (p.qos == 2) {
      storage::ticket ticket = routed.durable_ticket;
      bool persistent;
      {
        std::lock_guard lock(session_->mutex);
        session_->extras().inbound_qos2.insert(p.packet_id);
        persistent = session_->is_persistent();
      }
      if (persistent && broker_.store())
        ticket =
            storage::later(ticket, broker_.store()->add_inbound_qos2(client_id(), p.packet_id));
      queue_ack(mqtt::ack_packet{mqtt::packet_type::pubrec, p.packet_id, matched_code, {}}, ticket,
                floor, std::move(gate));
    }
  }

  void on_ack(const mqtt::ack_packet& a) {
    auto* store = broker_.store();
    switch (a.type) {
      case mqtt::packet_type::pubrel: {
        bool found;
        bool persistent;
        {
          std::lock_guard lock(session_->mutex);
          found = session_->extras().inbound_qos2.erase(a.packet_id) > 0;
          persistent = session_->is_persistent();
        }
        if (found && persistent && store) store->remove_inbound_qos2(client_id(), a.packet_id);
        queue_ack(mqtt::ack_packet{mqtt::packet_type::pubcomp,
                                   a.packet_id,
                                   found || version_ != mqtt::protocol_version::v5
                                       ? reason_code::success
                                       : reason_code::packet_identifier_not_found,
                                   {}},
                  storage::ticket());
        return;
      }
      case mqtt::packet_type::puback:
      case mqtt::packet_type::pubcomp: {
        std::uint64_t seq = 0;
        {
          std::lock_guard lock(session_->mutex);
          auto& inflight = session_->extras().inflight;
          auto it = inflight.find(a.packet_id);
          if (it == inflight.end()) return;  // late or duplicate acknowledgement
          bool expected =
              a.type == mqtt::packet_type::puback ? it->second.d.qos == 1 : it->second.released;
          if (!expected) return;
          seq = it->second.d.seq;
          inflight.erase(it);
        }
        if (seq != 0 && store) store->remove_delivery(client_id(), seq);
        deliver();
        return;
      }
      case mqtt::packet_type::pubrec: {
        std::uint64_t seq = 0;
        bool found = false;
        bool refused = is_error(a.reason);
        {
          std::lock_guard lock(session_->mutex);
          auto& inflight = session_->extras().inflight;
          auto it = inflight.find(a.packet_id);
          if (it != inflight.end() && it->second.d.qos == 2) {
            found = true;
            seq = it->second.d.seq;
            if (refused)
              inflight.erase(it);  // the receiver declined: the exchange ends here
            else
              it->second.released = true;
          }
        }
        if (refused) {
          if (seq != 0 && store) store->remove_delivery(client_id(), seq);
          deliver();
          return;
        }
        if (found && seq != 0 && store) store->mark_released(client_id(), seq, a.packet_id);
        send_now(mqtt::ack_packet{mqtt::packet_type::pubrel,
                                  a.packet_id,
                                  found || version_ != mqtt::protocol_version::v5
                                      ? reason_code::success
                                      : reason_code::packet_identifier_not_found,
                                  {}});
        return;
      }
      default:
        return protocol_violation(reason_code::protocol_error, "unexpected acknowledgement");
    }
  }

  void on_subscribe(const mqtt::subscribe_packet& s) {
    bool v5 = version_ == mqtt::protocol_version::v5;
    std::uint32_t subscription_id =
        s.props.subscription_identifiers.empty() ? 0 : s.props.subscription_identifiers[0];
    mqtt::suback_packet ack{s.packet_id, {}, {}};
    std::vector<std::string> granted;  // for the lifecycle event
    storage::ticket ticket;
    const storage::ticket floor = durable_floor();
    for (const auto& e : s.entries) {
      bool shared = mqtt::parse_shared_filter(e.filter).has_value();
      bool valid = shared ? mqtt::is_valid_shared_filter(e.filter, broker_.topic_limits())
                          : mqtt::is_valid_topic_filter(e.filter, broker_.topic_limits());
      if (!valid) {
        ack.reasons.push_back(v5 ? reason_code::topic_filter_invalid
                                 : reason_code::unspecified_error);
        continue;
      }
      if (shared && e.options.no_local)
        return protocol_violation(reason_code::protocol_error, "No Local on a shared subscription");
      std::optional<limit> over;
      {
        std::lock_guard lock(session_->mutex);
        if (!session_->subscriptions.contains(e.filter)) {
          if (session_->subscriptions.size() >= broker_.settings().max_subscriptions_per_client)
            over = limit::subscriptions;
          else if (std::uint64_t{session_->subscription_bytes} + e.filter.size() >
                   broker_.settings().max_subscription_bytes)
            over = limit::subscription_bytes;
        }
      }
      if (over) {
        broker_.limit_hit(*over, client_id());
        ack.reasons.push_back(v5 ? reason_code::quota_exceeded : reason_code::unspecified_error);
        continue;
      }
      if (!broker_.auth().may_subscribe(identity_, e.filter)) {
        broker_.metrics().authorization_denials.fetch_add(1, std::memory_order_relaxed);
        ack.reasons.push_back(v5 ? reason_code::not_authorized : reason_code::unspecified_error);
        continue;
      }
      auto options = e.options;
      if (is_bridge_ && !shared) {
        // A bridge gets back nothing it sent, and retain flags as published (Mosquitto's
        // bridge protocol), so two brokers bridged both ways do not loop.
        options.no_local = true;
        options.retain_as_published = true;
      }
      ticket =
          storage::later(ticket, broker_.subscribe(session_, e.filter, options, subscription_id));
      ack.reasons.push_back(static_cast<reason_code>(options.qos));
      granted.push_back(e.filter);
    }
    queue_ack(std::move(ack), ticket, floor);
    broker_.announce_subscriptions(identity_, session_id_, true, granted);
  }

  void on_unsubscribe(const mqtt::unsubscribe_packet& u) {
    mqtt::unsuback_packet ack{u.packet_id, {}, {}};
    std::vector<std::string> removed;
    for (const auto& filter : u.filters) {
      bool existed = broker_.unsubscribe(session_, filter);
      if (existed) removed.push_back(filter);
      ack.reasons.push_back(existed ? reason_code::success : reason_code::no_subscription_existed);
    }
    queue_ack(std::move(ack), storage::ticket());
    broker_.announce_subscriptions(identity_, session_id_, false, removed);
  }

  void on_disconnect(const mqtt::disconnect_packet& d) {
    if (d.props.session_expiry_interval) {
      // Raising expiry from 0 at DISCONNECT is a protocol error (3.14.2.2.2).
      if (session_expiry_ == 0 && *d.props.session_expiry_interval != 0)
        return protocol_violation(reason_code::protocol_error,
                                  "session expiry set at DISCONNECT after 0");
      disconnect_expiry_ =
          std::min(*d.props.session_expiry_interval, broker_.settings().max_session_expiry);
      has_disconnect_expiry_ = true;
    }
    clean_disconnect_ = true;
    close_kind_ =
        d.reason == reason_code::disconnect_with_will ? close_kind::with_will : close_kind::normal;
    if (close_kind_ == close_kind::normal) will_.reset();
    begin_closing();
  }

  // ---- outbound messages ---------------------------------------------------------------------

  std::size_t inbound_in_flight() {
    std::lock_guard lock(session_->mutex);
    return session_->extras().inbound_qos2.size() + (traffic_ ? traffic_->deferred_qos1 : 0);
  }

  void resend_inflight() {
    {
      std::vector<std::pair<std::uint64_t, std::uint16_t>> order;
      std::lock_guard lock(session_->mutex);
      if (session_->link.get() != this) return;
      auto& inflight = session_->extras().inflight;
      for (const auto& [packet_id, entry] : inflight) order.emplace_back(entry.d.seq, packet_id);
      std::sort(order.begin(), order.end());
      for (auto [seq, packet_id] : order) {
        auto& entry = inflight.at(packet_id);
        if (entry.released) {
          append(mqtt::ack_packet{mqtt::packet_type::pubrel, packet_id, reason_code::success, {}});
        } else {
          encode_delivery(entry.d, packet_id, true);
        }
      }
    }
    // Outside the session lock: a write that completes at once goes on to deliver(), which
    // takes it.
    flush_output();
  }

  // Moves queued deliveries into the output, as far as the client's window and our write buffer
  // allow. Runs on this connection's loop.
  void deliver() {
    if (state_ != connection_state::connected) return;
    // Acknowledgements waiting for durability go first; deliveries follow them.
    if (pending_ack_count() > 0) return;
    auto* store = broker_.store();
    auto now = broker_.clock().unix_seconds();
    const std::size_t window =
        std::min<std::size_t>(client_receive_maximum_, broker_.settings().max_inflight);
    std::vector<std::uint64_t> finished_seqs;
    std::vector<std::pair<std::uint64_t, std::uint16_t>> sent_qos2;
    bool drained = false;
    {
      std::lock_guard lock(session_->mutex);
      // After a takeover the session belongs to the new connection.
      if (session_->link.get() != this) return;
      auto& queue = session_->queue;
      while (!queue.empty()) {
        auto& d = queue.front();
        bool buffer_full = output_bytes() >= broker_.settings().max_write_buffer;
        if (d.msg->expires_at != 0 && now > d.msg->expires_at) {
          broker_.metrics().messages_expired.fetch_add(1, std::memory_order_relaxed);
          if (d.seq) finished_seqs.push_back(d.seq);
          queue.pop_front();
          continue;
        }
        if (d.qos == 0) {
          if (buffer_full) {
            // A slow reader loses QoS 0 messages rather than growing our memory.
            broker_.metrics().messages_dropped.fetch_add(1, std::memory_order_relaxed);
          } else if (may_receive(d)) {
            encode_delivery(d, 0, false);
          }
          queue.pop_front();
          continue;
        }
        if (session_->extras().inflight.size() >= window || buffer_full) break;
        auto packet_id = session_->allocate_packet_id();
        if (!may_receive(d) || !encode_delivery(d, packet_id, false)) {
          if (d.seq) finished_seqs.push_back(d.seq);
          queue.pop_front();
          continue;
        }
        if (d.qos == 2 && d.seq) sent_qos2.emplace_back(d.seq, packet_id);
        session_->extras().inflight.emplace(packet_id, outbound_inflight{std::move(d), false});
        queue.pop_front();
      }
      // Hysteresis: publishers resume once the queue is half empty, not at every message.
      auto* extras = session_->extras_if_any();
      drained = extras != nullptr &&
                (!extras->congested_publishers.empty() || extras->congestion_expired) &&
                queue.size() <= broker_.settings().max_queued_messages / 2;
    }
    if (store) {
      for (auto seq : finished_seqs) store->remove_delivery(client_id(), seq);
      for (auto [seq, packet_id] : sent_qos2) store->mark_sent(client_id(), seq, packet_id);
    }
    if (drained) broker::release_congestion(*session_);
    flush_output();
  }

  bool may_receive(const delivery& d) {
    if (broker_.auth().may_receive(identity_, d.msg->topic)) return true;
    broker_.metrics().authorization_denials.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  // Appends the PUBLISH for `d`; false when it cannot be sent to this client (larger than its
  // Maximum Packet Size), in which case nothing was written and no alias was assigned.
  bool encode_delivery(const delivery& d, std::uint16_t packet_id, bool dup) {
    const message& m = *d.msg;
    bool v5 = version_ == mqtt::protocol_version::v5;
    std::string_view topic = m.topic;
    const mqtt::properties* props = &m.props;
    mqtt::properties adjusted;
    if (v5) {
      bool expiring = m.expires_at != 0;
      std::optional<std::uint16_t> alias;
      bool new_alias = false;
      if (client_topic_alias_maximum_ > 0) {
        auto& outbound = aliases().outbound;
        if (auto it = outbound.find(m.topic); it != outbound.end()) {
          alias = it->second;
          topic = {};
        } else if (outbound.size() < client_topic_alias_maximum_) {
          alias = static_cast<std::uint16_t>(outbound.size() + 1);
          new_alias = true;
        }
      }
      if (alias || expiring || !d.subscription_ids.empty()) {
        adjusted = m.props;
        adjusted.topic_alias = alias;
        adjusted.subscription_identifiers = d.subscription_ids;
        if (expiring) {
          auto left = m.expires_at - broker_.clock().unix_seconds();
          adjusted.message_expiry_interval =
              static_cast<std::uint32_t>(std::max<std::int64_t>(left, 0));
        }
        props = &adjusted;
      }
      if (mqtt::publish_size(version_, d.qos, topic, *props, m.payload.size()) >
          client_max_packet_) {
        broker_.metrics().messages_dropped.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      if (new_alias) aliases().outbound.emplace(m.topic, *alias);
    }
    auto& t = traffic();
    mqtt::encode_publish_head(t.out, version_, d.qos, d.retain, dup, topic, packet_id, *props,
                              m.payload.size());
    if (m.payload.size() >= shared_payload_threshold) {
      t.out_refs.emplace_back(t.out.size(), d.msg);
      t.out_ref_bytes += m.payload.size();
    } else {
      t.out.append(m.payload);
    }
    broker_.metrics().messages_sent.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

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
                 gate_ptr gate = nullptr) {
    auto* store = broker_.store();
    spdlog::trace("mqtt_ack_queued client={} ticket={} waiting={}", client_id(), ticket.sequence(),
                  pending_ack_count());
    if (gate) {
      gate->release();  // routing is over: drop the publisher's own count
      if (gate->remaining.load(std::memory_order_acquire) == 0) gate.reset();
    }
    bool durable = ticket.is_none() || store == nullptr || store->writer().is_durable(ticket);
    bool ready = durable && !gate;
    auto& t = traffic();
    if (ready && t.pending_acks.empty()) {
      if (!ticket.is_none() && store && store->writer().failed_between(floor, ticket))
        return storage_failed();
      mqtt::encode(ack, version_, t.out);
      flush_output();
      return;
    }
    bool is_qos1 = std::holds_alternative<mqtt::ack_packet>(ack) &&
                   std::get<mqtt::ack_packet>(ack).type == mqtt::packet_type::puback;
    if (is_qos1) ++t.deferred_qos1;
    t.pending_acks.push_back({std::move(ack), ticket, floor, is_qos1, std::move(gate)});
    if (!durable) {
      store->writer().when_durable(ticket, [self = shared_from_this()] {
        asio::post(self->stream_->executor(), [self] {
          self->release_acks();
          self->settle();
        });
      });
    }
  }

  void release_acks() {
    auto* store = broker_.store();
    auto committed = store ? store->writer().committed() : storage::ticket(~std::uint64_t{0});
    auto& t = traffic();
    while (!t.pending_acks.empty() && t.pending_acks.front().ticket <= committed) {
      auto& front = t.pending_acks.front();
      if (front.gate && front.gate->remaining.load(std::memory_order_acquire) > 0)
        break;  // subscribers congested
      if (!front.ticket.is_none() && store &&
          store->writer().failed_between(front.floor, front.ticket)) {
        t.pending_acks.clear();
        return storage_failed();
      }
      if (front.is_qos1) --t.deferred_qos1;
      if (state_ != connection_state::closing && state_ != connection_state::closed)
        mqtt::encode(front.ack, version_, t.out);
      t.pending_acks.pop_front();
    }
    bool all_released = t.pending_acks.empty();
    flush_output();
    start_read();  // reading may have paused on pending acknowledgements
    if (all_released) deliver();
  }

  // What an acknowledgement would vouch for was not stored: never acknowledge it. Closing
  // makes the client resend its unacknowledged messages after reconnecting.
  void storage_failed() {
    spdlog::error("mqtt_storage_failed client={} action=disconnect", client_id());
    close_with(reason_code::implementation_specific_error, "storage failure");
  }

  void flush_output() {
    // While a batch of input is processed, its replies and the deliveries it triggers (PUBACKs
    // releasing a window ...) collect in the output and go out in one write afterwards.
    if (io_.processing_input) {
      io_.flush_deferred = true;
      return;
    }
    if (io_.writing || state_ == connection_state::closed) return;
    if (!traffic_ || traffic_->out.empty()) {
      if (state_ == connection_state::closing) close_stream();
      return;
    }
    auto& t = *traffic_;
    t.writing.clear();
    t.writing.swap(t.out);
    t.writing_refs.clear();
    t.writing_refs.swap(t.out_refs);
    t.out_ref_bytes = 0;
    t.write_buffers.clear();
    std::size_t offset = 0;
    for (const auto& [at, msg] : t.writing_refs) {
      if (at > offset) t.write_buffers.emplace_back(t.writing.data() + offset, at - offset);
      t.write_buffers.emplace_back(msg->payload.data(), msg->payload.size());
      offset = at;
    }
    if (offset < t.writing.size())
      t.write_buffers.emplace_back(t.writing.data() + offset, t.writing.size() - offset);
    io_.writing = true;
    // Speculative write: usually the socket takes everything at once and no asynchronous
    // operation (an allocation, and a trip through the loop) is needed. Not from inside a
    // completion that this path started, so that recursion stays one level deep.
    if (!io_.completing_synchronously) {
      boost::system::error_code ec;
      std::size_t total = asio::buffer_size(t.write_buffers);
      std::size_t n = stream_->write_available(t.write_buffers, ec);
      if (ec != asio::error::would_block && (ec || n == total)) {
        io_.completing_synchronously = true;
        after_write(ec, n, true);
        io_.completing_synchronously = false;
        return;
      }
      if (n > 0) {
        broker_.metrics().bytes_sent.fetch_add(n, std::memory_order_relaxed);
        consume_written(n);
      }
    }
    ++pending_operations_;
    stream_->write_from(t.write_buffers, *this);
  }

  // Drops the first `n` bytes of the write buffers (a partial speculative write).
  void consume_written(std::size_t n) {
    auto& buffers = traffic_->write_buffers;
    std::size_t done = 0;
    while (done < buffers.size() && n >= buffers[done].size()) n -= buffers[done++].size();
    buffers.erase(buffers.begin(), buffers.begin() + static_cast<long>(done));
    if (n > 0) buffers.front() += n;
  }

  void on_written(const boost::system::error_code& ec, std::size_t n) override {
    after_write(ec, n);
    settle();
    operation_done();
  }

  // `synchronous`: the write completed inside flush_output, whose caller carries on with its own
  // work (e.g. CONNACK before resending in-flight messages), so deliveries must not run inside
  // it; any waiting ones are picked up through a wake instead.
  void after_write(const boost::system::error_code& ec, std::size_t n, bool synchronous = false) {
    io_.writing = false;
    traffic_->writing_refs.clear();
    if (ec || state_ == connection_state::closed) {
      close_stream();  // the pending read fails and finishes the connection
      return;
    }
    broker_.metrics().bytes_sent.fetch_add(n, std::memory_order_relaxed);
    if (!traffic_->out.empty()) {
      flush_output();  // everything encoded meanwhile goes out in one batch
    } else if (state_ == connection_state::closing) {
      close_stream();
      return;
    }
    start_read();  // the output drained: a paused reader may continue
    if (state_ == connection_state::closing) return;
    if (!synchronous) return deliver();
    if (state_ == connection_state::connected) {
      bool queued;
      {
        std::lock_guard lock(session_->mutex);
        queued = !session_->queue.empty() && session_->link.get() == this;
      }
      if (queued) wake();
    }
  }

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

void local_wakes::run_early() {
  if (pending_.empty()) return;
  // Those already served early this batch stay for the batch's end.
  auto first_new = std::stable_partition(pending_.begin(), pending_.end(),
                                         [this](const auto& c) { return c->served_early(batch_); });
  std::vector<std::shared_ptr<connection>> now(std::make_move_iterator(first_new),
                                               std::make_move_iterator(pending_.end()));
  pending_.erase(first_new, pending_.end());
  for (auto& c : now) c->serve_early(batch_);  // may wake more: they join pending_
}

void local_wakes::run_all() {
  posted_ = false;
  ++batch_;
  if (pending_.empty()) return;
  std::vector<std::shared_ptr<connection>> batch;
  batch.swap(pending_);
  for (auto& c : batch) c->woken();  // may wake more: they wait for the next run
  if (pending_.empty()) {
    batch.clear();
    pending_.swap(batch);  // keep the capacity
  }
}

}  // namespace

void serve_mqtt(broker& b, std::unique_ptr<net::byte_stream> stream,
                std::optional<std::string> counted_as) {
  std::make_shared<connection>(b, std::move(stream), std::move(counted_as))->start();
}

}  // namespace nimbus::broker
