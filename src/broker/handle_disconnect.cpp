// DISCONNECT from a client: session expiry, the will, and a clean close.
#include "broker/connection_impl.hpp"

namespace nimbus::broker {

void connection::on_disconnect(const mqtt::disconnect_packet& d) {
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

}  // namespace nimbus::broker
