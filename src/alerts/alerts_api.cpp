// /api/alert-rules and /api/alerts over the alerts service (alerts_api.hpp).
#include "alerts/alerts_api.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <memory>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "alerts/alert_json.hpp"
#include "core/page_token.hpp"
#include "net/field_error.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

constexpr std::string_view rules_path = "/api/alert-rules";
constexpr std::string_view alerts_path = "/api/alerts";
constexpr std::size_t max_note_bytes = 1024;
constexpr std::size_t max_limit = 1000;
constexpr std::size_t default_limit = 100;

// ------------------------------------------------------------------------------- answers

net::http_response json_response(unsigned status, const json::value& body) {
  return net::http_response{status, "application/json", {}, to_text(body) + "\n"};
}

net::http_response error_response(unsigned status, std::string_view field,
                                  std::string_view message) {
  return net::field_error(status, field, message);
}

net::http_response refusal_response(const refusal& r) {
  switch (r.kind) {
    case refusal_kind::invalid:
      return error_response(400, r.field, r.message);
    case refusal_kind::not_found:
      return error_response(404, "", r.message);  // the URL names what is missing
    case refusal_kind::already_exists:
    case refusal_kind::conflict:
      return error_response(409, r.field, r.message);
    case refusal_kind::unavailable: {
      auto response = error_response(503, r.field, r.message);
      response.headers.emplace_back("Retry-After", "1");
      return response;
    }
    case refusal_kind::failed:
      break;
  }
  return error_response(500, r.field, r.message);
}

json::array strings(const std::vector<std::string>& values) {
  json::array out;
  for (const auto& v : values) out.emplace_back(v);
  return out;
}

// The rule as to_json writes it, and its status.
json::object rule_json(const rule_view& v) {
  json::error_code ec;
  json::value parsed = json::parse(to_json(v.r), ec);
  json::object out = !ec && parsed.is_object() ? std::move(parsed.get_object()) : json::object();
  json::object status;
  status["enabled"] = v.r.enabled;
  status["unknown_devices"] = strings(v.unknown_devices);
  status["unknown_groups"] = strings(v.unknown_groups);
  status["states"] = v.states;
  status["created_at"] = format_time_ms(v.created_ms);
  status["updated_at"] = format_time_ms(v.updated_ms);
  json::object notifications;
  notifications["sent"] = v.notifications.sent;
  notifications["failed"] = v.notifications.failed;
  notifications["last_error"] = v.notifications.last_error;
  status["notifications"] = std::move(notifications);
  out["status"] = std::move(status);
  return out;
}

// Answers a rule operation: the rule (201 + Location when created), or the refusal.
service::rule_done rule_answer(net::http_responder respond, bool may_create) {
  return [respond = std::move(respond), may_create](result<rule_view> answer) {
    if (const auto* no = std::get_if<refusal>(&answer)) return respond(refusal_response(*no));
    const auto& view = std::get<rule_view>(answer);
    const bool is_new = may_create && view.created;
    auto response = json_response(is_new ? 201 : 200, rule_json(view));
    if (is_new)
      response.headers.emplace_back("Location", fmt::format("{}/{}", rules_path, view.r.name));
    respond(std::move(response));
  };
}

std::function<void(result<alert>)> alert_answer(net::http_responder respond) {
  return [respond = std::move(respond)](result<alert> answer) {
    if (const auto* no = std::get_if<refusal>(&answer)) return respond(refusal_response(*no));
    respond(json_response(200, alert_json(std::get<alert>(answer), true)));
  };
}

// ------------------------------------------------------------------------------ requests

// A rule's body. With `url_name` (PUT), "name" must be it or absent. `secret_omitted`: per
// notification, whether its object had no "secret".
std::variant<rule, refusal> read_rule(std::string_view body, const std::string* url_name,
                                      std::vector<bool>& secret_omitted) {
  json::error_code ec;
  json::value parsed = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec) return refusal{refusal_kind::invalid, "", "the body is not JSON (" + ec.message() + ")"};
  if (!parsed.is_object())
    return refusal{refusal_kind::invalid, "", "the body must be a JSON object (an alert rule)"};
  auto& object = parsed.get_object();
  if (url_name != nullptr) {
    if (const auto* name = object.if_contains("name");
        name != nullptr && (!name->is_string() || name->get_string() != *url_name))
      return refusal{refusal_kind::invalid, "name",
                     fmt::format("must be '{}' (the URL's) or absent", *url_name)};
    object["name"] = *url_name;
  }
  if (const auto* list = object.if_contains("notifications"); list != nullptr && list->is_array())
    for (const auto& item : list->get_array())
      secret_omitted.push_back(item.is_object() && !item.get_object().contains("secret"));
  auto outcome = parse_rule(url_name != nullptr ? json::serialize(parsed) : std::string(body));
  if (auto* error = std::get_if<rule_error>(&outcome))
    return refusal{refusal_kind::invalid, std::move(error->field), std::move(error->message)};
  return std::get<rule>(std::move(outcome));
}

std::optional<std::uint64_t> parse_id(std::string_view text) {
  std::uint64_t value = 0;
  if (text.empty() || text.size() > 20) return std::nullopt;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0) return std::nullopt;
  return value;
}

net::http_response no_alert(std::string_view id) {
  return error_response(404, "", fmt::format("there is no alert {}", id));
}

// GET /api/alerts's query: the filter (limit one more than asked, to see whether there is a
// next page), or the 400 to answer.
std::variant<alert_filter, net::http_response> read_filter(const net::http_request& request,
                                                           std::size_t& limit) {
  alert_filter filter;
  if (const auto status = request.query_param("status"); status && !status->empty()) {
    if (*status == "all") {
      filter.all = true;
    } else if (*status != "open") {
      filter.status = parse_alert_status(*status);
      if (!filter.status)
        return error_response(400, "status", "must be active, acknowledged, cleared, open or all");
    }
  }
  if (const auto device = request.query_param("device_id")) filter.device_id = *device;
  if (const auto type = request.query_param("type")) filter.type = *type;
  if (const auto level = request.query_param("severity"); level && !level->empty()) {
    filter.min_severity = parse_severity(*level);
    if (!filter.min_severity)
      return error_response(400, "severity",
                            "must be indeterminate, warning, minor, major or critical");
  }
  limit = default_limit;
  if (const auto text = request.query_param("limit")) {
    const auto value = parse_id(*text);
    if (!value || *value > max_limit)
      return error_response(400, "limit", fmt::format("must be 1 to {}", max_limit));
    limit = static_cast<std::size_t>(*value);
  }
  if (const auto token = request.query_param("page_token"); token && !token->empty()) {
    const auto key = core::decode_page_token(*token);
    const auto after = key ? parse_id(*key) : std::nullopt;
    if (!after) return error_response(400, "page_token", "is not a token this server gave");
    filter.after_id = *after;
  }
  filter.limit = limit + 1;
  return filter;
}

// An ack's or clear's body: nothing, or {"note": "..."}.
std::variant<std::string, net::http_response> read_note(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::string();
  json::error_code ec;
  const json::value parsed = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec) return error_response(400, "", "the body is not JSON (" + ec.message() + ")");
  if (!parsed.is_object())
    return error_response(400, "", "the body must be a JSON object: {\"note\": \"...\"}");
  const auto* note = parsed.get_object().if_contains("note");
  if (note == nullptr || note->is_null()) return std::string();
  if (!note->is_string() || note->get_string().size() > max_note_bytes)
    return error_response(400, "note",
                          fmt::format("must be a string of at most {} bytes", max_note_bytes));
  return std::string(note->get_string());
}

}  // namespace

alerts_api::alerts_api(service& alerts, api_auth auth, api_identity identify, std::size_t max_body)
    : alerts_(alerts),
      auth_(std::move(auth)),
      identify_(std::move(identify)),
      max_body_(max_body) {}

std::optional<net::http_response> alerts_api::refused(const net::http_request& request,
                                                      bool write) const {
  return auth_ ? auth_(request, write) : std::nullopt;
}

std::string alerts_api::who(const net::http_request& request) const {
  std::string name = identify_ ? identify_(request) : std::string();
  return name.empty() ? std::string("api") : name;
}

void alerts_api::install(net::http_router& router) {
  net::route_options with_body;
  with_body.max_body = max_body_;
  with_body.precheck = [this](const net::http_request& head) { return refused(head, true); };
  const std::string rules(rules_path);
  const std::string one_rule = rules + "/{name}";
  const std::string alerts(alerts_path);
  const std::string one_alert = alerts + "/{id}";
  using request = net::http_request;
  using responder = net::http_responder;

  router.add_async("GET", rules, [this](request r, responder respond) {
    if (auto no = refused(r, false)) return respond(std::move(*no));
    alerts_.list_rules([respond](result<std::vector<rule_view>> answer) {
      if (const auto* no = std::get_if<refusal>(&answer)) return respond(refusal_response(*no));
      json::array list;
      for (const auto& view : std::get<std::vector<rule_view>>(answer))
        list.emplace_back(rule_json(view));
      json::object body;
      body["rules"] = std::move(list);
      respond(json_response(200, body));
    });
  });
  router.add_async("GET", one_rule, [this](request r, responder respond) {
    if (auto no = refused(r, false)) return respond(std::move(*no));
    alerts_.get_rule(r.param("name"), rule_answer(std::move(respond), false));
  });
  router.add_async(
      "POST", rules,
      [this](request r, responder respond) {
        if (auto no = refused(r, true)) return respond(std::move(*no));
        std::vector<bool> secret_omitted;
        auto read = read_rule(r.body, nullptr, secret_omitted);
        if (auto* no = std::get_if<refusal>(&read)) return respond(refusal_response(*no));
        alerts_.put_rule(std::get<rule>(std::move(read)), service::put_mode::create,
                         std::move(secret_omitted), rule_answer(std::move(respond), true));
      },
      with_body);
  router.add_async(
      "PUT", one_rule,
      [this](request r, responder respond) {
        if (auto no = refused(r, true)) return respond(std::move(*no));
        std::vector<bool> secret_omitted;
        const std::string& name = r.param("name");
        auto read = read_rule(r.body, &name, secret_omitted);
        if (auto* no = std::get_if<refusal>(&read)) return respond(refusal_response(*no));
        alerts_.put_rule(std::get<rule>(std::move(read)), service::put_mode::replace,
                         std::move(secret_omitted), rule_answer(std::move(respond), true));
      },
      with_body);
  router.add_async(
      "DELETE", one_rule,
      [this](request r, responder respond) {
        if (auto no = refused(r, true)) return respond(std::move(*no));
        alerts_.delete_rule(r.param("name"), [respond](std::optional<refusal> no) {
          if (no) return respond(refusal_response(*no));
          respond(net::http_response{204, "application/json", {}, ""});
        });
      },
      with_body);
  for (const bool enable : {true, false}) {
    router.add_async(
        "POST", one_rule + (enable ? "/enable" : "/disable"),
        [this, enable](request r, responder respond) {
          if (auto no = refused(r, true)) return respond(std::move(*no));
          alerts_.enable_rule(r.param("name"), enable, rule_answer(std::move(respond), false));
        },
        with_body);
  }

  router.add_async("GET", alerts, [this](request r, responder respond) {
    if (auto no = refused(r, false)) return respond(std::move(*no));
    std::size_t limit = default_limit;
    auto read = read_filter(r, limit);
    if (auto* no = std::get_if<net::http_response>(&read)) return respond(std::move(*no));
    alerts_.list_alerts(std::get<alert_filter>(std::move(read)),
                        [respond, limit](result<std::vector<alert>> answer) {
                          if (const auto* no = std::get_if<refusal>(&answer))
                            return respond(refusal_response(*no));
                          const auto& listed = std::get<std::vector<alert>>(answer);
                          const std::size_t shown = std::min(limit, listed.size());
                          json::array list;
                          for (std::size_t i = 0; i < shown; ++i)
                            list.emplace_back(alert_json(listed[i], false));
                          json::object body;
                          body["alerts"] = std::move(list);
                          body["count"] = shown;
                          if (listed.size() > limit)
                            body["next_page_token"] =
                                core::encode_page_token(std::to_string(listed[shown - 1].id));
                          respond(json_response(200, body));
                        });
  });
  router.add_async("GET", one_alert, [this](request r, responder respond) {
    if (auto no = refused(r, false)) return respond(std::move(*no));
    const auto id = parse_id(r.param("id"));
    if (!id) return respond(no_alert(r.param("id")));
    alerts_.get_alert(*id, alert_answer(std::move(respond)));
  });
  for (const bool is_ack : {true, false}) {
    router.add_async(
        "POST", one_alert + (is_ack ? "/ack" : "/clear"),
        [this, is_ack](request r, responder respond) {
          if (auto no = refused(r, true)) return respond(std::move(*no));
          const auto id = parse_id(r.param("id"));
          if (!id) return respond(no_alert(r.param("id")));
          auto note = read_note(r.body);
          if (auto* no = std::get_if<net::http_response>(&note)) return respond(std::move(*no));
          alerts_.act(
              *id, is_ack ? service::alert_action::acknowledge : service::alert_action::clear,
              who(r), std::get<std::string>(std::move(note)), alert_answer(std::move(respond)));
        },
        with_body);
  }
}

}  // namespace nimbus::alerts
