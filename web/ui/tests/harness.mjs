// The browser tests' harness: Debian's chromium, headless, driven by playwright-core,
// with named checks that stop at the first failure (screenshot `failure.png` in the
// artifact dir), and non-blank screenshots. Used by browser.mjs and live.mjs.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Generous: CI runs this beside the rest of the suite on two cores.
const TIMEOUT = 30000;

/** Starts chromium; returns the context and its first page, and the check helpers bound to them. */
export async function launch(artifacts) {
  const profile = mkdtempSync(join(tmpdir(), 'promflow-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
    timeout: 60000,
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors = [];
  const watch = (p) => p.on('pageerror', (e) => consoleErrors.push(String(e)));
  watch(page);
  context.on('page', watch);

  let passed = 0;
  async function check(name, f) {
    try {
      await f();
      passed++;
      console.log(`ok: ${name}`);
    } catch (e) {
      console.error(`FAILED: ${name}: ${e && e.stack ? e.stack : e}`);
      for (const [i, p] of context.pages().entries()) {
        await p.screenshot({ path: join(artifacts, i ? `failure-${i}.png` : 'failure.png'), fullPage: true }).catch(() => {});
      }
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
      console.log(`${passed} passed, 1 failed`);
      process.exit(1);
    }
  }

  /** A full-page screenshot of `p` in the artifact dir, checked non-blank. */
  async function screenshot(name, p = page) {
    const png = await p.screenshot({ fullPage: true });
    writeFileSync(join(artifacts, `${name}.png`), png);
    // Decoded in the page itself: how many pixels differ from the top-left one.
    const differing = await p.evaluate(async (b64) => {
      const img = new Image();
      img.src = 'data:image/png;base64,' + b64;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const data = ctx.getImageData(0, 0, img.width, img.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) n++;
      }
      return n / (data.length / 4);
    }, png.toString('base64'));
    if (!(differing > 0.01)) throw new Error(`screenshot ${name} is blank (${differing} of pixels differ)`);
  }

  async function finish() {
    await check('no uncaught errors in the pages', async () => {
      expect(consoleErrors.length === 0, consoleErrors.join('\n'));
    });
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    console.log(`${passed} passed, 0 failed`);
  }

  return { context, page, check, screenshot, finish };
}

export function expect(cond, what) {
  if (!cond) throw new Error(what);
}
