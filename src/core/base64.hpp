#pragma once
// Base64 with the standard alphabet and '=' padding (RFC 4648 §4): MQTT 5 headers of the
// iot-data API, retained payloads in its JSON, the rules engine's encode()/decode().
// Standard library only: the rules SQL fuzz target compiles it on its own.
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::core {

std::string base64_encode(std::string_view bytes);
// nullopt when `text` is not base64 (padding may be left out).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace nimbus::core
