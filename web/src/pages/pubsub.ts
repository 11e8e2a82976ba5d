// Pub/Sub topics and subscriptions of the dashboard's project (from /api/overview). The REST
// API has no backlog figure, so each subscription's comes from /metrics (Prometheus text).
import { encode, get, getOverview, getText } from '../api';
import { emptyRow, formatNumber, h, replaceChildren, section, table } from '../dom';
import type { PageContext } from '../page';

interface Subscription {
  name: string;
  topic: string;
  ackDeadlineSeconds?: number;
  numUndeliveredMessages?: number | string;
  pushConfig?: { pushEndpoint?: string };
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const shortName = (name: string) => name.replace(/^projects\/[^/]+\/(topics|subscriptions)\//, '');

const unescapeLabel = (text: string) =>
  text.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));

// The samples of Prometheus text format 0.0.4 whose metric name is in `names`:
// `name{label="value",...} value [timestamp]`; comments and other metrics are skipped.
export function parsePrometheus(text: string, names: ReadonlySet<string>): Sample[] {
  const samples: Sample[] = [];
  const label = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const name = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(line)?.[0];
    if (!name || !names.has(name)) continue;
    let at = name.length;
    const labels: Record<string, string> = {};
    if (line[at] === '{') {
      at += 1;
      label.lastIndex = at;
      for (let match = label.exec(line); match; match = label.exec(line)) {
        labels[match[1]] = unescapeLabel(match[2]);
        at = label.lastIndex;
      }
      while (line[at] === ' ') at += 1;
      if (line[at] !== '}') continue;  // malformed: skip the line
      at += 1;
    }
    const valueText = line.slice(at).trim().split(/\s+/)[0];
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (!valueText || (Number.isNaN(value) && valueText !== 'NaN')) continue;
    samples.push({ name, labels, value });
  }
  return samples;
}

const undeliveredMetric = 'nimbus_pubsub_num_undelivered_messages';
const backlogBytesMetric = 'nimbus_pubsub_backlog_bytes';

interface Backlog { messages?: number; bytes?: number }

// Each subscription's backlog by full name, from the /metrics text.
export function backlogs(metricsText: string): Map<string, Backlog> {
  const out = new Map<string, Backlog>();
  for (const sample of parsePrometheus(metricsText, new Set([undeliveredMetric, backlogBytesMetric]))) {
    const subscription = sample.labels.subscription;
    if (!subscription) continue;
    const entry = out.get(subscription) ?? {};
    if (sample.name === undeliveredMetric) entry.messages = sample.value;
    else entry.bytes = sample.value;
    out.set(subscription, entry);
  }
  return out;
}

export function backlogText(backlog: Backlog | undefined): string {
  if (backlog?.messages === undefined) return '—';
  const messages = `${formatNumber(backlog.messages)} ${backlog.messages === 1 ? 'message' : 'messages'}`;
  if (backlog.bytes === undefined) return messages;
  return `${messages} (${formatNumber(backlog.bytes)} ${backlog.bytes === 1 ? 'byte' : 'bytes'})`;
}

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Pub/Sub');
  const overview = await getOverview();
  const project = overview.pubsub_project;
  const topics = table('topics', 'Topics', ['Topic', 'Full name']);
  const subscriptions = table('subscriptions', 'Subscriptions', ['Subscription', 'Topic', 'Delivery', 'Ack deadline (s)', 'Backlog']);
  context.main.append(h('h1', {}, 'Pub/Sub'),
    h('p', {}, 'Project ', h('code', {}, project || '—')),
    section('topics-section', 'Topics', h('div', { className: 'table-scroll' }, topics.table)),
    section('subscriptions-section', 'Subscriptions', h('div', { className: 'table-scroll' }, subscriptions.table)));

  const load = async () => {
    const base = `/v1/projects/${encode(project)}`;
    const [topicList, subscriptionList, metricsText] = await Promise.all([
      get<{ topics?: { name: string }[] }>(`${base}/topics?pageSize=1000`),
      get<{ subscriptions?: Subscription[] }>(`${base}/subscriptions?pageSize=1000`),
      // /metrics may be off (404) or closed: the backlog then stays unknown.
      getText('/metrics').catch(() => ''),
    ]);
    if (!context.isCurrent()) return;
    const backlog = backlogs(metricsText);
    const backlogOf = (s: Subscription) => {
      if (backlog.has(s.name)) return backlogText(backlog.get(s.name));
      if (s.numUndeliveredMessages === undefined) return '—';
      return backlogText({ messages: Number(s.numUndeliveredMessages) });
    };
    replaceChildren(topics.body, topicList.topics?.length ? topicList.topics.map((topic) => h('tr', {},
      h('th', { scope: 'row' }, shortName(topic.name)), h('td', {}, h('code', {}, topic.name)))) : emptyRow(2, 'No topics.'));
    replaceChildren(subscriptions.body, subscriptionList.subscriptions?.length ? subscriptionList.subscriptions.map((s) => h('tr', { 'data-subscription': s.name },
      h('th', { scope: 'row' }, shortName(s.name)),
      h('td', {}, shortName(s.topic)),
      h('td', {}, s.pushConfig?.pushEndpoint ? `push to ${s.pushConfig.pushEndpoint}` : 'pull'),
      h('td', { className: 'number' }, formatNumber(s.ackDeadlineSeconds)),
      h('td', { className: 'number' }, backlogOf(s)),
    )) : emptyRow(5, 'No subscriptions.'));
  };
  context.onResync(() => void load().catch(() => {}));
  await load();
}
