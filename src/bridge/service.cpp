#include "bridge/service.hpp"

#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

namespace nimbus::bridge {

service::service(broker::broker& broker, core::clock& clock, std::filesystem::path dir)
    : broker_(broker),
      clock_(clock),
      dir_(std::move(dir)),
      // In the OS page cache once appended (a kill -9 keeps it), synced every second.
      committer_(seglog::committer::options{seglog::fsync_policy::interval,
                                            std::chrono::milliseconds(1000), 1}) {}

service::~service() {
  links_.clear();
}

void service::add(mqtt_bridge config, boost::asio::io_context& loop) {
  const std::string name = config.name;
  try {
    links_.push_back(std::make_unique<mqtt_link>(std::move(config), broker_, loop, committer_,
                                                 clock_, dir_ / name));
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("bridges.{}: {}", name, e.what()));
  }
}

void service::start() {
  for (auto& link : links_) link->start();
}

void service::stop() {
  for (auto& link : links_) link->stop();
}

std::vector<link_status> service::statuses() const {
  std::vector<link_status> out;
  for (const auto& link : links_) out.push_back(link->status());
  return out;
}

std::string service::prometheus_text() const {
  if (links_.empty()) return {};
  const auto all = statuses();
  std::string out;
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
