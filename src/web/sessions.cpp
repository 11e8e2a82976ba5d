#include "web/sessions.hpp"

#include <openssl/crypto.h>

#include <boost/asio/ip/address.hpp>

#include <algorithm>

#include "core/random.hpp"

namespace nimbus::web {

namespace {

bool equal_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// "127.0.0.1:80", "[::1]:80", "localhost" ... -> the host part, brackets dropped.
std::string_view host_part(std::string_view host) {
  if (host.starts_with('[')) {
    auto end = host.find(']');
    return end == std::string_view::npos ? std::string_view() : host.substr(1, end - 1);
  }
  return host.substr(0, host.find(':'));
}

bool is_loopback_address(std::string_view text) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return false;
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
        .is_loopback();  // ::ffff:127.0.0.1
  return address.is_loopback();
}

bool changes_something(const net::http_request& request) {
  return request.method != "GET" && request.method != "HEAD" && request.method != "OPTIONS";
}

bool is_websocket_upgrade(const net::http_request& request) {
  auto upgrade = request.header("upgrade");
  if (!upgrade) return false;
  std::string lower(*upgrade);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower == "websocket";
}

}  // namespace

bool is_from_another_site(const net::http_request& request) {
  const auto site = request.header("sec-fetch-site");
  return site && *site != "same-origin" && *site != "none";
}

bool is_loopback_host(std::string_view host) {
  auto name = host_part(host);
  return name == "localhost" || is_loopback_address(name);
}

bool is_same_origin(const net::http_request& request, std::string_view origin) {
  auto host = request.header("host");
  if (!host || host->empty()) return false;
  const std::string expected = std::string(request.secure ? "https://" : "http://") + *host;
  if (origin.size() != expected.size()) return false;
  return std::equal(origin.begin(), origin.end(), expected.begin(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
}

sessions::sessions(const registry::api_tokens& tokens, registry::api_credentials credentials,
                   core::clock& clock, session_settings settings)
    : tokens_(tokens), credentials_(std::move(credentials)), clock_(clock), settings_(settings) {}

sessions::sign_in_result sessions::open(std::string name) {
  sign_in_result out;
  out.who.name = std::move(name);
  const std::int64_t now = clock_.unix_millis();
  out.who.expires_ms =
      now + std::chrono::duration_cast<std::chrono::milliseconds>(settings_.lifetime).count();
  std::string id = core::random_hex(32);
  std::lock_guard lock(mutex_);
  evict_expired_locked(now);
  if (open_.size() >= settings_.max_sessions) {
    auto oldest = std::min_element(open_.begin(), open_.end(), [](const auto& a, const auto& b) {
      return a.second.expires_ms < b.second.expires_ms;
    });
    open_.erase(oldest);
  }
  open_.emplace(id, out.who);
  out.id = std::move(id);
  return out;
}

sessions::sign_in_result sessions::sign_in_with_token(std::string_view token) {
  const auto scope = tokens_.check_token(token);
  if (scope == registry::token_scope::read_write) return open("token");
  std::lock_guard lock(mutex_);
  ++refusals_;
  sign_in_result out;
  out.refusal = scope ? "This token is read-only; the dashboard needs a read-write token "
                        "(see <data>/tokens)."
                      : "Unknown token (see <data>/tokens).";
  return out;
}

sessions::sign_in_result sessions::sign_in_with_key(std::string_view access_key_id,
                                                    std::string_view secret) {
  // Both compared in full, so a wrong id takes as long as a wrong secret.
  const bool id_ok = equal_secret(access_key_id, credentials_.access_key_id);
  const bool secret_ok = equal_secret(secret, credentials_.secret_access_key);
  if (id_ok && secret_ok) return open("access-key:" + credentials_.access_key_id);
  std::lock_guard lock(mutex_);
  ++refusals_;
  sign_in_result out;
  out.refusal = "The access key id or secret access key is wrong (see <data>/credentials).";
  return out;
}

sessions::sign_in_result sessions::sign_in_loopback() {
  return open("loopback");
}

void sessions::sign_out(std::string_view id) {
  std::lock_guard lock(mutex_);
  if (auto it = open_.find(id); it != open_.end()) open_.erase(it);
}

void sessions::evict_expired_locked(std::int64_t now_ms) {
  std::erase_if(open_, [now_ms](const auto& entry) { return entry.second.expires_ms <= now_ms; });
}

bool sessions::is_loopback_open(const net::http_request& request) const {
  if (!settings_.loopback_open || request.secure || !request.loopback_listener) return false;
  // Behind a reverse proxy every visitor's request comes from loopback: the rule is for a browser
  // on this machine, not for whatever the proxy forwards.
  for (const char* forwarded :
       {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via"})
    if (request.header(forwarded)) return false;
  auto host = request.header("host");
  return host && is_loopback_host(*host) && is_loopback_address(host_part(request.remote_address));
}

std::optional<principal> sessions::identify(const net::http_request& request) const {
  const std::string id = cookie_of(request);
  if (!id.empty()) {
    std::lock_guard lock(mutex_);
    if (auto it = open_.find(id); it != open_.end() && it->second.expires_ms > clock_.unix_millis())
      return it->second;
  }
  return std::nullopt;
}

std::optional<principal> sessions::authorize(const net::http_request& request, bool changes) const {
  auto who = identify(request);
  if (!who) return std::nullopt;
  // Browsers say where a request comes from (a header pages cannot set): only this origin's
  // pages, or the user typing the address ("none"), may use the session.
  if (is_from_another_site(request)) return std::nullopt;
  const auto site = request.header("sec-fetch-site");
  if (changes || changes_something(request) || is_websocket_upgrade(request)) {
    auto origin = request.header("origin");
    const bool from_here =
        (origin && is_same_origin(request, *origin)) || (site && *site == "same-origin");
    if (!from_here) return std::nullopt;
  }
  return who;
}

std::string sessions::cookie_name(const net::http_request& request) {
  if (request.secure) return "__Host-nimbus_session";
  std::string name = "nimbus_session";
  if (auto host = request.header("host")) {
    auto colon = host->rfind(':');
    if (colon != std::string::npos && colon + 1 < host->size() &&
        host->find_first_not_of("0123456789", colon + 1) == std::string::npos &&
        host->find(']', colon) == std::string::npos)
      name += "_" + host->substr(colon + 1);
  }
  return name;
}

std::string sessions::cookie_for(const std::string& id, const net::http_request& request) const {
  return cookie_name(request) + "=" + id + "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
         std::to_string(settings_.lifetime.count()) + (request.secure ? "; Secure" : "");
}

std::string sessions::expired_cookie(const net::http_request& request) {
  return cookie_name(request) + "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" +
         (request.secure ? "; Secure" : "");
}

std::string sessions::cookie_of(const net::http_request& request) {
  auto header = request.header("cookie");
  if (!header) return {};
  const std::string name = cookie_name(request);
  const std::string_view session_cookie = name;
  std::string_view rest = *header;
  while (!rest.empty()) {
    auto end = rest.find(';');
    std::string_view pair = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.starts_with(session_cookie) && pair.size() > session_cookie.size() &&
        pair[session_cookie.size()] == '=')
      return std::string(pair.substr(session_cookie.size() + 1));
  }
  return {};
}

std::size_t sessions::size() const {
  std::lock_guard lock(mutex_);
  return open_.size();
}

std::uint64_t sessions::refusals() const {
  std::lock_guard lock(mutex_);
  return refusals_;
}

}  // namespace nimbus::web
