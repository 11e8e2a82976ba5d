"""Oracle test of the time-series store's InfluxQL: every query in influx_oracle/queries.txt is
sent to Nimbus and to InfluxDB 1.6.7 (Debian's `influxd`, the version the store copies), both
loaded with the same influx_oracle/data.lp, and the answers are compared result by result:
HTTP status, statement ids, series names, tags, columns and values (floats within 1e-12
relative), error texts word for word.

- influxd is started here (its own temporary config and directories, loopback ports picked
  free, stopped by PID at the end); it never touches another influxd.
- influx_oracle/golden/influxd-1.6.7.json holds influxd's answers. With influxd present the
  test also checks that the live answer still equals the golden one; with NIMBUS_ORACLE_REGEN=1
  it rewrites the goldens from influxd instead. Without influxd, Nimbus is compared with the
  goldens (one line says why the live oracle is not used).
- A known, documented departure is listed in queries.txt with its reason and Nimbus's expected
  answer, which is then what Nimbus is checked against (influxd's answer stays in the goldens).

Environment: NIMBUS_BIN (the binary, see conftest.py), NIMBUS_ORACLE_INFLUXD (default
/usr/bin/influxd; "none" forces the goldens), NIMBUS_ORACLE_REGEN=1 (rewrite the goldens).

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/clients/test_influx_oracle.py
"""

import http.client
import json
import math
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import Nimbus, _find_binary

HERE = pathlib.Path(__file__).resolve().parent / "influx_oracle"
DATA = HERE / "data.lp"
QUERIES = HERE / "queries.txt"
GOLDEN = HERE / "golden" / "influxd-1.6.7.json"
DB = "oracle"
INFLUXD = os.environ.get("NIMBUS_ORACLE_INFLUXD", "/usr/bin/influxd")
REGEN = os.environ.get("NIMBUS_ORACLE_REGEN") == "1"
BATCH_LINES = 5000
REL_TOLERANCE = 1e-12
HTTP_TIMEOUT = 30


# ====================================================================== the queries file

class Query:
    """One entry of queries.txt."""

    def __init__(self, index, label, text, line):
        self.index = index
        self.label = label
        self.text = text
        self.line = line
        self.epoch = "ns"        # "none": RFC3339 times
        self.db = DB             # "none": no db parameter
        self.departure = None    # the reason Nimbus answers differently
        self.nimbus = None       # Nimbus's expected answer for a departure

    @property
    def key(self):
        return "%03d-%s" % (self.index, self.label)

    def params(self):
        params = {"q": self.text}
        if self.db != "none":
            params["db"] = self.db
        if self.epoch != "none":
            params["epoch"] = self.epoch
        return params


def load_queries(path=QUERIES):
    """queries.txt: `label: InfluxQL` per line; indented `key: value` lines below one set its
    options (epoch, db, departure, nimbus); `#` starts a comment line."""
    queries, labels = [], set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        where = "%s:%d" % (path.name, number)
        if raw[0] in " \t":
            if not queries:
                raise ValueError("%s: an option before any query" % where)
            key, sep, value = raw.strip().partition(": ")
            if not sep:
                raise ValueError("%s: expected `key: value`" % where)
            q = queries[-1]
            if key == "epoch":
                q.epoch = value
            elif key == "db":
                q.db = value
            elif key == "departure":
                q.departure = value
            elif key == "nimbus":
                q.nimbus = json.loads(value)
            else:
                raise ValueError("%s: unknown option %r" % (where, key))
            continue
        label, sep, text = raw.partition(": ")
        if not sep or " " in label:
            raise ValueError("%s: expected `label: query`" % where)
        if label in labels:
            raise ValueError("%s: label %r used twice" % (where, label))
        labels.add(label)
        queries.append(Query(len(queries) + 1, label, text.strip(), where))
    for q in queries:
        if (q.departure is None) != (q.nimbus is None):
            raise ValueError("%s: a departure needs both `departure:` and `nimbus:`" % q.line)
    return queries


ALL_QUERIES = load_queries()


# ====================================================================== HTTP

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoint:
    """An InfluxDB 1.x HTTP API on 127.0.0.1:port."""

    def __init__(self, name, port):
        self.name = name
        self.port = port

    def request(self, method, path, params=None, body=None, headers=None):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def answer(self, query):
        """The query's answer as {"status": ..., "body": parsed JSON (or text)}."""
        status, raw = self.request("GET", "/query", params=query.params())
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        return {"status": status, "body": body}

    def setup(self, data_sections):
        status, raw = self.request("POST", "/query", params={"q": "CREATE DATABASE " + DB})
        assert status == 200, "%s: CREATE DATABASE: %d %r" % (self.name, status, raw)
        for precision, lines in data_sections:
            for start in range(0, len(lines), BATCH_LINES):
                body = "\n".join(lines[start:start + BATCH_LINES]).encode()
                status, raw = self.request("POST", "/write", body=body,
                                           params={"db": DB, "precision": precision},
                                           headers={"Content-Type": "text/plain"})
                assert status == 204, "%s: write (precision %s, lines %d..): %d %r" % (
                    self.name, precision, start, status, raw[:2000])


def data_sections(path=DATA):
    """data.lp split at its `# precision=<unit>` lines: [(precision, lines)]."""
    sections = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("# precision="):
            sections.append((raw.split("=", 1)[1].strip(), []))
        elif raw.strip() and not raw.startswith("#"):
            if not sections:
                raise ValueError("data.lp: a line before the first `# precision=`")
            sections[-1][1].append(raw)
    return sections


# ====================================================================== influxd

INFLUXD_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{dir}/meta"
  logging-enabled = false

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  index-version = "inmem"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
  https-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"""


class Influxd:
    """One influxd of our own: temporary config and directories, loopback ports."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = pathlib.Path(workdir)
        self.log_path = self.workdir / "influxd.log"
        self.proc = None
        self.endpoint = None

    def start(self, timeout=30):
        http_port, rpc_port = free_port(), free_port()
        conf = self.workdir / "influxd.conf"
        conf.write_text(INFLUXD_CONF.format(dir=self.workdir, http_port=http_port,
                                            rpc_port=rpc_port))
        env = dict(os.environ, HOME=str(self.workdir))
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([self.binary, "run", "-config", str(conf)],
                                         stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=str(self.workdir),
                                         env=env, start_new_session=True)
        self.endpoint = Endpoint("influxd", http_port)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("influxd exited with %s\n%s" % (self.proc.returncode,
                                                                   self.log_tail()))
            try:
                status, _ = self.endpoint.request("GET", "/ping")
                if status == 204:
                    return self
            except OSError:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError("influxd did not answer /ping within %ds\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.1)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, max_bytes=5000):
        try:
            return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")
        except OSError:
            return "(no log)"


# ====================================================================== comparison

def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def differences(expected, actual, path="$", out=None, limit=12):
    """Where `actual` differs from `expected`: a list of "path: expected X, got Y" lines.
    Floats agree within REL_TOLERANCE (relative); integers (times) exactly."""
    if out is None:
        out = []
    if len(out) >= limit:
        return out
    if _is_number(expected) and _is_number(actual):
        if isinstance(expected, int) and isinstance(actual, int):
            same = expected == actual
        else:
            e, a = float(expected), float(actual)
            same = e == a or (math.isnan(e) and math.isnan(a)) or \
                abs(e - a) <= REL_TOLERANCE * max(abs(e), abs(a))
        if not same:
            out.append("%s: expected %r, got %r" % (path, expected, actual))
    elif type(expected) is not type(actual):
        out.append("%s: expected %s, got %s" % (path, _short(expected), _short(actual)))
    elif isinstance(expected, dict):
        for k in expected:
            if k not in actual:
                out.append("%s: missing key %r (expected %s)" % (path, k, _short(expected[k])))
        for k in actual:
            if k not in expected:
                out.append("%s: unexpected key %r (= %s)" % (path, k, _short(actual[k])))
        for k in expected:
            if k in actual:
                differences(expected[k], actual[k], "%s.%s" % (path, k), out, limit)
    elif isinstance(expected, list):
        if len(expected) != len(actual):
            out.append("%s: expected %d items, got %d" % (path, len(expected), len(actual)))
        for i, (e, a) in enumerate(zip(expected, actual)):
            differences(e, a, "%s[%d]" % (path, i), out, limit)
            if len(out) >= limit:
                break
    elif expected != actual:
        out.append("%s: expected %s, got %s" % (path, _short(expected), _short(actual)))
    return out[:limit]


def _short(value, width=300):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[:width] + "...(%d chars)" % len(text)


def _trimmed(answer, width=1500):
    return _short(answer, width)


# ====================================================================== fixtures

def _say(request, line):
    """One line on the terminal, past pytest's capture."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + line)
    else:
        print(line)


def _load_goldens():
    try:
        return json.loads(GOLDEN.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _write_goldens(answers):
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    ordered = {}
    for q in ALL_QUERIES:
        ordered[q.key] = dict(query=q.text, params={k: v for k, v in q.params().items()
                                                    if k != "q"}, **answers[q.key])
    # One line per query, so that a changed answer is a one-line diff.
    lines = ["%s: %s" % (json.dumps(key), json.dumps(value, ensure_ascii=False,
                                                      separators=(",", ":")))
             for key, value in ordered.items()]
    GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


@pytest.fixture(scope="module")
def sections():
    return data_sections()


@pytest.fixture(scope="module")
def oracle(tmp_path_factory, request, sections):
    """{"live": {key: answer} or None, "golden": {key: answer}}, influxd's answers."""
    goldens = _load_goldens()
    why_not = None
    if INFLUXD == "none":
        why_not = "NIMBUS_ORACLE_INFLUXD=none"
    elif not (os.path.isfile(INFLUXD) and os.access(INFLUXD, os.X_OK)):
        why_not = "%s not found (apt-get install influxdb)" % INFLUXD
    if why_not:
        if REGEN:
            pytest.fail("NIMBUS_ORACLE_REGEN=1 needs influxd: " + why_not, pytrace=False)
        _say(request, "test_influx_oracle: live oracle skipped (%s); comparing Nimbus with %s"
             % (why_not, GOLDEN.relative_to(HERE.parent)))
        yield {"live": None, "golden": goldens}
        return
    influxd = Influxd(INFLUXD, tmp_path_factory.mktemp("influxd"))
    influxd.start()
    try:
        influxd.endpoint.setup(sections)
        live = {q.key: influxd.endpoint.answer(q) for q in ALL_QUERIES}
        if REGEN:
            _write_goldens(live)
            goldens = _load_goldens()
            _say(request, "test_influx_oracle: rewrote %s from %s (%d answers)"
                 % (GOLDEN.relative_to(HERE.parent), INFLUXD, len(live)))
        yield {"live": live, "golden": goldens}
    finally:
        influxd.stop()


def _buffered_points(endpoint):
    """nimbus_tsdb_buffered_points from /metrics: field values not yet in partitions."""
    status, raw = endpoint.request("GET", "/metrics")
    assert status == 200, raw
    for line in raw.decode().splitlines():
        if line.startswith("nimbus_tsdb_buffered_points "):
            return int(line.split()[1])
    raise AssertionError("no nimbus_tsdb_buffered_points in /metrics")


# Where Nimbus answers from: its write buffer (the data just written), or its day partitions
# and their rollups (flushed a second after the writes, past days compacted meanwhile).
@pytest.fixture(scope="module", params=["memory", "partitions"])
def nimbus(request, tmp_path_factory, sections):
    binary = _find_binary()
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("set NIMBUS_BIN to the nimbus binary", pytrace=False)
    srv = Nimbus(binary, tmp_path_factory.mktemp("nimbus"))
    if request.param == "memory":
        srv.start()
    else:
        srv.start(["--tsdb-cache-snapshot-age-s", "1", "--tsdb-compaction-interval-s", "1"])
    try:
        port = srv.endpoints["http"].rsplit(":", 1)[1]
        endpoint = Endpoint("nimbus", int(port))
        endpoint.setup(sections)
        if request.param == "partitions":
            deadline = time.monotonic() + 30
            while _buffered_points(endpoint) != 0:
                assert time.monotonic() < deadline, "the write buffer was not flushed in 30 s"
                time.sleep(0.1)
        yield endpoint
    finally:
        err = srv.cleanup()
        if err:
            pytest.fail("%s\n%s" % (err, srv.log_tail()), pytrace=False)


# ====================================================================== the test

def _golden_matches(golden, q):
    """Whether a golden entry was recorded for this query text and these parameters."""
    params = {k: v for k, v in q.params().items() if k != "q"}
    return golden.get("query") == q.text and golden.get("params") == params


def _describe(q):
    return "query %s (%s): %s\nparams: %s" % (q.key, q.line, q.text,
                                              {k: v for k, v in q.params().items() if k != "q"})


@pytest.mark.parametrize("q", ALL_QUERIES, ids=[q.key for q in ALL_QUERIES])
def test_query(q, oracle, nimbus):
    golden = oracle["golden"].get(q.key)
    golden_answer = None if golden is None else {"status": golden["status"],
                                                 "body": golden["body"]}
    live = oracle["live"]
    if live is not None:
        reference = live[q.key]
        # The goldens must stay what influxd answers (also for the departures).
        if golden is None:
            pytest.fail("%s\nno golden answer: rerun with NIMBUS_ORACLE_REGEN=1\ninfluxd: %s"
                        % (_describe(q), _trimmed(reference)), pytrace=False)
        if not _golden_matches(golden, q):
            pytest.fail("%s\nthe golden answer is for another query or parameters (%r, %r): "
                        "rerun with NIMBUS_ORACLE_REGEN=1"
                        % (_describe(q), golden.get("query"), golden.get("params")),
                        pytrace=False)
        stale = differences(golden_answer, reference)
        if stale:
            pytest.fail("%s\ninfluxd no longer answers as the golden file says (rerun with "
                        "NIMBUS_ORACLE_REGEN=1 if the data or query changed):\n  %s"
                        % (_describe(q), "\n  ".join(stale)), pytrace=False)
    else:
        if golden is None or not _golden_matches(golden, q):
            pytest.fail("%s\nno golden answer for this query text and no influxd to ask: "
                        "regenerate with influxd and NIMBUS_ORACLE_REGEN=1" % _describe(q),
                        pytrace=False)
        reference = golden_answer

    actual = nimbus.answer(q)
    if q.departure is not None:
        expected, whose = q.nimbus, "the documented departure (%s)" % q.departure
    else:
        expected, whose = reference, "influxd 1.6.7" + (" (live)" if live is not None else
                                                         " (golden)")
    diff = differences(expected, actual)
    if diff:
        pytest.fail("%s\nNimbus differs from %s:\n  %s\nexpected: %s\nnimbus:   %s"
                    % (_describe(q), whose, "\n  ".join(diff), _trimmed(expected),
                       _trimmed(actual)), pytrace=False)
