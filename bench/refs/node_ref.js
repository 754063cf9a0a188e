// The Node reference of bench/run: a bare `http` server, one process, calling a function of a
// Morel example app directly. POST /call/{function} with a JSON array of arguments; the answer
// is the function's JSON result, as Morel's gateway answers it.
//   node bench/refs/node_ref.js examples/hello-node/index.js
// Prints "listening on 127.0.0.1:PORT" once bound to a free loopback port.
'use strict';
const http = require('http');
const path = require('path');

const mod = require(path.resolve(process.argv[2]));

function answer(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const name = req.url.slice(req.url.lastIndexOf('/') + 1);
    const fn = mod[name];
    if (typeof fn !== 'function') return answer(res, 404, { error: `no function ${name}` });
    let result;
    try {
      const text = Buffer.concat(chunks).toString();
      const args = text.trim() === '' ? [] : JSON.parse(text);
      result = fn(...(Array.isArray(args) ? args : [args]));
    } catch (e) {
      return answer(res, 500, { error: String(e) });
    }
    if (result && typeof result.then === 'function') {
      result.then((v) => answer(res, 200, v), (e) => answer(res, 500, { error: String(e) }));
    } else {
      answer(res, 200, result);
    }
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
