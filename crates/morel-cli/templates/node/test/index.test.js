// Runs without Morel: `node --test` (or `npm test`) in the project directory.
const test = require('node:test');
const assert = require('node:assert');

const { greet } = require('../index.js');

test('greets by name', () => {
  assert.deepStrictEqual(greet('Ada'), { message: 'Hello, Ada!' });
});

test('greets the world by default', () => {
  assert.deepStrictEqual(greet(), { message: 'Hello, world!' });
});
