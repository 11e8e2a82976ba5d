#pragma once
// The registry's insides, shared by its implementation files (registry.cpp, things.cpp,
// certificates.cpp, policies.cpp, tags.cpp, authorization.cpp) and included by no user: what a
// view of the model is made of, the batch a mutator changes the pending view through, the delta
// that carries a change to the committed view, and the helpers several resources use.
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "policy/policy.hpp"
#include "registry/error.hpp"
#include "registry/model.hpp"
#include "registry/registry.hpp"

namespace nimbus::registry {

// A resource's tags, key to value.
using tag_set = std::map<std::string, std::string>;

// What a stored row holds. The spelling of each kind is the row's `kind` column (registry.cpp),
// so existing databases depend on it.
enum class object_kind {
  thing,
  thing_type,
  thing_group,
  certificate,
  ca_certificate,
  policy,
  tags
};

// One object as a change left it, copied out of the pending view for its row and for the
// committed view.
struct stored_object {
  object_kind kind = object_kind::thing;
  std::string name;  // the row's key: a name, a certificate's id, a tagged resource's key
  // std::monostate: the object was deleted.
  std::variant<std::monostate, thing, thing_type, thing_group, certificate, ca_certificate,
               policy_entry, tag_set>
      value;
};

// One view of the model (see registry.hpp: the pending and the committed view).
struct registry::state {
  std::map<std::string, thing> things;
  std::map<std::string, thing_type> thing_types;
  std::map<std::string, thing_group> thing_groups;
  std::map<std::string, certificate> certificates;
  std::map<std::string, ca_certificate> ca_certificates;
  std::map<std::string, policy_entry> policies;
  // Tags by resource key ("thinggroup/{name}", "thingtype/{name}", "policy/{name}",
  // "cacert/{id}"). Present only while a resource has tags.
  std::map<std::string, tag_set> tags;
  // Reverse indexes, each derived from one field alone: principal_things from
  // thing::principals, target_policies from policy_entry::targets. Mutators keep them in step
  // in the pending view; apply() patches them from the replaced and the new object.
  std::map<std::string, std::set<std::string>> principal_things;  // "cert/{id}" -> thing names
  std::map<std::string, std::set<std::string>> target_policies;   // target key -> policy names

  // Replaces `object` (or erases it, when deleted) and its index entries.
  void apply(stored_object object);
  // The object `kind`/`name` as it is now (monostate when there is none).
  stored_object copy_out(object_kind kind, const std::string& name) const;
};

// The objects one change wrote, as they are to appear in the committed view once durable.
struct registry::delta {
  std::vector<stored_object> objects;
};

namespace detail {

// Refusals; each throws `error`.
[[noreturn]] void fail(errc code, std::string message);
[[noreturn]] void invalid(std::string message);
[[noreturn]] void not_found(std::string message);
[[noreturn]] void already_exists(std::string message, std::string id, std::string arn);

// A random (version 4) UUID, the form AWS uses for thing, type and group ids.
std::string new_uuid();
std::string lowercase(std::string_view s);
bool is_valid_attribute_name(std::string_view s);

// Compiles a policy document; MalformedPolicy when it does not parse or is too large.
std::shared_ptr<const policy::document> compile(const std::string& text);

// Page tokens are opaque to clients; a token that we did not issue is refused.
std::string encode_token(const std::string& key);
std::string decode_token(const std::string& token);

// The resource part of an ARN ("cert/abc" of "arn:aws:iot:r:a:cert/abc"); "" if not an ARN.
std::string arn_resource(std::string_view arn);
// Attachments and tags are keyed by the resource part of an ARN ("cert/{id}",
// "thinggroup/{name}"), so they survive a change of the configured region or account.
std::string cert_key(std::string_view id);
std::string group_key(std::string_view name);
std::string type_key(std::string_view name);
std::string policy_key(std::string_view name);
std::string ca_key(std::string_view id);
// A stored principal or target as a key (older rows hold full ARNs).
std::string key_of(std::string stored);

// Refuses a malformed tag list (InvalidRequest, nothing changed).
void check_tags(const tag_list& tags);
// Adds or replaces `tags` on `resource`; refused (nothing changed) beyond 50 tags.
void add_tags(std::map<std::string, tag_set>& all, const std::string& resource,
              const tag_list& tags);

// Pages through `keyed`, in listing order, which is ascending key order (or descending with
// `descending`). The token names the last key returned; the next page starts at the first key
// past it, so deleting the items of a page while paging skips nothing.
// Items may be given by pointer (into a view's maps, under its lock): only the page's items are
// then copied, not every object the listing considered.
template <class T>
const T& item_of(const T& item) {
  return item;
}
template <class T>
const T& item_of(const T* item) {
  return *item;
}

template <class T>
auto paginate(std::vector<std::pair<std::string, T>> keyed, const std::string& token,
              std::size_t max, bool descending = false) {
  std::string after = decode_token(token);
  page<std::remove_cvref_t<decltype(item_of(keyed.front().second))>> out;
  std::size_t i = 0;
  if (!token.empty())
    while (i < keyed.size() && (descending ? keyed[i].first >= after : keyed[i].first <= after))
      ++i;
  for (; i < keyed.size() && out.items.size() < max; ++i)
    out.items.push_back(item_of(keyed[i].second));
  if (i < keyed.size() && !out.items.empty()) out.next_token = encode_token(keyed[i - 1].first);
  return out;
}

// Keys for paginate in creation order: newest first unless ascending; ties broken by id (a
// policy's: its name) so the order is total.
template <class T>
std::vector<std::pair<std::string, const T*>> by_creation(std::vector<const T*> items,
                                                          bool ascending) {
  auto id_of = [](const T* item) -> const std::string& {
    if constexpr (requires { item->id; })
      return item->id;
    else
      return item->name;
  };
  std::sort(items.begin(), items.end(), [ascending, &id_of](const T* a, const T* b) {
    if (a->created != b->created)
      return ascending ? a->created < b->created : a->created > b->created;
    return ascending ? id_of(a) < id_of(b) : id_of(a) > id_of(b);
  });
  // Keys that sort like the listing: fixed-width creation time, then id.
  std::vector<std::pair<std::string, const T*>> keyed;
  for (const T* item : items)
    keyed.emplace_back(fmt::format("{:020.3f}|{}", item->created, id_of(item)), item);
  return keyed;
}

}  // namespace detail

// The objects one change touched (each is written, or deleted, as a whole afterwards) and the
// certificates it made unusable. A mutator validates before it modifies `s`, so a refusal
// leaves the pending view as it was.
class registry::batch {
 public:
  explicit batch(state& pending) : s(pending) {}
  state& s;  // the pending view

  void touch(object_kind kind, std::string name) { touched.emplace(kind, std::move(name)); }
  void disable_certificate(std::string id) { disabled.push_back(std::move(id)); }
  void thing_deleted(std::string name) { deleted_things.push_back(std::move(name)); }
  void membership_changed() { groups_changed = true; }
  // Adds or replaces tags on `resource` (refused beyond 50, nothing changed); drops them all.
  void tag(const std::string& resource, const tag_list& tags) {
    if (tags.empty()) return;
    detail::add_tags(s.tags, resource, tags);
    touch(object_kind::tags, resource);
  }
  void drop_tags(const std::string& resource) {
    if (s.tags.erase(resource) > 0) touch(object_kind::tags, resource);
  }

  std::set<std::pair<object_kind, std::string>> touched;
  std::vector<std::string> disabled;
  std::vector<std::string> deleted_things;
  bool groups_changed = false;  // which groups some thing is in (on_groups_changed)
};

}  // namespace nimbus::registry
