#pragma once
// The rules engine service: AWS IoT topic rules held in memory and in SQLite (through the write
// queue), each enabled rule one subscription on the broker's bus, plus one for Basic Ingest
// (`$aws/rules/<rule>/...`). A rule's handler runs on the publisher's thread, any number at once:
// it evaluates the rule's SQL against the message and fires its actions (actions/): republish
// inline, the others on the actions' own threads through a bounded queue per rule, and the
// errorAction once per message when any failed. Types Nimbus cannot run are kept verbatim.
// Mutations come from the HTTP threads (src/iot/control_plane_rules.cpp); the engine is owned by
// the application and must outlive the broker's last call into a handler (as services do).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "broker/broker.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "rules/actions/runtime.hpp"
#include "rules/rule.hpp"
#include "storage/database.hpp"
#include "storage/ticket.hpp"
#include "storage/write_queue.hpp"

namespace nimbus::rules {

struct engine_settings {
  actions::runtime_settings actions;
  std::uint32_t max_pending_actions = 1000;  // per rule: asynchronous runs not finished
};

class engine {
 public:
  // `writer` null: nothing is stored and every ticket is none (tests). `account_id` is what
  // accountid() answers.
  engine(broker::broker& broker, storage::write_queue* writer, core::clock& clock,
         std::string account_id, engine_settings settings = {});
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Table topic_rules(name TEXT PRIMARY KEY, body TEXT NOT NULL): body is rule_to_json's.
  static void migrate(storage::database& db);
  // Loads the stored rules (start-up, before start()); a row that no longer reads as a rule is
  // logged and skipped.
  void restore(storage::database& db);
  // Subscribes the enabled rules on the bus; rules created or enabled later subscribe at once.
  void start();

  // Where get_thing_shadow() reads: a shadow's get document as JSON, or none (Undefined). An
  // empty shadow_name is the classic shadow. Set before start(); unset, the function is
  // Undefined.
  using shadow_reader = std::function<std::optional<std::string>(std::string_view thing_name,
                                                                 std::string_view shadow_name)>;
  void read_shadows_from(shadow_reader reader) { shadow_reader_ = std::move(reader); }
  // Where services plug in the targets of their actions (kinesis, timestream): before start().
  actions::runtime& action_runtime() { return *runtime_; }

  // Each returns the ticket of its write (answer once it is durable and did not fail) or the
  // refusal; the rules in memory, and so on the bus, change at once.
  std::variant<storage::ticket, rule_error> create(topic_rule r);   // already_exists if present
  std::variant<storage::ticket, rule_error> replace(topic_rule r);  // not_found if absent
  std::variant<storage::ticket, rule_error> remove(const std::string& name);  // not_found
  std::variant<storage::ticket, rule_error> set_disabled(const std::string& name, bool disabled);
  std::optional<topic_rule> get(const std::string& name) const;
  // Up to `max` rules in name order after `after` (empty: from the first); `topic`: only rules
  // whose topic_pattern equals it; `disabled`: only rules in that state.
  std::vector<topic_rule> list(const std::string& after, std::size_t max,
                               const std::optional<std::string>& topic,
                               const std::optional<bool>& disabled) const;

  // Per rule: nimbus_rule_messages_matched_total{rule}, nimbus_rule_messages_fired_total{rule},
  // nimbus_rule_action_total{rule,action,outcome}, nimbus_rule_errors_total{rule}; outcome is
  // success, failure, not_executable or dropped (the rule's queue was full).
  std::string prometheus_text() const;

 private:
  struct rule_stats;
  struct outcome_counters;
  struct active_rule;
  struct firing_state;

  struct entry {
    topic_rule rule;
    std::string pattern;                        // the FROM filter
    std::shared_ptr<const active_rule> active;  // what the handler runs
    std::shared_ptr<rule_stats> stats;          // kept across replace, gone with the rule
    broker::bus_subscription subscription;      // empty while disabled or before start()
  };

  // The executable form of `r` with its counters in `stats`, or why it cannot run.
  std::variant<std::shared_ptr<const active_rule>, rule_error> activate(
      const topic_rule& r, const std::shared_ptr<rule_stats>& stats) const;
  broker::bus_subscription subscribe(const std::shared_ptr<const active_rule>& active);
  // Puts `r` in the table (new or replacing), subscribes it when it should run, stores it.
  // Caller holds mutation_mutex_.
  storage::ticket install(topic_rule r, std::shared_ptr<const active_rule> active,
                          std::shared_ptr<rule_stats> stats);
  storage::ticket save(const topic_rule& r);

  // The bus handler of one rule; `topic` is what topic() sees (Basic Ingest: without its prefix).
  void run(const std::shared_ptr<const active_rule>& active, const broker::message_ptr& msg,
           const broker::client_identity* from, std::string_view topic);
  // The Basic Ingest handler: finds the rule the topic names and runs it.
  void ingest(const broker::message_ptr& msg, const broker::client_identity* from);
  // Fires one action for `state`'s message (or counts why not); it gives its share back when
  // done.
  void start_action(const actions::action& action, outcome_counters& counters,
                    const actions::firing& firing, const std::shared_ptr<firing_state>& state);
  // Gives back one share of `state`; the last one sends the errorAction what failed.
  void settle(const std::shared_ptr<firing_state>& state);

  broker::broker& broker_;
  storage::write_queue* writer_;
  core::clock& clock_;
  const std::string account_id_;
  shadow_reader shadow_reader_;
  mutable core::log_limiter failure_log_{5};
  const std::uint32_t max_pending_actions_;

  // Mutations one at a time, held across the broker calls they make (subscribe, unsubscribe);
  // handlers never take it. table_mutex_ guards rules_ and is never held across broker calls.
  std::mutex mutation_mutex_;
  bool started_ = false;  // guarded by mutation_mutex_
  mutable std::shared_mutex table_mutex_;
  std::map<std::string, entry, std::less<>> rules_;
  broker::bus_subscription basic_ingest_;      // from start()
  std::unique_ptr<actions::runtime> runtime_;  // last: its threads stop first
};

}  // namespace nimbus::rules
