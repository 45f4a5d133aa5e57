// JWT authentication against hostile tokens, through the real proxy. Three attacks:
// - a token that never expires (no `exp`): refused unless the operator opts in (require_exp: false);
// - made-up `kid`s, each of which could make the proxy fetch the identity provider's JWKS: the
//   proxy fetches at most once a second, whatever jwks_cooldown_secs says;
// - claim values the issuer let a user choose (a display name with CR LF, NUL, "名前"): copied
//   into upstream headers by forward_claims, they used to break the request (undici refuses such
//   values) or, on a WebSocket route, end the process. They are now percent-encoded.

import assert from 'node:assert/strict'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { exportJWK, SignJWT } from 'jose'
import { WebSocket, WebSocketServer } from 'ws'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { startUpstream, type Upstream } from '../helpers/upstream'

const SECRET = 'tokens-test-secret-tokens-test-secret'
const key = new TextEncoder().encode(SECRET)
const sign = (claims: Record<string, unknown>, exp: string | null = '5m') => {
  const t = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt()
  return (exp === null ? t : t.setExpirationTime(exp)).sign(key)
}
const HOSTILE_NAME = '名前\r\nX-Admin: yes\u0000\u2028 100%'
const ENCODED_NAME = '%E5%90%8D%E5%89%8D%0D%0AX-Admin:%20yes%00%E2%80%A8%20100%25'

describe('authentication: exp, and claims forwarded as headers', () => {
  let up: Upstream
  let wss: WebSocketServer
  const wsSeen: http.IncomingHttpHeaders[] = []
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('api')
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise<void>((r) => wss.once('listening', r))
    wss.on('connection', (ws, req) => {
      wsSeen.push(req.headers)
      ws.send('hello')
    })
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${up.address}"] }
  ws: { servers: ["127.0.0.1:${(wss.address() as AddressInfo).port}"] }
middlewares:
  strict:
    type: authentication
    jwt_secret: "${SECRET}"
    forward_claims: { name: X-User-Name, roles: X-Roles }
  lax:
    type: authentication
    jwt_secret: "${SECRET}"
    require_exp: false
api_gateway:
  routes:
    strict: { path_pattern: "^/strict", upstream: api, middlewares: [strict] }
    lax: { path_pattern: "^/lax", upstream: api, middlewares: [lax] }
    ws: { path_pattern: "^/ws", upstream: ws, middlewares: [strict] }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
    wss.close()
  })
  const get = (path: string, token: string) =>
    fetch(`${proxy.url}${path}`, { headers: { authorization: `Bearer ${token}` } })

  test('a token without exp is refused, and the answer says why', async () => {
    const r = await get('/strict', await sign({ sub: 'x' }, null))
    assert.equal(r.status, 401)
    assert.match(
      r.headers.get('www-authenticate')!,
      /error_description="the token has no expiry \(exp claim\)"/,
    )
    assert.equal((await get('/strict', await sign({ sub: 'x' }))).status, 200, 'with exp it passes')
  })

  test('require_exp: false accepts a token without exp', async () => {
    assert.equal((await get('/lax', await sign({ sub: 'x' }, null))).status, 200)
  })

  test('hostile claim values reach an HTTP upstream percent-encoded', async () => {
    const token = await sign({ name: HOSTILE_NAME, roles: ['a b', 'é'] })
    const r = await get('/strict/x', token)
    assert.equal(r.status, 200)
    const seen = up.seen.at(-1)!
    assert.equal(seen.headers['x-user-name'], ENCODED_NAME)
    assert.equal(seen.headers['x-roles'], '["a%20b","%C3%A9"]')
    assert.equal(seen.headers['x-admin'], undefined, 'no header was injected')
  })

  test('hostile claim values on a WebSocket route: the upgrade goes through and the process lives', async () => {
    const token = await sign({ name: HOSTILE_NAME })
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws`, {
      headers: { authorization: `Bearer ${token}` },
    })
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (m) => resolve(String(m)))
      ws.once('unexpected-response', (_q, res) => reject(new Error(`status ${res.statusCode}`)))
      ws.once('error', reject)
    })
    ws.close()
    assert.equal(first, 'hello')
    assert.equal(wsSeen.at(-1)?.['x-user-name'], ENCODED_NAME)
    assert.equal(proxy.child.exitCode, null)
    assert.equal((await get('/strict', await sign({ sub: 'x' }))).status, 200, 'still serving')
  })
})

describe('JWKS: made-up kids cannot make the proxy hammer the identity provider', () => {
  const real = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  let hits = 0
  let jwks: http.Server
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    const jwk = { ...(await exportJWK(real.publicKey)), kid: 'real', alg: 'ES256', use: 'sig' }
    jwks = http.createServer((_req, res) => {
      hits++
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r))
    up = await startUpstream('api')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams: { api: { servers: ["${up.address}"] } }
load_balancer: { upstream: api, middlewares: [authentication] }
middlewares:
  authentication:
    jwks_url: "http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json"
    jwks_cooldown_secs: 0
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
    jwks.close()
  })
  const es = (kid: string, priv: typeof real.privateKey) =>
    new SignJWT({ sub: kid }).setProtectedHeader({ alg: 'ES256', kid }).setExpirationTime('5m').sign(priv)
  const call = async (token: string) =>
    (await fetch(`${proxy.url}/`, { headers: { authorization: `Bearer ${token}` } })).status

  test('200 requests with random unknown kids cause about one fetch a second, not one each', async () => {
    assert.equal(await call(await es('real', real.privateKey)), 200, 'the JWKS works')
    const before = hits
    const tokens = await Promise.all(Array.from({ length: 200 }, () => es(randomUUID(), other.privateKey)))
    const started = Date.now()
    // 10 clients, 20 requests each, one after another: with no floor each round could refetch.
    const statuses = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const out: number[] = []
        for (const t of tokens.slice(i * 20, i * 20 + 20)) out.push(await call(t))
        return out
      }),
    )
    const elapsed = Date.now() - started
    assert.ok(
      statuses.flat().every((s) => s === 401),
      `unknown kids are refused: ${[...new Set(statuses.flat())]}`,
    )
    const fetches = hits - before
    assert.ok(
      fetches <= Math.ceil(elapsed / 1000) + 1,
      `${fetches} JWKS fetches for 200 requests in ${elapsed} ms: at most one a second`,
    )
  })
})
