// What a connection sends: queued deliveries, acknowledgements in order (each once durable), and
// batched, speculative writes.
#include "broker/connection_impl.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>

namespace nimbus::broker {

std::size_t connection::inbound_in_flight() {
  std::lock_guard lock(session_->mutex);
  return session_->extras().inbound_qos2.size() + (traffic_ ? traffic_->deferred_qos1 : 0);
}

void connection::resend_inflight() {
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
void connection::deliver() {
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

bool connection::may_receive(const delivery& d) {
  if (broker_.auth().may_receive(identity_, d.msg->topic)) return true;
  broker_.metrics().authorization_denials.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// Appends the PUBLISH for `d`; false when it cannot be sent to this client (larger than its
// Maximum Packet Size), in which case nothing was written and no alias was assigned.
bool connection::encode_delivery(const delivery& d, std::uint16_t packet_id, bool dup) {
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
    if (mqtt::publish_size(version_, d.qos, topic, *props, m.payload.size()) > client_max_packet_) {
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

// Acknowledgements leave in order; one that must wait for a durable write holds the rest.
void connection::queue_ack(mqtt::packet ack, storage::ticket ticket, storage::ticket floor,
                           gate_ptr gate) {
  auto* store = broker_.store();
  spdlog::trace("mqtt_ack_queued client={} ticket={} waiting={}", client_id(), ticket.sequence(),
                pending_ack_count());
  if (gate) {
    gate->release();  // routing is over: drop the publisher's own count
    if (gate->remaining.load(std::memory_order_acquire) == 0) {
      if (gate->failed.load(std::memory_order_acquire)) return storage_failed();
      gate.reset();
    }
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

void connection::release_acks() {
  auto* store = broker_.store();
  auto committed = store ? store->writer().committed() : storage::ticket(~std::uint64_t{0});
  auto& t = traffic();
  while (!t.pending_acks.empty() && t.pending_acks.front().ticket <= committed) {
    auto& front = t.pending_acks.front();
    if (front.gate && front.gate->remaining.load(std::memory_order_acquire) > 0)
      break;  // subscribers congested
    if (front.gate && front.gate->failed.load(std::memory_order_acquire)) {
      t.pending_acks.clear();
      return storage_failed();  // a service holding it lost the message
    }
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
void connection::storage_failed() {
  spdlog::error("mqtt_storage_failed client={} action=disconnect", client_id());
  close_with(reason_code::implementation_specific_error, "storage failure");
}

void connection::flush_output() {
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
void connection::consume_written(std::size_t n) {
  auto& buffers = traffic_->write_buffers;
  std::size_t done = 0;
  while (done < buffers.size() && n >= buffers[done].size()) n -= buffers[done++].size();
  buffers.erase(buffers.begin(), buffers.begin() + static_cast<long>(done));
  if (n > 0) buffers.front() += n;
}

void connection::on_written(const boost::system::error_code& ec, std::size_t n) {
  after_write(ec, n);
  settle();
  operation_done();
}

// `synchronous`: the write completed inside flush_output, whose caller carries on with its own
// work (e.g. CONNACK before resending in-flight messages), so deliveries must not run inside
// it; any waiting ones are picked up through a wake instead.
void connection::after_write(const boost::system::error_code& ec, std::size_t n, bool synchronous) {
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

}  // namespace nimbus::broker
