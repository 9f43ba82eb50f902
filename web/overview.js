// Overview: what the gateway is doing now. Rates come from `/metrics` (read every
// two seconds; the last five minutes kept here and drawn as small charts), the
// routes from `/api/routes` with each proxy or mock route's faults, relay rooms
// from `/api/rooms` with a form to publish to one.

import { ApiError, call } from './api.js';
import { bytes, h } from './dom.js';

const EVERY_MS = 2000;
const KEEP = 150; // samples: five minutes at one every two seconds
const SVG = 'http://www.w3.org/2000/svg';

/** Prometheus text → { "name{labels}": value }, and sums by metric name. */
export function parseMetrics(text) {
  const series = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const value = Number(line.slice(space + 1));
    if (space > 0 && Number.isFinite(value)) series.set(line.slice(0, space), value);
  }
  const sum = (name, match = () => true) => {
    let total = 0;
    for (const [k, v] of series) {
      const base = k.split('{')[0];
      if (base === name && match(k)) total += v;
    }
    return total;
  };
  return { series, sum };
}

function labelsOf(key) {
  const out = {};
  const inner = key.match(/\{(.*)\}$/)?.[1] ?? '';
  for (const m of inner.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]] = m[2];
  return out;
}

/** A small line chart of `values` (SVG built through the DOM; no style attributes,
 * which the page's CSP refuses). */
function chart(values, label) {
  const w = 300;
  const hgt = 60;
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / Math.max(1, KEEP - 1)) * w},${hgt - (v / max) * (hgt - 4) - 2}`).join(' ');
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points);
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', 'currentColor');
  line.setAttribute('stroke-width', '2');
  svg.append(line);
  return svg;
}

export function overviewView(main) {
  const samples = []; // { at, msgs, bytes }
  const rates = { msgs: [], bytes: [] };
  const cards = h('div', { class: 'cards' });
  const drops = h('dl', { class: 'facts' });
  const routes = h('tbody');
  const rooms = h('div');
  const out = h('p', { class: 'result', role: 'status', 'aria-live': 'polite' });

  main.replaceChildren(
    h('h1', {}, 'Overview'),
    cards,
    h('section', { 'aria-labelledby': 'drops-h' }, h('h2', { id: 'drops-h' }, 'Drops and history'), drops),
    h(
      'section',
      { 'aria-labelledby': 'routes-h' },
      h('h2', { id: 'routes-h' }, 'Routes'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'sessions' },
          h('thead', {}, h('tr', {}, ['Name', 'Path', 'Kind', 'Target', 'Active', 'Faults'].map((c) => h('th', { scope: 'col' }, c)))),
          routes,
        ),
      ),
    ),
    h('section', { 'aria-labelledby': 'rooms-h' }, h('h2', { id: 'rooms-h' }, 'Relay rooms'), rooms, out),
  );

  function card(title, value, values, label) {
    return h('section', { class: 'card', 'aria-label': title }, h('h2', {}, title), h('p', { class: 'big' }, value), values ? chart(values, label) : null);
  }

  async function tick() {
    let m;
    try {
      const res = await call('/metrics', { raw: true });
      m = parseMetrics(await res.text());
    } catch (e) {
      cards.replaceChildren(h('p', { class: 'error' }, `Metrics could not be read: ${e.message}`));
      return;
    }
    const now = Date.now();
    const msgs = m.sum('wsgate_messages_total');
    const byteCount = m.sum('wsgate_message_bytes_total');
    const last = samples.at(-1);
    samples.push({ at: now, msgs, bytes: byteCount });
    if (last) {
      const dt = (now - last.at) / 1000;
      rates.msgs.push(Math.max(0, (msgs - last.msgs) / dt));
      rates.bytes.push(Math.max(0, (byteCount - last.bytes) / dt));
      for (const r of Object.values(rates)) if (r.length > KEEP) r.shift();
    }
    if (samples.length > 2) samples.shift();
    const active = m.sum('wsgate_sessions_active');
    const byKind = ['proxy', 'mock', 'relay', 'outbound']
      .map((k) => [k, m.sum('wsgate_sessions_active', (key) => key.includes(`kind="${k}"`))])
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n} ${k}`)
      .join(', ');
    cards.replaceChildren(
      card('Active sessions', `${active}${byKind ? ` (${byKind})` : ''}`),
      card('Messages/s', (rates.msgs.at(-1) ?? 0).toFixed(0), rates.msgs, 'Messages per second, last five minutes'),
      card('Bytes/s', bytes(Math.round(rates.bytes.at(-1) ?? 0)), rates.bytes, 'Payload bytes per second, last five minutes'),
    );
    const rows = [];
    for (const [k, v] of m.series) {
      if (k.startsWith('wsgate_observer_dropped_total')) rows.push([`dropped by observer ${labelsOf(k).observer}`, v]);
      if (k.startsWith('wsgate_queue_dropped_total')) rows.push([`accept-early queue: ${labelsOf(k).reason}`, v]);
    }
    rows.push(['dropped for slow live subscribers', m.sum('wsgate_live_dropped_total')]);
    if (m.series.has('wsgate_store_rows_total')) {
      rows.push(['store: rows committed', m.sum('wsgate_store_rows_total')]);
      rows.push(['store: payload committed', bytes(m.sum('wsgate_store_payload_bytes_total'))]);
      rows.push(['store: batches refused', m.sum('wsgate_store_write_errors_total')]);
    } else rows.push(['store', 'off (--no-store)']);
    drops.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
    routeActive = (name) => m.sum('wsgate_route_sessions_active', (key) => key.includes(`route="${name}"`));
  }

  let routeActive = () => 0;

  async function showRoutes() {
    let table;
    try {
      table = await call('/api/routes');
    } catch (e) {
      routes.replaceChildren(h('tr', {}, h('td', { colspan: 6 }, e instanceof ApiError && e.status === 409 ? 'This gateway has no routes.' : e.message)));
      return;
    }
    const faultsOf = async (r) => {
      if (r.kind === 'relay') return 'n/a';
      try {
        const f = await call(`/api/routes/${encodeURIComponent(r.name)}/faults`);
        return f.faults ? JSON.stringify(f.faults) : 'none';
      } catch (e) {
        return e.message;
      }
    };
    const rows = await Promise.all(
      table.routes.map(async (r) =>
        h(
          'tr',
          {},
          h('td', {}, r.name),
          h('td', {}, r.path),
          h('td', {}, r.kind),
          h('td', { class: 'path' }, r.target ?? ''),
          h('td', { class: 'n' }, String(routeActive(r.name))),
          h('td', { class: 'path' }, h('code', {}, await faultsOf(r))),
        ),
      ),
    );
    routes.replaceChildren(...rows);
  }

  async function showRooms() {
    let list;
    try {
      list = (await call('/api/rooms')).rooms;
    } catch (e) {
      rooms.replaceChildren(h('p', { class: 'muted' }, `Not in this gateway (${e.message}).`));
      return;
    }
    if (!list.length) {
      rooms.replaceChildren(h('p', { class: 'muted' }, 'No room has members.'));
      return;
    }
    rooms.replaceChildren(
      h(
        'ul',
        { class: 'saved' },
        list.map((r) =>
          h('li', {}, h('code', {}, r.room), ` — ${r.members} members, ${r.deliveries} deliveries, last offset ${r.offset ?? '–'}`),
        ),
      ),
      h(
        'form',
        {
          class: 'inject',
          'aria-labelledby': 'publish-h',
          onsubmit: async (e) => {
            e.preventDefault();
            const f = new FormData(e.target);
            try {
              const res = await call(`/api/rooms/${encodeURIComponent(String(f.get('room')))}/publish`, {
                method: 'POST',
                body: { text: String(f.get('text')) },
              });
              out.textContent = `Published at offset ${res.offset}, delivered to ${res.delivered}.`;
            } catch (err) {
              out.textContent = `Not published: ${err.message}`;
            }
          },
        },
        h('h3', { id: 'publish-h' }, 'Publish'),
        h('label', {}, 'Room ', h('select', { name: 'room' }, list.map((r) => h('option', { value: r.room }, r.room)))),
        h('label', { class: 'block' }, 'Message', h('textarea', { name: 'text', rows: 2, required: true })),
        h('button', { type: 'submit' }, 'Publish'),
      ),
    );
  }

  const refresh = async () => {
    await tick();
    await showRoutes();
  };
  refresh();
  showRooms();
  const timer = setInterval(refresh, EVERY_MS);
  return () => clearInterval(timer);
}
