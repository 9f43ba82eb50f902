// Small DOM and formatting helpers. Everything from the network reaches the page
// through text nodes (`h` never parses HTML), so a payload cannot become markup.

/** An element: `h('td', { class: 'n' }, 'text', child)`. Attributes starting with
 * `on` are listeners; `null`/`false` attributes and children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/** How long ago `iso` was, roughly: "5 s", "3 min", "2 h", "4 d". */
export function age(iso, now = Date.now()) {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** A time of day with milliseconds, in the browser's zone. */
export function clock(iso) {
  const d = new Date(iso);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A state badge, its text the state itself (colour is never the only cue). */
export function badge(state) {
  return h('span', { class: `badge ${String(state).toLowerCase()}` }, state);
}

/** Directions that flow toward wsgate's upstream side (counted as "in"). */
export function inbound(direction) {
  return direction === 'client_to_upstream' || direction === 'client_to_gateway';
}

export const ARROWS = {
  client_to_upstream: '→',
  upstream_to_client: '←',
  client_to_gateway: '→',
  gateway_to_client: '←',
};
