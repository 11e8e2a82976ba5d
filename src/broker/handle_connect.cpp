// CONNECT: validation, authorization, limits, the session, and CONNACK.
#include "broker/connection_impl.hpp"

#include "core/random.hpp"
#include "mqtt/topic.hpp"

namespace nimbus::broker {

void connection::refuse_connect(reason_code reason) {
  broker_.metrics().connections_refused.fetch_add(1, std::memory_order_relaxed);
  mqtt::connack_packet ack{false, reason, {}};
  append(ack);
  begin_closing();
}

void connection::on_connect(mqtt::connect_packet&& c) {
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
  if (c.props.authentication_method) return refuse_connect(reason_code::bad_authentication_method);

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
  if (c.will && ((broker_.is_reserved_topic(c.will->topic) &&
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
  enter(connection_state::connected);
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
        identity_.certificate ? identity_.certificate->sha256_hex : "-", static_cast<int>(version_),
        is_bridge_ ? " bridge=true" : "", c.clean_start, attached.session_present, held_back);
  session_id_ = core::random_u64();
  broker_.announce_connected(identity_, session_id_);
  if (attached.session_present) resend_inflight();
  deliver();
}

}  // namespace nimbus::broker
