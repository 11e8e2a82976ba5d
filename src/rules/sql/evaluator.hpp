#pragma once
// Runs a parsed statement against one message, as AWS IoT's rules engine does: WHERE first (the
// rule fires only when it is true), then the SELECT list over the payload. Sans-I/O and
// reentrant: the statement is shared, everything else lives in the call (an arena for the payload
// and the values, see evaluator.cpp), and the limits bound the work whatever the SQL and the
// payload. Bad data is Undefined, never an error; only a broken limit is.
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "rules/sql/ast.hpp"
#include "rules/sql/context.hpp"

namespace nimbus::rules::sql {

// nullopt: the rule does not fire (WHERE false, Undefined or not a Boolean).
// A string: the output payload: a compact JSON object for a SELECT list; for SELECT VALUE the
// value's JSON ("" for Undefined, as AWS serializes it); the payload's own bytes for SELECT * or
// SELECT VALUE * of a payload that is not JSON.
std::variant<std::optional<std::string>, eval_error> evaluate(const statement& s,
                                                              std::string_view payload,
                                                              const message_context& ctx,
                                                              const limits& bounds = {});

}  // namespace nimbus::rules::sql
