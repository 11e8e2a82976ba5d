// Bridges to other brokers: state and counters, live from the "bridges" channel.
import { get } from '../api';
import { emptyRow, formatNumber, h, replaceChildren, statusBadge, table } from '../dom';
import type { PageContext } from '../page';
import { listen } from '../stream';

interface Bridge {
  name: string;
  kind: string;
  source?: string;
  status?: {
    state?: string;
    remote?: string;
    last_error?: string;
    received?: number;
    forwarded?: number;
    reconnects?: number;
    queued_messages?: number;
    dropped?: Record<string, number> | number;
  };
}

const columns = ['Name', 'Kind', 'State', 'Received', 'Forwarded', 'Queued', 'Dropped', 'Reconnects', 'Last error'];

// The server splits drops by cause; the table shows their total, the breakdown on hover.
function dropped(value: Record<string, number> | number | undefined): { total: number; detail: string } {
  if (typeof value === 'number') return { total: value, detail: '' };
  const entries = Object.entries(value ?? {}).filter(([, n]) => typeof n === 'number');
  return {
    total: entries.reduce((sum, [, n]) => sum + n, 0),
    detail: entries.filter(([, n]) => n > 0).map(([cause, n]) => `${cause} ${n}`).join(', '),
  };
}

function stateTone(state: string): string {
  if (state === 'connected') return 'ok';
  if (state === 'failed' || state === 'error') return 'critical';
  return 'off';
}

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Bridges');
  const bridges = table('bridges', 'Bridges, updated live', columns);
  context.main.append(h('h1', {}, 'Bridges'), h('div', { className: 'table-scroll' }, bridges.table));

  const show = (list: Bridge[]) => {
    replaceChildren(bridges.body, list.length ? list.map((bridge) => {
      const s = bridge.status ?? {};
      const drops = dropped(s.dropped);
      const state = s.state ?? 'unknown';
      return h('tr', { 'data-bridge-name': bridge.name },
        h('th', { scope: 'row' }, bridge.name),
        h('td', {}, bridge.kind),
        h('td', {}, statusBadge(state, stateTone(state)), s.remote ? h('div', { className: 'hint' }, s.remote) : null),
        h('td', { className: 'number' }, formatNumber(s.received)),
        h('td', { className: 'number' }, formatNumber(s.forwarded)),
        h('td', { className: 'number' }, formatNumber(s.queued_messages)),
        h('td', { className: 'number', title: drops.detail || null }, formatNumber(drops.total)),
        h('td', { className: 'number' }, formatNumber(s.reconnects)),
        h('td', {}, s.last_error || '—'));
    }) : emptyRow(columns.length, 'No bridges configured.'));
  };

  const load = async () => {
    const answer = await get<{ bridges: Bridge[] }>('/api/bridges');
    if (context.isCurrent()) show(answer.bridges ?? []);
  };
  context.cleanup(listen(['bridges'], (message) => {
    if (Array.isArray(message.bridges)) show(message.bridges as Bridge[]);
  }));
  context.onResync(() => void load().catch(() => {}));
  await load();
}
