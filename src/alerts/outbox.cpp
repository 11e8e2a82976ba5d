// The notifications waiting to go out (outbox.hpp).
#include "alerts/outbox.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <utility>

#include "alerts/alert_json.hpp"
#include "core/random.hpp"
#include "storage/database.hpp"

namespace nimbus::alerts {

namespace json = boost::json;

namespace {

std::string_view kind_name(notification_kind kind) {
  switch (kind) {
    case notification_kind::mqtt:
      return "mqtt";
    case notification_kind::webhook:
      return "webhook";
    case notification_kind::pubsub:
      return "pubsub";
  }
  return "mqtt";
}

std::optional<notification_kind> parse_kind(std::string_view text) {
  if (text == "mqtt") return notification_kind::mqtt;
  if (text == "webhook") return notification_kind::webhook;
  if (text == "pubsub") return notification_kind::pubsub;
  return std::nullopt;
}

// The row's `options` column: what a kind needs besides its target.
std::string options_text(const delivery& d) {
  json::object options;
  options["qos"] = d.qos;
  if (!d.secret.empty()) options["secret"] = d.secret;
  options["timeout_ms"] = d.timeout.count();
  options["max_attempts"] = d.max_attempts;
  json::object attributes;
  for (const auto& [key, value] : d.attributes) attributes[key] = value;
  options["attributes"] = std::move(attributes);
  return to_text(options);
}

std::optional<std::int64_t> integer_of(const json::value* v) {
  if (v != nullptr && v->is_int64()) return v->get_int64();
  if (v != nullptr && v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v->get_uint64());
  return std::nullopt;
}

void read_options(std::string_view text, delivery& d) {
  json::error_code ec;
  const json::value parsed = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !parsed.is_object()) return;
  const auto& options = parsed.get_object();
  if (const auto qos = integer_of(options.if_contains("qos"))) d.qos = static_cast<int>(*qos);
  if (const auto* v = options.if_contains("secret"); v != nullptr && v->is_string())
    d.secret = std::string(v->get_string());
  if (const auto timeout = integer_of(options.if_contains("timeout_ms")))
    d.timeout = std::chrono::milliseconds(*timeout);
  if (const auto attempts = integer_of(options.if_contains("max_attempts")))
    d.max_attempts = static_cast<std::uint32_t>(*attempts);
  if (const auto* v = options.if_contains("attributes"); v != nullptr && v->is_object())
    for (const auto& [key, value] : v->get_object())
      if (value.is_string()) d.attributes[std::string(key)] = std::string(value.get_string());
}

}  // namespace

void outbox::add(delivery d) {
  if (entries_.contains(d.key)) return;
  const std::string key = d.key;
  const std::int64_t due = d.next_attempt_ms;
  entry e{std::move(d), core::backoff([] { return core::random_u64(); }, retry_), false};
  // A delivery loaded after a restart continues its backoff where it was.
  for (std::uint32_t i = 0; i < e.d.attempts; ++i) e.delays.next_delay();
  entries_.emplace(key, std::move(e));
  schedule_.emplace(due, key);
}

std::vector<const delivery*> outbox::take_due(std::int64_t now_ms, std::size_t max) {
  std::vector<const delivery*> out;
  while (out.size() < max && !schedule_.empty() && schedule_.begin()->first <= now_ms) {
    auto found = entries_.find(schedule_.begin()->second);
    schedule_.erase(schedule_.begin());
    if (found == entries_.end()) continue;
    found->second.is_in_flight = true;
    ++in_flight_;
    out.push_back(&found->second.d);
  }
  return out;
}

settlement outbox::settle(const std::string& key, const send_outcome& outcome,
                          std::int64_t now_ms) {
  settlement out;
  auto found = entries_.find(key);
  if (found == entries_.end() || !found->second.is_in_flight) return out;
  auto& e = found->second;
  e.is_in_flight = false;
  --in_flight_;
  ++e.d.attempts;
  out.key = key;
  out.rule = e.d.rule;
  out.attempts = e.d.attempts;
  out.error = outcome.error;
  const bool is_retry = outcome.verdict == send_verdict::retry;
  if (is_retry && e.d.attempts < e.d.max_attempts) {
    out.what = settlement::action::retry;
    e.d.next_attempt_ms = now_ms + e.delays.next_delay().count();
    out.next_attempt_ms = e.d.next_attempt_ms;
    schedule_.emplace(e.d.next_attempt_ms, key);
    return out;
  }
  out.what = outcome.verdict == send_verdict::sent ? settlement::action::sent
                                                   : settlement::action::gave_up;
  if (is_retry) out.error += " (gave up after " + std::to_string(e.d.attempts) + " attempts)";
  entries_.erase(found);
  return out;
}

std::optional<std::int64_t> outbox::next_due() const {
  if (schedule_.empty()) return std::nullopt;
  return schedule_.begin()->first;
}

std::vector<delivery> outbox::load(storage::database& db) {
  std::vector<delivery> out;
  auto rows = db.prepare(
      "SELECT key, event_id, rule, notification, kind, target, options, payload, attempts, "
      "next_attempt_ms FROM alert_outbox ORDER BY next_attempt_ms, key");
  while (rows.step()) {
    const auto kind = parse_kind(rows.column_text(4));
    if (!kind) continue;
    delivery d;
    d.key = rows.column_text(0);
    d.event_id = rows.column_text(1);
    d.rule = rows.column_text(2);
    d.index = static_cast<std::uint32_t>(rows.column_int(3));
    d.kind = *kind;
    d.target = rows.column_text(5);
    read_options(rows.column_view(6), d);
    d.payload = rows.column_text(7);
    d.attempts = static_cast<std::uint32_t>(rows.column_int(8));
    d.next_attempt_ms = rows.column_int(9);
    out.push_back(std::move(d));
  }
  return out;
}

void outbox::insert_row(storage::database& db, const delivery& d) {
  db.cached(
        "INSERT OR REPLACE INTO alert_outbox (key, event_id, rule, notification, kind, target, "
        "options, payload, attempts, next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .bind(1, d.key)
      .bind(2, d.event_id)
      .bind(3, d.rule)
      .bind(4, static_cast<std::int64_t>(d.index))
      .bind(5, kind_name(d.kind))
      .bind(6, d.target)
      .bind(7, options_text(d))
      .bind(8, d.payload)
      .bind(9, static_cast<std::int64_t>(d.attempts))
      .bind(10, d.next_attempt_ms)
      .run();
}

void outbox::update_row(storage::database& db, const std::string& key, std::uint32_t attempts,
                        std::int64_t next_attempt_ms) {
  db.cached("UPDATE alert_outbox SET attempts = ?, next_attempt_ms = ? WHERE key = ?")
      .bind(1, static_cast<std::int64_t>(attempts))
      .bind(2, next_attempt_ms)
      .bind(3, key)
      .run();
}

void outbox::delete_row(storage::database& db, const std::string& key) {
  db.cached("DELETE FROM alert_outbox WHERE key = ?").bind(1, key).run();
}

}  // namespace nimbus::alerts
