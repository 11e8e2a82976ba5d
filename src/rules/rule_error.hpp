#pragma once
// Why a rule (or one of its actions) was refused: what the rule API answers with.
#include <string>

namespace nimbus::rules {

struct rule_error {
  enum class kind { invalid_request, sql_parse, already_exists, not_found, conflict };
  kind what;
  std::string message;
};

}  // namespace nimbus::rules
