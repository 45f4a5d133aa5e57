// server.workers: N processes on one listener, behaving like one from a client's point of view:
// one rate limit, one set of metrics, health checks once per instance, reloads and control-API
// changes reaching every worker, a dead worker replaced, SIGTERM draining them all.

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import { availableParallelism } from 'node:os'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, startProxy, startWorkers } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

/** A request on a fresh connection (so the kernel may hand it to any worker). */
function fresh(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close', ...headers } }, (res) => {
      let body = ''
      res.on('data', (d) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  })
}

const workerPids = (p: RunningProxy) => new Set(p.logs.filter((l) => l.msg === 'request').map((l) => l.pid))

const config = (up: Upstream, b: Upstream, extra = '') => `mode: api_gateway
server: { bind_address: "127.0.0.1:0", workers: 2 }
upstreams:
  web:
    servers: ["${up.address}", "${b.address}"]
    health_check: { interval_secs: 0.25, timeout_secs: 1, path: /health }
api_gateway:
  routes:
    limited: { path_pattern: "^/limited", upstream: web, middlewares: [rate_limiting] }
    all: { path_pattern: "^/", upstream: web }
middlewares:
  rate_limiting: { requests_per_minute: 1, burst_size: 5 }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
${extra}`

describe('workers: 2', () => {
  let a: Upstream
  let b: Upstream
  let proxy: RunningProxy
  before(async () => {
    a = await startUpstream('a')
    b = await startUpstream('b')
    proxy = await startWorkers(config(a, b))
  })
  after(async () => {
    await proxy.stop()
    await a.close()
    await b.close()
  })

  test('the rate limit holds for the instance: burst 5 is 5 across both workers', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 12; i++) statuses.push((await fresh(`${proxy.url}/limited`)).status)
    assert.equal(statuses.filter((s) => s === 200).length, 5, statuses.join(' '))
    assert.equal(statuses.filter((s) => s === 429).length, 7)
    await until(() => workerPids(proxy).size === 2, 'both workers to have answered')
  })

  test('metrics report the instance totals', async () => {
    for (let i = 0; i < 20; i++) await fresh(`${proxy.url}/m`)
    const text = await (await fetch(`${proxy.controlUrl}/metrics`)).text()
    const n = Number(
      /locci_requests_total\{mode="api_gateway",route="all",upstream="web",status="200"\} (\d+)/.exec(
        text,
      )?.[1],
    )
    assert.equal(n, 20)
    assert.match(text, /locci_worker_restarts_total 0/)
  })

  test('health checks run once per instance, and every worker uses the result', async () => {
    const before = a.healthHits + b.healthHits
    const t0 = Date.now()
    await until(() => Date.now() - t0 >= 1500 && a.healthHits + b.healthHits > before, 'some checks', 5000)
    const hits = a.healthHits + b.healthHits - before
    const elapsed = (Date.now() - t0) / 1000
    // Two servers every 0.25 s: about 8 a second for the instance; twice that if each worker checked.
    assert.ok(hits / elapsed < 12, `${hits} checks in ${elapsed.toFixed(1)} s`)
    b.health = 'fail'
    await proxy.waitForLog((l) => l.server === b.address && String(l.msg).includes('unhealthy'), 'b out')
    // The primary logs the change before its message reaches the workers: wait for 12 answers in a
    // row from a (fresh connections, so both workers answer some) instead of reading them at once.
    await until(
      async () => {
        for (let i = 0; i < 12; i++) {
          if (JSON.parse((await fresh(`${proxy.url}/h`)).body).server !== 'a') return false
        }
        return true
      },
      'no worker sending to the unhealthy server',
      10_000,
    )
    b.health = 'ok'
    await proxy.waitForLog((l) => l.server === b.address && String(l.msg).includes('healthy again'), 'b back')
  })

  test('a control-API change and a reload reach every worker', async () => {
    const r = await fetch(`${proxy.controlUrl}/api/v1/routes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'extra', path_pattern: '^/extra', upstream: 'web', strip_prefix: true }),
    })
    assert.equal(r.status, 201)
    for (let i = 0; i < 10; i++) {
      const res = await fresh(`${proxy.url}/extra/x`)
      assert.equal(JSON.parse(res.body).url, '/x', 'every worker strips /extra: it knows the new route')
    }
    // The reloaded file lets the catch-all route take GET only: a POST anywhere is then a 405.
    writeFileSync(
      proxy.configFile,
      config(a, b).replace(
        'all: { path_pattern: "^/", upstream: web }',
        'all: { path_pattern: "^/", upstream: web, methods: [GET] }',
      ),
    )
    proxy.child.kill('SIGHUP')
    await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the reload')
    for (let i = 0; i < 10; i++) {
      const post = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          `${proxy.url}/anything`,
          { method: 'POST', agent: false, headers: { connection: 'close' } },
          (res) => {
            res.resume()
            resolve(res.statusCode ?? 0)
          },
        )
        req.on('error', reject)
        req.end('x')
      })
      assert.equal(post, 405, 'every worker has the reloaded routes')
      const gone = await fresh(`${proxy.url}/extra/x`)
      assert.equal(JSON.parse(gone.body).url, '/extra/x', 'and dropped the unsaved runtime route')
    }
  })

  test('a killed worker is replaced while the other keeps serving', async () => {
    const victim = Number(proxy.logs.find((l) => l.msg === 'locci-proxy listening')!.pid)
    process.kill(victim, 'SIGKILL')
    await proxy.waitForLog((l) => l.msg === 'worker died; starting a replacement', 'the replacement')
    for (let i = 0; i < 10; i++) assert.equal((await fresh(`${proxy.url}/after`)).status, 200)
    await until(
      () => proxy.logs.filter((l) => l.msg === 'locci-proxy listening').length === 3,
      'the new worker listening',
    )
    const text = await (await fetch(`${proxy.controlUrl}/metrics`)).text()
    assert.match(text, /locci_worker_restarts_total 1/)
  })

  test('SIGTERM drains every worker: an in-flight request finishes, exit 0', async () => {
    a.behaviour = { kind: 'delay', ms: 700 }
    b.behaviour = { kind: 'delay', ms: 700 }
    const pending = fresh(`${proxy.url}/slow`)
    await until(
      () => a.seen.length + b.seen.length > 0 && [...a.seen, ...b.seen].some((s) => s.url === '/slow'),
      'the slow request upstream',
    )
    proxy.child.kill('SIGTERM')
    assert.equal((await pending).status, 200)
    assert.equal(await proxy.exited, 0)
    assert.equal(proxy.logs.filter((l) => l.msg === 'stopped').length >= 2, true)
  })
})

test('workers: auto starts one worker per available CPU', async () => {
  const up = await startUpstream('a')
  const proxy = await startProxy(
    `mode: load_balancer\nserver: { bind_address: "127.0.0.1:0", workers: auto }\nupstreams: { u: { servers: ["${up.address}"] } }\nload_balancer: { upstream: u }\n`,
    { waitReady: false },
  )
  try {
    const line = await proxy.waitForLog((l) => l.msg === 'all workers listening', 'workers', 20_000)
    assert.equal(line.workers, availableParallelism())
  } finally {
    await proxy.stop()
    await up.close()
  }
})
