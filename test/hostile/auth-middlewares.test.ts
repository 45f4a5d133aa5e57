// Attacks on basic_auth, api_key and forward_auth, against the real binary: a flood of wrong
// passwords must not make the proxy spend its CPU on bcrypt without bound (a queue, then 503 at
// once, while a known user's cached credentials still pass), headers the gateway vouches for
// cannot be forged on any route, and an auth service's answer cannot put an unsafe header on
// the client's response or the upstream's request.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { hashSync } from 'bcryptjs'
import { Client, Pool, request } from 'undici'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { type ScriptedUpstream, scriptedUpstream } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`
const KEY = 'hostile-test-key-0123456789'

describe('auth middlewares under attack', () => {
  let up: Upstream
  let auth: ScriptedUpstream
  let proxy: RunningProxy

  before(async () => {
    up = await startUpstream('app')
    // Each request's X-Forwarded-Uri says which hostile answer to give.
    auth = await scriptedUpstream((head) => {
      const uri = /x-forwarded-uri: (\S+)/i.exec(head)?.[1] ?? ''
      if (uri.startsWith('/fa/latin1'))
        return 'HTTP/1.1 401 No\r\nContent-Length: 0\r\nX-Note: caf\xe9\r\nConnection: close\r\n\r\n'
      if (uri.startsWith('/fa/split'))
        return 'HTTP/1.1 401 No\r\nContent-Length: 0\r\nX-Note: a\rSet-Cookie: evil=1\r\nConnection: close\r\n\r\n'
      if (uri.startsWith('/fa/user'))
        return 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-User: r\xf6ot\r\nConnection: close\r\n\r\n'
      return 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-User: alice\r\nConnection: close\r\n\r\n'
    })
    // Cost 9: tens of milliseconds per check in JavaScript, so a flood queues up.
    const hash = hashSync('right password', 9)
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${up.address}"] }
middlewares:
  staff: { type: basic_auth, users: ["alice:${hash}"], forward_user: X-Remote-User }
  keys: { type: api_key, keys: [{ consumer: app, key: "${KEY}" }], query_param: key }
  sso: { type: forward_auth, address: "http://${auth.address}/", auth_response_headers: [X-User] }
api_gateway:
  routes:
    staff: { path_pattern: "^/staff", upstream: app, middlewares: [staff] }
    keys: { path_pattern: "^/keys", upstream: app, middlewares: [keys] }
    fa: { path_pattern: "^/fa", upstream: app, middlewares: [sso] }
    open: { path_pattern: "^/open", upstream: app }
`)
  })

  after(async () => {
    await proxy?.stop()
    await up?.close()
    await auth?.close()
  })

  test('a flood of wrong passwords: the excess is refused at once (503 auth_busy) and a known user still passes', async () => {
    // The known user's connection is open before the flood (a proxy busy with bcrypt accepts new
    // connections slowly: that is the kernel's backlog, not the password queue).
    const known = new Client(proxy.url)
    const first = await known.request({
      path: '/staff/x',
      method: 'GET',
      headers: { authorization: basic('alice', 'right password') },
    })
    assert.equal(first.statusCode, 200)
    await first.body.text()
    // The flood's 120 connections are open (and kept) before it: all its requests then leave in
    // one turn and reach the proxy together, as an attacker's would, however loaded this machine
    // is. Opened one by one, inside the flood, they could arrive so far apart on a busy machine
    // that the queue drained between them.
    const pool = new Pool(proxy.url, { connections: 120 })
    await Promise.all(
      Array.from({ length: 120 }, () =>
        pool.request({ path: '/open/x', method: 'GET' }).then((r) => r.body.text()),
      ),
    )
    const flood = Array.from({ length: 120 }, (_, i) =>
      pool
        .request({
          path: '/staff/x',
          method: 'GET',
          headers: { authorization: basic('alice', `guess-${i}`) },
        })
        .then(async (r) => ({
          status: r.statusCode,
          retry: r.headers['retry-after'],
          body: await r.body.text(),
        })),
    )
    // While the flood is queued, the cached credentials need no bcrypt.
    const t = performance.now()
    const again = await known.request({
      path: '/staff/x',
      method: 'GET',
      headers: { authorization: basic('alice', 'right password') },
    })
    const knownMs = performance.now() - t
    assert.equal(again.statusCode, 200)
    await again.body.text()
    await known.close()
    const results = await Promise.all(flood)
    await pool.close()
    const busy = results.filter((r) => r.status === 503)
    assert.ok(busy.length >= 20, `the excess of the flood is refused at once (${busy.length} of 120)`)
    assert.ok(
      busy.every(
        (r) => r.retry === '1' && r.body === '503 too many password checks at once, retry shortly\n',
      ),
    )
    assert.ok(results.every((r) => r.status === 401 || r.status === 503))
    assert.ok(knownMs < 2000, `the known user waited ${knownMs.toFixed(0)} ms`)
  })

  test('X-Remote-User, X-Consumer-Username and X-User cannot be forged on any route, in any spelling', async () => {
    const r = await request(`${proxy.url}/open/x`, {
      headers: { 'x-remote-user': 'a', x_consumer_username: 'b', 'X-USER': 'c' },
    })
    assert.equal(r.statusCode, 200)
    await r.body.text()
    const h = up.seen.at(-1)!.rawHeaders.map((x) => x.toLowerCase())
    for (const name of ['x-remote-user', 'x_consumer_username', 'x-user']) assert.ok(!h.includes(name), name)
  })

  test('an API key under a percent-encoded parameter name is still taken out of the query', async () => {
    const r = await request(`${proxy.url}/keys/x?%6Bey=${KEY}&a=1`)
    assert.equal(r.statusCode, 200)
    await r.body.text()
    assert.equal(up.seen.at(-1)!.url, '/keys/x?a=1')
  })

  test('a huge or malformed credential is refused with 401, never passed on', async () => {
    for (const authorization of [`Basic ${'A'.repeat(12_000)}`, 'Basic ====', `Basic ${basic('a', 'b')}`]) {
      const r = await request(`${proxy.url}/staff/x`, { headers: { authorization } })
      assert.equal(r.statusCode, 401)
      await r.body.text()
    }
  })

  test("an auth service's header value outside visible ASCII is never relayed (502)", async () => {
    const r = await request(`${proxy.url}/fa/latin1`)
    assert.equal(r.statusCode, 502)
    assert.equal(r.headers['x-note'], undefined)
    await r.body.text()
  })

  test('an auth service trying to split a header gets the client nothing of it', async () => {
    const r = await request(`${proxy.url}/fa/split`)
    assert.ok(r.statusCode === 502 || r.statusCode === 503, String(r.statusCode))
    assert.equal(r.headers['set-cookie'], undefined)
    await r.body.text()
  })

  test('a 2xx whose identity header is not visible ASCII: 502, and the upstream is never asked', async () => {
    const before = up.seen.length
    const r = await request(`${proxy.url}/fa/user`)
    assert.equal(r.statusCode, 502)
    await r.body.text()
    assert.equal(up.seen.length, before)
    const ok = await request(`${proxy.url}/fa/fine`)
    assert.equal(ok.statusCode, 200)
    await ok.body.text()
    assert.equal(up.seen.at(-1)!.headers['x-user'], 'alice')
  })
})
