#pragma once
// `nimbus bench`: drives an MQTT broker with many real clients over TCP or TLS and reports
// throughput, latency percentiles, losses and its own CPU use (the shadow scenario: device
// shadow updates per second and latency to /update/accepted). Multi-threaded: clients are
// spread over one event loop per thread so the generator is not the bottleneck.
#include <cstdint>
#include <string>

namespace nimbus::loadgen {

struct options {
  std::string scenario = "fanin";  // conn, fanin, fanout, p2p, shared, shadow
  std::string host = "127.0.0.1";
  std::uint16_t port = 1883;
  int version = 5;  // 4 (3.1.1) or 5
  int qos = 0;
  std::size_t payload_size = 64;
  double rate = 0;  // messages per second per publisher; 0: as fast as the window allows
  double duration = 10;
  double warmup = 1;  // seconds excluded from the figures
  int publishers = 50;
  int subscribers = 1;
  int connections = 1000;   // conn scenario
  double connect_rate = 0;  // conn scenario: connections per second; 0: as fast as possible
  int inflight = 100;       // QoS 1/2 window per publisher (flat out)
  int things = 1000;        // shadow scenario: thing i belongs to client i % shadow_clients
  int shadow_clients = 100;
  int shadow_inflight = 4;  // updates awaiting a reply per client, each on a different thing
  int threads = 0;          // 0: hardware concurrency
  bool tls = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string client_prefix = "bench";
  std::string topic_prefix = "bench";
  // fanin: subscribers subscribe to subscribe_prefix + "/#" (empty: topic_prefix); publishers
  // still publish to topic_prefix/<i>. Lets a subscriber see only a rule's republished copies.
  std::string subscribe_prefix;
  // Subscribers connect here (0: `port`): publishers to a bridge's edge, subscribers to its
  // remote, so a message is counted once it crossed the bridge.
  int subscribe_port = 0;
  // Publishers send a JSON sensor reading whose first member, "t", is the send time (ns) as 16
  // hex digits, instead of the binary stamp (payload_size is then a minimum).
  bool json_payload = false;
  bool persistent = false;  // subscribers keep their session (clean start 0, expiry 1 h)
  int broker_pid = 0;       // sample this process's resident memory (conn scenario)
  bool json = false;
  bool progress = true;
};

// Runs the scenario; prints the report (text or JSON) to stdout. Returns 0 when every QoS >= 1
// message was received and nothing failed, 1 otherwise, 2 for bad options.
int run(const options& opts);

}  // namespace nimbus::loadgen
