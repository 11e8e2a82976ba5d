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

// Collects `count` messages from `subscription`, acking (or handling) each with `onMessage`,
// then closes it once its acks are sent.
// Only its own listeners are removed after: the client's 'newListener' hook must stay, or a
// later on('message') would not open the streams again.
function receive(subscription, count, onMessage = (m) => m.ack(), ms = 15000) {
  let onError;
  let onMessageEvent;
  return withTimeout(new Promise((resolve, reject) => {
    const got = [];
    onError = reject;
    onMessageEvent = (message) => {
      got.push(message);
      onMessage(message, got.length);
      if (got.length === count) resolve(got);
    };
    subscription.on('error', onError);
    subscription.on('message', onMessageEvent);
  }), ms, `${count} messages on ${subscription.name}`).finally(async () => {
    // Close first, awaited: removing the last 'message' listener closes the subscriber too,
    // but without waiting for its acks to be sent, and a later close() would not wait either.
    await subscription.close();
    subscription.removeListener('error', onError);
    subscription.removeListener('message', onMessageEvent);
  });
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

test('ordering keys: 3 keys x 1000 in publish order; a nack rewinds its key only', async () => {
  const [topic] = await pubsub.createTopic('ordered');
  const [subscription] = await topic.createSubscription('ordered-sub', { enableMessageOrdering: true });
  const ordered = pubsub.topic('ordered', { messageOrdering: true });
  const keys = ['a', 'b', 'c'];
  const perKey = 1000;
  const sends = [];
  for (let i = 0; i < perKey; i += 1)
    for (const key of keys) sends.push(ordered.publishMessage({ data: Buffer.from(String(i)), orderingKey: key }));
  await Promise.all(sends);
  // Every delivery in arrival order per key; key b's message 500 is nacked the first time.
  const deliveries = Object.fromEntries(keys.map((k) => [k, []]));
  const acked = Object.fromEntries(keys.map((k) => [k, new Set()]));
  const unseenSkips = [];  // values a delivery jumped over that were never acked
  let nacked = false;
  await withTimeout(new Promise((resolve, reject) => {
    subscription.on('error', reject);
    subscription.on('message', (m) => {
      const value = Number(m.data.toString());
      const seen = deliveries[m.orderingKey];
      const previous = seen.length === 0 ? -1 : seen[seen.length - 1];
      for (let skipped = previous + 1; skipped < value; skipped += 1)
        if (!acked[m.orderingKey].has(skipped)) unseenSkips.push(`${m.orderingKey}:${skipped}`);
      seen.push(value);
      if (m.orderingKey === 'b' && value === 500 && !nacked) {
        nacked = true;
        m.nack();
        return;
      }
      m.ack();
      acked[m.orderingKey].add(value);
      if (keys.every((k) => acked[k].size === perKey)) resolve();
    });
  }), 60000, 'ordered messages');
  subscription.removeAllListeners('message');
  // In order, except where a nack sends its key back to the nacked message; after that the key
  // goes on in order, passing over only what the client acked meanwhile.
  assert.deepEqual(unseenSkips, []);
  for (const key of keys) {
    const seen = deliveries[key];
    const rewinds = [];
    for (let i = 1; i < seen.length; i += 1) if (seen[i] <= seen[i - 1]) rewinds.push(seen[i]);
    assert.equal(seen[0], 0, `key ${key} starts at 0`);
    assert.deepEqual(rewinds, key === 'b' ? [500] : [], `key ${key} rewinds`);
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

// A local push endpoint: answers each request with the next status of `statuses` (the last one
// repeats), and resolves `reached(n)` once n requests came.
async function pushEndpoint(statuses) {
  const requests = [];
  const waiters = [];
  const endpoint = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      requests.push({ url: req.url, headers: req.headers, body });
      res.statusCode = statuses[Math.min(requests.length - 1, statuses.length - 1)];
      res.end();
      for (const w of waiters.filter((x) => requests.length >= x.n)) w.resolve();
    });
  });
  await new Promise((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${endpoint.address().port}/push`,
    requests,
    reached: (n, ms = 15000) => withTimeout(new Promise((resolve) => {
      if (requests.length >= n) return resolve();
      waiters.push({ n, resolve });
    }), ms, `${n} push requests`),
    close: () => new Promise((resolve) => endpoint.close(resolve)),
  };
}

// The subscription's counter from nimbus's /metrics.
async function metric(name, subscription) {
  const text = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port('http'), path: '/metrics' }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve(data));
    }).on('error', reject);
  });
  const line = text.split('\n').find((l) => l.startsWith(`${name}{subscription="${subscription}"`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

test('push: the wrapper POSTed to the endpoint, 500 and 500 retried, 204 acknowledges', async () => {
  const endpoint = await pushEndpoint([500, 500, 204]);
  try {
    const [topic] = await pubsub.createTopic('pushed');
    const [subscription] = await topic.createSubscription('pushed-sub', { pushConfig: { pushEndpoint: endpoint.url } });
    const id = await topic.publishMessage({ data: Buffer.from('{"t":21.5}'), attributes: { device: 'pi-1' } });
    await endpoint.reached(3);
    for (const r of endpoint.requests) {
      assert.equal(r.url, '/push');
      assert.equal(r.headers['content-type'], 'application/json');
      const body = JSON.parse(r.body);
      assert.equal(body.subscription, subscription.name);
      assert.equal(body.message.messageId, id);
      assert.equal(body.message.message_id, id);
      assert.equal(Buffer.from(body.message.data, 'base64').toString(), '{"t":21.5}');
      assert.deepEqual(body.message.attributes, { device: 'pi-1' });
      assert.match(body.message.publishTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    }
    // Acknowledged by the 204: acked once, nothing left, no fourth request.
    await withTimeout((async () => {
      while ((await metric('nimbus_pubsub_acked_total', subscription.name)) !== 1) await new Promise((r) => setImmediate(r));
    })(), 10000, 'the push ack');
    assert.equal(await metric('nimbus_pubsub_num_undelivered_messages', subscription.name), 0);
    assert.equal(endpoint.requests.length, 3);

    // Back to pull: an empty push config.
    await subscription.modifyPushConfig({});
    const next = await topic.publishMessage({ data: Buffer.from('pulled') });
    const [got] = await receive(subscription, 1);
    assert.equal(got.id, next);
    assert.equal(endpoint.requests.length, 3);
    await subscription.close();
  } finally {
    await endpoint.close();
  }
});

test('push with no_wrapper and write_metadata: the data as the body, attributes as headers', async () => {
  const endpoint = await pushEndpoint([200]);
  try {
    const [topic] = await pubsub.createTopic('pushed-raw');
    const [subscription] = await topic.createSubscription('pushed-raw-sub', {
      pushConfig: { pushEndpoint: endpoint.url, noWrapper: { writeMetadata: true } },
    });
    const id = await topic.publishMessage({ data: Buffer.from('raw bytes'), attributes: { device: 'pi-2' } });
    await endpoint.reached(1);
    const [r] = endpoint.requests;
    assert.equal(r.body, 'raw bytes');
    assert.equal(r.headers.device, 'pi-2');
    assert.equal(r.headers['x-goog-pubsub-message-id'], id);
    assert.equal(r.headers['x-goog-pubsub-subscription-name'], subscription.name);
  } finally {
    await endpoint.close();
  }
});

test('seek: to a time replays retained acked messages; to a snapshot restores its backlog', async () => {
  const [topic] = await pubsub.createTopic('replayed');
  const [subscription] = await topic.createSubscription('replayed-sub', { retainAckedMessages: true });
  const before = new Date(Date.now() - 1000);
  const first = await Promise.all(['a', 'b', 'c'].map((d) => topic.publishMessage({ data: Buffer.from(d) })));
  let got = await receive(subscription, 3);
  assert.deepEqual(got.map((m) => m.id).sort(), [...first].sort());
  await subscription.close();

  await subscription.seek(before);
  got = await receive(subscription, 3);
  assert.deepEqual(got.map((m) => m.id).sort(), [...first].sort());
  await subscription.close();

  const [snapshot] = await subscription.createSnapshot('replayed-snap');
  const later = await topic.publishMessage({ data: Buffer.from('d') });
  got = await receive(subscription, 1);
  assert.equal(got[0].id, later);
  await subscription.close();
  await subscription.seek(snapshot.name);
  got = await receive(subscription, 1);
  assert.equal(got[0].id, later);  // unacked again after the seek
  await subscription.close();
});

test('fallback: true (REST over HTTP/1.1) works on the same port', async () => {
  const { OAuth2Client } = await import('google-auth-library');
  // The REST transport asks its auth client for a token even for an emulator; loopback ignores it.
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: 'emulator', expiry_date: Date.now() + 3600e3 });
  const rest = new PubSub({ projectId, fallback: true, protocol: 'http',
    apiEndpoint: `127.0.0.1:${server.port('grpc')}`, authClient });
  try {
    const [topic] = await rest.createTopic('over-rest');
    const [subscription] = await topic.createSubscription('over-rest-sub');
    const id = await topic.publishMessage({ data: Buffer.from('via REST'), attributes: { a: '1' } });
    const [topics] = await rest.getTopics();
    assert.ok(topics.some((t) => t.name === topic.name));
    const [meta] = await subscription.getMetadata();
    assert.equal(meta.topic, topic.name);
    // Read it back over gRPC: the same service behind both transports.
    const [got] = await receive(pubsub.subscription('over-rest-sub'), 1);
    assert.equal(got.id, id);
    assert.equal(got.data.toString(), 'via REST');
    await pubsub.subscription('over-rest-sub').close();
  } finally {
    await rest.close();
  }
});
