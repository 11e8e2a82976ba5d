#pragma once
// Numbers and times as Go's standard library writes them, which InfluxDB's answers are made of:
// for InfluxQL's JSON and CSV (query_format.cpp) and Flux's annotated CSV (flux_exec.cpp).
// Standard library only (the Flux fuzzer builds it), pure, any thread.
#include <cstdint>
#include <string>

namespace nimbus::tsdb::go {

// strconv.FormatFloat(v, 'f', -1, 64): the shortest digits that read back exactly, then zeros,
// never an exponent (4611686018427387904 -> "4611686018427388000", 0.5, 45); "NaN", "+Inf",
// "-Inf".
void append_float(std::string& out, double value);

// encoding/json's float64: the same digits, plain for 1e-6 <= |v| < 1e21 and an exponent
// otherwise, a negative exponent without its leading zero (1e-7, 1.5e-10, but 1e+21). JSON has
// no NaN or infinity: null (InfluxDB turns them into nulls before Go refuses them).
void append_json_float(std::string& out, double value);

// time.RFC3339Nano: "2009-11-10T23:00:00Z", the fraction's trailing zeros trimmed and none for a
// whole second; with an offset east of UTC (a tz() location) the local time and "+09:00". Times
// whose local reading leaves int64 print in UTC.
void append_rfc3339(std::string& out, std::int64_t ns, std::int32_t offset_seconds = 0);

}  // namespace nimbus::tsdb::go
