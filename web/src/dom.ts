// Small DOM helpers: elements built from data never go through innerHTML, so device ids and
// server messages can hold any characters.

type Child = Node | string | number | null | undefined | false;
// Arrays nest freely, so a map() of pairs can be passed as it is.
type Children = Child | Children[];
type Attributes = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Children[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') element.addEventListener(name.replace(/^on/, ''), value);
    else if (name === 'className') element.className = String(value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Children[]): void {
  for (const child of (children as unknown[]).flat(Infinity) as Child[]) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replaceChildren(parent: Element, ...children: Children[]): void {
  parent.textContent = '';
  append(parent, children);
}

// The one polite live region: screen readers hear status changes without losing focus.
export function announce(message: string): void {
  const region = document.getElementById('status');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick makes repeated identical messages heard again.
  setTimeout(() => (region.textContent = message), 50);
}

export function table(
  id: string | null,
  caption: string,
  headings: string[],
  attributes: Attributes = {},
): { table: HTMLTableElement; body: HTMLTableSectionElement } {
  const body = h('tbody');
  const element = h(
    'table',
    { id, ...attributes },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headings.map((text) => h('th', { scope: 'col' }, text)))),
    body,
  );
  return { table: element, body };
}

// A tbody row that says there is nothing to show, spanning every column.
export function emptyRow(columns: number, text: string): HTMLTableRowElement {
  return h('tr', { className: 'empty' }, h('td', { colspan: columns }, text));
}

export function button(
  text: string,
  onClick: (event: MouseEvent) => void,
  attributes: Attributes = {},
): HTMLButtonElement {
  return h('button', { type: 'button', ...attributes, onclick: onClick as EventListener }, text);
}

// Absolute local time, or a dash for nothing. Accepts ISO text, epoch ms or epoch seconds
// (AWS's creationDate), told apart by size.
export function formatTime(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === '') return '—';
  const date =
    typeof value === 'number' ? new Date(value < 1e11 ? value * 1000 : value) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function formatAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function formatNumber(value: unknown): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return value == null ? '—' : String(value);
  if (Number.isInteger(value)) return value.toLocaleString();
  return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

// A reading's fields as "temperature 24.5, humidity 60", without the bookkeeping keys.
export function formatReading(reading: Record<string, unknown> | null | undefined): string {
  if (!reading) return '—';
  const parts = Object.entries(reading)
    .filter(([key]) => key !== 'device_id' && key !== 'timestamp')
    .map(([key, value]) => `${key} ${typeof value === 'number' ? formatNumber(value) : String(value)}`);
  return parts.length ? parts.join(', ') : '—';
}

export function statusBadge(text: string, tone: string): HTMLSpanElement {
  return h('span', { className: `badge badge-${tone}` }, text);
}

export function section(id: string | null, heading: string, ...children: Children[]) {
  const headingId = `${id ?? heading.toLowerCase().replace(/\W+/g, '-')}-heading`;
  return h('section', { id, 'aria-labelledby': headingId }, h('h2', { id: headingId }, heading), ...children);
}
