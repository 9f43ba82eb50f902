// The interop scenario (README.md) with the WHATWG `WebSocket` of the `undici` package
// (the implementation Node's own global WebSocket is built from).

import { STEP_MS, TEXT, Inbox, args, hex, pattern, range256, require, runMain, sameBytes, within } from './common.mjs';

const { WebSocket } = require('undici');

function describe(data) {
  return typeof data === 'string' ? { kind: 'text', value: data } : { kind: 'binary', hex: hex(new Uint8Array(data)) };
}

runMain(async () => {
  const { mode, url, name, protocol } = args();
  const report = { client: name, offered: protocol };
  const inbox = new Inbox();
  const ws = protocol ? new WebSocket(url, [protocol]) : new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const closed = new Promise((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })));
  ws.addEventListener('message', (e) => inbox.push(e.data));
  await within(STEP_MS, 'open', new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    // undici's error event carries the reason in `error` (the WHATWG API has none);
    // a refused handshake fires no close event, so do not wait for one.
    ws.addEventListener('error', (e) => reject(new Error(`connection failed: ${e.error?.message ?? e.message ?? 'error event'}`)), { once: true });
  }));
  report.subprotocol = ws.protocol;
  if (mode === 'live') {
    report.first = describe(await inbox.next('the first message'));
  } else {
    ws.send(TEXT);
    report.text = describe(await inbox.next('the text echo'));
    ws.send(range256());
    report.binary = describe(await inbox.next('the binary echo'));
    const big = pattern(1 << 20);
    ws.send(big);
    const m = await inbox.next('the 1 MiB echo');
    report.big = typeof m === 'string'
      ? describe(m)
      : { kind: 'binary', len: m.byteLength, intact: sameBytes(new Uint8Array(m), big) };
  }
  ws.close(4001, `bye ${name}`);
  // The close event's code and reason are those of the first close frame received:
  // the server's answer to ours (1006 when none came).
  report.close = await within(STEP_MS, 'the close answer', closed);
  return report;
});
