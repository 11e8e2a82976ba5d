"""Nimbus's own MQTT bridges ([bridges.<name>] in nimbus.toml, issue 14) against a real Mosquitto
2.0 (Debian's /usr/sbin/mosquitto) as the remote: paho clients on both sides count every
message. Mosquitto and the loopback proxy that cuts the link listen on free loopback ports; every
process is started here and stopped by its PID.

- out and in with prefixes and wildcards, QoS 1 counted exactly, MQTT 3.1.1 and 5;
- `both` on `#` with 1,000 messages: nothing comes back (No Local on 5, the bridge flag on 3.1.1);
- store-and-forward: the link down (a proxy refusing), 2,000 numbered QoS 1 messages, Nimbus
  killed with SIGKILL halfway and restarted, then the link up: none missing, in order per topic;
- a tiny queue bound with drop-oldest: what is missing is exactly what /metrics counts dropped;
- a malformed packet from the remote (a scripted fake broker) drops that link only: it counts as
  an error, shows in last_error, the bridge connects again, and Nimbus serves its clients
  throughout;
- a wrong bridge in the file stops `nimbus serve` naming file, bridge, field and reason."""

import os
import re
import select
import socket
import subprocess
import threading
import time
import json
import urllib.request

import pytest

import rawmqtt
from conftest import TIMEOUT, V311, V5, Client, unique, wait_until
from test_mosquitto_bridge import MOSQUITTO, free_port

LINK_TIMEOUT = 30  # the first attempt is immediate; after failures the backoff draws up to 2^n s


def openssl(*args):
    subprocess.run(["openssl"] + [str(a) for a in args], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def make_pki(directory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate: the
    remote's mutual TLS. Returns a dict of paths."""
    directory.mkdir(parents=True, exist_ok=True)
    p = {k: directory / v for k, v in dict(ca="ca.crt", ca_key="ca.key", server="server.crt",
                                             server_key="server.key", client="client.crt",
                                             client_key="client.key").items()}
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2", "-subj", "/CN=Remote Test CA")
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        key, crt, csr, extfile = (p[name + "_key"], p[name], directory / (name + ".csr"),
                                  directory / (name + ".ext"))
        extfile.write_text("basicConstraints=CA:FALSE\n" + ext)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        openssl("req", "-new", "-key", key, "-subj", "/CN=" + name, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
                "-CAcreateserial", "-days", "2", "-sha256", "-extfile", extfile, "-out", crt)
    return p


class RemoteMosquitto:
    """A plain Mosquitto: the remote end of Nimbus's bridges; with `pki`, a second listener
    (tls_port) requiring client certificates."""

    def __init__(self, workdir, pki=None):
        assert os.access(MOSQUITTO, os.X_OK), "%s not installed (package mosquitto)" % MOSQUITTO
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / "mosquitto.log"
        conf = workdir / "mosquitto.conf"
        lines = ["per_listener_settings false", "listener %d 127.0.0.1" % self.port,
                 "allow_anonymous true",
                 "persistence false", "log_dest stderr", "log_type all", "max_queued_messages 0"]
        if pki is not None:
            self.tls_port = free_port()
            lines += ["listener %d 127.0.0.1" % self.tls_port, "cafile %s" % pki["ca"],
                      "certfile %s" % pki["server"], "keyfile %s" % pki["server_key"],
                      "require_certificate true"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        conf.write_text("\n".join(lines) + "\n")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def listening():
            assert self.proc.poll() is None, "mosquitto exited\n" + self.log()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False
        wait_until(listening, timeout=10, interval=0.05, what="mosquitto listening")

    def log(self):
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


class LinkProxy:
    """A loopback TCP proxy in front of the remote: up() forwards, down() refuses connections and
    resets the ones open (the link cut)."""

    def __init__(self, upstream_port):
        self.port = free_port()
        self.upstream_port = upstream_port
        self.listener = None
        self.sockets = []
        self.lock = threading.Lock()
        self.accepted = 0
        self.is_blackhole = False

    def up(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self):
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)   # wakes the accept thread, frees the port
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for s in self.sockets:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    s.close()
                except OSError:
                    pass
            self.sockets = []

    def blackhole(self, on=True):
        """Connections stay open but nothing crosses either way (a half-open link)."""
        self.is_blackhole = on

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a, b):
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if not self.is_blackhole:
                        peers[s].sendall(data)
        except (OSError, ValueError):
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


def metrics(nimbus):
    with urllib.request.urlopen(nimbus.http_url + "/metrics", timeout=TIMEOUT) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'(nimbus_bridge_\w+)\{bridge="([^"]+)"(?:,reason="([^"]+)")?\} (\d+)', line)
        if m:
            out[(m.group(1), m.group(2), m.group(3))] = int(m.group(4))
    return out


def bridge_connected(nimbus, name="edge"):
    return metrics(nimbus).get(("nimbus_bridge_connected", name, None)) == 1


def wait_crossing(publisher, topic, subscriber, arriving_topic, payload=b"probe",
                  what="a probe crossing the bridge"):
    """Publishes `payload` until `subscriber` receives it on `arriving_topic`: the bridge's
    subscription for that direction is in place."""
    def crossed():
        publisher.publish(topic, payload, qos=1)
        try:
            return subscriber.expect(timeout=0.5, topic=arriving_topic).payload == payload
        except AssertionError:
            return False
    wait_until(crossed, timeout=LINK_TIMEOUT, what=what)


def start_with_bridges(nimbus, text, extra_args=()):
    path = nimbus.workdir / "nimbus.toml"
    path.write_text(text)
    nimbus.start(extra_args=["--config", str(path)] + list(extra_args))


@pytest.fixture
def remote(tmp_path):
    mosq = RemoteMosquitto(tmp_path / "mosquitto")
    try:
        yield mosq
    except BaseException:
        print(mosq.log())
        raise
    finally:
        mosq.stop()


def connected_client(port, version=V311, name=None, clean=True, client_id=None):
    c = Client(client_id or unique(name or "c"), version, clean_session=clean, name=name)
    c.connect(port)
    return c


@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv5"])
def test_out_and_in_with_prefixes_and_wildcards_count_qos1_exactly(nimbus, remote, protocol):
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
protocol = "%s"
topic = ["sensor/# out 1 edge/ site1/", "cmd/+ in 1 local/ remote/"]
""" % (remote.port, protocol), extra_args=["--sys-interval", "1"])
    wait_until(lambda: bridge_connected(nimbus), timeout=LINK_TIMEOUT, what="bridge connected")
    on_remote = connected_client(remote.port, name="on-mosquitto")
    on_local = connected_client(nimbus.mqtt_port, V5, name="on-nimbus")
    try:
        # Everything but what it publishes itself (remote/...).
        for filter in ("site1/#", "other/#", "sensor/#", "edge/#"):
            assert on_remote.subscribe(filter, 1) == [1]
        assert on_local.subscribe("local/#", 1) == [1]
        # The remote subscription is in place once a probe crosses.
        wait_crossing(on_remote, "remote/cmd/probe", on_local, "local/cmd/probe",
                      what="the in mapping subscribed")
        time.sleep(0.3)
        on_local.drain()
        on_remote.drain()

        publisher = connected_client(nimbus.mqtt_port, V311, name="device")
        for i in range(200):
            publisher.publish("edge/sensor/%d/t" % (i % 7), str(i).encode(), qos=1)
        publisher.publish("other/not-mapped", b"x", qos=1)   # no mapping: stays local
        publisher.publish("sensor/no-prefix", b"x", qos=1)   # outside edge/: stays local
        got = on_remote.collect(200, timeout=20)
        assert [m.topic for m in got] == ["site1/sensor/%d/t" % (i % 7) for i in range(200)]
        assert [int(m.payload) for m in got] == list(range(200))
        assert all(m.qos == 1 for m in got)
        for i in range(200):
            on_remote.publish("remote/cmd/c%d" % (i % 5), str(i).encode(), qos=1)
        on_remote.publish("remote/cmd/deeper/level", b"x", qos=1)  # + matches one level only
        back = on_local.collect(200, timeout=20)
        assert [m.topic for m in back] == ["local/cmd/c%d" % (i % 5) for i in range(200)]
        assert [int(m.payload) for m in back] == list(range(200))
        time.sleep(0.5)
        assert on_remote.messages.empty(), "more than the mapped messages reached Mosquitto"
        assert on_local.messages.empty(), "more than the mapped messages reached Nimbus"
        m = metrics(nimbus)
        assert m[("nimbus_bridge_forwarded_total", "edge", None)] >= 200
        assert m[("nimbus_bridge_received_total", "edge", None)] >= 200
        assert m[("nimbus_bridge_queued_messages", "edge", None)] == 0
        # The same figures, retained on $SYS (every --sys-interval).
        sys = connected_client(nimbus.mqtt_port, V311, name="sys")
        assert sys.subscribe("$SYS/broker/bridges/edge/#", 0) == [0]

        def sys_figures():
            figures = {}
            while not sys.messages.empty():
                msg = sys.messages.get()
                figures[msg.topic.rsplit("/edge/", 1)[1]] = msg.payload.decode()
            return figures
        seen = {}
        # Retained figures arrive in no set order, and a tick may fall between them: wait for all.
        wanted = ("state", "forwarded", "received", "queued/messages")
        wait_until(lambda: seen.update(sys_figures()) or (all(k in seen for k in wanted)
                                                          and int(seen["forwarded"]) >= 200
                                                          and int(seen["received"]) >= 200),
                   timeout=10, what="$SYS/broker/bridges/edge/{state,forwarded,received,queued}")
        assert seen["state"] == "connected"
        assert seen["queued/messages"] == "0"
        sys.disconnect()
        publisher.disconnect()
    finally:
        on_remote.disconnect()
        on_local.disconnect()


@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv5"])
def test_both_on_everything_sends_nothing_back(nimbus, remote, protocol):
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
protocol = "%s"
topic = "loop/# both 1"
notifications = false
""" % (remote.port, protocol))
    wait_until(lambda: bridge_connected(nimbus), timeout=LINK_TIMEOUT, what="bridge connected")
    on_remote = connected_client(remote.port, name="on-mosquitto")
    on_local = connected_client(nimbus.mqtt_port, V5, name="on-nimbus")
    try:
        assert on_remote.subscribe("loop/#", 1) == [1]
        assert on_local.subscribe("loop/#", 1) == [1]
        time.sleep(0.5)  # the bridge's remote subscription (its SUBACK) settles
        publisher = connected_client(nimbus.mqtt_port, V311, name="device")
        for i in range(1000):
            publisher.publish("loop/%d" % (i % 10), str(i).encode(), qos=1, wait=(i % 100 == 99))
        got_remote = on_remote.collect(1000, timeout=30)
        got_local = on_local.collect(1000, timeout=30)
        assert sorted(int(m.payload) for m in got_remote) == list(range(1000))
        assert sorted(int(m.payload) for m in got_local) == list(range(1000))
        time.sleep(1.0)
        assert on_remote.messages.empty() and on_local.messages.empty(), "a message looped"
        assert metrics(nimbus)[("nimbus_bridge_received_total", "edge", None)] == 0
        publisher.disconnect()
    finally:
        on_remote.disconnect()
        on_local.disconnect()


def test_store_and_forward_survives_the_link_down_and_sigkill(nimbus, remote):
    proxy = LinkProxy(remote.port)   # down: the bridge's attempts are refused
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
topic = "data/# out 1"
clean_start = false
""" % proxy.port)
    on_remote = connected_client(remote.port, name="on-mosquitto")
    try:
        assert on_remote.subscribe("data/#", 1) == [1]
        total = 2000

        def publish(numbers):
            device = connected_client(nimbus.mqtt_port, V311, name="device")
            for i in numbers:
                device.publish("data/%d" % (i % 4), str(i).encode(), qos=1,
                               wait=(i % 50 == 49 or i == numbers[-1]))
            device.disconnect()

        publish(list(range(0, total // 2)))   # every one acknowledged: durably queued
        nimbus.kill9()
        nimbus.start(extra_args=["--config", str(nimbus.workdir / "nimbus.toml")])
        publish(list(range(total // 2, total)))
        queued = metrics(nimbus)[("nimbus_bridge_queued_messages", "edge", None)]
        assert queued == total, "queued %d of %d while the link was down" % (queued, total)
        proxy.up()
        got = on_remote.collect(total, timeout=LINK_TIMEOUT + 30)
        numbers = [int(m.payload) for m in got]
        assert sorted(set(numbers)) == list(range(total)), "missing: %s" % sorted(
            set(range(total)) - set(numbers))[:20]
        for topic in ("data/%d" % k for k in range(4)):
            in_topic = [int(m.payload) for m in got if m.topic == topic]
            assert in_topic == sorted(in_topic), "out of order on %s" % topic
        time.sleep(0.5)
        assert on_remote.messages.empty(), "duplicates arrived"
        wait_until(lambda: metrics(nimbus)[("nimbus_bridge_queued_messages", "edge", None)] == 0,
                   what="the queue drained")
    finally:
        proxy.down()
        on_remote.disconnect()


def test_a_tiny_bound_drops_the_oldest_and_counts_exactly_what_is_missing(nimbus, remote):
    proxy = LinkProxy(remote.port)
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
topic = "data/# out 1"
queue_max_bytes = 4096
""" % proxy.port)
    on_remote = connected_client(remote.port, name="on-mosquitto")
    try:
        assert on_remote.subscribe("data/#", 1) == [1]
        device = connected_client(nimbus.mqtt_port, V311, name="device")
        total = 300
        for i in range(total):
            device.publish("data/x", ("%d " % i).encode() + b"." * 90, qos=1)
        device.disconnect()
        dropped = metrics(nimbus)[("nimbus_bridge_dropped_total", "edge", "oldest")]
        assert 0 < dropped < total
        proxy.up()
        got = on_remote.collect(total - dropped, timeout=LINK_TIMEOUT + 10)
        numbers = [int(m.payload.split()[0]) for m in got]
        assert numbers == list(range(dropped, total)), "the newest are kept, in order"
        time.sleep(0.5)
        assert on_remote.messages.empty()
    finally:
        proxy.down()
        on_remote.disconnect()


def test_block_holds_the_devices_puback_until_the_queue_has_room(nimbus, remote):
    """full_policy = "block": past the bound nothing is dropped; the device's PUBACK waits (as
    the broker's congestion gate holds it) until the link drains the queue, then everything
    arrives in order."""
    proxy = LinkProxy(remote.port)
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
topic = "data/# out 1"
queue_max_bytes = 4096
full_policy = "block"
""" % proxy.port)
    on_remote = connected_client(remote.port, name="on-mosquitto")
    try:
        assert on_remote.subscribe("data/#", 1) == [1]
        device = connected_client(nimbus.mqtt_port, V311, name="device")
        sent, held = 0, None
        while held is None and sent < 200:
            info = device.publish("data/x", ("%d " % sent).encode() + b"." * 90, qos=1, wait=False)
            sent += 1
            info.wait_for_publish(1.0)  # a queued record is acknowledged within milliseconds
            if not info.is_published():
                held = info
        assert held is not None, "every PUBACK came although the queue holds at most 4 KiB"
        figures = metrics(nimbus)
        assert figures[("nimbus_bridge_queued_bytes", "edge", None)] <= 4096
        assert sum(v for (name, bridge, _), v in figures.items()
                   if name == "nimbus_bridge_dropped_total" and bridge == "edge") == 0
        proxy.up()
        held.wait_for_publish(LINK_TIMEOUT + 10)
        assert held.is_published(), "the held PUBACK never came once the link drained the queue"
        got = on_remote.collect(sent, timeout=LINK_TIMEOUT + 10)
        assert [int(m.payload.split()[0]) for m in got] == list(range(sent)), "all, in order"
        device.disconnect()
        time.sleep(0.5)
        assert on_remote.messages.empty(), "duplicates arrived"
    finally:
        proxy.down()
        on_remote.disconnect()


@pytest.mark.parametrize("table, words", [
    ('addresses = ["127.0.0.1:1"]\ntopic = "a/# out 3"\n', ["bridges.bad", "topic", "QoS"]),
    ('topic = "a/# out 1"\n', ["bridges.bad", "addresses"]),
    ('addresses = ["127.0.0.1:1"]\ntopic = "a/# sideways 1"\n', ["bridges.bad", "topic"]),
    ('addresses = ["127.0.0.1:1"]\ntopic = "a/# out 1"\ncafile = "/nonexistent/ca.pem"\n',
     ["bridges.bad", "ca"]),
])
def test_a_wrong_bridge_stops_serve_naming_file_bridge_field_and_reason(nimbus, table, words):
    path = nimbus.workdir / "bad.toml"
    path.write_text("[bridges.bad]\n" + table)
    result = subprocess.run(nimbus.command() + ["--config", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    text = result.stderr + result.stdout
    for word in words:
        assert word in text, "%r not in %r" % (word, text)
    assert str(path) in text or "startup_failed" in text


def test_nimbus_to_nimbus_as_aws_iot_mtls_over_alpn_on_the_https_port(nimbus, tmp_path):
    """The edge bridges to a cloud Nimbus the way it would to AWS IoT Core: mutual TLS with a
    certificate registered at the cloud (a policy attached), ALPN x-amzn-mqtt-ca on the HTTPS
    port, MQTT 3.1.1 with the bridge flag."""
    from conftest import Nimbus, _find_binary
    cloud = Nimbus(_find_binary(), tmp_path / "cloud")
    cloud.start()
    try:
        cert, key = cloud.make_device_cert("edge-bridge")
        start_with_bridges(nimbus, """
[bridges.aws]
addresses = ["localhost:%d"]
cafile = "%s"
certfile = "%s"
keyfile = "%s"
alpn = "x-amzn-mqtt-ca"
client_id = "edge-bridge"
topic = ["telemetry/# out 1", "commands/# in 1"]
""" % (cloud.https_port, cloud.ca_cert, cert, key))
        wait_until(lambda: bridge_connected(nimbus, "aws"), timeout=LINK_TIMEOUT,
                   what="the bridge connected to the cloud's HTTPS port")
        at_cloud = connected_client(cloud.mqtt_port, V311, name="at-cloud")
        at_edge = connected_client(nimbus.mqtt_port, V311, name="at-edge")
        try:
            assert at_cloud.subscribe("telemetry/#", 1) == [1]
            assert at_edge.subscribe("commands/#", 1) == [1]
            device = connected_client(nimbus.mqtt_port, V311, name="device")
            for i in range(50):
                device.publish("telemetry/pi-1", str(i).encode(), qos=1)
            got = at_cloud.collect(50, timeout=20)
            assert [int(m.payload) for m in got] == list(range(50))

            wait_crossing(at_cloud, "commands/pi-1", at_edge, "commands/pi-1", b"reboot",
                          what="a command from the cloud")
            device.disconnect()
        finally:
            at_cloud.disconnect()
            at_edge.disconnect()
        # The cloud saw a TLS client with the registered certificate, through the HTTPS port.
        assert "edge-bridge" in cloud.log_tail()
    finally:
        err = cloud.cleanup()
        assert not err, err


@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv5"])
def test_mutual_tls_to_mosquitto(nimbus, tmp_path, protocol):
    pki = make_pki(tmp_path / "pki")
    mosq = RemoteMosquitto(tmp_path / "mosquitto-tls", pki)
    try:
        start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["localhost:%d"]
protocol = "%s"
cafile = "%s"
certfile = "%s"
keyfile = "%s"
topic = "secure/# both 1"
""" % (mosq.tls_port, protocol, pki["ca"], pki["client"], pki["client_key"]))
        wait_until(lambda: bridge_connected(nimbus), timeout=LINK_TIMEOUT, what="TLS bridge up")
        on_remote = connected_client(mosq.port, name="on-mosquitto")
        on_local = connected_client(nimbus.mqtt_port, V5, name="on-nimbus")
        try:
            assert on_remote.subscribe("secure/from-edge", 1) == [1]
            assert on_local.subscribe("secure/from-remote", 1) == [1]
            time.sleep(0.3)
            for i in range(20):
                on_local.publish("secure/from-edge", str(i).encode(), qos=1)
                on_remote.publish("secure/from-remote", str(i).encode(), qos=1)
            assert [int(m.payload) for m in on_remote.collect(20, timeout=20)] == list(range(20))
            assert [int(m.payload) for m in on_local.collect(20, timeout=20)] == list(range(20))
        finally:
            on_remote.disconnect()
            on_local.disconnect()
    except BaseException:
        print(mosq.log())
        raise
    finally:
        mosq.stop()


def test_a_remote_refusing_our_certificate_shows_in_last_error(nimbus, tmp_path):
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other")   # a client certificate the remote does not trust
    mosq = RemoteMosquitto(tmp_path / "mosquitto-tls", pki)
    try:
        start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["localhost:%d"]
cafile = "%s"
certfile = "%s"
keyfile = "%s"
topic = "x/# out 1"
""" % (mosq.tls_port, pki["ca"], other["client"], other["client_key"]))
        wait_until(lambda: metrics(nimbus)[("nimbus_bridge_reconnects_total", "edge", None)] >= 1,
                   timeout=LINK_TIMEOUT, what="a refused attempt")
        assert not bridge_connected(nimbus)
        assert "bridge_connect_failed" in nimbus.log_tail() or "bridge_link_failed" in nimbus.log_tail()
    finally:
        mosq.stop()


def test_a_link_reset_mid_stream_loses_nothing_and_duplicates_only_the_window(nimbus, remote):
    proxy = LinkProxy(remote.port)
    proxy.up()
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
topic = "flow/# out 1"
clean_start = false
""" % proxy.port)
    wait_until(lambda: bridge_connected(nimbus), timeout=LINK_TIMEOUT, what="bridge connected")
    on_remote = connected_client(remote.port, name="on-mosquitto")
    try:
        assert on_remote.subscribe("flow/#", 1) == [1]
        device = connected_client(nimbus.mqtt_port, V311, name="device")
        total, cuts = 3000, 0
        for i in range(total):
            device.publish("flow/%d" % (i % 3), str(i).encode(), qos=1, wait=(i % 100 == 99))
            if i in (1000, 2000):
                proxy.down()   # connections reset, new ones refused
                cuts += 1
                time.sleep(0.2)
                proxy.up()
        device.disconnect()
        seen = []
        deadline = time.monotonic() + LINK_TIMEOUT + 30
        while len(set(seen)) < total and time.monotonic() < deadline:
            try:
                seen.append(int(on_remote.messages.get(timeout=1).payload))
            except Exception:
                pass
        assert set(seen) == set(range(total)), "missing %s" % sorted(set(range(total)) - set(seen))[:20]
        duplicates = len(seen) - total
        print("duplicates after %d cuts: %d" % (cuts, duplicates))
        assert duplicates <= 20 * cuts, "duplicates beyond the in-flight window: %d" % duplicates
        firsts = list(dict.fromkeys(seen))   # each number where it first arrived
        for k in range(3):
            in_topic = [n for n in firsts if n % 3 == k]
            assert in_topic == sorted(in_topic), "out of order on flow/%d" % k
    finally:
        proxy.down()
        on_remote.disconnect()


def test_a_half_open_link_is_caught_by_keep_alive_and_nothing_is_lost(nimbus, remote):
    proxy = LinkProxy(remote.port)
    proxy.up()
    start_with_bridges(nimbus, """
[bridges.edge]
addresses = ["127.0.0.1:%d"]
topic = "hole/# out 1"
keep_alive = 5
""" % proxy.port)
    wait_until(lambda: bridge_connected(nimbus), timeout=LINK_TIMEOUT, what="bridge connected")
    on_remote = connected_client(remote.port, name="on-mosquitto")
    try:
        assert on_remote.subscribe("hole/#", 1) == [1]
        device = connected_client(nimbus.mqtt_port, V311, name="device")
        proxy.blackhole()   # the TCP connection stays up; nothing crosses it
        for i in range(100):
            device.publish("hole/x", str(i).encode(), qos=1)   # queued: acknowledged anyway
        # No PINGRESP within 1.5 x keep-alive: the link is dropped and tried again.
        wait_until(lambda: not bridge_connected(nimbus), timeout=15, what="the dead link noticed")
        proxy.down()
        proxy.blackhole(False)
        proxy.up()
        seen = set()
        deadline = time.monotonic() + LINK_TIMEOUT + 15
        while len(seen) < 100 and time.monotonic() < deadline:
            try:
                seen.add(int(on_remote.messages.get(timeout=1).payload))
            except Exception:
                pass
        assert seen == set(range(100)), "missing %s" % sorted(set(range(100)) - seen)[:20]
        device.disconnect()
    finally:
        proxy.down()
        on_remote.disconnect()


class ScriptedRemote:
    """A fake remote broker on a loopback port (port 0), one thread per connection. Every
    CONNECT gets a CONNACK (3.1.1, accepted); on the first connection, once `go` is set,
    `malformed` follows it; later connections get their CONNACK only once `release` is set, then
    SUBACKs, PUBACKs and PINGRESPs. It records each CONNECT's client id, the topics PUBLISHed to
    it, and whether the bridge closed the first connection. Every wait is bounded."""

    def __init__(self, malformed):
        self.malformed = malformed
        self.go = threading.Event()
        self.release = threading.Event()
        self.first_closed = threading.Event()
        self.lock = threading.Lock()
        self.connects = []
        self.published = []
        self.sockets = []
        self.stopping = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping = True
        self.go.set()
        self.release.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                index = len(self.sockets)
                self.sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _read_exactly(self, conn, n):
        data = b""
        while len(data) < n:
            if self.stopping:
                return None
            ready, _, _ = select.select([conn], [], [], 0.2)
            if not ready:
                continue
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _read_packet(self, conn):
        """(type, flags, body), or None once the peer closed (or on stop)."""
        first = self._read_exactly(conn, 1)
        if first is None:
            return None
        length, shift = 0, 0
        for _ in range(4):
            byte = self._read_exactly(conn, 1)
            if byte is None:
                return None
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        body = self._read_exactly(conn, length) if length else b""
        if body is None:
            return None
        return first[0] >> 4, first[0] & 0x0F, body

    def _serve(self, conn, index):
        try:
            packet = self._read_packet(conn)
            if packet is None or packet[0] != rawmqtt.CONNECT:
                return
            body = packet[2]
            # Protocol name, level, flags, keep alive; then the client id.
            name_length = int.from_bytes(body[0:2], "big")
            at = 2 + name_length + 4
            client_id = body[at + 2:at + 2 + int.from_bytes(body[at:at + 2], "big")].decode()
            with self.lock:
                self.connects.append(client_id)
            if index > 0 and not self.release.wait(LINK_TIMEOUT):
                return
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK: no session present, accepted
            if index == 0:
                if not self.go.wait(LINK_TIMEOUT):
                    return
                conn.sendall(self.malformed)
            while True:
                packet = self._read_packet(conn)
                if packet is None:
                    break
                kind, flags, body = packet
                if kind == rawmqtt.SUBSCRIBE:
                    count = 0
                    at = 2
                    while at < len(body):   # filter, then its options byte
                        at += 2 + int.from_bytes(body[at:at + 2], "big") + 1
                        count += 1
                    conn.sendall(rawmqtt.packet(rawmqtt.SUBACK, 0, body[0:2] + b"\x01" * count))
                elif kind == rawmqtt.PUBLISH:
                    topic_length = int.from_bytes(body[0:2], "big")
                    with self.lock:
                        self.published.append(body[2:2 + topic_length].decode(errors="replace"))
                    if (flags >> 1) & 3:
                        packet_id = body[2 + topic_length:4 + topic_length]
                        conn.sendall(rawmqtt.packet(rawmqtt.PUBACK, 0, packet_id))
                elif kind == rawmqtt.PINGREQ:
                    conn.sendall(b"\xd0\x00")
                elif kind == rawmqtt.DISCONNECT:
                    break
            if index == 0:
                self.first_closed.set()
        except OSError:
            if index == 0:
                self.first_closed.set()
        finally:
            try:
                conn.close()
            except OSError:
                pass


def bridge_status(nimbus, name):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(nimbus.http_url + "/api/bridges/" + name, timeout=TIMEOUT) as r:
        return json.loads(r.read())["status"]


@pytest.mark.parametrize("malformed, reason", [
    # A remaining length of five bytes: the MQTT framing itself is broken.
    (b"\x30\xff\xff\xff\xff\x01", "remaining length"),
    # A PUBLISH on an in-mapped topic whose name is not UTF-8.
    (rawmqtt.packet(rawmqtt.PUBLISH, 0, rawmqtt.u16(5) + b"cmd/\xff" + b"payload"), "UTF-8"),
], ids=["bad_remaining_length", "topic_not_utf8"])
def test_a_malformed_packet_from_the_remote_drops_that_link_only(nimbus, malformed, reason):
    remote = ScriptedRemote(malformed)
    try:
        start_with_bridges(nimbus, """
[bridges.odd]
addresses = ["127.0.0.1:%d"]
client_id = "odd-bridge"
topic = ["odd/# out 1", "cmd/# in 1"]
""" % remote.port)
        wait_until(lambda: bridge_connected(nimbus, "odd"), timeout=LINK_TIMEOUT,
                   what="bridge connected to the scripted remote")
        # Other clients of this Nimbus, connected before the remote misbehaves.
        watcher = connected_client(nimbus.mqtt_port, V5, name="watcher")
        talker = connected_client(nimbus.mqtt_port, V311, name="talker")
        try:
            assert watcher.subscribe("chat/#", 1) == [1]
            talker.publish("chat/before", b"1", qos=1)
            assert watcher.expect(topic="chat/before").payload == b"1"

            remote.go.set()   # the malformed packet follows the first CONNACK
            assert remote.first_closed.wait(LINK_TIMEOUT), "the bridge kept the connection"
            wait_until(lambda: len(remote.connects) >= 2, timeout=LINK_TIMEOUT,
                       what="the bridge connecting again")
            assert remote.connects[:2] == ["odd-bridge", "odd-bridge"]
            # The second CONNACK is held back: the failure is what the bridge shows meanwhile.
            status = bridge_status(nimbus, "odd")
            assert reason in status["last_error"], status
            assert status["state"] != "connected", status
            assert status["reconnects"] >= 1, status
            assert status["errors"] == 1, status   # the remote's protocol error, once
            assert metrics(nimbus)[("nimbus_bridge_reconnects_total", "odd", None)] >= 1
            assert metrics(nimbus)[("nimbus_bridge_errors_total", "odd", None)] == 1
            assert "bridge_link_failed bridge=odd" in nimbus.log_tail()

            # Nimbus serves its clients all along: the same connections, messages both ways.
            nimbus.assert_alive()
            talker.publish("chat/during", b"2", qos=1)
            assert watcher.expect(topic="chat/during").payload == b"2"
            watcher.publish("chat/back", b"3", qos=1)
            assert watcher.expect(topic="chat/back").payload == b"3"

            # Only that link was dropped: once the remote answers, it is up and forwarding.
            remote.release.set()
            wait_until(lambda: bridge_connected(nimbus, "odd"), timeout=LINK_TIMEOUT,
                       what="bridge connected again")
            assert bridge_status(nimbus, "odd")["last_error"] == ""
            talker.publish("odd/after", b"4", qos=1)
            wait_until(lambda: "odd/after" in remote.published, timeout=LINK_TIMEOUT,
                       what="odd/after forwarded on the new link")
            assert len(remote.connects) == 2, remote.connects
        finally:
            watcher.disconnect()
            talker.disconnect()
    finally:
        remote.stop()
