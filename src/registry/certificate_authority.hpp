#pragma once
// The Nimbus certificate authority: created on first start in `<data>/ca/` (root-CA.crt and its
// key, mode 0600), it signs the server certificate the TLS listeners present and, later, device
// certificates. Start-up code only; errors throw.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::registry {

struct issued_certificate {
  std::string certificate_pem;
  std::string private_key_pem;  // empty when the caller supplied the key (CSR)
  std::string public_key_pem;
};

class certificate_authority {
 public:
  // Loads the CA from `directory`, creating it if absent.
  static certificate_authority open_or_create(const std::string& directory);
  ~certificate_authority();
  certificate_authority(certificate_authority&&) noexcept;
  certificate_authority& operator=(certificate_authority&&) noexcept;

  const std::string& certificate_pem() const { return certificate_pem_; }
  const std::string& certificate_path() const { return certificate_path_; }

  // A server certificate for `hosts` (DNS names or IP literals), with a fresh key.
  issued_certificate issue_server(const std::string& common_name,
                                  const std::vector<std::string>& hosts, int days) const;
  // A client (device) certificate with a fresh key.
  issued_certificate issue_client(const std::string& common_name, int days) const;
  // A device certificate as AWS IoT's CreateKeysAndCertificate issues it: a fresh RSA-2048 key,
  // subject CN=`common_name`.
  issued_certificate issue_device(const std::string& common_name, int days) const;
  // Signs a PEM certificate signing request (CreateCertificateFromCsr), keeping its subject and
  // key. Returns nullopt when the CSR does not parse or its signature does not verify.
  std::optional<std::string> sign_request(std::string_view csr_pem, int days) const;

 private:
  certificate_authority() = default;
  struct keys;
  std::unique_ptr<keys> keys_;
  std::string certificate_pem_;
  std::string certificate_path_;
};

// Writes `contents` to `path` atomically (temporary file + rename) with `mode` permissions.
void write_file_atomically(const std::string& path, const std::string& contents, unsigned mode);

}  // namespace nimbus::registry
