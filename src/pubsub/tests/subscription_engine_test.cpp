// The subscription engine against an in-memory topic and a manual clock: leases, acks, nacks,
// back-off, dead letters, filters, ordering keys, exactly-once, retention, seek, snapshots,
// restore, the journal, detach and statistics.
#include "pubsub/subscription_engine.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "core/clock.hpp"
#include "pubsub/ack_id.hpp"
#include "pubsub/filter.hpp"
#include "pubsub/message.hpp"
#include "pubsub/message_store.hpp"

namespace nimbus::pubsub {
namespace {

using namespace std::chrono_literals;
using attribute_map = std::map<std::string, std::string, std::less<>>;

constexpr std::size_t any_bytes = std::size_t{1} << 30;

std::vector<std::uint64_t> seqs_of(const std::vector<delivery>& deliveries) {
  std::vector<std::uint64_t> out;
  for (const auto& d : deliveries) out.push_back(d.message.seq);
  return out;
}

std::vector<std::string> data_of(const std::vector<delivery>& deliveries) {
  std::vector<std::string> out;
  for (const auto& d : deliveries) out.push_back(d.message.message.data);
  return out;
}

std::vector<std::string> ids_of(const std::vector<delivery>& deliveries) {
  std::vector<std::string> out;
  for (const auto& d : deliveries) out.push_back(d.ack_id);
  return out;
}

std::vector<ack_outcome> all(std::size_t count, ack_outcome outcome) {
  return std::vector<ack_outcome>(count, outcome);
}

class subscription_engine_test : public ::testing::Test {
 protected:
  core::manual_clock clock;
  memory_message_store store;

  std::uint64_t publish(std::string data, std::string ordering_key = {},
                        attribute_map attributes = {}) {
    pubsub_message message;
    message.data = std::move(data);
    message.ordering_key = std::move(ordering_key);
    message.attributes = std::move(attributes);
    message.publish_time_ms = clock.unix_millis();
    return store.append(std::move(message));
  }

  void publish_many(int count) {
    for (int i = 0; i < count; ++i) publish("m" + std::to_string(i));
  }

  subscription_engine make(subscription_config config = {}, cursor_state restored = {},
                           std::uint32_t epoch = 1) {
    return subscription_engine(std::move(config), store, std::move(restored), clock, 0, epoch);
  }

  static subscription_config with_dead_letter(std::int32_t attempts = 5) {
    subscription_config config;
    config.dead_letter = dead_letter_policy{"projects/p/topics/dead", attempts};
    return config;
  }
};

// ------------------------------------------------------------------------------ basics

TEST_F(subscription_engine_test, pull_delivers_in_order_and_acks_settle) {
  publish("a");
  publish("b");
  publish("c");
  auto engine = make();

  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(data_of(got), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(seqs_of(got), (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(got[0].message.message.message_id, "1");
  EXPECT_EQ(got[0].delivery_attempt, 0);  // no dead-letter policy
  EXPECT_NE(got[0].ack_id, got[1].ack_id);
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());  // all leased

  EXPECT_EQ(engine.acknowledge({got[0].ack_id, got[2].ack_id}), all(2, ack_outcome::ok));
  auto state = engine.snapshot();
  EXPECT_EQ(state.floor, 1u);
  EXPECT_EQ(state.acked, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{2, 2}}));

  EXPECT_EQ(engine.acknowledge({got[1].ack_id}), all(1, ack_outcome::ok));
  state = engine.snapshot();
  EXPECT_EQ(state.floor, 3u);
  EXPECT_TRUE(state.acked.empty());

  clock.advance(60s);
  engine.tick();
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  const auto s = engine.statistics();
  EXPECT_EQ(s.delivered, 3u);
  EXPECT_EQ(s.acked, 3u);
  EXPECT_EQ(s.outstanding, 0u);
  EXPECT_EQ(s.undelivered, 0u);
  EXPECT_EQ(s.lease_expiries, 0u);
}

TEST_F(subscription_engine_test, pull_stops_at_max_messages) {
  publish_many(5);
  auto engine = make();
  EXPECT_EQ(seqs_of(engine.pull(2, any_bytes)), (std::vector<std::uint64_t>{0, 1}));
  EXPECT_EQ(seqs_of(engine.pull(2, any_bytes)), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(seqs_of(engine.pull(2, any_bytes)), (std::vector<std::uint64_t>{4}));
  EXPECT_TRUE(engine.pull(2, any_bytes).empty());
  EXPECT_TRUE(engine.pull(0, any_bytes).empty());
}

TEST_F(subscription_engine_test, pull_keeps_about_max_bytes_but_gives_at_least_one) {
  for (int i = 0; i < 3; ++i) publish(std::string(100, 'x'));  // 100 + the 1-byte id
  auto engine = make();
  const auto two = engine.pull(10, 250);
  EXPECT_EQ(seqs_of(two), (std::vector<std::uint64_t>{0, 1}));
  const auto one = engine.pull(10, 10);  // smaller than any message: still one
  EXPECT_EQ(seqs_of(one), (std::vector<std::uint64_t>{2}));
}

TEST_F(subscription_engine_test, ack_outcomes) {
  publish("a");
  auto engine = make();
  const auto got = engine.pull(1, any_bytes);
  ASSERT_EQ(got.size(), 1u);

  const std::vector<std::string> bad = {
      "not an ack id", encode_ack_id(ack_token{7, 1, 0, 1}),  // another owner
      encode_ack_id(ack_token{0, 1, 99, 1}),                  // a seq the topic never had
      encode_ack_id(ack_token{0, 1, 0, 0}),                   // a delivery never made
  };
  EXPECT_EQ(engine.acknowledge(bad), all(bad.size(), ack_outcome::invalid));
  EXPECT_EQ(engine.modify_ack_deadline(bad, 30s), all(bad.size(), ack_outcome::invalid));

  EXPECT_EQ(engine.acknowledge({got[0].ack_id}), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.acknowledge({got[0].ack_id}), all(1, ack_outcome::ok));  // again: fine
  // A modack of a settled message is ignored without exactly-once.
  EXPECT_EQ(engine.modify_ack_deadline({got[0].ack_id}, 30s), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.statistics().acked, 1u);
}

TEST_F(subscription_engine_test, without_exactly_once_any_valid_id_acks_its_seq) {
  publish("a");
  publish("b");
  auto first = make({}, {}, 1);
  const auto got = first.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 2u);

  // After its lease expired.
  clock.advance(11s);
  EXPECT_EQ(first.acknowledge({got[0].ack_id}), all(1, ack_outcome::ok));
  first.tick();
  EXPECT_EQ(seqs_of(first.pull(10, any_bytes)), (std::vector<std::uint64_t>{1}));

  // From a previous epoch (a restart).
  auto second = make({}, first.snapshot(), 2);
  EXPECT_EQ(second.acknowledge({got[1].ack_id}), all(1, ack_outcome::ok));
  EXPECT_TRUE(second.pull(10, any_bytes).empty());
  EXPECT_EQ(second.snapshot().floor, 2u);
}

// ------------------------------------------------------------------ leases and redelivery

TEST_F(subscription_engine_test, lease_expiry_redelivers_with_a_new_ack_id_and_attempt_2) {
  publish("x");
  auto engine = make(with_dead_letter());
  const auto first = engine.pull(10, any_bytes);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].delivery_attempt, 1);
  EXPECT_EQ(engine.next_deadline(), clock.now() + 10s);

  clock.advance(9s);
  engine.tick();
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());

  clock.advance(1s);
  engine.tick();
  EXPECT_EQ(engine.statistics().lease_expiries, 1u);
  EXPECT_EQ(engine.statistics().outstanding, 0u);
  EXPECT_EQ(engine.statistics().undelivered, 1u);
  const auto second = engine.pull(10, any_bytes);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].message.seq, 0u);
  EXPECT_EQ(second[0].message.message.data, "x");
  EXPECT_EQ(second[0].delivery_attempt, 2);
  EXPECT_NE(second[0].ack_id, first[0].ack_id);
}

TEST_F(subscription_engine_test, modify_ack_deadline_extends_the_lease) {
  publish("x");
  auto engine = make();
  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 1u);

  clock.advance(8s);
  EXPECT_EQ(engine.modify_ack_deadline({got[0].ack_id}, 30s), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.next_deadline(), clock.now() + 30s);
  clock.advance(10s);
  engine.tick();
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  clock.advance(21s);
  engine.tick();
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{0}));
}

TEST_F(subscription_engine_test, pull_takes_an_explicit_lease) {
  publish("x");
  auto engine = make();
  ASSERT_EQ(engine.pull(10, any_bytes, 45s).size(), 1u);
  EXPECT_EQ(engine.next_deadline(), clock.now() + 45s);
}

TEST_F(subscription_engine_test, reconfigure_keeps_the_deadline_of_leases_held) {
  publish("x");
  auto engine = make();
  ASSERT_EQ(engine.pull(10, any_bytes).size(), 1u);
  subscription_config longer;
  longer.ack_deadline = 60s;
  engine.reconfigure(longer);
  EXPECT_EQ(engine.next_deadline(), clock.now() + 10s);
  clock.advance(10s);
  ASSERT_EQ(engine.pull(10, any_bytes).size(), 1u);  // expired under the old deadline
  EXPECT_EQ(engine.next_deadline(), clock.now() + 60s);
}

TEST_F(subscription_engine_test, nack_redelivers_at_once_without_retry_policy) {
  publish("x");
  auto engine = make();
  const auto first = engine.pull(10, any_bytes);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(engine.modify_ack_deadline({first[0].ack_id}, 0s), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.statistics().nacked, 1u);
  EXPECT_TRUE(engine.has_deliverable());
  const auto second = engine.pull(10, any_bytes);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].message.seq, 0u);
  EXPECT_NE(second[0].ack_id, first[0].ack_id);
}

TEST_F(subscription_engine_test, nack_back_off_doubles_per_attempt_and_is_capped) {
  publish("x");
  subscription_config config;
  config.retry = retry_policy{1000ms, 3000ms};
  auto engine = make(config);

  auto current = engine.pull(10, any_bytes);
  for (const auto expected : {1000ms, 2000ms, 3000ms, 3000ms}) {
    ASSERT_EQ(current.size(), 1u);
    ASSERT_EQ(engine.modify_ack_deadline({current[0].ack_id}, 0s), all(1, ack_outcome::ok));
    EXPECT_EQ(engine.next_deadline(), clock.now() + expected);
    EXPECT_FALSE(engine.has_deliverable());
    clock.advance(expected - 1ms);
    EXPECT_TRUE(engine.pull(10, any_bytes).empty()) << expected.count();
    clock.advance(1ms);
    EXPECT_TRUE(engine.has_deliverable());
    current = engine.pull(10, any_bytes);
    EXPECT_EQ(seqs_of(current), (std::vector<std::uint64_t>{0})) << expected.count();
  }
}

TEST_F(subscription_engine_test, expiry_backs_off_too) {
  publish("x");
  subscription_config config;
  config.retry = retry_policy{5000ms, 600'000ms};
  auto engine = make(config);
  ASSERT_EQ(engine.pull(10, any_bytes).size(), 1u);
  clock.advance(10s);
  engine.tick();
  EXPECT_EQ(engine.next_deadline(), clock.now() + 5s);
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  clock.advance(5s);
  EXPECT_EQ(engine.pull(10, any_bytes).size(), 1u);
}

// ---------------------------------------------------------------------------- dead letters

TEST_F(subscription_engine_test, dead_letters_after_max_delivery_attempts) {
  publish("x");
  auto engine = make(with_dead_letter(5));
  for (std::int32_t attempt = 1; attempt <= 5; ++attempt) {
    const auto got = engine.pull(10, any_bytes);
    ASSERT_EQ(got.size(), 1u) << attempt;
    EXPECT_EQ(got[0].delivery_attempt, attempt);
    EXPECT_TRUE(engine.take_dead_letters().empty());
    ASSERT_EQ(engine.modify_ack_deadline({got[0].ack_id}, 0s), all(1, ack_outcome::ok));
  }
  EXPECT_EQ(engine.statistics().dead_lettered, 1u);
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  EXPECT_EQ(engine.statistics().outstanding, 0u);

  const auto letters = engine.take_dead_letters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].seq, 0u);
  EXPECT_EQ(letters[0].message.data, "x");
  EXPECT_TRUE(engine.take_dead_letters().empty());

  engine.settle(0);
  EXPECT_EQ(engine.snapshot().floor, 1u);
  EXPECT_TRUE(engine.snapshot().delivery_attempts.empty());
  clock.advance(subscription_engine::dead_letter_grace + 1s);
  engine.tick();
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  EXPECT_EQ(engine.statistics().undelivered, 0u);
}

TEST_F(subscription_engine_test, an_unsettled_dead_letter_comes_back_after_the_grace) {
  publish("x");
  auto engine = make(with_dead_letter(0));  // 0 means 5
  for (int attempt = 1; attempt <= 5; ++attempt) {
    const auto got = engine.pull(10, any_bytes);
    ASSERT_EQ(got.size(), 1u);
    clock.advance(10s);  // expiries count as attempts too
    engine.tick();
  }
  ASSERT_EQ(engine.take_dead_letters().size(), 1u);
  // The publish to the dead-letter topic failed: no settle.
  EXPECT_EQ(engine.next_deadline(), clock.now() + subscription_engine::dead_letter_grace);
  clock.advance(subscription_engine::dead_letter_grace);
  engine.tick();
  const auto again = engine.pull(10, any_bytes);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery_attempt, 6);
  ASSERT_EQ(engine.modify_ack_deadline({again[0].ack_id}, 0s), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.statistics().dead_lettered, 2u);
  EXPECT_EQ(engine.take_dead_letters().size(), 1u);
}

// --------------------------------------------------------------------------------- filters

TEST_F(subscription_engine_test, filtered_out_messages_are_acked_and_counted) {
  auto parsed = filter::parse(R"(attributes.kind = "keep")");
  ASSERT_TRUE(std::holds_alternative<filter>(parsed));
  subscription_config config;
  config.message_filter = std::get<filter>(std::move(parsed));
  for (int i = 0; i < 6; ++i)
    publish("m" + std::to_string(i), {}, {{"kind", i % 2 == 0 ? "keep" : "drop"}});
  auto engine = make(config);

  const auto got = engine.pull(10, any_bytes);
  EXPECT_EQ(seqs_of(got), (std::vector<std::uint64_t>{0, 2, 4}));
  EXPECT_EQ(engine.statistics().filtered, 3u);
  EXPECT_EQ(engine.acknowledge(ids_of(got)), all(3, ack_outcome::ok));
  EXPECT_EQ(engine.snapshot().floor, 6u);
  EXPECT_TRUE(engine.snapshot().acked.empty());
  EXPECT_EQ(engine.statistics().acked, 3u);
}

// ---------------------------------------------------------------------------------- ordering

class ordering_test : public subscription_engine_test {
 protected:
  static subscription_config ordered() {
    subscription_config config;
    config.message_ordering = true;
    return config;
  }
  // 3 keys x `per_key`, interleaved: A0 B0 C0 A1 B1 C1 ...
  void publish_keys(int per_key) {
    for (int i = 0; i < per_key; ++i)
      for (const char* key : {"A", "B", "C"}) publish(std::string(key) + std::to_string(i), key);
  }
  static std::map<std::string, std::vector<std::string>> by_key(
      const std::vector<delivery>& deliveries) {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& d : deliveries)
      out[d.message.message.ordering_key].push_back(d.message.message.data);
    return out;
  }
  static std::vector<std::string> expected_run(const std::string& key, int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) out.push_back(key + std::to_string(i));
    return out;
  }
};

TEST_F(ordering_test, each_key_is_delivered_in_order) {
  publish_keys(100);
  auto engine = make(ordered());
  std::vector<delivery> everything;
  for (int round = 0; round < 100; ++round) {
    auto got = engine.pull(7, any_bytes);
    if (got.empty()) break;
    EXPECT_EQ(engine.acknowledge(ids_of(got)), all(got.size(), ack_outcome::ok));
    for (auto& d : got) everything.push_back(std::move(d));
  }
  ASSERT_EQ(everything.size(), 300u);
  const auto keys = by_key(everything);
  for (const char* key : {"A", "B", "C"}) EXPECT_EQ(keys.at(key), expected_run(key, 0, 100)) << key;
  EXPECT_EQ(engine.snapshot().floor, 300u);
}

TEST_F(ordering_test, a_key_waits_until_its_outstanding_messages_are_settled) {
  publish("A0", "A");
  publish("B0", "B");
  auto engine = make(ordered());
  const auto first = engine.pull(10, any_bytes);
  ASSERT_EQ(data_of(first), (std::vector<std::string>{"A0", "B0"}));

  publish("A1", "A");
  publish("B1", "B");
  publish("C0", "C");
  publish("u", "");  // no key: unordered
  EXPECT_EQ(data_of(engine.pull(10, any_bytes)), (std::vector<std::string>{"C0", "u"}));
  EXPECT_EQ(engine.statistics().undelivered, 2u);  // A1 and B1, held
  EXPECT_FALSE(engine.has_deliverable());

  EXPECT_EQ(engine.acknowledge({first[0].ack_id}), all(1, ack_outcome::ok));
  EXPECT_TRUE(engine.has_deliverable());
  EXPECT_EQ(data_of(engine.pull(10, any_bytes)), (std::vector<std::string>{"A1"}));
  EXPECT_EQ(engine.acknowledge({first[1].ack_id}), all(1, ack_outcome::ok));
  EXPECT_EQ(data_of(engine.pull(10, any_bytes)), (std::vector<std::string>{"B1"}));
  EXPECT_EQ(engine.statistics().undelivered, 0u);
}

TEST_F(ordering_test, a_nack_rewinds_only_its_key) {
  publish_keys(100);
  auto engine = make(ordered());
  const auto first = engine.pull(1000, any_bytes);
  ASSERT_EQ(first.size(), 300u);
  std::map<std::string, std::vector<const delivery*>> keyed;
  for (const auto& d : first) keyed[d.message.message.ordering_key].push_back(&d);

  std::vector<std::string> early_b;
  for (int i = 0; i < 50; ++i) early_b.push_back(keyed["B"][static_cast<std::size_t>(i)]->ack_id);
  EXPECT_EQ(engine.acknowledge(early_b), all(50, ack_outcome::ok));
  EXPECT_EQ(engine.modify_ack_deadline({keyed["B"][50]->ack_id}, 0s), all(1, ack_outcome::ok));
  // B50..B99 went back; A and C keep their leases.
  EXPECT_EQ(engine.statistics().outstanding, 200u);

  const auto again = engine.pull(1000, any_bytes);
  EXPECT_EQ(data_of(again), expected_run("B", 50, 100));
  EXPECT_TRUE(engine.pull(1000, any_bytes).empty());

  std::vector<std::string> rest = ids_of(again);
  for (const char* key : {"A", "C"})
    for (const auto* d : keyed[key]) rest.push_back(d->ack_id);
  EXPECT_EQ(engine.acknowledge(rest), all(rest.size(), ack_outcome::ok));
  EXPECT_EQ(engine.snapshot().floor, 300u);
  EXPECT_EQ(engine.statistics().outstanding, 0u);
}

TEST_F(ordering_test, an_expiry_rewinds_the_key_from_the_expired_message) {
  publish("A0", "A");
  auto engine = make(ordered());
  const auto first = engine.pull(10, any_bytes);
  ASSERT_EQ(first.size(), 1u);
  clock.advance(5s);
  publish("A1", "A");
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());  // A1 waits for A0
  clock.advance(5s);                                // A0's lease ends
  EXPECT_EQ(data_of(engine.pull(10, any_bytes)), (std::vector<std::string>{"A0", "A1"}));
}

// ----------------------------------------------------------------------------- exactly-once

class exactly_once_test : public subscription_engine_test {
 protected:
  static subscription_config exactly_once() {
    subscription_config config;
    config.exactly_once = true;
    return config;
  }
};

TEST_F(exactly_once_test, an_expired_lease_is_stale) {
  publish("x");
  auto engine = make(exactly_once());
  const auto first = engine.pull(10, any_bytes);
  ASSERT_EQ(first.size(), 1u);
  clock.advance(10s);  // the deadline itself: expired, even before tick()
  EXPECT_EQ(engine.acknowledge({first[0].ack_id}), all(1, ack_outcome::stale));
  EXPECT_EQ(engine.modify_ack_deadline({first[0].ack_id}, 30s), all(1, ack_outcome::stale));
  const auto second = engine.pull(10, any_bytes);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(engine.acknowledge({second[0].ack_id}), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.acknowledge({"garbage"}), all(1, ack_outcome::invalid));
}

TEST_F(exactly_once_test, a_superseded_delivery_is_stale) {
  publish("x");
  auto engine = make(exactly_once());
  const auto first = engine.pull(10, any_bytes);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(engine.modify_ack_deadline({first[0].ack_id}, 0s), all(1, ack_outcome::ok));
  const auto second = engine.pull(10, any_bytes);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(engine.acknowledge({first[0].ack_id}), all(1, ack_outcome::stale));
  EXPECT_EQ(engine.modify_ack_deadline({first[0].ack_id}, 0s), all(1, ack_outcome::stale));
  EXPECT_EQ(engine.acknowledge({second[0].ack_id}), all(1, ack_outcome::ok));
}

TEST_F(exactly_once_test, a_second_ack_is_stale_and_nothing_comes_back) {
  publish("x");
  auto engine = make(exactly_once());
  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(engine.acknowledge({got[0].ack_id}), all(1, ack_outcome::ok));
  EXPECT_EQ(engine.acknowledge({got[0].ack_id}), all(1, ack_outcome::stale));
  clock.advance(60s);
  engine.tick();
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
}

// Exactly-once leases outlive their engine (a restart): an earlier engine's ack id acks until
// its deadline, the message is not handed out again meanwhile, and once it expires the old id
// is stale and the message comes back as the next delivery.
TEST_F(exactly_once_test, an_earlier_engines_lease_holds_until_its_deadline) {
  publish("x");
  publish("y");
  auto before = make(exactly_once(), {}, 1);
  const auto old = before.pull(10, any_bytes);
  ASSERT_EQ(old.size(), 2u);
  clock.advance(4s);
  EXPECT_EQ(before.modify_ack_deadline({old[1].ack_id}, 20s), all(1, ack_outcome::ok));

  auto after = make(exactly_once(), before.snapshot(), 2);
  EXPECT_TRUE(after.pull(10, any_bytes).empty());  // both still leased
  EXPECT_EQ(after.statistics().outstanding, 2u);
  EXPECT_EQ(after.acknowledge({old[0].ack_id}), all(1, ack_outcome::ok));
  clock.advance(10s);  // x's lease would have ended; y's was extended to 24 s
  after.tick();
  EXPECT_TRUE(after.pull(10, any_bytes).empty());
  clock.advance(10s);
  after.tick();
  EXPECT_EQ(after.acknowledge({old[1].ack_id}), all(1, ack_outcome::stale));
  const auto again = after.pull(10, any_bytes);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message.message.data, "y");
  EXPECT_EQ(after.acknowledge({again[0].ack_id}), all(1, ack_outcome::ok));
  EXPECT_TRUE(after.pull(10, any_bytes).empty());
}

// The journal carries the leases too: replayed over the engine's starting cursor it gives the
// snapshot, and an engine made from it honours the old ids.
TEST_F(exactly_once_test, the_journal_restores_leases_like_a_snapshot) {
  publish_many(4);
  auto before = make(exactly_once(), {}, 1);
  (void)before.take_journal();
  const auto old = before.pull(10, any_bytes);
  ASSERT_EQ(old.size(), 4u);
  EXPECT_EQ(before.acknowledge({old[0].ack_id}), all(1, ack_outcome::ok));
  EXPECT_EQ(before.modify_ack_deadline({old[1].ack_id}, 0s), all(1, ack_outcome::ok));  // nack
  EXPECT_EQ(before.modify_ack_deadline({old[2].ack_id}, 60s), all(1, ack_outcome::ok));
  cursor_state replayed;
  for (const auto& event : before.take_journal()) apply_event(replayed, event);
  EXPECT_EQ(replayed, before.snapshot());
  EXPECT_EQ(replayed.leases.size(), 2u);  // seqs 2 and 3; 0 acked, 1 nacked

  auto after = make(exactly_once(), replayed, 2);
  EXPECT_EQ(after.acknowledge({old[2].ack_id, old[3].ack_id}), all(2, ack_outcome::ok));
  const auto rest = after.pull(10, any_bytes);
  ASSERT_EQ(seqs_of(rest), (std::vector<std::uint64_t>{1}));
}

// Without exactly-once, leases die with the engine: the message is delivered again at once.
TEST_F(subscription_engine_test, plain_leases_do_not_outlive_their_engine) {
  publish("x");
  auto before = make({}, {}, 1);
  ASSERT_EQ(before.pull(10, any_bytes).size(), 1u);
  EXPECT_TRUE(before.snapshot().leases.empty());
  auto after = make({}, before.snapshot(), 2);
  EXPECT_EQ(after.pull(10, any_bytes).size(), 1u);
}

// --------------------------------------------------------------------------------- retention

TEST_F(subscription_engine_test, messages_past_retention_are_dropped_and_counted) {
  subscription_config config;
  config.retention = 10min;
  publish_many(3);  // at t0
  clock.advance(5min);
  publish("late-1");
  publish("late-2");
  auto engine = make(config);
  const auto got = engine.pull(2, any_bytes);
  ASSERT_EQ(seqs_of(got), (std::vector<std::uint64_t>{0, 1}));
  EXPECT_EQ(engine.acknowledge({got[1].ack_id}), all(1, ack_outcome::ok));

  clock.advance(5min + 1s);  // t0 + 10 min 1 s: the first three are too old
  engine.tick();
  EXPECT_EQ(engine.statistics().expired, 2u);  // seq 0 (leased) and 2 (never delivered)
  EXPECT_EQ(engine.statistics().outstanding, 0u);
  EXPECT_EQ(engine.snapshot().floor, 3u);
  EXPECT_EQ(data_of(engine.pull(10, any_bytes)), (std::vector<std::string>{"late-1", "late-2"}));
}

TEST_F(subscription_engine_test, messages_purged_from_the_store_count_as_expired) {
  publish_many(4);
  auto engine = make();
  ASSERT_EQ(engine.pull(1, any_bytes).size(), 1u);
  store.purge_before(2);
  engine.tick();
  EXPECT_EQ(engine.statistics().expired, 2u);
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{2, 3}));
}

// -------------------------------------------------------------------------------------- seek

TEST_F(subscription_engine_test, seek_back_in_time_with_retain_acked_redelivers) {
  subscription_config config;
  config.retain_acked_messages = true;
  const std::int64_t t0 = clock.unix_millis();
  publish_many(3);
  clock.advance(1s);
  const std::int64_t t1 = clock.unix_millis();
  publish("late-1");
  publish("late-2");
  auto engine = make(config);
  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(engine.acknowledge(ids_of(got)), all(5, ack_outcome::ok));
  EXPECT_EQ(engine.snapshot().floor, 5u);

  engine.seek_to_time(t1);
  EXPECT_EQ(engine.snapshot().floor, 3u);
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{3, 4}));
  engine.seek_to_time(t0);
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
}

TEST_F(subscription_engine_test, seek_back_without_retain_acked_returns_only_unacked) {
  const std::int64_t t0 = clock.unix_millis();
  publish_many(3);
  auto engine = make();
  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(engine.acknowledge({got[1].ack_id}), all(1, ack_outcome::ok));
  engine.seek_to_time(t0);
  EXPECT_EQ(engine.statistics().outstanding, 0u);  // leases dropped
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{0, 2}));
}

TEST_F(subscription_engine_test, seek_forward_settles_what_came_before) {
  publish_many(3);
  clock.advance(1s);
  const std::int64_t t1 = clock.unix_millis();
  publish("late");
  auto engine = make();
  engine.seek_to_time(t1);
  EXPECT_EQ(engine.snapshot().floor, 3u);
  EXPECT_EQ(data_of(engine.pull(10, any_bytes)), (std::vector<std::string>{"late"}));
  EXPECT_EQ(engine.statistics().expired, 0u);
}

TEST_F(subscription_engine_test, snapshot_and_seek_to_it) {
  publish_many(5);
  auto engine = make();
  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(engine.acknowledge({got[0].ack_id, got[2].ack_id}), all(2, ack_outcome::ok));
  const cursor_state saved = engine.snapshot();
  EXPECT_EQ(saved.floor, 1u);
  EXPECT_EQ(saved.acked, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{2, 2}}));

  EXPECT_EQ(engine.acknowledge({got[1].ack_id, got[3].ack_id, got[4].ack_id}),
            all(3, ack_outcome::ok));
  EXPECT_EQ(engine.snapshot().floor, 5u);
  engine.seek_to_state(saved);
  EXPECT_EQ(engine.snapshot(), saved);
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{1, 3, 4}));
}

// ---------------------------------------------------------------------- restore and journal

TEST_F(subscription_engine_test, a_restored_cursor_honours_acked_ranges_and_advances_the_floor) {
  publish_many(10);
  cursor_state restored;
  restored.acked = {{0, 3}, {6, 7}};
  auto engine = make({}, restored);
  const auto state = engine.snapshot();
  EXPECT_EQ(state.floor, 4u);
  EXPECT_EQ(state.acked, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{6, 7}}));
  EXPECT_EQ(engine.statistics().undelivered, 4u);  // 4, 5, 8, 9
  EXPECT_EQ(seqs_of(engine.pull(10, any_bytes)), (std::vector<std::uint64_t>{4, 5, 8, 9}));
}

TEST_F(subscription_engine_test, a_restored_cursor_carries_delivery_attempts_on) {
  publish_many(2);
  cursor_state restored;
  restored.delivery_attempts = {{1, 3}};
  auto engine = make(with_dead_letter(), restored);
  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].delivery_attempt, 1);
  EXPECT_EQ(got[1].delivery_attempt, 4);
  EXPECT_EQ(engine.snapshot().delivery_attempts,
            (std::map<std::uint64_t, std::int32_t>{{0, 1}, {1, 4}}));
}

TEST_F(subscription_engine_test, the_journal_lists_acks_and_replays_to_the_snapshot) {
  publish_many(6);
  auto engine = make(with_dead_letter());
  cursor_state replayed = engine.snapshot();
  EXPECT_TRUE(engine.take_journal().empty());

  const auto got = engine.pull(10, any_bytes);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(engine.acknowledge({got[0].ack_id, got[1].ack_id, got[3].ack_id}),
            all(3, ack_outcome::ok));
  EXPECT_EQ(engine.modify_ack_deadline({got[4].ack_id}, 0s), all(1, ack_outcome::ok));

  const auto journal = engine.take_journal();
  std::vector<cursor_event> acks;
  for (const auto& event : journal)
    if (event.what == cursor_event::kind::ack) acks.push_back(event);
  EXPECT_EQ(acks, (std::vector<cursor_event>{{cursor_event::kind::ack, 0, 1, 0},
                                             {cursor_event::kind::ack, 3, 3, 0}}));
  for (const auto& event : journal) apply_event(replayed, event);
  EXPECT_EQ(replayed, engine.snapshot());
  EXPECT_EQ(replayed.floor, 2u);
  EXPECT_EQ(replayed.delivery_attempts,
            (std::map<std::uint64_t, std::int32_t>{{2, 1}, {4, 1}, {5, 1}}));
  EXPECT_TRUE(engine.take_journal().empty());

  // A seek restates the cursor; the replay still agrees.
  engine.seek_to_time(0);
  ASSERT_EQ(engine.pull(10, any_bytes).size(), 3u);
  for (const auto& event : engine.take_journal()) apply_event(replayed, event);
  EXPECT_EQ(replayed, engine.snapshot());
}

// ------------------------------------------------------------------------- detach and stats

TEST_F(subscription_engine_test, detach_drops_the_backlog) {
  publish_many(3);
  auto engine = make();
  ASSERT_EQ(engine.pull(1, any_bytes).size(), 1u);
  engine.detach();
  EXPECT_TRUE(engine.is_detached());
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  publish("after");
  EXPECT_TRUE(engine.pull(10, any_bytes).empty());
  EXPECT_FALSE(engine.has_deliverable());
  EXPECT_EQ(engine.next_deadline(), std::nullopt);
  const auto s = engine.statistics();
  EXPECT_EQ(s.undelivered, 0u);
  EXPECT_EQ(s.outstanding, 0u);
  EXPECT_EQ(s.oldest_unacked_publish_ms, 0);
}

TEST_F(subscription_engine_test, statistics) {
  const std::int64_t t0 = clock.unix_millis();
  publish("a");
  clock.advance(1s);
  const std::int64_t t1 = clock.unix_millis();
  publish("b");
  publish("c");
  publish("d");
  auto engine = make();
  EXPECT_EQ(engine.statistics().undelivered, 4u);
  EXPECT_EQ(engine.statistics().oldest_unacked_publish_ms, t0);

  const auto got = engine.pull(2, any_bytes);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(engine.modify_ack_deadline({got[1].ack_id}, 0s), all(1, ack_outcome::ok));
  auto s = engine.statistics();
  EXPECT_EQ(s.outstanding, 1u);
  EXPECT_EQ(s.undelivered, 3u);  // c, d, and b again
  EXPECT_EQ(s.delivered, 2u);
  EXPECT_EQ(s.nacked, 1u);

  EXPECT_EQ(engine.acknowledge({got[0].ack_id}), all(1, ack_outcome::ok));
  s = engine.statistics();
  EXPECT_EQ(s.oldest_unacked_publish_ms, t1);
  EXPECT_EQ(s.acked, 1u);
  EXPECT_EQ(s.outstanding, 0u);
}

TEST_F(subscription_engine_test, next_deadline_and_has_deliverable) {
  auto engine = make();
  EXPECT_EQ(engine.next_deadline(), std::nullopt);
  EXPECT_FALSE(engine.has_deliverable());
  publish("x");
  EXPECT_TRUE(engine.has_deliverable());
  ASSERT_EQ(engine.pull(10, any_bytes).size(), 1u);
  EXPECT_FALSE(engine.has_deliverable());
  EXPECT_EQ(engine.next_deadline(), clock.now() + 10s);
  clock.advance(10s);
  EXPECT_TRUE(engine.has_deliverable());  // the lease is due, before any tick()
  engine.tick();
  EXPECT_EQ(engine.next_deadline(), std::nullopt);
  EXPECT_TRUE(engine.has_deliverable());
}

}  // namespace
}  // namespace nimbus::pubsub

namespace nimbus::pubsub {
namespace {

// Flow control: what a holder (a stream, a push sender) has counts until each message is acked,
// nacked or expires, by whichever call.
TEST_F(subscription_engine_test, leases_are_counted_per_holder_until_settled) {
  publish_many(6);
  auto engine = make();
  const auto first = engine.pull(2, any_bytes, std::nullopt, 7);
  const auto second = engine.pull(3, any_bytes, std::nullopt, 8);
  const auto untracked = engine.pull(1, any_bytes);
  ASSERT_EQ(first.size(), 2U);
  ASSERT_EQ(second.size(), 3U);
  ASSERT_EQ(untracked.size(), 1U);
  EXPECT_EQ(engine.leased_to(7).messages, 2U);
  EXPECT_EQ(engine.leased_to(7).bytes, first[0].message.bytes() + first[1].message.bytes());
  EXPECT_EQ(engine.leased_to(8).messages, 3U);
  EXPECT_EQ(engine.leased_to(0).messages, 0U);  // 0 tracks nobody

  engine.acknowledge({first[0].ack_id});
  EXPECT_EQ(engine.leased_to(7).messages, 1U);
  engine.modify_ack_deadline({first[1].ack_id}, 0s);  // a nack releases too
  EXPECT_EQ(engine.leased_to(7).messages, 0U);
  EXPECT_EQ(engine.leased_to(7).bytes, 0U);
  engine.modify_ack_deadline({second[0].ack_id}, 60s);  // an extension keeps it held
  EXPECT_EQ(engine.leased_to(8).messages, 3U);

  clock.advance(11s);  // the other two leases expire
  engine.tick();
  EXPECT_EQ(engine.leased_to(8).messages, 1U);
  clock.advance(60s);
  engine.tick();
  EXPECT_EQ(engine.leased_to(8).messages, 0U);

  // Redelivered to another holder: counted there only.
  const auto again = engine.pull(10, any_bytes, std::nullopt, 9);
  EXPECT_EQ(engine.leased_to(9).messages, again.size());
  EXPECT_EQ(engine.leased_to(8).messages, 0U);
}

}  // namespace
}  // namespace nimbus::pubsub
