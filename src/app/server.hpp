#pragma once
// `nimbus serve`: builds every component from the settings, opens the listeners, writes
// endpoints.json, and runs until SIGINT/SIGTERM, then stops in reverse order.
#include "config/settings.hpp"

namespace nimbus::app {

int serve(const config::settings& settings);

}  // namespace nimbus::app
