// Pub/Sub topics and subscriptions of the dashboard's project (from /api/overview).
import { encode, get, getOverview } from '../api';
import { emptyRow, formatNumber, h, replaceChildren, section, table } from '../dom';
import type { PageContext } from '../page';

interface Subscription {
  name: string;
  topic: string;
  ackDeadlineSeconds?: number;
  numUndeliveredMessages?: number | string;
  pushConfig?: { pushEndpoint?: string };
}

const shortName = (name: string) => name.replace(/^projects\/[^/]+\/(topics|subscriptions)\//, '');

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Pub/Sub');
  const overview = await getOverview();
  const project = overview.pubsub_project;
  const topics = table('topics', 'Topics', ['Topic', 'Full name']);
  const subscriptions = table('subscriptions', 'Subscriptions', ['Subscription', 'Topic', 'Delivery', 'Ack deadline (s)', 'Backlog (messages)']);
  context.main.append(h('h1', {}, 'Pub/Sub'),
    h('p', {}, 'Project ', h('code', {}, project || '—')),
    section('topics-section', 'Topics', h('div', { className: 'table-scroll' }, topics.table)),
    section('subscriptions-section', 'Subscriptions', h('div', { className: 'table-scroll' }, subscriptions.table)));

  const load = async () => {
    const base = `/v1/projects/${encode(project)}`;
    const [topicList, subscriptionList] = await Promise.all([
      get<{ topics?: { name: string }[] }>(`${base}/topics?pageSize=1000`),
      get<{ subscriptions?: Subscription[] }>(`${base}/subscriptions?pageSize=1000`),
    ]);
    if (!context.isCurrent()) return;
    replaceChildren(topics.body, topicList.topics?.length ? topicList.topics.map((topic) => h('tr', {},
      h('th', { scope: 'row' }, shortName(topic.name)), h('td', {}, h('code', {}, topic.name)))) : emptyRow(2, 'No topics.'));
    replaceChildren(subscriptions.body, subscriptionList.subscriptions?.length ? subscriptionList.subscriptions.map((s) => h('tr', {},
      h('th', { scope: 'row' }, shortName(s.name)),
      h('td', {}, shortName(s.topic)),
      h('td', {}, s.pushConfig?.pushEndpoint ? `push to ${s.pushConfig.pushEndpoint}` : 'pull'),
      h('td', { className: 'number' }, formatNumber(s.ackDeadlineSeconds)),
      h('td', { className: 'number' }, s.numUndeliveredMessages === undefined ? '—' : formatNumber(Number(s.numUndeliveredMessages))),
    )) : emptyRow(5, 'No subscriptions.'));
  };
  context.onResync(() => void load().catch(() => {}));
  await load();
}
