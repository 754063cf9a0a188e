// {{app}}: every function exported here is callable over HTTP. The JSON body of a call is
// bound to the arguments: an object by name, an array by position.

function greet(name = 'world') {
  return { message: `Hello, ${name}!` };
}

module.exports = { greet };
