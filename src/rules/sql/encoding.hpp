#pragma once
// Base64 as encode()/decode() use it (the standard alphabet, '=' padding), and the hex digests of
// md5() ... sha512(). The SQL function rows themselves are in functions.hpp's table.
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::rules::sql {

std::string base64_encode(std::string_view bytes);
// nullopt when `text` is not base64 (padding may be left out).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace nimbus::rules::sql
