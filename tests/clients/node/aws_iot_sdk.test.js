// The AWS IoT Device SDK v2 for JavaScript (npm aws-iot-device-sdk-v2, on aws-crt) against nimbus
// with mutual TLS, the way the SDK's own samples connect to AWS IoT Core. The device is registered
// through the control plane with the AWS SDK for JavaScript v3 (@aws-sdk/client-iot, SigV4 with the
// keys in <data>/credentials), exactly as an application would against AWS.
//
// Notes for whoever debugs this:
// - The builders offer ALPN "x-amzn-mqtt-ca" whenever the platform has ALPN (always on Linux), even
//   on port 8883: the mqtts listener must not fail the handshake because of it.
// - The SDK puts "?SDK=NodeJSv2&Version=..." in the CONNECT username: ignored under cert auth.
// - aws-crt's MQTT 5 client keeps the Node event loop alive after close()
//   (awslabs/aws-crt-nodejs#600), so `after` ends the process once everything is stopped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sdk from 'aws-iot-device-sdk-v2';
import {
  IoTClient, CreateKeysAndCertificateCommand, CreatePolicyCommand, AttachPolicyCommand,
  CreateThingCommand, AttachThingPrincipalCommand, DescribeEndpointCommand,
} from '@aws-sdk/client-iot';
import { startNimbus, readCredentials, withTimeout } from './nimbus.js';

const { iot, mqtt, mqtt5 } = sdk;

const STEP_MS = 10000;          // deadline of one connect / ack / message
const ALLOW_ALL = {
  Version: '2012-10-17',
  Statement: [{
    Effect: 'Allow',
    Action: ['iot:Connect', 'iot:Publish', 'iot:Subscribe', 'iot:Receive'],
    Resource: '*',
  }],
};

let server;
let api;
let certDir;
const cleanups = [];            // closes any SDK client a failed test left behind

before(async () => {
  server = await startNimbus();
  certDir = mkdtempSync(join(tmpdir(), 'nimbus-sdk-certs-'));
  api = new IoTClient({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${server.port('http')}`,
    credentials: readCredentials(join(server.dataDir, 'credentials')),
    maxAttempts: 1,
  });
});

after(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try { await withTimeout(Promise.resolve().then(cleanup), 3000, 'cleanup'); } catch { /* best effort */ }
  }
  if (api) api.destroy();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
  const code = server ? await server.stop() : 0;
  // aws-crt's MQTT 5 client holds native references that keep the loop alive (see the header);
  // the timer is unref'd so it only fires if something is still holding the process.
  setTimeout(() => process.exit(), 1000).unref();
  assert.equal(code, 0, `nimbus exited with ${code}:\n${server && server.log()}`);
});

const caPath = () => join(server.dataDir, 'ca', 'root-CA.crt');
const caKeyPath = () => join(server.dataDir, 'ca', 'root-CA.key');
const mqttsPort = () => server.port('mqtts');

// create-keys-and-certificate --set-as-active, create-policy, attach-policy, create-thing,
// attach-thing-principal: the seed tutorial's sequence, through @aws-sdk/client-iot.
// `policyFor(arnPrefix)` returns the policy document; arnPrefix is "arn:aws:iot:<region>:<account>:"
// taken from the new certificate's ARN, as a user copies it from the console.
async function registerDevice(thingName, policyFor = () => ALLOW_ALL) {
  const created = await api.send(new CreateKeysAndCertificateCommand({ setAsActive: true }));
  assert.match(created.certificateArn, /^arn:aws:iot:[a-z0-9-]+:\d{12}:cert\/[0-9a-f]{64}$/);
  assert.ok(created.certificateArn.endsWith(`/${created.certificateId}`));
  const [, , , region, account] = created.certificateArn.split(':');
  const arnPrefix = `arn:aws:iot:${region}:${account}:`;
  const cert = join(certDir, `${thingName}.cert.pem`);
  const key = join(certDir, `${thingName}.private.key`);
  writeFileSync(cert, created.certificatePem);
  writeFileSync(key, created.keyPair.PrivateKey, { mode: 0o600 });
  const policyName = `${thingName}-policy`;
  await api.send(new CreatePolicyCommand({ policyName, policyDocument: JSON.stringify(policyFor(arnPrefix)) }));
  await api.send(new AttachPolicyCommand({ policyName, target: created.certificateArn }));
  await api.send(new CreateThingCommand({ thingName }));
  await api.send(new AttachThingPrincipalCommand({ thingName, principal: created.certificateArn }));
  return { cert, key, thingName, arn: created.certificateArn, arnPrefix };
}

// A key + certificate signed by the nimbus CA but never registered.
function unregisteredCertificate(name) {
  const key = join(certDir, `${name}.key`);
  const csr = join(certDir, `${name}.csr`);
  const cert = join(certDir, `${name}.crt`);
  const run = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
  run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  run(['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr]);
  run(['x509', '-req', '-in', csr, '-CA', caPath(), '-CAkey', caKeyPath(),
    '-set_serial', `0x${Date.now().toString(16)}`, '-days', '2', '-sha256', '-out', cert]);
  return { cert, key };
}

// ---------------------------------------------------------------- MQTT 3.1.1 (MqttClientConnection)

function mqtt311Connection(device, clientId, endpoint = 'localhost') {
  const config = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(device.cert, device.key)
    .with_certificate_authority_from_path(undefined, caPath())
    .with_endpoint(endpoint)
    .with_port(mqttsPort())
    .with_client_id(clientId)
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
  return { connection, close };
}

test('MQTT 3.1.1 connection with mTLS: subscribe, publish QoS 1, receive, disconnect', async () => {
  const device = await registerDevice('RaspberryPi-001');
  // the device connects to whatever DescribeEndpoint names, as the tutorial's sample does
  const { endpointAddress } = await api.send(new DescribeEndpointCommand({ endpointType: 'iot:Data-ATS' }));
  assert.equal(endpointAddress, 'localhost');

  const { connection, close } = mqtt311Connection(device, device.thingName, endpointAddress);
  const sessionPresent = await withTimeout(connection.connect(), STEP_MS, 'connect');
  assert.equal(sessionPresent, false);

  let deliver;
  const received = new Promise((resolve) => { deliver = resolve; });
  const suback = await withTimeout(connection.subscribe('sensor/data', mqtt.QoS.AtLeastOnce,
    (topic, payload, dup, qos, retain) => deliver({ topic, payload: Buffer.from(payload).toString(), qos, retain })),
  STEP_MS, 'suback');
  assert.equal(suback.qos, mqtt.QoS.AtLeastOnce);
  assert.equal(suback.error_code, 0);

  const reading = {
    device_id: device.thingName, temperature: 25.5, humidity: 60, timestamp: Math.floor(Date.now() / 1000),
  };
  const puback = await withTimeout(connection.publish('sensor/data', JSON.stringify(reading), mqtt.QoS.AtLeastOnce),
    STEP_MS, 'puback');
  assert.equal(typeof puback.packet_id, 'number');

  const message = await withTimeout(received, STEP_MS, 'message on sensor/data');
  assert.equal(message.topic, 'sensor/data');
  assert.deepEqual(JSON.parse(message.payload), reading);
  assert.equal(message.qos, mqtt.QoS.AtLeastOnce);
  assert.equal(message.retain, false);
  await close();
});

test('MQTT 3.1.1 connection with an unregistered certificate is refused', async () => {
  const rogue = unregisteredCertificate('rogue-311');
  const { connection, close } = mqtt311Connection(rogue, 'rogue-311');
  await assert.rejects(withTimeout(connection.connect(), STEP_MS, 'refused connect'),
    (err) => !/nothing within/.test(String(err && err.message)));
  await close();
});

// ---------------------------------------------------------------- MQTT 5 (Mqtt5Client)

function mqtt5Client(device, clientId) {
  const builder = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath(
    'localhost', device.cert, device.key);
  builder.withCertificateAuthorityFromPath(undefined, caPath());
  builder.withPort(mqttsPort());
  builder.withConnectProperties({ clientId, keepAliveIntervalSeconds: 30 });
  builder.withSessionBehavior(mqtt5.ClientSessionBehavior.Clean);
  builder.withConnackTimeoutMs(STEP_MS);
  const client = new mqtt5.Mqtt5Client(builder.build());
  const messages = [];
  const waiters = [];
  client.on('messageReceived', (event) => {
    const m = event.message;
    messages.push({ topic: m.topicName, payload: Buffer.from(m.payload ?? new ArrayBuffer(0)).toString(), qos: m.qos });
    for (const w of waiters.splice(0)) w();
  });
  const nextMessage = async (ms = STEP_MS) => {
    const deadline = Date.now() + ms;
    while (messages.length === 0) {
      if (Date.now() > deadline) throw new Error('no message within deadline');
      await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 100); });
    }
    return messages.shift();
  };
  let running = false;
  const start = () => new Promise((resolve, reject) => {
    client.once('connectionSuccess', (event) => resolve(event));
    client.once('connectionFailure', (event) => {
      reject(Object.assign(new Error(`connection failure: ${event.error}`), { event }));
    });
    running = true;
    client.start();
  });
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
  // Resolves to the SUBACK reason codes.
  const subscribe = async (...topicFilters) => {
    const subscriptions = topicFilters.map((topicFilter) => ({ topicFilter, qos: mqtt5.QoS.AtLeastOnce }));
    const suback = await withTimeout(client.subscribe({ subscriptions }), STEP_MS, 'suback');
    return suback.reasonCodes;
  };
  // QoS 1; resolves to the PUBACK reason code.
  const publish = async (topicName, payload) => {
    const puback = await withTimeout(client.publish({ topicName, qos: mqtt5.QoS.AtLeastOnce, payload }),
      STEP_MS, `puback for ${topicName}`);
    return puback.reasonCode;
  };
  // Resolves to the failure event (null if the connection succeeded).
  const startExpectingFailure = () => withTimeout(start().then(() => null, (err) => err.event),
    STEP_MS, 'connectionFailure');
  return { client, start, startExpectingFailure, subscribe, publish, nextMessage, close };
}

test('MQTT 5 client with mTLS: subscribe, publish QoS 1, receive, disconnect', async () => {
  const device = await registerDevice('RaspberryPi-005');
  const { start, subscribe, publish, nextMessage, close } = mqtt5Client(device, device.thingName);
  const success = await withTimeout(start(), STEP_MS, 'connectionSuccess');
  assert.equal(success.connack.reasonCode, mqtt5.ConnectReasonCode.Success);

  assert.deepEqual(await subscribe('sensor/data'), [mqtt5.SubackReasonCode.GrantedQoS1]);
  const reading = { device_id: device.thingName, temperature: 26.1, humidity: 61 };
  assert.equal(await publish('sensor/data', JSON.stringify(reading)), mqtt5.PubackReasonCode.Success);

  const message = await nextMessage();
  assert.equal(message.topic, 'sensor/data');
  assert.deepEqual(JSON.parse(message.payload), reading);
  assert.equal(message.qos, mqtt5.QoS.AtLeastOnce);
  await close();
});

test('MQTT 5 client limited by its policy: own topics work, others get reason code 0x87', async () => {
  // The usual least-privilege device policy: connect only as the attached thing, publish, receive
  // and subscribe only below sdk/<client id>/.
  const thingName = 'Sensor-SDK-002';
  const device = await registerDevice(thingName, (p) => ({
    Version: '2012-10-17',
    Statement: [
      { Effect: 'Allow', Action: 'iot:Connect', Resource: `${p}client/\${iot:Connection.Thing.ThingName}`,
        Condition: { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } } },
      { Effect: 'Allow', Action: ['iot:Publish', 'iot:Receive'], Resource: `${p}topic/sdk/\${iot:ClientId}/*` },
      { Effect: 'Allow', Action: 'iot:Subscribe', Resource: `${p}topicfilter/sdk/\${iot:ClientId}/*` },
    ],
  }));

  const { start, subscribe, publish, nextMessage, close } = mqtt5Client(device, thingName);
  await withTimeout(start(), STEP_MS, 'connectionSuccess');

  assert.deepEqual(await subscribe(`sdk/${thingName}/+`, 'sdk/someone-else/+'),
    [mqtt5.SubackReasonCode.GrantedQoS1, mqtt5.SubackReasonCode.NotAuthorized]);
  assert.equal(await publish(`sdk/${thingName}/temp`, '21.5'), mqtt5.PubackReasonCode.Success);
  const message = await nextMessage();
  assert.equal(message.topic, `sdk/${thingName}/temp`);
  assert.equal(message.payload, '21.5');
  assert.equal(await publish('sdk/someone-else/temp', 'x'), mqtt5.PubackReasonCode.NotAuthorized);
  await close();

  // Any other client id with the same certificate: CONNACK "not authorized".
  const intruder = mqtt5Client(device, 'not-the-thing');
  const failure = await intruder.startExpectingFailure();
  assert.ok(failure, 'connect with a client id other than the thing name was accepted');
  if (failure.connack) assert.equal(failure.connack.reasonCode, mqtt5.ConnectReasonCode.NotAuthorized);
  await intruder.close();
});

test('MQTT 5 client with an unregistered certificate gets no successful CONNACK', async () => {
  const rogue = unregisteredCertificate('rogue-5');
  const { startExpectingFailure, close } = mqtt5Client(rogue, 'rogue-5');
  const failure = await startExpectingFailure();
  assert.ok(failure, 'an unregistered certificate was accepted');
  if (failure.connack) assert.notEqual(failure.connack.reasonCode, mqtt5.ConnectReasonCode.Success);
  await close();
});
