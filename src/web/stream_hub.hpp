#pragma once
// /api/stream (issue 16): the dashboard's one WebSocket for live updates, pushed as they happen,
// never polled. A client sends lines of JSON, `{"subscribe":["fleet","alerts","bridges",
// "metrics","device:<id>"]}` and `{"unsubscribe":[...]}`, and receives one JSON object per text
// message, each with its `channel`:
//
//   hello     {"version"} on connect
//   fleet     {"device_id","last_seen","last_reading"} per accepted point of a device (the
//             dashboard API's shapes), coalesced per device: a slow client gets the latest only
//   presence  {"client_id","connected"} (with fleet), from the broker's lifecycle events
//   device:ID {"time","time_ms","fields"} every point of that device
//   alerts    {"event","alert"} each lifecycle step once durable (alerts::service)
//   bridges   {"bridges":[...]} and metrics {"metrics":{...}}: sampled once a second while
//             someone watches (counters move with every message; a second is the display's pace)
//   dropped   {"count"} this client was too slow and lost older updates: refill from REST
//
// Producers (the store's committer, the bus, the alerts thread, the sampling timer) never wait
// for a client: each message is built once, shared, and posted to every client's loop, where a
// bounded queue per client keeps the newest (`queue` entries; coalesced channels one per key).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/byte_stream.hpp"
#include "tsdb/store.hpp"

namespace nimbus::web {

struct stream_settings {
  std::size_t max_clients = 256;
  std::size_t queue = 1'000;     // queued messages per client before the oldest go
  std::size_t max_devices = 64;  // device:<id> subscriptions per client
  // Where devices are (tsdb.devices_*): points of this measurement and database feed fleet and
  // device:<id>, by this tag.
  std::string database = "nimbus";
  std::string measurement = "sensor_reading";
  std::string device_tag = "device_id";
  std::chrono::milliseconds sample_interval{1'000};  // bridges and metrics
};

class stream_client;
enum class stream_channel : std::uint8_t { fleet, presence, device, alerts, bridges, metrics };

class stream_hub {
 public:
  // `sampler` runs the once-a-second sampling of the sources (set_sources).
  stream_hub(stream_settings settings, std::string version, boost::asio::io_context& sampler);
  ~stream_hub();
  stream_hub(const stream_hub&) = delete;
  stream_hub& operator=(const stream_hub&) = delete;

  // An upgraded /api/stream connection, on its loop. Refused (closed) past max_clients.
  void accept(std::unique_ptr<net::byte_stream> stream);
  // Whether another client may connect now (checked at the upgrade, to answer 503 instead).
  bool has_room() const;

  // ---- producers (any thread, never blocking)
  void observe(const tsdb::written_batch& batch);
  void on_presence(const std::string& client_id, bool connected);
  void on_alert(std::string_view event, const std::string& alert_json);

  // What bridges and metrics send: JSON text of an array and of an object, built only while a
  // client watches them. Before start().
  void set_sources(std::function<std::string()> bridges_json,
                   std::function<std::string()> metrics_json);
  void start();  // the sampling timer
  void stop();   // closes every client; producers are ignored from then on

  std::string prometheus_text() const;

 private:
  friend class stream_client;
  struct message;  // one update, shared by every client it goes to
  void publish(std::vector<std::shared_ptr<const message>> batch);
  void remove(stream_client* client);
  void sample();
  // The current bridges or metrics figures as a message (null without a source).
  std::shared_ptr<const message> sampled(stream_channel kind) const;
  void arm_timer();

  const stream_settings settings_;
  const std::string version_;
  boost::asio::io_context& sampler_;
  boost::asio::steady_timer timer_;
  std::function<std::string()> bridges_json_, metrics_json_;

  mutable std::mutex mutex_;
  std::vector<std::weak_ptr<stream_client>> clients_;
  std::atomic<std::size_t> client_count_{0};
  std::atomic<bool> stopped_{false};
  // Clients watching each kind: producers build only what someone will receive.
  std::atomic<std::size_t> fleet_watchers_{0}, device_watchers_{0};
  std::atomic<std::size_t> bridge_watchers_{0}, metric_watchers_{0};

  std::atomic<std::uint64_t> sent_{0}, dropped_{0}, refused_{0}, accepted_{0};
};

}  // namespace nimbus::web
