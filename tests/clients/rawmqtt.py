"""Minimal MQTT 3.1.1 / 5.0 packet encoder/decoder and a blocking raw-socket
client, for tests that need byte-level control (flow control, malformed
packets, precise reason codes, topic aliases sent by the server, ...).

Nothing here is clever: every packet is built by hand from the OASIS specs so
that a test can also build *invalid* packets (see `fixed_header`, `raw_*`).

Protocol versions are the protocol level byte: 4 = MQTT 3.1.1, 5 = MQTT 5.0.
"""

import logging
import select
import socket
import struct
import time

log = logging.getLogger("rawmqtt")

# Control packet types
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
    PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# Selected MQTT 5 reason codes
RC_SUCCESS = 0x00
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_UNSPECIFIED = 0x80
RC_MALFORMED_PACKET = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_KEEP_ALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95

# MQTT 5 properties: id -> (name, type)
PROPS = {
    0x01: ("PayloadFormatIndicator", "byte"),
    0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"),
    0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"),
    0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"),
    0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"),
    0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"),
    0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"),
    0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"),
    0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"),
    0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"),
    0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"),
    0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"),
    0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROP_IDS = {name: pid for pid, (name, _t) in PROPS.items()}
MULTI_PROPS = {"UserProperty", "SubscriptionIdentifier"}


class ProtocolError(Exception):
    """The peer sent bytes that are not valid MQTT."""


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection."""


class NoPacket(Exception):
    """No complete packet arrived before the deadline."""


# ---------------------------------------------------------------- encoding

def varint(n):
    if n < 0 or n > 268435455:
        raise ValueError("varint out of range: %r" % n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def utf8(s):
    """Length-prefixed UTF-8 string; bytes are passed through unchecked so that
    tests can send invalid UTF-8 on purpose."""
    b = s if isinstance(s, (bytes, bytearray)) else s.encode("utf-8")
    return u16(len(b)) + bytes(b)


def binary(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return u16(len(b)) + bytes(b)


def encode_props(props):
    """props: None, a dict {name: value} (UserProperty: list of (k, v) pairs,
    SubscriptionIdentifier: int or list), or a list of (name, value) tuples
    (kept in order, duplicates allowed). Returns length-prefixed bytes."""
    if not props:
        return varint(0)
    items = []
    if isinstance(props, dict):
        for name, value in props.items():
            if name in MULTI_PROPS and isinstance(value, (list, tuple)) and \
                    not (name == "UserProperty" and len(value) == 2 and isinstance(value[0], str)):
                items.extend((name, v) for v in value)
            else:
                items.append((name, value))
    else:
        items = list(props)
    body = bytearray()
    for name, value in items:
        pid = PROP_IDS[name]
        kind = PROPS[pid][1]
        body += varint(pid)
        if kind == "byte":
            body.append(value)
        elif kind == "u16":
            body += u16(value)
        elif kind == "u32":
            body += u32(value)
        elif kind == "varint":
            body += varint(value)
        elif kind == "str":
            body += utf8(value)
        elif kind == "bin":
            body += binary(value)
        elif kind == "pair":
            body += utf8(value[0]) + utf8(value[1])
    return varint(len(body)) + bytes(body)


def fixed_header(ptype, flags, remaining_length):
    return bytes([(ptype << 4) | (flags & 0x0F)]) + varint(remaining_length)


def packet(ptype, flags, body):
    return fixed_header(ptype, flags, len(body)) + bytes(body)


def connect(client_id="", version=5, clean=True, keepalive=60, props=None, will=None,
            username=None, password=None, protocol_name="MQTT", connect_flags=None):
    """will: dict(topic=, payload=b"", qos=0, retain=False, props=None)."""
    flags = 0
    if clean:
        flags |= 0x02
    payload = utf8(client_id)
    if will is not None:
        flags |= 0x04 | ((will.get("qos", 0) & 3) << 3) | (0x20 if will.get("retain") else 0)
        if version == 5:
            payload += encode_props(will.get("props"))
        payload += utf8(will["topic"]) + binary(will.get("payload", b""))
    if username is not None:
        flags |= 0x80
        payload += utf8(username)
    if password is not None:
        flags |= 0x40
        payload += binary(password)
    if connect_flags is not None:
        flags = connect_flags
    var = utf8(protocol_name) + bytes([version, flags]) + u16(keepalive)
    if version == 5:
        var += encode_props(props)
    return packet(CONNECT, 0, var + payload)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=None, props=None, version=5):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    flags = (0x08 if dup else 0) | ((qos & 3) << 1) | (0x01 if retain else 0)
    body = utf8(topic)
    if qos > 0:
        body += u16(pid)
    if version == 5:
        body += encode_props(props)
    return packet(PUBLISH, flags, body + payload)


def _ack(ptype, flags, pid, rc, props, version):
    body = u16(pid)
    if version == 5 and (rc not in (None, 0) or props):
        body += bytes([rc or 0])
        if props:
            body += encode_props(props)
    return packet(ptype, flags, body)


def puback(pid, rc=None, props=None, version=5):
    return _ack(PUBACK, 0, pid, rc, props, version)


def pubrec(pid, rc=None, props=None, version=5):
    return _ack(PUBREC, 0, pid, rc, props, version)


def pubrel(pid, rc=None, props=None, version=5):
    return _ack(PUBREL, 2, pid, rc, props, version)


def pubcomp(pid, rc=None, props=None, version=5):
    return _ack(PUBCOMP, 0, pid, rc, props, version)


def subscribe(pid, filters, props=None, version=5):
    """filters: list of (filter, options). options: QoS for v3.1.1; for v5 the
    full options byte (see `sub_options`)."""
    body = u16(pid)
    if version == 5:
        body += encode_props(props)
    for flt, opts in filters:
        body += utf8(flt) + bytes([opts])
    return packet(SUBSCRIBE, 2, body)


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return (qos & 3) | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | \
        ((retain_handling & 3) << 4)


def unsubscribe(pid, filters, props=None, version=5):
    body = u16(pid)
    if version == 5:
        body += encode_props(props)
    for flt in filters:
        body += utf8(flt)
    return packet(UNSUBSCRIBE, 2, body)


def pingreq():
    return packet(PINGREQ, 0, b"")


def disconnect(rc=0, props=None, version=5):
    if version == 5 and (rc or props):
        return packet(DISCONNECT, 0, bytes([rc]) + (encode_props(props) if props else b""))
    return packet(DISCONNECT, 0, b"")


# ---------------------------------------------------------------- decoding

class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def left(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n > self.left():
            raise ProtocolError("truncated packet (need %d, have %d)" % (n, self.left()))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def varint(self):
        mult, value = 1, 0
        for _ in range(4):
            b = self.byte()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise ProtocolError("variable byte integer longer than 4 bytes")

    def string(self):
        raw = self.take(self.u16())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("invalid UTF-8 string from server: %r" % raw) from e

    def binary(self):
        return self.take(self.u16())

    def rest(self):
        return self.take(self.left())

    def props(self):
        n = self.varint()
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("property length exceeds packet")
        out = {}
        while self.pos < end:
            pid = self.varint()
            if pid not in PROPS:
                raise ProtocolError("unknown property id 0x%02x" % pid)
            name, kind = PROPS[pid]
            if kind == "byte":
                v = self.byte()
            elif kind == "u16":
                v = self.u16()
            elif kind == "u32":
                v = self.u32()
            elif kind == "varint":
                v = self.varint()
            elif kind == "str":
                v = self.string()
            elif kind == "bin":
                v = self.binary()
            else:
                v = (self.string(), self.string())
            if name in MULTI_PROPS:
                out.setdefault(name, []).append(v)
            elif name in out:
                raise ProtocolError("property %s sent more than once" % name)
            else:
                out[name] = v
        if self.pos != end:
            raise ProtocolError("property block overran its length")
        return out


class Packet:
    """A decoded packet. Common attributes: type, flags, body, name.
    Type specific: CONNACK: session_present, reason_code, props;
    PUBLISH: topic, qos, retain, dup, pid, props, payload;
    PUBACK..PUBCOMP: pid, reason_code, props; SUBACK/UNSUBACK: pid, codes, props;
    DISCONNECT/AUTH: reason_code, props."""

    def __init__(self, ptype, flags, body, version):
        self.type = ptype
        self.flags = flags
        self.body = bytes(body)
        self.version = version
        self.props = {}
        self.reason_code = None
        self.name = PACKET_NAMES.get(ptype, "RESERVED(%d)" % ptype)
        r = Reader(body)
        if ptype == CONNACK:
            ack_flags = r.byte()
            if ack_flags & 0xFE:
                raise ProtocolError("CONNACK reserved flags set: %#x" % ack_flags)
            self.session_present = bool(ack_flags & 1)
            self.reason_code = r.byte()
            if version == 5 and r.left():
                self.props = r.props()
        elif ptype == PUBLISH:
            self.qos = (flags >> 1) & 3
            self.retain = bool(flags & 1)
            self.dup = bool(flags & 8)
            if self.qos == 3:
                raise ProtocolError("PUBLISH with QoS 3")
            self.topic = r.string()
            self.pid = r.u16() if self.qos else None
            if version == 5:
                self.props = r.props()
            self.payload = r.rest()
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            expected = 2 if ptype == PUBREL else 0
            if flags != expected:
                raise ProtocolError("%s with flags %#x" % (self.name, flags))
            self.pid = r.u16()
            self.reason_code = 0
            if version == 5 and r.left():
                self.reason_code = r.byte()
                if r.left():
                    self.props = r.props()
        elif ptype in (SUBACK, UNSUBACK):
            self.pid = r.u16()
            if version == 5:
                self.props = r.props()
            self.codes = list(r.rest())
        elif ptype in (DISCONNECT, AUTH):
            self.reason_code = 0
            if version == 5 and r.left():
                self.reason_code = r.byte()
                if r.left():
                    self.props = r.props()
        elif ptype == PINGRESP:
            pass
        else:
            raise ProtocolError("server sent unexpected packet type %d" % ptype)
        if r.left():
            raise ProtocolError("%s has %d trailing bytes" % (self.name, r.left()))

    def __repr__(self):
        fields = {k: v for k, v in self.__dict__.items() if k not in ("body", "flags", "version", "type")}
        return "<%s %r>" % (self.name, fields)


# ---------------------------------------------------------------- client

class RawClient:
    """Blocking MQTT client on a plain (or TLS) socket. Packets that arrive
    while waiting for something else are kept in `backlog` and returned first
    by `recv()`."""

    def __init__(self, host, port, version=5, timeout=5.0, ssl_context=None, server_hostname=None,
                 source_address=None):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source_address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=server_hostname or host)
        self.buf = bytearray()
        self.backlog = []
        self.closed = False
        self._pid = 0

    # -- plumbing
    def next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def send(self, data):
        log.debug("raw send %s", bytes(data)[:64].hex())
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more bytes into the buffer; raise NoPacket at the deadline and
        ConnectionClosed on EOF/reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoPacket()
        pending = getattr(self.sock, "pending", lambda: 0)()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                raise NoPacket()
        self.sock.settimeout(max(remaining, 0.01))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise NoPacket()
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
            self.closed = True
            raise ConnectionClosed(repr(e))
        except OSError as e:  # includes ssl.SSLError (alerts, unexpected EOF)
            self.closed = True
            raise ConnectionClosed(repr(e))
        if not data:
            self.closed = True
            raise ConnectionClosed("EOF")
        self.buf += data

    def _parse_one(self):
        """Return (ptype, flags, body) if the buffer holds a full packet."""
        if len(self.buf) < 2:
            return None
        mult, length, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            mult *= 128
            if i > 4:
                raise ProtocolError("server sent remaining length longer than 4 bytes")
        if len(self.buf) < i + length:
            return None
        first = self.buf[0]
        body = bytes(self.buf[i:i + length])
        del self.buf[:i + length]
        return first >> 4, first & 0x0F, body

    def recv(self, timeout=None):
        """Next packet (backlog first). Raises NoPacket / ConnectionClosed."""
        if self.backlog:
            return self.backlog.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            raw = self._parse_one()
            if raw is not None:
                pkt = Packet(raw[0], raw[1], raw[2], self.version)
                log.debug("raw recv %r", pkt)
                return pkt
            self._fill(deadline)

    def try_recv(self, timeout):
        """Like recv() but returns None when nothing arrives within timeout."""
        try:
            return self.recv(timeout)
        except NoPacket:
            return None

    def expect(self, ptype, timeout=None, keep_others=True):
        """Wait for a packet of the given type; others go to the backlog."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        skipped = []
        try:
            for i, p in enumerate(self.backlog):
                if p.type == ptype:
                    return self.backlog.pop(i)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoPacket()
                raw = self._parse_one()
                if raw is None:
                    self._fill(deadline)
                    continue
                pkt = Packet(raw[0], raw[1], raw[2], self.version)
                log.debug("raw recv %r", pkt)
                if pkt.type == ptype:
                    return pkt
                skipped.append(pkt)
        except NoPacket:
            raise NoPacket("no %s within timeout (other packets: %r)" % (PACKET_NAMES[ptype], skipped))
        finally:
            if keep_others:
                self.backlog.extend(skipped)

    def wait_closed(self, timeout=5.0):
        """Wait until the server closes the connection. Returns the packets
        received before the close (e.g. a DISCONNECT). Raises AssertionError if
        the connection is still open at the deadline."""
        got = list(self.backlog)
        self.backlog = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = self._parse_one()
            except ProtocolError:
                raw = None
            if raw is not None:
                try:
                    got.append(Packet(raw[0], raw[1], raw[2], self.version))
                except ProtocolError:
                    pass
                continue
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return got
            except NoPacket:
                raise AssertionError("server did not close the connection within %.1fs "
                                     "(received: %r)" % (timeout, got))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- protocol helpers
    def connect(self, client_id="", clean=True, keepalive=60, props=None, will=None, timeout=None, **kw):
        self.send(connect(client_id, version=self.version, clean=clean, keepalive=keepalive,
                          props=props, will=will, **kw))
        return self.expect(CONNACK, timeout)

    def subscribe(self, filters, props=None, timeout=None):
        """filters: list of (filter, options) or a single filter string (QoS 0)."""
        if isinstance(filters, str):
            filters = [(filters, 0)]
        pid = self.next_pid()
        self.send(subscribe(pid, filters, props, self.version))
        ack = self.expect(SUBACK, timeout)
        assert ack.pid == pid, "SUBACK packet id %r != %r" % (ack.pid, pid)
        return ack

    def unsubscribe(self, filters, props=None, timeout=None):
        pid = self.next_pid()
        self.send(unsubscribe(pid, filters, props, self.version))
        ack = self.expect(UNSUBACK, timeout)
        assert ack.pid == pid
        return ack

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, timeout=None):
        """Publish and complete the QoS handshake. Returns the final ack (or None)."""
        pid = self.next_pid() if qos else None
        self.send(publish(topic, payload, qos, retain, pid=pid, props=props, version=self.version))
        if qos == 1:
            ack = self.expect(PUBACK, timeout)
            assert ack.pid == pid
            return ack
        if qos == 2:
            rec = self.expect(PUBREC, timeout)
            assert rec.pid == pid
            if rec.reason_code is not None and rec.reason_code >= 0x80:
                return rec
            self.send(pubrel(pid, version=self.version))
            comp = self.expect(PUBCOMP, timeout)
            assert comp.pid == pid
            return comp
        return None

    def ack(self, pkt):
        """Acknowledge a received PUBLISH (QoS 1: PUBACK, QoS 2: PUBREC then
        PUBREL/PUBCOMP)."""
        if pkt.qos == 1:
            self.send(puback(pkt.pid, version=self.version))
        elif pkt.qos == 2:
            self.send(pubrec(pkt.pid, version=self.version))
            rel = self.expect(PUBREL)
            assert rel.pid == pkt.pid
            self.send(pubcomp(pkt.pid, version=self.version))

    def ping(self, timeout=None):
        self.send(pingreq())
        return self.expect(PINGRESP, timeout)

    def disconnect(self, rc=0, props=None, wait_closed=False):
        """Send DISCONNECT. With wait_closed, wait for the server to close the socket: it has
        then processed everything sent before (a reconnect cannot overtake it)."""
        try:
            self.send(disconnect(rc, props, self.version))
            if wait_closed:
                self.wait_closed()
        finally:
            self.close()
