"""/api/bridges (issue 14): MQTT bridges created, listed, inspected and deleted at run time, against
a real Mosquitto 2.0 (Debian's /usr/sbin/mosquitto) as the remote, paho on both sides.

- a bridge created over the API connects (GET shows `connected`) and carries messages both ways;
  no answer, /metrics or log line ever holds its password (the content of its password_file);
- bad bodies are 400 {"error":{"field","message"}} naming the field, and create nothing (bad JSON,
  unknown field, bad QoS, unreadable cafile or password_file, mismatched certificate and key);
- a taken name is 409; the file's bridges are listed as `source: file` and read-only (409); a
  stored bridge whose name the file uses is skipped while the file has it;
- deleting a bridge whose queue holds messages is 409 unless ?discard_queue=true, which discards
  them and counts them (nimbus_bridge_discarded_on_delete_total); the name can be used again at
  once, with an empty queue;
- API bridges and their queues survive a restart and a SIGKILL;
- auth as the dashboard's /api/ (tsdb.auth): with `--tsdb-auth required`, no token is 401, a
  read-only token reads, a read-write token changes.

    NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_bridges_api.py
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import TIMEOUT, V311, V5, wait_until
from test_bridges import (LINK_TIMEOUT, LinkProxy, connected_client, remote,  # noqa: F401
                          wait_crossing)

UNREACHABLE = "127.0.0.1:1"  # nothing listens there: the link backs off, the queue fills


class Reply:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    def json(self):
        return json.loads(self.raw)

    @property
    def text(self):
        return self.raw.decode(errors="replace")

    def error_field(self):
        body = self.json()
        assert set(body) == {"error"} and set(body["error"]) == {"field", "message"}, body
        return body["error"]["field"]


def call(nimbus, method, path, body=None, token=None, params=None):
    url = nimbus.http_url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    headers = {}
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT * 6) as reply:
            return Reply(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())


def create(nimbus, body, token=None, expect=201):
    reply = call(nimbus, "POST", "/api/bridges", body, token=token)
    assert reply.status == expect, reply.text
    return reply


def get_bridge(nimbus, name):
    reply = call(nimbus, "GET", "/api/bridges/" + name)
    assert reply.status == 200, reply.text
    return reply.json()


def names(nimbus, token=None):
    reply = call(nimbus, "GET", "/api/bridges", token=token)
    assert reply.status == 200, reply.text
    return [b["name"] for b in reply.json()["bridges"]]


def state(nimbus, name):
    return get_bridge(nimbus, name)["status"]["state"]


def wait_connected(nimbus, name):
    wait_until(lambda: state(nimbus, name) == "connected", timeout=LINK_TIMEOUT,
               what="bridge %s connected" % name)


def metrics_text(nimbus):
    with urllib.request.urlopen(nimbus.http_url + "/metrics", timeout=TIMEOUT) as r:
        return r.read().decode()


def metric(nimbus, line_start):
    for line in metrics_text(nimbus).splitlines():
        if line.startswith(line_start + " "):
            return int(line.split()[-1])
    raise AssertionError("%s not in /metrics" % line_start)


def start_with_config(nimbus, text):
    path = nimbus.workdir / "nimbus.toml"
    path.write_text(text)
    nimbus.start(extra_args=["--config", str(path)])


# ==================================================================================== tests

def test_a_created_bridge_connects_carries_both_ways_and_never_shows_its_password(nimbus, remote):
    nimbus.start()
    secret = "s3cret-" + uuid.uuid4().hex
    password_file = nimbus.workdir / "bridge-password"
    password_file.write_text(secret + "\n")
    answers = []
    created = create(nimbus, {
        "name": "api-edge",
        "addresses": ["127.0.0.1:%d" % remote.port],
        "protocol": "mqttv5",
        "username": "bridge-user",
        "password_file": str(password_file),
        "topic": ["sensor/# out 1 edge/ site1/", "cmd/+ in 1 local/ remote/"],
    })
    answers.append(created.text)
    assert created.headers.get("Location") == "/api/bridges/api-edge"
    bridge = created.json()
    assert bridge["name"] == "api-edge" and bridge["kind"] == "mqtt"
    assert bridge["source"] == "api" and bridge["created_ms"] > 0
    config = bridge["config"]
    assert config["addresses"] == ["127.0.0.1:%d" % remote.port]
    assert config["username"] == "bridge-user"
    assert config["password_file"] == str(password_file)   # where the secret is, not what it is
    assert config["topic"][0] == {"pattern": "sensor/#", "direction": "out", "qos": 1,
                                  "local_prefix": "edge/", "remote_prefix": "site1/"}
    assert set(bridge["status"]["dropped"]) == {"oldest", "full", "expired", "undeliverable",
                                                "lost", "discarded"}
    wait_connected(nimbus, "api-edge")

    on_remote = connected_client(remote.port, name="on-mosquitto")
    on_local = connected_client(nimbus.mqtt_port, V5, name="on-nimbus")
    device = connected_client(nimbus.mqtt_port, V311, name="device")
    try:
        assert on_remote.subscribe("site1/#", 1) == [1]
        assert on_local.subscribe("local/#", 1) == [1]

        wait_crossing(on_remote, "remote/cmd/probe", on_local, "local/cmd/probe",
                      what="the in mapping subscribed")
        on_local.drain()
        for i in range(50):
            device.publish("edge/sensor/%d" % (i % 3), str(i).encode(), qos=1)
        got = on_remote.collect(50, timeout=20)
        assert [int(m.payload) for m in got] == list(range(50))
        assert [m.topic for m in got] == ["site1/sensor/%d" % (i % 3) for i in range(50)]
        for i in range(10):
            on_remote.publish("remote/cmd/c%d" % i, str(i).encode(), qos=1)
        back = on_local.collect(10, timeout=20)
        assert [m.topic for m in back] == ["local/cmd/c%d" % i for i in range(10)]
    finally:
        device.disconnect()
        on_remote.disconnect()
        on_local.disconnect()

    def forwarded_all():
        status = get_bridge(nimbus, "api-edge")["status"]
        return status["forwarded"] >= 50 and status["queued_messages"] == 0
    wait_until(forwarded_all, what="the status counts what crossed")
    one = call(nimbus, "GET", "/api/bridges/api-edge")
    status = one.json()["status"]
    assert status["state"] == "connected" and status["remote"] == "127.0.0.1:%d" % remote.port
    assert status["received"] >= 10 and status["last_error"] == ""
    answers += [one.text, call(nimbus, "GET", "/api/bridges").text, metrics_text(nimbus)]
    for answer in answers:
        assert secret not in answer
    assert secret not in nimbus.log_path.read_text(errors="replace")


def test_bad_bodies_are_400_naming_the_field_and_create_nothing(nimbus):
    nimbus.start()
    work = nimbus.workdir
    not_a_certificate = work / "not-a-cert.pem"
    not_a_certificate.write_text("hello\n")
    cert_a, key_a = nimbus.make_client_cert("bridge-a")
    cert_b, key_b = nimbus.make_client_cert("bridge-b")
    good = {"name": "bad", "addresses": [UNREACHABLE], "topic": "a/# out 1"}

    def but(**changes):
        body = dict(good)
        for key, value in changes.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    cases = [
        (b"{not json", "", "JSON"),
        (b"[1, 2]", "", "object"),
        (but(name=None), "name", "required"),
        (but(name="bad name/"), "name", "bridge name"),
        (but(kind="pubsub"), "kind", "pubsub_bridges"),
        (but(kind="amqp"), "kind", "mqtt"),
        (but(bogus=1), "bogus", "unknown key"),
        (but(addresses=None), "addresses", "required"),
        (but(topic="a/# out 3"), "topic", "QoS"),
        (but(topic=["a/# out 1", "b/# sideways 1"]), "topic[1]", ""),
        (but(topic=[{"pattern": "a/#", "qos": 5}]), "topic[0].qos", ""),
        (but(keep_alive=1), "keep_alive", ""),
        (but(cafile="/nonexistent/ca.pem"), "cafile", "/nonexistent/ca.pem"),
        (but(cafile=str(not_a_certificate)), "cafile", "CA certificate"),
        (but(username="u", password_file=str(work / "missing-password")), "password_file",
         "missing-password"),
        (but(cafile=str(nimbus.ca_cert), certfile=cert_a, keyfile=key_b), "keyfile",
         "does not match"),
        (but(cafile=str(nimbus.ca_cert), certfile=cert_a), "keyfile", "required"),
    ]
    for body, field, words in cases:
        reply = call(nimbus, "POST", "/api/bridges", body)
        assert reply.status == 400, (body, reply.text)
        assert reply.error_field() == field, (body, reply.text)
        assert words in reply.json()["error"]["message"], (body, reply.text)
    assert names(nimbus) == []
    assert not (nimbus.data_dir / "bridges" / "bad").exists()
    reply = call(nimbus, "DELETE", "/api/bridges/bad", params={"discard_queue": "maybe"})
    assert reply.status == 400 and reply.error_field() == "discard_queue"

    # The same TLS files, matched, are taken; an empty queue is deleted without asking.
    created = create(nimbus, but(cafile=str(nimbus.ca_cert), certfile=cert_a, keyfile=key_a))
    assert created.json()["config"]["tls"] is True
    assert call(nimbus, "DELETE", "/api/bridges/bad").status == 204
    assert names(nimbus) == []


def test_taken_names_are_409_and_the_files_bridges_are_read_only(nimbus):
    config = '[bridges.filed]\naddresses = ["%s"]\ntopic = "f/# out 1"\n' % UNREACHABLE
    start_with_config(nimbus, config)
    listed = call(nimbus, "GET", "/api/bridges").json()["bridges"]
    assert [(b["name"], b["source"]) for b in listed] == [("filed", "file")]
    assert "created_ms" not in listed[0]
    for params in (None, {"discard_queue": "true"}):
        reply = call(nimbus, "DELETE", "/api/bridges/filed", params=params)
        assert reply.status == 409 and reply.error_field() == "name", reply.text
        assert "config file" in reply.text
    reply = create(nimbus, {"name": "filed", "addresses": [UNREACHABLE], "topic": "x/# out 1"},
                   expect=409)
    assert reply.error_field() == "name"
    create(nimbus, {"name": "dup", "addresses": [UNREACHABLE], "topic": "d/# out 1"})
    reply = create(nimbus, {"name": "dup", "addresses": [UNREACHABLE], "topic": "e/# out 1"},
                   expect=409)
    assert reply.error_field() == "name"
    assert get_bridge(nimbus, "dup")["config"]["topic"][0]["pattern"] == "d/#"
    for method in ("GET", "DELETE"):
        reply = call(nimbus, method, "/api/bridges/nobody")
        assert reply.status == 404 and reply.error_field() == "name", reply.text
    assert names(nimbus) == ["dup", "filed"]

    # A stored bridge whose name the file takes is skipped while the file has it.
    nimbus.stop()
    start_with_config(nimbus, config + '[bridges.dup]\naddresses = ["%s"]\ntopic = "z/# out 1"\n'
                      % UNREACHABLE)
    dup = get_bridge(nimbus, "dup")
    assert dup["source"] == "file" and dup["config"]["topic"][0]["pattern"] == "z/#"
    assert "bridge_stored_skipped name=dup" in nimbus.log_tail()
    nimbus.stop()
    start_with_config(nimbus, config)
    dup = get_bridge(nimbus, "dup")
    assert dup["source"] == "api" and dup["config"]["topic"][0]["pattern"] == "d/#"


def test_a_queue_is_kept_unless_discarded_counted_and_the_name_reusable(nimbus, remote):
    nimbus.start()
    create(nimbus, {"name": "q", "addresses": [UNREACHABLE], "topic": "q/# out 1"})
    device = connected_client(nimbus.mqtt_port, V311, name="device")
    try:
        for i in range(20):
            device.publish("q/old", str(i).encode(), qos=1)   # acknowledged: durably queued
    finally:
        device.disconnect()
    wait_until(lambda: get_bridge(nimbus, "q")["status"]["queued_messages"] == 20,
               what="20 queued")
    refused = call(nimbus, "DELETE", "/api/bridges/q")
    assert refused.status == 409 and refused.error_field() == "discard_queue", refused.text
    assert "20 messages" in refused.text
    assert get_bridge(nimbus, "q")["status"]["queued_messages"] == 20
    before = metric(nimbus, "nimbus_bridge_discarded_on_delete_total")
    deleted = call(nimbus, "DELETE", "/api/bridges/q", params={"discard_queue": "true"})
    assert deleted.status == 204, deleted.text
    assert call(nimbus, "GET", "/api/bridges/q").status == 404
    assert names(nimbus) == []
    assert metric(nimbus, "nimbus_bridge_discarded_on_delete_total") == before + 20
    assert metric(nimbus, "nimbus_bridge_deleted_total") == 1
    assert 'bridge="q"' not in metrics_text(nimbus)

    # The name again, at once: a fresh queue, and none of the discarded messages goes out.
    again = create(nimbus, {"name": "q", "addresses": ["127.0.0.1:%d" % remote.port],
                            "topic": "q/# out 1"}).json()
    assert again["status"]["queued_messages"] == 0
    assert again["status"]["dropped"]["discarded"] == 0
    wait_connected(nimbus, "q")
    on_remote = connected_client(remote.port, name="on-mosquitto")
    device = connected_client(nimbus.mqtt_port, V311, name="device")
    try:
        assert on_remote.subscribe("q/#", 1) == [1]
        for i in range(5):
            device.publish("q/new", str(i).encode(), qos=1)
        got = on_remote.collect(5, timeout=20)
        assert [(m.topic, int(m.payload)) for m in got] == [("q/new", i) for i in range(5)]
        on_remote.expect_none(0.5)
    finally:
        device.disconnect()
        on_remote.disconnect()
    wait_until(lambda: get_bridge(nimbus, "q")["status"]["queued_messages"] == 0,
               what="the queue drained")
    assert call(nimbus, "DELETE", "/api/bridges/q").status == 204   # empty: no need to ask

    # Deleted for good, and the deleted queues' directories are gone after a clean stop.
    nimbus.restart()
    assert call(nimbus, "GET", "/api/bridges/q").status == 404
    left = [p.name for p in (nimbus.data_dir / "bridges").iterdir()
            if p.name == "q" or p.name.startswith("q~")]
    assert left == []


def test_an_api_bridge_and_its_queue_survive_restart_and_sigkill(nimbus, remote):
    proxy = LinkProxy(remote.port)   # down: the bridge's attempts are refused
    nimbus.start()
    created = create(nimbus, {"name": "keep", "addresses": ["127.0.0.1:%d" % proxy.port],
                              "topic": "k/# out 1", "clean_start": False}).json()
    on_remote = connected_client(remote.port, name="on-mosquitto")
    try:
        assert on_remote.subscribe("k/#", 1) == [1]
        device = connected_client(nimbus.mqtt_port, V311, name="device")
        for i in range(10):
            device.publish("k/x", str(i).encode(), qos=1)
        device.disconnect()
        nimbus.restart()
        kept = get_bridge(nimbus, "keep")
        assert kept["source"] == "api" and kept["created_ms"] == created["created_ms"]
        assert kept["config"] == created["config"]
        assert kept["status"]["queued_messages"] == 10
        device = connected_client(nimbus.mqtt_port, V311, name="device")
        for i in range(10, 20):
            device.publish("k/x", str(i).encode(), qos=1)
        device.disconnect()
        nimbus.restart(kill=True)
        kept = get_bridge(nimbus, "keep")
        assert kept["status"]["queued_messages"] == 20
        proxy.up()
        wait_connected(nimbus, "keep")
        got = on_remote.collect(20, timeout=LINK_TIMEOUT)
        assert [int(m.payload) for m in got] == list(range(20))
    finally:
        proxy.down()
        on_remote.disconnect()


def test_auth_is_the_dashboards(nimbus):
    read_write, read_only = "rw-" + uuid.uuid4().hex, "ro-" + uuid.uuid4().hex
    tokens = nimbus.data_dir / "tokens"
    tokens.write_text("read-write %s\nread-only %s\n" % (read_write, read_only))
    os.chmod(tokens, 0o600)
    nimbus.start(extra_args=["--tsdb-auth", "required"])
    body = {"name": "guarded", "addresses": [UNREACHABLE], "topic": "g/# out 1"}

    refused = call(nimbus, "GET", "/api/bridges")
    assert refused.status == 401 and refused.json() == {"error": "Unauthorized"}
    assert refused.headers.get("WWW-Authenticate") == "Bearer"
    assert call(nimbus, "GET", "/api/bridges/guarded").status == 401
    assert names(nimbus, token=read_only) == []
    for token in (None, read_only, "wrong-" + uuid.uuid4().hex):
        assert call(nimbus, "POST", "/api/bridges", body, token=token).status == 401
    assert names(nimbus, token=read_write) == []
    create(nimbus, body, token=read_write)
    assert names(nimbus, token=read_only) == ["guarded"]
    for token in (None, read_only):
        assert call(nimbus, "DELETE", "/api/bridges/guarded", token=token).status == 401
    assert call(nimbus, "DELETE", "/api/bridges/guarded", token=read_write).status == 204
    assert names(nimbus, token=read_write) == []
