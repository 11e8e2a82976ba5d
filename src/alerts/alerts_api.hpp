#pragma once
// /api/alert-rules and /api/alerts (issue 15), over the alerts service.
//
//   GET    /api/alert-rules                 {"rules":[rule + "status"]} by name
//   GET    /api/alert-rules/{name}          rule + "status"; 404
//   POST   /api/alert-rules                 rule -> 201 (Location); 400, 409 when the name exists
//   PUT    /api/alert-rules/{name}          create (201) or replace (200); the body's name must be
//                                           {name} or absent; a webhook without "secret" keeps
//                                           the stored one
//   DELETE /api/alert-rules/{name}          204; 404 (the rule's open alerts are cleared)
//   POST   /api/alert-rules/{name}/enable   200 rule; /disable likewise
//   GET    /api/alerts                      {"alerts":[alert],"count":N[,"next_page_token"]}:
//          ?status=active|acknowledged|cleared|all (default: open ones: active and
//          acknowledged), device_id, type, severity (the least shown), limit (1..1000, 100),
//          page_token; ascending ids
//   GET    /api/alerts/{id}                 alert with "history"; 404
//   POST   /api/alerts/{id}/ack, /clear     optional {"note": "..."} -> 200 alert with history;
//                                           404, 409 when the lifecycle forbids it
//
//   rule   = what alerts::to_json writes (rule.hpp), plus "status":{"enabled",
//            "unknown_devices","unknown_groups","states","created_at","updated_at",
//            "notifications":{"sent","failed","last_error"}}
//   alert  = alert_json.hpp's: the tutorial's device_id, type, value, threshold first
//   errors = {"error":{"field","message"}}: 400 (the rule's field, "" for a body that is no
//            JSON object), 404, 409; 503 with Retry-After when the service is stopping or busy.
//
// Who may call: `auth` (reads with write=false, changes with write=true, before a body is
// read); who is acting, for an alert's history: `identify` ("api" when it says nothing).
// Threads: every route is asynchronous: its work runs on the service's thread and is answered
// once what it read or changed is durable.
#include <cstddef>
#include <string>

#include "alerts/service.hpp"
#include "net/http_server.hpp"

namespace nimbus::alerts {

class alerts_api {
 public:
  alerts_api(service& alerts, api_auth auth, api_identity identify,
             std::size_t max_body = 64 * 1024);
  alerts_api(const alerts_api&) = delete;
  alerts_api& operator=(const alerts_api&) = delete;

  // Adds the routes; this must outlive the router's use.
  void install(net::http_router& router);

 private:
  std::optional<net::http_response> refused(const net::http_request& request, bool write) const;
  std::string who(const net::http_request& request) const;

  service& alerts_;
  const api_auth auth_;
  const api_identity identify_;
  const std::size_t max_body_;
};

}  // namespace nimbus::alerts
