# The time-series column decoders (src/tsdb/codecs.cpp), and the encoders over values made from
# the input: the standard library and libzstd. Included from fuzz/CMakeLists.txt, after
# nimbus_add_fuzzer is defined.
nimbus_add_fuzzer(tsdb_block_decoder_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tsdb_block_decoder_fuzz.cpp
          ${PROJECT_SOURCE_DIR}/src/tsdb/codecs.cpp
  LIBS -lzstd)

# Rollup blocks (src/tsdb/rollup.cpp) over the same codecs.
nimbus_add_fuzzer(tsdb_rollup_decoder_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tsdb_rollup_decoder_fuzz.cpp
          ${PROJECT_SOURCE_DIR}/src/tsdb/rollup.cpp
          ${PROJECT_SOURCE_DIR}/src/tsdb/codecs.cpp
  LIBS -lzstd)
