#include "iot/control_plane_fields.hpp"

#include <charconv>

namespace nimbus::iot::fields {

[[noreturn]] void bad_request(std::string message) {
  throw api_error{400, "InvalidRequestException", std::move(message)};
}

[[noreturn]] void not_found(std::string message) {
  throw api_error{404, "ResourceNotFoundException", std::move(message)};
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
registry::tag_list tags_field(const json::object& o, bool required) {
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

}  // namespace nimbus::iot::fields
