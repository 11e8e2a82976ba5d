#pragma once
// X.509 facts the registry keeps about a certificate: its AWS id (SHA-256 of the DER), validity,
// and the subject/issuer/SAN fields that policy variables (`${iot:Certificate.Subject.X}`) read.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nimbus::registry {

struct certificate_info {
  std::string pem;  // the first certificate, re-encoded as canonical PEM
  std::string der;
  std::string id;               // lowercase hex SHA-256 of the DER
  std::int64_t not_before = 0;  // unix seconds
  std::int64_t not_after = 0;
  bool is_ca = false;
  std::string serial_hex;
  // Distinguished-name attributes by AWS variable name (CommonName, Organization, ...), in order.
  std::vector<std::pair<std::string, std::string>> subject;
  std::vector<std::pair<std::string, std::string>> issuer;
  std::vector<std::string> dns_names, ip_addresses, email_addresses, uris;
  std::string subject_der;  // raw subject and issuer names, to match a CA by name
  std::string issuer_der;
};

// Parses the first certificate of a PEM text; nullopt when it is not a valid certificate.
std::optional<certificate_info> parse_certificate_pem(std::string_view pem);
// Parses a DER certificate (as taken from a TLS peer).
std::optional<certificate_info> parse_certificate_der(std::string_view der);

// True when `certificate_pem` is signed by the key of `ca_pem` and names it as issuer.
bool is_signed_by(std::string_view certificate_pem, std::string_view ca_pem);

// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view bytes);

}  // namespace nimbus::registry
