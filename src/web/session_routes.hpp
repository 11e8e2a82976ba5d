#pragma once
// The dashboard's own routes (issue 16):
//
//   GET    /api/session   200 {"signed_in":true,"principal","expires_at"|null,"loopback_open"}
//                         or 401 {"signed_in":false,"loopback_open":false}
//   POST   /api/session   {"token"} or {"access_key_id","secret_access_key"} -> 200 as GET,
//                         Set-Cookie nimbus_session (HttpOnly, SameSite=Strict, Secure on
//                         HTTPS); 400 for a malformed body, 401 {"error"} for wrong credentials,
//                         403 from another origin
//   DELETE /api/session   204, the cookie expired
//   GET    /api/overview  what the home page shows: version, listeners bound, paths, counts
//   GET    /api/stream    the live updates (stream_hub.hpp), WebSocket
//
// Every route but POST /api/session needs a session (or the loopback rule), as the dashboard
// uses the other APIs.
#include <functional>
#include <string>

#include "net/http_server.hpp"
#include "web/sessions.hpp"
#include "web/stream_hub.hpp"

namespace nimbus::web {

// `overview` builds /api/overview's JSON (the app knows every service); `hub` takes streams.
// Both, and `s`, outlive the router's use.
void add_session_routes(net::http_router& router, sessions& s,
                        std::function<std::string()> overview, stream_hub& hub);

}  // namespace nimbus::web
