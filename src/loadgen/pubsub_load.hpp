#pragma once
// `nimbus bench pubsub`: drives a Pub/Sub service and reports publish and end-to-end rates and
// publish latency. Two targets: `grpc` (Nimbus, Google's emulator or any google.pubsub.v1 server
// on an insecure channel: Publish RPCs, StreamingPull with acks batched on the stream) and
// `jetstream` (a nats-server through libnats: async publishes, a durable pull consumer fetching
// in batches and acking each message), the peer bench/run compares Nimbus with. Three modes:
// flat out (publishers keep a window of unacknowledged messages full), fixed rate (--rate: one
// message per Publish, for latency), and fill (--messages: publish N, nobody pulls, for the
// server's memory with a backlog).
#include <cstddef>
#include <cstdint>
#include <string>

namespace nimbus::loadgen {

struct pubsub_options {
  std::string target = "grpc";  // grpc | jetstream
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;          // 0: the target's usual port (grpc 8085, jetstream 4222)
  int publishers = 4;              // threads, each with its own connection
  std::size_t batch = 100;         // messages per Publish RPC (jetstream: per burst of publishes)
  std::size_t payload_size = 100;  // bytes per message, at least 8 (the send time)
  std::size_t window = 1000;  // per publisher: messages sent and not yet acknowledged by the server
  int streams = 2;            // StreamingPull streams (jetstream: fetching consumers)
  std::int64_t max_outstanding = 10'000;  // per stream: max_outstanding_messages (jetstream: the
                                          // consumer's MaxAckPending is this times --streams)
  std::size_t ack_batch = 1000;  // grpc: acks per write (or every 5 ms); jetstream: Fetch batch
  double rate = 0;               // messages per second in total, one per Publish; 0: flat out
  double duration = 10;          // measured seconds (fill: the longest it may take)
  double warmup = 1;             // seconds before measuring
  std::uint64_t messages = 0;    // > 0: fill mode, publish this many with nobody pulling
  bool json = false;
  bool progress = true;
};

// Runs the load; prints the report (text or one JSON object) to stdout. Returns 0 when nothing
// failed and messages flowed, 1 otherwise, 2 for bad options.
int run_pubsub(const pubsub_options& opts);

}  // namespace nimbus::loadgen
