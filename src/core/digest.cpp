#include "core/digest.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace nimbus::core {

namespace {

std::span<const unsigned char> bytes_of(std::string_view text) {
  // OpenSSL wants a valid pointer even for zero bytes.
  static constexpr unsigned char empty = 0;
  if (text.empty()) return {&empty, 0};
  return {reinterpret_cast<const unsigned char*>(text.data()), text.size()};
}

}  // namespace

sha256_digest hmac_sha256(std::span<const unsigned char> key, std::string_view data) {
  sha256_digest out{};
  unsigned int length = 0;
  const auto message = bytes_of(data);
  const auto k = key.empty() ? bytes_of({}) : key;
  HMAC(EVP_sha256(), k.data(), static_cast<int>(k.size()), message.data(), message.size(),
       out.data(), &length);
  return out;
}

sha256_digest hmac_sha256(std::string_view key, std::string_view data) {
  return hmac_sha256(bytes_of(key), data);
}

std::string to_hex(std::span<const unsigned char> data) {
  constexpr std::string_view hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * data.size());
  for (unsigned char byte : data) {
    out += hex[byte >> 4];
    out += hex[byte & 0x0f];
  }
  return out;
}

}  // namespace nimbus::core
