"""End-to-end tests of Nimbus with the paho-mqtt client speaking MQTT 5.0,
plus a raw-socket MQTT 5 client (rawmqtt.py) where paho cannot observe or
control what is on the wire (flow control, server topic aliases, exact reason
codes, malformed packets)."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCodes
from paho.mqtt.subscribeoptions import SubscribeOptions

import rawmqtt
from rawmqtt import sub_options
from conftest import (TIMEOUT, V311, V5, assert_rejected, props, roundtrip, unique)

PUB = PacketTypes.PUBLISH
SUB = PacketTypes.SUBSCRIBE
CONN = PacketTypes.CONNECT
WILL = PacketTypes.WILLMESSAGE


def prop(msg, name, default=None):
    p = getattr(msg, "properties", None)
    return getattr(p, name, default) if p is not None else default


def session_props(expiry=300):
    return props(CONN, SessionExpiryInterval=expiry)


# ---------------------------------------------------------------- basics

def test_connack_capabilities(server, clients):
    c = clients.new(version=V5)
    ack = c.connect(server.mqtt_port)
    p = ack.properties
    assert ack.rc == 0 and not ack.session_present
    # absent means "supported" / maximum; Nimbus supports all of these
    assert getattr(p, "MaximumQoS", 2) == 2
    assert getattr(p, "RetainAvailable", 1) == 1
    assert getattr(p, "WildcardSubscriptionAvailable", 1) == 1
    assert getattr(p, "SubscriptionIdentifierAvailable", 1) == 1
    assert getattr(p, "SharedSubscriptionAvailable", 1) == 1
    assert getattr(p, "TopicAliasMaximum", 0) >= 1, "topic aliases must be offered"
    assert getattr(p, "ReceiveMaximum", 65535) >= 1


def test_pubsub_qos_matrix(server, clients):
    base = unique("qos5")
    sub = clients.connected(version=V5, name="sub")
    pub = clients.connected(version=V5, name="pub")
    for sq in range(3):
        assert sub.subscribe("%s/s%d/#" % (base, sq), sq) == [sq]
    expected = []
    for sq in range(3):
        for pq in range(3):
            topic = "%s/s%d/p%d" % (base, sq, pq)
            payload = ("sub%d-pub%d" % (sq, pq)).encode()
            pub.publish(topic, payload, qos=pq)
            expected.append((topic, payload, min(sq, pq)))
    got = [(m.topic, m.payload, m.qos) for m in sub.collect(9)]
    assert sorted(got) == sorted(expected)
    sub.expect_none(0.3)


def test_v311_and_v5_clients_interoperate(server, clients):
    t3, t5 = unique("to-v311"), unique("to-v5")
    c3 = clients.connected(version=V311, name="v311")
    c5 = clients.connected(version=V5, name="v5")
    c3.subscribe(t3, 2)
    c5.subscribe(t5, 2)
    c5.publish(t3, b"hello 3.1.1", qos=2, properties=props(PUB, UserProperty=[("k", "v")]))
    m = c3.expect(topic=t3)
    assert (m.payload, m.qos) == (b"hello 3.1.1", 2)
    c3.publish(t5, b"hello 5", qos=1)
    m = c5.expect(topic=t5)
    assert (m.payload, m.qos) == (b"hello 5", 1)


def test_unsubscribe_reason_codes(server, clients):
    topic = unique("unsub5")
    r = clients.raw(version=5)
    assert r.connect(unique("u")).reason_code == 0
    assert r.subscribe([(topic, sub_options(qos=1))]).codes == [1]
    ack = r.unsubscribe([topic, topic + "/never-subscribed"])
    assert ack.codes == [rawmqtt.RC_SUCCESS, rawmqtt.RC_NO_SUBSCRIPTION_EXISTED]


def test_invalid_topic_filter_gets_0x8F(server, clients):
    ok = unique("ok")
    r = clients.raw(version=5)
    assert r.connect(unique("f")).reason_code == 0
    ack = r.subscribe([("a/#/b", sub_options(qos=1)), (ok, sub_options(qos=1)),
                       ("a/b+", sub_options(qos=1))])
    assert ack.codes == [rawmqtt.RC_TOPIC_FILTER_INVALID, 1, rawmqtt.RC_TOPIC_FILTER_INVALID]
    # the connection stays usable and the valid filter is active
    assert r.ping().type == rawmqtt.PINGRESP
    r.publish(ok, b"works", qos=1)
    p = r.expect(rawmqtt.PUBLISH)
    assert (p.topic, p.payload) == (ok, b"works")


# ---------------------------------------------------------------- sessions

@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_persistent_session_survives_restart(server, clients, how):
    cid = unique("persist5")
    base = unique("p5")
    sub = clients.new(cid, version=V5, name="sub")
    assert not sub.connect(server.mqtt_port, clean_start=False,
                           properties=session_props()).session_present
    assert sub.subscribe([(base + "/q1", 1), (base + "/q2", 2)]) == [1, 2]
    sub.disconnect()

    pub = clients.connected(version=V5, name="pub")
    pub.publish(base + "/q1", b"one", qos=1,
                properties=props(PUB, UserProperty=[("kept", "yes")]))
    pub.publish(base + "/q2", b"two", qos=2)
    pub.disconnect()

    server.restart(kill=(how == "kill9"))

    sub2 = clients.new(cid, version=V5, name="sub-again")
    ack = sub2.connect(server.mqtt_port, clean_start=False, properties=session_props())
    assert ack.session_present, "session lost across %s" % how
    msgs = sub2.collect(2)
    got = sorted((m.topic, m.payload, m.qos) for m in msgs)
    assert got == [(base + "/q1", b"one", 1), (base + "/q2", b"two", 2)]
    one = [m for m in msgs if m.payload == b"one"][0]
    assert prop(one, "UserProperty") == [("kept", "yes")], "properties must be persisted too"
    sub2.expect_none(0.3)
    pub2 = clients.connected(version=V5, name="pub2")
    assert roundtrip(pub2, sub2, base + "/q1").qos == 1


def test_session_expiry_zero_ends_session_on_disconnect(server, clients):
    cid = unique("noexp")
    topic = unique("se0")
    a = clients.new(cid, version=V5, name="a")
    a.connect(server.mqtt_port, clean_start=False)  # no SessionExpiryInterval = 0
    a.subscribe(topic, 1)
    a.disconnect()
    b = clients.new(cid, version=V5, name="b")
    ack = b.connect(server.mqtt_port, clean_start=False, properties=session_props())
    assert not ack.session_present
    b.subscribe(topic + "/marker", 1)
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"old", qos=1)
    pub.publish(topic + "/marker", b"m", qos=1)
    assert b.collect_until(topic + "/marker") == []


def test_clean_start_discards_existing_session(server, clients):
    cid = unique("cs5")
    topic = unique("cs5t")
    a = clients.new(cid, version=V5, name="a")
    a.connect(server.mqtt_port, clean_start=False, properties=session_props())
    a.subscribe(topic, 1)
    a.disconnect()
    b = clients.new(cid, version=V5, name="b")
    assert not b.connect(server.mqtt_port, clean_start=True,
                         properties=session_props()).session_present
    b.subscribe(topic + "/marker", 1)
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"old", qos=1)
    pub.publish(topic + "/marker", b"m", qos=1)
    assert b.collect_until(topic + "/marker") == []


def test_takeover_sends_disconnect_0x8E(server, clients):
    cid = unique("take5")
    a = clients.raw(version=5)
    assert a.connect(cid).reason_code == 0
    b = clients.raw(version=5)
    assert b.connect(cid).reason_code == 0
    pkts = a.wait_closed()
    disc = [p for p in pkts if p.type == rawmqtt.DISCONNECT]
    assert disc, "old connection closed without DISCONNECT: %r" % pkts
    assert disc[0].reason_code == rawmqtt.RC_SESSION_TAKEN_OVER
    assert b.ping().type == rawmqtt.PINGRESP


def test_takeover_keeps_persistent_session(server, clients):
    cid = unique("take5p")
    topic = unique("tp")
    a = clients.new(cid, version=V5, name="first")
    a.connect(server.mqtt_port, clean_start=False, properties=session_props())
    a.subscribe(topic, 1)
    b = clients.new(cid, version=V5, name="second")
    ack = b.connect(server.mqtt_port, clean_start=False, properties=session_props())
    assert ack.session_present
    a.wait_disconnected()
    pub = clients.connected(version=V5, name="pub")
    assert roundtrip(pub, b, topic).payload  # subscription taken over with the session


def test_server_assigned_client_identifier(server, clients):
    a = clients.new("", version=V5, name="anon-a")
    aid = getattr(a.connect(server.mqtt_port).properties, "AssignedClientIdentifier", None)
    b = clients.new("", version=V5, name="anon-b")
    bid = getattr(b.connect(server.mqtt_port).properties, "AssignedClientIdentifier", None)
    assert aid and bid and aid != bid
    topic = unique("anon5")
    a.subscribe(topic, 1)
    assert roundtrip(b, a, topic).payload
    assert a.connected and b.connected


def test_unacked_qos2_resumed_after_reconnect(server, clients):
    """QoS 2 outbound: PUBREC sent, connection lost before PUBREL -> the broker
    re-sends PUBREL on reconnect (MQTT-4.4.0-1) and the message is not
    delivered again."""
    cid = unique("q2resume")
    topic = unique("q2r")
    r = clients.raw(version=5)
    assert r.connect(cid, clean=False, props={"SessionExpiryInterval": 300}).reason_code == 0
    assert r.subscribe([(topic, sub_options(qos=2))]).codes == [2]
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"exactly-once", qos=2)
    p = r.expect(rawmqtt.PUBLISH)
    assert (p.payload, p.qos) == (b"exactly-once", 2)
    r.send(rawmqtt.pubrec(p.pid))
    r.expect(rawmqtt.PUBREL)
    r.close()  # PUBCOMP never sent

    r2 = clients.raw(version=5)
    ack = r2.connect(cid, clean=False, props={"SessionExpiryInterval": 300})
    assert ack.session_present
    rel = r2.expect(rawmqtt.PUBREL)
    assert rel.pid == p.pid
    r2.send(rawmqtt.pubcomp(rel.pid))
    pub.publish(topic, b"next", qos=2)
    nxt = r2.expect(rawmqtt.PUBLISH)
    assert nxt.payload == b"next", "QoS 2 message re-delivered: %r" % nxt


# ---------------------------------------------------------------- wills

def test_will_with_properties_on_abnormal_disconnect(server, clients):
    wt = unique("will5")
    watcher = clients.connected(version=V5, name="watcher")
    watcher.subscribe(wt, 1)
    dying = clients.new(version=V5, name="dying")
    dying.will_set(wt, b"gone", qos=1, properties=props(
        WILL, UserProperty=[("why", "crash")], ContentType="text/plain",
        ResponseTopic="reply/here", CorrelationData=b"\x01\x02"))
    dying.connect(server.mqtt_port)
    dying.drop()
    m = watcher.expect(topic=wt)
    assert (m.payload, m.qos) == (b"gone", 1)
    assert prop(m, "UserProperty") == [("why", "crash")]
    assert prop(m, "ContentType") == "text/plain"
    assert prop(m, "ResponseTopic") == "reply/here"
    assert prop(m, "CorrelationData") == b"\x01\x02"


def test_disconnect_with_will_message_reason_sends_will(server, clients):
    wt = unique("will04")
    watcher = clients.connected(version=V5, name="watcher")
    watcher.subscribe(wt, 1)
    c = clients.new(version=V5, name="leaver")
    c.will_set(wt, b"asked-for", qos=1)
    c.connect(server.mqtt_port)
    c.disconnect(reasoncode=ReasonCodes(PacketTypes.DISCONNECT, "Disconnect with will message"))
    assert watcher.expect(topic=wt).payload == b"asked-for"


def test_no_will_on_normal_disconnect(server, clients):
    wt = unique("will5n")
    watcher = clients.connected(version=V5, name="watcher")
    watcher.subscribe(wt, 1)
    c = clients.new(version=V5, name="polite")
    c.will_set(wt, b"must-not-appear", qos=1)
    c.connect(server.mqtt_port)
    c.disconnect()
    clients.connected(version=V5, name="other").publish(wt, b"marker", qos=1)
    assert watcher.expect(topic=wt).payload == b"marker"
    watcher.expect_none(0.5)


def test_will_delay_elapses(server, clients):
    wt = unique("willd")
    watcher = clients.connected(version=V5, name="watcher")
    watcher.subscribe(wt, 1)
    c = clients.new(unique("delayed"), version=V5, name="delayed")
    c.will_set(wt, b"late-will", qos=1, properties=props(WILL, WillDelayInterval=1))
    c.connect(server.mqtt_port, clean_start=True, properties=session_props(60))
    c.drop()
    t0 = time.monotonic()
    m = watcher.expect(topic=wt, timeout=5)
    elapsed = time.monotonic() - t0
    assert m.payload == b"late-will"
    assert elapsed >= 0.8, "will sent after %.2fs, before its 1s delay" % elapsed


def test_delayed_will_survives_kill9(server, clients):
    wt = unique("willk")
    watcher_id = unique("watcher")
    watcher = clients.new(watcher_id, version=V5, name="watcher")
    watcher.connect(server.mqtt_port, clean_start=True, properties=session_props(300))
    watcher.subscribe(wt, 1)
    c = clients.new(unique("doomed"), version=V5, name="doomed")
    c.will_set(wt, b"will-after-crash", qos=1, properties=props(WILL, WillDelayInterval=3))
    c.connect(server.mqtt_port, clean_start=True, properties=session_props(60))
    c.drop()
    watcher.disconnect()
    # The will is scheduled when the server sees the drop; give the writer a moment to store it
    # (nothing observable says so), then crash the server well inside the 3 s delay.
    time.sleep(0.7)
    server.kill9()
    server.start()
    back = clients.new(watcher_id, version=V5, name="watcher-again")
    assert back.connect(server.mqtt_port, clean_start=False,
                        properties=session_props(300)).session_present
    m = back.expect(topic=wt, timeout=10)
    assert m.payload == b"will-after-crash"


def test_will_delay_cancelled_by_reconnect(server, clients):
    wt = unique("willc")
    cid = unique("comeback")
    watcher = clients.connected(version=V5, name="watcher")
    watcher.subscribe(wt, 1)
    c = clients.new(cid, version=V5, name="flaky")
    c.will_set(wt, b"must-not-appear", qos=1, properties=props(WILL, WillDelayInterval=1))
    c.connect(server.mqtt_port, clean_start=False, properties=session_props(60))
    c.drop()
    back = clients.new(cid, version=V5, name="back")
    assert back.connect(server.mqtt_port, clean_start=False,
                        properties=session_props(60)).session_present
    # wait past the 1 s will delay: the will must not be published
    time.sleep(1.7)
    clients.connected(version=V5, name="other").publish(wt, b"marker", qos=1)
    assert watcher.expect(topic=wt).payload == b"marker"


def test_keepalive_timeout_v5(server, clients):
    """The broker enforces the (server) keep alive: a silent client is dropped
    and its will is published."""
    wt = unique("will-ka5")
    watcher = clients.connected(version=V5, name="watcher")
    watcher.subscribe(wt, 1)
    r = clients.raw(version=5)
    ack = r.connect(unique("silent5"), keepalive=1, will=dict(topic=wt, payload=b"ka5", qos=1))
    assert ack.reason_code == 0
    ka = ack.props.get("ServerKeepAlive", 1)
    assert 1 <= ka <= 2, "ServerKeepAlive %r too large for this test" % ka
    t0 = time.monotonic()
    pkts = r.wait_closed(timeout=1.5 * ka + 3.0)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.9 * ka
    for p in pkts:
        if p.type == rawmqtt.DISCONNECT:
            assert p.reason_code == rawmqtt.RC_KEEP_ALIVE_TIMEOUT
    assert watcher.expect(topic=wt).payload == b"ka5"


# ---------------------------------------------------------------- subscriptions

@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_shared_subscription_distributes(server, clients, version):
    topic = unique("share")
    members = [clients.connected(version=version, name="member%d" % i) for i in range(2)]
    for m in members:
        assert m.subscribe("$share/g1/" + topic, 1) == [1]
    other_group = clients.connected(version=version, name="g2")
    other_group.subscribe("$share/g2/" + topic, 1)
    pub = clients.connected(version=version, name="pub")
    n = 30
    for i in range(n):
        pub.publish(topic, b"%d" % i, qos=1)
    assert sorted(int(m.payload) for m in other_group.collect(n)) == list(range(n)), \
        "every group gets every message"
    counts = [[], []]
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, counts)) < n and time.monotonic() < deadline:
        for i, m in enumerate(members):
            counts[i] += [int(x.payload) for x in m.drain()]
        time.sleep(0.02)
    time.sleep(0.2)
    for i, m in enumerate(members):
        counts[i] += [int(x.payload) for x in m.drain()]
    assert sorted(counts[0] + counts[1]) == list(range(n)), counts
    assert counts[0] and counts[1], "both members must receive some: %r" % counts


def test_subscription_identifiers(server, clients):
    base = unique("sid")
    sub = clients.connected(version=V5, name="sub")
    sub.subscribe(base + "/a/#", 1, properties=props(SUB, SubscriptionIdentifier=7))
    sub.subscribe(base + "/+/x", 1, properties=props(SUB, SubscriptionIdentifier=9))
    sub.subscribe([(base + "/plain", 1), (base + "/end", 1)])
    pub = clients.connected(version=V5, name="pub")
    for t in ("a/x", "b/x", "a/y", "plain"):
        pub.publish("%s/%s" % (base, t), t.encode(), qos=1)
    pub.publish(base + "/end", b"end", qos=1)
    msgs = sub.collect_until(base + "/end")
    ids = {}
    for m in msgs:
        ids.setdefault(m.topic, set()).update(prop(m, "SubscriptionIdentifier", []))
    assert ids == {base + "/a/x": {7, 9}, base + "/b/x": {9}, base + "/a/y": {7},
                   base + "/plain": set()}


def test_no_local(server, clients):
    topic = unique("nl")
    a = clients.connected(version=V5, name="a-nolocal")
    a.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
    b = clients.connected(version=V5, name="b")
    b.subscribe(topic, 1)
    a.publish(topic, b"from-a", qos=1)
    assert b.expect(topic=topic).payload == b"from-a"
    b.publish(topic, b"from-b", qos=1)
    assert b.expect(topic=topic).payload == b"from-b"  # without no-local you get your own
    assert a.expect(topic=topic).payload == b"from-b", "no-local client got its own message"
    a.expect_none(0.2)


def test_retain_as_published(server, clients):
    topic = unique("rap")
    rap = clients.connected(version=V5, name="rap")
    rap.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
    plain = clients.connected(version=V5, name="plain")
    plain.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=False))
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"r", qos=1, retain=True)
    pub.publish(topic, b"n", qos=1, retain=False)
    assert [(m.payload, bool(m.retain)) for m in rap.collect(2)] == [(b"r", True), (b"n", False)]
    assert [(m.payload, bool(m.retain)) for m in plain.collect(2)] == [(b"r", False),
                                                                       (b"n", False)]


def test_retain_handling(server, clients):
    topic = unique("rh")
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"kept", qos=1, retain=True)
    c = clients.connected(version=V5, name="sub")
    counter = iter(range(100))

    def subscribe_and_check(rh, expect_retained):
        c.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=rh))
        live = b"live-%d" % next(counter)
        pub.publish(topic, live, qos=1)
        first = c.expect(topic=topic)
        if expect_retained:
            assert (first.payload, bool(first.retain)) == (b"kept", True), \
                "retain handling %d: expected retained message first" % rh
            first = c.expect(topic=topic)
        assert (first.payload, bool(first.retain)) == (live, False), \
            "retain handling %d: unexpected %r" % (rh, first.payload)

    subscribe_and_check(0, True)    # new subscription
    subscribe_and_check(0, True)    # existing subscription: sent again
    c.unsubscribe(topic)
    subscribe_and_check(1, True)    # new subscription
    subscribe_and_check(1, False)   # existing subscription: not sent
    c.unsubscribe(topic)
    subscribe_and_check(2, False)   # never sent


# ---------------------------------------------------------------- properties

def test_user_properties_content_type_and_format(server, clients):
    topic = unique("up")
    sub = clients.connected(version=V5, name="sub")
    sub.subscribe(topic, 1)
    pub = clients.connected(version=V5, name="pub")
    up = [("a", "1"), ("b", "2"), ("a", "3"), ("ünï", "cødé ✓")]
    pub.publish(topic, "héllo".encode(), qos=1, properties=props(
        PUB, UserProperty=up, ContentType="text/plain; charset=utf-8", PayloadFormatIndicator=1))
    m = sub.expect(topic=topic)
    assert prop(m, "UserProperty") == up, "order and duplicates must be preserved (MQTT-3.3.2-18)"
    assert prop(m, "ContentType") == "text/plain; charset=utf-8"
    assert prop(m, "PayloadFormatIndicator") == 1
    assert m.payload == "héllo".encode()


def test_request_response(server, clients):
    req_t, resp_t = unique("req"), unique("resp")
    responder = clients.connected(version=V5, name="responder")
    responder.subscribe(req_t, 1)
    requester = clients.connected(version=V5, name="requester")
    requester.subscribe(resp_t, 1)
    corr = b"\x00\xffcorr-42"
    requester.publish(req_t, b"ping", qos=1,
                      properties=props(PUB, ResponseTopic=resp_t, CorrelationData=corr))
    req = responder.expect(topic=req_t)
    assert prop(req, "ResponseTopic") == resp_t
    assert prop(req, "CorrelationData") == corr
    responder.publish(prop(req, "ResponseTopic"), b"pong", qos=1,
                      properties=props(PUB, CorrelationData=prop(req, "CorrelationData")))
    resp = requester.expect(topic=resp_t)
    assert resp.payload == b"pong"
    assert prop(resp, "CorrelationData") == corr


def test_response_information_on_request(server, clients):
    asking = clients.raw(version=5)
    ack = asking.connect(unique("ri"), props={"RequestResponseInformation": 1})
    info = ack.props.get("ResponseInformation")
    assert info, "a client asking for Response Information gets a prefix (MQTT 3.2.2.3.15)"
    # The prefix is usable: a request/response round trip under it works.
    asking.subscribe([(info + "/#", 1)])
    other = clients.connected(version=V5, name="other")
    other.publish(info + "/reply", b"answer", qos=1)
    msg = asking.expect(rawmqtt.PUBLISH)
    assert (msg.topic, msg.payload) == (info + "/reply", b"answer")
    silent = clients.raw(version=5)
    assert "ResponseInformation" not in silent.connect(unique("ri")).props


def test_message_expiry(server, clients):
    cid = unique("exp")
    base = unique("mx")
    online = clients.connected(version=V5, name="online")
    online.subscribe(base + "/#", 1)
    offline = clients.new(cid, version=V5, name="offline")
    offline.connect(server.mqtt_port, clean_start=True, properties=session_props())
    offline.subscribe(base + "/#", 1)
    offline.disconnect()

    pub = clients.connected(version=V5, name="pub")
    pub.publish(base + "/short", b"short", qos=1, properties=props(PUB, MessageExpiryInterval=1))
    pub.publish(base + "/long", b"long", qos=1, properties=props(PUB, MessageExpiryInterval=60))
    pub.publish(base + "/none", b"none", qos=1)
    pub.publish(base + "/retained-short", b"rs", qos=1, retain=True,
                properties=props(PUB, MessageExpiryInterval=1))
    live = {m.topic: m for m in online.collect(4)}
    assert 0 < prop(live[base + "/long"], "MessageExpiryInterval") <= 60
    assert prop(live[base + "/none"], "MessageExpiryInterval") is None
    t_published = time.monotonic()

    time.sleep(2.2)  # let the 1 s messages expire (time must pass; nothing to await)

    back = clients.new(cid, version=V5, name="offline-back")
    assert back.connect(server.mqtt_port, clean_start=False,
                        properties=session_props()).session_present
    got = {m.topic: m for m in back.collect(2)}
    assert set(got) == {base + "/long", base + "/none"}, "expired messages were delivered"
    remaining = prop(got[base + "/long"], "MessageExpiryInterval")
    waited = time.monotonic() - t_published
    assert remaining is not None and 1 <= remaining <= 60 - int(waited) + 1, \
        "remaining expiry %r after %.1fs" % (remaining, waited)
    assert remaining <= 59, "expiry interval must be reduced by the time spent queued"
    assert prop(got[base + "/none"], "MessageExpiryInterval") is None
    back.expect_none(0.3)

    fresh = clients.connected(version=V5, name="fresh")
    fresh.subscribe(base + "/retained-short", 1)
    pub.publish(base + "/retained-short", b"live", qos=1)
    m = fresh.expect(topic=base + "/retained-short")
    assert (m.payload, bool(m.retain)) == (b"live", False), "expired retained message was sent"


def test_maximum_packet_size_respected(server, clients):
    topic = unique("mps")
    small = clients.new(version=V5, name="small")
    small.connect(server.mqtt_port, properties=props(CONN, MaximumPacketSize=512))
    small.subscribe(topic, 1)
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"x" * 2000, qos=1)
    pub.publish(topic, b"fits", qos=1)
    m = small.expect(topic=topic)
    assert m.payload == b"fits", "a packet larger than MaximumPacketSize was sent"
    assert small.connected


# ---------------------------------------------------------------- topic aliases

def test_topic_alias_client_to_server(server, clients):
    base = unique("tac")
    sub = clients.connected(version=V5, name="sub")
    sub.subscribe(base + "/#", 1)
    pub = clients.new(version=V5, name="pub")
    ack = pub.connect(server.mqtt_port)
    assert getattr(ack.properties, "TopicAliasMaximum", 0) >= 1
    t1, t2 = base + "/first/long/topic", base + "/second/long/topic"
    pub.publish(t1, b"1", qos=1, properties=props(PUB, TopicAlias=1))
    pub.publish("", b"2", qos=1, properties=props(PUB, TopicAlias=1))
    pub.publish(t2, b"3", qos=1, properties=props(PUB, TopicAlias=1))  # re-map alias 1
    pub.publish("", b"4", qos=0, properties=props(PUB, TopicAlias=1))
    pub.publish("", b"5", qos=2, properties=props(PUB, TopicAlias=1))
    got = [(m.topic, m.payload) for m in sub.collect(5)]
    assert got == [(t1, b"1"), (t1, b"2"), (t2, b"3"), (t2, b"4"), (t2, b"5")]
    assert pub.connected


def test_topic_alias_server_to_client(server, clients):
    topic = unique("tas") + "/a/rather/long/topic/name/to/alias"
    r = clients.raw(version=5)
    assert r.connect(unique("tas"), props={"TopicAliasMaximum": 4}).reason_code == 0
    assert r.subscribe([(topic, sub_options(qos=1))]).codes == [1]
    noalias = clients.raw(version=5)  # did not send TopicAliasMaximum
    assert noalias.connect(unique("tas-none")).reason_code == 0
    assert noalias.subscribe([(topic, sub_options(qos=1))]).codes == [1]

    pub = clients.connected(version=V5, name="pub")
    n = 6
    for i in range(n):
        pub.publish(topic, b"a%d" % i, qos=1)

    aliases, got, used_alias_only = {}, [], 0
    for _ in range(n):
        p = r.expect(rawmqtt.PUBLISH)
        r.ack(p)
        alias = p.props.get("TopicAlias")
        if alias is None:
            resolved = p.topic
        else:
            assert 1 <= alias <= 4, "alias %d above our TopicAliasMaximum" % alias
            if p.topic:
                aliases[alias] = p.topic
            else:
                assert alias in aliases, "alias %d used before being defined" % alias
                used_alias_only += 1
            resolved = aliases[alias]
        got.append((resolved, p.payload))
    assert got == [(topic, b"a%d" % i) for i in range(n)]
    assert used_alias_only >= 1, "server never used a topic alias toward the client"

    for i in range(n):
        p = noalias.expect(rawmqtt.PUBLISH)
        noalias.ack(p)
        assert "TopicAlias" not in p.props, "alias sent to a client with TopicAliasMaximum=0"
        assert (p.topic, p.payload) == (topic, b"a%d" % i)


@pytest.mark.parametrize("case", ["alias_zero", "alias_above_maximum", "unknown_alias"])
def test_topic_alias_invalid(server, clients, case):
    r = clients.raw(version=5)
    ack = r.connect(unique("badalias"))
    assert ack.reason_code == 0
    tam = ack.props.get("TopicAliasMaximum", 0)
    if case == "alias_zero":
        data = rawmqtt.publish("a/b", b"x", props={"TopicAlias": 0})
        # MQTT-3.3.2-8 (alias 0 is not permitted): 0x94, or generic malformed/protocol error
        allowed = {rawmqtt.RC_TOPIC_ALIAS_INVALID, rawmqtt.RC_MALFORMED_PACKET,
                   rawmqtt.RC_PROTOCOL_ERROR}
    elif case == "alias_above_maximum":
        data = rawmqtt.publish("a/b", b"x", props={"TopicAlias": tam + 1})
        allowed = {rawmqtt.RC_TOPIC_ALIAS_INVALID}
    else:
        data = rawmqtt.publish("", b"x", props={"TopicAlias": 1})
        allowed = {rawmqtt.RC_PROTOCOL_ERROR, rawmqtt.RC_TOPIC_ALIAS_INVALID}
    r.send(data)
    pkts = r.wait_closed()
    disc = [p for p in pkts if p.type == rawmqtt.DISCONNECT]
    assert disc, "expected a DISCONNECT with a reason code, got %r" % pkts
    assert disc[0].reason_code in allowed, "reason code %#x" % disc[0].reason_code
    server.assert_alive()


# ---------------------------------------------------------------- flow control

@pytest.mark.parametrize("qos", [1, 2])
def test_receive_maximum_flow_control(server, clients, qos):
    """The broker never has more than ReceiveMaximum unacknowledged QoS>0
    PUBLISHes in flight toward a client (MQTT-3.3.4-9), and delivers all of
    them as the client acknowledges."""
    topic = unique("flow")
    n, rmax = 20, 2
    r = clients.raw(version=5)
    assert r.connect(unique("slow"), props={"ReceiveMaximum": rmax}).reason_code == 0
    assert r.subscribe([(topic, sub_options(qos=qos))]).codes == [qos]

    pub = clients.connected(version=V5, name="pub")
    infos = [pub.publish(topic, b"m%02d" % i, qos=qos, wait=False) for i in range(n)]
    for info in infos:
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    inflight = {}      # pid -> PUBLISH not yet completed
    rec_sent = set()   # QoS 2: PUBREC sent, waiting for PUBREL
    done, max_seen = [], 0

    # phase 1: nothing acknowledged -> at most rmax arrive
    while len(inflight) < rmax:
        p = r.expect(rawmqtt.PUBLISH)
        inflight[p.pid] = p
    extra = r.try_recv(0.7)
    assert extra is None, "broker exceeded ReceiveMaximum=%d: %r" % (rmax, extra)

    # phase 2: acknowledge one at a time and keep counting
    deadline = time.monotonic() + 20
    while len(done) < n:
        assert time.monotonic() < deadline, "only %d/%d delivered" % (len(done), n)
        p = r.try_recv(0.1)
        if p is None:
            pending = [pid for pid in inflight if pid not in rec_sent]
            assert pending or rec_sent, "stalled with nothing in flight (%d/%d)" % (len(done), n)
            if pending:
                pid = pending[0]
                if qos == 1:
                    r.send(rawmqtt.puback(pid))
                    done.append(inflight.pop(pid).payload)
                else:
                    r.send(rawmqtt.pubrec(pid))
                    rec_sent.add(pid)
            continue
        if p.type == rawmqtt.PUBLISH:
            assert p.qos == qos
            assert p.pid not in inflight, "packet id %d reused while in flight" % p.pid
            inflight[p.pid] = p
            max_seen = max(max_seen, len(inflight))
            assert len(inflight) <= rmax, "%d unacknowledged PUBLISHes in flight (max %d)" % (
                len(inflight), rmax)
        elif p.type == rawmqtt.PUBREL:
            assert p.pid in rec_sent
            r.send(rawmqtt.pubcomp(p.pid))
            rec_sent.discard(p.pid)
            done.append(inflight.pop(p.pid).payload)
        else:
            raise AssertionError("unexpected %r" % p)
    assert done == [b"m%02d" % i for i in range(n)]
    assert max_seen <= rmax
    assert r.try_recv(0.2) is None


# ---------------------------------------------------------------- malformed input

def _v5_connect(**kw):
    return rawmqtt.connect(unique("bad5"), version=5, **kw)


def _publish_with_raw_props(prop_bytes):
    body = rawmqtt.utf8("a/b") + rawmqtt.varint(len(prop_bytes)) + prop_bytes + b"x"
    return rawmqtt.packet(rawmqtt.PUBLISH, 0, body)


MALFORMED_V5 = {
    "remaining_length_5_bytes": (True, b"\x30\xff\xff\xff\xff\x01"),
    "bad_protocol_name": (False, _v5_connect(protocol_name="MQTX")),
    "connect_reserved_flag": (False, _v5_connect(connect_flags=0x03)),
    "subscribe_reserved_flags": (True, rawmqtt.packet(
        rawmqtt.SUBSCRIBE, 0, rawmqtt.u16(1) + b"\x00" + rawmqtt.utf8("a") + b"\x01")),
    "subscribe_options_reserved_bits": (True, rawmqtt.subscribe(1, [("a/b", 0xC1)])),
    "no_local_on_shared_subscription": (True, rawmqtt.subscribe(
        1, [("$share/g/a", sub_options(qos=1, no_local=True))])),
    "invalid_utf8_topic": (True, rawmqtt.publish(b"a/\xc3\x28", b"x")),
    "publish_qos3": (True, rawmqtt.packet(rawmqtt.PUBLISH, 0x06,
                                          rawmqtt.utf8("a") + rawmqtt.u16(1) + b"\x00x")),
    "wildcard_in_publish_topic": (True, rawmqtt.publish("a/#", b"x")),
    "unknown_property_id": (True, _publish_with_raw_props(b"\x7f\x00")),
    "duplicate_property": (True, _publish_with_raw_props(
        b"\x03" + rawmqtt.utf8("x") + b"\x03" + rawmqtt.utf8("y"))),
    "property_length_overruns_packet": (True, rawmqtt.packet(
        rawmqtt.PUBLISH, 0, rawmqtt.utf8("a/b") + b"\x20\x01")),
    "second_connect": (True, _v5_connect()),
    "reserved_packet_type_0": (True, b"\x00\x00"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_V5))
def test_malformed_packet_disconnects_only_offender(server, clients, case):
    connect_first, data = MALFORMED_V5[case]
    assert_rejected(server, clients, 5, data, connect_first=connect_first)


# ---------------------------------------------------------------- transports

def test_websocket_v5(server, clients):
    topic = unique("ws5")
    ws = clients.connected(version=V5, transport="websockets", name="ws5")
    ws.subscribe(topic, 2, properties=props(SUB, SubscriptionIdentifier=3))
    pub = clients.connected(version=V5, name="pub")
    pub.publish(topic, b"over-ws", qos=2, properties=props(PUB, UserProperty=[("t", "ws")]))
    m = ws.expect(topic=topic)
    assert (m.payload, m.qos) == (b"over-ws", 2)
    assert prop(m, "UserProperty") == [("t", "ws")]
    assert prop(m, "SubscriptionIdentifier") == [3]


def test_tls_v5_with_client_certificate(server, clients):
    cert, key = server.make_device_cert("device-5")
    topic = unique("tls5")
    c = clients.new(version=V5, name="tls5")
    c.tls_set(server.ca_cert, cert, key)
    c.connect(server.mqtts_port)
    c.subscribe(topic, 1)
    pub = clients.connected(version=V5, name="pub")
    m = roundtrip(pub, c, topic)
    assert m.qos == 1
