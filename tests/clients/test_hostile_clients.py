"""Hostile and broken clients: each is dealt with alone, the server stays up, memory stays bounded,
and everybody else keeps being served (issue 2: "Malformed or hostile input ... disconnects only
that client ... memory per connection stays bounded")."""
import socket
import struct
import time

import rawmqtt
from conftest import TIMEOUT, V5, metric, resident_kib, roundtrip, unique


def test_slow_reader_loses_qos0_but_does_not_stall_others_or_grow_memory(server, clients):
    topic = unique("flood")
    # The slow reader subscribes and then never reads its socket again.
    slow = clients.raw(version=5)
    assert slow.connect(unique("slow")).reason_code == 0
    slow.subscribe([(topic, 0)])
    healthy = clients.connected(version=V5, name="healthy")
    healthy.subscribe(topic, 0)
    publisher = clients.raw(version=5)
    assert publisher.connect(unique("pub")).reason_code == 0
    before = resident_kib(server.proc.pid)
    payload = b"x" * 4096
    batch = b"".join(rawmqtt.publish(topic, payload, qos=0) for _ in range(256))
    for _ in range(64):  # 64 MiB for the slow reader, far past its 16 MiB write buffer
        publisher.send(batch)
    # QoS 0 may be dropped for any subscriber that falls behind; a QoS 1 marker may not, so it
    # shows the healthy subscriber is still served while the slow one sits on its socket.
    marker = unique("marker")
    healthy.subscribe(marker, 1)
    clients.connected(version=V5, name="marker-pub").publish(marker, b"after the flood", qos=1)
    deadline = time.monotonic() + 30
    got_marker = False
    while time.monotonic() < deadline and not got_marker:
        m = healthy.expect(timeout=TIMEOUT)
        got_marker = m.topic == marker
    assert got_marker, "the healthy subscriber stalled behind the slow one"
    grown = resident_kib(server.proc.pid) - before
    assert grown < 150 * 1024, "resident memory grew by %d KiB for one slow reader" % grown
    assert metric(server, "nimbus_mqtt_messages_dropped_total") > 0
    server.assert_alive()


def test_flood_of_qos1_from_a_client_that_never_reads(server, clients):
    topic = unique("ackflood")
    bystander = clients.connected(version=V5, name="bystander")
    bystander.subscribe(topic + "/b", 1)
    flooder = clients.raw(version=4)
    assert flooder.connect(unique("flooder")).reason_code == 0
    before = resident_kib(server.proc.pid)
    chunk = b"".join(rawmqtt.publish(topic, b"y" * 64, qos=1, pid=1 + (i % 60000), version=4) for i in range(2000))
    flooder.sock.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            flooder.sock.sendall(chunk)
            sent += len(chunk)
        except (socket.timeout, BlockingIOError):
            break  # the server stopped reading: backpressure reached the sender
        except OSError:
            break
    grown = resident_kib(server.proc.pid) - before
    assert grown < 100 * 1024, "a flooder that never reads its PUBACKs grew the server by %d KiB" % grown
    roundtrip(bystander, bystander, topic + "/b")
    server.assert_alive()


def test_oversized_packet_is_refused_with_0x95(nimbus, clients):
    nimbus.start(["--max-packet-size", "1024"])
    bystander = clients.connected(version=V5, name="bystander")
    topic = unique("big")
    bystander.subscribe(topic, 1)
    r = clients.raw(version=5)
    ack = r.connect(unique("big"))
    assert ack.props.get("MaximumPacketSize") == 1024
    r.send(rawmqtt.publish(topic, b"z" * 2048, qos=1, pid=1))
    packets = r.wait_closed(TIMEOUT)
    assert any(p.type == rawmqtt.DISCONNECT and p.reason_code == 0x95 for p in packets), packets
    roundtrip(bystander, bystander, topic)
    nimbus.assert_alive()


def test_connection_that_never_sends_connect_is_dropped(server):
    sock = socket.create_connection((server.host, server.mqtt_port), timeout=15)
    sock.settimeout(15)
    started = time.monotonic()
    data = sock.recv(1)  # blocks until the server closes the socket
    waited = time.monotonic() - started
    sock.close()
    assert data == b"", "server sent data to a client that never connected"
    assert 5 <= waited <= 14, "dropped after %.1fs; the CONNECT deadline is 10 s" % waited


def test_connection_limit_refuses_with_server_busy(nimbus, clients):
    nimbus.start(["--max-connections", "3"])
    held = []
    for i in range(3):
        r = clients.raw(version=5)
        assert r.connect(unique("held%d" % i)).reason_code == 0
        held.append(r)
    extra = clients.raw(version=5)
    assert extra.connect(unique("extra")).reason_code == 0x89, "the 4th connection must get Server busy"
    extra311 = clients.raw(version=4)
    assert extra311.connect(unique("extra311")).reason_code == 3, "3.1.1 gets Server unavailable"
    held[0].disconnect(wait_closed=True)
    again = clients.raw(version=5)
    assert again.connect(unique("again")).reason_code == 0, "a freed slot is usable again"
