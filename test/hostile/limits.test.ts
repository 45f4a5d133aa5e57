// Bounded resources: every wait has a deadline and every size a limit. A body larger than
// allowed is refused (413) without the upstream spending anything on it; a body that stops
// arriving is cut off (408) without the upstream being blamed; a request queued for a busy
// pool's connection times out like any other; connections over max_connections are closed.

import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { rawRequest } from '../helpers/raw'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

describe('request body limits', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('app')
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0", max_body_bytes: 1000, body_timeout_secs: 0.5 }
upstreams:
  app: { servers: ["${up.address}"] }
api_gateway:
  routes:
    uploads: { path_pattern: "^/uploads", upstream: app, max_body_bytes: 100000 }
    api: { path_pattern: "^/", upstream: app }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  const post = (path: string, body: string, chunked = false) =>
    rawRequest(
      proxy.port,
      chunked
        ? `POST ${path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
        : `POST ${path} HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    )

  test('a declared Content-Length over the limit is refused with 413 before any upstream', async () => {
    const before = up.seen.length
    const r = await rawRequest(proxy.port, 'POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\nabc')
    assert.equal(r.status, 413)
    assert.equal(up.seen.length, before)
  })

  test('a chunked body that grows over the limit is cut off with 413', async () => {
    const r = await post('/x', 'y'.repeat(5000), true)
    assert.equal(r.status, 413)
  })

  test("a route's own max_body_bytes wins over the server's", async () => {
    const r = await post('/uploads/a', 'z'.repeat(5000))
    assert.equal(r.status, 200)
    assert.equal(up.seen.at(-1)!.body.length, 5000)
  })

  test('a body under the limit passes, chunked or not', async () => {
    assert.equal((await post('/x', 'ok')).status, 200)
    assert.equal((await post('/x', 'fine', true)).status, 200)
  })

  test('a stalled body is answered 408 and the upstream is not blamed', async () => {
    const t0 = Date.now()
    const r = await rawRequest(
      proxy.port,
      'POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly-a-little',
      10_000,
    )
    assert.equal(r.status, 408)
    assert.ok(Date.now() - t0 < 8000, `answered in ${Date.now() - t0} ms`)
    const ups = (await (await fetch(`${proxy.controlUrl}/api/v1/upstreams`)).json()) as {
      upstreams: Array<{ servers: Array<{ consecutive_failures: number; ejected: boolean }> }>
    }
    const s = ups.upstreams[0]!.servers[0]!
    assert.equal(s.consecutive_failures, 0)
    assert.equal(s.ejected, false)
  })
})

describe('deadlines and connection limits', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('slow')
    proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  upstream_timeout_secs: 3
  max_connections: 3
  connection_pool: { max_idle: 1 }
upstreams:
  u:
    servers: ["${up.address}"]
    passive_health: { enabled: false }
load_balancer: { upstream: u }
`)
  })
  after(async () => {
    await proxy.stop()
    await up.close()
  })

  test('time queued for a busy pool counts against the timeout', async () => {
    up.behaviour = { kind: 'delay', ms: 2000 }
    const t0 = Date.now()
    // One connection to the upstream: the second request waits 2 s in the queue, then would
    // need 2 s more; its 3 s deadline runs out first. (The first has a second to spare, so a
    // loaded machine does not time it out too.)
    const [a, b] = await Promise.all([
      rawRequest(proxy.port, 'GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', 10_000),
      rawRequest(proxy.port, 'GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', 10_000),
    ])
    const statuses = [a.status, b.status].sort()
    assert.deepEqual(statuses, [200, 504])
    assert.ok(Date.now() - t0 < 8000)
    up.behaviour = { kind: 'ok' }
  })

  test('connections beyond max_connections are closed; the others keep working', async () => {
    const held: net.Socket[] = []
    for (let i = 0; i < 3; i++) {
      const s = net.connect(proxy.port, '127.0.0.1')
      await new Promise((r) => s.once('connect', r))
      held.push(s)
    }
    try {
      await until(
        async () => {
          const r = await rawRequest(proxy.port, 'GET / HTTP/1.1\r\nHost: t\r\n\r\n', 3000)
          return r.status === 0 && r.closedByServer
        },
        'a fourth connection to be closed unanswered',
        10_000,
      )
      // The held connections still get answers.
      const s = held[0]!
      const got = new Promise<string>((resolve) => s.once('data', (d) => resolve(String(d))))
      s.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n')
      assert.match(await got, /^HTTP\/1\.1 200/)
    } finally {
      for (const s of held) s.destroy()
    }
  })
})

describe('a client that gives up on its body', () => {
  let up: Upstream
  let proxy: RunningProxy
  before(async () => {
    up = await startUpstream('app')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", body_timeout_secs: 60, shutdown_timeout_secs: 60 }
upstreams:
  u: { servers: ["${up.address}"] }
load_balancer: { upstream: u }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    await proxy.stop('SIGKILL')
    await up.close()
  })

  const inFlight = async () =>
    ((await (await fetch(`${proxy.controlUrl}/api/v1/status`)).json()) as { requests_in_flight: number })
      .requests_in_flight

  for (const how of ['half-close', 'reset'] as const) {
    test(`${how} mid-body frees its slot at once, not at the body timeout`, async () => {
      const s = net.connect(proxy.port, '127.0.0.1')
      await new Promise((r) => s.once('connect', r))
      s.write('POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nten bytes.')
      await until(async () => (await inFlight()) === 1, 'the request in flight', 10_000)
      if (how === 'half-close') s.end()
      else s.resetAndDestroy()
      await until(async () => (await inFlight()) === 0, 'the slot released', 10_000)
      s.destroy()
    })
  }

  test('SIGTERM then exits at once (nothing left in flight)', async () => {
    const t0 = Date.now()
    assert.equal(await proxy.stop(), 0)
    assert.ok(Date.now() - t0 < 20_000, `stopped in ${Date.now() - t0} ms (grace period 60 s)`)
  })
})
