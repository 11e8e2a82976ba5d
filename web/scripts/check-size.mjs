// Fails the build when what index.html loads up front (entry script, its modulepreloads and
// stylesheets) is over budget gzipped. Lazily imported chunks are not counted.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const budgetBytes = 150 * 1024;
const dist = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const html = readFileSync(join(dist, 'index.html'), 'utf8');

const initial = new Set();
for (const tag of html.match(/<(script|link)\b[^>]*>/g) ?? []) {
  const src = /\b(?:src|href)="([^"]+)"/.exec(tag)?.[1];
  if (!src || !/\.(js|css)$/.test(src)) continue;
  const isScript = tag.startsWith('<script') && /type="module"/.test(tag);
  const isPreload = /rel="modulepreload"/.test(tag);
  const isStylesheet = /rel="stylesheet"/.test(tag);
  if (isScript || isPreload || isStylesheet) initial.add(src.replace(/^\//, ''));
}

let total = 0;
for (const file of initial) {
  const gzipped = gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
  total += gzipped;
  console.log(`  ${file}  ${(gzipped / 1024).toFixed(1)} KB gzip`);
}
const verdict = total > budgetBytes ? 'OVER BUDGET' : 'ok';
console.log(`initial JS+CSS: ${(total / 1024).toFixed(1)} KB gzip (budget 150 KB) ${verdict}`);
if (initial.size === 0) {
  console.error('check-size: index.html loads no script or stylesheet; is dist/ a vite build?');
  process.exit(1);
}
if (total > budgetBytes) process.exit(1);
