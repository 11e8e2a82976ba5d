"""The tutorial's dashboard API (§5.2) against the real binary, fed the way the tutorial feeds it:
paho publishes §2.3's payloads on sensor/data, the default [[tsdb.mqtt]] entry stores them in
nimbus/sensor_reading, and every /api/ route answers with the Flask app's JSON. Also: the
[[tsdb.mqtt]] and [[tsdb.databases]] config entries, CORS as flask_cors, tokens off loopback.

    NIMBUS_BIN=build/nimbus /usr/bin/python3 -m pytest -q tests/clients/test_dashboard_api.py
"""

import datetime
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zoneinfo

import pytest

import paho.mqtt.client as mqtt

from conftest import Nimbus, TIMEOUT, _find_binary, wait_until

NS = 1_000_000_000


def start_server(tmp_path_factory, config=None, extra_args=None):
    binary = _find_binary()
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("set NIMBUS_BIN to the nimbus binary", pytrace=False)
    srv = Nimbus(binary, tmp_path_factory.mktemp("nimbus"))
    args = list(extra_args or [])
    if config is not None:
        path = srv.workdir / "nimbus.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    srv.start(args)
    return srv


def stop_server(srv):
    err = srv.cleanup()
    if err:
        pytest.fail("%s\n%s" % (err, srv.log_tail()), pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory)
    yield srv
    stop_server(srv)


class Reply:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    def json(self):
        return json.loads(self.raw)

    def header(self, key):
        return self.headers.get(key)


def call(server, method, path, body=None, headers=None, params=None):
    url = "http://%s%s" % (server.endpoints["http"], path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT * 4) as reply:
            return Reply(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())


def write(server, lines, db="nimbus"):
    reply = call(server, "POST", "/write", "\n".join(lines).encode(),
                 params={"db": db, "precision": "ns"})
    assert reply.status == 204, reply.raw


def publish_like_the_tutorial(server, device_id, count, start_seconds):
    """§2.3's loop, without its 5 s sleeps: QoS 1 publishes of its payload on sensor/data."""
    host, port = server.endpoints["mqtt"].rsplit(":", 1)
    client = mqtt.Client(client_id="pub-" + uuid.uuid4().hex[:8], protocol=mqtt.MQTTv311)
    client.connect(host.strip("[]"), int(port))
    client.loop_start()
    try:
        for i in range(count):
            data = {
                "device_id": device_id,
                "temperature": 25.5 + i * 0.1,
                "humidity": 60 + i,
                "timestamp": start_seconds + i * 5,
            }
            info = client.publish("sensor/data", json.dumps(data), qos=1)
            info.wait_for_publish(TIMEOUT)
            assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()


def device_reading_count(server, device_id):
    reply = call(server, "GET", "/api/devices/%s/readings" % device_id, params={"limit": 1000})
    return reply.json()["count"] if reply.status == 200 else 0


@pytest.fixture(scope="module")
def fleet(server):
    """Two devices that published §2.3's ten readings each, a minute ago."""
    start = int(time.time()) - 120
    devices = ["RaspberryPi-%s" % uuid.uuid4().hex[:6] for _ in range(2)]
    for device in devices:
        publish_like_the_tutorial(server, device, 10, start)
    for device in devices:
        wait_until(lambda d=device: device_reading_count(server, d) == 10,
                   what="%s's ten readings" % device)
    return devices, start


def iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


# ================================================================================ the routes

def test_devices_lists_each_with_its_last_reading(server, fleet):
    devices, start = fleet
    reply = call(server, "GET", "/api/devices")
    assert reply.status == 200
    assert reply.header("Content-Type") == "application/json"
    body = reply.json()
    assert body["count"] == len(body["devices"])
    listed = {d["device_id"]: d for d in body["devices"]}
    for device in devices:
        entry = listed[device]
        assert entry["last_seen"] == iso(start + 45)
        assert entry["last_reading"] == {
            "device_id": device, "timestamp": iso(start + 45),
            "temperature": pytest.approx(25.5 + 0.9), "humidity": 69.0}


def test_readings_newest_first_with_limit_and_hours(server, fleet):
    device, start = fleet[0][0], fleet[1]
    body = call(server, "GET", "/api/devices/%s/readings" % device).json()
    assert body["device_id"] == device
    assert body["count"] == 10
    assert [r["timestamp"] for r in body["readings"]] == [iso(start + 5 * i)
                                                          for i in reversed(range(10))]
    assert body["readings"][0] == {"device_id": device, "timestamp": iso(start + 45),
                                   "temperature": pytest.approx(26.4), "humidity": 69.0}
    # Numbers are floats (Telegraf's rule), so 60 then 60.5 never conflict.
    assert isinstance(body["readings"][0]["humidity"], float)

    limited = call(server, "GET", "/api/devices/%s/readings" % device,
                   params={"limit": 3}).json()
    assert limited["count"] == 3
    assert [r["timestamp"] for r in limited["readings"]] == [iso(start + 45), iso(start + 40),
                                                             iso(start + 35)]
    # hours=0: the cutoff is now, and every reading is older.
    assert call(server, "GET", "/api/devices/%s/readings" % device,
                params={"hours": 0}).json()["count"] == 0
    # As Flask's type=int: what is not an integer falls back to the default.
    assert call(server, "GET", "/api/devices/%s/readings" % device,
                params={"hours": "a lot", "limit": "x"}).json()["count"] == 10
    unknown = call(server, "GET", "/api/devices/nobody/readings").json()
    assert unknown == {"count": 0, "device_id": "nobody", "readings": []}


def test_stats_min_max_avg_per_field(server, fleet):
    device = fleet[0][0]
    reply = call(server, "GET", "/api/devices/%s/stats" % device, params={"hours": 1})
    assert reply.status == 200
    body = reply.json()
    temperatures = [25.5 + i * 0.1 for i in range(10)]
    assert body["device_id"] == device
    assert body["period_hours"] == 1
    assert body["reading_count"] == 10
    assert body["temperature"]["min"] == pytest.approx(min(temperatures))
    assert body["temperature"]["max"] == pytest.approx(max(temperatures))
    assert body["temperature"]["avg"] == pytest.approx(sum(temperatures) / 10)
    assert body["humidity"] == {"min": 60.0, "max": 69.0, "avg": pytest.approx(64.5)}
    assert call(server, "GET", "/api/devices/%s/stats" % device,
                params={"hours": "soon"}).json()["period_hours"] == 24


def test_stats_of_a_device_without_data_is_404(server):
    reply = call(server, "GET", "/api/devices/ghost/stats")
    assert reply.status == 404
    assert reply.json() == {"error": "No data"}


def test_daily_stats_split_at_local_midnight(server):
    """Two readings a second either side of Seoul's midnight land on two local days."""
    device = "daily-" + uuid.uuid4().hex[:6]
    seoul = zoneinfo.ZoneInfo("Asia/Seoul")
    today = datetime.datetime.now(seoul).date()
    midnight = datetime.datetime.combine(today, datetime.time(), seoul)
    before, after = int(midnight.timestamp()) - 1, int(midnight.timestamp()) + 1
    write(server, ["sensor_reading,device_id=%s temperature=20,humidity=50 %d" % (device, before * NS),
                   "sensor_reading,device_id=%s temperature=22 %d" % (device, (before - 60) * NS),
                   "sensor_reading,device_id=%s temperature=30,humidity=70 %d" % (device, after * NS)])
    body = call(server, "GET", "/api/devices/%s/stats/daily" % device,
                params={"days": 3, "tz": "Asia/Seoul"}).json()
    assert body["device_id"] == device and body["tz"] == "Asia/Seoul"
    dates = [(today - datetime.timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert [d["date"] for d in body["days"]] == dates
    assert body["days"][0] == {"date": dates[0], "reading_count": 0}
    assert body["days"][1] == {
        "date": dates[1], "reading_count": 2,
        "temperature": {"min": 20.0, "max": 22.0, "avg": 21.0, "count": 2},
        "humidity": {"min": 50.0, "max": 50.0, "avg": 50.0, "count": 1}}
    assert body["days"][2] == {
        "date": dates[2], "reading_count": 1,
        "temperature": {"min": 30.0, "max": 30.0, "avg": 30.0, "count": 1},
        "humidity": {"min": 70.0, "max": 70.0, "avg": 70.0, "count": 1}}
    # In UTC (the default zone) both readings fall on one day: 15:00 UTC is Seoul's midnight.
    utc = call(server, "GET", "/api/devices/%s/stats/daily" % device, params={"days": 2}).json()
    assert utc["tz"] == "UTC"
    assert sum(d["reading_count"] for d in utc["days"]) == 3
    bad = call(server, "GET", "/api/devices/%s/stats/daily" % device, params={"tz": "Mars/Base"})
    assert bad.status == 400
    assert bad.json() == {"error": "Unknown time zone: Mars/Base"}


def test_cors_as_flask_cors(server, fleet):
    reply = call(server, "GET", "/api/devices", headers={"Origin": "http://localhost:3000"})
    assert reply.header("Access-Control-Allow-Origin") == "http://localhost:3000"
    assert reply.header("Vary") == "Origin"
    assert call(server, "GET", "/api/devices").header("Access-Control-Allow-Origin") is None
    preflight = call(server, "OPTIONS", "/api/devices/%s/readings" % fleet[0][0],
                     headers={"Origin": "http://dash.example",
                              "Access-Control-Request-Method": "GET",
                              "Access-Control-Request-Headers": "authorization"})
    assert preflight.status == 200
    assert preflight.header("Access-Control-Allow-Origin") == "http://dash.example"
    assert "GET" in preflight.header("Access-Control-Allow-Methods")
    assert preflight.header("Access-Control-Allow-Headers") == "authorization"
    # Only the read routes: nothing here changes state.
    assert call(server, "POST", "/api/devices").status == 405


# ====================================================================== config and access

MAPPING_CONFIG = """
[[tsdb.databases]]
name = "plant"
retention = "30d"
rollups = ["1m:30d", "1h:1y", "1d:inf"]

[[tsdb.mqtt]]
filter = "factory/+/telemetry"
database = "plant"
measurement = "telemetry"
tags = ["line"]
topic_tags = { site = 1 }
time_key = "ts"
"""


def test_config_mappings_and_databases(tmp_path_factory):
    srv = start_server(tmp_path_factory, MAPPING_CONFIG)
    try:
        policies = call(srv, "GET", "/query", params={"q": "SHOW RETENTION POLICIES ON plant"})
        assert policies.json()["results"][0]["series"][0]["values"] == [
            ["autogen", "720h0m0s", "24h0m0s", 1, True]]
        host, port = srv.endpoints["mqtt"].rsplit(":", 1)
        client = mqtt.Client(client_id="factory", protocol=mqtt.MQTTv311)
        client.connect(host, int(port))
        client.loop_start()
        ts = int(time.time()) - 30
        info = client.publish("factory/seoul/telemetry",
                              json.dumps({"line": "A", "ts": ts, "rpm": 1200, "ok": True}), qos=1)
        info.wait_for_publish(TIMEOUT)
        # The default entry is replaced: sensor/data is not stored any more.
        client.publish("sensor/data", json.dumps({"device_id": "x", "temperature": 1}),
                       qos=1).wait_for_publish(TIMEOUT)
        client.loop_stop()
        client.disconnect()

        def stored():
            reply = call(srv, "GET", "/query", params={
                "db": "plant", "epoch": "s", "q": "SELECT * FROM telemetry"})
            series = reply.json()["results"][0].get("series")
            return series and series[0]
        series = wait_until(stored, what="the factory point")
        assert series["columns"] == ["time", "line", "ok", "rpm", "site"]
        assert series["values"] == [[ts, "A", True, 1200.0, "seoul"]]
        assert call(srv, "GET", "/api/devices").json() == {"count": 0, "devices": []}
    finally:
        stop_server(srv)


@pytest.mark.parametrize("config, message", [
    ('[[tsdb.mqtt]]\nfilter = "a/#"\n', "[[tsdb.mqtt]] entry 1: measurement is required"),
    ('[[tsdb.mqtt]]\nfilter = "a/#/b"\nmeasurement = "m"\n',
     "[[tsdb.mqtt]] entry 1: filter \"a/#/b\" is not a valid MQTT topic filter"),
    ('[[tsdb.mqtt]]\nfilter = "a"\nmeasurement = "m"\ntag = ["x"]\n', "unknown key 'tag'"),
    ('[[tsdb.databases]]\nname = "x"\nretention = "5m"\n',
     "[[tsdb.databases]] entry 1: retention must be"),
    ('[[tsdb.databases]]\nname = "x"\nrollups = ["1w:30d"]\n',
     "[[tsdb.databases]] entry 1: rollups must be a list of \"TIER:DURATION\" strings"),
    ('[[tsdb.databases]]\nname = "x"\nrollups = ["1m:inf", "1h:30d"]\n',
     "[[tsdb.databases]] entry 1: rollups keeps 1h for less time than 1m"),
    ('[[tsdb.databases]]\nname = "x"\nrollups = ["1h:30d", "1h:1y"]\n',
     "[[tsdb.databases]] entry 1: rollups names 1h twice"),
    ('[tsdb]\nmqtt = 3\n', "'tsdb.mqtt' must be a list of tables"),
])
def test_bad_config_entries_stop_the_start_naming_them(tmp_path_factory, config, message):
    binary = _find_binary()
    srv = Nimbus(binary, tmp_path_factory.mktemp("nimbus"))
    path = srv.workdir / "nimbus.toml"
    path.write_text(config)
    with pytest.raises(RuntimeError) as failure:
        srv.start(["--config", str(path)])
    assert message in str(failure.value)
    srv.cleanup()


def test_tokens_required_off_loopback(tmp_path_factory):
    srv = start_server(tmp_path_factory, extra_args=["--tsdb-auth", "required"])
    try:
        refused = call(srv, "GET", "/api/devices", headers={"Origin": "http://x"})
        assert refused.status == 401
        assert refused.json() == {"error": "Unauthorized"}
        assert refused.header("WWW-Authenticate") == "Bearer"
        assert refused.header("Access-Control-Allow-Origin") == "http://x"
        token = next(line.split()[1] for line in (srv.data_dir / "tokens").read_text().splitlines()
                     if line.startswith("read-write "))
        for header in ("Bearer " + token, "Token " + token):
            allowed = call(srv, "GET", "/api/devices", headers={"Authorization": header})
            assert allowed.status == 200, allowed.raw
        # A preflight carries no credentials and is answered anyway.
        assert call(srv, "OPTIONS", "/api/devices", headers={"Origin": "http://x"}).status == 200
    finally:
        stop_server(srv)
