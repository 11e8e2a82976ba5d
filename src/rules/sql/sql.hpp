#pragma once
// AWS IoT SQL, the rules engine's dialect, as a sans-I/O core: parse a rule's statement once
// (parser.hpp), evaluate it per message (evaluator.hpp). The one header users include.
#include "rules/sql/context.hpp"    // IWYU pragma: export
#include "rules/sql/evaluator.hpp"  // IWYU pragma: export
#include "rules/sql/parser.hpp"     // IWYU pragma: export
#include "rules/sql/version.hpp"    // IWYU pragma: export
