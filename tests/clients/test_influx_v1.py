"""End-to-end tests of the InfluxDB HTTP APIs of the time-series store (issue 13), driving the
real `nimbus` binary over its HTTP listener (loopback: open, no token needed) with Debian's
`python3-influxdb` (the 1.x client: `InfluxDBClient`) and, for what that client does not send,
raw `http.client` requests replaying the 2.x Python client (reference/timeseries.md §1.3):

- 1.x client: ping; create_database / get_list_database; write_points with every time
  precision (n, u, ms, s, m, h and none) read back exactly; epoch=ms and RFC3339 times;
  `mean() GROUP BY time(1h) fill(null)`; chunked queries; get_list_measurements, SHOW TAG KEYS,
  SHOW TAG VALUES, SHOW FIELD KEYS; errors as InfluxDBClientError with InfluxDB's code and words
  (missing database 404, a bad line 400 "unable to parse", a type conflict 400 "partial write:
  field type conflict", a query that does not parse 400 "error parsing query");
- raw 1.x: partial writes keep the valid lines, an empty body is 204, precision and db checks,
  gzip (also several members), a broken gzip body, form-encoded POST /query (Grafana), pretty,
  CSV, chunk layout, a missing `q`, a missing retention policy;
- raw 2.x: POST /api/v2/write?org=&bucket=&precision=ns with Token and gzip (204), "db/rp"
  buckets, missing and unknown buckets, bad precision, lines that do not parse, 2.x's error
  shape;
- both: /ping (GET, HEAD, verbose) and /health, a 26 MiB body refused (413) before it is sent,
  and a small gzip body inflating past the server's limit (413), the server alive after.

Run: NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_influx_v1.py
"""

import gzip
import http.client
import json
import os
import urllib.parse
import uuid
import zlib

import pytest
import requests

from conftest import TIMEOUT, Nimbus, _find_binary

from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

# 2023-11-14T22:13:20Z, and the hour it falls in.
T0 = 1_700_000_000
HOUR0 = T0 - T0 % 3600
NS = 1_000_000_000
MIB = 1024 * 1024


# ====================================================================== fixtures and helpers

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: every test writes to a database or measurement of its own."""
    binary = _find_binary()
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("set NIMBUS_BIN to the nimbus binary", pytrace=False)
    srv = Nimbus(binary, tmp_path_factory.mktemp("nimbus"))
    srv.start()
    yield srv
    err = srv.cleanup()
    if err:
        pytest.fail("%s\n%s" % (err, srv.log_tail()), pytrace=False)


def name(prefix):
    """A database or measurement name unique to this call (no quoting needed)."""
    return "%s_%s" % (prefix, uuid.uuid4().hex[:10])


def client(server, database=None):
    """The 1.x client against `server`, ignoring any proxy from the environment."""
    session = requests.Session()
    session.trust_env = False
    host, port = server.endpoints["http"].rsplit(":", 1)
    return InfluxDBClient(host=host.strip("[]"), port=int(port), database=database,
                          timeout=TIMEOUT * 4, retries=1, session=session)


@pytest.fixture
def db(server):
    """A fresh database (created through the client) and a client using it."""
    database = name("db")
    c = client(server, database)
    c.create_database(database)
    yield database, c
    c.close()


class Reply:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self):
        return json.loads(self.raw)

    def header(self, key):
        return self.headers.get(key)

    def __repr__(self):
        return "%d %r %r" % (self.status, dict(self.headers), self.raw[:500])


def call(server, method, path, body=None, headers=None, params=None):
    """One request on a fresh connection; the reply's status, headers and body."""
    if params:
        path += "?" + urllib.parse.urlencode(params)
    host, port = server.endpoints["http"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=TIMEOUT * 4)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def query(server, q, **params):
    """GET /query; the reply."""
    params["q"] = q
    return call(server, "GET", "/query", params=params)


def values(server, database, q, epoch="ns"):
    """The rows of the first series of a one-statement query, as lists."""
    reply = query(server, q, db=database, epoch=epoch)
    assert reply.status == 200, reply
    series = reply.json["results"][0].get("series", [])
    return series[0]["values"] if series else []


def error_of(exc_info):
    """The "error" member of an InfluxDBClientError's body."""
    return json.loads(exc_info.value.content)["error"]


def assert_influx_headers(reply):
    assert reply.header("X-Influxdb-Version"), reply
    assert reply.header("X-Influxdb-Build") == "OSS", reply
    assert reply.header("Request-Id"), reply


def gzip_bomb(inflated_mib):
    """A gzip body of `inflated_mib` MiB of zeros, built without holding them (~1 KB/MiB)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * MIB
    parts = [deflate.compress(chunk) for _ in range(inflated_mib)]
    parts.append(deflate.flush())
    return b"".join(parts)


# ====================================================================== the 1.x client

def test_ping_reports_the_version(server):
    assert client(server).ping() == "1.8.10"


def test_create_database_and_list(server):
    c = client(server)
    database = name("db")
    c.create_database(database)
    names = [d["name"] for d in c.get_list_database()]
    assert database in names and "nimbus" in names, names
    c.create_database(database)  # again: no error, as InfluxDB


@pytest.mark.parametrize("precision,per_unit", [
    (None, 1), ("n", 1), ("u", 1000), ("ms", 1000 * 1000), ("s", NS), ("m", 60 * NS),
    ("h", 3600 * NS)])
def test_write_points_with_each_precision(db, server, precision, per_unit):
    database, c = db
    stamp = (T0 * NS + 123_456_789) // per_unit  # whatever the unit keeps of it
    assert c.write_points([{"measurement": "p", "tags": {"host": "a"},
                            "fields": {"v": 1.5, "n": 7}, "time": stamp}],
                          time_precision=precision)
    rows = values(server, database, 'SELECT "v", "n" FROM "p"', epoch="ns")
    assert rows == [[stamp * per_unit, 1.5, 7]]


def test_times_as_epoch_ms_and_rfc3339(db, server):
    database, c = db
    c.write_points([{"measurement": "t", "fields": {"v": 1.0}, "time": T0 * 1000 + 500},
                    {"measurement": "t", "fields": {"v": 2.0}, "time": T0 * 1000 + 1000}],
                   time_precision="ms")
    in_ms = list(c.query('SELECT "v" FROM "t"', epoch="ms").get_points())
    assert in_ms == [{"time": T0 * 1000 + 500, "v": 1}, {"time": T0 * 1000 + 1000, "v": 2}]
    rfc3339 = list(c.query('SELECT "v" FROM "t"').get_points())
    assert [p["time"] for p in rfc3339] == ["2023-11-14T22:13:20.5Z", "2023-11-14T22:13:21Z"]


def test_mean_per_hour_fill_null(db, server):
    database, c = db
    c.write_points([
        {"measurement": "sensors", "tags": {"device_id": "d1"}, "fields": {"temperature": 1.0},
         "time": HOUR0 + 10},
        {"measurement": "sensors", "tags": {"device_id": "d1"}, "fields": {"temperature": 3.0},
         "time": HOUR0 + 20},
        {"measurement": "sensors", "tags": {"device_id": "d1"}, "fields": {"temperature": 10.0},
         "time": HOUR0 + 2 * 3600 + 5},
    ], time_precision="s")
    q = ('SELECT mean("temperature") FROM "sensors" WHERE "device_id" = \'d1\' AND '
         'time >= %dms AND time < %dms GROUP BY time(1h) fill(null)'
         % (HOUR0 * 1000, (HOUR0 + 3 * 3600) * 1000))
    points = list(c.query(q, epoch="s").get_points())
    assert points == [{"time": HOUR0, "mean": 2.0}, {"time": HOUR0 + 3600, "mean": None},
                      {"time": HOUR0 + 7200, "mean": 10.0}]


def test_chunked_query(db, server):
    database, c = db
    c.write_points([{"measurement": "c", "fields": {"v": float(i)}, "time": T0 + i}
                    for i in range(5)], time_precision="s")
    chunks = list(c.query('SELECT "v" FROM "c"', epoch="s", chunked=True, chunk_size=2))
    assert len(chunks) == 3
    points = [p for chunk in chunks for p in chunk.get_points()]
    assert [(p["time"], p["v"]) for p in points] == [(T0 + i, i) for i in range(5)]


def test_measurements_tags_and_fields(db, server):
    database, c = db
    c.write_points([
        {"measurement": "cpu", "tags": {"host": "a", "region": "eu"},
         "fields": {"usage": 1.5, "count": 3, "ok": True, "note": "x"}, "time": T0},
        {"measurement": "cpu", "tags": {"host": "b", "region": "eu"},
         "fields": {"usage": 2.5, "count": 4, "ok": False, "note": "y"}, "time": T0},
        {"measurement": "mem", "tags": {"host": "a"}, "fields": {"free": 10}, "time": T0},
    ], time_precision="s")
    assert c.get_list_measurements() == [{"name": "cpu"}, {"name": "mem"}]
    tag_keys = [p["tagKey"] for p in c.query('SHOW TAG KEYS FROM "cpu"').get_points()]
    assert tag_keys == ["host", "region"]
    tag_values = list(c.query('SHOW TAG VALUES FROM "cpu" WITH KEY = "host"').get_points())
    assert tag_values == [{"key": "host", "value": "a"}, {"key": "host", "value": "b"}]
    fields = {p["fieldKey"]: p["fieldType"]
              for p in c.query('SHOW FIELD KEYS FROM "cpu"').get_points()}
    # The client sends Python ints as integers (`3i`) and bools as booleans.
    assert fields == {"count": "integer", "note": "string", "ok": "boolean", "usage": "float"}


def test_write_to_a_missing_database_is_404(server):
    c = client(server)
    with pytest.raises(InfluxDBClientError) as caught:
        c.write_points([{"measurement": "m", "fields": {"v": 1.0}}], database="nope_db")
    assert caught.value.code == 404
    assert error_of(caught) == 'database not found: "nope_db"'


def test_bad_lines_are_400_and_valid_ones_kept(db, server):
    database, c = db
    with pytest.raises(InfluxDBClientError) as caught:
        c.write("bad", params={"db": database}, protocol="line")
    assert caught.value.code == 400
    assert error_of(caught) == "unable to parse 'bad': missing fields"

    with pytest.raises(InfluxDBClientError) as caught:
        c.write(["m v=1 %d" % (T0 * NS), "also bad", "m v=2 %d" % ((T0 + 1) * NS)],
                params={"db": database}, protocol="line")
    assert caught.value.code == 400
    # 1.6.7: the valid lines are written, the answer names the others with dropped=0.
    assert error_of(caught) == (
        "partial write: unable to parse 'also bad': invalid field format dropped=0")
    assert values(server, database, 'SELECT "v" FROM "m"') == [[T0 * NS, 1], [(T0 + 1) * NS, 2]]


def test_type_conflict_is_a_partial_write(db, server):
    database, c = db
    c.write_points([{"measurement": "m", "fields": {"v": 1.0}, "time": T0}], time_precision="s")
    with pytest.raises(InfluxDBClientError) as caught:
        c.write_points([{"measurement": "m", "fields": {"v": "text"}, "time": T0 + 1},
                        {"measurement": "m", "fields": {"w": 2.0}, "time": T0 + 1}],
                       time_precision="s")
    assert caught.value.code == 400
    message = error_of(caught)
    assert message.startswith('partial write: field type conflict: input field "v" on '
                              'measurement "m" is type string, already exists as type float'), \
        message
    assert message.endswith(" dropped=1"), message
    assert values(server, database, 'SELECT "w" FROM "m"', epoch="s") == [[T0 + 1, 2]]


def test_query_parse_error_is_400(db, server):
    database, c = db
    with pytest.raises(InfluxDBClientError) as caught:
        c.query("SELEC x FROM m")
    assert caught.value.code == 400
    assert error_of(caught).startswith("error parsing query: "), caught.value.content


def test_statement_error_is_200_with_the_error(server):
    reply = query(server, 'SELECT "v" FROM "m"', db="no_such_db")
    assert reply.status == 200, reply
    result = reply.json["results"][0]
    assert result["statement_id"] == 0 and "database not found" in result["error"], reply


# ====================================================================== raw 1.x

def test_empty_write_is_204(server):
    reply = call(server, "POST", "/write", body=b"", params={"db": "nimbus"})
    assert reply.status == 204, reply
    assert reply.raw == b""
    assert_influx_headers(reply)
    reply = call(server, "POST", "/write", body=b"# only a comment\n\n", params={"db": "nimbus"})
    assert reply.status == 204, reply


def test_write_parameter_errors(server):
    reply = call(server, "POST", "/write", body=b"m v=1")
    assert (reply.status, reply.json) == (400, {"error": "database is required"}), reply
    assert reply.header("X-Influxdb-Error") == "database is required"
    reply = call(server, "POST", "/write", body=b"m v=1", params={"db": "nimbus", "precision": "x"})
    assert reply.status == 400, reply
    assert reply.json["error"].startswith('invalid precision "x"'), reply
    reply = call(server, "POST", "/write", body=b"m v=1", params={"db": "nimbus", "rp": "nope"})
    assert (reply.status, reply.json) == (404, {"error": "retention policy not found: nope"}), reply


def test_gzip_writes(server):
    m = name("gz")
    body = gzip.compress(("%s v=1 %d\n" % (m, T0 * NS)).encode())
    body += gzip.compress(("%s v=2 %d\n" % (m, (T0 + 1) * NS)).encode())  # a second member
    reply = call(server, "POST", "/write", body=body, params={"db": "nimbus"},
                 headers={"Content-Encoding": "gzip"})
    assert reply.status == 204, reply
    assert values(server, "nimbus", 'SELECT "v" FROM "%s"' % m) == [[T0 * NS, 1],
                                                                    [(T0 + 1) * NS, 2]]
    reply = call(server, "POST", "/write", body=b"this is not gzip at all",
                 params={"db": "nimbus"}, headers={"Content-Encoding": "gzip"})
    assert (reply.status, reply.json) == (400, {"error": "gzip: invalid header"}), reply
    truncated = gzip.compress(b"m v=1 1\n" * 100)[:-12]
    reply = call(server, "POST", "/write", body=truncated, params={"db": "nimbus"},
                 headers={"Content-Encoding": "gzip"})
    assert reply.status == 400, reply


def test_grafana_form_post_and_formats(server):
    m = name("graf")
    reply = call(server, "POST", "/write", params={"db": "nimbus", "precision": "s"},
                 body="%s,host=a v=1.5 %d\n%s,host=b v=2 %d" % (m, T0, m, T0 + 1))
    assert reply.status == 204, reply
    form = urllib.parse.urlencode({"q": 'SELECT "v" FROM "%s" GROUP BY "host"' % m,
                                   "db": "nimbus", "epoch": "ms"})
    reply = call(server, "POST", "/query", body=form,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200, reply
    assert reply.header("Content-Type") == "application/json"
    assert_influx_headers(reply)
    assert reply.json == {"results": [{"statement_id": 0, "series": [
        {"name": m, "tags": {"host": "a"}, "columns": ["time", "v"],
         "values": [[T0 * 1000, 1.5]]},
        {"name": m, "tags": {"host": "b"}, "columns": ["time", "v"],
         "values": [[(T0 + 1) * 1000, 2]]}]}]}

    # pretty: Go's MarshalIndent with four spaces.
    reply = query(server, 'SELECT "v" FROM "%s"' % m, db="nimbus", epoch="s", pretty="true")
    assert reply.raw.startswith(b'{\n    "results": [\n        {\n            "statement_id": 0,')
    assert reply.raw.endswith(b"\n}\n")

    # CSV: name,tags,time,<columns>, times as integers.
    reply = call(server, "GET", "/query", headers={"Accept": "application/csv"},
                 params={"q": 'SELECT "v" FROM "%s" GROUP BY "host"' % m, "db": "nimbus",
                         "epoch": "s"})
    assert reply.status == 200, reply
    assert reply.header("Content-Type") == "text/csv"
    assert reply.raw.decode() == "name,tags,time,v\n%s,host=a,%d,1.5\n%s,host=b,%d,2\n" % (
        m, T0, m, T0 + 1)

    # chunked: one JSON object per line, "partial" on all but the statement's last.
    reply = query(server, 'SELECT "v" FROM "%s"' % m, db="nimbus", epoch="s", chunked="true",
                  chunk_size="1")
    lines = reply.raw.decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"results": [{"statement_id": 0, "series": [
            {"name": m, "columns": ["time", "v"], "values": [[T0, 1.5]], "partial": True}],
            "partial": True}]},
        {"results": [{"statement_id": 0, "series": [
            {"name": m, "columns": ["time", "v"], "values": [[T0 + 1, 2]]}]}]}]


def test_query_parameter_errors(server):
    reply = call(server, "GET", "/query", params={"db": "nimbus"})
    assert (reply.status, reply.json) == (400, {"error": 'missing required parameter "q"'}), reply
    reply = query(server, "SHOW MEASUREMENTS", db="nimbus", epoch="fortnights")
    assert reply.status == 400, reply


# ====================================================================== raw 2.x

V2_HEADERS = {"Authorization": "Token not-needed-on-loopback",
              "Content-Type": "text/plain",
              "Accept": "application/json",
              "User-Agent": "influxdb-client-python/1.36.1"}


def v2_write(server, body, gzipped=False, **params):
    headers = dict(V2_HEADERS)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body.encode() if isinstance(body, str) else body)
    params.setdefault("org", "o")
    params.setdefault("precision", "ns")
    return call(server, "POST", "/api/v2/write", body=body, headers=headers, params=params)


def v2_error(reply):
    return reply.status, reply.json["code"], reply.json["message"]


def test_v2_write_as_the_python_client_sends_it(server):
    m = name("v2")
    lines = "\n".join("%s,device=d%d temperature=%d.5 %d" % (m, i, 20 + i, T0 * NS + i)
                      for i in range(3))
    reply = v2_write(server, lines, gzipped=True, bucket="nimbus")
    assert reply.status == 204, reply
    assert reply.raw == b""
    assert_influx_headers(reply)
    rows = values(server, "nimbus", 'SELECT "temperature" FROM "%s"' % m)
    assert rows == [[T0 * NS, 20.5], [T0 * NS + 1, 21.5], [T0 * NS + 2, 22.5]]


def test_v2_bucket_as_db_slash_rp(db, server):
    database, c = db
    # Infinite: a 2023 point would be past a short policy's retention.
    c.create_retention_policy("forever", "INF", 1, database=database)
    reply = v2_write(server, "m v=1 %d" % (T0 * NS), bucket=database + "/forever")
    assert reply.status == 204, reply
    assert values(server, database, 'SELECT "v" FROM "forever"."m"') == [[T0 * NS, 1]]
    # Not in the default policy.
    assert values(server, database, 'SELECT "v" FROM "m"') == []
    assert v2_error(v2_write(server, "m v=1", bucket=database + "/long")) == (
        404, "not found", 'bucket "%s/long" not found' % database)


def test_v2_errors(server):
    reply = v2_write(server, "m v=1")  # no bucket
    assert v2_error(reply) == (404, "not found", "bucket not found"), reply
    assert reply.header("Content-Type") == "application/json; charset=utf-8"
    assert reply.header("X-Platform-Error-Code") == "not found"
    assert v2_error(v2_write(server, "m v=1", bucket="nimbus", precision="h")) == (
        400, "invalid", "invalid precision; valid precision units are ns, us, ms, and s")
    assert v2_error(v2_write(server, "m v=1", bucket="nope")) == (
        404, "not found", 'bucket "nope" not found')
    # 2.x refuses the whole batch when a line does not parse.
    m = name("v2bad")
    status, code, message = v2_error(v2_write(server, "%s v=1\nbad" % m, bucket="nimbus"))
    assert (status, code, message) == (400, "invalid", "unable to parse 'bad': missing fields")
    assert values(server, "nimbus", 'SELECT "v" FROM "%s"' % m) == []
    assert v2_error(v2_write(server, b"not gzip", gzipped=False, bucket="nimbus")) == (
        400, "invalid", "unable to parse 'not gzip': invalid field format")


# ====================================================================== ping, health, limits

def test_ping_and_health(server):
    reply = call(server, "GET", "/ping")
    assert reply.status == 204 and reply.raw == b"", reply
    assert_influx_headers(reply)
    assert reply.header("X-Influxdb-Version") == "1.8.10"
    reply = call(server, "HEAD", "/ping")
    assert reply.status == 204, reply
    assert_influx_headers(reply)
    reply = call(server, "GET", "/ping", params={"verbose": "true"})
    assert (reply.status, reply.json) == (200, {"version": "1.8.10"}), reply
    reply = call(server, "GET", "/health")
    assert reply.status == 200, reply
    body = reply.json
    assert (body["name"], body["status"], body["message"]) == (
        "influxdb", "pass", "ready for queries and writes"), body
    assert body["version"] == "1.8.10" and body["checks"] == [], body


@pytest.mark.parametrize("path,params", [("/write", {"db": "nimbus"}),
                                         ("/api/v2/write", {"bucket": "nimbus", "org": "o"})])
def test_body_over_the_limit_is_413_before_it_is_sent(server, path, params):
    host, port = server.endpoints["http"].rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=TIMEOUT * 4)
    try:
        # Only the head: the answer must come without the server reading 26 MiB.
        conn.putrequest("POST", path + "?" + urllib.parse.urlencode(params))
        conn.putheader("Content-Type", "text/plain")
        conn.putheader("Content-Length", str(26 * MIB))
        conn.endheaders()
        resp = conn.getresponse()
        reply = Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()
    assert reply.status == 413, reply
    if path == "/write":
        assert reply.json == {"error": "Request Entity Too Large"}, reply
    else:
        assert reply.json["code"] == "request too large", reply
    assert call(server, "GET", "/ping").status == 204


@pytest.mark.parametrize("path,params", [("/write", {"db": "nimbus"}),
                                         ("/api/v2/write", {"bucket": "nimbus", "org": "o"})])
def test_gzip_bomb_is_413(server, path, params):
    bomb = gzip_bomb(110)  # past the 100 MiB the server inflates
    assert len(bomb) < MIB
    reply = call(server, "POST", path, body=bomb, params=params,
                 headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    assert reply.status == 413, reply
    if path == "/write":
        assert reply.json == {"error": "Request Entity Too Large"}, reply
    else:
        assert v2_error(reply) == (413, "request too large",
                                   "unable to read data: points batch is too large"), reply
    server.assert_alive()
    assert call(server, "GET", "/ping").status == 204
