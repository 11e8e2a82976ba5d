// Parses arbitrary bytes as an AWS IoT policy and, when they parse, evaluates the document for a
// few actions and resources under a fixed request context: nothing may crash, and the ways of
// evaluating (one document, evaluate_all, a copy) must agree. Inputs with a newline also drive a
// differential check of resource wildcards: "pattern\nsubject" is matched by a policy and by a
// naive backtracking matcher, which must give the same answer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/policy.hpp"

using namespace nimbus::policy;

namespace {

const std::string arn = "arn:aws:iot:us-east-1:123456789012:";

const simple_context& full_context() {
  static const simple_context context{
      {"iot:ClientId", "dev*1"},
      {"iot:Connection.Thing.ThingName", "lamp"},
      {"iot:Connection.Thing.ThingTypeName", "light"},
      {"iot:Connection.Thing.Attributes[location]", "ber/lin"},
      {"iot:Connection.Thing.IsAttached", "true"},
      {"iot:Certificate.Subject.CommonName", "lamp.example.com"},
      {"aws:SourceIp", "10.1.2.3"},
      {"aws:CurrentTime", "2024-06-01T12:00:00Z"},
      {"custom:Size", "42"},
      {"iot:ConnectAttributes", "PersistentConnect"},
      {"iot:ConnectAttributes", "LastWill"},
  };
  return context;
}

void check_consistent(const document& d, std::string_view action, std::string_view resource,
                      const request_context& context) {
  auto once = d.evaluate(action, resource, context);
  document copy = d;
  if (copy.evaluate(action, resource, context) != once) std::abort();
  if (evaluate_all({&d}, action, resource, context) != once) std::abort();
  if (evaluate_all({&d, nullptr, &copy}, action, resource, context) != once) std::abort();
}

// Strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF), as JSON requires.
bool valid_utf8(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  for (std::size_t i = 0; i < s.size();) {
    unsigned c = byte(i);
    std::size_t extra = c < 0x80   ? 0
                        : c < 0xc2 ? 9
                        : c < 0xe0 ? 1
                        : c < 0xf0 ? 2
                        : c < 0xf5 ? 3
                                   : 9;
    if (extra == 9 || i + extra >= s.size()) return false;
    for (std::size_t k = 1; k <= extra; ++k)
      if ((byte(i + k) & 0xc0) != 0x80) return false;
    unsigned second = extra > 0 ? byte(i + 1) : 0;
    if ((c == 0xe0 && second < 0xa0) || (c == 0xed && second >= 0xa0) ||
        (c == 0xf0 && second < 0x90) || (c == 0xf4 && second >= 0x90))
      return false;
    i += extra + 1;
  }
  return true;
}

std::size_t next_char(std::string_view s, std::size_t i) {
  ++i;
  while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80) ++i;
  return i;
}

// The obvious definition of IAM wildcards over UTF-8 characters; exponential in the worst case,
// so only used on short inputs.
bool reference_match(std::string_view p, std::string_view s, int& budget) {
  if (--budget < 0) return false;
  if (p.empty()) return s.empty();
  if (p[0] == '*') {
    for (std::size_t i = 0;; i = next_char(s, i)) {
      if (reference_match(p.substr(1), s.substr(i), budget)) return true;
      if (i >= s.size()) return false;
    }
  }
  if (s.empty()) return false;
  if (p[0] == '?') return reference_match(p.substr(1), s.substr(next_char(s, 0)), budget);
  return p[0] == s[0] && reference_match(p.substr(1), s.substr(1), budget);
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
      out += buffer;
    } else {
      out += c;
    }
  }
  return out;
}

void check_wildcards(std::string_view pattern, std::string_view subject) {
  if (pattern.size() > 64 || subject.size() > 64 || !valid_utf8(pattern) || !valid_utf8(subject))
    return;
  // 2008-10-17: `${...}` is plain text, so the pattern is nothing but wildcards and literals.
  auto text = R"({"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish",)"
              R"("Resource":"arn:)" +
              json_escape(pattern) + "\"}}";
  auto parsed = document::parse(text);
  auto* d = std::get_if<document>(&parsed);
  if (d == nullptr) std::abort();
  int budget = 200000;
  bool expected = reference_match(pattern, subject, budget);
  if (budget < 0) return;
  bool actual =
      allowed(d->evaluate("iot:Publish", "arn:" + std::string(subject), simple_context()));
  if (actual != expected) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto newline = bytes.find('\n'); newline != std::string_view::npos)
    check_wildcards(bytes.substr(0, newline), bytes.substr(newline + 1));

  auto parsed = document::parse(bytes);
  auto* d = std::get_if<document>(&parsed);
  if (d == nullptr) {
    if (std::get<parse_error>(parsed).message.empty()) std::abort();
    return 0;
  }
  const std::string resources[] = {
      arn + "client/dev*1",
      arn + "topic/things/dev*1/x",
      arn + "topicfilter/a/+/#",
      arn + "thing/lamp",
      arn + "topic/ber/lin/t",
      "*",
      arn + "topic/" + std::string(bytes.substr(0, 256)),
  };
  const char* actions[] = {"iot:Connect", "iot:Publish",        "iot:Subscribe",
                           "iot:Receive", "iot:GetThingShadow", "IOT:PUBLISH"};
  const simple_context empty;
  for (const char* action : actions) {
    for (const auto& resource : resources) {
      check_consistent(*d, action, resource, full_context());
      check_consistent(*d, action, resource, empty);
    }
  }
  return 0;
}
