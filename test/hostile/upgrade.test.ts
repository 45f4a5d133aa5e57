// Upgrade only what is a WebSocket. Adding `Connection: Upgrade` to a request used to make the
// proxy take the raw-socket path and buffer the upstream's whole non-101 answer in memory (1 GB
// of RSS for a 200 MB download; past 512 MB the process died). Now a refused WebSocket handshake
// streams back with backpressure, any other Upgrade token is proxied as a plain request, and
// an upgrade carrying a body is refused before any upstream sees it.

import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawRequest, rssOf } from '../helpers/raw'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

describe('upgrade requests', () => {
  let big: http.Server
  let bigPort = 0
  /** Bytes the big upstream managed to hand to its socket. */
  let written = 0
  let release: (() => void) | undefined
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    // Answers every request with a 200 that streams 256 MB as fast as it is read.
    big = http.createServer((req, res) => {
      if (req.url === '/hold') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        res.write(Buffer.alloc(64 * 1024, 98))
        release = () => res.end()
        return
      }
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(256 * 1024 * 1024),
      })
      const chunk = Buffer.alloc(1024 * 1024, 97)
      let left = 256
      written = 0
      const pump = () => {
        while (left > 0) {
          left--
          written += chunk.length
          if (!res.write(chunk)) {
            res.once('drain', pump)
            return
          }
        }
        res.end()
      }
      pump()
    })
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', r))
    bigPort = (big.address() as net.AddressInfo).port
    up = await startUpstream('echo')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  big: { servers: ["127.0.0.1:${bigPort}"] }
  echo: { servers: ["${up.address}"] }
api_gateway:
  routes:
    big: { path_pattern: "^/big", upstream: big }
    hold: { path_pattern: "^/hold", upstream: big }
    echo: { path_pattern: "^/", upstream: echo }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop()
    big.closeAllConnections()
    big.close()
    await up.close()
  })

  const wsHead = (path: string, extra = '') =>
    `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`

  test('a refused handshake streams: the first bytes arrive while the upstream is still sending', async () => {
    const s = net.connect(proxy.port, '127.0.0.1')
    let got = 0
    s.on('data', (d: Buffer) => {
      got += d.length
    })
    s.write(wsHead('/hold'))
    // The upstream holds its answer open after 64 KiB: a proxy that buffers shows nothing.
    await until(() => got > 64 * 1024, 'the first 64 KiB through the proxy', 10_000)
    release?.()
    await new Promise((r) => s.once('close', r))
  })

  test('a large refused handshake is relayed with backpressure, memory stays bounded', async () => {
    const rss0 = await rssOf(proxy.child.pid!)
    const s = net.connect(proxy.port, '127.0.0.1')
    let got = 0
    s.on('data', (d: Buffer) => {
      got += d.length
    })
    s.write(wsHead('/big'))
    await until(() => got > 1024 * 1024, 'the answer to start', 10_000)
    // Stop reading: the upstream must be held back, not drained into the proxy's memory.
    s.pause()
    let last = -1
    await until(
      () => {
        const stable = written === last
        last = written
        return stable
      },
      'the upstream to be held back by backpressure',
      20_000,
      300,
    )
    const held = written
    assert.ok(held < 128 * 1024 * 1024, `the upstream was held back (${held} bytes written of 256 MiB)`)
    const rss = await rssOf(proxy.child.pid!)
    assert.ok(rss - rss0 < 96 * 1024 * 1024, `proxy RSS grew by ${Math.round((rss - rss0) / 1e6)} MB`)
    s.resume()
    await new Promise((r) => s.once('close', r))
    assert.ok(got > 256 * 1024 * 1024, `the whole body arrived (${got} bytes)`)
  })

  test('Upgrade: h2c is not upgraded: the request is proxied as a plain one', async () => {
    const r = await rawRequest(
      proxy.port,
      'GET /plain HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    )
    assert.equal(r.status, 200)
    const seen = up.seen.at(-1)!
    assert.equal(seen.url, '/plain')
    assert.equal(seen.headers.upgrade, undefined)
    assert.equal(seen.headers['http2-settings'], undefined)
    assert.ok(r.closedByServer, 'the connection ends after the answer')
  })

  test('an upgrade with a body is refused before any upstream', async () => {
    const before = up.seen.length
    const r = await rawRequest(proxy.port, `${wsHead('/ws', 'Content-Length: 5\r\n')}hello`)
    assert.equal(r.status, 400)
    assert.equal(up.seen.length, before)
  })

  test('no request stays in flight afterwards', async () => {
    await until(
      async () => {
        const j = (await (await fetch(`${proxy.controlUrl}/api/v1/status`)).json()) as {
          requests_in_flight: number
        }
        return j.requests_in_flight === 0
      },
      'in-flight back to 0',
      10_000,
    )
  })
})

describe("a WebSocket handshake follows its route's retry policy", () => {
  let wss: import('ws').WebSocketServer
  let proxy: RunningProxy
  before(async () => {
    const { WebSocketServer } = await import('ws')
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise((r) => wss.once('listening', r))
    const port = (wss.address() as net.AddressInfo).port
    const refused = await closedPort()
    const servers = `["127.0.0.1:${refused}", "127.0.0.1:${port}"]`
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  once: { servers: ${servers}, passive_health: { enabled: false } }
  retried: { servers: ${servers}, passive_health: { enabled: false } }
api_gateway:
  routes:
    no_retry: { path_pattern: "^/once", upstream: once, retries: 0 }
    default: { path_pattern: "^/", upstream: retried }
`)
  })
  after(async () => {
    await proxy.stop()
    wss.close()
  })

  const handshake = (path: string) =>
    rawRequest(
      proxy.port,
      `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      3000,
    )

  test('retries: 0 on the route: the refused first server is the answer (502)', async () => {
    assert.equal((await handshake('/once')).status, 502)
  })

  test("the group's default (one retry): the second server takes it (101)", async () => {
    assert.equal((await handshake('/ws')).status, 101)
  })
})
