#include "registry/certificate_authority.hpp"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace nimbus::registry {

namespace {

struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct x509_free {
  void operator()(X509* c) const { X509_free(c); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("certificate authority: " + what);
}

pkey_ptr generate_key() {
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) fail("key generation failed");
  return key;
}

// Runs one PEM_write_bio_* call into memory and returns the text.
template <class Write>
std::string to_pem(Write write) {
  BIO* bio = BIO_new(BIO_s_mem());
  write(bio);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return out;
}

std::string key_to_pem(EVP_PKEY* key) {
  return to_pem([key](BIO* bio) {
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

std::string public_key_to_pem(EVP_PKEY* key) {
  return to_pem([key](BIO* bio) { PEM_write_bio_PUBKEY(bio, key); });
}

std::string cert_to_pem(X509* cert) {
  return to_pem([cert](BIO* bio) { PEM_write_bio_X509(bio, cert); });
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) fail(std::string("bad extension ") + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

x509_ptr new_unnamed_certificate(EVP_PKEY* subject_key, int days) {
  x509_ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  // 159-bit random serial, positive, as RFC 5280 asks for unpredictable serials.
  unsigned char serial[20];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7F;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 24 * 3600);
  X509_set_pubkey(cert.get(), subject_key);
  return cert;
}

x509_ptr new_certificate(EVP_PKEY* subject_key, const std::string& common_name, int days) {
  auto cert = new_unnamed_certificate(subject_key, days);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("Nimbus"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  return cert;
}

bool is_ip_literal(const std::string& host) {
  return host.find(':') != std::string::npos ||
         host.find_first_not_of("0123456789.") == std::string::npos;
}

}  // namespace

struct certificate_authority::keys {
  pkey_ptr key;
  x509_ptr cert;
};

certificate_authority::~certificate_authority() = default;
certificate_authority::certificate_authority(certificate_authority&&) noexcept = default;
certificate_authority& certificate_authority::operator=(certificate_authority&&) noexcept = default;

void write_file_atomically(const std::string& path, const std::string& contents, unsigned mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write " + tmp);
    ::chmod(tmp.c_str(), mode);
    out << contents;
    if (!out.flush()) fail("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

certificate_authority certificate_authority::open_or_create(const std::string& directory) {
  std::filesystem::create_directories(directory);
  certificate_authority ca;
  ca.keys_ = std::make_unique<keys>();
  std::string cert_path = directory + "/root-CA.crt";
  std::string key_path = directory + "/root-CA.key";
  ca.certificate_path_ = cert_path;
  if (std::filesystem::exists(cert_path) && std::filesystem::exists(key_path)) {
    std::string key_pem = read_file(key_path);
    BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
    ca.keys_->key.reset(PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr));
    BIO_free(kb);
    ca.certificate_pem_ = read_file(cert_path);
    BIO* cb =
        BIO_new_mem_buf(ca.certificate_pem_.data(), static_cast<int>(ca.certificate_pem_.size()));
    ca.keys_->cert.reset(PEM_read_bio_X509(cb, nullptr, nullptr, nullptr));
    BIO_free(cb);
    if (!ca.keys_->key || !ca.keys_->cert) fail("cannot parse " + cert_path + " or its key");
    if (X509_check_private_key(ca.keys_->cert.get(), ca.keys_->key.get()) != 1)
      fail("CA key does not match certificate");
    return ca;
  }
  ca.keys_->key = generate_key();
  ca.keys_->cert = new_certificate(ca.keys_->key.get(), "Nimbus Root CA", 3650);
  X509* cert = ca.keys_->cert.get();
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  add_extension(cert, cert, NID_subject_key_identifier, "hash");
  if (X509_sign(cert, ca.keys_->key.get(), EVP_sha256()) == 0)
    fail("signing the root certificate failed");
  ca.certificate_pem_ = cert_to_pem(cert);
  write_file_atomically(key_path, key_to_pem(ca.keys_->key.get()), 0600);
  write_file_atomically(cert_path, ca.certificate_pem_, 0644);
  return ca;
}

issued_certificate certificate_authority::issue_server(const std::string& common_name,
                                                       const std::vector<std::string>& hosts,
                                                       int days) const {
  auto key = generate_key();
  auto cert = new_certificate(key.get(), common_name, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(keys_->cert.get()));
  std::string san;
  for (const auto& h : hosts) {
    if (h.empty()) continue;
    san += (san.empty() ? "" : ",") + std::string(is_ip_literal(h) ? "IP:" : "DNS:") + h;
  }
  add_extension(cert.get(), keys_->cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), keys_->cert.get(), NID_key_usage,
                "critical,digitalSignature,keyEncipherment");
  add_extension(cert.get(), keys_->cert.get(), NID_ext_key_usage, "serverAuth");
  add_extension(cert.get(), keys_->cert.get(), NID_authority_key_identifier, "keyid");
  if (!san.empty()) add_extension(cert.get(), keys_->cert.get(), NID_subject_alt_name, san.c_str());
  if (X509_sign(cert.get(), keys_->key.get(), EVP_sha256()) == 0)
    fail("signing a server certificate failed");
  return {cert_to_pem(cert.get()), key_to_pem(key.get()), {}};
}

issued_certificate certificate_authority::issue_client(const std::string& common_name,
                                                       int days) const {
  auto key = generate_key();
  auto cert = new_certificate(key.get(), common_name, days);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(keys_->cert.get()));
  add_extension(cert.get(), keys_->cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), keys_->cert.get(), NID_key_usage, "critical,digitalSignature");
  add_extension(cert.get(), keys_->cert.get(), NID_ext_key_usage, "clientAuth");
  add_extension(cert.get(), keys_->cert.get(), NID_authority_key_identifier, "keyid");
  if (X509_sign(cert.get(), keys_->key.get(), EVP_sha256()) == 0)
    fail("signing a client certificate failed");
  return {cert_to_pem(cert.get()), key_to_pem(key.get()), {}};
}

issued_certificate certificate_authority::issue_device(const std::string& common_name,
                                                       int days) const {
  pkey_ptr key(EVP_RSA_gen(2048));
  if (!key) fail("RSA key generation failed");
  auto cert = new_unnamed_certificate(key.get(), days);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(keys_->cert.get()));
  add_extension(cert.get(), keys_->cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), keys_->cert.get(), NID_key_usage,
                "critical,digitalSignature,keyEncipherment");
  add_extension(cert.get(), keys_->cert.get(), NID_ext_key_usage, "clientAuth");
  add_extension(cert.get(), keys_->cert.get(), NID_authority_key_identifier, "keyid");
  if (X509_sign(cert.get(), keys_->key.get(), EVP_sha256()) == 0)
    fail("signing a device certificate failed");
  return {cert_to_pem(cert.get()), key_to_pem(key.get()), public_key_to_pem(key.get())};
}

std::optional<std::string> certificate_authority::sign_request(std::string_view csr_pem,
                                                               int days) const {
  if (csr_pem.size() > 64 * 1024) return std::nullopt;
  BIO* bio = BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size()));
  X509_REQ* request = PEM_read_bio_X509_REQ(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (request == nullptr) return std::nullopt;
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> owned(request, X509_REQ_free);
  EVP_PKEY* subject_key = X509_REQ_get0_pubkey(request);
  if (subject_key == nullptr || X509_REQ_verify(request, subject_key) != 1) return std::nullopt;
  auto cert = new_unnamed_certificate(subject_key, days);
  X509_set_subject_name(cert.get(), X509_REQ_get_subject_name(request));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(keys_->cert.get()));
  add_extension(cert.get(), keys_->cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), keys_->cert.get(), NID_ext_key_usage, "clientAuth");
  add_extension(cert.get(), keys_->cert.get(), NID_authority_key_identifier, "keyid");
  if (X509_sign(cert.get(), keys_->key.get(), EVP_sha256()) == 0) return std::nullopt;
  return cert_to_pem(cert.get());
}

}  // namespace nimbus::registry
