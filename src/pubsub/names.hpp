#pragma once
// Pub/Sub resource names: projects/{project}/topics|subscriptions|snapshots/{id}. Any project
// id; resource ids as Google's: ^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$ and not starting with goog.
#include <string>
#include <string_view>
#include <variant>

#include "pubsub/status.hpp"

namespace nimbus::pubsub {

enum class resource_kind { topic, subscription, snapshot };

struct resource_name {
  std::string project;
  std::string id;
};

bool is_valid_resource_id(std::string_view id);
// The parts of `full`, or INVALID_ARGUMENT in Google's words ("Invalid [topics] name: (name=…)").
std::variant<resource_name, status> parse_name(std::string_view full, resource_kind kind);
std::string full_name(resource_kind kind, std::string_view project, std::string_view id);
// "projects/{p}", what List calls take; the project id, or INVALID_ARGUMENT.
std::variant<std::string, status> parse_project(std::string_view full);
// "topics", "subscriptions", "snapshots".
std::string_view collection(resource_kind kind);

// What a deleted topic's subscriptions name as their topic.
inline constexpr std::string_view deleted_topic = "_deleted-topic_";

}  // namespace nimbus::pubsub
