// A message's payload as the session view shows it: JSON as a collapsible tree,
// other text as text, binary as a hex dump and base64. Built with text nodes only.

import { h } from './dom.js';

/** The payload of a message (a /messages row or a live event) as bytes. */
export function payloadBytes(m) {
  if (m.base64 != null) return Uint8Array.from(atob(m.base64), (c) => c.charCodeAt(0));
  return new TextEncoder().encode(m.text ?? '');
}

/** The payload's view: JSON tree, text, or hex + base64. */
export function payloadView(m) {
  if (m.text != null) {
    const json = parseJson(m.text);
    if (json !== undefined) return h('div', { class: 'json', role: 'tree', 'aria-label': 'JSON payload' }, tree(json, null, 0));
    return h('pre', { class: 'text' }, m.text);
  }
  const b = payloadBytes(m);
  return h(
    'div',
    {},
    h('h3', {}, `Hex (${b.length} bytes)`),
    h('pre', { class: 'hex' }, hexDump(b)),
    h('h3', {}, 'Base64'),
    h('pre', { class: 'text' }, m.base64 ?? ''),
  );
}

function parseJson(text) {
  const t = text.trimStart();
  if (!t.startsWith('{') && !t.startsWith('[')) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A JSON value: objects and arrays as <details> (open near the top), scalars inline. */
function tree(value, key, depth) {
  const label = key === null ? [] : [h('span', { class: 'key' }, JSON.stringify(key)), ': '];
  if (value !== null && typeof value === 'object') {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const [open, close] = Array.isArray(value) ? ['[', ']'] : ['{', '}'];
    const summary = `${open}${entries.length ? '…' : ''}${close} ${entries.length} ${Array.isArray(value) ? 'items' : 'keys'}`;
    return h(
      'details',
      { open: depth < 3, role: 'treeitem' },
      h('summary', {}, ...label, summary),
      h('div', { class: 'children', role: 'group' }, entries.map(([k, v]) => tree(v, k, depth + 1))),
    );
  }
  return h('div', { class: 'leaf', role: 'treeitem' }, ...label, h('span', { class: `v ${typeof value}` }, JSON.stringify(value)));
}

/** 16 bytes a line: offset, hex, and the printable ASCII. */
export function hexDump(b) {
  const lines = [];
  for (let i = 0; i < b.length; i += 16) {
    const row = b.subarray(i, i + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${i.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

/** One line of a payload for the log's list: text as is, binary as its size. */
export function preview(m) {
  if (m.opcode === 'close') return m.close_code != null ? `close ${m.close_code} ${m.close_reason ?? ''}` : 'close';
  if (m.text != null) return m.text.length > 200 ? `${m.text.slice(0, 200)}…` : m.text;
  if (m.base64 != null) return `binary, ${m.size} bytes`;
  return '';
}
