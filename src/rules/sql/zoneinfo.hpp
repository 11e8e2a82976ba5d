#pragma once
// Time zones for parse_time() and time_to_epoch(): UTC, fixed offsets ("+01:00", "UTC-8"), and
// the named zones of the system's tz database (America/Los_Angeles, as Joda-Time names them),
// read from its TZif files (RFC 8536, $TZDIR or /usr/share/zoneinfo) because libstdc++ 12 has
// no std::chrono::tzdb. A named zone is read once per process and kept: the one piece of
// state, and the one file read, behind this otherwise pure core; a name the database lacks is
// nullopt, which the functions turn into Undefined, and is not kept (names come from payloads).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::rules::sql {

struct zone_rules;  // zoneinfo.cpp: transitions and the POSIX rule after them

class time_zone {
 public:
  time_zone() = default;  // UTC

  // "UTC", "Z", "GMT", "+01:00", "-0530", "UTC+01:00", "GMT-8", or a tz database name.
  static std::optional<time_zone> find(std::string_view name);

  struct local_offset {
    int offset_seconds = 0;         // east of UTC
    std::string_view abbreviation;  // "PST", "CET", "UTC"; an offset zone's is its id
  };
  // The offset in force at `utc_seconds` since the epoch.
  local_offset at(std::int64_t utc_seconds) const;
  // The offset that maps the local time `local_seconds` to UTC (the earlier reading of an
  // ambiguous local time, the later offset across a gap).
  int offset_for_local(std::int64_t local_seconds) const;

  const std::string& id() const { return id_; }

 private:
  std::string id_ = "UTC";
  int fixed_offset_ = 0;
  std::shared_ptr<const zone_rules> rules_;  // null: a fixed offset
};

}  // namespace nimbus::rules::sql
