'use strict';
// Unit tests of the SDK alone (no Morel): `node --test sdk/node/test/`.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');

const morel = require('..');

const MARK = Symbol.for('morel-sdk.mark');

test('marks return the function itself, marked with its endpoint and route', () => {
  const api = new morel.Endpoint('api', { workers: [0, 4], concurrency: 8 });
  const f = (id) => id;
  assert.equal(api.get('/items/{id}', f), f);
  assert.deepEqual({ ...f[MARK] }, { endpoint: 'api', method: 'GET', path: '/items/{id}' });
  const g = api.route('patch', '/g', () => 1);
  assert.equal(g[MARK].method, 'PATCH');
  const h = morel.function(() => 2);
  assert.deepEqual({ ...h[MARK] }, { endpoint: null, method: null, path: null });
  assert.equal(h(), 2);
  assert.throws(() => api.get('items', f), /starting with '\/'/);
  assert.throws(() => api.route('TRACE', '/x', f), /unsupported HTTP method/);
  assert.throws(() => api.function(42), /apply to functions/);
});

test('endpoints check their options like the Python SDK', () => {
  const e = new morel.Endpoint('jobs', { workers: 3 });
  assert.deepEqual(e.workers, [3, 3]);
  assert.equal(e.concurrency, 1);
  assert.equal(e.public, true);
  assert.throws(() => new morel.Endpoint(''), /non-empty name/);
  assert.throws(() => new morel.Endpoint('x', { workers: [2, 1] }), /0 <= min <= max/);
  assert.throws(() => new morel.Endpoint('x', { concurrency: 0 }), /at least 1/);
  assert.throws(() => new morel.Endpoint('x', { timeout: 3 }), /unknown endpoint option 'timeout'/);
});

test('a request joins repeated headers and lists repeated query parameters', () => {
  const r = morel.Request.fromWire({
    method: 'POST',
    path: '/app/items',
    headers: [['Accept', 'a'], ['accept', 'b'], ['user-agent', 'ua']],
    query: [['tag', 'x'], ['tag', 'y'], ['q', 'z']],
  });
  assert.equal(r.method, 'POST');
  assert.equal(r.path, '/app/items');
  assert.deepEqual(r.headers, { accept: 'a, b', 'user-agent': 'ua' });
  assert.equal(r.header('User-Agent'), 'ua');
  assert.equal(r.header('x-none'), undefined);
  assert.deepEqual(r.query, { tag: ['x', 'y'], q: 'z' });
  assert.deepEqual(r.headerList[1], ['accept', 'b']);
  assert.deepEqual(new morel.Request().query, {});
});

test('a response keeps its status and headers; contentType replaces a content-type header', () => {
  const r = new morel.Response({ id: 7 }, { status: 201, headers: { Location: '/items/7' } });
  assert.equal(r.status, 201);
  assert.deepEqual(r.headers, [['Location', '/items/7']]);
  assert.equal(r[Symbol.for('morel-sdk.response')], true);
  const page = new morel.Response('<p>hi</p>', { headers: [['Content-Type', 'x'], ['set-cookie', 'a'], ['set-cookie', 'b']], contentType: 'text/html' });
  assert.deepEqual(page.headers, [['set-cookie', 'a'], ['set-cookie', 'b'], ['content-type', 'text/html']]);
  assert.equal(new morel.Response().status, 200);
  assert.throws(() => new morel.Response(null, { status: 99 }), /between 200 and 599/);
  assert.throws(() => new morel.Response(null, { status: 200.5 }), /between 200 and 599/);
});

test('call runs a function of this worker in process', async () => {
  const local = new Map([['double', (args) => (Array.isArray(args) ? args[0] * 2 : args.n * 2)]]);
  globalThis[Symbol.for('morel-sdk.local')] = local;
  try {
    assert.equal(await morel.call('double', [4]), 8);
    assert.equal(await morel.call('double', { n: 5 }), 10);
  } finally {
    delete globalThis[Symbol.for('morel-sdk.local')];
  }
  await assert.rejects(morel.call('double', 3), /array \(positional\) or an object \(named\)/);
});

test('call goes through the gateway otherwise, and remote failures keep their type', async (t) => {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ url: req.url, body: JSON.parse(body), type: req.headers['content-type'] });
      if (req.url.endsWith('/explode')) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'exploded', type: 'RangeError', id: 'e1' }));
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true }));
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const saved = { ...process.env };
  t.after(() => {
    for (const k of ['MOREL_GATEWAY_URL', 'MOREL_APP', 'MOREL_ENV']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  delete process.env.MOREL_GATEWAY_URL;
  await assert.rejects(morel.call('label', [1]), /runs inside Morel workers only/);
  process.env.MOREL_GATEWAY_URL = `http://127.0.0.1:${server.address().port}/`;
  process.env.MOREL_APP = 'shop';
  process.env.MOREL_ENV = 'production';
  assert.deepEqual(await morel.call('Model.predict', { x: 1 }), { ok: true });
  assert.deepEqual(seen[0], {
    url: '/default/shop/production/call/Model.predict',
    body: { x: 1 },
    type: 'application/json',
  });
  const err = await morel.call('explode', ['why']).then(() => null, (e) => e);
  assert.ok(err instanceof morel.RemoteError);
  assert.equal(err.name, 'RangeError');
  assert.equal(err.type, 'RangeError');
  assert.equal(err.status, 500);
  assert.equal(err.message, 'exploded');
});
