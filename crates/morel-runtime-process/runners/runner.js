'use strict';
// Morel Node.js worker.
//
// Started by the Morel host as `node runner.js` with the app root as cwd.
//
// fd 3 carries host -> worker frames and fd 4 worker -> host frames.  A frame
// is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
// stdout and stderr are the application's log, so console.log() is safe.
//
// The first frame is Load: we load the user's files (require(), falling back
// to import() for ES modules) and answer MetaData, or LoadError and exit 1.
// Then Invoke frames are dispatched as they arrive; every call runs on the
// event loop and promises are awaited, so many calls can be in flight.
// Cancel frames are accepted and ignored (a promise cannot be cancelled).
// EOF on fd 3 means shut down: we flush what is queued on fd 4 and exit 0.
//
// The SDK (`morel-sdk`, sdk/node in Morel's tree) is shipped beside this file
// in node_modules/morel-sdk.  User code finds it without installing it: this
// directory's node_modules is appended to NODE_PATH for require(), and a
// resolve hook is registered for import() the first time an ES module is
// loaded (ES modules ignore NODE_PATH).  A copy in the app's own node_modules
// wins over both.  The SDK and this runner share state through global symbols
// (Symbol.for), so any copy of the SDK works with any runner:
// * `morel-sdk.mark` on a function declared with the SDK: {endpoint, method,
//   path}.  Such a function's parameter named `request` is of kind `request`
//   in MetaData, and gets the SDK's Request built from an Invoke's `request`.
// * `morel-sdk.response` on a returned Response: the result is its body, and
//   the InvokeResult carries `"response": {"status", "headers", "raw"}`.
// * `morel-sdk.local` on globalThis: the functions of this worker by name, so
//   that `morel.call()` of one of them runs here.

const fs = require('fs');
const net = require('net');
const path = require('path');
const { pathToFileURL } = require('url');
const Module = require('module');

const MAX_FRAME = 64 * 1024 * 1024;

const SDK_NAME = 'morel-sdk';
const SDK_MODULES = path.join(__dirname, 'node_modules');
const MARK = Symbol.for('morel-sdk.mark');
const RESPONSE = Symbol.for('morel-sdk.response');
const LOCAL = Symbol.for('morel-sdk.local');

// require('morel-sdk') from user code: NODE_PATH is read once at startup, so
// the module paths are computed again after it changes. Appended, so the
// app's own NODE_PATH entries (and node_modules) come first.
process.env.NODE_PATH = process.env.NODE_PATH
  ? process.env.NODE_PATH + path.delimiter + SDK_MODULES
  : SDK_MODULES;
if (typeof Module._initPaths === 'function') Module._initPaths();

function die(message, code) {
  try {
    fs.writeSync(2, `morel runner: ${message}\n`);
  } catch (_) {
    // nothing left to report to
  }
  process.exit(code);
}

let input;
let output;
try {
  fs.fstatSync(3);
  fs.fstatSync(4);
  input = new net.Socket({ fd: 3, readable: true, writable: false });
  output = new net.Socket({ fd: 4, readable: false, writable: true });
} catch (e) {
  die(`fd 3 and fd 4 must be the protocol pipes (${e.message})`, 2);
}
output.on('error', (e) => {
  // EPIPE: the host stopped reading, it is gone or shutting us down.
  if (e && e.code === 'EPIPE') process.exit(0);
  die(`cannot write to fd 4: ${e.message}`, 2);
});
input.on('error', (e) => die(`cannot read fd 3: ${e.message}`, 2));

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

function writeFrame(text) {
  const len = Buffer.byteLength(text, 'utf8');
  const buf = Buffer.allocUnsafe(4 + len);
  buf.writeUInt32BE(len, 0);
  buf.write(text, 4, len, 'utf8');
  // One write per frame; the event loop is single threaded, so frames can
  // never interleave.
  output.write(buf);
  return len;
}

function send(msg) {
  writeFrame(JSON.stringify(msg));
}

function sendError(id, type, message, traceback) {
  send({
    type: 'InvokeResult',
    id,
    ok: false,
    error: { message, type, traceback: traceback || '' },
  });
}

function errorType(e) {
  if (e === null || typeof e !== 'object') return 'Error';
  let name = typeof e.name === 'string' ? e.name : '';
  if ((!name || name === 'Error') && e.constructor && e.constructor.name) {
    name = e.constructor.name;
  }
  return name || 'Error';
}

function sendException(id, e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'message' in e)) {
    sendError(id, errorType(e), String(e.message), typeof e.stack === 'string' ? e.stack : '');
  } else {
    sendError(id, 'Error', `non-Error value thrown: ${describe(e)}`, '');
  }
}

function describe(v) {
  try {
    return typeof v === 'string' ? JSON.stringify(v) : String(v);
  } catch (_) {
    return Object.prototype.toString.call(v);
  }
}

function typeName(v) {
  if (v === null) return 'null';
  if (typeof v === 'function') return v.constructor && v.constructor.name ? v.constructor.name : 'function';
  if (typeof v === 'bigint') return 'BigInt';
  if (typeof v === 'symbol') return 'Symbol';
  if (typeof v !== 'object') return typeof v;
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  const ctor = v.constructor && v.constructor.name;
  return ctor || tag;
}

// (body, response) of a returned SDK Response: the body to encode as the
// result, and {"status", "headers", "raw"} (raw: a string body sent as it is,
// because its content type is not JSON).
function responseParts(resp) {
  const status = resp.status;
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new Error(`status ${describe(status)} is not an integer between 200 and 599`);
  }
  const headers = [];
  let contentType = null;
  for (const pair of Array.isArray(resp.headers) ? resp.headers : []) {
    const [name, value] = Array.isArray(pair) ? pair : [];
    if (typeof name !== 'string' || typeof value !== 'string') {
      throw new TypeError(`header names and values must be strings, got ${describe(name)}: ${describe(value)}`);
    }
    if (name.toLowerCase() === 'content-type') contentType = value;
    headers.push([name, value]);
  }
  let raw = false;
  if (contentType !== null && typeof resp.body === 'string') {
    const media = contentType.split(';', 1)[0].trim().toLowerCase();
    raw = !(media === 'application/json' || media.endsWith('+json'));
  }
  return { body: resp.body, response: { status, headers, raw } };
}

function sendResult(id, result) {
  let tail = '}';
  if (result !== null && typeof result === 'object' && result[RESPONSE] === true) {
    let parts;
    try {
      parts = responseParts(result);
    } catch (e) {
      sendError(id, 'InvalidResponse', `the function's response is not valid: ${e.message}`);
      return;
    }
    result = parts.body;
    tail = `,"response":${JSON.stringify(parts.response)}}`;
  }
  let body;
  const t = typeof result;
  if (result === undefined || result === null) {
    body = 'null';
  } else if (t === 'function' || t === 'symbol' || t === 'bigint') {
    sendError(id, 'SerializationError', `result is not JSON-serializable: value of type ${typeName(result)}`);
    return;
  } else {
    if (t === 'object') {
      const tag = Object.prototype.toString.call(result);
      if (tag === '[object Map]' || tag === '[object Set]' || tag === '[object WeakMap]' ||
          tag === '[object WeakSet]' || tag === '[object Promise]') {
        sendError(id, 'SerializationError', `result is not JSON-serializable: value of type ${typeName(result)}`);
        return;
      }
      if (tag === '[object Generator]' || tag === '[object AsyncGenerator]') {
        sendError(id, 'SerializationError',
          `function returned a ${tag.slice(8, -1)}; streaming results are not supported, return an array instead`);
        return;
      }
    }
    try {
      body = JSON.stringify(result);
    } catch (e) {
      // BigInt inside the value, circular structures, throwing toJSON()...
      sendError(id, 'SerializationError', `result is not JSON-serializable: ${e.message}`);
      return;
    }
    if (body === undefined) body = 'null';
  }
  const head = typeof id === 'number'
    ? '{"type":"InvokeResult","id":' + id + ',"ok":true,"result":'
    : '{"type":"InvokeResult","id":' + JSON.stringify(id) + ',"ok":true,"result":';
  const text = head + body + tail;
  if (text.length > MAX_FRAME / 3 && Buffer.byteLength(text, 'utf8') > MAX_FRAME) {
    sendError(id, 'SerializationError',
      `result is too large: ${Buffer.byteLength(text, 'utf8')} bytes encoded (limit ${MAX_FRAME})`);
    return;
  }
  writeFrame(text);
}

// ---------------------------------------------------------------------------
// Parameter names from a function's source text
// ---------------------------------------------------------------------------

// Returns the index just past a string, template literal or comment starting
// at i, or -1 when there is none at i.
function skipNonCode(src, i) {
  const c = src[i];
  if (c === '"' || c === "'") {
    let j = i + 1;
    while (j < src.length && src[j] !== c) {
      if (src[j] === '\\') j++;
      j++;
    }
    return j + 1;
  }
  if (c === '`') {
    let j = i + 1;
    while (j < src.length && src[j] !== '`') {
      if (src[j] === '\\') {
        j += 2;
      } else if (src[j] === '$' && src[j + 1] === '{') {
        j = skipBalanced(src, j + 1, '{', '}');
      } else {
        j++;
      }
    }
    return j + 1;
  }
  if (c === '/' && src[i + 1] === '/') {
    const nl = src.indexOf('\n', i);
    return nl < 0 ? src.length : nl + 1;
  }
  if (c === '/' && src[i + 1] === '*') {
    const end = src.indexOf('*/', i + 2);
    return end < 0 ? src.length : end + 2;
  }
  return -1;
}

// src[i] === open; returns the index just past the matching close.
function skipBalanced(src, i, open, close) {
  let depth = 0;
  while (i < src.length) {
    const k = skipNonCode(src, i);
    if (k >= 0) {
      i = k;
      continue;
    }
    const c = src[i];
    if (c === open) depth++;
    else if (c === close && --depth === 0) return i + 1;
    i++;
  }
  return src.length;
}

function stripComments(text) {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if ((c === '/' && (text[i + 1] === '/' || text[i + 1] === '*'))) {
      i = skipNonCode(text, i);
      out += ' ';
    } else if (c === '"' || c === "'" || c === '`') {
      const k = skipNonCode(text, i);
      out += text.slice(i, k);
      i = k;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

// One parameter's source text -> its reported name: `x` for `x` and `x = 1`,
// `...rest` for rest parameters, the whitespace-free pattern text for
// destructuring patterns.
function paramName(text) {
  let t = stripComments(text).trim();
  if (!t) return null;
  // Cut the default value at the first top-level "=" (not "=>", "==").
  let depth = 0;
  for (let i = 0; i < t.length; i++) {
    const k = skipNonCode(t, i);
    if (k >= 0) {
      i = k - 1;
      continue;
    }
    const c = t[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === '=' && depth === 0 && t[i + 1] !== '>' && t[i + 1] !== '=' && t[i - 1] !== '=') {
      t = t.slice(0, i).trim();
      break;
    }
  }
  if (t.startsWith('...')) {
    const rest = t.slice(3).trim();
    return '...' + (IDENT.test(rest) ? rest : rest.replace(/\s+/g, ''));
  }
  return IDENT.test(t) ? t : t.replace(/\s+/g, '');
}

function splitParams(list) {
  const out = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    const k = skipNonCode(list, i);
    if (k >= 0) {
      i = k - 1;
      continue;
    }
    const c = list[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) {
      out.push(list.slice(start, i));
      start = i + 1;
    }
  }
  out.push(list.slice(start));
  return out.map(paramName).filter((p) => p !== null);
}

function paramsFromSource(src) {
  if (/^\s*class\b/.test(src) || /\{\s*\[native code\]\s*\}\s*$/.test(src)) return [];
  let i = 0;
  let lastIdent = null;
  while (i < src.length) {
    const k = skipNonCode(src, i);
    if (k >= 0) {
      i = k;
      continue;
    }
    const c = src[i];
    if (c === '[') {
      i = skipBalanced(src, i, '[', ']'); // computed method name
      continue;
    }
    if (c === '(') {
      const end = skipBalanced(src, i, '(', ')');
      return splitParams(src.slice(i + 1, end - 1));
    }
    if (c === '=' && src[i + 1] === '>') {
      return lastIdent ? [lastIdent] : []; // `x => ...`
    }
    const m = /^[A-Za-z_$][\w$]*/.exec(src.slice(i, i + 256));
    if (m) {
      lastIdent = m[0];
      i += m[0].length;
      continue;
    }
    i++;
  }
  return [];
}

// The parameters in detail for MetaData (the gateway checks arguments against
// them), or null when the source does not show them (native or bound
// functions). Every JavaScript parameter may be left out (it is then
// undefined); `...rest` takes further positional arguments; a destructuring
// pattern has no name to be given by.
function signatureOf(src, params) {
  if (/\{\s*\[native code\]\s*\}\s*$/.test(src)) return null;
  const sig = params.map((p) => {
    if (p.startsWith('...')) return { name: p.slice(3), kind: 'var_positional', default: true };
    if (IDENT.test(p)) return { name: p, kind: 'positional_or_keyword', default: true };
    return { name: p, kind: 'positional_only', default: true };
  });
  // A function that reads `arguments` takes any further positional arguments.
  if (/\barguments\b/.test(stripComments(src)) && !sig.some((p) => p.kind === 'var_positional')) {
    sig.push({ name: 'arguments', kind: 'var_positional', default: true });
  }
  return sig;
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

const AsyncFunction = (async () => {}).constructor;

// `import 'morel-sdk'` in an ES module: resolved as usual, and to the shipped
// copy when that finds nothing.  Registered only before the first import() of
// user code, so apps of CommonJS files do not pay for the hooks.
let sdkHooked = false;
function hookSdkImports() {
  if (sdkHooked) return;
  sdkHooked = true;
  const sdkUrl = pathToFileURL(path.join(SDK_MODULES, SDK_NAME, 'index.js')).href;
  const fallback = (specifier, err) => {
    if (specifier === SDK_NAME && err && err.code === 'ERR_MODULE_NOT_FOUND') {
      return { url: sdkUrl, format: 'commonjs', shortCircuit: true };
    }
    throw err;
  };
  if (typeof Module.register === 'function') {
    const hooks = `
      const SDK_URL = ${JSON.stringify(sdkUrl)};
      export async function resolve(specifier, context, next) {
        try {
          return await next(specifier, context);
        } catch (e) {
          if (specifier === ${JSON.stringify(SDK_NAME)} && e && e.code === 'ERR_MODULE_NOT_FOUND') {
            return { url: SDK_URL, format: 'commonjs', shortCircuit: true };
          }
          throw e;
        }
      }`;
    Module.register(`data:text/javascript,${encodeURIComponent(hooks)}`);
  } else if (typeof Module.registerHooks === 'function') {
    // A Node without register() (it is the off-thread form; registerHooks runs in this thread).
    Module.registerHooks({
      resolve(specifier, context, next) {
        try {
          return next(specifier, context);
        } catch (e) {
          return fallback(specifier, e);
        }
      },
    });
  }
}

function importFile(abs) {
  hookSdkImports();
  return import(pathToFileURL(abs).href);
}

async function loadFile(root, file) {
  const abs = path.resolve(root, file);
  if (abs.endsWith('.mjs')) {
    return importFile(abs);
  }
  try {
    return require(abs);
  } catch (e) {
    // ES modules that require() cannot load (older Node, or top-level await).
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
      return importFile(abs);
    }
    throw e;
  }
}

function has(obj, key) {
  return obj !== null && obj !== undefined && (typeof obj === 'object' || typeof obj === 'function') && key in obj;
}

const instances = new Map(); // class -> its single instance in this worker

function resolveAttr(mod, attr, file) {
  const parts = attr.split('.');
  const base = path.basename(file).replace(/\.[^.]*$/, '');
  const first = parts[0];
  let obj;
  let owner = mod;
  if (typeof mod === 'function' && (first === base || first === 'default') && !(first === 'default' && typeof mod.default === 'function')) {
    obj = mod; // module.exports = function ...
  } else if (has(mod, first) && mod[first] !== undefined) {
    obj = mod[first];
  } else if (has(mod, 'default') && has(mod.default, first)) {
    owner = mod.default; // ESM namespace of a CommonJS module, or a default-exported object
    obj = mod.default[first];
  } else if (first === base && has(mod, 'default') && typeof mod.default === 'function') {
    obj = mod.default; // export default function
  } else {
    throw new Error(`${file} has no export named '${first}'`);
  }
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i];
    if (typeof obj === 'function' && !Object.prototype.hasOwnProperty.call(obj, part) && obj.prototype) {
      let inst = instances.get(obj);
      if (inst === undefined) {
        try {
          inst = new obj(); // eslint-disable-line new-cap
        } catch (e) {
          throw new Error(`could not instantiate class ${parts.slice(0, i).join('.')} ` +
            `(it must have a no-argument constructor): ${e && e.message}`);
        }
        instances.set(obj, inst);
      }
      owner = inst;
    } else {
      owner = obj;
    }
    if (!has(owner, part) || owner[part] === undefined) {
      throw new Error(`${parts.slice(0, i).join('.')} has no member '${part}'`);
    }
    obj = owner[part];
  }
  if (typeof obj !== 'function') {
    throw new Error(`${attr} is not a function (it is ${typeName(obj)})`);
  }
  if (/^class\b/.test(Function.prototype.toString.call(obj))) {
    throw new Error(`${attr} is a class; export a function or name a method (${attr}.method)`);
  }
  return { fn: obj, self: owner };
}

function formatError(e) {
  if (e && typeof e.stack === 'string') return e.stack;
  return describe(e);
}

const REQUEST_PARAM = 'request';
let appRoot = process.cwd();

async function load(msg) {
  const root = path.resolve(msg.root || process.cwd());
  appRoot = root;
  const fns = Array.isArray(msg.functions) ? msg.functions : [];
  const byFile = new Map();
  for (const f of fns) {
    const list = byFile.get(f.file) || [];
    list.push(f);
    byFile.set(f.file, list);
  }
  const modules = new Map();
  const errors = [];
  for (const [file, list] of byFile) {
    try {
      modules.set(file, await loadFile(root, file));
    } catch (e) {
      const names = list.map((f) => `'${f.name}'`).join(', ');
      errors.push(`failed to load ${file} (needed by function ${names}): ${formatError(e)}`);
    }
  }
  const table = new Map();
  const meta = [];
  for (const f of fns) {
    if (!modules.has(f.file)) continue;
    try {
      const { fn, self } = resolveAttr(modules.get(f.file), f.attr || f.name, f.file);
      let params = [];
      let signature = null;
      try {
        const src = Function.prototype.toString.call(fn);
        params = paramsFromSource(src);
        signature = signatureOf(src, params);
      } catch (_) {
        params = [];
        signature = null;
      }
      const isAsync = fn instanceof AsyncFunction;
      const index = new Map();
      params.forEach((p, i) => {
        if (IDENT.test(p)) index.set(p, i);
      });
      // A function declared with the SDK gets the request in its parameter named `request`.
      let requestIndex = -1;
      if (signature && fn[MARK] !== undefined) {
        requestIndex = signature.findIndex((p) => p.name === REQUEST_PARAM && p.kind === 'positional_or_keyword');
        if (requestIndex >= 0) signature[requestIndex] = { name: REQUEST_PARAM, kind: 'request', default: true };
      }
      table.set(f.name, { fn, self, params, index, requestIndex });
      meta.push({ name: f.name, params, is_async: isAsync, signature });
    } catch (e) {
      errors.push(`cannot load function '${f.name}' from ${f.file}: ${e && e.message}`);
    }
  }
  return { table, meta, errors };
}

// ---------------------------------------------------------------------------
// Calling
// ---------------------------------------------------------------------------

let table = new Map();
let inflight = 0; // calls whose promise has not settled yet

function buildArgs(entry, name, args, kwargs) {
  const out = args.slice();
  for (const key of Object.keys(kwargs)) {
    const i = entry.index.get(key);
    if (i === undefined) {
      throw new TypeError(`${name}() got an unexpected keyword argument '${key}' ` +
        `(parameters: ${entry.params.join(', ') || 'none'})`);
    }
    if (i < args.length) {
      throw new TypeError(`${name}() got multiple values for argument '${key}'`);
    }
    out[i] = kwargs[key];
  }
  for (let i = 0; i < out.length; i++) {
    if (!(i in out)) out[i] = undefined;
  }
  return out;
}

// The arguments of a call: positional `args`, then named `kwargs`; the request
// (or undefined) takes the place of the parameter that receives it, and
// `args` fill the others in order.
function argsFor(entry, name, args, kwargs, request) {
  const ri = entry.requestIndex;
  let placed = ri < 0;
  if (!placed && ri <= args.length) {
    args = args.slice();
    args.splice(ri, 0, request);
    placed = true;
  }
  if (kwargs && typeof kwargs === 'object') {
    for (const _ in kwargs) { // eslint-disable-line no-unused-vars
      args = buildArgs(entry, name, args, kwargs);
      break;
    }
  }
  if (!placed) {
    args = args.slice();
    args[ri] = request;
    for (let i = 0; i < ri; i++) {
      if (!(i in args)) args[i] = undefined;
    }
  }
  return args;
}

// The SDK as the app's code sees it (its own copy, else the shipped one), or
// null; loaded the first time a call carries a request.
let sdk;
function appSdk() {
  if (sdk === undefined) {
    try {
      sdk = Module.createRequire(path.join(appRoot, 'package.json'))(SDK_NAME);
    } catch (_) {
      sdk = null;
    }
  }
  return sdk;
}

function makeRequest(wire) {
  const s = appSdk();
  if (s && s.Request && typeof s.Request.fromWire === 'function') return s.Request.fromWire(wire);
  return wire;
}

// `morel.call(name, args)` of a function of this worker: args is an array
// (positional) or an object (named); no request.
function callLocally(entry, name, args) {
  const a = Array.isArray(args) ? argsFor(entry, name, args, null) : argsFor(entry, name, [], args);
  return entry.fn.apply(entry.self, a);
}

function invoke(msg) {
  const id = msg.id;
  const entry = table.get(msg.name);
  if (entry === undefined) {
    sendError(id, 'NotFound', `no such function: '${msg.name}'`);
    return;
  }
  let args = Array.isArray(msg.args) ? msg.args : [];
  let result;
  try {
    if (entry.requestIndex >= 0) {
      const wire = msg.request;
      args = argsFor(entry, msg.name, args, msg.kwargs, wire && typeof wire === 'object' ? makeRequest(wire) : undefined);
    } else {
      const kwargs = msg.kwargs;
      if (kwargs && typeof kwargs === 'object') {
        for (const _ in kwargs) { // eslint-disable-line no-unused-vars
          args = buildArgs(entry, msg.name, args, kwargs);
          break;
        }
      }
    }
    result = entry.fn.apply(entry.self, args);
  } catch (e) {
    sendException(id, e);
    return;
  }
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
    inflight++;
    result.then(
      (v) => {
        inflight--;
        sendResult(id, v);
        if (eof && inflight === 0) exitAfterFlush(0);
      },
      (e) => {
        inflight--;
        sendException(id, e);
        if (eof && inflight === 0) exitAfterFlush(0);
      },
    );
  } else {
    sendResult(id, result);
  }
}

// ---------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------

let loaded = false;
let loading = false;
const backlog = [];

function handle(msg) {
  if (!loaded) {
    if (!loading) {
      if (!msg || msg.type !== 'Load') die(`expected a Load frame first, got ${JSON.stringify(msg).slice(0, 200)}`, 2);
      loading = true;
      startLoad(msg);
    } else {
      backlog.push(msg);
    }
    return;
  }
  switch (msg.type) {
    case 'Invoke':
      invoke(msg);
      break;
    case 'Cancel':
      break; // promises cannot be cancelled
    default:
      process.stderr.write(`morel runner: ignoring unknown frame type ${JSON.stringify(msg.type)}\n`);
  }
}

function startLoad(msg) {
  load(msg).then(
    (res) => {
      if (res.errors.length) {
        send({ type: 'LoadError', error: res.errors.join('\n') });
        exitAfterFlush(1);
        return;
      }
      table = res.table;
      loaded = true;
      const local = new Map();
      for (const [name, entry] of table) local.set(name, (args) => callLocally(entry, name, args));
      globalThis[LOCAL] = local;
      send({ type: 'MetaData', functions: res.meta });
      for (const m of backlog.splice(0)) handle(m);
      if (eof) drainAndExit();
    },
    (e) => {
      send({ type: 'LoadError', error: `loader crashed: ${formatError(e)}` });
      exitAfterFlush(1);
    },
  );
}

let exiting = false;
function exitAfterFlush(code) {
  if (exiting) return;
  exiting = true;
  process.exitCode = code;
  const timer = setTimeout(() => process.exit(code), 1000);
  output.end(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}

function handleFrame(bytes) {
  let msg;
  try {
    msg = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    die(`malformed frame (not UTF-8 JSON): ${e.message}`, 2);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    die('malformed frame: expected a JSON object', 2);
  }
  handle(msg);
}

let partial = null; // a frame body being filled: Buffer
let partialFill = 0;
let carry = null; // fewer than 4 header bytes

function onData(chunk) {
  let off = 0;
  if (partial !== null) {
    const n = Math.min(partial.length - partialFill, chunk.length);
    chunk.copy(partial, partialFill, 0, n);
    partialFill += n;
    off = n;
    if (partialFill < partial.length) return;
    const frame = partial;
    partial = null;
    handleFrame(frame);
  }
  if (carry !== null) {
    chunk = Buffer.concat([carry, chunk.subarray(off)]);
    off = 0;
    carry = null;
  }
  for (;;) {
    const avail = chunk.length - off;
    if (avail < 4) {
      if (avail > 0) carry = Buffer.from(chunk.subarray(off));
      return;
    }
    const len = chunk.readUInt32BE(off);
    if (len > MAX_FRAME) die(`frame of ${len} bytes exceeds the ${MAX_FRAME} byte limit`, 2);
    if (avail - 4 >= len) {
      handleFrame(chunk.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    } else {
      partial = Buffer.allocUnsafe(len);
      chunk.copy(partial, 0, off + 4);
      partialFill = avail - 4;
      return;
    }
  }
}

let eof = false;
input.on('data', onData);
input.on('end', () => {
  eof = true;
  if (partial !== null || carry !== null) {
    process.stderr.write('morel runner: EOF in the middle of a frame\n');
  }
  if (loaded || !loading) drainAndExit();
  // Closed while user code is still loading, with no call sent: the host is gone (or stopped
  // this worker), so nobody will ever call it. Do not wait for a slow load to finish.
  else if (backlog.length === 0) process.exit(0);
});

// EOF: calls still pending get EOF_GRACE_MS to settle and reply, then exit 0.
const EOF_GRACE_MS = 500;
function drainAndExit() {
  if (inflight === 0) {
    exitAfterFlush(0);
    return;
  }
  setTimeout(() => exitAfterFlush(0), EOF_GRACE_MS);
}

// A stray rejection or exception from background work must not take down a
// worker that is serving other calls: report it in the app's log instead.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`morel runner: unhandled promise rejection: ${formatError(reason)}\n`);
});
process.on('uncaughtException', (err) => {
  process.stderr.write(`morel runner: uncaught exception: ${formatError(err)}\n`);
});
