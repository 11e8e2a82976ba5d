#pragma once
// One subscription's delivery state, as a sans-I/O core: leases and ack deadlines, nacks and
// retry backoff, dead-lettering, ordering keys, filters, exactly-once ack ids, retention, seek,
// snapshots and detach, with Google Cloud Pub/Sub's semantics (docs/reference: pubsub.md §3).
// Calls go in with the injected clock; deliveries, ack outcomes, dead letters and journal events
// come out. Nothing here touches a socket or a file: the topic's store is read synchronously and
// the service journals what take_journal() returns before confirming an Acknowledge.
//
// One owner per subscription: an engine is used by one thread at a time (the service serialises
// Pull, StreamingPull, Acknowledge, ModifyAckDeadline and its timer onto the owner). Memory is
// bounded by what is in flight: leases, redeliveries waiting, ordering-key bookkeeping for those,
// and acked ranges above the floor. The backlog itself stays in the store and is read on demand.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "pubsub/ack_id.hpp"
#include "pubsub/filter.hpp"
#include "pubsub/message.hpp"
#include "pubsub/message_store.hpp"

namespace nimbus::pubsub {

struct dead_letter_policy {
  std::string topic;
  std::int32_t max_delivery_attempts = 5;  // 5..100; 0 means 5 (the engine clamps)
};

// Exponential backoff after a nack or a lease expiry: minimum_backoff after the first delivery,
// doubled per further delivery, capped at maximum_backoff. Both 0..600 s (the engine clamps).
struct retry_policy {
  std::chrono::milliseconds minimum_backoff{10'000};
  std::chrono::milliseconds maximum_backoff{600'000};
};

struct subscription_config {
  std::chrono::seconds ack_deadline{10};  // 10..600; 0 means 10 (the engine clamps)
  bool retain_acked_messages = false;
  std::chrono::milliseconds retention{7LL * 24 * 3600 * 1000};
  bool message_ordering = false;         // fixed at creation: reconfigure keeps the first
  std::optional<filter> message_filter;  // fixed at creation: reconfigure keeps the first
  std::optional<dead_letter_policy> dead_letter;
  std::optional<retry_policy> retry;  // none: redeliver as soon as possible
  bool exactly_once = false;
};

// Durable cursor state, what a restart restores (journaled/checkpointed by the service).
struct cursor_state {
  // Every seq < floor is settled (acked, filtered, expired, dead-lettered).
  std::uint64_t floor = 0;
  // Settled [first, last] ranges above the floor: sorted, disjoint.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> acked;
  // Deliveries so far of unsettled seqs; only kept with a dead-letter policy.
  std::map<std::uint64_t, std::int32_t> delivery_attempts;
  // Leases outstanding, with exactly-once only: their ack ids stay good across a restart until
  // the deadline (Unix ms), as Google honours an exactly-once lease until it expires.
  struct lease {
    std::uint32_t delivery = 0;  // the ack id's version
    std::uint32_t epoch = 0;     // the ack id's epoch: the engine that leased it
    std::int64_t deadline_ms = 0;
    friend bool operator==(const lease&, const lease&) = default;
  };
  std::map<std::uint64_t, lease> leases;

  friend bool operator==(const cursor_state&, const cursor_state&) = default;
};

// What changed durably since the last take_journal(). The service writes it before confirming an
// Acknowledge (a unary ack returns once journaled) and replays it over its last checkpoint with
// apply_event at start-up.
//   ack       seqs first..last are settled (acked, filtered, expired, dead-lettered);
//   seek      the floor becomes `first` and everything at or after it is unacked (acked ranges
//             and attempts below it are dropped); ack events that follow restate what stays acked;
//   attempts  seq `first` has been delivered `attempts` times (with a dead-letter policy only);
//   lease     seq `first` is leased as delivery `attempts` of engine `epoch` until `deadline_ms`
//             (Unix ms), or no longer leased when deadline_ms is 0 (with exactly-once only).
struct cursor_event {
  enum class kind { ack, seek, attempts, lease } what;
  std::uint64_t first = 0, last = 0;
  std::int32_t attempts = 0;
  std::uint32_t epoch = 0;
  std::int64_t deadline_ms = 0;

  friend bool operator==(const cursor_event&, const cursor_event&) = default;
};

// Applies one journal event to a checkpoint, leaving it normalised (floor advanced over acked
// ranges that reach it, ranges merged, attempts of settled seqs dropped).
void apply_event(cursor_state& state, const cursor_event& event);

struct delivery {
  std::string ack_id;
  stored_message message;
  std::int32_t delivery_attempt = 0;  // 1 + previous deliveries; 0 without a dead-letter policy
};

// invalid: malformed, another owner's, or a seq the topic never had.
// stale: exactly-once failure (expired, superseded, already acked, old epoch).
enum class ack_outcome { ok, invalid, stale };

// Ack ids. Without exactly-once, any well-formed id of this owner acks its seq, whatever its
// epoch, delivery or lease state (Google: "an ack after expiry may succeed"), and acking a
// settled seq again is ok. With exactly-once, only the current, unexpired lease of this epoch
// acks or modifies; everything else is stale.
//
// Ordering (message_ordering): messages of one non-empty key go out in seq order, one batch in
// flight per key. A Pull may hand out any number of a key's messages in order, but a key with
// a message outstanding from an earlier Pull (leased, or waiting for redelivery) gives nothing
// more until those are settled; its newer messages are held (as seqs only, up to
// max_held_messages in all). A nack or expiry rewinds the key: that message and every later
// leased one of the key go back, and are redelivered in order.
class subscription_engine {
 public:
  // Past this many messages waiting (held behind an ordering key, or for redelivery), Pull stops
  // reading new ones from the store until some are delivered.
  static constexpr std::size_t max_held_messages = 10'000;
  // A Pull examines at most this many new messages (filtered, acked, held...) before answering.
  static constexpr std::size_t max_scanned_per_pull = 10'000;
  static constexpr std::chrono::seconds dead_letter_grace{60};

  subscription_engine(subscription_config settings, const message_store& topic,
                      cursor_state restored, core::clock& clock, std::uint32_t owner,
                      std::uint32_t epoch);

  // UpdateSubscription. Leases held keep their deadline; ordering and the filter stay as created.
  void reconfigure(subscription_config settings);
  const subscription_config& config() const { return config_; }

  // Deliver up to max_messages / ~max_bytes (>= 1 message if any deliverable), leasing each for
  // `lease` (default: the subscription's ack deadline). Order: redeliveries whose backoff is over
  // first (lowest seq first), then new messages from the cursor. Filtered-out messages are
  // settled (acked) on the way and counted, never delivered. Leases and backoffs that are due are
  // processed first, as tick() would.
  // `holder` (non-zero) names who the leases go to, a StreamingPull stream or a push sender:
  // leased_to(holder) counts them until each is acked, nacked or expires, whichever call does it
  // (clients ack a stream's messages through unary Acknowledge too), for flow control.
  std::vector<delivery> pull(std::size_t max_messages, std::size_t max_bytes,
                             std::optional<std::chrono::seconds> lease = std::nullopt,
                             std::uint64_t holder = 0);
  struct holding {
    std::size_t messages = 0;
    std::size_t bytes = 0;
  };
  holding leased_to(std::uint64_t holder) const;

  std::vector<ack_outcome> acknowledge(const std::vector<std::string>& ack_ids);
  // seconds 0 = nack (redelivery per retry policy); 1..600 extends from now (values outside
  // 0..600 are the service's to refuse; the engine clamps). Without exactly-once, an id that is
  // not the current lease is ignored (ok).
  std::vector<ack_outcome> modify_ack_deadline(const std::vector<std::string>& ack_ids,
                                               std::chrono::seconds seconds);

  // Expires leases past their deadline (they become redeliverable, per retry policy; with
  // ordering, every later outstanding message of the same key is returned too and will be
  // redelivered in order after it), drops messages past retention or purged from the store
  // (settled, counted expired).
  void tick();
  // Messages whose delivery attempts reached max_delivery_attempts on a nack/expiry: the service
  // publishes each to the dead-letter topic and then calls settle(seq) (best effort, as Google).
  // Until settled they are neither delivered nor counted outstanding, and hold back their
  // ordering key. One not settled within dead_letter_grace of being taken (the publish failed)
  // becomes deliverable again, and is dead-lettered again at its next nack or expiry.
  std::vector<stored_message> take_dead_letters();
  void settle(std::uint64_t seq);

  // Before the time: settled; at/after: unacked (only with retain_acked_messages do acked ones
  // come back). Drops every lease: what was outstanding is delivered again from the cursor.
  void seek_to_time(std::int64_t time_ms);
  void seek_to_state(const cursor_state& snapshot);  // Seek to a snapshot
  cursor_state snapshot() const;                     // CreateSnapshot, checkpoints
  std::vector<cursor_event> take_journal();
  void detach();  // drops the backlog: pull returns nothing afterwards
  bool is_detached() const { return is_detached_; }

  // When tick() next has work (earliest lease deadline or backoff end), for the service's timer.
  // Retention is not included: the service also ticks now and then (a minute is plenty).
  std::optional<core::steady_time> next_deadline() const;
  bool has_deliverable() const;  // a waiting Pull/StreamingPull may be served now

  struct stats {
    std::uint64_t undelivered = 0;  // next_seq - cursor (less acked ahead) + redeliveries waiting
    std::uint64_t outstanding = 0;  // leased
    std::int64_t oldest_unacked_publish_ms = 0;  // 0 if none
    std::uint64_t delivered = 0, acked = 0, nacked = 0, expired = 0, dead_lettered = 0,
                  filtered = 0;
    std::uint64_t lease_expiries = 0;  // leases that ran out before an ack or a nack
  };
  stats statistics() const;

 private:
  enum class entry_state : std::uint8_t {
    leased,       // delivered, deadline in `when`
    waiting,      // back-off until `when`, then ready
    ready,        // deliverable: a redelivery, or a new message held behind its ordering key
    dead_letter,  // for take_dead_letters, then settle(); once taken, `when` ends the grace
  };
  struct key_state {
    std::set<std::uint64_t> outstanding;  // this key's entries, in seq order
    std::size_t leased = 0;
    // Worked out once per Pull (the first time the Pull meets the key): whether the key had
    // nothing leased at the start, and which of its outstanding seqs must go out next.
    std::uint64_t pull = 0;
    bool is_open = false;
    std::optional<std::uint64_t> expected;
  };
  using key_map = std::map<std::string, key_state, std::less<>>;
  struct entry {
    entry_state state = entry_state::ready;
    std::uint32_t deliveries = 0;  // so far; the ack id's version
    core::steady_time when{};      // lease deadline or end of back-off
    std::uint64_t holder = 0;      // whom the current lease went to (0: nobody tracked)
    std::uint32_t epoch = 0;       // the engine that leased it (an earlier one's, if restored)
    std::uint32_t bytes = 0;       // the message's size, for the holder's count
    bool has_key = false;
    key_map::iterator key{};  // valid when has_key
  };

  static subscription_config normalised(subscription_config settings);
  void load(const cursor_state& state);
  std::chrono::milliseconds backoff_after(std::uint32_t deliveries) const;
  std::chrono::seconds lease_length(std::optional<std::chrono::seconds> lease) const;

  bool is_settled(std::uint64_t seq) const;
  bool is_current_lease(const ack_token& token, core::steady_time now) const;
  std::optional<stored_message> read_one(std::uint64_t seq) const;
  bool is_past_retention(const stored_message& message, std::int64_t now_ms) const;
  std::uint64_t retention_cutoff(std::int64_t now_ms) const;

  void process_due(core::steady_time now);
  void expire_old(std::int64_t now_ms);
  void settle_below(std::uint64_t cutoff);
  bool settle_one(std::uint64_t seq);
  void advance_floor();
  void drop_outstanding();

  static void touch(key_state& key, std::uint64_t pull_id);
  std::uint32_t take_carried(std::uint64_t seq);
  void lease_entry(std::uint64_t seq, entry& item, core::steady_time deadline, std::uint64_t holder,
                   std::size_t bytes);
  void release_lease(std::uint64_t seq, entry& item);
  void remove_entry(std::uint64_t seq);
  void unlink_key(std::uint64_t seq, entry& item);
  void requeue(std::uint64_t seq, core::steady_time now);
  void queue_or_dead_letter(std::uint64_t seq, entry& item, core::steady_time ready_at,
                            core::steady_time now);
  delivery make_delivery(stored_message message, const entry& item) const;

  void journal_ack(std::uint64_t first, std::uint64_t last);
  void journal_lease(std::uint64_t seq, const entry& item);  // exactly-once only
  std::int64_t unix_ms_of(core::steady_time when) const;
  void journal_state();

  subscription_config config_;
  const message_store& topic_;
  core::clock& clock_;
  const std::uint32_t owner_;
  const std::uint32_t epoch_;

  std::uint64_t floor_ = 0;   // every seq below is settled; floor_ itself is not
  std::uint64_t cursor_ = 0;  // first seq never handed to this engine's queues since load/seek
  std::map<std::uint64_t, std::uint64_t> acked_;  // settled ranges above floor_: first -> last
  std::map<std::uint64_t, entry> outstanding_;    // seqs below cursor_ neither settled nor new
  // Leased, waiting, and taken dead_letter entries, by `when`.
  std::set<std::pair<core::steady_time, std::uint64_t>> timers_;
  std::set<std::uint64_t> ready_;
  std::vector<std::uint64_t> dead_letters_;  // dead_letter entries not yet taken
  key_map keys_;                             // ordering keys with outstanding entries
  // Deliveries so far of seqs that are not outstanding (restored, or outstanding before a seek),
  // so that ack id versions and delivery attempts carry on.
  std::map<std::uint64_t, std::uint32_t> carried_deliveries_;
  std::size_t leased_count_ = 0;
  std::map<std::uint64_t, holding> leased_by_holder_;  // holders with leases outstanding
  std::size_t waiting_count_ = 0;
  std::uint64_t pull_count_ = 0;
  bool is_detached_ = false;
  stats counters_;
  std::vector<cursor_event> journal_;
};

}  // namespace nimbus::pubsub
