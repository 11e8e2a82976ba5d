// Alert notifications on a Pub/Sub topic (issue 15), received by Google's official client
// (@google-cloud/pubsub through PUBSUB_EMULATOR_HOST): a rule made over /api/alert-rules with a
// `pubsub` notification; readings from MQTT.js on the tutorial's sensor/data; the raise and the
// clear arrive as messages with the alert as JSON and type, severity, device_id and event as
// attributes, each event once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { PubSub } from '@google-cloud/pubsub';
import { startNimbus, withTimeout } from './nimbus.js';

const WAIT = 15000;
const projectId = 'nimbus';  // the server's default project, where alert topics live

let server;
let pubsub;

before(async () => {
  server = await startNimbus(['--grpc', '127.0.0.1:0']);
  process.env.PUBSUB_EMULATOR_HOST = `127.0.0.1:${server.port('grpc')}`;
  pubsub = new PubSub({ projectId });
});

after(async () => {
  await pubsub?.close();
  const code = await server?.stop();
  assert.equal(code, 0, 'nimbus exited uncleanly');
});

async function api(method, path, body) {
  const res = await fetch(`http://127.0.0.1:${server.port('http')}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

test('raise and clear reach a Pub/Sub subscription with attributes', async () => {
  const [topic] = await pubsub.createTopic('alerts');
  const [subscription] = await topic.createSubscription('alerts-watch');

  const created = await api('POST', '/api/alert-rules', {
    name: 'battery_low',
    severity: 'minor',
    selection: { field: 'battery', measurement: 'sensor_reading' },
    condition: { type: 'threshold', operator: '<', value: 20, clear: { operator: '>=', value: 25 } },
    notifications: [{ type: 'pubsub', topic: 'alerts' }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));

  const received = [];
  const twoEvents = new Promise((resolve, reject) => {
    subscription.on('message', (message) => {
      received.push(message);
      message.ack();
      if (received.length >= 2) resolve();
    });
    subscription.on('error', reject);
  });

  const client = mqtt.connect(`mqtt://127.0.0.1:${server.port('mqtt')}`, { clientId: 'node-pi' });
  await withTimeout(new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  }), WAIT, 'MQTT connect');
  const publish = (payload) => new Promise((resolve, reject) =>
    client.publish('sensor/data', JSON.stringify(payload), { qos: 1 },
      (err) => (err ? reject(err) : resolve())));
  await publish({ device_id: 'pi-42', battery: 12, temperature: 20 });
  await publish({ device_id: 'pi-42', battery: 30, temperature: 20 });
  await withTimeout(twoEvents, WAIT, 'the raise and the clear on the subscription');
  await subscription.close();
  client.end();

  const events = received.map((m) => ({ attributes: m.attributes, body: JSON.parse(m.data.toString()) }));
  events.sort((a, b) => a.body.alert.updated_at.localeCompare(b.body.alert.updated_at));
  assert.deepEqual(events.map((e) => e.attributes.event).sort(), ['cleared', 'raised']);
  for (const e of events) {
    assert.equal(e.attributes.type, 'battery_low');
    assert.equal(e.attributes.severity, 'minor');
    assert.equal(e.attributes.device_id, 'pi-42');
    assert.equal(e.body.alert.device_id, 'pi-42');
    assert.equal(e.body.alert.type, 'battery_low');
    assert.ok(e.body.event_id);
  }
  const raised = events.find((e) => e.attributes.event === 'raised');
  assert.equal(raised.body.alert.value, 12);
  assert.notEqual(events[0].body.event_id, events[1].body.event_id);

  const open = await api('GET', '/api/alerts?type=battery_low');
  assert.deepEqual(open.body, { alerts: [], count: 0 });
});
