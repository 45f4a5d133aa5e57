// Circuit breakers against real upstreams: a group that keeps answering 503 trips its breaker;
// requests then fail fast (the upstream sees none) or go to the fallback group; after open_secs
// probes go through and close it once the upstream recovers. The state shows in
// GET /api/v1/upstreams and in locci_circuit_breaker_state; every transition is logged. Also:
// concurrent requests in half-open (only half_open_requests get through), a reload while open,
// and TCP pass-through.

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { describe, test } from 'node:test'
import { type RunningProxy, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream'

const CONTROL = `control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: "adm" }\n`

async function upstreamView(p: RunningProxy, name: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${p.controlUrl}/api/v1/upstreams`, { headers: { authorization: 'Bearer adm' } })
  const body = (await res.json()) as { upstreams: Array<Record<string, unknown>> }
  return body.upstreams.find((u) => u.name === name)!
}

async function breakerState(p: RunningProxy, name: string): Promise<string> {
  return ((await upstreamView(p, name)).circuit_breaker as { state: string }).state
}

async function gauge(p: RunningProxy, name: string): Promise<number | undefined> {
  const line = p.logs.find((l) => l.msg === 'locci-proxy listening')!
  const url = `${String(line.ops).replace('0.0.0.0', '127.0.0.1')}/metrics`
  const text = await (await fetch(url)).text()
  const m = new RegExp(`^locci_circuit_breaker_state\\{upstream="${name}"\\} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : undefined
}

async function get(
  p: RunningProxy,
  path: string,
): Promise<{ status: number; body: string; from: string | null }> {
  const res = await fetch(`${p.url}${path}`)
  return { status: res.status, body: await res.text(), from: res.headers.get('x-upstream') }
}

/** A request on a connection of its own, so the workers' turns come round (cluster round robin). */
function fresh(p: RunningProxy, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${p.url}${path}`, { agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => {
          body += c
        })
        res.on('end', () => resolve({ status: res.statusCode!, body }))
      })
      .on('error', reject)
  })
}

const gateway = (
  main: Upstream,
  spare: Upstream,
  breaker: string,
  extraRoutes = '',
  workers = 1,
) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0", ops_bind_address: "127.0.0.1:0", workers: ${workers} }
upstreams:
  main:
    servers: ["${main.address}"]
    retries: 0
    circuit_breaker: ${breaker}
  spare:
    servers: ["${spare.address}"]
api_gateway:
  routes:
    main: { path_pattern: "^/", upstream: main }
${extraRoutes}${CONTROL}`

interface Scene {
  main: Upstream
  spare: Upstream
  proxy: RunningProxy
}

/** `main` answering `status`, `spare` healthy, a proxy with main's `breaker`; all stopped after `f`. */
async function scene(status: number, breaker: string, f: (s: Scene) => Promise<void>, workers = 1) {
  const main = await startUpstream('main')
  const spare = await startUpstream('spare')
  main.behaviour = { kind: 'status', status }
  let proxy: RunningProxy | undefined
  try {
    proxy = await startProxy(gateway(main, spare, breaker, '', workers))
    await f({ main, spare, proxy })
  } finally {
    await proxy?.stop()
    await main.close()
    await spare.close()
  }
}

describe('circuit breaker', () => {
  test('opens on consecutive 503s, fails fast, half-opens after open_secs and closes when the upstream recovers', async () => {
    await scene(
      503,
      '{ consecutive_failures: 3, open_secs: 1, half_open_requests: 2 }',
      async ({ main, proxy }) => {
        assert.equal(await breakerState(proxy, 'main'), 'closed', 'shown from start')
        assert.equal(await gauge(proxy, 'main'), 0)
        assert.equal(await gauge(proxy, 'spare'), undefined, 'no breaker, no series')
        assert.equal((await upstreamView(proxy, 'spare')).circuit_breaker, null)
        for (let i = 0; i < 3; i++) assert.equal((await get(proxy, '/x')).body, 'main says 503')
        const opened = await proxy.waitForLog((l) => l.msg === 'circuit breaker opened', 'the open line')
        assert.equal(opened.level, 'warn')
        assert.equal(opened.upstream, 'main')
        assert.equal(opened.reason, 'consecutive_failures')

        for (let i = 0; i < 5; i++) {
          const r = await get(proxy, '/x')
          assert.equal(r.status, 503)
          assert.equal(r.body, '503 upstream circuit breaker open\n')
        }
        assert.equal(main.seen.length, 3, 'nothing reached the upstream while open')
        const view = await upstreamView(proxy, 'main')
        assert.equal((view.circuit_breaker as { state: string }).state, 'open')
        assert.match(String((view.circuit_breaker as { opened_at: string }).opened_at), /^\d{4}-/)
        assert.equal(await gauge(proxy, 'main'), 1)
        const refused = await proxy.waitForLog(
          (l) => l.msg === 'upstream error' && l.error_type === 'circuit_open',
          'the refusal line',
        )
        assert.equal(refused.upstream, 'main')

        main.behaviour = { kind: 'ok' }
        await until(async () => (await breakerState(proxy, 'main')) === 'half_open', 'half-open', 10_000)
        assert.equal(await gauge(proxy, 'main'), 2)
        await proxy.waitForLog(
          (l) => l.msg?.startsWith('circuit breaker half-open') === true,
          'half-open line',
        )
        assert.equal((await get(proxy, '/x')).status, 200)
        assert.equal(await breakerState(proxy, 'main'), 'half_open', 'one probe of two succeeded')
        assert.equal((await get(proxy, '/x')).status, 200)
        assert.equal(await breakerState(proxy, 'main'), 'closed')
        assert.equal(await gauge(proxy, 'main'), 0)
        const closed = await proxy.waitForLog(
          (l) => l.msg?.startsWith('circuit breaker closed') === true,
          'close',
        )
        assert.equal(closed.level, 'info')
        for (let i = 0; i < 5; i++) assert.equal((await get(proxy, '/x')).status, 200)
      },
    )
  })

  test('while open the fallback group serves; a failed probe reopens', async () => {
    await scene(
      500,
      '{ consecutive_failures: 2, open_secs: 1, half_open_requests: 1, fallback: spare }',
      async ({ main, spare, proxy }) => {
        for (let i = 0; i < 2; i++) assert.equal((await get(proxy, '/x')).status, 500)
        for (let i = 0; i < 4; i++) {
          const r = await get(proxy, '/x')
          assert.equal(r.status, 200)
          assert.equal(r.from, 'spare')
        }
        assert.equal(main.seen.length, 2)
        assert.equal(spare.seen.length, 4)
        // The access line names the group that served.
        await until(
          () => proxy.logs.filter((l) => l.msg === 'request' && l.upstream === 'spare').length === 4,
          'four access lines naming spare',
        )
        assert.equal(
          ((await upstreamView(proxy, 'main')).circuit_breaker as { fallback: string }).fallback,
          'spare',
        )
        // Still failing when half-open: the one probe fails and it opens again.
        await until(async () => (await breakerState(proxy, 'main')) === 'half_open', 'half-open', 10_000)
        assert.equal((await get(proxy, '/x')).status, 500)
        await proxy.waitForLog((l) => l.msg === 'circuit breaker reopened: a probe failed', 'the reopen')
        assert.equal((await get(proxy, '/x')).from, 'spare')
        assert.equal(main.seen.length, 3)
      },
    )
  })

  test('concurrent requests in half-open: only half_open_requests reach the upstream', async () => {
    await scene(
      503,
      '{ consecutive_failures: 1, open_secs: 1, half_open_requests: 2 }',
      async ({ main, proxy }) => {
        assert.equal((await get(proxy, '/x')).status, 503)
        await until(async () => (await breakerState(proxy, 'main')) === 'half_open', 'half-open', 10_000)
        // Answers that never come keep both probes out while the others arrive.
        main.behaviour = { kind: 'delay', ms: 60_000 }
        const abort = new AbortController()
        const results: Array<{ status: number; body: string }> = []
        for (let i = 0; i < 10; i++) {
          fetch(`${proxy.url}/x`, { signal: abort.signal }).then(
            async (r) => results.push({ status: r.status, body: await r.text() }),
            () => {},
          )
        }
        await until(
          () => results.length === 8 && main.seen.length === 3,
          'eight answers, two probes upstream',
        )
        assert.ok(results.every((r) => r.body === '503 upstream circuit breaker open\n'))
        assert.equal(await breakerState(proxy, 'main'), 'half_open')
        abort.abort()
        // Their verdict never comes (the clients left): after open_secs a new round goes through.
        main.behaviour = { kind: 'ok' }
        await until(async () => (await get(proxy, '/x')).status === 200, 'a probe of the next round')
        assert.equal((await get(proxy, '/x')).status, 200)
        assert.equal(await breakerState(proxy, 'main'), 'closed')
      },
    )
  })

  for (const workers of [1, 2]) {
    test(`a reload that keeps the breaker settings keeps it open; one that changes them starts closed (workers: ${workers})`, async () => {
      const breaker = '{ consecutive_failures: 1, open_secs: 60 }'
      await scene(
        503,
        breaker,
        async ({ main, spare, proxy }) => {
          assert.equal((await get(proxy, '/x')).status, 503)
          await until(async () => (await breakerState(proxy, 'main')) === 'open', 'open')
          // The primary listens for SIGHUP once every worker is up (cli/main.ts).
          if (workers > 1) await proxy.waitForLog((l) => l.msg === 'all workers listening', 'all workers')
          writeFileSync(
            proxy.configFile,
            gateway(main, spare, breaker, '    s: { path_pattern: "^/spare", upstream: spare }\n', workers),
          )
          proxy.child.kill('SIGHUP')
          await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the first reload')
          assert.equal((await get(proxy, '/spare')).from, 'spare', 'the new route is live')
          assert.equal((await get(proxy, '/x')).body, '503 upstream circuit breaker open\n')
          assert.equal(await breakerState(proxy, 'main'), 'open')
          assert.equal(main.seen.length, 1)

          main.behaviour = { kind: 'ok' }
          writeFileSync(
            proxy.configFile,
            gateway(main, spare, '{ consecutive_failures: 2, open_secs: 60 }', '', workers),
          )
          proxy.child.kill('SIGHUP')
          await until(
            () => proxy.logs.filter((l) => l.msg === 'config reloaded').length === 2,
            'the second reload',
          )
          assert.equal(await breakerState(proxy, 'main'), 'closed')
          assert.equal((await get(proxy, '/x')).status, 200)
        },
        workers,
      )
    })
  }

  test('TCP pass-through: connections are refused while open, logged as circuit_open', async () => {
    // A port nothing listens on: every connect fails.
    const port = await closedPort()
    const proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  db:
    servers: ["127.0.0.1:${port}"]
    retries: 0
    circuit_breaker: { consecutive_failures: 2, open_secs: 60 }
load_balancer: { upstream: db, protocol: tcp }
`)
    try {
      const connectOnce = () =>
        new Promise<void>((resolve) => {
          const s = net.connect(proxy.port, '127.0.0.1')
          s.on('error', () => resolve())
          s.on('close', () => resolve())
        })
      for (let i = 0; i < 3; i++) await connectOnce()
      const lines = await until(() => {
        const c = proxy.logs.filter((l) => l.msg === 'connection')
        return c.length === 3 ? c : undefined
      }, 'three connection lines')
      assert.deepEqual(
        lines.map((l) => l.error_type),
        ['connect_failed', 'connect_failed', 'circuit_open'],
      )
      await proxy.waitForLog((l) => l.msg === 'circuit breaker opened', 'the open line')
    } finally {
      await proxy.stop()
    }
  })

  test('workers: one state for the instance, held by the primary', async () => {
    await scene(
      503,
      '{ consecutive_failures: 4, open_secs: 1, half_open_requests: 1 }',
      async ({ main, proxy }) => {
        // Outcomes reach the primary in batches: a few more requests may pass before it opens.
        await until(
          async () => (await fresh(proxy, '/x')).body === '503 upstream circuit breaker open\n',
          'open',
        )
        // The primary's line may reach this test after a worker's 503 (another pipe): wait for it.
        const opened = () => proxy.logs.filter((l) => l.msg === 'circuit breaker opened').length
        await until(() => opened() > 0, 'the transition logged')
        assert.equal(opened(), 1, 'one breaker tripped, not one per worker')
        const seen = main.seen.length
        // Every worker refuses now (ten fresh connections go round both).
        for (let i = 0; i < 10; i++) {
          assert.equal((await fresh(proxy, '/x')).body, '503 upstream circuit breaker open\n')
        }
        assert.equal(main.seen.length, seen, 'no worker sent anything while open')
        assert.equal(opened(), 1, 'still one breaker tripped')
        assert.equal(await breakerState(proxy, 'main'), 'open')
        assert.equal(await gauge(proxy, 'main'), 1)

        main.behaviour = { kind: 'ok' }
        // Half-open: a worker asks the primary for the one probe slot; the probe closes it.
        await until(async () => (await fresh(proxy, '/x')).status === 200, 'a probe through')
        // The gauge is the highest of the workers' states: 0 once every worker heard of the close.
        await until(async () => (await gauge(proxy, 'main')) === 0, 'closed in every worker')
        assert.equal(await breakerState(proxy, 'main'), 'closed')
        for (let i = 0; i < 10; i++) assert.equal((await fresh(proxy, '/x')).status, 200)
        assert.equal(proxy.logs.filter((l) => l.msg?.startsWith('circuit breaker closed') === true).length, 1)
      },
      2,
    )
  })
})
