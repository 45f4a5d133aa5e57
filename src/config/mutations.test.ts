import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseDocument } from 'yaml'
import { parseConfigText } from '../config/load'
import { addRoute, addUpstream, fileFields, setRouteWeights } from './mutations'
import { ChangeRefused } from './refused'

const BASE = `mode: api_gateway
upstreams:
  api: { servers: ["127.0.0.1:1"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
`
const ENV = { S: 'from-the-env', HOME: '/root' }

const cases: Array<{
  desc: string
  change: (d: ReturnType<typeof parseDocument>) => void
  at: (string | number)[]
  want: unknown
}> = [
  {
    desc: 'a route pattern with a reference',
    change: (d) => addRoute(d, { name: 'r', path_pattern: '^/${S}', upstream: 'api' }),
    at: ['api_gateway', 'routes', 'r', 'path_pattern'],
    want: '^/${S}',
  },
  {
    desc: 'a reference with a default in a list',
    change: (d) => addRoute(d, { name: 'r', path_pattern: '^/r', upstream: 'api', methods: ['${S:-GET}'] }),
    at: ['api_gateway', 'routes', 'r', 'methods', 0],
    want: '${S:-GET}',
  },
  {
    desc: 'an escaped reference stays escaped',
    change: (d) => addRoute(d, { name: 'r', path_pattern: '^/$${HOME}', upstream: 'api' }),
    at: ['api_gateway', 'routes', 'r', 'path_pattern'],
    want: '^/$${HOME}',
  },
  {
    desc: 'a nested value of a new upstream',
    change: (d) =>
      addUpstream(d, { name: 'u', servers: ['127.0.0.1:2'], health_check: { path: '/${HOME}' } }),
    at: ['upstreams', 'u', 'health_check', 'path'],
    want: '/${HOME}',
  },
  {
    desc: 'a reference in the SNI of a new upstream',
    change: (d) => addUpstream(d, { name: 'u', servers: ['127.0.0.1:2'], tls: true, sni: '${S}' }),
    at: ['upstreams', 'u', 'sni'],
    want: '${S}',
  },
  {
    desc: 'a number stays a number',
    change: (d) => addRoute(d, { name: 'r', path_pattern: '^/r', upstream: 'api', timeout_secs: 5 }),
    at: ['api_gateway', 'routes', 'r', 'timeout_secs'],
    want: 5,
  },
]
for (const c of cases) {
  test(`values from the API are written so they read back literally: ${c.desc}`, () => {
    const doc = parseDocument(BASE)
    c.change(doc)
    const src = parseConfigText('c.yaml', doc.toString(), ENV)
    assert.deepEqual(src.problems, [])
    let v: unknown = src.data
    for (const k of c.at) v = (v as Record<string | number, unknown>)[k]
    assert.deepEqual(v, c.want)
  })
}

test('a server already present, spelled another way, is not added twice', () => {
  const doc = parseDocument(BASE)
  addUpstream(doc, { name: 'api', servers: ['[::1]:80'] })
  assert.throws(
    () => addUpstream(doc, { name: 'api', servers: [{ address: '[::1]:80' }] }),
    /already in upstream/,
  )
})

const FILES = 'file paths cannot be set through the control API; edit the config file and reload'
const refused: Array<{
  desc: string
  body: Record<string, unknown>
  error: RegExp | string
  fields?: string[]
}> = [
  {
    desc: 'a CA bundle path',
    body: { name: 'u', servers: ['127.0.0.1:2'], tls: true, ca_path: '/etc/shadow' },
    error: FILES,
    fields: ['ca_path'],
  },
  {
    desc: 'a client certificate and key',
    body: {
      name: 'u',
      servers: ['127.0.0.1:2'],
      tls: true,
      client_cert_path: '/root/.ssh/id_rsa',
      client_key_path: '/dev/zero',
    },
    error: FILES,
    fields: ['client_cert_path', 'client_key_path'],
  },
  {
    desc: 'a file path for an existing group',
    body: { name: 'api', servers: ['127.0.0.1:2'], ca_path: '/etc/passwd' },
    error: FILES,
    fields: ['ca_path'],
  },
  {
    desc: 'an empty file path',
    body: { name: 'u', servers: ['127.0.0.1:2'], ca_path: '' },
    error: FILES,
    fields: ['ca_path'],
  },
  {
    desc: 'a nested field that names a file',
    body: { name: 'u', servers: ['127.0.0.1:2'], health_check: { body_file: '/etc/passwd' } },
    error: FILES,
    fields: ['health_check.body_file'],
  },
  {
    desc: 'a server host with braces',
    body: { name: 'u', servers: ['a{b}:80'] },
    error: /servers: the host must be a DNS name .* \(got "a\{b\}:80"\)/,
  },
  {
    desc: 'a server host with an escaped reference',
    body: { name: 'u', servers: ['$${X}:80'] },
    error: /servers: the host must be a DNS name/,
  },
  {
    desc: 'a reference added to an existing group, as {address}',
    body: { name: 'api', servers: [{ address: '${S}:80', weight: 2 }] },
    error: /servers: the host must be a DNS name/,
  },
  {
    desc: 'a server with a user part',
    body: { name: 'u', servers: ['user@host:80'] },
    error: /servers: the host must be a DNS name/,
  },
  {
    desc: 'a name in brackets',
    body: { name: 'u', servers: ['[host]:80'] },
    error: /servers: the host in brackets must be an IPv6 address/,
  },
]
for (const r of refused) {
  test(`POST /api/v1/upstreams refuses ${r.desc} with 400, and the document is unchanged`, () => {
    const doc = parseDocument(BASE)
    assert.throws(
      () => addUpstream(doc, r.body),
      (err: unknown) => {
        assert.ok(err instanceof ChangeRefused)
        assert.equal(err.reason, 'invalid')
        if (typeof r.error === 'string') assert.equal(err.message, r.error)
        else assert.match(err.message, r.error)
        if (r.fields) assert.deepEqual(err.details.fields, r.fields)
        return true
      },
    )
    assert.equal(doc.toString(), parseDocument(BASE).toString())
  })
}

test('a health check path is a URL path, not a file', () => {
  assert.deepEqual(fileFields({ health_check: { path: '/healthz' }, servers: [{ address: 'a:1' }] }), [])
})

test('setRouteWeights replaces the split whole, turns a one-group route into a split, keeps the rest', () => {
  const doc = parseDocument(`${BASE}      # a comment that stays\n`)
  assert.equal(
    setRouteWeights(doc, 'api', {
      upstreams: [
        { name: 'api', weight: 9 },
        { name: '${S}', weight: 1 },
      ],
    }),
    'set the weights of route api: api 9, ${S} 1',
  )
  assert.equal(doc.getIn(['api_gateway', 'routes', 'api', 'upstream']), undefined)
  assert.equal(doc.getIn(['api_gateway', 'routes', 'api', 'path_pattern']), '^/')
  const names = parseConfigText('c.yaml', doc.toString(), ENV).data as {
    api_gateway: { routes: { api: { upstreams: Array<{ name: string }> } } }
  }
  assert.equal(names.api_gateway.routes.api.upstreams[1]!.name, '${S}', 'a client string is never expanded')
  assert.match(doc.toString(), /# a comment that stays/)
})

test('setRouteWeights refuses an unknown route, other fields and a missing list', () => {
  const refused = (f: () => unknown, reason: string, message: RegExp) =>
    assert.throws(
      f,
      (e: unknown) => e instanceof ChangeRefused && e.reason === reason && message.test(e.message),
    )
  const doc = parseDocument(BASE)
  refused(() => setRouteWeights(doc, 'nope', { upstreams: [] }), 'not_found', /no route "nope"/)
  refused(
    () => setRouteWeights(doc, 'api', { upstreams: [{ name: 'api', weight: 1 }], strip_prefix: true }),
    'invalid',
    /only "upstreams"/,
  )
  for (const body of [null, [], 'x', {}, { upstreams: [] }, { upstreams: 'api=1' }]) {
    refused(() => setRouteWeights(doc, 'api', body), 'invalid', /JSON object|"upstreams" is required/)
  }
  assert.equal(doc.getIn(['api_gateway', 'routes', 'api', 'upstream']), 'api', 'nothing was changed')
})
