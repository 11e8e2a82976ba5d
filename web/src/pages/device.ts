// One device: a chart per numeric field (downsampled history from /query, then each live
// point appended), statistics, daily summaries and its shadow. uPlot lives only in this
// lazily loaded page, outside the first paint's budget.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { ApiError, encode, get, getOverview, post, request } from '../api';
import { announce, button, emptyRow, formatNumber, formatTime, h, replaceChildren, section, statusBadge, table } from '../dom';
import type { PageContext } from '../page';
import { listen, on } from '../stream';

interface Range {
  label: string;
  hours: number;
  bucket: string; // GROUP BY time(...) giving ~300 buckets
}

const ranges: Range[] = [
  { label: '1 h', hours: 1, bucket: '12s' },
  { label: '24 h', hours: 24, bucket: '5m' },
  { label: '7 d', hours: 168, bucket: '30m' },
];

interface Series {
  xs: number[]; // unix seconds, ascending
  ys: number[];
}

interface Chart {
  field: string;
  figure: HTMLElement;
  summary: HTMLElement;
  plot: uPlot | null;
  series: Series;
}

interface InfluxAnswer {
  results?: { series?: { columns: string[]; values: (number | null)[][] }[]; error?: string }[];
  error?: string;
}

interface AlertItem {
  id: number;
  type: string;
  device_id: string;
  severity: string;
  status: string;
  raised_at: string;
  value: number;
}

const quoteIdentifier = (name: string) => `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
const quoteString = (text: string) => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

// The window from /query: mean of every field per bucket. Null when the query is not usable
// (no tsdb access, unknown measurement), so the caller falls back to raw readings.
async function loadDownsampled(id: string, range: Range): Promise<Map<string, Series> | null> {
  const { devices } = await getOverview();
  if (!devices?.database || !devices.measurement || !devices.tag) return null;
  const q = `SELECT mean(*) FROM ${quoteIdentifier(devices.measurement)} WHERE ${quoteIdentifier(devices.tag)} = ${quoteString(id)} AND time > now() - ${range.hours}h GROUP BY time(${range.bucket}) fill(none)`;
  let answer: InfluxAnswer;
  try {
    // A 401 here may only mean /query wants its own credentials: fall back, stay signed in.
    answer = await request<InfluxAnswer>(`/query?db=${encode(devices.database)}&epoch=ms&q=${encode(q)}`, { allowUnauthorized: true });
  } catch {
    return null;
  }
  const result = answer.results?.[0];
  if (!result || result.error) return null;
  const out = new Map<string, Series>();
  const found = result.series?.[0];
  if (!found) return out;
  found.columns.forEach((column, index) => {
    if (index === 0 || !column.startsWith('mean_')) return;
    const series: Series = { xs: [], ys: [] };
    for (const row of found.values) {
      const value = row[index];
      if (typeof value === 'number' && typeof row[0] === 'number') {
        series.xs.push(row[0] / 1000);
        series.ys.push(value);
      }
    }
    out.set(column.slice('mean_'.length), series);
  });
  return out;
}

async function loadRaw(id: string, range: Range): Promise<Map<string, Series>> {
  const answer = await get<{ readings: Record<string, unknown>[] }>(
    `/api/devices/${encode(id)}/readings?hours=${range.hours}&limit=1000`,
  );
  const out = new Map<string, Series>();
  for (const reading of [...(answer.readings ?? [])].reverse()) {
    const time = Date.parse(String(reading.timestamp)) / 1000;
    for (const [field, value] of Object.entries(reading)) {
      if (typeof value !== 'number' || Number.isNaN(time)) continue;
      if (!out.has(field)) out.set(field, { xs: [], ys: [] });
      out.get(field)!.xs.push(time);
      out.get(field)!.ys.push(value);
    }
  }
  return out;
}

// Removed keys of the old desired state become nulls, which is how a shadow deletes them.
function withDeletions(before: unknown, after: unknown): unknown {
  if (!isObject(before) || !isObject(after)) return after;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(before)) if (!(key in after)) out[key] = null;
  for (const [key, value] of Object.entries(after)) out[key] = withDeletions(before[key], value);
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export async function render(context: PageContext): Promise<void> {
  const id = context.params[0] ?? '';
  context.setTitle(`Device ${id}`);
  let range = ranges[0];
  const charts = new Map<string, Chart>();
  const markers: number[] = []; // alert raise times, unix seconds
  let isLoading = true;
  let pending: { time: number; fields: Record<string, unknown> }[] = [];

  const lastSeen = h('span', {}, '—');
  const presence = h('span', {}, statusBadge('status unknown', 'off'));
  const chartArea = h('div', { className: 'charts', id: 'charts' });
  const chartNote = h('p', { className: 'muted' });
  const rangeButtons = ranges.map((r) =>
    button(r.label, () => void selectRange(r), { 'aria-pressed': String(r === range), className: 'secondary' }));

  const stats = table('stats', 'Statistics', ['Field', 'Minimum', 'Maximum', 'Average']);
  const dailyHolder = h('div', { className: 'table-scroll' });
  const deviceAlerts = table('device-alerts', 'Alerts on this device (newest first)', ['Type', 'Severity', 'Status', 'Value', 'Raised']);

  context.main.append(
    h('h1', {}, `Device ${id}`),
    h('p', {}, presence, ' · last reading ', lastSeen, ' · ', h('a', { href: '#/fleet' }, 'back to the fleet')),
    section('charts-section', 'Readings',
      h('div', { className: 'row', role: 'group', 'aria-label': 'Time range' }, rangeButtons),
      chartNote,
      chartArea),
    section('alerts-section', 'Alerts', h('div', { className: 'table-scroll' }, deviceAlerts.table)),
    section('stats-section', 'Statistics', h('div', { className: 'table-scroll' }, stats.table)),
    section('daily-section', 'Daily summary', dailyHolder),
  );
  const shadowSection = renderShadow(context, id);
  context.main.append(shadowSection);

  // ------------------------------------------------------------------ charts

  const markerPlugin: uPlot.Plugin = {
    hooks: {
      draw: (plot: uPlot) => {
        const ctx = plot.ctx;
        const { top, height } = plot.bbox;
        ctx.save();
        ctx.strokeStyle = '#b3261e';
        ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
        ctx.setLineDash([6, 4]);
        for (const at of markers) {
          const x = Math.round(plot.valToPos(at, 'x', true));
          if (x < plot.bbox.left || x > plot.bbox.left + plot.bbox.width) continue;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
        }
        ctx.restore();
      },
    },
  };

  const chartWidth = () => Math.max(280, (chartArea.clientWidth > 600 ? chartArea.clientWidth / 2 : chartArea.clientWidth) - 40);

  const describeChart = (chart: Chart) => {
    const { ys } = chart.series;
    chart.figure.setAttribute('data-points', String(ys.length));
    if (!ys.length) {
      chart.summary.textContent = `No ${chart.field} readings in the last ${range.label}.`;
      return;
    }
    let min = Infinity, max = -Infinity;
    for (const y of ys) { if (y < min) min = y; if (y > max) max = y; }
    chart.summary.textContent = `${chart.field}: ${ys.length} points over the last ${range.label}; latest ${formatNumber(ys[ys.length - 1])}, lowest ${formatNumber(min)}, highest ${formatNumber(max)}.`;
  };

  const windowStart = () => Date.now() / 1000 - range.hours * 3600;

  const draw = (chart: Chart) => {
    const data: uPlot.AlignedData = [chart.series.xs, chart.series.ys];
    if (!chart.plot) {
      chart.plot = new uPlot({
        width: chartWidth(),
        height: 220,
        legend: { show: false },
        scales: { x: { time: true, range: () => [windowStart(), Date.now() / 1000] } },
        axes: [{ stroke: '#1a1a1a' }, { stroke: '#1a1a1a', size: 60 }],
        series: [{}, { label: chart.field, stroke: '#0b57d0', width: 2, points: { show: chart.series.xs.length < 60 } }],
        plugins: [markerPlugin],
      }, data, chart.figure.querySelector('.plot') as HTMLElement);
    } else {
      chart.plot.setData(data);
    }
    describeChart(chart);
  };

  const chartFor = (field: string): Chart => {
    let chart = charts.get(field);
    if (chart) return chart;
    const summary = h('p', { className: 'visually-hidden' });
    const figure = h('figure', { className: 'chart', 'data-field': field, 'data-points': '0', 'aria-label': `${field} over the last ${range.label}` },
      h('figcaption', {}, field),
      h('div', { className: 'plot', 'aria-hidden': 'true' }),
      summary);
    // Keep the charts in field order.
    const after = [...charts.keys()].sort().find((name) => name > field);
    chartArea.insertBefore(figure, after ? charts.get(after)!.figure : null);
    chart = { field, figure, summary, plot: null, series: { xs: [], ys: [] } };
    charts.set(field, chart);
    chartNote.textContent = '';
    return chart;
  };

  const resizer = new ResizeObserver(() => {
    for (const chart of charts.values()) chart.plot?.setSize({ width: chartWidth(), height: 220 });
  });
  resizer.observe(chartArea);
  context.cleanup(() => resizer.disconnect());
  context.cleanup(() => charts.forEach((chart) => chart.plot?.destroy()));

  const appendPoint = (time: number, fields: Record<string, unknown>) => {
    const start = windowStart();
    for (const [field, value] of Object.entries(fields)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) continue;
      const chart = chartFor(field);
      const { xs, ys } = chart.series;
      let at = xs.length;
      while (at > 0 && xs[at - 1] > time) at--;
      xs.splice(at, 0, time);
      ys.splice(at, 0, value);
      let stale = 0;
      while (stale < xs.length && xs[stale] < start) stale++;
      if (stale) { xs.splice(0, stale); ys.splice(0, stale); }
      draw(chart);
    }
  };

  const loadCharts = async () => {
    isLoading = true;
    const loaded = (await loadDownsampled(id, range)) ?? (await loadRaw(id, range));
    if (!context.isCurrent()) return;
    for (const chart of charts.values()) chart.plot?.destroy();
    charts.clear();
    chartArea.textContent = '';
    for (const field of [...loaded.keys()].sort()) {
      const chart = chartFor(field);
      chart.series = loaded.get(field)!;
      draw(chart);
    }
    if (!charts.size) chartNote.textContent = `No numeric readings in the last ${range.label}; new ones will appear here as they arrive.`;
    isLoading = false;
    for (const point of pending) appendPoint(point.time, point.fields);
    pending = [];
  };

  // ------------------------------------------------------------------ tables

  const loadStats = async () => {
    const caption = stats.table.querySelector('caption')!;
    try {
      const answer = await get<Record<string, unknown>>(`/api/devices/${encode(id)}/stats?hours=${range.hours}`);
      if (!context.isCurrent()) return;
      caption.textContent = `Statistics, last ${range.label} (${formatNumber(answer.reading_count)} readings)`;
      const rows = Object.entries(answer)
        .filter(([, value]) => isObject(value) && 'avg' in (value as object))
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([field, value]) => {
          const s = value as { min: number; max: number; avg: number };
          return h('tr', {}, h('th', { scope: 'row' }, field),
            h('td', { className: 'number' }, formatNumber(s.min)),
            h('td', { className: 'number' }, formatNumber(s.max)),
            h('td', { className: 'number' }, formatNumber(s.avg)));
        });
      replaceChildren(stats.body, rows.length ? rows : emptyRow(4, 'No numeric fields.'));
    } catch (error) {
      if (!context.isCurrent()) return;
      caption.textContent = `Statistics, last ${range.label}`;
      replaceChildren(stats.body, emptyRow(4, error instanceof ApiError && error.status === 404 ? `No data in the last ${range.label}.` : (error as Error).message));
    }
  };

  const loadDaily = async () => {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    const answer = await get<{ days: Record<string, unknown>[]; tz?: string }>(
      `/api/devices/${encode(id)}/stats/daily?days=7&tz=${encode(zone)}`);
    if (!context.isCurrent()) return;
    const fields = new Set<string>();
    for (const day of answer.days ?? []) for (const [key, value] of Object.entries(day)) if (isObject(value)) fields.add(key);
    const fieldList = [...fields].sort();
    const daily = table('daily', `Last 7 days by local date (${answer.tz ?? zone}): minimum / average / maximum`,
      ['Date', 'Readings', ...fieldList]);
    for (const day of [...(answer.days ?? [])].reverse()) {
      daily.body.append(h('tr', {}, h('th', { scope: 'row' }, String(day.date)),
        h('td', { className: 'number' }, formatNumber(day.reading_count)),
        fieldList.map((field) => {
          const s = day[field] as { min: number; max: number; avg: number } | undefined;
          return h('td', { className: 'number' }, s ? `${formatNumber(s.min)} / ${formatNumber(s.avg)} / ${formatNumber(s.max)}` : '—');
        })));
    }
    if (!answer.days?.length) daily.body.append(emptyRow(2, 'No data.'));
    replaceChildren(dailyHolder, daily.table);
  };

  const alertRow = (alert: AlertItem) => h('tr', { 'data-alert-id': String(alert.id) },
    h('td', {}, h('a', { href: `#/alerts/${alert.id}` }, alert.type)),
    h('td', {}, statusBadge(alert.severity, alert.severity)),
    h('td', {}, alert.status),
    h('td', { className: 'number' }, formatNumber(alert.value)),
    h('td', {}, formatTime(alert.raised_at)));

  const loadAlerts = async () => {
    const answer = await get<{ alerts: AlertItem[] }>(`/api/alerts?device_id=${encode(id)}&status=all&limit=100`);
    if (!context.isCurrent()) return;
    markers.length = 0;
    for (const alert of answer.alerts ?? []) markers.push(Date.parse(alert.raised_at) / 1000);
    replaceChildren(deviceAlerts.body, answer.alerts?.length ? answer.alerts.map(alertRow) : emptyRow(5, 'No alerts.'));
    charts.forEach((chart) => chart.plot?.redraw());
  };

  // Online state and last reading as the fleet table has them. The whole fleet answer is
  // asked for by id (/api/devices?device_id=).
  const loadPresence = async () => {
    const answer = await get<{ devices: { device_id: string; last_seen: string; online: boolean }[] }>(`/api/devices?device_id=${encodeURIComponent(id)}`);
    const mine = answer.devices?.find((device) => device.device_id === id);
    if (!context.isCurrent()) return;
    if (!mine) {
      replaceChildren(presence, statusBadge('no readings yet', 'off'));
      return;
    }
    lastSeen.textContent = formatTime(mine.last_seen);
    replaceChildren(presence, mine.online ? statusBadge('online', 'ok') : statusBadge('offline', 'off'));
  };

  const selectRange = async (next: Range) => {
    range = next;
    rangeButtons.forEach((b, i) => b.setAttribute('aria-pressed', String(ranges[i] === range)));
    announce(`Showing the last ${range.label}`);
    await Promise.all([loadCharts(), loadStats()]).catch((error) => announce((error as Error).message));
  };

  const loadAll = () => Promise.all([
    loadCharts(), loadStats(), loadDaily(), loadAlerts(), loadPresence(),
  ]);

  // Live: each point goes on the chart; alerts add markers; presence flips the badge.
  context.cleanup(listen([`device:${id}`], (message) => {
    const time = typeof message.time_ms === 'number' ? message.time_ms / 1000 : Date.parse(String(message.time)) / 1000;
    const fields = (message.fields ?? {}) as Record<string, unknown>;
    if (Number.isNaN(time)) return;
    lastSeen.textContent = formatTime(time * 1000);
    if (isLoading) pending.push({ time, fields });
    else appendPoint(time, fields);
  }));
  context.cleanup(listen(['alerts'], (message) => {
    const alert = message.alert as AlertItem | undefined;
    if (!alert || alert.device_id !== id) return;
    if (message.event === 'raised') {
      markers.push(Date.parse(alert.raised_at) / 1000);
      charts.forEach((chart) => chart.plot?.redraw());
    }
    const row = deviceAlerts.body.querySelector(`tr[data-alert-id="${alert.id}"]`);
    if (row) row.replaceWith(alertRow(alert));
    else {
      deviceAlerts.body.querySelector('tr.empty')?.remove();
      deviceAlerts.body.prepend(alertRow(alert));
    }
  }));
  // Presence comes with the fleet channel.
  context.cleanup(listen(['fleet'], () => {}));
  context.cleanup(on('presence', (message) => {
    if (message.client_id !== id || typeof message.connected !== 'boolean') return;
    replaceChildren(presence, message.connected ? statusBadge('online', 'ok') : statusBadge('offline', 'off'));
  }));
  context.onResync(() => void loadAll().catch(() => {}));

  await loadAll().catch((error) => {
    if (error instanceof ApiError && error.status === 401) throw error;
    announce((error as Error).message);
  });
}

// ------------------------------------------------------------------ shadow

function renderShadow(context: PageContext, thingName: string): HTMLElement {
  const version = h('span', { id: 'shadow-version' }, '—');
  const desired = h('textarea', { id: 'desired', rows: 8, spellcheck: 'false' });
  const message = h('p', { id: 'shadow-message', role: 'status' });
  const reported = h('pre', { id: 'shadow-reported', tabindex: '0' }, '—');
  const delta = h('pre', { id: 'shadow-delta', tabindex: '0' }, '—');
  let currentVersion: number | null = null;
  let currentDesired: unknown = {};

  const load = async () => {
    try {
      const doc = await get<{ state?: Record<string, unknown>; version?: number }>(`/things/${encode(thingName)}/shadow`);
      if (!context.isCurrent()) return;
      currentVersion = typeof doc.version === 'number' ? doc.version : null;
      currentDesired = doc.state?.desired ?? {};
      version.textContent = currentVersion === null ? '—' : String(currentVersion);
      desired.value = JSON.stringify(currentDesired, null, 2);
      reported.textContent = doc.state?.reported ? JSON.stringify(doc.state.reported, null, 2) : '—';
      delta.textContent = doc.state?.delta ? JSON.stringify(doc.state.delta, null, 2) : '—';
    } catch (error) {
      if (!context.isCurrent()) return;
      if (error instanceof ApiError && error.status === 404) {
        currentVersion = null;
        currentDesired = {};
        version.textContent = 'no shadow yet';
        desired.value = '{}';
        reported.textContent = '—';
        delta.textContent = '—';
      } else {
        message.textContent = (error as Error).message;
      }
    }
  };

  const update = async () => {
    message.textContent = '';
    let parsed: unknown;
    try {
      parsed = JSON.parse(desired.value || '{}');
    } catch (error) {
      message.textContent = `The desired state is not valid JSON: ${(error as Error).message}`;
      return;
    }
    if (!isObject(parsed)) {
      message.textContent = 'The desired state must be a JSON object.';
      return;
    }
    const body: Record<string, unknown> = { state: { desired: withDeletions(currentDesired, parsed) } };
    if (currentVersion !== null) body.version = currentVersion;
    try {
      const answer = await post<{ version?: number }>(`/things/${encode(thingName)}/shadow`, body);
      if (!context.isCurrent()) return;
      await load();
      message.textContent = `Updated to version ${answer.version ?? currentVersion}`;
    } catch (error) {
      if (context.isCurrent()) message.textContent = (error as Error).message;
    }
  };

  void load();
  context.onResync(() => void load());
  return section('shadow', 'Shadow',
    h('p', {}, `Thing "${thingName}"; version `, version),
    h('div', { className: 'stack' },
      h('label', { for: 'desired' }, 'Desired state (JSON)'),
      desired,
      button('Update desired', () => void update()),
      message),
    h('h3', {}, 'Reported'), reported,
    h('h3', {}, 'Delta'), delta,
  );
}
