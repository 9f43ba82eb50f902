// Intercept: breakpoints on a proxy route hold whole messages before they are
// forwarded (`/api/intercepts`, docs in notes/intercept-api.md). Here an operator
// adds and removes breakpoints, sees the held frames oldest first with the time
// left before each goes on unchanged, and forwards one (as it was, or as edited
// here) or drops it. Read again every second while the view is open; a held frame
// keeps its row (and what is typed in it) for as long as it stays held.

import { ApiError, call } from './api.js';
import { ARROWS, bytes, clock, h } from './dom.js';

const EVERY_MS = 1000;
const DIRECTIONS = {
  both: 'both',
  client_to_upstream: 'client → upstream',
  upstream_to_client: 'upstream → client',
};
const NO_PROXY = 'Intercept works on proxy routes; this gateway has none.';

/** A button waiting on its request: marked, not disabled (disabling the focused
 * button would throw focus to the page's top). */
function busy(button, on) {
  if (on) button.setAttribute('aria-disabled', 'true');
  else button.removeAttribute('aria-disabled');
}
const isBusy = (button) => button.getAttribute('aria-disabled') === 'true';

export function interceptView(main) {
  let stopped = false;
  let polling = false;
  let proxyRoutes = [];
  const breakpoints = new Map(); // id -> { tr, hits }
  const held = new Map(); // id -> { li, textarea, original, binary, deadline, left, forward, drop }
  const status = h('p', { class: 'result', role: 'status', 'aria-live': 'polite' });
  const heldStatus = h('p', { class: 'result held-status', role: 'status', 'aria-live': 'polite' });
  const bpBody = h('tbody');
  const bpEmpty = h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No breakpoints: every message flows.'));
  const heldList = h('ol', { class: 'held-list', 'aria-labelledby': 'held-h' });
  const heldEmpty = h('p', { class: 'muted' }, 'Nothing held.');
  const heldHeading = h('h2', { id: 'held-h', tabindex: -1 }, 'Held frames');
  const bpHeading = h('h2', { id: 'bps-h', tabindex: -1 }, 'Breakpoints');
  bpBody.append(bpEmpty);

  /** A status line's text, set only when it changes (a poll repeating the same
   * error would otherwise be announced every second). */
  const say = (line, text, error = false) => {
    if (line.textContent !== text) line.textContent = text;
    line.classList.toggle('error', error);
  };

  // The form: which route, which way, which messages, how long at most.
  const routeSelect = h('select', { name: 'route', required: true }, h('option', { value: '' }, 'loading…'));
  const routeNote = h('p', { class: 'muted', id: 'bp-route-note' });
  const addButton = h('button', { type: 'submit', disabled: true }, 'Add breakpoint');
  const form = h(
    'form',
    { class: 'breakpoint', 'aria-labelledby': 'add-h', onsubmit: (e) => (e.preventDefault(), add()) },
    h('h2', { id: 'add-h' }, 'Add a breakpoint'),
    h(
      'div',
      { class: 'row' },
      h('label', {}, 'Route ', routeSelect),
      h(
        'label',
        {},
        'Direction ',
        h('select', { name: 'direction' }, Object.entries(DIRECTIONS).map(([v, label]) => h('option', { value: v }, label))),
      ),
      h('label', {}, 'Timeout (s) ', h('input', { name: 'timeout', type: 'number', min: 1, max: 3600, step: 'any', value: 60, required: true, size: 6 })),
    ),
    routeNote,
    h(
      'label',
      { class: 'block' },
      'Match',
      h('input', { name: 'match', placeholder: 'a regex, or a JSONPath such as $.type', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'match-hint' }),
    ),
    h(
      'p',
      { class: 'muted hint', id: 'match-hint' },
      'A regular expression searched in the message text, or a JSONPath starting with $ (the message is held when the path finds a value). Empty: every message.',
    ),
    h(
      'label',
      { class: 'block' },
      'Equals (optional, JSON)',
      h('input', { name: 'equals', placeholder: '"order"', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'equals-hint' }),
    ),
    h('p', { class: 'muted hint', id: 'equals-hint' }, 'Only with a JSONPath: the value it finds must equal this JSON value.'),
    h('div', { class: 'buttons left' }, addButton),
    status,
  );

  main.replaceChildren(
    h('h1', {}, 'Intercept'),
    h(
      'p',
      { class: 'muted' },
      'A breakpoint holds the messages it matches on a proxy route until they are forwarded (as they were or edited) or dropped here, or until its timeout, when they go on unchanged. A held message holds back the later ones of its session in the same direction; other sessions and the other direction flow.',
    ),
    form,
    h(
      'section',
      { 'aria-labelledby': 'bps-h' },
      bpHeading,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'sessions breakpoints' },
          h('caption', { class: 'visually-hidden' }, 'Breakpoints, oldest first'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Route', 'Direction', 'Match', 'Timeout'].map((c) => h('th', { scope: 'col' }, c)),
              h('th', { scope: 'col', class: 'n' }, 'Hits'),
              h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
            ),
          ),
          bpBody,
        ),
      ),
    ),
    h('section', { 'aria-labelledby': 'held-h' }, heldHeading, heldStatus, heldEmpty, heldList),
  );

  async function loadRoutes() {
    let routes = [];
    try {
      routes = (await call('/api/routes')).routes;
    } catch (e) {
      // 409: a gateway with no route table (`wsgate serve` with no routes).
      if (!(e instanceof ApiError && e.status === 409)) {
        say(routeNote, `Routes could not be read: ${e.message}`, true);
        return;
      }
    }
    if (stopped) return;
    proxyRoutes = routes.filter((r) => r.kind === 'proxy');
    if (!proxyRoutes.length) {
      routeSelect.replaceChildren(h('option', { value: '' }, 'none'));
      routeSelect.disabled = true;
      routeSelect.setAttribute('aria-describedby', 'bp-route-note');
      say(routeNote, NO_PROXY);
      return;
    }
    routeSelect.replaceChildren(...proxyRoutes.map((r) => h('option', { value: r.name }, `${r.name} (${r.path})`)));
    say(routeNote, '');
    addButton.disabled = false;
  }

  async function add() {
    if (isBusy(addButton) || !form.reportValidity()) return;
    const f = new FormData(form);
    const body = { route: String(f.get('route')), direction: String(f.get('direction')) };
    const match = String(f.get('match') ?? '');
    const equals = String(f.get('equals') ?? '').trim();
    if (match) body.match = match;
    if (equals) {
      if (!match.startsWith('$')) {
        say(status, 'Not added: Equals needs a JSONPath in Match (starting with $).', true);
        return;
      }
      try {
        body.equals = JSON.parse(equals);
      } catch (e) {
        say(status, `Not added: Equals is not JSON (${e.message}). A string is written in quotes: "order".`, true);
        return;
      }
    }
    body.timeout_ms = Math.round(Number(f.get('timeout')) * 1000);
    busy(addButton, true);
    try {
      const bp = await call('/api/intercepts', { method: 'POST', body });
      say(status, `Breakpoint #${bp.id} added on ${bp.route}.`);
      await poll();
    } catch (e) {
      say(status, `Not added: ${e.message}`, true);
    } finally {
      busy(addButton, false);
    }
  }

  async function remove(bp, button) {
    if (isBusy(button)) return;
    busy(button, true);
    try {
      await call(`/api/intercepts/${bp.id}`, { method: 'DELETE' });
      say(status, `Breakpoint #${bp.id} removed; what it held went on unchanged.`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) say(status, `Breakpoint #${bp.id} was already gone.`);
      else {
        say(status, `Not removed: ${e.message}`, true);
        busy(button, false);
        return;
      }
    }
    // Its row goes; focus, if it was on its button, goes to the next one's (or the
    // table's heading).
    const row = breakpoints.get(bp.id);
    if (row?.tr.contains(document.activeElement)) {
      const next = [row.tr.nextElementSibling, row.tr.previousElementSibling].find((el) => el && el !== bpEmpty);
      (next?.querySelector('button') ?? bpHeading).focus();
    }
    row?.tr.remove();
    breakpoints.delete(bp.id);
    showEmpty();
    await poll();
  }

  function matchText(bp) {
    const m = bp.match ?? '';
    if (bp.equals !== undefined) return `${m} == ${JSON.stringify(bp.equals)}`;
    return m || 'every message';
  }

  function bpRow(bp) {
    const hits = h('td', { class: 'n' }, String(bp.hits));
    const button = h('button', { type: 'button', 'aria-label': `Remove breakpoint #${bp.id} (${matchText(bp)})` }, 'Remove');
    button.addEventListener('click', () => remove(bp, button));
    const tr = h(
      'tr',
      { 'data-id': bp.id },
      h('td', {}, bp.route),
      h('td', {}, DIRECTIONS[bp.direction] ?? bp.direction),
      h('td', { class: 'path' }, bp.match || bp.equals !== undefined ? h('code', {}, matchText(bp)) : h('span', { class: 'muted' }, 'every message')),
      h('td', {}, seconds(bp.timeout_ms)),
      hits,
      h('td', {}, button),
    );
    return { tr, hits };
  }

  function showBreakpoints(list) {
    const ids = new Set(list.map((b) => b.id));
    for (const [id, row] of breakpoints) {
      if (!ids.has(id)) {
        row.tr.remove();
        breakpoints.delete(id);
      }
    }
    for (const bp of list) {
      const row = breakpoints.get(bp.id);
      if (row) {
        if (row.hits.textContent !== String(bp.hits)) row.hits.textContent = String(bp.hits);
        continue;
      }
      const next = bpRow(bp);
      breakpoints.set(bp.id, next);
      bpBody.append(next.tr);
    }
    showEmpty();
  }

  function showEmpty() {
    bpEmpty.hidden = breakpoints.size > 0;
  }

  // A held frame's row: made once, then only its countdown changes. The payload
  // is the frame's as held until someone edits it; Forward sends it unchanged
  // unless the text differs.
  function heldRow(fr) {
    const binary = fr.base64 != null;
    const original = binary ? fr.base64 : (fr.text ?? '');
    const lines = original.split('\n').length;
    const taId = `held-${fr.id}-payload`;
    const textarea = h('textarea', {
      id: taId,
      name: `payload-${fr.id}`,
      rows: Math.min(12, Math.max(2, lines, Math.ceil(original.length / 90))),
      spellcheck: 'false',
      'aria-describedby': binary ? `held-${fr.id}-note` : null,
    });
    textarea.value = original;
    const left = h('span', { class: 'countdown' });
    // The server's clock says when it expires; a browser whose clock differs is
    // still never told more than the frame's whole timeout.
    const whole = Date.parse(fr.expires_at) - Date.parse(fr.held_at);
    const deadline = Date.now() + Math.max(0, Math.min(whole, Date.parse(fr.expires_at) - Date.now()));
    const forward = h('button', { type: 'button', class: 'primary', 'aria-label': `Forward frame #${fr.id}` }, 'Forward');
    const drop = h('button', { type: 'button', 'aria-label': `Drop frame #${fr.id}` }, 'Drop');
    const row = { textarea, original, binary, deadline, left, forward, drop };
    forward.addEventListener('click', () => act(fr.id, 'forward'));
    drop.addEventListener('click', () => act(fr.id, 'drop'));
    row.li = h(
      'li',
      { class: `held-frame ${fr.direction}`, 'data-id': fr.id, 'aria-labelledby': `held-${fr.id}-h` },
      h(
        'h3',
        { id: `held-${fr.id}-h` },
        `Frame #${fr.id} `,
        h('span', { class: 'arrow' }, ARROWS[fr.direction] ?? '?'),
        ` ${DIRECTIONS[fr.direction] ?? fr.direction}`,
      ),
      h(
        'p',
        { class: 'meta' },
        h('a', { href: `#/session/${fr.session}`, title: fr.session }, `Session ${fr.session.slice(0, 8)}`),
        h('span', {}, `route ${fr.route}`),
        h('span', {}, `${bytes(fr.size)}${binary ? ', binary' : ''}`),
        h('span', {}, 'held at ', h('time', { datetime: fr.held_at }, clock(fr.held_at))),
        left,
      ),
      h('label', { for: taId }, binary ? 'Payload (binary, as base64)' : 'Payload (text)'),
      textarea,
      binary
        ? h('p', { class: 'muted hint', id: `held-${fr.id}-note` }, 'A binary frame, shown as base64: an edit is read as base64 and sent as a binary frame.')
        : null,
      h('div', { class: 'buttons left' }, forward, drop),
    );
    tick(row);
    return row;
  }

  function tick(row, now = Date.now()) {
    const s = Math.ceil((row.deadline - now) / 1000);
    const text = s > 0 ? `forwarded unchanged in ${s} s` : 'being forwarded unchanged now';
    if (row.left.textContent !== text) row.left.textContent = text;
    row.left.classList.toggle('soon', s <= 10);
  }

  /** The held frames as the API lists them, oldest first. A frame still held keeps
   * its row untouched (what is typed in it, and focus, stay); new ones are put in
   * their place without moving the others. */
  function showHeld(list) {
    const ids = new Set(list.map((f) => f.id));
    for (const [id, row] of held) {
      if (ids.has(id)) continue;
      // Unless it went because of what was just done here (an answer on its way).
      if (!isBusy(row.forward) && row.textarea.value !== row.original) {
        say(heldStatus, `Frame #${id} went on before it was forwarded from here (it timed out, or its session ended): the edit was not sent.`, true);
      }
      leave(id);
    }
    let prev = null;
    for (const fr of list) {
      let row = held.get(fr.id);
      if (!row) {
        row = heldRow(fr);
        held.set(fr.id, row);
        if (prev) prev.li.after(row.li);
        else heldList.prepend(row.li);
      }
      prev = row;
    }
    heldEmpty.hidden = held.size > 0;
  }

  /** A row goes; focus on it moves to the next held frame, or the heading. */
  function leave(id) {
    const row = held.get(id);
    if (!row) return;
    const focused = row.li.contains(document.activeElement);
    const next = row.li.nextElementSibling ?? row.li.previousElementSibling;
    row.li.remove();
    held.delete(id);
    heldEmpty.hidden = held.size > 0;
    if (focused) (next?.querySelector('textarea') ?? heldHeading).focus();
  }

  async function act(id, what) {
    const row = held.get(id);
    if (!row || isBusy(row.forward)) return;
    let body;
    if (what === 'forward') {
      const value = row.textarea.value;
      if (row.binary) {
        const b64 = value.replace(/\s+/g, '');
        if (b64 !== row.original.replace(/\s+/g, '')) {
          try {
            atob(b64);
          } catch {
            say(heldStatus, `Frame #${id} not forwarded: the payload is not valid base64.`, true);
            row.textarea.focus();
            return;
          }
          body = { base64: b64 };
        }
      } else if (value !== row.original) body = { text: value };
    }
    busy(row.forward, true);
    busy(row.drop, true);
    try {
      const res = await call(`/api/intercepts/held/${id}/${what}`, { method: 'POST', body: body ?? {} });
      const outcome = { forwarded: 'forwarded unchanged', edited: 'forwarded as edited', dropped: 'dropped' }[res.outcome] ?? res.outcome;
      say(heldStatus, `Frame #${id} ${outcome}.`);
      leave(id);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        say(heldStatus, `Frame #${id} had already gone on (it timed out, or its session ended): nothing was ${what === 'drop' ? 'dropped' : 'sent'} from here.`, true);
        leave(id);
      } else {
        say(heldStatus, `Frame #${id} not ${what === 'drop' ? 'dropped' : 'forwarded'}: ${e.message}`, true);
        busy(row.forward, false);
        busy(row.drop, false);
        return;
      }
    }
    await poll();
  }

  async function poll() {
    if (polling || stopped) return;
    polling = true;
    try {
      const now = await call('/api/intercepts');
      if (stopped) return;
      showBreakpoints(now.breakpoints ?? []);
      showHeld(now.held ?? []);
      if (heldStatus.dataset.failed) {
        delete heldStatus.dataset.failed;
        say(heldStatus, '');
      }
    } catch (e) {
      if (stopped) return;
      heldStatus.dataset.failed = '1';
      say(
        heldStatus,
        e instanceof ApiError && e.status === 404 ? 'This gateway has no intercept API (an older wsgate?).' : `Breakpoints could not be read: ${e.message}`,
        true,
      );
    } finally {
      polling = false;
    }
  }

  loadRoutes();
  poll();
  const timer = setInterval(() => {
    const now = Date.now();
    for (const row of held.values()) tick(row, now);
    poll();
  }, EVERY_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

function seconds(ms) {
  const s = ms / 1000;
  if (s >= 120 && s % 60 === 0) return `${s / 60} min`;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
