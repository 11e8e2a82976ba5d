#include "web/session_routes.hpp"

#include <boost/json.hpp>

#include "tsdb/query.hpp"

namespace nimbus::web {

namespace json = boost::json;

namespace {

constexpr std::size_t max_sign_in_body = 4 * 1024;

net::http_response json_answer(unsigned status, const json::value& body) {
  net::http_response response{status, "application/json", {}, json::serialize(body) + "\n"};
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

net::http_response error_answer(unsigned status, std::string_view message) {
  json::object body;
  body["error"] = message;
  return json_answer(status, body);
}

json::object signed_in_body(const principal& who, bool loopback_open) {
  json::object body;
  body["signed_in"] = true;
  body["principal"] = who.name;
  if (who.expires_ms > 0)
    body["expires_at"] = tsdb::format_rfc3339(who.expires_ms * 1'000'000);
  else
    body["expires_at"] = nullptr;
  body["loopback_open"] = loopback_open;
  return body;
}

net::http_response signed_out() {
  json::object body;
  body["signed_in"] = false;
  body["loopback_open"] = false;
  return json_answer(401, body);
}

}  // namespace

void add_session_routes(net::http_router& router, sessions& s,
                        std::function<std::string()> overview, stream_hub& hub) {
  router.add("GET", "/api/session", [&s](const net::http_request& request) {
    const bool loopback_open = s.is_loopback_open(request);
    if (auto who = s.identify(request))
      return json_answer(200, signed_in_body(*who, loopback_open));
    // A browser on this machine is signed in by asking (not a page elsewhere: Sec-Fetch-Site).
    if (!loopback_open || is_from_another_site(request)) return signed_out();
    auto result = s.sign_in_loopback();
    auto response = json_answer(200, signed_in_body(result.who, true));
    response.headers.emplace_back("Set-Cookie", s.cookie_for(*result.id, request));
    return response;
  });

  net::route_options sign_in_options;
  sign_in_options.max_body = max_sign_in_body;
  router.add(
      "POST", "/api/session",
      [&s](const net::http_request& request) {
        // Login CSRF: a page elsewhere must not sign this browser in as someone.
        if (auto origin = request.header("origin"); origin && !is_same_origin(request, *origin))
          return error_answer(403, "Sign-in is only accepted from this server's own pages.");
        boost::system::error_code ec;
        auto value = json::parse(request.body, ec);
        const json::object* body = ec ? nullptr : value.if_object();
        if (body == nullptr)
          return error_answer(400, R"(Expected a JSON object: {"token"} or {"access_key_id", )"
                                   R"("secret_access_key"}.)");
        auto text = [body](std::string_view key) -> std::optional<std::string_view> {
          const json::value* v = body->if_contains(key);
          if (v == nullptr || !v->is_string()) return std::nullopt;
          return std::string_view(v->get_string());
        };
        sessions::sign_in_result result;
        if (auto token = text("token"); token && !token->empty()) {
          result = s.sign_in_with_token(*token);
        } else if (auto id = text("access_key_id"), secret = text("secret_access_key");
                   id && secret) {
          result = s.sign_in_with_key(*id, *secret);
        } else {
          return error_answer(400, R"(Give "token", or "access_key_id" and "secret_access_key".)");
        }
        if (!result.id) return error_answer(401, result.refusal);
        auto response = json_answer(200, signed_in_body(result.who, false));
        response.headers.emplace_back("Set-Cookie", s.cookie_for(*result.id, request));
        return response;
      },
      sign_in_options);

  router.add("DELETE", "/api/session", [&s](const net::http_request& request) {
    if (auto origin = request.header("origin"); origin && !is_same_origin(request, *origin))
      return error_answer(403, "Sign-out is only accepted from this server's own pages.");
    if (auto id = sessions::cookie_of(request); !id.empty()) s.sign_out(id);
    net::http_response response{204, "application/json", {}, {}};
    response.headers.emplace_back("Set-Cookie", sessions::expired_cookie(request));
    return response;
  });

  router.add("GET", "/api/overview",
             [&s, overview = std::move(overview)](const net::http_request& request) {
               if (!s.identify(request)) return signed_out();
               net::http_response response{200, "application/json", {}, overview() + "\n"};
               response.headers.emplace_back("Cache-Control", "no-store");
               return response;
             });

  net::websocket_route live;
  live.frames = net::websocket_frames::text;
  live.on_stream = [&hub](std::unique_ptr<net::byte_stream> stream) {
    hub.accept(std::move(stream));
  };
  live.admit = [&s, &hub](const net::http_request& request) {
    net::websocket_admission admission;
    if (auto who = s.authorize(request)) {
      if (!hub.has_room()) {
        auto refusal = error_answer(503,
                                    "Too many live-update connections "
                                    "(dashboard.max_stream_clients).");
        refusal.headers.emplace_back("Retry-After", "5");
        admission.refusal = std::move(refusal);
      }
      admission.signer = who->name;
      return admission;
    }
    admission.refusal = s.identify(request)
                            ? error_answer(403,
                                           "The live stream is only served to this server's "
                                           "own pages (Origin).")
                            : signed_out();
    return admission;
  };
  router.add_websocket("/api/stream", std::move(live));
}

}  // namespace nimbus::web
