// Broker figures as the stream pushes them; nothing is fetched, so the table fills with the
// first "metrics" message after subscribing.
import { formatNumber, h, replaceChildren, table } from '../dom';
import type { PageContext } from '../page';
import { isStreamConnected, listen } from '../stream';

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Metrics');
  const metrics = table('metrics', 'Broker metrics, updated live', ['Metric', 'Value']);
  const note = h('p', { className: 'muted' }, isStreamConnected() ? 'Waiting for the first update…' : 'Connecting to the live stream…');
  const updated = h('p', { className: 'hint' });
  replaceChildren(metrics.body);
  context.main.append(h('h1', {}, 'Metrics'), note, h('div', { className: 'table-scroll' }, metrics.table), updated,
    h('p', {}, 'Prometheus scrapes the full set at ', h('a', { href: '/metrics' }, '/metrics'), '.'));

  const cells = new Map<string, HTMLTableCellElement>();
  context.cleanup(listen(['metrics'], (message) => {
    const figures = message.metrics as Record<string, unknown> | undefined;
    if (!figures || typeof figures !== 'object') return;
    note.textContent = '';
    const names = Object.keys(figures).sort();
    const isNewSet = names.some((name) => !cells.has(name));
    if (isNewSet) {
      cells.clear();
      replaceChildren(metrics.body, names.map((name) => {
        const cell = h('td', { className: 'number' });
        cells.set(name, cell);
        return h('tr', { 'data-metric': name }, h('th', { scope: 'row' }, name), cell);
      }));
    }
    for (const name of names) {
      const value = figures[name];
      cells.get(name)!.textContent = typeof value === 'number' ? formatNumber(value) : String(value);
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }));
}
