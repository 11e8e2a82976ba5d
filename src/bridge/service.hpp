#pragma once
// The bridges of a server (issue 14): one mqtt_link per [bridges.<name>], their queues under
// <data>/bridges/<name>/ on one seglog committer, their figures for /metrics.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "bridge/bridge_config.hpp"
#include "bridge/mqtt_link.hpp"
#include "broker/broker.hpp"
#include "core/clock.hpp"
#include "seglog/committer.hpp"

namespace nimbus::bridge {

class service {
 public:
  service(broker::broker& broker, core::clock& clock, std::filesystem::path dir);
  ~service();  // stop() first
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  // A bridge from the config, its link on `loop`: opens its queue and checks its files (throws
  // std::system_error or std::invalid_argument naming the bridge).
  void add(mqtt_bridge config, boost::asio::io_context& loop);
  void start();
  void stop();

  std::vector<link_status> statuses() const;
  std::string prometheus_text() const;

 private:
  broker::broker& broker_;
  core::clock& clock_;
  std::filesystem::path dir_;
  seglog::committer committer_;  // outlives the queues
  std::vector<std::unique_ptr<mqtt_link>> links_;
};

}  // namespace nimbus::bridge
