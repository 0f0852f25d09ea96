// The dashboard: the organization's totals, and its per-department faculty and
// student counts as an SVG bar chart built element by element (no library),
// with the same figures in a table for screen readers and small screens.

import { h, s } from './dom.js';
import { api } from './api.js';
import { statusLine, errorBox, failure } from './view.js';

const TOTALS = [
  ['departments', 'Departments'],
  ['programs', 'Programs'],
  ['faculty', 'Faculty'],
  ['active_faculty', 'Active faculty'],
  ['students', 'Students'],
  ['active_students', 'Active students'],
  ['users', 'Users'],
];

export async function dashboardView() {
  const r = await api('GET', '/api/stats/dashboard/');
  const nodes = [h('h1', {}, 'Dashboard'), statusLine(r)];
  if (r.status !== 200) {
    nodes.push(errorBox(failure(r)));
  } else {
    const { totals, departments } = r.body;
    nodes.push(
      h('dl', { class: 'cards', id: 'totals' },
        TOTALS.map(([k, label]) => h('div', { class: 'card' }, h('dt', {}, label), h('dd', {}, String(totals[k] ?? 0))))),
      h('h2', { id: 'chart-title' }, 'Faculty and students per department'),
      h('p', { class: 'legend' },
        h('span', {}, h('span', { class: 'swatch faculty' }), 'Faculty'),
        h('span', {}, h('span', { class: 'swatch students' }), 'Students')),
      chart(departments),
      counts(departments),
    );
  }
  return { name: 'dashboard', title: 'Dashboard', nodes };
}

/** Horizontal bars, two per department, scaled to the largest count. */
function chart(departments) {
  const row = 34;
  const labelWidth = 90;
  const width = 600;
  const height = Math.max(1, departments.length) * row + 10;
  const max = Math.max(1, ...departments.flatMap((d) => [d.faculty, d.students]));
  const scale = (n) => (n / max) * (width - labelWidth - 50);
  const bars = departments.flatMap((d, i) => {
    const y = 5 + i * row;
    return [
      s('text', { x: 0, y: y + 18, 'font-size': 12, fill: '#1d2330' }, d.code),
      ...[['faculty', 0], ['students', 13]].map(([kind, dy]) => s('g', {},
        s('rect', { class: `bar ${kind}`, x: labelWidth, y: y + dy + 2, height: 11, width: Math.max(1, scale(d[kind])) },
          s('title', {}, `${d.name}: ${d[kind]} ${kind}`)),
        s('text', { x: labelWidth + scale(d[kind]) + 4, y: y + dy + 12, 'font-size': 10, fill: '#5b6478' }, String(d[kind])))),
    ];
  });
  return s('svg', {
    class: 'chart', id: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-labelledby': 'chart-title', 'data-bars': departments.length * 2,
  }, bars);
}

function counts(departments) {
  return h('details', {},
    h('summary', {}, 'The figures as a table'),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Department'), h('th', { scope: 'col' }, 'Faculty'), h('th', { scope: 'col' }, 'Students'))),
      h('tbody', {}, departments.map((d) => h('tr', {},
        h('td', {}, `${d.code} · ${d.name}`), h('td', {}, String(d.faculty)), h('td', {}, String(d.students))))))));
}
