"""The seed tutorial's Google Cloud part (../shared/seed/, sections 3.2, 3.3, 4 and 6) against
Nimbus's Pub/Sub port, with Google's own tools:

a. Section 3.2's `gcloud pubsub topics create iot-sensor-data` and `gcloud pubsub subscriptions
   create iot-sensor-sub --topic=iot-sensor-data`, verbatim but for `--format=json`, then
   `topics publish` (attributes), `subscriptions pull --auto-ack`, `topics list`,
   `topics list-subscriptions`, `subscriptions describe`, `topics delete` (the subscription
   then names `_deleted-topic_`), and the errors for an existing topic and a missing
   subscription. gcloud talks REST (HTTP/1.1) to the port that serves gRPC, pointed there with
   CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB, without credentials
   (CLOUDSDK_AUTH_DISABLE_CREDENTIALS) and with a temporary CLOUDSDK_CONFIG, so the user's
   gcloud configuration is neither read nor written. The rest of section 3.2 (`auth login`,
   `services enable`, the IAM service account and its key) talks to other Google services,
   not Pub/Sub, and is not run.
b. The seed's Python classes, unchanged (tests/clients/seed/ holds sections 3.3, 4.1, 4.2 and
   6 verbatim; test_fixtures_are_the_seed_verbatim checks them against the seed when it is at
   hand), run by tests/clients/seed/seed_driver.py on the SDK's bundled Python with the SDK's
   google-cloud-pubsub (lib/third_party; grpc comes with the bundled Python) and Debian's
   paho-mqtt 1.6.1 (the `paho` package alone on the path), PUBSUB_EMULATOR_HOST naming
   Nimbus: GCPPubSubClient.publish / publish_batch, GCPPubSubSubscriber.pull / subscribe;
   MQTTBridge forwarding sensor/# and device/+/status with its source_topic attribute;
   BidirectionalBridge up, down and down-then-up again; IoTPipeline with gcp_enabled and its
   log, alert and cloud handlers. Topics and subscriptions are made with section 3.2's gcloud
   commands, as the tutorial does.

The seed connects paho to port 1883 of the broker host it is given. Each run of this module
serves MQTT on 1883 of a random loopback address (127.a.b.c: all of 127/8 is loopback on
Linux), so the seed runs unchanged and parallel suites do not collide.

gcloud is Google's google-cloud-cli (not a Debian package): without it the module is skipped
with the reason printed. NIMBUS_GCLOUD overrides the `gcloud` found in PATH.

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_pubsub_seed_gcloud.py
"""

import base64
import datetime
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import time
import urllib.request

import paho
import pytest

from conftest import REPO_ROOT, TIMEOUT, Nimbus, _find_binary

HERE = pathlib.Path(__file__).resolve().parent
SEED_DIR = HERE / "seed"
SEED_TEXT = pathlib.Path(os.environ.get(
    "NIMBUS_SEED", REPO_ROOT.parent / "shared" / "seed" / "000_cf80fe177c4b2a37.txt"))
# The tutorial's Python blocks, in order: 2.3 (AWS), 3.3, 4.1, 4.2, 5.1, 5.2, 6.
SEED_FILES = {1: "gcp_pubsub_client.py", 2: "mqtt_bridge.py", 3: "bidirectional_bridge.py",
              6: "iot_pipeline.py"}
CLI_TIMEOUT = 60
DRIVER_TIMEOUT = 90
WAIT = max(3 * TIMEOUT, 15.0)     # one wait of the driver (a message, a SUBACK)


def _skip(request, reason):
    """Skip, printing the reason on pytest's terminal (`pytest -q` hides skip reasons without
    -rs; the output of tests is captured)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("%s: SKIPPED: %s" % (pathlib.Path(__file__).name, reason),
                                yellow=True)
    pytest.skip(reason)


def _gcloud_path():
    path = os.environ.get("NIMBUS_GCLOUD") or shutil.which("gcloud")
    return path if path and os.access(path, os.X_OK) else None


# ====================================================================== server

class SeedNimbus(Nimbus):
    """Nimbus with MQTT on port 1883 of `mqtt_host` (what the seed's paho clients dial) and the
    Pub/Sub port (gRPC and REST) on 127.0.0.1:0."""

    def __init__(self, binary, workdir, mqtt_host):
        super().__init__(binary, workdir)
        self.mqtt_host = mqtt_host

    def command(self):
        argv = super().command()
        argv[argv.index("--mqtt") + 1] = "%s:1883" % self.mqtt_host if self.mqtt_host \
            else "127.0.0.1:0"
        argv[argv.index("--grpc") + 1] = "127.0.0.1:0"
        return argv

    @property
    def pubsub_port(self):
        return int(self.endpoints["grpc"].rpartition(":")[2])


@pytest.fixture(scope="module")
def seed_server(tmp_path_factory):
    binary = _find_binary()
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("set NIMBUS_BIN to the nimbus binary", pytrace=False)
    srv, failures = None, []
    for attempt in range(6):
        # 1883 on a random loopback address; the last attempt gives up on 1883 (part b skips).
        host = None if attempt == 5 else "127.%d.%d.%d" % (
            random.randint(1, 254), random.randint(0, 255), random.randint(1, 254))
        srv = SeedNimbus(binary, tmp_path_factory.mktemp("nimbus"), host)
        try:
            srv.start()
            break
        except RuntimeError as e:
            failures.append(str(e)[-2000:])
            srv = None
    if srv is None:
        pytest.fail("nimbus did not start:\n%s" % "\n".join(failures), pytrace=False)
    srv.start_failures = failures
    yield srv
    err = srv.cleanup()
    if err:
        pytest.fail("%s\n%s" % (err, srv.log_tail()), pytrace=False)


# ====================================================================== gcloud

class Gcloud:
    """`gcloud ...` against one Nimbus for one project, hermetic: a fresh CLOUDSDK_CONFIG, no
    credentials, no GCE metadata probe (not even its DNS lookup), no update check, no usage
    reporting, no proxy for loopback: it connects to Nimbus's port and nowhere else."""

    def __init__(self, binary, server, config_dir, project):
        self.binary = binary
        self.server = server
        self.project = project
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("CLOUDSDK_") and k not in (
                        "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")}
        self.env.update(
            CLOUDSDK_CONFIG=str(config_dir),
            CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB="http://127.0.0.1:%d/" % server.pubsub_port,
            CLOUDSDK_AUTH_DISABLE_CREDENTIALS="true",
            CLOUDSDK_CORE_PROJECT=project,
            CLOUDSDK_CORE_DISABLE_PROMPTS="1",
            CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
            CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
            CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
            # Named, the environment is not deduced: no lookup of metadata.google.internal.
            CLOUDSDK_METRICS_ENVIRONMENT="nimbus-tests",
            NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")

    def run(self, *args):
        argv = [self.binary] + list(args) + ["--format=json"]
        res = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=CLI_TIMEOUT)
        res.stdout, res.stderr = (res.stdout.decode(errors="replace"),
                                  res.stderr.decode(errors="replace"))
        return res

    @staticmethod
    def describe(res):
        return "gcloud exit %d\n$ %s\n--- stdout\n%s\n--- stderr\n%s" % (
            res.returncode, " ".join(res.args), res.stdout, res.stderr)

    def ok(self, *args):
        """A command that must succeed: (parsed JSON stdout or None, stderr)."""
        res = self.run(*args)
        assert res.returncode == 0, self.describe(res)
        text = res.stdout.strip()
        return (json.loads(text) if text else None), res.stderr

    def fails(self, *args):
        res = self.run(*args)
        assert res.returncode != 0, "expected a failure:\n" + self.describe(res)
        return res.stderr

    def topic(self, topic):
        return "projects/%s/topics/%s" % (self.project, topic)

    def subscription(self, sub):
        return "projects/%s/subscriptions/%s" % (self.project, sub)

    def create(self, topic, *subs):
        """Section 3.2: `gcloud pubsub topics create TOPIC`, `gcloud pubsub subscriptions create
        SUB --topic=TOPIC`."""
        self.ok("pubsub", "topics", "create", topic)
        for sub in subs:
            self.ok("pubsub", "subscriptions", "create", sub, "--topic=" + topic)

    def pull_all(self, sub, count, timeout=WAIT):
        """`gcloud pubsub subscriptions pull SUB --auto-ack --limit=10` until `count` messages
        came (a pull may answer with fewer than are available)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            assert time.monotonic() < deadline, "pulled %d of %d: %r" % (len(got), count, got)
            out, _ = self.ok("pubsub", "subscriptions", "pull", sub, "--auto-ack", "--limit=10")
            got.extend(out)
        return got


@pytest.fixture(scope="module")
def gcloud_binary(request):
    path = _gcloud_path()
    if not path:
        _skip(request, "gcloud not found (Google's google-cloud-cli, which is not a Debian "
              "package: https://cloud.google.com/sdk/docs/install; "
              "NIMBUS_GCLOUD=/path/to/gcloud)")
    return path


@pytest.fixture
def gcloud(gcloud_binary, seed_server, tmp_path, request):
    """gcloud for a project of this test's own (projects keep the tests apart on one server)."""
    project = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    config = tmp_path / "gcloud-config"
    config.mkdir()
    return Gcloud(gcloud_binary, seed_server, config, project)


def rest_pull(server, subscription):
    """POST /v1/{subscription}:pull with returnImmediately on the Pub/Sub port; the JSON
    answer."""
    request = urllib.request.Request(
        "http://127.0.0.1:%d/v1/%s:pull" % (server.pubsub_port, subscription),
        data=json.dumps({"maxMessages": 10, "returnImmediately": True}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())


def decoded(received):
    return base64.b64decode(received["message"]["data"]).decode()


# ====================================================================== a. gcloud

def test_gcloud_section_3_2_creates_topic_and_subscription(gcloud):
    topic_name = gcloud.topic("iot-sensor-data")
    sub_name = gcloud.subscription("iot-sensor-sub")

    out, err = gcloud.ok("pubsub", "topics", "create", "iot-sensor-data")
    assert [t["name"] for t in out] == [topic_name]
    assert "Created topic [%s]." % topic_name in err

    out, err = gcloud.ok("pubsub", "subscriptions", "create", "iot-sensor-sub",
                         "--topic=iot-sensor-data")
    assert len(out) == 1, out
    assert out[0]["name"] == sub_name and out[0]["topic"] == topic_name
    assert out[0]["ackDeadlineSeconds"] == 10               # Google's defaults
    assert out[0]["messageRetentionDuration"] == "604800s"
    assert "Created subscription [%s]." % sub_name in err

    listed, _ = gcloud.ok("pubsub", "topics", "list")
    assert [t["name"] for t in listed] == [topic_name]
    subs, _ = gcloud.ok("pubsub", "topics", "list-subscriptions", "iot-sensor-data")
    assert subs == [sub_name]
    described, _ = gcloud.ok("pubsub", "subscriptions", "describe", "iot-sensor-sub")
    assert described["name"] == sub_name and described["topic"] == topic_name
    assert described["ackDeadlineSeconds"] == 10

    err = gcloud.fails("pubsub", "topics", "create", "iot-sensor-data")
    assert "already exists" in err.lower(), err
    err = gcloud.fails("pubsub", "subscriptions", "create", "iot-sensor-sub",
                       "--topic=iot-sensor-data")
    assert "already exists" in err.lower(), err
    err = gcloud.fails("pubsub", "subscriptions", "describe", "no-such-sub")
    assert "NOT_FOUND" in err, err
    err = gcloud.fails("pubsub", "subscriptions", "create", "orphan-sub", "--topic=no-such-topic")
    assert "topic not found" in err.lower(), err


def test_gcloud_publish_pull_list_describe_delete(gcloud):
    gcloud.create("iot-sensor-data", "iot-sensor-sub")
    reading = '{"device_id": "pi-001", "temperature": 25.5}'
    out, _ = gcloud.ok("pubsub", "topics", "publish", "iot-sensor-data", "--message=" + reading,
                       "--attribute=device_type=raspberry_pi,unit=C")
    first = out["messageIds"]
    out, _ = gcloud.ok("pubsub", "topics", "publish", "iot-sensor-data", "--message=plain text")
    second = out["messageIds"]
    assert len(first) == 1 and len(second) == 1 and first != second

    pulled = gcloud.pull_all("iot-sensor-sub", 2)
    by_id = {m["message"]["messageId"]: m for m in pulled}
    assert set(by_id) == {first[0], second[0]}, pulled
    assert decoded(by_id[first[0]]) == reading
    assert by_id[first[0]]["message"]["attributes"] == {"device_type": "raspberry_pi",
                                                        "unit": "C"}
    assert decoded(by_id[second[0]]) == "plain text"
    assert not by_id[second[0]]["message"].get("attributes")
    for m in pulled:
        assert m["ackId"] and m["message"]["publishTime"].endswith("Z")
        assert m.get("ackStatus", "SUCCESS") == "SUCCESS"
    # --auto-ack acknowledged both: nothing left. gcloud's GA pull sends returnImmediately
    # false with the header X-Server-Timeout: 20 (Google's system parameter bounding the
    # request on the server); Nimbus holds an empty pull for its own 30 s cap instead, so this
    # one command takes 30 s (reported; not asserted on).
    out, _ = gcloud.ok("pubsub", "subscriptions", "pull", "iot-sensor-sub", "--auto-ack")
    assert out == []

    gcloud.create("other-topic")
    listed, _ = gcloud.ok("pubsub", "topics", "list")
    assert sorted(t["name"] for t in listed) == [gcloud.topic("iot-sensor-data"),
                                                 gcloud.topic("other-topic")]

    _, err = gcloud.ok("pubsub", "topics", "delete", "iot-sensor-data")
    assert "Deleted topic [%s]." % gcloud.topic("iot-sensor-data") in err
    listed, _ = gcloud.ok("pubsub", "topics", "list")
    assert [t["name"] for t in listed] == [gcloud.topic("other-topic")]
    described, _ = gcloud.ok("pubsub", "subscriptions", "describe", "iot-sensor-sub")
    assert described["topic"] == "_deleted-topic_"
    err = gcloud.fails("pubsub", "topics", "publish", "iot-sensor-data", "--message=gone")
    assert "NOT_FOUND" in err, err
    _, err = gcloud.ok("pubsub", "subscriptions", "delete", "iot-sensor-sub")
    assert "Deleted subscription [%s]." % gcloud.subscription("iot-sensor-sub") in err
    out, _ = gcloud.ok("pubsub", "subscriptions", "list")
    assert out == []


# ====================================================================== b. the seed's classes

@pytest.fixture(scope="module")
def seed_python(gcloud_binary, tmp_path_factory, request):
    """(bundled python3, PYTHONPATH) for the seed's code, or a skip saying what is missing."""
    sdk = pathlib.Path(os.path.realpath(gcloud_binary)).parents[1]
    python = sdk / "platform" / "bundledpythonunix" / "bin" / "python3"
    third_party = sdk / "lib" / "third_party"
    if not os.access(python, os.X_OK) or not third_party.is_dir():
        _skip(request, "the Cloud SDK at %s has no bundled Python (%s) or no lib/third_party"
              % (sdk, python))
    # Debian's paho-mqtt is pure Python: its `paho` package alone, not all of dist-packages.
    paho_dir = tmp_path_factory.mktemp("paho-only")
    (paho_dir / "paho").symlink_to(pathlib.Path(paho.__file__).resolve().parent)
    path = os.pathsep.join([str(SEED_DIR), str(paho_dir), str(third_party)])
    probe = subprocess.run(
        [str(python), "-c", "from google.cloud import pubsub_v1; import grpc; "
         "import paho.mqtt.client; print(grpc.__version__)"],
        env=dict(os.environ, PYTHONPATH=path, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if probe.returncode != 0:
        _skip(request, "the SDK's Python cannot import google.cloud.pubsub_v1, grpc and paho:\n"
              + probe.stdout.decode(errors="replace")[-2000:])
    return str(python), path


def run_seed(request, seed_python, seed_server, gcloud, tmp_path, scenario, **config):
    """Runs seed_driver.py SCENARIO; returns what it observed."""
    if not seed_server.mqtt_host:
        _skip(request, "port 1883 was not free on any loopback address tried (a broker "
              "listening on 0.0.0.0:1883?): the seed's paho clients dial 1883\n"
              + "\n".join(seed_server.start_failures))
    python, path = seed_python
    config.update(project=gcloud.project, mqtt_host=seed_server.mqtt_host, timeout=WAIT)
    cfg, out = tmp_path / ("%s.json" % scenario), tmp_path / ("%s.out.json" % scenario)
    cfg.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PUBSUB_", "GOOGLE_", "PYTHON", "CLOUDSDK_"))}
    env.update(PYTHONPATH=path, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONIOENCODING="utf-8",
               PUBSUB_EMULATOR_HOST="127.0.0.1:%d" % seed_server.pubsub_port,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    # cwd: the seed sets GOOGLE_APPLICATION_CREDENTIALS='gcp-credentials.json' (relative); the
    # emulator settings make the client use no credentials, so the file is never needed.
    res = subprocess.run([python, str(SEED_DIR / "seed_driver.py"), scenario, str(cfg), str(out)],
                         cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=DRIVER_TIMEOUT)
    assert res.returncode == 0, "seed_driver %s exit %d\n--- stdout\n%s\n--- stderr\n%s" % (
        scenario, res.returncode, res.stdout.decode(errors="replace"),
        res.stderr.decode(errors="replace"))
    return json.loads(out.read_text(encoding="utf-8"))


def test_seed_pubsub_client_publish_pull_subscribe(seed_python, seed_server, gcloud, tmp_path,
                                                   request):
    """Section 3.3: the example's five readings with device_type, publish_batch, pull (which
    acks) and the streaming subscribe; a message from `gcloud pubsub topics publish` is pulled
    by the seed's subscriber alongside."""
    gcloud.create("iot-sensor-data", "iot-sensor-sub")
    out, _ = gcloud.ok("pubsub", "topics", "publish", "iot-sensor-data",
                       '--message={"device_id": "gcloud", "temperature": 30.0}',
                       "--attribute=device_type=cli")
    cli_id = out["messageIds"][0]

    r = run_seed(request, seed_python, seed_server, gcloud, tmp_path, "pubsub",
                 topic="iot-sensor-data", subscription="iot-sensor-sub")

    ids, batch_ids = r["ids"], r["batch_ids"]
    assert len(set(ids + batch_ids + [cli_id])) == 9
    assert all(re.fullmatch(r"\d+", i) for i in ids + batch_ids)
    pulled = {m["message_id"]: m for m in r["pulled"]}
    assert set(pulled) == set(ids + batch_ids + [cli_id]), r["pulled"]
    assert len(r["pulled"]) == 9                       # each message once
    for i, message_id in enumerate(ids):
        m = pulled[message_id]
        assert m["attributes"] == {"device_type": "raspberry_pi"}
        assert m["data"]["device_id"] == "pi-001"
        assert m["data"]["temperature"] == 25.5 + i * 0.5
        assert abs(m["data"]["timestamp"] - time.time()) < 300
    for i, message_id in enumerate(batch_ids):
        assert pulled[message_id] == {"data": {"device_id": "esp32-%d" % i, "humidity": 60 + i},
                                      "attributes": {}, "message_id": message_id}
    assert pulled[cli_id]["data"] == {"device_id": "gcloud", "temperature": 30.0}
    assert pulled[cli_id]["attributes"] == {"device_type": "cli"}

    streamed = sorted(r["streamed"], key=lambda m: m["data"]["seq"])
    assert streamed == [{"data": {"device_id": "pi-002", "seq": i},
                         "attributes": {"device_type": "esp32", "seq": str(i)}}
                        for i in range(3)]

    printed = r["printed"]
    for message_id in ids + r["stream_ids"]:
        assert "발행됨: %s" % message_id in printed
    assert "배치 발행 완료: 3개" in printed
    assert "구독 시작: %s" % gcloud.subscription("iot-sensor-sub") in printed
    # pull() acknowledged its nine: nothing is left to deliver. (A returnImmediately pull over
    # REST: gcloud's GA pull always waits for a message, see the test above.)
    assert rest_pull(seed_server, gcloud.subscription("iot-sensor-sub")) == {}


def test_seed_mqtt_bridge_forwards_to_pubsub(seed_python, seed_server, gcloud, tmp_path, request):
    """Section 4.1: MQTTBridge (client id mqtt_bridge) subscribes sensor/# and device/+/status
    and publishes each message, wrapped with its source topic and a timestamp, with a
    source_topic attribute; other topics are not forwarded; its statistics count them."""
    gcloud.create("iot-sensor-data", "iot-sensor-sub")
    before = time.time()
    r = run_seed(request, seed_python, seed_server, gcloud, tmp_path, "bridge",
                 topic="iot-sensor-data", subscription="iot-sensor-sub")

    assert r["granted"] == [[0], [0]]
    by_topic = {m["attributes"]["source_topic"]: m for m in r["pulled"]}
    assert len(r["pulled"]) == 3 and set(by_topic) == {
        "sensor/room1/temp", "device/pi-001/status", "sensor/marker"}, r["pulled"]
    expected = {"sensor/room1/temp": {"device_id": "pi-001", "temperature": 22.5},
                "device/pi-001/status": {"raw": "online"},
                "sensor/marker": {"last": True}}
    for topic, data in expected.items():
        m = by_topic[topic]
        assert m["attributes"] == {"source_topic": topic}
        assert m["data"]["source_topic"] == topic and m["data"]["data"] == data
        assert before - 1 <= m["data"]["timestamp"] <= time.time() + 1
    assert r["stats"] == {"messages_received": 3, "messages_forwarded": 3, "errors": 0}
    printed = r["printed"]
    assert "MQTT 브릿지 시작: %s -> GCP" % seed_server.mqtt_host in printed
    for line in ("로컬 브로커 연결됨", "구독: sensor/#", "구독: device/+/status",
                 "  수신: 3", "  전달: 3", "  오류: 0"):
        assert line in printed, printed


def test_seed_bidirectional_bridge(seed_python, seed_server, gcloud, tmp_path, request):
    """Section 4.2: sensor/# goes up as {"topic", "payload"}; a payload that is not JSON is
    reported and not sent; messages on the down subscription come out on their MQTT topic
    ("command" when they name none); one sent down to sensor/echo comes back up."""
    gcloud.create("iot-up", "iot-up-sub")
    gcloud.create("iot-down", "iot-down-sub")
    r = run_seed(request, seed_python, seed_server, gcloud, tmp_path, "bidirectional",
                 up_topic="iot-up", up_sub="iot-up-sub", down_topic="iot-down",
                 down_sub="iot-down-sub")

    assert r["granted"] == [[0]]
    assert sorted((m["data"]["topic"], json.dumps(m["data"]["payload"])) for m in r["upstream"]) \
        == [("sensor/marker", '{"n": 1}'), ("sensor/room2", '{"temperature": 23.1}')]
    assert all(m["attributes"] == {} for m in r["upstream"])
    assert sorted(map(tuple, r["downstream"])) == [("command", '{"reboot": true}'),
                                                   ("device/pi-001/command", '{"led": "on"}')]
    assert [m["data"] for m in r["echoed"]] == [{"topic": "sensor/echo",
                                                 "payload": {"from": "cloud"}}]
    printed = r["printed"]
    for line in ("양방향 브릿지 시작", "[UP] sensor/room2", "[UP] sensor/marker",
                 "[DOWN] device/pi-001/command", "[DOWN] command", "[DOWN] sensor/echo",
                 "[UP] sensor/echo"):
        assert line in printed, printed
    assert [line for line in printed if line.startswith("업스트림 오류")] == [
        "업스트림 오류: Expecting value: line 1 column 1 (char 0)"]
    assert not [line for line in printed if line.startswith("다운스트림 오류")], printed
    assert "[UP] sensor/bad" not in printed


def test_seed_pipeline_with_cloud_handler(seed_python, seed_server, gcloud, tmp_path, request):
    """Section 6 with gcp_enabled: every reading on sensor/# and device/+/status goes through
    log_handler, alert_handler (above 35 °C) and cloud_handler, whose Pub/Sub messages are
    pulled back; a payload that is not JSON is reported; other topics never reach it."""
    gcloud.create("iot-pipeline", "iot-pipeline-sub")
    r = run_seed(request, seed_python, seed_server, gcloud, tmp_path, "pipeline",
                 topic="iot-pipeline", subscription="iot-pipeline-sub")

    assert r["granted"] == [[0], [0]]
    by_device = {m["data"]["device_id"]: m for m in r["pulled"]}
    assert len(r["pulled"]) == 3 and set(by_device) == {"pi-001", "pi-002", "unknown"}
    assert by_device["pi-001"]["data"]["data"] == {"device_id": "pi-001", "temperature": 24.0,
                                                   "humidity": 40}
    assert by_device["pi-002"]["data"]["data"] == {"device_id": "pi-002", "temperature": 36.6}
    assert by_device["unknown"]["data"]["data"] == {"status": "online"}
    stamps = {}
    for device, m in by_device.items():
        assert m["attributes"] == {}
        assert set(m["data"]) == {"device_id", "data", "timestamp"}
        stamps[device] = datetime.datetime.fromisoformat(m["data"]["timestamp"])
        assert abs((datetime.datetime.now() - stamps[device]).total_seconds()) < 300
    assert stamps["pi-001"] <= stamps["pi-002"] <= stamps["unknown"]   # one paho thread

    printed = r["printed"]
    for line in ("구독: sensor/#", "구독: device/+/status", "IoT 파이프라인 시작됨"):
        assert line in printed, printed
    logged = [line for line in printed if re.match(r"\[\d{4}-", line)]
    assert [line.split("] ", 1)[1] for line in logged] == [
        "pi-001: {'device_id': 'pi-001', 'temperature': 24.0, 'humidity': 40}",
        "pi-002: {'device_id': 'pi-002', 'temperature': 36.6}",
        "unknown: {'status': 'online'}"]
    assert [line for line in printed if line.startswith("[ALERT]")] == [
        "[ALERT] 고온 감지: pi-002 = 36.6°C"]
    assert [line for line in printed if line.startswith("메시지 처리 오류")] == [
        "메시지 처리 오류: Expecting value: line 1 column 1 (char 0)"]
    assert not any("fan-1" in line for line in printed)


def test_fixtures_are_the_seed_verbatim(request):
    """tests/clients/seed/ holds the tutorial's code blocks byte for byte."""
    if not SEED_TEXT.is_file():
        _skip(request, "the seed tutorial is not at %s (NIMBUS_SEED=...): fixtures not compared"
              % SEED_TEXT)
    blocks = re.findall(r"^```python\n(.*?)^```$", SEED_TEXT.read_text(encoding="utf-8"),
                        re.S | re.M)
    assert len(blocks) == 7, "the seed's Python blocks changed: %d" % len(blocks)
    for index, name in SEED_FILES.items():
        assert (SEED_DIR / name).read_text(encoding="utf-8") == blocks[index], name
