#include "web/stream_hub.hpp"

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <array>
#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <type_traits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/json_string.hpp"
#include "tsdb/dashboard_api.hpp"
#include "tsdb/query.hpp"

namespace nimbus::web {

namespace asio = boost::asio;
namespace json = boost::json;

struct stream_hub::message {
  stream_channel kind;
  std::string key;  // the device (fleet, device) or client id (presence)
  std::string text;
};

namespace {

constexpr std::size_t max_line = 16 * 1024;  // a client's subscribe line

// A field's value as JSON: numbers as numbers (non-finite ones as null), strings escaped.
void append_field(std::string& out, const tsdb::field_value& value) {
  std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          core::append_json_string(out, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          out += std::isfinite(v) ? json::serialize(json::value(v)) : std::string("null");
        } else {
          out += std::to_string(v);
        }
      },
      value);
}

std::string error_text(std::string_view what) {
  std::string out = R"({"channel":"error","message":)";
  core::append_json_string(out, what);
  out += "}";
  return out;
}

}  // namespace

// One /api/stream connection, on its stream's loop.
class stream_client : public std::enable_shared_from_this<stream_client> {
 public:
  stream_client(stream_hub& hub, std::unique_ptr<net::byte_stream> stream)
      : hub_(hub), stream_(std::move(stream)), executor_(stream_->executor()) {}

  asio::any_io_executor executor() const { return executor_; }

  void start(const std::string& hello) {
    send_now(hello);
    read();
  }

  void deliver(const std::vector<std::shared_ptr<const stream_hub::message>>& batch) {
    if (closed_) return;
    for (const auto& m : batch) {
      switch (m->kind) {
        case stream_channel::fleet:
          if (fleet_) note_fleet(m);
          break;
        case stream_channel::presence:
          if (fleet_) enqueue(m);
          break;
        case stream_channel::device:
          if (devices_.contains(m->key)) enqueue(m);
          break;
        case stream_channel::alerts:
          if (alerts_) enqueue(m);
          break;
        case stream_channel::bridges:
          if (bridges_) bridges_latest_ = m;
          break;
        case stream_channel::metrics:
          if (metrics_) metrics_latest_ = m;
          break;
      }
    }
    pump();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    watch(fleet_, false, hub_.fleet_watchers_);
    watch(bridges_, false, hub_.bridge_watchers_);
    watch(metrics_, false, hub_.metric_watchers_);
    hub_.device_watchers_.fetch_sub(devices_.size(), std::memory_order_relaxed);
    devices_.clear();
    stream_->close();
    hub_.remove(this);
  }

 private:
  void read() {
    stream_->async_read_some(asio::buffer(in_), [self = shared_from_this()](
                                                    boost::system::error_code ec, std::size_t n) {
      if (ec) return self->close();
      self->take(std::string_view(self->in_.data(), n));
      if (!self->closed_) self->read();
    });
  }

  // Lines of JSON: one subscribe or unsubscribe each.
  void take(std::string_view bytes) {
    if (closing_) return;
    line_.append(bytes);
    for (std::size_t end; (end = line_.find('\n')) != std::string::npos;) {
      on_line(std::string_view(line_).substr(0, end));
      line_.erase(0, end + 1);
    }
    if (line_.size() > max_line) {
      line_.clear();
      queue_.clear();
      enqueue(std::make_shared<const stream_hub::message>(stream_hub::message{
          stream_channel::alerts, {}, error_text("a line longer than 16 KiB; closing")}));
      closing_ = true;  // once that last message is out
    }
    pump();
  }

  void on_line(std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty()) return;
    boost::system::error_code ec;
    auto value = json::parse(line, ec);
    const json::object* request = ec ? nullptr : value.if_object();
    if (request == nullptr)
      return enqueue_text(error_text(
          R"(expected a JSON object per line: {"subscribe":[...]} or {"unsubscribe":[...]})"));
    for (const auto& [key, list] : *request) {
      const bool on = key == "subscribe";
      if (!on && key != "unsubscribe")
        return enqueue_text(
            error_text("unknown request \"" + std::string(key) + "\": subscribe or unsubscribe"));
      const json::array* names = list.if_array();
      if (names == nullptr)
        return enqueue_text(error_text("\"" + std::string(key) + "\" takes an array of channels"));
      for (const auto& name : *names) {
        const json::string* text = name.if_string();
        if (text == nullptr) return enqueue_text(error_text("a channel is a string"));
        if (auto refusal = set(*text, on)) return enqueue_text(error_text(*refusal));
      }
    }
  }

  std::optional<std::string> set(std::string_view name, bool on) {
    if (name == "fleet") {
      watch(fleet_, on, hub_.fleet_watchers_);
      if (!on) {
        fleet_order_.clear();
        fleet_latest_.clear();
      }
    } else if (name == "alerts") {
      alerts_ = on;
    } else if (name == "bridges") {
      // The current figures at once, then once a second.
      if (on && !bridges_) bridges_latest_ = hub_.sampled(stream_channel::bridges);
      watch(bridges_, on, hub_.bridge_watchers_);
    } else if (name == "metrics") {
      if (on && !metrics_) metrics_latest_ = hub_.sampled(stream_channel::metrics);
      watch(metrics_, on, hub_.metric_watchers_);
    } else if (name.starts_with("device:") && name.size() > 7) {
      std::string id(name.substr(7));
      if (!on) {
        if (devices_.erase(id) > 0) hub_.device_watchers_.fetch_sub(1, std::memory_order_relaxed);
      } else if (!devices_.contains(id)) {
        if (devices_.size() >= hub_.settings_.max_devices)
          return fmt::format("at most {} device channels per stream", hub_.settings_.max_devices);
        devices_.insert(std::move(id));
        hub_.device_watchers_.fetch_add(1, std::memory_order_relaxed);
      }
    } else {
      return "unknown channel \"" + std::string(name) +
             "\": fleet, alerts, bridges, metrics or device:<id>";
    }
    return std::nullopt;
  }

  static void watch(bool& flag, bool on, std::atomic<std::size_t>& watchers) {
    if (flag == on) return;
    flag = on;
    if (on)
      watchers.fetch_add(1, std::memory_order_relaxed);
    else
      watchers.fetch_sub(1, std::memory_order_relaxed);
  }

  void enqueue(const std::shared_ptr<const stream_hub::message>& m) {
    if (closing_) return;
    if (queue_.size() >= hub_.settings_.queue) {
      queue_.pop_front();
      dropped();
    }
    queue_.push_back(m);
  }

  // The newest reading per device, devices sent in the order they changed: a slow client skips
  // stale readings and no device waits behind others that keep changing. Bounded as the queue
  // is: past it the longest-waiting device is dropped (the client then refills from REST).
  void note_fleet(const std::shared_ptr<const stream_hub::message>& m) {
    if (closing_) return;
    auto [it, is_new] = fleet_latest_.try_emplace(m->key, m);
    if (!is_new) {
      it->second = m;
      return;
    }
    fleet_order_.push_back(&it->first);
    if (fleet_order_.size() > hub_.settings_.queue) {
      fleet_latest_.erase(fleet_latest_.find(*fleet_order_.front()));
      fleet_order_.pop_front();
      dropped();
    }
  }

  void dropped() {
    ++dropped_unreported_;
    hub_.dropped_.fetch_add(1, std::memory_order_relaxed);
  }

  void enqueue_text(std::string text) {
    enqueue(std::make_shared<const stream_hub::message>(
        stream_hub::message{stream_channel::alerts, {}, std::move(text)}));
    pump();
  }

  void send_now(const std::string& text) {
    queue_.push_front(std::make_shared<const stream_hub::message>(
        stream_hub::message{stream_channel::alerts, {}, text}));
    pump();
  }

  // One message in flight at a time: a slow client's backlog stays in its bounded queues. The
  // queue (points, alerts, presence) and the fleet take turns, so neither starves the other.
  void pump() {
    if (writing_ || closed_) return;
    if (closing_ && queue_.empty()) return close();
    std::shared_ptr<const stream_hub::message> next;
    const bool fleet_turn = !fleet_order_.empty() && (queue_.empty() || fleet_turn_);
    if (dropped_unreported_ > 0 && !closing_) {
      out_ = fmt::format(R"({{"channel":"dropped","count":{}}})", dropped_unreported_);
      dropped_unreported_ = 0;
    } else if (fleet_turn && !closing_) {
      auto it = fleet_latest_.find(*fleet_order_.front());
      next = std::move(it->second);
      fleet_order_.pop_front();
      fleet_latest_.erase(it);
      fleet_turn_ = false;
    } else if (!queue_.empty()) {
      next = std::move(queue_.front());
      queue_.pop_front();
      fleet_turn_ = true;
    } else if (bridges_latest_) {
      next = std::exchange(bridges_latest_, nullptr);
    } else if (metrics_latest_) {
      next = std::exchange(metrics_latest_, nullptr);
    } else {
      return;
    }
    if (next) {
      in_flight_ = std::move(next);
      buffers_.assign(1, asio::buffer(in_flight_->text));
    } else {
      in_flight_.reset();
      buffers_.assign(1, asio::buffer(out_));
    }
    writing_ = true;
    stream_->async_write(buffers_,
                         [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                           self->writing_ = false;
                           if (ec) return self->close();
                           self->hub_.sent_.fetch_add(1, std::memory_order_relaxed);
                           self->pump();
                         });
  }

  stream_hub& hub_;
  std::unique_ptr<net::byte_stream> stream_;
  asio::any_io_executor executor_;
  std::array<char, 4096> in_{};
  std::string line_;
  bool fleet_ = false, alerts_ = false, bridges_ = false, metrics_ = false;
  std::set<std::string, std::less<>> devices_;
  std::deque<std::shared_ptr<const stream_hub::message>> queue_;
  std::map<std::string, std::shared_ptr<const stream_hub::message>, std::less<>> fleet_latest_;
  std::deque<const std::string*> fleet_order_;  // keys of fleet_latest_ (stable in a std::map)
  bool fleet_turn_ = false;
  std::shared_ptr<const stream_hub::message> bridges_latest_, metrics_latest_, in_flight_;
  std::uint64_t dropped_unreported_ = 0;
  std::string out_;
  std::vector<asio::const_buffer> buffers_;
  bool writing_ = false;
  bool closing_ = false;  // a refusal is on its way out; close once it is sent
  bool closed_ = false;
};

stream_hub::stream_hub(stream_settings settings, std::string version, asio::io_context& sampler)
    : settings_(std::move(settings)),
      version_(std::move(version)),
      sampler_(sampler),
      timer_(sampler) {}

void stream_hub::set_sources(std::function<std::string()> bridges_json,
                             std::function<std::string()> metrics_json) {
  bridges_json_ = std::move(bridges_json);
  metrics_json_ = std::move(metrics_json);
}

stream_hub::~stream_hub() {
  stopped_ = true;
  timer_.cancel();  // the sampler's loop has stopped by now: nothing runs the timer's handler
}

bool stream_hub::has_room() const {
  return !stopped_.load() && client_count_.load() < settings_.max_clients;
}

void stream_hub::accept(std::unique_ptr<net::byte_stream> stream) {
  std::shared_ptr<stream_client> client;
  {
    std::lock_guard lock(mutex_);
    if (stopped_ || clients_.size() >= settings_.max_clients) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      stream->close();
      return;
    }
    client = std::make_shared<stream_client>(*this, std::move(stream));
    clients_.push_back(client);  // weak: the client's pending operations own it
    client_count_.store(clients_.size());
  }
  accepted_.fetch_add(1, std::memory_order_relaxed);
  std::string hello = R"({"channel":"hello","version":)";
  core::append_json_string(hello, version_);
  hello += "}";
  client->start(hello);
}

void stream_hub::remove(stream_client* client) {
  std::lock_guard lock(mutex_);
  std::erase_if(clients_, [client](const auto& weak) {
    auto live = weak.lock();
    return !live || live.get() == client;
  });
  client_count_.store(clients_.size());
}

void stream_hub::publish(std::vector<std::shared_ptr<const message>> batch) {
  if (batch.empty()) return;
  auto shared =
      std::make_shared<const std::vector<std::shared_ptr<const message>>>(std::move(batch));
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  for (const auto& weak : clients_)
    if (auto client = weak.lock())
      asio::post(client->executor(), [client, shared] { client->deliver(*shared); });
}

void stream_hub::observe(const tsdb::written_batch& batch) {
  // Ingest pays for messages only while someone watches the fleet or a device.
  const bool fleet = fleet_watchers_.load(std::memory_order_relaxed) > 0;
  const bool devices = device_watchers_.load(std::memory_order_relaxed) > 0;
  if ((!fleet && !devices) || stopped_) return;
  if (batch.database != settings_.database || batch.points == nullptr) return;
  std::vector<std::shared_ptr<const message>> out;
  for (const auto& p : *batch.points) {
    if (p.measurement != settings_.measurement || !p.timestamp_ns) continue;
    const std::string* device = nullptr;
    for (const auto& [key, value] : p.tags)
      if (key == settings_.device_tag) device = &value;
    if (device == nullptr) continue;
    const std::int64_t time_ns = *p.timestamp_ns;
    const std::string time = tsdb::format_rfc3339(time_ns);
    if (fleet) {
      std::map<std::string, tsdb::field_value> fields(p.fields.begin(), p.fields.end());
      std::string text = R"({"channel":"fleet","device_id":)";
      core::append_json_string(text, *device);
      text += R"(,"last_seen":)";
      core::append_json_string(text, time);
      text += R"(,"last_reading":)";
      text += tsdb::reading_json(*device, time_ns, fields);
      text += "}";
      out.push_back(std::make_shared<const message>(
          message{stream_channel::fleet, *device, std::move(text)}));
    }
    if (devices) {
      // By hand, as the fleet's: core's strings replace invalid UTF-8 (which would end a text
      // WebSocket in the browser).
      std::string text = R"({"channel":)";
      core::append_json_string(text, "device:" + *device);
      text += R"(,"time":)";
      core::append_json_string(text, time);
      text += fmt::format(R"(,"time_ms":{},"fields":{{)", time_ns / 1'000'000);
      bool first = true;
      for (const auto& [name, value] : p.fields) {
        if (!first) text += ',';
        first = false;
        core::append_json_string(text, name);
        text += ':';
        append_field(text, value);
      }
      text += "}}";
      out.push_back(std::make_shared<const message>(
          message{stream_channel::device, *device, std::move(text)}));
    }
  }
  publish(std::move(out));
}

void stream_hub::on_presence(const std::string& client_id, bool connected) {
  if (client_count_.load(std::memory_order_relaxed) == 0 || stopped_) return;
  std::string text = R"({"channel":"presence","client_id":)";
  core::append_json_string(text, client_id);
  text += connected ? R"(,"connected":true})" : R"(,"connected":false})";
  publish({std::make_shared<const message>(
      message{stream_channel::presence, client_id, std::move(text)})});
}

void stream_hub::on_alert(std::string_view event, const std::string& alert_json) {
  if (client_count_.load(std::memory_order_relaxed) == 0 || stopped_) return;
  std::string text = R"({"channel":"alerts","event":)";
  core::append_json_string(text, event);
  text += R"(,"alert":)" + alert_json + "}";
  publish({std::make_shared<const message>(message{stream_channel::alerts, {}, std::move(text)})});
}

void stream_hub::start() {
  asio::post(sampler_, [this] { arm_timer(); });
}

void stream_hub::arm_timer() {
  timer_.expires_after(settings_.sample_interval);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    sample();
    arm_timer();
  });
}

std::shared_ptr<const stream_hub::message> stream_hub::sampled(stream_channel kind) const {
  if (kind == stream_channel::bridges && bridges_json_)
    return std::make_shared<const message>(message{
        stream_channel::bridges, {}, R"({"channel":"bridges","bridges":)" + bridges_json_() + "}"});
  if (kind == stream_channel::metrics && metrics_json_)
    return std::make_shared<const message>(message{
        stream_channel::metrics, {}, R"({"channel":"metrics","metrics":)" + metrics_json_() + "}"});
  return nullptr;
}

void stream_hub::sample() {
  std::vector<std::shared_ptr<const message>> out;
  if (bridge_watchers_.load(std::memory_order_relaxed) > 0)
    if (auto m = sampled(stream_channel::bridges)) out.push_back(std::move(m));
  if (metric_watchers_.load(std::memory_order_relaxed) > 0)
    if (auto m = sampled(stream_channel::metrics)) out.push_back(std::move(m));
  publish(std::move(out));
}

void stream_hub::stop() {
  std::vector<std::shared_ptr<stream_client>> clients;
  {
    std::lock_guard lock(mutex_);
    if (stopped_.exchange(true)) return;
    for (const auto& weak : clients_)
      if (auto client = weak.lock()) clients.push_back(std::move(client));
  }
  asio::post(sampler_, [this] { timer_.cancel(); });
  for (const auto& client : clients) asio::post(client->executor(), [client] { client->close(); });
}

std::string stream_hub::prometheus_text() const {
  return fmt::format(
      "# HELP nimbus_dashboard_stream_clients Live-update WebSockets (/api/stream) open\n"
      "# TYPE nimbus_dashboard_stream_clients gauge\n"
      "nimbus_dashboard_stream_clients {}\n"
      "# HELP nimbus_dashboard_stream_messages_total Live updates sent to dashboards\n"
      "# TYPE nimbus_dashboard_stream_messages_total counter\n"
      "nimbus_dashboard_stream_messages_total {}\n"
      "# HELP nimbus_dashboard_stream_dropped_total Updates a slow dashboard lost (it refills "
      "from REST)\n"
      "# TYPE nimbus_dashboard_stream_dropped_total counter\n"
      "nimbus_dashboard_stream_dropped_total {}\n"
      "# HELP nimbus_dashboard_stream_refused_total Live-update connections refused "
      "(dashboard.max_stream_clients)\n"
      "# TYPE nimbus_dashboard_stream_refused_total counter\n"
      "nimbus_dashboard_stream_refused_total {}\n",
      client_count_.load(), sent_.load(), dropped_.load(), refused_.load());
}

}  // namespace nimbus::web
