import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import { compilePattern } from './pattern'

const refused = (p: string) => {
  const r = compilePattern(p)
  return typeof r === 'string' ? r : undefined
}

describe('route patterns that can stall the event loop are refused, saying why', () => {
  const cases = [
    { desc: 'nested quantifiers', pattern: '^/(a+)+$', why: /exponential time.*\(a\+\)\+` as `a\+`/ },
    { desc: 'overlapping alternatives under a star', pattern: '^/(a|a)*$', why: /exponential time/ },
    { desc: 'a star of a star', pattern: '^/(.*)*x$', why: /exponential time/ },
    { desc: 'words with optional separators', pattern: '^/(\\w+\\s?)*$', why: /exponential time/ },
    { desc: 'empty-matching body under a star, unanchored', pattern: '(a*)*b', why: /exponential time/ },
    {
      desc: 'alternatives that overlap after a repeat',
      pattern: '^/(\\d+|\\d+\\.\\d+)*$',
      why: /exponential/,
    },
    { desc: 'two adjacent repeats of the same characters', pattern: '^/.*.*x$', why: /quadratic time/ },
    { desc: 'adjacent digit repeats', pattern: '^/\\d+\\d+x', why: /quadratic time/ },
    { desc: 'a repeat between two wildcards', pattern: '^/.*a.*x$', why: /quadratic time/ },
    {
      desc: 'unanchored, starting with a repeat',
      pattern: '[a-z]+x',
      why: /quadratic time.*anchor it with `\^`/,
    },
    { desc: 'bounded but huge ambiguity', pattern: '^/(?:a|a){30}$', why: /very long.*alternatives/ },
    { desc: 'a back-reference', pattern: '^/(a+)\\1$', why: /back-reference/ },
    { desc: 'a named back-reference', pattern: '^/(?<x>a)\\k<x>$', why: /back-reference/ },
    {
      desc: 'a lookahead with an unbounded repeat',
      pattern: '^/(?=.*admin)',
      why: /lookahead or lookbehind/,
    },
    { desc: 'too large to check', pattern: '^/.{0,500}$', why: /too complex to check/ },
    { desc: 'the Go flag group is no way around it', pattern: '(?i)^/(a+)+$', why: /exponential time/ },
  ]
  for (const c of cases) {
    test(`${c.desc}: ${c.pattern}`, () => {
      const why = refused(c.pattern)
      assert.ok(why, 'refused')
      assert.match(why, c.why)
    })
  }
})

// Patterns that must stay accepted, and crafted paths of 15 KB that try to make each one slow:
// long runs of the characters its repeats take, ending in a character that makes it fail.
const accepted = [
  '^/',
  '^/users',
  '^/api/users',
  '^/v[0-9]+',
  '^/users/(?P<id>[0-9]+)',
  '(?i)^/API',
  '^/only/get$',
  '^/api/[^/]+/items/[^/]+$',
  '/api/[^/]+/items/[^/]+$',
  '/users/.*',
  '^/files/.+\\.(png|jpg)$',
  '\\.(png|jpg)$',
  '^/[^?]*$',
  '^/(?:/[a-z]+)*$',
  '^/([^/]+/)*x$',
  '^/(a|b)*x',
  '^/(a|a)*',
  '^/(ab?)*$',
  '^/(?!admin)[a-z]+$',
  '^/api/v1/users/(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$',
  '^/api/v1/orgs/(?P<org>[^/]+)/projects/(?P<p>[^/]+)/deployments/(?P<id>[0-9]+)$',
  '(?i)^/(?:users|accounts)/(?P<id>[0-9a-f-]{36})(?:/.*)?$',
]

function craftedPaths(): string[] {
  const size = 15_000
  const runs = ['a', '1', '/', 'a/', '/a', 'ab', '1-', 'api/', '/users/', '/api/x/items/', 'A', 'x']
  const out: string[] = []
  for (const r of runs) {
    for (const tail of ['!', '/', '.', '']) out.push(`/${r.repeat(Math.ceil(size / r.length))}${tail}`)
  }
  return out
}

describe('accepted patterns match a 15 KB crafted path in milliseconds', () => {
  const paths = craftedPaths()
  for (const p of accepted) {
    test(p, () => {
      const re = compilePattern(p)
      assert.ok(re instanceof RegExp, `accepted (${String(re)})`)
      for (const path of paths) {
        // The best of three, so a GC pause on a loaded machine does not count.
        let best = Number.POSITIVE_INFINITY
        for (let i = 0; i < 3 && best > 20; i++) {
          const t = performance.now()
          re.test(path)
          best = Math.min(best, performance.now() - t)
        }
        // Quadratic work on 15 KB takes 100 ms and more; linear work well under 1 ms.
        assert.ok(best < 20, `${best.toFixed(1)} ms on ${JSON.stringify(path.slice(0, 20))}…`)
      }
    })
  }
})

/** Patterns tests write to check that they are refused (test/integration, test/hostile). */
const BROKEN_ON_PURPOSE = new Set(['^/(', '^/(a+)+$', '^/.*.*x$'])

describe('every path_pattern the project ships is accepted', () => {
  const root = path.resolve(__dirname, '..', '..', '..')
  const files: string[] = [path.join(root, 'config.yaml'), path.join(root, 'docs', 'GUIDE.md')]
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name)
      if (name === 'node_modules') continue
      if (statSync(p).isDirectory()) walk(p)
      else if (/\.(ya?ml|md|ts)$/.test(name)) files.push(p)
    }
  }
  walk(path.join(root, 'examples'))
  walk(path.join(root, 'test'))
  const found = new Map<string, string>()
  for (const f of files) {
    const text = readFileSync(f, 'utf8')
    for (const m of text.matchAll(/path_pattern["']?\s*:\s*(["'])((?:(?!\1).)+)\1/g)) {
      const p = m[2]!
      // Templates built by tests and patterns kept broken on purpose are not shipped patterns.
      if (p.includes('${') || BROKEN_ON_PURPOSE.has(p)) continue
      found.set(p, path.relative(root, f))
    }
  }
  test('the scan finds the shipped patterns', () => {
    assert.ok(found.size >= 10, `found ${found.size}`)
    assert.ok(found.has('^/users'))
  })
  for (const [p, file] of found) {
    test(`${p} (${file})`, () => {
      assert.ok(compilePattern(p) instanceof RegExp, String(compilePattern(p)))
    })
  }
})
