#include "core/page_token.hpp"

namespace nimbus::core {

namespace {
constexpr std::string_view prefix = "nb1";

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
}  // namespace

std::string encode_page_token(std::string_view last_key) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(prefix);
  for (unsigned char c : last_key) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::optional<std::string> decode_page_token(std::string_view token) {
  if (token.empty()) return std::string();
  if (!token.starts_with(prefix) || (token.size() - prefix.size()) % 2 != 0) return std::nullopt;
  std::string out;
  for (std::size_t i = prefix.size(); i < token.size(); i += 2) {
    int high = nibble(token[i]);
    int low = nibble(token[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
  }
  return out;
}

}  // namespace nimbus::core
