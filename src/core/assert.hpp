#pragma once
// NIMBUS_ASSERT(condition): an internal invariant, checked in debug builds only. Never for input
// (decoders turn bad input into errors, STYLE.md). On failure it prints file:line and the
// condition to stderr and aborts; with NDEBUG the condition is not evaluated at all.
// Standard library only (no fmt): the sans-I/O cores that use it are also compiled on their own,
// without fmt linked, by the fuzz targets.
#include <cstdio>
#include <cstdlib>

#ifdef NDEBUG
#define NIMBUS_ASSERT(condition) ((void)0)
#else
#define NIMBUS_ASSERT(condition) \
  ((condition) ? (void)0 : ::nimbus::core::assert_failed(__FILE__, __LINE__, #condition))

namespace nimbus::core {
[[noreturn]] inline void assert_failed(const char* file, int line, const char* condition) {
  std::fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, condition);
  std::abort();
}
}  // namespace nimbus::core
#endif
