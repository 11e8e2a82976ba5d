// PUBLISH from a client: topic aliases, checks, routing, and the acknowledgement once durable.
#include "broker/connection_impl.hpp"

#include <boost/asio/post.hpp>

#include "mqtt/topic.hpp"

namespace nimbus::broker {

void connection::on_publish(mqtt::publish_packet&& p) {
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
      queue_ack(mqtt::ack_packet{mqtt::packet_type::pubrec, p.packet_id, reason_code::success, {}},
                {});
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
          mqtt::ack_packet{mqtt::packet_type::puback, p.packet_id, reason_code::not_authorized, {}},
          storage::ticket());
    if (p.qos == 2)
      queue_ack(
          mqtt::ack_packet{mqtt::packet_type::pubrec, p.packet_id, reason_code::not_authorized, {}},
          storage::ticket());
    return;
  }

  publish_result routed;
  gate_ptr gate;
  const storage::ticket floor = durable_floor();
  bool reserved = broker_.is_reserved_topic(p.topic) &&
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
    routed = broker_.publish(std::move(msg), gate, &identity_);
  }
  if (routed.quota_exceeded) {
    // Neither retained nor routed. MQTT 5 says why; QoS 0 cannot be told; 3.1.1 has no way
    // to refuse a PUBLISH, so its connection is closed rather than falsely acknowledged.
    if (v5 && p.qos > 0)
      queue_ack(mqtt::ack_packet{p.qos == 1 ? mqtt::packet_type::puback : mqtt::packet_type::pubrec,
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
      ticket = storage::later(ticket, broker_.store()->add_inbound_qos2(client_id(), p.packet_id));
    queue_ack(mqtt::ack_packet{mqtt::packet_type::pubrec, p.packet_id, matched_code, {}}, ticket,
              floor, std::move(gate));
  }
}

}  // namespace nimbus::broker
