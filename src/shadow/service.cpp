#include "shadow/service.hpp"

#include <spdlog/spdlog.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "core/log.hpp"
#include "mqtt/topic.hpp"
#include "registry/registry.hpp"

namespace nimbus::shadow {

namespace json = boost::json;

namespace {

constexpr std::string_view things_prefix = "$aws/things/";
// AWS lets a deleted shadow's version counter go after 48 hours: a shadow re-created later
// starts again from version 1.
constexpr std::int64_t version_memory_seconds = 48 * 3600;

rejection refusal(int code, std::string message, std::int64_t now) {
  return rejection{code, std::move(message), std::nullopt, now};
}

// The clientToken of a get or delete payload, for refusals made before the core reads it.
std::optional<std::string> token_of(std::string_view payload) {
  json::error_code ec;
  auto value = json::parse(payload, ec);
  if (ec || !value.is_object()) return std::nullopt;
  const auto* token = value.get_object().if_contains("clientToken");
  if (token == nullptr || !token->is_string() || token->get_string().size() > 64)
    return std::nullopt;
  return std::string(token->get_string());
}

// Answers that became ready while the service's lock is held (a write queue that runs a
// durability callback at once does so inside when_durable) wait here until it is released:
// answering publishes, and whoever receives the publish may call back into the service.
thread_local std::vector<std::function<void()>>* deferred = nullptr;

void run_or_defer(std::function<void()> work) {
  if (deferred != nullptr)
    deferred->push_back(std::move(work));
  else
    work();
}

// Holds the service's lock and runs what was deferred under it once released.
class locked_section {
 public:
  explicit locked_section(std::mutex& m) : lock_(m) { deferred = &work_; }
  ~locked_section() {
    deferred = nullptr;
    lock_.unlock();
    for (auto& w : work_) {
      try {
        w();
      } catch (const std::exception& e) {
        // One answer that could not be sent (out of memory ...) must not take the rest along.
        core::report_bug("shadow_answer", e.what());
      }
    }
  }

 private:
  std::unique_lock<std::mutex> lock_;
  std::vector<std::function<void()>> work_;
};

}  // namespace

std::optional<request_topic> parse_request_topic(std::string_view topic) {
  if (!topic.starts_with(things_prefix)) return std::nullopt;
  auto levels = mqtt::split_levels(topic.substr(things_prefix.size()));
  // {thing}/shadow/{op} or {thing}/shadow/name/{shadow}/{op}
  if (levels.size() != 3 && levels.size() != 5) return std::nullopt;
  if (levels[1] != "shadow") return std::nullopt;
  if (levels.size() == 5 && levels[2] != "name") return std::nullopt;
  request_topic r;
  auto op = levels.back();
  if (op == "get")
    r.op = operation::get;
  else if (op == "update")
    r.op = operation::update;
  else if (op == "delete")
    r.op = operation::remove;
  else
    return std::nullopt;
  r.thing_name = std::string(levels[0]);
  if (levels.size() == 5) r.shadow_name = std::string(levels[3]);
  return r;
}

std::string shadow_topic(std::string_view thing_name, std::string_view shadow_name) {
  std::string topic(things_prefix);
  topic.append(thing_name).append("/shadow");
  if (!shadow_name.empty()) topic.append("/name/").append(shadow_name);
  return topic;
}

service::service(broker::broker& broker, storage::write_queue* writer, core::clock& clock,
                 const config::shadow_settings& settings)
    : broker_(broker),
      writer_(writer),
      clock_(clock),
      bounds_{settings.max_state_bytes, limits{}.max_depth, limits{}.max_client_token},
      max_named_(settings.max_named_shadows),
      max_shadows_(settings.max_shadows),
      max_in_flight_(settings.max_in_flight) {}

service::~service() {
  // No handler may start once the service is gone; one running now finishes on its own thread.
  subscriptions_.clear();
}

void service::migrate(storage::database& db) {
  db.migrate("shadow", {R"sql(
    CREATE TABLE shadows (
      thing TEXT NOT NULL,
      name TEXT NOT NULL,
      document TEXT NOT NULL,
      deleted_at INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (thing, name)
    ) WITHOUT ROWID;
  )sql"});
}

void service::restore(storage::database& db) {
  auto rows = db.prepare("SELECT thing, name, document, deleted_at FROM shadows");
  std::size_t loaded = 0;
  std::size_t skipped = 0;
  std::lock_guard lock(mutex_);
  while (rows.step()) {
    auto doc = document::from_json(rows.column_text(2));
    if (!doc) {
      ++skipped;
      spdlog::error("shadow_row_unreadable thing=\"{}\" shadow=\"{}\" effect=\"skipped\"",
                    rows.column_text(0), rows.column_text(1));
      continue;
    }
    auto& thing = things_[rows.column_text(0)];
    auto name = rows.column_text(1);
    if (!name.empty() && doc->exists()) ++thing.named;
    if (doc->exists()) existing_.fetch_add(1, std::memory_order_relaxed);
    std::int64_t deleted_at = doc->exists() ? 0 : rows.column_int(3);
    if (deleted_at != 0) tombstones_.push_back({deleted_at, rows.column_text(0), name});
    thing.shadows[name] = stored_shadow{std::move(*doc), deleted_at, {}};
    ++held_;
    ++loaded;
  }
  std::sort(tombstones_.begin(), tombstones_.end(),
            [](const tombstone& a, const tombstone& b) { return a.deleted_at < b.deleted_at; });
  spdlog::info("shadows_restored shadows={} things={} unreadable={}", loaded, things_.size(),
               skipped);
}

void service::start() {
  // Replies are the service's alone: a client publishing to one is acknowledged, not routed.
  for (std::string_view prefix : {"$aws/things/+/shadow", "$aws/things/+/shadow/name/+"}) {
    std::string p(prefix);
    for (std::string_view reply :
         {"/+/accepted", "/+/rejected", "/update/delta", "/update/documents"})
      broker_.reserve_topics(p + std::string(reply));
    subscriptions_.push_back(broker_.subscribe_service(
        p + "/+", [this](const broker::message_ptr& msg, const broker::client_identity*) {
          on_request(msg);
        }));
  }
}

void service::on_request(const broker::message_ptr& msg) {
  auto parsed = parse_request_topic(msg->topic);
  if (!parsed) return;  // `$aws/things/x/shadow/other`: not a request
  request r{parsed->op, std::move(parsed->thing_name), std::move(parsed->shadow_name),
            msg->payload};
  const bool is_get = parsed->op == operation::get;
  handle(std::move(r), [this, topic = msg->topic, is_get](answer a) {
    if (auto* refused = std::get_if<rejection>(&a))
      publish(topic + "/rejected", rejected_payload(*refused));
    else if (is_get)  // an accepted change was published by handle(), whoever asked
      publish(topic + "/accepted", std::get<json::object>(a));
  });
}

void service::handle(request r, on_answer answered) {
  const std::int64_t now = clock_.unix_seconds();
  on_answer done = [this, op = r.op, answered = std::move(answered)](answer a) {
    count(op, a);
    answered(std::move(a));
  };
  auto refuse = [&](int code, std::string message) {
    auto why = refusal(code, std::move(message), now);
    why.client_token = token_of(r.payload);
    run_or_defer(
        [done = std::move(done), a = answer(std::move(why))]() mutable { done(std::move(a)); });
  };
  if (!registry::is_valid_thing_name(r.thing_name))
    return refuse(400, "Invalid thing name: " + r.thing_name.substr(0, 128));
  if (!r.shadow_name.empty() && !is_valid_shadow_name(r.shadow_name))
    return refuse(400, "Invalid shadow name: " + r.shadow_name.substr(0, 64));

  locked_section section(mutex_);
  if (r.op != operation::get && failed_.load(std::memory_order_relaxed))
    return refuse(500, "Internal service failure");
  auto found = things_.find(r.thing_name);
  if (found == things_.end()) {
    if (r.op != operation::update) {
      std::string name = qualified_name(r.thing_name, r.shadow_name);
      document none;
      auto missing = r.op == operation::get ? get_response(none, name, r.payload, now, bounds_)
                                            : delete_response(none, name, r.payload, now, bounds_);
      return run_or_defer([done = std::move(done), a = answer(std::move(missing))]() mutable {
        done(std::move(a));
      });
    }
    found = things_.emplace(r.thing_name, thing_shadows{}).first;
  }
  auto& thing = found->second;
  if (thing.in_flight->load(std::memory_order_relaxed) >= max_in_flight_)
    return refuse(429, "Too Many Requests");

  auto& shadows = thing.shadows;
  auto it = shadows.find(r.shadow_name);
  std::string name = qualified_name(r.thing_name, r.shadow_name);

  if (r.op == operation::get) {
    static const stored_shadow none{};
    const auto& doc = it == shadows.end() ? none.doc : it->second.doc;
    answer_when_durable(thing.last_write, thing,
                        answer(get_response(doc, name, r.payload, now, bounds_)), std::move(done));
    return;
  }

  if (r.op == operation::remove) {
    if (it == shadows.end() || !it->second.doc.exists()) {
      document none;
      answer_when_durable(thing.last_write, thing,
                          answer(delete_response(none, name, r.payload, now, bounds_)),
                          std::move(done));
      return;
    }
    auto deleted = delete_response(it->second.doc, name, r.payload, now, bounds_);
    it->second.deleted_at = now;
    if (!r.shadow_name.empty()) --thing.named;
    existing_.fetch_sub(1, std::memory_order_relaxed);
    tombstones_.push_back({now, r.thing_name, r.shadow_name});
    thing.last_write = save(r.thing_name, r.shadow_name, it->second);
    it->second.written = thing.last_write;
    auto accepted = std::get<json::object>(deleted);
    answer_when_durable(
        thing.last_write, thing, answer(std::move(deleted)), std::move(done),
        [this, topic = shadow_topic(r.thing_name, r.shadow_name), accepted = std::move(accepted)] {
          publish(topic + "/delete/accepted", accepted);
        });
    return;
  }

  // An update. A named shadow is created by its first update, within the per-thing cap.
  bool creating = it == shadows.end() || !it->second.doc.exists();
  if (creating && !r.shadow_name.empty() && thing.named >= max_named_)
    return refuse(400, "Too many named shadows for thing " + r.thing_name + "; the limit is " +
                           std::to_string(max_named_));
  if (it == shadows.end()) {
    // Any client may name any thing: what that makes the server hold is bounded.
    if (held_ >= max_shadows_) {
      if (shadows.empty()) things_.erase(found);
      return refuse(400, "The server holds shadow.max_shadows (" + std::to_string(max_shadows_) +
                             ") shadows; no more can be created");
    }
    it = shadows.emplace(r.shadow_name, stored_shadow{}).first;
    ++held_;
  }
  auto& shadow = it->second;
  if (!shadow.doc.exists() && shadow.deleted_at != 0 &&
      now - shadow.deleted_at > version_memory_seconds)
    shadow = stored_shadow{};
  auto outcome = apply_update(shadow.doc, r.payload, now, bounds_);
  if (auto* refused = std::get_if<rejection>(&outcome)) {
    // Nothing changed; the refusal still waits for earlier changes, so that a 409 names a
    // version the caller can already read.
    answer_when_durable(thing.last_write, thing, answer(std::move(*refused)), std::move(done));
    // A refused first update leaves nothing behind (clients may name any thing).
    if (!shadow.doc.exists() && shadow.deleted_at == 0) {
      shadows.erase(it);
      --held_;
    }
    if (shadows.empty()) things_.erase(found);
    return;
  }
  auto& result = std::get<update_result>(outcome);
  shadow.deleted_at = 0;
  if (creating && !r.shadow_name.empty()) ++thing.named;
  if (creating) existing_.fetch_add(1, std::memory_order_relaxed);
  thing.last_write = save(r.thing_name, r.shadow_name, shadow);
  shadow.written = thing.last_write;
  // The change is announced on MQTT whichever way it was asked for, as AWS does.
  std::string topic = shadow_topic(r.thing_name, r.shadow_name);
  auto accepted = result.accepted;
  answer_when_durable(thing.last_write, thing, answer(std::move(result.accepted)), std::move(done),
                      [this, topic = std::move(topic), accepted = std::move(accepted),
                       delta = std::move(result.delta), documents = std::move(result.documents)] {
                        publish(topic + "/update/accepted", accepted);
                        if (delta) publish(topic + "/update/delta", *delta);
                        publish(topic + "/update/documents", documents);
                      });
}

void service::answer_when_durable(storage::ticket t, thing_shadows& thing, answer a, on_answer done,
                                  std::function<void()> then) {
  auto in_flight = thing.in_flight;
  in_flight->fetch_add(1, std::memory_order_relaxed);
  auto finish = [this, t, in_flight, a = std::move(a), done = std::move(done),
                 then = std::move(then)]() mutable {
    in_flight->fetch_sub(1, std::memory_order_relaxed);
    if (writer_ != nullptr && !t.is_none() && writer_->failed(t)) {
      // The change is in memory but not on disk: refuse it, and every later change, rather
      // than let memory and the database disagree further.
      if (!failed_.exchange(true))
        spdlog::error(
            "shadow_write_failed ticket={} effect=\"shadow changes refused until restart\"",
            t.sequence());
      auto why = std::get_if<rejection>(&a);
      rejection failure{500, "Internal service failure", why ? why->client_token : std::nullopt,
                        clock_.unix_seconds()};
      return done(std::move(failure));
    }
    done(std::move(a));
    if (then) then();
  };
  if (writer_ == nullptr || t.is_none()) return run_or_defer(std::move(finish));
  // Registered under the lock, so a thing's answers leave in the order of its changes.
  writer_->when_durable(
      t, [finish = std::move(finish)]() mutable { run_or_defer(std::move(finish)); });
}

storage::ticket service::save(const std::string& thing_name, const std::string& shadow_name,
                              const stored_shadow& shadow) {
  if (writer_ == nullptr) return {};
  return writer_->submit([thing_name, shadow_name, text = shadow.doc.to_json(),
                          deleted_at = shadow.deleted_at](storage::database& db) {
    db.cached(
          "INSERT INTO shadows (thing, name, document, deleted_at) VALUES (?, ?, ?, ?) "
          "ON CONFLICT (thing, name) DO UPDATE SET document = excluded.document, "
          "deleted_at = excluded.deleted_at")
        .bind(1, thing_name)
        .bind(2, shadow_name)
        .bind(3, text)
        .bind(4, deleted_at)
        .run();
  });
}

void service::publish(std::string topic, const json::object& payload) {
  auto msg = std::make_shared<broker::message>();
  msg->topic = std::move(topic);
  msg->payload = json::serialize(payload);
  msg->qos = 1;
  msg->publisher = "$aws/shadow";
  broker_.publish(std::move(msg));
}

std::optional<std::string> service::current_document(std::string_view thing_name,
                                                     std::string_view shadow_name) {
  const std::int64_t now = clock_.unix_seconds();
  std::lock_guard lock(mutex_);
  auto thing = things_.find(std::string(thing_name));
  if (thing == things_.end()) return std::nullopt;
  auto shadow = thing->second.shadows.find(shadow_name);
  if (shadow == thing->second.shadows.end() || !shadow->second.doc.exists()) return std::nullopt;
  auto response =
      get_response(shadow->second.doc, qualified_name(thing_name, shadow_name), "", now, bounds_);
  const auto* document = std::get_if<json::object>(&response);
  if (document == nullptr) return std::nullopt;
  return json::serialize(*document);
}

void service::list_named(const std::string& thing_name, const std::string& after, std::size_t max,
                         std::function<void(std::vector<std::string>)> done) {
  std::vector<std::string> names;
  storage::ticket wait_for;
  {
    std::lock_guard lock(mutex_);
    auto found = things_.find(thing_name);
    if (found != things_.end()) {
      const auto& shadows = found->second.shadows;
      for (auto it = shadows.upper_bound(after); it != shadows.end() && names.size() < max; ++it)
        if (!it->first.empty() && it->second.doc.exists()) names.push_back(it->first);
      wait_for = found->second.last_write;
    }
  }
  if (writer_ == nullptr || wait_for.is_none()) return done(std::move(names));
  writer_->when_durable(wait_for, [done = std::move(done), names = std::move(names)]() mutable {
    done(std::move(names));
  });
}

void service::delete_thing(const std::string& thing_name, storage::ticket deleted_by) {
  std::lock_guard lock(mutex_);
  auto found = things_.find(thing_name);
  if (found == things_.end()) return;
  auto& shadows = found->second.shadows;
  std::vector<std::string> names;
  for (auto it = shadows.begin(); it != shadows.end();) {
    if (!deleted_by.is_none() && it->second.written > deleted_by) {
      ++it;  // written after the thing was deleted: that update was accepted, it stays
      continue;
    }
    if (it->second.doc.exists()) {
      existing_.fetch_sub(1, std::memory_order_relaxed);
      if (!it->first.empty()) --found->second.named;
    }
    names.push_back(it->first);
    it = shadows.erase(it);
    --held_;
  }
  if (shadows.empty()) things_.erase(found);
  if (writer_ == nullptr || names.empty()) return;
  writer_->submit([thing_name, names = std::move(names)](storage::database& db) {
    for (const auto& name : names)
      db.cached("DELETE FROM shadows WHERE thing = ? AND name = ?")
          .bind(1, thing_name)
          .bind(2, name)
          .run();
  });
}

void service::purge_deleted() {
  const std::int64_t horizon = clock_.unix_seconds() - version_memory_seconds;
  std::vector<std::pair<std::string, std::string>> purged;
  {
    std::lock_guard lock(mutex_);
    while (!tombstones_.empty() && tombstones_.front().deleted_at < horizon) {
      auto t = std::move(tombstones_.front());
      tombstones_.pop_front();
      auto thing = things_.find(t.thing_name);
      if (thing == things_.end()) continue;
      auto& shadows = thing->second.shadows;
      auto shadow = shadows.find(t.shadow_name);
      // Re-created or deleted again since: not this tombstone's to forget.
      if (shadow == shadows.end() || shadow->second.doc.exists() ||
          shadow->second.deleted_at != t.deleted_at)
        continue;
      shadows.erase(shadow);
      --held_;
      if (shadows.empty()) things_.erase(thing);
      purged.emplace_back(std::move(t.thing_name), std::move(t.shadow_name));
    }
    if (writer_ == nullptr || purged.empty()) return;
    // Under the lock: a re-creation of one of these submits its row after this delete.
    writer_->submit([purged = std::move(purged)](storage::database& db) {
      for (const auto& [thing, name] : purged)
        db.cached("DELETE FROM shadows WHERE thing = ? AND name = ?")
            .bind(1, thing)
            .bind(2, name)
            .run();
    });
  }
}

void service::count(operation op, const answer& a) {
  if (const auto* refused = std::get_if<rejection>(&a)) {
    std::size_t i = 0;
    while (i < std::size(counted_codes) && counted_codes[i] != refused->code) ++i;
    rejected_[i].fetch_add(1, std::memory_order_relaxed);
  } else {
    accepted_[static_cast<int>(op)].fetch_add(1, std::memory_order_relaxed);
  }
}

std::string service::prometheus_text() const {
  std::string out =
      "# HELP nimbus_shadows Device shadows that exist (classic and named)\n"
      "# TYPE nimbus_shadows gauge\n"
      "nimbus_shadows " +
      std::to_string(existing_.load(std::memory_order_relaxed)) +
      "\n# HELP nimbus_shadow_requests_accepted_total Shadow requests answered with /accepted\n"
      "# TYPE nimbus_shadow_requests_accepted_total counter\n";
  static constexpr const char* names[] = {"get", "update", "delete"};
  for (int i = 0; i < 3; ++i)
    out += std::string("nimbus_shadow_requests_accepted_total{operation=\"") + names[i] + "\"} " +
           std::to_string(accepted_[i].load(std::memory_order_relaxed)) + "\n";
  out +=
      "# HELP nimbus_shadow_requests_rejected_total Shadow requests refused, by AWS's code\n"
      "# TYPE nimbus_shadow_requests_rejected_total counter\n";
  for (std::size_t i = 0; i <= std::size(counted_codes); ++i) {
    std::string code = i < std::size(counted_codes) ? std::to_string(counted_codes[i]) : "other";
    out += "nimbus_shadow_requests_rejected_total{code=\"" + code + "\"} " +
           std::to_string(rejected_[i].load(std::memory_order_relaxed)) + "\n";
  }
  return out;
}

}  // namespace nimbus::shadow
