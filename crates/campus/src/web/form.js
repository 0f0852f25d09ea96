// A record: read-only details for the roles that cannot write it; for the
// others an edit form (PATCH), a create form (POST) and delete (DELETE). The
// API's field errors are shown next to their fields (`aria-describedby`), the
// rest (`detail`, `non_field_errors`, a 409's reason) at the top.

import { h, replace } from './dom.js';
import { api } from './api.js';
import { RESOURCES, canWrite } from './resources.js';
import { references } from './list.js';
import { session, statusLine, errorBox, failure, setFlash, go } from './view.js';

export async function formView(key, id) {
  const res = RESOURCES[key];
  const creating = id === 'new';
  const writable = canWrite(session.role, key);
  const listHash = session.lists[key] || `#/${key}`;
  const back = h('p', {}, h('a', { href: listHash }, `← ${res.title}`));
  const name = `${writable ? 'form' : 'detail'}:${key}`;
  if (creating && !writable) {
    return { name, title: res.title, nodes: [back, errorBox({ detail: 'You do not have permission to perform this action.' })] };
  }
  const [r, refs] = await Promise.all([
    creating ? null : api('GET', `${res.path}${encodeURIComponent(id)}/`),
    writable ? references(res.fields.map((f) => f.type)) : {},
  ]);
  if (r && r.status !== 200) {
    return { name, title: res.title, nodes: [back, statusLine(r), errorBox(failure(r))] };
  }
  const row = r ? r.body : {};
  const title = creating ? `New in ${res.title}` : res.label(row);
  const head = [back, h('h1', {}, title), r ? statusLine(r) : null];
  if (!writable) return { name, title, nodes: [...head, details(row)] };
  return { name, title, nodes: [...head, editor(key, res, row, refs, creating, listHash)] };
}

function details(row) {
  const show = (v) => (v && typeof v === 'object' ? `${v.code} · ${v.name}` : typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v ?? ''));
  return h('dl', { class: 'detail', id: 'details' },
    Object.entries(row).flatMap(([k, v]) => [h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, show(v))]));
}

function editor(key, res, row, refs, creating, listHash) {
  const top = h('div', { id: 'form-errors' });
  const inputs = {};
  const errors = {};
  const fields = res.fields.map((f) => {
    const input = control(f, row, refs, creating);
    inputs[f.name] = input;
    errors[f.name] = h('p', { class: 'field-error', id: `e-${f.name}`, hidden: true });
    const label = h('label', { for: input.id }, f.label, f.required || (creating && f.writeOnly) ? ' *' : '');
    return f.type === 'checkbox'
      ? h('div', { class: 'field check' }, input, label, errors[f.name])
      : h('div', { class: 'field' }, label, input, errors[f.name]);
  });
  const save = h('button', { type: 'submit', class: 'primary', id: 'save' }, creating ? 'Create' : 'Save');
  const form = h('form', { id: 'record', novalidate: true, 'aria-describedby': 'form-errors' }, top, fields,
    h('div', { class: 'actions' }, save, h('a', { class: 'button', href: listHash }, 'Cancel')));

  const showErrors = (body) => {
    const shown = [];
    let first = null;
    for (const f of res.fields) {
      const msgs = body[f.name] || (f.from && body[f.from]);
      const input = inputs[f.name];
      if (msgs) {
        shown.push(f.name);
        if (f.from) shown.push(f.from);
        errors[f.name].hidden = false;
        replace(errors[f.name], Array.isArray(msgs) ? msgs.join(' ') : String(msgs));
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', errors[f.name].id);
        first = first || input;
      } else {
        errors[f.name].hidden = true;
        replace(errors[f.name]);
        input.removeAttribute('aria-invalid');
        input.removeAttribute('aria-describedby');
      }
    }
    replace(top, errorBox(body, shown));
    (first || top).focus();
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    save.disabled = true;
    const body = {};
    for (const f of res.fields) {
      const v = value(f, inputs[f.name]);
      if (f.writeOnly && v === '' && !creating) continue;
      body[f.name] = v;
    }
    const url = creating ? res.path : `${res.path}${row.id}/`;
    const r = await api(creating ? 'POST' : 'PATCH', url, body);
    save.disabled = false;
    if (r.status === 200 || r.status === 201) {
      setFlash(`Saved ${res.label(r.body)}.`);
      go(listHash);
    } else if (r.status === 400 && r.body && typeof r.body === 'object') {
      showErrors(r.body);
    } else {
      showErrors(failure(r));
    }
  });
  top.setAttribute('tabindex', '-1');
  if (creating) return form;
  return h('div', {}, form, deleter(res, row, listHash, top));
}

function control(f, row, refs, creating) {
  const id = `i-${f.name}`;
  const current = f.from ? row[f.from] && row[f.from].id : row[f.name];
  if (f.type === 'department' || f.type === 'program') {
    // The record's own reference even when the select's list (one page of
    // 500) lacks it: a save must not clear what it did not change.
    const known = refs[f.type] || [];
    const own = f.from && row[f.from];
    const options = own && !known.some((d) => d.id === own.id) ? [...known, own] : known;
    return h('select', { id, name: f.name },
      h('option', { value: '' }, 'Choose…'),
      options.map((d) => h('option', { value: d.id, selected: d.id === current }, `${d.code} · ${d.name}`)));
  }
  if (f.type === 'choice') {
    return h('select', { id, name: f.name },
      f.choices.map(([v, l]) => h('option', { value: v, selected: v === current }, l)));
  }
  if (f.type === 'checkbox') {
    return h('input', { id, name: f.name, type: 'checkbox', checked: creating ? true : Boolean(current) });
  }
  const type = f.type === 'number' ? 'text' : f.type;
  return h('input', {
    id,
    name: f.name,
    type,
    value: f.writeOnly ? '' : current ?? '',
    inputmode: f.type === 'number' ? 'numeric' : null,
    autocomplete: f.writeOnly ? 'new-password' : 'off',
  });
}

/** What the API gets: numbers as numbers when they are, anything else as typed (the API says what is wrong). */
function value(f, input) {
  if (f.type === 'checkbox') return input.checked;
  const v = input.value.trim();
  if (f.type === 'department' || f.type === 'program') return v === '' ? null : Number(v);
  if (f.type === 'number') return v === '' ? null : /^-?\d+$/.test(v) ? Number(v) : v;
  return f.type === 'password' ? input.value : v;
}

function deleter(res, row, listHash, top) {
  const area = h('div', { class: 'actions' });
  const ask = h('button', { type: 'button', class: 'danger', id: 'delete' }, 'Delete…');
  const confirmDelete = h('button', { type: 'button', class: 'danger', id: 'confirm-delete' }, 'Delete');
  const cancel = h('button', { type: 'button', id: 'cancel-delete' }, 'Keep it');
  const question = h('p', { role: 'alert' }, `Delete ${res.label(row)}? This cannot be undone.`);
  ask.addEventListener('click', () => {
    replace(area, question, confirmDelete, cancel);
    cancel.focus();
  });
  cancel.addEventListener('click', () => {
    replace(area, ask);
    ask.focus();
  });
  confirmDelete.addEventListener('click', async () => {
    confirmDelete.disabled = true;
    const r = await api('DELETE', `${res.path}${row.id}/`);
    if (r.status === 204) {
      setFlash(`Deleted ${res.label(row)}.`);
      go(listHash);
      return;
    }
    // A 409: the row is still referenced; the API's reason says by what.
    replace(top, errorBox(failure(r)));
    confirmDelete.disabled = false;
    replace(area, ask);
    top.focus();
  });
  replace(area, ask);
  return h('section', { 'aria-label': 'Delete' }, area);
}
