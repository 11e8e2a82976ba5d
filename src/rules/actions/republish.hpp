#pragma once
// republish {roleArn, topic, qos?, headers?}: the rule's output published on the broker, inline
// on the publisher's thread (the broker never blocks it). `$$aws/` names a reserved topic; a
// chain of rules republishing to each other ends after a few hops instead of looping.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "rules/actions/action.hpp"
#include "rules/templates.hpp"

namespace nimbus::rules::actions {

struct republish_fields {
  substitution_template topic;  // `$$aws/` at its start already read as `$aws/`
  std::uint8_t qos = 0;
  std::optional<std::uint8_t> payload_format_indicator;  // UNSPECIFIED_BYTES 0, UTF8_DATA 1
  std::optional<substitution_template> content_type;
  std::optional<substitution_template> response_topic;
  std::optional<substitution_template> correlation_data;  // base64 once expanded, as AWS
  std::optional<substitution_template> message_expiry;    // seconds once expanded
  std::vector<std::pair<substitution_template, substitution_template>> user_properties;
};

class republish final : public action {
 public:
  static std::variant<std::unique_ptr<const action>, rule_error> parse(
      const boost::json::object& fields, const template_scope& scope, const std::string& where);

  const std::string& type() const override;
  void fire(const firing& f, runtime& rt, completion done) const override;

 private:
  explicit republish(republish_fields fields) : fields_(std::move(fields)) {}
  republish_fields fields_;
};

}  // namespace nimbus::rules::actions
