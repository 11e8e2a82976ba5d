// Alerts and the alert rules that raise them. Rows follow the stream; the buttons follow the
// server's lifecycle: acknowledge once, clear while open. Rules are edited as the JSON
// /api/alert-rules takes, and the server's refusal names the field.
import { ApiError, del, encode, get, post, put } from '../api';
import { announce, button, emptyRow, formatNumber, formatTime, h, replaceChildren, section, statusBadge, table } from '../dom';
import type { PageContext } from '../page';
import { listen } from '../stream';

interface Alert {
  id: number;
  type: string;
  device_id: string;
  severity: string;
  status: 'active' | 'acknowledged' | 'cleared';
  acknowledged: boolean;
  value: number;
  peak?: number;
  threshold: number | null;
  count?: number;
  raised_at: string;
  updated_at?: string;
  acknowledged_at?: string | null;
  acknowledged_by?: string | null;
  cleared_at?: string | null;
  cleared_by?: string | null;
  field?: string;
  history?: { at: string; event: string; who: string; note: string; value: number; severity: string }[];
}

interface AlertRule {
  name: string;
  description?: string;
  severity: string;
  enabled: boolean;
  selection?: { field?: string; measurement?: string; devices?: string[]; groups?: string[] };
  condition?: Record<string, unknown> & { type: string };
  status?: { enabled?: boolean };
}

const alertColumns = ['Type', 'Device', 'Severity', 'Status', 'Value', 'Threshold', 'Raised', 'Actions'];

// The top-level keys the server's rule parser takes (src/alerts/rule.cpp, rule_keys); a GET's
// answer adds read-only ones ("status") that a PUT would refuse.
const editableKeys = ['name', 'description', 'severity', 'enabled', 'selection', 'condition', 'escalations', 'notifications'];

// A rule as GET returns it, cut to what PUT takes back (nested read-only keys such as a
// webhook's "secret_set" are accepted and ignored by the server).
export function editableRule(rule: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of editableKeys) if (rule[key] !== undefined) out[key] = rule[key];
  return out;
}

// A new rule to start from: the tutorial's threshold rule under a name not yet taken.
export function newRuleTemplate(taken: ReadonlySet<string>): Record<string, unknown> {
  let name = 'new_rule';
  for (let n = 2; taken.has(name); n++) name = `new_rule_${n}`;
  return {
    name,
    description: 'temperature above 35',
    severity: 'major',
    enabled: true,
    selection: { field: 'temperature' },
    condition: { type: 'threshold', operator: '>', value: 35, for: '0s' },
    notifications: [{ type: 'mqtt' }],
  };
}

async function act(alert: Alert, action: 'ack' | 'clear'): Promise<Alert | null> {
  try {
    const updated = await post<Alert>(`/api/alerts/${alert.id}/${action}`, {});
    announce(`Alert ${alert.id} ${action === 'ack' ? 'acknowledged' : 'cleared'}`);
    return updated;
  } catch (error) {
    announce(`Alert ${alert.id}: ${(error as Error).message}`);
    return null;
  }
}

function actionButtons(alert: Alert, onChange: (updated: Alert) => void): HTMLElement {
  const ack = button('Acknowledge', async () => {
    const updated = await act(alert, 'ack');
    if (updated) onChange(updated);
  }, { className: 'secondary', disabled: alert.acknowledged });
  const clear = button('Clear', async () => {
    const updated = await act(alert, 'clear');
    if (updated) onChange(updated);
  }, { className: 'secondary', disabled: alert.status === 'cleared' });
  return h('div', { className: 'row' }, ack, clear);
}

// "temperature > 35 for 30s", "offline for 5m": enough to recognise the rule.
export function conditionSummary(rule: AlertRule): string {
  const c = rule.condition;
  if (!c) return '—';
  const field = rule.selection?.field ?? '';
  const pending = c.for && c.for !== '0s' ? ` for ${c.for}` : '';
  switch (c.type) {
    case 'threshold':
      return `${field} ${c.operator} ${c.value}${pending}`;
    case 'range':
      return `${field} outside ${c.lo} to ${c.hi}${pending}`;
    case 'ewma':
    case 'mad':
      return `${field} anomaly (${c.type}, k=${c.k})${pending}`;
    case 'flatline':
      return `${field} unchanged for ${c.count} readings`;
    case 'no_data':
      return `no ${field || 'data'}${pending}`;
    default:
      return `${c.type}${pending}`;
  }
}

export async function render(context: PageContext): Promise<void> {
  const detailId = context.params[0];
  if (detailId) return renderDetail(context, detailId);
  context.setTitle('Alerts');

  const showCleared = h('input', { id: 'show-cleared', type: 'checkbox' });
  const alerts = table('alerts', 'Alerts, newest first', alertColumns);
  const rules = table(null, 'Alert rules', ['Name', 'Condition', 'Severity', 'State', 'Actions']);
  const ruleNames = new Set<string>();

  // The rule editor: one JSON text, saved with POST (new) or PUT (existing).
  let editing: string | null = null;  // the rule's name; null for a new rule
  let opener: HTMLElement | null = null;
  const editorHeading = h('h3', { id: 'alert-rule-editor-heading' }, 'New alert rule');
  const ruleJson = h('textarea', {
    id: 'alert-rule-json', name: 'alert-rule-json', rows: 18, spellcheck: 'false', autocomplete: 'off',
    autocapitalize: 'off', 'aria-describedby': 'alert-rule-hint alert-rule-error',
  });
  const ruleError = h('div', { id: 'alert-rule-error', role: 'alert', className: 'error' });
  const saveButton = h('button', { type: 'submit' }, 'Save');
  const deleteButton = button('Delete', () => void deleteRule(), { className: 'danger' });
  const cancelButton = button('Cancel', () => closeEditor(), { className: 'secondary' });
  const editorForm = h('form', { id: 'alert-rule-form', className: 'stack', novalidate: true },
    h('label', { for: 'alert-rule-json' }, 'Rule (JSON)'),
    h('p', { id: 'alert-rule-hint', className: 'hint' },
      'Needs name, selection.field and condition.type (threshold, range, ewma, mad, flatline, no_data or offline); ',
      'durations like "30s" or "5m". Escape closes the editor.'),
    ruleJson, ruleError,
    h('div', { className: 'row' }, saveButton, deleteButton, cancelButton));
  const editor = h('section', { id: 'alert-rule-editor', 'aria-labelledby': 'alert-rule-editor-heading', hidden: true },
    editorHeading, editorForm);
  const newButton = button('New rule', (event) => openEditor(null, newRuleTemplate(ruleNames), event.currentTarget as HTMLElement),
    { id: 'new-alert-rule', 'aria-controls': 'alert-rule-editor' });

  context.main.append(
    h('h1', {}, 'Alerts'),
    h('div', { className: 'row' }, showCleared, h('label', { for: 'show-cleared' }, 'Show cleared alerts')),
    h('div', { className: 'table-scroll' }, alerts.table),
    section('alert-rules', 'Alert rules', h('div', { className: 'row' }, newButton),
      h('div', { className: 'table-scroll' }, rules.table), editor),
  );

  const showRuleError = (message: string) => {
    ruleError.textContent = message;
    ruleJson.setAttribute('aria-invalid', 'true');
  };
  const clearRuleError = () => {
    ruleError.textContent = '';
    ruleJson.removeAttribute('aria-invalid');
  };

  function openEditor(name: string | null, rule: Record<string, unknown>, from: HTMLElement | null): void {
    editing = name;
    opener = from;
    editorHeading.textContent = name === null ? 'New alert rule' : `Edit alert rule ${name}`;
    ruleJson.value = JSON.stringify(rule, null, 2);
    deleteButton.hidden = name === null;
    clearRuleError();
    editor.hidden = false;
    ruleJson.focus();
    ruleJson.setSelectionRange(0, 0);
    ruleJson.scrollTop = 0;
    editor.scrollIntoView({ block: 'nearest' });
  }

  // Closes the editor; focus goes to `focusTarget`, else back to what opened it.
  function closeEditor(focusTarget?: HTMLElement | null): void {
    editor.hidden = true;
    editing = null;
    clearRuleError();
    const target = focusTarget ?? (opener?.isConnected ? opener : newButton);
    opener = null;
    target.focus();
  }

  const editButtonOf = (name: string) =>
    rules.body.querySelector<HTMLButtonElement>(`tr[data-rule-id="${CSS.escape(name)}"] button[data-action="edit"]`);

  async function editRule(name: string, from: HTMLButtonElement): Promise<void> {
    from.disabled = true;
    try {
      const rule = await get<Record<string, unknown>>(`/api/alert-rules/${encode(name)}`);
      if (!context.isCurrent()) return;
      openEditor(name, editableRule(rule), from);
    } catch (error) {
      announce(`Alert rule ${name}: ${(error as Error).message}`);
    } finally {
      from.disabled = false;
    }
  }

  async function reloadRules(): Promise<void> {
    try {
      await loadRules();
    } catch (error) {
      announce(`Alert rules: ${(error as Error).message}`);
    }
  }

  editorForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearRuleError();
    let body: unknown;
    try {
      body = JSON.parse(ruleJson.value);
    } catch (error) {
      showRuleError(`The rule is not valid JSON: ${(error as Error).message}`);
      return;
    }
    const name = editing;
    saveButton.disabled = true;
    try {
      const saved = name === null
        ? await post<AlertRule>('/api/alert-rules', body)
        : await put<AlertRule>(`/api/alert-rules/${encode(name)}`, body);
      if (!context.isCurrent()) return;
      announce(`Alert rule ${saved.name} saved`);
      await reloadRules();
      closeEditor(editButtonOf(saved.name));
    } catch (error) {
      // {"error":{"field","message"}} reads as "field: message" (api.ts errorMessage).
      showRuleError((error as Error).message);
    } finally {
      saveButton.disabled = false;
    }
  });

  editorForm.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !editor.hidden) {
      event.preventDefault();
      closeEditor();
    }
  });

  async function deleteRule(): Promise<void> {
    const name = editing;
    if (name === null || !confirm(`Delete the alert rule ${name}?`)) return;
    deleteButton.disabled = true;
    try {
      await del(`/api/alert-rules/${encode(name)}`);
      if (!context.isCurrent()) return;
      announce(`Alert rule ${name} deleted`);
      await reloadRules();
      closeEditor(newButton);
    } catch (error) {
      showRuleError((error as Error).message);
    } finally {
      deleteButton.disabled = false;
    }
  }

  const rowFor = (alert: Alert): HTMLTableRowElement => h('tr', { 'data-alert-id': String(alert.id), 'data-status': alert.status },
    h('td', {}, h('a', { href: `#/alerts/${alert.id}` }, alert.type)),
    h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(alert.device_id)}` }, alert.device_id)),
    h('td', {}, statusBadge(alert.severity, alert.severity)),
    h('td', {}, alert.status),
    h('td', { className: 'number' }, formatNumber(alert.value)),
    h('td', { className: 'number' }, formatNumber(alert.threshold)),
    h('td', {}, formatTime(alert.raised_at)),
    h('td', {}, actionButtons(alert, upsert)),
  );

  function upsert(alert: Alert): void {
    const existing = alerts.body.querySelector<HTMLTableRowElement>(`tr[data-alert-id="${alert.id}"]`);
    const isHidden = alert.status === 'cleared' && !showCleared.checked;
    if (isHidden) {
      existing?.remove();
    } else if (existing) {
      const hadFocus = existing.contains(document.activeElement);
      const row = rowFor(alert);
      existing.replaceWith(row);
      // Keep keyboard users where they were after the row is redrawn.
      if (hadFocus) (row.querySelector('button:not([disabled])') as HTMLElement | null ?? row.querySelector('a'))?.focus();
    } else {
      alerts.body.querySelector('tr.empty')?.remove();
      alerts.body.prepend(rowFor(alert));
    }
    if (!alerts.body.rows.length) alerts.body.append(emptyRow(alertColumns.length, 'No open alerts.'));
  }

  const loadAlerts = async () => {
    const answer = await get<{ alerts: Alert[] }>(`/api/alerts?status=${showCleared.checked ? 'all' : 'open'}&limit=1000`);
    if (!context.isCurrent()) return;
    replaceChildren(alerts.body, answer.alerts?.length
      ? answer.alerts.map(rowFor)
      : emptyRow(alertColumns.length, showCleared.checked ? 'No alerts.' : 'No open alerts.'));
  };

  const ruleRow = (rule: AlertRule): HTMLTableRowElement => {
    const enabled = rule.status?.enabled ?? rule.enabled;
    const toggle = button(enabled ? 'Disable' : 'Enable', async () => {
      toggle.disabled = true;
      try {
        const updated = await post<AlertRule>(`/api/alert-rules/${encode(rule.name)}/${enabled ? 'disable' : 'enable'}`, {});
        const row = ruleRow(updated);
        rules.body.querySelector(`tr[data-rule-id="${CSS.escape(rule.name)}"]`)?.replaceWith(row);
        row.querySelector('button')?.focus();
        announce(`Alert rule ${rule.name} ${enabled ? 'disabled' : 'enabled'}`);
      } catch (error) {
        toggle.disabled = false;
        announce(`Alert rule ${rule.name}: ${(error as Error).message}`);
      }
    }, { className: 'secondary' });
    const edit: HTMLButtonElement = button('Edit', () => void editRule(rule.name, edit),
      { className: 'secondary', 'data-action': 'edit', 'aria-controls': 'alert-rule-editor' });
    return h('tr', { 'data-rule-id': rule.name },
      h('th', { scope: 'row' }, rule.name),
      h('td', {}, conditionSummary(rule)),
      h('td', {}, statusBadge(rule.severity, rule.severity)),
      h('td', {}, enabled ? statusBadge('enabled', 'ok') : statusBadge('disabled', 'off')),
      h('td', {}, h('div', { className: 'row' }, toggle, edit)));
  };

  async function loadRules(): Promise<void> {
    const answer = await get<{ rules: AlertRule[] }>('/api/alert-rules');
    if (!context.isCurrent()) return;
    ruleNames.clear();
    for (const rule of answer.rules ?? []) ruleNames.add(rule.name);
    replaceChildren(rules.body, answer.rules?.length ? answer.rules.map(ruleRow) : emptyRow(5, 'No alert rules.'));
  }

  showCleared.addEventListener('change', () => void loadAlerts().catch((error) => announce((error as Error).message)));
  context.cleanup(listen(['alerts'], (message) => {
    if (message.alert && typeof message.alert === 'object') upsert(message.alert as Alert);
  }));
  const loadAll = () => Promise.all([loadAlerts(), loadRules()]);
  context.onResync(() => void loadAll().catch(() => {}));
  await loadAll();
}

async function renderDetail(context: PageContext, id: string): Promise<void> {
  context.setTitle(`Alert ${id}`);
  const heading = h('h1', {}, `Alert ${id}`);
  const facts = h('dl', { className: 'facts', id: 'alert-facts' });
  const actions = h('div');
  const history = table('alert-history', 'History, oldest first', ['When', 'Event', 'By', 'Value', 'Severity', 'Note']);
  context.main.append(heading, h('p', {}, h('a', { href: '#/alerts' }, 'All alerts')), facts, actions,
    section('history-section', 'History', h('div', { className: 'table-scroll' }, history.table)));

  const show = (alert: Alert) => {
    heading.textContent = `Alert ${alert.id}: ${alert.type} on ${alert.device_id}`;
    context.setTitle(`Alert ${alert.id}`);
    const pairs: [string, Node | string][] = [
      ['Device', h('a', { href: `#/devices/${encodeURIComponent(alert.device_id)}` }, alert.device_id)],
      ['Severity', statusBadge(alert.severity, alert.severity)],
      ['Status', alert.status],
      ['Field', alert.field || '—'],
      ['Value', formatNumber(alert.value)],
      ['Peak', formatNumber(alert.peak)],
      ['Threshold', formatNumber(alert.threshold)],
      ['Raised', formatTime(alert.raised_at)],
      ['Acknowledged', alert.acknowledged_at ? `${formatTime(alert.acknowledged_at)} by ${alert.acknowledged_by ?? '—'}` : '—'],
      ['Cleared', alert.cleared_at ? `${formatTime(alert.cleared_at)} by ${alert.cleared_by ?? '—'}` : '—'],
    ];
    replaceChildren(facts, pairs.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
    replaceChildren(actions, actionButtons(alert, show));
    if (alert.history) {
      replaceChildren(history.body, alert.history.length ? alert.history.map((step) => h('tr', {},
        h('td', {}, formatTime(step.at)), h('td', {}, step.event), h('td', {}, step.who || '—'),
        h('td', { className: 'number' }, formatNumber(step.value)), h('td', {}, step.severity), h('td', {}, step.note || '—'))) : emptyRow(6, 'No history.'));
    }
  };

  const load = async () => {
    try {
      const alert = await get<Alert>(`/api/alerts/${encode(id)}`);
      if (context.isCurrent()) show(alert);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        replaceChildren(facts);
        facts.after(h('p', { className: 'error', role: 'alert' }, (error as Error).message));
        return;
      }
      throw error;
    }
  };
  context.cleanup(listen(['alerts'], (message) => {
    const alert = message.alert as Alert | undefined;
    if (alert && String(alert.id) === id) void load().catch(() => {});
  }));
  context.onResync(() => void load().catch(() => {}));
  await load();
}
