// Wall-display dashboards (`/dashboard/<name>`, `/dashboards` lists them): a grid of
// panels defined in a YAML file of `--web.dashboards-dir` (`/api/v1/dashboards/<name>`),
// full screen in a dark theme with large type, and a band of firing alerts at the top.
//
// The page follows the push stream (./live.ts, which reopens it by itself after promflow
// restarts) for `ALERTS` and for every selector the panels' expressions read: a change
// re-fetches the band (`/api/v1/alerts`) and re-queries the panels, so a panel moves
// when its data does; `refresh` is only the longest a panel goes without re-querying
// (graphs move with time even when nothing arrives). A failed refresh marks the page as
// stale (the clock turns red) and keeps the last values until promflow answers again.

import { parser } from '@prometheus-io/lezer-promql';
import { apiData, apiGet, pathPrefix } from './api';
import { errorBox, formatLabels, h } from './dom';
import { subscribeLive } from './live';
import { graphView, parseDuration, type QueryData } from './query';

interface Threshold {
  value: number;
  color: string;
}
interface Panel {
  title: string;
  expr: string;
  type: 'stat' | 'graph';
  unit: string;
  decimals: number | null;
  thresholds: Threshold[];
  range: string;
  width: number;
}
interface Dashboard {
  title: string;
  refresh: string;
  columns: number;
  panels: Panel[];
}
interface Alert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: string;
}

/** The color of `value` by `thresholds`: the last one at or below it. */
export function thresholdColor(value: number, thresholds: Threshold[]): string | null {
  let color: string | null = null;
  for (const t of [...thresholds].sort((a, b) => a.value - b.value)) if (value >= t.value) color = t.color;
  return color;
}

function formatStat(value: number, decimals: number | null): string {
  if (!Number.isFinite(value)) return String(value);
  if (decimals !== null) return value.toFixed(decimals);
  return String(Math.round(value * 1000) / 1000);
}

/** The vector selectors `expr` reads (`rate(x{a="b"}[5m])` reads `x{a="b"}`), as written. */
export function selectorsOf(expr: string): string[] {
  const found = new Set<string>();
  parser.parse(expr).iterate({
    enter: (node) => {
      if (node.name !== 'VectorSelector') return;
      found.add(expr.slice(node.from, node.to));
      return false;
    },
  });
  return [...found];
}

/** `/dashboards`: the dashboards of the directory, as links. */
export async function renderDashboardList(root: HTMLElement): Promise<void> {
  try {
    const list = await apiData<{ name: string; title?: string; error?: string }[]>('/api/v1/dashboards');
    root.replaceChildren(
      h('h1', {}, 'Dashboards'),
      list.length
        ? h(
            'ul',
            { class: 'dashboards' },
            list.map((d) =>
              h('li', {}, h('a', { href: `${pathPrefix()}/dashboard/${encodeURIComponent(d.name)}` }, d.title ?? d.name), d.error ? errorBox(d.error) : null),
            ),
          )
        : h('p', { class: 'muted' }, 'No dashboards: start promflow with --web.dashboards-dir=<dir> holding YAML files.'),
    );
  } catch (e) {
    root.replaceChildren(errorBox(String(e instanceof Error ? e.message : e)));
  }
}

/** `/dashboard/<name>`, full screen. */
export async function renderDashboard(root: HTMLElement, name: string): Promise<void> {
  document.body.classList.add('wall');
  let dashboard: Dashboard;
  try {
    dashboard = await apiData<Dashboard>(`/api/v1/dashboards/${encodeURIComponent(name)}`);
  } catch (e) {
    root.replaceChildren(errorBox(String(e instanceof Error ? e.message : e)));
    return;
  }
  document.title = dashboard.title;
  const clock = h('span', { class: 'clock' });
  const band = h('div', { class: 'alert-band' });
  const grid = h('div', { class: 'wall-grid', style: `grid-template-columns: repeat(${dashboard.columns}, 1fr)` });
  root.replaceChildren(h('header', { class: 'wall-header' }, h('h1', {}, dashboard.title), clock), band, grid);

  const updateBand = async () => {
    const r = await apiGet<{ alerts: Alert[] }>('/api/v1/alerts');
    if (r.status !== 'success' || !r.data) return;
    const firing = r.data.alerts.filter((a) => a.state === 'firing');
    band.classList.toggle('firing', firing.length > 0);
    band.replaceChildren(
      ...(firing.length
        ? firing.map((a) =>
            h(
              'div',
              { class: 'band-alert', title: formatLabels(a.labels) },
              h('strong', {}, a.labels['alertname'] ?? ''),
              ' ',
              a.annotations['summary'] ?? Object.entries(a.labels).filter(([k]) => k !== 'alertname').map(([k, v]) => `${k}=${v}`).join(' '),
            ),
          )
        : [h('div', { class: 'band-ok' }, 'No alerts firing')]),
    );
  };
  await updateBand();

  const cells = dashboard.panels.map((p) => {
    const body = h('div', { class: 'panel-body' });
    const cell = h('section', { class: `wall-panel ${p.type}`, style: `grid-column: span ${Math.min(p.width, dashboard.columns)}` }, h('h2', {}, p.title), body);
    grid.append(cell);
    return { panel: p, cell, body };
  });

  let alive = true;
  const refresh = async () => {
    const now = Date.now() / 1000;
    let failed = false;
    await Promise.all(
      cells.map(async ({ panel, cell, body }) => {
        if (panel.type === 'stat') {
          const r = await apiGet<QueryData>('/api/v1/query', { query: panel.expr, time: String(now) });
          if (r.status !== 'success' || !r.data) return void (failed = true);
          const result = r.data.result;
          const value = r.data.resultType === 'scalar' ? Number((result as [number, string])[1]) : Array.isArray(result) && result.length && typeof result[0] === 'object' ? Number((result[0] as { value: [number, string] }).value[1]) : NaN;
          const color = Number.isNaN(value) ? null : thresholdColor(value, panel.thresholds);
          cell.style.background = color ?? '';
          cell.classList.toggle('colored', color !== null);
          body.replaceChildren(h('div', { class: 'stat-value' }, Number.isNaN(value) ? 'no data' : formatStat(value, panel.decimals), panel.unit ? h('span', { class: 'unit' }, ` ${panel.unit}`) : null));
        } else {
          const range = parseDuration(panel.range) ?? 3600;
          const step = Math.max(Math.ceil(range / 250), 1);
          const r = await apiGet<QueryData>('/api/v1/query_range', { query: panel.expr, start: String(now - range), end: String(now), step: String(step) });
          if (r.status !== 'success' || !r.data) return void (failed = true);
          body.replaceChildren();
          graphView(body, r.data, { stacked: false }, [now - range, now], () => {}, { dark: true, height: 260 });
        }
      }),
    );
    clock.textContent = new Date().toISOString().slice(11, 19) + ' UTC';
    clock.classList.toggle('stale', failed);
  };
  const every = (parseDuration(dashboard.refresh) ?? 30) * 1000;
  let timer: number | undefined;
  const tick = async () => {
    window.clearTimeout(timer);
    if (!alive || !root.contains(grid)) return void (alive = false);
    await refresh();
    timer = window.setTimeout(() => void tick(), every);
  };
  await tick();
  const selectors = new Set(['ALERTS', ...dashboard.panels.flatMap((p) => selectorsOf(p.expr))]);
  subscribeLive([...selectors], () => {
    void updateBand();
    void tick();
  });
}
