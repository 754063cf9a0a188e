// Uses an npm package (ms), installed by Morel and cached by the hash of package.json.
const ms = require('ms');

function duration(text) {
  return ms(text);
}

function pretty(millis) {
  return ms(Number(millis), { long: true });
}

module.exports = { duration, pretty };
