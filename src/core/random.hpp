#pragma once
// Cryptographically strong random strings (OpenSSL RAND), used for ids and keys.
#include <cstddef>
#include <cstdint>
#include <string>

namespace nimbus::core {

// `length` characters drawn from [0-9a-z].
std::string random_alnum(std::size_t length);
// `bytes` random bytes, hex-encoded (2 * bytes characters).
std::string random_hex(std::size_t bytes);
// A random 64-bit number.
std::uint64_t random_u64();
// Characters drawn from `alphabet`.
std::string random_from(std::string_view alphabet, std::size_t length);

}  // namespace nimbus::core
