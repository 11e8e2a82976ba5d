import sdk from 'aws-iot-device-sdk-v2';
const { iot, mqtt, mqtt5 } = sdk;
const [port, cert, key, ca, which] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5], process.argv[6]];
if (which === '311') {
  const config = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(cert, key)
    .with_certificate_authority_from_path(undefined, ca)
    .with_endpoint('localhost').with_port(port).with_client_id('RaspberryPi-001').build();
  const client = new mqtt.MqttClient();
  const conn = client.new_connection(config);
  await conn.connect();
  await conn.disconnect();
} else {
  const b = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath('localhost', cert, key);
  b.withCertificateAuthorityFromPath(undefined, ca); b.withPort(port);
  b.withConnectProperties({ clientId: 'x5', keepAliveIntervalSeconds: 30 });
  const c5 = new mqtt5.Mqtt5Client(b.build());
  const ok = new Promise((res) => c5.once('connectionSuccess', res));
  c5.start(); await ok;
  const stopped = new Promise((r) => c5.once('stopped', r));
  c5.stop(); await stopped; await new Promise((r) => setTimeout(r, 100)); c5.close(); setTimeout(() => { console.log('handles', process._getActiveHandles().map((h) => h.constructor.name)); }, 1000).unref();
}
console.log('done', which);
