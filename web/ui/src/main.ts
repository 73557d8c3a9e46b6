// The app shell: the navigation bar and the client-side router. promflow serves this
// app's index.html at every page path (src/api/ui.rs), so each page is a bookmarkable URL
// at Prometheus's path under the route prefix.

import './style.css';
import { pagePath, pathPrefix } from './api';
import { renderComposer } from './composer';
import { renderDashboard, renderDashboardList } from './dashboard';
import { h } from './dom';
import { stopLive } from './live';
import {
  renderAlerts,
  renderConfig,
  renderFlags,
  renderRules,
  renderServiceDiscovery,
  renderStatus,
  renderTargets,
  renderTsdbStatus,
} from './pages';
import { renderQueryPage } from './query';

const ROUTES: Record<string, (root: HTMLElement) => void | Promise<void>> = {
  '/graph': renderQueryPage,
  '/query': renderQueryPage,
  '/alerts': renderAlerts,
  '/targets': renderTargets,
  '/rules': renderRules,
  '/service-discovery': renderServiceDiscovery,
  '/status': renderStatus,
  '/flags': renderFlags,
  '/config': renderConfig,
  '/tsdb-status': renderTsdbStatus,
  '/alert-composer': renderComposer,
  '/dashboards': renderDashboardList,
};

const NAV: [string, string][] = [
  ['/query', 'Query'],
  ['/alerts', 'Alerts'],
  ['/alert-composer', 'Alert composer'],
  ['/targets', 'Targets'],
  ['/rules', 'Rules'],
  ['/service-discovery', 'Service discovery'],
  ['/status', 'Status'],
  ['/tsdb-status', 'TSDB status'],
  ['/flags', 'Flags'],
  ['/config', 'Config'],
  ['/dashboards', 'Dashboards'],
];

function renderNav(current: string): void {
  const active = current === '/graph' ? '/query' : current;
  document.getElementById('nav')!.replaceChildren(
    h('a', { class: 'brand', href: pathPrefix() + '/query', 'data-link': true }, 'promflow'),
    ...NAV.map(([path, label]) =>
      h('a', { href: pathPrefix() + path, 'data-link': true, class: path === active ? 'active' : '' }, label),
    ),
  );
}

function route(): void {
  // The page left no longer needs its stream.
  stopLive();
  const page = pagePath();
  const root = document.getElementById('app')!;
  // A wall display is full screen: no navigation, its own dark theme.
  document.body.classList.remove('wall');
  if (page.startsWith('/dashboard/')) {
    document.getElementById('nav')!.replaceChildren();
    void renderDashboard(root, decodeURIComponent(page.slice('/dashboard/'.length)));
    return;
  }
  renderNav(page);
  const render = ROUTES[page];
  document.title = `promflow · ${page.slice(1)}`;
  if (render) void render(root);
  else root.replaceChildren(h('p', {}, `No page at ${page}.`));
}

// In-app links change the page without a reload.
document.addEventListener('click', (e) => {
  const a = (e.target as HTMLElement).closest('a[data-link]') as HTMLAnchorElement | null;
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  history.pushState(null, '', a.href);
  route();
});
window.addEventListener('popstate', route);
route();
