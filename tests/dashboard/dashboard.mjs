// The dashboard end to end, in Debian's Chromium driven by playwright-core, against
// a real gateway proxying to a real echo upstream, with a real client (Node's `ws`):
//
//   node dashboard.mjs live|history|intercept CONTROL_URL PROXY_WS_URL ECHO_URL SCREENSHOT_DIR [TOKEN]
//
// With TOKEN (the gateway runs with --admin-token), a wrong token is tried first and
// must be refused with a message, then the right one. `live`: a client connects and
// must appear in the live table; its message must show in the session view's log; an
// inject typed into the dashboard must reach the client; a close from the dashboard
// must close the client with the chosen code; then the Connect view opens an outbound
// connection to ECHO_URL, sends through it and sees the echo. `history` (after the
// gateway restarted on the same store): that client's session is found in History
// and opens with its whole log and lifecycle. `intercept`: a breakpoint added in the
// Intercept view holds a real client's message; a second client's session flows
// meanwhile; the held frame, edited in the page and forwarded, reaches the echo
// upstream as edited (its echo comes back so), and the client's next message,
// queued behind it, follows it. axe-core checks each view; each view is saved as a
// screenshot. Prints one JSON report line (the Rust test judges it).

import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Inbox, STEP_MS, require, runMain, within } from '../interop/clients/common.mjs';

const { chromium } = require('playwright-core');
const WebSocket = require('ws');

const CHROMIUM = process.env.WSGATE_TEST_CHROMIUM ?? '/usr/bin/chromium';

async function axe(page, axeSource) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
}

async function main() {
  const [mode, control, proxyWs, echoUrl, shots, token] = process.argv.slice(2);
  if (!['live', 'history', 'intercept'].includes(mode) || !shots) {
    throw new Error('usage: live|history|intercept CONTROL_URL PROXY_WS_URL ECHO_URL SCREENSHOT_DIR [TOKEN]');
  }
  await mkdir(shots, { recursive: true });
  const axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  const report = { consoleErrors: [], failedResponses: [], axe: {} };
  const profile = await mkdtemp(join(tmpdir(), 'wsgate-dashboard-'));
  let context;
  let client;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
      timeout: STEP_MS,
      viewport: { width: 1280, height: 900 },
    });
    context.setDefaultTimeout(STEP_MS);
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      // The browser logs every failed response as an error of its own; the 401s of
      // the token prompt are expected there, and reported apart.
      if (m.text().startsWith('Failed to load resource')) report.failedResponses.push(m.text());
      else report.consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => report.consoleErrors.push(String(e)));
    await page.goto(`${control}/${{ history: '#/history', intercept: '#/intercept' }[mode] ?? ''}`);

    if (token) {
      const dialog = page.getByRole('dialog', { name: 'Admin token' });
      await dialog.waitFor();
      await dialog.getByLabel('Token').fill(`${token}-wrong`);
      await dialog.getByRole('button', { name: 'Use token' }).click();
      const error = dialog.locator('#token-error');
      await error.filter({ hasText: 'refused' }).waitFor();
      report.wrongToken = await error.textContent();
      await page.screenshot({ path: join(shots, 'token.png') });
      await dialog.getByLabel('Token').fill(token);
      await dialog.getByRole('button', { name: 'Use token' }).click();
      await dialog.waitFor({ state: 'hidden' });
      report.tokenInUrl = page.url().includes(token);
    }
    if (mode === 'history') return await history(page, shots, axeSource, report);
    if (mode === 'intercept') return await intercept(page, proxyWs, shots, axeSource, report);

    // A real client connects through the proxy: its row appears, live.
    const inbox = new Inbox();
    client = new WebSocket(`${proxyWs}/chat?room=dash`);
    client.on('message', (data, binary) => inbox.push({ data: binary ? data : data.toString() }));
    const closed = new Promise((resolve) => client.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await within(STEP_MS, 'the client connects', new Promise((r, j) => { client.on('open', r); client.on('error', j); }));
    const row = page.locator('tbody tr', { hasText: '/chat?room=dash' });
    await row.locator('.badge', { hasText: /^CONNECTED$/ }).waitFor();
    report.rowAppeared = true;
    client.send('hello from a real client');
    const echo = await inbox.next('the echo');
    report.echo = echo.data;
    await row.locator('td.n').first().filter({ hasText: /^[1-9]/ }).waitFor();
    await page.screenshot({ path: join(shots, 'sessions.png'), fullPage: true });
    report.axe.sessions = await axe(page, axeSource);

    // Its session view shows the message in the log.
    await row.getByRole('link').click();
    await page.getByRole('heading', { name: /^Session / }).waitFor();
    const log = page.getByRole('list', { name: 'Messages' });
    await log.getByText('hello from a real client').first().waitFor();
    report.messageInLog = true;
    // One sent while the view is open arrives through the live stream.
    client.send('a second message, live');
    report.echo2 = (await inbox.next('the second echo')).data;
    await log.getByText('a second message, live').first().waitFor();
    report.liveMessageInLog = true;
    await log.getByText('hello from a real client').first().click();
    await page.getByRole('heading', { name: /^Message #/ }).waitFor();

    // An inject typed into the dashboard reaches the real client.
    const inject = page.getByRole('form', { name: 'Inject' });
    await inject.getByLabel('Message').fill('{"from":"the dashboard"}');
    await inject.getByLabel('As').selectOption('json');
    await inject.getByRole('button', { name: 'Inject' }).click();
    const injected = await inbox.next('the injected message');
    report.injectReceived = injected.data;
    await inject.getByText('Sent to the client.').waitFor();
    await log.getByText('{"from":"the dashboard"}').first().waitFor();
    await page.screenshot({ path: join(shots, 'session.png'), fullPage: true });
    report.axe.session = await axe(page, axeSource);

    // Closing from the dashboard closes the real client with the chosen code.
    const close = page.getByRole('form', { name: 'Close' });
    await close.getByLabel('Code').fill('4321');
    await close.getByLabel('Reason').fill('closed from the dashboard');
    await close.getByRole('button', { name: 'Close session' }).click();
    report.clientClose = await within(STEP_MS, 'the client is closed', closed);
    await page.locator('.timeline .badge', { hasText: 'DISCONNECTED' }).waitFor();
    report.timelineShowsEnd = true;

    // Connect: an outbound session to a real echo server, a message sent through
    // it and its echo, both in the log.
    await page.getByRole('link', { name: 'Connect' }).click();
    const connect = page.getByRole('form', { name: 'New connection' });
    await connect.getByLabel('URL').fill(`${echoUrl}/from-dashboard`);
    await connect.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('button', { name: `Use ${echoUrl}/from-dashboard` }).waitFor();
    await page.screenshot({ path: join(shots, 'connect.png'), fullPage: true });
    report.axe.connect = await axe(page, axeSource);
    await connect.getByRole('button', { name: 'Connect' }).click();
    await page.locator('dl.facts .badge', { hasText: /^CONNECTED$/ }).waitFor();
    const send = page.getByRole('form', { name: 'Inject' });
    report.outboundSides = await send.getByLabel('To').locator('option').allTextContents();
    await send.getByLabel('Message').fill('through an outbound session');
    await send.getByRole('button', { name: 'Inject' }).click();
    const outLog = page.getByRole('list', { name: 'Messages' });
    await outLog.locator('.msg.upstream_to_client', { hasText: 'through an outbound session' }).waitFor();
    report.outboundEcho = true;
    const outClose = page.getByRole('form', { name: 'Close' });
    await outClose.getByRole('button', { name: 'Close session' }).click();
    await page.locator('.timeline .badge', { hasText: 'DISCONNECTED' }).waitFor();
    report.outboundClosed = true;

    // Overview: rates from /metrics, the route table.
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('region', { name: 'Messages/s' }).waitFor();
    const routeRow = page.locator('tbody tr', { hasText: 'default' });
    await routeRow.getByText('proxy').waitFor();
    report.overviewRoute = await routeRow.locator('td').allTextContents();
    await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });
    report.axe.overview = await axe(page, axeSource);
    await page.goBack();
    await page.getByRole('heading', { name: /^Session / }).waitFor();

    // Narrow and dark: still usable.
    await page.setViewportSize({ width: 400, height: 800 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(shots, 'session-400-dark.png'), fullPage: true });
    report.axe.sessionNarrowDark = await axe(page, axeSource);
    return report;
  } finally {
    client?.terminate();
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}

// History after a restart: the live scenario's client session, found by its path,
// opens with its log and its end.
async function history(page, shots, axeSource, report) {
  const filters = page.getByRole('search', { name: 'Filter history' });
  await filters.getByLabel('Path starts with').fill('/chat?room=dash');
  await filters.getByRole('button', { name: 'Show' }).click();
  // The filtered page is in (the first, unfiltered one may have been shown before).
  await page.locator('table[aria-busy="false"]').waitFor();
  const row = page.locator('tbody tr', { hasText: '/chat?room=dash' });
  await row.locator('.badge', { hasText: 'DISCONNECTED' }).waitFor();
  report.historyRows = await page.locator('tbody tr').count();
  await page.screenshot({ path: join(shots, 'history.png'), fullPage: true });
  report.axe.history = await axe(page, axeSource);
  await row.getByRole('link').click();
  const log = page.getByRole('list', { name: 'Messages' });
  await log.getByText('hello from a real client').first().waitFor();
  await log.getByText('{"from":"the dashboard"}').first().waitFor();
  report.historyLog = await log.locator('.msg').count();
  report.historyEnd = await page.locator('.timeline li').last().textContent();
  await page.screenshot({ path: join(shots, 'history-session.png'), fullPage: true });
  return report;
}

// A client of the proxy route (Node's `ws`): its messages in an Inbox, once open.
async function wsClient(url, what) {
  const inbox = new Inbox();
  const ws = new WebSocket(url);
  ws.on('message', (data, binary) => inbox.push(binary ? data : data.toString()));
  await within(STEP_MS, what, new Promise((r, j) => { ws.on('open', r); ws.on('error', j); }));
  return { ws, inbox };
}

// Intercept: a breakpoint from the form holds client A's message; B flows meanwhile;
// the frame edited in the page and forwarded is what the echo upstream got.
async function intercept(page, proxyWs, shots, axeSource, report) {
  let a;
  let b;
  try {
    await page.getByRole('heading', { name: 'Intercept', level: 1 }).waitFor();
    const form = page.getByRole('form', { name: 'Add a breakpoint' });
    // The route list comes from /api/routes: the proxy route is offered.
    await form.getByLabel('Route').locator('option[value="default"]').waitFor({ state: 'attached' });
    report.interceptRoutes = await form.getByLabel('Route').locator('option').allTextContents();
    await form.getByLabel('Route').selectOption('default');
    await form.getByLabel('Direction').selectOption('client_to_upstream');
    await form.getByLabel('Match', { exact: true }).fill('hold-me');
    // Equals without a JSONPath is refused with a message, before any request.
    await form.getByLabel('Equals (optional, JSON)').fill('"x"');
    await form.getByRole('button', { name: 'Add breakpoint' }).click();
    report.equalsWithoutPath = await form.getByRole('status').filter({ hasText: 'JSONPath' }).textContent();
    await form.getByLabel('Equals (optional, JSON)').fill('');
    await form.getByRole('button', { name: 'Add breakpoint' }).click();
    await form.getByRole('status').filter({ hasText: /^Breakpoint #\d+ added on default\.$/ }).waitFor();
    const bpRow = page.locator('table.breakpoints tbody tr', { hasText: 'hold-me' });
    await bpRow.waitFor();
    report.breakpointRow = await bpRow.locator('td').allTextContents();

    // Two real clients; A's "hold-me" message is held.
    const ca = await wsClient(`${proxyWs}/intercept/a`, 'client A connects');
    a = ca.ws;
    const cb = await wsClient(`${proxyWs}/intercept/b`, 'client B connects');
    b = cb.ws;
    a.send('hold-me please');
    const frame = page.locator('.held-frame');
    const payload = frame.getByLabel('Payload (text)');
    await payload.waitFor();
    report.heldPayload = await payload.inputValue();
    report.heldHeading = await frame.getByRole('heading').textContent();
    report.heldCountdown = await frame.locator('.countdown').textContent();
    const session = await frame.getByRole('link', { name: /^Session / }).getAttribute('href');
    report.sessionA = session.replace('#/session/', '');
    // A's next message queues behind the held one (same session, same direction).
    a.send('after the held one');
    // B's session flows meanwhile: its echo comes back while A's frame is held.
    b.send('B is not held');
    report.echoB = await cb.inbox.next('the echo of B');

    // Edited in the page. The view reads the API every second (and counts down on the
    // same tick): the edit must survive those reads, checked after two ticks.
    await payload.fill('edited in the browser');
    for (let i = 0; i < 2; i++) {
      const shown = await frame.locator('.countdown').textContent();
      await page.waitForFunction((t) => document.querySelector('.held-frame .countdown')?.textContent !== t, shown);
    }
    report.editKept = await payload.inputValue();
    report.breakpointHits = await bpRow.locator('td.n').textContent();
    await page.screenshot({ path: join(shots, 'intercept.png'), fullPage: true });
    report.axe.intercept = await axe(page, axeSource);
    await page.setViewportSize({ width: 400, height: 800 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(shots, 'intercept-400-dark.png'), fullPage: true });
    report.axe.interceptNarrowDark = await axe(page, axeSource);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.emulateMedia({ colorScheme: 'light' });

    await frame.getByRole('button', { name: /^Forward/ }).click();
    const held = page.getByRole('region', { name: 'Held frames' });
    report.forwardStatus = await held.getByRole('status').filter({ hasText: 'forwarded as edited' }).textContent();
    // The echo upstream got the edited frame: its echo comes back as edited, and
    // then the message that waited behind it.
    report.echoesA = [await ca.inbox.next('the echo of the edited frame'), await ca.inbox.next('the echo of the queued message')];
    await held.getByText('Nothing held.').waitFor();
    report.heldGone = (await frame.count()) === 0;

    // Removing the breakpoint: its row goes.
    await bpRow.getByRole('button', { name: /^Remove/ }).click();
    await page.getByText('No breakpoints: every message flows.').waitFor();
    report.breakpointRemoved = (await bpRow.count()) === 0;
    a.send('hold-me again, not held now');
    report.echoAfterRemove = await ca.inbox.next('the echo once the breakpoint is gone');

    // The session view's log shows the frame with its marks.
    await page.evaluate((hash) => { location.hash = hash; }, session);
    const log = page.getByRole('list', { name: 'Messages' });
    const sent = log.locator('.msg.client_to_upstream', { hasText: 'edited in the browser' });
    try {
      await sent.locator('.mark', { hasText: 'held' }).waitFor();
    } catch (e) {
      const rows = await log.locator('.msg').allTextContents();
      const api = await page.evaluate(async (id) => (await fetch(`/api/sessions/${id}/messages`)).text(), report.sessionA);
      throw new Error(`${e.message}\nthe log's rows: ${JSON.stringify(rows)}\nthe store: ${api}`);
    }
    report.heldMarks = await sent.locator('.mark').allTextContents();
    await page.screenshot({ path: join(shots, 'intercept-session.png'), fullPage: true });
    return report;
  } finally {
    a?.terminate();
    b?.terminate();
  }
}

runMain(main);
