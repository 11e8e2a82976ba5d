# Column codecs (issue 13): timestamps, floats, integers, unsigned, booleans and strings to bytes
# and back, sans-I/O; the block layer adds the CRC32C and zstd. The standard library and libzstd
# (one scheme packs a float column's high byte planes apart), so the block decoder fuzzer builds
# codecs.cpp on its own; nimbus_core brings the include path.
# Included from src/tsdb/CMakeLists.txt.
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
add_library(nimbus_tsdb_codecs STATIC ${CMAKE_CURRENT_LIST_DIR}/codecs.cpp)
target_link_libraries(nimbus_tsdb_codecs PUBLIC nimbus_core PRIVATE PkgConfig::ZSTD nimbus_warnings)
nimbus_add_unit_test(tsdb_codecs_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/codecs_test.cpp
  DEPS nimbus_tsdb_codecs)
