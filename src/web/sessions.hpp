#pragma once
// Dashboard sign-in (issue 16). A browser trades a read-write token from `<data>/tokens` or the
// access key pair of `<data>/credentials` for a session cookie (HttpOnly, SameSite=Strict,
// Secure on HTTPS), which then stands in for SigV4 and bearer tokens on the existing routes, so
// the dashboard is a client of the public APIs. Sessions live in memory: a restart signs
// everyone out. A change made with a cookie must come from this origin (CSRF, and DNS
// rebinding for the loopback-open case).
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "net/http_server.hpp"
#include "registry/credentials.hpp"
#include "registry/tokens.hpp"

namespace nimbus::web {

struct session_settings {
  // Loopback browsers (a loopback peer naming a loopback Host) on a loopback-only HTTP listener
  // are signed in without a token; never over HTTPS.
  bool loopback_open = true;
  std::chrono::seconds lifetime{12 * 3600};
  std::size_t max_sessions = 10'000;  // past it the session closest to expiry goes
};

// Who a request acts as, when its session cookie vouches for it.
struct principal {
  std::string name;  // "token", "access-key:<id>" or "loopback"
  std::int64_t expires_ms = 0;
};

class sessions {
 public:
  sessions(const registry::api_tokens& tokens, registry::api_credentials credentials,
           core::clock& clock, session_settings settings);

  // Signs in with a read-write token or the access key pair: the new session's id, or the
  // reason for a refusal (nothing created).
  struct sign_in_result {
    std::optional<std::string> id;
    principal who;
    std::string refusal;
  };
  sign_in_result sign_in_with_token(std::string_view token);
  sign_in_result sign_in_with_key(std::string_view access_key_id, std::string_view secret);
  // The loopback rule's session: a browser on this machine (is_loopback_open) asking
  // GET /api/session gets one without credentials. Only its cookie opens the other APIs, so a
  // local program that sends none (curl, an unsigned SDK call) is refused as before.
  sign_in_result sign_in_loopback();
  void sign_out(std::string_view id);

  // The principal of a request's session cookie; nullopt when it has none that is open.
  std::optional<principal> identify(const net::http_request& request) const;
  // identify(), for requests a browser sent from this origin (Sec-Fetch-Site, where the browser
  // sends it); and for a change (`changes`, a method other than GET/HEAD/OPTIONS, or a WebSocket
  // upgrade) proof of this origin: a same-origin Origin or Sec-Fetch-Site. What the existing
  // routes ask before taking a cookie instead of their own credentials.
  std::optional<principal> authorize(const net::http_request& request, bool changes = false) const;
  // Whether the loopback rule may sign this request's browser in.
  bool is_loopback_open(const net::http_request& request) const;

  // Set-Cookie values: a new session, and the one that ends it. The cookie's name is its
  // server's: `__Host-nimbus_session` over HTTPS, `nimbus_session_<port>` over HTTP (cookies
  // ignore ports: two servers on one host must not take each other's).
  std::string cookie_for(const std::string& id, const net::http_request& request) const;
  static std::string expired_cookie(const net::http_request& request);
  static std::string cookie_name(const net::http_request& request);
  // The session id a request carries (empty when none).
  static std::string cookie_of(const net::http_request& request);

  std::size_t size() const;
  std::uint64_t refusals() const;

 private:
  sign_in_result open(std::string name);
  void evict_expired_locked(std::int64_t now_ms);

  const registry::api_tokens& tokens_;
  registry::api_credentials credentials_;
  core::clock& clock_;
  session_settings settings_;
  mutable std::mutex mutex_;
  std::map<std::string, principal, std::less<>> open_;
  std::uint64_t refusals_ = 0;
};

// Whether `origin` (an Origin header) names the host the request was sent to (its Host header)
// with the request's scheme.
bool is_same_origin(const net::http_request& request, std::string_view origin);
// Whether a browser says it sent the request for a page of another site or port
// (Sec-Fetch-Site other than same-origin or none): what an open loopback API must refuse, or any
// page the user visits could use it.
bool is_from_another_site(const net::http_request& request);
// Whether a Host header names a loopback host (localhost, 127.0.0.0/8, [::1]), port ignored.
bool is_loopback_host(std::string_view host);

}  // namespace nimbus::web
