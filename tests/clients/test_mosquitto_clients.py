"""End-to-end tests of Nimbus driven by the Mosquitto command line clients
(mosquitto_pub / mosquitto_sub 2.0), MQTT 3.1.1 and 5.0, over TCP and over TLS
with a client certificate signed by the broker CA.

mosquitto_sub always runs with -C N (exit after N messages) and -W (hard
timeout), under `stdbuf -oL` so its debug output ("received SUBACK") can be
awaited line by line."""

import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import TIMEOUT, unique

VERSIONS = ["mqttv311", "mqttv5"]
FMT = "MSG|%t|%q|%r|%p"
PROC_TIMEOUT = 15


def _require_tools():
    for tool in ("mosquitto_pub", "mosquitto_sub", "stdbuf"):
        assert shutil.which(tool), "%s not installed" % tool


class Target:
    """Connection arguments for one transport (tcp or tls)."""

    def __init__(self, server, transport):
        self.server = server
        self.transport = transport
        if transport == "tls":
            self.cert, self.key = server.make_device_cert("mosquitto-cli")

    def args(self, version):
        a = ["-h", "127.0.0.1", "-V", version]
        if self.transport == "tls":
            a += ["-p", str(self.server.mqtts_port), "--cafile", str(self.server.ca_cert),
                  "--cert", self.cert, "--key", self.key]
        else:
            a += ["-p", str(self.server.mqtt_port)]
        return a


class Sub:
    """A running mosquitto_sub whose output lines are collected by a thread."""

    def __init__(self, target, version, topics, count, qos=1, fmt=FMT, wait=10, extra=()):
        argv = ["stdbuf", "-oL", "-eL", "mosquitto_sub", "-d"] + target.args(version) + \
            ["-q", str(qos), "-C", str(count), "-W", str(wait), "-F", fmt] + list(extra)
        for t in ([topics] if isinstance(topics, str) else topics):
            argv += ["-t", t]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines = []
        self.q = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            line = line.rstrip(b"\n")
            self.lines.append(line)
            self.q.put(line)
        self.q.put(None)

    def wait_for_line(self, needle, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError("mosquitto_sub: no %r within %.1fs; output:\n%s" % (
                    needle, timeout, self.output()))
            if line is None:
                raise AssertionError("mosquitto_sub exited (%r) before %r; output:\n%s" % (
                    self.proc.poll(), needle, self.output()))
            if needle in line:
                return line

    def wait_subscribed(self, timeout=TIMEOUT):
        self.wait_for_line(b"received SUBACK", timeout)
        return self

    def finish(self, timeout=PROC_TIMEOUT):
        """Wait for exit (after -C messages); asserts exit code 0; returns the
        message lines split into fields."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("mosquitto_sub did not exit; output:\n%s" % self.output())
        self.reader.join(timeout=2)
        assert rc == 0, "mosquitto_sub exit code %d; output:\n%s" % (rc, self.output())
        return self.messages()

    def messages(self):
        return [l.decode(errors="replace").split("|")[1:] for l in self.lines
                if l.startswith(b"MSG|")]

    def output(self):
        return "\n".join(l.decode(errors="replace") for l in self.lines)

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def cli(server):
    _require_tools()
    started = []

    class Cli:
        def target(self, transport="tcp"):
            return Target(server, transport)

        def sub(self, *a, **kw):
            s = Sub(*a, **kw)
            started.append(s)
            return s

        def pub(self, target, version, topic, message=None, qos=1, extra=(), stdin=None,
                expect_rc=0):
            argv = ["mosquitto_pub", "-d"] + target.args(version) + ["-t", topic,
                                                                     "-q", str(qos)]
            if stdin is not None:
                argv += ["-l"]
            elif message is None:
                argv += ["-n"]
            else:
                argv += ["-m", message]
            argv += list(extra)
            res = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=PROC_TIMEOUT)
            out = res.stdout.decode(errors="replace")
            if expect_rc is not None:
                assert res.returncode == expect_rc, "%s -> %d\n%s" % (argv, res.returncode, out)
            return res.returncode, out

    yield Cli()
    for s in started:
        s.kill()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_pub_sub_all_qos(server, cli, version, transport):
    tgt = cli.target(transport)
    base = unique("cli")
    sub = cli.sub(tgt, version, base + "/#", count=3, qos=2).wait_subscribed()
    for q in range(3):
        cli.pub(tgt, version, "%s/q%d" % (base, q), "payload-%d" % q, qos=q)
    msgs = sub.finish()
    assert sorted(msgs) == [["%s/q%d" % (base, q), str(q), "0", "payload-%d" % q]
                            for q in range(3)]


@pytest.mark.parametrize("version", VERSIONS)
def test_qos2_many_messages_in_order(server, cli, version):
    tgt = cli.target()
    topic = unique("cli-many")
    lines = ["line-%02d" % i for i in range(20)]
    sub = cli.sub(tgt, version, topic, count=20, qos=2).wait_subscribed()
    cli.pub(tgt, version, topic, qos=2, stdin=("\n".join(lines) + "\n").encode())
    msgs = sub.finish()
    assert [m[3] for m in msgs] == lines
    assert {m[1] for m in msgs} == {"2"}


@pytest.mark.parametrize("version", VERSIONS)
def test_retained(server, cli, version):
    tgt = cli.target()
    topic = unique("cli-ret")
    cli.pub(tgt, version, topic, "v1", qos=1, extra=["-r"])
    assert cli.sub(tgt, version, topic, count=1).finish() == [[topic, "1", "1", "v1"]]
    cli.pub(tgt, version, topic, "v2", qos=1, extra=["-r"])
    assert cli.sub(tgt, version, topic, count=1, qos=0).finish() == [[topic, "0", "1", "v2"]]
    cli.pub(tgt, version, topic, None, qos=1, extra=["-r"])  # -n -r: delete
    sub = cli.sub(tgt, version, topic, count=1).wait_subscribed()
    cli.pub(tgt, version, topic, "live", qos=1)
    assert sub.finish() == [[topic, "1", "0", "live"]], "retained message was not deleted"


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_v5_properties(server, cli, transport):
    tgt = cli.target(transport)
    topic = unique("cli-props")
    fmt = "MSG|%t|%P|%C|%R|%D|%E|%S|%p"
    sub = cli.sub(tgt, "mqttv5", topic, count=1, fmt=fmt,
                  extra=["-D", "subscribe", "subscription-identifier", "5"]).wait_subscribed()
    cli.pub(tgt, "mqttv5", topic, "hello", qos=1, extra=[
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "content-type", "text/x-test",
        "-D", "publish", "response-topic", topic + "/reply",
        "-D", "publish", "correlation-data", "corr-7",
        "-D", "publish", "message-expiry-interval", "60"])
    [[t, user, ctype, resp, corr, expiry, subid, payload]] = sub.finish()
    assert (t, payload) == (topic, "hello")
    assert user == "k1:v1 k2:v2"
    assert (ctype, resp, corr, subid) == ("text/x-test", topic + "/reply", "corr-7", "5")
    assert 0 < int(expiry) <= 60


@pytest.mark.parametrize("version", VERSIONS)
def test_will(server, cli, version):
    tgt = cli.target()
    wt = unique("cli-will")
    polite_topic = unique("idle")
    watcher = cli.sub(tgt, version, wt, count=2).wait_subscribed()
    polite = cli.sub(tgt, version, polite_topic, count=1, wait=30,
                     extra=["--will-topic", wt, "--will-payload", "polite-will",
                            "--will-qos", "1"]).wait_subscribed()
    rude = cli.sub(tgt, version, unique("idle"), count=1, wait=30,
                   extra=["--will-topic", wt, "--will-payload", "rude-will",
                          "--will-qos", "1"]).wait_subscribed()
    # after its one message, mosquitto_sub sends a normal DISCONNECT: no will
    cli.pub(tgt, version, polite_topic, "bye", qos=1)
    assert polite.finish() == [[polite_topic, "1", "0", "bye"]]
    cli.pub(tgt, version, wt, "marker", qos=1)
    rude.kill()  # SIGKILL: connection dropped without DISCONNECT -> will published
    msgs = watcher.finish()
    assert [m[3] for m in msgs] == ["marker", "rude-will"]


@pytest.mark.parametrize("version", VERSIONS)
def test_persistent_session_across_restart(server, cli, version):
    tgt = cli.target()
    cid = unique("cli-persist")
    topic = unique("cli-pt")
    setup = ["-c", "-i", cid, "-E"]  # persistent session; exit once subscribed
    s = cli.sub(tgt, version, topic, count=1, qos=1, extra=setup)
    s.wait_subscribed()
    assert s.proc.wait(timeout=PROC_TIMEOUT) == 0
    cli.pub(tgt, version, topic, "while-away-1", qos=1)
    cli.pub(tgt, version, topic, "while-away-2", qos=2)
    server.restart()
    tgt = cli.target()  # new ports
    back = cli.sub(tgt, version, topic, count=2, qos=1, extra=["-c", "-i", cid])
    msgs = back.finish()
    assert sorted(m[3] for m in msgs) == ["while-away-1", "while-away-2"]


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_without_client_certificate_fails(server, cli, version):
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(server.mqtts_port), "-V", version,
            "--cafile", str(server.ca_cert), "-t", unique("nocert"), "-m", "x", "-q", "1"]
    res = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=PROC_TIMEOUT)
    assert res.returncode != 0, res.stdout.decode(errors="replace")
    server.assert_alive()
