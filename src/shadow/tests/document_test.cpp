// Direct tests of the shadow document API; AWS's semantics case by case are in update_cases/.
#include "shadow/document.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace nimbus::shadow {
namespace {

namespace json = boost::json;

json::value parse(std::string_view text) {
  json::error_code ec;
  auto v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return v;
}

update_result update_ok(document& doc, std::string_view payload, std::int64_t now) {
  auto result = apply_update(doc, payload, now);
  if (auto* r = std::get_if<rejection>(&result)) {
    ADD_FAILURE() << "refused " << r->code << " " << r->message << ": " << payload;
    return {};
  }
  return std::get<update_result>(std::move(result));
}

rejection update_refused(document& doc, std::string_view payload, std::int64_t now,
                         const limits& bounds = {}) {
  auto result = apply_update(doc, payload, now, bounds);
  if (auto* r = std::get_if<rejection>(&result)) return *r;
  ADD_FAILURE() << "accepted: " << payload;
  return {};
}

TEST(shadow_document, starts_as_a_shadow_that_never_existed) {
  document doc;
  EXPECT_FALSE(doc.exists());
  EXPECT_EQ(doc.version(), 0);
  EXPECT_TRUE(doc.state().empty());
  EXPECT_TRUE(doc.delta().empty());

  auto got = get_response(doc, qualified_name("lamp", ""), "", 1000);
  ASSERT_TRUE(std::holds_alternative<rejection>(got));
  const auto& r = std::get<rejection>(got);
  EXPECT_EQ(r.code, 404);
  EXPECT_EQ(r.message, "No shadow exists with name: 'lamp'");
  // AWS's 404 carries no timestamp.
  EXPECT_EQ(json::value(rejected_payload(r)),
            parse(R"({"code":404,"message":"No shadow exists with name: 'lamp'"})"));
}

TEST(shadow_document, update_then_get) {
  document doc;
  auto result = update_ok(doc, R"({"state":{"desired":{"on":true}},"clientToken":"a"})", 100);
  EXPECT_TRUE(doc.exists());
  EXPECT_EQ(doc.version(), 1);
  EXPECT_EQ(
      json::value(result.accepted),
      parse(R"({"state":{"desired":{"on":true}},"metadata":{"desired":{"on":{"timestamp":100}}},
                     "version":1,"timestamp":100,"clientToken":"a"})"));
  ASSERT_TRUE(result.delta.has_value());
  EXPECT_EQ(json::value(doc.delta()), parse(R"({"on":true})"));

  update_ok(doc, R"({"state":{"reported":{"on":true}}})", 200);
  EXPECT_TRUE(doc.delta().empty());
  auto got = get_response(doc, "lamp", R"({"clientToken":"g"})", 300);
  ASSERT_TRUE(std::holds_alternative<json::object>(got));
  EXPECT_EQ(json::value(std::get<json::object>(got)),
            parse(R"({"state":{"desired":{"on":true},"reported":{"on":true}},
                     "metadata":{"desired":{"on":{"timestamp":100}},"reported":{"on":{"timestamp":200}}},
                     "version":2,"timestamp":300,"clientToken":"g"})"));
}

TEST(shadow_document, storage_round_trip) {
  document doc;
  update_ok(doc, R"({"state":{"desired":{"a":[1,{"b":2}],"c":{"d":"e"}},"reported":{"x":1.5}}})",
            10);
  update_ok(doc, R"({"state":{"desired":{"c":{"f":null,"g":[]}}}})", 20);
  auto text = doc.to_json();
  auto loaded = document::from_json(text);
  ASSERT_TRUE(loaded.has_value()) << text;
  EXPECT_EQ(loaded->to_json(), text);
  EXPECT_EQ(loaded->version(), 2);
  EXPECT_TRUE(loaded->exists());
  EXPECT_EQ(loaded->state(), doc.state());
  EXPECT_EQ(loaded->metadata(), doc.metadata());

  ASSERT_TRUE(std::holds_alternative<json::object>(delete_response(doc, "t", "", 30)));
  auto deleted = document::from_json(doc.to_json());
  ASSERT_TRUE(deleted.has_value());
  EXPECT_FALSE(deleted->exists());
  EXPECT_EQ(deleted->version(), 2);
}

TEST(shadow_document, a_refused_update_changes_nothing) {
  document doc;
  update_ok(doc, R"({"state":{"desired":{"a":1},"reported":{"b":[1,2]}}})", 10);
  const auto before = doc.to_json();
  limits small;
  small.max_state_bytes = 40;
  const std::vector<std::string> refused = {
      "",
      "{",
      "[]",
      "\xff",
      R"({"state":{"desired":{"a":2}},"version":7})",
      R"({"state":{"desired":{"a":[null]}}})",
      R"({"state":{"reported":{"b":"0123456789012345678901234567890123456789"}}})",
      R"({"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}})",
      R"({"state":{"other":{}}})",
      R"({"state":{"desired":1}})",
      R"({"state":1})",
      R"({"desired":{"a":2}})",
      R"({"state":{"desired":{"a":2}},"clientToken":[]})",
      std::string(10000, '[') + std::string(10000, ']'),
  };
  for (const auto& payload : refused) {
    auto r = update_refused(doc, payload, 20, small);
    EXPECT_FALSE(r.message.empty()) << payload;
    EXPECT_TRUE(r.code == 400 || r.code == 409 || r.code == 413 || r.code == 415) << r.code;
    EXPECT_EQ(r.timestamp, std::optional<std::int64_t>(20));
    EXPECT_EQ(doc.to_json(), before) << payload;
  }
}

TEST(shadow_document, rejected_payload_carries_token_and_timestamp) {
  rejection r{409, "Version conflict", "tok", 55};
  EXPECT_EQ(
      json::value(rejected_payload(r)),
      parse(R"({"code":409,"message":"Version conflict","timestamp":55,"clientToken":"tok"})"));
  document doc;
  auto refused = update_refused(doc, R"({"clientToken":"t","state":{"desired":[]}})", 7);
  EXPECT_EQ(json::value(rejected_payload(refused)),
            parse(R"({"code":400,"message":"Desired node must be an object","timestamp":7,
                     "clientToken":"t"})"));
}

TEST(shadow_document, delete_keeps_the_version_counter) {
  document doc;
  update_ok(doc, R"({"state":{"reported":{"a":1}}})", 1);
  update_ok(doc, R"({"state":{"reported":{"a":2}}})", 2);
  auto deleted = delete_response(doc, "t", R"({"clientToken":"d"})", 3);
  ASSERT_TRUE(std::holds_alternative<json::object>(deleted));
  EXPECT_EQ(json::value(std::get<json::object>(deleted)),
            parse(R"({"version":2,"timestamp":3,"clientToken":"d"})"));
  EXPECT_FALSE(doc.exists());
  EXPECT_TRUE(std::holds_alternative<rejection>(delete_response(doc, "t", "", 4)));
  auto result = update_ok(doc, R"({"state":{"reported":{"b":1}}})", 5);
  EXPECT_EQ(doc.version(), 3);
  EXPECT_FALSE(result.documents.contains("previous"));
}

TEST(shadow_document, names) {
  EXPECT_EQ(qualified_name("lamp", ""), "lamp");
  EXPECT_EQ(qualified_name("lamp", "hall"), "lamp~hall");
  EXPECT_TRUE(is_valid_shadow_name("hall"));
  EXPECT_TRUE(is_valid_shadow_name("a:b_c-D9"));
  EXPECT_TRUE(is_valid_shadow_name("$package"));
  EXPECT_TRUE(is_valid_shadow_name(std::string(64, 'x')));
  EXPECT_FALSE(is_valid_shadow_name(std::string(65, 'x')));
  EXPECT_FALSE(is_valid_shadow_name(""));
  EXPECT_FALSE(is_valid_shadow_name("a/b"));
  EXPECT_FALSE(is_valid_shadow_name("a b"));
  EXPECT_FALSE(is_valid_shadow_name("a~b"));
  EXPECT_FALSE(is_valid_shadow_name("a+b"));
  EXPECT_FALSE(is_valid_shadow_name("a#"));
  EXPECT_FALSE(is_valid_shadow_name("caf\xc3\xa9"));
}

}  // namespace
}  // namespace nimbus::shadow
