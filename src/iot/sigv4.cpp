#include "iot/sigv4.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <span>
#include <utility>

#include "core/digest.hpp"

// Verification rebuilds the canonical request from the bytes received, as botocore and
// aws-c-auth build it from the request they send, then compares signatures. Stateless and
// thread-safe: call it from any loop. Untrusted input never throws; every failure is a result.
namespace nimbus::iot {
namespace {

using std::chrono::sys_days;
using std::chrono::sys_seconds;

constexpr std::string_view algorithm_name = "AWS4-HMAC-SHA256";
constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";
// AWS refuses presigned URLs that live longer than a week.
constexpr long max_presign_expires = 7L * 24 * 3600;
// Client-supplied text echoed in messages is cut short: messages go back to whoever sent it.
constexpr std::size_t max_echo = 80;

constexpr std::string_view missing_token_type = "MissingAuthenticationTokenException";
constexpr std::string_view incomplete_type = "IncompleteSignatureException";
constexpr std::string_view unrecognized_type = "UnrecognizedClientException";
constexpr std::string_view invalid_type = "InvalidSignatureException";

constexpr std::string_view mismatch_message =
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details.";

sigv4_result& fail(sigv4_result& result, std::string_view error_type, std::string message) {
  result.ok = false;
  result.status = 403;
  result.error_type = error_type;
  result.message = std::move(message);
  return result;
}

// ---- text ----

char to_lower_ascii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

std::string to_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = to_lower_ascii(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower_ascii(a[i]) != to_lower_ascii(b[i])) return false;
  }
  return true;
}

// Python's str.split() whitespace in the ASCII range; botocore trims with it.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
         (c >= '\x1c' && c <= '\x1f');
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// `' '.join(value.split())`: trim, and every internal run of whitespace becomes one space.
void append_collapsed(std::string& out, std::string_view value) {
  bool pending_space = false;
  for (char c : trim(value)) {
    if (is_space(c)) {
      pending_space = true;
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
}

std::string echo(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, max_echo)) {
    out.push_back(c >= ' ' && c <= '~' ? c : '?');
  }
  if (text.size() > max_echo) out += "...";
  return out;
}

bool is_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

void append_encoded(std::string& out, std::string_view text, bool keep_slash) {
  constexpr std::string_view hex = "0123456789ABCDEF";
  for (char c : text) {
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(hex[byte >> 4]);
      out.push_back(hex[byte & 0x0f]);
    }
  }
}

// Malformed escapes stay literal, as Python's unquote leaves them. '+' is a space: botocore's
// own AWSRequest(params=...) sends form encoding while signing the value with %20.
std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 &&
               hex_digit(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// ---- crypto ----

using digest = core::sha256_digest;
using core::hmac_sha256;
using core::to_hex;

std::span<const unsigned char> bytes_of(std::string_view text) {
  // OpenSSL wants a valid pointer even for zero bytes.
  static constexpr unsigned char empty = 0;
  if (text.empty()) return {&empty, 0};
  return {reinterpret_cast<const unsigned char*>(text.data()), text.size()};
}

// ---- time ----

// `YYYYMMDDTHHMMSSZ`, the X-Amz-Date form.
std::optional<sys_seconds> parse_iso_basic(std::string_view text) {
  if (text.size() != 16 || text[8] != 'T' || text[15] != 'Z' || !is_digits(text.substr(0, 8)) ||
      !is_digits(text.substr(9, 6))) {
    return std::nullopt;
  }
  auto number = [&](std::size_t at, std::size_t count) {
    int value = 0;
    for (std::size_t i = at; i < at + count; ++i) value = value * 10 + (text[i] - '0');
    return value;
  };
  const std::chrono::year_month_day date{std::chrono::year{number(0, 4)},
                                         std::chrono::month{static_cast<unsigned>(number(4, 2))},
                                         std::chrono::day{static_cast<unsigned>(number(6, 2))}};
  const int hours = number(9, 2);
  const int minutes = number(11, 2);
  const int seconds = number(13, 2);
  if (!date.ok() || hours > 23 || minutes > 59 || seconds > 59) return std::nullopt;
  return sys_days{date} + std::chrono::hours{hours} + std::chrono::minutes{minutes} +
         std::chrono::seconds{seconds};
}

// The HTTP `Date` form, as botocore writes it when the request already had a Date header:
// `Thu, 26 Nov 2026 09:00:00 -0000` (also `GMT`, `UTC`, `Z`, or any `+hhmm` offset).
std::optional<sys_seconds> parse_http_date(std::string_view text) {
  std::vector<std::string_view> words;
  text = trim(text);
  if (const auto comma = text.find(','); comma != std::string_view::npos) {
    text.remove_prefix(comma + 1);  // the weekday adds nothing
  }
  while (!text.empty() && words.size() < 6) {
    text = trim(text);
    const auto end = std::min(text.find(' '), text.size());
    if (end > 0) words.push_back(text.substr(0, end));
    text.remove_prefix(end);
  }
  if (words.size() != 5 || !trim(text).empty()) return std::nullopt;
  constexpr std::array<std::string_view, 12> months = {"jan", "feb", "mar", "apr", "may", "jun",
                                                       "jul", "aug", "sep", "oct", "nov", "dec"};
  const auto month = std::find(months.begin(), months.end(), to_lower(words[1]));
  const std::string_view day = words[0];
  const std::string_view year = words[2];
  const std::string_view clock = words[3];
  const std::string_view zone = words[4];
  if (month == months.end() || !is_digits(day) || day.size() > 2 || year.size() != 4 ||
      !is_digits(year) || clock.size() != 8 || clock[2] != ':' || clock[5] != ':') {
    return std::nullopt;
  }
  char iso[17] = "YYYYMMDDTHHMMSSZ";
  std::copy(year.begin(), year.end(), iso);
  const auto month_number = static_cast<int>(month - months.begin()) + 1;
  iso[4] = static_cast<char>('0' + month_number / 10);
  iso[5] = static_cast<char>('0' + month_number % 10);
  iso[6] = day.size() == 2 ? day[0] : '0';
  iso[7] = day.back();
  for (std::size_t from : {0U, 1U, 3U, 4U, 6U, 7U}) {
    iso[9 + from - from / 3] = clock[from];
  }
  auto time = parse_iso_basic(std::string_view{iso, 16});
  if (!time) return std::nullopt;
  if (zone == "GMT" || zone == "UTC" || zone == "UT" || zone == "Z") return time;
  if (zone.size() != 5 || (zone[0] != '+' && zone[0] != '-') || !is_digits(zone.substr(1))) {
    return std::nullopt;
  }
  const int offset_minutes =
      ((zone[1] - '0') * 10 + (zone[2] - '0')) * 60 + (zone[3] - '0') * 10 + (zone[4] - '0');
  const std::chrono::minutes offset{zone[0] == '-' ? -offset_minutes : offset_minutes};
  return *time - offset;
}

std::string format_iso_basic(sys_seconds time) {
  const auto day = std::chrono::floor<std::chrono::days>(time);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss clock{time - day};
  std::string out;
  auto put = [&out](long value, int width) {
    std::string digits(static_cast<std::size_t>(width), '0');
    for (int i = width - 1; i >= 0 && value > 0; --i, value /= 10) {
      digits[static_cast<std::size_t>(i)] = static_cast<char>('0' + value % 10);
    }
    out += digits;
  };
  put(static_cast<int>(date.year()), 4);
  put(static_cast<unsigned>(date.month()), 2);
  put(static_cast<unsigned>(date.day()), 2);
  out += 'T';
  put(clock.hours().count(), 2);
  put(clock.minutes().count(), 2);
  put(static_cast<long>(clock.seconds().count()), 2);
  out += 'Z';
  return out;
}

std::string describe_window(std::chrono::seconds window) {
  if (window.count() % 60 == 0) return std::to_string(window.count() / 60) + " min.";
  return std::to_string(window.count()) + " sec.";
}

// ---- request pieces ----

struct query_param {
  std::string key;  // decoded
  std::string value;
};

std::vector<query_param> parse_query(std::string_view query) {
  std::vector<query_param> params;
  while (!query.empty()) {
    const auto end = std::min(query.find('&'), query.size());
    const std::string_view pair = query.substr(0, end);
    query.remove_prefix(std::min(end + 1, query.size()));
    if (pair.empty()) continue;
    const auto equals = std::min(pair.find('='), pair.size());
    const std::string_view value = equals < pair.size() ? pair.substr(equals + 1) : "";
    params.push_back({percent_decode(pair.substr(0, equals)), percent_decode(value)});
  }
  return params;
}

// Every parameter but the excluded ones, re-encoded with only unreserved characters left bare
// and sorted by encoded key, then encoded value (Python's sort of (key, value) tuples).
std::string canonical_query(const std::vector<query_param>& params,
                            std::initializer_list<std::string_view> excluded) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(params.size());
  for (const auto& param : params) {
    if (std::find(excluded.begin(), excluded.end(), param.key) != excluded.end()) continue;
    std::pair<std::string, std::string> pair;
    append_encoded(pair.first, param.key, false);
    append_encoded(pair.second, param.value, false);
    encoded.push_back(std::move(pair));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [key, value] : encoded) {
    if (!out.empty()) out += '&';
    out += key;
    out += '=';
    out += value;
  }
  return out;
}

// botocore's remove_dot_segments: drops "." and empty segments (so "//" collapses too), and
// ".." eats its parent; a trailing slash survives when something is left.
std::string normalize_path(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> segments;
  std::string_view rest = path;
  while (true) {
    const auto end = std::min(rest.find('/'), rest.size());
    const std::string_view segment = rest.substr(0, end);
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(segment);
    }
    if (end == rest.size()) break;
    rest.remove_prefix(end + 1);
  }
  std::string out = path.front() == '/' ? "/" : "";
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) out += '/';
    out += segments[i];
  }
  if (path.back() == '/' && !segments.empty()) out += '/';
  return out;
}

// The raw path, normalised, then encoded once more: `%2F` becomes `%252F`.
std::string canonical_uri(std::string_view raw_path) {
  std::string out;
  append_encoded(out, normalize_path(raw_path), true);
  return out;
}

std::vector<std::string_view> header_values(const signed_request& request, std::string_view name) {
  std::vector<std::string_view> values;
  for (const auto& [key, value] : request.headers) {
    if (iequals(key, name)) values.emplace_back(value);
  }
  return values;
}

std::optional<std::string_view> first_header(const signed_request& request, std::string_view name) {
  for (const auto& [key, value] : request.headers) {
    if (iequals(key, name)) return value;
  }
  return std::nullopt;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const auto end = std::min(text.find(separator), text.size());
    parts.push_back(text.substr(0, end));
    if (end == text.size()) break;
    text.remove_prefix(end + 1);
  }
  return parts;
}

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
}

// The parts of a signature, whichever of the two forms carried them.
struct signature_fields {
  std::string credential;
  std::string signed_headers;
  std::string signature;
};

// `Credential=AKID/YYYYMMDD/region/service/aws4_request`.
struct credential_scope {
  std::string_view access_key_id;
  std::string_view date;
  std::string_view region;
  std::string_view service;
};

std::optional<credential_scope> parse_credential(std::string_view credential, std::string& error) {
  const auto parts = split(credential, '/');
  if (parts.size() != 5) {
    error = "Credential should be scoped to a valid region, not '" + echo(credential) + "'. ";
    return std::nullopt;
  }
  if (parts[4] != "aws4_request") {
    error = "Credential should be scoped with a valid terminator: 'aws4_request', not '" +
            echo(parts[4]) + "'. ";
    return std::nullopt;
  }
  if (parts[0].empty() || parts[1].size() != 8 || !is_digits(parts[1]) || parts[2].empty() ||
      parts[3].empty()) {
    error = "Credential should be scoped to a valid region, not '" + echo(credential) + "'. ";
    return std::nullopt;
  }
  return credential_scope{parts[0], parts[1], parts[2], parts[3]};
}

// `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`; on failure returns an
// AWS-like explanation.
std::optional<signature_fields> parse_authorization(std::string_view header, std::string& error) {
  header = trim(header);
  const auto space = std::min(header.find_first_of(" \t"), header.size());
  if (header.substr(0, space) != algorithm_name) {
    error = "Unsupported AWS 'algorithm': '" + echo(header.substr(0, space)) +
            "'; only AWS4-HMAC-SHA256 is accepted.";
    return std::nullopt;
  }
  signature_fields fields;
  bool has_credential = false;
  bool has_signed_headers = false;
  bool has_signature = false;
  for (std::string_view item : split(header.substr(space), ',')) {
    item = trim(item);
    if (item.empty()) continue;
    const auto equals = item.find('=');
    if (equals == std::string_view::npos) {
      error = "Authorization header has a malformed part: '" + echo(item) + "'.";
      return std::nullopt;
    }
    const std::string_view key = trim(item.substr(0, equals));
    const std::string_view value = trim(item.substr(equals + 1));
    auto take = [&](bool& seen, std::string& into) {
      if (seen) {
        error = "Authorization header repeats '" + std::string(key) + "'.";
        return false;
      }
      seen = true;
      into = value;
      return true;
    };
    if (key == "Credential") {
      if (!take(has_credential, fields.credential)) return std::nullopt;
    } else if (key == "SignedHeaders") {
      if (!take(has_signed_headers, fields.signed_headers)) return std::nullopt;
    } else if (key == "Signature") {
      if (!take(has_signature, fields.signature)) return std::nullopt;
    } else {
      error = "Authorization header has an unknown part: '" + echo(key) + "'.";
      return std::nullopt;
    }
  }
  error.clear();
  if (!has_credential || fields.credential.empty()) {
    error += "Authorization header requires 'Credential' parameter. ";
  }
  if (!has_signature || fields.signature.empty()) {
    error += "Authorization header requires 'Signature' parameter. ";
  }
  if (!has_signed_headers || fields.signed_headers.empty()) {
    error += "Authorization header requires 'SignedHeaders' parameter. ";
  }
  if (!error.empty()) {
    error += "Authorization=" + echo(header);
    return std::nullopt;
  }
  return fields;
}

// Lower-case names separated by ';', "host" among them.
bool valid_signed_headers(std::string_view list, std::string& error) {
  bool has_host = false;
  for (std::string_view name : split(list, ';')) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char)) {
      error = "SignedHeaders is malformed: '" + echo(list) + "'.";
      return false;
    }
    has_host = has_host || iequals(name, "host");
  }
  if (!has_host) {
    error = "'Host' must be a 'SignedHeader' in the AWS Authorization.";
    return false;
  }
  return true;
}

std::string canonical_headers(const signed_request& request, std::string_view signed_headers) {
  std::string out;
  for (std::string_view name : split(signed_headers, ';')) {
    out += to_lower(name);
    out += ':';
    bool first = true;
    for (std::string_view value : header_values(request, name)) {
      if (!first) out += ',';
      first = false;
      append_collapsed(out, value);
    }
    out += '\n';
  }
  return out;
}

digest signing_key(std::string_view secret, const credential_scope& scope) {
  const std::string secret_key = "AWS4" + std::string(secret);
  digest key = hmac_sha256(bytes_of(secret_key), scope.date);
  key = hmac_sha256(key, scope.region);
  key = hmac_sha256(key, scope.service);
  return hmac_sha256(key, "aws4_request");
}

bool signatures_equal(std::string_view expected, std::string_view provided) {
  return expected.size() == provided.size() &&
         CRYPTO_memcmp(expected.data(), provided.data(), expected.size()) == 0;
}

const query_param* find_param(const std::vector<query_param>& params, std::string_view key) {
  for (const auto& param : params) {
    if (param.key == key) return &param;
  }
  return nullptr;
}

bool is_sha256_hex(std::string_view text) {
  return text.size() == 64 &&
         std::all_of(text.begin(), text.end(), [](char c) { return hex_digit(c) >= 0; });
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  digest out{};
  unsigned int length = 0;
  const auto input = bytes_of(data);
  EVP_Digest(input.data(), input.size(), out.data(), &length, EVP_sha256(), nullptr);
  return to_hex(out);
}

sigv4_result verify_sigv4(const signed_request& request, const secret_lookup& secret_for,
                          std::chrono::system_clock::time_point now, std::chrono::seconds max_skew,
                          sigv4_check check) {
  sigv4_result result;
  const std::string_view target = request.target;
  const auto question = std::min(target.find('?'), target.size());
  const std::string_view raw_path = target.substr(0, question);
  const std::string_view raw_query =
      question < target.size() ? target.substr(question + 1) : std::string_view{};
  const std::vector<query_param> params = parse_query(raw_query);

  const auto authorization = header_values(request, "authorization");
  const query_param* algorithm_param = find_param(params, "X-Amz-Algorithm");
  if (authorization.empty() && algorithm_param == nullptr) {
    return fail(result, missing_token_type, "Missing Authentication Token");
  }
  if (!authorization.empty() && algorithm_param != nullptr) {
    return fail(result, incomplete_type,
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or "
                "the Authorization header should be specified.");
  }
  if (authorization.size() > 1) {
    return fail(result, incomplete_type, "Only one Authorization header is allowed.");
  }
  const bool is_presigned = algorithm_param != nullptr;

  // Gather the fields from either form.
  std::string error;
  signature_fields fields;
  std::string amz_date_text;
  sys_seconds amz_date{};
  std::optional<long> expires;
  if (!is_presigned) {
    auto parsed = parse_authorization(authorization.front(), error);
    if (!parsed) return fail(result, incomplete_type, error);
    fields = std::move(*parsed);
  } else {
    for (std::string_view name : {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                                  "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"}) {
      if (std::count_if(params.begin(), params.end(),
                        [&](const query_param& p) { return p.key == name; }) > 1) {
        return fail(result, incomplete_type,
                    "Query parameter '" + std::string(name) + "' is repeated.");
      }
    }
    if (algorithm_param->value != algorithm_name) {
      return fail(result, incomplete_type,
                  "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\", not '" +
                      echo(algorithm_param->value) + "'.");
    }
    const query_param* credential = find_param(params, "X-Amz-Credential");
    const query_param* signed_headers = find_param(params, "X-Amz-SignedHeaders");
    const query_param* signature = find_param(params, "X-Amz-Signature");
    const query_param* date = find_param(params, "X-Amz-Date");
    for (auto [param, name] :
         {std::pair{credential, "X-Amz-Credential"},
          std::pair{signed_headers, "X-Amz-SignedHeaders"}, std::pair{signature, "X-Amz-Signature"},
          std::pair{date, "X-Amz-Date"}}) {
      if (param == nullptr || param->value.empty()) {
        error += "AWS query-string parameters must include '" + std::string(name) + "'. ";
      }
    }
    if (!error.empty()) {
      return fail(result, incomplete_type, error + "Re-examine the query-string.");
    }
    fields = {credential->value, signed_headers->value, signature->value};
    amz_date_text = date->value;
    // Absent in the URLs aws-iot-device-sdk v1 builds for MQTT over WebSocket; the skew window
    // then bounds them like a header-signed request.
    if (const query_param* expires_param = find_param(params, "X-Amz-Expires")) {
      const std::string_view text = expires_param->value;
      long seconds = 0;
      const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), seconds);
      if (status != std::errc{} || end != text.data() + text.size() || seconds < 1 ||
          seconds > max_presign_expires) {
        return fail(result, incomplete_type,
                    "X-Amz-Expires must be a whole number of seconds from 1 to 604800 (a week), "
                    "not '" +
                        echo(text) + "'.");
      }
      expires = seconds;
    }
  }

  const auto scope = parse_credential(fields.credential, error);
  if (!scope) return fail(result, incomplete_type, error + "Credential=" + echo(fields.credential));
  result.access_key_id = scope->access_key_id;
  result.region = scope->region;
  result.service = scope->service;
  if (!valid_signed_headers(fields.signed_headers, error)) {
    return fail(result, incomplete_type, error);
  }

  // The request time: X-Amz-Date, else the HTTP Date header (botocore's choice when the request
  // came with one). The string to sign always carries the ISO basic form.
  if (!is_presigned) {
    if (const auto header = first_header(request, "x-amz-date")) {
      amz_date_text = trim(*header);
    } else if (const auto date_header = first_header(request, "date")) {
      const auto parsed = parse_http_date(*date_header);
      if (!parsed) {
        return fail(result, incomplete_type,
                    "Date header is not a valid HTTP date: '" + echo(*date_header) + "'.");
      }
      amz_date_text = format_iso_basic(*parsed);
    } else {
      return fail(result, incomplete_type,
                  "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                  "header. Authorization=" +
                      echo(authorization.front()));
    }
  }
  if (const auto parsed = parse_iso_basic(amz_date_text)) {
    amz_date = *parsed;
  } else {
    return fail(result, incomplete_type,
                "Date must be in ISO-8601 'basic format'. Got '" + echo(amz_date_text) +
                    "'. See http://en.wikipedia.org/wiki/ISO_8601");
  }
  if (std::string_view{amz_date_text}.substr(0, 8) != scope->date) {
    return fail(result, invalid_type,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                "from HTTP: '" +
                    std::string(scope->date) + "' != '" + amz_date_text.substr(0, 8) + "', from '" +
                    amz_date_text + "'.");
  }

  const auto now_seconds = std::chrono::floor<std::chrono::seconds>(now);
  const std::string now_text = format_iso_basic(now_seconds);
  if (amz_date > now_seconds + max_skew) {
    return fail(result, invalid_type,
                "Signature not yet current: " + amz_date_text + " is still later than " +
                    format_iso_basic(now_seconds + max_skew) + " (" + now_text + " + " +
                    describe_window(max_skew) + ")");
  }
  if (expires) {
    const sys_seconds end = amz_date + std::chrono::seconds{*expires};
    if (now_seconds > end) {
      return fail(result, invalid_type,
                  "Signature expired: " + format_iso_basic(end) + " is now earlier than " +
                      now_text + " (" + amz_date_text + " + " + std::to_string(*expires) +
                      " sec.)");
    }
  } else if (amz_date < now_seconds - max_skew) {
    return fail(result, invalid_type,
                "Signature expired: " + amz_date_text + " is now earlier than " +
                    format_iso_basic(now_seconds - max_skew) + " (" + now_text + " - " +
                    describe_window(max_skew) + ")");
  }

  const auto secret = secret_for ? secret_for(scope->access_key_id) : std::nullopt;
  if (!secret) {
    return fail(result, unrecognized_type,
                "The security token included in the request is invalid.");
  }
  if (check == sigv4_check::before_body) {
    result.ok = true;
    result.status = 200;
    return result;
  }

  // Payload hash candidates. An explicit x-amz-content-sha256 is what was signed; when it names
  // a real digest the body must match it, or the body would ride along unsigned.
  std::vector<std::string> payload_hashes;
  std::optional<std::string_view> content_sha256 = first_header(request, "x-amz-content-sha256");
  if (!content_sha256 && is_presigned) {
    if (const query_param* param = find_param(params, "X-Amz-Content-Sha256")) {
      content_sha256 = param->value;
    }
  }
  if (content_sha256) {
    const std::string_view claimed = trim(*content_sha256);
    if (is_sha256_hex(claimed) && to_lower(claimed) != sha256_hex(request.body)) {
      return fail(result, invalid_type,
                  "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    payload_hashes.emplace_back(claimed);
  } else if (is_presigned) {
    // botocore, aws-c-auth and aws-iot-device-sdk v1 presign over the hash of the (empty)
    // body; S3-style presigners, which some WebSocket helpers borrow, use UNSIGNED-PAYLOAD.
    payload_hashes.emplace_back(unsigned_payload);
    payload_hashes.push_back(sha256_hex(request.body));
  } else {
    payload_hashes.push_back(sha256_hex(request.body));
  }

  // Canonical query candidates. aws-iot-device-sdk v1 appends X-Amz-Security-Token after signing.
  std::vector<std::string> queries;
  if (is_presigned) {
    queries.push_back(canonical_query(params, {"X-Amz-Signature"}));
    if (find_param(params, "X-Amz-Security-Token") != nullptr) {
      queries.push_back(canonical_query(params, {"X-Amz-Signature", "X-Amz-Security-Token"}));
    }
  } else {
    queries.push_back(canonical_query(params, {}));
  }

  const std::string uri = canonical_uri(raw_path);
  const std::string headers = canonical_headers(request, fields.signed_headers);
  // The string to sign up to the hash of the canonical request.
  std::string sign_prefix(algorithm_name);
  sign_prefix.append("\n").append(amz_date_text).append("\n").append(scope->date);
  sign_prefix.append("/").append(scope->region).append("/").append(scope->service);
  sign_prefix.append("/aws4_request\n");
  const digest key = signing_key(*secret, *scope);
  const std::string provided = to_lower(fields.signature);
  bool matched = false;
  for (const auto& query : queries) {
    for (const auto& payload_hash : payload_hashes) {
      std::string canonical_request = request.method;
      for (std::string_view part :
           {std::string_view{uri}, std::string_view{query}, std::string_view{headers},
            std::string_view{fields.signed_headers}, std::string_view{payload_hash}}) {
        canonical_request.append(1, '\n').append(part);
      }
      const std::string string_to_sign = sign_prefix + sha256_hex(canonical_request);
      // Keep comparing after a match: the time taken should not depend on which one matched.
      matched = signatures_equal(to_hex(hmac_sha256(key, string_to_sign)), provided) || matched;
    }
  }
  if (!matched) return fail(result, invalid_type, std::string(mismatch_message));

  result.ok = true;
  result.status = 200;
  return result;
}

}  // namespace nimbus::iot
