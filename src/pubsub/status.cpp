#include "pubsub/status.hpp"

namespace nimbus::pubsub {

unsigned http_status(code c) {
  switch (c) {
    case code::ok:
      return 200;
    case code::cancelled:
      return 499;
    case code::invalid_argument:
    case code::failed_precondition:
    case code::out_of_range:
      return 400;
    case code::unauthenticated:
      return 401;
    case code::permission_denied:
      return 403;
    case code::not_found:
      return 404;
    case code::already_exists:
    case code::aborted:
      return 409;
    case code::resource_exhausted:
      return 429;
    case code::unimplemented:
      return 501;
    case code::unavailable:
      return 503;
    case code::deadline_exceeded:
      return 504;
    case code::unknown:
    case code::internal:
    case code::data_loss:
      return 500;
  }
  return 500;
}

std::string_view code_name(code c) {
  switch (c) {
    case code::ok:
      return "OK";
    case code::cancelled:
      return "CANCELLED";
    case code::unknown:
      return "UNKNOWN";
    case code::invalid_argument:
      return "INVALID_ARGUMENT";
    case code::deadline_exceeded:
      return "DEADLINE_EXCEEDED";
    case code::not_found:
      return "NOT_FOUND";
    case code::already_exists:
      return "ALREADY_EXISTS";
    case code::permission_denied:
      return "PERMISSION_DENIED";
    case code::resource_exhausted:
      return "RESOURCE_EXHAUSTED";
    case code::failed_precondition:
      return "FAILED_PRECONDITION";
    case code::aborted:
      return "ABORTED";
    case code::out_of_range:
      return "OUT_OF_RANGE";
    case code::unimplemented:
      return "UNIMPLEMENTED";
    case code::internal:
      return "INTERNAL";
    case code::unavailable:
      return "UNAVAILABLE";
    case code::data_loss:
      return "DATA_LOSS";
    case code::unauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

}  // namespace nimbus::pubsub
