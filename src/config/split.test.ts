// `upstreams` (a weighted split), `sticky` beside it and `sticky` on a group: every mistake is
// refused at load with its key path, as the file would be (control-API changes included).

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compilePlan } from '../proxy/runtime'
import { parseConfigText } from './load'

const head = `mode: api_gateway
upstreams:
  v1: { servers: ["127.0.0.1:1"] }
  v2: { servers: ["127.0.0.1:2"] }
`
const route = (fields: string) => `${head}api_gateway:\n  routes:\n    r: { path_pattern: "^/", ${fields} }\n`

function problems(yaml: string): string[] {
  const r = compilePlan(parseConfigText('c.yaml', yaml, {}))
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`)
}

describe('split and sticky configs', () => {
  test('a valid split with each kind of stickiness loads', () => {
    for (const sticky of [
      '',
      ', sticky: { cookie: canary }',
      ', sticky: { cookie: c, ttl_secs: 3600, secure: true, http_only: false, same_site: none }',
      ', sticky: { header: X-User }',
      ', sticky: { client_ip: true }',
    ]) {
      assert.deepEqual(
        problems(route(`upstreams: [{name: v1, weight: 95}, {name: v2, weight: 0}]${sticky}`)),
        [],
      )
    }
  })

  const cases: Array<[string, string, RegExp]> = [
    [
      'both upstream and upstreams',
      route('upstream: v1, upstreams: [{name: v1, weight: 1}]'),
      /api_gateway\.routes\.r\.upstreams: cannot be used with upstream/,
    ],
    [
      'neither',
      route('strip_prefix: true'),
      /api_gateway\.routes\.r: needs upstream \(one group\) or upstreams/,
    ],
    [
      'an unknown group',
      route('upstreams: [{name: v1, weight: 1}, {name: v3, weight: 1}]'),
      /routes\.r\.upstreams\[1\]\.name: upstream "v3" is not defined under upstreams/,
    ],
    [
      'a group twice',
      route('upstreams: [{name: v1, weight: 1}, {name: v1, weight: 1}]'),
      /upstreams\[1\]\.name: names "v1" twice/,
    ],
    [
      'every weight 0',
      route('upstreams: [{name: v1, weight: 0}, {name: v2, weight: 0}]'),
      /upstreams: needs at least one weight above 0/,
    ],
    ['a negative weight', route('upstreams: [{name: v1, weight: -1}]'), /upstreams\[0\]\.weight/],
    ['a fractional weight', route('upstreams: [{name: v1, weight: 0.5}]'), /upstreams\[0\]\.weight/],
    ['an empty split', route('upstreams: []'), /upstreams: needs at least one upstream group/],
    ['an entry without a weight', route('upstreams: [{name: v1}]'), /upstreams\[0\]\.weight/],
    [
      'sticky with upstream',
      route('upstream: v1, sticky: { cookie: c }'),
      /routes\.r\.sticky: only applies with upstreams/,
    ],
    [
      'sticky naming two keys',
      route('upstreams: [{name: v1, weight: 1}], sticky: { cookie: c, client_ip: true }'),
      /sticky: needs exactly one of cookie, header or client_ip \(got cookie, client_ip\)/,
    ],
    [
      'sticky naming none',
      route('upstreams: [{name: v1, weight: 1}], sticky: {}'),
      /sticky: needs exactly one of cookie, header or client_ip \(got none\)/,
    ],
    [
      'cookie attributes with a header',
      route('upstreams: [{name: v1, weight: 1}], sticky: { header: X-U, ttl_secs: 5 }'),
      /sticky\.ttl_secs: only applies with cookie/,
    ],
    [
      'SameSite=None without Secure',
      route('upstreams: [{name: v1, weight: 1}], sticky: { cookie: c, same_site: none }'),
      /sticky\.same_site: none needs secure: true/,
    ],
    [
      'a cookie name that is not a token',
      route('upstreams: [{name: v1, weight: 1}], sticky: { cookie: "a b;" }'),
      /sticky\.cookie: must be a cookie name/,
    ],
    [
      'client_ip: false',
      route('upstreams: [{name: v1, weight: 1}], sticky: { client_ip: false }'),
      /sticky\.client_ip/,
    ],
    [
      'a group sticky without a cookie name',
      `${head.replace('["127.0.0.1:2"] }', '["127.0.0.1:2"], sticky: { ttl_secs: 5 } }')}api_gateway: { routes: { r: { path_pattern: "^/", upstream: v2 } } }\n`,
      /upstreams\.v2\.sticky\.cookie/,
    ],
    [
      'a split with TCP pass-through',
      `${head.replace('api_gateway', 'load_balancer')}load_balancer: { protocol: tcp, upstreams: [{name: v1, weight: 1}] }\n`,
      /load_balancer\.upstreams: cannot be used with load_balancer\.protocol: tcp/,
    ],
    [
      'a sticky group with TCP pass-through',
      `mode: load_balancer\nupstreams: { g: { servers: ["127.0.0.1:1"], sticky: { cookie: s } } }\nload_balancer: { protocol: tcp, upstream: g }\n`,
      /upstreams\.g\.sticky: cannot be used with load_balancer\.protocol: tcp/,
    ],
  ]
  for (const [what, yaml, message] of cases) {
    test(`refused: ${what}`, () => {
      const p = problems(yaml)
      assert.ok(
        p.some((x) => message.test(x)),
        p.join('\n') || 'no problem reported',
      )
    })
  }
})
