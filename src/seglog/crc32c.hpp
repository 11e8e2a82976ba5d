#pragma once
// CRC32C (Castagnoli), the checksum of the segment log's record frames: the SSE4.2 instruction
// where the CPU has it, else slicing-by-8 tables. Pure functions, callable from any thread.
// Standard library only (the recovery fuzzer compiles it on its own).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace nimbus::seglog {

// The CRC32C of `size` bytes at `data`. A previous result passed as `crc` continues it:
// crc32c(b, crc32c(a)) == crc32c(a followed by b).
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);
inline std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0) {
  return crc32c(bytes.data(), bytes.size(), crc);
}

// The table-driven path alone, and whether crc32c() uses the instruction: tests compare the two.
std::uint32_t crc32c_software(const void* data, std::size_t size, std::uint32_t crc = 0);
bool crc32c_is_hardware();

}  // namespace nimbus::seglog
