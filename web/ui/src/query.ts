// The expression browser (`/graph`, `/query`): panels of a PromQL editor
// (@prometheus-io/codemirror-promql: highlighting, completion from promflow's API,
// linting) with a table view (instant query) and a graph view (range query, uPlot).
// The panels live in the URL as Prometheus encodes them: g0.expr, g0.tab (2.x: 0 graph,
// 1 table; 3.x: graph|table), g0.range_input, g0.end_input, g0.moment_input, g0.stacked.

import { EditorView, keymap, placeholder } from '@codemirror/view';
import { EditorState } from '@codemirror/state';
import { defaultKeymap, history as editHistory, historyKeymap, insertNewlineAndIndent } from '@codemirror/commands';
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching } from '@codemirror/language';
import { lintKeymap, setDiagnostics } from '@codemirror/lint';
import { PromQLExtension } from '@prometheus-io/codemirror-promql';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { apiGet, pathPrefix, type ApiResult } from './api';
import { errorBox, formatLabels, h } from './dom';

type Tab = 'table' | 'graph';

interface Panel {
  expr: string;
  tab: Tab;
  /** Graph range in seconds. */
  range: number;
  /** Graph end, ms since the epoch; null: now. */
  end: number | null;
  /** Table evaluation time, ms; null: now. */
  moment: number | null;
  stacked: boolean;
}

interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}
export interface QueryData {
  resultType: 'vector' | 'matrix' | 'scalar' | 'string';
  result: Sample[] | [number, string];
}

const DURATION_UNITS: Record<string, number> = { y: 31536000, w: 604800, d: 86400, h: 3600, m: 60, s: 1 };

/** `1h30m` -> 5400; null if not a Prometheus duration. */
export function parseDuration(text: string): number | null {
  const m = text.trim().match(/^(\d+[ywdhms])+$/);
  if (!m) return null;
  let total = 0;
  for (const [, n, u] of text.trim().matchAll(/(\d+)([ywdhms])/g)) total += Number(n) * DURATION_UNITS[u];
  return total || null;
}

/** 5400 -> `1h30m`. */
export function formatRange(seconds: number): string {
  let s = Math.round(seconds);
  let out = '';
  for (const [u, size] of Object.entries(DURATION_UNITS)) {
    if (s >= size) {
      out += `${Math.floor(s / size)}${u}`;
      s %= size;
    }
  }
  return out || '0s';
}

/** Go's time layout the 2.x UI writes for end_input/moment_input: `2006-01-02 15:04:05`. */
function parseTime(text: string | null): number | null {
  if (!text) return null;
  const t = Date.parse(text.includes('T') ? text : text.replace(' ', 'T') + 'Z');
  return Number.isNaN(t) ? null : t;
}
function formatTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/** The panels a URL's query string encodes (at least one). */
export function panelsFromSearch(search: string): Panel[] {
  const params = new URLSearchParams(search);
  const panels: Panel[] = [];
  for (let i = 0; i < 100 && params.has(`g${i}.expr`); i++) {
    const tab = params.get(`g${i}.tab`);
    panels.push({
      expr: params.get(`g${i}.expr`) ?? '',
      // 2.x: 0 graph, 1 table; 3.x: the names. Prometheus's own default is table.
      tab: tab === '0' || tab === 'graph' ? 'graph' : 'table',
      range: parseDuration(params.get(`g${i}.range_input`) ?? '') ?? 3600,
      end: parseTime(params.get(`g${i}.end_input`)),
      moment: parseTime(params.get(`g${i}.moment_input`)),
      stacked: params.get(`g${i}.stacked`) === '1',
    });
  }
  return panels.length ? panels : [newPanel()];
}

function newPanel(): Panel {
  return { expr: '', tab: 'table', range: 3600, end: null, moment: null, stacked: false };
}

/** The query string encoding `panels` (3.x tab names). */
export function searchFromPanels(panels: Panel[]): string {
  const params = new URLSearchParams();
  panels.forEach((p, i) => {
    params.set(`g${i}.expr`, p.expr);
    params.set(`g${i}.tab`, p.tab);
    params.set(`g${i}.range_input`, formatRange(p.range));
    if (p.end !== null) params.set(`g${i}.end_input`, formatTime(p.end));
    if (p.moment !== null) params.set(`g${i}.moment_input`, formatTime(p.moment));
    if (p.stacked) params.set(`g${i}.stacked`, '1');
  });
  return '?' + params.toString();
}

/** The editor extension: completion of functions, metric names, label names and values from promflow's API, and linting. */
export function promqlExtension() {
  return new PromQLExtension()
    .activateCompletion(true)
    .activateLinter(true)
    .setComplete({ remote: { url: location.origin + pathPrefix(), httpMethod: 'GET' } })
    .asExtension();
}

/** Renders the expression browser into `root`. */
export function renderQueryPage(root: HTMLElement): void {
  const panels = panelsFromSearch(location.search);
  const list = h('div', { class: 'panels' });
  const save = () => history.replaceState(null, '', location.pathname + searchFromPanels(panels));
  const addPanel = (p: Panel) => {
    const el = panelView(p, save, () => {
      const i = panels.indexOf(p);
      if (i >= 0) panels.splice(i, 1);
      el.remove();
      save();
    });
    list.append(el);
  };
  panels.forEach(addPanel);
  root.replaceChildren(
    list,
    h(
      'button',
      {
        class: 'add-panel',
        onclick: () => {
          const p = newPanel();
          panels.push(p);
          addPanel(p);
          save();
        },
      },
      'Add panel',
    ),
  );
}

function panelView(panel: Panel, save: () => void, remove: () => void): HTMLElement {
  const output = h('div', { class: 'panel-output' });
  const messages = h('div', { class: 'messages' });
  const tabs = h('div', { class: 'tabs' });
  const controls = h('div', { class: 'controls' });
  const stats = h('span', { class: 'stats' });
  let chart: uPlot | null = null;

  const execute = async () => {
    panel.expr = editor.state.doc.toString();
    save();
    messages.replaceChildren();
    stats.textContent = '';
    if (chart) {
      chart.destroy();
      chart = null;
    }
    if (!panel.expr.trim()) {
      output.replaceChildren(h('p', { class: 'muted' }, 'No query.'));
      return;
    }
    output.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    const started = performance.now();
    let result: ApiResult<QueryData>;
    if (panel.tab === 'table') {
      const params: Record<string, string> = { query: panel.expr };
      if (panel.moment !== null) params.time = String(panel.moment / 1000);
      result = await apiGet<QueryData>('/api/v1/query', params);
    } else {
      const end = (panel.end ?? Date.now()) / 1000;
      const start = end - panel.range;
      // As Prometheus's UI: about 250 points across the range.
      const step = Math.max(Math.floor(panel.range / 250), 1);
      result = await apiGet<QueryData>('/api/v1/query_range', {
        query: panel.expr,
        start: String(start),
        end: String(end),
        step: String(step),
      });
    }
    const took = performance.now() - started;
    for (const w of result.warnings ?? []) messages.append(h('div', { class: 'alert warning' }, w));
    for (const i of result.infos ?? []) messages.append(h('div', { class: 'alert info' }, i));
    if (result.status !== 'success' || !result.data) {
      output.replaceChildren(errorBox(`Error executing query: ${result.error ?? 'unknown error'}`));
      markError(editor, result.error ?? '');
      return;
    }
    const data = result.data;
    const count = Array.isArray(data.result) && data.resultType !== 'scalar' && data.resultType !== 'string' ? data.result.length : 1;
    stats.textContent = `Load time: ${Math.round(took)}ms · Result series: ${count}`;
    if (panel.tab === 'table') {
      output.replaceChildren(tableView(data));
    } else {
      output.replaceChildren();
      const end = (panel.end ?? Date.now()) / 1000;
      chart = graphView(output, data, panel, [end - panel.range, end], (start, end) => {
        panel.end = end * 1000;
        panel.range = Math.max(end - start, 1);
        renderControls();
        void execute();
      });
    }
  };

  const editor = new EditorView({
    parent: h('div'),
    state: EditorState.create({
      doc: panel.expr,
      extensions: [
        editHistory(),
        closeBrackets(),
        autocompletion(),
        bracketMatching(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        placeholder('Expression (press Shift+Enter for newlines)'),
        keymap.of([
          {
            key: 'Enter',
            run: () => {
              void execute();
              return true;
            },
          },
          { key: 'Shift-Enter', run: insertNewlineAndIndent },
          ...closeBracketsKeymap,
          ...defaultKeymap,
          ...historyKeymap,
          ...completionKeymap,
          ...lintKeymap,
        ]),
        promqlExtension(),
        EditorView.lineWrapping,
      ],
    }),
  });

  const renderTabs = () => {
    tabs.replaceChildren(
      ...(['table', 'graph'] as Tab[]).map((t) =>
        h(
          'button',
          {
            class: 'tab' + (panel.tab === t ? ' active' : ''),
            'data-tab': t,
            onclick: () => {
              panel.tab = t;
              renderTabs();
              renderControls();
              void execute();
            },
          },
          t === 'table' ? 'Table' : 'Graph',
        ),
      ),
    );
  };

  const renderControls = () => {
    if (panel.tab === 'table') {
      controls.replaceChildren(
        h('label', {}, 'Evaluation time '),
        ...timeInput(panel.moment, (t) => {
          panel.moment = t;
          void execute();
        }),
      );
    } else {
      controls.replaceChildren(
        h('label', {}, 'Range '),
        h('input', {
          class: 'range',
          size: 6,
          value: formatRange(panel.range),
          onchange: (e: Event) => {
            const r = parseDuration((e.target as HTMLInputElement).value);
            if (r) panel.range = r;
            renderControls();
            void execute();
          },
        }),
        h('label', {}, ' End '),
        ...timeInput(panel.end, (t) => {
          panel.end = t;
          void execute();
        }),
        h(
          'label',
          {},
          h('input', {
            type: 'checkbox',
            checked: panel.stacked,
            onchange: (e: Event) => {
              panel.stacked = (e.target as HTMLInputElement).checked;
              void execute();
            },
          }),
          ' stacked',
        ),
        h(
          'button',
          {
            onclick: () => {
              panel.end = null;
              renderControls();
              void execute();
            },
          },
          'Reset to now',
        ),
      );
    }
  };

  renderTabs();
  renderControls();
  const el = h(
    'section',
    { class: 'panel' },
    h(
      'div',
      { class: 'expr-row' },
      h('div', { class: 'editor' }, editor.dom),
      h('button', { class: 'execute primary', onclick: () => void execute() }, 'Execute'),
      h('button', { class: 'remove', title: 'Remove panel', onclick: remove }, '×'),
    ),
    messages,
    h('div', { class: 'tab-row' }, tabs, stats),
    controls,
    output,
  );
  if (panel.expr) void execute();
  return el;
}

/** A UTC date-time input for `ms` (null: empty, meaning now); `onChange` gets the new value. */
function timeInput(ms: number | null, onChange: (ms: number | null) => void): HTMLElement[] {
  return [
    h('input', {
      type: 'datetime-local',
      step: 1,
      value: ms === null ? '' : new Date(ms).toISOString().slice(0, 19),
      onchange: (e: Event) => {
        const v = (e.target as HTMLInputElement).value;
        onChange(v ? Date.parse(v + 'Z') : null);
      },
    }),
    h('span', { class: 'muted' }, ' (UTC; empty: now) '),
  ];
}

/** Underlines the position a parse error names (`1:10: parse error: …`) in the editor. */
function markError(editor: EditorView, error: string): void {
  const m = error.match(/(\d+):(\d+): parse error: (.*)/);
  if (!m) return;
  const doc = editor.state.doc;
  const line = doc.line(Math.min(Math.max(Number(m[1]), 1), doc.lines));
  const from = Math.min(line.from + Math.max(Number(m[2]) - 1, 0), doc.length);
  const to = Math.min(from + 1, doc.length);
  editor.dispatch(setDiagnostics(editor.state, [{ from: from === to && from > 0 ? from - 1 : from, to, severity: 'error', message: m[3] }]));
}

function tableView(data: QueryData): HTMLElement {
  const body = h('tbody');
  switch (data.resultType) {
    case 'scalar':
    case 'string': {
      const [, v] = data.result as [number, string];
      body.append(h('tr', {}, h('td', {}, data.resultType), h('td', { class: 'value' }, v)));
      break;
    }
    case 'vector':
    case 'matrix': {
      const rows = data.result as Sample[];
      if (!rows.length) {
        body.append(h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'Empty query result')));
      }
      for (const s of rows.slice(0, 10000)) {
        const value = s.value
          ? s.value[1]
          : (s.values ?? []).map(([t, v]) => h('div', {}, `${v} @${t}`));
        body.append(h('tr', {}, h('td', { class: 'series' }, formatLabels(s.metric)), h('td', { class: 'value' }, value)));
      }
    }
  }
  return h('table', { class: 'data result-table' }, body);
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** A span of time (seconds) shaded in `color` behind a graph's lines. */
export interface Band {
  start: number;
  end: number;
  color: string;
}

/** How a graph looks beyond its data. */
export interface GraphLook {
  /** Shaded behind the lines (the alert composer's pending and firing times). */
  bands?: Band[];
  /** Light axes and grid, for the dark wall display. */
  dark?: boolean;
  /** Pixels (default 350). */
  height?: number;
}

/**
 * A uPlot chart of a range query's matrix; dragging a selection zooms (re-queries
 * `onZoom(start, end)`, seconds).
 */
export function graphView(
  parent: HTMLElement,
  data: QueryData,
  panel: Pick<Panel, 'stacked'>,
  [start, end]: [number, number],
  onZoom: (start: number, end: number) => void,
  { bands = [], dark = false, height = 350 }: GraphLook = {},
): uPlot | null {
  if (data.resultType !== 'matrix') {
    parent.append(h('p', { class: 'muted' }, `The graph shows range vectors; this query returned a ${data.resultType}.`));
    return null;
  }
  const series = data.result as Sample[];
  if (!series.length) {
    parent.append(h('p', { class: 'muted' }, 'Empty query result'));
    return null;
  }
  const times = [...new Set(series.flatMap((s) => (s.values ?? []).map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns: (number | null)[][] = series.map((s) => {
    const col: (number | null)[] = new Array(times.length).fill(null);
    for (const [t, v] of s.values ?? []) col[index.get(t)!] = Number(v);
    return col;
  });
  if (panel.stacked) {
    for (let i = 1; i < columns.length; i++) {
      columns[i] = columns[i].map((v, j) => (v === null ? null : v + (columns[i - 1][j] ?? 0)));
    }
  }
  const width = Math.max(parent.clientWidth || 800, 300);
  const opts: uPlot.Options = {
    width,
    height,
    ...(dark
      ? {
          axes: [
            { stroke: '#c9d1d9', grid: { stroke: '#30363d' }, ticks: { stroke: '#30363d' } },
            { stroke: '#c9d1d9', grid: { stroke: '#30363d' }, ticks: { stroke: '#30363d' } },
          ],
        }
      : {}),
    cursor: { drag: { x: true, y: false, setScale: false } },
    legend: { live: true },
    // The queried range, also where there are few points.
    scales: { x: { time: true, range: () => [start, end] } },
    series: [
      { label: 'Time', value: (_u, v) => (v == null ? '' : new Date(v * 1000).toISOString().replace('T', ' ').slice(0, 19)) },
      ...series.map((s, i) => ({
        label: formatLabels(s.metric),
        stroke: COLORS[i % COLORS.length],
        fill: panel.stacked ? COLORS[i % COLORS.length] + '40' : undefined,
        width: 1.5,
        spanGaps: false,
        points: { show: times.length < 60 },
      })),
    ],
    hooks: {
      drawClear: [
        (u) => {
          const ctx = u.ctx;
          for (const b of bands) {
            const left = Math.max(u.valToPos(b.start, 'x', true), u.bbox.left);
            const right = Math.min(u.valToPos(b.end, 'x', true), u.bbox.left + u.bbox.width);
            if (right <= left) continue;
            ctx.fillStyle = b.color;
            ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
          }
        },
      ],
      setSelect: [
        (u) => {
          if (u.select.width < 2) return;
          const start = u.posToVal(u.select.left, 'x');
          const end = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          onZoom(start, end);
        },
      ],
    },
  };
  const chart = new uPlot(opts, [times, ...columns] as uPlot.AlignedData, parent);
  return chart;
}
