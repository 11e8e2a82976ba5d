"""Hardening (issue 9): what a client can make the server hold is bounded before the client is
authenticated, state a client can create is bounded, and the MQTT/HTTP protocol corners are
answered as the specs say.

Every test runs with small limits passed as flags so that it finishes within seconds, asserts
the bound itself (a socket cut by a deadline, an exact refusal code, resident memory growth) and
shows that a bystander is still served meanwhile. Raw sockets are used wherever the point is what
a misbehaving client sends byte by byte; the WebSocket framing is done by hand (client frames
masked, RFC 6455 §5.3).
"""
import base64
import datetime
import os
import re
import select
import socket
import ssl
import stat
import struct
import subprocess
import time
import uuid

import pytest

import rawmqtt
from conftest import (TIMEOUT, V5, V311, assert_rejected, http_get, metric, resident_kib,
                      roundtrip, unique, wait_until)

# A deadline "of N seconds" is checked against N + SLACK: the server's timers have 250 ms slots,
# and the test process, the broker and the compiler of a parallel build share a small machine.
SLACK = 2.0


# ====================================================================== helpers

def bystander(clients, version=V5):
    """A paho client subscribed (QoS 1) to a topic of its own; `roundtrip(b, b, b.topic)`."""
    b = clients.connected(version=version, name="bystander")
    b.topic = unique("bystander")
    assert b.subscribe(b.topic, 1) == [1]
    return b


def assert_served(b):
    """The bystander still gets its own messages and was never disconnected."""
    roundtrip(b, b, b.topic)
    assert b.disconnects.empty() and b.connected, "the bystander was disconnected"


def raw_roundtrip(r, topic):
    """A raw client subscribed to `topic` (QoS 1) publishes to it and gets the message back."""
    payload = uuid.uuid4().hex.encode()
    ack = r.publish(topic, payload, qos=1)
    assert ack.reason_code < 0x80, "PUBACK %r" % ack
    deadline = time.monotonic() + TIMEOUT
    while True:
        pkt = r.expect(rawmqtt.PUBLISH, timeout=max(deadline - time.monotonic(), 0.01))
        r.ack(pkt)
        if pkt.payload == payload:
            return pkt


def closed_without_data(sock, timeout):
    """True when `sock` is closed by the peer (EOF or reset) within `timeout` without having
    received a single byte; False when it is still open at the deadline."""
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        return False
    try:
        data = sock.recv(4096)
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    assert data == b"", "the server sent %r to a socket it should close without a word" % data
    return True


class SocketPeer:
    """A plain or TLS socket with the send/recv interface `trickle_until_cut` uses: recv
    returns raw bytes (b"" when nothing arrived in time), raises ConnectionClosed at EOF."""

    def __init__(self, sock):
        self.sock = sock

    def send(self, data):
        self.sock.sendall(data)

    def recv(self, timeout):
        pending = getattr(self.sock, "pending", lambda: 0)()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return b""
        try:
            self.sock.settimeout(max(timeout, 0.01))
            data = self.sock.recv(65536)
        except socket.timeout:
            return b""
        except (ssl.SSLWantReadError,):
            return b""
        except OSError as e:
            raise rawmqtt.ConnectionClosed(repr(e))
        if not data:
            raise rawmqtt.ConnectionClosed("EOF")
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class MqttPeer:
    """Adapts a RawClient (or WsMqtt) to `trickle_until_cut`: recv returns decoded packets."""

    def __init__(self, client):
        self.client = client

    def send(self, data):
        self.client.send(data)

    def recv(self, timeout):
        try:
            return [self.client.recv(timeout)]
        except rawmqtt.NoPacket:
            return []
        except rawmqtt.ProtocolError as e:
            return ["unparsable: %s" % e]

    def close(self):
        self.client.close()


def trickle_until_cut(peer, data, started, limit, interval=0.25, during=None):
    """Send `data` one byte every `interval` seconds until the server closes the connection.
    Returns (seconds since `started`, everything received before the close). `during` is called
    once, about a second into the trickle (a bystander check while the trickler is held).
    Fails when the connection is still open `limit` seconds after `started`."""
    received = []
    for i in range(len(data)):
        elapsed = time.monotonic() - started
        if elapsed > limit:
            peer.close()
            raise AssertionError("a client trickling one byte every %.2fs was still connected "
                                 "after %.1fs (sent %d bytes, received %r)"
                                 % (interval, elapsed, i, received))
        try:
            peer.send(data[i:i + 1])
        except OSError:
            return time.monotonic() - started, received
        if during is not None and elapsed >= 1.0:
            during()
            during = None
        try:
            got = peer.recv(interval)
        except rawmqtt.ConnectionClosed:
            return time.monotonic() - started, received
        if got:
            received.append(got)
    raise AssertionError("the whole trickle (%d bytes) was sent without the server closing "
                         "the connection" % len(data))


def slow_connect_packet(version=4):
    """A valid CONNECT long enough to trickle for far longer than any test deadline (a client id
    of 100 bytes: within the default max_client_id_length of 128)."""
    return rawmqtt.connect("slow-" + "x" * 95, version=version)


# ---------------------------------------------------------------- HTTP by hand

class HttpResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (last one wins)
        self.body = body

    def __repr__(self):
        return "<HTTP %d %s %r body=%r>" % (self.status, self.reason, self.headers,
                                            self.body[:200])


class RawHttp:
    """One HTTP/1.1 connection over a raw (optionally TLS) socket, to send exactly the bytes a
    test needs (malformed requests, announced bodies that never come...)."""

    def __init__(self, server, tls=False, context=None, timeout=TIMEOUT, source_address=None):
        port = server.https_port if tls else server.http_port
        self.sock = socket.create_connection((server.host, port), timeout=timeout,
                                             source_address=source_address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            self.sock = (context or server.tls_context()).wrap_socket(
                self.sock, server_hostname="localhost")
        self.peer = SocketPeer(self.sock)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise rawmqtt.NoPacket()
        data = self.peer.recv(remaining)
        self.buf += data

    def read_response(self, timeout=TIMEOUT, head=False):
        """The next response. Raises ConnectionClosed when the server closes before a complete
        response and AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        try:
            while b"\r\n\r\n" not in self.buf:
                self._fill(deadline)
            end = self.buf.index(b"\r\n\r\n")
            assert self.buf.startswith(b"HTTP/"), \
                "the response does not start with a status line: %r" % bytes(self.buf[:200])
            head_text = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[:end + 4]
            lines = head_text.split("\r\n")
            parts = lines[0].split(" ", 2)
            status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if head or status in (204, 304) or status < 200:
                return HttpResponse(status, reason, headers, b"")
            if "content-length" in headers:
                n = int(headers["content-length"])
                while len(self.buf) < n:
                    self._fill(deadline)
                body = bytes(self.buf[:n])
                del self.buf[:n]
                return HttpResponse(status, reason, headers, body)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = bytearray()
                while True:
                    while b"\r\n" not in self.buf:
                        self._fill(deadline)
                    line_end = self.buf.index(b"\r\n")
                    size = int(bytes(self.buf[:line_end]).split(b";")[0], 16)
                    while len(self.buf) < line_end + 2 + size + 2:
                        self._fill(deadline)
                    body += self.buf[line_end + 2:line_end + 2 + size]
                    del self.buf[:line_end + 2 + size + 2]
                    if size == 0:
                        return HttpResponse(status, reason, headers, bytes(body))
            # delimited by the close
            try:
                while True:
                    self._fill(deadline)
            except rawmqtt.ConnectionClosed:
                body = bytes(self.buf)
                self.buf.clear()
                return HttpResponse(status, reason, headers, body)
        except rawmqtt.NoPacket:
            raise AssertionError("no complete HTTP response within %.1fs (got %r)"
                                 % (timeout, bytes(self.buf[:300])))

    def request(self, method, target, headers=None, body=b"", timeout=TIMEOUT):
        hdrs = {"Host": "localhost"}
        hdrs.update(headers or {})
        if body:
            hdrs.setdefault("Content-Length", str(len(body)))
        text = "%s %s HTTP/1.1\r\n%s\r\n" % (
            method, target, "".join("%s: %s\r\n" % kv for kv in hdrs.items()))
        self.send(text.encode() + body)
        return self.read_response(timeout, head=(method == "HEAD"))

    def wait_closed(self, timeout=TIMEOUT):
        """Bytes received until the server closed the connection; AssertionError if it is still
        open at the deadline."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except rawmqtt.ConnectionClosed:
            return bytes(self.buf)
        except rawmqtt.NoPacket:
            raise AssertionError("the server did not close the connection within %.1fs "
                                 "(received %r)" % (timeout, bytes(self.buf[:300])))

    def close(self):
        self.peer.close()


# ---------------------------------------------------------------- WebSocket by hand

WS_BINARY, WS_TEXT, WS_CLOSE, WS_PING, WS_PONG = 0x2, 0x1, 0x8, 0x9, 0xA


def ws_frame(opcode, payload, fin=True, mask=True):
    """One WebSocket frame; client frames are masked (RFC 6455 §5.3)."""
    payload = bytes(payload)
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def ws_upgrade_request(path="/mqtt", key=None, protocol="mqtt"):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: localhost", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
    if protocol:
        lines.append("Sec-WebSocket-Protocol: %s" % protocol)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class WsMqtt(rawmqtt.RawClient):
    """A RawClient speaking MQTT inside WebSocket binary frames on /mqtt (HTTP or HTTPS
    listener). `send` frames each call as one binary frame; a close frame from the server counts
    as the connection closing (its time is when the server decided to close)."""

    def __init__(self, server, tls=False, context=None, version=5, timeout=TIMEOUT):
        port = server.https_port if tls else server.ws_port
        super().__init__(server.host, port, version=version, timeout=timeout,
                         ssl_context=(context or server.tls_context()) if tls else None,
                         server_hostname="localhost" if tls else None)
        self.raw = bytearray()  # WebSocket bytes not decoded yet
        self.control = []       # (opcode, payload) of the non-binary frames received
        self.sock.sendall(ws_upgrade_request())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            self._read_raw(deadline)
        end = self.raw.index(b"\r\n\r\n")
        self.upgrade_response = bytes(self.raw[:end]).decode("latin-1")
        del self.raw[:end + 4]
        status = self.upgrade_response.split(" ", 2)[1]
        assert status == "101", "WebSocket upgrade refused: %s" % self.upgrade_response

    def _read_raw(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise rawmqtt.NoPacket()
        pending = getattr(self.sock, "pending", lambda: 0)()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                raise rawmqtt.NoPacket()
        self.sock.settimeout(max(remaining, 0.01))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            raise rawmqtt.NoPacket()
        except OSError as e:
            self.closed = True
            raise rawmqtt.ConnectionClosed(repr(e))
        if not data:
            self.closed = True
            raise rawmqtt.ConnectionClosed("EOF")
        self.raw += data

    def _next_frame(self):
        """(opcode, payload) of the next complete frame in `raw`, or None."""
        if len(self.raw) < 2:
            return None
        b0, b1 = self.raw[0], self.raw[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(self.raw) < 4:
                return None
            n, pos = struct.unpack("!H", self.raw[2:4])[0], 4
        elif n == 127:
            if len(self.raw) < 10:
                return None
            n, pos = struct.unpack("!Q", self.raw[2:10])[0], 10
        if b1 & 0x80:
            raise rawmqtt.ProtocolError("the server masked a frame")
        if len(self.raw) < pos + n:
            return None
        payload = bytes(self.raw[pos:pos + n])
        del self.raw[:pos + n]
        return b0 & 0x0F, payload

    def _fill(self, deadline):
        while True:
            frame = self._next_frame()
            if frame is None:
                self._read_raw(deadline)
                continue
            opcode, payload = frame
            if opcode in (WS_BINARY, 0x0):
                self.buf += payload
                return
            self.control.append((opcode, payload))
            if opcode == WS_PING:
                self.sock.sendall(ws_frame(WS_PONG, payload))
            elif opcode == WS_CLOSE:
                try:
                    self.sock.sendall(ws_frame(WS_CLOSE, payload[:2]))
                except OSError:
                    pass
                self.closed = True
                raise rawmqtt.ConnectionClosed("WebSocket close frame %r" % payload)

    def send(self, data):
        self.sock.sendall(ws_frame(WS_BINARY, data))

    def send_frame(self, opcode, payload):
        self.sock.sendall(ws_frame(opcode, payload))


# ====================================================================== bounded before CONNECT

CONNECT_TIMEOUT = 2


def _check_cut(elapsed, received, what):
    assert elapsed >= CONNECT_TIMEOUT - 0.5, \
        "%s cut after %.2fs, before the %ds CONNECT deadline" % (what, elapsed, CONNECT_TIMEOUT)
    assert elapsed <= CONNECT_TIMEOUT + SLACK, \
        "%s cut after %.2fs; the CONNECT deadline is %ds" % (what, elapsed, CONNECT_TIMEOUT)
    for got in received:
        for p in got if isinstance(got, list) else [got]:
            assert not (isinstance(p, rawmqtt.Packet) and p.type == rawmqtt.CONNACK), \
                "%s received %r for an incomplete CONNECT" % (what, p)


def test_trickled_connect_on_tcp_is_cut_at_connect_timeout(nimbus, clients):
    nimbus.start(["--connect-timeout", str(CONNECT_TIMEOUT)])
    b = bystander(clients)
    started = time.monotonic()
    r = clients.raw(version=4)
    elapsed, received = trickle_until_cut(MqttPeer(r), slow_connect_packet(), started,
                                          limit=CONNECT_TIMEOUT + SLACK + 1,
                                          during=lambda: assert_served(b))
    _check_cut(elapsed, received, "a TCP client trickling its CONNECT")
    assert_served(b)


def test_trickled_connect_on_tls_is_cut_at_connect_timeout(nimbus, clients):
    """The deadline holds for any client certificate the TLS layer lets in (here one signed by
    the Nimbus CA but never registered: nothing is known about it until CONNECT)."""
    nimbus.start(["--connect-timeout", str(CONNECT_TIMEOUT)])
    cert, key = nimbus.make_client_cert(unique("trickler"))
    b = bystander(clients)
    started = time.monotonic()
    r = clients.raw(version=4, port=nimbus.mqtts_port, ssl_context=nimbus.tls_context(cert, key),
                    server_hostname="localhost")
    elapsed, received = trickle_until_cut(MqttPeer(r), slow_connect_packet(), started,
                                          limit=CONNECT_TIMEOUT + SLACK + 1,
                                          during=lambda: assert_served(b))
    _check_cut(elapsed, received, "a TLS client trickling its CONNECT")
    assert_served(b)


def test_trickled_tls_handshake_is_cut_at_connect_timeout(nimbus, clients):
    """The TLS handshake counts against the same deadline: a ClientHello sent one byte at a time
    does not hold the socket past it."""
    nimbus.start(["--connect-timeout", str(CONNECT_TIMEOUT)])
    ctx = nimbus.tls_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    client_hello = outgoing.read()
    assert len(client_hello) > 60, "unexpectedly short ClientHello"
    b = bystander(clients)
    started = time.monotonic()
    sock = socket.create_connection((nimbus.host, nimbus.mqtts_port), timeout=TIMEOUT)
    peer = SocketPeer(sock)
    try:
        elapsed, received = trickle_until_cut(peer, client_hello, started,
                                              limit=CONNECT_TIMEOUT + SLACK + 1,
                                              during=lambda: assert_served(b))
    finally:
        peer.close()
    _check_cut(elapsed, [], "a client trickling its TLS ClientHello")
    assert_served(b)


def test_trickled_connect_on_wss_is_cut_at_connect_timeout(nimbus, clients):
    """MQTT over WebSocket over TLS, no client certificate: the upgrade succeeds, then the
    CONNECT arrives one byte per binary frame. The deadline counts from accept."""
    nimbus.start(["--connect-timeout", str(CONNECT_TIMEOUT)])
    b = bystander(clients)
    started = time.monotonic()
    ws = WsMqtt(nimbus, tls=True, version=4)
    clients.raw_created.append(ws)
    elapsed, received = trickle_until_cut(MqttPeer(ws), slow_connect_packet(), started,
                                          limit=CONNECT_TIMEOUT + SLACK + 1,
                                          during=lambda: assert_served(b))
    _check_cut(elapsed, received, "a WSS client trickling its CONNECT")
    assert_served(b)


def test_idle_sockets_before_connect_are_bounded_per_address(nimbus, clients):
    """200 sockets from 127.0.0.1 that never send a byte against --max-pending-per-address 20:
    the 21st and later are closed at accept without a byte, another address is served meanwhile,
    the 20 held ones are cut at the CONNECT deadline, and afterwards clients from 127.0.0.1
    connect again (a completed CONNECT no longer counts as pending: 25 of them fit)."""
    connect_timeout = 3
    nimbus.start(["--max-pending-per-address", "20", "--connect-timeout", str(connect_timeout)])
    other = clients.raw(version=5, source_address=("127.0.0.2", 0))
    assert other.connect(unique("other")).reason_code == 0
    other_topic = unique("other")
    other.subscribe([(other_topic, 1)])
    refused_before = metric(nimbus, "nimbus_mqtt_sockets_refused_total")
    rss_before = resident_kib(nimbus.proc.pid)

    started = time.monotonic()
    socks = [socket.create_connection((nimbus.host, nimbus.mqtt_port), timeout=TIMEOUT)
             for _ in range(200)]
    closed = set()

    def poll():
        for i, s in enumerate(socks):
            if i not in closed and closed_without_data(s, 0):
                closed.add(i)
        return len(closed)

    try:
        wait_until(lambda: poll() >= 180, timeout=connect_timeout,
                   what="180 of 200 idle sockets closed at accept (got %d)" % len(closed))
        raw_roundtrip(other, other_topic)  # another address is served meanwhile
        poll()
        held_for = time.monotonic() - started
        assert held_for < connect_timeout, "too slow to check the held sockets (%.1fs)" % held_for
        assert len(closed) == 180, "%d sockets closed at accept; 20 must stay pending" % len(closed)
        grown = resident_kib(nimbus.proc.pid) - rss_before
        assert grown < 8 * 1024, "200 idle sockets grew the server by %d KiB" % grown

        # While 20 are pending, one more socket from 127.0.0.1 is refused at accept.
        extra = socket.create_connection((nimbus.host, nimbus.mqtt_port), timeout=TIMEOUT)
        try:
            extra.sendall(rawmqtt.connect(unique("extra"), version=5))
        except OSError:
            pass
        assert closed_without_data(extra, TIMEOUT), "the 21st pending socket was not refused"
        extra.close()

        # The held ones end at the CONNECT deadline.
        wait_until(lambda: poll() == 200, timeout=connect_timeout + SLACK,
                   what="the 20 pending sockets cut at the CONNECT deadline (%d closed)"
                   % len(closed))
        assert time.monotonic() - started <= connect_timeout + SLACK + 0.5
    finally:
        for s in socks:
            s.close()

    assert metric(nimbus, "nimbus_mqtt_sockets_refused_total") >= refused_before + 181
    held = []
    for i in range(25):
        r = clients.raw(version=5)
        ack = r.connect(unique("after%d" % i))
        assert ack.reason_code == 0, "client %d after the flood: %r" % (i, ack)
        held.append(r)
    raw_roundtrip(other, other_topic)
    nimbus.assert_alive()


def test_idle_sockets_before_connect_are_bounded_in_total(nimbus, clients):
    """--max-pending-connections counts every address: with 10 idle sockets from 127.0.0.1,
    sockets from 127.0.0.3 are closed at accept; a client connected before is served."""
    connect_timeout = 5
    nimbus.start(["--max-pending-connections", "10", "--connect-timeout", str(connect_timeout)])
    b = bystander(clients)
    # Fill the limit: sockets from 127.0.0.1 until the server counts 10 pending (a socket it
    # closed at accept while another was still counted is replaced).
    idle = []
    while (counted := metric(nimbus, "nimbus_mqtt_pending_sockets")) < 10:
        assert len(idle) < 20, "the pending count never reached the limit"
        idle = [s for s in idle if not closed_without_data(s, 0)]
        idle.append(socket.create_connection((nimbus.host, nimbus.mqtt_port), timeout=TIMEOUT))
        # The new socket is counted (the gauge moves) or refused (it is closed).
        wait_until(lambda: metric(nimbus, "nimbus_mqtt_pending_sockets") > counted
                   or closed_without_data(idle[-1], 0), what="the new socket counted or refused")
    try:
        # All 10 are accepted and held (none closed) once the server has seen them all: a probe
        # from another address is refused, which needs all 10 counted.
        def probe_refused():
            s = socket.create_connection((nimbus.host, nimbus.mqtt_port), timeout=TIMEOUT,
                                         source_address=("127.0.0.3", 0))
            try:
                return closed_without_data(s, 0.5)
            finally:
                s.close()

        wait_until(probe_refused, timeout=connect_timeout - 1,
                   what="a socket from 127.0.0.3 refused at accept")
        still_open = [s for s in idle if not closed_without_data(s, 0)]
        assert len(still_open) >= 10, "a pending socket within the limit was closed"
        assert_served(b)
        wait_until(lambda: all(closed_without_data(s, 0) for s in idle),
                   timeout=connect_timeout + SLACK, what="idle sockets cut at the CONNECT deadline")
    finally:
        for s in idle:
            s.close()
    r = clients.raw(version=5, source_address=("127.0.0.3", 0))
    assert r.connect(unique("after")).reason_code == 0
    assert_served(b)


def test_connect_larger_than_max_connect_size_is_refused(nimbus, clients):
    nimbus.start(["--max-connect-size", "1024"])
    b = bystander(clients)
    will = {"topic": unique("will"), "payload": b"w" * 2000}

    # MQTT 5: CONNACK 0x95 (Packet too large), then the close.
    r = clients.raw(version=5)
    r.send(rawmqtt.connect(unique("big5"), version=5, will=will))
    pkts = r.wait_closed(TIMEOUT)
    assert [(p.type, p.reason_code) for p in pkts] == [(rawmqtt.CONNACK, 0x95)], pkts

    # MQTT 3.1.1: a plain close (no return code means "too large").
    r = clients.raw(version=4)
    r.send(rawmqtt.connect(unique("big4"), version=4, will=will))
    pkts = r.wait_closed(TIMEOUT)
    assert pkts == [], pkts

    # Announcing a 60 000-byte CONNECT (below max_packet_size) is enough: the server does not
    # wait for (nor buffer) the rest of it.
    r = clients.raw(version=5)
    head = rawmqtt.utf8("MQTT") + bytes([5, 0x02]) + rawmqtt.u16(60) + rawmqtt.varint(0)
    started = time.monotonic()
    r.send(rawmqtt.fixed_header(rawmqtt.CONNECT, 0, 60000) + head)
    pkts = r.wait_closed(TIMEOUT)
    assert time.monotonic() - started < 2.0, "an announced oversized CONNECT held the socket"
    assert all(p.type == rawmqtt.CONNACK and p.reason_code == 0x95 for p in pkts), pkts

    # Within the limit is fine.
    r = clients.raw(version=5)
    ok = r.connect(unique("fits"), will={"topic": will["topic"], "payload": b"w" * 800})
    assert ok.reason_code == 0, ok
    assert_served(b)


# ====================================================================== HTTP bounded before auth

def test_unauthenticated_bodies_are_refused_before_they_are_read(nimbus, clients):
    """20 clients announce a 16 MiB body for the control plane (no SigV4, no certificate) and
    send 1 KiB of it: each gets 403 (Connection: close) at once, and nothing is pinned."""
    nimbus.start()
    b = bystander(clients)
    rss_before = resident_kib(nimbus.proc.pid)
    conns = []
    try:
        for i in range(20):
            tls = i % 4 == 3  # some on HTTPS without a client certificate
            c = RawHttp(nimbus, tls=tls)
            conns.append(c)
            c.send(("POST /things/%s HTTP/1.1\r\nHost: localhost\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (unique("x"), 16 * 1024 * 1024)).encode() + b"{" + b"x" * 1023)
        for i, c in enumerate(conns):
            started = time.monotonic()
            try:
                resp = c.read_response(timeout=3.0)
            except rawmqtt.ConnectionClosed as e:
                raise AssertionError("request %d: closed without a response (%s)" % (i, e))
            assert resp.status == 403, "request %d: %r" % (i, resp)
            assert resp.headers.get("connection", "").lower() == "close", resp
            assert time.monotonic() - started < 3.0
        grown = resident_kib(nimbus.proc.pid) - rss_before
        assert grown < 20 * 1024, "20 announced 16 MiB bodies grew the server by %d KiB" % grown
        # The data plane too: POST /topics/... without credentials.
        c = RawHttp(nimbus)
        conns.append(c)
        c.send(("POST /topics/%s?qos=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                % (unique("t"), 512 * 1024)).encode() + b"y" * 1024)
        resp = c.read_response(timeout=3.0)
        assert resp.status == 403, resp
        for c in conns:
            c.wait_closed(TIMEOUT)
    finally:
        for c in conns:
            c.close()
    assert http_get(nimbus.http_url + "/healthz")[0] == 200
    assert_served(b)


def _stop_at_first_byte(conn):
    """Wrap conn.peer so that the trickle stops at the first byte the server sends."""
    peer = conn.peer

    class Stopper:
        def send(self, data):
            peer.send(data)

        def recv(self, timeout):
            got = peer.recv(timeout)
            if got:
                conn.buf += got
                raise rawmqtt.ConnectionClosed("answered")
            return got

        def close(self):
            peer.close()

    return Stopper()


@pytest.mark.parametrize("part", ["headers", "body"])
def test_http_request_trickled_past_request_timeout_is_cut(nimbus, clients, part):
    """--http-request-timeout is absolute: headers (or a body) trickled one byte every 0.25 s
    are cut at the deadline (the socket is closed; no response is owed to a half request). The body case carries a SigV4 Authorization header
    (wrong signature): the server must read the body to check it, so the timeout is what ends
    it."""
    timeout = 2
    nimbus.start(["--http-request-timeout", str(timeout)])
    b = bystander(clients)
    conn = RawHttp(nimbus)
    started = time.monotonic()
    if part == "headers":
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        rest = b"X-Slow: " + b"s" * 200 + b"\r\n\r\n"
    else:
        akid, _secret = nimbus.credentials()
        now = datetime.datetime.now(datetime.timezone.utc)
        auth = ("AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/iot/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date, Signature=%s"
                % (akid, now.strftime("%Y%m%d"), "0" * 64))
        conn.send(("POST /things/%s HTTP/1.1\r\nHost: localhost\r\n"
                   "Content-Type: application/json\r\nX-Amz-Date: %s\r\nAuthorization: %s\r\n"
                   "Content-Length: 200\r\n\r\n{"
                   % (unique("slow"), now.strftime("%Y%m%dT%H%M%SZ"), auth)).encode())
        rest = b" " * 199
    try:
        elapsed, received = trickle_until_cut(_stop_at_first_byte(conn), rest, started,
                                              limit=timeout + SLACK + 1,
                                              during=lambda: assert_served(b))
        resp = None
        if conn.buf:
            try:
                resp = conn.read_response(timeout=TIMEOUT)
            except rawmqtt.ConnectionClosed:
                raise AssertionError("incomplete response: %r" % bytes(conn.buf))
            conn.wait_closed(TIMEOUT)
    finally:
        conn.close()
    assert resp is None, "a half-received request was answered: %r" % resp
    assert timeout - 0.5 <= elapsed <= timeout + SLACK, \
        "a request trickled past --http-request-timeout %d ended after %.2fs" % (timeout, elapsed)
    assert_served(b)


def test_http_max_connections_closes_extra_sockets_at_accept(nimbus, clients):
    nimbus.start(["--http-max-connections", "5", "--http-request-timeout", "20"])
    b = bystander(clients)
    held = []
    try:
        for _ in range(5):
            c = RawHttp(nimbus)
            assert c.request("GET", "/healthz").status == 200  # keep-alive: still held
            held.append(c)
        extra = socket.create_connection((nimbus.host, nimbus.http_port), timeout=TIMEOUT)
        try:
            assert closed_without_data(extra, TIMEOUT), "a 6th HTTP socket was accepted"
        finally:
            extra.close()
        for c in held:  # the five were kept and still work
            assert c.request("GET", "/healthz").status == 200
        assert_served(b)  # MQTT does not count
        held.pop().close()

        def fresh_ok():
            c = RawHttp(nimbus)
            try:
                return c.request("GET", "/healthz").status == 200
            except (rawmqtt.ConnectionClosed, OSError):
                return False
            finally:
                c.close()

        wait_until(fresh_ok, what="a new HTTP connection once one of the five closed")
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nno colon in this header\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHo st: localhost\r\n\r\n",
], ids=["request-line", "header-without-colon", "space-in-header-name"])
def test_malformed_http_request_gets_400(server, request_bytes):
    conn = RawHttp(server)
    try:
        conn.send(request_bytes)
        try:
            resp = conn.read_response()
        except rawmqtt.ConnectionClosed as e:
            raise AssertionError("malformed request: closed without a 400 (%s)" % e)
        assert resp.status == 400, resp
        conn.wait_closed()
    finally:
        conn.close()
    assert http_get(server.http_url + "/healthz")[0] == 200


def test_transfer_encoding_other_than_chunked_gets_501(server):
    conn = RawHttp(server)
    try:
        conn.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n"
                  b"\x1f\x8b")
        try:
            resp = conn.read_response()
        except rawmqtt.ConnectionClosed as e:
            raise AssertionError("Transfer-Encoding gzip: closed without a 501 (%s)" % e)
        assert resp.status == 501, resp
    finally:
        conn.close()


def test_head_has_the_headers_of_get_and_no_body(server):
    conn = RawHttp(server)
    try:
        head = conn.request("HEAD", "/healthz")
        get = conn.request("GET", "/healthz")  # parsed right after: HEAD sent no body
    finally:
        conn.close()
    assert head.status == 200 and get.status == 200, (head, get)
    assert len(get.body) > 0
    assert head.headers.get("content-length") == str(len(get.body)), (head, get)
    assert head.headers.get("content-type") == get.headers.get("content-type")


# ---------------------------------------------------------------- /metrics

def read_token(nimbus):
    path = nimbus.data_dir / "tokens"
    assert path.exists(), "%s was not created" % path
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, "%s has mode %o, not 600" % (path, mode)
    tokens = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"read-write ([0-9a-f]{64})", line.strip())
        assert m, "unexpected line in tokens: %r" % line
        tokens.append(m.group(1))
    assert tokens, "no token in %s" % path
    return tokens[0]


def test_metrics_token_mode_needs_the_bearer_token(nimbus):
    nimbus.start(["--metrics", "token"])
    token = read_token(nimbus)
    url = nimbus.http_url + "/metrics"
    assert http_get(url)[0] == 401
    assert http_get(url, headers={"Authorization": "Bearer " + "0" * 64})[0] == 401
    assert http_get(url, headers={"Authorization": "Basic " + token})[0] == 401
    status, _h, body = http_get(url, headers={"Authorization": "Bearer " + token})
    assert status == 200 and b"nimbus_mqtt_connections" in body
    assert http_get(nimbus.http_url + "/healthz")[0] == 200  # only /metrics is protected
    # The token survives a restart (created on the first start only).
    nimbus.restart()
    assert read_token(nimbus) == token
    assert metric(nimbus, "nimbus_mqtt_connections", token=token) >= 0


def test_metrics_auto_is_open_on_loopback_and_off_is_404(nimbus):
    nimbus.start()
    read_token(nimbus)  # created on first start whatever the mode
    assert http_get(nimbus.http_url + "/metrics")[0] == 200
    nimbus.restart(extra_args=["--metrics", "off"])
    assert http_get(nimbus.http_url + "/metrics")[0] == 404


# ====================================================================== bounded state

def test_congested_subscriber_releases_publisher_after_congestion_timeout(nimbus, clients):
    """A QoS 1 subscriber that never PUBACKs (Receive Maximum 65535) fills its in-flight window
    and queue; the publisher beside it is held back at most --congestion-timeout per message,
    and a healthy subscriber gets everything."""
    congestion_timeout = 1
    nimbus.start(["--max-inflight", "5", "--max-queued-messages", "10",
                  "--congestion-timeout", str(congestion_timeout)])
    topic = unique("congested")
    stuck = clients.raw(version=5)
    assert stuck.connect(unique("stuck"), props={"ReceiveMaximum": 65535}).reason_code == 0
    stuck.subscribe([(topic, 1)])
    healthy = clients.connected(version=V5, name="healthy")
    assert healthy.subscribe(topic, 1) == [1]
    pub = clients.raw(version=5)
    assert pub.connect(unique("pub")).reason_code == 0
    latencies = []
    n = 20  # 5 in flight + 10 queued fill the stuck subscriber; 5 more run into congestion
    for i in range(n):
        started = time.monotonic()
        try:
            ack = pub.publish(topic, b"m%d" % i, qos=1, timeout=congestion_timeout + SLACK + 1)
        except rawmqtt.NoPacket:
            raise AssertionError("PUBACK %d held for more than %.1fs (earlier: %s)" % (
                i, congestion_timeout + SLACK + 1, ["%.2f" % x for x in latencies]))
        latencies.append(time.monotonic() - started)
        assert ack.reason_code < 0x80, ack
    assert max(latencies) <= congestion_timeout + SLACK, latencies
    got = healthy.collect(n)
    assert [m.payload for m in got] == [b"m%d" % i for i in range(n)]
    wait_until(lambda: metric(nimbus, "nimbus_mqtt_congestion_timeouts_total") > 0,
               what="nimbus_mqtt_congestion_timeouts_total > 0")
    # The stuck one got at most its window, and is still connected.
    first = stuck.expect(rawmqtt.PUBLISH)
    assert first.payload == b"m0"
    stuck.ping()


def test_session_limit_refuses_new_sessions_with_quota_exceeded(nimbus, clients):
    nimbus.start(["--max-sessions", "5"])
    b = bystander(clients)  # a connected session counts: 1
    stored = []
    for i in range(4):  # 4 persistent sessions, stored after their DISCONNECT: 5 in all
        cid = unique("persist%d" % i)
        r = clients.raw(version=5)
        ack = r.connect(cid, props={"SessionExpiryInterval": 3600})
        assert ack.reason_code == 0, "session %d of 5: %r" % (i + 2, ack)
        r.disconnect(wait_closed=True)
        stored.append(cid)

    def refused(version, clean, props=None):
        r = clients.raw(version=version)
        ack = r.connect(unique("over"), clean=clean, props=props)
        if ack.reason_code != 0:  # a refusal is followed by the close
            pkts = r.wait_closed(TIMEOUT)
            assert not any(p.type == rawmqtt.PUBLISH for p in pkts), pkts
        return ack.reason_code

    assert refused(5, True, {"SessionExpiryInterval": 3600}) == 0x97
    assert refused(5, True) == 0x97  # even a session ending with its connection is one more
    assert refused(4, False) == 3
    assert refused(4, True) == 3

    # Sessions that exist are not new ones: resuming works, so does a clean start over one.
    r = clients.raw(version=5)
    ack = r.connect(stored[0], clean=False, props={"SessionExpiryInterval": 3600})
    assert ack.reason_code == 0 and ack.session_present, ack
    r.disconnect(wait_closed=True)
    r = clients.raw(version=5)
    ack = r.connect(stored[1], clean=True)  # replaces it; ends with this connection
    assert ack.reason_code == 0, ack
    r.disconnect(wait_closed=True)

    # That session is gone: there is room for one new one again.
    def room():
        r = clients.raw(version=5)
        return r.connect(unique("room")).reason_code == 0

    wait_until(room, what="a new session once one ended")
    assert_served(b)


def test_retained_message_limit(nimbus, clients):
    nimbus.start(["--max-retained-messages", "5", "--sys-interval", "0"])
    prefix = unique("ret")
    watcher = clients.connected(version=V5, name="watcher")
    assert watcher.subscribe(prefix + "/#", 1) == [1]
    p = clients.raw(version=5)
    assert p.connect(unique("retainer")).reason_code == 0
    for i in range(5):
        ack = p.publish("%s/%d" % (prefix, i), b"v%d" % i, qos=1, retain=True)
        assert ack.reason_code < 0x80, "retained %d of 5: %r" % (i + 1, ack)
    ack = p.publish(prefix + "/5", b"v5", qos=1, retain=True)
    assert ack.reason_code == 0x97, "the 6th retained message: %r" % ack
    ack = p.publish(prefix + "/0", b"v0-new", qos=1, retain=True)  # replacing: allowed
    assert ack.reason_code < 0x80, ack
    refused_before = metric(nimbus, "nimbus_mqtt_retained_refused_total")
    p.publish(prefix + "/6", b"v6", qos=0, retain=True)  # QoS 0: dropped, counted
    v311 = clients.raw(version=4)
    assert v311.connect(unique("retainer311")).reason_code == 0
    # 3.1.1 cannot be refused: disconnected, not falsely acknowledged; dropped and counted.
    v311.send(rawmqtt.publish(prefix + "/7", b"v7", qos=1, retain=True, pid=1, version=4))
    packets = v311.wait_closed(TIMEOUT)
    assert not any(pk.type == rawmqtt.PUBACK for pk in packets), packets
    p.publish(prefix + "/marker", b"m", qos=1)  # not retained: never refused
    seen = watcher.collect_until(prefix + "/marker")
    topics = [m.topic for m in seen]
    assert topics == ["%s/%d" % (prefix, i) for i in range(5)] + [prefix + "/0"], \
        "refused retained messages must not be routed either: %r" % seen
    wait_until(lambda: metric(nimbus, "nimbus_mqtt_retained_refused_total")
               >= refused_before + 2, what="nimbus_mqtt_retained_refused_total + 2")

    # Stored: exactly the five, with the replacement.
    late = clients.connected(version=V5, name="late")
    assert late.subscribe(prefix + "/#", 1) == [1]
    p.publish(prefix + "/marker", b"m2", qos=1)
    got = {m.topic: m.payload for m in late.collect_until(prefix + "/marker")}
    assert got == dict([("%s/0" % prefix, b"v0-new")] +
                       [("%s/%d" % (prefix, i), b"v%d" % i) for i in range(1, 5)]), got
    assert metric(nimbus, "nimbus_mqtt_retained_messages") == 5

    # Deleting one makes room for another.
    assert p.publish(prefix + "/1", b"", qos=1, retain=True).reason_code < 0x80
    assert p.publish(prefix + "/5", b"v5", qos=1, retain=True).reason_code < 0x80
    assert p.publish(prefix + "/8", b"v8", qos=1, retain=True).reason_code == 0x97


def test_retained_bytes_limit(nimbus, clients):
    """--max-retained-bytes counts topics and payloads."""
    nimbus.start(["--max-retained-bytes", "4096", "--sys-interval", "0"])
    prefix = unique("rb")  # 13 bytes; topics "<prefix>/<i>" are 15 bytes
    p = clients.raw(version=5)
    assert p.connect(unique("retainer")).reason_code == 0
    size = 1000 - len(prefix) - 2  # topic + payload = 1000 bytes each
    for i in range(4):
        ack = p.publish("%s/%d" % (prefix, i), b"x" * size, qos=1, retain=True)
        assert ack.reason_code < 0x80, "retained %d (%d bytes in all): %r" % (i, 1000 * (i + 1),
                                                                               ack)
    ack = p.publish(prefix + "/4", b"x" * size, qos=1, retain=True)
    assert ack.reason_code == 0x97, "5000 bytes past a 4096 limit: %r" % ack
    # Replacing with as many bytes is allowed; growing past the limit is not.
    assert p.publish(prefix + "/0", b"y" * size, qos=1, retain=True).reason_code < 0x80
    assert p.publish(prefix + "/0", b"y" * (size + 97), qos=1, retain=True).reason_code == 0x97
    assert p.publish(prefix + "/0", b"y" * (size + 96), qos=1, retain=True).reason_code < 0x80
    # Deleting frees its bytes.
    assert p.publish(prefix + "/1", b"", qos=1, retain=True).reason_code < 0x80
    assert p.publish(prefix + "/4", b"x" * size, qos=1, retain=True).reason_code < 0x80
    s = clients.connected(version=V5, name="late")
    assert s.subscribe(prefix + "/0", 1) == [1]
    assert s.expect(topic=prefix + "/0").payload == b"y" * (size + 96)


def test_subscription_bytes_limit(nimbus, clients):
    """--max-subscription-bytes: the total bytes of one session's topic filters."""
    nimbus.start(["--max-subscription-bytes", "1024"])
    b = bystander(clients)
    prefix = unique("sb")

    def filt(i, n=200):
        f = "%s/%d/" % (prefix, i)
        return f + "f" * (n - len(f))

    r = clients.raw(version=5)
    assert r.connect(unique("subscriber")).reason_code == 0
    for i in range(5):  # 1000 bytes
        assert r.subscribe([(filt(i), 1)]).codes == [1], "filter %d" % i
    ack = r.subscribe([(filt(5), 1), (filt(6, 20), 1)])  # 1200 refused; 1020 fits
    assert ack.codes == [0x97, 1], ack
    r.ping()  # refusing a filter does not end the connection
    r.unsubscribe([filt(0), filt(1)])
    assert r.subscribe([(filt(5), 1)]).codes == [1]

    r4 = clients.raw(version=4)
    assert r4.connect(unique("subscriber311")).reason_code == 0
    for i in range(5):
        assert r4.subscribe([(filt(i), 1)]).codes == [1]
    assert r4.subscribe([(filt(5), 1)]).codes == [0x80]
    r4.ping()
    assert_served(b)


def test_client_id_longer_than_max_client_id_length(nimbus, clients):
    nimbus.start(["--max-client-id-length", "23"])
    r = clients.raw(version=5)
    assert r.connect("a" * 23).reason_code == 0
    r = clients.raw(version=5)
    assert r.connect("b" * 24).reason_code == 0x85
    r.wait_closed(TIMEOUT)
    r = clients.raw(version=4)
    assert r.connect("c" * 24).reason_code == 2
    r.wait_closed(TIMEOUT)
    # The default is AWS IoT's 128.
    nimbus.restart(extra_args=[])
    assert clients.raw(version=5).connect("d" * 128).reason_code == 0
    assert clients.raw(version=5).connect("e" * 129).reason_code == 0x85


# ====================================================================== MQTT protocol items

def connect_with_props(prop_block, client_id="props"):
    """MQTT 5 CONNECT whose property block is exactly `prop_block` (length included)."""
    var = rawmqtt.utf8("MQTT") + bytes([5, 0x02]) + rawmqtt.u16(60) + prop_block
    return rawmqtt.packet(rawmqtt.CONNECT, 0, var + rawmqtt.utf8(client_id))


def _block(body):
    return rawmqtt.varint(len(body)) + body


MALFORMED_CONNECT_PROPS = {
    "duplicate": _block(b"\x11" + rawmqtt.u32(10) + b"\x11" + rawmqtt.u32(20)),
    "receive-maximum-0": _block(b"\x21" + rawmqtt.u16(0)),
    "unknown-id": _block(b"\x7f\x00\x01"),
    "property-overruns-block": rawmqtt.varint(3) + b"\x11\x00\x00",
    "block-overruns-packet": rawmqtt.varint(100) + b"\x11" + rawmqtt.u32(1),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CONNECT_PROPS))
def test_malformed_connect_properties_get_connack_0x81_or_0x82(server, clients, case):
    b = bystander(clients)
    r = clients.raw(version=5)
    r.send(connect_with_props(MALFORMED_CONNECT_PROPS[case], unique("bad")))
    pkts = r.wait_closed(TIMEOUT)
    assert len(pkts) == 1 and pkts[0].type == rawmqtt.CONNACK, pkts
    assert pkts[0].reason_code in (0x81, 0x82), pkts
    assert_served(b)


@pytest.mark.parametrize("response_topic", ["a/+/b", "a/#"])
def test_response_topic_with_wildcard_is_a_protocol_error(server, clients, response_topic):
    b = bystander(clients)
    r = clients.raw(version=5)
    assert r.connect(unique("req")).reason_code == 0
    r.send(rawmqtt.publish(unique("req"), b"q", qos=1, pid=1,
                           props={"ResponseTopic": response_topic}))
    pkts = r.wait_closed(TIMEOUT)
    assert [(p.type, p.reason_code) for p in pkts] == [(rawmqtt.DISCONNECT, 0x82)], pkts
    assert_served(b)


@pytest.mark.parametrize("version", [5, 4])
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_empty_topic_filter_is_malformed(server, clients, version, kind):
    if kind == "subscribe":
        data = rawmqtt.subscribe(7, [("", 1)], version=version)
    else:
        data = rawmqtt.unsubscribe(7, [""], version=version)
    pkts = assert_rejected(server, clients, version, data)
    assert not any(p.type in (rawmqtt.SUBACK, rawmqtt.UNSUBACK) for p in pkts), pkts
    if version == 5:
        assert [(p.type, p.reason_code) for p in pkts] == [(rawmqtt.DISCONNECT, 0x81)], pkts


def test_websocket_text_frame_closes_the_connection(server, clients):
    b = bystander(clients)
    ws = WsMqtt(server)
    clients.raw_created.append(ws)
    assert ws.connect(unique("ws")).reason_code == 0
    ws.ping()  # binary frames work
    ws.send_frame(WS_TEXT, rawmqtt.pingreq())
    pkts = ws.wait_closed(TIMEOUT)
    assert not any(p.type == rawmqtt.PINGRESP for p in pkts), \
        "a PINGREQ in a text frame was answered: %r" % pkts
    assert_served(b)


@pytest.mark.parametrize("key", ["abc", "!" * 24, base64.b64encode(b"x" * 15).decode()],
                         ids=["short", "not-base64", "15-bytes"])
def test_invalid_sec_websocket_key_gets_400(server, key):
    conn = RawHttp(server)
    try:
        conn.send(ws_upgrade_request(key=key))
        try:
            resp = conn.read_response()
        except rawmqtt.ConnectionClosed as e:
            raise AssertionError("closed without a 400 (%s)" % e)
    finally:
        conn.close()
    assert resp.status == 400, resp


BRIDGE_LEVELS = {
    0x83: ("MQIsdp", 4),  # Mosquitto bridge, protocol_version mqttv31
    0x84: ("MQTT", 4),    # mqttv311 (the default)
    0x85: ("MQTT", 5),    # mqttv50
}


@pytest.mark.parametrize("level", sorted(BRIDGE_LEVELS), ids=lambda lv: "0x%02x" % lv)
def test_bridge_protocol_level_is_accepted_with_no_local_and_retain_as_published(
        server, clients, level):
    name, version = BRIDGE_LEVELS[level]
    topic, marker, retained = unique("bridged"), unique("marker"), unique("retained")
    r = clients.raw(version=version)
    var = rawmqtt.utf8(name) + bytes([level, 0x02]) + rawmqtt.u16(60)
    if version == 5:
        var += rawmqtt.varint(0)
    r.send(rawmqtt.packet(rawmqtt.CONNECT, 0, var + rawmqtt.utf8(unique("br")[:20])))
    ack = r.expect(rawmqtt.CONNACK)
    assert ack.reason_code == 0, "bridge CONNECT level 0x%02x: %r" % (level, ack)
    assert r.subscribe([(topic, 1), (marker, 1), (retained, 1)]).codes == [1, 1, 1]

    other = clients.connected(version=V311, name="local")
    assert other.subscribe(topic, 1) == [1]
    r.publish(topic, b"from the bridge", qos=1)
    assert other.expect(topic=topic).payload == b"from the bridge"  # routed to the others

    other.publish(retained, b"live retained", qos=1, retain=True)
    other.publish(marker, b"end", qos=1)
    got = []
    while True:
        pkt = r.expect(rawmqtt.PUBLISH)
        r.ack(pkt)
        if pkt.topic == marker:
            break
        got.append(pkt)
    assert not any(p.topic == topic for p in got), \
        "the bridge got its own message back: %r" % got
    live = [p for p in got if p.topic == retained]
    assert len(live) == 1 and live[0].retain, \
        "a bridge's subscriptions keep the retain flag as published: %r" % got
    other.publish(retained, b"", qos=1, retain=True)


# ====================================================================== data directory lock

def test_second_server_on_the_same_data_directory_exits_at_once(server, clients):
    b = bystander(clients)
    watched = [server.data_dir / "ca" / "server.crt", server.endpoints_file]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched}
    started = time.monotonic()
    try:
        res = subprocess.run(server.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=str(server.workdir), timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError("a second nimbus on a data directory in use kept running")
    elapsed = time.monotonic() - started
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    assert res.returncode == 1, "exit status %r\nstdout: %s\nstderr: %s" % (res.returncode,
                                                                            out, err)
    assert "data directory in use by nimbus pid %d" % server.proc.pid in err, \
        "stdout: %s\nstderr: %s" % (out, err)
    assert elapsed < 5, "took %.1fs to give up" % elapsed
    for p in watched:
        assert (p.read_bytes(), p.stat().st_mtime_ns) == before[p], "%s was touched" % p
    assert (server.data_dir / "lock").exists()
    server.assert_alive()
    assert_served(b)
    assert http_get(server.http_url + "/healthz")[0] == 200


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_accept_errors_back_off_and_are_logged_once_per_interval(nimbus, clients):
    """Out of descriptors (EMFILE): the accept loop backs off instead of spinning, logs once per
    interval, and serves again as soon as descriptors are free."""
    nimbus.rlimit_nofile = 64
    nimbus.start(["--connect-timeout", "30"])
    held = []
    try:
        # Each accepted socket takes a descriptor; the kernel keeps completing handshakes into
        # the backlog after the server runs out, so these connects all succeed.
        for _ in range(80):
            held.append(socket.create_connection((nimbus.host, nimbus.mqtt_port), timeout=TIMEOUT))
        wait_until(lambda: "accept_failed" in nimbus.log_path.read_text(errors="replace"),
                   what="accept_failed logged")
        cpu_before = _cpu_seconds(nimbus.proc.pid)
        time.sleep(3)  # measuring that nothing happens: a spinning accept loop burns a core
        spent = _cpu_seconds(nimbus.proc.pid) - cpu_before
        assert spent < 0.5, "the accept loop spun: %.2f s of CPU in 3 s" % spent
        lines = nimbus.log_path.read_text(errors="replace").count("accept_failed")
        assert lines <= 2, "accept_failed logged %d times in about 3 s" % lines
    finally:
        for s in held:
            s.close()
    # Descriptors come back as the held sockets close; the listener serves again.
    wait_until(lambda: _try_connect(clients), timeout=10, what="a client served again")
    nimbus.assert_alive()


def _try_connect(clients):
    try:
        r = clients.raw(version=5)
        probe = r.connect(unique("probe"))
        return r if probe.reason_code == 0 else None
    except OSError:
        return None


def test_websocket_upgrades_count_as_pending_until_connect(nimbus, clients):
    """MQTT over WebSocket is bounded like TCP and TLS: an upgraded socket without CONNECT counts
    against --max-pending-per-address; past it the upgraded socket is closed at once, and a
    CONNECT frees its slot."""
    nimbus.start(["--max-pending-per-address", "3", "--connect-timeout", "10"])
    b = bystander(clients)
    held = [WsMqtt(nimbus) for _ in range(3)]
    try:
        extra = WsMqtt(nimbus)  # the upgrade itself succeeds; MQTT then refuses the socket
        with pytest.raises((rawmqtt.ConnectionClosed, rawmqtt.NoPacket)):
            extra.recv(timeout=TIMEOUT)
        assert extra.closed, "a 4th pending WebSocket from one address was kept open"
        for h in held:
            assert not h.closed
        assert_served(b)
        # One of them completes CONNECT: it no longer counts, so another may wait.
        assert held[0].connect(unique("ws-done")).reason_code == 0
        another = WsMqtt(nimbus)
        assert another.connect(unique("ws-another")).reason_code == 0
    finally:
        for h in held:
            h.close()


def test_restart_loads_retained_messages_only_up_to_the_limits(nimbus, clients):
    """A store holding more retained bytes than the limits allow does not need that much memory
    at start-up: what fits is served, the rest stays stored (and is deleted there when a client
    clears its topic)."""
    nimbus.start(["--sys-interval", "0"])
    prefix = unique("big-retained")
    p = clients.raw(version=5)
    assert p.connect(unique("retainer")).reason_code == 0
    payload = b"r" * (64 * 1024)
    for i in range(64):  # 4 MiB of retained payloads
        assert p.publish("%s/%02d" % (prefix, i), payload, qos=1, retain=True).reason_code < 0x80
    p.disconnect(wait_closed=True)
    nimbus.restart(extra_args=["--sys-interval", "0", "--max-retained-bytes", str(1024 * 1024)])
    assert "retained_not_loaded" in nimbus.log_path.read_text(errors="replace")
    loaded = metric(nimbus, "nimbus_mqtt_retained_bytes")
    assert 0 < loaded <= 1024 * 1024, "loaded %d retained bytes past the 1 MiB limit" % loaded
    served = int(metric(nimbus, "nimbus_mqtt_retained_messages"))
    assert served < 64
    # Clearing a topic that was left stored deletes it there too.
    c = clients.raw(version=5)
    assert c.connect(unique("clearer")).reason_code == 0
    assert c.publish("%s/63" % prefix, b"", qos=1, retain=True).reason_code < 0x80
    c.disconnect(wait_closed=True)
    nimbus.restart(extra_args=["--sys-interval", "0"])
    assert metric(nimbus, "nimbus_mqtt_retained_messages") == 63


def test_restart_shares_a_message_queued_for_many_offline_sessions(nimbus, clients):
    """A QoS 1 fan-out to offline persistent sessions is stored once per session but loaded once
    at restart: 300 sessions x 8 queued messages of 32 KiB would be 75 MiB as copies."""
    nimbus.start(["--sys-interval", "0"])
    empty_kib = resident_kib(nimbus.proc.pid)  # the server with nothing stored (sanitizers too)
    topic = unique("fleet") + "/broadcast"
    for i in range(300):
        r = clients.raw(version=5)
        assert r.connect("offline-%03d" % i, clean=False,
                         props={"SessionExpiryInterval": 3600}).reason_code == 0
        r.subscribe([(topic, 1)])
        r.disconnect(wait_closed=True)
    p = clients.raw(version=5)
    assert p.connect(unique("broadcaster")).reason_code == 0
    for i in range(8):
        assert p.publish(topic, bytes([65 + i]) * (32 * 1024), qos=1).reason_code < 0x80
    p.disconnect(wait_closed=True)
    nimbus.restart(extra_args=["--sys-interval", "0"])
    grown_kib = resident_kib(nimbus.proc.pid) - empty_kib
    # 2,400 queued deliveries loaded: far below one copy per row (75 MiB).
    assert grown_kib < 40 * 1024, "resident memory grew by %d KiB over an empty server" % grown_kib
    r = clients.raw(version=5)
    ack = r.connect("offline-007", clean=False, props={"SessionExpiryInterval": 3600})
    assert ack.session_present
    got = [r.expect(rawmqtt.PUBLISH) for _ in range(8)]
    for pkt in got:
        r.ack(pkt)
    assert [pkt.payload[:1] for pkt in got] == [bytes([65 + i]) for i in range(8)]
