// The dashboard's speed (issue 13), in Debian's Chromium driven by playwright-core,
// against a gateway bench/dashboard.sh started:
//
//   node bench/dashboard.mjs CONTROL_URL PROXY_WS_URL BIG_SESSION_ID BIG_MESSAGES HELD
//
//   1. a stored session of 100 000 messages: time from opening its view to its first
//      page shown (target < 1 s), and to every message loaded;
//   2. the live table with the sessions bench/dashboard.sh holds open (1 000): time
//      until all are listed, and the page's main thread busy with them while one
//      session receives 200 messages/s (target < 0.5);
//   3. a session receiving 200 messages/s (a client sending 100/s to the echo
//      upstream) watched for 10 s: messages missing from the log once it stops
//      (target 0), and the share of the page's main thread busy (CDP's TaskDuration
//      over the wall time; target < 0.5), with the 1 000 sessions still open.
//
// Prints each figure with PASS/FAIL; exits 1 if a target is missed.

import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/interop/node/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const WebSocket = require('ws');

const [control, proxyWs, bigId, bigMessages, heldArg] = process.argv.slice(2);
const held = Number(heldArg ?? 1000);
let failed = false;
const verdict = (ok) => {
  if (!ok) failed = true;
  return ok ? 'PASS' : 'FAIL';
};

const browser = await chromium.launch({
  executablePath: process.env.WSGATE_TEST_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(60_000);

// 1. The stored session of 100 000 messages.
let t0 = performance.now();
await page.goto(`${control}/#/session/${bigId}`);
await page.locator('.msg').first().waitFor();
const firstPage = performance.now() - t0;
await page.getByText(new RegExp(`^${bigMessages} messages loaded$`)).waitFor({ timeout: 120_000 });
const allLoaded = performance.now() - t0;
console.log(`stored session of ${bigMessages} messages: first page shown in ${firstPage.toFixed(0)} ms (target < 1000) ${verdict(firstPage < 1000)}; all loaded in ${(allLoaded / 1000).toFixed(1)} s`);

const cdp = await page.context().newCDPSession(page);
await cdp.send('Performance.enable');
const busy = async () => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration').value;
/** The share of the page's main thread busy over the next `ms`. */
const busyShare = async (ms) => {
  const b0 = await busy();
  const w0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  return (await busy() - b0) / ((performance.now() - w0) / 1000);
};

// 2. The live table, then the same with one session at 200 messages/s.
t0 = performance.now();
await page.goto(`${control}/#/sessions`);
await page.getByText(new RegExp(`^${held} active`)).waitFor();
console.log(`live table: ${held} sessions listed in ${(performance.now() - t0).toFixed(0)} ms`);
const client = new WebSocket(`${proxyWs}/rate`);
await new Promise((r, j) => { client.on('open', r); client.on('error', j); });
let sent = 0;
const sender = setInterval(() => { for (let i = 0; i < 10; i++) client.send(`m${sent++}`); }, 100);
const row = page.locator('tbody tr', { hasText: '/rate' });
await row.waitFor();
const tableShare = await busyShare(5_000);
console.log(`live table of ${held + 1} sessions, one at 200 msgs/s, for 5 s: main thread busy ${(tableShare * 100).toFixed(1)}% (target < 50%) ${verdict(tableShare < 0.5)}`);

// 3. That session's view.
await row.getByRole('link').click();
await page.locator('.msg').first().waitFor();
const share = await busyShare(10_000);
clearInterval(sender);
// Every message sent, and its echo, ends up in the log.
const want = sent * 2;
const loaded = page.getByText(new RegExp(`^${want} messages loaded$`));
let lost = 0;
try {
  await loaded.waitFor({ timeout: 10_000 });
} catch {
  const shown = await page.locator('.log-pane .toolbar [role=status]').textContent();
  lost = want - Number(shown.match(/^(\d+)/)?.[1] ?? 0);
}
console.log(`session view at 200 msgs/s for 10 s: main thread busy ${(share * 100).toFixed(1)}% (target < 50%) ${verdict(share < 0.5)}; ${want} messages, ${lost} missing from the log (target 0) ${verdict(lost === 0)}`);
client.close();
await browser.close();
process.exit(failed ? 1 : 0);
