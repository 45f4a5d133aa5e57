// The control API and reload as an operator uses them: runtime route and server changes
// validated exactly like the file (400/404/409), persisted atomically or reported as unsaved,
// SIGHUP and POST /api/v1/reload (good and bad files, under load, rebinding), metrics that
// promtool accepts, and the admin CLI.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ROOT, type RunningProxy, runCli, startProxy } from '../helpers/proxy'
import { until } from '../helpers/until'
import { startUpstream, type Upstream } from '../helpers/upstream'

// biome-ignore lint/suspicious/noExplicitAny: JSON from the API, asserted field by field
type Json = any

const config = (
  a: Upstream,
  b: Upstream,
  extra = '',
) => `# the team's gateway config (this comment must survive runtime changes)
mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api:
    servers: ["${a.address}"]
  other:
    servers: ["${b.address}"]
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: api }
control_api:
  enabled: true
  bind_address: "127.0.0.1:0"
  api_key: "adm"
${extra}`

async function api(p: RunningProxy, method: string, url: string, body?: unknown, key = 'adm') {
  const res = await fetch(`${p.controlUrl}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, json: (text ? JSON.parse(text) : undefined) as Json }
}

const serverOf = async (p: RunningProxy, url: string) => {
  const r = await fetch(`${p.url}${url}`)
  const t = await r.text()
  return r.status === 200 ? JSON.parse(t).server : r.status
}

describe('runtime changes through the control API', () => {
  let a: Upstream
  let b: Upstream
  let proxy: RunningProxy
  before(async () => {
    a = await startUpstream('a')
    b = await startUpstream('b')
    proxy = await startProxy(config(a, b))
  })
  after(async () => {
    await proxy.stop()
    await a.close()
    await b.close()
  })

  test('routes: add (201), the next request uses it, taken name 409, invalid 400 with the file’s messages, delete 204/404', async () => {
    assert.equal(await serverOf(proxy, '/other/x'), 404)
    const added = await api(proxy, 'POST', '/api/v1/routes', {
      name: 'other',
      path_pattern: '^/other',
      upstream: 'other',
      strip_prefix: true,
    })
    assert.equal(added.status, 201)
    assert.equal(added.json.saved, false)
    assert.equal(await serverOf(proxy, '/other/x'), 'b')
    assert.equal(
      (await api(proxy, 'POST', '/api/v1/routes', { name: 'other', path_pattern: '^/o', upstream: 'other' }))
        .status,
      409,
    )
    const bad = await api(proxy, 'POST', '/api/v1/routes', {
      name: 'bad',
      path_pattern: '^/(',
      upstream: 'nope',
    })
    assert.equal(bad.status, 400)
    assert.ok(
      bad.json.problems.some((p: string) =>
        p.includes('api_gateway.routes.bad.path_pattern: regular expression does not compile'),
      ),
    )
    assert.ok(
      bad.json.problems.some((p: string) => p.includes('upstream "nope" is not defined under upstreams')),
    )
    assert.equal(
      (
        await api(proxy, 'POST', '/api/v1/routes', {
          name: 'x',
          path_pattern: '^/x',
          upstream: 'api',
          colour: 'red',
        })
      ).status,
      400,
    )
    assert.equal((await api(proxy, 'POST', '/api/v1/routes', 'not an object')).status, 400)
    assert.equal((await api(proxy, 'DELETE', '/api/v1/routes/other')).status, 204)
    assert.equal(await serverOf(proxy, '/other/x'), 404)
    assert.equal((await api(proxy, 'DELETE', '/api/v1/routes/other')).status, 404)
  })

  test('upstreams: new group, more servers, duplicates 409, remove a server 204, unknown 404, last server 400', async () => {
    const extra = await startUpstream('c')
    try {
      assert.equal(
        (await api(proxy, 'POST', '/api/v1/upstreams', { name: 'api', servers: [extra.address] })).status,
        201,
      )
      const seen = new Set<string>()
      for (let i = 0; i < 4; i++) seen.add(await serverOf(proxy, '/api/r'))
      assert.deepEqual([...seen].sort(), ['a', 'c'])
      assert.equal(
        (await api(proxy, 'POST', '/api/v1/upstreams', { name: 'api', servers: [extra.address] })).status,
        409,
      )
      assert.equal((await api(proxy, 'DELETE', `/api/v1/upstreams/api/servers/${extra.address}`)).status, 204)
      for (let i = 0; i < 3; i++) assert.equal(await serverOf(proxy, '/api/r'), 'a')
      assert.equal((await api(proxy, 'DELETE', '/api/v1/upstreams/api/servers/127.0.0.1:1')).status, 404)
      assert.equal((await api(proxy, 'DELETE', '/api/v1/upstreams/nope/servers/127.0.0.1:1')).status, 404)
      const last = await api(proxy, 'DELETE', `/api/v1/upstreams/api/servers/${a.address}`)
      assert.equal(last.status, 400)
      assert.ok(
        last.json.problems.some((p: string) =>
          p.includes('upstreams.api.servers: needs at least one server'),
        ),
      )
      const created = await api(proxy, 'POST', '/api/v1/upstreams', {
        name: 'fresh',
        servers: [extra.address],
        strategy: 'least_connections',
      })
      assert.equal(created.status, 201)
      const ups = await api(proxy, 'GET', '/api/v1/upstreams')
      assert.equal(ups.json.upstreams.find((u: Json) => u.name === 'fresh').strategy, 'least_connections')
    } finally {
      await extra.close()
    }
  })

  test('status reports unsaved runtime changes; a reload says which it dropped', async () => {
    const status = await api(proxy, 'GET', '/api/v1/status')
    // Net of the tests before: a route added and deleted, a server added and removed, a group added.
    assert.deepEqual(status.json.unsaved_changes, ['added upstream group fresh (1 server)'])
    const r = await api(proxy, 'POST', '/api/v1/reload')
    assert.equal(r.status, 200)
    assert.ok(r.json.dropped_runtime_changes.includes('added upstream group fresh (1 server)'))
    await proxy.waitForLog(
      (l) => l.msg === 'reload replaced runtime changes that were not saved to the config file',
      'the dropped-changes warning',
    )
    assert.deepEqual((await api(proxy, 'GET', '/api/v1/status')).json.unsaved_changes, [])
  })

  test('the API key is required everywhere but /healthz', async () => {
    assert.equal((await api(proxy, 'GET', '/api/v1/routes', undefined, 'wrong')).status, 401)
    assert.equal((await api(proxy, 'POST', '/api/v1/reload', undefined, 'wrong')).status, 401)
    assert.equal((await fetch(`${proxy.controlUrl}/healthz`)).status, 200)
  })
})

test('control_api.persist writes changes back to the file atomically, comments kept', async () => {
  const a = await startUpstream('a')
  const b = await startUpstream('b')
  const proxy = await startProxy(config(a, b, '  persist: true\n'))
  try {
    const r = await api(proxy, 'POST', '/api/v1/routes', {
      name: 'other',
      path_pattern: '^/other',
      upstream: 'other',
    })
    assert.equal(r.status, 201)
    assert.equal(r.json.saved, true)
    const text = readFileSync(proxy.configFile, 'utf8')
    assert.match(text, /this comment must survive runtime changes/)
    assert.match(text, /other:\s*\n?\s*path_pattern: \^\/other/)
    assert.deepEqual(
      readdirSync(path.dirname(proxy.configFile)).filter((f) => f.endsWith('.tmp')),
      [],
      'no temp file left',
    )
    assert.equal(runCli(['validate', proxy.configFile]).status, 0, 'the written file is valid')
    // A reload reads the same file: the route stays.
    const reload = await api(proxy, 'POST', '/api/v1/reload')
    assert.equal(reload.json.result, 'unchanged')
    assert.equal(await serverOf(proxy, '/other'), 'b')
  } finally {
    await proxy.stop()
    await a.close()
    await b.close()
  }
})

describe('reload', () => {
  test('SIGHUP applies a changed file; a bad file keeps the old config and logs its problems', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const proxy = await startProxy(config(a, b))
    try {
      writeFileSync(
        proxy.configFile,
        config(a, b).replace(
          '    api: { path_pattern: "^/api", upstream: api }',
          '    api: { path_pattern: "^/api", upstream: api }\n    o: { path_pattern: "^/o", upstream: other }',
        ),
      )
      proxy.child.kill('SIGHUP')
      const line = await proxy.waitForLog((l) => l.msg === 'config reloaded', 'the reload summary')
      assert.deepEqual(line.routes_added, ['o'])
      assert.equal(await serverOf(proxy, '/o'), 'b')

      writeFileSync(proxy.configFile, 'mode: nonsense\n')
      proxy.child.kill('SIGHUP')
      const failed = await proxy.waitForLog(
        (l) => l.msg === 'config reload failed; the running config stays',
        'the failure',
      )
      assert.match(String((failed.problems as string[])[0]), /unknown mode "nonsense"/)
      assert.equal(await serverOf(proxy, '/o'), 'b', 'still serving the last good config')
      const bad = await api(proxy, 'POST', '/api/v1/reload')
      assert.equal(bad.status, 422)
      const metrics = await (
        await fetch(`${proxy.controlUrl}/metrics`, { headers: { authorization: 'Bearer adm' } })
      ).text()
      assert.match(metrics, /locci_config_reloads_total\{result="success"\} 1/)
      assert.match(metrics, /locci_config_reloads_total\{result="failure"\} 2/)
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })

  test('no request fails while reloading repeatedly under steady load; health kept for unchanged servers', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const dead = '127.0.0.1:1'
    const withDead = (extra: string) =>
      config(a, b)
        .replace(
          `servers: ["${a.address}"]`,
          `servers: ["${a.address}", "${dead}"]\n    health_check: { interval_secs: 60, timeout_secs: 1 }`,
        )
        .replace('control_api:', `${extra}control_api:`)
    const proxy = await startProxy(withDead(''))
    try {
      await proxy.waitForLog(
        (l) => l.server === dead && String(l.msg).includes('unhealthy'),
        'the dead server found',
      )
      let running = true
      const statuses: number[] = []
      const load = Promise.all(
        [0, 1, 2, 3].map(async () => {
          while (running) {
            const r = await fetch(`${proxy.url}/api/x`)
            await r.text()
            statuses.push(r.status)
          }
        }),
      )
      for (let i = 0; i < 6; i++) {
        // Alternate between two valid files that differ in an unrelated route.
        writeFileSync(
          proxy.configFile,
          withDead(i % 2 ? '' : `  # reload ${i}\n`).replace(
            'api: { path_pattern',
            i % 2
              ? 'api: { path_pattern'
              : `r${i}: { path_pattern: "^/r${i}", upstream: other }\n    api: { path_pattern`,
          ),
        )
        const r = await api(proxy, 'POST', '/api/v1/reload')
        assert.notEqual(r.json.result, 'failure', JSON.stringify(r.json))
        const seen = statuses.length
        await until(() => statuses.length >= seen + 20, 'traffic between reloads')
      }
      running = false
      await load
      assert.ok(statuses.length > 50, `enough traffic (${statuses.length})`)
      assert.deepEqual([...new Set(statuses)], [200], 'every request answered 200')
      // The dead server is still known to be down, without waiting for the next check (60 s).
      const ups = await api(proxy, 'GET', '/api/v1/upstreams')
      assert.equal(
        ups.json.upstreams.find((u: Json) => u.name === 'api').servers.find((s: Json) => s.address === dead)
          .healthy,
        false,
      )
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })

  test('a changed bind_address rebinds: the new port serves, the old one stops', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const proxy = await startProxy(config(a, b))
    try {
      const oldUrl = proxy.url
      const { closedPort } = await import('../helpers/upstream')
      const port = await closedPort()
      writeFileSync(
        proxy.configFile,
        config(a, b).replace('bind_address: "127.0.0.1:0" }', `bind_address: "127.0.0.1:${port}" }`),
      )
      assert.equal((await api(proxy, 'POST', '/api/v1/reload')).status, 200)
      assert.equal(await serverOf({ ...proxy, url: `http://127.0.0.1:${port}` }, '/api/x'), 'a')
      await until(
        () =>
          fetch(`${oldUrl}/api/x`).then(
            () => false,
            () => true,
          ),
        'the old port to close',
      )
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })
})

describe('metrics', () => {
  test('SPEC names and labels, route names not paths; promtool check metrics passes', async () => {
    const a = await startUpstream('a')
    const b = await startUpstream('b')
    const proxy = await startProxy(config(a, b))
    try {
      for (const p of ['/api/1', '/api/2', '/nope/3']) await (await fetch(`${proxy.url}${p}`)).text()
      const res = await fetch(`${proxy.controlUrl}/api/v1/metrics`, {
        headers: { authorization: 'Bearer adm' },
      })
      assert.match(res.headers.get('content-type')!, /^text\/plain; version=0.0.4/)
      const text = await res.text()
      assert.match(
        text,
        /locci_requests_total\{mode="api_gateway",route="api",upstream="api",status="200"\} 2/,
      )
      assert.match(text, /locci_requests_total\{mode="api_gateway",route="",upstream="",status="404"\} 1/)
      assert.match(
        text,
        /locci_request_duration_seconds_bucket\{le="0.001",mode="api_gateway",route="api",upstream="api"\}/,
      )
      for (const le of ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '5'])
        assert.ok(text.includes(`le="${le}"`), le)
      assert.match(text, /locci_upstream_health\{upstream="api",server="127.0.0.1:\d+"\} 1/)
      assert.match(text, /locci_active_connections\{upstream="api"\} 0/)
      assert.match(text, /locci_errors_total\{mode="api_gateway",error_type="no_route"\} 1/)
      assert.match(text, /locci_requests_in_flight 0/)
      assert.match(text, /process_cpu_seconds_total/)
      assert.ok(!text.includes('/api/1'), 'no raw paths in labels')
      assert.equal(
        (await (
          await fetch(`${proxy.controlUrl}/metrics`, { headers: { authorization: 'Bearer adm' } })
        ).text()) !== '',
        true,
      )
      // Every metric the Grafana dashboard queries exists.
      const dashboard = readFileSync(
        path.join(ROOT, 'monitoring', 'grafana', 'dashboards', 'locci-proxy.json'),
        'utf8',
      )
      const queried = new Set(
        [...dashboard.matchAll(/\b((?:locci|process)_[a-z_]+)/g)].map((m) =>
          m[1]!.replace(/_(bucket|sum|count)$/, ''),
        ),
      )
      assert.ok(queried.size >= 7)
      for (const name of queried)
        assert.ok(
          text.includes(`# TYPE ${name} `),
          `the dashboard queries ${name}, which the proxy does not export`,
        )
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
      if (promtool.error) assert.fail('promtool not installed (apt-get install prometheus; .ci/run does)')
      assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr)
    } finally {
      await proxy.stop()
      await a.close()
      await b.close()
    }
  })
})

describe('admin CLI and explain', () => {
  let a: Upstream
  let b: Upstream
  let proxy: RunningProxy
  before(async () => {
    a = await startUpstream('a')
    b = await startUpstream('b')
    proxy = await startProxy(config(a, b))
  })
  after(async () => {
    await proxy.stop()
    await a.close()
    await b.close()
  })
  // The proxy binds the control API to port 0 here, so the CLI is told where it is; the key
  // still comes from the config file.
  const cli = (...args: string[]) =>
    runCli(['-c', proxy.configFile, '--control-url', proxy.controlUrl!, ...args])

  test('status, add-route, remove-route, add-upstream, remove-upstream, reload', () => {
    const status = cli('status')
    assert.equal(status.status, 0, status.stderr)
    assert.match(status.stdout, /^running {2}mode api_gateway/)
    assert.match(status.stdout, /api {2}round_robin {2}1\/1 in rotation/)
    const json = JSON.parse(cli('status', '--json').stdout)
    assert.equal(json.status.mode, 'api_gateway')
    assert.match(
      cli('add-route', 'o', '--path', '^/o', '--upstream', 'other', '--methods', 'GET,POST', '--strip-prefix')
        .stdout,
      /added route o/,
    )
    const taken = cli('add-route', 'o', '--path', '^/o', '--upstream', 'other')
    assert.equal(taken.status, 1)
    assert.match(taken.stderr, /route "o" already exists \(409\)/)
    assert.match(cli('add-upstream', 'other', '127.0.0.1:7').stdout, /added 1 server to other/)
    assert.match(
      cli('remove-upstream', 'other', '127.0.0.1:7').stdout,
      /removed server 127.0.0.1:7 from other/,
    )
    assert.match(cli('remove-route', 'o').stdout, /removed route o/)
    assert.equal(cli('remove-route', 'o').status, 1)
    assert.match(cli('reload').stdout, /reloaded; nothing changed/)
  })

  test('a wrong key and a proxy that is not running are clear errors', () => {
    const wrong = cli('status', '--api-key', 'nope')
    assert.equal(wrong.status, 1)
    assert.match(wrong.stderr, /refused the API key \(401\)/)
    const env = runCli(['status', '--control-url', proxy.controlUrl!], { env: { LOCCI_API_KEY: 'adm' } })
    assert.equal(env.status, 0, env.stderr)
    const port0 = runCli(['-c', proxy.configFile, 'status'])
    assert.equal(port0.status, 1)
    assert.match(port0.stderr, /uses port 0 \(any free port\); pass --control-url/)
    const down = runCli(['--control-url', 'http://127.0.0.1:1', 'status'])
    assert.equal(down.status, 1)
    assert.match(
      down.stderr,
      /cannot reach the control API at http:\/\/127.0.0.1:1 \(ECONNREFUSED\): is the proxy running/,
    )
  })

  test('explain from the file: the route, why longer patterns missed, 404 and 405', () => {
    const r = cli('explain', 'GET', '/api/users?x=1')
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /route: api/)
    assert.match(r.stdout, /=> forwarded; the server sees: \/api\/users\?x=1/)
    assert.match(cli('explain', 'GET', '/zzz').stdout, /=> 404: no route matches this path/)
    const j = JSON.parse(cli('explain', 'GET', '/zzz', '--json').stdout)
    assert.equal(j.status, 404)
  })

  test('GET /api/v1/explain answers from the live config, with server health', async () => {
    const e = await api(proxy, 'GET', '/api/v1/explain?method=GET&path=/api/x')
    assert.equal(e.status, 200)
    assert.equal(e.json.route, 'api')
    assert.equal(e.json.servers[0].in_rotation, true)
    assert.equal((await api(proxy, 'GET', '/api/v1/explain')).status, 400)
  })
})
