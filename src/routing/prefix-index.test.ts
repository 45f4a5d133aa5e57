import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import { compilePattern } from '../config/pattern'
import { literalPrefix, PrefixIndex } from './prefix-index'
import { type RouteMatch, RouteTable } from './route-table'

const prefixOf = (pattern: string): string => {
  const re = compilePattern(pattern)
  if (typeof re === 'string') throw new Error(re)
  return literalPrefix(re)
}

describe('literalPrefix', () => {
  const cases: [pattern: string, prefix: string][] = [
    ['^/api/v1/svc42(/|$)', '/api/v1/svc42'],
    ['^/api/users', '/api/users'],
    ['^/', '/'],
    ['^/files/.*', '/files/'],
    ['^/items/[0-9]+$', '/items/'],
    // A quantified character may be absent.
    ['^/items?', '/item'],
    ['^/ab*', '/a'],
    ['^/ab+', '/a'],
    ['^/ab{2}', '/a'],
    ['^/ab??', '/a'],
    // Escaped punctuation is literal; class and assertion escapes end the prefix.
    ['^/v1\\.json', '/v1.json'],
    ['^\\/api', '/api'],
    ['^/a\\d+', '/a'],
    ['^/a\\b', '/a'],
    ['^/a\\x41', '/a'],
    ['^/a\\u0041', '/a'],
    ['^/a\\.?', '/a'],
    // Nothing can be said.
    ['/api', ''],
    ['api', ''],
    ['^/a|^/b', ''],
    ['^/a|/b', ''],
    ['(?i)^/api', ''],
    ['(?m)^/api', ''],
    ['^(?=/a)/a', ''],
    ['^(/a|/b)', ''],
    // `|` inside a group or a class, or escaped, is not top level.
    ['^/a/(b|c)', '/a/'],
    ['^/a/[|x]', '/a/'],
    ['^/a\\|b', '/a|b'],
    ['^/a/[\\]|]', '/a/'],
    ['^$', ''],
    ['^/a$', '/a'],
  ]
  for (const [pattern, prefix] of cases) {
    test(`${pattern} -> ${JSON.stringify(prefix)}`, () => assert.equal(prefixOf(pattern), prefix))
  }

  test('every path a pattern matches starts with its prefix (random paths)', () => {
    const patterns = cases.map(([p]) => compilePattern(p) as RegExp)
    const rand = seeded(7)
    for (let n = 0; n < 20_000; n++) {
      const path = randomPath(rand)
      for (const re of patterns)
        if (re.test(path)) assert.ok(path.startsWith(literalPrefix(re)), `${re} ${path}`)
    }
  })
})

describe('PrefixIndex', () => {
  test('candidates: routes whose prefix the path starts with, in table order', () => {
    const idx = new PrefixIndex(['/api/v1/a', '', '/api/', '/api/v1/b', '/static/'])
    assert.deepEqual(idx.candidates('/api/v1/a/x'), [0, 1, 2])
    assert.deepEqual(idx.candidates('/api/v1/b'), [1, 2, 3])
    assert.deepEqual(idx.candidates('/api/v1/'), [1, 2])
    assert.deepEqual(idx.candidates('/api'), [1])
    assert.deepEqual(idx.candidates('/static/x'), [1, 4])
    assert.deepEqual(idx.candidates('/'), [1])
    assert.deepEqual(idx.candidates(''), [1])
    assert.deepEqual(idx.candidates('/other'), [1])
    // Inside folded edges (`/api/` is one step, `v1/` another): ending or leaving them midway.
    assert.deepEqual(idx.candidates('/apx/v1/a'), [1])
    assert.deepEqual(idx.candidates('/api/v'), [1, 2])
    assert.deepEqual(idx.candidates('/api/v1/c'), [1, 2])
  })

  test('no route without a prefix: a path matching no prefix has no candidates', () => {
    const idx = new PrefixIndex(['/a', '/b'])
    assert.deepEqual(idx.candidates('/c'), [])
    assert.deepEqual(idx.candidates('/a'), [0])
  })

  test('many routes: every route is a candidate of its own prefix, and of no unrelated one', () => {
    const prefixes = Array.from({ length: 20_000 }, (_, i) => `/api/v${i % 7}/svc${i}`)
    prefixes.push('', '/api/')
    const idx = new PrefixIndex(prefixes)
    assert.deepEqual(idx.candidates('/api/v3/svc10/x'), [10, 20_000, 20_001])
    // svc1, svc10..., all prefixes of `/api/v1/svc1...`: only those with v1 (i % 7 === 1).
    assert.deepEqual(idx.candidates('/api/v1/svc1'), [1, 20_000, 20_001])
    assert.deepEqual(idx.candidates('/api/v1/svc15'), [1, 15, 20_000, 20_001])
    assert.deepEqual(idx.candidates('/other'), [20_000])
  })

  test('hostile paths: long, non-ASCII, lone surrogates, NUL', () => {
    const idx = new PrefixIndex(['/a', '/a/b', ''])
    assert.deepEqual(idx.candidates(`/a/b${'x'.repeat(100_000)}`), [0, 1, 2])
    assert.deepEqual(idx.candidates('/a\u0000/b'), [0, 2])
    assert.deepEqual(idx.candidates('/\ud800/a'), [2])
    assert.deepEqual(idx.candidates('/名前'), [2])
  })
})

describe('RouteTable.match with the index', () => {
  /** The same table's answer from a walk over every route (a trace turns the index off). */
  const walked = (t: RouteTable, method: string, path: string): RouteMatch =>
    t.match(method, path, () => undefined)

  test('50 routes: the route in the middle of the table, 404 and 405 as the walk gives them', () => {
    const routes = Array.from({ length: 50 }, (_, i) => {
      const n = String(i).padStart(2, '0')
      return `    svc${n}: {path_pattern: "^/api/v1/svc${n}(/|$)", upstream: u, methods: [GET]}`
    })
    const t = build([...routes, '    root: {path_pattern: "^/$", upstream: u}'])
    for (const [method, path] of [
      ['GET', '/api/v1/svc42/small'],
      ['GET', '/api/v1/svc42'],
      ['GET', '/api/v1/svc4'],
      ['POST', '/api/v1/svc42/x'],
      ['GET', '/'],
      ['GET', '/api/v1/svc99'],
    ] as const) {
      assert.deepEqual(t.match(method, path), walked(t, method, path), `${method} ${path}`)
    }
    const m = t.match('GET', '/api/v1/svc42/small')
    assert.equal(m.kind === 'route' && m.route.name, 'svc42')
    assert.deepEqual(t.match('POST', '/api/v1/svc42/x'), { kind: 'method_not_allowed', allow: 'GET' })
  })

  test('random tables and paths: the index never changes the answer', () => {
    const rand = seeded(11)
    const pieces = [
      '/api',
      '/v1',
      '/a',
      '/b',
      '/',
      'x',
      '(/|$)',
      '.*',
      '[a-z]+',
      '?',
      '$',
      '\\.json',
      '(b|c)',
      '[0-9]*',
    ]
    const methods = ['GET', 'POST', 'DELETE']
    for (let round = 0; round < 60; round++) {
      const lines: string[] = []
      const count = 1 + Math.floor(rand() * 12)
      for (let i = 0; i < count; i++) {
        let p = rand() < 0.85 ? '^' : ''
        const len = 1 + Math.floor(rand() * 4)
        for (let k = 0; k < len; k++) p += pieces[Math.floor(rand() * pieces.length)]
        if (rand() < 0.1) p = `${p}|^/b`
        if (rand() < 0.1) p = `(?i)${p}`
        if (typeof compilePattern(p) === 'string') continue
        const m = rand() < 0.5 ? '' : `, methods: [${methods[Math.floor(rand() * methods.length)]}]`
        lines.push(`    r${i}: {path_pattern: ${JSON.stringify(p)}, upstream: u${m}}`)
      }
      if (lines.length === 0) continue
      const t = build(lines)
      for (let n = 0; n < 300; n++) {
        const path = randomPath(rand)
        const method = methods[Math.floor(rand() * methods.length)]!
        assert.deepEqual(t.match(method, path), walked(t, method, path), `${lines.join('\n')}\n${path}`)
      }
    }
  })
})

function build(lines: string[]): RouteTable {
  const yaml = `mode: api_gateway\nupstreams: {u: {servers: ["127.0.0.1:1"]}}\napi_gateway:\n  routes:\n${lines.join('\n')}\n`
  const r = compile(parseConfigText('/t.yaml', yaml, {}))
  if (!r.ok || r.snapshot.mode.kind !== 'api_gateway') throw new Error(JSON.stringify(r))
  return new RouteTable(r.snapshot.mode.routes, () => undefined)
}

function seeded(seed: number): () => number {
  let s = seed
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff
    return s / 0x80000000
  }
}

function randomPath(rand: () => number): string {
  const parts = ['/', 'api', 'v1', 'a', 'b', 'c', 'x', '.json', '1', '23', 'API', 'A', '\n', '/b']
  let p = '/'
  const len = Math.floor(rand() * 6)
  for (let i = 0; i < len; i++) p += parts[Math.floor(rand() * parts.length)]
  return p
}
