// app: sign-in, the screens a role may see, and sign-out. The key is asked
// for once per tab (sessionStorage); GET /v1/me tells its role and is asked
// again at every change of screen, so a revoked key is signed out at once.
// Screens: Customers (call_center, admin), Marketing (marketing, admin),
// Admin (admin); the other roles see what they may do through the API.
import { api, storedKey, storeKey, forgetKey, setSignedOutHandler } from './api.js';
import { h, clear } from './dom.js';
import { agentScreen } from './agent.js';
import { marketingScreen } from './marketing.js';
import { adminScreen } from './admin.js';

const SCREENS = [
  { id: 'agent', label: 'Customers', roles: ['call_center', 'admin'], show: agentScreen },
  { id: 'marketing', label: 'Marketing', roles: ['marketing', 'admin'], show: marketingScreen },
  { id: 'admin', label: 'Admin', roles: ['admin'], show: adminScreen },
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
let me = null;

function signInScreen(message) {
  me = null;
  clear(nav);
  clear(who);
  const key = h('input', { type: 'password', name: 'key', id: 'key', required: true, autocomplete: 'off',
    spellcheck: 'false', placeholder: 'crm_…' });
  const status = h('p', { class: 'error', role: 'alert' }, message || '');
  clear(main, h('section', { class: 'card signin' },
    h('h2', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'With an API key. It is kept in this tab only and sent to this server alone.'),
    h('form', { id: 'signin', onsubmit: async (e) => {
      e.preventDefault();
      storeKey(key.value.trim());
      key.value = '';
      try { await start(); } catch (err) { forgetKey(); status.textContent = err.message; }
    } }, h('label', { for: 'key' }, 'API key'), key, h('button', { type: 'submit' }, 'Sign in')),
    status));
  key.focus();
}

async function start() {
  me = await api.get('/v1/me');
  const screens = SCREENS.filter((s) => s.roles.includes(me.role));
  clear(who, h('span', { id: 'role' }, me.role), ' · ', me.name, ' ',
    h('button', { type: 'button', id: 'signout', onclick: () => { forgetKey(); signInScreen('Signed out.'); } }, 'Sign out'));
  clear(nav, screens.map((s) => h('a', { href: '#' + s.id, id: 'nav-' + s.id }, s.label)));
  route();
}

async function route() {
  if (!me) return;
  try { me = await api.get('/v1/me'); } catch { return; } // a 401 has signed out already
  const screens = SCREENS.filter((s) => s.roles.includes(me.role));
  const id = location.hash.slice(1);
  const screen = screens.find((s) => s.id === id) || screens[0];
  for (const a of nav.querySelectorAll('a')) a.setAttribute('aria-current', a.id === 'nav-' + (screen && screen.id) ? 'page' : 'false');
  if (!screen) {
    clear(main, h('section', { class: 'card', id: 'no-screen' }, h('h2', {}, 'Nothing to show for this role'),
      h('p', {}, `A ${me.role} key works through the API; the console has no screen for it.`)));
    return;
  }
  document.title = `${screen.label} · CRM console`;
  screen.show(main);
}

setSignedOutHandler((why) => { if (me) signInScreen(`Signed out: ${why}.`); });
window.addEventListener('hashchange', route);
if (storedKey()) start().catch(() => { forgetKey(); signInScreen(); });
else signInScreen();
