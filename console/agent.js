// agent: the customer on the line. Find by email, phone, loyalty card or
// external id (GET /v1/customers?...), then the single view from the
// profile (identifiers, traits with their sources, value, satisfaction,
// needs, preferences, consents), the contact decision for a chosen purpose
// and channel, and the timeline scrolled by its keyset cursor.
import { api, qs } from './api.js';
import { h, clear, dl, table, section, field, select, text, num, pct, when, problemBox } from './dom.js';

const PURPOSES = ['marketing', 'service', 'profiling', 'partner_sharing'];
const CHANNELS = ['email', 'sms', 'phone', 'app', 'web', 'chat', 'social', 'store', 'partner'];
const KINDS = { email: 'email', phone: 'phone', loyalty_card: 'loyalty card', external: 'external id' };

export function agentScreen(root) {
  const out = h('div', { id: 'customer' });
  const value = h('input', { name: 'value', required: true, autocomplete: 'off', 'aria-label': 'identifier' });
  const ns = h('input', { name: 'namespace', placeholder: 'namespace', hidden: true, 'aria-label': 'namespace' });
  const kind = h('select', { name: 'kind', 'aria-label': 'identifier kind',
    onchange: () => { ns.hidden = kind.value !== 'external'; } },
  Object.entries(KINDS).map(([k, label]) => h('option', { value: k }, label)));
  const form = h('form', { class: 'row', id: 'find', onsubmit: (e) => { e.preventDefault(); find(); } },
    kind, value, ns, h('button', { type: 'submit' }, 'Find'));

  async function find() {
    const v = value.value.trim();
    const params = kind.value === 'external'
      ? { kind: 'external', value: v, namespace: ns.value.trim() }
      : { [kind.value]: v };
    clear(out, h('p', { class: 'muted' }, 'Looking up…'));
    try {
      const p = await api.get('/v1/customers' + qs(params));
      showCustomer(out, p);
    } catch (err) {
      clear(out, err.status === 404 ? h('p', { class: 'muted', role: 'status' }, 'No customer with this identifier.')
        : problemBox(err));
    }
  }
  clear(root, section('Find a customer', form), out);
  value.focus();
}

function showCustomer(out, p) {
  const t = p.traits || {};
  const name = [t.first_name, t.last_name].filter(Boolean).join(' ') || '(no name)';
  const decision = h('div', { id: 'decision' });
  const timeline = h('div', { id: 'timeline' });
  clear(out,
    h('h2', { class: 'customer-name' }, name),
    h('p', { class: 'muted' }, 'customer ', h('code', {}, p.customer_id),
      p.merged_ids && p.merged_ids.length ? ` · merged from ${p.merged_ids.length}` : ''),
    h('div', { class: 'grid' },
      section('Identifiers', table(['kind', 'value', 'source', 'since'],
        (p.identifiers || []).map((i) => [i.namespace ? `${i.kind} (${i.namespace})` : i.kind, i.value, i.source, when(i.created_at)]))),
      section('Traits', traitsTable(t, p.trait_sources || {})),
      section('Value', valueTable(p.value, p.aggregates || {})),
      section('Satisfaction', satisfactionTable(p.satisfaction || {})),
      section('Needs', (p.needs || []).length ? table(['need', 'declared', 'count', 'last'],
        p.needs.map((n) => [n.need, n.declared ? 'yes' : 'no', n.count, when(n.last_at)])) : h('p', { class: 'muted' }, 'none')),
      section('Preferences', preferencesTable(p.preferences || {})),
      section('Consents', (p.consents || []).length ? table(['purpose', 'channel', 'status', 'since'],
        p.consents.map((c) => [c.purpose, c.channel, c.status, when(c.occurred_at)])) : h('p', { class: 'muted' }, 'none recorded')),
      section('Contact decision', decisionForm(p.customer_id, decision), decision)),
    section('Timeline', timeline));
  loadTimeline(p.customer_id, timeline, null);
}

function traitsTable(t, sources) {
  const rows = [];
  for (const [k, v] of Object.entries(t)) {
    if (k === 'attributes' && v && typeof v === 'object') {
      for (const [ak, av] of Object.entries(v)) rows.push([`attributes.${ak}`, text(av), sourceOf(sources[`attributes.${ak}`])]);
    } else rows.push([k, text(v), sourceOf(sources[k])]);
  }
  return rows.length ? table(['trait', 'value', 'source'], rows, { class: 'traits' }) : h('p', { class: 'muted' }, 'none');
}

function sourceOf(s) { return s ? `${s.source}, ${when(s.updated_at)}` : '—'; }

function valueTable(v, a) {
  const revenue = Object.entries(a.revenue || {}).map(([c, x]) => `${num(x)} ${c}`).join(', ');
  if (!v) {
    return dl([['tier', 'not computed yet'], ['revenue', revenue || '—'], ['interactions', a.interaction_count],
      ['complaints', a.complaints], ['last seen', when(a.last_seen)]]);
  }
  return dl([
    ['tier', h('span', { class: 'tier tier-' + String(v.tier).replace(/[^a-z_]/g, '') }, text(v.tier))],
    ['CLV', `${num(v.clv)} ${v.currency || ''}`], ['churn risk', pct(v.churn_risk)], ['P(alive)', pct(v.p_alive)],
    ['revenue', `${num(v.revenue)} ${v.currency || ''}`], ['margin', num(v.margin)], ['returns', num(v.returns)],
    ['RFM', v.rfm ? v.rfm.score : '—'], ['interactions', a.interaction_count], ['complaints', a.complaints],
    ['last purchase', when(v.last_purchase_at)], ['computed', when(v.computed_at)],
  ]);
}

function satisfactionTable(s) {
  return dl([['NPS', s.nps === null || s.nps === undefined ? '—' : `${s.nps} (${text(s.nps_category)})`],
    ['CSAT', text(s.csat)], ['CES', text(s.ces)]]);
}

function preferencesTable(p) {
  return dl([['channels', (p.preferred_channels || []).join(', ') || '—'], ['language', text(p.language)],
    ['frequency cap', text(p.frequency_cap)], ['quiet hours', text(p.quiet_hours)],
    ['custom', Object.keys(p.custom || {}).length ? text(p.custom) : '—']]);
}

function decisionForm(id, out) {
  const purpose = select('purpose', PURPOSES, 'marketing');
  const channel = select('channel', CHANNELS, 'email');
  const ask = async () => {
    try {
      const d = await api.get(`/v1/customers/${id}/contact-decision` + qs({ purpose: purpose.value, channel: channel.value }));
      clear(out, h('p', { class: d.allowed ? 'ok' : 'no', id: 'decision-result' },
        d.allowed ? 'Allowed' : 'Not allowed', ': ', text(d.detail || d.reason)),
      d.best_channel ? h('p', { class: 'muted' }, 'best channel: ', d.best_channel) : null);
    } catch (err) { clear(out, problemBox(err)); }
  };
  const form = h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); ask(); } },
    field('purpose', purpose), field('channel', channel), h('button', { type: 'submit' }, 'Check'));
  ask();
  return form;
}

async function loadTimeline(id, box, cursor) {
  let list = box.querySelector('ol');
  if (!list) { list = h('ol', { class: 'timeline' }); clear(box, list); }
  box.querySelector('button.more')?.remove();
  try {
    const page = await api.get(`/v1/customers/${id}/interactions` + qs({ limit: 20, cursor }));
    for (const i of page.items) {
      list.append(h('li', {},
        h('time', { datetime: i.occurred_at }, when(i.occurred_at)), ' ',
        h('strong', {}, i.type), ` via ${i.channel} (${i.source})`,
        i.amount !== null && i.amount !== undefined ? ` · ${num(i.amount)} ${i.currency || ''}` : '',
        i.tags && i.tags.length ? ` · ${i.tags.join(', ')}` : ''));
    }
    if (!page.items.length && !cursor) box.append(h('p', { class: 'muted' }, 'no interactions'));
    if (page.next_cursor) {
      box.append(h('button', { class: 'more', type: 'button', onclick: () => loadTimeline(id, box, page.next_cursor) }, 'More'));
    }
  } catch (err) { box.append(problemBox(err)); }
}
