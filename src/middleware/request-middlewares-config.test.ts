// Configuration of headers, rewrite, redirect and ip_filter as a user writes it: every bad
// setting is a problem at its key path (and line), with the other problems; `${client_ip}`-style
// variables survive config loading inside headers values only.

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseConfigText } from '../config/load'
import type { Problem } from '../config/problems'
import { compilePlan } from '../proxy/runtime'

const base = (middlewares: string, route = 'middlewares: [m]') => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams: { u: { servers: ["127.0.0.1:1"] } }
api_gateway:
  routes:
    r: { path_pattern: "^/", upstream: u, ${route} }
middlewares:
${middlewares}
`

function problems(yaml: string, env: NodeJS.ProcessEnv = {}): Problem[] {
  const r = compilePlan(parseConfigText('cfg.yaml', yaml, env))
  return r.ok ? [] : r.problems
}

const cases: Array<{ desc: string; mw: string; env?: NodeJS.ProcessEnv; path?: string; match?: RegExp }> = [
  // headers
  {
    desc: 'headers: a valid declaration',
    mw: '  m: { type: headers, request: { set: { X-Client: "${client_ip}" } } }',
  },
  {
    desc: 'headers: a header name that is not a token',
    mw: '  m: { type: headers, request: { set: { "X Bad": "v" } } }',
    path: 'middlewares.m.request.set["X Bad"]',
    match: /valid header name/,
  },
  {
    desc: 'headers: a value with CR/LF',
    mw: '  m: { type: headers, response: { set: { X-A: "a\\r\\nSet-Cookie: x=1" } } }',
    path: 'middlewares.m.response.set.X-A',
    match: /control characters/,
  },
  {
    desc: 'headers: an unknown variable is refused where it is written',
    mw: '  m: { type: headers, request: { set: { X-A: "${client_ipp}" } } }',
    path: 'middlewares.m.request.set.X-A',
    match: /neither a headers variable.*did you mean "client_ip"/,
  },
  {
    desc: 'headers: a variable with a default is refused',
    mw: '  m: { type: headers, request: { set: { X-A: "${host:-x}" } } }',
    path: 'middlewares.m.request.set.X-A',
    match: /unknown variable/,
  },
  {
    desc: 'headers: an environment variable in a value is expanded',
    mw: '  m: { type: headers, request: { set: { Authorization: "Bearer ${TOKEN}" } } }',
    env: { TOKEN: 'abc' },
  },
  {
    desc: 'headers: an unclosed ${ is refused',
    mw: '  m: { type: headers, request: { add: { X-A: ["ok", "${client_ip"] } } }',
    path: 'middlewares.m.request.add.X-A[1]',
    match: /without its \}/,
  },
  {
    desc: 'headers: Content-Length cannot be set (smuggling)',
    mw: '  m: { type: headers, request: { set: { Content-Length: "0" } } }',
    path: 'middlewares.m.request.set.Content-Length',
    match: /frames the message/,
  },
  {
    desc: 'headers: Transfer-Encoding cannot be added to a response',
    mw: '  m: { type: headers, response: { add: { Transfer_Encoding: "chunked" } } }',
    path: 'middlewares.m.response.add.Transfer_Encoding',
    match: /frames the message/,
  },
  {
    desc: 'headers: one header both set and removed',
    mw: '  m: { type: headers, request: { set: { X-A: "1" }, remove: [x-a] } }',
    path: 'middlewares.m.request.remove[0]',
    match: /already named under request.set/,
  },
  {
    desc: 'headers: a preset and a set of its header',
    mw: '  m: { type: headers, frame_deny: true, response: { set: { X-Frame-Options: SAMEORIGIN } } }',
    path: 'middlewares.m.response.set.X-Frame-Options',
    match: /already set by frame_deny/,
  },
  {
    desc: 'headers: an unknown referrer policy',
    mw: '  m: { type: headers, referrer_policy: sometimes }',
    path: 'middlewares.m.referrer_policy',
  },
  {
    desc: 'headers: nothing to do',
    mw: '  m: { type: headers }',
    path: 'middlewares.m',
    match: /does nothing/,
  },
  // rewrite
  {
    desc: 'rewrite: a valid declaration',
    mw: '  m: { type: rewrite, regex: "^/old/(.*)", replacement: "/new/$1" }',
  },
  {
    desc: 'rewrite: a regex that can take exponential time',
    mw: '  m: { type: rewrite, regex: "^/(a+)+$", replacement: "/x" }',
    path: 'middlewares.m.regex',
    match: /exponential/,
  },
  {
    desc: 'rewrite: a group the regex does not have',
    mw: '  m: { type: rewrite, regex: "^/old/(.*)", replacement: "/new/$2" }',
    path: 'middlewares.m.replacement',
    match: /1 capture group/,
  },
  {
    desc: 'rewrite: a replacement that sets a query',
    mw: '  m: { type: rewrite, regex: "^/a", replacement: "/b?x=1" }',
    path: 'middlewares.m.replacement',
    match: /without \?/,
  },
  {
    desc: 'rewrite: a named group',
    mw: '  m: { type: rewrite, regex: "^/u/(?P<id>[0-9]+)", replacement: "/users/$<id>" }',
  },
  // redirect
  {
    desc: 'redirect: a valid declaration',
    mw: '  m: { type: redirect, scheme: https, host: example.com, status: 308 }',
  },
  {
    desc: 'redirect: a scheme without a host (open redirect through the Host header)',
    mw: '  m: { type: redirect, scheme: https }',
    path: 'middlewares.m.host',
    match: /client's Host header/,
  },
  {
    desc: 'redirect: a host with a path',
    mw: '  m: { type: redirect, host: "example.com/evil" }',
    path: 'middlewares.m.host',
    match: /host name or IP address/,
  },
  {
    desc: 'redirect: a status that is not a redirect',
    mw: '  m: { type: redirect, host: example.com, status: 200 }',
    path: 'middlewares.m.status',
  },
  {
    desc: 'redirect: regex without replacement',
    mw: '  m: { type: redirect, regex: "^/a" }',
    path: 'middlewares.m.replacement',
    match: /required with regex/,
  },
  {
    desc: 'redirect: to itself',
    mw: '  m: { type: redirect, status: 301 }',
    path: 'middlewares.m',
    match: /to itself/,
  },
  // ip_filter
  {
    desc: 'ip_filter: a valid declaration',
    mw: '  m: { type: ip_filter, allow: [10.0.0.0/8, "2001:db8::/32", 127.0.0.1] }',
  },
  {
    desc: 'ip_filter: not an address',
    mw: '  m: { type: ip_filter, deny: [10.0.0.0/8, example.com] }',
    path: 'middlewares.m.deny[1]',
    match: /not an IPv4 or IPv6/,
  },
  {
    desc: 'ip_filter: host bits beyond the prefix',
    mw: '  m: { type: ip_filter, allow: [10.1.2.3/8] }',
    path: 'middlewares.m.allow[0]',
    match: /the range is 10.0.0.0\/8/,
  },
  {
    desc: 'ip_filter: a prefix too long',
    mw: '  m: { type: ip_filter, allow: [10.0.0.0/33] }',
    path: 'middlewares.m.allow[0]',
    match: /0-32/,
  },
  {
    desc: 'ip_filter: neither list',
    mw: '  m: { type: ip_filter }',
    path: 'middlewares.m',
    match: /allow, deny/,
  },
]

describe('request middlewares: configuration', () => {
  for (const c of cases) {
    test(c.desc, () => {
      const found = problems(base(c.mw), c.env)
      if (c.path === undefined) {
        assert.deepEqual(found, [])
        return
      }
      const p = found.find((x) => x.path === c.path)
      assert.ok(p, `a problem at ${c.path}; got ${JSON.stringify(found.map((x) => [x.path, x.message]))}`)
      assert.equal(p.line, 8, 'located on the declaration line')
      if (c.match) assert.match(p.message, c.match)
    })
  }

  test('headers variables pass config loading untouched, environment variables are expanded', () => {
    const doc = parseConfigText(
      'cfg.yaml',
      base('  m: { type: headers, request: { set: { X-A: "${client_ip} ${TOKEN} $${route}" } } }'),
      { TOKEN: 'has ${route} in it', client_ip: 'from-env' },
    )
    assert.deepEqual(doc.problems, [])
    const value = (doc.data as { middlewares: { m: { request: { set: Record<string, string> } } } })
      .middlewares.m.request.set['X-A']
    // The environment's text is escaped so it stays text; the escaped $${ stays escaped.
    assert.equal(value, '${client_ip} has $${route} in it $${route}')
  })

  test('outside headers values, the five names are environment variables as before', () => {
    const doc = parseConfigText(
      'cfg.yaml',
      base('  m: { type: rewrite, regex: "^/a", replacement: "/${host}" }'),
      {},
    )
    assert.match(doc.problems[0]?.message ?? '', /environment variable host is not set/)
  })

  test('a declaration named headers (no type) is a headers declaration', () => {
    const doc = parseConfigText(
      'cfg.yaml',
      base('  headers: { request: { set: { X-A: "${route}" } } }', 'middlewares: [headers]'),
      {},
    )
    assert.deepEqual(doc.problems, [])
  })
})
