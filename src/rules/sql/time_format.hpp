#pragma once
// The date patterns of parse_time() (Joda-Time) and time_to_epoch() (java.time), for the pattern
// letters rules use in practice: G y u Y M L d D E a H k h K m s S Z X x z V and 'quoted text'.
// A letter outside that set makes the call Undefined rather than wrong. Years 1 to 9999.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rules/sql/zoneinfo.hpp"

namespace nimbus::rules::sql {

std::optional<std::string> format_time(std::string_view pattern, std::int64_t epoch_ms,
                                       const time_zone& zone);
// Milliseconds since the epoch; UTC unless the text names a zone or an offset.
std::optional<std::int64_t> parse_time_text(std::string_view text, std::string_view pattern);

}  // namespace nimbus::rules::sql
