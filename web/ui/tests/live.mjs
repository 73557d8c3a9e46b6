// The live pages in a real browser (see harness.mjs). Run by tests/web_ui.rs against a
// promflow scraping a healthy target, with an alerting rule `TargetDown` on `up == 0`
// and the wall-display dashboard `wall` (a stat of sum(demo_requests_total) = 12,
// orange from 10, and a graph; refreshed by the stream only):
//   node web/ui/tests/live.mjs <base URL with route prefix> <artifact dir> <ready file>
// Opens the targets, alerts and rules pages and the dashboard in four tabs and waits
// until they show the target up and no alert firing, then writes <ready file>; the Rust
// test then takes the target down. Each tab must then show the target down / the alert
// firing, with no reload of the page (a marker set in the page before survives).

import { writeFileSync } from 'node:fs';
import { expect, launch } from './harness.mjs';

const [base, artifacts, readyFile] = process.argv.slice(2);
if (!base || !artifacts || !readyFile) {
  console.error('usage: live.mjs <base URL> <artifact dir> <ready file>');
  process.exit(2);
}
const { context, page, check, screenshot, finish } = await launch(artifacts);
const targets = page;
const alerts = await context.newPage();
const rules = await context.newPage();
const wall = await context.newPage();

/** Waits until `p`'s main text matches `re`. */
async function shows(p, re) {
  await p.waitForFunction((source) => new RegExp(source).test(document.querySelector('main')?.innerText ?? ''), re.source, { timeout: 60000 });
}

await check('the pages show the target up and the alert inactive', async () => {
  await targets.goto(`${base}/targets`);
  await shows(targets, /\bUP\b/);
  await alerts.goto(`${base}/alerts`);
  await shows(alerts, /INACTIVE\s+TargetDown/);
  await rules.goto(`${base}/rules`);
  await shows(rules, /alert: TargetDown[\s\S]*INACTIVE/);
  await shows(rules, /on arrival \(interval 1s\)/);
  await wall.goto(`${base}/dashboard/wall`);
  await shows(wall, /Demo wall[\s\S]*No alerts firing/);
  await wall.locator('.wall-panel.stat .stat-value', { hasText: /^12 req$/ }).waitFor();
  const background = await wall.locator('.wall-panel.stat').evaluate((e) => getComputedStyle(e).backgroundColor);
  expect(background === 'rgb(210, 153, 34)', `the stat is orange from 10: ${background}`);
  await wall.locator('.wall-panel.graph .uplot canvas').waitFor();
  const theme = await wall.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(theme === 'rgb(13, 17, 23)', `dark theme: ${theme}`);
  for (const p of [targets, alerts, rules, wall]) {
    await p.evaluate(() => {
      window.__notReloaded = true;
    });
  }
});

writeFileSync(readyFile, 'ready\n');

await check('the targets page shows the target down without a reload', async () => {
  await shows(targets, /\bDOWN\b/);
  expect(await targets.evaluate(() => window.__notReloaded === true), 'the targets page was reloaded');
  await screenshot('live-targets', targets);
});

await check('the alerts page shows the alert firing without a reload', async () => {
  await shows(alerts, /FIRING\s+TargetDown/);
  expect(await alerts.evaluate(() => window.__notReloaded === true), 'the alerts page was reloaded');
  await screenshot('live-alerts', alerts);
});

await check('the rules page shows the alert firing without a reload', async () => {
  await shows(rules, /alert: TargetDown[\s\S]*FIRING/);
  expect(await rules.evaluate(() => window.__notReloaded === true), 'the rules page was reloaded');
});

await check("the dashboard's stat follows its series going stale without a reload", async () => {
  // `refresh` is an hour: only the stream's change can have re-queried the panel.
  await wall.locator('.wall-panel.stat .stat-value', { hasText: /^no data/ }).waitFor({ timeout: 60000 });
  expect(await wall.evaluate(() => window.__notReloaded === true), 'the dashboard was reloaded');
});

await check('the dashboard shows the alert in its band without a reload', async () => {
  await wall.locator('.alert-band .band-alert', { hasText: 'TargetDown' }).waitFor({ timeout: 60000 });
  expect(await wall.evaluate(() => window.__notReloaded === true), 'the dashboard was reloaded');
  await screenshot('dashboard', wall);
});

await finish();
