// The seed tutorial's Google Cloud classes (../shared/seed/: §3.3 GCPPubSubClient and
// GCPPubSubSubscriber, §4.1 MQTTBridge, §4.2 BidirectionalBridge, §6 IoTPipeline with its
// handlers) ported line for line to Node -- @google-cloud/pubsub for google.cloud.pubsub_v1,
// MQTT.js for paho-mqtt, names in camelCase -- and driven against one nimbus: the Pub/Sub port
// through PUBSUB_EMULATOR_HOST (with PUBSUB_PROJECT_ID, as `gcloud beta emulators pubsub
// env-init` sets them), MQTT on port 1883, which the seed hard-codes, of a random loopback
// address (127.a.b.c: all of 127/8 is loopback on Linux), so parallel suites do not collide.
//
// The seed makes its topics and subscriptions with gcloud (§3.2, see
// test_pubsub_seed_gcloud.py); here PubSub#createTopic / Topic#createSubscription do it.
// The Python classes lean on things Node does differently, each kept as close as it goes:
// - pubsub_v1.PublisherClient().publish(path, data, **attrs).result() is
//   `await new PubSub().topic(path).publishMessage({ data, attributes })`;
// - SubscriberClient().pull/acknowledge are the GAPIC calls: Node's v1.SubscriberClient, made
//   from PubSub#getClientConfig() (which carries the emulator settings);
//   SubscriberClient().subscribe(path, callback) is PubSub#subscription(path).on('message'),
//   the streaming pull future's cancel() is Subscription#close();
// - a paho client made in __init__ and connected in start() is MQTT.js with manualConnect,
//   connected in start(); loop_start() is nothing (MQTT.js runs on the event loop);
//   loop_stop() + disconnect() is end();
// - Python's run() loops (while True: sleep until KeyboardInterrupt) are not ported;
// - the classes get a close() for their gRPC channels (Python lets the process exit close
//   them; Node would stay up).
// Every wait is an event or a promise bounded by withTimeout; the one poll (the bridge's
// statistics, a plain object the seed updates after an await) has a deadline too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { format } from 'node:util';
import mqtt from 'mqtt';
import { PubSub, v1 } from '@google-cloud/pubsub';
import { withTimeout } from './nimbus.js';

const WAIT = 15000;
const projectId = 'seed-node';

// ============================================================== §3.3 GCP Pub/Sub 클라이언트

// 인증 설정
process.env.GOOGLE_APPLICATION_CREDENTIALS = 'gcp-credentials.json';

/** GCP Pub/Sub 클라이언트 */
class GCPPubSubClient {
  constructor(projectId, topicId) {
    this.projectId = projectId;
    this.topicId = topicId;
    this.topicPath = `projects/${projectId}/topics/${topicId}`;

    this.publisher = new PubSub();
  }

  /** 메시지 발행 */
  async publish(data, attributes = {}) {
    const message = Buffer.from(JSON.stringify(data), 'utf-8');

    const future = this.publisher.topic(this.topicPath).publishMessage({
      data: message,
      attributes,
    });

    const messageId = await future;
    console.log(`발행됨: ${messageId}`);
    return messageId;
  }

  /** 배치 발행 */
  async publishBatch(messages) {
    const futures = [];

    for (const data of messages) {
      const message = Buffer.from(JSON.stringify(data), 'utf-8');
      const future = this.publisher.topic(this.topicPath).publishMessage({ data: message });
      futures.push(future);
    }

    // 모든 발행 완료 대기
    const results = await Promise.all(futures);
    console.log(`배치 발행 완료: ${results.length}개`);
    return results;
  }

  async close() { await this.publisher.close(); }
}

/** GCP Pub/Sub 구독자 */
class GCPPubSubSubscriber {
  constructor(projectId, subscriptionId) {
    this.projectId = projectId;
    this.subscriptionId = subscriptionId;
    this.subscriptionPath = `projects/${projectId}/subscriptions/${subscriptionId}`;

    this.subscriber = new PubSub();
  }

  /** 메시지 풀 */
  async pull(maxMessages = 10) {
    this.syncSubscriber ??= new v1.SubscriberClient(await this.subscriber.getClientConfig());
    const [response] = await this.syncSubscriber.pull({
      subscription: this.subscriptionPath,
      maxMessages,
    });

    const messages = [];
    const ackIds = [];

    for (const msg of response.receivedMessages) {
      const data = JSON.parse(Buffer.from(msg.message.data).toString('utf-8'));
      messages.push({
        data,
        attributes: { ...msg.message.attributes },
        message_id: msg.message.messageId,
      });
      ackIds.push(msg.ackId);
    }

    // ACK 전송
    if (ackIds.length) {
      await this.syncSubscriber.acknowledge({
        subscription: this.subscriptionPath,
        ackIds,
      });
    }

    return messages;
  }

  /** 스트리밍 구독 */
  subscribe(callback) {
    const onMessage = (message) => {
      const data = JSON.parse(message.data.toString('utf-8'));
      callback(data, message.attributes);
      message.ack();
    };

    const streamingPull = this.subscriber.subscription(this.subscriptionPath);
    streamingPull.on('message', onMessage);

    console.log(`구독 시작: ${this.subscriptionPath}`);
    return streamingPull;
  }

  async close() {
    await this.syncSubscriber?.close();
    await this.subscriber.close();
  }
}

// ============================================================== §4.1 로컬-클라우드 브릿지

/** 로컬 MQTT를 클라우드로 브릿지 */
class MQTTBridge {
  constructor(localBroker, gcpProject, gcpTopic) {
    // 로컬 MQTT 클라이언트
    this.localClient = mqtt.connect(`mqtt://${localBroker}:1883`, { clientId: 'mqtt_bridge', manualConnect: true });
    this.localClient.on('connect', (connack) => this._onLocalConnect(this.localClient, null, connack,
      connack.returnCode ?? 0));
    this.localClient.on('message', (topic, payload) => this._onLocalMessage(this.localClient, null, { topic, payload }));

    this.localBroker = localBroker;

    // GCP Pub/Sub
    this.publisher = new PubSub();
    this.topicPath = `projects/${gcpProject}/topics/${gcpTopic}`;

    // 브릿지 설정
    this.topicMapping = {
      'sensor/#': true,
      'device/+/status': true,
    };

    this.stats = {
      messages_received: 0,
      messages_forwarded: 0,
      errors: 0,
    };
  }

  _onLocalConnect(client, userdata, flags, rc) {
    if (rc === 0) {
      console.log('로컬 브로커 연결됨');
      // 토픽 구독
      for (const topic of Object.keys(this.topicMapping)) {
        client.subscribe(topic);
        console.log(`구독: ${topic}`);
      }
    }
  }

  /** 로컬 메시지 수신 -> 클라우드로 전달 */
  async _onLocalMessage(client, userdata, msg) {
    this.stats.messages_received += 1;

    try {
      // 메시지 파싱
      const payload = msg.payload.toString('utf-8');

      let data;
      try {
        data = JSON.parse(payload);
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
        data = { raw: payload };
      }

      // 메타데이터 추가
      const cloudMessage = {
        source_topic: msg.topic,
        data,
        timestamp: Date.now() / 1000,
      };

      // 클라우드로 발행
      await this._forwardToCloud(cloudMessage, msg.topic);
      this.stats.messages_forwarded += 1;
    } catch (e) {
      console.log(`브릿지 오류: ${e.message}`);
      this.stats.errors += 1;
    }
  }

  /** 클라우드로 메시지 전달 */
  async _forwardToCloud(message, sourceTopic) {
    const data = Buffer.from(JSON.stringify(message), 'utf-8');

    const future = this.publisher.topic(this.topicPath).publishMessage({
      data,
      attributes: { source_topic: sourceTopic },
    });
    await future; // 발행 완료 대기
  }

  /** 브릿지 시작 */
  start() {
    console.log(`MQTT 브릿지 시작: ${this.localBroker} -> GCP`);

    this.localClient.connect();
  }

  /** 브릿지 중지 */
  async stop() {
    await this.localClient.endAsync();

    console.log('\n브릿지 통계:');
    console.log(`  수신: ${this.stats.messages_received}`);
    console.log(`  전달: ${this.stats.messages_forwarded}`);
    console.log(`  오류: ${this.stats.errors}`);
  }

  async close() { await this.publisher.close(); }
}

// ============================================================== §4.2 양방향 브릿지

/** 양방향 브릿지 */
class BidirectionalBridge {
  constructor(localBroker, gcpProject, upTopic, downTopic, downSub) {
    // 로컬 MQTT
    this.localClient = mqtt.connect(`mqtt://${localBroker}:1883`, { manualConnect: true });
    this.localBroker = localBroker;

    // GCP Pub/Sub
    this.gcpProject = gcpProject;
    this.publisher = new PubSub();
    this.subscriber = new PubSub();

    this.upTopicPath = `projects/${gcpProject}/topics/${upTopic}`;
    this.downSubPath = `projects/${gcpProject}/subscriptions/${downSub}`;
  }

  /** 로컬 -> 클라우드 */
  _onLocalMessage(client, userdata, msg) {
    try {
      const payload = JSON.parse(msg.payload.toString());
      const data = Buffer.from(JSON.stringify({
        topic: msg.topic,
        payload,
      }));

      // Not awaited, like the Python future nobody waits on (a failure would surface here as
      // an unhandled rejection, failing the suite).
      this.publisher.topic(this.upTopicPath).publishMessage({ data });
      console.log(`[UP] ${msg.topic}`);
    } catch (e) {
      console.log(`업스트림 오류: ${e.message}`);
    }
  }

  /** 클라우드 -> 로컬 */
  _onCloudMessage(message) {
    try {
      const data = JSON.parse(message.data.toString());
      const topic = 'topic' in data ? data.topic : 'command';
      const payload = 'payload' in data ? data.payload : {};

      this.localClient.publish(topic, JSON.stringify(payload));
      console.log(`[DOWN] ${topic}`);

      message.ack();
    } catch (e) {
      console.log(`다운스트림 오류: ${e.message}`);
      message.nack();
    }
  }

  /** 브릿지 시작 */
  start() {
    // 로컬 MQTT 시작
    this.localClient.on('message', (topic, payload) => this._onLocalMessage(this.localClient, null, { topic, payload }));
    this.localClient.connect();
    this.localClient.subscribe('sensor/#');

    // 클라우드 구독 시작
    this.streamingPull = this.subscriber.subscription(this.downSubPath);
    this.streamingPull.on('message', (message) => this._onCloudMessage(message));

    console.log('양방향 브릿지 시작');
  }

  /** 브릿지 중지 */
  async stop() {
    await this.streamingPull.close();
    await this.localClient.endAsync();
  }

  async close() {
    await this.publisher.close();
    await this.subscriber.close();
  }
}

// ============================================================== §6 종합 IoT 파이프라인

class IoTMessage {
  constructor(deviceId, data, timestamp, source) {
    this.deviceId = deviceId;
    this.data = data;
    this.timestamp = timestamp;
    this.source = source;
  }
}

/** IoT 데이터 파이프라인 */
class IoTPipeline {
  constructor(config) {
    this.config = config;
    this.handlers = [];

    // 로컬 MQTT (MQTT.js takes the broker when the client is made; paho at connect())
    this.mqttClient = mqtt.connect(`mqtt://${config.mqtt_broker ?? 'localhost'}:1883`, { manualConnect: true });
    this.mqttClient.on('message', (topic, payload) => this._onMqttMessage(this.mqttClient, null, { topic, payload }));

    // 클라우드 (옵션)
    if (config.gcp_enabled) {
      this.publisher = new PubSub();
    }
  }

  /** 메시지 핸들러 추가 */
  addHandler(handler) {
    this.handlers.push(handler);
  }

  /** MQTT 메시지 처리 */
  _onMqttMessage(client, userdata, msg) {
    try {
      const payload = JSON.parse(msg.payload.toString());

      const message = new IoTMessage(
        'device_id' in payload ? payload.device_id : 'unknown',
        payload,
        new Date(),
        msg.topic,
      );

      // 핸들러 실행
      for (const handler of this.handlers) {
        try {
          handler(message);
        } catch (e) {
          console.log(`핸들러 오류: ${e.message}`);
        }
      }
    } catch (e) {
      console.log(`메시지 처리 오류: ${e.message}`);
    }
  }

  /** 파이프라인 시작 */
  start() {
    const topics = this.config.mqtt_topics ?? ['sensor/#'];

    this.mqttClient.connect();

    for (const topic of topics) {
      this.mqttClient.subscribe(topic);
      console.log(`구독: ${topic}`);
    }

    console.log('IoT 파이프라인 시작됨');
  }

  /** 파이프라인 중지 */
  async stop() {
    await this.mqttClient.endAsync();
  }

  async close() { await this.publisher?.close(); }
}

// 핸들러 예시
/** 로깅 핸들러 */
function logHandler(message) {
  console.log(`[${message.timestamp.toISOString()}] ${message.deviceId}: ${JSON.stringify(message.data)}`);
}

/** 알림 핸들러 */
function alertHandler(message) {
  const temp = message.data.temperature;
  if (temp && temp > 35) {
    console.log(`[ALERT] 고온 감지: ${message.deviceId} = ${temp}°C`);
  }
}

/** 클라우드 전송 핸들러 */
function cloudHandler(message, publisher, topicPath) {
  const data = Buffer.from(JSON.stringify({
    device_id: message.deviceId,
    data: message.data,
    timestamp: message.timestamp.toISOString(),
  }));

  publisher.topic(topicPath).publishMessage({ data });
}

// ============================================================== the harness

let server;
let admin;
const printed = [];
const consoleLog = console.log;

// nimbus with MQTT on port 1883 of a random 127.a.b.c and Pub/Sub on 127.0.0.1:0; another
// address if that one is taken.
async function startSeedNimbus() {
  const failures = [];
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const r = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
    const mqttHost = `127.${r(1, 254)}.${r(0, 255)}.${r(1, 254)}`;
    const dataDir = mkdtempSync(join(tmpdir(), 'nimbus-node-seed-'));
    const child = spawn(process.env.NIMBUS_BIN, ['serve', '--data-dir', dataDir,
      '--mqtt', `${mqttHost}:1883`, '--mqtts', '127.0.0.1:0', '--http', '127.0.0.1:0',
      '--https', '127.0.0.1:0', '--grpc', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (chunk) => { log += chunk; });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const endpointsFile = join(dataDir, 'endpoints.json');
    const deadline = Date.now() + 20000;
    while (!existsSync(endpointsFile) && child.exitCode === null && Date.now() < deadline) await sleep(50);
    if (existsSync(endpointsFile)) {
      const endpoints = JSON.parse(readFileSync(endpointsFile, 'utf8'));
      return {
        mqttHost,
        pubsubPort: Number(endpoints.grpc.split(':').pop()),
        log: () => log,
        async stop() {
          if (child.exitCode === null) { child.kill('SIGTERM'); await exited; }
          rmSync(dataDir, { recursive: true, force: true });
          return child.exitCode;
        },
      };
    }
    if (child.exitCode === null) { child.kill('SIGKILL'); await exited; }
    rmSync(dataDir, { recursive: true, force: true });
    failures.push(`${mqttHost}:1883: ${log}`);
  }
  throw new Error(`nimbus did not start:\n${failures.join('\n')}`);
}

before(async () => {
  assert.ok(process.env.NIMBUS_BIN, 'NIMBUS_BIN is not set');
  server = await startSeedNimbus();
  process.env.PUBSUB_EMULATOR_HOST = `127.0.0.1:${server.pubsubPort}`;
  process.env.PUBSUB_PROJECT_ID = projectId;
  admin = new PubSub();
  // What the seed prints is part of its behaviour: keep it (the suite's output stays TAP).
  console.log = (...args) => { printed.push(format(...args)); };
});
after(async () => {
  console.log = consoleLog;
  await admin?.close();
  if (server) assert.equal(await server.stop(), 0, server.log());
});

// Lines the seed printed from now on.
function printedFrom() {
  const mark = printed.length;
  return () => printed.slice(mark).join('\n').split('\n');
}

// §3.2's `gcloud pubsub topics create` / `subscriptions create`, done with the library.
async function createTopic(topicId, ...subscriptionIds) {
  const [topic] = await admin.createTopic(topicId);
  for (const sub of subscriptionIds) await topic.createSubscription(sub);
}

// The seed's pull() (which acks) until `done(messages so far)`.
async function pullUntil(subscriber, done, what) {
  let stopped = false;
  const loop = (async () => {
    const got = [];
    while (!done(got) && !stopped) got.push(...await subscriber.pull(10));
    return got;
  })();
  try {
    return await withTimeout(loop, WAIT, `${what} pulled`);
  } finally {
    stopped = true;
  }
}

// Resolves with the granted QoS lists of the next `n` SUBACKs a seed MQTT.js client receives.
function subacks(client, n) {
  return withTimeout(new Promise((resolve) => {
    const granted = [];
    const onPacket = (packet) => {
      if (packet.cmd !== 'suback') return;
      granted.push(packet.granted);
      if (granted.length === n) { client.removeListener('packetreceive', onPacket); resolve(granted); }
    };
    client.on('packetreceive', onPacket);
  }), WAIT, `${n} SUBACKs`);
}

// A device on the same broker: QoS 1 publishes (resolved on PUBACK), messages kept.
async function device(clientId) {
  const client = await mqtt.connectAsync(`mqtt://${server.mqttHost}:1883`, { clientId, reconnectPeriod: 0 });
  const received = [];
  let waiter = null;
  client.on('message', (topic, payload) => {
    received.push([topic, payload.toString()]);
    if (waiter && received.length >= waiter.n) waiter.resolve(received.slice(0, waiter.n));
  });
  return {
    publish: (topic, payload) => client.publishAsync(topic, payload, { qos: 1 }),
    subscribe: (filter) => client.subscribeAsync(filter, { qos: 1 }),
    receive: (n, what) => withTimeout(new Promise((resolve) => {
      waiter = { n, resolve };
      if (received.length >= n) resolve(received.slice(0, n));
    }), WAIT, what),
    end: () => client.endAsync(),
  };
}

// A returnImmediately pull over REST on the Pub/Sub port.
function restPull(subscription) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.pubsubPort, method: 'POST',
      path: `/v1/${subscription}:pull`, headers: { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ maxMessages: 10, returnImmediately: true }));
  });
}

// ============================================================== the tests

test('§3.3: publish with attributes, publishBatch, pull, subscribe with a callback', async () => {
  await createTopic('iot-sensor-data', 'iot-sensor-sub');
  const lines = printedFrom();
  const publisher = new GCPPubSubClient(projectId, 'iot-sensor-data');
  const subscriber = new GCPPubSubSubscriber(projectId, 'iot-sensor-sub');
  try {
    // The seed's example (without its one-second pauses).
    const ids = [];
    for (let i = 0; i < 5; i += 1) {
      const data = { device_id: 'pi-001', temperature: 25.5 + i * 0.5, timestamp: Math.floor(Date.now() / 1000) };
      ids.push(await publisher.publish(data, { device_type: 'raspberry_pi' }));
    }
    const batchIds = await publisher.publishBatch([0, 1, 2].map((i) => ({ device_id: `esp32-${i}`, humidity: 60 + i })));
    assert.equal(new Set([...ids, ...batchIds]).size, 8);
    for (const id of [...ids, ...batchIds]) assert.match(id, /^\d+$/);

    const pulled = await pullUntil(subscriber, (got) => got.length >= 8, '8 messages');
    assert.equal(pulled.length, 8);
    const byId = new Map(pulled.map((m) => [m.message_id, m]));
    assert.deepEqual(new Set(byId.keys()), new Set([...ids, ...batchIds]));
    ids.forEach((id, i) => {
      const m = byId.get(id);
      assert.deepEqual(m.attributes, { device_type: 'raspberry_pi' });
      assert.equal(m.data.device_id, 'pi-001');
      assert.equal(m.data.temperature, 25.5 + i * 0.5);
      assert.ok(Math.abs(m.data.timestamp - Date.now() / 1000) < 300);
    });
    batchIds.forEach((id, i) => {
      assert.deepEqual(byId.get(id),
        { data: { device_id: `esp32-${i}`, humidity: 60 + i }, attributes: {}, message_id: id });
    });
    // pull() acknowledged them: nothing left.
    assert.deepEqual(await restPull(subscriber.subscriptionPath), { status: 200, body: {} });

    // Streaming: three readings through the seed's callback.
    const streamed = [];
    let streamingPull;
    const three = withTimeout(new Promise((resolve, reject) => {
      streamingPull = subscriber.subscribe((data, attributes) => {
        streamed.push({ data, attributes: { ...attributes } });
        if (streamed.length === 3) resolve();
      });
      streamingPull.on('error', reject);
    }), WAIT, '3 streamed messages');
    const streamIds = [];
    for (let i = 0; i < 3; i += 1) {
      streamIds.push(await publisher.publish({ device_id: 'pi-002', seq: i }, { device_type: 'esp32', seq: String(i) }));
    }
    try {
      await three;
    } finally {
      await streamingPull.close();
    }
    streamed.sort((a, b) => a.data.seq - b.data.seq);
    assert.deepEqual(streamed, [0, 1, 2].map((i) => ({
      data: { device_id: 'pi-002', seq: i },
      attributes: { device_type: 'esp32', seq: String(i) },
    })));

    const out = lines();
    for (const id of [...ids, ...streamIds]) assert.ok(out.includes(`발행됨: ${id}`), out.join('\n'));
    assert.ok(out.includes('배치 발행 완료: 3개'), out.join('\n'));
    assert.ok(out.includes(`구독 시작: projects/${projectId}/subscriptions/iot-sensor-sub`), out.join('\n'));
  } finally {
    await publisher.close();
    await subscriber.close();
  }
});

test('§4.1: MQTTBridge forwards sensor/# and device/+/status with a source_topic attribute', async () => {
  await createTopic('bridge-data', 'bridge-sub');
  const lines = printedFrom();
  const bridge = new MQTTBridge(server.mqttHost, projectId, 'bridge-data');
  const subscriber = new GCPPubSubSubscriber(projectId, 'bridge-sub');
  const sensor = await device('seed-sensor');
  try {
    const granted = subacks(bridge.localClient, 2);
    const before = Date.now() / 1000;
    bridge.start();
    assert.deepEqual(await granted, [[0], [0]]);

    await sensor.publish('sensor/room1/temp', JSON.stringify({ device_id: 'pi-001', temperature: 22.5 }));
    await sensor.publish('device/pi-001/status', 'online'); // not JSON: forwarded as raw
    await sensor.publish('actuator/fan', JSON.stringify({ on: true })); // neither filter
    await sensor.publish('sensor/marker', JSON.stringify({ last: true }));

    // Each message is its own publish (a Topic object per call, as the seed's publish(path)):
    // they may come in any order.
    const forwarded = ['sensor/room1/temp', 'device/pi-001/status', 'sensor/marker'];
    const pulled = await pullUntil(subscriber,
      (got) => forwarded.every((t) => got.some((m) => m.attributes.source_topic === t)), 'the three forwarded');
    const expected = {
      'sensor/room1/temp': { device_id: 'pi-001', temperature: 22.5 },
      'device/pi-001/status': { raw: 'online' },
      'sensor/marker': { last: true },
    };
    assert.equal(pulled.length, 3, JSON.stringify(pulled));
    for (const m of pulled) {
      const topic = m.attributes.source_topic;
      assert.ok(topic in expected, topic);
      assert.deepEqual(m.attributes, { source_topic: topic });
      assert.equal(m.data.source_topic, topic);
      assert.deepEqual(m.data.data, expected[topic]);
      assert.ok(m.data.timestamp >= before - 1 && m.data.timestamp <= Date.now() / 1000 + 1);
      delete expected[topic];
    }
    // The statistics move after each publish's await: a bounded poll.
    await withTimeout((async () => { while (bridge.stats.messages_forwarded < 3) await sleep(5); })(), WAIT, 'stats');
    await bridge.stop();
    assert.deepEqual(bridge.stats, { messages_received: 3, messages_forwarded: 3, errors: 0 });
    const out = lines();
    for (const line of [`MQTT 브릿지 시작: ${server.mqttHost} -> GCP`, '로컬 브로커 연결됨', '구독: sensor/#',
      '구독: device/+/status', '브릿지 통계:', '  수신: 3', '  전달: 3', '  오류: 0']) {
      assert.ok(out.includes(line), `${line} in\n${out.join('\n')}`);
    }
  } finally {
    await sensor.end();
    await bridge.localClient.endAsync();
    await bridge.close();
    await subscriber.close();
  }
});

test('§4.2: BidirectionalBridge up, down (topic or "command") and down-then-up again', async () => {
  await createTopic('bidi-up', 'bidi-up-sub');
  await createTopic('bidi-down', 'bidi-down-sub');
  const lines = printedFrom();
  const bridge = new BidirectionalBridge(server.mqttHost, projectId, 'bidi-up', 'bidi-down', 'bidi-down-sub');
  const up = new GCPPubSubSubscriber(projectId, 'bidi-up-sub');
  const down = new GCPPubSubClient(projectId, 'bidi-down');
  const actuator = await device('seed-actuator');
  try {
    await actuator.subscribe('device/+/command');
    await actuator.subscribe('command');
    const granted = subacks(bridge.localClient, 1);
    bridge.start();
    assert.deepEqual(await granted, [[0]]);
    const streamError = new Promise((_, reject) => bridge.streamingPull.on('error', reject));
    streamError.catch(() => {}); // raced below; not unhandled meanwhile

    // Up.
    await actuator.publish('sensor/room2', JSON.stringify({ temperature: 23.1 }));
    await actuator.publish('sensor/bad', 'not json'); // reported, not sent
    await actuator.publish('sensor/marker', JSON.stringify({ n: 1 }));
    const upstream = await pullUntil(up,
      (got) => ['sensor/room2', 'sensor/marker'].every((t) => got.some((m) => m.data.topic === t)), 'the two sent up');
    assert.deepEqual(upstream.map((m) => m.data).sort((a, b) => a.topic.localeCompare(b.topic)),
      [{ topic: 'sensor/marker', payload: { n: 1 } }, { topic: 'sensor/room2', payload: { temperature: 23.1 } }]);
    for (const m of upstream) assert.deepEqual(m.attributes, {});

    // Down, through the seed's publisher class.
    await down.publish({ topic: 'device/pi-001/command', payload: { led: 'on' } }, { origin: 'cloud' });
    await down.publish({ payload: { reboot: true } }); // no topic: "command"
    const downstream = await Promise.race([actuator.receive(2, 'two commands over MQTT'), streamError]);
    assert.deepEqual(downstream.map(([t, p]) => [t, JSON.parse(p)]).sort(),
      [['command', { reboot: true }], ['device/pi-001/command', { led: 'on' }]]);

    // Down to sensor/echo, which the bridge subscribes to: back up again.
    await down.publish({ topic: 'sensor/echo', payload: { from: 'cloud' } });
    const echoed = await pullUntil(up, (got) => got.length >= 1, 'the echo');
    assert.deepEqual(echoed.map((m) => m.data), [{ topic: 'sensor/echo', payload: { from: 'cloud' } }]);

    await bridge.stop();
    const out = lines();
    for (const line of ['양방향 브릿지 시작', '[UP] sensor/room2', '[UP] sensor/marker',
      '[DOWN] device/pi-001/command', '[DOWN] command', '[DOWN] sensor/echo', '[UP] sensor/echo']) {
      assert.ok(out.includes(line), `${line} in\n${out.join('\n')}`);
    }
    assert.deepEqual(out.filter((l) => l.startsWith('업스트림 오류')).length, 1, out.join('\n'));
    assert.deepEqual(out.filter((l) => l.startsWith('다운스트림 오류')), []);
    assert.ok(!out.includes('[UP] sensor/bad'));
  } finally {
    await actuator.end();
    await bridge.streamingPull?.close();
    await bridge.localClient.endAsync();
    await bridge.close();
    await up.close();
    await down.close();
  }
});

test('§6: IoTPipeline with gcp_enabled: log, alert and cloud handlers, pulled back', async () => {
  await createTopic('pipeline-data', 'pipeline-sub');
  const lines = printedFrom();
  const topicPath = `projects/${projectId}/topics/pipeline-data`;
  const config = {
    mqtt_broker: server.mqttHost,
    mqtt_topics: ['sensor/#', 'device/+/status'],
    gcp_enabled: true,
  };
  const pipeline = new IoTPipeline(config);
  pipeline.addHandler(logHandler);
  pipeline.addHandler(alertHandler);
  pipeline.addHandler((message) => cloudHandler(message, pipeline.publisher, topicPath));
  const subscriber = new GCPPubSubSubscriber(projectId, 'pipeline-sub');
  const sensor = await device('seed-pipeline-sensor');
  try {
    const granted = subacks(pipeline.mqttClient, 2);
    const before = Date.now();
    pipeline.start();
    assert.deepEqual(await granted, [[0], [0]]);

    await sensor.publish('sensor/pi-001/data', JSON.stringify({ device_id: 'pi-001', temperature: 24.0, humidity: 40 }));
    await sensor.publish('sensor/pi-002/data', JSON.stringify({ device_id: 'pi-002', temperature: 36.6 }));
    await sensor.publish('actuator/fan', JSON.stringify({ device_id: 'fan-1' })); // not subscribed
    await sensor.publish('sensor/garbage', 'not json'); // processing error
    await sensor.publish('device/pi-003/status', JSON.stringify({ status: 'online' }));

    const pulled = await pullUntil(subscriber,
      (got) => ['pi-001', 'pi-002', 'unknown'].every((d) => got.some((m) => m.data.device_id === d)), 'the three readings');
    assert.equal(pulled.length, 3, JSON.stringify(pulled));
    const byDevice = Object.fromEntries(pulled.map((m) => [m.data.device_id, m]));
    assert.deepEqual(byDevice['pi-001'].data.data, { device_id: 'pi-001', temperature: 24.0, humidity: 40 });
    assert.deepEqual(byDevice['pi-002'].data.data, { device_id: 'pi-002', temperature: 36.6 });
    assert.deepEqual(byDevice.unknown.data.data, { status: 'online' });
    for (const m of pulled) {
      assert.deepEqual(m.attributes, {});
      assert.deepEqual(Object.keys(m.data).sort(), ['data', 'device_id', 'timestamp']);
      const at = Date.parse(m.data.timestamp);
      assert.ok(at >= before - 1000 && at <= Date.now() + 1000, m.data.timestamp);
    }
    await pipeline.stop();

    const out = lines();
    for (const line of ['구독: sensor/#', '구독: device/+/status', 'IoT 파이프라인 시작됨']) {
      assert.ok(out.includes(line), `${line} in\n${out.join('\n')}`);
    }
    const logged = out.filter((l) => /^\[\d{4}-/.test(l)).map((l) => l.split('] ')[1]);
    assert.deepEqual(logged, [
      'pi-001: {"device_id":"pi-001","temperature":24,"humidity":40}',
      'pi-002: {"device_id":"pi-002","temperature":36.6}',
      'unknown: {"status":"online"}',
    ]);
    assert.deepEqual(out.filter((l) => l.startsWith('[ALERT]')), ['[ALERT] 고온 감지: pi-002 = 36.6°C']);
    assert.equal(out.filter((l) => l.startsWith('메시지 처리 오류')).length, 1, out.join('\n'));
    assert.ok(!out.some((l) => l.includes('fan-1')));
  } finally {
    await sensor.end();
    await pipeline.mqttClient.endAsync();
    await pipeline.close();
    await subscriber.close();
  }
});
