// SUBSCRIBE and UNSUBSCRIBE: checks, limits, authorization and the acknowledgement.
#include "broker/connection_impl.hpp"

#include "mqtt/topic.hpp"

namespace nimbus::broker {

void connection::on_subscribe(const mqtt::subscribe_packet& s) {
  bool v5 = version_ == mqtt::protocol_version::v5;
  std::uint32_t subscription_id =
      s.props.subscription_identifiers.empty() ? 0 : s.props.subscription_identifiers[0];
  mqtt::suback_packet ack{s.packet_id, {}, {}};
  std::vector<std::string> granted;  // for the lifecycle event
  storage::ticket ticket;
  const storage::ticket floor = durable_floor();
  for (const auto& e : s.entries) {
    const auto shared_parts = mqtt::parse_shared_filter(e.filter);
    const bool shared = shared_parts.has_value();
    bool valid = shared ? mqtt::is_valid_shared_filter(e.filter, broker_.topic_limits())
                        : mqtt::is_valid_topic_filter(e.filter, broker_.topic_limits());
    // Basic Ingest topics reach rules only: subscribing to them is refused, as by AWS.
    if (broker::is_basic_ingest(shared ? shared_parts->filter : std::string_view(e.filter)))
      valid = false;
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

void connection::on_unsubscribe(const mqtt::unsubscribe_packet& u) {
  mqtt::unsuback_packet ack{u.packet_id, {}, {}};
  std::vector<std::string> removed;
  storage::ticket ticket;
  const storage::ticket floor = durable_floor();
  for (const auto& filter : u.filters) {
    bool existed = broker_.unsubscribe(session_, filter, ticket);
    if (existed) removed.push_back(filter);
    ack.reasons.push_back(existed ? reason_code::success : reason_code::no_subscription_existed);
  }
  queue_ack(std::move(ack), ticket, floor);
  broker_.announce_subscriptions(identity_, session_id_, false, removed);
}

}  // namespace nimbus::broker
