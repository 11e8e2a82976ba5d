// Alert rules: every refusal in bad_rules.txt (one test each, the error's field and reason),
// defaults, the canonical JSON and its round trip, durations, templates and the tutorial's rule.
#include "alerts/rule.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <string>
#include <vector>

namespace nimbus::alerts {
namespace {

using namespace std::chrono_literals;

rule parse_ok(std::string_view json) {
  auto result = parse_rule(json);
  if (const auto* error = std::get_if<rule_error>(&result)) {
    ADD_FAILURE() << "refused: " << error->field << ": " << error->message << "\n" << json;
    return {};
  }
  return std::get<rule>(result);
}

rule_error parse_bad(std::string_view json) {
  auto result = parse_rule(json);
  if (std::holds_alternative<rule>(result)) {
    ADD_FAILURE() << "accepted: " << json;
    return {};
  }
  return std::get<rule_error>(result);
}

// The rule, to JSON and back: equal but for the secret (never shown), and the JSON a fixed
// point once the secret is gone.
void expect_round_trip(const rule& r) {
  const std::string json = to_json(r);
  rule back = parse_ok(json);
  rule expected = r;
  for (auto& n : expected.notifications) n.secret.clear();
  EXPECT_EQ(back, expected) << json;
  EXPECT_EQ(to_json(back), to_json(expected));
}

// ---- bad_rules.txt ----

struct bad_case {
  int line = 0;
  std::string name, json, field, message;
  bool has_field = false;
};

// The file's cases; a block it cannot read becomes a case named "malformed" that fails.
std::vector<bad_case> load_bad_cases() {
  std::ifstream in(NIMBUS_ALERTS_TESTS_DIR "/bad_rules.txt");
  std::vector<bad_case> cases;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("  ") && !cases.empty()) {
      cases.back().json += "\n" + line.substr(2);
      continue;
    }
    const auto space = line.find(' ');
    const std::string word = line.substr(0, space);
    const std::string rest = space == std::string::npos ? "" : line.substr(space + 1);
    if (word == "case") {
      cases.push_back({number, rest, "", "", "", false});
    } else if (cases.empty() || !(word == "rule" || word == "field" || word == "message")) {
      cases.push_back({number, "malformed: " + line, "", "", "", false});
    } else if (word == "rule") {
      cases.back().json = rest;
    } else if (word == "field") {
      cases.back().field = rest;
      cases.back().has_field = true;
    } else {
      cases.back().message = rest;
    }
  }
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<bad_case>& info) {
  std::string name = "line_" + std::to_string(info.param.line) + "_";
  for (const char c : info.param.name.substr(0, 48))
    name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

class bad_rules : public ::testing::TestWithParam<bad_case> {};

TEST_P(bad_rules, RefusedNamingFieldAndReason) {
  const bad_case& c = GetParam();
  ASSERT_FALSE(c.json.empty() || !c.has_field || c.message.empty())
      << "bad_rules.txt:" << c.line << ": a case needs rule, field and message";
  const rule_error error = parse_bad(c.json);
  EXPECT_EQ(error.field, c.field) << "bad_rules.txt:" << c.line << " (" << error.message << ")";
  EXPECT_NE(error.message.find(c.message), std::string::npos)
      << "bad_rules.txt:" << c.line << ": message \"" << error.message << "\"";
}

INSTANTIATE_TEST_SUITE_P(file, bad_rules, ::testing::ValuesIn(load_bad_cases()), case_name);

TEST(BadRulesFile, HasTheCases) {
  EXPECT_GE(load_bad_cases().size(), 40u);
}

// ---- good rules ----

constexpr std::string_view minimal =
    R"({"name":"r","selection":{"field":"t"},"condition":{"type":"threshold","operator":">","value":35}})";

TEST(AlertRule, DefaultsFilled) {
  const rule r = parse_ok(minimal);
  EXPECT_EQ(r.name, "r");
  EXPECT_EQ(r.description, "");
  EXPECT_EQ(r.level, severity::major);
  EXPECT_TRUE(r.enabled);
  EXPECT_EQ(r.select, (selection{"t", "", "", {}, {}, {}}));
  EXPECT_EQ(r.when.kind, condition_kind::threshold);
  EXPECT_EQ(r.when.op, comparison::gt);
  EXPECT_EQ(r.when.threshold, 35);
  EXPECT_EQ(r.when.pending, 0ms);
  EXPECT_EQ(r.when.clear_op, comparison::le);
  EXPECT_EQ(r.when.clear_threshold, 35);
  EXPECT_EQ(r.when.clear_pending, 0ms);
  EXPECT_TRUE(r.escalations.empty());
  EXPECT_TRUE(r.notifications.empty());
}

TEST(AlertRule, CanonicalJson) {
  EXPECT_EQ(to_json(parse_ok(minimal)),
            R"({"name":"r","description":"","severity":"major","enabled":true,)"
            R"("selection":{"field":"t","measurement":"","database":"","devices":[],"groups":[],)"
            R"("tags":{}},"condition":{"type":"threshold","operator":">","value":35,"for":"0s",)"
            R"("clear":{"operator":"<=","value":35,"for":"0s"}},"escalations":[],)"
            R"("notifications":[]})");
}

condition threshold_of(std::string_view condition_json) {
  return parse_ok(R"({"name":"r","selection":{"field":"t"},"condition":)" +
                  std::string(condition_json) + "}")
      .when;
}

TEST(AlertRule, ThresholdClearDefaultsToTheNegation) {
  const std::pair<std::string_view, comparison> negations[] = {
      {">", comparison::le}, {">=", comparison::lt}, {"<", comparison::ge}, {"<=", comparison::gt}};
  for (const auto& [op, negated] : negations) {
    const condition c = threshold_of(R"({"type":"threshold","operator":")" + std::string(op) +
                                     R"(","value":-2.5})");
    EXPECT_EQ(c.clear_op, negated) << op;
    EXPECT_EQ(c.clear_threshold, -2.5) << op;
  }
  // Only a value: the negated operator there (hysteresis); only an operator: the raise value.
  auto c = threshold_of(R"({"type":"threshold","operator":">","value":35,"clear":{"value":33}})");
  EXPECT_EQ(c.clear_op, comparison::le);
  EXPECT_EQ(c.clear_threshold, 33);
  c = threshold_of(R"({"type":"threshold","operator":">","value":35,"clear":{"operator":"<"}})");
  EXPECT_EQ(c.clear_op, comparison::lt);
  EXPECT_EQ(c.clear_threshold, 35);
  c = threshold_of(
      R"({"type":"threshold","operator":"<=","value":5,"clear":{"operator":">=","value":8,"for":"2m"}})");
  EXPECT_EQ(c.clear_op, comparison::ge);
  EXPECT_EQ(c.clear_threshold, 8);
  EXPECT_EQ(c.clear_pending, 2min);
  // Touching bounds that do not share a value are fine: raise >= 35, clear < 35.
  c = threshold_of(R"({"type":"threshold","operator":">=","value":35,"clear":{"value":35}})");
  EXPECT_EQ(c.clear_op, comparison::lt);
}

TEST(AlertRule, RangeClearBand) {
  auto c = threshold_of(R"({"type":"range","lo":10,"hi":30,"for":"30s"})");
  EXPECT_EQ(c.lo, 10);
  EXPECT_EQ(c.hi, 30);
  EXPECT_EQ(c.clear_lo, 10);
  EXPECT_EQ(c.clear_hi, 30);
  EXPECT_EQ(c.pending, 30s);
  c = threshold_of(R"({"type":"range","lo":10,"hi":30,"clear":{"lo":11,"for":"1m"}})");
  EXPECT_EQ(c.clear_lo, 11);
  EXPECT_EQ(c.clear_hi, 30);
  EXPECT_EQ(c.clear_pending, 1min);
}

TEST(AlertRule, DetectorDefaults) {
  auto c = threshold_of(R"({"type":"ewma"})");
  EXPECT_EQ(c.half_life, 20);
  EXPECT_EQ(c.k, 3);
  EXPECT_EQ(c.warmup, 30u);
  c = threshold_of(R"({"type":"mad","window":100})");
  EXPECT_EQ(c.window, 100u);
  EXPECT_EQ(c.warmup, 100u);  // a full window by default
  EXPECT_EQ(c.floor, 0);
  c = threshold_of(R"({"type":"mad","window":100.0,"warmup":5,"k":2.5,"floor":0.01})");
  EXPECT_EQ(c.window, 100u);
  EXPECT_EQ(c.warmup, 5u);
  EXPECT_EQ(c.k, 2.5);
  EXPECT_EQ(c.floor, 0.01);
  c = threshold_of(R"({"type":"flatline","count":2,"clear":{"for":"0s"}})");
  EXPECT_EQ(c.count, 2u);
  c = threshold_of(R"({"type":"no_data","for":600})");
  EXPECT_EQ(c.pending, 10min);
}

TEST(AlertRule, NumbersAndDurationsInEitherForm) {
  EXPECT_EQ(threshold_of(R"({"type":"threshold","operator":">","value":35.0})"),
            threshold_of(R"({"type":"threshold","operator":">","value":35})"));
  EXPECT_EQ(threshold_of(R"({"type":"threshold","operator":">","value":1,"for":90})").pending,
            threshold_of(R"({"type":"threshold","operator":">","value":1,"for":"1m30s"})").pending);
  EXPECT_EQ(threshold_of(R"({"type":"threshold","operator":">","value":1,"for":"1.5h"})").pending,
            90min);
  EXPECT_EQ(threshold_of(R"({"type":"threshold","operator":">","value":1e300})").threshold, 1e300);
}

TEST(AlertRule, OfflineNeedsNoField) {
  const rule r = parse_ok(
      R"({"name":"gone","condition":{"type":"offline","for":"5m"},"selection":{"groups":["floor-1"]}})");
  EXPECT_EQ(r.when.kind, condition_kind::offline);
  EXPECT_EQ(r.when.pending, 5min);
  EXPECT_EQ(r.select.groups, std::vector<std::string>{"floor-1"});
  expect_round_trip(r);
  expect_round_trip(parse_ok(R"({"name":"gone","condition":{"type":"offline","for":"5m"}})"));
}

TEST(AlertRule, SelectionTagsSortedAndLimits) {
  const rule r = parse_ok(
      R"({"name":"r","condition":{"type":"flatline"},"selection":{"field":"t","measurement":"m",)"
      R"("database":"db","devices":["d2","d1"],"tags":{"site":"a","floor":"3","b":"x"}}})");
  EXPECT_EQ(r.select.tags, (std::vector<std::pair<std::string, std::string>>{
                               {"b", "x"}, {"floor", "3"}, {"site", "a"}}));
  EXPECT_EQ(r.select.devices, (std::vector<std::string>{"d2", "d1"}));
  std::string devices = "\"d\"";
  for (int i = 1; i < 10'000; ++i) devices += ",\"d\"";
  const std::string head =
      R"({"name":"r","condition":{"type":"flatline"},"selection":{"field":"t",)";
  EXPECT_EQ(parse_ok(head + R"("devices":[)" + devices + "]}}").select.devices.size(), 10'000u);
  EXPECT_EQ(parse_bad(head + R"("devices":[)" + devices + R"(,"d"]}})").field, "selection.devices");
  // Lengths count characters: 1,024 two-byte ones are a valid description.
  std::string description;
  for (int i = 0; i < 1024; ++i) description += "\xC3\xA9";
  EXPECT_EQ(parse_ok(R"({"name":"r","description":")" + description +
                     R"(","condition":{"type":"flatline"},"selection":{"field":"t"}})")
                .description,
            description);
}

TEST(AlertRule, NotificationDefaults) {
  const rule r = parse_ok(
      R"({"name":"r","selection":{"field":"t"},"condition":{"type":"ewma"},"notifications":[)"
      R"({"type":"mqtt"},{"type":"webhook","url":"https://h.example/{rule}?d={device_id}"},)"
      R"({"type":"pubsub","topic":"projects/p1/topics/alerts","events":["updated","cleared"]}]})");
  ASSERT_EQ(r.notifications.size(), 3u);
  const notification& mqtt = r.notifications[0];
  EXPECT_EQ(mqtt.kind, notification_kind::mqtt);
  EXPECT_EQ(mqtt.target, "nimbus/alerts/{device_id}/{type}");
  EXPECT_EQ(mqtt.qos, 1);
  EXPECT_EQ(mqtt.events, 0b11101);
  EXPECT_TRUE(mqtt.sends(alert_event::raised));
  EXPECT_FALSE(mqtt.sends(alert_event::updated));
  const notification& webhook = r.notifications[1];
  EXPECT_EQ(webhook.kind, notification_kind::webhook);
  EXPECT_EQ(webhook.timeout, 5s);
  EXPECT_EQ(webhook.max_attempts, 8u);
  EXPECT_EQ(webhook.secret, "");
  const notification& pubsub = r.notifications[2];
  EXPECT_EQ(pubsub.target, "projects/p1/topics/alerts");
  EXPECT_TRUE(pubsub.sends(alert_event::updated));
  EXPECT_TRUE(pubsub.sends(alert_event::cleared));
  EXPECT_FALSE(pubsub.sends(alert_event::raised));
  expect_round_trip(r);
}

TEST(AlertRule, WebhookSecretNeverShown) {
  const rule r = parse_ok(
      R"({"name":"r","selection":{"field":"t"},"condition":{"type":"threshold","operator":">",)"
      R"("value":1},"notifications":[{"type":"webhook","url":"http://10.0.0.1:8080/hook",)"
      R"("secret":"s3cret","timeout":"250ms","max_attempts":3}]})");
  ASSERT_EQ(r.notifications.size(), 1u);
  EXPECT_EQ(r.notifications[0].secret, "s3cret");
  EXPECT_EQ(r.notifications[0].timeout, 250ms);
  const std::string json = to_json(r);
  EXPECT_EQ(json.find("s3cret"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("secret_set":true)"), std::string::npos) << json;
  expect_round_trip(r);  // "secret_set" read back and ignored
  for (const std::string_view url : {"https://user:pw@h.example:443/a?b=c#d", "http://[::1]/x",
                                     "HTTPS://[fe80::1]:8443", "https://{device_id}.example/"})
    parse_ok(R"({"name":"r","selection":{"field":"t"},"condition":{"type":"flatline"},)"
             R"("notifications":[{"type":"webhook","url":")" +
             std::string(url) + R"("}]})");
}

TEST(AlertRule, EveryKindRoundTrips) {
  const std::string_view rules[] = {
      R"({"name":"high_temperature","description":"too hot","severity":"minor","enabled":false,
          "selection":{"field":"temperature","measurement":"sensor_data","database":"nimbus",
                       "devices":["dev1"],"groups":["floor-1"],"tags":{"site":"a"}},
          "condition":{"type":"threshold","operator":">","value":35.25,"for":"1m",
                       "clear":{"operator":"<","value":33,"for":"2m"}},
          "escalations":[{"severity":"major","value":40},{"severity":"critical","value":45},
                         {"severity":"critical","after":"1h"}],
          "notifications":[{"type":"mqtt","topic":"alerts/{severity}/{event}/{status}","qos":0},
                           {"type":"webhook","url":"https://h/x","secret":"s","timeout":"1.5s",
                            "max_attempts":20,"events":["raised"]},
                           {"type":"pubsub","topic":"alerts"}]})",
      R"({"name":"cold","selection":{"field":"t"},"condition":{"type":"threshold","operator":"<=",
          "value":-10},"escalations":[{"value":-20}]})",
      R"({"name":"band","selection":{"field":"h"},"condition":{"type":"range","lo":10,"hi":30,
          "for":"30s","clear":{"lo":11,"hi":29,"for":"1m"}},"escalations":[{"after":90}]})",
      R"({"name":"spike","severity":"warning","selection":{"field":"v"},"condition":{"type":"ewma",
          "half_life":12.5,"k":4,"warmup":0,"clear":{"for":"1m"}},
          "escalations":[{"severity":"minor","value":6},{"severity":"minor","after":"10m"}]})",
      R"({"name":"outlier","selection":{"field":"v"},"condition":{"type":"mad","window":60,"k":3,
          "floor":0.01,"warmup":30},"escalations":[{"value":1e6}]})",
      R"({"name":"stuck","selection":{"field":"v"},"condition":{"type":"flatline","count":10}})",
      R"({"name":"silent","selection":{"field":"v"},"condition":{"type":"no_data","for":"10m"}})",
      R"({"name":"gone","condition":{"type":"offline","for":"720h"}})",
  };
  for (const auto json : rules) {
    SCOPED_TRACE(json);
    expect_round_trip(parse_ok(json));
  }
  const rule r = parse_ok(rules[0]);
  EXPECT_EQ(r.escalations, (std::vector<escalation>{{severity::major, 40, std::nullopt},
                                                    {severity::critical, 45, std::nullopt},
                                                    {severity::critical, std::nullopt, 1h}}));
}

// ---- durations ----

TEST(Duration, ParsesGoSyntax) {
  const std::pair<std::string_view, duration> good[] = {
      {"0", 0ms},     {"0s", 0ms},   {"500ms", 500ms},    {"90s", 90s},
      {"1m30s", 90s}, {"2h", 2h},    {"1.5h", 90min},     {"1h0m0s", 1h},
      {".5s", 500ms}, {"1.s", 1s},   {"1.25s", 1250ms},   {"2h45m30.5s", 9930500ms},
      {"-1s", -1s},   {"+3m", 3min}, {"1s500ms", 1500ms}, {"1.0000000000000s", 1s},
  };
  for (const auto& [text, expected] : good) EXPECT_EQ(parse_duration(text), expected) << text;
  for (const std::string_view bad : {"", "5", "1d", "10ns", "3us", "s", ".s", "1.0005s", "5 s",
                                     "1m-3s", "1h 2m", "-", "9999999999999999h", "1e3s"})
    EXPECT_EQ(parse_duration(bad), std::nullopt) << bad;
}

TEST(Duration, FormatsAsGo) {
  const std::pair<duration, std::string_view> cases[] = {
      {0ms, "0s"},      {1ms, "1ms"},       {500ms, "500ms"},         {1s, "1s"},
      {1500ms, "1.5s"}, {90s, "1m30s"},     {1h, "1h0m0s"},           {61001ms, "1m1.001s"},
      {-90s, "-1m30s"}, {168h, "168h0m0s"}, {3600050ms, "1h0m0.05s"},
  };
  for (const auto& [d, text] : cases) {
    EXPECT_EQ(format_duration(d), text);
    EXPECT_EQ(parse_duration(text), d) << text;
  }
  for (std::int64_t ms = 0; ms < 200'000'000; ms = ms * 3 + 7)
    EXPECT_EQ(parse_duration(format_duration(duration(ms))), duration(ms)) << ms;
}

// ---- templates, names, the tutorial ----

TEST(Template, CheckAndExpand) {
  for (const std::string_view good :
       {"", "plain/topic", "nimbus/alerts/{device_id}/{type}", "{severity}{rule}{event}{status}"})
    EXPECT_EQ(check_template(good), std::nullopt) << good;
  EXPECT_EQ(check_template("a/{devices}"),
            "unknown placeholder {devices} (one of {device_id}, {type}, {severity}, {rule}, "
            "{event}, {status})");
  EXPECT_EQ(check_template("a/{type"), "'{' at 2 is not closed");
  EXPECT_EQ(check_template("a}"), "'}' at 1 has no '{' before it");
  EXPECT_TRUE(check_template("{}")->starts_with("unknown placeholder {} (one of"));
  const template_values values{"dev1",  "high_temperature", "major", "high_temperature", "raised",
                               "active"};
  EXPECT_EQ(expand_template("nimbus/alerts/{device_id}/{type}", values),
            "nimbus/alerts/dev1/high_temperature");
  EXPECT_EQ(expand_template("{severity}-{event}-{status}-{rule}", values),
            "major-raised-active-high_temperature");
  EXPECT_EQ(expand_template("keep {other} and {open", values), "keep {other} and {open");
}

TEST(Names, EveryValueRoundTrips) {
  for (int i = 0; i <= static_cast<int>(severity::critical); ++i)
    EXPECT_EQ(parse_severity(to_string(static_cast<severity>(i))), static_cast<severity>(i));
  for (int i = 0; i <= static_cast<int>(comparison::le); ++i)
    EXPECT_EQ(parse_comparison(to_string(static_cast<comparison>(i))), static_cast<comparison>(i));
  for (int i = 0; i <= static_cast<int>(alert_event::cleared); ++i)
    EXPECT_EQ(parse_alert_event(to_string(static_cast<alert_event>(i))),
              static_cast<alert_event>(i));
  EXPECT_EQ(to_string(severity::indeterminate), "indeterminate");
  EXPECT_EQ(to_string(comparison::ge), ">=");
  EXPECT_EQ(to_string(condition_kind::no_data), "no_data");
  EXPECT_EQ(to_string(alert_event::acknowledged), "acknowledged");
  EXPECT_EQ(parse_severity("Critical"), std::nullopt);
  EXPECT_EQ(parse_comparison("=>"), std::nullopt);
  EXPECT_EQ(parse_alert_event(""), std::nullopt);
}

TEST(Comparison, Holds) {
  EXPECT_TRUE(holds(comparison::gt, 36, 35));
  EXPECT_FALSE(holds(comparison::gt, 35, 35));
  EXPECT_TRUE(holds(comparison::ge, 35, 35));
  EXPECT_FALSE(holds(comparison::ge, 34.9, 35));
  EXPECT_TRUE(holds(comparison::lt, 34, 35));
  EXPECT_FALSE(holds(comparison::lt, 35, 35));
  EXPECT_TRUE(holds(comparison::le, 35, 35));
  EXPECT_FALSE(holds(comparison::le, 35.1, 35));
}

TEST(TutorialRule, AsTheTutorialSays) {
  const rule r = tutorial_rule();
  EXPECT_EQ(r.name, "high_temperature");
  EXPECT_EQ(r.level, severity::major);
  EXPECT_FALSE(r.enabled);
  EXPECT_EQ(r.select, (selection{"temperature", "", "", {}, {}, {}}));
  EXPECT_EQ(r.when.kind, condition_kind::threshold);
  EXPECT_TRUE(holds(r.when.op, 35.1, r.when.threshold));
  EXPECT_FALSE(holds(r.when.op, 35, r.when.threshold));
  EXPECT_TRUE(holds(r.when.clear_op, 35, r.when.clear_threshold));
  EXPECT_FALSE(holds(r.when.clear_op, 35.1, r.when.clear_threshold));
  EXPECT_TRUE(r.escalations.empty());
  ASSERT_EQ(r.notifications.size(), 1u);
  EXPECT_EQ(r.notifications[0].kind, notification_kind::mqtt);
  EXPECT_EQ(r.notifications[0].target, "nimbus/alerts/{device_id}/{type}");
  // The same rule as a client would write it: the parser's defaults give the same value.
  EXPECT_EQ(parse_ok(R"({"name":"high_temperature","description":")" + r.description +
                     R"(","enabled":false,"selection":{"field":"temperature"},)"
                     R"("condition":{"type":"threshold","operator":">","value":35},)"
                     R"("notifications":[{"type":"mqtt"}]})"),
            r);
  expect_round_trip(r);
}

}  // namespace
}  // namespace nimbus::alerts
