// A Node app declared with Morel's SDK (sdk/node): two resources, HTTP routes,
// the request and response objects, and calls between functions.
//
// - `api` serves routes (GET /node-sdk/items/{item_id}, POST /node-sdk/orders, ...);
// - `jobs` runs plain functions (label, explode) on workers of its own;
// - `add`, exported without the SDK, runs on the app's default resource.
//
// `require('morel-sdk')` needs no install: Morel's Node runner ships the SDK.
// For your editor's types, `npm install --save-dev PATH/TO/morel/sdk/node`.

const morel = require('morel-sdk');

const api = new morel.Endpoint('api', { workers: [1, 2], concurrency: 8 });
const jobs = new morel.Endpoint('jobs', { workers: 1, timeout_s: 10 });

// Path parameters and query parameters are named arguments (strings).
exports.getItem = api.get('/items/{item_id}', (item_id, q, tag) => ({
  item_id,
  q: q === undefined ? null : q,
  tag: tag === undefined ? null : tag,
}));

// A parameter named `request` receives the call's morel.Request; a returned
// morel.Response sets the answer's status and headers.
exports.createOrder = api.post('/orders', (item, request) => new morel.Response(
  {
    item,
    method: request.method,
    path: request.path,
    agent: request.header('User-Agent'),
    query: request.query,
  },
  { status: 201, headers: { Location: '/node-sdk/orders/1', 'X-Trace': 't-1' } },
));

exports.hello = api.get('/hello', () => new morel.Response('<h1>hi</h1>', { contentType: 'text/html' }));

// `label` lives on the jobs resource: morel.call() reaches it through the gateway.
// `double` lives here, on api: morel.call() runs it in this very worker.
exports.checkout = api.post('/checkout', async (items) => {
  const total = items.reduce((sum, item) => sum + item.price * item.qty, 0);
  const label = await morel.call('label', [total]);
  const twice = await morel.call('double', { n: total });
  return { total, label, twice, served_by: process.env.MOREL_RESOURCE };
});

// Called over HTTP, `request` is the call's request; called with morel.call() from
// this worker, the call never leaves the process and there is no request.
exports.double = api.function((n, request) => ({ value: n * 2, via: request ? 'gateway' : 'in process' }));

exports.local = api.get('/local', async () => morel.call('double', [21]));

// A failure on another resource comes back as a morel.RemoteError named after the
// remote error's type; left uncaught, the caller answers with that type too.
exports.fail = api.post('/fail', async () => morel.call('explode', { why: 'from api' }));

exports.label = jobs.function((total) => ({ text: `total: ${total}`, served_by: process.env.MOREL_RESOURCE }));

exports.explode = jobs.function((why) => {
  throw new RangeError(`exploded ${why}`);
});

// A plain export: no SDK needed, on the default resource.
exports.add = (a, b) => a + b;
