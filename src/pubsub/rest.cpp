#include "pubsub/rest.hpp"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/json_string.hpp"
#include "pubsub/names.hpp"

namespace nimbus::pubsub {

namespace {

namespace protobuf = google::protobuf;
namespace json_util = google::protobuf::util;

using authorizer = std::function<std::optional<net::http_response>(const net::http_request&)>;

constexpr std::size_t small_body = std::size_t{1} << 20;  // 1 MiB: every call but Publish
// Above the service's 10 MB request limit, so a 10-12 MB Publish gets the service's own
// INVALID_ARGUMENT; anything bigger is refused (413) before it is read.
constexpr std::size_t publish_body = std::size_t{12} << 20;

// The router's `{name}` captures one segment: a custom verb (":publish") arrives inside `{id}`.
constexpr std::string_view topics_path = "/v1/projects/{project}/topics";
constexpr std::string_view topic_path = "/v1/projects/{project}/topics/{id}";
constexpr std::string_view topic_subscriptions_path =
    "/v1/projects/{project}/topics/{id}/subscriptions";
constexpr std::string_view topic_snapshots_path = "/v1/projects/{project}/topics/{id}/snapshots";
constexpr std::string_view subscriptions_path = "/v1/projects/{project}/subscriptions";
constexpr std::string_view subscription_path = "/v1/projects/{project}/subscriptions/{id}";
constexpr std::string_view snapshots_path = "/v1/projects/{project}/snapshots";
constexpr std::string_view snapshot_path = "/v1/projects/{project}/snapshots/{id}";
// Everything else under a project: IAM on any resource, schemas, unknown paths.
constexpr std::string_view project_rest_path = "/v1/projects/{project}/*";

// ------------------------------------------------------------------------------------- JSON

// The request body as `message` (an empty body counts as {}), or INVALID_ARGUMENT in Google's
// words. Default options: unknown fields are refused; camelCase and original names, integer
// enums, "600s" durations, RFC 3339 times and base64 bytes are accepted.
status parse_json(const std::string& body, protobuf::Message& message) {
  if (body.empty()) return {};
  const auto parsed = json_util::JsonStringToMessage(body, &message);
  if (parsed.ok()) return {};
  return status::error(code::invalid_argument,
                       "Invalid JSON payload received. " + parsed.message().ToString());
}

// 200 with `message` in proto3 JSON (camelCase, int64 as strings, defaults left out: an empty
// message is {}).
net::http_response json_response(const protobuf::Message& message) {
  std::string body;
  const auto printed = json_util::MessageToJsonString(message, &body);
  if (!printed.ok())
    return rest_error(status::error(
        code::internal, "The response could not be encoded: " + printed.message().ToString()));
  return net::http_response{200, "application/json", {}, std::move(body)};
}

// The service's callback for one HTTP request: its response as JSON, or its status as an error.
template <class Response>
reply<Response> answer_with(net::http_responder respond) {
  return [respond = std::move(respond)](status outcome, Response response) {
    respond(outcome.ok() ? json_response(response) : rest_error(outcome));
  };
}

// ------------------------------------------------------------------------------------ binding

// What the path of a request names: the resource in full ("projects/p/topics/t"), or for a
// project-wide list the project ("projects/p"); and the request itself (query, body).
struct call_target {
  std::string name;
  const net::http_request& incoming;
};

// One REST binding's work: parse, bind the path, call the service, answer through `respond`.
using operation = std::function<void(service&, const call_target&, net::http_responder)>;

enum class body_kind { none, json };  // GET and DELETE carry no body; a body elsewhere is JSON

// A field that names the path's resource: taken from the path; a body naming another resource
// is refused rather than silently overridden.
status bind_field(std::string& field, const std::string& from_path, std::string_view field_name) {
  if (!field.empty() && field != from_path)
    return status::error(code::invalid_argument,
                         "The " + std::string(field_name) + " in the request body (" + field +
                             ") does not match the resource in the URL (" + from_path + ").");
  field = from_path;
  return {};
}

// A binder setting the string field `field` of a request to the path's resource.
template <class Request>
auto path_field(std::string* (Request::*field)(), std::string_view field_name) {
  return [field, field_name](Request& request, const call_target& at) {
    return bind_field(*(request.*field)(), at.name, field_name);
  };
}

// pageSize and pageToken from the query (both spellings; `$alt` and the rest are ignored).
template <class Request>
status bind_page(Request& request, const net::http_request& incoming) {
  auto size = incoming.query_param("pageSize");
  if (!size) size = incoming.query_param("page_size");
  if (size && !size->empty()) {
    std::int32_t value = 0;
    const char* const end = size->data() + size->size();
    const auto [stopped, failure] = std::from_chars(size->data(), end, value);
    if (failure != std::errc() || stopped != end)
      return status::error(code::invalid_argument,
                           "Invalid value at 'page_size' (TYPE_INT32), \"" + *size + "\"");
    request.set_page_size(value);
  }
  auto token = incoming.query_param("pageToken");
  if (!token) token = incoming.query_param("page_token");
  if (token) request.set_page_token(std::move(*token));
  return {};
}

// A binder for a List call: its parent field from the path, its page from the query.
template <class Request>
auto list_field(std::string* (Request::*parent)(), std::string_view field_name) {
  return [parent, field_name](Request& request, const call_target& at) {
    if (auto bound = bind_field(*(request.*parent)(), at.name, field_name); !bound.ok())
      return bound;
    return bind_page(request, at.incoming);
  };
}

// A unary call of the service: the request type comes from the service method's signature.
template <class Argument, class Response, class Binder>
operation unary(void (service::*call)(Argument, reply<Response>), body_kind body,
                Binder bind_path) {
  using request_type = std::remove_cvref_t<Argument>;
  return [call, body, bind_path](service& svc, const call_target& at, net::http_responder respond) {
    request_type request;
    if (body == body_kind::json) {
      if (auto parsed = parse_json(at.incoming.body, request); !parsed.ok())
        return respond(rest_error(parsed));
    }
    if (auto bound = bind_path(request, at); !bound.ok()) return respond(rest_error(bound));
    (svc.*call)(std::move(request), answer_with<Response>(std::move(respond)));
  };
}

// Pull, whose wait is bounded by X-Server-Timeout when the client sends one (gcloud sends 20
// and gives up after it).
operation pull() {
  return [](service& svc, const call_target& at, net::http_responder respond) {
    v1::PullRequest request;
    if (auto parsed = parse_json(at.incoming.body, request); !parsed.ok())
      return respond(rest_error(parsed));
    if (auto bound = bind_field(*request.mutable_subscription(), at.name, "subscription");
        !bound.ok())
      return respond(rest_error(bound));
    auto max_wait = std::chrono::milliseconds::max();
    if (auto timeout = at.incoming.header("x-server-timeout")) {
      double seconds = 0;
      const char* const end = timeout->data() + timeout->size();
      const auto [stopped, failure] = std::from_chars(timeout->data(), end, seconds);
      if (failure == std::errc() && stopped == end && seconds >= 0 && seconds < 1e6)
        max_wait = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    }
    svc.pull(request, max_wait, answer_with<v1::PullResponse>(std::move(respond)));
  };
}

struct binding {
  std::string_view method;
  std::string_view pattern;
  std::string_view verb;  // the custom verb after ':' in `{id}` ("" for none)
  resource_kind kind;     // what `{id}` names
  std::size_t max_body;
  operation run;
};

// The REST v1 table (reference §1): one row per binding, the only place routes are declared.
std::vector<binding> rest_bindings() {
  using enum body_kind;
  constexpr auto topic = resource_kind::topic;
  constexpr auto subscription = resource_kind::subscription;
  constexpr auto snapshot = resource_kind::snapshot;
  return {
      // Publisher
      {"PUT", topic_path, "", topic, small_body,
       unary(&service::create_topic, json, path_field(&v1::Topic::mutable_name, "name"))},
      {"PATCH", topic_path, "", topic, small_body,
       unary(&service::update_topic, json,
             [](v1::UpdateTopicRequest& request, const call_target& at) {
               return bind_field(*request.mutable_topic()->mutable_name(), at.name, "topic.name");
             })},
      {"POST", topic_path, "publish", topic, publish_body,
       unary(&service::publish, json, path_field(&v1::PublishRequest::mutable_topic, "topic"))},
      {"GET", topic_path, "", topic, small_body,
       unary(&service::get_topic, none, path_field(&v1::GetTopicRequest::mutable_topic, "topic"))},
      {"DELETE", topic_path, "", topic, small_body,
       unary(&service::delete_topic, none,
             path_field(&v1::DeleteTopicRequest::mutable_topic, "topic"))},
      {"GET", topics_path, "", topic, small_body,
       unary(&service::list_topics, none,
             list_field(&v1::ListTopicsRequest::mutable_project, "project"))},
      {"GET", topic_subscriptions_path, "", topic, small_body,
       unary(&service::list_topic_subscriptions, none,
             list_field(&v1::ListTopicSubscriptionsRequest::mutable_topic, "topic"))},
      {"GET", topic_snapshots_path, "", topic, small_body,
       unary(&service::list_topic_snapshots, none,
             list_field(&v1::ListTopicSnapshotsRequest::mutable_topic, "topic"))},
      {"POST", subscription_path, "detach", subscription, small_body,
       unary(&service::detach_subscription, json,
             path_field(&v1::DetachSubscriptionRequest::mutable_subscription, "subscription"))},

      // Subscriber
      {"PUT", subscription_path, "", subscription, small_body,
       unary(&service::create_subscription, json,
             path_field(&v1::Subscription::mutable_name, "name"))},
      {"GET", subscription_path, "", subscription, small_body,
       unary(&service::get_subscription, none,
             path_field(&v1::GetSubscriptionRequest::mutable_subscription, "subscription"))},
      {"PATCH", subscription_path, "", subscription, small_body,
       unary(&service::update_subscription, json,
             [](v1::UpdateSubscriptionRequest& request, const call_target& at) {
               return bind_field(*request.mutable_subscription()->mutable_name(), at.name,
                                 "subscription.name");
             })},
      {"DELETE", subscription_path, "", subscription, small_body,
       unary(&service::delete_subscription, none,
             path_field(&v1::DeleteSubscriptionRequest::mutable_subscription, "subscription"))},
      {"GET", subscriptions_path, "", subscription, small_body,
       unary(&service::list_subscriptions, none,
             list_field(&v1::ListSubscriptionsRequest::mutable_project, "project"))},
      {"POST", subscription_path, "pull", subscription, small_body, pull()},
      {"POST", subscription_path, "acknowledge", subscription, small_body,
       unary(&service::acknowledge, json,
             path_field(&v1::AcknowledgeRequest::mutable_subscription, "subscription"))},
      {"POST", subscription_path, "modifyAckDeadline", subscription, small_body,
       unary(&service::modify_ack_deadline, json,
             path_field(&v1::ModifyAckDeadlineRequest::mutable_subscription, "subscription"))},
      {"POST", subscription_path, "modifyPushConfig", subscription, small_body,
       unary(&service::modify_push_config, json,
             path_field(&v1::ModifyPushConfigRequest::mutable_subscription, "subscription"))},
      {"POST", subscription_path, "seek", subscription, small_body,
       unary(&service::seek, json,
             path_field(&v1::SeekRequest::mutable_subscription, "subscription"))},

      // Snapshots
      {"PUT", snapshot_path, "", snapshot, small_body,
       unary(&service::create_snapshot, json,
             path_field(&v1::CreateSnapshotRequest::mutable_name, "name"))},
      {"GET", snapshot_path, "", snapshot, small_body,
       unary(&service::get_snapshot, none,
             path_field(&v1::GetSnapshotRequest::mutable_snapshot, "snapshot"))},
      {"PATCH", snapshot_path, "", snapshot, small_body,
       unary(&service::update_snapshot, json,
             [](v1::UpdateSnapshotRequest& request, const call_target& at) {
               return bind_field(*request.mutable_snapshot()->mutable_name(), at.name,
                                 "snapshot.name");
             })},
      {"DELETE", snapshot_path, "", snapshot, small_body,
       unary(&service::delete_snapshot, none,
             path_field(&v1::DeleteSnapshotRequest::mutable_snapshot, "snapshot"))},
      {"GET", snapshots_path, "", snapshot, small_body,
       unary(&service::list_snapshots, none,
             list_field(&v1::ListSnapshotsRequest::mutable_project, "project"))},
  };
}

// ---------------------------------------------------------------------- IAM, schemas, unknown

bool is_iam_call(std::string_view method, std::string_view verb) {
  if (verb == "getIamPolicy") return method == "POST" || method == "GET" || method == "HEAD";
  return method == "POST" && (verb == "setIamPolicy" || verb == "testIamPermissions");
}

// Permissive IAM, as Nimbus has no Google IAM: every policy is empty, every permission held.
net::http_response iam_stub(std::string_view verb, const net::http_request& incoming) {
  if (verb == "getIamPolicy")
    return net::http_response{200, "application/json", {}, R"({"etag":"ACAB"})"};
  protobuf::Struct body;
  if (auto parsed = parse_json(incoming.body, body); !parsed.ok()) return rest_error(parsed);
  const auto& fields = body.fields();
  if (verb == "setIamPolicy") {
    // The policy as given (a policy is an object; anything else echoes as {}).
    const auto policy = fields.find("policy");
    if (policy == fields.end() || !policy->second.has_struct_value())
      return json_response(protobuf::Struct{});
    return json_response(policy->second.struct_value());
  }
  protobuf::Struct granted;  // testIamPermissions: all of them
  if (const auto permissions = fields.find("permissions"); permissions != fields.end())
    (*granted.mutable_fields())["permissions"] = permissions->second;
  return json_response(granted);
}

net::http_response unknown_method(const net::http_request& incoming) {
  return rest_error(status::error(
      code::not_found, "Method not found: " + incoming.method + " " + incoming.raw_path));
}

// The last segment's custom verb ("" for none), percent-decoded.
std::string verb_of(std::string_view raw_path) {
  const auto slash = raw_path.rfind('/');
  const std::string last =
      net::percent_decode(slash == std::string_view::npos ? raw_path : raw_path.substr(slash + 1));
  const auto colon = last.find(':');
  return colon == std::string::npos ? std::string() : last.substr(colon + 1);
}

// The first segment after /v1/projects/{project}/, percent-decoded.
std::string collection_of(std::string_view raw_path) {
  constexpr std::string_view prefix = "/v1/projects/";
  if (!raw_path.starts_with(prefix)) return {};
  std::string_view rest = raw_path.substr(prefix.size());
  const auto after_project = rest.find('/');
  if (after_project == std::string_view::npos) return {};
  rest = rest.substr(after_project + 1);
  return net::percent_decode(rest.substr(0, rest.find('/')));
}

// Whatever under a project the table does not bind.
void answer_other(const net::http_request& incoming, net::http_responder respond) {
  const std::string verb = verb_of(incoming.raw_path);
  if (is_iam_call(incoming.method, verb)) return respond(iam_stub(verb, incoming));
  const std::string first = collection_of(incoming.raw_path);
  if (first == "schemas" || first.starts_with("schemas:"))
    return respond(rest_error(status::error(
        code::unimplemented, "The schema service (" + incoming.method + " " + incoming.raw_path +
                                 ") is not implemented in Nimbus.")));
  respond(unknown_method(incoming));
}

}  // namespace

net::http_response rest_error(const status& s) {
  const unsigned http_code = http_status(s.what);
  std::string body = R"({"error":{"code":)";
  body += std::to_string(http_code);
  body += R"(,"message":)";
  core::append_json_string(body, s.message);
  body += R"(,"status":)";
  core::append_json_string(body, code_name(s.what));
  if (!s.reason.empty()) {
    body += R"(,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":)";
    core::append_json_string(body, s.reason);
    body += R"(,"domain":"pubsub.googleapis.com","metadata":{)";
    bool first = true;
    for (const auto& [key, value] : s.metadata) {
      if (!first) body.push_back(',');
      first = false;
      core::append_json_string(body, key);
      body.push_back(':');
      core::append_json_string(body, value);
    }
    body += "}}]";
  }
  body += "}}";
  return net::http_response{http_code, "application/json", {}, std::move(body)};
}

void add_rest_routes(net::http_router& router, service& svc, authorizer authorize) {
  auto table = std::make_shared<const std::vector<binding>>(rest_bindings());
  // One route per method and pattern; the verb inside `{id}` picks the binding.
  std::map<std::pair<std::string_view, std::string_view>, std::vector<const binding*>> routes;
  for (const binding& b : *table) routes[{b.method, b.pattern}].push_back(&b);

  for (auto& entry : routes) {
    const std::string_view pattern = entry.first.second;
    const bool has_id = pattern.find("{id}") != std::string_view::npos;
    const bool verb_in_id = pattern.ends_with("{id}");
    net::route_options options;
    options.precheck = authorize;  // before a body is read
    for (const binding* b : entry.second)
      options.max_body = std::max(options.max_body, b->max_body);
    router.add_async(
        std::string(entry.first.first), std::string(pattern),
        [&svc, table, members = std::move(entry.second), authorize, has_id, verb_in_id](
            net::http_request incoming, net::http_responder respond) {
          // Every request, with or without a body (the precheck only sees those with one).
          if (authorize) {
            if (auto refused = authorize(incoming)) return respond(std::move(*refused));
          }
          std::string id = has_id ? incoming.param("id") : std::string();
          std::string verb;
          if (verb_in_id) {
            if (const auto colon = id.find(':'); colon != std::string::npos) {
              verb = id.substr(colon + 1);
              id.resize(colon);
            }
          }
          for (const binding* b : members) {
            if (b->verb != verb) continue;
            const std::string& project = incoming.param("project");
            const call_target at{has_id ? full_name(b->kind, project, id) : "projects/" + project,
                                 incoming};
            return b->run(svc, at, std::move(respond));
          }
          if (verb_in_id && is_iam_call(incoming.method, verb))
            return respond(iam_stub(verb, incoming));
          respond(unknown_method(incoming));
        },
        std::move(options));
  }

  for (const char* method : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
    net::route_options options;
    options.max_body = small_body;
    options.precheck = authorize;
    router.add_async(
        method, std::string(project_rest_path),
        [authorize](net::http_request incoming, net::http_responder respond) {
          if (authorize) {
            if (auto refused = authorize(incoming)) return respond(std::move(*refused));
          }
          answer_other(incoming, std::move(respond));
        },
        std::move(options));
  }
}

}  // namespace nimbus::pubsub
