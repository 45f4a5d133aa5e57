import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, test } from 'node:test'
import { compilePlan, loadPlan, type PlanResult } from '../proxy/runtime'
import type { Overrides } from './compile'
import type { SourceDocument } from './load'

// The whole compile, as start, validate and reload run it: with the checks routing and
// middleware own (route patterns, middleware settings).
const asSnapshot = (r: PlanResult) => (r.ok ? { ok: true as const, snapshot: r.plan.snapshot } : r)
const compile = (source: SourceDocument, o: Overrides = {}) => asSnapshot(compilePlan(source, o))
const loadConfig = (file: string, o: Overrides, env: NodeJS.ProcessEnv) => asSnapshot(loadPlan(file, o, env))

import { parseConfigText } from './load'
import { formatProblem } from './problems'

const GUIDE = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'guide')

function problemsOf(yaml: string, env: NodeJS.ProcessEnv = {}) {
  const r = compile(parseConfigText('cfg.yaml', yaml, env))
  return r.ok ? [] : r.problems
}

const BASE = `mode: api_gateway
server:
  bind_address: "127.0.0.1:8484"
upstreams:
  users:
    servers: ["127.0.0.1:3001"]
api_gateway:
  routes:
    users_api:
      path_pattern: "^/users"
      upstream: users
`

describe('every config shown in the guide loads unchanged', () => {
  for (const name of ['structure.yaml', 'upstreams.yaml', 'load-balancer.yaml', 'gateway.yaml']) {
    test(name, () => {
      const r = loadConfig(path.join(GUIDE, name), {}, {})
      assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'))
    })
  }
  test('the load balancer example gets the guide default bind address', () => {
    const r = loadConfig(path.join(GUIDE, 'load-balancer.yaml'), {}, {})
    assert.ok(r.ok)
    assert.deepEqual(r.snapshot.bind, { host: '0.0.0.0', port: 8484 })
    assert.equal(r.snapshot.mode.kind === 'load_balancer' && r.snapshot.mode.upstream, 'app_fleet')
    assert.equal(r.snapshot.upstreams.get('app_fleet')?.healthCheck?.intervalMs, 15000)
  })
})

describe('bad configs: one problem each, with key path and line', () => {
  const cases: Array<{ desc: string; yaml: string; path: string; line?: number; message: RegExp }> = [
    {
      desc: 'unknown mode',
      yaml: BASE.replace('mode: api_gateway', 'mode: proxy'),
      path: 'mode',
      line: 1,
      message: /unknown mode "proxy"; use load_balancer or api_gateway/,
    },
    {
      desc: 'a mirror naming a missing upstream',
      yaml: `${BASE}      mirror: { upstream: shadw }\n`,
      path: 'api_gateway.routes.users_api.mirror.upstream',
      line: 12,
      message: /upstream "shadw" is not defined under upstreams/,
    },
    {
      desc: 'a mirror percent over 100',
      yaml: `${BASE}      mirror: { upstream: users, percent: 150 }\n`,
      path: 'api_gateway.routes.users_api.mirror.percent',
      message: /100/,
    },
    {
      desc: 'a mirror on TCP pass-through',
      yaml: `mode: load_balancer
upstreams:
  users:
    servers: ["127.0.0.1:3001"]
load_balancer:
  upstream: users
  protocol: tcp
  mirror: { upstream: users }
`,
      path: 'load_balancer.mirror',
      message: /cannot be mirrored with load_balancer.protocol: tcp/,
    },
    {
      desc: 'missing mode',
      yaml: BASE.replace('mode: api_gateway\n', ''),
      path: 'mode',
      message: /is required/,
    },
    {
      desc: 'a route naming a missing upstream',
      yaml: BASE.replace('upstream: users', 'upstream: orders'),
      path: 'api_gateway.routes.users_api.upstream',
      line: 11,
      message: /upstream "orders" is not defined under upstreams \(defined: users\)/,
    },
    {
      desc: 'a server address with a scheme',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001", "http://10.0.0.2:3000"]',
      ),
      path: 'upstreams.users.servers[1]',
      line: 6,
      message: /without a scheme .*write "10.0.0.2:3000"/,
    },
    {
      desc: 'a regex that does not compile',
      yaml: BASE.replace('"^/users"', '"^/users/(["'),
      path: 'api_gateway.routes.users_api.path_pattern',
      line: 10,
      message: /regular expression does not compile/,
    },
    {
      desc: 'an unknown middleware name',
      yaml: `${BASE}      middlewares: [auth]\n  middlewares:\n    cors: {}\n`,
      path: 'api_gateway.routes.users_api.middlewares[0]',
      line: 12,
      message: /unknown middleware "auth" \(declared: cors\)/,
    },
    {
      desc: 'a missing required section (api_gateway in gateway mode)',
      yaml: BASE.slice(0, BASE.indexOf('api_gateway:\n')),
      path: 'api_gateway',
      message: /is required when mode is api_gateway/,
    },
    {
      desc: 'a missing load_balancer section in lb mode',
      yaml: BASE.replace('mode: api_gateway', 'mode: load_balancer'),
      path: 'load_balancer',
      message: /is required when mode is load_balancer/,
    },
    {
      desc: 'a wrong type',
      yaml: BASE.replace('bind_address: "127.0.0.1:8484"', 'bind_address: "127.0.0.1:8484"\n  workers: many'),
      path: 'server.workers',
      line: 4,
      message: /must be a whole number from 1 to 256, or auto/,
    },
    {
      desc: 'a wrong type (string for a number)',
      yaml: BASE.replace(
        'bind_address: "127.0.0.1:8484"',
        'bind_address: "127.0.0.1:8484"\n  upstream_timeout_secs: soon',
      ),
      path: 'server.upstream_timeout_secs',
      line: 4,
      message: /must be a number \(got string\)/,
    },
    {
      desc: 'an unknown key (typo)',
      yaml: BASE.replace('      upstream: users', '      upstream: users\n      strip_prefx: true'),
      path: 'api_gateway.routes.users_api.strip_prefx',
      line: 12,
      message: /unknown key "strip_prefx"/,
    },
    {
      desc: 'a TLS file that does not exist',
      yaml: BASE.replace(
        'bind_address: "127.0.0.1:8484"',
        'bind_address: "127.0.0.1:8484"\n  tls:\n    cert_path: /nonexistent/cert.pem\n    key_path: /nonexistent/key.pem',
      ),
      path: 'server.tls.cert_path',
      line: 5,
      message: /file does not exist: \/nonexistent\/cert.pem/,
    },
    {
      desc: 'an unset environment variable',
      yaml: BASE.replace('"127.0.0.1:3001"', '"${USERS_ADDR}"'),
      path: 'upstreams.users.servers[0]',
      line: 6,
      message: /environment variable USERS_ADDR is not set/,
    },
    {
      desc: 'a strategy that does not exist',
      yaml: BASE.replace('servers: ["127.0.0.1:3001"]', 'servers: ["127.0.0.1:3001"]\n    strategy: fastest'),
      path: 'upstreams.users.strategy',
      line: 7,
      message: /unknown strategy "fastest"/,
    },
    {
      desc: 'an empty server list',
      yaml: BASE.replace('servers: ["127.0.0.1:3001"]', 'servers: []'),
      path: 'upstreams.users.servers',
      message: /needs at least one server/,
    },
    {
      desc: 'a port out of range',
      yaml: BASE.replace('"127.0.0.1:3001"', '"127.0.0.1:70000"'),
      path: 'upstreams.users.servers[0]',
      message: /port must be a number from 1 to 65535/,
    },
    {
      desc: 'control API on the proxy port',
      yaml: `${BASE}control_api:\n  enabled: true\n  bind_address: "127.0.0.1:8484"\n`,
      path: 'control_api.bind_address',
      message: /same address as server.bind_address/,
    },
    {
      desc: 'a circuit breaker fallback naming a missing group, with a close name',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { fallback: user }',
      ),
      path: 'upstreams.users.circuit_breaker.fallback',
      message: /upstream "user" is not defined under upstreams \(no other upstream is defined\)/,
    },
    {
      desc: 'a circuit breaker fallback with a typo',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { fallback: stattic }\n  static:\n    servers: ["127.0.0.1:3002"]',
      ),
      path: 'upstreams.users.circuit_breaker.fallback',
      line: 7,
      message:
        /upstream "stattic" is not defined under upstreams; did you mean "static"\? \(defined: static\)/,
    },
    {
      desc: 'a circuit breaker falling back to its own group',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { fallback: users }',
      ),
      path: 'upstreams.users.circuit_breaker.fallback',
      line: 7,
      message: /cannot name its own group/,
    },
    {
      desc: 'circuit breaker fallbacks in a cycle',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        `servers: ["127.0.0.1:3001"]
    circuit_breaker: { fallback: b }
  b:
    servers: ["127.0.0.1:3002"]
    circuit_breaker: { fallback: c }
  c:
    servers: ["127.0.0.1:3003"]
    circuit_breaker: { fallback: users }`,
      ),
      path: 'upstreams.users.circuit_breaker.fallback',
      line: 7,
      message: /fallbacks form a cycle: users -> b -> c -> users/,
    },
    {
      desc: 'a circuit breaker window setting without a window condition',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { consecutive_failures: 3, min_requests: 10 }',
      ),
      path: 'upstreams.users.circuit_breaker.min_requests',
      message: /only applies with error_ratio or latency_p99_ms/,
    },
    {
      desc: 'a circuit breaker error ratio over 1',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { error_ratio: 1.5 }',
      ),
      path: 'upstreams.users.circuit_breaker.error_ratio',
      message: /must be at most 1/,
    },
    {
      desc: 'a circuit breaker error ratio of 0',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { error_ratio: 0 }',
      ),
      path: 'upstreams.users.circuit_breaker.error_ratio',
      message: /greater than 0/,
    },
    {
      desc: 'an unknown circuit breaker key',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    circuit_breaker: { open_sec: 3 }',
      ),
      path: 'upstreams.users.circuit_breaker.open_sec',
      message: /unknown key "open_sec"; did you mean "open_secs"/,
    },
    {
      desc: 'YAML syntax error',
      yaml: 'mode: api_gateway\nserver: [unclosed\n',
      path: '',
      message: /^YAML: /,
    },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const problems = problemsOf(c.yaml)
      const p = problems.find((x) => x.path === c.path)
      assert.ok(p, `no problem at ${c.path}; got:\n${problems.map(formatProblem).join('\n')}`)
      assert.match(p.message, c.message)
      if (c.line !== undefined) assert.equal(p.line, c.line)
      assert.equal(p.file, 'cfg.yaml')
    })
  }

  test('every problem is reported at once', () => {
    const yaml = BASE.replace('mode: api_gateway', 'mode: proxy')
      .replace('"127.0.0.1:3001"', '"http://127.0.0.1:3001"')
      .replace('"^/users"', '"("')
      .replace('upstream: users', 'upstream: nope')
    const paths = problemsOf(yaml).map((p) => p.path)
    for (const want of [
      'mode',
      'upstreams.users.servers[0]',
      'api_gateway.routes.users_api.path_pattern',
      'api_gateway.routes.users_api.upstream',
    ]) {
      assert.ok(paths.includes(want), `${want} missing from ${paths.join(', ')}`)
    }
  })

  test('a missing file is one clear problem', () => {
    const r = loadConfig('/nonexistent/locci.yaml', {}, {})
    assert.ok(!r.ok)
    assert.equal(formatProblem(r.problems[0]!), '/nonexistent/locci.yaml: config file not found')
  })
})

describe('environment interpolation and overrides', () => {
  test('${VAR} and ${VAR:-default} in strings; plain scalars become numbers', () => {
    const yaml = BASE.replace('"127.0.0.1:8484"', '"${HOST:-127.0.0.1}:${PORT}"').replace(
      'bind_address',
      'upstream_timeout_secs: ${TIMEOUT:-7}\n  bind_address',
    )
    const r = compile(parseConfigText('cfg.yaml', yaml, { PORT: '9000' }))
    assert.ok(r.ok, r.ok ? '' : r.problems.map(formatProblem).join('\n'))
    assert.deepEqual(r.snapshot.bind, { host: '127.0.0.1', port: 9000 })
    assert.equal(r.snapshot.upstreamTimeoutMs, 7000)
  })

  test('overrides (flag or env) win over the file', () => {
    const r = compile(parseConfigText('cfg.yaml', `${BASE}load_balancer: { upstream: users }\n`, {}), {
      mode: 'load_balancer',
      bind: '127.0.0.1:9999',
      logLevel: 'warn',
    })
    assert.ok(r.ok)
    assert.equal(r.snapshot.mode.kind, 'load_balancer')
    assert.equal(r.snapshot.bind.port, 9999)
    assert.equal(r.snapshot.logging.level, 'warn')
  })

  test('the snapshot is frozen', () => {
    const r = compile(parseConfigText('cfg.yaml', BASE, {}))
    assert.ok(r.ok)
    assert.throws(() => {
      ;(r.snapshot as { mode: unknown }).mode = 'load_balancer'
    })
    assert.throws(() => {
      ;(r.snapshot.raw.upstreams.users!.servers as string[]).push('x:1')
    })
  })
})
