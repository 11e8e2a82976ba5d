#pragma once
// The AWS IoT control plane (`iot` REST-JSON API, 2015-05-28): things, thing types and groups,
// certificates and CA certificates, policies and their versions, attachments, topic rules, and
// DescribeEndpoint. Paths, fields and errors follow botocore's model so the aws CLI, boto3 and
// the JavaScript SDK work with only `--endpoint-url` changed.
#include <string>

#include "iot/aws_http.hpp"
#include "net/http_server.hpp"
#include "registry/registry.hpp"

namespace nimbus::rules {
class engine;
}

namespace nimbus::iot {

class control_plane {
 public:
  // `registration_code` is the account's proof-of-possession code for CA registration.
  control_plane(registry::registry& registry, rules::engine& rules_engine, const aws_http& http,
                std::string endpoint_host, std::string registration_code)
      : registry_(registry),
        rules_(rules_engine),
        http_(http),
        endpoint_host_(std::move(endpoint_host)),
        registration_code_(std::move(registration_code)) {}

  // Registers every route on `router`.
  void install(net::http_router& router);

 private:
  void install_things(net::http_router& router);
  void install_groups(net::http_router& router);
  void install_certificates(net::http_router& router);
  void install_policies(net::http_router& router);
  void install_tags(net::http_router& router);
  void install_rules(net::http_router& router);

  registry::registry& registry_;
  rules::engine& rules_;
  const aws_http& http_;
  std::string endpoint_host_;
  std::string registration_code_;
};

}  // namespace nimbus::iot
