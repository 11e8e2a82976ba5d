#pragma once
// The page tokens of AWS-style list operations: "nb1" and the hex of the last key returned, so a
// listing resumes after it (upper_bound). Opaque to clients; a token we did not issue decodes to
// nullopt, which the API answers with 400.
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::core {

std::string encode_page_token(std::string_view last_key);
// The key to resume after: "" for an empty token (the first page), nullopt for a foreign one.
std::optional<std::string> decode_page_token(std::string_view token);

}  // namespace nimbus::core
