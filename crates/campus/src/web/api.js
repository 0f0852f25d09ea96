// Tokens, requests and the ETag map: everything this client knows of HTTP.
//
// The access token is a module variable only: no storage, so nothing but this
// module's code can read it. The refresh token is in sessionStorage, which is
// scoped to this origin and this tab: a reload stays logged in, closing the tab
// forgets it, and no other origin's script can read it. Refresh tokens rotate
// (the one exchanged is blacklisted), so refreshes are single-flighted and each
// new refresh token replaces the old one.

const REFRESH_KEY = 'campus.refresh';
/** Refresh this long before the access token's `exp`. */
const EARLY_MS = 30_000;
/** How many URL → {etag, body} entries to keep; the least recently used go first. */
const ETAG_ENTRIES = 200;

let access = null;
/** Whether this page held a working session; a lost session is announced once. */
let alive = false;
let refreshing = null;
let timer = null;
const etags = new Map();
const listeners = new Set();

/** `fn()` is called when the session ends without a logout (a refused refresh). */
export function onSessionLost(fn) {
  listeners.add(fn);
}

function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

function keep(tokens) {
  access = tokens.access;
  alive = true;
  if (tokens.refresh) sessionStorage.setItem(REFRESH_KEY, tokens.refresh);
  clearTimeout(timer);
  const exp = claims(access).exp;
  if (exp) {
    const wait = Math.max(exp * 1000 - Date.now() - EARLY_MS, 1000);
    timer = setTimeout(() => refresh().catch(() => lost()), wait);
  }
}

function lost() {
  const was = alive;
  forget();
  if (was) for (const fn of listeners) fn();
}

function forget() {
  access = null;
  alive = false;
  clearTimeout(timer);
  sessionStorage.removeItem(REFRESH_KEY);
  etags.clear();
}

/** Whether a session can be resumed (a refresh token from earlier in this tab). */
export function hasSession() {
  return access !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
}

/** `{ok: true}` or `{ok: false, errors}` with the API's DRF error body. */
export async function login(username, password) {
  forget();
  const r = await send('POST', '/api/auth/token/', { username, password }, false);
  if (r.status !== 200) return { ok: false, errors: r.body || {}, status: r.status };
  keep(r.body);
  return { ok: true };
}

export function logout() {
  forget();
}

/** Exchanges the refresh token for a new pair; one exchange at a time. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const token = sessionStorage.getItem(REFRESH_KEY);
      if (!token) throw new Error('no session');
      const r = await send('POST', '/api/auth/token/refresh/', { refresh: token }, false);
      // The caller ends the session (`lost`), once for all who waited.
      if (r.status !== 200) throw new Error('refresh refused');
      keep(r.body);
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * One API call. Resolves to `{status, body, cache, ms, url}` whatever the
 * status (`cache` is the X-Cache header, or 'revalidated' after a 304 answered
 * from the ETag map). A 401 costs one refresh and one retry; a second 401
 * ends the session.
 */
export async function api(method, url, body) {
  if (access === null && hasSession()) {
    try {
      await refresh();
    } catch {
      lost();
      return { status: 401, body: { detail: 'Your session has ended.' }, cache: '', ms: 0, url };
    }
  }
  let r = await send(method, url, body, true);
  if (r.status === 401 && hasSession()) {
    try {
      await refresh();
      r = await send(method, url, body, true);
    } catch {
      /* the 401 stands */
    }
    if (r.status === 401) lost();
  }
  if (method !== 'GET' && r.status < 400) etags.delete(url);
  return r;
}

async function send(method, url, body, authorized) {
  const headers = { Accept: 'application/json' };
  if (authorized && access) headers.Authorization = `Bearer ${access}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const known = method === 'GET' ? etags.get(url) : undefined;
  if (known) headers['If-None-Match'] = known.etag;
  const start = performance.now();
  let res;
  try {
    // no-store: the browser's HTTP cache must not answer (or hide the 304)
    // in place of this map.
    res = await fetch(url, {
      method,
      headers,
      cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    const ms = performance.now() - start;
    return { status: 0, body: { detail: 'The server cannot be reached.' }, cache: '', ms, url };
  }
  const cacheHeader = res.headers.get('X-Cache') || '';
  if (res.status === 304 && known) {
    etags.delete(url);
    etags.set(url, known);
    const ms = performance.now() - start;
    return { status: 200, body: known.body, cache: 'revalidated', xcache: cacheHeader, ms, url };
  }
  let parsed = null;
  const text = await res.text();
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { detail: `Unexpected answer (${res.status}).` };
    }
  }
  const ms = performance.now() - start;
  const etag = res.headers.get('ETag');
  if (method === 'GET' && res.status === 200 && etag) {
    etags.delete(url);
    etags.set(url, { etag, body: parsed });
    while (etags.size > ETAG_ENTRIES) etags.delete(etags.keys().next().value);
  }
  return { status: res.status, body: parsed, cache: cacheHeader, ms, url };
}
