#include "iot/data_plane.hpp"

#include <boost/json.hpp>
#include <charconv>

#include "core/base64.hpp"
#include "core/random.hpp"
#include "mqtt/topic.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::iot {

namespace json = boost::json;

namespace {

[[noreturn]] void bad_request(std::string message) {
  throw api_error{400, "InvalidRequestException", std::move(message)};
}

// A base64 header (MQTT 5 correlation data, user properties), or 400.
std::string decoded_header(std::string_view text, std::string_view what) {
  std::optional<std::string> bytes;
  if (text.size() <= 64 * 1024) bytes = core::base64_decode(text);
  if (!bytes) bad_request(std::string(what) + " is not base64");
  return std::move(*bytes);
}

// The MQTT 5 extras AWS carries in headers and query parameters.
void apply_mqtt5_fields(const net::http_request& r, mqtt::properties& props) {
  if (auto v = r.query_param("contentType")) props.content_type = *v;
  if (auto v = r.query_param("responseTopic")) {
    if (!mqtt::is_valid_topic_name(*v)) bad_request("responseTopic is not a valid topic name");
    props.response_topic = *v;
  }
  if (auto h = r.header("x-amz-mqtt5-payload-format-indicator")) {
    if (*h == "UTF8_DATA")
      props.payload_format_indicator = 1;
    else if (*h != "UNSPECIFIED_BYTES")
      bad_request("x-amz-mqtt5-payload-format-indicator must be UNSPECIFIED_BYTES or UTF8_DATA");
  }
  if (auto h = r.header("x-amz-mqtt5-correlation-data"))
    props.correlation_data = decoded_header(*h, "x-amz-mqtt5-correlation-data");
  if (auto h = r.header("x-amz-mqtt5-user-properties")) {
    boost::system::error_code ec;
    auto parsed = json::parse(decoded_header(*h, "x-amz-mqtt5-user-properties"), ec);
    if (ec || !parsed.is_array())
      bad_request("x-amz-mqtt5-user-properties must be a base64 JSON array of objects");
    for (const auto& item : parsed.as_array()) {
      if (!item.is_object()) bad_request("x-amz-mqtt5-user-properties entries must be objects");
      for (const auto& [k, v] : item.as_object()) {
        if (!v.is_string()) bad_request("x-amz-mqtt5-user-properties values must be strings");
        props.user.emplace_back(std::string(k), std::string(v.get_string()));
      }
    }
  }
}

net::http_response ok_response() {
  json::object body{{"message", "OK"}, {"traceId", core::random_hex(16)}};
  return {200, "application/json", {}, json::serialize(body)};
}

}  // namespace

void data_plane::install(net::http_router& router) {
  router.add_async(
      "POST", "/topics/{topic}",
      [this](net::http_request request, net::http_responder respond) {
        try {
          publish(std::move(request), respond);
        } catch (const api_error& e) {
          respond(error_response(e));
        }
      },
      body_policy(broker_.settings().max_packet_size));  // the payload of one MQTT message
  install_shadow_routes(router);
}

std::optional<broker::client_identity> data_plane::caller(const net::http_request& r) const {
  if (aws_http::has_signature(r) || !r.certificate) {
    if (auto refused = http_.authenticate(r, {"iotdata", "iot"})) throw refused_request{*refused};
    return std::nullopt;
  }
  // A device with its client certificate: the same checks as an MQTT client.
  if (auto refusal = authorizer_.certificate_refusal(r.certificate->sha256_hex); !refusal.empty())
    throw api_error{403, "ForbiddenException", "Forbidden: " + refusal};
  broker::client_identity device;
  device.transport = "https";
  device.remote_address = r.remote_address;
  device.certificate = std::make_shared<const net::peer_certificate>(*r.certificate);
  return device;
}

void data_plane::require(
    const std::optional<broker::client_identity>& device, std::string_view action,
    std::initializer_list<std::pair<std::string_view, std::string>> resources) {
  if (!device) return;
  // Any explicit Deny refuses (a Deny on a named shadow beats an Allow on its thing); else any
  // Allow allows. allowed() then logs and counts the refusal on the resource that decided it.
  const std::pair<std::string_view, std::string>* decisive = nullptr;
  bool allow = false;
  for (const auto& r : resources) {
    auto d = authorizer_.decide(*device, action, authorizer_.resource_arn(r.first, r.second));
    if (d == policy::decision::deny) {
      decisive = &r;
      allow = false;
      break;
    }
    if (policy::allowed(d)) allow = true;
  }
  if (allow) return;
  if (decisive == nullptr) decisive = resources.begin();
  authorizer_.allowed(*device, action, decisive->first, decisive->second);
  throw api_error{403, "ForbiddenException", "Forbidden"};
}

net::route_options data_plane::body_policy(std::size_t max_body) const {
  // From a caller who signs or uses a device certificate; a certificate that may not connect
  // may not make us read its body either.
  auto options = http_.body_policy(max_body, true);
  options.precheck = [this, signed_or_certificate = std::move(options.precheck)](
                         const net::http_request& head) -> std::optional<net::http_response> {
    if (head.certificate && !aws_http::has_signature(head)) {
      auto refusal = authorizer_.certificate_refusal(head.certificate->sha256_hex);
      if (!refusal.empty())
        return error_response(api_error{403, "ForbiddenException", "Forbidden: " + refusal});
    }
    return signed_or_certificate(head);
  };
  return options;
}

void data_plane::publish(net::http_request r, net::http_responder respond) {
  const std::string& topic = r.param("topic");
  std::optional<broker::client_identity> device;
  try {
    device = caller(r);
  } catch (const refused_request& refused) {
    return respond(refused.response);
  }

  std::uint8_t qos = 0;
  if (auto q = r.query_param("qos")) {
    if (*q == "1")
      qos = 1;
    else if (*q != "0")
      bad_request("qos must be 0 or 1");
  }
  bool retain = bool_query(r, "retain", false);
  if (!mqtt::is_valid_topic_name(topic, broker_.topic_limits()))
    bad_request("The topic " + topic + " is not a valid topic name");
  if (broker_.is_reserved_topic(topic))
    throw api_error{403, "ForbiddenException", "Clients may not publish to " + topic};
  if (device && !authorizer_.may_publish(*device, topic, retain))
    throw api_error{403, "ForbiddenException", "Forbidden"};

  if (r.body.size() > broker_.settings().max_packet_size)
    throw api_error{413, "RequestEntityTooLargeException",
                    "The payload exceeds the maximum message size of " +
                        std::to_string(broker_.settings().max_packet_size) + " bytes"};
  auto msg = std::make_shared<broker::message>();
  msg->topic = topic;
  msg->payload = std::move(r.body);
  msg->qos = qos;
  msg->retain = retain;
  apply_mqtt5_fields(r, msg->props);
  if (auto v = r.query_param("messageExpiry")) {
    std::uint32_t seconds = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), seconds);
    if (ec != std::errc() || end != v->data() + v->size())
      bad_request("messageExpiry must be a number of seconds");
    msg->props.message_expiry_interval = seconds;
  }
  msg->expires_at = broker_.expiry_for(msg->props);
  msg->props.message_expiry_interval.reset();
  msg->publisher = "n/a";  // AWS: clientid() is n/a for HTTP publishes
  // The writes this publish makes (one per persistent subscriber) lie between these two.
  const auto floor = writer_.committed();
  auto routed = broker_.publish(std::move(msg), nullptr, device ? &*device : nullptr);
  if (routed.quota_exceeded)
    throw api_error{429, "ThrottlingException",
                    "Retained message refused: the server holds max_retained_messages or "
                    "max_retained_bytes"};
  if (qos == 0 || routed.durable_ticket.is_none()) return respond(ok_response());
  const auto ticket = routed.durable_ticket;
  writer_.when_durable(ticket, [this, floor, ticket, respond] {
    if (writer_.failed_between(floor, ticket))
      return respond(error_response(
          api_error{500, "InternalFailureException", "The message could not be stored"}));
    respond(ok_response());
  });
}

}  // namespace nimbus::iot
