// load_balancer mode end to end: round robin, failover past refused servers, health checks
// taking servers out and back, 502/503/504, streaming both ways, teardown both ways.

import assert from 'node:assert/strict'
import http from 'node:http'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init)
  const text = await res.text()
  let json: Record<string, unknown> | undefined
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

function lbConfig(servers: string[], extra = '', upstreamExtra = ''): string {
  return `mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
${extra}
upstreams:
  fleet:
    servers: [${servers.map((s) => `"${s}"`).join(', ')}]
    strategy: round_robin
${upstreamExtra}
load_balancer:
  upstream: fleet
`
}

describe('load balancer: round robin and failover', () => {
  let ups: Upstream[]
  let proxy: RunningProxy
  let dead: number
  before(async () => {
    ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)))
    dead = await closedPort()
    proxy = await startProxy(
      lbConfig([ups[0]!.address, `127.0.0.1:${dead}`, ups[1]!.address, ups[2]!.address]),
    )
  })
  after(async () => {
    await proxy.stop()
    await Promise.all(ups.map((u) => u.close()))
  })

  test('cycles the servers in order, skipping one that refuses connections', async () => {
    const order: string[] = []
    for (let i = 0; i < 8; i++) order.push(String((await get(`${proxy.url}/x`)).json?.server))
    // The refused server's turn goes to the next one, so b answers twice per cycle.
    assert.deepEqual(order, ['a', 'b', 'b', 'c', 'a', 'b', 'b', 'c'])
    const warn = await proxy.waitForLog(
      (l) => l.msg === 'upstream error' && l.error_type === 'connect_failed',
      'a refused connection is logged with its type',
    )
    assert.equal(warn.level, 'warn')
  })

  test('a POST body survives the failover to the next server', async () => {
    // Rotate until the dead server is next in line, then POST.
    let r = await get(`${proxy.url}/x`)
    while (r.json?.server !== 'a') r = await get(`${proxy.url}/x`)
    const res = await get(`${proxy.url}/upload`, { method: 'POST', body: 'payload-123' })
    assert.equal(res.status, 200)
    assert.equal(res.json?.server, 'b')
    assert.equal(res.json?.body, 'payload-123')
  })

  test('streams a large request body up and a large response down unchanged', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 'z').toString()
    const res = await get(`${proxy.url}/big`, { method: 'PUT', body: big })
    assert.equal(res.status, 200)
    assert.equal(String(res.json!.body).length, big.length)
  })

  test('sets X-Forwarded-*, keeps a good X-Request-Id, drops hop-by-hop headers both ways', async () => {
    const res = await new Promise<{ headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = http.request(
        `${proxy.url}/h`,
        {
          headers: {
            'x-request-id': 'abc-123',
            'x-forwarded-for': '10.1.2.3',
            connection: 'keep-alive, x-secret-hop',
            'x-secret-hop': 'must-not-pass',
            'proxy-authorization': 'Basic Zm9vOmJhcg==',
            te: 'trailers',
            host: 'client.example:8080',
          },
        },
        (r) => {
          let body = ''
          r.on('data', (d) => {
            body += d
          })
          r.on('end', () => resolve({ headers: r.headers, body }))
        },
      )
      req.on('error', reject)
      req.end()
    })
    const seen = JSON.parse(res.body).headers as Record<string, string>
    assert.equal(seen['x-request-id'], 'abc-123')
    // The client is not a trusted proxy: its X-Forwarded-For is dropped and rebuilt.
    assert.equal(seen['x-forwarded-for'], '127.0.0.1')
    assert.equal(seen['x-forwarded-proto'], 'http')
    assert.equal(seen['x-forwarded-host'], 'client.example:8080')
    assert.equal(seen.host, 'client.example:8080', "the client's Host is passed on")
    assert.equal(seen['x-secret-hop'], undefined, 'headers named in Connection are hop-by-hop')
    assert.equal(seen['proxy-authorization'], undefined)
    assert.equal(seen.te, undefined)
    assert.equal(res.headers['x-request-id'], 'abc-123')
    // The upstream said `Keep-Alive: timeout=5`; what the client sees is the proxy's own.
    assert.notEqual(res.headers['keep-alive'], 'timeout=5', "the upstream's Keep-Alive is not passed down")
    const line = await proxy.waitForLog((l) => l.request_id === 'abc-123', 'the access log line')
    assert.equal(line.path, '/h')
    assert.equal(line.status, 200)
    assert.equal(typeof line.duration_ms, 'number')
    assert.ok(line.server)
  })

  test('makes a UUID request ID when the client sends none or a malformed one', async () => {
    const res = await get(`${proxy.url}/id`, { headers: { 'x-request-id': 'bad id with spaces' } })
    const id = res.headers.get('x-request-id')!
    assert.match(id, /^[0-9a-f-]{36}$/)
    assert.equal((res.json!.headers as Record<string, string>)['x-request-id'], id)
  })

  test('200 concurrent requests are all answered', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => get(`${proxy.url}/c/${i}`)))
    assert.equal(results.filter((r) => r.status === 200).length, 200)
  })
})

describe('load balancer: failures', () => {
  test('every server refusing gives 502 with a short plain body', async () => {
    const p1 = await closedPort()
    const p2 = await closedPort()
    const proxy = await startProxy(lbConfig([`127.0.0.1:${p1}`, `127.0.0.1:${p2}`]))
    try {
      const res = await get(`${proxy.url}/`)
      assert.equal(res.status, 502)
      assert.match(res.headers.get('content-type')!, /^text\/plain/)
      assert.ok(res.text.length < 100)
      assert.ok(res.headers.get('x-request-id'))
    } finally {
      await proxy.stop()
    }
  })

  test('health checks take a failing server out, 503 when none is left, and bring it back', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const proxy = await startProxy(
      lbConfig(
        [a.address, b.address],
        '',
        `    health_check:
      interval_secs: 0.2
      timeout_secs: 1
      path: /health`,
      ),
    )
    try {
      a.health = 'fail'
      await proxy.waitForLog(
        (l) => l.msg?.includes('unhealthy') === true && l.server === a.address,
        'a unhealthy',
      )
      for (let i = 0; i < 4; i++) assert.equal((await get(`${proxy.url}/`)).json?.server, 'b')
      b.health = 'fail'
      await proxy.waitForLog(
        (l) => l.msg?.includes('unhealthy') === true && l.server === b.address,
        'b unhealthy',
      )
      const res = await get(`${proxy.url}/`)
      assert.equal(res.status, 503)
      a.health = 'ok'
      await proxy.waitForLog(
        (l) => l.msg?.includes('healthy again') === true && l.server === a.address,
        'a back',
      )
      assert.equal((await get(`${proxy.url}/`)).json?.server, 'a')
      // Transitions are logged once, not on every check.
      await until(() => a.seen.length > 0, 'a served')
      const lines = proxy.logs.filter((l) => l.server === b.address && l.msg?.includes('unhealthy'))
      assert.equal(lines.length, 1)
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })

  test('a TCP health check (no path) notices a server that stops listening', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const proxy = await startProxy(
      lbConfig([a.address, b.address], '', '    health_check: { interval_secs: 0.2, timeout_secs: 1 }'),
    )
    try {
      await a.close()
      const line = await proxy.waitForLog((l) => l.msg?.includes('unhealthy') === true, 'a unhealthy')
      assert.equal(line.check, 'tcp')
      assert.equal(line.server, a.address)
      for (let i = 0; i < 3; i++) assert.equal((await get(`${proxy.url}/`)).json?.server, 'b')
    } finally {
      await proxy.stop()
      await b.close()
    }
  })

  test('server.upstream_timeout_secs gives 504 and the upstream request is cancelled', async () => {
    const a = await startUpstream('a')
    a.behaviour = { kind: 'delay', ms: 5000 }
    const proxy = await startProxy(lbConfig([a.address], '  upstream_timeout_secs: 0.3'))
    try {
      const t0 = Date.now()
      const res = await get(`${proxy.url}/slow`)
      assert.equal(res.status, 504)
      assert.ok(Date.now() - t0 < 4000, 'answered well before the upstream would have')
      const line = await proxy.waitForLog((l) => l.status === 504, 'the 504 access line')
      assert.equal(line.error_type, 'upstream_timeout')
      await until(() => a.aborted === 1, 'the upstream to see its request cancelled')
    } finally {
      await proxy.stop()
      await a.close()
    }
  })

  test('a client that disconnects cancels its upstream request', async () => {
    const a = await startUpstream('a')
    a.behaviour = { kind: 'delay', ms: 10_000 }
    const proxy = await startProxy(lbConfig([a.address]))
    try {
      const ac = new AbortController()
      const pending = fetch(`${proxy.url}/wait`, { signal: ac.signal }).catch(() => 'aborted')
      await until(() => a.seen.length === 1, 'the request to reach the upstream')
      ac.abort()
      assert.equal(await pending, 'aborted')
      await until(() => a.aborted === 1, 'the upstream request to be cancelled')
      const line = await proxy.waitForLog((l) => l.msg === 'request' && l.path === '/wait', 'access line')
      assert.equal(line.status, 499)
      assert.equal(line.error_type, 'client_aborted')
    } finally {
      await proxy.stop()
      await a.close()
    }
  })

  test('an upstream that drops mid-response ends the client response (no hang)', async () => {
    const a = await startUpstream('a')
    a.behaviour = { kind: 'drop_mid_body' }
    const proxy = await startProxy(lbConfig([a.address]))
    try {
      const outcome = await new Promise<string>((resolve) => {
        http.get(`${proxy.url}/drop`, (res) => {
          assert.equal(res.statusCode, 200)
          res.on('data', () => undefined)
          res.on('end', () => resolve('end'))
          res.on('error', () => resolve('error'))
          res.on('aborted', () => resolve('aborted'))
        })
      })
      assert.notEqual(outcome, 'end', 'a truncated body must not look complete')
      const line = await proxy.waitForLog((l) => l.msg === 'request' && l.path === '/drop', 'access line')
      assert.equal(line.error_type, 'upstream_reset')
      // The proxy keeps serving.
      a.behaviour = { kind: 'ok' }
      assert.equal((await get(`${proxy.url}/after`)).status, 200)
    } finally {
      await proxy.stop()
      await a.close()
    }
  })

  test('streams a slow response chunk by chunk', async () => {
    const a = await startUpstream('a')
    a.behaviour = { kind: 'stream', chunks: 5, size: 10, gapMs: 150 }
    const proxy = await startProxy(lbConfig([a.address]))
    try {
      const arrivals: number[] = []
      await new Promise<void>((resolve) => {
        http.get(`${proxy.url}/stream`, (res) => {
          res.on('data', () => arrivals.push(Date.now()))
          res.on('end', () => resolve())
        })
      })
      assert.ok(arrivals.length >= 3, `chunks arrive separately (got ${arrivals.length} reads)`)
      assert.ok(arrivals.at(-1)! - arrivals[0]! >= 300, 'the first chunk was not held back until the end')
    } finally {
      await proxy.stop()
      await a.close()
    }
  })
})

describe('load balancer: response bytes', () => {
  // Every byte value, in a body that arrives in one read with its head and in one of many reads:
  // both must reach the client byte for byte.
  const small = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256))
  const large = Buffer.concat(Array.from({ length: 70 }, () => small))
  let origin: http.Server
  let proxy: RunningProxy
  before(async () => {
    origin = http.createServer((req, res) => {
      const body = req.url === '/large' ? large : small
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
      res.end(body)
    })
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r))
    const { port } = origin.address() as { port: number }
    proxy = await startProxy(lbConfig([`127.0.0.1:${port}`]))
  })
  after(async () => {
    await proxy.stop()
    await new Promise((r) => origin.close(r))
  })

  test('binary bodies of known length arrive unchanged, small and large', async () => {
    for (const [path, want] of [
      ['/small', small],
      ['/large', large],
    ] as const) {
      const res = await fetch(`${proxy.url}${path}`)
      const got = Buffer.from(await res.arrayBuffer())
      assert.equal(res.headers.get('content-length'), String(want.length), path)
      assert.ok(got.equals(want), `${path}: the body differs`)
    }
    // HEAD: the head alone, with the length the body would have.
    const head = await fetch(`${proxy.url}/small`, { method: 'HEAD' })
    assert.equal(head.headers.get('content-length'), String(small.length))
    assert.equal((await head.arrayBuffer()).byteLength, 0)
  })
})
