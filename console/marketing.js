// marketing: KPIs for a chosen period (GET /v1/kpis) as numbers and, over
// the same period cut into months, one chart (uPlot, vendored: revenue and
// active customers per month); the tier and CLV distributions of the
// latest value run (counts of segment previews); the saved segments with
// their member counts;
// a rule editor whose preview (POST /v1/segments:preview: count and first
// members, nothing saved) follows the typing, and which saves the rule as
// a segment; a segment's members for a purpose and channel (those the
// contact decision allows) and their export as NDJSON with that purpose,
// channel and the fields asked for.
import { api, qs } from './api.js';
import { h, clear, dl, table, section, field, select, num, pct, when, problemBox } from './dom.js';

const PURPOSES = ['', 'marketing', 'service', 'profiling', 'partner_sharing'];
const CHANNELS = ['', 'email', 'sms', 'phone', 'app', 'web', 'chat', 'social', 'store', 'partner'];

const day = (d) => d.toISOString().slice(0, 10);

export function marketingScreen(root) {
  const now = new Date();
  const from = h('input', { type: 'date', name: 'from', value: day(new Date(Date.UTC(now.getUTCFullYear() - 1, now.getUTCMonth(), 1))) });
  const to = h('input', { type: 'date', name: 'to', value: day(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1))) });
  const numbers = h('div', { id: 'kpis' });
  const chart = h('div', { id: 'kpi-chart', class: 'chart' });
  const segments = h('div', { id: 'segments' });
  const members = h('div', { id: 'members' });
  const reloadSegments = () => loadSegments(segments, members);
  const form = h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); loadKpis(); } },
    field('from', from), field('to', to), h('button', { type: 'submit' }, 'Show'));

  async function loadKpis() {
    const f = new Date(from.value + 'T00:00:00Z'), t = new Date(to.value + 'T00:00:00Z');
    clear(numbers, h('p', { class: 'muted' }, 'Computing…'));
    try {
      const k = await api.get('/v1/kpis' + qs({ from: f.toISOString(), to: t.toISOString() }));
      clear(numbers, kpiTable(k));
    } catch (err) { clear(numbers, problemBox(err)); return; }
    drawChart(chart, f, t).catch((err) => clear(chart, problemBox(err)));
  }
  // The KPI figures first; the chart, the distributions and the segments
  // (two dozen more calls) only then, so the figures are not queued behind them.

  const dist = h('div', { id: 'distribution', class: 'grid' });
  clear(root, section('KPIs', form, numbers, chart), section('Value distribution', dist),
    section('Segments', segments), members,
    section('Rule editor', ruleEditor(reloadSegments)));
  loadKpis().then(() => { loadDistribution(dist); reloadSegments(); });
}

const TIERS = ['mvc', 'mgc', 'standard', 'prospect', 'bz'];
const CLV_EDGES = [0, 50, 200, 500, 1000, 5000];

// Each bar is the count of a preview (POST /v1/segments:preview, limit 1):
// the same rules a segment would use, so the figures agree with segments.
async function loadDistribution(box) {
  const tier = (t) => ({ field: 'value.tier', op: 'eq', value: t });
  const buckets = CLV_EDGES.map((lo, i) => {
    const hi = CLV_EDGES[i + 1];
    const rule = hi === undefined ? { field: 'value.clv', op: 'gte', value: lo }
      : { all: [{ field: 'value.clv', op: 'gte', value: lo }, { field: 'value.clv', op: 'lt', value: hi }] };
    return [hi === undefined ? `${num(lo, 0)} or more` : `${num(lo, 0)} to ${num(hi, 0)}`, rule];
  });
  const tiers = [...TIERS.map((t) => [t, tier(t)]), ['no value yet', { field: 'value.tier', op: 'exists', value: false }]];
  const count = (rule) => api.post('/v1/segments:preview', { rule, limit: 1 }).then((p) => p.count);
  try {
    const [tc, cc] = await Promise.all([Promise.all(tiers.map(([, r]) => count(r))), Promise.all(buckets.map(([, r]) => count(r)))]);
    clear(box, bars('Customers by tier', 'tiers', 'tier', tiers.map(([l]) => l), tc),
      bars('Customers by predicted CLV', 'clv', 'CLV', buckets.map(([l]) => l), cc));
  } catch (err) { clear(box, problemBox(err)); }
}

// A table of counts with a native <meter> each (no inline style: the CSP).
function bars(title, id, what, labels, counts) {
  const max = Math.max(1, ...counts);
  return h('div', {}, h('h3', {}, title), table([what, 'customers', 'relative to the largest'], labels.map((l, i) => [l, num(counts[i], 0),
    h('meter', { min: 0, max, value: counts[i], 'aria-label': `${l}: ${counts[i]}` })]), { class: 'bars', id }));
}

const EXAMPLE = { all: [{ field: 'value.tier', op: 'in', value: ['mvc', 'mgc'] },
  { interaction: { type: 'purchase', within_days: 365 } }] };

// The rule as JSON; 400 ms after the last keystroke it is previewed. Only
// the latest answer is shown (an older one arriving late is dropped).
function ruleEditor(reload) {
  const rule = h('textarea', { name: 'rule', id: 'rule', rows: 8, spellcheck: 'false', 'aria-describedby': 'rule-help' },
    JSON.stringify(EXAMPLE, null, 2));
  const name = h('input', { name: 'name', maxlength: 100, autocomplete: 'off' });
  const preview = h('div', { id: 'preview', 'aria-live': 'polite' });
  const msg = h('p', { class: 'muted', role: 'status' });
  let timer = 0, seq = 0;
  const parsed = () => { try { return JSON.parse(rule.value); } catch { return undefined; } };
  const run = async () => {
    const r = parsed(), mine = ++seq;
    if (r === undefined) { clear(preview, h('p', { class: 'error', id: 'preview-error' }, 'Not valid JSON yet.')); return; }
    try {
      const p = await api.post('/v1/segments:preview', { rule: r, limit: 10 });
      if (mine !== seq) return;
      clear(preview, h('p', { id: 'preview-count' }, `${num(p.count, 0)} customers match`),
        p.items.length ? table(['customer', 'tier', 'CLV', 'RFM'], p.items.map((m) => [m.customer_id, m.tier, num(m.clv), m.rfm])) : null);
    } catch (err) {
      if (mine !== seq) return;
      clear(preview, h('div', { id: 'preview-error' }, problemBox(err)));
    }
  };
  rule.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 400); });
  run();
  return h('div', {},
    h('p', { class: 'muted', id: 'rule-help' }, 'A segment rule as JSON (docs/value.md, Segment rules). The preview follows your typing.'),
    h('label', { for: 'rule', class: 'sr-only' }, 'rule'), rule, preview,
    h('form', { class: 'row', id: 'save-segment', onsubmit: async (e) => {
      e.preventDefault();
      const r = parsed();
      if (r === undefined) { msg.textContent = 'The rule is not valid JSON.'; return; }
      try {
        const s = await api.post('/v1/segments', { name: name.value.trim(), rule: r });
        msg.textContent = `Saved segment ${s.name}.`;
        name.value = '';
        reload();
      } catch (err) { msg.textContent = err.message; }
    } }, field('segment name', name), h('button', { type: 'submit' }, 'Save as segment')), msg);
}

function kpiTable(k) {
  const s = k.satisfaction || {};
  return h('div', { class: 'kpi-grid' }, [
    ['customers', num(k.customers, 0)], ['active', num(k.active_customers, 0)], ['new', num(k.new_customers, 0)],
    ['retention', pct(k.retention_rate)], ['churn', pct(k.churn_rate)], ['growth', pct(k.growth_rate)],
    ['revenue', `${num(k.revenue)} ${k.currency || ''}`], ['ROC', pct(k.roc)],
    ['complaints / 1,000', num(k.complaints_per_1000, 1)], ['returns / 1,000', num(k.returns_per_1000, 1)],
    ['NPS', s.nps && s.nps.score !== null && s.nps.score !== undefined ? num(s.nps.score, 0) : '—'],
    ['customer equity', num(k.customer_equity_end)],
  ].map(([label, v]) => h('div', { class: 'kpi' }, h('span', { class: 'kpi-value' }, v), h('span', { class: 'kpi-label' }, label))));
}

// Months from f to t (at most 24), one KPI call each, in parallel.
async function drawChart(box, f, t) {
  const edges = [];
  for (let d = new Date(f); d < t && edges.length < 24; d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1))) edges.push(d);
  edges.push(t);
  if (edges.length < 3 || !window.uPlot) { clear(box); return; }
  const pages = await Promise.all(edges.slice(0, -1).map((d, i) =>
    api.get('/v1/kpis' + qs({ from: d.toISOString(), to: edges[i + 1].toISOString() }))));
  const xs = edges.slice(0, -1).map((d) => d.getTime() / 1000);
  const revenue = pages.map((k) => k.revenue ?? null);
  const active = pages.map((k) => k.active_customers ?? null);
  clear(box);
  const width = Math.max(280, Math.min(box.clientWidth || 800, 1100));
  new window.uPlot({
    width, height: 240, title: 'Revenue and active customers per month',
    scales: { x: { time: true }, n: {} },
    series: [{}, { label: 'revenue', stroke: '#2563eb', width: 2, scale: 'y' },
      { label: 'active customers', stroke: '#d97706', width: 2, scale: 'n' }],
    axes: [{}, { scale: 'y' }, { scale: 'n', side: 1, grid: { show: false } }],
  }, [xs, revenue, active], box);
}

async function loadSegments(box, members) {
  try {
    const list = (await api.get('/v1/segments')).items;
    if (!list.length) { clear(box, h('p', { class: 'muted' }, 'No segments yet.')); return; }
    const counts = await Promise.all(list.map((s) =>
      api.get(`/v1/segments/${s.segment_id}/customers` + qs({ limit: 1, count: 'true' })).then((p) => p.count, () => null)));
    clear(box, table(['segment', 'members', 'created', ''], list.map((s, i) => [
      s.name, num(counts[i], 0), when(s.created_at),
      h('button', { type: 'button', onclick: () => showMembers(members, s) }, 'Members')]), { class: 'segments' }));
  } catch (err) { clear(box, problemBox(err)); }
}

function showMembers(box, seg) {
  const purpose = select('purpose', PURPOSES, 'marketing');
  const channel = select('channel', CHANNELS, 'email');
  const fields = h('input', { name: 'fields', autocomplete: 'off', spellcheck: 'false', placeholder: 'email,first_name,value.tier' });
  const list = h('div', {});
  const status = h('p', { class: 'muted', role: 'status', id: 'export-status' });
  const params = () => ({ purpose: purpose.value, channel: purpose.value ? channel.value : '' });
  const load = async () => {
    try {
      const p = await api.get(`/v1/segments/${seg.segment_id}/customers` + qs({ limit: 50, count: 'true', ...params() }));
      clear(list, h('p', {}, `${num(p.count, 0)} members`, purpose.value ? ` reachable for ${purpose.value} by ${channel.value}` : ''),
        table(['customer', 'tier', 'CLV', 'RFM'], p.items.map((m) => [m.customer_id, m.tier, num(m.clv), m.rfm])));
    } catch (err) { clear(list, problemBox(err)); }
  };
  const exportNdjson = async () => {
    status.textContent = 'Exporting…';
    try {
      const f = fields.value.split(',').map((x) => x.trim()).filter(Boolean).join(',');
      const r = await api.raw(`/v1/segments/${seg.segment_id}/export` + qs({ ...params(), fields: f }));
      const blob = await r.blob();
      const a = h('a', { href: URL.createObjectURL(blob), download: `segment-${seg.segment_id}.ndjson` });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      const lines = (await blob.text()).split('\n').filter(Boolean).length;
      status.textContent = `Exported ${lines} members (${blob.size.toLocaleString('en')} bytes)` +
        (purpose.value ? ` reachable for ${purpose.value} by ${channel.value}.` : ' (no purpose: every member).');
    } catch (err) { status.textContent = err.message; }
  };
  clear(box, section(`Members of ${seg.name}`,
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load(); } },
      field('purpose', purpose), field('channel', channel), h('button', { type: 'submit' }, 'Show'),
      field('export fields', fields), h('button', { type: 'button', id: 'export', onclick: exportNdjson }, 'Export NDJSON')),
    status, list));
  load();
}
