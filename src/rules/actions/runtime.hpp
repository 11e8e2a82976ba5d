#pragma once
// What actions run with: the broker (republish), threads of their own so a slow target never
// holds a publisher (an event loop for HTTP and retry timers, a small pool for file writes),
// and the targets other services provide (kinesis -> Pub/Sub, timestream -> time series). One
// per engine; stopping it drops the runs not finished (actions are at most once, as AWS's).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "broker/broker.hpp"
#include "net/http_client.hpp"
#include "rules/actions/action.hpp"

namespace nimbus::rules::actions {

struct runtime_settings {
  std::filesystem::path objects_dir;  // s3: <data>/objects; empty: s3 actions are not executable
  std::chrono::milliseconds http_timeout{3000};  // one attempt, connection to response
  int http_attempts = 3;                         // in all, for errors worth retrying
  std::chrono::milliseconds retry_base{100};     // backoff before the 2nd attempt, doubling
};

// A kinesis action's record, for the Pub/Sub service: streamName is the topic id,
// partitionKey the ordering key.
struct stream_record {
  std::string stream;
  std::string data;
  std::string partition_key;
};
using stream_sink = std::function<void(stream_record, completion)>;

// A timestream action's record, for the time-series store: the SELECT output's numeric fields
// are the measures.
struct timestream_record {
  std::string database;
  std::string table;
  std::vector<std::pair<std::string, std::string>> dimensions;
  std::string output;
  std::int64_t time_ns = 0;
};
using timestream_sink = std::function<void(timestream_record, completion)>;

class runtime {
 public:
  runtime(broker::broker& bus, runtime_settings settings);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  broker::broker& bus() { return bus_; }
  const runtime_settings& settings() const { return settings_; }
  net::http_client& http() { return *http_; }
  // The actions' event loop: HTTP exchanges, retry timers.
  boost::asio::io_context& io() { return *io_; }
  // Runs `work` on a thread that may block (file writes): never a publisher's, never io()'s.
  void run_blocking(std::function<void()> work);

  // Set by the service that takes these records, before the engine starts.
  void send_streams_to(stream_sink sink) { streams_ = std::move(sink); }
  void send_timestream_to(timestream_sink sink) { timestream_ = std::move(sink); }
  const stream_sink& streams() const { return streams_; }
  const timestream_sink& timestream() const { return timestream_; }

  // Stops the threads; work not done is dropped. The destructor calls it.
  void stop();

 private:
  struct blocking_pool;

  broker::broker& bus_;
  const runtime_settings settings_;
  stream_sink streams_;
  timestream_sink timestream_;
  std::unique_ptr<boost::asio::io_context> io_;  // gone before http_: its pending exchanges first
  std::unique_ptr<net::http_client> http_;
  std::unique_ptr<blocking_pool> blocking_;
  std::thread io_thread_;
};

}  // namespace nimbus::rules::actions
