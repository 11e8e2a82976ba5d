// InfluxDB 2's JavaScript client (@influxdata/influxdb-client) against nimbus's /api/v2/write and
// /api/v2/query (Flux). The tutorial's TimeSeriesDB (seed §5.1, written for Python's
// influxdb_client) is ported line for line: Points with tag/floatField/timestamp, a write API
// that sends before returning as SYNCHRONOUS does (flush after each write), query_recent and
// get_statistics with their Flux as the f-strings render it, collected with collectRows. Then
// what dashboards run (aggregateWindow, pivot, several yields, now), the raw annotated CSV, a
// gzip answer, and the errors the client surfaces (HttpError: bad Flux 400 "invalid", an unknown
// bucket 404 "not found").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { InfluxDB, Point, HttpError } from '@influxdata/influxdb-client';
import { startNimbus } from './nimbus.js';

// ---- seed §5.1, ported

class TimeSeriesDB {
  // 시계열 데이터베이스 클라이언트
  constructor(url, token, org, bucket) {
    this.client = new InfluxDB({ url, token });
    // write_options=SYNCHRONOUS: nothing buffered behind the caller's back (no timer, no
    // retries); each write below flushes before it returns.
    this.writeApi = this.client.getWriteApi(org, bucket, 'ns',
      { flushInterval: 0, maxRetries: 0 });
    this.queryApi = this.client.getQueryApi(org);
    this.bucket = bucket;
    this.org = org;
  }

  // 센서 데이터 저장
  async writeSensorData(data) {
    const point = new Point('sensor_reading')
      .tag('device_id', data.deviceId)
      .floatField('temperature', data.temperature)
      .floatField('humidity', data.humidity)
      .timestamp(data.timestamp);

    this.writeApi.writePoint(point);
    await this.writeApi.flush();
  }

  // 배치 저장
  async writeBatch(dataList) {
    const points = [];
    for (const data of dataList) {
      const point = new Point('sensor_reading')
        .tag('device_id', data.deviceId)
        .floatField('temperature', data.temperature)
        .floatField('humidity', data.humidity)
        .timestamp(data.timestamp);
      points.push(point);
    }

    this.writeApi.writePoints(points);
    await this.writeApi.flush();
  }

  // 최근 데이터 조회
  async queryRecent(deviceId, hours = 24) {
    const query = `
        from(bucket: "${this.bucket}")
            |> range(start: -${hours}h)
            |> filter(fn: (r) => r["device_id"] == "${deviceId}")
            |> filter(fn: (r) => r["_measurement"] == "sensor_reading")
        `;

    const tables = await this.queryApi.collectRows(query);

    const results = [];
    for (const record of tables) {
      results.push({
        time: record._time,
        field: record._field,
        value: record._value,
      });
    }

    return results;
  }

  // 통계 조회
  async getStatistics(deviceId, hours = 24) {
    const query = `
        from(bucket: "${this.bucket}")
            |> range(start: -${hours}h)
            |> filter(fn: (r) => r["device_id"] == "${deviceId}")
            |> filter(fn: (r) => r["_field"] == "temperature")
            |> mean()
        `;

    const tables = await this.queryApi.collectRows(query);

    const stats = {};
    for (const record of tables) {
      stats.mean_temperature = record._value;
    }

    return stats;
  }

  async close() {
    await this.writeApi.close();
  }
}

// ---- the suite

let server;
let url;
let db;
const org = 'tutorial-org';  // any organization name: nimbus has one and takes any
const minute = 60_000;
// Whole minutes, so that each reading falls in a window of its own below.
const base = Math.floor(Date.now() / minute) * minute - 10 * minute;
const readings = [
  { deviceId: 'pi-001', temperature: 21.5, humidity: 45.0, timestamp: new Date(base + 1 * minute) },
  { deviceId: 'pi-001', temperature: 22.25, humidity: 46.5, timestamp: new Date(base + 2 * minute) },
  { deviceId: 'pi-001', temperature: 23, humidity: 47.25, timestamp: new Date(base + 3 * minute) },
  { deviceId: 'pi-002', temperature: 30, humidity: 20, timestamp: new Date(base + 2 * minute) },
];

before(async () => {
  server = await startNimbus();
  url = `http://localhost:${server.port('http')}`;
  // The tutorial passes a token; on loopback nimbus needs none and ignores it.
  db = new TimeSeriesDB(url, 'my-token', org, 'nimbus');
  await db.writeSensorData(readings[0]);
  await db.writeBatch(readings.slice(1));
});

after(async () => {
  await db.close();
  assert.equal(await server.stop(), 0);
});

function queryApi(options = {}) {
  return new InfluxDB({ url }).getQueryApi({ org, ...options });
}

test('query_recent: every field of the device in the last 24 hours', async () => {
  const results = await db.queryRecent('pi-001');
  assert.equal(results.length, 6);
  // One table per field, humidity first (field names in order), rows in time order.
  assert.deepEqual(results.map((r) => r.field),
    ['humidity', 'humidity', 'humidity', 'temperature', 'temperature', 'temperature']);
  assert.deepEqual(results.map((r) => r.value), [45, 46.5, 47.25, 21.5, 22.25, 23]);
  assert.deepEqual(results.slice(0, 3).map((r) => new Date(r.time).getTime()),
    readings.slice(0, 3).map((r) => r.timestamp.getTime()));
  for (const r of results) assert.equal(typeof r.time, 'string');  // RFC3339, as the JS client keeps it

  assert.deepEqual(await db.queryRecent('pi-404'), []);
  // The readings are 7 to 9 minutes old: a 1 hour range holds them all.
  assert.equal((await db.queryRecent('pi-001', 1)).length, 6);
});

test('get_statistics: the mean temperature', async () => {
  assert.deepEqual(await db.getStatistics('pi-001'), { mean_temperature: 22.25 });
  assert.deepEqual(await db.getStatistics('pi-002'), { mean_temperature: 30 });
  assert.deepEqual(await db.getStatistics('pi-404'), {});
});

test('records carry the columns InfluxDB 2 gives them', async () => {
  const rows = await queryApi().collectRows(`
    from(bucket: "nimbus")
      |> range(start: -1h)
      |> filter(fn: (r) => r._measurement == "sensor_reading" and r.device_id == "pi-001")
      |> filter(fn: (r) => r._field == "temperature")
      |> mean()`);
  assert.equal(rows.length, 1);
  const row = rows[0];
  assert.deepEqual(Object.keys(row).sort(),
    ['_field', '_measurement', '_start', '_stop', '_value', 'device_id', 'result', 'table']);
  assert.equal(row.result, '_result');
  assert.equal(row.table, 0);
  assert.equal(row._value, 22.25);
});

test('aggregateWindow: per-minute means, and counts with empty windows', async () => {
  const fluxBase = `
    from(bucket: "nimbus")
      |> range(start: -1h)
      |> filter(fn: (r) => r._measurement == "sensor_reading")
      |> filter(fn: (r) => r.device_id == "pi-001" and r._field == "temperature")`;
  const means = await queryApi().collectRows(
    `${fluxBase} |> aggregateWindow(every: 1m, fn: mean, createEmpty: false)`);
  assert.deepEqual(means.map((r) => r._value), [21.5, 22.25, 23]);
  // _time is each window's stop: the minute after the reading.
  assert.deepEqual(means.map((r) => new Date(r._time).getTime()),
    readings.slice(0, 3).map((r) => r.timestamp.getTime() + minute));

  const counts = await queryApi().collectRows(`${fluxBase} |> aggregateWindow(every: 1m, fn: count)`);
  assert.ok(counts.length >= 60, `${counts.length} windows`);
  assert.equal(counts.reduce((sum, r) => sum + r._value, 0), 3);
  assert.ok(counts.every((r) => Number.isInteger(r._value)));
});

test('pivot: one row per time with a column per field', async () => {
  const rows = await queryApi().collectRows(`
    from(bucket: "nimbus")
      |> range(start: -1h)
      |> filter(fn: (r) => r._measurement == "sensor_reading" and r.device_id == "pi-001")
      |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows.map((r) => [r.temperature, r.humidity]), [[21.5, 45], [22.25, 46.5], [23, 47.25]]);
  assert.equal(rows[0].device_id, 'pi-001');
});

test('several yields, and the request\'s now', async () => {
  const now = new Date(base + 3 * minute + 30_000).toISOString();
  const rows = await queryApi({ now: () => now }).collectRows(`
    data = from(bucket: "nimbus")
      |> range(start: -95s)
      |> filter(fn: (r) => r._field == "temperature")
    data |> max() |> yield(name: "hottest")
    data |> count() |> yield(name: "readings")`);
  const hottest = rows.filter((r) => r.result === 'hottest');
  const counted = rows.filter((r) => r.result === 'readings');
  // From now - 95 s: pi-001's readings at +2 and +3 min, pi-002's at +2 min.
  assert.deepEqual(hottest.map((r) => [r.device_id, r._value]).sort(), [['pi-001', 23], ['pi-002', 30]]);
  assert.deepEqual(counted.map((r) => [r.device_id, r._value]), [['pi-001', 2], ['pi-002', 1]]);
});

test('the raw answer is annotated CSV with CRLF line ends', async () => {
  const csv = await queryApi().queryRaw(`
    from(bucket: "nimbus")
      |> range(start: -1h)
      |> filter(fn: (r) => r.device_id == "pi-001" and r._field == "temperature")
      |> mean()`);
  const lines = csv.split('\r\n');
  assert.equal(lines[0],
    '#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string');
  assert.equal(lines[1], '#group,false,false,true,true,false,true,true,true');
  assert.equal(lines[2], '#default,_result,,,,,,,');
  assert.equal(lines[3], ',result,table,_start,_stop,_value,_field,_measurement,device_id');
  assert.match(lines[4], /^,,0,[^,]+Z,[^,]+Z,22\.25,temperature,sensor_reading,pi-001$/);
  assert.ok(csv.endsWith('\r\n\r\n'));
});

test('a large answer comes gzipped when the client asks for it', async () => {
  const now = new Date(base + 5 * minute).toISOString();  // the same windows both times
  const flux = 'from(bucket: "nimbus") |> range(start: -1h) |> aggregateWindow(every: 10s, fn: count)';
  const gzipped = await queryApi({ gzip: true, now: () => now }).collectRows(flux);
  const plain = await queryApi({ now: () => now }).collectRows(flux);
  assert.ok(plain.length > 100);
  assert.deepEqual(gzipped, plain);
});

async function queryError(flux) {
  try {
    await queryApi().collectRows(flux);
  } catch (e) {
    return e;
  }
  assert.fail(`no error for ${flux}`);
}

test('bad Flux is a 400 "invalid" with Flux\'s position', async () => {
  const e = await queryError('from(bucket: "nimbus") |> range(start: -1h');
  assert.ok(e instanceof HttpError);
  assert.equal(e.statusCode, 400);
  assert.equal(e.code, 'invalid');
  assert.equal(e.json.message, 'compilation failed: error @1:27-1:43: expected RPAREN, got EOF');

  const unknown = await queryError('from(bucket: "nimbus") |> range(start: -1h) |> foo()');
  assert.equal(unknown.statusCode, 400);
  assert.equal(unknown.json.message, 'compilation failed: error @1:48-1:51: undefined identifier foo');

  const unbounded = await queryError('from(bucket: "nimbus") |> mean()');
  assert.equal(unbounded.statusCode, 400);
  assert.equal(unbounded.json.message,
    'cannot submit unbounded read to "nimbus"; try bounding \'from\' with a call to \'range\'');
});

test('an unknown bucket is a 404 "not found"', async () => {
  const e = await queryError('from(bucket: "no-such-bucket") |> range(start: -1h)');
  assert.ok(e instanceof HttpError);
  assert.equal(e.statusCode, 404);
  assert.equal(e.code, 'not found');
  assert.equal(e.json.message, 'failed to initialize execute state: could not find bucket "no-such-bucket"');
});
