// Boot and routing. The session decides between the sign-in page and the dashboard; pages
// other than sign-in are loaded on first visit so the first paint stays small.
import './style.css';
import { ApiError, setUnauthorizedHandler } from './api';
import { announce, button, h, replaceChildren } from './dom';
import { RouteContext, type PageRender } from './page';
import { renderSignIn } from './pages/signin';
import { fetchSession, signOut, type Session } from './session';
import { startStream, stopStream } from './stream';

type PageLoader = () => Promise<{ render: PageRender }>;

const pages: Record<string, PageLoader> = {
  '': () => import('./pages/home'),
  fleet: () => import('./pages/fleet'),
  devices: () => import('./pages/device'),
  alerts: () => import('./pages/alerts'),
  rules: () => import('./pages/rules'),
  registry: () => import('./pages/registry'),
  pubsub: () => import('./pages/pubsub'),
  bridges: () => import('./pages/bridges'),
  metrics: () => import('./pages/metrics'),
};

const navLinks: [string, string][] = [
  ['Home', '#/'], ['Fleet', '#/fleet'], ['Alerts', '#/alerts'], ['Rules', '#/rules'],
  ['Registry', '#/registry'], ['Pub/Sub', '#/pubsub'], ['Bridges', '#/bridges'],
  ['Metrics', '#/metrics'],
];

const main = document.getElementById('main') as HTMLElement;
const nav = document.getElementById('nav') as HTMLElement;
let session: Session | null = null;
let current: RouteContext | null = null;
let returnTo = '#/';
let navigationCount = 0;

function routeOf(hash: string): string[] {
  const path = hash.replace(/^#\/?/, '');
  return path.split('/').filter(Boolean).map((part) => decodeURIComponent(part));
}

function renderNav(): void {
  const signOutButton = button('Sign out', () => void doSignOut(), { id: 'signout', className: 'secondary' });
  replaceChildren(
    nav,
    h('ul', {}, navLinks.map(([text, href]) => h('li', {}, h('a', { href }, text)))),
    session?.principal ? h('span', { className: 'principal' }, session.principal) : null,
    signOutButton,
  );
  nav.hidden = false;
}

function markCurrentNav(section: string): void {
  for (const link of nav.querySelectorAll('a')) {
    const linkSection = routeOf(link.getAttribute('href') ?? '')[0] ?? '';
    const isCurrent = linkSection === section || (section === 'devices' && linkSection === 'fleet');
    if (isCurrent) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function signedIn(newSession: Session): void {
  session = newSession;
  renderNav();
  startStream();
}

function signedOut(): void {
  session = null;
  stopStream();
  nav.hidden = true;
  replaceChildren(nav);
}

async function doSignOut(): Promise<void> {
  try {
    await signOut();
  } catch (error) {
    announce(`Sign out failed: ${(error as Error).message}`);
    return;
  }
  signedOut();
  // A loopback-open install signs everyone in again; then the dashboard simply stays.
  const next = await fetchSession().catch(() => null);
  if (next?.signed_in) {
    signedIn(next);
    announce('Signed out; this server lets local connections in without signing in.');
    location.hash = '#/';
    void route();
    return;
  }
  returnTo = '#/';
  location.hash = '#/signin';
  announce('Signed out');
}

async function route(): Promise<void> {
  const parts = routeOf(location.hash);
  const name = parts[0] ?? '';
  current?.dispose();
  const context = new RouteContext(main, parts.slice(1));
  current = context;
  main.textContent = '';
  main.setAttribute('aria-busy', 'true');
  const isFirstPaint = navigationCount++ === 0;

  try {
    if (name === 'signin' || !session?.signed_in) {
      if (name !== 'signin') {
        returnTo = location.hash || '#/';
        history.replaceState(null, '', '#/signin');
      }
      markCurrentNav('signin');
      renderSignIn(context, (newSession) => {
        signedIn(newSession);
        const target = returnTo.startsWith('#/signin') ? '#/' : returnTo;
        returnTo = '#/';
        if (location.hash === target) void route();
        else location.hash = target;
      });
      return;
    }
    markCurrentNav(name);
    const loader = pages[name];
    if (!loader) {
      context.setTitle('Not found');
      main.append(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Go to the home page')));
      return;
    }
    const page = await loader();
    if (!context.isCurrent()) return;
    await page.render(context);
  } catch (error) {
    if (!context.isCurrent()) return;
    const message = error instanceof ApiError || error instanceof Error ? error.message : String(error);
    if (!main.querySelector('h1')) main.append(h('h1', {}, 'Something went wrong'));
    main.append(h('p', { className: 'error', role: 'alert' }, message));
  } finally {
    if (context.isCurrent()) {
      main.removeAttribute('aria-busy');
      // Move focus to the new content on navigation so keyboard and screen reader users follow.
      if (!isFirstPaint && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
    }
  }
}

setUnauthorizedHandler(() => {
  if (!session) return;
  signedOut();
  returnTo = location.hash && !location.hash.startsWith('#/signin') ? location.hash : '#/';
  location.hash = '#/signin';
});

async function boot(): Promise<void> {
  try {
    const found = await fetchSession();
    if (found.signed_in) signedIn(found);
  } catch (error) {
    main.append(
      h('h1', {}, 'Nimbus is not answering'),
      h('p', { className: 'error', role: 'alert' }, (error as Error).message),
    );
    return;
  }
  window.addEventListener('hashchange', () => void route());
  await route();
}

void boot();
