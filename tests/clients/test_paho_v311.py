"""End-to-end tests of Nimbus with the paho-mqtt client speaking MQTT 3.1.1
(plus raw-socket MQTT 3.1.1 where byte-level control is needed), and the
transport/ops surface: WebSocket, TLS with client certificates, HTTP, $SYS,
signals."""

import os
import re
import signal
import ssl
import time

import pytest

import rawmqtt
from conftest import (TIMEOUT, V311, assert_rejected, http_get, roundtrip, unique)


# ---------------------------------------------------------------- pub/sub

def test_pubsub_qos_matrix(server, clients):
    """Every (publish QoS, subscription QoS) pair: delivered QoS = min of both."""
    base = unique("qos")
    sub = clients.connected(name="sub")
    pub = clients.connected(name="pub")
    for sq in range(3):
        assert sub.subscribe("%s/s%d/#" % (base, sq), sq) == [sq]
    expected = []
    for sq in range(3):
        for pq in range(3):
            topic = "%s/s%d/p%d" % (base, sq, pq)
            payload = ("sub%d-pub%d" % (sq, pq)).encode()
            pub.publish(topic, payload, qos=pq)
            expected.append((topic, payload, min(sq, pq), False))
    got = [(m.topic, m.payload, m.qos, bool(m.retain)) for m in sub.collect(9)]
    assert sorted(got) == sorted(expected)
    sub.expect_none(0.3)  # no duplicates


@pytest.mark.parametrize("qos", [1, 2])
def test_ordering_from_one_publisher(server, clients, qos):
    """Messages from one publisher on one topic arrive in publish order."""
    topic = unique("order")
    sub = clients.connected(name="sub")
    sub.subscribe(topic, qos)
    pub = clients.connected(name="pub")
    infos = [pub.publish(topic, b"%03d" % i, qos=qos, wait=False) for i in range(60)]
    for info in infos:
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
    msgs = sub.collect(60)
    assert [m.payload for m in msgs] == [b"%03d" % i for i in range(60)]
    assert {m.qos for m in msgs} == {qos}
    sub.expect_none(0.2)


def test_binary_empty_and_large_payloads(server, clients):
    topic = unique("bin")
    sub = clients.connected(name="sub")
    sub.subscribe(topic, 1)
    pub = clients.connected(name="pub")
    payloads = [b"", bytes(range(256)), os.urandom(256 * 1024)]
    for p in payloads:
        pub.publish(topic, p, qos=1, timeout=10)
    got = [m.payload for m in sub.collect(3, timeout=10)]
    assert [len(g) for g in got] == [len(p) for p in payloads]
    assert got == payloads


def test_wildcard_matching(server, clients):
    topics = ["sport", "sport/", "sport/tennis", "sport/tennis/player1",
              "sport/tennis/player1/ranking", "sport/tennis/player2", "/finance", "finance",
              "a/b/c/d", "a/x/y/d", "a/b/c/d/e"]
    cases = {
        "sport/tennis/player1/#": ["sport/tennis/player1", "sport/tennis/player1/ranking"],
        "sport/tennis/+": ["sport/tennis/player1", "sport/tennis/player2"],
        "sport/#": ["sport", "sport/", "sport/tennis", "sport/tennis/player1",
                    "sport/tennis/player1/ranking", "sport/tennis/player2"],
        "sport/+": ["sport/", "sport/tennis"],
        "+/+": ["sport/", "sport/tennis", "/finance"],
        "/+": ["/finance"],
        "+": ["sport", "finance"],
        "#": topics,
        "a/+/+/d": ["a/b/c/d", "a/x/y/d"],
        "+/tennis/#": ["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
                       "sport/tennis/player2"],
        "a/b/c/d": ["a/b/c/d"],
    }
    subs = {}
    for flt in cases:
        c = clients.connected(name="sub[%s]" % flt)
        assert c.subscribe(flt, 1) == [1]
        subs[flt] = c
    pub = clients.connected(name="pub")
    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    for flt, expected in cases.items():
        got = sorted(m.topic for m in subs[flt].collect(len(expected)))
        assert got == sorted(expected), "filter %r" % flt
    time.sleep(0.3)  # quiet window: nothing else may arrive
    for flt, c in subs.items():
        extra = c.drain()
        assert not extra, "filter %r got extra %r" % (flt, [m.topic for m in extra])


def test_unsubscribe_stops_delivery(server, clients):
    base = unique("unsub")
    sub = clients.connected(name="sub")
    assert sub.subscribe([(base + "/a", 1), (base + "/marker", 1)]) == [1, 1]
    sub.unsubscribe(base + "/a")
    pub = clients.connected(name="pub")
    pub.publish(base + "/a", b"nope", qos=1)
    pub.publish(base + "/marker", b"m", qos=1)
    assert sub.collect_until(base + "/marker") == []


def test_qos2_duplicate_publish_delivered_once(server, clients):
    """A re-sent QoS 2 PUBLISH (DUP=1, same packet id) before PUBREL must not
    be delivered twice."""
    topic = unique("exactly-once")
    sub = clients.connected(name="sub")
    sub.subscribe(topic, 2)
    r = clients.raw(version=4)
    assert r.connect(unique("raw")).reason_code == 0
    r.send(rawmqtt.publish(topic, b"once", qos=2, pid=7, version=4))
    assert r.expect(rawmqtt.PUBREC).pid == 7
    r.send(rawmqtt.publish(topic, b"once", qos=2, pid=7, dup=True, version=4))
    assert r.expect(rawmqtt.PUBREC).pid == 7
    r.send(rawmqtt.pubrel(7, version=4))
    assert r.expect(rawmqtt.PUBCOMP).pid == 7
    r.publish(topic, b"marker", qos=2)
    msgs = sub.collect(2)
    assert [(m.payload, m.qos) for m in msgs] == [(b"once", 2), (b"marker", 2)]
    sub.expect_none(0.3)


def test_pingreq_keeps_connection_alive(server, clients):
    r = clients.raw(version=4)
    assert r.connect(unique("pinger"), keepalive=1).reason_code == 0
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        assert r.ping().type == rawmqtt.PINGRESP
        time.sleep(0.4)  # pacing the pings is the point of this test
    assert not r.closed


# ---------------------------------------------------------------- retained

def test_retained_set_replace_delete(server, clients):
    topic = unique("ret")
    pub = clients.connected(name="pub")
    pub.publish(topic, b"v1", qos=1, retain=True)

    s1 = clients.connected(name="s1")
    s1.subscribe(topic, 1)
    m = s1.expect(topic=topic)
    assert (m.payload, bool(m.retain), m.qos) == (b"v1", True, 1)

    # replace; an existing subscriber gets it live, with RETAIN cleared
    pub.publish(topic, b"v2", qos=1, retain=True)
    m = s1.expect(topic=topic)
    assert (m.payload, bool(m.retain)) == (b"v2", False)

    # a new subscriber only sees the latest value, QoS downgraded to its subscription
    s2 = clients.connected(name="s2")
    s2.subscribe(topic, 0)
    m = s2.expect(topic=topic)
    assert (m.payload, bool(m.retain), m.qos) == (b"v2", True, 0)
    pub.publish(topic, b"live", qos=1)
    m = s2.expect(topic=topic)
    assert (m.payload, bool(m.retain)) == (b"live", False)

    # delete with an empty retained payload (still forwarded to current subscribers)
    pub.publish(topic, b"", qos=1, retain=True)
    assert s1.expect(topic=topic).payload == b"live"
    assert s1.expect(topic=topic).payload == b""

    s3 = clients.connected(name="s3")
    s3.subscribe(topic, 1)
    pub.publish(topic, b"after-delete", qos=1)
    m = s3.expect(topic=topic)
    assert (m.payload, bool(m.retain)) == (b"after-delete", False), \
        "retained message was not deleted"


def test_retained_with_wildcard_subscription(server, clients):
    base = unique("retw")
    pub = clients.connected(name="pub")
    values = {base + "/a": b"A", base + "/b/c": b"BC", base + "/d/e/f": b"DEF"}
    for t, v in values.items():
        pub.publish(t, v, qos=1, retain=True)
    pub.publish(base + "/not-retained", b"x", qos=1)
    sub = clients.connected(name="sub")
    sub.subscribe(base + "/#", 1)
    got = {m.topic: (m.payload, bool(m.retain)) for m in sub.collect(3)}
    assert got == {t: (v, True) for t, v in values.items()}
    pub.publish(base + "/marker", b"m", qos=1)
    assert sub.collect_until(base + "/marker") == []


# ---------------------------------------------------------------- wills

def test_will_on_abnormal_disconnect(server, clients):
    wt = unique("will")
    watcher = clients.connected(name="watcher")
    watcher.subscribe(wt, 2)
    dying = clients.new(name="dying")
    dying.will_set(wt, b"gone", qos=1, retain=False)
    dying.connect(server.mqtt_port)
    dying.drop()  # socket shut down without DISCONNECT
    m = watcher.expect(topic=wt)
    assert (m.payload, m.qos, bool(m.retain)) == (b"gone", 1, False)


def test_retained_will(server, clients):
    wt = unique("will-r")
    watcher = clients.connected(name="watcher")
    watcher.subscribe(wt, 1)
    dying = clients.new(name="dying")
    dying.will_set(wt, b"offline", qos=1, retain=True)
    dying.connect(server.mqtt_port)
    dying.drop()
    assert watcher.expect(topic=wt).payload == b"offline"
    late = clients.connected(name="late")
    late.subscribe(wt, 1)
    m = late.expect(topic=wt)
    assert (m.payload, bool(m.retain)) == (b"offline", True)


def test_no_will_on_clean_disconnect(server, clients):
    wt = unique("will-none")
    watcher = clients.connected(name="watcher")
    watcher.subscribe(wt, 1)
    polite = clients.new(name="polite")
    polite.will_set(wt, b"must-not-appear", qos=1)
    polite.connect(server.mqtt_port)
    polite.disconnect()
    other = clients.connected(name="other")
    other.publish(wt, b"marker", qos=1)
    assert watcher.expect(topic=wt).payload == b"marker"
    watcher.expect_none(0.5)


def test_will_on_keepalive_timeout(server, clients):
    """A silent client is dropped after 1.5 x keep-alive and its will is sent."""
    wt = unique("will-ka")
    watcher = clients.connected(name="watcher")
    watcher.subscribe(wt, 1)
    r = clients.raw(version=4)
    ack = r.connect(unique("silent"), keepalive=1,
                    will=dict(topic=wt, payload=b"timed-out", qos=1))
    assert ack.reason_code == 0
    t0 = time.monotonic()
    r.wait_closed(timeout=1.5 * 1 + 3.0)  # MQTT-3.1.2-24: 1.5 x keep-alive (+ timer slack)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.9, "dropped after %.2fs, before the keep-alive expired" % elapsed
    m = watcher.expect(topic=wt)
    assert m.payload == b"timed-out"


# ---------------------------------------------------------------- sessions

@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_persistent_session_survives_restart(server, clients, how):
    cid = unique("persist")
    base = unique("p")
    sub = clients.new(cid, clean_session=False, name="sub")
    assert not sub.connect(server.mqtt_port).session_present
    assert sub.subscribe([(base + "/q1", 1), (base + "/q2", 2)]) == [1, 2]
    sub.disconnect()

    pub = clients.connected(name="pub")
    pub.publish(base + "/q1", b"one", qos=1)
    pub.publish(base + "/q2", b"two", qos=2)
    pub.publish(base + "/q2", b"three", qos=1)
    pub.disconnect()

    server.restart(kill=(how == "kill9"))

    sub2 = clients.new(cid, clean_session=False, name="sub-again")
    assert sub2.connect(server.mqtt_port).session_present, "session lost across %s" % how
    got = sorted((m.topic, m.payload, m.qos) for m in sub2.collect(3))
    assert got == sorted([(base + "/q1", b"one", 1), (base + "/q2", b"two", 2),
                          (base + "/q2", b"three", 1)])
    sub2.expect_none(0.3)
    # the subscriptions themselves survived (no re-subscribe)
    pub2 = clients.connected(name="pub2")
    assert roundtrip(pub2, sub2, base + "/q2", qos=2).qos == 2


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_retained_survives_restart(server, clients, how):
    base = unique("rr")
    pub = clients.connected(name="pub")
    pub.publish(base + "/keep", b"kept", qos=1, retain=True)
    pub.publish(base + "/gone", b"x", qos=1, retain=True)
    pub.publish(base + "/gone", b"", qos=1, retain=True)
    pub.disconnect()
    server.restart(kill=(how == "kill9"))
    sub = clients.connected(name="sub")
    sub.subscribe(base + "/#", 1)
    m = sub.expect()
    assert (m.topic, m.payload, bool(m.retain)) == (base + "/keep", b"kept", True)
    pub2 = clients.connected(name="pub2")
    pub2.publish(base + "/marker", b"m", qos=1)
    assert sub.collect_until(base + "/marker") == []


@pytest.mark.parametrize("restart", ["none", "kill9"])
def test_unacked_qos1_redelivered_on_reconnect(server, clients, restart):
    cid = unique("unacked")
    topic = unique("ua")
    r = clients.raw(version=4)
    assert r.connect(cid, clean=False).reason_code == 0
    assert r.subscribe([(topic, 1)]).codes == [1]
    pub = clients.connected(name="pub")
    pub.publish(topic, b"m1", qos=1)
    first = r.expect(rawmqtt.PUBLISH)
    assert (first.payload, first.qos) == (b"m1", 1)
    r.close()  # never acknowledged
    if restart == "kill9":
        server.kill9()
        server.start()

    r2 = clients.raw(version=4)
    ack = r2.connect(cid, clean=False)
    assert ack.reason_code == 0 and ack.session_present
    again = r2.expect(rawmqtt.PUBLISH)
    assert (again.topic, again.payload, again.qos) == (topic, b"m1", 1)
    if restart == "none":
        assert again.dup, "re-delivery must set DUP (MQTT-3.3.1-1)"
        assert again.pid == first.pid, "re-delivery must reuse the packet id (MQTT-4.4.0-1)"
    r2.ack(again)
    r2.disconnect(wait_closed=True)

    # acknowledged now: not delivered a third time
    r3 = clients.raw(version=4)
    assert r3.connect(cid, clean=False).session_present
    pub2 = clients.connected(name="pub2")
    pub2.publish(topic, b"m2", qos=1)
    nxt = r3.expect(rawmqtt.PUBLISH)
    assert nxt.payload == b"m2", "acknowledged message delivered again: %r" % nxt


def test_clean_session_discards_state(server, clients):
    cid = unique("clean")
    topic = unique("cs")
    a = clients.new(cid, clean_session=False, name="a")
    a.connect(server.mqtt_port)
    a.subscribe(topic, 1)
    a.disconnect()
    b = clients.new(cid, clean_session=True, name="b")
    assert not b.connect(server.mqtt_port).session_present
    b.disconnect()
    c = clients.new(cid, clean_session=False, name="c")
    assert not c.connect(server.mqtt_port).session_present
    c.subscribe(topic + "/marker", 1)
    pub = clients.connected(name="pub")
    pub.publish(topic, b"old-sub", qos=1)
    pub.publish(topic + "/marker", b"m", qos=1)
    assert c.collect_until(topic + "/marker") == []


def test_client_id_takeover(server, clients):
    cid = unique("dup")
    topic = unique("tk")
    a = clients.connected(cid, name="first")
    b = clients.connected(cid, name="second")
    a.wait_disconnected()
    assert b.connected
    b.subscribe(topic, 1)
    pub = clients.connected(name="pub")
    assert roundtrip(pub, b, topic).payload
    a.expect_none(0.1)


def test_server_assigned_client_id(server, clients):
    a = clients.new("", clean_session=True, name="anon-a")
    a.connect(server.mqtt_port)
    b = clients.new("", clean_session=True, name="anon-b")
    b.connect(server.mqtt_port)
    topic = unique("anon")
    a.subscribe(topic, 1)
    assert roundtrip(b, a, topic).payload
    assert b.connected and a.connected  # two anonymous clients did not take each other over


def test_empty_client_id_with_persistent_session_rejected(server, clients):
    """MQTT-3.1.3-8: zero-byte ClientId with CleanSession=0 -> CONNACK 0x02."""
    r = clients.raw(version=4)
    ack = r.connect("", clean=False)
    assert ack.reason_code == 0x02
    r.wait_closed()


# ---------------------------------------------------------------- $SYS

def test_sys_topics_and_dollar_not_matched_by_wildcards(nimbus, clients):
    nimbus.start(["--sys-interval", "1"])
    wild = clients.connected(name="wild")
    assert wild.subscribe([("#", 0), ("+/broker/uptime", 0), ("+/#", 0)]) == [0, 0, 0]
    sys_sub = clients.connected(name="sys")
    sys_sub.subscribe([("$SYS/broker/uptime", 0), ("$SYS/broker/clients/connected", 0)])
    uptime_msgs, connected_vals = [], []
    deadline = time.monotonic() + 8
    while not (len(uptime_msgs) >= 2 and any(v >= 2 for v in connected_vals)):
        assert time.monotonic() < deadline, "no periodic $SYS updates: uptime=%r connected=%r" % (
            uptime_msgs, connected_vals)
        m = sys_sub.expect(timeout=max(deadline - time.monotonic(), 0.01))
        if m.topic == "$SYS/broker/uptime":
            uptime_msgs.append(m.payload)
        elif m.topic == "$SYS/broker/clients/connected":
            connected_vals.append(int(m.payload.split()[0]))
    assert all(re.search(rb"\d", p) for p in uptime_msgs), uptime_msgs
    # at least one $SYS publication happened while `wild` was subscribed:
    # '#' and '+/...' must not match topics starting with '$' (MQTT-4.7.2-1)
    wild.publish("plain/marker", b"m", qos=1)
    before = wild.collect_until("plain/marker")
    assert [m.topic for m in before if m.topic.startswith("$")] == []


# ---------------------------------------------------------------- malformed input

def _connect_with(**kw):
    return rawmqtt.connect(unique("bad"), version=4, **kw)


MALFORMED_V311 = {
    # name: (connect_first, bytes)
    "remaining_length_5_bytes": (True, b"\x30\xff\xff\xff\xff\x01"),
    "connect_remaining_length_5_bytes": (False, b"\x10\xff\xff\xff\xff\x01"),
    "bad_protocol_name": (False, _connect_with(protocol_name="MQTX")),
    "connect_reserved_flag": (False, _connect_with(connect_flags=0x03)),
    "subscribe_reserved_flags": (True, rawmqtt.packet(rawmqtt.SUBSCRIBE, 0,
                                                      rawmqtt.u16(1) + rawmqtt.utf8("a") + b"\x00")),
    "subscribe_qos3": (True, rawmqtt.subscribe(1, [("a/b", 3)], version=4)),
    "invalid_utf8_topic": (True, rawmqtt.publish(b"a/\xff\xfe", b"x", version=4)),
    "nul_in_topic": (True, rawmqtt.publish(b"a\x00b", b"x", version=4)),
    "publish_qos3": (True, rawmqtt.packet(rawmqtt.PUBLISH, 0x06,
                                          rawmqtt.utf8("a") + rawmqtt.u16(1) + b"x")),
    "wildcard_in_publish_topic": (True, rawmqtt.publish("a/+/b", b"x", version=4)),
    "second_connect": (True, _connect_with()),
    "reserved_packet_type_0": (True, b"\x00\x00"),
    "publish_before_connect": (False, rawmqtt.publish("a/b", b"x", version=4)),
    "truncated_string_length": (True, rawmqtt.packet(rawmqtt.PUBLISH, 0, b"\x00\x10ab")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_V311))
def test_malformed_packet_disconnects_only_offender(server, clients, case):
    connect_first, data = MALFORMED_V311[case]
    assert_rejected(server, clients, 4, data, connect_first=connect_first)


def test_unsupported_protocol_level(server, clients):
    """MQTT-3.1.2-2: unknown protocol level -> CONNACK 0x01, then disconnect."""
    r = clients.raw(version=4)
    good = rawmqtt.connect(unique("lvl"), version=4)
    assert good[2:8] == b"\x00\x04MQTT" and good[8] == 4
    r.send(good[:8] + b"\x09" + good[9:])
    pkts = r.wait_closed()
    connacks = [p for p in pkts if p.type == rawmqtt.CONNACK]
    assert connacks and connacks[0].reason_code == 0x01, pkts


# ---------------------------------------------------------------- transports

def test_websocket_pubsub(server, clients):
    t_ws, t_tcp = unique("ws-in"), unique("tcp-in")
    ws = clients.connected(transport="websockets", name="ws")
    tcp = clients.connected(name="tcp")
    ws.subscribe(t_ws, 2)
    tcp.subscribe(t_tcp, 2)
    tcp.publish(t_ws, b"to-ws", qos=1)
    m = ws.expect(topic=t_ws)
    assert (m.payload, m.qos) == (b"to-ws", 1)
    big = os.urandom(100 * 1024)  # needs a 64-bit WebSocket length
    tcp.publish(t_ws, big, qos=2)
    assert ws.expect(topic=t_ws, timeout=10).payload == big
    ws.publish(t_tcp, b"from-ws", qos=2)
    m = tcp.expect(topic=t_tcp)
    assert (m.payload, m.qos) == (b"from-ws", 2)
    ws.publish(t_tcp, big, qos=1, timeout=10)
    assert tcp.expect(topic=t_tcp, timeout=10).payload == big


def test_tls_with_client_certificate(server, clients):
    cert, key = server.make_device_cert("device-1")
    topic_tls, topic_tcp = unique("tls-in"), unique("tcp-in")
    tls = clients.new(name="tls")
    tls.tls_set(server.ca_cert, cert, key)
    tls.connect(server.mqtts_port, host="127.0.0.1")
    tcp = clients.connected(name="tcp")
    tls.subscribe(topic_tls, 1)
    tcp.subscribe(topic_tcp, 1)
    tcp.publish(topic_tls, b"secret-in", qos=1)
    assert tls.expect(topic=topic_tls).payload == b"secret-in"
    tls.publish(topic_tcp, b"secret-out", qos=2)
    assert tcp.expect(topic=topic_tcp).payload == b"secret-out"

    # the server certificate is also valid for the name "localhost"
    ctx = server.tls_context(cert, key)
    with rawmqtt.RawClient("127.0.0.1", server.mqtts_port, version=4, ssl_context=ctx,
                           server_hostname="localhost") as r:
        assert r.connect(unique("tls-raw")).reason_code == 0


def _assert_tls_refused(server, ctx):
    try:
        r = rawmqtt.RawClient("127.0.0.1", server.mqtts_port, version=4, ssl_context=ctx)
    except (ssl.SSLError, OSError):
        return  # refused during the handshake (TLS 1.2 style)
    with r:
        try:
            r.send(rawmqtt.connect(unique("nocert"), version=4))
        except OSError:
            return
        pkts = r.wait_closed()  # TLS 1.3: the alert arrives after the handshake
        assert not any(p.type == rawmqtt.CONNACK and p.reason_code == 0 for p in pkts), pkts


def test_tls_without_client_certificate_refused(server, clients):
    _assert_tls_refused(server, server.tls_context())
    server.assert_alive()
    c = clients.connected(name="still-ok")
    assert c.connected


def test_tls_with_untrusted_client_certificate_refused(server):
    foreign = server.make_ca("Some Other CA")
    cert, key = server.make_client_cert("intruder", ca=foreign)
    _assert_tls_refused(server, server.tls_context(cert, key))
    server.assert_alive()


# ---------------------------------------------------------------- HTTP / ops

def test_healthz(server):
    status, _headers, _body = http_get(server.http_url + "/healthz")
    assert status == 200


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+-?\d+)?$")


def test_metrics(server, clients):
    c = clients.connected(name="metered")
    c.subscribe(unique("m"), 1)
    status, headers, body = http_get(server.http_url + "/metrics")
    assert status == 200
    assert headers.get("Content-Type", "").startswith("text/plain"), headers.get("Content-Type")
    text = body.decode("utf-8")
    samples = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
    assert samples, "no samples in /metrics"
    for line in samples:
        m = METRIC_LINE.match(line)
        assert m, "not Prometheus text format: %r" % line
        float(m.group(3).replace("Inf", "inf"))
    assert any(l.startswith("nimbus_") for l in samples)


def test_unknown_http_path_is_404(server):
    status, _h, _b = http_get(server.http_url + "/definitely-not-here")
    assert status == 404


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_clean_shutdown_exit_0(server, clients, sig):
    c = clients.connected(name="victim")
    c.subscribe(unique("x"), 1)
    rc = server.stop(sig)
    assert rc == 0
    c.wait_disconnected()
