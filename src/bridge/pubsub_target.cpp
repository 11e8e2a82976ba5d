#include "bridge/pubsub_target.hpp"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "google/pubsub/v1/pubsub.grpc.pb.h"

namespace nimbus::bridge {

namespace {

using namespace std::chrono_literals;

// A local pull waits this long at most: the service cannot cancel a waiting pull, so a link
// stopped meanwhile leaves it behind for no longer than this.
constexpr std::chrono::milliseconds local_pull_wait = 5s;
// Beyond the server's own wait for a Pull (Nimbus: 30 s), so that it answers first: a Pull the
// client gave up on may still lease messages, which then come back only after their deadline.
constexpr auto pull_timeout = 60s;
constexpr auto call_timeout = 30s;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::system_error(errno, std::generic_category(), "cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class local_target final : public pubsub_target {
 public:
  explicit local_target(pubsub::service& service) : service_(service) {}

  void publish(const v1::PublishRequest& request,
               pubsub::reply<v1::PublishResponse> done) override {
    service_.publish(request, std::move(done));
  }
  void pull(const v1::PullRequest& request, pubsub::reply<v1::PullResponse> done) override {
    service_.pull(request, local_pull_wait, std::move(done));
  }
  void acknowledge(const v1::AcknowledgeRequest& request,
                   pubsub::reply<pubsub::empty> done) override {
    service_.acknowledge(request, std::move(done));
  }
  void modify_ack_deadline(const v1::ModifyAckDeadlineRequest& request,
                           pubsub::reply<pubsub::empty> done) override {
    service_.modify_ack_deadline(request, std::move(done));
  }
  void cancel() override {}
  std::string describe() const override { return "local"; }

 private:
  pubsub::service& service_;
};

// The calls in flight of a gRPC target, shared with their callbacks (which may run after the
// target is gone) so that cancel() reaches them and the target's destructor can wait for them.
struct call_registry {
  std::mutex mutex;
  std::condition_variable idle;
  std::set<grpc::ClientContext*> calls;  // mutex
  bool is_cancelled = false;             // mutex
};

// One unary call: its context, request and response live until gRPC has answered.
template <class Request, class Response>
struct unary_call {
  grpc::ClientContext context;
  Request request;
  Response response;
  pubsub::reply<Response> done;
};

pubsub::status from_grpc(const grpc::Status& s) {
  // gRPC's codes are google.rpc.Code's.
  return pubsub::status::error(static_cast<pubsub::code>(s.error_code()), s.error_message());
}

class grpc_target final : public pubsub_target {
 public:
  grpc_target(const pubsub_bridge& config, std::shared_ptr<grpc::ChannelCredentials> credentials,
              std::string token)
      : description_((config.tls ? "grpcs://" : "grpc://") + endpoint_of(config.remote)),
        authorization_(token.empty() ? std::string() : "Bearer " + token) {
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(-1);  // a Pull answer is as large as what it leases
    // gRPC's own reconnection grows to 120 s; the link's retries would find it still down.
    arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 1000);
    arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
    auto channel =
        grpc::CreateCustomChannel(endpoint_of(config.remote), std::move(credentials), arguments);
    publisher_ = v1::Publisher::NewStub(channel);
    subscriber_ = v1::Subscriber::NewStub(channel);
  }

  ~grpc_target() override {
    cancel();
    std::unique_lock lock(registry_->mutex);
    registry_->idle.wait_for(lock, 10s, [this] { return registry_->calls.empty(); });
  }

  void publish(const v1::PublishRequest& request,
               pubsub::reply<v1::PublishResponse> done) override {
    start(request, call_timeout, std::move(done), [this](auto& c, auto callback) {
      publisher_->async()->Publish(&c.context, &c.request, &c.response, std::move(callback));
    });
  }
  void pull(const v1::PullRequest& request, pubsub::reply<v1::PullResponse> done) override {
    start(request, pull_timeout, std::move(done), [this](auto& c, auto callback) {
      subscriber_->async()->Pull(&c.context, &c.request, &c.response, std::move(callback));
    });
  }
  void acknowledge(const v1::AcknowledgeRequest& request,
                   pubsub::reply<pubsub::empty> done) override {
    start(request, call_timeout, std::move(done), [this](auto& c, auto callback) {
      subscriber_->async()->Acknowledge(&c.context, &c.request, &c.response, std::move(callback));
    });
  }
  void modify_ack_deadline(const v1::ModifyAckDeadlineRequest& request,
                           pubsub::reply<pubsub::empty> done) override {
    start(request, call_timeout, std::move(done), [this](auto& c, auto callback) {
      subscriber_->async()->ModifyAckDeadline(&c.context, &c.request, &c.response,
                                              std::move(callback));
    });
  }

  void cancel() override {
    std::lock_guard lock(registry_->mutex);
    registry_->is_cancelled = true;
    for (auto* context : registry_->calls) context->TryCancel();
  }

  std::string describe() const override { return description_; }

 private:
  static std::string endpoint_of(const host_port& remote) {
    const bool is_ipv6 = remote.host.find(':') != std::string::npos;
    return (is_ipv6 ? "[" + remote.host + "]" : remote.host) + ":" + std::to_string(remote.port);
  }

  // Starts one call through `invoke(call, callback)`; `done` gets its answer on gRPC's thread.
  template <class Request, class Response, class Invoke>
  void start(const Request& request, std::chrono::seconds timeout, pubsub::reply<Response> done,
             Invoke invoke) {
    auto* c = new unary_call<Request, Response>{{}, request, {}, std::move(done)};
    c->context.set_deadline(std::chrono::system_clock::now() + timeout);
    if (!authorization_.empty()) c->context.AddMetadata("authorization", authorization_);
    {
      std::lock_guard lock(registry_->mutex);
      if (registry_->is_cancelled) {
        auto answer = std::move(c->done);
        delete c;
        answer(pubsub::status::error(pubsub::code::cancelled, "the bridge is stopping"), {});
        return;
      }
      registry_->calls.insert(&c->context);
    }
    // The callback touches the registry, never the target, which may be gone by then.
    invoke(*c, [registry = registry_, c](grpc::Status status) {
      auto answer = std::move(c->done);
      Response response = std::move(c->response);
      {
        std::lock_guard lock(registry->mutex);
        registry->calls.erase(&c->context);
        delete c;
        registry->idle.notify_all();
      }
      answer(status.ok() ? pubsub::status{} : from_grpc(status), std::move(response));
    });
  }

  const std::string description_;
  const std::string authorization_;  // "Bearer <token>", or empty
  std::unique_ptr<v1::Publisher::Stub> publisher_;
  std::unique_ptr<v1::Subscriber::Stub> subscriber_;
  std::shared_ptr<call_registry> registry_ = std::make_shared<call_registry>();
};

}  // namespace

std::unique_ptr<pubsub_target> make_pubsub_target(const pubsub_bridge& config,
                                                  pubsub::service* local) {
  if (config.is_local) {
    if (local == nullptr)
      throw std::invalid_argument("target = \"local\" needs this server's Pub/Sub service");
    return std::make_unique<local_target>(*local);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (config.tls) {
    grpc::SslCredentialsOptions files;  // an empty CA: gRPC's default roots
    if (!config.files.cafile.empty()) files.pem_root_certs = read_file(config.files.cafile);
    if (!config.files.certfile.empty()) {
      files.pem_cert_chain = read_file(config.files.certfile);
      files.pem_private_key = read_file(config.files.keyfile);
    }
    credentials = grpc::SslCredentials(files);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::string token;
  if (!config.token_file.empty()) {
    token = read_file(config.token_file);
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
      token.pop_back();
  }
  return std::make_unique<grpc_target>(config, std::move(credentials), std::move(token));
}

}  // namespace nimbus::bridge
