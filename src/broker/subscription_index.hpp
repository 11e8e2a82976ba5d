#pragma once
// Maps topic names to the sessions subscribed to them: a trie keyed by topic level with `+`
// and `#` branches, so matching costs the topic's depth, not the number of filters. Shared
// subscriptions hang off the same nodes, one member chosen per message. Readers share a lock;
// subscribe/unsubscribe take it exclusively.
#include <atomic>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/bus.hpp"
#include "broker/session.hpp"

namespace nimbus::broker {

struct subscription_match {
  session_ptr target;
  mqtt::subscription_options options;
  std::uint32_t subscription_id = 0;
  bool shared = false;
};

// A service's handler (bus.hpp), shared so a match keeps it alive while it runs.
using service_handler = std::shared_ptr<const bus_handler>;

class subscription_index {
 public:
  subscription_index();
  ~subscription_index();

  // Adds or replaces `target`'s subscription to `filter` (shared when `group` is set).
  void subscribe(std::string_view filter, std::optional<std::string_view> group,
                 const session_ptr& target, const mqtt::subscription_options& options,
                 std::uint32_t subscription_id);
  // True when a subscription was removed.
  bool unsubscribe(std::string_view filter, std::optional<std::string_view> group,
                   const session* target);

  // A service's subscription to `filter`, told apart from its others by `id`.
  void subscribe_service(std::string_view filter, std::uint64_t id, service_handler handler);
  bool unsubscribe_service(std::string_view filter, std::uint64_t id);

  // Appends every subscription matching `topic`, one member per shared group, and to `services`
  // the handlers of matching service subscriptions.
  void match(std::string_view topic, std::vector<subscription_match>& out,
             std::vector<service_handler>& services) const;

  std::size_t size() const { return count_.load(std::memory_order_relaxed); }

 private:
  struct node;
  node* find_or_create(std::string_view filter);
  void prune(std::string_view filter);
  void match_level(const node& n, const std::vector<std::string_view>& levels, std::size_t depth,
                   bool dollar_topic, std::vector<subscription_match>& out,
                   std::vector<service_handler>& services) const;

  mutable std::shared_mutex mutex_;
  std::unique_ptr<node> root_;
  std::atomic<std::size_t> count_{0};
};

}  // namespace nimbus::broker
