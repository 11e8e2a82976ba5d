import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import sdk from 'aws-iot-device-sdk-v2';
const { iot, mqtt5 } = sdk;
after(() => { setTimeout(() => process.exit(), 1000).unref(); });
test('mqtt5 connects', async () => {
  const b = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath('localhost', '/tmp/mqval/dev.crt', '/tmp/mqval/dev.key');
  b.withCertificateAuthorityFromPath(undefined, '/tmp/mqval/ca.crt'); b.withPort(28883);
  b.withConnectProperties({ clientId: 'x5', keepAliveIntervalSeconds: 30 });
  const c5 = new mqtt5.Mqtt5Client(b.build());
  const ok = new Promise((res) => c5.once('connectionSuccess', res));
  c5.start(); await ok;
  const stopped = new Promise((r) => c5.once('stopped', r));
  c5.stop(); await stopped; c5.close();
});
test('fails', () => { assert.equal(1, process.env.FAILIT ? 2 : 1); });
