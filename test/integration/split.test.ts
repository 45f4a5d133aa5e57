// Weighted splits and sticky sessions against real upstreams through the real binary: a 95/5
// canary over 1,000 requests, a ramp through the control API and the CLI without a reload,
// a client kept on its group and on its server, moved when that server dies, and the ramp
// reaching every worker.

import assert from 'node:assert/strict'
import http from 'node:http'
import { after, before, describe, test } from 'node:test'
import { type RunningProxy, runCli, startProxy, startWorkers } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

interface Answer {
  status: number
  server: string | undefined
  setCookie: string[]
  body: string
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 8 })

function get(
  url: string,
  headers: Record<string, string> = {},
  agent: http.Agent | false = keepAlive,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      url,
      { agent, headers: agent === false ? { connection: 'close', ...headers } : headers },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          body += d
        })
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            server: res.headers['x-upstream'] as string | undefined,
            setCookie: res.headers['set-cookie'] ?? [],
            body,
          }),
        )
      },
    )
    req.on('error', reject)
  })
}

/** `n` requests, 8 at a time; how many each server answered. */
async function tally(
  url: string,
  n: number,
  agent: http.Agent | false = keepAlive,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  let next = 0
  const worker = async () => {
    while (next < n) {
      next++
      const r = await get(url, {}, agent)
      assert.equal(r.status, 200, r.body)
      counts[r.server!] = (counts[r.server!] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker))
  return counts
}

/** The control API's answer: the change made, or why not. */
interface PatchAnswer {
  change: string
  error: string
  problems: string[]
}

async function patch(
  controlUrl: string,
  route: string,
  body: unknown,
): Promise<{ status: number; json: PatchAnswer }> {
  const res = await fetch(`${controlUrl}/api/v1/routes/${route}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : {} }
}

/** Within ±3 % (of all requests) of the share the weights give. */
function near(count: number | undefined, n: number, share: number, what: string): void {
  const got = (count ?? 0) / n
  assert.ok(Math.abs(got - share) <= 0.03, `${what}: ${(got * 100).toFixed(1)} % instead of ${share * 100} %`)
}

const cookiePair = (setCookie: string) => setCookie.slice(0, setCookie.indexOf(';'))

describe('weighted split and sticky sessions', () => {
  let v1: Upstream
  let v2: Upstream
  const web: Upstream[] = []
  let proxy: RunningProxy
  before(async () => {
    v1 = await startUpstream('v1')
    v2 = await startUpstream('v2')
    for (const n of ['w1', 'w2', 'w3']) web.push(await startUpstream(n))
    proxy = await startProxy(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  v1: { servers: ["${v1.address}"] }
  v2: { servers: ["${v2.address}"] }
  web:
    servers: [${web.map((w) => `"${w.address}"`).join(', ')}]
    health_check: { interval_secs: 0.2, timeout_secs: 1, path: /health }
    sticky: { cookie: srv, ttl_secs: 3600 }
api_gateway:
  routes:
    canary: { path_pattern: "^/canary", upstreams: [{name: v1, weight: 95}, {name: v2, weight: 5}] }
    cli: { path_pattern: "^/cli", upstream: v1 }
    pinned:
      path_pattern: "^/pinned"
      upstreams: [{name: v1, weight: 50}, {name: v2, weight: 50}]
      sticky: { cookie: grp }
    web: { path_pattern: "^/web", upstream: web }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`)
  })
  after(async () => {
    keepAlive.destroy()
    await proxy.stop()
    for (const u of [v1, v2, ...web]) await u.close()
  })

  test('a 95/5 canary over 1,000 requests; the access log and metrics name the group that served', async () => {
    const n = 1000
    const counts = await tally(`${proxy.url}/canary`, n)
    near(counts.v2, n, 0.05, 'v2')
    near(counts.v1, n, 0.95, 'v1')
    const lines = await until(() => {
      const l = proxy.logs.filter((x) => x.msg === 'request' && x.route === 'canary')
      return l.length === n ? l : undefined
    }, 'an access line per request')
    assert.equal(lines.filter((l) => l.upstream === 'v2').length, counts.v2)
    const metrics = await (await fetch(`${proxy.controlUrl}/metrics`)).text()
    const series = (g: string) =>
      Number(
        new RegExp(
          `locci_requests_total\\{mode="api_gateway",route="canary",upstream="${g}",status="200"\\} (\\d+)`,
        ).exec(metrics)?.[1],
      )
    assert.equal(series('v1'), counts.v1)
    assert.equal(series('v2'), counts.v2)
  })

  test('PATCH ramps the canary to 50/50 then 0/100 without a reload', async () => {
    const r = await patch(proxy.controlUrl!, 'canary', {
      upstreams: [
        { name: 'v1', weight: 50 },
        { name: 'v2', weight: 50 },
      ],
    })
    assert.equal(r.status, 200, JSON.stringify(r.json))
    assert.match(r.json.change, /set the weights of route canary: v1 50, v2 50/)
    const half = await tally(`${proxy.url}/canary`, 1000)
    near(half.v1, 1000, 0.5, 'v1 at 50/50')
    near(half.v2, 1000, 0.5, 'v2 at 50/50')
    assert.equal(
      (
        await patch(proxy.controlUrl!, 'canary', {
          upstreams: [
            { name: 'v1', weight: 0 },
            { name: 'v2', weight: 100 },
          ],
        })
      ).status,
      200,
    )
    assert.deepEqual(await tally(`${proxy.url}/canary`, 200), { v2: 200 })
    const routes = (await (await fetch(`${proxy.controlUrl}/api/v1/routes`)).json()) as {
      routes: Array<Record<string, unknown>>
    }
    assert.deepEqual(routes.routes.find((x) => x.name === 'canary')!.upstreams, [
      { name: 'v1', weight: 0 },
      { name: 'v2', weight: 100 },
    ])
  })

  test('a PATCH is validated like the file: refused with located problems, the live weights stay', async () => {
    const unknown = await patch(proxy.controlUrl!, 'canary', {
      upstreams: [
        { name: 'v1', weight: 1 },
        { name: 'v9', weight: 1 },
      ],
    })
    assert.equal(unknown.status, 400)
    assert.match(unknown.json.error, /was not made: the config would be invalid/)
    assert.ok(
      unknown.json.problems.some((p: string) =>
        /api_gateway\.routes\.canary\.upstreams\[1\]\.name: upstream "v9" is not defined/.test(p),
      ),
      unknown.json.problems.join('\n'),
    )
    const zero = await patch(proxy.controlUrl!, 'canary', { upstreams: [{ name: 'v1', weight: 0 }] })
    assert.equal(zero.status, 400)
    assert.ok(zero.json.problems.some((p: string) => /needs at least one weight above 0/.test(p)))
    const negative = await patch(proxy.controlUrl!, 'canary', { upstreams: [{ name: 'v1', weight: -5 }] })
    assert.equal(negative.status, 400)
    assert.ok(negative.json.problems.some((p: string) => /canary\.upstreams\[0\]\.weight/.test(p)))
    assert.equal(
      (await patch(proxy.controlUrl!, 'nope', { upstreams: [{ name: 'v1', weight: 1 }] })).status,
      404,
    )
    const extra = await patch(proxy.controlUrl!, 'canary', {
      upstreams: [{ name: 'v1', weight: 1 }],
      path_pattern: '^/',
    })
    assert.equal(extra.status, 400)
    assert.match(extra.json.error, /only "upstreams" can be changed here/)
    for (const bad of [
      '{',
      '[]',
      '"x"',
      '{"upstreams": "v1=1"}',
      '{"upstreams": [null]}',
      '{"upstreams": []}',
    ]) {
      const r = await patch(proxy.controlUrl!, 'canary', bad)
      assert.equal(r.status, 400, `${bad}: ${JSON.stringify(r.json)}`)
    }
    assert.deepEqual(await tally(`${proxy.url}/canary`, 50), { v2: 50 }, 'the last good weights still hold')
  })

  test('set-weights: the CLI round trip, and its refusals', async () => {
    const cli = (...args: string[]) =>
      runCli(['-c', proxy.configFile, '--control-url', proxy.controlUrl!, ...args])
    const ok = cli('set-weights', 'cli', 'v1=90', 'v2=10')
    assert.equal(ok.status, 0, ok.stderr)
    assert.match(ok.stdout, /set the weights of route cli: v1 90, v2 10 \(not saved/)
    const counts = await tally(`${proxy.url}/cli`, 1000)
    near(counts.v2, 1000, 0.1, 'v2 after set-weights')
    const json = JSON.parse(cli('set-weights', 'cli', 'v1=0', 'v2=1', '--json').stdout)
    assert.match(json.change, /v1 0, v2 1/)
    assert.deepEqual(await tally(`${proxy.url}/cli`, 20), { v2: 20 })
    const malformed = cli('set-weights', 'cli', 'v1')
    assert.equal(malformed.status, 1)
    assert.match(malformed.stderr, /"v1" is not group=weight/)
    const unknown = cli('set-weights', 'cli', 'v1=1', 'nope=1')
    assert.equal(unknown.status, 1)
    assert.match(unknown.stderr, /\(400\)\n.*upstreams\[1\]\.name: upstream "nope" is not defined/)
    assert.equal(cli('set-weights', 'missing', 'v1=1').status, 1)
  })

  test('sticky by cookie on a split: the client stays on the group it first got', async () => {
    const first = await get(`${proxy.url}/pinned`)
    assert.equal(first.setCookie.length, 1)
    assert.match(first.setCookie[0]!, /^grp=[0-9a-f]{16}; Path=\/; HttpOnly; SameSite=Lax$/)
    const cookie = cookiePair(first.setCookie[0]!)
    for (let i = 0; i < 100; i++) {
      const r = await get(`${proxy.url}/pinned`, { cookie })
      assert.equal(r.server, first.server)
      assert.deepEqual(r.setCookie, [], 'nothing to set again')
    }
    const forged = await get(`${proxy.url}/pinned`, { cookie: `grp=${'f'.repeat(16)}` })
    assert.equal(forged.status, 200)
    assert.equal(forged.setCookie.length, 1, 'a forged cookie is replaced')
  })

  test('a sticky server keeps its client across 100 requests, and loses it when it dies', async () => {
    const first = await get(`${proxy.url}/web`)
    assert.equal(first.setCookie.length, 1)
    assert.match(first.setCookie[0]!, /^srv=[0-9a-f]{16}; Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/)
    assert.ok(!first.setCookie[0]!.includes('127.0.0.1'))
    const cookie = cookiePair(first.setCookie[0]!)
    for (let i = 0; i < 100; i++) {
      const r = await get(`${proxy.url}/web`, { cookie })
      assert.equal(r.server, first.server)
      assert.deepEqual(r.setCookie, [])
    }
    for (const hostile of [
      `srv=${'a'.repeat(16)}`,
      `srv=${'x'.repeat(8000)}`,
      `${'k=v; '.repeat(500)}srv=%00`,
    ]) {
      const r = await get(`${proxy.url}/web`, { cookie: hostile })
      assert.equal(r.status, 200)
      assert.equal(r.setCookie.length, 1)
    }
    const dead = web.find((w) => w.name === first.server)!
    await dead.close()
    const moved = await until(async () => {
      const r = await get(`${proxy.url}/web`, { cookie })
      return r.status === 200 && r.server !== first.server && r.setCookie.length === 1 ? r : undefined
    }, 'the client to move off the dead server, with a new cookie')
    const next = cookiePair(moved.setCookie[0]!)
    assert.notEqual(next, cookie)
    for (let i = 0; i < 20; i++)
      assert.equal((await get(`${proxy.url}/web`, { cookie: next })).server, moved.server)
    assert.ok(!proxy.child.killed && proxy.child.exitCode === null, 'the proxy is still running')
  })
})

describe('weighted split with workers: 2', () => {
  let v1: Upstream
  let v2: Upstream
  let proxy: RunningProxy
  before(async () => {
    v1 = await startUpstream('v1')
    v2 = await startUpstream('v2')
    proxy = await startWorkers(
      `mode: api_gateway
server: { bind_address: "127.0.0.1:0", workers: 2 }
upstreams:
  v1: { servers: ["${v1.address}"] }
  v2: { servers: ["${v2.address}"] }
api_gateway:
  routes:
    canary: { path_pattern: "^/", upstreams: [{name: v1, weight: 95}, {name: v2, weight: 5}] }
control_api: { enabled: true, bind_address: "127.0.0.1:0" }
`,
    )
  })
  after(async () => {
    await proxy.stop()
    await v1.close()
    await v2.close()
  })

  test('a PATCH reaches every worker before it is answered', async () => {
    near((await tally(`${proxy.url}/`, 400, false)).v2, 400, 0.05, 'v2 before')
    const r = await patch(proxy.controlUrl!, 'canary', {
      upstreams: [
        { name: 'v1', weight: 0 },
        { name: 'v2', weight: 1 },
      ],
    })
    assert.equal(r.status, 200, JSON.stringify(r.json))
    // Fresh connections, so the kernel hands them to either worker; every one must be on v2.
    const before = proxy.logs.length
    assert.deepEqual(await tally(`${proxy.url}/`, 200, false), { v2: 200 })
    const pids = new Set(
      proxy.logs
        .slice(before)
        .filter((l) => l.msg === 'request')
        .map((l) => l.pid),
    )
    assert.equal(pids.size, 2, 'both workers answered after the change')
    const half = await patch(proxy.controlUrl!, 'canary', {
      upstreams: [
        { name: 'v1', weight: 1 },
        { name: 'v2', weight: 1 },
      ],
    })
    assert.equal(half.status, 200)
    const counts = await tally(`${proxy.url}/`, 1000, false)
    near(counts.v1, 1000, 0.5, 'v1 at 50/50 across workers')
  })
})

describe('weighted split in load_balancer mode', () => {
  let v1: Upstream
  let v2: Upstream
  let proxy: RunningProxy
  before(async () => {
    v1 = await startUpstream('v1')
    v2 = await startUpstream('v2')
    proxy = await startProxy(`mode: load_balancer
server: { bind_address: "127.0.0.1:0", trusted_proxies: ["127.0.0.1/32"] }
upstreams:
  v1: { servers: ["${v1.address}"] }
  v2:
    servers: ["${v2.address}"]
    health_check: { interval_secs: 0.2, timeout_secs: 1, path: /health }
load_balancer:
  upstreams: [{name: v1, weight: 1}, {name: v2, weight: 1}]
  sticky: { client_ip: true }
`)
  })
  after(async () => {
    await proxy.stop()
    await v1.close()
    await v2.close()
  })

  /** The group each of 40 client addresses (X-Forwarded-For, trusted here) lands on. */
  const groupsOf = async () => {
    const out: string[] = []
    for (let i = 1; i <= 40; i++)
      out.push((await get(`${proxy.url}/p`, { 'x-forwarded-for': `198.51.100.${i}` })).server!)
    return out
  }

  test('sticky by client address: each client keeps its group; the clients share both', async () => {
    const first = await groupsOf()
    assert.deepEqual(await groupsOf(), first)
    assert.ok(first.includes('v1') && first.includes('v2'), first.join(' '))
  })

  test("a group with no server in rotation passes its share to the split's other group", async () => {
    v2.health = 'fail'
    try {
      await until(async () => (await groupsOf()).every((g) => g === 'v1'), 'every client on v1')
      const r = await get(`${proxy.url}/p`, { 'x-forwarded-for': '198.51.100.7' })
      assert.equal(r.status, 200)
    } finally {
      v2.health = 'ok'
    }
    await until(async () => (await groupsOf()).includes('v2'), 'v2 back in rotation, with its clients')
  })
})
