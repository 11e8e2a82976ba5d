// Things, thing types, thing groups and group membership, thing principals.
#include "iot/control_plane.hpp"
#include "iot/control_plane_fields.hpp"

namespace nimbus::iot {

using namespace fields;

void control_plane::install_things(net::http_router& router) {
  auto& reg = registry_;
  auto describe_thing = [&reg](const registry::thing& t) {
    json::object o{{"defaultClientId", t.name},
                   {"thingName", t.name},
                   {"thingId", t.id},
                   {"thingArn", reg.thing_arn(t.name)},
                   {"attributes", attributes_json(t.attributes)},
                   {"version", t.version}};
    if (!t.type_name.empty()) o["thingTypeName"] = t.type_name;
    if (!t.billing_group.empty()) o["billingGroupName"] = t.billing_group;
    return o;
  };

  http_.route(router, "GET", "/things", iot_services, [&reg](const http_request& r) {
    registry::thing_filter f{query(r, "attributeName"), query(r, "attributeValue"),
                             bool_query(r, "usePrefixAttributeValue", false),
                             query(r, "thingTypeName")};
    auto page = reg.list_things(f, query(r, "nextToken"), page_size(r, "maxResults", 50, 250));
    return listing(page, "things", [&](const registry::thing& t) {
      json::object o{{"thingName", t.name},
                     {"thingArn", reg.thing_arn(t.name)},
                     {"attributes", attributes_json(t.attributes)},
                     {"version", t.version}};
      if (!t.type_name.empty()) o["thingTypeName"] = t.type_name;
      return o;
    });
  });
  http_.route(router, "POST", "/things/{thingName}", iot_services, [&reg](const http_request& r) {
    auto body = parse_body(r);
    registry::registry::thing_request req;
    req.type_name = string_field(body, "thingTypeName");
    req.attributes = attribute_payload(body, "attributePayload").first;
    req.billing_group = string_field(body, "billingGroupName");
    auto [t, ticket] = reg.create_thing(r.param("thingName"), req);
    return api_result{
        json::object{{"thingName", t.name}, {"thingArn", reg.thing_arn(t.name)}, {"thingId", t.id}},
        ticket};
  });
  http_.route(router, "GET", "/things/{thingName}", iot_services,
              [&reg, describe_thing](const http_request& r) {
                auto t = found(reg.find_thing(r.param("thingName")),
                               "Thing " + r.param("thingName") + " cannot be found.");
                return api_result{describe_thing(t)};
              });
  http_.route(router, "PATCH", "/things/{thingName}", iot_services, [&reg](const http_request& r) {
    auto body = parse_body(r);
    registry::registry::thing_request req;
    req.type_name = string_field(body, "thingTypeName");
    std::tie(req.attributes, req.merge) = attribute_payload(body, "attributePayload");
    req.expected_version = int_field(body, "expectedVersion");
    req.remove_type = bool_field(body, "removeThingType");
    return api_result{json::object{}, reg.update_thing(r.param("thingName"), req)};
  });
  http_.route(router, "DELETE", "/things/{thingName}", iot_services, [&reg](const http_request& r) {
    return api_result{json::object{},
                      reg.delete_thing(r.param("thingName"), int_query(r, "expectedVersion"))};
  });

  // Principals of a thing, and things of a principal.
  http_.route(router, "PUT", "/things/{thingName}/principals", iot_services,
              [&reg](const http_request& r) {
                auto principal = principal_header(r, "x-amzn-principal");
                return api_result{json::object{},
                                  reg.attach_thing_principal(r.param("thingName"), principal)};
              });
  http_.route(router, "DELETE", "/things/{thingName}/principals", iot_services,
              [&reg](const http_request& r) {
                auto principal = principal_header(r, "x-amzn-principal");
                return api_result{json::object{},
                                  reg.detach_thing_principal(r.param("thingName"), principal)};
              });
  http_.route(router, "GET", "/things/{thingName}/principals", iot_services,
              [&reg](const http_request& r) {
                auto page = reg.list_thing_principals(r.param("thingName"), query(r, "nextToken"),
                                                      page_size(r, "maxResults", 25, 250));
                return listing(page, "principals", [&](const auto& p) { return p; });
              });
  http_.route(router, "GET", "/principals/things", iot_services, [&reg](const http_request& r) {
    auto page =
        reg.list_principal_things(principal_header(r, "x-amzn-principal"), query(r, "nextToken"),
                                  page_size(r, "maxResults", 25, 250));
    return listing(page, "things", [&](const auto& t) { return t; });
  });

  // Thing types.
  auto type_json = [&reg](const registry::thing_type& t) {
    json::object props;
    if (!t.description.empty()) props["thingTypeDescription"] = t.description;
    json::array searchable;
    for (const auto& a : t.searchable_attributes) searchable.emplace_back(a);
    props["searchableAttributes"] = searchable;
    json::object meta{{"deprecated", t.deprecated}, {"creationDate", t.created}};
    if (t.deprecated) meta["deprecationDate"] = t.deprecation_date;
    return json::object{{"thingTypeName", t.name},
                        {"thingTypeId", t.id},
                        {"thingTypeArn", reg.thing_type_arn(t.name)},
                        {"thingTypeProperties", props},
                        {"thingTypeMetadata", meta}};
  };
  http_.route(router, "POST", "/thing-types/{thingTypeName}", iot_services,
              [&reg](const http_request& r) {
                auto body = parse_body(r);
                std::string description;
                std::vector<std::string> searchable;
                if (const auto* p = body.if_contains("thingTypeProperties")) {
                  if (!p->is_object()) bad_request("thingTypeProperties must be an object");
                  description = string_field(p->as_object(), "thingTypeDescription");
                  if (const auto* s = p->as_object().if_contains("searchableAttributes")) {
                    if (!s->is_array()) bad_request("searchableAttributes must be a list");
                    for (const auto& a : s->as_array()) {
                      if (!a.is_string()) bad_request("searchableAttributes must be strings");
                      searchable.emplace_back(a.get_string());
                    }
                  }
                }
                auto [t, ticket] = reg.create_thing_type(r.param("thingTypeName"), description,
                                                         searchable, tags_field(body));
                return api_result{json::object{{"thingTypeName", t.name},
                                               {"thingTypeArn", reg.thing_type_arn(t.name)},
                                               {"thingTypeId", t.id}},
                                  ticket};
              });
  http_.route(router, "GET", "/thing-types/{thingTypeName}", iot_services,
              [&reg, type_json](const http_request& r) {
                auto t = found(reg.find_thing_type(r.param("thingTypeName")),
                               "Thing Type " + r.param("thingTypeName") + " cannot be found.");
                return api_result{type_json(t)};
              });
  http_.route(router, "GET", "/thing-types", iot_services,
              [&reg, type_json](const http_request& r) {
                auto page = reg.list_thing_types(query(r, "thingTypeName"), query(r, "nextToken"),
                                                 page_size(r, "maxResults", 50, 250));
                return listing(page, "thingTypes", [&](const auto& t) { return type_json(t); });
              });
  http_.route(router, "POST", "/thing-types/{thingTypeName}/deprecate", iot_services,
              [&reg](const http_request& r) {
                auto body = parse_body(r);
                return api_result{json::object{},
                                  reg.deprecate_thing_type(r.param("thingTypeName"),
                                                           bool_field(body, "undoDeprecate"))};
              });
  http_.route(router, "DELETE", "/thing-types/{thingTypeName}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{}, reg.delete_thing_type(r.param("thingTypeName"))};
              });
}

void control_plane::install_groups(net::http_router& router) {
  auto& reg = registry_;
  // The literal paths first: they would otherwise match `/thing-groups/{thingGroupName}`.
  http_.route(router, "PUT", "/thing-groups/addThingToThingGroup", iot_services,
              [&reg](const http_request& r) {
                auto body = parse_body(r);
                auto group = name_or_arn(body, "thingGroupName", "thingGroupArn");
                auto thing = name_or_arn(body, "thingName", "thingArn");
                return api_result{json::object{}, reg.add_thing_to_group(group, thing)};
              });
  http_.route(router, "PUT", "/thing-groups/removeThingFromThingGroup", iot_services,
              [&reg](const http_request& r) {
                auto body = parse_body(r);
                auto group = name_or_arn(body, "thingGroupName", "thingGroupArn");
                auto thing = name_or_arn(body, "thingName", "thingArn");
                return api_result{json::object{}, reg.remove_thing_from_group(group, thing)};
              });

  auto group_json = [&reg](const registry::thing_group& g) {
    json::object props{
        {"attributePayload", json::object{{"attributes", attributes_json(g.attributes)}}}};
    if (!g.description.empty()) props["thingGroupDescription"] = g.description;
    json::array roots;
    for (const auto& a : reg.ancestors(g))
      roots.push_back(
          json::object{{"groupName", a.name}, {"groupArn", reg.thing_group_arn(a.name)}});
    json::object meta{{"rootToParentThingGroups", roots}, {"creationDate", g.created}};
    if (!g.parent.empty()) meta["parentGroupName"] = g.parent;
    return json::object{{"thingGroupName", g.name},
                        {"thingGroupId", g.id},
                        {"thingGroupArn", reg.thing_group_arn(g.name)},
                        {"version", g.version},
                        {"thingGroupProperties", props},
                        {"thingGroupMetadata", meta}};
  };
  auto group_properties = [](const json::object& body) {
    std::optional<std::string> description;
    std::optional<registry::attribute_map> attributes;
    bool merge = false;
    if (const auto* p = body.if_contains("thingGroupProperties")) {
      if (!p->is_object()) bad_request("thingGroupProperties must be an object");
      if (p->as_object().contains("thingGroupDescription"))
        description = string_field(p->as_object(), "thingGroupDescription");
      std::tie(attributes, merge) = attribute_payload(p->as_object(), "attributePayload");
    }
    return std::tuple{description, attributes, merge};
  };

  http_.route(router, "POST", "/thing-groups/{thingGroupName}", iot_services,
              [&reg, group_properties](const http_request& r) {
                auto body = parse_body(r);
                auto [description, attributes, merge] = group_properties(body);
                auto [g, ticket] = reg.create_thing_group(
                    r.param("thingGroupName"), string_field(body, "parentGroupName"),
                    description.value_or(""), attributes.value_or(registry::attribute_map{}),
                    tags_field(body));
                return api_result{json::object{{"thingGroupName", g.name},
                                               {"thingGroupArn", reg.thing_group_arn(g.name)},
                                               {"thingGroupId", g.id}},
                                  ticket};
              });
  http_.route(router, "GET", "/thing-groups/{thingGroupName}", iot_services,
              [&reg, group_json](const http_request& r) {
                auto g = found(reg.find_thing_group(r.param("thingGroupName")),
                               "Thing Group " + r.param("thingGroupName") + " cannot be found.");
                return api_result{group_json(g)};
              });
  http_.route(router, "PATCH", "/thing-groups/{thingGroupName}", iot_services,
              [&reg, group_properties](const http_request& r) {
                auto body = parse_body(r);
                auto [description, attributes, merge] = group_properties(body);
                auto [version, ticket] =
                    reg.update_thing_group(r.param("thingGroupName"), description, attributes,
                                           merge, int_field(body, "expectedVersion"));
                return api_result{json::object{{"version", version}}, ticket};
              });
  http_.route(router, "DELETE", "/thing-groups/{thingGroupName}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{},
                                  reg.delete_thing_group(r.param("thingGroupName"),
                                                         int_query(r, "expectedVersion"))};
              });
  http_.route(router, "GET", "/thing-groups", iot_services, [&reg](const http_request& r) {
    auto page = reg.list_thing_groups(query(r, "parentGroup"), query(r, "namePrefixFilter"),
                                      bool_query(r, "recursive", false), query(r, "nextToken"),
                                      page_size(r, "maxResults", 50, 250));
    return listing(page, "thingGroups", [&](const auto& g) {
      return json::object{{"groupName", g.name}, {"groupArn", reg.thing_group_arn(g.name)}};
    });
  });
  http_.route(router, "GET", "/thing-groups/{thingGroupName}/things", iot_services,
              [&reg](const http_request& r) {
                auto page = reg.list_things_in_group(
                    r.param("thingGroupName"), bool_query(r, "recursive", false),
                    query(r, "nextToken"), page_size(r, "maxResults", 25, 250));
                return listing(page, "things", [&](const auto& t) { return t; });
              });
  http_.route(
      router, "GET", "/things/{thingName}/thing-groups", iot_services,
      [&reg](const http_request& r) {
        auto page = reg.list_groups_for_thing(r.param("thingName"), query(r, "nextToken"),
                                              page_size(r, "maxResults", 25, 250));
        return listing(page, "thingGroups", [&](const auto& g) {
          return json::object{{"groupName", g.name}, {"groupArn", reg.thing_group_arn(g.name)}};
        });
      });
}

}  // namespace nimbus::iot
