#pragma once
// Pub/Sub's gRPC surface: the google.pubsub.v1 Publisher and Subscriber services on gRPC's
// callback API, a thin adapter over `service` like rest.hpp (every answer comes from the
// service, on whichever thread it calls back). StreamingPull, which the service has no call
// for, is built here over its pull, acknowledge and modify_ack_deadline. The app owns the
// grpc::Server; this object owns the services registered with it and must outlive it.
#include <grpcpp/support/status.h>

#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "pubsub/service.hpp"
#include "pubsub/status.hpp"

namespace grpc {
class Service;
}  // namespace grpc

namespace nimbus::pubsub {

// Who may call, asked before every call: from the call's peer (as gRPC names it: "ipv4:…",
// or "fd:N" for a connection the app handed over) and its `authorization` metadata, nullopt to
// let it through or the status to refuse it with (UNAUTHENTICATED). Empty: everyone may.
using call_gate =
    std::function<std::optional<status>(const std::string& peer, std::string_view authorization)>;

// Publisher and Subscriber over gRPC's callback API, answering through `svc` (which must
// outlive this object). Thread-safe: gRPC calls the services from its own threads.
class grpc_services {
 public:
  explicit grpc_services(service& svc, call_gate gate = {});
  ~grpc_services();
  grpc_services(const grpc_services&) = delete;
  grpc_services& operator=(const grpc_services&) = delete;

  // Register both with a grpc::ServerBuilder (the app builds and owns the server).
  grpc::Service* publisher();
  grpc::Service* subscriber();
  // Ends every open StreamingPull with UNAVAILABLE (clients reconnect, where OK would make
  // Node drop the stream for good), and refuses new ones: before the server's Shutdown, which
  // otherwise waits for the streams.
  void close_streams();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// A status as gRPC's: the code, the message, and grpc-status-details-bin (a serialized
// google.rpc.Status with an ErrorInfo in details) when s.reason is set.
grpc::Status to_grpc(const status& s);

}  // namespace nimbus::pubsub
