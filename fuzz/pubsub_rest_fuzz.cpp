// Pub/Sub's REST input: a request body of arbitrary bytes, parsed as proto3 JSON into the
// request type the first byte picks (as rest.cpp parses every body: protobuf's JSON mapping),
// then checked as the service checks a request before it looks anything up (validate.hpp,
// names.hpp, the filter). Nothing may crash, hang or leak, and the promises must hold: a refusal
// is an error status with a message; a subscription normalise_subscription accepts has its
// defaults filled in and is accepted again (normalising twice changes nothing); what parses
// prints back to JSON that parses to the same message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include "google/pubsub/v1/pubsub.pb.h"
#include "pubsub/names.hpp"
#include "pubsub/validate.hpp"

namespace v1 = google::pubsub::v1;
namespace json_util = google::protobuf::util;
using namespace nimbus::pubsub;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

// A refusal says why.
void require_status(const status& s) {
  require(s.ok() || !s.message.empty());
}

template <class Message>
bool parse(const std::string& body, Message& message) {
  if (!json_util::JsonStringToMessage(body, &message).ok()) return false;
  // What parses prints, and the print parses back to the same message. Not so for a FieldMask:
  // protobuf's JSON form (lowerCamel paths joined by commas) does not map paths such as "",
  // "_x" or "a_1" back to themselves; those are the update handlers' to refuse ("Invalid
  // update_mask path"), so the mask is only printed.
  Message compared = message;
  if constexpr (requires { compared.clear_update_mask(); }) {
    std::string mask;
    (void)json_util::MessageToJsonString(message.update_mask(), &mask);
    compared.clear_update_mask();
  }
  std::string printed;
  require(json_util::MessageToJsonString(compared, &printed).ok());
  Message again;
  require(json_util::JsonStringToMessage(printed, &again).ok());
  require(json_util::MessageDifferencer::Equals(compared, again));
  return true;
}

void check_name(const std::string& name, resource_kind kind) {
  const auto parsed = parse_name(name, kind);
  if (const auto* s = std::get_if<status>(&parsed)) require(!s->ok() && !s->message.empty());
}

void check_subscription(v1::Subscription& s, bool creating) {
  check_name(s.name(), resource_kind::subscription);
  check_name(s.topic(), resource_kind::topic);
  const status first = normalise_subscription(s, creating);
  require_status(first);
  if (!first.ok()) return;
  require(s.ack_deadline_seconds() >= 10 && s.ack_deadline_seconds() <= 600);
  require(s.has_message_retention_duration() && s.has_expiration_policy());
  v1::Subscription again = s;
  require(normalise_subscription(again, creating).ok());
  require(json_util::MessageDifferencer::Equals(s, again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: {
      v1::Topic topic;
      if (parse(body, topic)) require_status(check_topic(topic));
      break;
    }
    case 1: {
      v1::Subscription subscription;
      if (parse(body, subscription)) check_subscription(subscription, true);
      break;
    }
    case 2: {
      v1::PublishRequest request;
      if (parse(body, request)) require_status(check_publish(request));
      break;
    }
    case 3: {
      v1::UpdateSubscriptionRequest request;
      if (parse(body, request)) check_subscription(*request.mutable_subscription(), false);
      break;
    }
    case 4: {
      v1::ModifyAckDeadlineRequest request;
      if (parse(body, request)) check_name(request.subscription(), resource_kind::subscription);
      break;
    }
    case 5: {
      v1::SeekRequest request;
      if (parse(body, request)) check_name(request.subscription(), resource_kind::subscription);
      break;
    }
    case 6: {
      v1::CreateSnapshotRequest request;
      if (parse(body, request)) {
        check_name(request.name(), resource_kind::snapshot);
        check_name(request.subscription(), resource_kind::subscription);
      }
      break;
    }
    default: {
      v1::PullRequest request;
      if (parse(body, request)) check_name(request.subscription(), resource_kind::subscription);
      break;
    }
  }
  return 0;
}
