// dom: building the page without ever parsing data as HTML. h() creates an
// element; its children are nodes or strings, and strings always become text
// nodes (textContent), so a trait such as <img src=x onerror=alert(1)> shows
// as those characters. Nothing in the console uses innerHTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Any value as short text: objects as compact JSON (still text, never markup).
export function text(v) {
  if (v === undefined || v === null || v === '') return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function num(v, digits = 2) {
  if (v === undefined || v === null) return '—';
  if (typeof v !== 'number') return String(v);
  return v.toLocaleString('en', { maximumFractionDigits: digits });
}

export function pct(v) {
  return v === undefined || v === null ? '—' : (v * 100).toFixed(1) + ' %';
}

export function when(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

// A two-column table of [label, value] rows.
export function dl(rows) {
  return h('table', { class: 'kv' },
    h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k),
      h('td', {}, v instanceof Node ? v : text(v))))));
}

// A box that scrolls sideways takes the focus (so that a keyboard can
// scroll it too) only while it does overflow: no useless tab stops.
const overflowing = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    if (!target.isConnected) overflowing.unobserve(target); // replaced: let it go
    else if (target.scrollWidth > target.clientWidth) target.tabIndex = 0;
    else target.removeAttribute('tabindex');
  }
});

// A table with a header row; rows are arrays of cells (nodes or values).
// It scrolls sideways in its own box when it does not fit (a phone).
export function table(headers, rows, attrs = {}) {
  const box = h('div', { class: 'scroll' });
  overflowing.observe(box);
  return append(box, [h('table', attrs,
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c instanceof Node ? c : text(c)))))))]);
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), children);
}

export function field(label, control) {
  return h('label', { class: 'field' }, h('span', {}, label), control);
}

export function select(name, options, value) {
  return h('select', { name },
    options.map((o) => h('option', { value: o, selected: o === value }, o)));
}

// An error shown in place: the problem document's title and detail, as text.
export function problemBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err && err.message ? err.message : String(err));
}
