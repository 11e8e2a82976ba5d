#include "registry/x509.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace nimbus::registry {

namespace {

struct x509_free {
  void operator()(X509* c) const { X509_free(c); }
};
using x509_ptr = std::unique_ptr<X509, x509_free>;

x509_ptr read_pem(std::string_view pem) {
  if (pem.size() > 64 * 1024) return nullptr;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  x509_ptr cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  return cert;
}

std::int64_t to_unix(const ASN1_TIME* t) {
  struct tm parts {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &parts) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&parts));
}

// AWS names the DN attributes after their long forms (`iot:Certificate.Subject.CommonName`).
const char* aws_attribute_name(int nid) {
  switch (nid) {
    case NID_commonName:
      return "CommonName";
    case NID_countryName:
      return "Country";
    case NID_organizationName:
      return "Organization";
    case NID_organizationalUnitName:
      return "OrganizationalUnit";
    case NID_stateOrProvinceName:
      return "State";
    case NID_localityName:
      return "Locality";
    case NID_serialNumber:
      return "SerialNumber";
    case NID_title:
      return "Title";
    case NID_surname:
      return "Surname";
    case NID_givenName:
      return "GivenName";
    case NID_initials:
      return "Initials";
    case NID_pseudonym:
      return "Pseudonym";
    case NID_generationQualifier:
      return "GenerationQualifier";
    case NID_dnQualifier:
      return "DistinguishedNameQualifier";
    default:
      return nullptr;
  }
}

std::vector<std::pair<std::string, std::string>> name_fields(const X509_NAME* name) {
  std::vector<std::pair<std::string, std::string>> out;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    const char* key = aws_attribute_name(OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)));
    if (key == nullptr) continue;
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (len < 0) continue;
    out.emplace_back(key,
                     std::string(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len)));
    OPENSSL_free(utf8);
  }
  return out;
}

std::string name_der(const X509_NAME* name) {
  const unsigned char* der = nullptr;
  std::size_t len = 0;
  if (X509_NAME_get0_der(const_cast<X509_NAME*>(name), &der, &len) != 1) return {};
  return {reinterpret_cast<const char*>(der), len};
}

std::string ip_text(const ASN1_OCTET_STRING* ip) {
  char buffer[64];
  const unsigned char* d = ASN1_STRING_get0_data(ip);
  int len = ASN1_STRING_length(ip);
  if (len == 4) {
    std::snprintf(buffer, sizeof(buffer), "%u.%u.%u.%u", d[0], d[1], d[2], d[3]);
    return buffer;
  }
  std::string out;
  for (int i = 0; i + 1 < len; i += 2) {
    std::snprintf(buffer, sizeof(buffer), "%s%x", i == 0 ? "" : ":", (d[i] << 8) | d[i + 1]);
    out += buffer;
  }
  return out;
}

std::optional<certificate_info> describe(X509* cert) {
  certificate_info info;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) return std::nullopt;
  info.der.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  info.id = sha256_hex(info.der);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long pem_len = BIO_get_mem_data(bio, &data);
  info.pem.assign(data, static_cast<std::size_t>(pem_len));
  BIO_free(bio);
  info.not_before = to_unix(X509_get0_notBefore(cert));
  info.not_after = to_unix(X509_get0_notAfter(cert));
  info.is_ca = X509_check_ca(cert) != 0;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    char* hex = BN_bn2hex(bn);
    info.serial_hex = hex;
    OPENSSL_free(hex);
    BN_free(bn);
  }
  info.subject = name_fields(X509_get_subject_name(cert));
  info.issuer = name_fields(X509_get_issuer_name(cert));
  info.subject_der = name_der(X509_get_subject_name(cert));
  info.issuer_der = name_der(X509_get_issuer_name(cert));
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    auto text = [](const ASN1_IA5STRING* s) {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    };
    if (n->type == GEN_DNS) info.dns_names.push_back(text(n->d.dNSName));
    if (n->type == GEN_EMAIL) info.email_addresses.push_back(text(n->d.rfc822Name));
    if (n->type == GEN_URI) info.uris.push_back(text(n->d.uniformResourceIdentifier));
    if (n->type == GEN_IPADD) info.ip_addresses.push_back(ip_text(n->d.iPAddress));
  }
  GENERAL_NAMES_free(names);
  return info;
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &digest_len, EVP_sha256(), nullptr);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < digest_len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

std::optional<certificate_info> parse_certificate_pem(std::string_view pem) {
  auto cert = read_pem(pem);
  if (!cert) return std::nullopt;
  return describe(cert.get());
}

std::optional<certificate_info> parse_certificate_der(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  x509_ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return std::nullopt;
  return describe(cert.get());
}

bool is_signed_by(std::string_view certificate_pem, std::string_view ca_pem) {
  auto cert = read_pem(certificate_pem);
  auto ca = read_pem(ca_pem);
  if (!cert || !ca) return false;
  if (X509_check_issued(ca.get(), cert.get()) != X509_V_OK) return false;
  EVP_PKEY* key = X509_get0_pubkey(ca.get());
  return key != nullptr && X509_verify(cert.get(), key) == 1;
}

}  // namespace nimbus::registry
