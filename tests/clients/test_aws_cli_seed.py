"""The seed tutorial (../shared/seed/, sections 1.3 and 2.1-2.2) run verbatim with Debian's `aws`
CLI v2 against Nimbus, adding only `--endpoint-url` (plus `--region ap-northeast-2`, which the
tutorial configures with `aws configure`, and `--output json`), then the registered device
connecting with the issued certificate and the Nimbus root CA (the analogue of the tutorial's
root-CA.crt) with paho and mosquitto_pub/sub; a least-privilege policy refusing what it does not
allow; and a certificate that is revoked, deactivated or deleted losing its live connection.

The CLI is /usr/bin/aws (Debian's awscli 2.x); NIMBUS_AWS_CLI overrides it. A pyenv `aws` shim
earlier in PATH may be CLI v1, hence the absolute path."""

import json
import os
import pathlib
import queue
import shutil
import ssl
import subprocess
import threading
import time

import pytest

import rawmqtt
from conftest import TIMEOUT, V311, V5, unique
from iot_helpers import (RC_NOT_AUTHORIZED, V311_SUBACK_FAILURE, allow, arn_prefix,
                         assert_connect_not_authorized, assert_connect_refused, certificate_id,
                         connect_device_paho, connect_device_raw, policy, still_open)

AWS_CLI = os.environ.get("NIMBUS_AWS_CLI", "/usr/bin/aws")
REGION = "ap-northeast-2"          # `aws configure` in the tutorial
CLI_TIMEOUT = 60
CUT_WITHIN = 1.0                   # a certificate leaving ACTIVE closes its connections this fast
CUT_SLACK = 0.5                    # scheduling slack on a loaded 2-core machine
THING = "RaspberryPi-001"

# The tutorial's iot-policy.json, byte for byte (written by `cat > iot-policy.json << 'EOF'`).
IOT_POLICY_JSON = """{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "iot:Connect",
                "iot:Publish",
                "iot:Subscribe",
                "iot:Receive"
            ],
            "Resource": "*"
        }
    ]
}
"""


def _require_cli():
    assert os.access(AWS_CLI, os.X_OK), "%s not installed (Debian package awscli)" % AWS_CLI
    res = subprocess.run([AWS_CLI, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)
    version = res.stdout.decode(errors="replace")
    assert version.startswith("aws-cli/2."), "%s is not AWS CLI v2: %r" % (AWS_CLI, version)


class CliResult:
    def __init__(self, argv, rc, stdout, stderr):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr
        text = stdout.strip()
        self.json = json.loads(text) if text and rc == 0 else None

    def __repr__(self):
        return "aws exit %d\n$ %s\n--- stdout\n%s\n--- stderr\n%s" % (
            self.rc, " ".join(self.argv), self.stdout, self.stderr)


class AwsCli:
    """Runs `aws ...` against one Nimbus listener: plain HTTP, or HTTPS at
    https://localhost:<port> trusting the Nimbus CA with --ca-bundle."""

    def __init__(self, server, via="http"):
        self.server = server
        self.via = via

    def argv(self, args):
        if self.via == "https":
            endpoint = ["--endpoint-url", "https://localhost:%d" % self.server.https_port,
                        "--ca-bundle", str(self.server.ca_cert)]
        else:
            endpoint = ["--endpoint-url", self.server.http_url]
        return [AWS_CLI] + list(args) + endpoint + ["--region", REGION, "--output", "json"]

    def env(self, **overrides):
        env = self.server.aws_env(region=REGION)
        # one attempt: a server error must show up as such, not as a slow retry loop
        env.update(AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="1")
        env.update(overrides)
        return env

    def run(self, *args, cwd=None, env=None):
        argv = self.argv(args)
        res = subprocess.run(argv, cwd=cwd, env=env or self.env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CLI_TIMEOUT)
        return CliResult(argv, res.returncode, res.stdout.decode(errors="replace"),
                         res.stderr.decode(errors="replace"))

    def ok(self, *args, cwd=None):
        """Run a command that must succeed; returns its parsed JSON output (None if empty)."""
        res = self.run(*args, cwd=cwd)
        assert res.rc == 0, repr(res)
        return res.json

    def fails(self, error_code, *args, cwd=None, env=None):
        """Run a command that must fail with the AWS error `error_code` on stderr."""
        res = self.run(*args, cwd=cwd, env=env)
        assert res.rc != 0, "expected %s, but it succeeded:\n%r" % (error_code, res)
        assert "(%s)" % error_code in res.stderr, "expected %s:\n%r" % (error_code, res)
        return res


@pytest.fixture
def cli(server):
    _require_cli()
    return AwsCli(server)


class Seed:
    """What the tutorial leaves in ~/iot-certs after section 2.2."""

    def __init__(self, workdir, created, endpoint):
        self.workdir = pathlib.Path(workdir)
        self.created = created
        self.endpoint = endpoint
        self.arn = created["certificateArn"]
        self.cert_id = created["certificateId"]
        self.cert = str(self.workdir / "device.cert.pem")
        self.key = str(self.workdir / "device.private.key")
        self.root_ca = str(self.workdir / "root-CA.crt")


def run_tutorial(cli, workdir):
    """The tutorial's commands in order, verbatim apart from the endpoint. Returns a Seed."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)            # mkdir -p ~/iot-certs && cd ~/iot-certs

    endpoint = cli.ok("iot", "describe-endpoint", "--endpoint-type", "iot:Data-ATS")

    created = cli.ok("iot", "create-keys-and-certificate",
                     "--set-as-active",
                     "--certificate-pem-outfile", "device.cert.pem",
                     "--public-key-outfile", "device.public.key",
                     "--private-key-outfile", "device.private.key", cwd=workdir)
    assert created, "create-keys-and-certificate printed nothing"
    arn = created["certificateArn"]

    # wget .../AmazonRootCA1.pem -O root-CA.crt: with Nimbus the root CA is its own
    shutil.copyfile(cli.server.ca_cert, workdir / "root-CA.crt")

    (workdir / "iot-policy.json").write_text(IOT_POLICY_JSON)
    created_policy = cli.ok("iot", "create-policy",
                            "--policy-name", "IoTDevicePolicy",
                            "--policy-document", "file://iot-policy.json", cwd=workdir)

    assert cli.ok("iot", "attach-policy",
                  "--policy-name", "IoTDevicePolicy",
                  "--target", arn) is None

    thing = cli.ok("iot", "create-thing", "--thing-name", THING)

    assert cli.ok("iot", "attach-thing-principal",
                  "--thing-name", THING,
                  "--principal", arn) is None

    seed = Seed(workdir, created, endpoint)
    seed.policy = created_policy
    seed.thing = thing
    return seed


def sensor_reading(i=0):
    """The payload the tutorial's sample publishes on sensor/data."""
    return {"device_id": THING, "temperature": round(25.5 + i * 0.1, 1), "humidity": 60 + i,
            "timestamp": int(time.time())}


# ====================================================================== the tutorial itself

@pytest.mark.parametrize("via", ["http", "https"])
def test_tutorial_commands_verbatim(server, clients, tmp_path, via):
    _require_cli()
    cli = AwsCli(server, via)
    seed = run_tutorial(cli, tmp_path / "iot-certs")

    # describe-endpoint: the host devices connect to (Nimbus's configured endpoint host)
    assert seed.endpoint == {"endpointAddress": "localhost"}, seed.endpoint

    # create-keys-and-certificate wrote the three files, matching the printed JSON
    created = seed.created
    assert set(created) >= {"certificateArn", "certificateId", "certificatePem", "keyPair"}
    cert_pem = (seed.workdir / "device.cert.pem").read_text()
    assert cert_pem == created["certificatePem"]
    assert cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert (seed.workdir / "device.public.key").read_text() == created["keyPair"]["PublicKey"]
    assert created["keyPair"]["PublicKey"].startswith("-----BEGIN PUBLIC KEY-----")
    private = (seed.workdir / "device.private.key").read_text()
    assert private == created["keyPair"]["PrivateKey"]
    assert "PRIVATE KEY-----" in private.splitlines()[0]
    assert created["certificateId"] == certificate_id(cert_pem)
    assert created["certificateArn"] == arn_prefix(created["certificateArn"]) + "cert/" + \
        created["certificateId"]
    # the key pair belongs to the certificate, which the Nimbus CA issued
    ssl.create_default_context().load_cert_chain(seed.cert, seed.key)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(server.ca_cert), seed.cert],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert verify.returncode == 0, verify.stdout.decode(errors="replace")

    # create-policy echoes the document; the first version is "1"
    assert seed.policy["policyName"] == "IoTDevicePolicy"
    assert seed.policy["policyArn"] == arn_prefix(seed.arn) + "policy/IoTDevicePolicy"
    assert json.loads(seed.policy["policyDocument"]) == json.loads(IOT_POLICY_JSON)
    assert seed.policy["policyVersionId"] == "1"

    assert seed.thing["thingName"] == THING
    assert seed.thing["thingArn"] == arn_prefix(seed.arn) + "thing/" + THING
    assert seed.thing["thingId"]

    # the registry now says what the tutorial did
    desc = cli.ok("iot", "describe-certificate", "--certificate-id", seed.cert_id)
    assert desc["certificateDescription"]["status"] == "ACTIVE"
    assert desc["certificateDescription"]["certificateArn"] == seed.arn
    principals = cli.ok("iot", "list-thing-principals", "--thing-name", THING)
    assert principals["principals"] == [seed.arn]
    attached = cli.ok("iot", "list-attached-policies", "--target", seed.arn)
    assert [p["policyName"] for p in attached["policies"]] == ["IoTDevicePolicy"]
    described = cli.ok("iot", "describe-thing", "--thing-name", THING)
    assert described["thingName"] == THING and described["defaultClientId"] == THING

    # and the device connects to the described endpoint with its certificate and the root CA
    monitor = clients.connected(version=V5, name="monitor")      # a local tool, plain listener
    assert monitor.subscribe("sensor/data", 1) == [1]
    device = clients.new(THING, V5, name="device")
    device.tls_set(seed.root_ca, seed.cert, seed.key)
    device.connect(server.mqtts_port, host=seed.endpoint["endpointAddress"], keepalive=30)
    reading = sensor_reading()
    device.publish("sensor/data", json.dumps(reading), qos=1)
    msg = monitor.expect(topic="sensor/data")
    assert json.loads(msg.payload) == reading
    device.disconnect()


def test_cli_errors(cli, tmp_path):
    cli.fails("ResourceNotFoundException", "iot", "describe-thing", "--thing-name", "NoSuchThing")
    (tmp_path / "broken.json").write_text('{"Version": "2012-10-17", "Statement": [')
    cli.fails("MalformedPolicyException", "iot", "create-policy", "--policy-name", "Broken",
              "--policy-document", "file://broken.json", cwd=tmp_path)
    cli.fails("ResourceNotFoundException", "iot", "attach-policy", "--policy-name", "NoSuchPolicy",
              "--target", "arn:aws:iot:us-east-1:000000000000:cert/" + "0" * 64)
    cli.fails("ResourceNotFoundException", "iot", "describe-certificate",
              "--certificate-id", "0" * 64)
    (tmp_path / "iot-policy.json").write_text(IOT_POLICY_JSON)
    cli.ok("iot", "create-policy", "--policy-name", "IoTDevicePolicy",
           "--policy-document", "file://iot-policy.json", cwd=tmp_path)
    res = cli.fails("ResourceAlreadyExistsException", "iot", "create-policy",
                    "--policy-name", "IoTDevicePolicy",
                    "--policy-document", "file://iot-policy.json", cwd=tmp_path)
    assert "IoTDevicePolicy" in res.stderr

    # a wrongly signed request is refused and changes nothing
    akid, _secret = cli.server.credentials()
    bad = cli.env(AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY="wrong" + "x" * 35)
    res = cli.run("iot", "create-thing", "--thing-name", "Forged", env=bad)
    assert res.rc != 0, repr(res)
    assert any(code in res.stderr for code in ("InvalidSignatureException",
                                               "UnrecognizedClientException",
                                               "ForbiddenException", "AccessDenied")), repr(res)
    cli.fails("ResourceNotFoundException", "iot", "describe-thing", "--thing-name", "Forged")


# ================================================================= the device, allow-all policy

@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_device_paho_tls_publishes_sensor_data(cli, server, clients, tmp_path, version):
    seed = run_tutorial(cli, tmp_path / "iot-certs")
    local = clients.connected(version=V5, name="local-tool")     # plain listener, anonymous
    assert local.subscribe("sensor/data", 1) == [1]
    # a second connection with the same certificate (the policy allows any client id)
    watcher = connect_device_paho(clients, server, seed.cert, seed.key, THING + "-watcher",
                                  version=version)
    assert watcher.subscribe("sensor/data", 1) == [1]

    # as in the tutorial: clean_session=False, keep-alive 30 s, QoS 1 JSON on sensor/data
    device = connect_device_paho(clients, server, seed.cert, seed.key, THING, version=version,
                                 clean_session=False, keepalive=30)
    readings = [sensor_reading(i) for i in range(3)]
    for r in readings:
        device.publish("sensor/data", json.dumps(r), qos=1)
    for sub in (watcher, local):
        got = sub.collect(3)
        assert [json.loads(m.payload) for m in got] == readings
        assert [(m.topic, m.qos) for m in got] == [("sensor/data", 1)] * 3

    # the control plane's data API reaches the device too (iot-data publish, CLI v2 quirk flag)
    assert device.subscribe("sensor/commands", 1) == [1]
    cli.ok("iot-data", "publish", "--topic", "sensor/commands", "--qos", "1",
           "--cli-binary-format", "raw-in-base64-out", "--payload", '{"cmd":"blink"}')
    msg = device.expect(topic="sensor/commands")
    assert json.loads(msg.payload) == {"cmd": "blink"}
    device.disconnect()
    watcher.disconnect()


class MosquittoSub:
    """mosquitto_sub -d under stdbuf, output lines collected by a thread."""

    def __init__(self, argv):
        self.argv = ["stdbuf", "-oL", "-eL"] + argv
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines = []
        self.q = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            line = line.rstrip(b"\n").decode(errors="replace")
            self.lines.append(line)
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, needle, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError("mosquitto_sub: no %r within %.1fs:\n%s" % (
                    needle, timeout, "\n".join(self.lines)))
            if line is None:
                raise AssertionError("mosquitto_sub exited (%s) before %r:\n%s" % (
                    self.proc.wait(), needle, "\n".join(self.lines)))
            if needle in line:
                return line

    def finish(self, timeout=15):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("mosquitto_sub still running:\n%s" % "\n".join(self.lines))
        self.reader.join(5)  # the process has exited; its last lines may still be in the pipe
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def mosquitto_tls_args(server, seed, version):
    return ["-h", "localhost", "-p", str(server.mqtts_port), "-V", version,
            "--cafile", seed.root_ca, "--cert", seed.cert, "--key", seed.key]


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_device_mosquitto_clients_tls(cli, server, tmp_path, version):
    for tool in ("mosquitto_pub", "mosquitto_sub", "stdbuf"):
        assert shutil.which(tool), "%s not installed" % tool
    seed = run_tutorial(cli, tmp_path / "iot-certs")
    sub = MosquittoSub(["mosquitto_sub", "-d"] + mosquitto_tls_args(server, seed, version) +
                       ["-i", THING + "-sub", "-t", "sensor/data", "-q", "1", "-C", "2",
                        "-W", "20", "-F", "MSG|%t|%q|%p"])
    try:
        sub.wait_for("received SUBACK")
        readings = [sensor_reading(i) for i in range(2)]
        for r in readings:
            res = subprocess.run(["mosquitto_pub", "-d"] + mosquitto_tls_args(server, seed, version)
                                 + ["-i", THING, "-t", "sensor/data", "-q", "1",
                                    "-m", json.dumps(r)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=CLI_TIMEOUT)
            out = res.stdout.decode(errors="replace")
            assert res.returncode == 0, out
            assert "received PUBACK" in out, out
        assert sub.finish() == 0, "\n".join(sub.lines)
    finally:
        sub.kill()
    got = [line.split("|", 3) for line in sub.lines if line.startswith("MSG|")]
    assert [(t, q) for _m, t, q, _p in got] == [("sensor/data", "1")] * 2
    assert [json.loads(p) for _m, _t, _q, p in got] == readings


# ====================================================================== least privilege

RESTRICTED_THING = "Sensor-002"


def register_restricted(cli, workdir, thing=RESTRICTED_THING):
    """A second device, registered with the same commands, whose policy allows connecting only
    as its attached thing and publish/receive/subscribe only below sensor/<client id>/."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    created = cli.ok("iot", "create-keys-and-certificate", "--set-as-active",
                     "--certificate-pem-outfile", "device.cert.pem",
                     "--public-key-outfile", "device.public.key",
                     "--private-key-outfile", "device.private.key", cwd=workdir)
    arn = created["certificateArn"]
    p = arn_prefix(arn)
    (workdir / "restricted-policy.json").write_text(policy(
        allow("iot:Connect", p + "client/${iot:Connection.Thing.ThingName}",
              {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}),
        allow(["iot:Publish", "iot:Receive"], p + "topic/sensor/${iot:ClientId}/*"),
        allow("iot:Subscribe", p + "topicfilter/sensor/${iot:ClientId}/*"),
    ))
    cli.ok("iot", "create-policy", "--policy-name", "RestrictedDevicePolicy",
           "--policy-document", "file://restricted-policy.json", cwd=workdir)
    cli.ok("iot", "attach-policy", "--policy-name", "RestrictedDevicePolicy", "--target", arn)
    cli.ok("iot", "create-thing", "--thing-name", thing)
    cli.ok("iot", "attach-thing-principal", "--thing-name", thing, "--principal", arn)
    return {"cert": str(workdir / "device.cert.pem"), "key": str(workdir / "device.private.key"),
            "arn": arn, "id": created["certificateId"], "thing": thing}


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_restricted_policy_allows_own_topics_and_refuses_others(cli, server, clients, tmp_path,
                                                               version):
    dev = register_restricted(cli, tmp_path / "sensor-002")
    thing = dev["thing"]
    bystander = clients.connected(version=V5, name="bystander")   # sees everything on sensor/#
    assert bystander.subscribe("sensor/#", 0) == [0]

    r = connect_device_raw(server, dev["cert"], dev["key"], thing, version)
    own = "sensor/%s/temperature" % thing
    # topicfilter/sensor/<id>/+ matches the policy's topicfilter/sensor/<id>/* (`+` is literal)
    assert r.subscribe([("sensor/%s/+" % thing, 1)]).codes == [1]
    ack = r.publish(own, b"21.5", qos=1)
    if version == 5:
        assert ack.reason_code == 0, ack
    msg = r.expect(rawmqtt.PUBLISH)
    assert (msg.topic, msg.payload) == (own, b"21.5")
    r.ack(msg)
    assert bystander.expect(topic=own).payload == b"21.5"

    # forbidden filters get a failure code in the SUBACK; the connection stays up
    failure = RC_NOT_AUTHORIZED if version == 5 else V311_SUBACK_FAILURE
    assert r.subscribe([("sensor/other/+", 1)]).codes == [failure]
    assert r.subscribe([("sensor/#", 1)]).codes == [failure]
    assert r.subscribe([("sensor/%s/humidity" % thing, 1), ("sensor/other/humidity", 1)]).codes \
        == [1, failure]
    still_open(r)

    # another client id with this certificate: CONNACK "not authorized"
    assert_connect_not_authorized(server, dev["cert"], dev["key"], "Intruder-999", version)
    # the thing name of a thing this certificate is not attached to: refused too
    cli.ok("iot", "create-thing", "--thing-name", "Sensor-003")
    assert_connect_not_authorized(server, dev["cert"], dev["key"], "Sensor-003", version)

    # a forbidden publish: MQTT 5 PUBACK 0x87 (connection kept), MQTT 3.1.1 connection closed
    forbidden = "sensor/other/temperature"
    if version == 5:
        ack = r.publish(forbidden, b"nope", qos=1)
        assert ack.reason_code == RC_NOT_AUTHORIZED, ack
        still_open(r)
    else:
        r.send(rawmqtt.publish(forbidden, b"nope", qos=1, pid=r.next_pid(), version=4))
        pkts = r.wait_closed(TIMEOUT)
        assert not any(p.type == rawmqtt.PUBACK for p in pkts), pkts
    r.close()
    marker = "sensor/%s/marker" % unique("m")
    bystander.publish(marker, b"m", qos=0)
    assert all(m.topic != forbidden for m in bystander.collect_until(marker)), \
        "a forbidden publish was delivered"


def test_restricted_device_refused_once_detached_from_its_thing(cli, server, tmp_path):
    dev = register_restricted(cli, tmp_path / "sensor-002")
    r = connect_device_raw(server, dev["cert"], dev["key"], dev["thing"], 5)
    r.disconnect(wait_closed=True)
    cli.ok("iot", "detach-thing-principal", "--thing-name", dev["thing"], "--principal", dev["arn"])
    assert_connect_not_authorized(server, dev["cert"], dev["key"], dev["thing"], 5)


# ====================================================================== certificate status

def _update_status(cli, cert_id, status):
    cli.ok("iot", "update-certificate", "--certificate-id", cert_id, "--new-status", status)
    return time.monotonic()


def _assert_cut(raw, t_done, what):
    """The server closed `raw` no later than CUT_WITHIN (+ slack) after the API call returned."""
    try:
        pkts = raw.wait_closed(CUT_WITHIN + CUT_SLACK)
    except AssertionError:
        raise AssertionError("%s: the live connection was not closed within %.1fs" % (
            what, CUT_WITHIN + CUT_SLACK))
    finally:
        raw.close()
    assert time.monotonic() - t_done <= CUT_WITHIN + CUT_SLACK + 0.2
    for p in pkts:
        if p.type == rawmqtt.DISCONNECT:
            assert p.reason_code >= 0x80, "DISCONNECT must carry an error reason: %r" % p
    return pkts


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
@pytest.mark.parametrize("status", ["REVOKED", "INACTIVE"])
def test_certificate_leaving_active_cuts_live_connection(cli, server, tmp_path, status, version):
    seed = run_tutorial(cli, tmp_path / "iot-certs")
    r = connect_device_raw(server, seed.cert, seed.key, THING, version)
    assert r.subscribe([("sensor/data", 1)]).codes == [1]
    still_open(r)

    t_done = _update_status(cli, seed.cert_id, status)
    _assert_cut(r, t_done, status)
    desc = cli.ok("iot", "describe-certificate", "--certificate-id", seed.cert_id)
    assert desc["certificateDescription"]["status"] == status

    assert_connect_refused(server, seed.cert, seed.key, THING, version,
                           codes={RC_NOT_AUTHORIZED, 0x86, 0x8A} if version == 5 else {4, 5})

    if status == "REVOKED":
        res = subprocess.run(["mosquitto_sub", "-d"] + mosquitto_tls_args(
            server, seed, "mqttv5" if version == 5 else "mqttv311") +
            ["-i", THING, "-t", "sensor/data", "-C", "1", "-W", "5"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=CLI_TIMEOUT)
        out = res.stdout.decode(errors="replace")
        assert res.returncode != 0, "mosquitto_sub with a revoked certificate:\n" + out
        assert "received CONNACK (0)" not in out and "received SUBACK" not in out, out
    else:
        # INACTIVE is reversible: ACTIVE again lets the device back in
        _update_status(cli, seed.cert_id, "ACTIVE")
        r2 = connect_device_raw(server, seed.cert, seed.key, THING, version)
        r2.disconnect(wait_closed=True)


def test_certificate_deleted_after_deactivation(cli, server, tmp_path):
    seed = run_tutorial(cli, tmp_path / "iot-certs")
    r = connect_device_raw(server, seed.cert, seed.key, THING, 5)

    # an ACTIVE certificate cannot be deleted; the failed call leaves the device connected
    cli.fails("CertificateStateException", "iot", "delete-certificate",
              "--certificate-id", seed.cert_id)
    still_open(r)

    t_done = _update_status(cli, seed.cert_id, "INACTIVE")
    _assert_cut(r, t_done, "INACTIVE")
    # still attached to its thing: DeleteConflict until detached
    cli.fails("DeleteConflictException", "iot", "delete-certificate",
              "--certificate-id", seed.cert_id, "--force-delete")
    cli.ok("iot", "detach-thing-principal", "--thing-name", THING, "--principal", seed.arn)
    cli.ok("iot", "delete-certificate", "--certificate-id", seed.cert_id, "--force-delete")
    cli.fails("ResourceNotFoundException", "iot", "describe-certificate",
              "--certificate-id", seed.cert_id)
    assert_connect_refused(server, seed.cert, seed.key, THING, 5)
    assert_connect_refused(server, seed.cert, seed.key, THING, 4)
