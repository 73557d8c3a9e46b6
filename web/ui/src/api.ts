// Talking to promflow's HTTP API (the same endpoints Prometheus's own UI uses), and
// the path prefix the UI is served under (--web.external-url / --web.route-prefix).

/** The UI's pages, at Prometheus's paths. */
export const PAGES = [
  '/graph',
  '/query',
  '/alerts',
  '/targets',
  '/rules',
  '/service-discovery',
  '/status',
  '/flags',
  '/config',
  '/tsdb-status',
  '/alert-composer',
  '/dashboards',
];

/** A wall-display dashboard's path: `/dashboard/<name>`. */
const DASHBOARD = /\/dashboard\/[^/]+$/;

/** The prefix before the page's path, as Prometheus's UI derives it: `/prom/graph` -> `/prom`. */
export function pathPrefix(pathname: string = location.pathname): string {
  const path = pathname.replace(/\/+$/, '');
  const dashboard = path.match(DASHBOARD);
  if (dashboard) return path.slice(0, dashboard.index);
  const page = PAGES.find((p) => path.endsWith(p));
  return page ? path.slice(0, path.length - page.length) : path;
}

/** The page's path without the prefix: `/prom/graph` -> `/graph`. */
export function pagePath(pathname: string = location.pathname): string {
  return pathname.replace(/\/+$/, '').slice(pathPrefix(pathname).length) || '/graph';
}

/** The API envelope: data on success, Prometheus's error text otherwise, plus warnings and infos. */
export interface ApiResult<T> {
  status: 'success' | 'error';
  data?: T;
  errorType?: string;
  error?: string;
  warnings?: string[];
  infos?: string[];
}

/** GET `prefix + path`; an HTTP or network failure comes back as an error result. */
export function apiGet<T>(path: string, params?: Record<string, string>): Promise<ApiResult<T>> {
  const query = params ? '?' + new URLSearchParams(params).toString() : '';
  return apiRequest<T>(path + query, { cache: 'no-store' });
}

/** `method` (POST, PUT) `body` to `prefix + path`, answered like {@link apiGet}. */
export function apiSend<T>(method: string, path: string, body: string, contentType: string): Promise<ApiResult<T>> {
  return apiRequest<T>(path, { method, body, headers: { 'Content-Type': contentType } });
}

async function apiRequest<T>(pathAndQuery: string, init: RequestInit): Promise<ApiResult<T>> {
  try {
    const res = await fetch(pathPrefix() + pathAndQuery, init);
    const text = await res.text();
    try {
      return JSON.parse(text) as ApiResult<T>;
    } catch {
      return { status: 'error', error: `HTTP ${res.status}: ${text.trim()}` };
    }
  } catch (e) {
    return { status: 'error', error: `request failed: ${e}` };
  }
}

/** Like {@link apiGet}, but throws the error text instead of returning it. */
export async function apiData<T>(path: string, params?: Record<string, string>): Promise<T> {
  const r = await apiGet<T>(path, params);
  if (r.status !== 'success' || r.data === undefined) {
    throw new Error(r.error ?? 'no data');
  }
  return r.data;
}
