// Google's official Node client (@google-cloud/pubsub, over gRPC with PUBSUB_EMULATOR_HOST, as
// users point it at the emulator) against nimbus's Pub/Sub port: admin with paging, batched
// publish with attributes, subscription.on('message') with ack and nack (redelivery), ordering
// keys kept in order, flow control, dead letters after 5 attempts, a filter, exactly-once's
// ackWithResponse, and the port sharing (`GET /` -> Ok, REST on the same port as gRPC).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { PubSub } from '@google-cloud/pubsub';
import { startNimbus, withTimeout } from './nimbus.js';

let server;
let pubsub;
const projectId = 'node-test';

before(async () => {
  server = await startNimbus(['--grpc', '127.0.0.1:0']);
  process.env.PUBSUB_EMULATOR_HOST = `127.0.0.1:${server.port('grpc')}`;
  pubsub = new PubSub({ projectId });
});
after(async () => {
  await pubsub.close();
  assert.equal(await server.stop(), 0);
});

// One REST call on the Pub/Sub port (HTTP/1.1 beside gRPC).
function rest(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port('grpc'), path, method,
      headers: { 'content-type': 'application/json' } }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, data }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

// Collects `count` messages from `subscription`, acking (or handling) each with `onMessage`.
function receive(subscription, count, onMessage = (m) => m.ack(), ms = 15000) {
  return withTimeout(new Promise((resolve, reject) => {
    const got = [];
    subscription.on('error', reject);
    subscription.on('message', (message) => {
      got.push(message);
      onMessage(message, got.length);
      if (got.length === count) resolve(got);
    });
  }), ms, `${count} messages on ${subscription.name}`).finally(() => subscription.removeAllListeners());
}

test('GET / on the Pub/Sub port answers Ok, and REST is served there too', async () => {
  const root = await rest('GET', '/');
  assert.equal(root.data, 'Ok');
  const listed = await rest('GET', `/v1/projects/${projectId}/topics`);
  assert.equal(listed.status, 200);
});

test('topics and subscriptions: create, get, list with paging, delete', async () => {
  const [topic] = await pubsub.createTopic('admin-topic');
  assert.equal(topic.name, `projects/${projectId}/topics/admin-topic`);
  for (let i = 0; i < 5; i += 1) await pubsub.createTopic(`paged-topic-${i}`);
  const [topics] = await pubsub.getTopics({ pageSize: 2, autoPaginate: true });
  const names = topics.map((t) => t.name).filter((n) => n.includes('paged-topic-'));
  assert.equal(names.length, 5);
  const [subscription] = await topic.createSubscription('admin-sub', { ackDeadlineSeconds: 30 });
  const [metadata] = await subscription.getMetadata();
  assert.equal(metadata.ackDeadlineSeconds, 30);
  await assert.rejects(pubsub.createTopic('admin-topic'), (e) => e.code === 6);  // ALREADY_EXISTS
  await assert.rejects(pubsub.topic('missing-topic').getMetadata(), (e) => e.code === 5);  // NOT_FOUND
  await subscription.delete();
  await topic.delete();
  const [exists] = await topic.exists();
  assert.equal(exists, false);
});

test('publish a batch with attributes; subscription.on(message) receives and acks each', async () => {
  const [topic] = await pubsub.createTopic('readings');
  const [subscription] = await topic.createSubscription('readings-sub');
  const batched = pubsub.topic('readings', { batching: { maxMessages: 10, maxMilliseconds: 50 } });
  const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => batched.publishMessage({
    data: Buffer.from(JSON.stringify({ temperature: 20 + i })),
    attributes: { device: `pi-${i % 3}` },
  })));
  assert.equal(new Set(ids).size, 20);
  const got = await receive(subscription, 20);
  assert.deepEqual(new Set(got.map((m) => m.id)), new Set(ids));
  for (const m of got) {
    assert.match(m.attributes.device, /^pi-[0-2]$/);
    assert.equal(typeof JSON.parse(m.data.toString()).temperature, 'number');
  }
  await subscription.close();
  // Acked: nothing comes back (REST on the same port).
  const pulled = await rest('POST', `/v1/${subscription.name}:pull`, { maxMessages: 10, returnImmediately: true });
  assert.equal(pulled.status, 200);
  assert.deepEqual(JSON.parse(pulled.data), {});
});

test('a nacked message is redelivered', async () => {
  const [topic] = await pubsub.createTopic('nacked');
  const [subscription] = await topic.createSubscription('nacked-sub');
  const id = await topic.publishMessage({ data: Buffer.from('again') });
  const got = await receive(subscription, 2, (m, n) => (n === 1 ? m.nack() : m.ack()));
  assert.deepEqual(got.map((m) => m.id), [id, id]);
  await subscription.close();
});

test('ordering keys: each key delivered in publish order', async () => {
  const [topic] = await pubsub.createTopic('ordered');
  const [subscription] = await topic.createSubscription('ordered-sub', { enableMessageOrdering: true });
  const ordered = pubsub.topic('ordered', { messageOrdering: true });
  const keys = ['a', 'b', 'c'];
  const sends = [];
  for (let i = 0; i < 100; i += 1)
    for (const key of keys) sends.push(ordered.publishMessage({ data: Buffer.from(String(i)), orderingKey: key }));
  await Promise.all(sends);
  const got = await receive(subscription, 300);
  for (const key of keys) {
    const seen = got.filter((m) => m.orderingKey === key).map((m) => Number(m.data.toString()));
    assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => i), `key ${key}`);
  }
  await subscription.close();
});

test('flow control: at most maxMessages outstanding, all delivered', async () => {
  const [topic] = await pubsub.createTopic('flow');
  const [subscription] = await topic.createSubscription('flow-sub');
  await Promise.all(Array.from({ length: 50 }, (_, i) => topic.publishMessage({ data: Buffer.from(String(i)) })));
  const limited = pubsub.subscription('flow-sub', { flowControl: { maxMessages: 10, allowExcessMessages: false } });
  let outstanding = 0;
  let most = 0;
  const got = await receive(limited, 50, (m) => {
    outstanding += 1;
    most = Math.max(most, outstanding);
    setTimeout(() => { outstanding -= 1; m.ack(); }, 5);
  });
  assert.equal(new Set(got.map((m) => m.id)).size, 50);
  assert.ok(most <= 10, `${most} outstanding`);
  await limited.close();
});

test('dead letter after 5 delivery attempts, with deliveryAttempt counted', async () => {
  const [dlq] = await pubsub.createTopic('dead-letters');
  const [dlqSub] = await dlq.createSubscription('dead-letters-sub');
  const [topic] = await pubsub.createTopic('fragile');
  const [subscription] = await topic.createSubscription('fragile-sub', {
    deadLetterPolicy: { deadLetterTopic: dlq.name, maxDeliveryAttempts: 5 },
  });
  const id = await topic.publishMessage({ data: Buffer.from('poison') });
  const attempts = [];
  await receive(subscription, 5, (m) => { attempts.push(m.deliveryAttempt); m.nack(); });
  assert.deepEqual(attempts, [1, 2, 3, 4, 5]);
  await subscription.close();
  const [dead] = await receive(dlqSub, 1);
  assert.equal(dead.data.toString(), 'poison');
  assert.equal(dead.attributes.CloudPubSubDeadLetterSourceSubscription, 'fragile-sub');
  assert.notEqual(dead.id, id);  // a new message on the dead-letter topic
  await dlqSub.close();
});

test('a filtered subscription gets only matching messages', async () => {
  const [topic] = await pubsub.createTopic('mixed');
  const [subscription] = await topic.createSubscription('alerts-only', { filter: 'attributes.kind = "alert"' });
  await topic.publishMessage({ data: Buffer.from('ok'), attributes: { kind: 'reading' } });
  const alertId = await topic.publishMessage({ data: Buffer.from('hot'), attributes: { kind: 'alert' } });
  const [got] = await receive(subscription, 1);
  assert.equal(got.id, alertId);
  await subscription.close();
});

test('exactly-once: ackWithResponse confirms the ack', async () => {
  const [topic] = await pubsub.createTopic('once');
  const [subscription] = await topic.createSubscription('once-sub', { enableExactlyOnceDelivery: true });
  await topic.publishMessage({ data: Buffer.from('just once') });
  const responses = [];
  const [got] = await receive(subscription, 1, (m) => { responses.push(m.ackWithResponse()); });
  assert.equal(got.data.toString(), 'just once');
  assert.equal(await withTimeout(responses[0], 10000, 'ackWithResponse'), 'SUCCESS');
  await subscription.close();
});
