// The test bed's authorization server: oidc-provider (OpenID Certified, by panva), pinned in
// package-lock.json, configured for what the filter's end-to-end tests need (issue 22):
// client-credentials tokens, opaque or RFC 9068 JWT access tokens by resource indicator
// (RFC 8707), RFC 7662 introspection, RFC 7009 revocation, discovery at an issuer with a path.
// Started by integration/src/oidc.rs; by hand: `node server.mjs --port 0 [--config FILE]`.
//
//   --port N | OIDC_BED_PORT     port on 127.0.0.1, 0 (the default) for any free one
//   --config FILE | OIDC_BED_CONFIG (the JSON text itself)   fields below, each replacing DEFAULTS'
//
// Prints one JSON line on stdout when it listens: {"issuer", "port", "kids"}. Exits when its
// standard input closes (the test process that started it is gone; by hand, from a terminal,
// it stays open) or on SIGTERM/SIGINT. State (tokens) is in this process's memory only.
// Nothing here ever logs a token or a secret; oidc-provider's own `debug` output stays off
// unless DEBUG is set in the environment (integration/src/oidc.rs removes it).
//
// Outside the issuer path, control endpoints for the tests:
// - POST /_bed/rotate (body `{"retire": true}` to drop the old keys) puts a new RS256 key first
//   (it signs from then on), keeps the old ones published unless retired, and answers
//   {"kid", "kids"}.
// - POST /_bed/id-token (body `{"client_id", "sub"}`) answers {"id_token"}: an OpenID Connect
//   ID token that oidc-provider itself signs (its IdToken model, `use: 'idtoken'`, as at the
//   end of an authorization code flow: iss, sub, aud = the client, iat, exp, header without
//   `typ`), for a client of `clients`. What a token confused with an access token looks like.
// - GET /_bed/calls answers {"<METHOD> <path>": count} for every request made under the
//   issuer path (and RFC 8414's place) since start, the query string left out: how often the
//   filter introspected, whatever its own counters say. Nothing of a request but its method
//   and path is kept.
//
// What oidc-provider 9 does, read in its documentation and source (lib/actions/introspection.js,
// lib/actions/grants/client_credentials.js, lib/shared/check_resource.js) and seen in
// integration/tests/oidc_bed.rs:
// - Introspection (features.introspection) answers for opaque tokens only: a JWT in `token` is
//   refused with 400 `unsupported_token_type` before any policy runs (so are JWTs at revocation).
// - Its default allowedPolicy lets any client that authenticates (confidential: client_secret_*)
//   introspect any token; only public clients (auth method `none`) are held to their own tokens.
//   There is no built-in "audience must include the caller" rule. Here the policy is explicit:
//   a client may introspect its own tokens, and a client marked `"introspects": true` (the
//   resource server, i.e. the filter) every token, whatever its `aud`, so that the filter's
//   own `aud` check is what the tests exercise. Refused → `{"active": false}`, as for unknown.
// - An active answer holds: active, client_id, exp, iat, iss (the issuer, path included), jti
//   (absent when it would equal the token), scope (absent when empty), token_type ("Bearer"),
//   aud only for a token bound to a resource (the resource indicator itself, a string, unless
//   `audience` is set below), sub only for tokens issued to an end user (none for
//   client_credentials: `client_id` is the principal). Anything else is `{"active": false}`.
// - client_credentials without `resource`: the scopes kept are only those in `scopes` (the
//   static list, below; others are dropped silently, a static one outside the client's `scope`
//   is `invalid_scope`); the token is opaque and has no `aud`. With `resource`: exactly one
//   value, getResourceServerInfo decides (here: known resource and the client allowed to ask
//   for it, else `invalid_target`), the scopes kept are the resource's, and the token is opaque
//   or a JWT as the resource's `format` says: header {alg: RS256, typ: "at+jwt", kid}, claims
//   jti, sub (= client_id, the client), iat, exp, scope, client_id, iss, aud (the resource, a
//   string). The token response is {access_token, expires_in, scope, token_type: "Bearer"}.
// - Revocation: only the client a token was issued to may revoke it (another confidential
//   client gets 400 invalid_request); an unknown token is 200, per RFC 7009.
// - Endpoint URLs in the discovery document are built from the request's Host; this server
//   pins Host to the issuer's, so the document names the issuer's host whatever a caller sends.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import { Provider, errors } from 'oidc-provider';

const DEFAULTS = {
  // The issuer is http://127.0.0.1:<port><path>.
  path: '/oidc',
  // Scopes a token without a resource indicator may carry (oidc-provider's "static" scopes).
  scopes: ['read', 'tools:agents.deploy'],
  // Lifetime of client_credentials tokens, unless their resource sets its own `ttl_s`.
  ttl_s: 600,
  // A private JWKS file (RSA keys with kid) instead of one 2048-bit key made at start.
  keys_file: null,
  clients: [
    // The resource server (the filter): introspection only, client_secret_basic.
    { client_id: 'api-auth-filter', client_secret: 'filter-secret', introspects: true },
    // Gets tokens with client_credentials, for any resource below or none.
    {
      client_id: 'agent',
      client_secret: 'agent-secret',
      scope: 'read tools:agents.deploy',
      resources: ['https://api.example.test/', 'https://opaque.example.test/', 'https://other.example.test/'],
    },
    // Gets tokens with client_credentials, without a resource only.
    { client_id: 'reader', client_secret: 'reader-secret', scope: 'read' },
  ],
  resources: {
    'https://api.example.test/': { format: 'jwt', scope: 'read tools:agents.deploy' },
    'https://opaque.example.test/': { format: 'opaque', scope: 'read tools:agents.deploy' },
    'https://other.example.test/': { format: 'opaque', scope: 'read tools:agents.deploy' },
  },
};

function args() {
  const out = { port: process.env.OIDC_BED_PORT, config: process.env.OIDC_BED_CONFIG };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--port') out.port = argv[(i += 1)];
    else if (argv[i] === '--config') out.config = readFileSync(argv[(i += 1)], 'utf8');
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return out;
}

// The JWK comes out of generateKeyPairSync itself (its encoding options), never from a later
// KeyObject.export: in Node 20 that export can deadlock the main thread for good when a garbage
// collection during it finalizes the finished key-generation job (the job's destructor takes the
// key's mutex that the export holds; seen as a bed that never printed its ready line, about one
// start in 50, and reproduced by a loop of generate-then-export under --max-semi-space-size=1).
function newKey() {
  const jwk = { format: 'jwk' };
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: jwk, privateKeyEncoding: jwk });
  const kid = `bed-${randomBytes(6).toString('hex')}`;
  return { ...privateKey, kid, alg: 'RS256', use: 'sig' };
}

// One store for every Provider this process builds (a key rotation builds a new one), so that
// tokens outlive a rotation; oidc-provider 9's own in-memory adapter keeps one per Provider.
// Entries are dropped once past their expiresIn (oidc-provider checks `exp` itself as well).
const records = new Map();

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  live(key) {
    const entry = records.get(key);
    if (entry && entry.until !== undefined && entry.until <= Date.now()) {
      records.delete(key);
      return undefined;
    }
    return entry?.payload;
  }

  async upsert(id, payload, expiresIn) {
    const until = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    records.set(this.key(id), { payload, until });
  }

  async find(id) {
    return this.live(this.key(id));
  }

  findBy(field, value) {
    for (const key of records.keys()) {
      if (key.startsWith(`${this.model}:`)) {
        const payload = this.live(key);
        if (payload?.[field] === value) return payload;
      }
    }
    return undefined;
  }

  async findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const payload = this.live(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    records.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of records) {
      if (payload.grantId === grantId) records.delete(key);
    }
  }
}

function clientMetadata(c) {
  const grants = c.introspects && !c.scope ? [] : ['client_credentials'];
  const meta = {
    client_id: c.client_id,
    client_secret: c.client_secret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: grants,
    response_types: [],
    redirect_uris: [],
  };
  if (c.scope !== undefined) meta.scope = c.scope;
  return meta;
}

function providerConfig(cfg, keys) {
  const introspectors = new Set(cfg.clients.filter((c) => c.introspects).map((c) => c.client_id));
  const allowed = new Map(cfg.clients.map((c) => [c.client_id, new Set(c.resources ?? [])]));
  return {
    adapter: SharedMemoryAdapter,
    clients: cfg.clients.map(clientMetadata),
    jwks: { keys },
    scopes: ['openid', 'offline_access', ...cfg.scopes],
    ttl: {
      IdToken: 600,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? cfg.ttl_s,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx, caller, token) => caller.clientId === token.clientId || introspectors.has(caller.clientId),
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, caller, token) => {
          if (caller.clientId !== token.clientId) {
            throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          }
          return true;
        },
      },
      resourceIndicators: {
        enabled: true,
        // No resource asked for: none (an opaque token without `aud`).
        defaultResource: async () => undefined,
        getResourceServerInfo: async (_ctx, indicator, client) => {
          const rs = cfg.resources[indicator];
          if (!rs || !allowed.get(client.clientId)?.has(indicator)) throw new errors.InvalidTarget();
          const info = { scope: rs.scope, accessTokenFormat: rs.format === 'jwt' ? 'jwt' : 'opaque' };
          if (rs.audience) info.audience = rs.audience;
          if (rs.ttl_s) info.accessTokenTTL = rs.ttl_s;
          if (info.accessTokenFormat === 'jwt') info.jwt = { sign: { alg: 'RS256' } };
          return info;
        },
      },
    },
  };
}

const opts = args();
const cfg = { ...DEFAULTS, ...(opts.config ? JSON.parse(opts.config) : {}) };
if (!/^\/[^?#]*[^/?#]$/.test(cfg.path)) throw new Error(`path must start with / and not end with one: ${cfg.path}`);
let keys = cfg.keys_file ? JSON.parse(readFileSync(cfg.keys_file, 'utf8')).keys : [newKey()];

let issuer;
let issuerHost;
let handler;
let provider;
const calls = new Map();

function build() {
  provider = new Provider(issuer, providerConfig(cfg, keys));
  handler = provider.callback();
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

// A control endpoint: its JSON body (`{}` when empty) to `act`, whose result is the 200 answer;
// a throw is a 400 with the message.
function control(req, res, act) {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', async () => {
    try {
      reply(res, 200, await act(body.trim() ? JSON.parse(body) : {}));
    } catch (e) {
      reply(res, 400, { error: String(e.message) });
    }
  });
}

function rotate({ retire = false }) {
  const key = newKey();
  keys = retire ? [key] : [key, ...keys];
  build();
  return { kid: key.kid, kids: keys.map((k) => k.kid) };
}

async function idToken({ client_id: clientId, sub }) {
  if (typeof sub !== 'string' || !sub) throw new Error('sub must be a non-empty string');
  const client = await provider.Client.find(String(clientId));
  if (!client) throw new Error('unknown client');
  const token = new provider.IdToken({ sub }, { client });
  token.scope = 'openid';
  return { id_token: await token.issue({ use: 'idtoken' }) };
}

const rfc8414 = `/.well-known/oauth-authorization-server${cfg.path}`;

const server = createServer((req, res) => {
  const url = req.url;
  if (url === '/_bed/rotate' && req.method === 'POST') {
    control(req, res, rotate);
    return;
  }
  if (url === '/_bed/id-token' && req.method === 'POST') {
    control(req, res, idToken);
    return;
  }
  if (url === '/_bed/calls' && req.method === 'GET') {
    reply(res, 200, Object.fromEntries(calls));
    return;
  }
  let inner;
  if (url === cfg.path || url.startsWith(`${cfg.path}/`) || url.startsWith(`${cfg.path}?`)) {
    inner = url.slice(cfg.path.length);
    if (!inner.startsWith('/')) inner = `/${inner}`;
  } else if (url === rfc8414 || url.startsWith(`${rfc8414}?`)) {
    // RFC 8414 section 3.1: the well-known segment goes before the issuer's path.
    inner = `/.well-known/oauth-authorization-server${url.slice(rfc8414.length)}`;
  } else {
    reply(res, 404, { error: 'not_found' });
    return;
  }
  const call = `${req.method} ${url.split('?')[0]}`;
  calls.set(call, (calls.get(call) ?? 0) + 1);
  // oidc-provider's routes live at its root; the URLs it writes get the mount path from
  // originalUrl or baseUrl, and their origin from Host.
  req.originalUrl = url;
  req.baseUrl = cfg.path;
  req.url = inner;
  req.headers.host = issuerHost;
  handler(req, res);
});

server.listen(Number(opts.port ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  issuerHost = `127.0.0.1:${port}`;
  issuer = `http://${issuerHost}${cfg.path}`;
  build();
  process.stdout.write(`${JSON.stringify({ issuer, port, kids: keys.map((k) => k.kid) })}\n`);
});

const stop = () => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
