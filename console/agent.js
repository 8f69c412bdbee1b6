// agent: the customer on the line. Find by email, phone (a national
// number is made E.164 with a default country chosen once per browser),
// loyalty card or external id (GET /v1/customers?...), then the single view from the
// profile (identifiers and merge history, traits with their sources, value,
// satisfaction, open cases, needs, preferences and consents, both editable),
// the journey stage and the next best action with its reason (GET
// /v1/customers/{id}/summary, docs/summary.md), the contact decision for a
// chosen purpose and channel (asked again after
// every consent or preference change, so the agent sees its effect), and
// the timeline scrolled by its keyset cursor.
import { api, qs } from './api.js';
import { h, clear, dl, table, section, field, select, text, num, pct, when, problemBox } from './dom.js';

const PURPOSES = ['marketing', 'service', 'profiling', 'partner_sharing'];
const CHANNELS = ['email', 'sms', 'phone', 'app', 'web', 'chat', 'social', 'store', 'partner'];
const KINDS = { email: 'email', phone: 'phone', loyalty_card: 'loyalty card', external: 'external id' };
// Default countries for national phone numbers: calling code, and whether
// the national trunk prefix 0 is dropped (Italy keeps it; NANP has none).
const COUNTRIES = { '': ['', false], FR: ['33', true], BE: ['32', true], DE: ['49', true], GB: ['44', true],
  NL: ['31', true], CH: ['41', true], ES: ['34', false], IT: ['39', false], US: ['1', false] };
const COUNTRY_KEY = 'crm.console.phone-country';

// "06 12 34 56 78" with FR -> "+33612345678"; "+…" and "00…" are kept
// international; without a default country the value goes as typed.
export function phoneE164(v, country) {
  const d = v.replace(/[\s().-]/g, '');
  if (d.startsWith('+')) return d;
  if (d.startsWith('00')) return '+' + d.slice(2);
  const [code, trunk] = COUNTRIES[country] || ['', false];
  if (!code) return v.trim();
  if (code === '1' && d.length === 11 && d.startsWith('1')) return '+' + d;
  return '+' + code + (trunk && d.startsWith('0') ? d.slice(1) : d);
}

export function agentScreen(root) {
  const out = h('div', { id: 'customer' });
  const value = h('input', { name: 'value', required: true, autocomplete: 'off', 'aria-label': 'identifier' });
  const ns = h('input', { name: 'namespace', placeholder: 'namespace', hidden: true, 'aria-label': 'namespace' });
  const saved = localStorage.getItem(COUNTRY_KEY) || '';
  const country = h('select', { name: 'country', 'aria-label': 'default country for national phone numbers', hidden: true,
    onchange: () => localStorage.setItem(COUNTRY_KEY, country.value) },
  Object.entries(COUNTRIES).map(([c, [code]]) => h('option', { value: c, selected: c === saved },
    c ? `${c} +${code}` : 'no default country')));
  const kind = h('select', { name: 'kind', 'aria-label': 'identifier kind',
    onchange: () => { ns.hidden = kind.value !== 'external'; country.hidden = kind.value !== 'phone'; } },
  Object.entries(KINDS).map(([k, label]) => h('option', { value: k }, label)));
  const form = h('form', { class: 'row', id: 'find', onsubmit: (e) => { e.preventDefault(); find(); } },
    kind, country, value, ns, h('button', { type: 'submit' }, 'Find'));

  async function find() {
    const v = kind.value === 'phone' ? phoneE164(value.value, country.value) : value.value.trim();
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
  const id = p.customer_id;
  const name = [t.first_name, t.last_name].filter(Boolean).join(' ') || '(no name)';
  const decision = h('div', { id: 'decision', 'aria-live': 'polite' });
  const timeline = h('div', { id: 'timeline' });
  const merges = h('div', { id: 'merges' });
  const nba = h('div', { id: 'nba', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'loading…'));
  const prefs = h('div', { id: 'preferences' }, preferencesTable(p.preferences || {}));
  const consents = h('div', { id: 'consents' }, consentsTable(p.consents || []));
  const dform = decisionForm(id, decision);
  clear(out,
    h('h2', { class: 'customer-name' }, name),
    h('p', { class: 'muted' }, 'customer ', h('code', {}, id),
      p.merged_ids && p.merged_ids.length ? ` · merged from ${p.merged_ids.length}` : ''),
    h('div', { class: 'grid' },
      section('Next best action', nba),
      section('Identifiers', table(['kind', 'value', 'source', 'since'],
        (p.identifiers || []).map((i) => [i.namespace ? `${i.kind} (${i.namespace})` : i.kind, i.value, i.source, when(i.created_at)])),
      merges),
      section('Traits', traitsTable(t, p.trait_sources || {})),
      section('Value', valueTable(p.value, p.aggregates || {})),
      section('Satisfaction', satisfactionTable(p.satisfaction || {})),
      section('Open cases', casesBox(p.cases)),
      section('Needs', (p.needs || []).length ? table(['need', 'declared', 'count', 'last'],
        p.needs.map((n) => [n.need, n.declared ? 'yes' : 'no', n.count, when(n.last_at)])) : h('p', { class: 'muted' }, 'none')),
      section('Contact decision', dform, decision),
      section('Consents', consents, consentForm(id, consents, dform)),
      section('Preferences', prefs, preferencesForm(id, p.preferences || {}, prefs, dform))),
    section('Timeline', timeline));
  loadMerges(id, merges);
  loadSummary(id, nba);
  loadTimeline(id, timeline, null);
}

// The agent's summary: the recommended action, its reason (customer text
// inside it, such as a case subject, stays text) and the journey stage.
async function loadSummary(id, box) {
  try {
    const s = await api.get(`/v1/customers/${id}/summary`);
    const a = s.next_best_action || {};
    const st = s.stage || {};
    clear(box, h('p', { class: 'nba-action' }, h('strong', {}, text(a.action))),
      h('p', { class: 'nba-reason' }, text(a.reason)),
      dl([['rule', text(a.rule)], ['stage', st.stage ? `${st.stage} since ${when(st.since)}` : '—']]));
  } catch (err) { clear(box, problemBox(err)); }
}

// Merge history (GET /v1/customers/{id}/merges): who was absorbed, when, by whom.
async function loadMerges(id, box) {
  try {
    const items = (await api.get(`/v1/customers/${id}/merges`)).items;
    if (!items.length) return;
    clear(box, h('h3', {}, 'Merge history'), table(['merged', 'absorbed', 'by', 'reason', 'undone'],
      items.map((m) => [when(m.merged_at), h('code', {}, m.absorbed_id), m.actor, text(m.reason),
        m.unmerged_at ? when(m.unmerged_at) : '—']), { class: 'merges' }));
  } catch (err) { clear(box, problemBox(err)); }
}

function casesBox(c) {
  if (!c || !c.total) return h('p', { class: 'muted' }, 'no cases');
  return h('div', {}, h('p', { class: 'muted' }, `${c.open_count} open of ${c.total}`),
    c.open.length ? table(['subject', 'status', 'priority', 'channel', 'assignee', 'opened'],
      c.open.map((x) => [text(x.subject), x.status, x.priority, x.channel, text(x.assignee), when(x.opened_at)]),
      { class: 'cases' }) : null);
}

function consentsTable(list) {
  return list.length ? table(['purpose', 'channel', 'status', 'source', 'since'],
    list.map((c) => [c.purpose, c.channel, c.status, c.source, when(c.occurred_at)]), { class: 'consents' })
    : h('p', { class: 'muted' }, 'none recorded');
}

// Grant or withdraw one consent (POST .../consents, source "console"), then
// show the current consents and ask the contact decision again.
function consentForm(id, box, dform) {
  const purpose = select('purpose', PURPOSES, 'marketing');
  const channel = select('channel', ['any', ...CHANNELS], 'email');
  const status = select('status', ['granted', 'withdrawn'], 'withdrawn');
  const msg = h('p', { class: 'muted', role: 'status' });
  return h('div', {}, h('form', { class: 'row', id: 'consent-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api.post(`/v1/customers/${id}/consents`, { purpose: purpose.value, channel: channel.value,
        status: status.value, source: 'console' });
      clear(box, consentsTable((await api.get(`/v1/customers/${id}/consents`)).current));
      msg.textContent = `Recorded: ${purpose.value} by ${channel.value} ${status.value}.`;
      dform.ask();
    } catch (err) { msg.textContent = err.message; }
  } }, field('purpose', purpose), field('channel', channel), field('status', status),
  h('button', { type: 'submit' }, 'Record consent')), msg);
}

// Preferences as a JSON merge patch: a filled field sets, an emptied one
// removes (null); the cap and the quiet hours are sent whole or not at all.
function preferencesForm(id, p, box, dform) {
  const input = (name, value, attrs = {}) => h('input', { name, value: value ?? '', autocomplete: 'off', ...attrs });
  const fc = p.frequency_cap || {}, qh = p.quiet_hours || {};
  const f = {
    channels: input('preferred_channels', (p.preferred_channels || []).join(','), { placeholder: 'email,sms' }),
    language: input('language', p.language, { placeholder: 'fr-CA' }),
    max: input('max_messages', fc.max_messages, { type: 'number', min: 0, max: 1000 }),
    days: input('period_days', fc.period_days, { type: 'number', min: 1, max: 365 }),
    start: input('quiet_start', qh.start, { placeholder: '22:00' }),
    end: input('quiet_end', qh.end, { placeholder: '08:00' }),
    tz: input('time_zone', qh.time_zone, { placeholder: 'Europe/Paris' }),
  };
  const msg = h('p', { class: 'muted', role: 'status' });
  const v = (el) => el.value.trim();
  return h('details', {}, h('summary', {}, 'Edit preferences'), h('form', { id: 'preferences-form', onsubmit: async (e) => {
    e.preventDefault();
    const patch = {
      preferred_channels: v(f.channels) ? v(f.channels).split(',').map((c) => c.trim()).filter(Boolean) : null,
      language: v(f.language) || null,
      frequency_cap: v(f.max) || v(f.days) ? { max_messages: Number(v(f.max)), period_days: Number(v(f.days)) } : null,
      quiet_hours: v(f.start) || v(f.end) || v(f.tz) ? { start: v(f.start), end: v(f.end), time_zone: v(f.tz) } : null,
    };
    try {
      const r = await api.patch(`/v1/customers/${id}/preferences`, { source: 'console', preferences: patch });
      clear(box, preferencesTable(r.preferences));
      msg.textContent = 'Saved.';
      dform.ask();
    } catch (err) { msg.textContent = err.message; }
  } },
  h('div', { class: 'row' }, field('preferred channels', f.channels), field('language', f.language)),
  h('div', { class: 'row' }, field('at most (messages)', f.max), field('in (days)', f.days)),
  h('div', { class: 'row' }, field('quiet from', f.start), field('quiet to', f.end), field('time zone', f.tz)),
  h('button', { type: 'submit' }, 'Save preferences')), msg);
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

// Each score is {score, at, channel, type, interaction_id} or null.
function satisfactionTable(s) {
  const score = (x, extra) => (x && x.score !== undefined ? `${x.score}${extra || ''}, ${when(x.at)}` : '—');
  return dl([['NPS', score(s.nps, s.nps_category ? ` (${s.nps_category})` : '')],
    ['CSAT', score(s.csat)], ['CES', score(s.ces)]]);
}

function preferencesTable(p) {
  return dl([['channels', (p.preferred_channels || []).join(', ') || '—'], ['language', text(p.language)],
    ['frequency cap', p.frequency_cap ? `${p.frequency_cap.max_messages} in ${p.frequency_cap.period_days} days` : '—'],
    ['quiet hours', p.quiet_hours ? `${p.quiet_hours.start}–${p.quiet_hours.end} ${p.quiet_hours.time_zone}` : '—'],
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
  form.ask = ask;
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
