"""Device authentication and authorization as AWS IoT Core does it: X.509 client certificates on
the mqtts and HTTPS listeners checked against the registry, policies evaluated on every CONNECT,
PUBLISH, SUBSCRIBE and delivery (changes apply to live connections), lifecycle events, device
HTTPS publish, anonymous access on the plain listener, and denials in /metrics and the log.

Devices are registered with boto3 (SigV4, the keys in <data>/credentials) and connect to host
"localhost" verifying the server against the Nimbus root CA. Exact reason codes are checked with
rawmqtt over TLS (paho 1.6.1 does not expose PUBACK reason codes)."""

import http.client
import json
import pathlib
import queue
import re
import ssl
import time

import pytest

import rawmqtt
from conftest import TIMEOUT, V311, V5, unique, wait_until
from iot_helpers import (DISCONNECT_REASONS, RC_NOT_AUTHORIZED, SERVER_CUT_REASONS,
                         V311_SUBACK_FAILURE, allow, arn_prefix, assert_connect_not_authorized,
                         assert_connect_refused, certificate_id, connect_device_paho,
                         connect_device_raw, deny, metric_samples, policy, still_open)

# Settings the server is expected to have (one place, in case they get other names).
ANONYMOUS_POLICY_FLAG = "--anonymous-policy"      # [mqtt] anonymous_policy in TOML
ALLOW_ANONYMOUS_FLAG = "--allow-anonymous"        # [mqtt] allow_anonymous
DENIAL_METRIC = "nimbus_authorization_denials_total"   # counter, label action
DENIAL_LOG_EVENT = "authorization_denied"         # log line with client_id=, action=, resource=

PUBACK_OK = (0x00, 0x10)          # success, or "no matching subscribers"
CUT_WITHIN = 1.0 + 0.5            # certificate leaving ACTIVE: one second, plus scheduling slack
ALLOW_ALL = lambda p: policy(allow("iot:*", "*"))  # noqa: E731


@pytest.fixture
def iot(server):
    return server.boto3_client()


class Device:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "Device(%s)" % self.thing


def register(server, iot, thing, policy_for=ALLOW_ALL, attributes=None, attach_thing=True,
             active=True):
    """CreateKeysAndCertificate (+ policy from `policy_for(arn_prefix)` if not None, attached to
    the certificate) + CreateThing (with attributes) + AttachThingPrincipal."""
    created = iot.create_keys_and_certificate(setAsActive=active)
    server.cert_dir.mkdir(exist_ok=True)
    cert = server.cert_dir / (thing + ".cert.pem")
    key = server.cert_dir / (thing + ".private.key")
    cert.write_text(created["certificatePem"])
    key.write_text(created["keyPair"]["PrivateKey"])
    key.chmod(0o600)
    arn = created["certificateArn"]
    prefix = arn_prefix(arn)
    policy_name = None
    if policy_for is not None:
        policy_name = thing + "-policy"
        iot.create_policy(policyName=policy_name, policyDocument=policy_for(prefix))
        iot.attach_policy(policyName=policy_name, target=arn)
    kw = {"attributePayload": {"attributes": attributes}} if attributes else {}
    iot.create_thing(thingName=thing, **kw)
    if attach_thing:
        iot.attach_thing_principal(thingName=thing, principal=arn)
    return Device(cert=str(cert), key=str(key), arn=arn, cert_id=created["certificateId"],
                  thing=thing, policy_name=policy_name, prefix=prefix)


def drain_until(raw, marker_topic, timeout=TIMEOUT):
    """PUBLISH packets a raw client receives up to the one on `marker_topic` (excluded); QoS 1
    ones are acknowledged."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("marker %r not received (got %r)" % (marker_topic, out))
        p = raw.expect(rawmqtt.PUBLISH, timeout=remaining)
        if p.qos:
            raw.ack(p)
        if p.topic == marker_topic:
            return out
        out.append(p)


def publish_denied(raw, version, topic, payload=b"x", retain=False, keep_open=True):
    """A PUBLISH the policy forbids: MQTT 5 answers PUBACK 0x87 and (`keep_open`) keeps the
    connection; MQTT 3.1.1 closes it (as AWS does)."""
    if version == 5:
        ack = raw.publish(topic, payload, qos=1, retain=retain)
        assert ack.reason_code == RC_NOT_AUTHORIZED, "publish to %r: %r" % (topic, ack)
        if keep_open:
            still_open(raw)
    else:
        raw.send(rawmqtt.publish(topic, payload, qos=1, retain=retain, pid=raw.next_pid(),
                                 version=4))
        pkts = raw.wait_closed(TIMEOUT)
        assert not any(p.type == rawmqtt.PUBACK for p in pkts), \
            "MQTT 3.1.1 publish to %r was acknowledged: %r" % (topic, pkts)
        raw.close()


def publish_allowed(raw, version, topic, payload=b"x", retain=False):
    ack = raw.publish(topic, payload, qos=1, retain=retain)
    if version == 5:
        assert ack.reason_code in PUBACK_OK, "publish to %r: %r" % (topic, ack)


def sub_failure(version):
    return RC_NOT_AUTHORIZED if version == 5 else V311_SUBACK_FAILURE


# ====================================================================== which certificates connect

@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_unregistered_certificate_from_the_nimbus_ca_is_refused(server, iot, version):
    dev = register(server, iot, "Registered-1")
    connect_device_raw(server, dev.cert, dev.key, dev.thing, version).disconnect(wait_closed=True)
    cert, key = server.make_client_cert("never-registered")
    assert_connect_refused(server, cert, key, "never-registered", version,
                           codes={RC_NOT_AUTHORIZED, 0x86} if version == 5 else {4, 5})


def test_foreign_ca_certificate_registered_without_ca_is_accepted(server, iot):
    foreign_ca = server.make_ca("Foreign Device CA")
    cert, key = server.make_client_cert("foreign-dev-1", ca=foreign_ca)
    pem = pathlib.Path(cert).read_text()
    assert_connect_refused(server, cert, key, "foreign-1", 5)      # not registered yet

    reg = iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")
    assert reg["certificateId"] == certificate_id(pem)
    p = arn_prefix(reg["certificateArn"])
    iot.create_policy(policyName="foreign", policyDocument=policy(
        allow("iot:Connect", p + "client/*"),
        allow("iot:Publish", p + "topic/cn/${iot:Certificate.Subject.CommonName}/*"),
        allow(["iot:Subscribe", "iot:Receive"], "*"),
    ))
    iot.attach_policy(policyName="foreign", target=reg["certificateArn"])

    # no thing needed: the policy does not use thing variables
    r = connect_device_raw(server, cert, key, "foreign-1", 5)
    assert r.subscribe([("cn/#", 1)]).codes == [1]
    publish_allowed(r, 5, "cn/foreign-dev-1/temp", b"20")
    msg = r.expect(rawmqtt.PUBLISH)
    assert (msg.topic, msg.payload) == ("cn/foreign-dev-1/temp", b"20")
    r.ack(msg)
    publish_denied(r, 5, "cn/someone-else/temp")
    r.disconnect(wait_closed=True)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_inactive_certificate_is_refused(server, iot, version):
    dev = register(server, iot, "Dormant-1", active=False)
    desc = iot.describe_certificate(certificateId=dev.cert_id)["certificateDescription"]
    assert desc["status"] == "INACTIVE"
    assert_connect_refused(server, dev.cert, dev.key, dev.thing, version)
    iot.update_certificate(certificateId=dev.cert_id, newStatus="ACTIVE")
    connect_device_raw(server, dev.cert, dev.key, dev.thing, version).disconnect(wait_closed=True)
    iot.update_certificate(certificateId=dev.cert_id, newStatus="INACTIVE")
    assert_connect_refused(server, dev.cert, dev.key, dev.thing, version)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_no_policy_means_default_deny(server, iot, version):
    dev = register(server, iot, "Unpoliced-1", policy_for=None)
    assert_connect_not_authorized(server, dev.cert, dev.key, dev.thing, version)
    # a policy that allows everything except iot:Connect does not help
    iot.create_policy(policyName="no-connect", policyDocument=policy(
        allow(["iot:Publish", "iot:Subscribe", "iot:Receive"], "*")))
    iot.attach_policy(policyName="no-connect", target=dev.arn)
    assert_connect_not_authorized(server, dev.cert, dev.key, dev.thing, version)
    iot.create_policy(policyName="connect", policyDocument=policy(
        allow("iot:Connect", dev.prefix + "client/" + dev.thing)))
    iot.attach_policy(policyName="connect", target=dev.arn)
    connect_device_raw(server, dev.cert, dev.key, dev.thing, version).disconnect(wait_closed=True)


# ================================================================= policies on live connections

@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_policy_changes_apply_to_live_connections(server, iot, clients, version):
    def doc(p, extra=()):
        return policy(allow("iot:Connect", p + "client/${iot:ClientId}"),
                      allow(["iot:Publish", "iot:Receive"], p + "topic/live/*"),
                      allow("iot:Subscribe", p + "topicfilter/live/*"), *extra)

    dev = register(server, iot, "Live-1", policy_for=doc)
    anon = clients.connected(version=V5, name="local-publisher")
    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, version)
    assert r.subscribe([("live/data", 0), ("live/marker", 0)]).codes == [0, 0]

    anon.publish("live/data", b"1", qos=1)
    anon.publish("live/marker", b"m1", qos=1)
    assert [(p.topic, p.payload) for p in drain_until(r, "live/marker")] == [("live/data", b"1")]

    # version 2 denies Receive on live/data: the existing subscription stops delivering at once
    v2 = iot.create_policy_version(policyName=dev.policy_name, setAsDefault=True,
                                   policyDocument=doc(dev.prefix, [
                                       deny("iot:Receive", dev.prefix + "topic/live/data")]))
    assert v2["isDefaultVersion"] is True
    anon.publish("live/data", b"2", qos=1)
    anon.publish("live/marker", b"m2", qos=1)
    assert drain_until(r, "live/marker") == [], "delivered although iot:Receive is denied"

    # back to version 1: delivered again
    iot.set_default_policy_version(policyName=dev.policy_name, policyVersionId="1")
    anon.publish("live/data", b"3", qos=1)
    anon.publish("live/marker", b"m3", qos=1)
    assert [(p.topic, p.payload) for p in drain_until(r, "live/marker")] == [("live/data", b"3")]

    # detached: the connection has no policy left, so its next publish is refused (whether the
    # server then also drops the connection is left open)
    iot.detach_policy(policyName=dev.policy_name, target=dev.arn)
    publish_denied(r, version, "live/data", b"4", keep_open=False)
    r.close()


def test_explicit_deny_in_a_second_policy_wins(server, iot):
    dev = register(server, iot, "Denied-1")            # allow-all policy
    iot.create_policy(policyName="no-secrets", policyDocument=policy(
        deny("iot:Publish", dev.prefix + "topic/secret/*"),
        deny("iot:Subscribe", dev.prefix + "topicfilter/secret/*")))
    iot.attach_policy(policyName="no-secrets", target=dev.arn)

    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, 5)
    assert r.subscribe([("open/#", 1), ("secret/#", 1)]).codes == [1, RC_NOT_AUTHORIZED]
    publish_allowed(r, 5, "open/a", b"fine")
    msg = r.expect(rawmqtt.PUBLISH)
    assert msg.topic == "open/a"
    r.ack(msg)
    publish_denied(r, 5, "secret/a")

    iot.detach_policy(policyName="no-secrets", target=dev.arn)
    publish_allowed(r, 5, "secret/a", b"now allowed")
    r.disconnect(wait_closed=True)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_thing_attribute_policy_variable(server, iot, version):
    def doc(p):
        room = "${iot:Connection.Thing.Attributes[room]}"
        return policy(
            allow("iot:Connect", p + "client/${iot:Connection.Thing.ThingName}",
                  {"Bool": {"iot:Connection.Thing.IsAttached": ["true"]}}),
            allow(["iot:Publish", "iot:Receive"], p + "topic/home/" + room + "/*"),
            allow("iot:Subscribe", p + "topicfilter/home/" + room + "/*"))

    dev = register(server, iot, "Thermo-1", policy_for=doc, attributes={"room": "kitchen"})
    # thing variables resolve only when the client id is the attached thing's name
    assert_connect_not_authorized(server, dev.cert, dev.key, "Thermo-1-other", version)

    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, version)
    assert r.subscribe([("home/kitchen/#", 1), ("home/garage/#", 1)]).codes == \
        [1, sub_failure(version)]
    publish_allowed(r, version, "home/kitchen/temp", b"22")
    msg = r.expect(rawmqtt.PUBLISH)
    assert (msg.topic, msg.payload) == ("home/kitchen/temp", b"22")
    r.ack(msg)
    publish_denied(r, version, "home/garage/temp")
    if version == 5:
        r.disconnect(wait_closed=True)

    # the thing moves: after reconnecting its attribute names the other room
    iot.update_thing(thingName=dev.thing,
                     attributePayload={"attributes": {"room": "garage"}, "merge": True})
    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, version)
    assert r.subscribe([("home/garage/#", 1)]).codes == [1]
    publish_allowed(r, version, "home/garage/temp", b"12")
    publish_denied(r, version, "home/kitchen/temp")
    r.close()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_retained_publish_needs_iot_retainpublish(server, iot, clients, version):
    def doc(p, retain=False):
        sts = [allow("iot:Connect", p + "client/*"),
               allow("iot:Publish", p + "topic/state/*"),
               allow(["iot:Subscribe", "iot:Receive"], "*")]
        if retain:
            sts.append(allow("iot:RetainPublish", p + "topic/state/*"))
        return policy(*sts)

    dev = register(server, iot, "Retainer-1", policy_for=doc)
    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, version)
    publish_allowed(r, version, "state/a", b"plain")               # Publish alone: not retained
    publish_denied(r, version, "state/a", b"kept", retain=True)
    late = clients.connected(version=V5, name="late-subscriber")
    assert late.subscribe("state/a", 1) == [1]
    late.expect_none(0.5)                                           # nothing was retained
    late.disconnect()
    r.close()

    iot.create_policy_version(policyName=dev.policy_name, setAsDefault=True,
                              policyDocument=doc(dev.prefix, retain=True))
    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, version)
    publish_allowed(r, version, "state/a", b"kept", retain=True)
    r.disconnect(wait_closed=True)
    late = clients.connected(version=V5, name="later-subscriber")
    assert late.subscribe("state/a", 1) == [1]
    msg = late.expect(topic="state/a")
    assert (msg.payload, bool(msg.retain)) == (b"kept", True)


# ====================================================================== lifecycle events

class Lifecycle:
    """An anonymous local subscriber (plain listener) to one client id's lifecycle events.
    Events may arrive in any order; `wait` returns the first matching one."""

    def __init__(self, clients, client_id):
        self.client_id = client_id
        self.c = clients.connected(version=V5, name="lifecycle-%s" % client_id)
        codes = self.c.subscribe([("$aws/events/presence/+/" + client_id, 1),
                                  ("$aws/events/subscriptions/+/" + client_id, 1)])
        assert codes == [1, 1], codes
        self.pending = []

    def wait(self, kind, where=None, timeout=TIMEOUT):
        """kind: presence/connected, presence/disconnected, subscriptions/subscribed,
        subscriptions/unsubscribed. Returns the event's JSON."""
        topic = "$aws/events/%s/%s" % (kind, self.client_id)
        deadline = time.monotonic() + timeout
        while True:
            for i, (t, ev) in enumerate(self.pending):
                if t == topic and (where is None or where(ev)):
                    return self.pending.pop(i)[1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no %s event within %.1fs (others: %r)" % (
                    topic, timeout, self.pending))
            try:
                msg = self.c.messages.get(timeout=remaining)
            except queue.Empty:
                raise AssertionError("no %s event within %.1fs (others: %r)" % (
                    topic, timeout, self.pending))
            try:
                ev = json.loads(msg.payload)
            except ValueError:
                raise AssertionError("lifecycle event on %s is not JSON: %r" % (msg.topic,
                                                                               msg.payload))
            self.pending.append((msg.topic, ev))


def check_common(ev, event_type, client_id, dev):
    assert ev["eventType"] == event_type, ev
    assert ev["clientId"] == client_id, ev
    assert ev["principalIdentifier"] == dev.cert_id, ev
    ts = ev["timestamp"]
    assert isinstance(ts, int) and not isinstance(ts, bool), ev
    assert abs(ts - time.time() * 1000) < 60_000, "timestamp is not epoch ms: %r" % ev
    assert isinstance(ev["sessionIdentifier"], str) and ev["sessionIdentifier"], ev


def check_connected(ev, client_id, dev):
    check_common(ev, "connected", client_id, dev)
    assert ev["ipAddress"] == "127.0.0.1", ev
    assert isinstance(ev["versionNumber"], int) and ev["versionNumber"] >= 0, ev


def check_disconnected(ev, client_id, dev, session):
    check_common(ev, "disconnected", client_id, dev)
    assert ev["sessionIdentifier"] == session, ev
    assert ev["disconnectReason"] in DISCONNECT_REASONS, ev
    assert isinstance(ev["clientInitiatedDisconnect"], bool), ev
    assert isinstance(ev["versionNumber"], int), ev


def test_lifecycle_connect_subscribe_unsubscribe_disconnect(server, iot, clients):
    dev = register(server, iot, "Lifecycle-1")
    events = Lifecycle(clients, dev.thing)
    device = connect_device_paho(clients, server, dev.cert, dev.key, dev.thing, version=V311)

    connected = events.wait("presence/connected")
    check_connected(connected, dev.thing, dev)
    session = connected["sessionIdentifier"]

    assert device.subscribe([("dev/a", 1), ("dev/b", 0)]) == [1, 0]
    sub = events.wait("subscriptions/subscribed")
    check_common(sub, "subscribed", dev.thing, dev)
    assert sorted(sub["topics"]) == ["dev/a", "dev/b"], sub
    assert sub["sessionIdentifier"] == session, sub

    device.unsubscribe("dev/a")
    unsub = events.wait("subscriptions/unsubscribed")
    check_common(unsub, "unsubscribed", dev.thing, dev)
    assert unsub["topics"] == ["dev/a"], unsub
    assert unsub["sessionIdentifier"] == session, unsub

    device.disconnect()
    gone = events.wait("presence/disconnected")
    check_disconnected(gone, dev.thing, dev, session)
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT", gone
    assert gone["clientInitiatedDisconnect"] is True, gone


def test_lifecycle_connection_lost(server, iot, clients):
    dev = register(server, iot, "Lifecycle-2")
    events = Lifecycle(clients, dev.thing)
    device = connect_device_paho(clients, server, dev.cert, dev.key, dev.thing, version=V5)
    session = events.wait("presence/connected")["sessionIdentifier"]
    device.drop()                                   # socket closed, no DISCONNECT
    gone = events.wait("presence/disconnected")
    check_disconnected(gone, dev.thing, dev, session)
    assert gone["disconnectReason"] == "CONNECTION_LOST", gone


def test_lifecycle_duplicate_client_id(server, iot, clients):
    dev = register(server, iot, "Lifecycle-3")
    events = Lifecycle(clients, dev.thing)
    first = connect_device_paho(clients, server, dev.cert, dev.key, dev.thing, version=V311,
                                name="first")
    s1 = events.wait("presence/connected")["sessionIdentifier"]
    second = connect_device_paho(clients, server, dev.cert, dev.key, dev.thing, version=V311,
                                 name="second")
    first.wait_disconnected()

    gone = events.wait("presence/disconnected", where=lambda e: e["sessionIdentifier"] == s1)
    check_disconnected(gone, dev.thing, dev, s1)
    assert gone["disconnectReason"] == "DUPLICATE_CLIENTID", gone
    assert gone["clientInitiatedDisconnect"] is False, gone
    again = events.wait("presence/connected")
    check_connected(again, dev.thing, dev)
    assert again["sessionIdentifier"] != s1, (again, s1)
    second.disconnect()


def test_lifecycle_revoked_certificate(server, iot, clients):
    dev = register(server, iot, "Lifecycle-4")
    events = Lifecycle(clients, dev.thing)
    device = connect_device_paho(clients, server, dev.cert, dev.key, dev.thing, version=V5)
    session = events.wait("presence/connected")["sessionIdentifier"]

    iot.update_certificate(certificateId=dev.cert_id, newStatus="REVOKED")
    device.wait_disconnected(CUT_WITHIN)
    gone = events.wait("presence/disconnected")
    check_disconnected(gone, dev.thing, dev, session)
    assert gone["disconnectReason"] in SERVER_CUT_REASONS, gone
    assert gone["clientInitiatedDisconnect"] is False, gone


# ====================================================================== device HTTPS publish

def https_request(server, method, path, body=b"", cert=None, key=None, headers=None):
    """One request on the HTTPS listener (host localhost, Nimbus CA), optionally presenting a
    client certificate. Returns (status, headers, body); TLS failures raise ssl.SSLError."""
    ctx = server.tls_context(cert, key)
    ctx.post_handshake_auth = True
    conn = http.client.HTTPSConnection("localhost", server.https_port, context=ctx,
                                       timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def https_publish_refused(server, path, cert=None, key=None):
    """The publish is refused: 401/403 with x-amzn-ErrorType, or the TLS handshake fails."""
    try:
        status, headers, body = https_request(server, "POST", path, b"refused", cert, key)
    except (ssl.SSLError, ConnectionError) as e:
        server.assert_alive()
        return ("tls", repr(e))
    assert status in (401, 403), (status, body)
    assert headers.get("x-amzn-ErrorType"), dict(headers)
    return (status, headers.get("x-amzn-ErrorType"))


def test_https_publish_with_client_certificate(server, iot, clients):
    dev = register(server, iot, "Http-1",
                   policy_for=lambda p: policy(allow("iot:Publish", p + "topic/sensor/data")))
    sub = clients.connected(version=V5, name="local-subscriber")
    assert sub.subscribe("sensor/#", 1) == [1]

    reading = json.dumps({"device_id": dev.thing, "temperature": 24.0}).encode()
    status, headers, body = https_request(server, "POST", "/topics/sensor%2Fdata?qos=1", reading,
                                          dev.cert, dev.key,
                                          {"Content-Type": "application/json"})
    assert status == 200, (status, body)
    msg = sub.expect(topic="sensor/data")
    assert msg.payload == reading
    assert msg.qos == 1

    # a topic its policy does not allow: 403 ForbiddenException, nothing delivered
    status, headers, body = https_request(server, "POST", "/topics/sensor%2Fsecret?qos=1",
                                          b"nope", dev.cert, dev.key)
    assert status == 403, (status, body)
    assert headers.get("x-amzn-ErrorType", "").startswith("ForbiddenException"), dict(headers)
    assert "message" in json.loads(body), body
    # retained needs iot:RetainPublish as over MQTT
    status, headers, body = https_request(server, "POST",
                                          "/topics/sensor%2Fdata?qos=1&retain=true",
                                          b"kept", dev.cert, dev.key)
    assert status == 403, (status, body)
    marker = "sensor/marker-" + unique()
    sub.publish(marker, b"m", qos=1)
    assert [m.topic for m in sub.collect_until(marker)] == [], "a refused publish was delivered"


def test_https_publish_refused_without_valid_credentials(server, iot, clients):
    sub = clients.connected(version=V5, name="local-subscriber")
    assert sub.subscribe("sensor/#", 1) == [1]
    path = "/topics/sensor%2Fdata?qos=1"
    https_publish_refused(server, path)                              # no cert, no SigV4
    cert, key = server.make_client_cert("https-unregistered")
    https_publish_refused(server, path, cert, key)                   # unknown certificate
    dev = register(server, iot, "Http-2")
    iot.update_certificate(certificateId=dev.cert_id, newStatus="INACTIVE")
    https_publish_refused(server, path, dev.cert, dev.key)           # inactive certificate
    # plain HTTP without a signature
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=b"unsigned")
        resp = conn.getresponse()
        assert resp.status in (401, 403), resp.status
        resp.read()
    finally:
        conn.close()
    marker = "sensor/marker-" + unique()
    sub.publish(marker, b"m", qos=1)
    assert [m.topic for m in sub.collect_until(marker)] == [], "a refused publish was delivered"


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_sigv4_iot_data_publish(server, clients, https):
    sub = clients.connected(version=V5, name="local-subscriber")
    assert sub.subscribe("sensor/data", 1) == [1]
    data = server.boto3_client("iot-data", https=https)
    data.publish(topic="sensor/data", qos=1, payload=b'{"via":"sigv4"}')
    msg = sub.expect(topic="sensor/data")
    assert msg.payload == b'{"via":"sigv4"}'


# ====================================================================== anonymous local clients

def test_anonymous_allowed_by_default_on_the_plain_listener(server, clients):
    r = clients.raw(version=5)
    assert r.connect(unique("anon")).reason_code == 0
    assert r.subscribe([("anything/#", 1)]).codes == [1]
    assert r.publish("anything/at/all", b"x", qos=1).reason_code in PUBACK_OK
    assert r.expect(rawmqtt.PUBLISH).topic == "anything/at/all"


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_anonymous_policy_limits_plain_listener_clients(nimbus, clients, version):
    nimbus.start()
    iot = nimbus.boto3_client()
    iot.create_policy(policyName="anonymous-local", policyDocument=policy(
        allow("iot:Connect", "*"),
        allow(["iot:Publish", "iot:Receive"], "arn:aws:iot:*:*:topic/public/*"),
        allow("iot:Subscribe", "arn:aws:iot:*:*:topicfilter/public/*")))
    nimbus.restart(extra_args=[ANONYMOUS_POLICY_FLAG, "anonymous-local"])
    iot = nimbus.boto3_client()

    r = clients.raw(version=version)
    assert r.connect(unique("anon")).reason_code == 0
    assert r.subscribe([("public/#", 1), ("private/#", 1)]).codes == [1, sub_failure(version)]
    publish_allowed(r, version, "public/a", b"hello")
    msg = r.expect(rawmqtt.PUBLISH)
    assert (msg.topic, msg.payload) == ("public/a", b"hello")
    r.ack(msg)

    # certificate clients are not affected by the anonymous policy
    dev = register(nimbus, iot, "Cert-Client-1")
    d = connect_device_raw(nimbus, dev.cert, dev.key, dev.thing, 5)
    assert d.publish("private/a", b"cert", qos=1).reason_code in PUBACK_OK
    d.disconnect(wait_closed=True)

    publish_denied(r, version, "private/a")
    if version == 5:
        # a new default version applies to the connected anonymous client at once
        iot.create_policy_version(policyName="anonymous-local", setAsDefault=True,
                                  policyDocument=policy(allow("iot:*", "*")))
        publish_allowed(r, version, "private/a", b"now")
        r.disconnect(wait_closed=True)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_allow_anonymous_false_refuses_anonymous(nimbus, clients, version):
    nimbus.start([ALLOW_ANONYMOUS_FLAG, "false"])
    r = clients.raw(version=version)
    ack = r.connect(unique("anon"))
    assert ack.reason_code in ((0x86, 0x87) if version == 5 else (4, 5)), ack
    r.wait_closed(TIMEOUT)
    # devices with certificates still connect
    dev = register(nimbus, nimbus.boto3_client(), "Cert-Client-2")
    connect_device_raw(nimbus, dev.cert, dev.key, dev.thing, version).disconnect(wait_closed=True)


# ====================================================================== denials observable

def _denials_by_action(server):
    out = {}
    for labels, value in metric_samples(server, DENIAL_METRIC):
        action = labels.get("action", "").lower()
        action = action[4:] if action.startswith("iot:") else action
        out[action] = out.get(action, 0) + value
    return out


def test_denials_are_counted_and_logged(server, iot):
    def doc(p):
        return policy(allow("iot:Connect", p + "client/${iot:Connection.Thing.ThingName}"),
                      allow(["iot:Publish", "iot:Receive"], p + "topic/mine/*"),
                      allow("iot:Subscribe", p + "topicfilter/mine/*"))

    dev = register(server, iot, "Audited-1", policy_for=doc)
    before = _denials_by_action(server)
    assert_connect_not_authorized(server, dev.cert, dev.key, "Audited-1-impostor", 5)
    r = connect_device_raw(server, dev.cert, dev.key, dev.thing, 5)
    assert r.subscribe([("forbidden/#", 1)]).codes == [RC_NOT_AUTHORIZED]
    publish_denied(r, 5, "forbidden/x")
    r.disconnect(wait_closed=True)

    after = _denials_by_action(server)
    assert after, "no %s samples in /metrics" % DENIAL_METRIC
    for action in ("connect", "subscribe", "publish"):
        assert after.get(action, 0) >= before.get(action, 0) + 1, (action, before, after)

    def logged(client_id, action, resource_tail):
        """A DENIAL_LOG_EVENT line naming the client id, the action and the resource (fields in
        any order, values optionally quoted, the resource possibly a full ARN)."""
        parts = [re.compile(re.escape(DENIAL_LOG_EVENT)),
                 re.compile(r'client_id="?%s"?(?:[\s,}]|$)' % re.escape(client_id)),
                 re.compile(r'action="?(?:iot:)?%s"?(?:[\s,}]|$)' % action, re.IGNORECASE),
                 re.compile(r'resource="?\S*%s"?(?:[\s,}]|$)' % re.escape(resource_tail))]
        text = server.log_path.read_text(errors="replace")
        return any(all(p.search(line) for p in parts) for line in text.splitlines())

    # the resource is the one evaluated: client/<id>, topic/<name>, topicfilter/<filter>
    wait_until(lambda: logged("Audited-1-impostor", "Connect", "client/Audited-1-impostor"),
               what="connect denial in the log")
    wait_until(lambda: logged(dev.thing, "Subscribe", "topicfilter/forbidden/#"),
               what="subscribe denial in the log")
    wait_until(lambda: logged(dev.thing, "Publish", "topic/forbidden/x"),
               what="publish denial in the log")


def test_https_shadow_with_client_certificate(server, iot):
    """iot-data's shadow and retained routes on the HTTPS listener with a device certificate
    instead of SigV4, checked by the device's policies like its MQTT requests."""
    dev = register(server, iot, "Http-Shadow-1", policy_for=lambda p: policy(
        allow(["iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow"],
              [p + "thing/Http-Shadow-1", p + "thing/Http-Shadow-1/*"]),
        deny("iot:GetThingShadow", p + "thing/Http-Shadow-1/secret")))
    update = json.dumps({"state": {"reported": {"temperature": 24.0}}}).encode()
    status, _, body = https_request(server, "POST", "/things/Http-Shadow-1/shadow", update,
                                    dev.cert, dev.key)
    assert status == 200, (status, body)
    assert json.loads(body)["version"] == 1
    status, _, body = https_request(server, "GET", "/things/Http-Shadow-1/shadow?name=cfg",
                                    b"", dev.cert, dev.key)
    assert status == 404, (status, body)  # allowed, and the named shadow does not exist
    assert json.loads(body) == {"code": 404,
                                "message": "No shadow exists with name: 'Http-Shadow-1~cfg'"}
    status, _, body = https_request(server, "POST", "/things/Http-Shadow-1/shadow?name=cfg",
                                    update, dev.cert, dev.key)
    assert status == 200, (status, body)
    status, _, body = https_request(server, "GET", "/things/Http-Shadow-1/shadow", b"",
                                    dev.cert, dev.key)
    assert status == 200, (status, body)
    assert json.loads(body)["state"] == {"reported": {"temperature": 24.0}}

    # another thing's shadow, and what the policy does not grant: 403, nothing changed
    for method, path in [("POST", "/things/Other-Thing/shadow"),
                         ("GET", "/things/Other-Thing/shadow"),
                         ("GET", "/api/things/shadow/ListNamedShadowsForThing/Http-Shadow-1"),
                         ("GET", "/retainedMessage"),
                         # a Deny on a named shadow beats the Allow on its thing
                         ("GET", "/things/Http-Shadow-1/shadow?name=secret")]:
        status, headers, body = https_request(server, method, path,
                                              update if method == "POST" else b"",
                                              dev.cert, dev.key)
        assert status == 403, (method, path, status, body)
        assert headers.get("x-amzn-ErrorType", "").startswith("ForbiddenException"), dict(headers)
    status, _, body = https_request(server, "DELETE", "/things/Http-Shadow-1/shadow", b"",
                                    dev.cert, dev.key)
    assert status == 200, (status, body)
    assert json.loads(body)["version"] == 1
