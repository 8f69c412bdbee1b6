// admin: API keys (list, create with the secret shown once, revoke in two
// steps); merge with a dry run first (what the merged profile would be, the
// trait conflicts and limit violations, nothing written) and unmerge; the
// identity conflicts the resolver recorded; blocked identifier values and
// the per-kind limits; webhooks with their most recent deliveries.
import { api, qs } from './api.js';
import { h, clear, table, section, field, select, text, when, problemBox } from './dom.js';

const ROLES = ['front_office', 'call_center', 'marketing', 'partner', 'admin'];
const KINDS = ['*', 'email', 'phone', 'loyalty_card', 'external', 'device'];

export function adminScreen(root) {
  const keys = h('div', { id: 'keys' });
  const created = h('div', { id: 'created', 'aria-live': 'polite' });
  const hooks = h('div', { id: 'webhooks' });
  const conflicts = h('div', { id: 'conflicts' });
  const blocked = h('div', { id: 'blocked' });
  const limits = h('div', { id: 'limits' });
  clear(root, section('API keys', createForm(created, () => loadKeys(keys)), created, keys),
    section('Merge and unmerge', mergeBox(), unmergeBox()),
    section('Identity conflicts', conflicts),
    section('Blocked values', blockedForm(() => loadBlocked(blocked)), blocked),
    section('Identifier limits', limits),
    section('Webhooks', hooks));
  loadKeys(keys);
  loadConflicts(conflicts);
  loadBlocked(blocked);
  loadLimits(limits);
  loadWebhooks(hooks);
}

const input = (name, attrs = {}) => h('input', { name, autocomplete: 'off', spellcheck: 'false', ...attrs });

// A merge is always shown as a dry run first (POST /v1/admin/merges with
// dry_run: nothing is written); "Merge" then sends the same pair for real.
function mergeBox() {
  const survivor = input('survivor_id', { required: true, placeholder: 'survivor customer id', size: 36 });
  const absorbed = input('absorbed_id', { required: true, placeholder: 'absorbed customer id', size: 36 });
  const reason = input('reason', { maxlength: 200 });
  const force = h('input', { type: 'checkbox', name: 'force' });
  const out = h('div', { id: 'merge-result', 'aria-live': 'polite' });
  const read = () => ({ survivor_id: survivor.value.trim(), absorbed_id: absorbed.value.trim(),
    reason: reason.value.trim() || undefined, force: force.checked });
  // "Merge" sends exactly the request that was dry-run, not what the fields
  // hold by then.
  const send = async (dry, req = read()) => {
    try {
      const r = await api.post('/v1/admin/merges', { ...req, dry_run: dry });
      const ids = (r.customer.identifiers || []).map((i) => `${i.kind}: ${i.value}`);
      clear(out, h('p', { class: dry ? 'muted' : 'ok', id: dry ? 'dry-run' : 'merged' },
        dry ? 'Dry run: nothing written. The merged customer would have:' : 'Merged. The customer now has:'),
      h('p', {}, ids.join(' · ') || 'no identifiers'),
      r.trait_conflicts.length ? table(['trait', 'survivor', 'absorbed', 'kept'],
        r.trait_conflicts.map((c) => [c.trait, text(c.survivor_value), text(c.absorbed_value), c.winner]), { class: 'trait-conflicts' })
        : h('p', { class: 'muted' }, 'no trait conflicts'),
      violations(r.limit_violations),
      dry ? h('button', { type: 'button', id: 'merge-confirm', class: 'danger', onclick: () => send(false, req) }, 'Merge') : null);
    } catch (err) {
      const p = err.problem || {};
      clear(out, problemBox(err), violations(p.limit_violations));
    }
  };
  return h('div', {}, h('h3', {}, 'Merge two customers'),
    h('form', { class: 'row', id: 'merge-form', onsubmit: (e) => { e.preventDefault(); send(true); } },
      field('survivor', survivor), field('absorbed', absorbed), field('reason', reason),
      h('label', { class: 'check' }, force, ' force past limits'), h('button', { type: 'submit' }, 'Dry run')), out);
}

function violations(v) {
  return v && v.length ? table(['kind', 'namespace', 'count', 'limit'],
    v.map((x) => [x.kind, text(x.namespace), x.count, x.limit]), { class: 'violations' }) : null;
}

function unmergeBox() {
  const id = input('customer_id', { required: true, placeholder: 'absorbed customer id', size: 36 });
  const reason = input('reason', { maxlength: 200 });
  const out = h('div', { id: 'unmerge-result', 'aria-live': 'polite' });
  return h('div', {}, h('h3', {}, 'Undo a merge'),
    h('form', { class: 'row', id: 'unmerge-form', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await api.post('/v1/admin/unmerge', { customer_id: id.value.trim(), reason: reason.value.trim() || undefined });
        clear(out, h('p', { class: 'ok', id: 'unmerged' }, 'Unmerged: ', h('code', {}, r.customer_id),
          ' is its own customer again, apart from ', h('code', {}, r.survivor_id), '.'));
      } catch (err) { clear(out, problemBox(err)); }
    } }, field('absorbed customer', id), field('reason', reason), h('button', { type: 'submit' }, 'Unmerge')), out);
}

async function loadConflicts(box) {
  try {
    const items = (await api.get('/v1/admin/identity-conflicts' + qs({ limit: 50 }))).items;
    clear(box, items.length ? table(['when', 'source', 'reason', 'customers', 'identifiers'], items.map((c) => [
      when(c.at), c.source, c.reason, (c.customer_ids || []).join(' '),
      (c.identifiers || []).map((i) => `${i.kind}${i.namespace ? ' (' + i.namespace + ')' : ''}: ${i.value}`).join(', ')]),
    { class: 'conflicts' }) : h('p', { class: 'muted' }, 'No identity conflicts.'));
  } catch (err) { clear(box, problemBox(err)); }
}

function blockedForm(reload) {
  const kind = select('kind', KINDS, 'email');
  const value = input('value', { required: true });
  const pattern = h('input', { type: 'checkbox', name: 'pattern' });
  const reason = input('reason', { maxlength: 200 });
  const msg = h('p', { class: 'muted', role: 'status' });
  return h('div', {}, h('form', { class: 'row', id: 'block-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const r = await api.post('/v1/admin/blocked-identifiers', { kind: kind.value, value: value.value,
        pattern: pattern.checked, reason: reason.value.trim() || undefined });
      msg.textContent = `Blocked ${r.kind} ${r.value}.`;
      value.value = '';
      reload();
    } catch (err) { msg.textContent = err.message; }
  } }, field('kind', kind), field('value', value), h('label', { class: 'check' }, pattern, ' regular expression'),
  field('reason', reason), h('button', { type: 'submit' }, 'Block')), msg);
}

// The operator's own rows first, the built-in defaults folded away below.
async function loadBlocked(box) {
  try {
    const items = (await api.get('/v1/admin/blocked-identifiers')).items;
    const rows = (list) => table(['kind', 'value', 'pattern', 'reason', 'since', ''], list.map((b) => [
      b.kind, h('code', {}, b.value), b.pattern ? 'yes' : 'no', text(b.reason), when(b.created_at),
      unblockButton(b, () => loadBlocked(box))]), { class: 'blocked' });
    const own = items.filter((b) => !b.builtin), builtin = items.filter((b) => b.builtin);
    clear(box, own.length ? rows(own) : h('p', { class: 'muted' }, 'No values blocked by hand.'),
      builtin.length ? h('details', {}, h('summary', {}, `${builtin.length} built-in defaults`), rows(builtin)) : null);
  } catch (err) { clear(box, problemBox(err)); }
}

function unblockButton(b, reload) {
  const btn = h('button', { type: 'button', class: 'danger', 'aria-label': `Unblock ${b.kind} ${b.value}` }, 'Unblock');
  btn.addEventListener('click', async () => {
    if (!btn.dataset.armed) { btn.dataset.armed = '1'; btn.textContent = 'Confirm unblock'; return; }
    btn.disabled = true;
    try {
      await api.del('/v1/admin/blocked-identifiers' + qs({ kind: b.kind, value: b.value, pattern: b.pattern ? 'true' : '' }));
      reload();
    } catch (err) { btn.replaceWith(problemBox(err)); }
  });
  return btn;
}

async function loadLimits(box, saved) {
  try {
    const items = (await api.get('/v1/admin/identifier-limits')).items;
    clear(box, table(['kind', 'at most per customer', 'priority (1 = most trusted)', ''], items.map((l) => {
      const max = input('max_per_customer', { type: 'number', min: 1, max: 1000, value: l.max_per_customer,
        'aria-label': `${l.kind}: at most per customer` });
      const prio = input('priority', { type: 'number', min: 1, max: 100, value: l.priority, 'aria-label': `${l.kind}: priority` });
      const save = h('button', { type: 'button', 'data-kind': l.kind, 'aria-label': `Save the ${l.kind} limit`, onclick: async () => {
        try {
          const r = await api.put('/v1/admin/identifier-limits', { kind: l.kind, max_per_customer: Number(max.value), priority: Number(prio.value) });
          loadLimits(box, `Saved: ${r.kind} at most ${r.max_per_customer} per customer, priority ${r.priority}.`);
        } catch (err) { save.replaceWith(problemBox(err)); }
      } }, 'Save');
      return [l.kind, max, prio, save];
    }), { class: 'limits' }), h('p', { class: 'muted', role: 'status', id: 'limits-status' }, saved || ''));
  } catch (err) { clear(box, problemBox(err)); }
}

function createForm(created, reload) {
  const name = h('input', { name: 'name', required: true, maxlength: 200, autocomplete: 'off' });
  const role = select('role', ROLES, 'call_center');
  const ns = h('input', { name: 'namespace', autocomplete: 'off' });
  const shared = h('input', { name: 'shared_fields', placeholder: 'email,first_name', autocomplete: 'off' });
  const partnerOnly = [field('namespace', ns), field('shared fields', shared)];
  const sync = () => partnerOnly.forEach((f) => { f.hidden = role.value !== 'partner'; });
  role.addEventListener('change', sync);
  sync();
  return h('form', { class: 'row', id: 'create-key', onsubmit: async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), role: role.value };
    if (role.value === 'partner') {
      body.namespace = ns.value.trim();
      body.shared_fields = shared.value.split(',').map((s) => s.trim()).filter(Boolean);
    }
    try {
      const k = await api.post('/v1/admin/keys', body);
      // The secret is shown once, here, and kept nowhere else.
      clear(created, h('div', { class: 'secret' },
        h('p', {}, 'New ', k.role, ' key ', h('strong', {}, k.name), ': copy it now, it is not shown again.'),
        h('code', { id: 'new-key' }, k.api_key)));
      name.value = '';
      reload();
    } catch (err) { clear(created, problemBox(err)); }
  } }, field('name', name), field('role', role), partnerOnly, h('button', { type: 'submit' }, 'Create key'));
}

async function loadKeys(box) {
  try {
    const items = (await api.get('/v1/admin/keys')).items;
    clear(box, table(['name', 'role', 'key id', 'created', 'revoked', ''], items.map((k) => [
      k.name, k.namespace ? `${k.role} (${k.namespace})` : k.role, h('code', {}, k.key_id), when(k.created_at),
      when(k.revoked_at), k.revoked_at ? '' : revokeButton(k, () => loadKeys(box))]), { class: 'keys' }));
  } catch (err) { clear(box, problemBox(err)); }
}

// Two steps instead of a dialog: the first click arms, the second revokes.
function revokeButton(k, reload) {
  const b = h('button', { type: 'button', class: 'danger', 'data-key-id': k.key_id }, 'Revoke');
  b.addEventListener('click', async () => {
    if (!b.dataset.armed) { b.dataset.armed = '1'; b.textContent = 'Confirm revoke'; return; }
    b.disabled = true;
    try { await api.del(`/v1/admin/keys/${k.key_id}`); reload(); } catch (err) { b.replaceWith(problemBox(err)); }
  });
  return b;
}

async function loadWebhooks(box) {
  try {
    const items = (await api.get('/v1/webhooks')).items;
    if (!items.length) { clear(box, h('p', { class: 'muted' }, 'No webhooks.')); return; }
    const deliveries = await Promise.all(items.map((w) =>
      api.get(`/v1/webhooks/${w.webhook_id}/deliveries` + qs({ limit: 10 })).then((d) => d.items, (err) => err)));
    clear(box, h('button', { type: 'button', id: 'webhooks-refresh', onclick: () => loadWebhooks(box) }, 'Refresh'),
      items.map((w, i) => h('div', { class: 'webhook' },
        h('h3', {}, w.url, w.enabled ? '' : ' (disabled)'),
        h('p', { class: 'muted' }, 'events: ', (w.event_types || ['all']).join(', '), w.description ? ` · ${w.description}` : ''),
        deliveries[i] instanceof Error ? problemBox(deliveries[i])
          : deliveries[i].length ? table(['event', 'status', 'attempts', 'last status', 'last error', 'made', 'next attempt', ''],
            deliveries[i].map((d) => [d.event_type, d.status, d.attempts, text(d.last_status), text(d.last_error), when(d.created_at),
              d.status === 'pending' ? when(d.next_attempt_at) : '—', replayButton(w, d)]),
            { class: 'deliveries' })
            : h('p', { class: 'muted' }, 'no deliveries yet'))));
  } catch (err) { clear(box, problemBox(err)); }
}

// A delivered or dead delivery can be sent again (pending, due at once);
// "Refresh" then shows how it went.
function replayButton(w, d) {
  if (d.status !== 'delivered' && d.status !== 'dead') return '';
  const b = h('button', { type: 'button', 'data-delivery-id': d.delivery_id,
    'aria-label': `Replay delivery ${d.delivery_id} (${d.event_type})` }, 'Replay');
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      const r = await api.post(`/v1/webhooks/${w.webhook_id}/deliveries:replay`, { delivery_id: d.delivery_id });
      b.replaceWith(h('span', { class: 'ok', role: 'status' }, `replayed: ${r.status}`));
    } catch (err) { b.replaceWith(problemBox(err)); }
  });
  return b;
}
