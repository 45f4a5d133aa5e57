import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseConfigText } from '../config/load'
import { MiddlewareRegistry } from '../middleware/registry'
import { createLogger } from '../observe/logger'
import { compilePlan, type Plan } from '../proxy/runtime'
import { explain, renderExplanation } from './explain'
import { middlewarePlan, type Resolution, resolve } from './resolve'

/** The compiled config, as the proxy compiles it (proxy/runtime.ts). */
function snapshotOf(yaml: string): Plan {
  const r = compilePlan(parseConfigText('cfg.yaml', yaml, {}))
  if (!r.ok) throw new Error(JSON.stringify(r.problems))
  return r.plan
}

const GATEWAY = snapshotOf(`mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  a: { servers: ["127.0.0.1:9"] }
  b: { servers: ["127.0.0.1:10"] }
api_gateway:
  routes:
    cors_open: { path_pattern: "^/cors", methods: [GET, POST], upstream: a, middlewares: [cors] }
    plain: { path_pattern: "^/plain", methods: [GET], upstream: b }
    any: { path_pattern: "^/any", upstream: b }
    private: { path_pattern: "^/private", upstream: a, middlewares: [limit, authentication, cors] }
    mix_post: { path_pattern: "^/mix", methods: [POST], upstream: a, middlewares: [cors] }
    mix_options: { path_pattern: "^/mix", methods: [OPTIONS], upstream: b }
    v2: { path_pattern: "^/api/v2", upstream: b, strip_prefix: true }
    api: { path_pattern: "^/api", upstream: a }
  middlewares:
    cors: { allowed_origins: ["https://app.example"] }
    limit: { type: rate_limiting, requests_per_minute: 60, burst_size: 5 }
    authentication:
      jwt_secret: "0123456789abcdef0123456789abcdef"
      excluded_paths: [/private/health, /private/pub/*]
`)

const LB = (middlewares: string) =>
  snapshotOf(`mode: load_balancer
server: { bind_address: "127.0.0.1:0" }
upstreams:
  a: { servers: ["127.0.0.1:9"] }
load_balancer: { upstream: a, middlewares: ${middlewares} }
middlewares:
  cors: { allowed_origins: "*" }
  authentication: { jwt_secret: "0123456789abcdef0123456789abcdef", excluded_paths: [/public/*] }
`)

const PREFLIGHT = (asked: string) => ['Origin', 'https://app.example', 'Access-Control-Request-Method', asked]

/** A resolution in a form assert.deepEqual can compare. */
function summary(d: Resolution): string {
  switch (d.kind) {
    case 'route':
      return `route ${d.route.name}`
    case 'preflight':
      return `preflight ${d.route?.name ?? '(load_balancer)'}`
    case 'method_not_allowed':
      return `405 ${d.allow}`
    case 'no_route':
      return '404'
    case 'load_balancer':
      return 'load_balancer'
  }
}

describe('resolve', () => {
  const cases: Array<{
    desc: string
    s?: Plan
    method: string
    path: string
    headers?: string[]
    want: string
  }> = [
    { desc: 'a route by method and path', method: 'GET', path: '/cors/x', want: 'route cors_open' },
    { desc: 'no pattern matches', method: 'GET', path: '/nothing', want: '404' },
    { desc: 'patterns match, methods do not', method: 'DELETE', path: '/cors', want: '405 GET, POST' },
    { desc: 'longest pattern first', method: 'GET', path: '/api/v2/x', want: 'route v2' },
    {
      desc: 'a preflight on a route with cors, routed by the method it asks about',
      method: 'OPTIONS',
      path: '/cors/x',
      headers: PREFLIGHT('POST'),
      want: 'preflight cors_open',
    },
    {
      desc: 'the asked method is upper-cased',
      method: 'OPTIONS',
      path: '/cors/x',
      headers: PREFLIGHT('post'),
      want: 'preflight cors_open',
    },
    {
      desc: 'a preflight asking for a method no route takes: routed by OPTIONS',
      method: 'OPTIONS',
      path: '/cors/x',
      headers: PREFLIGHT('DELETE'),
      want: '405 GET, POST',
    },
    {
      desc: 'a preflight on a route without cors: routed by OPTIONS (405 here)',
      method: 'OPTIONS',
      path: '/plain',
      headers: PREFLIGHT('GET'),
      want: '405 GET',
    },
    {
      desc: 'a preflight on a route without cors that takes every method: an ordinary request',
      method: 'OPTIONS',
      path: '/any',
      headers: PREFLIGHT('GET'),
      want: 'route any',
    },
    {
      desc: 'a preflight whose asked route has no cors falls to the OPTIONS route, answered by its cors',
      method: 'OPTIONS',
      path: '/mix',
      headers: PREFLIGHT('POST'),
      want: 'preflight mix_post',
    },
    {
      desc: 'a preflight for a method only the OPTIONS route takes: that route, forwarded',
      method: 'OPTIONS',
      path: '/mix',
      headers: PREFLIGHT('GET'),
      want: 'route mix_options',
    },
    {
      desc: 'cors anywhere in the chain answers the preflight',
      method: 'OPTIONS',
      path: '/private/x',
      headers: PREFLIGHT('DELETE'),
      want: 'preflight private',
    },
    {
      desc: 'OPTIONS without Origin is not a preflight',
      method: 'OPTIONS',
      path: '/cors',
      headers: ['Access-Control-Request-Method', 'GET'],
      want: '405 GET, POST',
    },
    {
      desc: 'OPTIONS without Access-Control-Request-Method is not a preflight',
      method: 'OPTIONS',
      path: '/cors',
      headers: ['Origin', 'https://app.example'],
      want: '405 GET, POST',
    },
    {
      desc: 'load_balancer: every request',
      s: LB('[cors]'),
      method: 'GET',
      path: '/x',
      want: 'load_balancer',
    },
    {
      desc: 'load_balancer with cors: a preflight is answered',
      s: LB('[authentication, cors]'),
      method: 'OPTIONS',
      path: '/x',
      headers: PREFLIGHT('GET'),
      want: 'preflight (load_balancer)',
    },
    {
      desc: 'load_balancer without cors: a preflight is an ordinary request',
      s: LB('[authentication]'),
      method: 'OPTIONS',
      path: '/x',
      headers: PREFLIGHT('GET'),
      want: 'load_balancer',
    },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal(summary(resolve(c.s ?? GATEWAY, c.method, c.path, c.headers ?? [])), c.want)
    })
  }

  test('a route hit allocates nothing: the same frozen decision every time', () => {
    const a = resolve(GATEWAY, 'GET', '/cors/x', [])
    assert.equal(resolve(GATEWAY, 'GET', '/cors/y', []), a)
    assert.ok(Object.isFrozen(a))
  })

  test("the registry's chains answer preflights exactly where resolve says they do", () => {
    const registry = new MiddlewareRegistry(createLogger({ level: 'silent', format: 'json' }).logger)
    try {
      const chains = registry.build(GATEWAY.snapshot, GATEWAY.middlewares)
      for (const route of GATEWAY.routes!.routes) {
        const asked = route.methods === null ? 'GET' : [...route.methods][0]!
        const d = resolve(GATEWAY, 'OPTIONS', route.pattern.slice(1), PREFLIGHT(asked))
        const answered = d.kind === 'preflight' && d.route === route
        assert.equal((chains.get(route.name)?.preflight.length ?? 0) > 0, answered, route.name)
      }
    } finally {
      registry.close()
    }
  })
})

describe('middlewarePlan', () => {
  const plan = (method: string, path: string, headers: string[] = []) =>
    middlewarePlan(GATEWAY, resolve(GATEWAY, method, path, headers), path, headers).map(
      (s) => `${s.name} ${s.action}`,
    )
  const cases: Array<{ desc: string; method: string; path: string; headers?: string[]; want: string[] }> = [
    {
      desc: 'no token: authentication refuses, what follows is not reached',
      method: 'GET',
      path: '/private/x',
      want: ['limit runs', 'authentication refuses', 'cors not_reached'],
    },
    {
      desc: 'a bearer token: authentication verifies it',
      method: 'GET',
      path: '/private/x',
      headers: ['Authorization', 'Bearer abc.def.ghi'],
      want: ['limit runs', 'authentication runs', 'cors runs'],
    },
    {
      desc: 'a Basic credential: authentication refuses',
      method: 'GET',
      path: '/private/x',
      headers: ['Authorization', 'Basic YTpi'],
      want: ['limit runs', 'authentication refuses', 'cors not_reached'],
    },
    {
      desc: 'an exact excluded path',
      method: 'GET',
      path: '/private/health',
      want: ['limit runs', 'authentication skipped', 'cors runs'],
    },
    {
      desc: 'an excluded prefix covers itself',
      method: 'GET',
      path: '/private/pub',
      want: ['limit runs', 'authentication skipped', 'cors runs'],
    },
    {
      desc: 'an excluded prefix does not cover a longer segment',
      method: 'GET',
      path: '/private/pubx',
      want: ['limit runs', 'authentication refuses', 'cors not_reached'],
    },
    {
      desc: 'a preflight answered by cors: the others do not see it, wherever cors stands',
      method: 'OPTIONS',
      path: '/private/x',
      headers: PREFLIGHT('GET'),
      want: ['limit skipped', 'authentication skipped', 'cors answers'],
    },
    { desc: 'a 404 runs nothing', method: 'GET', path: '/nothing', want: [] },
  ]
  for (const c of cases) test(c.desc, () => assert.deepEqual(plan(c.method, c.path, c.headers), c.want))
})

describe('explain', () => {
  test('a preflight on a route without cors: two walks, the second by OPTIONS, and the 405 the proxy gives', () => {
    const e = explain(GATEWAY, undefined, 'OPTIONS', '/plain', PREFLIGHT('GET'))
    assert.equal(e.outcome, 'method_not_allowed')
    assert.equal(e.allow, 'GET')
    assert.deepEqual(
      e.walks.map((w) => w.method),
      ['GET', 'OPTIONS'],
    )
    assert.equal(e.tried.length, 2 * GATEWAY.routes!.routes.length)
    assert.deepEqual(
      e.tried.filter((t) => t.route === 'plain').map((t) => t.result),
      ['matched', 'pattern matches, but OPTIONS is not in its methods (GET)'],
    )
    const text = renderExplanation(e)
    assert.match(text, /route plain has no cors middleware to answer the preflight/)
    assert.match(text, /routes for OPTIONS, longest pattern first:/)
  })

  test('routes after the match are listed as not tried', () => {
    const e = explain(GATEWAY, undefined, 'GET', '/api/v2/x')
    const i = e.tried.findIndex((t) => t.result === 'matched')
    assert.equal(e.tried[i]!.route, 'v2')
    assert.equal(e.tried.length, GATEWAY.routes!.routes.length)
    for (const t of e.tried.slice(i + 1)) assert.match(t.result, /^not tried: v2 matched first/)
  })

  test('the path is normalized as the proxy does, and strip_prefix applies to it with the query kept', () => {
    const e = explain(GATEWAY, undefined, 'GET', '/api/./v2//u%41?x=1')
    assert.equal(e.normalized_path, '/api/v2/uA')
    assert.equal(e.route, 'v2')
    assert.equal(e.upstream_path, '/uA?x=1')
    assert.match(renderExplanation(e), /normalized path: \/api\/v2\/uA/)
  })

  test('a path the proxy refuses is a 400', () => {
    const e = explain(GATEWAY, undefined, 'GET', '/%2e%2e/x')
    assert.deepEqual([e.outcome, e.status, e.route], ['bad_request', 400, null])
    assert.match(renderExplanation(e), /=> 400: the path is refused: /)
  })

  test('TRACE and CONNECT are refused before routing', () => {
    for (const m of ['TRACE', 'connect']) {
      const e = explain(GATEWAY, undefined, m, '/any')
      assert.deepEqual(
        [e.outcome, e.status, e.allow],
        ['method_not_allowed', 405, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'],
      )
    }
  })

  test('authentication without a token is the 401 the proxy gives', () => {
    const e = explain(GATEWAY, undefined, 'GET', '/private/x')
    assert.deepEqual([e.outcome, e.status, e.upstream_path], ['unauthorized', 401, null])
    assert.match(renderExplanation(e), /=> 401: refused by authentication/)
  })

  test('load_balancer mode: the one group, no route', () => {
    const e = explain(LB('[cors]'), undefined, 'GET', '/x?y=1')
    assert.deepEqual([e.outcome, e.route, e.upstream, e.upstream_path], ['forward', null, 'a', '/x?y=1'])
    assert.deepEqual(e.walks, [])
  })
})
