import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compilePathRegex, dotSegment, type PathRegex, replacePath } from './replacement'

const compiled = (regex: string, replacement: string): PathRegex => {
  const p = compilePathRegex(regex, replacement)
  if ('problem' in p) throw new Error(p.problem)
  return p
}

const cases: Array<{ desc: string; regex: string; replacement: string; path: string; out: string }> = [
  { desc: 'a capture group', regex: '^/old/(.*)', replacement: '/new/$1', path: '/old/a/b', out: '/new/a/b' },
  {
    desc: 'no match leaves the path',
    regex: '^/old/(.*)',
    replacement: '/new/$1',
    path: '/other',
    out: '/other',
  },
  {
    desc: 'every match is replaced',
    regex: '/v1/',
    replacement: '/v2/',
    path: '/v1/a/v1/b',
    out: '/v2/a/v2/b',
  },
  {
    desc: 'a Go named group',
    regex: '^/u/(?P<id>[0-9]+)$',
    replacement: '/users/$<id>',
    path: '/u/42',
    out: '/users/42',
  },
  { desc: '$$ is a dollar', regex: '^/p$', replacement: '/$$x', path: '/p', out: '/$x' },
  { desc: '$0 is the whole match', regex: '^/p', replacement: '/x$0', path: '/p/q', out: '/x/p/q' },
  { desc: 'an unmatched group is empty', regex: '^/a(/b)?', replacement: '/c$1', path: '/a', out: '/c' },
  { desc: 'a Go flag group', regex: '(?i)^/OLD', replacement: '/new', path: '/old/x', out: '/new/x' },
]
for (const c of cases) {
  test(`replacePath: ${c.desc}`, () => {
    const p = compiled(c.regex, c.replacement)
    assert.equal(replacePath(p, c.path), c.out)
    // The same compiled regex again: no state is carried between requests.
    assert.equal(replacePath(p, c.path), c.out)
  })
}

const refused: Array<[string, string, RegExp]> = [
  ['^/(a+)+$', '/x', /exponential/],
  ['^/(a)', '/$2', /1 capture group/],
  ['^/(a)', '/$<nope>', /no such named group/],
  ['^/(a)', '/$x', /must be followed/],
  ['^/a', '/b?c', /without \?/],
  ['^/a', '/b#c', /without \?, #/],
  ['^/a', '/b\\c', /\\/],
  ['^/a', '/b c', /visible ASCII/],
  ['^/a', '/b%zz', /escape/],
  ['^/a', '/b\r\nX: y', /visible ASCII/],
  ['(', '/x', /does not compile/],
]
for (const [regex, replacement, m] of refused) {
  test(`compilePathRegex refuses ${JSON.stringify([regex, replacement])}`, () => {
    const p = compilePathRegex(regex, replacement)
    assert.ok('problem' in p)
    assert.match(p.problem, m)
  })
}

const dots: Array<[string, boolean]> = [
  ['/a/b', false],
  ['/a/../b', true],
  ['/a/./b', true],
  ['/..', true],
  ['/a/%2e%2E/b', true],
  ['/a/.%2e', true],
  ['/a/..;x/b', true],
  ['/a/...', false],
  ['/a/.hidden', false],
  ['/a/..b', false],
  ['/a/.', true],
]
for (const [p, expected] of dots) {
  test(`dotSegment(${p}) is ${expected}`, () => assert.equal(dotSegment(p), expected))
}
