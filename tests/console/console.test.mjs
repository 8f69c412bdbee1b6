// The console in a real browser (tests/console/run.sh starts the server):
// seeds customers, interactions, a value run, a segment and a webhook
// through the API, then drives Debian's chromium with playwright-core:
// sign in as call_center and find a customer by phone (a trait holding
// markup renders as text and no dialog fires), as marketing (KPIs, the
// chart, a segment and its members), as admin (create a key, sign in with
// it elsewhere, revoke it: that session is signed out at its next call) and
// as front_office (no admin screen); then the second round: consents and
// preferences edited from the single view (the contact decision follows),
// open cases and satisfaction, merge with a dry run and unmerge (and the
// merge history on the agent screen), identity conflicts, blocked values
// and limits, the rule editor's live preview and an export with purpose,
// channel and fields; axe-core (npm, pinned, MPL-2.0) on every screen at
// 1,280 and 375 px with no horizontal scrolling of the page; a keyboard-only
// walk. Every page also fails a check on a Content-Security-Policy
// violation, a dialog, a page error or an API key in a URL. Prints
// "console: N passed, N failed" last.
import { chromium } from 'playwright-core';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const BASE = process.env.CRM_URL;
const ADMIN = process.env.CRM_ADMIN_KEY;
const SHOTS = process.env.CRM_SCREENSHOTS || '';
const OUT = process.env.CRM_CONSOLE_DIR || '/tmp';
const XSS = '<img src=x onerror=alert(1)>';
const run = randomUUID().slice(0, 8);
const PHONE = '+3361' + String(Date.now()).slice(-7);

let passed = 0, failed = 0;
const problems = []; // CSP violations, dialogs, page errors, keys in URLs: any fails the check running

async function call(method, path, body, key = ADMIN) {
  const r = await fetch(BASE + path, { method, headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function expect(cond, what) { if (!cond) throw new Error(what); }

async function check(name, fn) {
  problems.length = 0;
  const t0 = Date.now();
  try {
    await fn();
    if (problems.length) throw new Error(problems.join('; '));
    passed++;
    console.log(`ok - ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}: ${err.message.split('\n')[0]}`);
  }
}

// A fresh context (its own sessionStorage) with the watchers on.
async function newPage(browser, width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  page.on('dialog', (d) => { problems.push(`a dialog fired: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) problems.push(`CSP: ${m.text()}`); });
  page.on('request', (r) => { if (/crm_[0-9a-f]{32}/.test(r.url())) problems.push(`an API key in a URL: ${r.url()}`); });
  return page;
}

async function signIn(page, key) {
  await page.goto(BASE + '/console/');
  await page.fill('#key', key);
  await page.click('#signin button');
  await page.waitForSelector('#role');
}

// A picture for docs/console.md: the viewport, or one element.
async function shot(page, name, locator) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  if (locator) await locator.screenshot({ path: `${SHOTS}/${name}.png` });
  else await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: false });
}

// axe-core in the page (evaluated by the test, not loaded by the console, so
// the CSP stays as it is): any serious or critical violation fails.
async function axe(page, where) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const bad = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
  expect(bad.length === 0, `axe on ${where}: ${bad.join('; ')}`);
}

// The page itself never scrolls sideways (wide tables scroll in their card).
async function fits(page, where) {
  const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  expect(sw <= w, `${where}: the page is ${sw} px wide in a ${w} px window`);
}

async function findBy(page, kind, value) {
  await page.selectOption('#find select[name=kind]', kind);
  await page.fill('#find input[name=value]', value);
  await page.click('#find button');
  await page.waitForSelector('.customer-name');
}

// --- seed -----------------------------------------------------------------
const keys = {};
let hook, annId, segName, bob1, bob2, seeded = 0;
try {
for (const role of ['call_center', 'marketing', 'front_office']) {
  keys[role] = (await call('POST', '/v1/admin/keys', { name: `console ${role} ${run}`, role })).api_key;
}
// A webhook to a closed loopback port: its deliveries fail and are listed.
hook = await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/hook', event_types: ['customer.created'] });
const ann = await call('POST', '/v1/customers:resolve', {
  identifiers: [{ kind: 'email', value: `ann-${run}@example.com` }, { kind: 'phone', value: PHONE },
    { kind: 'loyalty_card', value: `CARD-${run}` }],
  source: 'web', traits: { first_name: 'Ann', last_name: XSS, attributes: { note: '<b>bold</b>' } } });
annId = ann.customer_id;
seeded++;
const items = [];
const now = new Date();
for (let i = 0; i < 25; i++) {
  const at = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - (i % 10), 3, 10, i));
  items.push({ customer_id: annId, source: 'pos', external_id: `r-${run}-${i}`, channel: 'store', type: 'purchase',
    occurred_at: at.toISOString(), amount: 20 + i, currency: 'EUR' });
}
// Twelve more buyers, first seen over the past year, from one purchase to
// four, at different paces and amounts.
for (let c = 0; c < 12; c++) {
  const other = await call('POST', '/v1/customers:resolve', { identifiers: [{ kind: 'email', value: `c${c}-${run}@example.com` }], source: 'web' });
  seeded++;
  const first = 30 + ((c * 97) % 330), n = 1 + ((c * 5) % 4);
  for (let i = 0; i < n; i++) {
    const at = new Date(now.getTime() - (first - i * Math.floor(first / (n + 1))) * 86400e3);
    items.push({ customer_id: other.customer_id, source: 'pos', external_id: `o-${run}-${c}-${i}`, channel: 'store',
      type: 'purchase', occurred_at: at.toISOString(), amount: 12 + 17 * ((c * 7 + i * 3) % 5), currency: 'EUR' });
  }
}
// A survey answer (NPS 3: a detractor) and an open case for the agent view.
items.push({ customer_id: annId, source: 'survey', external_id: `nps-${run}`, channel: 'email', type: 'feedback',
  occurred_at: new Date(now.getTime() - 3600e3).toISOString(), scores: { nps: 3, csat: 2 } });
await call('POST', '/v1/interactions:batch', { items });
await call('POST', `/v1/customers/${annId}/cases`, { source: 'phone', channel: 'phone', priority: 'high',
  subject: `kettle ${XSS}`, assignee: 'Zoë' });
// Two people who look like one (to merge, then unmerge), and two customers
// with different external ids in one namespace that one request names
// together: an identity conflict (merge_would_exceed_limits).
bob1 = (await call('POST', '/v1/customers:resolve', { identifiers: [{ kind: 'email', value: `bob-${run}@example.com` }],
  source: 'web', traits: { first_name: 'Bob' } })).customer_id;
bob2 = (await call('POST', '/v1/customers:resolve', { identifiers: [{ kind: 'email', value: `robert-${run}@example.com` }],
  source: 'store', traits: { first_name: 'Robert' } })).customer_id;
const ext = (v) => ({ kind: 'external', namespace: `shop-${run}`, value: v });
await call('POST', '/v1/customers:resolve', { identifiers: [ext('x1')], source: 'web' });
await call('POST', '/v1/customers:resolve', { identifiers: [ext('y1')], source: 'web' });
seeded += 4;
const clash = await call('POST', '/v1/customers:resolve', { identifiers: [ext('x1'), ext('y1')], source: 'import' });
if (!(clash.conflicts || []).some((c) => c.reason === 'merge_would_exceed_limits')) throw new Error('no identity conflict seeded');
await call('POST', `/v1/customers/${annId}/consents`, { purpose: 'marketing', channel: 'email', status: 'granted', source: 'web' });
// A value run for the profile's value section; on so little data the
// model may not converge (422 model-not-fitted), which this test does not need.
await call('POST', '/v1/value:recompute', {}).catch((err) => {
  if (!/model-not-fitted/.test(err.message)) throw err;
  console.log('# value run: the model did not converge on the seed data');
});
segName = `customers ${run}`;
await call('POST', '/v1/segments', { name: segName,
  rule: { field: 'customer.created_at', op: 'gte', value: new Date(now.getTime() - 60e3).toISOString() } });

} catch (err) {
  console.log(`FAIL - seeding through the API: ${err.message}`);
  console.log(`console: 0 passed, 1 failed`);
  process.exit(1);
}

// --- the browser ---------------------------------------------------------
const browser = await chromium.launch({ executablePath: process.env.CRM_CHROMIUM, args: ['--no-sandbox'] });
try {
  await check('the files are served with their type, ETag, CSP and nosniff', async () => {
    const r = await fetch(BASE + '/console/');
    expect(r.status === 200, `GET /console/: ${r.status}`);
    expect(r.headers.get('content-type') === 'text/html; charset=utf-8', 'html type');
    const csp = r.headers.get('content-security-policy') || '';
    for (const d of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) expect(csp.includes(d), `CSP lacks ${d}`);
    expect(r.headers.get('x-content-type-options') === 'nosniff', 'nosniff');
    const etag = r.headers.get('etag');
    expect(/^"[0-9a-f]{20}"$/.test(etag || ''), `ETag ${etag}`);
    const again = await fetch(BASE + '/console/', { headers: { 'If-None-Match': etag } });
    expect(again.status === 304, `If-None-Match: ${again.status}`);
    const js = await fetch(BASE + '/console/app.js');
    expect(js.headers.get('content-type') === 'text/javascript; charset=utf-8', 'js type');
    const missing = await fetch(BASE + '/console/nope.js');
    expect(missing.status === 404, `missing file: ${missing.status}`);
    const outside = await fetch(BASE + '/console/%2e%2e/meson.build');
    expect(outside.status === 404, `outside: ${outside.status}`);
  });

  await check('the first load is under 200 KB transferred', async () => {
    const page = await newPage(browser);
    await page.goto(BASE + '/console/', { waitUntil: 'load' });
    await page.waitForSelector('#key');
    const bytes = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, nav.transferSize);
    });
    console.log(`# first load: ${bytes} bytes transferred`);
    expect(bytes > 10000 && bytes < 200 * 1024, `${bytes} bytes`);
    await shot(page, 'signin');
    await page.context().close();
  });

  await check('each screen shows its controls and its first data (signed in; times reported, target 1 s)', async () => {
    const page = await newPage(browser);
    await signIn(page, ADMIN); // the key is now in this tab's sessionStorage
    const times = [];
    // Interactive: the screen's controls are there and work (the find field
    // focused, the KPI period form, the new-key form); loaded: its first
    // data shown (reported, not checked: it is the server's query time).
    // The best of three loads of each: the machine is shared, and one slow
    // load says more about the neighbours than about the console.
    const loaded = [];
    for (const [hash, ready, data] of [['agent', '#find input[name=value]:focus', '#find'],
      ['marketing', '#main form input[name=from]', '#kpis .kpi'], ['admin', '#create-key input[name=name]', 'table.keys']]) {
      let best = Infinity, bestData = Infinity;
      for (let i = 0; i < 3; i++) {
        await page.goto('about:blank');
        await page.goto(`${BASE}/console/#${hash}`, { waitUntil: 'commit' });
        await page.waitForSelector(ready);
        best = Math.min(best, Math.round(await page.evaluate(() => performance.now())));
        await page.waitForSelector(data);
        bestData = Math.min(bestData, Math.round(await page.evaluate(() => performance.now())));
        // Let the screen's other calls (the chart's, the segments') end
        // before the next load, which would otherwise queue behind them.
        await page.waitForLoadState('networkidle');
      }
      times.push([hash, best]);
      loaded.push([hash, bestData]);
    }
    console.log(`# interactive (ms from navigation, best of 3): ${times.map(([k, t]) => `${k} ${t}`).join(', ')}`);
    console.log(`# first data shown (ms, best of 3): ${loaded.map(([k, t]) => `${k} ${t}`).join(', ')}`);
    // The target is 1 s (issue 19), met on a quiet machine (240-420 ms);
    // the times are reported above and never asserted (no timing in the
    // suite). What fails this check is a screen whose controls or first
    // data never appear (waitForSelector's timeout).
    await page.context().close();
  });

  await check('a bad key is refused and nothing is kept', async () => {
    const page = await newPage(browser);
    await page.goto(BASE + '/console/');
    await page.fill('#key', 'crm_' + '0'.repeat(32) + '_' + 'A'.repeat(43));
    await page.click('#signin button');
    await page.waitForSelector('.signin .error:not(:empty)');
    expect(await page.evaluate(() => sessionStorage.length) === 0, 'sessionStorage keeps something');
    await page.context().close();
  });

  await check('call_center: find by phone, the profile, markup as text, the timeline', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.call_center);
    expect(await page.textContent('#role') === 'call_center', 'role');
    expect(await page.locator('#nav-admin').count() === 0, 'an admin link');
    expect(!page.url().includes('crm_'), 'the key in the URL');
    await page.selectOption('#find select[name=kind]', 'phone');
    await page.fill('#find input[name=value]', PHONE);
    await page.click('#find button');
    await page.waitForSelector('.customer-name');
    expect((await page.textContent('.customer-name')).includes(XSS), 'the name shows the markup as text');
    expect((await page.textContent('table.traits')).includes(XSS), 'the trait shows as text');
    expect((await page.textContent('table.traits')).includes('<b>bold</b>'), 'the attribute shows as text');
    expect(await page.locator('#customer img, #customer b').count() === 0, 'markup became elements');
    await page.waitForSelector('#decision-result');
    expect((await page.textContent('#decision-result')).startsWith('Allowed'), 'marketing by email is allowed (granted)');
    await page.waitForSelector('#timeline li');
    expect(await page.locator('#timeline li').count() === 20, 'first page of 20');
    await shot(page, 'agent');
    await page.click('#timeline button.more');
    await page.waitForFunction(() => document.querySelectorAll('#timeline li').length === 26);
    expect(await page.locator('#timeline button.more').count() === 0, 'no more after the last page');
    await page.waitForTimeout(300); // an onerror handler would have fired by now
    await page.context().close();
  });

  await check('marketing: KPIs, the chart, segments and members', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.marketing);
    expect(await page.locator('#nav-agent').count() === 0, 'a customers link for marketing');
    await page.waitForSelector('#kpis .kpi');
    expect(await page.locator('#kpis .kpi').count() >= 10, 'KPI tiles');
    await page.waitForSelector('#kpi-chart canvas');
    await page.waitForSelector('table#tiers meter');
    const mvc = (await call('POST', '/v1/segments:preview', { rule: { field: 'value.tier', op: 'eq', value: 'mvc' } })).count;
    const shown = await page.locator('table#tiers tr', { hasText: 'mvc' }).locator('td').nth(1).textContent();
    expect(shown === String(mvc), `mvc customers: ${shown}, the API says ${mvc}`);
    expect(await page.locator('table#clv meter').count() === 6, 'six CLV buckets');
    const row = page.locator('table.segments tr', { hasText: segName });
    await row.waitFor();
    const count = await row.locator('td').nth(1).textContent();
    expect(count === String(seeded), `the segment counts ${count}, not ${seeded}`);
    await shot(page, 'marketing');
    await row.locator('button').click();
    await page.waitForSelector('#members table');
    expect((await page.textContent('#members')).includes('1 members reachable for marketing by email'), 'members for marketing/email');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    expect(download.suggestedFilename().endsWith('.ndjson'), 'export file name');
    await page.context().close();
  });

  await check('admin: create a key, its session, revoke it, signed out at the next call', async () => {
    const admin = await newPage(browser);
    await signIn(admin, ADMIN);
    await admin.click('#nav-admin');
    await admin.waitForSelector('table.keys');
    await admin.fill('#create-key input[name=name]', `console revoked ${run}`);
    await admin.selectOption('#create-key select[name=role]', 'call_center');
    await admin.click('#create-key button[type=submit]');
    await admin.waitForSelector('#new-key');
    const secret = (await admin.textContent('#new-key')).trim();
    expect(/^crm_[0-9a-f]{32}_/.test(secret), 'the new key is shown');
    await admin.waitForSelector(`table.keys tr:has-text("console revoked ${run}")`);
    await admin.waitForSelector('.webhook table, .webhook p');
    await shot(admin, 'admin');

    const other = await newPage(browser);
    await signIn(other, secret);
    expect(await other.textContent('#role') === 'call_center', 'signed in with the new key');

    const kid = secret.slice(4, 36).replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
    const button = admin.locator(`button[data-key-id="${kid}"]`);
    await button.click();
    await button.click(); // confirm
    await admin.waitForSelector(`button[data-key-id="${kid}"]`, { state: 'detached' });

    await other.fill('#find input[name=value]', `ann-${run}@example.com`);
    await other.click('#find button');
    await other.waitForSelector('#signin');
    expect((await other.textContent('.signin .error')).includes('Signed out'), 'told it was signed out');
    expect(await other.evaluate(() => sessionStorage.length) === 0, 'the key is gone from sessionStorage');
    await admin.context().close();
    await other.context().close();
  });

  await check('admin: webhook deliveries are listed', async () => {
    // customer.created events went to the closed port: at least one delivery attempt.
    let n = 0;
    for (let i = 0; i < 50 && n === 0; i++) {
      n = (await call('GET', `/v1/webhooks/${hook.webhook_id}/deliveries`)).items.filter((d) => d.attempts > 0).length;
      if (!n) await new Promise((r) => setTimeout(r, 100));
    }
    const page = await newPage(browser);
    await signIn(page, ADMIN);
    await page.goto(BASE + '/console/#admin');
    await page.waitForSelector('.webhook table');
    const t = await page.textContent('.webhook');
    expect(t.includes('http://127.0.0.1:9/hook') && t.includes('customer.created'), 'webhook and a delivery');
    await page.context().close();
  });

  await check('front_office: no admin screen, and none by its address', async () => {
    const page = await newPage(browser, 390); // phone width
    await signIn(page, keys.front_office);
    await page.waitForSelector('#no-screen');
    expect(await page.locator('#nav a').count() === 0, 'screens listed for front_office');
    await page.goto(BASE + '/console/#admin');
    await page.waitForSelector('#no-screen');
    expect(await page.locator('table.keys, #create-key').count() === 0, 'the admin screen showed');
    await page.context().close();
  });
  // --- round two (issue 19) ----------------------------------------------
  await check('call_center: a national phone number with a default country; open cases, satisfaction, trait sources, next best action', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.call_center);
    await page.selectOption('#find select[name=kind]', 'phone');
    await page.selectOption('#find select[name=country]', 'FR');
    const national = '0' + PHONE.slice(3).replace(/^(.)(..)(..)(..)(..)$/, '$1 $2 $3 $4 $5'); // 06 1x xx xx xx
    await page.fill('#find input[name=value]', national);
    await page.click('#find button');
    await page.waitForSelector('.customer-name');
    expect((await page.textContent('.customer-name')).startsWith('Ann'), `found by ${national}`);
    expect(await page.evaluate(() => localStorage.getItem('crm.console.phone-country')) === 'FR', 'the country is kept');
    const cases = await page.textContent('table.cases');
    expect(cases.includes(`kettle ${XSS}`) && cases.includes('high') && cases.includes('Zoë'), 'the open case');
    expect((await page.textContent('#customer')).includes('1 open of 1'), 'open of total');
    expect(await page.locator('#customer img').count() === 0, 'markup became elements');
    const sat = await page.textContent('#customer section:has(h2:text-is("Satisfaction"))');
    expect(sat.includes('3 (detractor)') && /CSAT\s*2,/.test(sat), `satisfaction: ${sat}`);
    const traits = await page.textContent('table.traits');
    expect(/first_name\s*Ann\s*web,/.test(traits), `the trait source: ${traits}`);
    // the next best action from the summary: a default rule, its reason, the stage
    await page.waitForSelector('#nba .nba-action');
    const nba = await page.textContent('#nba');
    expect(/(resolve_case|retention_offer|win_back_offer|service_recovery_call|warranty_extension_offer|onboarding_check_in|offer_|no_action)/.test(nba)
      && /stage\s*(prospect|onboarding|active|at_risk|lapsed|won_back) since/.test(nba), `next best action: ${nba}`);
    await page.context().close();
  });

  await check('call_center: a consent edited from the single view changes the contact decision', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.call_center);
    await findBy(page, 'phone', PHONE);
    const decision = async (expected) => {
      await page.waitForFunction((e) => (document.querySelector('#decision-result')?.textContent || '').startsWith(e), expected);
      return page.textContent('#decision-result');
    };
    await page.selectOption('#decision select[name=channel], form:has(+ #decision) select[name=channel]', 'sms');
    await page.click('form:has(+ #decision) button');
    expect((await decision('Not allowed')).length > 0, 'no consent for sms at first');
    await page.selectOption('#consent-form select[name=purpose]', 'marketing');
    await page.selectOption('#consent-form select[name=channel]', 'sms');
    await page.selectOption('#consent-form select[name=status]', 'granted');
    await page.click('#consent-form button');
    await decision('Allowed');
    expect((await page.textContent('table.consents')).includes('sms'), 'the consent is listed');
    await page.selectOption('#consent-form select[name=status]', 'withdrawn');
    await page.click('#consent-form button');
    const d = await decision('Not allowed');
    expect(/opted out|channel_opted_out/i.test(d), `after the withdrawal: ${d}`);
    const c = await call('GET', `/v1/customers/${annId}/consents`);
    expect(c.current.some((x) => x.channel === 'sms' && x.status === 'withdrawn' && x.source === 'console'), 'stored');
    await page.context().close();
  });

  await check('call_center: preferences edited from the single view', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.call_center);
    await findBy(page, 'phone', PHONE);
    await page.click('#customer summary:text("Edit preferences")');
    await page.fill('#preferences-form input[name=language]', 'fr-ca');
    await page.fill('#preferences-form input[name=preferred_channels]', 'email,sms');
    await page.fill('#preferences-form input[name=max_messages]', '5');
    await page.fill('#preferences-form input[name=period_days]', '7');
    await page.click('#preferences-form button');
    await page.waitForFunction(() => document.querySelector('#preferences').textContent.includes('fr-CA'));
    const shown = await page.textContent('#preferences');
    expect(shown.includes('5 in 7 days') && shown.includes('email, sms'), `shown: ${shown}`);
    const p = (await call('GET', `/v1/customers/${annId}/preferences`)).preferences;
    expect(p.language === 'fr-CA' && p.frequency_cap.max_messages === 5, 'stored');
    // A bad time zone is refused in place, as text.
    await page.fill('#preferences-form input[name=quiet_start]', '22:00');
    await page.fill('#preferences-form input[name=quiet_end]', '08:00');
    await page.fill('#preferences-form input[name=time_zone]', 'Mars/Olympus');
    await page.click('#preferences-form button');
    await page.waitForFunction(() => /422: .*\/preferences\/quiet_hours\/time_zone/.test(document.querySelector('#preferences-form + p').textContent));
    await shot(page, 'agent-edit', page.locator('#customer .grid'));
    await page.context().close();
  });

  await check('marketing: the rule editor previews as one types, saves a segment', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.marketing);
    await page.waitForSelector('#preview-count, #preview-error');
    await page.fill('#rule', JSON.stringify({ field: 'traits.first_name', op: 'eq', value: 'Ann' }));
    await page.waitForFunction(() => document.querySelector('#preview-count')?.textContent === '1 customers match');
    await page.fill('#rule', JSON.stringify({ field: 'traits.first_name', op: 'lte', value: 'Ann' }));
    await page.waitForFunction(() => /^422: .*\/rule\/op/.test(document.querySelector('#preview-error')?.textContent || ''));
    await page.fill('#rule', '{"field": "traits.first_name"');
    await page.waitForFunction(() => /Not valid JSON/.test(document.querySelector('#preview-error')?.textContent || ''));
    await page.fill('#rule', JSON.stringify({ field: 'traits.first_name', op: 'in', value: ['Ann', 'Bob'] }));
    await page.waitForFunction(() => document.querySelector('#preview-count')?.textContent === '2 customers match');
    await shot(page, 'marketing-rules', page.locator('section:has(#rule)'));
    await page.fill('#save-segment input[name=name]', `ann and bob ${run}`);
    await page.click('#save-segment button');
    const row = page.locator('table.segments tr', { hasText: `ann and bob ${run}` });
    await row.waitFor();
    expect(await row.locator('td').nth(1).textContent() === '2', 'the saved segment counts 2');
    await page.context().close();
  });

  await check('marketing: export with purpose, channel and fields', async () => {
    const page = await newPage(browser);
    await signIn(page, keys.marketing);
    const row = page.locator('table.segments tr', { hasText: segName });
    await row.locator('button').click();
    await page.waitForSelector('#members table');
    await page.selectOption('#members select[name=purpose]', 'marketing');
    await page.selectOption('#members select[name=channel]', 'email');
    await page.fill('#members input[name=fields]', 'email,first_name');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const lines = readFileSync(await download.path(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.length === 1 && lines[0].email === `ann-${run}@example.com` && lines[0].first_name === 'Ann',
      `exported ${JSON.stringify(lines)}`);
    await page.waitForFunction(() => /Exported 1 members .* reachable for marketing by email/.test(document.querySelector('#export-status').textContent));
    await page.context().close();
  });

  await check('admin: merge after a dry run, the merge history, unmerge', async () => {
    const page = await newPage(browser);
    await signIn(page, ADMIN);
    await page.goto(BASE + '/console/#admin');
    await page.fill('#merge-form input[name=survivor_id]', bob1);
    await page.fill('#merge-form input[name=absorbed_id]', bob2);
    await page.fill('#merge-form input[name=reason]', 'same person');
    await page.click('#merge-form button[type=submit]');
    await page.waitForSelector('#dry-run');
    const dry = await page.textContent('#merge-result');
    expect(dry.includes(`robert-${run}@example.com`) && dry.includes(`bob-${run}@example.com`), 'the merged identifiers');
    expect((await page.textContent('table.trait-conflicts')).includes('first_name'), 'the trait conflict');
    expect((await call('GET', `/v1/customers/${bob2}`)).customer_id === bob2, 'the dry run merged');
    await shot(page, 'admin-merge', page.locator('section:has(#merge-form)'));
    await page.fill('#merge-form input[name=absorbed_id]', annId); // "Merge" sends what was dry-run
    await page.click('#merge-confirm');
    await page.waitForSelector('#merged');
    expect((await call('GET', `/v1/customers/${bob2}`)).customer_id === bob1, 'not merged');
    expect((await call('GET', `/v1/customers/${annId}`)).customer_id === annId, 'merged what the fields held, not what was dry-run');
    await page.goto(BASE + '/console/#agent');
    await findBy(page, 'email', `robert-${run}@example.com`);
    await page.waitForSelector('#merges table');
    expect((await page.textContent('#merges')).includes(bob2), 'the merge history');
    await page.goto(BASE + '/console/#admin');
    await page.fill('#unmerge-form input[name=customer_id]', bob2);
    await page.click('#unmerge-form button');
    await page.waitForSelector('#unmerged');
    expect((await call('GET', `/v1/customers/${bob2}`)).customer_id === bob2, 'not unmerged');
    await page.fill('#unmerge-form input[name=customer_id]', bob2);
    await page.click('#unmerge-form button');
    await page.waitForSelector('#unmerge-result .error');
    expect((await page.textContent('#unmerge-result')).includes('409'), 'a second unmerge is a 409');
    await page.context().close();
  });

  await check('admin: identity conflicts, blocked values, limits', async () => {
    const page = await newPage(browser);
    await signIn(page, ADMIN);
    await page.goto(BASE + '/console/#admin');
    await page.waitForSelector('table.conflicts');
    const conflicts = await page.textContent('table.conflicts');
    expect(conflicts.includes('merge_would_exceed_limits') && conflicts.includes(`shop-${run}`), 'the conflict');
    const value = `blocked-${run}@example.com`;
    await page.selectOption('#block-form select[name=kind]', 'email');
    await page.fill('#block-form input[name=value]', value);
    await page.fill('#block-form input[name=reason]', 'shared mailbox');
    await page.click('#block-form button');
    const row = page.locator('#blocked > .scroll > table.blocked tr', { hasText: value });
    await row.waitFor();
    const r = await fetch(BASE + '/v1/customers:resolve', { method: 'POST',
      headers: { Authorization: 'Bearer ' + ADMIN, 'Content-Type': 'application/json' },
      body: JSON.stringify({ identifiers: [{ kind: 'email', value }], source: 'web' }) });
    expect(r.status === 422, `a blocked value resolves: ${r.status}`);
    await row.locator('button').click();
    await row.locator('button').click(); // confirm
    await row.waitFor({ state: 'detached' });
    expect(!(await call('GET', '/v1/admin/blocked-identifiers')).items.some((b) => b.value === value), 'still blocked');
    const phone = page.locator('table.limits tr', { hasText: 'phone' });
    await phone.locator('input[name=max_per_customer]').fill('4');
    await phone.locator('button').click();
    await page.waitForFunction(() => /^Saved: phone at most 4 per customer/.test(document.querySelector('#limits-status')?.textContent || ''));
    const lim = (await call('GET', '/v1/admin/identifier-limits')).items.find((l) => l.kind === 'phone');
    await call('PUT', '/v1/admin/identifier-limits', { kind: 'phone', max_per_customer: 3 });
    expect(lim.max_per_customer === 4, `the phone limit is ${lim.max_per_customer}`);
    await shot(page, 'admin-identity', page.locator('section:has(#conflicts)'));
    await shot(page, 'admin-limits', page.locator('section:has(#limits)'));
    await page.context().close();
  });

  await check('admin: a delivered webhook delivery replayed', async () => {
    // A receiver that accepts everything, on a loopback port of its own.
    let received = 0;
    const receiver = createServer((req, res) => { req.resume(); req.on('end', () => { received++; res.writeHead(204).end(); }); });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${receiver.address().port}/ok`;
      const w = await call('POST', '/v1/webhooks', { url, event_types: ['customer.created'] });
      await call('POST', '/v1/customers:resolve', { identifiers: [{ kind: 'email', value: `hooked-${run}@example.com` }], source: 'web' });
      let d;
      for (let i = 0; i < 100 && !d; i++) {
        d = (await call('GET', `/v1/webhooks/${w.webhook_id}/deliveries`)).items.find((x) => x.status === 'delivered');
        if (!d) await new Promise((r) => setTimeout(r, 100));
      }
      expect(d, 'no delivery was delivered');
      const page = await newPage(browser);
      await signIn(page, ADMIN);
      await page.goto(BASE + '/console/#admin');
      const button = page.locator(`button[data-delivery-id="${d.delivery_id}"]`);
      await button.click();
      await page.waitForSelector('.webhook [role=status]:text("replayed: pending")');
      for (let i = 0; i < 100 && received < 2; i++) await new Promise((r) => setTimeout(r, 100));
      expect(received === 2, `the receiver got ${received} requests, not 2`);
      await page.click('#webhooks-refresh');
      await page.locator(`button[data-delivery-id="${d.delivery_id}"]`).waitFor();
      await call('DELETE', `/v1/webhooks/${w.webhook_id}`);
      await page.context().close();
    } finally {
      receiver.close();
    }
  });

  // Every screen, with its data shown, at desktop and at phone width.
  for (const width of [1280, 375]) {
    await check(`axe: no serious or critical violation, no sideways scrolling, at ${width} px`, async () => {
      const page = await newPage(browser, width);
      await page.goto(BASE + '/console/');
      await page.waitForSelector('#key');
      await axe(page, 'sign-in');
      await fits(page, 'sign-in');
      await page.fill('#key', ADMIN);
      await page.click('#signin button');
      await findBy(page, 'phone', PHONE);
      await page.waitForSelector('#timeline li');
      if (width === 375) await shot(page, 'phone');
      await page.click('#customer summary:text("Edit preferences")');
      await axe(page, 'agent');
      await fits(page, 'agent');
      // A table box is a tab stop only while it overflows (phone width).
      const stops = await page.locator('#customer .scroll[tabindex="0"]').count();
      expect(width === 375 ? stops > 0 : stops === 0, `${stops} scrolling table boxes take the focus at ${width} px`);
      await page.goto(BASE + '/console/#marketing');
      await page.waitForSelector('#kpi-chart canvas');
      await page.waitForSelector('#preview-count');
      await page.locator('table.segments tr', { hasText: segName }).locator('button').click();
      await page.waitForSelector('#members table');
      await axe(page, 'marketing');
      await fits(page, 'marketing');
      await page.goto(BASE + '/console/#admin');
      await page.waitForSelector('table.keys');
      await page.waitForSelector('table.limits');
      await page.waitForSelector('.webhook table, .webhook p');
      await axe(page, 'admin');
      await fits(page, 'admin');
      await page.context().close();
    });
  }

  await check('keyboard only: sign in, change screen, find, page the timeline', async () => {
    const page = await newPage(browser);
    await page.goto(BASE + '/console/');
    await page.waitForSelector('#key:focus');
    await page.keyboard.type(ADMIN);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#find input[name=value]:focus');
    // Tab (backwards) to the Admin link, Enter: the admin screen.
    const tabTo = async (selector, key = 'Tab') => {
      for (let i = 0; i < 200; i++) {
        if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) {
          const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
          expect(outline !== 'none', `no focus ring on ${selector}`);
          return;
        }
        await page.keyboard.press(key);
      }
      throw new Error(`${selector} is not reachable with ${key}`);
    };
    await tabTo('#nav-admin', 'Shift+Tab');
    await page.keyboard.press('Enter');
    await page.waitForSelector('table.keys');
    await tabTo('#nav-agent', 'Shift+Tab');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#find input[name=value]:focus');
    await page.keyboard.type(`ann-${run}@example.com`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#timeline li');
    await tabTo('#timeline button.more');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#timeline li').length === 26);
    await page.context().close();
  });
} finally {
  await browser.close();
}
console.log(`console: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
