#pragma once
// The refusal every /api/ service answers with (bridges, alerts): {"error":{"field","message"}},
// `field` naming the culprit as the service's errors do ("" for the request as a whole).
#include <string>
#include <string_view>

#include "core/json_string.hpp"
#include "net/http_server.hpp"

namespace nimbus::net {

inline http_response field_error(unsigned status, std::string_view field,
                                 std::string_view message) {
  return http_response{status,
                       "application/json",
                       {},
                       R"({"error":{"field":)" + core::json_string(field) + R"(,"message":)" +
                           core::json_string(message) + "}}\n"};
}

}  // namespace nimbus::net
