#include "bridge/forward_queue.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bridge/queued_message.hpp"
#include "core/log.hpp"
#include "core/tests/temp_dir.hpp"

namespace nimbus::bridge {
namespace {

namespace fs = std::filesystem;

// A directory of the test's own: "forward-queue-" + the name given.
struct temp_dir : core::testing::temp_dir {
  explicit temp_dir(const std::string& name) : core::testing::temp_dir("forward-queue-" + name) {}
};

// A file tree's contents, by path relative to its root.
using tree = std::map<fs::path, std::string>;

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;  // deleted meanwhile
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Subdirectories in `order` first (messages before position: see kill_copy).
tree snapshot(const fs::path& root,
              const std::vector<std::string>& order = {"messages", "position"}) {
  tree t;
  for (const auto& sub : order) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root / sub, ec)) {
      if (!entry.is_regular_file()) continue;
      if (auto bytes = read_file(entry.path())) t[fs::relative(entry.path(), root)] = *bytes;
    }
  }
  return t;
}

void restore(const fs::path& root, const tree& t) {
  fs::remove_all(root);
  fs::create_directories(root / "messages");
  fs::create_directories(root / "position");
  for (const auto& [path, bytes] : t) write_file(root / path, bytes);
}

struct fixture {
  explicit fixture(const std::string& name, queue_settings bound = {},
                   std::uint64_t segment_bytes = 0)
      : dir(name), committer(seglog::committer::options{seglog::fsync_policy::never, {}, 0}) {
    options.dir = dir.path() / "bridge";
    options.bound = bound;
    options.segment_bytes = segment_bytes;
  }

  std::unique_ptr<forward_queue> open(forward_queue_recovery* recovery = nullptr) {
    return forward_queue::open(options, committer, clock, recovery);
  }

  temp_dir dir;
  core::manual_clock clock;
  seglog::committer committer;  // `never`: the files hold every write(2), which is what a crash
                                // test copies; fdatasync is seglog's own tests' business
  forward_queue_options options;
};

std::string numbered(std::uint64_t n, std::size_t bytes = 30) {
  char head[32];
  std::snprintf(head, sizeof head, "message-%06llu-", static_cast<unsigned long long>(n));
  std::string s = head;
  s.resize(std::max(bytes, s.size()), 'x');
  return s;
}

std::uint64_t number_of(const std::string& payload) {
  return std::stoull(payload.substr(8, 6));
}

// Enqueues and waits until durable; the admission, and the write's error if queued.
std::pair<forward_queue::admission, std::error_code> enqueue_and_wait(
    forward_queue& q, std::vector<std::string> records) {
  auto promise = std::make_shared<std::promise<std::error_code>>();
  auto future = promise->get_future();
  const auto admission = q.enqueue(std::move(records),
                                   [promise](std::error_code error) { promise->set_value(error); });
  if (admission != forward_queue::admission::queued) return {admission, {}};
  return {admission, future.get()};
}

void enqueue_range(forward_queue& q, std::uint64_t from, std::uint64_t to, std::size_t bytes = 30) {
  std::vector<std::string> records;
  for (std::uint64_t n = from; n < to; ++n) records.push_back(numbered(n, bytes));
  const auto [admission, error] = enqueue_and_wait(q, std::move(records));
  ASSERT_EQ(admission, forward_queue::admission::queued);
  ASSERT_FALSE(error);
}

void save_and_wait(forward_queue& q) {
  auto promise = std::make_shared<std::promise<std::error_code>>();
  auto future = promise->get_future();
  q.save_position([promise](std::error_code error) { promise->set_value(error); });
  ASSERT_FALSE(future.get());
}

std::vector<seglog::record> read_some(forward_queue& q, std::size_t max_records = 1'000'000) {
  std::vector<seglog::record> out;
  EXPECT_FALSE(q.read(max_records, std::size_t{64} << 20, out));
  return out;
}

std::vector<std::uint64_t> offsets_of(const std::vector<seglog::record>& records) {
  std::vector<std::uint64_t> out;
  for (const auto& r : records) out.push_back(r.offset);
  return out;
}

std::vector<std::uint64_t> numbers_of(const std::vector<seglog::record>& records) {
  std::vector<std::uint64_t> out;
  for (const auto& r : records) out.push_back(number_of(r.payload));
  return out;
}

std::vector<std::uint64_t> iota(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t n = from; n < to; ++n) out.push_back(n);
  return out;
}

// Every record the queue took is queued or counted once by its fate.
void expect_accounted(const forward_queue_stats& s) {
  EXPECT_EQ(s.enqueued, s.queued_messages + s.acknowledged + s.expired + s.undeliverable +
                            s.dropped_oldest + s.lost + s.discarded);
}

std::size_t segment_count(const fs::path& dir) {
  std::size_t count = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    count += entry.path().extension() == ".seg" ? 1 : 0;
  return count;
}

TEST(forward_queue, enqueue_read_acknowledge_in_order) {
  fixture f("in-order");
  auto q = f.open();
  enqueue_range(*q, 0, 3);
  enqueue_range(*q, 3, 5);
  auto records = read_some(*q, 3);
  EXPECT_EQ(offsets_of(records), iota(0, 3));
  EXPECT_EQ(numbers_of(records), iota(0, 3));
  EXPECT_EQ(numbers_of(read_some(*q)), iota(3, 5));
  EXPECT_TRUE(read_some(*q).empty());
  EXPECT_EQ(q->stats().in_flight, 5U);
  for (std::uint64_t offset = 0; offset < 5; ++offset) EXPECT_TRUE(q->acknowledge(offset));
  EXPECT_FALSE(q->acknowledge(4));  // once
  EXPECT_FALSE(q->acknowledge(5));  // never read
  const auto s = q->stats();
  EXPECT_EQ(s.enqueued, 5U);
  EXPECT_EQ(s.acknowledged, 5U);
  EXPECT_EQ(s.queued_messages, 0U);
  EXPECT_EQ(s.queued_bytes, 0U);
  EXPECT_EQ(s.in_flight, 0U);
  expect_accounted(s);
}

TEST(forward_queue, acknowledgements_out_of_order) {
  fixture f("out-of-order");
  {
    auto q = f.open();
    enqueue_range(*q, 0, 5);
    EXPECT_EQ(read_some(*q).size(), 5U);
    EXPECT_TRUE(q->acknowledge(1));  // a QoS 1 overtaking a QoS 2
    EXPECT_TRUE(q->acknowledge(3));
    EXPECT_FALSE(q->acknowledge(1));
    EXPECT_EQ(q->stats().acknowledged, 2U);
    EXPECT_EQ(q->stats().queued_messages, 3U);
    q->rewind();  // reconnect: what was acknowledged is not sent again
    EXPECT_EQ(offsets_of(read_some(*q)), (std::vector<std::uint64_t>{0, 2, 4}));
    EXPECT_TRUE(q->acknowledge(0));  // the prefix is now 0..1
    EXPECT_EQ(q->stats().acknowledged, 3U);
  }
  // 3 was acknowledged above the saved prefix: sent again, and not counted twice.
  auto q = f.open();
  EXPECT_EQ(offsets_of(read_some(*q)), (std::vector<std::uint64_t>{2, 3, 4}));
  const auto s = q->stats();
  EXPECT_EQ(s.acknowledged, 2U);
  EXPECT_EQ(s.queued_messages, 3U);
  expect_accounted(s);
}

TEST(forward_queue, restart_keeps_what_was_not_acknowledged) {
  fixture f("restart", {}, 512);  // 54-byte frames: 9 a segment
  {
    auto q = f.open();
    for (std::uint64_t n = 0; n < 100; n += 10) enqueue_range(*q, n, n + 10);
    EXPECT_EQ(read_some(*q).size(), 100U);
    for (std::uint64_t offset = 0; offset < 60; ++offset) EXPECT_TRUE(q->acknowledge(offset));
    save_and_wait(*q);
    // Segments wholly below 60 are gone: 45 records' worth of 9.
    EXPECT_EQ(segment_count(f.options.dir / "messages"), 12U - 6U);
  }
  auto q = f.open();
  EXPECT_EQ(numbers_of(read_some(*q)), iota(60, 100));
  EXPECT_EQ(q->stats().acknowledged, 60U);
  EXPECT_EQ(q->stats().enqueued, 100U);
  enqueue_range(*q, 100, 101);
  EXPECT_EQ(offsets_of(read_some(*q)), std::vector<std::uint64_t>{100});
}

TEST(forward_queue, drop_oldest_drops_what_was_never_sent) {
  fixture f("drop-oldest", queue_settings{200, full_policy::drop_oldest});  // 10 records of 20
  auto q = f.open();
  for (std::uint64_t n = 0; n < 10; ++n) enqueue_range(*q, n, n + 1, 20);
  EXPECT_EQ(offsets_of(read_some(*q, 2)), iota(0, 2));  // in flight: never dropped
  for (std::uint64_t n = 10; n < 25; ++n) enqueue_range(*q, n, n + 1, 20);
  auto s = q->stats();
  EXPECT_EQ(s.dropped_oldest, 15U);  // 2..16
  EXPECT_EQ(s.queued_messages, 10U);
  EXPECT_EQ(s.queued_bytes, 200U);
  expect_accounted(s);
  EXPECT_EQ(numbers_of(read_some(*q)), iota(17, 25));
  // All 10 in flight: nothing may be dropped, so a new batch is refused, all of it.
  const auto [admission, error] = enqueue_and_wait(*q, {numbered(25, 20), numbered(26, 20)});
  EXPECT_EQ(admission, forward_queue::admission::dropped);
  EXPECT_EQ(q->stats().dropped_full, 2U);
  for (std::uint64_t offset : {0, 1, 17, 18, 19}) EXPECT_TRUE(q->acknowledge(offset));
  q->rewind();                    // 20..24 are unsent again
  enqueue_range(*q, 27, 30, 20);  // 8 queued: fits
  enqueue_range(*q, 30, 33, 20);  // 20 bytes over: drops 20
  s = q->stats();
  EXPECT_EQ(s.dropped_oldest, 16U);
  EXPECT_EQ(s.dropped_full, 2U);
  EXPECT_EQ(numbers_of(read_some(*q)),
            (std::vector<std::uint64_t>{21, 22, 23, 24, 27, 28, 29, 30, 31, 32}));
  expect_accounted(s);
}

TEST(forward_queue, drop_new_refuses_and_counts) {
  fixture f("drop-new", queue_settings{200, full_policy::drop_new});
  auto q = f.open();
  std::size_t dropped = 0;
  for (std::uint64_t n = 0; n < 25; ++n) {
    const auto [admission, error] = enqueue_and_wait(*q, {numbered(n, 20)});
    dropped += admission == forward_queue::admission::dropped ? 1 : 0;
  }
  EXPECT_EQ(dropped, 15U);
  EXPECT_EQ(q->stats().dropped_full, 15U);
  EXPECT_EQ(q->stats().dropped_oldest, 0U);
  EXPECT_EQ(numbers_of(read_some(*q)), iota(0, 10));
  // Larger than the bound itself: refused under every policy.
  EXPECT_TRUE(q->acknowledge(0));
  EXPECT_EQ(enqueue_and_wait(*q, {std::string(201, 'x')}).first, forward_queue::admission::dropped);
  EXPECT_EQ(q->stats().dropped_full, 16U);
  expect_accounted(q->stats());
}

TEST(forward_queue, drop_new_count_survives_a_restart) {
  fixture f("drop-new-restart", queue_settings{20, full_policy::drop_new});
  {
    auto q = f.open();
    enqueue_range(*q, 0, 1, 20);
    EXPECT_EQ(enqueue_and_wait(*q, {numbered(1, 20)}).first, forward_queue::admission::dropped);
  }
  EXPECT_EQ(f.open()->stats().dropped_full, 1U);
}

TEST(forward_queue, block_reports_full_and_calls_back_when_space_frees) {
  fixture f("block", queue_settings{200, full_policy::block});
  auto q = f.open();
  int space = 0;
  q->set_space_listener([&] { ++space; });
  for (std::uint64_t n = 0; n < 10; ++n) enqueue_range(*q, n, n + 1, 20);
  EXPECT_EQ(enqueue_and_wait(*q, {numbered(10, 20)}).first, forward_queue::admission::full);
  EXPECT_EQ(enqueue_and_wait(*q, {numbered(10, 20)}).first, forward_queue::admission::full);
  const auto s = q->stats();
  EXPECT_EQ(s.dropped_full + s.dropped_oldest, 0U);  // nothing is lost: the publisher waits
  EXPECT_EQ(s.enqueued, 10U);
  read_some(*q);
  EXPECT_TRUE(q->acknowledge(0));
  EXPECT_TRUE(q->acknowledge(1));
  EXPECT_EQ(space, 0);  // 160 bytes: above 3/4 of the bound
  EXPECT_TRUE(q->acknowledge(2));
  EXPECT_EQ(space, 1);
  EXPECT_TRUE(q->acknowledge(3));
  EXPECT_EQ(space, 1);  // once per `full`
  enqueue_range(*q, 10, 11, 20);
  EXPECT_EQ(space, 1);
}

TEST(forward_queue, expired_and_undeliverable_are_counted) {
  fixture f("settle-reasons");
  auto q = f.open();
  enqueue_range(*q, 0, 3);
  read_some(*q);
  EXPECT_TRUE(q->settle(0, settle_reason::expired));
  EXPECT_TRUE(q->settle(1, settle_reason::undeliverable));
  EXPECT_TRUE(q->acknowledge(2));
  const auto s = q->stats();
  EXPECT_EQ(s.expired, 1U);
  EXPECT_EQ(s.undeliverable, 1U);
  EXPECT_EQ(s.acknowledged, 1U);
  expect_accounted(s);
}

TEST(forward_queue, discard_deletes_everything_and_counts_it) {
  fixture f("discard", {}, 512);
  {
    auto q = f.open();
    for (std::uint64_t n = 0; n < 50; n += 10) enqueue_range(*q, n, n + 10);
    read_some(*q, 5);
    EXPECT_TRUE(q->acknowledge(0));
    auto promise = std::make_shared<std::promise<std::error_code>>();
    auto future = promise->get_future();
    q->discard([promise](std::error_code error) { promise->set_value(error); });
    EXPECT_FALSE(future.get());
    EXPECT_EQ(segment_count(f.options.dir / "messages"), 1U);
    EXPECT_EQ(fs::file_size(fs::directory_iterator(f.options.dir / "messages")->path()), 0U);
    EXPECT_TRUE(read_some(*q).empty());
    EXPECT_FALSE(q->acknowledge(1));  // in flight, but discarded
    const auto s = q->stats();
    EXPECT_EQ(s.discarded, 49U);
    EXPECT_EQ(s.queued_messages, 0U);
    EXPECT_EQ(s.in_flight, 0U);
    expect_accounted(s);
  }
  auto q = f.open();
  EXPECT_TRUE(read_some(*q).empty());
  EXPECT_EQ(q->stats().discarded, 49U);
  enqueue_range(*q, 50, 51);
  EXPECT_EQ(offsets_of(read_some(*q)), std::vector<std::uint64_t>{50});
}

TEST(forward_queue, corrupt_middle_segment_is_set_aside_and_counted) {
  fixture f("corrupt", {}, 512);
  {
    auto q = f.open();
    for (std::uint64_t n = 0; n < 40; n += 10) enqueue_range(*q, n, n + 10);
    read_some(*q, 3);
    for (std::uint64_t offset = 0; offset < 3; ++offset) q->acknowledge(offset);
  }
  // The second segment (offsets 9..17) gets a flipped byte in its fifth record.
  std::vector<fs::path> segments;
  for (const auto& entry : fs::directory_iterator(f.options.dir / "messages"))
    segments.push_back(entry.path());
  std::sort(segments.begin(), segments.end());
  ASSERT_GE(segments.size(), 3U);
  std::string bytes = read_file(segments[1]).value();
  bytes[4 * 54 + 30] ^= 0x20;
  write_file(segments[1], bytes);

  forward_queue_recovery recovery;
  auto q = f.open(&recovery);
  EXPECT_EQ(recovery.messages.set_aside.size(), 1U);
  EXPECT_EQ(recovery.lost_records, 9U);
  EXPECT_TRUE(recovery.has_position);
  auto expected = iota(3, 9);
  for (std::uint64_t n = 18; n < 40; ++n) expected.push_back(n);
  EXPECT_EQ(numbers_of(read_some(*q)), expected);
  const auto s = q->stats();
  EXPECT_EQ(s.lost, 9U);
  EXPECT_EQ(s.acknowledged, 3U);
  expect_accounted(s);
  // Counted once: after the prefix passes the gap, a restart does not count it again.
  for (std::uint64_t n = 3; n < 20; ++n) q->acknowledge(n);
  q.reset();
  q = f.open(&recovery);
  EXPECT_EQ(recovery.lost_records, 0U);
  EXPECT_EQ(q->stats().lost, 9U);
  EXPECT_EQ(q->stats().acknowledged, 3U + 6U + 2U);
}

TEST(forward_queue, producers_on_many_threads_one_consumer) {
  fixture f("threads", {}, 64 << 10);
  auto q = f.open();
  constexpr std::uint64_t producers = 4;
  constexpr std::uint64_t each = 2'500;
  std::mutex mutex;
  std::condition_variable durable_more;
  std::uint64_t durable = 0;  // guarded by mutex
  std::vector<std::thread> threads;
  for (std::uint64_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < each; ++i) {
        const auto admission = q->enqueue({numbered(p * each + i)}, [&](std::error_code e) {
          EXPECT_FALSE(e);
          std::lock_guard lock(mutex);
          ++durable;
          durable_more.notify_one();
        });
        EXPECT_EQ(admission, forward_queue::admission::queued);
      }
    });
  }
  std::vector<std::uint64_t> last(producers, 0);
  std::vector<std::uint64_t> count(producers, 0);
  std::uint64_t received = 0;
  while (received < producers * each) {
    {
      std::unique_lock lock(mutex);
      durable_more.wait(lock, [&] { return durable > received; });
    }
    const auto records = read_some(*q, 100);
    for (const auto& r : records) {
      const std::uint64_t n = number_of(r.payload);
      const std::uint64_t p = n / each;
      if (count[p] > 0) {
        EXPECT_GT(n, last[p]);  // each producer's records in its order
      }
      last[p] = n;
      ++count[p];
      ++received;
    }
    for (auto it = records.rbegin(); it != records.rend(); ++it) q->acknowledge(it->offset);
  }
  for (auto& t : threads) t.join();
  const auto s = q->stats();
  EXPECT_EQ(s.acknowledged, producers * each);
  EXPECT_EQ(s.queued_messages, 0U);
  expect_accounted(s);
}

// Reopens a queue as a kill -9 would leave it: its files copied while it runs (messages first:
// a segment deleted after that copy is one the copied position already allowed).
std::unique_ptr<forward_queue> kill_and_reopen(fixture& f, std::unique_ptr<forward_queue>& q) {
  const tree killed = snapshot(f.options.dir);
  q.reset();
  restore(f.options.dir, killed);
  return f.open();
}

TEST(forward_queue, ten_thousand_numbered_messages_across_restarts) {
  fixture f("ten-thousand", {}, 16 << 10);
  constexpr std::uint64_t total = 10'000;
  auto q = f.open();
  std::set<std::uint64_t> seen;
  std::vector<std::uint64_t> first_order;  // numbers as the remote first saw them
  std::size_t duplicates = 0;
  std::set<std::uint64_t> in_flight;
  std::vector<std::uint64_t> held;     // offsets acknowledged later, newest first (QoS 2 late)
  std::set<std::uint64_t> acked;       // numbers (offsets here: nothing is dropped)
  std::vector<std::uint64_t> last;     // acknowledged by the last consume()
  std::set<std::uint64_t> may_repeat;  // the in-flight window at each restart
  auto ack = [&](std::uint64_t offset) {
    EXPECT_TRUE(q->acknowledge(offset));
    in_flight.erase(offset);
    acked.insert(offset);
    last.push_back(offset);
  };
  auto consume = [&](std::size_t max_records) {
    last.clear();
    for (const auto& r : read_some(*q, max_records)) {
      const std::uint64_t n = number_of(r.payload);
      EXPECT_EQ(n, r.offset);
      if (seen.insert(n).second) {
        first_order.push_back(n);
      } else {
        ++duplicates;
        EXPECT_EQ(may_repeat.count(n), 1U) << n;
      }
      in_flight.insert(n);
      if (n % 7 == 3)
        held.push_back(r.offset);
      else
        ack(r.offset);
    }
    if (held.size() > 5) {
      for (auto it = held.rbegin(); it != held.rend(); ++it) ack(*it);
      held.clear();
    }
  };
  // Sent again after a restart: what was in flight and what was acknowledged past the oldest
  // of those (kept in memory only). A kill here lands once the position is on disk: how far a
  // position write may lag behind the acknowledgements depends on the committer's pace (the
  // crash test below covers every torn state), so waiting keeps this count exact on any machine.
  auto restart = [&](bool is_kill) {
    may_repeat.insert(in_flight.begin(), in_flight.end());
    const std::uint64_t oldest = in_flight.empty() ? total : *in_flight.begin();
    may_repeat.insert(acked.lower_bound(oldest), acked.end());
    if (is_kill) {
      std::promise<std::error_code> saved;
      q->save_position([&saved](std::error_code error) { saved.set_value(error); });
      EXPECT_FALSE(saved.get_future().get());
      q = kill_and_reopen(f, q);
    } else {
      q.reset();
      q = f.open();
    }
    in_flight.clear();
    held.clear();
  };
  std::uint64_t next = 0;
  for (std::size_t round = 1; next < total; ++round) {
    const std::uint64_t batch = std::min<std::uint64_t>(50, total - next);
    enqueue_range(*q, next, next + batch);
    next += batch;
    consume(round % 3 == 0 ? 80 : 20);  // the link falls behind, then catches up
    if (round % 40 == 0) restart(round % 80 == 0 ? false : true);
  }
  for (int i = 0; i < 100 && seen.size() < total; ++i) consume(500);
  EXPECT_EQ(seen.size(), total);  // 0 missing
  EXPECT_TRUE(std::is_sorted(first_order.begin(), first_order.end()));
  std::printf("duplicates %zu, in-flight windows %zu\n", duplicates, may_repeat.size());
  expect_accounted(q->stats());
}

// ---- a crash at every write
//
// A scripted run is snapshotted after each step (every write it made has returned). For each
// step, every file it wrote is cut at every byte between its size before and after, one file
// at a time, with the files written before it in the same log complete (a log writes its
// segments in order and syncs one before starting the next) and everything else as before
// the step; and the state after the step. Each is opened and must give back every record the
// producer was told is durable and the consumer did not settle, each whole and in order, with
// nothing set aside, and counts that match what is missing.

struct step_state {
  tree files;
  std::set<std::uint64_t> durable;  // numbers whose enqueue was acknowledged to the producer
  std::set<std::uint64_t> settled;  // numbers the consumer acknowledged
};

// `before`: the state the step started from; `after`: where it ended.
void check_crash_state(fixture& f, const tree& files, const step_state& before,
                       const step_state& after, const std::string& what) {
  SCOPED_TRACE(what);
  restore(f.options.dir, files);
  forward_queue_recovery recovery;
  auto q = f.open(&recovery);
  EXPECT_TRUE(recovery.messages.set_aside.empty());
  EXPECT_EQ(recovery.lost_records, 0U);
  std::vector<std::uint64_t> numbers;
  for (const auto& r : read_some(*q)) {
    const std::uint64_t n = number_of(r.payload);
    EXPECT_EQ(r.payload, numbered(n));  // whole
    numbers.push_back(n);
  }
  EXPECT_TRUE(std::is_sorted(numbers.begin(), numbers.end()));
  EXPECT_EQ(std::adjacent_find(numbers.begin(), numbers.end()), numbers.end());
  // Durable before the step and not acknowledged by its end: there, unless dropped or
  // discarded, and then counted (a drop not yet saved comes back, uncounted).
  const std::set<std::uint64_t> present(numbers.begin(), numbers.end());
  std::uint64_t missing = 0;
  for (const std::uint64_t n : before.durable)
    missing += present.count(n) == 0 && after.settled.count(n) == 0 ? 1 : 0;
  const auto s = q->stats();
  EXPECT_EQ(missing, s.dropped_oldest + s.discarded);
  EXPECT_EQ(s.lost, 0U);
  expect_accounted(s);
  // It goes on: a new record takes the next offset.
  q->rewind();
  std::vector<std::string> one{numbered(999)};
  const auto [admission, error] = enqueue_and_wait(*q, std::move(one));
  EXPECT_EQ(admission, forward_queue::admission::queued);
  EXPECT_FALSE(error);
  const auto last = read_some(*q);
  ASSERT_FALSE(last.empty());
  EXPECT_EQ(last.back().offset, s.enqueued);
}

TEST(forward_queue, crash_at_every_write) {
  // Thousands of repairs, each logged by seglog and the queue: only errors are of interest.
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);
  // 54-byte frames, 4 a segment; the bound holds 8 records, dropping the oldest.
  fixture f("crash", queue_settings{8 * 30, full_policy::drop_oldest}, 4 * 54);
  std::vector<step_state> steps;
  step_state now;
  std::map<std::uint64_t, std::uint64_t> number_at;  // offset -> number
  std::uint64_t next_number = 0;
  {
    auto q = f.open();
    auto step = [&] {
      save_and_wait(*q);
      now.files = snapshot(f.options.dir);
      steps.push_back(now);
    };
    auto enqueue = [&](std::uint64_t count) {
      const std::uint64_t first_offset = q->stats().enqueued;
      enqueue_range(*q, next_number, next_number + count);
      for (std::uint64_t i = 0; i < count; ++i) {
        number_at[first_offset + i] = next_number + i;
        now.durable.insert(next_number + i);
      }
      next_number += count;
    };
    auto ack = [&](const seglog::record& r) {
      EXPECT_TRUE(q->acknowledge(r.offset));
      now.settled.insert(number_at.at(r.offset));
    };
    now.files = snapshot(f.options.dir);
    steps.push_back(now);
    enqueue(3);
    step();
    enqueue(5);  // full
    step();
    const auto a = read_some(*q, 4);  // 0..3
    ack(a[1]);
    ack(a[0]);
    step();
    enqueue(3);  // drops 4
    step();
    ack(a[3]);
    ack(a[2]);  // start 5
    step();
    const auto b = read_some(*q);  // 5..10
    ack(b[2]);
    ack(b[4]);
    step();
    q->rewind();
    const auto c = read_some(*q);  // 5, 6, 8, 10
    ack(c[2]);
    ack(c[3]);
    step();
    enqueue(4);  // 11..14
    step();
    enqueue(4);  // 15..18, dropping 11, 12 above the start (5, 6 in flight)
    step();
    const auto d = read_some(*q, 2);  // 13, 14
    ack(d[0]);
    step();
    enqueue(2);  // 19, 20, dropping 15
    step();
    ack(c[0]);
    ack(c[1]);  // start 14: 11, 12 counted
    step();
    ack(d[1]);  // start 16: 15 counted
    step();
    auto promise = std::make_shared<std::promise<std::error_code>>();
    auto future = promise->get_future();
    q->discard([promise](std::error_code error) { promise->set_value(error); });
    EXPECT_FALSE(future.get());
    step();
    enqueue(3);
    step();
    EXPECT_EQ(q->stats().dropped_oldest, 4U);
  }
  std::size_t states = 0;
  for (std::size_t k = 1; k < steps.size(); ++k) {
    const tree& before = steps[k - 1].files;
    const tree& after = steps[k].files;
    for (const auto& [path, bytes] : after) {
      const auto was = before.find(path);
      const std::size_t from = was == before.end() ? 0 : was->second.size();
      if (was != before.end() && was->second == bytes) continue;
      tree base = before;
      for (const auto& [other, other_bytes] : after) {
        if (other.parent_path() == path.parent_path() && other < path) base[other] = other_bytes;
      }
      for (std::size_t cut = from; cut <= bytes.size(); ++cut) {
        tree crashed = base;
        crashed[path] = bytes.substr(0, cut);
        check_crash_state(
            f, crashed, steps[k - 1], steps[k],
            "step " + std::to_string(k) + ": " + path.string() + " cut at " + std::to_string(cut));
        ++states;
      }
    }
    check_crash_state(f, after, steps[k], steps[k], "after step " + std::to_string(k));
    ++states;
  }
  std::printf("crash states opened: %zu\n", states);
  spdlog::set_level(level);
}

}  // namespace
}  // namespace nimbus::bridge
