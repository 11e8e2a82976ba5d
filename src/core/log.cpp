#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace nimbus::core {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("nimbus");
  logger->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l thread=%t %v",
                      spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace nimbus::core
