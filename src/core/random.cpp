#include "core/random.hpp"

#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

namespace nimbus::core {

namespace {
std::vector<unsigned char> random_bytes(std::size_t n) {
  std::vector<unsigned char> bytes(n);
  if (n > 0 && RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return bytes;
}
}  // namespace

std::string random_from(std::string_view alphabet, std::size_t length) {
  std::string out;
  out.reserve(length);
  // Rejection sampling keeps the distribution uniform for any alphabet size.
  const auto limit = static_cast<unsigned>(256U - (256U % alphabet.size()));
  while (out.size() < length) {
    for (unsigned char b : random_bytes(length - out.size() + 8)) {
      if (b < limit && out.size() < length) out.push_back(alphabet[b % alphabet.size()]);
    }
  }
  return out;
}

std::string random_alnum(std::size_t length) {
  return random_from("0123456789abcdefghijklmnopqrstuvwxyz", length);
}

std::string random_hex(std::size_t bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char b : random_bytes(bytes)) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xF]);
  }
  return out;
}

std::uint64_t random_u64() {
  std::uint64_t value = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof(value)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return value;
}

}  // namespace nimbus::core
