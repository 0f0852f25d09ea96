// The shell: the hash router (`#/students?search=ann&page=2`, so back, forward
// and reload work and the server serves only `/`), the header, the login.
// Each view is an async function returning `{name, title, nodes}`; a route
// whose data arrives after a newer navigation is dropped.

import { h, replace } from './dom.js';
import { api, login, logout, hasSession, onSessionLost } from './api.js';
import { session, takeFlash, setFlash, errorBox, failure } from './view.js';
import { RESOURCES } from './resources.js';
import { listView } from './list.js';
import { formView } from './form.js';
import { dashboardView } from './chart.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let generation = 0;

function parseHash() {
  const raw = location.hash.slice(1) || '/';
  const at = raw.indexOf('?');
  const path = at < 0 ? raw : raw.slice(0, at);
  const query = new URLSearchParams(at < 0 ? '' : raw.slice(at + 1));
  return { parts: path.split('/').filter(Boolean), query };
}

/** `GET /api/auth/me/`'s response; a 200 starts the session's views. */
async function loadMe() {
  const r = await api('GET', '/api/auth/me/');
  if (r.status === 200) {
    session.me = r.body;
    session.role = r.body.role;
  }
  return r;
}

/** A record's address: its numeric id, or `new`; anything else (`..`) names no record. */
const RECORD = /^(new|[0-9]+)$/;

async function route() {
  const gen = ++generation;
  main.dataset.state = 'loading';
  main.setAttribute('aria-busy', 'true');
  if (!session.me) {
    const r = hasSession() ? await loadMe() : null;
    if (!r || r.status === 401 || r.status === 403) {
      if (gen === generation) show(gen, loginView());
      return;
    }
    // The server could not answer (network, 5xx): the session is kept.
    if (r.status !== 200) {
      if (gen === generation) show(gen, unavailableView(r));
      return;
    }
  }
  const { parts, query } = parseHash();
  const section = parts[0] || 'dashboard';
  // Own keys only: `#/constructor` is no resource.
  const resource = Object.hasOwn(RESOURCES, section);
  shell(section);
  let view;
  try {
    if (section === 'dashboard') view = await dashboardView();
    else if (resource && parts.length === 1) view = await listView(section, query);
    else if (resource && parts.length === 2 && RECORD.test(parts[1])) view = await formView(section, parts[1]);
    else view = { name: 'missing', title: 'Not found', nodes: [h('h1', {}, 'Not found')] };
  } catch (e) {
    view = { name: 'error', title: 'Error', nodes: [errorBox({ detail: `Something went wrong: ${e.message}` })] };
  }
  // A session that ended while the view loaded (a refused refresh) has
  // already routed to the login (`onSessionLost`).
  if (session.me) show(gen, view);
}

function show(gen, view) {
  if (gen !== generation) return;
  replace(main, takeFlash(), view.nodes);
  main.dataset.view = view.name;
  main.dataset.state = 'ready';
  // Counts renders, so a script (or a test) can wait for the next one.
  main.dataset.renders = String(Number(main.dataset.renders || 0) + 1);
  main.removeAttribute('aria-busy');
  document.title = `${view.title} · Campus`;
  const wanted = (session.focus && document.getElementById(session.focus)) || main.querySelector('[data-autofocus]');
  session.focus = null;
  if (wanted) wanted.focus();
  else if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

function shell(section) {
  top.hidden = false;
  const links = [['dashboard', 'Dashboard'], ...Object.entries(RESOURCES).map(([k, r]) => [k, r.title])];
  replace(
    document.getElementById('nav'),
    links.map(([k, label]) =>
      h('a', { href: `#/${k}`, 'aria-current': k === section ? 'page' : null }, label)),
  );
  replace(document.getElementById('who'), `${session.me.username} (${session.role})`);
}

function unavailableView(r) {
  top.hidden = true;
  const again = h('button', { type: 'button', class: 'primary', 'data-autofocus': true, onclick: () => route() }, 'Try again');
  return { name: 'unavailable', title: 'Unavailable', nodes: [h('h1', {}, 'Campus'), errorBox(failure(r)), again] };
}

function loginView() {
  top.hidden = true;
  const errors = h('div', { id: 'login-errors' });
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, 'data-autofocus': true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h(
    'form',
    { class: 'login', id: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in to Campus'),
    errors,
    h('div', { class: 'field' }, h('label', { for: 'username' }, 'Username'), user),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), pass),
    button,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    const r = await login(user.value, pass.value);
    button.disabled = false;
    if (!r.ok) {
      replace(errors, errorBox(r.errors));
      pass.value = '';
      pass.focus();
      return;
    }
    const me = await loadMe();
    if (me.status === 200) route();
    else replace(errors, errorBox(failure(me)));
  });
  return { name: 'login', title: 'Log in', nodes: [form] };
}

document.getElementById('logout').addEventListener('click', () => {
  logout();
  session.me = null;
  session.role = null;
  // The next user's forms go back to their own lists, not this one's searches.
  session.lists = {};
  setFlash('You are logged out.');
  // The next login starts at the dashboard, not where this session ended.
  history.replaceState(null, '', '#/');
  route();
});

onSessionLost(() => {
  session.me = null;
  session.role = null;
  session.lists = {};
  setFlash('Your session has ended: log in again.');
  route();
});

// The skip link moves the focus; as a hash (`#main`) it would be a route.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', route);
route();
