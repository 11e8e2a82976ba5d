// Policies, their versions and attachments, and tags.
#include "iot/control_plane.hpp"
#include "iot/control_plane_fields.hpp"

namespace nimbus::iot {

using namespace fields;

void control_plane::install_policies(net::http_router& router) {
  auto& reg = registry_;
  auto policy_summary = [&reg](const registry::policy_entry& p) {
    return json::object{{"policyName", p.name}, {"policyArn", reg.policy_arn(p.name)}};
  };
  auto policy_list = [policy_summary](const registry::page<registry::policy_entry>& page) {
    return listing(
        page, "policies", [&](const auto& p) { return policy_summary(p); }, "nextMarker");
  };
  auto find = [&reg](const std::string& name) {
    return found(reg.find_policy(name), "Policy not found (name=" + name + ")");
  };

  http_.route(
      router, "POST", "/policies/{policyName}", iot_services, [&reg](const http_request& r) {
        auto body = parse_body(r);
        auto document = string_field(body, "policyDocument", true);
        auto [p, ticket] = reg.create_policy(r.param("policyName"), document, tags_field(body));
        return api_result{json::object{{"policyName", p.name},
                                       {"policyArn", reg.policy_arn(p.name)},
                                       {"policyDocument", document},
                                       {"policyVersionId", "1"}},
                          ticket};
      });
  http_.route(router, "GET", "/policies/{policyName}", iot_services,
              [&reg, find](const http_request& r) {
                auto p = find(r.param("policyName"));
                return api_result{
                    json::object{{"policyName", p.name},
                                 {"policyArn", reg.policy_arn(p.name)},
                                 {"policyDocument", p.versions.at(p.default_version).document},
                                 {"defaultVersionId", std::to_string(p.default_version)},
                                 {"creationDate", p.created},
                                 {"lastModifiedDate", p.modified},
                                 {"generationId", p.generation_id}}};
              });
  http_.route(router, "GET", "/policies", iot_services, [&reg, policy_list](const http_request& r) {
    return policy_list(reg.list_policies(bool_query(r, "isAscendingOrder", false),
                                         query(r, "marker"), page_size(r, "pageSize", 25, 250)));
  });
  http_.route(router, "DELETE", "/policies/{policyName}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{}, reg.delete_policy(r.param("policyName"))};
              });

  // Versions.
  http_.route(router, "POST", "/policies/{policyName}/version", iot_services,
              [&reg](const http_request& r) {
                auto body = parse_body(r);
                auto document = string_field(body, "policyDocument", true);
                bool set_default = bool_query(r, "setAsDefault", false);
                auto [version, ticket] =
                    reg.create_policy_version(r.param("policyName"), document, set_default);
                return api_result{json::object{{"policyArn", reg.policy_arn(r.param("policyName"))},
                                               {"policyDocument", document},
                                               {"policyVersionId", std::to_string(version)},
                                               {"isDefaultVersion", set_default}},
                                  ticket};
              });
  http_.route(
      router, "GET", "/policies/{policyName}/version", iot_services, [find](const http_request& r) {
        auto p = find(r.param("policyName"));
        json::array versions;
        for (auto it = p.versions.rbegin(); it != p.versions.rend(); ++it)
          versions.push_back(json::object{{"versionId", std::to_string(it->first)},
                                          {"isDefaultVersion", it->first == p.default_version},
                                          {"createDate", it->second.created}});
        return api_result{json::object{{"policyVersions", versions}}};
      });
  http_.route(router, "GET", "/policies/{policyName}/version/{policyVersionId}", iot_services,
              [&reg, find](const http_request& r) {
                auto p = find(r.param("policyName"));
                auto id = version_id(r);
                auto it = p.versions.find(id);
                if (it == p.versions.end())
                  not_found("Policy version not found (name=" + p.name +
                            ", version=" + std::to_string(id) + ")");
                return api_result{json::object{{"policyArn", reg.policy_arn(p.name)},
                                               {"policyName", p.name},
                                               {"policyDocument", it->second.document},
                                               {"policyVersionId", std::to_string(id)},
                                               {"isDefaultVersion", id == p.default_version},
                                               {"creationDate", it->second.created},
                                               {"lastModifiedDate", p.modified},
                                               {"generationId", p.generation_id}}};
              });
  http_.route(router, "PATCH", "/policies/{policyName}/version/{policyVersionId}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{}, reg.set_default_policy_version(
                                                      r.param("policyName"), version_id(r))};
              });
  http_.route(router, "DELETE", "/policies/{policyName}/version/{policyVersionId}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{},
                                  reg.delete_policy_version(r.param("policyName"), version_id(r))};
              });

  // Attachments.
  http_.route(
      router, "PUT", "/target-policies/{policyName}", iot_services, [&reg](const http_request& r) {
        auto body = parse_body(r);
        return api_result{json::object{}, reg.attach_policy(r.param("policyName"),
                                                            string_field(body, "target", true))};
      });
  http_.route(
      router, "POST", "/target-policies/{policyName}", iot_services, [&reg](const http_request& r) {
        auto body = parse_body(r);
        return api_result{json::object{}, reg.detach_policy(r.param("policyName"),
                                                            string_field(body, "target", true))};
      });
  http_.route(router, "POST", "/attached-policies/{target}", iot_services,
              [&reg, policy_list](const http_request& r) {
                return policy_list(reg.list_attached_policies(
                    r.param("target"), bool_query(r, "recursive", false), query(r, "marker"),
                    page_size(r, "pageSize", 25, 250)));
              });
  http_.route(router, "POST", "/policy-targets/{policyName}", iot_services,
              [&reg](const http_request& r) {
                auto page = reg.list_targets_for_policy(r.param("policyName"), query(r, "marker"),
                                                        page_size(r, "pageSize", 25, 250));
                return listing(
                    page, "targets", [&](const auto& t) { return t; }, "nextMarker");
              });

  // The legacy principal-policy calls (certificates only), still in the CLI and boto3.
  http_.route(router, "PUT", "/principal-policies/{policyName}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{},
                                  reg.attach_policy(r.param("policyName"),
                                                    principal_header(r, "x-amzn-iot-principal"))};
              });
  http_.route(router, "DELETE", "/principal-policies/{policyName}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{},
                                  reg.detach_policy(r.param("policyName"),
                                                    principal_header(r, "x-amzn-iot-principal"))};
              });
  http_.route(router, "GET", "/principal-policies", iot_services,
              [&reg, policy_list](const http_request& r) {
                return policy_list(reg.list_attached_policies(
                    principal_header(r, "x-amzn-iot-principal"), false, query(r, "marker"),
                    page_size(r, "pageSize", 25, 250)));
              });
  http_.route(router, "GET", "/policy-principals", iot_services, [&reg](const http_request& r) {
    auto page =
        reg.list_targets_for_policy(principal_header(r, "x-amzn-iot-policy"), query(r, "marker"),
                                    page_size(r, "pageSize", 25, 250), true);
    return listing(
        page, "principals", [](const auto& t) { return t; }, "nextMarker");
  });
}

void control_plane::install_tags(net::http_router& router) {
  auto& reg = registry_;
  http_.route(router, "POST", "/tags", iot_services, [&reg](const http_request& r) {
    auto body = parse_body(r);
    auto arn = string_field(body, "resourceArn", true);
    return api_result{json::object{}, reg.tag_resource(arn, tags_field(body, true))};
  });
  http_.route(router, "POST", "/untag", iot_services, [&reg](const http_request& r) {
    auto body = parse_body(r);
    auto arn = string_field(body, "resourceArn", true);
    const auto* keys = body.if_contains("tagKeys");
    if (keys == nullptr || !keys->is_array()) bad_request("tagKeys must be a list");
    std::vector<std::string> names;
    for (const auto& k : keys->as_array()) {
      if (!k.is_string()) bad_request("tagKeys must be strings");
      names.emplace_back(k.get_string());
    }
    return api_result{json::object{}, reg.untag_resource(arn, names)};
  });
  http_.route(router, "GET", "/tags", iot_services, [&reg](const http_request& r) {
    auto arn = query(r, "resourceArn");
    if (arn.empty()) bad_request("resourceArn is required");
    return listing(reg.list_tags(arn, query(r, "nextToken"), 50), "tags", [](const auto& tag) {
      return json::object{{"Key", tag.first}, {"Value", tag.second}};
    });
  });
}

}  // namespace nimbus::iot
