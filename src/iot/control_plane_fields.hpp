#pragma once
// What the control plane's routes share (control_plane*.cpp only): reading request fields with
// AWS's validation messages, the refusals routes throw, and the shape of a listing.
#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iot/aws_http.hpp"
#include "net/http_server.hpp"
#include "registry/registry.hpp"

namespace nimbus::iot::fields {

namespace json = boost::json;
using net::http_request;

// The SigV4 signing names the control plane answers to.
inline const std::vector<std::string_view> iot_services = {"iot", "execute-api"};

[[noreturn]] void bad_request(std::string message);
[[noreturn]] void not_found(std::string message);

// The looked-up object, or ResourceNotFound with `message`.
template <class T>
T found(std::optional<T> object, std::string message) {
  if (!object) not_found(std::move(message));
  return std::move(*object);
}

json::object attributes_json(const registry::attribute_map& m);
// `{"attributes": {...}, "merge": bool}` as sent in attributePayload.
std::pair<std::optional<registry::attribute_map>, bool> attribute_payload(const json::object& o,
                                                                          std::string_view key);
// Optional integers (registry::no_version when absent); 400 when not an integer.
std::int64_t int_field(const json::object& o, std::string_view key);
std::int64_t int_query(const http_request& r, std::string_view key);
bool bool_field(const json::object& o, std::string_view key);
// A query parameter, "" when absent.
std::string query(const http_request& r, std::string_view key);
// The route's {policyVersionId}: a positive integer.
std::int64_t version_id(const http_request& r);
// A thing group or thing named in a body either by name or by ARN.
std::string name_or_arn(const json::object& o, std::string_view name_key, std::string_view arn_key);
// The principal header (certificate ARN) of the principal routes.
std::string principal_header(const http_request& r, std::string_view header);
// `tags` as the create calls and TagResource send them: [{"Key": k, "Value": v}, ...].
registry::tag_list tags_field(const json::object& o, bool required = false);

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

}  // namespace nimbus::iot::fields
