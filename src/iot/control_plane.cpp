#include "iot/control_plane.hpp"

#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace nimbus::iot {

namespace json = boost::json;
using net::http_request;

namespace {

const std::vector<std::string_view> iot_services = {"iot", "execute-api"};

[[noreturn]] void bad_request(std::string message) {
  throw api_error{400, "InvalidRequestException", std::move(message)};
}

[[noreturn]] void not_found(std::string message) {
  throw api_error{404, "ResourceNotFoundException", std::move(message)};
}

// The looked-up object, or ResourceNotFound with `message`.
template <class T>
T found(std::optional<T> object, std::string message) {
  if (!object) not_found(std::move(message));
  return std::move(*object);
}

json::object attributes_json(const registry::attribute_map& m) {
  json::object o;
  for (const auto& [k, v] : m) o[k] = v;
  return o;
}

// `{"attributes": {...}, "merge": bool}` as sent in attributePayload.
std::pair<std::optional<registry::attribute_map>, bool> attribute_payload(const json::object& o,
                                                                          std::string_view key) {
  const auto* payload = o.if_contains(key);
  if (payload == nullptr || payload->is_null()) return {std::nullopt, false};
  if (!payload->is_object()) bad_request(std::string(key) + " must be an object");
  const auto& p = payload->as_object();
  bool merge = false;
  if (const auto* m = p.if_contains("merge")) {
    if (!m->is_bool()) bad_request("merge must be a boolean");
    merge = m->get_bool();
  }
  const auto* attributes = p.if_contains("attributes");
  if (attributes == nullptr || attributes->is_null()) return {registry::attribute_map{}, merge};
  if (!attributes->is_object()) bad_request("attributes must be an object");
  registry::attribute_map out;
  for (const auto& [k, v] : attributes->as_object()) {
    if (!v.is_string()) bad_request("Attribute values must be strings");
    out[std::string(k)] = std::string(v.get_string());
  }
  return {std::move(out), merge};
}

std::int64_t int_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return registry::no_version;
  if (!v->is_int64() && !v->is_uint64()) bad_request(std::string(key) + " must be an integer");
  return v->to_number<std::int64_t>();
}

std::int64_t int_query(const http_request& r, std::string_view key) {
  auto v = r.query_param(key);
  if (!v) return registry::no_version;
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || end != v->data() + v->size())
    bad_request(std::string(key) + " must be an integer");
  return n;
}

bool bool_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return false;
  if (!v->is_bool()) bad_request(std::string(key) + " must be a boolean");
  return v->get_bool();
}

std::string query(const http_request& r, std::string_view key) {
  return r.query_param(key).value_or("");
}

std::int64_t version_id(const http_request& r) {
  const auto& text = r.param("policyVersionId");
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < 1)
    bad_request("Invalid policy version id: " + text);
  return n;
}

// A thing group or thing named in a body either by name or by ARN.
std::string name_or_arn(const json::object& o, std::string_view name_key,
                        std::string_view arn_key) {
  auto name = string_field(o, name_key);
  if (!name.empty()) return name;
  auto arn = string_field(o, arn_key);
  auto slash = arn.rfind('/');
  if (arn.empty() || slash == std::string::npos)
    bad_request("Either " + std::string(name_key) + " or " + std::string(arn_key) +
                " must be provided");
  return arn.substr(slash + 1);
}

// The principal header (certificate ARN) of the principal routes.
std::string principal_header(const http_request& r, std::string_view header) {
  auto v = r.header(header);
  if (!v || v->empty()) bad_request("Missing required header " + std::string(header));
  return *v;
}

// `tags` as the create calls and TagResource send them: [{"Key": k, "Value": v}, ...].
registry::tag_list tags_field(const json::object& o, bool required = false) {
  registry::tag_list out;
  const auto* tags = o.if_contains("tags");
  if (tags == nullptr || tags->is_null()) {
    if (required) bad_request("tags is required");
    return out;
  }
  if (!tags->is_array()) bad_request("tags must be a list");
  for (const auto& t : tags->as_array()) {
    if (!t.is_object()) bad_request("Each tag must be an object with Key and Value");
    const auto& tag = t.as_object();
    const auto* key = tag.if_contains("Key");
    const auto* value = tag.if_contains("Value");
    if (key == nullptr || !key->is_string()) bad_request("Each tag needs a Key (a string)");
    if (value != nullptr && !value->is_null() && !value->is_string())
      bad_request("A tag's Value must be a string");
    out.emplace_back(std::string(key->get_string()), value != nullptr && value->is_string()
                                                         ? std::string(value->get_string())
                                                         : std::string());
  }
  return out;
}

// RegisterCertificate(WithoutCA) with the request's status text, which the registry takes
// parsed. A request wrong in both its PEM and its status is refused for its PEM, as the
// registry checks that first.
std::pair<registry::certificate, storage::ticket> register_certificate(
    registry::registry& reg, std::string pem, std::string ca_pem, const std::string& status_text,
    bool with_ca) {
  auto status = registry::parse_certificate_status(status_text);
  if (!status) {
    if (!registry::parse_certificate_pem(pem))
      throw registry::error(registry::errc::certificate_validation,
                            "The certificate is not a valid PEM");
    bad_request("Invalid certificate status: " + status_text);
  }
  return reg.register_certificate(pem, ca_pem, *status, with_ca);
}

// A listing response: one JSON value per item under `key`, and the next page's token under
// `token_key` (nextToken, or nextMarker for the older calls) when there is one.
template <class T, class ToJson>
api_result listing(const registry::page<T>& page, std::string_view key, ToJson to_json,
                   std::string_view token_key = "nextToken") {
  json::array items;
  for (const auto& item : page.items) items.push_back(json::value(to_json(item)));
  json::object body{{key, std::move(items)}};
  if (!page.next_token.empty()) body[token_key] = page.next_token;
  return api_result{std::move(body)};
}

}  // namespace

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
}

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

void control_plane::install_certificates(net::http_router& router) {
  auto& reg = registry_;
  auto created = [&reg](const registry::certificate& c) {
    return json::object{{"certificateArn", reg.certificate_arn(c.id)},
                        {"certificateId", c.id},
                        {"certificatePem", c.info->pem}};
  };
  auto summary = [&reg](const registry::certificate& c) {
    return json::object{{"certificateArn", reg.certificate_arn(c.id)},
                        {"certificateId", c.id},
                        {"status", registry::to_string(c.status)},
                        {"certificateMode", registry::to_string(c.mode)},
                        {"creationDate", c.created}};
  };
  auto list_response = [summary](const registry::page<registry::certificate>& page) {
    return listing(
        page, "certificates", [&](const auto& c) { return summary(c); }, "nextMarker");
  };

  http_.route(
      router, "POST", "/keys-and-certificate", iot_services,
      [&reg, created](const http_request& r) {
        auto [keys, ticket] = reg.create_keys_and_certificate(bool_query(r, "setAsActive", false));
        auto body = created(keys.cert);
        body["keyPair"] =
            json::object{{"PublicKey", keys.public_key_pem}, {"PrivateKey", keys.private_key_pem}};
        return api_result{body, ticket};
      },
      /*offload=*/true);  // RSA-2048 key generation takes tens of milliseconds
  http_.route(
      router, "POST", "/certificates", iot_services, [&reg, created](const http_request& r) {
        auto body = parse_body(r);
        auto [cert, ticket] =
            reg.create_certificate_from_csr(string_field(body, "certificateSigningRequest", true),
                                            bool_query(r, "setAsActive", false));
        return api_result{created(cert), ticket};
      });
  auto registered = [&reg](const registry::certificate& c) {
    return json::object{{"certificateArn", reg.certificate_arn(c.id)}, {"certificateId", c.id}};
  };
  http_.route(router, "POST", "/certificate/register", iot_services,
              [&reg, registered](const http_request& r) {
                auto body = parse_body(r);
                std::string status = string_field(body, "status");
                if (status.empty())
                  status = bool_query(r, "setAsActive", false) ? "ACTIVE" : "INACTIVE";
                auto [cert, ticket] =
                    register_certificate(reg, string_field(body, "certificatePem", true),
                                         string_field(body, "caCertificatePem"), status, true);
                return api_result{registered(cert), ticket};
              });
  http_.route(router, "POST", "/certificate/register-no-ca", iot_services,
              [&reg, registered](const http_request& r) {
                auto body = parse_body(r);
                std::string status = string_field(body, "status");
                if (status.empty()) status = "INACTIVE";
                auto [cert, ticket] = register_certificate(
                    reg, string_field(body, "certificatePem", true), "", status, false);
                return api_result{registered(cert), ticket};
              });
  http_.route(router, "PUT", "/certificates/{certificateId}", iot_services,
              [&reg](const http_request& r) {
                auto text = r.query_param("newStatus");
                if (!text) bad_request("Missing required parameter newStatus");
                auto status = registry::parse_certificate_status(*text);
                if (!status)
                  bad_request("1 validation error detected: Value '" + *text +
                              "' at 'newStatus' failed to satisfy constraint: Member must satisfy "
                              "enum value set: [ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, "
                              "REGISTER_INACTIVE, PENDING_ACTIVATION]");
                return api_result{json::object{},
                                  reg.update_certificate(r.param("certificateId"), *status)};
              });
  http_.route(router, "GET", "/certificates/{certificateId}", iot_services,
              [&reg](const http_request& r) {
                auto c = found(reg.find_certificate(r.param("certificateId")),
                               "The certificate " + r.param("certificateId") + " does not exist");
                json::object d{{"certificateArn", reg.certificate_arn(c.id)},
                               {"certificateId", c.id},
                               {"status", registry::to_string(c.status)},
                               {"certificatePem", c.info->pem},
                               {"ownedBy", reg.account()},
                               {"creationDate", c.created},
                               {"lastModifiedDate", c.modified},
                               {"customerVersion", c.customer_version},
                               {"generationId", c.generation_id},
                               {"validity", json::object{{"notBefore", c.info->not_before},
                                                         {"notAfter", c.info->not_after}}},
                               {"certificateMode", registry::to_string(c.mode)}};
                if (!c.ca_id.empty()) d["caCertificateId"] = c.ca_id;
                return api_result{json::object{{"certificateDescription", d}}};
              });
  http_.route(
      router, "GET", "/certificates", iot_services, [&reg, list_response](const http_request& r) {
        return list_response(reg.list_certificates("", bool_query(r, "isAscendingOrder", false),
                                                   query(r, "marker"),
                                                   page_size(r, "pageSize", 25, 250)));
      });
  http_.route(router, "GET", "/certificates-by-ca/{caCertificateId}", iot_services,
              [&reg, list_response](const http_request& r) {
                found(reg.find_ca_certificate(r.param("caCertificateId")),
                      "The CA certificate " + r.param("caCertificateId") + " does not exist");
                return list_response(reg.list_certificates(
                    r.param("caCertificateId"), bool_query(r, "isAscendingOrder", false),
                    query(r, "marker"), page_size(r, "pageSize", 25, 250)));
              });
  http_.route(router, "DELETE", "/certificates/{certificateId}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{},
                                  reg.delete_certificate(r.param("certificateId"),
                                                         bool_query(r, "forceDelete", false))};
              });

  // CA certificates. Registering one proves possession of its key: a verification certificate
  // signed by it whose common name is this account's registration code.
  http_.route(router, "GET", "/registrationcode", iot_services, [this](const http_request&) {
    return api_result{json::object{{"registrationCode", registration_code_}}};
  });
  http_.route(router, "POST", "/cacertificate", iot_services, [this, &reg](const http_request& r) {
    auto body = parse_body(r);
    auto ca_pem = string_field(body, "caCertificate", true);
    auto verification = string_field(body, "verificationCertificate");
    auto mode = string_field(body, "certificateMode");
    if (!mode.empty() && mode != "DEFAULT" && mode != "SNI_ONLY")
      bad_request("certificateMode must be DEFAULT or SNI_ONLY");
    if (verification.empty() && mode != "SNI_ONLY")
      bad_request("verificationCertificate is required unless certificateMode is SNI_ONLY");
    if (!verification.empty()) {
      auto info = registry::parse_certificate_pem(verification);
      if (!info || !registry::is_signed_by(verification, ca_pem))
        throw api_error{400, "CertificateValidationException",
                        "The verification certificate is not signed by the CA certificate"};
      std::string common_name;
      for (const auto& [k, v] : info->subject)
        if (k == "CommonName") common_name = v;
      if (common_name != registration_code_)
        throw api_error{400, "RegistrationCodeValidationException",
                        "The verification certificate's common name is not the registration code"};
    }
    auto [ca, ticket] = reg.register_ca_certificate(ca_pem, bool_query(r, "setAsActive", false),
                                                    bool_query(r, "allowAutoRegistration", false),
                                                    tags_field(body));
    return api_result{
        json::object{{"certificateArn", reg.ca_certificate_arn(ca.id)}, {"certificateId", ca.id}},
        ticket};
  });
  http_.route(
      router, "GET", "/cacertificate/{caCertificateId}", iot_services,
      [&reg](const http_request& r) {
        auto c = found(reg.find_ca_certificate(r.param("caCertificateId")),
                       "The CA certificate " + r.param("caCertificateId") + " does not exist");
        json::object d{{"certificateArn", reg.ca_certificate_arn(c.id)},
                       {"certificateId", c.id},
                       {"status", registry::to_string(c.status)},
                       {"certificatePem", c.info->pem},
                       {"ownedBy", reg.account()},
                       {"creationDate", c.created},
                       {"lastModifiedDate", c.modified},
                       {"autoRegistrationStatus", c.auto_registration ? "ENABLE" : "DISABLE"},
                       {"customerVersion", c.customer_version},
                       {"generationId", c.generation_id},
                       {"validity", json::object{{"notBefore", c.info->not_before},
                                                 {"notAfter", c.info->not_after}}},
                       {"certificateMode", "DEFAULT"}};
        return api_result{json::object{{"certificateDescription", d}}};
      });
  http_.route(router, "GET", "/cacertificates", iot_services, [&reg](const http_request& r) {
    auto page = reg.list_ca_certificates(bool_query(r, "isAscendingOrder", false),
                                         query(r, "marker"), page_size(r, "pageSize", 25, 250));
    return listing(
        page, "certificates",
        [&](const auto& c) {
          return json::object{{"certificateArn", reg.ca_certificate_arn(c.id)},
                              {"certificateId", c.id},
                              {"status", registry::to_string(c.status)},
                              {"creationDate", c.created}};
        },
        "nextMarker");
  });
  http_.route(router, "PUT", "/cacertificate/{caCertificateId}", iot_services,
              [&reg](const http_request& r) {
                // Absent or empty: left as it is.
                std::optional<registry::ca_status> status;
                if (auto text = query(r, "newStatus"); !text.empty()) {
                  status = registry::parse_ca_status(text);
                  if (!status) bad_request("newStatus must be ACTIVE or INACTIVE");
                }
                std::optional<bool> auto_registration;
                if (auto text = query(r, "newAutoRegistrationStatus"); !text.empty()) {
                  if (text != "ENABLE" && text != "DISABLE")
                    bad_request("newAutoRegistrationStatus must be ENABLE or DISABLE");
                  auto_registration = text == "ENABLE";
                }
                return api_result{json::object{},
                                  reg.update_ca_certificate(r.param("caCertificateId"), status,
                                                            auto_registration)};
              });
  http_.route(
      router, "DELETE", "/cacertificate/{caCertificateId}", iot_services,
      [&reg](const http_request& r) {
        return api_result{json::object{}, reg.delete_ca_certificate(r.param("caCertificateId"))};
      });
}

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
