// Certificates (created, signed from a CSR, registered) and CA certificates.
#include "iot/control_plane.hpp"
#include "iot/control_plane_fields.hpp"

namespace nimbus::iot {

using namespace fields;

namespace {

// RegisterCertificate(WithoutCA) with the request's status text, which the registry takes
// parsed. A request wrong in both its PEM and its status is refused for its PEM, as the
// registry checks that first.
std::pair<registry::certificate, storage::ticket> register_certificate(
    registry::registry& reg, std::string pem, std::string ca_pem, const std::string& status_text,
    bool with_ca) {
  auto status = registry::parse_certificate_status(status_text);
  if (!status) {
    if (!registry::parse_certificate_pem(pem))
      throw registry::error(registry::errc::certificate_validation,
                            "The certificate is not a valid PEM");
    bad_request("Invalid certificate status: " + status_text);
  }
  return reg.register_certificate(pem, ca_pem, *status, with_ca);
}

}  // namespace

void control_plane::install_certificates(net::http_router& router) {
  auto& reg = registry_;
  auto created = [&reg](const registry::certificate& c) {
    return json::object{{"certificateArn", reg.certificate_arn(c.id)},
                        {"certificateId", c.id},
                        {"certificatePem", c.info->pem}};
  };
  auto summary = [&reg](const registry::certificate& c) {
    return json::object{{"certificateArn", reg.certificate_arn(c.id)},
                        {"certificateId", c.id},
                        {"status", registry::to_string(c.status)},
                        {"certificateMode", registry::to_string(c.mode)},
                        {"creationDate", c.created}};
  };
  auto list_response = [summary](const registry::page<registry::certificate>& page) {
    return listing(
        page, "certificates", [&](const auto& c) { return summary(c); }, "nextMarker");
  };

  http_.route(
      router, "POST", "/keys-and-certificate", iot_services,
      [&reg, created](const http_request& r) {
        auto [keys, ticket] = reg.create_keys_and_certificate(bool_query(r, "setAsActive", false));
        auto body = created(keys.cert);
        body["keyPair"] =
            json::object{{"PublicKey", keys.public_key_pem}, {"PrivateKey", keys.private_key_pem}};
        return api_result{body, ticket};
      },
      /*offload=*/true);  // RSA-2048 key generation takes tens of milliseconds
  http_.route(
      router, "POST", "/certificates", iot_services, [&reg, created](const http_request& r) {
        auto body = parse_body(r);
        auto [cert, ticket] =
            reg.create_certificate_from_csr(string_field(body, "certificateSigningRequest", true),
                                            bool_query(r, "setAsActive", false));
        return api_result{created(cert), ticket};
      });
  auto registered = [&reg](const registry::certificate& c) {
    return json::object{{"certificateArn", reg.certificate_arn(c.id)}, {"certificateId", c.id}};
  };
  http_.route(router, "POST", "/certificate/register", iot_services,
              [&reg, registered](const http_request& r) {
                auto body = parse_body(r);
                std::string status = string_field(body, "status");
                if (status.empty())
                  status = bool_query(r, "setAsActive", false) ? "ACTIVE" : "INACTIVE";
                auto [cert, ticket] =
                    register_certificate(reg, string_field(body, "certificatePem", true),
                                         string_field(body, "caCertificatePem"), status, true);
                return api_result{registered(cert), ticket};
              });
  http_.route(router, "POST", "/certificate/register-no-ca", iot_services,
              [&reg, registered](const http_request& r) {
                auto body = parse_body(r);
                std::string status = string_field(body, "status");
                if (status.empty()) status = "INACTIVE";
                auto [cert, ticket] = register_certificate(
                    reg, string_field(body, "certificatePem", true), "", status, false);
                return api_result{registered(cert), ticket};
              });
  http_.route(router, "PUT", "/certificates/{certificateId}", iot_services,
              [&reg](const http_request& r) {
                auto text = r.query_param("newStatus");
                if (!text) bad_request("Missing required parameter newStatus");
                auto status = registry::parse_certificate_status(*text);
                if (!status)
                  bad_request("1 validation error detected: Value '" + *text +
                              "' at 'newStatus' failed to satisfy constraint: Member must satisfy "
                              "enum value set: [ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, "
                              "REGISTER_INACTIVE, PENDING_ACTIVATION]");
                return api_result{json::object{},
                                  reg.update_certificate(r.param("certificateId"), *status)};
              });
  http_.route(router, "GET", "/certificates/{certificateId}", iot_services,
              [&reg](const http_request& r) {
                auto c = found(reg.find_certificate(r.param("certificateId")),
                               "The certificate " + r.param("certificateId") + " does not exist");
                json::object d{{"certificateArn", reg.certificate_arn(c.id)},
                               {"certificateId", c.id},
                               {"status", registry::to_string(c.status)},
                               {"certificatePem", c.info->pem},
                               {"ownedBy", reg.account()},
                               {"creationDate", c.created},
                               {"lastModifiedDate", c.modified},
                               {"customerVersion", c.customer_version},
                               {"generationId", c.generation_id},
                               {"validity", json::object{{"notBefore", c.info->not_before},
                                                         {"notAfter", c.info->not_after}}},
                               {"certificateMode", registry::to_string(c.mode)}};
                if (!c.ca_id.empty()) d["caCertificateId"] = c.ca_id;
                return api_result{json::object{{"certificateDescription", d}}};
              });
  http_.route(
      router, "GET", "/certificates", iot_services, [&reg, list_response](const http_request& r) {
        return list_response(reg.list_certificates("", bool_query(r, "isAscendingOrder", false),
                                                   query(r, "marker"),
                                                   page_size(r, "pageSize", 25, 250)));
      });
  http_.route(router, "GET", "/certificates-by-ca/{caCertificateId}", iot_services,
              [&reg, list_response](const http_request& r) {
                found(reg.find_ca_certificate(r.param("caCertificateId")),
                      "The CA certificate " + r.param("caCertificateId") + " does not exist");
                return list_response(reg.list_certificates(
                    r.param("caCertificateId"), bool_query(r, "isAscendingOrder", false),
                    query(r, "marker"), page_size(r, "pageSize", 25, 250)));
              });
  http_.route(router, "DELETE", "/certificates/{certificateId}", iot_services,
              [&reg](const http_request& r) {
                return api_result{json::object{},
                                  reg.delete_certificate(r.param("certificateId"),
                                                         bool_query(r, "forceDelete", false))};
              });

  // CA certificates. Registering one proves possession of its key: a verification certificate
  // signed by it whose common name is this account's registration code.
  http_.route(router, "GET", "/registrationcode", iot_services, [this](const http_request&) {
    return api_result{json::object{{"registrationCode", registration_code_}}};
  });
  http_.route(router, "POST", "/cacertificate", iot_services, [this, &reg](const http_request& r) {
    auto body = parse_body(r);
    auto ca_pem = string_field(body, "caCertificate", true);
    auto verification = string_field(body, "verificationCertificate");
    auto mode = string_field(body, "certificateMode");
    if (!mode.empty() && mode != "DEFAULT" && mode != "SNI_ONLY")
      bad_request("certificateMode must be DEFAULT or SNI_ONLY");
    if (verification.empty() && mode != "SNI_ONLY")
      bad_request("verificationCertificate is required unless certificateMode is SNI_ONLY");
    if (!verification.empty()) {
      auto info = registry::parse_certificate_pem(verification);
      if (!info || !registry::is_signed_by(verification, ca_pem))
        throw api_error{400, "CertificateValidationException",
                        "The verification certificate is not signed by the CA certificate"};
      std::string common_name;
      for (const auto& [k, v] : info->subject)
        if (k == "CommonName") common_name = v;
      if (common_name != registration_code_)
        throw api_error{400, "RegistrationCodeValidationException",
                        "The verification certificate's common name is not the registration code"};
    }
    auto [ca, ticket] = reg.register_ca_certificate(ca_pem, bool_query(r, "setAsActive", false),
                                                    bool_query(r, "allowAutoRegistration", false),
                                                    tags_field(body));
    return api_result{
        json::object{{"certificateArn", reg.ca_certificate_arn(ca.id)}, {"certificateId", ca.id}},
        ticket};
  });
  http_.route(
      router, "GET", "/cacertificate/{caCertificateId}", iot_services,
      [&reg](const http_request& r) {
        auto c = found(reg.find_ca_certificate(r.param("caCertificateId")),
                       "The CA certificate " + r.param("caCertificateId") + " does not exist");
        json::object d{{"certificateArn", reg.ca_certificate_arn(c.id)},
                       {"certificateId", c.id},
                       {"status", registry::to_string(c.status)},
                       {"certificatePem", c.info->pem},
                       {"ownedBy", reg.account()},
                       {"creationDate", c.created},
                       {"lastModifiedDate", c.modified},
                       {"autoRegistrationStatus", c.auto_registration ? "ENABLE" : "DISABLE"},
                       {"customerVersion", c.customer_version},
                       {"generationId", c.generation_id},
                       {"validity", json::object{{"notBefore", c.info->not_before},
                                                 {"notAfter", c.info->not_after}}},
                       {"certificateMode", "DEFAULT"}};
        return api_result{json::object{{"certificateDescription", d}}};
      });
  http_.route(router, "GET", "/cacertificates", iot_services, [&reg](const http_request& r) {
    auto page = reg.list_ca_certificates(bool_query(r, "isAscendingOrder", false),
                                         query(r, "marker"), page_size(r, "pageSize", 25, 250));
    return listing(
        page, "certificates",
        [&](const auto& c) {
          return json::object{{"certificateArn", reg.ca_certificate_arn(c.id)},
                              {"certificateId", c.id},
                              {"status", registry::to_string(c.status)},
                              {"creationDate", c.created}};
        },
        "nextMarker");
  });
  http_.route(router, "PUT", "/cacertificate/{caCertificateId}", iot_services,
              [&reg](const http_request& r) {
                // Absent or empty: left as it is.
                std::optional<registry::ca_status> status;
                if (auto text = query(r, "newStatus"); !text.empty()) {
                  status = registry::parse_ca_status(text);
                  if (!status) bad_request("newStatus must be ACTIVE or INACTIVE");
                }
                std::optional<bool> auto_registration;
                if (auto text = query(r, "newAutoRegistrationStatus"); !text.empty()) {
                  if (text != "ENABLE" && text != "DISABLE")
                    bad_request("newAutoRegistrationStatus must be ENABLE or DISABLE");
                  auto_registration = text == "ENABLE";
                }
                return api_result{json::object{},
                                  reg.update_ca_certificate(r.param("caCertificateId"), status,
                                                            auto_registration)};
              });
  http_.route(
      router, "DELETE", "/cacertificate/{caCertificateId}", iot_services,
      [&reg](const http_request& r) {
        return api_result{json::object{}, reg.delete_ca_certificate(r.param("caCertificateId"))};
      });
}

}  // namespace nimbus::iot
