// What the Node programs share: argument parsing, the scenario's payloads, the
// module resolver for tests/interop/node, and the bounded waits.

import { createRequire } from 'node:module';

// Packages live in tests/interop/node/node_modules (installed by scripts/interop-setup),
// not next to these files: resolve them from there, whatever the working directory.
export const require = createRequire(new URL('../node/package.json', import.meta.url));

export const TEXT = 'héllo ✓';
export const STEP_MS = 15_000; // one step
export const TOTAL_MS = 45_000; // the whole run (the Rust test allows a little more)

export function args() {
  const [mode, url, name, protocol] = process.argv.slice(2);
  if (!['echo', 'live', 'master'].includes(mode)) throw new Error(`usage: echo|live|master URL NAME [PROTOCOL], got ${mode}`);
  return { mode, url, name, protocol: protocol ?? '' };
}

// The 1 MiB message: byte i is (7i + 13(i>>8) + 17(i>>16)) & 0xff (README.md).
export function pattern(n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (7 * i + 13 * (i >> 8) + 17 * (i >> 16)) & 0xff;
  return b;
}

export function range256() {
  return Uint8Array.from({ length: 256 }, (_, i) => i);
}

export function hex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function sameBytes(a, b) {
  return a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

export function within(ms, what, promise) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// Runs `main` under the overall deadline; prints its report as one JSON line, or the
// failure on stderr with a non-zero exit.
export function runMain(main) {
  within(TOTAL_MS, 'the whole scenario', main())
    .then((report) => {
      process.stdout.write(JSON.stringify(report) + '\n');
      process.exit(0);
    })
    .catch((e) => {
      process.stderr.write(`${e?.stack ?? e}\n`);
      process.exit(1);
    });
}

// A queue of incoming events, so a step can await "the next message" even if it
// arrived before the step started waiting.
export class Inbox {
  #items = [];
  #waiters = [];
  push(item) {
    const w = this.#waiters.shift();
    if (w) w(item);
    else this.#items.push(item);
  }
  next(what) {
    if (this.#items.length) return Promise.resolve(this.#items.shift());
    return within(STEP_MS, what, new Promise((resolve) => this.#waiters.push(resolve)));
  }
}
