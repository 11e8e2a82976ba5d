// The web dashboard (issue 16) in Debian's Chromium, driven by npm playwright-core against the
// real binary: sign-in (a wrong key refused) and the loopback rule, a device appearing after
// mosquitto_pub and its chart moving without a reload, the tutorial's alert raised, acknowledged
// in the page and cleared, a rule's SQL error with its position, a desired-state edit reaching a
// paho device as a delta, a certificate created in the page whose downloaded files connect
// mosquitto_pub over mTLS until the page revokes it, an alert rule written in the page (refused
// with its field, saved, deleted), a Pub/Sub subscription's backlog (from /metrics). Every request
// must stay on the server; axe-core runs on every page; a screenshot of each step goes to
// build/test-artifacts/web/.
//
//   NIMBUS_BIN=build/nimbus node --test dashboard.test.js
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { startNimbus, readCredentials, withTimeout } from './nimbus.js';

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, '..', '..', '..', 'build', 'test-artifacts', 'web');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const WAIT = 15000;

let browser;
let step = 0;

before(async () => {
  if (!existsSync(chromiumPath))
    throw new Error(`${chromiumPath} missing: scripts/install-deps test installs Debian's chromium`);
  mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
});

function run(command, args, timeoutMs = WAIT) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function publish(server, topic, payload) {
  return run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(server.port('mqtt')), '-q', '1',
    '-t', topic, '-m', JSON.stringify(payload)]);
}

// A browser context that refuses, and records, any request leaving the server.
async function openContext(server) {
  const origin = `http://localhost:${server.port('http')}`;
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const offServer = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin + '/') || url.startsWith('blob:') || url.startsWith('data:'))
      return route.continue();
    offServer.push(url);
    return route.abort();
  });
  context.on('page', (page) => {
    page.on('websocket', (ws) => {
      if (!ws.url().startsWith(`ws://localhost:${server.port('http')}/`)) offServer.push(ws.url());
    });
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return { context, page, origin, offServer, errors };
}

async function screenshot(page, name) {
  step += 1;
  await page.screenshot({ path: join(artifacts, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
}

async function checkAccessibility(page, name) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  });
  assert.deepEqual(violations, [], `axe-core on ${name}`);
}

async function visit(page, origin, hash, name) {
  await page.goto(`${origin}/${hash}`);
  await page.waitForSelector('main h1', { timeout: WAIT });
  await page.waitForLoadState('networkidle');
  await screenshot(page, name);
  await checkAccessibility(page, name);
}

test('sign-in with a token or the key pair; a wrong key is refused', async () => {
  const server = await startNimbus(['--dashboard-loopback-open', 'false', '--tsdb-auth', 'required']);
  const { context, page, origin, offServer, errors } = await openContext(server);
  try {
    const token = readFileSync(join(server.dataDir, 'tokens'), 'utf8')
      .split('\n').find((l) => l.startsWith('read-write ')).split(' ')[1];
    const keys = readCredentials(join(server.dataDir, 'credentials'));

    await page.goto(origin + '/');
    await page.waitForSelector('form#signin', { timeout: WAIT });
    await checkAccessibility(page, 'sign-in');
    // The APIs stay closed without a session.
    const closed = await page.evaluate(async () => (await fetch('/api/overview')).status);
    assert.equal(closed, 401);

    await page.fill('#access-key-id', keys.accessKeyId);
    await page.fill('#secret-access-key', 'not-the-secret');
    await page.click('form#signin button[type=submit]');
    await page.waitForSelector('#signin-error:not(:empty)', { timeout: WAIT });
    assert.match(await page.textContent('#signin-error'), /wrong/i);
    await screenshot(page, 'signin-refused');

    await page.fill('#secret-access-key', keys.secretAccessKey);
    await page.click('form#signin button[type=submit]');
    await page.waitForSelector('#version', { timeout: WAIT });
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === `nimbus_session_${server.port('http')}`);
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    await screenshot(page, 'signed-in-with-keys');

    // The session stands in for SigV4 on the AWS routes.
    const things = await page.evaluate(async () => (await fetch('/things')).status);
    assert.equal(things, 200);
    // A change from another origin is refused even with the cookie.
    const foreign = await fetch(`${origin}/api/alert-rules/high_temperature/enable`, {
      method: 'POST', headers: { Cookie: `${session.name}=${session.value}`, Origin: 'http://evil.example' },
    });
    assert.equal(foreign.status, 401);

    await page.click('#signout');
    await page.waitForSelector('form#signin', { timeout: WAIT });
    await page.fill('#token', token);
    await page.click('form#signin button[type=submit]');
    await page.waitForSelector('#version', { timeout: WAIT });
    assert.deepEqual(offServer, []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('the fleet from mosquitto_pub to alerts, rules, shadows and certificates', async () => {
  const server = await startNimbus();
  const { context, page, origin, offServer, errors } = await openContext(server);
  try {
    // Loopback-open: a local browser is signed in at once.
    await visit(page, origin, '#/', 'home');
    assert.match(await page.textContent('#listeners'), new RegExp(`:${server.port('mqtt')}`));
    assert.match(await page.textContent('#next-steps'), /mosquitto_pub/);
    // The next steps work as shown: the page's commands, pasted into a shell in order.
    const commands = await page.$$eval('#next-steps pre code', (codes) => codes.map((c) => c.textContent));
    const script = ['set -e', ...commands].join('\n');
    const workdir = join(server.dataDir, 'next-steps');
    mkdirSync(workdir);
    await new Promise((resolve, reject) => {
      execFile('bash', ['-c', script], { cwd: workdir, timeout: 60000 }, (error, stdout, stderr) =>
        (error ? reject(new Error(`the home page's next steps failed:\n${script}\n${stderr}`)) : resolve(stdout)));
    });
    await withTimeout((async () => {
      for (;;) {
        const body = await page.evaluate(async () => (await fetch('/api/devices?device_id=my-device')).json());
        if (body.count === 1) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(), WAIT, 'the reading the next steps sent');

    await visit(page, origin, '#/fleet', 'fleet-empty');
    await publish(server, 'sensor/data', { device_id: 'web-dev-1', temperature: 24.5, humidity: 60 });
    const row = 'table#fleet tr[data-device-id="web-dev-1"]';
    await page.waitForSelector(row, { timeout: WAIT });  // pushed, no reload
    assert.match(await page.textContent(row), /24\.5/);
    await screenshot(page, 'fleet-device-appeared');
    await checkAccessibility(page, 'fleet');

    // The device page: its chart grows as readings arrive.
    await page.click(`${row} a`);
    const chart = 'figure[data-field="temperature"]';
    await page.waitForSelector(chart, { timeout: WAIT });
    await page.waitForLoadState('networkidle');
    const before = Number(await page.getAttribute(chart, 'data-points'));
    await publish(server, 'sensor/data', { device_id: 'web-dev-1', temperature: 25.5, humidity: 61 });
    await page.waitForFunction(([selector, n]) =>
      Number(document.querySelector(selector)?.dataset.points) > n, [chart, before], { timeout: WAIT });
    await screenshot(page, 'device-chart-live');
    await checkAccessibility(page, 'device');

    // The tutorial's rule, enabled in the page; 36.5 raises, the page acknowledges, 30 clears.
    await visit(page, origin, '#/alerts', 'alerts-empty');
    const ruleRow = '#alert-rules tr[data-rule-id="high_temperature"]';
    await page.waitForSelector(ruleRow, { timeout: WAIT });
    await page.click(`${ruleRow} button:has-text("Enable")`);
    await page.waitForFunction((selector) => /enabled/i.test(document.querySelector(selector)?.textContent ?? '')
      && !/disabled/i.test(document.querySelector(selector)?.textContent ?? ''), ruleRow, { timeout: WAIT });
    await publish(server, 'sensor/data', { device_id: 'web-dev-1', temperature: 36.5, humidity: 61 });
    const alertRow = 'table#alerts tr[data-alert-id]';
    await page.waitForSelector(`${alertRow}[data-status="active"]`, { timeout: WAIT });
    assert.match(await page.textContent(alertRow), /high_temperature/);
    assert.match(await page.textContent(alertRow), /web-dev-1/);
    await screenshot(page, 'alert-raised');
    await page.click(`${alertRow} button:has-text("Acknowledge")`);
    await page.waitForSelector(`${alertRow}[data-status="acknowledged"]`, { timeout: WAIT });
    await screenshot(page, 'alert-acknowledged');
    // The history names who acknowledged it: the page's session.
    const alertId = await page.getAttribute(alertRow, 'data-alert-id');
    const acknowledged = await page.evaluate(async (id) => (await fetch(`/api/alerts/${id}`)).json(), alertId);
    assert.ok(acknowledged.history.some((step) => step.event === 'acknowledged' && step.who === 'dashboard:loopback'),
      JSON.stringify(acknowledged.history));
    await publish(server, 'sensor/data', { device_id: 'web-dev-1', temperature: 30, humidity: 61 });
    const cleared = await withTimeout((async () => {
      for (;;) {
        const body = await page.evaluate(async () => (await fetch('/api/alerts?status=cleared')).json());
        if (body.alerts?.some((a) => a.device_id === 'web-dev-1')) return body;
        await new Promise((r) => setTimeout(r, 100));
      }
    })(), WAIT, 'the alert cleared by 30 °C');
    const alert = cleared.alerts.find((a) => a.device_id === 'web-dev-1');
    assert.equal(alert.type, 'high_temperature');
    await page.waitForFunction(() => !document.querySelector('table#alerts tr[data-alert-id][data-status="acknowledged"]'),
      null, { timeout: WAIT });
    await screenshot(page, 'alert-cleared');
    await checkAccessibility(page, 'alerts');

    // A topic rule with bad SQL: the parser's message and its position, inline.
    await visit(page, origin, '#/rules', 'rules');
    await page.fill('#rule-name', 'bad_rule');
    await page.fill('#rule-sql', "SELECT temperature FROM 'sensor/data' WHERE temperature >");
    await page.fill('#republish-topic', 'alerts/hot');
    await page.click('form#rule-form button:has-text("Create rule")');
    await page.waitForSelector('#rule-error:not(:empty)', { timeout: WAIT });
    await page.waitForSelector('#rule-error-position', { timeout: WAIT });
    await screenshot(page, 'rule-sql-error');
    await page.fill('#rule-name', 'hot_rule');
    await page.fill('#rule-sql', "SELECT temperature FROM 'sensor/data' WHERE temperature > 35");
    await page.click('form#rule-form button:has-text("Create rule")');
    await page.waitForSelector('table#rules tr:has-text("hot_rule")', { timeout: WAIT });
    await checkAccessibility(page, 'rules');

    // An alert rule written in the page: a refusal names the field, a good rule gets its row,
    // and Delete (confirmed) takes it away.
    await visit(page, origin, '#/alerts', 'alerts-rules');
    await page.click('#alert-rules button:has-text("New rule")');
    await page.waitForSelector('#alert-rule-editor:not([hidden]) #alert-rule-json', { timeout: WAIT });
    assert.match(await page.inputValue('#alert-rule-json'), /"name": "new_rule"/);
    await checkAccessibility(page, 'alert rule editor');
    await page.fill('#alert-rule-json', JSON.stringify({
      name: 'low_humidity', selection: { field: 'humidity' },
      condition: { type: 'threshold', operator: '=<', value: 10 },
    }));
    await page.click('#alert-rule-editor button:has-text("Save")');
    await page.waitForSelector('#alert-rule-error:not(:empty)', { timeout: WAIT });
    assert.match(await page.textContent('#alert-rule-error'), /^condition\.operator: /);
    await screenshot(page, 'alert-rule-refused');
    await checkAccessibility(page, 'alert rule refused');
    await page.fill('#alert-rule-json', JSON.stringify({
      name: 'low_humidity', severity: 'minor', selection: { field: 'humidity' },
      condition: { type: 'threshold', operator: '<', value: 10 },
    }, null, 2));
    await page.click('#alert-rule-editor button:has-text("Save")');
    const lowHumidity = '#alert-rules tr[data-rule-id="low_humidity"]';
    await page.waitForSelector(lowHumidity, { timeout: WAIT });
    assert.match(await page.textContent(lowHumidity), /humidity < 10/);
    assert.equal(await page.isHidden('#alert-rule-editor'), true);
    await page.click(`${lowHumidity} button:has-text("Edit")`);
    await page.waitForSelector('#alert-rule-editor:not([hidden]) button:has-text("Delete")', { timeout: WAIT });
    const edited = JSON.parse(await page.inputValue('#alert-rule-json'));
    assert.equal(edited.name, 'low_humidity');
    assert.equal(edited.status, undefined, 'read-only keys left out');
    await screenshot(page, 'alert-rule-edit');
    page.once('dialog', (dialog) => dialog.accept());  // "Delete the alert rule low_humidity?"
    await page.click('#alert-rule-editor button:has-text("Delete")');
    await page.waitForSelector(lowHumidity, { state: 'detached', timeout: WAIT });
    const rulesLeft = await page.evaluate(async () => (await (await fetch('/api/alert-rules')).json()).rules.map((r) => r.name));
    assert.ok(!rulesLeft.includes('low_humidity'));
    await checkAccessibility(page, 'alerts after delete');

    // A desired-state edit reaches a paho device as a delta.
    const delta = spawn('/usr/bin/python3', ['-c', `
import json, sys, paho.mqtt.client as mqtt
thing = "web-dev-1"
def on_connect(c, u, f, rc): c.subscribe("$aws/things/%s/shadow/update/delta" % thing, 1)
def on_subscribe(c, u, mid, granted): print("ready", flush=True)
def on_message(c, u, m):
    print(m.payload.decode(), flush=True)
    c.disconnect()
c = mqtt.Client(client_id="web-shadow-device")
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", ${server.port('mqtt')})
c.loop_forever()
`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let deviceOutput = '';
    const deltaSeen = new Promise((resolve) => {
      delta.stdout.on('data', (chunk) => {
        deviceOutput += chunk;
        const lines = deviceOutput.split('\n').filter((l) => l.startsWith('{'));
        if (lines.length) resolve(JSON.parse(lines[0]));
      });
    });
    await withTimeout(new Promise((resolve) => delta.stdout.once('data', resolve)), WAIT, 'paho subscribed');
    await page.goto(`${origin}/#/devices/web-dev-1`);
    await page.waitForSelector('#desired', { timeout: WAIT });
    await page.fill('#desired', JSON.stringify({ led: 'on', interval: 5 }));
    await page.click('button:has-text("Update desired")');
    await page.waitForSelector('#shadow-message:has-text("version")', { timeout: WAIT });
    const seen = await withTimeout(deltaSeen, WAIT, 'the shadow delta at the paho device');
    assert.deepEqual(seen.state, { led: 'on', interval: 5 });
    await screenshot(page, 'shadow-desired');

    // A certificate made in the page: its downloaded files connect mosquitto over mTLS until the
    // page revokes it.
    await visit(page, origin, '#/registry', 'registry');
    await page.click('#create-certificate');
    await page.waitForSelector('#certificate-once', { timeout: WAIT });
    await screenshot(page, 'certificate-created');
    const files = {};
    for (const name of ['certificate.pem.crt', 'private.pem.key']) {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(`#certificate-once a:has-text("${name}")`)]);
      files[name] = join(server.dataDir, `download-${name}`);
      await download.saveAs(files[name]);
    }
    const certificatePem = readFileSync(files['certificate.pem.crt'], 'utf8');
    assert.match(certificatePem, /BEGIN CERTIFICATE/);
    // The policy and its attachment through the AWS routes, with the page's session.
    const arn = await page.evaluate(async (pem) => {
      const list = await (await fetch('/certificates')).json();
      for (const c of list.certificates) {
        const one = await (await fetch(`/certificates/${c.certificateId}`)).json();
        if (one.certificateDescription.certificatePem.trim() === pem.trim()) return c.certificateArn;
      }
      return null;
    }, certificatePem);
    assert.ok(arn, 'the downloaded certificate is registered');
    const policyStatus = await page.evaluate(async (certificateArn) => {
      const document = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'iot:*', Resource: '*' }] });
      const created = await fetch('/policies/web-device', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ policyDocument: document }) });
      const attached = await fetch('/target-policies/web-device', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ target: certificateArn }) });
      return [created.status, attached.status];
    }, arn);
    assert.deepEqual(policyStatus, [200, 200]);
    const caFile = join(server.dataDir, 'ca', 'root-CA.crt');
    const tls = ['-h', 'localhost', '-p', String(server.port('mqtts')), '--cafile', caFile,
      '--cert', files['certificate.pem.crt'], '--key', files['private.pem.key']];
    await run('mosquitto_pub', [...tls, '-i', 'web-cert-pub', '-t', 'web/cert', '-m', 'hello']);
    const subscriber = spawn('mosquitto_sub', [...tls, '-i', 'web-cert-sub', '-t', 'web/#', '-V', 'mqttv311'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const subscriberExit = new Promise((resolve) => subscriber.once('exit', (code) => resolve(code)));
    await withTimeout((async () => {
      for (;;) {
        const r = await fetch(`${origin}/metrics`);
        if (/nimbus_mqtt_clients_connected\s+[1-9]/.test(await r.text())) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(), WAIT, 'the mTLS subscriber connected');
    await page.goto(`${origin}/#/registry`);
    const certRow = `table#certificates tr[data-certificate-id="${arn.split('/').pop()}"]`;
    await page.waitForSelector(certRow, { timeout: WAIT });
    page.once('dialog', (dialog) => dialog.accept());  // "Revoke this certificate?"
    await page.click(`${certRow} button:has-text("Revoke")`);
    const code = await withTimeout(subscriberExit, WAIT, 'mosquitto_sub cut off by the revocation');
    assert.notEqual(code, 0);
    await assert.rejects(run('mosquitto_pub', [...tls, '-i', 'web-cert-pub2', '-t', 'web/cert', '-m', 'again']));
    await screenshot(page, 'certificate-revoked');

    // Pub/Sub: a subscription's backlog, which only /metrics knows, shown in the page.
    const project = await page.evaluate(async () => (await (await fetch('/api/overview')).json()).pubsub_project);
    assert.ok(project, 'the overview names the Pub/Sub project');
    const subscriptionName = `projects/${project}/subscriptions/s-web`;
    const pubsubStatus = await page.evaluate(async (p) => {
      const call = async (method, path, body) => (await fetch(`/v1/projects/${p}/${path}`, {
        method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      })).status;
      const statuses = [
        await call('PUT', 'topics/t-web', {}),
        await call('PUT', 'subscriptions/s-web', { topic: `projects/${p}/topics/t-web` }),
      ];
      const messages = ['one', 'two', 'three'].map((text) => ({ data: btoa(text) }));
      for (const message of messages) statuses.push(await call('POST', 'topics/t-web:publish', { messages: [message] }));
      return statuses;
    }, project);
    assert.deepEqual(pubsubStatus, [200, 200, 200, 200, 200]);
    await withTimeout((async () => {
      const line = `nimbus_pubsub_num_undelivered_messages{subscription="${subscriptionName}"} 3`;
      for (;;) {
        const text = await page.evaluate(async () => (await fetch('/metrics')).text());
        if (text.split('\n').includes(line)) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(), WAIT, 'the backlog of 3 in /metrics');
    await visit(page, origin, '#/pubsub', 'pubsub');
    const subscriptionRow = `table#subscriptions tr[data-subscription="${subscriptionName}"]`;
    await page.waitForSelector(subscriptionRow, { timeout: WAIT });
    assert.match(await page.textContent(`${subscriptionRow} td:last-child`), /^3 messages \([\d,]+ bytes\)$/);

    for (const [hash, name] of [['#/bridges', 'bridges'], ['#/metrics', 'metrics']])
      await visit(page, origin, hash, name);

    assert.deepEqual(offServer, [], 'requests that left the server');
    assert.deepEqual(errors, [], 'errors in the page');
  } finally {
    await context.close();
    await server.stop();
  }
});
