// Things, thing types, thing groups, group membership, and the certificates attached to things.
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "registry/registry_state.hpp"

namespace nimbus::registry {

using namespace detail;

namespace {

constexpr std::size_t max_attributes_untyped = 3;
constexpr std::size_t max_attributes_typed = 50;
constexpr std::size_t max_group_depth = 7;
constexpr std::size_t max_groups_per_thing = 10;

bool is_valid_attribute_value(std::string_view s) {
  return s.size() <= 800 && std::all_of(s.begin(), s.end(), [](char c) {
           return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
         });
}

void check_attributes(const attribute_map& attributes) {
  for (const auto& [k, v] : attributes) {
    if (!is_valid_attribute_name(k))
      invalid("Attribute name '" + k + "' is invalid: it must match [a-zA-Z0-9_.,@/:#-]{1,128}");
    if (!is_valid_attribute_value(v))
      invalid("Attribute value for '" + k + "' is invalid: at most 800 printable characters");
  }
}

void check_description(const std::string& description) {
  if (description.size() > 2028) invalid("The description is longer than 2028 characters");
}

void check_thing_name(const std::string& name, const char* what = "thingName") {
  if (!is_valid_thing_name(name))
    invalid(std::string("1 validation error detected: Value '") + name + "' at '" + what +
            "' failed to satisfy constraint: Member must satisfy regular expression pattern: "
            "[a-zA-Z0-9:_-]+ and have length between 1 and 128");
}

void check_attribute_count(const attribute_map& attributes, bool typed) {
  std::size_t limit = typed ? max_attributes_typed : max_attributes_untyped;
  if (attributes.size() > limit)
    invalid("A thing " + std::string(typed ? "with" : "without") +
            " a thing type can have at most " + std::to_string(limit) + " attributes");
}

// Applies an attribute payload: merged (an empty value deletes) or replacing the whole set.
attribute_map apply_attributes(const attribute_map& current, const attribute_map& given,
                               bool merge) {
  attribute_map out = merge ? current : attribute_map{};
  for (const auto& [k, v] : given) {
    if (v.empty())
      out.erase(k);
    else
      out[k] = v;
  }
  return out;
}

const thing_type& usable_type(const std::map<std::string, thing_type>& types,
                              const std::string& name) {
  auto it = types.find(name);
  if (it == types.end()) not_found("Thing type " + name + " not found");
  if (it->second.deprecated) invalid("Can not create new thing with deprecated thing type:" + name);
  return it->second;
}

}  // namespace

// ---- things -------------------------------------------------------------------------------------

std::pair<thing, registry::ticket> registry::create_thing(const std::string& name,
                                                          const thing_request& r) {
  check_thing_name(name);
  if (!r.billing_group.empty()) check_thing_name(r.billing_group, "billingGroupName");
  attribute_map attributes = r.attributes ? *r.attributes : attribute_map{};
  check_attributes(attributes);
  std::erase_if(attributes, [](const auto& kv) { return kv.second.empty(); });
  thing result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.things.find(name); it != b.s.things.end()) {
      // Creating again with the same configuration succeeds and changes nothing.
      if (it->second.type_name == r.type_name && it->second.attributes == attributes) {
        result = it->second;
        return;
      }
      already_exists("Thing " + name + " already exists in account with different attributes",
                     it->second.id, thing_arn(name));
    }
    if (!r.type_name.empty()) usable_type(b.s.thing_types, r.type_name);
    check_attribute_count(attributes, !r.type_name.empty());
    thing created{name, new_uuid(), r.type_name, attributes, 1, r.billing_group, {}, {}, now()};
    b.s.things[name] = created;
    b.touch(object_kind::thing, name);
    result = std::move(created);
  });
  return {result, t};
}

registry::ticket registry::update_thing(const std::string& name, const thing_request& r) {
  check_thing_name(name);
  if (r.attributes) check_attributes(*r.attributes);
  return mutate([&](batch& b) {
    auto it = b.s.things.find(name);
    if (it == b.s.things.end()) not_found("Thing " + name + " cannot be found.");
    thing updated = it->second;
    if (r.expected_version != no_version && r.expected_version != updated.version)
      fail(errc::version_conflict,
           "The version for thing " + name + " does not match the expected version.");
    if (r.remove_type && !r.type_name.empty())
      invalid("Cannot remove the thing type and set a new one in the same request");
    if (r.remove_type) updated.type_name.clear();
    if (!r.type_name.empty() && r.type_name != updated.type_name) {
      usable_type(b.s.thing_types, r.type_name);
      updated.type_name = r.type_name;
    }
    if (r.attributes)
      updated.attributes = apply_attributes(updated.attributes, *r.attributes, r.merge);
    check_attribute_count(updated.attributes, !updated.type_name.empty());
    updated.version += 1;
    it->second = std::move(updated);
    b.touch(object_kind::thing, name);
  });
}

registry::ticket registry::delete_thing(const std::string& name, std::int64_t expected_version) {
  return mutate([&](batch& b) {
    auto it = b.s.things.find(name);
    if (it == b.s.things.end()) return;  // AWS: deleting a missing thing succeeds
    if (expected_version != no_version && expected_version != it->second.version)
      fail(errc::version_conflict,
           "The version for thing " + name + " does not match the expected version.");
    if (!it->second.principals.empty())
      invalid("Cannot delete thing " + name +
              " because it is still attached to one or more "
              "principals");
    if (!it->second.groups.empty()) b.membership_changed();
    b.s.things.erase(it);
    b.touch(object_kind::thing, name);
    b.thing_deleted(name);
  });
}

std::optional<thing> registry::find_thing(const std::string& name) const {
  auto lock = read_lock();
  const auto& things = committed_->things;
  auto it = things.find(name);
  if (it == things.end()) return std::nullopt;
  return it->second;
}

page<thing> registry::list_things(const thing_filter& f, const std::string& token,
                                  std::size_t max) const {
  auto lock = read_lock();
  const auto& things = committed_->things;
  // Walks the name-ordered map from the token, copying one page: a fleet of 10^5 things is
  // listed without copying it per request or holding the lock for long.
  auto it = token.empty() ? things.begin() : things.upper_bound(decode_token(token));
  page<thing> out;
  for (; it != things.end(); ++it) {
    const auto& t = it->second;
    if (!f.type_name.empty() && t.type_name != f.type_name) continue;
    if (!f.attribute_name.empty()) {
      auto a = t.attributes.find(f.attribute_name);
      if (a == t.attributes.end()) continue;
      if (!f.attribute_value.empty()) {
        bool match = f.prefix_value ? a->second.starts_with(f.attribute_value)
                                    : a->second == f.attribute_value;
        if (!match) continue;
      }
    }
    if (out.items.size() == max) {
      out.next_token = encode_token(out.items.back().name);
      break;
    }
    out.items.push_back(t);
  }
  return out;
}

// ---- thing types ----------------------------------------------------------------------------

std::pair<thing_type, registry::ticket> registry::create_thing_type(
    const std::string& name, const std::string& description,
    const std::vector<std::string>& searchable, const tag_list& tags) {
  check_thing_name(name, "thingTypeName");
  check_tags(tags);
  check_description(description);
  if (searchable.size() > 3) invalid("A thing type can have at most 3 searchable attributes");
  for (const auto& a : searchable)
    if (!is_valid_attribute_name(a)) invalid("Searchable attribute '" + a + "' is invalid");
  thing_type result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.thing_types.find(name); it != b.s.thing_types.end()) {
      if (it->second.description == description && it->second.searchable_attributes == searchable) {
        result = it->second;
        return;
      }
      already_exists("Thing Type " + name + " already exists in account with different properties",
                     it->second.id, thing_type_arn(name));
    }
    thing_type created{name, new_uuid(), description, searchable, false, 0, now()};
    b.tag(type_key(name), tags);
    b.s.thing_types[name] = created;
    b.touch(object_kind::thing_type, name);
    result = std::move(created);
  });
  return {result, t};
}

registry::ticket registry::deprecate_thing_type(const std::string& name, bool undo) {
  return mutate([&](batch& b) {
    auto it = b.s.thing_types.find(name);
    if (it == b.s.thing_types.end()) not_found("Thing Type " + name + " cannot be found.");
    it->second.deprecated = !undo;
    it->second.deprecation_date = undo ? 0 : now();
    b.touch(object_kind::thing_type, name);
  });
}

registry::ticket registry::delete_thing_type(const std::string& name) {
  return mutate([&](batch& b) {
    auto it = b.s.thing_types.find(name);
    if (it == b.s.thing_types.end()) not_found("Thing Type " + name + " cannot be found.");
    if (!it->second.deprecated)
      invalid("Thing type " + name + " must be deprecated before it can be deleted.");
    for (const auto& [thing_name, t] : b.s.things)
      if (t.type_name == name)
        invalid("Thing type " + name + " is still associated with thing " + thing_name + ".");
    b.s.thing_types.erase(it);
    b.touch(object_kind::thing_type, name);
    b.drop_tags(type_key(name));
  });
}

std::optional<thing_type> registry::find_thing_type(const std::string& name) const {
  auto lock = read_lock();
  const auto& types = committed_->thing_types;
  auto it = types.find(name);
  if (it == types.end()) return std::nullopt;
  return it->second;
}

page<thing_type> registry::list_thing_types(const std::string& name_filter,
                                            const std::string& token, std::size_t max) const {
  auto lock = read_lock();
  std::vector<std::pair<std::string, const thing_type*>> keyed;
  for (const auto& [name, t] : committed_->thing_types)
    if (name_filter.empty() || name == name_filter) keyed.emplace_back(name, &t);
  return paginate(std::move(keyed), token, max);
}

// ---- thing groups ---------------------------------------------------------------------------

std::pair<thing_group, registry::ticket> registry::create_thing_group(
    const std::string& name, const std::string& parent, const std::string& description,
    const attribute_map& attributes, const tag_list& tags) {
  check_thing_name(name, "thingGroupName");
  check_tags(tags);
  check_description(description);
  check_attributes(attributes);
  check_attribute_count(attributes, true);
  thing_group result;
  auto t = mutate([&](batch& b) {
    if (auto it = b.s.thing_groups.find(name); it != b.s.thing_groups.end()) {
      const auto& g = it->second;
      if (g.parent == parent && g.description == description && g.attributes == attributes) {
        result = g;
        return;
      }
      already_exists("Thing Group " + name + " already exists in account with different properties",
                     g.id, thing_group_arn(name));
    }
    if (!parent.empty()) {
      auto p = b.s.thing_groups.find(parent);
      if (p == b.s.thing_groups.end()) not_found("Thing Group " + parent + " cannot be found.");
      std::size_t depth = 1;
      for (const thing_group* g = &p->second; !g->parent.empty();
           g = &b.s.thing_groups.at(g->parent))
        ++depth;
      if (depth >= max_group_depth)
        invalid("Thing group hierarchy cannot be deeper than " + std::to_string(max_group_depth));
    }
    attribute_map kept = attributes;
    std::erase_if(kept, [](const auto& kv) { return kv.second.empty(); });
    thing_group created{name, new_uuid(), parent, description, kept, 1, now()};
    b.tag(group_key(name), tags);
    b.s.thing_groups[name] = created;
    b.touch(object_kind::thing_group, name);
    result = std::move(created);
  });
  return {result, t};
}

std::pair<std::int64_t, registry::ticket> registry::update_thing_group(
    const std::string& name, const std::optional<std::string>& description,
    const std::optional<attribute_map>& attributes, bool merge, std::int64_t expected_version) {
  if (attributes) check_attributes(*attributes);
  if (description) check_description(*description);
  std::int64_t version = 0;
  auto t = mutate([&](batch& b) {
    auto it = b.s.thing_groups.find(name);
    if (it == b.s.thing_groups.end()) not_found("Thing Group " + name + " cannot be found.");
    auto& g = it->second;
    if (expected_version != no_version && expected_version != g.version)
      fail(errc::version_conflict,
           "The version for thing group " + name + " does not match the expected version.");
    // Checked before anything is assigned: a refusal leaves the group as it was.
    std::optional<attribute_map> updated;
    if (attributes) {
      updated = apply_attributes(g.attributes, *attributes, merge);
      check_attribute_count(*updated, true);
    }
    if (description) g.description = *description;
    if (updated) g.attributes = std::move(*updated);
    g.version += 1;
    version = g.version;
    b.touch(object_kind::thing_group, name);
  });
  return {version, t};
}

registry::ticket registry::delete_thing_group(const std::string& name,
                                              std::int64_t expected_version) {
  return mutate([&](batch& b) {
    auto it = b.s.thing_groups.find(name);
    if (it == b.s.thing_groups.end()) return;  // like DeleteThing: idempotent
    if (expected_version != no_version && expected_version != it->second.version)
      fail(errc::version_conflict,
           "The version for thing group " + name + " does not match the expected version.");
    for (const auto& [child, g] : b.s.thing_groups)
      if (g.parent == name)
        invalid("Cannot delete thing group : " + name +
                " when there are still child groups attached to it");
    for (auto& [thing_name, t] : b.s.things)
      if (t.groups.erase(name) > 0) b.touch(object_kind::thing, thing_name);
    const std::string key = group_key(name);
    if (auto tp = b.s.target_policies.find(key); tp != b.s.target_policies.end()) {
      for (const auto& policy_name : tp->second) {
        b.s.policies.at(policy_name).targets.erase(key);
        b.touch(object_kind::policy, policy_name);
      }
      b.s.target_policies.erase(tp);
    }
    b.s.thing_groups.erase(it);
    b.touch(object_kind::thing_group, name);
    b.drop_tags(key);
    b.membership_changed();
  });
}

std::optional<thing_group> registry::find_thing_group(const std::string& name) const {
  auto lock = read_lock();
  const auto& groups = committed_->thing_groups;
  auto it = groups.find(name);
  if (it == groups.end()) return std::nullopt;
  return it->second;
}

std::vector<thing_group> registry::ancestors(const thing_group& g) const {
  auto lock = read_lock();
  const auto& groups = committed_->thing_groups;
  std::vector<thing_group> out;
  for (std::string p = g.parent; !p.empty();) {
    auto it = groups.find(p);
    if (it == groups.end()) break;
    out.insert(out.begin(), it->second);
    p = it->second.parent;
  }
  return out;
}

page<thing_group> registry::list_thing_groups(const std::string& parent, const std::string& prefix,
                                              bool recursive, const std::string& token,
                                              std::size_t max) const {
  auto lock = read_lock();
  const auto& groups = committed_->thing_groups;
  auto descends_from = [&](const thing_group& g, const std::string& ancestor) {
    for (std::string p = g.parent; !p.empty();) {
      if (p == ancestor) return true;
      auto it = groups.find(p);
      if (it == groups.end()) return false;
      p = it->second.parent;
    }
    return false;
  };
  std::vector<std::pair<std::string, const thing_group*>> keyed;
  for (const auto& [name, g] : groups) {
    if (!prefix.empty() && !name.starts_with(prefix)) continue;
    // With a parent: its children (all descendants when recursive). Without: every group.
    if (!parent.empty() && (recursive ? !descends_from(g, parent) : g.parent != parent)) continue;
    keyed.emplace_back(name, &g);
  }
  return paginate(std::move(keyed), token, max);
}

registry::ticket registry::add_thing_to_group(const std::string& group,
                                              const std::string& thing_name) {
  return mutate([&](batch& b) {
    if (!b.s.thing_groups.contains(group)) not_found("Thing Group " + group + " cannot be found.");
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    if (it->second.groups.size() >= max_groups_per_thing && !it->second.groups.contains(group))
      fail(errc::limit_exceeded, "A thing can belong to at most 10 thing groups");
    if (it->second.groups.insert(group).second) {
      b.touch(object_kind::thing, thing_name);
      b.membership_changed();
    }
  });
}

registry::ticket registry::remove_thing_from_group(const std::string& group,
                                                   const std::string& thing_name) {
  return mutate([&](batch& b) {
    if (!b.s.thing_groups.contains(group)) not_found("Thing Group " + group + " cannot be found.");
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    if (it->second.groups.erase(group) > 0) {
      b.touch(object_kind::thing, thing_name);
      b.membership_changed();
    }
  });
}

page<std::string> registry::list_things_in_group(const std::string& group, bool recursive,
                                                 const std::string& token, std::size_t max) const {
  auto lock = read_lock();
  const auto& groups = committed_->thing_groups;
  if (!groups.contains(group)) not_found("Thing Group " + group + " cannot be found.");
  std::set<std::string> wanted{group};
  if (recursive) {
    for (bool grew = true; grew;) {
      grew = false;
      for (const auto& [name, g] : groups)
        if (wanted.contains(g.parent) && wanted.insert(name).second) grew = true;
    }
  }
  std::vector<std::pair<std::string, std::string>> keyed;
  for (const auto& [name, t] : committed_->things)
    for (const auto& g : t.groups)
      if (wanted.contains(g)) {
        keyed.emplace_back(name, name);
        break;
      }
  return paginate(std::move(keyed), token, max);
}

page<thing_group> registry::list_groups_for_thing(const std::string& thing_name,
                                                  const std::string& token, std::size_t max) const {
  auto lock = read_lock();
  const auto& s = *committed_;
  auto it = s.things.find(thing_name);
  if (it == s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
  std::vector<std::pair<std::string, const thing_group*>> keyed;
  for (const auto& g : it->second.groups)
    if (auto gi = s.thing_groups.find(g); gi != s.thing_groups.end())
      keyed.emplace_back(g, &gi->second);
  return paginate(std::move(keyed), token, max);
}

// ---- the certificates attached to things ------------------------------------------------------

registry::ticket registry::attach_thing_principal(const std::string& thing_name,
                                                  const std::string& principal) {
  return mutate([&](batch& b) {
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    std::string resource = arn_resource(principal);
    if (!resource.starts_with("cert/"))
      invalid("Invalid principal: " + principal + " (expected a certificate ARN)");
    std::string id = resource.substr(5);
    if (!b.s.certificates.contains(id)) not_found("The certificate " + id + " does not exist");
    const std::string canonical = cert_key(id);
    if (it->second.principals.insert(canonical).second) {
      b.s.principal_things[canonical].insert(thing_name);
      b.touch(object_kind::thing, thing_name);
    }
  });
}

registry::ticket registry::detach_thing_principal(const std::string& thing_name,
                                                  const std::string& principal) {
  return mutate([&](batch& b) {
    auto it = b.s.things.find(thing_name);
    if (it == b.s.things.end()) not_found("Thing " + thing_name + " cannot be found.");
    std::string resource = arn_resource(principal);
    if (!resource.starts_with("cert/")) invalid("Invalid principal: " + principal);
    const std::string& canonical = resource;
    if (it->second.principals.erase(canonical) == 0) return;
    if (auto pt = b.s.principal_things.find(canonical); pt != b.s.principal_things.end()) {
      pt->second.erase(thing_name);
      if (pt->second.empty()) b.s.principal_things.erase(pt);
    }
    b.touch(object_kind::thing, thing_name);
  });
}

page<std::string> registry::list_thing_principals(const std::string& thing_name,
                                                  const std::string& token, std::size_t max) const {
  auto lock = read_lock();
  const auto& things = committed_->things;
  auto it = things.find(thing_name);
  if (it == things.end()) not_found("Thing " + thing_name + " cannot be found.");
  std::vector<std::pair<std::string, std::string>> keyed;
  for (const auto& p : it->second.principals) keyed.emplace_back(p, arn_prefix_ + p);
  return paginate(std::move(keyed), token, max);
}

page<std::string> registry::list_principal_things(const std::string& principal,
                                                  const std::string& token, std::size_t max) const {
  auto lock = read_lock();
  const auto& s = *committed_;
  std::string resource = arn_resource(principal);
  if (!resource.starts_with("cert/")) invalid("Invalid principal: " + principal);
  std::string id = resource.substr(5);
  if (!s.certificates.contains(id)) not_found("The certificate " + id + " does not exist");
  std::vector<std::pair<std::string, std::string>> keyed;
  if (auto pt = s.principal_things.find(resource); pt != s.principal_things.end())
    for (const auto& n : pt->second) keyed.emplace_back(n, n);
  return paginate(std::move(keyed), token, max);
}

}  // namespace nimbus::registry
