// Headers the gateway vouches for cannot be forged. A client that writes its own
// X-Forwarded-For picks the address rate limits and logs see; one that writes X-User-Id on a
// route without authentication impersonates whoever it names to an upstream that trusts the
// gateway; a second Host header or an :authority that disagrees with host lets two servers read
// two different targets; an upstream's own Access-Control-* headers would let in an origin the
// proxy refused; and an HTTPS redirect built from any Host sends users wherever an attacker says.

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import http2 from 'node:http2'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { makeCert } from '../helpers/certs'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawHeaderOf, rawRequest, scriptedUpstream } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'

const req = (path: string, headers: string[] = []) =>
  `GET ${path} HTTP/1.1\r\nHost: t\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`

describe('forwarding headers and the client address', () => {
  let up: Upstream
  let open: RunningProxy
  let behindLb: RunningProxy
  const config = (extra: string) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0"${extra} }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  middlewares:
    rate_limiting: { requests_per_minute: 1, burst_size: 2 }
    authentication:
      jwt_secret: "0123456789abcdef0123456789abcdef"
      forward_claims: { sub: X-User-Id }
    cors: { allowed_origins: ["https://good.example"] }
  routes:
    limited: { path_pattern: "^/limited", upstream: app, middlewares: [rate_limiting] }
    private: { path_pattern: "^/private", upstream: app, middlewares: [authentication] }
    browser: { path_pattern: "^/browser", upstream: app, middlewares: [cors] }
    open: { path_pattern: "^/", upstream: app }
`
  before(async () => {
    up = await startUpstream('app')
    open = await startProxy(config(''))
    behindLb = await startProxy(config(', trusted_proxies: ["127.0.0.0/8"]'))
  })
  after(async () => {
    await open.stop()
    await behindLb.stop()
    await up.close()
  })

  test('a client cannot pick its own address: forged X-Forwarded-For shares one rate limit', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) {
      statuses.push(
        (await rawRequest(open.port, req('/limited', [`X-Forwarded-For: 198.51.100.${i}`]))).status,
      )
    }
    assert.deepEqual(statuses, [200, 200, 429, 429, 429])
    const seen = up.seen.at(-1)!
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'dropped and rebuilt from the connection')
  })

  test('forged Forwarded, X-Real-IP, X-Forwarded-Proto/-Host/-Port are dropped', async () => {
    await rawRequest(
      open.port,
      req('/x', [
        'Forwarded: for=1.2.3.4;proto=https',
        'X-Real-IP: 1.2.3.4',
        'X-Forwarded-Proto: https',
        'X-Forwarded-Host: evil.example',
        'X-Forwarded-Port: 443',
      ]),
    )
    const h = up.seen.at(-1)!.headers
    assert.equal(h.forwarded, undefined)
    assert.equal(h['x-real-ip'], undefined)
    assert.equal(h['x-forwarded-proto'], 'http')
    assert.equal(h['x-forwarded-host'], 't')
    assert.equal(h['x-forwarded-port'], undefined)
  })

  test('behind a trusted proxy, X-Forwarded-For names the client: separate limits, logged address', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      statuses.push(
        (await rawRequest(behindLb.port, req('/limited', [`X-Forwarded-For: 198.51.100.${i}`]))).status,
      )
    }
    assert.deepEqual(statuses, [200, 200, 200, 200], 'each client address has its own bucket')
    assert.equal(up.seen.at(-1)!.headers['x-forwarded-for'], '198.51.100.3, 127.0.0.1')
    const line = await behindLb.waitForLog(
      (l) => l.msg === 'request' && l.client === '198.51.100.3',
      'access line',
    )
    assert.equal(line.path, '/limited')
    await rawRequest(behindLb.port, req('/x', ['X-Forwarded-Proto: https']))
    assert.equal(up.seen.at(-1)!.headers['x-forwarded-proto'], 'https', 'kept from a trusted proxy')
  })

  test('a header named in forward_claims cannot be sent by a client on any route, in any spelling', async () => {
    await rawRequest(open.port, req('/x', ['X-User-Id: admin', 'x_user_id: admin', 'X_USER-ID: admin']))
    const raw = up.seen.at(-1)!.rawHeaders.map((h) => h.toLowerCase())
    for (const name of ['x-user-id', 'x_user_id', 'x_user-id']) assert.ok(!raw.includes(name), name)
  })

  test('two Host headers are refused with 400 before any upstream', async () => {
    const before = up.seen.length
    const r = await rawRequest(
      open.port,
      'GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n',
    )
    assert.equal(r.status, 400)
    assert.equal(up.seen.length, before)
  })

  test("a refused origin never receives the upstream's own Access-Control-* headers", async () => {
    const evil = await scriptedUpstream(
      () =>
        // Any spelling of the names: the proxy compares them case-insensitively.
        'HTTP/1.1 200 OK\r\naccess-control-allow-origin: *\r\nAccess-Control-Allow-Credentials: true\r\nACCESS-CONTROL-EXPOSE-HEADERS: x-secret\r\ncontent-length: 2\r\n\r\nok',
    )
    const p = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  app: { servers: ["${evil.address}"] }
api_gateway:
  middlewares:
    cors: { allowed_origins: ["https://good.example"] }
  routes:
    browser: { path_pattern: "^/", upstream: app, middlewares: [cors] }
`)
    try {
      const r = await rawRequest(p.port, req('/b', ['Origin: https://attacker.example']))
      assert.equal(r.status, 200)
      assert.equal(rawHeaderOf(r.text, 'access-control-allow-origin'), undefined)
      assert.equal(rawHeaderOf(r.text, 'access-control-allow-credentials'), undefined)
      assert.equal(rawHeaderOf(r.text, 'access-control-expose-headers'), undefined)
      const good = await rawRequest(p.port, req('/b', ['Origin: https://good.example']))
      assert.equal(rawHeaderOf(good.text, 'access-control-allow-origin'), 'https://good.example')
    } finally {
      await p.stop()
      await evil.close()
    }
  })
})

describe('HTTP/2 requests', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('app')
    const { certPath, keyPath } = await makeCert(mkdtempSync(path.join(tmpdir(), 'locci-h2-')), 'localhost')
    proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  tls: { cert_path: "${certPath}", key_path: "${keyPath}" }
upstreams:
  app: { servers: ["${up.address}"] }
load_balancer: { upstream: app }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  function h2(
    headers: http2.OutgoingHttpHeaders,
    body?: string[],
  ): Promise<{ status: number; body: string; headers: http2.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const c = http2.connect(proxy.url, { rejectUnauthorized: false })
      c.on('error', reject)
      const s = c.request(headers, { endStream: body === undefined })
      let text = ''
      let h: http2.IncomingHttpHeaders = {}
      s.setEncoding('utf8')
      s.on('response', (x) => {
        h = x
      })
      s.on('data', (d: string) => {
        text += d
      })
      s.on('end', () => {
        c.close()
        resolve({ status: Number(h[':status']), body: text, headers: h })
      })
      s.on('error', reject)
      if (body) {
        // Written in pieces, with no content-length: the length is only known at the end.
        for (const piece of body) s.write(piece)
        s.end()
      }
    })
  }

  test('cookie crumbs are joined into one Cookie header for the HTTP/1.1 upstream', async () => {
    const r = await h2({ ':path': '/c', cookie: ['a=1', 'b=2', 'c=3'] })
    assert.equal(r.status, 200)
    assert.equal(up.seen.at(-1)!.headers.cookie, 'a=1; b=2; c=3')
  })

  test('a request body without content-length arrives intact', async () => {
    const r = await h2({ ':path': '/upload', ':method': 'POST' }, ['hello ', 'big ', 'world'])
    assert.equal(r.status, 200)
    assert.equal(up.seen.at(-1)!.body, 'hello big world')
  })

  test('a host header that differs from :authority is refused', async () => {
    const before = up.seen.length
    const r = await h2({ ':path': '/h', ':authority': 'localhost', host: 'evil.example' })
    assert.equal(r.status, 400)
    assert.equal(up.seen.length, before)
  })

  test('CONNECT gets 405 and never reaches the upstream', async () => {
    const before = up.seen.length
    const r = await h2({ ':method': 'CONNECT', ':authority': 'internal.example:22' })
    assert.equal(r.status, 405)
    assert.equal(up.seen.length, before)
  })
})

describe('HTTP to HTTPS redirect', () => {
  const start = async (redirectHost: string) => {
    const { certPath, keyPath } = await makeCert(
      mkdtempSync(path.join(tmpdir(), 'locci-rd-')),
      'shop.example',
      ['shop.example', '*.shop.example'],
    )
    return startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  redirect_http_bind: "127.0.0.1:0"
  tls: { cert_path: "${certPath}", key_path: "${keyPath}"${redirectHost} }
upstreams:
  app: { servers: ["127.0.0.1:9"] }
load_balancer: { upstream: app }
`)
  }
  const redirectPort = (p: RunningProxy) =>
    Number(new URL(String(p.logs.find((l) => l.msg === 'locci-proxy listening')!.redirect_http)).port)

  test('uses the Host only when a certificate names it; any other Host gets 400', async () => {
    const p = await start('')
    try {
      const port = redirectPort(p)
      const ok = await rawRequest(
        port,
        'GET /a?b HTTP/1.1\r\nHost: www.shop.example\r\nConnection: close\r\n\r\n',
      )
      assert.equal(ok.status, 308)
      assert.equal(rawHeaderOf(ok.text, 'location'), `https://www.shop.example:${p.port}/a?b`)
      const evil = await rawRequest(
        port,
        'GET /a HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n',
      )
      assert.equal(evil.status, 400)
      assert.equal(rawHeaderOf(evil.text, 'location'), undefined)
    } finally {
      await p.stop()
    }
  })

  test('server.tls.redirect_host stands in for unknown hosts', async () => {
    const p = await start(', redirect_host: "shop.example"')
    try {
      const r = await rawRequest(
        redirectPort(p),
        'GET /x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n',
      )
      assert.equal(r.status, 308)
      assert.equal(rawHeaderOf(r.text, 'location'), 'https://shop.example/x')
    } finally {
      await p.stop()
    }
  })
})
