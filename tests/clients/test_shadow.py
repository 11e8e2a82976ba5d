"""End-to-end tests of the Device Shadow service and the iot-data HTTP routes (issue 10), driving
the real `nimbus` binary with real clients:

- Debian's `aws` CLI v2: update/get/delete-thing-shadow (classic and named), list-named-shadows-
  for-thing, the 404 after a delete and a 409 version conflict, publish --retain then
  get-retained-message / list-retained-messages, a missing retained topic, and a registry
  delete-thing taking the thing's shadows with it.
- boto3 `iot-data` (SigV4 signing name `iotdata`): the same operations, every error a REST update
  can get (400 / 404 / 409 / 413, exception classes and x-amzn-ErrorType), the {"code","message"}
  error body on the raw route, ListNamedShadowsForThing and ListRetainedMessages paging, a
  percent-encoded topic in GetRetainedMessage, the update response echoing only the request's
  fields, the version counter surviving a delete, and ForbiddenException for a publish to a
  reply topic.
- paho-mqtt 1.6.1 (MQTT 5 and 3.1.1): the reserved topics P/update|get|delete and their
  accepted / rejected / delta / documents replies, clientToken and version echoes, delta holding
  all differences (and none once reported matches), named shadows, REST updates emitting the MQTT
  replies while REST errors emit no /rejected, and clients being unable to publish to reply topics.
- mosquitto_sub: the /update/documents stream of a named shadow (previous/current, versions 1->2).
- Device certificates with a least-privilege policy on the mqtts listener (exact PUBACK/SUBACK
  codes with rawmqtt over TLS, since paho 1.6.1 does not expose PUBACK reason codes).
- Durability: 200 accepted updates over 20 things survive a kill -9.
- Back-pressure: --shadow-max-in-flight 1 with a slow group commit answers 429.

Shadow documents carry epoch-second timestamps; retained messages carry lastModifiedTime in epoch
milliseconds. The CLI is /usr/bin/aws (NIMBUS_AWS_CLI overrides it) and, as in the other suites, a
missing tool fails the test with the package to install rather than skipping it.

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_shadow.py
"""

import base64
import json
import pathlib
import queue
import re
import shutil
import time

import pytest

import rawmqtt
from conftest import TIMEOUT, V311, V5, metric, unique, wait_until
from iot_helpers import (RC_NOT_AUTHORIZED, V311_SUBACK_FAILURE, allow, connect_device_raw,
                         still_open)
from test_aws_cli_seed import AWS_CLI, AwsCli, MosquittoSub, _require_cli
from test_aws_iot_registry import expect_error, signed_request

ARN = "arn:aws:iot:us-east-1:000000000000:"
REGION = "us-east-1"
PUBACK_OK = (0x00, 0x10)          # success, or "no matching subscribers"
REPLIES = ("update/accepted", "update/rejected", "update/delta", "update/documents",
           "get/accepted", "get/rejected", "delete/accepted", "delete/rejected")
NESTING_MESSAGE = "JSON contains too many levels of nesting; maximum is 6"
SEVEN_LEVELS = {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}   # desired's object is level 1
VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])


# ====================================================================== helpers

def prefix(thing, name=None):
    """P: the classic shadow's topic prefix, or the named shadow's."""
    p = "$aws/things/%s/shadow" % thing
    return p + "/name/%s" % name if name else p


def dumps(doc):
    return json.dumps(doc, separators=(",", ":"))


def assert_seconds(ts):
    """A shadow timestamp: epoch seconds, now."""
    assert isinstance(ts, int) and not isinstance(ts, bool), "timestamp %r is not an int" % (ts,)
    assert abs(ts - time.time()) < 600, "timestamp %r is not epoch seconds of now" % ts


def assert_millis(ms):
    """lastModifiedTime: epoch milliseconds, within the last minutes."""
    assert isinstance(ms, int) and not isinstance(ms, bool), "%r is not an int" % (ms,)
    assert abs(ms - time.time() * 1000) < 600_000, "%r is not epoch ms of now" % ms


def leaf_timestamps(meta):
    """The {"timestamp": T} leaves of a metadata tree."""
    if isinstance(meta, dict) and set(meta) == {"timestamp"}:
        return [meta["timestamp"]]
    children = meta.values() if isinstance(meta, dict) else meta
    return [t for m in children for t in leaf_timestamps(m)]


class Replies:
    """Shadow replies received by one paho client (conftest.Client), as parsed JSON. Messages may
    arrive in any order across topics; `wait` returns the first matching one and keeps the rest."""

    def __init__(self, client):
        self.c = client
        self.pending = []          # [(topic, doc, qos)]
        self.qos = None            # QoS of the message `wait` returned last

    def _pull(self, timeout):
        msg = self.c.messages.get(timeout=timeout)
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            raise AssertionError("reply on %s is not JSON: %r" % (msg.topic, msg.payload))
        self.pending.append((msg.topic, doc, msg.qos))

    def wait(self, topic, where=None, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for i, (t, doc, _qos) in enumerate(self.pending):
                if t == topic and (where is None or where(doc)):
                    _t, doc, self.qos = self.pending.pop(i)
                    return doc
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise queue.Empty
                self._pull(remaining)
            except queue.Empty:
                raise AssertionError("%s: nothing on %s within %.1fs (others: %r)" % (
                    self.c.name, topic, timeout, self.pending))

    def token(self, topic, token, timeout=TIMEOUT):
        return self.wait(topic, lambda d: d.get("clientToken") == token, timeout)

    def none(self, topic=None, window=0.3, where=None):
        """Nothing on `topic` (any topic if None) matching `where` so far, nor within `window`
        seconds (keep it short: a negative cannot be awaited; callers wait for a later reply as
        a marker first)."""
        deadline = time.monotonic() + window
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._pull(remaining)
            except queue.Empty:
                break
        got = [(t, d) for t, d, _q in self.pending
               if (topic is None or t == topic) and (where is None or where(d))]
        assert not got, "%s: unexpected message(s) on %s: %r" % (self.c.name, topic or "#", got)


def shadow_client(clients, thing, name=None, version=V5, suffixes=REPLIES, label=None):
    """A plain-listener paho client subscribed (QoS 1) to the shadow's reply topics."""
    c = clients.connected(version=version, name=label or "shadow-%s" % thing)
    p = prefix(thing, name)
    codes = c.subscribe([("%s/%s" % (p, s), 1) for s in suffixes])
    assert codes == [1] * len(suffixes), codes
    return c, Replies(c)


def request(client, thing, op, doc=None, name=None, qos=1, raw=None):
    """Publish a shadow request (op: update, get, delete) from a paho client."""
    payload = raw if raw is not None else (b"" if doc is None else dumps(doc).encode())
    client.publish("%s/%s" % (prefix(thing, name), op), payload, qos=qos)


def data_plane(server):
    return server.boto3_client("iot-data")


def get_shadow(data, thing, name=None):
    kw = {"shadowName": name} if name else {}
    return json.loads(data.get_thing_shadow(thingName=thing, **kw)["payload"].read())


def update_shadow(data, thing, doc, name=None):
    kw = {"shadowName": name} if name else {}
    body = doc if isinstance(doc, bytes) else dumps(doc).encode()
    return json.loads(data.update_thing_shadow(thingName=thing, payload=body, **kw)["payload"]
                      .read())


def delete_shadow(data, thing, name=None):
    kw = {"shadowName": name} if name else {}
    return json.loads(data.delete_thing_shadow(thingName=thing, **kw)["payload"].read())


def data_error(data, code, status, message, fn, /, *args, **kwargs):
    """expect_error (code, HTTP status, x-amzn-ErrorType, a message) plus the modeled exception
    class when botocore has one, and the message: exact string, compiled regex, or None."""
    caught = []

    def call():
        try:
            fn(*args, **kwargs)
        except Exception as e:
            caught.append(e)
            raise

    resp = expect_error(code, status, call)
    exc_class = getattr(data.exceptions, code, None)
    if exc_class is not None:
        assert isinstance(caught[0], exc_class), "%r is not %s" % (caught[0], code)
    got = resp["Error"]["Message"]
    if message is not None:
        if hasattr(message, "fullmatch"):
            assert message.fullmatch(got), "message %r does not match %r" % (got, message.pattern)
        else:
            assert got == message, "message %r != %r" % (got, message)
    return resp


def retained_soon(data, topic):
    """GetRetainedMessage once the retained message is visible (the HTTP publish that stored it
    has returned; this only absorbs a store that lags behind routing)."""
    def probe():
        try:
            return data.get_retained_message(topic=topic)
        except data.exceptions.ResourceNotFoundException:
            return None
    return wait_until(probe, what="retained message on %r" % topic)


class Cli(AwsCli):
    """The seed suite's AwsCli on the plain HTTP listener, in the contract's region."""

    def argv(self, args):
        return [AWS_CLI] + list(args) + ["--endpoint-url", self.server.http_url,
                                         "--region", REGION, "--output", "json"]

    def env(self, **overrides):
        env = self.server.aws_env(region=REGION)
        env.update(AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="1")
        env.update(overrides)
        return env

    @staticmethod
    def _shadow_args(op, thing, outfile, name, payload):
        args = ["iot-data", "%s-thing-shadow" % op, "--thing-name", thing]
        if name:
            args += ["--shadow-name", name]
        if payload is not None:
            args += ["--cli-binary-format", "raw-in-base64-out", "--payload", dumps(payload)]
        return args + [str(outfile)]      # the CLI writes the shadow document there

    def shadow(self, op, thing, outfile, name=None, payload=None):
        """update/get/delete-thing-shadow (op) that must succeed; returns the document."""
        self.ok(*self._shadow_args(op, thing, outfile, name, payload))
        return json.loads(pathlib.Path(outfile).read_text())

    def shadow_fails(self, error_code, op, thing, outfile, name=None, payload=None):
        """... that must fail with `error_code` (exit code 254, or 255)."""
        res = self.fails(error_code, *self._shadow_args(op, thing, outfile, name, payload))
        assert res.rc in (254, 255), "aws exit code %d for a service error:\n%r" % (res.rc, res)
        return res


@pytest.fixture
def cli(server):
    _require_cli()
    return Cli(server)


# ====================================================================== aws CLI

def test_cli_update_get_list_delete(cli, tmp_path):
    thing = unique("cli-lamp")
    out = tmp_path / "out.json"

    req = {"state": {"desired": {"color": "red", "level": 3}, "reported": {"color": "green"}},
           "clientToken": "cli-1"}
    up = cli.shadow("update", thing, out, payload=req)
    assert up["state"] == req["state"], up
    assert (up["version"], up["clientToken"]) == (1, "cli-1"), up
    assert set(up["metadata"]) == {"desired", "reported"}, up
    assert set(up["metadata"]["desired"]) == {"color", "level"}, up
    assert_seconds(up["timestamp"])

    got = cli.shadow("get", thing, out)
    assert got["state"] == {"desired": {"color": "red", "level": 3},
                            "reported": {"color": "green"},
                            "delta": {"color": "red", "level": 3}}, got
    assert got["version"] == 1, got
    assert set(got["metadata"]) == {"desired", "reported"}, got
    for ts in leaf_timestamps(got["metadata"]):
        assert_seconds(ts)
    assert_seconds(got["timestamp"])

    # named shadows, created by their first update; the classic one is not listed
    for name, reported in (("config", {"mode": "eco"}), ("battery", {"pct": 80})):
        up = cli.shadow("update", thing, out, name=name, payload={"state": {"reported": reported}})
        assert (up["state"], up["version"]) == ({"reported": reported}, 1), up
    named = cli.shadow("get", thing, out, name="config")
    assert named["state"] == {"reported": {"mode": "eco"}} and named["version"] == 1, named
    listed = cli.ok("iot-data", "list-named-shadows-for-thing", "--thing-name", thing)
    assert listed["results"] == ["battery", "config"], listed
    assert_seconds(listed["timestamp"])

    gone = cli.shadow("delete", thing, out)
    assert gone["version"] == 1, gone
    assert_seconds(gone["timestamp"])
    res = cli.shadow_fails("ResourceNotFoundException", "get", thing, tmp_path / "none.json")
    assert "No shadow exists with name: '%s'" % thing in res.stderr, repr(res)
    # the named shadows are untouched by the classic one's delete
    assert cli.shadow("get", thing, out, name="battery")["state"] == {"reported": {"pct": 80}}
    res = cli.shadow_fails("ResourceNotFoundException", "get", thing, tmp_path / "none.json",
                           name="nosuch")
    assert "No shadow exists with name: '%s~nosuch'" % thing in res.stderr, repr(res)


def test_cli_version_conflict(cli, tmp_path):
    thing = unique("cli-conflict")
    out = tmp_path / "out.json"
    cli.shadow("update", thing, out, name="cfg", payload={"state": {"desired": {"x": 1}}})
    up = cli.shadow("update", thing, out, name="cfg",
                    payload={"state": {"desired": {"x": 2}}, "version": 1})
    assert up["version"] == 2, up
    res = cli.shadow_fails("ConflictException", "update", thing, tmp_path / "no.json", name="cfg",
                           payload={"state": {"desired": {"x": 3}}, "version": 1})
    assert "Version conflict" in res.stderr, repr(res)
    got = cli.shadow("get", thing, out, name="cfg")
    assert (got["state"]["desired"], got["version"]) == ({"x": 2}, 2), got


def test_cli_publish_retained_get_and_list(cli, server, clients):
    topic = "cli/%s/status" % unique("dev")
    payload = '{"online":true}'
    t0 = time.time() * 1000
    cli.ok("iot-data", "publish", "--topic", topic, "--qos", "1", "--retain",
           "--cli-binary-format", "raw-in-base64-out", "--payload", payload)
    # a subscriber arriving later gets it as a retained message
    late = clients.connected(version=V5, name="late")
    assert late.subscribe(topic, 1) == [1]
    msg = late.expect(topic=topic)
    assert (msg.payload, bool(msg.retain)) == (payload.encode(), True)

    got = cli.ok("iot-data", "get-retained-message", "--topic", topic)
    assert got["topic"] == topic, got
    assert base64.b64decode(got["payload"]) == payload.encode(), got
    assert got["qos"] == 1, got
    assert_millis(got["lastModifiedTime"])
    assert got["lastModifiedTime"] >= t0 - 2000, (got, t0)

    listed = cli.ok("iot-data", "list-retained-messages")
    mine = [r for r in listed["retainedTopics"] if r["topic"] == topic]
    assert len(mine) == 1, listed
    assert (mine[0]["payloadSize"], mine[0]["qos"]) == (len(payload), 1), mine
    assert mine[0]["lastModifiedTime"] == got["lastModifiedTime"], (mine, got)
    topics = [r["topic"] for r in listed["retainedTopics"]]
    assert topics == sorted(topics), topics


def test_cli_get_retained_message_missing(cli):
    res = cli.fails("ResourceNotFoundException", "iot-data", "get-retained-message",
                    "--topic", "no/such/%s" % unique("topic"))
    assert res.rc in (254, 255), repr(res)


# ====================================================================== boto3 iot-data

def test_data_update_echoes_request_fields_and_get_merges(server):
    data = data_plane(server)
    thing = unique("bo-thermo")
    first = update_shadow(data, thing, {"state": {"desired": {"temp": 22, "fan": {"speed": 2}},
                                                  "reported": {"temp": 19}}})
    assert first["version"] == 1, first

    up = update_shadow(data, thing, {"state": {"reported": {"temp": 21, "fan": {"speed": 2}}},
                                     "clientToken": "b-2"})
    # only the request's fields, with only their metadata
    assert up["state"] == {"reported": {"temp": 21, "fan": {"speed": 2}}}, up
    assert set(up["metadata"]) == {"reported"}, up
    assert set(up["metadata"]["reported"]) == {"temp", "fan"}, up
    assert (up["version"], up["clientToken"]) == (2, "b-2"), up
    assert set(up) <= {"state", "metadata", "version", "timestamp", "clientToken"}, up
    assert_seconds(up["timestamp"])

    got = get_shadow(data, thing)
    assert got["state"] == {"desired": {"temp": 22, "fan": {"speed": 2}},
                            "reported": {"temp": 21, "fan": {"speed": 2}},
                            "delta": {"temp": 22}}, got
    assert got["version"] == 2, got
    assert "clientToken" not in got, got

    # null deletes a key, "desired": null drops the section, arrays are replaced whole
    update_shadow(data, thing, {"state": {"reported": {"fan": None, "modes": [1, 2, 3]}}})
    update_shadow(data, thing, {"state": {"desired": None, "reported": {"modes": [4]}}})
    got = get_shadow(data, thing)
    assert got["state"] == {"reported": {"temp": 21, "modes": [4]}}, got
    assert got["version"] == 4, got

    gone = delete_shadow(data, thing)
    assert gone["version"] == 4 and set(gone) == {"version", "timestamp"}, gone
    data_error(data, "ResourceNotFoundException", 404, "No shadow exists with name: '%s'" % thing,
               data.get_thing_shadow, thingName=thing)


def test_data_named_shadow_roundtrip(server):
    data = data_plane(server)
    thing = unique("bo-named")
    up = update_shadow(data, thing, {"state": {"desired": {"on": True}}}, name="light")
    assert up["version"] == 1, up
    assert get_shadow(data, thing, "light")["state"] == {"desired": {"on": True},
                                                         "delta": {"on": True}}
    data_error(data, "ResourceNotFoundException", 404, "No shadow exists with name: '%s'" % thing,
               data.get_thing_shadow, thingName=thing)     # the classic shadow does not exist
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == ["light"]
    assert delete_shadow(data, thing, "light")["version"] == 1
    data_error(data, "ResourceNotFoundException", 404,
               "No shadow exists with name: '%s~light'" % thing,
               data.get_thing_shadow, thingName=thing, shadowName="light")
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == []


def test_data_update_errors(server):
    data = data_plane(server)
    thing = unique("bo-errors")
    assert update_shadow(data, thing, {"state": {"reported": {"ok": 1}}})["version"] == 1

    def refused(code, status, message, body, **kw):
        data_error(data, code, status, message, data.update_thing_shadow, thingName=thing,
                   payload=body if isinstance(body, bytes) else dumps(body).encode(), **kw)

    refused("InvalidRequestException", 400, "Invalid JSON", b"{bad")
    refused("InvalidRequestException", 400, "Missing required node: state", {"clientToken": "m"})
    refused("InvalidRequestException", 400, "State node must be an object", {"state": 5})
    refused("InvalidRequestException", 400, "Desired node must be an object",
            {"state": {"desired": [1]}})
    refused("InvalidRequestException", 400, NESTING_MESSAGE, {"state": {"desired": SEVEN_LEVELS}})
    refused("InvalidRequestException", 400, "Invalid version",
            {"state": {"desired": {"a": 1}}, "version": "one"})
    refused("InvalidRequestException", 400, "Invalid clientToken",
            {"state": {"desired": {"a": 1}}, "clientToken": "t" * 65})
    refused("ConflictException", 409, "Version conflict",
            {"state": {"desired": {"a": 1}}, "version": 7})
    resp = data_error(data, "RequestEntityTooLargeException", 413,
                      re.compile(r"Json document too large\.  Size is (\d+), max allowed: 8192"),
                      data.update_thing_shadow, thingName=thing,
                      payload=dumps({"state": {"desired": {"big": "x" * 9000}}}).encode())
    size = int(re.search(r"Size is (\d+)", resp["Error"]["Message"]).group(1))
    assert 9000 < size < 9100, resp["Error"]["Message"]
    # an invalid shadow name ([$a-zA-Z0-9:_-]{1,64})
    for bad in ("bad!name", "n" * 65):
        refused("InvalidRequestException", 400, None, {"state": {"desired": {"a": 1}}},
                shadowName=bad)
        data_error(data, "InvalidRequestException", 400, None, data.get_thing_shadow,
                   thingName=thing, shadowName=bad)
    # not found: get and delete, classic and named
    other = unique("bo-nobody")
    msg = "No shadow exists with name: '%s'" % other
    data_error(data, "ResourceNotFoundException", 404, msg, data.get_thing_shadow, thingName=other)
    data_error(data, "ResourceNotFoundException", 404, msg, data.delete_thing_shadow,
               thingName=other)
    data_error(data, "ResourceNotFoundException", 404,
               "No shadow exists with name: '%s~n1'" % thing,
               data.delete_thing_shadow, thingName=thing, shadowName="n1")

    # nothing of that changed the shadow
    got = get_shadow(data, thing)
    assert (got["state"], got["version"]) == ({"reported": {"ok": 1}}, 1), got


def test_data_error_body_on_the_raw_route(server):
    """The HTTP error itself: status, x-amzn-ErrorType and the shadow error document."""
    thing = unique("raw-err")
    status, headers, body = signed_request(server, "POST", "/things/%s/shadow" % thing,
                                           body=b"{bad", service="iotdata")
    assert status == 400, (status, body)
    assert headers.get("x-amzn-ErrorType", "").split(":")[0] == "InvalidRequestException", \
        dict(headers)
    doc = json.loads(body)
    assert (doc["code"], doc["message"]) == (400, "Invalid JSON"), doc
    status, headers, body = signed_request(server, "GET", "/things/%s/shadow?name=n" % thing,
                                           service="iotdata")
    assert status == 404, (status, body)
    assert headers.get("x-amzn-ErrorType", "").split(":")[0] == "ResourceNotFoundException"
    doc = json.loads(body)
    assert (doc["code"], doc["message"]) == (404, "No shadow exists with name: '%s~n'" % thing)


def test_data_delete_keeps_version_counter(server):
    data = data_plane(server)
    thing = unique("bo-counter")
    versions = [update_shadow(data, thing, {"state": {"reported": {"n": i}}})["version"]
                for i in range(3)]
    assert versions == [1, 2, 3], versions
    assert delete_shadow(data, thing)["version"] == 3
    data_error(data, "ResourceNotFoundException", 404, None, data.get_thing_shadow,
               thingName=thing)
    up = update_shadow(data, thing, {"state": {"desired": {"fresh": True}}})
    assert up["version"] == 4, up
    got = get_shadow(data, thing)
    assert got["version"] == 4, got
    assert got["state"] == {"desired": {"fresh": True}, "delta": {"fresh": True}}, got
    # a conditional update sees the continued counter
    assert update_shadow(data, thing, {"state": {"reported": {"fresh": True}},
                                       "version": 4})["version"] == 5


def test_data_list_named_shadows_paging(server):
    data = data_plane(server)
    thing = unique("bo-many")
    names = ["zeta", "alpha", "mid_1", "beta", "gamma-2"]
    for n in names:
        update_shadow(data, thing, {"state": {"reported": {"name": n}}}, name=n)
    update_shadow(data, thing, {"state": {"reported": {"classic": True}}})  # never listed

    pages, token = [], None
    for _ in range(10):
        kw = {"nextToken": token} if token else {}
        r = data.list_named_shadows_for_thing(thingName=thing, pageSize=2, **kw)
        pages.append(r["results"])
        assert_seconds(r["timestamp"])
        token = r.get("nextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1], pages
    assert [n for p in pages for n in p] == sorted(names), pages
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == sorted(names)
    assert "nextToken" not in data.list_named_shadows_for_thing(thingName=thing)


def test_data_retained_messages(server):
    data = data_plane(server)
    base = "rt/%s" % unique("plant")
    topics = ["%s/line %d/temp" % (base, i) for i in (3, 1, 4, 0, 2)]
    for i, t in enumerate(topics):
        data.publish(topic=t, qos=1, retain=True, payload=b"v%d\x00\xff" % i)
    # one more, QoS 0, and a non-retained publish that must not appear
    data.publish(topic=base + "/zz", qos=0, retain=True, payload=b"z")
    data.publish(topic=base + "/not-kept", qos=1, payload=b"n")

    # GetRetainedMessage: boto3 percent-encodes the whole topic ('/' and ' ' included)
    retained_soon(data, base + "/zz")            # the last retained one published
    got = retained_soon(data, topics[0])
    assert got["topic"] == topics[0], got
    assert got["payload"] == b"v0\x00\xff", got
    assert got["qos"] == 1, got
    assert_millis(got["lastModifiedTime"])
    assert data.get_retained_message(topic=base + "/zz")["qos"] == 0
    data_error(data, "ResourceNotFoundException", 404, None, data.get_retained_message,
               topic=base + "/not-kept")
    data_error(data, "ResourceNotFoundException", 404, None, data.get_retained_message,
               topic="no/such/" + unique("t"))

    # ListRetainedMessages with maxResults=2: full pages but the last, sorted by topic
    pages, token = [], None
    for _ in range(100):
        kw = {"nextToken": token} if token else {}
        r = data.list_retained_messages(maxResults=2, **kw)
        pages.append(r["retainedTopics"])
        token = r.get("nextToken")
        if not token:
            break
    assert token is None, "paging did not end"
    assert all(len(p) == 2 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 2, \
        [len(p) for p in pages]
    entries = [e for p in pages for e in p]
    all_topics = [e["topic"] for e in entries]
    assert all_topics == sorted(all_topics), all_topics
    assert len(set(all_topics)) == len(all_topics), all_topics
    mine = {e["topic"]: e for e in entries if e["topic"].startswith(base + "/")}
    assert sorted(mine) == sorted(topics + [base + "/zz"]), mine
    for i, t in enumerate(topics):
        assert (mine[t]["payloadSize"], mine[t]["qos"]) == (len(b"v%d\x00\xff" % i), 1), mine[t]
        assert_millis(mine[t]["lastModifiedTime"])
    assert mine[base + "/zz"]["qos"] == 0
    # without maxResults everything fits in one page ($SYS, if listed, may have changed since)
    one_page = [e["topic"] for e in data.list_retained_messages()["retainedTopics"]]
    assert [t for t in one_page if not t.startswith("$")] == \
        [t for t in all_topics if not t.startswith("$")], (one_page, all_topics)


# ====================================================================== paho MQTT

@VERSIONS
def test_mqtt_update_accepted_delta_and_get(server, clients, version):
    thing = unique("mq-lamp")
    p = prefix(thing)
    c, replies = shadow_client(clients, thing, version=version)

    req = {"state": {"desired": {"a": 1, "b": {"c": 2, "d": 3}, "list": [1, 2]},
                     "reported": {"a": 1, "b": {"c": 2}, "extra": "x"}},
           "clientToken": "tok-1"}
    request(c, thing, "update", req)
    acc = replies.token(p + "/update/accepted", "tok-1")
    assert (acc["version"], acc["state"]) == (1, req["state"]), acc
    assert_seconds(acc["timestamp"])
    delta = replies.wait(p + "/update/delta", lambda d: d["version"] == 1)
    assert delta["state"] == {"b": {"d": 3}, "list": [1, 2]}, delta
    assert delta.get("clientToken", "tok-1") == "tok-1", delta
    assert_seconds(delta["timestamp"])

    # a second update: the delta holds every current difference, not only the request's
    request(c, thing, "update", {"state": {"desired": {"e": "new"}}, "clientToken": "tok-2"})
    acc = replies.token(p + "/update/accepted", "tok-2")
    assert (acc["version"], acc["state"]) == (2, {"desired": {"e": "new"}}), acc
    assert set(acc["metadata"]) == {"desired"} and set(acc["metadata"]["desired"]) == {"e"}, acc
    delta = replies.wait(p + "/update/delta", lambda d: d["version"] == 2)
    assert delta["state"] == {"b": {"d": 3}, "list": [1, 2], "e": "new"}, delta

    # get: the whole document with the delta, the token echoed
    request(c, thing, "get", {"clientToken": "g-1"})
    got = replies.token(p + "/get/accepted", "g-1")
    assert got["version"] == 2, got
    assert got["state"]["delta"] == {"b": {"d": 3}, "list": [1, 2], "e": "new"}, got
    assert got["state"]["desired"] == {"a": 1, "b": {"c": 2, "d": 3}, "list": [1, 2], "e": "new"}
    assert got["state"]["reported"] == {"a": 1, "b": {"c": 2}, "extra": "x"}, got

    # reporting the desired state: accepted, and no delta any more
    request(c, thing, "update", {"state": {"reported": {"b": {"d": 3}, "list": [1, 2], "e": "new"}},
                                 "clientToken": "tok-3"})
    acc = replies.token(p + "/update/accepted", "tok-3")
    assert acc["version"] == 3, acc
    request(c, thing, "get")                               # empty payload
    got = replies.wait(p + "/get/accepted")
    assert replies.qos == 1, "reply at QoS %r, subscribed at 1" % replies.qos
    assert got["version"] == 3 and "delta" not in got["state"], got
    assert "clientToken" not in got, got
    replies.none(p + "/update/delta")
    assert not [t for t, _d, _q in replies.pending if t.endswith("/rejected")], replies.pending


@VERSIONS
def test_mqtt_rejected_replies(server, clients, version):
    thing = unique("mq-reject")
    p = prefix(thing)
    c, replies = shadow_client(clients, thing, version=version)

    request(c, thing, "update", raw=b"{bad")
    rej = replies.wait(p + "/update/rejected")
    assert (rej["code"], rej["message"]) == (400, "Invalid JSON"), rej

    request(c, thing, "get", {"clientToken": "g-404"})
    rej = replies.token(p + "/get/rejected", "g-404")
    assert (rej["code"], rej["message"]) == (404, "No shadow exists with name: '%s'" % thing), rej
    request(c, thing, "delete", {"clientToken": "d-404"})
    rej = replies.token(p + "/delete/rejected", "d-404")
    assert rej["code"] == 404, rej

    request(c, thing, "update", {"state": {"reported": {"v": 1}}, "clientToken": "u-1"})
    assert replies.token(p + "/update/accepted", "u-1")["version"] == 1
    request(c, thing, "update", {"state": {"reported": {"v": 2}}, "version": 5,
                                 "clientToken": "u-409"})
    rej = replies.token(p + "/update/rejected", "u-409")
    assert (rej["code"], rej["message"]) == (409, "Version conflict"), rej
    request(c, thing, "update", {"state": {"desired": SEVEN_LEVELS}, "clientToken": "u-deep"})
    rej = replies.token(p + "/update/rejected", "u-deep")
    assert (rej["code"], rej["message"]) == (400, NESTING_MESSAGE), rej
    request(c, thing, "update", {"clientToken": "u-nostate"})
    rej = replies.token(p + "/update/rejected", "u-nostate")
    assert (rej["code"], rej["message"]) == (400, "Missing required node: state"), rej

    # none of them changed the shadow; the right version is accepted
    request(c, thing, "update", {"state": {"reported": {"v": 2}}, "version": 1,
                                 "clientToken": "u-2"})
    assert replies.token(p + "/update/accepted", "u-2")["version"] == 2
    request(c, thing, "delete", {"clientToken": "d-1"})
    gone = replies.token(p + "/delete/accepted", "d-1")
    assert gone["version"] == 2, gone
    assert_seconds(gone["timestamp"])


@VERSIONS
def test_mqtt_named_shadow_topics(server, clients, version):
    thing = unique("mq-named")
    named = prefix(thing, "cfg")
    c, replies = shadow_client(clients, thing, name="cfg", version=version)
    classic, classic_replies = shadow_client(clients, thing, version=version, label="classic")

    request(c, thing, "update", {"state": {"desired": {"mode": "on"}}, "clientToken": "n-1"},
            name="cfg")
    acc = replies.token(named + "/update/accepted", "n-1")
    assert (acc["version"], acc["state"]) == (1, {"desired": {"mode": "on"}}), acc
    delta = replies.wait(named + "/update/delta")
    assert delta["state"] == {"mode": "on"}, delta
    docs = replies.wait(named + "/update/documents")
    assert "previous" not in docs and docs["current"]["version"] == 1, docs

    request(c, thing, "get", {"clientToken": "n-g"}, name="cfg")
    got = replies.token(named + "/get/accepted", "n-g")
    assert got["state"]["delta"] == {"mode": "on"}, got
    request(c, thing, "get", {"clientToken": "n-404"}, name="other")   # not subscribed: nothing
    request(c, thing, "delete", {"clientToken": "n-d"}, name="cfg")
    assert replies.token(named + "/delete/accepted", "n-d")["version"] == 1
    request(c, thing, "get", {"clientToken": "n-gone"}, name="cfg")
    rej = replies.token(named + "/get/rejected", "n-gone")
    assert (rej["code"], rej["message"]) == (404, "No shadow exists with name: '%s~cfg'" % thing)

    # the classic shadow's subscriber heard nothing of it, and the classic shadow does not exist
    request(classic, thing, "get", {"clientToken": "c-g"})
    classic_replies.token(prefix(thing) + "/get/rejected", "c-g")
    assert classic_replies.pending == [], classic_replies.pending


def test_rest_update_emits_mqtt_replies_and_rest_errors_do_not(server, clients):
    thing = unique("rest-mq")
    p = prefix(thing)
    c, replies = shadow_client(clients, thing, version=V5)
    data = data_plane(server)

    up = update_shadow(data, thing, {"state": {"desired": {"t": 20}, "reported": {"t": 18}},
                                     "clientToken": "r-1"})
    assert up["version"] == 1, up
    acc = replies.token(p + "/update/accepted", "r-1")
    assert acc == up, (acc, up)
    delta = replies.wait(p + "/update/delta")
    assert (delta["state"], delta["version"]) == ({"t": 20}, 1), delta
    docs = replies.wait(p + "/update/documents")
    assert "previous" not in docs, docs
    assert docs["current"]["state"] == {"desired": {"t": 20}, "reported": {"t": 18}}, docs
    assert docs["current"]["version"] == 1 and docs.get("clientToken", "r-1") == "r-1", docs

    # REST errors: HTTP errors only, no /rejected
    data_error(data, "InvalidRequestException", 400, "Invalid JSON", data.update_thing_shadow,
               thingName=thing, payload=b"{bad")
    data_error(data, "ConflictException", 409, "Version conflict", data.update_thing_shadow,
               thingName=thing, payload=dumps({"state": {"reported": {"t": 19}}, "version": 9,
                                               "clientToken": "r-409"}).encode())
    data_error(data, "ResourceNotFoundException", 404, None, data.get_thing_shadow,
               thingName=thing, shadowName="absent")
    # a REST update after them is the marker
    update_shadow(data, thing, {"state": {"reported": {"t": 20}}, "clientToken": "r-2"})
    assert replies.token(p + "/update/accepted", "r-2")["version"] == 2
    docs = replies.wait(p + "/update/documents", lambda d: d["current"]["version"] == 2)
    assert docs["previous"]["version"] == 1, docs
    for suffix in ("update/rejected", "get/rejected", "delete/rejected"):
        replies.none("%s/%s" % (p, suffix), window=0.2)
    replies.none(p + "/update/delta", window=0.1)           # t reported as desired: no delta


# ====================================================================== mosquitto_sub

def test_mosquitto_sub_sees_named_shadow_documents(server, clients):
    for tool in ("mosquitto_sub", "stdbuf"):
        assert shutil.which(tool), "%s not installed (Debian package mosquitto-clients)" % tool
    thing, name = unique("mos-thing"), "cfg"
    topic = prefix(thing, name) + "/update/documents"
    sub = MosquittoSub(["mosquitto_sub", "-d", "-h", "127.0.0.1", "-p", str(server.mqtt_port),
                        "-V", "mqttv311", "-i", unique("mos-sub"), "-q", "1", "-v",
                        "-t", topic, "-C", "2", "-W", "20"])
    try:
        sub.wait_for("received SUBACK")
        c, replies = shadow_client(clients, thing, name=name, suffixes=("update/accepted",))
        for i, tok in enumerate(("m-1", "m-2")):
            request(c, thing, "update", {"state": {"reported": {"step": i}}, "clientToken": tok},
                    name=name)
            replies.token(prefix(thing, name) + "/update/accepted", tok)
        assert sub.finish() == 0, "\n".join(sub.lines)
    finally:
        sub.kill()
    docs = [json.loads(line[len(topic) + 1:]) for line in sub.lines
            if line.startswith(topic + " ")]
    assert len(docs) == 2, "\n".join(sub.lines)
    first, second = docs
    assert "previous" not in first, first
    assert first["current"]["version"] == 1, first
    assert first["current"]["state"] == {"reported": {"step": 0}}, first
    assert first.get("clientToken", "m-1") == "m-1", first
    assert second["previous"]["version"] == 1 and second["current"]["version"] == 2, second
    assert second["previous"]["state"] == first["current"]["state"], second
    assert second["current"]["state"] == {"reported": {"step": 1}}, second
    assert set(second["current"]["metadata"]) == {"reported"}, second
    assert_seconds(second["timestamp"])


# ====================================================================== policies

@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_device_policy_confines_shadow_topics(server, version):
    doc = {"Version": "2012-10-17", "Statement": [
        allow("iot:Connect", "*"),
        allow(["iot:Publish", "iot:Receive"], ARN + "topic/$aws/things/dev-a/shadow/*"),
        allow("iot:Subscribe", ARN + "topicfilter/$aws/things/dev-a/shadow/*")]}
    cert, key = server.make_device_cert("dev-a", policy_document=doc)
    data = data_plane(server)
    r = connect_device_raw(server, cert, key, "dev-a", version)
    own = prefix("dev-a")
    assert r.subscribe([(own + "/update/accepted", 1), (own + "/update/rejected", 1)]).codes \
        == [1, 1]

    ack = r.publish(own + "/update", dumps({"state": {"reported": {"ok": 1}},
                                            "clientToken": "own"}).encode(), qos=1)
    if version == 5:
        assert ack.reason_code in PUBACK_OK, ack
    msg = r.expect(rawmqtt.PUBLISH)
    r.ack(msg)
    assert msg.topic == own + "/update/accepted", msg
    assert json.loads(msg.payload)["version"] == 1, msg
    assert get_shadow(data, "dev-a")["state"] == {"reported": {"ok": 1}}

    other = prefix("dev-b")
    failure = RC_NOT_AUTHORIZED if version == 5 else V311_SUBACK_FAILURE
    assert r.subscribe([(other + "/update/accepted", 1)]).codes == [failure]
    assert r.subscribe([("$aws/things/+/shadow/update/accepted", 1)]).codes == [failure]
    still_open(r)
    forbidden = dumps({"state": {"reported": {"hijacked": True}}}).encode()
    if version == 5:
        ack = r.publish(other + "/update", forbidden, qos=1)
        assert ack.reason_code == RC_NOT_AUTHORIZED, ack
        still_open(r)
        r.disconnect(wait_closed=True)
    else:
        r.send(rawmqtt.publish(other + "/update", forbidden, qos=1, pid=r.next_pid(), version=4))
        pkts = r.wait_closed(TIMEOUT)
        assert not any(p.type == rawmqtt.PUBACK for p in pkts), pkts
        r.close()
    data_error(data, "ResourceNotFoundException", 404, "No shadow exists with name: 'dev-b'",
               data.get_thing_shadow, thingName="dev-b")
    assert get_shadow(data, "dev-a")["version"] == 1


# ====================================================================== reply topics

REPLY_SUFFIXES = ("update/accepted", "update/rejected", "update/delta", "update/documents",
                  "get/accepted", "delete/rejected")


def test_clients_cannot_publish_to_reply_topics(server, clients):
    thing = unique("spoof")
    p = prefix(thing)
    c, replies = shadow_client(clients, thing, version=V5, label="listener")
    spoofer = clients.connected(version=V5, name="spoofer")
    for suffix in REPLY_SUFFIXES:
        # acknowledged (QoS 1 completes) but not routed
        spoofer.publish("%s/%s" % (p, suffix), b'{"version":999,"spoofed":true}', qos=1)
    # the server's own reply comes after them: it is the first thing the listener gets
    request(spoofer, thing, "update", {"state": {"reported": {"real": 1}}, "clientToken": "real"})
    acc = replies.token(p + "/update/accepted", "real")
    assert acc["version"] == 1 and "spoofed" not in acc, acc
    replies.none(window=0.3, where=lambda d: "spoofed" in d)
    assert spoofer.connected, "the spoofing client was disconnected"

    data = data_plane(server)
    for suffix in REPLY_SUFFIXES:
        expect_error("ForbiddenException", 403, data.publish, topic="%s/%s" % (p, suffix),
                     qos=1, payload=b'{"version":999,"spoofed":true}')
    replies.none(window=0.3, where=lambda d: "spoofed" in d)


# ====================================================================== durability

def test_accepted_updates_survive_kill9(server, clients):
    things = ["dur-%02d-%s" % (i, unique("t")) for i in range(20)]
    c = clients.connected(version=V311, name="durability")
    assert c.subscribe([("$aws/things/+/shadow/update/accepted", 1),
                        ("$aws/things/+/shadow/update/rejected", 1)]) == [1, 1]
    last = {}                      # thing -> (version, reported) of its last accepted update
    seq = 0
    for rnd in range(10):          # 10 rounds of one update per thing: 200 updates
        want = {}
        for thing in things:
            token = "d-%d" % seq
            reported = {"seq": seq, "round": rnd, "thing": thing}
            c.publish("%s/update" % prefix(thing), dumps({"state": {"reported": reported},
                                                          "clientToken": token}), qos=1)
            want[token] = (thing, reported)
            seq += 1
        deadline = time.monotonic() + 4 * TIMEOUT
        while want:
            msg = c.expect(timeout=max(deadline - time.monotonic(), 0.001))
            doc = json.loads(msg.payload)
            assert msg.topic.endswith("/update/accepted"), (msg.topic, doc)
            assert doc.get("clientToken") in want, (msg.topic, doc, sorted(want))
            thing, reported = want.pop(doc["clientToken"])
            assert msg.topic == prefix(thing) + "/update/accepted", (msg.topic, doc)
            assert doc["version"] == rnd + 1, (thing, doc)
            last[thing] = (doc["version"], reported)
    assert seq == 200 and len(last) == 20
    server.kill9()                 # right after the last accepted arrived
    server.start()

    data = data_plane(server)
    for thing in things:
        got = get_shadow(data, thing)
        assert (got["version"], got["state"]) == (last[thing][0],
                                                  {"reported": last[thing][1]}), (thing, got)


# ====================================================================== registry

def test_deleting_a_thing_deletes_its_shadows(cli, tmp_path):
    thing = unique("reg-thing")
    out = tmp_path / "out.json"
    cli.ok("iot", "create-thing", "--thing-name", thing)
    cli.shadow("update", thing, out, payload={"state": {"reported": {"on": True}}})
    cli.shadow("update", thing, out, name="aux", payload={"state": {"desired": {"x": 1}}})
    assert cli.shadow("get", thing, out)["version"] == 1
    bystander = unique("reg-other")
    cli.shadow("update", bystander, out, payload={"state": {"reported": {"on": True}}})

    cli.ok("iot", "delete-thing", "--thing-name", thing)
    res = cli.shadow_fails("ResourceNotFoundException", "get", thing, tmp_path / "no.json")
    assert "No shadow exists with name: '%s'" % thing in res.stderr, repr(res)
    res = cli.shadow_fails("ResourceNotFoundException", "get", thing, tmp_path / "no.json",
                           name="aux")
    assert "No shadow exists with name: '%s~aux'" % thing in res.stderr, repr(res)
    listed = cli.ok("iot-data", "list-named-shadows-for-thing", "--thing-name", thing)
    assert listed["results"] == [], listed
    # another thing's shadow (no registry thing) is untouched
    assert cli.shadow("get", bystander, out)["state"] == {"reported": {"on": True}}


# ====================================================================== back-pressure

def test_too_many_in_flight_is_429(nimbus, clients):
    nimbus.start(["--shadow-max-in-flight", "1", "--commit-interval-ms", "200"])
    thing = unique("busy")
    p = prefix(thing)
    c, _replies = shadow_client(clients, thing, version=V5,
                                suffixes=("update/accepted", "update/rejected"))
    tokens = ["b-%d" % i for i in range(5)]
    for i, tok in enumerate(tokens):          # QoS 0, back to back
        request(c, thing, "update", {"state": {"reported": {"i": i}}, "clientToken": tok}, qos=0)

    # one reply per request; a 429 may come before the payload was read, so without a token
    replies_got = []                          # [(topic suffix, doc)]
    deadline = time.monotonic() + 3 * TIMEOUT
    while len(replies_got) < len(tokens):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("%d replies for %d updates: %r" % (len(replies_got), len(tokens),
                                                                   replies_got))
        msg = c.expect(timeout=remaining)
        replies_got.append((msg.topic[len(p) + 1:], json.loads(msg.payload)))
    accepted = [d for s, d in replies_got if s == "update/accepted"]
    rejected = [d for s, d in replies_got if s == "update/rejected"]
    assert len(accepted) + len(rejected) == len(tokens), replies_got
    assert rejected and all(d["code"] == 429 for d in rejected), replies_got
    assert accepted, "no update accepted: %r" % replies_got
    assert sorted(d["version"] for d in accepted) == list(range(1, len(accepted) + 1)), \
        replies_got
    seen = [d["clientToken"] for d in accepted] + \
        [d["clientToken"] for d in rejected if "clientToken" in d]
    assert len(seen) == len(set(seen)) and set(seen) <= set(tokens), replies_got
    c.expect_none(0.2)                        # and no second reply to any of them
    # the shadow holds exactly the accepted updates, the last one's state on top
    newest = max(accepted, key=lambda d: d["version"])
    got = get_shadow(data_plane(nimbus), thing)
    assert got["version"] == len(accepted), (got, replies_got)
    assert got["state"] == {"reported": newest["state"]["reported"]}, (got, newest)
    # /metrics counts them: every 429 and every accepted update
    assert metric(nimbus, 'nimbus_shadow_requests_rejected_total{code="429"}') == len(rejected)
    assert metric(nimbus, 'nimbus_shadow_requests_accepted_total{operation="update"}') == \
        len(accepted)
