#include "broker/broker.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>

#include "core/assert.hpp"
#include "core/log.hpp"
#include "mqtt/topic.hpp"
#include "net/address.hpp"

namespace nimbus::broker {

namespace {
constexpr std::uint32_t never_expires = 0xFFFFFFFF;
constexpr const char* version_string = "nimbus 0.1.0";

bool expired(const message& m, std::int64_t now) {
  return m.expires_at != 0 && now > m.expires_at;
}

// The subscription's filter without a `$share/group/` prefix, and the group.
std::pair<std::string_view, std::optional<std::string_view>> split_shared(std::string_view filter) {
  if (auto shared = mqtt::parse_shared_filter(filter)) return {shared->filter, shared->group};
  return {filter, std::nullopt};
}
// Bytes a retained message accounts for against max_retained_bytes.
std::size_t retained_size(const message& m) {
  return m.topic.size() + m.payload.size();
}
}  // namespace

std::string_view name_of(limit l) {
  switch (l) {
    case limit::connections:
      return "max_connections";
    case limit::pending_sockets:
      return "max_pending_connections";
    case limit::pending_per_address:
      return "max_pending_per_address";
    case limit::connect_size:
      return "max_connect_size";
    case limit::client_id_length:
      return "max_client_id_length";
    case limit::sessions:
      return "max_sessions";
    case limit::subscriptions:
      return "max_subscriptions_per_client";
    case limit::subscription_bytes:
      return "max_subscription_bytes";
    case limit::retained_messages:
      return "max_retained_messages";
    case limit::retained_bytes:
      return "max_retained_bytes";
    case limit::count:
      break;
  }
  return "unknown";
}

bool pending_sockets::try_add(const std::string& address, limit& refused) {
  std::lock_guard lock(mutex_);
  if (total_ >= max_total_) {
    refused = limit::pending_sockets;
    return false;
  }
  auto it = by_address_.try_emplace(address, 0).first;
  if (it->second >= max_per_address_) {
    refused = limit::pending_per_address;
    return false;
  }
  ++it->second;
  ++total_;
  return true;
}

std::string pending_sockets::key_of(std::string_view remote) {
  auto host = net::host_of(remote);
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  if (ec || !address.is_v6() || address.to_v6().is_v4_mapped()) return host;
  auto bytes = address.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

void pending_sockets::remove(std::string_view key) {
  std::lock_guard lock(mutex_);
  auto it = by_address_.find(key);
  if (it == by_address_.end()) {
    core::report_bug("pending_sockets", fmt::format("not counted: key={}", key));
    return;
  }
  --total_;
  if (--it->second == 0) by_address_.erase(it);
}

std::size_t pending_sockets::size() const {
  std::lock_guard lock(mutex_);
  return total_;
}

void broker::limit_hit(limit which, std::string_view client) {
  metrics_.limit_hits[static_cast<int>(which)].fetch_add(1, std::memory_order_relaxed);
  static core::log_limiter limiter(10);
  core::warn_limited(limiter, "mqtt_limit_reached limit={} client={} similar_lines_suppressed={}",
                     name_of(which), client);
}

broker::broker(const config::mqtt_settings& settings, core::clock& clock, authorizer& auth,
               session_store* store)
    : settings_(settings),
      topic_limits_{settings.max_topic_length, settings.max_topic_levels},
      clock_(clock),
      auth_(auth),
      store_(store),
      pending_(settings.max_pending_connections, settings.max_pending_per_address),
      event_version_(clock.unix_seconds() * 1000),
      started_(clock.now()) {}

broker::~broker() = default;

std::int64_t broker::expiry_for(const mqtt::properties& props) const {
  if (!props.message_expiry_interval) return 0;
  return clock_.unix_seconds() + *props.message_expiry_interval;
}

void broker::restore(storage::database& db) {
  auto now = clock_.unix_seconds();
  std::size_t restored = 0;
  for (auto& stored : session_store::load_sessions(db)) {
    if (stored.expires_at != 0 && stored.expires_at <= now) {
      if (store_) store_->delete_session(stored.client_id);
      continue;
    }
    auto s = std::make_shared<session>(stored.client_id);
    s->version = stored.version;
    s->expiry_interval = stored.expiry_interval;
    // A session that was attached when the server stopped starts its expiry now.
    s->expires_at = stored.expires_at != 0                    ? stored.expires_at
                    : stored.expiry_interval == never_expires ? 0
                                                              : now + stored.expiry_interval;
    std::uint64_t max_seq = 0;
    for (auto& d : stored.queue) {
      max_seq = std::max(max_seq, d.seq);
      s->queue.push_back(std::move(d));
    }
    for (auto& [packet_id, d] : stored.sent) {
      max_seq = std::max(max_seq, d.seq);
      s->extras().inflight[packet_id] = outbound_inflight{std::move(d), false};
    }
    for (auto& [packet_id, d] : stored.released) {
      max_seq = std::max(max_seq, d.seq);
      s->extras().inflight[packet_id] = outbound_inflight{std::move(d), true};
    }
    if (max_seq > 0) s->extras().next_seq = max_seq + 1;
    if (!stored.inbound_qos2.empty())
      s->extras().inbound_qos2.insert(stored.inbound_qos2.begin(), stored.inbound_qos2.end());
    if (stored.will) {
      s->extras().will =
          std::make_unique<pending_will>(pending_will{std::move(*stored.will), stored.will_at});
    }
    for (auto& [filter, sub] : stored.subscriptions) {
      auto [plain, group] = split_shared(filter);
      index_.subscribe(plain, group, s, sub.options, sub.subscription_id);
      if (s->subscriptions.emplace(filter, sub).second)
        s->subscription_bytes += static_cast<std::uint32_t>(filter.size());
    }
    sessions_.insert(std::move(s));
    ++restored;
  }
  std::size_t retained = 0;
  // Memory holds what the limits allow, also after they were lowered: the rest stays stored
  // (and comes back if they are raised) instead of being loaded past the bound.
  std::size_t left_stored = session_store::load_retained(db, [&](retained_message stored) {
    auto& msg = stored.msg;
    if (expired(*msg, now)) return true;
    if (retained_.size() >= settings_.max_retained_messages ||
        retained_bytes_ + retained_size(*msg) > settings_.max_retained_bytes)
      return false;
    retained_bytes_ += retained_size(*msg);
    retained_.emplace(msg->topic, std::move(stored));
    ++retained;
    return true;
  });
  retained_left_stored_ = left_stored > 0;
  if (left_stored > 0)
    spdlog::warn(
        "retained_not_loaded count={} max_retained_messages={} max_retained_bytes={} "
        "note=\"kept in the database; raise the limits to serve them\"",
        left_stored, settings_.max_retained_messages, settings_.max_retained_bytes);
  spdlog::info("broker_restored sessions={} retained={} subscriptions={}", restored, retained,
               index_.size());
}

attach_result broker::attach(const std::string& client_id, mqtt::protocol_version version,
                             bool clean_start, std::uint32_t expiry_interval,
                             std::shared_ptr<session_link> link) {
  std::shared_ptr<session_link> previous_link;
  session_ptr replaced;
  attach_result result;
  {
    std::lock_guard registry(registry_mutex_);
    session_ptr slot;
    if (auto it = sessions_.find(std::string_view(client_id)); it != sessions_.end()) slot = *it;
    if (!slot && sessions_.size() >= settings_.max_sessions) return result;  // nothing changed
    bool was_stored = false;
    if (slot) {
      std::lock_guard lock(slot->mutex);
      previous_link = std::move(slot->link);
      was_stored = slot->is_persistent();
      if (clean_start) {
        sessions_.erase(slot);
        replaced = std::move(slot);
      } else {
        if (auto* extras = slot->extras_if_any(); extras && extras->will) {
          if (store_) store_->clear_will(client_id);
          extras->will.reset();  // a new connection arrived before the delayed will was due
        }
        result.session_present = true;
      }
    }
    if (!slot) {
      slot = std::make_shared<session>(client_id);
      sessions_.insert(slot);
    }
    {
      std::lock_guard lock(slot->mutex);
      slot->version = version;
      slot->expiry_interval = expiry_interval;
      slot->link = std::move(link);
      slot->expires_at = 0;
      result.target = slot;
    }
    // Stored state changes under the registry lock keep their order per client id.
    if (store_) {
      if (was_stored && (replaced || expiry_interval == 0)) store_->delete_session(client_id);
      if (expiry_interval > 0) store_->save_session(client_id, version, expiry_interval, 0);
    }
  }
  if (replaced) discard(replaced);
  if (previous_link) previous_link->kick(mqtt::reason_code::session_taken_over);
  return result;
}

void broker::detach(const session_ptr& s, const session_link* link, close_kind kind,
                    std::optional<mqtt::will_message> will, std::optional<std::uint32_t> new_expiry,
                    const std::string& publisher) {
  bool send_will = will.has_value() && kind != close_kind::normal;
  std::uint32_t will_delay = send_will ? will->props.will_delay_interval.value_or(0) : 0;
  bool end_session = false;
  bool publish_now = false;
  {
    // Registry first: a session that ends must leave the registry in the same step, or a
    // reconnect could resume it in between and then lose it.
    std::lock_guard registry(registry_mutex_);
    std::lock_guard lock(s->mutex);
    if (s->link.get() != link) {
      // Taken over or discarded: the newer connection owns the session now.
      publish_now = send_will && will_delay == 0;
    } else {
      s->link.reset();
      bool was_persistent = s->is_persistent();
      if (new_expiry) s->expiry_interval = *new_expiry;
      auto now = clock_.unix_seconds();
      if (!s->is_persistent()) {
        end_session = true;
        publish_now = send_will;
        auto it = sessions_.find(std::string_view(s->client_id()));
        if (it != sessions_.end() && *it == s) sessions_.erase(it);
        if (was_persistent && store_) store_->delete_session(s->client_id());
      } else {
        s->expires_at = s->expiry_interval == never_expires ? 0 : now + s->expiry_interval;
        if (store_)
          store_->save_session(s->client_id(), s->version, s->expiry_interval, s->expires_at);
        if (send_will) {
          std::uint32_t delay = std::min(will_delay, s->expiry_interval);
          if (delay == 0)
            publish_now = true;
          else {
            auto& pending = s->extras().will;
            pending = std::make_unique<pending_will>(pending_will{std::move(*will), now + delay});
            if (store_) store_->save_will(s->client_id(), pending->will, pending->publish_at);
          }
        }
      }
    }
  }
  release_congestion(*s);  // an offline session holds no publisher back
  if (end_session) discard(s);
  if (publish_now) publish_will(*will, publisher);
}

void broker::discard(const session_ptr& s) {
  std::vector<std::string> filters;
  {
    std::lock_guard lock(s->mutex);
    s->discarded = true;
    for (const auto& [filter, sub] : s->subscriptions) filters.push_back(filter);
    s->subscriptions.clear();
    s->subscription_bytes = 0;
    s->queue.clear();
    if (auto* extras = s->extras_if_any()) extras->inflight.clear();
  }
  for (const auto& filter : filters) {
    auto [plain, group] = split_shared(filter);
    index_.unsubscribe(plain, group, s.get());
  }
  release_congestion(*s);
}

void broker::publish_will(const mqtt::will_message& will, const std::string& publisher) {
  auto msg = std::make_shared<message>();
  msg->topic = will.topic;
  msg->payload = will.payload;
  msg->qos = will.qos;
  msg->retain = will.retain;
  msg->props = will.props;
  msg->props.will_delay_interval.reset();
  msg->props.message_expiry_interval.reset();
  msg->expires_at = expiry_for(will.props);
  msg->publisher = publisher;
  publish(std::move(msg));
}

bool broker::enqueue_locked(session& s, delivery d, storage::ticket& ticket, const gate_ptr& gate) {
  if (s.discarded) return false;
  if (!s.link && (d.qos == 0 || !s.is_persistent()))
    return false;  // QoS 0 is not kept for offline clients
  bool full = s.queue.size() >= settings_.max_queued_messages;
  auto* extras = s.extras_if_any();
  bool congestion_expired = extras != nullptr && extras->congestion_expired;
  if (full && gate && s.link && d.qos > 0 && !congestion_expired) {
    // A connected subscriber that falls behind slows its publishers instead of losing messages,
    // for at most congestion_timeout (see tick()).
    auto& ex = s.extras();
    if (!ex.congested_since) ex.congested_since = clock_.now();
    auto& congested = ex.congested_publishers;
    if (std::find(congested.begin(), congested.end(), gate) == congested.end()) {
      gate->remaining.fetch_add(1, std::memory_order_acq_rel);
      congested.push_back(gate);
    }
  } else if (full) {
    if (settings_.queue_full_policy == "drop-oldest" && !s.queue.empty()) {
      auto& oldest = s.queue.front();
      if (oldest.seq != 0 && store_) store_->remove_delivery(s.client_id(), oldest.seq);
      s.queue.pop_front();
    } else {
      metrics_.messages_dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    metrics_.messages_dropped.fetch_add(1, std::memory_order_relaxed);
  }
  if (d.qos > 0 && s.is_persistent() && store_) {
    d.seq = s.extras().next_seq++;
    ticket = storage::later(ticket, store_->enqueue(s.client_id(), d));
  }
  s.queue.push_back(std::move(d));
  return true;
}

namespace {
// The message whose services are running on this thread: what a service publishes from its
// handler (a rule's republish) holds the original publisher back as the original's own
// deliveries do (its gate, instead of a drop at a full queue; its durable ticket, so the
// publisher's acknowledgement also waits for the stored copies).
thread_local const gate_ptr* routing_gate = nullptr;
thread_local publish_result* routing_result = nullptr;
}  // namespace

publish_result broker::publish(message_ptr msg, const gate_ptr& gate, const client_identity* from) {
  metrics_.messages_received.fetch_add(1, std::memory_order_relaxed);
  if (gate || routing_gate == nullptr) return route(std::move(msg), gate, from);
  publish_result* outer = routing_result;
  publish_result result = route(std::move(msg), *routing_gate, from);
  outer->durable_ticket = storage::later(outer->durable_ticket, result.durable_ticket);
  return result;
}

bus_subscription broker::subscribe_service(std::string filter, bus_handler handler) {
  // A plain filter: shared subscriptions are for clients.
  NIMBUS_ASSERT(mqtt::is_valid_topic_filter(filter, topic_limits_) &&
                !filter.starts_with("$share/"));
  auto id = next_service_id_.fetch_add(1, std::memory_order_relaxed);
  index_.subscribe_service(filter, id, std::make_shared<const bus_handler>(std::move(handler)));
  return bus_subscription(*this, std::move(filter), id);
}

void broker::unsubscribe_service(const std::string& filter, std::uint64_t id) {
  index_.unsubscribe_service(filter, id);
}

void broker::reserve_topics(std::string filter) {
  reserved_filters_.push_back(std::move(filter));
}

bool broker::is_reserved_topic(std::string_view topic) const {
  if (!topic.starts_with('$')) return false;
  if (topic.starts_with("$SYS") || topic.starts_with("$aws/events/")) return true;
  return std::any_of(reserved_filters_.begin(), reserved_filters_.end(),
                     [&](const std::string& f) { return mqtt::topic_matches(f, topic); });
}

bus_subscription& bus_subscription::operator=(bus_subscription&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    filter_ = std::move(other.filter_);
    id_ = other.id_;
  }
  return *this;
}

void bus_subscription::reset() {
  if (owner_) std::exchange(owner_, nullptr)->unsubscribe_service(filter_, id_);
}

publisher_hold::publisher_hold(gate_ptr gate) : gate_(std::move(gate)) {
  if (gate_) gate_->remaining.fetch_add(1, std::memory_order_acq_rel);
}

publisher_hold& publisher_hold::operator=(publisher_hold&& other) noexcept {
  if (this != &other) {
    release();
    gate_ = std::move(other.gate_);
  }
  return *this;
}

void publisher_hold::release() {
  if (auto gate = std::move(gate_)) gate->release();
}

void publisher_hold::fail() {
  if (auto gate = std::move(gate_)) {
    gate->failed.store(true, std::memory_order_release);
    gate->release();
  }
}

publisher_hold broker::hold_publisher() const {
  if (routing_gate == nullptr || !*routing_gate) return {};
  return publisher_hold(*routing_gate);
}

void broker::release_congestion(session& s) {
  std::vector<gate_ptr> gates;
  {
    std::lock_guard lock(s.mutex);
    if (auto* extras = s.extras_if_any()) {
      gates.swap(extras->congested_publishers);
      extras->congested_since.reset();
      extras->congestion_expired = false;
    }
  }
  for (auto& g : gates) g->release();
}

void broker::expire_congestion_locked(session& s, std::vector<gate_ptr>& released) {
  auto& extras = s.extras();
  extras.congestion_expired = true;
  for (auto& g : extras.congested_publishers) released.push_back(std::move(g));
  extras.congested_publishers.clear();
  metrics_.congestion_timeouts.fetch_add(1, std::memory_order_relaxed);
  // What the queue took beyond its limit while publishers were held now goes as a full queue
  // would have let it go: the newest (drop-new) or the oldest (drop-oldest) messages.
  bool drop_oldest = settings_.queue_full_policy == "drop-oldest";
  std::size_t dropped = 0;
  while (s.queue.size() > settings_.max_queued_messages) {
    auto& victim = drop_oldest ? s.queue.front() : s.queue.back();
    if (victim.seq != 0 && store_) store_->remove_delivery(s.client_id(), victim.seq);
    if (drop_oldest)
      s.queue.pop_front();
    else
      s.queue.pop_back();
    ++dropped;
  }
  metrics_.messages_dropped.fetch_add(dropped, std::memory_order_relaxed);
  static core::log_limiter limiter(10);
  core::warn_limited(
      limiter,
      "mqtt_congestion_timeout client={} held_publishers={} dropped={} policy={} "
      "effect=\"publishers released; the queue drops per queue_full_policy until it drains\" "
      "similar_lines_suppressed={}",
      s.client_id(), released.size(), dropped, settings_.queue_full_policy);
}

bool broker::retain(const message_ptr& msg, publish_result& result) {
  std::unique_lock lock(retained_mutex_);
  auto it = retained_.find(msg->topic);
  if (msg->payload.empty()) {
    if (it == retained_.end()) {
      // Not in memory, but maybe stored past the limits at start-up: delete it there too, or
      // it would come back after a restart with higher limits.
      if (retained_left_stored_ && store_)
        result.durable_ticket = store_->delete_retained(msg->topic);
      return true;
    }
    retained_bytes_ -= retained_size(*it->second.msg);
    retained_.erase(it);
    if (store_) result.durable_ticket = store_->delete_retained(msg->topic);
    return true;
  }
  std::size_t replaced = it == retained_.end() ? 0 : retained_size(*it->second.msg);
  std::size_t bytes = retained_bytes_ - replaced + retained_size(*msg);
  std::optional<limit> refused;
  if (it == retained_.end() && retained_.size() >= settings_.max_retained_messages)
    refused = limit::retained_messages;
  else if (bytes > settings_.max_retained_bytes && bytes > retained_bytes_)
    refused = limit::retained_bytes;
  if (refused) {
    lock.unlock();
    metrics_.retained_refused.fetch_add(1, std::memory_order_relaxed);
    limit_hit(*refused, msg->publisher);
    result.quota_exceeded = true;
    return false;
  }
  retained_bytes_ = bytes;
  retained_message entry{msg, clock_.unix_millis()};
  if (store_) result.durable_ticket = store_->save_retained(entry);
  if (it == retained_.end())
    retained_.emplace(msg->topic, std::move(entry));
  else
    it->second = std::move(entry);
  return true;
}

publish_result broker::route(message_ptr msg, const gate_ptr& gate, const client_identity* from) {
  publish_result result;
  // AWS keeps no retained messages on its reserved `$aws/` topics (a retained shadow request
  // would replay to every new subscriber of it).
  if (msg->retain && !msg->topic.starts_with("$aws/") && !retain(msg, result)) return result;

  thread_local std::vector<subscription_match> matches;
  thread_local std::vector<service_handler> services;
  matches.clear();
  services.clear();
  index_.match(msg->topic, matches, services);
  // Services run last, once the sessions have their copies; they may publish, which routes
  // again on this thread and reuses the vectors above.
  std::vector<service_handler> handlers;
  handlers.swap(services);
  if (!matches.empty() && !is_basic_ingest(msg->topic)) deliver(msg, gate, matches, result);
  if (handlers.empty()) return result;
  struct routing_scope {
    const gate_ptr* saved_gate;
    publish_result* saved_result;
    routing_scope(const gate_ptr& g, publish_result& r)
        : saved_gate(std::exchange(routing_gate, &g)),
          saved_result(std::exchange(routing_result, &r)) {}
    ~routing_scope() {
      routing_gate = saved_gate;
      routing_result = saved_result;
    }
    routing_scope(const routing_scope&) = delete;
    routing_scope& operator=(const routing_scope&) = delete;
  } scope(gate, result);
  for (const auto& handler : handlers) (*handler)(msg, from);
  result.matched += handlers.size();
  return result;
}

void broker::deliver(const message_ptr& msg, const gate_ptr& gate,
                     std::vector<subscription_match>& matches, publish_result& result) {
  // Several filters of one session can match: it gets one copy at the highest QoS with every
  // subscription identifier (MQTT 3.3.4).
  std::sort(matches.begin(), matches.end(),
            [](const auto& a, const auto& b) { return a.target.get() < b.target.get(); });
  for (std::size_t i = 0; i < matches.size();) {
    const auto& target = matches[i].target;
    delivery d;
    bool any = false;
    for (; i < matches.size() && matches[i].target == target; ++i) {
      const auto& m = matches[i];
      if (m.options.no_local && !m.shared && msg->publisher == target->client_id()) continue;
      any = true;
      d.qos = std::max(d.qos, std::min(msg->qos, m.options.qos));
      d.retain = d.retain || (m.options.retain_as_published && msg->retain);
      if (m.subscription_id != 0) d.subscription_ids.push_back(m.subscription_id);
    }
    if (!any) continue;
    d.msg = msg;
    std::shared_ptr<session_link> wake;
    {
      std::lock_guard lock(target->mutex);
      if (enqueue_locked(*target, std::move(d), result.durable_ticket, gate)) {
        ++result.matched;
        wake = target->link;
      }
    }
    if (wake) wake->wake();
  }
}

storage::ticket broker::subscribe(const session_ptr& s, const std::string& filter,
                                  const mqtt::subscription_options& options,
                                  std::uint32_t subscription_id) {
  auto [plain, group] = split_shared(filter);
  bool existed;
  bool persistent;
  {
    std::lock_guard lock(s->mutex);
    auto [it, inserted] =
        s->subscriptions.insert_or_assign(filter, subscription{options, subscription_id});
    existed = !inserted;
    if (inserted) s->subscription_bytes += static_cast<std::uint32_t>(filter.size());
    persistent = s->is_persistent();
  }
  index_.subscribe(plain, group, s, options, subscription_id);
  {
    std::unique_lock lock(s->mutex);
    if (s->discarded) {
      // The session ended meanwhile; its discard may have missed this entry.
      lock.unlock();
      index_.unsubscribe(plain, group, s.get());
      return {};
    }
  }
  storage::ticket ticket;
  if (persistent && store_)
    ticket = store_->save_subscription(s->client_id(), filter, {options, subscription_id});
  // Retained messages: never for shared subscriptions; retain handling 1 only when new (3.3.1.3).
  if (!group && (options.retain_handling == 0 || (options.retain_handling == 1 && !existed))) {
    queue_retained(s, std::string(plain), options, subscription_id);
  }
  return ticket;
}

void broker::queue_retained(const session_ptr& s, const std::string& filter,
                            const mqtt::subscription_options& options,
                            std::uint32_t subscription_id) {
  std::vector<message_ptr> found;
  {
    std::shared_lock lock(retained_mutex_);
    if (!mqtt::has_wildcard(filter)) {
      if (auto it = retained_.find(filter); it != retained_.end()) found.push_back(it->second.msg);
    } else {
      for (const auto& [topic, entry] : retained_) {
        if (mqtt::topic_matches(filter, topic)) found.push_back(entry.msg);
      }
    }
  }
  if (found.empty()) return;
  auto now = clock_.unix_seconds();
  storage::ticket ticket;
  std::shared_ptr<session_link> wake;
  {
    std::lock_guard lock(s->mutex);
    for (auto& msg : found) {
      if (expired(*msg, now)) continue;
      delivery d;
      d.qos = std::min(msg->qos, options.qos);
      d.retain = true;
      if (subscription_id != 0) d.subscription_ids.push_back(subscription_id);
      d.msg = std::move(msg);
      enqueue_locked(*s, std::move(d), ticket);
    }
    wake = s->link;
  }
  if (wake) wake->wake();
}

bool broker::unsubscribe(const session_ptr& s, const std::string& filter, storage::ticket& ticket) {
  bool existed;
  bool persistent;
  {
    std::lock_guard lock(s->mutex);
    existed = s->subscriptions.erase(filter) > 0;
    if (existed) s->subscription_bytes -= static_cast<std::uint32_t>(filter.size());
    persistent = s->is_persistent();
  }
  if (!existed) return false;
  auto [plain, group] = split_shared(filter);
  index_.unsubscribe(plain, group, s.get());
  if (persistent && store_)
    ticket = storage::later(ticket, store_->delete_subscription(s->client_id(), filter));
  return true;
}

void broker::tick() {
  auto now = clock_.unix_seconds();
  auto steady_now = clock_.now();
  const auto congestion_timeout = std::chrono::seconds(settings_.congestion_timeout);
  std::vector<std::pair<mqtt::will_message, std::string>> wills;
  std::vector<session_ptr> expired_sessions;
  std::vector<gate_ptr> released;
  {
    std::lock_guard registry(registry_mutex_);
    // Erasing from the flat set leaves the other iterators valid.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      const session_ptr s = *it;  // outlives its entry, which may be erased below
      std::lock_guard lock(s->mutex);
      if (s->link) {
        auto* extras = s->extras_if_any();
        if (extras && extras->congested_since && !extras->congested_publishers.empty() &&
            steady_now - *extras->congested_since >= congestion_timeout)
          expire_congestion_locked(*s, released);
        ++it;
        continue;
      }
      bool session_over = s->expires_at != 0 && now >= s->expires_at;
      auto* extras = s->extras_if_any();
      if (extras && extras->will && (session_over || now >= extras->will->publish_at)) {
        wills.emplace_back(std::move(extras->will->will), s->client_id());
        extras->will.reset();
        if (!session_over && store_) store_->clear_will(s->client_id());
      }
      if (session_over) {
        // Deleted while the registry is locked, so a new session with this id is stored after.
        if (store_) store_->delete_session(s->client_id());
        expired_sessions.push_back(s);
        sessions_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (auto& g : released) g->release();
  for (auto& s : expired_sessions) discard(s);
  for (auto& [will, publisher] : wills) publish_will(will, publisher);
  if (settings_.sys_interval > 0 && now - last_sys_ >= settings_.sys_interval) {
    last_sys_ = now;
    publish_sys();
  }
}

void broker::publish_sys() {
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(clock_.now() - started_).count();
  auto sys = [&](const std::string& topic, std::string value) {
    auto msg = std::make_shared<message>();
    msg->topic = "$SYS/broker/" + topic;
    msg->payload = std::move(value);
    msg->retain = true;
    msg->publisher = "$SYS";
    route(std::move(msg), nullptr, nullptr);
  };
  sys("version", version_string);
  sys("uptime", fmt::format("{} seconds", uptime));
  sys("clients/connected", std::to_string(metrics_.clients_connected.load()));
  sys("clients/total", std::to_string(session_count()));
  sys("messages/received", std::to_string(metrics_.messages_received.load()));
  sys("messages/sent", std::to_string(metrics_.messages_sent.load()));
  sys("messages/dropped", std::to_string(metrics_.messages_dropped.load()));
  sys("bytes/received", std::to_string(metrics_.bytes_received.load()));
  sys("bytes/sent", std::to_string(metrics_.bytes_sent.load()));
  sys("subscriptions/count", std::to_string(index_.size()));
  sys("retained messages/count", std::to_string(retained_count()));
}

void broker::shutdown() {
  std::vector<std::shared_ptr<session_link>> links;
  {
    std::lock_guard registry(registry_mutex_);
    for (const auto& s : sessions_) {
      std::lock_guard lock(s->mutex);
      if (s->link) links.push_back(s->link);
    }
  }
  for (auto& link : links) link->kick(mqtt::reason_code::server_shutting_down);
}

std::size_t broker::disconnect_if(const std::function<bool(const client_identity&)>& match,
                                  mqtt::reason_code reason) {
  std::vector<std::shared_ptr<session_link>> links;
  {
    std::lock_guard registry(registry_mutex_);
    for (const auto& s : sessions_) {
      std::lock_guard lock(s->mutex);
      if (!s->link) continue;
      const client_identity* who = s->link->identity();
      if (who != nullptr && match(*who)) links.push_back(s->link);
    }
  }
  for (auto& link : links) link->kick(reason);
  return links.size();
}

bool broker::is_connected(std::string_view client_id) const {
  std::lock_guard registry(registry_mutex_);
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return false;
  std::lock_guard lock((*it)->mutex);
  return (*it)->link != nullptr;
}

std::size_t broker::session_count() const {
  std::lock_guard registry(registry_mutex_);
  return sessions_.size();
}

std::size_t broker::retained_count() const {
  std::shared_lock lock(retained_mutex_);
  return retained_.size();
}

std::optional<retained_message> broker::retained(std::string_view topic) const {
  auto now = clock_.unix_seconds();
  std::shared_lock lock(retained_mutex_);
  auto it = retained_.find(topic);
  if (it == retained_.end() || expired(*it->second.msg, now) || topic.starts_with("$SYS"))
    return std::nullopt;
  return it->second;
}

std::vector<retained_message> broker::list_retained(std::string_view after, std::size_t max) const {
  auto now = clock_.unix_seconds();
  std::vector<retained_message> page;
  std::shared_lock lock(retained_mutex_);
  for (auto it = after.empty() ? retained_.begin() : retained_.upper_bound(after);
       it != retained_.end() && page.size() < max; ++it) {
    if (!expired(*it->second.msg, now) && !it->first.starts_with("$SYS"))
      page.push_back(it->second);
  }
  return page;
}

std::string broker::prometheus_text() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(clock_.now() - started_).count();
  metric("nimbus_uptime_seconds", "gauge", "Seconds since the broker started", uptime);
  metric("nimbus_mqtt_connections", "gauge", "Open MQTT connections",
         metrics_.connections_current.load());
  metric("nimbus_mqtt_clients_connected", "gauge", "MQTT clients past CONNECT",
         metrics_.clients_connected.load());
  metric("nimbus_mqtt_pending_sockets", "gauge",
         "MQTT sockets that have not completed CONNECT (TLS handshakes included)", pending_.size());
  metric("nimbus_mqtt_sockets_refused_total", "counter",
         "MQTT sockets closed at accept (pending limits)", metrics_.sockets_refused.load());
  metric("nimbus_mqtt_congestion_timeouts_total", "counter",
         "Subscribers that held a publisher past congestion_timeout",
         metrics_.congestion_timeouts.load());
  metric("nimbus_mqtt_retained_refused_total", "counter",
         "Retained messages refused by max_retained_messages or max_retained_bytes",
         metrics_.retained_refused.load());
  metric("nimbus_mqtt_retained_bytes", "gauge", "Bytes of retained messages (topics, payloads)",
         [this] {
           std::shared_lock lock(retained_mutex_);
           return retained_bytes_;
         }());
  metric("nimbus_bugs_total", "counter",
         "Internal invariants found broken (logged as bug=; please report them)",
         core::bugs_reported());
  out +=
      "# HELP nimbus_mqtt_limit_hits_total Times a client ran into a limit\n"
      "# TYPE nimbus_mqtt_limit_hits_total counter\n";
  for (int i = 0; i < static_cast<int>(limit::count); ++i)
    out += fmt::format("nimbus_mqtt_limit_hits_total{{limit=\"{}\"}} {}\n",
                       name_of(static_cast<limit>(i)), metrics_.limit_hits[i].load());
  metric("nimbus_mqtt_connections_total", "counter", "MQTT connections accepted",
         metrics_.connections_total.load());
  metric("nimbus_mqtt_connections_refused_total", "counter", "CONNECTs refused",
         metrics_.connections_refused.load());
  metric("nimbus_mqtt_sessions", "gauge", "Sessions, connected or persistent", session_count());
  metric("nimbus_mqtt_subscriptions", "gauge", "Subscriptions in the index", index_.size());
  metric("nimbus_mqtt_retained_messages", "gauge", "Retained messages", retained_count());
  metric("nimbus_mqtt_messages_received_total", "counter",
         "PUBLISH received from clients and wills", metrics_.messages_received.load());
  metric("nimbus_mqtt_messages_sent_total", "counter", "PUBLISH sent to clients",
         metrics_.messages_sent.load());
  metric("nimbus_mqtt_messages_dropped_total", "counter",
         "Messages dropped (queue full, too large, slow reader)", metrics_.messages_dropped.load());
  metric("nimbus_mqtt_messages_expired_total", "counter", "Messages discarded on expiry",
         metrics_.messages_expired.load());
  metric("nimbus_mqtt_bytes_received_total", "counter", "Bytes read from MQTT clients",
         metrics_.bytes_received.load());
  metric("nimbus_mqtt_bytes_sent_total", "counter", "Bytes written to MQTT clients",
         metrics_.bytes_sent.load());
  metric("nimbus_mqtt_protocol_errors_total", "counter",
         "Connections closed for protocol violations", metrics_.protocol_errors.load());
  metric("nimbus_mqtt_authorization_denials_total", "counter",
         "Connect/publish/subscribe/receive denials", metrics_.authorization_denials.load());
  return out;
}

}  // namespace nimbus::broker
