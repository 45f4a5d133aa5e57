// Middlewares on the wire: a route protected in YAML is protected for real. Rate limits (memory
// and Redis, shared by two proxies), JWT (secret and JWKS with key rotation), CORS, the order a
// route lists them in, named instances, and load_balancer mode.

import assert from 'node:assert/strict'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { exportJWK, SignJWT } from 'jose'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { type RunningRedis, startRedis } from '../helpers/redis'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

const SECRET = 'gateway-secret-gateway-secret-32b'
const hs = (sub: string) =>
  new SignJWT({ sub, role: 'admin' })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET))

describe('gateway middlewares', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('api')
    proxy = await startProxy(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${up.address}"] }
api_gateway:
  routes:
    limited:
      path_pattern: "^/limited"
      upstream: api
      middlewares: [slow_refill]
    strict:
      path_pattern: "^/strict"
      upstream: api
      middlewares: [strict_limit]
    private:
      path_pattern: "^/private"
      upstream: api
      middlewares: [cors, authentication, rate_limiting]
    open:
      path_pattern: "^/open"
      methods: [GET, POST]
      upstream: api
      middlewares: [cors]
  middlewares:
    rate_limiting:
      requests_per_minute: 120
      burst_size: 3
      key_header: X-API-Key
    # One token every 5 s: the burst test does not depend on how fast a loaded machine answers.
    slow_refill:
      type: rate_limiting
      requests_per_minute: 12
      burst_size: 3
      key_header: X-API-Key
    strict_limit:
      type: rate_limiting
      requests_per_minute: 1
      burst_size: 1
    authentication:
      jwt_secret: "\${JWT_SECRET}"
      excluded_paths: [/private/health]
      forward_claims: { sub: X-User-Id, role: X-User-Role }
    cors:
      allowed_origins: ["https://app.example"]
      allowed_methods: [GET, POST]
      allowed_headers: [Content-Type, Authorization]
      expose_headers: [RateLimit-Remaining]
      allow_credentials: true
      max_age_secs: 600
`,
      { env: { JWT_SECRET: SECRET } },
    )
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  const get = (p: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${proxy.url}${p}`, { method, headers }).then(async (r) => ({
      status: r.status,
      headers: r.headers,
      body: await r.text(),
    }))

  test('rate limiting: the burst passes, then 429 with Retry-After; another key is unaffected; tokens refill', async () => {
    const k = { 'x-api-key': 'key-one' }
    const first = await get('/limited', k)
    assert.equal(first.status, 200)
    assert.equal(first.headers.get('ratelimit-limit'), '3')
    assert.equal(first.headers.get('ratelimit-remaining'), '2')
    assert.equal((await get('/limited', k)).status, 200)
    assert.equal((await get('/limited', k)).status, 200)
    const limited = await get('/limited', k)
    assert.equal(limited.status, 429)
    const retryAfter = Number(limited.headers.get('retry-after'))
    assert.ok(retryAfter >= 1 && retryAfter <= 5, `Retry-After ${retryAfter}`)
    assert.equal(limited.headers.get('ratelimit-remaining'), '0')
    assert.equal(
      (await get('/limited', { 'x-api-key': 'key-two' })).status,
      200,
      'another key has its own bucket',
    )
    // 12/min is one token every 5 s.
    await until(async () => (await get('/limited', k)).status === 200, 'a token to refill', 20_000, 250)
    const line = await proxy.waitForLog((l) => l.status === 429, '429 access line')
    assert.equal(line.error_type, 'rate_limited')
  })

  test('named instances keep their own settings: strict_limit allows one request', async () => {
    assert.equal((await get('/strict')).status, 200)
    assert.equal((await get('/strict')).status, 429)
  })

  test('authentication: 401 without a token, 200 with one; claims forwarded, forged ones dropped', async () => {
    const before = up.seen.length
    const none = await get('/private/x')
    assert.equal(none.status, 401)
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="locci-proxy"')
    const bad = await get('/private/x', { authorization: 'Bearer abc.def.ghi' })
    assert.equal(bad.status, 401)
    assert.match(bad.headers.get('www-authenticate')!, /error="invalid_token"/)
    assert.equal(up.seen.length, before, 'refused requests never reach the upstream')
    const ok = await get('/private/x', {
      authorization: `Bearer ${await hs('alice')}`,
      'x-user-id': 'mallory',
    })
    assert.equal(ok.status, 200)
    const seen = JSON.parse(ok.body).headers
    assert.equal(seen['x-user-id'], 'alice')
    assert.equal(seen['x-user-role'], 'admin')
    assert.equal((await get('/private/health', { 'x-user-id': 'mallory' })).status, 200, 'excluded path')
    assert.equal(up.seen.at(-1)!.headers['x-user-id'], undefined, 'a forged claim header never passes')
  })

  test('CORS: preflight answered by the proxy (even before authentication), never forwarded', async () => {
    const before = up.seen.length
    const pre = await get(
      '/private/x',
      {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization',
      },
      'OPTIONS',
    )
    assert.equal(pre.status, 204)
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example')
    assert.equal(pre.headers.get('access-control-allow-methods'), 'GET, POST')
    assert.equal(pre.headers.get('access-control-allow-credentials'), 'true')
    assert.equal(pre.headers.get('access-control-max-age'), '600')
    assert.equal(up.seen.length, before, 'the upstream never saw the preflight')
    // A preflight for a route whose methods do not include OPTIONS is routed by the method it asks about.
    assert.equal(
      (
        await get(
          '/open',
          { origin: 'https://app.example', 'access-control-request-method': 'GET' },
          'OPTIONS',
        )
      ).status,
      204,
    )
  })

  test('CORS: allowed origin gets the headers (on errors too), another origin none, Vary always', async () => {
    const ok = await get('/open', { origin: 'https://app.example' })
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example')
    assert.equal(ok.headers.get('access-control-expose-headers'), 'RateLimit-Remaining')
    assert.match(ok.headers.get('vary')!, /Origin/)
    const denied = await get('/private/x', { origin: 'https://app.example' })
    assert.equal(denied.status, 401)
    assert.equal(
      denied.headers.get('access-control-allow-origin'),
      'https://app.example',
      'a browser can read the 401',
    )
    const other = await get('/open', { origin: 'https://evil.example' })
    assert.equal(other.status, 200)
    assert.equal(other.headers.get('access-control-allow-origin'), null)
  })
})

describe('authentication with a JWKS URL', () => {
  let jwks: http.Server
  let fetches = 0
  const keys: Array<{ kid: string; priv: KeyObject; pub: KeyObject }> = []
  const addKey = (kid: string) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    keys.push({ kid, priv: privateKey, pub: publicKey })
  }
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    addKey('k1')
    jwks = http.createServer(async (_req, res) => {
      fetches++
      const list = await Promise.all(
        keys.map(async (k) => ({ ...(await exportJWK(k.pub)), kid: k.kid, alg: 'ES256', use: 'sig' })),
      )
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: list }))
    })
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r))
    up = await startUpstream('api')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { api: { servers: ["${up.address}"] } }
load_balancer: { upstream: api, middlewares: [authentication] }
middlewares:
  authentication:
    jwks_url: "http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json"
    issuer: https://id.example
    jwks_cooldown_secs: 0.2
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
    jwks.close()
  })
  const sign = (kid: string) =>
    new SignJWT({ sub: kid })
      .setProtectedHeader({ alg: 'ES256', kid })
      .setIssuer('https://id.example')
      .setExpirationTime('5m')
      .sign(keys.find((k) => k.kid === kid)!.priv)
  const call = async (token: string) =>
    (await fetch(`${proxy.url}/`, { headers: { authorization: `Bearer ${token}` } })).status

  test('keys are fetched once and cached; a new kid triggers a refetch (key rotation)', async () => {
    assert.equal(await call(await sign('k1')), 200)
    assert.equal(await call(await sign('k1')), 200)
    assert.equal(fetches, 1, 'cached')
    addKey('k2')
    // A token with the new kid makes the proxy refetch (once the cool-down allows) and pass.
    const rotated = await sign('k2')
    await until(async () => (await call(rotated)) === 200, 'the rotated key to be picked up', 5000, 100)
    assert.ok(fetches >= 2 && fetches <= 4, `refetched, but not on every request (${fetches})`)
  })
})

describe('rate limiting in Redis', () => {
  let redis: RunningRedis
  let up: Upstream
  before(async () => {
    redis = await startRedis()
    up = await startUpstream('api')
  })
  after(async () => {
    await up.close()
    await redis.stop()
  })
  const config = (redisUrl: string, failure = 'open') => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { api: { servers: ["${up.address}"] } }
load_balancer: { upstream: api, middlewares: [shared_limit] }
middlewares:
  shared_limit:
    type: rate_limiting
    requests_per_minute: 1
    burst_size: 4
    key_header: X-Tenant
    store: redis
    redis_url: "${redisUrl}"
    redis_failure: ${failure}
`

  test('two proxies share one limit through Redis', async () => {
    const a = await startProxy(config(redis.url))
    const b = await startProxy(config(redis.url))
    try {
      await a.waitForLog((l) => l.msg === 'redis connected', 'a to connect')
      await b.waitForLog((l) => l.msg === 'redis connected', 'b to connect')
      const statuses: number[] = []
      for (let i = 0; i < 6; i++) {
        const p = i % 2 === 0 ? a : b
        statuses.push((await fetch(`${p.url}/`, { headers: { 'x-tenant': 'shared' } })).status)
      }
      assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429], 'burst 4 across both proxies, not 4 each')
    } finally {
      await a.stop()
      await b.stop()
    }
  })

  test('Redis down: fail open by default (logged), or 503 with redis_failure: closed; never a crash', async () => {
    const gone = await startRedis()
    const open = await startProxy(config(gone.url))
    const closed = await startProxy(config(gone.url, 'closed'))
    try {
      await open.waitForLog((l) => l.msg === 'redis connected', 'connect')
      await closed.waitForLog((l) => l.msg === 'redis connected', 'connect')
      await gone.stop()
      assert.equal((await fetch(`${open.url}/`, { headers: { 'x-tenant': 't' } })).status, 200)
      await open.waitForLog((l) => String(l.msg).includes('letting requests through'), 'the fail-open line')
      const r = await fetch(`${closed.url}/`, { headers: { 'x-tenant': 't' } })
      assert.equal(r.status, 503)
      assert.equal(open.child.exitCode, null, 'still running')
      assert.equal((await fetch(`${open.url}/`)).status, 200)
    } finally {
      await open.stop()
      await closed.stop()
    }
  })
})
