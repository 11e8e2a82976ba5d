#pragma once
// http {url, headers?, confirmationUrl?, auth?, batchConfig?}: the rule's output POSTed to a web
// endpoint from the runtime's event loop, retried with backoff when the failure may pass
// (connection errors, timeouts, 408, 429, 5xx). HTTPS with the system CA store; plain HTTP only to
// a loopback host, which is also what stands in for AWS's destination confirmation step.
// `auth` (SigV4 with an AWS role) cannot be honoured here: such an action is stored and not run.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "rules/actions/action.hpp"
#include "rules/templates.hpp"

namespace nimbus::rules::actions {

class http final : public action {
 public:
  static std::variant<std::unique_ptr<const action>, rule_error> parse(
      const boost::json::object& fields, const template_scope& scope, const std::string& where);

  const std::string& type() const override;
  bool asynchronous() const override { return true; }
  bool executable(const runtime&) const override { return !signs_requests_; }
  void fire(const firing& f, runtime& rt, completion done) const override;
  std::string resource(const firing& f) const override;

 private:
  http() = default;

  substitution_template url_;
  std::vector<std::pair<substitution_template, substitution_template>> headers_;
  bool signs_requests_ = false;  // auth.sigv4 given
};

// Whether `url` may be an http action's target: https, or http to a loopback host. Empty when
// it may, else why not.
std::string check_target_url(std::string_view url);

}  // namespace nimbus::rules::actions
