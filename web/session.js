// One session: its facts, its lifecycle as a timeline, its message log (stored
// pages through /messages, then live events as they come), and what an operator
// does to it: inject to either side, close with a code, download the transcript.

import { ApiError, call, live } from './api.js';
import { badge, bytes, clock, h, inbound } from './dom.js';
import { OPENED, openConnection } from './connect.js';
import { MessageLog } from './log.js';

const PAGE = 1000;
const ENDED = new Set(['DISCONNECTED', 'FAILED']);

export function sessionView(main, setLink, id) {
  const log = new MessageLog();
  const facts = h('dl', { class: 'facts' });
  const timeline = h('ol', { class: 'timeline', 'aria-label': 'Lifecycle' });
  const notice = h('p', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  let session = null;
  let stored = true; // the gateway keeps history (else /messages is 404)
  let cursor = 0; // the next stored page starts after this seq
  let caughtUp = false; // every stored page is loaded: live events extend the log
  const early = []; // live messages that came before the stored pages caught up
  let factsFrame = 0;
  let shownLive = false; // the live stream's status has shown the session
  let stopped = false;

  main.replaceChildren(
    h('p', {}, h('a', { href: '#/sessions' }, '← Live sessions')),
    h('h1', {}, 'Session ', h('code', {}, id)),
    notice,
    h(
      'div',
      { class: 'session-grid' },
      h('section', { 'aria-labelledby': 'facts-h' }, h('h2', { id: 'facts-h' }, 'Facts'), facts),
      h('section', { 'aria-labelledby': 'life-h' }, h('h2', { id: 'life-h' }, 'Lifecycle'), timeline),
    ),
    h('section', { 'aria-labelledby': 'log-h' }, h('h2', { id: 'log-h' }, 'Messages'), log.element),
    actions(),
  );

  function say(text, error = false) {
    notice.textContent = text;
    notice.classList.toggle('error', error);
  }

  function showFacts(s) {
    const rows = [
      ['Kind', s.kind],
      ['Route', s.route],
      ['Path', s.path],
      ['Client', s.client_addr ?? ''],
      ['Upstream', s.upstream ?? ''],
      ['Subprotocol', s.subprotocol ?? ''],
      ['State', badge(s.state)],
      ['Opened', s.opened_at],
      ['Messages in / out', `${s.messages_in} / ${s.messages_out}`],
      ['Bytes in / out', `${bytes(s.bytes_in)} / ${bytes(s.bytes_out)}`],
    ];
    if (s.closed_at) rows.push(['Closed', s.closed_at]);
    if (s.close?.code != null) rows.push(['Close', `${s.close.code} ${s.close.reason ?? ''} (by ${s.close.initiator ?? '?'})`]);
    if (s.failure) rows.push(['Failure', s.failure]);
    if (s.messages_dropped) rows.push(['Not recorded', `${s.messages_dropped} messages`]);
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '')]));
  }

  function step(t) {
    const details = [];
    if (t.upstream) details.push(`upstream ${t.upstream}`);
    if (t.subprotocol) details.push(`subprotocol ${t.subprotocol}`);
    if (t.connect_ms != null) details.push(`connected in ${Number(t.connect_ms).toFixed(1)} ms`);
    if (t.attempt != null) details.push(`attempt ${t.attempt}`);
    if (t.close_code != null) details.push(`close ${t.close_code}${t.close_reason ? ` "${t.close_reason}"` : ''}`);
    if (t.initiator) details.push(`by ${t.initiator}`);
    if (t.http_status != null) details.push(`HTTP ${t.http_status}`);
    if (t.reason) details.push(`${t.reason_kind ? `${t.reason_kind}: ` : ''}${t.reason}`);
    return h(
      'li',
      {},
      badge(t.state),
      ' ',
      h('time', { datetime: t.at }, clock(t.at)),
      details.length ? h('span', { class: 'muted' }, ` — ${details.join(', ')}`) : null,
    );
  }

  // Stored pages, one after another in the background: the first shows at once,
  // the rest fill the log (and its search) while the view is usable.
  async function loadPage() {
    if (stopped) return;
    try {
      const page = await call(`/api/sessions/${id}/messages?after_seq=${cursor}&limit=${PAGE}`);
      log.append(page.messages);
      if (page.next_after_seq == null) {
        cursor = log.last;
        catchUp();
      } else {
        cursor = page.next_after_seq;
        setTimeout(loadPage, 0);
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && session) {
        // --no-store: no pages to read; the log is what the live stream shows.
        stored = false;
        say('This gateway keeps no history (--no-store): the log shows messages from when this page opened.');
        catchUp();
      } else say(`Messages could not be read: ${e.message}`, true);
    }
  }

  // Every stored page is in: the live messages held meanwhile go after them, those
  // the pages already had skipped. The recorder writes within about 100 ms, so a
  // gap between the two is read from the store again a little later.
  function catchUp() {
    caughtUp = true;
    const held = early.splice(0).filter((m) => m.seq > log.last);
    onMessages(held);
    rereadSoon();
  }

  // A live session's newest frames can be missing from the store when its pages are
  // first read (the recorder writes them a little later) and are older than the
  // live stream: in a session that then goes quiet, no later message would show the
  // gap. Its store is read once more, a second on.
  let reread = false;
  function rereadSoon() {
    if (reread || !stored || !session || session.live === false || ENDED.has(session.state)) return;
    reread = true;
    setTimeout(() => {
      if (stopped || !caughtUp) return; // a refill is already reading the store
      caughtUp = false;
      cursor = log.last;
      loadPage();
    }, 1000);
  }

  // A gap below this seq was read from the store again once; one still there is
  // frames history did not keep (`--record drop`), and the log goes on past it.
  let refilled = 0;
  function onMessages(list) {
    if (!caughtUp) {
      early.push(...list);
      return;
    }
    const next = list.filter((m) => m.seq > log.last);
    if (!next.length) return;
    if (stored && next[0].seq > log.last + 1 && next[0].seq > refilled) {
      refilled = next[0].seq;
      caughtUp = false;
      early.push(...next);
      setTimeout(() => {
        cursor = log.last;
        loadPage();
      }, 200);
      return;
    }
    log.append(next);
  }

  const stop = live(
    { session: id },
    (ev) => {
      if (ev.type === 'message') {
        onMessages([ev]);
        if (session) {
          const dir = inbound(ev.direction) ? 'in' : 'out';
          session[`messages_${dir}`] += 1;
          session[`bytes_${dir}`] += ev.size;
          if (!factsFrame) factsFrame = requestAnimationFrame(() => ((factsFrame = 0), showFacts(session)));
        }
      } else if (ev.type === 'status') {
        // The stream's first message: the session as it is now, if it is live. It
        // comes before the events that follow it, so from here on they apply in
        // order, whatever the first fetch of the session says meanwhile.
        const now = ev.sessions.find((x) => x.id === id);
        if (now) {
          shownLive = true;
          show({ ...(session ?? {}), ...now });
        }
      } else if (ev.type === 'lifecycle' && session) {
        timeline.append(step(ev));
        session.state = ev.state;
        if (ev.upstream) session.upstream = ev.upstream;
        if (ENDED.has(ev.state)) refresh();
        else showFacts(session);
      } else if (ev.type === 'error') say(`${ev.kind}: ${ev.message}`);
    },
    setLink,
  );

  // The session as the API answers it: at first, and once it has ended (the stored
  // facts: close code, totals). A first answer that the live stream's status has
  // overtaken is older than what is shown, and is not used.
  async function refresh(first = false) {
    let got;
    try {
      got = await call(`/api/sessions/${id}`);
    } catch (e) {
      say(e.status === 404 ? 'No such session: it is neither live nor in history.' : e.message, true);
      return false;
    }
    if (!(first && shownLive)) show(got);
    return true;
  }

  function show(s) {
    const firstShow = !session;
    session = s;
    showFacts(session);
    if (firstShow) sides(session.kind);
    timeline.replaceChildren(...session.lifecycle.map(step));
    if (session.lifecycle_omitted) {
      timeline.children[Math.min(8, timeline.children.length)]?.before(
        h('li', { class: 'muted' }, `… ${session.lifecycle_omitted} steps not kept in memory (history keeps them all)`),
      );
    }
  }

  // Only the sides the session has: a mock answers its client itself, and an
  // outbound session's only peer is its server (an inject there is a send).
  function sides(kind) {
    const to = main.querySelector('form.inject select[name=to]');
    const drop = kind === 'mock' ? 'upstream' : kind === 'outbound' ? 'client' : null;
    if (drop) to.querySelector(`option[value=${drop}]`)?.remove();
  }

  refresh(true).then((ok) => ok && loadPage());

  function actions() {
    const injectOut = h('p', { role: 'status', 'aria-live': 'polite', class: 'result' });
    const closeOut = h('p', { role: 'status', 'aria-live': 'polite', class: 'result' });
    const inject = h(
      'form',
      {
        class: 'inject',
        'aria-labelledby': 'inject-h',
        onsubmit: async (e) => {
          e.preventDefault();
          const f = new FormData(e.target);
          const body = { to: f.get('to') };
          const data = String(f.get('data'));
          const as = f.get('as');
          if (as === 'json') {
            try {
              JSON.parse(data);
            } catch (err) {
              injectOut.textContent = `Not JSON: ${err.message}`;
              return;
            }
          }
          if (as === 'base64') body.base64 = data.replace(/\s+/g, '');
          else body.text = data;
          try {
            await call(`/api/sessions/${id}/inject`, { method: 'POST', body });
            injectOut.textContent = `Sent to the ${body.to}.`;
          } catch (err) {
            injectOut.textContent = `Not sent: ${err.message}`;
          }
        },
      },
      h('h2', { id: 'inject-h' }, 'Inject'),
      h(
        'div',
        { class: 'row' },
        h('label', {}, 'To ', h('select', { name: 'to' }, h('option', { value: 'client' }, 'client'), h('option', { value: 'upstream' }, 'upstream'))),
        h(
          'label',
          {},
          'As ',
          h('select', { name: 'as' }, h('option', { value: 'text' }, 'text'), h('option', { value: 'json' }, 'JSON'), h('option', { value: 'base64' }, 'binary (base64)')),
        ),
      ),
      h('label', { class: 'block' }, 'Message', h('textarea', { name: 'data', rows: 3, required: true })),
      h('button', { type: 'submit' }, 'Inject'),
      injectOut,
    );
    const close = h(
      'form',
      {
        class: 'close',
        'aria-labelledby': 'close-h',
        onsubmit: async (e) => {
          e.preventDefault();
          const f = new FormData(e.target);
          const body = { code: Number(f.get('code')), reason: String(f.get('reason')) };
          try {
            await call(`/api/sessions/${id}/close`, { method: 'POST', body });
            closeOut.textContent = `Closing with ${body.code}.`;
          } catch (err) {
            closeOut.textContent = `Not closed: ${err.message}`;
          }
        },
      },
      h('h2', { id: 'close-h' }, 'Close'),
      h(
        'div',
        { class: 'row' },
        h('label', {}, 'Code ', h('input', { name: 'code', type: 'number', min: 1000, max: 4999, value: 1000, required: true })),
        h('label', {}, 'Reason ', h('input', { name: 'reason', maxlength: 123 })),
      ),
      h('button', { type: 'submit' }, 'Close session'),
      closeOut,
    );
    const download = h(
      'button',
      {
        type: 'button',
        onclick: async () => {
          try {
            // Fetched, not linked: the request needs the token's header.
            const res = await call(`/api/sessions/${id}/export`, { raw: true });
            const url = URL.createObjectURL(await res.blob());
            const a = h('a', { href: url, download: `session-${id}.jsonl` });
            document.body.append(a);
            a.click();
            a.remove();
            setTimeout(() => URL.revokeObjectURL(url), 10_000);
          } catch (err) {
            say(`No transcript: ${err.message}`, true);
          }
        },
      },
      'Download transcript (JSONL)',
    );
    const opened = JSON.parse(sessionStorage.getItem(OPENED) ?? '{}')[id];
    const reconnect = opened
      ? h(
          'button',
          {
            type: 'button',
            onclick: async () => {
              try {
                location.hash = `#/session/${await openConnection(opened)}`;
              } catch (err) {
                say(`Not reopened: ${err.message}`, true);
              }
            },
          },
          'Reconnect (a new session)',
        )
      : null;
    return h(
      'div',
      { class: 'actions' },
      inject,
      close,
      h('section', { 'aria-labelledby': 'more-h' }, h('h2', { id: 'more-h' }, 'More'), download, ' ', reconnect),
    );
  }

  return () => {
    stopped = true;
    stop();
  };
}
