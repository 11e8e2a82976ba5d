// Where things are and what to run next: the commands are built from this server's actual
// listeners and files, so they can be pasted as they are.
import { getOverview, type Overview } from '../api';
import { announce, button, h, replaceChildren, section, table } from '../dom';
import type { PageContext } from '../page';
import { listen } from '../stream';

const countLabels: [string, string][] = [
  ['devices', 'Devices reporting'], ['connected_clients', 'Connected MQTT clients'],
  ['open_alerts', 'Open alerts'], ['alert_rules', 'Alert rules'], ['things', 'Things'],
  ['certificates', 'Certificates'], ['policies', 'Policies'], ['topic_rules', 'Topic rules'],
  ['pubsub_topics', 'Pub/Sub topics'], ['pubsub_subscriptions', 'Pub/Sub subscriptions'],
  ['bridges', 'Bridges'],
];

// "0.0.0.0:1883" / "[::]:8080" → the host a client on this machine should dial, and the port.
export function dialable(address: string | undefined): { host: string; port: string } | null {
  if (!address) return null;
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address.trim());
  if (!match) return null;
  let host = match[1] ?? match[2];
  // A wildcard bind is reached the way this page was.
  if (host === '0.0.0.0' || host === '::' || host === '') host = (location.hostname || '127.0.0.1').replace(/^\[|\]$/g, '');
  if (host.includes(':')) host = `[${host}]`;
  return { host, port: match[3] };
}

function copyable(command: string): HTMLElement {
  const copy = button('Copy', async () => {
    try {
      await navigator.clipboard.writeText(command);
      announce('Copied to the clipboard');
    } catch {
      // No clipboard (plain HTTP from another host): the text is there to select by hand.
    }
  }, { className: 'secondary' });
  return h('div', { className: 'command' }, h('pre', { tabindex: '0' }, h('code', {}, command)), copy);
}

function nextSteps(overview: Overview): HTMLElement {
  const https = dialable(overview.listeners.https);
  const http = dialable(overview.listeners.http);
  const endpoint = http ? `http://${http.host}:${http.port}` : https ? `https://${https.host}:${https.port}` : `${location.protocol}//${location.host}`;
  const mqtt = dialable(overview.listeners.mqtt);
  const mqtts = dialable(overview.listeners.mqtts);
  const credentials = overview.paths.credentials ?? '<credentials file>';
  const region = overview.region || 'us-east-1';
  const aws = `aws --endpoint-url ${endpoint} iot`;
  const sample = `'{"device_id":"my-device","temperature":24.5,"humidity":60}'`;
  const devicePolicy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Publish","iot:Subscribe","iot:Receive"],"Resource":"*"}]}';

  const steps: [string, string][] = [
    ['Point the AWS CLI at Nimbus (credentials it wrote for you):',
      `export AWS_SHARED_CREDENTIALS_FILE=${credentials}\nexport AWS_DEFAULT_REGION=${region}`],
    ['Register a device:', `${aws} create-thing --thing-name my-device`],
    ['Give it a certificate and key, and a policy that lets it connect, publish and subscribe:',
      `CERT_ARN=$(${aws} create-keys-and-certificate --set-as-active --certificate-pem-outfile device.crt --private-key-outfile device.key --query certificateArn --output text)\n` +
      `${aws} create-policy --policy-name my-device-policy --policy-document '${devicePolicy}'\n` +
      `${aws} attach-policy --policy-name my-device-policy --target "$CERT_ARN"\n` +
      `${aws} attach-thing-principal --thing-name my-device --principal "$CERT_ARN"`],
  ];
  if (mqtt) {
    steps.push(['Send a reading over MQTT:',
      `mosquitto_pub -h ${mqtt.host} -p ${mqtt.port} -t sensor/data -m ${sample}`]);
  }
  if (mqtts) {
    steps.push(['Or over MQTT with TLS, using the certificate:',
      `mosquitto_pub -h ${mqtts.host} -p ${mqtts.port} --cafile ${overview.paths.ca ?? 'ca.crt'} --cert device.crt --key device.key -i my-device -t sensor/data -m ${sample}`]);
  }
  return h('ol', { className: 'steps' },
    steps.map(([text, command]) => h('li', {}, h('p', {}, text), copyable(command))),
    h('li', {}, h('p', {}, 'Watch it arrive on the ', h('a', { href: '#/fleet' }, 'Fleet'), ' page.')),
  );
}

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Home');
  const content = h('div');
  context.main.append(h('h1', {}, 'Nimbus'), content);

  const counts = h('dl', { id: 'counts', className: 'facts' });
  const showCounts = (values: Record<string, number>) => {
    replaceChildren(counts, countLabels
      .filter(([key]) => key in values)
      .map(([key, label]) => [h('dt', {}, label), h('dd', { 'data-count': key }, String(values[key]))]));
  };

  const load = async () => {
    const overview = await getOverview(true);
    if (!context.isCurrent()) return;
    const listeners = table('listeners', 'Listeners', ['Protocol', 'Address']);
    for (const [name, address] of Object.entries(overview.listeners)) {
      if (address) listeners.body.append(h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, h('code', {}, address))));
    }
    const paths: [string, string | undefined][] = [
      ['Data directory', overview.paths.data_dir], ['CA certificate', overview.paths.ca],
      ['AWS credentials file', overview.paths.credentials], ['Dashboard tokens file', overview.paths.tokens],
    ];
    showCounts(overview.counts ?? {});
    replaceChildren(content,
      h('p', {}, 'Version ', h('strong', { id: 'version' }, overview.version),
        overview.region ? ` · region ${overview.region}` : '', overview.account ? ` · account ${overview.account}` : ''),
      section('listeners-section', 'Listeners', listeners.table),
      section('paths-section', 'Files',
        h('dl', { id: 'paths', className: 'facts' },
          paths.filter(([, value]) => value).map(([label, value]) => [h('dt', {}, label), h('dd', {}, h('code', {}, value!))])),
        h('p', {}, h('a', { href: '/ca.crt', download: 'ca.crt' }, 'Download the CA certificate (ca.crt)'),
          ' — devices need it to trust the TLS listeners.')),
      section('counts-section', 'At a glance', counts),
      section('next-steps', 'Next steps', nextSteps(overview)),
    );
  };
  await load();
  context.onResync(() => void load().catch(() => {}));
  // Open alerts move often; keep that one figure live without polling.
  context.cleanup(listen(['alerts'], () => {
    void getOverview(true).then((o) => context.isCurrent() && showCounts(o.counts ?? {})).catch(() => {});
  }));
}
