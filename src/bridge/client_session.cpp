#include "bridge/client_session.hpp"

#include <algorithm>
#include <utility>

#include "core/assert.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"

namespace nimbus::bridge {

namespace {

using mqtt::packet_type;
using mqtt::reason_code;

constexpr std::uint32_t largest_packet = mqtt::max_remaining_length + 5;

// What a server may send a client; anything else fails the link before it is even decoded.
// UNSUBACK is missing because a bridge never unsubscribes, AUTH because it names no method.
bool is_server_packet(packet_type type) {
  switch (type) {
    case packet_type::connack:
    case packet_type::publish:
    case packet_type::puback:
    case packet_type::pubrec:
    case packet_type::pubrel:
    case packet_type::pubcomp:
    case packet_type::suback:
    case packet_type::pingresp:
    case packet_type::disconnect:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string notification_topic(std::string_view remote_client_id) {
  std::string topic = "$SYS/broker/connection/";
  topic.append(remote_client_id);
  topic.append("/state");
  return topic;
}

mqtt::will_message notification_will(std::string topic) {
  return mqtt::will_message{
      .topic = std::move(topic), .payload = "0", .qos = 1, .retain = true, .props = {}};
}

client_session::client_session(session_options options)
    : options_(options), ids_in_use_(65536, false) {
  // Zero is no value for any of them (MQTT 5 forbids it for the two it announces).
  options_.max_in_flight = std::max<std::uint16_t>(options_.max_in_flight, 1);
  options_.receive_maximum = std::max<std::uint16_t>(options_.receive_maximum, 1);
  options_.maximum_packet_size =
      std::clamp<std::uint32_t>(options_.maximum_packet_size, 2, largest_packet);
}

std::size_t client_session::window() const {
  return std::min<std::size_t>(options_.max_in_flight, limits_.receive_maximum);
}

std::vector<std::uint64_t> client_session::in_flight_cookies() const {
  std::vector<std::uint64_t> cookies;
  cookies.reserve(outbound_.size());
  for (const auto& entry : outbound_) cookies.push_back(entry.message.cookie);
  return cookies;
}

// --- connection -------------------------------------------------------------------------

void client_session::connect(const connect_params& params, steady_time now) {
  input_.clear();
  output_.clear();
  // A SUBSCRIBE unanswered on the last connection will never be: the owner subscribes again.
  for (const auto& pending : subscribes_) release_packet_id(pending.packet_id);
  subscribes_.clear();
  for (auto& entry : outbound_) entry.is_sent = false;
  unsent_count_ = outbound_.size();

  state_ = session_state::connecting;
  is_clean_start_ = params.clean_start;
  limits_ = server_limits{};
  limits_.keep_alive = params.keep_alive;
  is_ping_outstanding_ = false;
  last_sent_ = now;
  last_received_ = now;

  const bool is_v5 = options_.version == mqtt::protocol_version::v5;
  mqtt::connect_packet connect;
  connect.version = options_.version;
  connect.clean_start = params.clean_start;
  connect.keep_alive = params.keep_alive;
  connect.client_id = params.client_id;
  connect.will = params.will;
  connect.username = params.username;
  connect.password = params.password;
  connect.bridge = params.bridge_flag && !is_v5;
  if (is_v5) {
    if (params.session_expiry != 0) connect.props.session_expiry_interval = params.session_expiry;
    if (options_.receive_maximum != 65535) connect.props.receive_maximum = options_.receive_maximum;
    if (options_.maximum_packet_size != largest_packet)
      connect.props.maximum_packet_size = options_.maximum_packet_size;
  }
  write(std::move(connect));
}

void client_session::disconnect(steady_time now, reason_code reason) {
  if (state_ == session_state::disconnected) return;
  write(mqtt::disconnect_packet{.reason = reason, .props = {}});
  last_sent_ = now;
  state_ = session_state::disconnected;
}

void client_session::link_closed() {
  state_ = session_state::disconnected;
  input_.clear();
  output_.clear();
}

void client_session::fail(reason_code reason, std::string_view what, events& out) {
  // MQTT 5 lets the client name the server's fault before closing; a silent server would not
  // read it.
  if (state_ == session_state::connected && options_.version == mqtt::protocol_version::v5 &&
      reason != reason_code::keep_alive_timeout)
    write(mqtt::disconnect_packet{.reason = reason, .props = {}});
  state_ = session_state::disconnected;
  out.push_back(link_failed{.reason = reason, .what = what});
}

// --- input ------------------------------------------------------------------------------

std::vector<session_event> client_session::feed(std::string_view bytes, steady_time now) {
  events out;
  if (state_ == session_state::disconnected || bytes.empty()) return out;
  last_received_ = now;
  const std::size_t output_before = output_.size();
  input_.append(bytes);
  std::size_t offset = 0;
  while (state_ != session_state::disconnected) {
    const std::string_view rest = std::string_view(input_).substr(offset);
    const auto header = mqtt::read_frame_header(rest);
    if (std::holds_alternative<mqtt::need_more_bytes>(header)) break;
    if (const auto* error = std::get_if<mqtt::decode_error>(&header)) {
      fail(error->reason, error->what, out);
      break;
    }
    const auto& frame = std::get<mqtt::frame_header>(header);
    if (!is_server_packet(frame.type())) {
      fail(reason_code::protocol_error, "packet type a server does not send this client", out);
      break;
    }
    // Checked before the body arrives: the receive buffer never holds more than one packet of
    // our maximum size (plus what came with its end).
    if (frame.total_size() > options_.maximum_packet_size) {
      fail(reason_code::packet_too_large, "packet over our maximum packet size", out);
      break;
    }
    if (rest.size() < frame.total_size()) break;
    auto decoded = mqtt::decode_packet(
        frame, rest.substr(frame.header_size, frame.remaining_length), options_.version);
    offset += frame.total_size();
    if (const auto* error = std::get_if<mqtt::decode_error>(&decoded)) {
      fail(error->reason, error->what, out);
      break;
    }
    on_packet(std::get<mqtt::packet>(decoded), now, out);
  }
  if (state_ == session_state::disconnected)
    input_.clear();
  else
    input_.erase(0, offset);
  if (output_.size() != output_before) last_sent_ = now;
  return out;
}

void client_session::on_packet(mqtt::packet& packet, steady_time now, events& out) {
  auto* connack = std::get_if<mqtt::connack_packet>(&packet);
  if (state_ == session_state::connecting) {
    if (connack == nullptr) return fail(reason_code::protocol_error, "packet before CONNACK", out);
    return on_connack(*connack, now, out);
  }
  if (connack != nullptr) return fail(reason_code::protocol_error, "a second CONNACK", out);
  if (auto* publish = std::get_if<mqtt::publish_packet>(&packet)) return on_publish(*publish, out);
  if (const auto* ack = std::get_if<mqtt::ack_packet>(&packet)) return on_ack(*ack, now, out);
  if (auto* suback = std::get_if<mqtt::suback_packet>(&packet)) return on_suback(*suback, out);
  if (std::holds_alternative<mqtt::pingresp_packet>(packet)) {
    is_ping_outstanding_ = false;
    return;
  }
  if (auto* disconnect = std::get_if<mqtt::disconnect_packet>(&packet)) {
    state_ = session_state::disconnected;
    out.push_back(
        server_disconnected{.reason = disconnect->reason,
                            .reason_string = std::move(disconnect->props.reason_string),
                            .server_reference = std::move(disconnect->props.server_reference)});
    return;
  }
  NIMBUS_ASSERT(!"is_server_packet lets through only the packets handled above");
}

void client_session::on_connack(mqtt::connack_packet& connack, steady_time now, events& out) {
  auto& props = connack.props;
  connack_received event{.is_accepted = !mqtt::is_error(connack.reason),
                         .session_present = connack.session_present,
                         .reason = connack.reason,
                         .reason_string = std::move(props.reason_string),
                         .assigned_client_id = std::move(props.assigned_client_identifier),
                         .server_reference = std::move(props.server_reference),
                         .limits = {}};
  if (!event.is_accepted) {
    state_ = session_state::disconnected;
    event.limits = limits_;
    out.push_back(std::move(event));
    return;
  }
  if (connack.session_present && is_clean_start_)
    return fail(reason_code::protocol_error, "session present after a clean start", out);
  limits_.receive_maximum = props.receive_maximum.value_or(65535);
  limits_.maximum_packet_size =
      std::min(props.maximum_packet_size.value_or(largest_packet), largest_packet);
  limits_.maximum_qos = props.maximum_qos.value_or(2);
  limits_.is_retain_available = props.retain_available.value_or(1) == 1;
  if (props.server_keep_alive) limits_.keep_alive = *props.server_keep_alive;
  state_ = session_state::connected;
  event.limits = limits_;
  out.push_back(std::move(event));
  if (connack.session_present) {
    // Both sides resend what is unanswered (4.4): we our PUBLISHes (DUP) and PUBRELs here; the
    // server its own, which inbound_ recognises and answers without handing them over twice.
    send_unsent(now);
  } else {
    return_in_flight(out);
  }
}

void client_session::return_in_flight(events& out) {
  // Deliveries the owner has not acknowledged belong to a session the server no longer has.
  for (const auto& [packet_id, entry] : inbound_)
    if (entry.stage == inbound_stage::delivered) ++stale_deliveries_[packet_id];
  inbound_.clear();
  messages_returned returned;
  for (auto& entry : outbound_) {
    release_packet_id(entry.packet_id);
    if (entry.stage == outbound_stage::awaiting_pubcomp) {
      // The server had it (PUBREC): it is delivered, only the release was left.
      out.push_back(publish_completed{.packet_id = entry.packet_id,
                                      .cookie = entry.message.cookie,
                                      .reason = reason_code::success});
    } else {
      returned.messages.push_back(std::move(entry.message));
    }
  }
  outbound_.clear();
  unsent_count_ = 0;
  if (!returned.messages.empty()) out.push_back(std::move(returned));
}

void client_session::on_publish(mqtt::publish_packet& publish, events& out) {
  if (publish.props.topic_alias)
    return fail(reason_code::topic_alias_invalid, "topic alias (we allow none)", out);
  if (!mqtt::is_valid_topic_name(publish.topic))
    return fail(reason_code::topic_name_invalid, "invalid topic name", out);
  if (publish.qos > 0) {
    auto [it, is_new] = inbound_.try_emplace(publish.packet_id, inbound_entry{.qos = publish.qos});
    if (!is_new) {
      // A resend, or a QoS 2 message again before its PUBREL: handed over once only, answered
      // once the owner has acknowledged it.
      ++counters_.duplicates_received;
      if (it->second.stage == inbound_stage::acknowledged) answer_inbound(it);
      return;
    }
    if (options_.version == mqtt::protocol_version::v5 &&
        inbound_.size() > options_.receive_maximum)
      return fail(reason_code::receive_maximum_exceeded,
                  "unacknowledged messages over our receive maximum", out);
  }
  out.push_back(publish_received{std::move(publish)});
}

void client_session::acknowledge(std::uint16_t packet_id, reason_code reason) {
  if (auto stale = stale_deliveries_.find(packet_id); stale != stale_deliveries_.end()) {
    if (--stale->second == 0) stale_deliveries_.erase(stale);
    return;
  }
  auto it = inbound_.find(packet_id);
  if (it == inbound_.end() || it->second.stage != inbound_stage::delivered) return;
  it->second.stage = inbound_stage::acknowledged;
  it->second.reason = reason;
  if (state_ == session_state::connected) answer_inbound(it);
}

void client_session::answer_inbound(inbound_map::iterator it) {
  const auto [packet_id, entry] = *it;
  if (entry.qos == 1) {
    write_ack(packet_type::puback, packet_id, entry.reason);
    inbound_.erase(it);
    return;
  }
  write_ack(packet_type::pubrec, packet_id, entry.reason);
  // An MQTT 5 refusal ends the exchange at PUBREC; on 3.1.1 the server still sends PUBREL.
  if (options_.version == mqtt::protocol_version::v5 && mqtt::is_error(entry.reason))
    inbound_.erase(it);
}

void client_session::on_ack(const mqtt::ack_packet& ack, steady_time now, events& out) {
  if (ack.type == packet_type::pubrel) {
    auto it = inbound_.find(ack.packet_id);
    if (it != inbound_.end() && it->second.stage == inbound_stage::delivered)
      return fail(reason_code::protocol_error, "PUBREL before our PUBREC", out);
    if (it != inbound_.end() && it->second.qos == 2) {
      inbound_.erase(it);
      write_ack(packet_type::pubcomp, ack.packet_id, reason_code::success);
    } else {
      // Already released (our PUBCOMP was lost), or never known.
      write_ack(packet_type::pubcomp, ack.packet_id, reason_code::packet_identifier_not_found);
    }
    return;
  }
  auto it = find_outbound(ack.packet_id);
  if (it == outbound_.end()) return;  // late: the message is already complete
  const auto stage = it->stage;
  if (ack.type == packet_type::puback && stage == outbound_stage::awaiting_puback)
    return complete(it, ack.reason, now, out);
  if (ack.type == packet_type::pubcomp && stage == outbound_stage::awaiting_pubcomp)
    return complete(it, ack.reason, now, out);
  if (ack.type == packet_type::pubrec && stage != outbound_stage::awaiting_puback) {
    if (stage == outbound_stage::awaiting_pubrec && mqtt::is_error(ack.reason))
      return complete(it, ack.reason, now, out);
    // First PUBREC, or the server's again: (re)release. Sending the PUBREL puts an entry not
    // yet resent on this connection back on it.
    it->stage = outbound_stage::awaiting_pubcomp;
    if (!it->is_sent) {
      it->is_sent = true;
      --unsent_count_;
    }
    write_ack(packet_type::pubrel, ack.packet_id, reason_code::success);
    return;
  }
  fail(reason_code::protocol_error, "acknowledgement of the wrong kind for its QoS", out);
}

void client_session::on_suback(mqtt::suback_packet& suback, events& out) {
  auto it = std::find_if(subscribes_.begin(), subscribes_.end(), [&](const auto& pending) {
    return pending.packet_id == suback.packet_id;
  });
  if (it == subscribes_.end())
    return fail(reason_code::protocol_error, "SUBACK for no SUBSCRIBE", out);
  if (suback.reasons.size() != it->filters.size())
    return fail(reason_code::protocol_error, "SUBACK without one code per filter", out);
  suback_received event{.packet_id = suback.packet_id, .results = {}};
  for (std::size_t i = 0; i < suback.reasons.size(); ++i)
    event.results.push_back({.filter = std::move(it->filters[i]), .reason = suback.reasons[i]});
  release_packet_id(it->packet_id);
  subscribes_.erase(it);
  out.push_back(std::move(event));
}

// --- output -----------------------------------------------------------------------------

std::uint16_t client_session::subscribe(std::span<const mqtt::subscribe_entry> entries,
                                        steady_time now) {
  if (state_ != session_state::connected || entries.empty()) return 0;
  const std::uint16_t packet_id = allocate_packet_id();
  if (packet_id == 0) return 0;
  mqtt::subscribe_packet subscribe{
      .packet_id = packet_id, .props = {}, .entries = {entries.begin(), entries.end()}};
  pending_subscribe pending{.packet_id = packet_id, .filters = {}};
  for (const auto& entry : entries) pending.filters.push_back(entry.filter);
  subscribes_.push_back(std::move(pending));
  write(std::move(subscribe));
  last_sent_ = now;
  return packet_id;
}

publish_result client_session::publish(const outbound_message& message, steady_time now) {
  if (state_ != session_state::connected) return {.status = publish_status::not_connected};
  if (!mqtt::is_valid_topic_name(message.topic) || !mqtt::is_valid_mqtt_utf8(message.topic))
    return {.status = publish_status::invalid_topic};
  const auto qos = std::min<std::uint8_t>({message.qos, limits_.maximum_qos, 2});
  const bool retain = message.retain && limits_.is_retain_available;
  if (qos > 0 && outbound_.size() >= window()) return {.status = publish_status::would_block};

  outbound_message sent = message;
  // A local delivery's own: the remote assigns its Subscription Identifiers, and we announce no
  // Topic Alias.
  sent.props.subscription_identifiers.clear();
  sent.props.topic_alias.reset();
  const std::size_t size =
      mqtt::publish_size(options_.version, qos, sent.topic, sent.props, sent.payload.size());
  if (size > limits_.maximum_packet_size) {
    ++counters_.too_large;
    return {.status = publish_status::too_large};
  }
  const std::uint16_t packet_id = qos > 0 ? allocate_packet_id() : 0;
  if (qos > 0 && packet_id == 0) return {.status = publish_status::would_block};

  const bool is_downgraded = qos < message.qos;
  if (is_downgraded) ++counters_.qos_downgraded;
  write_publish(sent, qos, retain, packet_id, false);
  last_sent_ = now;
  if (qos > 0) {
    outbound_.push_back(outbound_entry{
        .packet_id = packet_id,
        .stage = qos == 1 ? outbound_stage::awaiting_puback : outbound_stage::awaiting_pubrec,
        .qos = qos,
        .retain = retain,
        .is_sent = true,
        .sent_at = now,
        .message = std::move(sent)});
  }
  return {.status = publish_status::sent, .packet_id = packet_id, .is_downgraded = is_downgraded};
}

void client_session::send_unsent(steady_time now) {
  // Only the window's first entries go out; the rest follow as those complete.
  const std::size_t limit = std::min(window(), outbound_.size());
  for (std::size_t i = 0; i < limit && unsent_count_ > 0; ++i) {
    auto& entry = outbound_[i];
    if (entry.is_sent) continue;
    entry.is_sent = true;
    --unsent_count_;
    if (entry.stage == outbound_stage::awaiting_pubcomp) {
      write_ack(packet_type::pubrel, entry.packet_id, reason_code::success);
      continue;
    }
    // The expiry counts down from the first send (3.3.2.3.3), in the resend only: the message
    // stays as given, for messages_returned. Never down to 0, which some servers (Mosquitto)
    // read as no expiry at all.
    auto& expiry = entry.message.props.message_expiry_interval;
    const auto given_expiry = expiry;
    if (expiry) {
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - entry.sent_at);
      const auto elapsed = static_cast<std::uint64_t>(std::max<std::int64_t>(waited.count(), 0));
      *expiry = elapsed >= *expiry ? 1 : static_cast<std::uint32_t>(*expiry - elapsed);
    }
    write_publish(entry.message, entry.qos, entry.retain, entry.packet_id, true);
    expiry = given_expiry;
  }
}

void client_session::complete(const std::deque<outbound_entry>::iterator& it, reason_code reason,
                              steady_time now, events& out) {
  out.push_back(publish_completed{
      .packet_id = it->packet_id, .cookie = it->message.cookie, .reason = reason});
  if (mqtt::is_error(reason)) ++counters_.refused;
  if (!it->is_sent) --unsent_count_;
  release_packet_id(it->packet_id);
  outbound_.erase(it);
  if (unsent_count_ > 0) send_unsent(now);
}

std::deque<client_session::outbound_entry>::iterator client_session::find_outbound(
    std::uint16_t packet_id) {
  // Acknowledgements mostly come in order, so the entry is mostly the first.
  return std::find_if(outbound_.begin(), outbound_.end(),
                      [&](const outbound_entry& entry) { return entry.packet_id == packet_id; });
}

void client_session::write(const mqtt::packet& packet) {
  mqtt::encode(packet, options_.version, output_);
}

void client_session::write_publish(const outbound_message& message, std::uint8_t qos, bool retain,
                                   std::uint16_t packet_id, bool dup) {
  mqtt::encode_publish_head(output_, options_.version, qos, retain, dup, message.topic, packet_id,
                            message.props, message.payload.size());
  output_.append(message.payload);
}

void client_session::write_ack(packet_type type, std::uint16_t packet_id, reason_code reason) {
  write(mqtt::ack_packet{.type = type, .packet_id = packet_id, .reason = reason, .props = {}});
}

std::uint16_t client_session::allocate_packet_id() {
  for (std::uint32_t tries = 0; tries < 65535; ++tries) {
    const std::uint16_t packet_id = next_packet_id_;
    next_packet_id_ = packet_id == 65535 ? 1 : static_cast<std::uint16_t>(packet_id + 1);
    if (!ids_in_use_[packet_id]) {
      ids_in_use_[packet_id] = true;
      return packet_id;
    }
  }
  return 0;
}

// --- keep-alive -------------------------------------------------------------------------

steady_time client_session::ping_due() const {
  const std::chrono::seconds keep_alive(limits_.keep_alive);
  const steady_time due = last_sent_ + keep_alive;
  // Silence from the server is worth a ping too, unless one is already out.
  return is_ping_outstanding_ ? due : std::min(due, last_received_ + keep_alive);
}

steady_time client_session::silence_limit() const {
  return last_received_ + std::chrono::milliseconds(std::int64_t{limits_.keep_alive} * 1500);
}

std::optional<steady_time> client_session::next_deadline() const {
  if (state_ == session_state::disconnected || limits_.keep_alive == 0) return std::nullopt;
  // Before the CONNACK the silence limit is the connect timeout.
  if (state_ == session_state::connecting) return silence_limit();
  return std::min(ping_due(), silence_limit());
}

std::vector<session_event> client_session::tick(steady_time now) {
  events out;
  if (state_ == session_state::disconnected || limits_.keep_alive == 0) return out;
  if (now >= silence_limit()) {
    fail(reason_code::keep_alive_timeout, "nothing from the server for 1.5 x keep alive", out);
  } else if (state_ == session_state::connected && now >= ping_due()) {
    write(mqtt::pingreq_packet{});
    is_ping_outstanding_ = true;
    last_sent_ = now;
  }
  return out;
}

}  // namespace nimbus::bridge
