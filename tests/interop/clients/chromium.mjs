// The interop scenario (README.md) with Chromium's own `WebSocket`: playwright-core
// starts the Debian chromium headless with a fresh profile (chromium_page.mjs), and the
// scenario runs inside a page through page.evaluate, so every frame is the browser's.

import { STEP_MS, TEXT, args, runMain } from './common.mjs';
import { withPage } from './chromium_page.mjs';

// Runs in the page: it may only use what a web page has, and gets its inputs as one
// serialisable argument.
async function scenario({ mode, url, name, protocol, text, stepMs }) {
  const within = (what, promise) =>
    Promise.race([
      promise,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), stepMs)),
    ]);
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
  const describe = (d) => (typeof d === 'string' ? { kind: 'text', value: d } : { kind: 'binary', hex: hex(d) });
  const queue = [];
  const waiters = [];
  const next = (what) =>
    within(what, queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));

  const report = { client: name, offered: protocol };
  const ws = protocol ? new WebSocket(url, [protocol]) : new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const closed = new Promise((r) => ws.addEventListener('close', (e) => r({ code: e.code, reason: e.reason })));
  ws.addEventListener('message', (e) => (waiters.length ? waiters.shift()(e.data) : queue.push(e.data)));
  await within('open', new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', () => closed.then((c) => reject(new Error(`connection failed: ${JSON.stringify(c)}`))), { once: true });
  }));
  report.subprotocol = ws.protocol;
  if (mode === 'live') {
    report.first = describe(await next('the first message'));
  } else {
    ws.send(text);
    report.text = describe(await next('the text echo'));
    ws.send(Uint8Array.from({ length: 256 }, (_, i) => i));
    report.binary = describe(await next('the binary echo'));
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (7 * i + 13 * (i >> 8) + 17 * (i >> 16)) & 0xff;
    ws.send(big);
    const m = await next('the 1 MiB echo');
    if (typeof m === 'string') {
      report.big = describe(m);
    } else {
      const got = new Uint8Array(m);
      report.big = { kind: 'binary', len: got.length, intact: got.length === big.length && got.every((b, i) => b === big[i]) };
    }
  }
  ws.close(4001, `bye ${name}`);
  // The close event reports the first close frame received: the server's answer.
  report.close = await within('the close answer', closed);
  return report;
}

runMain(async () => {
  const a = args();
  // The control plane refuses WebSockets from pages on other origins (docs/security.md),
  // so `/api/live` is opened from a page it serves itself, as its own dashboard would be.
  // The echo cells keep about:blank: a proxied or mock server checks no origin.
  const page = a.mode === 'live' ? new URL('/healthz', a.url.replace(/^ws/, 'http')).href : 'about:blank';
  return await withPage(page, (p) => p.evaluate(scenario, { ...a, text: TEXT, stepMs: STEP_MS }));
});
