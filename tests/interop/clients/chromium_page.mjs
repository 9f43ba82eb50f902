// Chromium for the browser tests: playwright-core starts the Debian chromium headless
// with a fresh profile, opens one page at a URL, and hands it to a function.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { STEP_MS, require } from './common.mjs';

const { chromium } = require('playwright-core');

const CHROMIUM = process.env.WSGATE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  // Local Network Access: Chromium refuses a socket from a page it counts as public
  // (about:blank's opaque origin) to 127.0.0.1 with ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS
  // unless the user granted a permission, and a grant cannot name an opaque origin.
  // That is browser policy about the page, not about the server under test.
  '--disable-features=LocalNetworkAccessChecks',
];

// Runs `fn(page)` on a page at `url` and returns its result; the browser and its
// profile are gone afterwards.
export async function withPage(url, fn) {
  // A fresh profile per run (launchPersistentContext is playwright's way to pass one;
  // it refuses --user-data-dir in args), removed afterwards.
  const profile = await mkdtemp(join(tmpdir(), 'wsgate-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      timeout: STEP_MS,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    // The browser says why a WebSocket or a fetch failed only on its console.
    page.on('console', (m) => process.stderr.write(`chromium console: ${m.text()}\n`));
    await page.goto(url);
    return await fn(page);
  } finally {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}
