// The control plane's wiring: DescribeEndpoint, and the routes of each resource
// (control_plane_*.cpp).
#include "iot/control_plane.hpp"
#include "iot/control_plane_fields.hpp"

namespace nimbus::iot {

using namespace fields;

void control_plane::install(net::http_router& router) {
  http_.route(router, "GET", "/endpoint", iot_services, [this](const http_request& r) {
    auto type = query(r, "endpointType");
    if (!type.empty() && type != "iot:Data" && type != "iot:Data-ATS" &&
        type != "iot:CredentialProvider" && type != "iot:Jobs")
      bad_request("Endpoint type " + type + " is not valid");
    return api_result{json::object{{"endpointAddress", endpoint_host_}}};
  });
  install_things(router);
  install_groups(router);
  install_certificates(router);
  install_policies(router);
  install_tags(router);
  install_rules(router);
}

}  // namespace nimbus::iot
