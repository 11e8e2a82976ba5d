#pragma once
// timestream {roleArn, databaseName, tableName, dimensions[{name, value}], timestamp?{value,
// unit}}: the rule's output as a point of the built-in time-series store (tableName is the
// measurement, dimensions the tags, the output's numeric fields the fields). Runs once the
// time-series store gives the runtime its sink; until then it is stored and not run.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "rules/actions/action.hpp"
#include "rules/templates.hpp"

namespace nimbus::rules::actions {

class timestream final : public action {
 public:
  static std::variant<std::unique_ptr<const action>, rule_error> parse(
      const boost::json::object& fields, const template_scope& scope, const std::string& where);

  const std::string& type() const override;
  bool asynchronous() const override { return true; }
  bool executable(const runtime& rt) const override;
  void fire(const firing& f, runtime& rt, completion done) const override;
  std::string resource(const firing&) const override { return database_; }

 private:
  timestream() = default;

  std::string database_;
  std::string table_;
  std::vector<std::pair<std::string, substitution_template>> dimensions_;
  std::optional<substitution_template> time_value_;
  std::int64_t ns_per_unit_ = 1'000'000;  // MILLISECONDS, AWS's default
};

}  // namespace nimbus::rules::actions
