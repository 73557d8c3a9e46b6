// The alert composer in a real browser (see harness.mjs). Run by tests/web_ui.rs against
// a promflow holding `demo_errors{instance="a"|"b"}` with known busy periods (the data of
// its simulate test) and --web.enable-rules-api:
//   node web/ui/tests/composer.mjs <base URL> <artifact dir> <composer query string>
// Types the expression, runs the simulation and sees the firing runs, the annotations
// and the graph; copies the rule as YAML; registers it through the rules API.

import { expect, launch } from './harness.mjs';

const [base, artifacts, search] = process.argv.slice(2);
if (!base || !artifacts || !search) {
  console.error('usage: composer.mjs <base URL> <artifact dir> <composer query string>');
  process.exit(2);
}
const { context, page, check, screenshot, finish } = await launch(artifacts);
await context.grantPermissions(['clipboard-read', 'clipboard-write']);

await check('typing an expression shows when each alert series was pending and firing', async () => {
  // The form without the expression: typed into the editor, run with Enter.
  const params = new URLSearchParams(search);
  const expr = params.get('expr');
  params.delete('expr');
  await page.goto(`${base}/alert-composer?${params}`);
  await page.locator('.cm-content').click();
  await page.keyboard.type(expr);
  await page.keyboard.press('Escape');
  await page.keyboard.press('Enter');
  await page.locator('table.composer-runs').waitFor();
  const t = await page.locator('.composer-output').innerText();
  expect(/21 evaluations every 1m: 2 alert series became active, 2 fired/.test(t), `summary: ${t}`);
  // Instance a: pending from minute 2, firing from minute 5 until minute 9 (kept 2m).
  const rows = page.locator('table.composer-runs tbody tr');
  expect((await rows.count()) === 2, 'two alert series');
  const a = await rows.nth(0).innerText();
  expect(a.includes('instance="a"') && a.includes('a has 10 errors'), `row a: ${a}`);
  expect(/FIRING .*\(4m\)/.test(a) && /PENDING .*\(3m\)/.test(a), `a's runs: ${a}`);
  const b = await rows.nth(1).innerText();
  expect(/FIRING .*\(6m\)/.test(b) && b.includes('b has 10 errors'), `b's runs: ${b}`);
  expect((await page.locator('.strip .run.firing').count()) === 2, 'firing runs on the strips');
  await page.locator('.composer-graph .uplot canvas').waitFor();
  expect(new URL(page.url()).searchParams.get('expr') === expr, `the URL keeps the expression: ${page.url()}`);
  await screenshot('alert-composer');
});

await check('the rule is copied as YAML', async () => {
  const yaml = await page.locator('pre.composer-yaml').innerText();
  expect(yaml.includes('- alert: HighErrors') && yaml.includes('for: 3m') && yaml.includes('keep_firing_for: 2m'), `yaml: ${yaml}`);
  await page.locator('button.copy-yaml').click();
  await page.locator('.composer-notice .alert.info').waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  expect(copied.trim() === yaml.trim(), `clipboard: ${copied}`);
});

await check('the rule is registered through the rules API', async () => {
  await page.locator('button.register').click();
  await page.locator('.composer-notice .alert.info', { hasText: 'Registered' }).waitFor();
  const rules = await page.evaluate(async (url) => (await fetch(url)).json(), `${base}/api/v1/rules`);
  const group = rules.data.groups.find((g) => g.name === 'HighErrors');
  expect(group && group.file === 'composer', `registered group: ${JSON.stringify(rules.data.groups)}`);
  const rule = group.rules[0];
  expect(rule.name === 'HighErrors' && rule.query === 'demo_errors > 5' && rule.duration === 180 && rule.keepFiringFor === 120, `rule: ${JSON.stringify(rule)}`);
  expect(rule.annotations.summary === '{{ $labels.instance }} has {{ $value }} errors', `annotations: ${JSON.stringify(rule.annotations)}`);
});

await finish();
