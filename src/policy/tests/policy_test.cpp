#include "policy/policy.hpp"

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#ifndef NIMBUS_POLICY_CASES
#error "NIMBUS_POLICY_CASES must name evaluation_cases.json"
#endif

namespace nimbus::policy {
namespace {

namespace json = boost::json;

const std::string arn_prefix = "arn:aws:iot:us-east-1:123456789012:";

std::optional<document> parse_ok(std::string_view text) {
  auto result = document::parse(text);
  if (auto* error = std::get_if<parse_error>(&result)) {
    ADD_FAILURE() << "refused: " << error->message << "\n" << text;
    return std::nullopt;
  }
  return std::get<document>(std::move(result));
}

std::string parse_message(std::string_view text) {
  auto result = document::parse(text);
  if (auto* error = std::get_if<parse_error>(&result)) return error->message;
  return "(parsed)";
}

std::string publish_policy(std::string_view resource) {
  return R"({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":")" +
         std::string(resource) + "\"}}";
}

// ---------------------------------------------------------------------------------------------
// Parsing

TEST(policy_parse, accepts_valid_documents) {
  const char* valid[] = {
      R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]})",
      R"({"Version":"2008-10-17","Statement":{"Effect":"Deny","Action":["iot:Publish"],"Resource":["*"]}})",
      R"({"Statement":{"Effect":"Allow","NotAction":"iot:Connect","NotResource":"arn:aws:iot:*:*:client/x"}})",
      R"({"Version":"2012-10-17","Id":"p1","Statement":[{"Sid":"one","Effect":"Allow","Action":"*","Resource":"*"},
          {"Sid":"two","Effect":"Deny","Action":"iot:Receive","Resource":"arn:aws:iot:us-east-1:1:topic/${iot:ClientId}"}]})",
      R"({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*",
          "Condition":{}}})",
      R"({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*",
          "Condition":{
            "StringEquals":{"iot:ClientId":"a"},"StringNotEquals":{"iot:ClientId":["b","c"]},
            "StringEqualsIgnoreCase":{"k":"a"},"StringNotEqualsIgnoreCase":{"k":"a"},
            "StringLike":{"k":"a*"},"StringNotLike":{"k":"?"},
            "NumericEquals":{"n":1},"NumericNotEquals":{"n":"2"},"NumericLessThan":{"n":1.5},
            "NumericLessThanEquals":{"n":"-3"},"NumericGreaterThan":{"n":"1e3"},
            "NumericGreaterThanEquals":{"n":0},
            "DateEquals":{"d":"2024-01-01"},"DateNotEquals":{"d":"2024-01-01T10:00:00Z"},
            "DateLessThan":{"d":"2024-01-01T10:00:00.123+02:00"},"DateLessThanEquals":{"d":"1700000000"},
            "DateGreaterThan":{"d":"2024-02-29T00:00"},"DateGreaterThanEquals":{"d":"2024-01-01"},
            "Bool":{"b":true},"BinaryEquals":{"x":"QmluYXJ5"},
            "IpAddress":{"aws:SourceIp":["10.0.0.0/8","::1","2001:db8::/32"]},
            "NotIpAddress":{"aws:SourceIp":"192.168.0.1/32"},
            "ArnEquals":{"a":"arn:aws:iot:*:*:thing/x"},"ArnLike":{"a":"*"},
            "ArnNotEquals":{"a":"arn:aws:iot:*:*:thing/y"},"ArnNotLike":{"a":"arn:*"},
            "Null":{"k":"true","j":false},
            "StringEqualsIfExists":{"k":"a"},"NumericLessThanIfExists":{"n":1},
            "ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect","LastWill"]},
            "ForAnyValue:StringLikeIfExists":{"iot:ConnectAttributes":"Last*"}}}})",
  };
  for (const char* text : valid) parse_ok(text);
}

struct malformed_case {
  std::string text;
  std::string message_part;
};

TEST(policy_parse, refuses_malformed_documents) {
  auto statement = [](std::string_view body) {
    return R"({"Version":"2012-10-17","Statement":[)" + std::string(body) + "]}";
  };
  auto with_condition = [&](std::string_view condition) {
    return statement(R"({"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":)" +
                     std::string(condition) + "}");
  };
  const malformed_case cases[] = {
      {"", "invalid JSON"},
      {"{", "invalid JSON"},
      {"{\"Version\":\"2012-10-17\",}", "invalid JSON"},
      {publish_policy("*") + " trailing", "invalid JSON"},
      {"{\"a\":1} /* comment */", "invalid JSON"},
      {"{\"Version\":\"\xff\xfe\"}", "invalid JSON"},
      {std::string(500, '[') + std::string(500, ']'), "invalid JSON"},
      {"[]", "must be a JSON object"},
      {"null", "must be a JSON object"},
      {"\"policy\"", "must be a JSON object"},
      {R"({"Version":"2012-10-17"})", "has no Statement"},
      {R"({"Version":"2012-10-18","Statement":[]})", "Version must be"},
      {R"({"Version":2012,"Statement":[]})", "Version must be"},
      {R"({"Version":"2012-10-17","Id":5,"Statement":[]})", "Id must be a string"},
      {R"({"Version":"2012-10-17","Statements":[]})", "unknown element \"Statements\""},
      {R"({"Version":"2012-10-17","Statement":"Allow"})", "Statement must be an object or"},
      {R"({"Version":"2012-10-17","Statement":[]})", "Statement must not be an empty array"},
      {statement("1"), "Statement[0] must be an object"},
      {statement(R"({"Action":"iot:*","Resource":"*"})"), "Statement[0] has no Effect"},
      {statement(R"({"Effect":"allow","Action":"iot:*","Resource":"*"})"),
       "Statement[0].Effect must be \"Allow\" or \"Deny\""},
      {statement(R"({"Effect":true,"Action":"iot:*","Resource":"*"})"), "Effect must be"},
      {statement(R"({"Effect":"Allow","Resource":"*"})"), "has no Action or NotAction"},
      {statement(R"({"Effect":"Allow","Action":"iot:*","NotAction":"iot:*","Resource":"*"})"),
       "has both Action and NotAction"},
      {statement(R"({"Effect":"Allow","Action":5,"Resource":"*"})"),
       "Action must be a string or an array of strings"},
      {statement(R"({"Effect":"Allow","Action":[],"Resource":"*"})"),
       "Action must not be an empty array"},
      {statement(R"({"Effect":"Allow","Action":["iot:Connect",7],"Resource":"*"})"),
       "Action[1] must be a string"},
      {statement(R"({"Effect":"Allow","Action":[""],"Resource":"*"})"),
       "Action[0] must not be empty"},
      {statement(R"({"Effect":"Allow","Action":"publish","Resource":"*"})"),
       "is not \"*\" or \"service:action\""},
      {statement(R"({"Effect":"Allow","Action":"iot:*"})"), "has no Resource or NotResource"},
      {statement(R"({"Effect":"Allow","Action":"iot:*","Resource":"*","NotResource":"*"})"),
       "has both Resource and NotResource"},
      {statement(R"({"Effect":"Allow","Action":"iot:*","Resource":"topic/a"})"),
       "Resource \"topic/a\" is not \"*\" or an ARN"},
      {statement(R"({"Effect":"Allow","Action":"iot:*","NotResource":""})"),
       "NotResource must not be empty"},
      {statement(R"({"Effect":"Allow","Action":"iot:*","Resource":{"a":1}})"),
       "Resource must be a string or an array"},
      {statement(R"({"Effect":"Allow","Principal":"*","Action":"iot:*","Resource":"*"})"),
       "Statement[0] has an unknown element \"Principal\""},
      {statement(R"({"Sid":1,"Effect":"Allow","Action":"iot:*","Resource":"*"})"),
       "Sid must be a string"},
      {R"({"Statement":{"Effect":"Allow","Action":"iot:*"}})",
       "Policy document is malformed: Statement has no Resource"},
      {with_condition("\"x\""), "Condition must be an object"},
      {with_condition(R"({"StringEqualz":{"k":"v"}})"), "unknown operator \"StringEqualz\""},
      {with_condition(R"({"NullIfExists":{"k":"true"}})"), "unknown operator"},
      {with_condition(R"({"ForAllValues:Foo":{"k":"v"}})"), "unknown operator"},
      {with_condition(R"({"ForEachValue:StringEquals":{"k":"v"}})"), "unknown operator"},
      {with_condition(R"({"IfExists":{"k":"v"}})"), "unknown operator"},
      {with_condition(R"({"stringequals":{"k":"v"}})"), "unknown operator"},
      {with_condition(R"({"StringEquals":"v"})"), "must be an object of condition keys"},
      {with_condition(R"({"StringEquals":{"k":null}})"), "must be a string, number or boolean"},
      {with_condition(R"({"StringEquals":{"k":[]}})"), "must not be an empty array"},
      {with_condition(R"({"StringEquals":{"k":[{"a":1}]}})"), "must be a string, number"},
      {with_condition(R"({"StringEquals":{"":"v"}})"), "empty condition key"},
      {with_condition(R"({"NumericEquals":{"n":"ten"}})"), "value \"ten\" is not a number"},
      {with_condition(R"({"NumericEquals":{"n":"1.5x"}})"), "is not a number"},
      {with_condition(R"({"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}})"),
       "is not an IP address or CIDR block"},
      {with_condition(R"({"IpAddress":{"aws:SourceIp":"300.1.1.1"}})"), "is not an IP address"},
      {with_condition(R"({"NotIpAddress":{"aws:SourceIp":"2001:db8::/129"}})"),
       "is not an IP address"},
      {with_condition(R"({"IpAddress":{"aws:SourceIp":"10.0.0.0/"}})"), "is not an IP address"},
      {with_condition(R"({"DateLessThan":{"aws:CurrentTime":"yesterday"}})"), "is not a date"},
      {with_condition(R"({"DateLessThan":{"aws:CurrentTime":"2024-02-30"}})"), "is not a date"},
      {with_condition(R"({"DateLessThan":{"aws:CurrentTime":"2024-01-01T25:00:00Z"}})"),
       "is not a date"},
      {with_condition(R"({"Null":{"k":"maybe"}})"), "is not \"true\" or \"false\""},
  };
  for (const auto& c : cases) {
    auto message = parse_message(c.text);
    EXPECT_NE(message.find(c.message_part), std::string::npos)
        << "document: " << c.text.substr(0, 200) << "\nmessage: " << message
        << "\nexpected to contain: " << c.message_part;
    EXPECT_EQ(message.rfind("Policy document is ", 0), 0u) << message;
  }
}

TEST(policy_parse, names_the_statement_in_messages) {
  EXPECT_EQ(parse_message(R"({"Version":"2012-10-17","Statement":[
      {"Effect":"Allow","Action":"iot:*","Resource":"*"},{"Action":"iot:*","Resource":"*"}]})"),
            "Policy document is malformed: Statement[1] has no Effect");
}

// A document of exactly `characters` non-whitespace characters, padded in the resource.
std::string policy_of_size(std::size_t characters, std::string_view pad = "a") {
  auto base = publish_policy(arn_prefix + "topic/");
  std::string padding;
  for (std::size_t i = base.size(); i < characters; ++i) padding += pad;
  return publish_policy(arn_prefix + "topic/" + padding);
}

TEST(policy_parse, limits_size_to_2048_characters_without_whitespace) {
  ASSERT_EQ(policy_of_size(2048).size(), 2048u);
  EXPECT_TRUE(parse_ok(policy_of_size(2048)));
  EXPECT_EQ(parse_message(policy_of_size(2049)),
            "Policy document is too large: it exceeds 2048 characters, excluding whitespace");

  // Whitespace is free: the same 2048 characters pretty-printed still fit.
  auto spaced = policy_of_size(2048);
  spaced.insert(1, std::string(3000, ' '));
  spaced.insert(spaced.size() - 1, "\n\t\r\n  ");
  EXPECT_TRUE(parse_ok(spaced));

  // A character is a character, not a byte.
  auto accented = policy_of_size(2048, "\xc3\xa9");
  EXPECT_GT(accented.size(), 2048u);
  EXPECT_TRUE(parse_ok(accented));
  EXPECT_NE(parse_message(policy_of_size(2049, "\xc3\xa9")).find("too large"), std::string::npos);
}

TEST(policy_parse, survives_hostile_input) {
  // Nothing here may throw or crash; each is simply refused.
  const std::string hostile[] = {
      std::string("\0\0\0", 3),
      std::string(100000, '{'),
      std::string(3000, ' ') + "{",
      R"({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*",
          "Condition":{"StringEquals":{"k":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}}})",
  };
  for (const auto& text : hostile) EXPECT_NE(parse_message(text), "(parsed)") << text.size();
}

// ---------------------------------------------------------------------------------------------
// Evaluation table (evaluation_cases.json)

decision decision_from(std::string_view name) {
  if (name == "allow") return decision::allow;
  if (name == "deny") return decision::deny;
  if (name == "not_applicable") return decision::not_applicable;
  ADD_FAILURE() << "unknown decision " << name;
  return decision::not_applicable;
}

const char* decision_name(decision d) {
  switch (d) {
    case decision::allow:
      return "allow";
    case decision::deny:
      return "deny";
    case decision::not_applicable:
      return "not_applicable";
  }
  return "?";
}

json::value load_cases() {
  std::ifstream file(NIMBUS_POLICY_CASES);
  EXPECT_TRUE(file) << "cannot open " << NIMBUS_POLICY_CASES;
  std::stringstream buffer;
  buffer << file.rdbuf();
  boost::system::error_code ec;
  auto value = json::parse(buffer.str(), ec);
  EXPECT_FALSE(ec) << NIMBUS_POLICY_CASES << ": " << ec.message();
  return value;
}

TEST(policy_evaluate, table) {
  auto root = load_cases();
  ASSERT_TRUE(root.is_object());
  const auto& named = root.at("policies").as_object();
  const auto& cases = root.at("cases").as_array();
  EXPECT_GE(cases.size(), 100u);
  std::size_t run = 0;
  for (const auto& item : cases) {
    const auto& c = item.as_object();
    std::string name(c.at("name").as_string());
    SCOPED_TRACE(name);

    std::vector<document> documents;
    for (const auto& p : c.at("policies").as_array()) {
      const json::value& policy = p.is_string() ? named.at(p.as_string()) : p;
      auto parsed = parse_ok(json::serialize(policy));
      ASSERT_TRUE(parsed) << name;
      documents.push_back(std::move(*parsed));
    }
    simple_context context;
    if (const auto* values = c.if_contains("context")) {
      for (const auto& [key, value] : values->as_object()) {
        if (value.is_array()) {
          for (const auto& v : value.as_array())
            context.set(std::string(key), std::string(v.as_string()));
        } else {
          context.set(std::string(key), std::string(value.as_string()));
        }
      }
    }
    std::vector<const document*> pointers;
    for (const auto& d : documents) pointers.push_back(&d);
    std::string action(c.at("action").as_string());
    std::string resource(c.at("resource").as_string());
    auto expected = decision_from(c.at("expected").as_string());

    auto actual = evaluate_all(pointers, action, resource, context);
    EXPECT_EQ(actual, expected) << "case \"" << name << "\": " << action << " on " << resource
                                << " gave " << decision_name(actual) << ", expected "
                                << decision_name(expected);
    if (documents.size() == 1) {
      EXPECT_EQ(documents[0].evaluate(action, resource, context), expected) << name;
    }
    ++run;
  }
  EXPECT_EQ(run, cases.size());
}

// ---------------------------------------------------------------------------------------------
// Direct checks

TEST(policy_evaluate, evaluate_all_combines_documents) {
  auto allow_all = parse_ok(R"({"Version":"2012-10-17","Statement":{"Effect":"Allow",
      "Action":"iot:*","Resource":"*"}})");
  auto deny_publish = parse_ok(R"({"Version":"2012-10-17","Statement":{"Effect":"Deny",
      "Action":"iot:Publish","Resource":"*"}})");
  auto unrelated = parse_ok(R"({"Version":"2012-10-17","Statement":{"Effect":"Allow",
      "Action":"iot:GetThingShadow","Resource":"*"}})");
  ASSERT_TRUE(allow_all && deny_publish && unrelated);
  simple_context context;
  auto topic = arn_prefix + "topic/a";

  EXPECT_EQ(evaluate_all({}, "iot:Publish", topic, context), decision::not_applicable);
  EXPECT_EQ(evaluate_all({nullptr}, "iot:Publish", topic, context), decision::not_applicable);
  EXPECT_EQ(evaluate_all({&*unrelated}, "iot:Publish", topic, context), decision::not_applicable);
  EXPECT_EQ(evaluate_all({&*unrelated, nullptr, &*allow_all}, "iot:Publish", topic, context),
            decision::allow);
  EXPECT_EQ(evaluate_all({&*allow_all, &*deny_publish}, "iot:Publish", topic, context),
            decision::deny);
  EXPECT_EQ(evaluate_all({&*deny_publish, &*allow_all}, "iot:Publish", topic, context),
            decision::deny);
  EXPECT_EQ(evaluate_all({&*deny_publish, &*allow_all}, "iot:Receive", topic, context),
            decision::allow);
  EXPECT_TRUE(allowed(evaluate_all({&*allow_all}, "iot:Receive", topic, context)));
  EXPECT_FALSE(allowed(evaluate_all({&*deny_publish}, "iot:Publish", topic, context)));
}

TEST(policy_evaluate, documents_copy_and_move) {
  auto parsed = parse_ok(publish_policy(arn_prefix + "topic/a/*"));
  ASSERT_TRUE(parsed);
  simple_context context;
  auto topic = arn_prefix + "topic/a/b";
  document copy = *parsed;
  EXPECT_EQ(copy.evaluate("iot:Publish", topic, context), decision::allow);
  document moved = std::move(*parsed);
  EXPECT_EQ(moved.evaluate("iot:Publish", topic, context), decision::allow);
  // A moved-from document grants nothing.
  EXPECT_EQ(parsed->evaluate("iot:Publish", topic, context), decision::not_applicable);
  copy = moved;
  EXPECT_EQ(copy.evaluate("iot:Publish", topic, context), decision::allow);
}

TEST(policy_evaluate, simple_context_lookup) {
  simple_context context{{"iot:ClientId", "c1"}, {"iot:ConnectAttributes", "LastWill"}};
  context.set("IOT:CONNECTATTRIBUTES", "PersistentConnect");
  EXPECT_EQ(context.lookup("iot:clientid"), std::vector<std::string>{"c1"});
  EXPECT_EQ(context.lookup("iot:ConnectAttributes"),
            (std::vector<std::string>{"LastWill", "PersistentConnect"}));
  EXPECT_EQ(context.lookup("iot:ClientIdX"), std::nullopt);
  EXPECT_EQ(simple_context().lookup("iot:ClientId"), std::nullopt);
}

TEST(policy_evaluate, wildcards_on_long_and_unusual_resources) {
  simple_context context;
  auto many_stars = parse_ok(publish_policy(arn_prefix + "topic/*a*a*a*a*a*a*a*a*a*b"));
  ASSERT_TRUE(many_stars);
  // Backtracking-heavy inputs stay linear-ish and correct.
  EXPECT_EQ(
      many_stars->evaluate("iot:Publish", arn_prefix + "topic/" + std::string(200, 'a'), context),
      decision::not_applicable);
  EXPECT_EQ(many_stars->evaluate("iot:Publish", arn_prefix + "topic/" + std::string(200, 'a') + "b",
                                 context),
            decision::allow);
  auto questions = parse_ok(publish_policy(arn_prefix + "topic/??"));
  ASSERT_TRUE(questions);
  EXPECT_EQ(
      questions->evaluate("iot:Publish", arn_prefix + "topic/\xe6\x97\xa5\xe6\x9c\xac", context),
      decision::allow);  // two three-byte characters
  EXPECT_EQ(questions->evaluate("iot:Publish", arn_prefix + "topic/\xe6\x97\xa5", context),
            decision::not_applicable);
  // Stray continuation bytes must not confuse the matcher.
  EXPECT_EQ(questions->evaluate("iot:Publish", arn_prefix + "topic/\x80\x80\x80", context),
            decision::not_applicable);
  EXPECT_EQ(questions->evaluate("iot:Publish", "", context), decision::not_applicable);
}

}  // namespace
}  // namespace nimbus::policy
