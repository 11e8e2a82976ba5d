// The alerts service (service.hpp): its thread, its inputs, the API's operations and its
// figures. What it stores, and how, is service_storage.cpp.
#include "alerts/service.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "alerts/alert_json.hpp"
#include "alerts/alerts_api.hpp"
#include "core/log.hpp"
#include "registry/registry.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

// A durable batch of the store's, shared rather than copied (ingest must not wait on alerts):
// the first `count` points are judged.
struct point_batch {
  std::string database;
  std::shared_ptr<const std::vector<tsdb::point>> points;
  std::shared_ptr<const std::vector<std::string>> keys;  // their series keys, if the store has them
  std::shared_ptr<const std::vector<std::uint64_t>> ids;  // and the keys' series ids, if it has
  std::size_t count = 0;
};
struct presence_event {
  std::string device;
  std::string session;  // sessionIdentifier: which connection of the client id
  bool connected = false;
  std::int64_t at_ms = 0;  // 0: when it is processed
};
using input = std::variant<point_batch, presence_event>;
using field_set = std::set<std::string, std::less<>>;

bool is_numeric(const tsdb::field_value& value) {
  return std::holds_alternative<double>(value) || std::holds_alternative<std::int64_t>(value) ||
         std::holds_alternative<std::uint64_t>(value);
}

// $aws/events/presence/{connected|disconnected}/{clientId} with AWS's JSON (broker/
// lifecycle_events.cpp): the payload's clientId and timestamp (ms) when it has them.
std::optional<presence_event> parse_presence(const broker::message& msg) {
  constexpr std::string_view prefix = "$aws/events/presence/";
  const std::string_view topic = msg.topic;
  if (!topic.starts_with(prefix)) return std::nullopt;
  const std::string_view rest = topic.substr(prefix.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view kind = rest.substr(0, slash);
  if (kind != "connected" && kind != "disconnected") return std::nullopt;
  presence_event out;
  out.device = std::string(rest.substr(slash + 1));
  out.connected = kind == "connected";
  json::error_code ec;
  const json::value body = json::parse(msg.payload, ec);
  if (!ec && body.is_object()) {
    const auto& o = body.get_object();
    if (const auto* id = o.if_contains("clientId"); id != nullptr && id->is_string())
      out.device = std::string(id->get_string());
    if (const auto* session = o.if_contains("sessionIdentifier");
        session != nullptr && session->is_string())
      out.session = std::string(session->get_string());
    if (const auto* at = o.if_contains("timestamp"); at != nullptr && at->is_int64())
      out.at_ms = at->get_int64();
    else if (at != nullptr && at->is_uint64())
      out.at_ms = static_cast<std::int64_t>(at->get_uint64());
  }
  if (out.device.empty()) return std::nullopt;
  return out;
}

refusal busy() {
  return {refusal_kind::unavailable, "", "the alerts service is stopping or too busy; try again"};
}

refusal no_rule(std::string_view name) {
  return {refusal_kind::not_found, "name", fmt::format("there is no alert rule '{}'", name)};
}

// A PUT that leaves a webhook's "secret" out keeps the stored one: that of the stored webhook
// with the same URL template, else of the one at the same position.
void keep_secrets(rule& r, const rule& stored, const std::vector<bool>& secret_omitted) {
  for (std::size_t i = 0; i < r.notifications.size(); ++i) {
    auto& n = r.notifications[i];
    if (n.kind != notification_kind::webhook || !n.secret.empty()) continue;
    if (i >= secret_omitted.size() || !secret_omitted[i]) continue;
    const notification* match = nullptr;
    for (const auto& old : stored.notifications)
      if (old.kind == notification_kind::webhook && old.target == n.target) {
        match = &old;
        break;
      }
    if (match == nullptr && i < stored.notifications.size() &&
        stored.notifications[i].kind == notification_kind::webhook)
      match = &stored.notifications[i];
    if (match != nullptr) n.secret = match->secret;
  }
}

}  // namespace

// What the thread is handed. Shared with the callbacks that outlive the service (the bus's, the
// registry's, I/O completions): after the thread ends it refuses everything.
struct service::inbox {
  inbox(std::size_t points, std::size_t waiting_calls)
      : max_points(points), max_calls(waiting_calls) {}
  const std::size_t max_points;
  const std::size_t max_calls;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<input> inputs;                 // mutex
  std::size_t queued_points = 0;            // mutex: points and presence events in `inputs`
  std::deque<std::function<void()>> calls;  // mutex
  bool groups_changed = false;              // mutex
  bool woken = false;                       // mutex
  bool stopping = false;                    // mutex
  bool closed = false;                      // mutex: the thread is gone

  std::mutex filter_mutex;
  std::shared_ptr<const field_set> watched;  // filter_mutex: fields of the enabled rules
  std::atomic<std::uint64_t> observed{0}, dropped{0};
  std::atomic<std::size_t> queued{0};

  // `is_external`: an API call, bounded and refused once stopping. The thread's own hand-offs
  // (attempts' outcomes, durable writes) are taken until it is gone. `task` is moved from only
  // when taken.
  bool post(std::function<void()>& task, bool is_external) {
    {
      std::lock_guard lock(mutex);
      if (closed || (is_external && (stopping || calls.size() >= max_calls))) return false;
      calls.push_back(std::move(task));
    }
    wake.notify_one();
    return true;
  }

  // Queues what fits under max_points and counts the rest as dropped; never waits. Once the
  // service is stopping nothing more is taken (its last pass must end). Presence events are
  // taken whatever the points' backlog (`is_bounded` false): their rate is the connections',
  // and a lost disconnect is a missed offline alert.
  void push(input in, std::size_t count, bool is_bounded = true) {
    std::size_t taken = 0;
    {
      std::lock_guard lock(mutex);
      const std::size_t room = closed || stopping           ? 0
                               : !is_bounded                ? count
                               : max_points > queued_points ? max_points - queued_points
                                                            : 0;
      taken = std::min(count, room);
      if (taken > 0) {
        if (auto* batch = std::get_if<point_batch>(&in); batch != nullptr && taken < count)
          batch->count = taken;
        queued_points += taken;
        queued.store(queued_points, std::memory_order_relaxed);
        inputs.push_back(std::move(in));
      }
    }
    observed.fetch_add(taken, std::memory_order_relaxed);
    if (taken < count) dropped.fetch_add(count - taken, std::memory_order_relaxed);
    if (taken > 0) wake.notify_one();
  }

  void flag(bool is_groups) {
    {
      std::lock_guard lock(mutex);
      (is_groups ? groups_changed : woken) = true;
    }
    wake.notify_one();
  }
};

struct service::inputs {
  std::deque<input> data;
  std::deque<std::function<void()>> calls;
  bool groups_changed = false;
  bool stopping = false;
};

service::service(broker::broker& broker, storage::write_queue& writer, core::clock& clock,
                 registry::registry* devices, pubsub::service* pubsub, boost::asio::io_context& io,
                 service_settings settings)
    : broker_(broker),
      writer_(writer),
      clock_(clock),
      devices_(devices),
      settings_(std::move(settings)),
      inbox_(std::make_shared<inbox>(settings_.max_queued_points, settings_.max_waiting_calls)),
      engine_(settings_.engine),
      outbox_(settings_.retry),
      notifier_(broker, pubsub, io) {
  engine_.set_group_lookup([this](std::string_view device) { return groups_of(device); });
  next_checkpoint_ms_ = clock_.unix_millis() + settings_.checkpoint_interval.count();
}

service::~service() {
  stop();
}

void service::start() {
  if (thread_.joinable()) return;
  presence_ = broker_.subscribe_service(
      "$aws/events/presence/+/+",
      [box = inbox_](const broker::message_ptr& msg, const broker::client_identity*) {
        if (auto event = parse_presence(*msg)) box->push(std::move(*event), 1, false);
      });
  if (devices_ != nullptr) devices_->on_groups_changed([box = inbox_] { box->flag(true); });
  thread_ = std::thread([this] { run(); });
}

void service::stop() {
  {
    std::lock_guard lock(inbox_->mutex);
    if (inbox_->closed) return;
    inbox_->stopping = true;
  }
  inbox_->wake.notify_one();
  presence_.reset();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    std::lock_guard lock(inbox_->mutex);
    inbox_->closed = true;  // never started
  }
  // The thread's last write (every detector state) is on disk before stop() returns.
  wait_stored(last_ticket_);
}

// ---------------------------------------------------------------------------------- inputs

void service::observe(const tsdb::written_batch& batch) {
  if (batch.points == nullptr || batch.points->empty()) return;
  std::shared_ptr<const field_set> watched;
  {
    std::lock_guard lock(inbox_->filter_mutex);
    watched = inbox_->watched;
  }
  if (!watched || watched->empty()) return;
  // A batch with no field any enabled rule watches is not queued (its first such point found,
  // the whole batch goes: the engine's own index skips the rest cheaply).
  const auto watches = [&watched](const tsdb::point& p) {
    for (const auto& [name, value] : p.fields)
      if (is_numeric(value) && watched->contains(name)) return true;
    return false;
  };
  if (std::none_of(batch.points->begin(), batch.points->end(), watches)) return;
  point_batch picked;
  picked.database = batch.database;
  picked.points = batch.shared_points != nullptr
                      ? batch.shared_points
                      : std::make_shared<const std::vector<tsdb::point>>(*batch.points);
  if (batch.shared_points != nullptr) {
    picked.keys = batch.shared_keys;
    if (picked.keys != nullptr) picked.ids = batch.shared_ids;
  }
  picked.count = picked.points->size();
  const std::size_t count = picked.count;
  inbox_->push(std::move(picked), count);
}

void service::hand_back(const std::shared_ptr<inbox>& box, std::function<void()> task) {
  box->post(task, false);
}

void service::wake() {
  inbox_->flag(false);
}

bool service::sync(std::chrono::milliseconds timeout) {
  // Two rounds: the first stores what was queued; the second hands the stored notifications to
  // the outbox and sends what is due (an MQTT notification is then published).
  auto reached = std::make_shared<std::promise<void>>();
  auto future = reached->get_future();
  std::function<void()> first = [this, reached] {
    barriers_.push_back([this, box = inbox_, reached] {
      std::function<void()> second = [this, reached] {
        barriers_.push_back([reached] { reached->set_value(); });
      };
      box->post(second, false);
    });
  };
  if (!inbox_->post(first, false)) return false;
  return future.wait_for(timeout) == std::future_status::ready;
}

// ------------------------------------------------------------------------------ the thread

void service::run() {
  while (true) {
    inputs work;
    {
      std::unique_lock lock(inbox_->mutex);
      const auto has_work = [this] {
        return inbox_->stopping || inbox_->woken || inbox_->groups_changed ||
               !inbox_->inputs.empty() || !inbox_->calls.empty();
      };
      if (!has_work()) {
        // Wall-clock ms on the injected clock; at most a second, so a clock that jumps (or a
        // test's manual clock) is seen soon.
        const std::int64_t now = clock_.unix_millis();
        const auto wait = std::clamp<std::int64_t>(next_wake_ms(now) - now, 1, 1000);
        inbox_->wake.wait_for(lock, std::chrono::milliseconds(wait), has_work);
      }
      work.data.swap(inbox_->inputs);
      inbox_->queued_points = 0;
      inbox_->queued.store(0, std::memory_order_relaxed);
      work.calls.swap(inbox_->calls);
      work.groups_changed = std::exchange(inbox_->groups_changed, false);
      inbox_->woken = false;
      work.stopping = inbox_->stopping;
    }
    try {
      iterate(work);
    } catch (const std::exception& e) {
      core::report_bug("alerts::service", e.what());
    }
    if (work.stopping) {
      std::lock_guard lock(inbox_->mutex);
      if (inbox_->calls.empty() && inbox_->inputs.empty()) {
        inbox_->closed = true;
        return;
      }
    }
  }
}

// A takeover (the same client id connecting again) announces the new connection before the old
// one's disconnect: a disconnect of any session but the one connected last is not the device
// going offline.
void service::on_presence(const std::string& device, const std::string& session, bool connected,
                          std::int64_t at_ms) {
  // Sessions are only worth their memory (a map entry per connected client) to offline rules.
  if (!engine_.has_presence_rules()) {
    if (!connected_sessions_.empty()) connected_sessions_ = {};
    return;
  }
  if (connected) {
    connected_sessions_[device] = session;
  } else {
    auto it = connected_sessions_.find(device);
    if (it != connected_sessions_.end()) {
      if (!session.empty() && !it->second.empty() && it->second != session) return;
      connected_sessions_.erase(it);
    }
  }
  engine_.on_presence(device, connected, at_ms);
}

void service::iterate(inputs& work) {
  const std::int64_t now = clock_.unix_millis();
  engine_.advance(now);
  // Memberships first: a point that came with a group change is judged by the new groups.
  if (work.groups_changed) engine_.groups_changed(now);
  try {
    for (const auto& in : work.data) {
      if (const auto* batch = std::get_if<point_batch>(&in)) {
        for (std::size_t i = 0; i < batch->count; ++i) {
          // Later points' series and states are fetched while this one is judged.
          if (batch->ids != nullptr) engine_.prefetch(*batch->points, *batch->ids, i);
          engine_.on_point(
              batch->database, (*batch->points)[i], now,
              batch->keys != nullptr ? std::string_view((*batch->keys)[i]) : std::string_view(),
              batch->ids != nullptr ? std::optional((*batch->ids)[i]) : std::nullopt);
        }
      } else {
        const auto& event = std::get<presence_event>(in);
        on_presence(event.device, event.session, event.connected,
                    event.at_ms != 0 ? event.at_ms : now);
      }
    }
  } catch (const std::exception& e) {
    core::report_bug("alerts::service", e.what());  // the calls below are answered all the same
  }
  // What the points raised is stored before any read of this pass is answered.
  persist(now, false);
  for (auto& task : work.calls) {
    try {
      task();
    } catch (const std::exception& e) {
      core::report_bug("alerts::service", e.what());
    }
  }
  try {
    settle_rule_changes();  // one wait for the pass's rule changes
  } catch (const std::exception& e) {
    core::report_bug("alerts::service", e.what());
  }
  stage_cleanup(now);
  persist(now, work.stopping);
  if (!work.stopping) send_due(now);
  for (auto& barrier : std::exchange(barriers_, {}))
    writer_.when_durable(last_ticket_, std::move(barrier));

  const auto counters = engine_.counters();
  figures_.evaluated.store(counters.evaluated, std::memory_order_relaxed);
  figures_.late.store(counters.late, std::memory_order_relaxed);
  figures_.non_finite.store(counters.non_finite, std::memory_order_relaxed);
  figures_.states.store(counters.states, std::memory_order_relaxed);
  figures_.states_refused.store(counters.states_refused, std::memory_order_relaxed);
  figures_.open.store(engine_.open_count(), std::memory_order_relaxed);
  figures_.outbox.store(outbox_.size(), std::memory_order_relaxed);
  figures_.rules.store(rules_.size(), std::memory_order_relaxed);
}

std::int64_t service::next_wake_ms(std::int64_t now) const {
  std::int64_t next = now + 1000;
  if (const auto deadline = engine_.next_deadline()) next = std::min(next, *deadline);
  if (!unsaved_states_.empty() || engine_.has_dirty_states())
    next = std::min(next, next_checkpoint_ms_);
  if (sending_ < settings_.max_sending)
    if (const auto due = outbox_.next_due()) next = std::min(next, *due);
  return next;
}

void service::send_due(std::int64_t now) {
  if (sending_ >= settings_.max_sending) return;
  for (const delivery* d : outbox_.take_due(now, settings_.max_sending - sending_)) {
    ++sending_;
    // The outcome comes back to the thread; once the thread is gone it is dropped, and the row
    // goes out again at the next start.
    notifier_.send(*d, [this, box = inbox_, key = d->key](send_outcome outcome) {
      std::function<void()> task = [this, key, outcome = std::move(outcome)] {
        on_sent(key, outcome);
      };
      box->post(task, false);
    });
  }
}

void service::on_sent(const std::string& key, const send_outcome& outcome) {
  if (sending_ > 0) --sending_;
  const auto settled = outbox_.settle(key, outcome, clock_.unix_millis());
  static core::log_limiter limiter(10);
  switch (settled.what) {
    case settlement::action::unknown:
      return;
    case settlement::action::sent:
      ++notified_[settled.rule].sent;
      figures_.sent.fetch_add(1, std::memory_order_relaxed);
      staged_.push_back([key](storage::database& db) { outbox::delete_row(db, key); });
      return;
    case settlement::action::retry:
      notified_[settled.rule].last_error = settled.error;
      figures_.retried.fetch_add(1, std::memory_order_relaxed);
      staged_.push_back([key, attempts = settled.attempts,
                         next = settled.next_attempt_ms](storage::database& db) {
        outbox::update_row(db, key, attempts, next);
      });
      return;
    case settlement::action::gave_up: {
      auto& counts = notified_[settled.rule];
      ++counts.failed;
      counts.last_error = settled.error;
      figures_.failed.fetch_add(1, std::memory_order_relaxed);
      core::warn_limited(limiter,
                         "alert_notification_failed rule={} delivery={} error=\"{}\" "
                         "similar_lines_suppressed={}",
                         settled.rule, key, settled.error);
      staged_.push_back([key](storage::database& db) { outbox::delete_row(db, key); });
      return;
    }
  }
}

void service::on_stored(bool failed, std::vector<delivery> deliveries,
                        std::vector<std::pair<std::string, std::string>> announced) {
  storing_deliveries_ -= std::min(storing_deliveries_, deliveries.size());
  if (failed) {
    if (!is_store_failed_)
      spdlog::error(
          "alerts_store_failed note=\"an alerts write failed; changes are refused until a "
          "restart\"");
    is_store_failed_ = true;
    return;
  }
  for (auto& d : deliveries) outbox_.add(std::move(d));
  if (listener_)
    for (auto& [event, alert] : announced) listener_(event, std::move(alert));
}

void service::count_open_by_device() {
  auto counts = engine_.open_by_device();  // from the open index: no alert copied
  std::lock_guard lock(open_by_device_mutex_);
  open_by_device_ = std::move(counts);
}

std::map<std::string, std::size_t> service::open_by_device() const {
  std::lock_guard lock(open_by_device_mutex_);
  return open_by_device_;
}

// -------------------------------------------------------------------------- the registry

std::vector<std::string> service::groups_of(std::string_view device) const {
  if (devices_ == nullptr) return {};
  const auto thing = devices_->find_thing(std::string(device));
  if (!thing) return {};
  std::set<std::string> out;
  for (const auto& name : thing->groups) {
    out.insert(name);
    if (const auto group = devices_->find_thing_group(name))
      for (const auto& ancestor : devices_->ancestors(*group)) out.insert(ancestor.name);
  }
  return {out.begin(), out.end()};
}

namespace {
// The field a rule's points are read from, or null when it reads none (disabled, offline).
const std::string* watched_field(const rule* r) {
  if (r == nullptr || !r->enabled || r->when.kind == condition_kind::offline ||
      r->select.field.empty())
    return nullptr;
  return &r->select.field;
}
}  // namespace

void service::update_filter() {
  watched_fields_.clear();
  for (const auto& [name, entry] : rules_)
    if (const auto* field = watched_field(&entry.r)) ++watched_fields_[*field];
  publish_filter();
}

void service::change_watched(const rule* before, const rule* after) {
  const auto* was = watched_field(before);
  const auto* is = watched_field(after);
  if (was != nullptr && is != nullptr && *was == *is) return;
  bool changed = false;
  if (was != nullptr) {
    auto it = watched_fields_.find(*was);
    if (it != watched_fields_.end() && --it->second == 0) {
      watched_fields_.erase(it);
      changed = true;
    }
  }
  if (is != nullptr) changed |= ++watched_fields_[*is] == 1;
  if (changed) publish_filter();
}

void service::publish_filter() {
  auto watched = std::make_shared<field_set>();
  for (const auto& [field, count] : watched_fields_) watched->insert(field);
  std::lock_guard lock(inbox_->filter_mutex);
  inbox_->watched = std::move(watched);
}

// ------------------------------------------------------------------------------ operations

template <class Done, class Task>
void service::call(Done done, Task task, std::optional<std::string> changed_rule) {
  auto shared = std::make_shared<Done>(std::move(done));
  std::function<void()> job = [this, shared, task = std::move(task),
                               changed_rule = std::move(changed_rule)]() mutable {
    try {
      if (!changed_rule || is_change_staged(*changed_rule)) settle_rule_changes();
      task(*shared);
    } catch (const std::exception& e) {
      core::report_bug("alerts::service", e.what());
      (*shared)(refusal{refusal_kind::failed, "", "internal error"});
    }
  };
  if (!inbox_->post(job, true)) (*shared)(busy());
}

template <class T>
void service::answer_after_writes(std::function<void(result<T>)> done, T value) {
  // The answer (a page of alerts as JSON) is made on the service's thread, not the writer's,
  // whose callbacks must be short: every commit waits behind them.
  writer_.when_durable(last_ticket_, [box = inbox_, done = std::move(done),
                                      value = std::move(value)]() mutable {
    std::function<void()> answer = [done = std::move(done), value = std::move(value)]() mutable {
      done(std::move(value));
    };
    if (!box->post(answer, false)) answer();  // the thread is gone: answer here
  });
}

template <class T>
void service::answer_when_stored(storage::ticket t, std::function<void(result<T>)> done, T value) {
  writer_.when_durable(
      storage::later(t, last_ticket_), [box = inbox_, writer = &writer_, t, done = std::move(done),
                                        value = std::move(value)]() mutable {
        std::function<void()> answer;
        if (!t.is_none() && writer->failed(t)) {
          answer = [done = std::move(done)] {
            done(refusal{refusal_kind::failed, "", "the change could not be stored"});
          };
        } else {
          answer = [done = std::move(done), value = std::move(value)]() mutable {
            done(std::move(value));
          };
        }
        if (!box->post(answer, false)) answer();  // the thread is gone: answer here
      });
}

std::optional<refusal> service::refuse_changes() const {
  if (!is_store_failed_) return std::nullopt;
  return refusal{refusal_kind::unavailable, "",
                 "an earlier alerts change could not be stored; restart the server"};
}

rule_view service::view_of(const rule_entry& entry) const {
  rule_view view;
  view.r = entry.r;
  view.created_ms = entry.created_ms;
  view.updated_ms = entry.updated_ms;
  if (devices_ != nullptr) {
    for (const auto& device : entry.r.select.devices)
      if (!devices_->find_thing(device)) view.unknown_devices.push_back(device);
    for (const auto& group : entry.r.select.groups)
      if (!devices_->find_thing_group(group)) view.unknown_groups.push_back(group);
  }
  view.states = engine_.states_of(entry.r.name);
  if (const auto found = notified_.find(entry.r.name); found != notified_.end())
    view.notifications = found->second;
  return view;
}

alert service::shown(alert a) const {
  if (a.threshold) return a;
  if (const auto found = rules_.find(a.type);
      found != rules_.end() && found->second.r.when.kind == condition_kind::threshold)
    a.threshold = found->second.r.when.threshold;
  return a;
}

void service::list_rules(std::function<void(result<std::vector<rule_view>>)> done) {
  call(std::move(done), [this](auto& answer) {
    std::vector<rule_view> views;
    for (const auto& [name, entry] : rules_) views.push_back(view_of(entry));
    answer_after_writes<std::vector<rule_view>>(answer, std::move(views));
  });
}

void service::get_rule(std::string name, rule_done done) {
  call(std::move(done), [this, name](rule_done& answer) {
    const auto found = rules_.find(name);
    if (found == rules_.end()) return answer(no_rule(name));
    answer_after_writes<rule_view>(answer, view_of(found->second));
  });
}

void service::put_rule(rule r, put_mode mode, std::vector<bool> secret_omitted, rule_done done) {
  std::string name = r.name;
  call(
      std::move(done),
      [this, r = std::move(r), mode, secret_omitted = std::move(secret_omitted)](
          rule_done& answer) { do_put(r, mode, secret_omitted, answer); },
      std::move(name));
}

void service::do_put(rule r, put_mode mode, const std::vector<bool>& secret_omitted,
                     rule_done& done) {
  if (auto refused = refuse_changes()) return done(*refused);
  const auto found = rules_.find(r.name);
  if (mode == put_mode::create && (found != rules_.end() || unreadable_.contains(r.name)))
    return done(refusal{refusal_kind::already_exists, "name",
                        fmt::format("an alert rule named '{}' exists", r.name)});
  if (found != rules_.end()) keep_secrets(r, found->second.r, secret_omitted);
  apply_rule(std::move(r), found == rules_.end(), done);
}

void service::enable_rule(std::string name, bool enabled, rule_done done) {
  call(
      std::move(done),
      [this, name, enabled](rule_done& answer) {
        if (auto refused = refuse_changes()) return answer(*refused);
        const auto found = rules_.find(name);
        if (found == rules_.end()) return answer(no_rule(name));
        if (found->second.r.enabled == enabled)
          return answer_after_writes<rule_view>(answer, view_of(found->second));
        rule changed = found->second.r;
        changed.enabled = enabled;
        apply_rule(std::move(changed), false, answer);
      },
      name);
}

void service::stage_change(std::string rule_name, storage::ticket t,
                           std::function<void(bool)> apply) {
  staged_changes_.push_back(staged_change{std::move(rule_name), t, std::move(apply)});
}

bool service::is_change_staged(std::string_view rule_name) const {
  return std::any_of(staged_changes_.begin(), staged_changes_.end(),
                     [rule_name](const staged_change& c) { return c.rule == rule_name; });
}

void service::settle_rule_changes() {
  if (staged_changes_.empty()) return;
  auto changes = std::exchange(staged_changes_, {});
  storage::ticket last;
  for (const auto& c : changes) last = storage::later(last, c.ticket);
  wait_stored(last);  // writes are durable in order: the rest are too
  for (auto& c : changes) {
    try {
      c.apply(c.ticket.is_none() || !writer_.failed(c.ticket));
    } catch (const std::exception& e) {
      core::report_bug("alerts::service", e.what());
    }
  }
}

// A rule change reaches memory (and the engine) only once its row is durable: a write that
// fails changes nothing but the answer.
void service::apply_rule(rule r, bool created, rule_done done) {
  const std::int64_t now = clock_.unix_millis();
  rule_entry entry{r, now, now};
  const auto found = rules_.find(r.name);
  if (found != rules_.end()) {
    entry.created_ms = found->second.created_ms;
    const rule& old = found->second.r;
    // The engine starts these states afresh: their rows go, and so do their counts.
    if (!r.enabled || !old.enabled || old.select != r.select || old.when != r.when)
      forget_states(r.name);
  }
  stage_rule_row(entry);
  std::string name = r.name;
  stage_change(std::move(name), persist(now, false),
               [this, r = std::move(r), entry = std::move(entry), created, now,
                done = std::move(done)](bool stored) mutable {
                 if (!stored)
                   return done(refusal{refusal_kind::failed, "", "the rule could not be stored"});
                 unreadable_.erase(r.name);
                 // No other change of this rule was staged since: what it replaces is current.
                 const auto current = rules_.find(r.name);
                 change_watched(current != rules_.end() ? &current->second.r : nullptr, &entry.r);
                 rules_.insert_or_assign(r.name, entry);
                 engine_.put_rule(std::move(r), now);
                 rule_view view = view_of(entry);
                 view.created = created;
                 spdlog::info("alert_rule_stored name={} enabled={} created={}", entry.r.name,
                              entry.r.enabled, created);
                 done(std::move(view));
               });
}

bool service::wait_stored(storage::ticket t) {
  if (t.is_none()) return true;
  std::promise<bool> stored;
  writer_.when_durable(t, [&] { stored.set_value(!writer_.failed(t)); });
  return stored.get_future().get();
}

void service::delete_rule(std::string name, std::function<void(std::optional<refusal>)> done) {
  call(
      std::move(done),
      [this, name](std::function<void(std::optional<refusal>)>& answer) {
        do_delete(name, answer);
      },
      name);
}

void service::do_delete(const std::string& name,
                        std::function<void(std::optional<refusal>)>& done) {
  if (auto refused = refuse_changes()) return done(*refused);
  const std::int64_t now = clock_.unix_millis();
  if (!rules_.contains(name) && !unreadable_.contains(name)) return done(no_rule(name));
  // Stored first, as a change (apply_rule): the rule goes from memory once its row has.
  staged_.push_back([name](storage::database& db) {
    db.cached("DELETE FROM alert_rules WHERE name = ?").bind(1, name).run();
  });
  stage_change(name, persist(now, false), [this, name, now, done](bool stored) {
    if (!stored) return done(refusal{refusal_kind::failed, "", "the deletion could not be stored"});
    if (const auto found = rules_.find(name); found != rules_.end()) {
      // Its open alerts are cleared by the engine; their notifications still go (the rule is
      // kept for them until that write).
      retired_.insert_or_assign(name, found->second.r);
      forget_states(name);
      change_watched(&found->second.r, nullptr);
      rules_.erase(found);
      notified_.erase(name);
      engine_.remove_rule(name, now);
    }
    unreadable_.erase(name);
    spdlog::info("alert_rule_deleted name={}", name);
    const storage::ticket t = persist(now, false);
    writer_.when_durable(last_ticket_, [writer = &writer_, t, done]() {
      if (!t.is_none() && writer->failed(t))
        return done(refusal{refusal_kind::failed, "", "the deletion could not be stored"});
      done(std::nullopt);
    });
  });
}

void service::list_alerts(alert_filter filter,
                          std::function<void(result<std::vector<alert>>)> done) {
  call(std::move(done), [this, filter](auto& answer) {
    auto listed = engine_.list(filter);
    for (auto& a : listed) a = shown(std::move(a));
    answer_after_writes<std::vector<alert>>(answer, std::move(listed));
  });
}

void service::get_alert(std::uint64_t id, std::function<void(result<alert>)> done) {
  call(std::move(done), [this, id](std::function<void(result<alert>)>& answer) {
    const alert* found = engine_.find(id);
    if (found == nullptr)
      return answer(
          refusal{refusal_kind::not_found, "id", fmt::format("there is no alert {}", id)});
    answer_after_writes<alert>(answer, shown(*found));
  });
}

void service::act(std::uint64_t id, alert_action action, std::string who, std::string note,
                  std::function<void(result<alert>)> done) {
  call(std::move(done),
       [this, id, action, who = std::move(who), note = std::move(note)](
           std::function<void(result<alert>)>& answer) { do_act(id, action, who, note, answer); });
}

void service::do_act(std::uint64_t id, alert_action action, const std::string& who,
                     const std::string& note, std::function<void(result<alert>)>& done) {
  if (auto refused = refuse_changes()) return done(*refused);
  const std::int64_t now = clock_.unix_millis();
  const bool is_ack = action == alert_action::acknowledge;
  const action_result outcome =
      is_ack ? engine_.acknowledge(id, who, note, now) : engine_.clear(id, who, note, now);
  const alert* found = engine_.find(id);
  if (outcome == action_result::not_found || found == nullptr)
    return done(refusal{refusal_kind::not_found, "id", fmt::format("there is no alert {}", id)});
  if (outcome == action_result::conflict)
    return done(
        refusal{refusal_kind::conflict, "status",
                fmt::format("alert {} is {}{}: it cannot be {}", id, to_string(found->status),
                            found->acknowledged && found->status == alert_status::cleared
                                ? " and acknowledged"
                                : "",
                            is_ack ? "acknowledged" : "cleared")});
  alert answered = shown(*found);
  answer_when_stored<alert>(persist(now, false), std::move(done), std::move(answered));
}

// ---------------------------------------------------------------------------------- figures

std::string service::prometheus_text() const {
  const auto load = [](const std::atomic<std::uint64_t>& value) {
    return value.load(std::memory_order_relaxed);
  };
  std::string out;
  const auto figure = [&out](std::string_view name, std::string_view type, std::string_view help,
                             std::uint64_t value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  figure("nimbus_alerts_points_observed_total", "counter",
         "Accepted points with a watched field queued for the alert rules", load(inbox_->observed));
  figure("nimbus_alerts_points_dropped_total", "counter",
         "Points (and presence events) not evaluated because the queue was full",
         load(inbox_->dropped));
  figure("nimbus_alerts_points_queued", "gauge", "Points waiting for the alerts thread",
         inbox_->queued.load(std::memory_order_relaxed));
  figure("nimbus_alerts_evaluated_total", "counter", "Rule evaluations of a field value",
         load(figures_.evaluated));
  figure("nimbus_alerts_late_points_total", "counter",
         "Values older than their series' last, not evaluated", load(figures_.late));
  figure("nimbus_alerts_non_finite_total", "counter", "NaN or infinite values skipped",
         load(figures_.non_finite));
  figure("nimbus_alerts_rules", "gauge", "Alert rules", load(figures_.rules));
  figure("nimbus_alerts_open", "gauge", "Open alerts (active or acknowledged)",
         load(figures_.open));
  figure("nimbus_alerts_states", "gauge", "Detector states held (one per rule and series)",
         load(figures_.states));
  figure("nimbus_alerts_states_refused_total", "counter",
         "Series not watched because alerts.max_states was reached", load(figures_.states_refused));
  out +=
      "# HELP nimbus_alerts_events_total Alert lifecycle events\n"
      "# TYPE nimbus_alerts_events_total counter\n";
  for (int i = 0; i < 5; ++i)
    out += fmt::format("nimbus_alerts_events_total{{event=\"{}\"}} {}\n",
                       to_string(static_cast<alert_event>(i)), load(figures_.events[i]));
  figure("nimbus_alerts_notifications_sent_total", "counter", "Notifications delivered",
         load(figures_.sent));
  figure("nimbus_alerts_notifications_failed_total", "counter",
         "Notifications given up (a final refusal, or max_attempts reached)",
         load(figures_.failed));
  figure("nimbus_alerts_notifications_retried_total", "counter",
         "Notification attempts that failed and were scheduled again", load(figures_.retried));
  figure("nimbus_alerts_outbox", "gauge", "Notifications waiting to be sent",
         load(figures_.outbox));
  return out;
}

void service::install(net::http_router& router, api_auth auth, api_identity identify) {
  api_ = std::make_unique<alerts_api>(*this, std::move(auth), std::move(identify));
  api_->install(router);
}

}  // namespace nimbus::alerts
