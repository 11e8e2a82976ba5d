"""End-to-end tests of the Google Cloud Pub/Sub REST v1 surface (issue 12), driving the real
`nimbus` binary over its HTTP listener (loopback: open, as Google's emulator is) with the
standard library's urllib and json, and curl for the oversized publish and a 404:

- topics: create / get / list (paging with pageSize and nextPageToken) / delete, a deleted
  topic's subscriptions naming `_deleted-topic_`, ALREADY_EXISTS (409) on re-create, NOT_FOUND
  (404) for a missing topic (get, publish) and subscription (pull), bad names (too short,
  goog-prefixed, an encoded '/') as INVALID_ARGUMENT (400), and Google's error body shape;
- subscriptions: ackDeadlineSeconds, filter, retryPolicy and deadLetterPolicy round trips,
  snake_case input, refused settings (ackDeadlineSeconds 5, bigqueryConfig), unknown fields and
  broken JSON ("Invalid JSON payload received."), a body naming another resource than the URL;
- messages: publish with attributes (base64 data, decimal message ids), pull with
  returnImmediately, acknowledge, nack (modifyAckDeadline 0) and redelivery with a new ack id,
  a filtered subscription, a waiting pull woken by a later publish, the publish limits (1001
  messages, 101 attributes, a 257-byte key, an empty message, a 1025-byte ordering key), an
  11 MB publish via curl (413 before the body is read, or the service's 400), dead-lettering
  after 5 delivery attempts, and kill -9 losing no published message nor reviving an acked one;
- the permissive IAM stubs, schemas (501) and unknown verbs (404).

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_pubsub_rest.py
"""

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import TIMEOUT, wait_until

PROJECT = "p"
# A pull without returnImmediately may wait up to the server's cap (30 s) before answering {}.
PULL_TIMEOUT = 40.0
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z")
MB = 1000 * 1000

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ====================================================================== helpers

class Reply:
    """One HTTP answer: status, content type, the JSON body (None when empty) and raw bytes."""

    def __init__(self, method, url, status, content_type, raw):
        self.method, self.url = method, url
        self.status, self.content_type, self.raw = status, content_type, raw
        try:
            self.body = json.loads(raw) if raw else None
        except ValueError:
            raise AssertionError("%s %s: %d with a body that is not JSON: %r"
                                 % (method, url, status, raw[:300]))

    def __repr__(self):
        return "%s %s -> %d %s" % (self.method, self.url, self.status, self.raw[:500])


class PubSub:
    """The REST v1 API of one server, for one project. The base URL is read per call, so it
    follows the server across restarts (its ports change)."""

    def __init__(self, server, project=PROJECT):
        self.server = server
        self.project = project

    @property
    def base(self):
        return "http://" + self.server.endpoints["http"]

    # ---- names and paths
    def topic_name(self, topic):
        return "projects/%s/topics/%s" % (self.project, topic)

    def subscription_name(self, sub):
        return "projects/%s/subscriptions/%s" % (self.project, sub)

    def path(self, collection, resource_id=None, verb=None):
        p = "/v1/projects/%s/%s" % (self.project, collection)
        if resource_id is not None:
            p += "/" + resource_id
        if verb:
            p += ":" + verb
        return p

    # ---- HTTP
    def call(self, method, path, body=None, query=None, raw=None, timeout=TIMEOUT, headers=None):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = dict(headers or {})
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(request, timeout=timeout) as resp:
                return Reply(method, url, resp.status, resp.headers.get("Content-Type"),
                             resp.read())
        except urllib.error.HTTPError as e:
            return Reply(method, url, e.code, e.headers.get("Content-Type"), e.read())

    # ---- operations (each returns the Reply; ok() / error() check it)
    def create_topic(self, topic, body=None):
        return self.call("PUT", self.path("topics", topic), body if body is not None else {})

    def get_topic(self, topic):
        return self.call("GET", self.path("topics", topic))

    def delete_topic(self, topic):
        return self.call("DELETE", self.path("topics", topic))

    def create_subscription(self, sub, topic, **fields):
        body = {"topic": self.topic_name(topic)}
        body.update(fields)
        return self.call("PUT", self.path("subscriptions", sub), body)

    def get_subscription(self, sub):
        return self.call("GET", self.path("subscriptions", sub))

    def publish(self, topic, messages, query=None):
        return self.call("POST", self.path("topics", topic, "publish"), {"messages": messages},
                         query=query)

    def pull(self, sub, max_messages=10, return_immediately=True):
        return self.call("POST", self.path("subscriptions", sub, "pull"),
                         {"maxMessages": max_messages, "returnImmediately": return_immediately},
                         timeout=PULL_TIMEOUT if not return_immediately else TIMEOUT)

    def acknowledge(self, sub, ack_ids):
        return self.call("POST", self.path("subscriptions", sub, "acknowledge"),
                         {"ackIds": list(ack_ids)})

    def modify_ack_deadline(self, sub, ack_ids, seconds):
        return self.call("POST", self.path("subscriptions", sub, "modifyAckDeadline"),
                         {"ackIds": list(ack_ids), "ackDeadlineSeconds": seconds})


def ok(reply):
    """The JSON body of a 200 answer."""
    assert reply.status == 200, "expected 200: %r" % reply
    assert (reply.content_type or "").startswith("application/json"), \
        "content type %r: %r" % (reply.content_type, reply)
    assert isinstance(reply.body, dict), "expected a JSON object: %r" % reply
    return reply.body


def error(reply, http_code, status):
    """Check Google's REST error shape and return its message."""
    assert reply.status == http_code, "expected %d %s: %r" % (http_code, status, reply)
    assert isinstance(reply.body, dict) and set(reply.body) == {"error"}, \
        "not a Google error body: %r" % reply
    err = reply.body["error"]
    assert err.get("code") == http_code, "error.code: %r" % reply
    assert err.get("status") == status, "error.status: %r" % reply
    assert isinstance(err.get("message"), str) and err["message"], "error.message: %r" % reply
    assert set(err) <= {"code", "message", "status", "details"}, "extra keys: %r" % reply
    return err["message"]


def b64(data):
    return base64.b64encode(data).decode()


def message(data=None, **attributes):
    m = {}
    if data is not None:
        m["data"] = b64(data)
    if attributes:
        m["attributes"] = attributes
    return m


def received(body):
    """The receivedMessages of a pull answer ({} when there are none)."""
    return body.get("receivedMessages", [])


def pull_until(api, sub, want_ids, timeout=60.0):
    """Waiting pulls until every id of `want_ids` has been received; returns everything
    received (ReceivedMessage dicts, in order)."""
    deadline = time.monotonic() + timeout
    got = []
    while not set(want_ids) <= {rm["message"]["messageId"] for rm in got}:
        assert time.monotonic() < deadline, "still missing %r after %.0fs (got %r)" % (
            set(want_ids) - {rm["message"]["messageId"] for rm in got}, timeout, got)
        got += received(ok(api.pull(sub, max_messages=100, return_immediately=False)))
    return got


def setup_topic_and_subscription(api, topic="topic1", sub="sub1", **fields):
    ok(api.create_topic(topic))
    ok(api.create_subscription(sub, topic, **fields))


def curl(*args, timeout=120):
    """Run curl (no proxy, no config file); returns CompletedProcess with text output."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.fail("curl is not installed (apt-get install curl)", pytrace=False)
    return subprocess.run([exe, "-q", "-sS", "--noproxy", "*", "--max-time", str(timeout)]
                          + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout + 10)


def curl_post_file(url, path, out):
    """POST the file at `path` as JSON, announcing it (Expect: 100-continue) so a server that
    refuses it unread answers before the body is sent. Returns the HTTP status code."""
    res = curl("-o", str(out), "-w", "%{http_code}", "-X", "POST",
               "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
               "--data-binary", "@" + str(path), url)
    assert res.returncode == 0, "curl failed (%d): %s" % (res.returncode, res.stderr)
    return int(res.stdout.strip())


# ====================================================================== topics

def test_topic_create_get_recreate_delete(server):
    api = PubSub(server)
    created = ok(api.create_topic("topic1", {"labels": {"team": "iot"}}))
    assert created["name"] == api.topic_name("topic1")
    assert created.get("labels") == {"team": "iot"}

    got = ok(api.get_topic("topic1"))
    assert got["name"] == api.topic_name("topic1")
    assert got.get("labels") == {"team": "iot"}

    msg = error(api.create_topic("topic1"), 409, "ALREADY_EXISTS")
    assert "exist" in msg.lower()

    assert ok(api.delete_topic("topic1")) == {}
    error(api.get_topic("topic1"), 404, "NOT_FOUND")
    error(api.delete_topic("topic1"), 404, "NOT_FOUND")
    # The name is free again.
    ok(api.create_topic("topic1"))


def test_list_topics_pages(server):
    api = PubSub(server, project="paging")
    names = {api.topic_name("topic-%d" % i) for i in range(5)}
    for i in range(5):
        ok(api.create_topic("topic-%d" % i))
    # Another project's topics are not listed.
    ok(PubSub(server, project="elsewhere").create_topic("topic-x"))

    seen, token, pages = [], None, 0
    while True:
        query = {"pageSize": 2}
        if token:
            query["pageToken"] = token
        body = ok(api.call("GET", api.path("topics"), query=query))
        page = [t["name"] for t in body.get("topics", [])]
        assert len(page) <= 2, "page larger than pageSize: %r" % body
        seen += page
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            break
        assert pages < 10, "paging does not end: %r" % seen
    assert sorted(seen) == sorted(names), "each topic exactly once: %r" % seen
    assert pages >= 3

    # Without paging: all of them, and Node's `$alt=json;enum-encoding=int` is ignored.
    body = ok(api.call("GET", api.path("topics"), query={"$alt": "json;enum-encoding=int"}))
    assert sorted(t["name"] for t in body["topics"]) == sorted(names)
    assert "nextPageToken" not in body
    error(api.call("GET", api.path("topics"), query={"pageSize": "two"}), 400,
          "INVALID_ARGUMENT")


def test_deleted_topic_keeps_subscriptions(server):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    body = ok(api.call("GET", api.path("topics", "topic1") + "/subscriptions"))
    assert body["subscriptions"] == [api.subscription_name("sub1")]
    body = ok(api.call("GET", api.path("subscriptions")))
    assert [s["name"] for s in body["subscriptions"]] == [api.subscription_name("sub1")]
    assert body["subscriptions"][0]["topic"] == api.topic_name("topic1")

    assert ok(api.delete_topic("topic1")) == {}
    sub = ok(api.get_subscription("sub1"))
    assert sub["topic"] == "_deleted-topic_"
    body = ok(api.call("GET", api.path("topics")))
    assert body.get("topics", []) == []


def test_not_found_and_error_shape(server):
    api = PubSub(server)
    reply = api.get_topic("missing")
    msg = error(reply, 404, "NOT_FOUND")
    assert "missing" in msg
    assert "details" not in reply.body["error"]
    assert reply.content_type.startswith("application/json")

    error(api.publish("missing", [message(b"x")]), 404, "NOT_FOUND")
    error(api.pull("missing"), 404, "NOT_FOUND")
    error(api.get_subscription("missing"), 404, "NOT_FOUND")
    error(api.create_subscription("sub1", "missing"), 404, "NOT_FOUND")


@pytest.mark.parametrize("topic_id", ["ab", "googtopic", "a%2Fbcd", "1abc", "a%20bc"],
                         ids=["too-short", "goog-prefix", "slash", "digit-first", "space"])
def test_bad_topic_names(server, topic_id):
    api = PubSub(server)
    msg = error(api.create_topic(topic_id), 400, "INVALID_ARGUMENT")
    assert "Invalid [topics] name" in msg, msg
    error(api.get_topic(topic_id), 400, "INVALID_ARGUMENT")


def test_bad_subscription_name(server):
    api = PubSub(server)
    ok(api.create_topic("topic1"))
    msg = error(api.create_subscription("goog-sub", "topic1"), 400, "INVALID_ARGUMENT")
    assert "Invalid [subscriptions] name" in msg, msg


def test_body_name_must_match_the_url(server):
    api = PubSub(server)
    error(api.create_topic("topic1", {"name": api.topic_name("other")}), 400, "INVALID_ARGUMENT")
    # The same name as the URL's is fine.
    created = ok(api.create_topic("topic1", {"name": api.topic_name("topic1")}))
    assert created["name"] == api.topic_name("topic1")


def test_json_errors(server):
    api = PubSub(server)
    msg = error(api.create_topic("topic1", {"nosuchField": 1}), 400, "INVALID_ARGUMENT")
    assert msg.startswith("Invalid JSON payload received."), msg
    msg = error(api.call("PUT", api.path("topics", "topic1"), raw=b'{"labels": '), 400,
                "INVALID_ARGUMENT")
    assert msg.startswith("Invalid JSON payload received."), msg
    # Nothing was created by the refused calls; an empty body counts as {}.
    error(api.get_topic("topic1"), 404, "NOT_FOUND")
    assert ok(api.call("PUT", api.path("topics", "topic1"), raw=b""))["name"] == api.topic_name("topic1")


# ====================================================================== subscriptions

def test_subscription_settings_round_trip(server):
    api = PubSub(server)
    ok(api.create_topic("topic1"))
    ok(api.create_topic("dlq"))
    created = ok(api.create_subscription(
        "sub1", "topic1", ackDeadlineSeconds=30, filter='attributes.kind = "alert"',
        retryPolicy={"minimumBackoff": "10s", "maximumBackoff": "300s"},
        deadLetterPolicy={"deadLetterTopic": api.topic_name("dlq"), "maxDeliveryAttempts": 5},
        labels={"env": "test"}))
    for body in (created, ok(api.get_subscription("sub1"))):
        assert body["name"] == api.subscription_name("sub1")
        assert body["topic"] == api.topic_name("topic1")
        assert body["ackDeadlineSeconds"] == 30
        assert body["filter"] == 'attributes.kind = "alert"'
        assert body["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "300s"}
        assert body["deadLetterPolicy"] == {"deadLetterTopic": api.topic_name("dlq"),
                                            "maxDeliveryAttempts": 5}
        assert body.get("labels") == {"env": "test"}

    # snake_case input is accepted too; output is camelCase.
    snake = ok(api.call("PUT", api.path("subscriptions", "sub2"),
                        {"topic": api.topic_name("topic1"), "ack_deadline_seconds": 20}))
    assert snake["ackDeadlineSeconds"] == 20
    assert "ack_deadline_seconds" not in snake

    error(api.create_subscription("sub1", "topic1"), 409, "ALREADY_EXISTS")
    error(api.create_subscription("sub3", "topic1", ackDeadlineSeconds=5), 400, "INVALID_ARGUMENT")
    error(api.create_subscription("sub4", "topic1", bigqueryConfig={}), 400, "INVALID_ARGUMENT")
    error(api.get_subscription("sub3"), 404, "NOT_FOUND")
    error(api.get_subscription("sub4"), 404, "NOT_FOUND")


def test_update_and_delete_subscription(server):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1", ackDeadlineSeconds=30)
    updated = ok(api.call("PATCH", api.path("subscriptions", "sub1"), {
        "subscription": {"ackDeadlineSeconds": 60}, "updateMask": "ackDeadlineSeconds"}))
    assert updated["ackDeadlineSeconds"] == 60
    assert ok(api.get_subscription("sub1"))["ackDeadlineSeconds"] == 60

    assert ok(api.call("DELETE", api.path("subscriptions", "sub1"))) == {}
    error(api.get_subscription("sub1"), 404, "NOT_FOUND")
    error(api.pull("sub1"), 404, "NOT_FOUND")


# ====================================================================== messages

def test_publish_pull_acknowledge(server):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    sent = [message(b"one", kind="a", n="1"), message(b"two", kind="b"),
            message(b"\x00\xff binary", kind="c")]
    # Node's REST mode sends this query on every call.
    ids = ok(api.publish("topic1", sent, query={"$alt": "json;enum-encoding=int"}))["messageIds"]
    assert len(ids) == 3 and len(set(ids)) == 3, ids
    assert all(isinstance(i, str) and re.fullmatch(r"[0-9]+", i) for i in ids), ids

    body = ok(api.pull("sub1", max_messages=10, return_immediately=True))
    got = received(body)
    assert len(got) == 3, body
    by_id = {rm["message"]["messageId"]: rm for rm in got}
    assert set(by_id) == set(ids)
    for message_id, m in zip(ids, sent):
        rm = by_id[message_id]
        assert isinstance(rm["ackId"], str) and rm["ackId"]
        assert rm["message"]["data"] == m["data"]
        assert base64.b64decode(rm["message"]["data"]) == base64.b64decode(m["data"])
        assert rm["message"].get("attributes", {}) == m["attributes"]
        assert RFC3339_UTC.fullmatch(rm["message"]["publishTime"]), rm
    assert len({rm["ackId"] for rm in got}) == 3

    assert ok(api.acknowledge("sub1", [rm["ackId"] for rm in got])) == {}
    assert ok(api.pull("sub1", return_immediately=True)) == {}
    # Acknowledging again is not an error.
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in got]))


def test_nack_redelivers_with_a_new_ack_id(server):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    [message_id] = ok(api.publish("topic1", [message(b"again")]))["messageIds"]

    [first] = received(ok(api.pull("sub1", return_immediately=False)))
    assert first["message"]["messageId"] == message_id
    assert ok(api.modify_ack_deadline("sub1", [first["ackId"]], 0)) == {}

    [second] = received(ok(api.pull("sub1", return_immediately=False)))
    assert second["message"]["messageId"] == message_id
    assert base64.b64decode(second["message"]["data"]) == b"again"
    assert second["ackId"] != first["ackId"]
    ok(api.acknowledge("sub1", [second["ackId"]]))
    assert ok(api.pull("sub1", return_immediately=True)) == {}


def test_filtered_subscription(server):
    api = PubSub(server)
    ok(api.create_topic("topic1"))
    ok(api.create_subscription("alerts", "topic1", filter='attributes.kind = "alert"'))
    ok(api.create_subscription("everything", "topic1"))
    ids = ok(api.publish("topic1", [message(b"a", kind="alert"), message(b"b", kind="info"),
                                message(b"c")]))["messageIds"]

    got = pull_until(api, "everything", ids)
    assert sorted(rm["message"]["messageId"] for rm in got) == sorted(ids)

    got = pull_until(api, "alerts", [ids[0]])
    assert [rm["message"]["messageId"] for rm in got] == [ids[0]]
    assert got[0]["message"]["attributes"] == {"kind": "alert"}
    ok(api.acknowledge("alerts", [got[0]["ackId"]]))
    assert ok(api.pull("alerts", return_immediately=True)) == {}


def test_waiting_pull_receives_a_later_publish(server):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    outcome = {}

    def publish_later():
        time.sleep(1.0)  # the pull below is waiting by then
        try:
            outcome["reply"] = api.publish("topic1", [message(b"late")])
        except Exception as e:  # reported by the main thread
            outcome["error"] = e

    publisher = threading.Thread(target=publish_later, daemon=True)
    started = time.monotonic()
    publisher.start()
    body = ok(api.pull("sub1", return_immediately=False))
    elapsed = time.monotonic() - started
    publisher.join(TIMEOUT)
    assert "error" not in outcome, outcome
    [message_id] = ok(outcome["reply"])["messageIds"]
    got = received(body)
    assert [rm["message"]["messageId"] for rm in got] == [message_id], body
    assert base64.b64decode(got[0]["message"]["data"]) == b"late"
    assert elapsed < 35.0, "the waiting pull took %.1fs" % elapsed


@pytest.mark.parametrize("case", ["1001-messages", "101-attributes", "long-key",
                                  "empty-message", "long-ordering-key", "no-messages"])
def test_publish_limits(server, case):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    if case == "1001-messages":
        messages = [message(b"x") for _ in range(1001)]
    elif case == "101-attributes":
        messages = [message(b"x", **{"k%d" % i: "v" for i in range(101)})]
    elif case == "long-key":
        messages = [message(b"x", **{"k" * 257: "v"})]
    elif case == "empty-message":
        messages = [message(b"ok"), {}]
    elif case == "long-ordering-key":
        messages = [dict(message(b"x"), orderingKey="o" * 1025)]
    else:
        messages = []
    error(api.publish("topic1", messages), 400, "INVALID_ARGUMENT")
    # Nothing of a refused request was published.
    assert ok(api.pull("sub1", return_immediately=True)) == {}
    # The limits themselves are allowed.
    if case == "101-attributes":
        ok(api.publish("topic1", [message(b"x", **{"k%d" % i: "v" for i in range(100)})]))
    elif case == "long-key":
        ok(api.publish("topic1", [message(b"x", **{"k" * 256: "v"})]))
    elif case == "long-ordering-key":
        ok(api.publish("topic1", [dict(message(b"x"), orderingKey="o" * 1024)]))
    elif case == "1001-messages":
        assert len(ok(api.publish("topic1", messages[:1000]))["messageIds"]) == 1000


def test_oversized_publish_with_curl(server, tmp_path):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    url = api.base + api.path("topics", "topic1", "publish")
    out = tmp_path / "answer.json"

    # 11 MB of data: 14.7 MB of JSON, over the route's 12 MiB limit (413, unread).
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"messages": [message(os.urandom(11 * MB))]}))
    code = curl_post_file(url, big, out)
    assert code in (400, 413), "11 MB publish answered %d: %s" % (code, out.read_text()[:300])

    # 11 MB of attributes in about 11 MB of JSON: under the route's limit, so the service sees
    # it and refuses a request over 10 MB.
    value = "v" * 1000
    attrs = {"k%03d" % i: value for i in range(100)}
    heavy = tmp_path / "heavy.json"
    heavy.write_text(json.dumps({"messages": [{"attributes": attrs} for _ in range(110)]}))
    assert 11 * MB <= heavy.stat().st_size < 12 * 1024 * 1024
    code = curl_post_file(url, heavy, out)
    assert code in (400, 413), "11 MB publish answered %d: %s" % (code, out.read_text()[:300])
    if code == 400:
        assert json.loads(out.read_text())["error"]["status"] == "INVALID_ARGUMENT"

    # Still serving, and nothing was published.
    server.assert_alive()
    assert ok(api.get_topic("topic1"))["name"] == api.topic_name("topic1")
    assert ok(api.pull("sub1", return_immediately=True)) == {}

    # Another error through curl: a missing topic, in Google's shape.
    res = curl("-o", str(out), "-w", "%{http_code}", api.base + api.path("topics", "missing"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "404"
    body = json.loads(out.read_text())
    assert body["error"]["code"] == 404 and body["error"]["status"] == "NOT_FOUND", body


def test_dead_letter_after_five_attempts(server):
    api = PubSub(server)
    ok(api.create_topic("topic1"))
    ok(api.create_topic("dlq"))
    ok(api.create_subscription("dlq-sub", "dlq"))
    ok(api.create_subscription("sub1", "topic1", deadLetterPolicy={
        "deadLetterTopic": api.topic_name("dlq"), "maxDeliveryAttempts": 5}))
    [message_id] = ok(api.publish("topic1", [message(b"poison", kind="bad")]))["messageIds"]

    for attempt in range(1, 6):
        got = received(ok(api.pull("sub1", return_immediately=False)))
        assert [rm["message"]["messageId"] for rm in got] == [message_id], got
        assert got[0].get("deliveryAttempt") == attempt, got
        ok(api.modify_ack_deadline("sub1", [got[0]["ackId"]], 0))

    [dead] = received(ok(api.pull("dlq-sub", return_immediately=False)))
    assert base64.b64decode(dead["message"]["data"]) == b"poison"
    assert dead["message"]["attributes"]["kind"] == "bad"
    ok(api.acknowledge("dlq-sub", [dead["ackId"]]))
    # Not delivered a sixth time.
    assert message_id not in [rm["message"]["messageId"]
                              for rm in received(ok(api.pull("sub1", return_immediately=True)))]


def test_kill9_keeps_published_and_acked(server):
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    acked = ok(api.publish("topic1", [message(b"acked-%d" % i) for i in range(3)]))["messageIds"]
    got = pull_until(api, "sub1", acked)
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in got]))
    kept = []
    for batch in range(3):
        kept += ok(api.publish("topic1", [message(b"kept-%d-%d" % (batch, i), batch=str(batch))
                                      for i in range(4)]))["messageIds"]

    server.kill9()
    server.start()

    assert ok(api.get_topic("topic1"))["name"] == api.topic_name("topic1")
    assert ok(api.get_subscription("sub1"))["topic"] == api.topic_name("topic1")
    got = pull_until(api, "sub1", kept)
    ids = [rm["message"]["messageId"] for rm in got]
    assert not set(ids) & set(acked), "acked messages redelivered after kill -9: %r" % ids
    assert set(ids) == set(kept)
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in got]))
    assert ok(api.pull("sub1", return_immediately=True)) == {}
    # New publishes get new ids.
    [fresh] = ok(api.publish("topic1", [message(b"after")]))["messageIds"]
    assert fresh not in set(kept) | set(acked)


# ====================================================================== other routes

def test_iam_stubs(server):
    api = PubSub(server)
    ok(api.create_topic("topic1"))
    assert ok(api.call("POST", api.path("topics", "topic1", "getIamPolicy"), {})) == {"etag": "ACAB"}
    policy = {"bindings": [{"role": "roles/pubsub.publisher", "members": ["user:a@example.com"]}],
              "etag": "ACAB"}
    assert ok(api.call("POST", api.path("topics", "topic1", "setIamPolicy"),
                       {"policy": policy})) == policy
    permissions = ["pubsub.topics.publish", "pubsub.topics.get"]
    assert ok(api.call("POST", api.path("subscriptions", "sub1", "testIamPermissions"),
                       {"permissions": permissions})) == {"permissions": permissions}
    assert ok(api.call("POST", api.path("snapshots", "n1", "getIamPolicy"))) == {"etag": "ACAB"}
    assert ok(api.call("POST", api.path("schemas", "x1", "getIamPolicy"))) == {"etag": "ACAB"}


def test_schemas_unimplemented_and_unknown_verbs(server):
    api = PubSub(server)
    ok(api.create_topic("topic1"))
    error(api.call("GET", api.path("schemas")), 501, "UNIMPLEMENTED")
    error(api.call("POST", api.path("schemas"), {"type": "AVRO"}), 501, "UNIMPLEMENTED")
    error(api.call("GET", api.path("schemas", "x1")), 501, "UNIMPLEMENTED")
    error(api.call("POST", "/v1/projects/%s/schemas:validate" % PROJECT, {}), 501,
          "UNIMPLEMENTED")

    error(api.call("POST", api.path("topics", "topic1", "frobnicate"), {}), 404, "NOT_FOUND")
    error(api.call("GET", api.path("topics", "topic1", "publish")), 404, "NOT_FOUND")
    error(api.call("POST", api.path("topics", "topic1")), 404, "NOT_FOUND")
    error(api.call("GET", api.path("topics", "topic1") + "/nothing"), 404, "NOT_FOUND")


def test_snapshots_and_seek(server):
    """A snapshot keeps the subscription's backlog: messages acked after it come back on a seek
    to it; a seek to a time before a publish brings back what was acked since (retained acked
    messages); snapshots list per project and per topic, survive a restart, and a snapshot of
    another topic is refused."""
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1", retainAckedMessages=True)
    ids = ok(api.publish("topic1", [message(b"a"), message(b"b")]))["messageIds"]
    snap = api.call("PUT", api.path("snapshots", "snap1"),
                    {"subscription": api.subscription_name("sub1"), "labels": {"k": "v"}})
    created = ok(snap)
    assert created["name"] == "projects/%s/snapshots/snap1" % PROJECT
    assert created["topic"] == api.topic_name("topic1")
    assert RFC3339_UTC.fullmatch(created["expireTime"]), created
    error(api.call("PUT", api.path("snapshots", "snap1"),
                   {"subscription": api.subscription_name("sub1")}), 409, "ALREADY_EXISTS")
    error(api.call("PUT", api.path("snapshots", "snap2"),
                   {"subscription": api.subscription_name("nosuchsub")}), 404, "NOT_FOUND")

    got = received(ok(api.pull("sub1", return_immediately=True)))
    assert sorted(rm["message"]["messageId"] for rm in got) == sorted(ids)
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in got]))
    assert ok(api.pull("sub1", return_immediately=True)) == {}

    # Back to the snapshot: both unacked again.
    assert ok(api.call("POST", api.path("subscriptions", "sub1", "seek"),
                       {"snapshot": "projects/%s/snapshots/snap1" % PROJECT})) == {}
    again = received(ok(api.pull("sub1", return_immediately=True)))
    assert sorted(rm["message"]["messageId"] for rm in again) == sorted(ids)
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in again]))

    # To a time before the publish: acked messages retained come back too.
    ok(api.call("POST", api.path("subscriptions", "sub1", "seek"),
                {"time": "2020-01-01T00:00:00Z"}))
    replay = received(ok(api.pull("sub1", return_immediately=True)))
    assert sorted(rm["message"]["messageId"] for rm in replay) == sorted(ids)

    listed = ok(api.call("GET", api.path("snapshots")))
    assert [s["name"] for s in listed["snapshots"]] == [created["name"]]
    by_topic = ok(api.call("GET", api.path("topics", "topic1") + "/snapshots"))
    assert by_topic["snapshots"] == [created["name"]]

    # A snapshot of another topic cannot be sought to.
    setup_topic_and_subscription(api, "topic2", "sub2")
    error(api.call("POST", api.path("subscriptions", "sub2", "seek"),
                   {"snapshot": created["name"]}), 400, "FAILED_PRECONDITION")

    server.restart()
    api = PubSub(server)
    assert ok(api.call("GET", api.path("snapshots", "snap1")))["labels"] == {"k": "v"}
    assert ok(api.call("DELETE", api.path("snapshots", "snap1"))) == {}
    error(api.call("GET", api.path("snapshots", "snap1")), 404, "NOT_FOUND")


# ====================================================================== declared in nimbus.toml

DECLARED = """
[pubsub]
fsync = "interval"

[[pubsub.topics]]
name = "projects/declared/topics/sensor-data"
labels = { team = "iot" }

[[pubsub.topics]]
name = "projects/declared/topics/dead-letters"

[[pubsub.subscriptions]]
name = "projects/declared/subscriptions/sensor-sub"
topic = "projects/declared/topics/sensor-data"
ack_deadline_seconds = 30
messageRetentionDuration = "3600s"
filter = 'attributes.kind = "reading"'
dead_letter_policy = { dead_letter_topic = "projects/declared/topics/dead-letters", max_delivery_attempts = 7 }
"""


def test_resources_declared_in_the_config_file(nimbus, tmp_path):
    """[[pubsub.topics]] and [[pubsub.subscriptions]] (REST field names, either spelling) are
    created at start when missing; ones that exist are left as they are (a change made through
    the API survives a restart); --print-config shows them."""
    config = tmp_path / "nimbus.toml"
    config.write_text(DECLARED)
    server = nimbus.start(["--config", str(config)])
    api = PubSub(server, project="declared")
    topic = api.get_topic("sensor-data")
    assert topic.status == 200, topic
    assert topic.body["labels"] == {"team": "iot"}
    sub = api.get_subscription("sensor-sub")
    assert sub.status == 200, sub
    assert sub.body["ackDeadlineSeconds"] == 30
    assert sub.body["messageRetentionDuration"] == "3600s"
    assert sub.body["filter"] == 'attributes.kind = "reading"'
    assert sub.body["deadLetterPolicy"] == {
        "deadLetterTopic": "projects/declared/topics/dead-letters", "maxDeliveryAttempts": 7}

    # Usable at once: a reading goes through the filter.
    published = api.publish("sensor-data", [{"data": b64(b"21.5"), "attributes": {"kind": "reading"}}])
    assert published.status == 200, published
    pulled = api.pull("sensor-sub", max_messages=5, return_immediately=False)
    assert [m["message"]["messageId"] for m in pulled.body["receivedMessages"]] == \
        published.body["messageIds"]

    # Changed through the API, then a restart: the declaration does not overwrite it.
    updated = api.call("PATCH", api.path("subscriptions", "sensor-sub"), {
        "subscription": {"ackDeadlineSeconds": 60}, "updateMask": "ackDeadlineSeconds"})
    assert updated.status == 200, updated
    server.restart()
    assert api.get_subscription("sensor-sub").body["ackDeadlineSeconds"] == 60
    assert "pubsub_declared_exists" in server.log_tail()

    printed = subprocess.run([server.binary, "serve", "--config", str(config), "--print-config"],
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert printed.returncode == 0, printed.stderr
    reread = tomllib.loads(printed.stdout)  # what it prints is a config file again
    assert [t["name"] for t in reread["pubsub"]["topics"]] == [
        "projects/declared/topics/sensor-data", "projects/declared/topics/dead-letters"]
    assert reread["pubsub"]["subscriptions"][0]["dead_letter_policy"]["max_delivery_attempts"] == 7


@pytest.mark.parametrize("body, error", [
    ('[[pubsub.subscriptions]]\nname = "projects/x/subscriptions/orphan"\n'
     'topic = "projects/x/topics/missing"\n', "pubsub.subscriptions[0]"),
    ('[[pubsub.topics]]\nname = "projects/x/topics/t-1"\ncolour = "red"\n', "pubsub.topics[0]"),
    ('[[pubsub.topics]]\nname = "projects/x/topics/goog-t"\n', "pubsub.topics[0]"),
    ('[pubsub]\ntopics = ["projects/x/topics/t-1"]\n', "must be a list of tables"),
])
def test_bad_declared_resources_stop_the_start(nimbus, tmp_path, body, error):
    """A declaration that cannot be created (a missing topic, an unknown field, a bad name, not
    a table) stops the start with a message naming it, exit code non-zero."""
    config = tmp_path / "nimbus.toml"
    config.write_text(body)
    proc = subprocess.run(nimbus.command() + ["--config", str(config)], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert error in proc.stderr, proc.stderr


def test_pull_answers_within_x_server_timeout(server):
    """gcloud's pull sends X-Server-Timeout: 20 and gives up after it: a waiting pull on an empty
    subscription answers {} by then rather than at the server's 30 s cap."""
    api = PubSub(server)
    ok(api.create_topic("quiet"))
    ok(api.create_subscription("quiet-sub", "quiet"))
    started = time.monotonic()
    reply = api.call("POST", api.path("subscriptions", "quiet-sub", "pull"),
                     {"maxMessages": 1, "returnImmediately": False},
                     headers={"X-Server-Timeout": "1"})
    assert reply.status == 200, reply
    assert reply.body == {} or reply.body.get("receivedMessages", []) == []
    assert time.monotonic() - started < 15, "answered at the 30 s cap, not by X-Server-Timeout"


def test_acks_survive_checkpoints_and_kill9(server):
    """Acks go to the cursor journal (<data>/pubsub/cursors/<generation>/), which a checkpoint
    (every 10 s) folds into SQLite before starting the next generation and deleting the old one:
    acks before and after a checkpoint, and across two restarts, stay acked; unacked ones
    come back."""
    api = PubSub(server)
    journal = server.data_dir / "pubsub" / "cursors"

    def generations():
        return sorted(int(p.name) for p in journal.iterdir() if p.name.isdigit())

    setup_topic_and_subscription(api, "topic1", "sub1")
    ids = ok(api.publish("topic1", [message(b"m-%d" % i) for i in range(6)]))["messageIds"]
    got = {rm["message"]["messageId"]: rm["ackId"] for rm in pull_until(api, "sub1", ids)}
    ok(api.acknowledge("sub1", [got[i] for i in ids[:2]]))
    before = generations()[-1]
    # The next checkpoint: a newer generation, the older ones deleted once it is durable.
    wait_until(lambda: len(generations()) == 1 and generations()[0] > before, timeout=30,
               what="a cursor checkpoint")
    ok(api.acknowledge("sub1", [got[i] for i in ids[2:4]]))  # journaled after it

    server.kill9()
    server.start()
    back = pull_until(api, "sub1", ids[4:])
    assert sorted(rm["message"]["messageId"] for rm in back) == sorted(ids[4:])
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in back]))
    server.restart()
    assert ok(api.pull("sub1", return_immediately=True)) == {}


def metric(server, name, subscription):
    """One subscription's value of `name` on /metrics (loopback: no token needed)."""
    with _OPENER.open("http://%s/metrics" % server.endpoints["http"], timeout=TIMEOUT) as resp:
        text = resp.read().decode()
    prefix = '%s{subscription="%s"} ' % (name, subscription)
    values = [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, "%s for %s: %r" % (name, subscription, values)
    return float(values[0])


def test_metrics_count_the_backlog(server):
    """num_undelivered_messages and backlog_bytes grow with what is published and fall to 0
    once it is acked; delivered and acked count."""
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1")
    name = api.subscription_name("sub1")
    ids = ok(api.publish("topic1", [message(b"x" * 1000) for _ in range(5)]))["messageIds"]
    assert metric(server, "nimbus_pubsub_num_undelivered_messages", name) == 5
    assert metric(server, "nimbus_pubsub_backlog_bytes", name) >= 5 * 1000
    got = pull_until(api, "sub1", ids)
    ok(api.acknowledge("sub1", [rm["ackId"] for rm in got]))
    assert metric(server, "nimbus_pubsub_num_undelivered_messages", name) == 0
    assert metric(server, "nimbus_pubsub_backlog_bytes", name) == 0
    assert metric(server, "nimbus_pubsub_delivered_total", name) == 5
    assert metric(server, "nimbus_pubsub_acked_total", name) == 5


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill9"])
def test_exactly_once_leases_survive_a_restart(server, kill):
    """With exactly-once delivery a lease is honoured until its deadline, restarts included
    (Google: an exactly-once lease is good until it expires): after a restart the ack ids
    handed out before it still ack, and the leased messages are not delivered to anyone else
    meanwhile. Without exactly-once, leases die with the process (test_kill9_...)."""
    api = PubSub(server)
    setup_topic_and_subscription(api, "topic1", "sub1", enableExactlyOnceDelivery=True,
                                 ackDeadlineSeconds=120)
    ids = ok(api.publish("topic1", [message(b"once-%d" % i) for i in range(3)]))["messageIds"]
    journal = server.data_dir / "pubsub" / "cursors"

    def generations():
        return [int(d.name) for d in journal.iterdir() if d.name.isdigit()]

    before = max(generations(), default=0)
    got = {rm["message"]["messageId"]: rm["ackId"] for rm in pull_until(api, "sub1", ids)}

    # The pull's leases reach the cursor journal within one commit, as stream acks do; nothing
    # else is journaled here. Should the 10 s checkpoint fall in between, it takes them into
    # SQLite instead, and the journal generations it covered are removed once that is durable.
    def leases_durable():
        try:
            if any(segment.stat().st_size > 0 for segment in journal.glob("*/*.seg")):
                return True
        except FileNotFoundError:  # a generation checkpointed away while listed: look again
            return False
        return min(generations(), default=0) > before

    wait_until(leases_durable, what="the leases in the cursor journal or a checkpoint")

    server.restart(kill=kill)
    assert ok(api.pull("sub1", return_immediately=True)) == {}  # still leased
    ok(api.acknowledge("sub1", [got[ids[0]]]))
    ok(api.acknowledge("sub1", [got[ids[1]], got[ids[2]]]))
    # Acked now: a second ack is stale, and nothing comes back.
    stale = api.acknowledge("sub1", [got[ids[0]]])
    error(stale, 400, "INVALID_ARGUMENT")
    assert ok(api.pull("sub1", return_immediately=True)) == {}
