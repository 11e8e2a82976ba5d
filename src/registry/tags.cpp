// Tags on thing groups, thing types, policies and CA certificates, named by ARN.
#include <string>
#include <utility>
#include <vector>

#include "registry/registry_state.hpp"

namespace nimbus::registry {

using namespace detail;

namespace {

// The key under which the tags of the resource `arn` names are kept ("thinggroup/{name}"),
// after checking that it can carry tags and exists in `s` (a view of the registry, locked).
std::string tagged_resource(const auto& s, const std::string& arn) {
  auto resource = arn_resource(arn);
  auto slash = resource.find('/');
  if (resource.empty() || slash == std::string::npos || slash + 1 == resource.size())
    invalid("Invalid resource ARN: " + arn);
  auto type = resource.substr(0, slash);
  auto name = resource.substr(slash + 1);
  if (type == "thing" || type == "cert")
    invalid("Resources of type " + type + " cannot be tagged: " + arn);
  bool exists = (type == "thinggroup" && s.thing_groups.contains(name)) ||
                (type == "thingtype" && s.thing_types.contains(name)) ||
                (type == "policy" && s.policies.contains(name)) ||
                (type == "cacert" && s.ca_certificates.contains(name));
  // Billing groups, rules, jobs ... are not modelled, so they are never found.
  if (!exists) not_found("Resource " + arn + " cannot be found.");
  return resource;
}

}  // namespace

registry::ticket registry::tag_resource(const std::string& arn, const tag_list& tags) {
  check_tags(tags);
  return mutate([&](batch& b) {
    auto key = tagged_resource(b.s, arn);
    b.tag(key, tags);
  });
}

registry::ticket registry::untag_resource(const std::string& arn,
                                          const std::vector<std::string>& keys) {
  return mutate([&](batch& b) {
    auto key = tagged_resource(b.s, arn);
    auto it = b.s.tags.find(key);
    if (it == b.s.tags.end()) return;
    std::size_t removed = 0;
    for (const auto& k : keys) removed += it->second.erase(k);
    if (it->second.empty()) b.s.tags.erase(it);
    if (removed > 0) b.touch(object_kind::tags, key);
  });
}

page<std::pair<std::string, std::string>> registry::list_tags(const std::string& arn,
                                                              const std::string& token,
                                                              std::size_t max) const {
  auto lock = read_lock();
  const auto& s = *committed_;
  auto key = tagged_resource(s, arn);
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> keyed;
  if (auto it = s.tags.find(key); it != s.tags.end())
    for (const auto& [k, v] : it->second) keyed.emplace_back(k, std::pair{k, v});
  return paginate(std::move(keyed), token, max);
}

}  // namespace nimbus::registry
