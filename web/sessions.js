// Live sessions: every session the gateway holds, updated from the live stream as
// events arrive (new sessions appear, states and counters change), filtered by
// kind, route, state and text. Updates are applied once per animation frame, to the
// rows that changed, so a thousand busy sessions cost the page little.

import { call, live } from './api.js';
import { age, badge, bytes, h, inbound } from './dom.js';

/** Ended sessions kept in the table after they end, newest first. */
const KEEP_ENDED = 200;
const KINDS = ['proxy', 'mock', 'relay', 'outbound'];
const STATES = ['REQUESTED', 'CONNECTING', 'CONNECTED', 'DISCONNECTED', 'FAILED'];
const ENDED = new Set(['DISCONNECTED', 'FAILED']);
const RECONCILE_MS = 3000;

export function sessionsView(main, setLink) {
  let frame = 0;
  const rows = new Map(); // id -> { s, tr, cells }
  const dirty = new Set();
  const filter = { kind: '', state: '', route: '', text: '' };
  const tbody = h('tbody');
  const count = h('p', { class: 'count', role: 'status', 'aria-live': 'polite' });

  const select = (name, label, values) =>
    h(
      'label',
      {},
      `${label} `,
      h(
        'select',
        { name, onchange: (e) => setFilter(name, e.target.value) },
        h('option', { value: '' }, 'any'),
        values.map((v) => h('option', { value: v }, v)),
      ),
    );
  const text = (name, label, placeholder) =>
    h(
      'label',
      {},
      `${label} `,
      h('input', { name, type: 'search', placeholder, oninput: (e) => setFilter(name, e.target.value.trim()) }),
    );

  main.replaceChildren(
    h('h1', {}, 'Live sessions'),
    h(
      'form',
      { class: 'filters', role: 'search', 'aria-label': 'Filter sessions', onsubmit: (e) => e.preventDefault() },
      select('kind', 'Kind', KINDS),
      text('route', 'Route', 'any route'),
      select('state', 'State', STATES),
      text('text', 'Search', 'path, client, upstream or id'),
    ),
    count,
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'sessions live' },
        h('caption', { class: 'visually-hidden' }, 'Sessions, newest first'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Kind', 'Route', 'Path', 'Client', 'Upstream', 'State', 'Age'].map((c) => h('th', { scope: 'col' }, c)),
            h('th', { scope: 'col', class: 'n' }, 'Msgs in / out'),
            h('th', { scope: 'col', class: 'n' }, 'Bytes in / out'),
          ),
        ),
        tbody,
      ),
    ),
  );

  function setFilter(name, value) {
    filter[name] = value;
    for (const r of rows.values()) r.tr.hidden = !matches(r.s);
    showCount();
  }

  function matches(s) {
    if (filter.kind && s.kind !== filter.kind) return false;
    if (filter.state && s.state !== filter.state) return false;
    if (filter.route && !String(s.route ?? '').includes(filter.route)) return false;
    if (filter.text) {
      const hay = `${s.path ?? ''} ${s.client_addr ?? ''} ${s.upstream ?? ''} ${s.id}`.toLowerCase();
      if (!hay.includes(filter.text.toLowerCase())) return false;
    }
    return true;
  }

  function showCount() {
    let shown = 0;
    let active = 0;
    for (const r of rows.values()) {
      if (!r.tr.hidden) shown++;
      if (!ENDED.has(r.s.state)) active++;
    }
    count.textContent = `${active} active · ${shown} shown of ${rows.size}`;
  }

  function row(s) {
    const cells = {
      kind: h('td', {}),
      route: h('td', {}),
      path: h('td', { class: 'path' }, h('a', { href: `#/session/${s.id}` })),
      client: h('td', {}),
      upstream: h('td', { class: 'path' }),
      state: h('td', {}),
      age: h('td', {}),
      msgs: h('td', { class: 'n' }),
      bytes: h('td', { class: 'n' }),
    };
    const tr = h('tr', { 'data-id': s.id }, Object.values(cells));
    return { s, tr, cells };
  }

  // Writes only what changed: with a thousand rows, every write the table does not
  // need is layout work the page does.
  function set(cell, text) {
    if (cell.textContent !== text) cell.textContent = text;
  }

  function render(r) {
    const { s, cells } = r;
    set(cells.kind, s.kind ?? '');
    set(cells.route, s.route ?? '');
    set(cells.path.firstChild, s.path || '/');
    set(cells.client, s.client_addr ?? '');
    set(cells.upstream, s.upstream ?? '');
    if (cells.state.textContent !== s.state) cells.state.replaceChildren(badge(s.state));
    set(cells.age, age(s.opened_at));
    set(cells.msgs, `${s.messages_in ?? 0} / ${s.messages_out ?? 0}`);
    set(cells.bytes, `${bytes(s.bytes_in ?? 0)} / ${bytes(s.bytes_out ?? 0)}`);
    const hidden = !matches(s);
    if (r.tr.hidden !== hidden) r.tr.hidden = hidden;
  }

  function add(s, top = true) {
    const r = row(s);
    rows.set(s.id, r);
    if (top) tbody.prepend(r.tr);
    else tbody.append(r.tr);
    dirty.add(s.id);
    return r;
  }

  // The facts a lifecycle event does not carry (the client's address), fetched once
  // per new session, a few at a time.
  const toFetch = [];
  let fetching = 0;
  function fetchLater(id) {
    toFetch.push(id);
    pump();
  }
  function pump() {
    while (fetching < 4 && toFetch.length) {
      const id = toFetch.shift();
      fetching++;
      call(`/api/sessions/${id}`)
        .then((full) => {
          const r = rows.get(id);
          if (r) {
            // The fetched snapshot's counters include what came before the row
            // existed; an end the stream already showed is kept (ends are final).
            const state = ENDED.has(r.s.state) ? r.s.state : full.state;
            r.s = { ...r.s, ...full, state };
            dirty.add(id);
            if (!frame) frame = requestAnimationFrame(flush);
          }
        })
        .catch(() => {})
        .finally(() => {
          fetching--;
          pump();
        });
    }
  }

  function trimEnded() {
    const ended = [...rows.values()].filter((r) => ENDED.has(r.s.state));
    for (const r of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) {
      r.tr.remove();
      rows.delete(r.s.id);
    }
  }

  function onEvent(ev) {
    if (ev.type === 'status') {
      // A (re)connect: the live set as the gateway sees it now. Sessions the table
      // held that are not in it ended meanwhile; they stay, as ended ones do.
      const seen = new Set();
      const sorted = [...ev.sessions].sort((a, b) => Date.parse(a.opened_at) - Date.parse(b.opened_at));
      for (const s of sorted) {
        seen.add(s.id);
        const r = rows.get(s.id);
        if (r) {
          r.s = { ...r.s, ...s };
          dirty.add(s.id);
        } else add(s);
      }
      // Sessions the table held as open that ended while the stream was down.
      for (const r of rows.values()) if (!seen.has(r.s.id) && !ENDED.has(r.s.state)) fetchLater(r.s.id);
      return;
    }
    if (ev.type === 'lifecycle') {
      let r = rows.get(ev.session);
      if (!r) {
        r = add({
          id: ev.session,
          kind: ev.kind,
          route: ev.route,
          path: ev.path,
          state: ev.state,
          opened_at: ev.at,
          messages_in: 0,
          messages_out: 0,
          bytes_in: 0,
          bytes_out: 0,
        });
        fetchLater(ev.session);
      }
      r.s.state = ev.state;
      if (ev.upstream) r.s.upstream = ev.upstream;
      dirty.add(ev.session);
      if (ENDED.has(ev.state)) trimEnded();
      return;
    }
    if (ev.type === 'message') {
      const r = rows.get(ev.session);
      if (!r) return;
      const dir = inbound(ev.direction) ? 'in' : 'out';
      r.s[`messages_${dir}`] = (r.s[`messages_${dir}`] ?? 0) + 1;
      r.s[`bytes_${dir}`] = (r.s[`bytes_${dir}`] ?? 0) + ev.size;
      dirty.add(ev.session);
    }
  }

  const flush = () => {
    frame = 0;
    if (!dirty.size) return;
    for (const id of dirty) {
      const r = rows.get(id);
      if (r) render(r);
    }
    dirty.clear();
    showCount();
  };
  const onEventBatched = (ev) => {
    onEvent(ev);
    if (dirty.size && !frame) frame = requestAnimationFrame(flush);
  };
  // Ages move on by themselves.
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const r of rows.values()) if (!r.tr.hidden) set(r.cells.age, age(r.s.opened_at, now));
  }, 1000);
  // The counters and states read again every few seconds from the API: under heavy
  // traffic the live stream drops events for a page that cannot keep up (counted in
  // wsgate_live_dropped_total), and the table would otherwise fall behind for good.
  const reconcile = setInterval(async () => {
    let list;
    try {
      list = (await call('/api/sessions?limit=1000')).sessions;
    } catch {
      return;
    }
    for (const s of list) {
      const r = rows.get(s.id);
      if (r) {
        const state = ENDED.has(r.s.state) ? r.s.state : s.state;
        const changed =
          state !== r.s.state ||
          s.messages_in !== r.s.messages_in ||
          s.messages_out !== r.s.messages_out ||
          s.bytes_in !== r.s.bytes_in ||
          s.bytes_out !== r.s.bytes_out;
        if (changed) {
          r.s = { ...r.s, ...s, state };
          dirty.add(s.id);
        }
      } else if (s.live) add(s);
    }
    if (dirty.size && !frame) frame = requestAnimationFrame(flush);
  }, RECONCILE_MS);
  const stop = live('', onEventBatched, setLink);
  showCount();
  return () => {
    stop();
    clearInterval(ticker);
    clearInterval(reconcile);
    if (frame) cancelAnimationFrame(frame);
  };
}
