import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseDocument } from 'yaml'
import { parseConfigText } from '../config/load'
import { addRoute, addUpstream } from './mutations'

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
    desc: 'a server added to a group, as a string',
    change: (d) => addUpstream(d, { name: 'api', servers: ['${S}:80'] }),
    at: ['upstreams', 'api', 'servers', 1],
    want: '${S}:80',
  },
  {
    desc: 'a server added to a group, as {address}',
    change: (d) => addUpstream(d, { name: 'api', servers: [{ address: '${S}:80', weight: 2 }] }),
    at: ['upstreams', 'api', 'servers', 1, 'address'],
    want: '${S}:80',
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

test('a server written literally is still recognised as already present', () => {
  const doc = parseDocument(BASE)
  addUpstream(doc, { name: 'api', servers: ['${S}:80'] })
  assert.throws(() => addUpstream(doc, { name: 'api', servers: ['${S}:80'] }), /already in upstream/)
})
