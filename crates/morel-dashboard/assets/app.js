// Morel dashboard: a small client app over the JSON control API. No build step, no framework.
//
// Rules this file keeps:
// - Server data is rendered only through DOM nodes and textContent (see `h`), never parsed as HTML.
// - The admin token lives in sessionStorage and travels only in the Authorization header. It is
//   never put in a URL, a cookie or the page, and the public call path is called without it.
// - Every page gets a context (`ctx`) whose timers and requests stop when the user leaves it, so
//   nothing from an old page writes into a new one.
'use strict';

(() => {
  const TOKEN_KEY = 'morel.token';
  const POLL_MS = 2500;
  const MAX_LOG_LINES = 5000;

  const main = document.getElementById('main');
  const nav = document.getElementById('nav');

  // ---------------------------------------------------------------------------------------------
  // DOM helpers

  /** Creates an element. `props`: attributes, plus `class`, `text`, `dataset`, `on<event>`. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = String(value);
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2), value);
      } else if (key === 'value' || key === 'checked' || key === 'disabled') el[key] = value;
      else if (key === 'href') el.setAttribute('href', safeHref(value));
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    put(el, children);
    return el;
  }

  /** Appends children: nodes as they are, anything else as text; null/false are skipped. */
  function put(el, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** Only in-app hashes and http(s) URLs become links; anything else (javascript:, data:) is dropped. */
  function safeHref(url) {
    const s = String(url);
    if (s.startsWith('#')) return s;
    try {
      const u = new URL(s, location.href);
      if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
    } catch (_) {
      // not a URL
    }
    return '#';
  }

  const enc = encodeURIComponent;

  function notice(kind, ...text) {
    return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...text);
  }

  function badge(status) {
    const s = String(status || 'unknown').toLowerCase();
    let tone = 'muted';
    if (['ready', 'completed', 'deployed', 'updated', 'live'].includes(s)) tone = 'ok';
    else if (['failed', 'timed_out', 'error'].includes(s)) tone = 'bad';
    else if (['pending', 'installing', 'starting', 'launching', 'compiling', 'draining', 'connecting', 'reconnecting'].includes(s)) tone = 'busy';
    return h('span', { class: `badge ${tone}`, text: s.replace('_', ' ') });
  }

  function code(text, title) {
    return h('code', { text, title });
  }

  function short(text, n) {
    const s = String(text || '');
    return s.length > n ? s.slice(0, n) : s;
  }

  /** The tail of an id: Morel's ids are UUIDv7, whose leading characters are a timestamp. */
  function idTail(id) {
    const s = String(id || '');
    return s.length > 8 ? s.slice(-8) : s;
  }

  /** A section with a heading. */
  function card(title, ...body) {
    return h('section', { class: 'card' }, title ? h('h2', { text: title }) : null, ...body);
  }

  /**
   * A table that turns into labelled cards on narrow screens: every cell carries its column's
   * name in data-label, which the stylesheet shows in front of the value.
   * `columns`: [{label, cell(row) -> node|text, class?}].
   */
  function table(columns, rows, empty, rowProps) {
    if (!rows.length) return h('p', { class: 'empty', text: empty });
    return h('div', { class: 'table-wrap' },
      h('table', { class: 'rt' },
        h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', text: c.label })))),
        h('tbody', null, rows.map((row) => h('tr', rowProps ? rowProps(row) : null,
          columns.map((c) => h('td', { 'data-label': c.label, class: c.class }, c.cell(row))))))));
  }

  function pretty(value) {
    if (typeof value === 'string') return value;
    try {
      return JSON.stringify(value, null, 2);
    } catch (_) {
      return String(value);
    }
  }

  /** A relative time (`3 min ago`) or an uptime (`5m 3s`) kept current by the ticker below. */
  function since(ms, format) {
    if (!Number.isFinite(ms)) return '—';
    const el = h('time', { class: 'since', dataset: { since: String(ms), format } });
    if (format === 'ago') {
      el.setAttribute('datetime', new Date(ms).toISOString());
      el.title = new Date(ms).toLocaleString();
    }
    tickOne(el, Date.now());
    return el;
  }

  function tickOne(el, now) {
    const secs = Math.max(0, Math.round((now - Number(el.dataset.since)) / 1000));
    el.textContent = el.dataset.format === 'ago' ? ago(secs) : duration(secs);
  }

  function ago(secs) {
    if (secs < 5) return 'just now';
    if (secs < 60) return `${secs} s ago`;
    if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
    return `${Math.floor(secs / 86400)} d ago`;
  }

  function duration(secs) {
    if (secs < 60) return `${secs}s`;
    if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
    if (secs < 86400) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
    return `${Math.floor(secs / 86400)}d ${Math.floor((secs % 86400) / 3600)}h`;
  }

  setInterval(() => {
    const now = Date.now();
    for (const el of document.querySelectorAll('time.since')) tickOne(el, now);
  }, 1000);

  // ---------------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** Thrown after a 401 has already sent the user back to the login page. */
  class SignedOut extends Error {}

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function authHeaders(extra) {
    const t = token();
    if (!t) {
      signOut('Sign in to continue.');
      throw new SignedOut();
    }
    return Object.assign({ Authorization: `Bearer ${t}` }, extra);
  }

  async function readBody(resp) {
    const text = await resp.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }

  function errorText(status, body) {
    if (body && typeof body === 'object' && body.error) return String(body.error);
    if (typeof body === 'string' && body) return body;
    return `HTTP ${status}`;
  }

  /** An authenticated control API request; JSON in, JSON out. A 401 signs the user out. */
  async function api(method, path, body, signal) {
    const init = {
      method,
      headers: authHeaders({ Accept: 'application/json' }),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      signOut('The server rejected the token (401 Unauthorized). Sign in again.');
      throw new SignedOut();
    }
    const data = await readBody(resp);
    if (!resp.ok) throw new ApiError(resp.status, errorText(resp.status, data));
    return data;
  }

  function describe(err) {
    if (err instanceof ApiError) return `${err.status}: ${err.message}`;
    if (err instanceof TypeError) return `Cannot reach the server (${err.message}).`;
    return String(err && err.message ? err.message : err);
  }

  // ---------------------------------------------------------------------------------------------
  // Pages and routing

  let current = null; // the context of the page on screen

  function newContext() {
    const controller = new AbortController();
    const timers = [];
    const ctx = {
      signal: controller.signal,
      alive: () => current === ctx && !controller.signal.aborted,
      every(ms, fn) {
        timers.push(setInterval(() => {
          if (ctx.alive()) fn();
        }, ms));
      },
      sleep: (ms) => new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        controller.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      }),
      close() {
        timers.forEach(clearInterval);
        controller.abort();
      },
    };
    return ctx;
  }

  function enter(title, section) {
    if (current) current.close();
    current = newContext();
    document.title = title ? `${title} · Morel` : 'Morel';
    for (const a of nav.querySelectorAll('a[data-section]')) {
      if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    main.replaceChildren();
    return current;
  }

  const ROUTES = [
    [/^#\/apps$/, pageApps],
    [/^#\/apps\/([^/]+)$/, pageApp],
    [/^#\/apps\/([^/]+)\/fn\/([^/]+)$/, pageFunction],
    [/^#\/apps\/([^/]+)\/logs$/, pageLogs],
    [/^#\/functions$/, pageFunctions],
    [/^#\/nodes$/, pageNodes],
  ];

  function route() {
    if (!token()) {
      pageLogin();
      return;
    }
    nav.hidden = false;
    for (const [pattern, page] of ROUTES) {
      const m = location.hash.match(pattern);
      if (!m) continue;
      let args;
      try {
        args = m.slice(1).map(decodeURIComponent);
      } catch (_) {
        break;
      }
      page(...args).catch((err) => {
        if (err instanceof SignedOut || (current && !current.alive())) return;
        main.append(notice('error', describe(err)));
      });
      return;
    }
    location.replace('#/apps');
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    pageLogin(message);
  }

  /**
   * Loads data now and every `ms`, re-rendering `into` only when the data changed (so a periodic
   * refresh never swaps a button from under the pointer). `volatile` keys are left out of the
   * comparison: they change on every read and are kept current by the ticker instead.
   */
  async function poll(ctx, into, ms, load, render, volatile) {
    let last = null;
    let failing = null;
    let inFlight = false; // a slow read is not overlapped by the next one, so renders stay in order
    const tick = async () => {
      if (inFlight) return;
      inFlight = true;
      let data;
      try {
        data = await load();
      } catch (err) {
        if (err instanceof SignedOut || !ctx.alive()) return;
        if (last === null) into.replaceChildren(notice('error', describe(err)));
        else if (!failing) {
          failing = notice('error', `Refresh failed: ${describe(err)}`);
          into.prepend(failing);
        }
        return;
      } finally {
        inFlight = false;
      }
      if (!ctx.alive()) return;
      const key = JSON.stringify(data, (k, v) => (volatile && volatile.includes(k) ? undefined : v));
      if (key === last && !failing) return;
      last = key;
      failing = null;
      into.replaceChildren(...[render(data)].flat());
    };
    await tick();
    ctx.every(ms, tick);
    return tick; // to refresh at once after an action
  }

  // --- Login -------------------------------------------------------------------------------------

  function pageLogin(message) {
    const ctx = enter('Sign in', null);
    nav.hidden = true;
    const input = h('input', {
      id: 'token', type: 'password', autocomplete: 'current-password', required: true,
      spellcheck: 'false', autocapitalize: 'off',
    });
    const status = h('div', { id: 'login-status', 'aria-live': 'polite' },
      message ? notice('error', message) : null);
    const button = h('button', { type: 'submit', text: 'Sign in' });
    // No `name` on the input and method=post: even without this script the token is never sent
    // in a query string.
    const form = h('form', { method: 'post', action: '#', class: 'stack', onsubmit: submit },
      h('label', { for: 'token', text: 'Admin token' }), input, button);

    async function submit(event) {
      event.preventDefault();
      const candidate = input.value.trim();
      if (!candidate) return;
      button.disabled = true;
      status.replaceChildren(notice('info', 'Checking the token…'));
      try {
        const resp = await fetch('/api/apps', {
          headers: { Authorization: `Bearer ${candidate}`, Accept: 'application/json' },
          cache: 'no-store',
          credentials: 'omit',
          signal: ctx.signal,
        });
        if (!ctx.alive()) return;
        if (resp.status === 401) {
          status.replaceChildren(notice('error', 'That token was rejected (401 Unauthorized). Check STATE_DIR/admin.token.'));
          input.select();
          return;
        }
        if (!resp.ok) {
          status.replaceChildren(notice('error', `The server answered ${resp.status}: ${errorText(resp.status, await readBody(resp))}`));
          return;
        }
        input.value = '';
        sessionStorage.setItem(TOKEN_KEY, candidate);
        // An unknown hash is replaced, and the hashchange that follows routes; else route now.
        if (ROUTES.some(([p]) => p.test(location.hash))) route();
        else location.replace('#/apps');
      } catch (err) {
        if (ctx.alive()) status.replaceChildren(notice('error', describe(err)));
      } finally {
        button.disabled = false;
      }
    }

    put(main, h('section', { class: 'card login' },
      h('h1', { text: 'Sign in to Morel' }),
      h('p', null, 'Paste the admin token. ', code('morel up'), ' creates it at ',
        code('STATE_DIR/admin.token'), ' and prints the path when it starts (the default is ',
        code('./.morel/admin.token'), ').'),
      form,
      status,
      h('p', { class: 'hint', text: 'The token is kept in this tab only (sessionStorage) and sent as an Authorization header.' })));
    input.focus();
  }

  // --- Apps --------------------------------------------------------------------------------------

  async function pageApps() {
    const ctx = enter('Apps', 'apps');
    const list = h('div', { id: 'apps' }, notice('info', 'Loading…'));
    put(main, h('div', { class: 'page-head' }, h('h1', { text: 'Apps' })), card(null, list));
    await poll(ctx, list, POLL_MS, () => api('GET', '/api/apps', undefined, ctx.signal), (apps) => table([
      { label: 'Name', cell: (a) => h('a', { href: `#/apps/${enc(a.name)}`, class: 'strong', text: a.name }) },
      { label: 'Status', cell: (a) => badge(a.status) },
      { label: 'Active release', cell: (a) => a.active_release || 'none' },
      { label: 'URL', class: 'wrap', cell: (a) => (a.url ? code(a.url) : '—') },
      { label: 'Updated', cell: (a) => since(Date.parse(a.updated_at), 'ago') },
    ], apps, 'No apps yet. Deploy one with `morel deploy DIR`.'));
  }

  // --- One app -----------------------------------------------------------------------------------

  async function pageApp(name) {
    const ctx = enter(name, 'apps');
    const messages = h('div', { id: 'app-messages', 'aria-live': 'polite' });
    const body = h('div', { id: 'app' }, notice('info', 'Loading…'));
    put(main,
      crumbs([['Apps', '#/apps'], [name]]),
      h('div', { class: 'page-head' }, h('h1', { text: name }),
        h('a', { class: 'button secondary', href: `#/apps/${enc(name)}/logs`, text: 'Live logs' })),
      messages, body);

    // A rollback in progress: the release number it targets, until it is active or failed.
    let rollingBack = null;

    async function rollBack(release) {
      if (!window.confirm(`Roll back ${name} to ${release.version}? It becomes the active release once its instances are ready.`)) return;
      messages.replaceChildren(notice('info', `Requesting a rollback to ${release.version}…`));
      try {
        const r = await api('POST', `/api/apps/${enc(name)}/rollback`, { release: release.number }, ctx.signal);
        rollingBack = r.number;
        messages.replaceChildren(notice('info', `Rolling back to ${r.version}: ${r.status}…`));
      } catch (err) {
        if (!(err instanceof SignedOut) && ctx.alive()) {
          messages.replaceChildren(notice('error', `Rollback to ${release.version} failed: ${describe(err)}`));
        }
      }
    }

    function followRollback(app) {
      if (rollingBack === null) return;
      const r = app.releases.find((x) => x.number === rollingBack);
      if (app.active_release === `v${rollingBack}` && r && r.status === 'ready') {
        messages.replaceChildren(notice('ok', `v${rollingBack} is the active release again.`));
        rollingBack = null;
      } else if (r && r.status === 'failed') {
        messages.replaceChildren(notice('error', `Rollback to v${rollingBack} failed: ${r.error || 'no reason given'}`));
        rollingBack = null;
      } else if (r) {
        messages.replaceChildren(notice('info', `Rolling back to v${rollingBack}: ${r.status}…`));
      }
    }

    const load = async () => {
      const app = await api('GET', `/api/apps/${enc(name)}`, undefined, ctx.signal);
      app.environments = await api('GET', `/api/apps/${enc(name)}/environments`, undefined, ctx.signal);
      return app;
    };
    await poll(ctx, body, 1500, load, (app) => {
      followRollback(app);
      return renderApp(app, rollBack);
    }, ['uptime_s']);
  }

  function renderApp(app, rollBack) {
    const ns = app.namespace || 'default';
    const summary = h('dl', { class: 'facts' },
      fact('Status', badge(app.status)),
      fact('Active release', h('strong', { id: 'active-release', text: app.active_release || 'none' })),
      fact('Namespace', ns),
      fact('URL', app.url ? code(app.url) : 'not serving'),
      app.urls && app.urls.service ? fact('HTTP service', code(app.urls.service)) : null);
    const functions = table([
      { label: 'Function', cell: (f) => h('a', { class: 'strong', href: `#/apps/${enc(app.name)}/fn/${enc(f.name)}`, text: f.name }) },
      { label: 'Signature', cell: (f) => code(`${f.is_async ? 'async ' : ''}${f.name}(${f.params.join(', ')})`) },
      { label: 'Resource', cell: (f) => f.resource },
      { label: 'URL', class: 'wrap', cell: (f) => code(f.url) },
    ], app.functions, 'No functions: the app has no active release.');
    // Path parameters ({item_id}) and query parameters are the function's named arguments.
    const routes = table([
      { label: 'Method', cell: (r) => h('strong', { text: r.method }) },
      { label: 'Path', cell: (r) => code(r.path) },
      { label: 'Function', cell: (r) => r.function },
      { label: 'URL', class: 'wrap', cell: (r) => code(r.url) },
    ], (app.urls && app.urls.routes) || [], 'No HTTP routes.', (r) => ({ dataset: { route: `${r.method} ${r.path}` } }));
    const resources = table([
      { label: 'Resource', cell: (r) => h('strong', { text: r.name }) },
      { label: 'Runtime', cell: (r) => r.runtime },
      { label: 'Status', cell: (r) => badge(r.status) },
      { label: 'Release', cell: (r) => r.release },
      { label: 'Config hash', cell: (r) => code(short(r.config_hash, 12), r.config_hash) },
      { label: 'Error', class: 'wrap', cell: (r) => r.error || '—' },
    ], app.resources, 'No resources.');
    const instances = table([
      { label: 'Instance', cell: (i) => code(idTail(i.id), i.id) },
      { label: 'Resource', cell: (i) => i.resource },
      { label: 'Release', cell: (i) => i.release },
      { label: 'State', cell: (i) => badge(i.state) },
      { label: 'PID', cell: (i) => (i.pid === null ? '—' : String(i.pid)) },
      { label: 'Restarts', cell: (i) => String(i.restarts) },
      { label: 'Uptime', cell: (i) => since(Date.now() - i.uptime_s * 1000, 'uptime') },
      { label: 'Last error', class: 'wrap', cell: (i) => i.last_error || '—' },
    ], app.instances, 'No instances are running.');
    const releases = table([
      { label: 'Release', cell: (r) => h('span', null, h('strong', { text: r.version }),
        `v${r.number}` === app.active_release ? h('span', { class: 'tag', text: 'active' }) : null) },
      { label: 'Status', cell: (r) => badge(r.status) },
      { label: 'Environment', cell: (r) => r.env },
      { label: 'Digest', cell: (r) => code(short(r.digest, 12), r.digest) },
      { label: 'Created', cell: (r) => since(Date.parse(r.created_at), 'ago') },
      { label: 'Error', class: 'wrap', cell: (r) => r.error || '—' },
      { label: 'Action', cell: (r) => (`v${r.number}` !== app.active_release && ['superseded', 'ready', 'failed'].includes(r.status)
        ? h('button', { type: 'button', class: 'secondary small', text: 'Roll back to this release', onclick: () => rollBack(r) })
        : '—') },
    ], app.releases.slice().reverse(), 'No releases yet.', (r) => ({ dataset: { release: r.version } }));
    // Production and the previews (one per git branch), each with its own address.
    const environments = table([
      { label: 'Environment', cell: (e) => h('span', null, h('strong', { text: e.name }), h('span', { class: 'tag', text: e.kind })) },
      { label: 'Branch', cell: (e) => (e.branch ? code(e.branch) : '—') },
      { label: 'Release', cell: (e) => e.release || '—' },
      { label: 'Status', cell: (e) => badge(e.status) },
      { label: 'Config', class: 'wrap', cell: (e) => namesList(e.config_names) },
      { label: 'Secrets', class: 'wrap', cell: (e) => namesList(e.secret_names) },
      { label: 'Certificate', cell: (e) => (e.certificate ? 'yes' : '—') },
      { label: 'URLs', class: 'wrap', cell: (e) => e.urls.map((u) => h('div', null, code(u))) },
      { label: 'Error', class: 'wrap', cell: (e) => e.error || '—' },
    ], app.environments || [], 'No environments.', (e) => ({ dataset: { env: e.name } }));
    return [
      card(null, summary),
      card('Environments', h('div', { id: 'environments' }, environments),
        h('p', { class: 'hint', text: 'Config values and secrets are never shown, only their names.' })),
      card('Functions', functions),
      card('Routes', h('div', { id: 'routes' }, routes)),
      card('Resources', resources),
      card('Instances', instances),
      card('Releases', releases),
    ];
  }

  /** Names only (config keys, secret names): values never reach the browser. */
  function namesList(names) {
    return names && names.length ? h('span', { class: 'list' }, names.map((n) => code(n))) : 'none';
  }

  function fact(label, value) {
    return h('div', null, h('dt', { text: label }), h('dd', null, value));
  }

  function crumbs(items) {
    return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, items.map(([label, href], i) => [
      i ? h('span', { class: 'sep', 'aria-hidden': 'true', text: '/' }) : null,
      href ? h('a', { href, text: label }) : h('span', { 'aria-current': 'page', text: label }),
    ]));
  }

  // --- One function: try it ----------------------------------------------------------------------

  async function pageFunction(appName, fnName) {
    const ctx = enter(`${fnName} · ${appName}`, 'apps');
    put(main, crumbs([['Apps', '#/apps'], [appName, `#/apps/${enc(appName)}`], [fnName]]));
    const app = await api('GET', `/api/apps/${enc(appName)}`, undefined, ctx.signal);
    if (!ctx.alive()) return;
    const fn = app.functions.find((f) => f.name === fnName);
    if (!fn) {
      put(main, notice('error', `${appName} has no function ${fnName} in its active release.`));
      return;
    }
    const ns = app.namespace || 'default';
    const callPath = `/${enc(ns)}/${enc(appName)}/latest/call/${enc(fnName)}`;
    const args = h('textarea', { id: 'args', rows: '6', spellcheck: 'false', value: '{}' });
    const button = h('button', { type: 'submit', text: 'Call' });
    const result = h('div', { id: 'result', 'aria-live': 'polite' });
    const historyBox = h('div', { id: 'history' }, notice('info', 'Loading…'));
    let refreshHistory = () => {};

    async function call(event) {
      event.preventDefault();
      const text = args.value.trim();
      if (text) {
        try {
          JSON.parse(text);
        } catch (err) {
          result.replaceChildren(notice('error', `The arguments are not JSON: ${err.message}`));
          return;
        }
      }
      button.disabled = true;
      result.replaceChildren(notice('info', 'Calling…'));
      const started = performance.now();
      try {
        // The public call path: no token is needed, so none is sent.
        const resp = await fetch(callPath, {
          method: 'POST',
          body: text,
          headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          cache: 'no-store',
          credentials: 'omit',
          signal: ctx.signal,
        });
        const body = await readBody(resp);
        const ms = Math.round(performance.now() - started);
        if (!ctx.alive()) return;
        result.replaceChildren(h('dl', { class: 'facts' },
          fact('Status', h('span', { id: 'call-status', class: `badge ${resp.ok ? 'ok' : 'bad'}`, text: `${resp.status} ${resp.statusText}`.trim() })),
          fact('Latency', h('span', { id: 'latency', text: `${ms} ms` }))),
        h('h3', { text: resp.ok ? 'Result' : 'Error' }),
        h('pre', { id: 'call-result', class: 'output', text: pretty(body) }));
        refreshHistory();
      } catch (err) {
        if (ctx.alive()) result.replaceChildren(notice('error', describe(err)));
      } finally {
        button.disabled = false;
      }
    }

    const params = fn.params.length ? fn.params.map((p) => code(p)) : ['none'];
    put(main,
      h('div', { class: 'page-head' }, h('h1', { text: fnName })),
      card(null, h('dl', { class: 'facts' },
        fact('Signature', code(`${fn.is_async ? 'async ' : ''}${fn.name}(${fn.params.join(', ')})`)),
        fact('Parameters', h('span', { class: 'list' }, params)),
        fact('Resource', fn.resource),
        fact('Active release', app.active_release || 'none'),
        fact('URL', code(fn.url)))),
      card('Try it',
        h('form', { class: 'stack', onsubmit: call },
          h('label', { for: 'args', text: 'Arguments (JSON)' }),
          h('p', { class: 'hint', text: 'An object binds arguments by parameter name, an array by position; empty means no arguments.' }),
          args,
          h('div', null, button)),
        result),
      card('Recent executions', historyBox));
    refreshHistory = await poll(ctx, historyBox, POLL_MS,
      () => api('GET', `/api/apps/${enc(appName)}/functions/${enc(fnName)}/executions`, undefined, ctx.signal),
      renderExecutions);
  }

  /** The server's in-memory record of a function's latest calls, from anywhere. */
  function renderExecutions(data) {
    return [
      table([
        { label: 'When', cell: (c) => since(Date.parse(c.at), 'ago') },
        { label: 'Status', cell: (c) => h('span', { class: `badge ${c.ok ? 'ok' : 'bad'}`, text: String(c.status) }) },
        { label: 'Duration', cell: (c) => `${c.duration_ms < 10 ? c.duration_ms.toFixed(2) : Math.round(c.duration_ms)} ms` },
        { label: 'Error', class: 'wrap', cell: (c) => (c.error ? code(short(c.error, 300), c.error) : '—') },
      ], data.calls, 'No calls yet.'),
      h('p', { class: 'hint', text: `The last ${data.kept} calls through the gateway, kept in the server's memory (not stored: a restart clears them).` }),
    ];
  }

  // --- Logs --------------------------------------------------------------------------------------

  async function pageLogs(appName) {
    const ctx = enter(`Logs · ${appName}`, 'apps');
    const state = h('span', { id: 'stream-state' }, badge('connecting'));
    const filter = h('select', { id: 'log-filter' },
      h('option', { value: '', text: 'Everything' }),
      h('option', { value: 'stdout', text: 'stdout' }),
      h('option', { value: 'stderr', text: 'stderr' }),
      h('option', { value: 'event', text: 'Platform events' }));
    const follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true });
    const lines = h('ol', { id: 'log-lines', class: 'log' });
    const box = h('div', { class: 'log-box', tabindex: '0', 'aria-label': 'Log lines' }, lines);
    const empty = h('p', { class: 'empty', text: 'No log lines yet.' });

    filter.addEventListener('change', () => {
      for (const li of lines.children) li.hidden = !shown(li.dataset.stream);
    });
    const shown = (stream) => !filter.value || filter.value === stream;

    put(main,
      crumbs([['Apps', '#/apps'], [appName, `#/apps/${enc(appName)}`], ['Logs']]),
      h('div', { class: 'page-head' }, h('h1', { text: `Logs of ${appName}` }), state),
      h('div', { class: 'toolbar' },
        h('label', null, 'Show ', filter),
        h('label', { class: 'check' }, follow, ' Follow'),
        h('button', { type: 'button', class: 'secondary small', text: 'Clear', onclick: () => lines.replaceChildren() })),
      card(null, empty, box));

    function add(entry) {
      empty.hidden = true;
      const stream = String(entry.stream || '');
      const isEvent = stream === 'event';
      const ts = new Date(entry.ts);
      const li = h('li', { class: `log-line stream-${stream}`, dataset: { stream, id: String(entry.id) } },
        h('time', { datetime: entry.ts, title: ts.toLocaleString(), text: clock(ts) }),
        h('span', { class: `stream ${isEvent ? 'event' : ''}`, text: isEvent ? 'platform event' : stream }),
        // Worker lines name their instance (shortened); events come from the platform itself.
        entry.source && !isEvent ? h('span', { class: 'source', title: entry.source, text: idTail(entry.source) }) : null,
        h('span', { class: 'text', text: entry.line }));
      li.hidden = !shown(stream);
      lines.append(li);
      while (lines.childElementCount > MAX_LOG_LINES) lines.firstElementChild.remove();
      if (follow.checked) box.scrollTop = box.scrollHeight;
    }

    await followLogs(ctx, appName, add, (s, why) => {
      state.replaceChildren(badge(s));
      if (why) state.append(h('span', { class: 'hint', text: ` ${why}` }));
    });
  }

  function clock(d) {
    if (Number.isNaN(d.getTime())) return '';
    const p = (n, w) => String(n).padStart(w, '0');
    return `${p(d.getHours(), 2)}:${p(d.getMinutes(), 2)}:${p(d.getSeconds(), 2)}.${p(d.getMilliseconds(), 3)}`;
  }

  /**
   * Reads `GET /api/apps/{app}/logs?follow=true` (Server-Sent Events) with fetch, because
   * EventSource cannot send an Authorization header. Reconnects after a drop, resuming after the
   * last id seen; stops when the page is left.
   */
  async function followLogs(ctx, appName, onEntry, onState) {
    let after = 0;
    while (ctx.alive()) {
      onState('connecting');
      let why = 'the server closed the stream';
      try {
        const q = after ? `&after=${after}` : '';
        const resp = await fetch(`/api/apps/${enc(appName)}/logs?follow=true${q}`, {
          headers: authHeaders({ Accept: 'text/event-stream' }),
          cache: 'no-store',
          credentials: 'omit',
          signal: ctx.signal,
        });
        if (resp.status === 401) {
          signOut('The server rejected the token (401 Unauthorized). Sign in again.');
          return;
        }
        if (!resp.ok) throw new ApiError(resp.status, errorText(resp.status, await readBody(resp)));
        onState('live');
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        const feed = sseParser((event) => {
          let entry;
          try {
            entry = JSON.parse(event.data);
          } catch (_) {
            return; // not a log line (the server sends only JSON; ignore anything else)
          }
          if (typeof entry.id === 'number') after = Math.max(after, entry.id);
          onEntry(entry);
        });
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
        }
      } catch (err) {
        if (err instanceof SignedOut || !ctx.alive()) return;
        why = describe(err);
      }
      if (!ctx.alive()) return;
      onState('reconnecting', `${why}; retrying in 2 s`);
      await ctx.sleep(2000);
    }
  }

  /** An incremental parser of the text/event-stream format; calls `onEvent({id, data})`. */
  function sseParser(onEvent) {
    let pending = '';
    let data = [];
    let id = null;
    return (chunk) => {
      pending += chunk;
      const lines = pending.split(/\r\n|\r|\n/);
      pending = lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (data.length) onEvent({ id, data: data.join('\n') });
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(':')) continue; // a comment: the keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'id') id = value;
      }
    };
  }

  // --- Nodes -------------------------------------------------------------------------------------

  async function pageNodes() {
    const ctx = enter('Nodes', 'nodes');
    const body = h('div', { id: 'nodes' }, notice('info', 'Loading…'));
    put(main, h('div', { class: 'page-head' }, h('h1', { text: 'Nodes' })), body);
    const load = async () => {
      const [apps, nodes, placements] = await Promise.all([
        api('GET', '/api/apps', undefined, ctx.signal),
        api('GET', '/api/nodes', undefined, ctx.signal),
        api('GET', '/api/placements', undefined, ctx.signal),
      ]);
      const details = await Promise.all(apps.map((a) => api('GET', `/api/apps/${enc(a.name)}`, undefined, ctx.signal)
        .catch((err) => {
          if (err instanceof ApiError && err.status === 404) return null; // deleted meanwhile
          throw err;
        })));
      const instances = [];
      for (const d of details) {
        if (d) for (const i of d.instances) instances.push(Object.assign({ app: d.name }, i));
      }
      return { instances, nodes, placements };
    };
    await poll(ctx, body, POLL_MS, load, renderNodes, ['uptime_s', 'heartbeat_at']);
  }

  function renderNodes({ instances, nodes, placements }) {
    const cards = [];
    // Nodes whose agents joined (`morel agent --join`): capacity, heartbeat, what is placed there.
    for (const n of nodes) {
      const mine = placements.filter((p) => p.node === n.id);
      cards.push(card(null,
        h('h2', null, 'Node ', code(n.id), ' ', badge(n.state)),
        h('dl', { class: 'facts', dataset: { node: n.id } },
          fact('Agent', code(n.address)),
          fact('Capacity', h('span', { class: 'node-capacity', text: `${n.capacity} instances` })),
          fact('Heartbeat', since(n.heartbeat_at, 'ago')),
          fact('Instances', String(mine.length))),
        table([
          { label: 'App', cell: (p) => h('a', { href: `#/apps/${enc(p.app)}`, text: p.app }) },
          { label: 'Resource', cell: (p) => p.resource },
          { label: 'Release', cell: (p) => `v${p.release}` },
          { label: 'State', cell: (p) => badge(p.state) },
          { label: 'Endpoint', class: 'wrap', cell: (p) => (p.endpoint ? code(p.endpoint) : '—') },
          { label: 'Error', class: 'wrap', cell: (p) => p.error || '—' },
        ], mine, 'Nothing placed on this node.')));
    }
    // The agent inside `morel up` runs its instances as node "local".
    const byNode = new Map();
    if (!nodes.length) byNode.set('local', []);
    for (const i of instances) {
      const node = i.node || 'local';
      if (!byNode.has(node)) byNode.set(node, []);
      byNode.get(node).push(i);
    }
    for (const [node, list] of byNode) {
      const counts = {};
      for (const i of list) counts[i.state] = (counts[i.state] || 0) + 1;
      const states = Object.keys(counts).sort().map((st) => h('span', { class: 'count' }, badge(st), ` ${counts[st]}`));
      cards.push(card(null,
        h('h2', null, 'Node ', code(node)),
        h('dl', { class: 'facts' },
          fact('Agent', 'runs inside the morel up process'),
          fact('Capacity', h('span', { id: node === 'local' ? 'capacity' : null, text: 'unknown: the built-in agent does not report capacity' })),
          fact('Heartbeat', 'not needed: same process'),
          fact('Instances', list.length ? states : '0')),
        table([
          { label: 'App', cell: (i) => h('a', { href: `#/apps/${enc(i.app)}`, text: i.app }) },
          { label: 'Resource', cell: (i) => i.resource },
          { label: 'Release', cell: (i) => i.release },
          { label: 'State', cell: (i) => badge(i.state) },
          { label: 'PID', cell: (i) => (i.pid === null ? '—' : String(i.pid)) },
          { label: 'Restarts', cell: (i) => String(i.restarts) },
          { label: 'Uptime', cell: (i) => since(Date.now() - i.uptime_s * 1000, 'uptime') },
          { label: 'Last error', class: 'wrap', cell: (i) => i.last_error || '—' },
        ], list, 'No instances on this node.')));
    }
    return cards;
  }

  // --- Compiled (WebAssembly) functions ----------------------------------------------------------

  const LANGUAGES = [
    ['wat', 'WebAssembly text (WAT)'],
    ['c', 'C'],
    ['rust', 'Rust'],
    ['assemblyscript', 'AssemblyScript'],
  ];

  async function pageFunctions() {
    const ctx = enter('Functions', 'functions');
    const list = h('div', { id: 'wasm-functions' }, notice('info', 'Loading…'));

    // Reloads the list at once after an action; set once the list is first loaded.
    let refresh = async () => {};

    // Create.
    const name = h('input', { id: 'fn-name', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'echo' });
    const language = h('select', { id: 'fn-language' }, LANGUAGES.map(([v, label]) => h('option', { value: v, text: label })));
    const source = h('textarea', { id: 'fn-source', rows: '10', required: true, spellcheck: 'false', placeholder: '(module …) or int main() { … }' });
    const createButton = h('button', { type: 'submit', text: 'Compile' });
    const created = h('div', { id: 'fn-created', 'aria-live': 'polite' });

    async function create(event) {
      event.preventDefault();
      createButton.disabled = true;
      created.replaceChildren(notice('info', 'Submitting…'));
      try {
        const f = await api('POST', '/functions', { name: name.value.trim(), language: language.value, source: source.value }, ctx.signal);
        if (!ctx.alive()) return;
        const replaced = f.replaced ? ` It replaces the FAILED ${f.name} (${f.replaced}).` : '';
        created.replaceChildren(notice('ok', `Queued ${f.name} (${f.id}): ${f.status}.${replaced} The list shows when it is READY or FAILED.`));
        wanted = f.id;
        await refresh();
      } catch (err) {
        if (!(err instanceof SignedOut) && ctx.alive()) created.replaceChildren(notice('error', describe(err)));
      } finally {
        createButton.disabled = false;
      }
    }

    // Execute.
    let wanted = null; // a function just created: selected for execution once it is READY
    const pick = h('select', { id: 'exec-function', required: true });
    const input = h('textarea', { id: 'exec-input', rows: '4', spellcheck: 'false', value: '{}' });
    const timeout = h('input', { id: 'exec-timeout', type: 'number', min: '1', max: '60000', placeholder: '5000', inputmode: 'numeric' });
    const execButton = h('button', { type: 'submit', text: 'Execute' });
    const execution = h('div', { id: 'execution', 'aria-live': 'polite' });
    const executions = h('div', { id: 'executions' });

    async function execute(event) {
      event.preventDefault();
      let value;
      try {
        value = input.value.trim() ? JSON.parse(input.value) : null;
      } catch (err) {
        execution.replaceChildren(notice('error', `The input is not JSON: ${err.message}`));
        return;
      }
      const body = { input: value };
      if (timeout.value) body.timeout_ms = Number(timeout.value);
      execButton.disabled = true;
      execution.replaceChildren(notice('info', 'Executing…'));
      const started = performance.now();
      try {
        const e = await api('POST', `/functions/${enc(pick.value)}/execute`, body, ctx.signal);
        const ms = Math.round(performance.now() - started);
        if (!ctx.alive()) return;
        execution.replaceChildren(renderExecution(e, ms));
        await showExecutions(pick.value);
      } catch (err) {
        if (!(err instanceof SignedOut) && ctx.alive()) execution.replaceChildren(notice('error', describe(err)));
      } finally {
        execButton.disabled = false;
      }
    }

    async function showExecutions(id) {
      if (!id) {
        executions.replaceChildren();
        return;
      }
      try {
        const rows = await api('GET', `/functions/${enc(id)}/executions`, undefined, ctx.signal);
        if (!ctx.alive() || pick.value !== id) return;
        executions.replaceChildren(h('h3', { text: 'Recent executions' }), table([
          { label: 'Started', cell: (e) => since(Date.parse(e.started_at), 'ago') },
          { label: 'Status', cell: (e) => badge(e.status) },
          { label: 'Duration', cell: (e) => (e.duration_ms === null ? '—' : `${e.duration_ms} ms`) },
          { label: 'Output or error', class: 'wrap', cell: (e) => code(short(e.errorMessage || pretty(e.output), 200)) },
        ], rows.slice().reverse().slice(0, 20), 'No executions yet.'));
      } catch (err) {
        if (!(err instanceof SignedOut) && ctx.alive()) executions.replaceChildren(notice('error', describe(err)));
      }
    }
    pick.addEventListener('change', () => showExecutions(pick.value));

    /** Keeps the select's options in step with the list, without losing the selection. */
    function syncPick(fns) {
      const chosen = pick.value;
      const ready = fns.filter((f) => f.status === 'READY');
      const key = ready.map((f) => f.id).join(',');
      if (pick.dataset.key !== key) {
        pick.dataset.key = key;
        pick.replaceChildren(...(ready.length
          ? ready.map((f) => h('option', { value: f.id, text: `${f.name} (${f.language}, ${idTail(f.id)})` }))
          : [h('option', { value: '', text: 'No READY function yet' })]));
        if (ready.some((f) => f.id === wanted)) {
          pick.value = wanted;
          wanted = null;
        } else if (ready.some((f) => f.id === chosen)) pick.value = chosen;
        else if (ready.length) pick.value = ready[ready.length - 1].id;
        if (pick.value !== chosen) showExecutions(pick.value);
      }
      execButton.disabled = !ready.length;
    }

    // Delete, after the user confirms.
    const removed = h('div', { id: 'fn-removed', 'aria-live': 'polite' });
    async function remove(f) {
      if (!window.confirm(`Delete the function ${f.name} (${f.id}) and all its executions? This cannot be undone.`)) return;
      removed.replaceChildren(notice('info', `Deleting ${f.name}…`));
      try {
        await api('DELETE', `/functions/${enc(f.id)}`, undefined, ctx.signal);
        if (!ctx.alive()) return;
        removed.replaceChildren(notice('ok', `Deleted ${f.name} and its executions.`));
        await refresh();
      } catch (err) {
        if (!(err instanceof SignedOut) && ctx.alive()) removed.replaceChildren(notice('error', `Deleting ${f.name} failed: ${describe(err)}`));
      }
    }

    put(main,
      h('div', { class: 'page-head' }, h('h1', { text: 'Compiled functions' })),
      h('p', { class: 'hint', text: 'Single-file WebAssembly functions, compiled on the durable queue and run in a fresh sandbox for every execution. Names are unique: compiling a name again replaces the function only when it FAILED.' }),
      removed,
      card('Functions', list),
      h('div', { class: 'columns' },
        card('Compile a function',
          h('form', { class: 'stack', onsubmit: create },
            h('label', { for: 'fn-name', text: 'Name' }), name,
            h('label', { for: 'fn-language', text: 'Language' }), language,
            h('label', { for: 'fn-source', text: 'Source' }), source,
            h('div', null, createButton)),
          created),
        card('Execute',
          h('form', { class: 'stack', onsubmit: execute },
            h('label', { for: 'exec-function', text: 'Function' }), pick,
            h('label', { for: 'exec-input', text: 'Input (JSON)' }), input,
            h('label', { for: 'exec-timeout', text: 'Timeout (ms, optional)' }), timeout,
            h('div', null, execButton)),
          execution, executions)));

    refresh = await poll(ctx, list, 2000, () => api('GET', '/functions', undefined, ctx.signal), (fns) => {
      syncPick(fns);
      return table([
        { label: 'Name', cell: (f) => h('strong', { text: f.name }) },
        { label: 'Language', cell: (f) => f.language },
        { label: 'Status', cell: (f) => badge(f.status) },
        { label: 'Size', cell: (f) => (f.wasm_size ? `${Math.round(f.wasm_size / 102.4) / 10} KiB` : '—') },
        { label: 'Id', cell: (f) => code(idTail(f.id), f.id) },
        { label: 'Created', cell: (f) => since(Date.parse(f.created_at), 'ago') },
        { label: 'Compile error', class: 'wrap', cell: (f) => (f.compile_error
          ? h('details', null, h('summary', { text: short(f.compile_error.split('\n')[0], 80) }), h('pre', { class: 'output', text: f.compile_error }))
          : '—') },
        { label: 'Action', cell: (f) => h('button', { type: 'button', class: 'secondary small danger', text: 'Delete', 'aria-label': `Delete ${f.name}`, onclick: () => remove(f) }) },
      ], fns.slice().reverse(), 'No compiled functions yet.', (f) => ({ dataset: { function: f.name } }));
    });
  }

  function renderExecution(e, ms) {
    return h('div', { class: 'execution' },
      h('dl', { class: 'facts' },
        fact('Status', h('span', { id: 'execution-status' }, badge(e.status))),
        fact('Duration', e.duration_ms === null ? '—' : `${e.duration_ms} ms`),
        fact('Round trip', `${ms} ms`),
        fact('Execution', code(e.id))),
      e.errorMessage ? notice('error', e.errorMessage) : null,
      e.output !== null && e.output !== undefined
        ? [h('h3', { text: 'Output' }), h('pre', { id: 'execution-output', class: 'output', text: pretty(e.output) })]
        : null);
  }

  // ---------------------------------------------------------------------------------------------

  document.getElementById('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    pageLogin();
    put(document.getElementById('login-status'), notice('info', 'Signed out.'));
  });
  window.addEventListener('hashchange', route);
  route();
})();
