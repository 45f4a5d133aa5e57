// The runtime layer as stored in Redis: whatever is read back (forged, truncated, huge) is either
// a layer of well-formed changes or refused whole with a BadLayer; applying it refuses whole too.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compile } from './compile'
import { parseConfigText } from './load'
import { ChangeRefused } from './refused'
import {
  BadLayer,
  EMPTY_LAYER,
  layerDocument,
  MAX_LAYER_BYTES,
  parseLayer,
  serializeLayer,
} from './runtime-layer'

const BASE = `mode: api_gateway
upstreams:
  api: { servers: ["127.0.0.1:1"] }
api_gateway:
  routes:
    api: { path_pattern: "^/", upstream: api }
`

test('a layer round-trips through its stored fields', () => {
  const layer = {
    revision: 3,
    changes: [{ op: 'addRoute' as const, body: { name: 'r', path_pattern: '^/r', upstream: 'api' } }],
    committedAt: 1234,
  }
  assert.deepEqual(parseLayer(serializeLayer(layer)), layer)
  assert.deepEqual(parseLayer({}), EMPTY_LAYER, 'no key: no change yet')
})

const refused: Array<[string, Record<string, string>, RegExp]> = [
  ['bad JSON', { revision: '1', changes: '{' }, /not JSON/],
  ['not a list', { revision: '1', changes: '{"op":"addRoute"}' }, /not a list/],
  [
    'a change without op',
    { revision: '1', changes: '[{"body":1}]' },
    /change 0 is not an object with an "op"/,
  ],
  ['a change that is a string', { revision: '1', changes: '["addRoute"]' }, /change 0/],
  ['a negative revision', { revision: '-1', changes: '[]' }, /revision/],
  ['a revision that is not a number', { revision: '1e400', changes: '[]' }, /revision/],
  ['changes without a revision', { changes: '[]' }, /revision/],
  ['too big', { revision: '1', changes: `[${' '.repeat(MAX_LAYER_BYTES)}]` }, /larger than/],
  [
    'too deep',
    { revision: '1', changes: `[{"op":"addRoute","body":${'['.repeat(100)}${']'.repeat(100)}}]` },
    /deeper/,
  ],
  ['stack-deep', { revision: '1', changes: `${'['.repeat(200_000)}${']'.repeat(200_000)}` }, /./],
]
for (const [desc, fields, message] of refused) {
  test(`a stored layer is refused: ${desc}`, () => {
    assert.throws(
      () => parseLayer(fields),
      (e: unknown) => e instanceof BadLayer && message.test(e.message),
    )
  })
}

test('a layer applies in order on the file, through the same changes as the API', () => {
  const doc = layerDocument(BASE, [
    { op: 'addUpstream', body: { name: 'b', servers: ['127.0.0.1:2'] } },
    { op: 'addRoute', body: { name: 'r', path_pattern: '^/r', upstream: 'b' } },
    { op: 'removeRoute', name: 'api' },
  ])
  const r = compile(parseConfigText('c.yaml', doc.toString(), {}))
  assert.ok(r.ok)
  assert.deepEqual(r.snapshot.mode.kind === 'api_gateway' && r.snapshot.mode.routes.map((x) => x.name), ['r'])
})

const unapplicable: Array<[string, unknown[], RegExp]> = [
  ['an unknown op', [{ op: 'formatDisk' }], /change 2 of 2 \(formatDisk\).*unknown change "formatDisk"/],
  [
    'a route the file has',
    [{ op: 'addRoute', body: { name: 'api', path_pattern: '^/', upstream: 'api' } }],
    /already exists/,
  ],
  [
    'a file path',
    [{ op: 'addUpstream', body: { name: 'x', servers: ['127.0.0.1:3'], ca_path: '/etc/shadow' } }],
    /file paths/,
  ],
  ['a body that is not an object', [{ op: 'addRoute', body: 7 }], /JSON object/],
  ['fields of the wrong type', [{ op: 'removeServer', name: 5, server: null }], /no upstream/],
]
for (const [desc, changes, message] of unapplicable) {
  test(`a layer that does not apply is refused whole: ${desc}`, () => {
    assert.throws(
      () =>
        layerDocument(BASE, [
          { op: 'addUpstream', body: { name: 'u', servers: ['127.0.0.1:9'] } },
          ...(changes as never[]),
        ]),
      (e: unknown) => e instanceof ChangeRefused && message.test(e.message),
    )
  })
}

test('a layer too big to store is refused before it is written', () => {
  const body = { name: 'r', path_pattern: `^/${'a'.repeat(MAX_LAYER_BYTES)}`, upstream: 'api' }
  assert.throws(
    () => serializeLayer({ revision: 1, changes: [{ op: 'addRoute', body }], committedAt: 0 }),
    (e: unknown) => e instanceof ChangeRefused && e.reason === 'invalid',
  )
})
