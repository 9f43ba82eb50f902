// A 20-line broadcast relay on Node `ws`, the baseline of bench/relay.sh: every message,
// text or binary, to every client connected on the same path, sender included (as the
// Go websocket-relay does). Prints its address once listening.
// Usage: node relay.js [PORT]   (0, the default, picks a free port)
const { WebSocketServer } = require('ws');
const rooms = new Map();
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0) });
wss.on('connection', (ws, req) => {
  const path = req.url;
  if (!rooms.has(path)) rooms.set(path, new Set());
  const room = rooms.get(path);
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const peer of room) if (peer.readyState === 1) peer.send(data, { binary: isBinary });
  });
  ws.on('close', () => { room.delete(ws); if (room.size === 0) rooms.delete(path); });
  ws.on('error', () => {});
});
wss.on('listening', () => console.log(`node relay: listening on 127.0.0.1:${wss.address().port}`));
