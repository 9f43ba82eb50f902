// The interop scenario (README.md) with the Node `ws` client.

import { STEP_MS, TEXT, Inbox, args, hex, pattern, range256, require, runMain, sameBytes, within } from './common.mjs';

const WebSocket = require('ws');

function describe(data, isBinary) {
  return isBinary ? { kind: 'binary', hex: hex(data) } : { kind: 'text', value: data.toString('utf8') };
}

runMain(async () => {
  const { mode, url, name, protocol } = args();
  const report = { client: name, offered: protocol };
  const inbox = new Inbox();
  // maxPayload 0: no limit (its default, 100 MiB, would do; the scenario should not
  // depend on it).
  const ws = new WebSocket(url, protocol ? [protocol] : [], { maxPayload: 0, handshakeTimeout: STEP_MS });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  ws.on('message', (data, isBinary) => inbox.push({ data, isBinary }));
  ws.on('error', (e) => inbox.push({ error: e }));
  await within(STEP_MS, 'open', new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }));
  report.subprotocol = ws.protocol;
  const next = async (what) => {
    const m = await inbox.next(what);
    if (m.error) throw m.error;
    return m;
  };
  if (mode === 'live' || mode === 'master') {
    const m = await next('the first message');
    report.first = describe(m.data, m.isBinary);
    // master: the first `message` event after the status (connection events skipped).
    while (mode === 'master' && !report.event) {
      const e = await next('a message event');
      if (!e.isBinary && JSON.parse(e.data.toString('utf8')).type === 'message') report.event = describe(e.data, false);
    }
  } else {
    ws.send(TEXT);
    let m = await next('the text echo');
    report.text = describe(m.data, m.isBinary);
    ws.send(range256());
    m = await next('the binary echo');
    report.binary = describe(m.data, m.isBinary);
    const big = pattern(1 << 20);
    ws.send(big);
    m = await next('the 1 MiB echo');
    report.big = m.isBinary
      ? { kind: 'binary', len: m.data.length, intact: sameBytes(m.data, big) }
      : describe(m.data, m.isBinary);
  }
  ws.close(4001, `bye ${name}`);
  // For a close we started, 'close' carries the code and reason of the server's answer
  // (1006 when none came).
  report.close = await within(STEP_MS, 'the close answer', closed);
  return report;
});
