#pragma once
// One interface for every action type of a topic rule (republish, http, s3, ...): the engine
// fires a rule's actions through it without knowing their types, and a service adding an action
// (Pub/Sub's kinesis, time series' timestream) adds a file here. Actions are parsed once, when
// the rule is created or restored, and are immutable after: the threads running the rule share
// them.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/object.hpp>

#include "broker/message.hpp"
#include "rules/actions/fields.hpp"
#include "rules/rule_error.hpp"
#include "rules/sql/sql.hpp"

namespace nimbus::rules::actions {

class runtime;

// Why an action did not complete: one entry of the errorAction document's `failures`.
struct failure {
  std::string action;    // failedAction: "RepublishAction", "HttpAction", ...
  std::string resource;  // failedResource: the topic, the URL, the bucket
  std::string message;   // errorMessage
};

// How an action run ends: nullopt when it succeeded.
using completion = std::function<void(std::optional<failure>)>;

// One message a rule fired on, as its actions see it. Valid only during fire(): templates are
// expanded there, against the original message and its context, as AWS does.
struct firing {
  std::string_view rule_name;
  const std::string& publisher;  // msg->publisher of what the rule publishes: "$aws/rules/<name>"
  const broker::message& original;
  const sql::message_context& context;
  std::string_view output;  // the rule's SELECT result
};

class action {
 public:
  virtual ~action() = default;
  // The action object's key: "republish", "http", ...
  virtual const std::string& type() const = 0;
  // Whether it runs off the publisher's thread, taking a place in the rule's bounded queue.
  virtual bool asynchronous() const { return false; }
  // Whether this server can run it: a type it only stores, or whose target service is not
  // there, cannot.
  virtual bool executable(const runtime&) const { return true; }
  // Runs the action for one message and calls `done` exactly once: inline, or later on the
  // runtime's threads. Only called when executable().
  virtual void fire(const firing& f, runtime& rt, completion done) const = 0;
  // failedResource for a run that could not start (the rule's queue was full).
  virtual std::string resource(const firing&) const { return {}; }
};

// AWS's failedAction for a type: "republish" -> "RepublishAction".
std::string failed_action_name(std::string_view type);

// The action `type` with its fields `body` (the value under the action object's one key), or
// why it is refused. Types Nimbus does not know are kept as stored-only actions.
std::variant<std::unique_ptr<const action>, rule_error> parse_action(
    const std::string& type, const boost::json::object& body, const template_scope& scope,
    const std::string& where);

}  // namespace nimbus::rules::actions
