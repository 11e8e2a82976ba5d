#pragma once
// Bearer tokens in `<data>/tokens` (mode 0600) for the APIs that are not AWS-shaped: /metrics
// off loopback today, and the Pub/Sub, time-series and dashboard APIs as they arrive. One file
// for every token-protected API. Created on first start with one read-write token; a line is
// `read-write TOKEN` or `read-only TOKEN`, `#` starts a comment.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nimbus::registry {

enum class token_scope { read_only, read_write };

class api_tokens {
 public:
  // Reads `path`, creating it (with one read-write token) when it does not exist. `created`
  // tells the caller which happened. Malformed lines are errors naming the line.
  static api_tokens open_or_create(const std::string& path, bool& created);

  // The scope of the token an `Authorization: Bearer TOKEN` header carries; nullopt when the
  // header is absent, not a bearer token, or the token is unknown. Compared in constant time.
  std::optional<token_scope> check_bearer(std::optional<std::string_view> authorization) const;
  // The scope of a token given bare (InfluxDB's `Token X`, Basic's password, `p=`).
  std::optional<token_scope> check_token(std::string_view token) const;
  std::size_t size() const { return tokens_.size(); }

 private:
  struct entry {
    token_scope scope;
    std::string token;
  };
  std::vector<entry> tokens_;
};

}  // namespace nimbus::registry
