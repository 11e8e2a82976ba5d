#pragma once
// A topic rule as AWS IoT's API has it (TopicRulePayload in, GetTopicRule's "rule" out), its
// validation, and its executable form: the parsed SQL and its actions, parsed by their types
// (actions/). Pure: no I/O, no locks.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "rules/actions/action.hpp"
#include "rules/rule_error.hpp"
#include "rules/sql/sql.hpp"

namespace nimbus::rules {

struct topic_rule {
  std::string name;
  std::string sql;
  std::string description;
  std::int64_t created_at = 0;  // epoch seconds
  bool disabled = false;
  std::string sql_version = "2016-03-23";  // what awsIotSqlVersion said ("beta" stays "beta")
  boost::json::array actions;              // verbatim, as given
  std::optional<boost::json::object> error_action;  // verbatim
};

// ^[a-zA-Z0-9_]{1,128}$
bool is_valid_rule_name(std::string_view name);
// awsIotSqlVersion: "2015-10-08", "2016-03-23", or "beta" (read as 2016-03-23).
std::optional<sql::sql_version> sql_version_of(std::string_view text);

// AWS's TopicRulePayload (CreateTopicRule/ReplaceTopicRule body) -> rule; validates: sql required
// and parses (sql_parse, "<parser message> at position <0-based offset>"), actions required, an
// array of 0..10 objects each with exactly one key whose value is an object (the same for
// errorAction), awsIotSqlVersion one of the three, rule name ^[a-zA-Z0-9_]{1,128}$, description
// <= 2048 characters, and the fields and templates of the action types Nimbus runs
// (invalid_request).
// created_at is left 0: the engine stamps it.
std::variant<topic_rule, rule_error> rule_from_payload(std::string name,
                                                       const boost::json::object& payload);
// GetTopicRule's "rule" object: {ruleName, sql, description, createdAt, actions, ruleDisabled,
// awsIotSqlVersion, errorAction?}. Also the stored form: rule_from_payload reads it back.
boost::json::object rule_to_json(const topic_rule& r);
// The FROM filter of a rule's SQL (ListTopicRules' topicPattern); empty when it does not parse.
std::string topic_pattern(const topic_rule& r);

// One action of a rule, parsed: its type (the action object's one key) and how it runs.
struct compiled_action {
  std::string type;
  std::unique_ptr<const actions::action> run;
};

struct compiled_rule {
  sql::statement statement;
  std::vector<compiled_action> actions;
  std::optional<compiled_action> error_action;
};

// The executable form of `r` (its SQL parsed in its version, its actions' templates parsed
// against its FROM filter), or why it cannot run (sql_parse, invalid_request).
std::variant<compiled_rule, rule_error> compile(const topic_rule& r);

}  // namespace nimbus::rules
