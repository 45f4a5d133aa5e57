// Strict protocol edges. What the request itself gets wrong is the client's fault: it is
// answered before any upstream is touched and never counts against an upstream's health (twelve
// `OPTIONS *` requests used to eject one of two healthy servers). Framing and versions the
// proxy cannot forward faithfully are refused rather than guessed at, TRACE is not echoed, an
// absolute-form target names the Host, and a WebSocket from an origin the route refuses gets
// 403 (browsers do not apply CORS to WebSocket: cross-site WebSocket hijacking).

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawRequest } from '../helpers/raw'
import { startUpstream, type Upstream } from '../helpers/upstream'

describe('client faults stay client faults', () => {
  const ups: Upstream[] = []
  let proxy: RunningProxy
  before(async () => {
    ups.push(await startUpstream('a'), await startUpstream('b'))
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  u:
    servers: ["${ups[0]!.address}", "${ups[1]!.address}"]
    passive_health: { consecutive_failures: 2 }
load_balancer: { upstream: u }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop()
    for (const u of ups) await u.close()
  })

  const send = (bytes: string) => rawRequest(proxy.port, bytes)
  const cases: Array<{ desc: string; bytes: string; status: number[] }> = [
    // Connection: close where the answer keeps the connection open: the client reads to the end.
    {
      desc: 'OPTIONS *',
      bytes: 'OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
      status: [400],
    },
    {
      desc: 'an authority-form target outside CONNECT',
      bytes: 'GET example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n',
      status: [400],
    },
    {
      desc: 'an unknown transfer coding',
      bytes: 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
      status: [501],
    },
    {
      desc: 'HTTP/2.0 on an HTTP/1 connection',
      bytes: 'GET / HTTP/2.0\r\nHost: t\r\n\r\n',
      status: [505, 400],
    },
    { desc: 'HTTP/1.2', bytes: 'GET / HTTP/1.2\r\nHost: t\r\n\r\n', status: [505, 400] },
    { desc: 'an HTTP/0.9 request', bytes: 'GET /\r\n\r\n', status: [400, 505] },
    {
      desc: 'TRACE',
      bytes: 'TRACE / HTTP/1.1\r\nHost: t\r\nCookie: secret\r\nConnection: close\r\n\r\n',
      status: [405],
    },
  ]
  for (const c of cases) {
    test(`${c.desc} -> ${c.status.join(' or ')}, no upstream touched`, async () => {
      const before = ups[0]!.seen.length + ups[1]!.seen.length
      const r = await send(c.bytes)
      assert.ok(c.status.includes(r.status), `${r.status}: ${r.text.slice(0, 120)}`)
      assert.equal(ups[0]!.seen.length + ups[1]!.seen.length, before)
    })
  }

  test('a dozen of each never moves a healthy server out of rotation', async () => {
    for (let i = 0; i < 12; i++) for (const c of cases) await send(c.bytes)
    const j = (await (await fetch(`${proxy.controlUrl}/api/v1/upstreams`)).json()) as {
      upstreams: Array<{ available: number; servers: Array<{ consecutive_failures: number }> }>
    }
    assert.equal(j.upstreams[0]!.available, 2)
    for (const s of j.upstreams[0]!.servers) assert.equal(s.consecutive_failures, 0)
  })

  test('an absolute-form target names the Host the upstream sees', async () => {
    const r = await send(
      'GET http://api.example/x?y=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n',
    )
    assert.equal(r.status, 200)
    const seen = [...ups[0]!.seen, ...ups[1]!.seen].find((s) => s.url === '/x?y=1')!
    assert.equal(seen.headers.host, 'api.example')
  })
})

describe('TRACE when allowed', () => {
  test('server.allow_trace: true forwards it', async () => {
    const up = await startUpstream('t')
    const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", allow_trace: true }
upstreams:
  u: { servers: ["${up.address}"] }
load_balancer: { upstream: u }
`)
    try {
      const r = await rawRequest(proxy.port, 'TRACE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')
      assert.equal(r.status, 200)
      assert.equal(up.seen.at(-1)!.method, 'TRACE')
    } finally {
      await proxy.stop()
      await up.close()
    }
  })
})

describe('WebSocket origin checks', () => {
  let wss: WebSocketServer
  let proxy: RunningProxy
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    wss.on('connection', (s) => s.on('message', (m) => s.send(m)))
    await new Promise((r) => wss.once('listening', r))
    const port = (wss.address() as { port: number }).port
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  ws: { servers: ["127.0.0.1:${port}"] }
api_gateway:
  middlewares:
    cors: { allowed_origins: ["https://app.example"] }
    open_cors: { type: cors, allowed_origins: "*" }
  routes:
    by_cors: { path_pattern: "^/cors", upstream: ws, middlewares: [cors] }
    own_list: { path_pattern: "^/own", upstream: ws, websocket_origins: ["https://chat.example"] }
    anyone: { path_pattern: "^/any", upstream: ws, middlewares: [open_cors] }
    no_policy: { path_pattern: "^/", upstream: ws }
`)
  })
  after(async () => {
    await proxy.stop()
    wss.close()
  })

  /** Opens a socket and resolves with 'open' or the refused handshake's status. */
  const open = (path: string, origin?: string) =>
    new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}${path}`, origin ? { origin } : {})
      ws.on('open', () => {
        ws.close()
        resolve('open')
      })
      ws.on('unexpected-response', (_req, res) => resolve(String(res.statusCode)))
      ws.on('error', () => resolve('error'))
    })

  const cases = [
    {
      path: '/cors',
      origin: 'https://evil.example',
      expect: '403',
      desc: "an origin the route's cors refuses",
    },
    {
      path: '/cors',
      origin: 'https://app.example',
      expect: 'open',
      desc: "an origin the route's cors allows",
    },
    { path: '/cors', origin: undefined, expect: 'open', desc: 'no Origin (not a browser)' },
    {
      path: '/own',
      origin: 'https://app.example',
      expect: '403',
      desc: 'an origin outside websocket_origins',
    },
    { path: '/own', origin: 'https://chat.example', expect: 'open', desc: 'an origin in websocket_origins' },
    { path: '/any', origin: 'https://evil.example', expect: 'open', desc: 'allowed_origins "*"' },
    { path: '/x', origin: 'https://evil.example', expect: 'open', desc: 'a route with no policy' },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.expect}`, async () => {
      assert.equal(await open(c.path, c.origin), c.expect)
    })
  }
})
