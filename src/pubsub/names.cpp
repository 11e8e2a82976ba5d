#include "pubsub/names.hpp"

namespace nimbus::pubsub {

namespace {

bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_valid_project(std::string_view project) {
  return !project.empty() && project.size() <= 255 && project.find('/') == std::string_view::npos;
}

status invalid_name(resource_kind kind, std::string_view full) {
  return status::error(code::invalid_argument, "Invalid [" + std::string(collection(kind)) +
                                                   "] name: (name=" + std::string(full) + ")");
}

}  // namespace

std::string_view collection(resource_kind kind) {
  switch (kind) {
    case resource_kind::topic:
      return "topics";
    case resource_kind::subscription:
      return "subscriptions";
    case resource_kind::snapshot:
      return "snapshots";
  }
  return "topics";
}

bool is_valid_resource_id(std::string_view id) {
  if (id.size() < 3 || id.size() > 255 || !is_letter(id.front())) return false;
  if (id.substr(0, 4) == "goog") return false;
  for (char c : id) {
    const bool allowed = is_letter(c) || (c >= '0' && c <= '9') ||
                         std::string_view("._~+%-").find(c) != std::string_view::npos;
    if (!allowed) return false;
  }
  return true;
}

std::variant<resource_name, status> parse_name(std::string_view full, resource_kind kind) {
  constexpr std::string_view prefix = "projects/";
  if (!full.starts_with(prefix)) return invalid_name(kind, full);
  const std::string_view rest = full.substr(prefix.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return invalid_name(kind, full);
  const std::string_view project = rest.substr(0, slash);
  const std::string_view tail = rest.substr(slash + 1);
  const std::string_view kind_name = collection(kind);
  if (!tail.starts_with(kind_name) || tail.size() <= kind_name.size() ||
      tail[kind_name.size()] != '/')
    return invalid_name(kind, full);
  const std::string_view id = tail.substr(kind_name.size() + 1);
  if (!is_valid_project(project) || !is_valid_resource_id(id)) return invalid_name(kind, full);
  return resource_name{std::string(project), std::string(id)};
}

std::string full_name(resource_kind kind, std::string_view project, std::string_view id) {
  return "projects/" + std::string(project) + "/" + std::string(collection(kind)) + "/" +
         std::string(id);
}

std::variant<std::string, status> parse_project(std::string_view full) {
  constexpr std::string_view prefix = "projects/";
  if (!full.starts_with(prefix) || !is_valid_project(full.substr(prefix.size())))
    return status::error(code::invalid_argument,
                         "Invalid [projects] name: (name=" + std::string(full) + ")");
  return std::string(full.substr(prefix.size()));
}

}  // namespace nimbus::pubsub
