// Config messages a person can act on: YAML syntax errors with line, column and a caret
// excerpt; problems in file order; "did you mean" for unknown keys and names.

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compilePlan } from '../proxy/runtime'
import { keysAt } from './compile'
import { parseConfigText } from './load'
import { formatProblem, type Problem } from './problems'
import { configSchema } from './schema'

function problemsOf(yaml: string, env: NodeJS.ProcessEnv = {}): Problem[] {
  const r = compilePlan(parseConfigText('cfg.yaml', yaml, env))
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

describe('YAML syntax errors: file:line:col and the line with a caret', () => {
  const cases: Array<{ desc: string; yaml: string; want: string }> = [
    {
      desc: 'a nested mapping on one line',
      yaml: 'mode: api_gateway\nserver:\n  bind_address: a: b\n',
      want:
        'cfg.yaml:3:17: YAML: Nested mappings are not allowed in compact mappings\n' +
        '    3 |   bind_address: a: b\n' +
        '      |                 ^',
    },
    {
      desc: 'a tab as indentation',
      yaml: 'mode: api_gateway\nupstreams:\n\tu: {}\n',
      want: 'cfg.yaml:3:1: YAML: Tabs are not allowed as indentation\n    3 | \tu: {}\n      | ^',
    },
    {
      desc: 'a key written twice',
      yaml: 'mode: api_gateway\nmode: load_balancer\n',
      want: 'cfg.yaml:2:1: YAML: Map keys must be unique\n    2 | mode: load_balancer\n      | ^',
    },
    {
      desc: 'at the end of the file: the position, no empty excerpt',
      yaml: 'mode: api_gateway\nx: [1, 2\n',
      want: 'cfg.yaml:3:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    },
    {
      desc: 'a line with a secret-looking key: the position only, the line is not repeated',
      yaml: 'mode: api_gateway\ncontrol_api:\n  api_key: s3cret: x\n',
      want: 'cfg.yaml:3:12: YAML: Nested mappings are not allowed in compact mappings',
    },
    {
      desc: 'a line with a password in a URL: the position only',
      yaml: 'mode: api_gateway\nx: { redis: redis://u:s3cret@h:1: x }\n',
      want: 'cfg.yaml:2:',
    },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const problems = problemsOf(c.yaml)
      assert.ok(problems.length > 0)
      const text = formatProblem(problems[0]!)
      if (c.want.endsWith(':')) assert.ok(text.startsWith(c.want), text)
      else assert.equal(text, c.want)
      assert.ok(!text.includes('s3cret'), 'no secret in the message')
    })
  }

  test('a long line is cut to a window around the column, the caret still under it', () => {
    const long = `  bind_address: ${'x'.repeat(300)}: y`
    const [p] = problemsOf(`mode: api_gateway\nserver:\n${long}\n`)
    assert.ok(p?.excerpt, formatProblem(p!))
    assert.ok(p.excerpt.text.length <= 100)
    assert.equal(p.excerpt.text[p.excerpt.caret], long[p.column! - 1])
    assert.ok(p.excerpt.caret >= 0 && p.excerpt.caret < p.excerpt.text.length)
  })

  test('an unset environment variable points at its value', () => {
    const [p] = problemsOf(BASE.replace('"127.0.0.1:3001"', '"${USERS_ADDR}"'))
    assert.equal(
      formatProblem(p!),
      'cfg.yaml:6:15: upstreams.users.servers[0]: environment variable USERS_ADDR is not set ' +
        '(use ${USERS_ADDR:-default} for a fallback)\n' +
        '    6 |     servers: ["${USERS_ADDR}"]\n' +
        '      |               ^',
    )
  })
})

test('problems are listed in file order, problems without a line last', () => {
  const yaml = `mode: api_gateway
api_gateway:
  routes:
    r: { path_pattern: "^/", upstream: nope }
upstreams:
  users:
    servers: ["http://127.0.0.1:3001"]
server:
  workers: many
`
  const problems = problemsOf(yaml)
  const lines = problems.map((p) => p.line ?? Number.POSITIVE_INFINITY)
  assert.ok(problems.length >= 3, problems.map(formatProblem).join('\n'))
  assert.deepEqual(
    lines,
    [...lines].sort((a, b) => a - b),
    problems.map(formatProblem).join('\n'),
  )
})

describe('did you mean: the closest allowed key or name', () => {
  const cases: Array<{ desc: string; yaml: string; path: string; message: string }> = [
    {
      desc: 'a top-level key',
      yaml: `${BASE}upstream:\n  x: 1\n`,
      path: 'upstream',
      message: 'unknown key "upstream"; did you mean "upstreams"?',
    },
    {
      desc: 'a server setting',
      yaml: BASE.replace('bind_address:', 'bind_adress:'),
      path: 'server.bind_adress',
      message: 'unknown key "bind_adress"; did you mean "bind_address"?',
    },
    {
      desc: 'a key of a route (under a record of names)',
      yaml: BASE.replace('      upstream: users', '      upstream: users\n      strip_prefx: true'),
      path: 'api_gateway.routes.users_api.strip_prefx',
      message: 'unknown key "strip_prefx"; did you mean "strip_prefix"?',
    },
    {
      desc: 'a key of a server entry (a list item that is a string or a mapping)',
      yaml: BASE.replace('servers: ["127.0.0.1:3001"]', 'servers: [{ adress: "127.0.0.1:3001" }]'),
      path: 'upstreams.users.servers[0].adress',
      message: 'unknown key "adress"; did you mean "address"?',
    },
    {
      desc: 'a key of a nested setting with a default (passive_health)',
      yaml: BASE.replace(
        'servers: ["127.0.0.1:3001"]',
        'servers: ["127.0.0.1:3001"]\n    passive_health: { enabeld: false }',
      ),
      path: 'upstreams.users.passive_health.enabeld',
      message: 'unknown key "enabeld"; did you mean "enabled"?',
    },
    {
      desc: 'a key of a middleware (its own schema)',
      yaml: `${BASE}  middlewares:\n    cors: { allowed_origin: ["*"] }\n`,
      path: 'api_gateway.middlewares.cors.allowed_origin',
      message: 'unknown key "allowed_origin"; did you mean "allowed_origins"?',
    },
    {
      desc: 'a key with nothing close: no guess',
      yaml: BASE.replace('bind_address:', 'colour: red\n  bind_address:'),
      path: 'server.colour',
      message: 'unknown key "colour"',
    },
    {
      desc: 'an upstream name',
      yaml: BASE.replace('upstream: users', 'upstream: user'),
      path: 'api_gateway.routes.users_api.upstream',
      message: 'upstream "user" is not defined under upstreams; did you mean "users"? (defined: users)',
    },
    {
      desc: 'an upstream name with nothing close',
      yaml: BASE.replace('upstream: users', 'upstream: orders'),
      path: 'api_gateway.routes.users_api.upstream',
      message: 'upstream "orders" is not defined under upstreams (defined: users)',
    },
    {
      desc: 'a middleware name',
      yaml: `${BASE}      middlewares: [cros]\n  middlewares:\n    cors: {}\n`,
      path: 'api_gateway.routes.users_api.middlewares[0]',
      message: 'unknown middleware "cros"; did you mean "cors"? (declared: cors)',
    },
    {
      desc: 'a middleware type',
      yaml: `${BASE}  middlewares:\n    strict: { type: rate_limitng }\n`,
      path: 'api_gateway.middlewares.strict.type',
      message:
        'unknown middleware type "rate_limitng"; did you mean "rate_limiting"? use rate_limiting, authentication, cors, compress',
    },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const problems = problemsOf(c.yaml)
      const p = problems.find((x) => x.path === c.path)
      assert.ok(p, `no problem at ${c.path}; got:\n${problems.map(formatProblem).join('\n')}`)
      assert.equal(p.message, c.message)
    })
  }
})

describe('keysAt: the keys the schema allows at a path', () => {
  const cases: Array<{ desc: string; path: (string | number)[]; has: string[]; size?: number }> = [
    { desc: 'the top level', path: [], has: ['mode', 'server', 'upstreams', 'watch'] },
    { desc: 'through a default', path: ['server'], has: ['bind_address', 'workers'] },
    { desc: 'through an optional', path: ['server', 'tls'], has: ['cert_path', 'policy'] },
    { desc: 'through a record of names', path: ['upstreams', 'any-name'], has: ['servers', 'strategy'] },
    {
      desc: 'through a list and a union',
      path: ['upstreams', 'u', 'servers', 0],
      has: ['address', 'weight'],
    },
    { desc: 'a path that leads to no mapping', path: ['mode'], has: [], size: 0 },
    { desc: 'a path the schema does not have', path: ['nope', 'x'], has: [], size: 0 },
    { desc: 'a name list (any keys)', path: ['middlewares', 'cors'], has: [], size: 0 },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const keys = keysAt(configSchema, c.path)
      for (const k of c.has) assert.ok(keys.includes(k), `${k} in ${keys.join(', ')}`)
      if (c.size !== undefined) assert.equal(keys.length, c.size)
    })
  }
})
