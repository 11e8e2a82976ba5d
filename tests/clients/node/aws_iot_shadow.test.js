// Device shadows the way the AWS samples use them: a device on the AWS IoT Device SDK v2 for
// JavaScript (npm aws-iot-device-sdk-v2, its iotshadow.IotShadowClient over mutual TLS) and an
// application on the AWS SDK for JavaScript v3 (@aws-sdk/client-iot-data-plane, SigV4 with the keys
// in <data>/credentials against the HTTP listener). The app sets desired, the device gets the delta,
// reports, and both read the shadow back; the same for a named shadow, over MQTT 5 and MQTT 3.1.1.
//
// Notes for whoever debugs this:
// - IotShadowClient serializes the whole request object: every get/update payload carries
//   "thingName" (and "shadowName" for named shadows) next to state/clientToken/version, e.g.
//   {"thingName":"T","state":{"reported":{...}},"clientToken":"..."}; AWS ignores those keys, the
//   server must too.
// - With MQTT 5 the shadow client dispatches replies by exact topic name, one SUBSCRIBE per topic.
// - The data-plane client POSTs update bodies as application/octet-stream.
// - UpdateThingShadow over HTTP also publishes update/accepted, update/delta and update/documents on
//   MQTT, so the device's update/accepted queue holds the app's echo too: replies are matched by
//   clientToken.
// - aws-crt's MQTT 5 client keeps the Node event loop alive after close()
//   (awslabs/aws-crt-nodejs#600), so `after` ends the process once everything is stopped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sdk from 'aws-iot-device-sdk-v2';
import {
  IoTClient, CreateKeysAndCertificateCommand, CreatePolicyCommand, AttachPolicyCommand,
  CreateThingCommand, AttachThingPrincipalCommand,
} from '@aws-sdk/client-iot';
import {
  IoTDataPlaneClient, UpdateThingShadowCommand, GetThingShadowCommand, ListNamedShadowsForThingCommand,
} from '@aws-sdk/client-iot-data-plane';
import { startNimbus, readCredentials, withTimeout } from './nimbus.js';

const { iot, mqtt, mqtt5, iotshadow } = sdk;

const STEP_MS = 10000;          // deadline of one connect / ack / reply / HTTP call
const QOS1 = mqtt.QoS.AtLeastOnce;
const ALLOW_ALL = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: 'iot:*', Resource: '*' }],
};

let server;
let api;                        // control plane (@aws-sdk/client-iot)
let data;                       // data plane (@aws-sdk/client-iot-data-plane)
let certDir;
const cleanups = [];            // closes any SDK client a failed test left behind

before(async () => {
  server = await startNimbus();
  certDir = mkdtempSync(join(tmpdir(), 'nimbus-shadow-certs-'));
  const common = {
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${server.port('http')}`,
    credentials: readCredentials(join(server.dataDir, 'credentials')),
    maxAttempts: 1,
  };
  api = new IoTClient(common);
  data = new IoTDataPlaneClient(common);
});

after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try { await withTimeout(Promise.resolve().then(cleanup), 3000, 'cleanup'); } catch { /* best effort */ }
  }
  if (api) api.destroy();
  if (data) data.destroy();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
  const code = server ? await server.stop() : 0;
  // aws-crt's MQTT 5 client holds native references that keep the loop alive (see the header);
  // the timer is unref'd so it only fires if something is still holding the process.
  setTimeout(() => process.exit(), 1000).unref();
  assert.equal(code, 0, `nimbus exited with ${code}:\n${server && server.log()}`);
});

const caPath = () => join(server.dataDir, 'ca', 'root-CA.crt');
const mqttsPort = () => server.port('mqtts');

// create-keys-and-certificate --set-as-active, create-policy (iot:* on *), attach-policy,
// create-thing, attach-thing-principal, through @aws-sdk/client-iot.
async function registerDevice(thingName) {
  const created = await api.send(new CreateKeysAndCertificateCommand({ setAsActive: true }));
  const cert = join(certDir, `${thingName}.cert.pem`);
  const key = join(certDir, `${thingName}.private.key`);
  writeFileSync(cert, created.certificatePem);
  writeFileSync(key, created.keyPair.PrivateKey, { mode: 0o600 });
  const policyName = `${thingName}-policy`;
  await api.send(new CreatePolicyCommand({ policyName, policyDocument: JSON.stringify(ALLOW_ALL) }));
  await api.send(new AttachPolicyCommand({ policyName, target: created.certificateArn }));
  await api.send(new CreateThingCommand({ thingName }));
  await api.send(new AttachThingPrincipalCommand({ thingName, principal: created.certificateArn }));
  return { cert, key, thingName };
}

// ---------------------------------------------------------------- device connections

// MQTT 5 client with mTLS; resolves once connected, to { client, close }.
async function connectMqtt5(device) {
  const builder = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath(
    'localhost', device.cert, device.key);
  builder.withCertificateAuthorityFromPath(undefined, caPath());
  builder.withPort(mqttsPort());
  builder.withConnectProperties({ clientId: device.thingName, keepAliveIntervalSeconds: 30 });
  builder.withSessionBehavior(mqtt5.ClientSessionBehavior.Clean);
  builder.withConnackTimeoutMs(STEP_MS);
  const client = new mqtt5.Mqtt5Client(builder.build());
  let running = false;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (running) {
      const stopped = new Promise((resolve) => client.once('stopped', resolve));
      client.stop();
      await withTimeout(stopped, 5000, 'stopped');
    }
    client.close();
  };
  cleanups.push(close);
  const connected = new Promise((resolve, reject) => {
    client.once('connectionSuccess', resolve);
    client.once('connectionFailure', (event) => reject(new Error(`connection failure: ${event.error}`)));
  });
  running = true;
  client.start();
  const success = await withTimeout(connected, STEP_MS, 'MQTT 5 connectionSuccess');
  assert.equal(success.connack.reasonCode, mqtt5.ConnectReasonCode.Success);
  return { client, close };
}

// MQTT 3.1.1 connection with mTLS; resolves once connected, to { connection, close }.
async function connectMqtt311(device) {
  const config = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(device.cert, device.key)
    .with_certificate_authority_from_path(undefined, caPath())
    .with_endpoint('localhost')
    .with_port(mqttsPort())
    .with_client_id(device.thingName)
    .with_clean_session(true)
    .with_keep_alive_seconds(30)
    .build();
  const connection = new mqtt.MqttClient().new_connection(config);
  let open = true;
  const close = async () => {
    if (!open) return;
    open = false;
    try { await withTimeout(connection.disconnect(), 3000, 'disconnect'); } catch { /* already closed */ }
  };
  cleanups.push(close);
  await withTimeout(connection.connect(), STEP_MS, 'MQTT 3.1.1 connect');
  return { connection, close };
}

// ---------------------------------------------------------------- shadow helpers

// The IotShadowClient calls for the classic shadow (shadowName undefined) or a named one.
function shadowOps(shadow, thingName, shadowName) {
  if (shadowName === undefined) {
    const t = { thingName };
    return {
      topic: `$aws/things/${thingName}/shadow`,
      subscriptions: {
        delta: (h) => shadow.subscribeToShadowDeltaUpdatedEvents(t, QOS1, h),
        documents: (h) => shadow.subscribeToShadowUpdatedEvents(t, QOS1, h),
        updateAccepted: (h) => shadow.subscribeToUpdateShadowAccepted(t, QOS1, h),
        updateRejected: (h) => shadow.subscribeToUpdateShadowRejected(t, QOS1, h),
        getAccepted: (h) => shadow.subscribeToGetShadowAccepted(t, QOS1, h),
        getRejected: (h) => shadow.subscribeToGetShadowRejected(t, QOS1, h),
      },
      update: (body) => shadow.publishUpdateShadow({ ...t, ...body }, QOS1),
      get: (clientToken) => shadow.publishGetShadow({ ...t, clientToken }, QOS1),
    };
  }
  const n = { thingName, shadowName };
  return {
    topic: `$aws/things/${thingName}/shadow/name/${shadowName}`,
    subscriptions: {
      delta: (h) => shadow.subscribeToNamedShadowDeltaUpdatedEvents(n, QOS1, h),
      documents: (h) => shadow.subscribeToNamedShadowUpdatedEvents(n, QOS1, h),
      updateAccepted: (h) => shadow.subscribeToUpdateNamedShadowAccepted(n, QOS1, h),
      updateRejected: (h) => shadow.subscribeToUpdateNamedShadowRejected(n, QOS1, h),
      getAccepted: (h) => shadow.subscribeToGetNamedShadowAccepted(n, QOS1, h),
      getRejected: (h) => shadow.subscribeToGetNamedShadowRejected(n, QOS1, h),
    },
    update: (body) => shadow.publishUpdateNamedShadow({ ...n, ...body }, QOS1),
    get: (clientToken) => shadow.publishGetNamedShadow({ ...n, clientToken }, QOS1),
  };
}

// Collects the shadow client's (error, response) callbacks per kind of reply.
function replyInbox() {
  const queues = new Map();
  const waiters = [];
  const queue = (kind) => {
    if (!queues.has(kind)) queues.set(kind, []);
    return queues.get(kind);
  };
  const handler = (kind) => (error, response) => {
    queue(kind).push({ error, response });
    for (const wake of waiters.splice(0)) wake();
  };
  // The first reply of `kind` for which match(response) holds; the others stay queued.
  const next = async (kind, match, what) => {
    const deadline = Date.now() + STEP_MS;
    for (;;) {
      const q = queue(kind);
      const i = q.findIndex((r) => r.error || match(r.response));
      if (i >= 0) {
        const [{ error, response }] = q.splice(i, 1);
        if (error) throw new Error(`${what}: the shadow client could not parse a reply: ${error.message}`);
        return response;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${what}: nothing within ${STEP_MS} ms; other ${kind} replies: ${
          JSON.stringify(q.map((r) => r.response))}`);
      }
      await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, Math.min(left, 100)); });
    }
  };
  const pending = (kind) => queue(kind).map((r) => r.response);
  return { handler, next, pending };
}

const utf8 = (bytes) => Buffer.from(bytes).toString('utf8');

async function appUpdate(thingName, shadowName, document) {
  const out = await withTimeout(data.send(new UpdateThingShadowCommand({
    thingName, shadowName, payload: Buffer.from(JSON.stringify(document)),
  })), STEP_MS, `UpdateThingShadow ${thingName}${shadowName ? `~${shadowName}` : ''}`);
  return JSON.parse(utf8(out.payload));
}

async function appGet(thingName, shadowName) {
  const out = await withTimeout(data.send(new GetThingShadowCommand({ thingName, shadowName })),
    STEP_MS, `GetThingShadow ${thingName}${shadowName ? `~${shadowName}` : ''}`);
  return JSON.parse(utf8(out.payload));
}

async function appListNamed(thingName) {
  return withTimeout(data.send(new ListNamedShadowsForThingCommand({ thingName })),
    STEP_MS, `ListNamedShadowsForThing ${thingName}`);
}

// The app sets desired over HTTP; the device gets the delta, reports it, gets update/accepted;
// the app and the device then read the same shadow with no delta. Finally the device's update
// with a stale version gets update/rejected 409. The shadow must not exist beforehand.
async function desiredReportedFlow(shadow, thingName, shadowName, label) {
  const ops = shadowOps(shadow, thingName, shadowName);
  const P = ops.topic;
  const inbox = replyInbox();
  for (const [kind, subscribe] of Object.entries(ops.subscriptions)) {
    const suback = await withTimeout(subscribe(inbox.handler(kind)), STEP_MS, `subscribe (${kind}) under ${P}`);
    assert.equal(suback.qos, QOS1, `SUBACK for ${kind} under ${P}: ${JSON.stringify(suback)}`);
  }

  // 1. The app sets desired (UpdateThingShadow, SigV4).
  const desired = { color: 'green', brightness: 80, schedule: { on: '07:00', off: '23:30' }, zones: [1, 2] };
  const appToken = `app-${label}`;
  const updated = await appUpdate(thingName, shadowName, { state: { desired }, clientToken: appToken });
  assert.deepEqual(updated.state, { desired }, `UpdateThingShadow response: ${JSON.stringify(updated)}`);
  assert.equal(updated.version, 1);
  assert.equal(updated.clientToken, appToken);
  assert.equal(typeof updated.timestamp, 'number');
  assert.equal(typeof updated.metadata?.desired?.color?.timestamp, 'number',
    `metadata of the accepted update: ${JSON.stringify(updated.metadata)}`);

  // 2. The device gets the delta (and the MQTT echo of the app's update).
  const delta = await inbox.next('delta', () => true, `${P}/update/delta`);
  assert.deepEqual(delta.state, desired, `delta: ${JSON.stringify(delta)}`);
  assert.equal(delta.version, updated.version);
  assert.equal(typeof delta.timestamp, 'number');
  const echo = await inbox.next('updateAccepted', (r) => r.clientToken === appToken,
    `${P}/update/accepted for the app's update`);
  assert.deepEqual(echo.state, { desired });
  assert.equal(echo.version, updated.version);
  const createdDoc = await inbox.next('documents', (r) => r.current?.version === updated.version,
    `${P}/update/documents for version ${updated.version}`);
  assert.equal(createdDoc.previous, undefined, `documents: ${JSON.stringify(createdDoc)}`);
  assert.deepEqual(createdDoc.current.state, { desired });

  // 3. The device applies the delta and reports it.
  const deviceToken = `device-${label}`;
  await withTimeout(ops.update({ state: { reported: delta.state }, clientToken: deviceToken }),
    STEP_MS, `publish ${P}/update`);
  const accepted = await inbox.next('updateAccepted', (r) => r.clientToken === deviceToken,
    `${P}/update/accepted for the device's report (rejected: ${JSON.stringify(inbox.pending('updateRejected'))})`);
  assert.deepEqual(accepted.state, { reported: desired }, `update/accepted: ${JSON.stringify(accepted)}`);
  assert.equal(accepted.version, updated.version + 1);
  assert.equal(typeof accepted.metadata?.reported?.color?.timestamp, 'number',
    `metadata of update/accepted: ${JSON.stringify(accepted.metadata)}`);
  const reportDoc = await inbox.next('documents', (r) => r.current?.version === accepted.version,
    `${P}/update/documents for version ${accepted.version}`);
  assert.equal(reportDoc.previous?.version, updated.version, `documents: ${JSON.stringify(reportDoc)}`);
  assert.deepEqual(reportDoc.previous.state, { desired });
  assert.deepEqual(reportDoc.current.state, { desired, reported: desired });

  // 4. The app reads it back: reported equals desired, no delta.
  const appView = await appGet(thingName, shadowName);
  assert.deepEqual(appView.state, { desired, reported: desired }, `GetThingShadow: ${JSON.stringify(appView)}`);
  assert.equal(appView.version, accepted.version);
  assert.equal(typeof appView.timestamp, 'number');
  assert.equal(typeof appView.metadata?.desired?.color?.timestamp, 'number');
  assert.equal(typeof appView.metadata?.reported?.color?.timestamp, 'number');

  // 5. So does the device (get + get/accepted).
  const getToken = `get-${label}`;
  await withTimeout(ops.get(getToken), STEP_MS, `publish ${P}/get`);
  const deviceView = await inbox.next('getAccepted', (r) => r.clientToken === getToken,
    `${P}/get/accepted (rejected: ${JSON.stringify(inbox.pending('getRejected'))})`);
  assert.deepEqual(deviceView.state, { desired, reported: desired }, `get/accepted: ${JSON.stringify(deviceView)}`);
  assert.equal(deviceView.version, accepted.version);
  assert.equal(typeof deviceView.timestamp, 'number');

  // The report cleared the delta: no second update/delta, and nothing was rejected. get/accepted
  // was published after everything the report caused, on the same connection.
  assert.deepEqual(inbox.pending('delta'), [], 'an update/delta after the report');
  assert.deepEqual(inbox.pending('updateRejected'), []);
  assert.deepEqual(inbox.pending('getRejected'), []);

  // 6. An update from the device with a stale version: update/rejected 409.
  const staleToken = `stale-${label}`;
  await withTimeout(ops.update({ state: { reported: { color: 'red' } }, version: updated.version,
    clientToken: staleToken }), STEP_MS, `publish ${P}/update (stale version)`);
  const rejected = await inbox.next('updateRejected', (r) => r.clientToken === staleToken,
    `${P}/update/rejected for a stale version`);
  assert.equal(rejected.code, 409, `update/rejected: ${JSON.stringify(rejected)}`);
  assert.equal(rejected.message, 'Version conflict');
  assert.deepEqual(inbox.pending('updateAccepted'), [], 'the stale update was accepted');
  const unchanged = await appGet(thingName, shadowName);
  assert.equal(unchanged.version, accepted.version);
  assert.deepEqual(unchanged.state, { desired, reported: desired });
}

// ---------------------------------------------------------------- tests

test('MQTT 5 IotShadowClient, classic shadow: desired from iot-data, delta, report, get', async () => {
  const device = await registerDevice('Thermostat-Shadow-5');
  const { client, close } = await connectMqtt5(device);
  const shadow = iotshadow.IotShadowClient.newFromMqtt5Client(client);
  await desiredReportedFlow(shadow, device.thingName, undefined, 'classic-5');
  const listed = await appListNamed(device.thingName);
  assert.deepEqual(listed.results, [], 'the classic shadow is not a named shadow');
  await close();
});

test('MQTT 5 IotShadowClient, named shadow: same flow, ListNamedShadowsForThing lists it', async () => {
  const device = await registerDevice('Thermostat-Named-5');
  const { client, close } = await connectMqtt5(device);
  const shadow = iotshadow.IotShadowClient.newFromMqtt5Client(client);
  await desiredReportedFlow(shadow, device.thingName, 'settings', 'named-5');
  const listed = await appListNamed(device.thingName);
  assert.deepEqual(listed.results, ['settings']);
  assert.equal(listed.nextToken, undefined);
  assert.equal(typeof listed.timestamp, 'number');
  // the classic shadow of this thing was never written
  await assert.rejects(appGet(device.thingName), (err) => {
    assert.equal(err.name, 'ResourceNotFoundException', String(err));
    return true;
  });
  await close();
});

test('MQTT 3.1.1 IotShadowClient: classic and named shadow flows on one connection', async () => {
  const device = await registerDevice('Thermostat-Shadow-311');
  const { connection, close } = await connectMqtt311(device);
  const shadow = new iotshadow.IotShadowClient(connection);
  await desiredReportedFlow(shadow, device.thingName, undefined, 'classic-311');
  await desiredReportedFlow(shadow, device.thingName, 'firmware', 'named-311');
  const listed = await appListNamed(device.thingName);
  assert.deepEqual(listed.results, ['firmware'], 'only named shadows are listed');
  await close();
});

test('iot-data errors: stale version is ConflictException, missing named shadow ResourceNotFoundException',
  async () => {
    const thingName = 'Shadow-Errors-001';
    await api.send(new CreateThingCommand({ thingName }));
    const first = await appUpdate(thingName, undefined, { state: { desired: { mode: 'eco' } } });
    assert.equal(first.version, 1);
    const second = await appUpdate(thingName, undefined,
      { state: { desired: { mode: 'boost' } }, version: first.version });
    assert.equal(second.version, first.version + 1);

    await assert.rejects(
      appUpdate(thingName, undefined, { state: { desired: { mode: 'off' } }, version: first.version }),
      (err) => {
        assert.equal(err.name, 'ConflictException', String(err));
        assert.equal(err.$metadata?.httpStatusCode, 409);
        assert.match(err.message, /Version conflict/);
        return true;
      });
    const current = await appGet(thingName);
    assert.equal(current.version, second.version);
    // Nothing reported yet: all of desired is the delta.
    assert.deepEqual(current.state, { desired: { mode: 'boost' }, delta: { mode: 'boost' } });

    await assert.rejects(appGet(thingName, 'does-not-exist'), (err) => {
      assert.equal(err.name, 'ResourceNotFoundException', String(err));
      assert.equal(err.$metadata?.httpStatusCode, 404);
      assert.equal(err.message, `No shadow exists with name: '${thingName}~does-not-exist'`);
      return true;
    });
    const listed = await appListNamed(thingName);
    assert.deepEqual(listed.results, []);
  });
