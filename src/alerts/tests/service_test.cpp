// The alerts service end to end in-process: a real SQLite file in a temp dir and its write
// queue, a real broker (MQTT notifications, presence events), registry (groups) and Pub/Sub
// service, a loopback webhook receiver (serve_http), the REST routes dispatched on a router, and
// a clock the test moves. Restarts are a new service over the same file. Every wait is bounded.
#include "alerts/service.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "alerts/alert_json.hpp"
#include "alerts/notifier.hpp"
#include "broker/broker.hpp"
#include "core/tests/temp_dir.hpp"
#include "pubsub/service.hpp"
#include "registry/certificate_authority.hpp"
#include "registry/registry.hpp"
#include "storage/database.hpp"
#include "storage/write_queue.hpp"
#include "tsdb/line_protocol.hpp"

namespace nimbus::alerts {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr auto wait_limit = 10s;

// Polls `done` until it holds or the wait limit passes: for what arrives on another thread
// after the exchange the test can wait for (a webhook's answer reaching the service).
bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + wait_limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// A manual clock the service's thread may read while the test moves it.
class test_clock final : public core::clock {
 public:
  core::steady_time now() const override { return core::steady_time{} + offset(); }
  std::int64_t unix_seconds() const override { return unix_millis() / 1000; }
  std::int64_t unix_millis() const override { return 1'700'000'000'000 + offset().count(); }
  void advance(std::chrono::milliseconds by) { offset_ms_ += by.count(); }

 private:
  std::chrono::milliseconds offset() const { return std::chrono::milliseconds(offset_ms_.load()); }
  std::atomic<std::int64_t> offset_ms_{0};
};

struct answer {
  unsigned status = 0;
  std::string text;
  json::value body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// What the webhook receiver got.
struct hook_request {
  std::string raw_path;
  std::string body;
  std::string event_id;
  std::string signature;
};

class alerts_service_test : public ::testing::Test {
 protected:
  alerts_service_test() : db_path_((dir_.path() / "nimbus.db").string()) {
    {
      storage::database db(db_path_);
      service::migrate(db);
    }
    writer_ = std::make_unique<storage::write_queue>(db_path_, "normal", 1ms);
    broker_ = std::make_unique<broker::broker>(config::mqtt_settings{}, clock_, auth_, nullptr);
    io_thread_ = std::thread([this] { io_.run(); });
  }

  ~alerts_service_test() override {
    recorders_.clear();
    service_.reset();
    if (pubsub_) pubsub_->stop();
    work_.reset();
    io_.stop();
    io_thread_.join();
    pubsub_.reset();
    receiver_.reset();
    writer_.reset();
  }

  // A new service over the database, as after a restart.
  void open(service_settings settings = {}) {
    service_.reset();
    settings.retry = {1ms, 2ms};
    service_ = std::make_unique<service>(*broker_, *writer_, clock_, devices_.get(), pubsub_.get(),
                                         io_, settings);
    {
      storage::database db(db_path_);
      service_->restore(db);
    }
    service_->start();
    router_ = net::http_router();
    service_->install(router_, nullptr);
  }

  // Lines of line protocol accepted by the store into database "nimbus", at the clock's time.
  void write(std::string_view lines) {
    auto parsed = tsdb::parse_lines(lines, tsdb::precision::ns, clock_.unix_millis() * 1'000'000);
    ASSERT_TRUE(parsed.errors.empty()) << parsed.errors[0].reason;
    service_->observe(tsdb::written_batch{"nimbus", "autogen", &parsed.points, {}, {}, {}});
  }

  void settle() { ASSERT_TRUE(service_->sync()); }

  // A request handed to the router, its answer to come.
  std::future<net::http_response> start_call(const std::string& method, const std::string& target,
                                             std::string body = "") {
    net::http_request request;
    request.method = method;
    request.target = target;
    const auto query = target.find('?');
    request.path = request.raw_path = target.substr(0, query);
    if (query != std::string::npos) request.query = target.substr(query + 1);
    request.body = std::move(body);
    auto answered = std::make_shared<std::promise<net::http_response>>();
    auto future = answered->get_future();
    router_.dispatch(std::move(request),
                     [answered](net::http_response r) { answered->set_value(std::move(r)); });
    return future;
  }

  answer call(const std::string& method, const std::string& target, std::string body = "") {
    auto future = start_call(method, target, std::move(body));
    if (future.wait_for(wait_limit) != std::future_status::ready) {
      ADD_FAILURE() << method << " " << target << ": no answer";
      return {};
    }
    auto response = future.get();
    answer out{response.status, response.body, nullptr, response.headers};
    if (!response.body.empty()) out.body = json::parse(response.body);
    return out;
  }

  // Records what the server publishes on `filter`.
  void record(const std::string& filter) {
    recorders_.push_back(broker_->subscribe_service(
        filter, [this](const broker::message_ptr& msg, const broker::client_identity*) {
          std::lock_guard lock(mutex_);
          published_.push_back(msg);
          changed_.notify_all();
        }));
  }
  std::vector<broker::message_ptr> published(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, wait_limit, [&] { return published_.size() >= count; });
    return published_;
  }

  // A loopback webhook receiver answering each request with the next of `statuses` (then 200).
  std::uint16_t start_receiver(std::deque<unsigned> statuses) {
    statuses_ = std::move(statuses);
    net::http_router hooks;
    hooks.add(
        "POST", "/hook/{device}",
        [this](const net::http_request& r) {
          std::lock_guard lock(mutex_);
          hooks_.push_back({r.raw_path, r.body, r.header("X-Nimbus-Event-Id").value_or(""),
                            r.header("X-Nimbus-Signature").value_or("")});
          changed_.notify_all();
          unsigned status = 200;
          if (!statuses_.empty()) {
            status = statuses_.front();
            statuses_.pop_front();
          }
          return net::http_response{status, "text/plain", {}, "ok"};
        },
        net::route_options{64 * 1024, nullptr});
    receiver_ = std::make_unique<receiver>(io_, std::move(hooks));
    return receiver_->acceptor.local_endpoint().port();
  }
  std::vector<hook_request> hooks(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, wait_limit, [&] { return hooks_.size() >= count; });
    return hooks_;
  }

  std::int64_t count_rows(const std::string& sql) {
    storage::database db(db_path_);
    auto rows = db.prepare(sql);
    return rows.step() ? rows.column_int(0) : -1;
  }

  struct receiver {
    receiver(asio::io_context& io, net::http_router r)
        : router(std::move(r)), acceptor(io, {asio::ip::address_v4::loopback(), 0}) {
      accept();
    }
    void accept() {
      acceptor.async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket s) {
        if (ec) return;
        net::serve_http(std::move(s), router, options);
        accept();
      });
    }
    net::http_router router;
    net::http_listener_options options;
    asio::ip::tcp::acceptor acceptor;
  };

  core::testing::temp_dir dir_;
  std::string db_path_;
  test_clock clock_;
  broker::local_authorizer auth_{true};
  std::unique_ptr<storage::write_queue> writer_;
  std::unique_ptr<broker::broker> broker_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread io_thread_;
  std::unique_ptr<registry::certificate_authority> ca_;
  std::unique_ptr<registry::registry> devices_;
  std::unique_ptr<pubsub::service> pubsub_;
  std::unique_ptr<service> service_;
  net::http_router router_;
  std::vector<broker::bus_subscription> recorders_;
  std::unique_ptr<receiver> receiver_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<broker::message_ptr> published_;
  std::vector<hook_request> hooks_;
  std::deque<unsigned> statuses_;
};

std::string rule_with(std::string_view name, std::string_view condition,
                      std::string_view notifications = "[]", std::string_view selection = "") {
  return fmt::format(R"({{"name":"{}","selection":{{"field":"t"{}}},"condition":{},)"
                     R"("notifications":{}}})",
                     name, selection, condition, notifications);
}

constexpr std::string_view above_10 = R"({"type":"threshold","operator":">","value":10})";

TEST(alerts_pure, hmac_times_and_webhook_verdicts) {
  // RFC 4231, test case 2.
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(format_time_ms(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(format_time_ms(0), "1970-01-01T00:00:00.000Z");
  const auto verdict = [](net::http_client_result r) { return webhook_outcome(r).verdict; };
  EXPECT_EQ(verdict(net::http_client_response{204, {}, ""}), send_verdict::sent);
  EXPECT_EQ(verdict(net::http_client_response{503, {}, ""}), send_verdict::retry);
  EXPECT_EQ(verdict(net::http_client_response{429, {}, ""}), send_verdict::retry);
  EXPECT_EQ(verdict(net::http_client_response{408, {}, ""}), send_verdict::retry);
  EXPECT_EQ(verdict(net::http_client_response{404, {}, ""}), send_verdict::failed);
  EXPECT_EQ(verdict(net::http_client_error{"connection refused", false}), send_verdict::retry);
  EXPECT_EQ(to_text(json::parse(R"({"a":35.0,"b":36.6,"c":[1,null,"x\n"]})")),
            R"({"a":35,"b":36.6,"c":[1,null,"x\n"]})");
}

TEST_F(alerts_service_test, the_tutorial_rule_is_seeded_once_disabled_and_its_deletion_is_kept) {
  open();
  auto got = call("GET", "/api/alert-rules/high_temperature");
  ASSERT_EQ(got.status, 200U) << got.text;
  EXPECT_FALSE(got.body.at("enabled").as_bool());
  EXPECT_EQ(got.body.at("condition").at("value").to_number<double>(), 35);
  EXPECT_FALSE(got.body.at("status").at("enabled").as_bool());
  EXPECT_EQ(got.body.at("status").at("notifications").at("sent").to_number<int>(), 0);
  EXPECT_EQ(call("DELETE", "/api/alert-rules/high_temperature").status, 204U);
  const auto missing = call("GET", "/api/alert-rules/high_temperature");
  EXPECT_EQ(missing.status, 404U);
  EXPECT_EQ(missing.body.at("error").at("field").as_string(), "");
  service_settings enabled;
  enabled.tutorial_rule = true;
  open(enabled);  // a restart, even with alerts.tutorial_rule, does not bring it back
  EXPECT_EQ(call("GET", "/api/alert-rules/high_temperature").status, 404U);
  EXPECT_EQ(call("DELETE", "/api/alert-rules/high_temperature").status, 404U);
}

TEST_F(alerts_service_test, a_hot_reading_raises_notifies_and_the_alert_outlives_a_restart) {
  service_settings settings;
  settings.tutorial_rule = true;
  open(settings);
  record("nimbus/alerts/#");
  write("sensor_data,device_id=dev1 temperature=36.5,humidity=40");
  settle();
  auto seen = published(1);
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0]->topic, "nimbus/alerts/dev1/high_temperature");
  const auto payload = json::parse(seen[0]->payload);
  EXPECT_EQ(payload.at("event").as_string(), "raised");
  EXPECT_EQ(payload.at("rule").as_string(), "high_temperature");
  EXPECT_TRUE(std::regex_match(std::string(payload.at("event_id").as_string()),
                               std::regex("1-[0-9a-f]{12}")));
  EXPECT_EQ(payload.at("alert").at("raised_at").as_string(), "2023-11-14T22:13:20.000Z");

  // The tutorial's shape, its four keys first.
  auto listed = call("GET", "/api/alerts");
  ASSERT_EQ(listed.status, 200U);
  EXPECT_TRUE(listed.text.starts_with(
      R"({"alerts":[{"device_id":"dev1","type":"high_temperature","value":36.5,"threshold":35,)"
      R"("id":1,"severity":"major","status":"active","acknowledged":false,)"))
      << listed.text;
  EXPECT_EQ(listed.body.at("count").to_number<int>(), 1);
  EXPECT_FALSE(listed.body.as_object().contains("next_page_token"));

  auto acked = call("POST", "/api/alerts/1/ack", R"({"note":"on it"})");
  ASSERT_EQ(acked.status, 200U) << acked.text;
  EXPECT_EQ(acked.body.at("status").as_string(), "acknowledged");
  EXPECT_EQ(acked.body.at("acknowledged_by").as_string(), "api");
  EXPECT_EQ(acked.body.at("history").as_array().back().at("note").as_string(), "on it");
  EXPECT_EQ(call("POST", "/api/alerts/1/ack").status, 409U);
  EXPECT_EQ(call("POST", "/api/alerts/99/ack").status, 404U);
  EXPECT_EQ(call("POST", "/api/alerts/1/ack", "{").body.at("error").at("field").as_string(), "");
  settle();
  seen = published(2);
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(json::parse(seen[1]->payload).at("event").as_string(), "acknowledged");

  open(settings);  // a restart: the alert, its history and the next id come back
  auto kept = call("GET", "/api/alerts/1");
  ASSERT_EQ(kept.status, 200U);
  EXPECT_EQ(kept.body.at("status").as_string(), "acknowledged");
  EXPECT_EQ(kept.body.at("history").as_array().size(), 2U);
  write("sensor_data,device_id=dev2 temperature=40");
  settle();
  EXPECT_EQ(call("GET", "/api/alerts?device_id=dev2").body.at("alerts").at(0).at("id"), 2);
  auto cleared = call("POST", "/api/alerts/1/clear");
  EXPECT_EQ(cleared.body.at("status").as_string(), "cleared");
  EXPECT_EQ(call("GET", "/api/alerts").body.at("count").to_number<int>(), 1);  // open: dev2's
  EXPECT_EQ(call("GET", "/api/alerts?status=cleared").body.at("alerts").at(0).at("id"), 1);
  EXPECT_EQ(call("GET", "/api/alerts?status=all").body.at("count").to_number<int>(), 2);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM alerts"), 2);
}

// Points are queued only for the fields enabled rules read (the filter is kept per field as
// rules change, not rebuilt from all of them): it must follow every kind of change.
TEST_F(alerts_service_test, points_reach_the_rules_through_every_rule_change) {
  open();
  const auto rule_on = [](std::string_view field, bool enabled) {
    return fmt::format(R"({{"selection":{{"field":"{}"}},"enabled":{},"condition":{}}})", field,
                       enabled, above_10);
  };
  const auto alerts_of = [this](std::string_view device) {
    settle();
    return call("GET", fmt::format("/api/alerts?device_id={}", device))
        .body.at("count")
        .to_number<int>();
  };
  ASSERT_EQ(call("PUT", "/api/alert-rules/a", rule_on("t", true)).status, 201U);
  ASSERT_EQ(call("PUT", "/api/alert-rules/b", rule_on("t", true)).status, 201U);
  ASSERT_EQ(call("DELETE", "/api/alert-rules/b").status, 204U);
  write("m,device_id=d1 t=20");  // `a` still reads t
  EXPECT_EQ(alerts_of("d1"), 1);
  ASSERT_EQ(call("PUT", "/api/alert-rules/a", rule_on("u", true)).status, 200U);
  write("m,device_id=d2 t=20\nm,device_id=d3 u=20");  // t is read by none now, u by `a`
  EXPECT_EQ(alerts_of("d2"), 0);
  EXPECT_EQ(alerts_of("d3"), 1);
  ASSERT_EQ(call("PUT", "/api/alert-rules/a", rule_on("u", false)).status, 200U);
  write("m,device_id=d4 u=20");
  EXPECT_EQ(alerts_of("d4"), 0);
  open();  // a restart counts the stored rules again
  write("m,device_id=d5 u=20");
  EXPECT_EQ(alerts_of("d5"), 0);
  ASSERT_EQ(call("PUT", "/api/alert-rules/a", rule_on("u", true)).status, 200U);
  write("m,device_id=d6 u=20");
  EXPECT_EQ(alerts_of("d6"), 1);
}

// Changes queued together share one wait for their writes, and each is answered as if alone:
// a change sees those queued before it, a read sees every change queued before it.
TEST_F(alerts_service_test, rule_changes_queued_together_are_answered_as_one_after_another) {
  open();
  constexpr std::string_view above_20 = R"({"type":"threshold","operator":">","value":20})";
  std::vector<std::pair<std::future<net::http_response>, unsigned>> queued;
  const auto queue = [&](const std::string& method, const std::string& target, unsigned status,
                         std::string body = "") {
    queued.emplace_back(start_call(method, target, std::move(body)), status);
  };
  queue("PUT", "/api/alert-rules/a", 201, rule_with("a", above_10));
  queue("PUT", "/api/alert-rules/b", 201, rule_with("b", above_10));
  queue("PUT", "/api/alert-rules/a", 200, rule_with("a", above_20));  // replaces the first
  queue("POST", "/api/alert-rules", 409, rule_with("b", above_10));   // b exists by then
  queue("DELETE", "/api/alert-rules/b", 204);
  queue("GET", "/api/alert-rules/b", 404);
  queue("POST", "/api/alert-rules/a/disable", 200);
  queue("PUT", "/api/alert-rules/c", 201, rule_with("c", above_10));
  queue("DELETE", "/api/alert-rules/c", 204);
  queue("PUT", "/api/alert-rules/c", 201, rule_with("c", above_10));  // created again
  queue("GET", "/api/alert-rules/a", 200);
  std::vector<net::http_response> answers;
  for (auto& [future, status] : queued) {
    ASSERT_EQ(future.wait_for(wait_limit), std::future_status::ready);
    answers.push_back(future.get());
    EXPECT_EQ(answers.back().status, status) << answers.size() << ": " << answers.back().body;
  }
  const auto a = json::parse(answers.back().body);
  EXPECT_FALSE(a.at("enabled").as_bool());
  EXPECT_TRUE(a.at("condition").at("value") == 20) << answers.back().body;
  write("m,device_id=d1 t=15");  // c raises; a is off (and would want > 20)
  settle();
  auto listed = call("GET", "/api/alerts");
  ASSERT_EQ(listed.body.at("count").to_number<int>(), 1) << listed.text;
  EXPECT_EQ(listed.body.at("alerts").at(0).at("type").as_string(), "c");
  open();  // what was answered is what was stored
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM alert_rules WHERE name IN ('a', 'c')"), 2);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM alert_rules WHERE name = 'b'"), 0);
  const auto after = call("GET", "/api/alert-rules/a");
  EXPECT_FALSE(after.body.at("enabled").as_bool());
  EXPECT_TRUE(after.body.at("condition").at("value") == 20);
}

TEST_F(alerts_service_test, rules_are_checked_stored_and_listed_with_their_status) {
  open();
  auto bad = call("POST", "/api/alert-rules", "not json");
  EXPECT_EQ(bad.status, 400U);
  EXPECT_EQ(bad.body.at("error").at("field").as_string(), "");
  bad = call("POST", "/api/alert-rules", rule_with("x", R"({"type":"threshold","operator":"=="})"));
  EXPECT_EQ(bad.status, 400U);
  EXPECT_FALSE(bad.body.at("error").at("field").as_string().empty());
  auto created = call("POST", "/api/alert-rules", rule_with("hot", above_10));
  ASSERT_EQ(created.status, 201U) << created.text;
  EXPECT_EQ(created.headers.at(0).second, "/api/alert-rules/hot");
  EXPECT_EQ(call("POST", "/api/alert-rules", rule_with("hot", above_10)).status, 409U);
  EXPECT_EQ(call("PUT", "/api/alert-rules/cold", rule_with("hot", above_10)).status, 400U);
  EXPECT_EQ(call("PUT", "/api/alert-rules/cold", rule_with("cold", above_10)).status, 201U);
  EXPECT_EQ(call("PUT", "/api/alert-rules/cold", rule_with("cold", above_10)).status, 200U);
  auto off = call("POST", "/api/alert-rules/cold/disable");
  EXPECT_FALSE(off.body.at("enabled").as_bool());
  auto all = call("GET", "/api/alert-rules");
  const auto& rules = all.body.at("rules").as_array();
  ASSERT_EQ(rules.size(), 3U);  // by name: cold, high_temperature, hot
  EXPECT_EQ(rules[0].at("name").as_string(), "cold");
  EXPECT_FALSE(rules[0].at("status").at("enabled").as_bool());
  EXPECT_EQ(rules[2].at("status").at("states").to_number<int>(), 0);
  EXPECT_EQ(call("DELETE", "/api/alert-rules/nothing").status, 404U);

  // Paging: three open alerts, two a page, ascending ids.
  for (int i = 1; i <= 3; ++i) write(fmt::format("m,device_id=d{} t=11", i));
  settle();
  EXPECT_EQ(call("GET", "/api/alerts?limit=0").body.at("error").at("field").as_string(), "limit");
  EXPECT_EQ(call("GET", "/api/alerts?status=x").status, 400U);
  auto first = call("GET", "/api/alerts?limit=2&type=hot");
  ASSERT_EQ(first.body.at("count").to_number<int>(), 2);
  EXPECT_TRUE(first.body.at("alerts").at(0).at("threshold") == 10);
  const std::string token(first.body.at("next_page_token").as_string());
  auto second = call("GET", "/api/alerts?limit=2&type=hot&page_token=" + token);
  ASSERT_EQ(second.body.at("count").to_number<int>(), 1);
  EXPECT_EQ(second.body.at("alerts").at(0).at("id"), 3);
  EXPECT_FALSE(second.body.as_object().contains("next_page_token"));
  EXPECT_EQ(call("GET", "/api/alerts?severity=critical").body.at("count").to_number<int>(), 0);

  // Deleting the rule clears its open alerts.
  EXPECT_EQ(call("DELETE", "/api/alert-rules/hot").status, 204U);
  EXPECT_EQ(call("GET", "/api/alerts").body.at("count").to_number<int>(), 0);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM alert_rules WHERE name = 'hot'"), 0);
}

TEST_F(alerts_service_test, webhooks_are_signed_retried_counted_and_keep_their_secret) {
  const auto port = start_receiver({503, 200});
  open();
  const std::string hook = fmt::format(
      R"([{{"type":"webhook","url":"http://127.0.0.1:{}/hook/{{device_id}}","secret":"s3cret",)"
      R"("max_attempts":3}}])",
      port);
  ASSERT_EQ(call("POST", "/api/alert-rules", rule_with("hot", above_10, hook)).status, 201U);
  auto shown = call("GET", "/api/alert-rules/hot");
  EXPECT_TRUE(shown.body.at("notifications").at(0).at("secret_set").as_bool());
  EXPECT_FALSE(shown.text.find("s3cret") != std::string::npos);

  write("m,device_id=dev/1 t=11");
  settle();
  ASSERT_EQ(hooks(1).size(), 1U);  // 503: retried after the backoff, on the service's clock
  ASSERT_TRUE(eventually([this] {
    return service_->prometheus_text().find("nimbus_alerts_notifications_retried_total 1\n") !=
           std::string::npos;
  }));
  clock_.advance(10ms);
  service_->wake();
  auto got = hooks(2);
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].raw_path, "/hook/dev%2F1");
  EXPECT_EQ(got[0].event_id, got[1].event_id);
  EXPECT_EQ(got[1].signature, "sha256=" + hmac_sha256_hex("s3cret", got[1].body));
  EXPECT_EQ(json::parse(got[1].body).at("event_id").as_string(), got[1].event_id);
  const auto notified = [this] {
    return call("GET", "/api/alert-rules/hot").body.at("status").at("notifications");
  };
  ASSERT_TRUE(eventually([&] { return notified().at("sent") == 1; }));
  settle();
  auto status = notified();
  EXPECT_EQ(status.at("failed").to_number<int>(), 0);
  EXPECT_EQ(status.at("last_error").as_string(), "HTTP 503");
  EXPECT_NE(service_->prometheus_text().find("nimbus_alerts_notifications_retried_total 1\n"),
            std::string::npos);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM alert_outbox"), 0);

  // A PUT without "secret" (a GET sent back) keeps it; a 400 is final.
  auto body = json::parse(rule_with("hot", above_10, hook)).as_object();
  body.at("notifications").as_array()[0].as_object().erase("secret");
  ASSERT_EQ(call("PUT", "/api/alert-rules/hot", json::serialize(body)).status, 200U);
  {
    std::lock_guard lock(mutex_);
    statuses_ = {400};
  }
  write("m,device_id=dev/1 t=5");  // cleared: notified
  settle();
  got = hooks(3);
  ASSERT_EQ(got.size(), 3U);
  EXPECT_EQ(json::parse(got[2].body).at("event").as_string(), "cleared");
  EXPECT_EQ(got[2].signature, "sha256=" + hmac_sha256_hex("s3cret", got[2].body));
  ASSERT_TRUE(eventually([&] { return notified().at("failed") == 1; }));
  status = notified();
  EXPECT_EQ(status.at("last_error").as_string(), "HTTP 400");
}

TEST_F(alerts_service_test, pubsub_notifications_carry_the_alert_as_attributes) {
  pubsub::service_settings settings;
  settings.dir = dir_.path() / "pubsub";
  settings.fsync = seglog::fsync_policy::never;
  pubsub_ = std::make_unique<pubsub::service>(nullptr, clock_, settings);
  pubsub_->start();
  const auto done = [](auto& promise) {
    return [&promise](pubsub::status s, auto) { promise.set_value(s.ok()); };
  };
  std::promise<bool> topic, subscription;
  pubsub::v1::Topic t;
  t.set_name("projects/nimbus/topics/alerts");
  pubsub_->create_topic(t, done(topic));
  ASSERT_TRUE(topic.get_future().get());
  pubsub::v1::Subscription s;
  s.set_name("projects/nimbus/subscriptions/alerts-sub");
  s.set_topic(t.name());
  pubsub_->create_subscription(s, done(subscription));
  ASSERT_TRUE(subscription.get_future().get());
  open();
  ASSERT_EQ(call("POST", "/api/alert-rules",
                 rule_with("hot", above_10, R"([{"type":"pubsub","topic":"alerts"}])"))
                .status,
            201U);
  write("m,device_id=dev1 t=12");
  settle();
  pubsub::v1::PullResponse pulled;
  for (auto deadline = std::chrono::steady_clock::now() + wait_limit;
       pulled.received_messages_size() == 0 && std::chrono::steady_clock::now() < deadline;) {
    pubsub::v1::PullRequest request;
    request.set_subscription(s.name());
    request.set_max_messages(10);
    request.set_return_immediately(true);
    std::promise<pubsub::v1::PullResponse> answered;
    pubsub_->pull(request, [&answered](pubsub::status, pubsub::v1::PullResponse r) {
      answered.set_value(std::move(r));
    });
    pulled = answered.get_future().get();
    if (pulled.received_messages_size() == 0) std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(pulled.received_messages_size(), 1);
  const auto& message = pulled.received_messages(0).message();
  EXPECT_EQ(message.attributes().at("type"), "hot");
  EXPECT_EQ(message.attributes().at("severity"), "major");
  EXPECT_EQ(message.attributes().at("device_id"), "dev1");
  EXPECT_EQ(message.attributes().at("event"), "raised");
  EXPECT_EQ(json::parse(message.data()).at("alert").at("value"), 12);
}

TEST_F(alerts_service_test, presence_events_raise_and_clear_offline_alerts) {
  open();
  ASSERT_EQ(call("POST", "/api/alert-rules",
                 R"({"name":"gone","selection":{},"condition":{"type":"offline","for":"1m"}})")
                .status,
            201U);
  const auto presence = [this](std::string_view kind) {
    auto msg = std::make_shared<broker::message>();
    msg->topic = fmt::format("$aws/events/presence/{}/dev9", kind);
    msg->payload = fmt::format(R"({{"clientId":"dev9","timestamp":{},"eventType":"{}"}})",
                               clock_.unix_millis(), kind);
    msg->qos = 1;
    broker_->publish(std::move(msg));
  };
  presence("disconnected");
  settle();
  EXPECT_EQ(call("GET", "/api/alerts?type=gone").body.at("count").to_number<int>(), 0);
  clock_.advance(61s);
  settle();
  auto listed = call("GET", "/api/alerts?type=gone");
  ASSERT_EQ(listed.body.at("count").to_number<int>(), 1);
  EXPECT_EQ(listed.body.at("alerts").at(0).at("device_id").as_string(), "dev9");
  EXPECT_TRUE(listed.body.at("alerts").at(0).at("threshold").is_null());
  presence("connected");
  settle();
  EXPECT_EQ(call("GET", "/api/alerts?type=gone").body.at("count").to_number<int>(), 0);
}

TEST_F(alerts_service_test, group_changes_reindex_at_once_and_unknown_names_are_shown) {
  ca_ = std::make_unique<registry::certificate_authority>(
      registry::certificate_authority::open_or_create((dir_.path() / "ca").string()));
  devices_ = std::make_unique<registry::registry>(
      "arn:aws:iot:us-east-1:000000000000:", "000000000000", *ca_, clock_);
  devices_->create_thing("dev1", {});
  devices_->create_thing_group("building", "", "", {});
  devices_->create_thing_group("floor-1", "building", "", {});
  open();
  ASSERT_EQ(
      call("POST", "/api/alert-rules",
           rule_with("hot", above_10, "[]", R"(,"devices":["dev1","ghost"],"groups":["building"])"))
          .status,
      201U);
  ASSERT_EQ(
      call("POST", "/api/alert-rules", rule_with("far", above_10, "[]", R"(,"groups":["nowhere"])"))
          .status,
      201U);
  auto status = call("GET", "/api/alert-rules/hot").body.at("status");
  EXPECT_EQ(status.at("unknown_devices"), json::parse(R"(["ghost"])"));
  EXPECT_EQ(status.at("unknown_groups"), json::parse("[]"));
  status = call("GET", "/api/alert-rules/far").body.at("status");
  EXPECT_EQ(status.at("unknown_groups"), json::parse(R"(["nowhere"])"));
  write("m,device_id=dev1 t=11");  // dev1 is in no group yet
  settle();
  EXPECT_EQ(call("GET", "/api/alerts").body.at("count").to_number<int>(), 0);
  devices_->add_thing_to_group("floor-1", "dev1");  // building through its child floor-1
  write("m,device_id=dev1 t=12");
  settle();
  EXPECT_EQ(call("GET", "/api/alerts").body.at("count").to_number<int>(), 1);
}

TEST_F(alerts_service_test, a_pending_start_is_stored_at_once_and_resumes_after_a_restart) {
  service_settings settings;
  settings.checkpoint_interval = std::chrono::hours(1);  // so only the pending start writes it
  open(settings);
  ASSERT_EQ(call("POST", "/api/alert-rules",
                 rule_with("hot", R"({"type":"threshold","operator":">","value":10,"for":"1m"})"))
                .status,
            201U);
  write("m,device_id=dev1 t=11");
  settle();
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM alert_states WHERE rule = 'hot'"), 1);
  EXPECT_EQ(call("GET", "/api/alert-rules/hot").body.at("status").at("states"), 1);
  open(settings);
  clock_.advance(61s);
  settle();
  EXPECT_EQ(call("GET", "/api/alerts?type=hot").body.at("count").to_number<int>(), 1);
}

TEST_F(alerts_service_test, a_full_queue_drops_points_instead_of_waiting) {
  service_settings settings;
  settings.tutorial_rule = true;
  settings.max_queued_points = 3;
  service_ = std::make_unique<service>(*broker_, *writer_, clock_, nullptr, nullptr, io_, settings);
  {
    storage::database db(db_path_);
    service_->restore(db);
  }
  // Not started: nothing takes points off the queue.
  write("m,device_id=a temperature=1\nm,device_id=b temperature=2\nm,device_id=c humidity=3");
  write("m,device_id=d temperature=4\nm,device_id=e temperature=5");
  const auto text = service_->prometheus_text();
  EXPECT_NE(text.find("nimbus_alerts_points_observed_total 3\n"), std::string::npos) << text;
  // A batch is shared, not copied: the first one's three points fill the queue (humidity's
  // too, though no rule watches it), the second's two are dropped.
  EXPECT_NE(text.find("nimbus_alerts_points_dropped_total 2\n"), std::string::npos) << text;
  service_->start();
  settle();
  EXPECT_NE(service_->prometheus_text().find("nimbus_alerts_points_queued 0\n"), std::string::npos);
}

}  // namespace
}  // namespace nimbus::alerts
