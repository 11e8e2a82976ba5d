// MQTT.js against nimbus over WebSocket (ws:// on the HTTP listener, wss:// on HTTPS with a
// SigV4-presigned URL).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { SignatureV4 } from '@smithy/signature-v4';
import { startNimbus } from './nimbus.js';

let server;
before(async () => { server = await startNimbus(); });
after(async () => { assert.equal(await server.stop(), 0); });

function wsUrl() { return `ws://127.0.0.1:${server.port('http')}/mqtt`; }

async function connect(url, options = {}) {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  return client;
}

function nextMessages(client, count, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${count} messages`)), timeoutMs);
    client.on('message', (topic, payload, packet) => {
      got.push({ topic, payload: payload.toString(), packet });
      if (got.length === count) { clearTimeout(timer); resolve(got); }
    });
  });
}

for (const protocolVersion of [4, 5]) {
  test(`publish and subscribe at QoS 0, 1 and 2 over ws (MQTT ${protocolVersion === 5 ? '5' : '3.1.1'})`, async () => {
    const sub = await connect(wsUrl(), { protocolVersion, clientId: `ws-sub-${protocolVersion}` });
    const pub = await connect(wsUrl(), { protocolVersion, clientId: `ws-pub-${protocolVersion}` });
    const granted = await sub.subscribeAsync(`ws/${protocolVersion}/#`, { qos: 2 });
    assert.equal(granted[0].qos, 2);
    const received = nextMessages(sub, 3);
    for (const qos of [0, 1, 2]) await pub.publishAsync(`ws/${protocolVersion}/q${qos}`, `hello ${qos}`, { qos });
    const messages = await received;
    assert.deepEqual(messages.map((m) => m.payload).sort(), ['hello 0', 'hello 1', 'hello 2']);
    for (const m of messages) assert.equal(m.packet.qos, Number(m.topic.slice(-1)));
    await pub.endAsync();
    await sub.endAsync();
  });
}

test('retained message reaches a later WebSocket subscriber, empty payload clears it', async () => {
  const pub = await connect(wsUrl(), { protocolVersion: 5 });
  await pub.publishAsync('ws/retained', 'kept', { qos: 1, retain: true });
  const sub = await connect(wsUrl(), { protocolVersion: 5 });
  const received = nextMessages(sub, 1);
  await sub.subscribeAsync('ws/retained', { qos: 1 });
  const [m] = await received;
  assert.equal(m.payload, 'kept');
  assert.equal(m.packet.retain, true);
  await pub.publishAsync('ws/retained', '', { qos: 1, retain: true });
  const late = await connect(wsUrl(), { protocolVersion: 5 });
  let got = 0;
  late.on('message', () => { got += 1; });
  await late.subscribeAsync('ws/retained', { qos: 1 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(got, 0);
  await Promise.all([pub.endAsync(), sub.endAsync(), late.endAsync()]);
});

test('MQTT 5 properties pass through: user properties, response topic, correlation data, subscription id', async () => {
  const sub = await connect(wsUrl(), { protocolVersion: 5 });
  const pub = await connect(wsUrl(), { protocolVersion: 5 });
  await sub.subscribeAsync('ws/props/+', { qos: 1, properties: { subscriptionIdentifier: 42 } });
  const received = nextMessages(sub, 1);
  await pub.publishAsync('ws/props/a', '{"t":21.5}', {
    qos: 1,
    properties: {
      userProperties: { sensor: 'dht22', site: 'lab' },
      responseTopic: 'ws/replies',
      correlationData: Buffer.from([1, 2, 3]),
      contentType: 'application/json',
      payloadFormatIndicator: true,
    },
  });
  const [m] = await received;
  const p = m.packet.properties;
  assert.deepEqual({ ...p.userProperties }, { sensor: 'dht22', site: 'lab' });
  assert.equal(p.responseTopic, 'ws/replies');
  assert.deepEqual([...p.correlationData], [1, 2, 3]);
  assert.equal(p.contentType, 'application/json');
  assert.deepEqual([].concat(p.subscriptionIdentifier), [42]);
  await Promise.all([pub.endAsync(), sub.endAsync()]);
});

test('topic aliases both ways: the client assigns them, the server sends its own', async () => {
  const sub = await connect(wsUrl(), { protocolVersion: 5, properties: { topicAliasMaximum: 5 } });
  const pub = await connect(wsUrl(), { protocolVersion: 5, autoAssignTopicAlias: true });
  await sub.subscribeAsync('ws/alias/#', { qos: 1 });
  const received = nextMessages(sub, 4);
  for (let i = 0; i < 4; i += 1) await pub.publishAsync('ws/alias/long/topic/name', `m${i}`, { qos: 1 });
  const messages = await received;
  // MQTT.js restores the topic from the alias; the server used one after the first message.
  assert.deepEqual(messages.map((m) => m.topic), Array(4).fill('ws/alias/long/topic/name'));
  assert.deepEqual(messages.map((m) => m.payload), ['m0', 'm1', 'm2', 'm3']);
  assert.equal(messages[0].packet.properties?.topicAlias, 1);
  assert.ok(messages.slice(1).every((m) => m.packet.topic === '' && m.packet.properties?.topicAlias === 1));
  await Promise.all([pub.endAsync(), sub.endAsync()]);
});

// A SigV4-presigned wss:// URL (service iotdevicegateway), as the AWS IoT SDKs build it, signed
// by the AWS SDK's own signer with the keys in <data>/credentials.
async function presignedWssUrl(secretOverride) {
  const ini = readFileSync(join(server.dataDir, 'credentials'), 'utf8');
  const value = (key) => ini.match(new RegExp(`^${key}\\s*=\\s*(\\S+)`, 'm'))[1];
  const signer = new SignatureV4({
    service: 'iotdevicegateway',
    region: 'us-east-1',
    credentials: {
      accessKeyId: value('aws_access_key_id'),
      secretAccessKey: secretOverride ?? value('aws_secret_access_key'),
    },
    sha256: NodeSha256,
  });
  const port = server.port('https');
  const signed = await signer.presign({
    method: 'GET', protocol: 'wss:', hostname: 'localhost', port, path: '/mqtt',
    headers: { host: `localhost:${port}` }, query: {},
  }, { expiresIn: 300 });
  const query = new URLSearchParams(signed.query).toString();
  return `wss://localhost:${port}/mqtt?${query}`;
}

class NodeSha256 {
  constructor(secret) { this.hash = secret ? createHmac('sha256', secret) : createHash('sha256'); }
  update(data) { this.hash.update(data); }
  async digest() { return new Uint8Array(this.hash.digest()); }
}

test('wss on the HTTPS listener with a SigV4-presigned URL and the Nimbus root CA', async () => {
  const ca = readFileSync(join(server.dataDir, 'ca', 'root-CA.crt'));
  const sub = await connect(await presignedWssUrl(), { protocolVersion: 5, ca, rejectUnauthorized: true });
  const received = nextMessages(sub, 1);
  await sub.subscribeAsync('wss/t', { qos: 1 });
  const pub = await connect(wsUrl(), { protocolVersion: 5 });
  await pub.publishAsync('wss/t', 'secure', { qos: 1 });
  const [m] = await received;
  assert.equal(m.payload, 'secure');
  await Promise.all([pub.endAsync(), sub.endAsync()]);
});

test('wss without a certificate or a valid signature is refused', async () => {
  const ca = readFileSync(join(server.dataDir, 'ca', 'root-CA.crt'));
  const options = { protocolVersion: 5, ca, rejectUnauthorized: true, connectTimeout: 3000 };
  // Unsigned: the upgrade succeeds but CONNECT is refused (no certificate, not anonymous).
  await assert.rejects(connect(`wss://localhost:${server.port('https')}/mqtt`, options));
  // Wrongly signed: the upgrade itself is refused with AWS's 403 (MQTT.js never settles on a
  // refused upgrade, so the handshake is made directly).
  const url = new URL(await presignedWssUrl('not-the-secret'));
  const response = await new Promise((resolve, reject) => {
    const request = https.request({
      host: url.hostname, port: url.port, path: url.pathname + url.search, ca,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': 'mqtt',
      },
    });
    request.on('response', resolve);
    request.on('upgrade', () => reject(new Error('upgraded with a wrong signature')));
    request.on('error', reject);
    request.end();
  });
  assert.equal(response.statusCode, 403);
  assert.equal(response.headers['x-amzn-errortype'], 'InvalidSignatureException');
  response.resume();
});

// `localhost` listeners take both loopback families on one port (port 0 included), so a client
// that resolves localhost to ::1 (Node 18) and one that gets 127.0.0.1 meet on the same broker.
test('a localhost listener answers on 127.0.0.1 and [::1], and by name', async () => {
  const port = server.port('mqtt');
  const v4 = await connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5 });
  const v6 = await connect(`mqtt://[::1]:${port}`, { protocolVersion: 5 });
  const named = await connect(`ws://localhost:${server.port('http')}/mqtt`, { protocolVersion: 5 });
  await v6.subscribeAsync('dual/stack', { qos: 1 });
  const received = nextMessages(v6, 2);
  await v4.publishAsync('dual/stack', 'from v4', { qos: 1 });
  await named.publishAsync('dual/stack', 'by name', { qos: 1 });
  assert.deepEqual((await received).map((m) => m.payload).sort(), ['by name', 'from v4']);
  assert.match(server.endpoints.mqtt, /^127\.0\.0\.1:/, 'endpoints.json shows the IPv4 address');
  for (const c of [v4, v6, named]) await c.endAsync();
});
