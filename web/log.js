// A session's message log: a virtualised list (only the rows in view exist in the
// DOM, so 100 000 messages scroll like 100), a search over the loaded messages,
// follow / pause, and a detail panel for the selected message.

import { ARROWS, clock, h } from './dom.js';
import { payloadView, preview } from './payload.js';

const ROW = 28; // px, fixed: what makes the list cheap to virtualise
const OVERSCAN = 10;

export class MessageLog {
  /** The rows in the DOM, by position in the list: a frame adds the rows that came
   * into view and removes those that left, rather than building them all again. */
  #rendered = new Map();
  #frame = 0;

  constructor() {
    this.messages = []; // in seq order
    this.view = null; // indexes into messages when searching, else null (all)
    this.selected = -1;
    this.follow = true;
    this.spacer = h('div', { class: 'spacer' });
    this.viewport = h(
      'div',
      { class: 'log', role: 'list', 'aria-label': 'Messages', tabindex: 0, onscroll: () => this.#draw() },
      this.spacer,
    );
    this.viewport.addEventListener('keydown', (e) => this.#key(e));
    this.detail = h('section', { class: 'detail', 'aria-label': 'Selected message', tabindex: 0 }, h('p', { class: 'muted' }, 'Select a message to see it whole.'));
    this.status = h('span', { class: 'muted', role: 'status', 'aria-live': 'polite' });
    const search = h('input', {
      type: 'search',
      name: 'search',
      placeholder: 'text in loaded messages',
      oninput: (e) => this.search(e.target.value),
    });
    const follow = h('input', {
      type: 'checkbox',
      name: 'follow',
      checked: true,
      onchange: (e) => {
        this.follow = e.target.checked;
        if (this.follow) this.#toEnd();
      },
    });
    this.toolbar = h(
      'div',
      { class: 'toolbar' },
      h('label', {}, 'Search ', search),
      h('label', {}, follow, ' Follow new messages'),
      this.status,
    );
    this.element = h('div', { class: 'log-pane' }, this.toolbar, this.viewport, this.detail);
    this.#resize();
  }

  /** Appends messages (seq order, after those held): rows of `/messages` or live
   * events, which name a few fields differently. */
  append(list) {
    if (!list.length) return;
    const start = this.messages.length;
    this.messages.push(...list.map(normalize));
    if (this.view && this.query) {
      list.forEach((m, i) => {
        if (matches(m, this.query)) this.view.push(start + i);
      });
    }
    this.#schedule();
  }

  /** Messages arrive one by one from the live stream: the list is brought up to date
   * once per animation frame, however many came. */
  #schedule() {
    if (this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#resize();
      if (this.follow) this.viewport.scrollTop = this.viewport.scrollHeight;
      this.#draw();
    });
  }

  get last() {
    return this.messages.at(-1)?.seq ?? 0;
  }

  search(q) {
    this.query = q.trim().toLowerCase();
    this.view = this.query ? this.messages.flatMap((m, i) => (matches(m, this.query) ? [i] : [])) : null;
    this.#resize();
    this.#redraw();
  }

  #count() {
    return this.view ? this.view.length : this.messages.length;
  }

  #at(i) {
    return this.view ? this.view[i] : i;
  }

  #resize() {
    this.spacer.style.height = `${this.#count() * ROW}px`;
    const n = this.messages.length;
    this.status.textContent = this.view ? `${this.view.length} of ${n} loaded messages match` : `${n} messages loaded`;
  }

  #toEnd() {
    this.viewport.scrollTop = this.viewport.scrollHeight;
    this.#draw();
  }

  /** Every row built again: what they show changed (search, selection). */
  #redraw() {
    this.#rendered.clear();
    this.spacer.replaceChildren();
    this.#draw();
  }

  #draw() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.#count(), Math.ceil((top + height) / ROW) + OVERSCAN);
    for (const [i, el] of this.#rendered) {
      if (i < first || i >= last) {
        el.remove();
        this.#rendered.delete(i);
      }
    }
    let before = false; // a new row goes above one already there
    const highest = Math.max(-1, ...this.#rendered.keys());
    for (let i = first; i < last; i++) {
      if (this.#rendered.has(i)) continue;
      const el = this.#row(i);
      this.#rendered.set(i, el);
      if (i < highest) before = true;
      this.spacer.append(el);
    }
    // Kept in list order in the DOM too, for screen readers (moved, not rebuilt).
    if (before) this.spacer.replaceChildren(...[...this.#rendered].sort((a, b) => a[0] - b[0]).map(([, el]) => el));
  }

  #row(i) {
    const idx = this.#at(i);
    const m = this.messages[idx];
    const marks = [m.injected && 'injected', ...(m.marks ?? []), m.truncated && 'truncated'].filter(Boolean);
    const b = h(
      'button',
      {
        type: 'button',
        class: `msg ${m.direction}${idx === this.selected ? ' selected' : ''}`,
        'aria-pressed': idx === this.selected,
        onclick: () => this.select(idx),
      },
      h('span', { class: 'seq' }, `#${m.seq}`),
      h('span', { class: 'arrow', title: m.direction, 'aria-label': m.direction.replaceAll('_', ' ') }, ARROWS[m.direction] ?? '?'),
      h('span', { class: 'op' }, m.opcode),
      h('span', { class: 'size' }, `${m.size} B`),
      h('span', { class: 'time' }, m.at ? clock(m.at) : ''),
      marks.map((k) => h('span', { class: `mark ${k}` }, k)),
      h('span', { class: 'preview' }, preview(m)),
    );
    // Through the CSSOM: the page's CSP refuses style attributes.
    b.style.top = `${i * ROW}px`;
    return h('div', { role: 'listitem' }, b);
  }

  select(idx) {
    this.selected = idx;
    const m = this.messages[idx];
    const facts = [
      ['seq', m.seq],
      ['direction', m.direction],
      ['opcode', m.opcode],
      ['size', `${m.size} bytes`],
      ['time', m.at ?? ''],
      ['marks', [m.injected && 'injected', ...(m.marks ?? []), m.truncated && 'truncated (stored up to the cap)'].filter(Boolean).join(', ') || 'none'],
    ];
    if (m.close_code != null) facts.push(['close', `${m.close_code} ${m.close_reason ?? ''}`]);
    this.detail.replaceChildren(
      h('h2', {}, `Message #${m.seq}`),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
      payloadView(m),
    );
    this.#redraw();
  }

  #key(e) {
    if (!['ArrowDown', 'ArrowUp', 'End', 'Home'].includes(e.key) || !this.#count()) return;
    e.preventDefault();
    const pos = this.view ? this.view.indexOf(this.selected) : this.selected;
    let next = { ArrowDown: pos + 1, ArrowUp: pos - 1, Home: 0, End: this.#count() - 1 }[e.key];
    next = Math.max(0, Math.min(this.#count() - 1, next));
    this.select(this.#at(next));
    const y = next * ROW;
    if (y < this.viewport.scrollTop || y + ROW > this.viewport.scrollTop + this.viewport.clientHeight) {
      this.viewport.scrollTop = y - this.viewport.clientHeight / 2;
    }
  }
}

/** One shape for both sources: a stored row (the transcript's line: `dir`, `type`,
 * `code`/`reason`) and a live event (`direction`, `opcode` by name,
 * `close_code`/`close_reason`). */
function normalize(m) {
  return {
    seq: m.seq,
    direction: m.direction ?? m.dir,
    opcode: typeof m.opcode === 'string' ? m.opcode : (m.type ?? String(m.opcode)),
    size: m.size,
    at: m.at,
    text: m.text,
    base64: m.base64,
    injected: Boolean(m.injected),
    truncated: Boolean(m.truncated),
    marks: m.marks ?? [],
    close_code: m.close_code ?? m.code,
    close_reason: m.close_reason ?? m.reason,
  };
}

function matches(m, q) {
  return (m.text ?? '').toLowerCase().includes(q) || String(m.seq) === q;
}
