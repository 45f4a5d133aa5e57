// Upstream selection through the real proxy: each strategy's shape, passive ejection and return,
// retry safety (a streamed POST is never sent twice), the retry budget, the connect timeout.

import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, test } from 'node:test'
import { runCli, startProxy, writeConfig } from '../helpers/proxy'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

const lb = (upstream: string) => `mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  g:
${upstream}
load_balancer: { upstream: g }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`

async function serverOf(url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(url, { headers })
  const text = await res.text()
  return res.status === 200 ? JSON.parse(text).server : `HTTP ${res.status}`
}

async function ups(n: number): Promise<Upstream[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => startUpstream(String.fromCharCode(97 + i))))
}

async function closeAll(...xs: Upstream[]) {
  await Promise.all(xs.map((u) => u.close()))
}

describe('strategies', () => {
  test('weighted 1:2:3 gives 1:2:3, spread out', async () => {
    const [a, b, c] = await ups(3)
    const proxy = await startProxy(
      lb(`    strategy: weighted
    servers:
      - "${a!.address}"
      - { address: "${b!.address}", weight: 2 }
      - { address: "${c!.address}", weight: 3 }`),
    )
    try {
      const seq: string[] = []
      for (let i = 0; i < 60; i++) seq.push(await serverOf(`${proxy.url}/`))
      const count = (s: string) => seq.filter((x) => x === s).length
      assert.deepEqual([count('a'), count('b'), count('c')], [10, 20, 30])
      assert.ok(!seq.join('').includes('ccc'), 'the heaviest server never gets three in a row')
    } finally {
      await proxy.stop()
      await closeAll(a!, b!, c!)
    }
  })

  test('least_connections sends work to the idle server while the other is slow', async () => {
    const [a, b] = await ups(2)
    a!.behaviour = { kind: 'delay', ms: 400 }
    const proxy = await startProxy(
      lb(`    strategy: least_connections\n    servers: ["${a!.address}", "${b!.address}"]`),
    )
    try {
      // Three clients, each sending requests back to back for a while.
      const served: string[] = []
      const deadline = Date.now() + 1500
      await Promise.all(
        [0, 1, 2].map(async () => {
          while (Date.now() < deadline) served.push(await serverOf(`${proxy.url}/`))
        }),
      )
      const slow = served.filter((s) => s === 'a').length
      assert.ok(slow / served.length < 0.2, `slow server took ${slow} of ${served.length}`)
    } finally {
      await proxy.stop()
      await closeAll(a!, b!)
    }
  })

  test('random (power of two choices) uses every server', async () => {
    const [a, b, c] = await ups(3)
    const proxy = await startProxy(
      lb(`    strategy: random\n    servers: ["${a!.address}", "${b!.address}", "${c!.address}"]`),
    )
    try {
      const seen: Record<string, number> = {}
      for (let i = 0; i < 150; i++) {
        const s = await serverOf(`${proxy.url}/`)
        seen[s] = (seen[s] ?? 0) + 1
      }
      for (const s of ['a', 'b', 'c'])
        assert.ok((seen[s] ?? 0) > 15, `each server gets a share: ${JSON.stringify(seen)}`)
    } finally {
      await proxy.stop()
      await closeAll(a!, b!, c!)
    }
  })

  test('consistent_hash on a header: stable per key; a server leaving moves only its keys', async () => {
    const [a, b, c] = await ups(3)
    const proxy = await startProxy(
      lb(`    strategy: consistent_hash
    hash_key: header:X-User
    servers: ["${a!.address}", "${b!.address}", "${c!.address}"]
    health_check: { interval_secs: 0.2, timeout_secs: 1, path: /health }`),
    )
    try {
      const users = Array.from({ length: 60 }, (_, i) => `user-${i}`)
      const before = new Map<string, string>()
      for (const u of users) before.set(u, await serverOf(`${proxy.url}/`, { 'x-user': u }))
      for (const u of users.slice(0, 10))
        assert.equal(await serverOf(`${proxy.url}/`, { 'x-user': u }), before.get(u))
      assert.equal(new Set(before.values()).size, 3, 'keys spread over every server')
      b!.health = 'fail'
      await proxy.waitForLog((l) => l.server === b!.address && String(l.msg).includes('unhealthy'), 'b out')
      for (const u of users) {
        const now = await serverOf(`${proxy.url}/`, { 'x-user': u })
        if (before.get(u) === 'b') assert.notEqual(now, 'b')
        else assert.equal(now, before.get(u), `${u} stays on ${before.get(u)}`)
      }
    } finally {
      await proxy.stop()
      await closeAll(a!, b!, c!)
    }
  })
})

describe('passive health', () => {
  test('a server answering 5xx is ejected, shown in /api/v1/upstreams, and comes back', async () => {
    const [a, b] = await ups(2)
    a!.behaviour = { kind: 'status', status: 500 }
    const proxy = await startProxy(
      lb(`    servers: ["${a!.address}", "${b!.address}"]
    passive_health: { consecutive_failures: 3, base_ejection_secs: 1 }`),
    )
    try {
      for (let i = 0; i < 6; i++) await serverOf(`${proxy.url}/`)
      const line = await proxy.waitForLog((l) => String(l.msg).includes('ejected after'), 'the ejection line')
      assert.equal(line.server, a!.address)
      for (let i = 0; i < 4; i++) assert.equal(await serverOf(`${proxy.url}/`), 'b')
      const view = (await (await fetch(`${proxy.controlUrl}/api/v1/upstreams`)).json()) as {
        upstreams: Array<{ servers: Array<{ address: string; ejected: boolean }> }>
      }
      assert.equal(view.upstreams[0]!.servers.find((s) => s.address === a!.address)!.ejected, true)
      a!.behaviour = { kind: 'ok' }
      await proxy.waitForLog((l) => String(l.msg).includes('back in rotation'), 'the return line', 5000)
      const after = new Set<string>()
      for (let i = 0; i < 4; i++) after.add(await serverOf(`${proxy.url}/`))
      assert.ok(after.has('a'), 'a serves again')
    } finally {
      await proxy.stop()
      await closeAll(a!, b!)
    }
  })

  test('connect failures eject a dead server even without health_check', async () => {
    const [b] = await ups(1)
    const dead = await closedPort()
    const proxy = await startProxy(
      lb(`    servers: ["127.0.0.1:${dead}", "${b!.address}"]
    passive_health: { consecutive_failures: 2, base_ejection_secs: 30 }`),
    )
    try {
      for (let i = 0; i < 6; i++) assert.equal(await serverOf(`${proxy.url}/`), 'a')
      await proxy.waitForLog(
        (l) => String(l.msg).includes('ejected after') && l.reason === 'connect_failed',
        'ejection',
      )
      const before = proxy.logs.filter((l) => l.error_type === 'connect_failed').length
      for (let i = 0; i < 6; i++) await serverOf(`${proxy.url}/`)
      assert.equal(
        proxy.logs.filter((l) => l.error_type === 'connect_failed').length,
        before,
        'no more attempts on it',
      )
    } finally {
      await proxy.stop()
      await closeAll(b!)
    }
  })
})

describe('retries', () => {
  const retrying = (a: Upstream, b: Upstream, extra = '') => `    servers: ["${a.address}", "${b.address}"]
    retries: 1
    retry_on: [connect_failure, reset, timeout, 5xx]
    passive_health: { enabled: false }
${extra}`

  test('a POST whose body was streamed is never sent twice', async () => {
    const [a, b] = await ups(2)
    a!.behaviour = { kind: 'reset' }
    b!.behaviour = { kind: 'reset' }
    const proxy = await startProxy(lb(retrying(a!, b!)))
    try {
      const res = await fetch(`${proxy.url}/pay`, { method: 'POST', body: 'charge-card-once' })
      assert.equal(res.status, 502)
      await res.text()
      assert.equal(a!.seen.length + b!.seen.length, 1, 'exactly one server saw the POST')
    } finally {
      await proxy.stop()
      await closeAll(a!, b!)
    }
  })

  test('an idempotent GET is retried on another server after a reset or a 5xx', async () => {
    const [a, b] = await ups(2)
    a!.behaviour = { kind: 'reset' }
    const proxy = await startProxy(lb(retrying(a!, b!)))
    try {
      // Round robin starts at a: reset there, retried on b.
      assert.equal(await serverOf(`${proxy.url}/get`), 'b')
      assert.equal(a!.seen.length, 1)
      a!.behaviour = { kind: 'status', status: 503 }
      // Next turn starts at b; the one after at a (503), retried on b.
      await serverOf(`${proxy.url}/get`)
      assert.equal(await serverOf(`${proxy.url}/get`), 'b')
      const line = await proxy.waitForLog(
        (l) => String(l.msg).includes('answered 5xx; retrying'),
        'retry line',
      )
      assert.equal(line.status, 503)
    } finally {
      await proxy.stop()
      await closeAll(a!, b!)
    }
  })

  test('retries: 0 on a route turns retries off for it', async () => {
    const [b] = await ups(1)
    const dead = await closedPort()
    const proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  g: { servers: ["127.0.0.1:${dead}", "${b!.address}"], passive_health: { enabled: false } }
api_gateway:
  routes:
    strict: { path_pattern: "^/strict", upstream: g, retries: 0 }
    normal: { path_pattern: "^/", upstream: g }
`)
    try {
      assert.equal(await serverOf(`${proxy.url}/strict`), 'HTTP 502', 'starts at the dead server; no retry')
      assert.equal(await serverOf(`${proxy.url}/strict`), 'a')
      assert.equal(await serverOf(`${proxy.url}/normal`), 'a', 'starts at the dead server; retried')
    } finally {
      await proxy.stop()
      await closeAll(b!)
    }
  })

  test('the retry budget caps retries: with none left a connect failure is a 502', async () => {
    const [b] = await ups(1)
    const dead = await closedPort()
    const proxy = await startProxy(
      lb(`    servers: ["127.0.0.1:${dead}", "${b!.address}"]
    passive_health: { enabled: false }
    retry_budget: { percent: 0, min_per_sec: 0 }`),
    )
    try {
      assert.equal(await serverOf(`${proxy.url}/`), 'HTTP 502')
      assert.equal(await serverOf(`${proxy.url}/`), 'a')
    } finally {
      await proxy.stop()
      await closeAll(b!)
    }
  })
})

test('connect_timeout_secs bounds connecting (here: a TLS handshake that never answers)', async () => {
  const silent = net.createServer(() => undefined)
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  const port = (silent.address() as net.AddressInfo).port
  const proxy = await startProxy(`mode: load_balancer
server:
  bind_address: "127.0.0.1:0"
  connection_pool: { connect_timeout_secs: 0.3 }
upstreams:
  g: { servers: ["127.0.0.1:${port}"], tls: true }
load_balancer: { upstream: g }
`)
  try {
    const t0 = Date.now()
    const res = await fetch(`${proxy.url}/`)
    assert.equal(res.status, 504)
    assert.ok(Date.now() - t0 < 5000)
    const line = await proxy.waitForLog((l) => l.msg === 'request', 'access line')
    assert.equal(line.error_type, 'connect_timeout')
  } finally {
    await proxy.stop()
    silent.close()
  }
})

test('config: weights need a strategy that uses them; hash_key needs consistent_hash', () => {
  const { file } = writeConfig(`mode: load_balancer
upstreams:
  g:
    servers: [{ address: "127.0.0.1:1", weight: 3 }]
    hash_key: path
load_balancer: { upstream: g }
`)
  const r = runCli(['validate', file])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /upstreams\.g\.servers\[0\]\.weight: round_robin treats every server alike/)
  assert.match(r.stderr, /upstreams\.g\.hash_key: only applies with strategy: consistent_hash/)
})
