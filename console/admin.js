// admin: API keys (list, create with the secret shown once, revoke in two
// steps) and webhooks with their most recent deliveries.
import { api, qs } from './api.js';
import { h, clear, table, section, field, select, text, when, problemBox } from './dom.js';

const ROLES = ['front_office', 'call_center', 'marketing', 'partner', 'admin'];

export function adminScreen(root) {
  const keys = h('div', { id: 'keys' });
  const created = h('div', { id: 'created', 'aria-live': 'polite' });
  const hooks = h('div', { id: 'webhooks' });
  clear(root, section('API keys', createForm(created, () => loadKeys(keys)), created, keys),
    section('Webhooks', hooks));
  loadKeys(keys);
  loadWebhooks(hooks);
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
    clear(box, items.map((w, i) => h('div', { class: 'webhook' },
      h('h3', {}, w.url, w.enabled ? '' : ' (disabled)'),
      h('p', { class: 'muted' }, 'events: ', (w.event_types || ['all']).join(', '), w.description ? ` · ${w.description}` : ''),
      deliveries[i] instanceof Error ? problemBox(deliveries[i])
        : deliveries[i].length ? table(['event', 'status', 'attempts', 'last status', 'last error', 'made'],
          deliveries[i].map((d) => [d.event_type, d.status, d.attempts, text(d.last_status), text(d.last_error), when(d.created_at)]))
          : h('p', { class: 'muted' }, 'no deliveries yet'))));
  } catch (err) { clear(box, problemBox(err)); }
}
