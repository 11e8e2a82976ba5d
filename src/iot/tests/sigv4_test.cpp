#include "iot/sigv4.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <random>
#include <string>
#include <vector>

namespace nimbus::iot {
namespace {

using namespace std::chrono_literals;

// A request as it arrived on the wire, signed by botocore (see make_sigv4_vectors.py).
struct sigv4_vector {
  std::string name;
  std::string service;
  std::string region;
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool is_payload_signed;  // false: UNSIGNED-PAYLOAD, the body may change freely
  bool is_presigned;
};

const std::vector<sigv4_vector>& vectors() {
  static const std::vector<sigv4_vector> all = {
#include "sigv4_vectors.inc"
  };
  return all;
}

constexpr std::string_view access_key = "AKIDNIMBUSEXAMPLE";
constexpr std::string_view secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYNIMBUSKEY";

// 2026-11-26T09:00:00Z, when the vectors were signed.
const std::chrono::system_clock::time_point signed_at =
    std::chrono::sys_days{std::chrono::year{2026} / 11 / 26} + 9h;

std::optional<std::string> known_key(std::string_view id) {
  if (id == access_key) return std::string(secret_key);
  return std::nullopt;
}

std::optional<std::string> wrong_secret(std::string_view id) {
  if (id == access_key) return std::string("wJalrXUtnFEMI/K7MDENG+bPxRfiCYNIMBUSKEZ");
  return std::nullopt;
}

std::optional<std::string> no_keys(std::string_view) {
  return std::nullopt;
}

signed_request to_request(const sigv4_vector& vector) {
  return {vector.method, vector.target, vector.headers, vector.body};
}

sigv4_result verify(const signed_request& request,
                    std::chrono::system_clock::time_point now = signed_at + 1min,
                    const secret_lookup& lookup = known_key) {
  return verify_sigv4(request, lookup, now);
}

std::pair<std::string, std::string>* find_header(signed_request& request, std::string_view name) {
  for (auto& header : request.headers) {
    std::string lower = header.first;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == name) return &header;
  }
  return nullptr;
}

void expect_error(const sigv4_result& result, std::string_view error_type,
                  const std::string& context) {
  EXPECT_FALSE(result.ok) << context;
  EXPECT_EQ(result.status, 403U) << context;
  EXPECT_EQ(result.error_type, error_type) << context << ": " << result.message;
}

TEST(sigv4, sha256_hex_known_values) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(sigv4, botocore_vectors_verify) {
  ASSERT_GE(vectors().size(), 18U);
  for (const auto& vector : vectors()) {
    for (auto now : {signed_at, signed_at + 1min, signed_at - 14min, signed_at + 4min}) {
      const auto result = verify(to_request(vector), now);
      EXPECT_TRUE(result.ok) << vector.name << ": " << result.error_type << " " << result.message;
      EXPECT_EQ(result.access_key_id, access_key) << vector.name;
      EXPECT_EQ(result.region, vector.region) << vector.name;
      EXPECT_EQ(result.service, vector.service) << vector.name;
    }
  }
}

TEST(sigv4, unknown_key_is_unrecognized) {
  for (const auto& vector : vectors()) {
    const auto result = verify(to_request(vector), signed_at, no_keys);
    expect_error(result, "UnrecognizedClientException", vector.name);
    EXPECT_EQ(result.message, "The security token included in the request is invalid.");
    EXPECT_EQ(result.access_key_id, access_key) << vector.name;
    EXPECT_EQ(result.service, vector.service) << vector.name;
  }
  // A null lookup function knows no keys either.
  expect_error(verify(to_request(vectors().front()), signed_at, secret_lookup{}),
               "UnrecognizedClientException", "null lookup");
}

TEST(sigv4, before_body_checks_all_but_the_signature) {
  const auto before_body = [](const signed_request& request,
                              std::chrono::system_clock::time_point now,
                              const secret_lookup& lookup) {
    return verify_sigv4(request, lookup, now, std::chrono::minutes(15), sigv4_check::before_body);
  };
  for (const auto& vector : vectors()) {
    auto head = to_request(vector);
    head.body = {};  // not read yet
    auto accepted = before_body(head, signed_at + 1min, known_key);
    EXPECT_TRUE(accepted.ok) << vector.name << ": " << accepted.message;
    EXPECT_EQ(accepted.access_key_id, access_key) << vector.name;
    // A wrong secret shows only in the signature, which needs the body.
    EXPECT_TRUE(before_body(head, signed_at + 1min, wrong_secret).ok) << vector.name;
    expect_error(before_body(head, signed_at + 1min, no_keys), "UnrecognizedClientException",
                 vector.name);
    expect_error(before_body(head, signed_at + std::chrono::days(8), known_key),
                 "InvalidSignatureException", vector.name + " eight days late");
  }
  expect_error(
      before_body({"POST", "/things/x", {{"host", "localhost"}}, {}}, signed_at, known_key),
      "MissingAuthenticationTokenException", "unsigned");
}

TEST(sigv4, wrong_secret_is_invalid_signature) {
  for (const auto& vector : vectors()) {
    const auto result = verify(to_request(vector), signed_at, wrong_secret);
    expect_error(result, "InvalidSignatureException", vector.name);
    EXPECT_EQ(result.message,
              "The request signature we calculated does not match the signature you provided. "
              "Check your AWS Secret Access Key and signing method. Consult the service "
              "documentation for details.");
  }
}

TEST(sigv4, tampered_body_is_invalid_signature) {
  for (const auto& vector : vectors()) {
    auto request = to_request(vector);
    std::string body = vector.body + "x";
    request.body = body;
    const auto result = verify(request);
    if (vector.is_payload_signed) {
      expect_error(result, "InvalidSignatureException", vector.name);
    } else {
      EXPECT_TRUE(result.ok) << vector.name << " signs no payload: " << result.message;
    }
  }
}

TEST(sigv4, tampered_path_is_invalid_signature) {
  for (const auto& vector : vectors()) {
    auto request = to_request(vector);
    request.target.insert(1, "x");
    expect_error(verify(request), "InvalidSignatureException", vector.name);
    // Decoding the path once (what a router does) is not what was signed either.
    const auto at = vector.target.find("%2F");
    if (at < vector.target.find('?')) {
      request = to_request(vector);
      request.target.replace(at, 3, "/");
      expect_error(verify(request), "InvalidSignatureException", vector.name + " decoded");
    }
  }
}

TEST(sigv4, tampered_signed_header_is_invalid_signature) {
  for (const auto& vector : vectors()) {
    auto request = to_request(vector);
    auto* host = find_header(request, "host");
    ASSERT_NE(host, nullptr) << vector.name;
    host->second += "x";
    expect_error(verify(request), "InvalidSignatureException", vector.name);
  }
  // A signed header other than host and the date.
  const auto& principal = *std::find_if(vectors().begin(), vectors().end(), [](const auto& v) {
    return v.name == "attach_thing_principal_header";
  });
  auto request = to_request(principal);
  find_header(request, "x-amzn-principal")->second += "x";
  expect_error(verify(request), "InvalidSignatureException", principal.name);
  // A second copy of a signed header changes its canonical value.
  request = to_request(principal);
  request.headers.emplace_back("X-Amzn-Principal", "arn:aws:iot:us-east-1:000000000000:cert/evil");
  expect_error(verify(request), "InvalidSignatureException", principal.name + " duplicated");
}

TEST(sigv4, unsigned_headers_may_change) {
  for (const auto& vector : vectors()) {
    auto request = to_request(vector);
    request.headers.emplace_back("User-Agent", "something else");
    request.headers.emplace_back("X-Forwarded-For", "10.0.0.1");
    EXPECT_TRUE(verify(request).ok) << vector.name;
  }
}

TEST(sigv4, added_query_parameter_is_invalid_signature) {
  for (const auto& vector : vectors()) {
    auto request = to_request(vector);
    request.target += request.target.find('?') == std::string::npos ? "?extra=1" : "&extra=1";
    expect_error(verify(request), "InvalidSignatureException", vector.name);
  }
}

TEST(sigv4, query_is_order_independent_and_reencoded) {
  // The same parameters in another order and with equivalent encodings still verify: the
  // canonical form is rebuilt from decoded values.
  const auto& vector = *std::find_if(vectors().begin(), vectors().end(), [](const auto& v) {
    return v.name == "query_spaces_and_equals";
  });
  auto request = to_request(vector);
  request.target =
      "/things?flag&usePrefixAttributeValue=false&attributeValue=a%20b%3dc+d&attributeName=col%"
      "6Fur";
  const auto result = verify(request);
  EXPECT_TRUE(result.ok) << result.message;
}

// X-Amz-Expires of a presigned vector, 0 when absent.
std::chrono::seconds expires_of(const sigv4_vector& vector) {
  constexpr std::string_view name = "X-Amz-Expires=";
  const auto at = vector.target.find(name);
  if (at == std::string::npos) return 0s;
  return std::chrono::seconds{std::stol(vector.target.substr(at + name.size()))};
}

TEST(sigv4, clock_skew_beyond_fifteen_minutes) {
  for (const auto& vector : vectors()) {
    const auto late = verify(to_request(vector), signed_at + 16min);
    if (expires_of(vector) > 16min) {
      EXPECT_TRUE(late.ok) << vector.name << " lives " << expires_of(vector).count() << " s";
    } else {
      expect_error(late, "InvalidSignatureException", vector.name + " late");
      EXPECT_EQ(late.message.rfind("Signature expired: ", 0), 0U) << late.message;
    }
    const auto early = verify(to_request(vector), signed_at - 16min);
    expect_error(early, "InvalidSignatureException", vector.name + " early");
    EXPECT_EQ(early.message.rfind("Signature not yet current: ", 0), 0U) << early.message;
  }
  const auto& vector = vectors().front();
  EXPECT_TRUE(verify(to_request(vector), signed_at + 15min).ok);
  EXPECT_TRUE(verify(to_request(vector), signed_at - 15min).ok);
  EXPECT_EQ(verify(to_request(vector), signed_at + 1h).message,
            "Signature expired: 20261126T090000Z is now earlier than 20261126T094500Z "
            "(20261126T100000Z - 15 min.)");
  EXPECT_EQ(verify(to_request(vector), signed_at - 1h).message,
            "Signature not yet current: 20261126T090000Z is still later than 20261126T081500Z "
            "(20261126T080000Z + 15 min.)");
  // A custom window.
  EXPECT_FALSE(verify_sigv4(to_request(vector), known_key, signed_at + 6min, 5min).ok);
  EXPECT_TRUE(verify_sigv4(to_request(vector), known_key, signed_at + 4min, 5min).ok);
}

TEST(sigv4, presigned_expiry) {
  for (const auto& vector : vectors()) {
    if (!vector.is_presigned) continue;
    if (vector.target.find("X-Amz-Expires=300") != std::string::npos) {
      EXPECT_TRUE(verify(to_request(vector), signed_at + 5min).ok) << vector.name;
      const auto result = verify(to_request(vector), signed_at + 5min + 1s);
      expect_error(result, "InvalidSignatureException", vector.name);
      EXPECT_EQ(result.message,
                "Signature expired: 20261126T090500Z is now earlier than 20261126T090501Z "
                "(20261126T090000Z + 300 sec.)");
    }
    if (vector.target.find("X-Amz-Expires=900") != std::string::npos) {
      // Expiry, not the skew window, bounds a presigned URL's life.
      EXPECT_TRUE(verify_sigv4(to_request(vector), known_key, signed_at + 14min, 5min).ok);
    }
  }
}

TEST(sigv4, presigned_checks) {
  const auto& vector = *std::find_if(vectors().begin(), vectors().end(), [](const auto& v) {
    return v.name == "presigned_mqtt_websocket";
  });
  auto with_target = [&](std::string target) {
    auto request = to_request(vector);
    request.target = std::move(target);
    return verify(request);
  };
  auto replace = [&](std::string_view from, std::string_view to) {
    std::string target = vector.target;
    const auto at = target.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) target.replace(at, from.size(), to);
    return target;
  };
  expect_error(with_target(replace("X-Amz-Expires=300", "X-Amz-Expires=3600")),
               "InvalidSignatureException", "longer expiry");
  expect_error(with_target(replace("X-Amz-Expires=300", "X-Amz-Expires=999999")),
               "IncompleteSignatureException", "expiry over a week");
  expect_error(with_target(replace("X-Amz-Expires=300", "X-Amz-Expires=-1")),
               "IncompleteSignatureException", "negative expiry");
  expect_error(with_target(replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS2")),
               "IncompleteSignatureException", "algorithm");
  expect_error(with_target(replace("&X-Amz-SignedHeaders=host", "")),
               "IncompleteSignatureException", "no signed headers");
  expect_error(with_target(replace("&X-Amz-Date=20261126T090000Z", "")),
               "IncompleteSignatureException", "no date");
  expect_error(with_target(vector.target + "&X-Amz-Date=20261126T090000Z"),
               "IncompleteSignatureException", "repeated date");
  expect_error(with_target(replace("X-Amz-Date=20261126T090000Z", "X-Amz-Date=20261126T090001Z")),
               "InvalidSignatureException", "other date");
  // A token appended after signing is left out of the canonical query, as aws-iot-device-sdk
  // v1 expects; checking a token is the caller's business.
  EXPECT_TRUE(with_target(vector.target + "&X-Amz-Security-Token=abc").ok);
  auto request = to_request(vector);
  request.headers.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=x");
  expect_error(verify(request), "IncompleteSignatureException", "both forms");
}

TEST(sigv4, missing_authentication) {
  for (const auto& vector : vectors()) {
    if (vector.is_presigned) continue;
    auto request = to_request(vector);
    std::erase_if(request.headers, [](const auto& h) {
      return h.first == "Authorization" || h.first == "authorization";
    });
    const auto result = verify(request);
    expect_error(result, "MissingAuthenticationTokenException", vector.name);
    EXPECT_EQ(result.message, "Missing Authentication Token");
  }
  expect_error(verify({"GET", "/things?X-Amz-Signature=abc", {{"Host", "h"}}, ""}),
               "MissingAuthenticationTokenException", "signature only");
}

TEST(sigv4, missing_date_is_incomplete) {
  const auto& vector = vectors().front();
  auto request = to_request(vector);
  std::erase_if(request.headers, [](const auto& h) { return h.first == "X-Amz-Date"; });
  expect_error(verify(request), "IncompleteSignatureException", "no date");
  request.headers.emplace_back("X-Amz-Date", "2026-11-26T09:00:00Z");
  expect_error(verify(request), "IncompleteSignatureException", "extended format");
  request = to_request(vector);
  find_header(request, "x-amz-date")->second = "20261126T090001Z";
  expect_error(verify(request), "InvalidSignatureException", "different second");
  find_header(request, "x-amz-date")->second = "20261127T090000Z";
  expect_error(verify(request, signed_at + 24h), "InvalidSignatureException", "other day");
}

TEST(sigv4, date_header_fallback) {
  const auto& vector = *std::find_if(vectors().begin(), vectors().end(), [](const auto& v) {
    return v.name == "date_header_instead_of_x_amz_date";
  });
  auto request = to_request(vector);
  auto* date = find_header(request, "date");
  ASSERT_NE(date, nullptr);
  // The same instant written differently still gives the same string to sign, but the Date
  // header is itself signed, so only an identical value verifies.
  date->second = "Thu, 26 Nov 2026 10:00:00 +0100";
  expect_error(verify(request), "InvalidSignatureException", "other spelling");
  date->second = "not a date";
  expect_error(verify(request), "IncompleteSignatureException", "garbage date");
  date->second = "Thu, 26 Nov 2026 09:00:00 -0000";
  EXPECT_TRUE(verify(request).ok);
  expect_error(verify(request, signed_at + 20min), "InvalidSignatureException", "skew");
}

TEST(sigv4, malformed_authorization_is_incomplete) {
  const auto& vector = vectors().front();
  auto original = to_request(vector);
  const std::string good = find_header(original, "authorization")->second;
  const std::string signature = good.substr(good.find("Signature="));
  const std::string credential =
      "Credential=AKIDNIMBUSEXAMPLE/20261126/us-east-1/execute-api/aws4_request";
  const std::string signed_headers = "SignedHeaders=host;x-amz-date";
  auto with_credential = [&](std::string_view scope) {
    return "AWS4-HMAC-SHA256 Credential=" + std::string(scope) + ", " + signed_headers + ", " +
           signature;
  };
  auto with_signed_headers = [&](std::string_view list) {
    return "AWS4-HMAC-SHA256 " + credential + ", " + std::string(list) + ", " + signature;
  };
  const std::vector<std::string> malformed = {
      "",
      "AWS4-HMAC-SHA256",
      "AWS4-HMAC-SHA256 ",
      "AWS AKIDNIMBUSEXAMPLE:abc",
      "Bearer abc",
      "AWS4-HMAC-SHA512 " + credential + ", " + signed_headers + ", " + signature,
      "AWS4-HMAC-SHA256 " + signed_headers + ", " + signature,
      "AWS4-HMAC-SHA256 " + credential + ", " + signature,
      "AWS4-HMAC-SHA256 " + credential + ", " + signed_headers,
      "AWS4-HMAC-SHA256 " + credential + ", " + signed_headers + ", Signature=",
      "AWS4-HMAC-SHA256 " + credential + ", " + credential + ", " + signed_headers + ", " +
          signature,
      "AWS4-HMAC-SHA256 " + credential + ", " + signed_headers + ", Colour=blue, " + signature,
      with_credential("AKIDNIMBUSEXAMPLE/20261126/us-east-1/execute-api"),
      with_credential("AKIDNIMBUSEXAMPLE/20261126/us-east-1/execute-api/aws5_request"),
      with_credential("/20261126/us-east-1/execute-api/aws4_request"),
      with_credential("AKIDNIMBUSEXAMPLE/2026112/us-east-1/execute-api/aws4_request"),
      with_credential("AKIDNIMBUSEXAMPLE/20261126//execute-api/aws4_request"),
      with_credential("AKIDNIMBUSEXAMPLE/20261126/us-east-1/execute-api/aws4_request/x"),
      with_signed_headers("SignedHeaders=x-amz-date"),
      with_signed_headers("SignedHeaders=host;;x-amz-date"),
      with_signed_headers("SignedHeaders=host;x amz date"),
      with_signed_headers("SignedHeaders="),
      with_signed_headers("SignedHeaders"),
  };
  for (const auto& authorization : malformed) {
    auto request = to_request(vector);
    find_header(request, "authorization")->second = authorization;
    const auto result = verify(request);
    expect_error(result, "IncompleteSignatureException", "'" + authorization + "'");
    EXPECT_FALSE(result.message.empty());
  }
  // Two Authorization headers.
  auto request = to_request(vector);
  request.headers.emplace_back("authorization", good);
  expect_error(verify(request), "IncompleteSignatureException", "two headers");
  // Spacing around the commas and equals signs is not significant.
  request = to_request(vector);
  std::string spaced = good;
  for (std::string_view part : {", SignedHeaders", ", Signature"}) {
    const auto at = spaced.find(part);
    spaced.replace(at, 2, " ,\t ");
  }
  spaced.replace(spaced.find("Signature="), 10, "Signature = ");
  find_header(request, "authorization")->second = "  " + spaced + "  ";
  EXPECT_TRUE(verify(request).ok) << spaced;
  // Credential date and request date disagree: a signing bug, reported as a bad signature.
  request = to_request(vector);
  auto& header = find_header(request, "authorization")->second;
  header.replace(header.find("/20261126/"), 10, "/20261125/");
  expect_error(verify(request), "InvalidSignatureException", "credential date");
  EXPECT_EQ(verify(request).region, "us-east-1");
}

TEST(sigv4, path_normalisation_matches_botocore) {
  // The vector was signed over /things/./a//b/../c/ whose canonical form is /things/a/c/.
  const auto& vector = *std::find_if(vectors().begin(), vectors().end(), [](const auto& v) {
    return v.name == "dot_segments_and_double_slash";
  });
  for (std::string target : {"/things/a/c/", "/things//a/./c/", "/x/../things/a/c/"}) {
    auto request = to_request(vector);
    request.target = target;
    EXPECT_TRUE(verify(request).ok) << target;
  }
  for (std::string target : {"/things/a/c", "/things/a/%63/", "/things/a/c/?"}) {
    auto request = to_request(vector);
    request.target = target;
    // "?" alone adds no parameter; the others change the canonical URI.
    EXPECT_EQ(verify(request).ok, target == "/things/a/c/?") << target;
  }
}

TEST(sigv4, content_sha256_header_must_match_the_body) {
  const auto& vector = vectors().front();
  auto request = to_request(vector);
  request.headers.emplace_back("X-Amz-Content-Sha256", sha256_hex("other"));
  expect_error(verify(request), "InvalidSignatureException", "mismatched content hash");
}

TEST(sigv4, malformed_input_does_not_crash) {
  const std::vector<signed_request> garbage = {
      {"", "", {}, ""},
      {"GET", "?", {{"Authorization", "AWS4-HMAC-SHA256 Credential=////, Signature=, ="}}, ""},
      {"GET", "%", {{"Authorization", "AWS4-HMAC-SHA256 ,,,,===,,"}}, ""},
      {"GET", "/%zz%%%4?%=%&&&=&a=%f", {{"X-Amz-Date", "99999999T999999Z"}}, ""},
      {"GET", "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%2F%2F%2F%2F", {}, ""},
      {"GET",
       "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a/20261126/r/s/aws4_request&X-Amz-Date="
       "20261126T090000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires="
       "99999999999999999999999",
       {},
       ""},
      {"GET",
       "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a/20261126/r/s/aws4_request&X-Amz-Date="
       "00000101T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
       {},
       ""},
      {"GET",
       "/",
       {{"Authorization",
         "AWS4-HMAC-SHA256 Credential=a/20261126/r/s/aws4_request, SignedHeaders=host, "
         "Signature=00"},
        {"Date", "Thu, 99 Foo 2026 99:99:99 +9999"}},
       ""},
      {"GET",
       "/",
       {{"Authorization",
         "AWS4-HMAC-SHA256 Credential=a/20261126/r/s/aws4_request, SignedHeaders=host, "
         "Signature=00"},
        {"Date", ", , , , , , , ,"}},
       ""},
      {"GET",
       "/",
       {{"Authorization",
         "AWS4-HMAC-SHA256 Credential=a/99991231/r/s/aws4_request, SignedHeaders=host, "
         "Signature=00"},
        {"X-Amz-Date", "99991231T235959Z"}},
       ""},
      {"\x01\xff",
       std::string(1, '\0') + "/\x80\xff?\x80=\xff",
       {{"", ""}, {"\xff", "\x01"}, {"Authorization", std::string("AWS4-HMAC-SHA256 \0\0", 19)}},
       "\xff"},
  };
  for (const auto& request : garbage) {
    const auto result = verify(request);
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.status, 403U);
    EXPECT_FALSE(result.error_type.empty());
  }
  // Huge values.
  signed_request huge = to_request(vectors().front());
  huge.target = "/" + std::string(1 << 20, '%') + "?" + std::string(1 << 20, '&');
  find_header(huge, "authorization")->second += std::string(1 << 20, ',');
  huge.headers.emplace_back("X-Big", std::string(1 << 20, ' '));
  EXPECT_FALSE(verify(huge).ok);
}

TEST(sigv4, random_mutations_do_not_crash) {
  // Deterministic byte flips, deletions and insertions over every vector.
  std::mt19937 random(20261126);
  for (int round = 0; round < 4000; ++round) {
    const auto& vector = vectors()[random() % vectors().size()];
    auto request = to_request(vector);
    std::string* field = nullptr;
    const auto choice = random() % 4;
    if (choice == 0) {
      field = &request.target;
    } else {
      auto& header = request.headers[random() % request.headers.size()];
      field = choice == 1 ? &header.first : &header.second;
    }
    const auto edits = 1 + random() % 3;
    for (unsigned edit = 0; edit < edits; ++edit) {
      const std::size_t at = field->empty() ? 0 : random() % field->size();
      const auto byte = static_cast<char>(random() % 256);
      switch (random() % 3) {
        case 0:
          if (!field->empty()) (*field)[at] = byte;
          break;
        case 1:
          if (!field->empty()) field->erase(at, 1);
          break;
        default:
          field->insert(at, 1, byte);
      }
    }
    const auto result = verify(request);
    if (!result.ok) {
      EXPECT_EQ(result.status, 403U);
      EXPECT_FALSE(result.error_type.empty());
    }
  }
}

}  // namespace
}  // namespace nimbus::iot
