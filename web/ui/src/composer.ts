// The alert composer (`/alert-composer`): an alerting rule being written — expression,
// `for`, `keep_firing_for`, labels, annotations — replayed over stored history by
// `POST /api/v1/rules/simulate` (the rule manager's own state machine and templates).
// The expression is graphed over the chosen range, with the times each alert series
// would have been pending (orange) and firing (red) shaded behind it; below, each alert
// series' runs and annotations. The rule can be copied as YAML or registered through
// the rules API (`PUT /api/v1/rules/{namespace}/{group}`, with --web.enable-rules-api).
// The form is kept in the URL so that a composed rule can be shared as a link.

import { EditorView, keymap, placeholder } from '@codemirror/view';
import { EditorState } from '@codemirror/state';
import { defaultKeymap, history as editHistory, historyKeymap } from '@codemirror/commands';
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching } from '@codemirror/language';
import { apiGet, apiSend } from './api';
import { errorBox, formatDuration, formatLabels, h, labelBadges } from './dom';
import { formatRange, graphView, parseDuration, promqlExtension, type Band, type QueryData } from './query';

type Labels = Record<string, string>;

interface Run {
  state: 'pending' | 'firing';
  start: number;
  end: number;
  activeAt: number;
}
interface SimulatedAlert {
  labels: Labels;
  annotations: Labels;
  intervals: Run[];
}
interface Simulation {
  interval: number;
  evaluations: number;
  alerts: SimulatedAlert[];
  errors: { time: number; error: string }[];
}

/** The composed rule and the range it is replayed over. */
interface Form {
  name: string;
  expr: string;
  for: string;
  keepFiringFor: string;
  labels: string;
  annotations: string;
  range: string;
  end: string;
  interval: string;
}

const FIELDS: [keyof Form, string, string][] = [
  ['name', 'alert', 'HighErrorRate'],
  ['expr', 'expr', ''],
  ['for', 'for', '5m'],
  ['keepFiringFor', 'keep_firing_for', '0s'],
  ['labels', 'labels', 'severity: page'],
  ['annotations', 'annotations', 'summary: {{ $labels.instance }} is at {{ $value }}'],
  ['range', 'range', '1h'],
  ['end', 'end', ''],
  ['interval', 'interval', '1m'],
];

const PENDING = 'rgba(230, 119, 0, 0.22)';
const FIRING = 'rgba(201, 42, 42, 0.25)';

function formFromSearch(search: string): Form {
  const params = new URLSearchParams(search);
  const form = {} as Form;
  for (const [key, param, fallback] of FIELDS) form[key] = params.get(param) ?? fallback;
  return form;
}

function searchFromForm(form: Form): string {
  const params = new URLSearchParams();
  for (const [key, param] of FIELDS) if (form[key]) params.set(param, form[key]);
  return '?' + params.toString();
}

/** `key: value` lines as a map (quotes around a value are taken off). */
export function parsePairs(text: string): Labels {
  const out: Labels = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at < 0 || !line.trim()) continue;
    let value = line.slice(at + 1).trim();
    if (/^".*"$/.test(value)) {
      try {
        value = JSON.parse(value);
      } catch {
        // Kept as written.
      }
    } else if (/^'.*'$/.test(value)) value = value.slice(1, -1).replace(/''/g, "'");
    out[line.slice(0, at).trim()] = value;
  }
  return out;
}

/** A YAML scalar: plain when it reads back as the same string, else double-quoted (JSON is YAML). */
function yamlString(s: string): string {
  return /^[A-Za-z0-9_][A-Za-z0-9_ .\/()-]*$/.test(s) && !/ $/.test(s) && !/^(true|false|null|yes|no|on|off|~)$/i.test(s) && !/^[0-9.]+$/.test(s)
    ? s
    : JSON.stringify(s);
}

/** The rule as a rule file's list item, `indent` spaces in. */
export function ruleYaml(form: Form, indent = ''): string {
  const lines = [`- alert: ${yamlString(form.name)}`, `  expr: ${yamlString(form.expr)}`];
  if (parseDuration(form.for)) lines.push(`  for: ${form.for}`);
  if (parseDuration(form.keepFiringFor)) lines.push(`  keep_firing_for: ${form.keepFiringFor}`);
  for (const [title, text] of [
    ['labels', form.labels],
    ['annotations', form.annotations],
  ]) {
    const pairs = Object.entries(parsePairs(text));
    if (!pairs.length) continue;
    lines.push(`  ${title}:`);
    for (const [k, v] of pairs) lines.push(`    ${k}: ${yamlString(v)}`);
  }
  return lines.map((l) => indent + l).join('\n') + '\n';
}

/** The rule as the JSON object the simulate endpoint takes (a rule file's rule). */
function ruleJson(form: Form): Record<string, unknown> {
  const rule: Record<string, unknown> = { alert: form.name, expr: form.expr };
  if (parseDuration(form.for)) rule['for'] = form.for;
  if (parseDuration(form.keepFiringFor)) rule['keep_firing_for'] = form.keepFiringFor;
  const labels = parsePairs(form.labels);
  if (Object.keys(labels).length) rule['labels'] = labels;
  const annotations = parsePairs(form.annotations);
  if (Object.keys(annotations).length) rule['annotations'] = annotations;
  return rule;
}

export function renderComposer(root: HTMLElement): void {
  const form = formFromSearch(location.search);
  const save = () => history.replaceState(null, '', location.pathname + searchFromForm(form));
  const output = h('div', { class: 'composer-output' });
  const yaml = h('pre', { class: 'rule-def composer-yaml' });
  const notice = h('div', { class: 'composer-notice' });
  const showYaml = () => (yaml.textContent = ruleYaml(form));

  const editor = new EditorView({
    state: EditorState.create({
      doc: form.expr,
      extensions: [
        promqlExtension(),
        editHistory(),
        autocompletion(),
        closeBrackets(),
        bracketMatching(),
        syntaxHighlighting(defaultHighlightStyle),
        placeholder('Alerting expression, e.g. rate(errors_total[5m]) > 0.1'),
        keymap.of([
          // Enter runs the simulation; the completion keymap (Enter accepts) goes first.
          { key: 'Enter', run: () => (void simulate(), true) },
          ...closeBracketsKeymap,
          ...defaultKeymap,
          ...historyKeymap,
          ...completionKeymap,
        ]),
        EditorView.updateListener.of((u) => {
          if (!u.docChanged) return;
          form.expr = u.state.doc.toString();
          showYaml();
          save();
        }),
      ],
    }),
  });

  const input = (key: keyof Form, attrs: Record<string, unknown> = {}) =>
    h('input', {
      name: key,
      value: form[key],
      ...attrs,
      oninput: (e: Event) => {
        form[key] = (e.target as HTMLInputElement).value;
        showYaml();
        save();
      },
      onkeydown: (e: KeyboardEvent) => {
        if (e.key === 'Enter') void simulate();
      },
    });
  const textarea = (key: keyof Form) =>
    h('textarea', {
      name: key,
      rows: 3,
      oninput: (e: Event) => {
        form[key] = (e.target as HTMLTextAreaElement).value;
        showYaml();
        save();
      },
    });
  const labels = textarea('labels');
  labels.value = form.labels;
  const annotations = textarea('annotations');
  annotations.value = form.annotations;
  const namespace = h('input', { name: 'namespace', value: 'composer', size: 14 });
  const group = h('input', { name: 'group', value: '', placeholder: 'group (default: the alert name)', size: 24 });

  async function simulate(): Promise<void> {
    const range = parseDuration(form.range);
    const interval = parseDuration(form.interval);
    if (!form.expr.trim() || !range || !interval) {
      output.replaceChildren(errorBox('Give an expression, a range (e.g. 6h) and an evaluation interval (e.g. 1m).'));
      return;
    }
    const endMs = form.end ? Date.parse(form.end.includes('T') ? form.end : form.end.replace(' ', 'T') + 'Z') : Date.now();
    if (Number.isNaN(endMs)) {
      output.replaceChildren(errorBox(`Cannot read the end time ${JSON.stringify(form.end)} (use 2006-01-02 15:04:05, UTC).`));
      return;
    }
    // Evaluations at whole multiples of the interval, as a long-running rule manager's would be.
    const end = Math.floor(endMs / 1000 / interval) * interval;
    const start = end - Math.floor(range / interval) * interval;
    output.replaceChildren(h('p', { class: 'muted' }, 'Simulating…'));
    const [sim, graph] = await Promise.all([
      apiSend<Simulation>('POST', '/api/v1/rules/simulate', JSON.stringify({ rule: ruleJson(form), start, end, interval: `${interval}s` }), 'application/json'),
      apiGet<QueryData>('/api/v1/query_range', { query: form.expr, start: String(start), end: String(end), step: String(interval) }),
    ]);
    if (sim.status !== 'success' || !sim.data) {
      output.replaceChildren(errorBox(sim.error ?? 'simulation failed'));
      return;
    }
    const data = sim.data;
    const firing = data.alerts.filter((a) => a.intervals.some((r) => r.state === 'firing')).length;
    const summary = h(
      'p',
      { class: 'composer-summary' },
      `${data.evaluations} evaluations every ${formatRange(data.interval)}: ${data.alerts.length} alert series became active, ${firing} fired.`,
    );
    const chart = h('div', { class: 'composer-graph' });
    output.replaceChildren(summary, ...data.errors.map((e) => errorBox(`${new Date(e.time * 1000).toISOString()}: ${e.error}`)), chart, runsTable(data, start, end));
    if (graph.status === 'success' && graph.data) {
      // A state holds from its evaluation until the next one.
      const bands: Band[] = data.alerts.flatMap((a) =>
        a.intervals.map((r) => ({ start: r.start, end: r.end + data.interval, color: r.state === 'firing' ? FIRING : PENDING })),
      );
      graphView(chart, graph.data, { stacked: false }, [start, end], (s, e) => {
        form.range = formatRange(Math.max(e - s, interval));
        form.end = new Date(e * 1000).toISOString().slice(0, 19).replace('T', ' ');
        rangeInput.value = form.range;
        endInput.value = form.end;
        save();
        void simulate();
      }, { bands });
    } else {
      chart.replaceChildren(errorBox(graph.error ?? 'the range query failed'));
    }
  }

  async function register(): Promise<void> {
    const name = group.value.trim() || form.name;
    const body = `name: ${yamlString(name)}\nrules:\n${ruleYaml(form, '  ')}`;
    const ns = namespace.value.trim() || 'composer';
    const r = await apiSend<null>('PUT', `/api/v1/rules/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`, body, 'application/yaml');
    notice.replaceChildren(
      r.status === 'success'
        ? h('div', { class: 'alert info' }, `Registered as group ${name} in namespace ${ns}: see the Rules page.`)
        : errorBox(r.error ?? 'registering failed'),
    );
  }

  const rangeInput = input('range', { size: 6 });
  const endInput = input('end', { size: 19, placeholder: 'now' });
  showYaml();
  root.replaceChildren(
    h('h1', {}, 'Alert composer'),
    h(
      'p',
      { class: 'muted' },
      'Write an alerting rule and see when it would have been pending and firing over stored history: the rule manager\'s own state machine, replayed at each evaluation.',
    ),
    h(
      'div',
      { class: 'composer-form' },
      h('label', {}, 'alert', input('name', { size: 24 })),
      h('div', { class: 'expr-row' }, h('div', { class: 'editor' }, editor.dom)),
      h(
        'div',
        { class: 'controls' },
        h('label', {}, 'for ', input('for', { size: 6 })),
        h('label', {}, 'keep_firing_for ', input('keepFiringFor', { size: 6 })),
        h('label', {}, 'range ', rangeInput),
        h('label', {}, 'end ', endInput),
        h('label', {}, 'evaluation interval ', input('interval', { size: 6 })),
        h('button', { class: 'primary simulate', onclick: () => void simulate() }, 'Simulate'),
      ),
      h('div', { class: 'pairs' }, h('label', {}, 'labels', labels), h('label', {}, 'annotations (templates)', annotations)),
    ),
    output,
    h('h2', {}, 'The rule'),
    yaml,
    h(
      'div',
      { class: 'controls' },
      h(
        'button',
        {
          class: 'copy-yaml',
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(ruleYaml(form));
              notice.replaceChildren(h('div', { class: 'alert info' }, 'Copied the rule as YAML.'));
            } catch (e) {
              notice.replaceChildren(errorBox(`Cannot copy: ${e}`));
            }
          },
        },
        'Copy as YAML',
      ),
      'namespace ',
      namespace,
      group,
      h('button', { class: 'register', onclick: () => void register() }, 'Register through the rules API'),
    ),
    notice,
  );
  if (form.expr.trim()) void simulate();
}

/** Each alert series with its runs drawn on a strip over the range, and its annotations. */
function runsTable(data: Simulation, start: number, end: number): HTMLElement {
  if (!data.alerts.length) return h('p', { class: 'muted' }, 'No alert would have been pending or firing in this range.');
  const span = Math.max(end + data.interval - start, 1);
  const time = (s: number) => new Date(s * 1000).toISOString().slice(0, 19).replace('T', ' ');
  return h(
    'table',
    { class: 'data composer-runs' },
    h('thead', {}, h('tr', {}, ['Alert', 'Pending and firing', 'Annotations'].map((c) => h('th', {}, c)))),
    h(
      'tbody',
      {},
      data.alerts.map((a) =>
        h(
          'tr',
          {},
          h('td', { title: formatLabels(a.labels) }, labelBadges(a.labels)),
          h(
            'td',
            {},
            h(
              'div',
              { class: 'strip' },
              a.intervals.map((r) =>
                h('span', {
                  class: `run ${r.state}`,
                  style: `left: ${((r.start - start) / span) * 100}%; width: ${Math.max(((r.end + data.interval - r.start) / span) * 100, 0.3)}%`,
                  title: `${r.state} ${time(r.start)} – ${time(r.end + data.interval)}`,
                }),
              ),
            ),
            h(
              'ul',
              { class: 'runs' },
              a.intervals.map((r) =>
                h(
                  'li',
                  { class: `run-${r.state}` },
                  h('span', { class: `state ${r.state}` }, r.state.toUpperCase()),
                  ` ${time(r.start)} → ${time(r.end + data.interval)} (${formatDuration((r.end + data.interval - r.start) * 1000)}), active since ${time(r.activeAt)}`,
                ),
              ),
            ),
          ),
          h(
            'td',
            {},
            h('dl', { class: 'annotations' }, Object.entries(a.annotations).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
          ),
        ),
      ),
    ),
  );
}
