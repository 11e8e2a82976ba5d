"""Fixtures for the real-client end-to-end tests of the Nimbus broker.

Run with the Debian interpreter (it has paho-mqtt 1.6.1):

    NIMBUS_BIN=/path/to/nimbus /usr/bin/python3 -m pytest -q tests/clients

Environment:
    NIMBUS_BIN          path of the broker binary (required unless one of the
                        usual build outputs exists, see `_find_binary`)
    NIMBUS_EXTRA_ARGS   extra CLI flags appended to every `serve` (shlex syntax),
                        e.g. "--log-level debug"
    NIMBUS_TEST_TIMEOUT default per-wait deadline in seconds (default 5)

Everything is hermetic: the broker listens on 127.0.0.1 with port 0 (the real
ports are read from DATA_DIR/endpoints.json), state lives in pytest's tmp_path,
and only processes started here are signalled, by PID.
"""

import json
import logging
import os
import pathlib
import queue
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import pytest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawmqtt  # noqa: E402

TIMEOUT = float(os.environ.get("NIMBUS_TEST_TIMEOUT", "5"))
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# An IoT policy allowing everything, for tests about something other than authorization.
ALLOW_ALL_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


def _find_binary():
    env = os.environ.get("NIMBUS_BIN")
    if env:
        return env
    for cand in ("build/nimbus", "build/bin/nimbus", "build/src/nimbus",
                 "build/Release/nimbus", "build/Debug/nimbus"):
        p = REPO_ROOT / cand
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def wait_until(predicate, timeout=TIMEOUT, interval=0.02, what="condition"):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def unique(prefix="t"):
    """A topic/client-id fragment unique to this call."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


# ====================================================================== server

class Nimbus:
    """One broker process bound to one data directory (which survives restarts)."""

    LISTENERS = ("mqtt", "mqtts", "http", "https")

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = pathlib.Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cert_dir = self.workdir / "client-certs"
        self.log_path = self.workdir / "nimbus.log"
        self.proc = None
        self.endpoints = {}
        self.extra_args = []
        self.exit_codes = []          # return codes of previous runs (in order)
        self._expected_exit = False   # True while we are stopping/killing it
        self.rlimit_nofile = None     # descriptor limit for the server process (EMFILE tests)

    # ---- lifecycle
    def command(self):
        env_extra = shlex.split(os.environ.get("NIMBUS_EXTRA_ARGS", ""))
        return [self.binary, "serve",
                "--data-dir", str(self.data_dir),
                "--mqtt", "127.0.0.1:0",
                "--mqtts", "127.0.0.1:0",
                "--http", "127.0.0.1:0",
                "--https", "127.0.0.1:0",
                "--grpc", "off"] + env_extra + list(self.extra_args)

    def _limits(self):
        if self.rlimit_nofile is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.rlimit_nofile, self.rlimit_nofile))

    @property
    def endpoints_file(self):
        return self.data_dir / "endpoints.json"

    def start(self, extra_args=None, timeout=START_TIMEOUT):
        """Start the broker and wait for endpoints.json. `extra_args` (if given)
        replace the previous extra args and are reused by restart()."""
        if self.running:
            raise RuntimeError("broker already running (pid %d)" % self.proc.pid)
        if extra_args is not None:
            self.extra_args = list(extra_args)
        try:
            self.endpoints_file.unlink()
        except FileNotFoundError:
            pass
        argv = self.command()
        with open(self.log_path, "ab") as logf:
            logf.write(("\n===== %s start: %s =====\n" % (time.strftime("%H:%M:%S"),
                                                          shlex.join(argv))).encode())
            logf.flush()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=str(self.workdir),
                                         start_new_session=True, preexec_fn=self._limits)
        self._expected_exit = False
        deadline = time.monotonic() + timeout
        while True:
            if self.endpoints_file.exists():
                try:
                    eps = json.loads(self.endpoints_file.read_text())
                    break
                except (ValueError, OSError):
                    pass  # should not happen (atomic rename) but retry anyway
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                self._expected_exit = True  # reported here, not again at teardown
                raise RuntimeError("nimbus exited with %s before writing endpoints.json\n%s"
                                   % (rc, self.log_tail()))
            if time.monotonic() >= deadline:
                self._force_kill()
                raise RuntimeError("nimbus did not write %s within %.0fs\n%s"
                                   % (self.endpoints_file, timeout, self.log_tail()))
            time.sleep(0.05)
        missing = [k for k in self.LISTENERS if k not in eps]
        if missing:
            raise RuntimeError("endpoints.json lacks %s: %r" % (missing, eps))
        self.endpoints = eps
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_and_wait(self, sig, timeout):
        self._expected_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._force_kill()
            raise AssertionError("nimbus did not exit within %.0fs after %s\n%s"
                                 % (timeout, signal.Signals(sig).name, self.log_tail()))
        self.exit_codes.append(rc)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Graceful stop (SIGTERM by default); returns the exit code."""
        return self._signal_and_wait(sig, timeout)

    def kill9(self):
        """SIGKILL the broker (simulated crash); returns the exit code (-9)."""
        return self._signal_and_wait(signal.SIGKILL, STOP_TIMEOUT)

    def _force_kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self._expected_exit = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, kill=False, extra_args=None):
        """Stop (SIGTERM, asserting exit code 0) or kill -9, then start again on
        the same data dir. Ports change: use the properties after this call."""
        if kill:
            self.kill9()
        else:
            rc = self.stop()
            assert rc == 0, "SIGTERM exit code %r != 0\n%s" % (rc, self.log_tail())
        return self.start(extra_args)

    def assert_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError("nimbus is not running (exit code %r)\n%s"
                                 % (self.proc and self.proc.returncode, self.log_tail()))

    def cleanup(self):
        """Fixture teardown. Returns an error string if the broker died on its own."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is not None and not self._expected_exit:
            self._expected_exit = True
            return "nimbus died unexpectedly during the test (exit code %r)" % rc
        if rc is None:
            try:
                self.stop()
            except AssertionError as e:
                return str(e)
        return None

    # ---- addresses
    def _addr(self, name):
        host, _, port = self.endpoints[name].rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def host(self):
        return self._addr("mqtt")[0]

    @property
    def mqtt_port(self):
        return self._addr("mqtt")[1]

    @property
    def mqtts_port(self):
        return self._addr("mqtts")[1]

    @property
    def http_port(self):
        return self._addr("http")[1]

    @property
    def ws_port(self):
        return self.http_port

    @property
    def https_port(self):
        return self._addr("https")[1]

    @property
    def http_url(self):
        return "http://%s:%d" % self._addr("http")

    # ---- TLS material
    @property
    def ca_cert(self):
        return self.data_dir / "ca" / "root-CA.crt"

    @property
    def ca_key(self):
        return self.data_dir / "ca" / "root-CA.key"

    @staticmethod
    def _openssl(*args):
        res = subprocess.run(["openssl"] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if res.returncode != 0:
            raise RuntimeError("openssl %s failed:\n%s" % (" ".join(map(str, args)),
                                                           res.stdout.decode(errors="replace")))

    def make_ca(self, name="Foreign Test CA"):
        """A throw-away CA unrelated to the broker's (for negative tests)."""
        self.cert_dir.mkdir(exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        crt, key = self.cert_dir / ("ca-%s.crt" % tag), self.cert_dir / ("ca-%s.key" % tag)
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name)
        return crt, key

    def make_client_cert(self, cn="device-1", ca=None):
        """Client key + certificate signed by the broker's CA (or `ca`=(crt, key)).
        Returns (cert_path, key_path)."""
        ca_crt, ca_key = ca if ca else (self.ca_cert, self.ca_key)
        wait_until(lambda: pathlib.Path(ca_crt).exists() and pathlib.Path(ca_key).exists(),
                   what="CA files %s" % ca_crt)
        self.cert_dir.mkdir(exist_ok=True)
        tag = "%s-%s" % ("".join(c if c.isalnum() else "_" for c in cn), uuid.uuid4().hex[:8])
        key = self.cert_dir / (tag + ".key")
        csr = self.cert_dir / (tag + ".csr")
        crt = self.cert_dir / (tag + ".crt")
        ext = self.cert_dir / (tag + ".ext")
        ext.write_text("basicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=clientAuth\n")
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", key)
        self._openssl("req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
        self._openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                      "-set_serial", "0x" + uuid.uuid4().hex[:16], "-days", "2", "-sha256",
                      "-extfile", ext, "-out", crt)
        return str(crt), str(key)

    def tls_context(self, cert=None, key=None, ca=None):
        """Client-side ssl.SSLContext trusting the broker CA (hostname checked)."""
        ctx = ssl.create_default_context(cafile=str(ca or self.ca_cert))
        if cert:
            ctx.load_cert_chain(cert, key)
        return ctx

    # ---- AWS IoT control plane (boto3, signed with the keys in <data>/credentials)
    def credentials(self):
        """(access_key_id, secret_access_key) of the default profile."""
        import configparser
        cp = configparser.ConfigParser()
        cp.read(self.data_dir / "credentials")
        return (cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"])

    def boto3_client(self, service="iot", region="us-east-1", https=False, **kw):
        """A boto3 client for `service` pointed at this server."""
        import boto3
        import botocore.config
        akid, secret = self.credentials()
        if https:
            url = "https://localhost:%d" % self.https_port
            kw.setdefault("verify", str(self.ca_cert))
        else:
            url = self.http_url
        return boto3.client(service, endpoint_url=url, region_name=region,
                            aws_access_key_id=akid, aws_secret_access_key=secret,
                            config=botocore.config.Config(retries={"max_attempts": 1}), **kw)

    def aws_env(self, region="us-east-1"):
        """Environment for the `aws` CLI: this server's credentials file, no user config."""
        env = dict(os.environ)
        env.update(AWS_SHARED_CREDENTIALS_FILE=str(self.data_dir / "credentials"),
                   AWS_CONFIG_FILE=os.devnull, AWS_DEFAULT_REGION=region, AWS_PAGER="",
                   AWS_EC2_METADATA_DISABLED="true")
        return env

    def make_device_cert(self, cn="device-1", policy_document=None):
        """A client certificate signed by the broker's CA and registered with the registry
        (RegisterCertificateWithoutCA, ACTIVE) with a policy attached (allow-all by default),
        so the TLS listener lets it in. Returns (cert_path, key_path)."""
        cert, key = self.make_client_cert(cn)
        iot = self.boto3_client()
        registered = iot.register_certificate_without_ca(
            certificatePem=pathlib.Path(cert).read_text(), status="ACTIVE")
        if policy_document is None:
            policy_document = ALLOW_ALL_POLICY
        name = "policy-" + registered["certificateId"][:16]
        iot.create_policy(policyName=name, policyDocument=json.dumps(policy_document))
        iot.attach_policy(policyName=name, target=registered["certificateArn"])
        return cert, key

    # ---- logs
    def log_tail(self, max_bytes=30000):
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no log at %s)" % self.log_path
        if len(data) > max_bytes:
            data = b"...(truncated)...\n" + data[-max_bytes:]
        return "----- %s -----\n%s" % (self.log_path, data.decode(errors="replace"))


def pytest_configure(config):
    # an exception in a paho callback kills its network thread: make it fail the test
    config.addinivalue_line("filterwarnings",
                            "error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def nimbus(tmp_path, request):
    """A Nimbus instance that is NOT started yet (call .start(extra_args))."""
    binary = _find_binary()
    if not binary:
        pytest.fail("set NIMBUS_BIN to the nimbus broker binary", pytrace=False)
    if not os.access(binary, os.X_OK):
        pytest.fail("NIMBUS_BIN=%s is not an executable file" % binary, pytrace=False)
    srv = Nimbus(binary, tmp_path)
    request.node._nimbus = srv
    yield srv
    err = srv.cleanup()
    if err:
        pytest.fail("%s\n%s" % (err, srv.log_tail()), pytrace=False)


@pytest.fixture
def server(nimbus):
    """A running Nimbus with default flags."""
    return nimbus.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    srv = getattr(item, "_nimbus", None)
    if rep.failed and srv is not None and rep.when in ("setup", "call"):
        rep.sections.append(("nimbus log (%s)" % srv.log_path, srv.log_tail()))


# ====================================================================== paho

class ConnAck:
    def __init__(self, session_present, rc, properties):
        self.session_present = session_present
        self.rc = rc
        self.properties = properties

    def __repr__(self):
        return "ConnAck(session_present=%r, rc=%r, properties=%s)" % (
            self.session_present, self.rc, self.properties)


def _rc_value(rc):
    return rc.value if hasattr(rc, "value") else int(rc)


def props(packet_type, **kw):
    """Build paho Properties: props(PacketTypes.PUBLISH, UserProperty=[("a","b")])."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


class MsgList(list):
    """A list of paho messages with a readable repr for assertion output."""

    def __repr__(self):
        return repr([(m.topic, m.payload[:40], m.qos, bool(m.retain)) for m in self])


class Client:
    """paho client wrapper with deadline-based waits. Incoming messages are
    collected in a queue.Queue (`self.messages`). Automatic reconnection is
    disabled so that server-side disconnects are observable."""

    def __init__(self, client_id="", version=V311, clean_session=True, transport="tcp",
                 name=None):
        self.version = version
        self.client_id = client_id
        self.name = name or client_id or "anon"
        kw = dict(client_id=client_id, protocol=version, transport=transport,
                  reconnect_on_failure=False)
        if version != V5:
            kw["clean_session"] = clean_session
        self.c = mqtt.Client(**kw)
        logger = logging.getLogger("paho.%s" % self.name)
        logger.setLevel(logging.DEBUG)
        self.c.enable_logger(logger)
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self._acks = {}
        self._cond = threading.Condition()
        self.connected = False
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self._started = False

    # ---- callbacks (keep trivial: exceptions here kill paho's thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        rc = _rc_value(rc)
        self.connected = rc == 0
        self.connacks.put(ConnAck(bool(flags.get("session present")), rc, properties))

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.connected = False
        self.disconnects.put((_rc_value(rc) if rc is not None else None, properties))

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        codes = [_rc_value(g) for g in granted]
        with self._cond:
            self._acks[("sub", mid)] = codes
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, *rest):
        codes = None
        if rest and self.version == V5 and len(rest) >= 2:
            rcs = rest[1]
            codes = [_rc_value(r) for r in (rcs if isinstance(rcs, list) else [rcs])]
        with self._cond:
            self._acks[("unsub", mid)] = codes
            self._cond.notify_all()

    def _wait_ack(self, key, timeout):
        with self._cond:
            ok = self._cond.wait_for(lambda: key in self._acks, timeout)
            if not ok:
                raise AssertionError("%s: no %s-ack for mid %s within %.1fs"
                                     % (self.name, key[0], key[1], timeout))
            return self._acks.pop(key)

    # ---- connection
    def will_set(self, topic, payload=None, qos=0, retain=False, properties=None):
        self.c.will_set(topic, payload, qos, retain, properties)

    def tls_set(self, ca_certs, certfile=None, keyfile=None):
        """Verify the broker against `ca_certs` (hostname checked) and present
        the given client certificate."""
        ctx = ssl.create_default_context(cafile=str(ca_certs))
        if certfile:
            ctx.load_cert_chain(certfile, keyfile)
        self.c.tls_set_context(ctx)

    def connect(self, port, host="127.0.0.1", keepalive=60, clean_start=True, properties=None,
                timeout=TIMEOUT, expect_success=True):
        """Connect and wait for CONNACK. Returns ConnAck."""
        kw = {}
        if self.version == V5:
            kw = dict(clean_start=clean_start, properties=properties)
        self.c.connect(host, port, keepalive, **kw)
        self.c.loop_start()
        self._started = True
        try:
            ack = self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: no CONNACK within %.1fs" % (self.name, timeout))
        if expect_success:
            assert ack.rc == 0, "%s: CONNACK refused: %r" % (self.name, ack)
        return ack

    def disconnect(self, timeout=TIMEOUT, properties=None, reasoncode=None):
        """Clean DISCONNECT, waits for the network thread to finish."""
        if self.connected:
            kw = {}
            if self.version == V5:
                kw = dict(reasoncode=reasoncode, properties=properties)
            self.c.disconnect(**kw)
            try:
                self.disconnects.get(timeout=timeout)
            except queue.Empty:
                pass
        self.stop()

    def drop(self, timeout=TIMEOUT):
        """Abnormal disconnect: shut the socket down without sending DISCONNECT."""
        sock = self.c.socket()
        raw = getattr(sock, "_socket", sock)
        raw.shutdown(socket.SHUT_RDWR)
        self.wait_disconnected(timeout)
        self.stop()

    def stop(self):
        if self._started:
            self._started = False
            self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.close()
            except Exception:
                pass

    def wait_disconnected(self, timeout=TIMEOUT):
        """Wait until the server drops us; returns (reason_code, properties)."""
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: still connected after %.1fs" % (self.name, timeout))

    # ---- operations
    def subscribe(self, topic, qos=0, options=None, properties=None, timeout=TIMEOUT):
        """Subscribe and wait for SUBACK; returns the list of granted QoS /
        reason codes (ints)."""
        if options is not None:
            rc, mid = self.c.subscribe(topic, options=options, properties=properties)
        elif isinstance(topic, list):
            rc, mid = self.c.subscribe(topic, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe failed locally: %s" % (self.name, rc)
        return self._wait_ack(("sub", mid), timeout)

    def unsubscribe(self, topic, properties=None, timeout=TIMEOUT):
        kw = {"properties": properties} if self.version == V5 else {}
        rc, mid = self.c.unsubscribe(topic, **kw)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(("unsub", mid), timeout)

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True,
                timeout=TIMEOUT):
        """Publish; for QoS>0 (and wait=True) block until PUBACK/PUBCOMP."""
        info = self.c.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, "%s: publish failed locally: %s" % (self.name,
                                                                                    info.rc)
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published(), "%s: publish to %r (qos %d) not acknowledged within " \
                "%.1fs" % (self.name, topic, qos, timeout)
        return info

    def expect(self, timeout=TIMEOUT, topic=None):
        """Next received message (optionally asserting its topic)."""
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: no message within %.1fs" % (self.name, timeout))
        if topic is not None:
            assert msg.topic == topic, "%s: expected topic %r, got %r (payload %r)" % (
                self.name, topic, msg.topic, msg.payload)
        return msg

    def collect(self, n, timeout=TIMEOUT):
        """Exactly the next n messages (deadline for all of them)."""
        deadline = time.monotonic() + timeout
        out = MsgList()
        while len(out) < n:
            remaining = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError("%s: got %d/%d messages within %.1fs: %r" % (
                    self.name, len(out), n, timeout, [(m.topic, m.payload) for m in out]))
        return out

    def collect_until(self, topic, timeout=TIMEOUT):
        """Messages received up to and including the first one on `topic`
        (a "marker"); returns the messages before the marker."""
        deadline = time.monotonic() + timeout
        out = MsgList()
        while True:
            remaining = deadline - time.monotonic()
            try:
                msg = self.messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError("%s: marker %r not received within %.1fs (got %r)" % (
                    self.name, topic, timeout, [(m.topic, m.payload) for m in out]))
            if msg.topic == topic:
                return out
            out.append(msg)

    def expect_none(self, window=0.5):
        """Assert that nothing arrives within `window` seconds (negative checks
        cannot be awaited; keep the window short and prefer markers)."""
        try:
            msg = self.messages.get(timeout=window)
        except queue.Empty:
            return
        raise AssertionError("%s: unexpected message %r payload=%r qos=%d retain=%r" % (
            self.name, msg.topic, msg.payload, msg.qos, msg.retain))

    def drain(self):
        out = MsgList()
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out


class ClientFactory:
    """Creates paho / raw clients against a server and cleans them up."""

    def __init__(self, server):
        self.server = server
        self.created = []
        self.raw_created = []

    def new(self, client_id=None, version=V311, clean_session=True, transport="tcp", name=None):
        if client_id is None:
            client_id = unique("c")
        c = Client(client_id, version, clean_session, transport, name)
        self.created.append(c)
        return c

    def connected(self, client_id=None, version=V311, clean_session=True, clean_start=True,
                  properties=None, keepalive=60, transport="tcp", name=None):
        c = self.new(client_id, version, clean_session, transport, name)
        if transport == "websockets":
            c.c.ws_set_options(path="/mqtt")
            port = self.server.ws_port
        else:
            port = self.server.mqtt_port
        c.connect(port, host=self.server.host, keepalive=keepalive, clean_start=clean_start,
                  properties=properties)
        return c

    def raw(self, version=5, port=None, **kw):
        r = rawmqtt.RawClient(self.server.host, port or self.server.mqtt_port, version=version,
                              timeout=TIMEOUT, **kw)
        self.raw_created.append(r)
        return r

    def close_all(self):
        for c in self.created:
            try:
                c.disconnect(timeout=1.0)
            except Exception:
                pass
        for r in self.raw_created:
            r.close()


@pytest.fixture
def clients(nimbus):
    """Client factory bound to the test's broker. Request `server` as well for a
    broker started with default flags, or call nimbus.start(...) yourself
    before creating clients."""
    f = ClientFactory(nimbus)
    yield f
    f.close_all()


def roundtrip(pub, sub, topic=None, qos=1, timeout=TIMEOUT):
    """Check that `sub` (already subscribed to `topic`) receives a fresh
    message published by `pub`."""
    payload = uuid.uuid4().hex.encode()
    pub.publish(topic, payload, qos=qos)
    deadline = time.monotonic() + timeout
    while True:
        msg = sub.expect(timeout=max(deadline - time.monotonic(), 0.001))
        if msg.payload == payload:
            return msg


# ====================================================================== shared checks

def http_get(url, timeout=TIMEOUT, context=None, headers=None):
    """GET without any proxy from the environment. Returns (status, headers, body)."""
    import urllib.error
    import urllib.request
    handlers = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}),
                         timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def resident_kib(pid):
    """Resident set size of process `pid` in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def metric(server, name, token=None):
    """Value of the (unlabelled) metric `name` in GET /metrics; labelled samples are summed.
    `token`: sent as `Authorization: Bearer <token>` (for --metrics token)."""
    headers = {"Authorization": "Bearer " + token} if token else None
    status, _headers, body = http_get(server.http_url + "/metrics", headers=headers)
    assert status == 200, "GET /metrics: %s" % status
    total, found = 0.0, False
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(None, 1)[1])
            found = True
    if not found:
        raise AssertionError("metric %s missing" % name)
    return total


def assert_rejected(server, clients, version, data, connect_first=True):
    """Send `data` (raw bytes) on a fresh raw connection (optionally after a
    valid CONNECT) and check that the broker closes *that* connection, never
    accepts it, and keeps serving a bystander client. Returns the packets the
    rejected connection received before being closed."""
    pv = V5 if version == 5 else V311
    bystander = clients.connected(version=pv, name="bystander")
    topic = unique("bystander")
    assert bystander.subscribe(topic, 1) == [1]

    r = clients.raw(version=version)
    if connect_first:
        ack = r.connect(unique("bad"))
        assert ack.reason_code == 0, "setup CONNECT refused: %r" % ack
    try:
        r.send(data)
    except OSError:
        pass  # already closed by the server: fine
    pkts = r.wait_closed(TIMEOUT)
    for p in pkts:
        assert not (p.type == rawmqtt.CONNACK and p.reason_code == 0), \
            "broker accepted an invalid connection: %r" % pkts
        if version == 5 and p.type == rawmqtt.DISCONNECT:
            assert p.reason_code >= 0x80, "DISCONNECT must carry an error reason: %r" % p
        if p.type == rawmqtt.PUBLISH:
            raise AssertionError("unexpected PUBLISH to a rejected client: %r" % p)

    server.assert_alive()
    roundtrip(bystander, bystander, topic)
    assert bystander.disconnects.empty(), "bystander was disconnected"
    assert bystander.connected
    return pkts
