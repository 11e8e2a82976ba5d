#include "rules/actions/action.hpp"

#include "rules/actions/http.hpp"
#include "rules/actions/kinesis.hpp"
#include "rules/actions/republish.hpp"
#include "rules/actions/s3.hpp"
#include "rules/actions/timestream.hpp"

namespace nimbus::rules::actions {

namespace {

// An action type this server has no target for (lambda, sqs, dynamoDB, ...): kept verbatim in
// the rule, so GetTopicRule round-trips it, and counted as not executable when it would fire.
class stored_only final : public action {
 public:
  explicit stored_only(std::string type) : type_(std::move(type)) {}
  const std::string& type() const override { return type_; }
  bool executable(const runtime&) const override { return false; }
  void fire(const firing&, runtime&, completion done) const override {
    done(failure{failed_action_name(type_), {}, "This action type is not executed by Nimbus"});
  }

 private:
  std::string type_;
};

}  // namespace

std::string failed_action_name(std::string_view type) {
  std::string out(type);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z')
    out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out + "Action";
}

std::variant<std::unique_ptr<const action>, rule_error> parse_action(
    const std::string& type, const boost::json::object& body, const template_scope& scope,
    const std::string& where) {
  const std::string at = where + "." + type;
  if (type == "republish") return republish::parse(body, scope, at);
  if (type == "http") return http::parse(body, scope, at);
  if (type == "s3") return s3::parse(body, scope, at);
  if (type == "kinesis") return kinesis::parse(body, scope, at);
  if (type == "timestream") return timestream::parse(body, scope, at);
  return std::unique_ptr<const action>(std::make_unique<stored_only>(type));
}

}  // namespace nimbus::rules::actions
