// Starts the nimbus binary on free loopback ports in a temporary data directory and stops it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export async function startNimbus(extraArgs = []) {
  const bin = process.env.NIMBUS_BIN;
  if (!bin) throw new Error('NIMBUS_BIN is not set');
  const dataDir = mkdtempSync(join(tmpdir(), 'nimbus-node-'));
  // "localhost" binds 127.0.0.1 and [::1] on one port: the tests reach it as users do, by a
  // name Node 18 resolves to ::1 first and Node 20 to either.
  // Pub/Sub's gRPC port stays off unless the suite asks for it in extraArgs.
  const grpc = extraArgs.includes('--grpc') ? [] : ['--grpc', 'off'];
  const args = ['serve', '--data-dir', dataDir, '--mqtt', 'localhost:0', '--mqtts', 'localhost:0',
    '--http', 'localhost:0', '--https', 'localhost:0', ...grpc, ...extraArgs];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  const endpointsFile = join(dataDir, 'endpoints.json');
  const deadline = Date.now() + 20000;
  while (!existsSync(endpointsFile)) {
    if (child.exitCode !== null) throw new Error(`nimbus exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`nimbus did not start:\n${log}`);
    await sleep(50);
  }
  const endpoints = JSON.parse(readFileSync(endpointsFile, 'utf8'));
  return {
    endpoints,
    dataDir,
    pid: child.pid,  // for /proc/PID (memory checks); only ever signalled through stop()
    port: (name) => Number(endpoints[name].split(':').pop()),
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
      return child.exitCode;
    },
  };
}

// The [default] keys of an AWS credentials file (<data>/credentials), as the AWS SDK for
// JavaScript takes them.
export function readCredentials(path) {
  const out = {};
  let section = '';
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trim();
    const header = /^\[(.+)\]$/.exec(line);
    if (header) { section = header[1]; continue; }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (section === 'default' && kv) out[kv[1]] = kv[2];
  }
  if (!out.aws_access_key_id || !out.aws_secret_access_key) throw new Error(`no [default] keys in ${path}`);
  return { accessKeyId: out.aws_access_key_id, secretAccessKey: out.aws_secret_access_key };
}

// `promise`, or a rejection naming `what` after `ms`: every wait in the suites is bounded.
export function withTimeout(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
