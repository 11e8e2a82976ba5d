// Session state machines of the broker core with an injected clock and fake connections.
#include "broker/broker.hpp"

#include <gtest/gtest.h>

namespace nimbus::broker {
namespace {

struct fake_link final : session_link {
  int wakes = 0;
  std::vector<mqtt::reason_code> kicks;
  void wake() override { ++wakes; }
  void kick(mqtt::reason_code reason) override { kicks.push_back(reason); }
};

struct broker_fixture : ::testing::Test {
  config::mqtt_settings settings;
  core::manual_clock clock;
  local_authorizer auth{true};
  std::unique_ptr<broker> b;
  void SetUp() override { b = std::make_unique<broker>(settings, clock, auth, nullptr); }

  message_ptr make(std::string topic, std::string payload, std::uint8_t qos, bool retain = false) {
    auto m = std::make_shared<message>();
    m->topic = std::move(topic);
    m->payload = std::move(payload);
    m->qos = qos;
    m->retain = retain;
    m->publisher = "publisher";
    return m;
  }
};

TEST_F(broker_fixture, routes_to_subscribers_with_downgraded_qos) {
  auto link = std::make_shared<fake_link>();
  auto s = b->attach("sub", mqtt::protocol_version::v5, true, 0, link).target;
  b->subscribe(s, "a/+", {1}, 3);
  auto r = b->publish(make("a/b", "x", 2));
  EXPECT_EQ(r.matched, 1U);
  ASSERT_EQ(s->queue.size(), 1U);
  EXPECT_EQ(s->queue.front().qos, 1);
  EXPECT_EQ(s->queue.front().subscription_ids, std::vector<std::uint32_t>{3});
  EXPECT_GE(link->wakes, 1);
}

TEST_F(broker_fixture, overlapping_subscriptions_deliver_once_at_highest_qos) {
  auto s =
      b->attach("sub", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(s, "a/#", {0}, 1);
  b->subscribe(s, "a/b", {2}, 2);
  b->publish(make("a/b", "x", 2));
  ASSERT_EQ(s->queue.size(), 1U);
  EXPECT_EQ(s->queue.front().qos, 2);
  EXPECT_EQ(s->queue.front().subscription_ids.size(), 2U);
}

TEST_F(broker_fixture, no_local_skips_own_messages) {
  auto s =
      b->attach("publisher", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>())
          .target;
  mqtt::subscription_options options{1, true, false, 0};
  b->subscribe(s, "t", options, 0);
  EXPECT_EQ(b->publish(make("t", "x", 1)).matched, 0U);
  EXPECT_TRUE(s->queue.empty());
}

TEST_F(broker_fixture, retained_messages_follow_retain_handling) {
  b->publish(make("r/1", "one", 1, true));
  b->publish(make("r/2", "two", 0, true));
  EXPECT_EQ(b->retained_count(), 2U);
  auto s =
      b->attach("sub", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(s, "r/#", {1, false, false, 1}, 0);
  EXPECT_EQ(s->queue.size(), 2U);
  EXPECT_TRUE(s->queue.front().retain);
  b->subscribe(s, "r/#", {1, false, false, 1}, 0);  // not new: nothing sent again
  EXPECT_EQ(s->queue.size(), 2U);
  b->subscribe(s, "r/1", {1, false, false, 2}, 0);  // 2: never
  EXPECT_EQ(s->queue.size(), 2U);
  b->publish(make("r/1", "", 0, true));  // empty retained payload deletes
  EXPECT_EQ(b->retained_count(), 1U);
}

TEST_F(broker_fixture, takeover_kicks_the_old_connection) {
  auto first = std::make_shared<fake_link>();
  auto second = std::make_shared<fake_link>();
  auto s1 = b->attach("dev", mqtt::protocol_version::v5, false, 100, first).target;
  auto r = b->attach("dev", mqtt::protocol_version::v5, false, 100, second);
  EXPECT_TRUE(r.session_present);
  EXPECT_EQ(r.target, s1);
  ASSERT_EQ(first->kicks.size(), 1U);
  EXPECT_EQ(first->kicks[0], mqtt::reason_code::session_taken_over);
  // The old connection closing later must not detach the new one.
  b->detach(s1, first.get(), close_kind::abnormal, std::nullopt, std::nullopt, "dev");
  EXPECT_EQ(s1->link.get(), second.get());
}

TEST_F(broker_fixture, persistent_session_queues_while_offline_and_expires) {
  auto link = std::make_shared<fake_link>();
  auto s = b->attach("p", mqtt::protocol_version::v5, true, 60, link).target;
  b->subscribe(s, "q", {1}, 0);
  b->detach(s, link.get(), close_kind::normal, std::nullopt, std::nullopt, "p");
  b->publish(make("q", "1", 1));
  b->publish(make("q", "0", 0));  // QoS 0 is not queued offline
  EXPECT_EQ(s->queue.size(), 1U);
  clock.advance(std::chrono::seconds(30));
  b->tick();
  EXPECT_EQ(b->session_count(), 1U);
  clock.advance(std::chrono::seconds(31));
  b->tick();
  EXPECT_EQ(b->session_count(), 0U);
  EXPECT_EQ(b->subscription_count(), 0U);
}

TEST_F(broker_fixture, clean_session_ends_at_disconnect) {
  auto link = std::make_shared<fake_link>();
  auto s = b->attach("c", mqtt::protocol_version::v311, true, 0, link).target;
  b->subscribe(s, "x", {0}, 0);
  b->detach(s, link.get(), close_kind::normal, std::nullopt, std::nullopt, "c");
  EXPECT_EQ(b->session_count(), 0U);
  EXPECT_EQ(b->subscription_count(), 0U);
}

TEST_F(broker_fixture, will_is_published_on_abnormal_close_only) {
  auto watcher =
      b->attach("w", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(watcher, "will/#", {1}, 0);
  mqtt::will_message will{"will/a", "gone", 1, false, {}};
  auto l1 = std::make_shared<fake_link>();
  auto a = b->attach("a", mqtt::protocol_version::v5, true, 0, l1).target;
  b->detach(a, l1.get(), close_kind::normal, will, std::nullopt, "a");
  EXPECT_TRUE(watcher->queue.empty());
  auto l2 = std::make_shared<fake_link>();
  a = b->attach("a", mqtt::protocol_version::v5, true, 0, l2).target;
  b->detach(a, l2.get(), close_kind::abnormal, will, std::nullopt, "a");
  ASSERT_EQ(watcher->queue.size(), 1U);
  EXPECT_EQ(watcher->queue.front().msg->payload, "gone");
}

TEST_F(broker_fixture, delayed_will_is_cancelled_by_reconnect) {
  auto watcher =
      b->attach("w", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(watcher, "will/#", {1}, 0);
  mqtt::will_message will{"will/a", "gone", 1, false, {}};
  will.props.will_delay_interval = 10;
  auto l1 = std::make_shared<fake_link>();
  auto a = b->attach("a", mqtt::protocol_version::v5, true, 100, l1).target;
  b->detach(a, l1.get(), close_kind::abnormal, will, std::nullopt, "a");
  clock.advance(std::chrono::seconds(5));
  b->tick();
  EXPECT_TRUE(watcher->queue.empty());
  b->attach("a", mqtt::protocol_version::v5, false, 100, std::make_shared<fake_link>());
  clock.advance(std::chrono::seconds(10));
  b->tick();
  EXPECT_TRUE(watcher->queue.empty());
  // Without a reconnect the will goes out once the delay passes.
  auto l3 = std::make_shared<fake_link>();
  auto c = b->attach("c", mqtt::protocol_version::v5, true, 100, l3).target;
  mqtt::will_message will_c{"will/c", "c gone", 1, false, {}};
  will_c.props.will_delay_interval = 3;
  b->detach(c, l3.get(), close_kind::abnormal, will_c, std::nullopt, "c");
  clock.advance(std::chrono::seconds(4));
  b->tick();
  ASSERT_EQ(watcher->queue.size(), 1U);
  EXPECT_EQ(watcher->queue.front().msg->payload, "c gone");
}

TEST_F(broker_fixture, full_queue_drops_new_messages_and_counts) {
  settings.max_queued_messages = 2;
  b = std::make_unique<broker>(settings, clock, auth, nullptr);
  auto s =
      b->attach("s", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(s, "t", {1}, 0);
  for (int i = 0; i < 5; ++i) b->publish(make("t", std::to_string(i), 1));
  EXPECT_EQ(s->queue.size(), 2U);
  EXPECT_EQ(s->queue.front().msg->payload, "0");
  EXPECT_EQ(b->metrics().messages_dropped.load(), 3U);
}

TEST_F(broker_fixture, message_shared_not_copied_per_subscriber) {
  std::vector<session_ptr> sessions;
  for (int i = 0; i < 10; ++i) {
    sessions.push_back(b->attach("s" + std::to_string(i), mqtt::protocol_version::v5, true, 0,
                                 std::make_shared<fake_link>())
                           .target);
    b->subscribe(sessions.back(), "fan/out", {0}, 0);
  }
  auto m = make("fan/out", std::string(4096, 'p'), 0);
  b->publish(m);
  for (auto& s : sessions) EXPECT_EQ(s->queue.front().msg.get(), m.get());
}

TEST_F(broker_fixture, congested_subscriber_holds_publishers_for_at_most_the_timeout) {
  settings.max_queued_messages = 2;
  settings.congestion_timeout = 5;
  b = std::make_unique<broker>(settings, clock, auth, nullptr);
  auto s =
      b->attach("stuck", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(s, "t", {1}, 0);
  for (int i = 0; i < 2; ++i) b->publish(make("t", std::to_string(i), 1));
  // The queue is full: the next message is queued anyway and holds its publisher's gate.
  auto gate = std::make_shared<congestion_gate>();
  bool cleared = false;
  gate->on_clear = [&cleared] { cleared = true; };
  b->publish(make("t", "2", 1), gate);
  gate->release();  // the publisher's own count: routing is over
  EXPECT_FALSE(cleared);
  EXPECT_EQ(s->queue.size(), 3U);
  clock.advance(std::chrono::seconds(4));
  b->tick();
  EXPECT_FALSE(cleared) << "released before congestion_timeout";
  clock.advance(std::chrono::seconds(1));
  b->tick();
  EXPECT_TRUE(cleared) << "still held after congestion_timeout";
  EXPECT_EQ(b->metrics().congestion_timeouts.load(), 1U);
  // What the queue took past its limit went by queue_full_policy (drop-new: the newest).
  ASSERT_EQ(s->queue.size(), 2U);
  EXPECT_EQ(s->queue.back().msg->payload, "1");
  // Until it drains, a full queue drops instead of holding anyone.
  auto next = std::make_shared<congestion_gate>();
  b->publish(make("t", "3", 1), next);
  EXPECT_EQ(next->remaining.load(), 1) << "a timed-out subscriber must not hold publishers";
  EXPECT_EQ(s->queue.size(), 2U);
}

TEST_F(broker_fixture, sessions_are_bounded_but_resuming_or_replacing_is_not_refused) {
  settings.max_sessions = 2;
  b = std::make_unique<broker>(settings, clock, auth, nullptr);
  auto link = [] { return std::make_shared<fake_link>(); };
  ASSERT_TRUE(b->attach("a", mqtt::protocol_version::v5, false, 60, link()).target);
  ASSERT_TRUE(b->attach("b", mqtt::protocol_version::v5, false, 60, link()).target);
  EXPECT_FALSE(b->attach("c", mqtt::protocol_version::v5, true, 0, link()).target);
  EXPECT_TRUE(b->attach("a", mqtt::protocol_version::v5, false, 60, link()).session_present);
  EXPECT_TRUE(b->attach("b", mqtt::protocol_version::v5, true, 0, link()).target);
  EXPECT_EQ(b->session_count(), 2U);
}

TEST_F(broker_fixture, retained_messages_are_bounded_in_count_and_bytes) {
  settings.max_retained_messages = 2;
  settings.max_retained_bytes = 100;
  b = std::make_unique<broker>(settings, clock, auth, nullptr);
  EXPECT_FALSE(b->publish(make("r/1", "x", 0, true)).quota_exceeded);
  EXPECT_FALSE(b->publish(make("r/2", "x", 0, true)).quota_exceeded);
  EXPECT_TRUE(b->publish(make("r/3", "x", 0, true)).quota_exceeded);
  EXPECT_FALSE(b->publish(make("r/1", "y", 0, true)).quota_exceeded) << "replacing is allowed";
  EXPECT_TRUE(b->publish(make("r/2", std::string(100, 'z'), 0, true)).quota_exceeded);
  EXPECT_FALSE(b->publish(make("r/2", "", 0, true)).quota_exceeded) << "deleting is allowed";
  EXPECT_FALSE(b->publish(make("r/3", "x", 0, true)).quota_exceeded) << "a freed slot is usable";
  EXPECT_EQ(b->retained_count(), 2U);
  EXPECT_EQ(b->metrics().retained_refused.load(), 2U);
}

TEST(pending_sockets, bounded_in_all_and_per_address) {
  pending_sockets pending(3, 2);
  limit refused{};
  EXPECT_TRUE(pending.try_add("10.0.0.1", refused));
  EXPECT_TRUE(pending.try_add("10.0.0.1", refused));
  EXPECT_FALSE(pending.try_add("10.0.0.1", refused));
  EXPECT_EQ(refused, limit::pending_per_address);
  EXPECT_TRUE(pending.try_add("10.0.0.2", refused));
  EXPECT_FALSE(pending.try_add("10.0.0.3", refused));
  EXPECT_EQ(refused, limit::pending_sockets);
  pending.remove("10.0.0.1");
  EXPECT_TRUE(pending.try_add("10.0.0.3", refused));
  EXPECT_EQ(pending.size(), 3U);
}

// The bus: services subscribe in-process, see who published, may publish from their handler,
// and stop receiving once their subscription is gone.
TEST_F(broker_fixture, services_receive_matching_messages_with_the_publisher) {
  std::vector<std::pair<std::string, std::string>> seen;  // topic, publisher client id
  auto sub = b->subscribe_service("$aws/things/+/shadow/update",
                                  [&](const message_ptr& msg, const client_identity* from) {
                                    seen.emplace_back(msg->topic, from ? from->client_id : "-");
                                  });
  auto client =
      b->attach("sub", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(client, "$aws/things/+/shadow/update", {1}, 0);
  client_identity device;
  device.client_id = "pi-1";
  auto r = b->publish(make("$aws/things/pi-1/shadow/update", "{}", 1), nullptr, &device);
  EXPECT_EQ(r.matched, 2U);  // the client and the service
  b->publish(make("$aws/things/pi-1/shadow/get", "{}", 1));
  b->publish(make("$aws/things/pi-2/shadow/update", "{}", 0));
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0],
            (std::pair<std::string, std::string>{"$aws/things/pi-1/shadow/update", "pi-1"}));
  EXPECT_EQ(seen[1], (std::pair<std::string, std::string>{"$aws/things/pi-2/shadow/update", "-"}));
  EXPECT_EQ(client->queue.size(), 2U);

  sub.reset();
  EXPECT_EQ(b->publish(make("$aws/things/pi-1/shadow/update", "{}", 1)).matched, 1U);
  EXPECT_EQ(seen.size(), 2U);
}

TEST_F(broker_fixture, a_service_may_publish_from_its_handler) {
  auto client =
      b->attach("sub", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(client, "reply/#", {1}, 0);
  b->subscribe(client, "request/#", {1}, 0);
  auto echo =
      b->subscribe_service("request/+", [&](const message_ptr& msg, const client_identity*) {
        b->publish(make("reply/" + msg->topic.substr(8), msg->payload, 1));
      });
  b->publish(make("request/a", "1", 1));
  b->publish(make("request/b", "2", 1));
  ASSERT_EQ(client->queue.size(), 4U);
  EXPECT_EQ(client->queue[0].msg->topic, "request/a");
  EXPECT_EQ(client->queue[1].msg->topic, "reply/a");
  EXPECT_EQ(client->queue[3].msg->topic, "reply/b");
}

TEST_F(broker_fixture, a_services_publish_holds_the_original_publishers_gate) {
  settings.max_queued_messages = 1;
  b = std::make_unique<broker>(settings, clock, auth, nullptr);
  auto slow =
      b->attach("slow", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(slow, "reply/#", {1}, 0);
  b->publish(make("reply/first", "fills the queue", 1));
  auto echo =
      b->subscribe_service("request/+", [&](const message_ptr& msg, const client_identity*) {
        b->publish(make("reply/" + msg->topic.substr(8), msg->payload, 1));
      });
  auto gate = std::make_shared<congestion_gate>();
  b->publish(make("request/a", "1", 1), gate);
  // Queued past the limit, not dropped: the device that sent request/a waits for the reply's
  // subscriber as it would for its own.
  EXPECT_EQ(slow->queue.size(), 2U);
  EXPECT_EQ(gate->remaining.load(), 2);
  EXPECT_EQ(b->metrics().messages_dropped.load(), 0U);
  // Without a message being routed on this thread there is no gate to take: a full queue drops.
  b->publish(make("reply/later", "x", 1));
  EXPECT_EQ(b->metrics().messages_dropped.load(), 1U);
}

TEST_F(broker_fixture, a_service_holds_the_publishers_acknowledgement_until_it_releases) {
  std::vector<publisher_hold> holds;
  auto queue = b->subscribe_service("out/#", [&](const message_ptr&, const client_identity*) {
    holds.push_back(b->hold_publisher());
  });
  auto gate = std::make_shared<congestion_gate>();
  bool cleared = false;
  gate->on_clear = [&cleared] { cleared = true; };
  b->publish(make("out/a", "1", 1), gate);
  gate->release();  // the publisher's own count: routing is over
  ASSERT_EQ(holds.size(), 1U);
  EXPECT_TRUE(holds[0]);
  EXPECT_FALSE(cleared);
  holds[0].release();
  EXPECT_TRUE(cleared);
  EXPECT_FALSE(gate->failed.load());

  // A lost message marks the gate failed: the publisher's connection closes unacknowledged.
  auto lost = std::make_shared<congestion_gate>();
  b->publish(make("out/b", "2", 1), lost);
  lost->release();
  holds.back().fail();
  EXPECT_EQ(lost->remaining.load(), 0);
  EXPECT_TRUE(lost->failed.load());

  // Nothing to hold for a server publish (no gate); dropping a hold releases it.
  b->publish(make("out/c", "3", 1));
  EXPECT_FALSE(holds.back());
  auto dropped = std::make_shared<congestion_gate>();
  b->publish(make("out/d", "4", 1), dropped);
  dropped->release();
  EXPECT_EQ(dropped->remaining.load(), 1);
  holds.clear();
  EXPECT_EQ(dropped->remaining.load(), 0);
}

TEST_F(broker_fixture, basic_ingest_topics_reach_services_only) {
  int seen = 0;
  auto rules = b->subscribe_service("$aws/rules/+/#",
                                    [&](const message_ptr&, const client_identity*) { ++seen; });
  auto client =
      b->attach("spy", mqtt::protocol_version::v5, true, 0, std::make_shared<fake_link>()).target;
  b->subscribe(client, "$aws/#", {1}, 0);
  EXPECT_EQ(b->publish(make("$aws/rules/r/sensor/1", "{}", 1)).matched, 1U);
  EXPECT_EQ(seen, 1);
  EXPECT_TRUE(client->queue.empty());
  EXPECT_TRUE(broker::is_basic_ingest("$aws/rules/r/x"));
  EXPECT_FALSE(broker::is_basic_ingest("$aws/things/x/shadow/update"));
}

TEST_F(broker_fixture, reserved_topics_include_what_services_reserve) {
  EXPECT_TRUE(b->is_reserved_topic("$SYS/broker/uptime"));
  EXPECT_TRUE(b->is_reserved_topic("$aws/events/presence/connected/x"));
  EXPECT_FALSE(b->is_reserved_topic("$aws/things/x/shadow/update/accepted"));
  b->reserve_topics("$aws/things/+/shadow/+/accepted");
  EXPECT_TRUE(b->is_reserved_topic("$aws/things/x/shadow/update/accepted"));
  EXPECT_FALSE(b->is_reserved_topic("$aws/things/x/shadow/update"));
  EXPECT_FALSE(b->is_reserved_topic("things/x/shadow/update/accepted"));
}

TEST_F(broker_fixture, retained_messages_are_listed_in_topic_order) {
  clock.advance(std::chrono::seconds(5));
  for (const char* topic : {"b", "a/1", "c", "a/2"}) b->publish(make(topic, topic, 1, true));
  auto a1 = b->retained("a/1");
  ASSERT_TRUE(a1);
  EXPECT_EQ(a1->msg->payload, "a/1");
  EXPECT_EQ(a1->modified_ms, clock.unix_millis());
  EXPECT_FALSE(b->retained("a"));
  auto page = b->list_retained("", 3);
  ASSERT_EQ(page.size(), 3U);
  EXPECT_EQ(page[0].msg->topic, "a/1");
  EXPECT_EQ(page[2].msg->topic, "b");
  page = b->list_retained("b", 3);
  ASSERT_EQ(page.size(), 1U);
  EXPECT_EQ(page[0].msg->topic, "c");
}

TEST_F(broker_fixture, reserved_aws_topics_and_sys_are_not_retained_for_clients) {
  b->publish(make("$aws/things/pi-1/shadow/update", "{}", 1, true));
  EXPECT_FALSE(b->retained("$aws/things/pi-1/shadow/update"));
  EXPECT_EQ(b->retained_count(), 0U);
  b->publish(make("$SYS/broker/x", "1", 0, true));
  EXPECT_EQ(b->retained_count(), 1U);  // kept for MQTT subscribers
  EXPECT_FALSE(b->retained("$SYS/broker/x"));
  EXPECT_TRUE(b->list_retained("", 10).empty());
}

}  // namespace
}  // namespace nimbus::broker
