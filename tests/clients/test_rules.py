"""End-to-end tests of topic rules (issue 11): the rule API and rules running on the bus, driving
the real `nimbus` binary with real clients:

- Debian's `aws` CLI v2: the seed tutorial's alert over 35 °C (section 6's alert_handler) as a
  rule made with `aws iot create-topic-rule --topic-rule-payload file://rule.json`; mosquitto_pub
  of readings to sensor/<device>/data and mosquitto_sub on alerts/# seeing the republished
  {"temperature":..,"device":..} for hot readings only. get-topic-rule round-tripping the payload
  (actions verbatim, an action type Nimbus does not execute included), list-topic-rules with
  --topic and --rule-disabled, disable/enable-topic-rule stopping and restarting the
  republishing, replace-topic-rule changing the SQL, delete-topic-rule.
- boto3 `iot`: every error the rule calls can give (SqlParseException, ResourceAlreadyExists,
  InvalidRequestException, and UnauthorizedException for a missing rule, which is what AWS
  answers), with the exception classes and x-amzn-ErrorType; ListTopicRules paging and filters;
  createdAt as epoch seconds on the wire.
- A rule never sees its own republished messages; another rule does.
- Rules (enabled and disabled) survive a restart and a kill -9 right after they were made, and
  still fire.

Negative checks use markers: a rule runs on the publisher's thread while the broker routes the
message, so once a QoS 1 publish is acknowledged, anything the rule republished for it is queued
ahead of a marker the same client publishes next.

The CLI is /usr/bin/aws (NIMBUS_AWS_CLI overrides it); a missing tool fails the test with the
package to install rather than skipping it.

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_rules.py
"""

import datetime
import json
import shutil
import subprocess
import time

import boto3
import botocore.config
import pytest

from conftest import V5, unique
from iot_helpers import metric_samples
from test_aws_cli_seed import CLI_TIMEOUT, AwsCli, MosquittoSub, _require_cli
from test_aws_iot_registry import expect_error, follow, signed_request

ARN = "arn:aws:iot:us-east-1:000000000000:"     # the server's default --region and --account
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/r"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:f"
HIGH_TEMP_SQL = ("SELECT temperature, topic(2) AS device FROM 'sensor/+/data' "
                 "WHERE temperature > 35")


# ====================================================================== helpers

def republish(topic, qos=1):
    return {"republish": {"roleArn": ROLE, "topic": topic, "qos": qos}}


def rule_payload(sql=HIGH_TEMP_SQL, actions=None, **extra):
    """A TopicRulePayload: the high-temperature alert unless told otherwise."""
    payload = {"sql": sql, "awsIotSqlVersion": "2016-03-23",
               "actions": actions if actions is not None else [republish("alerts/${topic(2)}")]}
    payload.update(extra)
    return payload


def reading(temperature, humidity=40):
    return json.dumps({"temperature": temperature, "humidity": humidity},
                      separators=(",", ":"))


def alert(temperature, device):
    return {"temperature": temperature, "device": device}


def iot_client(server, validate=True):
    """boto3 `iot`; with validate=False botocore sends what it is given (a payload without its
    required members), so the server's own validation is what answers."""
    if validate:
        return server.boto3_client()
    akid, secret = server.credentials()
    return boto3.client("iot", endpoint_url=server.http_url, region_name=REGION,
                        aws_access_key_id=akid, aws_secret_access_key=secret,
                        config=botocore.config.Config(retries={"max_attempts": 1},
                                                      parameter_validation=False))


def rule_error(iot, code, status, fn, /, **kwargs):
    """expect_error (code, HTTP status, x-amzn-ErrorType, a message) plus botocore's modeled
    exception class for `code`."""
    caught = []

    def call():
        try:
            fn(**kwargs)
        except Exception as e:
            caught.append(e)
            raise

    resp = expect_error(code, status, call)
    assert isinstance(caught[0], getattr(iot.exceptions, code)), "%r is not %s" % (caught[0],
                                                                                  code)
    return resp


def alert_watcher(clients, topic="alerts/#"):
    """A paho subscriber (QoS 1) on the alert topics, and a publisher for readings."""
    sub = clients.connected(version=V5, name="alerts")
    assert sub.subscribe(topic, 1) == [1]
    pub = clients.connected(version=V5, name="sensor")
    return sub, pub


def assert_alert(sub, topic, doc):
    msg = sub.expect(topic=topic)
    assert json.loads(msg.payload) == doc, (msg.topic, msg.payload)
    assert msg.qos == 1, msg.qos
    return msg


def assert_quiet(sub, pub, marker_prefix="alerts"):
    """Nothing reached `sub` before a marker `pub` publishes now (after its readings were
    acknowledged)."""
    marker = "%s/%s" % (marker_prefix, unique("marker"))
    pub.publish(marker, b"marker", qos=1)
    before = sub.collect_until(marker)
    assert not before, "unexpected message(s) before the marker: %r" % before


def mosquitto_pub(server, topic, payload):
    """One QoS 1 reading from mosquitto_pub on the plain listener, acknowledged."""
    res = subprocess.run(["mosquitto_pub", "-d", "-h", "127.0.0.1", "-p", str(server.mqtt_port),
                          "-V", "mqttv311", "-i", unique("pub"), "-q", "1", "-t", topic,
                          "-m", payload],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=CLI_TIMEOUT)
    out = res.stdout.decode(errors="replace")
    assert res.returncode == 0, out
    assert "received PUBACK" in out, out


def assert_epoch_seconds(value):
    assert isinstance(value, (int, float)) and not isinstance(value, bool), \
        "createdAt %r is not a number" % (value,)
    assert abs(value - time.time()) < 600, "createdAt %r is not epoch seconds of now" % value


@pytest.fixture
def cli(server):
    _require_cli()
    return AwsCli(server)


# ====================================================================== aws CLI

def test_cli_high_temp_rule_republishes_alerts(cli, server, tmp_path):
    for tool in ("mosquitto_pub", "mosquitto_sub", "stdbuf"):
        assert shutil.which(tool), "%s not installed (Debian package mosquitto-clients)" % tool
    (tmp_path / "rule.json").write_text(json.dumps({
        "sql": HIGH_TEMP_SQL,
        "awsIotSqlVersion": "2016-03-23",
        "actions": [{"republish": {"roleArn": ROLE, "topic": "alerts/${topic(2)}", "qos": 1}}]}))
    assert cli.ok("iot", "create-topic-rule", "--rule-name", "high_temp",
                  "--topic-rule-payload", "file://rule.json", cwd=tmp_path) is None

    sub = MosquittoSub(["mosquitto_sub", "-d", "-h", "127.0.0.1", "-p", str(server.mqtt_port),
                        "-V", "mqttv311", "-i", unique("alerts"), "-q", "1", "-t", "alerts/#",
                        "-C", "2", "-W", "20", "-F", "MSG|%t|%q|%p"])
    try:
        sub.wait_for("received SUBACK")
        # Cold readings between hot ones: with -C 2, an alert for a cold reading would be one of
        # the two messages mosquitto_sub prints (each publish is acknowledged before the next).
        mosquitto_pub(server, "sensor/pi-001/data", reading(20))
        mosquitto_pub(server, "sensor/pi-001/data", reading(36.5))
        mosquitto_pub(server, "sensor/pi-002/data", reading(20))
        mosquitto_pub(server, "sensor/pi-002/data", reading(35))       # not over 35
        mosquitto_pub(server, "sensor/pi-002/data", reading(41))
        assert sub.finish() == 0, "\n".join(sub.lines)
    finally:
        sub.kill()
    got = [line.split("|", 3) for line in sub.lines if line.startswith("MSG|")]
    assert [(t, q) for _m, t, q, _p in got] == [("alerts/pi-001", "1"), ("alerts/pi-002", "1")], \
        "\n".join(sub.lines)
    assert [json.loads(p) for _m, _t, _q, p in got] == [alert(36.5, "pi-001"),
                                                        alert(41, "pi-002")]

    matched = [v for labels, v in metric_samples(server, "nimbus_rule_messages_matched_total")
               if labels.get("rule") == "high_temp"]
    assert matched and matched[0] >= 2, matched


def test_cli_rule_lifecycle(cli, server, clients, tmp_path):
    payload = rule_payload(
        description="Alert above 35 C",
        ruleDisabled=False,
        actions=[republish("alerts/${topic(2)}"), {"lambda": {"functionArn": LAMBDA}}],
        errorAction=republish("rules/errors", qos=0))
    (tmp_path / "rule.json").write_text(json.dumps(payload))
    assert cli.ok("iot", "create-topic-rule", "--rule-name", "high_temp",
                  "--topic-rule-payload", "file://rule.json", cwd=tmp_path) is None

    # get-topic-rule: the payload as given, the lambda action Nimbus does not run included
    got = cli.ok("iot", "get-topic-rule", "--rule-name", "high_temp")
    assert got["ruleArn"] == ARN + "rule/high_temp", got
    rule = got["rule"]
    assert rule["ruleName"] == "high_temp", rule
    assert rule["sql"] == HIGH_TEMP_SQL, rule
    assert rule["description"] == "Alert above 35 C", rule
    assert rule["actions"] == payload["actions"], rule
    assert rule["errorAction"] == payload["errorAction"], rule
    assert rule["awsIotSqlVersion"] == "2016-03-23", rule
    assert rule["ruleDisabled"] is False, rule
    created_at = rule["createdAt"]                 # the CLI prints timestamps as ISO 8601
    status, _headers, body = signed_request(server, "GET", "/rules/high_temp")
    assert status == 200, body
    wire = json.loads(body)
    assert_epoch_seconds(wire["rule"]["createdAt"])    # a number on the wire, as AWS sends it
    assert wire["ruleArn"] == ARN + "rule/high_temp", wire

    sub, pub = alert_watcher(clients)
    pub.publish("sensor/pi-001/data", reading(36.5), qos=1)
    assert_alert(sub, "alerts/pi-001", alert(36.5, "pi-001"))

    # list-topic-rules, filtered by topic and by state
    iot_client(server).create_topic_rule(
        ruleName="door_open",
        topicRulePayload=rule_payload("SELECT * FROM 'door/+/state'",
                                      [republish("alerts/door")]))
    listed = cli.ok("iot", "list-topic-rules")["rules"]
    assert [r["ruleName"] for r in listed] == ["door_open", "high_temp"], listed
    only = cli.ok("iot", "list-topic-rules", "--topic", "sensor/+/data")["rules"]
    assert len(only) == 1, only
    assert {k: v for k, v in only[0].items() if k != "createdAt"} == {
        "ruleArn": ARN + "rule/high_temp", "ruleName": "high_temp",
        "topicPattern": "sensor/+/data", "ruleDisabled": False}, only
    assert only[0]["createdAt"] == created_at, only

    # disable-topic-rule: no more alerts; enable-topic-rule: alerts again
    assert cli.ok("iot", "disable-topic-rule", "--rule-name", "high_temp") is None
    assert cli.ok("iot", "get-topic-rule", "--rule-name", "high_temp")["rule"]["ruleDisabled"] \
        is True
    assert [r["ruleName"] for r in cli.ok("iot", "list-topic-rules", "--rule-disabled")["rules"]] \
        == ["high_temp"]
    pub.publish("sensor/pi-001/data", reading(37), qos=1)
    assert_quiet(sub, pub)
    assert cli.ok("iot", "enable-topic-rule", "--rule-name", "high_temp") is None
    pub.publish("sensor/pi-001/data", reading(38), qos=1)
    assert_alert(sub, "alerts/pi-001", alert(38, "pi-001"))

    # replace-topic-rule: a new SQL and topic; created when it was
    (tmp_path / "rule2.json").write_text(json.dumps(rule_payload(
        "SELECT temperature, topic(2) AS device FROM 'sensor/+/data' WHERE temperature > 30",
        [republish("alerts/${topic(2)}/warm")])))
    assert cli.ok("iot", "replace-topic-rule", "--rule-name", "high_temp",
                  "--topic-rule-payload", "file://rule2.json", cwd=tmp_path) is None
    rule = cli.ok("iot", "get-topic-rule", "--rule-name", "high_temp")["rule"]
    assert rule["sql"].endswith("WHERE temperature > 30"), rule
    assert rule["actions"] == [republish("alerts/${topic(2)}/warm")], rule
    assert rule["createdAt"] == created_at, rule
    pub.publish("sensor/pi-007/data", reading(32), qos=1)
    assert_alert(sub, "alerts/pi-007/warm", alert(32, "pi-007"))

    # delete-topic-rule: gone from get and list, and it no longer fires
    assert cli.ok("iot", "delete-topic-rule", "--rule-name", "high_temp") is None
    res = cli.fails("UnauthorizedException", "iot", "get-topic-rule", "--rule-name", "high_temp")
    assert res.rc in (254, 255), repr(res)
    assert [r["ruleName"] for r in cli.ok("iot", "list-topic-rules")["rules"]] == ["door_open"]
    pub.publish("sensor/pi-001/data", reading(50), qos=1)
    assert_quiet(sub, pub)


# ====================================================================== boto3

def test_boto3_errors(server):
    iot = iot_client(server)
    loose = iot_client(server, validate=False)
    iot.create_topic_rule(ruleName="dup_rule", topicRulePayload=rule_payload())

    # SQL that does not parse
    for sql in ("SELECT * FROM 'sensor/#' WHERE", "this is not sql"):
        rule_error(iot, "SqlParseException", 400, iot.create_topic_rule, ruleName="bad_sql",
                   topicRulePayload=rule_payload(sql))
    rule_error(iot, "SqlParseException", 400, iot.replace_topic_rule, ruleName="dup_rule",
               topicRulePayload=rule_payload("SELECT FROM"))

    # a second rule of the same name
    rule_error(iot, "ResourceAlreadyExistsException", 409, iot.create_topic_rule,
               ruleName="dup_rule", topicRulePayload=rule_payload())

    # a missing rule is UnauthorizedException, as AWS answers it
    for call, kw in ((iot.get_topic_rule, {}), (iot.delete_topic_rule, {}),
                     (iot.replace_topic_rule, {"topicRulePayload": rule_payload()}),
                     (iot.enable_topic_rule, {}), (iot.disable_topic_rule, {})):
        rule_error(iot, "UnauthorizedException", 401, call, ruleName="no_such_rule", **kw)

    # names that AWS's RuleName pattern (^[a-zA-Z0-9_]+$, at most 128) refuses
    for name in ("bad-name", "x" * 129):
        rule_error(iot, "InvalidRequestException", 400, iot.create_topic_rule, ruleName=name,
                   topicRulePayload=rule_payload())
    rule_error(iot, "InvalidRequestException", 400, iot.get_topic_rule, ruleName="bad-name")

    # payloads botocore would refuse itself, sent anyway
    no_sql = {"awsIotSqlVersion": "2016-03-23", "actions": [republish("alerts/x")]}
    rule_error(loose, "InvalidRequestException", 400, loose.create_topic_rule,
               ruleName="no_sql", topicRulePayload=no_sql)
    rule_error(loose, "InvalidRequestException", 400, loose.create_topic_rule,
               ruleName="no_actions", topicRulePayload={"sql": HIGH_TEMP_SQL})
    rule_error(loose, "InvalidRequestException", 400, loose.create_topic_rule,
               ruleName="eleven_actions",
               topicRulePayload=rule_payload(actions=[republish("a/%d" % i) for i in range(11)]))
    rule_error(iot, "InvalidRequestException", 400, iot.create_topic_rule,
               ruleName="bad_version", topicRulePayload=rule_payload(awsIotSqlVersion="2099-01-01"))
    rule_error(iot, "InvalidRequestException", 400, iot.create_topic_rule,
               ruleName="bad_template", topicRulePayload=rule_payload(
                   actions=[republish("alerts/${topic(}")]))
    rule_error(iot, "InvalidRequestException", 400, iot.create_topic_rule,
               ruleName="long_description",
               topicRulePayload=rule_payload(description="d" * 2049))
    rule_error(iot, "InvalidRequestException", 400, iot.list_topic_rules, maxResults=10001)
    rule_error(iot, "InvalidRequestException", 400, iot.list_topic_rules, nextToken="not-ours")

    # none of the refused calls left anything behind, nor changed the existing rule
    assert [r["ruleName"] for r in iot.list_topic_rules()["rules"]] == ["dup_rule"]
    assert iot.get_topic_rule(ruleName="dup_rule")["rule"]["sql"] == HIGH_TEMP_SQL


def test_boto3_list_paging_and_filters(server):
    iot = iot_client(server)
    t0 = datetime.datetime.now(datetime.timezone.utc)
    sensors, doors = ["r_a", "r_c", "r_e"], ["r_b", "r_d"]
    for name in sensors:
        iot.create_topic_rule(ruleName=name, topicRulePayload=rule_payload())
    for name in doors:
        iot.create_topic_rule(ruleName=name, topicRulePayload={
            "sql": "SELECT * FROM 'door/#'", "actions": [], "ruleDisabled": name == "r_d"})
    iot.disable_topic_rule(ruleName="r_c")

    pages = follow(iot.list_topic_rules, "rules", maxResults=2)
    assert [len(p) for p in pages] == [2, 2, 1], pages
    everything = [r for p in pages for r in p]
    assert [r["ruleName"] for r in everything] == ["r_a", "r_b", "r_c", "r_d", "r_e"]
    for r in everything:
        assert r["ruleArn"] == ARN + "rule/" + r["ruleName"], r
        assert r["topicPattern"] == ("door/#" if r["ruleName"] in doors else "sensor/+/data"), r
        assert r["ruleDisabled"] is (r["ruleName"] in ("r_c", "r_d")), r
        assert abs((r["createdAt"] - t0).total_seconds()) < 600, r
    assert "nextToken" not in iot.list_topic_rules()

    def names(**kw):
        return [r["ruleName"] for p in follow(iot.list_topic_rules, "rules", **kw) for r in p]

    assert names(topic="door/#") == doors
    assert names(topic="sensor/+/data", maxResults=1) == sensors
    assert names(topic="sensor/#") == []
    assert names(ruleDisabled=True) == ["r_c", "r_d"]
    assert names(ruleDisabled=False) == ["r_a", "r_b", "r_e"]
    assert names(topic="door/#", ruleDisabled=False) == ["r_b"]

    # awsIotSqlVersion defaults to 2016-03-23; no description given, none invented
    rule = iot.get_topic_rule(ruleName="r_b")["rule"]
    assert rule["awsIotSqlVersion"] == "2016-03-23", rule
    assert rule.get("description", "") == "", rule
    assert rule["actions"] == [] and "errorAction" not in rule, rule


# ====================================================================== on the bus

def test_rule_does_not_see_its_own_republish(server, clients):
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="echo", topicRulePayload=rule_payload(
        "SELECT * FROM 'loop/#'", [republish("loop/out")]))
    iot.create_topic_rule(ruleName="chain", topicRulePayload=rule_payload(
        "SELECT * FROM 'loop/out'", [republish("chain/out")]))
    sub = clients.connected(version=V5, name="watcher")
    assert sub.subscribe([("loop/#", 1), ("chain/#", 1), ("mark/#", 1)]) == [1, 1, 1]
    pub = clients.connected(version=V5, name="source")
    pub.publish("loop/in", b'{"n":1}', qos=1)
    marker = "mark/" + unique("m")
    pub.publish(marker, b"marker", qos=1)
    got = sub.collect_until(marker)
    # echo republished loop/in once and skipped its own loop/out; chain saw loop/out
    assert sorted((m.topic, json.loads(m.payload)["n"]) for m in got) == [
        ("chain/out", 1), ("loop/in", 1), ("loop/out", 1)], got


def test_get_thing_shadow_reads_the_shadow_service(server, clients):
    """get_thing_shadow(thing, [shadow,] roleArn) in a rule reads the built-in shadows: a
    reading above the thermostat's reported setpoint raises an alert naming both."""
    data = server.boto3_client("iot-data")
    data.update_thing_shadow(thingName="thermostat-1", payload=json.dumps(
        {"state": {"reported": {"setpoint": 22}}}).encode())
    data.update_thing_shadow(thingName="thermostat-1", shadowName="limits", payload=json.dumps(
        {"state": {"reported": {"max": 30}}}).encode())
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="over_setpoint", topicRulePayload=rule_payload(
        "SELECT temperature, get_thing_shadow(topic(2), '%s').state.reported.setpoint AS "
        "setpoint, get_thing_shadow(topic(2), 'limits', '%s').state.reported.max AS max, "
        "get_thing_shadow('no-such-thing', '%s').state AS missing FROM 'sensor/+/data' "
        "WHERE temperature > get_thing_shadow(topic(2), '%s').state.reported.setpoint"
        % (ROLE, ROLE, ROLE, ROLE),
        [republish("alerts/${topic(2)}")]))
    sub, pub = alert_watcher(clients)
    pub.publish("sensor/thermostat-1/data", reading(21), qos=1)
    pub.publish("sensor/thermostat-1/data", reading(25), qos=1)
    # the missing shadow is Undefined, so its key is left out
    assert_alert(sub, "alerts/thermostat-1", {"temperature": 25, "setpoint": 22, "max": 30})
    assert_quiet(sub, pub)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill9"])
def test_rules_survive_restart(server, clients, kill):
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="high_temp", topicRulePayload=rule_payload(
        actions=[republish("alerts/${topic(2)}"), {"lambda": {"functionArn": LAMBDA}}]))
    iot.create_topic_rule(ruleName="freezing", topicRulePayload=rule_payload(
        "SELECT VALUE temperature FROM 'sensor/+/data' WHERE temperature < 0",
        [republish("alerts/freezing")]))
    iot.disable_topic_rule(ruleName="freezing")
    before = iot.get_topic_rule(ruleName="high_temp")["rule"]

    server.restart(kill=kill)       # kill -9 right after the last answer: each was durable

    iot = iot_client(server)
    after = iot.get_topic_rule(ruleName="high_temp")["rule"]
    assert after == before, (before, after)
    assert iot.get_topic_rule(ruleName="freezing")["rule"]["ruleDisabled"] is True
    sub, pub = alert_watcher(clients)
    pub.publish("sensor/pi-001/data", reading(36.5), qos=1)
    assert_alert(sub, "alerts/pi-001", alert(36.5, "pi-001"))
    pub.publish("sensor/pi-001/data", reading(-5), qos=1)      # freezing is still disabled
    assert_quiet(sub, pub)
    iot.enable_topic_rule(ruleName="freezing")
    pub.publish("sensor/pi-001/data", reading(-5), qos=1)
    msg = sub.expect(topic="alerts/freezing")
    assert json.loads(msg.payload) == -5, msg.payload
