#pragma once
// kinesis {roleArn, streamName, partitionKey?}: the rule's output as a record of a built-in
// Pub/Sub topic (streamName is the topic id, partitionKey the ordering key). Runs once the
// Pub/Sub service gives the runtime its stream sink; until then it is stored and not run.
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "rules/actions/action.hpp"
#include "rules/templates.hpp"

namespace nimbus::rules::actions {

class kinesis final : public action {
 public:
  static std::variant<std::unique_ptr<const action>, rule_error> parse(
      const boost::json::object& fields, const template_scope& scope, const std::string& where);

  const std::string& type() const override;
  bool asynchronous() const override { return true; }
  bool executable(const runtime& rt) const override;
  void fire(const firing& f, runtime& rt, completion done) const override;
  std::string resource(const firing&) const override { return stream_; }

 private:
  kinesis() = default;

  std::string stream_;
  std::optional<substitution_template> partition_key_;
};

}  // namespace nimbus::rules::actions
