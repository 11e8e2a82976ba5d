#pragma once
// AWS Signature Version 4 verification for the REST APIs, as botocore signs: the
// `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
// SignedHeaders=...,Signature=...` header with `X-Amz-Date`, or the presigned query string
// (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
// `X-Amz-Signature`). The canonical URI is the raw request path encoded once more (botocore
// double-encodes for every service but S3); query keys and values are re-encoded and sorted.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::iot {

struct signed_request {
  std::string method;
  std::string target;  // raw path and query exactly as received
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

// The outcome; on failure `status`, `error_type` (for x-amzn-ErrorType) and `message` say why:
//   403 MissingAuthenticationTokenException  no Authorization header or presigned query
//   403 IncompleteSignatureException          malformed Authorization / missing X-Amz-Date
//   403 UnrecognizedClientException           unknown access key id
//   403 InvalidSignatureException             signature mismatch, or clock skew > 15 minutes
//                                             ("Signature expired: ..."), or presigned expired
struct sigv4_result {
  bool ok = false;
  unsigned status = 403;
  std::string error_type;
  std::string message;
  // Filled from the credential scope when it could be parsed.
  std::string access_key_id;
  std::string region;
  std::string service;
};

// Looks up the secret for an access key id; nullopt when the key is unknown.
using secret_lookup = std::function<std::optional<std::string>(std::string_view access_key_id)>;

// How much of a request to check: all of it, or all that can be checked before its body is
// read (the form, credential scope, date and skew, and that the access key is ours), so a
// caller refused anyway is refused before it sends a body.
enum class sigv4_check { whole_request, before_body };

sigv4_result verify_sigv4(const signed_request& request, const secret_lookup& secret_for,
                          std::chrono::system_clock::time_point now,
                          std::chrono::seconds max_skew = std::chrono::minutes(15),
                          sigv4_check check = sigv4_check::whole_request);

// Hex SHA-256 and HMAC helpers shared with the tests.
std::string sha256_hex(std::string_view data);

}  // namespace nimbus::iot
