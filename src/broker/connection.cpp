// A connection's life: reading, framing and dispatching input, its one timer, and closing.
#include "broker/connection_impl.hpp"

#include <boost/asio/post.hpp>
#include <cstring>

#include "core/random.hpp"

namespace nimbus::broker {

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

connection::connection(broker& b, std::unique_ptr<net::byte_stream> stream,
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

void connection::start() {
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

void connection::wake() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  auto executor = stream_->executor();
  if (auto* local = local_wakes::of_current(executor))
    return local->add(shared_from_this(), executor);
  asio::post(executor, [self = shared_from_this()] { self->woken(); });
}

void connection::woken() {
  wake_pending_.store(false, std::memory_order_release);
  deliver();
  settle();
}

void connection::kick(reason_code reason) {
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

// Every pending operation holds a count; the last one to finish after close releases `self_`.
void connection::operation_done() {
  --pending_operations_;
  if (state_ == connection_state::closed && pending_operations_ == 0) {
    auto last_reference = std::move(self_);  // destroys this connection when the call returns
  }
}

// Reads until the stream ends; pauses while the client is not taking what we send. An idle
// plain-TCP client holds no read buffer: we wait for readability, then read what is there.
void connection::start_read() {
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

void connection::on_read(const boost::system::error_code& ec, std::size_t n) {
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

void connection::end_input() {
  io_.processing_input = false;
  if (io_.flush_deferred) {
    io_.flush_deferred = false;
    flush_output();
  }
  // Then what this input published, to subscribers on this loop.
  if (auto* local = local_wakes::of_current(stream_->executor())) local->run_early();
}

void connection::on_readable(const boost::system::error_code& ec) {
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
bool connection::consume(std::size_t n) {
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
asio::mutable_buffer connection::input_space() {
  if (in_size_ == 0) resize_input(initial_read_buffer);
  if (in_used_ == in_size_) {
    std::size_t limit = std::max<std::size_t>(max_frame_bytes() + 8, in_size_);
    resize_input(std::min<std::size_t>(std::size_t{in_size_} * 2, limit));
  }
  return asio::buffer(in_.get() + in_used_, in_size_ - in_used_);
}

// Reallocates the input buffer, keeping what it holds (size 0: frees it; it must be empty).
void connection::resize_input(std::size_t size) {
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
void connection::process_input(std::size_t received) {
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
std::optional<std::chrono::steady_clock::time_point> connection::timer_deadline() const {
  if (state_ != connection_state::connected) return deadline_;  // CONNECT, or close grace
  if (keep_alive_ == 0) return std::nullopt;
  return last_received_ + std::chrono::milliseconds(std::uint64_t{keep_alive_} * 1500);
}

// (Re)schedules the timer for the current state; called after every state change.
void connection::arm_timer() {
  if (state_ == connection_state::closed) return;
  if (auto deadline = timer_deadline())
    timer_.schedule(*deadline);
  else
    timer_.cancel();
}

void connection::on_timer_expired() {
  if (state_ != connection_state::closed) on_timer();
  settle();
}

void connection::on_timer() {
  auto deadline = timer_deadline();
  if (deadline && broker_.clock().now() >= *deadline) {
    if (state_ != connection_state::connected) return close_now();
    end_reason_ = end_reason::keep_alive_timeout;
    return close_with(reason_code::keep_alive_timeout, "keep alive timeout");
  }
  arm_timer();  // traffic moved the deadline, or the state changed
}

// The read side ended: the connection is over. Runs exactly once.
void connection::finish() {
  if (state_ == connection_state::closed) return;
  enter(connection_state::closed);
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
void connection::close_with(reason_code reason, std::string_view why) {
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
void connection::begin_closing() {
  enter(connection_state::closing);
  deadline_ = broker_.clock().now() + close_grace;
  flush_output();
  arm_timer();
  start_read();  // keep draining input so the peer's close is seen
}

// Closes the socket. Its max_connections slot is given back when the connection finishes
// (finish(), right after the read side ends).
void connection::close_stream() {
  if (held_.socket_slot) {
    held_.socket_slot = false;
    broker_.metrics().connections_current.fetch_sub(1, std::memory_order_relaxed);
  }
  stream_->close();
}

// Closes the socket at once; the read that fails then finishes the connection.
void connection::close_now() {
  enter(connection_state::closing);
  close_stream();
}

// This socket stops counting against the pending-socket limits (CONNECT completed, or closed).
void connection::leave_pending() {
  if (!held_.pending_slot) return;
  held_.pending_slot = false;
  broker_.pending().remove(pending_sockets::key_of(identity_.remote_address));
}

// Someone sent HTTP to the MQTT port (a browser, curl, an SDK pointed at the wrong port).
void connection::http_on_mqtt_port() {
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

void connection::protocol_violation(reason_code reason, std::string_view what) {
  broker_.metrics().protocol_errors.fetch_add(1, std::memory_order_relaxed);
  end_reason_ = end_reason::client_error;
  spdlog::info("mqtt_protocol_error client={} remote={} reason=0x{:02x} detail=\"{}\"", client_id(),
               identity_.remote_address, static_cast<unsigned>(reason), what);
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

void connection::handle(mqtt::packet&& p) {
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
          protocol_violation(reason_code::protocol_error, "AUTH without an authentication method");
        else
          protocol_violation(reason_code::protocol_error, "packet type not sent by clients");
      },
      std::move(p));
}

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

// One per client, idle or not: what `nimbus bench conn` measures per connection starts here.
static_assert(sizeof(connection) <= 368, "a connection grew: measure `nimbus bench conn`");

void serve_mqtt(broker& b, std::unique_ptr<net::byte_stream> stream,
                std::optional<std::string> counted_as) {
  std::make_shared<connection>(b, std::move(stream), std::move(counted_as))->start();
}

}  // namespace nimbus::broker
