#include "pubsub/service.hpp"

#include <spdlog/spdlog.h>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <future>
#include <iterator>
#include <set>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "core/page_token.hpp"
#include "net/http_client.hpp"
#include "pubsub/cursor_journal.hpp"
#include "pubsub/filter.hpp"
#include "pubsub/message_store.hpp"
#include "pubsub/names.hpp"
#include "pubsub/push.hpp"
#include "pubsub/subscription_engine.hpp"
#include "pubsub/validate.hpp"
#include "seglog/log.hpp"

namespace nimbus::pubsub {

namespace asio = boost::asio;
namespace json = boost::json;
using google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Google's limits (reference §3).
constexpr int max_pull_messages = 1000;
constexpr std::size_t max_pull_bytes = 10'000'000;
constexpr std::size_t max_push_window = 1000;  // push POSTs in flight per subscription
constexpr const char* upsert_cursor_sql =
    "INSERT INTO pubsub_cursors (subscription, body) VALUES (?, ?) "
    "ON CONFLICT (subscription) DO UPDATE SET body = excluded.body";
constexpr std::int64_t snapshot_lifetime_ms = 7LL * 24 * 3600 * 1000;
constexpr int default_page_size = 100;
constexpr int max_page_size = 1000;
// Message ids: the topic's incarnation (unique per created topic, ever) above its log offset,
// so ids stay unique per topic name across deletes and re-creates.
constexpr int incarnation_shift = 40;

status invalid(std::string message) {
  return status::error(code::invalid_argument, std::move(message));
}

status not_found(std::string_view what, std::string_view name) {
  return status::error(code::not_found,
                       std::string(what) + " not found (resource=" + std::string(name) + ").");
}

// Page of `names` (sorted) after the token, with the next token.
template <class Container>
std::pair<std::vector<std::string>, std::string> page(const Container& names, int page_size,
                                                      const std::string& token, status& failed) {
  std::vector<std::string> out;
  std::string after;
  if (!token.empty()) {
    auto decoded = core::decode_page_token(token);
    if (!decoded) {
      failed = invalid("Invalid page token: " + token);
      return {};
    }
    after = std::move(*decoded);
  }
  const int size = page_size <= 0 ? default_page_size : std::min(page_size, max_page_size);
  auto it = after.empty() ? names.begin() : names.upper_bound(after);
  for (; it != names.end() && static_cast<int>(out.size()) < size; ++it) out.push_back(*it);
  std::string next;
  if (it != names.end() && !out.empty()) next = core::encode_page_token(out.back());
  return {std::move(out), std::move(next)};
}

// The names in `resources` (a map by full name) that start with `prefix`, sorted.
template <class Map>
std::set<std::string> names_under(const Map& resources, const std::string& prefix) {
  std::set<std::string> names;
  for (const auto& entry : resources)
    if (entry.first.starts_with(prefix)) names.insert(entry.first);
  return names;
}

// The stored form of a cursor (table pubsub_cursors), JSON for readability in a debugger.
std::string encode_cursor(const cursor_state& c) {
  json::object out;
  out.emplace("floor", c.floor);
  json::array ranges;
  for (const auto& [first, last] : c.acked) ranges.emplace_back(json::array{first, last});
  out.emplace("acked", std::move(ranges));
  json::array attempts;
  for (const auto& [seq, count] : c.delivery_attempts)
    attempts.emplace_back(json::array{seq, count});
  out.emplace("attempts", std::move(attempts));
  if (!c.leases.empty()) {
    json::array leases;
    for (const auto& [seq, lease] : c.leases)
      leases.emplace_back(json::array{seq, lease.delivery, lease.epoch, lease.deadline_ms});
    out.emplace("leases", std::move(leases));
  }
  return json::serialize(out);
}

cursor_state decode_cursor(std::string_view text) {
  cursor_state c;
  json::error_code ec;
  auto value = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !value.is_object()) return c;
  const auto& o = value.get_object();
  if (const auto* floor = o.if_contains("floor"); floor && floor->is_number())
    c.floor = floor->to_number<std::uint64_t>();
  if (const auto* ranges = o.if_contains("acked"); ranges && ranges->is_array())
    for (const auto& r : ranges->get_array())
      if (r.is_array() && r.get_array().size() == 2)
        c.acked.emplace_back(r.get_array()[0].to_number<std::uint64_t>(),
                             r.get_array()[1].to_number<std::uint64_t>());
  if (const auto* attempts = o.if_contains("attempts"); attempts && attempts->is_array())
    for (const auto& a : attempts->get_array())
      if (a.is_array() && a.get_array().size() == 2)
        c.delivery_attempts[a.get_array()[0].to_number<std::uint64_t>()] =
            a.get_array()[1].to_number<std::int32_t>();
  if (const auto* leases = o.if_contains("leases"); leases && leases->is_array())
    for (const auto& l : leases->get_array())
      if (l.is_array() && l.get_array().size() == 4)
        c.leases[l.get_array()[0].to_number<std::uint64_t>()] =
            cursor_state::lease{l.get_array()[1].to_number<std::uint32_t>(),
                                l.get_array()[2].to_number<std::uint32_t>(),
                                l.get_array()[3].to_number<std::int64_t>()};
  return c;
}

// A topic's messages as the engine reads them: the topic's log, each record a serialized
// PubsubMessage without its id (derived from the offset).
class log_store final : public message_store {
 public:
  log_store(seglog::log& log, std::uint64_t incarnation) : log_(log), incarnation_(incarnation) {}

  std::vector<stored_message> read(std::uint64_t from_seq, std::size_t max,
                                   std::size_t max_bytes) const override {
    std::vector<seglog::record> records;
    std::vector<stored_message> out;
    if (log_.read(from_seq, max, max_bytes, records)) return out;
    out.reserve(records.size());
    for (auto& r : records) {
      v1::PubsubMessage m;
      if (!m.ParseFromString(r.payload)) continue;  // cannot happen: CRC-checked, ours
      stored_message s;
      s.seq = r.offset;
      s.message.data = std::move(*m.mutable_data());
      for (auto& [k, v] : *m.mutable_attributes()) s.message.attributes.emplace(k, v);
      s.message.ordering_key = std::move(*m.mutable_ordering_key());
      s.message.publish_time_ms = TimeUtil::TimestampToMilliseconds(m.publish_time());
      s.message.message_id = message_id(r.offset);
      out.push_back(std::move(s));
    }
    return out;
  }
  std::uint64_t first_seq() const override { return log_.first_offset(); }
  std::uint64_t next_seq() const override { return log_.next_offset(); }
  std::uint64_t seq_at_time(std::int64_t time_ms) const override {
    return log_.offset_at_time(time_ms);
  }

  std::string message_id(std::uint64_t seq) const {
    return std::to_string((incarnation_ << incarnation_shift) + seq);
  }

 private:
  seglog::log& log_;
  std::uint64_t incarnation_;
};

v1::PubsubMessage to_proto(const stored_message& s) {
  v1::PubsubMessage m;
  m.set_data(s.message.data);
  for (const auto& [k, v] : s.message.attributes) (*m.mutable_attributes())[k] = v;
  m.set_message_id(s.message.message_id);
  *m.mutable_publish_time() = TimeUtil::MillisecondsToTimestamp(s.message.publish_time_ms);
  m.set_ordering_key(s.message.ordering_key);
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------------- state

struct service::impl {
  struct topic_state;

  struct waiting_pull {
    int max_messages;
    std::optional<stream_pull> stream;
    core::steady_time deadline;
    reply<v1::PullResponse> done;
  };

  struct counters {
    std::uint64_t published = 0;
  };

  struct subscription_state {
    std::string name;
    v1::Subscription meta;
    std::string topic_name;  // as in meta.topic(); "_deleted-topic_" once the topic went
    std::unique_ptr<subscription_engine> engine;  // null once detached or its topic deleted
    std::vector<waiting_pull> waiting;
    // Unix ms of the last consumer activity or operation on it (0: since this process started);
    // past expiration_policy.ttl without any, the subscription is deleted.
    std::int64_t last_active_ms = 0;
    // Push delivery (a push_endpoint is set): the leases `holder` has are the POSTs in flight,
    // at most `window` (slow start: 1, doubled by a success up to max_push_window, halved by a
    // failure); each failure in a row pauses the pushes for push_backoff().
    struct push_state {
      std::uint64_t holder = 0;
      std::size_t window = 1;
      unsigned failures = 0;
      core::steady_time paused_until{};
      std::uint64_t succeeded = 0;
      std::uint64_t failed = 0;
    } push;
  };

  struct topic_state {
    std::string name;
    v1::Topic meta;
    std::uint64_t incarnation = 0;
    std::unique_ptr<seglog::log> log;
    std::unique_ptr<log_store> store;
    std::set<std::string> subscriptions;
    std::uint64_t published = 0;
  };

  impl(storage::write_queue* w, core::clock& c, service_settings s)
      : writer(w),
        clock(c),
        settings(std::move(s)),
        committer(seglog::committer::options{settings.fsync, std::chrono::milliseconds(1000), 3}),
        timer(io),
        http(io),
        epoch(static_cast<std::uint32_t>(c.unix_seconds())) {}

  asio::io_context io;  // the service's thread runs it
  std::thread loop;
  storage::write_queue* writer;
  core::clock& clock;
  const service_settings settings;
  seglog::committer committer;
  asio::steady_timer timer;
  net::http_client http;      // push deliveries; its answers run on the service's thread
  const std::uint32_t epoch;  // ack ids of an earlier process are stale

  mutable std::mutex mutex;
  std::map<std::string, std::unique_ptr<topic_state>, std::less<>> topics;
  std::map<std::string, std::unique_ptr<subscription_state>, std::less<>> subscriptions;
  struct snapshot_state {
    v1::Snapshot meta;
    cursor_state cursor;
  };
  std::map<std::string, snapshot_state, std::less<>> snapshots;
  std::uint64_t next_incarnation = 1;
  std::atomic<std::uint64_t> next_holder{1};
  std::int64_t housekept_ms = 0;         // when expire_idle and trim_logs last ran
  std::unique_ptr<seglog::log> journal;  // the cursor journal's current generation
  std::uint64_t journal_generation = 0;
  std::size_t journaled_since_checkpoint = 0;
  std::map<std::uint64_t, std::unique_ptr<seglog::log>> retiring;  // until a checkpoint is durable
  bool stopped = false;
  bool is_draining = false;  // end_waits(): pulls are answered at once, never parked

  // Every waiting pull's UNAVAILABLE answer, to call once the lock is released.
  std::vector<std::function<void()>> end_waiting_locked();

  // Runs `fn` on the service's loop (never under the lock, never on the writer's thread).
  template <class Fn>
  void post(Fn fn) {
    asio::post(io, std::move(fn));
  }

  // Answers once `t` is durable (or UNAVAILABLE if its write failed).
  template <class T>
  void answer_when_durable(storage::ticket t, reply<T> done, T response) {
    if (writer == nullptr || t.is_none()) {
      post([done = std::move(done), response = std::move(response)]() mutable {
        done(status{}, std::move(response));
      });
      return;
    }
    writer->when_durable(
        t, [this, t, done = std::move(done), response = std::move(response)]() mutable {
          const bool failed = writer->failed(t);
          post([failed, done = std::move(done), response = std::move(response)]() mutable {
            if (failed)
              return done(status::error(code::unavailable, "The change could not be stored."), T{});
            done(status{}, std::move(response));
          });
        });
  }

  // Answers OK with `response`, on the service's thread.
  template <class T>
  void answer(reply<T>& done, T response) {
    post([done = std::move(done), response = std::move(response)]() mutable {
      done(status{}, std::move(response));
    });
  }

  template <class T>
  void fail(reply<T>& done, status s) {
    post([done = std::move(done), s = std::move(s)]() mutable { done(std::move(s), T{}); });
  }

  storage::ticket submit(storage::write_queue::write w) {
    if (writer == nullptr) return {};
    return writer->submit(std::move(w));
  }

  std::filesystem::path topic_dir(std::uint64_t incarnation) const {
    return settings.dir / "topics" / std::to_string(incarnation);
  }

  void open_log(topic_state& t) {
    seglog::log::options o;
    o.dir = topic_dir(t.incarnation);
    o.segment_bytes = settings.segment_bytes;
    o.max_record_bytes = 11 << 20;
    seglog::recovery_report report;
    t.log = seglog::log::open(o, committer, &report);
    if (report.truncated_bytes > 0 || !report.set_aside.empty())
      spdlog::warn("pubsub_topic_log_repaired topic={} truncated_bytes={} set_aside={}", t.name,
                   report.truncated_bytes, report.set_aside.size());
    t.store = std::make_unique<log_store>(*t.log, t.incarnation);
  }

  static subscription_config config_of(const v1::Subscription& s) {
    subscription_config c;
    c.ack_deadline = seconds(s.ack_deadline_seconds() == 0 ? 10 : s.ack_deadline_seconds());
    c.retain_acked_messages = s.retain_acked_messages();
    c.retention = milliseconds(1000 * (s.has_message_retention_duration()
                                           ? seconds_of(s.message_retention_duration())
                                           : default_retention_s));
    c.message_ordering = s.enable_message_ordering();
    if (!s.filter().empty()) {
      auto parsed = filter::parse(s.filter());
      if (auto* f = std::get_if<filter>(&parsed)) c.message_filter = std::move(*f);
    }
    if (s.has_dead_letter_policy() && !s.dead_letter_policy().dead_letter_topic().empty())
      c.dead_letter = dead_letter_policy{s.dead_letter_policy().dead_letter_topic(),
                                         s.dead_letter_policy().max_delivery_attempts() == 0
                                             ? 5
                                             : s.dead_letter_policy().max_delivery_attempts()};
    if (s.has_retry_policy()) {
      retry_policy r;
      if (s.retry_policy().has_minimum_backoff())
        r.minimum_backoff = milliseconds(1000 * seconds_of(s.retry_policy().minimum_backoff()));
      if (s.retry_policy().has_maximum_backoff())
        r.maximum_backoff = milliseconds(1000 * seconds_of(s.retry_policy().maximum_backoff()));
      c.retry = r;
    }
    c.exactly_once = s.enable_exactly_once_delivery();
    return c;
  }

  void start_engine(subscription_state& s, cursor_state cursor) {
    auto found = topics.find(s.topic_name);
    if (found == topics.end() || s.meta.detached()) return;
    s.engine = std::make_unique<subscription_engine>(config_of(s.meta), *found->second->store,
                                                     std::move(cursor), clock, 0, epoch);
  }

  // ---- the cursor journal
  //
  // What a subscription's engine changes (its take_journal events: acks, seeks, delivery
  // counts) is appended to the journal, a seglog log committed by the same committer as the
  // topics' messages, so an Acknowledge costs one record rather than a rewrite of its cursor.
  // Every 10 s (and at a deletion) a checkpoint writes every cursor to SQLite and the journal
  // moves to a new generation (<data>/pubsub/cursors/<generation>/); the old one is deleted
  // once the checkpoint is durable. A restart replays the generations from the checkpoint's on.
  // Replaying a suffix of events a checkpoint already holds changes nothing (acks and counts
  // are idempotent, and a seek is restated by the acks after it), so events may straddle one.

  std::filesystem::path journal_dir(std::uint64_t generation) const {
    return settings.dir / "cursors" / std::to_string(generation);
  }

  void open_journal(std::uint64_t generation) {
    seglog::log::options o;
    o.dir = journal_dir(generation);
    o.segment_bytes = 16ULL << 20;
    seglog::recovery_report report;
    journal = seglog::log::open(o, committer, &report);
    journal_generation = generation;
    if (report.truncated_bytes > 0 || !report.set_aside.empty())
      spdlog::warn("pubsub_cursor_journal_repaired generation={} truncated_bytes={}", generation,
                   report.truncated_bytes);
  }

  // Journals what `s`'s engine changed; `durable` (if given) runs on the service's thread once
  // that is committed (fsync per pubsub.fsync), with UNAVAILABLE if it could not be.
  void save_cursor(subscription_state& s, std::function<void(status)> durable = {}) {
    std::vector<cursor_event> events;
    if (s.engine) events = s.engine->take_journal();
    if (events.empty() || !journal) {
      if (durable) post([durable = std::move(durable)] { durable(status{}); });
      return;
    }
    ++journaled_since_checkpoint;
    journal->append(
        {encode_journal_record({s.name, std::move(events)})}, clock.unix_millis(),
        [this, name = s.name, durable = std::move(durable)](std::error_code ec, std::uint64_t) {
          if (ec)
            spdlog::error("pubsub_cursor_journal_failed subscription={} error=\"{}\"", name,
                          ec.message());
          if (!durable) return;
          post([durable, ec] {
            durable(ec ? status::error(code::unavailable,
                                       "The acknowledgement could not be stored: " + ec.message())
                       : status{});
          });
        });
  }

  // A new subscription's starting cursor, as its checkpoint row (the journal has nothing yet).
  storage::ticket write_cursor(const subscription_state& s) {
    if (!s.engine) return {};
    return submit(
        [name = s.name, body = encode_cursor(s.engine->snapshot())](storage::database& db) {
          db.cached(upsert_cursor_sql).bind(1, name).bind(2, body).run();
        });
  }

  // At start: the journal's generations from the last checkpoint's on, replayed over the
  // checkpointed cursors in order; older ones are deleted. The replayed generations are kept
  // (retiring) until the first checkpoint, which follows at once; new records go to a fresh one.
  void replay_journal(storage::database& db, std::map<std::string, cursor_state>& cursors) {
    std::uint64_t checkpointed = 0;
    auto row = db.prepare("SELECT generation FROM pubsub_journal WHERE id = 0");
    if (row.step()) checkpointed = static_cast<std::uint64_t>(row.column_int(0));
    std::set<std::uint64_t> generations;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(settings.dir / "cursors", ec)) {
      const auto name = entry.path().filename().string();
      std::uint64_t generation = 0;
      const auto [end, failure] =
          std::from_chars(name.data(), name.data() + name.size(), generation);
      if (failure == std::errc() && end == name.data() + name.size())
        generations.insert(generation);
    }
    std::uint64_t replayed = 0;
    std::uint64_t unreadable = 0;
    for (const std::uint64_t generation : generations) {
      if (generation < checkpointed) {
        std::filesystem::remove_all(journal_dir(generation), ec);
        continue;
      }
      open_journal(generation);
      std::vector<seglog::record> records;
      for (std::uint64_t at = journal->first_offset(); at < journal->next_offset();) {
        records.clear();
        if (journal->read(at, 4096, 4 << 20, records) || records.empty()) break;
        for (const auto& r : records) {
          auto decoded = decode_journal_record(r.payload);
          if (!decoded) {
            ++unreadable;
            continue;
          }
          auto& cursor = cursors[decoded->subscription];
          for (const auto& event : decoded->events) apply_event(cursor, event);
          ++replayed;
        }
        at = records.back().offset + 1;
      }
      retiring.emplace(generation, std::move(journal));
    }
    open_journal(std::max(checkpointed, generations.empty() ? 0 : *generations.rbegin() + 1));
    journaled_since_checkpoint = retiring.empty() ? 0 : 1;  // checkpoint them away at once
    spdlog::info("pubsub_cursor_journal_replayed generations={} records={} unreadable={}",
                 retiring.size(), replayed, unreadable);
  }

  // Answers `done` with `response` once `s`'s changes are journaled.
  template <class T>
  void answer_when_journaled(subscription_state& s, reply<T> done, T response) {
    save_cursor(s, [done = std::move(done), response = std::move(response)](status st) mutable {
      if (!st.ok()) return done(std::move(st), T{});
      done(status{}, std::move(response));
    });
  }

  // Writes every cursor to SQLite and starts the journal's next generation (under the lock).
  void checkpoint() {
    if (writer == nullptr || !journal) return;
    const std::uint64_t next = journal_generation + 1;
    std::vector<std::pair<std::string, std::string>> cursors;
    for (const auto& [name, s] : subscriptions)
      if (s->engine) cursors.emplace_back(name, encode_cursor(s->engine->snapshot()));
    retiring.emplace(journal_generation, std::move(journal));
    open_journal(next);
    journaled_since_checkpoint = 0;
    const auto ticket = submit([cursors = std::move(cursors), next](storage::database& db) {
      for (const auto& [name, body] : cursors)
        db.cached(upsert_cursor_sql).bind(1, name).bind(2, body).run();
      db.cached(
            "INSERT INTO pubsub_journal (id, generation) VALUES (0, ?) "
            "ON CONFLICT (id) DO UPDATE SET generation = excluded.generation")
          .bind(1, static_cast<std::int64_t>(next))
          .run();
    });
    writer->when_durable(ticket, [this, ticket, next] {
      const bool failed = writer->failed(ticket);
      post([this, failed, next] {
        if (failed) return;  // the generations stay; the next checkpoint covers them
        std::lock_guard lock(mutex);
        // Destroying a log waits for its appends in flight (the committer's, never ours).
        for (auto it = retiring.begin(); it != retiring.end() && it->first < next;) {
          const auto dir = it->second->dir();
          it = retiring.erase(it);
          std::error_code ignored;
          std::filesystem::remove_all(dir, ignored);
        }
      });
    });
  }

  storage::ticket save_topic(const topic_state& t) {
    return submit([name = t.name, body = t.meta.SerializeAsString(),
                   incarnation = static_cast<std::int64_t>(t.incarnation)](storage::database& db) {
      db.cached(
            "INSERT INTO pubsub_topics (name, body, incarnation) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET body = excluded.body, "
            "incarnation = excluded.incarnation")
          .bind(1, name)
          .bind_blob(2, body)
          .bind(3, incarnation)
          .run();
    });
  }

  storage::ticket save_snapshot(const snapshot_state& snapshot) {
    return submit([name = snapshot.meta.name(), body = snapshot.meta.SerializeAsString(),
                   cursor = encode_cursor(snapshot.cursor)](storage::database& db) {
      db.cached(
            "INSERT INTO pubsub_snapshots (name, body, cursor) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET body = excluded.body, cursor = excluded.cursor")
          .bind(1, name)
          .bind_blob(2, body)
          .bind(3, cursor)
          .run();
    });
  }

  storage::ticket delete_snapshot_row(const std::string& name) {
    return submit([name](storage::database& db) {
      db.cached("DELETE FROM pubsub_snapshots WHERE name = ?").bind(1, name).run();
    });
  }

  storage::ticket save_subscription(const subscription_state& s) {
    return submit([name = s.name, body = s.meta.SerializeAsString()](storage::database& db) {
      db.cached(
            "INSERT INTO pubsub_subscriptions (name, body) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET body = excluded.body")
          .bind(1, name)
          .bind_blob(2, body)
          .run();
    });
  }

  // Serves the waiting pulls of `s` that can be served now; answers are collected in `out`
  // (run after the lock is released).
  void serve_waiting(subscription_state& s, std::vector<std::function<void()>>& out,
                     bool expire_all = false) {
    const auto now = clock.now();
    auto it = s.waiting.begin();
    while (it != s.waiting.end()) {
      v1::PullResponse response;
      if (s.engine && s.engine->has_deliverable())
        fill_pull(s, it->max_messages, it->stream, response);
      if (response.received_messages_size() > 0 || expire_all || now >= it->deadline) {
        out.emplace_back([done = std::move(it->done), response = std::move(response)]() mutable {
          done(status{}, std::move(response));
        });
        it = s.waiting.erase(it);
      } else {
        ++it;
      }
    }
  }

  void fill_pull(subscription_state& s, int max_messages, const std::optional<stream_pull>& stream,
                 v1::PullResponse& response) {
    std::size_t messages = static_cast<std::size_t>(max_messages);
    std::size_t bytes = max_pull_bytes;
    std::optional<seconds> lease;
    std::uint64_t holder = 0;
    if (stream) {
      // Flow control: what the stream may still hold.
      lease = stream->lease;
      holder = stream->holder;
      const auto held = s.engine->leased_to(holder);
      const auto cap = static_cast<std::size_t>(stream->max_outstanding_messages > 0
                                                    ? stream->max_outstanding_messages
                                                    : service::max_stream_outstanding);
      messages = std::min(messages, cap > held.messages ? cap - held.messages : 0);
      if (stream->max_outstanding_bytes > 0) {
        const auto cap_bytes = static_cast<std::size_t>(stream->max_outstanding_bytes);
        if (held.bytes >= cap_bytes) messages = 0;
        // One message may overshoot the byte cap, as Google's servers let it (never starve).
        bytes = std::min(bytes, cap_bytes - std::min(cap_bytes, held.bytes));
      }
      if (messages == 0) return;
    }
    auto deliveries = s.engine->pull(messages, bytes, lease, holder);
    // Exactly-once leases outlive the process: journaled (not waited for; a lease lost to a
    // crash within that commit only makes its ack id stale, which the client is told).
    if (s.meta.enable_exactly_once_delivery() && !deliveries.empty()) save_cursor(s);
    for (auto& d : deliveries) {
      auto* received = response.add_received_messages();
      received->set_ack_id(std::move(d.ack_id));
      *received->mutable_message() = to_proto(d.message);
      received->set_delivery_attempt(d.delivery_attempt);
    }
  }

  // The subscription `name` able to deliver, or why not; a use counts as activity.
  subscription_state* use(const std::string& name, status& why) {
    auto found = subscriptions.find(name);
    if (found == subscriptions.end()) {
      why = not_found("Subscription", name);
      return nullptr;
    }
    if (found->second->meta.detached()) {
      why = status::error(code::failed_precondition, "The subscription has been detached.");
      return nullptr;
    }
    found->second->last_active_ms = clock.unix_millis();
    return found->second.get();
  }

  // Deletes subscription `found`: its waiting pulls answer NOT_FOUND (through `answers`), its
  // rows go; the ticket covers the deletion.
  template <class Iterator>
  storage::ticket remove_subscription(Iterator found, std::vector<std::function<void()>>& answers) {
    auto s = std::move(found->second);
    subscriptions.erase(found);
    if (auto t = topics.find(s->topic_name); t != topics.end())
      t->second->subscriptions.erase(s->name);
    for (auto& w : s->waiting)
      answers.emplace_back([done = std::move(w.done), name = s->name] {
        done(not_found("Subscription", name), {});
      });
    return submit([name = s->name](storage::database& db) {
      db.cached("DELETE FROM pubsub_subscriptions WHERE name = ?").bind(1, name).run();
      db.cached("DELETE FROM pubsub_cursors WHERE subscription = ?").bind(1, name).run();
    });
  }

  // Subscriptions idle for longer than their expiration policy's TTL are deleted, as Google
  // does (31 days by default). Idle time counts from this process's start at most.
  void expire_idle(std::vector<std::function<void()>>& answers) {
    const std::int64_t now_ms = clock.unix_millis();
    for (auto it = subscriptions.begin(); it != subscriptions.end();) {
      auto& s = *it->second;
      const auto next = std::next(it);
      const std::int64_t ttl_s =
          s.meta.has_expiration_policy() && s.meta.expiration_policy().has_ttl()
              ? seconds_of(s.meta.expiration_policy().ttl())
              : 0;
      if (s.last_active_ms == 0) s.last_active_ms = now_ms;
      if (ttl_s > 0 && now_ms - s.last_active_ms >= ttl_s * 1000) {
        spdlog::info("pubsub_subscription_expired subscription={} idle_seconds={}", s.name,
                     (now_ms - s.last_active_ms) / 1000);
        remove_subscription(it, answers);
      }
      it = next;
    }
  }

  static bool is_push(const subscription_state& s) {
    return !s.meta.push_config().push_endpoint().empty();
  }

  // Sends what the push window of `s` allows now (under the lock; answers come on the loop).
  void pump_push(subscription_state& s) {
    if (!s.engine || !is_push(s) || stopped) return;
    auto& push = s.push;
    if (clock.now() < push.paused_until || !s.engine->has_deliverable()) return;
    if (push.holder == 0) push.holder = next_holder.fetch_add(1, std::memory_order_relaxed);
    const std::size_t held = s.engine->leased_to(push.holder).messages;
    if (held >= push.window) return;
    for (auto& d : s.engine->pull(push.window - held, max_pull_bytes, std::nullopt, push.holder)) {
      http.send(push_request(s.meta, d),
                [this, name = s.name, ack_id = d.ack_id](net::http_client_result result) {
                  on_pushed(name, ack_id, result);
                });
    }
  }

  // A push's answer: an acknowledgement acks the message and widens the window; anything else
  // nacks it (redelivery per retry policy), halves the window and pauses the pushes.
  void on_pushed(const std::string& name, const std::string& ack_id,
                 const net::http_client_result& result) {
    const auto* response = std::get_if<net::http_client_response>(&result);
    const bool acknowledged = response != nullptr && is_push_acknowledgement(response->status);
    std::lock_guard lock(mutex);
    auto found = subscriptions.find(name);
    if (found == subscriptions.end() || !found->second->engine || stopped) return;
    auto& s = *found->second;
    auto& push = s.push;
    if (acknowledged) {
      s.last_active_ms = clock.unix_millis();
      s.engine->acknowledge({ack_id});
      save_cursor(s);
      ++push.succeeded;
      push.failures = 0;
      push.window = std::min(push.window * 2, max_push_window);
    } else {
      s.engine->modify_ack_deadline({ack_id}, seconds(0));
      forward_dead_letters(s);
      if (s.meta.has_dead_letter_policy()) save_cursor(s);  // delivery counts
      ++push.failed;
      ++push.failures;
      push.window = std::max<std::size_t>(1, push.window / 2);
      push.paused_until = clock.now() + push_backoff(push.failures);
      static core::log_limiter failures_logged(5);
      core::warn_limited(
          failures_logged,
          "pubsub_push_failed subscription={} endpoint={} answer=\"{}\" failures_in_a_row={} "
          "similar_lines_suppressed={}",
          name, s.meta.push_config().push_endpoint(),
          response != nullptr ? "HTTP " + std::to_string(response->status)
                              : std::get<net::http_client_error>(result).message,
          push.failures);
    }
    pump_push(s);
  }

  // After messages were appended to `t`: waiting pulls of its subscriptions may be served.
  void wake(const std::string& topic_name) {
    std::vector<std::function<void()>> answers;
    {
      std::lock_guard lock(mutex);
      auto found = topics.find(topic_name);
      if (found == topics.end()) return;
      for (const auto& name : found->second->subscriptions) {
        auto s = subscriptions.find(name);
        if (s == subscriptions.end()) continue;
        if (!s->second->waiting.empty()) serve_waiting(*s->second, answers);
        pump_push(*s->second);
      }
    }
    for (auto& a : answers) a();
  }

  // Appends `messages` to `t` (publish time now); `done` gets the ids once durable.
  void append(topic_state& t, std::vector<v1::PubsubMessage> messages,
              std::function<void(status, std::vector<std::string>)> done) {
    const std::int64_t now_ms = clock.unix_millis();
    const auto published = TimeUtil::MillisecondsToTimestamp(now_ms);
    std::vector<std::string> payloads;
    payloads.reserve(messages.size());
    for (auto& m : messages) {
      m.clear_message_id();
      *m.mutable_publish_time() = published;
      payloads.push_back(m.SerializeAsString());
    }
    const std::size_t count = payloads.size();
    t.published += count;
    t.log->append(
        std::move(payloads), now_ms,
        [this, name = t.name, store = t.store.get(), count, done = std::move(done)](
            std::error_code ec, std::uint64_t first) mutable {
          if (ec) {
            spdlog::error("pubsub_publish_failed topic={} error=\"{}\"", name, ec.message());
            post([done = std::move(done), message = ec.message()]() mutable {
              done(status::error(code::unavailable, "The messages could not be stored: " + message),
                   {});
            });
            return;
          }
          std::vector<std::string> ids;
          ids.reserve(count);
          for (std::size_t i = 0; i < count; ++i) ids.push_back(store->message_id(first + i));
          post([this, name, done = std::move(done), ids = std::move(ids)]() mutable {
            done(status{}, std::move(ids));
            wake(name);
          });
        });
  }

  // Dead letters of `s`: published to its dead-letter topic, then settled (best effort).
  void forward_dead_letters(subscription_state& s) {
    if (!s.engine) return;
    auto letters = s.engine->take_dead_letters();
    if (letters.empty()) return;
    const auto& policy = s.meta.dead_letter_policy();
    auto target = topics.find(policy.dead_letter_topic());
    if (target == topics.end()) {
      // The dead-letter topic was deleted: the messages stay with the subscription.
      for (const auto& letter : letters) s.engine->settle(letter.seq);
      save_cursor(s);
      return;
    }
    const auto project = std::get<resource_name>(parse_name(s.name, resource_kind::subscription));
    std::vector<v1::PubsubMessage> messages;
    std::vector<std::uint64_t> seqs;
    for (const auto& letter : letters) {
      auto m = to_proto(letter);
      auto& attributes = *m.mutable_attributes();
      attributes["CloudPubSubDeadLetterSourceDeliveryCount"] =
          std::to_string(policy.max_delivery_attempts() == 0 ? 5 : policy.max_delivery_attempts());
      attributes["CloudPubSubDeadLetterSourceSubscription"] = project.id;
      attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] = project.project;
      attributes["CloudPubSubDeadLetterSourceTopicPublishTime"] =
          TimeUtil::ToString(TimeUtil::MillisecondsToTimestamp(letter.message.publish_time_ms));
      messages.push_back(std::move(m));
      seqs.push_back(letter.seq);
    }
    append(*target->second, std::move(messages),
           [this, name = s.name, seqs = std::move(seqs)](status st, std::vector<std::string>) {
             if (!st.ok()) return;  // not settled: dead-lettered again at the next attempt
             std::lock_guard lock(mutex);
             auto found = subscriptions.find(name);
             if (found == subscriptions.end() || !found->second->engine) return;
             for (auto seq : seqs) found->second->engine->settle(seq);
             save_cursor(*found->second);
           });
  }

  // Deletes the topics' segments no subscription needs any more: below every subscription's
  // floor (unless one keeps acked messages for seek, or the topic retains its own), and past the
  // longest retention in any case.
  void trim_logs() {
    const std::int64_t now_ms = clock.unix_millis();
    for (auto it = snapshots.begin(); it != snapshots.end();) {
      if (TimeUtil::TimestampToMilliseconds(it->second.meta.expire_time()) > now_ms) {
        ++it;
        continue;
      }
      delete_snapshot_row(it->first);
      it = snapshots.erase(it);
    }
    for (auto& [name, t] : topics) {
      std::int64_t keep_s = t->meta.has_message_retention_duration()
                                ? seconds_of(t->meta.message_retention_duration())
                                : 0;
      bool keep_acked = keep_s > 0;
      std::uint64_t floor = t->store->next_seq();
      for (const auto& sub_name : t->subscriptions) {
        auto s = subscriptions.find(sub_name);
        if (s == subscriptions.end() || !s->second->engine) continue;
        keep_s = std::max(keep_s, seconds_of(s->second->meta.message_retention_duration()));
        keep_acked = keep_acked || s->second->meta.retain_acked_messages();
        floor = std::min(floor, s->second->engine->snapshot().floor);
      }
      for (const auto& [snapshot_name, snapshot] : snapshots)
        if (snapshot.meta.topic() == name) floor = std::min(floor, snapshot.cursor.floor);
      if (!keep_acked) t->log->drop_before(floor);
      if (keep_s > 0) t->log->drop_older_than(now_ms - keep_s * 1000);
    }
  }

  void tick() {
    std::vector<std::function<void()>> answers;
    {
      std::lock_guard lock(mutex);
      if (stopped) return;
      // Housekeeping every 10 s by the service's clock.
      if (const auto now_ms = clock.unix_millis(); now_ms - housekept_ms >= 10'000) {
        housekept_ms = now_ms;
        expire_idle(answers);
        trim_logs();
        if (journaled_since_checkpoint > 0) checkpoint();
      }
      for (auto& [name, s] : subscriptions) {
        if (s->engine) {
          s->engine->tick();
          forward_dead_letters(*s);
        }
        if (!s->waiting.empty()) serve_waiting(*s, answers);
        pump_push(*s);
      }
    }
    for (auto& a : answers) a();
  }

  void schedule_tick() {
    timer.expires_after(milliseconds(100));
    timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      try {
        tick();
      } catch (const std::exception& e) {
        core::report_bug("pubsub_tick", e.what());
      }
      schedule_tick();
    });
  }

  // Validates a subscription's fields (create and update), normalising defaults; its
  // dead-letter topic must exist.
  status check_subscription(v1::Subscription& s, bool creating) {
    if (auto checked = normalise_subscription(s, creating); !checked.ok()) return checked;
    if (s.has_dead_letter_policy() && !s.dead_letter_policy().dead_letter_topic().empty() &&
        !topics.contains(s.dead_letter_policy().dead_letter_topic()))
      return not_found("Dead letter topic", s.dead_letter_policy().dead_letter_topic());
    return {};
  }
};

// ---------------------------------------------------------------------------------- lifecycle

service::service(storage::write_queue* writer, core::clock& clock, service_settings settings)
    : impl_(std::make_unique<impl>(writer, clock, std::move(settings))) {}

service::~service() {
  stop();
}

void service::migrate(storage::database& db) {
  db.migrate("pubsub", {R"sql(
    CREATE TABLE pubsub_topics (
      name TEXT PRIMARY KEY,
      body BLOB NOT NULL,
      incarnation INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pubsub_subscriptions (
      name TEXT PRIMARY KEY,
      body BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pubsub_cursors (
      subscription TEXT PRIMARY KEY,
      body TEXT NOT NULL
    ) WITHOUT ROWID;
  )sql",
                        R"sql(
    CREATE TABLE pubsub_snapshots (
      name TEXT PRIMARY KEY,
      body BLOB NOT NULL,
      cursor TEXT NOT NULL
    ) WITHOUT ROWID;
  )sql",
                        R"sql(
    CREATE TABLE pubsub_journal (
      id INTEGER PRIMARY KEY CHECK (id = 0),
      generation INTEGER NOT NULL
    );
  )sql"});
}

void service::restore(storage::database& db) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto topics = db.prepare("SELECT name, body, incarnation FROM pubsub_topics");
  while (topics.step()) {
    auto t = std::make_unique<impl::topic_state>();
    t->name = topics.column_text(0);
    if (!t->meta.ParseFromString(std::string(topics.column_view(1)))) continue;
    t->incarnation = static_cast<std::uint64_t>(topics.column_int(2));
    d.next_incarnation = std::max(d.next_incarnation, t->incarnation + 1);
    d.open_log(*t);
    d.topics.emplace(t->name, std::move(t));
  }
  std::map<std::string, cursor_state> cursors;
  auto rows = db.prepare("SELECT subscription, body FROM pubsub_cursors");
  while (rows.step()) cursors.emplace(rows.column_text(0), decode_cursor(rows.column_view(1)));
  d.replay_journal(db, cursors);
  auto subscriptions = db.prepare("SELECT name, body FROM pubsub_subscriptions");
  while (subscriptions.step()) {
    auto s = std::make_unique<impl::subscription_state>();
    s->name = subscriptions.column_text(0);
    if (!s->meta.ParseFromString(std::string(subscriptions.column_view(1)))) continue;
    s->topic_name = s->meta.topic();
    if (auto t = d.topics.find(s->topic_name); t != d.topics.end())
      t->second->subscriptions.insert(s->name);
    auto cursor = cursors.find(s->name);
    d.start_engine(*s, cursor == cursors.end() ? cursor_state{} : cursor->second);
    d.subscriptions.emplace(s->name, std::move(s));
  }
  auto snapshots = db.prepare("SELECT name, body, cursor FROM pubsub_snapshots");
  while (snapshots.step()) {
    impl::snapshot_state snapshot;
    if (!snapshot.meta.ParseFromString(std::string(snapshots.column_view(1)))) continue;
    snapshot.cursor = decode_cursor(snapshots.column_view(2));
    d.snapshots.emplace(snapshots.column_text(0), std::move(snapshot));
  }
  spdlog::info("pubsub_restored topics={} subscriptions={} snapshots={}", d.topics.size(),
               d.subscriptions.size(), d.snapshots.size());
}

void service::start() {
  auto& d = *impl_;
  {
    std::lock_guard lock(d.mutex);
    if (!d.journal) d.open_journal(1);  // without restore(): a fresh directory (tests)
  }
  d.schedule_tick();
  d.loop = std::thread([&d] {
    auto guard = asio::make_work_guard(d.io);
    for (;;) {
      try {
        d.io.run();
        return;
      } catch (const std::exception& e) {
        core::report_bug("pubsub_loop", e.what());
      }
    }
  });
}

// Answers every waiting pull with UNAVAILABLE (after the lock is released).
std::vector<std::function<void()>> service::impl::end_waiting_locked() {
  std::vector<std::function<void()>> answers;
  for (auto& [name, s] : subscriptions) {
    for (auto& w : s->waiting)
      answers.emplace_back([done = std::move(w.done)] {
        done(status::error(code::unavailable, "The server is shutting down."), {});
      });
    s->waiting.clear();
  }
  return answers;
}

void service::end_waits() {
  auto& d = *impl_;
  std::vector<std::function<void()>> answers;
  {
    std::lock_guard lock(d.mutex);
    d.is_draining = true;
    answers = d.end_waiting_locked();
  }
  for (auto& a : answers) a();
}

void service::stop() {
  auto& d = *impl_;
  std::vector<std::function<void()>> answers;
  {
    std::lock_guard lock(d.mutex);
    if (d.stopped) return;
    d.stopped = true;
    d.is_draining = true;
    answers = d.end_waiting_locked();
  }
  for (auto& a : answers) a();
  asio::post(d.io, [&d] { d.timer.cancel(); });
  d.io.stop();
  if (d.loop.joinable()) d.loop.join();
}

// ---------------------------------------------------------------------------------- topics

void service::create_topic(v1::Topic request, reply<v1::Topic> done) {
  auto& d = *impl_;
  if (auto checked = check_topic(request); !checked.ok()) return d.fail(done, std::move(checked));
  std::lock_guard lock(d.mutex);
  if (d.topics.contains(request.name()))
    return d.fail(done, status::error(code::already_exists, "Topic already exists"));
  auto t = std::make_unique<impl::topic_state>();
  t->name = request.name();
  request.set_state(v1::Topic::ACTIVE);
  t->meta = request;
  t->incarnation = d.next_incarnation++;
  try {
    std::filesystem::remove_all(d.topic_dir(t->incarnation));
    d.open_log(*t);
  } catch (const std::exception& e) {
    return d.fail(done,
                  status::error(code::unavailable,
                                std::string("The topic's log cannot be created: ") + e.what()));
  }
  const auto ticket = d.save_topic(*t);
  d.topics.emplace(t->name, std::move(t));
  d.answer_when_durable(ticket, std::move(done), std::move(request));
}

void service::update_topic(v1::UpdateTopicRequest request, reply<v1::Topic> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto found = d.topics.find(request.topic().name());
  if (found == d.topics.end()) return d.fail(done, not_found("Topic", request.topic().name()));
  if (request.update_mask().paths_size() == 0)
    return d.fail(done, invalid("The update_mask must name at least one field."));
  auto meta = found->second->meta;
  for (const auto& path : request.update_mask().paths()) {
    if (path == "labels") {
      *meta.mutable_labels() = request.topic().labels();
    } else if (path == "message_retention_duration" || path == "messageRetentionDuration") {
      if (request.topic().has_message_retention_duration()) {
        const auto r = seconds_of(request.topic().message_retention_duration());
        if (r < min_retention_s || r > max_retention_s)
          return d.fail(done, invalid("Invalid message retention duration."));
        *meta.mutable_message_retention_duration() = request.topic().message_retention_duration();
      } else {
        meta.clear_message_retention_duration();
      }
    } else {
      return d.fail(done, invalid("Invalid update_mask path: " + path));
    }
  }
  found->second->meta = meta;
  d.answer_when_durable(d.save_topic(*found->second), std::move(done), std::move(meta));
}

void service::publish(v1::PublishRequest request, reply<v1::PublishResponse> done) {
  auto& d = *impl_;
  if (auto checked = check_publish(request); !checked.ok()) return d.fail(done, std::move(checked));
  std::lock_guard lock(d.mutex);
  auto found = d.topics.find(request.topic());
  if (found == d.topics.end()) return d.fail(done, not_found("Topic", request.topic()));
  std::vector<v1::PubsubMessage> messages(
      std::make_move_iterator(request.mutable_messages()->begin()),
      std::make_move_iterator(request.mutable_messages()->end()));
  d.append(*found->second, std::move(messages),
           [done = std::move(done)](status s, std::vector<std::string> ids) {
             v1::PublishResponse response;
             for (auto& id : ids) response.add_message_ids(std::move(id));
             done(std::move(s), std::move(response));
           });
}

std::string service::declare(const std::vector<std::string>& topics,
                             const std::vector<std::string>& subscriptions) {
  // Waits for each answer: this runs once, at start, before any listener is open.
  const auto create = [this]<class Resource>(
                          const std::string& json, const char* kind, std::size_t index,
                          void (service::*method)(Resource, reply<Resource>)) -> std::string {
    const std::string where = fmt::format("pubsub.{}[{}]", kind, index);
    Resource resource;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    if (auto parsed = google::protobuf::util::JsonStringToMessage(json, &resource, options);
        !parsed.ok())
      return fmt::format("{}: {}", where, std::string(parsed.message()));
    std::promise<status> answered;
    (this->*method)(resource,
                    [&answered](status s, Resource) { answered.set_value(std::move(s)); });
    const status outcome = answered.get_future().get();
    if (outcome.what == code::already_exists) {
      spdlog::info("pubsub_declared_exists name={} note=\"left as it is\"", resource.name());
      return {};
    }
    if (!outcome.ok()) return fmt::format("{} ({}): {}", where, resource.name(), outcome.message);
    spdlog::info("pubsub_declared_created name={}", resource.name());
    return {};
  };
  for (std::size_t i = 0; i < topics.size(); ++i)
    if (auto problem = create(topics[i], "topics", i, &service::create_topic); !problem.empty())
      return problem;
  for (std::size_t i = 0; i < subscriptions.size(); ++i)
    if (auto problem = create(subscriptions[i], "subscriptions", i, &service::create_subscription);
        !problem.empty())
      return problem;
  return {};
}

void service::publish_record(const std::string& topic_id, std::string data,
                             std::string ordering_key, std::function<void(status)> done,
                             const std::map<std::string, std::string>& attributes) {
  v1::PublishRequest request;
  request.set_topic(full_name(resource_kind::topic, impl_->settings.default_project, topic_id));
  auto* m = request.add_messages();
  m->set_data(std::move(data));
  m->set_ordering_key(std::move(ordering_key));
  for (const auto& [key, value] : attributes) (*m->mutable_attributes())[key] = value;
  publish(std::move(request),
          [done = std::move(done)](status s, v1::PublishResponse) { done(std::move(s)); });
}

void service::get_topic(const v1::GetTopicRequest& request, reply<v1::Topic> done) {
  auto& d = *impl_;
  if (auto parsed = parse_name(request.topic(), resource_kind::topic);
      std::holds_alternative<status>(parsed))
    return d.fail(done, std::get<status>(parsed));
  std::lock_guard lock(d.mutex);
  auto found = d.topics.find(request.topic());
  if (found == d.topics.end()) return d.fail(done, not_found("Topic", request.topic()));
  d.answer(done, found->second->meta);
}

void service::list_topics(const v1::ListTopicsRequest& request,
                          reply<v1::ListTopicsResponse> done) {
  auto& d = *impl_;
  auto project = parse_project(request.project());
  if (auto* s = std::get_if<status>(&project)) return d.fail(done, std::move(*s));
  const std::string prefix = request.project() + "/topics/";
  std::lock_guard lock(d.mutex);
  const auto names = names_under(d.topics, prefix);
  status failed;
  auto [listed, next] = page(names, request.page_size(), request.page_token(), failed);
  if (!failed.ok()) return d.fail(done, std::move(failed));
  v1::ListTopicsResponse response;
  for (const auto& name : listed) *response.add_topics() = d.topics.find(name)->second->meta;
  response.set_next_page_token(next);
  d.answer(done, std::move(response));
}

void service::list_topic_subscriptions(const v1::ListTopicSubscriptionsRequest& request,
                                       reply<v1::ListTopicSubscriptionsResponse> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto found = d.topics.find(request.topic());
  if (found == d.topics.end()) return d.fail(done, not_found("Topic", request.topic()));
  status failed;
  auto [listed, next] =
      page(found->second->subscriptions, request.page_size(), request.page_token(), failed);
  if (!failed.ok()) return d.fail(done, std::move(failed));
  v1::ListTopicSubscriptionsResponse response;
  for (auto& name : listed) response.add_subscriptions(std::move(name));
  response.set_next_page_token(next);
  d.answer(done, std::move(response));
}

void service::list_topic_snapshots(const v1::ListTopicSnapshotsRequest& request,
                                   reply<v1::ListTopicSnapshotsResponse> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  if (!d.topics.contains(request.topic())) return d.fail(done, not_found("Topic", request.topic()));
  std::set<std::string> names;
  for (const auto& [name, snapshot] : d.snapshots)
    if (snapshot.meta.topic() == request.topic()) names.insert(name);
  status failed;
  auto [listed, next] = page(names, request.page_size(), request.page_token(), failed);
  if (!failed.ok()) return d.fail(done, std::move(failed));
  v1::ListTopicSnapshotsResponse response;
  for (auto& name : listed) response.add_snapshots(std::move(name));
  response.set_next_page_token(next);
  d.answer(done, std::move(response));
}

void service::delete_topic(const v1::DeleteTopicRequest& request, reply<empty> done) {
  auto& d = *impl_;
  std::unique_ptr<impl::topic_state> gone;
  storage::ticket ticket;
  {
    std::lock_guard lock(d.mutex);
    auto found = d.topics.find(request.topic());
    if (found == d.topics.end()) return d.fail(done, not_found("Topic", request.topic()));
    gone = std::move(found->second);
    d.topics.erase(found);
    // Its subscriptions stay, naming "_deleted-topic_", and deliver nothing more.
    for (const auto& name : gone->subscriptions) {
      auto s = d.subscriptions.find(name);
      if (s == d.subscriptions.end()) continue;
      s->second->meta.set_topic(std::string(deleted_topic));
      s->second->topic_name = std::string(deleted_topic);
      s->second->engine.reset();
      d.save_subscription(*s->second);
    }
    ticket = d.submit([name = gone->name](storage::database& db) {
      db.cached("DELETE FROM pubsub_topics WHERE name = ?").bind(1, name).run();
    });
  }
  const auto dir = d.topic_dir(gone->incarnation);
  gone.reset();  // closes the log (waits for its appends)
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  d.answer_when_durable(ticket, std::move(done), empty{});
}

void service::detach_subscription(const v1::DetachSubscriptionRequest& request,
                                  reply<v1::DetachSubscriptionResponse> done) {
  auto& d = *impl_;
  std::vector<std::function<void()>> answers;
  storage::ticket ticket;
  {
    std::lock_guard lock(d.mutex);
    auto found = d.subscriptions.find(request.subscription());
    if (found == d.subscriptions.end())
      return d.fail(done, not_found("Subscription", request.subscription()));
    auto& s = *found->second;
    s.meta.set_detached(true);
    if (s.engine) s.engine->detach();
    s.engine.reset();
    d.serve_waiting(s, answers, true);
    ticket = d.save_subscription(s);
  }
  for (auto& a : answers) a();
  d.answer_when_durable(ticket, std::move(done), v1::DetachSubscriptionResponse{});
}

// ---------------------------------------------------------------------------------- subscriptions

void service::create_subscription(v1::Subscription request, reply<v1::Subscription> done) {
  auto& d = *impl_;
  auto parsed = parse_name(request.name(), resource_kind::subscription);
  if (auto* s = std::get_if<status>(&parsed)) return d.fail(done, std::move(*s));
  if (auto topic = parse_name(request.topic(), resource_kind::topic);
      std::holds_alternative<status>(topic))
    return d.fail(done, std::get<status>(topic));
  std::lock_guard lock(d.mutex);
  if (d.subscriptions.contains(request.name()))
    return d.fail(done, status::error(code::already_exists, "Subscription already exists"));
  auto topic = d.topics.find(request.topic());
  if (topic == d.topics.end()) return d.fail(done, not_found("Topic", request.topic()));
  if (auto s = d.check_subscription(request, true); !s.ok()) return d.fail(done, std::move(s));
  auto s = std::make_unique<impl::subscription_state>();
  s->name = request.name();
  s->topic_name = request.topic();
  s->meta = request;
  // A new subscription receives what is published from now on.
  cursor_state cursor;
  cursor.floor = topic->second->store->next_seq();
  d.start_engine(*s, cursor);
  topic->second->subscriptions.insert(s->name);
  d.save_subscription(*s);
  const auto ticket = d.write_cursor(*s);
  d.subscriptions.emplace(s->name, std::move(s));
  d.answer_when_durable(ticket, std::move(done), std::move(request));
}

void service::get_subscription(const v1::GetSubscriptionRequest& request,
                               reply<v1::Subscription> done) {
  auto& d = *impl_;
  if (auto parsed = parse_name(request.subscription(), resource_kind::subscription);
      std::holds_alternative<status>(parsed))
    return d.fail(done, std::get<status>(parsed));
  std::lock_guard lock(d.mutex);
  auto found = d.subscriptions.find(request.subscription());
  if (found == d.subscriptions.end())
    return d.fail(done, not_found("Subscription", request.subscription()));
  found->second->last_active_ms = d.clock.unix_millis();
  d.answer(done, found->second->meta);
}

void service::update_subscription(v1::UpdateSubscriptionRequest request,
                                  reply<v1::Subscription> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto found = d.subscriptions.find(request.subscription().name());
  if (found == d.subscriptions.end())
    return d.fail(done, not_found("Subscription", request.subscription().name()));
  if (request.update_mask().paths_size() == 0)
    return d.fail(done, invalid("The update_mask must name at least one field."));
  auto& s = *found->second;
  auto meta = s.meta;
  const auto& given = request.subscription();
  for (const auto& path : request.update_mask().paths()) {
    if (path == "ack_deadline_seconds" || path == "ackDeadlineSeconds")
      meta.set_ack_deadline_seconds(given.ack_deadline_seconds());
    else if (path == "retain_acked_messages" || path == "retainAckedMessages")
      meta.set_retain_acked_messages(given.retain_acked_messages());
    else if (path == "message_retention_duration" || path == "messageRetentionDuration")
      *meta.mutable_message_retention_duration() = given.message_retention_duration();
    else if (path == "labels")
      *meta.mutable_labels() = given.labels();
    else if (path == "enable_message_ordering" || path == "enableMessageOrdering")
      meta.set_enable_message_ordering(given.enable_message_ordering());
    else if (path == "expiration_policy" || path == "expirationPolicy")
      *meta.mutable_expiration_policy() = given.expiration_policy();
    else if (path == "dead_letter_policy" || path == "deadLetterPolicy")
      *meta.mutable_dead_letter_policy() = given.dead_letter_policy();
    else if (path == "retry_policy" || path == "retryPolicy")
      *meta.mutable_retry_policy() = given.retry_policy();
    else if (path == "push_config" || path == "pushConfig")
      *meta.mutable_push_config() = given.push_config();
    else if (path == "enable_exactly_once_delivery" || path == "enableExactlyOnceDelivery")
      meta.set_enable_exactly_once_delivery(given.enable_exactly_once_delivery());
    else if (path == "filter")
      return d.fail(done, invalid("A subscription's filter cannot be changed."));
    else
      return d.fail(done, invalid("Invalid update_mask path: " + path));
  }
  if (auto st = d.check_subscription(meta, false); !st.ok()) return d.fail(done, std::move(st));
  s.meta = meta;
  if (s.engine) s.engine->reconfigure(impl::config_of(meta));
  d.answer_when_durable(d.save_subscription(s), std::move(done), std::move(meta));
}

void service::list_subscriptions(const v1::ListSubscriptionsRequest& request,
                                 reply<v1::ListSubscriptionsResponse> done) {
  auto& d = *impl_;
  auto project = parse_project(request.project());
  if (auto* s = std::get_if<status>(&project)) return d.fail(done, std::move(*s));
  const std::string prefix = request.project() + "/subscriptions/";
  std::lock_guard lock(d.mutex);
  const auto names = names_under(d.subscriptions, prefix);
  status failed;
  auto [listed, next] = page(names, request.page_size(), request.page_token(), failed);
  if (!failed.ok()) return d.fail(done, std::move(failed));
  v1::ListSubscriptionsResponse response;
  for (const auto& name : listed)
    *response.add_subscriptions() = d.subscriptions.find(name)->second->meta;
  response.set_next_page_token(next);
  d.answer(done, std::move(response));
}

void service::delete_subscription(const v1::DeleteSubscriptionRequest& request, reply<empty> done) {
  auto& d = *impl_;
  std::vector<std::function<void()>> answers;
  storage::ticket ticket;
  {
    std::lock_guard lock(d.mutex);
    auto found = d.subscriptions.find(request.subscription());
    if (found == d.subscriptions.end())
      return d.fail(done, not_found("Subscription", request.subscription()));
    ticket = d.remove_subscription(found, answers);
    // Its journal records must not outlive it into a subscription of the same name.
    d.checkpoint();
  }
  for (auto& a : answers) a();
  d.answer_when_durable(ticket, std::move(done), empty{});
}

void service::pull(const v1::PullRequest& request, reply<v1::PullResponse> done) {
  pull(request, std::optional<stream_pull>(), milliseconds::max(), std::move(done));
}

void service::pull(const v1::PullRequest& request, milliseconds max_wait,
                   reply<v1::PullResponse> done) {
  pull(request, std::optional<stream_pull>(), max_wait, std::move(done));
}

void service::pull(const v1::PullRequest& request, const stream_pull& stream,
                   reply<v1::PullResponse> done) {
  if (stream.lease < seconds(10) || stream.lease > seconds(600))
    return impl_->fail(done,
                       invalid("The stream ack deadline must be between 10 and 600 seconds."));
  pull(request, std::optional<stream_pull>(stream), milliseconds::max(), std::move(done));
}

std::uint64_t service::new_holder() {
  return impl_->next_holder.fetch_add(1, std::memory_order_relaxed);
}

void service::pull(const v1::PullRequest& request, const std::optional<stream_pull>& stream,
                   milliseconds max_wait, reply<v1::PullResponse> done) {
  auto& d = *impl_;
  if (auto parsed = parse_name(request.subscription(), resource_kind::subscription);
      std::holds_alternative<status>(parsed))
    return d.fail(done, std::get<status>(parsed));
  if (request.max_messages() <= 0)
    return d.fail(done, invalid("max_messages must be greater than 0."));
  const int max_messages = std::min(request.max_messages(), max_pull_messages);
  std::lock_guard lock(d.mutex);
  status why;
  auto* s = d.use(request.subscription(), why);
  if (s == nullptr) return d.fail(done, std::move(why));
  v1::PullResponse response;
  if (s->engine) d.fill_pull(*s, max_messages, stream, response);
  if (response.received_messages_size() > 0 || request.return_immediately()) {
    d.post([done = std::move(done), response = std::move(response)]() mutable {
      done(status{}, std::move(response));
    });
    return;
  }
  // Shutting down: an empty answer would be pulled again at once; UNAVAILABLE is retried later.
  if (d.is_draining)
    return d.fail(done, status::error(code::unavailable, "The server is shutting down."));
  const auto wait = std::min(max_wait, milliseconds(d.settings.max_pull_wait_ms));
  s->waiting.push_back(
      impl::waiting_pull{max_messages, stream, d.clock.now() + wait, std::move(done)});
}

void service::acknowledge(const v1::AcknowledgeRequest& request, reply<empty> done) {
  auto& d = *impl_;
  if (request.ack_ids_size() == 0) return d.fail(done, invalid("No ack ids were given."));
  std::vector<std::function<void()>> answers;  // waiting pulls the acks let through
  const auto serve_released = [&answers] {
    for (auto& a : answers) a();
  };
  std::unique_lock lock(d.mutex);
  status why;
  auto* s = d.use(request.subscription(), why);
  if (s == nullptr) return d.fail(done, std::move(why));
  if (!s->engine) return d.answer_when_durable(storage::ticket{}, std::move(done), empty{});
  const std::vector<std::string> ids(request.ack_ids().begin(), request.ack_ids().end());
  const auto outcomes = s->engine->acknowledge(ids);
  if (!s->waiting.empty()) d.serve_waiting(*s, answers);
  d.pump_push(*s);
  status failed = [&] {
    status out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (outcomes[i] == ack_outcome::invalid && !s->meta.enable_exactly_once_delivery())
        return invalid("Invalid ack id: " + ids[i].substr(0, 64));
      if (outcomes[i] != ack_outcome::ok && s->meta.enable_exactly_once_delivery()) {
        out.what = code::invalid_argument;
        out.message = "Some acknowledgement ids in the request were invalid.";
        out.reason = "EXACTLY_ONCE_ACKID_FAILURE";
        out.metadata[ids[i]] = "PERMANENT_FAILURE_INVALID_ACK_ID";
      }
    }
    return out;
  }();
  if (!failed.ok()) {
    d.save_cursor(*s);
    lock.unlock();
    serve_released();
    return d.fail(done, std::move(failed));
  }
  d.answer_when_journaled(*s, std::move(done), empty{});
  lock.unlock();
  serve_released();
}

void service::modify_ack_deadline(const v1::ModifyAckDeadlineRequest& request, reply<empty> done) {
  auto& d = *impl_;
  if (request.ack_deadline_seconds() < 0 || request.ack_deadline_seconds() > 600)
    return d.fail(done, invalid("Invalid ack deadline: must be between 0 and 600 seconds."));
  if (request.ack_ids_size() == 0) return d.fail(done, invalid("No ack ids were given."));
  std::vector<std::function<void()>> answers;
  {
    std::lock_guard lock(d.mutex);
    status why;
    auto* s = d.use(request.subscription(), why);
    if (s == nullptr) return d.fail(done, std::move(why));
    if (s->engine) {
      const std::vector<std::string> ids(request.ack_ids().begin(), request.ack_ids().end());
      const auto outcomes =
          s->engine->modify_ack_deadline(ids, seconds(request.ack_deadline_seconds()));
      for (std::size_t i = 0; i < ids.size(); ++i)
        if (outcomes[i] == ack_outcome::invalid && !s->meta.enable_exactly_once_delivery())
          return d.fail(done, invalid("Invalid ack id: " + ids[i].substr(0, 64)));
      if (request.ack_deadline_seconds() == 0) {
        d.forward_dead_letters(*s);
        d.save_cursor(*s);  // delivery counts
        if (!s->waiting.empty()) d.serve_waiting(*s, answers);
      }
    }
  }
  for (auto& a : answers) a();
  d.post([done = std::move(done)] { done(status{}, empty{}); });
}

void service::modify_push_config(const v1::ModifyPushConfigRequest& request, reply<empty> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto found = d.subscriptions.find(request.subscription());
  if (found == d.subscriptions.end())
    return d.fail(done, not_found("Subscription", request.subscription()));
  auto meta = found->second->meta;
  *meta.mutable_push_config() = request.push_config();
  if (auto st = d.check_subscription(meta, false); !st.ok()) return d.fail(done, std::move(st));
  found->second->meta = meta;
  found->second->push.window = 1;  // a new endpoint starts slow
  found->second->push.failures = 0;
  found->second->push.paused_until = {};
  d.answer_when_durable(d.save_subscription(*found->second), std::move(done), empty{});
}

void service::seek(const v1::SeekRequest& request, reply<v1::SeekResponse> done) {
  auto& d = *impl_;
  if (!request.has_time() && request.snapshot().empty())
    return d.fail(done, invalid("A seek needs a time or a snapshot."));
  std::lock_guard lock(d.mutex);
  status why;
  auto* s = d.use(request.subscription(), why);
  if (s == nullptr) return d.fail(done, std::move(why));
  if (request.has_time()) {
    if (s->engine) s->engine->seek_to_time(TimeUtil::TimestampToMilliseconds(request.time()));
  } else {
    auto snapshot = d.snapshots.find(request.snapshot());
    if (snapshot == d.snapshots.end())
      return d.fail(done, not_found("Snapshot", request.snapshot()));
    if (snapshot->second.meta.topic() != s->topic_name)
      return d.fail(done, status::error(code::failed_precondition,
                                        "The snapshot's topic is not the subscription's."));
    if (s->engine) s->engine->seek_to_state(snapshot->second.cursor);
  }
  std::vector<std::function<void()>> answers;
  if (!s->waiting.empty()) d.serve_waiting(*s, answers);
  for (auto& a : answers) d.post(std::move(a));
  d.answer_when_journaled(*s, std::move(done), v1::SeekResponse{});
}

// A snapshot keeps a subscription's cursor (its unacked backlog and everything published after)
// for 7 days from its oldest unacked message, as Google's.
void service::create_snapshot(const v1::CreateSnapshotRequest& request, reply<v1::Snapshot> done) {
  auto& d = *impl_;
  if (auto parsed = parse_name(request.name(), resource_kind::snapshot);
      std::holds_alternative<status>(parsed))
    return d.fail(done, std::get<status>(parsed));
  std::lock_guard lock(d.mutex);
  if (d.snapshots.contains(request.name()))
    return d.fail(done, status::error(code::already_exists, "Snapshot already exists"));
  status why;
  auto* s = d.use(request.subscription(), why);
  if (s == nullptr) return d.fail(done, std::move(why));
  if (!s->engine)
    return d.fail(done, status::error(code::failed_precondition,
                                      "The subscription's topic has been deleted."));
  const auto now_ms = d.clock.unix_millis();
  const auto oldest = s->engine->statistics().oldest_unacked_publish_ms;
  const std::int64_t expires_ms = (oldest == 0 ? now_ms : oldest) + snapshot_lifetime_ms;
  if (expires_ms - now_ms < 3600 * 1000)
    return d.fail(done, status::error(code::failed_precondition,
                                      "The snapshot would expire in less than 1 hour."));
  impl::snapshot_state snapshot;
  snapshot.meta.set_name(request.name());
  snapshot.meta.set_topic(s->topic_name);
  *snapshot.meta.mutable_expire_time() = TimeUtil::MillisecondsToTimestamp(expires_ms);
  *snapshot.meta.mutable_labels() = request.labels();
  snapshot.cursor = s->engine->snapshot();
  auto meta = snapshot.meta;
  const auto ticket = d.save_snapshot(snapshot);
  d.snapshots.emplace(request.name(), std::move(snapshot));
  d.answer_when_durable(ticket, std::move(done), std::move(meta));
}

void service::get_snapshot(const v1::GetSnapshotRequest& request, reply<v1::Snapshot> done) {
  auto& d = *impl_;
  if (auto parsed = parse_name(request.snapshot(), resource_kind::snapshot);
      std::holds_alternative<status>(parsed))
    return d.fail(done, std::get<status>(parsed));
  std::lock_guard lock(d.mutex);
  auto found = d.snapshots.find(request.snapshot());
  if (found == d.snapshots.end()) return d.fail(done, not_found("Snapshot", request.snapshot()));
  d.answer(done, found->second.meta);
}

void service::list_snapshots(const v1::ListSnapshotsRequest& request,
                             reply<v1::ListSnapshotsResponse> done) {
  auto& d = *impl_;
  auto project = parse_project(request.project());
  if (auto* s = std::get_if<status>(&project)) return d.fail(done, std::move(*s));
  const std::string prefix = request.project() + "/snapshots/";
  std::lock_guard lock(d.mutex);
  const auto names = names_under(d.snapshots, prefix);
  status failed;
  auto [listed, next] = page(names, request.page_size(), request.page_token(), failed);
  if (!failed.ok()) return d.fail(done, std::move(failed));
  v1::ListSnapshotsResponse response;
  for (const auto& name : listed) *response.add_snapshots() = d.snapshots.find(name)->second.meta;
  response.set_next_page_token(next);
  d.answer(done, std::move(response));
}

void service::update_snapshot(const v1::UpdateSnapshotRequest& request, reply<v1::Snapshot> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto found = d.snapshots.find(request.snapshot().name());
  if (found == d.snapshots.end())
    return d.fail(done, not_found("Snapshot", request.snapshot().name()));
  if (request.update_mask().paths_size() == 0)
    return d.fail(done, invalid("The update_mask must name at least one field."));
  auto meta = found->second.meta;
  for (const auto& path : request.update_mask().paths()) {
    if (path == "labels")
      *meta.mutable_labels() = request.snapshot().labels();
    else if (path == "expire_time" || path == "expireTime")
      *meta.mutable_expire_time() = request.snapshot().expire_time();
    else
      return d.fail(done, invalid("Invalid update_mask path: " + path));
  }
  found->second.meta = meta;
  d.answer_when_durable(d.save_snapshot(found->second), std::move(done), std::move(meta));
}

void service::delete_snapshot(const v1::DeleteSnapshotRequest& request, reply<empty> done) {
  auto& d = *impl_;
  std::lock_guard lock(d.mutex);
  auto found = d.snapshots.find(request.snapshot());
  if (found == d.snapshots.end()) return d.fail(done, not_found("Snapshot", request.snapshot()));
  d.snapshots.erase(found);
  d.answer_when_durable(d.delete_snapshot_row(request.snapshot()), std::move(done), empty{});
}

// ---------------------------------------------------------------------------------- metrics

std::string service::prometheus_text() const {
  auto& d = *impl_;
  std::string out;
  std::lock_guard lock(d.mutex);
  out +=
      "# HELP nimbus_pubsub_published_total Messages published to a topic\n"
      "# TYPE nimbus_pubsub_published_total counter\n";
  for (const auto& [name, t] : d.topics)
    out += "nimbus_pubsub_published_total{topic=\"" + name + "\"} " + std::to_string(t->published) +
           "\n";
  struct family {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t subscription_engine::stats::*field;
  };
  static constexpr family families[] = {
      {"nimbus_pubsub_delivered_total", "counter", "Messages delivered (redeliveries included)",
       &subscription_engine::stats::delivered},
      {"nimbus_pubsub_acked_total", "counter", "Messages acknowledged",
       &subscription_engine::stats::acked},
      {"nimbus_pubsub_nacked_total", "counter", "Deliveries nacked",
       &subscription_engine::stats::nacked},
      {"nimbus_pubsub_expired_total", "counter", "Messages dropped past retention unacked",
       &subscription_engine::stats::expired},
      {"nimbus_pubsub_dead_lettered_total", "counter", "Messages sent to a dead-letter topic",
       &subscription_engine::stats::dead_lettered},
      {"nimbus_pubsub_filtered_total", "counter", "Messages a filter left out (acked unseen)",
       &subscription_engine::stats::filtered},
      {"nimbus_pubsub_num_undelivered_messages", "gauge", "Messages not yet acknowledged",
       &subscription_engine::stats::undelivered},
  };
  std::vector<std::pair<std::string, subscription_engine::stats>> stats;
  for (const auto& [name, s] : d.subscriptions)
    if (s->engine) stats.emplace_back(name, s->engine->statistics());
  for (const auto& f : families) {
    out +=
        std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n";
    for (const auto& [name, st] : stats)
      out += std::string(f.name) + "{subscription=\"" + name + "\"} " +
             std::to_string(st.*(f.field)) + "\n";
  }
  out +=
      "# HELP nimbus_pubsub_oldest_unacked_message_age_seconds Age of the oldest unacked "
      "message\n# TYPE nimbus_pubsub_oldest_unacked_message_age_seconds gauge\n";
  const auto now_ms = d.clock.unix_millis();
  for (const auto& [name, st] : stats)
    out += "nimbus_pubsub_oldest_unacked_message_age_seconds{subscription=\"" + name + "\"} " +
           std::to_string(st.oldest_unacked_publish_ms == 0
                              ? 0
                              : (now_ms - st.oldest_unacked_publish_ms) / 1000) +
           "\n";
  out +=
      "# HELP nimbus_pubsub_backlog_bytes Bytes of the topic's log from the subscription's "
      "oldest unacked message on\n# TYPE nimbus_pubsub_backlog_bytes gauge\n";
  for (const auto& [name, s] : d.subscriptions) {
    if (!s->engine) continue;
    auto t = d.topics.find(s->topic_name);
    if (t == d.topics.end()) continue;
    out += "nimbus_pubsub_backlog_bytes{subscription=\"" + name + "\"} " +
           std::to_string(t->second->log->bytes_from(s->engine->snapshot().floor)) + "\n";
  }
  out +=
      "# HELP nimbus_pubsub_push_requests_total Push deliveries by outcome (acknowledged by the "
      "endpoint, or failed and retried)\n# TYPE nimbus_pubsub_push_requests_total counter\n";
  for (const auto& [name, s] : d.subscriptions) {
    if (!impl::is_push(*s) && s->push.succeeded + s->push.failed == 0) continue;
    out += "nimbus_pubsub_push_requests_total{subscription=\"" + name +
           "\",outcome=\"acknowledged\"} " + std::to_string(s->push.succeeded) + "\n";
    out += "nimbus_pubsub_push_requests_total{subscription=\"" + name + "\",outcome=\"failed\"} " +
           std::to_string(s->push.failed) + "\n";
  }
  return out;
}

}  // namespace nimbus::pubsub
