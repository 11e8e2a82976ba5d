"""Time-series durability under kill -9: every point whose /write answered 204 is back after a
crash, including a crash while the store flushes its write buffer or compacts a day, driving the
real `nimbus` binary over InfluxDB's HTTP API on its HTTP listener (loopback: open) with the
standard library's http.client.

Every round: writer threads POST /write?db=nimbus&precision=ns batches of 500 lines (one series
per writer and round, unique times, every field value derived from the time so it can be
checked), a batch counting as acknowledged once its 204 arrived; the server is killed with
SIGKILL (by the PID this test started) while the writers still send, restarted on the same data
directory, and then, for every round that wrote to that directory so far: every acknowledged
point is back with its values; nothing is back that no writer sent (an unanswered batch may be
back or not); no series appeared that no writer wrote; and the restarted server takes a new
write and answers it.

Settings: `--tsdb-cache-snapshot-memory-mb 1` (its minimum) so the buffer is flushed to a day
partition every ~15k lines; round 5's server compacts every 10 s
(`--tsdb-compaction-interval-s`), and starts with the module (an autouse module fixture) so the
other rounds run while it waits.

Rounds (two data directories for rounds 1-4, one each for rounds 5 and 6):
 1. wal_fsync=interval, killed once a random number of batches were acknowledged;
 2. the same directory, killed as a flush writes a partition file (`<generation>.tsp.tmp` seen in
    the day's directory), repeated until a kill left the file behind (a kill mid-flush);
 3. wal_fsync=always, killed once a random number of batches were acknowledged;
 4. the same directory, killed as a flush writes the flushed-offset marker
    (`data/.flushed_offset.tmp`), repeated until a kill left it behind;
 5. compaction: a server started with the module gets yesterday's points in many flushes (so the
    day has >= 4 files: compaction_file_threshold); the store thread compacts past days 10 s after
    start. Compaction writes the merged file as `<newest generation>.tsp.tmp` beside the newest
    `<generation>.tsp` (a flush never reuses a generation): a watcher thread polls for that pair,
    writers start on today's points, and the server is killed while the merged file is still
    being written (checked: the .tmp is still there after the kill);
 6. new fields: a measurement's first points in one write big enough to be flushed at once, the
    server killed as soon as the flushed-offset marker is written, with --commit-interval-ms 1000
    so SQLite has not yet committed the field types the write created (the WAL records that
    named them are past the marker, so replay does not bring them back either).

The rounds' seed, counts and kill points are printed (run pytest with -s to see them); set
NIMBUS_DURABILITY_SEED to replay a seed. A failing round names its data directory (pytest keeps
the last three runs' tmp directories).

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_tsdb_durability.py
"""

import http.client
import json
import os
import random
import threading
import time
import urllib.parse

import pytest

from conftest import Nimbus, _find_binary

DB = "nimbus"
POLICY = "autogen"
MEASUREMENT = "dur"
BATCH = 500                    # lines per /write
WRITERS = 4
STEP_NS = 1_000_000            # 1 ms between the points of a series
DAY_NS = 86_400 * 1_000_000_000
# A tag on every line: ~300 bytes of WAL per line (so its 16 MiB segments fill, roll over and are
# dropped by flushes within a round) for ~70 bytes of write buffer (tags cost once per series).
PAD_TAG = "p" * 200
CALL_TIMEOUT = 15.0            # one HTTP call
ROUND_TIMEOUT = 15.0           # waits within a round (acks, a flush to catch)
COMPACTION_FILES = 4           # compaction_file_threshold in src/tsdb/store.cpp
COMPACTION_INTERVAL = 10       # --tsdb-compaction-interval-s of round 5's server
COMPACTION_DUE = float(COMPACTION_INTERVAL)  # the store thread compacts this long after start
COMPACTION_DEADLINE = 40.0     # after the compaction server's start, for the watcher
FLUSH_KILL_ATTEMPTS = 4        # crash cycles a "kill mid-flush" round may take to land one
SEED = (int(os.environ.get("NIMBUS_DURABILITY_SEED", "0"))
        or random.SystemRandom().randrange(1, 10**9))


def server_args(fsync):
    return ["--tsdb-wal-fsync", fsync, "--tsdb-cache-snapshot-memory-mb", "1"]


def midnight_ns(days_ago=0):
    """00:00 UTC of today (or of a day before), in ns."""
    return (time.time_ns() // DAY_NS - days_ago) * DAY_NS


def day_name(ns):
    return time.strftime("%Y-%m-%d", time.gmtime(ns // 1_000_000_000))


# ====================================================================== points

def fields_of(round_id, worker, seq):
    """The field values of point `seq` of a series: all derived from where it is."""
    v = (seq % 1_000_003) / 8.0 + worker        # exact in binary
    i = (seq * 7919 + worker) % 1_000_000_007
    s = "%s:%d:%d" % (round_id, worker, seq)
    return v, i, s


def batch_body(round_id, worker, base_ns, batch_no):
    lines = []
    for seq in range(batch_no * BATCH, (batch_no + 1) * BATCH):
        v, i, s = fields_of(round_id, worker, seq)
        lines.append('%s,p=%s,r=%s,w=%d v=%r,i=%di,s="%s" %d'
                     % (MEASUREMENT, PAD_TAG, round_id, worker, v, i, s,
                        base_ns + seq * STEP_NS))
    return "\n".join(lines).encode()


# ====================================================================== a small HTTP client

class CallFailed(Exception):
    """No HTTP answer (connection refused or reset, timeout): the outcome is unknown."""


class Influx:
    """/write and /query on one keep-alive connection (one per thread)."""

    def __init__(self, hostport):
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method, path, body=None):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=CALL_TIMEOUT)
            self.conn.request(method, path, body=body)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise CallFailed("%s %s: %r" % (method, path.split("?")[0], e)) from e
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return resp.status, raw

    def write(self, body):
        return self.call("POST", "/write?db=%s&precision=ns" % DB, body)

    def query(self, q):
        """The statement's result (its "series" list, possibly empty); asserts a 200."""
        status, raw = self.call("GET", "/query?" + urllib.parse.urlencode(
            {"db": DB, "q": q, "epoch": "ns"}))
        assert status == 200, "query %r -> %d %r" % (q, status, raw[:300])
        result = json.loads(raw)["results"][0]
        assert "error" not in result, "query %r -> %r" % (q, result)
        return result.get("series", [])


# ====================================================================== the load

class Burst:
    """Writers, one series each (tags r=<round>, w=<n>), sending batches until stopped or the
    server is gone. Per writer: `acked` batches answered 204 (a prefix: one connection, one
    batch at a time) and `unanswered`, whether the batch after them got no answer."""

    def __init__(self, hostport, round_id, base_ns, writers=WRITERS, max_batches=None):
        self.hostport, self.round_id, self.base_ns = hostport, round_id, base_ns
        self.writers = writers
        self.max_batches = max_batches
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.acked = [0] * writers
        self.unanswered = [False] * writers
        self.errors = []      # answers other than 204
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True,
                                         name="writer-%s-%d" % (round_id, w))
                        for w in range(writers)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, worker):
        client = Influx(self.hostport)
        batch_no = 0
        try:
            while not self.stop.is_set() and (self.max_batches is None
                                               or batch_no < self.max_batches):
                body = batch_body(self.round_id, worker, self.base_ns, batch_no)
                try:
                    status, raw = client.write(body)
                except CallFailed:
                    with self.cond:
                        self.unanswered[worker] = True
                        self.cond.notify_all()
                    return  # the server is gone
                with self.cond:
                    if status != 204:
                        self.errors.append((worker, batch_no, status, raw[:300]))
                        self.unanswered[worker] = True
                        self.cond.notify_all()
                        return
                    batch_no += 1
                    self.acked[worker] = batch_no
                    self.cond.notify_all()
        finally:
            client.close()

    @property
    def total_acked(self):
        with self.cond:
            return sum(self.acked)

    def wait_acked(self, batches, timeout=ROUND_TIMEOUT):
        """Until `batches` batches in all were acknowledged (or every writer stopped)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(self.acked) < batches and not self.errors:
                if not any(t.is_alive() for t in self.threads):
                    break
                left = deadline - time.monotonic()
                assert left > 0, "%d of %d batches acknowledged within %.0fs" % (
                    sum(self.acked), batches, timeout)
                self.cond.wait(min(left, 0.5))
            assert not self.errors, "writes refused: %r" % self.errors[:3]
            return sum(self.acked)

    def join(self, stop=True):
        """Stops the writers (or, with stop=False, lets them send their max_batches) and waits
        for them."""
        if stop:
            self.stop.set()
        for t in self.threads:
            t.join(timeout=CALL_TIMEOUT + 5)
            assert not t.is_alive(), "%s still running" % t.name
        assert not self.errors, "writes refused: %r" % self.errors[:3]

    def expectation(self):
        """What the checks need, once the writers are done."""
        return Expected(self.round_id, self.base_ns, list(self.acked), list(self.unanswered))


class Expected:
    """A round's writes: per writer, `acked` batches answered 204 and whether one more was sent
    without an answer."""

    def __init__(self, round_id, base_ns, acked, unanswered):
        self.round_id, self.base_ns = round_id, base_ns
        self.acked, self.unanswered = acked, unanswered

    @property
    def points(self):
        return sum(self.acked) * BATCH


# ====================================================================== checks

def check_durable(server, expectations, label):
    """Every acknowledged point of `expectations` is back with its values; nothing is back that
    was not sent; no unknown series. Returns {round: unanswered points found back}."""
    client = Influx(server.endpoints["http"])
    where = "(data dir %s)" % server.data_dir
    try:
        known = {}
        for e in expectations:
            for w in range(len(e.acked)):
                known[(e.round_id, str(w))] = e
        if any(e.points for e in expectations):
            # Queries find a field only by its type, which the store keeps in SQLite.
            keys = client.query("SHOW FIELD KEYS FROM %s" % MEASUREMENT)
            types = {row[0]: row[1] for row in (keys[0]["values"] if keys else [])}
            if types != {"v": "float", "i": "integer", "s": "string"}:
                series = client.query("SHOW SERIES FROM %s" % MEASUREMENT)
                keys = [row[0].replace(PAD_TAG, "p...") for row in
                        (series[0]["values"] if series else [])]
                raise AssertionError(
                    "%s: LOST the field types of %s in the restart %s: SHOW FIELD KEYS -> %r "
                    "while its series are there (%r): SELECT finds none of the %d acknowledged "
                    "points" % (label, MEASUREMENT, where, types, keys[:4],
                                sum(e.points for e in expectations)))
        inventory = client.query("SELECT count(v) FROM %s GROUP BY r, w" % MEASUREMENT)
        found_series = {(s["tags"]["r"], s["tags"]["w"]): s["values"][0][1] for s in inventory}
        unknown = set(found_series) - set(known)
        assert not unknown, "%s: series that no writer wrote %s: %r" % (label, where,
                                                                         sorted(unknown))
        in_flight_back = {}
        for e in expectations:
            for w, acked in enumerate(e.acked):
                series = client.query("SELECT v, i, s FROM %s WHERE r = '%s' AND w = '%d'"
                                      % (MEASUREMENT, e.round_id, w))
                rows = series[0]["values"] if series else []
                columns = series[0]["columns"] if series else ["time", "v", "i", "s"]
                at = {name: columns.index(name) for name in ("time", "v", "i", "s")}
                sent = (acked + (1 if e.unanswered[w] else 0)) * BATCH
                seen = set()
                phantom, wrong, duplicate = [], [], []
                for row in rows:
                    t = row[at["time"]]
                    seq, off = divmod(t - e.base_ns, STEP_NS)
                    if off != 0 or not 0 <= seq < sent:
                        phantom.append(t)
                        continue
                    if seq in seen:
                        duplicate.append(t)
                    seen.add(seq)
                    v, i, s = fields_of(e.round_id, w, seq)
                    got = (row[at["v"]], row[at["i"]], row[at["s"]])
                    if got != (v, i, s):
                        wrong.append((t, got, (v, i, s)))
                lost = [seq for seq in range(acked * BATCH) if seq not in seen]
                assert not lost, (
                    "%s: LOST %d of the %d acknowledged points of round %s writer %d %s; first "
                    "lost seq %d (batch %d, time %d), last %d (batch %d); %d points back"
                    % (label, len(lost), acked * BATCH, e.round_id, w, where, lost[0],
                       lost[0] // BATCH, e.base_ns + lost[0] * STEP_NS, lost[-1],
                       lost[-1] // BATCH, len(rows)))
                assert not phantom, "%s: points never sent, round %s writer %d %s: %r" % (
                    label, e.round_id, w, where, phantom[:5])
                assert not duplicate, "%s: a time twice, round %s writer %d: %r" % (
                    label, e.round_id, w, duplicate[:5])
                assert not wrong, "%s: wrong values, round %s writer %d %s: %r" % (
                    label, e.round_id, w, where, wrong[:3])
                assert found_series.get((e.round_id, str(w)), 0) == len(rows), (
                    "%s: count(v) %r but %d rows, round %s writer %d"
                    % (label, found_series.get((e.round_id, str(w))), len(rows), e.round_id, w))
                back = len(seen) - acked * BATCH
                in_flight_back[e.round_id] = in_flight_back.get(e.round_id, 0) + back
        return in_flight_back
    finally:
        client.close()


def check_takes_writes(server, round_id, base_ns):
    """The restarted server answers a new write with 204 and the query shows it."""
    client = Influx(server.endpoints["http"])
    try:
        status, raw = client.write(batch_body(round_id, 0, base_ns, 0))
        assert status == 204, "a write after the restart -> %d %r" % (status, raw[:300])
        series = client.query("SELECT count(v) FROM %s WHERE r = '%s'" % (MEASUREMENT, round_id))
        assert series and series[0]["values"][0][1] == BATCH, series
    finally:
        client.close()
    return Expected(round_id, base_ns, [1], [False])


def tmp_files(directory, suffix=".tsp.tmp"):
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(suffix))
    except FileNotFoundError:
        return []


def partition_dir(server, base_ns):
    return server.data_dir / "tsdb" / "data" / DB / POLICY / day_name(base_ns)


def poll(predicate, timeout, interval=0.0005):
    """Polls `predicate` every `interval` until truthy; its value, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def report(text):
    print("\n[tsdb durability seed=%d] %s" % (SEED, text))


# ====================================================================== rounds 1-4

def crash_round(server, rng, round_id, base_ns, min_batches, max_batches, kill_at=None):
    """One burst, killed once `target` batches were acknowledged (and, with `kill_at`, once it
    sees what it waits for: the kill point). Returns (expectation, what the kill hit)."""
    target = rng.randint(min_batches, max_batches)
    burst = Burst(server.endpoints["http"], round_id, base_ns).start()
    hit = "after %d acknowledged batches" % target
    try:
        burst.wait_acked(target)
        if kill_at is not None:
            seen = poll(kill_at, ROUND_TIMEOUT)
            assert seen, "%s: no flush seen within %.0fs of writing" % (round_id, ROUND_TIMEOUT)
            hit = "at %s after %d acknowledged batches" % (seen, burst.total_acked)
        acked_before_kill = burst.total_acked
    finally:
        assert server.kill9() == -9
        burst.join()
    assert acked_before_kill >= target
    return burst.expectation(), hit


def restart_and_check(server, expectations, label):
    started = time.monotonic()
    server.start()
    restart_s = time.monotonic() - started
    back = check_durable(server, expectations, label)
    after = check_takes_writes(server, "%s_after" % label, midnight_ns() + DAY_NS // 2)
    expectations.append(after)
    return restart_s, back


@pytest.mark.parametrize("fsync", ["interval", "always"])
def test_kill9_mid_burst_then_mid_flush(nimbus, fsync):
    """Rounds 1-2 (interval) and 3-4 (always): a kill at a random moment of a burst, then on
    the same directory kills as a flush writes (partition files with interval, the flushed-offset
    marker with always) until one lands inside it."""
    rng = random.Random("%d-%s" % (SEED, fsync))
    server = nimbus.start(server_args(fsync))
    base = midnight_ns()
    expectations = []
    tag = fsync[:3]

    # ---- a random moment of a burst
    first, hit = crash_round(server, rng, "%s_burst" % tag, base, 40, 240)
    expectations.append(first)
    restart_s, back = restart_and_check(server, expectations, "%s_burst" % tag)
    report("fsync=%s burst: killed %s; %d points acknowledged, %d of the unanswered batches' "
           "points back; restart %.2fs" % (fsync, hit, first.points, back[first.round_id],
                                           restart_s))

    # ---- mid-flush: a partition file (interval) or the flushed-offset marker (always)
    data = server.data_dir / "tsdb" / "data"
    day = partition_dir(server, base)
    if fsync == "interval":
        what = "partition file"

        def in_flush():
            files = tmp_files(day)
            return files and "%s/%s" % (day.name, files[0])
    else:
        what = "flushed-offset marker"

        def in_flush():
            return (data / ".flushed_offset.tmp").exists() and ".flushed_offset.tmp"
    landed = None
    for attempt in range(1, FLUSH_KILL_ATTEMPTS + 1):
        round_id = "%s_flush%d" % (tag, attempt)
        e, hit = crash_round(server, rng, round_id, base, 20, 60, kill_at=in_flush)
        expectations.append(e)
        left = tmp_files(day) if fsync == "interval" else tmp_files(data, ".flushed_offset.tmp")
        restart_s, back = restart_and_check(server, expectations, round_id)
        report("fsync=%s flush attempt %d: killed %s; left behind %r; %d points acknowledged, "
               "%d unanswered back; restart %.2fs; checked %d rounds' points"
               % (fsync, attempt, hit, left, e.points, back[round_id], restart_s,
                  len(expectations)))
        # Start-up deletes the partition files a kill left (a flush may be writing a new one
        # meanwhile); a marker's .tmp stays until the next flush overwrites it.
        remaining = set(left) & set(tmp_files(day))
        assert not remaining, "the restart left %r in %s" % (sorted(remaining), day)
        if left:
            landed = attempt
            break
    assert landed, ("no kill landed inside a flush (its %s still there after the kill) in %d "
                    "attempts" % (what, FLUSH_KILL_ATTEMPTS))


def test_kill9_after_new_fields_were_flushed(nimbus):
    """Round 6: a measurement's first points, in one write big enough to be flushed at once (so
    the flushed-offset marker passes every record that names its fields), killed as soon as the
    marker is written. --commit-interval-ms 1000 (in bounds: the longest a write waits to share
    a SQLite commit) holds the field types' rows back for up to 1 s; by default that is ~2 ms
    plus whatever else the SQLite writer is doing. The points must be back, and selectable."""
    rng = random.Random("%d-fields" % SEED)
    server = nimbus.start(server_args("interval") + ["--commit-interval-ms", "1000"])
    marker = server.data_dir / "tsdb" / "data" / ".flushed_offset"
    batches = rng.randint(40, 60)   # 20k-30k lines: 1.4-2.1 MB of write buffer, past 1 MiB
    body = b"\n".join(batch_body("fields", 0, midnight_ns(), b) for b in range(batches))
    client = Influx(server.endpoints["http"])
    started = time.monotonic()
    try:
        status, raw = client.write(body)
        assert status == 204, "%d %r" % (status, raw[:300])
        assert poll(marker.exists, ROUND_TIMEOUT, 0.001), "no flush within %.0fs" % ROUND_TIMEOUT
        flushed_after = time.monotonic() - started
    finally:
        client.close()
        assert server.kill9() == -9
    expected = Expected("fields", midnight_ns(), [batches], [False])
    server.start()
    report("new fields: %d points in one write (204), flushed %.0f ms after it was sent, then "
           "killed" % (expected.points, flushed_after * 1000))
    check_durable(server, [expected], "fields")
    check_takes_writes(server, "fields_after", midnight_ns() + DAY_NS // 2)


# ====================================================================== round 5: compaction

class CompactionWatch(threading.Thread):
    """Polls a past day's directory for compaction at work: `<g>.tsp.tmp` beside `<g>.tsp` (a
    flush writes a new generation, compaction the newest existing one again). Once seen, it
    kills the server itself unless a test armed it (then the test kills)."""

    def __init__(self, server, day_dir, deadline):
        super().__init__(daemon=True, name="compaction-watch")
        self.server, self.day_dir, self.deadline = server, day_dir, deadline
        self.lock = threading.Lock()
        self.armed = False
        self.killed_alone = False
        self.seen = threading.Event()
        self.stopping = threading.Event()
        self.signal = None          # the .tmp name seen
        self.seen_at = None         # monotonic
        self.listing = None         # the directory when it was seen

    def compaction_tmp(self):
        try:
            names = set(os.listdir(self.day_dir))
        except FileNotFoundError:
            return None
        for n in names:
            if n.endswith(".tsp.tmp") and n[:-len(".tmp")] in names:
                return n, sorted(names)
        return None

    def run(self):
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            found = self.compaction_tmp()
            if found:
                with self.lock:
                    self.signal, self.listing = found
                    self.seen_at = time.monotonic()
                    if not self.armed and self.server.running:
                        self.server.kill9()
                        self.killed_alone = True
                    self.seen.set()
                return
            self.stopping.wait(0.002)
        self.seen.set()

    def arm(self):
        """True when the test is to kill: compaction not seen yet."""
        with self.lock:
            if self.seen.is_set():
                return False
            self.armed = True
            return True


@pytest.fixture(scope="module", autouse=True)
def compaction_rig(tmp_path_factory):
    """Round 5's server, started with the module: yesterday's points go in now, flushed in many
    files; then it restarts with a 10 s compaction interval, so rounds 1-4 run meanwhile."""
    binary = _find_binary()
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("set NIMBUS_BIN to the nimbus binary", pytrace=False)
    server = Nimbus(binary, tmp_path_factory.mktemp("compaction"))
    # No compaction while the files pile up (a slow machine would see the day go cold and
    # compact it early); then a restart with the short interval.
    server.start(server_args("interval") + ["--tsdb-compaction-interval-s", "3600"])
    setup_started = time.monotonic()
    rig = type("Rig", (), {})()
    rig.server = server
    rig.past_base = midnight_ns(days_ago=1)
    rig.day_dir = partition_dir(server, rig.past_base)
    past = Burst(server.endpoints["http"], "past", rig.past_base, writers=8,
                 max_batches=40).start()
    past.join(stop=False)
    rig.past = past.expectation()
    assert rig.past.acked == [40] * 8 and not any(rig.past.unanswered), rig.past.acked
    files = [n for n in os.listdir(rig.day_dir) if n.endswith(".tsp")]
    assert len(files) >= COMPACTION_FILES, "only %d partition files for %s" % (len(files),
                                                                                rig.day_dir)
    rig.files_before = len(files)
    server.stop()
    server.start(server_args("interval") +
                 ["--tsdb-compaction-interval-s", str(COMPACTION_INTERVAL)])
    started = time.monotonic()  # the store thread started a little before
    rig.started = started
    rig.setup_s = started - setup_started
    rig.watch = CompactionWatch(server, rig.day_dir, started + COMPACTION_DEADLINE)
    rig.watch.start()
    yield rig
    rig.watch.stopping.set()
    rig.watch.join(timeout=5)
    err = server.cleanup()
    if err:
        pytest.fail("%s\n%s" % (err, server.log_tail()), pytrace=False)


def test_kill9_during_compaction(compaction_rig):
    """Round 5: killed while compaction writes a past day's merged file, writers sending."""
    rig = compaction_rig
    server = rig.server
    rng = random.Random("%d-compaction" % SEED)
    hostport = server.endpoints["http"]
    today = midnight_ns()
    expectations = [rig.past]
    burst = None
    pre = None
    armed = rig.watch.arm()
    try:
        if armed:
            # Today's points before the compaction (flushed ones and a WAL-only tail).
            pre = Burst(hostport, "pre", today, max_batches=rng.randint(10, 30)).start()
            pre.join(stop=False)
            expectations.append(pre.expectation())
            assert rig.watch.seen.wait(max(0.0, rig.started + COMPACTION_DEADLINE
                                           - time.monotonic()))
            assert rig.watch.signal, (
                "no compaction seen in %s within %.0fs of the server's start (expected %.0fs "
                "after it)\n%s" % (rig.day_dir, COMPACTION_DEADLINE, COMPACTION_DUE,
                                   server.log_tail()))
            # Compaction is writing the merged file: writers on, killed a moment later.
            burst = Burst(hostport, "during", today + DAY_NS // 4).start()
            burst.wait_acked(rng.randint(4, 16))
        else:
            assert rig.watch.signal, "no compaction seen before round 5 began"
    finally:
        if server.running:
            assert server.kill9() == -9
        if burst is not None:
            burst.join()
    killed_at = time.monotonic()
    left = tmp_files(rig.day_dir)
    assert rig.watch.signal in left, (
        "the kill came after compaction finished (no %s left in %s: %r): not a kill during "
        "compaction" % (rig.watch.signal, rig.day_dir, sorted(os.listdir(rig.day_dir))))
    if burst is not None:
        expectations.append(burst.expectation())

    started = time.monotonic()
    server.start()
    restart_s = time.monotonic() - started
    back = check_durable(server, expectations, "compaction")
    after = sorted(os.listdir(rig.day_dir))
    assert rig.watch.signal not in after, "the restart left %s: %r" % (rig.watch.signal, after)
    check_takes_writes(server, "compaction_after", today + DAY_NS // 2)
    report("compaction: setup %.1fs (%d past points in %d files); compaction seen %.1fs after "
           "start (%s beside %d files); killed %.0f ms after that, %s; left behind %r; pre-kill "
           "today points %d, during %d (+%d unanswered back); restart %.2fs; day after restart %r"
           % (rig.setup_s, rig.past.points, rig.files_before, rig.watch.seen_at - rig.started,
              rig.watch.signal, len(rig.watch.listing) - 1,
              (killed_at - rig.watch.seen_at) * 1000,
              "by the watcher (no writers: round 5 began late)" if rig.watch.killed_alone
              else "with writers sending", left,
              pre.expectation().points if pre else 0,
              burst.expectation().points if burst else 0, back.get("during", 0), restart_s,
              [n[-12:] for n in after]))
