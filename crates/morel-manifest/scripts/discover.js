'use strict';
// Static function discovery for Node.js Morel apps.
//
//   node discover.js ROOT [FILE ...]
//
// Without FILE arguments the entry file is scanned: package.json "main" when
// present, else index.js, else index.mjs.  User code is never required or
// imported: the source text is tokenized here and export forms are matched
// on the token stream.  Syntax is checked with `node --check`, which parses
// without executing anything.
//
// Output (stdout, one JSON object), the same shape as discover.py:
//   {"files":[{"file":"index.js","functions":[{"name":"greet","params":["name"],
//     "is_async":false,"is_class":false,"endpoint":null,"http_method":null,"http_path":null}]}],
//    "endpoints":{},"errors":[{"file":"x.js","line":3,"message":"..."}]}
//
// Recognised exports: module.exports = { a, b: fn, c() {}, async d() {} },
// module.exports = function/arrow/identifier (named after the file),
// exports.a = ..., module.exports.a = ..., export function / async function,
// export const a = ..., export { a, b as c } [from '...'], export default ....
// Exported values that are clearly not functions (literals, objects, classes,
// `new X()`) and generator functions are left out; values that cannot be
// judged statically (calls, imports) are listed with params [].
//
// The SDK's forms (sdk/node, the package `morel-sdk`), once the file binds it
// with `require('morel-sdk')` or `import ... from 'morel-sdk'`:
//   const api = new morel.Endpoint('api', { workers: [1, 4], concurrency: 8 });
//   exports.f = api.function(fn);                  // on the endpoint's resource
//   exports.g = api.get('/items/{id}', fn);        // also post, put, delete, patch
//   exports.h = api.route('GET', '/h', fn);
//   exports.k = morel.function(fn);                // on the default resource
// wherever an exported value may be written (fn: a function expression or the
// name of a top-level function).  The endpoint's name, its options and the
// route paths must be literals; the endpoints are reported under "endpoints"
// as {"var", "file", "options"}, like discover.py's.
// An error whose line is 0 is not tied to a line.  Exit code 0 unless the
// arguments are wrong (2).

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const USAGE = 'usage: node discover.js ROOT [FILE ...]\n';

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

const PUNCTUATORS = [
  '>>>=', '...', '===', '!==', '**=', '<<=', '>>=', '>>>', '&&=', '||=', '??=',
  '=>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '++', '--', '+=', '-=', '*=',
  '/=', '%=', '&=', '|=', '^=', '**', '<<', '>>',
];
const REGEX_AFTER_WORDS = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw',
  'case', 'do', 'else', 'yield', 'await',
]);

class LexError extends Error {
  constructor(message, line) {
    super(message);
    this.line = line;
  }
}

function isIdentStart(c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$' || c > '\x7f';
}

function isIdentPart(c) {
  return isIdentStart(c) || (c >= '0' && c <= '9');
}

function tokenize(src) {
  const tokens = [];
  let i = 0;
  let line = 1;
  const n = src.length;

  function countLines(from, to) {
    for (let k = from; k < to; k++) if (src[k] === '\n') line++;
  }

  function skipString(quote, startLine) {
    let j = i + 1;
    while (j < n && src[j] !== quote) {
      if (src[j] === '\\') j++;
      else if (src[j] === '\n') throw new LexError('unterminated string literal', startLine);
      j++;
    }
    if (j >= n) throw new LexError('unterminated string literal', startLine);
    return j + 1;
  }

  // Skips a template literal starting at src[j] === '`'; returns the index
  // after it.  ${...} expressions are skipped with their own strings,
  // comments and nested templates.
  function skipTemplate(j, startLine) {
    j++;
    while (j < n) {
      const c = src[j];
      if (c === '\\') {
        j += 2;
      } else if (c === '`') {
        return j + 1;
      } else if (c === '$' && src[j + 1] === '{') {
        j = skipCode(j + 2, startLine);
      } else {
        j++;
      }
    }
    throw new LexError('unterminated template literal', startLine);
  }

  // Skips code up to and including the "}" closing a ${ substitution.
  function skipCode(j, startLine) {
    let depth = 1;
    while (j < n) {
      const c = src[j];
      if (c === '"' || c === "'") {
        const save = i;
        i = j;
        j = skipString(c, startLine);
        i = save;
      } else if (c === '`') {
        j = skipTemplate(j, startLine);
      } else if (c === '/' && src[j + 1] === '/') {
        const nl = src.indexOf('\n', j);
        j = nl < 0 ? n : nl;
      } else if (c === '/' && src[j + 1] === '*') {
        const end = src.indexOf('*/', j + 2);
        if (end < 0) throw new LexError('unterminated comment', startLine);
        j = end + 2;
      } else {
        if (c === '{') depth++;
        else if (c === '}' && --depth === 0) return j + 1;
        j++;
      }
    }
    throw new LexError('unterminated template literal', startLine);
  }

  function regexAllowed() {
    const prev = tokens[tokens.length - 1];
    if (!prev) return true;
    if (prev.t === 'punc') return !(prev.v === ')' || prev.v === ']' || prev.v === '}' || prev.v === '++' || prev.v === '--');
    if (prev.t === 'id') return REGEX_AFTER_WORDS.has(prev.v);
    return false;
  }

  while (i < n) {
    const c = src[i];
    if (c === '\n') {
      line++;
      i++;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v' || c === '\ufeff' || c === '\u00a0') {
      i++;
      continue;
    }
    if (c === '#' && i === 0 && src[1] === '!') {
      const nl = src.indexOf('\n');
      i = nl < 0 ? n : nl;
      continue;
    }
    if (c === '/' && src[i + 1] === '/') {
      const nl = src.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      continue;
    }
    if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw new LexError('unterminated comment', line);
      countLines(i, end);
      i = end + 2;
      continue;
    }
    const start = i;
    const startLine = line;
    if (c === '"' || c === "'") {
      i = skipString(c, line);
      tokens.push({ t: 'str', v: src.slice(start + 1, i - 1), start, end: i, line: startLine });
      continue;
    }
    if (c === '`') {
      i = skipTemplate(i, line);
      countLines(start, i);
      tokens.push({ t: 'tmpl', v: '', start, end: i, line: startLine });
      continue;
    }
    if (isIdentStart(c) || c === '\\') {
      let j = i + 1;
      while (j < n && (isIdentPart(src[j]) || src[j] === '\\')) j++;
      i = j;
      tokens.push({ t: 'id', v: src.slice(start, i), start, end: i, line: startLine });
      continue;
    }
    if ((c >= '0' && c <= '9') || (c === '.' && src[i + 1] >= '0' && src[i + 1] <= '9')) {
      let j = i + 1;
      while (j < n && (isIdentPart(src[j]) || src[j] === '.' ||
        ((src[j] === '+' || src[j] === '-') && /[eE]/.test(src[j - 1]) && !/^0[xX]/.test(src.slice(start, j))))) j++;
      i = j;
      tokens.push({ t: 'num', v: src.slice(start, i), start, end: i, line: startLine });
      continue;
    }
    if (c === '#' && isIdentStart(src[i + 1] || '')) {
      let j = i + 1;
      while (j < n && isIdentPart(src[j])) j++;
      i = j;
      tokens.push({ t: 'id', v: src.slice(start, i), start, end: i, line: startLine });
      continue;
    }
    if (c === '/' && regexAllowed()) {
      let j = i + 1;
      let inClass = false;
      while (j < n) {
        const d = src[j];
        if (d === '\\') j++;
        else if (d === '\n') throw new LexError('unterminated regular expression', startLine);
        else if (d === '[') inClass = true;
        else if (d === ']') inClass = false;
        else if (d === '/' && !inClass) break;
        j++;
      }
      if (j >= n) throw new LexError('unterminated regular expression', startLine);
      j++;
      while (j < n && isIdentPart(src[j])) j++;
      i = j;
      tokens.push({ t: 'regex', v: src.slice(start, i), start, end: i, line: startLine });
      continue;
    }
    let p = null;
    for (const cand of PUNCTUATORS) {
      if (src.startsWith(cand, i)) {
        p = cand;
        break;
      }
    }
    if (p === null) p = c;
    i += p.length;
    tokens.push({ t: 'punc', v: p, start, end: i, line: startLine });
  }
  return tokens;
}

// Pairs every bracket token with its partner; reports unbalanced brackets.
function matchBrackets(tokens) {
  const stack = [];
  const OPEN = { '(': ')', '[': ']', '{': '}' };
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k];
    if (tok.t !== 'punc') continue;
    if (OPEN[tok.v]) {
      stack.push(k);
    } else if (tok.v === ')' || tok.v === ']' || tok.v === '}') {
      const open = stack.pop();
      if (open === undefined || OPEN[tokens[open].v] !== tok.v) {
        throw new LexError(`unexpected '${tok.v}'`, tok.line);
      }
      tokens[open].match = k;
      tok.match = open;
    }
  }
  if (stack.length) {
    const tok = tokens[stack[stack.length - 1]];
    throw new LexError(`'${tok.v}' is never closed`, tok.line);
  }
}

// ---------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------

const IDENT = /^[A-Za-z_$][\w$]*$/;
const SDK_PACKAGE = 'morel-sdk';
const ENDPOINT_OPTIONS = ['workers', 'concurrency', 'timeout_s', 'idle_timeout_s', 'memory_mb', 'cpu', 'env', 'public'];
const ROUTE_METHODS = ['get', 'post', 'put', 'delete', 'patch'];
const NOT_FUNCTION_WORDS = new Set(['true', 'false', 'null', 'undefined', 'this', 'new', 'class', 'typeof', 'void', 'NaN', 'Infinity']);

class FileScan {
  constructor(rel, src, tokens) {
    this.rel = rel;
    this.src = src;
    this.tokens = tokens;
    this.base = path.basename(rel).replace(/\.[^.]*$/, '');
    this.decls = new Map();
    this.exports = new Map(); // name -> {params, is_async, endpoint, http_method, http_path}
    this.sdkNamespaces = new Set(); // local names bound to the SDK module
    this.sdkNames = new Map(); // local name -> the SDK export it is bound to
    this.endpointVars = new Map(); // local name -> endpoint name
    this.endpoints = new Map(); // endpoint name -> {var, file, options}
    this.problems = new Map(); // "line:message" -> {file, line, message}
  }

  problem(line, message) {
    this.problems.set(`${line}:${message}`, { file: this.rel, line, message });
  }

  tok(k) {
    return this.tokens[k];
  }

  is(k, v) {
    const t = this.tokens[k];
    return t !== undefined && t.v === v && (t.t === 'punc' || t.t === 'id');
  }

  isId(k) {
    const t = this.tokens[k];
    return t !== undefined && t.t === 'id';
  }

  // Parameter names of the list whose "(" is token k.
  params(k) {
    const open = this.tokens[k];
    const close = this.tokens[open.match];
    return splitParams(this.src.slice(open.end, close.start));
  }

  // Classifies the expression starting at token k.  Returns
  //   {kind: 'function', params, is_async} | {kind: 'generator'} |
  //   {kind: 'value'} | {kind: 'object', open} | {kind: 'ref', name} |
  //   {kind: 'unknown'}
  value(k) {
    const t = this.tokens[k];
    if (t === undefined) return { kind: 'unknown' };
    const sdk = this.sdkValue(k);
    if (sdk !== null) return sdk;
    let isAsync = false;
    if (this.is(k, 'async') && (this.is(k + 1, 'function') || this.is(k + 1, '(') || this.isId(k + 1))) {
      // `async (...) =>`, `async x =>`, `async function`
      const after = this.is(k + 1, '(') ? this.tokens[k + 1].match + 1 : k + 2;
      if (this.is(k + 1, 'function') || this.is(after, '=>')) {
        isAsync = true;
        k++;
      }
    }
    if (this.is(k, 'function')) {
      let j = k + 1;
      if (this.is(j, '*')) return { kind: 'generator' };
      if (this.isId(j)) j++;
      if (!this.is(j, '(')) return { kind: 'unknown' };
      return { kind: 'function', params: this.params(j), is_async: isAsync };
    }
    if (this.is(k, '(') && this.is(this.tokens[k].match + 1, '=>')) {
      return { kind: 'function', params: this.params(k), is_async: isAsync };
    }
    if (this.isId(k) && this.is(k + 1, '=>')) {
      return { kind: 'function', params: [this.tokens[k].v], is_async: isAsync };
    }
    if (isAsync) return { kind: 'unknown' };
    if (t.t === 'str' || t.t === 'num' || t.t === 'tmpl' || t.t === 'regex') return { kind: 'value' };
    if (this.is(k, '{')) return { kind: 'object', open: k };
    if (this.is(k, '[') || this.is(k, '!') || this.is(k, '-') || this.is(k, '+')) return { kind: 'value' };
    if (t.t === 'id' && NOT_FUNCTION_WORDS.has(t.v)) return { kind: 'value' };
    if (this.is(k, 'require') && this.is(k + 1, '(') && this.tokens[k + 2] && this.tokens[k + 2].t === 'str' &&
      /\.json$/.test(this.tokens[k + 2].v)) {
      return { kind: 'value' }; // require('./data.json')
    }
    if (t.t === 'id') {
      const next = this.tokens[k + 1];
      const continues = next !== undefined && next.t === 'punc' &&
        ['.', '(', '[', '?.', '=', '||', '&&', '??', '?', '+', '-', '*', '/'].includes(next.v);
      if (!continues && !(next && next.t === 'tmpl')) return { kind: 'ref', name: t.v };
    }
    return { kind: 'unknown' };
  }

  // -- the SDK's forms ------------------------------------------------------

  // `require('morel-sdk')` at token k.
  isSdkRequire(k) {
    return this.is(k, 'require') && this.is(k + 1, '(') && this.tokens[k + 2] !== undefined &&
      this.tokens[k + 2].t === 'str' && this.tokens[k + 2].v === SDK_PACKAGE && this.is(k + 3, ')');
  }

  // Binds the names of a `{ a, b: c }` (destructuring, sep ':') or
  // `{ a, b as c }` (import, sep 'as') list whose "{" is token k.
  bindSdkNames(k, sep) {
    const toks = this.tokens;
    const end = toks[k].match;
    for (let j = k + 1; j < end; j++) {
      if (!this.isId(j) && toks[j].t !== 'str') continue;
      const exported = toks[j].v;
      let local = exported;
      if (this.is(j + 1, sep) && this.isId(j + 2)) {
        local = toks[j + 2].v;
        j += 2;
      }
      this.sdkNames.set(local, exported);
      while (j + 1 < end && !this.is(j + 1, ',')) j++;
    }
  }

  // Top-level bindings of the SDK: `const morel = require('morel-sdk')`,
  // `const { Endpoint } = require('morel-sdk')`, `import morel from`,
  // `import * as morel from`, `import { Endpoint } from 'morel-sdk'`.
  collectSdkBindings() {
    const toks = this.tokens;
    for (let k = 0; k < toks.length; k++) {
      const t = toks[k];
      if (t.t === 'punc' && (t.v === '{' || t.v === '(' || t.v === '[')) {
        k = t.match;
        continue;
      }
      if (t.t !== 'id' || this.is(k - 1, '.')) continue;
      if ((t.v === 'const' || t.v === 'let' || t.v === 'var')) {
        if (this.isId(k + 1) && this.is(k + 2, '=') && this.isSdkRequire(k + 3)) {
          this.sdkNamespaces.add(toks[k + 1].v);
        } else if (this.is(k + 1, '{') && this.is(toks[k + 1].match + 1, '=') && this.isSdkRequire(toks[k + 1].match + 2)) {
          this.bindSdkNames(k + 1, ':');
        }
      } else if (t.v === 'import') {
        let j = k + 1;
        let from = j;
        while (from < toks.length && !this.is(from, 'from') && !this.is(from, ';') && toks[from].t !== 'str') {
          from = this.is(from, '{') ? toks[from].match + 1 : from + 1;
        }
        if (!this.is(from, 'from') || !toks[from + 1] || toks[from + 1].t !== 'str' || toks[from + 1].v !== SDK_PACKAGE) continue;
        while (j < from) {
          if (this.is(j, '*') && this.is(j + 1, 'as') && this.isId(j + 2)) {
            this.sdkNamespaces.add(toks[j + 2].v);
            j += 3;
          } else if (this.is(j, '{')) {
            this.bindSdkNames(j, 'as');
            j = toks[j].match + 1;
          } else if (this.isId(j)) {
            this.sdkNamespaces.add(toks[j].v); // the default export: module.exports
            j++;
          } else {
            j++;
          }
        }
      }
    }
  }

  // Token ranges [start, end) of the arguments of the call whose "(" is token open.
  callArgs(open) {
    const toks = this.tokens;
    const end = toks[open].match;
    const out = [];
    let start = open + 1;
    for (let j = open + 1; j < end; j++) {
      const t = toks[j];
      if (t.t === 'punc' && (t.v === '{' || t.v === '(' || t.v === '[')) {
        j = t.match;
      } else if (t.t === 'punc' && t.v === ',') {
        out.push([start, j]);
        start = j + 1;
      }
    }
    if (start < end) out.push([start, end]);
    return out;
  }

  // The JSON value of the literal in tokens [start, end); throws a message.
  literal(start, end) {
    const toks = this.tokens;
    const text = () => this.src.slice(toks[start].start, toks[end - 1].end);
    if (start >= end) throw new Error('missing value');
    const t = toks[start];
    if (end - start === 1) {
      if (t.t === 'str') return unquote(t.v);
      if (t.t === 'num') {
        const n = Number(t.v);
        if (!Number.isFinite(n)) throw new Error(`${t.v} is not a number discovery can read`);
        return n;
      }
      if (this.is(start, 'true')) return true;
      if (this.is(start, 'false')) return false;
      if (this.is(start, 'null')) return null;
    }
    if (end - start === 2 && this.is(start, '-') && toks[start + 1].t === 'num') {
      return -this.literal(start + 1, end);
    }
    if ((this.is(start, '[') || this.is(start, '{')) && t.match === end - 1) {
      const items = this.callArgs(start);
      if (this.is(start, '[')) return items.map(([a, b]) => this.literal(a, b));
      const obj = {};
      for (const [a, b] of items) {
        const key = toks[a];
        if (!(key.t === 'id' || key.t === 'str') || !this.is(a + 1, ':')) {
          throw new Error(`${this.src.slice(key.start, toks[b - 1].end)} is not a "key: literal" entry`);
        }
        obj[key.t === 'str' ? unquote(key.v) : key.v] = this.literal(a + 2, b);
      }
      return obj;
    }
    throw new Error(`${text()} is not a literal value; discovery cannot evaluate code, write the value out`);
  }

  // `new morel.Endpoint(...)` / `new Endpoint(...)` at token k: the "(" or -1.
  endpointCall(k) {
    if (!this.is(k, 'new') || !this.isId(k + 1)) return -1;
    const ctor = this.tokens[k + 1].v;
    if (this.sdkNamespaces.has(ctor) && this.is(k + 2, '.') && this.is(k + 3, 'Endpoint') && this.is(k + 4, '(')) return k + 4;
    if (this.sdkNames.get(ctor) === 'Endpoint' && this.is(k + 2, '(')) return k + 2;
    return -1;
  }

  // The SDK's value at token k (an Endpoint, or a marked function), or null.
  sdkValue(k) {
    if (this.sdkNamespaces.size === 0 && this.sdkNames.size === 0) return null;
    const open = this.endpointCall(k);
    if (open >= 0) return this.endpointValue(open);
    if (!this.isId(k) || !this.is(k + 1, '.') || !this.isId(k + 2) || !this.is(k + 3, '(')) return null;
    const obj = this.tokens[k].v;
    const method = this.tokens[k + 2].v;
    if (this.endpointVars.has(obj) && (method === 'function' || method === 'route' || ROUTE_METHODS.includes(method))) {
      return this.markValue(this.endpointVars.get(obj), `${obj}.${method}`, method, k + 3);
    }
    if (this.sdkNamespaces.has(obj) && method === 'function') {
      return this.markValue(null, `${obj}.${method}`, method, k + 3);
    }
    return null;
  }

  endpointValue(open) {
    const line = this.tokens[open].line;
    const args = this.callArgs(open);
    let name = null;
    const options = {};
    const nameTok = args.length ? this.tokens[args[0][0]] : undefined;
    if (nameTok && nameTok.t === 'str' && args[0][1] - args[0][0] === 1 && unquote(nameTok.v)) {
      name = unquote(nameTok.v);
    } else {
      this.problem(line, 'the endpoint name must be a non-empty string literal');
    }
    if (args.length > 2) this.problem(line, `endpoint ${JSON.stringify(name)}: options must be one object literal`);
    if (args.length >= 2) {
      const [a, b] = args[1];
      if (!this.is(a, '{') || this.tokens[a].match !== b - 1) {
        this.problem(line, `endpoint ${JSON.stringify(name)}: options must be an object literal`);
      } else {
        for (const [s, e] of this.callArgs(a)) {
          const key = this.tokens[s];
          const keyName = key.t === 'str' ? unquote(key.v) : key.v;
          if (!(key.t === 'id' || key.t === 'str') || !this.is(s + 1, ':')) {
            this.problem(key.line, `endpoint ${JSON.stringify(name)}: options must be written as "name: literal"`);
            continue;
          }
          if (!ENDPOINT_OPTIONS.includes(keyName)) {
            this.problem(key.line, `endpoint ${JSON.stringify(name)}: unknown option ${JSON.stringify(keyName)} ` +
              `(expected one of: ${ENDPOINT_OPTIONS.join(', ')})`);
            continue;
          }
          try {
            let v = this.literal(s + 2, e);
            if (keyName === 'workers' && Number.isInteger(v)) v = [v, v];
            options[keyName] = v;
          } catch (err) {
            this.problem(key.line, `endpoint ${JSON.stringify(name)}: option ${JSON.stringify(keyName)}: ${err.message}`);
          }
        }
      }
    }
    return { kind: 'endpoint', name, options, line };
  }

  addEndpoint(variable, info) {
    if (info.name === null) return;
    this.endpointVars.set(variable, info.name);
    const other = this.endpoints.get(info.name);
    if (other === undefined) {
      this.endpoints.set(info.name, { var: variable, file: this.rel, options: info.options });
    } else if (other.var !== variable) {
      this.problem(info.line, `endpoint ${JSON.stringify(info.name)} is already defined (variable '${other.var}')`);
    }
  }

  // `api.get('/p', fn)` and friends; `what` is the callee as written.
  markValue(endpoint, what, method, open) {
    const toks = this.tokens;
    const line = toks[open].line;
    const args = this.callArgs(open);
    let httpMethod = null;
    let httpPath = null;
    let fnArg;
    const stringArg = (range, role) => {
      const t = range && toks[range[0]];
      if (t && t.t === 'str' && range[1] - range[0] === 1) return unquote(t.v);
      this.problem(line, `the ${role} given to ${what} must be a string literal`);
      return null;
    };
    if (method === 'function') {
      if (args.length !== 1) this.problem(line, `${what} takes one function`);
      fnArg = args[0];
    } else {
      const expected = method === 'route' ? 3 : 2;
      if (args.length !== expected) {
        this.problem(line, method === 'route'
          ? `${what} takes a method, a path and a function: ${what}('GET', '/items', fn)`
          : `${what} takes a path and a function: ${what}('/items', fn)`);
      }
      if (method === 'route') {
        const m = stringArg(args[0], 'method');
        if (m !== null && !ROUTE_METHODS.includes(m.toLowerCase())) {
          this.problem(line, `unsupported HTTP method ${JSON.stringify(m)} in ${what}`);
        } else if (m !== null) {
          httpMethod = m.toUpperCase();
        }
      } else {
        httpMethod = method.toUpperCase();
      }
      httpPath = stringArg(args[expected - 2], 'path');
      if (httpPath !== null && !httpPath.startsWith('/')) {
        this.problem(line, `route path ${JSON.stringify(httpPath)} must start with '/'`);
        httpPath = null;
      }
      if (httpPath === null) httpMethod = null;
      fnArg = args[expected - 1];
    }
    let params = [];
    let isAsync = false;
    if (fnArg !== undefined) {
      const fn = this.resolve(this.value(fnArg[0]));
      if (fn.kind === 'function') {
        params = fn.params;
        isAsync = fn.is_async;
      } else if (fn.kind !== 'unknown' && fn.kind !== 'ref') {
        this.problem(line, `${what} needs a function, not ${fn.kind === 'generator' ? 'a generator function' : 'this value'}`);
      }
    }
    return { kind: 'function', params, is_async: isAsync, endpoint, method: httpMethod, path: httpPath };
  }

  // Follows identifier references through top-level declarations.
  resolve(info, seen = new Set()) {
    if (info.kind === 'ref') {
      if (seen.has(info.name)) return { kind: 'unknown' };
      seen.add(info.name);
      const decl = this.decls.get(info.name);
      if (decl === undefined) return { kind: 'unknown' };
      return this.resolve(decl, seen);
    }
    return info;
  }

  // Top-level declarations: function, async function, class, const/let/var.
  collectDeclarations() {
    const toks = this.tokens;
    for (let k = 0; k < toks.length; k++) {
      const t = toks[k];
      if (t.t === 'punc' && (t.v === '{' || t.v === '(' || t.v === '[')) {
        k = t.match;
        continue;
      }
      if (t.t !== 'id' || this.is(k - 1, '.')) continue;
      if (t.v === 'function' || (t.v === 'async' && this.is(k + 1, 'function'))) {
        const fnTok = t.v === 'async' ? k + 1 : k;
        let j = fnTok + 1;
        const gen = this.is(j, '*');
        if (gen) j++;
        if (this.isId(j) && this.is(j + 1, '(')) {
          this.decls.set(toks[j].v, gen ? { kind: 'generator' } : {
            kind: 'function', params: this.params(j + 1), is_async: t.v === 'async',
          });
          k = toks[j + 1].match;
          if (this.is(k + 1, '{')) k = toks[k + 1].match;
        }
      } else if (t.v === 'class' && this.isId(k + 1)) {
        this.decls.set(toks[k + 1].v, { kind: 'value' });
      } else if (t.v === 'const' || t.v === 'let' || t.v === 'var') {
        k = this.declarators(k + 1, (name, info) => {
          this.decls.set(name, info);
          if (info.kind === 'endpoint') this.addEndpoint(name, info);
        }) - 1;
      }
    }
  }

  // Parses `a = v, b = w` starting at token k; calls cb(name, info) for
  // each simple declarator; returns the index after the declaration.
  declarators(k, cb) {
    const toks = this.tokens;
    for (;;) {
      if (this.isId(k) && this.is(k + 1, '=')) {
        cb(toks[k].v, this.value(k + 2));
        k += 2;
      } else if (this.isId(k)) {
        k += 1;
      } else if (this.is(k, '{') || this.is(k, '[')) {
        // Destructuring: names bound by it are not resolvable statically.
        k = toks[k].match + 1;
        if (this.is(k, '=')) k++;
      } else {
        return k;
      }
      // Skip the rest of the initializer up to a top-level comma.
      while (k < toks.length) {
        const t = toks[k];
        if (t.t === 'punc' && (t.v === '{' || t.v === '(' || t.v === '[')) {
          k = t.match + 1;
          continue;
        }
        if (t.t === 'punc' && (t.v === ',' || t.v === ';' || t.v === '}' || t.v === ')' || t.v === ']')) break;
        // A new statement on the next line ends the declaration (ASI).
        if (k > 0 && t.line > toks[k - 1].line && t.t === 'id' &&
          ['const', 'let', 'var', 'function', 'async', 'class', 'module', 'exports', 'export', 'import', 'if', 'for', 'while', 'return'].includes(t.v) &&
          !(toks[k - 1].t === 'punc' && !['}', ')', ']'].includes(toks[k - 1].v))) break;
        k++;
      }
      if (this.is(k, ',')) {
        k++;
        continue;
      }
      return k;
    }
  }

  addExport(name, info) {
    const r = this.resolve(info);
    if (r.kind === 'function') {
      this.exports.set(name, {
        params: r.params,
        is_async: r.is_async,
        endpoint: r.endpoint === undefined ? null : r.endpoint,
        http_method: r.method || null,
        http_path: r.path || null,
      });
    } else if (r.kind === 'unknown' || r.kind === 'ref') {
      this.exports.set(name, { params: [], is_async: false });
    } else {
      this.exports.delete(name);
    }
  }

  // Exports every member of the object literal whose "{" is token k.
  addObject(k) {
    const toks = this.tokens;
    const end = toks[k].match;
    let j = k + 1;
    while (j < end) {
      let entryEnd = j;
      while (entryEnd < end && !this.is(entryEnd, ',')) {
        const t = toks[entryEnd];
        entryEnd = t.t === 'punc' && (t.v === '{' || t.v === '(' || t.v === '[') ? t.match + 1 : entryEnd + 1;
      }
      this.objectEntry(j, entryEnd);
      j = entryEnd + 1;
    }
  }

  objectEntry(j, end) {
    const toks = this.tokens;
    if (j >= end || this.is(j, '...')) return;
    let isAsync = false;
    let generator = false;
    if (this.is(j, 'async') && !this.is(j + 1, ':') && !this.is(j + 1, '(') && !this.is(j + 1, ',') && j + 1 < end) {
      isAsync = true;
      j++;
    }
    if (this.is(j, '*')) {
      generator = true;
      j++;
    }
    if ((this.is(j, 'get') || this.is(j, 'set')) && j + 1 < end && !this.is(j + 1, ':') && !this.is(j + 1, '(')) {
      return; // accessor
    }
    const key = toks[j];
    let name;
    if (key.t === 'id' || key.t === 'str' || key.t === 'num') name = key.v;
    else return; // computed key
    if (j + 1 >= end) {
      if (key.t === 'id') this.addExport(name, { kind: 'ref', name });
      return;
    }
    if (this.is(j + 1, '(')) {
      if (generator) return;
      this.exports.set(name, { params: this.params(j + 1), is_async: isAsync });
      return;
    }
    if (this.is(j + 1, ':')) {
      const v = this.value(j + 2);
      if (v.kind === 'object' || v.kind === 'generator') this.exports.delete(name);
      else this.addExport(name, v);
    }
  }

  // `module.exports = X` / `export default X`: X becomes the file's single
  // function, or, when it is an object literal, its members are exports.
  addWhole(info, seen = new Set()) {
    if (info.kind === 'ref' && !seen.has(info.name)) {
      seen.add(info.name);
      const decl = this.decls.get(info.name);
      if (decl !== undefined) {
        this.addWhole(decl, seen);
        return;
      }
    }
    if (info.kind === 'object') {
      this.addObject(info.open);
    } else {
      this.addExport(this.base, info);
    }
  }

  collectExports() {
    const toks = this.tokens;
    for (let k = 0; k < toks.length; k++) {
      const t = toks[k];
      if (t.t === 'punc' && (t.v === '{' || t.v === '(' || t.v === '[')) {
        k = t.match;
        continue;
      }
      if (t.t !== 'id' || this.is(k - 1, '.') || this.is(k - 1, '?.')) continue;
      if (t.v === 'module' && this.is(k + 1, '.') && this.is(k + 2, 'exports')) {
        if (this.is(k + 3, '=')) {
          const v = this.value(k + 4);
          if (v.kind === 'object' || v.kind === 'ref' || v.kind === 'function') this.addWhole(v);
        } else if (this.is(k + 3, '.') && this.isId(k + 4) && this.is(k + 5, '=')) {
          this.memberExport(toks[k + 4].v, k + 6);
        } else if (this.is(k + 3, '[') && toks[k + 4].t === 'str' && this.is(k + 5, ']') && this.is(k + 6, '=')) {
          this.memberExport(toks[k + 4].v, k + 7);
        }
      } else if (t.v === 'exports') {
        if (this.is(k + 1, '.') && this.isId(k + 2) && this.is(k + 3, '=')) {
          this.memberExport(toks[k + 2].v, k + 4);
        } else if (this.is(k + 1, '[') && toks[k + 2] && toks[k + 2].t === 'str' && this.is(k + 3, ']') && this.is(k + 4, '=')) {
          this.memberExport(toks[k + 2].v, k + 5);
        }
      } else if (t.v === 'export') {
        this.esmExport(k + 1);
      }
    }
  }

  memberExport(name, k) {
    const v = this.value(k);
    if (v.kind === 'object' || v.kind === 'generator') this.exports.delete(name);
    else this.addExport(name, v);
  }

  esmExport(k) {
    const toks = this.tokens;
    if (this.is(k, 'default')) {
      this.addWhole(this.value(k + 1));
      return;
    }
    if (this.is(k, 'async') && this.is(k + 1, 'function')) {
      k++;
      if (this.isId(k + 1) && this.is(k + 2, '(')) {
        this.exports.set(toks[k + 1].v, { params: this.params(k + 2), is_async: true });
      }
      return;
    }
    if (this.is(k, 'function')) {
      if (this.isId(k + 1) && this.is(k + 2, '(')) {
        this.exports.set(toks[k + 1].v, { params: this.params(k + 2), is_async: false });
      }
      return; // `function*` generators are not exported as functions
    }
    if (this.is(k, 'const') || this.is(k, 'let') || this.is(k, 'var')) {
      this.declarators(k + 1, (name, info) => {
        if (info.kind === 'object' || info.kind === 'generator') this.exports.delete(name);
        else this.addExport(name, info);
      });
      return;
    }
    if (this.is(k, '{')) {
      const end = toks[k].match;
      const fromOther = this.is(end + 1, 'from');
      let j = k + 1;
      while (j < end) {
        if (!this.isId(j) && toks[j].t !== 'str') {
          j++;
          continue;
        }
        const local = toks[j].v;
        let exported = local;
        j++;
        if (this.is(j, 'as') && j + 1 < end) {
          exported = toks[j + 1].v;
          j += 2;
        }
        if (exported === 'default') exported = this.base;
        if (fromOther) this.exports.set(exported, { params: [], is_async: false });
        else this.addExport(exported, { kind: 'ref', name: local });
        if (this.is(j, ',')) j++;
      }
    }
    // `export class`, `export * from` and the rest are not functions.
  }
}

// The value of a string literal's text (between its quotes).
function unquote(raw) {
  const simple = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', v: '\v', 0: '\0' };
  return raw.replace(/\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|\r\n|[\s\S])/g, (_, e) => {
    if (e[0] === 'u' && e.length > 1) return String.fromCodePoint(parseInt(e[1] === '{' ? e.slice(2, -1) : e.slice(1), 16));
    if (e[0] === 'x' && e.length === 3) return String.fromCharCode(parseInt(e.slice(1), 16));
    if (e === '\n' || e === '\r\n' || e === '\r') return ''; // line continuation
    return Object.prototype.hasOwnProperty.call(simple, e) ? simple[e] : e;
  });
}

function splitParams(list) {
  const out = [];
  let depth = 0;
  let start = 0;
  let toks;
  try {
    toks = tokenize(list);
  } catch (_) {
    return [];
  }
  const pieces = [];
  for (const t of toks) {
    if (t.t === 'punc' && (t.v === '(' || t.v === '[' || t.v === '{')) depth++;
    else if (t.t === 'punc' && (t.v === ')' || t.v === ']' || t.v === '}')) depth--;
    else if (t.t === 'punc' && t.v === ',' && depth === 0) {
      pieces.push(toks.slice(start, toks.indexOf(t)));
      start = toks.indexOf(t) + 1;
    }
  }
  pieces.push(toks.slice(start));
  for (const piece of pieces) {
    if (piece.length === 0) continue;
    // Cut a default value.
    let d = 0;
    let cut = piece.length;
    for (let k = 0; k < piece.length; k++) {
      const t = piece[k];
      if (t.t === 'punc' && (t.v === '(' || t.v === '[' || t.v === '{')) d++;
      else if (t.t === 'punc' && (t.v === ')' || t.v === ']' || t.v === '}')) d--;
      else if (t.t === 'punc' && t.v === '=' && d === 0) {
        cut = k;
        break;
      }
    }
    const pat = piece.slice(0, cut);
    if (pat.length === 0) continue;
    const text = list.slice(pat[0].start, pat[pat.length - 1].end).replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
    if (pat[0].v === '...') {
      const rest = text.slice(3).trim();
      out.push('...' + (IDENT.test(rest) ? rest : rest.replace(/\s+/g, '')));
    } else {
      out.push(IDENT.test(text.trim()) ? text.trim() : text.replace(/\s+/g, ''));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------

function syntaxCheck(abs) {
  const res = spawnSync(process.execPath, ['--check', abs], {
    encoding: 'utf8',
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 30000,
  });
  if (res.error || res.status === 0) return null;
  const stderr = res.stderr || '';
  let line = 0;
  const first = stderr.split('\n')[0] || '';
  const m = /:(\d+)$/.exec(first.trim());
  if (m) line = Number(m[1]);
  const msgLine = stderr.split('\n').find((l) => /^\w*Error: /.test(l));
  return { line, message: msgLine ? msgLine.trim() : stderr.trim().split('\n').pop() || 'syntax error' };
}

function entryFile(root) {
  const pkgPath = path.join(root, 'package.json');
  if (fs.existsSync(pkgPath)) {
    let pkg;
    try {
      pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8'));
    } catch (e) {
      return { error: `package.json is not valid JSON: ${e.message}` };
    }
    if (pkg && typeof pkg.main === 'string' && pkg.main.trim()) {
      const main = pkg.main.trim();
      for (const cand of [main, `${main}.js`, `${main}.mjs`, `${main}.cjs`, path.join(main, 'index.js')]) {
        const abs = path.resolve(root, cand);
        if (fs.existsSync(abs) && fs.statSync(abs).isFile()) return { file: toRel(root, abs) };
      }
      return { error: `package.json "main" (${main}) does not exist`, file: main };
    }
  }
  for (const cand of ['index.js', 'index.mjs']) {
    if (fs.existsSync(path.join(root, cand))) return { file: cand };
  }
  return {
    error: 'no entry file: package.json has no "main" and there is no index.js or index.mjs',
    file: fs.existsSync(pkgPath) ? 'package.json' : 'index.js',
  };
}

function toRel(root, abs) {
  return path.relative(root, abs).split(path.sep).join('/');
}

function scanFile(root, rel, errors) {
  const abs = path.join(root, rel);
  let src;
  try {
    src = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    errors.push({ file: rel, line: 0, message: `cannot read file: ${e.code === 'ENOENT' ? 'file not found' : e.message}` });
    return null;
  }
  const bad = syntaxCheck(abs);
  if (bad) {
    errors.push({ file: rel, line: bad.line, message: bad.message });
    return null;
  }
  let tokens;
  try {
    tokens = tokenize(src);
    matchBrackets(tokens);
  } catch (e) {
    if (!(e instanceof LexError)) throw e;
    errors.push({ file: rel, line: e.line, message: `could not analyse file: ${e.message}` });
    return null;
  }
  const scan = new FileScan(rel, src, tokens);
  scan.collectSdkBindings();
  scan.collectDeclarations();
  scan.collectExports();
  const functions = [];
  for (const [name, info] of scan.exports) {
    functions.push({
      name,
      params: info.params,
      is_async: info.is_async,
      is_class: false,
      endpoint: info.endpoint || null,
      http_method: info.http_method || null,
      http_path: info.http_path || null,
    });
  }
  errors.push(...scan.problems.values());
  return { file: rel, functions, endpoints: scan.endpoints };
}

function main(argv) {
  if (argv.length < 1 || argv[0] === '-h' || argv[0] === '--help') {
    process.stderr.write(USAGE);
    return 2;
  }
  const root = path.resolve(argv[0]);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
    process.stderr.write(`discover.js: ${argv[0]} is not a directory\n${USAGE}`);
    return 2;
  }
  const errors = [];
  let files = [];
  if (argv.length > 1) {
    for (const arg of argv.slice(1)) {
      const rel = toRel(root, path.resolve(root, arg));
      if (rel === '..' || rel.startsWith('../')) {
        process.stderr.write(`discover.js: ${arg} is outside ${root}\n${USAGE}`);
        return 2;
      }
      if (!files.includes(rel)) files.push(rel);
    }
  } else {
    const entry = entryFile(root);
    if (entry.error) errors.push({ file: entry.file || 'package.json', line: 0, message: entry.error });
    else files = [entry.file];
  }
  const out = { files: [], endpoints: {}, errors };
  for (const rel of files) {
    const res = scanFile(root, rel, errors);
    if (!res) continue;
    out.files.push({ file: res.file, functions: res.functions });
    for (const [name, ep] of res.endpoints) {
      const other = out.endpoints[name];
      if (other === undefined) out.endpoints[name] = ep;
      else if (other.file !== ep.file) {
        errors.push({ file: rel, line: 0, message: `endpoint ${JSON.stringify(name)} is already defined in ${other.file}` });
      }
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
