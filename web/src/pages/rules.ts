// AWS IoT topic rules: list, enable/disable, delete, and create with a republish action or raw
// actions JSON. A SQL parse error's position is marked under the SQL with a caret.
import { encode, del, get, post } from '../api';
import { announce, button, emptyRow, formatTime, h, replaceChildren, table } from '../dom';
import type { PageContext } from '../page';

interface RuleSummary {
  ruleName: string;
  ruleArn?: string;
  topicPattern?: string;
  createdAt?: number | string;
  ruleDisabled: boolean;
}

// Where in `sql` an error message points, as a 0-based offset; null when it names no place.
// Nimbus says "... at position N" (0-based); AWS-style texts say "line N", "column N" or "char N".
export function errorOffset(message: string, sql: string): number | null {
  const number = (pattern: RegExp) => {
    const match = pattern.exec(message);
    return match ? Number(match[1]) : null;
  };
  const offset = number(/\b(?:position|offset)\s+(\d+)/i) ?? number(/\bchar(?:acter)?\s+(\d+)/i);
  if (offset !== null) return Math.min(offset, sql.length);
  const lineColon = /\bline\s+(\d+)\s*:\s*(\d+)/i.exec(message);
  const line = lineColon ? Number(lineColon[1]) : number(/\bline\s+(\d+)/i);
  const column = lineColon ? Number(lineColon[2]) : number(/\bcol(?:umn)?\s+(\d+)/i);
  if (line === null && column === null) return null;
  const lines = sql.split('\n');
  const lineIndex = Math.min(Math.max((line ?? 1) - 1, 0), lines.length - 1);
  let at = 0;
  for (let i = 0; i < lineIndex; i++) at += lines[i].length + 1;
  return at + Math.min(Math.max((column ?? 1) - 1, 0), lines[lineIndex].length);
}

// The line of `sql` holding `offset`, and a caret under the offending character.
export function caretLines(sql: string, offset: number): string {
  const start = sql.lastIndexOf('\n', offset - 1) + 1;
  const end = sql.indexOf('\n', offset);
  const line = sql.slice(start, end === -1 ? undefined : end);
  const lineNumber = sql.slice(0, start).split('\n').length;
  const column = offset - start;
  return `${line}\n${' '.repeat(column)}^ line ${lineNumber}, column ${column + 1}`;
}

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Rules');
  const rules = table('rules', 'Topic rules', ['Name', 'Topic filter', 'Created', 'State', 'Actions']);

  const name = h('input', { id: 'rule-name', name: 'rule-name', type: 'text', required: true, pattern: '[A-Za-z0-9_]+', spellcheck: 'false' });
  const sql = h('textarea', { id: 'rule-sql', name: 'rule-sql', rows: 4, required: true, spellcheck: 'false' });
  sql.value = "SELECT * FROM 'sensor/data' WHERE temperature > 30";
  const republishTopic = h('input', { id: 'republish-topic', name: 'republish-topic', type: 'text', spellcheck: 'false' });
  republishTopic.value = 'alerts/hot';
  const rawActions = h('textarea', { id: 'rule-actions', name: 'rule-actions', rows: 4, spellcheck: 'false' });
  const error = h('div', { id: 'rule-error', role: 'alert', className: 'error' });
  const submit = h('button', { type: 'submit' }, 'Create rule');

  const form = h('form', { id: 'rule-form', className: 'stack', novalidate: true },
    h('label', { for: 'rule-name' }, 'Rule name (letters, digits, _)'), name,
    h('label', { for: 'rule-sql' }, 'SQL'), sql,
    error,
    h('label', { for: 'republish-topic' }, 'Republish matching messages to topic'), republishTopic,
    h('details', {},
      h('summary', {}, 'Advanced: actions as JSON'),
      h('p', { className: 'hint' }, 'An AWS "actions" array; when filled it replaces the republish action above.'),
      h('label', { for: 'rule-actions' }, 'Actions (JSON array)'), rawActions),
    submit);

  context.main.append(h('h1', {}, 'Rules'),
    h('div', { className: 'table-scroll' }, rules.table),
    h('h2', {}, 'Create a topic rule'), form);

  const showError = (message: string, sqlText: string | null) => {
    replaceChildren(error, message);
    const offset = sqlText === null ? null : errorOffset(message, sqlText);
    if (offset !== null && sqlText !== null) {
      error.append(h('pre', { id: 'rule-error-position', className: 'caret', tabindex: '0' }, caretLines(sqlText, offset)));
      sql.setAttribute('aria-invalid', 'true');
    }
  };

  const ruleRow = (rule: RuleSummary): HTMLTableRowElement => {
    const toggle = button(rule.ruleDisabled ? 'Enable' : 'Disable', async () => {
      try {
        await post(`/rules/${encode(rule.ruleName)}/${rule.ruleDisabled ? 'enable' : 'disable'}`, {});
        const row = ruleRow({ ...rule, ruleDisabled: !rule.ruleDisabled });
        rules.body.querySelector(`tr[data-rule-name="${CSS.escape(rule.ruleName)}"]`)?.replaceWith(row);
        row.querySelector('button')?.focus();
        announce(`Rule ${rule.ruleName} ${rule.ruleDisabled ? 'enabled' : 'disabled'}`);
      } catch (failure) {
        announce(`Rule ${rule.ruleName}: ${(failure as Error).message}`);
      }
    }, { className: 'secondary' });
    const remove = button('Delete', async () => {
      if (!confirm(`Delete the rule ${rule.ruleName}?`)) return;
      try {
        await del(`/rules/${encode(rule.ruleName)}`);
        announce(`Rule ${rule.ruleName} deleted`);
        await load();
      } catch (failure) {
        announce(`Rule ${rule.ruleName}: ${(failure as Error).message}`);
      }
    }, { className: 'danger' });
    return h('tr', { 'data-rule-name': rule.ruleName, 'data-rule-id': rule.ruleName },
      h('th', { scope: 'row' }, rule.ruleName),
      h('td', {}, h('code', {}, rule.topicPattern ?? '—')),
      h('td', {}, formatTime(rule.createdAt)),
      h('td', {}, rule.ruleDisabled ? 'disabled' : 'enabled'),
      h('td', {}, h('div', { className: 'row' }, toggle, remove)));
  };

  const load = async () => {
    const answer = await get<{ rules: RuleSummary[] }>('/rules');
    if (!context.isCurrent()) return;
    replaceChildren(rules.body, answer.rules?.length ? answer.rules.map(ruleRow) : emptyRow(5, 'No topic rules yet.'));
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    replaceChildren(error);
    sql.removeAttribute('aria-invalid');
    const ruleName = name.value.trim();
    if (!ruleName) return showError('Give the rule a name.', null);
    let actions: unknown;
    if (rawActions.value.trim()) {
      try {
        actions = JSON.parse(rawActions.value);
      } catch (failure) {
        return showError(`The actions are not valid JSON: ${(failure as Error).message}`, null);
      }
    } else if (republishTopic.value.trim()) {
      actions = [{ republish: { topic: republishTopic.value.trim(), qos: 0 } }];
    } else {
      actions = [];
    }
    const sqlText = sql.value;
    submit.disabled = true;
    try {
      await post(`/rules/${encode(ruleName)}`, {
        sql: sqlText, actions, ruleDisabled: false, awsIotSqlVersion: '2016-03-23',
      });
      announce(`Rule ${ruleName} created`);
      name.value = '';
      await load();
    } catch (failure) {
      showError((failure as Error).message, sqlText);
    } finally {
      submit.disabled = false;
    }
  });

  context.onResync(() => void load().catch(() => {}));
  await load();
}
