// What every view shares: the session (who is logged in, with which role), the
// message carried to the next view, the cache line, and the error box.

import { h } from './dom.js';

/**
 * `{me, role}` once logged in (`me` is `GET /api/auth/me/`'s body); `lists`
 * holds each resource's last list hash, where a form goes back to; `focus`
 * the id of the control to focus after the next render (the one the user
 * acted with, so the keyboard keeps its place).
 */
export const session = { me: null, role: null, lists: {}, focus: null };

let pending = null;

/** A message for the next view to show (after a save or a delete). */
export function setFlash(text) {
  pending = text;
}

export function takeFlash() {
  const text = pending;
  pending = null;
  return text ? h('p', { class: 'flash', role: 'status' }, text) : null;
}

/**
 * Where a view's data came from and how long it took: the response's X-Cache
 * (HIT, MISS, STALE, BYPASS), or "304 revalidated" when the ETag map answered.
 */
export function statusLine(r) {
  const source = r.cache === 'revalidated'
    ? `304 revalidated${r.xcache ? ` (X-Cache ${r.xcache})` : ''}`
    : r.cache ? `X-Cache ${r.cache}` : `HTTP ${r.status}`;
  return h(
    'p',
    { class: 'status', id: 'cache-status', 'data-cache': r.cache || 'none', 'data-http': r.status },
    'GET ', h('code', {}, r.url), ' · ', h('b', {}, source), ` · ${Math.round(r.ms)} ms`,
  );
}

/**
 * The API's errors that belong to no field: `detail`, `non_field_errors`, and
 * any key not in `shown` (fields the form shows next to their input).
 */
export function errorBox(body, shown = []) {
  const lines = [];
  if (body && typeof body === 'object') {
    for (const [k, v] of Object.entries(body)) {
      if (shown.includes(k)) continue;
      const text = Array.isArray(v) ? v.join(' ') : String(v);
      lines.push(k === 'detail' || k === 'non_field_errors' ? text : `${k}: ${text}`);
    }
  }
  if (!lines.length) return null;
  return h('div', { class: 'alert', role: 'alert', id: 'errors' }, ...lines.map((l) => h('p', {}, l)));
}

/** The message for a failed request with no body worth showing. */
export function failure(r) {
  if (r.status === 403) return { detail: 'You do not have permission to perform this action.' };
  return r.body && typeof r.body === 'object' ? r.body : { detail: `The request failed (${r.status}).` };
}

/** Shows `hash`, rendering it again when it is already the current one. */
export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
