// The control plane's API as the dashboard uses it — the same public API and live
// stream as every other client (docs/control-api.md). The admin token, when the
// control plane wants one, is asked for once and kept for this tab
// (sessionStorage); it travels only in `Authorization` headers. The live stream,
// which a browser cannot give headers, opens with a one-use ticket instead, so no
// URL the dashboard builds ever holds the token.

const KEY = 'wsgate.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const token = () => sessionStorage.getItem(KEY) ?? '';

function headers(json) {
  const h = {};
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

/** Calls `path`; the parsed JSON answer (or the Response with `raw`). A 401 asks for
 * the token and tries again; any other error status throws an `ApiError` with the
 * server's message. */
export async function call(path, { method = 'GET', body, raw = false } = {}) {
  for (;;) {
    const init = { method, headers: headers(body !== undefined) };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    if (res.status === 401) {
      await askForToken(token() ? 'That token was refused (401 Unauthorized). Check it and try again.' : '');
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    if (raw) return res;
    return res.status === 204 ? null : res.json();
  }
}

async function errorText(res) {
  try {
    const j = await res.json();
    return j.detail ? `${j.error}: ${j.detail}` : (j.error ?? res.statusText);
  } catch {
    return `${res.status} ${res.statusText}`;
  }
}

let asking = null;

/** Shows the token dialog (once, however many calls are waiting on it). */
function askForToken(error) {
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-error').textContent = error;
  input.value = '';
  asking = new Promise((resolve) => {
    const done = (e) => {
      e.preventDefault();
      if (!input.value) return;
      sessionStorage.setItem(KEY, input.value);
      input.value = '';
      form.removeEventListener('submit', done);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener('submit', done);
  });
  // Escape would leave every call waiting with nothing to retry: the dialog stays.
  dialog.addEventListener('cancel', (e) => e.preventDefault());
  dialog.showModal();
  input.focus();
  return asking;
}

/** The live stream (`/api/live?query`), kept open: `onEvent(event)` for each event,
 * `onLink(up)` when the socket opens or drops; reopened after a drop, with a fresh
 * ticket. Returns a function that closes it for good. */
export function live(query, onEvent, onLink) {
  let ws = null;
  let stopped = false;
  let retry = 250;
  const open = async () => {
    if (stopped) return;
    let ticket;
    try {
      ({ ticket } = await call('/api/live/ticket', { method: 'POST' }));
    } catch {
      setTimeout(open, (retry = Math.min(retry * 2, 5000)));
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = new URLSearchParams(query);
    q.set('ticket', ticket);
    ws = new WebSocket(`${scheme}://${location.host}/api/live?${q}`);
    ws.onopen = () => {
      retry = 250;
      onLink(true);
    };
    ws.onmessage = (m) => {
      try {
        onEvent(JSON.parse(m.data));
      } catch (e) {
        console.warn('live: not an event', e);
      }
    };
    ws.onclose = () => {
      if (stopped) return;
      onLink(false);
      setTimeout(open, (retry = Math.min(retry * 2, 5000)));
    };
  };
  open();
  return () => {
    stopped = true;
    ws?.close(1000);
  };
}
