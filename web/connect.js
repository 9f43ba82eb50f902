// Connect (WaveLine's workspace): open an outbound session to any ws:// or wss://
// server with headers and subprotocols (`POST /api/connections`), then follow it in
// the session view, which sends to it and closes it. Connections can be saved in
// this browser to open again.

import { call } from './api.js';
import { h } from './dom.js';

const SAVED = 'wsgate.connections';
/** The request that opened each outbound session, so the session view can open
 * it again ("Reconnect"). This tab only. */
export const OPENED = 'wsgate.opened';

function saved() {
  try {
    return JSON.parse(localStorage.getItem(SAVED) ?? '[]');
  } catch {
    return [];
  }
}

/** Opens a connection; the new session's id. */
export async function openConnection(body) {
  const { id } = await call('/api/connections', { method: 'POST', body });
  const opened = JSON.parse(sessionStorage.getItem(OPENED) ?? '{}');
  opened[id] = body;
  sessionStorage.setItem(OPENED, JSON.stringify(opened));
  return id;
}

export function connectView(main) {
  const out = h('p', { class: 'result', role: 'status', 'aria-live': 'polite' });
  const list = h('ul', { class: 'saved' });

  const form = h(
    'form',
    { 'aria-labelledby': 'connect-h', onsubmit: (e) => e.preventDefault() },
    h('h2', { id: 'connect-h' }, 'New connection'),
    h('label', { class: 'block' }, 'URL', h('input', { name: 'url', type: 'url', required: true, placeholder: 'wss://example.com/feed', size: 60 })),
    h(
      'label',
      { class: 'block' },
      'Headers, one "Name: value" a line',
      h('textarea', { name: 'headers', rows: 3, placeholder: 'Authorization: Bearer …' }),
    ),
    h('label', { class: 'block' }, 'Subprotocols, in order, comma-separated', h('input', { name: 'subprotocols', placeholder: 'v2, v1' })),
    h('label', {}, h('input', { name: 'reconnect', type: 'checkbox' }), ' Reconnect when the connection is lost'),
    h('div', { class: 'buttons left' }, h('button', { type: 'submit', onclick: () => submit(false) }, 'Connect'), h('button', { type: 'button', onclick: () => submit(true) }, 'Save')),
    out,
  );

  function request() {
    const f = new FormData(form);
    const body = { url: String(f.get('url')).trim() };
    const headers = {};
    for (const line of String(f.get('headers')).split('\n')) {
      const at = line.indexOf(':');
      if (line.trim() && at > 0) headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      else if (line.trim()) throw new Error(`not a header line: ${line}`);
    }
    if (Object.keys(headers).length) body.headers = headers;
    const protocols = String(f.get('subprotocols')).split(',').map((p) => p.trim()).filter(Boolean);
    if (protocols.length) body.subprotocols = protocols;
    if (f.get('reconnect')) body.reconnect = true;
    return body;
  }

  async function submit(save) {
    if (!form.reportValidity()) return;
    let body;
    try {
      body = request();
    } catch (e) {
      out.textContent = e.message;
      return;
    }
    if (save) {
      const all = saved().filter((c) => c.url !== body.url);
      all.unshift(body);
      localStorage.setItem(SAVED, JSON.stringify(all.slice(0, 50)));
      out.textContent = 'Saved in this browser.';
      showSaved();
      return;
    }
    try {
      const id = await openConnection(body);
      location.hash = `#/session/${id}`;
    } catch (e) {
      out.textContent = `Not opened: ${e.message}`;
    }
  }

  function fill(c) {
    form.elements.url.value = c.url;
    form.elements.headers.value = Object.entries(c.headers ?? {}).map(([k, v]) => `${k}: ${v}`).join('\n');
    form.elements.subprotocols.value = (c.subprotocols ?? []).join(', ');
    form.elements.reconnect.checked = Boolean(c.reconnect);
  }

  function showSaved() {
    const all = saved();
    list.replaceChildren(
      ...(all.length
        ? all.map((c, i) =>
            h(
              'li',
              {},
              h('code', {}, c.url),
              ' ',
              h('button', { type: 'button', onclick: () => fill(c), 'aria-label': `Use ${c.url}` }, 'Use'),
              ' ',
              h(
                'button',
                {
                  type: 'button',
                  'aria-label': `Forget ${c.url}`,
                  onclick: () => {
                    localStorage.setItem(SAVED, JSON.stringify(saved().filter((_, j) => j !== i)));
                    showSaved();
                  },
                },
                'Forget',
              ),
            ),
          )
        : [h('li', { class: 'muted' }, 'None yet.')]),
    );
  }

  main.replaceChildren(
    h('h1', {}, 'Connect'),
    h('p', { class: 'muted' }, 'wsgate opens the connection itself: it is an outbound session, live, recorded and in history like any other.'),
    form,
    h('section', { 'aria-labelledby': 'saved-h' }, h('h2', { id: 'saved-h' }, 'Saved connections'), h('p', { class: 'muted' }, 'Kept in this browser, headers included.'), list),
  );
  showSaved();
  return () => {};
}
