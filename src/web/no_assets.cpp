// Built with -DNIMBUS_WEB=OFF: no dashboard files; `/` says how to get them.
#include "web/assets.hpp"

namespace nimbus::web {

std::span<const embedded_asset> embedded_assets() {
  return {};
}

}  // namespace nimbus::web
