"""Helpers shared by the AWS IoT device tests (test_aws_cli_seed.py, test_device_auth.py):
policy documents, certificate-authenticated MQTT connections on the mqtts listener (raw and
paho), the outcome of a connection attempt, and /metrics parsing.

Devices connect to host "localhost" (the endpoint DescribeEndpoint returns by default, and the
name in the server certificate) and verify the server against the Nimbus root CA, the analogue
of AWS's AmazonRootCA1.pem in the seed tutorial."""

import hashlib
import json
import re
import ssl

import rawmqtt
from conftest import TIMEOUT, V5, http_get

DEVICE_HOST = "localhost"

# disconnectReason values documented for $aws/events/presence/disconnected/{clientId}
DISCONNECT_REASONS = {
    "AUTH_ERROR", "CLIENT_INITIATED_DISCONNECT", "CLIENT_ERROR", "CONNECTION_LOST",
    "DUPLICATE_CLIENTID", "FORBIDDEN_ACCESS", "MQTT_KEEP_ALIVE_TIMEOUT", "SERVER_ERROR",
    "SERVER_INITIATED_DISCONNECT", "THROTTLED", "WEBSOCKET_TTL_EXPIRATION",
    "CUSTOMAUTH_TTL_EXPIRATION", "API_INITIATED_DISCONNECT",
}
# ... of which these fit a connection the server cuts because its certificate stopped being valid
SERVER_CUT_REASONS = {"AUTH_ERROR", "FORBIDDEN_ACCESS", "SERVER_INITIATED_DISCONNECT",
                      "API_INITIATED_DISCONNECT"}

RC_NOT_AUTHORIZED = 0x87          # MQTT 5 CONNACK / PUBACK / SUBACK
V311_CONNACK_NOT_AUTHORIZED = 5   # MQTT 3.1.1 CONNACK return code
V311_SUBACK_FAILURE = 0x80


# ---------------------------------------------------------------- policies and ARNs

def arn_prefix(arn):
    """"arn:aws:iot:<region>:<account>:" of an ARN the server returned (as a user copies it)."""
    parts = arn.split(":")
    assert len(parts) >= 6 and parts[:3] == ["arn", "aws", "iot"], "not an AWS IoT ARN: %r" % arn
    return ":".join(parts[:5]) + ":"


def statement(effect, actions, resources, condition=None):
    st = {"Effect": effect, "Action": actions, "Resource": resources}
    if condition is not None:
        st["Condition"] = condition
    return st


def allow(actions, resources, condition=None):
    return statement("Allow", actions, resources, condition)


def deny(actions, resources, condition=None):
    return statement("Deny", actions, resources, condition)


def policy(*statements):
    """A policy document (JSON text) from statements."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def certificate_id(pem):
    """AWS IoT certificate id: lowercase hex SHA-256 of the DER encoding."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


# ---------------------------------------------------------------- device connections

def device_context(server, cert, key):
    """Client TLS context: trusts the Nimbus root CA (hostname checked), presents cert/key."""
    return server.tls_context(cert, key)


def raw_tls(server, cert, key, version=5, host=DEVICE_HOST):
    """A rawmqtt.RawClient on the mqtts listener, TLS with the given client certificate
    (not yet CONNECTed). TLS errors propagate (ssl.SSLError is an OSError)."""
    return rawmqtt.RawClient(host, server.mqtts_port, version=version, timeout=TIMEOUT,
                             ssl_context=device_context(server, cert, key),
                             server_hostname=DEVICE_HOST)


class Outcome:
    """What happened to one CONNECT attempt: accepted (CONNACK 0, `client` is the open raw
    client), refused (CONNACK with a failure code in `code`, connection then closed), or closed
    (TLS handshake failure or the connection closed without a CONNACK; `detail` says how)."""

    def __init__(self, kind, code=None, detail=None, client=None, packets=()):
        self.kind = kind
        self.code = code
        self.detail = detail
        self.client = client
        self.packets = list(packets)

    @property
    def accepted(self):
        return self.kind == "accepted"

    def __repr__(self):
        return "Outcome(%s, code=%r, detail=%r, packets=%r)" % (self.kind, self.code, self.detail,
                                                              self.packets)


def connect_outcome(server, cert, key, client_id, version=5, keepalive=60, clean=True,
                    timeout=TIMEOUT):
    """Try to CONNECT with a client certificate; never raises for a refusal. A server that
    neither answers nor closes within `timeout` fails the test."""
    try:
        r = raw_tls(server, cert, key, version)
    except OSError as e:  # handshake refused (TLS 1.2 alert), connection reset...
        return Outcome("closed", detail="TLS handshake: %r" % e)
    try:
        ack = r.connect(client_id, clean=clean, keepalive=keepalive, timeout=timeout)
    except rawmqtt.ConnectionClosed as e:  # TLS 1.3: the alert arrives after the handshake
        r.close()
        return Outcome("closed", detail=str(e))
    except OSError as e:
        r.close()
        return Outcome("closed", detail=repr(e))
    except rawmqtt.NoPacket:
        r.close()
        raise AssertionError("CONNECT of %r: the server neither answered nor closed the "
                             "connection within %.1fs" % (client_id, timeout))
    if ack.reason_code == 0:
        return Outcome("accepted", code=0, client=r)
    try:
        rest = r.wait_closed(timeout)
    finally:
        r.close()
    return Outcome("refused", code=ack.reason_code, packets=rest)


def assert_connect_refused(server, cert, key, client_id, version=5, codes=None):
    """The CONNECT gets no successful CONNACK. With `codes`, a CONNACK (if one is sent) must
    carry one of them; a plain TLS failure / close is also accepted."""
    out = connect_outcome(server, cert, key, client_id, version)
    server.assert_alive()     # a dead server also "refuses" everything
    if out.accepted:
        out.client.close()
        raise AssertionError("CONNECT of %r (MQTT %s) was accepted" % (
            client_id, "5" if version == 5 else "3.1.1"))
    if codes is not None and out.kind == "refused":
        assert out.code in codes, "CONNACK code %#x not in %s" % (out.code,
                                                                 [hex(c) for c in codes])
    return out


def assert_connect_not_authorized(server, cert, key, client_id, version=5):
    """A CONNECT an (active, registered) certificate's policy does not allow: the server must
    answer CONNACK 0x87 (MQTT 5) / return code 5 (MQTT 3.1.1) and close the connection."""
    out = connect_outcome(server, cert, key, client_id, version)
    server.assert_alive()
    if out.accepted:
        out.client.close()
    expected = RC_NOT_AUTHORIZED if version == 5 else V311_CONNACK_NOT_AUTHORIZED
    assert out.kind == "refused" and out.code == expected, \
        "expected CONNACK %#x for %r, got %r" % (expected, client_id, out)
    return out


def connect_device_raw(server, cert, key, client_id, version=5, **kw):
    """A raw client connected with a certificate (asserts CONNACK 0)."""
    out = connect_outcome(server, cert, key, client_id, version, **kw)
    assert out.accepted, "device %r could not connect: %r" % (client_id, out)
    return out.client


def connect_device_paho(clients, server, cert, key, client_id, version=V5, clean_session=True,
                        keepalive=60, name=None):
    """A paho client (conftest.Client) connected over TLS to the mqtts listener as `client_id`
    with the given client certificate, host "localhost", verifying against the Nimbus CA."""
    c = clients.new(client_id, version, clean_session=clean_session, name=name)
    c.tls_set(server.ca_cert, cert, key)
    c.connect(server.mqtts_port, host=DEVICE_HOST, keepalive=keepalive)
    return c


def still_open(raw, timeout=TIMEOUT):
    """PINGREQ / PINGRESP on a raw client: proves the server did not close it."""
    try:
        raw.ping(timeout)
    except (rawmqtt.ConnectionClosed, rawmqtt.NoPacket, OSError) as e:
        raise AssertionError("the connection is no longer usable: %r" % e)


# ---------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)\s*$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_samples(server, name):
    """[(labels dict, value)] of metric `name` in GET /metrics (Prometheus text format)."""
    status, _headers, body = http_get(server.http_url + "/metrics")
    assert status == 200, "GET /metrics: %s" % status
    out = []
    for line in body.decode("utf-8", "replace").splitlines():
        m = _SAMPLE.match(line.strip())
        if m and m.group(1) == name:
            labels = dict(_LABEL.findall(m.group(3) or ""))
            out.append((labels, float(m.group(4))))
    return out
