#pragma once
// What an evaluation needs besides the statement and the payload: the message's metadata (for
// topic(), clientid(), timestamp() and the like) and the bounds that keep one evaluation cheap
// whatever the SQL and the payload hold. Plain values, filled by the rules service per message.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace nimbus::rules::sql {

struct limits {
  int max_depth = 64;  // JSON nesting of payloads and decoded values, nested SELECTs
  std::size_t max_output_bytes = 128 * 1024;  // the output, and any string built on the way
  // Memory the values of one evaluation may take besides the parsed payload. Copies (transform,
  // array literals, nested SELECTs) can multiply a payload without building any long string, and
  // nothing is freed before evaluate() returns, so this is what bounds them.
  std::size_t max_memory_bytes = 4 * 1024 * 1024;
  // Expressions evaluated (nested SELECTs multiply them); regular expression matching is
  // charged against the same budget, by the characters the matcher reads.
  std::size_t max_steps = 100000;
  // A longer regexp_* pattern makes the call Undefined; a longer literal one than the default
  // is a parse error.
  std::size_t max_regex_length = 256;
  // And so does a longer subject string: a search restarts at every offset, so its cost grows
  // with the square of the subject's length.
  std::size_t max_regex_input = 1024;
};

// What a message brings besides its payload.
struct message_context {
  std::string_view topic;
  std::string_view client_id;  // "n/a" for HTTP publishes
  std::string_view principal;  // certificate id, access key, ...
  std::string_view account_id;
  std::int64_t timestamp_ms = 0;  // timestamp(): when the broker received it
  std::string_view trace_id;      // empty: traceid() is Undefined (not an MQTT message)
  // get_thing_shadow(thing, [shadow,] roleArn): the shadow's get document JSON, or nullopt
  // (-> Undefined). An empty shadow_name is the classic shadow.
  std::function<std::optional<std::string>(std::string_view thing, std::string_view shadow_name)>
      thing_shadow;
};

// The evaluation broke a limit (the rule's errorAction gets the message); bad data is never an
// error here, it is Undefined, as in AWS.
struct eval_error {
  std::string message;
};

}  // namespace nimbus::rules::sql
