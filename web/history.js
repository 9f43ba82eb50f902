// History: stored sessions (and live ones) newest first, filtered by kind, route,
// state, path and time, a page at a time (`GET /api/sessions`, `next_before`).
// Opening one shows it exactly as a live one (session.js).

import { call } from './api.js';
import { badge, bytes, h } from './dom.js';

const PAGE = 50;
const KINDS = ['proxy', 'mock', 'relay', 'outbound'];
const STATES = ['REQUESTED', 'CONNECTING', 'CONNECTED', 'DISCONNECTED', 'FAILED'];

export function historyView(main) {
  const tbody = h('tbody');
  const status = h('p', { class: 'count', role: 'status', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', disabled: true, onclick: () => {
        cursors.pop();
        show(cursors.at(-1) ?? null);
      },
    }, '← Newer');
  const next = h('button', { type: 'button', disabled: true, onclick: () => show(nextBefore, true) }, 'Older →');
  let nextBefore = null;
  const cursors = []; // `before` of each page shown, to go back
  let current = {};

  const choice = (name, label, values) =>
    h('label', {}, `${label} `, h('select', { name }, h('option', { value: '' }, 'any'), values.map((v) => h('option', { value: v }, v))));
  const field = (name, label, attrs) => h('label', {}, `${label} `, h('input', { name, ...attrs }));
  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Filter history',
      onsubmit: (e) => {
        e.preventDefault();
        const f = new FormData(e.target);
        current = {};
        for (const k of ['kind', 'route', 'state', 'path']) if (f.get(k)) current[k] = String(f.get(k));
        // datetime-local is the browser's local time; the API wants RFC 3339.
        for (const k of ['since', 'until']) if (f.get(k)) current[k] = new Date(String(f.get(k))).toISOString();
        cursors.length = 0;
        show(null, true);
      },
    },
    choice('kind', 'Kind', KINDS),
    field('route', 'Route', { type: 'search', placeholder: 'any route' }),
    choice('state', 'State', STATES),
    field('path', 'Path starts with', { type: 'search', placeholder: '/chat' }),
    field('since', 'Opened after', { type: 'datetime-local', step: 1 }),
    field('until', 'Opened before', { type: 'datetime-local', step: 1 }),
    h('button', { type: 'submit' }, 'Show'),
  );

  const table = h(
    'table',
    { class: 'sessions' },
    h('caption', { class: 'visually-hidden' }, 'Stored sessions, newest first'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Opened', 'Kind', 'Route', 'Path', 'State', 'Close'].map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col', class: 'n' }, 'Msgs in / out'),
        h('th', { scope: 'col', class: 'n' }, 'Bytes in / out'),
      ),
    ),
    tbody,
  );

  main.replaceChildren(
    h('h1', {}, 'History'),
    form,
    status,
    h(
      'div',
      { class: 'table-wrap' },
      table,
    ),
    h('div', { class: 'pager' }, prev, next),
  );

  // Only the latest request's answer is shown: the first page, asked for as the view
  // opens, can come back after a filtered one asked for since, and must not replace it.
  // The table is aria-busy until that answer is in.
  let asked = 0;
  async function show(before, forward = false) {
    const q = new URLSearchParams({ ...current, limit: String(PAGE) });
    if (before) q.set('before', before);
    const mine = ++asked;
    table.setAttribute('aria-busy', 'true');
    let page;
    try {
      page = await call(`/api/sessions?${q}`);
    } catch (e) {
      if (mine === asked) {
        status.textContent = `History could not be read: ${e.message}`;
        table.setAttribute('aria-busy', 'false');
      }
      return;
    }
    if (mine !== asked) return;
    table.setAttribute('aria-busy', 'false');
    if (forward) cursors.push(before);
    nextBefore = page.next_before ?? null;
    next.disabled = !nextBefore;
    prev.disabled = cursors.length <= 1;
    tbody.replaceChildren(...page.sessions.map(row));
    status.textContent = page.sessions.length
      ? `Page ${cursors.length}: ${page.sessions.length} sessions`
      : 'No session matches.';
  }

  function row(s) {
    const close = s.close?.code != null ? `${s.close.code}${s.close.reason ? ` ${s.close.reason}` : ''}` : (s.failure ?? '');
    return h(
      'tr',
      { 'data-id': s.id },
      h('td', {}, h('time', { datetime: s.opened_at }, new Date(s.opened_at).toLocaleString())),
      h('td', {}, s.kind),
      h('td', {}, s.route ?? ''),
      h('td', { class: 'path' }, h('a', { href: `#/session/${s.id}` }, s.path || '/')),
      h('td', {}, badge(s.state), s.live ? ' live' : ''),
      h('td', { class: 'path' }, close),
      h('td', { class: 'n' }, `${s.messages_in} / ${s.messages_out}`),
      h('td', { class: 'n' }, `${bytes(s.bytes_in)} / ${bytes(s.bytes_out)}`),
    );
  }

  show(null, true);
  return () => {};
}
