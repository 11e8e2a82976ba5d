"""A real Mosquitto 2.0 (Debian's /usr/sbin/mosquitto) bridged to Nimbus with Mosquitto's
default bridge settings: `try_private true`, so the bridge CONNECTs with protocol level
0x80 | 4, which Nimbus accepts and treats as a bridge (its own messages are not sent back to it,
retain is as published). The only bridge lines are the connection name, the address and one
`topic` line: `# both 1 local/ remote/` maps local/X on Mosquitto to remote/X on Nimbus and back.

Defaults include `notifications true`: the bridge's CONNECT carries a will on
`$SYS/broker/connection/<clientid>/state` and, once connected, it publishes "1" there (retained),
so Nimbus must let a bridge connection do both.

Messages must flow both ways exactly once: a copy Nimbus sent back to the bridge would come back
to Mosquitto's subscribers as a duplicate. Mosquitto listens on a free loopback port and is
stopped by its PID."""

import os
import queue
import signal
import socket
import subprocess
import time

import pytest

from conftest import TIMEOUT, V311, V5, Client, unique, wait_until

MOSQUITTO = os.environ.get("NIMBUS_MOSQUITTO", "/usr/sbin/mosquitto")
READY_TIMEOUT = 30   # Mosquitto's first connection attempt is immediate; a retry waits 5 s


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One mosquitto process with a bridge to Nimbus, in its own directory."""

    def __init__(self, workdir, nimbus_port):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            "",
            "connection nimbus",
            "address 127.0.0.1:%d" % nimbus_port,
            "topic # both 1 local/ remote/",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")   # otherwise it drops to `mosquitto`, a process detail
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=str(self.workdir), start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited with %s\n%s" % (self.proc.returncode,
                                                                       self.log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout=10, interval=0.05, what="mosquitto on port %d" % self.port)
        return self

    def log(self):
        try:
            return "----- %s -----\n%s" % (self.log_path,
                                            self.log_path.read_text(errors="replace")[-20000:])
        except OSError:
            return "(no mosquitto log)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self.logf.close()


@pytest.fixture
def bridged(server, clients, tmp_path):
    """(mosquitto, local client on Mosquitto, remote client on Nimbus) with the bridge up in
    both directions: local/# and remote/# subscribed, probes seen each way."""
    assert os.access(MOSQUITTO, os.X_OK), "%s not installed (Debian package mosquitto)" % MOSQUITTO
    mosq = Mosquitto(tmp_path / "mosquitto", server.mqtt_port).start()
    local = None
    try:
        local = Client(unique("local"), V311, name="on-mosquitto")
        local.connect(mosq.port)
        assert local.subscribe("local/#", 1) == [1]
        remote = clients.connected(version=V5, name="on-nimbus")
        assert remote.subscribe("remote/#", 1) == [1]

        # probes until the bridge is connected and subscribed on both sides
        deadline = time.monotonic() + READY_TIMEOUT
        for direction, pub, sub, prefix_pub, prefix_sub in (
                ("nimbus -> mosquitto", remote, local, "remote/", "local/"),
                ("mosquitto -> nimbus", local, remote, "local/", "remote/")):
            tag = unique("ready")
            seen = False
            while not seen:
                if time.monotonic() > deadline:
                    raise AssertionError("the bridge did not carry %s within %ds\n%s" % (
                        direction, READY_TIMEOUT, mosq.log()))
                assert mosq.proc.poll() is None, "mosquitto died\n" + mosq.log()
                pub.publish(prefix_pub + "ready/" + tag, b"probe", qos=0)
                try:
                    while not seen:
                        seen = sub.messages.get(timeout=0.5).topic == prefix_sub + "ready/" + tag
                except queue.Empty:   # publish another probe
                    pass
        time.sleep(0.3)          # late probe copies arrive now, then are dropped
        local.drain()
        remote.drain()
        yield mosq, local, remote
    except BaseException:
        print(mosq.log())
        raise
    finally:
        if local is not None:
            local.disconnect()
        mosq.stop()


def markers(n=1):
    return [unique("marker") for _ in range(n)]


def next_on(client, topic, timeout=TIMEOUT):
    """The next message `client` receives on `topic`, skipping messages on other topics."""
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        try:
            m = client.messages.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise AssertionError("%s: nothing on %r within %.1fs (other topics: %r)" % (
                client.name, topic, timeout, [x.topic for x in skipped]))
        if m.topic == topic:
            return m
        skipped.append(m)


def test_bridge_mosquitto_to_nimbus_once(server, bridged):
    """Published on Mosquitto at local/X: one copy at Nimbus's subscriber as remote/X, and no
    copy comes back to Mosquitto (its local subscriber sees only the original)."""
    mosq, local, remote = bridged
    base = unique("up")
    payloads = [("local/%s/%d" % (base, i), b"reading-%d" % i) for i in range(5)]
    publisher = Client(unique("mosq-pub"), V311, name="mosquitto-publisher")
    try:
        publisher.connect(mosq.port)
        for topic, payload in payloads:
            publisher.publish(topic, payload, qos=1)
    finally:
        publisher.disconnect()

    got = remote.collect(len(payloads))
    assert [(m.topic, m.payload) for m in got] == [
        ("remote/" + t[len("local/"):], p) for t, p in payloads]
    # a marker published on Nimbus reaches Mosquitto after anything Nimbus sent back earlier
    # on the bridge connection
    (marker,) = markers()
    remote.publish("remote/" + marker, b"m", qos=1)
    before = local.collect_until("local/" + marker, timeout=TIMEOUT)
    assert [(m.topic, m.payload) for m in before] == payloads, \
        "Mosquitto's subscriber saw a message come back from Nimbus:\n%r\n%s" % (before,
                                                                                mosq.log())
    remote.collect_until("remote/" + marker)      # its own marker, once
    remote.expect_none(0.3)
    server.assert_alive()


def test_bridge_nimbus_to_mosquitto_once(server, bridged):
    """Published on Nimbus at remote/X: one copy at Mosquitto's subscriber as local/X, and none
    comes back to Nimbus."""
    mosq, local, remote = bridged
    base = unique("down")
    payloads = [("remote/%s/%d" % (base, i), b"command-%d" % i) for i in range(5)]
    for topic, payload in payloads:
        remote.publish(topic, payload, qos=1)
    got = local.collect(len(payloads))
    assert [(m.topic, m.payload) for m in got] == [
        ("local/" + t[len("remote/"):], p) for t, p in payloads]

    # a marker published on Mosquitto reaches Nimbus after anything Mosquitto forwarded back
    (marker,) = markers()
    local.publish("local/" + marker, b"m", qos=1)
    before = remote.collect_until("remote/" + marker, timeout=TIMEOUT)
    assert [(m.topic, m.payload) for m in before] == payloads, \
        "Nimbus's subscriber saw its messages twice:\n%r\n%s" % (before, mosq.log())
    local.collect_until("local/" + marker)
    local.expect_none(0.3)
    server.assert_alive()


def test_bridge_keeps_retained_messages_retained(server, clients, bridged):
    """Retain as published on the bridge: a retained message published on Nimbus after the
    bridge subscribed is retained on Mosquitto too, and the other way round."""
    mosq, local, remote = bridged
    down, up = unique("ret-down"), unique("ret-up")
    remote.publish("remote/%s/state" % down, b"on", qos=1, retain=True)
    assert next_on(local, "local/%s/state" % down).payload == b"on"
    local.publish("local/%s/state" % up, b"off", qos=1, retain=True)
    assert next_on(remote, "remote/%s/state" % up).payload == b"off"

    # new subscribers on each side get them as retained messages
    late_local = Client(unique("late-local"), V311, name="late-on-mosquitto")
    try:
        late_local.connect(mosq.port)
        late_local.subscribe("local/%s/state" % down, 1)
        m = late_local.expect(topic="local/%s/state" % down)
        assert (m.payload, bool(m.retain)) == (b"on", True), \
            "Mosquitto did not keep the message Nimbus forwarded as retained"
    finally:
        late_local.disconnect()
    late_remote = clients.connected(version=V5, name="late-on-nimbus")
    late_remote.subscribe("remote/%s/state" % up, 1)
    m = late_remote.expect(topic="remote/%s/state" % up)
    assert (m.payload, bool(m.retain)) == (b"off", True)

    # clear both (an empty retained message deletes it on each side)
    remote.publish("remote/%s/state" % down, b"", qos=1, retain=True)
    local.publish("local/%s/state" % up, b"", qos=1, retain=True)
    server.assert_alive()


def test_bridge_connects_with_the_private_flag(server, bridged):
    """Nimbus accepted the bridge's first CONNECT (protocol level | 0x80): Mosquitto did not have
    to fall back to a plain MQTT 3.1.1 connection."""
    mosq, _local, _remote = bridged
    log = mosq.log_path.read_text(errors="replace")
    # Mosquitto logs each (re)connection of the bridge ("Connecting bridge [(step 1)] nimbus");
    # one attempt means its first CONNECT, with the flag, was accepted
    attempts = sum(1 for line in log.splitlines()
                   if "Connecting bridge" in line and "(step 2)" not in line)
    assert attempts == 1, "the bridge needed %d connection attempts:\n%s" % (attempts, log)
