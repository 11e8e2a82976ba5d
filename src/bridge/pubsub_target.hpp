#pragma once
// Where an MQTT <-> Pub/Sub bridge publishes and pulls (issue 14): this server's own
// pubsub::service (target = "local") or a google.pubsub.v1 server over gRPC ("grpc://" as
// PUBSUB_EMULATOR_HOST, "grpcs://" with TLS: another Nimbus, the emulator, Google). The four
// calls the bridge needs, in the service's types. Every call answers once, on the target's
// thread (the service's, gRPC's), with one exception the caller must bear: the local service
// stopped first never answers. Owned by the bridge's link; thread-safe.
#include <memory>
#include <string>

#include "bridge/bridge_config.hpp"
#include "pubsub/service.hpp"

namespace nimbus::bridge {

namespace v1 = pubsub::v1;

class pubsub_target {
 public:
  virtual ~pubsub_target() = default;

  virtual void publish(const v1::PublishRequest& request,
                       pubsub::reply<v1::PublishResponse> done) = 0;
  // Waits for messages (about 30 s at most) when there are none yet.
  virtual void pull(const v1::PullRequest& request, pubsub::reply<v1::PullResponse> done) = 0;
  virtual void acknowledge(const v1::AcknowledgeRequest& request,
                           pubsub::reply<pubsub::empty> done) = 0;
  virtual void modify_ack_deadline(const v1::ModifyAckDeadlineRequest& request,
                                   pubsub::reply<pubsub::empty> done) = 0;
  // The link is stopping: gRPC calls in flight are cancelled (they answer CANCELLED, later calls
  // too). The local service's calls cannot be: a waiting pull answers when its wait ends.
  virtual void cancel() = 0;
  // "local", "grpc://host:port", "grpcs://host:port": what the bridge's status shows.
  virtual std::string describe() const = 0;
};

// The bridge's target: `local` (which outlives it) for target = "local", else a gRPC channel
// built from the config (its CA, client certificate and token files read now). Throws
// std::system_error for a file it cannot read, std::invalid_argument when the config wants the
// local service and there is none.
std::unique_ptr<pubsub_target> make_pubsub_target(const pubsub_bridge& config,
                                                  pubsub::service* local);

}  // namespace nimbus::bridge
