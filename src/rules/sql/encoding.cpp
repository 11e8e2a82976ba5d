// encode(), decode() and the hash functions (OpenSSL's digests, as lowercase hex).
#include "rules/sql/encoding.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

#include <openssl/evp.h>

#include "rules/sql/functions.hpp"

namespace nimbus::rules::sql {
namespace {

constexpr auto v1 = sql_version::v2015_10_08;
constexpr auto v2 = sql_version::v2016_03_23;

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// The scheme argument: only 'base64' exists (AWS compares it as a literal; any case here).
bool is_base64_scheme(const value& scheme) {
  return scheme.type() == sql_type::string &&
         equals_ignore_case(view_of(scheme.json().get_string()), "base64");
}

// encode(*, 'base64') encodes the payload's bytes, JSON or not; any other value its string form,
// a nested SELECT's row (its * is not the payload) among them.
value fn_encode(eval_state& state, const call_args& call) {
  if (!is_base64_scheme(call.values[1])) return {};
  if (call.first_is_star) return string_result(base64_encode(state.payload), state);
  std::string scratch;
  std::string_view text;
  if (!text_argument(call.values[0], state, scratch, text)) return {};
  return string_result(base64_encode(text), state);
}

// decode(x, 'base64'): JSON comes back as the value it spells (an object to reach into, or a
// number, as in AWS's examples), anything else as a String; bad base64 is Null, as AWS says.
value fn_decode(eval_state& state, const call_args& call) {
  if (!is_base64_scheme(call.values[1])) return {};
  std::string scratch;
  std::string_view text;
  if (!text_argument(call.values[0], state, scratch, text)) return {};
  const auto bytes = base64_decode(text);
  if (!bytes) return make_null();
  value parsed = parse_json_value(*bytes, state);
  if (!parsed.is_undefined()) return parsed;
  return string_result(*bytes, state);
}

value hashed(eval_state& state, const call_args& call, const EVP_MD* algorithm) {
  std::string scratch;
  std::string_view text;
  if (!text_argument(call.values[0], state, scratch, text) || algorithm == nullptr) return {};
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &length, algorithm, nullptr) != 1) return {};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xF];
  }
  return string_result(out, state);
}

value fn_md5(eval_state& s, const call_args& c) {
  return hashed(s, c, EVP_md5());
}
value fn_sha1(eval_state& s, const call_args& c) {
  return hashed(s, c, EVP_sha1());
}
value fn_sha224(eval_state& s, const call_args& c) {
  return hashed(s, c, EVP_sha224());
}
value fn_sha256(eval_state& s, const call_args& c) {
  return hashed(s, c, EVP_sha256());
}
value fn_sha384(eval_state& s, const call_args& c) {
  return hashed(s, c, EVP_sha384());
}
value fn_sha512(eval_state& s, const call_args& c) {
  return hashed(s, c, EVP_sha512());
}

// md2 is in AWS's list too; OpenSSL 3 has retired it, so it stays an unknown function here.
const function_info encoding_table[] = {
    {"decode", 2, 2, v2, fn_decode, false}, {"encode", 2, 2, v2, fn_encode, false},
    {"md5", 1, 1, v1, fn_md5, false},       {"sha1", 1, 1, v1, fn_sha1, false},
    {"sha224", 1, 1, v1, fn_sha224, false}, {"sha256", 1, 1, v1, fn_sha256, false},
    {"sha384", 1, 1, v1, fn_sha384, false}, {"sha512", 1, 1, v1, fn_sha512, false},
};

}  // namespace

std::span<const function_info> encoding_functions() {
  return encoding_table;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  const auto byte = [&bytes](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i]));
  };
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t group = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += alphabet[(group >> 18) & 63];
    out += alphabet[(group >> 12) & 63];
    out += alphabet[(group >> 6) & 63];
    out += alphabet[group & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t group = byte(i) << 16;
    out += alphabet[(group >> 18) & 63];
    out += alphabet[(group >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t group = (byte(i) << 16) | (byte(i + 1) << 8);
    out += alphabet[(group >> 18) & 63];
    out += alphabet[(group >> 12) & 63];
    out += alphabet[(group >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::size_t padding = 0;
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
    ++padding;
  }
  if (padding > 2 || text.size() % 4 == 1) return std::nullopt;
  if (padding > 0 && (text.size() + padding) % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const int six = sextet(c);
    if (six < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(six);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFFu);
    }
  }
  return out;
}

}  // namespace nimbus::rules::sql
