import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compile } from '../config/compile'
import { parseConfigText } from '../config/load'
import { compilePattern } from '../config/pattern'
import { RouteTable, stripPrefix } from './route-table'

type R = [name: string, pattern: string, methods?: string[]]

/** A table built the way the proxy builds it: the routes written in a config file, in this order. */
function table(...routes: R[]): RouteTable {
  const lines = routes.map(
    ([name, pattern, methods]) =>
      `    ${name}: {path_pattern: ${JSON.stringify(pattern)}, upstream: u${methods ? `, methods: [${methods.join(', ')}]` : ''}}`,
  )
  const yaml = `mode: api_gateway\nupstreams: {u: {servers: ["127.0.0.1:1"]}}\napi_gateway:\n  routes:\n${lines.join('\n')}\n`
  const r = compile(parseConfigText('/t.yaml', yaml, {}))
  if (!r.ok || r.snapshot.mode.kind !== 'api_gateway') throw new Error(JSON.stringify(r))
  return new RouteTable(r.snapshot.mode.routes, () => undefined)
}

describe('RouteTable', () => {
  test('longest pattern first, whatever the file order (the guide example)', () => {
    const t = table(['web_app', '^/'], ['users_api', '^/api/users'])
    assert.deepEqual(
      t.routes.map((x) => x.name),
      ['users_api', 'web_app'],
    )
    const m = t.match('GET', '/api/users/123')
    assert.equal(m.kind === 'route' && m.route.name, 'users_api')
  })

  test('equal lengths keep the order written in the file', () => {
    const t = table(['first', '^/a'], ['second', '^/b'], ['third', '^/.'])
    assert.deepEqual(
      t.routes.map((x) => x.name),
      ['first', 'second', 'third'],
    )
    const m = t.match('GET', '/a')
    assert.equal(m.kind === 'route' && m.route.name, 'first')
  })

  const t = table(['read', '^/items', ['GET']], ['write', '^/items/', ['POST', 'PUT']], ['any', '^/open'])
  const cases = [
    { desc: 'method allowed by the longer route', method: 'POST', path: '/items/1', want: 'write' },
    {
      desc: 'falls through to a shorter route that allows the method',
      method: 'GET',
      path: '/items/1',
      want: 'read',
    },
    { desc: 'no methods means every method', method: 'PATCH', path: '/open/x', want: 'any' },
    { desc: 'no pattern matches', method: 'GET', path: '/nothing', want: 'no_route' },
    {
      desc: 'pattern matches, method does not',
      method: 'DELETE',
      path: '/items/1',
      want: '405 POST, PUT, GET',
    },
    { desc: 'HEAD is its own method', method: 'HEAD', path: '/items', want: '405 GET' },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      const m = t.match(c.method, c.path)
      const got =
        m.kind === 'route' ? m.route.name : m.kind === 'method_not_allowed' ? `405 ${m.allow}` : m.kind
      assert.equal(got, c.want)
    })
  }
})

describe('stripPrefix', () => {
  const cases = [
    { desc: 'guide example', pattern: '^/api', url: '/api/users', want: '/users' },
    { desc: 'query string kept', pattern: '^/api', url: '/api/users?x=1&y=2', want: '/users?x=1&y=2' },
    { desc: 'empty path becomes /', pattern: '^/api', url: '/api', want: '/' },
    { desc: 'empty path with query', pattern: '^/api', url: '/api?q=1', want: '/?q=1' },
    {
      desc: 'trailing slash in pattern keeps a leading slash',
      pattern: '^/api/',
      url: '/api/users',
      want: '/users',
    },
    { desc: 'only the matched part goes', pattern: '^/v[0-9]+', url: '/v12/a/v3', want: '/a/v3' },
    { desc: 'the query is never matched', pattern: '^/a', url: '/b?/a', want: '/b?/a' },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal(stripPrefix(compilePattern(c.pattern) as RegExp, c.url), c.want)
    })
  }
})

describe('compilePattern (Go-flavoured)', () => {
  test('(?P<name>) named groups', () => {
    const re = compilePattern('^/users/(?P<id>[0-9]+)') as RegExp
    assert.equal(re.exec('/users/42')?.groups?.id, '42')
  })
  test('(?i) leading flag', () => {
    const re = compilePattern('(?i)^/API') as RegExp
    assert.ok(re.test('/api'))
  })
  test('a broken pattern is a reason, not a throw', () => {
    assert.match(String(compilePattern('^/(')), /does not compile/)
  })
})
