// The status pages, each one view of an API endpoint: targets, service discovery,
// alerts, rules, status (build and runtime), flags, config and TSDB status. The
// targets, alerts and rules pages are live (see ./live.ts): they re-fetch their
// endpoint when the stream reports a change, keeping their toolbar's state.

import { apiData, pathPrefix } from './api';
import { isCurrent, pageGeneration, subscribeLive } from './live';
import { ago, errorBox, filterBox, formatSeconds, h, labelBadges } from './dom';

type Labels = Record<string, string>;

interface Target {
  discoveredLabels: Labels;
  labels: Labels;
  scrapePool: string;
  scrapeUrl: string;
  globalUrl: string;
  lastError: string;
  lastScrape: string;
  lastScrapeDuration: number;
  health: string;
  scrapeInterval: string;
  scrapeTimeout: string;
}
interface TargetsData {
  activeTargets: Target[];
  droppedTargets: { discoveredLabels: Labels }[];
}
interface Alert {
  labels: Labels;
  annotations: Labels;
  state: string;
  activeAt?: string;
  value: string;
}
interface Rule {
  name: string;
  query: string;
  labels?: Labels;
  health: string;
  lastError?: string;
  evaluationTime: number;
  lastEvaluation: string;
  type: 'alerting' | 'recording';
  state?: string;
  duration?: number;
  keepFiringFor?: number;
  annotations?: Labels;
  alerts?: Alert[];
}
interface RuleGroup {
  name: string;
  file: string;
  interval: number;
  evaluationTime: number;
  lastEvaluation: string;
  rules: Rule[];
}

/** Runs `load`, showing its error text in `root` when it fails. */
async function withData(root: HTMLElement, load: () => Promise<(Node | string)[]>): Promise<void> {
  root.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    root.replaceChildren(...(await load()));
  } catch (e) {
    root.replaceChildren(errorBox(e instanceof Error ? e.message : String(e)));
  }
}

/** A page's view of its data: its nodes, and how to show newer data in them. */
interface LiveView<T> {
  nodes: (Node | string)[];
  update: (data: T) => void;
}

/**
 * Like {@link withData}, then live: when a series matching `selectors` changes,
 * `load` runs again and the view shows its answer (a failed re-fetch is shown above
 * the view, which keeps the data it had).
 */
async function withLiveData<T>(root: HTMLElement, selectors: string[], load: () => Promise<T>, view: (data: T) => LiveView<T>): Promise<void> {
  const generation = pageGeneration();
  let shown: LiveView<T> | null = null;
  const problem = h('div');
  await withData(root, async () => {
    shown = view(await load());
    return [problem, ...shown.nodes];
  });
  if (!shown || !isCurrent(generation)) return;
  const v: LiveView<T> = shown;
  subscribeLive(selectors, async () => {
    try {
      const data = await load();
      if (!isCurrent(generation)) return;
      problem.replaceChildren();
      v.update(data);
    } catch (e) {
      problem.replaceChildren(errorBox(`update failed: ${e instanceof Error ? e.message : String(e)}`));
    }
  });
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const i of items) {
    const k = key(i);
    m.set(k, [...(m.get(k) ?? []), i]);
  }
  return new Map([...m.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

/** Shows only the `section`s whose text contains the filter, and inside them only matching rows. */
function filterSections(root: HTMLElement, text: string): void {
  for (const row of root.querySelectorAll<HTMLElement>('tbody tr')) {
    row.hidden = !!text && !row.textContent!.toLowerCase().includes(text);
  }
}

function healthBadge(health: string): HTMLElement {
  const cls = health === 'up' || health === 'ok' ? 'ok' : health === 'unknown' ? 'unknown' : 'bad';
  return h('span', { class: `state ${cls}` }, health.toUpperCase());
}

function linkify(value: string): Node | string {
  return /^https?:\/\//.test(value) ? h('a', { href: value, rel: 'noopener' }, value) : value;
}

/** The targets page's toolbar state, kept across live updates and visits. */
const targetsView = { unhealthyOnly: false, filter: '' };

export function renderTargets(root: HTMLElement): Promise<void> {
  const load = () => apiData<TargetsData>('/api/v1/targets', { state: 'active' });
  return withLiveData(root, ['up'], load, (first) => {
    let data = first;
    const body = h('div');
    const draw = () => {
      const pools = groupBy(data.activeTargets, (t) => t.scrapePool);
      body.replaceChildren(
        ...[...pools.entries()].map(([pool, targets]) => {
          const shown = targetsView.unhealthyOnly ? targets.filter((t) => t.health !== 'up') : targets;
          const up = targets.filter((t) => t.health === 'up').length;
          return h(
            'section',
            { class: 'pool', hidden: targetsView.unhealthyOnly && !shown.length },
            h('h3', {}, `${pool} `, h('span', { class: 'muted' }, `(${up}/${targets.length} up)`)),
            h(
              'table',
              { class: 'data' },
              h('thead', {}, h('tr', {}, ['Endpoint', 'State', 'Labels', 'Last scrape', 'Scrape duration', 'Error'].map((c) => h('th', {}, c)))),
              h(
                'tbody',
                {},
                shown.map((t) =>
                  h(
                    'tr',
                    {},
                    h('td', {}, h('a', { href: t.globalUrl || t.scrapeUrl }, t.scrapeUrl)),
                    h('td', {}, healthBadge(t.health)),
                    h('td', {}, labelBadges(t.labels)),
                    h('td', { title: t.lastScrape }, ago(t.lastScrape), h('div', { class: 'muted' }, `every ${t.scrapeInterval}, timeout ${t.scrapeTimeout}`)),
                    h('td', {}, formatSeconds(t.lastScrapeDuration)),
                    h('td', { class: 'error-text' }, t.lastError),
                  ),
                ),
              ),
            ),
          );
        }),
      );
      if (!data.activeTargets.length) body.append(h('p', { class: 'muted' }, 'No targets.'));
      filterSections(body, targetsView.filter);
    };
    draw();
    const filter = filterBox((text) => ((targetsView.filter = text), filterSections(body, text)), 'Filter by endpoint or labels');
    filter.value = targetsView.filter;
    return {
      nodes: [
        h('h1', {}, 'Targets'),
        h(
          'div',
          { class: 'toolbar' },
          h(
            'label',
            {},
            h('input', {
              type: 'checkbox',
              checked: targetsView.unhealthyOnly,
              onchange: (e: Event) => ((targetsView.unhealthyOnly = (e.target as HTMLInputElement).checked), draw()),
            }),
            ' Unhealthy only',
          ),
          filter,
        ),
        body,
      ],
      update: (d) => ((data = d), draw()),
    };
  });
}

interface RelabelStep {
  rule: { action: string; sourceLabels?: string[]; regex?: string; targetLabel?: string };
  output: Labels;
  keep: boolean;
}

/** A dropped target's cell: "Dropped", and on demand which relabel step dropped it
 * (`/api/v1/targets/relabel_steps`: each step's output, the dropping one marked). */
function droppedCell(pool: string, discovered: Labels): HTMLElement {
  const why = h('div', { class: 'relabel-steps' });
  const button = h('button', {
    class: 'why',
    onclick: async () => {
      button.remove();
      try {
        const data = await apiData<{ steps: RelabelStep[] }>('/api/v1/targets/relabel_steps', { scrapePool: pool, labels: JSON.stringify(discovered) });
        const drop = data.steps.findIndex((s) => !s.keep);
        why.replaceChildren(
          h(
            'ol',
            {},
            data.steps.slice(0, drop < 0 ? undefined : drop + 1).map((s, i) =>
              h(
                'li',
                { class: i === drop ? 'dropping' : '' },
                h('code', {}, `${s.rule.action}${s.rule.sourceLabels ? ` [${s.rule.sourceLabels.join(', ')}]` : ''}${s.rule.regex !== undefined ? ` =~ ${s.rule.regex}` : ''}${s.rule.targetLabel ? ` → ${s.rule.targetLabel}` : ''}`),
                i === drop ? h('strong', {}, ' dropped the target here') : null,
              ),
            ),
          ),
        );
      } catch (e) {
        why.replaceChildren(errorBox(String(e instanceof Error ? e.message : e)));
      }
    },
  }, 'why?');
  return h('div', {}, h('span', { class: 'state bad' }, 'Dropped'), ' ', button, why);
}

export function renderServiceDiscovery(root: HTMLElement): Promise<void> {
  return withData(root, async () => {
    const data = await apiData<TargetsData>('/api/v1/targets', { state: 'any' });
    const dropped = data.droppedTargets.map((d) => ({ discoveredLabels: d.discoveredLabels, labels: null as Labels | null, pool: d.discoveredLabels['job'] ?? '' }));
    const active = data.activeTargets.map((t) => ({ discoveredLabels: t.discoveredLabels, labels: t.labels as Labels | null, pool: t.scrapePool }));
    const pools = groupBy([...active, ...dropped], (t) => t.pool);
    const body = h(
      'div',
      {},
      [...pools.entries()].map(([pool, targets]) =>
        h(
          'section',
          { class: 'pool' },
          h('h3', {}, `${pool} `, h('span', { class: 'muted' }, `(${targets.filter((t) => t.labels).length} active / ${targets.length} discovered)`)),
          h(
            'table',
            { class: 'data' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Discovered labels'), h('th', {}, 'Target labels'))),
            h(
              'tbody',
              {},
              targets.map((t) =>
                h('tr', {}, h('td', {}, labelBadges(t.discoveredLabels)), h('td', {}, t.labels ? labelBadges(t.labels) : droppedCell(t.pool, t.discoveredLabels))),
              ),
            ),
          ),
        ),
      ),
    );
    return [h('h1', {}, 'Service discovery'), filterBox((text) => filterSections(body, text), 'Filter by labels'), body];
  });
}

/** The alerts page's shown states, kept across live updates and visits. */
const alertsShown = new Set(['inactive', 'pending', 'firing']);

export function renderAlerts(root: HTMLElement): Promise<void> {
  const load = () => apiData<{ groups: RuleGroup[] }>('/api/v1/rules', { type: 'alert' });
  return withLiveData(root, ['ALERTS'], load, (first) => {
    let rules = alertRules(first.groups);
    const shown = alertsShown;
    const body = h('div');
    const draw = () =>
      body.replaceChildren(
        ...rules
          .filter(({ rule }) => shown.has(rule.state ?? 'inactive'))
          .map(({ group, rule }) =>
            h(
              'details',
              { class: `alert-rule ${rule.state}`, open: rule.state !== 'inactive' },
              h(
                'summary',
                {},
                h('span', { class: `state ${rule.state}` }, (rule.state ?? '').toUpperCase()),
                ` ${rule.name} `,
                h('span', { class: 'muted' }, `(${rule.alerts?.length ?? 0} active) · ${group.file} > ${group.name}`),
              ),
              h(
                'pre',
                { class: 'rule-def' },
                `alert: ${rule.name}\nexpr: ${rule.query}` +
                  (rule.duration ? `\nfor: ${rule.duration}s` : '') +
                  (rule.keepFiringFor ? `\nkeep_firing_for: ${rule.keepFiringFor}s` : '') +
                  (rule.labels && Object.keys(rule.labels).length ? `\nlabels:\n${Object.entries(rule.labels).map(([k, v]) => `  ${k}: ${v}`).join('\n')}` : '') +
                  (rule.annotations && Object.keys(rule.annotations).length
                    ? `\nannotations:\n${Object.entries(rule.annotations).map(([k, v]) => `  ${k}: ${v}`).join('\n')}`
                    : ''),
              ),
              rule.alerts?.length
                ? h(
                    'table',
                    { class: 'data' },
                    h('thead', {}, h('tr', {}, ['Labels', 'State', 'Active since', 'Value', 'Annotations'].map((c) => h('th', {}, c)))),
                    h(
                      'tbody',
                      {},
                      rule.alerts.map((a) =>
                        h(
                          'tr',
                          {},
                          h('td', {}, labelBadges(a.labels)),
                          h('td', {}, h('span', { class: `state ${a.state}` }, a.state.toUpperCase())),
                          h('td', { title: a.activeAt ?? '' }, a.activeAt ?? '', h('div', { class: 'muted' }, ago(a.activeAt))),
                          h('td', {}, a.value),
                          h(
                            'td',
                            {},
                            h(
                              'dl',
                              { class: 'annotations' },
                              Object.entries(a.annotations ?? {}).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, linkify(v))]),
                            ),
                          ),
                        ),
                      ),
                    ),
                  )
                : null,
            ),
          ),
      );
    const toolbar = h('div', { class: 'toolbar' });
    const drawToolbar = () => {
      const count = (state: string) => rules.filter((r) => (r.rule.state ?? 'inactive') === state).length;
      toolbar.replaceChildren(
        ...['inactive', 'pending', 'firing'].map((state) =>
          h(
            'label',
            { class: `toggle ${state}` },
            h('input', {
              type: 'checkbox',
              checked: shown.has(state),
              onchange: (e: Event) => {
                if ((e.target as HTMLInputElement).checked) shown.add(state);
                else shown.delete(state);
                draw();
              },
            }),
            ` ${state[0].toUpperCase()}${state.slice(1)} (${count(state)})`,
          ),
        ),
      );
    };
    const empty = h('p', { class: 'muted' }, 'No alerting rules.');
    const redraw = () => {
      drawToolbar();
      draw();
      empty.hidden = rules.length > 0;
    };
    redraw();
    return {
      nodes: [h('h1', {}, 'Alerts'), toolbar, empty, body],
      update: (d) => ((rules = alertRules(d.groups)), redraw()),
    };
  });
}

function alertRules(groups: RuleGroup[]): { group: RuleGroup; rule: Rule }[] {
  return groups.flatMap((g) => g.rules.map((r) => ({ group: g, rule: r })));
}

/** Each group's evaluation mode, from the flags that set it: `--rules.evaluation` for
 * all, `on-arrival` for groups matching `--rules.on-arrival-groups` (anchored, as
 * promflow matches it). */
async function evaluationModes(): Promise<(group: string) => string> {
  const flags = await apiData<Record<string, string>>('/api/v1/status/flags').catch(() => ({}) as Record<string, string>);
  const fallback = flags['rules.evaluation'] || 'interval';
  const pattern = flags['rules.on-arrival-groups'];
  let re: RegExp | null = null;
  try {
    re = pattern ? new RegExp(`^(?:${pattern})$`) : null;
  } catch {
    re = null;
  }
  return (group) => (re?.test(group) ? 'on-arrival' : fallback);
}

export async function renderRules(root: HTMLElement): Promise<void> {
  const load = () => apiData<{ groups: RuleGroup[] }>('/api/v1/rules');
  const modeOf = await evaluationModes();
  return withLiveData(root, ['ALERTS'], load, (first) => {
    const body = h('div');
    const draw = (data: { groups: RuleGroup[] }) => body.replaceChildren(...ruleGroups(data, modeOf));
    draw(first);
    return { nodes: [h('h1', {}, 'Rules'), body], update: draw };
  });
}

function ruleGroups(data: { groups: RuleGroup[] }, modeOf: (group: string) => string): HTMLElement[] {
  return [
    ...(data.groups.length ? [] : [h('p', { class: 'muted' }, 'No rule groups.')]),
    ...data.groups.map((g) =>
      h(
        'section',
        { class: 'rule-group' },
        h('h3', {}, g.name, ' ', h('span', { class: 'muted' }, `${g.file} · ${modeOf(g.name) === 'on-arrival' ? `on arrival (interval ${g.interval}s)` : `every ${g.interval}s`} · last evaluation ${ago(g.lastEvaluation)} · took ${formatSeconds(g.evaluationTime)}`)),
        h(
          'table',
          { class: 'data' },
          h('thead', {}, h('tr', {}, ['Rule', 'State', 'Error', 'Last evaluation', 'Evaluation time'].map((c) => h('th', {}, c)))),
          h(
            'tbody',
            {},
            g.rules.map((r) =>
              h(
                'tr',
                {},
                h('td', {}, h('pre', { class: 'rule-def' }, `${r.type === 'alerting' ? 'alert' : 'record'}: ${r.name}\nexpr: ${r.query}`)),
                h('td', {}, healthBadge(r.health), r.type === 'alerting' ? [' ', h('span', { class: `state ${r.state}` }, (r.state ?? '').toUpperCase())] : null),
                h('td', { class: 'error-text' }, r.lastError ?? ''),
                h('td', { title: r.lastEvaluation }, ago(r.lastEvaluation)),
                h('td', {}, formatSeconds(r.evaluationTime)),
              ),
            ),
          ),
        ),
      ),
    ),
  ];
}

function kvTable(entries: [string, unknown][]): HTMLElement {
  return h(
    'table',
    { class: 'data kv' },
    h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, String(v ?? ''))))),
  );
}

/** promflow's own figures of its dataflow, read from its `/metrics` (text format). */
const DATAFLOW_METRICS: [string, string][] = [
  ['promflow_engine_rules_installed_total', 'Rules installed'],
  ['promflow_dataflow_lag_seconds', 'Lag (seconds)'],
  ['promflow_samples_ingested_total', 'Samples ingested'],
  ['promflow_samples_late_total', 'Late samples'],
  ['promflow_samples_out_of_order_total', 'Out-of-order samples'],
  ['promflow_active_series', 'Active series'],
  ['promflow_active_targets', 'Active targets'],
];

async function dataflowFigures(workers: string): Promise<[string, unknown][]> {
  let text = '';
  try {
    const res = await fetch(pathPrefix() + '/metrics', { cache: 'no-store' });
    if (res.ok) text = await res.text();
  } catch {
    // Shown as empty figures.
  }
  const value = (name: string) => text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1] ?? '';
  return [['Workers', workers], ...DATAFLOW_METRICS.map(([name, label]): [string, unknown] => [label, value(name)])];
}

export function renderStatus(root: HTMLElement): Promise<void> {
  return withData(root, async () => {
    const [build, runtime, ams] = await Promise.all([
      apiData<Record<string, string>>('/api/v1/status/buildinfo'),
      apiData<Record<string, unknown>>('/api/v1/status/runtimeinfo'),
      apiData<{ activeAlertmanagers: { url: string }[]; droppedAlertmanagers: { url: string }[] }>('/api/v1/alertmanagers').catch(() => null),
    ]);
    return [
      h('h1', {}, 'Status'),
      h('h2', {}, 'Dataflow'),
      kvTable(await dataflowFigures(String(runtime['GOMAXPROCS'] ?? ''))),
      h('h2', {}, 'Runtime information'),
      kvTable(Object.entries(runtime)),
      h('h2', {}, 'Build information'),
      kvTable(Object.entries(build)),
      h('h2', {}, 'Alertmanagers'),
      ams && ams.activeAlertmanagers.length
        ? h('table', { class: 'data' }, h('tbody', {}, ams.activeAlertmanagers.map((a) => h('tr', {}, h('td', {}, h('a', { href: a.url }, a.url))))))
        : h('p', { class: 'muted' }, 'No Alertmanagers.'),
    ];
  });
}

export function renderFlags(root: HTMLElement): Promise<void> {
  return withData(root, async () => {
    const flags = await apiData<Record<string, string>>('/api/v1/status/flags');
    const table = kvTable(Object.entries(flags).sort(([a], [b]) => a.localeCompare(b)));
    return [h('h1', {}, 'Command-line flags'), filterBox((text) => filterSections(table, text), 'Filter flags'), table];
  });
}

export function renderConfig(root: HTMLElement): Promise<void> {
  return withData(root, async () => {
    const { yaml } = await apiData<{ yaml: string }>('/api/v1/status/config');
    return [
      h('h1', {}, 'Configuration'),
      h('button', { onclick: () => void navigator.clipboard?.writeText(yaml) }, 'Copy to clipboard'),
      h('pre', { class: 'config' }, yaml),
    ];
  });
}

interface TsdbStat {
  name: string;
  value: number;
}

export function renderTsdbStatus(root: HTMLElement): Promise<void> {
  return withData(root, async () => {
    const d = await apiData<{
      headStats: { numSeries: number; numLabelPairs: number; chunkCount: number; minTime: number; maxTime: number };
      seriesCountByMetricName: TsdbStat[];
      labelValueCountByLabelName: TsdbStat[];
      memoryInBytesByLabelName: TsdbStat[];
      seriesCountByLabelValuePair: TsdbStat[];
    }>('/api/v1/status/tsdb');
    const time = (ms: number) => (Number.isFinite(ms) && Math.abs(ms) < 1e15 ? new Date(ms).toISOString() : String(ms));
    const top = (title: string, stats: TsdbStat[], column: string) => [
      h('h2', {}, title),
      h(
        'table',
        { class: 'data' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, column))),
        h('tbody', {}, (stats ?? []).map((s) => h('tr', {}, h('td', {}, s.name), h('td', {}, s.value)))),
      ),
    ];
    return [
      h('h1', {}, 'TSDB status'),
      h('h2', {}, 'Head stats'),
      kvTable([
        ['Number of series', d.headStats.numSeries],
        ['Number of label pairs', d.headStats.numLabelPairs],
        ['Number of chunks', d.headStats.chunkCount],
        ['Lowest timestamp', time(d.headStats.minTime)],
        ['Highest timestamp', time(d.headStats.maxTime)],
      ]),
      ...top('Top 10 series count by metric names', d.seriesCountByMetricName, 'Count'),
      ...top('Top 10 label names with value count', d.labelValueCountByLabelName, 'Count'),
      ...top('Top 10 label names with high memory usage', d.memoryInBytesByLabelName, 'Bytes'),
      ...top('Top 10 series count by label value pairs', d.seriesCountByLabelValuePair, 'Count'),
    ];
  });
}

