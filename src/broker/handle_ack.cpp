// PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and 2 handshakes, both directions.
#include "broker/connection_impl.hpp"

namespace nimbus::broker {

void connection::on_ack(const mqtt::ack_packet& a) {
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
      // PUBCOMP frees the packet id for a new message: once it is sent, the stored id must be
      // gone, or after a crash that new message would be taken for a duplicate and dropped.
      const storage::ticket floor = durable_floor();
      storage::ticket ticket;
      if (found && persistent && store)
        ticket = store->remove_inbound_qos2(client_id(), a.packet_id);
      queue_ack(mqtt::ack_packet{mqtt::packet_type::pubcomp,
                                 a.packet_id,
                                 found || version_ != mqtt::protocol_version::v5
                                     ? reason_code::success
                                     : reason_code::packet_identifier_not_found,
                                 {}},
                ticket, floor);
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

}  // namespace nimbus::broker
