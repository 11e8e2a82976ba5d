#include "bridge/service.hpp"

#include <algorithm>
#include <chrono>
#include <future>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nimbus::bridge {

namespace {

// A discard is one position record on the committer: this is far beyond any healthy disk.
constexpr auto discard_timeout = std::chrono::seconds(30);

}  // namespace

std::string_view to_string(bridge_source source) {
  return source == bridge_source::file ? "file" : "api";
}

service::service(broker::broker& broker, core::clock& clock, std::filesystem::path dir)
    : broker_(broker),
      clock_(clock),
      dir_(std::move(dir)),
      // In the OS page cache once appended (a kill -9 keeps it), synced every second.
      committer_(seglog::committer::options{seglog::fsync_policy::interval,
                                            std::chrono::milliseconds(1000), 1}) {}

service::~service() {
  pubsub_links_.clear();
  links_.clear();
  // The loops are stopped by now: nothing calls into a retired link any more. Their queues
  // were discarded, so their directories go with them.
  for (auto& retired : retired_) {
    retired.link.reset();
    std::error_code error;
    std::filesystem::remove_all(dir_ / retired.queue_dir, error);
    if (error)
      spdlog::warn("bridge_queue_dir_not_removed dir={} error=\"{}\"",
                   (dir_ / retired.queue_dir).string(), error.message());
  }
}

std::unique_ptr<mqtt_link> service::make_link(mqtt_bridge config, boost::asio::io_context& loop,
                                              const std::string& queue_dir) {
  const std::string name = config.name;
  try {
    return std::make_unique<mqtt_link>(std::move(config), broker_, loop, committer_, clock_,
                                       dir_ / queue_dir);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("bridges.{}: {}", name, e.what()));
  }
}

void service::add(mqtt_bridge config, boost::asio::io_context& loop, bridge_source source,
                  std::int64_t created_ms, std::string queue_dir) {
  if (queue_dir.empty()) queue_dir = config.name;
  if (has(config.name))
    throw std::invalid_argument(fmt::format("bridges.{}: the name is taken", config.name));
  auto link = make_link(std::move(config), loop, queue_dir);
  std::lock_guard lock(mutex_);
  links_.push_back(entry{std::move(link), source, created_ms, std::move(queue_dir)});
}

void service::add(pubsub_bridge config, pubsub::service* local, boost::asio::io_context& loop) {
  const std::string name = config.name;
  if (has(name))
    throw std::invalid_argument(fmt::format("pubsub_bridges.{}: the name is taken", name));
  try {
    auto target = make_pubsub_target(config, local);
    auto link = std::make_unique<pubsub_link>(std::move(config), std::move(target), broker_, loop,
                                              committer_, clock_, dir_ / name);
    std::lock_guard lock(mutex_);
    pubsub_links_.push_back(std::move(link));
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("pubsub_bridges.{}: {}", name, e.what()));
  }
}

void service::start() {
  std::vector<mqtt_link*> links;
  {
    std::lock_guard lock(mutex_);
    is_started_ = true;
    for (auto& e : links_) links.push_back(e.link.get());
  }
  for (auto* link : links) link->start();
  for (auto& link : pubsub_links_) link->start();
}

void service::stop() {
  std::vector<mqtt_link*> links;
  {
    std::lock_guard lock(mutex_);
    is_started_ = false;
    for (auto& e : links_) links.push_back(e.link.get());
  }
  for (auto* link : links) link->stop();
  for (auto& link : pubsub_links_) link->stop();
}

std::string service::fresh_queue_dir(const std::string& name, std::int64_t created_ms) const {
  std::error_code error;
  if (!std::filesystem::exists(dir_ / name, error) && !error) return name;
  std::string candidate = fmt::format("{}~{}", name, created_ms);
  for (int n = 2; std::filesystem::exists(dir_ / candidate, error); ++n)
    candidate = fmt::format("{}~{}-{}", name, created_ms, n);
  return candidate;
}

void service::add_runtime(mqtt_bridge config, boost::asio::io_context& loop,
                          std::int64_t created_ms, std::string queue_dir) {
  const std::string name = config.name;
  if (has(name)) throw std::invalid_argument(fmt::format("bridges.{}: the name is taken", name));
  auto link = make_link(std::move(config), loop, queue_dir);
  mqtt_link* added = link.get();
  bool is_started = false;
  {
    std::lock_guard lock(mutex_);
    links_.push_back(entry{std::move(link), bridge_source::api, created_ms, queue_dir});
    is_started = is_started_;
  }
  if (is_started) added->start();
  spdlog::info("bridge_created name={} queue_dir={}", name, (dir_ / queue_dir).string());
}

service::remove_outcome service::remove(const std::string& name, bool discard) {
  remove_outcome outcome;
  mqtt_link* link = nullptr;
  {
    std::lock_guard lock(mutex_);
    const auto found = std::find_if(links_.begin(), links_.end(),
                                    [&](const entry& e) { return e.link->config().name == name; });
    if (found == links_.end()) return outcome;
    if (found->source == bridge_source::file) {
      outcome.status = remove_status::read_only;
      return outcome;
    }
    outcome.queue = found->link->queue().stats();
    if (!discard && outcome.queue.queued_messages != 0) {
      outcome.status = remove_status::not_empty;
      return outcome;
    }
    // Retired at once, so its directory is never handed to a bridge created meanwhile.
    link = found->link.get();
    retired_.push_back(retired_link{std::move(found->link), std::move(found->queue_dir)});
    links_.erase(found);
  }
  link->stop();
  auto& queue = link->queue();
  const std::uint64_t discarded_before = queue.stats().discarded;
  auto settled = std::make_shared<std::promise<std::error_code>>();
  auto done = settled->get_future();
  queue.discard([settled](std::error_code error) { settled->set_value(error); });
  if (done.wait_for(discard_timeout) != std::future_status::ready)
    spdlog::error("bridge_discard_slow name={} note=\"the queue's position is not on disk yet\"",
                  name);
  else if (const auto error = done.get())
    spdlog::error("bridge_discard_failed name={} error=\"{}\"", name, error.message());
  outcome.status = remove_status::removed;
  outcome.discarded = queue.stats().discarded - discarded_before;
  deleted_.fetch_add(1, std::memory_order_relaxed);
  discarded_on_delete_.fetch_add(outcome.discarded, std::memory_order_relaxed);
  spdlog::info("bridge_deleted name={} discarded={}", name, outcome.discarded);
  return outcome;
}

bool service::has(const std::string& name) const {
  std::lock_guard lock(mutex_);
  return std::any_of(links_.begin(), links_.end(),
                     [&](const entry& e) { return e.link->config().name == name; }) ||
         std::any_of(pubsub_links_.begin(), pubsub_links_.end(),
                     [&](const auto& link) { return link->config().name == name; });
}

bridge_view service::view_of(const entry& e) const {
  bridge_view view;
  view.config = e.link->config();
  view.source = e.source;
  view.created_ms = e.created_ms;
  view.queue_dir = e.queue_dir;
  view.status = e.link->status();
  return view;
}

std::optional<bridge_view> service::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  for (const auto& e : links_)
    if (e.link->config().name == name) return view_of(e);
  return std::nullopt;
}

std::vector<bridge_view> service::list() const {
  std::vector<bridge_view> out;
  {
    std::lock_guard lock(mutex_);
    for (const auto& e : links_) out.push_back(view_of(e));
  }
  std::sort(out.begin(), out.end(), [](const bridge_view& a, const bridge_view& b) {
    return a.config.name < b.config.name;
  });
  return out;
}

std::vector<link_status> service::statuses() const {
  std::lock_guard lock(mutex_);
  std::vector<link_status> out;
  for (const auto& e : links_) out.push_back(e.link->status());
  for (const auto& link : pubsub_links_) out.push_back(link->status());
  return out;
}

void service::publish_sys(std::chrono::seconds interval) {
  const auto now = clock_.now();
  if (interval.count() == 0 || now - last_sys_ < interval) return;
  last_sys_ = now;
  for (const auto& s : statuses()) {
    const auto sys = [&](const std::string& what, std::string value) {
      auto msg = std::make_shared<broker::message>();
      msg->topic = "$SYS/broker/bridges/" + s.name + "/" + what;
      msg->payload = std::move(value);
      msg->retain = true;
      msg->publisher = "$SYS";
      broker_.publish(std::move(msg));
    };
    const auto& q = s.queue;
    sys("state", std::string(to_string(s.state)));
    sys("received", std::to_string(s.received));
    sys("forwarded", std::to_string(s.forwarded));
    sys("errors", std::to_string(s.errors));
    sys("reconnects", std::to_string(s.reconnects));
    sys("queued/messages", std::to_string(q.queued_messages));
    sys("queued/bytes", std::to_string(q.queued_bytes));
    sys("dropped", std::to_string(q.dropped_oldest + q.dropped_full + q.expired + q.undeliverable +
                                  q.lost + q.discarded));
  }
}

std::string service::prometheus_text() const {
  const auto all = statuses();
  std::string out;
  // Deleted bridges leave /metrics with their link; what their queues held when they went is
  // counted here (DELETE /api/bridges/{name}?discard_queue=true).
  out += fmt::format(
      "# HELP nimbus_bridge_deleted_total Bridges deleted over /api/bridges\n"
      "# TYPE nimbus_bridge_deleted_total counter\n"
      "nimbus_bridge_deleted_total {}\n"
      "# HELP nimbus_bridge_discarded_on_delete_total Messages discarded with the queues of "
      "deleted bridges\n"
      "# TYPE nimbus_bridge_discarded_on_delete_total counter\n"
      "nimbus_bridge_discarded_on_delete_total {}\n",
      deleted_.load(std::memory_order_relaxed),
      discarded_on_delete_.load(std::memory_order_relaxed));
  if (all.empty()) return out;
  const auto family = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& s : all)
      out += fmt::format("{}{{bridge=\"{}\"}} {}\n", name, s.name, value(s));
  };
  family("nimbus_bridge_connected", "gauge", "1 while the bridge's link is connected",
         [](const link_status& s) { return s.state == link_state::connected ? 1 : 0; });
  family("nimbus_bridge_received_total", "counter", "Messages from the remote published locally",
         [](const link_status& s) { return s.received; });
  family("nimbus_bridge_forwarded_total", "counter",
         "Messages the remote acknowledged (QoS 0: written)",
         [](const link_status& s) { return s.forwarded; });
  family("nimbus_bridge_errors_total", "counter",
         "Refused, unmappable or undeliverable messages and refused subscriptions",
         [](const link_status& s) { return s.errors; });
  family("nimbus_bridge_reconnects_total", "counter", "Connection attempts after the first",
         [](const link_status& s) { return s.reconnects; });
  family("nimbus_bridge_queued_messages", "gauge", "Messages in the store-and-forward queue",
         [](const link_status& s) { return s.queue.queued_messages; });
  family("nimbus_bridge_queued_bytes", "gauge", "Bytes in the store-and-forward queue",
         [](const link_status& s) { return s.queue.queued_bytes; });
  out +=
      "# HELP nimbus_bridge_dropped_total Messages that left the queue unsent, by reason\n"
      "# TYPE nimbus_bridge_dropped_total counter\n";
  for (const auto& s : all) {
    const std::pair<const char*, std::uint64_t> reasons[] = {
        {"oldest", s.queue.dropped_oldest},
        {"full", s.queue.dropped_full},
        {"expired", s.queue.expired},
        {"undeliverable", s.queue.undeliverable},
        {"lost", s.queue.lost},
        {"discarded", s.queue.discarded}};
    for (const auto& [reason, count] : reasons)
      out += fmt::format("nimbus_bridge_dropped_total{{bridge=\"{}\",reason=\"{}\"}} {}\n", s.name,
                         reason, count);
  }
  return out;
}

}  // namespace nimbus::bridge
