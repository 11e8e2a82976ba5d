#include "seglog/crc32c.hpp"

#include <array>
#include <bit>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define NIMBUS_CRC32C_HAS_SSE42 1
#endif

namespace nimbus::seglog {
namespace {

static_assert(std::endian::native == std::endian::little, "the 8-byte steps load little-endian");

constexpr std::uint32_t polynomial = 0x82F63B78;  // 0x1EDC6F41, bit-reversed

// tables[k][b]: the CRC of byte b followed by k zero bytes, so eight bytes fold in one step.
using table_set = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr table_set make_tables() {
  table_set tables{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1;
    tables[0][i] = crc;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t i = 0; i < 256; ++i)
      tables[k][i] = (tables[k - 1][i] >> 8) ^ tables[0][tables[k - 1][i] & 0xFF];
  return tables;
}

constexpr table_set tables = make_tables();
static_assert(tables[0][1] == 0xF26B8303 && tables[0][2] == 0xE13B70F7);

// `crc` and the result are the running (inverted) register.
std::uint32_t update_software(const unsigned char* bytes, std::size_t size, std::uint32_t crc) {
  while (size >= 8) {
    std::uint32_t low;
    std::uint32_t high;
    std::memcpy(&low, bytes, 4);
    std::memcpy(&high, bytes + 4, 4);
    low ^= crc;
    crc = tables[7][low & 0xFF] ^ tables[6][(low >> 8) & 0xFF] ^ tables[5][(low >> 16) & 0xFF] ^
          tables[4][low >> 24] ^ tables[3][high & 0xFF] ^ tables[2][(high >> 8) & 0xFF] ^
          tables[1][(high >> 16) & 0xFF] ^ tables[0][high >> 24];
    bytes += 8;
    size -= 8;
  }
  for (; size > 0; --size, ++bytes) crc = tables[0][(crc ^ *bytes) & 0xFF] ^ (crc >> 8);
  return crc;
}

#ifdef NIMBUS_CRC32C_HAS_SSE42
// Compiled for SSE4.2 whatever the build's target; called only when the CPU has it.
__attribute__((target("sse4.2,crc32"))) std::uint32_t update_hardware(const unsigned char* bytes,
                                                                      std::size_t size,
                                                                      std::uint32_t crc) {
  std::uint64_t wide = crc;
  while (size >= 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes, 8);
    wide = _mm_crc32_u64(wide, word);
    bytes += 8;
    size -= 8;
  }
  auto narrow = static_cast<std::uint32_t>(wide);
  for (; size > 0; --size, ++bytes) narrow = _mm_crc32_u8(narrow, *bytes);
  return narrow;
}
#endif

bool detect_hardware() {
#ifdef NIMBUS_CRC32C_HAS_SSE42
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") != 0;
#else
  return false;
#endif
}

}  // namespace

bool crc32c_is_hardware() {
  static const bool is_hardware = detect_hardware();
  return is_hardware;
}

std::uint32_t crc32c_software(const void* data, std::size_t size, std::uint32_t crc) {
  return ~update_software(static_cast<const unsigned char*>(data), size, ~crc);
}

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
#ifdef NIMBUS_CRC32C_HAS_SSE42
  if (crc32c_is_hardware())
    return ~update_hardware(static_cast<const unsigned char*>(data), size, ~crc);
#endif
  return crc32c_software(data, size, crc);
}

}  // namespace nimbus::seglog
