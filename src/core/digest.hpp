#pragma once
// HMAC-SHA256 and lower-case hex (OpenSSL): SigV4's key derivation and signatures, and the alert
// webhooks' X-Nimbus-Signature.
#include <array>
#include <span>
#include <string>
#include <string_view>

namespace nimbus::core {

using sha256_digest = std::array<unsigned char, 32>;

sha256_digest hmac_sha256(std::span<const unsigned char> key, std::string_view data);
sha256_digest hmac_sha256(std::string_view key, std::string_view data);
std::string to_hex(std::span<const unsigned char> data);  // lower case

}  // namespace nimbus::core
