"""Drives the seed tutorial's classes (the other files of this directory, copied verbatim from
sections 3.3, 4.1, 4.2 and 6) against one Nimbus, as a user's program would: run by
test_pubsub_seed_gcloud.py on the Google Cloud SDK's bundled Python, google-cloud-pubsub from
the SDK's lib/third_party and paho-mqtt on PYTHONPATH, PUBSUB_EMULATOR_HOST naming Nimbus's
Pub/Sub port.

    python3 seed_driver.py SCENARIO CONFIG_JSON RESULT_JSON

SCENARIO is pubsub | bridge | bidirectional | pipeline. CONFIG_JSON carries the project, the
MQTT host (the seed connects to port 1883 of it), and the deadline per wait in seconds. The
driver writes what it observed (messages pulled, received over MQTT, the classes' statistics
and every line they printed) to RESULT_JSON; the test asserts on it. Every wait is bounded: a
missing event raises, which fails the run with a traceback.

The drivers only add observation to the seed's objects: an on_subscribe callback (the seed sets
none) so that publishing starts once the seed's subscriptions are granted, and the handlers the
seed's section 6 asks its user to add."""

import io
import json
import queue
import sys
import threading
import time

import paho.mqtt.client as mqtt

# The seed, unchanged.
from gcp_pubsub_client import GCPPubSubClient, GCPPubSubSubscriber
from mqtt_bridge import MQTTBridge
from bidirectional_bridge import BidirectionalBridge
from iot_pipeline import IoTPipeline, log_handler, alert_handler, cloud_handler


class Printed(io.TextIOBase):
    """sys.stdout for the run: the seed reports through print(); keep each line (from any
    thread) and pass it through."""

    def __init__(self, out):
        self.out = out
        self.lines = []
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, s):
        with self._lock:
            self.out.write(s)
            self._partial += s
            *done, self._partial = self._partial.split("\n")
            self.lines.extend(done)
        return len(s)

    def flush(self):
        self.out.flush()


PRINTED = Printed(sys.stdout)
sys.stdout = PRINTED


def deadline_after(seconds):
    return time.monotonic() + seconds


def remaining(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out waiting for " + what)
    return left


def count_subacks(client):
    """Installs an on_subscribe callback on a seed paho client (it sets none) and returns a
    queue receiving the granted QoS list of each SUBACK."""
    acks = queue.Queue()
    client.on_subscribe = lambda c, userdata, mid, granted: acks.put(list(granted))
    return acks


def wait_subacks(acks, n, timeout, what):
    deadline = deadline_after(timeout)
    granted = []
    for _ in range(n):
        try:
            granted.append(acks.get(timeout=remaining(deadline, what)))
        except queue.Empty:
            raise TimeoutError("%s: %d of %d SUBACKs" % (what, len(granted), n))
    return granted


def pull_until(subscriber, predicate, timeout, what):
    """The seed's GCPPubSubSubscriber.pull() (which acks) until `predicate(messages so far)`.
    On Nimbus as on Google, a pull answers as soon as a message is available."""
    deadline = deadline_after(timeout)
    got = []
    while not predicate(got):
        remaining(deadline, "%s (got %r)" % (what, got))
        got.extend(subscriber.pull(max_messages=10))
    return got


class Device:
    """A plain paho client standing in for the local devices and actuators: connects to the
    same broker as the seed (port 1883), publishes with QoS 1 and waits for the PUBACK, keeps
    what it receives."""

    def __init__(self, host, timeout, client_id):
        self.timeout = timeout
        self.messages = queue.Queue()
        self.c = mqtt.Client(client_id=client_id)
        connected = queue.Queue()
        self.acks = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc: connected.put(rc)
        self.c.on_subscribe = lambda c, u, mid, granted: self.acks.put(list(granted))
        self.c.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.payload.decode()))
        self.c.connect(host, 1883)
        self.c.loop_start()
        rc = connected.get(timeout=timeout)
        if rc != 0:
            raise RuntimeError("device CONNACK %r" % rc)

    def subscribe(self, topic):
        self.c.subscribe(topic, 1)
        return self.acks.get(timeout=self.timeout)

    def publish(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise TimeoutError("no PUBACK for %s" % topic)

    def receive(self, n, what):
        deadline = deadline_after(self.timeout)
        got = []
        while len(got) < n:
            try:
                got.append(self.messages.get(timeout=remaining(deadline, what)))
            except queue.Empty:
                raise TimeoutError("%s: got %r" % (what, got))
        return got

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


# ====================================================================== scenarios

def scenario_pubsub(cfg):
    """Section 3.3's example (five readings with device_type), publish_batch, pull and the
    streaming subscribe with its callback."""
    project, timeout = cfg["project"], cfg["timeout"]
    publisher = GCPPubSubClient(project, cfg["topic"])
    ids = []
    for i in range(5):
        data = {
            "device_id": "pi-001",
            "temperature": 25.5 + i * 0.5,
            "timestamp": int(time.time())
        }
        ids.append(publisher.publish(data, device_type="raspberry_pi"))
    batch = [{"device_id": "esp32-%d" % i, "humidity": 60 + i} for i in range(3)]
    batch_ids = publisher.publish_batch(batch)

    subscriber = GCPPubSubSubscriber(project, cfg["subscription"])
    pulled = pull_until(subscriber, lambda got: len(got) >= 8, timeout, "8 pulled messages")

    # Streaming pull: three more readings, received through the seed's callback.
    streamed = queue.Queue()
    streaming_pull = subscriber.subscribe(lambda data, attributes: streamed.put(
        {"data": data, "attributes": dict(attributes)}))
    stream_ids = [publisher.publish({"device_id": "pi-002", "seq": i}, device_type="esp32",
                                    seq=str(i)) for i in range(3)]
    deadline = deadline_after(timeout)
    received = []
    try:
        while len(received) < 3:
            try:
                received.append(streamed.get(timeout=remaining(deadline, "3 streamed")))
            except queue.Empty:
                raise TimeoutError("streamed: got %r" % received)
    finally:
        streaming_pull.cancel()
        streaming_pull.result(timeout=timeout)
    return {"ids": ids, "batch_ids": batch_ids, "pulled": pulled, "stream_ids": stream_ids,
            "streamed": received}


def scenario_bridge(cfg):
    """Section 4.1: MQTTBridge forwards sensor/# and device/+/status to the Pub/Sub topic."""
    project, timeout, host = cfg["project"], cfg["timeout"], cfg["mqtt_host"]
    bridge = MQTTBridge(local_broker=host, gcp_project=project, gcp_topic=cfg["topic"])
    acks = count_subacks(bridge.local_client)
    bridge.start()
    granted = wait_subacks(acks, 2, timeout, "the bridge's subscriptions")

    device = Device(host, timeout, "seed-device")
    device.publish("sensor/room1/temp", json.dumps({"device_id": "pi-001", "temperature": 22.5}))
    device.publish("device/pi-001/status", "online")           # not JSON: forwarded as raw
    device.publish("actuator/fan", json.dumps({"on": True}))   # matches neither filter
    device.publish("sensor/marker", json.dumps({"last": True}))
    device.close()

    subscriber = GCPPubSubSubscriber(project, cfg["subscription"])
    forwarded = {"sensor/room1/temp", "device/pi-001/status", "sensor/marker"}
    pulled = pull_until(subscriber,
                        lambda got: forwarded <= {m["attributes"].get("source_topic")
                                                  for m in got},
                        timeout, "the three messages forwarded by the bridge")
    bridge.stop()   # loop_stop() joins paho's thread: the statistics are final
    return {"granted": granted, "pulled": pulled, "stats": bridge.stats}


def scenario_bidirectional(cfg):
    """Section 4.2: up (sensor/# to the up topic) and down (the down subscription's messages
    to their MQTT topic, "command" by default), including a message going down and back up."""
    project, timeout, host = cfg["project"], cfg["timeout"], cfg["mqtt_host"]
    bridge = BidirectionalBridge(local_broker=host, gcp_project=project,
                                 up_topic=cfg["up_topic"], down_topic=cfg["down_topic"],
                                 down_sub=cfg["down_sub"])
    acks = count_subacks(bridge.local_client)
    bridge.start()
    granted = wait_subacks(acks, 1, timeout, "the bridge's sensor/# subscription")

    device = Device(host, timeout, "seed-actuator")
    device.subscribe("device/+/command")
    device.subscribe("command")

    # Up.
    device.publish("sensor/room2", json.dumps({"temperature": 23.1}))
    device.publish("sensor/bad", "not json")                   # the bridge prints an error
    device.publish("sensor/marker", json.dumps({"n": 1}))
    up = GCPPubSubSubscriber(project, cfg["up_sub"])
    upstream = pull_until(up, lambda got: {"sensor/room2", "sensor/marker"} <= {
        m["data"]["topic"] for m in got}, timeout, "the two messages sent up")

    # Down, through the seed's own publisher class.
    down = GCPPubSubClient(project, cfg["down_topic"])
    down.publish({"topic": "device/pi-001/command", "payload": {"led": "on"}}, origin="cloud")
    down.publish({"payload": {"reboot": True}})                # no topic: "command"
    downstream = device.receive(2, "two commands over MQTT")

    # Down to sensor/echo, which the bridge subscribes to: back up again.
    down.publish({"topic": "sensor/echo", "payload": {"from": "cloud"}})
    echoed = pull_until(up, lambda got: len(got) >= 1, timeout, "the echo")

    device.close()
    bridge.stop()
    return {"granted": granted, "upstream": upstream, "downstream": downstream,
            "echoed": echoed}


def scenario_pipeline(cfg):
    """Section 6 with gcp_enabled: log_handler, alert_handler and cloud_handler publishing to
    a topic, read back with the seed's subscriber."""
    project, timeout, host = cfg["project"], cfg["timeout"], cfg["mqtt_host"]
    config = {
        "mqtt_broker": host,
        "mqtt_topics": ["sensor/#", "device/+/status"],
        "gcp_enabled": True
    }
    topic_path = f"projects/{project}/topics/{cfg['topic']}"
    pipeline = IoTPipeline(config)
    pipeline.add_handler(log_handler)
    pipeline.add_handler(alert_handler)
    pipeline.add_handler(lambda message: cloud_handler(message, pipeline.publisher, topic_path))
    acks = count_subacks(pipeline.mqtt_client)
    pipeline.start()
    granted = wait_subacks(acks, 2, timeout, "the pipeline's subscriptions")

    device = Device(host, timeout, "seed-sensor")
    device.publish("sensor/pi-001/data",
                   json.dumps({"device_id": "pi-001", "temperature": 24.0, "humidity": 40}))
    device.publish("sensor/pi-002/data", json.dumps({"device_id": "pi-002", "temperature": 36.6}))
    device.publish("actuator/fan", json.dumps({"device_id": "fan-1"}))   # not subscribed
    device.publish("sensor/garbage", "not json")                          # processing error
    device.publish("device/pi-003/status", json.dumps({"status": "online"}))
    device.close()

    subscriber = GCPPubSubSubscriber(project, cfg["subscription"])
    pulled = pull_until(subscriber,
                        lambda got: {"pi-001", "pi-002", "unknown"} <= {
                            m["data"]["device_id"] for m in got},
                        timeout, "the three readings published by cloud_handler")
    pipeline.stop()
    return {"granted": granted, "pulled": pulled}


SCENARIOS = {"pubsub": scenario_pubsub, "bridge": scenario_bridge,
             "bidirectional": scenario_bidirectional, "pipeline": scenario_pipeline}


def main():
    scenario, config_path, result_path = sys.argv[1:4]
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    result = SCENARIOS[scenario](cfg)
    result["printed"] = PRINTED.lines
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1, default=str)


if __name__ == "__main__":
    main()
