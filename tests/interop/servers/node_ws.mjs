// Echo server on Node `ws` for wsgate's client-role interop tests
// (crates/wsgate/tests/it/interop_servers.rs, docs/interop.md).
//
// Same stdout protocol as py_websockets.py: JSON lines `ready` (with the port), then
// per connection `open`, `message`, `close`, `end`. Echoes text as text and binary as
// binary; `ws` answers a close frame with the same code and reason itself.
//
// `ws` is installed in tests/interop/node/node_modules (scripts/interop-setup), which
// is not on this file's module search path: resolve it from there.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { WebSocketServer } = require('ws');

const KNOWN = ['wsgate.v1', 'wsgate.v2'];
const SHOWN = 1024;
let conns = 0;

const report = (fields) => process.stdout.write(JSON.stringify(fields) + '\n');

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 8 << 20,
  // The first protocol the client offers that we know; false: none.
  handleProtocols: (offered) => [...offered].find((p) => KNOWN.includes(p)) ?? false,
});

server.on('listening', () => report({ event: 'ready', port: server.address().port }));

server.on('connection', (ws, req) => {
  const conn = ++conns;
  report({ event: 'open', conn, path: req.url, subprotocol: ws.protocol || null });
  ws.on('message', (data, isBinary) => {
    const fields = { event: 'message', conn, type: isBinary ? 'binary' : 'text', size: data.length };
    if (data.length <= SHOWN) {
      if (isBinary) fields.hex = data.toString('hex');
      else fields.text = data.toString('utf8');
    }
    report(fields);
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => {
    // `code` is 1005 when the frame had none, 1006 when no close frame came at all.
    if (code !== 1006) report({ event: 'close', conn, code, reason: reason.toString('utf8') });
    report({ event: 'end', conn });
  });
  ws.on('error', (err) => report({ event: 'error', conn, message: String(err) }));
});
