// Every device that has reported, live. Up to `renderAllBelow` devices every row is in the DOM;
// above that only the rows in view are (fixed row height, spacer rows above and below), so
// 10,000 devices cost a screenful of rows.
import { get } from '../api';
import { emptyRow, formatAgo, formatReading, formatTime, h, replaceChildren, statusBadge, table } from '../dom';
import type { PageContext } from '../page';
import { listen, on, type StreamMessage } from '../stream';

interface Device {
  device_id: string;
  last_seen: string;
  last_reading: Record<string, unknown> | null;
  online: boolean;
  open_alerts: number;
}

const renderAllBelow = 200;
const rowHeight = 36; // px; matches --row-height in style.css
const overscanRows = 10;
const columns = ['Device', 'Status', 'Last seen', 'Last reading', 'Open alerts'];

function rowFor(device: Device): HTMLTableRowElement {
  return h('tr', { 'data-device-id': device.device_id },
    h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(device.device_id)}` }, device.device_id)),
    h('td', {}, device.online ? statusBadge('online', 'ok') : statusBadge('offline', 'off')),
    h('td', { title: formatTime(device.last_seen) }, formatAgo(device.last_seen)),
    h('td', {}, formatReading(device.last_reading)),
    h('td', { className: 'number' }, String(device.open_alerts)),
  );
}

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Fleet');
  const summary = h('p', { className: 'muted' });
  const { table: fleetTable, body } = table('fleet', 'Devices, newest data live', columns);
  const scroller = h('div', { className: 'table-scroll' }, fleetTable);
  context.main.append(h('h1', {}, 'Fleet'), summary, scroller);

  const devices = new Map<string, Device>();
  // Presence seen for clients not (yet) in the table: a device connects before its first reading.
  const connectedClients = new Set<string>();
  let order: string[] = [];
  let isVirtual = false;
  const rowsById = new Map<string, HTMLTableRowElement>();
  let frame = 0;
  let isOrderStale = false;

  const describe = () => {
    let online = 0;
    for (const device of devices.values()) if (device.online) online++;
    summary.textContent = `${devices.size} devices, ${online} online.`;
  };

  const renderVisible = () => {
    frame = 0;
    if (isOrderStale) {
      order = [...devices.keys()].sort();
      isOrderStale = false;
    }
    const shouldVirtualize = order.length >= renderAllBelow;
    if (shouldVirtualize !== isVirtual) {
      isVirtual = shouldVirtualize;
      scroller.className = isVirtual ? 'virtual-scroll' : 'table-scroll';
      // A scrolling region must be reachable by keyboard to be scrolled.
      if (isVirtual) {
        scroller.setAttribute('tabindex', '0');
        scroller.setAttribute('role', 'region');
        scroller.setAttribute('aria-label', 'Devices (scrollable)');
      } else {
        scroller.removeAttribute('tabindex');
        scroller.removeAttribute('role');
        scroller.removeAttribute('aria-label');
      }
    }
    describe();
    rowsById.clear();
    if (order.length === 0) {
      replaceChildren(body, emptyRow(columns.length, 'No device has sent a reading yet. See the home page for a first command.'));
      return;
    }
    let first = 0;
    let last = order.length;
    if (isVirtual) {
      const viewRows = Math.ceil(scroller.clientHeight / rowHeight) || 30;
      first = Math.max(0, Math.floor(scroller.scrollTop / rowHeight) - overscanRows);
      last = Math.min(order.length, first + viewRows + 2 * overscanRows);
    }
    const rows: HTMLTableRowElement[] = [];
    if (first > 0) rows.push(spacer(first * rowHeight));
    for (let i = first; i < last; i++) {
      const row = rowFor(devices.get(order[i])!);
      rowsById.set(order[i], row);
      rows.push(row);
    }
    if (last < order.length) rows.push(spacer((order.length - last) * rowHeight));
    replaceChildren(body, rows);
  };

  const spacer = (height: number) => {
    const cell = h('td', { colspan: columns.length });
    cell.style.height = `${height}px`;
    return h('tr', { className: 'spacer', 'aria-hidden': 'true' }, cell);
  };

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(renderVisible);
  };
  context.cleanup(() => cancelAnimationFrame(frame));
  scroller.addEventListener('scroll', () => isVirtual && schedule(), { passive: true });

  // One device changed: patch its row when drawn, else a full redraw only if it is new.
  const changed = (device: Device, isNew: boolean) => {
    if (isNew) {
      isOrderStale = true;
      schedule();
      return;
    }
    const row = rowsById.get(device.device_id);
    if (!row) return;
    const replacement = rowFor(device);
    row.replaceWith(replacement);
    rowsById.set(device.device_id, replacement);
    describe();
  };

  const load = async () => {
    const answer = await get<{ devices: Device[] }>('/api/devices');
    if (!context.isCurrent()) return;
    devices.clear();
    for (const device of answer.devices ?? []) devices.set(device.device_id, { ...device, open_alerts: device.open_alerts ?? 0 });
    isOrderStale = true;
    renderVisible();
  };

  context.cleanup(listen(['fleet', 'alerts'], (message: StreamMessage) => {
    if (message.channel === 'fleet') {
      const id = String(message.device_id ?? '');
      if (!id) return;
      const existing = devices.get(id);
      const device: Device = existing ?? { device_id: id, last_seen: '', last_reading: null, online: connectedClients.has(id), open_alerts: 0 };
      if (typeof message.last_seen === 'string') device.last_seen = message.last_seen;
      if (message.last_reading && typeof message.last_reading === 'object') device.last_reading = message.last_reading as Record<string, unknown>;
      if (typeof message.online === 'boolean') device.online = message.online;
      devices.set(id, device);
      changed(device, !existing);
    } else if (message.channel === 'alerts') {
      const alert = message.alert as { device_id?: string } | undefined;
      const device = alert?.device_id ? devices.get(alert.device_id) : undefined;
      if (!device) return;
      if (message.event === 'raised') device.open_alerts++;
      else if (message.event === 'cleared') device.open_alerts = Math.max(0, device.open_alerts - 1);
      else return;
      changed(device, false);
    }
  }));
  context.cleanup(on('presence', (message) => {
    const clientId = String(message.client_id ?? '');
    if (typeof message.connected !== 'boolean') return;
    if (message.connected) connectedClients.add(clientId);
    else connectedClients.delete(clientId);
    const device = devices.get(clientId);
    if (!device) return;
    device.online = message.connected;
    changed(device, false);
  }));
  // "Last seen" is relative; redraw it every half minute (no fetching, just text).
  const clock = setInterval(() => devices.size < renderAllBelow * 50 && schedule(), 30_000);
  context.cleanup(() => clearInterval(clock));
  context.onResync(() => void load().catch(() => {}));
  await load();
}
