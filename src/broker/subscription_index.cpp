#include "broker/subscription_index.hpp"

#include <algorithm>
#include <map>
#include <mutex>

#include "mqtt/topic.hpp"

namespace nimbus::broker {

namespace {
struct entry {
  session_ptr target;
  mqtt::subscription_options options;
  std::uint32_t subscription_id;
};

struct service_entry {
  std::uint64_t id;
  service_handler handler;
};

struct shared_group {
  std::vector<entry> members;
  mutable std::atomic<std::size_t> next{0};  // round-robin under the shared lock
};

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
}  // namespace

struct subscription_index::node {
  std::unordered_map<std::string, std::unique_ptr<node>, string_hash, std::equal_to<>> children;
  std::vector<entry> subscribers;
  std::map<std::string, std::unique_ptr<shared_group>, std::less<>> groups;
  std::vector<service_entry> services;

  bool empty() const {
    return children.empty() && subscribers.empty() && groups.empty() && services.empty();
  }
};

subscription_index::subscription_index() : root_(std::make_unique<node>()) {}
subscription_index::~subscription_index() = default;

subscription_index::node* subscription_index::find_or_create(std::string_view filter) {
  node* n = root_.get();
  for (auto level : mqtt::split_levels(filter)) {
    auto it = n->children.find(level);
    if (it == n->children.end())
      it = n->children.emplace(std::string(level), std::make_unique<node>()).first;
    n = it->second.get();
  }
  return n;
}

void subscription_index::subscribe(std::string_view filter, std::optional<std::string_view> group,
                                   const session_ptr& target,
                                   const mqtt::subscription_options& options,
                                   std::uint32_t subscription_id) {
  std::unique_lock lock(mutex_);
  node* n = find_or_create(filter);
  std::vector<entry>* list = &n->subscribers;
  if (group) {
    auto it = n->groups.find(*group);
    if (it == n->groups.end())
      it = n->groups.emplace(std::string(*group), std::make_unique<shared_group>()).first;
    list = &it->second->members;
  }
  for (auto& e : *list) {
    if (e.target.get() == target.get()) {
      e.options = options;
      e.subscription_id = subscription_id;
      return;
    }
  }
  list->push_back({target, options, subscription_id});
  count_.fetch_add(1, std::memory_order_relaxed);
}

bool subscription_index::unsubscribe(std::string_view filter, std::optional<std::string_view> group,
                                     const session* target) {
  std::unique_lock lock(mutex_);
  node* n = root_.get();
  for (auto level : mqtt::split_levels(filter)) {
    auto it = n->children.find(level);
    if (it == n->children.end()) return false;
    n = it->second.get();
  }
  std::vector<entry>* list = &n->subscribers;
  if (group) {
    auto it = n->groups.find(*group);
    if (it == n->groups.end()) return false;
    list = &it->second->members;
  }
  auto it = std::find_if(list->begin(), list->end(),
                         [&](const entry& e) { return e.target.get() == target; });
  if (it == list->end()) return false;
  list->erase(it);
  count_.fetch_sub(1, std::memory_order_relaxed);
  if (group && list->empty()) n->groups.erase(n->groups.find(*group));
  prune(filter);
  return true;
}

void subscription_index::subscribe_service(std::string_view filter, std::uint64_t id,
                                           service_handler handler) {
  std::unique_lock lock(mutex_);
  find_or_create(filter)->services.push_back({id, std::move(handler)});
}

bool subscription_index::unsubscribe_service(std::string_view filter, std::uint64_t id) {
  std::unique_lock lock(mutex_);
  node* n = root_.get();
  for (auto level : mqtt::split_levels(filter)) {
    auto it = n->children.find(level);
    if (it == n->children.end()) return false;
    n = it->second.get();
  }
  auto it = std::find_if(n->services.begin(), n->services.end(),
                         [&](const service_entry& e) { return e.id == id; });
  if (it == n->services.end()) return false;
  n->services.erase(it);
  prune(filter);
  return true;
}

// Removes empty nodes along `filter`'s path so the trie does not grow without bound.
void subscription_index::prune(std::string_view filter) {
  auto levels = mqtt::split_levels(filter);
  std::vector<node*> path{root_.get()};
  for (auto level : levels) {
    auto it = path.back()->children.find(level);
    if (it == path.back()->children.end()) return;
    path.push_back(it->second.get());
  }
  for (std::size_t i = levels.size(); i > 0; --i) {
    if (!path[i]->empty()) return;
    auto& siblings = path[i - 1]->children;
    siblings.erase(siblings.find(levels[i - 1]));
  }
}

void subscription_index::match(std::string_view topic, std::vector<subscription_match>& out,
                               std::vector<service_handler>& services) const {
  auto levels = mqtt::split_levels(topic);
  std::shared_lock lock(mutex_);
  match_level(*root_, levels, 0, !topic.empty() && topic[0] == '$', out, services);
}

void subscription_index::match_level(const node& n, const std::vector<std::string_view>& levels,
                                     std::size_t depth, bool dollar_topic,
                                     std::vector<subscription_match>& out,
                                     std::vector<service_handler>& services) const {
  auto emit = [&](const node& at) {
    for (const auto& e : at.services) services.push_back(e.handler);
    for (const auto& e : at.subscribers)
      out.push_back({e.target, e.options, e.subscription_id, false});
    for (const auto& [name, g] : at.groups) {
      if (g->members.empty()) continue;
      // Prefer a connected member: a message for the group should not wait on an offline one.
      std::size_t start = g->next.fetch_add(1, std::memory_order_relaxed);
      const entry* chosen = &g->members[start % g->members.size()];
      for (std::size_t i = 0; i < g->members.size(); ++i) {
        const auto& candidate = g->members[(start + i) % g->members.size()];
        std::lock_guard session_lock(candidate.target->mutex);
        if (candidate.target->link) {
          chosen = &candidate;
          break;
        }
      }
      out.push_back({chosen->target, chosen->options, chosen->subscription_id, true});
    }
  };
  // A leading wildcard never matches a `$` topic (MQTT 4.7.2).
  bool wildcards_allowed = !(depth == 0 && dollar_topic);
  if (wildcards_allowed) {
    if (auto it = n.children.find("#"); it != n.children.end()) emit(*it->second);
  }
  if (depth == levels.size()) {
    emit(n);
    return;
  }
  if (auto it = n.children.find(levels[depth]); it != n.children.end()) {
    const node& next = *it->second;
    match_level(next, levels, depth + 1, dollar_topic, out, services);
  }
  if (wildcards_allowed) {
    if (auto it = n.children.find("+"); it != n.children.end())
      match_level(*it->second, levels, depth + 1, dollar_topic, out, services);
  }
}

}  // namespace nimbus::broker
