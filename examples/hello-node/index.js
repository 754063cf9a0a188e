// The smallest Morel Node app: every exported function is callable over HTTP.

function greet(name = 'world') {
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name}!` };
}

function add(a, b) {
  return a + b;
}

async function slowEcho(value, delay = 100) {
  await new Promise((resolve) => setTimeout(resolve, delay));
  return value;
}

function fail(message = 'boom') {
  throw new TypeError(message);
}

module.exports = { greet, add, slowEcho, fail };
