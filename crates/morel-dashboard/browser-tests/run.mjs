// Drives the Morel dashboard in Debian's headless Chromium through playwright-core.
//
//   node crates/morel-dashboard/browser-tests/run.mjs URL TOKEN SCREENSHOT_DIR
//
// Expects a running `morel up` at URL where hello-python is deployed twice (v1, then v2 with the
// same `greet` and the config GREETING_STYLE and API_SECRET, whose value is SECRET_VALUE below),
// with the apps `user-flow` (routes) and `lane` (an http service) beside it, as
// crates/morel-cli/tests/it/dashboard.rs arranges. Fails (exit 1) on any
// console error or uncaught page error, on the token showing up in a URL, and on any step whose
// expected text does not appear in time. Saves a screenshot of every page at 1280x800 and
// 390x844 into SCREENSHOT_DIR. Prints one line per step; never prints the token.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const APP = 'hello-python';
const SIZES = [[1280, 800], [390, 844]];
const STEP_TIMEOUT_MS = 30_000;
const ROLLOUT_TIMEOUT_MS = 90_000;
// A config value of v2 that must never reach the page.
const SECRET_VALUE = 's3cr3t-value';

// An echo guest in the core ABI: `handle` returns its input unchanged.
const ECHO_WAT = `(module
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "alloc") (param $n i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $at))
  (func (export "handle") (param $at i32) (param $n i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $at)) (i64.const 32))
      (i64.extend_i32_u (local.get $n)))))`;

const [baseUrl, token, shotDir] = process.argv.slice(2);
if (!baseUrl || !token || !shotDir) {
  console.error('usage: node run.mjs URL TOKEN SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shotDir, { recursive: true });

const problems = [];
// Console errors a step expects (the browser logs every 401 response it receives as one).
let expectedConsole = [];

const userDataDir = mkdtempSync(path.join(tmpdir(), 'morel-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: SIZES[0][0], height: SIZES[0][1] },
  timeout: 60_000,
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(STEP_TIMEOUT_MS);

page.on('console', (msg) => {
  if (msg.type() !== 'error') return;
  const text = msg.text();
  if (expectedConsole.some((re) => re.test(text))) return;
  const loc = msg.location();
  problems.push(`console error: ${text} (at ${loc.url}:${loc.lineNumber})`);
});
page.on('pageerror', (err) => problems.push(`uncaught page error: ${err.stack || err}`));
page.on('request', (req) => {
  if (req.url().includes(token)) problems.push(`the token appears in a request URL (${req.method()})`);
});
page.on('framenavigated', (frame) => {
  if (frame.url().includes(token)) problems.push('the token appears in the page URL');
});

let stepName = '';

async function step(name, fn) {
  stepName = name;
  const started = Date.now();
  console.log(`- ${name}`);
  await fn();
  checkClean();
  console.log(`  ok (${Date.now() - started} ms)`);
}

function checkClean() {
  if (page.url().includes(token)) problems.push('the token appears in page.url()');
  if (problems.length) throw new Error(problems.join('\n'));
}

/** Polls `locator`'s text until it matches `want` (a string it contains, or a RegExp). */
async function waitText(locator, want, what, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let seen = '(nothing)';
  for (;;) {
    try {
      seen = await locator.innerText({ timeout: 1000 });
      if (typeof want === 'string' ? seen.includes(want) : want.test(seen)) return seen;
    } catch (_) {
      // not there yet
    }
    if (problems.length) throw new Error(problems.join('\n'));
    if (Date.now() > deadline) {
      throw new Error(`${what}: waited ${timeout} ms for ${want} but saw ${JSON.stringify(seen.slice(0, 2000))}`);
    }
    await page.waitForTimeout(100);
  }
}

/** Saves the page at each size, after checking nothing makes it scroll sideways. */
async function shoot(name) {
  for (const [width, height] of SIZES) {
    await page.setViewportSize({ width, height });
    await page.evaluate(() => window.scrollTo(0, 0));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 1) throw new Error(`${name} at ${width}x${height} scrolls sideways by ${overflow}px`);
    await page.screenshot({ path: path.join(shotDir, `${name}-${width}x${height}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: SIZES[0][0], height: SIZES[0][1] });
}

let failed = false;
try {
  await step('the login page asks for the admin token', async () => {
    await page.goto(`${baseUrl}/`);
    await page.getByLabel('Admin token').waitFor();
    await waitText(page.locator('main'), 'admin.token', 'login help');
    await shoot('01-login');
  });

  await step('a wrong token is rejected with a message', async () => {
    expectedConsole = [/status of 401/];
    const logged401 = page.waitForEvent('console', { predicate: (m) => /status of 401/.test(m.text()) });
    await page.getByLabel('Admin token').fill('not-the-admin-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitText(page.locator('#login-status'), 'rejected', 'the login message');
    await logged401;
    expectedConsole = [];
  });

  await step(`signing in lists ${APP}`, async () => {
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/#\/apps$/);
    const row = page.locator('#apps tr', { has: page.getByRole('link', { name: APP, exact: true }) });
    await waitText(row, 'ready', `the ${APP} row`);
    await waitText(row, 'v2', `the ${APP} row's active release`);
    await waitText(row, `/default/${APP}/latest/call/`, `the ${APP} row's URL`);
    const stored = await page.evaluate(() => Object.keys(localStorage).length);
    if (stored) throw new Error('the dashboard wrote to localStorage');
    await shoot('02-apps');
  });

  await step(`the ${APP} page shows functions, resources, instances and releases`, async () => {
    await page.getByRole('link', { name: APP, exact: true }).click();
    await page.waitForURL(new RegExp(`#/apps/${APP}$`));
    await waitText(page.locator('#active-release'), 'v2', 'the active release');
    await waitText(page.locator('#app'), 'greet(name', 'the functions table');
    await waitText(page.locator('#app'), 'python', 'the resources table');
    await waitText(page.locator('#app'), 'Roll back to this release', 'the releases table');
    const production = page.locator('#environments tr[data-env="production"]');
    await waitText(production, 'v2', 'the production environment\'s active release');
    await waitText(production, 'API_SECRET', 'the config names of production');
    await waitText(production, 'GREETING_STYLE', 'the config names of production');
    await waitText(production, `/default/${APP}/production/call/`, 'the environment URL');
    if ((await page.content()).includes(SECRET_VALUE)) throw new Error('a config value is shown on the app page');
    await shoot('03-app');
  });

  await step('greet called from its page answers Hello, Ada! with a latency', async () => {
    await page.getByRole('link', { name: 'greet', exact: true }).click();
    await page.waitForURL(new RegExp(`#/apps/${APP}/fn/greet$`));
    await page.getByLabel('Arguments (JSON)').fill('{"name":"Ada"}');
    await page.getByRole('button', { name: 'Call' }).click();
    await waitText(page.locator('#call-result'), 'Hello, Ada!', 'the call result');
    await waitText(page.locator('#call-status'), '200', 'the call status');
    await waitText(page.locator('#latency'), /^\d+ ms$/, 'the latency');
    // The server's record of the call: status and duration.
    await waitText(page.locator('#history tbody tr').first(), /200[\s\S]*\d ms/, 'the recent executions');
    // A failing call shows there with its error: greet takes one argument, not three, and the
    // gateway says so before greet runs.
    expectedConsole = [/status of 400/];
    await page.getByLabel('Arguments (JSON)').fill('[1, 2, 3]');
    await page.getByRole('button', { name: 'Call' }).click();
    await waitText(page.locator('#call-status'), '400', 'the failed call status');
    await waitText(page.locator('#call-result'), 'signature: greet(name)', 'the refusal naming the signature');
    await waitText(page.locator('#history tbody tr').first(), /400[\s\S]*BadArguments/, 'the failed execution with its error');
    await waitText(page.locator('#history'), '200', 'the earlier execution');
    expectedConsole = [];
    await shoot('04-function');
  });

  await step('the logs page streams the line greet printed, and platform events', async () => {
    await page.getByRole('link', { name: APP, exact: true }).click();
    await page.getByRole('link', { name: 'Live logs' }).click();
    await page.waitForURL(new RegExp(`#/apps/${APP}/logs$`));
    await waitText(page.locator('#log-lines'), 'greeting Ada', 'the log lines');
    await waitText(page.locator('#log-lines li.stream-event').first(), 'platform event', 'a platform event');
    await waitText(page.locator('#stream-state'), 'live', 'the stream state');
    // Only platform events: greet's line is hidden, events stay.
    await page.getByLabel('Show').selectOption('event');
    if (await page.locator('#log-lines li', { hasText: 'greeting Ada' }).isVisible()) {
      throw new Error('the platform-events filter still shows stdout');
    }
    await page.getByLabel('Show').selectOption('');
    await shoot('05-logs');
  });

  await step('the nodes page shows node local with its instances', async () => {
    await page.getByRole('link', { name: 'Nodes', exact: true }).click();
    await page.waitForURL(/#\/nodes$/);
    await waitText(page.locator('#nodes'), 'local', 'the node');
    await waitText(page.locator('#nodes'), APP, 'the instances');
    await waitText(page.locator('#capacity'), 'unknown', 'the capacity');
    // A node whose agent joined (`morel agent --join`, started by the Rust side): capacity and state.
    const joined = page.locator('#nodes dl[data-node="edge-1"]');
    await waitText(joined, '4 instances', 'the joined node\'s capacity');
    await waitText(page.locator('#nodes'), 'edge-1', 'the joined node');
    await shoot('06-nodes');
  });

  await step('a WAT function compiles and executes from the functions page', async () => {
    await page.getByRole('link', { name: 'Functions', exact: true }).click();
    await page.waitForURL(/#\/functions$/);
    await page.getByLabel('Name').fill('echo');
    await page.getByLabel('Language').selectOption('wat');
    await page.getByLabel('Source').fill(ECHO_WAT);
    await page.getByRole('button', { name: 'Compile' }).click();
    await waitText(page.locator('#fn-created'), 'Queued echo', 'the compile request');
    await waitText(page.locator('#wasm-functions'), 'ready', 'the compiled function', ROLLOUT_TIMEOUT_MS);
    await waitText(page.locator('#exec-function'), 'echo', 'the execute form');
    await page.getByLabel('Input (JSON)').fill('{"ping":1}');
    await page.getByRole('button', { name: 'Execute' }).click();
    await waitText(page.locator('#execution-status'), 'completed', 'the execution status');
    await waitText(page.locator('#execution-output'), '"ping": 1', 'the execution output');
    await waitText(page.locator('#executions'), 'completed', 'the recent executions');
    await shoot('07-functions');
  });

  await step('a taken name is refused, and a function is deleted only once the user confirms', async () => {
    // The browser logs the 409 answer as a console error; the page shows it instead.
    expectedConsole = [/status of 409/];
    await page.getByLabel('Name').fill('echo');
    await page.getByLabel('Source').fill(ECHO_WAT);
    await page.getByRole('button', { name: 'Compile' }).click();
    await waitText(page.locator('#fn-created'), /409: a function named "echo" already exists/, 'the conflict');
    expectedConsole = [];
    const row = page.locator('#wasm-functions tr[data-function="echo"]');
    const dialogs = [];
    page.once('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss();
    });
    await row.getByRole('button', { name: 'Delete echo' }).click();
    if (dialogs.length !== 1 || !dialogs[0].includes('Delete the function echo')) {
      throw new Error(`expected one confirmation naming echo, saw ${JSON.stringify(dialogs)}`);
    }
    if ((await page.locator('#fn-removed').innerText()).trim()) {
      throw new Error('a dismissed confirmation still deleted the function');
    }
    await waitText(row, 'ready', 'echo after the dismissed confirmation');
    page.once('dialog', (dialog) => dialog.accept());
    await row.getByRole('button', { name: 'Delete echo' }).click();
    await waitText(page.locator('#fn-removed'), 'Deleted echo and its executions', 'the deletion');
    await waitText(page.locator('#wasm-functions'), 'No compiled functions yet.', 'the list without echo');
    await waitText(page.locator('#exec-function'), 'No READY function yet', 'the execute form without echo');
  });

  await step('rolling back to v1 makes v1 active again', async () => {
    await page.getByRole('link', { name: 'Apps', exact: true }).click();
    await page.getByRole('link', { name: APP, exact: true }).click();
    await waitText(page.locator('#active-release'), 'v2', 'the active release before the rollback');
    // The rollback endpoint answering 404 is logged by the browser; report it below instead.
    expectedConsole = [/status of 404/];
    page.once('dialog', (dialog) => dialog.accept());
    await page.locator('tr[data-release="v1"]').getByRole('button', { name: 'Roll back to this release' }).click();
    const deadline = Date.now() + ROLLOUT_TIMEOUT_MS;
    for (;;) {
      const messages = await page.locator('#app-messages').innerText();
      if (/failed/.test(messages)) {
        const missing = /\b404\b/.test(messages)
          ? '\nThe rollback endpoint POST /api/apps/{app}/rollback is missing from this server.'
          : '';
        throw new Error(`the rollback failed: ${messages}${missing}`);
      }
      const active = await page.locator('#active-release').innerText();
      if (active === 'v1' && /v1 is the active release again/.test(messages)) break;
      if (Date.now() > deadline) throw new Error(`v1 did not become active; the page shows ${active}: ${messages}`);
      await page.waitForTimeout(200);
    }
    expectedConsole = [];
    await waitText(page.locator('tr[data-release="v1"]'), 'active', 'the v1 row');
    await waitText(page.locator('tr[data-release="v2"]'), 'superseded', 'the v2 row');
    await waitText(page.locator('#environments tr[data-env="production"]'), /v1[\s\S]*none/, 'production after the rollback (v1 has no config)');
    await shoot('08-rollback');
  });

  await step('an app lists its routes with their URLs, and an http service shows its edge URL', async () => {
    await page.locator('#app').waitFor();
    await page.getByRole('link', { name: 'Apps', exact: true }).first().click();
    await page.waitForURL(/#\/apps$/);
    const lane = page.locator('#apps tr', { has: page.getByRole('link', { name: 'lane', exact: true }) });
    const laneRow = await waitText(lane, `${baseUrl}/lane/`, 'the http service\'s URL');
    if (laneRow.includes('/call/')) throw new Error(`the http service is shown a call URL: ${laneRow}`);
    await page.getByRole('link', { name: 'user-flow', exact: true }).click();
    await page.waitForURL(/#\/apps\/user-flow$/);
    const route = page.locator('#routes tr[data-route="GET /items/{item_id}"]');
    await waitText(route, 'get_item', 'the route\'s function');
    await waitText(route, `${baseUrl}/user-flow/items/{item_id}`, 'the route\'s URL');
    await waitText(page.locator('#routes'), 'POST', 'the other routes');
  });

  await step('a token the server no longer accepts sends the user back to sign in', async () => {
    expectedConsole = [/status of 401/];
    const logged401 = page.waitForEvent('console', { predicate: (m) => /status of 401/.test(m.text()) });
    await page.evaluate(() => sessionStorage.setItem('morel.token', 'a-stale-token'));
    await page.getByRole('link', { name: 'Nodes', exact: true }).click();
    await page.getByLabel('Admin token').waitFor();
    await waitText(page.locator('#login-status'), 'rejected the token', 'the sign-in message');
    await logged401;
    expectedConsole = [];
    if (await page.evaluate(() => sessionStorage.getItem('morel.token'))) {
      throw new Error('the rejected token is still stored');
    }
    // Signing in again lands on the page that was asked for.
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitText(page.locator('#nodes'), 'local', 'the nodes page after signing in again');
  });

  await step('signing out forgets the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token').waitFor();
    const left = await page.evaluate(() => sessionStorage.length + localStorage.length);
    if (left) throw new Error('storage is not empty after signing out');
    if ((await page.content()).includes(token)) throw new Error('the token is in the page');
  });
} catch (err) {
  failed = true;
  console.error(`FAILED at step "${stepName}":\n${err && err.stack ? err.stack : err}`);
  if (problems.length) console.error(`problems seen:\n${problems.join('\n')}`);
  try {
    await page.screenshot({ path: path.join(shotDir, 'failure.png'), fullPage: true });
    console.error(`a screenshot of the failure: ${path.join(shotDir, 'failure.png')}`);
    console.error(`the page's text:\n${(await page.locator('body').innerText()).slice(0, 4000)}`);
  } catch (_) {
    // the browser is gone; the error above says why
  }
} finally {
  await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

if (failed) process.exit(1);
console.log(`dashboard browser test passed; screenshots in ${shotDir}`);
