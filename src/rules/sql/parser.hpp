#pragma once
// IoT SQL text to a statement (ast.hpp): SELECT [VALUE] items FROM 'topic/filter' [WHERE cond],
// as AWS IoT's rules engine reads it in the version the rule names. Function names resolve
// against the table in functions.hpp here, once; an unknown or unoffered function, a construct
// the version lacks, or a bad topic filter is a parse error, as AWS refuses such a rule at
// creation. Pure: text in, statement or {position, message} out; never throws on input.
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "rules/sql/ast.hpp"
#include "rules/sql/version.hpp"

namespace nimbus::rules::sql {

struct parse_error {
  std::size_t position = 0;  // 0-based offset in the SQL text
  std::string message;
};

std::variant<statement, parse_error> parse(std::string_view sql,
                                           sql_version version = sql_version::v2016_03_23);

// An MQTT topic filter: not empty, '#' only as the whole last level, '+' only as a whole level.
bool is_valid_topic_filter(std::string_view filter);

}  // namespace nimbus::rules::sql
