// A web page on one origin trying the control plane on another (docs/security.md):
// `node chromium_cross_origin.mjs PAGE_URL CONTROL_URL [TOKEN]` opens PAGE_URL in
// headless Chromium and, from that page, tries what a hostile (or invited) dashboard
// would: open `/api/live`, read `GET /api/sessions`, and (with a token) get a ticket
// with a preflighted `POST /api/live/ticket` and open `/api/live?ticket=`. Prints one
// JSON line saying what worked.

import { STEP_MS, runMain } from './common.mjs';
import { withPage } from './chromium_page.mjs';

async function probe({ control, token, stepMs }) {
  const within = (promise) =>
    Promise.race([promise, new Promise((r) => setTimeout(() => r({ outcome: 'timeout' }), stepMs))]);
  const live = (url) =>
    within(
      new Promise((resolve) => {
        const ws = new WebSocket(url);
        ws.addEventListener('message', (e) => {
          let type = null;
          try { type = JSON.parse(e.data).type; } catch {}
          ws.close(1000);
          resolve({ outcome: 'open', first: type });
        }, { once: true });
        ws.addEventListener('error', () => resolve({ outcome: 'error' }), { once: true });
      }),
    );
  const call = async (path, init) => {
    try {
      const res = await fetch(control + path, init);
      return { outcome: 'answered', status: res.status, body: await res.json() };
    } catch (e) {
      // A CORS refusal is a TypeError with no detail, by design.
      return { outcome: 'failed', error: String(e) };
    }
  };
  const wsBase = control.replace(/^http/, 'ws');
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  const report = { origin: location.origin };
  report.live = await live(`${wsBase}/api/live`);
  report.sessions = await call('/api/sessions', { headers: auth });
  if (token) {
    // Content-Type: application/json and Authorization make this a preflighted request.
    const t = await call('/api/live/ticket', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' } });
    report.ticket = { outcome: t.outcome, status: t.status };
    if (t.body?.ticket) report.live_ticket = await live(`${wsBase}/api/live?ticket=${encodeURIComponent(t.body.ticket)}`);
  }
  return report;
}

runMain(async () => {
  const [page, control, token] = process.argv.slice(2);
  if (!page || !control) throw new Error('usage: PAGE_URL CONTROL_URL [TOKEN]');
  return await withPage(page, (p) => p.evaluate(probe, { control, token: token ?? '', stepMs: STEP_MS }));
});
