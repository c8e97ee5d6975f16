// A stand-in for the upstream Node tier's session handling, doing what its code does:
// - next-auth/jwt's getToken reads the session cookie (joining `.0`, `.1`, … chunks) and
//   decrypts it with NEXTAUTH_SECRET;
// - the validation entry `<prefix>validation:<sub>` in the shared Redis is read as the
//   upstream's sessionValidation.ts reads it (isValid, tenantId) and, on a miss, written as
//   its distributedValidationCache.ts writes it after Supabase said yes:
//   {isValid, timestamp, tenantId}, 300 s.
// Env: PORT, NEXTAUTH_SECRET, REDIS_URL, REDIS_KEY_PREFIX.
//   GET  /api/me  -> 200 {id, email, tenantId, tier: "node"} | 401
//   POST /login   {id, email, name, tenantId} -> 200 + the NextAuth session cookie (what the
//                 upstream's authorize() and jwt callback put in the token at sign-in)
'use strict';
const http = require('http');
const { encode, getToken } = require('next-auth/jwt');
const { createClient } = require('redis');

const secret = process.env.NEXTAUTH_SECRET;
const prefix = process.env.REDIS_KEY_PREFIX || 'copilot:auth:';
const redis = createClient({ url: process.env.REDIS_URL });
const COOKIE = 'next-auth.session-token';
const MAX_AGE = 24 * 60 * 60; // the upstream's session.maxAge

function cookies(header) {
  const out = {};
  for (const part of (header || '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0) out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return out;
}

function reply(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function me(req, res) {
  const token = await getToken({ req: { cookies: cookies(req.headers.cookie), headers: req.headers }, secret });
  if (!token || !token.sub) return reply(res, 401, { error: 'not signed in' });
  const key = `${prefix}validation:${token.sub}`;
  const raw = await redis.get(key);
  let tenantId = token.currentTenantId;
  if (raw !== null) {
    const cached = JSON.parse(raw);
    if (!cached.isValid) return reply(res, 401, { error: 'User not found (cached)' });
    tenantId = cached.tenantId ?? tenantId;
  } else {
    await redis.set(key, JSON.stringify({ isValid: true, timestamp: Date.now(), tenantId }), { EX: 300 });
  }
  reply(res, 200, { id: token.sub, email: token.email, tenantId, tier: 'node' });
}

async function login(req, res) {
  let body = '';
  for await (const chunk of req) body += chunk;
  const user = JSON.parse(body);
  const token = await encode({
    token: { sub: user.id, email: user.email, name: user.name, currentTenantId: user.tenantId,
             lastValidated: Date.now() },
    secret,
    maxAge: MAX_AGE,
  });
  reply(res, 200, { ok: true }, {
    'set-cookie': `${COOKIE}=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${MAX_AGE}`,
  });
}

const server = http.createServer((req, res) => {
  const handler = req.url === '/api/me' ? me : req.url === '/login' ? login : null;
  if (!handler) return reply(res, 404, { error: 'not found' });
  handler(req, res).catch((err) => reply(res, 500, { error: String(err) }));
});

redis.connect().then(() => server.listen(Number(process.env.PORT), '127.0.0.1'));
process.on('SIGTERM', () => { server.close(); redis.quit().finally(() => process.exit(0)); });
