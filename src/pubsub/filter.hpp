#pragma once
// Pub/Sub subscription filters: the AIP-160 subset Google accepts (attributes.KEY = "v", !=,
// attributes:KEY, hasPrefix(attributes.KEY, "p"), NOT / -, AND, OR, parentheses; AND and OR
// never mixed at one level), parsed once when a subscription is created and matched against
// each message's attributes. Sans-I/O and standard library only (the fuzzer builds it alone).
// A `filter` is an immutable value: safe to match from any number of threads at once. The
// accepted language, and where it departs from Google's docs, is in tests/filter_cases/README.md.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nimbus::pubsub {

// Why a filter was refused: what the API returns with INVALID_ARGUMENT.
struct filter_error {
  std::size_t position = 0;  // 0-based byte offset in the filter text
  std::string message;
};

class filter {
 public:
  static constexpr std::size_t max_length = 256;  // bytes, as Google
  static constexpr std::size_t max_depth = 64;    // nested parentheses and negations

  // Empty (or blank) text: matches everything.
  static std::variant<filter, filter_error> parse(std::string_view text);

  // Whether a message with these attributes (key -> value) is delivered.
  bool matches(const std::map<std::string, std::string, std::less<>>& attributes) const;

  const std::string& text() const { return text_; }

 private:
  friend class filter_parser;

  enum class node_kind : std::uint8_t {
    all_of,      // AND of children
    any_of,      // OR of children
    negation,    // NOT of its one child
    has_key,     // attributes:KEY
    equals,      // attributes.KEY = "value" (false when KEY is missing)
    not_equals,  // attributes.KEY != "value" (true when KEY is missing)
    has_prefix,  // hasPrefix(attributes.KEY, "value") (false when KEY is missing)
  };

  // Children come before their parent in nodes_, so the root is the last node.
  struct node {
    node_kind kind = node_kind::all_of;
    std::string key;
    std::string value;
    std::vector<std::uint32_t> children;
  };

  filter() = default;
  bool evaluate(std::uint32_t index,
                const std::map<std::string, std::string, std::less<>>& attributes) const;

  std::string text_;
  std::vector<node> nodes_;  // empty: matches everything
};

}  // namespace nimbus::pubsub
