#pragma once
// Logging on spdlog. Messages are written as `event key=value ...` (logfmt) so they stay both
// readable and machine-parsable.
#include <spdlog/spdlog.h>

#include <string>

namespace nimbus::core {

// Installs the process-wide logger on stderr. `level` is a spdlog level name.
void init_logging(const std::string& level);

}  // namespace nimbus::core
