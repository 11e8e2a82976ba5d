// /api/stream and /api/session without a browser: who may open the stream, what a bad line
// gets, the stream's updates after a publish, and the session routes' refusals. The WebSocket
// client is a few lines over node:http (Node 18 has no WebSocket of its own).
//
//   NIMBUS_BIN=build/nimbus node --test dashboard_stream.test.js
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startNimbus, withTimeout } from './nimbus.js';

const WAIT = 10000;
let open;    // loopback-open (the default)
let closed;  // loopback_open off, tsdb.auth required: a session or nothing

before(async () => {
  open = await startNimbus();
  closed = await startNimbus(['--dashboard-loopback-open', 'false', '--tsdb-auth', 'required']);
});

after(async () => {
  await open?.stop();
  await closed?.stop();
});

function frame(text) {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const header = payload.length < 126
    ? Buffer.from([0x81, 0x80 | payload.length])
    : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([header, mask, masked]);
}

// Opens /api/stream; resolves {status} for a refusal or a connection with next()/send()/closed.
function connect(server, headers = {}) {
  const port = server.port('http');
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/api/stream',
      headers: {
        Host: `localhost:${port}`, Origin: `http://localhost:${port}`,
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'), ...headers,
      },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.on('upgrade', (res, socket, head) => {
      let buffer = Buffer.alloc(0);
      const messages = [];
      const waiters = [];
      let isClosed = false;
      const closedWaiters = [];
      const take = (chunk) => {
        buffer = Buffer.concat([buffer, chunk]);
        for (;;) {
          if (buffer.length < 2) break;
          let length = buffer[1] & 0x7f;
          let offset = 2;
          if (length === 126) { if (buffer.length < 4) break; length = buffer.readUInt16BE(2); offset = 4; }
          else if (length === 127) { if (buffer.length < 10) break; length = Number(buffer.readBigUInt64BE(2)); offset = 10; }
          if (buffer.length < offset + length) break;
          const opcode = buffer[0] & 0x0f;
          const payload = buffer.subarray(offset, offset + length).toString();
          buffer = buffer.subarray(offset + length);
          if (opcode === 1) messages.push(JSON.parse(payload));
          if (opcode === 8) socket.end();
        }
        while (waiters.length && messages.length) {
          const { match, resolve: done } = waiters[0];
          const index = messages.findIndex(match);
          if (index < 0) break;
          waiters.shift();
          done(messages.splice(index, 1)[0]);
        }
      };
      socket.on('data', take);
      if (head?.length) take(head);  // what came with the 101
      socket.on('close', () => { isClosed = true; closedWaiters.forEach((r) => r()); });
      resolve({
        status: res.statusCode,
        send: (object) => socket.write(frame(typeof object === 'string' ? object : JSON.stringify(object) + '\n')),
        next: (match = () => true, what = 'a stream message') => withTimeout(new Promise((done) => {
          const index = messages.findIndex(match);
          if (index >= 0) return done(messages.splice(index, 1)[0]);
          waiters.push({ match, resolve: done });
        }), WAIT, what),
        closed: () => withTimeout(new Promise((done) => (isClosed ? done() : closedWaiters.push(done))), WAIT, 'the stream closed'),
        close: () => socket.destroy(),
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        count: (match) => messages.filter(match).length,
      });
    });
    req.end();
  });
}

function publish(server, topic, payload) {
  return new Promise((resolve, reject) => {
    execFile('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(server.port('mqtt')), '-q', '1', '-i', 'stream-dev-1',
      '-t', topic, '-m', JSON.stringify(payload)], { timeout: WAIT }, (e) => (e ? reject(e) : resolve()));
  });
}

async function http(server, method, path, { headers = {}, body } = {}) {
  const port = server.port('http');
  const response = await fetch(`http://localhost:${port}${path}`, { method, headers, body });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : null };
}

// What a browser on this machine gets by asking GET /api/session (the loopback rule).
async function loopbackCookie(server) {
  const answer = await http(server, 'GET', '/api/session');
  assert.equal(answer.status, 200);
  assert.equal(answer.json.principal, 'loopback');
  return answer.headers.get('set-cookie').split(';')[0];
}

test('the loopback rule signs a local browser in by asking; nothing else is opened by it', async () => {
  // Without the cookie a local program is nobody: unsigned AWS calls and the stream refused.
  assert.equal((await http(open, 'GET', '/things')).status, 403);
  assert.equal((await connect(open)).status, 401);
  // A page elsewhere cannot get the cookie for itself.
  assert.equal((await http(open, 'GET', '/api/session', { headers: { 'Sec-Fetch-Site': 'cross-site' } })).status, 401);
  const cookie = await loopbackCookie(open);
  assert.equal((await http(open, 'GET', '/things', { headers: { Cookie: cookie } })).status, 200);
  const again = await http(open, 'GET', '/api/session', { headers: { Cookie: cookie } });
  assert.equal(again.status, 200);
  assert.equal(again.headers.get('set-cookie'), null);  // the same session, not a new one
});

test('a loopback browser gets the stream: hello, fleet, device and presence updates', async () => {
  const ws = await connect(open, { Cookie: await loopbackCookie(open) });
  assert.equal(ws.status, 101);
  const hello = await ws.next((m) => m.channel === 'hello');
  assert.match(hello.version, /\d+\.\d+/);
  ws.send({ subscribe: ['fleet', 'device:stream-dev-1', 'metrics'] });
  const metrics = await ws.next((m) => m.channel === 'metrics', 'metrics at once on subscribe');
  assert.equal(typeof metrics.metrics.messages_received, 'number');
  await publish(open, 'sensor/data', { device_id: 'stream-dev-1', temperature: 21.5, humidity: 40 });
  const fleet = await ws.next((m) => m.channel === 'fleet' && m.device_id === 'stream-dev-1', 'a fleet update');
  assert.equal(fleet.last_reading.temperature, 21.5);
  assert.equal(fleet.last_reading.device_id, 'stream-dev-1');
  assert.match(fleet.last_seen, /^\d{4}-\d\d-\d\dT/);
  const point = await ws.next((m) => m.channel === 'device:stream-dev-1', 'a device point');
  assert.deepEqual(point.fields, { temperature: 21.5, humidity: 40 });
  const presence = await ws.next((m) => m.channel === 'presence' && m.client_id === 'stream-dev-1', 'presence');
  assert.equal(typeof presence.connected, 'boolean');
  ws.close();
});

test('bad lines are answered, a huge one closes the stream, others are unaffected', async () => {
  const cookie = await loopbackCookie(open);
  const ws = await connect(open, { Cookie: cookie });
  const other = await connect(open, { Cookie: cookie });
  await ws.next((m) => m.channel === 'hello');
  ws.send('not json\n');
  assert.match((await ws.next((m) => m.channel === 'error')).message, /JSON object/);
  ws.send({ subscribe: ['nonsense'] });
  assert.match((await ws.next((m) => m.channel === 'error')).message, /unknown channel "nonsense"/);
  ws.send({ subscribe: 'fleet' });
  assert.match((await ws.next((m) => m.channel === 'error')).message, /array/);
  ws.send('x'.repeat(20000));
  assert.match((await ws.next((m) => m.channel === 'error')).message, /longer than 16 KiB/);
  await ws.closed();
  other.send({ subscribe: ['metrics'] });
  assert.equal((await other.next((m) => m.channel === 'metrics')).channel, 'metrics');
  other.close();
});

test('the stream needs a session and this origin', async () => {
  const anonymous = await connect(closed);
  assert.equal(anonymous.status, 401);
  const token = readFileSync(join(closed.dataDir, 'tokens'), 'utf8').split('\n')
    .find((l) => l.startsWith('read-write ')).split(' ')[1];
  const signIn = await http(closed, 'POST', '/api/session', { body: JSON.stringify({ token }),
    headers: { 'Content-Type': 'application/json' } });
  assert.equal(signIn.status, 200);
  const cookie = signIn.headers.get('set-cookie').split(';')[0];
  assert.match(cookie, new RegExp(`^nimbus_session_${closed.port('http')}=[0-9a-f]{64}$`));
  const foreign = await connect(closed, { Cookie: cookie, Origin: 'http://evil.example' });
  assert.equal(foreign.status, 403);
  const ok = await connect(closed, { Cookie: cookie });
  assert.equal(ok.status, 101);
  await ok.next((m) => m.channel === 'hello');
  ok.close();
});

test('session routes refuse bad input plainly', async () => {
  const json = { 'Content-Type': 'application/json' };
  assert.equal((await http(closed, 'GET', '/api/session')).status, 401);
  assert.deepEqual((await http(closed, 'GET', '/api/session')).json, { signed_in: false, loopback_open: false });
  const malformed = await http(closed, 'POST', '/api/session', { body: '{"token":', headers: json });
  assert.equal(malformed.status, 400);
  assert.match(malformed.json.error, /JSON object/);
  const empty = await http(closed, 'POST', '/api/session', { body: '{}', headers: json });
  assert.equal(empty.status, 400);
  const wrong = await http(closed, 'POST', '/api/session', { body: '{"token":"0123456789abcdef0123"}', headers: json });
  assert.equal(wrong.status, 401);
  assert.match(wrong.json.error, /Unknown token/);
  const foreign = await http(closed, 'POST', '/api/session', { body: '{"token":"x"}',
    headers: { ...json, Origin: 'http://evil.example' } });
  assert.equal(foreign.status, 403);
  const huge = await http(closed, 'POST', '/api/session', { body: JSON.stringify({ token: 'x'.repeat(10000) }), headers: json });
  assert.equal(huge.status, 413);
  // Signed out, the other APIs stay closed; signed in, the cookie opens them; signed out again,
  // the cookie is dead.
  assert.equal((await http(closed, 'GET', '/api/devices')).status, 401);
  assert.equal((await http(closed, 'GET', '/things')).status, 403);
  const token = readFileSync(join(closed.dataDir, 'tokens'), 'utf8').split('\n')
    .find((l) => l.startsWith('read-write ')).split(' ')[1];
  const signIn = await http(closed, 'POST', '/api/session', { body: JSON.stringify({ token }), headers: json });
  const cookie = signIn.headers.get('set-cookie').split(';')[0];
  assert.equal((await http(closed, 'GET', '/api/devices', { headers: { Cookie: cookie } })).status, 200);
  assert.equal((await http(closed, 'GET', '/things', { headers: { Cookie: cookie } })).status, 200);
  const overview = await http(closed, 'GET', '/api/overview', { headers: { Cookie: cookie } });
  assert.equal(overview.status, 200);
  assert.equal(overview.json.listeners.http.split(':').pop(), String(closed.port('http')));
  const out = await http(closed, 'DELETE', '/api/session', { headers: { Cookie: cookie, Origin: `http://localhost:${closed.port('http')}` } });
  assert.equal(out.status, 204);
  assert.equal((await http(closed, 'GET', '/api/devices', { headers: { Cookie: cookie } })).status, 401);
});

test('the dashboard is served with its CSP, hashed assets cached, gzip when asked', async () => {
  const index = await fetch(`http://127.0.0.1:${open.port('http')}/`, { headers: { 'Accept-Encoding': 'identity' } });
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-security-policy'), /default-src 'self'/);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const html = await index.text();
  const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
  assert.ok(asset, 'index.html loads a hashed script');
  const js = await fetch(`http://127.0.0.1:${open.port('http')}${asset}`);  // fetch asks for gzip
  assert.equal(js.status, 200);
  assert.match(js.headers.get('cache-control'), /immutable/);
  assert.match(js.headers.get('content-type'), /javascript/);
  const etag = js.headers.get('etag');
  const again = await fetch(`http://127.0.0.1:${open.port('http')}${asset}`, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);
  assert.equal((await fetch(`http://127.0.0.1:${open.port('http')}/assets/nope.js`)).status, 404);
});

test('loopback APIs open to local programs refuse changes a page of another site sends', async () => {
  const crossSite = { 'Sec-Fetch-Site': 'cross-site', Origin: 'http://evil.example' };
  // Reads stay open across origins (the tutorial's own front end calls /api/devices so).
  assert.equal((await http(open, 'GET', '/api/devices', { headers: crossSite })).status, 200);
  assert.equal((await http(open, 'POST', '/api/alert-rules/high_temperature/enable', { headers: crossSite })).status, 401);
  assert.equal((await http(open, 'PUT', '/v1/projects/web/topics/csrf', { headers: { ...crossSite, 'Content-Type': 'application/json' }, body: '{}' })).status, 401);
  // The same calls from a local program (no browser headers) go through as before.
  assert.equal((await http(open, 'POST', '/api/alert-rules/high_temperature/enable')).status, 200);
  assert.equal((await http(open, 'PUT', '/v1/projects/web/topics/csrf', { headers: { 'Content-Type': 'application/json' }, body: '{}' })).status, 200);
});

test('a tab that stops reading loses stale updates, counted and told; ingest never waits for it', async () => {
  const server = await startNimbus(['--dashboard-stream-queue', '10']);
  try {
    const cookie = await loopbackCookie(server);
    const slow = await connect(server, { Cookie: cookie });
    const fast = await connect(server, { Cookie: cookie });
    for (const ws of [slow, fast]) {
      await ws.next((m) => m.channel === 'hello');
      // A line's subscriptions take effect together, and metrics answer at once: once they are
      // here the device channel is live too (a write sent earlier could pass the subscribe).
      ws.send({ subscribe: ['device:slow-1', 'metrics'] });
      await ws.next((m) => m.channel === 'metrics', 'metrics at once on subscribe');
    }
    // Both subscribed: a point reaches each.
    const base = 1_700_000_000_000_000_000n;
    const write = async (from, count) => {
      const lines = Array.from({ length: count }, (_, i) =>
        `sensor_reading,device_id=slow-1 t=${from + i} ${base + BigInt(from + i) * 1000n}`).join('\n');
      const started = Date.now();
      const answer = await http(server, 'POST', '/write?db=nimbus', { body: lines });
      assert.equal(answer.status, 204);
      return Date.now() - started;
    };
    await write(0, 1);
    await slow.next((m) => m.channel === 'device:slow-1');
    await fast.next((m) => m.channel === 'device:slow-1');
    slow.pause();
    // 40,000 points: far more than the paused tab's socket buffers and its queue of 10 hold.
    let writing = 0;
    for (let k = 0; k < 4; ++k) writing += await write(1 + k * 10000, 10000);
    console.log(`# 40,000 points written in ${writing} ms with a stalled tab`);
    // The reading tab is not held back by the stalled one: the newest point reaches it (a
    // queue of 10 keeps the newest of each burst; older ones are what the bound drops).
    const last = (m) => m.channel === 'device:slow-1' && m.fields.t === 40000;
    await fast.next(last, 'the newest point at the reading tab');
    slow.resume();
    const dropped = await slow.next((m) => m.channel === 'dropped', 'the stalled tab told it lost updates');
    assert.ok(dropped.count > 0);
    await slow.next(last, 'the newest point at the stalled tab once it reads again');
    const metrics = await (await fetch(`http://localhost:${server.port('http')}/metrics`)).text();
    const total = Number(/nimbus_dashboard_stream_dropped_total (\d+)/.exec(metrics)[1]);
    assert.ok(total >= dropped.count, metrics);
    slow.close();
    fast.close();
  } finally {
    await server.stop();
  }
});
