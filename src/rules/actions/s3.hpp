#pragma once
// s3 {roleArn, bucketName, key, cannedAcl?}: the rule's output stored as an object under the data
// directory, <data>/objects/<bucketName>/<key>, so the tutorial's "store it in S3" works without
// AWS. Written atomically (temporary file, fsync, rename) on the runtime's blocking threads; an
// existing object is replaced, as a PUT does. The key is a template and may never leave its
// bucket's folder.
#include <memory>
#include <string>
#include <variant>

#include "rules/actions/action.hpp"
#include "rules/templates.hpp"

namespace nimbus::rules::actions {

class s3 final : public action {
 public:
  static std::variant<std::unique_ptr<const action>, rule_error> parse(
      const boost::json::object& fields, const template_scope& scope, const std::string& where);

  const std::string& type() const override;
  bool asynchronous() const override { return true; }
  bool executable(const runtime& rt) const override;
  void fire(const firing& f, runtime& rt, completion done) const override;
  std::string resource(const firing&) const override { return bucket_; }

 private:
  s3() = default;

  std::string bucket_;
  substitution_template key_;
};

// S3's bucket naming rules: 3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit.
bool is_valid_bucket_name(std::string_view name);
// Empty when `key` names a file inside its bucket's folder, else why not.
std::string check_object_key(std::string_view key);

}  // namespace nimbus::rules::actions
