// Policies, their versions, and their attachment to certificates and thing groups.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "registry/registry_state.hpp"

namespace nimbus::registry {

using namespace detail;

namespace {

constexpr std::size_t max_policy_versions = 5;
constexpr std::size_t max_policies_per_target = 10;

void check_policy_name(const std::string& name) {
  if (!is_valid_policy_name(name))
    invalid("1 validation error detected: Value '" + name +
            "' at 'policyName' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: [\\w+=,.@-]+ and have length between 1 and 128");
}

}  // namespace

std::pair<policy_entry, registry::ticket> registry::create_policy(const std::string& name,
                                                                  const std::string& document,
                                                                  const tag_list& tags) {
  check_policy_name(name);
  check_tags(tags);
  auto compiled = compile(document);
  policy_entry result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.policies.find(name); it != b.s.policies.end())
      already_exists("Policy cannot be created - name already exists (name=" + name + ")", name,
                     policy_arn(name));
    result.name = name;
    result.default_version = 1;
    result.next_version = 2;
    result.generation_id = new_uuid();
    result.created = result.modified = now();
    result.versions[1] = policy_version{document, result.created, compiled};
    b.tag(policy_key(name), tags);
    b.s.policies[name] = result;
    b.touch(object_kind::policy, name);
  });
  return {result, t};
}

registry::ticket registry::delete_policy(const std::string& name) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    if (!it->second.targets.empty())
      fail(errc::delete_conflict,
           "The policy cannot be deleted as the policy is attached to one or more principals "
           "(name=" +
               name + ")");
    if (it->second.versions.size() > 1)
      fail(errc::delete_conflict,
           "Cannot delete the policy because it has one or more non-default versions (name=" +
               name + ")");
    b.s.policies.erase(it);
    b.touch(object_kind::policy, name);
    b.drop_tags(policy_key(name));
  });
}

std::optional<policy_entry> registry::find_policy(const std::string& name) const {
  auto lock = read_lock();
  const auto& policies = committed_->policies;
  auto it = policies.find(name);
  if (it == policies.end()) return std::nullopt;
  return it->second;
}

page<policy_entry> registry::list_policies(bool ascending, const std::string& marker,
                                           std::size_t max) const {
  auto lock = read_lock();
  std::vector<const policy_entry*> items;
  for (const auto& [name, p] : committed_->policies) items.push_back(&p);
  // In creation order, as AWS lists them (ascendingOrder; newest first by default).
  return paginate(by_creation(std::move(items), ascending), marker, max, !ascending);
}

// ---- versions -----------------------------------------------------------------------------------

std::pair<std::int64_t, registry::ticket> registry::create_policy_version(
    const std::string& name, const std::string& document, bool set_as_default) {
  std::int64_t version = 0;
  auto t = mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    auto compiled = compile(document);
    auto& p = it->second;
    if (p.versions.size() >= max_policy_versions)
      fail(errc::versions_limit_exceeded,
           "The policy " + name + " already has the maximum number of versions (5)");
    version = p.next_version++;
    p.versions[version] = policy_version{document, now(), compiled};
    if (set_as_default) p.default_version = version;
    p.modified = now();
    p.generation_id = new_uuid();
    b.touch(object_kind::policy, name);
  });
  return {version, t};
}

registry::ticket registry::set_default_policy_version(const std::string& name,
                                                      std::int64_t version) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    if (!it->second.versions.contains(version))
      not_found("Policy version not found (name=" + name + ", version=" + std::to_string(version) +
                ")");
    it->second.default_version = version;
    it->second.modified = now();
    it->second.generation_id = new_uuid();
    b.touch(object_kind::policy, name);
  });
}

registry::ticket registry::delete_policy_version(const std::string& name, std::int64_t version) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    auto& p = it->second;
    if (!p.versions.contains(version))
      not_found("Policy version not found (name=" + name + ", version=" + std::to_string(version) +
                ")");
    if (p.default_version == version)
      fail(errc::delete_conflict, "Cannot delete the default version of a policy");
    p.versions.erase(version);
    p.modified = now();
    b.touch(object_kind::policy, name);
  });
}

// ---- attachments --------------------------------------------------------------------------------

registry::ticket registry::attach_policy(const std::string& name, const std::string& target) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    std::string resource = arn_resource(target);
    if (resource.starts_with("cert/")) {
      if (!b.s.certificates.contains(resource.substr(5)))
        not_found("The certificate " + resource.substr(5) + " does not exist");
    } else if (resource.starts_with("thinggroup/")) {
      if (!b.s.thing_groups.contains(resource.substr(11)))
        not_found("Thing Group " + resource.substr(11) + " cannot be found.");
    } else {
      invalid("Invalid target: " + target + " (expected a certificate ARN or a thing group ARN)");
    }
    const std::string& canonical = resource;
    auto& attached = b.s.target_policies[canonical];
    if (attached.contains(name)) return;
    if (attached.size() >= max_policies_per_target)
      fail(errc::limit_exceeded, "A target can have at most " +
                                     std::to_string(max_policies_per_target) +
                                     " policies attached");
    attached.insert(name);
    it->second.targets.insert(canonical);
    b.touch(object_kind::policy, name);
  });
}

registry::ticket registry::detach_policy(const std::string& name, const std::string& target) {
  return mutate([&](batch& b) {
    auto it = b.s.policies.find(name);
    if (it == b.s.policies.end()) not_found("Policy not found (name=" + name + ")");
    std::string resource = arn_resource(target);
    if (resource.empty()) invalid("Invalid target: " + target);
    const std::string& canonical = resource;
    if (it->second.targets.erase(canonical) == 0) return;
    if (auto tp = b.s.target_policies.find(canonical); tp != b.s.target_policies.end()) {
      tp->second.erase(name);
      if (tp->second.empty()) b.s.target_policies.erase(tp);
    }
    b.touch(object_kind::policy, name);
  });
}

page<policy_entry> registry::list_attached_policies(const std::string& target, bool recursive,
                                                    const std::string& marker,
                                                    std::size_t max) const {
  auto lock = read_lock();
  const auto& s = *committed_;
  std::string resource = arn_resource(target);
  if (resource.empty()) invalid("Invalid target: " + target);
  std::vector<std::string> targets{resource};
  if (resource.starts_with("cert/")) {
    if (!s.certificates.contains(resource.substr(5)))
      not_found("The certificate " + resource.substr(5) + " does not exist");
  } else if (resource.starts_with("thinggroup/")) {
    auto g = s.thing_groups.find(resource.substr(11));
    if (g == s.thing_groups.end())
      not_found("Thing Group " + resource.substr(11) + " cannot be found.");
    if (recursive)
      for (std::string p = g->second.parent; !p.empty(); p = s.thing_groups.at(p).parent)
        targets.push_back(group_key(p));
  }
  std::set<std::string> names;
  for (const auto& t : targets)
    if (auto tp = s.target_policies.find(t); tp != s.target_policies.end())
      names.insert(tp->second.begin(), tp->second.end());
  std::vector<std::pair<std::string, const policy_entry*>> keyed;
  for (const auto& n : names) keyed.emplace_back(n, &s.policies.at(n));
  return paginate(std::move(keyed), marker, max);
}

page<std::string> registry::list_targets_for_policy(const std::string& name,
                                                    const std::string& marker, std::size_t max,
                                                    bool certificates_only) const {
  auto lock = read_lock();
  const auto& policies = committed_->policies;
  auto it = policies.find(name);
  if (it == policies.end()) not_found("Policy not found (name=" + name + ")");
  std::vector<std::pair<std::string, std::string>> keyed;
  for (const auto& t : it->second.targets)
    if (!certificates_only || t.starts_with("cert/")) keyed.emplace_back(t, arn_prefix_ + t);
  return paginate(std::move(keyed), marker, max);
}

}  // namespace nimbus::registry
