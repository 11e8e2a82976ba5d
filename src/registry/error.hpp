#pragma once
// What the registry refuses, in its own terms: a code and AWS's message. Only the HTTP surface
// (iot/aws_http) knows which status and x-amzn-ErrorType each code is sent as.
#include <exception>
#include <string>
#include <utility>

namespace nimbus::registry {

enum class errc {
  invalid_request,          // the model does not allow it (names, limits, preconditions)
  not_found,                // a named resource does not exist
  already_exists,           // carries the existing resource's id and ARN
  version_conflict,         // expectedVersion is not the current version
  delete_conflict,          // something still refers to the resource
  versions_limit_exceeded,  // a policy already has its 5 versions
  limit_exceeded,           // tags per resource, groups per thing, policies per target
  malformed_policy,         // a policy document that does not parse
  certificate_validation,   // a PEM that does not parse, has expired, or is not its CA's
  certificate_state,        // the certificate's (or its CA's) status forbids the change
  unavailable,              // an earlier change could not be stored: nothing more is accepted
};

// Thrown by the mutators (and by listings, for a bad page token or a missing parent) when a
// request is refused; a mutator that throws has changed nothing.
struct error : std::exception {
  error(errc c, std::string text, std::string id = {}, std::string arn = {})
      : code(c),
        message(std::move(text)),
        resource_id(std::move(id)),
        resource_arn(std::move(arn)) {}
  const char* what() const noexcept override { return message.c_str(); }

  errc code;
  std::string message;
  std::string resource_id;  // already_exists only
  std::string resource_arn;
};

}  // namespace nimbus::registry
