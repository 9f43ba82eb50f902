// A fan-out load written on Node `ws`, so bench/relay.sh measures each relay with a
// client no one here wrote as well as with `wsgate bench fanout`: SUBS subscribers and
// one publisher on URL (one room), the publisher sends N messages of 64 bytes as fast
// as its socket takes them, every subscriber must receive all N, in order. Prints one
// JSON line: deliveries, seconds (first publish to last delivery), deliveries/s, lost
// and out-of-order counts.
// Usage: node fanout.js URL [SUBS=1000] [N=2000] [TIMEOUT_S=60]
const WebSocket = require('ws');

const [url, subs = 1000, n = 2000, timeoutS = 60] = [
  process.argv[2],
  ...process.argv.slice(3).map(Number),
];
const pad = 'x'.repeat(64);
const payload = (i) => (String(i).padStart(8, '0') + pad).slice(0, 64);

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function main() {
  const counts = new Array(subs).fill(0);
  let disordered = 0;
  let remaining = subs * n;
  let start = 0;
  let done;
  const finished = new Promise((r) => { done = r; });
  const members = [];
  // Connected a few at a time, as a crowd of real clients would arrive.
  for (let i = 0; i < subs; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, subs - i) }, open));
    members.push(...batch);
  }
  members.forEach((ws, k) => {
    ws.on('message', (data) => {
      const seq = Number(data.toString('latin1', 0, 8));
      if (seq !== counts[k]) disordered++;
      counts[k]++;
      if (--remaining === 0) done(process.hrtime.bigint());
    });
  });
  const publisher = await open();
  // The publisher's own echo (the relays' default) is not counted.
  publisher.on('message', () => {});
  start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    publisher.send(payload(i));
    // Bounded like a well-behaved client: wait while 1 MiB is unsent.
    while (publisher.bufferedAmount > 1 << 20) await new Promise((r) => setImmediate(r));
  }
  const timer = setTimeout(() => done(null), timeoutS * 1000);
  const end = await finished;
  clearTimeout(timer);
  const delivered = subs * n - remaining;
  const seconds = Number((end ?? process.hrtime.bigint()) - start) / 1e9;
  console.log(JSON.stringify({
    client: 'node-ws', subscribers: subs, messages: n, deliveries: delivered, seconds,
    per_sec: delivered / seconds, lost: remaining, disordered,
  }));
  for (const ws of members) ws.terminate();
  publisher.terminate();
  process.exit(remaining === 0 && disordered === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(2); });
