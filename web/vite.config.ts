import { defineConfig } from 'vite';

// The Nimbus HTTP listener a `npm run dev` session talks to.
const nimbus = 'http://127.0.0.1:8080';

// Every path the dashboard calls; the stream needs the WebSocket upgrade passed through.
const proxiedPaths = [
  '/api', '/things', '/rules', '/v1', '/query', '/certificates', '/policies',
  '/keys-and-certificate', '/thing-groups', '/target-policies', '/metrics', '/ca.crt',
];

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    target: 'es2020',
    // The page runs under CSP default-src 'self': no data: URIs.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: Object.fromEntries([
      ['/api/stream', { target: nimbus, ws: true }],
      ...proxiedPaths.map((path) => [path, { target: nimbus }]),
    ]),
  },
});
