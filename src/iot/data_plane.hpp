#pragma once
// AWS IoT's data plane (`iot-data`) over HTTP(S): Publish (POST /topics/{topic}, the raw body
// as payload), the Device Shadow operations (data_plane_shadow.cpp) and the retained message
// reads. Devices authenticate with their client certificate (checked against the same policies
// as MQTT); API users sign with SigV4 (`iotdata`).
#include <optional>

#include "broker/broker.hpp"
#include "iot/aws_http.hpp"
#include "iot/device_authorizer.hpp"
#include "net/http_server.hpp"
#include "shadow/service.hpp"

namespace nimbus::iot {

// What data_plane::caller throws for a request whose SigV4 fails: the answer to send.
struct refused_request {
  net::http_response response;
};

class data_plane {
 public:
  data_plane(broker::broker& broker, device_authorizer& authorizer, const aws_http& http,
             storage::write_queue& writer, shadow::service& shadows)
      : broker_(broker), authorizer_(authorizer), http_(http), writer_(writer), shadows_(shadows) {}

  void install(net::http_router& router);

 private:
  void publish(net::http_request request, net::http_responder respond);
  void shadow_request(shadow::operation op, net::http_request request, net::http_responder respond);
  void list_named_shadows(net::http_request request, net::http_responder respond);
  void get_retained(net::http_request request, net::http_responder respond);
  void list_retained(net::http_request request, net::http_responder respond);
  void install_shadow_routes(net::http_router& router);

  // Who is asking: nullopt for a SigV4 caller (allowed everything), else the device of the
  // client certificate. Throws api_error when neither passes.
  std::optional<broker::client_identity> caller(const net::http_request& r) const;
  // A device may do `action` on one of `resources` ("thing/pi-1" ...), else 403.
  void require(const std::optional<broker::client_identity>& device, std::string_view action,
               std::initializer_list<std::pair<std::string_view, std::string>> resources);
  net::route_options body_policy(std::size_t max_body) const;

  broker::broker& broker_;
  device_authorizer& authorizer_;
  const aws_http& http_;
  storage::write_queue& writer_;
  shadow::service& shadows_;
};

}  // namespace nimbus::iot
