// iot-data's Device Shadow routes (GetThingShadow, UpdateThingShadow, DeleteThingShadow,
// ListNamedShadowsForThing) and retained message reads (GetRetainedMessage,
// ListRetainedMessages). The shadow work is the shadow service's, shared with MQTT; here are
// only authentication, the request's shape and AWS's HTTP errors.
#include <boost/json.hpp>

#include "core/base64.hpp"
#include "core/page_token.hpp"
#include "iot/data_plane.hpp"
#include "registry/model.hpp"

namespace nimbus::iot {

namespace json = boost::json;

namespace {

constexpr std::size_t max_shadow_page = 100;
constexpr std::size_t max_retained_page = 200;

std::string_view error_type_of(int code) {
  switch (code) {
    case 400:
      return "InvalidRequestException";
    case 401:
      return "UnauthorizedException";
    case 403:
      return "ForbiddenException";
    case 404:
      return "ResourceNotFoundException";
    case 405:
      return "MethodNotAllowedException";
    case 409:
      return "ConflictException";
    case 413:
      return "RequestEntityTooLargeException";
    case 415:
      return "UnsupportedDocumentEncodingException";
    case 429:
      return "ThrottlingException";
    case 503:
      return "ServiceUnavailableException";
    default:
      return "InternalFailureException";
  }
}

// A shadow refusal as the REST API sends it: the code as the status, AWS's error type, and the
// same {"code", "message"} document MQTT gets on /rejected.
net::http_response shadow_error(const shadow::rejection& r) {
  int status = r.code >= 400 && r.code <= 599 ? r.code : 500;
  json::object body{{"code", r.code}, {"message", r.message}};
  return aws_error_response(static_cast<unsigned>(status), error_type_of(r.code), body);
}

// Page tokens resume after the last name (or topic) returned, as the control plane's do.
std::string token_value(const net::http_request& r, std::string_view name) {
  auto after = core::decode_page_token(r.query_param(name).value_or(""));
  if (!after) throw api_error{400, "InvalidRequestException", "The nextToken is not valid"};
  return std::move(*after);
}

// The MQTT 5 user properties of a retained message as AWS returns them: base64 of a JSON array
// of {"key": "value"} objects.
std::string user_properties_field(const mqtt::properties& props) {
  json::array list;
  for (const auto& [key, value] : props.user) list.push_back(json::object{{key, value}});
  return core::base64_encode(json::serialize(list));
}

}  // namespace

void data_plane::install_shadow_routes(net::http_router& router) {
  auto guarded = [this](auto member) {
    return [this, member](net::http_request request, net::http_responder respond) {
      try {
        (this->*member)(std::move(request), respond);
      } catch (const api_error& e) {
        respond(error_response(e));
      } catch (const refused_request& refused) {
        respond(refused.response);
      }
    };
  };
  auto shadow_route = [this](shadow::operation op) {
    return [this, op](net::http_request request, net::http_responder respond) {
      try {
        shadow_request(op, std::move(request), respond);
      } catch (const api_error& e) {
        respond(error_response(e));
      } catch (const refused_request& refused) {
        respond(refused.response);
      }
    };
  };
  // An update request may be larger than the state it leaves (nulls, metadata-free echo):
  // room for the state limit twice over, and never less than a policy document's.
  const std::size_t max_update =
      std::max<std::size_t>(2 * shadows_.bounds().max_state_bytes, 64 * 1024);
  router.add_async("GET", "/things/{thingName}/shadow", shadow_route(shadow::operation::get),
                   body_policy(0));
  router.add_async("POST", "/things/{thingName}/shadow", shadow_route(shadow::operation::update),
                   body_policy(max_update));
  router.add_async("DELETE", "/things/{thingName}/shadow", shadow_route(shadow::operation::remove),
                   body_policy(0));
  router.add_async("GET", "/api/things/shadow/ListNamedShadowsForThing/{thingName}",
                   guarded(&data_plane::list_named_shadows), body_policy(0));
  router.add_async("GET", "/retainedMessage/{topic}", guarded(&data_plane::get_retained),
                   body_policy(0));
  router.add_async("GET", "/retainedMessage", guarded(&data_plane::list_retained), body_policy(0));
}

void data_plane::shadow_request(shadow::operation op, net::http_request r,
                                net::http_responder respond) {
  auto device = caller(r);
  shadow::request request;
  request.op = op;
  request.thing_name = r.param("thingName");
  request.shadow_name = r.query_param("name").value_or("");
  static constexpr std::string_view actions[] = {"iot:GetThingShadow", "iot:UpdateThingShadow",
                                                 "iot:DeleteThingShadow"};
  std::string_view action = actions[static_cast<int>(op)];
  if (request.shadow_name.empty())
    require(device, action, {{"thing", request.thing_name}});
  else
    require(
        device, action,
        {{"thing", request.thing_name + "/" + request.shadow_name}, {"thing", request.thing_name}});
  if (op == shadow::operation::update) request.payload = std::move(r.body);
  shadows_.handle(std::move(request), [respond = std::move(respond)](shadow::answer a) {
    if (auto* refused = std::get_if<shadow::rejection>(&a)) return respond(shadow_error(*refused));
    respond(json_response(200, std::get<json::object>(a)));
  });
}

void data_plane::list_named_shadows(net::http_request r, net::http_responder respond) {
  auto device = caller(r);
  const std::string& thing = r.param("thingName");
  require(device, "iot:ListNamedShadowsForThing", {{"thing", thing}});
  if (!registry::is_valid_thing_name(thing))
    throw api_error{400, "InvalidRequestException", "Invalid thing name: " + thing};
  std::size_t max = page_size(r, "pageSize", max_shadow_page, max_shadow_page);
  std::string after = token_value(r, "nextToken");
  // One more than asked: whether there is a next page.
  shadows_.list_named(thing, after, max + 1,
                      [respond = std::move(respond), max](std::vector<std::string> names) {
                        json::object body;
                        json::array results;
                        bool more = names.size() > max;
                        if (more) names.resize(max);
                        for (auto& n : names) results.emplace_back(n);
                        body["results"] = std::move(results);
                        if (more) body["nextToken"] = core::encode_page_token(names.back());
                        body["timestamp"] = std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count();
                        respond(json_response(200, body));
                      });
}

void data_plane::get_retained(net::http_request r, net::http_responder respond) {
  auto device = caller(r);
  const std::string& topic = r.param("topic");
  require(device, "iot:GetRetainedMessage", {{"topic", topic}});
  if (!mqtt::is_valid_topic_name(topic, broker_.topic_limits()))
    throw api_error{400, "InvalidRequestException", "The topic " + topic + " is not valid"};
  auto found = broker_.retained(topic);
  if (!found)
    throw api_error{404, "ResourceNotFoundException",
                    "No retained message exists for topic " + topic};
  const auto& msg = *found->msg;
  json::object body{{"topic", msg.topic},
                    {"payload", core::base64_encode(msg.payload)},
                    {"qos", msg.qos},
                    {"lastModifiedTime", found->modified_ms}};
  if (!msg.props.user.empty()) body["userProperties"] = user_properties_field(msg.props);
  respond(json_response(200, body));
}

void data_plane::list_retained(net::http_request r, net::http_responder respond) {
  auto device = caller(r);
  require(device, "iot:ListRetainedMessages", {{"topic", "*"}});
  std::size_t max = page_size(r, "maxResults", max_retained_page, max_retained_page);
  auto page = broker_.list_retained(token_value(r, "nextToken"), max + 1);
  bool more = page.size() > max;
  if (more) page.resize(max);
  json::array topics;
  for (const auto& entry : page)
    topics.push_back(json::object{{"topic", entry.msg->topic},
                                  {"payloadSize", entry.msg->payload.size()},
                                  {"qos", entry.msg->qos},
                                  {"lastModifiedTime", entry.modified_ms}});
  json::object body{{"retainedTopics", std::move(topics)}};
  if (more) body["nextToken"] = core::encode_page_token(page.back().msg->topic);
  respond(json_response(200, body));
}

}  // namespace nimbus::iot
