// A tiny DOM builder and formatting helpers shared by the pages.

type Child = Node | string | number | null | undefined | false;

/** `h('a', {href: 'x'}, 'text')`: an element with attributes (on* as listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, unknown> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (k === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(v);
    } else if (k === 'checked') {
      (el as HTMLInputElement).checked = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** `{a="b", c="d"}` or `name{…}` as PromQL prints a label set. */
export function formatLabels(labels: Record<string, string>, withName = true): string {
  const name = withName ? labels['__name__'] ?? '' : '';
  const rest = Object.entries(labels)
    .filter(([k]) => !withName || k !== '__name__')
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return rest.length || !name ? `${name}{${rest.join(', ')}}` : name;
}

/** Label chips: one badge per label. */
export function labelBadges(labels: Record<string, string> | undefined): HTMLElement {
  return h(
    'div',
    { class: 'labels' },
    Object.entries(labels ?? {}).map(([k, v]) => h('span', { class: 'badge' }, `${k}="${v}"`)),
  );
}

/** `3m 20s ago` for an RFC 3339 time; 'never' for Go's zero time. */
export function ago(time: string | undefined): string {
  if (!time || time.startsWith('0001-01-01')) return 'never';
  const ms = Date.now() - Date.parse(time);
  if (Number.isNaN(ms)) return time;
  return `${formatDuration(Math.max(ms, 0))} ago`;
}

/** Milliseconds as `1h 2m 3s` / `250ms`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let s = Math.floor(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  if (s || !parts.length) parts.push(`${s}s`);
  return parts.join(' ');
}

/** Seconds (as the API gives durations) as `12.3ms` / `1.234s`. */
export function formatSeconds(s: number | undefined): string {
  if (s === undefined) return '';
  return s < 1 ? `${(s * 1000).toFixed(3)}ms` : `${s.toFixed(3)}s`;
}

/** An error box with Prometheus's error text. */
export function errorBox(text: string): HTMLElement {
  return h('div', { class: 'alert error', role: 'alert' }, text);
}

/** A text input that hides rows of `table` not containing its text. */
export function filterBox(onFilter: (text: string) => void, placeholder = 'Filter'): HTMLInputElement {
  return h('input', {
    class: 'filter',
    type: 'search',
    placeholder,
    oninput: (e: Event) => onFilter((e.target as HTMLInputElement).value.toLowerCase()),
  });
}
