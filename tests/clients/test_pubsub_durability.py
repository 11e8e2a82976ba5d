"""Pub/Sub durability under load (issue 12: "kill -9 under load: every returned id delivered after
restart, no OK-acked one; counts"), driving the real `nimbus` binary over REST v1 on its HTTP
listener (loopback: no credentials) with the standard library's http.client:

- four publisher threads publish batches concurrently while one puller thread pulls (waiting
  pulls) and acknowledges what it got with unary Acknowledge calls, and one more pulls and never
  acknowledges (its messages leased for 600 s); about 3 s in, the server is killed with SIGKILL
  (by the PID this test started) while requests are in flight, and restarted on the same data
  directory;
- after the restart everything is pulled (and acknowledged) until the backlog is empty, and:
  every message id whose Publish answered 200 is delivered again unless its Acknowledge answered
  200 before the kill, within 20 s (so the 600 s leases died with the process); no id whose
  Acknowledge answered 200 is ever delivered again (acks survive); every delivered message
  carries the payload its Publish sent (an id never names another message), and nothing is
  delivered that no publisher sent;
- once with `--pubsub-fsync always` (the default: answers after fdatasync) and once with
  `--pubsub-fsync interval` (answers after the write, which survives kill -9 too).

The counts (published, acked before the kill, redelivered, in flight at the kill) are printed
(run pytest with -s to see them).

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_pubsub_durability.py
"""

import base64
import http.client
import json
import threading
import time

import pytest

PROJECT = "durable"
TOPIC = "load-topic"
SUB = "load-sub"
PUBLISHERS = 4
BATCH = 25                 # messages per Publish
PAYLOAD_PAD = b"x" * 200   # bytes appended to every payload
LOAD_SECONDS = 3.0         # how long the load runs before the kill
CALL_TIMEOUT = 10.0        # one REST call (a waiting pull answers within the server's 30 s cap,
WAIT_PULL_TIMEOUT = 40.0   # so its socket timeout is longer)
DRAIN_TIMEOUT = 20.0       # all expected ids must be back within this after the restart
EMPTY_PULLS = 3            # returnImmediately pulls that must all come back empty at the end


# ====================================================================== a small REST client

class CallFailed(Exception):
    """No HTTP answer (connection refused or reset, timeout): the outcome is unknown."""


class Rest:
    """REST v1 calls on one keep-alive connection (one per thread)."""

    def __init__(self, hostport):
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method, path, body=None, timeout=CALL_TIMEOUT):
        """(status, parsed JSON body); raises CallFailed when no answer came."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self.conn.timeout = timeout
            if self.conn.sock is not None:
                self.conn.sock.settimeout(timeout)
            self.conn.request(method, "/v1/projects/%s/%s" % (PROJECT, path), body=data,
                              headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise CallFailed("%s %s: %r" % (method, path, e)) from e
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return resp.status, (json.loads(raw) if raw else None)

    def ok(self, method, path, body=None, timeout=CALL_TIMEOUT):
        status, answer = self.call(method, path, body, timeout)
        assert status == 200, "%s %s -> %d %r" % (method, path, status, answer)
        return answer

    # ---- operations
    def publish(self, payloads):
        return self.call("POST", "topics/%s:publish" % TOPIC,
                         {"messages": [{"data": base64.b64encode(p).decode()} for p in payloads]})

    def pull(self, max_messages, return_immediately):
        return self.call("POST", "subscriptions/%s:pull" % SUB,
                         {"maxMessages": max_messages, "returnImmediately": return_immediately},
                         timeout=CALL_TIMEOUT if return_immediately else WAIT_PULL_TIMEOUT)

    def acknowledge(self, ack_ids):
        return self.call("POST", "subscriptions/%s:acknowledge" % SUB, {"ackIds": list(ack_ids)})


def deliveries(answer):
    """[(message id, payload bytes, ack id)] of a pull answer."""
    return [(rm["message"]["messageId"], base64.b64decode(rm["message"].get("data", "")),
             rm["ackId"]) for rm in (answer or {}).get("receivedMessages", [])]


# ====================================================================== the load before the kill

class Load:
    """What the clients saw before the kill. Guarded by `lock`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.published = {}          # message id -> payload, Publish answered 200
        self.unanswered = set()      # payloads of Publishes that got no answer (or not a 200)
        self.refused = []            # (status, body) of Publishes answered with an error
        self.delivered = {}          # message id -> payload, pulled before the kill
        self.acked = set()           # message ids whose Acknowledge answered 200
        self.ack_unknown = set()     # message ids whose Acknowledge got no answer
        self.leased = set()          # message ids pulled and never acknowledged
        self.errors = []             # unexpected answers (test failures)
        self.publish_calls = 0
        self.pull_calls = 0


def publisher(hostport, worker, load):
    rest = Rest(hostport)
    batch_no = 0
    try:
        while not load.stop.is_set():
            payloads = [b"w%d-b%d-m%d|" % (worker, batch_no, i) + PAYLOAD_PAD
                        for i in range(BATCH)]
            batch_no += 1
            try:
                status, answer = rest.publish(payloads)
            except CallFailed:
                with load.lock:
                    load.unanswered.update(payloads)
                return  # the server is gone
            with load.lock:
                load.publish_calls += 1
                if status != 200:
                    load.unanswered.update(payloads)
                    load.refused.append((status, answer))
                    continue
                ids = answer.get("messageIds", [])
                if len(ids) != len(payloads):
                    load.errors.append("publish answered %d ids for %d messages: %r"
                                       % (len(ids), len(payloads), answer))
                for message_id, payload in zip(ids, payloads):
                    if message_id in load.published:
                        load.errors.append("message id %s returned twice" % message_id)
                    load.published[message_id] = payload
    finally:
        rest.close()


def leaser(hostport, load):
    """Pulls and never acknowledges: what it got is leased (ackDeadlineSeconds 600) when the
    server dies, and must be delivered again right after the restart (leases die with the
    process)."""
    rest = Rest(hostport)
    try:
        while not load.stop.is_set():
            try:
                status, answer = rest.pull(20, return_immediately=False)
            except CallFailed:
                return
            with load.lock:
                if status != 200:
                    load.errors.append("pull -> %d %r" % (status, answer))
                    return
                for message_id, payload, _ in deliveries(answer):
                    load.delivered[message_id] = payload
                    load.leased.add(message_id)
    finally:
        rest.close()


def puller(hostport, load):
    rest = Rest(hostport)
    try:
        while not load.stop.is_set():
            try:
                status, answer = rest.pull(100, return_immediately=False)
            except CallFailed:
                return
            got = deliveries(answer) if status == 200 else []
            with load.lock:
                load.pull_calls += 1
                if status != 200:
                    load.errors.append("pull -> %d %r" % (status, answer))
                    return
                for message_id, payload, _ in got:
                    load.delivered[message_id] = payload
            if not got:
                continue
            ids = [message_id for message_id, _, _ in got]
            try:
                status, answer = rest.acknowledge([ack_id for _, _, ack_id in got])
            except CallFailed:
                with load.lock:
                    load.ack_unknown.update(ids)
                return
            with load.lock:
                if status == 200:
                    load.acked.update(ids)
                else:
                    load.ack_unknown.update(ids)
                    load.errors.append("acknowledge -> %d %r" % (status, answer))
    finally:
        rest.close()


# ====================================================================== the test

@pytest.mark.parametrize("fsync", ["always", "interval"])
def test_kill9_under_load_keeps_every_published_and_no_acked_message(nimbus, fsync):
    server = nimbus.start(["--pubsub-fsync", fsync])
    admin = Rest(server.endpoints["http"])
    admin.ok("PUT", "topics/" + TOPIC, {})
    admin.ok("PUT", "subscriptions/" + SUB,
             {"topic": "projects/%s/topics/%s" % (PROJECT, TOPIC), "ackDeadlineSeconds": 600})
    admin.close()

    load = Load()
    hostport = server.endpoints["http"]
    threads = [threading.Thread(target=publisher, args=(hostport, w, load), daemon=True,
                                name="publisher-%d" % w) for w in range(PUBLISHERS)]
    threads.append(threading.Thread(target=puller, args=(hostport, load), daemon=True,
                                    name="puller"))
    threads.append(threading.Thread(target=leaser, args=(hostport, load), daemon=True,
                                    name="leaser"))
    started = time.monotonic()
    for t in threads:
        t.start()
    # The load runs for LOAD_SECONDS (a fixed duration, not a wait for an event) ...
    load.stop.wait(LOAD_SECONDS)
    with load.lock:
        published_at_kill = len(load.published)
        acked_at_kill = len(load.acked)
    # ... then the server dies under it, with the threads' requests in flight.
    assert server.kill9() == -9
    load.stop.set()
    for t in threads:
        t.join(timeout=CALL_TIMEOUT + 5)
        assert not t.is_alive(), "%s still running after the kill" % t.name
    load_seconds = time.monotonic() - started

    assert not load.errors, "unexpected answers under load: %r" % load.errors[:10]
    assert not load.refused, "publishes refused under load: %r" % load.refused[:5]
    assert published_at_kill > 0 and acked_at_kill > 0, \
        "no load before the kill: %d published, %d acked" % (published_at_kill, acked_at_kill)

    # ---- restart on the same data directory and drain the subscription
    server.start()
    rest = Rest(server.endpoints["http"])
    after = {}            # message id -> payload, delivered after the restart
    times_after = {}      # message id -> how many times delivered after the restart
    published_ok = set(load.published)
    must_return = published_ok - load.acked - load.ack_unknown
    deadline = time.monotonic() + DRAIN_TIMEOUT

    def take(answer):
        got = deliveries(answer)
        for message_id, payload, _ in got:
            after[message_id] = payload
            times_after[message_id] = times_after.get(message_id, 0) + 1
        if got:
            rest.ok("POST", "subscriptions/%s:acknowledge" % SUB,
                    {"ackIds": [ack_id for _, _, ack_id in got]})
        return len(got)

    while not must_return <= set(after):
        assert time.monotonic() < deadline, (
            "%d of the %d messages whose Publish answered 200 (and not acked before the kill) "
            "were not delivered within %.0fs of the restart, e.g. %r"
            % (len(must_return - set(after)), len(must_return), DRAIN_TIMEOUT,
               sorted(must_return - set(after))[:10]))
        status, answer = rest.pull(1000, return_immediately=False)
        assert status == 200, "pull after restart -> %d %r" % (status, answer)
        take(answer)
    empty_in_a_row = 0
    while empty_in_a_row < EMPTY_PULLS:
        assert time.monotonic() < deadline, "the backlog did not empty after the restart"
        status, answer = rest.pull(1000, return_immediately=True)
        assert status == 200, "pull after restart -> %d %r" % (status, answer)
        empty_in_a_row = 0 if take(answer) else empty_in_a_row + 1
    rest.close()

    # ---- the verdict
    attempted = set(load.published.values()) | load.unanswered
    redelivered_acked = set(after) & load.acked
    assert not redelivered_acked, (
        "%d messages whose Acknowledge answered 200 before the kill were delivered again "
        "after it (fsync=%s), e.g. %r" % (len(redelivered_acked), fsync,
                                          sorted(redelivered_acked)[:10]))
    wrong_payload = {i: (load.published[i], p) for i, p in after.items()
                     if i in load.published and load.published[i] != p}
    assert not wrong_payload, "ids delivered with another message's data: %r" \
        % list(wrong_payload.items())[:5]
    wrong_before = {i: (load.published[i], p) for i, p in load.delivered.items()
                    if i in load.published and load.published[i] != p}
    assert not wrong_before, "ids delivered with another message's data before the kill: %r" \
        % list(wrong_before.items())[:5]
    phantoms = {i: p for i, p in after.items() if p not in attempted}
    assert not phantoms, "delivered after the restart but never published: %r" \
        % list(phantoms.items())[:5]

    leased = (load.leased & published_ok) - load.acked
    assert leased <= set(after), \
        "leased (never acked) messages not delivered again after the restart"
    assert load.leased, "the leaser got nothing before the kill"

    in_flight_payloads = load.unanswered
    in_flight_back = {i for i, p in after.items() if p in in_flight_payloads}
    redelivered = set(after) & set(load.delivered)   # pulled before, not OK-acked
    print("\n[pubsub durability fsync=%s] load %.1fs: %d publish calls, %d pull calls; "
          "published (Publish 200) %d; delivered before kill %d; acked (Acknowledge 200) before "
          "kill %d; ack in flight at kill %d; leased (pulled, never acked, 600 s deadline) %d; "
          "publishes in flight at kill %d messages, of which "
          "%d delivered after restart; delivered after restart %d (%d redelivered after an "
          "unacked pull before the kill, %d delivered more than once after restart)"
          % (fsync, load_seconds, load.publish_calls, load.pull_calls, len(published_ok),
             len(load.delivered), len(load.acked), len(load.ack_unknown), len(load.leased),
             len(in_flight_payloads), len(in_flight_back), len(after), len(redelivered),
             sum(1 for n in times_after.values() if n > 1)))
