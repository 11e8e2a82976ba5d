// Dashboard sessions: sign-in by token and key pair, expiry, the loopback rule, same-origin
// changes, cookies.
#include "web/sessions.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace nimbus::web {
namespace {

class sessions_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("nimbus_web_sessions_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "tokens") << "read-write rwtoken0123456789\nread-only rotoken0123456789\n";
    bool created = false;
    tokens_ = registry::api_tokens::open_or_create((dir_ / "tokens").string(), created);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static net::http_request request(std::string method, std::string host, std::string remote,
                                   bool loopback_listener) {
    net::http_request r;
    r.method = std::move(method);
    r.headers.emplace_back("Host", std::move(host));
    r.remote_address = std::move(remote);
    r.loopback_listener = loopback_listener;
    return r;
  }

  std::filesystem::path dir_;
  registry::api_tokens tokens_;
  core::manual_clock clock_;
  registry::api_credentials keys_{"AKIAEXAMPLE", "secret-example"};
};

TEST_F(sessions_test, read_write_token_signs_in_read_only_and_unknown_do_not) {
  sessions s(tokens_, keys_, clock_, {});
  auto ok = s.sign_in_with_token("rwtoken0123456789");
  ASSERT_TRUE(ok.id);
  EXPECT_EQ(ok.who.name, "token");
  auto read_only = s.sign_in_with_token("rotoken0123456789");
  EXPECT_FALSE(read_only.id);
  EXPECT_NE(read_only.refusal.find("read-only"), std::string::npos);
  EXPECT_FALSE(s.sign_in_with_token("nope").id);
  EXPECT_EQ(s.size(), 1U);
  EXPECT_EQ(s.refusals(), 2U);
}

TEST_F(sessions_test, key_pair_must_match_both_halves) {
  sessions s(tokens_, keys_, clock_, {});
  EXPECT_FALSE(s.sign_in_with_key("AKIAEXAMPLE", "wrong").id);
  EXPECT_FALSE(s.sign_in_with_key("AKIAOTHER", "secret-example").id);
  auto ok = s.sign_in_with_key("AKIAEXAMPLE", "secret-example");
  ASSERT_TRUE(ok.id);
  EXPECT_EQ(ok.who.name, "access-key:AKIAEXAMPLE");
}

TEST_F(sessions_test, cookie_identifies_until_expiry_and_sign_out) {
  session_settings settings;
  settings.loopback_open = false;
  settings.lifetime = std::chrono::hours(1);
  sessions s(tokens_, keys_, clock_, settings);
  auto ok = s.sign_in_with_token("rwtoken0123456789");
  ASSERT_TRUE(ok.id);
  auto r = request("GET", "example.org:8080", "10.0.0.2:5000", false);
  EXPECT_FALSE(s.identify(r));
  r.headers.emplace_back("Cookie",
                         "nimbus_session_9090=other; nimbus_session_8080=" + *ok.id + "; x=y");
  ASSERT_TRUE(s.identify(r));
  EXPECT_EQ(sessions::cookie_of(r), *ok.id);
  clock_.advance(std::chrono::minutes(59));
  EXPECT_TRUE(s.identify(r));
  clock_.advance(std::chrono::minutes(2));
  EXPECT_FALSE(s.identify(r));

  auto again = s.sign_in_with_token("rwtoken0123456789");
  auto r2 = request("GET", "example.org:8080", "10.0.0.2:5000", false);
  r2.headers.emplace_back("Cookie", "nimbus_session_8080=" + *again.id);
  EXPECT_TRUE(s.identify(r2));
  s.sign_out(*again.id);
  EXPECT_FALSE(s.identify(r2));
}

TEST_F(sessions_test, changes_need_the_same_origin) {
  sessions s(tokens_, keys_, clock_, {});
  auto ok = s.sign_in_with_token("rwtoken0123456789");
  auto r = request("POST", "nimbus.lan:8080", "10.0.0.2:5000", false);
  r.headers.emplace_back("Cookie", "nimbus_session_8080=" + *ok.id);
  EXPECT_TRUE(s.identify(r));
  EXPECT_FALSE(s.authorize(r));  // no Origin
  r.headers.emplace_back("Origin", "http://evil.example");
  EXPECT_FALSE(s.authorize(r));
  r.headers.back().second = "https://nimbus.lan:8080";  // scheme differs
  EXPECT_FALSE(s.authorize(r));
  r.headers.back().second = "http://nimbus.lan:8080";
  EXPECT_TRUE(s.authorize(r));
  auto get = request("GET", "nimbus.lan:8080", "10.0.0.2:5000", false);
  get.headers.emplace_back("Cookie", "nimbus_session_8080=" + *ok.id);
  EXPECT_TRUE(s.authorize(get));         // reads need no Origin
  EXPECT_FALSE(s.authorize(get, true));  // unless the route says it changes something
  get.headers.emplace_back("Sec-Fetch-Site", "same-origin");
  EXPECT_TRUE(s.authorize(get, true));
  get.headers.back().second = "cross-site";  // an <img> on another site
  EXPECT_FALSE(s.authorize(get));
  get.headers.back().second = "same-site";  // another port of this host
  EXPECT_FALSE(s.authorize(get));
  get.headers.back().second = "none";  // typed into the address bar
  EXPECT_TRUE(s.authorize(get));
}

TEST_F(sessions_test, loopback_rule_needs_loopback_listener_peer_and_host) {
  sessions s(tokens_, keys_, clock_, {});
  EXPECT_TRUE(s.is_loopback_open(request("GET", "localhost:8080", "127.0.0.1:5000", true)));
  EXPECT_TRUE(s.is_loopback_open(request("GET", "127.0.0.1:8080", "127.0.0.1:5000", true)));
  EXPECT_TRUE(s.is_loopback_open(request("GET", "[::1]:8080", "[::1]:5000", true)));
  // DNS rebinding: a foreign name resolving to 127.0.0.1.
  EXPECT_FALSE(s.is_loopback_open(request("GET", "attacker.example:8080", "127.0.0.1:5000", true)));
  EXPECT_FALSE(s.is_loopback_open(request("GET", "localhost:8080", "127.0.0.1:5000", false)));
  EXPECT_FALSE(s.is_loopback_open(request("GET", "localhost:8080", "10.1.1.1:5000", true)));
  auto proxied = request("GET", "127.0.0.1:8080", "127.0.0.1:5000", true);
  proxied.headers.emplace_back("X-Forwarded-For", "203.0.113.9");  // a reverse proxy's visitor
  EXPECT_FALSE(s.is_loopback_open(proxied));
  auto tls = request("GET", "localhost:8443", "127.0.0.1:5000", true);
  tls.secure = true;
  EXPECT_FALSE(s.is_loopback_open(tls));

  // The rule gives a session; without its cookie a loopback request is nobody.
  auto plain = request("GET", "localhost:8080", "127.0.0.1:5000", true);
  EXPECT_FALSE(s.identify(plain));
  auto session = s.sign_in_loopback();
  ASSERT_TRUE(session.id);
  plain.headers.emplace_back("Cookie", "nimbus_session_8080=" + *session.id);
  ASSERT_TRUE(s.identify(plain));
  EXPECT_EQ(s.identify(plain)->name, "loopback");

  session_settings closed;
  closed.loopback_open = false;
  sessions off(tokens_, keys_, clock_, closed);
  EXPECT_FALSE(off.is_loopback_open(request("GET", "localhost:8080", "127.0.0.1:5000", true)));
}

TEST_F(sessions_test, cookies_are_http_only_strict_per_server_and_secure_on_https) {
  sessions s(tokens_, keys_, clock_, {});
  auto http = request("GET", "nimbus.lan:8080", "10.0.0.2:5000", false);
  const auto plain = s.cookie_for("abc", http);
  EXPECT_EQ(plain.rfind("nimbus_session_8080=abc;", 0), 0U) << plain;
  EXPECT_NE(plain.find("HttpOnly"), std::string::npos);
  EXPECT_NE(plain.find("SameSite=Strict"), std::string::npos);
  EXPECT_EQ(plain.find("Secure"), std::string::npos);
  auto https = request("GET", "nimbus.lan:8443", "10.0.0.2:5000", false);
  https.secure = true;
  const auto secure = s.cookie_for("abc", https);
  EXPECT_EQ(secure.rfind("__Host-nimbus_session=abc;", 0), 0U) << secure;
  EXPECT_NE(secure.find("; Secure"), std::string::npos);
  EXPECT_NE(sessions::expired_cookie(http).find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(sessions::cookie_name(request("GET", "[::1]:8080", "[::1]:1", true)),
            "nimbus_session_8080");
  EXPECT_EQ(sessions::cookie_name(request("GET", "[::1]", "[::1]:1", true)), "nimbus_session");
}

TEST_F(sessions_test, sessions_are_bounded) {
  session_settings small;
  small.max_sessions = 3;
  sessions s(tokens_, keys_, clock_, small);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(s.sign_in_with_token("rwtoken0123456789").id);
  EXPECT_EQ(s.size(), 3U);
}

}  // namespace
}  // namespace nimbus::web
