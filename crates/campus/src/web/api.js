// Tokens, requests and the ETag map: everything this client knows of HTTP.
//
// The access token is a module variable only: no storage, so nothing but this
// module's code can read it. The refresh token is in sessionStorage, which is
// scoped to this origin and this tab: a reload stays logged in, closing the tab
// forgets it, and no other origin's script can read it. Refresh tokens rotate
// (the one exchanged is blacklisted), so refreshes are single-flighted and each
// new refresh token replaces the old one.

const REFRESH_KEY = 'campus.refresh';
/** Which tab wrote the refresh token: its `window.name` mark. */
const TAB_KEY = 'campus.tab';
/** Refresh this long before the access token's `exp`. */
const EARLY_MS = 30_000;
/** How many URL → {etag, body} entries to keep; the least recently used go first. */
const ETAG_ENTRIES = 200;
/** After a refresh the server could not answer (network, 5xx), try again this much later. */
const RETRY_MS = 10_000;
/** setTimeout's longest wait (a longer one fires at once). */
const MAX_WAIT_MS = 2_147_000_000;

let access = null;
/** Whether this page held a working session; a lost session is announced once. */
let alive = false;
/**
 * Counts sessions: `forget` moves it on, so an answer that arrives for an
 * earlier session (a refresh in flight at logout) is dropped, not kept.
 */
let epoch = 0;
let refreshing = null;
let timer = null;
const etags = new Map();
const listeners = new Set();

/**
 * This tab's mark, kept in `window.name`: a reload keeps it, a new tab starts
 * without it, even one that got a copy of this tab's sessionStorage (a link
 * opened from here).
 */
function tabMark() {
  if (!window.name.startsWith('campus-tab-')) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    window.name = `campus-tab-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
  }
  return window.name;
}

// A refresh token another tab wrote is that tab's: exchanging it here would
// rotate it and end the other tab's session at its next refresh. This tab
// logs in on its own.
if (sessionStorage.getItem(REFRESH_KEY) !== null && sessionStorage.getItem(TAB_KEY) !== window.name) {
  sessionStorage.removeItem(REFRESH_KEY);
  sessionStorage.removeItem(TAB_KEY);
}

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
  if (tokens.refresh) {
    sessionStorage.setItem(REFRESH_KEY, tokens.refresh);
    sessionStorage.setItem(TAB_KEY, tabMark());
  }
  clearTimeout(timer);
  const exp = claims(access).exp;
  if (exp) {
    const wait = Math.min(Math.max(exp * 1000 - Date.now() - EARLY_MS, 1000), MAX_WAIT_MS);
    timer = setTimeout(scheduled, wait);
  }
}

/** The refresh before expiry; one the server could not answer is tried again. */
function scheduled() {
  refresh().then((o) => {
    if (o.outcome === 'unavailable') timer = setTimeout(scheduled, RETRY_MS);
  });
}

function lost() {
  const was = alive;
  forget();
  if (was) for (const fn of listeners) fn();
}

function forget() {
  access = null;
  alive = false;
  epoch += 1;
  refreshing = null;
  clearTimeout(timer);
  sessionStorage.removeItem(REFRESH_KEY);
  sessionStorage.removeItem(TAB_KEY);
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
  if (r.status !== 200) {
    const said = r.body && typeof r.body === 'object' && Object.keys(r.body).length;
    return { ok: false, errors: said ? r.body : { detail: `The request failed (${r.status}).` }, status: r.status };
  }
  keep(r.body);
  return { ok: true };
}

export function logout() {
  forget();
}

/**
 * Exchanges the refresh token for a new pair; one exchange at a time. Resolves
 * to `{outcome}`: 'ok'; 'refused' (the session has ended: `lost` has run, once
 * for all who waited); 'unavailable' with `r`, the answer (network error, 5xx:
 * the session is kept and the caller shows `r`); 'stale' (logged out, or in
 * as someone else, while it was in flight: its tokens are dropped).
 */
export function refresh() {
  if (!refreshing) {
    const at = epoch;
    const flight = (async () => {
      const token = sessionStorage.getItem(REFRESH_KEY);
      if (!token) {
        lost();
        return { outcome: 'refused' };
      }
      const r = await send('POST', '/api/auth/token/refresh/', { refresh: token }, false);
      if (at !== epoch) return { outcome: 'stale' };
      if (r.status === 200) {
        keep(r.body);
        return { outcome: 'ok' };
      }
      if (r.status === 0 || r.status === 429 || r.status >= 500) return { outcome: 'unavailable', r };
      lost();
      return { outcome: 'refused' };
    })().finally(() => {
      if (refreshing === flight) refreshing = null;
    });
    refreshing = flight;
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
  const at = epoch;
  if (access === null && hasSession()) {
    const o = await refresh();
    if (o.outcome === 'unavailable') return { ...o.r, cache: '', url };
    if (o.outcome !== 'ok') {
      return { status: 401, body: { detail: 'Your session has ended.' }, cache: '', ms: 0, url };
    }
  }
  let r = await send(method, url, body, true);
  if (r.status === 401 && hasSession() && at === epoch) {
    const o = await refresh();
    if (o.outcome === 'ok') r = await send(method, url, body, true);
    else if (o.outcome === 'unavailable') return { ...o.r, cache: '', url };
    // A second 401 ends the session (a refused refresh has ended it already).
    if (r.status === 401 && o.outcome === 'ok' && at === epoch) lost();
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
  let text;
  try {
    text = await res.text();
  } catch {
    // The connection dropped in the middle of the body.
    const ms = performance.now() - start;
    return { status: 0, body: { detail: 'The server cannot be reached.' }, cache: '', ms, url };
  }
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
