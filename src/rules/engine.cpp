#include "rules/engine.hpp"

#include <spdlog/spdlog.h>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <exception>
#include <system_error>
#include <utility>

#include "core/base64.hpp"
#include "core/random.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/topic.hpp"
#include "rules/actions/runtime.hpp"
#include "rules/sql/sql.hpp"

namespace nimbus::rules {

namespace json = boost::json;

// How one action of a rule fared, by outcome. Only the atomics change once created.
struct engine::outcome_counters {
  std::atomic<std::uint64_t> success{0};
  std::atomic<std::uint64_t> failure{0};
  std::atomic<std::uint64_t> not_executable{0};
  std::atomic<std::uint64_t> dropped{0};  // the rule's queue was full
};

// A rule's counters, kept across replace and enable/disable, dropped with the rule.
struct engine::rule_stats {
  std::atomic<std::uint64_t> matched{0};  // messages on its FROM filter (its own republishes not)
  std::atomic<std::uint64_t> fired{0};    // ... of which WHERE held
  std::atomic<std::uint64_t> errors{0};   // messages with an evaluation error or a failed action
  std::atomic<std::uint32_t> pending{0};  // asynchronous action runs not finished (its queue)

  // By action label (its type; "errorAction.<type>" for the errorAction). Entries are added
  // under the mutex when a rule version is activated and never removed, so a handler keeps a
  // pointer to its own counters without a lock.
  mutable std::mutex actions_mutex;
  std::map<std::string, outcome_counters, std::less<>> actions;

  outcome_counters& counters_for(const std::string& label) {
    std::lock_guard lock(actions_mutex);
    return actions.try_emplace(label).first->second;
  }
};

// One version of a rule as its handler runs it: immutable, shared by the handler (which may
// still run after a replace, on the version it started with) and the table.
struct engine::active_rule {
  active_rule(const std::string& rule_name, compiled_rule compiled,
              std::shared_ptr<rule_stats> counters)
      : name(rule_name),
        loop_publisher("$aws/rules/" + rule_name),
        code(std::move(compiled)),
        stats(std::move(counters)) {
    action_counters.reserve(code.actions.size());
    for (const auto& action : code.actions)
      action_counters.push_back(&stats->counters_for(action.type));
    if (code.error_action)
      error_action_counters = &stats->counters_for("errorAction." + code.error_action->type);
  }

  std::string name;
  std::string loop_publisher;  // msg->publisher of its republishes: it skips those
  compiled_rule code;
  std::shared_ptr<rule_stats> stats;
  std::vector<outcome_counters*> action_counters;  // one per code.actions
  outcome_counters* error_action_counters = nullptr;
};

// One message a rule fired on, while its actions run: what the errorAction document and the
// errorAction's templates need once the publisher's thread has moved on, and the failures so
// far. Settled (errorAction or nothing) when the last share is given back.
struct engine::firing_state {
  firing_state(std::shared_ptr<const active_rule> fired, broker::message_ptr original,
               const sql::message_context& ctx, std::size_t shares)
      : rule(std::move(fired)),
        msg(std::move(original)),
        topic(ctx.topic),
        client_id(ctx.client_id),
        principal(ctx.principal),
        trace_id(ctx.trace_id),
        account_id(ctx.account_id),
        timestamp_ms(ctx.timestamp_ms),
        remaining(shares) {}

  sql::message_context context(const shadow_reader& shadows) const {
    sql::message_context ctx;
    ctx.topic = topic;
    ctx.client_id = client_id;
    ctx.principal = principal;
    ctx.trace_id = trace_id;
    ctx.account_id = account_id;
    ctx.timestamp_ms = timestamp_ms;
    ctx.thing_shadow = shadows;
    return ctx;
  }

  void fail(actions::failure f) {
    std::lock_guard lock(mutex);
    failures.push_back(std::move(f));
  }

  const std::shared_ptr<const active_rule> rule;  // the version that fired, kept for its counters
  const broker::message_ptr msg;
  const std::string topic;  // Basic Ingest: without its prefix
  const std::string client_id;
  const std::string principal;
  const std::string trace_id;
  const std::string_view account_id;  // the engine's
  const std::int64_t timestamp_ms;
  bool error_action = false;  // these are the errorAction's runs
  std::atomic<std::size_t> remaining;
  std::mutex mutex;
  std::vector<actions::failure> failures;  // guarded by mutex
};

namespace {

rule_error not_found(const std::string& name) {
  return rule_error{rule_error::kind::not_found, "Rule " + name + " does not exist"};
}

json::string_view json_text(std::string_view s) {
  return json::string_view(s.data(), s.size());
}

std::uint64_t split_mix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A fresh UUID-shaped id per evaluation (traceid(), cloudwatchTraceId): unique, not secret,
// so a per-thread generator seeded from the strong one, not OpenSSL per message.
std::string new_trace_id() {
  thread_local std::uint64_t state = core::random_u64();
  std::uint64_t high = split_mix(state);
  std::uint64_t low = split_mix(state);
  high = (high & ~0xF000ULL) | 0x4000ULL;                       // version 4
  low = (low & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out += '-';
    const std::uint64_t word = i < 16 ? high : low;
    const int shift = (15 - (i % 16)) * 4;
    out += hex[(word >> shift) & 15U];
  }
  return out;
}

// A Prometheus label value: backslash, quote and newline escaped.
std::string label_value(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Once per rule version: which of its actions this server stores without running.
void log_not_executable(const std::string& name, const compiled_rule& code,
                        const actions::runtime& rt) {
  for (const auto& action : code.actions)
    if (!action.run->executable(rt))
      spdlog::warn("rule_action_not_executable rule={} action={} effect=\"stored, not run\"", name,
                   action.type);
  if (code.error_action && !code.error_action->run->executable(rt))
    spdlog::warn(
        "rule_action_not_executable rule={} action=errorAction.{} effect=\"stored, not run\"", name,
        code.error_action->type);
}

}  // namespace

engine::engine(broker::broker& broker, storage::write_queue* writer, core::clock& clock,
               std::string account_id, engine_settings settings)
    : broker_(broker),
      writer_(writer),
      clock_(clock),
      account_id_(std::move(account_id)),
      max_pending_actions_(settings.max_pending_actions),
      runtime_(std::make_unique<actions::runtime>(broker, std::move(settings.actions))) {}

engine::~engine() {
  // No handler may start once the engine is gone; one running now finishes on its own thread.
  basic_ingest_.reset();
  std::vector<broker::bus_subscription> retired;
  {
    std::unique_lock lock(table_mutex_);
    for (auto& item : rules_) retired.push_back(std::move(item.second.subscription));
  }
  retired.clear();  // outside the table lock: it takes the broker's
  // Then the actions' threads, whose completions use the engine.
  runtime_->stop();
  rules_.clear();
}

void engine::migrate(storage::database& db) {
  db.migrate("rules", {R"sql(
    CREATE TABLE topic_rules (
      name TEXT PRIMARY KEY,
      body TEXT NOT NULL
    ) WITHOUT ROWID;
  )sql"});
}

void engine::restore(storage::database& db) {
  auto rows = db.prepare("SELECT name, body FROM topic_rules ORDER BY name");
  std::size_t loaded = 0;
  std::size_t skipped = 0;
  std::lock_guard mutation(mutation_mutex_);
  while (rows.step()) {
    std::string name = rows.column_text(0);
    const std::string text = rows.column_text(1);
    json::error_code ec;
    json::value body = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec || !body.is_object()) {
      ++skipped;
      spdlog::error("rule_row_unreadable rule={} error=\"not a JSON object\" effect=\"skipped\"",
                    name);
      continue;
    }
    auto parsed = rule_from_payload(name, body.get_object());
    if (const auto* refused = std::get_if<rule_error>(&parsed)) {
      ++skipped;
      spdlog::error("rule_row_unreadable rule={} error=\"{}\" effect=\"skipped\"", name,
                    refused->message);
      continue;
    }
    auto& r = std::get<topic_rule>(parsed);
    if (const auto* created = body.get_object().if_contains("createdAt");
        created != nullptr && created->is_int64())
      r.created_at = created->get_int64();
    auto stats = std::make_shared<rule_stats>();
    auto activated = activate(r, stats);
    if (const auto* refused = std::get_if<rule_error>(&activated)) {
      ++skipped;
      spdlog::error("rule_row_unreadable rule={} error=\"{}\" effect=\"skipped\"", name,
                    refused->message);
      continue;
    }
    auto active = std::get<std::shared_ptr<const active_rule>>(std::move(activated));
    log_not_executable(r.name, active->code, *runtime_);
    broker::bus_subscription subscription;
    if (started_ && !r.disabled) subscription = subscribe(active);
    std::string pattern = active->code.statement.topic_filter();
    {
      std::unique_lock lock(table_mutex_);
      auto& e = rules_[name];
      e.rule = std::move(r);
      e.pattern = std::move(pattern);
      e.active = std::move(active);
      e.stats = std::move(stats);
      e.subscription = std::move(subscription);
    }
    ++loaded;
  }
  spdlog::info("rules_restored rules={} unreadable={}", loaded, skipped);
}

void engine::start() {
  std::lock_guard mutation(mutation_mutex_);
  if (started_) return;
  started_ = true;
  // Basic Ingest: `$aws/rules/<rule>/<topic>` goes to that rule alone, as if published to
  // <topic>; the broker delivers it to no client.
  basic_ingest_ = broker_.subscribe_service(
      "$aws/rules/+/#",
      [this](const broker::message_ptr& msg, const broker::client_identity* from) {
        try {
          ingest(msg, from);
        } catch (const std::exception& e) {
          core::report_bug("rule_basic_ingest", e.what());
        }
      });
  // Only mutations change rules_, and they wait for mutation_mutex_: reading it here is safe.
  for (auto& item : rules_) {
    auto& e = item.second;
    if (e.rule.disabled) continue;
    auto subscription = subscribe(e.active);
    std::unique_lock lock(table_mutex_);
    e.subscription = std::move(subscription);
  }
}

auto engine::activate(const topic_rule& r, const std::shared_ptr<rule_stats>& stats) const
    -> std::variant<std::shared_ptr<const active_rule>, rule_error> {
  if (!is_valid_rule_name(r.name))
    return rule_error{rule_error::kind::invalid_request, "Invalid rule name: " + r.name};
  auto compiled = compile(r);
  if (auto* refused = std::get_if<rule_error>(&compiled)) return std::move(*refused);
  auto& code = std::get<compiled_rule>(compiled);
  // The SQL's filter grammar is MQTT's; the broker's own limits (length, levels) and its
  // refusal of shared subscriptions for services apply too.
  const std::string& filter = code.statement.topic_filter();
  if (filter.starts_with("$share/") || !mqtt::is_valid_topic_filter(filter, broker_.topic_limits()))
    return rule_error{rule_error::kind::invalid_request,
                      "The rule's topic filter cannot be subscribed to: " + filter};
  return std::shared_ptr<const active_rule>(
      std::make_shared<active_rule>(r.name, std::move(code), stats));
}

broker::bus_subscription engine::subscribe(const std::shared_ptr<const active_rule>& active) {
  return broker_.subscribe_service(
      active->code.statement.topic_filter(),
      [this, active](const broker::message_ptr& msg, const broker::client_identity* from) {
        try {
          run(active, msg, from, msg->topic);
        } catch (const std::exception& e) {
          // Out of memory and the like: this message is lost for this rule, the publisher and
          // the other subscribers are not affected.
          core::report_bug("rule_handler", e.what());
        }
      });
}

storage::ticket engine::install(topic_rule r, std::shared_ptr<const active_rule> active,
                                std::shared_ptr<rule_stats> stats) {
  // The new version is on the bus before the old one leaves: a message published meanwhile may
  // be seen by both, none is missed.
  broker::bus_subscription fresh;
  if (started_ && !r.disabled) fresh = subscribe(active);
  const storage::ticket written = save(r);
  std::string pattern = active->code.statement.topic_filter();
  broker::bus_subscription retired;
  {
    std::unique_lock lock(table_mutex_);
    auto& e = rules_[r.name];
    retired = std::exchange(e.subscription, std::move(fresh));
    e.pattern = std::move(pattern);
    e.active = std::move(active);
    e.stats = std::move(stats);
    e.rule = std::move(r);
  }
  retired.reset();  // outside the table lock: it takes the broker's
  return written;
}

storage::ticket engine::save(const topic_rule& r) {
  if (writer_ == nullptr) return {};
  return writer_->submit(
      [name = r.name, body = json::serialize(rule_to_json(r))](storage::database& db) {
        db.cached(
              "INSERT INTO topic_rules (name, body) VALUES (?, ?) "
              "ON CONFLICT (name) DO UPDATE SET body = excluded.body")
            .bind(1, name)
            .bind(2, body)
            .run();
      });
}

std::variant<storage::ticket, rule_error> engine::create(topic_rule r) {
  std::lock_guard mutation(mutation_mutex_);
  auto stats = std::make_shared<rule_stats>();
  auto activated = activate(r, stats);
  if (auto* refused = std::get_if<rule_error>(&activated)) return std::move(*refused);
  // Only mutations change rules_, and they wait for mutation_mutex_: reading it here is safe.
  if (rules_.contains(r.name))
    return rule_error{rule_error::kind::already_exists, "Rule " + r.name + " already exists"};
  r.created_at = clock_.unix_seconds();
  auto active = std::get<std::shared_ptr<const active_rule>>(std::move(activated));
  log_not_executable(r.name, active->code, *runtime_);
  return install(std::move(r), std::move(active), std::move(stats));
}

std::variant<storage::ticket, rule_error> engine::replace(topic_rule r) {
  std::lock_guard mutation(mutation_mutex_);
  auto found = rules_.find(r.name);
  if (found == rules_.end()) return not_found(r.name);
  auto stats = found->second.stats;
  auto activated = activate(r, stats);
  if (auto* refused = std::get_if<rule_error>(&activated)) return std::move(*refused);
  r.created_at = found->second.rule.created_at;
  auto active = std::get<std::shared_ptr<const active_rule>>(std::move(activated));
  log_not_executable(r.name, active->code, *runtime_);
  return install(std::move(r), std::move(active), std::move(stats));
}

std::variant<storage::ticket, rule_error> engine::set_disabled(const std::string& name,
                                                               bool disabled) {
  std::lock_guard mutation(mutation_mutex_);
  auto found = rules_.find(name);
  if (found == rules_.end()) return not_found(name);
  topic_rule r = found->second.rule;
  r.disabled = disabled;
  return install(std::move(r), found->second.active, found->second.stats);
}

std::variant<storage::ticket, rule_error> engine::remove(const std::string& name) {
  std::lock_guard mutation(mutation_mutex_);
  broker::bus_subscription retired;
  {
    std::unique_lock lock(table_mutex_);
    auto found = rules_.find(name);
    if (found == rules_.end()) return not_found(name);
    retired = std::move(found->second.subscription);
    rules_.erase(found);
  }
  retired.reset();  // outside the table lock: it takes the broker's
  if (writer_ == nullptr) return storage::ticket{};
  return writer_->submit([name](storage::database& db) {
    db.cached("DELETE FROM topic_rules WHERE name = ?").bind(1, name).run();
  });
}

std::optional<topic_rule> engine::get(const std::string& name) const {
  std::shared_lock lock(table_mutex_);
  auto found = rules_.find(name);
  if (found == rules_.end()) return std::nullopt;
  return found->second.rule;
}

std::vector<topic_rule> engine::list(const std::string& after, std::size_t max,
                                     const std::optional<std::string>& topic,
                                     const std::optional<bool>& disabled) const {
  std::vector<topic_rule> out;
  std::shared_lock lock(table_mutex_);
  auto it = after.empty() ? rules_.begin() : rules_.upper_bound(after);
  for (; it != rules_.end() && out.size() < max; ++it) {
    const auto& e = it->second;
    if (topic && e.pattern != *topic) continue;
    if (disabled && e.rule.disabled != *disabled) continue;
    out.push_back(e.rule);
  }
  return out;
}

void engine::run(const std::shared_ptr<const active_rule>& active, const broker::message_ptr& msg,
                 const broker::client_identity* from, std::string_view topic) {
  const active_rule& rule = *active;
  if (msg->publisher == rule.loop_publisher) return;  // its own republish: no loop
  rule_stats& stats = *rule.stats;
  stats.matched.fetch_add(1, std::memory_order_relaxed);

  const std::string trace_id = new_trace_id();
  sql::message_context ctx;
  ctx.topic = topic;
  ctx.client_id =
      from != nullptr ? std::string_view(from->client_id) : std::string_view(msg->publisher);
  if (from != nullptr)
    ctx.principal = from->certificate ? std::string_view(from->certificate->sha256_hex)
                                      : std::string_view(from->signer);
  ctx.account_id = account_id_;
  ctx.timestamp_ms = clock_.unix_millis();
  ctx.trace_id = trace_id;
  ctx.thing_shadow = shadow_reader_;

  const auto result = sql::evaluate(rule.code.statement, msg->payload, ctx);
  if (const auto* failed = std::get_if<sql::eval_error>(&result)) {
    // No action ran: the failure is the evaluation's (our name for it; AWS documents none).
    auto state = std::make_shared<firing_state>(active, msg, ctx, 1);
    state->fail({"SqlEvaluation", rule.name, failed->message});
    return settle(state);
  }
  const auto& output = std::get<std::optional<std::string>>(result);
  if (!output) return;  // WHERE did not hold
  stats.fired.fetch_add(1, std::memory_order_relaxed);

  // One share per action plus one for this loop, so actions finishing inline cannot settle the
  // message before every action has started.
  auto state = std::make_shared<firing_state>(active, msg, ctx, rule.code.actions.size() + 1);
  const actions::firing firing{rule.name, rule.loop_publisher, *msg, ctx, *output};
  for (std::size_t i = 0; i < rule.code.actions.size(); ++i)
    start_action(*rule.code.actions[i].run, *rule.action_counters[i], firing, state);
  settle(state);
}

void engine::ingest(const broker::message_ptr& msg, const broker::client_identity* from) {
  std::string_view rest =
      std::string_view(msg->topic).substr(std::string_view("$aws/rules/").size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash + 1 == rest.size()) return;  // no topic after it
  const std::string_view name = rest.substr(0, slash);
  const std::string_view topic = rest.substr(slash + 1);
  std::shared_ptr<const active_rule> active;
  {
    std::shared_lock lock(table_mutex_);
    auto found = rules_.find(name);
    if (found == rules_.end() || found->second.rule.disabled) return;
    if (!mqtt::topic_matches(found->second.pattern, topic)) return;
    active = found->second.active;
  }
  run(active, msg, from, topic);
}

void engine::start_action(const actions::action& action, outcome_counters& counters,
                          const actions::firing& firing,
                          const std::shared_ptr<firing_state>& state) {
  if (!action.executable(*runtime_)) {
    counters.not_executable.fetch_add(1, std::memory_order_relaxed);
    return settle(state);
  }
  rule_stats& stats = *state->rule->stats;
  const bool queued = action.asynchronous();
  if (queued) {
    // The rule's bounded queue: a slow target holds at most this many runs, never a publisher.
    if (stats.pending.fetch_add(1, std::memory_order_relaxed) >= max_pending_actions_) {
      stats.pending.fetch_sub(1, std::memory_order_relaxed);
      counters.dropped.fetch_add(1, std::memory_order_relaxed);
      state->fail({actions::failed_action_name(action.type()), action.resource(firing),
                   "The rule's action queue is full"});
      return settle(state);
    }
  }
  action.fire(firing, *runtime_,
              [this, state, &counters, queued](std::optional<actions::failure> failed) {
                if (queued) state->rule->stats->pending.fetch_sub(1, std::memory_order_relaxed);
                if (failed) {
                  counters.failure.fetch_add(1, std::memory_order_relaxed);
                  state->fail(std::move(*failed));
                } else {
                  counters.success.fetch_add(1, std::memory_order_relaxed);
                }
                settle(state);
              });
}

void engine::settle(const std::shared_ptr<firing_state>& state) {
  if (state->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // The last share: every action of this message has finished.
  std::vector<actions::failure> failures;
  {
    std::lock_guard lock(state->mutex);
    failures.swap(state->failures);
  }
  if (failures.empty()) return;
  const active_rule& rule = *state->rule;
  if (state->error_action) {
    // The errorAction's own failure ends here: logged, never another errorAction.
    std::uint64_t held_back = 0;
    if (failure_log_.allow(held_back))
      spdlog::warn("rule_error_action_failed rule={} resource=\"{}\" error=\"{}\" held_back={}",
                   rule.name, failures.front().resource, failures.front().message, held_back);
    return;
  }
  rule.stats->errors.fetch_add(1, std::memory_order_relaxed);
  for (const auto& f : failures) {
    std::uint64_t held_back = 0;
    if (failure_log_.allow(held_back))
      spdlog::warn("rule_action_failed rule={} action={} resource=\"{}\" error=\"{}\" held_back={}",
                   rule.name, f.action, f.resource, f.message, held_back);
  }
  if (!rule.code.error_action) return;

  // errorAction: once per (rule, message), with AWS's failure document.
  const auto ctx = state->context(shadow_reader_);
  json::object doc;
  doc.emplace("ruleName", json_text(rule.name));
  doc.emplace("topic", json_text(ctx.topic));
  doc.emplace("cloudwatchTraceId", json_text(ctx.trace_id));
  doc.emplace("clientId", json_text(ctx.client_id));
  const std::string original = core::base64_encode(state->msg->payload);
  doc.emplace("base64OriginalPayload", json_text(original));
  json::array listed;
  for (const auto& f : failures) {
    json::object one;
    one.emplace("failedAction", json_text(f.action));
    one.emplace("failedResource", json_text(f.resource));
    one.emplace("errorMessage", json_text(f.message));
    listed.emplace_back(std::move(one));
  }
  doc.emplace("failures", std::move(listed));
  const std::string payload = json::serialize(doc);

  auto last = std::make_shared<firing_state>(state->rule, state->msg, ctx, 1);
  last->error_action = true;
  const actions::firing firing{rule.name, rule.loop_publisher, *state->msg, ctx, payload};
  start_action(*rule.code.error_action->run, *rule.error_action_counters, firing, last);
}

std::string engine::prometheus_text() const {
  std::vector<std::pair<std::string, std::shared_ptr<rule_stats>>> snapshot;
  {
    std::shared_lock lock(table_mutex_);
    snapshot.reserve(rules_.size());
    for (const auto& item : rules_) snapshot.emplace_back(item.first, item.second.stats);
  }
  auto counter = [](std::string_view family, std::string_view help) {
    return "# HELP " + std::string(family) + " " + std::string(help) + "\n# TYPE " +
           std::string(family) + " counter\n";
  };
  auto sample = [](std::string_view family, std::string_view labels, std::uint64_t value) {
    return std::string(family) + "{" + std::string(labels) + "} " + std::to_string(value) + "\n";
  };
  std::string out;
  out += counter("nimbus_rule_messages_matched_total",
                 "Messages on a rule's FROM filter (its own republishes left out)");
  for (const auto& [name, stats] : snapshot)
    out += sample("nimbus_rule_messages_matched_total", "rule=\"" + name + "\"",
                  stats->matched.load(std::memory_order_relaxed));
  out += counter("nimbus_rule_messages_fired_total", "Messages for which a rule's WHERE held");
  for (const auto& [name, stats] : snapshot)
    out += sample("nimbus_rule_messages_fired_total", "rule=\"" + name + "\"",
                  stats->fired.load(std::memory_order_relaxed));
  out += counter(
      "nimbus_rule_action_total",
      "Rule actions run, by outcome (not_executable: a type stored but not run; dropped: the "
      "rule's action queue was full)");
  for (const auto& [name, stats] : snapshot) {
    std::lock_guard lock(stats->actions_mutex);
    for (const auto& [label, counts] : stats->actions) {
      const std::string labels = "rule=\"" + name + "\",action=\"" + label_value(label) + "\"";
      out += sample("nimbus_rule_action_total", labels + ",outcome=\"success\"",
                    counts.success.load(std::memory_order_relaxed));
      out += sample("nimbus_rule_action_total", labels + ",outcome=\"failure\"",
                    counts.failure.load(std::memory_order_relaxed));
      out += sample("nimbus_rule_action_total", labels + ",outcome=\"not_executable\"",
                    counts.not_executable.load(std::memory_order_relaxed));
      out += sample("nimbus_rule_action_total", labels + ",outcome=\"dropped\"",
                    counts.dropped.load(std::memory_order_relaxed));
    }
  }
  out += counter("nimbus_rule_errors_total",
                 "Messages a rule failed on (an evaluation error or a failed action)");
  for (const auto& [name, stats] : snapshot)
    out += sample("nimbus_rule_errors_total", "rule=\"" + name + "\"",
                  stats->errors.load(std::memory_order_relaxed));
  return out;
}

}  // namespace nimbus::rules
