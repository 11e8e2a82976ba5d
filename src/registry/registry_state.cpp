#include "registry/registry_state.hpp"

#include "core/page_token.hpp"

#include <cctype>
#include <variant>

#include "core/random.hpp"

namespace nimbus::registry {

namespace {

constexpr std::size_t max_tags = 50;  // per resource, as in AWS

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [extra](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos;
  });
}

// UTF-8 characters in `s` (continuation bytes not counted).
std::size_t characters(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Tag keys: 1-128 characters of letters, digits, spaces and _.:/=+-@ (non-ASCII letters are
// accepted as letters); the aws: prefix is reserved. Values: up to 256 characters.
void check_tag_key(const std::string& key) {
  bool allowed = std::all_of(key.begin(), key.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || std::isalnum(u) ||
           std::string_view(" _.:/=+-@").find(c) != std::string_view::npos;
  });
  auto n = characters(key);
  if (n < 1 || n > 128 || !allowed)
    detail::invalid("1 validation error detected: Value '" + key +
                    "' at 'tags.member.key' failed to satisfy constraint: Member must satisfy "
                    "regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$ and have "
                    "length between 1 and 128");
  if (detail::lowercase(key).starts_with("aws:"))
    detail::invalid("Tag keys starting with aws: are reserved for AWS use: " + key);
}

}  // namespace

bool is_valid_thing_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && all_of_chars(name, ":_-");
}

bool is_valid_policy_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && all_of_chars(name, "_+=,.@-");
}

namespace detail {

void fail(errc code, std::string message) {
  throw error(code, std::move(message));
}
void invalid(std::string message) {
  fail(errc::invalid_request, std::move(message));
}
void not_found(std::string message) {
  fail(errc::not_found, std::move(message));
}
void already_exists(std::string message, std::string id, std::string arn) {
  throw error(errc::already_exists, std::move(message), std::move(id), std::move(arn));
}

std::string new_uuid() {
  auto h = core::random_hex(16);
  h[12] = '4';
  h[16] = "89ab"[h[16] % 4];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_valid_attribute_name(std::string_view s) {
  return !s.empty() && s.size() <= 128 && all_of_chars(s, "_.,@/:#-");
}

std::shared_ptr<const policy::document> compile(const std::string& text) {
  // AWS counts 2048 characters without whitespace (the parser checks that); the raw text is
  // capped too, so whitespace cannot make a stored document arbitrarily large.
  if (text.size() > 20 * 1024)
    fail(errc::malformed_policy, "The policy document exceeds 20480 bytes");
  auto parsed = policy::document::parse(text);
  if (auto* refused = std::get_if<policy::parse_error>(&parsed))
    fail(errc::malformed_policy, refused->message);
  return std::make_shared<const policy::document>(std::move(std::get<policy::document>(parsed)));
}

std::string encode_token(const std::string& key) {
  return core::encode_page_token(key);
}

std::string decode_token(const std::string& token) {
  auto after = core::decode_page_token(token);
  if (!after) invalid("The pagination token is invalid.");
  return std::move(*after);
}

std::string arn_resource(std::string_view arn) {
  if (!arn.starts_with("arn:")) return {};
  std::size_t pos = 0;
  for (int colons = 0; colons < 5; ++colons) {
    pos = arn.find(':', pos);
    if (pos == std::string_view::npos) return {};
    ++pos;
  }
  return std::string(arn.substr(pos));
}

std::string cert_key(std::string_view id) {
  return "cert/" + std::string(id);
}
std::string group_key(std::string_view name) {
  return "thinggroup/" + std::string(name);
}
std::string type_key(std::string_view name) {
  return "thingtype/" + std::string(name);
}
std::string policy_key(std::string_view name) {
  return "policy/" + std::string(name);
}
std::string ca_key(std::string_view id) {
  return "cacert/" + std::string(id);
}
std::string key_of(std::string stored) {
  return stored.starts_with("arn:") ? arn_resource(stored) : stored;
}

void check_tags(const tag_list& tags) {
  for (const auto& [key, value] : tags) {
    check_tag_key(key);
    if (characters(value) > 256)
      invalid("The value of tag " + key + " is longer than 256 characters");
  }
}

void add_tags(std::map<std::string, tag_set>& all, const std::string& resource,
              const tag_list& tags) {
  if (tags.empty()) return;
  tag_set updated;
  if (auto it = all.find(resource); it != all.end()) updated = it->second;
  for (const auto& [key, value] : tags) updated[key] = value;
  if (updated.size() > max_tags)
    fail(errc::limit_exceeded, "A resource can have at most " + std::to_string(max_tags) + " tags");
  all[resource] = std::move(updated);
}

}  // namespace detail

}  // namespace nimbus::registry
