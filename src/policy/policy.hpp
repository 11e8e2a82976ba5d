#pragma once
// AWS IoT policy documents: parsed once into a compiled form, then evaluated as AWS does —
// default deny, an explicit Deny beats any Allow, IAM wildcards in Action and Resource (`*` any
// run of characters including `/`, `?` one character; MQTT's `+` and `#` are literal),
// policy variables (`${iot:ClientId}` ...) substituted before matching, and IAM conditions.
// Sans-I/O and thread-safe to evaluate: a `document` is immutable after parsing.
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace nimbus::policy {

// Why a document was refused; `message` is what the API returns with MalformedPolicy.
struct parse_error {
  std::string message;
};

// The request-time facts a statement may refer to, by IAM key (`iot:ClientId`,
// `iot:Connection.Thing.ThingName`, `iot:Connection.Thing.Attributes[color]`,
// `iot:Connection.Thing.IsAttached`, `iot:Certificate.Subject.CommonName`, `aws:SourceIp`,
// `iot:ConnectAttributes` ...). Keys compare case-insensitively as in IAM. A key the request
// does not have yields nullopt: a variable that cannot be resolved makes its statement not
// match; a condition on it is false (true for `...IfExists` and for `Null: true`).
// Multi-valued keys (`iot:ConnectAttributes`, the `.List` certificate keys) return every value;
// a variable `${key}` uses the first.
class request_context {
 public:
  virtual ~request_context() = default;
  virtual std::optional<std::vector<std::string>> lookup(std::string_view key) const = 0;
};

// A request_context over a fixed list of (key, value) pairs; a key listed several times is
// multi-valued. Handy for tests and for the HTTP side.
class simple_context final : public request_context {
 public:
  simple_context() = default;
  simple_context(std::initializer_list<std::pair<std::string, std::string>> values)
      : values_(values) {}
  void set(std::string key, std::string value) {
    values_.emplace_back(std::move(key), std::move(value));
  }
  std::optional<std::vector<std::string>> lookup(std::string_view key) const override;

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

enum class effect { allow, deny };

// The outcome of one document, or of several combined.
enum class decision {
  not_applicable,  // no statement matched: an implicit deny
  allow,
  deny,  // an explicit Deny matched: wins over every Allow
};

class document {
 public:
  // Parses an IAM policy JSON text (`Version` "2012-10-17" or "2008-10-17", `Statement` object
  // or array; each statement has `Effect`, `Action` or `NotAction`, `Resource` or `NotResource`,
  // optional `Sid` and `Condition`). Enforces AWS IoT's limit of 2048 characters excluding
  // whitespace.
  static std::variant<document, parse_error> parse(std::string_view json);

  // `action` like "iot:Publish"; `resource` a full ARN like
  // "arn:aws:iot:us-east-1:000000000000:topic/a/b".
  decision evaluate(std::string_view action, std::string_view resource,
                    const request_context& context) const;

  document(const document&) = default;
  document& operator=(const document&) = default;
  document(document&&) noexcept = default;
  document& operator=(document&&) noexcept = default;
  ~document();

  struct statement;

 private:
  document() = default;
  std::shared_ptr<const std::vector<statement>> statements_;
};

// Combines the documents that apply to one principal: deny if any denies, else allow if any
// allows, else not_applicable.
decision evaluate_all(const std::vector<const document*>& documents, std::string_view action,
                      std::string_view resource, const request_context& context);

inline bool allowed(decision d) {
  return d == decision::allow;
}

}  // namespace nimbus::policy
