"""End-to-end tests of rule actions (issue 11): what a topic rule does beyond republish, driving
the real `nimbus` binary with real clients:

- http: a local HTTP server (ThreadingHTTPServer on 127.0.0.1:0 in a thread, recording each
  request) receives the SELECT output as a POST to a templated url, with a templated header,
  Content-Type application/json and User-Agent nimbus-rules; retries by status (500: three
  attempts then the errorAction, 404: one, 503 then 200 and 429 then 204: two, no error).
- errorAction: AWS's failure document (ruleName, topic, cloudwatchTraceId, clientId,
  base64OriginalPayload, failures) republished once per message once every action finished:
  a target nothing listens on, and a message failing an http and an s3 action at once.
- HTTPS: a target whose certificate comes from a CA made here with the openssl CLI, trusted by
  the server through SSL_CERT_FILE (SNI "localhost" seen by the target); a target whose CA is
  not trusted fails with a certificate error.
- s3: objects written to <data-dir>/objects/<bucket>/<key> (key templated), no temporary file
  left behind, an existing object replaced; keys with a "." or ".." segment (MQTT topics may
  have such levels) fail the action without writing anything; S3's bucket naming rules.
- The seed tutorial's section 6 pipeline (../shared/seed/: log_handler, alert_handler over
  35 °C, cloud_handler) as three rules made with `aws iot create-topic-rule`: an s3 log, an
  MQTT + HTTP alert, an HTTP forward standing in for the cloud and a kinesis action to Nimbus's
  Pub/Sub topic `sensor-data` (project `nimbus`), read back with a REST pull.
- Basic Ingest: $aws/rules/<rule>/<topic> reaches that rule only (topic() without the prefix),
  never a subscriber (not even one on $aws/#); SUBSCRIBE to $aws/rules/... refused (MQTT 5
  0x8F, 3.1.1 0x80); a missing rule, a disabled rule and a FROM filter that does not match
  republish nothing.
- Shapes: kinesis, timestream and an http action with sigv4 auth round-tripped by
  GetTopicRule; timestream and signed http counted not_executable, kinesis to a missing topic a
  failure; bad shapes, non-loopback http and other schemes,
  too many headers refused with InvalidRequestException.
- rules.max_pending_actions (TOML config file): with a target holding its requests, the runs
  past the bound are dropped (outcome "dropped", errorAction "The rule's action queue is
  full"), the held ones succeed once released.

Negative checks use markers (see test_rules.py): republish runs on the publisher's thread, so
once a QoS 1 publish is acknowledged whatever it republished is queued ahead of a marker
published next. Asynchronous outcomes (http, s3) are awaited through the metrics
(nimbus_rule_action_total) and the target's request queue, never with sleeps.

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_rule_actions.py
"""

import base64
import http.server
import json
import logging
import os
import queue
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import TIMEOUT, V311, V5, unique, wait_until
from iot_helpers import metric_samples
from test_pubsub_rest import PubSub, ok, received
from test_rules import (ROLE, alert_watcher, assert_alert, assert_quiet, cli,  # noqa: F401
                        iot_client, mosquitto_pub, reading, republish, rule_error, rule_payload)

READINGS_SQL = "SELECT temperature, topic(2) AS device FROM 'sensor/+/data'"
ERRORS = "errors/rules"            # where the errorActions here republish
ERROR_DOC_KEYS = {"ruleName", "topic", "cloudwatchTraceId", "clientId", "base64OriginalPayload",
                  "failures"}
QUEUE_FULL = "The rule's action queue is full"
OBJECT_NAME = re.compile(r"^[0-9]+\.json$")     # "${timestamp()}.json"
HOLD_LIMIT = 30.0                  # a held request is answered after this at the latest
log = logging.getLogger("http_target")


# ====================================================================== helpers

def http_action(url, headers=None, **extra):
    fields = {"url": url}
    if headers is not None:
        fields["headers"] = headers
    fields.update(extra)
    return {"http": fields}


def s3_action(bucket, key):
    return {"s3": {"roleArn": ROLE, "bucketName": bucket, "key": key}}


def kinesis_action(stream="sensor-data"):
    return {"kinesis": {"roleArn": ROLE, "streamName": stream, "partitionKey": "${topic(2)}"}}


def timestream_action(**overrides):
    fields = {"roleArn": ROLE, "databaseName": "iot", "tableName": "readings",
              "dimensions": [{"name": "device", "value": "${topic(2)}"}],
              "timestamp": {"value": "${timestamp()}", "unit": "MILLISECONDS"}}
    fields.update(overrides)
    return {"timestream": {k: v for k, v in fields.items() if v is not None}}


def dead_url(path="/nowhere"):
    """An http url on a loopback port nothing listens on (bound once, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return "http://127.0.0.1:%d%s" % (port, path)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def action_total(server, rule, action, outcome):
    """nimbus_rule_action_total{rule, action, outcome} (0 when the sample is absent)."""
    return sum(v for labels, v in metric_samples(server, "nimbus_rule_action_total")
               if labels.get("rule") == rule and labels.get("action") == action
               and labels.get("outcome") == outcome)


def wait_action_total(server, rule, action, outcome, expected, timeout=TIMEOUT):
    """Wait until the counter reaches `expected`, then assert it did not pass it."""
    seen = []

    def reached():
        seen.append(action_total(server, rule, action, outcome))
        return seen[-1] >= expected

    what = 'nimbus_rule_action_total{rule="%s",action="%s",outcome="%s"}' % (rule, action,
                                                                             outcome)
    try:
        wait_until(reached, timeout=timeout, what=what)
    except AssertionError:
        raise AssertionError("%s is %r after %.1fs, expected %r" % (what, seen[-1], timeout,
                                                                     expected))
    assert seen[-1] == expected, "%s is %r, expected %r" % (what, seen[-1], expected)


def rule_metric(server, family, rule):
    """nimbus_rule_messages_matched_total{rule} and the like (0 when absent)."""
    return sum(v for labels, v in metric_samples(server, family) if labels.get("rule") == rule)


def subscriber(clients, *filters, name="watcher"):
    """A paho MQTT 5 client subscribed (QoS 1) to `filters`."""
    sub = clients.connected(version=V5, name=name)
    assert sub.subscribe([(f, 1) for f in filters]) == [1] * len(filters)
    return sub


def sensor(clients, name="sensor"):
    """The publishing device: MQTT 5, a client id of its own (the errorAction's clientId)."""
    return clients.connected(client_id=unique("pi"), version=V5, name=name)


def expect_error_doc(sub, topic=ERRORS):
    """The next message on `sub`: an errorAction document on `topic`."""
    msg = sub.expect(topic=topic)
    doc = json.loads(msg.payload)
    assert set(doc) == ERROR_DOC_KEYS, doc
    assert isinstance(doc["cloudwatchTraceId"], str) and doc["cloudwatchTraceId"], doc
    return doc


def assert_error_doc(doc, rule, topic, client_id, payload):
    assert doc["ruleName"] == rule, doc
    assert doc["topic"] == topic, doc
    assert doc["clientId"] == client_id, doc
    assert doc["base64OriginalPayload"] == b64(payload), doc
    assert isinstance(doc["failures"], list) and doc["failures"], doc
    for f in doc["failures"]:
        assert set(f) == {"failedAction", "failedResource", "errorMessage"}, doc
        assert isinstance(f["errorMessage"], str) and f["errorMessage"], doc


def single_failure(doc, failed_action, resource):
    """The document's one failure is `failed_action` on `resource`: its errorMessage."""
    assert len(doc["failures"]) == 1, doc
    f = doc["failures"][0]
    assert (f["failedAction"], f["failedResource"]) == (failed_action, resource), doc
    return f["errorMessage"]


def media_type(request):
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def entries(folder):
    """Names in `folder` (temporary files included), sorted; [] when it does not exist."""
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


def wait_for_objects(folder, count):
    """Wait until `folder` holds `count` objects named <digits>.json; assert nothing else is
    there (no temporary file left behind). Returns their paths."""
    wait_until(lambda: len([n for n in entries(folder) if OBJECT_NAME.match(n)]) >= count,
               what="%d object(s) in %s (has %r)" % (count, folder, entries(folder)))
    names = entries(folder)
    objects = [n for n in names if OBJECT_NAME.match(n)]
    assert len(objects) == count, names
    assert names == objects, "not only objects in %s: %r" % (folder, names)
    return [folder / n for n in objects]


def files_under(folder):
    """Every file below `folder`, as paths relative to it."""
    out = set()
    for root, _dirs, files in os.walk(folder):
        for f in files:
            out.add(os.path.relpath(os.path.join(root, f), folder))
    return out


def assert_near_now_ms(value):
    assert isinstance(value, int) and abs(value - time.time() * 1000) < 600_000, \
        "%r is not epoch milliseconds of now" % (value,)


# ====================================================================== the HTTP(S) target

class Request:
    """One request the target received."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers          # lower-case names
        self.body = body
        self.arrived = time.monotonic()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Request(%s %s %r %r)" % (self.method, self.path, self.headers, self.body[:200])


def _read_body(handler):
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass                                    # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()                        # the CRLF after the chunk
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


class HttpTarget:
    """An HTTP (or, with `tls`, HTTPS) server on 127.0.0.1:<free port>, in threads. Records
    every request in `requests` (a queue) when it arrives, then answers the status set for its
    path with respond() (a sequence: each request takes the next, the last one repeats;
    200 by default). hold() makes requests wait, after being recorded, until release().
    HTTP/1.0: one request per connection."""

    def __init__(self, tls=None):
        self.requests = queue.Queue()
        self.tls_failures = queue.Queue()     # handshakes that failed (repr of the error)
        self.server_names = []                # SNI of each TLS handshake (None: no SNI)
        self._statuses = {}
        self._lock = threading.Lock()
        self._gate = None
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"
            timeout = 30

            def do_POST(self):
                target._serve(self)

            do_GET = do_PUT = do_POST

            def log_message(self, fmt, *args):
                log.debug(fmt, *args)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def finish_request(self, request, client_address):
                if tls is None:
                    return super().finish_request(request, client_address)
                request.settimeout(30)
                try:
                    conn = tls.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    target.tls_failures.put(repr(e))
                    return
                try:
                    self.RequestHandlerClass(conn, client_address, self)
                finally:
                    conn.close()

            def handle_error(self, request, client_address):
                log.debug("request from %s failed", client_address, exc_info=True)

        if tls is not None:
            tls.sni_callback = self._sni
        self.tls = tls
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, name="http-target-%d" % self.port, daemon=True)
        self.thread.start()

    def url(self, path, host=None):
        scheme = "https" if self.tls is not None else "http"
        return "%s://%s:%d%s" % (scheme, host or "127.0.0.1", self.port, path)

    def _sni(self, _ssl_object, server_name, _context):
        self.server_names.append(server_name)

    def respond(self, path, *statuses):
        with self._lock:
            self._statuses[path] = list(statuses)

    def _status_for(self, path):
        with self._lock:
            seq = self._statuses.get(path)
            if not seq:
                return 200
            return seq.pop(0) if len(seq) > 1 else seq[0]

    def hold(self):
        self._gate = threading.Event()

    def release(self):
        if self._gate is not None:
            self._gate.set()

    def _serve(self, handler):
        body = _read_body(handler)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.requests.put(Request(handler.command, handler.path, headers, body))
        gate = self._gate
        if gate is not None:
            gate.wait(HOLD_LIMIT)
        status = self._status_for(handler.path.split("?", 1)[0])
        reply = b"" if status in (204, 304) else b'{"ok":true}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        if reply:
            handler.wfile.write(reply)

    # ---- what arrived
    def expect(self, timeout=TIMEOUT):
        try:
            return self.requests.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("target :%d: no request within %.1fs" % (self.port, timeout))

    def collect(self, n, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            try:
                out.append(self.requests.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                raise AssertionError("target :%d: got %d/%d requests within %.1fs: %r" % (
                    self.port, len(out), n, timeout, out))
        return out

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.requests.get_nowait())
            except queue.Empty:
                return out

    def assert_no_more(self):
        extra = self.drain()
        assert not extra, "target :%d: unexpected request(s) %r" % (self.port, extra)

    def close(self):
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def targets():
    """Factory of HttpTargets, all stopped when the test ends."""
    made = []

    def make(tls=None):
        t = HttpTarget(tls)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


# ---------------------------------------------------------------- TLS material (openssl CLI)

CA_CONFIG = """[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext

[dn]
CN = %s

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXTENSIONS = """basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args):
    res = subprocess.run(["openssl"] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert res.returncode == 0, "openssl %s failed:\n%s" % (
        " ".join(map(str, args)), res.stdout.decode(errors="replace"))


def make_ca(folder, name):
    """A throw-away CA: (certificate, key) paths."""
    cnf = folder / (name + "-ca.cnf")
    cnf.write_text(CA_CONFIG % ("Nimbus rules test CA " + name))
    crt, key = folder / (name + "-ca.pem"), folder / (name + "-ca.key")
    openssl("req", "-x509", "-config", cnf, "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days", "2",
            "-sha256")
    return crt, key


def make_server_cert(folder, ca, name):
    """A server certificate for 127.0.0.1 and localhost signed by `ca`: (cert, key) paths."""
    ca_crt, ca_key = ca
    key, csr = folder / (name + ".key"), folder / (name + ".csr")
    crt, ext = folder / (name + ".pem"), folder / (name + ".ext")
    ext.write_text(SERVER_EXTENSIONS)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
            "-set_serial", "0x" + uuid.uuid4().hex[:16], "-days", "2", "-sha256",
            "-extfile", ext, "-out", crt)
    return crt, key


def tls_server_context(crt, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


# ====================================================================== http

def test_http_action_posts_select_output(server, targets):
    target = targets()
    url = target.url("/readings/${topic(2)}")
    iot_client(server).create_topic_rule(ruleName="to_http", topicRulePayload=rule_payload(
        READINGS_SQL, [http_action(url, headers=[{"key": "x-device", "value": "${topic(2)}"}])]))

    mosquitto_pub(server, "sensor/pi-001/data", reading(21.5))

    req = target.expect()
    assert (req.method, req.path) == ("POST", "/readings/pi-001"), req
    assert req.json() == {"temperature": 21.5, "device": "pi-001"}, req
    assert req.headers.get("x-device") == "pi-001", req
    assert media_type(req) == "application/json", req
    assert req.headers.get("user-agent", "").startswith("nimbus-rules"), req
    wait_action_total(server, "to_http", "http", "success", 1)
    target.assert_no_more()
    assert action_total(server, "to_http", "http", "failure") == 0


def test_error_action_when_http_target_is_down(server, clients):
    url = dead_url("/ingest")
    iot_client(server).create_topic_rule(ruleName="to_nowhere", topicRulePayload=rule_payload(
        READINGS_SQL, [republish("copies/${topic(2)}"), http_action(url)],
        errorAction=republish(ERRORS)))
    watcher = subscriber(clients, "errors/#", "copies/#")
    pub = sensor(clients)
    payload = json.dumps({"temperature": 36.5, "unit": "°C"}, ensure_ascii=False).encode()

    pub.publish("sensor/pi-001/data", payload, qos=1)

    # the republish succeeded (inline); the http action failed after its retries: one document
    # listing only the failed action
    assert json.loads(watcher.expect(topic="copies/pi-001").payload) == {
        "temperature": 36.5, "device": "pi-001"}
    doc = expect_error_doc(watcher)
    assert_error_doc(doc, "to_nowhere", "sensor/pi-001/data", pub.client_id, payload)
    single_failure(doc, "HttpAction", url)
    wait_action_total(server, "to_nowhere", "http", "failure", 1)
    wait_action_total(server, "to_nowhere", "errorAction.republish", "success", 1)
    assert action_total(server, "to_nowhere", "republish", "success") == 1
    assert_quiet(watcher, pub, marker_prefix="errors")
    wait_until(lambda: rule_metric(server, "nimbus_rule_errors_total", "to_nowhere") == 1,
               what='nimbus_rule_errors_total{rule="to_nowhere"} == 1')


@pytest.mark.parametrize("statuses,attempts,fails", [
    ((500,), 3, True),
    ((404,), 1, True),
    ((503, 200), 2, False),
    ((429, 204), 2, False),
], ids=["500-always", "404", "503-then-200", "429-then-204"])
def test_http_retries_by_status(server, clients, targets, statuses, attempts, fails):
    target = targets()
    target.respond("/hook", *statuses)
    url = target.url("/hook")
    iot_client(server).create_topic_rule(ruleName="hook", topicRulePayload=rule_payload(
        READINGS_SQL, [http_action(url)], errorAction=republish(ERRORS)))
    errors = subscriber(clients, "errors/#", name="errors")
    pub = sensor(clients)
    payload = reading(30).encode()

    pub.publish("sensor/pi-001/data", payload, qos=1)

    if fails:
        doc = expect_error_doc(errors)
        assert_error_doc(doc, "hook", "sensor/pi-001/data", pub.client_id, payload)
        message = single_failure(doc, "HttpAction", url)
        assert str(statuses[-1]) in message, message
        wait_action_total(server, "hook", "http", "failure", 1)
        wait_action_total(server, "hook", "errorAction.republish", "success", 1)
    else:
        wait_action_total(server, "hook", "http", "success", 1)
    # every attempt was recorded before its answer, so before the outcome was known
    got = target.drain()
    assert [(r.method, r.path) for r in got] == [("POST", "/hook")] * attempts, got
    assert all(r.json() == {"temperature": 30, "device": "pi-001"} for r in got), got
    assert_quiet(errors, pub, marker_prefix="errors")
    assert action_total(server, "hook", "http", "success" if fails else "failure") == 0
    if not fails:
        assert action_total(server, "hook", "errorAction.republish", "success") == 0


def test_error_action_once_per_message_with_every_failure(server, clients):
    """An http and an s3 action failing for one message (a topic level ".." makes the s3 key
    invalid): one document listing both, after the slower one (http, retried) finished."""
    url = dead_url("/both")
    iot_client(server).create_topic_rule(ruleName="two_fail", topicRulePayload=rule_payload(
        READINGS_SQL, [http_action(url), s3_action("readings", "${topic(2)}/${timestamp()}.json"),
                       republish("copies/${topic(2)}")],
        errorAction=republish(ERRORS)))
    watcher = subscriber(clients, "errors/#", "copies/#")
    pub = sensor(clients)
    payload = reading(31).encode()

    pub.publish("sensor/../data", payload, qos=1)

    assert json.loads(watcher.expect(topic="copies/..").payload) == {"temperature": 31,
                                                                     "device": ".."}
    doc = expect_error_doc(watcher)
    assert_error_doc(doc, "two_fail", "sensor/../data", pub.client_id, payload)
    failed = sorted((f["failedAction"], f["failedResource"]) for f in doc["failures"])
    assert failed == [("HttpAction", url), ("S3Action", "readings")], doc
    wait_action_total(server, "two_fail", "errorAction.republish", "success", 1)
    assert_quiet(watcher, pub, marker_prefix="errors")
    assert action_total(server, "two_fail", "http", "failure") == 1
    assert action_total(server, "two_fail", "s3", "failure") == 1


# ====================================================================== https

def test_https_target_verified_against_ssl_cert_file(nimbus, clients, targets, tmp_path,
                                                     monkeypatch):
    pki = tmp_path / "pki"
    pki.mkdir()
    trusted_ca = make_ca(pki, "trusted")
    good = targets(tls=tls_server_context(*make_server_cert(pki, trusted_ca, "good")))
    rogue = targets(tls=tls_server_context(*make_server_cert(pki, make_ca(pki, "rogue"),
                                                             "rogue")))
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted_ca[0]))
    server = nimbus.start()

    good_url = good.url("/x", host="localhost")
    rogue_url = rogue.url("/y", host="localhost")
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="to_https", topicRulePayload=rule_payload(
        READINGS_SQL, [http_action(good_url)], errorAction=republish(ERRORS)))
    iot.create_topic_rule(ruleName="to_rogue", topicRulePayload=rule_payload(
        "SELECT temperature, topic(2) AS device FROM 'rogue/+/data'", [http_action(rogue_url)],
        errorAction=republish(ERRORS)))
    errors = subscriber(clients, "errors/#", name="errors")
    pub = sensor(clients)

    # trusted: the POST arrives, with SNI
    pub.publish("sensor/pi-001/data", reading(22), qos=1)
    req = good.expect()
    assert (req.method, req.path) == ("POST", "/x"), req
    assert req.json() == {"temperature": 22, "device": "pi-001"}, req
    wait_action_total(server, "to_https", "http", "success", 1)
    assert set(good.server_names) == {"localhost"}, good.server_names
    good.assert_no_more()

    # another CA: no request gets through, the errorAction says why
    payload = reading(23).encode()
    pub.publish("rogue/pi-002/data", payload, qos=1)
    doc = expect_error_doc(errors)
    assert_error_doc(doc, "to_rogue", "rogue/pi-002/data", pub.client_id, payload)
    message = single_failure(doc, "HttpAction", rogue_url)
    assert re.search(r"certif|verif", message, re.IGNORECASE), message
    rogue.assert_no_more()
    wait_until(lambda: not rogue.tls_failures.empty(), what="a failed handshake at the rogue")
    wait_action_total(server, "to_rogue", "http", "failure", 1)
    assert_quiet(errors, pub, marker_prefix="errors")      # none for the trusted target
    assert action_total(server, "to_https", "http", "failure") == 0


# ====================================================================== s3

def test_s3_action_writes_objects(server, clients):
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="to_s3", topicRulePayload=rule_payload(
        READINGS_SQL, [s3_action("readings", "${topic(2)}/${timestamp()}.json")]))
    iot.create_topic_rule(ruleName="latest", topicRulePayload=rule_payload(
        READINGS_SQL, [s3_action("readings", "latest/${topic(2)}.json")]))
    pub = sensor(clients)
    bucket = server.data_dir / "objects" / "readings"

    pub.publish("sensor/pi-001/data", reading(24.5), qos=1)
    [first] = wait_for_objects(bucket / "pi-001", 1)
    assert json.loads(first.read_bytes()) == {"temperature": 24.5, "device": "pi-001"}
    assert_near_now_ms(int(first.stem))
    wait_action_total(server, "to_s3", "s3", "success", 1)
    wait_action_total(server, "latest", "s3", "success", 1)
    assert entries(bucket / "latest") == ["pi-001.json"]
    assert json.loads((bucket / "latest" / "pi-001.json").read_bytes()) == {
        "temperature": 24.5, "device": "pi-001"}

    # a second reading: a second object, and the fixed key replaced
    pub.publish("sensor/pi-001/data", reading(26), qos=1)
    objects = wait_for_objects(bucket / "pi-001", 2)
    assert [json.loads(p.read_bytes()) for p in sorted(objects, key=lambda p: int(p.stem))] == [
        {"temperature": 24.5, "device": "pi-001"}, {"temperature": 26, "device": "pi-001"}]
    wait_action_total(server, "latest", "s3", "success", 2)
    assert entries(bucket / "latest") == ["pi-001.json"]
    assert json.loads((bucket / "latest" / "pi-001.json").read_bytes()) == {
        "temperature": 26, "device": "pi-001"}
    assert sorted(entries(bucket)) == ["latest", "pi-001"]
    assert entries(server.data_dir / "objects") == ["readings"]
    wait_action_total(server, "to_s3", "s3", "success", 2)
    assert action_total(server, "to_s3", "s3", "failure") == 0


def test_s3_key_with_dot_segments_fails_inside_the_bucket(server, clients):
    """sensor/../data matches sensor/+/data with topic(2) == "..": the key "../<ms>.json" would
    leave the bucket; "." is refused as well. Nothing is written anywhere."""
    iot_client(server).create_topic_rule(ruleName="to_s3", topicRulePayload=rule_payload(
        READINGS_SQL, [s3_action("readings", "${topic(2)}/${timestamp()}.json")],
        errorAction=republish(ERRORS)))
    errors = subscriber(clients, "errors/#", name="errors")
    pub = sensor(clients)
    top_level = set(os.listdir(server.data_dir))

    for topic in ("sensor/../data", "sensor/./data"):
        payload = reading(25).encode()
        pub.publish(topic, payload, qos=1)
        doc = expect_error_doc(errors)
        assert_error_doc(doc, "to_s3", topic, pub.client_id, payload)
        single_failure(doc, "S3Action", "readings")
    wait_action_total(server, "to_s3", "s3", "failure", 2)
    assert_quiet(errors, pub, marker_prefix="errors")
    assert action_total(server, "to_s3", "s3", "success") == 0
    assert files_under(server.data_dir / "objects") == set()
    assert not [n for n in set(os.listdir(server.data_dir)) - top_level if n.endswith(".json")], \
        os.listdir(server.data_dir)


def test_s3_bucket_names(server):
    iot = iot_client(server)
    loose = iot_client(server, validate=False)
    rule_error(iot, "InvalidRequestException", 400, iot.create_topic_rule, ruleName="bad_bucket",
               topicRulePayload=rule_payload(READINGS_SQL, [s3_action("Bad_Bucket", "k.json")]))
    for bucket in ("ab", "x" * 64, "-leading", "trailing.", "has space", "UPPER"):
        rule_error(loose, "InvalidRequestException", 400, loose.create_topic_rule,
                   ruleName="bad_bucket", topicRulePayload=rule_payload(
                       READINGS_SQL, [s3_action(bucket, "k.json")]))
    # bucketName and key are required
    for fields in ({"roleArn": ROLE, "key": "k.json"}, {"roleArn": ROLE, "bucketName": "logs"}):
        rule_error(loose, "InvalidRequestException", 400, loose.create_topic_rule,
                   ruleName="bad_bucket", topicRulePayload=rule_payload(READINGS_SQL,
                                                                        [{"s3": fields}]))
    # S3's rules allow these
    for i, bucket in enumerate(("abc", "my-bucket.2024", "0" * 63)):
        iot.create_topic_rule(ruleName="good_bucket_%d" % i, topicRulePayload=rule_payload(
            READINGS_SQL, [s3_action(bucket, "${topic(2)}.json")]))
    assert sorted(r["ruleName"] for r in iot.list_topic_rules()["rules"]) == [
        "good_bucket_0", "good_bucket_1", "good_bucket_2"]


# ====================================================================== the seed's pipeline

PIPELINE_DEVICE = "RaspberryPi-001"
FORWARD_SQL = ("SELECT device_id, {'temperature': temperature, 'humidity': humidity} AS data, "
               "timestamp() AS ts FROM 'sensor/+/data'")


def test_seed_pipeline_as_rules(cli, server, clients, targets, tmp_path):  # noqa: F811
    """Section 6's IoTPipeline handlers on sensor/+/data, as rules: log_handler (every reading
    to an s3 bucket), alert_handler (over 35 °C: MQTT alerts/<device> and an HTTP hook), and
    cloud_handler ({device_id, data, timestamp} to the cloud: an HTTP endpoint, plus a kinesis
    stream, which is Nimbus's Pub/Sub topic `sensor-data` of its default project, read back with
    a Pub/Sub pull, each reading with its device as the ordering key)."""
    cloud = targets()
    stream = PubSub(server, project="nimbus")
    ok(stream.create_topic("sensor-data"))
    ok(stream.create_subscription("sensor-data-cloud", "sensor-data"))
    rules = {
        "pipeline_log": {
            "sql": "SELECT * FROM 'sensor/+/data'",
            "actions": [s3_action("logs", "${topic(2)}/${timestamp()}.json")]},
        "pipeline_alert": {
            "sql": "SELECT temperature, topic(2) AS device_id FROM 'sensor/+/data' "
                   "WHERE temperature > 35",
            "actions": [republish("alerts/${topic(2)}"), http_action(cloud.url("/alerts"))]},
        "pipeline_forward": {
            "sql": FORWARD_SQL,
            "actions": [http_action(cloud.url("/cloud")), kinesis_action("sensor-data")]},
    }
    for name, payload in rules.items():
        payload["awsIotSqlVersion"] = "2016-03-23"
        (tmp_path / (name + ".json")).write_text(json.dumps(payload))
        assert cli.ok("iot", "create-topic-rule", "--rule-name", name,
                      "--topic-rule-payload", "file://%s.json" % name, cwd=tmp_path) is None
    sub, pub = alert_watcher(clients)

    readings = [{"device_id": PIPELINE_DEVICE, "temperature": t, "humidity": 60 + i}
                for i, t in enumerate((25, 36, 30))]
    for r in readings:        # one mosquitto_pub run each: the log keys' timestamps differ
        mosquitto_pub(server, "sensor/%s/data" % PIPELINE_DEVICE, json.dumps(r))

    # alert_handler: the hot reading only, on MQTT ...
    alert = {"temperature": 36, "device_id": PIPELINE_DEVICE}
    assert_alert(sub, "alerts/" + PIPELINE_DEVICE, alert)
    assert_quiet(sub, pub)
    # ... and on the HTTP hook; cloud_handler: every reading forwarded
    wait_action_total(server, "pipeline_alert", "http", "success", 1)
    wait_action_total(server, "pipeline_forward", "http", "success", 3)
    got = cloud.drain()
    assert [r.json() for r in got if r.path == "/alerts"] == [alert], got
    forwarded = sorted((r.json() for r in got if r.path == "/cloud"),
                       key=lambda d: d["data"]["temperature"])
    assert len(forwarded) == 3 and len(got) == 4, got
    for doc, r in zip(forwarded, sorted(readings, key=lambda r: r["temperature"])):
        assert set(doc) == {"device_id", "data", "ts"}, doc
        assert doc["device_id"] == PIPELINE_DEVICE, doc
        assert doc["data"] == {"temperature": r["temperature"], "humidity": r["humidity"]}, doc
        assert_near_now_ms(doc["ts"])
    assert all(r.method == "POST" and media_type(r) == "application/json" for r in got), got

    # log_handler: one object per reading
    logged = wait_for_objects(server.data_dir / "objects" / "logs" / PIPELINE_DEVICE, 3)
    assert sorted((json.loads(p.read_bytes()) for p in logged), key=lambda d: d["temperature"]) \
        == sorted(readings, key=lambda d: d["temperature"])
    wait_action_total(server, "pipeline_log", "s3", "success", 3)

    # the cloud stream: the Pub/Sub topic, one message per reading
    wait_action_total(server, "pipeline_forward", "kinesis", "success", 3)
    streamed = []
    deadline = time.monotonic() + TIMEOUT
    while len(streamed) < 3 and time.monotonic() < deadline:
        streamed += received(ok(stream.pull("sensor-data-cloud", return_immediately=False)))
    assert len(streamed) == 3, streamed
    assert sorted((json.loads(base64.b64decode(m["message"]["data"]))["data"]["temperature"],
                   m["message"].get("orderingKey")) for m in streamed) == \
        [(25, PIPELINE_DEVICE), (30, PIPELINE_DEVICE), (36, PIPELINE_DEVICE)]
    assert action_total(server, "pipeline_alert", "republish", "success") == 1
    for rule in rules:
        assert rule_metric(server, "nimbus_rule_messages_matched_total", rule) == 3, rule
    assert rule_metric(server, "nimbus_rule_messages_fired_total", "pipeline_alert") == 1
    cloud.assert_no_more()


# ====================================================================== Basic Ingest

def test_basic_ingest(server, clients):
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="ingest_rule", topicRulePayload=rule_payload(
        "SELECT *, topic() AS t FROM 'sensor/+/data'", [republish("ingested/${topic(2)}")]))
    iot.create_topic_rule(ruleName="other_rule", topicRulePayload=rule_payload(
        "SELECT * FROM 'sensor/+/data'", [republish("ingested/other/${topic(2)}")]))
    iot.create_topic_rule(ruleName="ingest_off", topicRulePayload=rule_payload(
        "SELECT * FROM 'sensor/+/data'", [republish("ingested/off/${topic(2)}")],
        ruleDisabled=True))
    url = dead_url("/ingest")
    iot.create_topic_rule(ruleName="ingest_err", topicRulePayload=rule_payload(
        "SELECT * FROM 'sensor/+/data'", [http_action(url)], errorAction=republish(ERRORS)))

    # nobody may subscribe to the ingest topics; the connections stay usable
    watcher = subscriber(clients, "ingested/#", "errors/#")
    assert watcher.subscribe("$aws/rules/ingest_rule/#", 1) == [0x8F]
    assert watcher.subscribe([("$aws/rules/#", 1), ("$aws/rules/ingest_rule/sensor/pi-009/data",
                                                     0)]) == [0x8F, 0x8F]
    old = clients.connected(version=V311, name="v311")
    assert old.subscribe("$aws/rules/ingest_rule/#", 1) == [0x80]
    assert old.subscribe("$aws/rules/ingest_rule/sensor/pi-009/data", 0) == [0x80]
    assert old.subscribe("sensor/#", 0) == [0]
    # ... nor receives them through a wider filter
    spy = subscriber(clients, "$aws/#", "sensor/#", name="spy")

    pub = clients.connected(client_id=unique("pi-009"), version=V5, name="device")
    doc = {"temperature": 22.5, "humidity": 41}
    pub.publish("$aws/rules/ingest_rule/sensor/pi-009/data", json.dumps(doc), qos=1)
    msg = watcher.expect(topic="ingested/pi-009")
    assert json.loads(msg.payload) == dict(doc, t="sensor/pi-009/data"), msg.payload

    # a rule that does not exist, a disabled rule, a FROM filter that does not match: nothing
    pub.publish("$aws/rules/no_such_rule/x", json.dumps(doc), qos=1)
    pub.publish("$aws/rules/ingest_off/sensor/pi-009/data", json.dumps(doc), qos=1)
    pub.publish("$aws/rules/ingest_rule/door/pi-009", json.dumps(doc), qos=1)
    assert_quiet(watcher, pub, marker_prefix="ingested")      # other_rule never fired either

    # the errorAction document's topic is the one after the prefix
    payload = json.dumps(doc).encode()
    pub.publish("$aws/rules/ingest_err/sensor/pi-009/data", payload, qos=1)
    err = expect_error_doc(watcher)
    assert_error_doc(err, "ingest_err", "sensor/pi-009/data", pub.client_id, payload)
    single_failure(err, "HttpAction", url)

    marker = "sensor/" + unique("marker")
    pub.publish(marker, b"marker", qos=1)
    leaked = [m for m in spy.collect_until(marker)
              if m.topic.startswith("$aws/rules/") or m.topic.startswith("sensor/")]
    assert not leaked, leaked
    leaked = old.collect_until(marker)
    assert not leaked, leaked

    assert rule_metric(server, "nimbus_rule_messages_matched_total", "ingest_rule") == 1
    assert rule_metric(server, "nimbus_rule_messages_matched_total", "ingest_err") == 1
    assert rule_metric(server, "nimbus_rule_messages_matched_total", "other_rule") == 0
    assert rule_metric(server, "nimbus_rule_messages_matched_total", "ingest_off") == 0


# ====================================================================== shapes

def test_actions_stored_verbatim_and_not_executed(server, clients, targets):
    """kinesis, timestream and an http action with sigv4 auth (Nimbus has no AWS credentials
    to sign with): GetTopicRule gives them back as given; firing counts the signed http action
    not_executable, and kinesis to a Pub/Sub topic and timestream to a database that do not
    exist as failures."""
    target = targets()
    signed = http_action(target.url("/signed"), confirmationUrl=target.url("/"),
                         headers=[{"key": "x-device", "value": "${topic(2)}"}],
                         auth={"sigv4": {"signingRegion": "us-east-1",
                                         "serviceName": "execute-api", "roleArn": ROLE}})
    payload = rule_payload(READINGS_SQL, [kinesis_action(), timestream_action(), signed])
    iot = iot_client(server)
    iot.create_topic_rule(ruleName="later", topicRulePayload=payload)
    assert iot.get_topic_rule(ruleName="later")["rule"]["actions"] == payload["actions"]

    pub = sensor(clients)
    pub.publish("sensor/pi-001/data", reading(20), qos=1)
    wait_action_total(server, "later", "kinesis", "failure", 1)
    wait_action_total(server, "later", "timestream", "failure", 1)
    wait_action_total(server, "later", "http", "not_executable", 1)
    assert action_total(server, "later", "http", "success") == 0
    assert action_total(server, "later", "http", "failure") == 0
    target.assert_no_more()


def test_timestream_action_writes_points_the_influx_api_reads(server, clients):
    """timestream into the built-in store: databaseName/tableName are the database and the
    measurement, dimensions the tags, the SELECT's numeric values the fields, timestamp the
    time; InfluxQL over /query reads the point back."""
    payload = rule_payload(READINGS_SQL, [timestream_action(
        databaseName="nimbus", tableName="rule_readings",
        timestamp={"value": "1700000000123", "unit": "MILLISECONDS"})])
    iot_client(server).create_topic_rule(ruleName="to_timestream", topicRulePayload=payload)
    sensor(clients).publish("sensor/pi-007/data", reading(23.25), qos=1)
    wait_action_total(server, "to_timestream", "timestream", "success", 1)
    query = urllib.parse.urlencode({"db": "nimbus", "epoch": "ms",
                                    "q": "SELECT * FROM rule_readings"})
    with urllib.request.urlopen("%s/query?%s" % (server.http_url, query), timeout=TIMEOUT) as r:
        answer = json.load(r)
    assert answer == {"results": [{"statement_id": 0, "series": [{
        "name": "rule_readings", "columns": ["time", "device", "temperature"],
        "values": [[1700000000123, "pi-007", 23.25]]}]}]}


def test_action_shapes_refused(server):
    iot = iot_client(server)
    loose = iot_client(server, validate=False)

    def refused(client, action):
        rule_error(client, "InvalidRequestException", 400, client.create_topic_rule,
                   ruleName="refused", topicRulePayload=rule_payload(READINGS_SQL, [action]))

    # timestream: databaseName, tableName, 1..128 dimensions, a known timestamp unit
    refused(loose, timestream_action(dimensions=None))
    refused(loose, timestream_action(dimensions=[]))
    refused(loose, timestream_action(dimensions=[{"name": "d%d" % i, "value": "v"}
                                                 for i in range(129)]))
    refused(loose, timestream_action(tableName=None))
    refused(loose, timestream_action(databaseName=None))
    refused(loose, timestream_action(timestamp={"value": "${timestamp()}", "unit": "DAYS"}))
    # kinesis: streamName
    refused(loose, {"kinesis": {"roleArn": ROLE}})
    # http: https anywhere, plain http to loopback only, nothing else
    for url in ("http://example.com/x", "ftp://127.0.0.1/", "http://127.0.0.1.nip.io/x",
                "127.0.0.1/x"):
        refused(iot, http_action(url))
    refused(loose, {"http": {"headers": []}})
    refused(loose, http_action("http://127.0.0.1:8080/x",
                               headers=[{"key": "h%d" % i, "value": "v"} for i in range(101)]))
    refused(loose, http_action("http://127.0.0.1:8080/x", headers=[{"key": "x-device"}]))
    assert iot.list_topic_rules()["rules"] == []

    # accepted (never fired: nothing is published on never/+/x)
    for i, url in enumerate(("https://example.com/x", "http://localhost:8080/x",
                             "http://127.0.0.1:8080/${topic(2)}", "http://127.1.2.3/x",
                             "http://[::1]:8080/x")):
        iot.create_topic_rule(ruleName="url_%d" % i, topicRulePayload=rule_payload(
            "SELECT * FROM 'never/+/x'", [http_action(url, headers=[
                {"key": "h%d" % n, "value": "${topic(2)}"} for n in range(100 if i == 0 else 1)])]))
    iot.create_topic_rule(ruleName="streams", topicRulePayload=rule_payload(
        "SELECT * FROM 'never/+/x'", [kinesis_action(), timestream_action(timestamp=None),
                                      timestream_action(timestamp={"value": "${timestamp()}",
                                                                   "unit": "NANOSECONDS"})]))
    assert len(iot.list_topic_rules()["rules"]) == 6


# ====================================================================== the queue bound

def test_action_queue_bound_drops_and_reports(nimbus, clients, targets, tmp_path):
    config = tmp_path / "nimbus.toml"
    # a generous attempt timeout: the held requests must not time out and be retried
    config.write_text("[rules]\nmax_pending_actions = 2\nhttp_timeout_ms = 10000\n")
    server = nimbus.start(["--config", str(config)])
    target = targets()
    target.hold()
    url = target.url("/slow")
    iot_client(server).create_topic_rule(ruleName="bounded", topicRulePayload=rule_payload(
        READINGS_SQL, [http_action(url)], errorAction=republish(ERRORS)))
    errors = subscriber(clients, "errors/#", name="errors")
    pub = sensor(clients)
    payloads = [reading(20 + i).encode() for i in range(5)]

    for p in payloads:
        pub.publish("sensor/pi-001/data", p, qos=1)

    # two runs in flight (held by the target), the other three dropped and reported at once
    first = target.expect()
    wait_action_total(server, "bounded", "http", "dropped", 3)
    dropped = []
    for _ in range(3):
        doc = expect_error_doc(errors)
        assert doc["ruleName"] == "bounded" and doc["topic"] == "sensor/pi-001/data", doc
        assert doc["clientId"] == pub.client_id, doc
        assert doc["failures"] == [{"failedAction": "HttpAction", "failedResource": url,
                                    "errorMessage": QUEUE_FULL}], doc
        dropped.append(base64.b64decode(doc["base64OriginalPayload"]))
    assert sorted(dropped) == sorted(payloads[2:]), dropped
    assert action_total(server, "bounded", "http", "success") == 0

    # released: the two held runs succeed, nothing else is sent
    target.release()
    wait_action_total(server, "bounded", "http", "success", 2)
    got = [first] + target.drain()
    assert sorted(r.json()["temperature"] for r in got) == [20, 21], got
    assert_quiet(errors, pub, marker_prefix="errors")
    assert action_total(server, "bounded", "http", "failure") == 0
    assert action_total(server, "bounded", "http", "dropped") == 3
    assert action_total(server, "bounded", "errorAction.republish", "success") == 3
