// Topic rules: Create/Get/List/Replace/Delete/Enable/DisableTopicRule over the rules engine.
// A missing rule is 401 UnauthorizedException, as AWS answers it: the documented errors of
// Get/Replace/Delete/Enable/DisableTopicRule have no ResourceNotFoundException, so code written
// against AWS catches Unauthorized.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/page_token.hpp"
#include "iot/control_plane.hpp"
#include "iot/control_plane_fields.hpp"
#include "rules/engine.hpp"

namespace nimbus::iot {

using namespace fields;

namespace {

// The one place a rule refusal gets its HTTP status and AWS error type.
[[noreturn]] void refuse(const rules::rule_error& e) {
  using kind = rules::rule_error::kind;
  switch (e.what) {
    case kind::invalid_request:
      throw api_error{400, "InvalidRequestException", e.message};
    case kind::sql_parse:
      throw api_error{400, "SqlParseException", e.message};
    case kind::already_exists:
      throw api_error{409, "ResourceAlreadyExistsException", e.message};
    case kind::not_found:
      throw api_error{401, "UnauthorizedException", e.message};
    case kind::conflict:
      throw api_error{409, "ConflictingResourceUpdateException", e.message};
  }
  throw api_error{500, "InternalFailureException", e.message};  // not reached: all kinds above
}

// The ticket of the engine's write (the route answers once it is durable), or the refusal.
storage::ticket durable(std::variant<storage::ticket, rules::rule_error> outcome) {
  if (const auto* refused = std::get_if<rules::rule_error>(&outcome)) refuse(*refused);
  return std::get<storage::ticket>(outcome);
}

// The route's {ruleName}, checked as AWS checks the RuleName shape (^[a-zA-Z0-9_]+$, 1..128) on
// every call, so a name no rule can have is a 400 rather than "not found".
const std::string& rule_name(const http_request& r) {
  const auto& name = r.param("ruleName");
  auto constraint = [&name](std::string_view what) {
    bad_request("1 validation error detected: Value '" + name +
                "' at 'ruleName' failed to satisfy constraint: Member must " + std::string(what));
  };
  if (name.empty() || name.size() > 128) constraint("have length between 1 and 128");
  for (char c : name) {
    bool allowed =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!allowed) constraint("satisfy regular expression pattern: ^[a-zA-Z0-9_]+$");
  }
  return name;
}

// CreateTopicRule's and ReplaceTopicRule's body, the TopicRulePayload itself, as a rule.
rules::topic_rule payload_rule(const http_request& r) {
  auto parsed = rules::rule_from_payload(rule_name(r), parse_body(r));
  if (const auto* refused = std::get_if<rules::rule_error>(&parsed)) refuse(*refused);
  return std::move(std::get<rules::topic_rule>(parsed));
}

// ListTopicRules' page tokens, in the registry's form (core/page_token.hpp).
std::string decode_token(const std::string& token) {
  auto after = core::decode_page_token(token);
  if (!after) bad_request("The pagination token is invalid.");
  return std::move(*after);
}

}  // namespace

void control_plane::install_rules(net::http_router& router) {
  auto& engine = rules_;
  auto rule_arn = [&reg = registry_](const std::string& name) {
    return reg.arn_prefix() + "rule/" + name;
  };

  http_.route(router, "POST", "/rules/{ruleName}", iot_services, [&engine](const http_request& r) {
    return api_result{json::object{}, durable(engine.create(payload_rule(r)))};
  });
  http_.route(
      router, "GET", "/rules/{ruleName}", iot_services, [&engine, rule_arn](const http_request& r) {
        const auto& name = rule_name(r);
        auto rule = engine.get(name);
        if (!rule) refuse({rules::rule_error::kind::not_found, "Rule " + name + " does not exist"});
        return api_result{
            json::object{{"ruleArn", rule_arn(rule->name)}, {"rule", rules::rule_to_json(*rule)}}};
      });
  http_.route(router, "GET", "/rules", iot_services, [&engine, rule_arn](const http_request& r) {
    const auto max = page_size(r, "maxResults", 1000, 10000);
    std::optional<std::string> topic;
    if (auto text = query(r, "topic"); !text.empty()) topic = std::move(text);
    std::optional<bool> disabled;
    if (r.query_param("ruleDisabled")) disabled = bool_query(r, "ruleDisabled", false);
    // One more than a page: whether there is a next page, without a second call.
    registry::page<rules::topic_rule> page;
    page.items = engine.list(decode_token(query(r, "nextToken")), max + 1, topic, disabled);
    if (page.items.size() > max) {
      page.items.resize(max);
      page.next_token = core::encode_page_token(page.items.back().name);
    }
    return listing(page, "rules", [&](const rules::topic_rule& rule) {
      return json::object{{"ruleArn", rule_arn(rule.name)},
                          {"ruleName", rule.name},
                          {"topicPattern", rules::topic_pattern(rule)},
                          {"createdAt", rule.created_at},
                          {"ruleDisabled", rule.disabled}};
    });
  });
  http_.route(router, "PATCH", "/rules/{ruleName}", iot_services, [&engine](const http_request& r) {
    return api_result{json::object{}, durable(engine.replace(payload_rule(r)))};
  });
  http_.route(router, "DELETE", "/rules/{ruleName}", iot_services,
              [&engine](const http_request& r) {
                return api_result{json::object{}, durable(engine.remove(rule_name(r)))};
              });
  http_.route(
      router, "POST", "/rules/{ruleName}/enable", iot_services, [&engine](const http_request& r) {
        return api_result{json::object{}, durable(engine.set_disabled(rule_name(r), false))};
      });
  http_.route(router, "POST", "/rules/{ruleName}/disable", iot_services,
              [&engine](const http_request& r) {
                return api_result{json::object{}, durable(engine.set_disabled(rule_name(r), true))};
              });
}

}  // namespace nimbus::iot
