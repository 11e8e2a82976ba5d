#pragma once
// Runs queries off the HTTP loops: a few threads of their own and a bounded queue, so that a
// month-long InfluxQL or Flux query never holds up the MQTT-over-WebSocket, AWS API and write
// requests that share a loop with it. Past the queue, post() refuses and the route answers 503
// (InfluxDB's max-concurrent-queries). Thread-safe.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nimbus::tsdb {

class query_runner {
 public:
  query_runner(std::size_t threads, std::size_t max_queued);
  ~query_runner();  // stop()s
  query_runner(const query_runner&) = delete;
  query_runner& operator=(const query_runner&) = delete;

  // Queues `work`; false when max_queued are waiting already, or once stopping.
  bool post(std::function<void()> work);
  // Runs what is queued, then joins the threads; later posts are refused.
  void stop();

 private:
  void run();

  const std::size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // mutex_
  bool is_stopping_ = false;                 // mutex_
  std::vector<std::thread> threads_;
};

}  // namespace nimbus::tsdb
