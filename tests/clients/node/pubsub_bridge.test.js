// The tutorial's §4 MQTT <-> Pub/Sub bridges as a few lines of nimbus.toml ([pubsub_bridges.*],
// issue 14), between two nimbus: an edge, where devices publish with mosquitto_pub / MQTT.js and
// take commands with mosquitto_sub, and a cloud, whose Pub/Sub port the official client
// (@google-cloud/pubsub through PUBSUB_EMULATOR_HOST) watches and publishes commands on:
// - §4.1: sensor/… and device/+/status arrive in the tutorial's envelope and attribute;
// - §4.2: a command published at the cloud reaches the device; a bad one is nacked until it is
//   dead-lettered, and counted;
// - target = "local" on one nimbus, with the §4.2 envelope;
// - grpcs:// to a cloud that demands credentials (its CA, a token from its <data>/tokens);
// - a kill -9 of the edge during a QoS 1 stream: every publish the edge acknowledged reaches
//   the subscription (duplicates allowed), the rest of the stream too after the restart;
// - a kill -9 of the cloud during the stream, restarted on its data and gRPC port: the same,
//   and a command published there afterwards reaches the device (the edge pulls again).
// Every process is started here and signalled by its own handle; every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { PubSub } from '@google-cloud/pubsub';
import { startNimbus, withTimeout } from './nimbus.js';

const WAIT = 20000;
const projectId = 'iot-project';

let workDir;
let cloud;
let pubsub;
let edge;

// A nimbus serving `config` from a data directory under `dir` that outlives it, so that a
// restart after kill -9 finds its bridge queue. Loopback ports, chosen by the kernel.
async function spawnNimbus(dir, config, grpcListener = 'off') {
  const configFile = join(dir, 'nimbus.toml');
  writeFileSync(configFile, config);
  const dataDir = join(dir, 'data');
  const endpointsFile = join(dataDir, 'endpoints.json');
  rmSync(endpointsFile, { force: true });  // a kill -9 leaves the last one behind
  const child = spawn(process.env.NIMBUS_BIN, ['serve', '--data-dir', dataDir, '--config', configFile,
    '--mqtt', '127.0.0.1:0', '--mqtts', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--https', '127.0.0.1:0', '--grpc', grpcListener], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + WAIT;
  while (!existsSync(endpointsFile)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nimbus exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`nimbus did not start:\n${log}`);
    await sleep(50);
  }
  const endpoints = JSON.parse(readFileSync(endpointsFile, 'utf8'));
  return {
    dataDir,
    port: (name) => Number(endpoints[name].split(':').pop()),
    log: () => log,
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await exited; }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) { child.kill('SIGTERM'); await exited; }
      return child.exitCode;
    },
  };
}

// Runs a command to its end (bounded); resolves with its exit code and output.
function run(command, args, ms = WAIT) {
  return withTimeout(new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { out += c; });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out }));
  }), ms, `${command} ${args.join(' ')}`);
}

async function mosquittoPub(server, topic, message) {
  const { code, out } = await run('mosquitto_pub',
    ['-h', '127.0.0.1', '-p', String(server.port('mqtt')), '-t', topic, '-m', message, '-q', '1']);
  assert.equal(code, 0, out);
}

// mosquitto_sub -d on `filter` at QoS 1, resolved once subscribed (its "received SUBACK"); `lines(topic, n)` waits for n
// messages on `topic` (-v prints "topic payload").
async function mosquittoSub(server, filter) {
  // Under stdbuf: piped, its output would wait in a buffer.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1',
    '-p', String(server.port('mqtt')), '-t', filter, '-q', '1', '-v', '-d'],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set();
  child.stdout.on('data', (c) => { out += c; for (const w of waiters) w(); });
  const until = (done, what) => withTimeout(new Promise((resolve) => {
    const check = () => { if (done()) { waiters.delete(check); resolve(); } };
    waiters.add(check);
    check();
  }), WAIT, what);
  await until(() => out.includes('received SUBACK'), `mosquitto_sub subscribed to ${filter}`);
  return {
    async lines(topic, n) {
      const matching = () => out.split('\n').filter((l) => l.startsWith(`${topic} `));
      await until(() => matching().length >= n, `${n} messages on ${topic}:\n${out}`);
      return matching().map((l) => l.slice(topic.length + 1));
    },
    stop() { child.kill('SIGTERM'); },
  };
}

// Collects `count` messages from `subscription`, acking each, then closes it (as pubsub.test.js).
function receive(subscription, count, ms = WAIT) {
  let onError;
  let onMessage;
  return withTimeout(new Promise((resolve, reject) => {
    const got = [];
    onError = reject;
    onMessage = (message) => {
      got.push(message);
      message.ack();
      if (got.length === count) resolve(got);
    };
    subscription.on('error', onError);
    subscription.on('message', onMessage);
  }), ms, `${count} messages on ${subscription.name}`).finally(async () => {
    await subscription.close();
    subscription.removeListener('error', onError);
    subscription.removeListener('message', onMessage);
  });
}

// A counter from a nimbus's /metrics (open on its loopback HTTP listener).
function metric(server, line) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port('http'), path: '/metrics' }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        const found = data.split('\n').find((l) => l.startsWith(`${line} `));
        resolve(found ? Number(found.split(' ').pop()) : undefined);
      });
    }).on('error', reject);
  });
}

async function eventually(check, what) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${WAIT} ms`);
    await sleep(50);
  }
}

function bridgeConfig(name, target, extra = '') {
  return `[pubsub_bridges.${name}]
target = "${target}"
project = "${projectId}"
filters = ["sensor/#", "device/+/status"]
topic = "iot-sensor-data"
subscription = "commands-sub"
${extra}`;
}

before(async () => {
  assert.ok(process.env.NIMBUS_BIN, 'NIMBUS_BIN is not set');
  workDir = mkdtempSync(join(tmpdir(), 'nimbus-node-pubsub-bridge-'));
  cloud = await startNimbus(['--grpc', '127.0.0.1:0']);
  process.env.PUBSUB_EMULATOR_HOST = `127.0.0.1:${cloud.port('grpc')}`;
  pubsub = new PubSub({ projectId });
  // The tutorial's §3.2 resources, before the edge's bridge first looks for them.
  const [sensorData] = await pubsub.createTopic('iot-sensor-data');
  await sensorData.createSubscription('sensor-sub');
  const [deadLetters] = await pubsub.createTopic('commands-dead');
  await deadLetters.createSubscription('commands-dead-sub');
  const [commands] = await pubsub.createTopic('commands');
  await commands.createSubscription('commands-sub', {
    deadLetterPolicy: { deadLetterTopic: deadLetters.name, maxDeliveryAttempts: 5 },
  });
  const [stream] = await pubsub.createTopic('stream-data');
  await stream.createSubscription('stream-sub');
  edge = await spawnNimbus(mkdtempSync(join(workDir, 'edge-')),
    bridgeConfig('cloud', `grpc://127.0.0.1:${cloud.port('grpc')}`));
});

after(async () => {
  await pubsub?.close();
  if (edge) assert.equal(await edge.stop(), 0, edge.log());
  if (cloud) assert.equal(await cloud.stop(), 0, cloud.log());
  rmSync(workDir, { recursive: true, force: true });
});

test('§4.1: sensor/… and device/+/status reach the cloud in the tutorial envelope', async () => {
  const receiving = receive(pubsub.subscription('sensor-sub'), 2);
  const sentAt = Date.now() / 1000;
  await mosquittoPub(edge, 'other/topic', '{"not": "bridged"}');  // first: it would be counted
  await mosquittoPub(edge, 'sensor/pi-001', '{"temperature": 21.5, "humidity": 60}');
  await mosquittoPub(edge, 'device/pi-001/status', 'online');
  const got = (await receiving).sort((a, b) => a.attributes.source_topic.localeCompare(b.attributes.source_topic));
  assert.deepEqual(got.map((m) => m.attributes), [
    { source_topic: 'device/pi-001/status' }, { source_topic: 'sensor/pi-001' }]);
  // json.dumps's text: ", " and ": ", the keys in the tutorial's order.
  const status = got[0].data.toString();
  assert.match(status, /^\{"source_topic": "device\/pi-001\/status", "data": \{"raw": "online"\}, "timestamp": \d+\.\d+\}$/);
  const reading = JSON.parse(got[1].data.toString());
  assert.deepEqual(Object.keys(reading), ['source_topic', 'data', 'timestamp']);
  assert.deepEqual(reading.data, { temperature: 21.5, humidity: 60 });
  assert.ok(reading.timestamp >= sentAt - 1 && reading.timestamp <= Date.now() / 1000 + 1, `${reading.timestamp}`);
  assert.match(got[1].data.toString(), /^\{"source_topic": "sensor\/pi-001", "data": \{"temperature": 21.5, "humidity": 60\}, /);
  await eventually(async () => (await metric(edge, 'nimbus_bridge_forwarded_total{bridge="cloud"}')) >= 2,
    'the edge counts them forwarded');
});

test('§4.2: a command published at the cloud reaches mosquitto_sub at the edge', async () => {
  const device = await mosquittoSub(edge, 'device/+/command');
  try {
    await pubsub.topic('commands').publishMessage({
      json: { topic: 'device/pi-001/command', payload: { action: 'reboot', delay: 5 } },
    });
    await pubsub.topic('commands').publishMessage({ json: { topic: 'device/pi-002/command' } });
    assert.deepEqual(await device.lines('device/pi-001/command', 1), ['{"action": "reboot", "delay": 5}']);
    assert.deepEqual(await device.lines('device/pi-002/command', 1), ['{}']);  // payload's default
  } finally {
    device.stop();
  }
  await eventually(async () => (await metric(cloud, `nimbus_pubsub_acked_total{subscription="projects/${projectId}/subscriptions/commands-sub"}`)) >= 2,
    'the commands acked at the cloud');
});

test('§4.2: a command that is not JSON is nacked, counted, and ends dead-lettered', async () => {
  const errorsBefore = (await metric(edge, 'nimbus_bridge_errors_total{bridge="cloud"}')) ?? 0;
  const dead = receive(pubsub.subscription('commands-dead-sub'), 1);
  await pubsub.topic('commands').publishMessage({ data: Buffer.from('reboot now') });
  await pubsub.topic('commands').publishMessage({ json: { topic: '$SYS/broker/uptime' } });  // not allowed
  const [first] = await dead;
  assert.ok(['reboot now', '{"topic":"$SYS/broker/uptime"}'].includes(first.data.toString()), first.data.toString());
  await eventually(async () => (await metric(edge, 'nimbus_bridge_errors_total{bridge="cloud"}')) >= errorsBefore + 10,
    'five nacked attempts of each counted');
});

test('target = "local": the §4.2 envelope on one nimbus, and commands back', async () => {
  const server = await spawnNimbus(mkdtempSync(join(workDir, 'local-')), `
[[pubsub.topics]]
name = "projects/${projectId}/topics/iot-sensor-data"

[[pubsub.subscriptions]]
name = "projects/${projectId}/subscriptions/sensor-sub"
topic = "projects/${projectId}/topics/iot-sensor-data"

[[pubsub.topics]]
name = "projects/${projectId}/topics/commands"

[[pubsub.subscriptions]]
name = "projects/${projectId}/subscriptions/commands-sub"
topic = "projects/${projectId}/topics/commands"

${bridgeConfig('here', 'local', 'envelope = "topic_payload"')}
`, '127.0.0.1:0');
  const local = new PubSub({ projectId, apiEndpoint: `127.0.0.1:${server.port('grpc')}`, emulatorMode: true });
  try {
    const receiving = receive(local.subscription('sensor-sub'), 1);
    await mosquittoPub(server, 'sensor/pi-009', 'not json');  // the tutorial's json.loads raises
    await mosquittoPub(server, 'sensor/pi-009', '{"temperature": 19}');
    const [message] = await receiving;
    assert.equal(message.data.toString(), '{"topic": "sensor/pi-009", "payload": {"temperature": 19}}');
    assert.deepEqual(message.attributes, {});
    assert.equal(await metric(server, 'nimbus_bridge_errors_total{bridge="here"}'), 1);

    const device = await mosquittoSub(server, 'device/+/command');
    try {
      await local.topic('commands').publishMessage({ json: { topic: 'device/pi-009/command', payload: 'on' } });
      assert.deepEqual(await device.lines('device/pi-009/command', 1), ['"on"']);
    } finally {
      device.stop();
    }
  } finally {
    await local.close();
    assert.equal(await server.stop(), 0, server.log());
  }
});

test('grpcs:// to a cloud that demands credentials: its CA and a token', async () => {
  const secured = await spawnNimbus(mkdtempSync(join(workDir, 'secured-')), `
[pubsub]
auth = "required"

[[pubsub.topics]]
name = "projects/${projectId}/topics/iot-sensor-data"
`, '127.0.0.1:0');
  const token = readFileSync(join(secured.dataDir, 'tokens'), 'utf8').split('\n')
    .find((l) => l.startsWith('read-write ')).split(' ')[1];
  const dir = mkdtempSync(join(workDir, 'edge-tls-'));
  writeFileSync(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const tlsEdge = await spawnNimbus(dir, `[pubsub_bridges.secure]
target = "grpcs://127.0.0.1:${secured.port('grpc')}"
cafile = "${join(secured.dataDir, 'ca', 'root-CA.crt')}"
token_file = "${join(dir, 'token')}"
project = "${projectId}"
filters = ["sensor/#"]
topic = "iot-sensor-data"
`);
  try {
    await mosquittoPub(tlsEdge, 'sensor/secure', '1');
    await eventually(async () => (await metric(secured, `nimbus_pubsub_published_total{topic="projects/${projectId}/topics/iot-sensor-data"}`)) === 1,
      'published at the secured cloud');
    await eventually(async () => (await metric(tlsEdge, 'nimbus_bridge_queued_messages{bridge="secure"}')) === 0,
      'the edge queue emptied');
  } finally {
    assert.equal(await tlsEdge.stop(), 0, tlsEdge.log());
    assert.equal(await secured.stop(), 0, secured.log());
  }
});

test('kill -9 of the edge during a QoS 1 stream: every acknowledged publish reaches the cloud', async () => {
  const dir = mkdtempSync(join(workDir, 'edge-killed-'));
  const config = bridgeConfig('stream', `grpc://127.0.0.1:${cloud.port('grpc')}`)
    .replace('topic = "iot-sensor-data"', 'topic = "stream-data"')
    .replace('subscription = "commands-sub"\n', '');
  let streamer = await spawnNimbus(dir, config);

  // Numbered messages, each awaited (its PUBACK means it is in the bridge's queue on disk).
  const acknowledged = new Set();
  async function stream(server, from, count) {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.port('mqtt')}`,
      { clientId: `streamer-${from}`, reconnectPeriod: 0 });
    const closed = new Promise((resolve) => client.once('close', () => resolve(false)));
    for (let n = from; n < from + count; n += 1) {
      const sent = client.publishAsync('sensor/stream', JSON.stringify({ n }), { qos: 1 }).then(() => true, () => false);
      if (!(await Promise.race([sent, closed]))) break;
      acknowledged.add(n);
    }
    client.end(true);
  }
  const streaming = stream(streamer, 0, 1000000);
  await eventually(() => acknowledged.size >= 500, '500 publishes acknowledged');
  await streamer.kill9();
  await withTimeout(streaming, WAIT, 'the stream ends with the edge');
  const beforeKill = acknowledged.size;

  streamer = await spawnNimbus(dir, config);
  try {
    await stream(streamer, 1000000, 200);  // the stream goes on after the restart
    assert.equal(acknowledged.size, beforeKill + 200);
    const seen = new Set();
    const subscription = pubsub.subscription('stream-sub');
    await withTimeout(new Promise((resolve, reject) => {
      subscription.on('error', reject);
      subscription.on('message', (message) => {
        message.ack();
        seen.add(JSON.parse(message.data.toString()).data.n);  // duplicates allowed: a set
        if ([...acknowledged].every((n) => seen.has(n))) resolve();
      });
    }), 60000, `all ${acknowledged.size} acknowledged publishes at the cloud`).catch((error) => {
      const missing = [...acknowledged].filter((n) => !seen.has(n));
      throw new Error(`${error.message}; missing ${missing.length}: ${missing.slice(0, 20)}\n${streamer.log()}`);
    }).finally(() => subscription.close());
  } finally {
    assert.equal(await streamer.stop(), 0, streamer.log());
  }
});

test('kill -9 of the cloud during a QoS 1 stream: every acknowledged publish arrives, commands resume', async () => {
  // A cloud of its own, killed and restarted on the same data directory and gRPC port; its
  // resources come from its nimbus.toml, so they are there from the first message on.
  const cloudDir = mkdtempSync(join(workDir, 'cloud-killed-'));
  const cloudConfig = `
[[pubsub.topics]]
name = "projects/${projectId}/topics/iot-sensor-data"

[[pubsub.subscriptions]]
name = "projects/${projectId}/subscriptions/sensor-sub"
topic = "projects/${projectId}/topics/iot-sensor-data"

[[pubsub.topics]]
name = "projects/${projectId}/topics/commands"

[[pubsub.subscriptions]]
name = "projects/${projectId}/subscriptions/commands-sub"
topic = "projects/${projectId}/topics/commands"
`;
  let far = await spawnNimbus(cloudDir, cloudConfig, '127.0.0.1:0');  // null while killed
  const grpcPort = far.port('grpc');
  const bridged = await spawnNimbus(mkdtempSync(join(workDir, 'edge-of-killed-')),
    bridgeConfig('far', `grpc://127.0.0.1:${grpcPort}`));
  const forwarded = async () => (await metric(bridged, 'nimbus_bridge_forwarded_total{bridge="far"}')) ?? 0;
  // Its own client, aimed at this cloud (not PUBSUB_EMULATOR_HOST's); first used after the restart.
  const farPubSub = new PubSub({ projectId, apiEndpoint: `127.0.0.1:${grpcPort}`, emulatorMode: true });

  // Numbered QoS 1 publishes at the edge, each awaited (its PUBACK: in the bridge's queue on
  // disk), until `stopping` or the connection ends.
  const acknowledged = new Set();
  let stopping = false;
  const streaming = (async () => {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridged.port('mqtt')}`,
      { clientId: 'streamer-cloud-killed', reconnectPeriod: 0 });
    const closed = new Promise((resolve) => client.once('close', () => resolve(false)));
    for (let n = 0; !stopping; n += 1) {
      const sent = client.publishAsync('sensor/stream', JSON.stringify({ n }), { qos: 1 }).then(() => true, () => false);
      if (!(await Promise.race([sent, closed]))) break;
      acknowledged.add(n);
    }
    client.end(true);
  })();
  try {
    await eventually(async () => (await forwarded()) >= 300, '300 publishes forwarded to the cloud');
    await far.kill9();
    far = null;
    const atKill = acknowledged.size;
    // The edge goes on acknowledging: its queue on disk holds them while the cloud is away.
    await eventually(() => acknowledged.size >= atKill + 200, '200 more publishes acknowledged with the cloud down');

    // The same port again; a socket of the killed process may hold it for a moment.
    const deadline = Date.now() + WAIT;
    for (;;) {
      try {
        far = await spawnNimbus(cloudDir, cloudConfig, `127.0.0.1:${grpcPort}`);
        break;
      } catch (error) {
        if (!error.message.startsWith('nimbus exited early') || Date.now() > deadline) throw error;
        await sleep(250);
      }
    }
    const atRestart = await forwarded();
    await eventually(async () => (await forwarded()) >= atRestart + 300, 'the edge forwards again after the restart');
    stopping = true;
    await withTimeout(streaming, WAIT, 'the stream ends');
    assert.ok(acknowledged.size > atKill + 200, `${acknowledged.size} acknowledged`);

    const seen = new Set();
    const subscription = farPubSub.subscription('sensor-sub');
    await withTimeout(new Promise((resolve, reject) => {
      subscription.on('error', reject);
      subscription.on('message', (message) => {
        message.ack();
        seen.add(JSON.parse(message.data.toString()).data.n);  // duplicates allowed: a set
        if ([...acknowledged].every((n) => seen.has(n))) resolve();
      });
    }), 60000, `all ${acknowledged.size} acknowledged publishes at the restarted cloud`).catch((error) => {
      const missing = [...acknowledged].filter((n) => !seen.has(n));
      throw new Error(`${error.message}; missing ${missing.length}: ${missing.slice(0, 20)}\n${bridged.log()}`);
    }).finally(() => subscription.close());

    // Downstream: the edge's bridge pulls the restarted cloud's commands-sub again.
    const device = await mosquittoSub(bridged, 'device/+/command');
    try {
      await farPubSub.topic('commands').publishMessage({
        json: { topic: 'device/pi-042/command', payload: { action: 'resume' } },
      });
      assert.deepEqual(await device.lines('device/pi-042/command', 1), ['{"action": "resume"}']);
    } finally {
      device.stop();
    }
  } finally {
    stopping = true;
    await withTimeout(streaming.catch(() => {}), WAIT, 'the stream ends');
    await farPubSub.close();
    assert.equal(await bridged.stop(), 0, bridged.log());
    if (far) assert.equal(await far.stop(), 0, far.log());
  }
});
