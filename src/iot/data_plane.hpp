#pragma once
// The device-facing HTTPS publish of AWS IoT's data plane: POST /topics/{topic}?qos=&retain=,
// the raw body as payload. Devices authenticate with their client certificate (checked against
// the same policies as MQTT); API users sign with SigV4 (`iotdata`).
#include "broker/broker.hpp"
#include "iot/aws_http.hpp"
#include "iot/device_authorizer.hpp"
#include "net/http_server.hpp"

namespace nimbus::iot {

class data_plane {
 public:
  data_plane(broker::broker& broker, device_authorizer& authorizer, const aws_http& http,
             storage::write_queue& writer)
      : broker_(broker), authorizer_(authorizer), http_(http), writer_(writer) {}

  void install(net::http_router& router);

 private:
  void publish(net::http_request request, net::http_responder respond);
  net::route_options body_policy() const;

  broker::broker& broker_;
  device_authorizer& authorizer_;
  const aws_http& http_;
  storage::write_queue& writer_;
};

}  // namespace nimbus::iot
