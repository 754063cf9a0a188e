'use strict';
// Morel SDK for Node.js functions.
//
// Morel runs the exported functions of your app as serverless functions;
// nothing in this package is required for that.  The SDK says more about *how*
// they run, and it is what Python apps get from `import morel`:
//
//   const morel = require('morel-sdk');
//
//   const api = new morel.Endpoint('api', { workers: [1, 4], concurrency: 8, timeout_s: 30 });
//
//   exports.score = api.function((text) => ...);
//   exports.getItem = api.get('/items/{item_id}', (item_id, full) => ...);   // GET /APP/items/42?full=1
//   exports.create = api.post('/items', (name, request) =>                   // request: a morel.Request
//     new morel.Response({ name }, { status: 201, headers: { Location: '/items/7' } }));
//   exports.total = api.get('/total', async () => morel.call('score', ['hi']));
//
// A route's path parameters and query parameters are passed as named
// arguments (strings; a repeated query parameter as an array), merged with a
// JSON object body (the body wins).  In a function declared with the SDK, a
// parameter named `request` receives the call's `Request`; returning a
// `Response` sets the answer's status and headers.
//
// The marks are read *statically* when the app is deployed (your modules are
// not run to find them): the endpoint's name, its options and the route paths
// must be written as literals, and the functions must be exported.  At run
// time the marks return the function itself, marked, so it can still be
// called directly (in a unit test, say).
//
// Morel ships this package inside its binary: `require('morel-sdk')` works in
// a Morel worker without installing it.  A copy installed in the app's
// node_modules is used instead when there is one.

const http = require('http');
const https = require('https');

const HTTP_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
const ENDPOINT_OPTIONS = ['workers', 'concurrency', 'timeout_s', 'idle_timeout_s', 'memory_mb', 'cpu', 'env', 'public'];

// Shared by every copy of the SDK loaded in one process, and by Morel's runner:
// symbols from the global registry, so a copy in the app's node_modules and the
// one shipped in Morel agree.
const MARK = Symbol.for('morel-sdk.mark'); // on a function: {endpoint, method, path}
const RESPONSE = Symbol.for('morel-sdk.response'); // on a Response: true
const LOCAL = Symbol.for('morel-sdk.local'); // on globalThis: Map name -> invoke(args)

function mark(fn, endpoint, method, path) {
  if (typeof fn !== 'function') {
    throw new TypeError(`morel marks apply to functions, not ${fn === null ? 'null' : typeof fn}`);
  }
  Object.defineProperty(fn, MARK, {
    value: Object.freeze({ endpoint, method: method || null, path: path || null }),
    configurable: true,
    enumerable: false,
    writable: false,
  });
  return fn;
}

function checkPath(path) {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new TypeError(`route paths must be strings starting with '/', got ${JSON.stringify(path)}`);
  }
}

/**
 * A named group of functions sharing one resource configuration.
 *
 * `workers` is `[min, max]` worker processes (or one number for both; `min`
 * may be 0 to scale to zero), `concurrency` the number of calls one worker
 * runs at a time, `timeout_s` the per-call deadline, `idle_timeout_s` how
 * long an idle worker is kept above `min`.  `memory_mb` and `cpu` limit each
 * worker, `env` adds environment variables, and `public` says whether the
 * endpoint's routes are reachable without credentials.
 */
class Endpoint {
  constructor(name, options = {}) {
    if (typeof name !== 'string' || !name) throw new TypeError('an endpoint needs a non-empty name');
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new TypeError('endpoint options must be an object');
    }
    for (const key of Object.keys(options)) {
      if (!ENDPOINT_OPTIONS.includes(key)) {
        throw new TypeError(`unknown endpoint option '${key}' (expected one of: ${ENDPOINT_OPTIONS.join(', ')})`);
      }
    }
    let workers = options.workers === undefined ? [1, 1] : options.workers;
    if (Number.isInteger(workers)) workers = [workers, workers];
    if (!Array.isArray(workers) || workers.length !== 2 || !workers.every(Number.isInteger)) {
      throw new TypeError(`workers must be [min, max] integers, got ${JSON.stringify(workers)}`);
    }
    if (workers[0] < 0 || workers[1] < Math.max(1, workers[0])) {
      throw new RangeError(`workers must satisfy 0 <= min <= max and max >= 1, got ${JSON.stringify(workers)}`);
    }
    const concurrency = options.concurrency === undefined ? 1 : options.concurrency;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError('concurrency must be an integer of at least 1');
    }
    this.name = name;
    this.workers = workers;
    this.concurrency = concurrency;
    this.timeout_s = options.timeout_s === undefined ? 30 : options.timeout_s;
    this.idle_timeout_s = options.idle_timeout_s === undefined ? 300 : options.idle_timeout_s;
    this.memory_mb = options.memory_mb === undefined ? null : options.memory_mb;
    this.cpu = options.cpu === undefined ? null : options.cpu;
    this.env = { ...(options.env || {}) };
    this.public = options.public === undefined ? true : Boolean(options.public);
  }

  /** Runs `fn` on this endpoint; returns `fn`. */
  function(fn) {
    return mark(fn, this.name);
  }

  /** Exposes `fn` as `method path` over HTTP (and on the call path); returns `fn`. */
  route(method, path, fn) {
    const m = typeof method === 'string' ? method.toUpperCase() : method;
    if (!HTTP_METHODS.includes(m)) throw new TypeError(`unsupported HTTP method ${JSON.stringify(method)}`);
    checkPath(path);
    return mark(fn, this.name, m, path);
  }

  get(path, fn) {
    return this.route('GET', path, fn);
  }

  post(path, fn) {
    return this.route('POST', path, fn);
  }

  put(path, fn) {
    return this.route('PUT', path, fn);
  }

  delete(path, fn) {
    return this.route('DELETE', path, fn);
  }

  patch(path, fn) {
    return this.route('PATCH', path, fn);
  }

  toString() {
    return `Endpoint(${JSON.stringify(this.name)}, workers=[${this.workers}], concurrency=${this.concurrency})`;
  }
}

/** Marks `fn` as a Morel function on the app's default resource; returns `fn`. */
function markFunction(fn) {
  return mark(fn, null);
}

function pairs(items, what) {
  if (items === undefined || items === null) return [];
  if (Array.isArray(items) || (typeof items[Symbol.iterator] === 'function' && typeof items !== 'string')) {
    return Array.from(items, (p) => {
      if (!Array.isArray(p) || p.length !== 2) throw new TypeError(`${what} must be [name, value] pairs`);
      return [p[0], p[1]];
    });
  }
  if (typeof items === 'object') return Object.entries(items);
  throw new TypeError(`${what} must be an object or a list of [name, value] pairs`);
}

/**
 * The HTTP request of a call, for a function declared with the SDK that has a
 * parameter named `request` (Morel fills it; clients cannot send it):
 *
 *   exports.getItem = api.get('/items/{id}', (id, request) =>
 *     ({ id, agent: request.headers['user-agent'] }));
 *
 * `method` is 'GET', 'POST'...; `path` the path as the client sent it
 * (percent-encoded, with the app's prefix, without the query); `headers` an
 * object of lowercase names to values (a repeated header's values joined by
 * ', '); `query` an object of the decoded query parameters (a repeated one is
 * an array).  `headerList` and `queryList` keep every [name, value] pair in
 * order.  The body is bound to the function's arguments, as for any call.
 */
class Request {
  constructor({ method = 'GET', path = '/', headers, query } = {}) {
    this.method = method;
    this.path = path;
    this.headerList = pairs(headers, 'headers').map(([k, v]) => [String(k).toLowerCase(), String(v)]);
    this.queryList = pairs(query, 'query').map(([k, v]) => [String(k), String(v)]);
    this.headers = {};
    for (const [k, v] of this.headerList) {
      this.headers[k] = Object.prototype.hasOwnProperty.call(this.headers, k) ? `${this.headers[k]}, ${v}` : v;
    }
    this.query = {};
    for (const [k, v] of this.queryList) {
      if (!Object.prototype.hasOwnProperty.call(this.query, k)) this.query[k] = v;
      else if (Array.isArray(this.query[k])) this.query[k].push(v);
      else this.query[k] = [this.query[k], v];
    }
  }

  /** One header's value (any case of its name), or undefined. */
  header(name) {
    const key = String(name).toLowerCase();
    return Object.prototype.hasOwnProperty.call(this.headers, key) ? this.headers[key] : undefined;
  }

  /** From an Invoke frame's `request`: {method, path, headers: [[name, value]...], query: [...]}. */
  static fromWire(wire) {
    const w = wire || {};
    return new Request({ method: w.method || 'GET', path: w.path || '/', headers: w.headers || [], query: w.query || [] });
  }

  toString() {
    return `Request(${this.method} ${this.path})`;
  }
}

/**
 * An answer with its own status and headers, returned by a function:
 *
 *   return new morel.Response({ id: 7 }, { status: 201, headers: { Location: '/items/7' } });
 *   return new morel.Response('<p>hi</p>', { contentType: 'text/html' });
 *
 * `body` is sent as JSON, like any result; a string body whose content type is
 * not JSON is sent as it is.  `status` is 200 to 599.  `headers` is an object
 * or a list of [name, value] pairs (repeat a name in the list to send it
 * twice); Morel sets Content-Length, Date and the connection's headers itself,
 * and refuses a response that sets them (the call fails with 500).
 */
class Response {
  constructor(body = null, { status = 200, headers, contentType } = {}) {
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`status must be an integer between 200 and 599, got ${JSON.stringify(status)}`);
    }
    this.body = body;
    this.status = status;
    this.headers = pairs(headers, 'headers');
    if (contentType !== undefined && contentType !== null) {
      this.headers = this.headers.filter(([k]) => String(k).toLowerCase() !== 'content-type');
      this.headers.push(['content-type', contentType]);
    }
    Object.defineProperty(this, RESPONSE, { value: true, enumerable: false });
  }

  toString() {
    return `Response(status=${this.status})`;
  }
}

/**
 * A function called on another resource threw.  `name` is the remote error's
 * type (so an uncaught one keeps its name upstream), `type` the same, and
 * `status` the HTTP status of the answer.
 */
class RemoteError extends Error {
  constructor(message, type = 'Error', status = 500) {
    super(message);
    this.type = type;
    this.status = status;
    Object.defineProperty(this, 'name', {
      value: typeof type === 'string' && /^[A-Za-z_$][\w$]*$/.test(type) ? type : 'RemoteError',
      configurable: true,
      writable: true,
      enumerable: false,
    });
  }
}

// Functions loaded in this worker, filled by Morel's runner after it loads the app.
function localFunctions() {
  const local = globalThis[LOCAL];
  return local instanceof Map ? local : null;
}

/**
 * Calls another function of the same app by name, with `args` an array
 * (positional) or an object (named), as a call's JSON body would be.  Returns
 * a promise of its result.
 *
 * Runs in this worker when the function is loaded here, otherwise through the
 * gateway on an instance of its resource.  A remote failure rejects with a
 * `RemoteError` carrying the remote message and type.
 */
async function call(name, args = []) {
  if (typeof name !== 'string' || !name) throw new TypeError('morel.call needs a function name');
  if (args === null || typeof args !== 'object') {
    throw new TypeError('morel.call takes its arguments as an array (positional) or an object (named)');
  }
  const local = localFunctions();
  const invoke = local && local.get(name);
  if (invoke) return invoke(args);
  return remote(name, args);
}

function remote(name, args) {
  const base = process.env.MOREL_GATEWAY_URL;
  const app = process.env.MOREL_APP;
  if (!base || !app) {
    return Promise.reject(new Error(`morel.call('${name}') runs inside Morel workers only ` +
      '(MOREL_GATEWAY_URL and MOREL_APP are not set)'));
  }
  const version = process.env.MOREL_ENV || 'latest';
  const url = new URL(`${base.replace(/\/+$/, '')}/default/${encodeURIComponent(app)}/` +
    `${encodeURIComponent(version)}/call/${encodeURIComponent(name)}`);
  const body = Buffer.from(JSON.stringify(args), 'utf8');
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length },
      timeout: 300000,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let value;
        try {
          value = text ? JSON.parse(text) : null;
        } catch (_) {
          value = text;
        }
        if (res.statusCode >= 200 && res.statusCode < 300) {
          resolve(value);
          return;
        }
        const payload = value && typeof value === 'object' ? value : {};
        reject(new RemoteError(payload.error || `HTTP ${res.statusCode} from ${name}`,
          payload.type || 'Error', res.statusCode));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`morel.call('${name}') timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

module.exports = {
  Endpoint,
  Request,
  Response,
  RemoteError,
  call,
  function: markFunction,
  version: '0.1.0',
};
