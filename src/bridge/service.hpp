#pragma once
// The bridges of a server (issue 14): one mqtt_link per [bridges.<name>] of the config file and
// per bridge created over /api/bridges (bridges_api.hpp), their queues under
// <data>/bridges/<queue dir>/ on one seglog committer, their figures for /metrics and the API.
//
// Threads: add() and start() at start-up; add_runtime() and remove() on a control thread, never
// on a loop (they open queues and wait for links to stop); the readers (find, list, statuses,
// prometheus_text) from any thread. The list of links is guarded by one mutex, never held while
// a link starts or stops.
//
// A removed link is stopped and then retired, not destroyed: a bus handler may still be running
// on a broker thread after its bus_subscription is gone (bus.hpp), and the queue's durability
// callbacks (committer thread) and the link's posted handlers (its loop) call into it. Retired
// links live until the service is destroyed (after the loops stopped), and only then are their
// queue directories, whose records were all discarded, removed. Until then the directory stays
// open, so a bridge created again under the same name gets a fresh one (fresh_queue_dir).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "bridge/bridge_config.hpp"
#include "bridge/mqtt_link.hpp"
#include "bridge/pubsub_link.hpp"
#include "broker/broker.hpp"
#include "core/clock.hpp"
#include "seglog/committer.hpp"

namespace nimbus::bridge {

// Where a bridge was declared: the config file (read-only over the API) or the API (stored in
// the database, bridges_api.hpp).
enum class bridge_source : std::uint8_t { file, api };
std::string_view to_string(bridge_source source);

// One bridge as the API shows it.
struct bridge_view {
  mqtt_bridge config;
  bridge_source source = bridge_source::file;
  std::int64_t created_ms = 0;  // API bridges: when created (Unix ms); 0 for the file's
  std::string queue_dir;        // the queue's directory, under the service's
  link_status status;
};

class service {
 public:
  service(broker::broker& broker, core::clock& clock, std::filesystem::path dir);
  ~service();  // stop() first
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  // A bridge from the config (or restored from the database: source api, with its stored queue
  // directory; empty: <name>), its link on `loop`, started by start(): opens its queue and
  // checks its files (throws std::invalid_argument naming the bridge). A name already taken
  // throws too.
  void add(mqtt_bridge config, boost::asio::io_context& loop,
           bridge_source source = bridge_source::file, std::int64_t created_ms = 0,
           std::string queue_dir = {});
  // A [pubsub_bridges.<name>] from the config (pubsub_link.hpp); `local`: this server's Pub/Sub
  // (target = "local"). Throws as add().
  void add(pubsub_bridge config, pubsub::service* local, boost::asio::io_context& loop);
  void start();
  void stop();

  // ---- run time (a control thread; one change at a time)

  // A name for the queue directory of a new API bridge called `name`: `name` itself unless
  // something is there (a retired link's directory, or one a previous run left), else
  // `name~<created_ms>` (`~` is not allowed in bridge names, so it cannot be another's).
  std::string fresh_queue_dir(const std::string& name, std::int64_t created_ms) const;
  // Adds an API bridge and starts its link at once (if the service runs). Throws as add().
  void add_runtime(mqtt_bridge config, boost::asio::io_context& loop, std::int64_t created_ms,
                   std::string queue_dir);

  enum class remove_status { removed, not_found, read_only, not_empty };
  struct remove_outcome {
    remove_status status = remove_status::not_found;
    forward_queue_stats queue;    // not_empty: what the queue holds
    std::uint64_t discarded = 0;  // removed: records discarded with the queue
  };
  // Removes an API bridge: refused (not_empty) while its queue holds messages unless `discard`.
  // The link is stopped, whatever reached its queue meanwhile is discarded and counted (so the
  // count stays exact even when a message slipped in after the check), and it is retired.
  remove_outcome remove(const std::string& name, bool discard);

  // ---- readers (any thread)

  bool has(const std::string& name) const;
  std::optional<bridge_view> find(const std::string& name) const;
  std::vector<bridge_view> list() const;  // by name
  std::vector<link_status> statuses() const;
  std::string prometheus_text() const;
  // Every `interval` (the broker's sys_interval; called each second): each bridge's figures,
  // retained, on $SYS/broker/bridges/<name>/... (state, received, forwarded, errors,
  // reconnects, queued/messages, queued/bytes, dropped).
  void publish_sys(std::chrono::seconds interval);

 private:
  struct entry {
    std::unique_ptr<mqtt_link> link;
    bridge_source source = bridge_source::file;
    std::int64_t created_ms = 0;
    std::string queue_dir;
  };
  struct retired_link {
    std::unique_ptr<mqtt_link> link;
    std::string queue_dir;
  };

  std::unique_ptr<mqtt_link> make_link(mqtt_bridge config, boost::asio::io_context& loop,
                                       const std::string& queue_dir);
  bridge_view view_of(const entry& e) const;

  broker::broker& broker_;
  core::clock& clock_;
  std::filesystem::path dir_;
  seglog::committer committer_;  // outlives the queues

  mutable std::mutex mutex_;
  std::vector<entry> links_;                                // mutex_
  std::vector<retired_link> retired_;                       // mutex_
  std::vector<std::unique_ptr<pubsub_link>> pubsub_links_;  // mutex_; fixed once started
  bool is_started_ = false;                                 // mutex_
  std::chrono::steady_clock::time_point last_sys_{};        // publish_sys's caller thread only
  std::atomic<std::uint64_t> deleted_{0};
  std::atomic<std::uint64_t> discarded_on_delete_{0};
};

}  // namespace nimbus::bridge
