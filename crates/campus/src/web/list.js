// A resource's list: DRF search, the filters of SPEC §4, ordering by column
// header (`ordering=field` / `-field`) and pagination, all kept in the hash so
// a reload or the back button shows the same page.

import { h, hashHref } from './dom.js';
import { api } from './api.js';
import { RESOURCES, canWrite } from './resources.js';
import { session, statusLine, errorBox, failure, go } from './view.js';

const PAGE_SIZES = ['10', '25', '50', '100'];

/** The departments and programs for the filter and form selects. */
export async function references(types) {
  const out = {};
  const want = [...new Set(types)].filter((t) => t === 'department' || t === 'program');
  await Promise.all(want.map(async (t) => {
    const r = await api('GET', `/api/${t === 'department' ? 'departments' : 'programs'}/?page_size=500&ordering=code`);
    out[t] = r.status === 200 ? r.body.results : [];
  }));
  return out;
}

export async function listView(key, query) {
  const res = RESOURCES[key];
  const qs = query.toString();
  const [r, refs] = await Promise.all([
    api('GET', `${res.path}${qs ? `?${qs}` : ''}`),
    references(res.filters.map((f) => f.type)),
  ]);
  session.lists[key] = location.hash || `#/${key}`;
  const writable = canWrite(session.role, key);
  const nodes = [
    h('div', { class: 'toolbar' },
      h('h1', {}, res.title),
      writable ? h('a', { class: 'button primary', href: `#/${key}/new`, id: 'new' }, `New ${res.title.toLowerCase().replace(/s$/, '')}`) : null),
    statusLine(r),
    searchForm(key, res, query, refs),
  ];
  if (r.status !== 200) {
    nodes.push(errorBox(failure(r)));
    if (r.status === 404) nodes.push(h('p', {}, h('a', { href: `#/${key}` }, 'Back to the first page')));
  } else {
    nodes.push(table(key, res, query, r.body.results), pager(key, query, r.body));
  }
  return { name: `list:${key}`, title: res.title, nodes };
}

function searchForm(key, res, query, refs) {
  const controls = [
    field('search', 'Search', h('input', { id: 'f-search', name: 'search', type: 'search', value: query.get('search') || '' })),
    ...res.filters.map((f) => field(f.name, f.label, filterInput(f, query.get(f.name) || '', refs))),
  ];
  const form = h('form', { role: 'search', class: 'toolbar', id: 'list-filters' },
    ...controls,
    h('button', { type: 'submit' }, 'Apply'),
    h('a', { href: `#/${key}` }, 'Clear'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = {};
    for (const [k, v] of new FormData(form)) next[k] = v.trim();
    // A new search starts at page 1 and keeps the order and page size.
    next.ordering = query.get('ordering');
    next.page_size = query.get('page_size');
    session.focus = 'f-search';
    go(hashHref(key, next));
  });
  return form;
}

function field(name, label, input) {
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
}

function filterInput(f, value, refs) {
  const id = `f-${f.name}`;
  if (f.type === 'department' || f.type === 'program') {
    return h('select', { id, name: f.name },
      h('option', { value: '' }, 'Any'),
      (refs[f.type] || []).map((d) => h('option', { value: d.code, selected: d.code === value }, `${d.code} · ${d.name}`)));
  }
  if (f.type === 'choice') {
    return h('select', { id, name: f.name },
      f.choices.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
  }
  return h('input', { id, name: f.name, value, inputmode: f.inputmode || null });
}

function table(key, res, query, rows) {
  const ordering = query.get('ordering') || '';
  const head = res.columns.map((c) => {
    if (!c.sort) return h('th', { scope: 'col' }, c.label);
    const dir = ordering === c.sort ? 'ascending' : ordering === `-${c.sort}` ? 'descending' : null;
    const next = dir === 'ascending' ? `-${c.sort}` : c.sort;
    const params = Object.fromEntries(query);
    params.ordering = next;
    delete params.page;
    return h('th', { scope: 'col', 'aria-sort': dir },
      h('button', {
        type: 'button',
        id: `sort-${c.sort}`,
        'data-sort': c.sort,
        onclick: () => {
          session.focus = `sort-${c.sort}`;
          go(hashHref(key, params));
        },
      },
        c.label, dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''));
  });
  const body = rows.length
    ? rows.map((row) => h('tr', { 'data-id': row.id },
      res.columns.map((c, i) => {
        const text = String(c.show ? c.show(row) : (row[c.key] ?? ''));
        return h('td', {}, i === 0 ? h('a', { href: `#/${key}/${row.id}` }, text || `#${row.id}`) : text);
      })))
    : [h('tr', {}, h('td', { colspan: res.columns.length }, 'No results.'))];
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `${res.title} list` },
    h('table', { id: 'results' }, h('thead', {}, h('tr', {}, head)), h('tbody', {}, body)));
}

function pager(key, query, body) {
  // As the API reads it (DRF's strict positive int, cut off at 500); anything
  // else is the default.
  const asked = Number(query.get('page_size'));
  const size = Number.isInteger(asked) && asked >= 1 ? Math.min(asked, 500) : 50;
  const page = Number(query.get('page')) || 1;
  const pages = Math.max(1, Math.ceil(body.count / size));
  // `next` and `previous` are absolute URLs of the API: only their query is used.
  const link = (url, rel, label) => (url
    ? h('a', { href: `#/${key}${new URL(url).search}`, rel, id: `page-${rel}`, onclick: () => { session.focus = `page-${rel}`; } }, label)
    : h('span', { 'aria-disabled': 'true' }, label));
  const sizes = h('select', { id: 'page-size' },
    PAGE_SIZES.map((s) => h('option', { value: s, selected: Number(s) === size }, s)));
  sizes.addEventListener('change', () => {
    const params = Object.fromEntries(query);
    params.page_size = sizes.value;
    delete params.page;
    session.focus = 'page-size';
    go(hashHref(key, params));
  });
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    link(body.previous, 'prev', '← Previous'),
    h('span', { id: 'page-info' }, `Page ${page} of ${pages} · ${body.count} results`),
    link(body.next, 'next', 'Next →'),
    h('span', {}, h('label', { for: 'page-size', class: 'visually-hidden' }, 'Rows per page'), sizes, ' per page'));
}
