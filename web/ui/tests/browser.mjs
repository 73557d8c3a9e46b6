// The web UI in a real browser: Debian's chromium, headless, driven by playwright-core.
// Run by tests/web_ui.rs against a promflow it started (with a scraped synthetic target
// and a firing alert):
//   node web/ui/tests/browser.mjs <base URL with route prefix> <artifact dir> <generator link>
// Loads every page and checks what each shows, runs a query and sees the table and the
// graph, sees completion offer a metric name and a parse error shown, opens an alert's
// generatorURL (a 2.x `/graph?g0.expr=…&g0.tab=1` link), and writes a screenshot of each
// page to the artifact dir, checked to be non-blank. Exits non-zero on the first failure.

import { expect, launch } from './harness.mjs';

const [base, artifacts, generatorLink] = process.argv.slice(2);
if (!base || !artifacts || !generatorLink) {
  console.error('usage: browser.mjs <base URL> <artifact dir> <generator link>');
  process.exit(2);
}
const METRIC = 'demo_requests_total';
const { page, check, screenshot, finish } = await launch(artifacts);

async function text(selector) {
  return (await page.locator(selector).first().innerText()).trim();
}

/** Types into the panel's editor (replacing its text) and runs the query with Enter. */
async function runQuery(panel, expr) {
  const editor = panel.locator('.cm-content');
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(expr);
  await page.keyboard.press('Escape'); // close completion, so Enter executes
  await page.keyboard.press('Enter');
}

// Every page loads, shows its content, and looks like something.
const pages = [
  ['targets', 'main table.data tbody tr', async () => {
    const t = await text('main');
    expect(t.includes('UP') && t.includes('/metrics') && t.includes('demo'), `targets page: ${t}`);
  }],
  ['service-discovery', 'main table.data tbody tr', async () => {
    expect((await text('main')).includes('__address__'), 'discovered labels shown');
    // The target the keep step dropped says which step dropped it.
    await page.locator('button.why').first().click();
    const dropping = await page.locator('.relabel-steps li.dropping').first().innerText({ timeout: 15000 });
    expect(dropping.includes('keep') && dropping.includes('dropped the target here'), `relabel steps: ${dropping}`);
  }],
  ['alerts', 'details.alert-rule', async () => {
    const t = await text('main');
    expect(t.includes('DemoAlert') && t.includes('FIRING'), `alerts page: ${t}`);
    const href = await page.locator('dl.annotations a').first().getAttribute('href');
    expect(href === 'http://runbooks.invalid/demo', `runbook_url is a link: ${href}`);
  }],
  ['rules', 'section.rule-group', async () => {
    const t = await text('main');
    expect(t.includes('demo') && t.includes('job:demo_requests:sum') && t.includes('OK') && t.includes('every 1s'), `rules page: ${t}`);
  }],
  ['status', 'table.kv', async () => {
    const t = await text('main');
    expect(t.includes('Runtime information') && t.includes('Dataflow'), 'status page');
    // The rule file's two rules are installed in the dataflow.
    expect(/Rules installed\s+2\b/.test(t), `dataflow figures: ${t}`);
  }],
  ['flags', 'table.kv tbody tr', async () => {
    expect((await text('main')).includes('web.route-prefix'), 'flags page lists flags');
  }],
  ['config', 'pre.config', async () => {
    expect((await text('pre.config')).includes('scrape_configs'), 'config page shows the config');
  }],
  ['alert-composer', 'pre.composer-yaml', async () => {
    expect((await text('pre.composer-yaml')).includes('- alert: HighErrorRate'), 'the composer shows its rule');
  }],
  ['dashboards', 'main h1', async () => {
    expect((await text('main')).includes('--web.dashboards-dir'), 'without the flag, says how to add dashboards');
  }],
  ['tsdb-status', 'table.kv', async () => {
    expect((await text('main')).includes(METRIC), 'tsdb status lists the metric');
  }],
];
for (const [name, selector, verify] of pages) {
  await check(`page /${name}`, async () => {
    const res = await page.goto(`${base}/${name}`);
    expect(res.status() === 200, `status ${res.status()}`);
    await page.locator(selector).first().waitFor();
    expect((await page.locator('main .alert.error').count()) === 0, `an error is shown: ${await page.locator('main').innerText()}`);
    await verify();
    await screenshot(name);
  });
}

await check('a query shows a table, then a graph', async () => {
  await page.goto(`${base}/query`);
  const panel = page.locator('section.panel').first();
  await runQuery(panel, METRIC);
  await panel.locator('.result-table td.series', { hasText: `${METRIC}{` }).first().waitFor();
  expect(new URL(page.url()).searchParams.get('g0.expr') === METRIC, `URL keeps the query: ${page.url()}`);
  await screenshot('query-table');
  await panel.locator('button.tab[data-tab=graph]').click();
  await panel.locator('.uplot canvas').waitFor();
  await panel.locator('.u-legend', { hasText: METRIC }).waitFor();
  expect(new URL(page.url()).searchParams.get('g0.tab') === 'graph', `URL keeps the tab: ${page.url()}`);
  // Hovering shows the values under the cursor in the legend (the samples are at the right edge).
  const box = await panel.locator('.u-over').boundingBox();
  await page.mouse.move(box.x + box.width - 2, box.y + box.height / 2);
  await page.waitForFunction(() =>
    [...document.querySelectorAll('.u-legend .u-series:not(:first-child) .u-value')].some((v) => /^[57]$/.test(v.textContent ?? '')),
  );
  await screenshot('query-graph');
});

await check('the stacked option is kept in the URL', async () => {
  const panel = page.locator('section.panel').first();
  await panel.locator('.controls input[type=checkbox]').check();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('g0.stacked') === '1');
  await panel.locator('.uplot canvas').waitFor();
});

await check('dragging over the graph zooms in', async () => {
  const over = page.locator('.u-over').first();
  const box = await over.boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.9, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('g0.range_input') !== '1h');
  expect(new URL(page.url()).searchParams.has('g0.end_input'), `zoom sets the end: ${page.url()}`);
});

await check('completion offers a metric name', async () => {
  await page.goto(`${base}/query`);
  await page.locator('.cm-content').first().click();
  await page.keyboard.type('demo_req');
  await page.locator('.cm-tooltip-autocomplete', { hasText: METRIC }).waitFor();
  await screenshot('completion');
});

await check('completion offers label names and values', async () => {
  await page.goto(`${base}/query`);
  await page.locator('.cm-content').first().click();
  await page.keyboard.type(`${METRIC}{pa`);
  await page.locator('.cm-tooltip-autocomplete .cm-completionLabel', { hasText: /^path$/ }).waitFor();
  await page.keyboard.press('Escape');
  await page.keyboard.type('th="');
  await page.locator('.cm-tooltip-autocomplete .cm-completionLabel', { hasText: /^\/b$/ }).waitFor();
});

await check('a parse error is shown with its position', async () => {
  await page.goto(`${base}/query`);
  const panel = page.locator('section.panel').first();
  await runQuery(panel, 'sum(rate(');
  const error = panel.locator('.alert.error');
  await error.waitFor();
  const t = await error.innerText();
  expect(/\d+:\d+: parse error/.test(t), `error text: ${t}`);
  await panel.locator('.cm-lintRange-error').first().waitFor();
  await screenshot('parse-error');
});

await check("the API's infos are shown", async () => {
  await page.goto(`${base}/query`);
  const panel = page.locator('section.panel').first();
  await runQuery(panel, 'rate(demo_temperature_celsius[1m])');
  const info = panel.locator('.alert.info');
  await info.waitFor();
  const t = await info.innerText();
  expect(t.includes('might not be a counter'), `info text: ${t}`);
});

await check("an alert's generatorURL opens the query as a table", async () => {
  await page.goto(generatorLink);
  const panel = page.locator('section.panel').first();
  await panel.locator('.result-table td.series').first().waitFor();
  expect((await panel.locator('button.tab.active').innerText()) === 'Table', 'tab=1 is the table');
  const expr = new URL(generatorLink).searchParams.get('g0.expr');
  expect((await panel.locator('.cm-content').innerText()).trim() === expr, `editor holds ${expr}`);
  await screenshot('generator-link');
});

await check('several panels, in the URL', async () => {
  const q = new URLSearchParams({ 'g0.expr': METRIC, 'g0.tab': 'graph', 'g1.expr': `sum(${METRIC})`, 'g1.tab': 'table' });
  await page.goto(`${base}/query?${q}`);
  await page.locator('section.panel').nth(1).locator('.result-table td.value').first().waitFor();
  await page.locator('section.panel').first().locator('.uplot').waitFor();
  await page.locator('button.add-panel').click();
  await page.locator('section.panel').nth(2).waitFor();
  expect(new URL(page.url()).searchParams.has('g2.expr'), `URL has the new panel: ${page.url()}`);
  await screenshot('panels');
});

await finish();
