// Device certificates (issued by our CA, signed from a CSR, or registered) and the CA
// certificates devices may be registered under.
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "registry/certificate_authority.hpp"
#include "registry/registry_state.hpp"

namespace nimbus::registry {

using namespace detail;

namespace {

// AWS IoT device certificates are valid until the end of 2049.
constexpr int device_certificate_days = 365 * 23;

certificate new_certificate_record(std::shared_ptr<const certificate_info> info,
                                   certificate_status status, double now) {
  certificate c;
  c.id = info->id;
  c.status = status;
  c.generation_id = new_uuid();
  c.created = now;
  c.modified = now;
  c.info = std::move(info);
  return c;
}

// The certificate issued or signed by our own CA, which always parses.
std::shared_ptr<const certificate_info> issued_info(std::string_view pem) {
  auto info = parse_certificate_pem(pem);
  if (!info) throw std::runtime_error("registry: issued certificate does not parse");
  return std::make_shared<const certificate_info>(std::move(*info));
}

certificate_status initial_status(bool active) {
  return active ? certificate_status::active : certificate_status::inactive;
}

}  // namespace

std::pair<registry::created_keys, registry::ticket> registry::create_keys_and_certificate(
    bool active) {
  auto issued = ca_.issue_device("AWS IoT Certificate", device_certificate_days);
  created_keys result{
      new_certificate_record(issued_info(issued.certificate_pem), initial_status(active), now()),
      issued.private_key_pem, issued.public_key_pem};
  auto t = mutate([&](batch& b) {
    b.s.certificates[result.cert.id] = result.cert;
    b.touch(object_kind::certificate, result.cert.id);
  });
  return {result, t};
}

std::pair<certificate, registry::ticket> registry::create_certificate_from_csr(std::string_view csr,
                                                                               bool active) {
  auto pem = ca_.sign_request(csr, device_certificate_days);
  if (!pem) invalid("The certificate signing request is not a valid PEM-encoded, signed CSR");
  auto cert = new_certificate_record(issued_info(*pem), initial_status(active), now());
  auto t = mutate([&](batch& b) {
    b.s.certificates[cert.id] = cert;
    b.touch(object_kind::certificate, cert.id);
  });
  return {cert, t};
}

std::pair<certificate, registry::ticket> registry::register_certificate(std::string_view pem,
                                                                        std::string_view ca_pem,
                                                                        certificate_status status,
                                                                        bool with_ca) {
  auto parsed = parse_certificate_pem(pem);
  if (!parsed) fail(errc::certificate_validation, "The certificate is not a valid PEM");
  auto info = std::make_shared<const certificate_info>(std::move(*parsed));
  std::optional<certificate_info> ca_info;
  if (!ca_pem.empty()) {
    ca_info = parse_certificate_pem(ca_pem);
    if (!ca_info) fail(errc::certificate_validation, "The CA certificate is not a valid PEM");
  }
  if (info->not_after < clock_.unix_seconds())
    fail(errc::certificate_validation, "The certificate has expired");
  certificate result;
  auto t = mutate([&](batch& b) {
    if (b.s.certificates.contains(info->id))
      already_exists("The certificate is already provisioned or registered", info->id,
                     certificate_arn(info->id));
    std::string ca_id;
    if (with_ca) {
      if (ca_info) {
        if (!b.s.ca_certificates.contains(ca_info->id))
          fail(errc::certificate_validation,
               "The CA certificate " + ca_info->id + " is not registered");
        ca_id = ca_info->id;
      } else {
        // Without caCertificatePem the issuer is looked up among the registered CAs.
        for (const auto& [id, ca] : b.s.ca_certificates)
          if (ca.info->subject_der == info->issuer_der && is_signed_by(info->pem, ca.info->pem))
            ca_id = id;
        if (ca_id.empty())
          fail(errc::certificate_validation,
               "The certificate's CA is not registered; register the CA certificate first or "
               "use RegisterCertificateWithoutCA");
      }
      const auto& ca = b.s.ca_certificates.at(ca_id);
      if (!is_signed_by(info->pem, ca.info->pem))
        fail(errc::certificate_validation,
             "The certificate is not signed by the given CA certificate");
      if (ca.status != ca_status::active)
        fail(errc::certificate_state, "The CA certificate " + ca_id + " is not ACTIVE");
    }
    result = new_certificate_record(info, status, now());
    result.ca_id = ca_id;
    // As AWS reports certificates registered without a CA.
    if (!with_ca) result.mode = certificate_mode::sni_only;
    b.s.certificates[result.id] = result;
    b.touch(object_kind::certificate, result.id);
  });
  return {result, t};
}

registry::ticket registry::update_certificate(const std::string& id, certificate_status status) {
  return mutate([&](batch& b) {
    auto it = b.s.certificates.find(id);
    if (it == b.s.certificates.end()) not_found("The certificate " + id + " does not exist");
    auto& c = it->second;
    // AWS refuses the transfer and activation states through UpdateCertificate.
    if (status == certificate_status::pending_transfer ||
        status == certificate_status::pending_activation)
      invalid("The certificate status cannot be set to " + std::string(to_string(status)) +
              " with UpdateCertificate");
    if (c.status == status) return;  // idempotent
    // REVOKED is final (AWS): no path leads out of it, not even through INACTIVE.
    if (c.status == certificate_status::revoked)
      fail(errc::certificate_state,
           "The certificate " + id + " is REVOKED; a revoked certificate cannot change status");
    if (c.status == certificate_status::active) b.disable_certificate(id);
    c.status = status;
    c.modified = now();
    c.customer_version += 1;
    c.generation_id = new_uuid();
    b.touch(object_kind::certificate, id);
  });
}

registry::ticket registry::delete_certificate(const std::string& id, bool force) {
  return mutate([&](batch& b) {
    auto it = b.s.certificates.find(id);
    if (it == b.s.certificates.end()) not_found("The certificate " + id + " does not exist");
    if (it->second.status == certificate_status::active)
      fail(errc::certificate_state,
           "Certificate must be deactivated (not ACTIVE) before deletion.");
    const std::string arn = certificate_arn(id);
    const std::string key = cert_key(id);
    if (auto pt = b.s.principal_things.find(key);
        pt != b.s.principal_things.end() && !pt->second.empty())
      fail(errc::delete_conflict, "Things must be detached before deletion (arn: " + arn + ")");
    auto tp = b.s.target_policies.find(key);
    if (tp != b.s.target_policies.end() && !tp->second.empty()) {
      if (!force)
        fail(errc::delete_conflict,
             "Certificate policies must be detached before deletion (arn: " + arn + ")");
      for (const auto& policy_name : tp->second) {
        b.s.policies.at(policy_name).targets.erase(key);
        b.touch(object_kind::policy, policy_name);
      }
    }
    if (tp != b.s.target_policies.end()) b.s.target_policies.erase(tp);
    b.s.certificates.erase(it);
    b.touch(object_kind::certificate, id);
    b.disable_certificate(id);
  });
}

std::optional<certificate> registry::find_certificate(const std::string& id) const {
  auto lock = read_lock();
  const auto& certificates = committed_->certificates;
  auto it = certificates.find(id);
  if (it == certificates.end()) return std::nullopt;
  return it->second;
}

page<certificate> registry::list_certificates(const std::string& ca_id, bool ascending,
                                              const std::string& marker, std::size_t max) const {
  auto lock = read_lock();
  std::vector<const certificate*> items;
  for (const auto& [id, c] : committed_->certificates)
    if (ca_id.empty() || c.ca_id == ca_id) items.push_back(&c);
  return paginate(by_creation(std::move(items), ascending), marker, max, !ascending);
}

// ---- CA certificates ----------------------------------------------------------------------------

std::pair<ca_certificate, registry::ticket> registry::register_ca_certificate(
    std::string_view pem, bool active, bool auto_registration, const tag_list& tags) {
  check_tags(tags);
  auto parsed = parse_certificate_pem(pem);
  if (!parsed) fail(errc::certificate_validation, "The CA certificate is not a valid PEM");
  if (!parsed->is_ca) fail(errc::certificate_validation, "The certificate is not a CA certificate");
  auto info = std::make_shared<const certificate_info>(std::move(*parsed));
  ca_certificate result;
  auto t = mutate([&](batch& b) {
    if (b.s.ca_certificates.contains(info->id))
      already_exists("The CA certificate is already registered", info->id,
                     ca_certificate_arn(info->id));
    result.id = info->id;
    result.status = active ? ca_status::active : ca_status::inactive;
    result.auto_registration = auto_registration;
    result.generation_id = new_uuid();
    result.created = result.modified = now();
    result.info = info;
    b.tag(ca_key(result.id), tags);
    b.s.ca_certificates[result.id] = result;
    b.touch(object_kind::ca_certificate, result.id);
  });
  return {result, t};
}

registry::ticket registry::update_ca_certificate(const std::string& id,
                                                 std::optional<ca_status> status,
                                                 std::optional<bool> auto_registration) {
  return mutate([&](batch& b) {
    auto it = b.s.ca_certificates.find(id);
    if (it == b.s.ca_certificates.end()) not_found("The CA certificate " + id + " does not exist");
    auto& ca = it->second;
    if (status) {
      // Devices registered under a CA that stops being ACTIVE can no longer connect.
      if (ca.status == ca_status::active && *status != ca_status::active)
        for (const auto& [cert_id, c] : b.s.certificates)
          if (c.ca_id == id && c.status == certificate_status::active)
            b.disable_certificate(cert_id);
      ca.status = *status;
    }
    if (auto_registration) ca.auto_registration = *auto_registration;
    ca.modified = now();
    ca.customer_version += 1;
    b.touch(object_kind::ca_certificate, id);
  });
}

registry::ticket registry::delete_ca_certificate(const std::string& id) {
  return mutate([&](batch& b) {
    auto it = b.s.ca_certificates.find(id);
    if (it == b.s.ca_certificates.end()) not_found("The CA certificate " + id + " does not exist");
    if (it->second.status == ca_status::active)
      fail(errc::certificate_state,
           "The CA certificate must be deactivated (not ACTIVE) before deletion.");
    for (const auto& [cert_id, c] : b.s.certificates)
      if (c.ca_id == id)
        fail(errc::delete_conflict,
             "The CA certificate still has registered certificates (" + cert_id + ")");
    b.s.ca_certificates.erase(it);
    b.touch(object_kind::ca_certificate, id);
    b.drop_tags(ca_key(id));
  });
}

std::optional<ca_certificate> registry::find_ca_certificate(const std::string& id) const {
  auto lock = read_lock();
  const auto& cas = committed_->ca_certificates;
  auto it = cas.find(id);
  if (it == cas.end()) return std::nullopt;
  return it->second;
}

page<ca_certificate> registry::list_ca_certificates(bool ascending, const std::string& marker,
                                                    std::size_t max) const {
  auto lock = read_lock();
  std::vector<const ca_certificate*> items;
  for (const auto& [id, c] : committed_->ca_certificates) items.push_back(&c);
  return paginate(by_creation(std::move(items), ascending), marker, max, !ascending);
}

}  // namespace nimbus::registry
