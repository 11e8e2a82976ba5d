#pragma once
// The outcome of a Pub/Sub call, as Google's APIs report it: a google.rpc.Code with a message
// and, for exactly-once acknowledgement failures, an ErrorInfo. Free of gRPC, so the service and
// both wires (gRPC, REST) share it; each wire renders it its own way.
#include <map>
#include <string>
#include <string_view>

namespace nimbus::pubsub {

// google/rpc/code.proto
enum class code : int {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

struct status {
  code what = code::ok;
  std::string message;
  // google.rpc.ErrorInfo, when reason is set (domain pubsub.googleapis.com).
  std::string reason;
  std::map<std::string, std::string> metadata;

  bool ok() const { return what == code::ok; }
  static status error(code c, std::string message) { return status{c, std::move(message), {}, {}}; }
};

// The HTTP status code.proto maps a code to (REST errors).
unsigned http_status(code c);
// "NOT_FOUND", ... (REST errors' "status").
std::string_view code_name(code c);

}  // namespace nimbus::pubsub
