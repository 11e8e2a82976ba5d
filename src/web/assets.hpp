#pragma once
// The dashboard's files (web/, built by vite): embedded in the binary at build time
// (precompressed, content-hashed names under /assets/) or read from a folder (`--web-dir`, for
// development). Served with a CSP of `default-src 'self'`: the page loads nothing from
// elsewhere.
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "net/http_server.hpp"

namespace nimbus::web {

// One file of the build, as the generated web_assets.cpp lists it.
struct embedded_asset {
  std::string_view path;  // "/index.html", "/assets/index-3f2a9c1b.js"
  std::string_view content_type;
  std::string_view body;  // identity
  std::string_view gzip;  // the same, gzip (level 9)
  std::string_view etag;  // quoted
};
std::span<const embedded_asset> embedded_assets();  // empty when built without NIMBUS_WEB

// Adds `/` (index.html), `/assets/*` and the build's other top-level files. `web_dir` empty:
// the embedded files.
void add_asset_routes(net::http_router& router, const std::string& web_dir);

// The headers every dashboard page carries (CSP and friends).
void add_page_headers(net::http_response& response);

}  // namespace nimbus::web
