#include "iot/aws_http.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <charconv>

#include "core/log.hpp"
#include "core/random.hpp"
#include "iot/sigv4.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::iot {

namespace json = boost::json;

namespace {

std::string request_id() {
  auto h = core::random_hex(16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

}  // namespace

net::http_response json_response(unsigned status, const json::value& body) {
  net::http_response r{status, "application/json", {}, json::serialize(body)};
  r.headers.emplace_back("x-amzn-RequestId", request_id());
  return r;
}

net::http_response aws_error_response(unsigned status, std::string_view type,
                                      const json::object& body) {
  auto r = json_response(status, body);
  r.headers.emplace_back("x-amzn-ErrorType", std::string(type));
  return r;
}

namespace {

[[noreturn]] void bad_request(std::string message) {
  throw api_error{400, "InvalidRequestException", std::move(message)};
}

// How AWS sends each registry refusal: its HTTP status and x-amzn-ErrorType.
struct aws_error {
  unsigned status;
  std::string_view type;
};

aws_error aws_error_of(registry::errc code) {
  using registry::errc;
  switch (code) {
    case errc::invalid_request:
      return {400, "InvalidRequestException"};
    case errc::not_found:
      return {404, "ResourceNotFoundException"};
    case errc::already_exists:
      return {409, "ResourceAlreadyExistsException"};
    case errc::version_conflict:
      return {409, "VersionConflictException"};
    case errc::delete_conflict:
      return {409, "DeleteConflictException"};
    case errc::versions_limit_exceeded:
      return {409, "VersionsLimitExceededException"};
    case errc::limit_exceeded:
      return {410, "LimitExceededException"};
    case errc::malformed_policy:
      return {400, "MalformedPolicyException"};
    case errc::certificate_validation:
      return {400, "CertificateValidationException"};
    case errc::certificate_state:
      return {406, "CertificateStateException"};
    case errc::unavailable:
      return {503, "ServiceUnavailableException"};
  }
  return {500, "InternalFailureException"};  // not reached: every code is mapped above
}

}  // namespace

net::http_response error_response(const api_error& e) {
  return aws_error_response(e.status, e.type, json::object{{"message", e.message}});
}

net::http_response error_response(const registry::error& e) {
  json::object body{{"message", e.message}};
  if (!e.resource_id.empty()) body["resourceId"] = e.resource_id;
  if (!e.resource_arn.empty()) body["resourceArn"] = e.resource_arn;
  const auto mapped = aws_error_of(e.code);
  return aws_error_response(mapped.status, mapped.type, body);
}

bool aws_http::has_signature(const net::http_request& request) {
  return request.header("authorization").has_value() ||
         request.query.find("X-Amz-Signature=") != std::string::npos;
}

std::optional<net::http_response> aws_http::authenticate(
    const net::http_request& request, const std::vector<std::string_view>& services) const {
  if (is_session(request)) return std::nullopt;
  signed_request signed_req{request.method, request.target, request.headers, request.body};
  auto result = verify_sigv4(signed_req, our_secret(), std::chrono::system_clock::now());
  if (!result.ok) {
    spdlog::info("api_request_refused method={} path=\"{}\" remote={} error={} detail=\"{}\"",
                 request.method, request.raw_path, request.remote_address, result.error_type,
                 result.message);
    return error_response(api_error{result.status, result.error_type, result.message});
  }
  note_region(result.region);
  for (auto s : services)
    if (result.service == s) return std::nullopt;
  return error_response(api_error{
      403, "InvalidSignatureException",
      "Credential should be scoped to correct service: '" + std::string(services.front()) + "'"});
}

secret_lookup aws_http::our_secret() const {
  return [this](std::string_view key) -> std::optional<std::string> {
    if (key == credentials_.access_key_id) return credentials_.secret_access_key;
    return std::nullopt;
  };
}

void aws_http::note_region(const std::string& region) const {
  if (region.empty() || region == region_) return;
  {
    std::lock_guard lock(regions_mutex_);
    if (foreign_regions_.size() >= 64 || !foreign_regions_.insert(region).second) return;
  }
  spdlog::warn(
      "sigv4_foreign_region region={} server_region={} hint=\"accepted, but ARNs and policies "
      "use {}: start nimbus with --region {} to match your aws configuration\"",
      region, region_, region_, region);
}

net::route_options aws_http::body_policy(std::size_t max_body, bool certificates) const {
  net::route_options options;
  options.max_body = max_body;
  options.precheck =
      [this, certificates](const net::http_request& head) -> std::optional<net::http_response> {
    if (certificates && head.certificate && !has_signature(head)) return std::nullopt;
    if (is_session(head)) return std::nullopt;
    // Everything but the signature itself, which covers the body.
    signed_request signed_head{head.method, head.target, head.headers, {}};
    auto result = verify_sigv4(signed_head, our_secret(), std::chrono::system_clock::now(),
                               std::chrono::minutes(15), sigv4_check::before_body);
    if (!result.ok)
      return error_response(api_error{result.status, result.error_type, result.message});
    return std::nullopt;
  };
  return options;
}

void aws_http::answer_unknown_routes(net::http_router& router) const {
  // AWS SDKs read the error code from x-amzn-ErrorType; other clients see the same JSON.
  router.set_error_responder([](unsigned status, std::string_view message) {
    std::string_view type = status == 404   ? "UnknownOperationException"
                            : status == 405 ? "MethodNotAllowedException"
                                            : "InternalFailureException";
    return net::http_response{status,
                              "application/json",
                              {{"x-amzn-ErrorType", std::string(type)}},
                              json::serialize(json::object{{"message", message}})};
  });
  router.set_fallback(
      [this](net::http_request request, net::http_responder respond) {
        if (!has_signature(request))
          return respond({404, "application/json", {}, R"({"message":"not found"})"});
        spdlog::info("api_not_implemented method={} path=\"{}\"", request.method, request.raw_path);
        respond(error_response(api_error{501, "NotImplementedException",
                                         request.method + " " + request.raw_path +
                                             " is not implemented in Nimbus " + version_}));
      },
      body_policy(control_plane_max_body));
}

void aws_http::respond_when_durable(api_result result, net::http_responder respond) const {
  if (result.ticket.is_none()) return respond(json_response(result.status, result.body));
  const auto ticket = result.ticket;
  auto body = std::make_shared<api_result>(std::move(result));
  // Registered after the registry's own callback for this ticket (registry::mutate registers it
  // before the operation returns), which puts the change in the registry's committed view; the
  // write queue runs callbacks in registration order, so an answered client reads its change.
  writer_.when_durable(ticket, [this, ticket, body, respond = std::move(respond)] {
    if (writer_.failed(ticket)) {
      spdlog::error("api_write_failed ticket={}", ticket.sequence());
      return respond(error_response(
          api_error{500, "InternalFailureException", "The change could not be stored"}));
    }
    respond(json_response(body->status, body->body));
  });
}

void aws_http::route(net::http_router& router, std::string method, std::string pattern,
                     const std::vector<std::string_view>& services, api_operation operation,
                     bool offload) const {
  std::vector<std::string_view> accepted(services);
  auto shared = std::make_shared<const api_operation>(std::move(operation));
  router.add_async(
      std::move(method), std::move(pattern),
      [this, accepted, offload, shared](net::http_request request, net::http_responder respond) {
        if (auto refused = authenticate(request, accepted)) return respond(std::move(*refused));
        if (!offload) return run(*shared, request, std::move(respond));
        boost::asio::post(workers_, [this, shared, request = std::move(request),
                                     respond = std::move(respond)]() mutable {
          run(*shared, request, std::move(respond));
        });
      },
      body_policy(control_plane_max_body));
}

void aws_http::run(const api_operation& operation, const net::http_request& request,
                   net::http_responder respond) const {
  api_result result;
  try {
    result = operation(request);
  } catch (const registry::error& e) {
    return respond(error_response(e));
  } catch (const api_error& e) {
    return respond(error_response(e));
  } catch (const std::exception& e) {
    core::report_bug("api_operation", fmt::format("path={} error={}", request.raw_path, e.what()));
    return respond(error_response(api_error{500, "InternalFailureException", "Internal failure"}));
  }
  respond_when_durable(std::move(result), std::move(respond));
}

json::object parse_body(const net::http_request& request) {
  if (request.body.empty()) return {};
  boost::system::error_code ec;
  json::value v = json::parse(request.body, ec);
  if (ec) bad_request("The request body is not valid JSON: " + ec.message());
  if (!v.is_object()) bad_request("The request body must be a JSON object");
  return std::move(v.as_object());
}

std::string string_field(const json::object& o, std::string_view key, bool required) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) bad_request("Missing required field: " + std::string(key));
    return {};
  }
  if (!v->is_string()) bad_request("Field " + std::string(key) + " must be a string");
  return std::string(v->get_string());
}

bool bool_query(const net::http_request& request, std::string_view name, bool fallback) {
  auto v = request.query_param(name);
  if (!v) return fallback;
  if (*v == "true") return true;
  if (*v == "false") return false;
  bad_request("Query parameter " + std::string(name) + " must be true or false");
}

std::size_t page_size(const net::http_request& request, std::string_view name, std::size_t fallback,
                      std::size_t max) {
  auto v = request.query_param(name);
  if (!v) return fallback;
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || end != v->data() + v->size() || n < 1 || n > max)
    bad_request("1 validation error detected: Value '" + *v + "' at '" + std::string(name) +
                "' failed to satisfy constraint: Member must have value between 1 and " +
                std::to_string(max));
  return n;
}

}  // namespace nimbus::iot
