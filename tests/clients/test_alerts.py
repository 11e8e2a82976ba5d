"""Alerts (issue 15) against the real binary, driven by the clients users have:
mosquitto_pub for readings, mosquitto_sub for the MQTT notifications, paho for presence,
urllib for /api/alert-rules and /api/alerts, and a local HTTP server for webhooks.

- the tutorial (§5.2): a fresh install has `high_temperature` disabled; once enabled, 36.5 from
  mosquitto_pub on sensor/data is in GET /api/alerts in the tutorial's shape, mosquitto_sub sees
  the notification, an operator acknowledges it, 30 clears it (by the rule);
- hysteresis and pending over line protocol, on arrival time: flapping gives one alert, short
  spikes none, readings between the bands clear nothing, a clock hours behind skips nothing;
- a webhook failing (500) then succeeding gets the same event id again, signed with HMAC-SHA256;
  a 400 is final and counted on the rule;
- kill -9 in the middle of a pending period: the alert is raised after the restart, on time,
  with no further reading; an open alert survives kill -9;
- offline from lifecycle events: a device that drops stays offline past `for` -> alert, back
  online -> cleared;
- bad rules are 400 {"error":{"field","message"}} and store nothing; unknown ids 404; moves the
  lifecycle forbids 409; with --tsdb-auth required, no token is 401.

    NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_alerts.py
"""

import hashlib
import hmac
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import TIMEOUT, V311, Client, wait_until


def call(nimbus, method, path, body=None, params=None, token=None):
    url = nimbus.http_url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    headers = {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def write_lines(nimbus, lines, precision="s"):
    body = "\n".join(lines).encode()
    request = urllib.request.Request(
        nimbus.http_url + "/write?db=nimbus&precision=" + precision, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
        assert r.status == 204


def mosquitto_pub(nimbus, topic, payload, qos=1):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(nimbus.mqtt_port), "-t", topic,
                    "-m", payload, "-q", str(qos)], check=True, timeout=TIMEOUT)


def open_alerts(nimbus, **params):
    status, body = call(nimbus, "GET", "/api/alerts", params=params or None)
    assert status == 200, body
    assert body["count"] == len(body["alerts"])
    return body["alerts"]


def put_rule(nimbus, rule):
    status, body = call(nimbus, "PUT", "/api/alert-rules/" + rule["name"], rule)
    assert status in (200, 201), body
    return body


@pytest.fixture
def started(nimbus):
    nimbus.start()
    return nimbus


class MosquittoSub:
    """mosquitto_sub -v on a filter, its lines read by a thread."""

    def __init__(self, nimbus, topic):
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(nimbus.mqtt_port), "-t", topic, "-q", "1",
             "-v", "-i", "alerts-watcher"], stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def messages(self):
        out = []
        for line in list(self.lines):
            topic, _, payload = line.partition(" ")
            out.append((topic, json.loads(payload)))
        return out

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)


def test_tutorial_rule_end_to_end(started):
    nimbus = started
    status, body = call(nimbus, "GET", "/api/alert-rules/high_temperature")
    assert status == 200, body
    assert body["enabled"] is False
    assert body["condition"]["type"] == "threshold" and body["condition"]["value"] == 35
    assert call(nimbus, "GET", "/api/alerts")[1] == {"alerts": [], "count": 0}

    # Disabled: a hot reading raises nothing.
    mosquitto_pub(nimbus, "sensor/data", json.dumps({"device_id": "pi-000", "temperature": 40}))
    status, body = call(nimbus, "POST", "/api/alert-rules/high_temperature/enable")
    assert status == 200 and body["enabled"] is True, body
    watcher = MosquittoSub(nimbus, "nimbus/alerts/#")
    try:
        time.sleep(0.3)  # mosquitto_sub has no "subscribed" signal; a retained-free topic
        mosquitto_pub(nimbus, "sensor/data", json.dumps(
            {"device_id": "pi-001", "temperature": 36.5, "humidity": 60}))
        alerts = wait_until(lambda: open_alerts(nimbus), what="an alert in GET /api/alerts")
        assert len(alerts) == 1
        alert = alerts[0]
        # The tutorial's four keys first, as its Flask route returned them.
        assert list(alert)[:4] == ["device_id", "type", "value", "threshold"]
        assert {k: alert[k] for k in ("device_id", "type", "value", "threshold")} == {
            "device_id": "pi-001", "type": "high_temperature", "value": 36.5, "threshold": 35}
        assert alert["status"] == "active" and alert["severity"] == "major"

        # Repeats update the one open alert.
        mosquitto_pub(nimbus, "sensor/data", json.dumps({"device_id": "pi-001", "temperature": 38}))
        wait_until(lambda: open_alerts(nimbus)[0]["count"] == 2, what="the repeat counted")
        alert = open_alerts(nimbus)[0]
        assert alert["value"] == 38 and alert["peak"] == 38 and len(open_alerts(nimbus)) == 1

        raised = wait_until(lambda: [m for t, m in watcher.messages() if m["event"] == "raised"],
                            what="mosquitto_sub sees the raise")
        topic = [t for t, m in watcher.messages() if m["event"] == "raised"][0]
        assert topic == "nimbus/alerts/pi-001/high_temperature"
        assert raised[0]["alert"]["device_id"] == "pi-001" and raised[0]["alert"]["value"] == 36.5

        status, body = call(nimbus, "POST", "/api/alerts/%d/ack" % alert["id"], {"note": "on it"})
        assert status == 200 and body["status"] == "acknowledged", body
        assert call(nimbus, "POST", "/api/alerts/%d/ack" % alert["id"])[0] == 409

        mosquitto_pub(nimbus, "sensor/data", json.dumps({"device_id": "pi-001", "temperature": 30}))
        wait_until(lambda: open_alerts(nimbus) == [], what="the alert cleared by 30")
        status, body = call(nimbus, "GET", "/api/alerts/%d" % alert["id"])
        assert status == 200 and body["status"] == "cleared", body
        steps = [(h["event"], h["who"]) for h in body["history"]]
        assert steps == [("raised", "rule"), ("acknowledged", "api"), ("cleared", "rule")], steps
        assert body["history"][1]["note"] == "on it"
        cleared = open_alerts(nimbus, status="cleared")
        assert [a["id"] for a in cleared] == [alert["id"]]
        wait_until(lambda: {m["event"] for t, m in watcher.messages()} >=
                   {"raised", "acknowledged", "cleared"}, what="ack and clear notified")
        events = [m["event_id"] for t, m in watcher.messages()]
        assert len(events) == len(set(events)), "an event sent twice: " + repr(events)
    finally:
        watcher.close()


def test_hysteresis_and_pending_over_line_protocol(started):
    """Pending and clear periods run on arrival time (a point's own time only orders readings),
    so this one paces its writes: periods of 1 s and 2 s."""
    nimbus = started
    put_rule(nimbus, {
        "name": "hot", "severity": "minor",
        "selection": {"field": "t", "measurement": "room"},
        "condition": {"type": "threshold", "operator": ">", "value": 35, "for": "1s",
                      "clear": {"operator": "<", "value": 33, "for": "2s"}}})

    def write(*lines):
        write_lines(nimbus, list(lines), precision="ns")

    # A spike shorter than the period raises nothing; b above 35 for the period is raised once,
    # and its readings between the bands (34) neither clear it nor raise it again.
    started_at = time.monotonic()
    write("room,device_id=a t=40", "room,device_id=b t=37")
    time.sleep(0.3)
    write("room,device_id=a t=30", "room,device_id=b t=36")
    alerts = wait_until(lambda: open_alerts(nimbus, type="hot"), what="b's alert")
    assert time.monotonic() - started_at >= 1.0
    for value in (34, 37, 34, 37, 34):
        write("room,device_id=b t=%d" % value)
    # A clock hours behind (or a batch of old points) does not shorten the period either.
    write("room,device_id=c t=39 %d" % ((int(time.time()) - 3600) * 10**9))
    time.sleep(0.2)
    alerts = open_alerts(nimbus, type="hot")
    assert [a["device_id"] for a in alerts] == ["b"], alerts
    assert alerts[0]["severity"] == "minor" and alerts[0]["threshold"] == 35
    assert alerts[0]["count"] >= 2
    # Below 33 for 2 s clears it (by the rule); a low reading that does not last does not.
    write("room,device_id=b t=32")
    time.sleep(0.5)
    write("room,device_id=b t=34")
    time.sleep(2.0)
    assert [a["device_id"] for a in open_alerts(nimbus, type="hot")] == ["b", "c"]
    cleared_from = time.monotonic()
    write("room,device_id=b t=31")
    wait_until(lambda: [a["device_id"] for a in open_alerts(nimbus, type="hot")] == ["c"],
               what="b cleared after 2 s < 33")
    assert time.monotonic() - cleared_from >= 1.9
    assert [a["device_id"] for a in open_alerts(nimbus, type="hot", status="cleared")] == ["b"]


class Webhook(http.server.BaseHTTPRequestHandler):
    """Answers with the next status of `script` (then 200) and records every request."""
    script = []
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Webhook.seen.append((dict(self.headers), body))
        status = Webhook.script.pop(0) if Webhook.script else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Webhook.script, Webhook.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_retries_signed_then_final_on_4xx(started, webhook):
    nimbus = started
    url = "http://127.0.0.1:%d/hook/{device_id}" % webhook.server_address[1]
    put_rule(nimbus, {
        "name": "cold", "severity": "warning",
        "selection": {"field": "t", "measurement": "fridge"},
        "condition": {"type": "threshold", "operator": "<", "value": 2},
        "notifications": [{"type": "webhook", "url": url, "secret": "s3cret", "timeout": "2s",
                           "events": ["raised"]}]})
    Webhook.script = [500, 503]
    write_lines(nimbus, ["fridge,device_id=f1 t=1.5"], precision="ns")
    wait_until(lambda: len(Webhook.seen) >= 3, timeout=30, what="two failures, then a success")
    ids = {h["X-Nimbus-Event-Id"] for h, _ in Webhook.seen}
    assert len(ids) == 1, ids  # the same event, sent again
    for headers, body in Webhook.seen:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["X-Nimbus-Signature"] == expected
        assert json.loads(body)["alert"]["device_id"] == "f1"
    time.sleep(0.5)
    assert len(Webhook.seen) == 3  # nothing after the 200

    # A 400 is final: sent once, counted on the rule.
    Webhook.script = [400]
    write_lines(nimbus, ["fridge,device_id=f2 t=0.5"], precision="ns")
    wait_until(lambda: len(Webhook.seen) == 4, what="the 400")

    def failed():
        body = call(nimbus, "GET", "/api/alert-rules/cold")[1]
        return body["status"]["notifications"]["failed"] >= 1 and body
    body = wait_until(failed, what="the final failure counted")
    assert "400" in body["status"]["notifications"]["last_error"]
    assert "s3cret" not in json.dumps(body) and body["notifications"][0]["secret_set"] is True
    time.sleep(0.5)
    assert len(Webhook.seen) == 4


def test_kill9_mid_pending_and_open_alerts_survive(started):
    nimbus = started
    put_rule(nimbus, {
        "name": "overheat", "selection": {"field": "temperature", "devices": ["pi-9"]},
        "condition": {"type": "threshold", "operator": ">=", "value": 50, "for": "4s"}})
    put_rule(nimbus, {
        "name": "humid", "selection": {"field": "humidity"},
        "condition": {"type": "threshold", "operator": ">", "value": 90}})
    mosquitto_pub(nimbus, "sensor/data",
                  json.dumps({"device_id": "pi-9", "temperature": 55, "humidity": 95}))
    wait_until(lambda: open_alerts(nimbus, type="humid"), what="humid raised")
    raised_at = time.time()
    assert open_alerts(nimbus, type="overheat") == []  # pending for 4 s
    time.sleep(1.0)  # the pending start is saved at once, not at the next checkpoint
    nimbus.restart(kill=True)
    assert [a["device_id"] for a in open_alerts(nimbus, type="humid")] == ["pi-9"]
    alerts = wait_until(lambda: open_alerts(nimbus, type="overheat"), timeout=15,
                        what="overheat raised after the restart with no new reading")
    assert time.time() - raised_at >= 3.0
    assert alerts[0]["value"] == 55


def test_offline_from_lifecycle_events(started):
    nimbus = started
    put_rule(nimbus, {"name": "offline", "severity": "critical",
                      "selection": {"devices": ["gw-1"]},
                      "condition": {"type": "offline", "for": "1s"}})
    device = Client("gw-1", V311)
    device.connect(nimbus.mqtt_port)
    device.drop()  # no DISCONNECT: the broker's lifecycle event says disconnected
    alerts = wait_until(lambda: open_alerts(nimbus, type="offline"), timeout=10,
                        what="offline raised")
    assert alerts[0]["device_id"] == "gw-1" and alerts[0]["severity"] == "critical"
    device = Client("gw-1", V311)
    device.connect(nimbus.mqtt_port)
    wait_until(lambda: open_alerts(nimbus, type="offline") == [], what="back online clears")
    device.disconnect()


BAD_RULES = [
    ({"name": "x", "selection": {"field": "t"},
      "condition": {"type": "threshold", "operator": "=>", "value": 1}}, "condition.operator"),
    ({"name": "x", "severity": "urgent", "selection": {"field": "t"},
      "condition": {"type": "threshold", "operator": ">", "value": 1}}, "severity"),
    ({"name": "x", "selection": {"field": "t"},
      "condition": {"type": "range", "lo": 5, "hi": 5}}, None),
    ({"name": "x", "selection": {"field": "t"},
      "condition": {"type": "mad", "window": 1, "k": 3}}, "condition.window"),
    ({"name": "x", "selection": {"field": "t"},
      "condition": {"type": "threshold", "operator": ">", "value": 1, "for": "9999h"}},
     "condition.for"),
    ({"name": "x", "selection": {"field": "t"},
      "condition": {"type": "threshold", "operator": ">", "value": 1},
      "notifications": [{"type": "mqtt", "topic": "a/{nope}"}]}, "notifications[0].topic"),
    ({"name": "x", "selection": {"field": "t"},
      "condition": {"type": "threshold", "operator": ">", "value": 1},
      "notifications": [{"type": "webhook", "url": "ftp://h/x"}]}, "notifications[0].url"),
    ({"name": "bad name!", "selection": {"field": "t"},
      "condition": {"type": "threshold", "operator": ">", "value": 1}}, "name"),
]


def test_bad_input_and_lifecycle_refusals(started):
    nimbus = started
    before = call(nimbus, "GET", "/api/alert-rules")[1]["rules"]
    for rule, field in BAD_RULES:
        status, body = call(nimbus, "POST", "/api/alert-rules", rule)
        assert status == 400, (rule, body)
        assert set(body) == {"error"} and set(body["error"]) == {"field", "message"}, body
        if field is not None:
            assert body["error"]["field"] == field, (rule, body)
        else:
            assert body["error"]["field"] in ("condition.lo", "condition.hi"), body
    status, body = call(nimbus, "POST", "/api/alert-rules", b"{not json")
    assert status == 400 and body["error"]["field"] == ""
    assert call(nimbus, "GET", "/api/alert-rules")[1]["rules"] == before  # nothing stored

    assert call(nimbus, "GET", "/api/alert-rules/nope")[0] == 404
    assert call(nimbus, "DELETE", "/api/alert-rules/nope")[0] == 404
    assert call(nimbus, "GET", "/api/alerts/999999")[0] == 404
    assert call(nimbus, "POST", "/api/alerts/999999/ack")[0] == 404
    # Unknown devices and groups are accepted and flagged.
    status, body = call(nimbus, "POST", "/api/alert-rules", {
        "name": "grouped", "selection": {"field": "t", "groups": ["nowhere"]},
        "condition": {"type": "threshold", "operator": ">", "value": 1}})
    assert status == 201 and body["status"]["unknown_groups"] == ["nowhere"], body
    rule = {"name": "dup", "selection": {"field": "t", "devices": ["ghost"]},
            "condition": {"type": "threshold", "operator": ">", "value": 1}}
    status, body = call(nimbus, "POST", "/api/alert-rules", rule)
    assert status == 201, body
    assert body["status"]["unknown_devices"] == ["ghost"]
    assert call(nimbus, "POST", "/api/alert-rules", rule)[0] == 409

    write_lines(nimbus, ["m,device_id=ghost t=2"], precision="ns")
    alert = wait_until(lambda: open_alerts(nimbus, type="dup"), what="dup raised")[0]
    assert open_alerts(nimbus, type="grouped") == []  # ghost is in no group
    assert call(nimbus, "POST", "/api/alerts/%d/clear" % alert["id"], {"note": "false alarm"})[0] == 200
    assert call(nimbus, "POST", "/api/alerts/%d/clear" % alert["id"])[0] == 409
    status, body = call(nimbus, "POST", "/api/alerts/%d/ack" % alert["id"])  # cleared, then acked
    assert status == 200 and body["status"] == "cleared" and body["acknowledged"] is True
    assert call(nimbus, "DELETE", "/api/alert-rules/dup")[0] == 204
    assert call(nimbus, "GET", "/api/alert-rules/dup")[0] == 404


def test_tokens_required_off_loopback_rule(nimbus):
    nimbus.start(extra_args=["--tsdb-auth", "required"])
    status, _ = call(nimbus, "GET", "/api/alerts")
    assert status == 401
    status, _ = call(nimbus, "GET", "/api/alert-rules")
    assert status == 401
    token = next(line.split()[1] for line in (nimbus.data_dir / "tokens").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    assert token
    assert call(nimbus, "GET", "/api/alerts", token=token)[0] == 200


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients missing")
def test_clients_present():
    assert shutil.which("mosquitto_pub")
