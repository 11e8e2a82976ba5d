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
  const args = ['serve', '--data-dir', dataDir, '--mqtt', 'localhost:0', '--mqtts', 'localhost:0',
    '--http', 'localhost:0', '--https', 'localhost:0', '--grpc', 'off', ...extraArgs];
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
