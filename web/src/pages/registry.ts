// The AWS IoT registry: things, thing groups, certificates (with one-time key download) and
// policies. First page of each list (up to 250); the AWS CLI pages through the rest.
import { del, encode, get, post, put } from '../api';
import { announce, button, emptyRow, formatTime, h, replaceChildren, section, table } from '../dom';
import type { PageContext } from '../page';

interface Thing { thingName: string; thingTypeName?: string; version?: number; attributes?: Record<string, string> }
interface Certificate { certificateId: string; certificateArn: string; status: string; creationDate?: number | string }
interface Policy { policyName: string; policyArn?: string }
interface PolicyVersion { versionId: string; isDefaultVersion: boolean; createDate?: number | string }
interface CreatedKeys {
  certificateArn: string;
  certificateId: string;
  certificatePem: string;
  keyPair: { PublicKey: string; PrivateKey: string };
}

const moreNote = (token: unknown) => (token ? h('p', { className: 'hint' }, 'Showing the first 250; use the AWS CLI for the rest.') : null);

export async function render(context: PageContext): Promise<void> {
  context.setTitle('Registry');
  const things = table('things', 'Things', ['Name', 'Type', 'Attributes', 'Version', 'Actions']);
  const groups = table('thing-groups', 'Thing groups', ['Name', 'ARN']);
  const certificates = table('certificates', 'Certificates', ['ID', 'Status', 'Created', 'Actions']);
  const policies = table('policies', 'Policies', ['Name', 'Versions (default marked)']);
  const thingsMore = h('div');
  const certificatesMore = h('div');
  const policiesMore = h('div');
  const oneTimePanel = h('div');
  let policyNames: string[] = [];

  const thingName = h('input', { id: 'thing-name', name: 'thing-name', type: 'text', required: true, spellcheck: 'false' });
  const thingError = h('p', { id: 'thing-error', role: 'alert', className: 'error' });
  const thingForm = h('form', { id: 'thing-form', className: 'row', novalidate: true },
    h('label', { for: 'thing-name' }, 'New thing name'), thingName,
    h('button', { type: 'submit' }, 'Create thing'));
  const certificateError = h('p', { id: 'certificate-error', role: 'alert', className: 'error' });
  const createCertificate = button('Create certificate', () => void create(), { id: 'create-certificate' });

  context.main.append(
    h('h1', {}, 'Registry'),
    section('things-section', 'Things', thingForm, thingError, h('div', { className: 'table-scroll' }, things.table), thingsMore),
    section('groups-section', 'Thing groups', h('div', { className: 'table-scroll' }, groups.table)),
    section('certificates-section', 'Certificates', createCertificate, certificateError, oneTimePanel,
      h('div', { className: 'table-scroll' }, certificates.table), certificatesMore),
    section('policies-section', 'Policies', h('div', { className: 'table-scroll' }, policies.table), policiesMore),
  );

  // ---------------------------------------------------------------- things

  const loadThings = async () => {
    const answer = await get<{ things: Thing[]; nextToken?: string }>('/things?maxResults=250');
    if (!context.isCurrent()) return;
    replaceChildren(things.body, answer.things?.length ? answer.things.map((thing) => h('tr', { 'data-thing-name': thing.thingName },
      h('th', { scope: 'row' }, h('a', { href: `#/devices/${encodeURIComponent(thing.thingName)}` }, thing.thingName)),
      h('td', {}, thing.thingTypeName ?? '—'),
      h('td', {}, Object.entries(thing.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—'),
      h('td', { className: 'number' }, String(thing.version ?? '—')),
      h('td', {}, button('Delete', async () => {
        if (!confirm(`Delete the thing ${thing.thingName}?`)) return;
        try {
          await del(`/things/${encode(thing.thingName)}`);
          announce(`Thing ${thing.thingName} deleted`);
          await loadThings();
        } catch (error) {
          thingError.textContent = (error as Error).message;
        }
      }, { className: 'danger' })),
    )) : emptyRow(5, 'No things yet.'));
    replaceChildren(thingsMore, moreNote(answer.nextToken));
  };

  thingForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    thingError.textContent = '';
    const name = thingName.value.trim();
    if (!name) {
      thingError.textContent = 'Enter a thing name.';
      return;
    }
    try {
      await post(`/things/${encode(name)}`, {});
      announce(`Thing ${name} created`);
      thingName.value = '';
      await loadThings();
    } catch (error) {
      thingError.textContent = (error as Error).message;
    }
  });

  const loadGroups = async () => {
    const answer = await get<{ thingGroups: { groupName: string; groupArn: string }[] }>('/thing-groups?maxResults=250');
    if (!context.isCurrent()) return;
    replaceChildren(groups.body, answer.thingGroups?.length ? answer.thingGroups.map((group) => h('tr', {},
      h('th', { scope: 'row' }, group.groupName), h('td', {}, h('code', {}, group.groupArn)))) : emptyRow(2, 'No thing groups.'));
  };

  // ---------------------------------------------------------------- certificates

  const setStatus = async (certificate: Certificate, status: 'INACTIVE' | 'REVOKED') => {
    if (status === 'REVOKED' && !confirm('Revoke this certificate? Devices using it can no longer connect, and it cannot be made active again.')) return;
    try {
      await put(`/certificates/${encode(certificate.certificateId)}?newStatus=${status}`);
      announce(`Certificate ${certificate.certificateId.slice(0, 12)} is now ${status.toLowerCase()}`);
      await loadCertificates();
    } catch (error) {
      certificateError.textContent = (error as Error).message;
    }
  };

  const loadCertificates = async () => {
    const answer = await get<{ certificates: Certificate[]; nextMarker?: string }>('/certificates?pageSize=250');
    if (!context.isCurrent()) return;
    replaceChildren(certificates.body, answer.certificates?.length ? answer.certificates.map((certificate) => h('tr', { 'data-certificate-id': certificate.certificateId },
      h('th', { scope: 'row' }, h('code', { title: certificate.certificateArn }, certificate.certificateId)),
      h('td', {}, certificate.status),
      h('td', {}, formatTime(certificate.creationDate)),
      h('td', {}, h('div', { className: 'row' },
        button('Deactivate', () => void setStatus(certificate, 'INACTIVE'), { className: 'secondary', disabled: certificate.status !== 'ACTIVE' }),
        button('Revoke', () => void setStatus(certificate, 'REVOKED'), { className: 'danger', disabled: certificate.status === 'REVOKED' }))),
    )) : emptyRow(4, 'No certificates yet.'));
    replaceChildren(certificatesMore, moreNote(answer.nextMarker));
  };

  let objectUrls: string[] = [];
  const revokeUrls = () => {
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
    objectUrls = [];
  };
  context.cleanup(revokeUrls);

  const download = (name: string, text: string) => {
    const url = URL.createObjectURL(new Blob([text], { type: 'application/x-pem-file' }));
    objectUrls.push(url);
    return h('a', { href: url, download: name }, name);
  };

  async function create(): Promise<void> {
    certificateError.textContent = '';
    createCertificate.disabled = true;
    try {
      const keys = await post<CreatedKeys>('/keys-and-certificate?setAsActive=true', {});
      if (!context.isCurrent()) return;
      revokeUrls();
      const policySelect = h('select', { id: 'attach-policy' },
        h('option', { value: '' }, '(none)'), policyNames.map((name) => h('option', { value: name }, name)));
      const attachMessage = h('p', { id: 'attach-message', role: 'status' });
      const attach = button('Attach policy', async () => {
        if (!policySelect.value) return;
        try {
          await put(`/target-policies/${encode(policySelect.value)}`, { target: keys.certificateArn });
          attachMessage.textContent = `Policy ${policySelect.value} attached.`;
        } catch (error) {
          attachMessage.textContent = (error as Error).message;
        }
      }, { className: 'secondary' });
      replaceChildren(oneTimePanel, h('div', { id: 'certificate-once', className: 'panel', tabindex: '-1' },
        h('h3', {}, `Certificate ${keys.certificateId.slice(0, 12)}… created and active`),
        h('p', { className: 'warning' }, 'Download the private key now: it is shown once and Nimbus does not keep it.'),
        h('p', {},
          download('certificate.pem.crt', keys.certificatePem),
          download('private.pem.key', keys.keyPair.PrivateKey),
          download('public.pem.key', keys.keyPair.PublicKey)),
        policyNames.length ? h('div', { className: 'row' }, h('label', { for: 'attach-policy' }, 'Attach a policy'), policySelect, attach) : null,
        attachMessage,
        button('Done (forget the key)', () => {
          revokeUrls();
          replaceChildren(oneTimePanel);
          createCertificate.focus();
        }, { className: 'secondary' })));
      (oneTimePanel.firstElementChild as HTMLElement).focus();
      announce('Certificate created. Download the private key now; it is shown once.');
      await loadCertificates();
    } catch (error) {
      certificateError.textContent = (error as Error).message;
    } finally {
      createCertificate.disabled = false;
    }
  }

  // ---------------------------------------------------------------- policies

  const loadPolicies = async () => {
    const answer = await get<{ policies: Policy[]; nextMarker?: string }>('/policies?pageSize=250');
    if (!context.isCurrent()) return;
    policyNames = (answer.policies ?? []).map((p) => p.policyName);
    const rows = await Promise.all((answer.policies ?? []).map(async (policy) => {
      let versions = '—';
      try {
        const list = await get<{ policyVersions: PolicyVersion[] }>(`/policies/${encode(policy.policyName)}/version`);
        versions = (list.policyVersions ?? []).map((v) => `v${v.versionId}${v.isDefaultVersion ? ' (default)' : ''}`).join(', ') || '—';
      } catch {
        // The list still shows the policy; its versions just stay unknown.
      }
      return h('tr', { 'data-policy-name': policy.policyName }, h('th', { scope: 'row' }, policy.policyName), h('td', {}, versions));
    }));
    if (!context.isCurrent()) return;
    replaceChildren(policies.body, rows.length ? rows : emptyRow(2, 'No policies yet.'));
    replaceChildren(policiesMore, moreNote(answer.nextMarker));
  };

  const loadAll = () => Promise.all([loadThings(), loadGroups(), loadCertificates(), loadPolicies()]);
  context.onResync(() => void loadAll().catch(() => {}));
  await loadAll();
}
