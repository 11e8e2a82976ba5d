// The web dashboard under load (issue 16), Nimbus alone (no peer serves this dashboard):
// DEVICES devices publishing once a second (MQTT.js, CONNECTIONS connections), Debian's Chromium
// headless (playwright-core) on the dashboard. Prints one JSON object:
//   server_cpu_percent_{idle,fleet,device}: the nimbus process's CPU over each window, with no
//     dashboard open, with the fleet page open, with a device page open (the stream's cost is
//     the difference);
//   publish_to_paint_ms {p50,p99,samples}: from a reading's publish (its sent_ms field) to the
//     frame after the fleet row showing it changed;
//   frame_ms {fleet,device}: {p50,p95} of requestAnimationFrame intervals while updates stream;
//   first_contentful_paint_ms {home,fleet}: performance's paint entry on a fresh load.
//   node bench/dashboard_bench.mjs [--devices 1000] [--seconds 10]
// NIMBUS_BIN names the binary (default build/nimbus); CHROMIUM the browser (/usr/bin/chromium).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The test clients' packages (tests/clients/node: `make clients`), pinned there.
const require = createRequire(join(root, 'tests', 'clients', 'node', 'package.json'));
const { chromium } = require('playwright-core');
const mqtt = require('mqtt');

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const DEVICES = option('devices', 1000);
const SECONDS = option('seconds', 10);
const CONNECTIONS = 20;
const nimbusBin = process.env.NIMBUS_BIN || join(root, 'build', 'nimbus');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (values, p) => {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

async function startNimbus() {
  const dataDir = mkdtempSync(join(tmpdir(), 'nimbus-dashboard-bench-'));
  const child = spawn(nimbusBin, ['serve', '--data-dir', dataDir, '--mqtt', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--mqtts', 'off', '--https', 'off', '--grpc', 'off', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const endpoints = join(dataDir, 'endpoints.json');
  for (let waited = 0; !existsSync(endpoints); waited += 50) {
    if (child.exitCode !== null || waited > 20000) throw new Error('nimbus did not start');
    await sleep(50);
  }
  const bound = JSON.parse(readFileSync(endpoints, 'utf8'));
  const port = (name) => Number(bound[name].split(':').pop());
  return {
    pid: child.pid, mqttPort: port('mqtt'), httpPort: port('http'),
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// utime + stime of a process, in clock ticks (100 per second on Linux).
function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function cpuPercentOver(pid, seconds) {
  const t0 = cpuTicks(pid);
  await sleep(seconds * 1000);
  return ((cpuTicks(pid) - t0) / 100 / seconds) * 100;
}

// DEVICES devices, each publishing once a second, spread evenly over the second.
async function startDevices(port) {
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => new Promise((resolve, reject) => {
    const client = mqtt.connect({ host: '127.0.0.1', port, clientId: `bench-conn-${i}`, reconnectPeriod: 0 });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  })));
  let next = 0;
  const tickMs = 10;
  const perTick = Math.max(1, Math.round(DEVICES / (1000 / tickMs)));
  const timer = setInterval(() => {
    for (let k = 0; k < perTick; ++k) {
      const device = next++ % DEVICES;
      const payload = JSON.stringify({ device_id: `dev-${String(device).padStart(4, '0')}`,
        temperature: 20 + (device % 10) + Math.random(), humidity: 50 + Math.random(), sent_ms: Date.now() });
      clients[device % CONNECTIONS].publish('sensor/data', payload, { qos: 0 });
    }
  }, tickMs);
  return { stop: () => { clearInterval(timer); clients.forEach((c) => c.end(true)); } };
}

// In the page: frame intervals, and each fleet row change's sent_ms against the next frame.
function instrument() {
  window.__frames = [];
  window.__latencies = [];
  let last = performance.now();
  const frame = (now) => {
    window.__frames.push(now - last);
    last = now;
    window.__rafId = requestAnimationFrame(frame);
  };
  window.__rafId = requestAnimationFrame(frame);
  const table = document.querySelector('table#fleet');
  if (!table) return;
  new MutationObserver((mutations) => {
    const sent = [];
    for (const m of mutations)
      for (const node of m.addedNodes) {
        const match = /sent_ms ([\d,]+)/.exec(node.textContent ?? '');
        if (match) sent.push(Number(match[1].replace(/,/g, '')));
      }
    if (sent.length)
      requestAnimationFrame(() => {
        const painted = Date.now();
        for (const s of sent) window.__latencies.push(painted - s);
      });
  }).observe(table, { childList: true, subtree: true });
}

async function firstContentfulPaint(browser, url) {
  const page = await browser.newPage();
  await page.goto(url, { waitUntil: 'networkidle' });
  const fcp = await page.evaluate(() =>
    performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint')?.startTime ?? null);
  await page.close();
  return fcp;
}

const server = await startNimbus();
const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
const origin = `http://localhost:${server.httpPort}`;
const result = { devices: DEVICES, seconds: SECONDS };
try {
  result.first_contentful_paint_ms = {
    home: await firstContentfulPaint(browser, `${origin}/#/`),
    fleet: await firstContentfulPaint(browser, `${origin}/#/fleet`),
  };
  const devices = await startDevices(server.mqttPort);
  await sleep(2000);  // every device seen once
  result.server_cpu_percent_idle = await cpuPercentOver(server.pid, SECONDS);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${origin}/#/fleet`, { waitUntil: 'networkidle' });
  await page.waitForSelector('table#fleet tr[data-device-id]');
  await page.evaluate(instrument);
  result.server_cpu_percent_fleet = await cpuPercentOver(server.pid, SECONDS);
  const fleet = await page.evaluate(() => ({ frames: window.__frames.slice(1), latencies: window.__latencies }));
  result.publish_to_paint_ms = {
    p50: percentile(fleet.latencies, 50), p99: percentile(fleet.latencies, 99), samples: fleet.latencies.length,
  };

  await page.goto(`${origin}/#/devices/dev-0001`, { waitUntil: 'networkidle' });
  await page.waitForSelector('figure[data-field="temperature"]');
  await page.evaluate(instrument);
  result.server_cpu_percent_device = await cpuPercentOver(server.pid, SECONDS);
  const device = await page.evaluate(() => ({ frames: window.__frames.slice(1) }));
  result.frame_ms = {
    fleet: { p50: percentile(fleet.frames, 50), p95: percentile(fleet.frames, 95) },
    device: { p50: percentile(device.frames, 50), p95: percentile(device.frames, 95) },
  };
  const dropped = await (await fetch(`${origin}/metrics`)).text();
  result.stream_dropped = Number(/nimbus_dashboard_stream_dropped_total (\d+)/.exec(dropped)?.[1] ?? 0);
  devices.stop();
} finally {
  await browser.close();
  await server.stop();
}
console.log(JSON.stringify(result));
