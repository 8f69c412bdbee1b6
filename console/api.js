// api: the console's only way to the server. The API key lives in
// sessionStorage (this tab only, gone when it closes; never in a URL, never
// logged); every call is same-origin with Authorization: Bearer. A 401 means
// the key is no longer valid (revoked, or never was): the key is dropped and
// the app is told to sign out.

const KEY = 'crm.console.key';
let onSignedOut = () => {};

export function setSignedOutHandler(fn) { onSignedOut = fn; }
export function storedKey() { return sessionStorage.getItem(KEY); }
export function storeKey(key) { sessionStorage.setItem(KEY, key); }
export function forgetKey() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    // A 422 names each bad field by its JSON pointer: say which.
    const fields = problem && Array.isArray(problem.errors)
      ? problem.errors.slice(0, 5).map((e) => ` ${e.pointer}: ${e.detail}`).join(';') : '';
    super((detail ? `${status}: ${detail}` : `HTTP ${status}`) + (fields ? ' —' + fields : ''));
    this.status = status;
    this.problem = problem;
  }
}

// Query string from an object, skipping empty values.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}

async function send(method, path, body, raw) {
  const key = storedKey();
  if (!key) { onSignedOut('no key'); throw new ApiError(401, { detail: 'signed out' }); }
  const headers = { Authorization: 'Bearer ' + key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  if (r.status === 401) {
    forgetKey();
    onSignedOut('the key was refused');
    throw new ApiError(401, await r.json().catch(() => null));
  }
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  return raw ? r : r.json();
}

export const api = {
  get: (path) => send('GET', path),
  post: (path, body) => send('POST', path, body ?? {}),
  patch: (path, body) => send('PATCH', path, body),
  put: (path, body) => send('PUT', path, body),
  del: (path) => send('DELETE', path),
  raw: (path) => send('GET', path, undefined, true),
};
