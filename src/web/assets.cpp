#include "web/assets.hpp"

#include <charconv>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

namespace nimbus::web {

namespace {

constexpr std::string_view not_built_page =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Nimbus</title></head>"
    "<body><main><h1>Nimbus</h1><p>This binary was built without the web dashboard "
    "(cmake -DNIMBUS_WEB=OFF). The APIs are all here; rebuild with NIMBUS_WEB=ON (Node.js and "
    "npm needed) for the dashboard.</p></main></body></html>\n";

// Accept-Encoding names gzip (or *) without q=0.
bool accepts_gzip(const net::http_request& request) {
  auto accept = request.header("accept-encoding");
  if (!accept) return false;
  std::string_view rest = *accept;
  while (!rest.empty()) {
    auto end = rest.find(',');
    std::string_view item = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const auto semicolon = item.find(';');
    std::string_view coding = item.substr(0, semicolon);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (coding != "gzip" && coding != "*") continue;
    if (semicolon == std::string_view::npos) return true;
    std::string_view params = item.substr(semicolon + 1);
    const auto q = params.find("q=");
    if (q == std::string_view::npos) return true;
    const auto value = params.substr(q + 2);
    double weight = 1;
    std::from_chars(value.data(), value.data() + value.size(), weight);
    return weight > 0;
  }
  return false;
}

// If-None-Match lists `tag` (weakly compared, as RFC 9110 asks for GET), or is *.
bool matches(std::string_view if_none_match, std::string_view tag) {
  if (if_none_match == "*") return true;
  std::string_view rest = if_none_match;
  while (!rest.empty()) {
    auto end = rest.find(',');
    std::string_view item = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.starts_with("W/")) item.remove_prefix(2);
    if (item == tag) return true;
  }
  return false;
}

std::string_view content_type_of(std::string_view path) {
  static const std::pair<std::string_view, std::string_view> types[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".woff2", "font/woff2"},
      {".map", "application/json"},
  };
  for (const auto& [extension, type] : types)
    if (path.ends_with(extension)) return type;
  return "application/octet-stream";
}

// Hashed names never change content: cache for a year. Others (index.html) are checked each
// time, so a new build is picked up at once.
std::string cache_control_of(std::string_view path) {
  return path.starts_with("/assets/") ? "public, max-age=31536000, immutable" : "no-cache";
}

net::http_response serve_embedded(const embedded_asset& asset, const net::http_request& request) {
  net::http_response response;
  response.content_type = std::string(asset.content_type);
  add_page_headers(response);
  response.headers.emplace_back("Cache-Control", cache_control_of(asset.path));
  response.headers.emplace_back("Vary", "Accept-Encoding");
  // The gzip bytes are another representation: their own tag ("...-gz").
  const bool gzip = accepts_gzip(request) && !asset.gzip.empty();
  std::string etag(asset.etag);
  if (gzip) etag.insert(etag.size() - 1, "-gz");
  response.headers.emplace_back("ETag", etag);
  if (auto match = request.header("if-none-match"); match && matches(*match, etag)) {
    response.status = 304;
    return response;
  }
  if (gzip) {
    response.headers.emplace_back("Content-Encoding", "gzip");
    response.body = std::string(asset.gzip);
  } else {
    response.body = std::string(asset.body);
  }
  return response;
}

net::http_response not_found() {
  net::http_response response{404, "text/plain; charset=utf-8", {}, "Not Found\n"};
  add_page_headers(response);
  return response;
}

// --web-dir: files read at each request (a vite build in progress is picked up), never a path
// outside the folder.
net::http_response serve_from_folder(const std::string& dir, std::string path) {
  if (path == "/") path = "/index.html";
  if (path.find("..") != std::string::npos || path.find('\0') != std::string::npos)
    return not_found();
  std::ifstream file(dir + path, std::ios::binary);
  if (!file) return not_found();
  std::ostringstream body;
  body << file.rdbuf();
  net::http_response response{200, std::string(content_type_of(path)), {}, body.str()};
  add_page_headers(response);
  response.headers.emplace_back("Cache-Control", "no-cache");
  return response;
}

}  // namespace

void add_page_headers(net::http_response& response) {
  // 'self' only: no inline script or style, no CDN, no request leaves the server. ws: and
  // wss: to this host are 'self' for connect-src in current browsers.
  response.headers.emplace_back("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' blob:; "
                                "base-uri 'self'; form-action 'self'; frame-ancestors 'none'");
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.headers.emplace_back("Referrer-Policy", "no-referrer");
  response.headers.emplace_back("X-Frame-Options", "DENY");
}

void add_asset_routes(net::http_router& router, const std::string& web_dir) {
  if (!web_dir.empty()) {
    auto serve = [web_dir](const net::http_request& request) {
      return serve_from_folder(web_dir, request.path);
    };
    router.add("GET", "/", serve);
    router.add("GET", "/assets/*", serve);
    return;
  }
  const auto assets = embedded_assets();
  if (assets.empty()) {
    router.add("GET", "/", [](const net::http_request&) {
      net::http_response response{200, "text/html; charset=utf-8", {}, std::string(not_built_page)};
      add_page_headers(response);
      return response;
    });
    return;
  }
  auto by_path = std::make_shared<std::unordered_map<std::string_view, const embedded_asset*>>();
  for (const auto& asset : assets) by_path->emplace(asset.path, &asset);
  auto serve = [by_path](const net::http_request& request) {
    const std::string_view path =
        request.path == "/" ? std::string_view("/index.html") : std::string_view(request.path);
    auto it = by_path->find(path);
    if (it == by_path->end()) return not_found();
    return serve_embedded(*it->second, request);
  };
  router.add("GET", "/", serve);
  router.add("GET", "/assets/*", serve);
  // Top-level files of the build (favicon ...), each its own route.
  for (const auto& asset : assets) {
    if (asset.path.starts_with("/assets/") || asset.path == "/index.html") continue;
    router.add("GET", std::string(asset.path), serve);
  }
}

}  // namespace nimbus::web
