// server.ops_bind_address as Kubernetes, Docker and Prometheus use it: /healthz, /readyz and
// /metrics with no key; /readyz turning 503 while the proxy drains after SIGTERM and while a
// health-checked group has no healthy server; the same with workers sharing the port; and a
// reload adding, moving and removing the listener.

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { describe, type TestContext, test } from 'node:test'
import type { RunningProxy } from '../helpers/proxy'
import { startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

interface Answer {
  status: number
  headers: Headers
  text: string
  // biome-ignore lint/suspicious/noExplicitAny: JSON from the probe, asserted field by field
  json: any
}

async function get(url: string, init: RequestInit = {}): Promise<Answer> {
  const r = await fetch(url, init)
  const text = await r.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: r.status, headers: r.headers, text, json }
}

/** The ops URL from the listening line. */
function opsUrl(proxy: RunningProxy): string {
  const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')
  assert.equal(typeof line?.ops, 'string', 'the listening line names the ops listener')
  return `http://127.0.0.1:${new URL(String(line!.ops)).port}`
}

/** An upstream closed when the test ends, whether or not the proxy started. */
async function upstream(t: TestContext, name: string): Promise<Upstream> {
  const up = await startUpstream(name)
  t.after(() => up.close())
  return up
}

const KEY = 'ops-test-key'

function gateway(checked: Upstream[], unchecked: string, extra = '') {
  return `mode: api_gateway
server: { bind_address: "127.0.0.1:0", ops_bind_address: "127.0.0.1:0", shutdown_timeout_secs: 20${extra} }
upstreams:
  api:
    servers: [${checked.map((u) => `"${u.address}"`).join(', ')}]
    health_check: { interval_secs: 0.2, timeout_secs: 1, path: /health }
  legacy:
    servers: ["${unchecked}"]
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: api }
    legacy: { path_pattern: "^/legacy", upstream: legacy }
control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: "${KEY}" }
`
}

describe('ops listener', () => {
  test('healthz, readyz and metrics answer without a key; the control API keeps its own', async (t) => {
    const a = await upstream(t, 'a')
    const proxy = await startProxy(gateway([a], `127.0.0.1:${await closedPort()}`))
    try {
      const ops = opsUrl(proxy)
      assert.equal((await fetch(`${proxy.url}/api/x`)).status, 200)
      assert.equal((await fetch(`${proxy.url}/api/y`)).status, 200)

      const health = await get(`${ops}/healthz`)
      assert.equal(health.status, 200)
      assert.deepEqual(health.json, { status: 'ok' })

      // The unchecked group's only server is down; readiness looks at checked groups only.
      const ready = await get(`${ops}/readyz`)
      assert.equal(ready.status, 200, ready.text)
      assert.equal(ready.json.status, 'ready')
      assert.deepEqual(ready.json.upstreams, [{ name: 'api', healthy: 1, servers: 1 }])
      assert.equal(ready.headers.get('cache-control'), 'no-store')

      const metrics = await get(`${ops}/metrics`)
      assert.equal(metrics.status, 200)
      assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/)
      assert.match(metrics.text, /locci_requests_total\{[^}]*route="api"[^}]*\} 2/)
      // The same series as the control API's /metrics, which still needs the key.
      const control = await get(`${proxy.controlUrl}/metrics`, {
        headers: { authorization: `Bearer ${KEY}` },
      })
      assert.match(control.text, /locci_requests_total\{[^}]*route="api"[^}]*\} 2/)
      assert.equal((await get(`${proxy.controlUrl}/metrics`)).status, 401)
      assert.equal((await get(`${proxy.controlUrl}/healthz`)).status, 200)

      // Nothing on the ops port changes anything, and it serves nothing else.
      assert.equal((await get(`${ops}/api/v1/reload`, { method: 'POST' })).status, 404)
      const post = await get(`${ops}/readyz`, { method: 'POST' })
      assert.equal(post.status, 405)
      assert.equal(post.headers.get('allow'), 'GET, HEAD')
      const head = await fetch(`${ops}/readyz`, { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(await head.text(), '')
    } finally {
      await proxy.stop()
    }
  })

  test('readyz is 503 while every server of a health-checked group is down, 200 once one is back', async (t) => {
    const a = await upstream(t, 'a')
    const b = await upstream(t, 'b')
    const proxy = await startProxy(gateway([a, b], a.address))
    try {
      const ops = opsUrl(proxy)
      a.health = 'fail'
      await until(
        async () => (await get(`${ops}/readyz`)).json.upstreams[0].healthy === 1,
        'one server out of rotation',
      )
      assert.equal((await get(`${ops}/readyz`)).status, 200, 'one healthy server is enough')
      b.health = 'fail'
      const down = await until(async () => {
        const r = await get(`${ops}/readyz`)
        return r.status === 503 && r
      }, 'readyz to turn 503')
      assert.equal(down.json.status, 'no_healthy_upstream')
      assert.equal(down.json.reason, 'no healthy server in upstream group api')
      assert.deepEqual(down.json.upstreams, [{ name: 'api', healthy: 0, servers: 2 }])
      assert.equal((await get(`${ops}/healthz`)).status, 200, 'the process is still alive')
      b.health = 'ok'
      await until(async () => (await get(`${ops}/readyz`)).status === 200, 'readyz back to 200')
    } finally {
      await proxy.stop()
    }
  })

  test('readyz is 503 while draining after SIGTERM; healthz and metrics answer until the exit', async (t) => {
    const slow = await upstream(t, 'slow')
    // Long enough that a loaded machine still finds the proxy draining.
    slow.behaviour = { kind: 'delay', ms: 8000 }
    const proxy = await startProxy(gateway([slow], slow.address))
    try {
      const ops = opsUrl(proxy)
      assert.equal((await get(`${ops}/readyz`)).status, 200)
      const inFlight = fetch(`${proxy.url}/api/slow`)
      await until(() => slow.seen.length === 1, 'the slow request to reach the upstream')
      proxy.child.kill('SIGTERM')
      const draining = await until(async () => {
        const r = await get(`${ops}/readyz`)
        return r.status === 503 && r
      }, 'readyz to turn 503 while draining')
      assert.equal(draining.json.status, 'draining')
      assert.match(draining.json.reason, /shutting down/)
      assert.equal((await get(`${ops}/healthz`)).status, 200)
      assert.equal((await get(`${ops}/metrics`)).status, 200)
      assert.equal((await inFlight).status, 200, 'the in-flight request finishes')
      assert.equal(await proxy.exited, 0)
      await assert.rejects(fetch(`${ops}/healthz`), 'the ops listener closes at exit')
    } finally {
      await proxy.stop()
    }
  })

  test('a reload adds, moves and removes the ops listener', async (t) => {
    const a = await upstream(t, 'a')
    const base = gateway([a], a.address).replace(', ops_bind_address: "127.0.0.1:0"', '')
    const proxy = await startProxy(base)
    const reload = async (yaml: string) => {
      writeFileSync(proxy.configFile, yaml)
      const r = await get(`${proxy.controlUrl}/api/v1/reload`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}` },
      })
      assert.equal(r.status, 200, r.text)
      assert.equal(r.json.result, 'success')
    }
    try {
      const first = await closedPort()
      const withOps = (port: number) =>
        base.replace(
          'bind_address: "127.0.0.1:0",',
          `bind_address: "127.0.0.1:0", ops_bind_address: "127.0.0.1:${port}",`,
        )
      await reload(withOps(first))
      assert.equal((await get(`http://127.0.0.1:${first}/readyz`)).status, 200, 'added')

      const second = await closedPort()
      await reload(withOps(second))
      assert.equal((await get(`http://127.0.0.1:${second}/readyz`)).status, 200, 'moved')
      await until(
        () =>
          fetch(`http://127.0.0.1:${first}/healthz`).then(
            () => false,
            () => true,
          ),
        'the old ops port to close',
      )

      await reload(base)
      await until(
        () =>
          fetch(`http://127.0.0.1:${second}/healthz`).then(
            () => false,
            () => true,
          ),
        'the ops port to close when the key is removed',
      )
      assert.equal((await fetch(`${proxy.url}/api/x`)).status, 200, 'the proxy still serves')
    } finally {
      await proxy.stop()
    }
  })
})

describe('ops listener with workers: 2', () => {
  test('the workers share the ops port: metrics are summed, readyz drains', {
    timeout: 90_000,
  }, async (t) => {
    const slow = await upstream(t, 'slow')
    // Forking two workers on a loaded machine can take longer than startProxy waits.
    const proxy = await startProxy(gateway([slow], slow.address, ', workers: 2'), { waitReady: false })
    try {
      await proxy.waitForLog((l) => l.msg === 'all workers listening', 'workers', 40_000)
      // A worker's own line goes through its log buffer: it may come after the primary's.
      await proxy.waitForLog((l) => l.msg === 'locci-proxy listening', 'a worker listening line')
      const ops = opsUrl(proxy)
      const line = proxy.logs.find((l) => l.msg === 'locci-proxy listening')
      const url = `http://127.0.0.1:${new URL(String(line?.bind)).port}`
      for (let i = 0; i < 20; i++) {
        // A new connection each time, so the requests spread over both workers.
        const r = await fetch(`${url}/api/${i}`, { headers: { connection: 'close' } })
        assert.equal(r.status, 200)
        await r.text()
      }
      // Every worker's count, summed, whichever worker answers the scrape.
      for (let i = 0; i < 4; i++) {
        const m = await get(`${ops}/metrics`, { headers: { connection: 'close' } })
        assert.match(m.text, /locci_requests_total\{[^}]*route="api"[^}]*\} 20\n/)
      }
      assert.equal((await get(`${ops}/readyz`)).status, 200)

      slow.behaviour = { kind: 'delay', ms: 12_000 }
      const inFlight = fetch(`${url}/api/slow`)
      await until(() => slow.seen.length === 21, 'the slow request to reach the upstream')
      proxy.child.kill('SIGTERM')
      // The idle worker exits at once; the busy one drains and says so until its request is done.
      const draining = await until(async () => {
        const r = await get(`${ops}/readyz`, { headers: { connection: 'close' } }).catch(() => undefined)
        return r?.status === 503 && r
      }, 'readyz to turn 503 while draining')
      assert.equal(draining.json.status, 'draining')
      assert.equal((await inFlight).status, 200)
      assert.equal(await proxy.exited, 0)
    } finally {
      await proxy.stop()
    }
  })
})
