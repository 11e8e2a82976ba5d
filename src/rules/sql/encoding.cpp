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

}  // namespace nimbus::rules::sql
