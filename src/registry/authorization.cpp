// Device authorization: whether a certificate may be used, and the policies that apply to a
// device's action, with the request-time facts their variables and conditions read. Called on
// every CONNECT, PUBLISH, SUBSCRIBE and delivery, over the committed view.
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "registry/registry_state.hpp"

namespace nimbus::registry {

using namespace detail;

namespace {

// The request-time facts of a device connection, by IAM key, for policy evaluation.
class device_context final : public policy::request_context {
 public:
  device_context(const device_facts& device, const certificate* cert, const thing* attached)
      : device_(device), cert_(cert), thing_(attached) {}

  std::optional<std::vector<std::string>> lookup(std::string_view key) const override {
    using values = std::vector<std::string>;
    const std::string k = lowercase(key);
    if (k == "iot:clientid") return values{std::string(device_.client_id)};
    if (k == "aws:sourceip") {
      if (device_.source_ip.empty()) return std::nullopt;
      return values{std::string(device_.source_ip)};
    }
    if (k == "iot:connectattributes") {
      values v;
      if (device_.persistent_connect) v.push_back("PersistentConnect");
      if (device_.last_will) v.push_back("LastWill");
      if (v.empty()) return std::nullopt;
      return v;
    }
    if (k == "aws:securetransport") return values{cert_ != nullptr ? "true" : "false"};
    if (k == "iot:connection.thing.isattached") return values{thing_ ? "true" : "false"};
    if (k.starts_with("iot:connection.thing.")) {
      if (thing_ == nullptr) return std::nullopt;
      std::string_view rest = std::string_view(key).substr(21);
      if (lowercase(rest) == "thingname") return values{thing_->name};
      if (lowercase(rest) == "thingtypename") {
        if (thing_->type_name.empty()) return std::nullopt;
        return values{thing_->type_name};
      }
      if (lowercase(rest.substr(0, 11)) == "attributes[" && rest.ends_with("]")) {
        auto it = thing_->attributes.find(std::string(rest.substr(11, rest.size() - 12)));
        if (it == thing_->attributes.end()) return std::nullopt;
        return values{it->second};
      }
      return std::nullopt;
    }
    if (k.starts_with("iot:certificate.") && cert_ != nullptr)
      return certificate_key(key.substr(16));
    return std::nullopt;
  }

 private:
  std::optional<std::vector<std::string>> certificate_key(std::string_view rest) const {
    using values = std::vector<std::string>;
    const auto& info = *cert_->info;
    std::string k = lowercase(rest);
    bool list = k.ends_with(".list");
    if (list) k.resize(k.size() - 5);
    auto answer = [list](values v) -> std::optional<values> {
      if (v.empty()) return std::nullopt;
      if (!list) v.resize(1);
      return v;
    };
    for (auto [prefix, fields] :
         {std::pair{"subject.", &info.subject}, std::pair{"issuer.", &info.issuer}}) {
      if (!k.starts_with(prefix)) continue;
      std::string field = k.substr(std::string_view(prefix).size());
      values v;
      for (const auto& [name, value] : *fields)
        if (lowercase(name) == field) v.push_back(value);
      return answer(std::move(v));
    }
    if (k == "subjectalternativename.dns") return answer(info.dns_names);
    if (k == "subjectalternativename.ipaddress") return answer(info.ip_addresses);
    if (k == "subjectalternativename.rfc822name") return answer(info.email_addresses);
    if (k == "subjectalternativename.uniformresourceidentifier") return answer(info.uris);
    if (k == "serialnumber") return values{info.serial_hex};
    if (k == "validity.notbefore") return values{std::to_string(info.not_before * 1000)};
    if (k == "validity.notafter") return values{std::to_string(info.not_after * 1000)};
    return std::nullopt;
  }

  const device_facts& device_;
  const certificate* cert_;
  const thing* thing_;
};

}  // namespace

std::string registry::certificate_refusal(const std::string& certificate_id) const {
  auto lock = read_lock();
  const auto& certificates = committed_->certificates;
  auto it = certificates.find(certificate_id);
  if (it == certificates.end()) return "certificate not registered";
  return refusal_locked(it->second);
}

std::string registry::refusal_locked(const certificate& c) const {
  if (c.status != certificate_status::active)
    return "certificate is " + std::string(to_string(c.status));
  std::int64_t now_s = clock_.unix_seconds();
  if (now_s > c.info->not_after) return "certificate expired";
  if (now_s < c.info->not_before) return "certificate not yet valid";
  if (!c.ca_id.empty()) {
    const auto& cas = committed_->ca_certificates;
    auto ca = cas.find(c.ca_id);
    if (ca == cas.end() || ca->second.status != ca_status::active)
      return "CA certificate is not ACTIVE";
  }
  return {};
}

policy::decision registry::evaluate_device(const device_facts& device, std::string_view action,
                                           std::string_view resource) const {
  auto lock = read_lock();
  const auto& s = *committed_;
  auto cert = s.certificates.find(std::string(device.certificate_id));
  if (cert == s.certificates.end()) return policy::decision::not_applicable;
  // Checked on every action, not only at CONNECT: a certificate revoked (or expired, or its CA
  // deactivated) while a connection was being set up must not keep working on it.
  if (!refusal_locked(cert->second).empty()) return policy::decision::deny;
  const std::string arn = cert_key(device.certificate_id);
  std::vector<const policy::document*> documents;
  auto collect = [&](const std::string& target) {
    auto tp = s.target_policies.find(target);
    if (tp == s.target_policies.end()) return;
    for (const auto& name : tp->second) {
      const auto& p = s.policies.at(name);
      documents.push_back(p.versions.at(p.default_version).compiled.get());
    }
  };
  collect(arn);
  // The thing is "attached" when the client id names a thing this certificate is attached to;
  // then its groups' policies (and their ancestors') apply too.
  const thing* attached = nullptr;
  if (auto t = s.things.find(std::string(device.client_id));
      t != s.things.end() && t->second.principals.contains(arn)) {
    attached = &t->second;
    std::set<std::string> seen;
    for (const auto& g : attached->groups)
      for (std::string p = g; !p.empty() && seen.insert(p).second;) {
        collect(group_key(p));
        auto gi = s.thing_groups.find(p);
        p = gi == s.thing_groups.end() ? std::string() : gi->second.parent;
      }
  }
  device_context context(device, &cert->second, attached);
  return policy::evaluate_all(documents, action, resource, context);
}

policy::decision registry::evaluate_policy(const std::string& name, const device_facts& device,
                                           std::string_view action,
                                           std::string_view resource) const {
  auto lock = read_lock();
  const auto& policies = committed_->policies;
  auto it = policies.find(name);
  if (it == policies.end()) return policy::decision::not_applicable;
  const auto& p = it->second;
  device_context context(device, nullptr, nullptr);
  return p.versions.at(p.default_version).compiled->evaluate(action, resource, context);
}

}  // namespace nimbus::registry
