// HTTP/2 to upstreams with plain node:http2 (and https) servers: the server's concurrency limit,
// refused streams retried elsewhere, GOAWAY, protocol auto choosing by ALPN, and grpc-timeout
// honoured by the proxy itself (no client-side deadline).

import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import http2 from 'node:http2'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { makeCert, type TestCert } from '../helpers/certs'
import { type RunningProxy, startProxy } from '../helpers/proxy'

const portOf = (s: { address(): unknown }) => (s.address() as AddressInfo).port

/** One request over HTTP/2 (h2c) to the proxy: status, headers, trailers, body. */
function h2c(
  port: number,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<{
  headers: http2.IncomingHttpHeaders
  trailers: http2.IncomingHttpHeaders
  body: string
  endStream: boolean
}> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`)
    session.on('error', reject)
    const s = session.request(
      { ':method': body ? 'POST' : 'GET', ...headers },
      { endStream: body === undefined },
    )
    let h: http2.IncomingHttpHeaders = {}
    let t: http2.IncomingHttpHeaders = {}
    let endStream = false
    let text = ''
    s.on('response', (r, flags) => {
      h = r
      endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0
    })
    s.on('trailers', (r) => {
      t = r
    })
    s.on('data', (d) => {
      text += d
    })
    s.on('error', reject)
    s.on('close', () => {
      session.close()
      resolve({ headers: h, trailers: t, body: text, endStream })
    })
    if (body) s.end(body)
  })
}

describe('HTTP/2 upstreams', () => {
  let cert: TestCert
  let limited: http2.Http2Server
  let refusing: http2.Http2Server
  let good: http2.Http2Server
  let goaway: http2.Http2Server
  let slow: http2.Http2Server
  let h2tls: http2.Http2SecureServer
  let h1tls: https.Server
  let proxy: RunningProxy
  let maxSeen = 0
  let refused = 0
  before(async () => {
    cert = await makeCert(mkdtempSync(path.join(tmpdir(), 'locci-h2up-')), 'up.test', ['localhost'])
    // At most 2 streams at once: more must wait or go on another session.
    let open = 0
    limited = http2.createServer({ settings: { maxConcurrentStreams: 2 } }, (_req, res) => {
      open++
      maxSeen = Math.max(maxSeen, open)
      setTimeout(() => {
        open--
        res.end('limited')
      }, 30)
    })
    // Refuses every stream (REFUSED_STREAM): the request must go to the other server.
    refusing = http2.createServer()
    refusing.on('stream', (s) => {
      refused++
      s.on('error', () => undefined)
      s.close(http2.constants.NGHTTP2_REFUSED_STREAM)
    })
    good = http2.createServer((_req, res) => res.end('good'))
    // Answers, then says GOAWAY: the next request needs a new session.
    goaway = http2.createServer((req, res) => {
      res.end(`goaway ${req.stream.session?.socket?.remotePort}`)
      req.stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, req.stream.id ?? 0)
    })
    // A gRPC server that answers after 2 s, unless cancelled.
    slow = http2.createServer()
    slow.on('stream', (s) => {
      s.on('error', () => undefined)
      const t = setTimeout(() => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }))
        s.end()
      }, 2000)
      s.on('close', () => clearTimeout(t))
      s.resume()
    })
    h2tls = http2.createSecureServer({ cert: cert.cert, key: cert.key, allowHTTP1: false }, (req, res) =>
      res.end(`alpn ${req.httpVersion}`),
    )
    h1tls = https.createServer({ cert: cert.cert, key: cert.key }, (req, res) =>
      res.end(`alpn ${req.httpVersion}`),
    )
    for (const s of [limited, refusing, good, goaway, slow, h2tls, h1tls] as Array<{
      listen(p: number, h: string, cb: () => void): void
    }>)
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const tlsKeys = `tls: true, ca_path: "${cert.certPath}", sni: localhost`
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0", h2c: true }
upstreams:
  limited: { servers: ["127.0.0.1:${portOf(limited)}"], protocol: h2c, http2: { max_sessions: 1 } }
  failover:
    servers: ["127.0.0.1:${portOf(refusing)}", "127.0.0.1:${portOf(good)}"]
    protocol: h2c
    strategy: round_robin
    passive_health: { enabled: false }
  goaway: { servers: ["127.0.0.1:${portOf(goaway)}"], protocol: h2c }
  slow: { servers: ["127.0.0.1:${portOf(slow)}"], protocol: h2c }
  auto_h2: { servers: ["127.0.0.1:${portOf(h2tls)}"], protocol: auto, ${tlsKeys} }
  auto_h1: { servers: ["127.0.0.1:${portOf(h1tls)}"], protocol: auto, ${tlsKeys} }
api_gateway:
  routes:
    limited: { path_pattern: "^/limited", upstream: limited }
    failover: { path_pattern: "^/failover", upstream: failover }
    goaway: { path_pattern: "^/goaway", upstream: goaway }
    slow: { path_pattern: "^/slow", upstream: slow }
    auto_h2: { path_pattern: "^/auto-h2", upstream: auto_h2 }
    auto_h1: { path_pattern: "^/auto-h1", upstream: auto_h1 }
    authn: { path_pattern: "^/authn", upstream: slow, middlewares: [authentication] }
    denied: { path_pattern: "^/denied", upstream: slow, middlewares: [ip_filter] }
    limited_rate: { path_pattern: "^/rate", upstream: slow, middlewares: [rate_limiting] }
  middlewares:
    authentication: { jwt_secret: "a-secret-long-enough-for-hs256-0123456789" }
    ip_filter: { deny: ["127.0.0.1", "::1", "::ffff:127.0.0.1"] }
    rate_limiting: { requests_per_minute: 1, burst_size: 1 }
`)
  })
  after(async () => {
    await proxy?.stop()
    for (const s of [limited, refusing, good, goaway, slow, h2tls, h1tls]) s?.close()
  })

  test("the server's max_concurrent_streams holds; requests beyond wait and all succeed", async () => {
    const rs = await Promise.all(Array.from({ length: 12 }, () => fetch(`${proxy.url}/limited`)))
    assert.deepEqual(
      await Promise.all(rs.map((r) => r.text())),
      Array.from({ length: 12 }, () => 'limited'),
    )
    assert.equal(maxSeen, 2)
  })

  test('a refused stream is retried on the next server, even for a POST', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${proxy.url}/failover`, { method: 'POST' })
      assert.equal(r.status, 200)
      assert.equal(await r.text(), 'good')
    }
    assert.ok(refused > 0)
  })

  test('after GOAWAY new requests go to a new session', async () => {
    const a = await (await fetch(`${proxy.url}/goaway`)).text()
    const b = await (await fetch(`${proxy.url}/goaway`)).text()
    assert.match(a, /^goaway \d+$/)
    assert.match(b, /^goaway \d+$/)
    assert.notEqual(a, b, 'another connection (client port) after GOAWAY')
  })

  test('protocol auto: HTTP/2 when the server offers it by ALPN, else HTTP/1.1', async () => {
    assert.equal(await (await fetch(`${proxy.url}/auto-h2`)).text(), 'alpn 2.0')
    assert.equal(await (await fetch(`${proxy.url}/auto-h1`)).text(), 'alpn 1.1')
    assert.equal(await (await fetch(`${proxy.url}/auto-h1`)).text(), 'alpn 1.1')
  })

  test('grpc-timeout: the proxy ends the call DEADLINE_EXCEEDED, Trailers-Only', async () => {
    const r = await h2c(
      proxy.port,
      { ':path': '/slow/Svc/M', 'content-type': 'application/grpc', 'grpc-timeout': '200m', te: 'trailers' },
      Buffer.from([0, 0, 0, 0, 0]),
    )
    assert.equal(r.headers[':status'], 200)
    assert.equal(r.headers['grpc-status'], '4')
    assert.equal(r.endStream, true, 'END_STREAM on the head (Trailers-Only)')
    const line = await proxy.waitForLog((l) => l.msg === 'gRPC deadline exceeded', 'the deadline line')
    assert.equal(line.deadline_ms, 200)
  })

  test('an HTTP/1.1 client of a gRPC route gets the gRPC error form too', async () => {
    const r = await fetch(`${proxy.url}/nothing/Svc/M`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web' },
      body: Buffer.alloc(5),
    })
    assert.equal(r.status, 200)
    assert.equal(r.headers.get('grpc-status'), '12')
    assert.equal(r.headers.get('content-type'), 'application/grpc-web')
  })

  test('middleware refusals as gRPC statuses: 16 authentication, 7 ip_filter, 8 rate limiting', async () => {
    const call = async (p: string) =>
      (
        await h2c(
          proxy.port,
          { ':path': p, 'content-type': 'application/grpc', te: 'trailers' },
          Buffer.alloc(5),
        )
      ).headers
    const a = await call('/authn/Svc/M')
    assert.equal(a[':status'], 200)
    assert.equal(a['grpc-status'], '16')
    assert.equal((await call('/denied/Svc/M'))['grpc-status'], '7')
    // The first call takes the one token (and waits for the slow server's answer: cancelled).
    const statuses = new Set<string>()
    for (let i = 0; i < 3; i++) statuses.add(String((await call('/rate/Svc/M'))['grpc-status']))
    assert.ok(statuses.has('8'), [...statuses].join())
  })
})
