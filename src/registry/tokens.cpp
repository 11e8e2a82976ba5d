#include "registry/tokens.hpp"

#include <openssl/crypto.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/random.hpp"
#include "registry/certificate_authority.hpp"

namespace nimbus::registry {

api_tokens api_tokens::open_or_create(const std::string& path, bool& created) {
  created = !std::filesystem::exists(path);
  if (created) {
    write_file_atomically(path,
                          "# Nimbus API tokens: one per line, `read-write TOKEN` or `read-only "
                          "TOKEN`.\n# Send as `Authorization: Bearer TOKEN`.\nread-write " +
                              core::random_hex(32) + "\n",
                          0600);
  }
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  api_tokens out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::string scope, token, extra;
    words >> scope;
    if (scope.empty() || scope[0] == '#') continue;
    words >> token >> extra;
    bool known_scope = scope == "read-write" || scope == "read-only";
    if (!known_scope || token.size() < 16 || !extra.empty())
      throw std::runtime_error(path + ":" + std::to_string(number) +
                               ": expected `read-write TOKEN` or `read-only TOKEN` (a token of at "
                               "least 16 characters)");
    out.tokens_.push_back(
        {scope == "read-write" ? token_scope::read_write : token_scope::read_only, token});
  }
  return out;
}

std::optional<token_scope> api_tokens::check_bearer(
    std::optional<std::string_view> authorization) const {
  if (!authorization) return std::nullopt;
  std::string_view value = *authorization;
  constexpr std::string_view prefix = "Bearer ";
  if (value.size() <= prefix.size() || value.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  value.remove_prefix(prefix.size());
  return check_token(value);
}

std::optional<token_scope> api_tokens::check_token(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  for (const auto& e : tokens_) {
    if (e.token.size() == token.size() &&
        CRYPTO_memcmp(e.token.data(), token.data(), token.size()) == 0)
      return e.scope;
  }
  return std::nullopt;
}

}  // namespace nimbus::registry
