#pragma once
// Push subscriptions: what one delivery looks like as an HTTP request to the subscription's
// push_endpoint, and which answers acknowledge it. The sending (slow start, back-off, leases)
// is the service's; this is the wire shape only, so it is tested on its own.
//
// The default pubsub_wrapper POSTs JSON:
//   {"message":{"attributes":{..},"data":"<base64>","messageId":"..","message_id":"..",
//    "publishTime":"..","publish_time":"..","orderingKey":".."},
//    "subscription":"projects/p/subscriptions/s","deliveryAttempt":N}
// (both spellings of the id and time, as Google sends them; attributes, orderingKey and
// deliveryAttempt only when there are some). no_wrapper POSTs the data as it is; with
// write_metadata the message's attributes become headers, and x-goog-pubsub-* headers carry the
// subscription, id, publish time and ordering key.
#include <chrono>
#include <string>

#include "google/pubsub/v1/pubsub.pb.h"
#include "net/http_client.hpp"
#include "pubsub/subscription_engine.hpp"

namespace nimbus::pubsub {

net::http_client_request push_request(const google::pubsub::v1::Subscription& subscription,
                                      const delivery& d);

// 102, 200, 201, 202 and 204 acknowledge; anything else (or no answer within the ack deadline)
// is a failed delivery, retried.
bool is_push_acknowledgement(unsigned status);

// The pause before the next push to a subscription after `failures` failures in a row: 100 ms
// doubling, at most 60 s (Google's push back-off).
std::chrono::milliseconds push_backoff(unsigned failures);

}  // namespace nimbus::pubsub
