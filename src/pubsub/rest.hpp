#pragma once
// Pub/Sub's REST v1 surface (the HTTP bindings of the Publisher and Subscriber services, as
// gcloud and the clients' REST fallback call them) over the shared HTTP router. A thin adapter:
// JSON in and out with protobuf's proto3 JSON mapping, names taken from the path, every answer
// from the service; it holds no state. Handlers run on the HTTP loop and answer from whichever
// thread the service calls back on.
#include <functional>
#include <optional>

#include "net/http_server.hpp"
#include "pubsub/service.hpp"
#include "pubsub/status.hpp"

namespace nimbus::pubsub {

// Adds every REST v1 binding of the Publisher and Subscriber services (reference §1) under
// /v1/projects/... to `router`, answering through `svc` (which must outlive the router).
// `authorize` (may be null) runs first on every request (head only), also before a body is
// read: a response refuses it (the app's auth: loopback open, else tokens).
void add_rest_routes(
    net::http_router& router, service& svc,
    std::function<std::optional<net::http_response>(const net::http_request&)> authorize);

// A status as Google's REST error body: {"error":{"code":<http>,"message":...,"status":
// "NOT_FOUND","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":...,
// "domain":"pubsub.googleapis.com","metadata":{...}}]}} (details only when status.reason is set).
net::http_response rest_error(const status& s);

}  // namespace nimbus::pubsub
