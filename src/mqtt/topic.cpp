#include "mqtt/topic.hpp"

namespace nimbus::mqtt {

namespace {
std::size_t count_levels(std::string_view s) {
  std::size_t n = 1;
  for (char c : s) n += c == '/' ? 1 : 0;
  return n;
}
constexpr std::string_view share_prefix = "$share/";
}  // namespace

std::vector<std::string_view> split_levels(std::string_view topic) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  while (true) {
    auto slash = topic.find('/', start);
    if (slash == std::string_view::npos) {
      levels.push_back(topic.substr(start));
      return levels;
    }
    levels.push_back(topic.substr(start, slash - start));
    start = slash + 1;
  }
}

bool has_wildcard(std::string_view filter) {
  return filter.find_first_of("+#") != std::string_view::npos;
}

bool is_valid_topic_name(std::string_view topic, const topic_limits& limits) {
  if (topic.empty() || topic.size() > limits.max_length) return false;
  if (has_wildcard(topic)) return false;
  return count_levels(topic) <= limits.max_levels;
}

bool is_valid_topic_filter(std::string_view filter, const topic_limits& limits) {
  if (filter.empty() || filter.size() > limits.max_length) return false;
  if (count_levels(filter) > limits.max_levels) return false;
  for (std::size_t i = 0; i < filter.size(); ++i) {
    char c = filter[i];
    if (c != '+' && c != '#') continue;
    bool starts_level = i == 0 || filter[i - 1] == '/';
    bool ends_level = i + 1 == filter.size() || filter[i + 1] == '/';
    if (!starts_level || !ends_level) return false;
    if (c == '#' && i + 1 != filter.size()) return false;
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#'))
    return false;
  constexpr auto npos = std::string_view::npos;
  std::size_t f = 0;
  std::size_t t = 0;
  while (true) {
    auto f_end = filter.find('/', f);
    auto f_level = filter.substr(f, f_end == npos ? npos : f_end - f);
    if (f_level == "#") return true;
    auto t_end = topic.find('/', t);
    auto t_level = topic.substr(t, t_end == npos ? npos : t_end - t);
    if (f_level != "+" && f_level != t_level) return false;
    if (f_end == npos || t_end == npos) {
      if (f_end == npos && t_end == npos) return true;
      // "a/#" also matches "a" (4.7.1.2).
      return t_end == npos && filter.substr(f_end + 1) == "#";
    }
    f = f_end + 1;
    t = t_end + 1;
  }
}

std::optional<shared_filter> parse_shared_filter(std::string_view filter) {
  if (filter.substr(0, share_prefix.size()) != share_prefix) return std::nullopt;
  auto rest = filter.substr(share_prefix.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) return shared_filter{rest, {}};
  return shared_filter{rest.substr(0, slash), rest.substr(slash + 1)};
}

bool is_valid_shared_filter(std::string_view filter, const topic_limits& limits) {
  auto shared = parse_shared_filter(filter);
  if (!shared) return false;
  if (shared->group.empty() || has_wildcard(shared->group)) return false;
  return is_valid_topic_filter(shared->filter, limits);
}

}  // namespace nimbus::mqtt
