// Live pages: a page subscribes to promflow's push stream (`/api/v1/stream`, Server-Sent
// Events) for the series whose changes mean its data changed — `ALERTS` for the alerts
// and rules pages, `up` for the targets page — and re-fetches its API when one does.
//
// Contract: `onChange` runs (at most every `MIN_INTERVAL_MS`) after a series appears, goes
// stale or expires, or changes its value; a sample repeating the value it had is no
// change (every scrape writes `up`, every evaluation `ALERTS`). The stream's snapshot
// (up to `snapshot_end`) is the starting state, not a change — except after a
// reconnect: a stream that was dropped (`dropped`: the consumer was too slow) or lost
// (promflow restarted) is reopened after `RECONNECT_MS`, and its new snapshot is
// compared with what was held, so nothing missed in between goes unseen. Only one
// subscription is open at a time: opening one (a page change) closes the previous one.

import { pathPrefix } from './api';

const MIN_INTERVAL_MS = 300;
const RECONNECT_MS = 2000;

/** Closes the stream of the page that was shown before. */
let current: (() => void) | null = null;
/** Bumped by every page change: a page whose data arrives after it was left does not subscribe. */
let generation = 0;

/** Closes the open subscription, if any (the router calls it on every page change). */
export function stopLive(): void {
  current?.();
  current = null;
  generation++;
}

/** The current page's generation, to compare with {@link isCurrent} later. */
export function pageGeneration(): number {
  return generation;
}

/** Whether no page change happened since `g` was taken. */
export function isCurrent(g: number): boolean {
  return g === generation;
}

/** Subscribes to the series matching `selectors`; returns the function that closes it. */
export function subscribeLive(selectors: string[], onChange: () => void): () => void {
  current?.();
  const params = new URLSearchParams();
  for (const s of selectors) params.append('match[]', s);
  const url = `${pathPrefix()}/api/v1/stream?${params}`;
  // The value of each live series, by its label set as JSON.
  let held = new Map<string, string>();
  let closed = false;
  let source: EventSource | null = null;
  let timer: number | undefined;
  let pending: number | undefined;
  let lastRun = 0;

  const changed = () => {
    if (pending !== undefined) return;
    const wait = Math.max(0, lastRun + MIN_INTERVAL_MS - Date.now());
    pending = window.setTimeout(() => {
      pending = undefined;
      lastRun = Date.now();
      if (!closed) onChange();
    }, wait);
  };

  const open = (reconnect: boolean) => {
    // During a snapshot the series arrive into `next`, compared with `held` at its end.
    let next: Map<string, string> | null = new Map();
    const es = new EventSource(url);
    source = es;
    const key = (data: { labels: Record<string, string> }) =>
      JSON.stringify(Object.entries(data.labels).sort(([a], [b]) => a.localeCompare(b)));
    es.addEventListener('sample', (e) => {
      const data = JSON.parse((e as MessageEvent).data);
      const k = key(data);
      if (next) {
        next.set(k, data.value);
        return;
      }
      if (held.get(k) !== data.value) changed();
      held.set(k, data.value);
    });
    const gone = (e: Event) => {
      const k = key(JSON.parse((e as MessageEvent).data));
      if (next) next.delete(k);
      else if (held.delete(k)) changed();
    };
    es.addEventListener('stale', gone);
    es.addEventListener('expired', gone);
    es.addEventListener('snapshot_end', () => {
      const snapshot = next!;
      next = null;
      const differs =
        snapshot.size !== held.size || [...snapshot].some(([k, v]) => held.get(k) !== v);
      held = snapshot;
      if (reconnect && differs) changed();
    });
    const retry = () => {
      es.close();
      if (closed || source !== es) return;
      source = null;
      timer = window.setTimeout(() => open(true), RECONNECT_MS);
    };
    es.addEventListener('dropped', retry);
    // Lost connection (promflow restarted) or refused (503): reopen ourselves rather
    // than let EventSource retry with its own timing, so the snapshot is compared.
    es.addEventListener('error', retry);
  };
  open(false);

  const close = () => {
    closed = true;
    source?.close();
    window.clearTimeout(timer);
    window.clearTimeout(pending);
  };
  current = close;
  return close;
}
