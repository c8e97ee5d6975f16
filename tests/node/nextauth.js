// next-auth v4's own jwt module, driven by the Python tests: one JSON request on stdin, one
// JSON answer on stdout.
//   {"op": "encode", "token": {...}, "secret": "...", "maxAge": 3600}  -> {"token": "..."}
//   {"op": "decode", "token": "...", "secret": "..."}                  -> {"payload": {...}}
//   {"op": "chunk", "name": "next-auth.session-token", "value": "..."}  -> {"cookies": [...]}
// A decode that next-auth refuses answers {"error": "..."}.
'use strict';
const path = require('path');
const { encode, decode } = require('next-auth/jwt');
// The chunking NextAuth applies to a large session cookie; not in the package's exports map,
// so required by file.
const { SessionStore } = require(
  path.join(path.dirname(require.resolve('next-auth/jwt')), '..', 'core', 'lib', 'cookie.js'));

async function answer(req) {
  switch (req.op) {
    case 'encode':
      return { token: await encode({ token: req.token, secret: req.secret, maxAge: req.maxAge }) };
    case 'decode':
      try {
        return { payload: await decode({ token: req.token, secret: req.secret }) };
      } catch (err) {
        return { error: String(err && err.code ? err.code : err) };
      }
    case 'chunk': {
      const quiet = { debug() {}, warn() {}, error() {} }; // stdout carries the answer only
      const store = new SessionStore({ name: req.name, options: {} }, { cookies: {} }, quiet);
      return { cookies: store.chunk(req.value, {}).map(({ name, value }) => ({ name, value })) };
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  process.stdout.write(JSON.stringify(await answer(JSON.parse(input))));
});
